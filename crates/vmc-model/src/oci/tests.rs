//! Tests of the OCI types: references, digests, the manifest formats, the disk layer and the
//! annotation mapping (with the manifest `oras push --annotation-file` makes for EGI).

#![allow(clippy::unwrap_used)]

use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// The manifest EGI's upload.sh makes with oras 1.x (fields as oras writes them).
fn egi_manifest() -> String {
    format!(
        r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/vnd.unknown.artifact.v1",
  "config": {{"mediaType": "application/vnd.oci.empty.v1+json", "digest": "{D1}", "size": 2, "data": "e30="}},
  "layers": [{{
    "mediaType": "application/x-qemu-disk",
    "digest": "{D2}",
    "size": 1073741824,
    "annotations": {{
      "org.opencontainers.image.title": "ubuntu-22.04.qcow2",
      "org.openstack.glance.os_distro": "ubuntu",
      "org.openstack.glance.os_version": "22.04",
      "org.openstack.glance.os_type": "linux",
      "org.openstack.glance.architecture": "x86_64",
      "org.openstack.glance.disk_format": "qcow2",
      "org.openstack.glance.container_format": "bare",
      "org.openstack.glance.min_ram": "2048",
      "eu.egi.cloud.description": "EGI Ubuntu 22.04 image",
      "eu.egi.cloud.tag": "2025.05.01",
      "x-site.custom": "kept"
    }}
  }}],
  "annotations": {{
    "org.opencontainers.image.revision": "abc123",
    "org.opencontainers.image.source": "https://github.com/EGI-Federation/fedcloud-vmi-templates",
    "org.opencontainers.image.created": "2025-05-01T10:00:00Z"
  }}
}}"#
    )
}

fn image(bytes: &str) -> ImageManifest {
    match parse_manifest(bytes.as_bytes(), None).unwrap() {
        Manifest::Image(m) => *m,
        Manifest::Index(_) => panic!("not an image manifest"),
    }
}

#[test]
fn references_parse_with_and_without_repository_tag_and_digest() {
    let r = Reference::parse("oci://registry.egi.eu/vo.access.egi.eu").unwrap();
    assert_eq!(
        (r.registry.as_str(), r.project.as_str(), r.repository, r.tag),
        ("registry.egi.eu", "vo.access.egi.eu", None, None)
    );
    let r = Reference::parse("oci://Registry.EGI.eu:8443/egi_vm_images/ubuntu-22.04:2025.05.01")
        .unwrap();
    assert_eq!(r.registry, "registry.egi.eu:8443");
    assert_eq!(r.name().as_deref(), Some("egi_vm_images/ubuntu-22.04"));
    assert_eq!(r.tag.as_deref(), Some("2025.05.01"));
    assert_eq!(
        r.to_string(),
        "oci://registry.egi.eu:8443/egi_vm_images/ubuntu-22.04:2025.05.01"
    );
    let r = Reference::parse(&format!("oci://127.0.0.1:5000/p/a/b@{D1}")).unwrap();
    assert_eq!(r.repository.as_deref(), Some("a/b"));
    assert_eq!(r.digest.unwrap().to_string(), D1);
    let r = Reference::parse("127.0.0.1:5000/p/r").unwrap();
    assert_eq!(r.registry, "127.0.0.1:5000");
    assert!(Reference::parse("oci://[::1]:5000/p/r:t").is_ok());
}

