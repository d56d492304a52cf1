//! The explicit configuration of a vmc instance: built once by the caller (the CLI or another
//! Rust program), then frozen. The library reads no environment variables.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vmc_fetch::ClientConfig;
use vmc_trust::CrlMode;

/// Where "now" comes from. Tests and benchmarks pin it; production uses the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that always answers `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(move || at))
    }

    /// A clock driven by any function (e.g. one a test advances).
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The current time by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// A URL prefix rewrite, as sites use to fetch images from a local mirror
/// (`http://appliances.example.org/` → `http://mirror.site/`). Lists are still verified against
/// their signed `hv:uri`s and checksums; only where the bytes come from changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The prefix of the URL as the list writes it.
    pub from: String,
    /// What to put in its place.
    pub to: String,
}

/// Everything a [`crate::Vmc`] needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database URL (`sqlite://…`, a plain path, or `postgres://…`).
    pub database_url: String,
    /// The CA directory (IGTF layout).
    pub ca_dir: PathBuf,
    /// Verified images, plus `cache.index`.
    pub cache_dir: PathBuf,
    /// Downloads in progress.
    pub partial_dir: PathBuf,
    /// Retired images.
    pub expired_dir: PathBuf,
    /// The instance lock file (one per home).
    pub lock_file: PathBuf,
    /// How revocation is checked.
    pub crl: CrlMode,
    /// Command run through `/bin/sh -c` for every event.
    pub event_handler: Option<String>,
    /// How long one handler run may take before its process group is killed.
    pub event_timeout: Duration,
    /// The HTTP client's settings.
    pub http: ClientConfig,
    /// Largest list accepted, in bytes (spec check 1).
    pub max_list_bytes: u64,
    /// Allowed clock skew for `dc:date:created` (spec check 9).
    pub created_skew: Duration,
    /// URL prefix rewrites for downloads and list fetches.
    pub mirrors: Vec<Mirror>,
    /// The `VMCATCHER_RDBMS` value handed to event handlers (the database URL without secrets).
    pub rdbms_for_handlers: Option<String>,
    /// Where "now" comes from.
    pub clock: Clock,
    /// This node's name in the site (unique per site; the host name by default): the holder
    /// named in leases and in `vmc node list`.
    pub node: String,
    /// How long a lease on site-wide work lasts unless renewed; the heartbeat beats every
    /// third of it.
    pub lease_time: Duration,
    /// A list another node updated less than this long ago is not fetched again.
    pub refresh_interval: Duration,
    /// Reach OCI registries on loopback (`127.0.0.1`, `::1`, `localhost`) over plain `http`
    /// (tests, a local mirror); every other registry is always `https`.
    pub oci_plain_http: bool,
    /// How the nodes of the site hold their caches: one directory they all mount (the
    /// default, and a one-node site), or one each.
    pub cache_mode: CacheMode,
    /// Where the other nodes copy this node's cached files from (its cache directory as the
    /// site's web server serves it), with per-node caches.
    pub node_url: Option<String>,
    /// Whose handler runs a site event: the node that did the work (once per site, the
    /// default) or, with per-node caches, every node for its own cache.
    pub event_scope: EventScope,
    /// A PEM bundle of CA certificates: when set, the TLS of OCI registries (and of their
    /// token realms) is verified against these certificates alone, instead of the system
    /// roots and the CA directory (a site's own registry or mirror with a private CA).
    pub oci_ca_file: Option<PathBuf>,
}

/// How the nodes of a site sharing one database hold their caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// One cache directory for the site (one node, or a file system every node mounts): each
    /// image is downloaded once, by the node holding its download lease.
    #[default]
    Shared,
    /// A cache directory per node: one node downloads an image from upstream, the others
    /// copy it from that node's cache (its `node_url`).
    PerNode,
}

impl CacheMode {
    /// `shared` or `per-node`, as `--cache-mode` takes it and the node table records it.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheMode::Shared => "shared",
            CacheMode::PerNode => "per-node",
        }
    }
}

/// Whose handler runs an event about the site's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventScope {
    /// Once per site, by the node that did the work (downloaded from upstream, expired).
    #[default]
    Site,
    /// With per-node caches: every node, for the changes to its own cache (copies from peers
    /// included), e.g. a handler that registers the image with the hypervisor it runs on.
    Node,
}

impl Config {
    /// A configuration with the contract's defaults below `home`:
    /// `home/vmc.db`, `home/cache`, `home/partial`, `home/expired`, `home/vmc.lock`, the CA
    /// directory `/etc/grid-security/certificates`, CRL mode `require`, no event handler, the
    /// host name as node name, leases of 120 s, lists refreshed after 10 minutes.
    pub fn with_home(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        Self {
            database_url: format!("sqlite://{}", home.join("vmc.db").display()),
            ca_dir: PathBuf::from("/etc/grid-security/certificates"),
            cache_dir: home.join("cache"),
            partial_dir: home.join("partial"),
            expired_dir: home.join("expired"),
            lock_file: home.join("vmc.lock"),
            crl: CrlMode::Require,
            event_handler: None,
            event_timeout: Duration::from_secs(300),
            http: ClientConfig::default(),
            max_list_bytes: 16 * 1024 * 1024,
            created_skew: Duration::from_secs(300),
            mirrors: Vec::new(),
            rdbms_for_handlers: None,
            clock: Clock::system(),
            node: crate::node::host_name(),
            lease_time: Duration::from_secs(120),
            refresh_interval: Duration::from_secs(600),
            oci_plain_http: false,
            cache_mode: CacheMode::Shared,
            node_url: None,
            event_scope: EventScope::Site,
            oci_ca_file: None,
        }
    }

    /// How long an announced event may wait in the outbox, claimed by a run of another node,
    /// before a run of this node takes it to be orphaned: the lease time (the run may be alive
    /// and about to deliver it) plus the handler timeout (it may be running its handler).
    pub fn event_replay_grace(&self) -> Duration {
        self.lease_time + self.event_timeout
    }

    /// `url` with the first matching mirror rewrite applied.
    pub fn rewrite_url(&self, url: &str) -> String {
        self.mirrors
            .iter()
            .find_map(|m| {
                url.strip_prefix(&m.from)
                    .map(|rest| format!("{}{rest}", m.to))
            })
            .unwrap_or_else(|| url.to_owned())
    }
}
