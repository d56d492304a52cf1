//! Nodes and leases, on both backends: registration and heartbeats, one holder per lease until
//! it expires, fencing tokens, and many connections racing for one lease.

use std::sync::{Arc, Barrier};

use chrono::Duration;
use vmc_store::{NodeInfo, StoreError, WorkRun};

use crate::db::TestDb;
use crate::fixtures::at;

crate::on_both_backends!(
    nodes_register_beat_and_are_listed_with_their_leases,
    a_lease_has_one_holder_until_it_expires,
    a_lost_lease_cannot_be_renewed_checked_or_released,
    racing_nodes_take_an_expired_lease_once,
    the_last_run_of_a_work_is_recorded_with_its_node,
    one_off_work_is_claimed_by_the_first_node_only,
);

fn one_off_work_is_claimed_by_the_first_node_only(db: &TestDb) {
    let store = db.open();
    assert!(store.claim_once("expire:x", "a", at(1)).unwrap());
    assert!(!store.claim_once("expire:x", "b", at(2)).unwrap());
    assert!(!store.claim_once("expire:x", "a", at(3)).unwrap());
    assert!(store.claim_once("expire:y", "b", at(4)).unwrap());
    let run = store.last_run("expire:x").unwrap().unwrap();
    assert_eq!((run.node.as_str(), run.finished_at), ("a", at(1)));
    // A claim is given back by its node only; then the next node's claim succeeds.
    assert!(!store.release_claim("expire:x", "b").unwrap());
    assert!(!store.claim_once("expire:x", "b", at(5)).unwrap());
    assert!(store.release_claim("expire:x", "a").unwrap());
    assert_eq!(store.last_run("expire:x").unwrap(), None);
    assert!(!store.release_claim("expire:x", "a").unwrap());
    assert!(store.claim_once("expire:x", "b", at(6)).unwrap());
    assert_eq!(store.last_run("expire:x").unwrap().unwrap().node, "b");
    // The claimant's own claim is its own again; nobody else's.
    assert!(store.claim_or_own("expire:x", "b", at(7)).unwrap());
    assert!(!store.claim_or_own("expire:x", "a", at(8)).unwrap());
    assert!(store.claim_or_own("expire:z", "a", at(9)).unwrap());
    assert_eq!(store.last_run("expire:z").unwrap().unwrap().node, "a");
}

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_owned(),
        host: format!("{name}.example.org"),
        pid: 4242,
        version: "0.1.0".to_owned(),
        url: Some(format!("http://{name}.example.org/vmc/")),
        cache_mode: Some("per-node".into()),
    }
}

fn nodes_register_beat_and_are_listed_with_their_leases(db: &TestDb) {
    let store = db.open();
    store.register_node(&node("b"), "starting", at(10)).unwrap();
    store.register_node(&node("a"), "starting", at(20)).unwrap();
    store
        .heartbeat("a", "downloading 2 images", at(30))
        .unwrap();
    let lease = store
        .try_lease("download:img-1", "a", at(30), Duration::seconds(60))
        .unwrap()
        .unwrap();
    let nodes = store.nodes().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.info.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(nodes[0].info, node("a"));
    assert_eq!(nodes[0].started_at, at(20));
    assert_eq!(nodes[0].last_seen, at(30));
    assert_eq!(nodes[0].activity, "downloading 2 images");
    assert_eq!(nodes[0].leases, vec![lease]);
    assert!(nodes[1].leases.is_empty());
    // A restart re-registers: new pid and start time, same row.
    let mut again = node("b");
    again.pid = 7;
    store.register_node(&again, "starting", at(40)).unwrap();
    let nodes = store.nodes().unwrap();
    assert_eq!((nodes.len(), nodes[1].info.pid), (2, 7));
    assert_eq!(nodes[1].started_at, at(40));
    // A node that is not registered cannot beat; removing one frees its leases.
    assert!(matches!(
        store.heartbeat("c", "idle", at(50)),
        Err(StoreError::NotFound { .. })
    ));
    store.remove_node("a").unwrap();
    assert_eq!(store.lease("download:img-1").unwrap(), None);
    assert!(matches!(
        store.remove_node("a"),
        Err(StoreError::NotFound { .. })
    ));
}

