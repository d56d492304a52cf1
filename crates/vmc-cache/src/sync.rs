//! The cache: expiry, parallel verified downloads, re-hashing, crash repair, and the sync that
//! runs them in order. A file enters `<cache>` only after its size and sha512 verified, by an
//! atomic rename, and the database records it right after; the next run repairs the window
//! between the two (see [`Vmc::repair`]). A cached file found gone is recorded as `missing`
//! and fetched again, or forgotten (with expiry events) once its image is no longer wanted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use vmc_fetch::{DownloadOutcome, DownloadRequest, FetchError};
use vmc_model::{ErrorCode, EventType, ExpiryReason, Identifier, Image};
use vmc_store::{Announcement, CacheEntry, ImageFilter, ImageRecord, PeerCopy};

use crate::Vmc;
use crate::error::{CacheError, io};
use crate::events::{Dispatcher, Event};
use crate::index;
use crate::node::Take;
use crate::report::{ExpiryReport, ImageFailure, LeftToOther, Progress, SyncReport};
use crate::update::chain;
use crate::{CacheMode, EventScope};

/// Options of [`Vmc::sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Parallel downloads (and hashing threads for `verify`).
    pub jobs: usize,
    /// Re-hash the cache first.
    pub verify: bool,
    /// Update every enabled subscription first.
    pub update_lists: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            verify: false,
            update_lists: true,
        }
    }
}

/// Whether an image of the current lists may be cached now: its subscription is enabled, a
/// linked endorser signed the list, and the list has not expired.
pub fn is_available(record: &ImageRecord, now: DateTime<Utc>) -> bool {
    record.subscription_enabled && record.endorsed && now < record.list_expires
}

/// Why a cached file must leave the cache now, if it must.
pub fn expiry_reason(
    entry: &CacheEntry,
    record: Option<&ImageRecord>,
    subscription_enabled: Option<bool>,
    now: DateTime<Utc>,
) -> Option<ExpiryReason> {
    match record {
        None => match subscription_enabled {
            Some(true) => Some(ExpiryReason::Removed),
            _ => Some(ExpiryReason::Unendorsed),
        },
        Some(rec) if !rec.subscription_enabled || !rec.endorsed => Some(ExpiryReason::Unendorsed),
        Some(rec) if now >= rec.list_expires => Some(ExpiryReason::ListExpired),
        Some(rec) if rec.image.sha512 != entry.sha512 => Some(ExpiryReason::Replaced),
        Some(rec) if !rec.selected => Some(ExpiryReason::Unselected),
        Some(_) => None,
    }
}

fn fsync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn minimal_image(entry: &CacheEntry) -> Image {
    Image::new(
        entry.identifier.clone(),
        "",
        "",
        entry.size,
        entry.sha512.clone(),
        "",
    )
}

fn image_event(
    event_type: EventType,
    image: Image,
    record: Option<&ImageRecord>,
    filename: Option<String>,
) -> Event {
    Event {
        event_type,
        image: Some(image),
        list_identifier: record.map(|r| r.list_identifier.clone()),
        vo: record.and_then(|r| r.list_vo.clone()),
        filename,
        reason: None,
    }
}

fn squatter_failure(path: &Path, id: &str) -> ImageFailure {
    ImageFailure {
        identifier: id.to_owned(),
        code: ErrorCode::FetchFailed,
        message: format!(
            "{} exists but is not a file vmc cached; move it away to let vmc cache this image",
            path.display()
        ),
    }
}

/// How a download of `download_with` came about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Via {
    /// From upstream under this node's download lease (or left to the node holding it).
    Lease,
    /// Copied from the cache of the node named.
    Peer(String),
    /// From upstream without the lease: per-node caches, the holder serves no copies.
    Unleased,
}

/// The lease under which one node of a site with one cache directory expires it.
const EXPIRE_LEASE: &str = "expire";

/// How often a node with its own cache looks again whether another node of the site finished
/// an image it is downloading, to copy it from there.
const PEER_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a writer-unique temporary file may go unwritten before another run deletes it as
/// left by a crashed writer (a live transfer writes, or times out, far sooner).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// The partial file one download writes. Normally `<partial>/<id>`, resumable by the next run,
/// while this writer holds `<partial>/.<id>.lock`; when another writer holds it (several vmc
/// homes sharing one partial directory), a name unique to this writer, deleted when done.
struct PartialFile {
    path: PathBuf,
    /// The held lock on `<partial>/.<id>.lock`, with its path; `None` for a unique name.
    lock: Option<(std::fs::File, PathBuf)>,
}

impl PartialFile {
    fn claim(dir: &Path, id: &str) -> Self {
        let lock_path = dir.join(format!(".{id}.lock"));
        let held = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ok()
            .filter(|file| file.try_lock().is_ok() && same_file(file, &lock_path));
        match held {
            Some(file) => Self {
                path: dir.join(id),
                lock: Some((file, lock_path)),
            },
            None => {
                tracing::info!(
                    "{id} is being downloaded by another writer; using a name of our own"
                );
                Self {
                    path: vmc_fetch::unique_tmp_path(&dir.join(id)),
                    lock: None,
                }
            }
        }
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        match &self.lock {
            // Removed while still held: a writer that opened it before locks a file no longer
            // at that path, sees so (`same_file`), and takes a name of its own.
            Some((_, lock_path)) => {
                let _ = std::fs::remove_file(lock_path);
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
                let _ = std::fs::remove_file(vmc_fetch::state_path(&self.path));
            }
        }
    }
}

