//! A vmcatcher site moves to vmc: its database (vmcatcher's schema, built here) and cache
//! directory are imported by one command, then `vmc cache sync` runs with the site's old
//! `VMCATCHER_*` variables and its old event handler and completes the same cache; the
//! `--metrics-file` it writes parses as Prometheus text.

use std::path::{Path, PathBuf};
use std::process::Output;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Binary, Text};
use vmc_cache::store::vmcatcher::SCHEMA_SQL;

use crate::common::{
    IMAGE0, ISSUER, LIST_ID, NOW, SUBJECT, bare, describe, fixtures, image_sha512,
};

/// Image 1 of the interop lists.
const IMAGE1: &str = "a8cf1898-4ce2-49a2-973c-01fba99f95d8";
/// Image 2 of the interop lists.
const IMAGE2: &str = "71f63e65-6e0d-4669-8260-abbe8c6eb38e";
/// The list URL as vmcatcher recorded it (where the interop lists are published).
const LIST_URL: &str = "http://127.0.0.1:8000/lists/good.smime";

/// A vmcatcher site: database, cache directories, an event handler that logs what old
/// handlers read, and a loopback server publishing the interop lists and images.
struct Site {
    dir: tempfile::TempDir,
    server: vmc_testkit::server::TestServer,
}

impl Site {
    fn new() -> Site {
        let server = vmc_testkit::server::TestServer::start();
        server.serve_dir("/lists", fixtures().join("lists"));
        server.serve_dir("/images", fixtures().join("images"));
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
            server,
        };
        for d in ["cache", "partial", "expired", "home", "metrics"] {
            std::fs::create_dir_all(site.path(d)).unwrap();
        }
        site.create_database();
        // vmcatcher cached image 0; image 1 is selected but was never downloaded.
        std::fs::copy(
            fixtures().join("images/image0.img"),
            site.path("cache").join(IMAGE0),
        )
        .unwrap();
        let index = serde_json::json!({
            IMAGE0: {
                "uuid": IMAGE0,
                "filename": IMAGE0,
                "uri": "http://127.0.0.1:8000/images/image0.img",
                "size": 262_144,
                "sha512": image_sha512(0),
                "msgHash": "x",
            }
        });
        std::fs::write(site.path("cache").join("cache.index"), index.to_string()).unwrap();
        std::fs::write(
            site.path("handler.sh"),
            "#!/bin/sh\n\
             echo \"$VMCATCHER_EVENT_TYPE $VMCATCHER_EVENT_DC_IDENTIFIER ${VMCATCHER_CACHE_DIR_CACHE}${VMCATCHER_EVENT_DC_IDENTIFIER}\" >> \"$(dirname \"$0\")/events.log\"\n",
        )
        .unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn database(&self) -> PathBuf {
        self.path("vmcatcher.db")
    }

    /// vmcatcher's tables with the interop endorser, the interop subscription, good.smime as
    /// its stored list, images 0 and 1 selected for caching and image 2 not.
    fn create_database(&self) {
        let mut conn = SqliteConnection::establish(self.database().to_str().unwrap()).unwrap();
        conn.batch_execute(SCHEMA_SQL).unwrap();
        diesel::sql_query(
            "INSERT INTO subscription (id, identifier, description, uri, authorised, \
             imagelist_latest, updated, \"trustAnchor\", \"userName\", password, \"updateMode\") \
             VALUES (1, ?, 'Interop', ?, 1, 1, '2027-05-31 00:00:00', 0, NULL, NULL, 0)",
        )
        .bind::<Text, _>(LIST_ID)
        .bind::<Text, _>(LIST_URL)
        .execute(&mut conn)
        .unwrap();
        conn.batch_execute(&format!(
            r#"
            INSERT INTO endorser (id, identifier) VALUES (1, 'interop');
            INSERT INTO "endorserPrincible" (id, hv_dn, hv_ca, endorser)
                VALUES (1, '{SUBJECT}', '{ISSUER}', 1);
            INSERT INTO "subscriptionAuth" (id, subscription, endorser, authorised)
                VALUES (1, 1, 1, 1);
            INSERT INTO "ImageDefinition" (id, identifier, latest, cache, subscription)
                VALUES (1, '{IMAGE0}', 0, 1, 1), (2, '{IMAGE1}', 0, 1, 1),
                       (3, '{IMAGE2}', 0, 0, 1);
            "#
        ))
        .unwrap();
        let list = std::fs::read(fixtures().join("lists/good.smime")).unwrap();
        diesel::sql_query(
            "INSERT INTO \"imageListInstance\" (id, data, data_hash, expired, sub_auth, \
             imported, created, expires, version) VALUES (1, ?, 'x', NULL, 1, \
             '2027-05-31 00:00:00', '2027-05-01 00:00:00', '2027-07-01 00:00:00', '1.0')",
        )
        .bind::<Binary, _>(list)
        .execute(&mut conn)
        .unwrap();
    }

