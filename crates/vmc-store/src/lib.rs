//! Persistence for vmc: endorsers, subscriptions, accepted list versions and their images,
//! image selection, the cache's files, the event journal and the publications into cloud image
//! services, in SQLite (bundled, the default)
//! or PostgreSQL (cargo feature `postgres`), from one code base.
//!
//! [`Store::open`] takes a database URL (`sqlite:///abs/path`, `sqlite://rel/path`, a plain
//! path, `postgres://…`), creates a SQLite file's directory when missing, configures the
//! connection (`busy_timeout`, then WAL, then `foreign_keys=ON`) and applies the embedded
//! migrations. Every method speaks `vmc-model` types; each logical change (importing a list
//! version with its images, a file entering or leaving the cache) is one transaction.
//!
//! Trust is kept in the schema's shape: a list version points at the stored identity that
//! signed it (a unique subject + issuer pair), the identity at its one endorser, and a list is
//! endorsed only while a link joins that endorser to the list's subscription. Removing an
//! endorser removes its identities and links, so its signatures endorse nothing.
//!
//! ```
//! # fn main() -> Result<(), vmc_store::StoreError> {
//! use vmc_model::{CertIdentity, NewImagePolicy};
//! use vmc_store::{NewSubscription, Store};
//!
//! let store = Store::open(":memory:")?;
//! let sub = store.add_subscription(&NewSubscription {
//!     url: "https://example.org/list".into(),
//!     new_images: NewImagePolicy::Refuse,
//!     auth: None,
//!     enabled: true,
//! })?;
//! let identity = CertIdentity { subject: "/CN=Jane".into(), issuer: "/CN=Grid CA".into() };
//! store.add_endorser("jane", &[identity.clone()])?;
//! assert_eq!(store.linked_endorser_for(sub.id, &identity)?, None);
//! store.link("jane", sub.id)?;
//! assert_eq!(store.linked_endorser_for(sub.id, &identity)?.as_deref(), Some("jane"));
//! # Ok(())
//! # }
//! ```

mod conn;
pub mod error;
mod repo;
mod rows;
mod schema;
mod time;
pub mod types;
mod url;
pub mod vmcatcher;

use std::fmt;
use std::sync::Mutex;

pub use conn::SchemaStatus;
pub use error::StoreError;
pub use repo::OciImport;
pub use repo::publications::{NewPublication, Publication, PublicationState};
pub use types::{
    Announcement, CacheEntry, EventOutcome, EventRecord, ExpiredEntry, ImageFilter, ImageRecord,
    ImportOutcome, Lease, ListImport, MissingEntry, NewEvent, NewSubscription, NodeInfo,
    NodeRecord, PeerCopy, PendingEvent, PendingSelection, StoredList, SubscriptionChange, WorkRun,
};
pub use url::redact_url;

use conn::AnyConnection;

/// How many list versions per subscription are kept unless [`Store::set_keep_versions`] says
/// otherwise (the current one included).
pub const DEFAULT_KEEP_VERSIONS: usize = 5;

/// The database: one connection behind a mutex, so a `Store` can be shared between threads
/// (`Send + Sync`; methods take `&self`). Open one `Store` per process or thread that needs
/// its own connection; several processes may use one SQLite file at once.
pub struct Store {
    conn: Mutex<AnyConnection>,
    backend: &'static str,
    location: String,
    keep_versions: usize,
    cache_node: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .field("keep_versions", &self.keep_versions)
            .field("cache_node", &self.cache_node)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database named by `url` and brings its schema up to
    /// date. See the crate doc for the accepted URLs.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let conn = conn::open(url)?;
        let backend = conn.backend();
        tracing::debug!(database = %redact_url(url), backend, "database opened");
        Ok(Store {
            conn: Mutex::new(conn),
            backend,
            location: redact_url(url),
            keep_versions: DEFAULT_KEEP_VERSIONS,
            cache_node: String::new(),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The URL the store was opened with, password redacted.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The schema migrations applied to the database and those this build embeds (a database
    /// a newer vmc migrated has versions this build does not know).
    pub fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        conn::schema_status(&mut conn, &self.location)
    }

    /// How many list versions per subscription imports keep.
    pub fn keep_versions(&self) -> usize {
        self.keep_versions
    }

    /// Sets how many list versions per subscription imports keep (at least 1: the current
    /// version is never pruned).
    pub fn set_keep_versions(&mut self, n: usize) {
        self.keep_versions = n.max(1);
    }

    /// Whose cache the cache records read and written through this store are: `""` (the
    /// default) for the one cache of a one-node site or a cache directory the nodes share, a
    /// node's name for that node's own cache directory (per-node caches on one database).
    pub fn cache_node(&self) -> &str {
        &self.cache_node
    }

    /// Sets whose cache records this store reads and writes (see [`Store::cache_node`]).
    pub fn set_cache_node(&mut self, node: &str) {
        node.clone_into(&mut self.cache_node);
    }

    /// Runs `f` in a read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        conn::read_tx(&mut conn, f)
    }

    /// Runs `f` in a write transaction.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        conn::write_tx(&mut conn, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Store>();
    }

    #[test]
    fn keep_versions_is_at_least_one() {
        let mut store = Store::open(":memory:").unwrap();
        assert_eq!(store.keep_versions(), DEFAULT_KEEP_VERSIONS);
        store.set_keep_versions(0);
        assert_eq!(store.keep_versions(), 1);
        store.set_keep_versions(9);
        assert_eq!(store.keep_versions(), 9);
    }
}
