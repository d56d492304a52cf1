//! Digests beside the I/O: buffers go to a hashing thread through a bounded channel and come
//! back for reuse, so memory stays flat (a few large buffers) whatever the file size, and the
//! bytes are hashed in the same pass that writes or reads them. SHA-512 for list images,
//! SHA-256 for registry blobs: one branch per 128 KiB buffer picks the function.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use openssl::sha::{Sha256, Sha512};
use vmc_model::oci::DigestAlgorithm;

/// Size of one buffer. 4 × 128 KiB fit the L2 cache the hashing thread reads them from: a 1 GiB
/// download took 2.5 s and 3.3 CPU s with them, against 3.3 s and 5.0 CPU s with 4 × 1 MiB
/// (`cargo xtask bench --only download --size 1G`; 64 KiB and 8 buffers changed nothing).
pub(crate) const BUFFER_SIZE: usize = 128 << 10;

/// Buffers in flight at most (so the memory bound is `BUFFERS * BUFFER_SIZE`).
const BUFFERS: usize = 4;

/// The running state of one digest.
pub(crate) enum Sha {
    /// SHA-256.
    Sha256(Box<Sha256>),
    /// SHA-512.
    Sha512(Box<Sha512>),
}

impl Sha {
    pub(crate) fn new(algorithm: DigestAlgorithm) -> Sha {
        match algorithm {
            DigestAlgorithm::Sha256 => Sha::Sha256(Box::new(Sha256::new())),
            DigestAlgorithm::Sha512 => Sha::Sha512(Box::new(Sha512::new())),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Sha::Sha256(sha) => sha.update(data),
            Sha::Sha512(sha) => sha.update(data),
        }
    }

    /// The digest, lowercase hex.
    pub(crate) fn finish(self) -> String {
        match self {
            Sha::Sha256(sha) => hex::encode(sha.finish()),
            Sha::Sha512(sha) => hex::encode(sha.finish()),
        }
    }
}

/// A digest computed beside the caller, fed with filled buffers.
pub(crate) struct Hasher {
    mode: Mode,
}

enum Mode {
    /// Hashing in a thread of its own.
    Threaded {
        to_worker: Option<SyncSender<(Vec<u8>, usize)>>,
        from_worker: Receiver<Vec<u8>>,
        worker: Option<JoinHandle<String>>,
        spare: Vec<Vec<u8>>,
        allocated: usize,
    },
    /// Hashing in the caller's thread (when no thread could be started).
    Inline { sha: Option<Sha>, buffer: Vec<u8> },
}

impl Hasher {
    /// Starts a hasher for `algorithm` (with its thread when possible).
    pub(crate) fn new(algorithm: DigestAlgorithm) -> Hasher {
        let (to_worker, rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let (tx_back, from_worker) = mpsc::channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new()
            .name(format!("vmc-{algorithm}"))
            .spawn(move || {
                let mut sha = Sha::new(algorithm);
                for (buf, len) in rx {
                    sha.update(&buf[..len.min(buf.len())]);
                    // The receiver is gone only when the hasher was dropped: nothing to do.
                    let _ = tx_back.send(buf);
                }
                sha.finish()
            });
        let mode = match spawned {
            Ok(worker) => Mode::Threaded {
                to_worker: Some(to_worker),
                from_worker,
                worker: Some(worker),
                spare: Vec::new(),
                allocated: 0,
            },
            Err(error) => {
                tracing::debug!(%error, "cannot start a hashing thread, hashing inline");
                Mode::Inline {
                    sha: Some(Sha::new(algorithm)),
                    buffer: Vec::new(),
                }
            }
        };
        Hasher { mode }
    }

    /// A buffer to fill (with [`fill`]) and hand back with [`Hasher::submit`]. Its length is
    /// whatever it was last time (buffers are not cleared, to spare a `memset` per buffer).
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        match &mut self.mode {
            Mode::Threaded {
                from_worker,
                spare,
                allocated,
                ..
            } => {
                if let Some(buf) = spare.pop() {
                    buf
                } else if *allocated < BUFFERS {
                    *allocated += 1;
                    Vec::with_capacity(BUFFER_SIZE)
                } else {
                    // All buffers are queued for hashing: wait for one. If the worker died
                    // (it cannot panic in practice), go on with a fresh buffer.
                    from_worker
                        .recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BUFFER_SIZE))
                }
            }
            Mode::Inline { buffer, .. } => std::mem::take(buffer),
        }
    }

    /// Hashes the first `len` bytes of `buf` (asynchronously when threaded); the buffer comes
    /// back through [`Hasher::buffer`].
    pub(crate) fn submit(&mut self, buf: Vec<u8>, len: usize) {
        match &mut self.mode {
            Mode::Threaded {
                to_worker, spare, ..
            } => {
                if len == 0 {
                    spare.push(buf);
                } else if let Some(tx) = to_worker {
                    // A send fails only if the worker is gone, which `finish` reports.
                    let _ = tx.send((buf, len));
                }
            }
            Mode::Inline { sha, buffer } => {
                if let Some(sha) = sha {
                    sha.update(&buf[..len.min(buf.len())]);
                }
                *buffer = buf;
            }
        }
    }

    /// Waits for every submitted byte to be hashed and returns the digest (lowercase hex).
    pub(crate) fn finish(mut self) -> io::Result<String> {
        let digest = match &mut self.mode {
            Mode::Threaded {
                to_worker, worker, ..
            } => {
                drop(to_worker.take());
                let handle = worker
                    .take()
                    .ok_or_else(|| io::Error::other("hashing thread already joined"))?;
                handle
                    .join()
                    .map_err(|_| io::Error::other("hashing thread panicked"))?
            }
            Mode::Inline { sha, .. } => sha
                .take()
                .ok_or_else(|| io::Error::other("hash already finished"))?
                .finish(),
        };
        Ok(digest)
    }

    /// Reads `len` bytes of `reader` (or up to its end) into the hash, with the same buffers.
    /// Returns the bytes read.
    pub(crate) fn feed(&mut self, reader: &mut impl Read, len: u64) -> io::Result<u64> {
        let mut done = 0u64;
        while done < len {
            let mut buf = self.buffer();
            let want = usize::try_from(len - done)
                .unwrap_or(usize::MAX)
                .min(BUFFER_SIZE);
            let (n, result) = fill(reader, &mut buf, want);
            done += n as u64;
            self.submit(buf, n);
            result?;
            if n < want {
                break;
            }
        }
        Ok(done)
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        if let Mode::Threaded {
            to_worker, worker, ..
        } = &mut self.mode
        {
            drop(to_worker.take());
            if let Some(handle) = worker.take() {
                let _ = handle.join();
            }
        }
    }
}

