//! The JSON output schema of `spec/cli.md`: dedicated `Serialize` structs built from the
//! library's reports (never database rows). Keys are stable and snake_case.

use serde::Serialize;
use vmc_cache::store::{CacheEntry, ImageRecord, MissingEntry};
use vmc_cache::{CheckReport, ListReport, SyncReport};
use vmc_model::{Endorser, LastError, Subscription};

use vmc_cache::fetch::redact_url;

/// `{code, message}`.
#[derive(Debug, Serialize)]
pub struct ErrorJson {
    /// The contract's code.
    pub code: String,
    /// For people.
    pub message: String,
}

impl From<&LastError> for ErrorJson {
    fn from(e: &LastError) -> Self {
        Self {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
        }
    }
}

/// `{subject, issuer}`.
#[derive(Debug, Serialize)]
pub struct IdentityJson {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
}

/// One endorser.
#[derive(Debug, Serialize)]
pub struct EndorserJson {
    /// Id.
    pub id: String,
    /// Certificate identities.
    pub identities: Vec<IdentityJson>,
    /// Linked subscriptions, by list identifier (URL before the first import).
    pub subscriptions: Vec<String>,
}

/// Builds [`EndorserJson`]; `subs` maps URLs to identifiers.
pub fn endorser(e: &Endorser, subs: &[Subscription]) -> EndorserJson {
    EndorserJson {
        id: e.id.clone(),
        identities: e
            .identities
            .iter()
            .map(|i| IdentityJson {
                subject: i.subject.clone(),
                issuer: i.issuer.clone(),
            })
            .collect(),
        subscriptions: e
            .subscriptions
            .iter()
            .map(|url| {
                subs.iter()
                    .find(|s| &s.url == url)
                    .and_then(|s| s.identifier.clone())
                    .unwrap_or_else(|| redact_url(url))
            })
            .collect(),
    }
}

/// One subscription.
#[derive(Debug, Serialize)]
pub struct SubscriptionJson {
    /// List identifier (null before the first import).
    pub identifier: Option<String>,
    /// URL, without credentials.
    pub url: String,
    /// List title.
    pub title: Option<String>,
    /// Enabled.
    pub enabled: bool,
    /// New-image policy.
    pub new_images: &'static str,
    /// Current `hv:version`.
    pub version: Option<String>,
    /// Current `dc:date:created`.
    pub created: Option<String>,
    /// Current `dc:date:expires`.
    pub expires: Option<String>,
    /// Last update.
    pub updated: Option<String>,
    /// Last failure.
    pub last_error: Option<ErrorJson>,
    /// Whether credentials are stored (never the credentials themselves).
    pub has_credentials: bool,
    /// `list` (a signed image list) or `oci` (a registry).
    pub kind: &'static str,
}

/// RFC 3339, seconds, `Z`.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Builds [`SubscriptionJson`].
pub fn subscription(s: &Subscription) -> SubscriptionJson {
    let oci = vmc_cache::oci::is_oci(&s.url);
    SubscriptionJson {
        identifier: s.identifier.clone(),
        url: redact_url(&s.url),
        title: s.title.clone(),
        enabled: s.enabled,
        new_images: s.new_images.as_str(),
        version: s.current.as_ref().map(|c| c.version.clone()),
        created: s.current.as_ref().map(|c| time(c.created)),
        // A registry snapshot does not expire (a vanished tag expires its image instead).
        expires: s.current.as_ref().filter(|_| !oci).map(|c| time(c.expires)),
        updated: s.updated.map(time),
        last_error: s.last_error.as_ref().map(ErrorJson::from),
        has_credentials: s.auth.is_some(),
        kind: if oci { "oci" } else { "list" },
    }
}

/// One list update.
#[derive(Debug, Serialize)]
pub struct ListUpdateJson {
    /// List identifier.
    pub identifier: Option<String>,
    /// URL without credentials.
    pub url: String,
    /// added, updated, unchanged, failed, skipped (another node of the site updates it).
    pub status: &'static str,
    /// Why a `skipped` list was not fetched (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Why it failed.
    pub error: Option<ErrorJson>,
    /// Images seen for the first time.
    pub new_images: Vec<String>,
    /// Images left out of the list (`image_invalid`).
    pub rejected_images: Vec<RejectedJson>,
}

