//! Cache policy scenarios against a generated PKI and generated lists: selection, every expiry
//! reason, corruption, foreign files, crash repair and `cache.index`.

use chrono::Duration;
use serde_json::Value;
use vmc_cache::{NoProgress, SyncOptions, SyncReport, Vmc};
use vmc_model::{ErrorCode, ExpiryReason, Identifier, NewImagePolicy};
use vmc_store::SubscriptionChange;

use crate::{Gen, GenImage, LIST_PATH, cached_ids, sha512_hex};

fn images() -> Vec<GenImage> {
    vec![
        GenImage::new("img-a", 1, 4096),
        GenImage::new("img-b", 2, 20_000),
        GenImage::new("img-c", 3, 70_001),
    ]
}

/// A generated environment subscribed to version "1" of `images` with `policy`.
fn setup(images: &[GenImage], policy: NewImagePolicy) -> (Gen, Vmc) {
    let env = Gen::new();
    env.publish("1", images);
    let vmc = env.open();
    env.subscribe(&vmc, policy);
    (env, vmc)
}

fn sync(vmc: &Vmc) -> SyncReport {
    vmc.sync(&SyncOptions::default(), &NoProgress).unwrap()
}

fn id(s: &str) -> Identifier {
    Identifier::new(s).unwrap()
}

/// Asserts that `report` expired exactly `image` for `reason`, and that the file moved; unless
/// the image was replaced, it must be gone from the cache.
fn assert_expired(env: &Gen, vmc: &Vmc, report: &SyncReport, image: &str, reason: ExpiryReason) {
    assert_eq!(report.expired.len(), 1, "{:?}", report.expired);
    let e = &report.expired[0];
    assert_eq!(e.identifier, image);
    assert_eq!(e.reason, reason);
    assert!(
        env.expired_dir()
            .join(e.expired_file.as_ref().unwrap())
            .is_file()
    );
    if reason != ExpiryReason::Replaced {
        assert!(!env.cache_dir().join(image).exists());
        assert!(!cached_ids(vmc).contains(&image.to_owned()));
    }
    assert!(
        vmc.store()
            .expired_entries()
            .unwrap()
            .iter()
            .any(|x| x.identifier.as_str() == image && x.reason == reason)
    );
}

#[test]
fn first_sync_downloads_selected_images_only() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Accept);
    assert!(vmc.store().set_selected(&[id("img-b")], true).unwrap() > 0);
    let report = sync(&vmc);
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.downloaded, vec!["img-b".to_owned()]);
    assert_eq!(report.bytes_downloaded, 20_000);
    assert_eq!(cached_ids(&vmc), vec!["img-b".to_owned()]);
    assert_eq!(
        std::fs::read(env.cache_dir().join("img-b")).unwrap(),
        imgs[1].bytes
    );
    assert_eq!(env.server.requests(&imgs[0].path()), 0);
    assert_eq!(env.server.requests(&imgs[2].path()), 0);
    // A second sync has nothing to do.
    let again = sync(&vmc);
    assert!(again.downloaded.is_empty() && again.expired.is_empty());
    assert_eq!(env.server.requests(&imgs[1].path()), 1);
}

#[test]
fn unselected_image_expires() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    vmc.store().set_selected(&[id("img-a")], false).unwrap();
    let report = sync(&vmc);
    assert_expired(&env, &vmc, &report, "img-a", ExpiryReason::Unselected);
    assert_eq!(
        cached_ids(&vmc),
        vec!["img-b".to_owned(), "img-c".to_owned()]
    );
}

#[test]
fn image_removed_from_the_list_expires() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    env.publish("2", &imgs[1..]);
    let report = sync(&vmc);
    assert_eq!(
        report.subscriptions[0].status,
        vmc_cache::UpdateStatus::Updated
    );
    assert_expired(&env, &vmc, &report, "img-a", ExpiryReason::Removed);
}

