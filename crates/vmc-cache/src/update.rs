//! The update pipeline of `spec/imagelist.md`: checks 1–11, in order, each failure with its
//! code. A rejected list changes nothing but the subscription's last error: the previous good
//! version stays current.

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha512};
use vmc_fetch::Credentials;
use vmc_model::{
    CertIdentity, ErrorCode, EventType, ImageList, LastError, ListVersionInfo, NewImagePolicy,
    ParseLimits, ParsedList, Subscription, SubscriptionAuth, parse_image_list,
};
use vmc_store::{Lease, ListImport, NewSubscription};
use vmc_trust::{Signer, VerifyOptions};

use crate::Vmc;
use crate::error::CacheError;
use crate::events::{Dispatcher, Event};
use crate::report::{CheckReport, ListReport, RejectedImageReport, UpdateStatus};

/// Where `subscribe check` reads a list from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http`, `https` or `file` URL.
    Url(String),
    /// A local file.
    File(std::path::PathBuf),
}

impl Source {
    /// A URL when `text` has a scheme (`…://`), else a file path.
    pub fn parse(text: &str) -> Source {
        if text.contains("://") {
            Source::Url(text.to_owned())
        } else {
            Source::File(text.into())
        }
    }
}

/// What `subscribe add` asks for.
#[derive(Debug, Clone)]
pub struct NewSubscriptionRequest {
    /// The list's URL.
    pub url: String,
    /// Endorsers (by id or subject DN) to link; the signer must be one of their identities.
    pub endorsers: Vec<String>,
    /// Create the signer's endorser if it is unknown.
    pub auto_endorse: bool,
    /// New-image policy.
    pub new_images: NewImagePolicy,
    /// Credentials for the URL.
    pub auth: Option<SubscriptionAuth>,
}

/// A list that passed checks 1–6 and 9.
pub(crate) struct Candidate {
    pub(crate) raw: Vec<u8>,
    pub(crate) sha512: String,
    pub(crate) signer: Signer,
    pub(crate) parsed: ParsedList,
}

pub(crate) type Rejection = LastError;

pub(crate) fn reject(code: ErrorCode, message: impl Into<String>) -> Rejection {
    LastError {
        code,
        message: message.into(),
    }
}

/// A database failure during an update: reported on the list, which stays as it was.
fn store_failure(e: vmc_store::StoreError) -> Rejection {
    reject(ErrorCode::FetchFailed, format!("database: {}", chain(&e)))
}

/// `error` with its chain of causes, `a: b: c` (a cause the text already holds is not
/// repeated; OpenSSL's error stacks go to the debug log).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        // OpenSSL's error stacks (`error:10800065:PKCS7 routines:…:file.c:1093:`) say nothing
        // an administrator can act on; they stay in the debug log.
        if s_text.starts_with("error:") {
            tracing::debug!("{text}: {s_text}");
        } else if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

pub(crate) fn to_credentials(auth: &SubscriptionAuth) -> Credentials {
    match auth {
        SubscriptionAuth::Basic { username, password } => Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        SubscriptionAuth::Bearer { token } => Credentials::Bearer(token.clone()),
    }
}

pub(crate) fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

pub(crate) fn rejected_images(parsed: &ParsedList) -> Vec<RejectedImageReport> {
    parsed
        .rejected
        .iter()
        .map(|r| RejectedImageReport {
            identifier: match r.error.location() {
                vmc_model::Location::Image { identifier, .. } => identifier.clone(),
                vmc_model::Location::List => None,
            },
            message: chain(&r.error),
        })
        .collect()
}

/// The report of a list this node leaves to another node of the site.
fn skipped(sub: &Subscription, reason: String) -> ListReport {
    ListReport {
        status: UpdateStatus::Skipped,
        version: sub.current.as_ref().map(|c| c.version.clone()),
        skipped: Some(reason),
        ..ListReport::failed(sub.url.clone(), sub.identifier.clone())
    }
}

/// `SubscriptionImageNew` events built and journalled together.
const EVENT_BATCH: usize = 500;

impl Vmc {
    pub(crate) fn fetch_list(
        &self,
        url: &str,
        auth: Option<&SubscriptionAuth>,
    ) -> Result<Vec<u8>, Rejection> {
        let creds = auth.map(to_credentials);
        self.client()
            .and_then(|client| {
                client.fetch_bytes(
                    &self.config().rewrite_url(url),
                    creds.as_ref(),
                    self.config().max_list_bytes,
                )
            })
            .map_err(|e| reject(e.code(), chain(&e)))
    }

