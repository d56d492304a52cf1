//! OCI registry subscriptions against a real `docker-registry` (distribution 2.8) on
//! 127.0.0.1, artifacts pushed through the distribution API as `oras push` makes them:
//! subscribe, sync caches the verified layer, a moved tag is a new version (the old file
//! expires `replaced`), a removed tag expires its image, and a registry that serves other
//! bytes than a digest names is refused with the cache left as it was. On SQLite, and on
//! PostgreSQL when `VMC_TEST_POSTGRES_URL` names a server (feature `postgres`).

use vmc_cache::{Config, NoProgress, SyncOptions, UpdateStatus, Vmc};
use vmc_model::{ErrorCode, EventType, ExpiryReason, NewImagePolicy};
use vmc_store::ImageFilter;
use vmc_testkit::registry::{self as testreg, DiskImage, PushedManifest};

use crate::{Gen, image_bytes, request};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn push(registry: &testreg::Registry, repository: &str, tag: &str, data: &[u8]) -> PushedManifest {
    registry.push_disk_image(&DiskImage {
        repository,
        tag,
        data,
        file_name: "disk.qcow2",
        layer_media_type: "application/x-qemu-disk",
        layer_annotations: &[],
        manifest_annotations: &[
            ("org.opencontainers.image.title", "Ubuntu 22.04"),
            ("org.openstack.glance.os_distro", "ubuntu"),
            ("org.openstack.glance.os_version", "22.04"),
            ("org.openstack.glance.architecture", "x86_64"),
            ("org.openstack.glance.min_ram", "2048"),
            ("eu.egi.cloud.tag", tag),
        ],
    })
}

fn open(env: &Gen, database_url: Option<&str>) -> Vmc {
    let mut config: Config = env.config();
    config.oci_plain_http = true;
    if let Some(url) = database_url {
        config.database_url = url.to_owned();
    }
    Vmc::open(config).unwrap()
}

fn sync(vmc: &Vmc) -> vmc_cache::SyncReport {
    vmc.sync(
        &SyncOptions {
            jobs: 2,
            verify: false,
            update_lists: true,
        },
        &NoProgress,
    )
    .unwrap()
}

/// `subscribe add URL --new-images subscribe` with the default rule.
fn subscribe_report(vmc: &Vmc, url: &str) -> vmc_cache::ListReport {
    vmc.subscribe_oci(
        &request(url, NewImagePolicy::Subscribe),
        None,
        &vmc_cache::Dispatcher::new(vmc.config()),
    )
    .unwrap()
}

/// Subscribes to `url` (see [`subscribe_report`]), which must fail and store nothing;
/// returns the error's message.
fn subscribe_refused(vmc: &Vmc, url: &str) -> String {
    let report = subscribe_report(vmc, url);
    assert_eq!(report.status, UpdateStatus::Failed);
    assert!(vmc.store().subscriptions().unwrap().is_empty());
    report.error.unwrap().message
}

/// Subscribes to `url` (see [`subscribe_report`]); it must be added.
fn subscribe(vmc: &Vmc, url: &str) -> vmc_cache::ListReport {
    let report = subscribe_report(vmc, url);
    assert_eq!(report.status, UpdateStatus::Added, "{:?}", report.error);
    report
}

fn cached_file(env: &Gen, id: &str) -> Option<Vec<u8>> {
    std::fs::read(Config::with_home(env.home.path()).cache_dir.join(id)).ok()
}

/// The `cache.index` entry of OCI image `id` passes what vmcatcher checks (`checkSumCache`:
/// the file's SHA-512 and size equal `sha512` and `size`), carries the verified layer digest
/// under `oci:layer_digest`, and claims no other digest as a sha512.
fn assert_indexed_as_vmcatcher_reads_it(env: &Gen, id: &str, data: &[u8], layer_digest: &str) {
    let dir = Config::with_home(env.home.path()).cache_dir;
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cache.index")).unwrap()).unwrap();
    let entry = &index[id];
    let file = std::fs::read(dir.join(entry["filename"].as_str().unwrap())).unwrap();
    assert_eq!(file, data);
    let sha512 = crate::sha512_hex(&file);
    assert_eq!(entry["sha512"], sha512.as_str(), "{entry}");
    assert_eq!(entry["sl:checksum:sha512"], sha512.as_str(), "{entry}");
    assert_eq!(
        entry["hv:image.sl:checksum:sha512"],
        sha512.as_str(),
        "{entry}"
    );
    assert_eq!(entry["size"], file.len() as u64, "{entry}");
    assert_eq!(entry["oci:layer_digest"], layer_digest, "{entry}");
    assert_eq!(entry["uuid"], id, "{entry}");
}

