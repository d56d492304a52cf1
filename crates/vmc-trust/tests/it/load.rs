//! Loading CA directories: counts, skipped files, duplicates, size.

use std::fs;
use std::time::Instant;

use chrono::Duration;
use vmc_testkit::pki::{self, Ca, CaDirOptions, TestPki, Validity};
use vmc_trust::{CrlMode, TrustError, TrustStore};

use crate::{at, openssl_cli, verdict};

#[test]
fn interop_directories_load_completely() {
    let pki = openssl_cli().join("pki");
    for (variant, cas, crls) in [
        ("ca-dir", 2, 2),
        ("ca-dir-stale", 2, 2),
        ("ca-dir-nocrl", 2, 0),
        ("ca-dir-nointer", 1, 1),
    ] {
        let store = TrustStore::load(&pki.join(variant)).unwrap();
        assert_eq!(
            (store.ca_count(), store.crl_count()),
            (cas, crls),
            "{variant}"
        );
        assert!(
            store.skipped().is_empty(),
            "{variant}: {:?}",
            store.skipped()
        );
        assert_eq!(store.root_certificates().len(), cas);
        assert_eq!(store.crl_status(at("2027-06-01T00:00:00Z")).len(), cas);
    }
}

#[test]
fn unreadable_directory_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let err = TrustStore::load(&missing).unwrap_err();
    assert!(matches!(&err, TrustError::CaDirUnreadable { path, .. } if *path == missing));
    assert_eq!(err.code(), None);
    let not_a_dir = dir.path().join("README.md");
    fs::write(&not_a_dir, "not a directory").unwrap();
    assert!(TrustStore::load(&not_a_dir).is_err());
}

#[test]
fn malformed_and_unreadable_files_are_skipped_and_reported() {
    let now = at("2030-01-15T12:00:00Z");
    let pki = TestPki::generate(now);
    let dir = pki.ca_dir(CaDirOptions::default());
    let p = dir.path();
    fs::write(
        p.join("deadbeef.0"),
        b"-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    fs::write(p.join("deadbeef.r0"), b"garbage").unwrap();
    fs::write(p.join("junk.pem"), b"").unwrap();
    fs::write(
        p.join("bad.namespaces"),
        b"TO Issuer \"/C=XX\" MAYBE Subject \".*\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(p.join("nowhere"), p.join("cafebabe.0")).unwrap();
    // not CA-directory files at all: ignored silently
    fs::write(p.join("README"), b"hello").unwrap();
    fs::write(p.join("AEGIS.info"), b"alias = AEGIS").unwrap();
    fs::write(p.join("AEGIS.crl_url"), b"http://example.invalid/crl").unwrap();

    let store = TrustStore::load(p).unwrap();
    assert_eq!((store.ca_count(), store.crl_count()), (2, 2));
    let mut skipped: Vec<String> = store
        .skipped()
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "bad.namespaces",
            "cafebabe.0",
            "deadbeef.0",
            "deadbeef.r0",
            "junk.pem"
        ]
    );
    assert!(store.skipped().iter().all(|s| !s.reason.is_empty()));
    // and the store still works
    assert_eq!(
        verdict(
            &store,
            &pki.endorser.sign_smime(b"{}"),
            now,
            CrlMode::Require
        ),
        None
    );
}

#[test]
fn der_files_aliases_and_duplicates() {
    let now = at("2030-01-15T12:00:00Z");
    let pki = TestPki::generate(now);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // the root as `<hash>.0` and as an IGTF alias `.pem`; the intermediate in DER
    pki::write_cert(p, &pki.root.cert);
    fs::write(p.join("TestRoot.pem"), pki.root.cert.to_pem().unwrap()).unwrap();
    fs::write(
        p.join(format!("{}.0", pki.intermediate.hash_name())),
        pki.intermediate.cert.to_der().unwrap(),
    )
    .unwrap();
    // CRLs: the root's in DER as `<hash>.r0`, again in PEM as `.crl.pem`
    fs::write(
        p.join(format!("{}.r0", pki.root.hash_name())),
        pki.root_crl().to_der().unwrap(),
    )
    .unwrap();
    let root_crl = pki.root_crl();
    fs::write(p.join("TestRoot.crl.pem"), root_crl.to_pem().unwrap()).unwrap();
    pki::write_crl(p, &pki.intermediate, &pki.intermediate_crl());

    let store = TrustStore::load(p).unwrap();
    assert!(store.skipped().is_empty(), "{:?}", store.skipped());
    assert_eq!(store.ca_count(), 2);
    assert_eq!(store.crl_count(), 3); // two distinct root CRLs (issued at the same time) + one
    let msg = pki.endorser2.sign_smime(b"{}");
    assert_eq!(verdict(&store, &msg, now, CrlMode::Require), None);
    assert_eq!(
        verdict(
            &store,
            &pki.revoked.sign_smime(b"{}"),
            now,
            CrlMode::Require
        ),
        Some(vmc_model::ErrorCode::CertificateRevoked)
    );
}

#[test]
fn a_directory_of_two_hundred_cas_loads() {
    let now = at("2030-01-15T12:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let mut cas = Vec::new();
    for i in 0..200u32 {
        let ca = Ca::root(
            &format!("/C=XX/O=Bundle {i}/CN=Bundle CA {i}"),
            Validity::around(now, i + 1),
        );
        pki::write_cert(dir.path(), &ca.cert);
        let crl = ca.crl(&[], now - Duration::days(1), now + Duration::days(30));
        pki::write_crl(dir.path(), &ca, &crl);
        fs::write(
            dir.path().join(format!("{}.namespaces", ca.hash_name())),
            format!("TO Issuer SELF PERMIT Subject \"/C=XX/O=Bundle {i}/.*\"\n"),
        )
        .unwrap();
        cas.push(ca);
    }
    let start = Instant::now();
    let store = TrustStore::load(dir.path()).unwrap();
    let elapsed = start.elapsed();
    eprintln!("loaded 200 CAs, 200 CRLs and 200 namespaces files in {elapsed:?}");
    assert_eq!(store.ca_count(), 200);
    assert_eq!(store.crl_count(), 200);
    assert_eq!(store.policy_count(), 200);
    assert!(store.skipped().is_empty(), "{:?}", store.skipped());
    assert!(store.crl_status(now).iter().all(|s| s.present && !s.stale));

    // a signer under one of them verifies among the 200, in its namespace only
    let ca = &cas[137];
    let leaf = ca.issue_leaf("/C=XX/O=Bundle 137/CN=signer", Validity::around(now, 9));
    let start = Instant::now();
    assert_eq!(
        verdict(&store, &leaf.sign_smime(b"{}"), now, CrlMode::Require),
        None
    );
    eprintln!("verified one list against 200 CAs in {:?}", start.elapsed());
    let outsider = ca.issue_leaf("/C=XX/O=Bundle 1/CN=signer", Validity::around(now, 10));
    assert_eq!(
        verdict(&store, &outsider.sign_smime(b"{}"), now, CrlMode::Require),
        Some(vmc_model::ErrorCode::CertificateUntrusted)
    );
}
