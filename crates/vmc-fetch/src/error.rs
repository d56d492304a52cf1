//! Why a fetch or a download failed.
//!
//! Every URL stored in an error has its userinfo (user name, password, token) stripped, so
//! errors can be logged and printed as they are.

use std::io;
use std::path::PathBuf;

use vmc_model::ErrorCode;
use vmc_model::oci::DigestAlgorithm;

/// A fetch or a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL cannot be parsed.
    #[error("invalid url {url}: {reason}")]
    InvalidUrl {
        /// The URL, userinfo stripped.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The URL's scheme is not `http`, `https` or `file`.
    #[error("unsupported url scheme {scheme:?} in {url}")]
    UnsupportedScheme {
        /// The URL, userinfo stripped.
        url: String,
        /// The scheme found.
        scheme: String,
    },

    /// The expected digest is not 128 hexadecimal digits.
    #[error("expected sha512 {value:?} is not 128 hexadecimal digits")]
    InvalidDigest {
        /// The value given.
        value: String,
    },

    /// The proxy setting cannot be used.
    #[error("invalid proxy {proxy}")]
    InvalidProxy {
        /// The proxy URL, userinfo stripped.
        proxy: String,
        /// Why it was refused, when the HTTP library said.
        #[source]
        source: Option<ureq::Error>,
    },

    /// The system's root certificates or an extra root certificate cannot be used.
    #[error("cannot load root certificates from {what}")]
    RootCertificates {
        /// Which certificates (a file or "extra roots").
        what: String,
        /// The cause.
        #[source]
        source: openssl::error::ErrorStack,
    },

    /// A CA bundle given for TLS verification cannot be read.
    #[error("cannot read the ca bundle {path}")]
    CaBundleUnreadable {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A CA bundle given for TLS verification holds no PEM certificate (so it would trust
    /// nothing, or something other than the file meant).
    #[error("ca bundle {path} holds no pem certificate")]
    CaBundleEmpty {
        /// The file.
        path: PathBuf,
    },

    /// No connection could be made (name resolution, refused, unreachable).
    #[error("cannot connect for {url}")]
    Connect {
        /// The URL, userinfo stripped.
        url: String,
        /// The cause.
        #[source]
        source: ureq::Error,
    },

    /// The TLS handshake failed, most often because the server certificate is not trusted
    /// or does not name the host.
    #[error("tls handshake failed for {url}")]
    Tls {
        /// The URL, userinfo stripped.
        url: String,
        /// The cause.
        #[source]
        source: ureq::Error,
    },

    /// A connect, read or overall timeout expired.
    #[error("timed out fetching {url}")]
    Timeout {
        /// The URL, userinfo stripped.
        url: String,
    },

    /// The server redirected more often than allowed (or in a loop).
    #[error("too many redirects fetching {url}")]
    TooManyRedirects {
        /// The URL, userinfo stripped.
        url: String,
    },

    /// The server answered with an HTTP status that is not a success.
    #[error("http status {code} fetching {url}")]
    Status {
        /// The URL, userinfo stripped.
        url: String,
        /// The HTTP status code.
        code: u16,
    },

    /// The connection failed while the request or the body was in transit (reset, broken).
    #[error("network error fetching {url}")]
    Network {
        /// The URL, userinfo stripped.
        url: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The server sent a response that is not valid HTTP.
    #[error("protocol error fetching {url}")]
    Protocol {
        /// The URL, userinfo stripped.
        url: String,
        /// The cause.
        #[source]
        source: ureq::Error,
    },

    /// The body ended before it was complete.
    #[error("body of {url} ended after {received} of {expected} bytes")]
    Truncated {
        /// The URL, userinfo stripped.
        url: String,
        /// Bytes of the file present when the body ended.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },

    /// A resumed download got a `Content-Range` that does not continue the partial file.
    #[error("unexpected content-range {value:?} fetching {url}")]
    BadContentRange {
        /// The URL, userinfo stripped.
        url: String,
        /// The header value received (empty when missing).
        value: String,
    },

    /// A body is larger than the limit for it.
    #[error("body of {url} is over the limit of {limit} bytes")]
    TooLarge {
        /// The URL, userinfo stripped.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// The file's size is not the expected size (announced by the server, or received).
    #[error("size of {url} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The URL, userinfo stripped.
        url: String,
        /// The expected size.
        expected: u64,
        /// The size announced or received (`expected + 1` when the body ran past the end).
        actual: u64,
    },

    /// The downloaded file's digest (SHA-512 of list images, the blob digest of registry
    /// layers) is not the expected one.
    #[error("{algorithm} of {url} is {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The URL, userinfo stripped.
        url: String,
        /// The digest algorithm.
        algorithm: DigestAlgorithm,
        /// The expected digest (lowercase hex).
        expected: String,
        /// The digest of the bytes received (lowercase hex).
        actual: String,
    },

    /// A local file could not be read or written.
    #[error("i/o error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// Plain `http` was asked for a registry that is not on a loopback address.
    #[error(
        "plain http is refused for registry {registry}: only loopback addresses may be reached without tls"
    )]
    PlainHttpRefused {
        /// The registry (`host[:port]`).
        registry: String,
    },

    /// A `WWW-Authenticate` challenge cannot be answered.
    #[error("cannot answer the authentication challenge of {url}: {reason}")]
    AuthChallenge {
        /// The URL that was refused.
        url: String,
        /// Why (no challenge, unsupported scheme, no credentials for it, …).
        reason: &'static str,
    },

    /// A token endpoint (the challenge's `realm`) is plain `http` on a host that is not
    /// loopback: credentials are never sent there.
    #[error("token realm {realm} is plain http: credentials are only sent over tls")]
    InsecureRealm {
        /// The realm URL.
        realm: String,
    },

    /// The registry refused the authorization in use (a bearer token that expired during a
    /// long download) and a new one could not be obtained.
    #[error("the registry refused the authorization for {url} and it could not be renewed")]
    TokenRenewal {
        /// The URL that was refused.
        url: String,
        /// Why no new token came.
        #[source]
        source: Box<FetchError>,
    },

    /// The token endpoint answered without a usable token.
    #[error("token endpoint {realm} gave no usable token: {reason}")]
    BadToken {
        /// The realm URL.
        realm: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// A registry answer is not what the distribution spec says (JSON, names, links).
    #[error("unexpected registry answer from {url}: {reason}")]
    RegistryResponse {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },

    /// The registry served content whose digest is not the one it was asked for (or that it
    /// named itself in `Docker-Content-Digest`).
    #[error("registry served {actual} for {url}, which names {expected}")]
    DigestMismatch {
        /// The URL.
        url: String,
        /// The digest asked for or announced.
        expected: String,
        /// The digest of what came.
        actual: String,
    },

    /// A manifest the registry served is refused.
    #[error("manifest {url} is refused")]
    Manifest {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: vmc_model::OciError,
    },

    /// Another failure reported by the HTTP library.
    #[error("request failed for {url}")]
    Http {
        /// The URL, userinfo stripped.
        url: String,
        /// The cause.
        #[source]
        source: ureq::Error,
    },
}

impl FetchError {
    /// The contract's error code: `checksum_mismatch`, `size_mismatch`, `disk_full` (no space
    /// left on the device) or `fetch_failed`.
    pub fn code(&self) -> ErrorCode {
        match self {
            FetchError::ChecksumMismatch { .. } | FetchError::DigestMismatch { .. } => {
                ErrorCode::ChecksumMismatch
            }
            FetchError::SizeMismatch { .. } => ErrorCode::SizeMismatch,
            FetchError::Io { source, .. } if is_disk_full(source) => ErrorCode::DiskFull,
            _ => ErrorCode::FetchFailed,
        }
    }

    /// Whether trying again later may succeed: connection failures, resets, timeouts,
    /// truncated bodies and 5xx statuses. Never a 4xx status, a size or digest mismatch, a
    /// TLS verification failure or a local I/O error.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Connect { .. }
            | FetchError::Timeout { .. }
            | FetchError::Network { .. }
            | FetchError::Truncated { .. }
            | FetchError::BadContentRange { .. } => true,
            FetchError::Status { code, .. } => (500..600).contains(code) || *code == 408,
            _ => false,
        }
    }
}

/// Whether an I/O error means the file system is full (ENOSPC or EDQUOT).
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(28 | 122))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let url = String::from("http://h/x");
        let full = FetchError::Io {
            path: PathBuf::from("/p"),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(full.code(), ErrorCode::DiskFull);
        let other = FetchError::Io {
            path: PathBuf::from("/p"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(other.code(), ErrorCode::FetchFailed);
        let size = FetchError::SizeMismatch {
            url: url.clone(),
            expected: 1,
            actual: 2,
        };
        assert_eq!(size.code(), ErrorCode::SizeMismatch);
        assert!(!size.is_transient());
        let sum = FetchError::ChecksumMismatch {
            url: url.clone(),
            algorithm: DigestAlgorithm::Sha512,
            expected: "a".into(),
            actual: "b".into(),
        };
        assert_eq!(sum.code(), ErrorCode::ChecksumMismatch);
        assert!(!sum.is_transient());
        let s500 = FetchError::Status {
            url: url.clone(),
            code: 503,
        };
        assert!(s500.is_transient());
        assert_eq!(s500.code(), ErrorCode::FetchFailed);
        let s404 = FetchError::Status { url, code: 404 };
        assert!(!s404.is_transient());
    }
}
