//! Credentials given to `subscribe add` are never printed back, whatever the command or
//! output format, and not in the error of a failing fetch either.

use vmc_testkit::server::{Auth, Route};

use crate::common::{Env, describe, list_bytes};

const PASSWORD: &str = "s3cr3t-PASSWORD";

fn assert_no_secret(what: &str, out: &std::process::Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(PASSWORD),
            "{what} printed the password: {}",
            describe(out)
        );
        assert!(
            !text.contains("s3cr3t"),
            "{what} printed part of the password: {}",
            describe(out)
        );
    }
}

#[test]
fn the_password_is_never_printed() {
    let env = Env::new();
    env.server.add(
        "/private/list.smime",
        Route::new(list_bytes("good.smime")).auth(Auth::Basic {
            username: "u".into(),
            password: PASSWORD.into(),
        }),
    );
    let secret = env.home().join("password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let url = env.server.url("/private/list.smime");
    env.add_endorser();

    let out = env.run(&[
        "subscribe",
        "add",
        &url,
        "--endorser",
        "interop",
        "--username",
        "u",
        "--password-file",
        secret.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_secret("subscribe add", &out);
    let sent = env.server.last_request("/private/list.smime").unwrap();
    assert!(
        sent.header("authorization").is_some(),
        "credentials were sent"
    );

    for args in [
        &["subscribe", "list"][..],
        &["--json", "subscribe", "list"],
        &["subscribe", "show", &url],
        &["--json", "subscribe", "show", &url],
        &["subscribe", "update"],
        &["--json", "subscribe", "update"],
        &["-vv", "subscribe", "update"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        assert_no_secret(&format!("{args:?}"), &out);
    }

    // The server now wants another password: the failing fetch does not echo ours.
    env.server.replace(
        "/private/list.smime",
        Route::new(list_bytes("good.smime")).auth(Auth::Basic {
            username: "u".into(),
            password: "another-one".into(),
        }),
    );
    for args in [
        &["subscribe", "update"][..],
        &["--json", "subscribe", "update"],
        &["-vv", "subscribe", "update"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert_no_secret(&format!("{args:?}"), &out);
    }
    let subs = env.json(&["subscribe", "list"], 0);
    assert_eq!(subs[0]["last_error"]["code"], "fetch_failed", "{subs}");
    assert!(!subs.to_string().contains("s3cr3t"));

    // A wrong password at subscribe time: refused, not printed.
    let wrong = env.home().join("wrong");
    std::fs::write(&wrong, "s3cr3t-wrong\n").unwrap();
    let out = env.run(&[
        "subscribe",
        "add",
        &env.server.url("/private/list.smime"),
        "--endorser",
        "interop",
        "--username",
        "u",
        "--password-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_no_secret("subscribe add with a wrong password", &out);
}

#[test]
fn help_does_not_print_the_database_password_from_the_environment() {
    let out = crate::common::bare()
        .env(
            "VMC_DATABASE",
            "postgres://vmc:s3cr3t-PASSWORD@db.example/vmc",
        )
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_secret("--help", &out);
}
