//! Migration from vmcatcher: a database with vmcatcher's schema built here, holding the
//! interop list as the stored signed list, and a vmcatcher cache directory with its
//! `cache.index`; the import verifies the list again and adopts only files whose sha512 matches.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use vmc_cache::import::{Adoption, ImportOptions, SkipReason, SubscriptionStatus};
use vmc_cache::store::ImageFilter;
use vmc_cache::store::vmcatcher::SCHEMA_SQL;
use vmc_cache::{Clock, Config, Mirror, Vmc};
use vmc_model::{ErrorCode, NewImagePolicy, SubscriptionAuth};
use vmc_testkit::server::TestServer;

use crate::openssl_cli;

const SUBJECT: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Endorser";
const ISSUER: &str = "/C=XX/O=InteropGrid/CN=Interop Root CA";
const LIST_ID: &str = "4a58acb9-e7f1-4128-9edf-8c2df3696d7c";
const IMAGE0: &str = "f3cba9bb-ce26-4020-b238-77a60f7fe90c";
const IMAGE1: &str = "a8cf1898-4ce2-49a2-973c-01fba99f95d8";
const IMAGE2: &str = "71f63e65-6e0d-4669-8260-abbe8c6eb38e";
/// The list URL vmcatcher recorded (as the lists were published).
const LIST_URL: &str = "http://127.0.0.1:8000/lists/good.smime";

fn fixtures() -> PathBuf {
    openssl_cli()
}

/// A vmcatcher database at `path` with vmcatcher's own schema: the interop endorser (plus one
/// with no name), the interop subscription with `update_mode` and credentials (NULL when none,
/// as vmcatcher stores them), `list` as its stored signed list (a BLOB), and image definitions
/// (IMAGE0 and IMAGE2 and an image the list lacks selected, IMAGE1 not).
fn vmcatcher_db(
    path: &Path,
    list: &str,
    update_mode: i64,
    user: Option<&str>,
    password: Option<&str>,
) {
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    conn.batch_execute(SCHEMA_SQL).unwrap();
    diesel::sql_query(
        "INSERT INTO subscription (id, identifier, description, uri, authorised, \
         imagelist_latest, updated, \"trustAnchor\", \"userName\", password, \"updateMode\") \
         VALUES (1, ?, 'Interop list', ?, 1, 7, '2027-05-31 12:00:00', 0, ?, ?, ?)",
    )
    .bind::<Text, _>(LIST_ID)
    .bind::<Text, _>(LIST_URL)
    .bind::<Nullable<Text>, _>(user)
    .bind::<Nullable<Text>, _>(password)
    .bind::<BigInt, _>(update_mode)
    .execute(&mut conn)
    .unwrap();
    conn.batch_execute(&format!(
        r#"
        INSERT INTO endorser (id, identifier) VALUES (1, 'Interop Endorser'), (2, '');
        INSERT INTO "endorserPrincible" (id, hv_dn, hv_ca, endorser)
            VALUES (1, '{SUBJECT}', '{ISSUER}', 1), (2, '/C=XX/CN=Someone Else', '{ISSUER}', 2);
        INSERT INTO "subscriptionAuth" (id, subscription, endorser, authorised)
            VALUES (1, 1, 1, 1), (2, 1, 2, 0);
        INSERT INTO "ImageDefinition" (id, identifier, latest, cache, subscription)
            VALUES (1, '{IMAGE0}', 1, 1, 1), (2, '{IMAGE1}', 2, 0, 1), (3, '{IMAGE2}', 3, 1, 1),
                   (4, 'gone-image', 0, 1, 1);
        "#
    ))
    .unwrap();
    let data = std::fs::read(fixtures().join("lists").join(list)).unwrap();
    diesel::sql_query(
        "INSERT INTO \"imageListInstance\" (id, data, data_hash, expired, sub_auth, imported, \
         created, expires, version) VALUES (7, ?, 'x', NULL, 1, '2027-05-31 12:00:00', \
         '2027-05-01 00:00:00', '2027-07-01 00:00:00', '1')",
    )
    .bind::<Binary, _>(data)
    .execute(&mut conn)
    .unwrap();
}

