//! The openssl-cli interop lists (made at test time by the `openssl` command line, see
//! `vmc_testkit::interop`), verified at the manifest's `verify_at` time.

use std::fs;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::PKey;
use openssl::stack::Stack;
use openssl::x509::X509;
use serde_json::Value;
use vmc_model::ErrorCode;
use vmc_trust::{CrlMode, MessageFormat, TrustError, TrustStore, one_line_dn, rfc2253_dn, verify};

use crate::{at, openssl_cli, opts, verdict};

fn base() -> PathBuf {
    openssl_cli()
}

fn manifest() -> Value {
    serde_json::from_slice(&fs::read(base().join("MANIFEST.json")).unwrap()).unwrap()
}

fn verify_at() -> DateTime<Utc> {
    at(manifest()["verify_at"].as_str().unwrap())
}

fn store(variant: &str) -> TrustStore {
    let store = TrustStore::load(&base().join("pki").join(variant)).unwrap();
    assert!(store.skipped().is_empty(), "{:?}", store.skipped());
    store
}

fn list(name: &str) -> Vec<u8> {
    fs::read(base().join("lists").join(name)).unwrap()
}

/// What this layer (checks 2–4) must say about each list of the manifest. Cases about the
/// JSON content, the endorser binding or the subscription history have a valid signature:
/// they verify here and are refused by later checks.
fn expected_here(case: &str) -> Option<ErrorCode> {
    match case {
        "tampered.smime" => Some(ErrorCode::SignatureInvalid),
        "revoked.smime" => Some(ErrorCode::CertificateRevoked),
        "expired-signer.smime" => Some(ErrorCode::CertificateExpired),
        "rogue.smime" => Some(ErrorCode::CertificateUntrusted),
        "unsigned.json" => Some(ErrorCode::NotSigned),
        _ => None,
    }
}

