//! A real OCI registry for tests: the Debian package `docker-registry` (distribution 2.8),
//! started on `127.0.0.1` with a configuration of its own in a temporary directory and killed
//! when the [`Registry`] is dropped.
//!
//! - [`Registry::start`]: anonymous pull and push.
//! - [`Registry::start_tls`]: anonymous over HTTPS with a [`TestTls`] certificate.
//! - [`Registry::start_with_token`]: the bearer-token flow of the distribution spec. The
//!   registry answers `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`; the
//!   realm is a token endpoint served here, in a thread of the test, that checks HTTP Basic
//!   credentials (a "robot account") and returns a JWT signed with an RSA key whose
//!   self-signed certificate the registry trusts (`auth.token.rootcertbundle`, token header
//!   `x5c`), granting the actions asked for in `scope`.
//! - Pushing goes through the distribution push API ([`Registry::push_blob`]: `POST` then
//!   monolithic `PUT ?digest=`; [`Registry::push_manifest`]: `PUT` with the media type), the
//!   way `oras push` does it; [`Registry::push_disk_image`] builds the manifest `oras push`
//!   makes for one file (OCI image manifest 1.1, empty config, `artifactType`).
//!
//! [`registry_binary`] says where the binary is; tests that need it are skipped (and say so)
//! when it is absent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509, X509Name};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::server::TestTls;

/// Where the Debian package puts the registry binary (first match wins).
const BINARIES: &[&str] = &["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"];

/// How long the registry may take to answer `/v2/` after its start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `service` (token audience) of the token-auth configuration.
pub const TOKEN_SERVICE: &str = "vmc-test-registry";

/// How long distribution 2.8 still accepts a token after its `exp` (and before its `nbf`):
/// its `token.Leeway`, 60 s. A token meant to live `L` seconds is minted with
/// `exp = now + L - 60`.
const REGISTRY_LEEWAY_SECS: u64 = 60;

/// How long the endpoint's tokens live unless [`TokenServer::set_token_lifetime`] says
/// otherwise.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The token issuer the registry trusts.
const TOKEN_ISSUER: &str = "vmc-testkit-token-issuer";

