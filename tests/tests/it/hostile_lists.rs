//! The hostile-list corpus: signed lists generated in code that break every check of
//! `spec/imagelist.md` and attack the parser (nesting, huge strings, NUL and non-UTF-8 bytes,
//! control and shell characters, unsafe identifiers, a million images, numbers out of range,
//! impossible dates). Each is refused with its code, or handled safely, and a refused list
//! stores nothing: `subscribe` leaves no subscription, `update` leaves the current version.

use chrono::Duration;
use serde_json::{Map, Value, json};
use vmc_cache::store::ImageFilter;
use vmc_cache::{Dispatcher, ListReport, UpdateStatus, Vmc};
use vmc_model::{ErrorCode, NewImagePolicy, is_safe_identifier};
use vmc_testkit::pki::{CaDirOptions, Leaf, SignFormat, SignOptions, with_signer_info_copies};
use vmc_testkit::server::{Fault, Route};

use crate::common::{LIST_ID, World, image_entry, list_doc, now, request, sha512_hex};

/// What a case must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused with this code; nothing stored.
    Refused(ErrorCode),
    /// Accepted, with this many images left out (`image_invalid`).
    Accepted(usize),
    /// This path does not apply to the case.
    Skip,
}

use Expect::{Accepted, Refused, Skip};

/// Builds what the server answers for a case, from the world, the list identifier and the
/// version to use.
type Build = Box<dyn Fn(&World, &str, &str) -> Route>;

