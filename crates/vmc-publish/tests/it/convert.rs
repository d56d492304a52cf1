//! Formats against a real Glance: an image is converted to the format the cloud wants and
//! the converted file is kept beside the cache with its checksum (and removed once the image
//! is no longer wanted); an OVA's disk is taken out; a file whose format is not the declared
//! one, or that has a backing file, is refused.

use std::path::Path;
use std::process::Command;

use chrono::Duration;
use vmc_cache::store::PublicationState;
use vmc_publish::{ActionKind, Outcome, Publisher};

use crate::common::{Img, config, qcow2, remote_images, sha512_of, start, t0};

fn qemu_img(args: &[&str], dir: &Path) {
    let status = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img {args:?}");
}

#[test]
fn an_image_is_converted_to_the_format_the_cloud_wants_and_kept_beside_the_cache() {
    let Some((_g, site, glance)) = start("an_image_is_converted_to_the_format_the_cloud_wants")
    else {
        return;
    };
    let v1 = site.alma9(20);
    let mut config = config(site.dir.path());
    config.converter.want = Some("raw".into());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    let report = publisher.sync(t0(), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");

    let converted: Vec<_> = std::fs::read_dir(&config.converter.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let raw = converted.iter().find(|n| n.ends_with(".raw")).unwrap();
    let raw_path = config.converter.dir.join(raw);
    assert_eq!(
        std::fs::metadata(&raw_path).unwrap().len(),
        1 << 20,
        "1 MiB raw disk"
    );
    let raw_sha = sha512_of(&raw_path);
    let sum = std::fs::read_to_string(config.converter.dir.join(format!("{raw}.sha512"))).unwrap();
    assert_eq!(sum.trim(), raw_sha);
    let image = remote_images(&glance, "alma9").pop().unwrap();
    assert_eq!(image.hash_value.as_deref(), Some(raw_sha.as_str()));
    assert_eq!(
        image.properties["vmc_sha512"],
        sha512_of(&v1),
        "vmc's id of the image"
    );
    let p = &publisher.publications().unwrap()[0];
    assert_eq!(p.disk_format, "raw");
    assert_eq!(p.file_sha512, raw_sha);
    assert_ne!(p.sha512, raw_sha);

    // A new version: its own converted file; the old one's goes.
    let v2 = qcow2(site.dir.path(), 21);
    site.list(&[Img {
        id: "alma9",
        file: &v2,
        version: "2",
    }]);
    let report = publisher.sync(t0() + Duration::hours(1), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    assert!(
        !raw_path.exists(),
        "the superseded version's converted file is removed"
    );
    let left: Vec<_> = std::fs::read_dir(&config.converter.dir).unwrap().collect();
    assert_eq!(left.len(), 2, "one converted file and its checksum");
}

#[test]
fn an_ova_disk_is_taken_out_and_published() {
    let Some((_g, site, glance)) = start("an_ova_disk_is_taken_out_and_published") else {
        return;
    };
    let dir = site.dir.path();
    let disk = qcow2(dir, 22);
    qemu_img(
        &[
            "convert",
            "-q",
            "-f",
            "qcow2",
            "-O",
            "vmdk",
            disk.to_str().unwrap(),
            "disk1.vmdk",
        ],
        dir,
    );
    std::fs::write(dir.join("appliance.ovf"), "<Envelope/>").unwrap();
    let status = Command::new("tar")
        .args(["-cf", "appliance.ova", "appliance.ovf", "disk1.vmdk"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let ova = dir.join("appliance.ova");
    site.list_as(
        &[Img {
            id: "appliance",
            file: &ova,
            version: "1",
        }],
        "OVA",
    );
    let mut config = config(dir);
    config.converter.want = Some("qcow2".into());
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);
    let report = publisher.sync(t0(), false).unwrap();
    assert_eq!(report.done(ActionKind::Publish), 1, "{report:#?}");
    let p = &publisher.publications().unwrap()[0];
    assert_eq!(p.disk_format, "qcow2");
    let image = remote_images(&glance, "appliance").pop().unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(image.hash_value.as_deref(), Some(p.file_sha512.as_str()));

    // Prepared again (a retried publication): the kept conversion, without taking the disk
    // out of the archive again (nothing is left beside it).
    let converted = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = converted(&config.converter.dir);
    let cached = site.cache_dir.join("appliance");
    let again = config
        .converter
        .prepare(vmc_publish::convert::Source {
            identifier: "appliance",
            path: &cached,
            sha512: &sha512_of(&ova),
            size: std::fs::metadata(&ova).unwrap().len(),
            declared: "ova",
        })
        .unwrap();
    assert_eq!(again.sha512, p.file_sha512);
    assert_eq!(converted(&config.converter.dir), before);
    assert!(
        before.iter().all(|n| !n.ends_with(".partial")),
        "{before:?}"
    );
}

#[test]
fn a_file_that_is_not_the_declared_format_or_has_a_backing_file_is_refused() {
    let Some((_g, site, glance)) =
        start("a_file_that_is_not_the_declared_format_or_has_a_backing_file")
    else {
        return;
    };
    let dir = site.dir.path();
    let config = config(dir);
    let publisher = Publisher::new(&site.store, &site.cache_dir, &glance, &config);

    // Declared raw, but a qcow2 (which could name any file of this host as its backing file).
    let qcow = qcow2(dir, 23);
    site.list_as(
        &[Img {
            id: "liar",
            file: &qcow,
            version: "1",
        }],
        "raw",
    );
    let report = publisher.sync(t0(), false).unwrap();
    let Outcome::Failed(message) = &report.actions[0].outcome else {
        panic!("{report:#?}");
    };
    assert!(
        message.contains("declares raw but qemu-img finds \"qcow2\""),
        "{message}"
    );
    assert!(remote_images(&glance, "liar").is_empty());

    // A qcow2 on top of a backing file.
    let base = qcow2(dir, 24);
    qemu_img(
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            base.to_str().unwrap(),
            "-F",
            "qcow2",
            "overlay.qcow2",
        ],
        dir,
    );
    site.list(&[Img {
        id: "overlay",
        file: &dir.join("overlay.qcow2"),
        version: "1",
    }]);
    let report = publisher.sync(t0() + Duration::minutes(1), false).unwrap();
    let failed: Vec<_> = report
        .actions
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Failed(m) => Some((a.identifier.as_str(), m.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    assert_eq!(failed[0].0, "overlay");
    assert!(failed[0].1.contains("backing file"), "{}", failed[0].1);
    assert!(remote_images(&glance, "overlay").is_empty());
    assert!(
        publisher
            .publications()
            .unwrap()
            .iter()
            .all(|p| p.state != PublicationState::Active)
    );
}
