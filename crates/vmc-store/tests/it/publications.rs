//! Publications: a file is claimed once per target until its row is deleted, and a change
//! made under a token that was taken over is refused.

use chrono::{TimeZone, Utc};
use vmc_store::{NewPublication, PublicationState};

use crate::db::TestDb;
use crate::fixtures::id;

crate::on_both_backends!(
    a_publication_is_claimed_once_per_target,
    a_taken_over_claim_changes_nothing,
    a_deleted_publication_can_be_claimed_again
);

fn claim<'a>(
    target: &'a str,
    identifier: &'a vmc_model::Identifier,
    token: &'a str,
) -> NewPublication<'a> {
    NewPublication {
        target,
        identifier,
        sha512: "AB",
        version: "1.0",
        list_url: "https://lists.example/l.smime",
        disk_format: "qcow2",
        file_sha512: "ab",
        token,
        claimed_by: "node-a",
        claimed_at: Utc.with_ymd_and_hms(2027, 1, 2, 3, 4, 5).unwrap(),
    }
}

fn a_publication_is_claimed_once_per_target(db: &TestDb) {
    let store = db.open();
    let image = id("img-1");
    let first = store
        .claim_publication(&claim("cloud-a", &image, "t1"))
        .unwrap()
        .unwrap();
    assert_eq!(first.state, PublicationState::Uploading);
    assert_eq!(first.sha512, "ab", "stored lowercase");
    assert_eq!(
        first.changed_at,
        Utc.with_ymd_and_hms(2027, 1, 2, 3, 4, 5).unwrap()
    );
    // A second node (another token) for the same file and target gets nothing.
    assert!(
        store
            .claim_publication(&claim("cloud-a", &image, "t2"))
            .unwrap()
            .is_none()
    );
    // Another target is another publication.
    assert!(
        store
            .claim_publication(&claim("cloud-b", &image, "t3"))
            .unwrap()
            .is_some()
    );
    assert_eq!(store.publications(Some("cloud-a")).unwrap(), vec![first]);
    assert_eq!(store.publications(None).unwrap().len(), 2);
}

fn a_taken_over_claim_changes_nothing(db: &TestDb) {
    let store = db.open();
    let image = id("img-1");
    let mine = store
        .claim_publication(&claim("cloud-a", &image, "t1"))
        .unwrap()
        .unwrap();
    // Another run takes the claim over (new token).
    let mut theirs = mine.clone();
    theirs.token = "t2".into();
    theirs.claimed_by = "node-b".into();
    assert!(store.save_publication("t1", &theirs).unwrap());
    // The first run, unaware, tries to record its result under its old token.
    let mut late = mine.clone();
    late.state = PublicationState::Active;
    late.remote_id = Some("remote".into());
    assert!(!store.save_publication("t1", &late).unwrap());
    let stored = store.publications(None).unwrap();
    assert_eq!(stored, vec![theirs]);
}

fn a_deleted_publication_can_be_claimed_again(db: &TestDb) {
    let store = db.open();
    let image = id("img-1");
    let mut first = store
        .claim_publication(&claim("cloud-a", &image, "t1"))
        .unwrap()
        .unwrap();
    first.state = PublicationState::Deactivated;
    first.reason = Some("expired".into());
    assert!(store.save_publication("t1", &first).unwrap());
    assert!(
        store
            .claim_publication(&claim("cloud-a", &image, "t2"))
            .unwrap()
            .is_none()
    );
    first.state = PublicationState::Deleted;
    assert!(store.save_publication("t1", &first).unwrap());
    let again = store
        .claim_publication(&claim("cloud-a", &image, "t2"))
        .unwrap()
        .unwrap();
    assert_ne!(again.id, first.id);
    let states: Vec<_> = store
        .publications(None)
        .unwrap()
        .iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(
        states,
        [PublicationState::Deleted, PublicationState::Uploading]
    );
}
