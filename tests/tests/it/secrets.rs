//! Credentials never show: a bearer token and credentials in a subscription URL's userinfo
//! (`https://TOKEN:x-oauth-basic@host/…`, as EGI AppDB hands out) are not printed by any
//! subscribe or cache command, in text, JSON or trace logs, nor in error messages, the lock
//! holder note, or an event handler's environment; a database password does not reach
//! `VMCATCHER_RDBMS`.

use std::process::{Output, Stdio};

use vmc_testkit::server::{Auth, Route};

use crate::common::{LIST_ID, World, describe, stderr};

const TOKEN: &str = "ghp_SeCrEtToKeN0123456789";
const SECRET_PART: &str = "SeCrEt";

fn assert_clean(what: &str, out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(SECRET_PART),
            "{what} printed the secret: {}",
            describe(out)
        );
    }
}

/// Every read-only and updating command, in text, JSON and with trace logs.
fn every_command(w: &World, key: &str) {
    for args in [
        &["subscribe", "list"][..],
        &["--json", "subscribe", "list"],
        &["subscribe", "show", key],
        &["--json", "subscribe", "show", key],
        &["endorser", "list"],
        &["--json", "endorser", "list"],
        &["image", "list"],
        &["--json", "image", "list"],
        &["subscribe", "update"],
        &["--json", "subscribe", "update"],
        &["-vv", "subscribe", "update"],
        &["-vv", "cache", "sync"],
        &["--json", "cache", "sync"],
        &["cache", "events"],
        &["doctor"],
    ] {
        let out = w.run(args);
        assert_clean(&format!("{args:?}"), &out);
        let out = w.cmd().env("VMC_LOG", "trace").args(args).output().unwrap();
        assert_clean(&format!("VMC_LOG=trace {args:?}"), &out);
    }
}

fn publish_private(w: &World, path: &str, auth: Auth) {
    let doc = w.list(LIST_ID, "1", Vec::new());
    let signed = w.sign(&serde_json::to_vec_pretty(&doc).unwrap());
    w.server.replace(path, Route::new(signed).auth(auth));
}

