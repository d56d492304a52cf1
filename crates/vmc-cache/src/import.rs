//! Migration from the old vmcatcher: its endorsers, subscriptions, links, image selections
//! and newest signed lists come from its SQLite database; the files of its cache directory are
//! adopted when their sha512 matches the list's.
//!
//! Nothing from vmcatcher is trusted as it is: each stored list goes through the update
//! pipeline's checks again (signature, chain, CRLs, endorser claim, authorisation by a linked
//! endorser, identifier, dates) against this site's CA directory, and each file is hashed
//! before the cache records it. A stored list that fails (typically: it has expired since
//! vmcatcher last ran) is fetched again from its URL when [`ImportOptions::fetch_rejected`]
//! says so. No event is delivered to the handler: the images were already handled under
//! vmcatcher.
//!
//! ```no_run
//! use vmc_cache::{Config, Vmc};
//! use vmc_cache::import::ImportOptions;
//! let vmc = Vmc::open(Config::with_home("/var/lib/vmc"))?;
//! let report = vmc.import_vmcatcher(&ImportOptions {
//!     database: "/var/lib/vmcatcher/vmcatcher.db".into(),
//!     cache_dir: Some("/var/cache/vmcatcher/endorsed".into()),
//!     fetch_rejected: true,
//! })?;
//! assert!(!report.has_failures());
//! # Ok::<(), vmc_cache::CacheError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use vmc_model::{CertIdentity, ErrorCode, Identifier, LastError, NewImagePolicy, Version};
use vmc_store::vmcatcher::{VmcatcherDb, VmcatcherSubscription, read_vmcatcher};
use vmc_store::{CacheEntry, ImageFilter, ImageRecord, ListImport, NewSubscription};

use vmc_trust::TrustStore;

use crate::error::{CacheError, io};
use crate::index::{self, plain_file_name};
use crate::update::{Candidate, Rejection, chain, reject};
use crate::{Config, Vmc};

/// What to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// vmcatcher's SQLite database file.
    pub database: PathBuf,
    /// vmcatcher's cache directory (`VMCATCHER_CACHE_DIR_CACHE`, with its `cache.index`);
    /// `None` adopts no files.
    pub cache_dir: Option<PathBuf>,
    /// Fetch a subscription's list from its URL when the stored one fails a check or is
    /// missing, so that its image selection carries over.
    pub fetch_rejected: bool,
}

/// What happened to one vmcatcher endorser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndorserStatus {
    /// Created in vmc.
    Added,
    /// vmc had an endorser with this id: missing identities were added to it.
    Merged,
    /// Not created (see the message).
    Failed,
}

impl EndorserStatus {
    /// `added`, `merged` or `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Merged => "merged",
            Self::Failed => "failed",
        }
    }
}

/// One vmcatcher endorser, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorserImport {
    /// Its vmc id (vmcatcher's name, or `vmcatcher-<key>` when that was empty).
    pub id: String,
    /// What happened.
    pub status: EndorserStatus,
    /// Identities it now holds from vmcatcher.
    pub identities: Vec<CertIdentity>,
    /// What the site should know (identities held by another endorser, why it failed).
    pub notes: Vec<String>,
}

/// What happened to one vmcatcher subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// The list vmcatcher stored passed every check and is the current version.
    Imported,
    /// The stored list failed or was missing; the list fetched from its URL passed.
    Fetched,
    /// Subscribed, but no list passed: the last error says why, the next update retries.
    Failed,
    /// vmc already follows this URL or list: left as it is.
    Existing,
}

impl SubscriptionStatus {
    /// `imported`, `fetched`, `failed` or `existing`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::Fetched => "fetched",
            Self::Failed => "failed",
            Self::Existing => "existing",
        }
    }
}

