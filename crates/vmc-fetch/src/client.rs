//! The HTTP client: one configured `ureq` agent (timeouts, redirects, proxy, TLS roots), the
//! retry loop, and the mapping of the library's errors to [`FetchError`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Body, Proxy, ProxyProtocol};

use crate::config::{ClientConfig, Credentials};
use crate::error::FetchError;
use crate::url::{Target, percent_decode, redact_url};

/// Where operating systems keep their bundle of trusted root certificates (PEM), first match
/// wins: Debian/Ubuntu, RHEL/Fedora (two forms), SUSE, Alpine/BSD.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Longest wait between two attempts, whatever the backoff doubling says.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The HTTP(S) and `file://` client of vmc. Built once from a [`ClientConfig`], cheap to
/// clone and shared by parallel downloads (`Send + Sync`).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) agent: Agent,
    pub(crate) config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The methods vmc sends (it only reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
}

/// A response whose status was accepted, with its body still to read.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_length: Option<u64>,
    pub(crate) headers: ureq::http::HeaderMap,
    pub(crate) body: Body,
}

impl Response {
    /// A header's value as text, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    /// Builds the client: loads the system roots (when asked) and the extra roots, and
    /// configures the agent. Fails on an unusable proxy or root certificate.
    pub fn new(config: ClientConfig) -> Result<Client, FetchError> {
        let mut roots: Vec<Certificate<'static>> = Vec::new();
        if config.system_roots {
            roots.extend(system_roots()?);
        }
        for cert in &config.extra_roots {
            let der = cert
                .to_der()
                .map_err(|source| FetchError::RootCertificates {
                    what: format!("extra root {:?}", cert.subject_name()),
                    source,
                })?;
            roots.push(Certificate::from_der(&der).to_owned());
        }
        tracing::debug!(roots = roots.len(), "trusted root certificates");
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let proxy = match &config.proxy {
            Some(proxy) => Some(build_proxy(proxy, &config.no_proxy)?),
            None => None,
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(Some(config.connect_timeout))
            .timeout_connect(Some(config.connect_timeout))
            .timeout_send_request(Some(config.read_timeout))
            .timeout_recv_response(Some(config.read_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .timeout_per_write(Some(config.read_timeout))
            // Redirects are followed here (see `send`), so that credentials only ever go to
            // the origin (scheme, host and port) they were given for.
            .max_redirects(0)
            .user_agent(config.user_agent.as_str())
            // Images are taken byte for byte: never ask for, nor decode, a content coding.
            .accept_encoding("identity")
            .proxy(proxy)
            .tls_config(tls)
            .input_buffer_size(256 * 1024)
            .build()
            .new_agent();
        Ok(Client {
            inner: Arc::new(Inner { agent, config }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The configured agent (TLS roots, proxy, timeouts, User-Agent; every status comes back
    /// as a response, redirects are not followed), for the other HTTP APIs vmc talks to (the
    /// publisher's Glance and Keystone clients), so that they share this one TLS set-up.
    pub fn agent(&self) -> &Agent {
        &self.inner.agent
    }

    /// Fetches a small document (an image list) into memory. Refuses a body over `max_len`
    /// bytes while reading it (and at once when `Content-Length` says so). The whole request
    /// must finish within [`ClientConfig::list_timeout`]; transient failures are retried.
    pub fn fetch_bytes(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        max_len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        match Target::parse(url)? {
            Target::File { url, path } => read_file_capped(&url, &path, max_len),
            Target::Http {
                url: plain,
                userinfo,
            } => {
                let auth = authorization(credentials, userinfo.as_ref());
                let (bytes, _) = self.with_retries(&plain, |_| {
                    self.fetch_once(&plain, auth.as_deref(), max_len)
                })?;
                Ok(bytes)
            }
        }
    }

    fn fetch_once(
        &self,
        url: &str,
        auth: Option<&str>,
        max_len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let response = self.send(url, auth, &[], Some(self.inner.config.list_timeout))?;
        if !(200..300).contains(&response.status) {
            return Err(FetchError::Status {
                url: url.to_owned(),
                code: response.status,
            });
        }
        read_capped(url, response, max_len)
    }

    /// Sends a GET with the given extra headers, following up to
    /// [`ClientConfig::max_redirects`] redirects. The `Authorization` header goes only to the
    /// origin (scheme, host, port) of `url`; a redirect elsewhere drops it, and a redirect to
    /// anything but `http`/`https` is refused. Any final status is returned (the caller
    /// decides). `overall_timeout` covers all the hops.
    pub(crate) fn send(
        &self,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, String)],
        overall_timeout: Option<Duration>,
    ) -> Result<Response, FetchError> {
        self.send_method(Method::Get, url, auth, headers, overall_timeout)
    }

    /// [`Client::send`] with the method given (`HEAD` asks a registry for a manifest's
    /// digest or a blob's size without the body).
    pub(crate) fn send_method(
        &self,
        method: Method,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, String)],
        overall_timeout: Option<Duration>,
    ) -> Result<Response, FetchError> {
        let deadline = overall_timeout.map(|t| Instant::now() + t);
        let mut current = url.to_owned();
        let mut auth = auth;
        let mut hops = 0u32;
        loop {
            let remaining = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(FetchError::Timeout { url: current });
                    }
                    Some(left)
                }
                None => None,
            };
            let response = self.call(method, &current, auth, headers, remaining)?;
            if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(location) = response.header("location").map(str::to_owned) else {
                return Ok(response);
            };
            if hops >= self.inner.config.max_redirects {
                return Err(FetchError::TooManyRedirects {
                    url: url.to_owned(),
                });
            }
            hops += 1;
            let next = resolve_location(&current, &location);
            let next = match Target::parse(&next)? {
                Target::Http { url: next, .. } => next,
                Target::File { url: next, .. } => {
                    return Err(FetchError::UnsupportedScheme {
                        url: next,
                        scheme: "file".to_owned(),
                    });
                }
            };
            if auth.is_some() && origin(&next) != origin(&current) {
                tracing::debug!(from = %current, to = %next, "redirect to another origin: credentials dropped");
                auth = None;
            }
            tracing::debug!(from = %current, to = %next, status = response.status, "redirect");
            current = next;
        }
    }

    /// One request, no redirects followed.
    fn call(
        &self,
        method: Method,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, String)],
        timeout: Option<Duration>,
    ) -> Result<Response, FetchError> {
        let mut request = match method {
            Method::Get => self.inner.agent.get(url),
            Method::Head => self.inner.agent.head(url),
        };
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        if let Some(timeout) = timeout {
            request = request.config().timeout_global(Some(timeout)).build();
        }
        let response = request.call().map_err(|e| map_ureq_error(url, e))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        tracing::debug!(url, status, "response");
        Ok(Response {
            status,
            content_length: body.content_length(),
            headers: parts.headers,
            body,
        })
    }

    /// Runs `op` (given the 1-based attempt number) until it succeeds, fails for good, or the
    /// retries are spent, sleeping `backoff`, `2 × backoff`, … between attempts. Returns the
    /// value and the number of attempts made.
    pub(crate) fn with_retries<T>(
        &self,
        url: &str,
        mut op: impl FnMut(u32) -> Result<T, FetchError>,
    ) -> Result<(T, u32), FetchError> {
        let config = &self.inner.config;
        let mut attempt: u32 = 1;
        loop {
            match op(attempt) {
                Ok(value) => return Ok((value, attempt)),
                Err(error) if error.is_transient() && attempt <= config.retries => {
                    let delay = config
                        .backoff
                        .checked_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
                        .unwrap_or(MAX_BACKOFF)
                        .min(MAX_BACKOFF);
                    tracing::info!(
                        url,
                        attempt,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %error,
                        "transient failure, retrying"
                    );
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Reads a small body, refusing more than `max_len` bytes while reading it (and at once when
/// `Content-Length` says so), and a body shorter than its `Content-Length`.
pub(crate) fn read_capped(
    url: &str,
    response: Response,
    max_len: u64,
) -> Result<Vec<u8>, FetchError> {
    if response.content_length.is_some_and(|n| n > max_len) {
        return Err(FetchError::TooLarge {
            url: url.to_owned(),
            limit: max_len,
        });
    }
    let reserve = response
        .content_length
        .unwrap_or(0)
        .min(max_len)
        .min(16 << 20);
    let mut bytes = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    let mut reader = response.body.into_reader().take(max_len.saturating_add(1));
    if let Err(error) = reader.read_to_end(&mut bytes) {
        return Err(map_body_error(
            url,
            error,
            bytes.len() as u64,
            response.content_length,
        ));
    }
    if bytes.len() as u64 > max_len {
        return Err(FetchError::TooLarge {
            url: url.to_owned(),
            limit: max_len,
        });
    }
    if let Some(expected) = response.content_length
        && (bytes.len() as u64) < expected
    {
        return Err(FetchError::Truncated {
            url: url.to_owned(),
            received: bytes.len() as u64,
            expected,
        });
    }
    Ok(bytes)
}

/// The `Authorization` header: explicit credentials win over the URL's userinfo.
pub(crate) fn authorization(
    credentials: Option<&Credentials>,
    userinfo: Option<&(String, String)>,
) -> Option<String> {
    match (credentials, userinfo) {
        (Some(c), _) => Some(c.header_value()),
        (None, Some((username, password))) => Some(
            Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            }
            .header_value(),
        ),
        (None, None) => None,
    }
}

/// `scheme://host:port` of an `http(s)` URL without userinfo, lowercase, with the default
/// port made explicit.
pub(crate) fn origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host.to_owned(), port.parse().ok()?),
        _ => (authority, default),
    };
    Some((scheme, host, port))
}

/// Resolves a `Location` value against the URL it came from (absolute, scheme-relative,
/// absolute-path and relative forms).
pub(crate) fn resolve_location(base: &str, location: &str) -> String {
    let location = location.trim();
    let is_absolute = location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if is_absolute {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if location.starts_with('?') {
        return format!("{scheme}://{authority}{path}{location}");
    }
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{scheme}://{authority}{dir}{location}")
}

/// The operating system's trusted roots, from the first bundle found.
fn system_roots() -> Result<Vec<Certificate<'static>>, FetchError> {
    for path in SYSTEM_BUNDLES {
        let Ok(pem) = std::fs::read(path) else {
            continue;
        };
        let certs = X509::stack_from_pem(&pem).map_err(|source| FetchError::RootCertificates {
            what: (*path).to_owned(),
            source,
        })?;
        let mut out = Vec::with_capacity(certs.len());
        for cert in certs {
            if let Ok(der) = cert.to_der() {
                out.push(Certificate::from_der(&der).to_owned());
            }
        }
        tracing::debug!(path, count = out.len(), "system root certificates");
        return Ok(out);
    }
    tracing::warn!("no system root certificate bundle found");
    Ok(Vec::new())
}

/// The certificates of the PEM bundle at `path` (a site's CA bundle for a registry, as
/// `curl --cacert` takes it): every `CERTIFICATE` block, at least one.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<X509>, FetchError> {
    let pem = std::fs::read(path).map_err(|source| FetchError::CaBundleUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let certs = X509::stack_from_pem(&pem).map_err(|source| FetchError::RootCertificates {
        what: path.display().to_string(),
        source,
    })?;
    if certs.is_empty() {
        return Err(FetchError::CaBundleEmpty {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Builds the agent's proxy from `http[s]://[user:password@]host[:port]`.
fn build_proxy(proxy: &str, no_proxy: &[String]) -> Result<Proxy, FetchError> {
    let invalid = |source| FetchError::InvalidProxy {
        proxy: redact_url(proxy),
        source,
    };
    let (scheme, rest) = match proxy.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), proxy),
    };
    let protocol = match scheme.as_str() {
        "http" => ProxyProtocol::Http,
        "https" => ProxyProtocol::Https,
        _ => return Err(invalid(None)),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((info, hostport)) => (Some(info), hostport),
        None => (None, authority),
    };
    // "[v6]:port" or "host:port" or "host".
    let (host, port) = if let Some(end) = hostport.find(']').filter(|_| hostport.starts_with('[')) {
        let host = &hostport[..=end];
        let port = hostport[end + 1..].strip_prefix(':');
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(None));
    }
    let mut builder = Proxy::builder(protocol).host(host);
    if let Some(port) = port {
        let port: u16 = port.parse().map_err(|_| invalid(None))?;
        builder = builder.port(port);
    }
    if let Some(info) = userinfo {
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        let user = percent_decode(user).ok_or_else(|| invalid(None))?;
        let password = percent_decode(password).ok_or_else(|| invalid(None))?;
        builder = builder.username(&user);
        if !password.is_empty() {
            builder = builder.password(&password);
        }
    }
    for entry in no_proxy {
        builder = builder.no_proxy(entry);
    }
    builder.build().map_err(|e| invalid(Some(e)))
}

/// Reads a local file for `fetch_bytes`, refusing more than `max_len` bytes.
fn read_file_capped(url: &str, path: &Path, max_len: u64) -> Result<Vec<u8>, FetchError> {
    let io_err = |source| FetchError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > max_len {
        return Err(FetchError::TooLarge {
            url: url.to_owned(),
            limit: max_len,
        });
    }
    Ok(bytes)
}

/// Maps an error of the HTTP library (request phase) to a [`FetchError`].
pub(crate) fn map_ureq_error(url: &str, error: ureq::Error) -> FetchError {
    let url = url.to_owned();
    match error {
        ureq::Error::Timeout(_) => FetchError::Timeout { url },
        ureq::Error::Io(io) => map_io_error(url, io),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            FetchError::Connect { url, source: error }
        }
        ureq::Error::TooManyRedirects => FetchError::TooManyRedirects { url },
        ureq::Error::NativeTls(_)
        | ureq::Error::Tls(_)
        | ureq::Error::Der(_)
        | ureq::Error::Pem(_) => FetchError::Tls { url, source: error },
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => {
            FetchError::Protocol { url, source: error }
        }
        ureq::Error::BadUri(_) => FetchError::InvalidUrl {
            url,
            reason: "the HTTP library cannot use it",
        },
        ureq::Error::BodyExceedsLimit(limit) => FetchError::TooLarge { url, limit },
        ureq::Error::InvalidProxyUrl => FetchError::InvalidProxy {
            proxy: String::new(),
            source: Some(error),
        },
        other => FetchError::Http { url, source: other },
    }
}

