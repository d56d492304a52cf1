//! The publication life cycle, one run at a time (`vmc publish sync`):
//!
//! 1. **Repair.** A claim left `uploading` by a run of this node that ended (the caller holds
//!    the instance lock), or by another node that is gone — not registered, silent for longer
//!    than [`PublishConfig::lease_time`], or registered again since the claim (a newer run) —
//!    or older than the fallback [`PublishConfig::stale_claim`], is looked up in the image
//!    service by its token: a complete image whose checksum is the file's is adopted;
//!    anything else of that claim is deleted and the claim marked `failed`. The claim of a
//!    node alive in the run that made it is left alone.
//! 2. **Publish.** Every verified cached image that is selected, endorsed and of a current
//!    list is claimed (once per target, whatever the number of nodes sharing the database),
//!    created with its properties, streamed from the cache file while hashed, and checked:
//!    the service's `os_hash_value` must be the file's sha512, else the image is deleted and
//!    the claim `failed`. An upload that fails on the connection or with a 5xx is tried once
//!    more while the image still waits for data; a `failed` claim is tried again on the next
//!    run. An image
//!    deactivated earlier and wanted again is reactivated.
//! 3. **Deactivate.** A published image no longer wanted is hidden from listings and
//!    deactivated: `superseded` when another version of the image id is published (only once
//!    that version is active, so users always have one), else `expired`.
//! 4. **Delete.** A deactivated image whose grace time has passed is deleted, unless it is in
//!    use: tagged `vmc-in-use`, `protected`, or refused by the service (Glance's 409 when a
//!    store such as Ceph still holds clones of it).
//!
//! Failures of one image are reported and the run goes on; database failures stop it. With
//! `dry_run` nothing is written anywhere and the report lists what would be done.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use vmc_cache::store::{
    CacheEntry, ImageFilter, ImageRecord, NewPublication, NodeRecord, Publication,
    PublicationState, Store,
};
use vmc_cache::update::chain;

use crate::PublishError;
use crate::config::PublishConfig;
use crate::convert::{self, Prepared, Source};
use crate::meta::{self, IN_USE_TAG, PROP_PUBLICATION};
use crate::service::{Deletion, ImageService, RemoteImage};

/// What the run did (or, in a dry run, would do) to one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// A new image was created, uploaded and checked.
    Publish,
    /// An interrupted run's complete image was adopted.
    Adopt,
    /// An interrupted run's incomplete images were deleted (the image is published again).
    Repair,
    /// A deactivated image wanted again was reactivated.
    Reactivate,
    /// A replaced image was hidden and deactivated.
    Supersede,
    /// An image no longer wanted was hidden and deactivated.
    Expire,
    /// A deactivated image was deleted after its grace time.
    Delete,
    /// A deactivated image past its grace time was kept because it is in use.
    KeepInUse,
    /// Nothing was done (see the detail).
    Skip,
}

impl ActionKind {
    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Publish => "publish",
            ActionKind::Adopt => "adopt",
            ActionKind::Repair => "repair",
            ActionKind::Reactivate => "reactivate",
            ActionKind::Supersede => "supersede",
            ActionKind::Expire => "expire",
            ActionKind::Delete => "delete",
            ActionKind::KeepInUse => "keep-in-use",
            ActionKind::Skip => "skip",
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// A dry run: it would be done.
    Planned,
    /// It failed (the message, with its causes).
    Failed(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What.
    pub kind: ActionKind,
    /// The image id.
    pub identifier: String,
    /// The image's sha512.
    pub sha512: String,
    /// The image's version.
    pub version: String,
    /// The remote image id, when there is one.
    pub remote_id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// More about it (why skipped, kept, …).
    pub detail: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// The actions, in the order taken.
    pub actions: Vec<Action>,
}

impl PublishReport {
    /// Whether any action failed.
    pub fn has_failures(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a.outcome, Outcome::Failed(_)))
    }

    /// The actions of a kind that ended in `Done`.
    pub fn done(&self, kind: ActionKind) -> usize {
        self.actions
            .iter()
            .filter(|a| a.kind == kind && a.outcome == Outcome::Done)
            .count()
    }
}