/// A named change of a list document.
type Change = (&'static str, fn(&mut Value));

/// A named replacement value, as raw JSON bytes.
type RawValue = (&'static str, fn() -> Vec<u8>);

/// A named change with the expected outcome of each path.
type TimeCase = (&'static str, Expect, Expect, fn(&mut Value));

struct Case {
    name: String,
    build: Build,
    /// Through `subscribe` (a new URL, a list identifier of its own).
    subscribe: Expect,
    /// Through `update` of the established subscription (its list identifier, a newer
    /// version).
    update: Expect,
}

fn il(doc: &mut Value) -> &mut Map<String, Value> {
    doc["hv:imagelist"].as_object_mut().unwrap()
}

fn image0(doc: &mut Value) -> &mut Map<String, Value> {
    doc["hv:imagelist"]["hv:images"][0]["hv:image"]
        .as_object_mut()
        .unwrap()
}

/// Two well-formed images (never downloaded here).
fn images(w: &World) -> Vec<Value> {
    ["img-a", "img-b"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let bytes = [i as u8; 64];
            image_entry(
                id,
                &format!("Image {id}"),
                &w.server.url(&format!("/img/{id}")),
                64,
                &sha512_hex(&bytes),
            )
        })
        .collect()
}

fn base(w: &World, id: &str, version: &str) -> Value {
    w.list(id, version, images(w))
}

fn signed(w: &World, doc: &Value) -> Route {
    Route::new(w.sign(&serde_json::to_vec_pretty(doc).unwrap()))
}

fn case(name: impl Into<String>, subscribe: Expect, update: Expect, build: Build) -> Case {
    Case {
        name: name.into(),
        build,
        subscribe,
        update,
    }
}

/// A case made by changing the JSON document; both paths expect `expect`.
fn doc_case(
    name: impl Into<String>,
    expect: Expect,
    change: impl Fn(&mut Value) + 'static,
) -> Case {
    case(
        name,
        expect,
        expect,
        Box::new(move |w, id, v| {
            let mut doc = base(w, id, v);
            change(&mut doc);
            signed(w, &doc)
        }),
    )
}

/// A case made by replacing the JSON text `"@@X@@"` (a string value the change put there) by
/// raw bytes, then signing.
fn raw_case(
    name: impl Into<String>,
    expect: Expect,
    change: impl Fn(&mut Value) + 'static,
    raw: impl Fn() -> Vec<u8> + 'static,
) -> Case {
    case(
        name,
        expect,
        expect,
        Box::new(move |w, id, v| {
            let mut doc = base(w, id, v);
            change(&mut doc);
            let text = serde_json::to_vec(&doc).unwrap();
            let payload = replace(&text, b"\"@@X@@\"", &raw());
            Route::new(w.sign(&payload))
        }),
    )
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("placeholder missing"));
    let mut out = haystack[..at].to_vec();
    out.extend_from_slice(with);
    out.extend_from_slice(&haystack[at + needle.len()..]);
    out
}

/// A case whose payload bytes are signed by `signer` (a field of the PKI) in `options`.
fn signer_case(
    name: impl Into<String>,
    expect: Expect,
    signer: fn(&World) -> &Leaf,
    claim: fn(&World) -> &Leaf,
    options: SignOptions,
) -> Case {
    case(
        name,
        expect,
        expect,
        Box::new(move |w, id, v| {
            let doc = list_doc(claim(w), id, v, images(w), &w.server.url("/list"));
            let payload = serde_json::to_vec_pretty(&doc).unwrap();
            Route::new(signer(w).sign_with(&payload, &options))
        }),
    )
}

fn malformed() -> Expect {
    Refused(ErrorCode::ListMalformed)
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();

    // Check 1: size, while downloading.
    cases.push(doc_case(
        "a 20 MiB title (list over the 16 MiB cap)",
        Refused(ErrorCode::FetchFailed),
        |d| il(d)["dc:title"] = Value::String("A".repeat(20 << 20)),
    ));
    cases.push(case(
        "an endless body",
        Refused(ErrorCode::FetchFailed),
        Refused(ErrorCode::FetchFailed),
        Box::new(|_, _, _| Route::new(Vec::new()).fault(Fault::EndlessBody)),
    ));
    cases.push(case(
        "a body announced as 100 MB",
        Refused(ErrorCode::FetchFailed),
        Refused(ErrorCode::FetchFailed),
        Box::new(|_, _, _| {
            Route::new(vec![b'{'; 1024]).fault(Fault::WrongContentLength(100_000_000))
        }),
    ));

    // Check 2: signature.
    cases.push(case(
        "an unsigned list",
        Refused(ErrorCode::NotSigned),
        Refused(ErrorCode::NotSigned),
        Box::new(|w, id, v| Route::new(serde_json::to_vec(&base(w, id, v)).unwrap())),
    ));
    cases.push(case(
        "an empty body",
        Refused(ErrorCode::NotSigned),
        Refused(ErrorCode::NotSigned),
        Box::new(|_, _, _| Route::new(Vec::new())),
    ));
    cases.push(case(
        "a payload changed after signing",
        Refused(ErrorCode::SignatureInvalid),
        Refused(ErrorCode::SignatureInvalid),
        Box::new(|w, id, v| {
            let signed = w.sign(&serde_json::to_vec_pretty(&base(w, id, v)).unwrap());
            Route::new(replace(&signed, b"Generated list", b"Generated lisT"))
        }),
    ));
    for copies in [0, 2] {
        cases.push(case(
            format!("{copies} signer infos"),
            Refused(ErrorCode::SignatureInvalid),
            Refused(ErrorCode::SignatureInvalid),
            Box::new(move |w, id, v| {
                let payload = serde_json::to_vec_pretty(&base(w, id, v)).unwrap();
                Route::new(with_signer_info_copies(
                    &w.pki.endorser.sign_der(&payload),
                    copies,
                ))
            }),
        ));
    }
    cases.push(signer_case(
        "no certificate in the message",
        Refused(ErrorCode::SignatureInvalid),
        |w| &w.pki.endorser,
        |w| &w.pki.endorser,
        SignOptions {
            no_certs: true,
            ..SignOptions::default()
        },
    ));

    // Check 3: chain.
    cases.push(signer_case(
        "signed by a rogue CA's certificate with the endorser's name",
        Refused(ErrorCode::CertificateUntrusted),
        |w| &w.pki.rogue,
        |w| &w.pki.endorser,
        SignOptions::default(),
    ));
    cases.push(signer_case(
        "signed by an impostor root's certificate",
        Refused(ErrorCode::CertificateUntrusted),
        |w| &w.pki.impostor,
        |w| &w.pki.endorser,
        SignOptions::default(),
    ));
    cases.push(signer_case(
        "signed by an expired certificate",
        Refused(ErrorCode::CertificateExpired),
        |w| &w.pki.expired,
        |w| &w.pki.expired,
        SignOptions::default(),
    ));
    cases.push(signer_case(
        "signed by a not yet valid certificate",
        Refused(ErrorCode::CertificateExpired),
        |w| &w.pki.not_yet_valid,
        |w| &w.pki.not_yet_valid,
        SignOptions::default(),
    ));

    // Check 4: revocation.
    cases.push(signer_case(
        "signed by a revoked certificate",
        Refused(ErrorCode::CertificateRevoked),
        |w| &w.pki.revoked,
        |w| &w.pki.revoked,
        SignOptions::default(),
    ));

    // Check 5: parse — structure.
    for key in [
        "dc:identifier",
        "dc:title",
        "dc:description",
        "dc:source",
        "dc:date:created",
        "dc:date:expires",
        "hv:version",
        "hv:uri",
        "hv:endorser",
        "hv:images",
    ] {
        cases.push(doc_case(
            format!("list without {key}"),
            malformed(),
            move |d| {
                il(d).remove(key);
            },
        ));
    }
    for key in [
        "dc:identifier",
        "dc:title",
        "hv:uri",
        "hv:size",
        "sl:checksum:sha512",
        "hv:version",
    ] {
        cases.push(doc_case(
            format!("image without {key}"),
            malformed(),
            move |d| {
                image0(d).remove(key);
            },
        ));
    }
    let wrong_types: Vec<Change> = vec![
        ("the document is an array", |d| *d = json!([d.clone()])),
        ("the document is null", |d| *d = Value::Null),
        ("hv:imagelist is a string", |d| {
            d["hv:imagelist"] = json!("list")
        }),
        ("no hv:imagelist", |d| {
            *d = json!({"imagelist": d["hv:imagelist"].clone()})
        }),
        ("dc:title is a number", |d| il(d)["dc:title"] = json!(42)),
        ("hv:version of the list is a number", |d| {
            il(d)["hv:version"] = json!(2)
        }),
        ("hv:images is an object", |d| il(d)["hv:images"] = json!({})),
        ("an image is a string", |d| {
            il(d)["hv:images"][0] = json!("img")
        }),
        ("hv:image is null", |d| {
            il(d)["hv:images"][0]["hv:image"] = Value::Null
        }),
        ("hv:size is negative", |d| image0(d)["hv:size"] = json!(-1)),
        ("hv:size is a fraction", |d| {
            image0(d)["hv:size"] = json!(1.5)
        }),
        ("hv:size is 1e3", |d| image0(d)["hv:size"] = json!(1e3)),
        ("hv:size has letters", |d| {
            image0(d)["hv:size"] = json!("12a")
        }),
        ("hv:size is an empty string", |d| {
            image0(d)["hv:size"] = json!("")
        }),
        ("hv:size digits beyond u64", |d| {
            image0(d)["hv:size"] = json!("99999999999999999999999")
        }),
        // Valid u64, but beyond what the database keeps (regression: was a database error).
        ("hv:size u64::MAX", |d| {
            image0(d)["hv:size"] = json!(u64::MAX)
        }),
        ("hv:size 2^63", |d| image0(d)["hv:size"] = json!(1u64 << 63)),
        ("sl:checksum:sha512 is a number", |d| {
            image0(d)["sl:checksum:sha512"] = json!(42)
        }),
        ("dc:date:created is a number", |d| {
            il(d)["dc:date:created"] = json!(1_900_000_000)
        }),
        ("dc:date:created 9999-99-99", |d| {
            il(d)["dc:date:created"] = json!("9999-99-99")
        }),
        ("dc:date:expires 2030-02-30", |d| {
            il(d)["dc:date:expires"] = json!("2030-02-30T00:00:00Z")
        }),
        ("dc:date:expires with a +25:00 offset", |d| {
            il(d)["dc:date:expires"] = json!("2030-04-01T00:00:00+25:00")
        }),
        ("hv:endorser is an empty array", |d| {
            il(d)["hv:endorser"] = json!([])
        }),
        ("hv:endorser is a string", |d| {
            il(d)["hv:endorser"] = json!("/CN=me")
        }),
        ("hv:endorser without hv:x509", |d| {
            il(d)["hv:endorser"] = json!({"x509": {}})
        }),
        ("hv:dn is a number", |d| {
            il(d)["hv:endorser"]["hv:x509"]["hv:dn"] = json!(1)
        }),
        ("duplicate image identifiers", |d| {
            let first = il(d)["hv:images"][0].clone();
            il(d)["hv:images"].as_array_mut().unwrap().push(first);
        }),
        ("nesting 100 levels deep", |d| {
            let mut deep = json!(1);
            for _ in 0..100 {
                deep = json!([deep]);
            }
            il(d).insert("ad:deep".into(), deep);
        }),
        ("list identifier ..", |d| {
            il(d)["dc:identifier"] = json!("..")
        }),
        ("list identifier a/../../b", |d| {
            il(d)["dc:identifier"] = json!("a/../../b")
        }),
        ("list identifier empty", |d| {
            il(d)["dc:identifier"] = json!("")
        }),
        ("list identifier with a NUL", |d| {
            il(d)["dc:identifier"] = json!("list\u{0}x")
        }),
    ];
    for (name, change) in wrong_types {
        cases.push(doc_case(name, malformed(), change));
    }
    cases.push(case(
        "the payload is not JSON",
        malformed(),
        malformed(),
        Box::new(|w, _, _| Route::new(w.sign(b"hv:imagelist = { nope }"))),
    ));

    // Check 5: parse — bytes.
    let title_bytes: Vec<RawValue> = vec![
        ("a raw NUL in a title", || b"\"a\x00b\"".to_vec()),
        ("a raw control character in a title", || {
            b"\"a\x01b\"".to_vec()
        }),
        ("a raw newline in a title", || b"\"a\nb\"".to_vec()),
        ("a 0xff byte in a title", || b"\"a\xffb\"".to_vec()),
        ("an overlong UTF-8 slash in a title", || {
            b"\"a\xc0\xafb\"".to_vec()
        }),
        ("a lone surrogate escape in a title", || {
            b"\"a\\ud800b\"".to_vec()
        }),
        ("nesting 100000 levels deep", || {
            let mut v = vec![b'['; 100_000];
            v.extend(vec![b']'; 100_000]);
            v
        }),
        ("a number beyond f64 (1e400)", || b"1e400".to_vec()),
        ("hv:size beyond u64", || b"18446744073709551616".to_vec()),
        ("a million images", || {
            let mut v = b"[".to_vec();
            v.extend(b"{},".repeat(1_000_000));
            v.extend(b"{}]");
            v
        }),
    ];
    for (name, raw) in title_bytes {
        let target: fn(&mut Value) = match name {
            "nesting 100000 levels deep" | "a number beyond f64 (1e400)" => |d| {
                il(d).insert("ad:extra".into(), json!("@@X@@"));
            },
            "hv:size beyond u64" => |d| image0(d)["hv:size"] = json!("@@X@@"),
            "a million images" => |d| il(d)["hv:images"] = json!("@@X@@"),
            _ => |d| image0(d)["dc:title"] = json!("@@X@@"),
        };
        cases.push(raw_case(name, malformed(), target, raw));
    }

    // Check 5: parse — values that are fine and must stay harmless.
    let harmless: Vec<Change> = vec![
        ("an escaped NUL in a title", |d| {
            image0(d)["dc:title"] = json!("a\u{0}b")
        }),
        ("terminal escapes in a title", |d| {
            image0(d)["dc:title"] = json!("\u{1b}[31mred\u{1b}[0m\u{7}\r\u{8}")
        }),
        ("shell metacharacters in a title", |d| {
            image0(d)["dc:title"] = json!("$(touch /tmp/pwned) `id` ; rm -rf / | && > x \"' \\")
        }),
        ("a 1 MiB title", |d| {
            image0(d)["dc:title"] = Value::String("t".repeat(1 << 20))
        }),
        ("a BOM-free list with unicode titles", |d| {
            image0(d)["dc:title"] = json!("Ünïcödé ☃ 𝄞")
        }),
        ("hv:size 2^63 - 1", |d| {
            image0(d)["hv:size"] = json!(i64::MAX)
        }),
        ("hv:size as a string of digits", |d| {
            image0(d)["hv:size"] = json!("64")
        }),
        ("the image's hv:version a number", |d| {
            image0(d)["hv:version"] = json!(2)
        }),
        ("an integer beyond i64 in an extra key", |d| {
            il(d).insert("ad:big".into(), json!(1.234_567_890_123_456_8e29));
        }),
        ("nesting 30 levels deep", |d| {
            let mut deep = json!(1);
            for _ in 0..25 {
                deep = json!([deep]);
            }
            il(d).insert("ad:deep".into(), deep);
        }),
        ("expires in 9999", |d| {
            il(d)["dc:date:expires"] = json!("9999-12-31T23:59:59Z")
        }),
        ("two endorsers, one of them the signer", |d| {
            let claim = il(d)["hv:endorser"].clone();
            il(d)["hv:endorser"] =
                json!([{"hv:x509": {"hv:dn": "/CN=Someone", "hv:ca": "/CN=Else"}}, claim]);
        }),
    ];
    for (name, change) in harmless {
        cases.push(doc_case(name, Accepted(0), change));
    }
    cases.push(case(
        "a payload with a byte order mark and CRLF line ends",
        Accepted(0),
        Accepted(0),
        Box::new(|w, id, v| {
            let text = serde_json::to_string_pretty(&base(w, id, v)).unwrap();
            let mut payload = "\u{feff}".as_bytes().to_vec();
            payload.extend(text.replace('\n', "\r\n").into_bytes());
            Route::new(w.pki.endorser.sign_smime_binary(&payload))
        }),
    ));
    for (i, format) in [SignFormat::SmimeOpaque, SignFormat::Pem, SignFormat::Der]
        .into_iter()
        .enumerate()
    {
        cases.push(signer_case(
            format!("signed as {format:?}"),
            Accepted(0),
            |w| &w.pki.endorser,
            |w| &w.pki.endorser,
            SignOptions {
                format,
                binary: true,
                include_chain: i % 2 == 0,
                ..SignOptions::default()
            },
        ));
    }

    // Check 11: images that fail their own checks are left out, the rest imported.
    for bad in [
        "..",
        ".",
        "/",
        "a/../../b",
        "../../etc/passwd",
        ".hidden",
        "-rf",
        "",
        "a b",
        "ünï",
        "a\u{0}b",
        "cache.index/..",
    ] {
        cases.push(doc_case(
            format!("image identifier {bad:?}"),
            Accepted(1),
            move |d| image0(d)["dc:identifier"] = json!(bad),
        ));
    }
    cases.push(doc_case(
        "image identifier of 129 characters",
        Accepted(1),
        |d| image0(d)["dc:identifier"] = json!("a".repeat(129)),
    ));
    cases.push(doc_case("a short checksum", Accepted(1), |d| {
        image0(d)["sl:checksum:sha512"] = json!("abc")
    }));
    cases.push(doc_case("a checksum of 128 non-hex", Accepted(1), |d| {
        image0(d)["sl:checksum:sha512"] = json!("g".repeat(128))
    }));
    for uri in [
        "ftp://example.org/x",
        "javascript:alert(1)",
        "/etc/passwd",
        "",
    ] {
        cases.push(doc_case(
            format!("image uri {uri:?}"),
            Accepted(1),
            move |d| image0(d)["hv:uri"] = json!(uri),
        ));
    }

    // Check 6: the endorser claim.
    cases.push(signer_case(
        "signed by the endorser, claiming another",
        Refused(ErrorCode::EndorserMismatch),
        |w| &w.pki.endorser,
        |w| &w.pki.other,
        SignOptions::default(),
    ));

    // Check 7: authorisation.
    cases.push(signer_case(
        "signed by a valid certificate of no linked endorser",
        Refused(ErrorCode::SignerNotEndorser),
        |w| &w.pki.other,
        |w| &w.pki.other,
        SignOptions::default(),
    ));
    cases.push(signer_case(
        "signed through the intermediate by an unlinked endorser",
        Refused(ErrorCode::SignerNotEndorser),
        |w| &w.pki.endorser2,
        |w| &w.pki.endorser2,
        SignOptions::default(),
    ));

    // Check 8: identity (updates only).
    cases.push(case(
        "another dc:identifier",
        Skip,
        Refused(ErrorCode::IdentifierMismatch),
        Box::new(|w, _, v| signed(w, &base(w, "another-list", v))),
    ));

    // Check 9: time.
    let times: Vec<TimeCase> = vec![
        (
            "created an hour in the future",
            Refused(ErrorCode::ListNotYetValid),
            Refused(ErrorCode::ListNotYetValid),
            |d| il(d)["dc:date:created"] = json!((now() + Duration::hours(1)).to_rfc3339()),
        ),
        (
            "created 4 minutes in the future (within the skew)",
            Accepted(0),
            Skip,
            |d| il(d)["dc:date:created"] = json!((now() + Duration::minutes(4)).to_rfc3339()),
        ),
        (
            "expired a second ago",
            Refused(ErrorCode::ListExpired),
            Refused(ErrorCode::ListExpired),
            |d| il(d)["dc:date:expires"] = json!((now() - Duration::seconds(1)).to_rfc3339()),
        ),
        (
            "expiring now",
            Refused(ErrorCode::ListExpired),
            Refused(ErrorCode::ListExpired),
            |d| il(d)["dc:date:expires"] = json!(now().to_rfc3339()),
        ),
        (
            "created in year 1",
            Accepted(0),
            Refused(ErrorCode::VersionRollback),
            |d| il(d)["dc:date:created"] = json!("0001-01-01T00:00:00Z"),
        ),
        // Check 10: freshness (updates only).
        (
            "an older hv:version",
            Skip,
            Refused(ErrorCode::VersionRollback),
            |d| il(d)["hv:version"] = json!("0.9.9"),
        ),
        (
            "a newer hv:version created earlier",
            Skip,
            Refused(ErrorCode::VersionRollback),
            |d| {
                il(d)["hv:version"] = json!("5000");
                il(d)["dc:date:created"] = json!((now() - Duration::hours(2)).to_rfc3339());
            },
        ),
    ];
    for (name, subscribe, update, change) in times {
        cases.push(case(
            name,
            subscribe,
            update,
            Box::new(move |w, id, v| {
                let mut doc = base(w, id, v);
                change(&mut doc);
                signed(w, &doc)
            }),
        ));
    }
    cases
}

/// The ids of every stored image, sorted.
fn stored_images(vmc: &Vmc) -> Vec<String> {
    let mut ids: Vec<String> = vmc
        .store()
        .images(&ImageFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| format!("{}:{}", r.subscription_id, r.image.identifier))
        .collect();
    ids.sort();
    ids
}

fn error_code(report: &ListReport) -> Option<ErrorCode> {
    report.error.as_ref().map(|e| e.code)
}

fn check_outcome(what: &str, expect: Expect, report: &ListReport) {
    match expect {
        Refused(code) => {
            assert_eq!(
                (report.status, error_code(report)),
                (UpdateStatus::Failed, Some(code)),
                "{what}: {:?}",
                report.error
            );
            let message = &report.error.as_ref().unwrap().message;
            assert!(
                message.len() < 4096,
                "{what}: the error message is {} bytes long",
                message.len()
            );
        }
        Accepted(left_out) => {
            assert!(
                matches!(report.status, UpdateStatus::Added | UpdateStatus::Updated),
                "{what}: {:?} {:?}",
                report.status,
                report.error
            );
            assert_eq!(
                report.rejected_images.len(),
                left_out,
                "{what}: {:?}",
                report.rejected_images
            );
        }
        Skip => {}
    }
}

#[test]
fn every_hostile_list_is_refused_with_its_code_or_handled_safely() {
    let w = World::new();
    let vmc = w.open();
    // The established subscription that updates are tried on.
    w.publish("/list", &base(&w, LIST_ID, "1"));
    w.subscribe(&vmc, "/list", NewImagePolicy::Subscribe);
    let main = vmc.store().find_subscription(LIST_ID).unwrap().unwrap();
    let dispatcher = Dispatcher::new(vmc.config());

    let cases = corpus();
    let (mut refused, mut accepted) = (0, 0);
    for (i, c) in cases.iter().enumerate() {
        let what = format!("case {i} ({})", c.name);
        if c.subscribe != Skip {
            let path = format!("/case/{i}");
            let id = format!("case-{i}");
            w.server.replace(&path, (c.build)(&w, &id, "1"));
            let before = vmc.store().subscriptions().unwrap().len();
            let images_before = stored_images(&vmc);
            let url = w.server.url(&path);
            let report = vmc
                .subscribe(&request(&url, NewImagePolicy::Subscribe), &dispatcher)
                .unwrap_or_else(|e| panic!("{what}: subscribe: {e}"));
            check_outcome(&format!("{what}, subscribe"), c.subscribe, &report);
            let stored = vmc.store().find_subscription(&url).unwrap();
            if let Refused(_) = c.subscribe {
                refused += 1;
                assert!(stored.is_none(), "{what}: a refused list was stored");
                assert_eq!(vmc.store().subscriptions().unwrap().len(), before, "{what}");
                assert_eq!(stored_images(&vmc), images_before, "{what}");
            } else {
                accepted += 1;
                let sub = stored.unwrap_or_else(|| panic!("{what}: not stored"));
                vmc.store().remove_subscription(sub.id).unwrap();
            }
            w.server.remove(&path);
        }
        if c.update != Skip {
            let version = format!("{}", 100 + i);
            w.server.replace("/list", (c.build)(&w, LIST_ID, &version));
            let before = vmc.store().subscription(main.id).unwrap();
            let images_before = stored_images(&vmc);
            let report = vmc
                .update(&before, &dispatcher)
                .unwrap_or_else(|e| panic!("{what}: update: {e}"));
            check_outcome(&format!("{what}, update"), c.update, &report);
            let after = vmc.store().subscription(main.id).unwrap();
            if let Refused(code) = c.update {
                refused += 1;
                assert_eq!(after.current, before.current, "{what}: the version changed");
                assert_eq!(stored_images(&vmc), images_before, "{what}");
                assert_eq!(after.last_error.map(|e| e.code), Some(code), "{what}");
            } else {
                accepted += 1;
                assert_eq!(
                    after.current.map(|c| c.version),
                    Some(version),
                    "{what}: not imported"
                );
            }
        }
        // Nothing unsafe is ever stored.
        for r in vmc.store().images(&ImageFilter::default()).unwrap() {
            assert!(
                is_safe_identifier(r.image.identifier.as_str()),
                "{what}: stored image {:?}",
                r.image.identifier
            );
            assert_eq!(r.image.sha512.len(), 128, "{what}");
        }
    }
    eprintln!(
        "hostile lists: {} cases, {refused} refusals and {accepted} safe acceptances checked",
        cases.len()
    );
    assert!(cases.len() >= 60, "the corpus shrank to {}", cases.len());
    // Every code of the list checks appears in the corpus.
    let codes: Vec<ErrorCode> = cases
        .iter()
        .flat_map(|c| [c.subscribe, c.update])
        .filter_map(|e| match e {
            Refused(code) => Some(code),
            _ => None,
        })
        .collect();
    for code in [
        ErrorCode::FetchFailed,
        ErrorCode::NotSigned,
        ErrorCode::SignatureInvalid,
        ErrorCode::CertificateUntrusted,
        ErrorCode::CertificateExpired,
        ErrorCode::CertificateRevoked,
        ErrorCode::ListMalformed,
        ErrorCode::EndorserMismatch,
        ErrorCode::SignerNotEndorser,
        ErrorCode::IdentifierMismatch,
        ErrorCode::ListNotYetValid,
        ErrorCode::ListExpired,
        ErrorCode::VersionRollback,
    ] {
        assert!(codes.contains(&code), "no case for {code}");
    }
}

#[test]
fn missing_or_stale_crls_refuse_the_list_and_store_nothing() {
    for (options, code) in [
        (
            CaDirOptions {
                crls: false,
                ..CaDirOptions::default()
            },
            ErrorCode::CrlMissing,
        ),
        (
            CaDirOptions {
                stale_crl: true,
                ..CaDirOptions::default()
            },
            ErrorCode::CrlExpired,
        ),
        (
            CaDirOptions {
                wrong_key_crl: true,
                ..CaDirOptions::default()
            },
            ErrorCode::CrlMissing,
        ),
    ] {
        let w = World::with_ca(options);
        let vmc = w.open();
        vmc.store().add_endorser("e1", &[w.identity()]).unwrap();
        w.publish("/list", &base(&w, LIST_ID, "1"));
        let url = w.server.url("/list");
        let report = vmc
            .subscribe(
                &request(&url, NewImagePolicy::Subscribe),
                &Dispatcher::new(vmc.config()),
            )
            .unwrap();
        check_outcome(&format!("{options:?}"), Refused(code), &report);
        assert!(vmc.store().subscriptions().unwrap().is_empty());
    }
}

#[test]
fn hostile_titles_reach_the_handler_as_data_never_as_shell() {
    let w = World::new();
    let marker = w.home().join("pwned");
    let titles = [
        format!("$(touch {})", marker.display()),
        format!("`touch {}`", marker.display()),
        format!("x; touch {}", marker.display()),
        format!("x\"; touch {}; \"", marker.display()),
        format!("x'; touch {}; '", marker.display()),
        format!("x\ntouch {}\n", marker.display()),
        format!(
            "x && touch {} || touch {}",
            marker.display(),
            marker.display()
        ),
        "\u{1b}]0;title\u{7}\u{1b}[2J plain".to_owned(),
        "tab\there, cr\rthere, nul\u{0}gone".to_owned(),
        "${IFS}$HOME%s%n{}".to_owned(),
    ];
    let entries: Vec<Value> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let bytes = [i as u8; 16];
            image_entry(
                &format!("img-{i}"),
                t,
                &w.server.url(&format!("/img/{i}")),
                16,
                &sha512_hex(&bytes),
            )
        })
        .collect();
    let out_dir = w.home().join("seen");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut config = w.config();
    // The handler quotes its variables, as a handler must: vmc passes values only through
    // the environment (and stdin), never inside the command line.
    config.event_handler = Some(format!(
        "printf '%s' \"$VMCATCHER_EVENT_DC_TITLE\" > '{}'/\"$VMCATCHER_EVENT_DC_IDENTIFIER\"",
        out_dir.display()
    ));
    let vmc = Vmc::open(config).unwrap();
    w.publish("/list", &w.list(LIST_ID, "1", entries));
    w.subscribe(&vmc, "/list", NewImagePolicy::Subscribe);
    assert!(
        !marker.exists(),
        "a title was run by the shell: {}",
        marker.display()
    );
    for (i, title) in titles.iter().enumerate() {
        let seen = std::fs::read(out_dir.join(format!("img-{i}")))
            .unwrap_or_else(|e| panic!("no SubscriptionImageNew event for img-{i}: {e}"));
        assert_eq!(
            seen,
            title.replace('\0', "").into_bytes(),
            "img-{i}: the handler saw another title"
        );
    }
    // The same through the journal's JSON payload.
    let events = vmc.store().events(false, None).unwrap();
    assert_eq!(events.len(), titles.len());
}