    /// `vmc` with the site's old vmcatcher environment (its cron job's exports), a home for
    /// the lock, and the mirror to the loopback server.
    fn vmc(&self) -> assert_cmd::Command {
        let dir = |name: &str| format!("{}/", self.path(name).display());
        let mut cmd = bare();
        cmd.env("HOME", self.path("home"))
            .env("VMC_HOME", self.path("home"))
            .env(
                "VMCATCHER_RDBMS",
                format!("sqlite:///{}", self.database().display()),
            )
            .env("VMCATCHER_DIR_CERT", fixtures().join("pki/ca-dir"))
            .env("VMCATCHER_CACHE_DIR_CACHE", dir("cache"))
            .env("VMCATCHER_CACHE_DIR_DOWNLOAD", dir("partial"))
            .env("VMCATCHER_CACHE_DIR_EXPIRE", dir("expired"))
            .env(
                "VMCATCHER_CACHE_EVENT",
                format!("sh {}", self.path("handler.sh").display()),
            )
            .arg("--mirror")
            .arg(format!("http://127.0.0.1:8000={}", self.server.base_url()));
        cmd
    }

    fn json(&self, args: &[&str], status: i32) -> serde_json::Value {
        let out = self.vmc().arg("--json").args(args).output().unwrap();
        check(&out, args, status);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", describe(&out)))
    }

    fn events(&self) -> String {
        std::fs::read_to_string(self.path("events.log")).unwrap_or_default()
    }
}

fn check(out: &Output, args: &[&str], status: i32) {
    assert_eq!(
        out.status.code(),
        Some(status),
        "{args:?}: {}",
        describe(out)
    );
}

fn ids(value: &serde_json::Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<&str>) -> Vec<String> {
    v.sort_unstable();
    v.into_iter().map(str::to_owned).collect()
}

/// The samples of a Prometheus text file, parsed strictly by `prometheus-parse`.
fn scrape(path: &Path) -> prometheus_parse::Scrape {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let data_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert_eq!(scrape.samples.len(), data_lines, "{text}");
    scrape
}

fn gauge(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{name} is not a gauge: {other:?}"),
    }
}