/// An image left out of a list.
#[derive(Debug, Serialize)]
pub struct RejectedJson {
    /// Its identifier as written.
    pub identifier: Option<String>,
    /// Always `image_invalid`.
    pub code: &'static str,
    /// Why.
    pub message: String,
}

/// `{identifier, reason}`.
#[derive(Debug, Serialize)]
pub struct ExpiredJson {
    /// Image id.
    pub identifier: String,
    /// Expiry reason.
    pub reason: &'static str,
}

/// `{identifier, error}`.
#[derive(Debug, Serialize)]
pub struct FailedJson {
    /// Image id.
    pub identifier: String,
    /// `{code, message}`.
    pub error: ErrorJson,
}

/// The report of `subscribe add|update` and `cache sync|download|expire|verify`.
#[derive(Debug, Serialize)]
pub struct RunJson {
    /// Lists updated.
    pub subscriptions: Vec<ListUpdateJson>,
    /// Images now in the cache.
    pub downloaded: Vec<String>,
    /// Images that left it.
    pub expired: Vec<ExpiredJson>,
    /// Cached images whose file is gone from the cache directory (fetched again when still
    /// wanted: then they are in `downloaded` too).
    pub missing: Vec<String>,
    /// Images that failed.
    pub failed: Vec<FailedJson>,
    /// Images another node of the site is downloading (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_to_others: Vec<LeftToOtherJson>,
    /// Images copied from another node's cache, with that node (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_peers: Vec<LeftToOtherJson>,
    /// Bytes received.
    pub bytes_downloaded: u64,
    /// Files re-hashed.
    pub verified: usize,
    /// Event handler runs that failed.
    pub handler_failures: usize,
}

/// An image another node downloads.
#[derive(Debug, Serialize)]
pub struct LeftToOtherJson {
    /// Image id.
    pub identifier: String,
    /// The node holding its download lease.
    pub node: String,
}

/// Builds [`ListUpdateJson`].
pub fn list_update(r: &ListReport) -> ListUpdateJson {
    ListUpdateJson {
        identifier: r.identifier.clone(),
        url: redact_url(&r.url),
        status: r.status.as_str(),
        skipped: r.skipped.clone(),
        error: r.error.as_ref().map(ErrorJson::from),
        new_images: r.new_images.iter().map(ToString::to_string).collect(),
        rejected_images: r
            .rejected_images
            .iter()
            .map(|x| RejectedJson {
                identifier: x.identifier.clone(),
                code: "image_invalid",
                message: x.message.clone(),
            })
            .collect(),
    }
}

fn left_to_other(l: &vmc_cache::LeftToOther) -> LeftToOtherJson {
    LeftToOtherJson {
        identifier: l.identifier.clone(),
        node: l.node.clone(),
    }
}

/// Builds [`RunJson`].
pub fn run(r: &SyncReport) -> RunJson {
    RunJson {
        subscriptions: r.subscriptions.iter().map(list_update).collect(),
        downloaded: r.downloaded.clone(),
        expired: r
            .expired
            .iter()
            .map(|e| ExpiredJson {
                identifier: e.identifier.clone(),
                reason: e.reason.as_str(),
            })
            .collect(),
        missing: r.missing.clone(),
        left_to_others: r.left_to_others.iter().map(left_to_other).collect(),
        from_peers: r.from_peers.iter().map(left_to_other).collect(),
        failed: r
            .failed
            .iter()
            .map(|f| FailedJson {
                identifier: f.identifier.clone(),
                error: ErrorJson {
                    code: f.code.as_str().to_owned(),
                    message: f.message.clone(),
                },
            })
            .collect(),
        bytes_downloaded: r.bytes_downloaded,
        verified: r.verified,
        handler_failures: r.handler_failures,
    }
}