#[test]
fn replaced_image_expires_and_its_new_file_is_downloaded() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    let mut v2 = imgs.clone();
    v2[2] = GenImage::new("img-c", 33, 50_000);
    env.publish("2", &v2);
    let report = sync(&vmc);
    assert_expired(&env, &vmc, &report, "img-c", ExpiryReason::Replaced);
    // The expired file is the old one.
    assert_eq!(
        std::fs::read(
            env.expired_dir()
                .join(report.expired[0].expired_file.as_ref().unwrap())
        )
        .unwrap(),
        imgs[2].bytes
    );
    assert_eq!(report.downloaded, vec!["img-c".to_owned()]);
    assert_eq!(
        std::fs::read(env.cache_dir().join("img-c")).unwrap(),
        v2[2].bytes
    );
    let entry = vmc
        .store()
        .cache_entries()
        .unwrap()
        .into_iter()
        .find(|e| e.identifier.as_str() == "img-c")
        .unwrap();
    assert_eq!(entry.sha512, sha512_hex(&v2[2].bytes));
}

#[test]
fn images_of_an_expired_list_expire() {
    let imgs = images();
    let env = Gen::new();
    env.publish_until("1", &imgs[..2], env.now + Duration::days(1));
    let vmc = env.open();
    env.subscribe(&vmc, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 2);
    env.set_now(env.now + Duration::days(2));
    let report = sync(&vmc);
    assert_eq!(
        report.subscriptions[0].error.as_ref().map(|e| e.code),
        Some(ErrorCode::ListExpired)
    );
    let mut reasons: Vec<(String, ExpiryReason)> = report
        .expired
        .iter()
        .map(|e| (e.identifier.clone(), e.reason))
        .collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reasons,
        vec![
            ("img-a".to_owned(), ExpiryReason::ListExpired),
            ("img-b".to_owned(), ExpiryReason::ListExpired),
        ]
    );
    assert!(cached_ids(&vmc).is_empty());
    assert!(report.downloaded.is_empty());
}

fn assert_all_unendorsed(env: &Gen, vmc: &Vmc, report: &SyncReport, n: usize) {
    assert_eq!(report.expired.len(), n, "{:?}", report.expired);
    for e in &report.expired {
        assert_eq!(e.reason, ExpiryReason::Unendorsed, "{e:?}");
        assert!(
            env.expired_dir()
                .join(e.expired_file.as_ref().unwrap())
                .is_file()
        );
    }
    assert!(cached_ids(vmc).is_empty());
    assert!(report.downloaded.is_empty());
}

#[test]
fn removing_the_endorser_expires_its_images_as_unendorsed() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 2);
    vmc.store().remove_endorser("e1").unwrap();
    let report = sync(&vmc);
    assert_eq!(
        report.subscriptions[0].error.as_ref().map(|e| e.code),
        Some(ErrorCode::SignerNotEndorser)
    );
    assert_all_unendorsed(&env, &vmc, &report, 2);
}

#[test]
fn unlinking_the_endorser_expires_its_images_as_unendorsed() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 2);
    let sub = env.subscription(&vmc);
    vmc.store().unlink("e1", sub.id).unwrap();
    let report = sync(&vmc);
    assert_all_unendorsed(&env, &vmc, &report, 2);
}

#[test]
fn disabling_the_subscription_expires_its_images_as_unendorsed() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 2);
    let sub = env.subscription(&vmc);
    vmc.store()
        .update_subscription(
            sub.id,
            &SubscriptionChange {
                enabled: Some(false),
                ..SubscriptionChange::default()
            },
        )
        .unwrap();
    let lists_before = env.server.requests(LIST_PATH);
    let report = sync(&vmc);
    // A disabled subscription is not updated.
    assert!(report.subscriptions.is_empty());
    assert_eq!(env.server.requests(LIST_PATH), lists_before);
    assert_all_unendorsed(&env, &vmc, &report, 2);
}

