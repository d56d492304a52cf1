//! The client's configuration (built once, then frozen) and per-request credentials.

use std::fmt;
use std::time::Duration;

use openssl::x509::X509;

use crate::url::redact_url;

/// The User-Agent sent by default: `vmc/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("vmc/", env!("CARGO_PKG_VERSION"));

/// Everything a [`crate::Client`] needs, given once when it is built.
///
/// The library never reads the environment: the command line fills [`ClientConfig::proxy`]
/// (for instance with [`ClientConfig::with_proxy_from_env_vars`]) and the extra roots (the
/// site's CA directory).
#[derive(Clone)]
pub struct ClientConfig {
    /// Limit for establishing a connection (name resolution, TCP, proxy, TLS handshake).
    pub connect_timeout: Duration,
    /// Limit for each read from the server: a server that sends nothing for this long is a
    /// timeout (a transient failure, so the download is retried).
    pub read_timeout: Duration,
    /// Overall limit for one [`crate::Client::fetch_bytes`] request, body included.
    pub list_timeout: Duration,
    /// Redirects followed at most; one more is [`crate::FetchError::TooManyRedirects`].
    pub max_redirects: u32,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// An HTTP(S) proxy for every request, as `http://[user:password@]host:port`; `None` for
    /// direct connections.
    pub proxy: Option<String>,
    /// Hosts reached without the proxy (`no_proxy` syntax: `host`, `.domain`, `*.domain`, `*`).
    pub no_proxy: Vec<String>,
    /// Whether to trust the operating system's root certificates (the usual CA bundle).
    pub system_roots: bool,
    /// Further trusted root certificates, e.g. the IGTF CAs of the site's CA directory.
    pub extra_roots: Vec<X509>,
    /// How often a transient failure is retried (so at most `retries + 1` attempts).
    pub retries: u32,
    /// Delay before the first retry, doubled for each further one.
    pub backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            list_timeout: Duration::from_secs(120),
            max_redirects: 5,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            proxy: None,
            no_proxy: Vec::new(),
            system_roots: true,
            extra_roots: Vec::new(),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

impl ClientConfig {
    /// Sets [`proxy`](Self::proxy) and [`no_proxy`](Self::no_proxy) from the usual environment
    /// variables, read through `get` (the caller owns the environment; pass
    /// `|k| std::env::var(k).ok()`).
    ///
    /// One proxy serves every request: the first non-empty of `https_proxy`, `HTTPS_PROXY`,
    /// `all_proxy`, `ALL_PROXY`, `http_proxy`, `HTTP_PROXY` (image servers are mostly
    /// `https`). `no_proxy` / `NO_PROXY` is a comma-separated list of hosts.
    #[must_use]
    pub fn with_proxy_from_env_vars(mut self, get: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        self.proxy = [
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "http_proxy",
            "HTTP_PROXY",
        ]
        .iter()
        .find_map(|name| non_empty(name))
        .map(|v| v.trim().to_owned());
        self.no_proxy = non_empty("no_proxy")
            .or_else(|| non_empty("NO_PROXY"))
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        self
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subjects: Vec<String> = self
            .extra_roots
            .iter()
            .map(|c| format!("{:?}", c.subject_name()))
            .collect();
        f.debug_struct("ClientConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("list_timeout", &self.list_timeout)
            .field("max_redirects", &self.max_redirects)
            .field("user_agent", &self.user_agent)
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .field("no_proxy", &self.no_proxy)
            .field("system_roots", &self.system_roots)
            .field("extra_roots", &subjects)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Credentials sent with one request. Their `Debug` form never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic authentication (also what a URL's `user:password@` userinfo means; EGI
    /// AppDB's private lists use `TOKEN:x-oauth-basic`).
    Basic {
        /// The user name (sometimes itself a token, so treated as secret too).
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token (`Authorization: Bearer …`).
    Bearer(String),
}

impl Credentials {
    /// The `Authorization` header value.
    pub(crate) fn header_value(&self) -> String {
        match self {
            Credentials::Basic { username, password } => {
                format!(
                    "Basic {}",
                    base64(format!("{username}:{password}").as_bytes())
                )
            }
            Credentials::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { .. } => f.write_str("Credentials::Basic(<redacted>)"),
            Credentials::Bearer(_) => f.write_str("Credentials::Bearer(<redacted>)"),
        }
    }
}

/// Standard base64 with padding (RFC 4648), for the Basic `Authorization` header.
fn base64(input: &[u8]) -> String {
    openssl::base64::encode_block(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        let basic = Credentials::Basic {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(basic.header_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn debug_forms_hide_secrets() {
        let basic = Credentials::Basic {
            username: "TOKEN123".into(),
            password: "x-oauth-basic".into(),
        };
        let bearer = Credentials::Bearer("s3cr3t".into());
        let shown = format!("{basic:?} {bearer:?}");
        assert!(!shown.contains("TOKEN123"));
        assert!(!shown.contains("x-oauth-basic"));
        assert!(!shown.contains("s3cr3t"));
        let config = ClientConfig {
            proxy: Some("http://puser:ppass@proxy:3128".into()),
            ..ClientConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("proxy:3128"));
        assert!(!shown.contains("ppass"));
    }

    #[test]
    fn proxy_from_env_vars_prefers_https_proxy_and_splits_no_proxy() {
        let vars = |k: &str| match k {
            "http_proxy" => Some("http://plain:3128".to_owned()),
            "https_proxy" => Some("  ".to_owned()),
            "HTTPS_PROXY" => Some("http://secure:3128".to_owned()),
            "NO_PROXY" => Some("localhost, .example.org,,*.grid".to_owned()),
            _ => None,
        };
        let config = ClientConfig::default().with_proxy_from_env_vars(vars);
        assert_eq!(config.proxy.as_deref(), Some("http://secure:3128"));
        assert_eq!(config.no_proxy, ["localhost", ".example.org", "*.grid"]);
        let none = ClientConfig::default().with_proxy_from_env_vars(|_| None);
        assert!(none.proxy.is_none());
        assert!(none.no_proxy.is_empty());
    }

    #[test]
    fn default_user_agent_names_vmc_and_its_version() {
        assert_eq!(
            ClientConfig::default().user_agent,
            format!("vmc/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
