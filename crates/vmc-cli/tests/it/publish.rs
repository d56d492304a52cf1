//! `vmc cache sync --publish`, `vmc publish sync` and `vmc publish list` through the real
//! binary, against a real Glance on 127.0.0.1 (skipped, saying so, without
//! `VMC_TEST_GLANCE_VENV`; failing under CI): a signed list of a real qcow2 image is
//! subscribed, cached, published once, listed, and expired; a `vmc publish sync` killed
//! (SIGKILL) mid-upload is repaired by the next run, or taken over by another node once the
//! killed one is silent; behind a real Keystone (keystonemiddleware), `vmc publish sync`
//! authenticates with `OS_*` passwords and application credentials, and a wrong password
//! fails clearly and publishes nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sha2::{Digest, Sha512};
use vmc_testkit::glance::{self, DEFAULT_PROJECT};
use vmc_testkit::keystone;
use vmc_testkit::pki::{CaDirOptions, ENDORSER_DN, ROOT_DN, TestPki};
use vmc_testkit::proxy::{FaultProxy, ProxyFault};
use vmc_testkit::server::TestServer;

use crate::common::{NOW, describe};

/// A small qcow2 image.
fn qcow2(path: &Path) {
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg("16M")
        .status()
        .expect("qemu-img (Debian qemu-utils)");
    assert!(status.success());
}

/// A site with one endorsed, subscribed, selected list of one real qcow2 image `alma9`, a
/// Glance, and `vmc` wired to both.
struct Site {
    g: glance::Glance,
    keystone: Option<keystone::Keystone>,
    _ca_dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    _files: tempfile::TempDir,
    _server: TestServer,
    home: tempfile::TempDir,
}

impl Site {
    fn new(test: &str) -> Option<Site> {
        let venv = glance::venv_from_env(test)?;
        let g = glance::Glance::start(&venv).unwrap();
        Some(Site::with(g, None))
    }

    /// A site whose Glance is behind a real Keystone (the `keystone` paste flavor).
    fn behind_keystone(test: &str) -> Option<Site> {
        let venv = glance::venv_from_env(test)?;
        let keystone_venv = keystone::venv_from_env(test)?;
        let started = std::time::Instant::now();
        let ks = keystone::Keystone::start(&keystone_venv).unwrap();
        let keystone_up = started.elapsed();
        let g = glance::Glance::start_behind(&venv, &ks).unwrap();
        #[allow(clippy::print_stderr, reason = "the start time, for the test's log")]
        {
            eprintln!(
                "{test}: Keystone started in {:.1} s, Glance behind it in {:.1} s",
                keystone_up.as_secs_f64(),
                (started.elapsed() - keystone_up).as_secs_f64()
            );
        }
        Some(Site::with(g, Some(ks)))
    }

    fn with(g: glance::Glance, keystone: Option<keystone::Keystone>) -> Site {
        let now: DateTime<Utc> = NOW.parse().unwrap();
        let pki = TestPki::generate(now);
        let ca_dir = pki.ca_dir(CaDirOptions::default());
        let files = tempfile::tempdir().unwrap();
        let image = files.path().join("alma9.qcow2");
        qcow2(&image);
        let bytes = std::fs::read(&image).unwrap();
        let server = TestServer::start();
        let list = json!({"hv:imagelist": {
            "dc:identifier": "cli-publish-list",
            "dc:title": "CLI publish list",
            "dc:description": "test",
            "dc:source": "https://lists.example/",
            "dc:date:created": (now - Duration::days(1)).to_rfc3339(),
            "dc:date:expires": (now + Duration::days(30)).to_rfc3339(),
            "hv:version": "1",
            "hv:uri": server.url("/files/list.smime"),
            "ad:vo": "dteam",
            "hv:endorser": {"hv:x509": {
                "hv:dn": ENDORSER_DN, "hv:ca": ROOT_DN,
                "dc:creator": "Test", "hv:email": "t@example.org"
            }},
            "hv:images": [{"hv:image": {
                "dc:identifier": "alma9",
                "dc:title": "AlmaLinux 9",
                "hv:uri": server.url("/files/alma9.qcow2"),
                "hv:size": bytes.len(),
                "sl:checksum:sha512": hex::encode(Sha512::digest(&bytes)),
                "hv:version": "9.4",
                "hv:format": "qcow2",
                "sl:arch": "x86_64"
            }}]
        }});
        let signed = pki
            .endorser
            .sign_smime(serde_json::to_string_pretty(&list).unwrap().as_bytes());
        std::fs::write(files.path().join("list.smime"), signed).unwrap();
        server.serve_dir("/files", files.path());
        let site = Site {
            g,
            keystone,
            ca: ca_dir.path().to_owned(),
            _ca_dir: ca_dir,
            _files: files,
            home: tempfile::tempdir().unwrap(),
            _server: server,
        };
        site.vmc(&[
            "endorser",
            "add",
            "--id",
            "e",
            "--subject",
            ENDORSER_DN,
            "--issuer",
            ROOT_DN,
        ]);
        let url = site._server.url("/files/list.smime");
        site.vmc(&[
            "subscribe",
            "add",
            &url,
            "--endorser",
            "e",
            "--new-images",
            "subscribe",
        ]);
        site.vmc(&["image", "subscribe", "alma9"]);
        site
    }

