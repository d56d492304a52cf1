//! Cloud settings as the OpenStack tools take them: a `clouds.yaml` entry (`OS_CLOUD`) or the
//! `OS_*` variables, into a [`KeystoneConfig`] and an optional image endpoint override.
//!
//! The library reads neither files nor the environment: the caller passes the file's text and
//! a lookup for the variables. Both forms map onto the same `auth` keys (`auth_url`,
//! `username`, `password`, `project_name`, `application_credential_id`…), so they accept the
//! same things; `OS_FOO_BAR` is the key `foo_bar`.

use std::collections::BTreeMap;

use crate::PublishError;
use crate::keystone::{Credential, KeystoneConfig, Named};

/// What the publisher needs from a cloud's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// How to get a token.
    pub keystone: KeystoneConfig,
    /// The image endpoint to use instead of the catalog's (`image_endpoint_override`,
    /// `OS_IMAGE_ENDPOINT_OVERRIDE`).
    pub image_endpoint: Option<String>,
}

/// The `auth` keys read from `OS_*` variables.
const AUTH_KEYS: &[&str] = &[
    "auth_url",
    "username",
    "user_id",
    "password",
    "user_domain_name",
    "user_domain_id",
    "project_name",
    "project_id",
    "tenant_name",
    "tenant_id",
    "project_domain_name",
    "project_domain_id",
    "domain_name",
    "domain_id",
    "default_domain",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
];