/// Whether the open `file` is the one at `path` now.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The key of a site-wide claim (`node_runs`) on doing `what` to one image version.
fn site_claim(
    what: &str,
    identifier: &Identifier,
    sha512: &str,
    list_version: Option<i64>,
) -> String {
    format!("{what}:{identifier}:{sha512}:{}", list_version.unwrap_or(0))
}

/// Deletes what interrupted writers left in `dir`: the temporary files of
/// [`vmc_fetch::replace_file`] (the index, partial files' states) that nobody holds, at
/// once, and the older writer-unique files ([`remove_stale_tmp`]).
fn remove_interrupted_writes(dir: &Path) {
    for path in vmc_fetch::remove_abandoned_replacements(dir) {
        tracing::info!("removed {}, left by an interrupted run", path.display());
    }
    remove_stale_tmp(dir);
}

/// Deletes writer-unique temporary files in `dir` (`.<name>.<pid>.<n>.<random>.tmp`, and a
/// partial file's state beside it) that nobody has written for [`STALE_TMP`]: a crashed
/// writer's, never resumed or renamed.
fn remove_stale_tmp(dir: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for item in listing.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let unique = vmc_fetch::is_unique_tmp_name(name.strip_suffix(".state").unwrap_or(&name));
        let stale = item
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        if unique && stale {
            tracing::info!(
                "removing {}, left by an interrupted run",
                item.path().display()
            );
            let _ = std::fs::remove_file(item.path());
        }
    }
}

/// Deletes the resumable partial files (`<id>` with its `<id>.state`, which shows vmc wrote
/// it) of images no longer to be downloaded, unless another writer holds them: an interrupted
/// download of an image since unselected, replaced or removed would never be resumed.
fn remove_unwanted_partials(dir: &Path, wanted: &HashSet<&str>) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for item in listing.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".state") else {
            continue;
        };
        if id.starts_with('.') || wanted.contains(id) || Identifier::new(id).is_err() {
            continue;
        }
        let claimed = PartialFile::claim(dir, id);
        if claimed.lock.is_some() {
            tracing::info!("removing the partial download of {id}: no longer wanted");
            let _ = std::fs::remove_file(&claimed.path);
            let _ = std::fs::remove_file(item.path());
        }
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// Adapts one download's progress to the caller's [`Progress`].
struct DownloadProgress<'a> {
    id: &'a str,
    progress: &'a dyn Progress,
}

impl vmc_fetch::Reporter for DownloadProgress<'_> {
    fn started(&self, _url: &str, total: u64, resumed_from: u64) {
        self.progress.download_started(self.id, total, resumed_from);
    }
    fn progress(&self, done: u64) {
        self.progress.download_progress(self.id, done);
    }
}

impl Vmc {
    fn current_records(&self) -> Result<Vec<ImageRecord>, CacheError> {
        Ok(self.store().images(&ImageFilter::default())?)
    }

    fn write_index(&self) -> Result<(), CacheError> {
        let cached = self.store().cache_entries()?;
        let records = self.current_records()?;
        index::write(&self.config().cache_dir, &cached, &records)
    }