/// `subscribe check`.
#[derive(Debug, Serialize)]
pub struct CheckJson {
    /// accepted or rejected.
    pub verdict: &'static str,
    /// Why not.
    pub error: Option<ErrorJson>,
    /// The signer.
    pub signer: Option<IdentityJson>,
    /// A summary of the list.
    pub list: Option<ListSummaryJson>,
    /// Images that would be left out.
    pub rejected_images: Vec<RejectedJson>,
}

/// `{identifier, title, version, created, expires, images}`.
#[derive(Debug, Serialize)]
pub struct ListSummaryJson {
    /// List identifier.
    pub identifier: String,
    /// Title.
    pub title: String,
    /// Version.
    pub version: String,
    /// Created.
    pub created: String,
    /// Expires.
    pub expires: String,
    /// Number of images accepted.
    pub images: usize,
}

/// Builds [`CheckJson`].
pub fn check(r: &CheckReport) -> CheckJson {
    CheckJson {
        verdict: if r.error.is_none() {
            "accepted"
        } else {
            "rejected"
        },
        error: r.error.as_ref().map(ErrorJson::from),
        signer: r.signer.as_ref().map(|s| IdentityJson {
            subject: s.subject.clone(),
            issuer: s.issuer.clone(),
        }),
        list: r.list.as_ref().map(|l| ListSummaryJson {
            identifier: l.identifier.to_string(),
            title: l.title.clone(),
            version: l.version.to_string(),
            created: time(l.created),
            expires: time(l.expires),
            images: l.images.len(),
        }),
        rejected_images: r
            .rejected_images
            .iter()
            .map(|x| RejectedJson {
                identifier: x.identifier.clone(),
                code: "image_invalid",
                message: x.message.clone(),
            })
            .collect(),
    }
}

/// One image of `image list`.
#[derive(Debug, Serialize)]
pub struct ImageJson {
    /// Image id.
    pub identifier: String,
    /// Its list's identifier.
    pub subscription: String,
    /// Title.
    pub title: String,
    /// Version.
    pub version: String,
    /// Where it is fetched from.
    pub uri: String,
    /// Bytes.
    pub size: u64,
    /// sha512.
    pub sha512: String,
    /// Selected for caching.
    pub selected: bool,
    /// In the newest valid list of an endorsed, enabled subscription.
    pub available: bool,
    /// A verified file is in the cache.
    pub cached: bool,
    /// A pending selection (false: an image of a current list).
    pub pending: bool,
}

/// Builds [`ImageJson`].
pub fn image(r: &ImageRecord, now: chrono::DateTime<chrono::Utc>) -> ImageJson {
    ImageJson {
        identifier: r.image.identifier.to_string(),
        subscription: r.list_identifier.clone(),
        title: r.image.title.clone(),
        version: r.image.version.clone(),
        uri: redact_url(&r.image.uri),
        size: r.image.size,
        sha512: r.image.sha512.clone(),
        selected: r.selected,
        available: vmc_cache::sync::is_available(r, now),
        cached: r
            .cached
            .as_ref()
            .is_some_and(|c| c.sha512 == r.image.sha512),
        pending: false,
    }
}

/// A pending selection in `image list --json`: the keys of an image row, with what only a
/// list would say (`title`, `version`, `uri`, `size`, `sha512`) null, `selected` true,
/// `available` and `cached` false, and `pending` true (`since`: when it was recorded).
#[derive(Debug, Serialize)]
pub struct PendingImageJson {
    /// Image id.
    pub identifier: String,
    /// Its subscription's list identifier (its URL while none is known).
    pub subscription: String,
    /// Null: no list names it yet.
    pub title: Option<String>,
    /// Null.
    pub version: Option<String>,
    /// Null.
    pub uri: Option<String>,
    /// Null.
    pub size: Option<u64>,
    /// Null.
    pub sha512: Option<String>,
    /// True.
    pub selected: bool,
    /// False.
    pub available: bool,
    /// False.
    pub cached: bool,
    /// True.
    pub pending: bool,
    /// When the selection was recorded.
    pub since: String,
}