/// One vmcatcher subscription, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionImport {
    /// The list URL (may carry credentials: redact before printing).
    pub url: String,
    /// The list identifier vmcatcher recorded.
    pub identifier: String,
    /// What happened.
    pub status: SubscriptionStatus,
    /// The current `hv:version` in vmc afterwards.
    pub version: Option<String>,
    /// The new-image policy taken from `updateMode`.
    pub new_images: NewImagePolicy,
    /// Whether it is enabled (vmcatcher's `authorised`).
    pub enabled: bool,
    /// vmc endorsers linked to it.
    pub endorsers: Vec<String>,
    /// Why the stored list was not taken, when it was not.
    pub stored_list_error: Option<LastError>,
    /// Why no list is current, for [`SubscriptionStatus::Failed`].
    pub error: Option<LastError>,
    /// Images selected for caching, as vmcatcher had them.
    pub selected: Vec<String>,
    /// Images vmcatcher had selected that no current list carries (or all of them, when no list
    /// passed): kept as pending selections, selected when a list version names them.
    pub pending: Vec<String>,
    /// What else the site should know.
    pub notes: Vec<String>,
}

/// How a file came into vmc's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// It was already at `<cache>/<image id>`: recorded where it is.
    InPlace,
    /// Hard-linked from vmcatcher's cache directory (no copy, vmcatcher's file stays).
    Linked,
    /// Copied from vmcatcher's cache directory (another file system).
    Copied,
}

impl Adoption {
    /// `in_place`, `linked` or `copied`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InPlace => "in_place",
            Self::Linked => "linked",
            Self::Copied => "copied",
        }
    }
}

/// A vmcatcher cache file that is now a verified file of vmc's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedFile {
    /// The image.
    pub identifier: String,
    /// vmcatcher's file.
    pub source: PathBuf,
    /// Its size.
    pub size: u64,
    /// How it entered vmc's cache.
    pub how: Adoption,
}

/// Why a vmcatcher cache file was not adopted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// No current list of an imported subscription carries this image.
    NotListed,
    /// vmc's cache holds this image already.
    AlreadyCached,
    /// The image is not selected for caching (vmcatcher's cache flag was not set): adopting
    /// it would only have the next sync expire it, with events.
    NotSelected,
    /// `cache.index` names a file that is not there.
    Missing,
    /// The index entry is not a safe image id or file name.
    Unsafe,
    /// The file's size differs from the list's `hv:size`.
    SizeMismatch,
    /// The file's sha512 differs from the list's.
    ChecksumMismatch,
    /// `<cache>/<image id>` is taken by a file vmc did not write.
    TargetTaken,
    /// Reading, linking or copying failed.
    Io,
}

impl SkipReason {
    /// The reason's name, e.g. `checksum_mismatch`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotListed => "not_listed",
            Self::AlreadyCached => "already_cached",
            Self::NotSelected => "not_selected",
            Self::Missing => "missing",
            Self::Unsafe => "unsafe",
            Self::SizeMismatch => "size_mismatch",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::TargetTaken => "target_taken",
            Self::Io => "io",
        }
    }

    /// Whether the site must act: the file was expected to be adopted and was not (a
    /// mismatching file in the cache directory also blocks the download of its image).
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            Self::SizeMismatch | Self::ChecksumMismatch | Self::TargetTaken | Self::Io
        )
    }
}

/// A vmcatcher cache file that was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The image id the index gives it.
    pub identifier: String,
    /// vmcatcher's file.
    pub source: PathBuf,
    /// Why.
    pub reason: SkipReason,
    /// Details for people.
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// One entry per vmcatcher endorser.
    pub endorsers: Vec<EndorserImport>,
    /// One entry per vmcatcher subscription.
    pub subscriptions: Vec<SubscriptionImport>,
    /// Files now in vmc's cache.
    pub adopted: Vec<AdoptedFile>,
    /// Files left alone.
    pub skipped: Vec<SkippedFile>,
    /// Why the cache directory could not be taken over, when it could not (everything above
    /// was done and stays).
    pub cache_error: Option<String>,
}

impl ImportReport {
    /// Whether something could not be imported: an endorser, a subscription without a list
    /// that passed, or a cache file that should have been adopted.
    pub fn has_failures(&self) -> bool {
        self.endorsers
            .iter()
            .any(|e| e.status == EndorserStatus::Failed)
            || self
                .subscriptions
                .iter()
                .any(|s| s.status == SubscriptionStatus::Failed)
            || self.skipped.iter().any(|s| s.reason.is_failure())
            || self.cache_error.is_some()
    }
}

