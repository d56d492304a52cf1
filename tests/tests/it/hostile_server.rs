//! A hostile server: every fault of the test server (truncation, reset, stall past the
//! timeout, wrong length, endless body, redirect loop, 5xx storms, a list over 16 MiB) on
//! images and lists. Each faulty item fails with a clear error and its code, the run goes on
//! with the others, and nothing unverified enters the cache.
//!
//! Stalls are tested at the library level with a short `Config::http.read_timeout`, and once
//! through the CLI's `--timeout`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use vmc_cache::store::ImageFilter;
use vmc_cache::{Dispatcher, NoProgress, SyncOptions, UpdateStatus, Vmc};
use vmc_model::{ErrorCode, NewImagePolicy};
use vmc_testkit::server::{Auth, Fault, Route};

use crate::common::{Img, LIST_ID, World, describe, image_bytes, listing, sha512_hex};

const SIZE: usize = 256 * 1024;

/// Checks that the cache holds exactly `ids` (plus `cache.index`), each file verified, and
/// that the database agrees (`cache list`, `cache verify`).
pub fn assert_cache_holds(w: &World, images: &[&Img]) {
    let mut expected: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    expected.push("cache.index".into());
    expected.sort();
    assert_eq!(listing(&w.cache_dir()), expected, "files in the cache");
    for img in images {
        let bytes = std::fs::read(w.cache_dir().join(&img.id)).unwrap();
        assert_eq!(
            sha512_hex(&bytes),
            img.sha512(),
            "{} in the cache is not the verified image",
            img.id
        );
    }
    let listed = w.json(&["cache", "list"], 0);
    let mut listed: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["identifier"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    assert_eq!(
        listed, ids,
        "`vmc cache list` disagrees with the cache directory"
    );
    let out = w.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

fn failures(report: &Value) -> BTreeMap<String, (String, String)> {
    report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["identifier"].as_str().unwrap().to_owned(),
                (
                    f["error"]["code"].as_str().unwrap().to_owned(),
                    f["error"]["message"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn cli_sync_survives_every_image_and_list_fault() {
    let w = World::new();
    w.cli_endorser();
    // Images that must end up cached despite a passing fault, and images that must fail.
    let good: Vec<(Img, Route)> = vec![
        ("ok", Route::new(Vec::new())),
        (
            "truncated-once",
            Route::new(Vec::new()).fault_for(Fault::TruncateAt(50_000), 1),
        ),
        (
            "reset-once",
            Route::new(Vec::new()).fault_for(Fault::ResetAt(50_000), 1),
        ),
        (
            "fails-twice",
            Route::new(Vec::new()).fault(Fault::FailTimes {
                status: 500,
                times: 2,
            }),
        ),
        (
            "stalls-briefly",
            Route::new(Vec::new()).fault(Fault::StallAt(10_000, Duration::from_millis(300))),
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (id, route))| (Img::new(id, 100 + i as u64, SIZE), route))
    .collect();
    let bad: Vec<(Img, Route, &str)> = vec![
        (
            "truncated",
            Route::new(Vec::new()).fault(Fault::TruncateAt(50_000)),
            "fetch_failed",
        ),
        (
            "reset",
            Route::new(Vec::new()).fault(Fault::ResetAt(50_000)),
            "fetch_failed",
        ),
        (
            "longer-length",
            Route::new(Vec::new()).fault(Fault::WrongContentLength(SIZE as u64 + 1000)),
            "size_mismatch",
        ),
        (
            "shorter-length",
            Route::new(Vec::new()).fault(Fault::WrongContentLength(SIZE as u64 - 1000)),
            "size_mismatch",
        ),
        (
            "endless",
            Route::new(Vec::new()).fault(Fault::EndlessBody),
            "size_mismatch",
        ),
        (
            "redirect-loop",
            Route::redirect("/img/redirect-loop"),
            "fetch_failed",
        ),
        (
            "storm",
            Route::new(Vec::new()).fault(Fault::FailTimes {
                status: 503,
                times: 1000,
            }),
            "fetch_failed",
        ),
        (
            "forbidden",
            Route::new(Vec::new()).status(403),
            "fetch_failed",
        ),
        (
            "corrupt",
            Route::new(image_bytes(999, SIZE)),
            "checksum_mismatch",
        ),
        (
            "short-file",
            Route::new(image_bytes(998, SIZE / 2)),
            "size_mismatch",
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (id, route, code))| (Img::new(id, 200 + i as u64, SIZE), route, code))
    .collect();
    let missing = Img::new("not-found", 300, SIZE);

    let mut entries = Vec::new();
    for (img, _) in &good {
        entries.push(w.image_entry(img));
    }
    for (img, _, _) in &bad {
        entries.push(w.image_entry(img));
    }
    entries.push(w.image_entry(&missing));
    w.publish("/list", &w.list(LIST_ID, "1", entries));
    let out = w.run(&[
        "subscribe",
        "add",
        &w.server.url("/list"),
        "--endorser",
        "e1",
        "--new-images",
        "subscribe",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // Lists that go bad after subscribing (non-transient faults, so no retry delays here;
    // the transient ones are covered at the library level with a short backoff).
    let list_faults: Vec<(&str, Route)> = vec![
        ("huge", Route::new(vec![b' '; 17 << 20])),
        ("endless", Route::new(Vec::new()).fault(Fault::EndlessBody)),
        ("loop", Route::redirect("/lists/loop")),
        (
            "announced-huge",
            Route::new(vec![b' '; 10]).fault(Fault::WrongContentLength(1 << 30)),
        ),
    ];
    for (name, _) in &list_faults {
        let path = format!("/lists/{name}");
        w.publish(&path, &w.list(&format!("list-{name}"), "1", Vec::new()));
        let out = w.run(&["subscribe", "add", &w.server.url(&path), "--endorser", "e1"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));
    }
    for (name, route) in &list_faults {
        w.server.replace(&format!("/lists/{name}"), route.clone());
    }
    for (img, route) in &good {
        let mut route = route.clone();
        route.body = Arc::clone(&img.bytes);
        w.server.add(&img.path(), route);
    }
    for (img, route, _) in &bad {
        let mut route = route.clone();
        if route.body.is_empty() {
            route.body = Arc::clone(&img.bytes);
        }
        w.server.add(&img.path(), route);
    }

    let out = w
        .cmd()
        .args(["--json", "cache", "sync", "--jobs", "32"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = failures(&report);
    for (img, _, code) in &bad {
        let (got, message) = failed
            .get(&img.id)
            .unwrap_or_else(|| panic!("{} did not fail: {report:#}", img.id));
        assert_eq!(got, code, "{}: {message}", img.id);
        assert!(
            message.contains("127.0.0.1") || message.contains("sha512") || message.contains("size"),
            "{}: the message names no URL nor what is wrong: {message}",
            img.id
        );
    }
    assert_eq!(failed["not-found"].0, "fetch_failed");
    assert!(
        failed["not-found"].1.contains("404"),
        "{:?}",
        failed["not-found"]
    );
    assert_eq!(failed.len(), bad.len() + 1, "{report:#}");
    let mut downloaded: Vec<&str> = report["downloaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    downloaded.sort_unstable();
    let mut expected: Vec<&str> = good.iter().map(|(i, _)| i.id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(downloaded, expected, "{report:#}");
    for s in report["subscriptions"].as_array().unwrap() {
        let id = s["identifier"].as_str().unwrap_or_default();
        if id == LIST_ID {
            assert_eq!(s["status"], "unchanged", "{s}");
        } else {
            assert_eq!(s["status"], "failed", "{s}");
            assert_eq!(s["error"]["code"], "fetch_failed", "{s}");
        }
    }
    // The text form names each code too.
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");

    let cached: Vec<&Img> = good.iter().map(|(i, _)| i).collect();
    assert_cache_holds(&w, &cached);
    // Resuming: the images hit by one fault were not fetched twice.
    for (img, _) in &good[1..3] {
        let sent = w.server.bytes_sent(&img.path());
        assert!(
            sent <= SIZE as u64 + 64 * 1024,
            "{}: {sent} bytes sent for a {SIZE}-byte image",
            img.id
        );
    }
    // The failed lists kept their version.
    let subs = w.json(&["subscribe", "list"], 0);
    for s in subs.as_array().unwrap() {
        assert_eq!(s["version"], "1", "{s}");
    }

    // The server behaves again: the next sync fetches the rest and exits 0.
    for (img, _, _) in &bad {
        w.server
            .replace(&img.path(), Route::new(Arc::clone(&img.bytes)));
    }
    w.server
        .add(&missing.path(), Route::new(Arc::clone(&missing.bytes)));
    for (name, _) in &list_faults {
        let path = format!("/lists/{name}");
        w.publish(&path, &w.list(&format!("list-{name}"), "2", Vec::new()));
    }
    let out = w.run(&["cache", "sync", "--jobs", "32"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut all: Vec<&Img> = good.iter().map(|(i, _)| i).collect();
    all.extend(bad.iter().map(|(i, _, _)| i));
    all.push(&missing);
    assert_cache_holds(&w, &all);
}

#[test]
fn cli_timeout_gives_up_on_a_stall_the_default_would_wait_out() {
    let w = World::new();
    w.cli_endorser();
    let stalled = Img::new("stalled", 400, SIZE);
    let plain = Img::new("plain", 401, SIZE);
    let entries = vec![w.image_entry(&stalled), w.image_entry(&plain)];
    w.publish("/list", &w.list(LIST_ID, "1", entries));
    let url = w.server.url("/list");
    let out = w.run(&[
        "subscribe",
        "add",
        &url,
        "--endorser",
        "e1",
        "--new-images",
        "subscribe",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A 5 s pause: the default (60 s without data) would wait it out.
    w.server.add(
        &stalled.path(),
        Route::new(Arc::clone(&stalled.bytes)).fault(Fault::StallAt(1000, Duration::from_secs(5))),
    );
    w.server
        .add(&plain.path(), Route::new(Arc::clone(&plain.bytes)));

    let out = w
        .cmd()
        .args(["--timeout", "0", "cache", "sync"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--timeout 0"),
        "{}",
        describe(&out)
    );

    let out = w
        .cmd()
        .args(["--json", "--timeout", "1", "cache", "sync"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (code, message) = &failed["stalled"];
    assert_eq!(code, "fetch_failed");
    assert!(message.contains("timed out"), "{message}");
    assert_cache_holds(&w, &[&plain]);
}

/// A world whose client gives up fast: one retry after 10 ms, 1 s read timeout, 3 s per list.
fn impatient(w: &World) -> Vmc {
    let mut config = w.config();
    config.http.retries = 1;
    config.http.backoff = Duration::from_millis(10);
    config.http.read_timeout = Duration::from_secs(1);
    config.http.list_timeout = Duration::from_secs(3);
    Vmc::open(config).unwrap()
}

#[test]
fn list_faults_fail_the_list_alone_and_keep_its_version() {
    let w = World::new();
    let vmc = impatient(&w);
    vmc.store().add_endorser("e1", &[w.identity()]).unwrap();
    let faults: Vec<(&str, Route)> = vec![
        (
            "truncated",
            Route::new(Vec::new()).fault(Fault::TruncateAt(100)),
        ),
        ("reset", Route::new(Vec::new()).fault(Fault::ResetAt(100))),
        (
            "stalled",
            Route::new(Vec::new()).fault(Fault::StallAt(100, Duration::from_secs(8))),
        ),
        ("slow-drip", Route::new(Vec::new()).throttle(200)),
        (
            "longer-length",
            Route::new(Vec::new()).fault(Fault::WrongContentLength(1 << 20)),
        ),
        ("endless", Route::new(Vec::new()).fault(Fault::EndlessBody)),
        ("loop", Route::redirect("/lists/loop")),
        (
            "storm",
            Route::new(Vec::new()).fault(Fault::FailTimes {
                status: 502,
                times: 1000,
            }),
        ),
        ("huge", Route::new(vec![b'x'; (16 << 20) + 1])),
        ("gone", Route::new(Vec::new()).status(404)),
        (
            "private",
            Route::new(Vec::new()).auth(Auth::Bearer("nope".into())),
        ),
    ];
    let dispatcher = Dispatcher::new(vmc.config());
    let mut bodies = Vec::new();
    for (name, _) in faults
        .iter()
        .map(|(n, r)| (*n, r))
        .chain([("healthy", &Route::new(Vec::new()))])
    {
        let path = format!("/lists/{name}");
        let doc = w.list(&format!("list-{name}"), "1", Vec::new());
        w.publish(&path, &doc);
        let report = vmc
            .subscribe(
                &crate::common::request(&w.server.url(&path), NewImagePolicy::Subscribe),
                &dispatcher,
            )
            .unwrap();
        assert_eq!(
            report.status,
            UpdateStatus::Added,
            "{name}: {:?}",
            report.error
        );
        bodies.push(
            serde_json::to_vec_pretty(&w.list(&format!("list-{name}"), "2", Vec::new())).unwrap(),
        );
    }
    for ((name, route), body) in faults.iter().zip(&bodies) {
        let mut route = route.clone();
        if route.body.is_empty() {
            route.body = w.sign(body).into();
        }
        w.server.replace(&format!("/lists/{name}"), route);
    }
    w.publish("/lists/healthy", &w.list("list-healthy", "2", Vec::new()));

    let reports = vmc.update_all(None, &dispatcher, &NoProgress).unwrap();
    assert_eq!(reports.len(), faults.len() + 1);
    for r in &reports {
        let sub = vmc.store().find_subscription(&r.url).unwrap().unwrap();
        let version = sub.current.as_ref().map(|c| c.version.as_str());
        if r.url.ends_with("/healthy") {
            assert_eq!(r.status, UpdateStatus::Updated, "{:?}", r.error);
            assert_eq!(version, Some("2"));
        } else {
            let e = r
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{}: no error", r.url));
            assert_eq!(e.code, ErrorCode::FetchFailed, "{}: {}", r.url, e.message);
            assert!(e.message.contains("127.0.0.1"), "{}: {}", r.url, e.message);
            assert_eq!(version, Some("1"), "{}", r.url);
            assert_eq!(
                sub.last_error.map(|e| e.code),
                Some(ErrorCode::FetchFailed),
                "{}",
                r.url
            );
        }
    }
}

#[test]
fn a_stalled_image_times_out_and_the_others_are_cached() {
    let w = World::new();
    let vmc = impatient(&w);
    let stalled = Img::new("stalled", 1, SIZE);
    let brief = Img::new("brief-stall", 2, SIZE);
    let plain = Img::new("plain", 3, SIZE);
    let entries = vec![
        w.image_entry(&stalled),
        w.image_entry(&brief),
        w.image_entry(&plain),
    ];
    w.publish("/list", &w.list(LIST_ID, "1", entries));
    w.subscribe(&vmc, "/list", NewImagePolicy::Subscribe);
    w.server.add(
        &stalled.path(),
        Route::new(Arc::clone(&stalled.bytes)).fault(Fault::StallAt(1000, Duration::from_secs(8))),
    );
    w.server.add(
        &brief.path(),
        Route::new(Arc::clone(&brief.bytes))
            .fault(Fault::StallAt(1000, Duration::from_millis(300))),
    );
    w.server
        .add(&plain.path(), Route::new(Arc::clone(&plain.bytes)));
    let report = vmc
        .sync(
            &SyncOptions {
                jobs: 3,
                ..SyncOptions::default()
            },
            &NoProgress,
        )
        .unwrap();
    let mut downloaded = report.downloaded.clone();
    downloaded.sort();
    assert_eq!(downloaded, ["brief-stall", "plain"]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let failure = &report.failed[0];
    assert_eq!(failure.identifier, "stalled");
    assert_eq!(failure.code, ErrorCode::FetchFailed);
    assert!(failure.message.contains("timed out"), "{}", failure.message);
    assert!(!w.cache_dir().join("stalled").exists());
    let cached: Vec<String> = vmc
        .store()
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.identifier.to_string())
        .collect();
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert!(
        vmc.store()
            .images(&ImageFilter::default())
            .unwrap()
            .iter()
            .any(|r| r.image.identifier.as_str() == "stalled" && r.cached.is_none())
    );
    assert_no_stray_files(&w.cache_dir(), &["brief-stall", "plain", "cache.index"]);
}

fn assert_no_stray_files(dir: &Path, allowed: &[&str]) {
    for name in listing(dir) {
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected file {name} in {}",
            dir.display()
        );
    }
}