#[test]
fn a_vmcatcher_site_imports_once_and_syncs_with_its_old_handler_and_variables() {
    let site = Site::new();

    // One command, configured by the old environment alone.
    let out = site.vmc().arg("import-vmcatcher").output().unwrap();
    check(&out, &["import-vmcatcher"], 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("subscription\timported\t{LIST_ID}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("adopted\t{IMAGE0}\tin_place")),
        "{text}"
    );
    // VMCATCHER_RDBMS names vmc's database too: said on stderr.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("VMC_DATABASE"),
        "{}",
        describe(&out)
    );
    // The import delivers no event: vmcatcher's handler already saw these images.
    assert_eq!(site.events(), "");

    let endorsers = site.json(&["endorser", "list"], 0);
    assert_eq!(endorsers.as_array().unwrap().len(), 1);
    assert_eq!(endorsers[0]["id"], "interop");
    assert_eq!(endorsers[0]["identities"][0]["subject"], SUBJECT);
    assert_eq!(endorsers[0]["identities"][0]["issuer"], ISSUER);
    assert_eq!(endorsers[0]["subscriptions"], serde_json::json!([LIST_ID]));

    let subs = site.json(&["subscribe", "list"], 0);
    assert_eq!(subs.as_array().unwrap().len(), 1);
    assert_eq!(subs[0]["identifier"], LIST_ID);
    assert_eq!(subs[0]["url"], LIST_URL);
    assert_eq!(subs[0]["enabled"], true);
    assert_eq!(subs[0]["new_images"], "refuse");
    assert!(subs[0]["version"].is_string());
    assert!(subs[0]["last_error"].is_null());

    let selected = site.json(&["image", "list", "--selected"], 0);
    assert_eq!(ids(&selected, "identifier"), sorted(vec![IMAGE0, IMAGE1]));

    let cached = site.json(&["cache", "list"], 0);
    assert_eq!(ids(&cached, "identifier"), [IMAGE0]);
    assert_eq!(cached[0]["subscription"], LIST_ID);

    // The cron job, unchanged but for the binary: completes the cache, runs the old handler.
    let metrics = site.path("metrics").join("vmc.prom");
    let metrics_arg = metrics.to_str().unwrap();
    let synced = site.json(&["cache", "sync", "--metrics-file", metrics_arg], 0);
    assert_eq!(synced["downloaded"], serde_json::json!([IMAGE1]));
    assert_eq!(synced["failed"], serde_json::json!([]));
    assert_eq!(synced["expired"], serde_json::json!([]));
    assert_eq!(synced["subscriptions"][0]["status"], "unchanged");

    let mut files: Vec<String> = std::fs::read_dir(site.path("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, sorted(vec!["cache.index", IMAGE0, IMAGE1]));
    assert_eq!(
        std::fs::read(site.path("cache").join(IMAGE1)).unwrap(),
        std::fs::read(fixtures().join("images/image1.img")).unwrap()
    );

    // The handler saw vmcatcher's event names and could build the file path the old way.
    let events = site.events();
    let cache_dir = format!("{}/", site.path("cache").display());
    let types: Vec<&str> = events
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ProcessPrefix",
            "AvailablePrefix",
            "AvailablePostfix",
            "ProcessPostfix"
        ],
        "{events}"
    );
    for kind in ["AvailablePrefix", "AvailablePostfix"] {
        let line = format!("{kind} {IMAGE1} {cache_dir}{IMAGE1}");
        assert!(
            events.lines().any(|l| l == line),
            "{line:?} missing in\n{events}"
        );
    }
    assert!(!events.contains(IMAGE0), "{events}");
    let posted = events
        .lines()
        .find(|l| l.starts_with("AvailablePostfix"))
        .unwrap();
    assert!(Path::new(posted.rsplit(' ').next().unwrap()).is_file());

    // The metrics file: Prometheus text with the run's numbers.
    let s = scrape(&metrics);
    assert_eq!(gauge(&s, "vmc_sync_success", None), 1.0);
    assert_eq!(gauge(&s, "vmc_sync_images_downloaded", None), 1.0);
    assert_eq!(gauge(&s, "vmc_sync_downloaded_bytes", None), 524_288.0);
    assert_eq!(
        gauge(&s, "vmc_sync_lists", Some(("status", "unchanged"))),
        1.0
    );
    assert_eq!(gauge(&s, "vmc_sync_lists", Some(("status", "failed"))), 0.0);
    assert_eq!(gauge(&s, "vmc_cache_images", None), 2.0);
    assert_eq!(gauge(&s, "vmc_cache_bytes", None), 786_432.0);
    assert_eq!(gauge(&s, "vmc_sync_handler_failures", None), 0.0);
    let now = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp() as f64;
    assert_eq!(
        gauge(&s, "vmc_sync_last_success_timestamp_seconds", None),
        now
    );
    assert!(gauge(&s, "vmc_sync_duration_seconds", None) >= 0.0);
}

#[test]
fn a_failed_sync_writes_metrics_that_keep_the_last_success() {
    let site = Site::new();
    let imported = site.json(&["import-vmcatcher", "--no-fetch"], 0);
    assert_eq!(imported["endorsers"][0]["id"], "interop");
    assert_eq!(imported["endorsers"][0]["status"], "added");
    let sub = &imported["subscriptions"][0];
    assert_eq!(sub["identifier"], LIST_ID);
    assert_eq!(sub["status"], "imported");
    assert!(sub["error"].is_null() && sub["stored_list_error"].is_null());
    assert_eq!(sub["selected"].as_array().unwrap().len(), 2);
    assert_eq!(imported["adopted"][0]["identifier"], IMAGE0);
    assert_eq!(imported["adopted"][0]["how"], "in_place");
    assert_eq!(imported["skipped"], serde_json::json!([]));
    let metrics = site.path("metrics").join("vmc.prom");
    let metrics_arg = metrics.to_str().unwrap();
    site.json(&["cache", "sync", "--metrics-file", metrics_arg], 0);

    // An hour later the handler fails: the run fails, the last success stays.
    let out = site
        .vmc()
        .env("VMC_NOW", "2027-06-01T01:00:00Z")
        .env("VMCATCHER_CACHE_EVENT", "exit 3")
        .args(["cache", "sync", "--metrics-file", metrics_arg])
        .output()
        .unwrap();
    check(&out, &["cache", "sync"], 1);
    let s = scrape(&metrics);
    let first = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp() as f64;
    assert_eq!(gauge(&s, "vmc_sync_success", None), 0.0);
    assert_eq!(
        gauge(&s, "vmc_sync_last_run_timestamp_seconds", None),
        first + 3600.0
    );
    assert_eq!(
        gauge(&s, "vmc_sync_last_success_timestamp_seconds", None),
        first
    );
    assert!(gauge(&s, "vmc_sync_handler_failures", None) >= 2.0);
    // Only the .prom file is in the collector's directory (the temporary file was renamed).
    let names: Vec<_> = std::fs::read_dir(site.path("metrics"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("vmc.prom")]);
}

