//! Several `vmc` processes as the nodes of one site on one database, against a throttled
//! image server that counts the bytes it sends: with one cache directory for the site and with
//! a cache directory per node (copies served from each node's cache), each image leaves the
//! upstream server once and each new image is announced once; a node killed (SIGKILL) in the
//! middle of a download is taken over by another once its lease has lapsed, resuming the
//! partial file; an event whose run died before its handler finished is delivered by the next
//! run. The multi-node cases need PostgreSQL (`VMC_TEST_POSTGRES_URL`, feature `postgres`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use sha2::{Digest, Sha512};
use vmc_model::{EndorserClaim, Identifier, Image, ImageList, Version};
use vmc_testkit::pki::{CaDirOptions, TestPki};
use vmc_testkit::server::{Route, TestServer};

use crate::common::describe;

const LIST: &str = "/list.smime";
/// The most nodes a test runs.
const NODES: usize = 3;

/// The bytes of image `n` of a [`Site`].
fn image_bytes(n: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ (n * 7919) ^ (i >> 9)) as u8)
        .collect()
}

/// A signed list of `count` pseudo-random images of `size` bytes each, served at `rate`
/// bytes per second per download, and the directories of the site's nodes.
struct Site {
    pki: TestPki,
    ca: tempfile::TempDir,
    server: TestServer,
    root: tempfile::TempDir,
    images: Vec<(String, String, u64)>,
    entries: Vec<Image>,
    database: Option<String>,
    now: chrono::DateTime<Utc>,
}

impl Site {
    fn new(count: usize, size: usize, rate: u64, database: Option<String>) -> Site {
        let now = Utc::now();
        let pki = TestPki::generate(now);
        let ca = pki.ca_dir(CaDirOptions::default());
        let server = TestServer::start();
        let mut images = Vec::new();
        let mut entries = Vec::new();
        for n in 0..count {
            let bytes = image_bytes(n, size);
            let id = format!("5e7e0000-0000-4000-8000-{n:012}");
            let path = format!("/img/{id}");
            let sha512 = hex::encode(Sha512::digest(&bytes));
            server.add(&path, Route::new(bytes).throttle(rate));
            entries.push(Image::new(
                Identifier::new(&id).unwrap(),
                format!("Image {n}"),
                server.url(&path),
                size as u64,
                sha512,
                "1",
            ));
            images.push((id, path, size as u64));
        }
        let site = Site {
            pki,
            ca,
            server,
            root: tempfile::tempdir().unwrap(),
            images,
            entries,
            database,
            now,
        };
        // The site's web server serves each node's cache directory (per-node caches).
        for n in 1..=NODES {
            site.server.serve_dir(
                &format!("/node-{n}"),
                site.dir(&format!("home-{n}")).join("cache"),
            );
        }
        site.publish(1);
        site
    }

