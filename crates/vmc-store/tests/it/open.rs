//! Opening: URL forms, directory creation, connection settings, and the errors a bad URL or
//! a foreign database gives.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use vmc_store::{Store, StoreError};

#[derive(QueryableByName)]
struct Mode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

#[test]
fn sqlite_url_forms_name_the_same_file_and_create_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("vmc.db");
    assert!(!path.parent().unwrap().exists());
    let abs_url = format!("sqlite://{}", path.display());
    assert!(abs_url.starts_with("sqlite:///"));
    {
        let store = Store::open(&abs_url).unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert_eq!(store.location(), abs_url);
        store.add_endorser("e", &[]).unwrap();
    }
    assert!(path.is_file());
    let plain = Store::open(path.to_str().unwrap()).unwrap();
    assert_eq!(plain.endorsers().unwrap().len(), 1);
    let short = Store::open(&format!("sqlite:{}", path.display())).unwrap();
    assert_eq!(short.endorsers().unwrap().len(), 1);

    // The file is in WAL mode (a property of the file, seen from any connection).
    let mut raw = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
        .get_result(&mut raw)
        .unwrap();
    assert_eq!(mode.journal_mode, "wal");
}

#[test]
fn foreign_keys_are_enforced_on_the_store_connection() {
    let store = Store::open(":memory:").unwrap();
    let sub = store
        .add_subscription(&vmc_store::NewSubscription {
            url: "https://example.org/list".into(),
            new_images: vmc_model::NewImagePolicy::Refuse,
            auth: None,
            enabled: true,
        })
        .unwrap();
    store.add_endorser("e", &[]).unwrap();
    store.link("e", sub.id).unwrap();
    store.remove_endorser("e").unwrap();
    // ON DELETE CASCADE ran: the link went with the endorser, so a new endorser of that name
    // starts unlinked.
    assert!(
        store
            .add_endorser("e", &[])
            .unwrap()
            .subscriptions
            .is_empty()
    );
}

#[test]
fn unknown_schemes_are_refused() {
    let err = Store::open("mysql://root:hunter2@127.0.0.1/vmc").unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_url_without_the_feature_says_so() {
    for url in [
        "postgres://vmc:hunter2@127.0.0.1/vmc",
        "postgresql://127.0.0.1/vmc",
    ] {
        let err = Store::open(url).unwrap_err();
        assert!(matches!(err, StoreError::PostgresNotBuilt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("feature `postgres`"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[cfg(feature = "postgres")]
#[test]
fn unreachable_postgres_is_an_open_error_without_the_password() {
    // Port 1 on loopback: nothing listens there.
    let err = Store::open("postgres://vmc:hunter2@127.0.0.1:1/vmc?connect_timeout=5").unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[test]
fn a_foreign_database_fails_the_migration_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.db");
    let mut raw = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    raw.batch_execute("CREATE TABLE endorsers (name TEXT);")
        .unwrap();
    drop(raw);
    let err = Store::open(path.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, StoreError::Migration { .. }), "{err}");
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("endorsers"), "{source}");

    // The failed migration left nothing half done: the foreign table is as it was.
    let mut raw = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    raw.batch_execute("INSERT INTO endorsers (name) VALUES ('still mine');")
        .unwrap();
    assert!(raw.batch_execute("SELECT * FROM identities;").is_err());
}

#[test]
fn a_file_that_is_no_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let err = Store::open(path.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Open { .. } | StoreError::Configure { .. } | StoreError::Migration { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_directory_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let err = Store::open(&format!("sqlite://{}/sub/vmc.db", blocker.display())).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
}
