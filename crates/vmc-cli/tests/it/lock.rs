//! The instance lock: a second run is refused and told who holds the lock, or waits for it
//! with `--lock-wait`.

use std::io::Write;

use crate::common::{Env, describe, stderr};

/// Holds `<home>/vmc.lock` the way a running vmc does, with a holder note.
fn hold(env: &Env) -> std::fs::File {
    std::fs::create_dir_all(env.home()).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(env.home().join("vmc.lock"))
        .unwrap();
    file.lock().unwrap();
    file.set_len(0).unwrap();
    writeln!(
        file,
        "pid {} on testhost since 2027-06-01T00:00:00Z: lock test",
        std::process::id()
    )
    .unwrap();
    file.flush().unwrap();
    file
}

#[test]
fn a_second_run_is_refused_and_names_the_holder() {
    let env = Env::new();
    let held = hold(&env);
    for args in [
        &["cache", "sync"][..],
        &["cache", "download"],
        &["cache", "expire"],
        &["cache", "verify"],
        &["subscribe", "update"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{args:?}: {}",
            describe(&out)
        );
    }
    drop(held);
    let out = env.run(&["cache", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn lock_wait_waits_for_the_holder() {
    let env = Env::new();
    let held = hold(&env);
    let running = env
        .spawnable()
        .args(["cache", "sync", "--lock-wait", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the child reach the lock, then release it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(held);
    let out = running.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
