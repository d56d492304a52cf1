//! Verification against the test PKI of vmc-testkit, generated in code around a fixed instant.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;
use vmc_model::ErrorCode;
use vmc_testkit::pki::{self, CaDirOptions, SignFormat, SignOptions, TestPki};
use vmc_trust::{CrlMode, MessageFormat, TrustError, TrustStore, verify};

use crate::{at, opts, verdict};

const PAYLOAD: &[u8] = b"{\n  \"hv:imagelist\": {\n    \"dc:title\": \"generated\"\n  }\n}\n";

fn now() -> DateTime<Utc> {
    at("2030-01-15T12:00:00Z")
}

struct Fixture {
    pki: TestPki,
    _dir: tempfile::TempDir,
    store: TrustStore,
}

fn fixture_with(options: CaDirOptions) -> Fixture {
    let pki = TestPki::generate(now());
    let dir = pki.ca_dir(options);
    let store = TrustStore::load(dir.path()).unwrap();
    Fixture {
        pki,
        _dir: dir,
        store,
    }
}

fn fixture() -> Fixture {
    fixture_with(CaDirOptions::default())
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes()
}

#[test]
fn detached_smime_verifies_and_returns_the_canonical_payload() {
    let f = fixture();
    assert_eq!((f.store.ca_count(), f.store.crl_count()), (2, 2));
    let msg = f.pki.endorser.sign_smime(PAYLOAD);
    let v = verify(&f.store, &msg, &opts(now(), CrlMode::Require)).unwrap();
    assert_eq!(v.format, MessageFormat::SmimeDetached);
    // signed like `openssl smime -sign`: text canonicalised to CRLF, and those are the bytes
    assert_eq!(v.payload, crlf(PAYLOAD));
    assert!(!v.weak_digest);
    let s = &v.signer;
    assert_eq!(s.subject, pki::ENDORSER_DN);
    assert_eq!(s.issuer, pki::ROOT_DN);
    assert_eq!(
        s.subject_rfc2253,
        "CN=Test Endorser,OU=Images,O=TestGrid,C=XX"
    );
    assert_eq!(s.issuer_rfc2253, "CN=Test Root CA,O=TestGrid,C=XX");
    assert_eq!(s.serial, "1000");
    assert_eq!(s.serial, f.pki.endorser.serial_hex());
    assert_eq!(s.not_before, now() - Duration::days(30));
    assert_eq!(s.not_after, now() + Duration::days(3650));
    assert_eq!(
        s.chain,
        vec![pki::ENDORSER_DN.to_owned(), pki::ROOT_DN.to_owned()]
    );
}

#[test]
fn binary_smime_keeps_lf_and_crlf_payloads_exact() {
    let f = fixture();
    for payload in [
        PAYLOAD.to_vec(),
        crlf(PAYLOAD),
        b"no final newline".to_vec(),
    ] {
        let msg = f.pki.endorser.sign_smime_binary(&payload);
        let v = verify(&f.store, &msg, &opts(now(), CrlMode::Require)).unwrap();
        assert_eq!(v.payload, payload);
    }
}

#[test]
fn opaque_pem_and_der_verify_with_their_format() {
    let f = fixture();
    let cases = [
        (
            f.pki.endorser.sign_opaque(PAYLOAD),
            MessageFormat::SmimeOpaque,
        ),
        (f.pki.endorser.sign_pem(PAYLOAD), MessageFormat::PemPkcs7),
        (f.pki.endorser.sign_der(PAYLOAD), MessageFormat::DerPkcs7),
    ];
    for (msg, format) in cases {
        let v = verify(&f.store, &msg, &opts(now(), CrlMode::Require)).unwrap();
        assert_eq!(v.format, format);
        assert_eq!(v.payload, PAYLOAD, "{format:?}");
    }
}