#[test]
fn corrupt_file_is_expired_and_fetched_again() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    let mut bytes = imgs[1].bytes.clone();
    bytes[100] ^= 0xff;
    std::fs::write(env.cache_dir().join("img-b"), &bytes).unwrap();
    let report = vmc.verify_cache(2, &NoProgress).unwrap();
    assert_eq!(report.verified, 3);
    assert_expired(&env, &vmc, &report, "img-b", ExpiryReason::Corrupt);
    assert_eq!(
        std::fs::read(
            env.expired_dir()
                .join(report.expired[0].expired_file.as_ref().unwrap())
        )
        .unwrap(),
        bytes
    );
    let fetched = vmc.download(2, &NoProgress).unwrap();
    assert_eq!(fetched.downloaded, vec!["img-b".to_owned()]);
    assert_eq!(env.server.requests(&imgs[1].path()), 2);
    assert_eq!(
        std::fs::read(env.cache_dir().join("img-b")).unwrap(),
        imgs[1].bytes
    );
    // A clean cache verifies without expiring anything.
    let clean = vmc.verify_cache(2, &NoProgress).unwrap();
    assert_eq!(clean.verified, 3);
    assert!(clean.expired.is_empty());
}

#[test]
fn files_vmc_did_not_write_are_left_alone() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    vmc.ensure_dirs().unwrap();
    let notes = env.cache_dir().join("notes.txt");
    std::fs::write(&notes, b"mine").unwrap();
    // A file with a selected image's name but other contents blocks that image only.
    let squatter = env.cache_dir().join("img-b");
    std::fs::write(&squatter, b"not the image").unwrap();
    let report = sync(&vmc);
    assert_eq!(report.downloaded, vec!["img-a".to_owned()]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].identifier, "img-b");
    assert_eq!(report.failed[0].code, ErrorCode::FetchFailed);
    assert_eq!(std::fs::read(&squatter).unwrap(), b"not the image");
    // Refused before downloading: no bytes are spent on an image that cannot be cached.
    assert_eq!(env.server.requests(&imgs[1].path()), 0);
    // Expiring everything still leaves both files alone.
    vmc.store()
        .set_selected(&[id("img-a"), id("img-b")], false)
        .unwrap();
    let report = sync(&vmc);
    assert_eq!(report.expired.len(), 1, "{:?}", report.expired);
    assert_eq!(report.expired[0].identifier, "img-a");
    assert_eq!(std::fs::read(&notes).unwrap(), b"mine");
    assert_eq!(std::fs::read(&squatter).unwrap(), b"not the image");
    assert!(cached_ids(&vmc).is_empty());
    let expired: Vec<_> = std::fs::read_dir(env.expired_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(expired[0].starts_with("img-a."));
}

#[test]
fn cached_file_deleted_behind_vmcs_back_is_fetched_again() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    std::fs::remove_file(env.cache_dir().join("img-a")).unwrap();
    let report = sync(&vmc);
    assert_eq!(report.downloaded, vec!["img-a".to_owned()]);
    assert_eq!(env.server.requests(&imgs[0].path()), 2);
    assert_eq!(env.server.requests(&imgs[1].path()), 1);
    assert_eq!(
        std::fs::read(env.cache_dir().join("img-a")).unwrap(),
        imgs[0].bytes
    );
    assert_eq!(cached_ids(&vmc).len(), 3);
}

#[test]
fn verified_file_without_a_record_is_adopted_without_downloading() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    vmc.ensure_dirs().unwrap();
    // As if a crash happened between the rename into the cache and the database record.
    std::fs::write(env.cache_dir().join("img-a"), &imgs[0].bytes).unwrap();
    let report = sync(&vmc);
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.downloaded, vec!["img-b".to_owned()]);
    assert_eq!(env.server.requests(&imgs[0].path()), 0);
    assert_eq!(
        cached_ids(&vmc),
        vec!["img-a".to_owned(), "img-b".to_owned()]
    );
    let entry = vmc
        .store()
        .cache_entries()
        .unwrap()
        .into_iter()
        .find(|e| e.identifier.as_str() == "img-a")
        .unwrap();
    assert_eq!(entry.sha512, sha512_hex(&imgs[0].bytes));
    assert_eq!(entry.filename, "img-a");
}

