//! Temporary file names unique to their writer, for the write-then-rename of a file that
//! several processes (or threads) may write at the same time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden sibling of `path` for writing it before a rename into place:
/// `<dir>/.<name>.<pid>.<n>.<random>.tmp`. The process id and a per-process counter keep
/// writers of one host apart, the random part writers of different hosts sharing a directory.
pub fn unique_tmp_path(path: &Path) -> PathBuf {
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
    dir.join(format!(".{name}.{}.{n}.{salt}.tmp", std::process::id()))
}

/// Whether `name` has the form [`unique_tmp_path`] gives (`.<name>.<pid>.<n>.<random>.tmp`),
/// so that a file left by a crashed writer can be told from anybody else's.
pub fn is_unique_tmp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
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
        ] {
            assert!(!is_unique_tmp_name(other), "{other}");
        }
    }
}