/// Builds [`PendingImageJson`].
pub fn pending_image(p: &vmc_cache::store::PendingSelection) -> PendingImageJson {
    PendingImageJson {
        identifier: p.identifier.to_string(),
        subscription: p
            .list_identifier
            .clone()
            .unwrap_or_else(|| redact_url(&p.subscription_url)),
        title: None,
        version: None,
        uri: None,
        size: None,
        sha512: None,
        selected: true,
        available: false,
        cached: false,
        pending: true,
        since: time(p.since),
    }
}

/// A row of `image list --json`: an image of a current list, or a pending selection.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ImageRowJson {
    /// An image of a current list.
    Listed(ImageJson),
    /// A pending selection.
    Pending(PendingImageJson),
}

/// One cached file.
#[derive(Debug, Serialize)]
pub struct CachedJson {
    /// Image id.
    pub identifier: String,
    /// Absolute path of the file.
    pub file: String,
    /// Bytes.
    pub size: u64,
    /// sha512.
    pub sha512: String,
    /// Its list's identifier, when it is still in a current list.
    pub subscription: Option<String>,
    /// When it entered the cache.
    pub cached_at: String,
    /// `cached`, or `missing`: the file is gone from the cache directory and the next sync
    /// fetches the image again (or forgets it when it is no longer wanted).
    pub state: &'static str,
    /// When the file was found gone (`null` while it is cached).
    pub missing_since: Option<String>,
}

/// Builds [`CachedJson`].
pub fn cached(c: &CacheEntry, dir: &std::path::Path, records: &[ImageRecord]) -> CachedJson {
    CachedJson {
        identifier: c.identifier.to_string(),
        file: dir.join(&c.filename).display().to_string(),
        size: c.size,
        sha512: c.sha512.clone(),
        subscription: records
            .iter()
            .find(|r| r.image.identifier == c.identifier)
            .map(|r| r.list_identifier.clone()),
        cached_at: time(c.cached_at),
        state: "cached",
        missing_since: None,
    }
}

/// Builds the [`CachedJson`] of a cached file found gone.
pub fn missing(m: &MissingEntry, dir: &std::path::Path, records: &[ImageRecord]) -> CachedJson {
    CachedJson {
        state: "missing",
        missing_since: Some(time(m.since)),
        ..cached(&m.entry, dir, records)
    }
}

