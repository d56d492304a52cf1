//! The life cycle against a real Glance: a new image is published once with its properties;
//! a new version replaces the old one (hidden and deactivated, deleted after the grace time);
//! an expired image is deactivated and kept while tagged in use, protected, or refused by
//! Glance (409); a dry run changes nothing;
//! two nodes sharing the database publish once.

use chrono::Duration;
use vmc_cache::store::PublicationState;
use vmc_publish::{ActionKind, ImageService, Outcome, Publisher, Route, RouteMatch, Visibility};
use vmc_testkit::proxy::{FaultProxy, ProxyFault};

use crate::common::{
    Img, client, config, members_of, protect, qcow2, register, remote_images, sha512_of, start, t0,
    tag,
};

#[test]
fn a_new_image_is_published_once_with_its_properties() {
    let Some((_g, site, glance)) = start("a_new_image_is_published_once_with_its_properties")
    else {
        return;
    };
    let file = qcow2(site.dir.path(), 1);
    site.list(&[Img {
        id: "alma9",
        file: &file,
        version: "9.4-1",
    }]);
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);

    let report = publisher.sync(t0(), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    assert!(!report.has_failures());
    let images = remote_images(&glance, "alma9");
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.status, "active");
    assert_eq!(image.hash_value.as_deref(), Some(sha512_of(&file).as_str()));
    let prop = |k: &str| image.properties.get(k).map(String::as_str);
    assert_eq!(prop("vmc_sha512"), Some(sha512_of(&file).as_str()));
    assert_eq!(prop("vmc_version"), Some("9.4-1"));
    assert_eq!(prop("vmc_list_identifier"), Some("dteam-list"));
    assert_eq!(prop("vmc_vo"), Some("dteam"));
    assert_eq!(prop("vmc_target"), Some("test-cloud"));
    // The list URL without its credentials.
    assert_eq!(
        prop("vmc_list_url"),
        Some("https://user:***@lists.example/dteam.smime")
    );
    assert_eq!(prop("os_distro"), Some("almalinux"));
    assert_eq!(prop("os_version"), Some("9.4"));
    assert_eq!(prop("architecture"), Some("x86_64"));
    // An OCI-style annotation passes; one naming a Glance field does not.
    assert_eq!(prop("hw_disk_bus"), Some("virtio"));
    assert_eq!(image.visibility, "private");
    let publications = publisher.publications().unwrap();
    assert_eq!(publications.len(), 1);
    assert_eq!(publications[0].state, PublicationState::Active);
    assert_eq!(
        publications[0].remote_id.as_deref(),
        Some(image.id.as_str())
    );

    // Again: nothing to do, nothing uploaded twice.
    let again = publisher.sync(t0() + Duration::hours(1), false).unwrap();
    assert!(again.actions.is_empty(), "{again:#?}");
    assert_eq!(remote_images(&glance, "alma9").len(), 1);
}

#[test]
fn a_new_version_replaces_the_old_one_which_is_deleted_after_the_grace_time() {
    let Some((_g, site, glance)) = start("a_new_version_replaces_the_old_one") else {
        return;
    };
    let v1 = qcow2(site.dir.path(), 1);
    let v2 = qcow2(site.dir.path(), 2);
    site.list(&[Img {
        id: "alma9",
        file: &v1,
        version: "1",
    }]);
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    publisher.sync(t0(), false).unwrap();
    let old = remote_images(&glance, "alma9").pop().unwrap();

    site.list(&[Img {
        id: "alma9",
        file: &v2,
        version: "2",
    }]);
    let report = publisher.sync(t0() + Duration::hours(1), false).unwrap();
    assert!(!report.has_failures(), "{report:#?}");
    let kinds: Vec<_> = report.actions.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [ActionKind::Publish, ActionKind::Supersede]);
    let images = remote_images(&glance, "alma9");
    assert_eq!(images.len(), 2);
    let new = images.iter().find(|i| i.id != old.id).unwrap();
    assert_eq!(new.status, "active");
    assert!(!new.hidden);
    assert_eq!(new.hash_value.as_deref(), Some(sha512_of(&v2).as_str()));
    let old_now = glance.get(&old.id).unwrap().unwrap();
    assert_eq!(old_now.status, "deactivated");
    assert!(old_now.hidden, "the old version leaves users' listings");

    // Within the grace time it stays; after it, it is deleted.
    let report = publisher.sync(t0() + Duration::hours(20), false).unwrap();
    assert!(report.actions.is_empty(), "{report:#?}");
    let report = publisher.sync(t0() + Duration::hours(26), false).unwrap();
    assert_eq!(report.done(ActionKind::Delete), 1, "{report:#?}");
    assert_eq!(glance.get(&old.id).unwrap(), None);
    assert_eq!(remote_images(&glance, "alma9").len(), 1);
    let states: Vec<_> = publisher
        .publications()
        .unwrap()
        .iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(
        states,
        [PublicationState::Deleted, PublicationState::Active]
    );
}

