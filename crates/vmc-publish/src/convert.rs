//! The file a cached image is published as: checked with `qemu-img info` (the format qemu
//! finds must be the one the list declares, and no backing or external data file), its disk
//! taken out of an OVA, and converted with `qemu-img convert` to the format the site's cloud
//! wants (raw for a Ceph-backed Glance, qcow2 otherwise), the result checked with
//! `qemu-img check` and `info`. A converted file is kept in the site's converted directory,
//! beside the cache, as `<id>-<sha512 prefix>.<format>` with its sha512 in `….sha512`, and
//! reused by later runs; files of images no longer wanted are removed by [`prune`].
//!
//! A conversion is written to `….partial` and renamed when complete and checked, so an
//! interrupted run leaves nothing that a later one would take for a finished file.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::PublishError;

/// The file to upload and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The file (the cached one, or a converted one).
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its sha512, lowercase hex.
    pub sha512: String,
    /// Glance's `disk_format`.
    pub disk_format: String,
    /// Glance's `container_format`.
    pub container_format: String,
    /// The disk's virtual size, as `qemu-img info` reports it.
    pub virtual_size: Option<u64>,
}

/// How to prepare files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converter {
    /// The `qemu-img` program.
    pub qemu_img: PathBuf,
    /// Where converted files are kept.
    pub dir: PathBuf,
    /// The disk format the cloud wants (`None`: as the list declares it).
    pub want: Option<String>,
}

/// The image being prepared, for messages and file names.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The image id.
    pub identifier: &'a str,
    /// The cached file.
    pub path: &'a Path,
    /// Its verified sha512.
    pub sha512: &'a str,
    /// Its verified size.
    pub size: u64,
    /// The format the list declares (`hv:format`, lowercase: `qcow2`, `raw`, `vmdk`, `ova`…).
    pub declared: &'a str,
}

