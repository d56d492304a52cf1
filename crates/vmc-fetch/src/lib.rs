//! Fetching for vmc: image lists into memory, images into the partial directory.
//!
//! One [`Client`] is built from a [`ClientConfig`] (timeouts, redirects, User-Agent, proxy,
//! TLS roots: the system's plus the site's CA directory) and shared by parallel downloads.
//!
//! - [`Client::fetch_bytes`] reads a small document (a list) with a size cap.
//! - [`Client::download`] streams an image to a partial file, hashing it with SHA-512 in a
//!   second thread in the same pass, resumes interrupted downloads with `Range`/`If-Range`,
//!   retries transient failures with exponential backoff, and checks size and digest.
//! - [`sha512_file`] re-hashes a cached file (for `cache verify`); [`digest_file`] with
//!   another algorithm.
//! - [`oci::Registry`] reads an OCI registry (tags, manifests by tag then by digest, blobs
//!   through the same verified, resumable download, with SHA-256), answering its
//!   `WWW-Authenticate` challenges (Basic, or the bearer-token flow).
//!
//! `http`, `https` and `file` URLs are accepted. Credentials (HTTP Basic, also from a URL's
//! userinfo, or a bearer token) are never logged: [`Credentials`]' `Debug` form hides them and
//! every URL in logs and errors goes through [`redact_url`]. Bodies are taken byte for byte:
//! no content coding is requested or decoded. The library reads no environment variable;
//! certificate verification cannot be turned off.

mod client;
mod config;
mod download;
mod error;
mod hash;
pub mod oci;
mod tmp;
mod url;

use std::path::Path;

pub use client::{Client, load_ca_bundle};
pub use config::{ClientConfig, Credentials, DEFAULT_USER_AGENT};
pub use download::state_path;
pub use error::FetchError;
pub use hash::{digest_file, sha512_file};
pub use tmp::{
    UNLOCKABLE_STALE_AFTER, is_unique_tmp_name, remove_abandoned_replacements, replace_file,
    unique_tmp_path,
};
pub use url::redact_url;

/// What to download, where to, and what it must be.
#[derive(Debug, Clone, Copy)]
pub struct DownloadRequest<'a> {
    /// The image URL (`http`, `https` or `file`; userinfo means Basic credentials).
    pub url: &'a str,
    /// Credentials for this request; they win over the URL's userinfo.
    pub credentials: Option<&'a Credentials>,
    /// The partial file to write (its resume state is kept beside it, see [`state_path`]).
    pub dest: &'a Path,
    /// The size the image must have (`hv:size`).
    pub expected_size: u64,
    /// The SHA-512 the image must have (`sl:checksum:sha512`), hexadecimal.
    pub expected_sha512: &'a str,
}

/// What a successful download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOutcome {
    /// The verified SHA-512 (lowercase hex).
    pub sha512: String,
    /// The verified size.
    pub size: u64,
    /// Body bytes received over the network (or copied from a `file://` URL), all attempts
    /// together.
    pub bytes_transferred: u64,
    /// The offset the successful attempt started from (0 for a whole download).
    pub resumed_from: u64,
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
}

/// Progress of downloads, implemented by the command line (progress bars) or tests. Called
/// from the downloading thread; several downloads may report at once.
pub trait Reporter: Send + Sync {
    /// An attempt starts receiving: `total` bytes expected, `resumed_from` already present.
    fn started(&self, _url: &str, _total: u64, _resumed_from: u64) {}
    /// `done` bytes of the file are present (including resumed ones).
    fn progress(&self, _done: u64) {}
    /// The file is complete and verified.
    fn finished(&self) {}
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_send_sync_and_cheap_to_share() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Client>();
        fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<FetchError>();
    }
}
