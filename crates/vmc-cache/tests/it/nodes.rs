//! Two vmc homes sharing one database, as two nodes of a site: both update the same
//! subscription at the same time as new list versions appear; the list is fetched once per
//! version (the `update:<id>` lease, then the other node's recent run), each version is stored
//! once, neither update fails, and each new image is announced once. On SQLite always; on
//! PostgreSQL too when `VMC_TEST_POSTGRES_URL` names a server and the `postgres` feature is on
//! (a fresh schema per run). Also: a node's heartbeat.

use std::sync::Barrier;

use vmc_cache::{Config, Dispatcher, NoProgress, UpdateStatus, Vmc};
use vmc_model::{EventType, NewImagePolicy};

use crate::{Gen, GenImage, LIST_PATH};

const NEW: [&str; 5] = ["n-2", "n-3", "n-4", "n-5", "n-6"];

/// Runs `test` with a PostgreSQL URL whose schema (`name`, unique per test) is fresh (dropped
/// after), when there is a server to test against.
#[cfg(feature = "postgres")]
pub(crate) fn with_postgres(name: &str, test: impl FnOnce(String)) {
    use diesel::{Connection, connection::SimpleConnection};
    let Ok(admin) = std::env::var("VMC_TEST_POSTGRES_URL") else {
        vmc_testkit::skip::skipped(
            "VMC_TEST_POSTGRES_URL is not set: no PostgreSQL server to test on (.ci/run starts one)",
        );
        return;
    };
    let schema = format!("{name}_{}", std::process::id());
    let mut conn = diesel::PgConnection::establish(&admin).unwrap();
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    ))
    .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    test(format!("{admin}{sep}options=-csearch_path%3D{schema}"));
    conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE;"))
        .unwrap();
}

#[cfg(not(feature = "postgres"))]
pub(crate) fn with_postgres(_name: &str, _test: impl FnOnce(String)) {
    vmc_testkit::skip::skipped("the PostgreSQL half needs the cargo feature `postgres`");
}

fn two_homes_on(database_url: Option<String>) {
    let env = Gen::new();
    let base = GenImage::new("base", 1, 2048);
    env.publish("1", std::slice::from_ref(&base));
    let node = |home: &std::path::Path, name: &str| {
        let mut config: Config = env.config();
        config.node = name.to_owned();
        let defaults = Config::with_home(home);
        config.cache_dir = defaults.cache_dir;
        config.partial_dir = defaults.partial_dir;
        config.expired_dir = defaults.expired_dir;
        if let Some(url) = &database_url {
            config.database_url = url.clone();
        }
        Vmc::open(config).unwrap()
    };
    let a = node(env.home.path(), "node-a");
    let other_home = tempfile::tempdir().unwrap();
    let b = node(other_home.path(), "node-b");
    env.subscribe(&a, NewImagePolicy::Subscribe);
    let nodes = [&a, &b];
    for (round, new_id) in NEW.iter().enumerate() {
        let version = (round + 2).to_string();
        env.publish(
            &version,
            &[base.clone(), GenImage::new(new_id, 10 + round as u8, 1024)],
        );
        // Each version appears after the refresh interval of the previous update.
        let now = env.now + chrono::TimeDelta::minutes(11 * (round as i64 + 1));
        env.set_now(now);
        let barrier = Barrier::new(2);
        let fetched_before = env.server.requests(LIST_PATH);
        let statuses: Vec<UpdateStatus> = std::thread::scope(|scope| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|vmc| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        vmc.update_all(None, &Dispatcher::new(vmc.config()), &NoProgress)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let reports = h.join().unwrap().unwrap();
                    assert_eq!(reports.len(), 1);
                    assert_eq!(reports[0].error, None, "round {round}: {reports:?}");
                    assert_eq!(
                        reports[0].skipped.is_some(),
                        reports[0].status == UpdateStatus::Skipped,
                        "round {round}: {reports:?}"
                    );
                    reports[0].status
                })
                .collect()
        });
        let updated = statuses
            .iter()
            .filter(|s| **s == UpdateStatus::Updated)
            .count();
        let skipped = statuses
            .iter()
            .filter(|s| **s == UpdateStatus::Skipped)
            .count();
        assert_eq!((updated, skipped), (1, 1), "round {round}: {statuses:?}");
        assert_eq!(
            env.server.requests(LIST_PATH) - fetched_before,
            1,
            "round {round}: the list is fetched once per site"
        );
        let sub = env.subscription(&a);
        assert_eq!(sub.current.unwrap().version, version);
        let announced = a
            .store()
            .events(false, None)
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.event_type == EventType::SubscriptionImageNew
                    && e.identifier.as_deref() == Some(*new_id)
            })
            .count();
        assert_eq!(
            announced, 1,
            "round {round}: {new_id} announced {announced} times"
        );
    }
    // Within the refresh interval, the node that did the last update fetches again when asked
    // and the other does not; once the interval has passed, either does.
    let update = |vmc: &Vmc| {
        let reports = vmc
            .update_all(None, &Dispatcher::new(vmc.config()), &NoProgress)
            .unwrap();
        (reports[0].status, env.server.requests(LIST_PATH))
    };
    let last = a
        .store()
        .last_run(&format!("update:{}", env.subscription(&a).id));
    let last = last.unwrap().unwrap();
    let (done, other) = if last.node == "node-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let before = env.server.requests(LIST_PATH);
    assert_eq!(update(other), (UpdateStatus::Skipped, before));
    assert_eq!(update(done), (UpdateStatus::Unchanged, before + 1));
    let now = env.now + chrono::TimeDelta::minutes(11 * NEW.len() as i64);
    env.set_now(now + chrono::TimeDelta::seconds(601));
    assert_eq!(update(other), (UpdateStatus::Unchanged, before + 2));
}