/// The media type `oras push` gives the empty config of an artifact.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The OCI image manifest media type.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The registry binary, if installed.
pub fn registry_binary() -> Option<PathBuf> {
    BINARIES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// `registry`, or `None` when the binary is absent (the test is then reported skipped, see
/// [`crate::skip`]); when `ci` (the caller passes whether `CI=true`), an absent binary fails
/// instead, because CI installs it (contrib/setup-debian.sh).
pub fn or_skip(registry: Option<Registry>, ci: bool) -> Option<Registry> {
    if registry.is_none() {
        assert!(
            !ci,
            "docker-registry is not installed (contrib/setup-debian.sh installs it)"
        );
        crate::skip::skipped(
            "docker-registry is not installed (apt-get install docker-registry; \
             contrib/setup-debian.sh does)",
        );
    }
    registry
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex_lower(&openssl::sha::sha256(data)))
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A robot account of the token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// User name.
    pub username: String,
    /// Password (or robot secret).
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A running `docker-registry` (killed on drop) with its temporary directory.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    scheme: &'static str,
    dir: TempDir,
    token: Option<TokenServer>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addr", &self.addr)
            .field("dir", &self.dir.path())
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Starts an anonymous registry; `None` when the binary is not installed. Panics when it
    /// is installed but does not start.
    pub fn start() -> Option<Registry> {
        let binary = registry_binary()?;
        Some(Self::launch(&binary, None, None))
    }

    /// Starts a registry behind the bearer-token flow, whose token endpoint accepts
    /// `account` (and, when `anonymous_pull`, gives pull-only tokens without credentials).
    /// `None` when the binary is not installed.
    pub fn start_with_token(account: Account, anonymous_pull: bool) -> Option<Registry> {
        let binary = registry_binary()?;
        let token = TokenServer::start(account, anonymous_pull);
        Some(Self::launch(&binary, Some(token), None))
    }

    /// Starts an anonymous registry serving HTTPS with `tls`'s server certificate (clients
    /// must trust `tls.ca_cert`). `None` when the binary is not installed.
    pub fn start_tls(tls: &TestTls) -> Option<Registry> {
        let binary = registry_binary()?;
        Some(Self::launch(&binary, None, Some(tls)))
    }

    fn launch(binary: &Path, token: Option<TokenServer>, tls: Option<&TestTls>) -> Registry {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("registry temp dir: {e}"));
        let mut agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(120)));
        let mut tls_files = None;
        if let Some(tls) = tls {
            let write = |name: &str, pem: Result<Vec<u8>, openssl::error::ErrorStack>| {
                let path = dir.path().join(name);
                let pem = pem.unwrap_or_else(|e| panic!("registry tls {name}: {e}"));
                std::fs::write(&path, pem).unwrap_or_else(|e| panic!("registry tls {name}: {e}"));
                path
            };
            let cert = write("tls-cert.pem", tls.cert.to_pem());
            let key = write("tls-key.pem", tls.key.private_key_to_pem_pkcs8());
            tls_files = Some((cert, key));
            let ca = tls
                .ca_cert
                .to_der()
                .unwrap_or_else(|e| panic!("registry tls ca: {e}"));
            let roots = vec![ureq::tls::Certificate::from_der(&ca).to_owned()];
            agent = agent.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                    .build(),
            );
        }
        let agent = agent.build().new_agent();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut last_log = String::new();
        // The port is picked by binding :0 and released before the registry binds it: another
        // process may take it in between, so a failed start is tried again with a new port.
        for _ in 0..3 {
            let port = crate::glance::free_port().unwrap_or_else(|e| panic!("no free port: {e}"));
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let config = dir.path().join("config.yml");
            let yaml = config_yaml(dir.path(), addr, token.as_ref(), tls_files.as_ref());
            std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("registry config: {e}"));
            let log_path = dir.path().join("registry.log");
            let log =
                std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("registry log: {e}"));
            let log2 = log
                .try_clone()
                .unwrap_or_else(|e| panic!("registry log: {e}"));
            let mut child = Command::new(binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let deadline = Instant::now() + START_TIMEOUT;
            let ready = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    let url = format!("{scheme}://{addr}/v2/");
                    if agent.get(&url).call().is_ok() {
                        break true;
                    }
                }
                if Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if ready {
                return Registry {
                    child,
                    addr,
                    scheme,
                    dir,
                    token,
                    agent,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// `127.0.0.1:port` of the registry.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:port`, the registry part of an `oci://` reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:port` (`https` when started with [`Registry::start_tls`]).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The file the registry stores blob `digest` (`sha256:<hex>`) in, under its filesystem
    /// storage (distribution's layout): tests overwrite it to make a real registry serve
    /// bytes other than the digest it names.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or_default())
            .join(hex)
            .join("data")
    }

    /// The token endpoint, when the registry uses token auth.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// The `Authorization` header for pushes: none, or a push-and-pull token for `repository`
    /// minted directly.
    fn push_auth(&self, repository: &str) -> Option<String> {
        self.token.as_ref().map(|t| {
            let access = vec![json!({"type": "repository", "name": repository,
                "actions": ["pull", "push"]})];
            format!("Bearer {}", t.mint("pusher", access))
        })
    }

    /// Uploads `data` as a blob of `repository` (`POST` an upload, then `PUT ?digest=`).
    /// Returns its digest. Panics on failure.
    pub fn push_blob(&self, repository: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let auth = self.push_auth(repository);
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base_url());
        let mut post = self.agent.post(&url);
        if let Some(a) = &auth {
            post = post.header("Authorization", a.as_str());
        }
        let response = post
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(response.status().as_u16(), 202, "POST {url}");
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("POST {url}: no Location"))
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base_url())
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={digest}");
        let mut put = self
            .agent
            .put(&put_url)
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = &auth {
            put = put.header("Authorization", a.as_str());
        }
        let response = put
            .send(data)
            .unwrap_or_else(|e| panic!("PUT blob of {repository}: {e}"));
        assert_eq!(
            response.status().as_u16(),
            201,
            "PUT blob {digest} of {repository}"
        );
        digest
    }

    /// Puts `body` as the manifest `reference` (a tag or a digest) of `repository`, with
    /// `media_type` as its `Content-Type`. Returns the manifest's digest. Panics on failure.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url());
        let mut put = self.agent.put(&url).header("Content-Type", media_type);
        if let Some(a) = self.push_auth(repository) {
            put = put.header("Authorization", a.as_str());
        }
        let mut response = put.send(body).unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 201, "PUT {url}: {text}");
        sha256_digest(body)
    }

    /// Deletes the manifest `digest` of `repository` (so that its tags disappear).
    pub fn delete_manifest(&self, repository: &str, digest: &str) {
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.base_url());
        let mut delete = self.agent.delete(&url);
        if let Some(a) = self.push_auth(repository) {
            delete = delete.header("Authorization", a.as_str());
        }
        let response = delete
            .call()
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
        assert_eq!(response.status().as_u16(), 202, "DELETE {url}");
    }

    /// Pushes a disk image the way `oras push --annotation-file` does for one file: the file
    /// as the only layer (`layer_media_type`, annotated with `org.opencontainers.image.title`
    /// and `layer_annotations`), the empty config, `artifactType`, `manifest_annotations`.
    /// Returns the pushed manifest (bytes and digest).
    pub fn push_disk_image(&self, image: &DiskImage<'_>) -> PushedManifest {
        let layer_digest = self.push_blob(image.repository, image.data);
        let config = b"{}";
        let config_digest = self.push_blob(image.repository, config);
        let mut layer_annotations = serde_json::Map::new();
        layer_annotations.insert(
            "org.opencontainers.image.title".into(),
            Value::String(image.file_name.to_owned()),
        );
        for (k, v) in image.layer_annotations {
            layer_annotations.insert((*k).to_owned(), Value::String((*v).to_owned()));
        }
        let mut manifest_annotations = serde_json::Map::new();
        for (k, v) in image.manifest_annotations {
            manifest_annotations.insert((*k).to_owned(), Value::String((*v).to_owned()));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "artifactType": "application/vnd.unknown.artifact.v1",
            "config": {
                "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": config.len(),
                "data": "e30="
            },
            "layers": [{
                "mediaType": image.layer_media_type,
                "digest": layer_digest,
                "size": image.data.len(),
                "annotations": layer_annotations
            }],
            "annotations": manifest_annotations
        });
        let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let digest =
            self.push_manifest(image.repository, image.tag, OCI_MANIFEST_MEDIA_TYPE, &bytes);
        PushedManifest {
            digest,
            bytes,
            layer_digest,
        }
    }

    /// The registry's own log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One file to push with [`Registry::push_disk_image`].
