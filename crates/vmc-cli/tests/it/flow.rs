//! The new-user flow through the real binary: endorser, subscription, image selection, sync,
//! the cache and its event journal; text and JSON output snapshotted.

use crate::common::{
    Env, IMAGE0, ISSUER, LIST_ID, SUBJECT, assert_has_keys, describe, stderr, stdout,
};

#[test]
fn new_user_flow_caches_a_selected_image() {
    let env = Env::new();
    let settings = env.settings();
    let snap = |name: &str, text: String| {
        settings.bind(|| insta::assert_snapshot!(name, text));
    };

    // endorser add
    let out = env.run(&[
        "endorser",
        "add",
        "--id",
        "interop",
        "--subject",
        SUBJECT,
        "--issuer",
        ISSUER,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snap("endorser_add", stdout(&out));
    let endorsers = env.json(&["endorser", "list"], 0);
    snap(
        "endorser_list_json",
        serde_json::to_string_pretty(&endorsers).unwrap(),
    );
    assert_has_keys(&endorsers[0], &["id", "identities", "subscriptions"]);
    assert_eq!(endorsers[0]["identities"][0]["subject"], SUBJECT);
    assert_eq!(endorsers[0]["identities"][0]["issuer"], ISSUER);

    // subscribe add (JSON): added
    let url = env.list_url("good.smime");
    let added = env.json(&["subscribe", "add", &url, "--endorser", "interop"], 0);
    snap(
        "subscribe_add_json",
        serde_json::to_string_pretty(&added).unwrap(),
    );
    assert_has_keys(
        &added,
        &["subscriptions", "downloaded", "expired", "failed"],
    );
    assert_has_keys(
        &added["subscriptions"][0],
        &["identifier", "url", "status", "error"],
    );
    assert_eq!(added["subscriptions"][0]["status"], "added");
    assert_eq!(added["subscriptions"][0]["identifier"], LIST_ID);
    assert!(added["subscriptions"][0]["error"].is_null());

    // subscribe list
    let subs = env.json(&["subscribe", "list"], 0);
    snap(
        "subscribe_list_json",
        serde_json::to_string_pretty(&subs).unwrap(),
    );
    assert_eq!(subs.as_array().unwrap().len(), 1);
    assert_has_keys(
        &subs[0],
        &[
            "identifier",
            "url",
            "title",
            "enabled",
            "new_images",
            "version",
            "created",
            "expires",
            "updated",
            "last_error",
        ],
    );
    assert_eq!(subs[0]["enabled"], true);
    assert!(subs[0]["last_error"].is_null());
    let out = env.run(&["subscribe", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snap("subscribe_list_text", stdout(&out));
    let out = env.run(&["subscribe", "show", LIST_ID]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snap("subscribe_show_text", stdout(&out));

    // image list: three images, none selected (new images default to refuse)
    let images = env.json(&["image", "list"], 0);
    snap(
        "image_list_json",
        serde_json::to_string_pretty(&images).unwrap(),
    );
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 3);
    for i in images {
        assert_has_keys(
            i,
            &[
                "identifier",
                "subscription",
                "title",
                "version",
                "uri",
                "size",
                "sha512",
                "selected",
                "available",
                "cached",
            ],
        );
        assert_eq!(i["subscription"], LIST_ID);
        assert_eq!(i["available"], true);
        assert_eq!(i["cached"], false);
    }
    let out = env.run(&["image", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snap("image_list_text", stdout(&out));
    let out = env.run(&["image", "show", IMAGE0]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snap("image_show_text", stdout(&out));

    // image subscribe
    let out = env.run(&["image", "subscribe", IMAGE0]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snap("image_subscribe_text", stdout(&out));
    let selected = env.json(&["image", "list", "--selected"], 0);
    assert_eq!(selected.as_array().unwrap().len(), 1);
    assert_eq!(selected[0]["identifier"], IMAGE0);

    // cache sync: downloads the selected image
    let synced = env.json(&["cache", "sync"], 0);
    snap(
        "cache_sync_json",
        serde_json::to_string_pretty(&synced).unwrap(),
    );
    assert_eq!(synced["downloaded"], serde_json::json!([IMAGE0]));
    assert_eq!(synced["failed"], serde_json::json!([]));
    assert_eq!(synced["subscriptions"][0]["identifier"], LIST_ID);
    assert!(synced["subscriptions"][0]["error"].is_null());

    // cache list
    let cached = env.json(&["cache", "list"], 0);
    snap(
        "cache_list_json",
        serde_json::to_string_pretty(&cached).unwrap(),
    );
    assert_eq!(cached.as_array().unwrap().len(), 1);
    assert_has_keys(
        &cached[0],
        &[
            "identifier",
            "file",
            "size",
            "sha512",
            "subscription",
            "cached_at",
        ],
    );
    assert_eq!(cached[0]["identifier"], IMAGE0);
    assert_eq!(cached[0]["size"], 262_144);
    assert_eq!(cached[0]["subscription"], LIST_ID);

    // the file is there, with the listed content
    let file = env.home().join("cache").join(IMAGE0);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let original = std::fs::read(crate::common::fixtures().join("images/image0.img")).unwrap();
    assert!(
        bytes == original,
        "cached file differs from the served image"
    );

    // image list now says cached
    let images = env.json(&["image", "list", "--selected"], 0);
    assert_eq!(images[0]["cached"], true);

    // cache events
    let out = env.run(&["cache", "events"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = stdout(&out);
    assert!(events.contains(IMAGE0), "{events}");
    snap("cache_events_text", events);
    assert!(!stderr(&out).contains("error"), "{}", describe(&out));

    // a second sync has nothing to do
    let again = env.json(&["cache", "sync"], 0);
    assert_eq!(again["downloaded"], serde_json::json!([]));
    assert_eq!(again["subscriptions"][0]["status"], "unchanged");
}
