//! A real OpenStack Keystone (identity v3) on `127.0.0.1` for tests, started from a
//! virtualenv holding `keystone==30.0.0` and `gunicorn` (`.ci/run` makes one and exports its
//! path as [`VENV_ENV`]).
//!
//! [`Keystone::start`] writes a configuration into a temporary directory (SQLite database,
//! fernet tokens), runs `keystone-manage db_sync`, `fernet_setup`, `credential_setup` and
//! `bootstrap` (user `admin` with [`ADMIN_PASSWORD`] in project `admin`, domain `Default`,
//! region `RegionOne`, identity endpoints at its own URL), serves
//! `keystone.wsgi.api:application` with gunicorn on a free port (through a two-line shim:
//! Keystone parses the process's arguments, which are gunicorn's) and waits until `/v3`
//! answers. Dropping it stops gunicorn.
//!
//! Through Keystone's own API (as the bootstrap admin) a test makes what a site would:
//! projects, users with a password and a role ([`Keystone::create_account`]), their tokens
//! and application credentials, and catalog
//! endpoints ([`Keystone::add_endpoint`]); [`crate::glance::Glance::start_behind`] uses them
//! for a Glance that checks tokens with keystonemiddleware.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::glance::{free_port, gunicorn, stop, tail, wait_answer};

/// The environment variable naming the Keystone virtualenv.
pub const VENV_ENV: &str = "VMC_TEST_KEYSTONE_VENV";

/// The bootstrap admin's password.
pub const ADMIN_PASSWORD: &str = "vmc-test-admin-secret";

/// The virtualenv of [`VENV_ENV`], or `None` (saying that `test` is skipped); under CI an
/// unset variable panics.
pub fn venv_from_env(test: &str) -> Option<PathBuf> {
    crate::glance::venv_from(VENV_ENV, "Keystone", test)
}