/// vmcatcher's `updateMode`: 0 refuse, 1 accept, bit 2 subscribe (3 = accept and subscribe).
pub fn policy_from_update_mode(mode: Option<i64>) -> Option<NewImagePolicy> {
    match mode {
        None | Some(0) => Some(NewImagePolicy::Refuse),
        Some(1) => Some(NewImagePolicy::Accept),
        Some(m) if m > 0 && m & 2 != 0 => Some(NewImagePolicy::Subscribe),
        Some(_) => None,
    }
}

/// Reads vmcatcher's `cache.index` (a JSON object keyed by image id whose values name their
/// `filename`); `None` when there is no readable index.
fn read_index(dir: &Path) -> Option<Vec<(String, String)>> {
    let path = dir.join(index::INDEX_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let doc: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                "{} is not JSON ({e}); listing the directory",
                path.display()
            );
            return None;
        }
    };
    let object = doc.as_object()?;
    Some(
        object
            .iter()
            .map(|(key, value)| {
                let id = value
                    .get("uuid")
                    .or_else(|| value.get("dc:identifier"))
                    .and_then(|v| v.as_str())
                    .unwrap_or(key)
                    .to_owned();
                let file = value
                    .get("filename")
                    .and_then(|v| v.as_str())
                    .unwrap_or(&id)
                    .to_owned();
                (id, file)
            })
            .collect(),
    )
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// An import whose inputs passed [`check_import`].
pub struct CheckedImport {
    db: VmcatcherDb,
    options: ImportOptions,
    trust: Option<TrustStore>,
}

impl std::fmt::Debug for CheckedImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedImport")
            .field("db", &self.db)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Checks every input of an import before anything is written, so that an import that
/// cannot run creates nothing (not even vmc's database, which [`Vmc::open`] would): vmcatcher's
/// database is read (read-only), its cache directory must be a readable directory, and this
/// site's CA directory (`config.ca_dir`) must load when there is a list to verify.
pub fn check_import(config: &Config, options: &ImportOptions) -> Result<CheckedImport, CacheError> {
    let db = read_vmcatcher(&options.database)?;
    tracing::info!(
        "vmcatcher database {}: {} endorsers, {} subscriptions",
        options.database.display(),
        db.endorsers.len(),
        db.subscriptions.len()
    );
    if let Some(dir) = &options.cache_dir {
        std::fs::read_dir(dir).map_err(io("read the vmcatcher cache directory", dir))?;
    }
    let trust = if db.subscriptions.is_empty() {
        None
    } else {
        // Without a CA directory no stored list can be verified: a set-up error.
        Some(
            TrustStore::load(&config.ca_dir).map_err(|source| CacheError::Trust {
                path: config.ca_dir.clone(),
                source,
            })?,
        )
    };
    Ok(CheckedImport {
        db,
        options: options.clone(),
        trust,
    })
}

impl Vmc {
    /// Imports a vmcatcher installation (see the module doc): [`check_import`], then
    /// [`Vmc::import_checked`]. The caller should hold [`Vmc::lock`].
    pub fn import_vmcatcher(&self, options: &ImportOptions) -> Result<ImportReport, CacheError> {
        let checked = check_import(&self.config, options)?;
        self.import_checked(checked)
    }

    /// Runs an import whose inputs were checked. The caller should hold [`Vmc::lock`]. Fails
    /// only when this database fails before the cache directory is reached; everything else is
    /// reported per item, and a failure while taking over the cache directory is
    /// [`ImportReport::cache_error`] (what was imported before stays, and is reported).
    pub fn import_checked(&self, checked: CheckedImport) -> Result<ImportReport, CacheError> {
        let CheckedImport { db, options, trust } = checked;
        if let Some(trust) = trust {
            // Loaded by the check: not read twice.
            let _ = self.trust.set(trust);
        }
        let mut report = ImportReport::default();
        let endorser_ids = self.import_endorsers(&db, &mut report)?;
        for sub in &db.subscriptions {
            let imported = self.import_subscription(sub, &endorser_ids, &options)?;
            report.subscriptions.push(imported);
        }
        if let Some(dir) = &options.cache_dir
            && let Err(err) = self.adopt_cache(dir, &mut report)
        {
            let message = chain(&err);
            tracing::error!("vmcatcher cache directory {}: {message}", dir.display());
            report.cache_error = Some(message);
        }
        Ok(report)
    }

