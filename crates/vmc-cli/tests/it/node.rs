//! `vmc node list`: every run that does site work registers its node (`--node`, `VMC_NODE`,
//! default the host name), and the list shows each node with its run, text and JSON.

use crate::common::{Env, LIST_ID, describe, regex_escape, stdout};

#[test]
fn node_list_shows_each_node_that_ran() {
    let env = Env::new();
    env.subscribe(&env.list_url("good.smime"));
    let mut settings = env.settings();
    let host = vmc_cache::node::host_name();
    settings.add_filter(&format!(r"\b{}\b", regex_escape(&host)), "[HOST]");
    settings.add_filter(r#""pid": \d+"#, r#""pid": [PID]"#);
    settings.add_filter(
        &format!(r"\b{}\b", regex_escape(env!("CARGO_PKG_VERSION"))),
        "[VERSION]",
    );
    // Nothing ran yet (subscribe add is not site work): no node.
    let out = env.run(&["node", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "");

    let out = env.run(&["cache", "sync", "--node", "hv-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = env
        .cmd()
        .env("VMC_NODE", "hv-02")
        .args(["subscribe", "update"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // hv-01 updated the list a moment ago (same pinned clock): hv-02 leaves it alone.
    assert_eq!(
        stdout(&out),
        format!("skipped\t{LIST_ID}\tnode hv-01 updated it at 2027-06-01T00:00:00Z\n"),
        "{}",
        describe(&out)
    );
    let skipped = env
        .cmd()
        .args(["--json", "--node", "hv-02", "subscribe", "update"])
        .output()
        .unwrap();
    let skipped: serde_json::Value = serde_json::from_slice(&skipped.stdout).unwrap();
    assert_eq!(skipped["subscriptions"][0]["status"], "skipped");
    assert_eq!(
        skipped["subscriptions"][0]["skipped"],
        "node hv-01 updated it at 2027-06-01T00:00:00Z"
    );
    // The node that did the update fetches again when asked.
    let again = env.json(&["--node", "hv-01", "subscribe", "update"], 0);
    assert_eq!(again["subscriptions"][0]["status"], "unchanged");

    let text = stdout(&env.run(&["node", "list"]));
    let json = serde_json::to_string_pretty(&env.json(&["node", "list"], 0)).unwrap();
    settings.bind(|| {
        insta::assert_snapshot!("node_list", text);
        insta::assert_snapshot!("node_list_json", json);
    });

    // Without --node or VMC_NODE, the node is named after the host.
    let out = env.run(&["cache", "expire"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let nodes = env.json(&["node", "list"], 0);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{nodes}");
    assert!(names.contains(&host.as_str()), "{names:?} lacks {host}");

    // A node gone for good is removed; a name that is not registered is an error.
    let out = env.run(&["node", "remove", "hv-02"]);
    assert_eq!(stdout(&out), "removed node hv-02\n", "{}", describe(&out));
    assert_eq!(env.json(&["node", "list"], 0).as_array().unwrap().len(), 2);
    let out = env.run(&["node", "remove", "hv-02"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // A node in another cache mode than the others: its run warns, and so does doctor.
    let out = env.run(&[
        "cache",
        "sync",
        "--node",
        "hv-03",
        "--cache-mode",
        "per-node",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        crate::common::stderr(&out)
            .contains("node hv-01 last ran with --cache-mode shared (2027-06-01T00:00:00Z), this one with per-node"),
        "{}",
        describe(&out)
    );
    let nodes = env.json(&["node", "list"], 0);
    let modes: Vec<(&str, &str)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["cache_mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(modes.contains(&("hv-03", "per-node")), "{modes:?}");
    assert!(modes.contains(&("hv-01", "shared")), "{modes:?}");
    let doctor = env.json(&["doctor"], 0);
    let warned: Vec<&serde_json::Value> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "nodes" && c["status"] == "warn")
        .collect();
    assert_eq!(warned.len(), 1, "{doctor:#}");
    let message = warned[0]["message"].as_str().unwrap();
    assert!(
        message.contains("different cache modes (per-node: hv-03; shared: "),
        "{message}"
    );
    // All in one mode again: no warning.
    let out = env.run(&["node", "remove", "hv-03"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doctor = env.json(&["doctor"], 0);
    assert!(
        doctor["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "nodes" || c["status"] == "ok"),
        "{doctor:#}"
    );
}