#[test]
fn every_manifest_case_gets_the_verdict_of_checks_2_to_4() {
    let manifest = manifest();
    let cases = manifest["cases"].as_object().unwrap();
    assert!(cases.len() >= 22, "{}", cases.len());
    let store = store("ca-dir");
    let now = verify_at();
    let mut files: Vec<String> = fs::read_dir(base().join("lists"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    // every list has a case, every case a list
    let mut named: Vec<String> = cases.keys().cloned().collect();
    named.sort();
    assert_eq!(files, named);

    for (case, spec) in cases {
        let expected = expected_here(case);
        let result = verify(&store, &list(case), &opts(now, CrlMode::Require));
        let got = result.as_ref().err().map(|e| e.code().unwrap());
        assert_eq!(got, expected, "{case}: {result:?}");
        // whatever the manifest accepts, this layer accepts
        let accepted = matches!(
            spec["expect"].as_str().unwrap(),
            "accept" | "accept-list" | "reject-image"
        );
        if accepted {
            assert!(result.is_ok(), "{case}");
        }
        if let Ok(v) = result {
            // the payload is what a subscriber parses; JSON cases are JSON
            if case != "not-json.smime" {
                serde_json::from_slice::<Value>(&v.payload)
                    .unwrap_or_else(|e| panic!("{case}: payload is not JSON: {e}"));
            }
        }
    }
}

#[test]
fn good_lists_in_every_layout_name_the_manifest_endorser() {
    let manifest = manifest();
    let store = store("ca-dir");
    let now = verify_at();
    let endorser = &manifest["endorser"];
    let pem_der = Pkcs7::from_pem(&list("good-pem.p7"))
        .unwrap()
        .to_der()
        .unwrap();
    let cases: Vec<(Vec<u8>, MessageFormat, bool)> = vec![
        (list("good.smime"), MessageFormat::SmimeDetached, false),
        (list("good-sha1.smime"), MessageFormat::SmimeDetached, true),
        (list("good-opaque.p7m"), MessageFormat::SmimeOpaque, false),
        (list("good-pem.p7"), MessageFormat::PemPkcs7, false),
        (pem_der, MessageFormat::DerPkcs7, false),
    ];
    for (msg, format, weak) in cases {
        let v = verify(&store, &msg, &opts(now, CrlMode::Require)).unwrap();
        assert_eq!(v.format, format);
        assert_eq!(v.weak_digest, weak, "{format:?}");
        assert_eq!(v.signer.subject, endorser["subject"].as_str().unwrap());
        assert_eq!(v.signer.issuer, endorser["issuer"].as_str().unwrap());
        assert_eq!(
            v.signer.subject_rfc2253,
            "CN=Interop Endorser,OU=Images,O=InteropGrid,C=XX"
        );
        assert_eq!(
            v.signer.issuer_rfc2253,
            "CN=Interop Root CA,O=InteropGrid,C=XX"
        );
        assert_eq!(v.signer.serial, "1000");
        assert_eq!(
            v.signer.chain,
            vec![
                "/C=XX/O=InteropGrid/OU=Images/CN=Interop Endorser".to_owned(),
                "/C=XX/O=InteropGrid/CN=Interop Root CA".to_owned()
            ]
        );
        assert_eq!(v.signer.not_before, at("2026-01-01T00:00:00Z"));
        assert_eq!(v.signer.not_after, at("2036-12-31T00:00:00Z"));
        // the payload has the CRLF line ends it was signed with, and its JSON claim names
        // the signer in the same one-line form
        assert!(v.payload.windows(2).any(|w| w == b"\r\n"));
        let json: Value = serde_json::from_slice(&v.payload).unwrap();
        let x509 = &json["hv:imagelist"]["hv:endorser"]["hv:x509"];
        assert_eq!(x509["hv:dn"].as_str().unwrap(), v.signer.subject);
        assert_eq!(x509["hv:ca"].as_str().unwrap(), v.signer.issuer);
    }
}

#[test]
fn detached_payload_is_the_exact_part_of_the_message() {
    let msg = list("good.smime");
    let v = verify(&store("ca-dir"), &msg, &opts(verify_at(), CrlMode::Require)).unwrap();
    let start = msg.windows(3).position(|w| w == b"{\r\n").unwrap();
    assert_eq!(&msg[start..start + v.payload.len()], v.payload.as_slice());
    assert!(v.payload.ends_with(b"}"));
}

#[test]
fn one_line_and_rfc2253_forms_match_the_openssl_cli() {
    // `openssl x509 -noout -subject -issuer -nameopt compat` / `-nameopt RFC2253`
    let expected = [
        (
            "endorser.pem",
            "/C=XX/O=InteropGrid/OU=Images/CN=Interop Endorser",
            "/C=XX/O=InteropGrid/CN=Interop Root CA",
            "CN=Interop Endorser,OU=Images,O=InteropGrid,C=XX",
        ),
        (
            "endorser2.pem",
            "/C=XX/O=InteropGrid/OU=Images/CN=Interop Second Endorser",
            "/C=XX/O=InteropGrid/CN=Interop Intermediate CA",
            "CN=Interop Second Endorser,OU=Images,O=InteropGrid,C=XX",
        ),
        (
            "inter-ca.pem",
            "/C=XX/O=InteropGrid/CN=Interop Intermediate CA",
            "/C=XX/O=InteropGrid/CN=Interop Root CA",
            "CN=Interop Intermediate CA,O=InteropGrid,C=XX",
        ),
        (
            "rogue.pem",
            "/C=XX/O=InteropGrid/OU=Images/CN=Interop Endorser",
            "/C=XX/O=InteropRogue/CN=Interop Rogue CA",
            "CN=Interop Endorser,OU=Images,O=InteropGrid,C=XX",
        ),
        (
            "rogue-ca.pem",
            "/C=XX/O=InteropRogue/CN=Interop Rogue CA",
            "/C=XX/O=InteropRogue/CN=Interop Rogue CA",
            "CN=Interop Rogue CA,O=InteropRogue,C=XX",
        ),
    ];
    for (file, subject, issuer, subject_rfc) in expected {
        let cert = X509::from_pem(&fs::read(base().join("pki").join(file)).unwrap()).unwrap();
        assert_eq!(one_line_dn(cert.subject_name()), subject, "{file}");
        assert_eq!(one_line_dn(cert.issuer_name()), issuer, "{file}");
        assert_eq!(rfc2253_dn(cert.subject_name()), subject_rfc, "{file}");
    }
}

#[test]
fn lists_verify_only_inside_the_certificates_validity() {
    let store = store("ca-dir");
    // the certificates start on 2026-01-01
    assert_eq!(
        verdict(
            &store,
            &list("good.smime"),
            at("2025-06-01T00:00:00Z"),
            CrlMode::Off
        ),
        Some(ErrorCode::CertificateExpired)
    );
    // the expired signer was valid in 2020, but its root was not yet: the whole chain counts
    let result = verify(
        &store,
        &list("expired-signer.smime"),
        &opts(at("2020-06-01T00:00:00Z"), CrlMode::Off),
    );
    assert!(
        matches!(&result, Err(TrustError::CertificateNotYetValid { subject, .. })
            if subject == "/C=XX/O=InteropGrid/CN=Interop Root CA"),
        "{result:?}"
    );
}

#[test]
fn ca_dir_stale_is_crl_expired() {
    let store = store("ca-dir-stale");
    let now = verify_at();
    let good = list("good.smime");
    for mode in [CrlMode::Require, CrlMode::IfPresent] {
        let result = verify(&store, &good, &opts(now, mode));
        assert!(
            matches!(&result, Err(TrustError::CrlExpired { ca, next_update })
                if ca == "/C=XX/O=InteropGrid/CN=Interop Root CA"
                    && *next_update == at("2020-02-01T00:00:00Z")),
            "{result:?}"
        );
    }
    assert_eq!(verdict(&store, &good, now, CrlMode::Off), None);
    assert_eq!(
        verdict(&store, &list("revoked.smime"), now, CrlMode::Require),
        Some(ErrorCode::CertificateRevoked)
    );
    let stale: Vec<_> = store
        .crl_status(now)
        .into_iter()
        .filter(|s| s.stale)
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        stale[0].ca_subject,
        "/C=XX/O=InteropGrid/CN=Interop Root CA"
    );
}

#[test]
fn ca_dir_nocrl_is_crl_missing_only_in_require_mode() {
    let store = store("ca-dir-nocrl");
    assert_eq!((store.ca_count(), store.crl_count()), (2, 0));
    let now = verify_at();
    let good = list("good.smime");
    let result = verify(&store, &good, &opts(now, CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CrlMissing { ca }) if ca == "/C=XX/O=InteropGrid/CN=Interop Root CA"),
        "{result:?}"
    );
    assert_eq!(verdict(&store, &good, now, CrlMode::IfPresent), None);
    assert_eq!(verdict(&store, &good, now, CrlMode::Off), None);
    // the other verdicts do not depend on CRLs
    assert_eq!(
        verdict(&store, &list("rogue.smime"), now, CrlMode::IfPresent),
        Some(ErrorCode::CertificateUntrusted)
    );
    assert_eq!(
        verdict(&store, &list("tampered.smime"), now, CrlMode::Off),
        Some(ErrorCode::SignatureInvalid)
    );
}