fn follows_a_registry_on(database_url: Option<&str>) {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let ubuntu_v1 = image_bytes(1, 300_000);
    let alma = image_bytes(2, 200_000);
    let pushed_ubuntu = push(&registry, "vo.example/ubuntu", "22.04", &ubuntu_v1);
    let pushed_alma = push(&registry, "vo.example/alma", "9", &alma);
    let env = Gen::new();
    let vmc = open(&env, database_url);
    let url = format!("oci://{}/vo.example", registry.host());
    let report = subscribe(&vmc, &url);
    let ids: Vec<String> = report.new_images.iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["vo.example.alma-9", "vo.example.ubuntu-22.04"]);

    // The images as vmc shows list images: version = manifest digest, the layer's digest
    // and size, the annotations mapped and kept; endorsed by the allow rule.
    let records = vmc.store().images(&ImageFilter::default()).unwrap();
    let ubuntu = records
        .iter()
        .find(|r| r.image.identifier.as_str() == "vo.example.ubuntu-22.04")
        .unwrap();
    assert!(ubuntu.endorsed && ubuntu.selected);
    assert_eq!(ubuntu.image.version, pushed_ubuntu.digest);
    assert_eq!(ubuntu.image.sha512, pushed_ubuntu.layer_digest);
    assert_eq!(ubuntu.image.size, ubuntu_v1.len() as u64);
    assert_eq!(ubuntu.image.text("hv:format").as_deref(), Some("qcow2"));
    assert_eq!(ubuntu.image.text("sl:os").as_deref(), Some("ubuntu"));
    assert_eq!(ubuntu.image.text("hv:ram_minimum").as_deref(), Some("2048"));
    assert_eq!(ubuntu.image.title, "Ubuntu 22.04");
    assert_eq!(ubuntu.list_vo.as_deref(), Some("vo.example"));
    assert_eq!(
        ubuntu.image.extra["oci:annotations"]["org.openstack.glance.os_distro"],
        "ubuntu"
    );

    // Sync: both layers downloaded, verified, cached.
    let first = sync(&vmc);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.subscriptions[0].status, UpdateStatus::Unchanged);
    let mut downloaded = first.downloaded.clone();
    downloaded.sort();
    assert_eq!(downloaded, ["vo.example.alma-9", "vo.example.ubuntu-22.04"]);
    assert_eq!(
        cached_file(&env, "vo.example.ubuntu-22.04").unwrap(),
        ubuntu_v1
    );
    assert_eq!(cached_file(&env, "vo.example.alma-9").unwrap(), alma);
    assert_indexed_as_vmcatcher_reads_it(
        &env,
        "vo.example.ubuntu-22.04",
        &ubuntu_v1,
        &pushed_ubuntu.layer_digest,
    );
    assert_indexed_as_vmcatcher_reads_it(
        &env,
        "vo.example.alma-9",
        &alma,
        &pushed_alma.layer_digest,
    );
    let entries = vmc.store().cache_entries().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.sha512 == pushed_alma.layer_digest && e.size == alma.len() as u64)
    );
    // Re-hashing the cache checks the layers by their own digest algorithm.
    let verified = vmc.verify_cache(1, &NoProgress).unwrap();
    assert_eq!(verified.verified, 2);
    assert!(verified.expired.is_empty(), "{:?}", verified.expired);
    // The handler's variables: the OCI digests, no sha512 claimed.
    let events = vmc.store().events(false, None).unwrap();
    let postfix = events
        .iter()
        .find(|e| {
            e.event_type == EventType::AvailablePostfix
                && e.identifier.as_deref() == Some("vo.example.ubuntu-22.04")
        })
        .unwrap();
    assert_eq!(
        postfix.payload["VMCATCHER_EVENT_OCI_DIGEST"],
        pushed_ubuntu.digest.as_str()
    );
    assert_eq!(
        postfix.payload["VMCATCHER_EVENT_OCI_LAYER_DIGEST"],
        pushed_ubuntu.layer_digest.as_str()
    );
    assert_eq!(postfix.payload["VMCATCHER_EVENT_HV_FORMAT"], "qcow2");
    assert!(
        postfix
            .payload
            .get("VMCATCHER_EVENT_SL_CHECKSUM_SHA512")
            .is_none()
    );

    // Nothing changed in the registry: unchanged, nothing to do.
    let again = sync(&vmc);
    assert_eq!(again.subscriptions[0].status, UpdateStatus::Unchanged);
    assert!(again.downloaded.is_empty() && again.expired.is_empty());

    // The tag moves to a new digest: a new version, the old file expired, the new one cached.
    let ubuntu_v2 = image_bytes(3, 310_000);
    let moved = push(&registry, "vo.example/ubuntu", "22.04", &ubuntu_v2);
    let after_move = sync(&vmc);
    assert_eq!(after_move.subscriptions[0].status, UpdateStatus::Updated);
    assert!(after_move.failed.is_empty(), "{:?}", after_move.failed);
    assert_eq!(after_move.expired.len(), 1, "{:?}", after_move.expired);
    assert_eq!(after_move.expired[0].identifier, "vo.example.ubuntu-22.04");
    assert_eq!(after_move.expired[0].reason, ExpiryReason::Replaced);
    assert_eq!(after_move.downloaded, ["vo.example.ubuntu-22.04"]);
    assert_eq!(
        cached_file(&env, "vo.example.ubuntu-22.04").unwrap(),
        ubuntu_v2
    );
    let record = vmc
        .store()
        .images(&ImageFilter::default())
        .unwrap()
        .into_iter()
        .find(|r| r.image.identifier.as_str() == "vo.example.ubuntu-22.04")
        .unwrap();
    assert_eq!(record.image.version, moved.digest);
    // The index follows the new file (its SHA-512 is not the old one's, kept).
    assert_indexed_as_vmcatcher_reads_it(
        &env,
        "vo.example.ubuntu-22.04",
        &ubuntu_v2,
        &moved.layer_digest,
    );
    assert_indexed_as_vmcatcher_reads_it(
        &env,
        "vo.example.alma-9",
        &alma,
        &pushed_alma.layer_digest,
    );
    // The metrics count the registry as one more list.
    let metrics = vmc_cache::metrics::render(&vmc_cache::metrics::SyncMetrics {
        report: &after_move,
        success: true,
        duration: std::time::Duration::from_secs(1),
        now: env.now,
        previous_success: None,
        cache: None,
    });
    assert!(
        metrics.contains("vmc_sync_lists{status=\"updated\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vmc_sync_images_expired{reason=\"replaced\"} 1\n"),
        "{metrics}"
    );

    // The tag disappears: its image expires.
    registry.delete_manifest("vo.example/alma", &pushed_alma.digest);
    let after_delete = sync(&vmc);
    assert_eq!(
        after_delete.subscriptions[0].status,
        UpdateStatus::Updated,
        "{:?}",
        after_delete.subscriptions[0].error
    );
    assert_eq!(after_delete.expired.len(), 1, "{:?}", after_delete.expired);
    assert_eq!(after_delete.expired[0].identifier, "vo.example.alma-9");
    assert_eq!(after_delete.expired[0].reason, ExpiryReason::Removed);
    assert!(cached_file(&env, "vo.example.alma-9").is_none());
    assert_eq!(
        cached_file(&env, "vo.example.ubuntu-22.04").unwrap(),
        ubuntu_v2
    );
}