/// A vmcatcher cache directory: IMAGE0 intact, IMAGE1 with its bytes changed, and an index
/// that also names IMAGE2 without its file and an image no list carries.
fn vmcatcher_cache(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fixtures().join("images/image0.img"), dir.join(IMAGE0)).unwrap();
    let mut bytes = std::fs::read(fixtures().join("images/image1.img")).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(dir.join(IMAGE1), bytes).unwrap();
    let index = serde_json::json!({
        IMAGE0: {"uuid": IMAGE0, "filename": IMAGE0, "sha512": "ignored", "size": 262_144},
        IMAGE1: {"uuid": IMAGE1, "filename": IMAGE1, "size": 524_288},
        IMAGE2: {"uuid": IMAGE2},
        "c2a4b1d0-0000-4000-8000-000000000000": {"uuid": "c2a4b1d0-0000-4000-8000-000000000000"},
    });
    std::fs::write(dir.join("cache.index"), index.to_string()).unwrap();
}

/// Imports `db` (without fetching) into a vmc home under `tmp` whose cache directory is
/// vmcatcher's (the site keeps `VMCATCHER_CACHE_DIR_CACHE`), filled by [`vmcatcher_cache`].
fn import_in_place(tmp: &Path, db: PathBuf) -> (PathBuf, Vmc, vmc_cache::import::ImportReport) {
    let home = tmp.join("home");
    vmcatcher_cache(&home.join("cache"));
    let vmc = Vmc::open(config(&home)).unwrap();
    let report = vmc
        .import_vmcatcher(&ImportOptions {
            database: db,
            cache_dir: Some(home.join("cache")),
            fetch_rejected: false,
        })
        .unwrap();
    (home, vmc, report)
}

fn config(home: &Path) -> Config {
    let mut config = Config::with_home(home);
    config.ca_dir = fixtures().join("pki/ca-dir");
    config.clock = Clock::fixed(Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap());
    config
}

