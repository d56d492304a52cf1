//! The fuzz harnesses of vmc, shared by the fuzz targets (`fuzz_targets/*.rs`) and by the
//! regression test of the workspace `tests` package, which includes this file as a module and
//! feeds it every file of `fuzz/regressions/<target>/`.
//!
//! Each harness checks properties, not only the absence of panics:
//! - [`parse_list`]: an accepted list has safe identifiers and well-formed checksums, and its
//!   JSON form parses back to an equal list; a refused one has the code `list_malformed`.
//! - [`verify_message`]: whatever the bytes, a message that verifies names a signer the test
//!   PKI vouches for (never the rogue, the impostor, the revoked or the expired certificate),
//!   and a message freshly signed by a good certificate in a binary layout verifies to exactly
//!   the signed payload.

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use vmc_model::{ErrorCode, ParseLimits, is_safe_identifier, parse_image_list};
use vmc_testkit::pki::{Leaf, SignFormat, SignOptions, TestPki};
use vmc_trust::{CrlMode, TrustStore, VerifyOptions, verify};

/// Parses `data` as an image list payload and checks the properties of the outcome.
pub fn parse_list(data: &[u8]) {
    let limits = ParseLimits {
        max_bytes: 1 << 20,
        max_depth: 32,
        max_images: 1000,
    };
    match parse_image_list(data, &limits) {
        Ok(parsed) => {
            let list = &parsed.list;
            assert!(is_safe_identifier(list.identifier.as_str()));
            for image in &list.images {
                assert!(is_safe_identifier(image.identifier.as_str()));
                assert_eq!(image.sha512.len(), 128);
                assert!(
                    image
                        .sha512
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                );
            }
            assert!(list.images.len() + parsed.rejected.len() <= limits.max_images);
            for rejected in &parsed.rejected {
                assert_eq!(rejected.error.code(), ErrorCode::ImageInvalid);
                let _ = rejected.error.to_string();
            }
            let bytes = list.to_json_bytes();
            let again = parse_image_list(&bytes, &ParseLimits::default())
                .unwrap_or_else(|e| panic!("the JSON form of an accepted list is refused: {e}"));
            // serde_json parses floats with best-effort precision (its `float_roundtrip`
            // feature is off): a long fraction in an unknown key may move by an ulp.
            assert!(
                &again.list == list || same_json(&again.list.to_json(), &list.to_json()),
                "the JSON form does not parse back:\n{list:?}\n{:?}",
                again.list
            );
            assert!(again.rejected.is_empty());
        }
        Err(error) => {
            assert_eq!(error.code(), ErrorCode::ListMalformed);
            let message = error.to_string();
            // Messages quote values, but never whole documents.
            assert!(message.len() <= 4096 + data.len().min(4096), "{message}");
        }
    }
}

/// Whether two JSON values are equal, floats within a relative 1e-14.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

/// The generated PKI, its trust store and pre-signed messages, made once per process.
struct VerifyEnv {
    pki: TestPki,
    store: TrustStore,
    options: VerifyOptions,
    /// A valid list signed by the endorser, in each layout of [`LAYOUTS`].
    signed: Vec<Vec<u8>>,
}

/// The layouts messages are signed in: (format, binary).
const LAYOUTS: [(SignFormat, bool); 5] = [
    (SignFormat::SmimeDetached, false),
    (SignFormat::SmimeDetached, true),
    (SignFormat::SmimeOpaque, true),
    (SignFormat::Pem, true),
    (SignFormat::Der, true),
];

/// A small valid list, the payload of the pre-signed messages.
const LIST: &[u8] = br#"{"hv:imagelist": {
  "dc:identifier": "0b7d1c4e-5a3f-4e1b-9c2d-6f8a9b0c1d2e", "dc:title": "Fuzz list",
  "dc:description": "signed by the fuzz harness", "dc:source": "https://example.org/",
  "dc:date:created": "2030-03-01T11:00:00Z", "dc:date:expires": "2030-04-01T00:00:00Z",
  "hv:version": "1", "hv:uri": "https://example.org/list.smime",
  "hv:endorser": {"hv:x509": {"hv:dn": "/C=XX/O=TestGrid/OU=Images/CN=Test Endorser",
    "hv:ca": "/C=XX/O=TestGrid/CN=Test Root CA"}},
  "hv:images": [{"hv:image": {"dc:identifier": "img-1", "dc:title": "An image",
    "hv:uri": "https://example.org/img-1", "hv:size": 1024, "hv:version": "1",
    "sl:checksum:sha512": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}}]}}
"#;

fn env() -> &'static VerifyEnv {
    static ENV: OnceLock<VerifyEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let now = Utc
            .with_ymd_and_hms(2030, 3, 1, 12, 0, 0)
            .single()
            .unwrap_or_else(|| panic!("fixed time"));
        let pki = TestPki::generate(now);
        let store = TrustStore::from_pem_certs_and_crls(
            &[pki.root.cert.clone(), pki.intermediate.cert.clone()],
            &[pki.root_crl(), pki.intermediate_crl()],
        );
        let signed = LAYOUTS
            .iter()
            .map(|&(format, binary)| sign(&pki.endorser, LIST, format, binary))
            .collect();
        VerifyEnv {
            pki,
            store,
            options: VerifyOptions {
                crl: CrlMode::Require,
                now,
            },
            signed,
        }
    })
}

