//! An OCI distribution client: what vmc reads from a registry (EGI's Harbor, a plain
//! `docker-registry`): `/v2/` ping, tag lists with `Link` pagination, manifests by tag then by
//! digest (verified), and blobs through the same single-pass, resumable download as list
//! images, verified against their digest and size while they stream.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: none (anonymous),
//! `Basic` (the site's credentials), or `Bearer realm=…,service=…,scope=…`: the token is asked
//! from the realm (with the site's Basic credentials, e.g. a Harbor robot account, or
//! anonymously) and kept per scope for the client's life. A site-given bearer token is sent as
//! it is. Credentials and tokens never appear in logs, errors or `Debug` output; Basic
//! credentials go to a token realm only over TLS (or on loopback). Plain `http` is allowed
//! only for loopback registries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use vmc_model::oci::{
    Descriptor, Digest, DigestAlgorithm, MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES, Manifest,
    Reference, is_tag, parse_manifest,
};

use crate::client::{Client, Method, Response, origin, read_capped, resolve_location};
use crate::config::Credentials;
use crate::download::HttpDownload;
use crate::error::FetchError;
use crate::hash::Sha;
use crate::{Reporter, redact_url};

/// Largest tag-list page or token answer read.
const MAX_SMALL_BODY: u64 = 4 << 20;
/// Most tag-list pages followed for one repository.
const MAX_PAGES: usize = 1000;
/// Tags asked per page unless [`RegistryOptions::page_size`] says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// How to reach a registry.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Use `http` instead of `https` (only accepted for loopback registries, for tests and
    /// local mirrors).
    pub plain_http: bool,
    /// The site's credentials: Basic (user and password, or a Harbor robot account) or a
    /// bearer token; `None` for anonymous access.
    pub credentials: Option<Credentials>,
    /// Tags asked per page of a tag list (`?n=`); registries may send fewer.
    pub page_size: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            plain_http: false,
            credentials: None,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("plain_http", &self.plain_http)
            .field("credentials", &self.credentials)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// A client of one registry, sharing the [`Client`]'s agent, timeouts, proxy and TLS roots.
pub struct Registry {
    client: Client,
    host: String,
    base: String,
    credentials: Option<Credentials>,
    page_size: usize,
    /// `Authorization` values by scope (`repository:NAME:pull`), from answered challenges.
    tokens: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// A manifest fetched by digest and verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its digest (the image's version).
    pub digest: Digest,
    /// The bytes as served (they hash to `digest`).
    pub bytes: Vec<u8>,
    /// The `Content-Type` it came with.
    pub content_type: Option<String>,
    /// The parsed manifest.
    pub manifest: Manifest,
}

/// A manifest as a `GET` served it, not yet verified.
struct ServedManifest {
    /// `Docker-Content-Digest`, if sent.
    announced: Option<Digest>,
    /// `Content-Type`, if sent.
    content_type: Option<String>,
    /// The body.
    bytes: Vec<u8>,
}

/// The manifests that refer to a manifest, and where the list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    /// The referrers API, the tag schema, or neither (no referrers).
    pub source: ReferrersSource,
    /// Their descriptors (`artifactType` says which kind: cosign or notation signatures, …).
    pub manifests: Vec<Descriptor>,
}

/// Where [`Referrers`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersSource {
    /// `GET /v2/<name>/referrers/<digest>` (distribution spec 1.1).
    Api,
    /// The `<algorithm>-<hex>` tag of the fallback schema.
    TagSchema,
    /// Neither exists: nothing refers to the manifest.
    None,
}