#[test]
fn cache_index_describes_the_cached_images() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 2);
    let read_index = || -> serde_json::Map<String, Value> {
        let text = std::fs::read(env.cache_dir().join("cache.index")).unwrap();
        serde_json::from_slice::<Value>(&text)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    };
    let index = read_index();
    let mut keys: Vec<&String> = index.keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["img-a", "img-b"]);
    for img in &imgs[..2] {
        let e = &index[img.id];
        assert_eq!(e["filename"], img.id);
        assert_eq!(e["hv:imagelist.dc:identifier"], env.list_id);
        assert_eq!(e["sl:checksum:sha512"], sha512_hex(&img.bytes).as_str());
        assert_eq!(e["hv:image.dc:identifier"], img.id);
        assert_eq!(e["hv:image.dc:title"], img.title.as_str());
        assert_eq!(e["hv:image.hv:uri"], env.server.url(&img.path()).as_str());
        assert_eq!(e["hv:image.hv:size"], img.bytes.len() as u64);
    }
    vmc.store().set_selected(&[id("img-a")], false).unwrap();
    assert_eq!(sync(&vmc).expired.len(), 1);
    let index = read_index();
    assert_eq!(index.keys().collect::<Vec<_>>(), vec!["img-b"]);
}

#[test]
fn an_image_larger_than_the_free_space_fails_disk_full_before_downloading() {
    let mut imgs = images();
    // 4 EiB: more than any test machine's partial directory holds.
    imgs[1].declared_size = Some(1 << 62);
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    let report = sync(&vmc);
    assert_eq!(report.downloaded, vec!["img-a".to_owned()]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].identifier, "img-b");
    assert_eq!(report.failed[0].code, ErrorCode::DiskFull);
    assert_eq!(env.server.requests(&imgs[1].path()), 0);
    assert!(!env.cache_dir().join("img-b").exists());
}

/// The journalled image events after event `after`.
fn journal_since(vmc: &Vmc, after: i64) -> Vec<vmc_store::EventRecord> {
    vmc.store()
        .events(false, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.id > after && e.identifier.is_some())
        .collect()
}

/// The journalled image events after event `after`, as `(type, image id)`.
fn events_since(vmc: &Vmc, after: i64) -> Vec<(String, String)> {
    journal_since(vmc, after)
        .into_iter()
        .map(|e| (e.event_type.to_string(), e.identifier.unwrap()))
        .collect()
}

fn last_event_id(vmc: &Vmc) -> i64 {
    vmc.store()
        .events(false, None)
        .unwrap()
        .last()
        .map_or(0, |e| e.id)
}

/// Regression (issue 20): the second lost file was recorded as a second expiry named `""`,
/// which the unique index on expired file names refused, so every later sync failed.
#[test]
fn any_number_of_lost_cached_files_are_fetched_again() {
    for lose in [1, 2, 3, usize::MAX] {
        let imgs = images();
        let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
        assert_eq!(sync(&vmc).downloaded.len(), 3);
        // Twice in a row: the state a first loss leaves must not block the second.
        for round in 0..2 {
            let lost: Vec<String> = if lose == usize::MAX {
                std::fs::remove_dir_all(env.cache_dir()).unwrap();
                imgs.iter().map(|g| g.id.to_owned()).collect()
            } else {
                imgs[..lose]
                    .iter()
                    .map(|g| {
                        std::fs::remove_file(env.cache_dir().join(g.id)).unwrap();
                        g.id.to_owned()
                    })
                    .collect()
            };
            let before = last_event_id(&vmc);
            let mut report = sync(&vmc);
            report.downloaded.sort();
            let what = format!("lose {lose}, round {round}: {report:?}");
            assert!(!report.has_failures(), "{what}");
            assert_eq!(report.downloaded, lost, "{what}");
            assert_eq!(report.missing, lost, "{what}");
            assert!(report.expired.is_empty(), "{what}");
            for g in &imgs {
                assert_eq!(std::fs::read(env.cache_dir().join(g.id)).unwrap(), g.bytes);
            }
            assert_eq!(cached_ids(&vmc).len(), 3);
            assert!(vmc.store().missing_entries().unwrap().is_empty());
            assert!(vmc.store().expired_entries().unwrap().is_empty(), "{what}");
            // The handler sees the image become available again, and no expiry.
            let expected: Vec<(String, String)> = lost
                .iter()
                .flat_map(|id| {
                    [
                        ("AvailablePrefix".to_owned(), id.clone()),
                        ("AvailablePostfix".to_owned(), id.clone()),
                    ]
                })
                .collect();
            let mut seen = events_since(&vmc, before);
            seen.sort();
            let mut expected_sorted = expected.clone();
            expected_sorted.sort();
            assert_eq!(seen, expected_sorted, "{what}");
            let index: Value = serde_json::from_slice(
                &std::fs::read(env.cache_dir().join("cache.index")).unwrap(),
            )
            .unwrap();
            assert_eq!(index.as_object().unwrap().len(), 3, "{what}");
            let verified = vmc.verify_cache(2, &NoProgress).unwrap();
            assert_eq!(verified.verified, 3);
            assert!(verified.expired.is_empty() && verified.missing.is_empty());
        }
    }
}

