//! The cloudkeeper fixtures (from `VMC_INTEROP_DIR`, by default `shared/interop` beside the
//! checkout; each test says it is skipped when they are absent): lists signed in 2018 by a real
//! `openssl smime` run with a self-signed CA that is itself the signer.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use openssl::pkey::PKey;
use openssl::x509::X509;
use serde_json::Value;
use vmc_model::ErrorCode;
use vmc_testkit::pki::{self, Ca};
use vmc_trust::{CrlMode, MessageFormat, TrustError, TrustStore, verify};

use crate::{at, opts, verdict};

const SIGNER: &str = "/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd";
const LISTS: [&str; 4] = [
    "imagelist01.signed",
    "imagelist02.signed",
    "imagelist03.signed",
    "imagelist04.signed",
];

/// The fixture directory, or `None` when this test is skipped.
fn base() -> Option<PathBuf> {
    vmc_testkit::interop::cloudkeeper()
}

/// Inside the CA's validity window (2018-02-19 .. 2028-02-17).
fn now() -> DateTime<Utc> {
    at("2023-06-01T00:00:00Z")
}

fn list(base: &Path, name: &str) -> Vec<u8> {
    fs::read(base.join(name)).unwrap()
}

/// The CA with its private key (`auth/key.pem`), to mint CRLs.
fn ca(base: &Path) -> Ca {
    let cert = X509::from_pem(&fs::read(base.join("ca/9da13359.0")).unwrap()).unwrap();
    let key = PKey::private_key_from_pem(&fs::read(base.join("auth/key.pem")).unwrap()).unwrap();
    Ca {
        cert,
        key,
        subject: SIGNER.to_owned(),
        issuer: SIGNER.to_owned(),
        chain: Vec::new(),
    }
}

/// The fixture's CA directory plus a CRL minted with its key.
fn dir_with_crl(base: &Path, revoke_self: bool) -> (tempfile::TempDir, TrustStore) {
    let ca = ca(base);
    let dir = tempfile::tempdir().unwrap();
    fs::copy(base.join("ca/9da13359.0"), dir.path().join("9da13359.0")).unwrap();
    let revoked = if revoke_self {
        vec![ca.cert.as_ref()]
    } else {
        Vec::new()
    };
    let crl = ca.crl(
        &revoked,
        now() - Duration::days(1),
        now() + Duration::days(30),
    );
    pki::write_crl(dir.path(), &ca, &crl);
    assert!(dir.path().join("9da13359.r0").exists());
    let store = TrustStore::load(dir.path()).unwrap();
    assert_eq!((store.ca_count(), store.crl_count()), (1, 1));
    (dir, store)
}

#[test]
fn lists_verify_inside_the_validity_window() {
    let Some(base) = base() else { return };
    let (_dir, store) = dir_with_crl(&base, false);
    for name in LISTS {
        let v = verify(&store, &list(&base, name), &opts(now(), CrlMode::Require))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.format, MessageFormat::SmimeDetached);
        assert_eq!(v.signer.subject, SIGNER);
        assert_eq!(v.signer.issuer, SIGNER);
        assert_eq!(v.signer.chain, vec![SIGNER.to_owned()]);
        assert!(
            v.payload.windows(2).any(|w| w == b"\r\n"),
            "{name}: CRLF payload"
        );
        let json: Value = serde_json::from_slice(&v.payload).unwrap();
        // the JSON's endorser claim is not the signer: that is for a later check to see
        let claim = json["hv:imagelist"]["hv:endorser"]["hv:x509"]["hv:dn"].as_str();
        assert_ne!(claim, Some(SIGNER), "{name}");
    }
    // at both ends of the window
    for t in ["2018-02-19T09:00:00Z", "2028-02-17T08:00:00Z"] {
        assert_eq!(
            verdict(&store, &list(&base, LISTS[0]), at(t), CrlMode::Off),
            None,
            "{t}"
        );
    }
}

#[test]
fn without_a_crl_the_self_signed_signer_needs_crl_mode_if_present_or_off() {
    let Some(base) = base() else { return };
    let store = TrustStore::load(&base.join("ca")).unwrap();
    let result = verify(
        &store,
        &list(&base, LISTS[0]),
        &opts(now(), CrlMode::Require),
    );
    assert!(
        matches!(&result, Err(TrustError::CrlMissing { ca }) if ca == SIGNER),
        "{result:?}"
    );
    for name in LISTS {
        assert_eq!(
            verdict(&store, &list(&base, name), now(), CrlMode::IfPresent),
            None
        );
        assert_eq!(
            verdict(&store, &list(&base, name), now(), CrlMode::Off),
            None
        );
    }
}

#[test]
fn a_minted_crl_is_checked_for_the_self_signed_signer() {
    let Some(base) = base() else { return };
    let (_dir, store) = dir_with_crl(&base, true);
    assert_eq!(
        verdict(&store, &list(&base, LISTS[0]), now(), CrlMode::Require),
        Some(ErrorCode::CertificateRevoked)
    );
    // and it is stale a month later
    let (_dir, store) = dir_with_crl(&base, false);
    assert_eq!(
        verdict(
            &store,
            &list(&base, LISTS[0]),
            now() + Duration::days(31),
            CrlMode::Require
        ),
        Some(ErrorCode::CrlExpired)
    );
}

#[test]
fn outside_the_window_is_certificate_expired() {
    let Some(base) = base() else { return };
    let store = TrustStore::load(&base.join("ca")).unwrap();
    for t in ["2018-01-01T00:00:00Z", "2028-03-01T00:00:00Z"] {
        assert_eq!(
            verdict(&store, &list(&base, LISTS[1]), at(t), CrlMode::Off),
            Some(ErrorCode::CertificateExpired),
            "{t}"
        );
    }
}

#[test]
fn invalid_list_does_not_verify() {
    let Some(base) = base() else { return };
    let (_dir, store) = dir_with_crl(&base, false);
    for mode in [CrlMode::Require, CrlMode::IfPresent, CrlMode::Off] {
        let result = verify(
            &store,
            &list(&base, "imagelist_invalid.signed"),
            &opts(now(), mode),
        );
        // its payload was changed after signing: the signature check (check 2) comes first
        assert!(
            matches!(&result, Err(TrustError::SignatureInvalid { signer, .. })
                if signer == "/C=NA/ST=Narnia/L=Aver/O=TEST/OU=TEST/CN=TEST"),
            "{result:?}"
        );
    }
}