    /// The whole cron job: (re-hash,) update lists, repair, expire, download, with
    /// `ProcessPrefix`/`ProcessPostfix` around it. The caller should hold [`Vmc::lock`].
    pub fn sync(
        &self,
        options: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncReport, CacheError> {
        self.ensure_dirs()?;
        let dispatcher = Dispatcher::new(self.config());
        let mut report = SyncReport::default();
        dispatcher.fire(
            self.store(),
            &Event::process(EventType::ProcessPrefix),
            self.config().clock.now(),
        );
        self.replay_orphans(&dispatcher);
        if options.verify {
            self.verify_with(&dispatcher, options.jobs, progress, &mut report)?;
        }
        if options.update_lists {
            report.subscriptions = self.update_all(None, &dispatcher, progress)?;
        }
        self.set_activity("expiring");
        self.expire_with(&dispatcher, &mut report)?;
        self.set_activity("downloading");
        self.download_with(&dispatcher, options.jobs, progress, &mut report)?;
        // What this run's repair adopted (a file renamed in just before a crash) was announced
        // under a session of its own: delivered now rather than by the next run.
        self.replay_orphans(&dispatcher);
        dispatcher.fire(
            self.store(),
            &Event::process(EventType::ProcessPostfix),
            self.config().clock.now(),
        );
        report.handler_failures = dispatcher.failures();
        Ok(report)
    }

    /// Downloads the selected, available images missing from the cache.
    pub fn download(&self, jobs: usize, progress: &dyn Progress) -> Result<SyncReport, CacheError> {
        self.ensure_dirs()?;
        let dispatcher = Dispatcher::new(self.config());
        let mut report = SyncReport::default();
        self.replay_orphans(&dispatcher);
        self.download_with(&dispatcher, jobs, progress, &mut report)?;
        report.handler_failures = dispatcher.failures();
        Ok(report)
    }

    /// Moves every cached image that is no longer wanted to the expired directory.
    pub fn expire(&self) -> Result<SyncReport, CacheError> {
        self.ensure_dirs()?;
        let dispatcher = Dispatcher::new(self.config());
        let mut report = SyncReport::default();
        self.replay_orphans(&dispatcher);
        self.expire_with(&dispatcher, &mut report)?;
        report.handler_failures = dispatcher.failures();
        Ok(report)
    }

    /// Re-hashes every cached file; a corrupt one is expired (reason `corrupt`) and fetched
    /// again by the next download.
    pub fn verify_cache(
        &self,
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<SyncReport, CacheError> {
        self.ensure_dirs()?;
        let dispatcher = Dispatcher::new(self.config());
        let mut report = SyncReport::default();
        self.replay_orphans(&dispatcher);
        self.verify_with(&dispatcher, jobs, progress, &mut report)?;
        report.handler_failures = dispatcher.failures();
        Ok(report)
    }

    /// Delivers the events announced by runs that died before delivering them (see
    /// [`Dispatcher::replay_orphans`]): another node's once pending longer than
    /// [`Config::event_replay_grace`](crate::Config::event_replay_grace).
    fn replay_orphans(&self, dispatcher: &Dispatcher) {
        dispatcher.replay_orphans(
            self.store(),
            self.config().event_replay_grace(),
            self.config().clock.now(),
        );
    }

    /// Whether this node's handler hears about a change to its cache: always with one cache
    /// for the site (the work is done once), and with per-node caches when every node hears
    /// of its own cache (`EventScope::Node`) or the change is the site's first (`first`).
    fn announces(&self, first: impl FnOnce() -> bool) -> bool {
        let config = self.config();
        config.cache_mode == CacheMode::Shared || config.event_scope == EventScope::Node || first()
    }

    /// Whether this node is the first of the site to do `what` (`available`, `expired`) to
    /// one image version: per-node caches, where each node caches and expires its own copy
    /// and one announces it. The claim is this node's when it made it before (a run that
    /// died between the claim and the work: its next run does the work and announces it).
    /// A database failure announces (an event twice rather than none).
    fn first_at_site(
        &self,
        what: &str,
        identifier: &Identifier,
        sha512: &str,
        list_version: Option<i64>,
    ) -> bool {
        let key = site_claim(what, identifier, sha512, list_version);
        let node = &self.config().node;
        let claimed = self
            .store()
            .claim_or_own(&key, node, self.config().clock.now());
        claimed.unwrap_or_else(|e| {
            tracing::warn!("cannot record {key}: {e}; announcing it");
            true
        })
    }

    /// Gives back the site's `what` claim ([`Vmc::first_at_site`]) on work this node could
    /// not do after all (a verified copy it failed to admit), so the next node's copy is the
    /// site's news.
    fn release_site_claim(
        &self,
        what: &str,
        identifier: &Identifier,
        sha512: &str,
        list_version: Option<i64>,
    ) {
        let key = site_claim(what, identifier, sha512, list_version);
        if let Err(e) = self.store().release_claim(&key, &self.config().node) {
            tracing::warn!("cannot give back {key}: {e}; the next copy will not be announced");
        }
    }

    fn first_expiry(&self, entry: &CacheEntry) -> bool {
        self.first_at_site(
            "expired",
            &entry.identifier,
            &entry.sha512,
            entry.list_version_id,
        )
    }

    /// Repairs what an interrupted run, or someone else, may have left: a cached file that is
    /// gone from the cache directory is recorded as `missing` (the download step fetches it
    /// again; [`Vmc::expire`] forgets it once its image is no longer wanted), and a verified
    /// file renamed into the cache just before a crash is adopted once its sha512 matches.
    /// Files vmc did not write are logged and left alone. Returns the ids of every missing
    /// record, those found now and those found by an earlier run and not fetched yet.
    pub fn repair(&self, records: &[ImageRecord]) -> Result<Vec<String>, CacheError> {
        let dir = &self.config().cache_dir;
        let entries = self.store().cache_entries()?;
        let mut known: HashSet<String> = HashSet::new();
        for entry in &entries {
            if dir.join(&entry.filename).is_file() {
                known.insert(entry.filename.clone());
            } else if self
                .store()
                .record_missing(&entry.identifier, self.config().clock.now())?
            {
                tracing::warn!(
                    "cached image {} is missing from {}; it will be fetched again",
                    entry.identifier,
                    dir.display()
                );
            }
        }
        remove_interrupted_writes(dir);
        let listing = std::fs::read_dir(dir).map_err(io("read directory", dir))?;
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if known.contains(&name) || name == index::INDEX_FILE || name.starts_with('.') {
                continue;
            }
            let path = item.path();
            let adopt = records.iter().find(|r| {
                r.image.identifier.as_str() == name
                    && r.selected
                    && path
                        .metadata()
                        .map(|m| m.len() == r.image.size)
                        .unwrap_or(false)
            });
            match adopt {
                Some(rec)
                    if crate::oci::file_digest(&path, &rec.image.sha512)
                        .ok()
                        .as_deref()
                        == Some(rec.image.sha512.as_str()) =>
                {
                    tracing::info!(
                        "adopting verified file {} left by an interrupted run",
                        path.display()
                    );
                    // Its run fired AvailablePrefix and died before the record and
                    // AvailablePostfix: the postfix is announced with the record, under a
                    // session of its own, and delivered by the next replay. Per-node caches:
                    // only if the site's claim is this node's (the dead run's) or nobody's.
                    let postfix = image_event(
                        EventType::AvailablePostfix,
                        rec.image.clone(),
                        Some(rec),
                        Some(name.clone()),
                    );
                    let now = self.config().clock.now();
                    let announce = self
                        .announces(|| {
                            self.first_at_site(
                                "available",
                                &rec.image.identifier,
                                &rec.image.sha512,
                                Some(rec.list_version_id),
                            )
                        })
                        .then(|| Dispatcher::new(self.config()).announcement(&postfix, now));
                    self.store().record_cached_and_announce(
                        &CacheEntry {
                            identifier: rec.image.identifier.clone(),
                            filename: name,
                            size: rec.image.size,
                            sha512: rec.image.sha512.clone(),
                            subscription_id: Some(rec.subscription_id),
                            list_version_id: Some(rec.list_version_id),
                            cached_at: now,
                        },
                        announce.as_ref(),
                    )?;
                }
                _ => tracing::warn!("leaving alone {}: not a file vmc cached", path.display()),
            }
        }
        Ok(self
            .store()
            .missing_entries()?
            .into_iter()
            .map(|m| m.entry.identifier.to_string())
            .collect())
    }

    /// [`Vmc::repair`], adding the missing ids to `report` once each.
    fn repair_into(
        &self,
        records: &[ImageRecord],
        report: &mut SyncReport,
    ) -> Result<(), CacheError> {
        for id in self.repair(records)? {
            if !report.missing.contains(&id) {
                report.missing.push(id);
            }
        }
        Ok(())
    }

    /// A free name in the expired directory: `<id>.<UTC time>`, or with `.<n>` appended for
    /// the first free `n >= from` (when `from > 0` or the plain name is taken).
    fn expired_name(&self, id: &Identifier, now: DateTime<Utc>, from: usize) -> String {
        let base = format!("{id}.{}", now.format("%Y-%m-%d_%H-%M-%S"));
        let mut name = if from == 0 {
            base.clone()
        } else {
            format!("{base}.{from}")
        };
        let mut n = from.max(1);
        while self.config().expired_dir.join(&name).exists() {
            name = format!("{base}.{n}");
            n += 1;
        }
        name
    }

    /// Records `entry`'s file as moved to `<expired>/<name>`. Safe against another process
    /// sharing the database: a name its expired directory holds in the database already
    /// moves the file on to the next free one, and a record it expired first gets a record of
    /// its own. Returns the name the file ends up with.
    fn record_expiry(
        &self,
        entry: &CacheEntry,
        reason: ExpiryReason,
        mut name: String,
        now: DateTime<Utc>,
        announce: &dyn Fn(&str) -> Option<Announcement>,
    ) -> Result<(String, Option<(i64, Announcement)>), CacheError> {
        let dir = &self.config().expired_dir;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let announcement = announce(&name);
            let recorded = match self.store().record_expired_and_announce(
                &entry.identifier,
                reason,
                &name,
                now,
                announcement.as_ref(),
            ) {
                Err(e) if e.is_not_found() => self.store().add_expired_and_announce(
                    entry,
                    reason,
                    &name,
                    now,
                    announcement.as_ref(),
                ),
                other => other,
            };
            match recorded {
                Err(vmc_store::StoreError::Conflict { .. }) if attempt < 100 => {
                    let next = self.expired_name(&entry.identifier, now, attempt);
                    std::fs::rename(dir.join(&name), dir.join(&next))
                        .map_err(io("rename in the expired directory", &dir.join(&name)))?;
                    name = next;
                }
                other => {
                    let id = other?;
                    return Ok((name, id.zip(announcement)));
                }
            }
        }
    }

