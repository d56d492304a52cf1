//! The vmc engine: combines the model, the trust store, the HTTP client and the database into
//! the two halves of the mission — keeping verified image lists current
//! ([`Vmc::subscribe`], [`Vmc::update`], [`Vmc::check`]) and keeping a verified cache of the
//! selected images ([`Vmc::sync`], [`Vmc::download`], [`Vmc::expire`], [`Vmc::verify_cache`]),
//! with events for downstream tools.
//!
//! It is the one crate that knows all adapters; it reads no environment and prints nothing.
//! Build a [`Config`], [`Vmc::open`] it, and call the operations:
//!
//! ```no_run
//! use vmc_cache::{Config, Vmc, NoProgress, SyncOptions};
//! let mut config = Config::with_home("/var/lib/vmc");
//! config.ca_dir = "/etc/grid-security/certificates".into();
//! let vmc = Vmc::open(config)?;
//! let _lock = vmc.lock(std::time::Duration::ZERO, "my-tool")?;
//! let report = vmc.sync(&SyncOptions::default(), &NoProgress)?;
//! assert!(!report.has_failures());
//! # Ok::<(), vmc_cache::CacheError>(())
//! ```

pub mod config;
pub mod doctor;
pub mod error;
pub mod events;
pub mod import;
pub mod index;
pub mod lock;
pub mod metrics;
pub mod node;
pub mod oci;
pub mod report;
pub mod sync;
pub mod update;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use config::{CacheMode, Clock, Config, EventScope, Mirror};
pub use error::CacheError;
pub use events::{Dispatcher, Event};
pub use lock::InstanceLock;
pub use node::{NodeRun, NodeStatus};
pub use report::{
    CheckReport, ExpiryReport, ImageFailure, LeftToOther, ListReport, NoProgress, Progress,
    RejectedImageReport, SyncReport, UpdateStatus,
};
pub use sync::SyncOptions;
pub use update::{NewSubscriptionRequest, Source};
/// The adapters, re-exported for callers that need their types (the CLI depends on this crate
/// alone).
pub use vmc_fetch as fetch;
pub use vmc_store as store;
pub use vmc_trust as trust;

use error::io;
use vmc_fetch::Client;
use vmc_store::Store;
use vmc_trust::TrustStore;

/// An open vmc instance: configuration, database, and (each built on first use) the CA
/// directory and the HTTP client. Commands that never verify a list nor make a request pay for
/// neither.
pub struct Vmc {
    config: Config,
    store: Store,
    client: OnceLock<Client>,
    /// The client of OCI registries when [`Config::oci_ca_file`] is set (see `oci.rs`).
    oci_client: OnceLock<Client>,
    trust: OnceLock<TrustStore>,
    /// What this node is doing, for its heartbeat (see [`node`]).
    activity: Arc<Mutex<String>>,
    /// The leases of long work (downloads) the heartbeat renews while they are held.
    held: Arc<Mutex<Vec<vmc_store::Lease>>>,
}

impl std::fmt::Debug for Vmc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Vmc {
    /// Opens (and migrates) the database. The CA directory is loaded when a list is first
    /// verified, and the HTTP client is built for the first request.
    pub fn open(config: Config) -> Result<Vmc, CacheError> {
        let mut store = Store::open(&config.database_url)?;
        if config.cache_mode == CacheMode::PerNode {
            store.set_cache_node(&config.node);
        }
        Ok(Vmc {
            config,
            store,
            client: OnceLock::new(),
            oci_client: OnceLock::new(),
            trust: OnceLock::new(),
            activity: Arc::new(Mutex::new(node::IDLE.to_owned())),
            held: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The HTTP client, built on first use. Grid image servers carry IGTF host certificates,
    /// so TLS trusts the CA directory's roots beside the system's; a CA directory that cannot
    /// be loaded leaves the system roots alone (not every request needs it, and list
    /// verification reports it). Fails on an unusable proxy or root certificate.
    pub fn client(&self) -> Result<&Client, vmc_fetch::FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let mut http = self.config.http.clone();
        if let Ok(trust) = self.trust() {
            http.extra_roots.extend(trust.root_certificates());
        }
        let client = Client::new(http)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// The CA directory, loaded once. Unreadable files in it are skipped and logged.
    pub fn trust(&self) -> Result<&TrustStore, CacheError> {
        if let Some(t) = self.trust.get() {
            return Ok(t);
        }
        let loaded = TrustStore::load(&self.config.ca_dir).map_err(|source| CacheError::Trust {
            path: self.config.ca_dir.clone(),
            source,
        })?;
        for skipped in loaded.skipped() {
            tracing::warn!(
                "CA directory: skipped {}: {}",
                skipped.path.display(),
                skipped.reason
            );
        }
        tracing::debug!(
            "CA directory {}: {} CAs, {} CRLs",
            self.config.ca_dir.display(),
            loaded.ca_count(),
            loaded.crl_count()
        );
        Ok(self.trust.get_or_init(|| loaded))
    }

    /// Takes the instance lock (see [`InstanceLock`]), waiting up to `wait`.
    pub fn lock(&self, wait: Duration, who: &str) -> Result<InstanceLock, CacheError> {
        InstanceLock::acquire(&self.config.lock_file, wait, who)
    }

    /// Creates the cache, partial and expired directories if missing.
    pub fn ensure_dirs(&self) -> Result<(), CacheError> {
        for dir in [
            &self.config.cache_dir,
            &self.config.partial_dir,
            &self.config.expired_dir,
        ] {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        Ok(())
    }
}