/// Reads from `reader` into `buf[..want]` (growing `buf` if it is shorter) until `want` bytes
/// or the end. Returns the bytes read, and the error that stopped the reading early if any
/// (the bytes read before it are valid).
pub(crate) fn fill(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    want: usize,
) -> (usize, io::Result<()>) {
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut filled = 0;
    let result = loop {
        if filled == want {
            break Ok(());
        }
        // Never past `want`, even when the buffer is longer: the caller relies on it to take
        // no more than the expected size.
        match reader.read(&mut buf[filled..want]) {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    (filled, result)
}

/// Buffer of [`sha512_file`]: small enough to stay in the L2 cache with the hash state.
const FILE_BUFFER_SIZE: usize = 128 * 1024;

/// The SHA-512 (lowercase hex) of a file, in one pass, in the calling thread.
///
/// Reading a file that is in the page cache is a copy that costs far less than hashing it, so
/// a second thread buys nothing here, while buffers that overflow the L2 cache cost a lot
/// (measured in BENCHMARKS.md: 3.2 s of CPU for 2 GiB with 128 KiB, 4.8–5.7 s with a
/// two-thread pipeline of 1 MiB buffers). Downloads keep the two-thread pipeline, where the
/// network and the disk are the other side.
pub fn sha512_file(path: &Path) -> io::Result<String> {
    digest_file(path, DigestAlgorithm::Sha512)
}

/// The digest (lowercase hex) of a file with `algorithm`, as [`sha512_file`] does it.
pub fn digest_file(path: &Path, algorithm: DigestAlgorithm) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha::new(algorithm);
    let mut buffer = vec![0u8; FILE_BUFFER_SIZE];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fill_never_reads_past_want_into_a_longer_buffer() {
        let data = vec![7u8; 1000];
        let mut buf = vec![0u8; 4096];
        let (n, result) = fill(&mut data.as_slice(), &mut buf, 5);
        assert!(result.is_ok());
        assert_eq!(n, 5);
        let mut reader = data.as_slice();
        let (n, _) = fill(&mut reader, &mut buf, 5);
        assert_eq!(
            (n, reader.len()),
            (5, 995),
            "exactly `want` bytes were taken"
        );
    }

    fn reference(data: &[u8]) -> String {
        hex::encode(openssl::sha::sha512(data))
    }

    #[test]
    fn threaded_hash_matches_one_shot_hash_across_buffer_boundaries() {
        let data: Vec<u8> = (0..(BUFFER_SIZE * 5 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut hasher = Hasher::new(DigestAlgorithm::Sha512);
        let fed = hasher.feed(&mut &data[..], u64::MAX).unwrap();
        assert_eq!(fed, data.len() as u64);
        assert_eq!(hasher.finish().unwrap(), reference(&data));
    }

    #[test]
    fn feed_stops_at_the_requested_length() {
        let data = vec![42u8; 3 * BUFFER_SIZE];
        let mut hasher = Hasher::new(DigestAlgorithm::Sha512);
        let len = BUFFER_SIZE as u64 + 7;
        assert_eq!(hasher.feed(&mut &data[..], len).unwrap(), len);
        assert_eq!(hasher.finish().unwrap(), reference(&data[..len as usize]));
    }

    #[test]
    fn sha256_hasher_matches_the_one_shot_sha256() {
        let data: Vec<u8> = (0..(BUFFER_SIZE * 3 + 99))
            .map(|i| (i % 241) as u8)
            .collect();
        let mut hasher = Hasher::new(DigestAlgorithm::Sha256);
        hasher.feed(&mut &data[..], u64::MAX).unwrap();
        assert_eq!(
            hasher.finish().unwrap(),
            hex::encode(openssl::sha::sha256(&data))
        );
    }

    #[test]
    fn empty_input_hashes_to_the_empty_digest() {
        let hasher = Hasher::new(DigestAlgorithm::Sha512);
        assert_eq!(hasher.finish().unwrap(), reference(b""));
    }

    #[test]
    fn sha512_file_matches_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        assert_eq!(sha512_file(&path).unwrap(), reference(&data));
        assert!(sha512_file(&dir.path().join("missing")).is_err());
    }
}