#[test]
fn a_lost_file_of_an_image_no_longer_wanted_is_forgotten_with_expiry_events() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    std::fs::remove_file(env.cache_dir().join("img-a")).unwrap();
    std::fs::remove_file(env.cache_dir().join("img-b")).unwrap();
    vmc.store()
        .set_selected(&[id("img-a"), id("img-b")], false)
        .unwrap();
    let before = last_event_id(&vmc);
    let report = sync(&vmc);
    assert!(!report.has_failures(), "{report:?}");
    assert!(report.downloaded.is_empty());
    assert_eq!(report.missing, vec!["img-a".to_owned(), "img-b".to_owned()]);
    assert_eq!(report.expired.len(), 2, "{:?}", report.expired);
    for (e, image) in report.expired.iter().zip(["img-a", "img-b"]) {
        assert_eq!(e.identifier, image);
        assert_eq!(e.reason, ExpiryReason::Unselected);
        assert_eq!(e.expired_file, None);
    }
    assert!(vmc.store().missing_entries().unwrap().is_empty());
    assert!(vmc.store().expired_entries().unwrap().is_empty());
    assert_eq!(cached_ids(&vmc), vec!["img-c".to_owned()]);
    assert_eq!(std::fs::read_dir(env.expired_dir()).unwrap().count(), 0);
    let journal = journal_since(&vmc, before);
    assert_eq!(
        events_since(&vmc, before),
        [
            ("ExpirePrefix", "img-a"),
            ("ExpirePostfix", "img-a"),
            ("ExpirePrefix", "img-b"),
            ("ExpirePostfix", "img-b"),
        ]
        .map(|(t, i)| (t.to_owned(), i.to_owned()))
    );
    for e in &journal {
        assert_eq!(e.payload["reason"], "unselected");
        assert!(e.payload.get("VMCATCHER_EVENT_FILENAME").is_none(), "{e:?}");
    }
    // Nothing is left to do.
    let again = sync(&vmc);
    assert!(again.expired.is_empty() && again.missing.is_empty() && again.downloaded.is_empty());
}

#[test]
fn verify_reports_a_lost_file_as_missing_and_download_fetches_it() {
    let imgs = images();
    let (env, vmc) = setup(&imgs, NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 3);
    std::fs::remove_file(env.cache_dir().join("img-b")).unwrap();
    for _ in 0..2 {
        // Still missing on the second verify: nothing fetched it yet.
        let report = vmc.verify_cache(2, &NoProgress).unwrap();
        assert_eq!(report.missing, vec!["img-b".to_owned()]);
        assert_eq!(report.verified, 2);
        assert!(report.expired.is_empty(), "{:?}", report.expired);
    }
    let missing = vmc.store().missing_entries().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].entry.identifier.as_str(), "img-b");
    assert_eq!(missing[0].entry.sha512, sha512_hex(&imgs[1].bytes));
    let fetched = vmc.download(2, &NoProgress).unwrap();
    assert_eq!(fetched.downloaded, vec!["img-b".to_owned()]);
    assert!(vmc.store().missing_entries().unwrap().is_empty());
    let clean = vmc.verify_cache(2, &NoProgress).unwrap();
    assert_eq!(clean.verified, 3);
    assert!(clean.missing.is_empty() && clean.expired.is_empty());
}

