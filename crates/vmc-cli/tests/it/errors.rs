//! Bad lists are refused with the right code and exit 1 while the good version stays in
//! force; names not found exit 1; a database that cannot be opened exits 2.

use vmc_testkit::server::Route;

use crate::common::{Env, LIST_ID, describe, list_bytes, stderr};

/// Reject cases that need no stored state, with the code `subscribe check` must give.
const REJECTED: &[(&str, &str)] = &[
    ("tampered.smime", "signature_invalid"),
    ("rogue.smime", "certificate_untrusted"),
    ("json-dn-mismatch.smime", "endorser_mismatch"),
    ("expired-list.smime", "list_expired"),
    ("not-json.smime", "list_malformed"),
    ("unsigned.json", "not_signed"),
];

#[test]
fn check_rejects_every_bad_list_and_the_good_one_stays() {
    let env = Env::new();
    env.subscribe(&env.list_url("good.smime"));
    let settings = env.settings();
    for (name, code) in REJECTED {
        let check = env.json(&["subscribe", "check", &env.list_url(name)], 1);
        assert_eq!(check["verdict"], "rejected", "{name}: {check}");
        assert_eq!(check["error"]["code"], *code, "{name}: {check}");
        let text = env.run(&["subscribe", "check", &env.list_url(name)]);
        assert_eq!(text.status.code(), Some(1), "{name}: {}", describe(&text));
        let shown = String::from_utf8_lossy(&text.stdout);
        assert!(
            shown.contains(code),
            "{name}: the text names the code: {shown}"
        );
        settings.bind(|| insta::assert_snapshot!(format!("check_{name}"), shown));
    }
    // other-signer: a valid signer, but not an identity of the endorser named.
    let check = env.json(
        &[
            "subscribe",
            "check",
            &env.list_url("other-signer.smime"),
            "--endorser",
            "interop",
        ],
        1,
    );
    assert_eq!(check["verdict"], "rejected", "{check}");
    assert_eq!(check["error"]["code"], "signer_not_endorser", "{check}");

    let good = env.json(&["subscribe", "check", &env.list_url("good.smime")], 0);
    assert_eq!(good["verdict"], "accepted", "{good}");
    assert!(good["error"].is_null());
    assert_eq!(good["list"]["identifier"], LIST_ID);
    assert_eq!(good["list"]["images"], 3);
    assert_eq!(good["signer"]["subject"], crate::common::SUBJECT, "{good}");

    // Nothing of the rejected lists was stored: the good version is in force.
    let subs = env.json(&["subscribe", "list"], 0);
    assert_eq!(subs.as_array().unwrap().len(), 1);
    assert!(subs[0]["last_error"].is_null(), "{subs}");
    let images = env.json(&["image", "list"], 0);
    assert_eq!(images.as_array().unwrap().len(), 3);
}

#[test]
fn subscribe_add_of_a_bad_list_stores_nothing() {
    let env = Env::new();
    env.add_endorser();
    let added = env.json(
        &[
            "subscribe",
            "add",
            &env.list_url("tampered.smime"),
            "--endorser",
            "interop",
        ],
        1,
    );
    assert_eq!(added["subscriptions"][0]["status"], "failed", "{added}");
    assert_eq!(
        added["subscriptions"][0]["error"]["code"], "signature_invalid",
        "{added}"
    );
    assert_eq!(env.json(&["subscribe", "list"], 0), serde_json::json!([]));
}

#[test]
fn an_update_to_an_older_version_is_refused_and_recorded() {
    let env = Env::new();
    env.server
        .add("/feed", Route::new(list_bytes("good.smime")));
    env.subscribe(&env.server.url("/feed"));
    let before = env.json(&["subscribe", "list"], 0);
    let version = before[0]["version"].clone();
    assert!(version.is_string(), "{before}");

    env.server
        .replace("/feed", Route::new(list_bytes("rollback-v0.smime")));
    let updated = env.json(&["subscribe", "update"], 1);
    assert_eq!(updated["subscriptions"][0]["status"], "failed", "{updated}");
    assert_eq!(
        updated["subscriptions"][0]["error"]["code"], "version_rollback",
        "{updated}"
    );

    let after = env.json(&["subscribe", "list"], 0);
    assert_eq!(after[0]["version"], version, "{after}");
    assert_eq!(
        after[0]["last_error"]["code"], "version_rollback",
        "{after}"
    );
    let images = env.json(&["image", "list"], 0);
    assert_eq!(images.as_array().unwrap().len(), 3, "{images}");
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["available"] == true),
        "{images}"
    );

    // The good list again: accepted, the error is cleared.
    env.server
        .replace("/feed", Route::new(list_bytes("good.smime")));
    let updated = env.json(&["subscribe", "update"], 0);
    assert!(updated["subscriptions"][0]["error"].is_null(), "{updated}");
    let after = env.json(&["subscribe", "list"], 0);
    assert!(after[0]["last_error"].is_null(), "{after}");
}

#[test]
fn names_not_found_exit_1() {
    let env = Env::new();
    for args in [
        &["image", "show", "nope"][..],
        &["endorser", "show", "nope"],
        &["subscribe", "show", "nope"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert!(
            stderr(&out).contains("nope"),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", describe(&out));
    }
}

#[test]
fn a_database_that_cannot_be_opened_exits_2() {
    let env = Env::new();
    let out = env.run(&["--database", "/proc/nope/x.db", "endorser", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("database"), "{}", describe(&out));
}
