//! Concurrency: four `vmc cache sync` and two `vmc subscribe update` started at once on one
//! home. With `--lock-wait 60` all of them succeed in turn and every image is downloaded
//! once; without it exactly one runs and the others exit 1 naming the holder. Never a
//! "database is locked" anywhere.

use std::process::{Child, Output, Stdio};
use std::sync::Arc;

use vmc_testkit::server::Route;

use crate::common::{Img, LIST_ID, World, describe, stderr};
use crate::hostile_server::assert_cache_holds;

const COMMANDS: [&[&str]; 6] = [
    &["cache", "sync"],
    &["subscribe", "update"],
    &["cache", "sync"],
    &["cache", "sync"],
    &["subscribe", "update"],
    &["cache", "sync"],
];

fn start_all(w: &World, extra: &[&str]) -> Vec<(String, Child)> {
    COMMANDS
        .iter()
        .map(|args| {
            let child = w
                .cmd()
                .args(*args)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (args.join(" "), child)
        })
        .collect()
}

fn finish(children: Vec<(String, Child)>) -> Vec<(String, u32, Output)> {
    children
        .into_iter()
        .map(|(name, child)| {
            let pid = child.id();
            (name, pid, child.wait_with_output().unwrap())
        })
        .collect()
}

fn assert_no_database_lock_errors(runs: &[(String, u32, Output)]) {
    for (name, _, out) in runs {
        let err = stderr(out).to_lowercase();
        assert!(
            !err.contains("database is locked") && !err.contains("database is busy"),
            "{name}: {}",
            describe(out)
        );
        assert!(!err.contains("panicked"), "{name}: {}", describe(out));
    }
}

#[test]
fn concurrent_syncs_and_updates_take_turns_and_download_once() {
    let w = World::new();
    w.cli_endorser();
    let images: Vec<Img> = (0..3)
        .map(|i| Img::new(&format!("img-{i}"), 10 + i, 2 << 20))
        .collect();
    for img in &images {
        // Slow enough that the runs overlap.
        w.server.add(
            &img.path(),
            Route::new(Arc::clone(&img.bytes)).throttle(4 << 20),
        );
    }
    let entries: Vec<_> = images.iter().map(|i| w.image_entry(i)).collect();
    w.publish("/list", &w.list(LIST_ID, "1", entries.clone()));
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
    w.publish("/list", &w.list(LIST_ID, "2", entries.clone()));

    // All wait for the lock: all succeed, one after the other.
    let runs = finish(start_all(&w, &["--lock-wait", "60"]));
    assert_no_database_lock_errors(&runs);
    for (name, _, out) in &runs {
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(out));
    }
    for img in &images {
        assert_eq!(
            w.server.requests(&img.path()),
            1,
            "{} was requested more than once",
            img.id
        );
    }
    let refs: Vec<&Img> = images.iter().collect();
    assert_cache_holds(&w, &refs);
    let subs = w.json(&["subscribe", "list"], 0);
    assert_eq!(subs[0]["version"], "2", "{subs}");

    // Nobody waits: the first to take the lock runs (a slow new image keeps it busy), the
    // others are refused at once and say who holds the lock.
    let slow = Img::new("img-slow", 99, 4 << 20);
    w.server.add(
        &slow.path(),
        Route::new(Arc::clone(&slow.bytes)).throttle(2 << 20),
    );
    let mut entries = entries;
    entries.push(w.image_entry(&slow));
    // The list itself comes slowly too, so that a winning `subscribe update` also holds the
    // lock for seconds, far longer than the six take to start.
    let list = serde_json::to_vec_pretty(&w.list(LIST_ID, "3", entries)).unwrap();
    let signed = w.sign(&list);
    let rate = (signed.len() as u64 / 2).max(1);
    w.server.replace("/list", Route::new(signed).throttle(rate));
    let runs = finish(start_all(&w, &[]));
    assert_no_database_lock_errors(&runs);
    let winners: Vec<&(String, u32, Output)> = runs
        .iter()
        .filter(|(_, _, out)| out.status.code() == Some(0))
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{}",
        runs.iter()
            .map(|(n, _, o)| format!("{n}: {}", describe(o)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (winner, winner_pid, _) = winners[0];
    for (name, _, out) in runs.iter().filter(|(_, _, o)| o.status.code() != Some(0)) {
        assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(out));
        let err = stderr(out);
        assert!(
            err.contains("holds the lock") && err.contains(&format!("pid {winner_pid}")),
            "{name} does not name the holder ({winner}, pid {winner_pid}): {}",
            describe(out)
        );
    }
    // Whoever won, a sync with waiting finishes the job; the slow image came once.
    let out = w.run(&["cache", "sync", "--lock-wait", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(w.server.requests(&slow.path()), 1);
    let mut all = refs;
    all.push(&slow);
    assert_cache_holds(&w, &all);
    eprintln!(
        "concurrency: 12 concurrent runs (6 waiting, 6 not), one winner: {winner} (pid {winner_pid})"
    );
}
