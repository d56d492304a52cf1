//! OCI registry subscriptions (`oci://REGISTRY/PROJECT[/REPOSITORY][:TAG]`): an update takes
//! a snapshot of the registry — the repositories of the project (or the one named), their tags
//! (or the one named), each tag's manifest fetched by digest and verified — and stores it as a
//! version of the subscription, one image per repository and tag: version = manifest digest,
//! `sha512` = the disk layer's digest in its `algorithm:hex` form, size = the layer's size,
//! `extra` = `hv:format`, the keys mapped from the annotations and every annotation verbatim.
//! Selection, new-image policy, expiry and events then work as for list images; a sync
//! downloads the layer through [`vmc_fetch::oci::Registry::download_blob`] (digest and size
//! verified while it streams). An image is endorsed while the subscription's allow rule admits
//! its repository.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use vmc_fetch::oci::{Registry, RegistryOptions, is_loopback};
use vmc_fetch::{DownloadOutcome, FetchError, Reporter};
use vmc_model::oci::{
    AllowRule, Descriptor, Digest, DigestAlgorithm, ImageMetadata, Manifest, Reference,
};
use vmc_model::{
    ErrorCode, Identifier, Image, ImageList, OciError, Subscription, SubscriptionAuth, Version,
};
use vmc_store::{ImageRecord, NewSubscription, OciImport};

use crate::Vmc;
use crate::error::CacheError;
use crate::events::Dispatcher;
use crate::report::{CheckReport, ListReport, RejectedImageReport, UpdateStatus};
use crate::update::{NewSubscriptionRequest, Rejection, chain, reject, sha512_hex, to_credentials};

/// The scheme of an OCI subscription's URL.
pub const SCHEME: &str = "oci://";

/// `extra` key of an OCI image: the manifest digest (also its version).
pub const KEY_MANIFEST_DIGEST: &str = "oci:manifest_digest";
/// `extra` key of an OCI image: the disk layer's digest.
pub const KEY_LAYER_DIGEST: &str = "oci:layer_digest";
/// `extra` key of an OCI image: where it is, `oci://REGISTRY/NAME:TAG`.
pub const KEY_REFERENCE: &str = "oci:reference";
/// `extra` key of an OCI image: every annotation (layer over manifest), verbatim.
pub const KEY_ANNOTATIONS: &str = "oci:annotations";