    /// Moves one cached file to the expired directory with its events.
    fn retire(
        &self,
        dispatcher: &Dispatcher,
        entry: &CacheEntry,
        record: Option<&ImageRecord>,
        reason: ExpiryReason,
    ) -> Result<ExpiryReport, CacheError> {
        let now = self.config().clock.now();
        let image = record
            .map(|r| r.image.clone())
            .unwrap_or_else(|| minimal_image(entry));
        let announces = self.announces(|| self.first_expiry(entry));
        let mut event = image_event(
            EventType::ExpirePrefix,
            image.clone(),
            record,
            Some(entry.filename.clone()),
        );
        event.reason = Some(reason.as_str().to_owned());
        if announces {
            dispatcher.fire(self.store(), &event, now);
        }
        let from = self.config().cache_dir.join(&entry.filename);
        let name = self.expired_name(&entry.identifier, now, 0);
        let to = self.config().expired_dir.join(&name);
        match std::fs::rename(&from, &to) {
            Ok(()) => fsync_dir(&self.config().expired_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Gone since the repair step: nothing to move, the record is forgotten.
                tracing::warn!("{} was already gone from the cache", from.display());
                self.store().record_missing(&entry.identifier, now)?;
                self.store().forget_missing(&entry.identifier)?;
                let mut event = image_event(EventType::ExpirePostfix, image, record, None);
                event.reason = Some(reason.as_str().to_owned());
                if announces {
                    dispatcher.fire(self.store(), &event, self.config().clock.now());
                }
                return Ok(ExpiryReport {
                    identifier: entry.identifier.to_string(),
                    reason,
                    expired_file: None,
                });
            }
            Err(e) => return Err(io("move to the expired directory", &from)(e)),
        }
        let postfix = |name: &str| {
            let mut event = image_event(
                EventType::ExpirePostfix,
                image.clone(),
                record,
                Some(name.to_owned()),
            );
            event.reason = Some(reason.as_str().to_owned());
            announces.then(|| dispatcher.announcement(&event, now))
        };
        let (name, announced) = self.record_expiry(entry, reason, name, now, &postfix)?;
        tracing::info!("expired {} ({reason})", entry.identifier);
        if let Some((id, announcement)) = announced {
            dispatcher.fire_announced(self.store(), id, &announcement, self.config().clock.now());
        }
        Ok(ExpiryReport {
            identifier: entry.identifier.to_string(),
            reason,
            expired_file: Some(name),
        })
    }