/// Several vmc homes may share one partial directory (their instance locks differ): a download
/// whose `<partial>/<id>` another writer holds goes to a name of this writer's own, and the
/// other writer's partial file is left alone.
#[test]
fn a_partial_file_another_writer_holds_is_left_alone() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..1], NewImagePolicy::Subscribe);
    vmc.ensure_dirs().unwrap();
    let partial_dir = env.home.path().join("partial");
    let theirs = partial_dir.join("img-a");
    std::fs::write(&theirs, &imgs[0].bytes[..100]).unwrap();
    let lock_path = partial_dir.join(".img-a.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.try_lock().unwrap();
    // A writer-unique partial file nobody wrote for two hours is a crashed writer's.
    let stale = partial_dir.join(".img-z.4242.0.abcdef.tmp");
    // Old too, but not a name vmc gives: not vmc's, so it stays.
    let foreign = partial_dir.join(".notes.tmp");
    let two_hours = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for path in [&stale, &foreign] {
        std::fs::write(path, b"old").unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(two_hours)
            .unwrap();
    }
    let fresh = partial_dir.join(".img-y.4243.0.abcdef.tmp");
    std::fs::write(&fresh, b"someone is writing this").unwrap();

    let report = sync(&vmc);
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.downloaded, vec!["img-a".to_owned()]);
    assert_eq!(
        std::fs::read(env.cache_dir().join("img-a")).unwrap(),
        imgs[0].bytes
    );
    assert_eq!(std::fs::read(&theirs).unwrap(), &imgs[0].bytes[..100]);
    assert!(lock_path.exists());
    assert!(!stale.exists());
    assert!(fresh.exists());
    let mut left: Vec<String> = std::fs::read_dir(&partial_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".img-a.lock",
            ".img-y.4243.0.abcdef.tmp",
            ".notes.tmp",
            "img-a"
        ],
        "nothing of ours is left"
    );
    drop(lock);
    // Unheld, the shared name is used and resumed, and its lock file removed after.
    std::fs::remove_file(env.cache_dir().join("img-a")).unwrap();
    let report = sync(&vmc);
    assert_eq!(report.downloaded, vec!["img-a".to_owned()]);
    assert!(!theirs.exists() && !lock_path.exists());
}

/// The index was always written through `.cache.index.tmp`: two writers collided there, and
/// anything left at that name blocked every later write.
#[test]
fn the_index_is_written_through_a_name_of_its_writers_own() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..1], NewImagePolicy::Subscribe);
    vmc.ensure_dirs().unwrap();
    std::fs::create_dir(env.cache_dir().join(".cache.index.tmp")).unwrap();
    // A crashed writer's temporary index goes at once (nobody holds its lock, however new
    // it is); a live writer's (locked, as `replace_file` holds it) stays.
    let stale = env.cache_dir().join(".cache.index.99.0.ab12.new");
    let live = env.cache_dir().join(".cache.index.98.0.ab12.new");
    std::fs::write(&stale, b"{").unwrap();
    let writer = std::fs::File::create(&live).unwrap();
    writer.lock().unwrap();
    let report = sync(&vmc);
    assert!(!report.has_failures(), "{report:?}");
    let index: Value =
        serde_json::from_slice(&std::fs::read(env.cache_dir().join("cache.index")).unwrap())
            .unwrap();
    assert!(index.get("img-a").is_some());
    let names: Vec<String> = std::fs::read_dir(env.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".cache.index.tmp")
        .collect();
    assert_eq!(names, [".cache.index.98.0.ab12.new"]);
    drop(writer);
}