impl Converter {
    /// The file to publish for `source` (see the module doc).
    pub fn prepare(&self, source: Source<'_>) -> Result<Prepared, PublishError> {
        let refuse = |reason: String| PublishError::Unpublishable {
            identifier: source.identifier.to_owned(),
            reason,
        };
        let stem = stem(source.identifier, source.sha512);
        let ova = source.declared == "ova";
        // An OVA is a tar archive: its (first) VMDK disk is what Glance gets.
        let declared = if ova { "vmdk" } else { source.declared };
        let want = self.want.as_deref().unwrap_or(declared);
        let target = self.dir.join(format!("{stem}.{want}"));
        let sum_file = self.dir.join(format!("{stem}.{want}.sha512"));
        let kept = |virtual_size| {
            let (meta, sum) = (
                std::fs::metadata(&target).ok()?,
                std::fs::read_to_string(&sum_file).ok()?,
            );
            // Kept from an earlier run (the upload hashes it again and compares).
            Some(Prepared {
                path: target.clone(),
                size: meta.len(),
                sha512: sum.trim().to_owned(),
                disk_format: want.to_owned(),
                container_format: "bare".to_owned(),
                virtual_size,
            })
        };
        // A converted OVA disk kept from an earlier run: not taken out of the archive again.
        if ova && target.exists() {
            let size = self.info(&target, source.identifier)?["virtual-size"].as_u64();
            if let Some(prepared) = kept(size) {
                return Ok(prepared);
            }
        }
        let disk = if ova {
            std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
            self.extract_ova(source, &stem)?
        } else {
            source.path.to_owned()
        };
        let info = self.info(&disk, source.identifier)?;
        let found = info["format"].as_str().unwrap_or_default().to_owned();
        if found != declared {
            return Err(refuse(format!(
                "the list declares {declared} but qemu-img finds {found:?}"
            )));
        }
        check_no_external_files(&info).map_err(refuse)?;
        let virtual_size = info["virtual-size"].as_u64();
        if want == declared && disk == source.path {
            return Ok(Prepared {
                path: disk,
                size: source.size,
                sha512: source.sha512.to_ascii_lowercase(),
                disk_format: declared.to_owned(),
                container_format: "bare".to_owned(),
                virtual_size,
            });
        }
        if let Some(prepared) = kept(virtual_size) {
            if disk != source.path {
                let _ = std::fs::remove_file(&disk);
            }
            return Ok(prepared);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        let partial = self.dir.join(format!("{stem}.{want}.partial"));
        if want == declared {
            // An extracted OVA disk already in the wanted format.
            std::fs::rename(&disk, &partial).map_err(|e| io_error(&partial, e))?;
        } else {
            self.run(
                source.identifier,
                Command::new(&self.qemu_img)
                    .args(["convert", "-q", "-f", declared, "-O", want])
                    .arg(&disk)
                    .arg(&partial),
            )?;
            if disk != source.path {
                let _ = std::fs::remove_file(&disk);
            }
        }
        let result = self.info(&partial, source.identifier)?;
        if result["format"].as_str() != Some(want) {
            let _ = std::fs::remove_file(&partial);
            return Err(refuse(format!(
                "the conversion to {want} did not make a {want} file"
            )));
        }
        check_no_external_files(&result).map_err(refuse)?;
        if want != "raw" {
            self.run(
                source.identifier,
                Command::new(&self.qemu_img)
                    .args(["check", "-q", "-f", want])
                    .arg(&partial),
            )?;
        }
        let sha512 = vmc_cache::fetch::sha512_file(&partial).map_err(|e| io_error(&partial, e))?;
        let size = std::fs::metadata(&partial)
            .map_err(|e| io_error(&partial, e))?
            .len();
        vmc_cache::fetch::replace_file(&sum_file, format!("{sha512}\n").as_bytes())
            .map_err(|e| io_error(&sum_file, e))?;
        std::fs::rename(&partial, &target).map_err(|e| io_error(&target, e))?;
        Ok(Prepared {
            path: target,
            size,
            sha512,
            disk_format: want.to_owned(),
            container_format: "bare".to_owned(),
            virtual_size: result["virtual-size"].as_u64().or(virtual_size),
        })
    }

    /// `qemu-img info --output=json` of `path`.
    fn info(&self, path: &Path, identifier: &str) -> Result<Value, PublishError> {
        let out = self.run(
            identifier,
            Command::new(&self.qemu_img)
                .args(["info", "--output=json"])
                .arg(path),
        )?;
        serde_json::from_slice(&out).map_err(|e| PublishError::Unpublishable {
            identifier: identifier.to_owned(),
            reason: format!("qemu-img info printed no JSON: {e}"),
        })
    }

    /// Runs qemu-img; its stdout, or its failure with stderr.
    fn run(&self, identifier: &str, command: &mut Command) -> Result<Vec<u8>, PublishError> {
        let out =
            command
                .stdin(Stdio::null())
                .output()
                .map_err(|e| PublishError::Unpublishable {
                    identifier: identifier.to_owned(),
                    reason: format!("cannot run {}: {e}", self.qemu_img.display()),
                })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(PublishError::Unpublishable {
                identifier: identifier.to_owned(),
                reason: format!(
                    "{} failed ({}): {}",
                    self.qemu_img.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }

    /// The first `.vmdk` member of the OVA, written to the converted directory.
    fn extract_ova(&self, source: Source<'_>, stem: &str) -> Result<PathBuf, PublishError> {
        let refuse = |reason: String| PublishError::Unpublishable {
            identifier: source.identifier.to_owned(),
            reason,
        };
        let listing = Command::new("tar")
            .arg("-tf")
            .arg(source.path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| refuse(format!("cannot run tar: {e}")))?;
        if !listing.status.success() {
            return Err(refuse(format!(
                "not an OVA (tar archive): {}",
                String::from_utf8_lossy(&listing.stderr).trim()
            )));
        }
        let names = String::from_utf8_lossy(&listing.stdout).into_owned();
        let member = names
            .lines()
            .find(|n| n.to_ascii_lowercase().ends_with(".vmdk"))
            .ok_or_else(|| refuse("the OVA holds no .vmdk disk".into()))?;
        let out = self.dir.join(format!("{stem}.ova-disk.partial"));
        let file = File::create(&out).map_err(|e| io_error(&out, e))?;
        // To stdout: the member's path inside the archive never becomes a path here.
        let status = Command::new("tar")
            .arg("-xOf")
            .arg(source.path)
            .arg(member)
            .stdin(Stdio::null())
            .stdout(file)
            .status()
            .map_err(|e| refuse(format!("cannot run tar: {e}")))?;
        if !status.success() {
            let _ = std::fs::remove_file(&out);
            return Err(refuse(format!("cannot extract {member} from the OVA")));
        }
        Ok(out)
    }
}

/// Refuses a disk whose metadata names other files (a backing file, an external data file):
/// converting it would read them.
fn check_no_external_files(info: &Value) -> Result<(), String> {
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(name) = info[key].as_str() {
            return Err(format!("qemu-img info shows a backing file ({name})"));
        }
    }
    if let Some(name) = info["format-specific"]["data"]["data-file"].as_str() {
        return Err(format!(
            "qemu-img info shows an external data file ({name})"
        ));
    }
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> PublishError {
    PublishError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Removes converted files (and their checksum and partial files) whose `<id>-<prefix>` stem
/// is not in `keep`. Returns how many files were removed.
pub fn prune(dir: &Path, keep: &BTreeSet<String>) -> Result<usize, PublishError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.iter().any(|stem| {
            name.strip_prefix(stem.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        }) {
            std::fs::remove_file(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The stem of the converted files of an image.
pub fn stem(identifier: &str, sha512: &str) -> String {
    format!("{identifier}-{}", &sha512[..sha512.len().min(16)])
}