/// What a blob download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobOutcome {
    /// The verified digest.
    pub digest: Digest,
    /// The verified size.
    pub size: u64,
    /// Body bytes received, all attempts together.
    pub bytes_transferred: u64,
    /// The offset the successful attempt started from.
    pub resumed_from: u64,
    /// Attempts made.
    pub attempts: u32,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Registry {
    /// A client of `registry` (`host[:port]`, as in an `oci://` reference).
    pub fn new(
        client: &Client,
        registry: &str,
        options: RegistryOptions,
    ) -> Result<Registry, FetchError> {
        let host = registry.to_ascii_lowercase();
        if options.plain_http && !is_loopback(&host) {
            return Err(FetchError::PlainHttpRefused { registry: host });
        }
        let scheme = if options.plain_http { "http" } else { "https" };
        Ok(Registry {
            client: client.clone(),
            base: format!("{scheme}://{host}"),
            host,
            credentials: options.credentials,
            page_size: options.page_size.max(1),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// A client of the registry `reference` names.
    pub fn for_reference(
        client: &Client,
        reference: &Reference,
        options: RegistryOptions,
    ) -> Result<Registry, FetchError> {
        Registry::new(client, &reference.registry, options)
    }

    /// `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /v2/`: whether this is a registry that answers (with the credentials given, when
    /// it asks for them).
    pub fn ping(&self) -> Result<(), FetchError> {
        let url = format!("{}/v2/", self.base);
        let response = self.request(Method::Get, &url, None, &[])?;
        expect_ok(&url, &response)?;
        Ok(())
    }

    /// Every tag of repository `name` (`project/repository`), following `Link` pages.
    pub fn tags(&self, name: &str) -> Result<Vec<String>, FetchError> {
        let url = format!("{}/v2/{name}/tags/list?n={}", self.base, self.page_size);
        let mut tags = Vec::new();
        self.paged(url, &pull_scope(name), |url, value| {
            let bad = |reason: String| FetchError::RegistryResponse {
                url: url.to_owned(),
                reason,
            };
            if value.get("name").and_then(|n| n.as_str()) != Some(name) {
                return Err(bad(format!("tag list does not name the repository {name}")));
            }
            for item in string_array(url, &value, "tags")? {
                if !is_tag(&item) {
                    return Err(bad(format!("tag {item:?} is not a valid tag")));
                }
                tags.push(item);
            }
            Ok(())
        })?;
        Ok(tags)
    }

    /// The repositories of `project` (names `project/…`): Harbor's project API
    /// (`/api/v2.0/projects/{project}/repositories`, page by page) when the registry is a
    /// Harbor, else the distribution catalog (`/v2/_catalog`, filtered to the project).
    pub fn repositories(&self, project: &str) -> Result<Vec<String>, FetchError> {
        match self.harbor_repositories(project) {
            Err(FetchError::Status { code: 404, .. }) => {}
            other => return other,
        }
        let url = format!("{}/v2/_catalog?n={}", self.base, self.page_size);
        let prefix = format!("{project}/");
        let mut names = Vec::new();
        self.paged(url, "registry:catalog:*", |url, value| {
            for name in string_array(url, &value, "repositories")? {
                if name.starts_with(&prefix) {
                    names.push(name);
                }
            }
            Ok(())
        })?;
        Ok(names)
    }

    /// Harbor's repositories of `project`; `Status 404` when this is not a Harbor.
    fn harbor_repositories(&self, project: &str) -> Result<Vec<String>, FetchError> {
        let prefix = format!("{project}/");
        let mut names = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}/api/v2.0/projects/{}/repositories?page={page}&page_size={}",
                self.base,
                query_escape(project),
                self.page_size
            );
            let response = self.request(Method::Get, &url, None, &[])?;
            expect_ok(&url, &response)?;
            let body = read_capped(&url, response, MAX_SMALL_BODY)?;
            let bad = |reason: String| FetchError::RegistryResponse {
                url: url.clone(),
                reason,
            };
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| bad(format!("repository list is not JSON: {e}")))?;
            let items = value
                .as_array()
                .ok_or_else(|| bad("repository list is not an array".into()))?;
            for item in items {
                match item.get("name").and_then(|n| n.as_str()) {
                    Some(name) if name.starts_with(&prefix) && name.len() > prefix.len() => {
                        names.push(name.to_owned());
                    }
                    _ => {
                        return Err(bad(format!(
                            "repository {item} is not a named repository of project {project}"
                        )));
                    }
                }
            }
            if items.len() < self.page_size {
                return Ok(names);
            }
        }
        Err(FetchError::RegistryResponse {
            url: format!("{}/api/v2.0/projects/{project}/repositories", self.base),
            reason: format!("more than {MAX_PAGES} pages of repositories"),
        })
    }

    /// Reads the JSON pages starting at `url`, following `Link: <…>; rel="next"` on the same
    /// origin, at most [`MAX_PAGES`], never the same page twice.
    fn paged(
        &self,
        mut url: String,
        scope: &str,
        mut each: impl FnMut(&str, serde_json::Value) -> Result<(), FetchError>,
    ) -> Result<(), FetchError> {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let response = self.request(Method::Get, &url, Some(scope), &[])?;
            expect_ok(&url, &response)?;
            let next = next_link(&response);
            let body = read_capped(&url, response, MAX_SMALL_BODY)?;
            let bad = |reason: String| FetchError::RegistryResponse {
                url: url.clone(),
                reason,
            };
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
            each(&url, value)?;
            let Some(next) = next else {
                return Ok(());
            };
            let next = resolve_location(&url, &next);
            if origin(&next) != origin(&self.base) {
                return Err(bad(format!(
                    "next page {} is on another origin",
                    redact_url(&next)
                )));
            }
            if !seen.insert(next.clone()) || next == url {
                return Err(bad("the next page link repeats".into()));
            }
            url = next;
        }
        Err(FetchError::RegistryResponse {
            url,
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The digest a tag points to now: `HEAD` on the manifest (`Docker-Content-Digest`), or,
    /// when the registry does not say, the digest of the manifest `GET` by tag (checked
    /// against the header when there is one).
    pub fn resolve_tag(&self, name: &str, tag: &str) -> Result<Digest, FetchError> {
        let scope = pull_scope(name);
        let url = format!("{}/v2/{name}/manifests/{tag}", self.base);
        let accept = [("Accept", MANIFEST_MEDIA_TYPES.join(", "))];
        let response = self.request(Method::Head, &url, Some(&scope), &accept)?;
        expect_ok(&url, &response)?;
        if let Some(digest) = announced_digest(&url, &response)? {
            return Ok(digest);
        }
        let ServedManifest {
            announced, bytes, ..
        } = self.get_manifest(&url, &scope)?;
        let algorithm = announced
            .as_ref()
            .map_or(DigestAlgorithm::Sha256, Digest::algorithm);
        let actual = hex_digest(algorithm, &bytes);
        if let Some(announced) = announced {
            if announced.hex() != actual {
                return Err(FetchError::DigestMismatch {
                    url,
                    expected: announced.to_string(),
                    actual: format!("{algorithm}:{actual}"),
                });
            }
            return Ok(announced);
        }
        Digest::new(algorithm, &actual).map_err(|e| FetchError::RegistryResponse {
            url,
            reason: e.to_string(),
        })
    }

    /// The manifest `digest` of `name`, verified: its bytes must hash to `digest` (and any
    /// `Docker-Content-Digest` must say the same), then it is parsed (descriptors pointing
    /// outside the repository are refused).
    pub fn manifest(&self, name: &str, digest: &Digest) -> Result<FetchedManifest, FetchError> {
        let url = format!("{}/v2/{name}/manifests/{digest}", self.base);
        let ServedManifest {
            announced,
            content_type,
            bytes,
        } = self.get_manifest(&url, &pull_scope(name))?;
        let actual = hex_digest(digest.algorithm(), &bytes);
        if actual != digest.hex() {
            return Err(FetchError::DigestMismatch {
                url,
                expected: digest.to_string(),
                actual: format!("{}:{actual}", digest.algorithm()),
            });
        }
        if let Some(announced) = announced
            && announced != *digest
        {
            return Err(FetchError::DigestMismatch {
                url,
                expected: digest.to_string(),
                actual: announced.to_string(),
            });
        }
        let manifest = parse_manifest(&bytes, content_type.as_deref())
            .map_err(|source| FetchError::Manifest { url, source })?;
        Ok(FetchedManifest {
            digest: digest.clone(),
            bytes,
            content_type,
            manifest,
        })
    }

    /// `GET` of a manifest URL (the body at most [`MAX_MANIFEST_BYTES`]).
    fn get_manifest(&self, url: &str, scope: &str) -> Result<ServedManifest, FetchError> {
        let accept = [("Accept", MANIFEST_MEDIA_TYPES.join(", "))];
        let response = self.request(Method::Get, url, Some(scope), &accept)?;
        expect_ok(url, &response)?;
        let announced = announced_digest(url, &response)?;
        let content_type = response.header("content-type").map(str::to_owned);
        let bytes = read_capped(url, response, MAX_MANIFEST_BYTES as u64)?;
        Ok(ServedManifest {
            announced,
            content_type,
            bytes,
        })
    }

    /// The manifest `tag` of `name` points to: resolved to a digest, then fetched by that
    /// digest and verified ([`Registry::resolve_tag`], [`Registry::manifest`]).
    pub fn manifest_for_tag(&self, name: &str, tag: &str) -> Result<FetchedManifest, FetchError> {
        let digest = self.resolve_tag(name, tag)?;
        self.manifest(name, &digest)
    }

    /// The manifests that refer to the manifest `digest` of `name` (signatures, SBOMs): from
    /// the referrers API (`/v2/<name>/referrers/<digest>`) where the registry has it, else
    /// from the distribution spec's tag schema (an index tagged `<algorithm>-<hex>`, fetched
    /// by digest and verified). vmc does not check signatures yet; this is where a
    /// requirement for them would read them (see ARCHITECTURE.md).
    pub fn referrers(&self, name: &str, digest: &Digest) -> Result<Referrers, FetchError> {
        let scope = pull_scope(name);
        let url = format!("{}/v2/{name}/referrers/{digest}", self.base);
        let accept = [("Accept", vmc_model::oci::MEDIA_TYPE_OCI_INDEX.to_owned())];
        let response = self.request(Method::Get, &url, Some(&scope), &accept)?;
        if response.status == 200 {
            let content_type = response.header("content-type").map(str::to_owned);
            let bytes = read_capped(&url, response, MAX_MANIFEST_BYTES as u64)?;
            return match parse_manifest(&bytes, content_type.as_deref()) {
                Ok(Manifest::Index(index)) => Ok(Referrers {
                    source: ReferrersSource::Api,
                    manifests: index.manifests,
                }),
                Ok(Manifest::Image(_)) => Err(FetchError::RegistryResponse {
                    url,
                    reason: "the referrers answer is not an index".into(),
                }),
                Err(source) => Err(FetchError::Manifest { url, source }),
            };
        }
        if response.status != 404 {
            return Err(FetchError::Status {
                url,
                code: response.status,
            });
        }
        let tag = format!("{}-{}", digest.algorithm(), digest.hex());
        let index_digest = match self.resolve_tag(name, &tag) {
            Ok(d) => d,
            Err(FetchError::Status { code: 404, .. }) => {
                return Ok(Referrers {
                    source: ReferrersSource::None,
                    manifests: Vec::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let fetched = self.manifest(name, &index_digest)?;
        match fetched.manifest {
            Manifest::Index(index) => Ok(Referrers {
                source: ReferrersSource::TagSchema,
                manifests: index.manifests,
            }),
            Manifest::Image(_) => Err(FetchError::RegistryResponse {
                url: format!("{}/v2/{name}/manifests/{tag}", self.base),
                reason: "the referrers tag does not hold an index".into(),
            }),
        }
    }

    /// Downloads the blob `descriptor` of `name` into `dest` (a file of the partial
    /// directory) through the single-pass, resumable download of list images, verified
    /// against the descriptor's digest and size while it streams: a body that announces or
    /// runs past the size is refused at once, a digest mismatch deletes the partial file.
    pub fn download_blob(
        &self,
        name: &str,
        descriptor: &Descriptor,
        dest: &Path,
        reporter: &dyn Reporter,
    ) -> Result<BlobOutcome, FetchError> {
        let scope = pull_scope(name);
        let url = format!("{}/v2/{name}/blobs/{}", self.base, descriptor.digest);
        // A HEAD first: it answers the challenge (so the download has its token) and shows
        // an announced size that is not the descriptor's before any byte is written.
        let response = self.request(Method::Head, &url, Some(&scope), &[])?;
        expect_ok(&url, &response)?;
        if let Some(len) = response
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            && len != descriptor.size
        {
            return Err(FetchError::SizeMismatch {
                url,
                expected: descriptor.size,
                actual: len,
            });
        }
        let auth = self.auth_for(Some(&scope));
        // A token that expires in the middle of the download (its retries after a reset,
        // a resumed range request) is renewed from the 401's challenge, as `request` does.
        let renew = |response: &Response| self.answer_401(&url, response, Some(&scope), true);
        let done = self.client.download_http(
            &HttpDownload {
                url: &url,
                auth: auth.as_deref(),
                renew: Some(&renew),
                dest,
                size: descriptor.size,
                algorithm: descriptor.digest.algorithm(),
                digest: descriptor.digest.hex(),
            },
            reporter,
        )?;
        Ok(BlobOutcome {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            bytes_transferred: done.bytes_transferred,
            resumed_from: done.resumed_from,
            attempts: done.attempts,
        })
    }

    /// The `Authorization` value for `scope` that answers `response`, a `401` to `url`: its
    /// challenge answered (Basic, or a fresh token from the realm). When `renewing` (the
    /// request sent a remembered value, e.g. a token that has since expired), a failure is
    /// [`FetchError::TokenRenewal`]; the site's own bearer token is never renewed, and its
    /// refusal is said as it is.
    fn answer_401(
        &self,
        url: &str,
        response: &Response,
        scope: Option<&str>,
        renewing: bool,
    ) -> Result<String, FetchError> {
        let renewing = renewing && !matches!(self.credentials, Some(Credentials::Bearer(_)));
        let wrap = |source: FetchError| {
            if renewing {
                FetchError::TokenRenewal {
                    url: url.to_owned(),
                    source: Box::new(source),
                }
            } else {
                source
            }
        };
        let challenge = parse_challenges(response).ok_or_else(|| {
            wrap(FetchError::AuthChallenge {
                url: url.to_owned(),
                reason: "401 without a Basic or Bearer challenge",
            })
        })?;
        self.answer(url, &challenge, scope).map_err(wrap)
    }

    /// The `Authorization` value to send for `scope` before any challenge.
    fn auth_for(&self, scope: Option<&str>) -> Option<String> {
        if let Some(Credentials::Bearer(_)) = &self.credentials {
            return self.credentials.as_ref().map(Credentials::header_value);
        }
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(scope.unwrap_or(""))
            .or_else(|| tokens.get(BASIC_KEY))
            .cloned()
    }

    /// Sends a request, answering one `401` challenge (also the one to a remembered token
    /// that has expired: a fresh token, once). Transient failures are retried.
    fn request(
        &self,
        method: Method,
        url: &str,
        scope: Option<&str>,
        headers: &[(&str, String)],
    ) -> Result<Response, FetchError> {
        let timeout = Some(self.client.config().list_timeout);
        let (response, _) = self.client.with_retries(url, |_| {
            let sent = self.auth_for(scope);
            let response =
                self.client
                    .send_method(method, url, sent.as_deref(), headers, timeout)?;
            if response.status != 401 {
                return Ok(response);
            }
            // A remembered token that was refused (it expired) is renewed.
            let auth = self.answer_401(url, &response, scope, sent.is_some())?;
            if sent.as_ref() == Some(&auth) {
                // These very credentials were refused: the caller reports the 401.
                return Ok(response);
            }
            self.client
                .send_method(method, url, Some(&auth), headers, timeout)
        })?;
        Ok(response)
    }

    /// The `Authorization` value that answers `challenge`, remembered for the scope.
    fn answer(
        &self,
        url: &str,
        challenge: &Challenge,
        scope: Option<&str>,
    ) -> Result<String, FetchError> {
        match challenge {
            Challenge::Basic => match &self.credentials {
                Some(c @ Credentials::Basic { .. }) => {
                    let value = c.header_value();
                    self.remember(BASIC_KEY, &value);
                    Ok(value)
                }
                _ => Err(FetchError::AuthChallenge {
                    url: url.to_owned(),
                    reason: "the registry asks for Basic credentials and none are configured",
                }),
            },
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                if let Some(Credentials::Bearer(_)) = &self.credentials {
                    return Err(FetchError::AuthChallenge {
                        url: url.to_owned(),
                        reason: "the registry refused the configured bearer token",
                    });
                }
                let scope_text = asked.as_deref().or(scope);
                let token = self.fetch_token(realm, service.as_deref(), scope_text)?;
                let value = format!("Bearer {token}");
                self.remember(scope.unwrap_or(""), &value);
                Ok(value)
            }
        }
    }

    fn remember(&self, key: &str, value: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), value.to_owned());
    }

    /// Asks the realm for a token (distribution token spec: `GET realm?service=…&scope=…`,
    /// answer `{"token": …}` or `{"access_token": …}`).
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, FetchError> {
        let basic = match &self.credentials {
            Some(c @ Credentials::Basic { .. }) => Some(c.header_value()),
            _ => None,
        };
        let lower = realm.to_ascii_lowercase();
        let realm_host = origin(realm).map(|(_, host, _)| host).unwrap_or_default();
        if lower.starts_with("http://") {
            if basic.is_some() && !is_loopback(&realm_host) {
                return Err(FetchError::InsecureRealm {
                    realm: redact_url(realm),
                });
            }
        } else if !lower.starts_with("https://") {
            return Err(FetchError::BadToken {
                realm: redact_url(realm),
                reason: "the realm is not an http or https url",
            });
        }
        let mut url = realm.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (key, value) in [("service", service), ("scope", scope)] {
            if let Some(value) = value {
                for part in value.split(' ').filter(|p| !p.is_empty()) {
                    url.push(sep);
                    url.push_str(key);
                    url.push('=');
                    url.push_str(&query_escape(part));
                    sep = '&';
                }
            }
        }
        let timeout = Some(self.client.config().list_timeout);
        let (response, _) = self.client.with_retries(&url, |_| {
            let response =
                self.client
                    .send_method(Method::Get, &url, basic.as_deref(), &[], timeout)?;
            expect_ok(&url, &response)?;
            read_capped(&url, response, MAX_SMALL_BODY)
        })?;
        let bad = |reason| FetchError::BadToken {
            realm: redact_url(realm),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&response).map_err(|_| bad("the answer is not JSON"))?;
        let token = value
            .get("token")
            .or_else(|| value.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("the answer has no token"))?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("the token is not printable ASCII without spaces"));
        }
        tracing::debug!(realm = %redact_url(realm), "bearer token obtained");
        Ok(token.to_owned())
    }
}