fn selected(vmc: &Vmc) -> Vec<String> {
    let mut ids: Vec<String> = vmc
        .store()
        .images(&ImageFilter {
            selected_only: true,
            ..ImageFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.image.identifier.to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn import_verifies_the_stored_list_and_carries_selection_and_verified_files() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "good.smime", 0, None, None);
    let old_cache = tmp.path().join("vmcatcher-cache");
    vmcatcher_cache(&old_cache);
    // IMAGE2 (selected) with changed bytes: not adopted, and a failure.
    let mut bytes = std::fs::read(fixtures().join("images/image2.img")).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(old_cache.join(IMAGE2), bytes).unwrap();
    let home = tmp.path().join("home");
    let vmc = Vmc::open(config(&home)).unwrap();

    let report = vmc
        .import_vmcatcher(&ImportOptions {
            database: db.clone(),
            cache_dir: Some(old_cache.clone()),
            fetch_rejected: false,
        })
        .unwrap();

    // Endorsers: named as in vmcatcher, an unnamed one by its key.
    let ids: Vec<&str> = report.endorsers.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["Interop Endorser", "vmcatcher-2"]);
    let stored = vmc
        .store()
        .find_endorser("Interop Endorser")
        .unwrap()
        .unwrap();
    assert_eq!(stored.identities[0].subject, SUBJECT);
    assert_eq!(stored.identities[0].issuer, ISSUER);

    // The subscription: the stored list verified and current; only the authorised link.
    let sub = &report.subscriptions[0];
    assert_eq!(sub.status, SubscriptionStatus::Imported, "{sub:?}");
    assert_eq!(sub.endorsers, ["Interop Endorser"]);
    assert!(
        sub.notes.iter().any(|n| n.contains("not authorised")),
        "{sub:?}"
    );
    assert_eq!(sub.new_images, NewImagePolicy::Refuse);
    let current = vmc.store().find_subscription(LIST_ID).unwrap().unwrap();
    assert_eq!(current.url, LIST_URL);
    assert!(current.enabled);
    assert_eq!(current.auth, None);
    assert_eq!(
        current.current.unwrap().version,
        sub.version.clone().unwrap()
    );
    assert!(current.last_error.is_none());

    // The selection as vmcatcher had it; the image the list lacks is reported.
    let mut want = vec![IMAGE0.to_owned(), IMAGE2.to_owned()];
    want.sort();
    assert_eq!(selected(&vmc), want);
    assert_eq!(sub.pending, ["gone-image"]);

    // Files: IMAGE0 adopted; IMAGE1 (not selected) and IMAGE2 (changed bytes) left alone.
    assert_eq!(report.adopted.len(), 1, "{report:?}");
    assert_eq!(report.adopted[0].identifier, IMAGE0);
    assert_ne!(report.adopted[0].how, Adoption::InPlace);
    let reason = |id: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.identifier == id)
            .map(|s| s.reason)
    };
    assert_eq!(reason(IMAGE1), Some(SkipReason::NotSelected));
    assert_eq!(reason(IMAGE2), Some(SkipReason::ChecksumMismatch));
    assert_eq!(
        reason("c2a4b1d0-0000-4000-8000-000000000000"),
        Some(SkipReason::NotListed)
    );
    assert!(report.has_failures(), "a mismatching file is a failure");

    let cached = vmc.store().cache_entries().unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].identifier.as_str(), IMAGE0);
    let adopted = home.join("cache").join(IMAGE0);
    assert_eq!(
        std::fs::read(&adopted).unwrap(),
        std::fs::read(fixtures().join("images/image0.img")).unwrap()
    );
    // vmcatcher's files stay; no temporary file is left in vmc's cache.
    assert!(old_cache.join(IMAGE0).is_file() && old_cache.join(IMAGE1).is_file());
    let mut names: Vec<String> = std::fs::read_dir(home.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["cache.index", IMAGE0]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("cache/cache.index")).unwrap()).unwrap();
    assert_eq!(index[IMAGE0]["hv:imagelist.dc:identifier"], LIST_ID);

    // Importing again changes nothing and says so.
    let again = vmc
        .import_vmcatcher(&ImportOptions {
            database: db,
            cache_dir: Some(old_cache),
            fetch_rejected: false,
        })
        .unwrap();
    assert_eq!(again.subscriptions[0].status, SubscriptionStatus::Existing);
    assert!(again.adopted.is_empty());
    assert_eq!(
        again
            .skipped
            .iter()
            .find(|s| s.identifier == IMAGE0)
            .map(|s| s.reason),
        Some(SkipReason::AlreadyCached)
    );
    assert_eq!(vmc.store().cache_entries().unwrap().len(), 1);
}

#[test]
fn files_already_in_the_vmc_cache_directory_are_adopted_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "good.smime", 3, Some("site"), Some("s3cret"));
    let (home, vmc, report) = import_in_place(tmp.path(), db);
    assert_eq!(report.adopted.len(), 1);
    assert_eq!(report.adopted[0].how, Adoption::InPlace);
    // The index names IMAGE2, but its file is not there.
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.identifier == IMAGE2 && s.reason == SkipReason::Missing),
        "{report:?}"
    );
    // updateMode 3 (accept and subscribe) and the credentials carry over.
    let sub = vmc.store().find_subscription(LIST_ID).unwrap().unwrap();
    assert_eq!(sub.new_images, NewImagePolicy::Subscribe);
    assert_eq!(
        sub.auth,
        Some(SubscriptionAuth::Basic {
            username: "site".into(),
            password: "s3cret".into()
        })
    );
    // The subscribe policy does not select what vmcatcher had not selected.
    let mut want = vec![IMAGE0.to_owned(), IMAGE2.to_owned()];
    want.sort();
    assert_eq!(selected(&vmc), want);
    // The changed file stays where it was, unrecorded.
    assert!(home.join("cache").join(IMAGE1).is_file());
    let cached: Vec<String> = vmc
        .store()
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.identifier.to_string())
        .collect();
    assert_eq!(cached, [IMAGE0]);
}

