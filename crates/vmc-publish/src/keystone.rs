//! Keystone v3 tokens: password and application-credential authentication, the token cached
//! until five minutes before it expires, and endpoint lookup in its service catalog.
//!
//! Secrets (password, application credential secret, the token) never appear in `Debug`,
//! logs or errors.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use ureq::Agent;

use crate::PublishError;

/// Largest token answer read (catalogs of big clouds are a few hundred KiB).
const MAX_ANSWER: u64 = 8 << 20;

/// A user, project or domain named by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// By id.
    Id(String),
    /// By name (users and projects then need their domain).
    Name(String),
}

impl Named {
    fn to_json(&self) -> Value {
        match self {
            Named::Id(id) => json!({ "id": id }),
            Named::Name(name) => json!({ "name": name }),
        }
    }
}

/// How to prove who we are.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `password` method.
    Password {
        /// The user.
        user: Named,
        /// The user's domain (for a user named by name).
        user_domain: Option<Named>,
        /// The password.
        password: String,
    },
    /// `application_credential` method (its project is fixed: no scope is sent).
    ApplicationCredential {
        /// The credential, by id, or by name with its user.
        credential: Named,
        /// The owning user, for a credential named by name.
        user: Option<Named>,
        /// The owning user's domain, for a user named by name.
        user_domain: Option<Named>,
        /// The secret.
        secret: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password {
                user, user_domain, ..
            } => f
                .debug_struct("Password")
                .field("user", user)
                .field("user_domain", user_domain)
                .finish_non_exhaustive(),
            Credential::ApplicationCredential {
                credential, user, ..
            } => f
                .debug_struct("ApplicationCredential")
                .field("credential", credential)
                .field("user", user)
                .finish_non_exhaustive(),
        }
    }
}

/// Where Keystone is, who we are, and which endpoints we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneConfig {
    /// The identity endpoint (`https://keystone.example:5000` or `…/v3`).
    pub auth_url: String,
    /// The credential.
    pub credential: Credential,
    /// The project to scope a password token to.
    pub project: Option<Named>,
    /// The project's domain, for a project named by name.
    pub project_domain: Option<Named>,
    /// The endpoint interface: `public` (default), `internal` or `admin`.
    pub interface: String,
    /// The region whose endpoints are used, if the catalog has several.
    pub region: Option<String>,
}

impl KeystoneConfig {
    /// The token request body (`POST /v3/auth/tokens`).
    pub fn token_request(&self) -> Value {
        let with_domain = |user: &Named, domain: &Option<Named>| {
            let mut user = user.to_json();
            if let (Some(domain), Some(object)) = (domain, user.as_object_mut()) {
                object.insert("domain".into(), domain.to_json());
            }
            user
        };
        match &self.credential {
            Credential::Password {
                user,
                user_domain,
                password,
            } => {
                let mut user = with_domain(user, user_domain);
                if let Some(object) = user.as_object_mut() {
                    object.insert("password".into(), json!(password));
                }
                let mut auth = json!({
                    "identity": { "methods": ["password"], "password": { "user": user } }
                });
                if let (Some(project), Some(object)) = (&self.project, auth.as_object_mut()) {
                    let mut project = project.to_json();
                    if let (Some(domain), Some(p)) = (&self.project_domain, project.as_object_mut())
                    {
                        p.insert("domain".into(), domain.to_json());
                    }
                    object.insert("scope".into(), json!({ "project": project }));
                }
                json!({ "auth": auth })
            }
            Credential::ApplicationCredential {
                credential,
                user,
                user_domain,
                secret,
            } => {
                let mut cred = credential.to_json();
                if let Some(object) = cred.as_object_mut() {
                    if let Some(user) = user {
                        object.insert("user".into(), with_domain(user, user_domain));
                    }
                    object.insert("secret".into(), json!(secret));
                }
                json!({ "auth": { "identity": {
                    "methods": ["application_credential"],
                    "application_credential": cred
                } } })
            }
        }
    }

    /// `…/v3/auth/tokens` of [`Self::auth_url`].
    pub fn token_url(&self) -> String {
        let base = self.auth_url.trim_end_matches('/');
        let base = base.strip_suffix("/v3").unwrap_or(base);
        format!("{base}/v3/auth/tokens")
    }
}

/// A token and what came with it.
#[derive(Clone)]
struct Token {
    value: String,
    expires_at: Option<DateTime<Utc>>,
    /// Shared, not copied: a token is taken for every Glance request, and a big cloud's
    /// catalog is a few hundred KiB.
    catalog: Arc<Value>,
}

/// A Keystone v3 session: fetches a token when first needed and again when it nears expiry
/// or Glance refuses it. Cheap to clone (clones share the token).
#[derive(Clone)]
pub struct Keystone {
    agent: Agent,
    config: Arc<KeystoneConfig>,
    token: Arc<Mutex<Option<Token>>>,
}

