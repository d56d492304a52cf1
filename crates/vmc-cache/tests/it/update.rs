//! The same list bytes fetched again: `unchanged` only while the checks whose verdict can
//! change on the same bytes still pass (trust state, endorsers, clock), and a refusal keeps the
//! current version.

use chrono::Duration;
use vmc_cache::{Dispatcher, ListReport, UpdateStatus, Vmc};
use vmc_model::{ErrorCode, NewImagePolicy};
use vmc_testkit::pki::write_crl;

use crate::{Gen, GenImage};

fn update(env: &Gen) -> ListReport {
    // A fresh `Vmc` reads the CA directory as it is now.
    let vmc: Vmc = env.open();
    let sub = env.subscription(&vmc);
    let report = vmc.update(&sub, &Dispatcher::new(vmc.config())).unwrap();
    let current = env.subscription(&vmc).current.unwrap();
    assert_eq!(
        current.version, "1",
        "the current version never changes here"
    );
    report
}

fn assert_refused(report: &ListReport, code: ErrorCode) {
    assert_eq!(report.status, UpdateStatus::Failed, "{report:?}");
    assert_eq!(
        report.error.as_ref().map(|e| e.code),
        Some(code),
        "{report:?}"
    );
}

#[test]
fn the_same_bytes_are_unchanged_only_while_trust_endorsement_and_time_still_hold() {
    let env = Gen::new();
    env.publish("1", &[GenImage::new("img-a", 1, 4096)]);
    let vmc = env.open();
    env.subscribe(&vmc, NewImagePolicy::Subscribe);
    drop(vmc);

    let again = update(&env);
    assert_eq!(again.status, UpdateStatus::Unchanged, "{again:?}");
    assert_eq!(again.version.as_deref(), Some("1"));
    assert_eq!(again.identifier.as_deref(), Some(env.list_id));
    assert_eq!(
        again.signer.as_ref().map(|s| s.subject.clone()),
        Some(env.pki.endorser.subject_one_line())
    );

    // Check 4: the endorser's certificate is revoked after the list was imported.
    let revoking = env.pki.root.crl(
        &[&env.pki.revoked.cert, &env.pki.endorser.cert],
        env.now - Duration::days(1),
        env.now + Duration::days(30),
    );
    write_crl(env.ca.path(), &env.pki.root, &revoking);
    assert_refused(&update(&env), ErrorCode::CertificateRevoked);
    write_crl(env.ca.path(), &env.pki.root, &env.pki.root_crl());
    assert_eq!(update(&env).status, UpdateStatus::Unchanged);

    // Check 3: the CA leaves the directory.
    let root_file = env
        .ca
        .path()
        .join(format!("{}.0", env.pki.root.hash_name()));
    let root_pem = std::fs::read(&root_file).unwrap();
    std::fs::remove_file(&root_file).unwrap();
    assert_refused(&update(&env), ErrorCode::CertificateUntrusted);
    std::fs::write(&root_file, root_pem).unwrap();
    assert_eq!(update(&env).status, UpdateStatus::Unchanged);

    // Check 7: the endorser is unlinked.
    let vmc = env.open();
    let sub = env.subscription(&vmc);
    vmc.store().unlink("e1", sub.id).unwrap();
    assert_refused(&update(&env), ErrorCode::SignerNotEndorser);
    vmc.store().link("e1", sub.id).unwrap();
    assert_eq!(update(&env).status, UpdateStatus::Unchanged);

    // Check 9: the list's dc:date:expires passes (30 days; the CRLs stay current longer).
    let fresh_crl = env.pki.root.crl(
        &[&env.pki.revoked.cert],
        env.now - Duration::days(1),
        env.now + Duration::days(90),
    );
    write_crl(env.ca.path(), &env.pki.root, &fresh_crl);
    let fresh_crl = env.pki.intermediate.crl(
        &[],
        env.now - Duration::days(1),
        env.now + Duration::days(90),
    );
    write_crl(env.ca.path(), &env.pki.intermediate, &fresh_crl);
    env.set_now(env.now + Duration::days(31));
    assert_refused(&update(&env), ErrorCode::ListExpired);
}
