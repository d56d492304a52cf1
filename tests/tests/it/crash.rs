//! Crash safety: `vmc cache sync` of a large, slowly served image is killed with SIGKILL at
//! random moments (seeded; the seed is printed, `VMC_TEST_SEED` replays it), many times, while
//! its list changes version now and then; then it runs to completion. Afterwards the cache
//! holds only verified files, the database opens and agrees with the directories, and the
//! bytes sent stay close to the image size (interrupted downloads resume).
//!
//! Slow (about a minute): runs when `VMC_TEST_SLOW` is set, as `.ci/run` does.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmc_testkit::server::Route;

use crate::common::{Img, LIST_ID, Rng, World, describe, listing, slow_enabled};
use crate::hostile_server::assert_cache_holds;

/// The large image: 96 MiB.
const BIG: usize = 96 << 20;
/// Served at 8 MiB/s per connection.
const RATE: u64 = 8 << 20;
/// SIGKILLs at random moments.
const KILLS: usize = 24;
/// Bytes a kill may waste: what was in flight (a throttle chunk, socket buffers, the
/// client's read buffer) plus what the server had queued.
const SLACK_PER_KILL: u64 = 2 << 20;

fn spawn_sync(w: &World, log: &std::path::Path) -> Child {
    let err = std::fs::File::create(log).unwrap();
    w.cmd()
        .args(["cache", "sync", "--jobs", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

/// Kills `child` with SIGKILL (unless it ended already); true if the kill interrupted it.
fn kill(child: &mut Child) -> bool {
    let interrupted = matches!(child.try_wait(), Ok(None));
    if interrupted {
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    if !interrupted {
        assert!(
            status.success(),
            "a sync that was not killed failed: {status}"
        );
    }
    interrupted
}

#[test]
fn sync_killed_at_random_moments_loses_nothing_and_resumes() {
    if !slow_enabled() {
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::from_env("crash");
    let w = World::new();
    w.cli_endorser();
    let big = Img::new("big-image", 1, BIG);
    let small = Img::new("small-image", 2, 1 << 20);
    for img in [&big, &small] {
        w.server.add(
            &img.path(),
            Route::new(Arc::clone(&img.bytes))
                .throttle(RATE)
                .etag("\"v1\""),
        );
    }
    let entries = vec![w.image_entry(&big), w.image_entry(&small)];
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

    let log = w.home().join("sync.log");
    let partial = w.home().join("partial").join(&big.id);
    let mut version = 1;
    let mut kills = 0;
    let mut runs = 0;
    while kills < KILLS {
        if rng.range(0, 3) == 0 {
            // A new list version: the sync imports it while it may be killed.
            version += 1;
            w.publish(
                "/list",
                &w.list(LIST_ID, &version.to_string(), entries.clone()),
            );
        }
        // At most 1.2 s, and never more than an even share of the time the rest of the big
        // image needs at the throttled rate: the kills cannot run out of download to
        // interrupt however the dice fall (a resumed run fetches only what is missing).
        let missing = (BIG as u64).saturating_sub(partial.metadata().map_or(0, |m| m.len()));
        let share_ms = missing * 1000 / RATE / (KILLS - kills) as u64;
        let mut child = spawn_sync(&w, &log);
        runs += 1;
        let delay = Duration::from_millis(rng.range(0, share_ms.min(1200)));
        std::thread::sleep(delay);
        if kill(&mut child) {
            kills += 1;
        }
        assert!(
            runs < KILLS * 4,
            "the syncs keep finishing before the kill ({kills} kills in {runs} runs)"
        );
    }
    // One more kill close to the end of the big download: the hashing, fsync, rename and
    // database window.
    let mut child = spawn_sync(&w, &log);
    runs += 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial.metadata().map_or(0, |m| m.len()) < (BIG as u64).saturating_sub(1 << 20)
        && !w.cache_dir().join(&big.id).exists()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(rng.range(0, 250)));
    if kill(&mut child) {
        kills += 1;
    }

    // Now to completion.
    let out = w.run(&["cache", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_cache_holds(&w, &[&big, &small]);
    let leftovers = listing(&w.home().join("partial"));
    assert!(
        leftovers.is_empty(),
        "left in the partial directory: {leftovers:?}"
    );
    // The list version that was last published is current.
    let subs = w.json(&["subscribe", "list"], 0);
    assert_eq!(subs[0]["version"], version.to_string(), "{subs}");
    // A further sync has nothing to do.
    let report = w.json(&["cache", "sync"], 0);
    assert_eq!(report["downloaded"].as_array().map(Vec::len), Some(0));

    let sent = w.server.bytes_sent(&big.path());
    let bound = BIG as u64 + kills as u64 * SLACK_PER_KILL;
    eprintln!(
        "crash: {kills} SIGKILLs survived in {runs} runs, {version} list versions; \
         {sent} bytes sent for a {BIG}-byte image ({:.2}x, bound {bound}); {:.1} s",
        sent as f64 / BIG as f64,
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= KILLS, "only {kills} kills interrupted a sync");
    assert!(
        sent <= bound,
        "{sent} bytes sent for a {BIG}-byte image: downloads did not resume"
    );
}
