//! Keystone v3 tokens against a real Keystone 30 on 127.0.0.1 (from the virtualenv
//! `VMC_TEST_KEYSTONE_VENV` names; skipped, saying so, without it, and failing under CI):
//! password authentication configured from `OS_*` variables, the identity endpoint from the
//! token's catalog, a wrong password refused, and an application credential (by id, and by
//! name with its user) made with that token and used for a token of its own.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vmc_publish::cloud;
use vmc_publish::{Credential, Keystone, Named, PublishError};
use vmc_testkit::keystone::{self, ADMIN_PASSWORD};

fn agent() -> ureq::Agent {
    vmc_cache::fetch::Client::new(vmc_cache::fetch::ClientConfig::default())
        .unwrap()
        .agent()
        .clone()
}

fn os_vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

/// `method url` with a token and a JSON body; the status and the JSON answer.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = match body {
        Some(body) => agent
            .post(url)
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap(),
        None => {
            assert_eq!(method, "GET");
            agent.get(url).header("X-Auth-Token", token).call().unwrap()
        }
    };
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn keystone_tokens_by_password_and_by_application_credential() {
    let Some(venv) =
        keystone::venv_from_env("keystone_tokens_by_password_and_by_application_credential")
    else {
        return;
    };
    let ks = keystone::Keystone::start(&venv).unwrap();
    let agent = agent();
    let settings = cloud::from_env_vars(os_vars(&[
        ("OS_AUTH_URL", &ks.url()),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", ADMIN_PASSWORD),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_NAME", "admin"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
    ]))
    .unwrap()
    .unwrap();
    let session = Keystone::new(agent.clone(), settings.keystone.clone());
    let token = session.token().unwrap();
    assert!(token.len() > 20);
    assert_eq!(session.token().unwrap(), token, "cached until near expiry");
    assert_eq!(session.endpoint("identity").unwrap(), ks.url());
    assert!(matches!(
        session.endpoint("image"),
        Err(PublishError::NoEndpoint { .. })
    ));
    session.invalidate();
    assert!(!session.token().unwrap().is_empty());

    // A wrong password is refused, naming Keystone.
    let mut wrong = settings.keystone.clone();
    if let Credential::Password { password, .. } = &mut wrong.credential {
        *password = "not-it".into();
    }
    let error = Keystone::new(agent.clone(), wrong).token().unwrap_err();
    assert!(
        matches!(error, PublishError::AuthRejected { status: 401, .. }),
        "{error:?}"
    );

    // An application credential of admin, made with the password token.
    let (status, users) = call(
        &agent,
        "GET",
        &format!("{}/users?name=admin", ks.url()),
        &token,
        None,
    );
    assert_eq!(status, 200, "{users}");
    let user_id = users["users"][0]["id"].as_str().unwrap().to_owned();
    let (status, made) = call(
        &agent,
        "POST",
        &format!("{}/users/{user_id}/application_credentials", ks.url()),
        &token,
        Some(json!({"application_credential": {"name": "vmc-test"}})),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["application_credential"]["id"].as_str().unwrap();
    let secret = made["application_credential"]["secret"].as_str().unwrap();

    let by_id = cloud::from_env_vars(os_vars(&[
        ("OS_AUTH_URL", &ks.url()),
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_APPLICATION_CREDENTIAL_ID", id),
        ("OS_APPLICATION_CREDENTIAL_SECRET", secret),
    ]))
    .unwrap()
    .unwrap();
    let app = Keystone::new(agent.clone(), by_id.keystone.clone());
    assert!(!app.token().unwrap().is_empty());
    assert_eq!(app.endpoint("identity").unwrap(), ks.url());

    let mut by_name = by_id.keystone;
    by_name.credential = Credential::ApplicationCredential {
        credential: Named::Name("vmc-test".into()),
        user: Some(Named::Name("admin".into())),
        user_domain: Some(Named::Name("Default".into())),
        secret: secret.to_owned(),
    };
    assert!(
        !Keystone::new(agent.clone(), by_name.clone())
            .token()
            .unwrap()
            .is_empty()
    );
    if let Credential::ApplicationCredential { secret, .. } = &mut by_name.credential {
        *secret = "wrong".into();
    }
    assert!(matches!(
        Keystone::new(agent, by_name).token(),
        Err(PublishError::AuthRejected { .. })
    ));
}