#[derive(Debug, Clone, Copy)]
pub struct DiskImage<'a> {
    /// Repository, e.g. `vo.example/ubuntu`.
    pub repository: &'a str,
    /// Tag.
    pub tag: &'a str,
    /// The file's bytes.
    pub data: &'a [u8],
    /// Its name (`org.opencontainers.image.title`).
    pub file_name: &'a str,
    /// The layer's media type (EGI: `application/x-qemu-disk`).
    pub layer_media_type: &'a str,
    /// Further annotations of the layer (EGI puts the Glance properties there).
    pub layer_annotations: &'a [(&'a str, &'a str)],
    /// Annotations of the manifest.
    pub manifest_annotations: &'a [(&'a str, &'a str)],
}

/// A manifest pushed by [`Registry::push_disk_image`].
#[derive(Debug, Clone)]
pub struct PushedManifest {
    /// `sha256:…` of the manifest.
    pub digest: String,
    /// The manifest as pushed.
    pub bytes: Vec<u8>,
    /// `sha256:…` of the layer.
    pub layer_digest: String,
}

fn config_yaml(
    dir: &Path,
    addr: SocketAddr,
    token: Option<&TokenServer>,
    tls: Option<&(PathBuf, PathBuf)>,
) -> String {
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: vmc-testkit-not-a-secret\n",
        data = dir.join("data").display(),
    );
    if let Some((cert, key)) = tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    if let Some(token) = token {
        let bundle = dir.join("token-ca.pem");
        std::fs::write(&bundle, &token.cert_pem)
            .unwrap_or_else(|e| panic!("token cert bundle: {e}"));
        yaml.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    \
             issuer: {TOKEN_ISSUER}\n    rootcertbundle: {bundle}\n",
            realm = token.realm(),
            bundle = bundle.display(),
        ));
    }
    yaml
}

/// A token endpoint for the bearer flow (a thread on `127.0.0.1:0`, stopped on drop).
pub struct TokenServer {
    addr: SocketAddr,
    key: PKey<Private>,
    cert_der: Vec<u8>,
    cert_pem: Vec<u8>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<TokenRequest>>>,
    policy: Arc<TokenPolicy>,
    thread: Option<JoinHandle<()>>,
}

/// What the endpoint does now (changed by the test while clients use it).
struct TokenPolicy {
    /// Lifetime of the tokens it issues, in seconds.
    lifetime: AtomicU64,
    /// How many more tokens it issues before it refuses every request as if the credentials
    /// were wrong (an account disabled); `u64::MAX`: no limit.
    remaining: AtomicU64,
}