fn a_lease_has_one_holder_until_it_expires(db: &TestDb) {
    let store = db.open();
    let ttl = Duration::seconds(60);
    let first = store
        .try_lease("update:1", "a", at(100), ttl)
        .unwrap()
        .unwrap();
    assert_eq!((first.node.as_str(), first.token), ("a", 1));
    assert_eq!(first.expires_at, at(160));
    // Another node is refused while it runs, up to the last instant before the expiry.
    assert_eq!(
        store.try_lease("update:1", "b", at(159), ttl).unwrap(),
        None
    );
    // Its holder takes it again (a renewal with a new token).
    let renewed = store
        .try_lease("update:1", "a", at(150), ttl)
        .unwrap()
        .unwrap();
    assert_eq!((renewed.token, renewed.expires_at), (2, at(210)));
    assert_eq!(
        store.try_lease("update:1", "b", at(200), ttl).unwrap(),
        None
    );
    // At the expiry another node takes it over.
    let taken = store
        .try_lease("update:1", "b", at(210), ttl)
        .unwrap()
        .unwrap();
    assert_eq!((taken.node.as_str(), taken.token), ("b", 3));
    assert_eq!(store.lease("update:1").unwrap(), Some(taken.clone()));
    // Other resources are independent; a released lease is free at once.
    assert!(
        store
            .try_lease("update:2", "a", at(210), ttl)
            .unwrap()
            .is_some()
    );
    store.release_lease(&taken).unwrap();
    assert_eq!(store.lease("update:1").unwrap(), None);
    let next = store
        .try_lease("update:1", "a", at(211), ttl)
        .unwrap()
        .unwrap();
    assert_eq!(next.token, 1, "a released lease starts over");
}

fn a_lost_lease_cannot_be_renewed_checked_or_released(db: &TestDb) {
    let store = db.open();
    let ttl = Duration::seconds(60);
    let mut old = store
        .try_lease("download:x", "a", at(0), ttl)
        .unwrap()
        .unwrap();
    assert!(store.holds_lease(&old, at(59)).unwrap());
    assert!(!store.holds_lease(&old, at(60)).unwrap(), "expired");
    assert!(store.renew_lease(&mut old, at(30), ttl).unwrap());
    assert_eq!(old.expires_at, at(90));
    // `a` stalls past the expiry; `b` takes over.
    let new = store
        .try_lease("download:x", "b", at(95), ttl)
        .unwrap()
        .unwrap();
    assert!(!store.holds_lease(&old, at(96)).unwrap());
    assert!(!store.renew_lease(&mut old, at(96), ttl).unwrap());
    assert_eq!(old.expires_at, at(90), "a failed renewal changes nothing");
    store.release_lease(&old).unwrap();
    assert_eq!(
        store.lease("download:x").unwrap(),
        Some(new.clone()),
        "the old holder's release leaves the new holder's lease"
    );
    assert!(store.holds_lease(&new, at(96)).unwrap());
    // Even the same node, once it took the lease again, fences its older self out.
    let mut stale = new.clone();
    let newer = store
        .try_lease("download:x", "b", at(100), ttl)
        .unwrap()
        .unwrap();
    assert!(newer.token > stale.token);
    assert!(!store.renew_lease(&mut stale, at(101), ttl).unwrap());
}

fn racing_nodes_take_an_expired_lease_once(db: &TestDb) {
    const RACERS: usize = 6;
    const ROUNDS: i64 = 5;
    let ttl = Duration::seconds(10);
    let stores: Vec<_> = (0..RACERS).map(|_| db.open()).collect();
    for round in 0..ROUNDS {
        // Every round starts when the previous round's lease has expired.
        let now = at(100 + round * 10);
        let barrier = Arc::new(Barrier::new(RACERS));
        let winners: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(n, store)| {
                    let barrier = Arc::clone(&barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        store
                            .try_lease("expire", &format!("node-{n}"), now, ttl)
                            .unwrap()
                            .is_some()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            winners.iter().filter(|w| **w).count(),
            1,
            "round {round}: {winners:?}"
        );
        let lease = stores[0].lease("expire").unwrap().unwrap();
        assert_eq!(lease.token, round + 1);
    }
}

fn the_last_run_of_a_work_is_recorded_with_its_node(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.last_run("update:1").unwrap(), None);
    store.record_run("update:1", "a", at(10)).unwrap();
    store.record_run("update:2", "b", at(15)).unwrap();
    // A later run replaces the record, whoever did it.
    store.record_run("update:1", "b", at(20)).unwrap();
    assert_eq!(
        store.last_run("update:1").unwrap(),
        Some(WorkRun {
            resource: "update:1".into(),
            node: "b".into(),
            finished_at: at(20),
        })
    );
    assert_eq!(
        store.last_run("update:2").unwrap().unwrap().finished_at,
        at(15)
    );
}
