//! Per-node caches and the event outbox, on both backends: cache records are scoped by the
//! store's cache node, other nodes' copies are found with where they are served, and announced
//! events survive a dead run and are claimed once by whoever replays them.

use std::sync::{Arc, Barrier};

use chrono::Duration;
use serde_json::json;
use vmc_model::{EventType, ExpiryReason};
use vmc_store::{Announcement, EventOutcome, NewEvent, NodeInfo, Store};

use crate::db::TestDb;
use crate::fixtures::{at, cache_entry, id, import_one_image, store_with_subscription};

crate::on_both_backends!(
    cache_records_are_per_node_and_peers_are_found,
    an_announcement_is_written_with_its_work,
    a_dead_runs_announcements_are_claimed_once,
);

fn scoped(db: &TestDb, node: &str) -> Store {
    let mut store = db.open();
    store.set_cache_node(node);
    store
}

fn announcement(node: &str, session: &str, identifier: &str, secs: i64) -> Announcement {
    Announcement {
        node: node.to_owned(),
        session: session.to_owned(),
        event_type: EventType::AvailablePostfix,
        identifier: Some(identifier.to_owned()),
        payload: json!({ "VMCATCHER_EVENT_TYPE": "AvailablePostfix",
                         "VMCATCHER_EVENT_DC_IDENTIFIER": identifier }),
        at: at(secs),
    }
}

fn cache_records_are_per_node_and_peers_are_found(db: &TestDb) {
    let (store, signer, sub) = store_with_subscription(db, vmc_model::NewImagePolicy::Subscribe);
    let version = import_one_image(&store, sub, "1", &signer);
    let a = scoped(db, "node-a");
    let b = scoped(db, "node-b");
    let identifier = "c5a1b2f0-0000-4000-8000-000000000001";
    let entry = cache_entry(identifier, 'a', sub, version);
    a.register_node(
        &NodeInfo {
            name: "node-a".into(),
            host: "a.example.org".into(),
            pid: 1,
            version: "0".into(),
            url: Some("http://a.example.org/cache/".into()),
            cache_mode: None,
        },
        "syncing",
        at(100),
    )
    .unwrap();
    a.record_cached(&entry).unwrap();
    // Each node sees its own cache only; the shared ('') scope sees neither.
    assert_eq!(a.cache_entries().unwrap().len(), 1);
    assert!(b.cache_entries().unwrap().is_empty());
    assert!(store.cache_entries().unwrap().is_empty());
    assert!(a.is_cached(&entry.identifier).unwrap());
    assert!(!b.is_cached(&entry.identifier).unwrap());
    assert!(!store.is_cached(&entry.identifier).unwrap());
    // B finds A's copy, with A's URL and heartbeat; A finds no peer of its own copy.
    let peers = b.peer_copies(&id(identifier)).unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].node, "node-a");
    assert_eq!(peers[0].url.as_deref(), Some("http://a.example.org/cache/"));
    assert_eq!(peers[0].last_seen, Some(at(100)));
    assert_eq!(peers[0].entry.sha512, entry.sha512);
    assert!(a.peer_copies(&id(identifier)).unwrap().is_empty());
    // Both nodes may hold the same image, and expire their own copy under the same file name.
    b.record_cached(&entry).unwrap();
    assert_eq!(b.cache_entries().unwrap().len(), 1);
    a.record_expired(
        &id(identifier),
        ExpiryReason::Replaced,
        "x.expired",
        at(200),
    )
    .unwrap();
    b.record_expired(
        &id(identifier),
        ExpiryReason::Replaced,
        "x.expired",
        at(200),
    )
    .unwrap();
    assert!(a.cache_entries().unwrap().is_empty());
    assert_eq!(a.expired_entries().unwrap().len(), 1);
    assert_eq!(b.expired_entries().unwrap().len(), 1);
    a.forget_expired("x.expired").unwrap();
    assert!(a.expired_entries().unwrap().is_empty());
    assert_eq!(
        b.expired_entries().unwrap().len(),
        1,
        "B's history is its own"
    );
}

fn an_announcement_is_written_with_its_work(db: &TestDb) {
    let (store, signer, sub) = store_with_subscription(db, vmc_model::NewImagePolicy::Subscribe);
    let version = import_one_image(&store, sub, "1", &signer);
    let identifier = "c5a1b2f0-0000-4000-8000-000000000002";
    let entry = cache_entry(identifier, 'b', sub, version);
    let event = announcement("n1", "s1", identifier, 10);
    let outbox = store
        .record_cached_and_announce(&entry, Some(&event))
        .unwrap()
        .expect("an outbox id");
    let pending = store.pending_events().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, outbox);
    assert_eq!(pending[0].announcement, event);
    // A failed work writes no announcement: expiring an image that is not cached.
    let missing = id("c5a1b2f0-0000-4000-8000-0000000000ff");
    let err = store
        .record_expired_and_announce(
            &missing,
            ExpiryReason::ListExpired,
            "y",
            at(11),
            Some(&event),
        )
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(store.pending_events().unwrap().len(), 1);
    // Delivery moves it to the journal.
    let delivered = NewEvent {
        session: "s1".into(),
        event_type: EventType::AvailablePostfix,
        identifier: Some(identifier.into()),
        payload: event.payload.clone(),
        outcome: EventOutcome::Delivered,
        at: at(12),
    };
    store.deliver_announced(outbox, &delivered).unwrap();
    assert!(store.pending_events().unwrap().is_empty());
    let journal = store.events(false, None).unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].outcome, EventOutcome::Delivered);
}

fn a_dead_runs_announcements_are_claimed_once(db: &TestDb) {
    let store = db.open();
    let grace = Duration::seconds(300);
    store
        .announce(&announcement("n1", "dead-run", "x1", 0))
        .unwrap();
    store
        .announce(&announcement("n2", "live-run", "x2", 1000))
        .unwrap();
    // A new run of n1 at t=1010 claims n1's own leftover at once, but not n2's recent one.
    let mine = store
        .claim_orphaned_events("n1", "run-2", at(1010), grace)
        .unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].announcement.identifier.as_deref(), Some("x1"));
    assert_eq!(mine[0].announcement.session, "dead-run");
    // Claimed by run-2 at 1010: nobody else takes it within the grace time.
    assert!(
        store
            .claim_orphaned_events("n3", "run-3", at(1100), grace)
            .unwrap()
            .is_empty()
    );
    // Past the grace time, n2's event (its run presumably died) is replayed by exactly one of
    // several racing runs, and so is n1's, claimed by run-2 and never delivered.
    let racers = 6;
    let barrier = Arc::new(Barrier::new(racers));
    let claimed: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|n| {
                let store = db.open();
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    barrier.wait();
                    store
                        .claim_orphaned_events(
                            &format!("r{n}"),
                            &format!("race-{n}"),
                            at(2000),
                            grace,
                        )
                        .unwrap()
                        .into_iter()
                        .map(|p| p.announcement.identifier.unwrap_or_default())
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = claimed.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, vec!["x1".to_owned(), "x2".to_owned()]);
}