/// A request the token endpoint received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `scope` parameters asked for.
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// Whether Basic credentials came with it, and whether they were right.
    pub authenticated: Option<bool>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    fn start(account: Account, anonymous_pull: bool) -> TokenServer {
        let (key, cert) = token_key_and_cert().unwrap_or_else(|e| panic!("token key: {e}"));
        let cert_der = cert.to_der().unwrap_or_default();
        let cert_pem = cert.to_pem().unwrap_or_default();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("token server bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("token server addr: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("token server: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let policy = Arc::new(TokenPolicy {
            lifetime: AtomicU64::new(DEFAULT_TOKEN_LIFETIME.as_secs()),
            remaining: AtomicU64::new(u64::MAX),
        });
        let minter = Minter {
            key: key.clone(),
            cert_der: cert_der.clone(),
        };
        let thread = {
            let (stop, requests, log) = (stop.clone(), requests.clone(), log.clone());
            let policy = policy.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            let _ = serve_token(
                                stream,
                                &minter,
                                &account,
                                anonymous_pull,
                                &log,
                                &policy,
                            );
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TokenServer {
            addr,
            key,
            cert_der,
            cert_pem,
            stop,
            requests,
            log,
            policy,
            thread: Some(thread),
        }
    }

    /// Tokens issued from now on live `lifetime` (whole seconds) by the registry's clock: a
    /// client that keeps one longer gets `401` with a fresh `Bearer` challenge. The default
    /// is 300 s.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.policy
            .lifetime
            .store(lifetime.as_secs(), Ordering::Relaxed);
    }

    /// Issue `tokens` more tokens, then refuse every request (`401`, as for wrong
    /// credentials: the account was disabled); `None` lifts the limit.
    pub fn limit_tokens(&self, tokens: Option<u64>) {
        self.policy
            .remaining
            .store(tokens.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The realm URL the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Connections the endpoint accepted so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// The requests received so far.
    pub fn request_log(&self) -> Vec<TokenRequest> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A token for `subject` granting `access` (`[{type, name, actions}]`).
    fn mint(&self, subject: &str, access: Vec<Value>) -> String {
        Minter {
            key: self.key.clone(),
            cert_der: self.cert_der.clone(),
        }
        .mint(subject, access, DEFAULT_TOKEN_LIFETIME.as_secs())
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Minter {
    key: PKey<Private>,
    cert_der: Vec<u8>,
}

impl Minter {
    /// A JWT as distribution 2.8 verifies it: RS256, `x5c` with the trusted certificate,
    /// issuer, audience (the service), `exp`/`nbf`, `access`; accepted for `lifetime`
    /// seconds from now (`exp` set [`REGISTRY_LEEWAY_SECS`] earlier).
    fn mint(&self, subject: &str, access: Vec<Value>, lifetime: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = json!({
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [openssl::base64::encode_block(&self.cert_der)],
        });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": (now + lifetime).saturating_sub(REGISTRY_LEEWAY_SECS),
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": format!("{now}-{}", std::process::id()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let signature = Signer::new(MessageDigest::sha256(), &self.key)
            .and_then(|mut s| {
                s.update(signing_input.as_bytes())?;
                s.sign_to_vec()
            })
            .unwrap_or_else(|e| panic!("token signature: {e}"));
        format!("{signing_input}.{}", base64url(&signature))
    }
}

fn base64url(data: &[u8]) -> String {
    openssl::base64::encode_block(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fn token_key_and_cert() -> Result<(PKey<Private>, X509), openssl::error::ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let mut name = X509Name::builder()?;
    name.append_entry_by_text("CN", "vmc testkit token signer")?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = openssl::bn::BigNum::from_u32(1)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::from_unix(now - 3600)?;
    let not_after = Asn1Time::from_unix(now + 86_400)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((key, b.build()))
}

/// Answers one token request: `GET /token?service=…&scope=…` with optional Basic credentials.
fn serve_token(
    stream: TcpStream,
    minter: &Minter,
    account: &Account,
    anonymous_pull: bool,
    log: &Mutex<Vec<TokenRequest>>,
    policy: &TokenPolicy,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "scope" => scopes.push(v),
            "service" => service = Some(v),
            _ => {}
        }
    }
    let expected = format!(
        "Basic {}",
        openssl::base64::encode_block(
            format!("{}:{}", account.username, account.password).as_bytes()
        )
    );
    let authenticated = authorization.as_ref().map(|a| *a == expected);
    let refusing = policy
        .remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
            0 => None,
            u64::MAX => Some(u64::MAX),
            n => Some(n - 1),
        })
        .is_err();
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(TokenRequest {
            scopes: scopes.clone(),
            service: service.clone(),
            authenticated,
        });
    let mut out = stream;
    let allowed: &[&str] = match authenticated {
        Some(true) if !refusing => &["pull", "push", "*"],
        None if anonymous_pull && !refusing => &["pull"],
        _ => {
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            return write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
                 WWW-Authenticate: Basic realm=\"vmc-testkit\"\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    };
    // `repository:NAME:ACTIONS` (also `registry:catalog:*`).
    let mut access = Vec::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (name, actions) = match parts.next() {
            Some(actions) => (rest.to_owned(), actions),
            None => continue,
        };
        let granted: Vec<&str> = actions.split(',').filter(|a| allowed.contains(a)).collect();
        access.push(json!({"type": kind, "name": name, "actions": granted}));
    }
    let subject = match authenticated {
        Some(true) => account.username.as_str(),
        _ => "anonymous",
    };
    let lifetime = policy.lifetime.load(Ordering::Relaxed);
    let token = minter.mint(subject, access, lifetime);
    let body = json!({"token": token, "access_token": token, "expires_in": lifetime}).to_string();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    // Drain nothing more: the connection closes.
    let _ = reader.read(&mut [0u8; 0]);
    out.flush()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn registry_or_skip(start: impl FnOnce() -> Option<Registry>) -> Option<Registry> {
        or_skip(start(), std::env::var("CI").as_deref() == Ok("true"))
    }

    fn get(url: &str, auth: Option<&str>) -> (u16, String, String) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        // distribution 2.8 answers 404 for an OCI manifest the client does not accept.
        let mut req = agent.get(url).header("Accept", OCI_MANIFEST_MEDIA_TYPE);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = resp.status().as_u16();
        (status, challenge, resp.body_mut().read_to_string().unwrap())
    }

    #[test]
    fn anonymous_registry_takes_a_pushed_disk_image() {
        let Some(registry) = registry_or_skip(Registry::start) else {
            return;
        };
        let pushed = registry.push_disk_image(&DiskImage {
            repository: "vo.example/tiny",
            tag: "1.0",
            data: b"not really qcow2",
            file_name: "tiny.qcow2",
            layer_media_type: "application/x-qemu-disk",
            layer_annotations: &[("org.openstack.glance.os_distro", "ubuntu")],
            manifest_annotations: &[],
        });
        let (status, _, body) = get(
            &format!("{}/v2/vo.example/tiny/tags/list", registry.base_url()),
            None,
        );
        assert_eq!(status, 200, "{}", registry.log());
        assert!(body.contains("\"1.0\""), "{body}");
        let (status, _, body) = get(
            &format!(
                "{}/v2/vo.example/tiny/manifests/{}",
                registry.base_url(),
                pushed.digest
            ),
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(body.as_bytes(), pushed.bytes.as_slice());
    }

    #[test]
    fn token_registry_challenges_and_accepts_tokens_from_the_realm() {
        let account = Account {
            username: "robot$vo".into(),
            password: "s3cret".into(),
        };
        let Some(registry) =
            registry_or_skip(|| Registry::start_with_token(account.clone(), false))
        else {
            return;
        };
        registry.push_blob("vo.example/x", b"abc");
        let url = format!("{}/v2/vo.example/x/tags/list", registry.base_url());
        let (status, challenge, _) = get(&url, None);
        assert_eq!(status, 401);
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(
            challenge.contains("scope=\"repository:vo.example/x:pull\""),
            "{challenge}"
        );
        let realm = registry.token_server().unwrap().realm();
        // Wrong credentials: no token.
        let bad = format!("Basic {}", openssl::base64::encode_block(b"robot$vo:wrong"));
        let (status, _, _) = get(&format!("{realm}?service={TOKEN_SERVICE}"), Some(&bad));
        assert_eq!(status, 401);
        let good = format!(
            "Basic {}",
            openssl::base64::encode_block(b"robot$vo:s3cret")
        );
        let (status, _, body) = get(
            &format!("{realm}?service={TOKEN_SERVICE}&scope=repository:vo.example/x:pull"),
            Some(&good),
        );
        assert_eq!(status, 200);
        let token: Value = serde_json::from_str(&body).unwrap();
        let token = token["token"].as_str().unwrap();
        // No manifest was pushed, so the repository has no tags: 404 NAME_UNKNOWN or 200.
        let (status, _, body) = get(&url, Some(&format!("Bearer {token}")));
        assert!(
            status == 200 || status == 404,
            "{status} {body} {}",
            registry.log()
        );
        assert_ne!(status, 401, "{}", registry.log());
        // A token signed by another key is refused.
        let other = TokenServer::start(account, false);
        let forged = other.mint(
            "x",
            vec![json!({"type": "repository",
            "name": "vo.example/x", "actions": ["pull"]})],
        );
        let (status, _, _) = get(&url, Some(&format!("Bearer {forged}")));
        assert_eq!(status, 401);
    }
}
