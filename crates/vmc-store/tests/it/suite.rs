//! The repository suite: every operation of the store, written once, run on every backend.

use serde_json::json;
use vmc_model::{ErrorCode, EventType, ExpiryReason, LastError, NewImagePolicy, SubscriptionAuth};
use vmc_store::{
    CacheEntry, EventOutcome, ImageFilter, ListImport, NewEvent, NewSubscription, StoreError,
    SubscriptionChange,
};

use crate::db::TestDb;
use crate::fixtures::{
    LIST_URL, add_endorser_s, at, cache_entry, id, identity, image, import, import_one_image,
    import_with, linked_subscription, list, one_image_list, sha, store_with_linked_subscription,
    store_with_subscription, subscription,
};

crate::on_both_backends!(
    endorsers_hold_identities_and_links,
    add_endorser_refuses_taken_identities_and_ids,
    find_endorser_by_shared_subject_is_ambiguous,
    same_subject_under_another_issuer_endorses_nothing,
    removing_an_endorser_withdraws_its_signatures,
    subscriptions_are_created_changed_and_removed,
    credentials_round_trip_and_never_show,
    update_outcomes_touch_only_error_and_time,
    import_stores_the_version_exactly,
    import_needs_a_stored_signer_and_the_same_list,
    new_images_follow_the_policy,
    old_versions_are_pruned_beyond_the_bound,
    images_are_filtered_and_sorted,
    set_selected_is_all_or_nothing,
    cache_entries_enter_expire_and_are_forgotten,
    removing_a_subscription_keeps_cache_entries,
    events_are_journalled_with_their_outcome,
    reopening_keeps_data_and_runs_no_migration,
);

fn endorsers_hold_identities_and_links(db: &TestDb) {
    let store = db.open();
    let a1 = identity("/C=XX/CN=Alice", "/C=XX/CN=CA 1");
    let a2 = identity("/C=XX/CN=Alice (new)", "/C=XX/CN=CA 2");
    let added = store
        .add_endorser("alice", &[a1.clone(), a2.clone(), a1.clone()])
        .unwrap();
    assert_eq!(added.id, "alice");
    assert_eq!(added.identities, vec![a1.clone(), a2.clone()]);
    assert!(added.subscriptions.is_empty());
    store.add_endorser("bob", &[]).unwrap();
    let b1 = identity("/C=XX/CN=Bob", "/C=XX/CN=CA 1");
    store.add_identity("bob", &b1).unwrap();
    store.add_identity("bob", &b1).unwrap(); // already held: nothing happens

    let s1 = subscription(&store, "https://b.example.org/list", NewImagePolicy::Refuse);
    let s2 = subscription(&store, "https://a.example.org/list", NewImagePolicy::Refuse);
    store.link("alice", s1).unwrap();
    store.link("alice", s1).unwrap(); // idempotent
    store.link("alice", s2).unwrap();

    let all = store.endorsers().unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(
        all[0].subscriptions,
        ["https://a.example.org/list", "https://b.example.org/list"]
    );
    assert_eq!(all[1].identities, vec![b1.clone()]);

    assert_eq!(store.find_endorser("alice").unwrap().unwrap().id, "alice");
    assert_eq!(
        store.find_endorser("/C=XX/CN=Bob").unwrap().unwrap().id,
        "bob"
    );
    assert_eq!(store.find_endorser("/C=XX/CN=Nobody").unwrap(), None);
    assert_eq!(
        store.endorser_by_identity(&a2).unwrap().unwrap().id,
        "alice"
    );
    assert_eq!(
        store
            .endorser_by_identity(&identity("/C=XX/CN=Alice", "/C=XX/CN=CA 2"))
            .unwrap(),
        None
    );

    assert_eq!(
        store.linked_endorser_for(s1, &a1).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        store.linked_endorser_for(s1, &a2).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(store.linked_endorser_for(s1, &b1).unwrap(), None);
    store.unlink("alice", s1).unwrap();
    store.unlink("alice", s1).unwrap(); // idempotent
    assert_eq!(store.linked_endorser_for(s1, &a1).unwrap(), None);
    assert_eq!(
        store.linked_endorser_for(s2, &a1).unwrap().as_deref(),
        Some("alice")
    );

    for err in [
        store.link("nobody", s1).unwrap_err(),
        store.link("alice", 999_999).unwrap_err(),
        store.unlink("nobody", s1).unwrap_err(),
        store.add_identity("nobody", &b1).unwrap_err(),
        store.remove_endorser("nobody").unwrap_err(),
    ] {
        assert!(err.is_not_found(), "{err}");
    }
}

fn add_endorser_refuses_taken_identities_and_ids(db: &TestDb) {
    let store = db.open();
    let shared = identity("/CN=Shared", "/CN=CA");
    store
        .add_endorser("first", std::slice::from_ref(&shared))
        .unwrap();
    let err = store.add_endorser("first", &[]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                what: "endorser",
                ..
            }
        ),
        "{err}"
    );

    let fresh = identity("/CN=Fresh", "/CN=CA");
    let err = store
        .add_endorser("second", &[fresh.clone(), shared.clone()])
        .unwrap_err();
    match &err {
        StoreError::IdentityTaken {
            subject,
            issuer,
            endorser,
        } => {
            assert_eq!(
                (subject.as_str(), issuer.as_str()),
                ("/CN=Shared", "/CN=CA")
            );
            assert_eq!(endorser, "first");
        }
        other => panic!("expected IdentityTaken, got {other:?}"),
    }
    // All or nothing: neither the endorser nor its first identity was stored.
    assert_eq!(store.find_endorser("second").unwrap(), None);
    assert_eq!(store.endorser_by_identity(&fresh).unwrap(), None);

    store.add_endorser("second", &[fresh]).unwrap();
    let err = store.add_identity("second", &shared).unwrap_err();
    assert!(matches!(err, StoreError::IdentityTaken { .. }), "{err}");
}