    /// Checks 2–4 (signature, chain, revocation).
    fn verify_signature(
        &self,
        trust: &vmc_trust::TrustStore,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<vmc_trust::Verified, Rejection> {
        let options = VerifyOptions {
            crl: self.config().crl,
            now,
        };
        let verified = vmc_trust::verify(trust, raw, &options).map_err(|e| {
            let code = e.code().unwrap_or(ErrorCode::SignatureInvalid);
            reject(code, chain(&e))
        })?;
        if verified.weak_digest {
            tracing::warn!(
                "the list signed by {} uses a weak digest (sha1 or md5)",
                verified.signer.subject
            );
        }
        Ok(verified)
    }

    /// Checks 2–6 (signature, chain, revocation, parse, endorser claim).
    pub(crate) fn verify_and_parse(
        &self,
        trust: &vmc_trust::TrustStore,
        raw: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Candidate, Box<(Rejection, Option<Signer>)>> {
        let sha512 = sha512_hex(&raw);
        self.verify_and_parse_digested(trust, raw, sha512, now)
    }

    /// [`Self::verify_and_parse`] of bytes whose sha512 (lowercase hex) is known.
    fn verify_and_parse_digested(
        &self,
        trust: &vmc_trust::TrustStore,
        raw: Vec<u8>,
        sha512: String,
        now: DateTime<Utc>,
    ) -> Result<Candidate, Box<(Rejection, Option<Signer>)>> {
        let verified = self
            .verify_signature(trust, &raw, now)
            .map_err(|e| Box::new((e, None)))?;
        let signer = verified.signer;
        let limits = ParseLimits {
            max_bytes: usize::try_from(self.config().max_list_bytes).unwrap_or(usize::MAX),
            ..ParseLimits::default()
        };
        let parsed = match parse_image_list(&verified.payload, &limits) {
            Ok(p) => p,
            Err(e) => return Err(Box::new((reject(e.code(), chain(&e)), Some(signer)))),
        };
        // The database keeps sizes as signed 64-bit integers: a larger hv:size (no real image
        // is 8 EiB) is a malformed list, not a database failure.
        if let Some(image) = parsed
            .list
            .images
            .iter()
            .find(|i| i64::try_from(i.size).is_err())
        {
            return Err(Box::new((
                reject(
                    ErrorCode::ListMalformed,
                    format!(
                        "image {:?}: hv:size {} is over the largest supported size ({} bytes)",
                        image.identifier.as_str(),
                        image.size,
                        i64::MAX
                    ),
                ),
                Some(signer),
            )));
        }
        // Check 6: the list must name its signer as (one of) its endorser(s).
        let claims = &parsed.list.endorsers;
        if !claims
            .iter()
            .any(|c| c.dn == signer.subject && c.ca == signer.issuer)
        {
            let claimed = claims
                .iter()
                .map(|c| format!("{} (issuer {})", c.dn, c.ca))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Box::new((
                reject(
                    ErrorCode::EndorserMismatch,
                    format!(
                        "the list's hv:endorser names {claimed}, but it is signed by {} (issuer {})",
                        signer.subject, signer.issuer
                    ),
                ),
                Some(signer),
            )));
        }
        Ok(Candidate {
            raw,
            sha512,
            signer,
            parsed,
        })
    }

    /// Checks 1–6 on a fetch result: the rejection, with the signer once the signature
    /// verified.
    fn candidate(
        &self,
        trust: &vmc_trust::TrustStore,
        raw: Result<Vec<u8>, Rejection>,
        now: DateTime<Utc>,
    ) -> Result<Candidate, Box<(Rejection, Option<Signer>)>> {
        let raw = raw.map_err(|e| Box::new((e, None)))?;
        self.verify_and_parse(trust, raw, now)
    }

    /// Check 9: created not in the future (with skew), expires in the future.
    pub(crate) fn check_time(&self, list: &ImageList, now: DateTime<Utc>) -> Result<(), Rejection> {
        self.check_dates(list.created, list.expires, now)
    }

    /// Check 9 on a list's `dc:date:created` and `dc:date:expires`.
    fn check_dates(
        &self,
        created: DateTime<Utc>,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let skew = TimeDelta::from_std(self.config().created_skew).unwrap_or(TimeDelta::zero());
        if created > now + skew {
            return Err(reject(
                ErrorCode::ListNotYetValid,
                format!(
                    "dc:date:created {} is in the future (now {})",
                    created.to_rfc3339(),
                    now.to_rfc3339()
                ),
            ));
        }
        if expires <= now {
            return Err(reject(
                ErrorCode::ListExpired,
                format!("dc:date:expires {} has passed", expires.to_rfc3339()),
            ));
        }
        Ok(())
    }

    /// Check 7 for an existing subscription: the signer is an identity of an endorser linked
    /// to it.
    pub(crate) fn check_linked(
        &self,
        sub_id: i64,
        identity: &CertIdentity,
    ) -> Result<(), Rejection> {
        let linked = self
            .store()
            .linked_endorser_for(sub_id, identity)
            .map_err(store_failure)?;
        if linked.is_none() {
            return Err(reject(
                ErrorCode::SignerNotEndorser,
                format!(
                    "the signer {} (issuer {}) is not an identity of an endorser linked to this subscription",
                    identity.subject, identity.issuer
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn identity(signer: &Signer) -> CertIdentity {
        CertIdentity {
            subject: signer.subject.clone(),
            issuer: signer.issuer.clone(),
        }
    }

    /// Subscribes to a list: fetches it, runs every check, and stores it only if it passes.
    pub fn subscribe(
        &self,
        request: &NewSubscriptionRequest,
        dispatcher: &Dispatcher,
    ) -> Result<ListReport, CacheError> {
        let trust = self.trust()?;
        if self.store().find_subscription(&request.url)?.is_some() {
            return Err(CacheError::Invalid(format!(
                "already subscribed to {}",
                vmc_fetch::redact_url(&request.url)
            )));
        }
        let mut endorsers = Vec::new();
        for key in &request.endorsers {
            endorsers.push(
                self.store()
                    .find_endorser(key)?
                    .ok_or_else(|| CacheError::NoSuchEndorser { key: key.clone() })?,
            );
        }
        let now = self.config().clock.now();
        let mut report = ListReport::failed(request.url.clone(), None);
        let raw = self.fetch_list(&request.url, request.auth.as_ref());
        let candidate = match self.candidate(trust, raw, now) {
            Ok(c) => c,
            Err(rejected) => {
                let (e, signer) = *rejected;
                report.error = Some(e);
                report.signer = signer;
                return Ok(report);
            }
        };
        report.signer = Some(candidate.signer.clone());
        report.identifier = Some(candidate.parsed.list.identifier.to_string());
        report.version = Some(candidate.parsed.list.version.to_string());
        let identity = Self::identity(&candidate.signer);
        // Check 7: who endorses this list.
        let mut link_ids: Vec<String> = endorsers.iter().map(|e| e.id.clone()).collect();
        let mut create_endorser = false;
        if endorsers.is_empty() {
            match self.store().endorser_by_identity(&identity)? {
                Some(e) => link_ids.push(e.id),
                None if request.auto_endorse => create_endorser = true,
                None => {
                    report.error = Some(reject(
                        ErrorCode::SignerNotEndorser,
                        format!(
                            "the signer {} (issuer {}) is not an identity of any endorser; add it with `vmc endorser add` or subscribe with --auto-endorse",
                            identity.subject, identity.issuer
                        ),
                    ));
                    return Ok(report);
                }
            }
        } else if !endorsers.iter().any(|e| e.identities.contains(&identity)) {
            report.error = Some(reject(
                ErrorCode::SignerNotEndorser,
                format!(
                    "the signer {} (issuer {}) is not an identity of the endorsers named ({})",
                    identity.subject,
                    identity.issuer,
                    link_ids.join(", ")
                ),
            ));
            return Ok(report);
        }
        // Check 8 does not apply to a first import; a list already followed under another
        // URL is refused to keep identifiers unique.
        if let Some(existing) = self
            .store()
            .find_subscription(candidate.parsed.list.identifier.as_str())?
        {
            return Err(CacheError::Invalid(format!(
                "list {} is already subscribed at {}",
                candidate.parsed.list.identifier,
                vmc_fetch::redact_url(&existing.url)
            )));
        }
        if let Err(e) = self.check_time(&candidate.parsed.list, now) {
            report.error = Some(e);
            return Ok(report);
        }
        // All checks passed: store.
        if create_endorser {
            let id = uuid::Uuid::new_v4().to_string();
            self.store()
                .add_endorser(&id, std::slice::from_ref(&identity))?;
            link_ids.push(id);
        }
        let sub = self.store().add_subscription(&NewSubscription {
            url: request.url.clone(),
            new_images: request.new_images,
            auth: request.auth.clone(),
            enabled: true,
        })?;
        let imported = (|| -> Result<_, CacheError> {
            for id in &link_ids {
                self.store().link(id, sub.id)?;
            }
            Ok(self.store().import_list(
                sub.id,
                &ListImport {
                    raw: &candidate.raw,
                    sha512: &candidate.sha512,
                    list: &candidate.parsed.list,
                    signer: &identity,
                    imported: now,
                    select_all: request.new_images == NewImagePolicy::Subscribe,
                },
            )?)
        })();
        let outcome = match imported {
            Ok(o) => o,
            Err(e) => {
                let _ = self.store().remove_subscription(sub.id);
                return Err(e);
            }
        };
        report.status = UpdateStatus::Added;
        report.new_images = outcome.new_images;
        report.rejected_images = rejected_images(&candidate.parsed);
        self.announce_new_images(&candidate.parsed.list, &report.new_images, dispatcher);
        Ok(report)
    }

    pub(crate) fn announce_new_images(
        &self,
        list: &ImageList,
        new: &[vmc_model::Identifier],
        dispatcher: &Dispatcher,
    ) {
        let by_id: std::collections::HashMap<&vmc_model::Identifier, &vmc_model::Image> =
            list.images.iter().map(|i| (&i.identifier, i)).collect();
        // In batches: one journal commit per batch, and memory bounded by the batch (the
        // events of 10,000 new images at once took 90 MiB more).
        for ids in new.chunks(EVENT_BATCH) {
            let events: Vec<Event> = ids
                .iter()
                .filter_map(|id| by_id.get(id))
                .map(|image| Event {
                    event_type: EventType::SubscriptionImageNew,
                    image: Some((*image).clone()),
                    list_identifier: Some(list.identifier.to_string()),
                    vo: list.vo().map(str::to_owned),
                    filename: None,
                    reason: None,
                })
                .collect();
            dispatcher.fire_all(self.store(), &events, self.config().clock.now());
        }
    }

    /// Updates one subscription: checks 1–11; on failure records only the last error.
    pub fn update(
        &self,
        sub: &Subscription,
        dispatcher: &Dispatcher,
    ) -> Result<ListReport, CacheError> {
        self.update_with(sub, dispatcher, None)
    }

    /// [`Vmc::update`], under `lease` when given: the lease is renewed (and so checked) before
    /// a new version of a list is imported, and a node that lost it imports nothing.
    fn update_with(
        &self,
        sub: &Subscription,
        dispatcher: &Dispatcher,
        lease: Option<&mut Lease>,
    ) -> Result<ListReport, CacheError> {
        let now = self.config().clock.now();
        let mut report = ListReport::failed(sub.url.clone(), sub.identifier.clone());
        let result = if crate::oci::is_oci(&sub.url) {
            self.update_oci(sub, &mut report, dispatcher)
        } else {
            let trust = self.trust()?;
            self.try_update(trust, sub, now, &mut report, dispatcher, lease)
        };
        match result {
            Ok(()) => {}
            Err(rejection) => {
                tracing::info!(
                    "{}: {}: {}",
                    vmc_fetch::redact_url(&sub.url),
                    rejection.code,
                    rejection.message
                );
                self.store()
                    .record_update_failure(sub.id, &rejection, now)?;
                report.status = UpdateStatus::Failed;
                report.error = Some(rejection);
            }
        }
        Ok(report)
    }

    fn try_update(
        &self,
        trust: &vmc_trust::TrustStore,
        sub: &Subscription,
        now: DateTime<Utc>,
        report: &mut ListReport,
        dispatcher: &Dispatcher,
        lease: Option<&mut Lease>,
    ) -> Result<(), Rejection> {
        let raw = self.fetch_list(&sub.url, sub.auth.as_ref())?;
        let sha512 = sha512_hex(&raw);
        if let Some(current) = &sub.current
            && current.sha512 == sha512
        {
            return self.confirm_unchanged(trust, sub, current, &raw, now, report);
        }
        let candidate = self
            .verify_and_parse_digested(trust, raw, sha512, now)
            .map_err(|rejected| {
                let (e, signer) = *rejected;
                report.signer = signer;
                e
            })?;
        let list = &candidate.parsed.list;
        report.signer = Some(candidate.signer.clone());
        report.version = Some(list.version.to_string());
        let identity = Self::identity(&candidate.signer);
        self.check_linked(sub.id, &identity)?;
        // Check 8.
        if let Some(expected) = &sub.identifier
            && expected != list.identifier.as_str()
        {
            return Err(reject(
                ErrorCode::IdentifierMismatch,
                format!(
                    "the list's dc:identifier is {}, but this subscription follows {expected}",
                    list.identifier
                ),
            ));
        }
        // Check 9.
        self.check_time(list, now)?;
        // Check 10 (the same bytes again were found `unchanged` above).
        if let Some(current) = &sub.current {
            let current_version = vmc_model::Version::new(current.version.clone());
            if list.version.is_older_than(&current_version) {
                return Err(reject(
                    ErrorCode::VersionRollback,
                    format!(
                        "hv:version {} is older than the current {}",
                        list.version, current.version
                    ),
                ));
            }
            if list.created < current.created {
                return Err(reject(
                    ErrorCode::VersionRollback,
                    format!(
                        "dc:date:created {} is older than the current list's {}",
                        list.created.to_rfc3339(),
                        current.created.to_rfc3339()
                    ),
                ));
            }
        }
        // Check 11 happened while parsing. Under a lease, import only while it is still ours
        // (the fetch may have outlasted it, and another node taken the list over).
        if let Some(lease) = lease {
            let ttl = crate::node::lease_delta(self.config().lease_time);
            let held = self
                .store()
                .renew_lease(lease, self.config().clock.now(), ttl)
                .map_err(store_failure)?;
            if !held {
                report.status = UpdateStatus::Skipped;
                report.skipped = Some(format!(
                    "the update lease of node {} lapsed during the fetch and another node took the list over",
                    lease.node
                ));
                return Ok(());
            }
        }
        let outcome = self
            .store()
            .import_list(
                sub.id,
                &ListImport {
                    raw: &candidate.raw,
                    sha512: &candidate.sha512,
                    list,
                    signer: &identity,
                    imported: now,
                    select_all: false,
                },
            )
            .map_err(store_failure)?;
        report.status = if outcome.already_current {
            // Another process sharing the database imported these bytes first.
            UpdateStatus::Unchanged
        } else if sub.current.is_some() {
            UpdateStatus::Updated
        } else {
            UpdateStatus::Added
        };
        report.identifier = Some(list.identifier.to_string());
        report.new_images = outcome.new_images;
        report.rejected_images = rejected_images(&candidate.parsed);
        self.announce_new_images(list, &report.new_images, dispatcher);
        Ok(())
    }

    /// The fetched bytes are those of the current version: `unchanged` once the checks that
    /// can change their verdict on the same bytes pass again — 2–4 (the CA directory, the
    /// CRLs and the certificates' validity move on), 7 (endorsers are linked and unlinked) and
    /// 9 (the clock). 5, 6, 8 and 11 depend on the bytes alone and passed when this version
    /// was imported, so the list is not parsed again.
    fn confirm_unchanged(
        &self,
        trust: &vmc_trust::TrustStore,
        sub: &Subscription,
        current: &ListVersionInfo,
        raw: &[u8],
        now: DateTime<Utc>,
        report: &mut ListReport,
    ) -> Result<(), Rejection> {
        let signer = self.verify_signature(trust, raw, now)?.signer;
        report.signer = Some(signer.clone());
        report.version = Some(current.version.clone());
        self.check_linked(sub.id, &Self::identity(&signer))?;
        self.check_dates(current.created, current.expires, now)?;
        self.store()
            .record_unchanged(sub.id, now)
            .map_err(store_failure)?;
        report.status = UpdateStatus::Unchanged;
        Ok(())
    }

    /// Updates the given subscriptions, or every enabled one when `subs` is empty. One failing
    /// list does not stop the others.
    pub fn update_all(
        &self,
        subs: Option<Vec<Subscription>>,
        dispatcher: &Dispatcher,
        progress: &dyn crate::Progress,
    ) -> Result<Vec<ListReport>, CacheError> {
        let subs = match subs {
            Some(s) => s,
            None => self
                .store()
                .subscriptions()?
                .into_iter()
                .filter(|s| s.enabled)
                .collect(),
        };
        let mut reports = Vec::with_capacity(subs.len());
        for sub in &subs {
            let report = self.update_once_per_site(sub, dispatcher)?;
            progress.list_done(&report);
            reports.push(report);
        }
        Ok(reports)
    }

    /// Updates `sub` unless another node of the site does: under the `update:<id>` lease,
    /// skipped when another node holds it or finished the list within the refresh interval.
    /// The lease is released at the end, whatever happened.
    fn update_once_per_site(
        &self,
        sub: &Subscription,
        dispatcher: &Dispatcher,
    ) -> Result<ListReport, CacheError> {
        let config = self.config();
        let resource = format!("update:{}", sub.id);
        let ttl = crate::node::lease_delta(config.lease_time);
        let taken = self
            .store()
            .try_lease(&resource, &config.node, config.clock.now(), ttl)?;
        let Some(mut lease) = taken else {
            let holder = self.store().lease(&resource)?.map(|l| l.node);
            return Ok(skipped(
                sub,
                format!(
                    "node {} is updating it",
                    holder.as_deref().unwrap_or("(another)")
                ),
            ));
        };
        let result = self.update_leased(sub, dispatcher, &resource, &mut lease);
        if let Err(e) = self.store().release_lease(&lease) {
            tracing::warn!("cannot release the lease {resource}: {}", chain(&e));
        }
        result
    }

    fn update_leased(
        &self,
        sub: &Subscription,
        dispatcher: &Dispatcher,
        resource: &str,
        lease: &mut Lease,
    ) -> Result<ListReport, CacheError> {
        let config = self.config();
        let now = config.clock.now();
        let refresh = TimeDelta::from_std(config.refresh_interval).unwrap_or(TimeDelta::MAX);
        if let Some(run) = self.store().last_run(resource)?
            && run.node != config.node
            && now - run.finished_at < refresh
        {
            return Ok(skipped(
                sub,
                format!(
                    "node {} updated it at {}",
                    run.node,
                    run.finished_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        // Read again under the lease: another node may have imported a version since `sub`
        // was read.
        let sub = self.store().subscription(sub.id)?;
        self.set_activity(&format!(
            "updating {}",
            sub.identifier
                .clone()
                .unwrap_or_else(|| vmc_fetch::redact_url(&sub.url))
        ));
        let report = self.update_with(&sub, dispatcher, Some(lease))?;
        if !matches!(report.status, UpdateStatus::Failed | UpdateStatus::Skipped) {
            self.store()
                .record_run(resource, &config.node, config.clock.now())?;
        }
        Ok(report)
    }

    /// Runs every check that needs no stored state on a list (1–6 and 9, plus 7 against
    /// `endorser` when given) and stores nothing.
    pub fn check(
        &self,
        source: &Source,
        endorser: Option<&str>,
    ) -> Result<CheckReport, CacheError> {
        let trust = self.trust()?;
        let endorser = match endorser {
            Some(key) => Some(self.store().find_endorser(key)?.ok_or_else(|| {
                CacheError::NoSuchEndorser {
                    key: key.to_owned(),
                }
            })?),
            None => None,
        };
        let now = self.config().clock.now();
        let mut report = CheckReport {
            error: None,
            signer: None,
            list: None,
            rejected_images: Vec::new(),
        };
        let raw = match source {
            Source::Url(url) => self.fetch_list(url, None),
            Source::File(path) => read_capped(path, self.config().max_list_bytes),
        };
        let candidate = match self.candidate(trust, raw, now) {
            Ok(c) => c,
            Err(rejected) => {
                let (e, signer) = *rejected;
                report.error = Some(e);
                report.signer = signer;
                return Ok(report);
            }
        };
        report.signer = Some(candidate.signer.clone());
        report.rejected_images = rejected_images(&candidate.parsed);
        let identity = Self::identity(&candidate.signer);
        if let Some(e) = &endorser
            && !e.identities.contains(&identity)
        {
            report.error = Some(reject(
                ErrorCode::SignerNotEndorser,
                format!(
                    "the signer {} (issuer {}) is not an identity of endorser {}",
                    identity.subject, identity.issuer, e.id
                ),
            ));
        }
        if report.error.is_none() {
            report.error = self.check_time(&candidate.parsed.list, now).err();
        }
        report.list = Some(candidate.parsed.list);
        Ok(report)
    }
}

fn read_capped(path: &std::path::Path, max: u64) -> Result<Vec<u8>, Rejection> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        reject(
            ErrorCode::FetchFailed,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            reject(
                ErrorCode::FetchFailed,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    if bytes.len() as u64 > max {
        return Err(reject(
            ErrorCode::FetchFailed,
            format!(
                "{} is larger than the list limit of {max} bytes",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}