#[test]
fn a_tampered_stored_list_is_not_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "tampered.smime", 0, None, None);
    let old_cache = tmp.path().join("vmcatcher-cache");
    vmcatcher_cache(&old_cache);
    let vmc = Vmc::open(config(&tmp.path().join("home"))).unwrap();
    let report = vmc
        .import_vmcatcher(&ImportOptions {
            database: db,
            cache_dir: Some(old_cache),
            fetch_rejected: false,
        })
        .unwrap();
    let sub = &report.subscriptions[0];
    assert_eq!(sub.status, SubscriptionStatus::Failed);
    let error = sub.stored_list_error.as_ref().unwrap();
    assert_eq!(error.code, ErrorCode::SignatureInvalid, "{error:?}");
    assert_eq!(
        sub.error.as_ref().unwrap().code,
        ErrorCode::SignatureInvalid
    );
    assert!(report.has_failures());
    // Subscribed (the next update retries), the error recorded, nothing current or cached.
    let stored = vmc.store().find_subscription(LIST_URL).unwrap().unwrap();
    assert!(stored.current.is_none());
    assert_eq!(stored.last_error.unwrap().code, ErrorCode::SignatureInvalid);
    assert!(vmc.store().cache_entries().unwrap().is_empty());
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.identifier == IMAGE0 && s.reason == SkipReason::NotListed)
    );
    let mut pending = sub.pending.clone();
    pending.sort();
    let mut want = vec![
        IMAGE0.to_owned(),
        IMAGE2.to_owned(),
        "gone-image".to_owned(),
    ];
    want.sort();
    assert_eq!(pending, want);
}

#[test]
fn a_rejected_stored_list_is_fetched_again_when_asked() {
    let server = TestServer::start();
    server.serve_dir("/lists", fixtures().join("lists"));
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "tampered.smime", 0, None, None);
    let mut config = config(&tmp.path().join("home"));
    config.mirrors.push(Mirror {
        from: "http://127.0.0.1:8000".into(),
        to: server.base_url(),
    });
    let vmc = Vmc::open(config).unwrap();
    let report = vmc
        .import_vmcatcher(&ImportOptions {
            database: db,
            cache_dir: None,
            fetch_rejected: true,
        })
        .unwrap();
    let sub = &report.subscriptions[0];
    assert_eq!(sub.status, SubscriptionStatus::Fetched, "{sub:?}");
    assert_eq!(
        sub.stored_list_error.as_ref().unwrap().code,
        ErrorCode::SignatureInvalid
    );
    assert!(sub.error.is_none());
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(server.requests("/lists/good.smime"), 1);
    let stored = vmc.store().find_subscription(LIST_ID).unwrap().unwrap();
    assert!(stored.current.is_some() && stored.last_error.is_none());
    let mut want = vec![IMAGE0.to_owned(), IMAGE2.to_owned()];
    want.sort();
    assert_eq!(selected(&vmc), want);
    // The import delivers no event: vmcatcher's handler saw these images already.
    assert!(vmc.store().events(false, None).unwrap().is_empty());
}

#[test]
fn a_missing_vmcatcher_database_is_a_setup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let vmc = Vmc::open(config(&tmp.path().join("home"))).unwrap();
    let err = vmc
        .import_vmcatcher(&ImportOptions {
            database: tmp.path().join("nope.db"),
            cache_dir: None,
            fetch_rejected: false,
        })
        .unwrap_err();
    assert!(err.is_setup(), "{err}");
    assert!(!tmp.path().join("nope.db").exists());
}