#[test]
fn two_nodes_sharing_a_database_fetch_and_store_each_new_version_once() {
    two_homes_on(None);
    with_postgres("vmcc_lists", |url| two_homes_on(Some(url)));
}

/// Polls `done` every 20 ms for up to 60 s (a bound for a stalled machine, not a measure).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_run_registers_the_node_and_its_heartbeat_records_the_activity() {
    let env = Gen::new();
    let mut config = env.config();
    config.node = "hv-01".into();
    config.lease_time = std::time::Duration::from_secs(3);
    let vmc = Vmc::open(config).unwrap();
    let node = |vmc: &Vmc| {
        let nodes = vmc.nodes().unwrap();
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        nodes[0].clone()
    };
    let run = vmc.join_site("cache sync").unwrap();
    let first = node(&vmc);
    assert_eq!(first.record.info.name, "hv-01");
    assert_eq!(first.record.info.pid, std::process::id());
    assert_eq!(first.record.activity, "cache sync");
    assert_eq!(first.record.last_seen, env.now);
    assert!(first.alive);

    let lease = vmc.take_lease("download:img").unwrap().unwrap();
    assert_eq!(lease.expires_at, env.now + chrono::TimeDelta::seconds(3));

    // The clock moves on and the run says what it does: the heartbeat records both, and
    // renews the lease the run holds.
    let later = env.now + chrono::TimeDelta::seconds(30);
    env.set_now(later);
    vmc.set_activity("downloading");
    eventually("a heartbeat with the new activity", || {
        let n = node(&vmc);
        n.record.last_seen == later && n.record.activity == "downloading"
    });
    eventually("the lease renewed", || {
        let held = vmc.store().lease("download:img").unwrap().unwrap();
        held.expires_at == later + chrono::TimeDelta::seconds(3) && held.token == lease.token
    });
    assert!(vmc.still_holds("download:img").unwrap());
    vmc.release("download:img").unwrap();
    assert_eq!(vmc.store().lease("download:img").unwrap(), None);
    assert_eq!(node(&vmc).record.started_at, env.now);

    // The run ends: the node is idle, and silent once a lease time has passed.
    drop(run);
    assert_eq!(node(&vmc).record.activity, "idle");
    env.set_now(later + chrono::TimeDelta::seconds(4));
    assert!(!node(&vmc).alive);
}

