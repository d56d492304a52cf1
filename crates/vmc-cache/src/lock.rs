//! The instance lock: one `sync`, `download`, `expire`, `verify` or `subscribe update` at a time
//! per home. An advisory `flock` on the lock file: the kernel drops it when the holder dies, so
//! a crashed run never blocks the next one. The holder writes who it is into the file so that a
//! waiting run can say which process holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CacheError, io};

/// A held instance lock; released on drop.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock at `path`, waiting up to `wait` for another holder to finish.
    /// `who` is written into the file for others to read (e.g. the command line).
    pub fn acquire(path: &Path, wait: Duration, who: &str) -> Result<InstanceLock, CacheError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create directory", parent))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open lock file", path))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(CacheError::Locked {
                        path: path.to_path_buf(),
                        holder: if holder.is_empty() {
                            "unknown holder".into()
                        } else {
                            holder.to_owned()
                        },
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io("lock", path)(e)),
            }
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let note = format!(
            "pid {} on {} since {}: {}\n",
            std::process::id(),
            host.trim(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            redact_urls(who)
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(io("write lock file", path))?;
        Ok(InstanceLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock at `path` now, if anyone (for `vmc doctor`).
    pub fn holder(path: &Path) -> Option<String> {
        let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        match file.try_lock() {
            Ok(()) => None,
            Err(_) => {
                let mut s = String::new();
                file.read_to_string(&mut s).ok()?;
                Some(s.trim().to_owned())
            }
        }
    }
}

/// `who` with the credentials of any URL in it removed: the note is printed by other runs.
fn redact_urls(who: &str) -> String {
    who.split(' ')
        .map(|word| {
            if word.contains("://") {
                vmc_fetch::redact_url(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmc.lock");
        let first = InstanceLock::acquire(&path, Duration::ZERO, "vmc cache sync").unwrap();
        let second = InstanceLock::acquire(&path, Duration::from_millis(250), "vmc cache sync");
        match second {
            Err(CacheError::Locked { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
                assert!(holder.contains("vmc cache sync"));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(InstanceLock::holder(&path).is_some());
        drop(first);
        assert!(InstanceLock::holder(&path).is_none());
        InstanceLock::acquire(&path, Duration::ZERO, "again").unwrap();
    }

    #[test]
    fn the_holder_note_carries_no_url_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmc.lock");
        let _held = InstanceLock::acquire(
            &path,
            Duration::ZERO,
            "vmc subscribe update https://TOKEN:x-oauth-basic@h.example/l --json",
        )
        .unwrap();
        let note = std::fs::read_to_string(&path).unwrap();
        assert!(
            note.contains("vmc subscribe update https://h.example/l --json"),
            "{note}"
        );
        assert!(!note.contains("TOKEN"), "{note}");
    }

    #[test]
    fn waiting_succeeds_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmc.lock");
        let first = InstanceLock::acquire(&path, Duration::ZERO, "first").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        InstanceLock::acquire(&path, Duration::from_secs(30), "second").unwrap();
        releaser.join().unwrap();
    }
}
