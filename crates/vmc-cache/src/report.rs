//! What operations report back: typed, per item, never printed by the library.

use vmc_model::{ErrorCode, ExpiryReason, Identifier, LastError};
use vmc_trust::Signer;

/// The outcome of one list update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStatus {
    /// First import of the subscription.
    Added,
    /// A new version was accepted.
    Updated,
    /// The same bytes as the current version.
    Unchanged,
    /// A check failed; nothing changed but the subscription's last error.
    Failed,
    /// Not fetched: another node of the site is updating the list, or updated it within the
    /// refresh interval (the reason is in [`ListReport::skipped`]).
    Skipped,
}

impl UpdateStatus {
    /// The contract's name: `added`, `updated`, `unchanged`, `failed`, and `skipped` for a
    /// list another node of the site updates.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// An image of an accepted list that was left out (spec check 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedImageReport {
    /// Its identifier as written, when it had one.
    pub identifier: Option<String>,
    /// Why (code `image_invalid`).
    pub message: String,
}

/// What one list update did.
#[derive(Debug, Clone)]
pub struct ListReport {
    /// The subscription's URL.
    pub url: String,
    /// The list identifier (known after the first import, or from the fetched list).
    pub identifier: Option<String>,
    /// Outcome.
    pub status: UpdateStatus,
    /// Why it failed.
    pub error: Option<LastError>,
    /// Who signed the fetched list, when the signature verified.
    pub signer: Option<Signer>,
    /// The fetched list's `hv:version`, once parsed.
    pub version: Option<String>,
    /// Images seen for the first time.
    pub new_images: Vec<Identifier>,
    /// Images left out of an accepted list.
    pub rejected_images: Vec<RejectedImageReport>,
    /// Why the list was not fetched (status `skipped`): which node updates or updated it.
    pub skipped: Option<String>,
}

impl ListReport {
    /// The report of an update of `url` that has not succeeded (yet): status `failed`, no
    /// error, nothing found.
    pub(crate) fn failed(url: String, identifier: Option<String>) -> Self {
        ListReport {
            url,
            identifier,
            status: UpdateStatus::Failed,
            error: None,
            signer: None,
            version: None,
            new_images: Vec::new(),
            rejected_images: Vec::new(),
            skipped: None,
        }
    }
}

/// An image that left the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryReport {
    /// The image.
    pub identifier: String,
    /// Why.
    pub reason: ExpiryReason,
    /// Its file name in the expired directory; `None` when the file had gone missing from the
    /// cache before (only the record was forgotten).
    pub expired_file: Option<String>,
}

/// An image that could not be brought into (or kept in) the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// The image.
    pub identifier: String,
    /// The contract's code.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
}

/// What a sync (or one of its steps) did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// One entry per list update.
    pub subscriptions: Vec<ListReport>,
    /// Images now in the cache.
    pub downloaded: Vec<String>,
    /// Images that left it.
    pub expired: Vec<ExpiryReport>,
    /// Cached images whose file this run found gone from the cache directory (state
    /// `missing`: fetched again by the download step when still wanted).
    pub missing: Vec<String>,
    /// Images that failed.
    pub failed: Vec<ImageFailure>,
    /// Images this run left to another node of the site, which holds their download lease.
    pub left_to_others: Vec<LeftToOther>,
    /// Images copied from another node's cache (per-node caches; also in `downloaded`), with
    /// the node copied from.
    pub from_peers: Vec<LeftToOther>,
    /// Bytes received over the network (resumed bytes not counted twice).
    pub bytes_downloaded: u64,
    /// Files re-hashed by a verify step.
    pub verified: usize,
    /// Event deliveries that failed (`handler_failed`).
    pub handler_failures: usize,
}

/// An image another node of the site is downloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftToOther {
    /// The image.
    pub identifier: String,
    /// The node holding its `download:<id>` lease.
    pub node: String,
}

impl SyncReport {
    /// Whether anything failed: a list, an image or a handler.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
            || self.handler_failures > 0
            || self
                .subscriptions
                .iter()
                .any(|s| s.status == UpdateStatus::Failed)
    }
}

/// What `subscribe check` concluded about a list.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// `None` when every check passed.
    pub error: Option<LastError>,
    /// The signer, when the signature verified.
    pub signer: Option<Signer>,
    /// The list, when it parsed.
    pub list: Option<vmc_model::ImageList>,
    /// Images that would be left out.
    pub rejected_images: Vec<RejectedImageReport>,
}

/// Progress of long operations, implemented by the caller (the CLI draws bars on a terminal).
/// Every method has an empty default.
pub trait Progress: Send + Sync {
    /// A download starts (or resumes at `resumed_from`).
    fn download_started(&self, _identifier: &str, _total: u64, _resumed_from: u64) {}
    /// Bytes of a download done so far (including resumed ones).
    fn download_progress(&self, _identifier: &str, _done: u64) {}
    /// A download ended, well or not.
    fn download_finished(&self, _identifier: &str, _ok: bool) {}
    /// Re-hashing of `files` files holding `bytes` bytes starts.
    fn verify_started(&self, _files: usize, _bytes: u64) {}
    /// One file has been re-hashed.
    fn verify_file_done(&self, _identifier: &str, _bytes: u64) {}
    /// A list update finished.
    fn list_done(&self, _report: &ListReport) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