/// Maps a socket-level error to a [`FetchError`].
fn map_io_error(url: String, io: io::Error) -> FetchError {
    use io::ErrorKind as K;
    match io.kind() {
        K::TimedOut | K::WouldBlock => FetchError::Timeout { url },
        K::ConnectionRefused
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => FetchError::Connect {
            url,
            source: ureq::Error::Io(io),
        },
        _ => FetchError::Network { url, source: io },
    }
}

/// Maps an error from reading a body, after `received` bytes of a body announced as
/// `expected` bytes (when known).
pub(crate) fn map_body_error(
    url: &str,
    error: io::Error,
    received: u64,
    expected: Option<u64>,
) -> FetchError {
    match ureq::Error::from(error) {
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => FetchError::Truncated {
            url: url.to_owned(),
            received,
            expected: expected.unwrap_or(received),
        },
        other => map_ureq_error(url, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = "https://h.example:8443/a/b/list?x=1";
        assert_eq!(resolve_location(base, "http://o/x"), "http://o/x");
        assert_eq!(resolve_location(base, "//cdn/x"), "https://cdn/x");
        assert_eq!(
            resolve_location(base, "/root"),
            "https://h.example:8443/root"
        );
        assert_eq!(resolve_location(base, "c"), "https://h.example:8443/a/b/c");
        assert_eq!(
            resolve_location(base, "?y=2"),
            "https://h.example:8443/a/b/list?y=2"
        );
        assert_eq!(resolve_location("http://h", "c"), "http://h/c");
    }

    #[test]
    fn origins_include_scheme_and_port() {
        assert_eq!(origin("http://H:80/x"), origin("http://h/y"));
        assert_ne!(origin("http://h/x"), origin("https://h/x"));
        assert_ne!(origin("http://h:1/x"), origin("http://h:2/x"));
        assert_eq!(
            origin("https://[::1]/x"),
            Some(("https".into(), "[::1]".into(), 443))
        );
        assert_eq!(
            origin("https://[::1]:8443/x"),
            Some(("https".into(), "[::1]".into(), 8443))
        );
    }
}