fn find_endorser_by_shared_subject_is_ambiguous(db: &TestDb) {
    let store = db.open();
    store
        .add_endorser("real", &[identity("/CN=Jane", "/CN=Good CA")])
        .unwrap();
    store
        .add_endorser("other", &[identity("/CN=Jane", "/CN=Other CA")])
        .unwrap();
    match store.find_endorser("/CN=Jane").unwrap_err() {
        StoreError::Ambiguous { candidates, .. } => assert_eq!(candidates, ["other", "real"]),
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    // By id it is not ambiguous.
    assert_eq!(
        store.find_endorser("real").unwrap().unwrap().identities[0].issuer,
        "/CN=Good CA"
    );
}

/// Regression guard for the old tool's worst bug: a signature is credited by subject *and*
/// issuer, never by subject alone.
fn same_subject_under_another_issuer_endorses_nothing(db: &TestDb) {
    let store = db.open();
    let genuine = identity("/C=XX/CN=Jane", "/C=XX/CN=Good CA");
    let rogue = identity("/C=XX/CN=Jane", "/C=XX/CN=Rogue CA");
    store
        .add_endorser("jane", std::slice::from_ref(&genuine))
        .unwrap();
    store
        .add_endorser("impostor", std::slice::from_ref(&rogue))
        .unwrap();
    let sub = linked_subscription(&store, "jane", LIST_URL, NewImagePolicy::Refuse);

    assert_eq!(
        store.linked_endorser_for(sub, &genuine).unwrap().as_deref(),
        Some("jane")
    );
    assert_eq!(store.linked_endorser_for(sub, &rogue).unwrap(), None);

    import_one_image(&store, sub, "1", &rogue);
    let images = store.images(&ImageFilter::default()).unwrap();
    assert_eq!(images.len(), 1);
    assert!(
        !images[0].endorsed,
        "a rogue CA's signature endorsed the list"
    );

    import_one_image(&store, sub, "2", &genuine);
    assert!(store.images(&ImageFilter::default()).unwrap()[0].endorsed);
}

fn removing_an_endorser_withdraws_its_signatures(db: &TestDb) {
    let store = db.open();
    let signer = identity("/CN=Signer", "/CN=CA");
    store
        .add_endorser("old", std::slice::from_ref(&signer))
        .unwrap();
    let sub = linked_subscription(&store, "old", LIST_URL, NewImagePolicy::Refuse);
    import_one_image(&store, sub, "1", &signer);
    assert!(store.images(&ImageFilter::default()).unwrap()[0].endorsed);

    store.remove_endorser("old").unwrap();
    assert_eq!(store.find_endorser("old").unwrap(), None);
    assert_eq!(store.endorser_by_identity(&signer).unwrap(), None);
    assert_eq!(store.linked_endorser_for(sub, &signer).unwrap(), None);
    let record = &store.images(&ImageFilter::default()).unwrap()[0];
    assert!(!record.endorsed);
    // The version itself stays, with its signer on record.
    let current = store.current_version(sub).unwrap().unwrap();
    assert_eq!(current.info.signer, signer);

    // Whoever holds that exact identity later, and is linked, endorses the stored version.
    store
        .add_endorser("new", std::slice::from_ref(&signer))
        .unwrap();
    assert!(!store.images(&ImageFilter::default()).unwrap()[0].endorsed);
    store.link("new", sub).unwrap();
    assert!(store.images(&ImageFilter::default()).unwrap()[0].endorsed);
}

fn subscriptions_are_created_changed_and_removed(db: &TestDb) {
    let store = db.open();
    let created = store
        .add_subscription(&NewSubscription {
            url: "https://z.example.org/list".into(),
            new_images: NewImagePolicy::Accept,
            auth: None,
            enabled: false,
        })
        .unwrap();
    assert_eq!(created.url, "https://z.example.org/list");
    assert_eq!(created.new_images, NewImagePolicy::Accept);
    assert!(!created.enabled);
    assert_eq!(
        (created.identifier.clone(), created.title.clone()),
        (None, None)
    );
    assert_eq!(
        (
            created.updated,
            created.last_error.clone(),
            created.current.clone()
        ),
        (None, None, None)
    );
    let err = store
        .add_subscription(&NewSubscription {
            url: created.url.clone(),
            new_images: NewImagePolicy::Refuse,
            auth: None,
            enabled: true,
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                what: "subscription",
                ..
            }
        ),
        "{err}"
    );
    let other = subscription(&store, "https://a.example.org/list", NewImagePolicy::Refuse);

    let urls: Vec<String> = store
        .subscriptions()
        .unwrap()
        .into_iter()
        .map(|s| s.url)
        .collect();
    assert_eq!(
        urls,
        ["https://a.example.org/list", "https://z.example.org/list"]
    );
    assert_eq!(store.subscription(created.id).unwrap(), created);
    assert_eq!(
        store
            .find_subscription("https://z.example.org/list")
            .unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.find_subscription("no-such-list").unwrap(), None);
    assert!(store.subscription(999_999).unwrap_err().is_not_found());

    store
        .update_subscription(
            created.id,
            &SubscriptionChange {
                new_images: Some(NewImagePolicy::Subscribe),
                auth: None,
                enabled: Some(true),
            },
        )
        .unwrap();
    let changed = store.subscription(created.id).unwrap();
    assert_eq!(changed.new_images, NewImagePolicy::Subscribe);
    assert!(changed.enabled);
    store
        .update_subscription(created.id, &SubscriptionChange::default())
        .unwrap();
    assert_eq!(store.subscription(created.id).unwrap(), changed);
    assert!(
        store
            .update_subscription(999_999, &SubscriptionChange::default())
            .unwrap_err()
            .is_not_found()
    );

    // After an import the list identifier finds it too; two subscriptions of one list are
    // ambiguous by identifier.
    let signer = add_endorser_s(&store);
    import(
        &store,
        created.id,
        &list("mirrored", "1", &signer, vec![]),
        &signer,
    );
    let found = store.find_subscription("mirrored").unwrap().unwrap();
    assert_eq!(found.id, created.id);
    assert_eq!(found.identifier.as_deref(), Some("mirrored"));
    assert_eq!(found.title.as_deref(), Some("List mirrored"));
    import(
        &store,
        other,
        &list("mirrored", "1", &signer, vec![]),
        &signer,
    );
    assert!(matches!(
        store.find_subscription("mirrored").unwrap_err(),
        StoreError::Ambiguous { .. }
    ));

    store.remove_subscription(created.id).unwrap();
    assert!(store.subscription(created.id).unwrap_err().is_not_found());
    assert!(
        store
            .remove_subscription(created.id)
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(store.subscriptions().unwrap().len(), 1);
}

fn credentials_round_trip_and_never_show(db: &TestDb) {
    let store = db.open();
    let basic = SubscriptionAuth::Basic {
        username: "reader".into(),
        password: "pa55-basic".into(),
    };
    let sub = store
        .add_subscription(&NewSubscription {
            url: "https://example.org/private".into(),
            new_images: NewImagePolicy::Refuse,
            auth: Some(basic.clone()),
            enabled: true,
        })
        .unwrap();
    assert_eq!(sub.auth, Some(basic));
    let bearer = SubscriptionAuth::Bearer {
        token: "t0ken-bearer".into(),
    };
    store
        .update_subscription(
            sub.id,
            &SubscriptionChange {
                auth: Some(Some(bearer.clone())),
                ..SubscriptionChange::default()
            },
        )
        .unwrap();
    assert_eq!(store.subscription(sub.id).unwrap().auth, Some(bearer));
    let shown = format!(
        "{:?} {:?} {:?}",
        store.subscriptions().unwrap(),
        store
            .find_subscription("https://example.org/private")
            .unwrap(),
        store
    );
    assert!(
        !shown.contains("pa55-basic") && !shown.contains("t0ken-bearer"),
        "{shown}"
    );
    store
        .update_subscription(
            sub.id,
            &SubscriptionChange {
                auth: Some(None),
                ..SubscriptionChange::default()
            },
        )
        .unwrap();
    assert_eq!(store.subscription(sub.id).unwrap().auth, None);
}

fn update_outcomes_touch_only_error_and_time(db: &TestDb) {
    let (store, signer, sub) = store_with_subscription(db, NewImagePolicy::Refuse);
    import_one_image(&store, sub, "1", &signer);
    let before = store.subscription(sub).unwrap();
    assert_eq!(before.updated, Some(at(60)));

    let error = LastError {
        code: ErrorCode::CertificateRevoked,
        message: "the signer's certificate is revoked".into(),
    };
    store.record_update_failure(sub, &error, at(120)).unwrap();
    let failed = store.subscription(sub).unwrap();
    assert_eq!(failed.last_error, Some(error.clone()));
    assert_eq!(failed.updated, Some(at(120)));
    assert_eq!(
        failed.current, before.current,
        "a failure must not touch the current version"
    );
    assert_eq!(
        (failed.identifier, failed.title),
        (before.identifier.clone(), before.title.clone())
    );

    store.record_unchanged(sub, at(180)).unwrap();
    let unchanged = store.subscription(sub).unwrap();
    assert_eq!(unchanged.last_error, None);
    assert_eq!(unchanged.updated, Some(at(180)));
    assert_eq!(unchanged.current, before.current);

    store.record_update_failure(sub, &error, at(200)).unwrap();
    import_one_image(&store, sub, "2", &signer);
    assert_eq!(
        store.subscription(sub).unwrap().last_error,
        None,
        "an import clears the error"
    );

    assert!(
        store
            .record_update_failure(999_999, &error, at(0))
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .record_unchanged(999_999, at(0))
            .unwrap_err()
            .is_not_found()
    );
}

fn import_stores_the_version_exactly(db: &TestDb) {
    let store = db.open();
    let signer = identity("/C=XX/O=Grid/CN=Jane Doe", "/C=XX/O=Grid/CN=Grid CA");
    store
        .add_endorser("jane", std::slice::from_ref(&signer))
        .unwrap();
    let sub = subscription(&store, LIST_URL, NewImagePolicy::Refuse);
    assert_eq!(store.current_version(sub).unwrap(), None);
    assert!(store.current_version(999_999).unwrap_err().is_not_found());

    let mut big = image("big", 'b');
    big.size = i64::MAX as u64;
    big.sha512 = sha('B');
    let images = vec![image("zeta", 'c'), image("alpha", 'd'), big];
    let imported = list("list-1", "1.10", &signer, images.clone());
    let raw = imported.to_json_bytes();
    let outcome = store
        .import_list(
            sub,
            &ListImport {
                raw: &raw,
                sha512: &sha('E'),
                list: &imported,
                signer: &signer,
                imported: at(60),
                select_all: false,
            },
        )
        .unwrap();
    assert_eq!(outcome.new_images, [id("zeta"), id("alpha"), id("big")]);

    let stored = store.current_version(sub).unwrap().unwrap();
    assert_eq!(stored.info.id, outcome.version_id);
    assert_eq!(stored.info.version, "1.10");
    assert_eq!(
        stored.info.created, imported.created,
        "dates keep their nanoseconds"
    );
    assert_eq!(stored.info.expires, imported.expires);
    assert_eq!(stored.info.imported, at(60));
    assert_eq!(stored.info.sha512, sha('e'), "digests are stored lowercase");
    assert_eq!(stored.info.signer, signer);
    assert_eq!(stored.raw, raw);
    assert_eq!(stored.list_identifier, "list-1");
    assert_eq!(stored.vo.as_deref(), Some("dteam"));
    let mut expected = images;
    expected[2].sha512 = sha('b');
    assert_eq!(
        stored.images, expected,
        "images come back as imported, in list order"
    );
    let keys: Vec<&String> = stored.images[0].extra.keys().collect();
    assert_eq!(
        keys,
        [
            "sl:os",
            "dc:description",
            "hv:hypervisor",
            "ad:user:fullname",
            "hv:ram_minimum",
            "zz:nested"
        ]
    );

    let sub_now = store.subscription(sub).unwrap();
    assert_eq!(sub_now.current.as_ref(), Some(&stored.info));
    assert_eq!(sub_now.identifier.as_deref(), Some("list-1"));

    // A size beyond BIGINT is refused and nothing of that import is stored.
    let mut huge = image("huge", 'f');
    huge.size = u64::MAX;
    let refused = list("list-1", "2", &signer, vec![image("other", 'a'), huge]);
    let err = store
        .import_list(
            sub,
            &ListImport {
                raw: b"x",
                sha512: &sha('1'),
                list: &refused,
                signer: &signer,
                imported: at(90),
                select_all: false,
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
    assert_eq!(
        store.current_version(sub).unwrap().unwrap().info.id,
        outcome.version_id
    );
}

fn import_needs_a_stored_signer_and_the_same_list(db: &TestDb) {
    let (store, signer, sub) = store_with_subscription(db, NewImagePolicy::Subscribe);
    let stranger = identity("/CN=S", "/CN=Other CA");
    let first = one_image_list("1", &stranger);
    let raw = first.to_json_bytes();
    let err = store
        .import_list(
            sub,
            &ListImport {
                raw: &raw,
                sha512: &sha('a'),
                list: &first,
                signer: &stranger,
                imported: at(60),
                select_all: true,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                what: "signer identity",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.current_version(sub).unwrap(), None);
    assert!(store.images(&ImageFilter::default()).unwrap().is_empty());
    assert_eq!(store.subscription(sub).unwrap().identifier, None);

    import_one_image(&store, sub, "1", &signer);
    let other = list("M", "2", &signer, vec![image("img-2", 'b')]);
    let mismatched = ListImport {
        raw: &raw,
        sha512: &sha('b'),
        list: &other,
        signer: &signer,
        imported: at(61),
        select_all: false,
    };
    let err = store.import_list(sub, &mismatched).unwrap_err();
    assert!(
        matches!(err, StoreError::IdentifierMismatch { .. }),
        "{err}"
    );
    assert_eq!(
        store.current_version(sub).unwrap().unwrap().info.version,
        "1"
    );
    assert!(
        store
            .import_list(999_999, &mismatched)
            .unwrap_err()
            .is_not_found()
    );
}

fn new_images_follow_the_policy(db: &TestDb) {
    let store = db.open();
    let signer = add_endorser_s(&store);
    let refuse = subscription(&store, "https://r.example.org/list", NewImagePolicy::Refuse);
    let subscribe = subscription(
        &store,
        "https://s.example.org/list",
        NewImagePolicy::Subscribe,
    );
    let selected = |sub: i64| -> Vec<(String, bool)> {
        store
            .images(&ImageFilter {
                subscription_id: Some(sub),
                ..ImageFilter::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| (r.image.identifier.to_string(), r.selected))
            .collect()
    };

    let v1 = list(
        "R",
        "1",
        &signer,
        vec![image("r-1", 'a'), image("r-2", 'b')],
    );
    let outcome = import_with(&store, refuse, &v1, &signer, false);
    assert_eq!(outcome.new_images, [id("r-1"), id("r-2")]);
    assert_eq!(
        selected(refuse),
        [("r-1".into(), false), ("r-2".into(), false)]
    );

    // r-2 leaves, r-3 arrives; r-2 comes back later and is not new then.
    let v2 = list(
        "R",
        "2",
        &signer,
        vec![image("r-1", 'a'), image("r-3", 'c')],
    );
    assert_eq!(
        import_with(&store, refuse, &v2, &signer, false).new_images,
        [id("r-3")]
    );
    let v3 = list(
        "R",
        "3",
        &signer,
        vec![image("r-2", 'b'), image("r-3", 'c')],
    );
    assert!(
        import_with(&store, refuse, &v3, &signer, false)
            .new_images
            .is_empty()
    );

    // select_all selects every image of this list, seen before or not.
    let v4 = list(
        "R",
        "4",
        &signer,
        vec![image("r-2", 'b'), image("r-4", 'd')],
    );
    let outcome = import_with(&store, refuse, &v4, &signer, true);
    assert_eq!(outcome.new_images, [id("r-4")]);
    assert_eq!(
        selected(refuse),
        [("r-2".into(), true), ("r-4".into(), true)]
    );

    let s1 = list("S", "1", &signer, vec![image("s-1", 'e')]);
    import_with(&store, subscribe, &s1, &signer, false);
    store.set_selected(&[id("s-1")], false).unwrap();
    let s2 = list(
        "S",
        "2",
        &signer,
        vec![image("s-1", 'e'), image("s-2", 'f')],
    );
    import_with(&store, subscribe, &s2, &signer, false);
    assert_eq!(
        selected(subscribe),
        [("s-1".into(), false), ("s-2".into(), true)],
        "policy subscribe selects new images only; a deselection stays"
    );
}

fn old_versions_are_pruned_beyond_the_bound(db: &TestDb) {
    let (mut store, signer, sub) = store_with_subscription(db, NewImagePolicy::Refuse);
    assert_eq!(store.keep_versions(), vmc_store::DEFAULT_KEEP_VERSIONS);
    store.set_keep_versions(2);
    let other = subscription(
        &store,
        "https://other.example.org/list",
        NewImagePolicy::Refuse,
    );
    import(
        &store,
        other,
        &list("O", "1", &signer, vec![image("o-1", 'a')]),
        &signer,
    );

    let first = import_one_image(&store, sub, "1", &signer);
    store
        .record_cached(&cache_entry("img-1", 'a', sub, first))
        .unwrap();
    for v in 2..=4 {
        import_one_image(&store, sub, &v.to_string(), &signer);
    }
    assert_eq!(store.version_count(sub).unwrap(), 2);
    assert_eq!(
        store.version_count(other).unwrap(),
        1,
        "other subscriptions keep theirs"
    );
    assert_eq!(
        store.current_version(sub).unwrap().unwrap().info.version,
        "4"
    );
    let cached = store.cache_entries().unwrap();
    assert_eq!(
        cached[0].list_version_id, None,
        "a pruned version leaves no dangling reference"
    );
    assert_eq!(cached[0].subscription_id, Some(sub));

    store.set_keep_versions(0); // means 1: the current version is never pruned
    assert_eq!(store.keep_versions(), 1);
    import_one_image(&store, sub, "5", &signer);
    assert_eq!(store.version_count(sub).unwrap(), 1);
    assert_eq!(
        store.current_version(sub).unwrap().unwrap().info.version,
        "5"
    );
}

fn images_are_filtered_and_sorted(db: &TestDb) {
    let store = db.open();
    let signer = add_endorser_s(&store);
    let b = linked_subscription(
        &store,
        "s",
        "https://b.example.org/list",
        NewImagePolicy::Subscribe,
    );
    let a = subscription(&store, "https://a.example.org/list", NewImagePolicy::Refuse);
    let old_b = import(
        &store,
        b,
        &list("B", "1", &signer, vec![image("gone", 'f')]),
        &signer,
    );
    let vb = import(
        &store,
        b,
        &list(
            "B",
            "2",
            &signer,
            vec![image("b-2", 'b'), image("b-1", 'c')],
        ),
        &signer,
    );
    let va = import(
        &store,
        a,
        &list("A", "1", &signer, vec![image("a-1", 'a')]),
        &signer,
    );
    assert_ne!(old_b, vb);
    store
        .update_subscription(
            a,
            &SubscriptionChange {
                enabled: Some(false),
                ..SubscriptionChange::default()
            },
        )
        .unwrap();
    let cached = cache_entry("b-1", 'c', b, vb);
    store.record_cached(&cached).unwrap();

    let all = store.images(&ImageFilter::default()).unwrap();
    let order: Vec<(i64, &str)> = all
        .iter()
        .map(|r| (r.subscription_id, r.image.identifier.as_str()))
        .collect();
    assert_eq!(
        order,
        [(a, "a-1"), (b, "b-1"), (b, "b-2")],
        "current versions only, by URL then id"
    );
    let a1 = &all[0];
    assert_eq!(a1.subscription_url, "https://a.example.org/list");
    assert_eq!(
        (a1.list_identifier.as_str(), a1.list_vo.as_deref()),
        ("A", Some("dteam"))
    );
    assert_eq!(a1.list_version_id, va);
    assert_eq!(a1.list_expires, at(86_400 * 30));
    assert!(!a1.subscription_enabled && !a1.endorsed && !a1.selected);
    assert_eq!(a1.cached, None);
    let b1 = &all[1];
    assert!(b1.subscription_enabled && b1.endorsed && b1.selected);
    assert_eq!(b1.cached.as_ref(), Some(&cached));
    assert_eq!(b1.image, image("b-1", 'c'));

    let only = |filter: ImageFilter| -> Vec<String> {
        store
            .images(&filter)
            .unwrap()
            .into_iter()
            .map(|r| r.image.identifier.to_string())
            .collect()
    };
    assert_eq!(
        only(ImageFilter {
            subscription_id: Some(b),
            ..Default::default()
        }),
        ["b-1", "b-2"]
    );
    assert_eq!(
        only(ImageFilter {
            selected_only: true,
            ..Default::default()
        }),
        ["b-1", "b-2"]
    );
    assert_eq!(
        only(ImageFilter {
            identifier: Some("b-2".into()),
            ..Default::default()
        }),
        ["b-2"]
    );
    assert_eq!(
        only(ImageFilter {
            identifier: Some("gone".into()),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        only(ImageFilter {
            sha512: Some(sha('A')),
            ..Default::default()
        }),
        ["a-1"]
    );
    assert_eq!(
        only(ImageFilter {
            subscription_id: Some(a),
            selected_only: true,
            ..Default::default()
        }),
        Vec::<String>::new()
    );
}

fn set_selected_is_all_or_nothing(db: &TestDb) {
    let store = db.open();
    let signer = add_endorser_s(&store);
    let one = subscription(
        &store,
        "https://one.example.org/list",
        NewImagePolicy::Refuse,
    );
    let two = subscription(
        &store,
        "https://two.example.org/list",
        NewImagePolicy::Refuse,
    );
    import(
        &store,
        one,
        &list(
            "One",
            "1",
            &signer,
            vec![image("shared", 'a'), image("x", 'b'), image("old", 'c')],
        ),
        &signer,
    );
    import(
        &store,
        one,
        &list(
            "One",
            "2",
            &signer,
            vec![image("shared", 'a'), image("x", 'b')],
        ),
        &signer,
    );
    import(
        &store,
        two,
        &list("Two", "1", &signer, vec![image("shared", 'a')]),
        &signer,
    );

    let err = store
        .set_selected(&[id("x"), id("unknown")], true)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { what: "image", key } if key == "unknown"),
        "{err}"
    );
    let err = store.set_selected(&[id("old")], true).unwrap_err();
    assert!(
        err.is_not_found(),
        "an image no current list carries: {err}"
    );
    assert!(
        store
            .images(&ImageFilter {
                selected_only: true,
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store.set_selected(&[id("shared"), id("x")], true).unwrap(),
        3
    );
    assert_eq!(
        store.set_selected(&[id("shared")], true).unwrap(),
        0,
        "already selected"
    );
    let selected = store
        .images(&ImageFilter {
            selected_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        selected.len(),
        3,
        "shared is selected in both subscriptions"
    );
    assert_eq!(store.set_selected(&[id("x")], false).unwrap(), 1);
    assert_eq!(store.set_selected(&[], true).unwrap(), 0);
}

fn cache_entries_enter_expire_and_are_forgotten(db: &TestDb) {
    let store = db.open();
    let entry = |name: &str, digest: char, secs: i64| CacheEntry {
        identifier: id(name),
        filename: name.into(),
        size: 4096,
        sha512: sha(digest),
        subscription_id: None,
        list_version_id: None,
        cached_at: at(secs),
    };
    store.record_cached(&entry("img-b", 'b', 10)).unwrap();
    store.record_cached(&entry("img-a", 'A', 10)).unwrap();
    let mut lowered = entry("img-a", 'a', 10);
    assert_eq!(
        store.cache_entries().unwrap(),
        [lowered.clone(), entry("img-b", 'b', 10)]
    );

    // A newer file of the same id replaces the record.
    lowered = entry("img-a", 'c', 20);
    store.record_cached(&lowered).unwrap();
    assert_eq!(
        store.cache_entries().unwrap(),
        [lowered.clone(), entry("img-b", 'b', 10)]
    );

    store
        .record_expired(
            &id("img-a"),
            ExpiryReason::Replaced,
            "img-a.2027-01-01_00-00-30",
            at(30),
        )
        .unwrap();
    store
        .record_expired(
            &id("img-b"),
            ExpiryReason::ListExpired,
            "img-b.2027-01-01_00-00-25",
            at(25),
        )
        .unwrap();
    assert!(store.cache_entries().unwrap().is_empty());
    let expired = store.expired_entries().unwrap();
    assert_eq!(expired.len(), 2);
    assert_eq!(expired[0].identifier, id("img-b"), "oldest expiry first");
    assert_eq!(expired[0].reason, ExpiryReason::ListExpired);
    assert_eq!(expired[1].file, "img-a.2027-01-01_00-00-30");
    assert_eq!(expired[1].reason, ExpiryReason::Replaced);
    assert_eq!(expired[1].expired_at, at(30));
    assert_eq!(
        (expired[1].size, expired[1].sha512.clone()),
        (4096, sha('c'))
    );

    let err = store
        .record_expired(&id("img-a"), ExpiryReason::Corrupt, "img-a.again", at(40))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    store.record_cached(&entry("img-a", 'd', 50)).unwrap();
    let err = store
        .record_expired(
            &id("img-a"),
            ExpiryReason::Corrupt,
            "img-a.2027-01-01_00-00-30",
            at(60),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(
        store.cache_entries().unwrap().len(),
        1,
        "the refused expiry changed nothing"
    );

    store.forget_expired("img-b.2027-01-01_00-00-25").unwrap();
    store.forget_expired("img-b.2027-01-01_00-00-25").unwrap();
    let left: Vec<String> = store
        .expired_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.file)
        .collect();
    assert_eq!(left, ["img-a.2027-01-01_00-00-30"]);

    let mut huge = entry("huge", 'e', 0);
    huge.size = u64::MAX;
    assert!(matches!(
        store.record_cached(&huge).unwrap_err(),
        StoreError::OutOfRange { .. }
    ));
    let mut dangling = entry("dangling", 'e', 0);
    dangling.subscription_id = Some(999_999);
    assert!(
        store.record_cached(&dangling).is_err(),
        "a cache entry names a real subscription"
    );
}

fn removing_a_subscription_keeps_cache_entries(db: &TestDb) {
    let (store, signer, sub) = store_with_linked_subscription(db, NewImagePolicy::Subscribe);
    let version = import_one_image(&store, sub, "1", &signer);
    store
        .record_cached(&cache_entry("img-1", 'a', sub, version))
        .unwrap();
    store.remove_subscription(sub).unwrap();
    assert!(store.images(&ImageFilter::default()).unwrap().is_empty());
    assert!(
        store
            .find_endorser("s")
            .unwrap()
            .unwrap()
            .subscriptions
            .is_empty()
    );
    let cached = store.cache_entries().unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(
        (cached[0].subscription_id, cached[0].list_version_id),
        (None, None)
    );
    // The same URL can be subscribed again, from scratch.
    let again = subscription(&store, LIST_URL, NewImagePolicy::Refuse);
    assert_eq!(store.current_version(again).unwrap(), None);
}

fn events_are_journalled_with_their_outcome(db: &TestDb) {
    let store = db.open();
    assert!(store.events(false, None).unwrap().is_empty());
    let event = |n: i64, outcome: EventOutcome| NewEvent {
        session: "session-1".into(),
        event_type: if n == 0 {
            EventType::ProcessPrefix
        } else {
            EventType::AvailablePostfix
        },
        identifier: (n > 0).then(|| format!("img-{n}")),
        payload: json!({"n": n, "VMCATCHER_EVENT_DC_TITLE": "ünïcode ✓"}),
        outcome,
        at: at(n),
    };
    let outcomes = [
        EventOutcome::NoHandler,
        EventOutcome::Delivered,
        EventOutcome::Failed {
            message: "exit status 3".into(),
        },
        EventOutcome::Delivered,
        EventOutcome::Failed {
            message: "timed out after 300 s".into(),
        },
    ];
    // Two one at a time, then three in one batch.
    let mut ids = Vec::new();
    for (n, outcome) in outcomes.iter().enumerate().take(2) {
        ids.push(
            store
                .record_event(&event(n as i64, outcome.clone()))
                .unwrap(),
        );
    }
    let batch: Vec<_> = (2..5)
        .map(|n| event(n as i64, outcomes[n].clone()))
        .collect();
    let batch_ids = store.record_events(&batch).unwrap();
    assert_eq!(batch_ids.len(), 3);
    ids.extend(batch_ids);
    assert_eq!(store.record_events(&[]).unwrap(), Vec::<i64>::new());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let all = store.events(false, None).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids,
        "oldest first"
    );
    let third = &all[2];
    assert_eq!(third.session, "session-1");
    assert_eq!(third.event_type, EventType::AvailablePostfix);
    assert_eq!(third.identifier.as_deref(), Some("img-2"));
    assert_eq!(
        third.payload,
        json!({"n": 2, "VMCATCHER_EVENT_DC_TITLE": "ünïcode ✓"})
    );
    assert_eq!(
        third.outcome,
        EventOutcome::Failed {
            message: "exit status 3".into()
        }
    );
    assert_eq!(third.at, at(2));
    assert_eq!(all[0].identifier, None);
    assert_eq!(all[0].outcome.as_str(), "no_handler");

    let failed = store.events(true, None).unwrap();
    assert_eq!(
        failed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[2], ids[4]]
    );
    let last_two = store.events(false, Some(2)).unwrap();
    assert_eq!(
        last_two.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[3], ids[4]]
    );
    assert_eq!(store.events(true, Some(1)).unwrap()[0].id, ids[4]);
    assert!(store.events(false, Some(0)).unwrap().is_empty());
}

fn reopening_keeps_data_and_runs_no_migration(db: &TestDb) {
    {
        let store = db.open();
        store
            .add_endorser("kept", &[identity("/CN=K", "/CN=CA")])
            .unwrap();
    }
    let applied = db.applied_migrations();
    let available = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
    )
    .unwrap()
    .count();
    assert_eq!(applied.len(), available, "{applied:?}");
    let store = db.open();
    let second = db.open();
    assert_eq!(db.applied_migrations(), applied);
    assert_eq!(
        store
            .find_endorser("kept")
            .unwrap()
            .unwrap()
            .identities
            .len(),
        1
    );
    assert_eq!(second.endorsers().unwrap().len(), 1);
}