    /// Creates or completes the endorsers; returns vmcatcher key → vmc id.
    fn import_endorsers(
        &self,
        db: &VmcatcherDb,
        report: &mut ImportReport,
    ) -> Result<HashMap<i64, String>, CacheError> {
        let store = self.store();
        let mut ids = HashMap::new();
        for e in &db.endorsers {
            let id = if e.identifier.trim().is_empty() {
                format!("vmcatcher-{}", e.key)
            } else {
                e.identifier.clone()
            };
            let existing = store.endorsers()?.into_iter().find(|x| x.id == id);
            let mut notes = Vec::new();
            let mut free = Vec::new();
            for identity in &e.identities {
                match store.endorser_by_identity(identity)? {
                    Some(owner) if owner.id == id => {}
                    Some(owner) => notes.push(format!(
                        "identity {} (issuer {}) belongs to endorser {} already; left there",
                        identity.subject, identity.issuer, owner.id
                    )),
                    None => free.push(identity.clone()),
                }
            }
            let status = if existing.is_some() {
                let mut status = EndorserStatus::Merged;
                for identity in &free {
                    if let Err(err) = store.add_identity(&id, identity) {
                        notes.push(chain(&err));
                        status = EndorserStatus::Failed;
                    }
                }
                status
            } else {
                match store.add_endorser(&id, &free) {
                    Ok(_) => EndorserStatus::Added,
                    Err(err) => {
                        notes.push(chain(&err));
                        EndorserStatus::Failed
                    }
                }
            };
            if status != EndorserStatus::Failed {
                ids.insert(e.key, id.clone());
            }
            tracing::info!("endorser {id}: {}", status.as_str());
            report.endorsers.push(EndorserImport {
                id,
                status,
                identities: e.identities.clone(),
                notes,
            });
        }
        Ok(ids)
    }