    /// `vmc ARGS` publishing into `glance_url`, not yet run.
    fn command(&self, glance_url: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmc"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("VMC_NOW", NOW)
            .env("VMC_HOME", self.home.path())
            .env("HOME", self.home.path())
            .env("VMC_CA_DIR", &self.ca)
            .env("VMC_GLANCE_URL", glance_url)
            .env("VMC_GLANCE_PROJECT", DEFAULT_PROJECT)
            .env("VMC_PUBLISH_TARGET", "site-glance");
        cmd
    }

    /// `vmc` configured by the `OS_*` variables `vars` (no `--glance-url`), not yet run.
    fn os_command(&self, vars: &[(&str, &str)]) -> std::process::Command {
        let mut cmd = self.command("");
        cmd.env_remove("VMC_GLANCE_URL")
            .env_remove("VMC_GLANCE_PROJECT")
            .envs(vars.iter().copied());
        cmd
    }

    /// Runs `vmc ARGS publish sync` through a proxy that stops forwarding part way into the
    /// upload and hangs, kills it (SIGKILL) once the upload has begun (the claim holds the
    /// remote image's id), and checks the claim is left `uploading`. Returns the proxy and
    /// the id of the half-uploaded image.
    fn kill_mid_upload(&self, args: &[&str]) -> (FaultProxy, String) {
        let proxy = FaultProxy::start(self.g.addr()).unwrap();
        proxy.add_rule("PUT", "/file", ProxyFault::Stall(64 * 1024), 1);
        let mut child = self
            .command(&proxy.url())
            .args(args)
            .args(["publish", "sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        loop {
            let listed = self.vmc(&["--json", "publish", "list"]);
            let uploading = listed[0]["state"] == "uploading" && listed[0]["remote_id"].is_string();
            if uploading && proxy.requests().iter().any(|r| r.starts_with("PUT")) {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 60,
                "the upload never began: {listed:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let left = self.vmc(&["--json", "publish", "list"]);
        assert_eq!(left[0]["state"], "uploading", "{left:#}");
        let partial = left[0]["remote_id"].as_str().unwrap().to_owned();
        (proxy, partial)
    }

    /// Runs `vmc ARGS` against the Glance; it must exit 0; its stdout as JSON (or null).
    fn vmc(&self, args: &[&str]) -> serde_json::Value {
        let out = self.command(&self.g.url()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or(json!(null))
    }
}

#[test]
fn cache_sync_publishes_into_glance_once_and_an_unselected_image_is_deactivated() {
    let Some(site) = Site::new("cache_sync_publishes_into_glance_once") else {
        return;
    };
    let vmc = |args: &[&str]| site.vmc(args);

    let before = vmc(&["--json", "publish", "sync", "--dry-run"]);
    assert_eq!(
        before["actions"].as_array().unwrap().len(),
        0,
        "nothing cached yet"
    );

    vmc(&["cache", "sync", "--publish"]);
    let listed = vmc(&["--json", "publish", "list"]);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed:#}");
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(rows[0]["target"], "site-glance");
    assert_eq!(rows[0]["identifier"], "alma9");
    let remote = rows[0]["remote_id"].as_str().unwrap().to_owned();

    // Published once: a second run has nothing to do.
    let again = vmc(&["--json", "publish", "sync"]);
    assert_eq!(again["success"], true);
    assert_eq!(again["actions"].as_array().unwrap().len(), 0, "{again:#}");

    // Unselected: the cache expires it, the publisher deactivates it (a dry run first).
    vmc(&["image", "unsubscribe", "alma9"]);
    vmc(&["cache", "sync"]);
    let planned = vmc(&["--json", "publish", "sync", "--dry-run"]);
    assert_eq!(planned["actions"][0]["action"], "expire", "{planned:#}");
    assert_eq!(planned["actions"][0]["outcome"], "planned");
    let done = vmc(&["--json", "publish", "sync"]);
    assert_eq!(done["actions"][0]["action"], "expire", "{done:#}");
    assert_eq!(done["actions"][0]["outcome"], "done");
    assert_eq!(done["actions"][0]["remote_id"], remote.as_str());
    let listed = vmc(&["--json", "publish", "list", "--target", "site-glance"]);
    assert_eq!(listed[0]["state"], "deactivated");
    assert_eq!(listed[0]["reason"], "expired");
}

#[test]
fn a_publisher_killed_mid_upload_is_repaired_by_the_next_run() {
    let Some(site) = Site::new("a_publisher_killed_mid_upload") else {
        return;
    };
    site.vmc(&["cache", "sync"]);
    let (proxy, partial) = site.kill_mid_upload(&[]);

    // The next run, straight to Glance, repairs: the partial image goes, one image is active.
    let run = site.vmc(&["--json", "publish", "sync"]);
    assert_eq!(actions(&run), ["repair", "publish"], "{run:#}");
    assert_eq!(run["success"], true);
    let listed = site.vmc(&["--json", "publish", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["state"], "active");
    assert_ne!(listed[0]["remote_id"], partial.as_str());
    drop(proxy);
}

#[test]
fn another_node_takes_over_the_claim_of_a_publisher_killed_mid_upload_once_it_is_silent() {
    let Some(site) = Site::new("another_node_takes_over_the_claim") else {
        return;
    };
    site.vmc(&["cache", "sync"]);
    let (proxy, partial) = site.kill_mid_upload(&["--node", "node-a"]);
    // `publish sync` joined the site: node-a is registered, and beat at the run's time.
    let nodes = site.vmc(&["--json", "node", "list"]);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert!(names.contains(&"node-a"), "{nodes:#}");

    // node-b at the same moment: node-a is alive (it beat now), its claim is respected.
    let run = site.vmc(&["--json", "--node", "node-b", "publish", "sync"]);
    assert_eq!(run["actions"][0]["action"], "skip", "{run:#}");
    assert_eq!(
        site.vmc(&["--json", "publish", "list"])[0]["state"],
        "uploading"
    );

    // node-b ten minutes later (the lease time is 120 s): node-a is silent, gone; node-b
    // repairs its claim and publishes the image, once.
    let out = site
        .command(&site.g.url())
        .env("VMC_NOW", "2027-06-01T00:10:00Z")
        .args(["--json", "--node", "node-b", "publish", "sync"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(actions(&run), ["repair", "publish"], "{run:#}");
    let why = run["actions"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        why.contains("node node-a") && why.contains("was last seen at"),
        "{run:#}"
    );
    let listed = site.vmc(&["--json", "publish", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["state"], "active");
    assert_ne!(listed[0]["remote_id"], partial.as_str());
    drop(proxy);
}

/// The actions of a `publish sync --json` report, by name.
fn actions(run: &serde_json::Value) -> Vec<&str> {
    run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect()
}

/// GET `path` of the Glance at `url` with `headers`; the status and the JSON answer.
fn glance_get(url: &str, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    glance::get_json(&format!("{url}{path}"), headers).unwrap()
}

#[test]
fn publish_sync_behind_keystone_authenticates_by_password_and_application_credential() {
    let Some(site) = Site::behind_keystone("publish_sync_behind_keystone") else {
        return;
    };
    let ks = site.keystone.as_ref().unwrap();
    let glance_url = site.g.url();
    // Glance really checks tokens: none, or Keystone's headers without one, get 401.
    let (status, _) = glance_get(&glance_url, "/v2/images", &[]);
    assert_eq!(status, 401);
    let forged: Vec<(String, String)> = glance::identity_headers(DEFAULT_PROJECT);
    let forged: Vec<(&str, &str)> = forged
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _) = glance_get(&glance_url, "/v2/images", &forged);
    assert_eq!(status, 401, "the identity headers alone are not believed");

    let account = ks
        .create_account("vmc-site", "vmc", "vmc-user-secret", "admin")
        .unwrap();
    site.vmc(&["cache", "sync"]);
    let auth_url = ks.url();
    let password_vars = |password: &'static str| {
        vec![
            ("OS_AUTH_URL", auth_url.clone()),
            ("OS_USERNAME", "vmc".to_owned()),
            ("OS_PASSWORD", password.to_owned()),
            ("OS_USER_DOMAIN_NAME", "Default".to_owned()),
            ("OS_PROJECT_NAME", "vmc-site".to_owned()),
            ("OS_PROJECT_DOMAIN_NAME", "Default".to_owned()),
            ("OS_REGION_NAME", "RegionOne".to_owned()),
        ]
    };
    let run = |vars: &[(&str, String)], target: &str| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        site.os_command(&vars)
            .env("VMC_PUBLISH_TARGET", target)
            .args(["--json", "publish", "sync"])
            .output()
            .unwrap()
    };
    let images_in_glance = || std::fs::read_dir(site.g.images_dir()).unwrap().count();

    // A wrong password: a clear error naming Keystone, and nothing published or claimed.
    let out = run(&password_vars("not-the-password"), "by-password");
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Keystone at {auth_url}/auth/tokens refused the credentials (401)"
        )),
        "{}",
        describe(&out)
    );
    assert_eq!(site.vmc(&["--json", "publish", "list"]), json!([]));
    assert_eq!(images_in_glance(), 0);

    // The password: Glance found in the token's catalog, the image published into the
    // account's project.
    let out = run(&password_vars("vmc-user-secret"), "by-password");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["actions"][0]["action"], "publish", "{report:#}");
    assert_eq!(report["actions"][0]["outcome"], "done", "{report:#}");
    let by_password = report["actions"][0]["remote_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An application credential of the same user, by id and secret.
    let (id, secret) = ks
        .create_application_credential(&account, "vmc-publish")
        .unwrap();
    let app_vars = vec![
        ("OS_AUTH_URL", auth_url.clone()),
        ("OS_AUTH_TYPE", "v3applicationcredential".to_owned()),
        ("OS_APPLICATION_CREDENTIAL_ID", id),
        ("OS_APPLICATION_CREDENTIAL_SECRET", secret),
        ("OS_REGION_NAME", "RegionOne".to_owned()),
    ];
    let out = run(&app_vars, "by-app-credential");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["actions"][0]["action"], "publish", "{report:#}");
    let by_app = report["actions"][0]["remote_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Both are active in Glance, owned by the account's project, with the file's sha512.
    let token = ks.admin_token().unwrap();
    let listed = site.vmc(&["--json", "publish", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
    for (remote, target) in [
        (&by_password, "by-password"),
        (&by_app, "by-app-credential"),
    ] {
        let (status, image) = glance_get(
            &glance_url,
            &format!("/v2/images/{remote}"),
            &[("X-Auth-Token", token.as_str())],
        );
        assert_eq!(status, 200, "{image}");
        assert_eq!(image["status"], "active");
        assert_eq!(image["owner"], account.project_id.as_str());
        assert_eq!(image["os_hash_algo"], "sha512");
        assert_eq!(image["vmc_target"], target);
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target)
            .unwrap();
        assert_eq!(row["state"], "active");
        assert_eq!(row["remote_id"], remote.as_str());
        assert_eq!(image["os_hash_value"], row["sha512"], "{image:#} {row:#}");
    }
    assert_eq!(images_in_glance(), 2);
}