#[test]
fn text_mode_signature_yields_the_list_without_its_mime_header() {
    let f = fixture();
    let options = SignOptions {
        text: true,
        ..SignOptions::default()
    };
    let msg = f.pki.endorser.sign_with(PAYLOAD, &options);
    let v = verify(&f.store, &msg, &opts(now(), CrlMode::Require)).unwrap();
    assert_eq!(v.payload, crlf(PAYLOAD));
}

#[test]
fn tampered_payload_is_signature_invalid_in_every_format() {
    let f = fixture();
    let tamper = |mut msg: Vec<u8>| {
        let pos = msg
            .windows(9)
            .position(|w| w == b"generated")
            .expect("payload visible in the message");
        msg[pos] = b'G';
        msg
    };
    let detached = tamper(f.pki.endorser.sign_smime(PAYLOAD));
    let der = tamper(f.pki.endorser.sign_der(PAYLOAD));
    for msg in [detached, der] {
        let result = verify(&f.store, &msg, &opts(now(), CrlMode::Require));
        assert!(
            matches!(result, Err(TrustError::SignatureInvalid { .. })),
            "{result:?}"
        );
        assert_eq!(
            result.err().and_then(|e| e.code()),
            Some(ErrorCode::SignatureInvalid)
        );
    }
}

#[test]
fn lf_converted_canonical_message_still_verifies() {
    // A CRLF-signed message whose line ends were rewritten to LF in transit.
    let f = fixture();
    let msg = String::from_utf8(f.pki.endorser.sign_smime(PAYLOAD))
        .unwrap()
        .replace("\r\n", "\n");
    let v = verify(&f.store, msg.as_bytes(), &opts(now(), CrlMode::Require)).unwrap();
    assert_eq!(v.payload, crlf(PAYLOAD));
}

#[test]
fn unsigned_documents_are_not_signed() {
    let f = fixture();
    for msg in [
        PAYLOAD.to_vec(),
        b"Content-Type: text/plain\r\n\r\n{}".to_vec(),
        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x\n{}\n--x--\n"
            .to_vec(),
        Vec::new(),
    ] {
        assert_eq!(
            verdict(&f.store, &msg, now(), CrlMode::Require),
            Some(ErrorCode::NotSigned)
        );
    }
}

#[test]
fn zero_or_two_signers_are_signature_invalid() {
    let f = fixture();
    let der = f.pki.endorser.sign_der(PAYLOAD);
    for copies in [0, 2] {
        let msg = pki::with_signer_info_copies(&der, copies);
        let result = verify(&f.store, &msg, &opts(now(), CrlMode::Require));
        assert!(
            matches!(result, Err(TrustError::SignerCount { count }) if count == copies),
            "{result:?}"
        );
    }
    // the rewriting itself keeps a valid message valid
    let one = pki::with_signer_info_copies(&der, 1);
    assert_eq!(verdict(&f.store, &one, now(), CrlMode::Require), None);
}

#[test]
fn message_without_the_signer_certificate_is_signature_invalid() {
    let f = fixture();
    let options = SignOptions {
        no_certs: true,
        ..SignOptions::default()
    };
    let msg = f.pki.endorser.sign_with(PAYLOAD, &options);
    assert_eq!(
        verdict(&f.store, &msg, now(), CrlMode::Require),
        Some(ErrorCode::SignatureInvalid)
    );
}

/// Signs with `leaf` shipping `extra` certificates in the message.
fn sign_with_extra(leaf: &pki::Leaf, extra: &[&X509]) -> Vec<u8> {
    let mut certs = Stack::new().unwrap();
    for c in extra {
        certs.push((*c).clone()).unwrap();
    }
    let flags = Pkcs7Flags::DETACHED;
    let p7 = Pkcs7::sign(&leaf.cert, &leaf.key, &certs, PAYLOAD, flags).unwrap();
    p7.to_smime(PAYLOAD, flags).unwrap()
}

