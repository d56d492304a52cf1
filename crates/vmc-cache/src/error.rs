//! Errors of the vmc-cache layer.

use std::path::PathBuf;

use vmc_model::ErrorCode;

/// An error of the cache layer. Failures of one list or one image are not errors of a whole run:
/// they are reported per item (see [`crate::report`]); this type is for what stops an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The database failed.
    #[error("database error")]
    Store(#[from] vmc_store::StoreError),
    /// The CA directory could not be loaded.
    #[error("cannot load the CA directory {path}")]
    Trust {
        /// The CA directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: vmc_trust::TrustError,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Http(#[source] vmc_fetch::FetchError),
    /// A file system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another vmc process holds the instance lock.
    #[error("another vmc process holds the lock {path} ({holder})")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it (pid, host, command, start time).
        holder: String,
    },
    /// No subscription matches.
    #[error(
        "no subscription {:?} (give its list identifier or URL)",
        vmc_fetch::redact_url(key)
    )]
    NoSuchSubscription {
        /// What was asked for.
        key: String,
    },
    /// No endorser matches.
    #[error("no endorser {key:?} (give its id or a subject DN)")]
    NoSuchEndorser {
        /// What was asked for.
        key: String,
    },
    /// No image matches.
    #[error("no image {key:?} in the current lists")]
    NoSuchImage {
        /// What was asked for.
        key: String,
    },
    /// A list update failed a check (used by operations on a single list such as
    /// `subscribe add`).
    #[error("{code}: {message}")]
    Rejected {
        /// The contract's code.
        code: ErrorCode,
        /// What failed, for people.
        message: String,
    },
    /// The node name (`--node`, `VMC_NODE`) cannot name a node.
    #[error("node name {name:?} is not usable: {reason}")]
    InvalidNodeName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Another process runs under this node name now: two homes (on one host, where the name
    /// defaults to the host name, or on hosts given the same `--node`) would take each other's
    /// runs for their own (replaying their events, taking over their claims).
    #[error(
        "node name {name:?} is in use by a run on host {host} (pid {pid}, {activity}, last seen {last_seen}); give each cache home its own name with --node / VMC_NODE"
    )]
    NodeNameInUse {
        /// The name.
        name: String,
        /// The host of the run using it.
        host: String,
        /// Its process id.
        pid: u32,
        /// What it said it was doing.
        activity: String,
        /// Its last heartbeat (RFC 3339).
        last_seen: String,
    },
    /// The request is not valid (e.g. subject and issuer lists of different lengths).
    #[error("{0}")]
    Invalid(String),
}

impl CacheError {
    /// Whether this is a setup problem (exit status 2 in the CLI) rather than a failure of the
    /// requested work (exit status 1).
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            CacheError::Store(_) | CacheError::Trust { .. } | CacheError::Http(_)
        ) || matches!(
            self,
            CacheError::Io { .. }
                | CacheError::InvalidNodeName { .. }
                | CacheError::NodeNameInUse { .. }
        )
    }

    /// The contract's code, for errors that have one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CacheError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// `io::Error` → [`CacheError::Io`] with context.
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.into();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}