/// One publication (`vmc publish list --json`).
#[derive(Debug, Serialize)]
pub struct PublicationJson {
    /// The target.
    pub target: String,
    /// The image id.
    pub identifier: String,
    /// vmc's sha512 of the image.
    pub sha512: String,
    /// Its version.
    pub version: String,
    /// The list it came from (credentials removed).
    pub list_url: String,
    /// The disk format uploaded.
    pub disk_format: String,
    /// `uploading`, `failed`, `active`, `deactivated` or `deleted`.
    pub state: String,
    /// The image service's id.
    pub remote_id: Option<String>,
    /// The node that claimed it.
    pub claimed_by: String,
    /// When it became active (RFC 3339).
    pub published_at: Option<String>,
    /// When its state last changed (RFC 3339).
    pub changed_at: String,
    /// Why it was deactivated.
    pub reason: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The JSON form of a publication.
pub fn publication(p: &vmc_cache::store::Publication) -> PublicationJson {
    PublicationJson {
        target: p.target.clone(),
        identifier: p.identifier.to_string(),
        sha512: p.sha512.clone(),
        version: p.version.clone(),
        list_url: p.list_url.clone(),
        disk_format: p.disk_format.clone(),
        state: p.state.as_str().to_owned(),
        remote_id: p.remote_id.clone(),
        claimed_by: p.claimed_by.clone(),
        published_at: p.published_at.map(|t| t.to_rfc3339()),
        changed_at: p.changed_at.to_rfc3339(),
        reason: p.reason.clone(),
        last_error: p.last_error.clone(),
    }
}

/// One action of a publisher run.
#[derive(Debug, Serialize)]
pub struct PublishActionJson {
    /// `publish`, `adopt`, `repair`, `reactivate`, `supersede`, `expire`, `delete`,
    /// `keep-in-use`, `skip`.
    pub action: &'static str,
    /// The image id.
    pub identifier: String,
    /// Its sha512.
    pub sha512: String,
    /// Its version.
    pub version: String,
    /// The image service's id.
    pub remote_id: Option<String>,
    /// `done`, `planned` (dry run) or `failed`.
    pub outcome: &'static str,
    /// The failure, when failed.
    pub error: Option<String>,
    /// More about it.
    pub detail: Option<String>,
}

/// `vmc publish sync --json`.
#[derive(Debug, Serialize)]
pub struct PublishRunJson {
    /// The target.
    pub target: String,
    /// Whether every action succeeded.
    pub success: bool,
    /// The actions, in order.
    pub actions: Vec<PublishActionJson>,
}

/// The JSON form of a publisher run.
pub fn publish_run(target: &str, r: &vmc_publish::PublishReport) -> PublishRunJson {
    use vmc_publish::Outcome;
    PublishRunJson {
        target: target.to_owned(),
        success: !r.has_failures(),
        actions: r
            .actions
            .iter()
            .map(|a| PublishActionJson {
                action: a.kind.as_str(),
                identifier: a.identifier.clone(),
                sha512: a.sha512.clone(),
                version: a.version.clone(),
                remote_id: a.remote_id.clone(),
                outcome: match a.outcome {
                    Outcome::Done => "done",
                    Outcome::Planned => "planned",
                    Outcome::Failed(_) => "failed",
                },
                error: match &a.outcome {
                    Outcome::Failed(e) => Some(e.clone()),
                    _ => None,
                },
                detail: a.detail.clone(),
            })
            .collect(),
    }
}

/// One node of the site (`vmc node list --json`).
#[derive(Debug, Serialize)]
pub struct NodeJson {
    /// Its name (`--node`, default the host name).
    pub name: String,
    /// The host it last ran on.
    pub host: String,
    /// The process id of its current or last run.
    pub pid: u32,
    /// The vmc version of that run.
    pub version: String,
    /// When that run started.
    pub started_at: String,
    /// Its last heartbeat.
    pub last_seen: String,
    /// Whether it beat within the lease time.
    pub alive: bool,
    /// What it said it was doing (`idle` between runs).
    pub activity: String,
    /// Where the other nodes copy its cached files from (`--node-url`; null when none).
    pub url: Option<String>,
    /// The `--cache-mode` of its last run (`shared`, `per-node`; null when a vmc before it
    /// ran).
    pub cache_mode: Option<String>,
    /// The leases it holds.
    pub leases: Vec<LeaseJson>,
}

/// A lease a node holds.
#[derive(Debug, Serialize)]
pub struct LeaseJson {
    /// What it guards, e.g. `update:3`.
    pub resource: String,
    /// Its fencing token (counts the takes).
    pub token: i64,
    /// When it was taken.
    pub acquired_at: String,
    /// When it lapses unless renewed.
    pub expires_at: String,
    /// Whether it has lapsed (any node may take it).
    pub lapsed: bool,
}

/// Builds [`NodeJson`], judging the leases at `now`.
pub fn node(n: &vmc_cache::NodeStatus, now: chrono::DateTime<chrono::Utc>) -> NodeJson {
    let r = &n.record;
    NodeJson {
        name: r.info.name.clone(),
        host: r.info.host.clone(),
        pid: r.info.pid,
        version: r.info.version.clone(),
        started_at: time(r.started_at),
        last_seen: time(r.last_seen),
        alive: n.alive,
        activity: r.activity.clone(),
        url: r.info.url.clone(),
        cache_mode: r.info.cache_mode.clone(),
        leases: r
            .leases
            .iter()
            .map(|l| LeaseJson {
                resource: l.resource.clone(),
                token: l.token,
                acquired_at: time(l.acquired_at),
                expires_at: time(l.expires_at),
                lapsed: l.expires_at <= now,
            })
            .collect(),
    }
}