#[test]
fn import_without_a_vmcatcher_database_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = bare()
        .env("VMC_HOME", home.path())
        .arg("import-vmcatcher")
        .output()
        .unwrap();
    check(&out, &["import-vmcatcher"], 2);
    let out = bare()
        .env("VMC_HOME", home.path())
        .args(["import-vmcatcher", "--vmcatcher-database"])
        .arg(home.path().join("missing.db"))
        .output()
        .unwrap();
    check(&out, &["import-vmcatcher", "missing"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        describe(&out)
    );
    assert!(!home.path().join("missing.db").exists());
}

/// Issue 21, point 3: `VMCATCHER_RDBMS=sqlite:///rel/x.db` (vmcatcher's own default form) names
/// the file SQLAlchemy opens, `./rel/x.db`, for the import and for vmc's own tables alike; and
/// a database that is not there stops the import before anything is created.
#[test]
fn a_relative_vmcatcher_rdbms_names_one_file_and_nothing_is_created_before_the_checks() {
    let site = Site::new();
    // A relative directory name no other test uses, so that "/<rel>" would be this run's.
    let rel = format!("vmc-it-rel-{}", std::process::id());
    std::fs::create_dir_all(site.path(&rel)).unwrap();
    std::fs::rename(site.database(), site.path(&rel).join("vmcatcher.db")).unwrap();

    let missing = site
        .vmc()
        .current_dir(site.dir.path())
        .env("VMCATCHER_RDBMS", format!("sqlite:///{rel}/missing.db"))
        .arg("import-vmcatcher")
        .output()
        .unwrap();
    check(&missing, &["import-vmcatcher", "missing"], 2);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
        "{}",
        describe(&missing)
    );
    assert!(!site.path(&rel).join("missing.db").exists());
    assert!(!Path::new("/").join(&rel).exists(), "/{rel} was created");

    let out = site
        .vmc()
        .current_dir(site.dir.path())
        .env("VMCATCHER_RDBMS", format!("sqlite:///{rel}/vmcatcher.db"))
        .arg("import-vmcatcher")
        .output()
        .unwrap();
    check(&out, &["import-vmcatcher"], 0);
    assert!(!Path::new("/").join(&rel).exists(), "/{rel} was created");
    // vmc's tables went into the file the import read.
    let mut conn =
        SqliteConnection::establish(site.path(&rel).join("vmcatcher.db").to_str().unwrap())
            .unwrap();
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let tables: Vec<Name> =
        diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'")
            .load(&mut conn)
            .unwrap();
    assert!(
        tables.iter().any(|t| t.name == "subscriptions"),
        "vmc's tables are not in ./{rel}/vmcatcher.db"
    );

    // Handlers get VMCATCHER_RDBMS as the site wrote it, for SQLAlchemy.
    let log = site.path("rdbms.log");
    let out = site
        .vmc()
        .current_dir(site.dir.path())
        .env("VMCATCHER_RDBMS", format!("sqlite:///{rel}/vmcatcher.db"))
        .env(
            "VMCATCHER_CACHE_EVENT",
            format!("echo \"$VMCATCHER_RDBMS\" >> '{}'", log.display()),
        )
        .args(["cache", "sync"])
        .output()
        .unwrap();
    check(&out, &["cache", "sync"], 0);
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.lines()
            .all(|l| l == format!("sqlite:///{rel}/vmcatcher.db"))
            && !seen.is_empty(),
        "{seen}"
    );
    assert!(!Path::new("/").join(&rel).exists(), "/{rel} was created");
}

