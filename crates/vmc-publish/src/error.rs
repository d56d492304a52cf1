//! The errors of the publisher: talking to Keystone and Glance, reading the cached file,
//! the configuration, and the database.

use std::path::PathBuf;

/// What went wrong while publishing.
///
/// URLs in these errors carry no credentials (Keystone and Glance URLs never hold any; tokens
/// and secrets travel in headers and bodies only and never appear here).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The request could not be made or its answer not read (connection refused or dropped,
    /// timeout, TLS).
    #[error("{method} {url} failed")]
    Http {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP library's failure.
        #[source]
        source: ureq::Error,
    },
    /// The service answered with an unexpected status.
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body (at most 500 characters).
        body: String,
    },
    /// The service's answer is not what its API says.
    #[error("{url}: unexpected answer: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Keystone refused the credentials.
    #[error("Keystone at {url} refused the credentials ({status})")]
    AuthRejected {
        /// The token URL.
        url: String,
        /// The HTTP status (401, 403).
        status: u16,
    },
    /// The token's catalog has no endpoint for the service.
    #[error("the service catalog has no {interface} endpoint of type {service}{}",
        region.as_deref().map(|r| format!(" in region {r}")).unwrap_or_default())]
    NoEndpoint {
        /// The service type (`image`).
        service: String,
        /// The interface (`public`, `internal`, `admin`).
        interface: String,
        /// The region asked for, if any.
        region: Option<String>,
    },
    /// The cloud configuration is incomplete or contradictory.
    #[error("cloud configuration: {what}: {reason}")]
    Config {
        /// The setting (`OS_AUTH_URL`, `clouds.yaml: clouds.mycloud.auth`…).
        what: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The image service's checksum of an upload is not the file's sha512.
    #[error(
        "image {identifier}: the image service's checksum {found} ({algorithm}) is not the \
         sha512 {expected} of the uploaded file"
    )]
    ChecksumMismatch {
        /// The image id.
        identifier: String,
        /// The sha512 vmc expected.
        expected: String,
        /// What the service reported (empty when it reported none).
        found: String,
        /// The service's hash algorithm (`os_hash_algo`).
        algorithm: String,
    },
    /// The cached file changed since it was verified.
    #[error("image {identifier}: cached file {} no longer has sha512 {expected} (it has {found})", path.display())]
    CachedFileChanged {
        /// The image id.
        identifier: String,
        /// The file.
        path: PathBuf,
        /// The verified sha512.
        expected: String,
        /// The sha512 of what was read.
        found: String,
    },
    /// The image cannot be published as it is.
    #[error("image {identifier}: {reason}")]
    Unpublishable {
        /// The image id.
        identifier: String,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error("database")]
    Store(#[from] vmc_cache::store::StoreError),
}
