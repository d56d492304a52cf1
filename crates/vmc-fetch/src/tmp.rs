//! Temporary file names unique to their writer, for the write-then-rename of a file that
//! several processes (or threads) may write at the same time.
//!
//! [`replace_file`] holds an exclusive `flock` on its temporary file (`….new`) from its
//! creation to its rename, so [`remove_abandoned_replacements`] can tell a crashed writer's leftover (unlocked) from a
//! file being written now (locked), on this host or on another sharing the directory, at once
//! rather than after a timeout.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden sibling of `path` for writing it before a rename into place:
/// `<dir>/.<name>.<pid>.<n>.<random>.tmp`. The process id and a per-process counter keep
/// writers of one host apart, the random part writers of different hosts sharing a directory.
pub fn unique_tmp_path(path: &Path) -> PathBuf {
    unique_path(path, TMP)
}

/// The suffix of [`unique_tmp_path`]'s names.
const TMP: &str = "tmp";
/// The suffix of [`replace_file`]'s temporary names: apart from [`TMP`], so that
/// [`remove_abandoned_replacements`] never takes another writer's unlocked file for one.
const NEW: &str = "new";

fn unique_path(path: &Path, suffix: &str) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 6];
    let salt = match openssl::rand::rand_bytes(&mut random) {
        Ok(()) => hex::encode(random),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            .to_string(),
    };
    dir.join(format!(
        ".{name}.{}.{n}.{salt}.{suffix}",
        std::process::id()
    ))
}

/// Whether `name` has the form [`unique_tmp_path`] gives (`.<name>.<pid>.<n>.<random>.tmp`),
/// so that a file left by a crashed writer can be told from anybody else's.
pub fn is_unique_tmp_name(name: &str) -> bool {
    has_unique_form(name, TMP)
}

fn has_unique_form(name: &str, suffix: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(suffix))
        .and_then(|n| n.strip_suffix('.'))
    else {
        return false;
    };
    let mut parts = rest.rsplitn(4, '.');
    let (Some(salt), Some(n), Some(pid), Some(base)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !base.is_empty()
        && digits(pid)
        && digits(n)
        && !salt.is_empty()
        && salt.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How often [`replace_file`] starts again when its temporary file was swept away by
/// [`remove_abandoned_replacements`] in the instant between its creation and its lock.
const REPLACE_TRIES: usize = 5;

/// Replaces `path` with `bytes` atomically: a temporary file beside it
/// (`.<name>.<pid>.<n>.<random>.new`), created, locked,
/// written, fsynced and renamed over it, so a reader never sees half a file and concurrent
/// writers never write the same temporary file. On failure the temporary file is removed and
/// `path` is as it was; a crash leaves only the temporary file, for
/// [`remove_abandoned_replacements`].
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        let tmp = unique_path(path, NEW);
        let file = write_locked(&tmp, bytes).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        // The file (and its lock) is closed only after the rename.
        match std::fs::rename(&tmp, path) {
            Ok(()) => return Ok(()),
            // Swept before we held the lock: our inode is gone from the directory.
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < REPLACE_TRIES => {}
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
}

/// Creates `tmp` (never an existing file), locks it and writes `bytes` to disk. Returns the
/// open file: its lock lasts until the caller, having renamed it, closes it. A file system
/// without locks (an NFS mount with `nolock`, some FUSE file systems) is written unlocked:
/// there the sweep falls back to the age of the file.
fn write_locked(tmp: &Path, bytes: &[u8]) -> io::Result<std::fs::File> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    if let Err(e) = file.lock()
        && !locks_unsupported(&e)
    {
        return Err(e);
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(file)
}

/// Whether `e` says the file system has no locks (rather than that a lock is held).
fn locks_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(e.raw_os_error(), Some(libc::ENOLCK | libc::EOPNOTSUPP))
}