/// Issue 21, point 4: a vmcatcher cache directory that is not there stops the import before
/// anything is written, with a message naming it (was: exit 2 after most was committed).
#[test]
fn a_missing_vmcatcher_cache_directory_stops_the_import_before_anything_is_written() {
    let site = Site::new();
    let own = site.path("own/vmc.db");
    let out = site
        .vmc()
        .env("VMC_DATABASE", &own)
        .env("VMCATCHER_CACHE_DIR_CACHE", site.path("no-such-cache"))
        .arg("import-vmcatcher")
        .output()
        .unwrap();
    check(&out, &["import-vmcatcher"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-cache"),
        "{}",
        describe(&out)
    );
    assert!(
        !own.exists() && !site.path("own").exists(),
        "vmc's database was created"
    );
}

/// Issue 21, points 1 and 5: after an import whose stored list fails and is not fetched, the
/// subscription is found by the identifier the report printed, and `image list` shows the
/// site's selection as pending selections, which `image unsubscribe` can withdraw.
#[test]
fn a_failed_import_shows_its_pending_selections_and_its_subscription() {
    let site = Site::new();
    let mut conn = SqliteConnection::establish(site.database().to_str().unwrap()).unwrap();
    conn.batch_execute("UPDATE \"imageListInstance\" SET data = X'00';")
        .unwrap();
    drop(conn);
    let report = site.json(&["import-vmcatcher", "--no-fetch"], 1);
    let sub = &report["subscriptions"][0];
    assert_eq!(sub["status"], "failed");
    assert_eq!(sub["identifier"], LIST_ID);
    let mut pending: Vec<&str> = sub["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    pending.sort_unstable();
    assert_eq!(pending, sorted(vec![IMAGE0, IMAGE1]));

    let shown = site.json(&["subscribe", "show", LIST_ID], 0);
    assert_eq!(shown["url"], LIST_URL);

    let images = site.json(&["image", "list", "--selected"], 0);
    let rows = images.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{images}");
    for row in rows {
        assert_eq!(row["pending"], true, "{row}");
        assert_eq!(row["selected"], true, "{row}");
        assert_eq!(row["available"], false, "{row}");
        assert_eq!(row["cached"], false, "{row}");
        assert_eq!(row["subscription"], LIST_ID, "{row}");
        assert!(row["sha512"].is_null(), "{row}");
    }
    let text = site.vmc().args(["image", "list"]).output().unwrap();
    check(&text, &["image", "list"], 0);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("S--\t{IMAGE1}\t-\t-\t(pending")),
        "{}",
        describe(&text)
    );

    site.json(&["image", "unsubscribe", IMAGE1], 0);
    let images = site.json(&["image", "list"], 0);
    assert_eq!(ids(&images, "identifier"), [IMAGE0]);

    // The next sync fetches the list: IMAGE0 (pending) is selected and stays cached; IMAGE1
    // (withdrawn) is not selected; nothing expires.
    let synced = site.json(&["cache", "sync"], 0);
    assert_eq!(synced["expired"], serde_json::json!([]));
    let selected = site.json(&["image", "list", "--selected"], 0);
    assert_eq!(ids(&selected, "identifier"), [IMAGE0]);
    assert_eq!(selected[0]["pending"], false);
    assert_eq!(selected[0]["cached"], true);
}

/// Issue 21, point 5: a list signed with SHA-1 (as hepixvmitrust signs), stored by vmcatcher,
/// is said to be weak once by the import.
#[test]
fn a_sha1_list_is_warned_about_once() {
    let site = Site::new();
    let mut conn = SqliteConnection::establish(site.database().to_str().unwrap()).unwrap();
    diesel::sql_query("UPDATE \"imageListInstance\" SET data = ?")
        .bind::<Binary, _>(std::fs::read(fixtures().join("lists/good-sha1.smime")).unwrap())
        .execute(&mut conn)
        .unwrap();
    drop(conn);
    let out = site
        .vmc()
        .args(["import-vmcatcher", "--no-fetch"])
        .output()
        .unwrap();
    check(&out, &["import-vmcatcher"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("subscription\timported\t{LIST_ID}")),
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("weak digest").count(),
        1,
        "{}",
        describe(&out)
    );
}
