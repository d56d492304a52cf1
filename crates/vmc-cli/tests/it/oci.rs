//! `vmc subscribe add oci://…` end to end against a real `docker-registry` on 127.0.0.1 behind
//! the bearer-token flow (a robot account whose password comes from a file): subscribe, sync,
//! `--json` output, and the password never printed; `--endorser` is refused for a registry.

use vmc_testkit::registry::{self as testreg, Account, DiskImage};

use crate::common::{Env, describe};

const PASSWORD: &str = "robot-secret-4f1c";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `vmc ARGS` with the environment variable `name` set to `value`.
fn run_with(
    env: &Env,
    name: &str,
    value: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> std::process::Output {
    env.cmd().env(name, value).args(args).output().unwrap()
}

/// Pushes `data` as the qcow2 disk image `repository:1`, without annotations.
fn push_plain(registry: &testreg::Registry, repository: &str, data: &[u8]) {
    registry.push_disk_image(&DiskImage {
        repository,
        tag: "1",
        data,
        file_name: "disk.qcow2",
        layer_media_type: "application/x-qemu-disk",
        layer_annotations: &[],
        manifest_annotations: &[],
    });
}

/// Whether `subscribe list` shows no subscription.
fn nothing_subscribed(env: &Env) -> bool {
    env.run(&["--json", "subscribe", "list"])
        .stdout
        .starts_with(b"[]")
}

#[test]
fn subscribe_and_sync_a_registry_with_a_robot_account() {
    let account = Account {
        username: "robot$vo".into(),
        password: PASSWORD.into(),
    };
    let Some(registry) =
        testreg::or_skip(testreg::Registry::start_with_token(account, false), ci())
    else {
        return;
    };
    let data = b"a small qcow2 disk".repeat(1000);
    let pushed = registry.push_disk_image(&DiskImage {
        repository: "vo.example/ubuntu",
        tag: "22.04",
        data: &data,
        file_name: "ubuntu.qcow2",
        layer_media_type: "application/x-qemu-disk",
        layer_annotations: &[],
        manifest_annotations: &[("org.openstack.glance.os_distro", "ubuntu")],
    });
    let env = Env::new();
    let secret = env.home().join("robot-password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let url = format!("oci://{}/vo.example", registry.host());

    // A registry over plain http is reached only when the site says so (loopback only).
    let https_only = env.run(&["subscribe", "add", &url]);
    assert_eq!(
        https_only.status.code(),
        Some(1),
        "{}",
        describe(&https_only)
    );
    assert!(nothing_subscribed(&env));
    let vmc = |args: &[&str]| run_with(&env, "VMC_OCI_PLAIN_HTTP", "1", args);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = vmc(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let refused = vmc(&["subscribe", "add", &url, "--endorser", "someone"]);
    assert_ne!(refused.status.code(), Some(0), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--allow"),
        "{}",
        describe(&refused)
    );

    let out = vmc(&[
        "--json",
        "subscribe",
        "add",
        &url,
        "--new-images",
        "subscribe",
        "--username",
        "robot$vo",
        "--password-file",
        secret.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let all = describe(&out);
    assert!(!all.contains(PASSWORD), "password printed: {all}");
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = &added["subscriptions"][0];
    assert_eq!(list["status"], "added", "{added}");
    assert_eq!(list["new_images"][0], "vo.example.ubuntu-22.04", "{added}");

    let synced = json(&["--json", "cache", "sync"]);
    assert_eq!(
        synced["downloaded"][0], "vo.example.ubuntu-22.04",
        "{synced}"
    );
    let cached = std::fs::read(env.home().join("cache/vo.example.ubuntu-22.04")).unwrap();
    assert_eq!(cached, data);

    let images = json(&["--json", "image", "list"]);
    let text = images.to_string();
    assert!(text.contains(&pushed.digest), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(!text.contains(PASSWORD));
    let subs = vmc(&["--json", "subscribe", "list"]);
    assert!(!describe(&subs).contains(PASSWORD));
    let subs: serde_json::Value = serde_json::from_slice(&subs.stdout).unwrap();
    assert_eq!(subs[0]["kind"], "oci", "{subs}");
    assert_eq!(subs[0]["has_credentials"], true, "{subs}");
    assert!(subs[0]["expires"].is_null(), "{subs}");
    assert!(registry.token_server().unwrap().requests() > 0);

    // Without the scheme, `--kind oci` says what the URL is; one repository and tag.
    let bare = format!("{}/vo.example/ubuntu:22.04", registry.host());
    let second = json(&[
        "--json",
        "subscribe",
        "add",
        &bare,
        "--kind",
        "oci",
        "--username",
        "robot$vo",
        "--password-file",
        secret.to_str().unwrap(),
    ]);
    assert_eq!(second["subscriptions"][0]["status"], "added", "{second}");
    assert_eq!(
        second["subscriptions"][0]["url"],
        format!("oci://{bare}"),
        "{second}"
    );
}

/// `subscribe check oci://…` reads and verifies the registry as an update would and stores
/// nothing: accepted (exit 0) with the images found; a registry it cannot read (plain http
/// not allowed) is rejected (exit 1) with the reason; `--endorser` is refused for a registry.
#[test]
fn subscribe_check_of_a_registry_reads_it_and_stores_nothing() {
    let Some(registry) = testreg::or_skip(testreg::Registry::start(), ci()) else {
        return;
    };
    let data = b"a checked qcow2 disk".repeat(500);
    push_plain(&registry, "vo.example/checked", &data);
    let env = Env::new();
    let url = format!("oci://{}/vo.example", registry.host());
    let run = |args: &[&str]| run_with(&env, "VMC_OCI_PLAIN_HTTP", "1", args);
    let out = run(&["--json", "subscribe", "check", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checked["verdict"], "accepted", "{checked}");
    assert_eq!(checked["list"]["images"], 1, "{checked}");
    let text = run(&["subscribe", "check", &url]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("verdict   accepted"),
        "{}",
        describe(&text)
    );
    assert!(nothing_subscribed(&env));
    assert!(!env.home().join("cache/vo.example.checked-1").exists());

    let refused = env.run(&["--json", "subscribe", "check", &url]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let refused: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(refused["verdict"], "rejected", "{refused}");
    assert_eq!(refused["error"]["code"], "fetch_failed", "{refused}");

    let endorser = run(&["subscribe", "check", &url, "--endorser", "someone"]);
    assert_ne!(endorser.status.code(), Some(0), "{}", describe(&endorser));
    assert!(
        describe(&endorser).contains("allow rule"),
        "{}",
        describe(&endorser)
    );
}

/// `VMC_OCI_CA_FILE`: a TLS registry with a private CA is followed with the bundle and
/// refused without it (exit 1, the report line naming the registry and the TLS reason,
/// nothing stored).
#[test]
fn vmc_oci_ca_file_names_the_registry_ca() {
    let tls = vmc_testkit::server::TestTls::generate();
    let Some(registry) = testreg::or_skip(testreg::Registry::start_tls(&tls), ci()) else {
        return;
    };
    let data = b"a pinned qcow2 disk".repeat(500);
    push_plain(&registry, "vo.example/pinned", &data);
    let env = Env::new();
    let bundle = env.home().join("registry-ca.pem");
    std::fs::write(&bundle, tls.ca_cert.to_pem().unwrap()).unwrap();
    let url = format!("oci://{}/vo.example/pinned", registry.host());
    let add = [
        "subscribe",
        "add",
        url.as_str(),
        "--new-images",
        "subscribe",
    ];

    let refused = env.run(&add);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let line = String::from_utf8_lossy(&refused.stdout);
    assert!(
        line.contains(&format!(
            "tls handshake failed for https://{}/v2/",
            registry.host()
        )) && line.contains("certificate verify failed"),
        "{}",
        describe(&refused)
    );
    assert!(nothing_subscribed(&env));

    let with_bundle = |args: &[&str]| {
        let out = run_with(&env, "VMC_OCI_CA_FILE", &bundle, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
    };
    with_bundle(&add);
    with_bundle(&["cache", "sync"]);
    let cached = std::fs::read(env.home().join("cache/vo.example.pinned-1")).unwrap();
    assert_eq!(cached, data);
}
