//! `--help` of every command is snapshotted; `--version`; usage errors exit 2.

use crate::common::{ISSUER, SUBJECT, bare, describe, settings, stdout};

const COMMANDS: &[&[&str]] = &[
    &[],
    &["endorser"],
    &["endorser", "add"],
    &["endorser", "list"],
    &["endorser", "show"],
    &["endorser", "remove"],
    &["endorser", "link"],
    &["endorser", "unlink"],
    &["subscribe"],
    &["subscribe", "add"],
    &["subscribe", "list"],
    &["subscribe", "show"],
    &["subscribe", "remove"],
    &["subscribe", "update"],
    &["subscribe", "set"],
    &["subscribe", "check"],
    &["image"],
    &["image", "list"],
    &["image", "show"],
    &["image", "subscribe"],
    &["image", "unsubscribe"],
    &["cache"],
    &["cache", "sync"],
    &["cache", "download"],
    &["cache", "expire"],
    &["cache", "verify"],
    &["cache", "list"],
    &["cache", "purge"],
    &["cache", "events"],
    &["publish"],
    &["publish", "sync"],
    &["publish", "list"],
    &["node"],
    &["node", "list"],
    &["node", "remove"],
    &["doctor"],
    &["import-vmcatcher"],
];

#[test]
fn help_of_every_command_is_stable() {
    let settings = settings();
    for command in COMMANDS {
        let out = bare().args(*command).arg("--help").output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command:?}: {}",
            describe(&out)
        );
        let name = if command.is_empty() {
            "help_vmc".to_owned()
        } else {
            format!("help_{}", command.join("_"))
        };
        settings.bind(|| insta::assert_snapshot!(name, stdout(&out)));
    }
}

#[test]
fn version_names_the_binary_and_the_crate_version() {
    let out = bare().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("vmc {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = bare()
        .env("VMC_HOME", home.path())
        .args(["cache", "sync", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    assert!(out.stdout.is_empty());
}

#[test]
fn endorser_add_with_unpaired_subjects_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = bare()
        .env("VMC_HOME", home.path())
        .args(["endorser", "add", "--subject", SUBJECT, "--subject"])
        .arg("/C=XX/O=InteropGrid/CN=Second")
        .args(["--issuer", ISSUER])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Nothing was stored.
    let list = bare()
        .env("VMC_HOME", home.path())
        .args(["--json", "endorser", "list"])
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0), "{}", describe(&list));
    let endorsers: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(endorsers, serde_json::json!([]));
}
