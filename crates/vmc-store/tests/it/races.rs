//! Two processes doing the same work on one database (several vmc homes sharing it, issue 20):
//! the writes that can race are conflict-safe, so neither fails with a constraint error and
//! the work is stored once. Each writer has its own `Store` (its own connection) and the two
//! start together behind a barrier; run on SQLite and on PostgreSQL.

use std::sync::Barrier;

use vmc_model::{ExpiryReason, NewImagePolicy};
use vmc_store::{CacheEntry, ListImport, StoreError};

use crate::db::TestDb;
use crate::fixtures::{
    at, cache_entry, id, image, import, list, sha, store_with_linked_subscription,
};

crate::on_both_backends!(
    concurrent_records_of_one_cached_file_both_succeed,
    concurrent_imports_of_one_version_store_it_once,
    an_import_overtaken_by_a_newer_version_stores_nothing,
    missing_files_are_their_own_state,
    an_expiry_recorded_second_gets_a_record_of_its_own,
);

const ROUNDS: usize = 12;

/// Runs `f(0)` and `f(1)` at the same time, each on its own thread.
fn together<T: Send>(f: impl Fn(usize) -> T + Sync) -> [T; 2] {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let handles = [0, 1].map(|n| {
            let (f, barrier) = (&f, &barrier);
            scope.spawn(move || {
                barrier.wait();
                f(n)
            })
        });
        handles.map(|h| h.join().unwrap())
    })
}

/// Regression: `record_cached` was a DELETE then an INSERT, so on PostgreSQL the second of two
/// writers failed with `cache_entries_one_cached` and never fired `AvailablePostfix`.
fn concurrent_records_of_one_cached_file_both_succeed(db: &TestDb) {
    let (store, signer, sub) = store_with_linked_subscription(db, NewImagePolicy::Subscribe);
    let version = import(
        &store,
        sub,
        &list("L", "1", &signer, vec![image("img-1", 'a')]),
        &signer,
    );
    let writers = [db.open(), db.open()];
    for round in 0..ROUNDS {
        // Every third round starts from a missing record, the others from a cached one.
        if round % 3 == 2 {
            store.record_missing(&id("img-1"), at(5)).unwrap();
        }
        let results: [Result<(), StoreError>; 2] = together(|n| {
            let mut entry = cache_entry("img-1", 'a', sub, version);
            entry.cached_at = at(100 + n as i64);
            writers[n].record_cached(&entry)
        });
        for r in results {
            r.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        }
        let entries = store.cache_entries().unwrap();
        assert_eq!(entries.len(), 1, "round {round}: {entries:?}");
        assert!(store.missing_entries().unwrap().is_empty());
    }
}

/// Regression: two processes importing the same new list version stored it twice, and the
/// second one failed on `image_selections_pkey`.
fn concurrent_imports_of_one_version_store_it_once(db: &TestDb) {
    let (store, signer, sub) = store_with_linked_subscription(db, NewImagePolicy::Subscribe);
    import(
        &store,
        sub,
        &list("L", "1", &signer, vec![image("img-0", '0')]),
        &signer,
    );
    let writers = [db.open(), db.open()];
    for round in 1..=ROUNDS {
        let version = (round + 1).to_string();
        let new_id = format!("img-{round}");
        let lst = list(
            "L",
            &version,
            &signer,
            vec![image("img-0", '0'), image(&new_id, 'b')],
        );
        let raw = lst.to_json_bytes();
        let digest = sha(char::from(b'a' + (round % 26) as u8));
        let outcomes = together(|n| {
            writers[n].import_list(
                sub,
                &ListImport {
                    raw: &raw,
                    sha512: &digest,
                    list: &lst,
                    signer: &signer,
                    imported: at(60 + round as i64),
                    select_all: false,
                },
            )
        });
        let [a, b] = outcomes.map(|o| o.unwrap_or_else(|e| panic!("round {round}: {e:?}")));
        assert_eq!(a.version_id, b.version_id, "round {round}");
        assert!(
            a.already_current != b.already_current,
            "round {round}: exactly one import stores the version: {a:?} {b:?}"
        );
        let first = if a.already_current { &b } else { &a };
        let second = if a.already_current { &a } else { &b };
        assert_eq!(first.new_images, [id(&new_id)], "round {round}");
        assert!(second.new_images.is_empty(), "round {round}");
        let current = store.subscription(sub).unwrap().current.unwrap();
        assert_eq!(current.version, version);
        let stored = store.current_version(sub).unwrap().unwrap();
        assert_eq!(stored.images.len(), 2);
    }
}

