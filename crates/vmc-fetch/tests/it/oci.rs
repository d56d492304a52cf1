//! The OCI registry client against a real `docker-registry` (distribution 2.8) on 127.0.0.1,
//! anonymous and behind the bearer-token flow, and against the loopback test server posing as
//! a registry that misbehaves (wrong digests, foreign layers, endless or oversized bodies).
//! The real-registry tests are skipped, saying so, when the binary is absent, and fail then
//! under `CI=true`.

use vmc_fetch::oci::{ReferrersSource, Registry, RegistryOptions};
use vmc_fetch::{Client, Credentials, FetchError, NoReporter};
use vmc_model::OciError;
use vmc_model::oci::{Descriptor, Digest, DiskFormat, Manifest, Reference};
use vmc_testkit::registry::{self as testreg, Account, DiskImage, sha256_digest};
use vmc_testkit::server::{Fault, Route, TestServer};

use crate::{body, client};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn anonymous() -> Option<testreg::Registry> {
    testreg::or_skip(testreg::Registry::start(), ci())
}

/// A registry behind the bearer flow whose token endpoint knows `username`/`password`.
fn token_registry(
    username: &str,
    password: &str,
    anonymous_pull: bool,
) -> Option<(testreg::Registry, Account)> {
    let account = Account {
        username: username.into(),
        password: password.into(),
    };
    let registry = testreg::or_skip(
        testreg::Registry::start_with_token(account.clone(), anonymous_pull),
        ci(),
    )?;
    Some((registry, account))
}

fn basic(account: &Account) -> Credentials {
    Credentials::Basic {
        username: account.username.clone(),
        password: account.password.clone(),
    }
}

fn plain(credentials: Option<Credentials>) -> RegistryOptions {
    RegistryOptions {
        plain_http: true,
        credentials,
        ..RegistryOptions::default()
    }
}

fn push(registry: &testreg::Registry, repository: &str, tag: &str, data: &[u8]) -> String {
    registry
        .push_disk_image(&DiskImage {
            repository,
            tag,
            data,
            file_name: "disk.qcow2",
            layer_media_type: "application/x-qemu-disk",
            layer_annotations: &[
                ("org.openstack.glance.os_distro", "ubuntu"),
                ("org.openstack.glance.disk_format", "qcow2"),
            ],
            manifest_annotations: &[("org.opencontainers.image.revision", "r1")],
        })
        .digest
}

fn image_layer(manifest: &Manifest) -> Descriptor {
    match manifest {
        Manifest::Image(m) => m.disk_layer().unwrap().descriptor,
        Manifest::Index(_) => panic!("an index"),
    }
}

#[test]
fn registry_tag_manifest_and_layer_are_fetched_and_verified() {
    let Some(registry) = anonymous() else {
        return;
    };
    let data = body(3 << 20, 7);
    let digest = push(&registry, "vo.example/ubuntu", "22.04", &data);
    let reference = Reference::parse(&format!(
        "oci://{}/vo.example/ubuntu:22.04",
        registry.host()
    ))
    .unwrap();
    let client = client(0);
    let oci = Registry::for_reference(&client, &reference, plain(None)).unwrap();
    oci.ping().unwrap();
    let name = reference.name().unwrap();
    assert_eq!(oci.tags(&name).unwrap(), ["22.04"]);
    let fetched = oci.manifest_for_tag(&name, "22.04").unwrap();
    assert_eq!(fetched.digest.to_string(), digest);
    let Manifest::Image(manifest) = &fetched.manifest else {
        panic!("an index");
    };
    let layer = manifest.disk_layer().unwrap();
    assert_eq!(layer.format, DiskFormat::Qcow2);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("partial").join("img");
    let outcome = oci
        .download_blob(&name, &layer.descriptor, &dest, &NoReporter)
        .unwrap();
    assert_eq!(outcome.digest.to_string(), sha256_digest(&data));
    assert_eq!(outcome.size, data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!vmc_fetch::state_path(&dest).exists());
}