/// Imports `db` with the interop lists served where vmcatcher fetched them, fetching when the
/// stored list fails.
fn import_fetching(tmp: &Path, db: PathBuf, serve: &str) -> vmc_cache::import::ImportReport {
    let server = TestServer::start();
    server.add(
        "/lists/good.smime",
        vmc_testkit::server::Route::new(
            std::fs::read(fixtures().join("lists").join(serve)).unwrap(),
        ),
    );
    let mut config = config(&tmp.join("home"));
    config.mirrors.push(Mirror {
        from: "http://127.0.0.1:8000".into(),
        to: server.base_url(),
    });
    let vmc = Vmc::open(config).unwrap();
    vmc.import_vmcatcher(&ImportOptions {
        database: db,
        cache_dir: None,
        fetch_rejected: true,
    })
    .unwrap()
}

#[test]
fn a_fetched_list_must_be_the_list_vmcatcher_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "tampered.smime", 0, None, None);
    let report = import_fetching(tmp.path(), db, "other-identifier.smime");
    let sub = &report.subscriptions[0];
    assert_eq!(sub.status, SubscriptionStatus::Failed, "{sub:?}");
    assert_eq!(
        sub.error.as_ref().unwrap().code,
        ErrorCode::IdentifierMismatch
    );
}

#[test]
fn a_fetched_list_older_than_what_vmcatcher_accepted_is_a_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "tampered.smime", 0, None, None);
    let mut conn = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    conn.batch_execute("UPDATE \"imageListInstance\" SET version = '99.0';")
        .unwrap();
    drop(conn);
    let report = import_fetching(tmp.path(), db, "good.smime");
    let sub = &report.subscriptions[0];
    assert_eq!(sub.status, SubscriptionStatus::Failed, "{sub:?}");
    assert_eq!(sub.error.as_ref().unwrap().code, ErrorCode::VersionRollback);
}