#[test]
fn a_few_hostile_lists_through_the_cli() {
    let w = World::new();
    w.cli_endorser();
    let wanted = [
        "an unsigned list",
        "signed by a rogue CA's certificate with the endorser's name",
        "a payload changed after signing",
        "a 0xff byte in a title",
        "image identifier \"a/../../b\"",
        "shell metacharacters in a title",
        "created an hour in the future",
    ];
    let cases: Vec<Case> = corpus()
        .into_iter()
        .filter(|c| wanted.contains(&c.name.as_str()))
        .collect();
    assert_eq!(cases.len(), wanted.len());
    for (i, c) in cases.iter().enumerate() {
        let path = format!("/cli/{i}");
        w.server
            .replace(&path, (c.build)(&w, &format!("cli-{i}"), "1"));
        let url = w.server.url(&path);
        let out = w
            .cmd()
            .args(["--json", "subscribe", "add", &url, "--endorser", "e1"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", c.name, crate::common::describe(&out)));
        let sub = &report["subscriptions"][0];
        let subs = w.json(&["subscribe", "list"], 0);
        let stored = subs
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["url"] == url.as_str());
        match c.subscribe {
            Refused(code) => {
                assert_eq!(out.status.code(), Some(1), "{}: {report}", c.name);
                assert_eq!(sub["status"], "failed", "{}: {report}", c.name);
                assert_eq!(sub["error"]["code"], code.as_str(), "{}: {report}", c.name);
                assert!(!stored, "{}: stored", c.name);
                // The text form names the code too.
                let text = w.run(&["subscribe", "add", &url, "--endorser", "e1"]);
                assert!(
                    String::from_utf8_lossy(&text.stdout).contains(code.as_str()),
                    "{}: {}",
                    c.name,
                    crate::common::describe(&text)
                );
            }
            Accepted(left_out) => {
                assert_eq!(out.status.code(), Some(0), "{}: {report}", c.name);
                assert_eq!(sub["status"], "added", "{}: {report}", c.name);
                assert_eq!(
                    sub["rejected_images"].as_array().map(Vec::len),
                    Some(left_out),
                    "{}: {report}",
                    c.name
                );
                assert!(stored, "{}: not stored", c.name);
                let out = w.run(&["subscribe", "remove", &url]);
                assert_eq!(out.status.code(), Some(0));
            }
            Skip => unreachable!(),
        }
    }
}
