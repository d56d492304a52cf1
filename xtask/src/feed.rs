//! What `demo` and `bench` share to publish a feed and drive the real `vmc` binary: where the
//! binary is, the environment variables cleared for it, pseudo-random bytes standing in for
//! disk images, SHA-512, signed-list payloads, and running a command with a time limit.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use vmc_model::{EndorserClaim, Identifier, Image, ImageList, JsonObject, Version};
use vmc_testkit::pki::Leaf;

use crate::cmd;

/// Environment variables that would change what a `vmc` command does; the xtasks remove them
/// from the environment of every `vmc` they run.
pub const CLEARED_ENV: &[&str] = &[
    "VMC_HOME",
    "VMC_DATABASE",
    "VMCATCHER_RDBMS",
    "VMC_CA_DIR",
    "VMCATCHER_DIR_CERT",
    "VMC_CACHE_DIR",
    "VMCATCHER_CACHE_DIR_CACHE",
    "VMC_PARTIAL_DIR",
    "VMCATCHER_CACHE_DIR_DOWNLOAD",
    "VMC_EXPIRED_DIR",
    "VMCATCHER_CACHE_DIR_EXPIRE",
    "VMC_EVENT_HANDLER",
    "VMCATCHER_CACHE_EVENT",
    "VMC_CRL",
    "VMC_TIMEOUT",
    "VMC_OUTPUT",
    "VMC_NOW",
    "VMC_LOG",
    "VMC_EVENT_LOG",
];

/// The cargo target directory (`$CARGO_TARGET_DIR`, relative to the workspace root, or
/// `<root>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || cmd::project_root().join("target"),
            |dir| {
                if dir.is_absolute() {
                    dir
                } else {
                    cmd::project_root().join(dir)
                }
            },
        )
}

/// The `vmc` binary built with `profile` (`debug` or `release`).
pub fn vmc_binary(profile: &str) -> PathBuf {
    target_dir()
        .join(profile)
        .join(format!("vmc{}", std::env::consts::EXE_SUFFIX))
}

/// Deterministic pseudo-random bytes (splitmix64), standing in for a disk image; incompressible.
pub struct PseudoRandom {
    /// The generator state.
    state: u64,
}

impl PseudoRandom {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> PseudoRandom {
        PseudoRandom { state: seed }
    }

    /// The next eight bytes.
    pub fn next_word(&mut self) -> [u8; 8] {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z.to_le_bytes()
    }

    /// Fills `buf` whole words at a time; a tail shorter than a word takes the first bytes of
    /// the next word (so the stream matches [`pseudo_random_bytes`] only when every `buf` but
    /// the last is a multiple of eight bytes long).
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_word());
        }
        let tail = chunks.into_remainder();
        let len = tail.len();
        if len > 0 {
            tail.copy_from_slice(&self.next_word()[..len]);
        }
    }
}

/// `len` pseudo-random bytes from `seed` (see [`PseudoRandom`]).
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    PseudoRandom::new(seed).fill(&mut out);
    out
}

/// Writes `len` pseudo-random bytes from `seed` to `path` (the same bytes as
/// [`pseudo_random_bytes`]) and returns their lowercase hex SHA-512.
pub fn write_pseudo_random_file(path: &Path, seed: u64, len: u64) -> Result<String> {
    const CHUNK: usize = 1 << 20;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut generator = PseudoRandom::new(seed);
    let mut sha = openssl::sha::Sha512::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        generator.fill(&mut buf[..n]);
        sha.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(hex(&sha.finish()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-512 of `bytes`.
pub fn sha512_hex(bytes: &[u8]) -> String {
    hex(&openssl::sha::sha512(bytes))
}

/// One image entry of a published list.
pub struct ImageSpec<'a> {
    /// `dc:identifier`.
    pub id: &'a str,
    /// `dc:title`.
    pub title: &'a str,
    /// `hv:uri`.
    pub url: String,
    /// `hv:size`.
    pub size: u64,
    /// `sl:checksum:sha512`.
    pub sha512: String,
    /// `sl:osname`.
    pub os_name: &'a str,
    /// `sl:osversion`.
    pub os_version: &'a str,
}

impl ImageSpec<'_> {
    /// The list entry, with the descriptive keys a real appliance carries.
    pub fn to_image(&self) -> Result<Image> {
        let mut entry = Image::new(
            Identifier::new(self.id)?,
            self.title,
            self.url.clone(),
            self.size,
            self.sha512.clone(),
            "1",
        );
        let extra: [(&str, &str); 7] = [
            (
                "dc:description",
                "pseudo-random bytes standing in for a disk image",
            ),
            ("hv:format", "raw"),
            ("hv:hypervisor", "QEMU,KVM"),
            ("sl:arch", "x86_64"),
            ("sl:os", "Linux"),
            ("sl:osname", self.os_name),
            ("sl:osversion", self.os_version),
        ];
        for (key, value) in extra {
            entry.extra.insert(key.into(), value.into());
        }
        Ok(entry)
    }
}

/// The header of a published list: everything but its images and its endorser.
pub struct ListHeader<'a> {
    /// `dc:identifier`.
    pub identifier: &'a str,
    /// `dc:title`.
    pub title: &'a str,
    /// `dc:description`.
    pub description: &'a str,
    /// `ad:vo`.
    pub vo: &'a str,
    /// `dc:source`.
    pub source: String,
    /// `hv:uri`, where the list is published.
    pub uri: String,
    /// `hv:version`.
    pub version: &'a str,
    /// `dc:date:created`; the list expires 30 days later.
    pub created: DateTime<Utc>,
    /// The endorser's `hv:x509:creator`.
    pub creator: &'a str,
    /// The endorser's `hv:x509:email`.
    pub email: &'a str,
}

