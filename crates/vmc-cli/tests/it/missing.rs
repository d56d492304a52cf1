//! A cached file deleted behind vmc's back (issue 20): `cache verify` says it is missing and
//! exits 1, `cache list` shows it as `missing`, `cache purge` leaves its record alone (there is
//! no file to purge), and `cache sync` fetches it again (exit 0) — or, once the image is no
//! longer wanted, forgets it.

use crate::common::{Env, IMAGE0};

fn ids(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_deleted_cached_file_is_missing_until_the_next_sync() {
    let env = Env::new();
    env.subscribe(&env.list_url("good.smime"));
    env.json(&["image", "subscribe", IMAGE0], 0);
    env.json(&["cache", "download"], 0);
    let file = env.home().join("cache").join(IMAGE0);
    for round in 0..2 {
        std::fs::remove_file(&file).unwrap();
        let verify = env.json(&["cache", "verify"], 1);
        assert_eq!(ids(&verify["missing"]), [IMAGE0], "round {round}: {verify}");
        assert_eq!(verify["expired"], serde_json::json!([]));
        let list = env.json(&["cache", "list"], 0);
        assert_eq!(list[0]["identifier"], IMAGE0);
        assert_eq!(list[0]["state"], "missing", "{list}");
        assert_eq!(list[0]["missing_since"], "2027-06-01T00:00:00Z");
        assert_eq!(
            env.json(&["cache", "purge"], 0),
            serde_json::json!({"purged": []})
        );
        let sync = env.json(&["cache", "sync"], 0);
        assert_eq!(ids(&sync["downloaded"]), [IMAGE0], "{sync}");
        assert_eq!(ids(&sync["missing"]), [IMAGE0], "{sync}");
        assert!(file.is_file());
        let list = env.json(&["cache", "list"], 0);
        assert_eq!(list[0]["state"], "cached", "{list}");
        assert_eq!(list[0]["missing_since"], serde_json::Value::Null);
        assert_eq!(
            env.json(&["cache", "verify"], 0)["missing"],
            serde_json::json!([])
        );
    }

    // Lost again, and no longer wanted: forgotten, with nothing to purge.
    std::fs::remove_file(&file).unwrap();
    env.json(&["image", "unsubscribe", IMAGE0], 0);
    let sync = env.json(&["cache", "sync"], 0);
    assert_eq!(sync["expired"][0]["identifier"], IMAGE0, "{sync}");
    assert_eq!(sync["expired"][0]["reason"], "unselected");
    assert_eq!(env.json(&["cache", "list"], 0), serde_json::json!([]));
    assert_eq!(
        env.json(&["cache", "purge"], 0),
        serde_json::json!({"purged": []})
    );
    assert_eq!(
        std::fs::read_dir(env.home().join("expired"))
            .unwrap()
            .count(),
        0
    );
}