fn sign(leaf: &Leaf, payload: &[u8], format: SignFormat, binary: bool) -> Vec<u8> {
    leaf.sign_with(
        payload,
        &SignOptions {
            format,
            binary,
            ..SignOptions::default()
        },
    )
}

/// Verifies `message` and checks that a success names a certificate the PKI vouches for.
fn check(env: &VerifyEnv, message: &[u8]) -> Option<Vec<u8>> {
    match verify(&env.store, message, &env.options) {
        Ok(verified) => {
            let good = [&env.pki.endorser, &env.pki.endorser2, &env.pki.other];
            assert!(
                good.iter()
                    .any(|leaf| leaf.subject == verified.signer.subject
                        && leaf.issuer == verified.signer.issuer
                        && leaf.serial_hex() == verified.signer.serial),
                "verified a message signed by {:?} (issuer {:?}, serial {})",
                verified.signer.subject,
                verified.signer.issuer,
                verified.signer.serial
            );
            // What gets parsed next must not break the parser either.
            parse_list(&verified.payload);
            Some(verified.payload)
        }
        Err(error) => {
            let _ = error.to_string();
            let _ = error.code();
            None
        }
    }
}

/// Verifies bytes derived from `data` (the first byte picks how) and checks the properties.
///
/// - `0`: `data[1..]` is the message.
/// - `1`: `data[2..]` is signed by one of the PKI's certificates (`data[1]` picks which) in a
///   layout picked by the first byte; a good signer in a binary layout must verify to exactly
///   the payload, a revoked, expired or rogue one must be refused with its code.
/// - `2`: a valid pre-signed message with byte patches: each 3 bytes of `data[1..]` are an
///   offset (2 bytes) and a value.
/// - `3`: a valid pre-signed message cut at an offset (`data[1..3]`), with `data[3..]`
///   appended.
pub fn verify_message(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let env = env();
    let layout = usize::from(selector >> 2) % LAYOUTS.len();
    match selector & 3 {
        0 => {
            check(env, rest);
        }
        1 => signed_by(env, rest, layout),
        2 => {
            let mut message = env.signed[layout].clone();
            for patch in rest.chunks_exact(3) {
                let offset = usize::from(u16::from_be_bytes([patch[0], patch[1]]));
                let len = message.len();
                message[offset % len] = patch[2];
            }
            check(env, &message);
        }
        _ => {
            let base = &env.signed[layout];
            let (cut, tail) = match rest {
                [a, b, tail @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), tail),
                _ => (base.len(), rest),
            };
            let mut message = base[..cut.min(base.len())].to_vec();
            message.extend_from_slice(tail);
            check(env, &message);
        }
    }
}

fn signed_by(env: &VerifyEnv, rest: &[u8], layout: usize) {
    let Some((&who, payload)) = rest.split_first() else {
        return;
    };
    if payload.is_empty() {
        return;
    }
    let pki = &env.pki;
    let (leaf, expected) = match who % 6 {
        0 => (&pki.endorser, None),
        1 => (&pki.endorser2, None),
        2 => (&pki.other, None),
        3 => (&pki.revoked, Some(ErrorCode::CertificateRevoked)),
        4 => (&pki.expired, Some(ErrorCode::CertificateExpired)),
        _ => (&pki.rogue, Some(ErrorCode::CertificateUntrusted)),
    };
    let (format, binary) = LAYOUTS[layout];
    let message = sign(leaf, payload, format, binary);
    // Text-mode S/MIME rewrites line ends: arbitrary binary payloads may not survive. Detached
    // binary payloads are ambiguous in MIME in two ways, for OpenSSL's own reader too: a final
    // CR joins the line break before the delimiter (RFC 2046 gives that CRLF to the
    // delimiter), and a line starting with `--` can pass for a delimiter, whose headers must
    // then be ASCII. Such messages may fail as `signature_invalid` before any other check.
    let ambiguous = format == SignFormat::SmimeDetached
        && (payload.ends_with(b"\r")
            || payload.starts_with(b"--")
            || payload.windows(3).any(|w| w == b"\n--"));
    let outcome = verify(&env.store, &message, &env.options);
    match (expected, outcome) {
        (None, Ok(verified)) => {
            assert_eq!(verified.signer.subject, leaf.subject);
            let header = payload
                .get(..13)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"content-type:"));
            if binary && !header {
                assert!(
                    verified.payload == payload,
                    "verified payload differs from the signed one ({format:?})"
                );
            }
            parse_list(&verified.payload);
        }
        (None, Err(error)) => {
            assert!(
                !binary || ambiguous,
                "a message signed by {} ({format:?}, binary) is refused: {error}",
                leaf.subject
            );
        }
        (Some(code), Ok(_)) => panic!("a message signed by {} verified ({code})", leaf.subject),
        (Some(_), Err(_)) if !binary || ambiguous => {}
        (Some(code), Err(error)) => {
            assert_eq!(
                error.code(),
                Some(code),
                "a message signed by {} ({format:?}): {error}",
                leaf.subject
            );
        }
    }
}