/// The ids of the pending selections.
fn pending(vmc: &Vmc) -> Vec<String> {
    let mut ids: Vec<String> = vmc
        .store()
        .pending_selections(None)
        .unwrap()
        .into_iter()
        .map(|p| p.identifier.to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Issue 21, point 1: the stored list fails and is not fetched; the site's selection must
/// survive the failed import, a second import and the next sync, and the sync must not expire
/// vmcatcher's file (ExpirePrefix would make a Glance handler deactivate a live image).
#[test]
fn selections_survive_a_failed_import_a_second_import_and_the_next_sync() {
    let server = TestServer::start();
    server.serve_dir("/lists", fixtures().join("lists"));
    server.serve_dir("/images", fixtures().join("images"));
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "tampered.smime", 0, None, None);
    let home = tmp.path().join("home");
    // The VMCATCHER_* variables stay: vmcatcher's cache directory is vmc's.
    vmcatcher_cache(&home.join("cache"));
    let mut config = config(&home);
    config.mirrors.push(Mirror {
        from: "http://127.0.0.1:8000".into(),
        to: server.base_url(),
    });
    let vmc = Vmc::open(config).unwrap();
    let options = ImportOptions {
        database: db,
        cache_dir: Some(home.join("cache")),
        fetch_rejected: false,
    };
    let all = sorted(&[IMAGE0, IMAGE2, "gone-image"]);

    let first = vmc.import_vmcatcher(&options).unwrap();
    assert_eq!(first.subscriptions[0].status, SubscriptionStatus::Failed);
    let mut reported = first.subscriptions[0].pending.clone();
    reported.sort();
    assert_eq!(reported, all);
    assert_eq!(pending(&vmc), all);
    // The identifier the report prints finds the subscription (`subscribe show`).
    let sub = vmc.store().find_subscription(LIST_ID).unwrap().unwrap();
    assert!(sub.current.is_none());
    assert_eq!(sub.identifier.as_deref(), Some(LIST_ID));

    let second = vmc.import_vmcatcher(&options).unwrap();
    assert_eq!(second.subscriptions[0].status, SubscriptionStatus::Existing);
    assert!(second.subscriptions[0].pending.is_empty(), "{second:?}");
    assert_eq!(pending(&vmc), all);

    // The next sync fetches the good list: what it names is selected, nothing expires, and
    // vmcatcher's verified file is adopted where it is.
    let report = vmc
        .sync(&vmc_cache::SyncOptions::default(), &vmc_cache::NoProgress)
        .unwrap();
    assert_eq!(
        report.subscriptions[0].status.as_str(),
        "added",
        "{report:?}"
    );
    // The images vmcatcher knew are not new (no SubscriptionImageNew for them).
    assert!(report.subscriptions[0].new_images.is_empty(), "{report:?}");
    assert!(report.expired.is_empty(), "{:?}", report.expired);
    assert_eq!(selected(&vmc), sorted(&[IMAGE0, IMAGE2]));
    assert_eq!(pending(&vmc), ["gone-image"]);
    assert_eq!(crate::cached_ids(&vmc), sorted(&[IMAGE0, IMAGE2]));
    assert_eq!(
        std::fs::read(home.join("cache").join(IMAGE0)).unwrap(),
        std::fs::read(fixtures().join("images/image0.img")).unwrap()
    );
    assert_eq!(report.downloaded, [IMAGE2]);

    // A third import still changes nothing; IMAGE1 (not selected) was never adopted.
    let third = vmc.import_vmcatcher(&options).unwrap();
    assert!(third.adopted.is_empty(), "{third:?}");
    assert_eq!(selected(&vmc), sorted(&[IMAGE0, IMAGE2]));
}

/// Issue 21, point 2: the index vmc writes is one vmcatcher's `vmcatcher_cache` reads: every
/// entry has the keys its code indexes (`filename`, `uuid`, `sha512`, `size`, `msgHash`) and
/// the ones its events map, and every file of the directory is named by an entry, so that
/// vmcatcher's `indexUnknownClear` would delete nothing after a roll-back.
#[test]
fn the_rewritten_index_is_one_vmcatcher_reads_and_keeps_its_other_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "good.smime", 0, None, None);
    let (home, vmc, report) = import_in_place(tmp.path(), db);
    assert_eq!(report.adopted.len(), 1);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("cache/cache.index")).unwrap()).unwrap();
    let index = index.as_object().unwrap();

    // vmcatcher's entry for the file vmc did not adopt (not selected) is kept as it was.
    assert_eq!(
        index[IMAGE1],
        serde_json::json!({"uuid": IMAGE1, "filename": IMAGE1, "size": 524_288})
    );
    // Entries whose file is gone are dropped, as vmcatcher drops them.
    assert!(!index.contains_key(IMAGE2));

    let record = vmc
        .store()
        .images(&ImageFilter {
            identifier: Some(IMAGE0.into()),
            ..ImageFilter::default()
        })
        .unwrap()
        .remove(0);
    let e = &index[IMAGE0];
    assert_eq!(e["filename"], IMAGE0);
    assert_eq!(e["uuid"], IMAGE0);
    assert_eq!(e["dc:identifier"], IMAGE0);
    assert_eq!(e["sha512"], record.image.sha512);
    assert_eq!(e["sl:checksum:sha512"], record.image.sha512);
    assert_eq!(e["size"], 262_144);
    assert_eq!(e["hv:size"], 262_144);
    assert_eq!(e["uri"], record.image.uri);
    assert_eq!(e["hv:uri"], record.image.uri);
    assert_eq!(e["msgHash"], record.list_sha512);
    assert_eq!(e["DownLoadTrys"]["msgHash"], record.list_sha512);
    assert_eq!(e["hv:imagelist.dc:identifier"], LIST_ID);
    assert_eq!(e["dc:title"], record.image.title);
    assert_eq!(e["hv:version"], record.image.version);
    let raw = record.image.to_json();
    for (key, value) in &raw {
        assert_eq!(&e[format!("hv:image.{key}")], value, "hv:image.{key}");
    }
    // The image keys vmcatcher's download() copies under their own names.
    for key in [
        "dc:description",
        "hv:hypervisor",
        "sl:arch",
        "sl:comments",
        "sl:os",
        "sl:osversion",
    ] {
        if let Some(value) = raw.get(key) {
            assert_eq!(&e[key], value, "{key}");
        }
    }
    // What vmcatcher_cache indexes in every entry vmc writes (checkSumCache, expire,
    // download); the kept entry is vmcatcher's own, as it was.
    for (id, entry) in index.iter().filter(|(id, _)| *id != IMAGE1) {
        for key in ["filename", "uuid", "sha512", "size", "msgHash"] {
            assert!(entry.get(key).is_some(), "{id} lacks {key}: {entry}");
        }
        assert!(entry["size"].is_u64(), "{id}: size is compared as a number");
    }
    // indexUnknownClear would delete nothing: every file is named.
    let named: Vec<&str> = index
        .values()
        .map(|e| e["filename"].as_str().unwrap())
        .collect();
    for file in std::fs::read_dir(home.join("cache")).unwrap() {
        let name = file.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "cache.index" || named.contains(&name.as_str()),
            "{name} is not in the index: vmcatcher would delete it"
        );
    }
}