/// distribution 2.8 ignores `n` on tag lists (it sends every tag, no `Link`): a small page
/// size still gives every tag. Following `Link` pages is tested on the test server below.
#[test]
fn registry_tag_list_with_a_small_page_size_gives_every_tag() {
    let Some(registry) = anonymous() else {
        return;
    };
    let mut expected = Vec::new();
    for i in 0..5 {
        let tag = format!("v{i}");
        push(
            &registry,
            "vo.example/paged",
            &tag,
            format!("disk {i}").as_bytes(),
        );
        expected.push(tag);
    }
    let client = client(0);
    let oci = Registry::new(
        &client,
        &registry.host(),
        RegistryOptions {
            page_size: 2,
            ..plain(None)
        },
    )
    .unwrap();
    let mut tags = oci.tags("vo.example/paged").unwrap();
    tags.sort();
    assert_eq!(tags, expected);
}

#[test]
fn registry_tag_moving_gives_a_new_digest_and_a_deleted_tag_is_gone() {
    let Some(registry) = anonymous() else {
        return;
    };
    let client = client(0);
    let oci = Registry::new(&client, &registry.host(), plain(None)).unwrap();
    let first = push(&registry, "vo.example/moving", "latest", b"version one");
    assert_eq!(
        oci.resolve_tag("vo.example/moving", "latest")
            .unwrap()
            .to_string(),
        first
    );
    let second = push(&registry, "vo.example/moving", "latest", b"version two");
    assert_ne!(first, second);
    assert_eq!(
        oci.resolve_tag("vo.example/moving", "latest")
            .unwrap()
            .to_string(),
        second
    );
    registry.delete_manifest("vo.example/moving", &second);
    let err = oci.resolve_tag("vo.example/moving", "latest").unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 404, .. }),
        "{err:?}"
    );
    assert!(oci.tags("vo.example/moving").unwrap().is_empty());
}

#[test]
fn bearer_flow_gets_a_scoped_token_with_the_robot_account_and_reuses_it() {
    let Some((registry, account)) =
        token_registry("robot$vo.example+sync", "robot-secret-4711", false)
    else {
        return;
    };
    let data = body(1 << 20, 3);
    push(&registry, "vo.example/alma", "9", &data);
    let client = client(0);
    let oci = Registry::new(&client, &registry.host(), plain(Some(basic(&account)))).unwrap();
    assert_eq!(oci.tags("vo.example/alma").unwrap(), ["9"]);
    let fetched = oci.manifest_for_tag("vo.example/alma", "9").unwrap();
    let layer = image_layer(&fetched.manifest);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    oci.download_blob("vo.example/alma", &layer, &dest, &NoReporter)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let tokens = registry.token_server().unwrap().request_log();
    assert_eq!(
        tokens.len(),
        1,
        "one token for the scope, reused: {tokens:?}"
    );
    assert_eq!(tokens[0].scopes, ["repository:vo.example/alma:pull"]);
    assert_eq!(tokens[0].service.as_deref(), Some(testreg::TOKEN_SERVICE));
    assert_eq!(tokens[0].authenticated, Some(true));
    assert!(!format!("{oci:?}").contains("robot-secret-4711"));

    // Without credentials, and with a wrong password, there is no token: a clear error that
    // does not show the password.
    for options in [
        plain(None),
        plain(Some(Credentials::Basic {
            username: account.username.clone(),
            password: "wrong-password-0815".into(),
        })),
    ] {
        let oci = Registry::new(&client, &registry.host(), options).unwrap();
        let err = oci.tags("vo.example/alma").unwrap_err();
        assert!(
            matches!(err, FetchError::Status { code: 401, .. }),
            "{err:?}"
        );
        let text = format!("{err} {err:?}");
        assert!(text.contains("/token"), "{text}");
        assert!(!text.contains("wrong-password-0815"), "{text}");
    }
}

#[test]
fn bearer_flow_without_credentials_works_for_anonymous_pull() {
    let Some((registry, _)) = token_registry("robot", "pw", true) else {
        return;
    };
    push(&registry, "vo.example/public", "1", b"public disk");
    let client = client(0);
    let oci = Registry::new(&client, &registry.host(), plain(None)).unwrap();
    let fetched = oci.manifest_for_tag("vo.example/public", "1").unwrap();
    assert!(matches!(fetched.manifest, Manifest::Image(_)));
    let log = registry.token_server().unwrap().request_log();
    assert_eq!(log[0].authenticated, None);
}

// --- the test server posing as a misbehaving registry ----------------------------------------