    /// Forgets the record of a missing file whose image is no longer wanted, with the expiry
    /// events a handler needs to retire the image (no `VMCATCHER_EVENT_FILENAME`: there is no
    /// file in either directory).
    fn retire_missing(
        &self,
        dispatcher: &Dispatcher,
        entry: &CacheEntry,
        record: Option<&ImageRecord>,
        reason: ExpiryReason,
    ) -> Result<Option<ExpiryReport>, CacheError> {
        let image = record
            .map(|r| r.image.clone())
            .unwrap_or_else(|| minimal_image(entry));
        if !self.store().forget_missing(&entry.identifier)? {
            // Another process fetched or forgot it in the meantime: nothing to announce.
            return Ok(None);
        }
        tracing::info!("forgot missing {} ({reason})", entry.identifier);
        let announces = self.announces(|| self.first_expiry(entry));
        for event_type in [EventType::ExpirePrefix, EventType::ExpirePostfix]
            .into_iter()
            .filter(|_| announces)
        {
            let mut event = image_event(event_type, image.clone(), record, None);
            event.reason = Some(reason.as_str().to_owned());
            dispatcher.fire(self.store(), &event, self.config().clock.now());
        }
        Ok(Some(ExpiryReport {
            identifier: entry.identifier.to_string(),
            reason,
            expired_file: None,
        }))
    }

