//! Claims of other nodes sharing the database: a claim whose node is gone — not registered,
//! silent for longer than the lease time, or registered again since (a newer run) — is taken
//! over at once and its image published exactly once; a live node's claim is left alone
//! until that node stops beating; a run whose claim is taken over can no longer write it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use vmc_cache::store::{NewPublication, PublicationState, Store};
use vmc_model::Identifier;
use vmc_publish::{ActionKind, Glance, ImageService, NewRemoteImage, Publisher, Visibility};

use crate::common::{WithUpload, config, register, remote_images, sha512_of, start, t0};

/// What a run of `node` left when it stopped mid-upload of `id` at `at`: its claim, and the
/// image it created in Glance (still `queued`, carrying the claim's token).
fn claim_left(
    store: &Store,
    glance: &Glance,
    node: &str,
    id: &str,
    file: &std::path::Path,
    at: DateTime<Utc>,
) -> String {
    let token = format!("token-of-{node}");
    let sha512 = sha512_of(file);
    let claimed = store
        .claim_publication(&NewPublication {
            target: "test-cloud",
            identifier: &Identifier::new(id).unwrap(),
            sha512: &sha512,
            version: "1",
            list_url: "https://lists.example/dteam.smime",
            disk_format: "qcow2",
            file_sha512: &sha512,
            token: &token,
            claimed_by: node,
            claimed_at: at,
        })
        .unwrap();
    assert!(claimed.is_some(), "{node} claims {id}");
    let properties = BTreeMap::from([
        ("vmc_identifier".to_owned(), id.to_owned()),
        ("vmc_publication".to_owned(), token),
    ]);
    let image = glance
        .create(&NewRemoteImage {
            name: format!("{id} (left by {node})"),
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            visibility: Visibility::Private,
            owner: None,
            min_ram: 0,
            min_disk: 0,
            properties,
        })
        .unwrap();
    assert_eq!(image.status, "queued");
    image.id
}

/// Checks that the one publication of test-cloud is active, `node`'s, for image `remote`.
fn assert_active(store: &Store, node: &str, remote: &str) {
    let p = store
        .publications(Some("test-cloud"))
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (p.state, p.claimed_by.as_str(), p.remote_id.as_deref()),
        (PublicationState::Active, node, Some(remote))
    );
}

#[test]
fn claims_of_gone_nodes_are_taken_over_at_once_and_a_live_nodes_claim_is_respected() {
    let Some((_g, site, glance)) = start("claims_of_gone_nodes_are_taken_over") else {
        return;
    };
    let ids = ["img-ghost", "img-silent", "img-restarted", "img-live"];
    let files = site.list_version_1(&ids, 40);
    let lease = std::time::Duration::from_secs(120);
    // The other nodes, on their own connection to the database.
    let other = site.reopen();
    let claimed_at = t0() - Duration::seconds(30);
    // `ghost` is not registered (removed with `vmc node remove`, or never joined).
    let ghost = claim_left(&other, &glance, "ghost", ids[0], &files[0], claimed_at);
    // `silent` last beat 3 minutes ago (killed; the lease time is 2 minutes).
    register(
        &other,
        "silent",
        claimed_at - Duration::minutes(5),
        t0() - Duration::minutes(3),
    );
    let silent = claim_left(&other, &glance, "silent", ids[1], &files[1], claimed_at);
    // `restarted` beats, but in a run that started after the claim: the claiming run is gone.
    let restarted = claim_left(&other, &glance, "restarted", ids[2], &files[2], claimed_at);
    register(
        &other,
        "restarted",
        claimed_at + Duration::seconds(10),
        t0(),
    );
    // `live` beat 10 s ago in the run that claimed.
    register(
        &other,
        "live",
        claimed_at - Duration::seconds(5),
        t0() - Duration::seconds(10),
    );
    let live = claim_left(&other, &glance, "live", ids[3], &files[3], claimed_at);

    let mut config = config(site.dir.path());
    config.lease_time = lease;
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    let report = publisher.sync(t0(), false).unwrap();
    assert!(!report.has_failures(), "{report:#?}");
    let of = |kind: ActionKind| -> Vec<&str> {
        let mut v: Vec<&str> = report
            .actions
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.identifier.as_str())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        of(ActionKind::Repair),
        ["img-ghost", "img-restarted", "img-silent"]
    );
    assert_eq!(
        of(ActionKind::Publish),
        ["img-ghost", "img-restarted", "img-silent"]
    );
    assert_eq!(of(ActionKind::Skip), ["img-live"]);
    let detail = |id: &str| {
        report
            .actions
            .iter()
            .find(|a| a.kind == ActionKind::Repair && a.identifier == id)
            .and_then(|a| a.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        detail("img-ghost").contains("node ghost that claimed it at"),
        "{}",
        detail("img-ghost")
    );
    assert!(detail("img-ghost").contains("is not registered"));
    assert!(
        detail("img-silent").contains("was last seen at"),
        "{}",
        detail("img-silent")
    );
    assert!(
        detail("img-restarted").contains("(pid 4242 on other-host)"),
        "{}",
        detail("img-restarted")
    );
    // Each taken-over image is in Glance once, active, with the file's checksum; what the
    // gone runs left is deleted.
    for (id, left, file) in [
        (ids[0], &ghost, &files[0]),
        (ids[1], &silent, &files[1]),
        (ids[2], &restarted, &files[2]),
    ] {
        assert_eq!(
            glance.get(left).unwrap(),
            None,
            "{id}: the gone run's image"
        );
        let found = remote_images(&glance, id);
        assert_eq!(found.len(), 1, "{id}: {found:#?}");
        assert_eq!(found[0].status, "active");
        assert_eq!(
            found[0].hash_value.as_deref(),
            Some(sha512_of(file).as_str())
        );
    }
    // The live node's claim and image are untouched.
    let found = remote_images(&glance, "img-live");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, live);
    let claim = |id: &str| {
        publisher
            .publications()
            .unwrap()
            .into_iter()
            .find(|p| p.identifier.as_str() == id)
            .unwrap()
    };
    let p = claim("img-live");
    assert_eq!(
        (p.state, p.claimed_by.as_str()),
        (PublicationState::Uploading, "live")
    );

    // Again, 90 s later: `live` beat 100 s ago, still within the lease: still respected.
    let report = publisher.sync(t0() + Duration::seconds(90), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 0, "{report:#?}");
    assert_eq!(claim("img-live").state, PublicationState::Uploading);
    // `live` stops beating: once its lease time has passed, its claim is taken over.
    let report = publisher
        .sync(t0() + Duration::seconds(131), false)
        .unwrap();
    assert_eq!(report.done(ActionKind::Repair), 1, "{report:#?}");
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    assert_eq!(glance.get(&live).unwrap(), None);
    let found = remote_images(&glance, "img-live");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].status, "active");
    let p = claim("img-live");
    assert_eq!(
        (p.state, p.claimed_by.as_str()),
        (PublicationState::Active, "node-a")
    );
    // Nothing more to do: every image is published once.
    let report = publisher.sync(t0() + Duration::minutes(5), false).unwrap();
    assert!(report.actions.is_empty(), "{report:#?}");
}