/// A manifest with one qcow2 layer of `layer` (its digest and size, unless overridden).
fn manifest_for(layer_digest: &str, layer_size: u64, extra: &str) -> Vec<u8> {
    let config = sha256_digest(b"{}");
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},
        "layers":[{{"mediaType":"application/x-qemu-disk","digest":"{layer_digest}","size":{layer_size}{extra}}}]}}"#
    )
    .into_bytes()
}

fn fake(server: &TestServer) -> Registry {
    fake_with(server, None)
}

fn fake_with(server: &TestServer, credentials: Option<Credentials>) -> Registry {
    let client = client(0);
    Registry::new(&client, &server.addr().to_string(), plain(credentials)).unwrap()
}

fn serve_manifest(server: &TestServer, digest: &str, bytes: Vec<u8>) {
    server.add(
        &format!("/v2/p/r/manifests/{digest}"),
        Route::new(bytes).header("Docker-Content-Digest", digest),
    );
}

#[test]
fn a_registry_serving_other_bytes_than_the_digest_asked_for_is_refused() {
    let server = TestServer::start();
    let good = manifest_for(&sha256_digest(b"x"), 1, "");
    let other = manifest_for(&sha256_digest(b"y"), 1, "");
    let asked = sha256_digest(&good);
    server.add(
        &format!("/v2/p/r/manifests/{asked}"),
        Route::new(other.clone()),
    );
    let err = fake(&server)
        .manifest("p/r", &asked.parse().unwrap())
        .unwrap_err();
    match &err {
        FetchError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, asked);
            assert_eq!(*actual, sha256_digest(&other));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), vmc_model::ErrorCode::ChecksumMismatch);
    assert!(err.to_string().contains(&asked), "{err}");

    // A tag whose Docker-Content-Digest is not the digest of what the GET serves.
    server.add(
        "/v2/p/r/manifests/t",
        Route::new(other.clone()).header("Docker-Content-Digest", &asked),
    );
    let server_digest = fake(&server).resolve_tag("p/r", "t");
    // HEAD gives the announced digest; fetching by it then shows the mismatch.
    let digest = server_digest.unwrap();
    assert_eq!(digest.to_string(), asked);
    assert!(matches!(
        fake(&server).manifest("p/r", &digest),
        Err(FetchError::DigestMismatch { .. })
    ));
}

#[test]
fn a_manifest_pointing_outside_the_repository_is_refused() {
    let server = TestServer::start();
    let bytes = manifest_for(
        &sha256_digest(b"x"),
        1,
        r#","urls":["https://elsewhere.example/disk.qcow2"]"#,
    );
    let digest = sha256_digest(&bytes);
    serve_manifest(&server, &digest, bytes);
    let err = fake(&server)
        .manifest("p/r", &digest.parse().unwrap())
        .unwrap_err();
    match &err {
        FetchError::Manifest {
            source: OciError::ForeignDescriptor { urls, .. },
            ..
        } => assert_eq!(urls, &["https://elsewhere.example/disk.qcow2"]),
        other => panic!("{other:?}"),
    }
}

fn layer(data: &[u8]) -> Descriptor {
    let bytes = manifest_for(&sha256_digest(data), data.len() as u64, "");
    match vmc_model::oci::parse_manifest(&bytes, None).unwrap() {
        Manifest::Image(m) => m.disk_layer().unwrap().descriptor,
        Manifest::Index(_) => unreachable!(),
    }
}

/// Serves `route` as the blob of `descriptor`, downloads it, and returns the refusal after
/// checking that neither the partial file nor its state is left.
fn refused_blob(descriptor: &Descriptor, route: Route) -> FetchError {
    let server = TestServer::start();
    server.add(&format!("/v2/p/r/blobs/{}", descriptor.digest), route);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    let err = fake(&server)
        .download_blob("p/r", descriptor, &dest, &NoReporter)
        .unwrap_err();
    assert!(!dest.exists(), "partial file left");
    assert!(!vmc_fetch::state_path(&dest).exists(), "state file left");
    err
}

