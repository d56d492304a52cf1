//! The errors of the store: opening and migrating the database, and the outcomes of the
//! repository operations that callers act on (not found, conflicts, taken identities).

use std::path::PathBuf;

/// What went wrong in the store.
///
/// URLs in these errors have their passwords replaced by `***`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names a scheme the store does not know.
    #[error(
        "unsupported database url {url} (expected sqlite://PATH, a plain path or postgres://…)"
    )]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// A PostgreSQL URL was given to a build without the `postgres` cargo feature.
    #[error(
        "database url {url} needs PostgreSQL support, which this build lacks (cargo feature `postgres`)"
    )]
    PostgresNotBuilt {
        /// The URL, password redacted.
        url: String,
    },
    /// The directory that should hold the SQLite file could not be created.
    #[error("cannot create database directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or connected to.
    #[error("cannot open database {url}")]
    Open {
        /// The URL, password redacted.
        url: String,
        /// The driver's failure.
        #[source]
        source: diesel::ConnectionError,
    },
    /// The connection could not be configured (SQLite pragmas).
    #[error("cannot configure database connection {url}")]
    Configure {
        /// The URL, password redacted.
        url: String,
        /// The failing statement's error.
        #[source]
        source: diesel::result::Error,
    },
    /// The SQLite library vmc is linked with is older than the schema needs.
    #[error(
        "SQLite {found} is too old for database {url}: vmc needs SQLite {required} or newer \
         (upgrade libsqlite3, or build vmc with the bundled-sqlite feature)"
    )]
    SqliteTooOld {
        /// The URL, password redacted.
        url: String,
        /// The linked library's version.
        found: String,
        /// The oldest version that works.
        required: &'static str,
    },
    /// Applying the embedded schema migrations failed.
    #[error("cannot migrate database {url} to the current schema")]
    Migration {
        /// The URL, password redacted.
        url: String,
        /// The migration failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A query failed.
    #[error("database query failed")]
    Query {
        /// The driver's failure.
        #[source]
        source: diesel::result::Error,
    },
    /// The named thing does not exist.
    #[error("{what} {key:?} not found")]
    NotFound {
        /// What was looked up (`endorser`, `subscription`, `identity`, `image`, …).
        what: &'static str,
        /// The key it was looked up by.
        key: String,
    },
    /// The thing to create exists already.
    #[error("{what} {key:?} already exists")]
    Conflict {
        /// What was to be created (`endorser`, `subscription`, …).
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A key names more than one thing.
    #[error("{what} {key:?} is ambiguous: it names {}", candidates.join(", "))]
    Ambiguous {
        /// What was looked up.
        what: &'static str,
        /// The key.
        key: String,
        /// What it names.
        candidates: Vec<String>,
    },
    /// The certificate identity belongs to another endorser already: a (subject, issuer) pair
    /// can vouch for one endorser only.
    #[error("identity {subject:?} issued by {issuer:?} belongs to endorser {endorser:?}")]
    IdentityTaken {
        /// Subject DN.
        subject: String,
        /// Issuer DN.
        issuer: String,
        /// The endorser holding it.
        endorser: String,
    },
    /// A list import does not fit the subscription it is stored under.
    #[error(
        "list {found:?} cannot be stored under subscription {subscription}, which follows list {expected:?}"
    )]
    IdentifierMismatch {
        /// The subscription.
        subscription: i64,
        /// The subscription's list identifier.
        expected: String,
        /// The imported list's identifier.
        found: String,
    },
    /// A value cannot be stored (a size above 2^63-1, a date outside the years 0–9999).
    #[error("{what} {value} is out of the storable range")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value, as text.
        value: String,
    },
    /// An expiry was to be recorded without the file's name in the expired directory (a file
    /// that is gone from the cache is recorded as missing instead).
    #[error("expiry of cached image {identifier} names no expired file")]
    EmptyExpiredFile {
        /// The image id.
        identifier: String,
    },
    /// A stored value cannot be read back (the database was edited by hand or is damaged).
    #[error("stored {what} {value:?} is invalid")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The stored text.
        value: String,
    },
    /// An earlier operation panicked while holding the connection; the store is unusable.
    #[error("database connection poisoned by an earlier panic")]
    Poisoned,
}

impl From<diesel::result::Error> for StoreError {
    fn from(source: diesel::result::Error) -> Self {
        StoreError::Query { source }
    }
}

impl StoreError {
    /// Whether this is a [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// Whether a query failed on a UNIQUE constraint.
pub(crate) fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