#[test]
fn follows_a_registry_on_sqlite() {
    follows_a_registry_on(None);
}

#[test]
fn follows_a_registry_on_postgres() {
    crate::nodes::with_postgres("vmcc_oci", |url| follows_a_registry_on(Some(&url)));
}

/// A real registry whose stored blob was overwritten serves bytes that do not hash to the
/// layer digest: the download is refused, nothing enters the cache or its records, and no
/// partial file is left; once the registry serves the right bytes, the next sync caches it.
#[test]
fn a_registry_serving_a_wrong_layer_is_refused() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let data = image_bytes(4, 150_000);
    let pushed = push(&registry, "vo.example/debian", "12", &data);
    let blob = registry.blob_file(&pushed.layer_digest);
    let mut wrong = data.clone();
    wrong[1000] ^= 0xff;
    std::fs::write(&blob, &wrong).unwrap();
    let env = Gen::new();
    let vmc = open(&env, None);
    let url = format!("oci://{}/vo.example/debian", registry.host());
    subscribe(&vmc, &url);
    let refused = sync(&vmc);
    assert_eq!(refused.failed.len(), 1, "{:?}", refused.failed);
    assert_eq!(refused.failed[0].identifier, "vo.example.debian-12");
    assert_eq!(refused.failed[0].code, ErrorCode::ChecksumMismatch);
    assert!(refused.downloaded.is_empty());
    assert!(cached_file(&env, "vo.example.debian-12").is_none());
    assert!(vmc.store().cache_entries().unwrap().is_empty());
    let partial = Config::with_home(env.home.path()).partial_dir;
    assert!(!partial.join("vo.example.debian-12").exists());

    std::fs::write(&blob, &data).unwrap();
    let fixed = sync(&vmc);
    assert!(fixed.failed.is_empty(), "{:?}", fixed.failed);
    assert_eq!(fixed.downloaded, ["vo.example.debian-12"]);
    assert_eq!(cached_file(&env, "vo.example.debian-12").unwrap(), data);
}

