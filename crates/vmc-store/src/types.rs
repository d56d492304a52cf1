//! What goes into and comes out of the repository API, beside the `vmc-model` types.

use std::fmt;

use chrono::{DateTime, Utc};
use vmc_model::{
    CertIdentity, EventType, ExpiryReason, Identifier, Image, ImageList, ListVersionInfo,
    NewImagePolicy, SubscriptionAuth,
};

/// A subscription to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// Where the list is fetched from (unique).
    pub url: String,
    /// What updates do with images not seen before.
    pub new_images: NewImagePolicy,
    /// Credentials for the URL (never printed: `Debug` redacts them).
    pub auth: Option<SubscriptionAuth>,
    /// Whether updates and syncs use it.
    pub enabled: bool,
}

/// Changes to a subscription's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionChange {
    /// A new policy for new images.
    pub new_images: Option<NewImagePolicy>,
    /// `Some(None)` removes the credentials, `Some(Some(_))` replaces them.
    pub auth: Option<Option<SubscriptionAuth>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A verified list version to store.
#[derive(Debug, Clone, Copy)]
pub struct ListImport<'a> {
    /// The signed document as fetched.
    pub raw: &'a [u8],
    /// sha512 of `raw`, lowercase hex.
    pub sha512: &'a str,
    /// The parsed list (holding only the images that passed their own checks).
    pub list: &'a ImageList,
    /// The certificate that signed it; must be a stored identity.
    pub signer: &'a CertIdentity,
    /// When vmc accepted it.
    pub imported: DateTime<Utc>,
    /// Select every image of this list (the first import under policy `subscribe`).
    pub select_all: bool,
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The new list version's key.
    pub version_id: i64,
    /// Image ids this subscription never carried before, in list order.
    pub new_images: Vec<Identifier>,
    /// The subscription's current version was already these bytes, or a higher version
    /// (another process imported it first): nothing was stored, `version_id` is that version
    /// and `new_images` is empty (the importer of that version announced its new images).
    pub already_current: bool,
}

/// A stored list version with its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredList {
    /// Its facts.
    pub info: ListVersionInfo,
    /// The signed document as fetched.
    pub raw: Vec<u8>,
    /// Its images, in list order, as imported.
    pub images: Vec<Image>,
    /// The list's `dc:identifier`.
    pub list_identifier: String,
    /// The list's `ad:vo`, if any.
    pub vo: Option<String>,
}

/// Which images [`crate::Store::images`] returns; the default returns all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// Only images of this subscription.
    pub subscription_id: Option<i64>,
    /// Only selected images.
    pub selected_only: bool,
    /// Only images with this `dc:identifier`.
    pub identifier: Option<String>,
    /// Only images with this sha512 (any case).
    pub sha512: Option<String>,
}

/// An image of the current version of a subscription, with everything known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image as imported.
    pub image: Image,
    /// Its subscription.
    pub subscription_id: i64,
    /// Its subscription's URL.
    pub subscription_url: String,
    /// Its list's `dc:identifier`.
    pub list_identifier: String,
    /// Its list's `ad:vo`.
    pub list_vo: Option<String>,
    /// The list version it belongs to (the current one).
    pub list_version_id: i64,
    /// When that list version expires.
    pub list_expires: DateTime<Utc>,
    /// Whether its subscription is enabled.
    pub subscription_enabled: bool,
    /// Whether the identity that signed the list version belongs, now, to an endorser linked
    /// to the subscription.
    pub endorsed: bool,
    /// Whether it is selected for caching.
    pub selected: bool,
    /// The cached file of this image id, if any (its sha512 may differ from the image's when
    /// the list now names another file).
    pub cached: Option<CacheEntry>,
    /// The sha512 of the signed list version it belongs to (vmcatcher's `msgHash`).
    pub list_sha512: String,
}

/// A pending selection: an image id selected for caching in a subscription whose current list
/// does not name it (yet). The selection takes effect when a list version of that
/// subscription names the image: it is then selected like any other (see
/// [`Store::record_selections`](crate::Store::record_selections)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSelection {
    /// The subscription.
    pub subscription_id: i64,
    /// Its URL.
    pub subscription_url: String,
    /// Its list identifier, when known.
    pub list_identifier: Option<String>,
    /// The image id.
    pub identifier: Identifier,
    /// When the selection was recorded.
    pub since: DateTime<Utc>,
}

/// A file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The image id.
    pub identifier: Identifier,
    /// Its file name in the cache directory.
    pub filename: String,
    /// Its size in bytes (at most 2^63-1).
    pub size: u64,
    /// Its sha512, lowercase hex.
    pub sha512: String,
    /// The subscription it came from (`None` once that subscription is removed).
    pub subscription_id: Option<i64>,
    /// The list version it came from (`None` once that version is pruned or removed).
    pub list_version_id: Option<i64>,
    /// When it entered the cache.
    pub cached_at: DateTime<Utc>,
}

