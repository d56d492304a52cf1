//! A property test of the cache over random sequences of operations — syncs (with and without
//! `--verify`), lost files, a lost cache directory, corrupt files, unsubscribing and
//! subscribing again, new list versions (new bytes, an image dropped or back), and syncs
//! killed part-way — checking the invariants ARCHITECTURE.md states ("Cache invariants")
//! after every completed sync and after a final `sync --verify`.
//!
//! Deterministic per seed: one download job, kills at counted events (a download's start, its
//! half-way mark, a re-hashed file) rather than byte offsets, a pinned clock. `PROPTEST_RNG_SEED` replays a run, `PROPTEST_CASES` runs more cases (default 10).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use vmc_cache::{Progress, SyncOptions, SyncReport, Vmc};
use vmc_model::{EventType, Identifier, NewImagePolicy};
use vmc_store::ImageFilter;

use crate::{Gen, GenImage, sha512_hex};

const IDS: [&str; 3] = ["p-a", "p-b", "p-c"];
const KILL: &str = "simulated kill";

#[derive(Debug, Clone)]
enum Op {
    Sync {
        verify: bool,
    },
    DeleteFile(usize),
    DeleteCacheDir,
    Corrupt(usize),
    Unsubscribe(usize),
    Subscribe(usize),
    /// A new list version with new bytes for this image (or the image back, if dropped).
    NewBytes(usize),
    /// A new list version without this image.
    Drop(usize),
    /// A sync that dies at the n-th kill point (see [`Killer`]).
    KillMidSync {
        at: usize,
        verify: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..IDS.len();
    prop_oneof![
        3 => any::<bool>().prop_map(|verify| Op::Sync { verify }),
        2 => slot.clone().prop_map(Op::DeleteFile),
        1 => Just(Op::DeleteCacheDir),
        2 => slot.clone().prop_map(Op::Corrupt),
        1 => slot.clone().prop_map(Op::Unsubscribe),
        1 => slot.clone().prop_map(Op::Subscribe),
        1 => slot.clone().prop_map(Op::NewBytes),
        1 => slot.prop_map(Op::Drop),
        2 => (1..6usize, any::<bool>()).prop_map(|(at, verify)| Op::KillMidSync { at, verify }),
    ]
}

/// Panics (as a killed process stops) at the `at`-th kill point. The points are events whose
/// number does not depend on how the bytes arrive: a download's start, the first progress
/// report at or past its half-way mark, a re-hashed file.
struct Killer {
    at: usize,
    seen: AtomicUsize,
    /// The running download's size, until its half-way point has counted.
    half_way: std::sync::Mutex<Option<u64>>,
}

impl Killer {
    fn new(at: usize) -> Killer {
        Killer {
            at,
            seen: AtomicUsize::new(0),
            half_way: std::sync::Mutex::new(None),
        }
    }

    fn tick(&self) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            std::panic::panic_any(KILL);
        }
    }
}

impl Progress for Killer {
    fn download_started(&self, _: &str, total: u64, _: u64) {
        *self.half_way.lock().unwrap() = Some(total);
        self.tick();
    }
    fn download_progress(&self, _: &str, done: u64) {
        let reached = {
            let mut half_way = self.half_way.lock().unwrap();
            let reached = half_way.is_some_and(|total| done.saturating_mul(2) >= total);
            if reached {
                *half_way = None;
            }
            reached
        };
        if reached {
            self.tick();
        }
    }
    fn verify_file_done(&self, _: &str, _: u64) {
        self.tick();
    }
}

/// Keeps the simulated kills' panics out of the test output (others print as usual).
fn quiet_kills() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The kill itself, and `thread::scope` passing a killed worker's panic on.
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
            if !matches!(message, Some(KILL | "a scoped thread panicked")) {
                default(info);
            }
        }));
    });
}

/// The generated environment of one case and the list it currently publishes.
struct World {
    env: Gen,
    vmc: Vmc,
    /// Per slot: its current bytes' seed, or `None` while the list leaves it out.
    slots: [Option<u8>; 3],
    version: u32,
}

impl World {
    fn new() -> World {
        let env = Gen::new();
        let mut world = World {
            vmc: env.open(),
            env,
            slots: [Some(1), Some(2), Some(3)],
            version: 1,
        };
        world.publish();
        world.env.subscribe(&world.vmc, NewImagePolicy::Subscribe);
        world
    }

    fn image(slot: usize, seed: u8) -> GenImage {
        GenImage::new(IDS[slot], seed, 3000 + 7919 * slot + usize::from(seed) * 13)
    }

    fn publish(&mut self) {
        let images: Vec<GenImage> = (0..IDS.len())
            .filter_map(|i| self.slots[i].map(|seed| World::image(i, seed)))
            .collect();
        self.env.publish(&self.version.to_string(), &images);
    }

    fn options(verify: bool) -> SyncOptions {
        SyncOptions {
            jobs: 1,
            verify,
            update_lists: true,
        }
    }