#[test]
fn bad_references_are_refused_with_the_reason() {
    for (text, reason) in [
        ("https://registry.egi.eu/p", "scheme"),
        ("oci://registry.egi.eu", "no project"),
        ("oci://registry.egi.eu/Upper/x", "lowercase"),
        ("oci://registry.egi.eu/p//x", "lowercase"),
        ("oci://registry.egi.eu/p/x:-bad", "tag"),
        ("oci://registry.egi.eu/p:tag", "needs a repository"),
        ("oci://reg istry/p/x", "registry"),
        ("oci://registry:0/p/x", "registry"),
        ("oci://registry:99999/p/x", "registry"),
        ("oci://registry/p/x@sha256:abc", "digest"),
        ("oci://registry/p/x..y", "lowercase"),
    ] {
        let err = Reference::parse(text).unwrap_err();
        assert!(
            matches!(err, OciError::BadReference { .. }),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{text}: {err}");
    }
    assert!(is_name_component("a__b-c.d---e"));
    assert!(!is_name_component("a___b"));
    assert!(!is_name_component("a-"));
}

#[test]
fn digests_are_sha256_or_sha512_in_lowercase_hex() {
    let d: Digest = D1.parse().unwrap();
    assert_eq!(d.algorithm(), DigestAlgorithm::Sha256);
    assert_eq!(d.to_string(), D1);
    assert!(
        format!("sha512:{}", "ab".repeat(64))
            .parse::<Digest>()
            .is_ok()
    );
    for bad in [
        "sha256:ABCD111111111111111111111111111111111111111111111111111111111111",
        "sha256:111",
        "md5:11111111111111111111111111111111",
        "1111111111111111111111111111111111111111111111111111111111111111",
    ] {
        assert!(
            matches!(bad.parse::<Digest>(), Err(OciError::BadDigest { .. })),
            "{bad}"
        );
    }
}

#[test]
fn egi_oras_manifest_gives_the_qcow2_layer_and_the_list_fields() {
    let manifest = image(&egi_manifest());
    assert_eq!(manifest.kind, ManifestKind::OciImage);
    assert_eq!(
        manifest.artifact_type.as_deref(),
        Some("application/vnd.unknown.artifact.v1")
    );
    let layer = manifest.disk_layer().unwrap();
    assert_eq!(layer.format, DiskFormat::Qcow2);
    assert_eq!(layer.descriptor.digest.to_string(), D2);
    assert_eq!(layer.descriptor.size, 1 << 30);
    let meta = ImageMetadata::from_manifest(&manifest, &layer, Some("vo.access.egi.eu"));
    assert_eq!(meta.os.as_deref(), Some("ubuntu"));
    assert_eq!(meta.os_version.as_deref(), Some("22.04"));
    assert_eq!(meta.arch.as_deref(), Some("x86_64"));
    assert_eq!(meta.min_ram_mib, Some(2048));
    assert_eq!(meta.description.as_deref(), Some("EGI Ubuntu 22.04 image"));
    assert_eq!(meta.version.as_deref(), Some("2025.05.01"));
    assert_eq!(meta.revision.as_deref(), Some("abc123"));
    assert_eq!(meta.created.as_deref(), Some("2025-05-01T10:00:00Z"));
    assert_eq!(meta.vo.as_deref(), Some("vo.access.egi.eu"));
    assert_eq!(
        meta.glance.get("os_type").map(String::as_str),
        Some("linux")
    );
    assert_eq!(meta.glance.len(), 7);
    // Unmapped annotations are kept verbatim, from the layer and the manifest.
    assert_eq!(
        meta.annotations.get("x-site.custom").map(String::as_str),
        Some("kept")
    );
    assert!(
        meta.annotations
            .contains_key("org.opencontainers.image.source")
    );
    let keys = meta.list_image_keys(layer.format);
    assert_eq!(keys["hv:format"], "qcow2");
    assert_eq!(keys["sl:os"], "ubuntu");
    assert_eq!(keys["sl:osversion"], "22.04");
    assert_eq!(keys["sl:arch"], "x86_64");
    assert_eq!(keys["hv:ram_minimum"], 2048);
    assert_eq!(keys["dc:description"], "EGI Ubuntu 22.04 image");
}

#[test]
fn layer_annotations_win_over_the_manifests_but_not_for_the_title() {
    let text = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
        "layers":[{{"mediaType":"application/x-qemu-disk","digest":"{D2}","size":5,
          "annotations":{{"org.opencontainers.image.title":"f.qcow2","org.openstack.glance.os_distro":"alma"}}}}],
        "annotations":{{"org.opencontainers.image.title":"Alma 9","org.openstack.glance.os_distro":"centos"}}}}"#
    );
    let manifest = image(&text);
    let layer = manifest.disk_layer().unwrap();
    let meta = ImageMetadata::from_manifest(&manifest, &layer, None);
    assert_eq!(meta.os.as_deref(), Some("alma"));
    assert_eq!(meta.title.as_deref(), Some("Alma 9"));
    assert_eq!(meta.annotations[ANNOTATION_TITLE], "Alma 9");
}

fn one_layer(media_type: &str, annotations: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
        "layers":[{{"mediaType":"{media_type}","digest":"{D2}","size":5,"annotations":{{{annotations}}}}}]}}"#
    )
}

