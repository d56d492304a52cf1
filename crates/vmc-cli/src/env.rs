//! Every environment variable the `vmc` binary reads, in one place (the README's table mirrors
//! this file). Flags win over the environment, the first variable listed wins over later ones.

/// Home directory for the database and the default cache directories.
pub const VMC_HOME: &str = "VMC_HOME";
/// Database URL.
pub const VMC_DATABASE: &str = "VMC_DATABASE";
/// vmcatcher's name for the database URL.
pub const VMCATCHER_RDBMS: &str = "VMCATCHER_RDBMS";
/// CA directory.
pub const VMC_CA_DIR: &str = "VMC_CA_DIR";
/// vmcatcher's name for the CA directory.
pub const VMCATCHER_DIR_CERT: &str = "VMCATCHER_DIR_CERT";
/// Cache directory.
pub const VMC_CACHE_DIR: &str = "VMC_CACHE_DIR";
/// vmcatcher's name for the cache directory.
pub const VMCATCHER_CACHE_DIR_CACHE: &str = "VMCATCHER_CACHE_DIR_CACHE";
/// Directory of downloads in progress.
pub const VMC_PARTIAL_DIR: &str = "VMC_PARTIAL_DIR";
/// vmcatcher's name for the download directory.
pub const VMCATCHER_CACHE_DIR_DOWNLOAD: &str = "VMCATCHER_CACHE_DIR_DOWNLOAD";
/// Directory of expired images.
pub const VMC_EXPIRED_DIR: &str = "VMC_EXPIRED_DIR";
/// vmcatcher's name for the expired directory.
pub const VMCATCHER_CACHE_DIR_EXPIRE: &str = "VMCATCHER_CACHE_DIR_EXPIRE";
/// Event handler command.
pub const VMC_EVENT_HANDLER: &str = "VMC_EVENT_HANDLER";
/// vmcatcher's name for the event handler.
pub const VMCATCHER_CACHE_EVENT: &str = "VMCATCHER_CACHE_EVENT";
/// CRL mode: `require`, `if-present` or `off`.
pub const VMC_CRL: &str = "VMC_CRL";
/// `--node`: this node's name in the site (default: the host name).
pub const VMC_NODE: &str = "VMC_NODE";
/// `--cache-mode`: `shared` or `per-node`.
pub const VMC_CACHE_MODE: &str = "VMC_CACHE_MODE";
/// `--node-url`: where the other nodes copy this node's cached files from.
pub const VMC_NODE_URL: &str = "VMC_NODE_URL";
/// `--events`: `site` or `node`.
pub const VMC_EVENTS: &str = "VMC_EVENTS";
/// `--lease-time`.
pub const VMC_LEASE_TIME: &str = "VMC_LEASE_TIME";
/// `--refresh-interval`.
pub const VMC_REFRESH_INTERVAL: &str = "VMC_REFRESH_INTERVAL";
/// `--timeout`.
pub const VMC_TIMEOUT: &str = "VMC_TIMEOUT";
/// `json` selects JSON output.
pub const VMC_OUTPUT: &str = "VMC_OUTPUT";
/// Evaluate lists and cache state as if it were this RFC 3339 time (for tests, and to see how
/// a feed will fare on a given day). Unset means the system clock.
pub const VMC_NOW: &str = "VMC_NOW";
/// `1` (or `true`): reach OCI registries on loopback over plain http (tests, a local
/// mirror); others are always https.
pub const VMC_OCI_PLAIN_HTTP: &str = "VMC_OCI_PLAIN_HTTP";
/// A PEM bundle: OCI registries' TLS is verified against its CAs alone (not the system roots
/// nor the CA directory).
pub const VMC_OCI_CA_FILE: &str = "VMC_OCI_CA_FILE";
/// A tracing filter for the log on stderr (e.g. `vmc=debug`).
pub const VMC_LOG: &str = "VMC_LOG";
/// `cache sync --publish`.
pub const VMC_PUBLISH: &str = "VMC_PUBLISH";
/// The publication target's name.
pub const VMC_PUBLISH_TARGET: &str = "VMC_PUBLISH_TARGET";
/// The visibility of published images.
pub const VMC_PUBLISH_VISIBILITY: &str = "VMC_PUBLISH_VISIBILITY";
/// The grace time before a replaced or expired image is deleted.
pub const VMC_PUBLISH_GRACE: &str = "VMC_PUBLISH_GRACE";
/// A Glance without Keystone (trusted identity headers).
pub const VMC_GLANCE_URL: &str = "VMC_GLANCE_URL";
/// The project id sent to that Glance.
pub const VMC_GLANCE_PROJECT: &str = "VMC_GLANCE_PROJECT";
/// The disk format published images are converted to.
pub const VMC_PUBLISH_DISK_FORMAT: &str = "VMC_PUBLISH_DISK_FORMAT";
/// Where converted files are kept.
pub const VMC_CONVERTED_DIR: &str = "VMC_CONVERTED_DIR";
/// The clouds.yaml entry (as the OpenStack tools read it).
pub const OS_CLOUD: &str = "OS_CLOUD";
/// Where clouds.yaml is (as the OpenStack tools read it).
pub const OS_CLIENT_CONFIG_FILE: &str = "OS_CLIENT_CONFIG_FILE";
/// Disables colour when set to anything.
pub const NO_COLOR: &str = "NO_COLOR";
/// The value of the first of `names` that is set and not empty.
pub fn first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}