#[test]
fn an_expired_image_is_deactivated_and_kept_while_in_use_tagged_protected_or_refused() {
    let Some((g, site, glance)) = start("an_expired_image_is_deactivated_and_kept_while_in_use")
    else {
        return;
    };
    site.alma9(3);
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    publisher.sync(t0(), false).unwrap();
    let image = remote_images(&glance, "alma9").pop().unwrap();

    site.expire("alma9");
    let report = publisher.sync(t0() + Duration::hours(1), false).unwrap();
    assert_eq!(report.done(ActionKind::Expire), 1, "{report:#?}");
    let now = glance.get(&image.id).unwrap().unwrap();
    assert_eq!(now.status, "deactivated");
    assert!(now.hidden);

    // An instance still uses it: the operator (or a Nova-aware hook) tags it.
    tag(&g.url(), &image.id, "vmc-in-use", true);
    let report = publisher.sync(t0() + Duration::days(3), false).unwrap();
    assert_eq!(report.done(ActionKind::KeepInUse), 1, "{report:#?}");
    assert_eq!(
        report.actions[0].detail.as_deref(),
        Some("tagged vmc-in-use")
    );
    assert!(glance.get(&image.id).unwrap().is_some());
    tag(&g.url(), &image.id, "vmc-in-use", false);

    // Protected (an operator, or a Nova-aware hook): kept past the grace time.
    protect(&g.url(), &image.id, true);
    let report = publisher.sync(t0() + Duration::days(3), false).unwrap();
    assert_eq!(report.done(ActionKind::KeepInUse), 1, "{report:#?}");
    assert_eq!(report.actions[0].detail.as_deref(), Some("protected"));
    assert!(glance.get(&image.id).unwrap().is_some());
    protect(&g.url(), &image.id, false);

    // Glance refuses the delete with 409 (as with a Ceph store holding clones): kept.
    let proxy = FaultProxy::start(g.addr()).unwrap();
    proxy.add_rule("DELETE", "/v2/images/", ProxyFault::Status(409), 1);
    let through = client(&proxy.url());
    let refused = Publisher::new(&site.store, &site.cache_dir, &through, &config)
        .sync(t0() + Duration::days(3), false)
        .unwrap();
    assert_eq!(refused.done(ActionKind::KeepInUse), 1, "{refused:#?}");
    assert_eq!(
        refused.actions[0].detail.as_deref(),
        Some("the image service refuses: in use")
    );
    assert!(glance.get(&image.id).unwrap().is_some());
    let state = |p: &Publisher<'_>| p.publications().unwrap().pop().unwrap().state;
    assert_eq!(state(&publisher), PublicationState::Deactivated);

    // Nothing holds it any more (the instance is gone): the next run deletes it.
    let report = publisher.sync(t0() + Duration::days(3), false).unwrap();
    assert_eq!(report.done(ActionKind::Delete), 1, "{report:#?}");
    assert_eq!(glance.get(&image.id).unwrap(), None);
    assert_eq!(state(&publisher), PublicationState::Deleted);
}

#[test]
fn a_dry_run_changes_nothing() {
    let Some((_g, site, glance)) = start("a_dry_run_changes_nothing") else {
        return;
    };
    site.alma9(4);
    let config = config(site.dir.path());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    let report = publisher.sync(t0(), true).unwrap();
    assert_eq!(report.actions.len(), 1);
    assert_eq!(report.actions[0].kind, ActionKind::Publish);
    assert_eq!(report.actions[0].outcome, Outcome::Planned);
    assert!(remote_images(&glance, "alma9").is_empty());
    assert!(publisher.publications().unwrap().is_empty());
}

#[test]
fn two_nodes_sharing_the_database_publish_once() {
    let Some((g, site, glance)) = start("two_nodes_sharing_the_database_publish_once") else {
        return;
    };
    let ids = ["img-a", "img-b", "img-c", "img-d"];
    site.list_version_1(&ids, 10);
    // Both nodes are alive in the runs that claim (each respects the other's claims).
    for node in ["node-a", "node-b"] {
        register(&site.store, node, t0(), t0());
    }
    let barrier = std::sync::Barrier::new(2);
    let reports: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["node-a", "node-b"]
            .into_iter()
            .map(|node| {
                let store = site.reopen();
                let barrier = &barrier;
                let url = g.url();
                let cache_dir = site.cache_dir.clone();
                let dir = site.dir.path().join(node);
                scope.spawn(move || {
                    let glance = client(&url);
                    let mut config = config(&dir);
                    config.node = node.to_owned();
                    barrier.wait();
                    Publisher::new(&store, &cache_dir, &glance, &config)
                        .sync(t0(), false)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each image is published once in total, by one of the two, and neither fails: Glance's
    // SQLite no longer answers 500 to concurrent uploads (the testkit's shim takes the write
    // lock at BEGIN; ran 5 times under a loaded `cargo test` of the whole suite).
    let published: usize = reports.iter().map(|r| r.done(ActionKind::Publish)).sum();
    assert_eq!(published, 4, "{reports:#?}");
    assert!(reports.iter().all(|r| !r.has_failures()), "{reports:#?}");
    for id in ids {
        let found = remote_images(&glance, id);
        assert_eq!(found.len(), 1, "{id}: {found:#?}");
        assert_eq!(found[0].status, "active");
    }
}

#[test]
fn a_vo_route_sets_the_owner_and_shares_with_its_members() {
    let Some((g, site, glance)) = start("a_vo_route_sets_the_owner_and_shares") else {
        return;
    };
    site.alma9(30);
    let mut config = config(site.dir.path());
    let owner = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let member = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    config.routes.push(Route {
        matches: RouteMatch::Vo("dteam".into()),
        owner: Some(owner.into()),
        visibility: Visibility::Shared,
        members: vec![member.into()],
    });
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    let report = publisher.sync(t0(), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    let image = remote_images(&glance, "alma9").pop().unwrap();
    assert_eq!(image.owner.as_deref(), Some(owner));
    assert_eq!(image.visibility, "shared");
    let members = members_of(&g.url(), &image.id);
    assert_eq!(members, [member]);
}
