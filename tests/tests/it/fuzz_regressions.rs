//! Replays what fuzzing found: every file of `fuzz/regressions/<target>/` (and the seeds of
//! `fuzz/seeds/<target>/`) goes through the same harness as the fuzz target, in an ordinary
//! test build. A file here once crashed the target or broke one of its properties.

use std::path::PathBuf;

use crate::common::workspace;
use crate::fuzz_harness;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = workspace().join("fuzz").join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, harness: fn(&[u8])) {
    let regressions = inputs("regressions", target);
    assert!(
        !regressions.is_empty(),
        "fuzz/regressions/{target}/ holds no reproducer"
    );
    let seeds = inputs("seeds", target);
    for (path, bytes) in regressions.iter().chain(&seeds) {
        eprintln!("{target}: {}", path.display());
        harness(bytes);
    }
}

#[test]
fn list_parser_regressions_stay_fixed() {
    replay("parse_image_list", fuzz_harness::parse_list);
}

#[test]
fn signed_message_regressions_stay_fixed() {
    replay("verify_message", fuzz_harness::verify_message);
}

/// Found by fuzzing `verify_message`: a byte that is not UTF-8 in the Content-Type of the
/// signature part made the OpenSSL bindings panic (they read OpenSSL's error data as UTF-8),
/// which would abort a whole `vmc cache sync`. The reproducer file depends on the keys of one
/// run; this rebuilds the case with this run's keys.
#[test]
fn a_non_utf8_signature_content_type_is_refused_not_a_panic() {
    let pki = vmc_testkit::pki::TestPki::generate(crate::common::now());
    let store = vmc_trust::TrustStore::from_pem_certs_and_crls(
        std::slice::from_ref(&pki.root.cert),
        &[pki.root_crl()],
    );
    let options = vmc_trust::VerifyOptions {
        crl: vmc_trust::CrlMode::Require,
        now: crate::common::now(),
    };
    let list = std::fs::read(workspace().join("fuzz/seeds/parse_image_list/list.json")).unwrap();
    for message in [
        pki.endorser.sign_smime_binary(&list),
        pki.endorser.sign_smime(&list),
    ] {
        let at = message
            .windows(24)
            .position(|w| w == b"application/x-pkcs7-sign")
            .or_else(|| {
                message
                    .windows(22)
                    .position(|w| w == b"application/pkcs7-sign")
            })
            .unwrap();
        // The first occurrence is in the top-level protocol parameter; take the last.
        let last = message
            .windows(12)
            .rposition(|w| w == b"pkcs7-signat")
            .unwrap();
        assert!(last > at);
        for (offset, byte) in [(last + 5, 0xc3), (last + 3, 0xff), (last, 0x80)] {
            let mut broken = message.clone();
            broken[offset] = byte;
            let error = vmc_trust::verify(&store, &broken, &options)
                .err()
                .unwrap_or_else(|| panic!("a broken signature part verified"));
            assert_eq!(
                error.code(),
                Some(vmc_model::ErrorCode::SignatureInvalid),
                "{error}"
            );
        }
        assert!(vmc_trust::verify(&store, &message, &options).is_ok());
    }
}