    /// A new process: a fresh `Vmc` on the same home.
    fn restart(&mut self) {
        self.vmc = self.env.open();
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let cache = self.env.cache_dir();
        match *op {
            Op::Sync { verify } => {
                let report = self
                    .vmc
                    .sync(&World::options(verify), &vmc_cache::NoProgress)
                    .map_err(|e| TestCaseError::fail(format!("sync: {e:#?}")))?;
                self.check(&report, verify)?;
            }
            Op::DeleteFile(i) => {
                let _ = std::fs::remove_file(cache.join(IDS[i]));
            }
            Op::DeleteCacheDir => {
                let _ = std::fs::remove_dir_all(&cache);
            }
            Op::Corrupt(i) => {
                if let Ok(mut bytes) = std::fs::read(cache.join(IDS[i])) {
                    bytes[i] ^= 0x5a;
                    std::fs::write(cache.join(IDS[i]), bytes).unwrap();
                }
            }
            Op::Unsubscribe(i) | Op::Subscribe(i) => {
                let selected = matches!(op, Op::Subscribe(_));
                let id = Identifier::new(IDS[i]).unwrap();
                // An image the current list leaves out cannot be (un)selected.
                match self.vmc.store().set_selected(&[id], selected) {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(TestCaseError::fail(format!("set_selected: {e}"))),
                }
            }
            Op::NewBytes(i) => {
                self.slots[i] = Some(self.slots[i].map_or(1, |s| s.wrapping_add(10)));
                self.version += 1;
                self.publish();
            }
            Op::Drop(i) => {
                if self.slots.iter().flatten().count() > 1 {
                    self.slots[i] = None;
                }
                self.version += 1;
                self.publish();
            }
            Op::KillMidSync { at, verify } => {
                let killer = Killer::new(at);
                let vmc = &self.vmc;
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    vmc.sync(&World::options(verify), &killer)
                }));
                self.restart();
            }
        }
        Ok(())
    }

    /// The invariants after a completed sync (`verified`: it re-hashed the cache first).
    fn check(&self, report: &SyncReport, verified: bool) -> Result<(), TestCaseError> {
        let store = self.vmc.store();
        prop_assert!(!report.has_failures(), "the sync failed: {report:#?}");
        // No stuck state: nothing is left missing.
        prop_assert_eq!(store.missing_entries().unwrap(), vec![]);
        // The database and the directory agree, and the index says the same.
        let cached: BTreeMap<String, String> = store
            .cache_entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.filename, e.sha512))
            .collect();
        let files: BTreeSet<String> = std::fs::read_dir(self.env.cache_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "cache.index")
            .collect();
        prop_assert_eq!(&files, &cached.keys().cloned().collect::<BTreeSet<_>>());
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.env.cache_dir().join("cache.index")).unwrap(),
        )
        .unwrap();
        let indexed: BTreeSet<String> = index.as_object().unwrap().keys().cloned().collect();
        prop_assert_eq!(&indexed, &files);
        // Exactly the selected, available images of the current list are cached, each with
        // its current sha512 (and, after a verify, the bytes to match).
        let now = self.env.now;
        let wanted: BTreeMap<String, String> = store
            .images(&ImageFilter::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.selected && r.subscription_enabled && r.endorsed && now < r.list_expires)
            .map(|r| (r.image.identifier.to_string(), r.image.sha512))
            .collect();
        prop_assert_eq!(&cached, &wanted);
        for (name, sha512) in &cached {
            let bytes = std::fs::read(self.env.cache_dir().join(name)).unwrap();
            if verified || report.downloaded.contains(name) {
                prop_assert_eq!(&sha512_hex(&bytes), sha512, "{} does not verify", name);
            }
        }
        // Every expired record names a file in the expired directory.
        for e in store.expired_entries().unwrap() {
            prop_assert!(
                self.env.expired_dir().join(&e.file).is_file(),
                "expired record without its file: {e:?}"
            );
        }
        // Nothing of a finished download is left in <partial>.
        let partial: Vec<String> = std::fs::read_dir(self.env.home.path().join("partial"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        prop_assert!(partial.is_empty(), "left in <partial>: {partial:?}");
        Ok(())
    }

    /// Every `AvailablePrefix` of a session is followed by its `AvailablePostfix` or
    /// `AvailableFailed` in the same session.
    fn check_event_pairs(&self) -> Result<(), TestCaseError> {
        let mut open: BTreeSet<(String, String)> = BTreeSet::new();
        for e in self.vmc.store().events(false, None).unwrap() {
            let key = (e.session.clone(), e.identifier.clone().unwrap_or_default());
            match e.event_type {
                EventType::AvailablePrefix => {
                    prop_assert!(open.insert(key), "two AvailablePrefix: {e:?}");
                }
                EventType::AvailablePostfix | EventType::AvailableFailed => {
                    prop_assert!(open.remove(&key), "no AvailablePrefix before {e:?}");
                }
                _ => {}
            }
        }
        prop_assert!(open.is_empty(), "AvailablePrefix without an end: {open:?}");
        Ok(())
    }
}

#[test]
fn random_operations_keep_the_cache_invariants() {
    quiet_kills();
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 10;
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 1..14), |ops| {
        let mut world = World::new();
        for op in &ops {
            world.apply(op)?;
        }
        // The next sync repairs whatever the sequence left.
        world.restart();
        let report = world
            .vmc
            .sync(&World::options(true), &vmc_cache::NoProgress)
            .map_err(|e| TestCaseError::fail(format!("final sync: {e:#?}")))?;
        world.check(&report, true)?;
        // And a second one finds nothing to do.
        let again = world
            .vmc
            .sync(&World::options(true), &vmc_cache::NoProgress)
            .unwrap();
        prop_assert!(
            again.downloaded.is_empty() && again.expired.is_empty(),
            "{again:#?}"
        );
        prop_assert!(again.missing.is_empty(), "{again:#?}");
        world.check(&again, true)?;
        world.check_event_pairs()?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