    /// Signs and serves list version `version` (created `version` minutes after the first).
    fn publish(&self, version: i64) {
        let list = ImageList {
            identifier: Identifier::new("5e7e1157-0000-4000-8000-000000000001").unwrap(),
            title: "Site test list".into(),
            description: "".into(),
            source: "https://example.org/".into(),
            created: self.now - TimeDelta::hours(1) + TimeDelta::minutes(version),
            expires: self.now + TimeDelta::days(30),
            version: Version::new(version.to_string()),
            uri: self.server.url(LIST),
            endorsers: vec![EndorserClaim {
                dn: self.pki.endorser.subject_one_line(),
                ca: self.pki.endorser.issuer_one_line(),
                creator: None,
                email: None,
                extra: serde_json::Map::new(),
            }],
            images: self.entries.clone(),
            extra: serde_json::Map::new(),
        };
        let signed = self.pki.endorser.sign_smime(&list.to_json_bytes());
        self.server.replace(LIST, Route::new(signed));
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir("events.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `vmc` as node `n`: its own home; with `shared`, the site's one cache directory.
    fn node(&self, n: usize, shared: bool) -> Command {
        let home = self.dir(&format!("home-{n}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmc"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("VMC_HOME", &home)
            .env("VMC_CA_DIR", self.ca.path())
            .env("VMC_NODE", format!("n{n}"))
            .env("VMC_LOG", "info")
            .env(
                "VMC_EVENT_HANDLER",
                format!(
                    "echo \"$VMCATCHER_EVENT_TYPE $VMCATCHER_EVENT_DC_IDENTIFIER n{n}\" >> {}",
                    self.dir("events.log").display()
                ),
            );
        if let Some(url) = &self.database {
            cmd.env("VMC_DATABASE", url);
        }
        if shared {
            cmd.env("VMC_CACHE_DIR", self.dir("cache"))
                .env("VMC_PARTIAL_DIR", self.dir("partial"))
                .env("VMC_EXPIRED_DIR", self.dir("expired"));
        } else {
            cmd.args(["--cache-mode", "per-node", "--node-url"])
                .arg(self.server.url(&format!("/node-{n}/")));
        }
        cmd
    }

    /// Adds the endorser and subscribes (node 1), selecting every image.
    fn subscribe(&self, shared: bool) {
        let subject = self.pki.endorser.subject_one_line();
        let issuer = self.pki.endorser.issuer_one_line();
        let add = [
            "endorser",
            "add",
            "--id",
            "e1",
            "--subject",
            &subject,
            "--issuer",
            &issuer,
        ];
        ok(self.node(1, shared).args(add).output().unwrap());
        let url = self.server.url(LIST);
        let sub = [
            "subscribe",
            "add",
            &url,
            "--endorser",
            "e1",
            "--new-images",
            "subscribe",
        ];
        ok(self.node(1, shared).args(sub).output().unwrap());
    }

    fn spawn_sync(&self, n: usize, shared: bool) -> Child {
        self.node(n, shared)
            .args(["--json", "cache", "sync"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn ids(&self) -> Vec<String> {
        self.images.iter().map(|(id, _, _)| id.clone()).collect()
    }

    /// Each image's size, times `times`: what the upstream server sent when each image left
    /// it `times` times.
    fn sizes(&self, times: u64) -> Vec<u64> {
        self.images.iter().map(|(_, _, s)| times * s).collect()
    }

    fn unsubscribe(&self, shared: bool) {
        let url = self.server.url(LIST);
        ok(self
            .node(1, shared)
            .args(["subscribe", "remove", &url])
            .output()
            .unwrap());
    }

    fn upstream_bytes(&self) -> Vec<u64> {
        self.images
            .iter()
            .map(|(_, path, _)| self.server.bytes_sent(path))
            .collect()
    }

    fn count(&self, event: &str) -> usize {
        self.events()
            .iter()
            .filter(|l| l.split(' ').next() == Some(event))
            .count()
    }
}

/// A child process killed and reaped when dropped: a failing assertion leaves none behind.
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn ok(out: Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && n != "cache.index")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A fresh PostgreSQL schema for `name`, or `None` (reported as skipped) without a server.
#[cfg(feature = "postgres")]
fn postgres(name: &str) -> Option<(String, impl Drop)> {
    use diesel::{Connection, connection::SimpleConnection};
    let Ok(admin) = std::env::var("VMC_TEST_POSTGRES_URL") else {
        vmc_testkit::skip::skipped(
            "VMC_TEST_POSTGRES_URL is not set: no PostgreSQL server to test on (.ci/run starts one)",
        );
        return None;
    };
    let schema = format!("{name}_{}", std::process::id());
    let mut conn = diesel::PgConnection::establish(&admin).unwrap();
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    ))
    .unwrap();
    struct Dropper(diesel::PgConnection, String);
    impl Drop for Dropper {
        fn drop(&mut self) {
            let _ = self
                .0
                .batch_execute(&format!("DROP SCHEMA {} CASCADE;", self.1));
        }
    }
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some((
        format!("{admin}{sep}options=-csearch_path%3D{schema}"),
        Dropper(conn, schema),
    ))
}

#[cfg(not(feature = "postgres"))]
fn postgres(_name: &str) -> Option<(String, ())> {
    vmc_testkit::skip::skipped("the multi-node tests need the cargo feature `postgres`");
    None
}

/// Runs three nodes' `cache sync` at once and returns their JSON reports.
fn three_syncs(site: &Site, shared: bool) -> Vec<serde_json::Value> {
    let children: Vec<Child> = (1..=3).map(|n| site.spawn_sync(n, shared)).collect();
    children
        .into_iter()
        .map(|c| ok(c.wait_with_output().unwrap()))
        .collect()
}

#[test]
fn three_nodes_sharing_one_cache_directory_download_each_image_once() {
    let Some((url, _db)) = postgres("site_shared") else {
        return;
    };
    let site = Site::new(6, 256 * 1024, 1024 * 1024, Some(url));
    site.subscribe(true);
    let reports = three_syncs(&site, true);
    let sizes = site.sizes(1);
    assert_eq!(site.upstream_bytes(), sizes, "{reports:#?}");
    let ids = site.ids();
    assert_eq!(files(&site.dir("cache")), ids);
    let downloaded: usize = reports
        .iter()
        .map(|r| r["downloaded"].as_array().unwrap().len())
        .sum();
    assert_eq!(downloaded, 6, "{reports:#?}");
    assert_eq!(site.count("AvailablePrefix"), 6, "{:#?}", site.events());
    assert_eq!(site.count("AvailablePostfix"), 6, "{:#?}", site.events());
    // A second round has nothing to do: nothing downloaded, nothing announced, nothing expired.
    let again = three_syncs(&site, true);
    assert_eq!(site.upstream_bytes(), sizes, "{again:#?}");
    assert_eq!(site.count("AvailablePostfix"), 6);
    assert_eq!(site.count("ExpirePostfix"), 0);
    // Unsubscribed: the three nodes expire at once; one does (the `expire` lease), once.
    site.unsubscribe(true);
    three_syncs(&site, true);
    assert!(files(&site.dir("cache")).is_empty());
    assert_eq!(files(&site.dir("expired")).len(), 6);
    assert_eq!(site.count("ExpirePrefix"), 6, "{:#?}", site.events());
    assert_eq!(site.count("ExpirePostfix"), 6, "{:#?}", site.events());
}

#[test]
fn three_nodes_updating_at_once_store_a_new_list_version_once() {
    let Some((url, _db)) = postgres("site_update") else {
        return;
    };
    let site = Site::new(1, 1024, 1024 * 1024, Some(url));
    site.subscribe(true);
    for version in 2..=4 {
        site.publish(version);
        // No refresh interval: every node that gets the list's lease fetches it.
        let children: Vec<Child> = (1..=3)
            .map(|n| {
                site.node(n, true)
                    .args(["--refresh-interval", "0", "--json", "subscribe", "update"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut statuses: Vec<String> = children
            .into_iter()
            .map(|c| ok(c.wait_with_output().unwrap())["subscriptions"][0]["status"].to_string())
            .collect();
        statuses.sort();
        let updated = statuses.iter().filter(|s| *s == "\"updated\"").count();
        assert_eq!(updated, 1, "version {version}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| ["\"updated\"", "\"unchanged\"", "\"skipped\""].contains(&s.as_str())),
            "{statuses:?}"
        );
    }
    let shown = ok(site
        .node(1, true)
        .args(["--json", "subscribe", "show", &site.server.url(LIST)])
        .output()
        .unwrap());
    assert_eq!(shown["version"], "4", "{shown:#}");
}

#[test]
fn three_nodes_with_their_own_caches_fetch_each_image_once_from_upstream() {
    let Some((url, _db)) = postgres("site_per_node") else {
        return;
    };
    let site = Site::new(6, 256 * 1024, 1024 * 1024, Some(url));
    site.subscribe(false);
    let reports = three_syncs(&site, false);
    let sizes = site.sizes(1);
    assert_eq!(site.upstream_bytes(), sizes, "{reports:#?}");
    let ids = site.ids();
    for n in 1..=3 {
        let cache = site.dir(&format!("home-{n}")).join("cache");
        assert_eq!(files(&cache), ids, "node {n}: {reports:#?}");
    }
    let copied: usize = reports
        .iter()
        .map(|r| r["from_peers"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(copied, 12, "two nodes copy each of 6 images: {reports:#?}");
    // Once per site: the node that fetched from upstream announces; copies are silent.
    assert_eq!(site.count("AvailablePostfix"), 6, "{:#?}", site.events());
    // Unsubscribing expires each node's copy; the expiry is announced once per image.
    site.unsubscribe(false);
    three_syncs(&site, false);
    for n in 1..=3 {
        let cache = site.dir(&format!("home-{n}")).join("cache");
        assert!(files(&cache).is_empty(), "node {n}");
    }
    assert_eq!(site.count("ExpirePostfix"), 6, "{:#?}", site.events());
}

#[test]
fn per_node_events_and_nodes_that_serve_no_copies() {
    let Some((url, _db)) = postgres("site_events") else {
        return;
    };
    let site = Site::new(3, 128 * 1024, 1024 * 1024, Some(url));
    site.subscribe(false);
    let ids = site.ids();
    let sizes = site.sizes(1);
    // With --events node, each node's handler hears of its own copy.
    for n in 1..=2 {
        let report = ok(site
            .node(n, false)
            .args(["--events", "node", "--json", "cache", "sync"])
            .output()
            .unwrap());
        assert_eq!(
            report["downloaded"].as_array().unwrap().len(),
            3,
            "{report:#}"
        );
    }
    assert_eq!(site.upstream_bytes(), sizes);
    for n in 1..=2 {
        assert_eq!(files(&site.dir(&format!("home-{n}")).join("cache")), ids);
    }
    assert_eq!(site.count("AvailablePostfix"), 6, "{:#?}", site.events());
    let from_n2 = site
        .events()
        .iter()
        .filter(|l| l.starts_with("AvailablePostfix") && l.ends_with(" n2"))
        .count();
    assert_eq!(from_n2, 3, "n2 announced its copies: {:#?}", site.events());
    // Nodes that serve no copies (no --node-url) fetch from upstream themselves, at once,
    // without waiting for each other; the site hears of each image once.
    let Some((url, _db2)) = postgres("site_plain") else {
        return;
    };
    let plain = Site::new(3, 256 * 1024, 512 * 1024, Some(url));
    plain.subscribe(false);
    let children: Vec<Child> = (1..=2)
        .map(|n| {
            let mut cmd = plain.node(n, true);
            cmd.env_remove("VMC_CACHE_DIR")
                .env_remove("VMC_PARTIAL_DIR")
                .env_remove("VMC_EXPIRED_DIR")
                .env("VMC_CACHE_MODE", "per-node")
                .args(["--json", "cache", "sync"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        ok(child.wait_with_output().unwrap());
        let cache = plain.dir(&format!("home-{}", n + 1)).join("cache");
        assert_eq!(files(&cache), plain.ids());
    }
    assert_eq!(plain.upstream_bytes(), plain.sizes(2));
    assert_eq!(plain.count("AvailablePostfix"), 3, "{:#?}", plain.events());
}

#[test]
fn a_bad_copy_in_a_peers_cache_is_refused_and_fetched_from_upstream() {
    let Some((url, _db)) = postgres("site_bad_copy") else {
        return;
    };
    let site = Site::new(1, 64 * 1024, 10 * 1024 * 1024, Some(url));
    site.subscribe(false);
    ok(site
        .node(1, false)
        .args(["cache", "sync"])
        .output()
        .unwrap());
    // Node 1's copy rots (same size, one byte changed) without node 1 noticing.
    let id = site.ids().remove(0);
    let copy = site.dir("home-1").join("cache").join(&id);
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let report = ok(site
        .node(2, false)
        .args(["--json", "cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(report["downloaded"], serde_json::json!([id]), "{report:#}");
    assert!(report.get("from_peers").is_none(), "{report:#}");
    assert_eq!(site.upstream_bytes(), site.sizes(2));
    let fetched = std::fs::read(site.dir("home-2").join("cache").join(&id)).unwrap();
    assert_eq!(
        hex::encode(Sha512::digest(&fetched)),
        site.entries[0].sha512,
        "node 2 holds the good bytes"
    );
}

#[test]
fn a_failed_first_download_does_not_take_the_sites_announcement() {
    let Some((url, _db)) = postgres("site_failed_first") else {
        return;
    };
    let size = 32 * 1024;
    let site = Site::new(1, size, 10 * 1024 * 1024, Some(url));
    site.subscribe(false);
    let (id, path, _) = site.images[0].clone();
    // Upstream serves garbage to node 1: refused, nothing cached, nothing announced.
    site.server.replace(&path, Route::new(vec![0u8; size]));
    let out = site
        .node(1, false)
        .args(["cache", "sync"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(site.count("AvailablePostfix"), 0);
    // Fixed upstream: node 2's download is the site's first copy, and is announced.
    site.server.replace(&path, Route::new(image_bytes(0, size)));
    ok(site
        .node(2, false)
        .args(["cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(files(&site.dir("home-2").join("cache")), vec![id]);
    assert_eq!(site.count("AvailablePostfix"), 1, "{:#?}", site.events());
}

/// `cache sync` of node 1 (per-node caches) with a handler that logs each event and runs the
/// shell command `action` at `AvailablePrefix`.
fn sync_doing_at_available_prefix(site: &Site, action: &str) -> Output {
    let handler = format!(
        "echo \"$VMCATCHER_EVENT_TYPE $VMCATCHER_EVENT_DC_IDENTIFIER n1\" >> {log}; \
         [ \"$VMCATCHER_EVENT_TYPE\" = AvailablePrefix ] && {action}; true",
        log = site.dir("events.log").display()
    );
    site.node(1, false)
        .env("VMC_EVENT_HANDLER", handler)
        .args(["cache", "sync"])
        .output()
        .unwrap()
}

/// A node whose verified copy cannot enter its cache (here its handler deletes the file at
/// `AvailablePrefix`) gives the site's announcement back: the next node's copy is announced.
#[test]
fn a_copy_that_fails_to_enter_the_cache_gives_the_sites_announcement_back() {
    let Some((url, _db)) = postgres("site_failed_admit") else {
        return;
    };
    let site = Site::new(1, 32 * 1024, 10 * 1024 * 1024, Some(url));
    site.subscribe(false);
    let id = site.images[0].0.clone();
    let out = sync_doing_at_available_prefix(
        &site,
        "rm -f \"${VMCATCHER_CACHE_DIR_DOWNLOAD}${VMCATCHER_EVENT_DC_IDENTIFIER}\"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let available = || -> Vec<String> {
        site.events()
            .into_iter()
            .filter(|e| e.starts_with("Available"))
            .collect()
    };
    assert_eq!(
        available(),
        [
            format!("AvailablePrefix {id} n1"),
            format!("AvailableFailed {id} n1")
        ]
    );
    ok(site
        .node(2, false)
        .args(["cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(files(&site.dir("home-2").join("cache")), vec![id.clone()]);
    assert_eq!(
        available()[2..],
        [
            format!("AvailablePrefix {id} n2"),
            format!("AvailablePostfix {id} n2")
        ]
    );
}

/// A node that claimed the site's announcement and died before its copy entered the cache
/// (SIGKILLed by its handler at `AvailablePrefix`) announces it on its next run: the claim is
/// its own.
#[test]
fn a_node_killed_after_claiming_the_announcement_makes_it_on_its_next_run() {
    let Some((url, _db)) = postgres("site_claim_then_die") else {
        return;
    };
    let site = Site::new(1, 32 * 1024, 10 * 1024 * 1024, Some(url));
    site.subscribe(false);
    let id = site.images[0].0.clone();
    let out = sync_doing_at_available_prefix(&site, "kill -9 $PPID");
    assert_eq!(out.status.code(), None, "killed: {}", describe(&out));
    assert!(files(&site.dir("home-1").join("cache")).is_empty());
    ok(site
        .node(1, false)
        .args(["cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(files(&site.dir("home-1").join("cache")), vec![id.clone()]);
    assert_eq!(site.count("AvailablePostfix"), 1, "{:#?}", site.events());
    // The other node's copy is not the site's news.
    ok(site
        .node(2, false)
        .args(["cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(files(&site.dir("home-2").join("cache")), vec![id]);
    assert_eq!(site.count("AvailablePostfix"), 1, "{:#?}", site.events());
}

#[test]
fn a_node_killed_mid_download_is_taken_over_after_its_lease_time() {
    let Some((url, _db)) = postgres("site_sigkill") else {
        return;
    };
    let size = 3 * 1024 * 1024;
    let site = Site::new(1, size, 512 * 1024, Some(url));
    site.subscribe(true);
    let (id, path, _) = site.images[0].clone();
    let lease = ["--lease-time", "3"];
    let mut victim = site
        .node(1, true)
        .args(lease)
        .args(["cache", "sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = site.dir("partial").join(&id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial.metadata().map_or(0, |m| m.len()) < 512 * 1024 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let before = site.server.bytes_sent(&path);
    // Within the lease time the image is the dead node's: the survivor leaves it alone.
    let report = ok(site
        .node(2, true)
        .args(lease)
        .args(["--json", "cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(report["left_to_others"][0]["node"], "n1", "{report:#}");
    assert!(files(&site.dir("cache")).is_empty());
    std::thread::sleep(Duration::from_millis(3500));
    let report = ok(site
        .node(2, true)
        .args(lease)
        .args(["--json", "cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(report["downloaded"], serde_json::json!([id]), "{report:#}");
    assert_eq!(files(&site.dir("cache")), vec![id.clone()]);
    // Resumed where the dead node stopped: what the survivor fetched is the rest of the file.
    let after = site.server.bytes_sent(&path);
    assert!(
        after - before < size as u64,
        "the survivor fetched {} bytes of {size}",
        after - before
    );
    assert_eq!(site.count("AvailablePostfix"), 1, "{:#?}", site.events());
}

/// A second home under the name of a node that is running now is refused (exit 2), naming
/// that run, and does not take the name over; once the run has ended the name is free.
#[test]
fn a_second_home_under_a_running_nodes_name_is_refused() {
    let Some((url, _db)) = postgres("site_same_name") else {
        return;
    };
    let site = Site::new(1, 3 * 1024 * 1024, 512 * 1024, Some(url));
    site.subscribe(true);
    let (id, _, _) = site.images[0].clone();
    let mut running = Reaped(Some(site.spawn_sync(1, true)));
    let pid = running.0.as_ref().map(Child::id).unwrap();
    let partial = site.dir("partial").join(&id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial.metadata().map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = site
        .node(2, true)
        .env("VMC_NODE", "n1")
        .args(["cache", "sync"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let said = crate::common::stderr(&out);
    assert!(
        said.contains("node name \"n1\" is in use by a run on host ")
            && said.contains(&format!("(pid {pid}, cache sync, last seen "))
            && said.contains("--node / VMC_NODE"),
        "{}",
        describe(&out)
    );
    // It did not take the name over: the node is still the running process.
    let nodes = ok(site
        .node(3, true)
        .args(["--json", "node", "list"])
        .output()
        .unwrap());
    assert_eq!(nodes[0]["name"], "n1", "{nodes:#}");
    assert_eq!(nodes[0]["pid"], pid, "{nodes:#}");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes:#}");
    let first = running.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    // The run ended (its node idle): the name is free.
    let report = ok(site
        .node(2, true)
        .env("VMC_NODE", "n1")
        .args(["--json", "cache", "sync"])
        .output()
        .unwrap());
    assert_eq!(report["downloaded"], serde_json::json!([]), "{report:#}");
}

#[test]
fn an_event_whose_run_died_in_its_handler_is_delivered_by_the_next_run() {
    let site = Site::new(1, 64 * 1024, 10 * 1024 * 1024, None);
    site.subscribe(true);
    let hang = site.dir("hang");
    let started = site.dir("handler.pid");
    std::fs::write(&hang, "").unwrap();
    // The handler hangs on AvailablePostfix while `hang` exists, after writing its pid.
    let handler = format!(
        "if [ \"$VMCATCHER_EVENT_TYPE\" = AvailablePostfix ] && [ -e {hang} ]; then \
         echo $$ > {started}.tmp && mv {started}.tmp {started}; sleep 600; fi; \
         echo \"$VMCATCHER_EVENT_TYPE $VMCATCHER_EVENT_DC_IDENTIFIER\" >> {log}",
        hang = hang.display(),
        started = started.display(),
        log = site.dir("events.log").display()
    );
    let mut run = site
        .node(1, true)
        .env("VMC_EVENT_HANDLER", &handler)
        .args(["cache", "sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the handler never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The run dies with its handler: the image is cached, its AvailablePostfix undelivered.
    run.kill().unwrap();
    run.wait().unwrap();
    let pid = std::fs::read_to_string(&started).unwrap();
    // The handler runs in a process group of its own: kill it all.
    Command::new("kill")
        .args(["-9", "--", &format!("-{}", pid.trim())])
        .status()
        .unwrap();
    std::fs::remove_file(&hang).unwrap();
    let id = site.images[0].0.clone();
    assert_eq!(files(&site.dir("cache")), vec![id.clone()]);
    assert_eq!(site.count("AvailablePostfix"), 0, "{:#?}", site.events());
    // The next run replays it, once; a third run has nothing left to replay.
    for _ in 0..2 {
        let out = site
            .node(1, true)
            .env("VMC_EVENT_HANDLER", &handler)
            .args(["cache", "sync"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }
    let postfix: Vec<String> = site
        .events()
        .into_iter()
        .filter(|l| l.starts_with("AvailablePostfix"))
        .collect();
    assert_eq!(postfix, vec![format!("AvailablePostfix {id}")]);
}

#[test]
fn node_options_that_cannot_work_are_refused_before_anything_is_written() {
    let home = tempfile::tempdir().unwrap();
    let refused = [
        (
            vec!["--events", "node", "cache", "sync"],
            "--events node needs --cache-mode per-node",
        ),
        (
            vec![
                "--cache-mode",
                "per-node",
                "--node-url",
                "ftp://hv-01/cache/",
                "cache",
                "sync",
            ],
            "--node-url \"ftp://hv-01/cache/\": expected an http:// or https:// URL with a host",
        ),
        (
            vec!["--node-url", "http://", "cache", "sync"],
            "--node-url \"http://\": expected an http:// or https:// URL with a host",
        ),
    ];
    for (args, message) in refused {
        let out = crate::common::bare()
            .env("VMC_HOME", home.path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            crate::common::stderr(&out).contains(message),
            "{args:?}: {}",
            describe(&out)
        );
    }
    assert_eq!(files(home.path()), Vec::<String>::new(), "nothing written");
}