/// How old a [`replace_file`] temporary file must be before the sweep removes it where its
/// lock cannot be tested (a file system without locks): far longer than any write takes.
pub const UNLOCKABLE_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the temporary files of [`replace_file`] in `dir` whose writer is gone (crashed or
/// killed between creating and renaming one): those that nobody holds locked, at once, on
/// this host or another sharing the directory (on a file system without locks, those older
/// than [`UNLOCKABLE_STALE_AFTER`]). Returns the paths removed.
pub fn remove_abandoned_replacements(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for item in listing.flatten() {
        if !has_unique_form(&item.file_name().to_string_lossy(), NEW) {
            continue;
        }
        let path = item.path();
        // Opened for writing (nothing is written): on NFS, where Linux emulates `flock` with
        // POSIX locks, an exclusive lock needs a descriptor open for writing.
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        // Held while removing: a writer that created the file but has not locked it yet
        // loses its file and starts again (see `replace_file`).
        let abandoned = match file.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => false,
            // No locks here: only the age of the file can tell.
            Err(std::fs::TryLockError::Error(_)) => file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > UNLOCKABLE_STALE_AFTER),
        };
        if abandoned && is_file_at(&file, &path) && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Whether the open `file` is the one at `path` now.
fn is_file_at(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_per_call_and_stay_beside_the_file() {
        let a = unique_tmp_path(Path::new("/c/cache.index"));
        let b = unique_tmp_path(Path::new("/c/cache.index"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/c")));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".cache.index.") && name.ends_with(".tmp"),
            "{name}"
        );
        assert!(
            name.contains(&format!(".{}.", std::process::id())),
            "{name}"
        );
        assert_eq!(
            unique_tmp_path(Path::new("x")).parent(),
            Some(Path::new("."))
        );
    }

    #[test]
    fn unique_names_are_recognised_and_nothing_else() {
        let made = unique_tmp_path(Path::new("/p/img-1"));
        let name = made.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_unique_tmp_name(&name), "{name}");
        assert!(is_unique_tmp_name(".img.a.1.2.0fab.tmp"));
        for other in [
            "img-1",
            ".img-1.tmp",
            ".cache.index.tmp",
            ".notes.tmp",
            ".x.12.3.tmp",
            ".x.1a.3.ff.tmp",
            ".x.1.3.zz.tmp",
            "..1.2.ff.tmp",
            ".x.1.2.ff.tmp.state",
            ".x.1.2.ff.new",
            ".x.1.2.fftmp",
        ] {
            assert!(!is_unique_tmp_name(other), "{other}");
        }
    }

    #[test]
    fn replace_file_writes_atomically_and_leaves_nothing_beside() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("cache.index");
        replace_file(&target, b"one\n").unwrap();
        replace_file(&target, b"two\n").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cache.index"]);
        // A directory that is not there: the error, and no file.
        let gone = dir.path().join("no").join("cache.index");
        assert_eq!(
            replace_file(&gone, b"x").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn abandoned_tmp_files_are_removed_and_held_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("cache.index");
        // A crashed writer's file (nobody holds it), another writer's (locked now), a file of
        // another form and a file of someone else's.
        let abandoned = unique_path(&target, NEW);
        std::fs::write(&abandoned, b"half").unwrap();
        let live = unique_path(&target, NEW);
        let held = std::fs::File::create(&live).unwrap();
        held.lock().unwrap();
        let other = dir.path().join(".cache.index.tmp");
        std::fs::write(&other, b"theirs").unwrap();
        // An unlocked second download of an image is not one of them.
        let download = unique_tmp_path(&dir.path().join("img-1"));
        std::fs::write(&download, b"partial").unwrap();
        std::fs::write(&target, b"index").unwrap();

        assert_eq!(
            remove_abandoned_replacements(dir.path()),
            vec![abandoned.clone()]
        );
        assert!(!abandoned.exists());
        assert!(live.exists() && other.exists() && download.exists() && target.exists());
        // Once its writer lets go, it is abandoned too.
        drop(held);
        assert_eq!(
            remove_abandoned_replacements(dir.path()),
            vec![live.clone()]
        );
        assert!(remove_abandoned_replacements(&dir.path().join("missing")).is_empty());
    }
}
