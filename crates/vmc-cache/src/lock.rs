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
        // The holder writes its note just after taking the lock and empties the file just
        // before letting go: a run that finds the lock held but the note empty looks again a
        // few times before calling the holder unknown.
        let mut note_retries = NOTE_RETRIES;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => match read_note(&mut file) {
                    Some(holder) => {
                        return Err(CacheError::Locked {
                            path: path.to_path_buf(),
                            holder,
                        });
                    }
                    None if note_retries > 0 => {
                        note_retries -= 1;
                        std::thread::sleep(NOTE_RETRY_PAUSE);
                    }
                    None => {
                        return Err(CacheError::Locked {
                            path: path.to_path_buf(),
                            holder: "unknown holder".into(),
                        });
                    }
                },
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
        // Written over the old content, then cut to length: the file is not empty in between.
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(note.as_bytes()))
            .and_then(|()| file.set_len(note.len() as u64))
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
            Err(_) => Some(read_note(&mut file).unwrap_or_else(|| "unknown holder".into())),
        }
    }
}

/// How many times, and how long apart, a run that finds the lock held with no note looks again.
const NOTE_RETRIES: u32 = 50;
const NOTE_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The holder's note: the first line of the lock file, if there is one yet.
fn read_note(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    let line = text.lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.to_owned())
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
    fn a_note_written_just_after_the_lock_is_taken_still_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmc.lock");
        // Another holder that has taken the lock but not yet written its note.
        let mut holder = File::create(&path).unwrap();
        holder.lock().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            holder
                .write_all(b"pid 4242 on h since now: vmc cache sync\n")
                .unwrap();
            holder
        });
        let refused = InstanceLock::acquire(&path, Duration::ZERO, "vmc subscribe update");
        let holder = writer.join().unwrap();
        match refused {
            Err(CacheError::Locked { holder, .. }) => {
                assert!(holder.contains("pid 4242"), "{holder}")
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        // A holder that never writes a note is reported as unknown, after a bounded wait.
        holder.set_len(0).unwrap();
        match InstanceLock::acquire(&path, Duration::ZERO, "vmc subscribe update") {
            Err(CacheError::Locked { holder, .. }) => assert_eq!(holder, "unknown holder"),
            other => panic!("expected Locked, got {other:?}"),
        }
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