/// Whether `url` names an OCI registry source.
pub fn is_oci(url: &str) -> bool {
    url.get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// The allow rule a subscription to `reference` gets when the site names none: exactly the
/// repository named, or every repository of the project.
pub fn default_allow_rule(reference: &Reference) -> String {
    match reference.name() {
        Some(name) => format!("{}/{name}", reference.registry),
        None => format!("{}/{}/**", reference.registry, reference.project),
    }
}

/// When a snapshot "expires": never (a registry publishes no expiry; a vanished tag expires
/// its image instead).
fn never() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The cache identifier of the image at `name:tag` on a registry: the artifact's
/// `dc:identifier` annotation when it carries a valid one (the key HEPiX lists use, so a list
/// and a registry naming the same image share its one cached file), else `NAME-TAG` with `/`
/// written `.`.
fn image_identifier(
    name: &str,
    tag: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<Identifier, String> {
    if let Some(id) = annotations.get("dc:identifier")
        && let Ok(id) = Identifier::new(id.clone())
    {
        return Ok(id);
    }
    let derived = format!("{}-{tag}", name.replace('/', "."));
    Identifier::new(derived.clone())
        .map_err(|e| format!("no valid image identifier for {name}:{tag} ({derived:?}: {e})"))
}

/// The list identifier of an OCI subscription: its reference with every character outside
/// the identifier alphabet written `-`, at most 128 characters.
fn list_identifier(reference: &Reference) -> Result<Identifier, Rejection> {
    let text = reference.to_string();
    let body = text.trim_start_matches(SCHEME);
    let mut id: String = format!("oci-{body}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    id.truncate(128);
    Identifier::new(id).map_err(|e| reject(ErrorCode::ListMalformed, e.to_string()))
}

/// A tag of the referrers fallback schema (`sha256-<hex>`), which names no image.
fn is_referrers_tag(tag: &str) -> bool {
    ["sha256-", "sha512-"].iter().any(|p| {
        tag.strip_prefix(p)
            .is_some_and(|hex| hex.len() >= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// A fetch failure of an update, as the subscription's last error.
fn fetch_rejection(e: &FetchError) -> Rejection {
    reject(e.code(), chain(e))
}

/// What an update found in the registry.
struct Snapshot {
    list: ImageList,
    raw: Vec<u8>,
    sha512: String,
    rejected: Vec<RejectedImageReport>,
}

/// The layer `record` (an OCI image) downloads: its digest and size.
fn layer_descriptor(record: &ImageRecord) -> Result<Descriptor, OciError> {
    let digest: Digest = record.image.sha512.parse()?;
    Ok(Descriptor {
        media_type: String::new(),
        digest,
        size: record.image.size,
        artifact_type: None,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// The digest of the file at `path` in the form `expected` is written in: bare sha512 hex
/// for a list image, `algorithm:hex` for an OCI layer.
/// Whether `digest`, as recorded for an image or a cached file, is an OCI layer digest
/// (`algorithm:hex`) rather than a list image's bare sha512 hex.
pub(crate) fn is_layer_digest(digest: &str) -> bool {
    digest.contains(':')
}

pub(crate) fn file_digest(path: &Path, expected: &str) -> std::io::Result<String> {
    match expected.split_once(':') {
        None => vmc_fetch::sha512_file(path),
        Some((algorithm, _)) => {
            let algorithm = match algorithm {
                "sha512" => DigestAlgorithm::Sha512,
                _ => DigestAlgorithm::Sha256,
            };
            let hex = vmc_fetch::digest_file(path, algorithm)?;
            Ok(format!("{}:{hex}", algorithm.as_str()))
        }
    }
}

impl Vmc {
    /// The HTTP client of registries: the shared one (system roots and the CA directory),
    /// or, when [`crate::Config::oci_ca_file`] names a bundle, one that trusts that bundle's
    /// certificates alone (built on first use; an unreadable or empty bundle fails every
    /// registry request, naming the file).
    fn oci_client(&self) -> Result<&vmc_fetch::Client, FetchError> {
        let Some(path) = &self.config().oci_ca_file else {
            return self.client();
        };
        if let Some(client) = self.oci_client.get() {
            return Ok(client);
        }
        let mut http = self.config().http.clone();
        http.system_roots = false;
        http.extra_roots = vmc_fetch::load_ca_bundle(path)?;
        let client = vmc_fetch::Client::new(http)?;
        Ok(self.oci_client.get_or_init(|| client))
    }

    /// A client of `registry` with the subscription's credentials: `https` (verified against
    /// the system roots and the CA directory, or the bundle of
    /// [`crate::Config::oci_ca_file`]), or plain `http` for a loopback registry when
    /// [`crate::Config::oci_plain_http`] says so.
    fn registry(
        &self,
        registry: &str,
        auth: Option<&SubscriptionAuth>,
    ) -> Result<Registry, FetchError> {
        let client = self.oci_client()?;
        let options = RegistryOptions {
            plain_http: self.config().oci_plain_http && is_loopback(registry),
            credentials: auth.map(to_credentials),
            ..RegistryOptions::default()
        };
        Registry::new(client, registry, options)
    }

    /// Reads the registry: the repositories `reference` names that `rule` allows, their tags,
    /// each tag's manifest by digest (verified), its disk layer and annotations. A failure
    /// of the registry (transport, auth, a digest that does not match, a manifest pointing
    /// outside the repository) fails the whole snapshot, so nothing changes; a manifest that
    /// is no disk image (a container image, an index, an SBOM) is left out and reported.
    fn oci_snapshot(
        &self,
        reference: &Reference,
        rule: &AllowRule,
        auth: Option<&SubscriptionAuth>,
    ) -> Result<Snapshot, Rejection> {
        let registry = self
            .registry(&reference.registry, auth)
            .map_err(|e| fetch_rejection(&e))?;
        let names = match reference.name() {
            Some(name) => vec![name],
            None => registry
                .repositories(&reference.project)
                .map_err(|e| fetch_rejection(&e))?,
        };
        let mut images: Vec<Image> = Vec::new();
        let mut rejected = Vec::new();
        let mut found: Vec<Value> = Vec::new();
        for name in names {
            if !rule.allows(&reference.registry, &name) {
                tracing::info!("{name}: not allowed by {rule}; left out");
                continue;
            }
            let tags = match &reference.tag {
                Some(tag) => vec![tag.clone()],
                None => registry.tags(&name).map_err(|e| fetch_rejection(&e))?,
            };
            for tag in tags.into_iter().filter(|t| !is_referrers_tag(t)) {
                let at = format!("{SCHEME}{}/{name}:{tag}", reference.registry);
                let mut leave_out = |message: String| {
                    tracing::info!("{at}: left out: {message}");
                    rejected.push(RejectedImageReport {
                        identifier: Some(at.clone()),
                        message,
                    });
                };
                let fetched = match registry.manifest_for_tag(&name, &tag) {
                    Ok(f) => f,
                    Err(FetchError::Manifest {
                        source: source @ OciError::UnsupportedManifest { .. },
                        ..
                    }) => {
                        leave_out(source.to_string());
                        continue;
                    }
                    Err(e) => return Err(fetch_rejection(&e)),
                };
                let Manifest::Image(manifest) = &fetched.manifest else {
                    leave_out("an index of several manifests, not one disk image".into());
                    continue;
                };
                let layer = match manifest.disk_layer() {
                    Ok(layer) => layer,
                    Err(e) => {
                        leave_out(e.to_string());
                        continue;
                    }
                };
                let meta = ImageMetadata::from_manifest(manifest, &layer, Some(&reference.project));
                let identifier = match image_identifier(&name, &tag, &meta.annotations) {
                    Ok(id) => id,
                    Err(message) => {
                        leave_out(message);
                        continue;
                    }
                };
                if images.iter().any(|i| i.identifier == identifier) {
                    leave_out(format!(
                        "image identifier {identifier} is taken by another tag"
                    ));
                    continue;
                }
                let manifest_digest = fetched.digest.to_string();
                let layer_digest = layer.descriptor.digest.to_string();
                let mut image = Image::new(
                    identifier,
                    meta.title
                        .clone()
                        .unwrap_or_else(|| format!("{name}:{tag}")),
                    format!("{SCHEME}{}/{name}@{manifest_digest}", reference.registry),
                    layer.descriptor.size,
                    layer_digest.clone(),
                    manifest_digest.clone(),
                );
                image.extra = meta.list_image_keys(layer.format);
                image
                    .extra
                    .insert(KEY_MANIFEST_DIGEST.into(), manifest_digest.clone().into());
                image
                    .extra
                    .insert(KEY_LAYER_DIGEST.into(), layer_digest.clone().into());
                image.extra.insert(KEY_REFERENCE.into(), at.clone().into());
                if let Some(version) = &meta.version {
                    image
                        .extra
                        .insert("oci:version".into(), version.clone().into());
                }
                image.extra.insert(
                    KEY_ANNOTATIONS.into(),
                    Value::Object(
                        meta.annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                            .collect(),
                    ),
                );
                found.push(json!({
                    "repository": name,
                    "tag": tag,
                    "manifest": manifest_digest,
                    "layer": layer_digest,
                    "size": layer.descriptor.size,
                    "annotations": meta.annotations,
                }));
                images.push(image);
            }
        }
        images.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        found.sort_by_key(|v| v.to_string());
        let raw = serde_json::to_vec(&json!({
            "reference": reference.to_string(),
            "images": found,
        }))
        .unwrap_or_default();
        let sha512 = sha512_hex(&raw);
        let now = self.config().clock.now();
        let list = ImageList {
            identifier: list_identifier(reference)?,
            title: reference.to_string(),
            description: format!("the disk images of {reference}"),
            source: reference.to_string(),
            created: now,
            expires: never(),
            // The first snapshot is version 1; an update numbers a changed one after the
            // current version (`next_version`), so versions only ever grow, as the store
            // requires of every subscription (an older fetch never replaces a newer version).
            version: Version::new("1"),
            uri: reference.to_string(),
            endorsers: Vec::new(),
            images,
            // The VO is the project (EGI's registry has one project per VO).
            extra: serde_json::Map::from_iter([(
                "ad:vo".to_owned(),
                Value::from(reference.project.clone()),
            )]),
        };
        Ok(Snapshot {
            list,
            raw,
            sha512,
            rejected,
        })
    }

    /// `subscribe add oci://…`: reads the registry and stores the subscription only when the
    /// snapshot succeeds. `allow` is the site's rule (default [`default_allow_rule`]), which
    /// must admit the reference.
    pub fn subscribe_oci(
        &self,
        request: &NewSubscriptionRequest,
        allow: Option<&str>,
        dispatcher: &Dispatcher,
    ) -> Result<ListReport, CacheError> {
        let reference = Reference::parse(&request.url)
            .map_err(|e| CacheError::Invalid(format!("{}: {e}", request.url)))?;
        if reference.digest.is_some() {
            return Err(CacheError::Invalid(format!(
                "{}: a subscription follows tags; name a tag (or none), not a digest",
                request.url
            )));
        }
        let url = reference.to_string();
        let allow = allow.map_or_else(|| default_allow_rule(&reference), str::to_owned);
        let rule = AllowRule::parse(&allow)
            .map_err(|e| CacheError::Invalid(format!("--allow {allow}: {e}")))?;
        if !rule.allows_reference(&reference) {
            return Err(CacheError::Invalid(format!(
                "{url} is not allowed by the registry rule {rule}"
            )));
        }
        if self.store().find_subscription(&url)?.is_some() {
            return Err(CacheError::Invalid(format!("already subscribed to {url}")));
        }
        let mut report = ListReport::failed(url.clone(), None);
        let snapshot = match self.oci_snapshot(&reference, &rule, request.auth.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                report.error = Some(e);
                return Ok(report);
            }
        };
        report.identifier = Some(snapshot.list.identifier.to_string());
        report.version = Some(snapshot.list.version.to_string());
        let sub = self.store().add_oci_subscription(
            &NewSubscription {
                url,
                new_images: request.new_images,
                auth: request.auth.clone(),
                enabled: true,
            },
            &rule.to_string(),
        )?;
        let imported = self.store().import_oci(
            sub.id,
            &OciImport {
                raw: &snapshot.raw,
                sha512: &snapshot.sha512,
                list: &snapshot.list,
                imported: self.config().clock.now(),
                select_all: request.new_images == vmc_model::NewImagePolicy::Subscribe,
            },
        );
        let outcome = match imported {
            Ok(o) => o,
            Err(e) => {
                let _ = self.store().remove_subscription(sub.id);
                return Err(e.into());
            }
        };
        report.status = UpdateStatus::Added;
        report.new_images = outcome.new_images;
        report.rejected_images = snapshot.rejected;
        self.announce_new_images(&snapshot.list, &report.new_images, dispatcher);
        Ok(report)
    }

    /// `subscribe check oci://…`: the discovery and verification of an update (repositories,
    /// tags, each manifest by digest, its disk layer), storing nothing. A subscription to the
    /// same URL lends its allow rule and credentials, as an update would use them; otherwise
    /// the default rule ([`default_allow_rule`]) and anonymous access.
    pub fn check_oci(&self, url: &str) -> Result<CheckReport, CacheError> {
        let reference =
            Reference::parse(url).map_err(|e| CacheError::Invalid(format!("{url}: {e}")))?;
        let mut report = CheckReport {
            error: None,
            signer: None,
            list: None,
            rejected_images: Vec::new(),
        };
        let sub = self.store().find_subscription(&reference.to_string())?;
        let allow = match &sub {
            Some(sub) => self.store().oci_allow(sub.id)?,
            None => None,
        }
        .unwrap_or_else(|| default_allow_rule(&reference));
        let rule = AllowRule::parse(&allow)
            .map_err(|e| CacheError::Invalid(format!("registry rule {allow}: {e}")))?;
        if !rule.allows_reference(&reference) {
            report.error = Some(reject(
                ErrorCode::SignerNotEndorser,
                format!("the registry rule {rule} does not allow {reference}"),
            ));
            return Ok(report);
        }
        let auth = sub.as_ref().and_then(|s| s.auth.as_ref());
        match self.oci_snapshot(&reference, &rule, auth) {
            Ok(snapshot) => {
                report.rejected_images = snapshot.rejected;
                report.list = Some(snapshot.list);
            }
            Err(e) => report.error = Some(e),
        }
        Ok(report)
    }

    /// One update of OCI subscription `sub`: a new snapshot is a new version (a moved tag
    /// names another manifest, a vanished tag leaves its image out); the same snapshot is
    /// `unchanged`.
    pub(crate) fn update_oci(
        &self,
        sub: &Subscription,
        report: &mut ListReport,
        dispatcher: &Dispatcher,
    ) -> Result<(), Rejection> {
        let store_failure = |e: vmc_store::StoreError| {
            reject(ErrorCode::FetchFailed, format!("database: {}", chain(&e)))
        };
        let reference = Reference::parse(&sub.url)
            .map_err(|e| reject(ErrorCode::ListMalformed, format!("{}: {e}", sub.url)))?;
        let allow = self
            .store()
            .oci_allow(sub.id)
            .map_err(store_failure)?
            .unwrap_or_else(|| default_allow_rule(&reference));
        let rule = AllowRule::parse(&allow)
            .map_err(|e| reject(ErrorCode::ListMalformed, format!("registry rule: {e}")))?;
        // The site withdrew its trust: nothing is fetched, and the stored images are no
        // longer endorsed (they expire `unendorsed`), as for a list whose endorser left.
        if !rule.allows_reference(&reference) {
            return Err(reject(
                ErrorCode::SignerNotEndorser,
                format!("the registry rule {rule} does not allow {reference}"),
            ));
        }
        let mut snapshot = self.oci_snapshot(&reference, &rule, sub.auth.as_ref())?;
        snapshot.list.version = next_version(sub);
        report.identifier = Some(snapshot.list.identifier.to_string());
        report.version = Some(snapshot.list.version.to_string());
        report.rejected_images = snapshot.rejected.clone();
        let now = self.config().clock.now();
        let outcome = self
            .store()
            .import_oci(
                sub.id,
                &OciImport {
                    raw: &snapshot.raw,
                    sha512: &snapshot.sha512,
                    list: &snapshot.list,
                    imported: now,
                    select_all: false,
                },
            )
            .map_err(store_failure)?;
        if outcome.already_current {
            self.store()
                .record_unchanged(sub.id, now)
                .map_err(store_failure)?;
            report.status = UpdateStatus::Unchanged;
            return Ok(());
        }
        report.status = UpdateStatus::Updated;
        report.new_images = outcome.new_images;
        self.announce_new_images(&snapshot.list, &report.new_images, dispatcher);
        Ok(())
    }

    /// Downloads the disk layer of OCI image `record` into `dest` through the registry's
    /// blob endpoint: sha256 (or sha512) and size verified while it streams, resumable, the
    /// partial file deleted on a mismatch.
    pub(crate) fn fetch_oci_blob(
        &self,
        record: &ImageRecord,
        dest: &Path,
        reporter: &dyn Reporter,
    ) -> Result<DownloadOutcome, FetchError> {
        let bad = |reason: String| FetchError::RegistryResponse {
            url: record.image.uri.clone(),
            reason,
        };
        let reference = Reference::parse(&record.image.uri).map_err(|e| bad(e.to_string()))?;
        let name = reference
            .name()
            .ok_or_else(|| bad("names no repository".into()))?;
        let descriptor = layer_descriptor(record).map_err(|e| bad(e.to_string()))?;
        let auth = self
            .store()
            .subscription(record.subscription_id)
            .map_err(|e| bad(format!("database: {}", chain(&e))))?
            .auth;
        let registry = self.registry(&reference.registry, auth.as_ref())?;
        let done = registry.download_blob(&name, &descriptor, dest, reporter)?;
        Ok(DownloadOutcome {
            sha512: done.digest.to_string(),
            size: done.size,
            bytes_transferred: done.bytes_transferred,
            resumed_from: done.resumed_from,
            attempts: done.attempts,
        })
    }
}

/// The version a changed snapshot of `sub` is stored as: one more than the current version
/// (snapshots are numbered 1, 2, 3, …; the snapshot's own digest is the version's sha512).
fn next_version(sub: &Subscription) -> Version {
    let current = sub
        .current
        .as_ref()
        .and_then(|c| c.version.parse::<u64>().ok())
        .unwrap_or(0);
    Version::new((current + 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_tags_are_not_images() {
        assert!(is_referrers_tag(&format!("sha256-{}", "a".repeat(64))));
        assert!(!is_referrers_tag("sha256-1"));
        assert!(!is_referrers_tag("22.04"));
    }

    #[test]
    fn identifiers_come_from_the_annotation_or_the_name_and_tag() {
        let mut annotations = BTreeMap::new();
        assert_eq!(
            image_identifier("vo.example/ubuntu", "22.04", &annotations)
                .unwrap()
                .as_str(),
            "vo.example.ubuntu-22.04"
        );
        annotations.insert("dc:identifier".into(), "c0ffee-1".into());
        assert_eq!(
            image_identifier("vo.example/ubuntu", "22.04", &annotations)
                .unwrap()
                .as_str(),
            "c0ffee-1"
        );
        annotations.insert("dc:identifier".into(), "../etc".into());
        assert_eq!(
            image_identifier("vo.example/ubuntu", "22.04", &annotations)
                .unwrap()
                .as_str(),
            "vo.example.ubuntu-22.04"
        );
        let long = "a".repeat(130);
        assert!(image_identifier(&format!("p/{long}"), "1", &BTreeMap::new()).is_err());
    }

    #[test]
    fn default_rules_allow_what_the_reference_names() {
        let project = Reference::parse("oci://registry.egi.eu/vo.access.egi.eu").unwrap();
        assert_eq!(
            default_allow_rule(&project),
            "registry.egi.eu/vo.access.egi.eu/**"
        );
        let repo = Reference::parse("oci://registry.egi.eu/vo/ubuntu:22.04").unwrap();
        assert_eq!(default_allow_rule(&repo), "registry.egi.eu/vo/ubuntu");
        assert!(is_oci("OCI://x/y") && !is_oci("https://x/y"));
        assert!(is_loopback("127.0.0.1:5000") && !is_loopback("registry.egi.eu"));
    }
}