/// A cached image the site wants published.
struct Wanted {
    record: ImageRecord,
    entry: CacheEntry,
}

/// One publication run's context.
pub struct Publisher<'a> {
    store: &'a Store,
    cache_dir: &'a Path,
    service: &'a dyn ImageService,
    config: &'a PublishConfig,
}

impl std::fmt::Debug for Publisher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("cache_dir", &self.cache_dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<'a> Publisher<'a> {
    /// A publisher of the files of `cache_dir` (as `store` records them) into `service`.
    pub fn new(
        store: &'a Store,
        cache_dir: &'a Path,
        service: &'a dyn ImageService,
        config: &'a PublishConfig,
    ) -> Publisher<'a> {
        Publisher {
            store,
            cache_dir,
            service,
            config,
        }
    }

    /// The publications of this target, oldest first.
    pub fn publications(&self) -> Result<Vec<Publication>, PublishError> {
        Ok(self.store.publications(Some(&self.config.target))?)
    }

    /// One run (see the module doc), at time `now`.
    pub fn sync(&self, now: DateTime<Utc>, dry_run: bool) -> Result<PublishReport, PublishError> {
        let mut report = PublishReport::default();
        let wanted = self.wanted(now)?;
        // 1. Repair.
        let mut nodes = None;
        for p in self.publications()? {
            if p.state != PublicationState::Uploading {
                continue;
            }
            let why = if p.claimed_by == self.config.node {
                None
            } else {
                if nodes.is_none() {
                    nodes = Some(self.nodes()?);
                }
                match nodes.as_ref().and_then(|n| self.abandoned(&p, n, now)) {
                    Some(why) => Some(why),
                    None => {
                        report.actions.push(action(
                            ActionKind::Skip,
                            &p,
                            Outcome::Done,
                            Some(format!(
                                "being uploaded by {} since {}",
                                p.claimed_by,
                                p.changed_at.to_rfc3339()
                            )),
                        ));
                        continue;
                    }
                }
            };
            if dry_run {
                report
                    .actions
                    .push(action(ActionKind::Repair, &p, Outcome::Planned, why));
                continue;
            }
            if let Some(why) = &why {
                tracing::info!(
                    identifier = p.identifier.as_str(),
                    "taking the claim over: {why}"
                );
            }
            report.actions.push(self.repair(p, why, now));
        }
        // 2. Publish (or reactivate) what is wanted.
        let live = self.live()?;
        let mut active_now: BTreeSet<String> = BTreeSet::new();
        for (key, want) in &wanted {
            let existing = live.get(key).cloned();
            let done = match existing {
                Some(p) if p.state == PublicationState::Active => {
                    active_now.insert(key.0.clone());
                    continue;
                }
                Some(p) if p.state == PublicationState::Uploading => continue,
                Some(p) if p.state == PublicationState::Deactivated => {
                    if dry_run {
                        report.actions.push(action(
                            ActionKind::Reactivate,
                            &p,
                            Outcome::Planned,
                            None,
                        ));
                        continue;
                    }
                    self.reactivate(p, now)
                }
                existing => {
                    if dry_run {
                        report.actions.push(Action {
                            kind: ActionKind::Publish,
                            identifier: key.0.clone(),
                            sha512: key.1.clone(),
                            version: want.record.image.version.clone(),
                            remote_id: None,
                            outcome: Outcome::Planned,
                            detail: Some(self.file(&want.entry).display().to_string()),
                        });
                        continue;
                    }
                    self.publish(existing, want, now)?
                }
            };
            if done.outcome == Outcome::Done {
                active_now.insert(key.0.clone());
            }
            report.actions.push(done);
        }
        // 3. Deactivate what is no longer wanted.
        let wanted_ids: BTreeMap<&str, &str> = wanted
            .keys()
            .map(|(i, s)| (i.as_str(), s.as_str()))
            .collect();
        for p in self.live()?.into_values() {
            let key = (p.identifier.as_str().to_owned(), p.sha512.clone());
            if p.state != PublicationState::Active || wanted.contains_key(&key) {
                continue;
            }
            let superseded = wanted_ids.contains_key(p.identifier.as_str());
            let kind = if superseded {
                ActionKind::Supersede
            } else {
                ActionKind::Expire
            };
            if superseded && !active_now.contains(p.identifier.as_str()) && !dry_run {
                report.actions.push(action(
                    ActionKind::Skip,
                    &p,
                    Outcome::Done,
                    Some("kept active until the image's new version is published".into()),
                ));
                continue;
            }
            if dry_run {
                report
                    .actions
                    .push(action(kind, &p, Outcome::Planned, None));
                continue;
            }
            report.actions.push(self.deactivate(p, kind, now));
        }
        // 4. Delete after the grace time; forget failed claims no longer wanted.
        for p in self.live()?.into_values() {
            let key = (p.identifier.as_str().to_owned(), p.sha512.clone());
            match p.state {
                PublicationState::Deactivated if p.changed_at + self.config.grace <= now => {
                    if dry_run {
                        report.actions.push(action(
                            ActionKind::Delete,
                            &p,
                            Outcome::Planned,
                            Some("unless in use".into()),
                        ));
                        continue;
                    }
                    report.actions.push(self.delete(p, now));
                }
                PublicationState::Failed if !wanted.contains_key(&key) && !dry_run => {
                    self.forget_failed(p, now)?;
                }
                _ => {}
            }
        }
        // Converted files of images no longer wanted go.
        if !dry_run {
            let keep: BTreeSet<String> = wanted
                .keys()
                .map(|(identifier, sha512)| convert::stem(identifier, sha512))
                .collect();
            convert::prune(&self.config.converter.dir, &keep)?;
        }
        Ok(report)
    }

    /// The registered nodes, by name.
    fn nodes(&self) -> Result<BTreeMap<String, NodeRecord>, PublishError> {
        Ok(self
            .store
            .nodes()?
            .into_iter()
            .map(|n| (n.info.name.clone(), n))
            .collect())
    }

    /// Why another node's unfinished claim `p` is presumed abandoned at `now`, or `None` when
    /// its node is alive in the run that made it (and the claim is younger than
    /// [`PublishConfig::stale_claim`]).
    fn abandoned(
        &self,
        p: &Publication,
        nodes: &BTreeMap<String, NodeRecord>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let by = &p.claimed_by;
        let since = p.changed_at.to_rfc3339();
        let Some(node) = nodes.get(by) else {
            return Some(format!(
                "node {by} that claimed it at {since} is not registered"
            ));
        };
        if !vmc_cache::node::is_alive(node.last_seen, now, self.config.lease_time) {
            return Some(format!(
                "node {by} that claimed it at {since} was last seen at {}",
                node.last_seen.to_rfc3339()
            ));
        }
        // A run registers before it claims, so a registration after the claim is a newer run.
        if node.started_at > p.changed_at {
            return Some(format!(
                "node {by} claimed it at {since} in a run that ended: a run started at {} \
                 (pid {} on {})",
                node.started_at.to_rfc3339(),
                node.info.pid,
                node.info.host
            ));
        }
        if p.changed_at + self.config.stale_claim <= now {
            return Some(format!(
                "node {by} is alive but its claim of {since} is older than {} minutes",
                self.config.stale_claim.num_minutes()
            ));
        }
        None
    }

    /// The verified cached images that should be published, by (image id, sha512).
    fn wanted(
        &self,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<(String, String), Wanted>, PublishError> {
        let records = self.store.images(&ImageFilter {
            selected_only: true,
            ..ImageFilter::default()
        })?;
        let mut wanted = BTreeMap::new();
        for record in records {
            if !(record.subscription_enabled && record.endorsed && record.list_expires > now) {
                continue;
            }
            let Some(entry) = record.cached.clone() else {
                continue;
            };
            if !entry.sha512.eq_ignore_ascii_case(&record.image.sha512) {
                continue;
            }
            let key = (
                record.image.identifier.as_str().to_owned(),
                record.image.sha512.to_ascii_lowercase(),
            );
            wanted.entry(key).or_insert(Wanted { record, entry });
        }
        Ok(wanted)
    }

    /// The publications that are not deleted, by (image id, sha512).
    fn live(&self) -> Result<BTreeMap<(String, String), Publication>, PublishError> {
        Ok(self
            .publications()?
            .into_iter()
            .filter(|p| p.state != PublicationState::Deleted)
            .map(|p| ((p.identifier.as_str().to_owned(), p.sha512.clone()), p))
            .collect())
    }

    fn file(&self, entry: &CacheEntry) -> PathBuf {
        self.cache_dir.join(&entry.filename)
    }

    /// Claims, creates, uploads and checks one image.
    fn publish(
        &self,
        existing: Option<Publication>,
        want: &Wanted,
        now: DateTime<Utc>,
    ) -> Result<Action, PublishError> {
        let record = &want.record;
        let image = &record.image;
        let identifier = image.identifier.as_str();
        let failed = |e: &PublishError| Action {
            kind: ActionKind::Publish,
            identifier: identifier.to_owned(),
            sha512: image.sha512.clone(),
            version: image.version.clone(),
            remote_id: None,
            outcome: Outcome::Failed(chain(e)),
            detail: None,
        };
        let prepared = match meta::declared_format(record).and_then(|declared| {
            self.config.converter.prepare(Source {
                identifier,
                path: &self.file(&want.entry),
                sha512: &want.entry.sha512,
                size: want.entry.size,
                declared: &declared,
            })
        }) {
            Ok(prepared) => prepared,
            Err(e) => return Ok(failed(&e)),
        };
        let disk_format = prepared.disk_format.clone();
        let token = uuid::Uuid::new_v4().to_string();
        let list_url = vmc_cache::store::redact_url(&record.subscription_url);
        let claimed = match existing {
            Some(mut p) => {
                // What the failed attempt left in the service goes first.
                if let Some(id) = p.remote_id.clone() {
                    match self.service.delete(&id) {
                        Ok(Deletion::Deleted) => {}
                        Ok(Deletion::InUse) => {
                            return Ok(failed(&PublishError::Unpublishable {
                                identifier: identifier.to_owned(),
                                reason: format!("the failed upload {id} cannot be deleted"),
                            }));
                        }
                        Err(e) => return Ok(failed(&e)),
                    }
                }
                let old = std::mem::replace(&mut p.token, token.clone());
                p.state = PublicationState::Uploading;
                p.claimed_by = self.config.node.clone();
                p.changed_at = now;
                p.remote_id = None;
                p.version = image.version.clone();
                p.list_url = list_url;
                p.disk_format = disk_format.clone();
                p.file_sha512 = prepared.sha512.clone();
                self.store.save_publication(&old, &p)?.then_some(p)
            }
            None => self.store.claim_publication(&NewPublication {
                target: &self.config.target,
                identifier: &image.identifier,
                sha512: &image.sha512,
                version: &image.version,
                list_url: &list_url,
                disk_format: &disk_format,
                file_sha512: &prepared.sha512,
                token: &token,
                claimed_by: &self.config.node,
                claimed_at: now,
            })?,
        };
        let Some(mut p) = claimed else {
            return Ok(Action {
                kind: ActionKind::Skip,
                identifier: identifier.to_owned(),
                sha512: image.sha512.clone(),
                version: image.version.clone(),
                remote_id: None,
                outcome: Outcome::Done,
                detail: Some("claimed by another run".into()),
            });
        };
        match self.upload(&mut p, want, &prepared) {
            Ok(remote) => {
                p.state = PublicationState::Active;
                p.remote_id = Some(remote.id);
                p.published_at = Some(now);
                p.changed_at = now;
                p.last_error = None;
                let token = p.token.clone();
                if self.store.save_publication(&token, &p)? {
                    return Ok(action(ActionKind::Publish, &p, Outcome::Done, None));
                }
                // Another node presumed this run dead and took the claim over: the image is
                // left only if that node adopted it.
                tracing::warn!(identifier, "claim taken over during the upload");
                let adopted = self
                    .publications()?
                    .iter()
                    .any(|q| q.id == p.id && q.remote_id.as_deref() == p.remote_id.as_deref());
                let mut detail = "claim taken over by another run during the upload".to_owned();
                if !adopted && let Some(id) = p.remote_id.clone() {
                    match self.service.delete(&id) {
                        Ok(_) => detail.push_str(": its image deleted"),
                        Err(e) => detail.push_str(&format!(": cannot delete {id}: {}", chain(&e))),
                    }
                }
                Ok(action(ActionKind::Skip, &p, Outcome::Done, Some(detail)))
            }
            Err(error) => {
                let message = chain(&error);
                tracing::warn!(identifier, error = %message, "publication failed");
                if let Some(id) = p.remote_id.clone() {
                    // Glance may still be reading the broken upload: let it finish first.
                    let _ = self.waits_for_data(&id);
                    match self.service.delete(&id) {
                        Ok(Deletion::Deleted) => p.remote_id = None,
                        Ok(Deletion::InUse) => {}
                        Err(e) => {
                            tracing::warn!(identifier, error = %chain(&e), "cannot delete the failed upload")
                        }
                    }
                }
                p.state = PublicationState::Failed;
                p.changed_at = now;
                p.last_error = Some(message.clone());
                let token = p.token.clone();
                self.store.save_publication(&token, &p)?;
                Ok(action(
                    ActionKind::Publish,
                    &p,
                    Outcome::Failed(message),
                    None,
                ))
            }
        }
    }

    fn upload(
        &self,
        p: &mut Publication,
        want: &Wanted,
        file: &Prepared,
    ) -> Result<RemoteImage, PublishError> {
        let identifier = p.identifier.as_str().to_owned();
        let new = meta::remote_image(&want.record, self.config, &p.token, file);
        let created = self.service.create(&new)?;
        p.remote_id = Some(created.id.clone());
        let token = p.token.clone();
        if !self.store.save_publication(&token, p)? {
            return Err(PublishError::Unpublishable {
                identifier,
                reason: "another run took the claim over".into(),
            });
        }
        let sent = match self.service.upload(&created.id, &file.path, file.size) {
            // A dropped connection or a 5xx: once more, if the image is still waiting for data
            // (Glance puts it back to `queued` when an upload fails).
            Err(error @ (PublishError::Http { .. } | PublishError::Status { .. }))
                if transient(&error) && self.waits_for_data(&created.id)? =>
            {
                tracing::info!(identifier, error = %chain(&error), "upload failed, trying once more");
                self.service.upload(&created.id, &file.path, file.size)?
            }
            other => other?,
        };
        if sent != p.file_sha512 {
            return Err(PublishError::CachedFileChanged {
                identifier,
                path: file.path.clone(),
                expected: p.file_sha512.clone(),
                found: sent,
            });
        }
        let remote = self
            .service
            .get(&created.id)?
            .ok_or_else(|| PublishError::Unpublishable {
                identifier: identifier.clone(),
                reason: format!("image {} vanished after its upload", created.id),
            })?;
        check_checksum(&identifier, &remote, &p.file_sha512)?;
        for member in meta::members(&want.record, self.config) {
            self.service.add_member(&remote.id, member)?;
        }
        Ok(remote)
    }

    /// Whether image `id` is (back to) `queued` after a failed upload. The service may still
    /// be reading the broken upload (`saving`) for a moment: it is asked again for up to 5 s.
    fn waits_for_data(&self, id: &str) -> Result<bool, PublishError> {
        for _ in 0..25 {
            match self.service.get(id)?.map(|r| r.status) {
                Some(status) if status == "saving" => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Some(status) => return Ok(status == "queued"),
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Adopts or discards what an interrupted run left of claim `p` (`why`: the reason another
    /// node's claim is taken over, which the action's detail starts with).
    fn repair(&self, mut p: Publication, why: Option<String>, now: DateTime<Utc>) -> Action {
        let result = (|| -> Result<(ActionKind, Option<String>), PublishError> {
            let mut found = self.service.find(PROP_PUBLICATION, &p.token)?;
            if let Some(id) = &p.remote_id
                && !found.iter().any(|r| &r.id == id)
                && let Some(remote) = self.service.get(id)?
            {
                found.push(remote);
            }
            let good = found
                .iter()
                .position(|r| check_checksum(p.identifier.as_str(), r, &p.file_sha512).is_ok());
            let mut kept = None;
            for (i, remote) in found.iter().enumerate() {
                if Some(i) == good {
                    kept = Some(remote.id.clone());
                } else {
                    self.service.delete(&remote.id)?;
                }
            }
            // The repaired claim gets a new token, so the run that made it (should it be
            // only stalled) can no longer write it; the images keep the old one.
            let old = std::mem::replace(&mut p.token, uuid::Uuid::new_v4().to_string());
            p.claimed_by = self.config.node.clone();
            p.changed_at = now;
            let kind = match kept {
                Some(id) => {
                    p.state = PublicationState::Active;
                    p.remote_id = Some(id);
                    p.published_at = Some(now);
                    p.last_error = None;
                    ActionKind::Adopt
                }
                None => {
                    p.state = PublicationState::Failed;
                    p.remote_id = None;
                    p.last_error = Some(format!(
                        "interrupted upload repaired: {} incomplete image(s) deleted",
                        found.len()
                    ));
                    ActionKind::Repair
                }
            };
            if !self.store.save_publication(&old, &p)? {
                return Ok((ActionKind::Skip, Some("repaired by another run".to_owned())));
            }
            Ok((kind, p.last_error.clone()))
        })();
        let with_why = |detail: Option<String>| match (&why, detail) {
            (Some(why), Some(detail)) => Some(format!("{why}; {detail}")),
            (why, detail) => detail.or_else(|| why.clone()),
        };
        match result {
            Ok((kind, detail)) => action(kind, &p, Outcome::Done, with_why(detail)),
            Err(e) => action(
                ActionKind::Repair,
                &p,
                Outcome::Failed(chain(&e)),
                with_why(None),
            ),
        }
    }

    fn reactivate(&self, mut p: Publication, now: DateTime<Utc>) -> Action {
        let result = (|| -> Result<(), PublishError> {
            let id = p.remote_id.clone().unwrap_or_default();
            self.service.reactivate(&id)?;
            self.service.set_hidden(&id, false)?;
            let token = p.token.clone();
            p.state = PublicationState::Active;
            p.reason = None;
            p.changed_at = now;
            self.store.save_publication(&token, &p)?;
            Ok(())
        })();
        match result {
            Ok(()) => action(ActionKind::Reactivate, &p, Outcome::Done, None),
            Err(e) => action(ActionKind::Reactivate, &p, Outcome::Failed(chain(&e)), None),
        }
    }

    fn deactivate(&self, mut p: Publication, kind: ActionKind, now: DateTime<Utc>) -> Action {
        let reason = if kind == ActionKind::Supersede {
            "superseded"
        } else {
            "expired"
        };
        let result = (|| -> Result<Option<String>, PublishError> {
            let id = p.remote_id.clone().unwrap_or_default();
            let token = p.token.clone();
            p.changed_at = now;
            p.reason = Some(reason.to_owned());
            let detail = match self.service.get(&id)? {
                None => {
                    p.state = PublicationState::Deleted;
                    Some("already gone from the image service".to_owned())
                }
                Some(remote) => {
                    if !remote.hidden {
                        self.service.set_hidden(&id, true)?;
                    }
                    if remote.status == "active" {
                        self.service.deactivate(&id)?;
                    }
                    p.state = PublicationState::Deactivated;
                    None
                }
            };
            self.store.save_publication(&token, &p)?;
            Ok(detail)
        })();
        match result {
            Ok(detail) => action(kind, &p, Outcome::Done, detail),
            Err(e) => action(kind, &p, Outcome::Failed(chain(&e)), None),
        }
    }

    fn delete(&self, mut p: Publication, now: DateTime<Utc>) -> Action {
        let result = (|| -> Result<Option<String>, PublishError> {
            let id = p.remote_id.clone().unwrap_or_default();
            if let Some(remote) = self.service.get(&id)? {
                if remote.tags.iter().any(|t| t == IN_USE_TAG) {
                    return Ok(Some(format!("tagged {IN_USE_TAG}")));
                }
                if remote.protected {
                    return Ok(Some("protected".to_owned()));
                }
                if self.service.delete(&id)? == Deletion::InUse {
                    return Ok(Some("the image service refuses: in use".to_owned()));
                }
            }
            let token = p.token.clone();
            p.state = PublicationState::Deleted;
            p.changed_at = now;
            self.store.save_publication(&token, &p)?;
            Ok(None)
        })();
        match result {
            Ok(None) => action(ActionKind::Delete, &p, Outcome::Done, None),
            Ok(Some(why)) => action(ActionKind::KeepInUse, &p, Outcome::Done, Some(why)),
            Err(e) => action(ActionKind::Delete, &p, Outcome::Failed(chain(&e)), None),
        }
    }

    /// A failed claim of an image no longer wanted: its remote leftovers are deleted and it
    /// becomes history.
    fn forget_failed(&self, mut p: Publication, now: DateTime<Utc>) -> Result<(), PublishError> {
        if let Some(id) = p.remote_id.clone()
            && self.service.delete(&id).is_err()
        {
            return Ok(());
        }
        let token = p.token.clone();
        p.state = PublicationState::Deleted;
        p.changed_at = now;
        self.store.save_publication(&token, &p)?;
        Ok(())
    }
}

/// Whether a failure may pass if tried again: the connection failed, or a 5xx.
fn transient(error: &PublishError) -> bool {
    match error {
        PublishError::Http { .. } => true,
        PublishError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Fails unless `remote` is active with a sha512 `os_hash_value` equal to `sha512`.
fn check_checksum(
    identifier: &str,
    remote: &RemoteImage,
    sha512: &str,
) -> Result<(), PublishError> {
    let algo = remote.hash_algo.clone().unwrap_or_default();
    let value = remote.hash_value.clone().unwrap_or_default();
    if remote.status == "active" && algo == "sha512" && value.eq_ignore_ascii_case(sha512) {
        Ok(())
    } else {
        Err(PublishError::ChecksumMismatch {
            identifier: identifier.to_owned(),
            expected: sha512.to_owned(),
            found: if remote.status == "active" {
                value
            } else {
                format!("{value} (status {})", remote.status)
            },
            algorithm: algo,
        })
    }
}

fn action(kind: ActionKind, p: &Publication, outcome: Outcome, detail: Option<String>) -> Action {
    Action {
        kind,
        identifier: p.identifier.as_str().to_owned(),
        sha512: p.sha512.clone(),
        version: p.version.clone(),
        remote_id: p.remote_id.clone(),
        outcome,
        detail,
    }
}