#[test]
fn a_node_whose_update_lease_lapsed_during_the_fetch_imports_nothing() {
    let env = Gen::new();
    let base = GenImage::new("base", 1, 2048);
    env.publish("1", std::slice::from_ref(&base));
    let mut config = env.config();
    config.node = "node-a".into();
    config.lease_time = std::time::Duration::from_secs(3);
    let a = Vmc::open(config).unwrap();
    env.subscribe(&a, NewImagePolicy::Subscribe);
    env.publish("2", &[base.clone(), GenImage::new("late", 2, 1024)]);
    // The new version is served slowly (about 3 s), so the test can act during the fetch.
    let signed = a
        .client()
        .unwrap()
        .fetch_bytes(&env.server.url(LIST_PATH), None, 1 << 20)
        .unwrap();
    let len = signed.len() as u64;
    env.server.replace(
        LIST_PATH,
        vmc_testkit::server::Route::new(signed).throttle(len / 3),
    );
    let before = env.server.requests(LIST_PATH);
    let id = env.subscription(&a).id;
    let report = std::thread::scope(|scope| {
        let fetch = scope.spawn(|| {
            a.update_all(None, &Dispatcher::new(a.config()), &NoProgress)
                .unwrap()
        });
        // While node-a fetches, its lease lapses and node-b takes the list over.
        eventually("node-a's request", || {
            env.server.requests(LIST_PATH) > before
        });
        let later = env.now + chrono::TimeDelta::seconds(10);
        env.set_now(later);
        let stolen = a
            .store()
            .try_lease(
                &format!("update:{id}"),
                "node-b",
                later,
                chrono::TimeDelta::seconds(120),
            )
            .unwrap();
        assert!(stolen.is_some(), "node-a's lease had lapsed");
        fetch.join().unwrap()
    });
    assert_eq!(report[0].status, UpdateStatus::Skipped, "{report:?}");
    assert!(
        report[0].skipped.as_deref().unwrap().contains("lapsed"),
        "{report:?}"
    );
    assert_eq!(env.subscription(&a).current.unwrap().version, "1");
    assert_eq!(env.server.requests(LIST_PATH), before + 1);
}

/// Two nodes sharing one database and one cache directory download together: each image is
/// downloaded by one of them (the `download:<id>` lease), served once, cached once.
fn shared_cache_on(database_url: Option<String>) {
    let env = Gen::new();
    let images: Vec<GenImage> = (0..4)
        .map(|n| GenImage::new(["s-0", "s-1", "s-2", "s-3"][n], 20 + n as u8, 48 * 1024))
        .collect();
    env.publish("1", &images);
    // About half a second per image, so the two nodes' downloads overlap.
    for g in &images {
        env.server.replace(
            &g.path(),
            vmc_testkit::server::Route::new(g.bytes.clone()).throttle(96 * 1024),
        );
    }
    let node = |name: &str| {
        let mut config = env.config();
        config.node = name.to_owned();
        if let Some(url) = &database_url {
            config.database_url = url.clone();
        }
        Vmc::open(config).unwrap()
    };
    let (a, b) = (node("node-a"), node("node-b"));
    env.subscribe(&a, NewImagePolicy::Subscribe);
    let barrier = Barrier::new(2);
    let reports: Vec<vmc_cache::SyncReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&a, &b]
            .into_iter()
            .map(|vmc| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let _run = vmc.join_site("cache download").unwrap();
                    barrier.wait();
                    vmc.download(2, &NoProgress).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &reports {
        assert!(r.failed.is_empty(), "{reports:?}");
    }
    let mut downloaded: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.downloaded.iter().map(String::as_str))
        .collect();
    downloaded.sort_unstable();
    assert_eq!(downloaded, ["s-0", "s-1", "s-2", "s-3"], "{reports:?}");
    for g in &images {
        assert_eq!(
            env.server.bytes_sent(&g.path()),
            g.bytes.len() as u64,
            "{} served once: {reports:?}",
            g.id
        );
    }
    let served: u64 = reports.iter().map(|r| r.bytes_downloaded).sum();
    assert_eq!(served, 4 * 48 * 1024);
    // What a node left alone, the other downloaded.
    for (r, other) in [(&reports[0], &reports[1]), (&reports[1], &reports[0])] {
        for left in &r.left_to_others {
            assert!(other.downloaded.contains(&left.identifier), "{reports:?}");
        }
    }
    assert_eq!(crate::cached_ids(&b).len(), 4);
    assert!(
        a.store()
            .nodes()
            .unwrap()
            .iter()
            .all(|n| n.leases.is_empty())
    );
}

