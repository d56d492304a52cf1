//! Two vmc homes sharing one database (issue 20, groundwork for several nodes on one
//! PostgreSQL): both update the same subscription at the same time as new list versions
//! appear; each version is stored once, neither update fails, and each new image is announced
//! once. On SQLite always; on PostgreSQL too when `VMC_TEST_POSTGRES_URL` names a server and
//! the `postgres` feature is on (a fresh schema per run).

use std::sync::Barrier;

use vmc_cache::{Config, Dispatcher, NoProgress, UpdateStatus, Vmc};
use vmc_model::{EventType, NewImagePolicy};

use crate::{Gen, GenImage};

const NEW: [&str; 5] = ["n-2", "n-3", "n-4", "n-5", "n-6"];

/// Runs `test` with a PostgreSQL URL whose schema is fresh (dropped after), when there is a
/// server to test against.
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
    let node = |home: &std::path::Path| {
        let mut config: Config = env.config();
        let defaults = Config::with_home(home);
        config.cache_dir = defaults.cache_dir;
        config.partial_dir = defaults.partial_dir;
        config.expired_dir = defaults.expired_dir;
        if let Some(url) = &database_url {
            config.database_url = url.clone();
        }
        Vmc::open(config).unwrap()
    };
    let a = node(env.home.path());
    let other_home = tempfile::tempdir().unwrap();
    let b = node(other_home.path());
    env.subscribe(&a, NewImagePolicy::Subscribe);
    let nodes = [&a, &b];
    for (round, new_id) in NEW.iter().enumerate() {
        let version = (round + 2).to_string();
        env.publish(
            &version,
            &[base.clone(), GenImage::new(new_id, 10 + round as u8, 1024)],
        );
        let barrier = Barrier::new(2);
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
                    reports[0].status
                })
                .collect()
        });
        let updated = statuses
            .iter()
            .filter(|s| **s == UpdateStatus::Updated)
            .count();
        let unchanged = statuses
            .iter()
            .filter(|s| **s == UpdateStatus::Unchanged)
            .count();
        assert_eq!((updated, unchanged), (1, 1), "round {round}: {statuses:?}");
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
}

#[test]
fn two_homes_sharing_a_database_store_each_new_version_once() {
    two_homes_on(None);
    with_postgres("vmcc_nodes", |url| two_homes_on(Some(url)));
}
