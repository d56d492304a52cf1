//! IGTF namespace policies (`*.namespaces`, `*.signing_policy`) written next to a generated
//! CA directory.

use std::fs;

use chrono::{DateTime, Utc};
use vmc_model::ErrorCode;
use vmc_testkit::pki::{self, CaDirOptions, TestPki};
use vmc_trust::{CrlMode, TrustError, TrustStore, verify};

use crate::{at, opts, verdict};

fn now() -> DateTime<Utc> {
    at("2030-01-15T12:00:00Z")
}

fn setup(files: &[(&str, String)]) -> (TestPki, tempfile::TempDir, TrustStore) {
    let pki = TestPki::generate(now());
    let dir = pki.ca_dir(CaDirOptions::default());
    for (name, text) in files {
        let name = name
            .replace("ROOT", &pki.root.hash_name())
            .replace("INTER", &pki.intermediate.hash_name());
        fs::write(dir.path().join(name), text).unwrap();
    }
    let store = TrustStore::load(dir.path()).unwrap();
    assert!(store.skipped().is_empty(), "{:?}", store.skipped());
    (pki, dir, store)
}

#[test]
fn namespaces_file_refuses_a_signer_outside_its_cas_namespace() {
    let ns = format!(
        "# test\nTO Issuer \"{}\" \\\n  PERMIT Subject \"/C=XX/O=TestGrid/OU=Images/CN=Test Endorser\"\n\
         TO Issuer SELF PERMIT Subject \"{}\"\n",
        pki::ROOT_DN,
        pki::INTERMEDIATE_DN
    );
    let (pki, _dir, store) = setup(&[("ROOT.namespaces", ns)]);
    assert_eq!(store.policy_count(), 1);
    let ok = pki.endorser.sign_smime(b"{}");
    assert_eq!(verdict(&store, &ok, now(), CrlMode::Require), None);
    // endorser2 is under the intermediate, which the root's namespace permits
    assert_eq!(
        verdict(
            &store,
            &pki.endorser2.sign_smime(b"{}"),
            now(),
            CrlMode::Require
        ),
        None
    );
    let result = verify(
        &store,
        &pki.other.sign_smime(b"{}"),
        &opts(now(), CrlMode::Require),
    );
    assert!(
        matches!(&result, Err(TrustError::NamespaceViolation { subject, issuer, .. })
            if subject == pki::OTHER_DN && issuer == pki::ROOT_DN),
        "{result:?}"
    );
    assert_eq!(
        result.err().and_then(|e| e.code()),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn namespaces_constrain_intermediates_too() {
    // the root permits only end entities under O=TestGrid/OU=Images: not the intermediate
    let ns = format!(
        "TO Issuer \"{}\" PERMIT Subject \"/C=XX/O=TestGrid/OU=Images/.*\"\n",
        pki::ROOT_DN
    );
    let (pki, _dir, store) = setup(&[("ROOT.namespaces", ns)]);
    let result = verify(
        &store,
        &pki.endorser2.sign_smime(b"{}"),
        &opts(now(), CrlMode::Off),
    );
    assert!(
        matches!(&result, Err(TrustError::NamespaceViolation { subject, .. }) if subject == pki::INTERMEDIATE_DN),
        "{result:?}"
    );
    assert_eq!(
        verdict(&store, &pki.endorser.sign_smime(b"{}"), now(), CrlMode::Off),
        None
    );
}

#[test]
fn deny_rules_win() {
    let ns = format!(
        "TO Issuer \"{root}\" PERMIT Subject \"/C=XX/O=TestGrid/.*\"\n\
         TO Issuer \"{root}\" DENY Subject \".*/CN=Test Other Endorser\"\n",
        root = pki::ROOT_DN
    );
    let (pki, _dir, store) = setup(&[("ROOT.namespaces", ns)]);
    assert_eq!(
        verdict(&store, &pki.endorser.sign_smime(b"{}"), now(), CrlMode::Off),
        None
    );
    assert_eq!(
        verdict(&store, &pki.other.sign_smime(b"{}"), now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn signing_policy_is_enforced_when_there_is_no_namespaces_file() {
    let sp = format!(
        "# EACL\n access_id_CA      X509         '{}'\n pos_rights        globus        CA:sign\n \
         cond_subjects     globus       '\"/C=XX/O=TestGrid/OU=Images/CN=Test Endorser\" \"/C=XX/O=TestGrid/CN=*\"'\n",
        pki::ROOT_DN
    );
    let (pki, _dir, store) = setup(&[("ROOT.signing_policy", sp)]);
    assert_eq!(
        verdict(&store, &pki.endorser.sign_smime(b"{}"), now(), CrlMode::Off),
        None
    );
    assert_eq!(
        verdict(
            &store,
            &pki.endorser2.sign_smime(b"{}"),
            now(),
            CrlMode::Off
        ),
        None
    );
    assert_eq!(
        verdict(&store, &pki.other.sign_smime(b"{}"), now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn namespaces_override_signing_policy() {
    let sp = format!(
        "access_id_CA X509 '{}'\ncond_subjects globus '\"/C=XX/*\"'\n",
        pki::ROOT_DN
    );
    let ns = format!(
        "TO Issuer \"{}\" PERMIT Subject \"/C=XX/O=TestGrid/OU=Images/CN=Test Endorser\"\n",
        pki::ROOT_DN
    );
    let (pki, _dir, store) = setup(&[("ROOT.signing_policy", sp), ("ROOT.namespaces", ns)]);
    assert_eq!(
        verdict(&store, &pki.other.sign_smime(b"{}"), now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn a_ca_without_policy_is_unconstrained() {
    // a policy for the intermediate only: the root's signers are free
    let ns = format!(
        "TO Issuer \"{}\" PERMIT Subject \"/C=XX/O=Nobody/.*\"\n",
        pki::INTERMEDIATE_DN
    );
    let (pki, _dir, store) = setup(&[("INTER.namespaces", ns)]);
    assert_eq!(
        verdict(&store, &pki.other.sign_smime(b"{}"), now(), CrlMode::Off),
        None
    );
    assert_eq!(
        verdict(
            &store,
            &pki.endorser2.sign_smime(b"{}"),
            now(),
            CrlMode::Off
        ),
        Some(ErrorCode::CertificateUntrusted)
    );
}