    pub(crate) fn expire_with(
        &self,
        dispatcher: &Dispatcher,
        report: &mut SyncReport,
    ) -> Result<(), CacheError> {
        let records = self.current_records()?;
        self.repair_into(&records, report)?;
        // One cache for the site: one node at a time decides and moves (the others' runs find
        // the result). Per-node caches: each node expires its own copies.
        if self.config().cache_mode == CacheMode::Shared {
            match self.take_lease(EXPIRE_LEASE) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::info!("another node of the site is expiring the cache");
                    return self.write_index();
                }
                Err(e) => tracing::warn!("cannot take the expiry lease, expiring anyway: {e}"),
            }
        }
        let result = self.expire_entries(dispatcher, &records, report);
        if let Err(e) = self.release(EXPIRE_LEASE) {
            tracing::warn!("cannot release the lease {EXPIRE_LEASE}: {e}");
        }
        result?;
        // Also when nothing expired: the repair may have found files missing, or an earlier
        // run died between a database change and its index rewrite (unchanged: not written).
        self.write_index()
    }

    fn expire_entries(
        &self,
        dispatcher: &Dispatcher,
        records: &[ImageRecord],
        report: &mut SyncReport,
    ) -> Result<(), CacheError> {
        let now = self.config().clock.now();
        let subs: HashMap<i64, bool> = self
            .store()
            .subscriptions()?
            .into_iter()
            .map(|s| (s.id, s.enabled))
            .collect();
        let entries = self.store().cache_entries()?;
        let missing = self.store().missing_entries()?;
        let current = entries.iter().map(|e| (e, false));
        for (entry, is_missing) in current.chain(missing.iter().map(|m| (&m.entry, true))) {
            let record = records
                .iter()
                .filter(|r| r.image.identifier == entry.identifier)
                .min_by_key(|r| Some(r.subscription_id) != entry.subscription_id);
            let enabled = entry.subscription_id.and_then(|id| subs.get(&id).copied());
            let Some(reason) = expiry_reason(entry, record, enabled, now) else {
                continue;
            };
            if is_missing {
                report
                    .expired
                    .extend(self.retire_missing(dispatcher, entry, record, reason)?);
            } else {
                report
                    .expired
                    .push(self.retire(dispatcher, entry, record, reason)?);
            }
        }
        Ok(())
    }

    pub(crate) fn download_with(
        &self,
        dispatcher: &Dispatcher,
        jobs: usize,
        progress: &dyn Progress,
        report: &mut SyncReport,
    ) -> Result<(), CacheError> {
        let records = self.current_records()?;
        self.repair_into(&records, report)?;
        let now = self.config().clock.now();
        let cached: HashSet<Identifier> = self
            .store()
            .cache_entries()?
            .into_iter()
            .map(|e| e.identifier)
            .collect();
        let mut seen = HashSet::new();
        let candidates: Vec<&ImageRecord> = records
            .iter()
            .filter(|r| r.selected && is_available(r, now) && !cached.contains(&r.image.identifier))
            .filter(|r| seen.insert(r.image.identifier.clone()))
            .collect();
        remove_interrupted_writes(&self.config().partial_dir);
        // Before the squatter check: a blocked image keeps its partial download for later.
        remove_unwanted_partials(
            &self.config().partial_dir,
            &candidates
                .iter()
                .map(|r| r.image.identifier.as_str())
                .collect(),
        );
        let wanted: Vec<&ImageRecord> = candidates
            .into_iter()
            .filter(|r| {
                // A file vmc did not write holds the name: refuse before spending a download.
                let squatter = self.config().cache_dir.join(r.image.identifier.as_str());
                if squatter.exists() {
                    report
                        .failed
                        .push(squatter_failure(&squatter, r.image.identifier.as_str()));
                    false
                } else {
                    true
                }
            })
            .collect();
        if wanted.is_empty() {
            return self.write_index();
        }
        // Build the HTTP client (system roots, CA directory) once, here, rather than in
        // every worker that would otherwise find it missing at the same time. A failure is
        // reported per image by the workers, which try again.
        let _ = self.client();
        // Each image with the time it may be tried again (per-node caches: another node is
        // downloading it, to be copied from there once it has).
        let start = Instant::now();
        let queue: Mutex<VecDeque<(&ImageRecord, Instant)>> =
            Mutex::new(wanted.iter().map(|r| (*r, start)).collect());
        let reserved = AtomicU64::new(0);
        let per_node = self.config().cache_mode == CacheMode::PerNode;
        type Fetched = Result<(DownloadOutcome, PartialFile), ImageFailure>;
        // `None`: another node of the site holds the image's download lease.
        type Done<'r> = (&'r ImageRecord, Option<Fetched>, Via);
        let (tx, rx) = mpsc::channel::<Done<'_>>();
        let workers = jobs.clamp(1, wanted.len());
        std::thread::scope(|scope| -> Result<(), CacheError> {
            for _ in 0..workers {
                let tx = tx.clone();
                let queue = &queue;
                let reserved = &reserved;
                scope.spawn(move || {
                    loop {
                        let next = {
                            let Ok(mut q) = queue.lock() else { break };
                            let now = Instant::now();
                            match q.iter().position(|(_, at)| *at <= now) {
                                Some(i) => q.remove(i).map(|(r, _)| r).ok_or(now),
                                None => match q.iter().map(|(_, at)| *at).min() {
                                    Some(at) => Err(at),
                                    None => break,
                                },
                            }
                        };
                        let record = match next {
                            Ok(record) => record,
                            Err(at) => {
                                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                                continue;
                            }
                        };
                        if per_node
                            && let Some((fetched, node)) =
                                self.copy_from_peer(record, reserved, progress)
                        {
                            if tx
                                .send((record, Some(Ok(fetched)), Via::Peer(node)))
                                .is_err()
                            {
                                break;
                            }
                            continue;
                        }
                        let via = match self.lease_download(record) {
                            Take::Mine => Via::Lease,
                            Take::Cached => continue,
                            Take::Held if per_node && self.holder_serves(record) => {
                                if let Ok(mut q) = queue.lock() {
                                    q.push_back((record, Instant::now() + PEER_POLL));
                                }
                                continue;
                            }
                            // The holder serves no copies (no --node-url): from upstream, as
                            // the site chose, without the lease (the holder keeps it).
                            Take::Held if per_node => Via::Unleased,
                            Take::Held => {
                                if tx.send((record, None, Via::Lease)).is_err() {
                                    break;
                                }
                                continue;
                            }
                        };
                        // The holder may have finished between the look and the take.
                        if per_node
                            && via == Via::Lease
                            && let Some((fetched, node)) =
                                self.copy_from_peer(record, reserved, progress)
                        {
                            self.release_download(record);
                            if tx
                                .send((record, Some(Ok(fetched)), Via::Peer(node)))
                                .is_err()
                            {
                                break;
                            }
                            continue;
                        }
                        let result = self.fetch_one(record, None, reserved, progress);
                        progress
                            .download_finished(record.image.identifier.as_str(), result.is_ok());
                        if tx.send((record, Some(result), via)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (record, result, via) in rx {
                let elsewhere = match (&result, &via) {
                    (None, _) => self.download_holder(record),
                    (Some(Ok(_)), Via::Lease) => self.download_lost(record),
                    _ => None,
                };
                if let Some(left) = elsewhere {
                    self.release_download(record);
                    report.left_to_others.push(left);
                    if let Some(Ok((outcome, _))) = &result {
                        report.bytes_downloaded += outcome.bytes_transferred;
                    }
                    continue;
                }
                let Some(result) = result else { continue };
                let admitted = result.and_then(|(outcome, partial)| {
                    report.bytes_downloaded += outcome.bytes_transferred;
                    // Per-node caches: the site's first verified copy of this version is the
                    // site's news; every copy is news to per-node handlers.
                    let (image, version) = (&record.image, Some(record.list_version_id));
                    let mut claimed = false;
                    let announce = self.announces(|| {
                        claimed = self.first_at_site(
                            "available",
                            &image.identifier,
                            &image.sha512,
                            version,
                        );
                        claimed
                    });
                    let admitted = self.admit(dispatcher, record, &partial.path, announce);
                    if admitted.is_err() && claimed {
                        self.release_site_claim(
                            "available",
                            &image.identifier,
                            &image.sha512,
                            version,
                        );
                    }
                    admitted
                });
                if via == Via::Lease {
                    self.release_download(record);
                }
                match admitted {
                    Ok(()) => {
                        report.downloaded.push(record.image.identifier.to_string());
                        if let Via::Peer(node) = via {
                            report.from_peers.push(LeftToOther {
                                identifier: record.image.identifier.to_string(),
                                node,
                            });
                        }
                    }
                    Err(failure) => {
                        tracing::warn!(
                            "{}: {}: {}",
                            failure.identifier,
                            failure.code,
                            failure.message
                        );
                        report.failed.push(failure);
                    }
                }
            }
            Ok(())
        })?;
        self.write_index()
    }

    /// Per-node caches: copies the image from the cache of another node of the site that holds
    /// the same version and serves its cache (its `node_url`), through the same verified
    /// download as from upstream (this node's sha512 and size, so a bad copy is refused);
    /// nodes seen most recently first. `None` when no node could give it (then it comes from
    /// upstream, or waits for the node downloading it). OCI images always come from their
    /// registry.
    fn copy_from_peer(
        &self,
        record: &ImageRecord,
        reserved: &AtomicU64,
        progress: &dyn Progress,
    ) -> Option<((DownloadOutcome, PartialFile), String)> {
        if crate::oci::is_oci(&record.image.uri) {
            return None;
        }
        let id = record.image.identifier.as_str();
        let mut peers: Vec<PeerCopy> = match self.store().peer_copies(&record.image.identifier) {
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!("{id}: cannot look for copies on other nodes: {e}");
                return None;
            }
        };
        peers.retain(|p| {
            p.url.is_some()
                && p.entry.size == record.image.size
                && p.entry.sha512.eq_ignore_ascii_case(&record.image.sha512)
        });
        peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        for peer in peers {
            let base = peer.url.as_deref().unwrap_or_default();
            let sep = if base.ends_with('/') { "" } else { "/" };
            let url = format!("{base}{sep}{}", peer.entry.filename);
            match self.fetch_one(record, Some(&url), reserved, progress) {
                Ok(fetched) => {
                    progress.download_finished(id, true);
                    tracing::info!("{id}: copied from node {}", peer.node);
                    return Some((fetched, peer.node));
                }
                Err(failure) => tracing::warn!(
                    "{id}: cannot copy from node {} ({url}): {}",
                    peer.node,
                    failure.message
                ),
            }
        }
        None
    }

    /// Downloads one image into the partial directory, verified (runs on a worker thread).
    fn fetch_one(
        &self,
        record: &ImageRecord,
        from: Option<&str>,
        reserved: &AtomicU64,
        progress: &dyn Progress,
    ) -> Result<(DownloadOutcome, PartialFile), ImageFailure> {
        let id = record.image.identifier.as_str();
        let fail = |code: ErrorCode, message: String| ImageFailure {
            identifier: id.to_owned(),
            code,
            message,
        };
        let claimed = PartialFile::claim(&self.config().partial_dir, id);
        let partial = claimed.path.clone();
        let present = partial.metadata().map(|m| m.len()).unwrap_or(0);
        let need = record.image.size.saturating_sub(present);
        let before = reserved.fetch_add(need, Ordering::SeqCst);
        if let Some(free) = free_bytes(&self.config().partial_dir)
            && free < before.saturating_add(need)
        {
            reserved.fetch_sub(need, Ordering::SeqCst);
            return Err(fail(
                ErrorCode::DiskFull,
                format!(
                    "{} bytes needed in {}, {} free (other downloads hold {})",
                    need,
                    self.config().partial_dir.display(),
                    free,
                    before
                ),
            ));
        }
        let url = from.map_or_else(
            || self.config().rewrite_url(&record.image.uri),
            str::to_owned,
        );
        let request = DownloadRequest {
            url: &url,
            credentials: None,
            dest: &partial,
            expected_size: record.image.size,
            expected_sha512: &record.image.sha512,
        };
        let reporter = DownloadProgress { id, progress };
        let result = if from.is_none() && crate::oci::is_oci(&record.image.uri) {
            self.fetch_oci_blob(record, &partial, &reporter)
        } else {
            self.client()
                .and_then(|client| client.download(&request, &reporter))
        };
        reserved.fetch_sub(need, Ordering::SeqCst);
        result
            .map(|outcome| (outcome, claimed))
            .map_err(|e: FetchError| fail(e.code(), chain(&e)))
    }

    /// Moves a verified partial file into the cache with its events (main thread). Once
    /// `AvailablePrefix` has fired, the image ends with `AvailablePostfix` or, when the move or
    /// its record fails, `AvailableFailed` (reason on stdin).
    fn admit(
        &self,
        dispatcher: &Dispatcher,
        record: &ImageRecord,
        partial: &Path,
        announce: bool,
    ) -> Result<(), ImageFailure> {
        let id = record.image.identifier.as_str();
        let target = self.config().cache_dir.join(id);
        if target.exists() {
            return Err(squatter_failure(&target, id));
        }
        let event = |event_type| {
            image_event(
                event_type,
                record.image.clone(),
                Some(record),
                Some(id.to_owned()),
            )
        };
        if announce {
            dispatcher.fire(
                self.store(),
                &event(EventType::AvailablePrefix),
                self.config().clock.now(),
            );
        }
        let now = self.config().clock.now();
        let postfix =
            announce.then(|| dispatcher.announcement(&event(EventType::AvailablePostfix), now));
        match self.move_in(record, partial, &target, postfix.as_ref()) {
            Err(failure) => {
                if announce {
                    let mut event = image_event(
                        EventType::AvailableFailed,
                        record.image.clone(),
                        Some(record),
                        None,
                    );
                    event.reason = Some(failure.message.clone());
                    dispatcher.fire(self.store(), &event, self.config().clock.now());
                }
                Err(failure)
            }
            Ok(outbox) => {
                tracing::info!("cached {id}");
                if let (Some(outbox), Some(postfix)) = (outbox, &postfix) {
                    dispatcher.fire_announced(
                        self.store(),
                        outbox,
                        postfix,
                        self.config().clock.now(),
                    );
                }
                Ok(())
            }
        }
    }

    /// The rename into the cache and its record, for [`Vmc::admit`].
    fn move_in(
        &self,
        record: &ImageRecord,
        partial: &Path,
        target: &Path,
        announce: Option<&Announcement>,
    ) -> Result<Option<i64>, ImageFailure> {
        let id = record.image.identifier.as_str();
        let fail = |message: String| ImageFailure {
            identifier: id.to_owned(),
            code: ErrorCode::FetchFailed,
            message,
        };
        std::fs::rename(partial, target).map_err(|e| {
            fail(format!(
                "cannot move {} into the cache: {e}",
                partial.display()
            ))
        })?;
        fsync_dir(&self.config().cache_dir);
        let _ = std::fs::remove_file(vmc_fetch::state_path(partial));
        self.store()
            .record_cached_and_announce(
                &CacheEntry {
                    identifier: record.image.identifier.clone(),
                    filename: id.to_owned(),
                    size: record.image.size,
                    sha512: record.image.sha512.clone(),
                    subscription_id: Some(record.subscription_id),
                    list_version_id: Some(record.list_version_id),
                    cached_at: self.config().clock.now(),
                },
                announce,
            )
            .map_err(|e| fail(format!("database: {}", chain(&e))))
    }

    pub(crate) fn verify_with(
        &self,
        dispatcher: &Dispatcher,
        jobs: usize,
        progress: &dyn Progress,
        report: &mut SyncReport,
    ) -> Result<(), CacheError> {
        let records = self.current_records()?;
        self.repair_into(&records, report)?;
        let entries = self.store().cache_entries()?;
        progress.verify_started(entries.len(), entries.iter().map(|e| e.size).sum());
        let queue: Mutex<VecDeque<&CacheEntry>> = Mutex::new(entries.iter().collect());
        let (tx, rx) = mpsc::channel::<(&CacheEntry, Result<(), String>)>();
        let mut corrupt = Vec::new();
        std::thread::scope(|scope| {
            for _ in 0..jobs.clamp(1, entries.len().max(1)) {
                let tx = tx.clone();
                let queue = &queue;
                scope.spawn(move || {
                    loop {
                        let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                        let Some(entry) = next else { break };
                        let path = self.config().cache_dir.join(&entry.filename);
                        let result = match path.metadata() {
                            Ok(m) if m.len() != entry.size => Err(format!(
                                "size is {} bytes, expected {}",
                                m.len(),
                                entry.size
                            )),
                            Ok(_) => match crate::oci::file_digest(&path, &entry.sha512) {
                                Ok(sum) if sum == entry.sha512 => Ok(()),
                                Ok(sum) => {
                                    Err(format!("digest is {sum}, expected {}", entry.sha512))
                                }
                                Err(e) => Err(format!("cannot read: {e}")),
                            },
                            Err(e) => Err(format!("cannot read: {e}")),
                        };
                        progress.verify_file_done(entry.identifier.as_str(), entry.size);
                        if tx.send((entry, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (entry, result) in rx {
                report.verified += 1;
                if let Err(message) = result {
                    tracing::warn!("{} is corrupt: {message}", entry.identifier);
                    corrupt.push((entry, message));
                }
            }
        });
        for (entry, message) in corrupt {
            if !self.config().cache_dir.join(&entry.filename).exists() {
                let now = self.config().clock.now();
                if self.store().record_missing(&entry.identifier, now)? {
                    tracing::warn!("{} went missing while it was verified", entry.identifier);
                }
                let id = entry.identifier.to_string();
                if !report.missing.contains(&id) {
                    report.missing.push(id);
                }
                continue;
            }
            let record = records
                .iter()
                .find(|r| r.image.identifier == entry.identifier);
            tracing::warn!("expiring corrupt {}: {message}", entry.identifier);
            report
                .expired
                .push(self.retire(dispatcher, entry, record, ExpiryReason::Corrupt)?);
        }
        self.write_index()?;
        Ok(())
    }
}