/// An `AvailablePrefix` is never left without an end: when the move into the cache fails
/// (here the handler deletes the verified partial file), `AvailableFailed` follows, the image
/// is reported failed, and the next sync fetches it.
#[test]
fn a_failed_move_after_available_prefix_fires_available_failed() {
    let imgs = images();
    let env = Gen::new();
    env.publish("1", &imgs[..1]);
    let mut config = env.config();
    config.event_handler = Some(
        r#"[ "$VMCATCHER_EVENT_TYPE" = AvailablePrefix ] && rm -f "${VMCATCHER_CACHE_DIR_DOWNLOAD}${VMCATCHER_EVENT_DC_IDENTIFIER}"; true"#
            .to_owned(),
    );
    let vmc = Vmc::open(config).unwrap();
    env.subscribe(&vmc, NewImagePolicy::Subscribe);
    let before = last_event_id(&vmc);
    let report = sync(&vmc);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].identifier, "img-a");
    assert!(
        report.failed[0].message.contains("cannot move"),
        "{report:?}"
    );
    assert!(cached_ids(&vmc).is_empty());
    assert_eq!(
        events_since(&vmc, before),
        [("AvailablePrefix", "img-a"), ("AvailableFailed", "img-a")]
            .map(|(t, i)| (t.to_owned(), i.to_owned()))
    );
    let journal = vmc.store().events(false, None).unwrap();
    let failed = journal
        .iter()
        .find(|e| e.event_type == vmc_model::EventType::AvailableFailed)
        .unwrap();
    let reason = failed.payload["reason"].as_str().unwrap();
    assert!(reason.contains("cannot move"), "{reason}");
    assert!(failed.payload.get("VMCATCHER_EVENT_FILENAME").is_none());
    // Without the handler in the way the next sync caches it.
    let vmc = env.open();
    let report = sync(&vmc);
    assert_eq!(report.downloaded, vec!["img-a".to_owned()], "{report:?}");
}

/// Found by the property test: a download interrupted before its image was unselected (or
/// replaced, or removed) stayed in `<partial>` for good. vmc's own partial files (those with a
/// state file) of images not to be downloaded are removed; a blocked image keeps its partial
/// file, and files without a state file are not vmc's and stay.
#[test]
fn partial_downloads_of_images_no_longer_wanted_are_removed() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..2], NewImagePolicy::Subscribe);
    vmc.ensure_dirs().unwrap();
    vmc.store().set_selected(&[id("img-a")], false).unwrap();
    let partial = env.home.path().join("partial");
    for name in ["img-a", "img-a.state", "img-b", "img-b.state", "notes"] {
        std::fs::write(partial.join(name), b"x").unwrap();
    }
    // img-b cannot be cached while a foreign file holds its name.
    std::fs::write(env.cache_dir().join("img-b"), b"foreign").unwrap();
    let report = sync(&vmc);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let mut left: Vec<String> = std::fs::read_dir(&partial)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["img-b", "img-b.state", "notes"]);
}

/// Another vmc home sharing the database expired the same image in the same second into its
/// own expired directory: the name is taken in the database (unique), so the file moves on to
/// the next free name instead of failing the sync on the constraint.
#[test]
fn an_expired_file_name_taken_by_another_home_moves_on_to_the_next() {
    let imgs = images();
    let (env, vmc) = setup(&imgs[..1], NewImagePolicy::Subscribe);
    assert_eq!(sync(&vmc).downloaded.len(), 1);
    let taken = format!("img-a.{}", env.now.format("%Y-%m-%d_%H-%M-%S"));
    let theirs = vmc.store().cache_entries().unwrap().remove(0);
    vmc.store()
        .add_expired(&theirs, ExpiryReason::Unselected, &taken, env.now)
        .unwrap();
    let err = vmc
        .store()
        .add_expired(&theirs, ExpiryReason::Unselected, &taken, env.now)
        .unwrap_err();
    assert!(
        matches!(err, vmc_store::StoreError::Conflict { .. }),
        "{err:?}"
    );
    vmc.store().set_selected(&[id("img-a")], false).unwrap();
    let report = sync(&vmc);
    assert!(!report.has_failures(), "{report:?}");
    let ours = format!("{taken}.1");
    assert_eq!(report.expired.len(), 1);
    assert_eq!(
        report.expired[0].expired_file.as_deref(),
        Some(ours.as_str())
    );
    assert!(env.expired_dir().join(&ours).is_file());
    assert!(!env.expired_dir().join(&taken).exists());
    let mut files: Vec<String> = vmc
        .store()
        .expired_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.file)
        .collect();
    files.sort();
    assert_eq!(files, [taken, ours]);
}