#[test]
fn an_endless_layer_body_is_refused_after_the_declared_size() {
    let data = body(300_000, 5);
    let err = refused_blob(&layer(&data), Route::new(data).fault(Fault::EndlessBody));
    assert!(
        matches!(
            err,
            FetchError::SizeMismatch {
                expected: 300_000,
                actual: 300_001,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_layer_over_its_declared_size_is_refused_before_any_byte_is_written() {
    let data = body(200_000, 9);
    let err = refused_blob(&layer(&data[..100_000]), Route::new(data));
    assert!(
        matches!(
            err,
            FetchError::SizeMismatch {
                expected: 100_000,
                actual: 200_000,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_layer_with_another_digest_is_refused_and_deleted() {
    let data = body(150_000, 1);
    let mut wrong = data.clone();
    wrong[77_777] ^= 1;
    let err = refused_blob(&layer(&data), Route::new(wrong));
    assert!(
        matches!(
            err,
            FetchError::ChecksumMismatch {
                algorithm: vmc_model::oci::DigestAlgorithm::Sha256,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("sha256 of "), "{err}");
}

#[test]
fn an_interrupted_layer_download_resumes_where_it_stopped() {
    let server = TestServer::start();
    let data = body(1_000_000, 4);
    let descriptor = layer(&data);
    let path = format!("/v2/p/r/blobs/{}", descriptor.digest);
    // The HEAD and the first GET are requests 0 and 1: the GET is reset after 400 kB.
    server.add(
        &path,
        Route::new(data.clone())
            .etag("\"blob\"")
            .fault_for(Fault::ResetAt(400_000), 2),
    );
    let client = client(2);
    let oci = Registry::new(&client, &server.addr().to_string(), plain(None)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    let outcome = oci
        .download_blob("p/r", &descriptor, &dest, &NoReporter)
        .unwrap();
    assert_eq!(outcome.attempts, 2);
    assert!(outcome.resumed_from > 0, "{outcome:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let last = server.last_request(&path).unwrap();
    assert!(
        last.header("range").is_some(),
        "the retry asked for the rest"
    );
}

#[test]
fn an_endless_manifest_or_tag_list_is_cut_at_the_limit() {
    let server = TestServer::start();
    let digest: Digest = sha256_digest(b"m").parse().unwrap();
    server.add(
        &format!("/v2/p/r/manifests/{digest}"),
        Route::new(vec![b' '; 1000]).fault(Fault::EndlessBody),
    );
    server.add(
        "/v2/p/r/tags/list",
        Route::new(vec![b' '; 1000]).fault(Fault::EndlessBody),
    );
    let err = fake(&server).manifest("p/r", &digest).unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
    let err = fake(&server).tags("p/r").unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
}

#[test]
fn basic_challenges_are_answered_with_the_configured_credentials_only() {
    let server = TestServer::start();
    server.add(
        "/v2/p/r/tags/list",
        Route::new(&br#"{"name":"p/r","tags":["a","b"]}"#[..]).auth(
            vmc_testkit::server::Auth::Basic {
                username: "user".into(),
                password: "basic-secret-99".into(),
            },
        ),
    );
    let oci = fake_with(
        &server,
        Some(Credentials::Basic {
            username: "user".into(),
            password: "basic-secret-99".into(),
        }),
    );
    assert_eq!(oci.tags("p/r").unwrap(), ["a", "b"]);
    let err = fake(&server).tags("p/r").unwrap_err();
    assert!(matches!(err, FetchError::AuthChallenge { .. }), "{err:?}");
    assert!(err.to_string().contains("Basic"), "{err}");
}

#[test]
fn credentials_are_never_sent_to_a_plain_http_realm_elsewhere() {
    let server = TestServer::start();
    server.add(
        "/v2/p/r/tags/list",
        Route::new(Vec::new()).status(401).header(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.example.org/token",service="s",scope="repository:p/r:pull""#,
        ),
    );
    let oci = fake_with(
        &server,
        Some(Credentials::Basic {
            username: "u".into(),
            password: "realm-secret".into(),
        }),
    );
    let err = oci.tags("p/r").unwrap_err();
    assert!(matches!(err, FetchError::InsecureRealm { .. }), "{err:?}");
    assert!(!err.to_string().contains("realm-secret"));
}

#[test]
fn plain_http_is_refused_for_registries_off_loopback() {
    let client: Client = client(0);
    let err = Registry::new(&client, "registry.egi.eu", plain(None)).unwrap_err();
    assert!(
        matches!(err, FetchError::PlainHttpRefused { .. }),
        "{err:?}"
    );
    assert!(Registry::new(&client, "registry.egi.eu", RegistryOptions::default()).is_ok());
}

#[test]
fn tag_list_pages_elsewhere_or_in_a_loop_are_refused() {
    let server = TestServer::start();
    server.add(
        "/v2/p/r/tags/list",
        Route::new(&br#"{"name":"p/r","tags":["a"]}"#[..])
            .header("Link", r#"</v2/p/r/tags/list?n=1&last=a>; rel="next""#),
    );
    let err = fake(&server).tags("p/r").unwrap_err();
    assert!(err.to_string().contains("repeats"), "{err}");
    server.replace(
        "/v2/p/r/tags/list",
        Route::new(&br#"{"name":"p/r","tags":["a"]}"#[..]).header(
            "Link",
            r#"<https://evil.example/v2/p/r/tags/list?last=a>; rel="next""#,
        ),
    );
    let err = fake(&server).tags("p/r").unwrap_err();
    assert!(err.to_string().contains("another origin"), "{err}");
    server.replace(
        "/v2/p/r/tags/list",
        Route::new(&br#"{"name":"q/other","tags":["a"]}"#[..]),
    );
    let err = fake(&server).tags("p/r").unwrap_err();
    assert!(err.to_string().contains("does not name"), "{err}");
}

#[test]
fn tag_list_pages_are_followed_by_their_link() {
    let server = TestServer::start();
    server.add(
        "/v2/p/r/tags/list",
        Route::new(&br#"{"name":"p/r","tags":["a","b"]}"#[..])
            .header("Link", r#"</v2/p/r/tags/page2?n=2&last=b>; rel="next""#),
    );
    server.add(
        "/v2/p/r/tags/page2",
        Route::new(&br#"{"name":"p/r","tags":["c"]}"#[..]),
    );
    assert_eq!(fake(&server).tags("p/r").unwrap(), ["a", "b", "c"]);
    assert_eq!(server.requests("/v2/p/r/tags/page2"), 1);
    let first = server.last_request("/v2/p/r/tags/list").unwrap();
    assert!(first.target.ends_with("?n=1000"), "{}", first.target);
}

#[test]
fn registry_catalog_lists_the_repositories_of_a_project() {
    let Some((registry, account)) = token_registry("robot", "catalog-pw", false) else {
        return;
    };
    for repository in ["vo.a/ubuntu", "vo.a/alma", "vo.b/debian"] {
        push(&registry, repository, "1", repository.as_bytes());
    }
    let client = client(0);
    let oci = Registry::new(&client, &registry.host(), plain(Some(basic(&account)))).unwrap();
    let mut names = oci.repositories("vo.a").unwrap();
    names.sort();
    assert_eq!(names, ["vo.a/alma", "vo.a/ubuntu"]);
    let scopes: Vec<Vec<String>> = registry
        .token_server()
        .unwrap()
        .request_log()
        .into_iter()
        .map(|r| r.scopes)
        .collect();
    assert_eq!(scopes, [vec!["registry:catalog:*".to_owned()]]);
}

#[test]
fn harbor_project_api_is_used_where_the_registry_has_it() {
    let server = TestServer::start();
    server.add(
        "/api/v2.0/projects/vo.access.egi.eu/repositories",
        Route::new(
            &br#"[{"id":1,"name":"vo.access.egi.eu/ubuntu","artifact_count":2},
                  {"id":2,"name":"vo.access.egi.eu/alma","artifact_count":1}]"#[..],
        ),
    );
    assert_eq!(
        fake(&server).repositories("vo.access.egi.eu").unwrap(),
        ["vo.access.egi.eu/ubuntu", "vo.access.egi.eu/alma"]
    );
    let asked = server
        .last_request("/api/v2.0/projects/vo.access.egi.eu/repositories")
        .unwrap();
    assert!(
        asked.target.contains("page=1&page_size=1000"),
        "{}",
        asked.target
    );
    assert_eq!(server.requests("/v2/_catalog"), 0);
    // A repository of another project in the answer is refused.
    server.replace(
        "/api/v2.0/projects/vo.access.egi.eu/repositories",
        Route::new(&br#"[{"name":"other/ubuntu"}]"#[..]),
    );
    let err = fake(&server).repositories("vo.access.egi.eu").unwrap_err();
    assert!(err.to_string().contains("not a named repository"), "{err}");
}

#[test]
fn referrers_come_from_the_tag_schema_on_distribution_2_8() {
    let Some(registry) = anonymous() else {
        return;
    };
    let image = push(&registry, "vo.example/signed", "1", b"signed disk");
    let image_digest: Digest = image.parse().unwrap();
    let client = client(0);
    let oci = Registry::new(&client, &registry.host(), plain(None)).unwrap();
    let none = oci.referrers("vo.example/signed", &image_digest).unwrap();
    assert_eq!(none.source, ReferrersSource::None);
    assert!(none.manifests.is_empty());

    // A cosign-style signature: a manifest whose subject is the image, listed in the index
    // tagged sha256-<hex>.
    let config = registry.push_blob("vo.example/signed", b"{}");
    let payload = registry.push_blob("vo.example/signed", b"signature payload");
    let signature = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json",
        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},
        "layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{payload}","size":17}}],
        "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{image}","size":1}}}}"#
    );
    let signature_digest = registry.push_manifest(
        "vo.example/signed",
        &sha256_digest(signature.as_bytes()),
        testreg::OCI_MANIFEST_MEDIA_TYPE,
        signature.as_bytes(),
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
        "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{signature_digest}",
          "size":{},"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}}]}}"#,
        signature.len()
    );
    registry.push_manifest(
        "vo.example/signed",
        &format!("sha256-{}", image_digest.hex()),
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    );
    let found = oci.referrers("vo.example/signed", &image_digest).unwrap();
    assert_eq!(found.source, ReferrersSource::TagSchema);
    assert_eq!(found.manifests.len(), 1);
    assert_eq!(found.manifests[0].digest.to_string(), signature_digest);
    assert_eq!(
        found.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.dev.cosign.artifact.sig.v1+json")
    );
}

#[test]
fn referrers_api_is_used_where_the_registry_has_it() {
    let server = TestServer::start();
    let digest = sha256_digest(b"image");
    let sig = sha256_digest(b"sig");
    server.add(
        &format!("/v2/p/r/referrers/{digest}"),
        Route::new(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{sig}","size":5,
              "artifactType":"application/vnd.cncf.notary.signature"}}]}}"#
        )
        .into_bytes()),
    );
    let found = fake(&server)
        .referrers("p/r", &digest.parse().unwrap())
        .unwrap();
    assert_eq!(found.source, ReferrersSource::Api);
    assert_eq!(
        found.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.cncf.notary.signature")
    );
}

#[test]
fn registry_over_tls_is_reached_with_the_given_ca_and_refused_without() {
    let tls = vmc_testkit::server::TestTls::generate();
    let Some(registry) = testreg::or_skip(testreg::Registry::start_tls(&tls), ci()) else {
        return;
    };
    push(&registry, "vo.example/tls", "1", b"disk over tls");
    let trusting = Client::new(vmc_fetch::ClientConfig {
        extra_roots: vec![tls.ca_cert.clone()],
        ..crate::config()
    })
    .unwrap();
    let oci = Registry::new(&trusting, &registry.host(), RegistryOptions::default()).unwrap();
    assert_eq!(oci.tags("vo.example/tls").unwrap(), ["1"]);
    let fetched = oci.manifest_for_tag("vo.example/tls", "1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    oci.download_blob(
        "vo.example/tls",
        &image_layer(&fetched.manifest),
        &dest,
        &NoReporter,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"disk over tls");
    // The system roots (none here) and no CA: the handshake fails, nothing is fetched.
    let untrusting = client(0);
    let oci = Registry::new(&untrusting, &registry.host(), RegistryOptions::default()).unwrap();
    let err = oci.tags("vo.example/tls").unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
}

#[test]
fn docker_v2_manifests_and_indexes_are_served_by_the_registry_and_parsed() {
    let Some(registry) = anonymous() else {
        return;
    };
    let repository = "vo.example/docker";
    let disk = b"raw disk bytes";
    let layer_digest = registry.push_blob(repository, disk);
    let config_digest = registry.push_blob(repository, b"{\"architecture\":\"amd64\"}");
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
        "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config_digest}","size":24}},
        "layers":[{{"mediaType":"application/octet-stream","digest":"{layer_digest}","size":{},
          "annotations":{{"org.opencontainers.image.title":"disk.img"}}}}]}}"#,
        disk.len()
    );
    let docker_digest = registry.push_manifest(
        repository,
        "docker",
        vmc_model::oci::MEDIA_TYPE_DOCKER_MANIFEST,
        docker.as_bytes(),
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
        "manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
          "digest":"{docker_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        docker.len()
    );
    registry.push_manifest(
        repository,
        "multi",
        vmc_model::oci::MEDIA_TYPE_OCI_INDEX,
        index.as_bytes(),
    );
    let client = client(0);
    let oci = Registry::new(&client, &registry.host(), plain(None)).unwrap();
    let fetched = oci.manifest_for_tag(repository, "docker").unwrap();
    assert_eq!(
        fetched.content_type.as_deref(),
        Some(vmc_model::oci::MEDIA_TYPE_DOCKER_MANIFEST)
    );
    let Manifest::Image(manifest) = &fetched.manifest else {
        panic!("an index");
    };
    assert_eq!(manifest.kind, vmc_model::oci::ManifestKind::DockerV2);
    let layer = manifest.disk_layer().unwrap();
    assert_eq!(layer.format, DiskFormat::Raw);
    let fetched = oci.manifest_for_tag(repository, "multi").unwrap();
    let Manifest::Index(index) = &fetched.manifest else {
        panic!("not an index");
    };
    assert_eq!(index.manifests[0].digest.to_string(), docker_digest);
    assert_eq!(
        index.manifests[0].platform,
        Some(("amd64".into(), "linux".into()))
    );
}

