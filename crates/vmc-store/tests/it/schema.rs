//! The schema: `src/schema.rs` matches what the migrations create, on every backend, and a
//! database made by an older schema version is migrated on open with its data kept.

use std::path::Path;

use vmc_model::{EventType, NewImagePolicy};
use vmc_store::{EventOutcome, ImageFilter};

use crate::db::{Column, TestDb};
use crate::fixtures::{id, identity, image, import, list};

crate::on_both_backends!(
    schema_rs_matches_migrations,
    older_schema_is_migrated_on_open,
    schema_status_names_migrations_of_a_newer_vmc,
);

/// The columns `src/schema.rs` declares, parsed from its text.
fn schema_rs_columns() -> Vec<Column> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/schema.rs"))
        .unwrap();
    let mut columns = Vec::new();
    let mut table: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        // `    name (primary key) {` opens a table, `    }` closes it.
        let indent = line.len() - line.trim_start().len();
        if indent == 4 && trimmed.ends_with('{') {
            table = Some(trimmed.split_whitespace().next().unwrap().to_owned());
            continue;
        }
        if indent == 4 && trimmed == "}" {
            table = None;
            continue;
        }
        let (Some(table), Some((name, ty))) = (&table, trimmed.split_once(" -> ")) else {
            continue;
        };
        let ty = ty.trim_end_matches(',');
        let (nullable, ty) = match ty
            .strip_prefix("Nullable<")
            .and_then(|t| t.strip_suffix('>'))
        {
            Some(inner) => (true, inner),
            None => (false, ty),
        };
        let sql_type = match ty {
            "Int8" | "BigInt" => "BigInt",
            "Bytea" | "Binary" => "Binary",
            other => other,
        };
        columns.push(Column {
            table: table.clone(),
            name: name.trim_start_matches("r#").to_owned(),
            sql_type: sql_type.to_owned(),
            nullable,
        });
    }
    columns.sort();
    columns
}

fn schema_rs_matches_migrations(db: &TestDb) {
    let declared = schema_rs_columns();
    assert!(
        declared.len() > 40,
        "schema.rs parsed to {} columns",
        declared.len()
    );
    assert!(
        declared
            .iter()
            .any(|c| c.table == "list_versions" && c.name == "raw" && c.sql_type == "Binary")
    );
    drop(db.open());
    let live = db.columns();
    let missing: Vec<&Column> = declared.iter().filter(|c| !live.contains(c)).collect();
    let extra: Vec<&Column> = live.iter().filter(|c| !declared.contains(c)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "src/schema.rs and the {} migrations disagree (regenerate it, see diesel.toml)\n\
         in schema.rs only: {missing:#?}\nin the database only: {extra:#?}",
        db.backend()
    );
}

fn older_schema_is_migrated_on_open(db: &TestDb) {
    db.migrate_first_only();
    assert_eq!(db.applied_migrations().len(), 1);
    assert!(!db.index_names().iter().any(|i| i == "images_sha512"));
    // Data written by the older version, in its schema.
    db.execute(
        "INSERT INTO endorsers (id) VALUES ('old-endorser');
         INSERT INTO identities (endorser_id, subject, issuer) VALUES ('old-endorser', '/CN=Old', '/CN=CA');
         INSERT INTO subscriptions (url, new_images) VALUES ('https://example.org/old', 'subscribe');
         INSERT INTO events (session, event_type, payload, outcome, failure, at)
             VALUES ('s', 'ProcessPrefix', '{}', 'failed', 'boom', '2027-01-01T00:00:00.000000000Z');
         INSERT INTO cache_entries (identifier, state, filename, size, sha512, cached_at)
             VALUES ('kept', 'cached', 'kept', 10, 'aa', '2027-01-01T00:00:00.000000000Z');
         INSERT INTO cache_entries (identifier, state, filename, size, sha512, cached_at,
                 expired_at, expiry_reason, expired_file)
             VALUES ('gone', 'expired', 'gone', 11, 'bb', '2027-01-01T00:00:00.000000000Z',
                 '2027-01-02T00:00:00.000000000Z', 'removed', 'gone.2027-01-02_00-00-00'),
                 ('lost', 'expired', 'lost', 12, 'cc', '2027-01-01T00:00:00.000000000Z',
                 '2027-01-03T00:00:00.000000000Z', 'corrupt', '');",
    );

    let store = db.open();
    let applied = db.applied_migrations();
    assert_eq!(applied.len(), db.migration_count(), "{applied:?}");
    let indexes = db.index_names();
    assert!(indexes.iter().any(|i| i == "images_sha512"), "{indexes:?}");
    assert!(indexes.iter().any(|i| i == "events_failed"), "{indexes:?}");

    let endorser = store.find_endorser("/CN=Old").unwrap().unwrap();
    assert_eq!(endorser.id, "old-endorser");
    let sub = store
        .find_subscription("https://example.org/old")
        .unwrap()
        .unwrap();
    assert_eq!(sub.new_images, NewImagePolicy::Subscribe);
    let events = store.events(true, None).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::ProcessPrefix);
    assert_eq!(
        events[0].outcome,
        EventOutcome::Failed {
            message: "boom".into()
        }
    );

    // And the migrated database works as a new one.
    let signer = identity("/CN=Old", "/CN=CA");
    store.link("old-endorser", sub.id).unwrap();
    import(
        &store,
        sub.id,
        &list("L", "1", &signer, vec![image("img-1", 'a')]),
        &signer,
    );
    let records = store.images(&ImageFilter::default()).unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].endorsed && records[0].selected);
    assert_eq!(records[0].image.identifier, id("img-1"));
    // Issue 20: a lost file that an older version recorded as an expiry named "" is missing.
    let cached: Vec<String> = store
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.identifier.to_string())
        .collect();
    assert_eq!(cached, ["kept"]);
    let expired = store.expired_entries().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].file, "gone.2027-01-02_00-00-00");
    let missing = store.missing_entries().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].entry.identifier, id("lost"));
    assert_eq!(missing[0].entry.size, 12);
    assert_eq!(
        missing[0].since,
        chrono::DateTime::parse_from_rfc3339("2027-01-03T00:00:00Z").unwrap()
    );
    let old_at = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap();
    assert_eq!(store.events(false, None).unwrap()[0].at, old_at);
}

fn schema_status_names_migrations_of_a_newer_vmc(db: &TestDb) {
    let store = db.open();
    let status = store.schema_status().unwrap();
    assert_eq!(status.applied, db.applied_migrations());
    assert_eq!(status.embedded, status.applied);
    assert_eq!(status.embedded.len(), db.migration_count());
    assert!(status.unknown().is_empty() && status.pending().is_empty());
    // A newer vmc sharing the database applied a migration this build does not carry.
    db.execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000');");
    let status = store.schema_status().unwrap();
    assert_eq!(status.unknown(), ["29991231000000"]);
    assert!(status.pending().is_empty());
}
