//! Failures against a real Glance: a crash mid-upload (and after a complete upload) is
//! repaired by the next run; a 5xx or a dropped connection leaves nothing half-published and
//! the next run publishes once; a checksum mismatch unpublishes the image.

use chrono::Duration;
use vmc_cache::store::PublicationState;
use vmc_publish::{ActionKind, ImageService, Outcome, Publisher};
use vmc_testkit::proxy::{FaultProxy, ProxyFault};

use crate::common::{WithUpload, client, config, remote_images, sha512_of, start, t0};

fn crash_then_repair(test: &str, crash_after_upload: bool) {
    let Some((g, site, glance)) = start(test) else {
        return;
    };
    let file = site.alma9(5);
    let proxy = FaultProxy::start(g.addr()).unwrap();
    if !crash_after_upload {
        proxy.add_rule("PUT", "/file", ProxyFault::DropAfter(64 * 1024), 1);
    }
    let config = config(site.dir.path());
    // The process "dies" (panics, so no code of the run runs after it) after part of the
    // upload (a proxy drops the connection part way), or after the upload before the run
    // records it.
    let direct = client(&g.url());
    let via = client(&proxy.url());
    let crashing = WithUpload {
        glance: &direct,
        upload: Box::new(|id, path, size| {
            let result = via.upload(id, path, size);
            if crash_after_upload {
                result.unwrap();
            }
            panic!("simulated crash during the upload of {id}");
        }),
    };
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Publisher::new(&site.store, &site.cache_dir, &crashing, &config).sync(t0(), false)
    }));
    assert!(crashed.is_err(), "the run was to crash");
    let left = site.store.publications(None).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, PublicationState::Uploading);
    let first_remote = left[0].remote_id.clone().unwrap();
    assert_eq!(remote_images(&glance, "alma9").len(), 1);

    // The next run (same node, the lock says the other run is over) repairs.
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    let report = publisher.sync(t0() + Duration::minutes(5), false).unwrap();
    assert!(!report.has_failures(), "{report:#?}");
    let images = remote_images(&glance, "alma9");
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(images[0].status, "active");
    assert_eq!(
        images[0].hash_value.as_deref(),
        Some(sha512_of(&file).as_str())
    );
    let kinds: Vec<_> = report.actions.iter().map(|a| a.kind).collect();
    if crash_after_upload {
        // The complete upload is adopted, not uploaded again.
        assert_eq!(kinds, [ActionKind::Adopt]);
        assert_eq!(images[0].id, first_remote);
        let puts = proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with("PUT"))
            .count();
        assert_eq!(puts, 1);
    } else {
        assert_eq!(kinds, [ActionKind::Repair, ActionKind::Publish]);
        assert_ne!(images[0].id, first_remote);
        assert_eq!(
            glance.get(&first_remote).unwrap(),
            None,
            "the partial image is deleted"
        );
    }
    let states: Vec<_> = publisher
        .publications()
        .unwrap()
        .iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(states, [PublicationState::Active]);
}

#[test]
fn a_crash_mid_upload_is_repaired_by_the_next_run() {
    crash_then_repair("crash_mid_upload", false);
}

#[test]
fn a_crash_after_a_complete_upload_is_adopted_by_the_next_run() {
    crash_then_repair("crash_after_upload", true);
}

#[test]
fn a_glance_failing_with_5xx_or_dropping_the_connection_leaves_nothing_half_published() {
    let Some((g, site, glance)) = start("a_glance_failing_with_5xx_or_dropping_the_connection")
    else {
        return;
    };
    let file = site.alma9(6);
    let proxy = FaultProxy::start(g.addr()).unwrap();
    let via_proxy = client(&proxy.url());
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &via_proxy, &config);

    // Each fault twice: an upload is tried once more within the run, not a third time.
    let faults = [
        ("POST", "/v2/images", ProxyFault::Status(503)),
        ("PUT", "/file", ProxyFault::Status(500)),
        ("PUT", "/file", ProxyFault::DropAfter(100_000)),
    ];
    for (n, (method, path, fault)) in faults.into_iter().enumerate() {
        proxy.clear_rules();
        proxy.add_rule(method, path, fault.clone(), 2);
        let report = publisher
            .sync(t0() + Duration::minutes(i64::try_from(n).unwrap()), false)
            .unwrap();
        assert!(report.has_failures(), "{fault:?}: {report:#?}");
        let Outcome::Failed(message) = &report.actions[0].outcome else {
            panic!("{report:#?}");
        };
        assert!(
            message.contains("alma9") || message.contains("/v2/images"),
            "{message}"
        );
        assert!(
            remote_images(&glance, "alma9").is_empty(),
            "{fault:?} left an image"
        );
        let p = publisher.publications().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].state, PublicationState::Failed);
        assert!(p[0].last_error.is_some());
    }

    // A single dropped connection is survived within the run: the upload is tried again.
    proxy.clear_rules();
    proxy.add_rule("PUT", "/file", ProxyFault::DropAfter(100_000), 1);
    let report = publisher.sync(t0() + Duration::minutes(30), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    let puts = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .count();
    assert_eq!(puts, 2 + 2 + 2, "two in each run that uploads");
    let images = remote_images(&glance, "alma9");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].status, "active");
    assert_eq!(
        images[0].hash_value.as_deref(),
        Some(sha512_of(&file).as_str())
    );
}

#[test]
fn a_glance_that_recovers_gets_the_image_once() {
    let Some((g, site, glance)) = start("a_glance_that_recovers_gets_the_image_once") else {
        return;
    };
    site.alma9(8);
    let proxy = FaultProxy::start(g.addr()).unwrap();
    proxy.add_rule("PUT", "/file", ProxyFault::Status(503), 2);
    let via_proxy = client(&proxy.url());
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &via_proxy, &config);
    let report = publisher.sync(t0(), false).unwrap();
    assert!(report.has_failures(), "{report:#?}");
    // Glance behaves again: published once.
    proxy.clear_rules();
    let report = publisher.sync(t0() + Duration::hours(1), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    let images = remote_images(&glance, "alma9");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].status, "active");
}

#[test]
fn a_checksum_mismatch_unpublishes_the_image() {
    let Some((g, site, glance)) = start("a_checksum_mismatch_unpublishes_the_image") else {
        return;
    };
    let file = site.alma9(7);
    let size = std::fs::metadata(&file).unwrap().len();
    let proxy = FaultProxy::start(g.addr()).unwrap();
    // A byte of the data clusters changes on the way: still a valid qcow2, another sha512.
    proxy.add_rule("PUT", "/file", ProxyFault::Corrupt(size - 4096), 1);
    let via_proxy = client(&proxy.url());
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &via_proxy, &config);
    let report = publisher.sync(t0(), false).unwrap();
    let Outcome::Failed(message) = &report.actions[0].outcome else {
        panic!("{report:#?}");
    };
    assert!(message.contains("is not the sha512"), "{message}");
    assert!(
        remote_images(&glance, "alma9").is_empty(),
        "the mismatching image is deleted"
    );
    let p = publisher.publications().unwrap();
    assert_eq!(p[0].state, PublicationState::Failed);
    assert!(
        p[0].last_error
            .as_deref()
            .unwrap()
            .contains("is not the sha512")
    );
}
