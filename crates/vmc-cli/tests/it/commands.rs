//! The commands the new-user flow does not reach — endorser show/link/unlink/remove, subscribe
//! set/remove, image unsubscribe, cache download/expire/verify/purge/events, doctor — each with
//! its text and JSON output snapshotted and its effect checked.

use crate::common::{Env, IMAGE0, LIST_ID, describe, stdout};

#[test]
fn every_remaining_command_prints_its_text_and_json() {
    let env = Env::new();
    let settings = env.settings();
    let snap = |name: &str, text: String| {
        settings.bind(|| insta::assert_snapshot!(name, text));
    };
    let text = |args: &[&str], status: i32| -> String {
        let out = env.run(args);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{args:?}: {}",
            describe(&out)
        );
        stdout(&out)
    };
    let json = |args: &[&str], status: i32| -> String {
        serde_json::to_string_pretty(&env.json(args, status)).unwrap()
    };
    env.subscribe(&env.list_url("good.smime"));

    // endorser show / unlink / link (text and JSON).
    snap("endorser_show", text(&["endorser", "show", "interop"], 0));
    snap(
        "endorser_show_json",
        json(&["endorser", "show", "interop"], 0),
    );
    snap(
        "endorser_unlink",
        text(&["endorser", "unlink", "interop", LIST_ID], 0),
    );
    snap(
        "endorser_link_json",
        json(&["endorser", "link", "interop", LIST_ID], 0),
    );

    // subscribe set: policy, enable/disable.
    snap(
        "subscribe_set_json",
        json(
            &[
                "subscribe",
                "set",
                LIST_ID,
                "--new-images",
                "accept",
                "--disable",
            ],
            0,
        ),
    );
    snap(
        "subscribe_set_enable",
        text(&["subscribe", "set", LIST_ID, "--enable"], 0),
    );

    // image subscribe, cache download, cache verify, image unsubscribe, cache expire.
    text(&["image", "subscribe", IMAGE0], 0);
    snap("cache_download_json", json(&["cache", "download"], 0));
    snap("cache_verify", text(&["cache", "verify"], 0));
    snap(
        "image_unsubscribe_json",
        json(&["image", "unsubscribe", IMAGE0], 0),
    );
    snap("cache_expire_json", json(&["cache", "expire"], 0));
    assert!(!env.home().join("cache").join(IMAGE0).exists());
    let expired: Vec<_> = std::fs::read_dir(env.home().join("expired"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(expired[0].starts_with(&format!("{IMAGE0}.2027-06-01_00-00-00")));

    // cache events --failed (none failed) and the JSON Lines journal.
    assert_eq!(text(&["cache", "events", "--failed"], 0), "");
    let lines = text(&["--json", "cache", "events"], 0);
    let types: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(types.contains(&"AvailablePostfix".to_owned()), "{types:?}");
    assert!(types.contains(&"ExpirePostfix".to_owned()), "{types:?}");

    // cache purge: --older-than keeps a fresh file, a plain purge deletes it.
    snap(
        "cache_purge_older_json",
        json(&["cache", "purge", "--older-than", "30d"], 0),
    );
    assert_eq!(
        std::fs::read_dir(env.home().join("expired"))
            .unwrap()
            .count(),
        1
    );
    snap("cache_purge", text(&["cache", "purge"], 0));
    assert_eq!(
        std::fs::read_dir(env.home().join("expired"))
            .unwrap()
            .count(),
        0
    );

    // doctor on a healthy home: every check ok, exit 0 (free bytes vary: not snapshotted).
    let doctor = env.json(&["doctor"], 0);
    assert_eq!(doctor["ok"], true, "{doctor}");

    // subscribe remove, endorser remove.
    snap(
        "subscribe_remove",
        text(&["subscribe", "remove", LIST_ID], 0),
    );
    assert_eq!(json(&["subscribe", "list"], 0), "[]");
    snap(
        "endorser_remove_json",
        json(&["endorser", "remove", "interop"], 0),
    );
    assert_eq!(json(&["endorser", "list"], 0), "[]");
}