/// No list of the fixtures is signed by endorser2: sign one here with its key.
fn signed_by_endorser2(with_intermediate: bool) -> Vec<u8> {
    let pki = base().join("pki");
    let cert = X509::from_pem(&fs::read(pki.join("endorser2.pem")).unwrap()).unwrap();
    let key = PKey::private_key_from_pem(&fs::read(pki.join("endorser2.key")).unwrap()).unwrap();
    let mut certs = Stack::new().unwrap();
    if with_intermediate {
        let inter = X509::from_pem(&fs::read(pki.join("inter-ca.pem")).unwrap()).unwrap();
        certs.push(inter).unwrap();
    }
    let payload = fs::read(base().join("lists/good.smime")).unwrap();
    let payload = &payload[..200]; // any bytes will do at this layer
    let flags = Pkcs7Flags::DETACHED;
    let p7 = Pkcs7::sign(&cert, &key, &certs, payload, flags).unwrap();
    p7.to_smime(payload, flags).unwrap()
}

#[test]
fn endorser2_chains_through_the_intermediate() {
    let now = verify_at();
    let full = store("ca-dir");
    let msg = signed_by_endorser2(false);
    let v = verify(&full, &msg, &opts(now, CrlMode::Require)).unwrap();
    assert_eq!(
        v.signer.chain,
        vec![
            "/C=XX/O=InteropGrid/OU=Images/CN=Interop Second Endorser".to_owned(),
            "/C=XX/O=InteropGrid/CN=Interop Intermediate CA".to_owned(),
            "/C=XX/O=InteropGrid/CN=Interop Root CA".to_owned(),
        ]
    );

    let nointer = store("ca-dir-nointer");
    // good.smime is signed under the root: unaffected
    assert_eq!(
        verdict(&nointer, &list("good.smime"), now, CrlMode::Require),
        None
    );
    // the intermediate neither in the directory nor in the message
    assert_eq!(
        verdict(&nointer, &msg, now, CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
    // the intermediate from the message: chains, but has no CRL in the directory
    let with_inter = signed_by_endorser2(true);
    let result = verify(&nointer, &with_inter, &opts(now, CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CrlMissing { ca }) if ca == "/C=XX/O=InteropGrid/CN=Interop Intermediate CA"),
        "{result:?}"
    );
    assert_eq!(
        verdict(&nointer, &with_inter, now, CrlMode::IfPresent),
        None
    );
    assert_eq!(verdict(&nointer, &with_inter, now, CrlMode::Off), None);
}

#[test]
fn lf_rewritten_fixture_still_verifies_to_the_signed_bytes() {
    let store = store("ca-dir");
    let original = verify(
        &store,
        &list("good.smime"),
        &opts(verify_at(), CrlMode::Require),
    )
    .unwrap();
    let lf = String::from_utf8(list("good.smime"))
        .unwrap()
        .replace("\r\n", "\n");
    let v = verify(&store, lf.as_bytes(), &opts(verify_at(), CrlMode::Require)).unwrap();
    assert_eq!(v.payload, original.payload);
}
