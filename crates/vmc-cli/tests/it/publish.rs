//! `vmc cache sync --publish`, `vmc publish sync` and `vmc publish list` through the real
//! binary, against a real Glance on 127.0.0.1 (skipped, saying so, without
//! `VMC_TEST_GLANCE_VENV`; failing under CI): a signed list of a real qcow2 image is
//! subscribed, cached, published once, listed, and expired; a `vmc publish sync` killed
//! (SIGKILL) mid-upload is repaired by the next run.

use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sha2::{Digest, Sha512};
use vmc_testkit::glance::{self, DEFAULT_PROJECT};
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
        Some(site)
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
    // Through a proxy that stops forwarding part way into the upload and hangs.
    let proxy = FaultProxy::start(site.g.addr()).unwrap();
    proxy.add_rule("PUT", "/file", ProxyFault::Stall(64 * 1024), 1);
    let mut child = site
        .command(&proxy.url())
        .args(["publish", "sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the upload has begun (the claim holds the remote image's id), then kill -9.
    let started = std::time::Instant::now();
    loop {
        let listed = site.vmc(&["--json", "publish", "list"]);
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
    let left = site.vmc(&["--json", "publish", "list"]);
    assert_eq!(left[0]["state"], "uploading", "{left:#}");
    let partial = left[0]["remote_id"].as_str().unwrap().to_owned();

    // The next run, straight to Glance, repairs: the partial image goes, one image is active.
    let run = site.vmc(&["--json", "publish", "sync"]);
    let actions: Vec<&str> = run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["repair", "publish"], "{run:#}");
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
    let proxy = FaultProxy::start(site.g.addr()).unwrap();
    proxy.add_rule("PUT", "/file", ProxyFault::Stall(64 * 1024), 1);
    let mut child = site
        .command(&proxy.url())
        .args(["--node", "node-a", "publish", "sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let listed = site.vmc(&["--json", "publish", "list"]);
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
    // `publish sync` joined the site: node-a is registered, and beat at the run's time.
    let nodes = site.vmc(&["--json", "node", "list"]);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert!(names.contains(&"node-a"), "{nodes:#}");
    let partial = site.vmc(&["--json", "publish", "list"])[0]["remote_id"]
        .as_str()
        .unwrap()
        .to_owned();

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
    let actions: Vec<&str> = run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["repair", "publish"], "{run:#}");
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