/// The key basic credentials are remembered under once a registry asked for them.
const BASIC_KEY: &str = "\0basic";

/// The strings of `value[field]` (absent or null: none).
fn string_array(
    url: &str,
    value: &serde_json::Value,
    field: &str,
) -> Result<Vec<String>, FetchError> {
    let bad = |reason: String| FetchError::RegistryResponse {
        url: url.to_owned(),
        reason,
    };
    match value.get(field) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{field} holds {i}, not a string")))
            })
            .collect(),
        Some(_) => Err(bad(format!("{field} is not an array"))),
    }
}

fn pull_scope(name: &str) -> String {
    format!("repository:{name}:pull")
}

fn expect_ok(url: &str, response: &Response) -> Result<(), FetchError> {
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(FetchError::Status {
            url: url.to_owned(),
            code: response.status,
        })
    }
}

fn announced_digest(url: &str, response: &Response) -> Result<Option<Digest>, FetchError> {
    match response.header("docker-content-digest") {
        None => Ok(None),
        Some(value) => {
            value
                .trim()
                .parse::<Digest>()
                .map(Some)
                .map_err(|e| FetchError::RegistryResponse {
                    url: url.to_owned(),
                    reason: format!("Docker-Content-Digest: {e}"),
                })
        }
    }
}