impl ListHeader<'_> {
    /// The list with `images`, naming `leaf` as its endorser (sign it with
    /// `leaf.sign_smime(&list.to_json_bytes())`).
    pub fn list(&self, leaf: &Leaf, images: Vec<Image>) -> Result<ImageList> {
        let mut extra = JsonObject::new();
        extra.insert("ad:vo".into(), self.vo.into());
        Ok(ImageList {
            identifier: Identifier::new(self.identifier)?,
            title: self.title.into(),
            description: self.description.into(),
            source: self.source.clone(),
            created: self.created,
            expires: self.created + TimeDelta::days(30),
            version: Version::new(self.version),
            uri: self.uri.clone(),
            endorsers: vec![EndorserClaim {
                dn: leaf.subject_one_line(),
                ca: leaf.issuer_one_line(),
                creator: Some(self.creator.into()),
                email: Some(self.email.into()),
                extra: JsonObject::new(),
            }],
            images,
            extra,
        })
    }
}

/// Quotes `word` for `/bin/sh` when it needs it.
pub fn shell_word(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `command` (stdout and stderr piped) for at most `limit`; returns its exit code and
/// output. A command that runs longer is killed and this fails.
pub fn run_bounded(
    mut command: Command,
    shown: &str,
    limit: Duration,
) -> Result<(Option<i32>, String, String)> {
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot wait for `{shown}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{shown}` did not finish within {} s and was killed",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok((status.code(), stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_bytes_are_deterministic_and_sized() {
        let a = pseudo_random_bytes(1, 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, pseudo_random_bytes(1, 1000));
        assert_ne!(a, pseudo_random_bytes(2, 1000));
        assert_eq!(&pseudo_random_bytes(1, 2000)[..1000], &a[..]);
    }

    #[test]
    fn a_pseudo_random_file_holds_the_same_bytes_and_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = (1 << 20) + 13;
        let digest = write_pseudo_random_file(&path, 7, len as u64).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, pseudo_random_bytes(7, len));
        assert_eq!(digest, sha512_hex(&bytes));
    }

    #[test]
    fn sha512_hex_matches_a_known_digest() {
        assert_eq!(
            sha512_hex(b"abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/work/main/x.sh"), "/work/main/x.sh");
        assert_eq!(shell_word("/a b/x.sh"), "'/a b/x.sh'");
        assert_eq!(shell_word("/it's"), r"'/it'\''s'");
    }

    #[test]
    fn a_list_header_builds_a_list_naming_the_endorser() {
        let pki = vmc_testkit::pki::TestPki::generate(Utc::now());
        let header = ListHeader {
            identifier: "l",
            title: "t",
            description: "d",
            vo: "vo.example.org",
            source: "http://127.0.0.1/".into(),
            uri: "http://127.0.0.1/l".into(),
            version: "1.0",
            created: pki.now,
            creator: "c",
            email: "e@example.org",
        };
        let image = ImageSpec {
            id: "i",
            title: "T",
            url: "http://127.0.0.1/i".into(),
            size: 3,
            sha512: sha512_hex(b"abc"),
            os_name: "Os",
            os_version: "1",
        }
        .to_image()
        .unwrap();
        let list = header.list(&pki.endorser, vec![image]).unwrap();
        assert_eq!(list.endorsers[0].dn, pki.endorser.subject_one_line());
        assert_eq!(list.expires - list.created, TimeDelta::days(30));
        assert_eq!(list.images.len(), 1);
        assert_eq!(list.images[0].extra["sl:osname"], "Os");
    }
}
