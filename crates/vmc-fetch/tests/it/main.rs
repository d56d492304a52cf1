//! Integration tests of vmc-fetch against the loopback test server of vmc-testkit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod download;
mod fetch;
mod oci;
mod proxy;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use vmc_fetch::{Client, ClientConfig, DownloadOutcome, DownloadRequest, FetchError, Reporter};
use vmc_testkit::server::{Route, TestServer};

/// A configuration for tests: short timeouts, no retries, tiny backoff, no system roots.
pub fn config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        list_timeout: Duration::from_secs(10),
        retries: 0,
        backoff: Duration::from_millis(5),
        system_roots: false,
        ..ClientConfig::default()
    }
}

/// A client built from [`config`] with `retries`.
pub fn client(retries: u32) -> Client {
    Client::new(ClientConfig {
        retries,
        ..config()
    })
    .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so that offsets matter to the digest.
pub fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-512, lowercase hex.
pub fn sha(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha512(data))
}

/// Downloads `url` to `dest`, expecting `data`.
pub fn download(
    client: &Client,
    url: &str,
    dest: &Path,
    data: &[u8],
) -> Result<DownloadOutcome, FetchError> {
    download_expecting(
        client,
        url,
        dest,
        data.len() as u64,
        &sha(data),
        &Recorder::default(),
    )
}

/// Downloads with explicit expectations and reporter.
pub fn download_expecting(
    client: &Client,
    url: &str,
    dest: &Path,
    size: u64,
    sha512: &str,
    reporter: &dyn Reporter,
) -> Result<DownloadOutcome, FetchError> {
    client.download(
        &DownloadRequest {
            url,
            credentials: None,
            dest,
            expected_size: size,
            expected_sha512: sha512,
        },
        reporter,
    )
}

/// A reporter that remembers what it was told.
#[derive(Default)]
pub struct Recorder {
    /// Each `started` call: URL, total, resumed from.
    pub started: Mutex<Vec<(String, u64, u64)>>,
    /// The largest `done` reported.
    pub max_done: AtomicU64,
    /// The last `done` reported.
    pub last_done: AtomicU64,
    /// How often `finished` was called.
    pub finished: AtomicUsize,
}

impl Reporter for Recorder {
    fn started(&self, url: &str, total: u64, resumed_from: u64) {
        self.started
            .lock()
            .unwrap()
            .push((url.to_owned(), total, resumed_from));
    }
    fn progress(&self, done: u64) {
        self.max_done.fetch_max(done, Ordering::SeqCst);
        self.last_done.store(done, Ordering::SeqCst);
    }
    fn finished(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// A temporary partial directory and the path of one partial file in it.
pub fn partial() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("partial").join("image-1");
    (dir, dest)
}

/// Starts a loopback test server that serves `route` at `path`, and makes a fresh partial file
/// (see [`partial`]) to download it into.
///
/// Keep the returned `TempDir` alive (e.g. as `_dir`) for as long as the partial file is used.
pub fn serve_with_partial(path: &str, route: Route) -> (TestServer, tempfile::TempDir, PathBuf) {
    let server = TestServer::start();
    server.add(path, route);
    let (dir, dest) = partial();
    (server, dir, dest)
}