impl fmt::Debug for Keystone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystone")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Keystone {
    /// A session; nothing is sent until a token is needed.
    pub fn new(agent: Agent, config: KeystoneConfig) -> Keystone {
        Keystone {
            agent,
            config: Arc::new(config),
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// A valid token (fetched when there is none or it expires within five minutes).
    pub fn token(&self) -> Result<String, PublishError> {
        Ok(self.current()?.value)
    }

    /// Forgets the token (the next request fetches a new one).
    pub fn invalidate(&self) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The URL of the `service` endpoint (type `image`…) for the configured interface and
    /// region, from the token's catalog.
    pub fn endpoint(&self, service: &str) -> Result<String, PublishError> {
        let token = self.current()?;
        find_endpoint(
            &token.catalog,
            service,
            &self.config.interface,
            self.config.region.as_deref(),
        )
        .ok_or_else(|| PublishError::NoEndpoint {
            service: service.to_owned(),
            interface: self.config.interface.clone(),
            region: self.config.region.clone(),
        })
    }

    fn current(&self) -> Result<Token, PublishError> {
        let mut slot = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = &*slot {
            let fresh = token
                .expires_at
                .is_none_or(|t| t - chrono::Duration::minutes(5) > Utc::now());
            if fresh {
                return Ok(token.clone());
            }
        }
        let token = self.fetch()?;
        *slot = Some(token.clone());
        Ok(token)
    }

    fn fetch(&self) -> Result<Token, PublishError> {
        let url = self.config.token_url();
        let body = self.config.token_request().to_string();
        let http_err = |source| PublishError::Http {
            method: "POST",
            url: url.clone(),
            source,
        };
        let response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map_err(http_err)?;
        let status = response.status().as_u16();
        let subject = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .into_body()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(http_err)?;
        if status == 401 || status == 403 {
            return Err(PublishError::AuthRejected { url, status });
        }
        if status != 201 && status != 200 {
            return Err(PublishError::Status {
                method: "POST",
                url,
                status,
                body: text.chars().take(500).collect(),
            });
        }
        let value = subject.ok_or_else(|| PublishError::Protocol {
            url: url.clone(),
            reason: "no X-Subject-Token header".to_owned(),
        })?;
        let mut answer: Value =
            serde_json::from_str(&text).map_err(|e| PublishError::Protocol {
                url: url.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let expires_at = answer["token"]["expires_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        tracing::debug!(url, ?expires_at, "Keystone token issued");
        Ok(Token {
            value,
            expires_at,
            catalog: Arc::new(answer["token"]["catalog"].take()),
        })
    }
}

/// The endpoint URL of `service` with `interface` (in `region`, when given) in a v3 catalog.
fn find_endpoint(
    catalog: &Value,
    service: &str,
    interface: &str,
    region: Option<&str>,
) -> Option<String> {
    catalog
        .as_array()?
        .iter()
        .filter(|s| s["type"].as_str() == Some(service))
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find(|e| {
            e["interface"].as_str() == Some(interface)
                && region.is_none_or(|r| {
                    e["region_id"].as_str() == Some(r) || e["region"].as_str() == Some(r)
                })
        })
        .and_then(|e| e["url"].as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password_config() -> KeystoneConfig {
        KeystoneConfig {
            auth_url: "https://ks.example:5000/v3/".into(),
            credential: Credential::Password {
                user: Named::Name("vmc".into()),
                user_domain: Some(Named::Name("Default".into())),
                password: "s3cret".into(),
            },
            project: Some(Named::Name("dteam".into())),
            project_domain: Some(Named::Id("default".into())),
            interface: "public".into(),
            region: None,
        }
    }

    #[test]
    fn password_requests_are_scoped_to_the_project() {
        let config = password_config();
        assert_eq!(config.token_url(), "https://ks.example:5000/v3/auth/tokens");
        assert_eq!(
            config.token_request(),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "vmc", "domain": {"name": "Default"}, "password": "s3cret"}}},
                "scope": {"project": {"name": "dteam", "domain": {"id": "default"}}}
            }})
        );
    }

    #[test]
    fn application_credentials_send_no_scope() {
        let mut config = password_config();
        config.auth_url = "https://ks.example:5000".into();
        config.credential = Credential::ApplicationCredential {
            credential: Named::Id("abc".into()),
            user: None,
            user_domain: None,
            secret: "shh".into(),
        };
        assert_eq!(config.token_url(), "https://ks.example:5000/v3/auth/tokens");
        assert_eq!(
            config.token_request(),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "abc", "secret": "shh"}}}})
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = password_config();
        let text = format!("{:?}", Keystone::new(Agent::new_with_defaults(), config));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("vmc"), "{text}");
    }

    #[test]
    fn endpoints_are_picked_by_type_interface_and_region() {
        let catalog = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://ks"}]},
            {"type": "image", "endpoints": [
                {"interface": "internal", "region_id": "A", "url": "http://glance-int"},
                {"interface": "public", "region_id": "A", "url": "http://glance-a"},
                {"interface": "public", "region_id": "B", "url": "http://glance-b"}
            ]}
        ]);
        assert_eq!(
            find_endpoint(&catalog, "image", "public", None).as_deref(),
            Some("http://glance-a")
        );
        assert_eq!(
            find_endpoint(&catalog, "image", "public", Some("B")).as_deref(),
            Some("http://glance-b")
        );
        assert_eq!(
            find_endpoint(&catalog, "image", "internal", None).as_deref(),
            Some("http://glance-int")
        );
        assert_eq!(find_endpoint(&catalog, "image", "admin", None), None);
        assert_eq!(find_endpoint(&catalog, "image", "public", Some("C")), None);
    }
}
