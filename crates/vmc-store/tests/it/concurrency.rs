//! Several processes (and threads) writing one SQLite file at once: every write lands, none
//! fails with "database is locked".

use std::process::Command;

use vmc_model::{EventType, NewImagePolicy};
use vmc_store::{EventOutcome, ImageFilter, NewEvent, NewSubscription, Store};

use crate::fixtures::{at, identity, image, import_with, list};

/// Set in the re-executed test binary: the database the child writes to.
const CHILD_DB_ENV: &str = "VMC_STORE_TEST_WRITER_DB";
/// Set in the re-executed test binary: the writer's name.
const CHILD_TAG_ENV: &str = "VMC_STORE_TEST_WRITER_TAG";

const PROCESSES: usize = 3;
const THREADS: usize = 2;
const EVENTS_PER_WRITER: usize = 40;
const IMPORTS_PER_WRITER: usize = 4;

/// One writer's load: its own subscription with a few list imports (long transactions),
/// journal events (short ones), and reads in between. Every writer opens the database
/// itself, so the first ones also race to create and migrate it.
fn write_load(url: &str, tag: &str) {
    let store = Store::open(url).unwrap();
    let signer = identity(&format!("/CN=Writer {tag}"), "/CN=CA");
    store
        .add_endorser(&format!("writer-{tag}"), std::slice::from_ref(&signer))
        .unwrap();
    let sub = store
        .add_subscription(&NewSubscription {
            url: format!("https://example.org/{tag}"),
            new_images: NewImagePolicy::Subscribe,
            auth: None,
            enabled: true,
        })
        .unwrap()
        .id;
    store.link(&format!("writer-{tag}"), sub).unwrap();
    for n in 0..EVENTS_PER_WRITER {
        if n % (EVENTS_PER_WRITER / IMPORTS_PER_WRITER) == 0 {
            let version = (n / (EVENTS_PER_WRITER / IMPORTS_PER_WRITER) + 1).to_string();
            let images = (0..20)
                .map(|i| image(&format!("{tag}-img-{i}"), 'a'))
                .collect();
            import_with(
                &store,
                sub,
                &list(&format!("list-{tag}"), &version, &signer, images),
                &signer,
                false,
            );
        }
        store
            .record_event(&NewEvent {
                session: tag.to_owned(),
                event_type: EventType::AvailablePostfix,
                identifier: None,
                payload: serde_json::json!({ "n": n }),
                outcome: EventOutcome::Delivered,
                at: at(n as i64),
            })
            .unwrap();
        store.images(&ImageFilter::default()).unwrap();
    }
}

#[test]
fn concurrent_writers_never_see_database_is_locked() {
    if let (Ok(url), Ok(tag)) = (std::env::var(CHILD_DB_ENV), std::env::var(CHILD_TAG_ENV)) {
        write_load(&url, &tag);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrency::concurrent_writers_never_see_database_is_locked",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CHILD_DB_ENV, &url)
                .env(CHILD_TAG_ENV, format!("p{i}"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || write_load(&url, &format!("t{i}")))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "writer process failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("1 passed"),
            "the child ran no writer:\n{stdout}"
        );
        assert!(
            !stderr.contains("database is locked") && !stdout.contains("database is locked"),
            "{stdout}\n{stderr}"
        );
    }

    let store = Store::open(&url).unwrap();
    let writers = PROCESSES + THREADS;
    assert_eq!(
        store.events(false, None).unwrap().len(),
        writers * EVENTS_PER_WRITER
    );
    assert_eq!(store.subscriptions().unwrap().len(), writers);
    assert_eq!(store.endorsers().unwrap().len(), writers);
    let images = store.images(&ImageFilter::default()).unwrap();
    assert_eq!(images.len(), writers * 20);
    assert!(images.iter().all(|r| r.endorsed && r.selected));
    for sub in store.subscriptions().unwrap() {
        let current = sub.current.unwrap();
        assert_eq!(current.version, IMPORTS_PER_WRITER.to_string());
    }
}