#[test]
fn a_stalled_run_cannot_write_the_claim_taken_over_from_it() {
    let Some((_g, site, glance)) = start("a_stalled_run_cannot_write_the_claim") else {
        return;
    };
    let file = site.alma9(45);
    let other = site.reopen();
    let claimed_at = t0() - Duration::minutes(10);
    register(&other, "stalled", claimed_at, claimed_at);
    // The stalled run uploaded the whole file, then stopped before recording it.
    let left = claim_left(&other, &glance, "stalled", "alma9", &file, claimed_at);
    let size = std::fs::metadata(&file).unwrap().len();
    glance.upload(&left, &file, size).unwrap();
    let stale = other
        .publications(Some("test-cloud"))
        .unwrap()
        .pop()
        .unwrap();
    let config = config(site.dir.path());
    let report = Publisher::new(&site.store, &site.cache_dir, &glance, &config)
        .sync(t0(), false)
        .unwrap();
    // node-a adopts the complete image (silent for 10 minutes, `stalled` is presumed dead).
    assert_eq!(report.done(ActionKind::Adopt), 1, "{report:#?}");
    assert_eq!(report.done(ActionKind::Publish), 0, "{report:#?}");
    // The stalled run wakes up and records what it believes (the upload failed): the claim's
    // token changed when it was taken over, so the write is refused.
    let mut late = stale.clone();
    late.state = PublicationState::Failed;
    late.remote_id = None;
    assert!(!other.save_publication(&stale.token, &late).unwrap());
    assert_active(&site.store, "node-a", &left);
    assert_eq!(remote_images(&glance, "alma9").len(), 1);
}

#[test]
fn a_run_whose_claim_is_taken_over_during_its_upload_leaves_the_image_the_taker_adopted() {
    let Some((_g, site, glance)) = start("a_run_whose_claim_is_taken_over_during") else {
        return;
    };
    site.alma9(46);
    // node-a's heartbeat stalled 10 minutes ago: node-b presumes it gone.
    register(
        &site.store,
        "node-a",
        t0() - Duration::minutes(10),
        t0() - Duration::minutes(10),
    );
    let node_b_store = site.reopen();
    let node_b_report = std::cell::RefCell::new(None);
    let mut node_b = config(&site.dir.path().join("node-b"));
    node_b.node = "node-b".into();
    // node-b runs right after node-a's upload completes, before node-a records it.
    let service = WithUpload {
        glance: &glance,
        upload: Box::new(|id, path, size| {
            let sent = glance.upload(id, path, size)?;
            let report = Publisher::new(&node_b_store, &site.cache_dir, &glance, &node_b)
                .sync(t0(), false)
                .unwrap();
            *node_b_report.borrow_mut() = Some(report);
            Ok(sent)
        }),
    };
    let node_a = config(site.dir.path());
    let report = Publisher::new(&site.store, &site.cache_dir, &service, &node_a)
        .sync(t0(), false)
        .unwrap();
    // node-b adopted node-a's complete upload; node-a's last write was refused, and it left
    // the image alone (node-b's publication points at it).
    let taken = node_b_report.borrow_mut().take().unwrap();
    assert_eq!(taken.done(ActionKind::Adopt), 1, "{taken:#?}");
    assert_eq!(report.done(ActionKind::Publish), 0, "{report:#?}");
    assert_eq!(report.actions.len(), 1, "{report:#?}");
    assert_eq!(report.actions[0].kind, ActionKind::Skip);
    assert_eq!(
        report.actions[0].detail.as_deref(),
        Some("claim taken over by another run during the upload")
    );
    let found = remote_images(&glance, "alma9");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].status, "active");
    assert_active(&site.store, "node-b", &found[0].id);
}