#[test]
fn disk_formats_come_from_the_media_type_then_disk_format_then_file_name() {
    for (media_type, annotations, format) in [
        ("application/x-qemu-disk", "", DiskFormat::Qcow2),
        ("application/x-raw-disk-image", "", DiskFormat::Raw),
        ("application/x-vmdk", "", DiskFormat::Vmdk),
        ("application/x-ova", "", DiskFormat::Ova),
        (
            "application/octet-stream",
            r#""org.openstack.glance.disk_format":"vmdk""#,
            DiskFormat::Vmdk,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar",
            r#""org.opencontainers.image.title":"disk.img""#,
            DiskFormat::Raw,
        ),
        (
            "application/octet-stream",
            r#""org.opencontainers.image.title":"appliance.ova""#,
            DiskFormat::Ova,
        ),
    ] {
        let layer = image(&one_layer(media_type, annotations))
            .disk_layer()
            .unwrap();
        assert_eq!(layer.format, format, "{media_type} {annotations}");
    }
}

#[test]
fn manifests_without_one_disk_layer_are_refused() {
    let none = image(&one_layer(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "",
    ));
    let err = none.disk_layer().unwrap_err();
    assert!(matches!(err, OciError::NoDiskLayer { .. }), "{err:?}");
    assert!(err.to_string().contains("tar+gzip"), "{err}");
    let unknown = image(&one_layer(
        "application/octet-stream",
        r#""org.opencontainers.image.title":"notes.txt""#,
    ));
    assert!(matches!(
        unknown.disk_layer(),
        Err(OciError::NoDiskLayer { .. })
    ));
    let two = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
        "layers":[{{"mediaType":"application/x-qemu-disk","digest":"{D2}","size":5}},
                  {{"mediaType":"application/x-vmdk","digest":"{D3}","size":5}}]}}"#
    );
    assert_eq!(
        image(&two).disk_layer(),
        Err(OciError::SeveralDiskLayers { count: 2 })
    );
    let conflict = image(&one_layer(
        "application/x-qemu-disk",
        r#""org.openstack.glance.disk_format":"raw""#,
    ));
    assert!(matches!(
        conflict.disk_layer(),
        Err(OciError::DiskFormatConflict { .. })
    ));
}

#[test]
fn docker_v2_artifact_manifest_and_indexes_parse() {
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
        "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D1}","size":7}},
        "layers":[{{"mediaType":"application/octet-stream","digest":"{D2}","size":9,
          "annotations":{{"org.openstack.glance.disk_format":"raw"}}}}]}}"#
    );
    let m = image(&docker);
    assert_eq!(m.kind, ManifestKind::DockerV2);
    assert_eq!(m.artifact_type, None);
    assert_eq!(m.disk_layer().unwrap().format, DiskFormat::Raw);

    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json",
        "artifactType":"application/vnd.egi.vm-image","blobs":[{{"mediaType":"application/x-qemu-disk","digest":"{D2}","size":3}}],
        "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D3}","size":100}}}}"#
    );
    let m = image(&artifact);
    assert_eq!(m.kind, ManifestKind::OciArtifact);
    assert!(m.config.is_none());
    assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), D3);
    assert_eq!(m.disk_layer().unwrap().descriptor.size, 3);

    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
        "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":10,
          "platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    match parse_manifest(index.as_bytes(), Some(MEDIA_TYPE_OCI_INDEX)).unwrap() {
        Manifest::Index(i) => {
            assert!(!i.docker);
            assert_eq!(
                i.manifests[0].platform,
                Some(("amd64".into(), "linux".into()))
            );
        }
        Manifest::Image(_) => panic!("not an index"),
    }
    let list = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{D1}","size":10}}]}}"#
    );
    match parse_manifest(list.as_bytes(), Some(MEDIA_TYPE_DOCKER_LIST)).unwrap() {
        Manifest::Index(i) => assert!(i.docker),
        Manifest::Image(_) => panic!("not an index"),
    }
}

#[test]
fn descriptors_pointing_outside_the_repository_are_refused() {
    let text = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
        "layers":[{{"mediaType":"application/x-qemu-disk","digest":"{D2}","size":5,
          "urls":["https://elsewhere.example/disk.qcow2"]}}]}}"#
    );
    let err = parse_manifest(text.as_bytes(), None).unwrap_err();
    assert!(
        matches!(&err, OciError::ForeignDescriptor { field, .. } if field == "layers[0]"),
        "{err:?}"
    );
    assert!(err.to_string().contains("elsewhere.example"), "{err}");
}