/// A registry that serves another manifest than the digest its tag names: the update fails
/// with `checksum_mismatch`, the stored version and the cached file stay as they were.
#[test]
fn a_registry_serving_a_wrong_manifest_changes_nothing() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let data = image_bytes(5, 100_000);
    let pushed = push(&registry, "vo.example/rocky", "9", &data);
    let env = Gen::new();
    let vmc = open(&env, None);
    let url = format!("oci://{}/vo.example/rocky:9", registry.host());
    // `subscribe check` runs the same reading and verification and stores nothing.
    let checked = vmc.check_oci(&url).unwrap();
    assert!(checked.error.is_none(), "{:?}", checked.error);
    let images = &checked.list.as_ref().unwrap().images;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].sha512, pushed.layer_digest);
    assert!(vmc.store().subscriptions().unwrap().is_empty());
    subscribe(&vmc, &url);
    assert!(sync(&vmc).failed.is_empty());
    let sub = vmc.store().find_subscription(&url).unwrap().unwrap();
    let version = sub.current.unwrap().id;

    // The registry's stored manifest now holds other bytes (a manifest naming another layer).
    let other = push(&registry, "vo.example/other", "1", &image_bytes(6, 1000));
    std::fs::write(registry.blob_file(&pushed.digest), &other.bytes).unwrap();
    let after = sync(&vmc);
    let list = &after.subscriptions[0];
    assert_eq!(list.status, UpdateStatus::Failed);
    let error = list.error.as_ref().unwrap();
    assert_eq!(error.code, ErrorCode::ChecksumMismatch, "{}", error.message);
    assert!(error.message.contains(&pushed.digest), "{}", error.message);
    assert!(after.expired.is_empty() && after.downloaded.is_empty());
    let sub = vmc.store().find_subscription(&url).unwrap().unwrap();
    assert_eq!(sub.current.unwrap().id, version);
    assert_eq!(cached_file(&env, "vo.example.rocky-9").unwrap(), data);
    let checked = vmc.check_oci(&url).unwrap();
    let error = checked.error.unwrap();
    assert_eq!(error.code, ErrorCode::ChecksumMismatch, "{}", error.message);
    assert!(checked.list.is_none());
    let sub = vmc.store().find_subscription(&url).unwrap().unwrap();
    assert_eq!(sub.current.unwrap().id, version);
}

/// The site's allow rule is the trust: a reference outside it is refused before anything is
/// stored, and images of repositories the rule does not allow are not taken.
#[test]
fn the_allow_rule_limits_what_is_followed() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    push(
        &registry,
        "vo.example/ubuntu",
        "22.04",
        &image_bytes(7, 1000),
    );
    push(&registry, "vo.example/alma", "9", &image_bytes(8, 1000));
    let env = Gen::new();
    let vmc = open(&env, None);
    let dispatcher = vmc_cache::Dispatcher::new(vmc.config());
    let url = format!("oci://{}/vo.example", registry.host());
    let refused = vmc
        .subscribe_oci(
            &request(&url, NewImagePolicy::Subscribe),
            Some("registry.egi.eu/vo.example/**"),
            &dispatcher,
        )
        .unwrap_err();
    assert!(refused.to_string().contains("not allowed"), "{refused}");
    assert!(vmc.store().subscriptions().unwrap().is_empty());
    let allow = format!("{}/vo.example/ubuntu", registry.host());
    let report = vmc
        .subscribe_oci(
            &request(&url, NewImagePolicy::Subscribe),
            Some(&allow),
            &dispatcher,
        )
        .unwrap();
    assert_eq!(report.status, UpdateStatus::Added, "{:?}", report.error);
    let ids: Vec<String> = report.new_images.iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["vo.example.ubuntu-22.04"]);
}