/// Two processes fetched the list at different times: the one holding the older version
/// imports it after the newer one is stored, and must not make it current again.
fn an_import_overtaken_by_a_newer_version_stores_nothing(db: &TestDb) {
    let (store, signer, sub) = store_with_linked_subscription(db, NewImagePolicy::Subscribe);
    let newer = import(
        &store,
        sub,
        &list("L", "3", &signer, vec![image("img-1", 'a')]),
        &signer,
    );
    let older = list(
        "L",
        "2",
        &signer,
        vec![image("img-1", 'a'), image("img-2", 'b')],
    );
    let outcome = crate::fixtures::import_with(&db.open(), sub, &older, &signer, false);
    assert!(outcome.already_current, "{outcome:?}");
    assert_eq!(outcome.version_id, newer);
    assert!(outcome.new_images.is_empty());
    let current = store.subscription(sub).unwrap().current.unwrap();
    assert_eq!(current.version, "3");
    assert_eq!(store.version_count(sub).unwrap(), 1);
}

fn missing_files_are_their_own_state(db: &TestDb) {
    let store = db.open();
    let entry = |name: &str| CacheEntry {
        identifier: id(name),
        filename: name.into(),
        size: 4096,
        sha512: sha('a'),
        subscription_id: None,
        list_version_id: None,
        cached_at: at(10),
    };
    for name in ["img-a", "img-b", "img-c"] {
        store.record_cached(&entry(name)).unwrap();
    }
    // Any number of missing records (the old "expired as ''" allowed one).
    for name in ["img-a", "img-b", "img-c"] {
        assert!(store.record_missing(&id(name), at(20)).unwrap());
        assert!(
            !store.record_missing(&id(name), at(21)).unwrap(),
            "idempotent"
        );
    }
    assert!(store.cache_entries().unwrap().is_empty());
    assert!(store.expired_entries().unwrap().is_empty());
    let missing = store.missing_entries().unwrap();
    assert_eq!(missing.len(), 3);
    assert!(
        missing
            .iter()
            .all(|m| m.since == at(20) && m.entry.cached_at == at(10))
    );
    // Caching the image again replaces its missing record.
    let mut again = entry("img-a");
    again.cached_at = at(30);
    store.record_cached(&again).unwrap();
    assert_eq!(store.cache_entries().unwrap(), [again]);
    assert_eq!(store.missing_entries().unwrap().len(), 2);
    // A missing record is not cached, so it cannot expire into a file...
    let err = store
        .record_expired(&id("img-b"), ExpiryReason::Unselected, "img-b.x", at(40))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // ...it is forgotten.
    assert!(store.forget_missing(&id("img-b")).unwrap());
    assert!(!store.forget_missing(&id("img-b")).unwrap());
    assert_eq!(store.missing_entries().unwrap().len(), 1);
    // An expiry always names its file.
    let err = store
        .record_expired(&id("img-a"), ExpiryReason::Corrupt, "", at(50))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::EmptyExpiredFile { .. }),
        "{err:?}"
    );
    assert_eq!(store.cache_entries().unwrap().len(), 1);
}

/// Two homes expire the same image: the second finds the cached record gone (`NotFound`) and
/// records its own file with `add_expired`; a taken expired file name is a `Conflict`, which
/// the caller answers by moving its file to another name.
fn an_expiry_recorded_second_gets_a_record_of_its_own(db: &TestDb) {
    let store = db.open();
    let entry = CacheEntry {
        identifier: id("img-a"),
        filename: "img-a".into(),
        size: 10,
        sha512: sha('a'),
        subscription_id: None,
        list_version_id: None,
        cached_at: at(10),
    };
    store.record_cached(&entry).unwrap();
    store
        .record_expired(
            &entry.identifier,
            ExpiryReason::Unselected,
            "img-a.1",
            at(20),
        )
        .unwrap();
    let err = store
        .record_expired(
            &entry.identifier,
            ExpiryReason::Unselected,
            "img-a.2",
            at(21),
        )
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = store
        .add_expired(&entry, ExpiryReason::Unselected, "img-a.1", at(21))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let err = store
        .add_expired(&entry, ExpiryReason::Unselected, "", at(21))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::EmptyExpiredFile { .. }),
        "{err:?}"
    );
    store
        .add_expired(&entry, ExpiryReason::Unselected, "img-a.2", at(21))
        .unwrap();
    let expired = store.expired_entries().unwrap();
    let files: Vec<&str> = expired.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["img-a.1", "img-a.2"]);
    assert_eq!(expired[1].expired_at, at(21));
    assert_eq!((expired[1].size, expired[1].sha512.clone()), (10, sha('a')));
    assert!(store.cache_entries().unwrap().is_empty());
}