    /// Checks 1–9 on a list vmcatcher stored for `sub_id` (`expected` is vmcatcher's list
    /// identifier).
    fn verify_stored(
        &self,
        sub_id: i64,
        expected: &str,
        raw: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Candidate, Rejection> {
        let max = self.config().max_list_bytes;
        if raw.len() as u64 > max {
            return Err(reject(
                ErrorCode::FetchFailed,
                format!(
                    "the stored list is {} bytes, over the limit of {max}",
                    raw.len()
                ),
            ));
        }
        let trust = self
            .trust()
            .map_err(|e| reject(ErrorCode::CertificateUntrusted, chain(&e)))?;
        let candidate = self
            .verify_and_parse(trust, raw, now)
            .map_err(|rejected| rejected.0)?;
        self.check_linked(sub_id, &Self::identity(&candidate.signer))?;
        let list = &candidate.parsed.list;
        if list.identifier.as_str() != expected {
            return Err(reject(
                ErrorCode::IdentifierMismatch,
                format!(
                    "the stored list's dc:identifier is {}, but vmcatcher followed {expected}",
                    list.identifier
                ),
            ));
        }
        self.check_time(list, now)?;
        Ok(candidate)
    }

    fn import_subscription(
        &self,
        sub: &VmcatcherSubscription,
        endorser_ids: &HashMap<i64, String>,
        options: &ImportOptions,
    ) -> Result<SubscriptionImport, CacheError> {
        let store = self.store();
        let mut notes = Vec::new();
        let new_images = policy_from_update_mode(sub.update_mode).unwrap_or_else(|| {
            notes.push(format!(
                "unknown updateMode {:?}: new images are refused",
                sub.update_mode
            ));
            NewImagePolicy::Refuse
        });
        let mut out = SubscriptionImport {
            url: sub.uri.clone(),
            identifier: sub.identifier.clone(),
            status: SubscriptionStatus::Failed,
            version: None,
            new_images,
            enabled: sub.authorised,
            endorsers: Vec::new(),
            stored_list_error: None,
            error: None,
            selected: Vec::new(),
            pending: Vec::new(),
            notes,
        };
        if sub.uri.is_empty() {
            out.error = Some(reject(
                ErrorCode::FetchFailed,
                "vmcatcher has no URI for it",
            ));
            return Ok(out);
        }
        let known = match store.find_subscription(&sub.uri)? {
            Some(s) => Some(s),
            None if !sub.identifier.is_empty() => store.find_subscription(&sub.identifier)?,
            None => None,
        };
        if let Some(existing) = known {
            out.status = SubscriptionStatus::Existing;
            out.version = existing.current.map(|c| c.version);
            out.enabled = existing.enabled;
            out.new_images = existing.new_images;
            // What an import stopped half-way did not record yet is recorded now: the list
            // identifier while none is known, and the image ids vmc never recorded for it
            // (pending selections when vmcatcher had them selected). What the site chose in
            // vmc since stays.
            if existing.identifier.is_none() && Identifier::new(sub.identifier.as_str()).is_ok() {
                store.expect_list_identifier(existing.id, &sub.identifier)?;
            }
            let choices = self.vmcatcher_choices(sub, &mut out.notes);
            let now = self.config().clock.now();
            let recorded = store.record_selections(existing.id, &choices, now)?;
            out.pending = Self::selected_of(&choices)
                .iter()
                .filter(|id| recorded.contains(id))
                .map(ToString::to_string)
                .collect();
            return Ok(out);
        }
        if sub.trust_anchor.is_some_and(|t| t != 0) {
            out.notes.push(
                "vmcatcher's trustAnchor does not apply: vmc verifies HTTPS servers against the system roots and the CA directory".to_owned(),
            );
        }
        let created = store.add_subscription(&NewSubscription {
            url: sub.uri.clone(),
            new_images,
            auth: sub.auth.clone(),
            enabled: sub.authorised,
        })?;
        for link in &sub.links {
            match endorser_ids.get(&link.endorser_key) {
                Some(id) if link.authorised => {
                    store.link(id, created.id)?;
                    out.endorsers.push(id.clone());
                }
                Some(id) => out.notes.push(format!(
                    "endorser {id} was linked but not authorised in vmcatcher: not linked"
                )),
                None => out.notes.push(format!(
                    "vmcatcher endorser #{} was not imported: not linked",
                    link.endorser_key
                )),
            }
        }
        let now = self.config().clock.now();
        // The list vmcatcher followed: `subscribe show` finds the subscription by it at once,
        // and the first list accepted, now or by a later update, must carry it (check 8).
        if Identifier::new(sub.identifier.as_str()).is_ok() {
            store.expect_list_identifier(created.id, &sub.identifier)?;
        }
        // vmcatcher's selection, recorded before any list is taken: kept if no list passes, and
        // applied by whichever list version first names each image.
        let choices = self.vmcatcher_choices(sub, &mut out.notes);
        store.record_selections(created.id, &choices, now)?;
        let wanted = Self::selected_of(&choices);
        let mut accepted = None;
        match sub.latest_list.as_ref().filter(|l| !l.data.is_empty()) {
            Some(stored) => {
                match self.verify_stored(created.id, &sub.identifier, stored.data.clone(), now) {
                    Ok(candidate) => accepted = Some((candidate, SubscriptionStatus::Imported)),
                    Err(rejection) => {
                        tracing::warn!(
                            "{}: the list vmcatcher stored fails: {}: {}",
                            sub.identifier,
                            rejection.code,
                            rejection.message
                        );
                        out.stored_list_error = Some(rejection);
                    }
                }
            }
            None => out.notes.push("vmcatcher stored no list for it".to_owned()),
        }
        // The same checks on the list as published now (check 8 against vmcatcher's
        // identifier: the URL must still serve the list vmcatcher followed; check 10 against
        // the version vmcatcher last accepted).
        if accepted.is_none() && options.fetch_rejected && sub.authorised {
            let known = sub
                .latest_list
                .as_ref()
                .map(|l| Version::new(l.version.clone()))
                .filter(|v| !v.as_str().is_empty());
            match self
                .fetch_list(&sub.uri, sub.auth.as_ref())
                .and_then(|raw| self.verify_stored(created.id, &sub.identifier, raw, now))
                .and_then(|candidate| match &known {
                    Some(old) if candidate.parsed.list.version.is_older_than(old) => Err(reject(
                        ErrorCode::VersionRollback,
                        format!(
                            "hv:version {} is older than {old}, which vmcatcher accepted",
                            candidate.parsed.list.version
                        ),
                    )),
                    _ => Ok(candidate),
                }) {
                Ok(candidate) => accepted = Some((candidate, SubscriptionStatus::Fetched)),
                Err(rejection) => out.error = Some(rejection),
            }
        }
        match accepted {
            Some((candidate, status)) => {
                let identity = Self::identity(&candidate.signer);
                store.import_list(
                    created.id,
                    &ListImport {
                        raw: &candidate.raw,
                        sha512: &candidate.sha512,
                        list: &candidate.parsed.list,
                        signer: &identity,
                        imported: now,
                        select_all: false,
                    },
                )?;
                out.status = status;
                out.version = Some(candidate.parsed.list.version.to_string());
                for r in crate::update::rejected_images(&candidate.parsed) {
                    out.notes.push(format!(
                        "image {} left out: image_invalid: {}",
                        r.identifier.as_deref().unwrap_or("?"),
                        r.message
                    ));
                }
            }
            None => {
                let error = out
                    .error
                    .clone()
                    .or_else(|| out.stored_list_error.clone())
                    .unwrap_or_else(|| {
                        reject(
                            ErrorCode::FetchFailed,
                            "no list: vmcatcher stored none and it was not fetched",
                        )
                    });
                store.record_update_failure(created.id, &error, now)?;
                out.error = Some(error);
            }
        }
        if out.status != SubscriptionStatus::Failed {
            self.carry_selection(created.id, &wanted, &mut out)?;
        } else {
            out.pending = wanted.iter().map(ToString::to_string).collect();
        }
        tracing::info!("subscription {}: {}", sub.identifier, out.status.as_str());
        Ok(out)
    }

    /// vmcatcher's images of `sub` with whether it had them selected; an id vmc cannot hold is
    /// noted and left out.
    fn vmcatcher_choices(
        &self,
        sub: &VmcatcherSubscription,
        notes: &mut Vec<String>,
    ) -> Vec<(Identifier, bool)> {
        let mut choices = Vec::new();
        for image in &sub.images {
            match Identifier::new(image.identifier.as_str()) {
                Ok(id) => choices.push((id, image.selected())),
                Err(e) => notes.push(format!("image {:?} is not kept: {e}", image.identifier)),
            }
        }
        choices
    }

    /// The selected ones of `choices`.
    fn selected_of(choices: &[(Identifier, bool)]) -> Vec<Identifier> {
        choices
            .iter()
            .filter(|(_, selected)| *selected)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Selects exactly the images vmcatcher had selected (`wanted`), among those of the
    /// current list; the others it had selected stay pending selections.
    fn carry_selection(
        &self,
        sub_id: i64,
        wanted: &[Identifier],
        out: &mut SubscriptionImport,
    ) -> Result<(), CacheError> {
        let records = self.store().images(&ImageFilter {
            subscription_id: Some(sub_id),
            ..ImageFilter::default()
        })?;
        let wanted: HashSet<&str> = wanted.iter().map(Identifier::as_str).collect();
        let (on, off): (Vec<Identifier>, Vec<Identifier>) = records
            .iter()
            .map(|r| r.image.identifier.clone())
            .partition(|id| wanted.contains(id.as_str()));
        if !off.is_empty() {
            self.store().set_selected(&off, false)?;
        }
        if !on.is_empty() {
            self.store().set_selected(&on, true)?;
        }
        out.selected = on.iter().map(ToString::to_string).collect();
        let listed: HashSet<&str> = records
            .iter()
            .map(|r| r.image.identifier.as_str())
            .collect();
        let mut pending: Vec<String> = wanted
            .iter()
            .filter(|id| !listed.contains(**id))
            .map(|id| (*id).to_owned())
            .collect();
        pending.sort();
        out.pending = pending;
        Ok(())
    }

    /// Adopts the files of vmcatcher's cache directory whose sha512 matches, then rewrites
    /// vmc's `cache.index`.
    fn adopt_cache(&self, dir: &Path, report: &mut ImportReport) -> Result<(), CacheError> {
        self.ensure_dirs()?;
        let cache_dir = self.config().cache_dir.clone();
        let in_place = same_dir(dir, &cache_dir);
        let records = self.store().images(&ImageFilter::default())?;
        let entries = match read_index(dir) {
            Some(entries) => entries,
            None => {
                tracing::warn!(
                    "no readable {} in {}: adopting files named after listed images",
                    index::INDEX_FILE,
                    dir.display()
                );
                let listing = std::fs::read_dir(dir).map_err(io("read directory", dir))?;
                listing
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| records.iter().any(|r| r.image.identifier.as_str() == name))
                    .map(|name| (name.clone(), name))
                    .collect()
            }
        };
        for (id, file) in entries {
            let source = dir.join(&file);
            let skip = |reason: SkipReason, message: String| SkippedFile {
                identifier: id.clone(),
                source: source.clone(),
                reason,
                message,
            };
            let outcome = if Identifier::new(id.as_str()).is_err() || !plain_file_name(&file) {
                Err(skip(
                    SkipReason::Unsafe,
                    format!("index entry {id:?} → {file:?} is not a safe image id and file name"),
                ))
            } else {
                self.adopt_one(&id, &source, &file, in_place, &records)
                    .map_err(|(reason, message)| skip(reason, message))
            };
            match outcome {
                Ok(adopted) => {
                    tracing::info!("adopted {} ({})", adopted.identifier, adopted.how.as_str());
                    report.adopted.push(adopted);
                }
                Err(skipped) => {
                    if skipped.reason.is_failure() {
                        tracing::warn!("not adopting {}: {}", source.display(), skipped.message);
                    } else {
                        tracing::info!("not adopting {}: {}", source.display(), skipped.message);
                    }
                    report.skipped.push(skipped);
                }
            }
        }
        let cached = self.store().cache_entries()?;
        let records = self.store().images(&ImageFilter::default())?;
        index::write(&cache_dir, &cached, &records)
    }

    fn adopt_one(
        &self,
        id: &str,
        source: &Path,
        file: &str,
        in_place: bool,
        records: &[ImageRecord],
    ) -> Result<AdoptedFile, (SkipReason, String)> {
        let io_err = |what: &str, path: &Path, e: std::io::Error| {
            (
                SkipReason::Io,
                format!("cannot {what} {}: {e}", path.display()),
            )
        };
        let Some(record) = records.iter().find(|r| r.image.identifier.as_str() == id) else {
            return Err((
                SkipReason::NotListed,
                "no current list of an imported subscription carries this image".to_owned(),
            ));
        };
        if record.cached.is_some() {
            return Err((
                SkipReason::AlreadyCached,
                "vmc's cache holds this image already".to_owned(),
            ));
        }
        if !record.selected {
            return Err((
                SkipReason::NotSelected,
                "not selected for caching (file left alone)".to_owned(),
            ));
        }
        let size = match std::fs::metadata(source) {
            Ok(m) if m.is_file() => m.len(),
            _ => {
                return Err((
                    SkipReason::Missing,
                    "the index names it but there is no such file".to_owned(),
                ));
            }
        };
        if size != record.image.size {
            return Err((
                SkipReason::SizeMismatch,
                format!(
                    "{size} bytes, the list says {} (file left alone)",
                    record.image.size
                ),
            ));
        }
        let cache_dir = &self.config().cache_dir;
        let target = cache_dir.join(id);
        let (path, how) = if in_place && file == id {
            (target.clone(), Adoption::InPlace)
        } else {
            if target.exists() {
                return Err((
                    SkipReason::TargetTaken,
                    format!(
                        "{} exists but is not a file vmc cached; move it away and import again",
                        target.display()
                    ),
                ));
            }
            let tmp = cache_dir.join(format!(".{id}.import"));
            let _ = std::fs::remove_file(&tmp);
            let how = match std::fs::hard_link(source, &tmp) {
                Ok(()) => Adoption::Linked,
                Err(_) => {
                    std::fs::copy(source, &tmp)
                        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                        .map_err(|e| {
                            let _ = std::fs::remove_file(&tmp);
                            io_err("copy into the cache", source, e)
                        })?;
                    Adoption::Copied
                }
            };
            (tmp, how)
        };
        let sum = vmc_fetch::sha512_file(&path).map_err(|e| io_err("read", &path, e))?;
        if sum != record.image.sha512 {
            if how != Adoption::InPlace {
                let _ = std::fs::remove_file(&path);
            }
            return Err((
                SkipReason::ChecksumMismatch,
                format!(
                    "sha512 is {sum}, the list says {} (file left alone)",
                    record.image.sha512
                ),
            ));
        }
        if how != Adoption::InPlace {
            std::fs::rename(&path, &target).map_err(|e| {
                let _ = std::fs::remove_file(&path);
                io_err("move into the cache", &path, e)
            })?;
            if let Ok(d) = std::fs::File::open(cache_dir) {
                let _ = d.sync_all();
            }
        }
        self.store()
            .record_cached(&CacheEntry {
                identifier: record.image.identifier.clone(),
                filename: id.to_owned(),
                size,
                sha512: record.image.sha512.clone(),
                subscription_id: Some(record.subscription_id),
                list_version_id: Some(record.list_version_id),
                cached_at: self.config().clock.now(),
            })
            .map_err(|e| (SkipReason::Io, format!("database: {}", chain(&e))))?;
        Ok(AdoptedFile {
            identifier: id.to_owned(),
            source: source.to_path_buf(),
            size,
            how,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_modes_map_to_policies() {
        assert_eq!(policy_from_update_mode(None), Some(NewImagePolicy::Refuse));
        assert_eq!(
            policy_from_update_mode(Some(0)),
            Some(NewImagePolicy::Refuse)
        );
        assert_eq!(
            policy_from_update_mode(Some(1)),
            Some(NewImagePolicy::Accept)
        );
        assert_eq!(
            policy_from_update_mode(Some(3)),
            Some(NewImagePolicy::Subscribe)
        );
        assert_eq!(
            policy_from_update_mode(Some(2)),
            Some(NewImagePolicy::Subscribe)
        );
        assert_eq!(policy_from_update_mode(Some(4)), None);
        assert_eq!(policy_from_update_mode(Some(-1)), None);
    }

    #[test]
    fn index_entries_name_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(index::INDEX_FILE),
            r#"{"a": {"uuid": "a", "filename": "a", "sha512": "00"},
                "b": {"sha512": "11"},
                "c": {"dc:identifier": "c", "filename": "c.img"}}"#,
        )
        .unwrap();
        let mut entries = read_index(dir.path()).unwrap();
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("a".to_owned(), "a".to_owned()),
                ("b".to_owned(), "b".to_owned()),
                ("c".to_owned(), "c.img".to_owned()),
            ]
        );
        std::fs::write(dir.path().join(index::INDEX_FILE), "not json").unwrap();
        assert_eq!(read_index(dir.path()), None);
    }

    #[test]
    fn only_plain_file_names_are_followed() {
        assert!(plain_file_name("f3cba9bb-ce26-4020-b238-77a60f7fe90c"));
        assert!(!plain_file_name("../etc/passwd"));
        assert!(!plain_file_name(".."));
        assert!(!plain_file_name("a/b"));
        assert!(!plain_file_name(""));
    }

    #[test]
    fn only_mismatches_and_io_fail_an_import() {
        assert!(SkipReason::ChecksumMismatch.is_failure());
        assert!(SkipReason::TargetTaken.is_failure());
        assert!(!SkipReason::NotListed.is_failure());
        assert!(!SkipReason::AlreadyCached.is_failure());
        let mut report = ImportReport::default();
        assert!(!report.has_failures());
        report.skipped.push(SkippedFile {
            identifier: "x".into(),
            source: "x".into(),
            reason: SkipReason::Missing,
            message: String::new(),
        });
        assert!(!report.has_failures());
        report.skipped[0].reason = SkipReason::SizeMismatch;
        assert!(report.has_failures());
    }
}