/// A signed list and a registry that name the same image (the artifact carries the list's
/// `dc:identifier`) share one cached file: it is downloaded once, and neither subscription
/// expires the other's copy.
#[test]
fn a_list_and_a_registry_naming_one_image_cache_it_once() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let env = Gen::new();
    let shared = crate::GenImage::new("shared-image-1", 9, 50_000);
    env.publish("1", std::slice::from_ref(&shared));
    registry.push_disk_image(&DiskImage {
        repository: "vo.example/shared",
        tag: "1",
        data: &shared.bytes,
        file_name: "shared.qcow2",
        layer_media_type: "application/x-qemu-disk",
        layer_annotations: &[],
        manifest_annotations: &[("dc:identifier", "shared-image-1")],
    });
    let vmc = open(&env, None);
    env.subscribe(&vmc, NewImagePolicy::Subscribe);
    let url = format!("oci://{}/vo.example/shared", registry.host());
    subscribe(&vmc, &url);
    let records = vmc.store().images(&ImageFilter::default()).unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.image.identifier.as_str() == "shared-image-1")
    );
    let first = sync(&vmc);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.downloaded, ["shared-image-1"]);
    assert_eq!(vmc.store().cache_entries().unwrap().len(), 1);
    let second = sync(&vmc);
    assert!(second.expired.is_empty(), "{:?}", second.expired);
    assert!(second.downloaded.is_empty());
    assert_eq!(cached_file(&env, "shared-image-1").unwrap(), shared.bytes);
}

/// The allow rule is checked now, not only at subscription: a rule changed so that it no
/// longer admits the repository leaves its images unendorsed (they expire), and `doctor`
/// says why; the update the sync runs does not take the image again.
#[test]
fn a_narrowed_rule_expires_the_images_and_doctor_says_why() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let data = image_bytes(10, 20_000);
    push(&registry, "vo.example/fedora", "40", &data);
    let env = Gen::new();
    let vmc = open(&env, None);
    let url = format!("oci://{}/vo.example/fedora", registry.host());
    subscribe(&vmc, &url);
    assert_eq!(sync(&vmc).downloaded, ["vo.example.fedora-40"]);
    let doctor = |vmc: &Vmc| {
        vmc_cache::doctor::diagnose(vmc.config())
            .into_iter()
            .filter(|c| c.name == "subscription" && c.status == vmc_cache::doctor::Status::Fail)
            .map(|c| c.message)
            .collect::<Vec<_>>()
    };
    assert!(doctor(&vmc).is_empty(), "{:?}", doctor(&vmc));

    let sub = vmc.store().find_subscription(&url).unwrap().unwrap();
    vmc.store()
        .set_oci_allow(sub.id, &format!("{}/vo.example/ubuntu", registry.host()))
        .unwrap();
    let after = sync(&vmc);
    assert_eq!(after.expired.len(), 1, "{:?}", after.expired);
    assert_eq!(after.expired[0].reason, ExpiryReason::Unendorsed);
    assert!(after.downloaded.is_empty());
    assert!(cached_file(&env, "vo.example.fedora-40").is_none());
    let error = after.subscriptions[0].error.as_ref().unwrap();
    assert_eq!(
        error.code,
        ErrorCode::SignerNotEndorser,
        "{}",
        error.message
    );
    let fails = doctor(&vmc);
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].contains("does not allow"), "{fails:?}");
    // A list subscription has no rule to set.
    assert!(
        vmc.store()
            .set_oci_allow(sub.id + 100, "x.example/p/**")
            .is_err()
    );
}