#[test]
fn a_bearer_token_is_never_printed() {
    let w = World::new();
    w.cli_endorser();
    publish_private(&w, "/private/list", Auth::Bearer(TOKEN.into()));
    let token_file = w.home().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let url = w.server.url("/private/list");
    let out = w.run(&[
        "-vv",
        "subscribe",
        "add",
        &url,
        "--endorser",
        "e1",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_clean("subscribe add", &out);
    assert_eq!(
        w.server
            .last_request("/private/list")
            .unwrap()
            .header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    every_command(&w, &url);
    // The server wants another token now: the failure does not echo ours.
    publish_private(&w, "/private/list", Auth::Bearer("another".into()));
    for args in [
        &["subscribe", "update"][..],
        &["--json", "subscribe", "update"],
        &["-vv", "cache", "sync"],
    ] {
        let out = w.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert_clean(&format!("{args:?} failing"), &out);
    }
    let subs = w.json(&["subscribe", "list"], 0);
    assert_eq!(subs[0]["last_error"]["code"], "fetch_failed", "{subs}");
}

#[test]
fn credentials_in_the_subscription_url_are_never_printed() {
    let w = World::new();
    w.cli_endorser();
    publish_private(
        &w,
        "/appdb/list",
        Auth::Basic {
            username: TOKEN.into(),
            password: "x-oauth-basic".into(),
        },
    );
    let url = format!(
        "http://{TOKEN}:x-oauth-basic@{}/appdb/list",
        w.server.addr()
    );
    // A handler that records its whole environment.
    let env_dump = w.home().join("handler-env");
    let handler = format!("env >> '{}'", env_dump.display());
    let out = w.run(&[
        "--event-handler",
        &handler,
        "subscribe",
        "add",
        &url,
        "--endorser",
        "e1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_clean("subscribe add", &out);
    let sent = w.server.last_request("/appdb/list").unwrap();
    assert!(
        sent.header("authorization").is_some(),
        "no credentials sent"
    );
    assert!(!sent.target.contains(SECRET_PART), "{}", sent.target);

    every_command(&w, LIST_ID);
    let out = w.run(&["--event-handler", &handler, "-vv", "cache", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_clean("cache sync with a handler", &out);
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("VMCATCHER_EVENT_TYPE=ProcessPrefix"), "{env}");
    assert!(
        !env.contains(SECRET_PART),
        "the handler saw the secret:\n{env}"
    );

    // An unknown subscription named by its URL: the error does not repeat the URL's secret.
    let other = format!("http://{TOKEN}:x-oauth-basic@{}/nowhere", w.server.addr());
    let out = w.run(&["subscribe", "show", &other]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_clean("subscribe show of an unknown URL", &out);

    // A failing fetch does not print it either.
    publish_private(
        &w,
        "/appdb/list",
        Auth::Basic {
            username: "someone-else".into(),
            password: "x".into(),
        },
    );
    let out = w.run(&["-vv", "subscribe", "update"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_clean("failing update", &out);
}

#[test]
fn the_lock_holder_note_does_not_carry_credentials_of_its_command_line() {
    let w = World::new();
    w.cli_endorser();
    publish_private(
        &w,
        "/appdb/list",
        Auth::Basic {
            username: TOKEN.into(),
            password: "x-oauth-basic".into(),
        },
    );
    let url = format!(
        "http://{TOKEN}:x-oauth-basic@{}/appdb/list",
        w.server.addr()
    );
    let out = w.run(&["subscribe", "add", &url, "--endorser", "e1"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // The list now comes slowly, so the update below holds the lock for seconds.
    let doc = w.list(LIST_ID, "2", Vec::new());
    let signed = w.sign(&serde_json::to_vec_pretty(&doc).unwrap());
    let rate = (signed.len() as u64 / 3).max(1);
    w.server.replace(
        "/appdb/list",
        Route::new(signed)
            .auth(Auth::Basic {
                username: TOKEN.into(),
                password: "x-oauth-basic".into(),
            })
            .throttle(rate),
    );
    let holder = w
        .cmd()
        .args(["subscribe", "update", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = w.home().join("vmc.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&lock).map_or(true, |s| s.is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let note = std::fs::read_to_string(&lock).unwrap_or_default();
    let out = w.run(&["cache", "sync"]);
    let held = holder.wait_with_output().unwrap();
    assert_eq!(held.status.code(), Some(0), "{}", describe(&held));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("holds the lock"),
        "{}",
        describe(&out)
    );
    assert!(
        !note.contains(SECRET_PART),
        "the lock file carries the secret: {note}"
    );
    assert_clean("the refused run", &out);
}

#[test]
fn a_database_password_never_shows() {
    let w = World::new();
    // No server listens on port 1: opening fails, and the message must not carry the password.
    let url = format!("postgres://vmc:{TOKEN}@127.0.0.1:1/vmc");
    for args in [
        &["subscribe", "list"][..],
        &["--json", "cache", "sync"],
        &["-vv", "cache", "list"],
        &["doctor"],
    ] {
        for var in ["VMC_DATABASE", "VMCATCHER_RDBMS"] {
            let out = w.cmd().env(var, &url).args(args).output().unwrap();
            assert_ne!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
            assert_clean(&format!("{var} {args:?}"), &out);
        }
        let out = w
            .cmd()
            .arg("--database")
            .arg(&url)
            .args(args)
            .output()
            .unwrap();
        assert_clean(&format!("--database {args:?}"), &out);
    }
}

/// With a PostgreSQL server to run against (`VMC_TEST_POSTGRES_URL`, set by `.ci/run`; the
/// binary built with the `postgres` feature; `psql` to make a schema), a password in the
/// database URL does not reach the event handler's `VMCATCHER_RDBMS`.
#[test]
fn the_handler_gets_the_database_url_without_its_password() {
    let Ok(admin) = std::env::var("VMC_TEST_POSTGRES_URL") else {
        vmc_testkit::skip::skipped(
            "VMC_TEST_POSTGRES_URL is not set: no PostgreSQL server to test on (.ci/run starts one)",
        );
        return;
    };
    let schema = format!("vmct_secrets_{}", std::process::id());
    let psql = std::process::Command::new("psql")
        .arg(&admin)
        .args(["-q", "-c"])
        .arg(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .output();
    match psql {
        Ok(out) if out.status.success() => {}
        other => {
            panic!("VMC_TEST_POSTGRES_URL is set but psql cannot create a schema: {other:?}");
        }
    }
    // Trust authentication on the test server: the password is not checked, only carried.
    let with_password = admin.replacen("://postgres@", &format!("://postgres:{TOKEN}@"), 1);
    assert_ne!(with_password, admin, "unexpected URL form {admin}");
    let sep = if with_password.contains('?') {
        '&'
    } else {
        '?'
    };
    let db = format!("{with_password}{sep}options=-csearch_path%3D{schema}");
    let w = World::new();
    let env_dump = w.home().join("handler-env");
    let out = w
        .cmd()
        .env("VMC_DATABASE", &db)
        .arg("--event-handler")
        .arg(format!("env >> '{}'", env_dump.display()))
        .args(["cache", "sync"])
        .output()
        .unwrap();
    let _ = std::process::Command::new("psql")
        .arg(&admin)
        .args(["-q", "-c"])
        .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE;"))
        .output();
    if out.status.code() == Some(2) && stderr(&out).contains("postgres") {
        vmc_testkit::skip::skipped(
            "this vmc binary has no PostgreSQL support (feature `postgres`)",
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_clean("cache sync on PostgreSQL", &out);
    let env = std::fs::read_to_string(&env_dump).unwrap();
    let rdbms: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("VMCATCHER_RDBMS="))
        .collect();
    assert!(!rdbms.is_empty(), "no VMCATCHER_RDBMS:\n{env}");
    for line in rdbms {
        assert!(line.contains("postgres://"), "{line}");
        assert!(
            !line.contains(SECRET_PART),
            "the handler got the password: {line}"
        );
    }
}