#[test]
fn two_nodes_on_one_cache_directory_download_each_image_once() {
    shared_cache_on(None);
    with_postgres("vmcc_downloads", |url| shared_cache_on(Some(url)));
}

/// Two homes under one node name would take each other's runs for their own (replaying their
/// events, taking over their claims): a run under a name another live run uses is refused,
/// naming that run and the fix; a killed run's name is free at once on its own host, and
/// elsewhere once the lease time has passed; an idle node's name is free.
#[test]
fn a_node_name_another_live_run_uses_is_refused() {
    use vmc_cache::CacheError;
    use vmc_store::NodeInfo;

    let env = Gen::new();
    let mut config = env.config();
    config.node = "hv-01".into();
    config.lease_time = std::time::Duration::from_secs(60);
    let vmc = Vmc::open(config).unwrap();
    let other_run = |host: &str, pid: u32, activity: &str| {
        let info = NodeInfo {
            name: "hv-01".into(),
            host: host.into(),
            pid,
            version: "0.1.0".into(),
            url: None,
            cache_mode: Some("shared".into()),
        };
        vmc.store().register_node(&info, activity, env.now).unwrap();
    };
    let refused = |vmc: &Vmc| match vmc.join_site("cache sync") {
        Err(e @ CacheError::NodeNameInUse { .. }) => {
            assert!(e.is_setup(), "a setup error (exit 2)");
            e.to_string()
        }
        other => panic!("not refused: {other:?}"),
    };

    // Another host's run, busy and beating.
    other_run("hv-02.example", 4242, "cache sync");
    let message = refused(&vmc);
    for part in [
        "\"hv-01\"",
        "hv-02.example",
        "pid 4242",
        "cache sync",
        "--node",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    // The same, idle (its run ended): free.
    other_run("hv-02.example", 4242, vmc_cache::node::IDLE);
    drop(vmc.join_site("cache sync").unwrap());

    // Another live process of this host.
    let host = vmc_cache::node::host_name();
    /// Killed and reaped when dropped, also when an assertion fails.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reaped(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap(),
    );
    other_run(&host, child.0.id(), "cache download");
    assert!(refused(&vmc).contains(&format!("pid {}", child.0.id())));
    // Killed (and reaped): its own host knows it is gone.
    drop(child);
    drop(vmc.join_site("cache sync").unwrap());

    // Another host's run that stopped beating: free once the lease time has passed.
    other_run("hv-02.example", 4242, "cache sync");
    env.set_now(env.now + chrono::TimeDelta::seconds(59));
    refused(&vmc);
    env.set_now(env.now + chrono::TimeDelta::seconds(61));
    let run = vmc.join_site("cache sync").unwrap();
    let me = vmc.nodes().unwrap();
    assert_eq!(me[0].record.info.pid, std::process::id(), "{me:?}");
    // A second run of this very process (a `cache sync --publish`) is itself.
    drop(run);
    let _again = vmc.join_site("publish sync").unwrap();
    let _nested = vmc.join_site("cache sync").unwrap();
}