/// Under the default policy `refuse` the registry's images are known, not selected, and not
/// downloaded; `image subscribe` (selection by id) makes the next sync cache one of them.
#[test]
fn images_of_a_registry_are_selected_like_list_images() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let data = image_bytes(11, 30_000);
    push(&registry, "vo.example/ubuntu", "22.04", &data);
    push(
        &registry,
        "vo.example/ubuntu",
        "24.04",
        &image_bytes(12, 30_000),
    );
    let env = Gen::new();
    let vmc = open(&env, None);
    let url = format!("oci://{}/vo.example/ubuntu", registry.host());
    let report = vmc
        .subscribe_oci(
            &request(&url, NewImagePolicy::Refuse),
            None,
            &vmc_cache::Dispatcher::new(vmc.config()),
        )
        .unwrap();
    assert_eq!(report.new_images.len(), 2, "{:?}", report.error);
    let idle = sync(&vmc);
    assert!(idle.downloaded.is_empty() && idle.failed.is_empty());
    let id = vmc_model::Identifier::new("vo.example.ubuntu-22.04").unwrap();
    assert_eq!(vmc.store().set_selected(&[id], true).unwrap(), 1);
    let picked = sync(&vmc);
    assert_eq!(picked.downloaded, ["vo.example.ubuntu-22.04"]);
    assert_eq!(cached_file(&env, "vo.example.ubuntu-22.04").unwrap(), data);
    assert!(cached_file(&env, "vo.example.ubuntu-24.04").is_none());
}

/// A registry over TLS (the default scheme) is followed when its CA is one of the client's
/// roots, and refused — nothing stored — when it is not.
#[test]
fn a_tls_registry_is_verified_against_the_given_roots() {
    let tls = vmc_testkit::server::TestTls::generate();
    let Some(registry) = testreg::or_skip(testreg::Registry::start_tls(&tls), ci()) else {
        return;
    };
    let data = image_bytes(13, 40_000);
    push(&registry, "vo.example/tls", "1", &data);
    let url = format!("oci://{}/vo.example/tls", registry.host());
    let env = Gen::new();
    let untrusting = Vmc::open(env.config()).unwrap();
    subscribe_refused(&untrusting, &url);
    drop(untrusting);
    let mut config = env.config();
    config.http.extra_roots.push(tls.ca_cert.clone());
    let vmc = Vmc::open(config).unwrap();
    subscribe(&vmc, &url);
    assert_eq!(sync(&vmc).downloaded, ["vo.example.tls-1"]);
    assert_eq!(cached_file(&env, "vo.example.tls-1").unwrap(), data);
}

/// `Config::oci_ca_file` (`VMC_OCI_CA_FILE`): a registry over TLS whose CA is in the bundle
/// is followed; with a bundle of another CA it is refused even though its CA is one of the
/// ordinary roots (the bundle replaces them for registries), and without the bundle a sync
/// fails with an error naming the registry and the TLS reason, caching nothing new. A bundle
/// that cannot be used fails naming the file.
#[test]
fn a_tls_registry_is_verified_against_the_oci_ca_file() {
    let tls = vmc_testkit::server::TestTls::generate();
    let Some(registry) = testreg::or_skip(testreg::Registry::start_tls(&tls), ci()) else {
        return;
    };
    let other = vmc_testkit::server::TestTls::generate();
    let first = image_bytes(14, 30_000);
    push(&registry, "vo.example/pinned", "1", &first);
    let url = format!("oci://{}/vo.example/pinned", registry.host());
    let env = Gen::new();
    let right = env.home.path().join("registry-ca.pem");
    std::fs::write(&right, tls.ca_cert.to_pem().unwrap()).unwrap();
    let wrong = env.home.path().join("other-ca.pem");
    std::fs::write(&wrong, other.ca_cert.to_pem().unwrap()).unwrap();
    let with_bundle = |bundle: Option<&std::path::Path>| {
        let mut config = env.config();
        config.http.extra_roots.push(tls.ca_cert.clone());
        config.oci_ca_file = bundle.map(std::path::Path::to_owned);
        Vmc::open(config).unwrap()
    };

    let refused = |vmc: &Vmc| subscribe_refused(vmc, &url);
    let message = refused(&with_bundle(Some(&wrong)));
    assert!(message.contains("tls handshake failed"), "{message}");
    assert!(message.contains(&registry.host()), "{message}");
    let empty = env.home.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let message = refused(&with_bundle(Some(&empty)));
    assert!(
        message.contains(&format!(
            "ca bundle {} holds no pem certificate",
            empty.display()
        )),
        "{message}"
    );
    let missing = env.home.path().join("missing.pem");
    let message = refused(&with_bundle(Some(&missing)));
    assert!(
        message.contains(&format!("cannot read the ca bundle {}", missing.display())),
        "{message}"
    );

    let vmc = with_bundle(Some(&right));
    subscribe(&vmc, &url);
    assert_eq!(sync(&vmc).downloaded, ["vo.example.pinned-1"]);
    drop(vmc);

    // The system roots alone do not know the test CA: the update fails, naming the registry
    // and why, and the new tag is not cached.
    let second = image_bytes(15, 30_000);
    push(&registry, "vo.example/pinned", "2", &second);
    let mut config = env.config();
    config.oci_ca_file = None;
    let untrusting = Vmc::open(config).unwrap();
    let report = sync(&untrusting);
    assert_eq!(report.subscriptions[0].status, UpdateStatus::Failed);
    let error = report.subscriptions[0].error.clone().unwrap();
    assert_eq!(error.code, ErrorCode::FetchFailed);
    assert!(
        error.message.contains(&format!(
            "tls handshake failed for https://{}/v2/",
            registry.host()
        )),
        "{}",
        error.message
    );
    assert!(error.message.contains("certificate"), "{}", error.message);
    assert!(report.downloaded.is_empty());
    assert!(cached_file(&env, "vo.example.pinned-2").is_none());
    drop(untrusting);

    let vmc = with_bundle(Some(&right));
    assert_eq!(sync(&vmc).downloaded, ["vo.example.pinned-2"]);
    assert_eq!(cached_file(&env, "vo.example.pinned-1").unwrap(), first);
    assert_eq!(cached_file(&env, "vo.example.pinned-2").unwrap(), second);
}