/// A cached file found gone from the cache directory: the image is fetched again by the next
/// download, or the record forgotten once the image is no longer wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingEntry {
    /// The record as it was while the file was cached.
    pub entry: CacheEntry,
    /// When the file was found gone.
    pub since: DateTime<Utc>,
}

/// A file moved to the expired directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredEntry {
    /// The image id.
    pub identifier: Identifier,
    /// Its file name in the expired directory.
    pub file: String,
    /// Why it left the cache.
    pub reason: ExpiryReason,
    /// When it left the cache.
    pub expired_at: DateTime<Utc>,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha512, lowercase hex.
    pub sha512: String,
}

/// How an event reached its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// No handler is configured.
    NoHandler,
    /// The handler ran and succeeded.
    Delivered,
    /// The handler failed or timed out.
    Failed {
        /// What happened.
        message: String,
    },
}

impl EventOutcome {
    /// `no_handler`, `delivered` or `failed`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            EventOutcome::NoHandler => "no_handler",
            EventOutcome::Delivered => "delivered",
            EventOutcome::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for EventOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventOutcome::Failed { message } => write!(f, "failed: {message}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// An event to journal.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The run it belongs to (`VMCATCHER_EVENT_UUID_SESSION`).
    pub session: String,
    /// Its type.
    pub event_type: EventType,
    /// The image id it is about, if any.
    pub identifier: Option<String>,
    /// What the handler received on stdin.
    pub payload: serde_json::Value,
    /// How it was delivered.
    pub outcome: EventOutcome,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// A journalled event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Its key (increasing).
    pub id: i64,
    /// The run it belongs to.
    pub session: String,
    /// Its type.
    pub event_type: EventType,
    /// The image id it is about, if any.
    pub identifier: Option<String>,
    /// What the handler received on stdin.
    pub payload: serde_json::Value,
    /// How it was delivered.
    pub outcome: EventOutcome,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// A vmc process working against this database: one node of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name, unique in the site (defaults to the host name; `--node` / `VMC_NODE`).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The vmc version it runs.
    pub version: String,
    /// Where the other nodes copy its cached files from (its cache directory as the site's web
    /// server serves it), for per-node caches; `None` when it serves none.
    pub url: Option<String>,
    /// The cache mode it runs with, as the caller names it (vmc-cache: `shared` or
    /// `per-node`); `None` when not recorded (a run of a vmc before this field).
    pub cache_mode: Option<String>,
}

/// A registered node as stored, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Who it is.
    pub info: NodeInfo,
    /// When its current (or last) run started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen: DateTime<Utc>,
    /// What it said it was doing at its last heartbeat.
    pub activity: String,
    /// The leases it holds (or held: compare `expires_at` with the clock).
    pub leases: Vec<Lease>,
}

/// One node's time-bounded right to do one piece of site-wide work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What it guards, e.g. `download:<image id>`.
    pub resource: String,
    /// The node holding it.
    pub node: String,
    /// Incremented at every take: an old holder's token no longer matches (fencing).
    pub token: i64,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// The last time one piece of site-wide work was done, and by which node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRun {
    /// The work, named as its lease is (`update:<subscription id>`).
    pub resource: String,
    /// The node that did it.
    pub node: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// An event that announces work (`AvailablePostfix`, `ExpirePostfix`), written to the outbox
/// in the transaction of that work and delivered after it commits.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// The node doing the work.
    pub node: String,
    /// Its run (`VMCATCHER_EVENT_UUID_SESSION`).
    pub session: String,
    /// The event's type.
    pub event_type: EventType,
    /// The image id it is about.
    pub identifier: Option<String>,
    /// What the handler receives on stdin (its `VMCATCHER_*` keys are its environment).
    pub payload: serde_json::Value,
    /// When the work was done.
    pub at: DateTime<Utc>,
}

/// An announced event not yet delivered (still in the outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// Its outbox key.
    pub id: i64,
    /// The announcement.
    pub announcement: Announcement,
    /// When the run now delivering it claimed it.
    pub claimed_at: DateTime<Utc>,
}

/// A cached copy of an image in another node's cache directory (per-node caches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCopy {
    /// The node holding it.
    pub node: String,
    /// Where that node serves its cache directory, if it does.
    pub url: Option<String>,
    /// That node's last heartbeat, if it is registered.
    pub last_seen: Option<DateTime<Utc>>,
    /// Its record in that node's cache.
    pub entry: CacheEntry,
}