/// The digest of `bytes` with `algorithm`, lowercase hex.
fn hex_digest(algorithm: DigestAlgorithm, bytes: &[u8]) -> String {
    let mut sha = Sha::new(algorithm);
    sha.update(bytes);
    sha.finish()
}

/// `host`, `host:port`, `[v6]:port`: whether it is a loopback address or `localhost`.
/// Whether `host[:port]` is `localhost` or a loopback address (where plain `http` is allowed).
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `rel="next"` target of a `Link` header, if any.
fn next_link(response: &Response) -> Option<String> {
    let value = response.header("link")?;
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_owned())
    })
}

/// The first Bearer challenge of the response, else a Basic one.
fn parse_challenges(response: &Response) -> Option<Challenge> {
    let mut basic = false;
    for value in response.headers.get_all("www-authenticate") {
        let Ok(text) = value.to_str() else {
            continue;
        };
        match parse_challenge(text) {
            Some(c @ Challenge::Bearer { .. }) => return Some(c),
            Some(Challenge::Basic) => basic = true,
            None => {}
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub(crate) fn parse_challenge(text: &str) -> Option<Challenge> {
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        params.insert(key, value);
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// Percent-encodes a query value (everything but unreserved characters and `:` `/`).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_inside_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:p/r:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:p/r:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Harbor""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge("bearer realm=http://h/t, service=s"),
            Some(Challenge::Bearer {
                realm: "http://h/t".into(),
                service: Some("s".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn registry_is_shared_by_parallel_downloads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Registry>();
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["127.0.0.1:5000", "localhost", "[::1]:5000", "127.1.2.3"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.egi.eu", "10.0.0.1:5000", "[2001:db8::1]:443"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:p/r:pull,push"),
            "repository:p/r:pull%2Cpush"
        );
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