/// A download whose bearer token expires during its retries, when the token endpoint then
/// refuses a new one (the robot account was disabled): the image fails with an error saying
/// the authorization could not be renewed, nothing is cached, and the next sync, with the
/// account back, resumes and caches the verified file. Against the real registry behind the
/// testkit's token endpoint (tokens of 3 s) and a proxy that cuts the first blob transfer.
#[test]
fn a_failed_token_renewal_caches_nothing_and_the_next_sync_finishes() {
    let account = testreg::Account {
        username: "robot$vo.example+renew".into(),
        password: "renewal-secret-99".into(),
    };
    let Some(registry) = testreg::or_skip(
        testreg::Registry::start_with_token(account.clone(), false),
        ci(),
    ) else {
        return;
    };
    let data = image_bytes(16, 600_000);
    push(&registry, "vo.example/renew", "1", &data);
    let proxy = vmc_testkit::proxy::FaultProxy::start(registry.addr()).unwrap();
    let host = proxy.url().trim_start_matches("http://").to_owned();
    let env = Gen::new();
    let mut config = env.config();
    config.oci_plain_http = true;
    config.http.retries = 1;
    config.http.backoff = std::time::Duration::from_secs(4);
    let vmc = Vmc::open(config).unwrap();
    let mut req = request(
        &format!("oci://{host}/vo.example/renew"),
        NewImagePolicy::Subscribe,
    );
    req.auth = Some(vmc_model::SubscriptionAuth::Basic {
        username: account.username.clone(),
        password: account.password.clone(),
    });
    let added = vmc
        .subscribe_oci(&req, None, &vmc_cache::Dispatcher::new(vmc.config()))
        .unwrap();
    assert_eq!(added.status, UpdateStatus::Added, "{:?}", added.error);

    let tokens = registry.token_server().unwrap();
    tokens.set_token_lifetime(std::time::Duration::from_secs(3));
    // One token for the download's first request, none for its retry.
    tokens.limit_tokens(Some(1));
    proxy.add_rule(
        "GET",
        "/blobs/",
        vmc_testkit::proxy::ProxyFault::CutResponse(128 * 1024),
        1,
    );
    let options = SyncOptions {
        jobs: 1,
        verify: false,
        update_lists: false,
    };
    let report = vmc.sync(&options, &NoProgress).unwrap();
    assert!(report.downloaded.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let failure = &report.failed[0];
    assert_eq!(failure.identifier, "vo.example.renew-1");
    assert_eq!(failure.code, ErrorCode::FetchFailed);
    assert!(
        failure.message.contains("could not be renewed") && failure.message.contains("/token"),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains("renewal-secret-99"));
    assert!(cached_file(&env, "vo.example.renew-1").is_none());

    tokens.limit_tokens(None);
    let report = vmc.sync(&options, &NoProgress).unwrap();
    assert_eq!(report.downloaded, ["vo.example.renew-1"], "{report:?}");
    assert!(
        report.bytes_downloaded < data.len() as u64,
        "resumed: {report:?}"
    );
    assert_eq!(cached_file(&env, "vo.example.renew-1").unwrap(), data);
}