/// A bearer token that expires while the client still uses it is renewed from the `401`'s
/// challenge, once per request: on a manifest `HEAD`/`GET`, and on the retry of a blob
/// download that a reset interrupted (the resumed range request). When the token endpoint
/// then refuses, the error says the authorization could not be renewed and names the realm.
/// Against the real registry behind the testkit's token endpoint, whose tokens live 3 s
/// (distribution checks `exp` by the wall clock, in whole seconds, hence the waits of 4 s).
#[test]
fn an_expired_bearer_token_is_renewed_on_any_request() {
    let Some((registry, account)) = token_registry("robot$renew", "renew-secret-17", false) else {
        return;
    };
    let data = body(1 << 20, 11);
    push(&registry, "vo.example/long", "1", &data);
    let tokens = registry.token_server().unwrap();
    let lifetime = std::time::Duration::from_secs(3);
    let past_lifetime = std::time::Duration::from_secs(4);
    tokens.set_token_lifetime(lifetime);
    let proxy = vmc_testkit::proxy::FaultProxy::start(registry.addr()).unwrap();
    let host = proxy.url().trim_start_matches("http://").to_owned();
    let client = Client::new(vmc_fetch::ClientConfig {
        retries: 1,
        backoff: past_lifetime,
        ..crate::config()
    })
    .unwrap();
    let oci = Registry::new(&client, &host, plain(Some(basic(&account)))).unwrap();
    let issued = || tokens.request_log().len();

    let fetched = oci.manifest_for_tag("vo.example/long", "1").unwrap();
    assert_eq!(issued(), 1);
    std::thread::sleep(past_lifetime);
    let again = oci.manifest_for_tag("vo.example/long", "1").unwrap();
    assert_eq!(again.digest, fetched.digest);
    assert_eq!(issued(), 2, "the expired token was renewed once");

    // The blob's first GET is cut after 256 KiB; the retry comes after the token expired.
    proxy.add_rule(
        "GET",
        "/blobs/",
        vmc_testkit::proxy::ProxyFault::CutResponse(256 * 1024),
        1,
    );
    let layer = image_layer(&fetched.manifest);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    let before = issued();
    let done = oci
        .download_blob("vo.example/long", &layer, &dest, &NoReporter)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(done.attempts, 2);
    assert!(done.resumed_from > 0, "{done:?}");
    assert!(issued() > before, "the range request got a fresh token");
    let blob_gets = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/"))
        .count();
    assert!(blob_gets >= 3, "cut, 401, resumed: {:?}", proxy.requests());

    // The renewal itself fails: a clear error naming the realm, no retry loop.
    tokens.limit_tokens(Some(0));
    std::thread::sleep(past_lifetime);
    let err = oci.manifest_for_tag("vo.example/long", "1").unwrap_err();
    assert!(matches!(err, FetchError::TokenRenewal { .. }), "{err:?}");
    assert!(err.to_string().contains("could not be renewed"), "{err}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        cause.contains(&tokens.realm()) && cause.contains("401"),
        "{cause}"
    );
    assert!(!format!("{err} {cause} {err:?}").contains("renew-secret-17"));
}