#[test]
fn rogue_ca_in_the_message_is_not_an_anchor() {
    let f = fixture();
    // the rogue has the endorser's DN and serial; its CA travels in the message
    let msg = sign_with_extra(&f.pki.rogue, &[&f.pki.rogue_ca.cert]);
    let result = verify(&f.store, &msg, &opts(now(), CrlMode::Off));
    // the chain ends at the rogue CA, which is no anchor
    assert!(
        matches!(&result, Err(TrustError::CertificateUntrusted { subject, .. }) if subject == pki::ROGUE_CA_DN),
        "{result:?}"
    );
    // without its CA as well
    let msg = f.pki.rogue.sign_smime(PAYLOAD);
    assert_eq!(
        verdict(&f.store, &msg, now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn impostor_root_with_the_real_roots_dn_is_untrusted() {
    let f = fixture();
    let msg = sign_with_extra(&f.pki.impostor, &[&f.pki.impostor_root.cert]);
    assert_eq!(
        verdict(&f.store, &msg, now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn self_signed_signer_not_in_the_directory_is_untrusted() {
    let f = fixture();
    let lone = pki::Ca::root(pki::ENDORSER_DN, pki::Validity::around(now(), 7));
    let leaf = pki::Leaf {
        cert: lone.cert.clone(),
        key: lone.key.clone(),
        subject: lone.subject.clone(),
        issuer: lone.issuer.clone(),
        intermediates: Vec::new(),
    };
    assert_eq!(
        verdict(&f.store, &leaf.sign_smime(PAYLOAD), now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn expired_and_not_yet_valid_signers_are_certificate_expired() {
    let f = fixture();
    let result = verify(
        &f.store,
        &f.pki.expired.sign_smime(PAYLOAD),
        &opts(now(), CrlMode::Require),
    );
    assert!(
        matches!(&result, Err(TrustError::CertificateExpired { subject, at, .. }) if subject == pki::EXPIRED_DN && *at == now()),
        "{result:?}"
    );
    let result = verify(
        &f.store,
        &f.pki.not_yet_valid.sign_smime(PAYLOAD),
        &opts(now(), CrlMode::Require),
    );
    assert!(
        matches!(&result, Err(TrustError::CertificateNotYetValid { subject, .. }) if subject == pki::NOT_YET_VALID_DN),
        "{result:?}"
    );
    assert_eq!(
        result.err().and_then(|e| e.code()),
        Some(ErrorCode::CertificateExpired)
    );
}

#[test]
fn the_injected_clock_decides_validity() {
    let f = fixture();
    let msg = f.pki.endorser.sign_smime(PAYLOAD);
    // before the certificates (now - 30d) and after them (now + 10y)
    for t in [now() - Duration::days(31), now() + Duration::days(3651)] {
        assert_eq!(
            verdict(&f.store, &msg, t, CrlMode::Off),
            Some(ErrorCode::CertificateExpired),
            "{t}"
        );
    }
    // the CRLs' next update is now + 30d; their last update now - 1d (5 minutes of skew)
    assert_eq!(
        verdict(&f.store, &msg, now() + Duration::days(31), CrlMode::Require),
        Some(ErrorCode::CrlExpired)
    );
    let early = verify(
        &f.store,
        &msg,
        &opts(now() - Duration::days(2), CrlMode::Require),
    );
    assert!(
        matches!(early, Err(TrustError::CrlNotYetValid { .. })),
        "{early:?}"
    );
    assert_eq!(
        verdict(
            &f.store,
            &msg,
            now() - Duration::days(1) - Duration::minutes(4),
            CrlMode::Require
        ),
        None
    );
    // back when the expired certificate was valid, its root was not yet: every certificate
    // of the chain must be valid
    let old = now() - Duration::days(500);
    let result = verify(
        &f.store,
        &f.pki.expired.sign_smime(PAYLOAD),
        &opts(old, CrlMode::Off),
    );
    assert!(
        matches!(&result, Err(TrustError::CertificateNotYetValid { subject, .. }) if subject == pki::ROOT_DN),
        "{result:?}"
    );
}

#[test]
fn revoked_signer_is_refused_unless_crls_are_off() {
    let f = fixture();
    let msg = f.pki.revoked.sign_smime(PAYLOAD);
    for mode in [CrlMode::Require, CrlMode::IfPresent] {
        let result = verify(&f.store, &msg, &opts(now(), mode));
        assert!(
            matches!(&result, Err(TrustError::CertificateRevoked { subject, serial, ca })
                if subject == pki::REVOKED_DN && serial == "1002" && ca == pki::ROOT_DN),
            "{result:?}"
        );
    }
    assert_eq!(verdict(&f.store, &msg, now(), CrlMode::Off), None);
}

#[test]
fn stale_crl_is_crl_expired_in_require_and_if_present() {
    let f = fixture_with(CaDirOptions {
        stale_crl: true,
        ..CaDirOptions::default()
    });
    let msg = f.pki.endorser.sign_smime(PAYLOAD);
    for mode in [CrlMode::Require, CrlMode::IfPresent] {
        let result = verify(&f.store, &msg, &opts(now(), mode));
        assert!(
            matches!(&result, Err(TrustError::CrlExpired { ca, next_update })
                if ca == pki::ROOT_DN && *next_update == now() - Duration::days(30)),
            "{result:?}"
        );
    }
    assert_eq!(verdict(&f.store, &msg, now(), CrlMode::Off), None);
    // a revocation listed in a stale CRL still counts
    assert_eq!(
        verdict(
            &f.store,
            &f.pki.revoked.sign_smime(PAYLOAD),
            now(),
            CrlMode::Require
        ),
        Some(ErrorCode::CertificateRevoked)
    );
    let status = f.store.crl_status(now());
    let root = status
        .iter()
        .find(|s| s.ca_subject == pki::ROOT_DN)
        .unwrap();
    assert!(root.present && root.stale);
    let inter = status
        .iter()
        .find(|s| s.ca_subject == pki::INTERMEDIATE_DN)
        .unwrap();
    assert!(inter.present && !inter.stale);
    assert_eq!(inter.next_update, Some(now() + Duration::days(30)));
}

#[test]
fn crl_signed_by_the_wrong_key_is_ignored() {
    let f = fixture_with(CaDirOptions {
        wrong_key_crl: true,
        ..CaDirOptions::default()
    });
    // reported at load, and not counted
    assert_eq!(f.store.crl_count(), 1);
    assert_eq!(f.store.skipped().len(), 1);
    assert!(
        f.store.skipped()[0].reason.contains("not signed by its CA"),
        "{:?}",
        f.store.skipped()
    );
    let msg = f.pki.endorser.sign_smime(PAYLOAD);
    let result = verify(&f.store, &msg, &opts(now(), CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CrlMissing { ca }) if ca == pki::ROOT_DN),
        "{result:?}"
    );
    assert_eq!(verdict(&f.store, &msg, now(), CrlMode::IfPresent), None);

    // Also when handed over in memory, the forgery never counts as the root's CRL.
    let store = TrustStore::from_pem_certs_and_crls(
        std::slice::from_ref(&f.pki.root.cert),
        &[f.pki.forged_root_crl()],
    );
    assert_eq!(
        verdict(&store, &msg, now(), CrlMode::Require),
        Some(ErrorCode::CrlMissing)
    );
    assert!(store.crl_status(now()).iter().all(|s| !s.present));
}

#[test]
fn missing_crls_matter_only_in_require_mode() {
    let f = fixture_with(CaDirOptions {
        crls: false,
        ..CaDirOptions::default()
    });
    let msg = f.pki.endorser.sign_smime(PAYLOAD);
    assert_eq!(
        verdict(&f.store, &msg, now(), CrlMode::Require),
        Some(ErrorCode::CrlMissing)
    );
    assert_eq!(verdict(&f.store, &msg, now(), CrlMode::IfPresent), None);
    assert_eq!(verdict(&f.store, &msg, now(), CrlMode::Off), None);
    // without CRLs the revoked certificate cannot be known as such
    let revoked = f.pki.revoked.sign_smime(PAYLOAD);
    assert_eq!(verdict(&f.store, &revoked, now(), CrlMode::IfPresent), None);
}

#[test]
fn intermediate_signer_chains_through_directory_or_message() {
    let f = fixture();
    let msg = f.pki.endorser2.sign_smime(PAYLOAD);
    let v = verify(&f.store, &msg, &opts(now(), CrlMode::Require)).unwrap();
    assert_eq!(
        v.signer.chain,
        vec![
            pki::ENDORSER2_DN.to_owned(),
            pki::INTERMEDIATE_DN.to_owned(),
            pki::ROOT_DN.to_owned()
        ]
    );
    assert_eq!(v.signer.issuer, pki::INTERMEDIATE_DN);

    // The intermediate is not in the directory, only in the message: it still chains, but
    // its CRL is missing.
    let g = fixture_with(CaDirOptions {
        include_intermediate: false,
        ..CaDirOptions::default()
    });
    let msg = g.pki.endorser2.sign_smime(PAYLOAD);
    let result = verify(&g.store, &msg, &opts(now(), CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CrlMissing { ca }) if ca == pki::INTERMEDIATE_DN),
        "{result:?}"
    );
    assert_eq!(verdict(&g.store, &msg, now(), CrlMode::IfPresent), None);
    // neither in the directory nor in the message: untrusted
    let bare = g.pki.endorser2.sign_with(
        PAYLOAD,
        &SignOptions {
            include_chain: false,
            ..SignOptions::default()
        },
    );
    assert_eq!(
        verdict(&g.store, &bare, now(), CrlMode::Off),
        Some(ErrorCode::CertificateUntrusted)
    );
}

#[test]
fn every_ca_of_the_chain_has_its_crl_checked() {
    let pki = TestPki::generate(now());
    let msg = pki.endorser2.sign_smime(PAYLOAD);
    let day = Duration::days(1);
    let month = Duration::days(30);

    // the root's CRL revokes the intermediate
    let dir = tempfile::tempdir().unwrap();
    pki::write_cert(dir.path(), &pki.root.cert);
    pki::write_cert(dir.path(), &pki.intermediate.cert);
    let root_crl = pki
        .root
        .crl(&[&pki.intermediate.cert], now() - day, now() + month);
    pki::write_crl(dir.path(), &pki.root, &root_crl);
    pki::write_crl(dir.path(), &pki.intermediate, &pki.intermediate_crl());
    let store = TrustStore::load(dir.path()).unwrap();
    let result = verify(&store, &msg, &opts(now(), CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CertificateRevoked { subject, ca, .. })
            if subject == pki::INTERMEDIATE_DN && ca == pki::ROOT_DN),
        "{result:?}"
    );

    // the intermediate's CRL revokes the endorser
    let inter_crl = pki
        .intermediate
        .crl(&[&pki.endorser2.cert], now() - day, now() + month);
    let store = TrustStore::from_pem_certs_and_crls(
        &[pki.root.cert.clone(), pki.intermediate.cert.clone()],
        &[pki.root_crl(), inter_crl],
    );
    let result = verify(&store, &msg, &opts(now(), CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CertificateRevoked { subject, ca, .. })
            if subject == pki::ENDORSER2_DN && ca == pki::INTERMEDIATE_DN),
        "{result:?}"
    );

    // only the intermediate's CRL: the root's is missing
    let store = TrustStore::from_pem_certs_and_crls(
        &[pki.root.cert.clone(), pki.intermediate.cert.clone()],
        &[pki.intermediate_crl()],
    );
    let result = verify(&store, &msg, &opts(now(), CrlMode::Require));
    assert!(
        matches!(&result, Err(TrustError::CrlMissing { ca }) if ca == pki::ROOT_DN),
        "{result:?}"
    );
    // the root's CRL stale, the intermediate's current
    let store = TrustStore::from_pem_certs_and_crls(
        &[pki.root.cert.clone(), pki.intermediate.cert.clone()],
        &[pki.stale_root_crl(), pki.intermediate_crl()],
    );
    assert_eq!(
        verdict(&store, &msg, now(), CrlMode::Require),
        Some(ErrorCode::CrlExpired)
    );
    // with a newer CRL next to the stale one, the newest decides
    let store = TrustStore::from_pem_certs_and_crls(
        &[pki.root.cert.clone(), pki.intermediate.cert.clone()],
        &[pki.stale_root_crl(), pki.root_crl(), pki.intermediate_crl()],
    );
    assert_eq!(verdict(&store, &msg, now(), CrlMode::Require), None);
}

#[test]
fn every_verdict_code_is_reachable() {
    let f = fixture();
    let stale = fixture_with(CaDirOptions {
        stale_crl: true,
        ..CaDirOptions::default()
    });
    let nocrl = fixture_with(CaDirOptions {
        crls: false,
        ..CaDirOptions::default()
    });
    let mut tampered = f.pki.endorser.sign_smime(PAYLOAD);
    let pos = tampered.windows(9).position(|w| w == b"generated").unwrap();
    tampered[pos] = b'X';
    let cases: Vec<(&TrustStore, Vec<u8>, ErrorCode)> = vec![
        (&f.store, PAYLOAD.to_vec(), ErrorCode::NotSigned),
        (&f.store, tampered, ErrorCode::SignatureInvalid),
        (
            &f.store,
            f.pki.rogue.sign_smime(PAYLOAD),
            ErrorCode::CertificateUntrusted,
        ),
        (
            &f.store,
            f.pki.expired.sign_smime(PAYLOAD),
            ErrorCode::CertificateExpired,
        ),
        (
            &f.store,
            f.pki.not_yet_valid.sign_smime(PAYLOAD),
            ErrorCode::CertificateExpired,
        ),
        (
            &f.store,
            f.pki.revoked.sign_smime(PAYLOAD),
            ErrorCode::CertificateRevoked,
        ),
        (
            &nocrl.store,
            nocrl.pki.endorser.sign_smime(PAYLOAD),
            ErrorCode::CrlMissing,
        ),
        (
            &stale.store,
            stale.pki.endorser.sign_smime(PAYLOAD),
            ErrorCode::CrlExpired,
        ),
    ];
    let mut seen = BTreeSet::new();
    for (store, msg, expected) in cases {
        assert_eq!(
            verdict(store, &msg, now(), CrlMode::Require),
            Some(expected)
        );
        seen.insert(expected);
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    // and a good one passes in every mode
    for mode in [CrlMode::Require, CrlMode::IfPresent, CrlMode::Off] {
        assert_eq!(
            verdict(&f.store, &f.pki.endorser.sign_smime(PAYLOAD), now(), mode),
            None
        );
    }
}

#[test]
fn sign_helpers_cover_all_formats() {
    // guards the testkit helpers other crates' tests rely on
    let f = fixture();
    for format in [
        SignFormat::SmimeDetached,
        SignFormat::SmimeOpaque,
        SignFormat::Pem,
        SignFormat::Der,
    ] {
        for binary in [false, true] {
            let options = SignOptions {
                format,
                binary,
                ..SignOptions::default()
            };
            let msg = f.pki.endorser2.sign_with(PAYLOAD, &options);
            let v = verify(&f.store, &msg, &opts(now(), CrlMode::Require))
                .unwrap_or_else(|e| panic!("{format:?} binary={binary}: {e}"));
            let expected = if binary {
                PAYLOAD.to_vec()
            } else {
                crlf(PAYLOAD)
            };
            assert_eq!(v.payload, expected, "{format:?} binary={binary}");
        }
    }
}