/// A running Keystone; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Keystone {
    child: Child,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Keystone {
    /// Configures, bootstraps and starts Keystone from the virtualenv `venv`.
    pub fn start(venv: &Path) -> io::Result<Keystone> {
        let dir = tempfile::Builder::new().prefix("vmc-keystone-").tempdir()?;
        let root = dir.path();
        for sub in ["etc/fernet", "etc/credential"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let r = root.display();
        std::fs::write(
            root.join("etc/keystone.conf"),
            format!(
                "[database]\nconnection = sqlite:///{r}/keystone.db\n\
                 [token]\nprovider = fernet\n\
                 [fernet_tokens]\nkey_repository = {r}/etc/fernet\n\
                 [fernet_receipts]\nkey_repository = {r}/etc/fernet\n\
                 [credential]\nkey_repository = {r}/etc/credential\n"
            ),
        )?;
        std::fs::write(
            root.join("vmc_keystone_shim.py"),
            "import sys\nsys.argv = sys.argv[:1]\nfrom keystone.wsgi.api import application  # noqa\n",
        )?;
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let url = format!("http://{addr}/v3");
        let conf = root.join("etc/keystone.conf");
        let manage = |args: &[&str]| -> io::Result<()> {
            let out = Command::new(venv.join("bin/keystone-manage"))
                .arg("--config-file")
                .arg(&conf)
                .args(args)
                .current_dir(root)
                .stdin(Stdio::null())
                .output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "keystone-manage {args:?} failed ({}): {}",
                    out.status,
                    tail(&String::from_utf8_lossy(&out.stderr))
                )))
            }
        };
        manage(&["db_sync"])?;
        for keys in ["fernet_setup", "credential_setup"] {
            manage(&[keys, "--keystone-user", "root", "--keystone-group", "root"])?;
        }
        manage(&[
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            &url,
            "--bootstrap-public-url",
            &url,
            "--bootstrap-internal-url",
            &url,
            "--bootstrap-region-id",
            "RegionOne",
        ])?;
        let mut child = gunicorn(
            venv,
            root,
            addr,
            "vmc_keystone_shim:application",
            ("OS_KEYSTONE_CONFIG_DIR", root.join("etc")),
        )?;
        if let Err(e) = wait_answer(&mut child, addr, "/v3", root) {
            stop(&mut child);
            return Err(e);
        }
        Ok(Keystone {
            child,
            _dir: dir,
            addr,
        })
    }

    /// The identity endpoint, `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }

    /// A token of the bootstrap admin, scoped to project `admin`.
    pub fn admin_token(&self) -> io::Result<String> {
        self.token("admin", ADMIN_PASSWORD, "admin")
    }

    /// A token of `user` (domain `Default`) by `password`, scoped to `project`.
    pub fn token(&self, user: &str, password: &str, project: &str) -> io::Result<String> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password
            }}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}
        }});
        let response = agent()
            .post(format!("{}/auth/tokens", self.url()))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let token = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match token {
            Some(token) if status == 201 => Ok(token),
            _ => Err(io::Error::other(format!(
                "Keystone refused a token of {user} in {project}: {status}"
            ))),
        }
    }

    /// Creates an application credential `name` of `account`'s user (with its own token,
    /// as Keystone requires); returns its id and secret.
    pub fn create_application_credential(
        &self,
        account: &Account,
        name: &str,
    ) -> io::Result<(String, String)> {
        let token = self.token(&account.user, &account.password, &account.project)?;
        let body = Some(json!({"application_credential": {"name": name}}));
        let path = format!("/users/{}/application_credentials", account.user_id);
        let made = self.api(&token, "POST", &path, body, "")?;
        let value: Value = serde_json::from_str(&made).map_err(io::Error::other)?;
        let field = |k: &str| {
            value["application_credential"][k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| io::Error::other(format!("no {k} in {made}")))
        };
        Ok((field("id")?, field("secret")?))
    }

    /// Creates (as the admin) project `project` and user `user` with `password` in domain
    /// `Default`, and gives the user `role` (created when missing) on the project.
    pub fn create_account(
        &self,
        project: &str,
        user: &str,
        password: &str,
        role: &str,
    ) -> io::Result<Account> {
        let token = self.admin_token()?;
        let project_id = self.api(
            &token,
            "POST",
            "/projects",
            Some(json!({"project": {"name": project, "domain_id": "default"}})),
            "/project/id",
        )?;
        let user_id = self.api(
            &token,
            "POST",
            "/users",
            Some(json!({"user": {
                "name": user, "domain_id": "default", "password": password,
                "default_project_id": project_id
            }})),
            "/user/id",
        )?;
        let role_id = match self.api(
            &token,
            "GET",
            &format!("/roles?name={role}"),
            None,
            "/roles/0/id",
        ) {
            Ok(id) => id,
            Err(_) => self.api(
                &token,
                "POST",
                "/roles",
                Some(json!({"role": {"name": role}})),
                "/role/id",
            )?,
        };
        self.api(
            &token,
            "PUT",
            &format!("/projects/{project_id}/users/{user_id}/roles/{role_id}"),
            None,
            "",
        )?;
        Ok(Account {
            project: project.to_owned(),
            project_id,
            user: user.to_owned(),
            user_id,
            password: password.to_owned(),
        })
    }

    /// Adds a service of type `kind` named `name` to the catalog, with a public and an
    /// internal endpoint at `url` in region `RegionOne`.
    pub fn add_endpoint(&self, kind: &str, name: &str, url: &str) -> io::Result<()> {
        let token = self.admin_token()?;
        let service = self.api(
            &token,
            "POST",
            "/services",
            Some(json!({"service": {"type": kind, "name": name}})),
            "/service/id",
        )?;
        for interface in ["public", "internal"] {
            self.api(
                &token,
                "POST",
                "/endpoints",
                Some(json!({"endpoint": {
                    "service_id": service, "interface": interface, "url": url,
                    "region_id": "RegionOne"
                }})),
                "/endpoint/id",
            )?;
        }
        Ok(())
    }

    /// `method path` of the identity API with `token` and a JSON body; the string at JSON
    /// pointer `pick` of the answer (the whole answer when `pick` is empty). A non-2xx answer
    /// fails.
    fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        pick: &str,
    ) -> io::Result<String> {
        let url = format!("{}{path}", self.url());
        let agent = agent();
        let result = match (method, body) {
            ("POST", Some(body)) => agent
                .post(&url)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
            ("PUT", None) => agent.put(&url).header("X-Auth-Token", token).send_empty(),
            ("GET", None) => agent.get(&url).header("X-Auth-Token", token).call(),
            _ => return Err(io::Error::other(format!("no such call: {method} {path}"))),
        };
        let response = result.map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(io::Error::other)?;
        if !(200..300).contains(&status) {
            return Err(io::Error::other(format!(
                "Keystone answered {method} {path} with {status}: {text}"
            )));
        }
        if pick.is_empty() {
            return Ok(text);
        }
        let value: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
        value
            .pointer(pick)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "no {pick} in Keystone's answer to {method} {path}: {text}"
                ))
            })
    }
}

/// A project with a user who has a role on it, made by [`Keystone::create_account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The project's name (domain `Default`).
    pub project: String,
    /// Its id.
    pub project_id: String,
    /// The user's name (domain `Default`).
    pub user: String,
    /// Its id.
    pub user_id: String,
    /// The user's password.
    pub password: String,
}

/// An HTTP agent that returns error statuses as answers.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

impl Drop for Keystone {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