/// Issue 21, point 4: a cache directory that is not there stops the import before anything is
/// written; one that fails half-way is reported with what was done.
#[test]
fn a_missing_cache_directory_stops_the_import_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "good.smime", 0, None, None);
    let home = tmp.path().join("home");
    let options = ImportOptions {
        database: db,
        cache_dir: Some(tmp.path().join("no-such-cache")),
        fetch_rejected: false,
    };
    // The check needs no vmc database, and fails naming the directory.
    let err = vmc_cache::import::check_import(&config(&home), &options).unwrap_err();
    assert!(err.is_setup(), "{err}");
    assert!(
        format!("{err}").contains("no-such-cache"),
        "{err}: names the directory"
    );
    assert!(!home.exists(), "nothing was created");
    let vmc = Vmc::open(config(&home)).unwrap();
    assert!(vmc.import_vmcatcher(&options).unwrap_err().is_setup());
    assert!(
        vmc.store().subscriptions().unwrap().is_empty(),
        "nothing imported"
    );

    // The directory goes away after the check: the report says so, with what was imported.
    let old_cache = tmp.path().join("vmcatcher-cache");
    vmcatcher_cache(&old_cache);
    let options = ImportOptions {
        cache_dir: Some(old_cache.clone()),
        ..options
    };
    let checked = vmc_cache::import::check_import(vmc.config(), &options).unwrap();
    std::fs::remove_dir_all(&old_cache).unwrap();
    let report = vmc.import_checked(checked).unwrap();
    assert_eq!(report.subscriptions[0].status, SubscriptionStatus::Imported);
    let error = report.cache_error.as_deref().unwrap();
    assert!(error.contains("vmcatcher-cache"), "{error}");
    assert!(report.has_failures());
}

/// An import stopped just after it created the subscription: the next import finds it
/// existing and records what the first did not (the list identifier, vmcatcher's selection as
/// pending selections), and nothing a third time.
#[test]
fn an_import_stopped_half_way_is_completed_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vmcatcher.db");
    vmcatcher_db(&db, "tampered.smime", 0, None, None);
    let vmc = Vmc::open(config(&tmp.path().join("home"))).unwrap();
    vmc.store()
        .add_subscription(&vmc_cache::store::NewSubscription {
            url: LIST_URL.into(),
            new_images: NewImagePolicy::Refuse,
            auth: None,
            enabled: true,
        })
        .unwrap();
    let options = ImportOptions {
        database: db,
        cache_dir: None,
        fetch_rejected: false,
    };
    let report = vmc.import_vmcatcher(&options).unwrap();
    let sub = &report.subscriptions[0];
    assert_eq!(sub.status, SubscriptionStatus::Existing);
    let all = sorted(&[IMAGE0, IMAGE2, "gone-image"]);
    let mut reported = sub.pending.clone();
    reported.sort();
    assert_eq!(reported, all);
    assert_eq!(pending(&vmc), all);
    assert!(vmc.store().find_subscription(LIST_ID).unwrap().is_some());
    let again = vmc.import_vmcatcher(&options).unwrap();
    assert!(again.subscriptions[0].pending.is_empty());
    assert_eq!(pending(&vmc), all);
}