#[test]
fn malformed_manifests_are_refused_with_the_reason() {
    let cases = [
        ("not json".to_owned(), "not valid JSON"),
        (r#"{"schemaVersion":1}"#.to_owned(), "schemaVersion"),
        (
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#
                .to_owned(),
            "no config",
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":-1}},"layers":[]}}"#
            ),
            "size",
        ),
        (
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#
                .to_owned(),
            "config",
        ),
        (
            r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#.to_owned(),
            "not supported",
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":1}},"layers":[],"annotations":{{"a":1}}}}"#
            ),
            "not valid JSON",
        ),
    ];
    for (text, reason) in cases {
        let err = parse_manifest(text.as_bytes(), None).unwrap_err();
        assert!(err.to_string().contains(reason), "{text}: {err}");
    }
    // The document's mediaType and the Content-Type must agree.
    let err =
        parse_manifest(egi_manifest().as_bytes(), Some(MEDIA_TYPE_DOCKER_MANIFEST)).unwrap_err();
    assert!(err.to_string().contains("Content-Type"), "{err}");
    let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert!(matches!(
        parse_manifest(&huge, None),
        Err(OciError::ManifestTooLarge { .. })
    ));
}

#[test]
fn allow_rules_match_host_and_repository_patterns() {
    let project = AllowRule::parse("oci://registry.egi.eu/vo.access.egi.eu/**").unwrap();
    assert!(project.allows("registry.egi.eu", "vo.access.egi.eu/ubuntu"));
    assert!(project.allows("Registry.EGI.eu", "vo.access.egi.eu/images/alma"));
    assert!(!project.allows("registry.egi.eu", "vo.access.egi.eu"));
    assert!(!project.allows("registry.egi.eu", "other/ubuntu"));
    assert!(!project.allows("registry.egi.eu:443", "vo.access.egi.eu/ubuntu"));
    assert!(!project.allows("evil.example", "vo.access.egi.eu/ubuntu"));
    let one = AllowRule::parse("127.0.0.1:5000/*/ubuntu").unwrap();
    assert!(one.allows("127.0.0.1:5000", "vo/ubuntu"));
    assert!(!one.allows("127.0.0.1:5000", "vo/alma"));
    assert!(!one.allows("127.0.0.1:5000", "vo/ubuntu/extra"));
    assert_eq!(one.to_string(), "127.0.0.1:5000/*/ubuntu");

    let whole = Reference::parse("oci://registry.egi.eu/vo.access.egi.eu").unwrap();
    assert!(project.allows_reference(&whole));
    let other = Reference::parse("oci://registry.egi.eu/other").unwrap();
    assert!(!project.allows_reference(&other));
    let tagged = Reference::parse("oci://registry.egi.eu/vo.access.egi.eu/ubuntu:22.04").unwrap();
    assert!(project.allows_reference(&tagged));
    assert!(!one.allows_reference(&tagged));

    for (bad, reason) in [
        ("registry.egi.eu", "no repository pattern"),
        ("https://registry.egi.eu/x", "scheme"),
        ("registry.egi.eu/**/x", "final **"),
        ("registry.egi.eu/Upper", "final **"),
        ("bad host/x", "registry"),
    ] {
        let err = AllowRule::parse(bad).unwrap_err();
        assert!(matches!(err, OciError::BadAllowRule { .. }), "{bad}");
        assert!(err.to_string().contains(reason), "{bad}: {err}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}((\\.|_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
    }

    proptest! {
        /// Whatever a reference holds, its `oci://` form parses back to it.
        #[test]
        fn references_round_trip_through_their_text(
            host in "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z]{2,5}){0,2}",
            port in proptest::option::of(1u16..),
            project in component(),
            path in proptest::collection::vec(component(), 0..3),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9._-]{0,20}"),
        ) {
            let registry = match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            let repository = (!path.is_empty()).then(|| path.join("/"));
            let tag = tag.filter(|_| repository.is_some());
            let reference = Reference { registry, project, repository, tag, digest: None };
            prop_assert_eq!(Reference::parse(&reference.to_string()).unwrap(), reference);
        }

        /// The parser never panics, and what it accepts prints back to something it accepts
        /// the same way.
        #[test]
        fn any_text_parses_or_is_refused_and_accepted_text_is_stable(text in "\\PC{0,60}") {
            if let Ok(r) = Reference::parse(&text) {
                prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
            }
            let _ = parse_manifest(text.as_bytes(), None);
        }
    }
}