/// Settings from `OS_*` variables, looked up through `get` (pass
/// `|k| std::env::var(k).ok()`). `None` when `OS_AUTH_URL` is unset.
pub fn from_env_vars(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<CloudSettings>, PublishError> {
    let var =
        |key: &str| get(&format!("OS_{}", key.to_ascii_uppercase())).filter(|v| !v.is_empty());
    let auth: BTreeMap<String, String> = AUTH_KEYS
        .iter()
        .filter_map(|k| var(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    if !auth.contains_key("auth_url") {
        return Ok(None);
    }
    settings(
        "OS_*",
        &auth,
        var("auth_type").as_deref(),
        var("region_name").as_deref(),
        var("interface").or_else(|| var("endpoint_type")).as_deref(),
        var("image_endpoint_override").as_deref(),
    )
    .map(Some)
}

/// Settings from the entry `cloud` of a `clouds.yaml` document (`source` names the file in
/// errors): `clouds.<cloud>.auth`, `auth_type`, `region_name`, `interface`,
/// `image_endpoint_override`. Scalars (strings, numbers, booleans) are taken as text.
pub fn from_clouds_yaml(
    text: &str,
    source: &str,
    cloud: &str,
) -> Result<CloudSettings, PublishError> {
    use yaml_rust2::{Yaml, YamlLoader};
    let bad = |what: String, reason: String| PublishError::Config { what, reason };
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| bad(source.to_owned(), format!("not YAML: {e}")))?;
    let doc = docs
        .first()
        .ok_or_else(|| bad(source.to_owned(), "empty".into()))?;
    let entry = &doc["clouds"][cloud];
    if entry.is_badvalue() || entry.as_hash().is_none() {
        return Err(bad(
            format!("{source}: clouds.{cloud}"),
            "no such cloud".into(),
        ));
    }
    let scalar = |y: &Yaml| match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    let mut auth = BTreeMap::new();
    if let Some(map) = entry["auth"].as_hash() {
        for (k, v) in map {
            if let (Some(k), Some(v)) = (k.as_str(), scalar(v)) {
                auth.insert(k.to_owned(), v);
            }
        }
    }
    let field = |k: &str| scalar(&entry[k]);
    settings(
        &format!("{source}: clouds.{cloud}"),
        &auth,
        field("auth_type").as_deref(),
        field("region_name").as_deref(),
        field("interface").as_deref(),
        field("image_endpoint_override").as_deref(),
    )
}

/// Settings from a cloud entry given as its parts (what `clouds.yaml` holds under
/// `clouds.NAME`): the `auth` map, `auth_type`, `region_name`, `interface` and
/// `image_endpoint_override`. `source` names the entry in errors.
pub fn settings(
    source: &str,
    auth: &BTreeMap<String, String>,
    auth_type: Option<&str>,
    region: Option<&str>,
    interface: Option<&str>,
    image_endpoint: Option<&str>,
) -> Result<CloudSettings, PublishError> {
    let get = |k: &str| auth.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |what: &str, reason: &str| PublishError::Config {
        what: format!("{source}: {what}"),
        reason: reason.to_owned(),
    };
    let auth_url = get("auth_url").ok_or_else(|| missing("auth_url", "not set"))?;
    let named = |id: &str, name: &str| {
        get(id)
            .map(|v| Named::Id(v.to_owned()))
            .or_else(|| get(name).map(|v| Named::Name(v.to_owned())))
    };
    let default_domain = get("default_domain").map(|d| Named::Id(d.to_owned()));
    let domain = |id: &str, name: &str| {
        named(id, name)
            .or_else(|| named("domain_id", "domain_name"))
            .or_else(|| default_domain.clone())
    };
    let user = named("user_id", "username");
    let user_domain = domain("user_domain_id", "user_domain_name");
    let app_cred = named("application_credential_id", "application_credential_name");
    let kind = auth_type.unwrap_or(if app_cred.is_some() {
        "v3applicationcredential"
    } else {
        "password"
    });
    let (credential, project, project_domain) = match kind {
        "password" | "v3password" => {
            let user = user.ok_or_else(|| missing("username", "password auth needs a user"))?;
            let password = get("password")
                .ok_or_else(|| missing("password", "password auth needs a password"))?;
            let project =
                named("project_id", "project_name").or_else(|| named("tenant_id", "tenant_name"));
            let project_domain = domain("project_domain_id", "project_domain_name");
            (
                Credential::Password {
                    user,
                    user_domain,
                    password: password.to_owned(),
                },
                project,
                project_domain,
            )
        }
        "v3applicationcredential" | "applicationcredential" => {
            let credential = app_cred.ok_or_else(|| {
                missing(
                    "application_credential_id",
                    "application credential auth needs its id or name",
                )
            })?;
            if matches!(credential, Named::Name(_)) && user.is_none() {
                return Err(missing(
                    "username",
                    "an application credential named by name needs its user",
                ));
            }
            let secret = get("application_credential_secret").ok_or_else(|| {
                missing(
                    "application_credential_secret",
                    "application credential auth needs the secret",
                )
            })?;
            (
                Credential::ApplicationCredential {
                    credential,
                    user,
                    user_domain,
                    secret: secret.to_owned(),
                },
                None,
                None,
            )
        }
        other => {
            return Err(missing(
                "auth_type",
                &format!(
                    "{other:?} is not supported (password, v3password, v3applicationcredential)"
                ),
            ));
        }
    };
    let interface = interface.unwrap_or("public");
    let interface = interface.strip_suffix("URL").unwrap_or(interface);
    if !matches!(interface, "public" | "internal" | "admin") {
        return Err(missing(
            "interface",
            &format!("{interface:?} is not public, internal or admin"),
        ));
    }
    Ok(CloudSettings {
        keystone: KeystoneConfig {
            auth_url: auth_url.to_owned(),
            credential,
            project,
            project_domain,
            interface: interface.to_owned(),
            region: region.filter(|r| !r.is_empty()).map(str::to_owned),
        },
        image_endpoint: image_endpoint.filter(|e| !e.is_empty()).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn password_settings_come_from_os_variables() {
        let s = from_env_vars(env(&[
            ("OS_AUTH_URL", "https://ks:5000/v3"),
            ("OS_USERNAME", "vmc"),
            ("OS_PASSWORD", "pw"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_NAME", "dteam"),
            ("OS_PROJECT_DOMAIN_ID", "default"),
            ("OS_REGION_NAME", "RegionOne"),
            ("OS_INTERFACE", "internal"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            s.keystone.credential,
            Credential::Password {
                user: Named::Name("vmc".into()),
                user_domain: Some(Named::Name("Default".into())),
                password: "pw".into(),
            }
        );
        assert_eq!(s.keystone.project, Some(Named::Name("dteam".into())));
        assert_eq!(s.keystone.project_domain, Some(Named::Id("default".into())));
        assert_eq!(s.keystone.region.as_deref(), Some("RegionOne"));
        assert_eq!(s.keystone.interface, "internal");
        assert_eq!(s.image_endpoint, None);
    }

    #[test]
    fn application_credentials_need_no_project() {
        let s = from_env_vars(env(&[
            ("OS_AUTH_URL", "https://ks:5000"),
            ("OS_AUTH_TYPE", "v3applicationcredential"),
            ("OS_APPLICATION_CREDENTIAL_ID", "abc"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "shh"),
            ("OS_PROJECT_NAME", "ignored"),
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(
            s.keystone.credential,
            Credential::ApplicationCredential { credential: Named::Id(ref id), .. } if id == "abc"
        ));
        assert_eq!(s.keystone.project, None);
        assert_eq!(s.keystone.interface, "public");
    }

    #[test]
    fn clouds_yaml_entries_are_read_as_the_openstack_tools_read_them() {
        let text = r#"
clouds:
  other:
    auth: {auth_url: "https://other:5000"}
  site:
    auth_type: v3applicationcredential
    region_name: RegionTwo
    interface: internal
    image_endpoint_override: https://glance.site:9292
    auth:
      auth_url: https://ks.site:5000/v3
      application_credential_name: vmc
      username: svc-vmc
      user_domain_name: Default
      application_credential_secret: 12345
"#;
        let s = from_clouds_yaml(text, "clouds.yaml", "site").unwrap();
        assert_eq!(s.keystone.auth_url, "https://ks.site:5000/v3");
        assert_eq!(s.keystone.region.as_deref(), Some("RegionTwo"));
        assert_eq!(s.keystone.interface, "internal");
        assert_eq!(
            s.image_endpoint.as_deref(),
            Some("https://glance.site:9292")
        );
        assert_eq!(
            s.keystone.credential,
            Credential::ApplicationCredential {
                credential: Named::Name("vmc".into()),
                user: Some(Named::Name("svc-vmc".into())),
                user_domain: Some(Named::Name("Default".into())),
                secret: "12345".into(),
            }
        );
        let error = from_clouds_yaml(text, "clouds.yaml", "nope")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("clouds.yaml: clouds.nope: no such cloud"),
            "{error}"
        );
        let error = from_clouds_yaml(text, "clouds.yaml", "other")
            .unwrap_err()
            .to_string();
        assert!(error.contains("clouds.other: username"), "{error}");
        let error = from_clouds_yaml("clouds: [", "c.yaml", "x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("c.yaml: not YAML"), "{error}");
    }

    #[test]
    fn incomplete_settings_name_what_is_missing() {
        assert_eq!(from_env_vars(env(&[])).unwrap(), None);
        let error = from_env_vars(env(&[("OS_AUTH_URL", "https://ks"), ("OS_USERNAME", "u")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("OS_*: password"), "{error}");
        let error = from_env_vars(env(&[
            ("OS_AUTH_URL", "https://ks"),
            ("OS_AUTH_TYPE", "v3token"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("\"v3token\" is not supported"), "{error}");
        let error = from_env_vars(env(&[
            ("OS_AUTH_URL", "https://ks"),
            ("OS_APPLICATION_CREDENTIAL_NAME", "n"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("needs its user"), "{error}");
    }
}
