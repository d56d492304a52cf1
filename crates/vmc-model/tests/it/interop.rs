//! The interop payloads (openssl-cli lists made at test time, cloudkeeper fixtures when present):
//! what the model layer must make of each.
//!
//! The signed lists are detached `multipart/signed` S/MIME. Their payload is extracted here
//! without openssl, as RFC 1847 and RFC 2046 define it: the signed content is the whole first
//! body part, from the line after the first delimiter up to, not including, the line break
//! before the next delimiter (that CRLF or LF belongs to the delimiter). In these files the
//! first part carries no MIME headers, so the signed bytes are the JSON itself, with CRLF line
//! ends. That this is byte for byte what was signed is checked against the `messageDigest` in
//! the signature (sha-256 lists), and it equals what `openssl smime -verify -noverify -binary`
//! prints (checked by hand when these tests were written).
//!
//! Signature, chain, time and version checks are not this crate's business: lists refused for
//! those reasons (tampered, revoked, rogue, expired-list, future-created, rollback…) must parse
//! here. The opaque and PEM lists (`good-opaque.p7m`, `good-pem.p7`) hold their payload inside
//! the DER signed-data; extracting it needs a PKCS#7 parser, so they are covered by the
//! vmc-trust tests and skipped here.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vmc_model::{ImageError, ImageList, ListError, Location, ParsedList, Version};

use crate::common::{assert_message, cloudkeeper_dir, openssl_cli, parse, parse_bytes};

/// A detached `multipart/signed` message, split into its parts.
struct Detached {
    /// The `micalg` parameter, e.g. `sha-256`.
    micalg: String,
    /// The signed content: the whole first body part.
    signed: Vec<u8>,
    /// The DER of the `application/x-pkcs7-signature` part.
    signature: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The value of parameter `name` in a header value (`; name="value"` or `; name=value`).
fn header_param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The headers of an entity (up to the first empty line) and the offset of its body.
fn split_headers(bytes: &[u8], from: usize) -> (Vec<String>, usize) {
    let mut headers: Vec<String> = Vec::new();
    let mut at = from;
    loop {
        let end = find(bytes, b"\n", at).expect("headers end");
        let line = String::from_utf8(bytes[at..end].to_vec()).expect("ASCII header");
        let line = line.trim_end_matches('\r');
        at = end + 1;
        if line.is_empty() {
            return (headers, at);
        }
        match (line.starts_with([' ', '\t']), headers.last_mut()) {
            (true, Some(last)) => last.push_str(line),
            _ => headers.push(line.to_owned()),
        }
    }
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Where the body part starting at `start` ends: the offset of the line break before the next
/// `delimiter`, and the offset just past that delimiter.
fn part_end(bytes: &[u8], delimiter: &[u8], start: usize) -> (usize, usize) {
    let mut needle = b"\n".to_vec();
    needle.extend_from_slice(delimiter);
    let lf = find(bytes, &needle, start).expect("closing delimiter");
    let end = if lf > start && bytes[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    (end, lf + needle.len())
}

fn split_detached(msg: &[u8]) -> Detached {
    let (headers, body) = split_headers(msg, 0);
    let content_type = header(&headers, "Content-Type").expect("a Content-Type");
    assert!(
        content_type
            .to_ascii_lowercase()
            .starts_with("multipart/signed"),
        "{content_type}"
    );
    let boundary = header_param(content_type, "boundary").expect("a boundary");
    let micalg = header_param(content_type, "micalg").expect("a micalg");
    let delimiter = format!("--{boundary}").into_bytes();

    // The first delimiter starts a line of its own (after the preamble).
    let mut needle = b"\n".to_vec();
    needle.extend_from_slice(&delimiter);
    let first = find(msg, &needle, body - 1).expect("first delimiter") + needle.len();
    let start = find(msg, b"\n", first).expect("end of delimiter line") + 1;
    let (end, after) = part_end(msg, &delimiter, start);
    let signed = msg[start..end].to_vec();

    // The second part: the signature, base64 after its headers.
    let second = find(msg, b"\n", after).expect("end of delimiter line") + 1;
    let (sig_headers, sig_body) = split_headers(msg, second);
    let sig_type = header(&sig_headers, "Content-Type").expect("signature Content-Type");
    assert!(sig_type.contains("pkcs7-signature"), "{sig_type}");
    assert_eq!(
        header(&sig_headers, "Content-Transfer-Encoding").map(str::to_ascii_lowercase),
        Some("base64".to_owned())
    );
    let (sig_end, _) = part_end(msg, &delimiter, sig_body);
    Detached {
        micalg,
        signed,
        signature: base64_decode(&msg[sig_body..sig_end]),
    }
}

fn base64_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => panic!("not base64: {c:#04x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).unwrap());
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Whether the signature's signed attributes carry the sha-256 of `content` (its
/// `messageDigest`), i.e. whether `content` is exactly what was signed.
fn signature_covers(d: &Detached) -> bool {
    assert_eq!(d.micalg, "sha-256");
    let digest = Sha256::digest(&d.signed);
    d.signature
        .windows(digest.len())
        .any(|w| w == digest.as_slice())
}

/// The first part of these messages has no MIME headers: the signed bytes are the payload.
fn payload(d: &Detached) -> &[u8] {
    let first_line = d.signed.split(|&b| b == b'\n').next().unwrap_or_default();
    let looks_like_header = first_line.iter().position(|&b| b == b':').is_some_and(|i| {
        i > 0
            && first_line[..i]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    });
    assert!(!looks_like_header, "first part has MIME headers");
    &d.signed
}

fn openssl_dir() -> std::path::PathBuf {
    openssl_cli()
}

fn manifest() -> Value {
    serde_json::from_slice(&fs::read(openssl_dir().join("MANIFEST.json")).unwrap()).unwrap()
}

fn detached(path: &Path) -> Detached {
    split_detached(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn ids(list: &ImageList) -> Vec<&str> {
    list.images.iter().map(|i| i.identifier.as_str()).collect()
}

#[test]
fn mime_split_finds_the_exact_signed_bytes() {
    let lists = openssl_dir().join("lists");
    let mut checked = 0;
    for entry in fs::read_dir(&lists).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("smime") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d = detached(&path);
        match (name.as_str(), d.micalg.as_str()) {
            ("tampered.smime", _) => {
                assert!(
                    !signature_covers(&d),
                    "tampered payload matches its signature"
                );
            }
            // No SHA-1 among the dependencies; its payload is compared with good.smime's below.
            (_, "sha1") => assert_eq!(name, "good-sha1.smime"),
            _ => assert!(
                signature_covers(&d),
                "{name}: extracted bytes are not the signed ones"
            ),
        }
        checked += 1;
    }
    assert_eq!(checked, 19);

    let good = detached(&lists.join("good.smime"));
    let sha1 = detached(&lists.join("good-sha1.smime"));
    assert_eq!(sha1.signed, good.signed);
    // The signed form has CRLF line ends and no final line break; unsigned.json is the same
    // document with LF.
    assert!(good.signed.starts_with(b"{\r\n"));
    assert!(good.signed.ends_with(b"\r\n}"));
    let unsigned = fs::read(lists.join("unsigned.json")).unwrap();
    let lf: Vec<u8> = good
        .signed
        .iter()
        .copied()
        .filter(|&b| b != b'\r')
        .collect();
    assert_eq!(lf, unsigned);
    // A payload ending in CRLF keeps it: only the line break before the delimiter goes.
    assert_eq!(
        detached(&lists.join("not-json.smime")).signed,
        b"this is not json\r\n"
    );
}

/// What the model layer must make of each MANIFEST case.
enum Expect {
    /// Payload inside DER signed-data; see the module doc.
    Skip,
    /// Parses; the list holds these MANIFEST images (by index); these identifiers are rejected.
    Parses(&'static [usize], &'static [&'static str]),
    Syntax,
    MissingKey(&'static str),
    Duplicate(&'static str),
}

fn expectation(case: &str) -> Expect {
    match case {
        "good-opaque.p7m" | "good-pem.p7" => Expect::Skip,
        "good.smime"
        | "good-sha1.smime"
        | "good-v2.smime"
        | "rollback-v0.smime"
        | "tampered.smime"
        | "revoked.smime"
        | "expired-signer.smime"
        | "rogue.smime"
        | "other-signer.smime"
        | "json-dn-mismatch.smime"
        | "expired-list.smime"
        | "future-created.smime"
        | "other-identifier.smime"
        | "bad-checksum.smime"
        | "unsigned.json" => Expect::Parses(&[0, 1, 2], &[]),
        "removed-image.smime" => Expect::Parses(&[0, 1], &[]),
        "path-traversal.smime" => Expect::Parses(&[0, 2], &["../../../../owned-by-list"]),
        "not-json.smime" => Expect::Syntax,
        "missing-keys.smime" => Expect::MissingKey("dc:identifier"),
        "duplicate-ids.smime" => Expect::Duplicate("f3cba9bb-ce26-4020-b238-77a60f7fe90c"),
        other => panic!("MANIFEST case {other} is not classified by this test"),
    }
}

fn case_payload(case: &str) -> Vec<u8> {
    let path = openssl_dir().join("lists").join(case);
    if case.ends_with(".json") {
        fs::read(path).unwrap()
    } else {
        payload(&detached(&path)).to_vec()
    }
}

#[test]
fn every_manifest_case_parses_or_is_refused_precisely() {
    let manifest = manifest();
    let images = manifest["images"].as_array().unwrap();
    let cases = manifest["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 22);
    let mut parsed_cases = 0;
    for (case, info) in cases {
        let expect = info["expect"].as_str().unwrap();
        let outcome = expectation(case);
        if matches!(outcome, Expect::Skip) {
            continue;
        }
        parsed_cases += 1;
        let result = parse_bytes(&case_payload(case));
        match outcome {
            Expect::Skip => unreachable!(),
            Expect::Parses(indexes, rejected) => {
                let ParsedList {
                    list,
                    rejected: out,
                } = result.unwrap_or_else(|e| panic!("{case}: refused: {e}"));
                let want: Vec<&str> = indexes
                    .iter()
                    .map(|&i| images[i]["dc:identifier"].as_str().unwrap())
                    .collect();
                assert_eq!(ids(&list), want, "{case}");
                for (image, &i) in list.images.iter().zip(indexes) {
                    let mut expected = images[i].as_object().unwrap().clone();
                    if case == "bad-checksum.smime" && i == 2 {
                        // Well-formed hex, only the file does not match it.
                        expected.insert("sl:checksum:sha512".into(), json!("0".repeat(128)));
                    }
                    if case == "tampered.smime" && i == 0 {
                        // The change made after signing.
                        expected.insert("dc:description".into(), json!("Test image X"));
                    }
                    assert_eq!(image.to_json(), expected, "{case}: image {i}");
                }
                let out_ids: Vec<&str> = out
                    .iter()
                    .map(|r| match &r.error {
                        ImageError::UnsafeIdentifier { source, .. } => source.value.as_str(),
                        other => panic!("{case}: unexpected {other:?}"),
                    })
                    .collect();
                assert_eq!(out_ids, rejected, "{case}");
                assert!(
                    matches!(expect, "accept" | "accept-list" | "reject" | "reject-image"),
                    "{case}: {expect}"
                );
                assert_eq!(expect == "reject-image", !rejected.is_empty(), "{case}");
            }
            Expect::Syntax => {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, ListError::Syntax { line: 1, .. }),
                    "{case}: {err:?}"
                );
                assert_eq!(expect, "reject");
            }
            Expect::MissingKey(key) => {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, ListError::MissingKey { key: k, location: Location::List } if k == key),
                    "{case}: {err:?}"
                );
                assert_message(&err, &["the list", key]);
                assert_eq!(expect, "reject");
            }
            Expect::Duplicate(id) => {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, ListError::DuplicateImageId { identifier } if identifier == id),
                    "{case}: {err:?}"
                );
                assert_message(&err, &[id]);
                assert_eq!(expect, "reject");
            }
        }
    }
    assert_eq!(parsed_cases, 20);
}

fn list_of(case: &str) -> ImageList {
    parse_bytes(&case_payload(case))
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .list
}

#[test]
fn good_list_carries_what_the_manifest_says() {
    let manifest = manifest();
    let list = list_of("good.smime");
    assert_eq!(list.identifier.as_str(), manifest["list_identifier"]);
    assert_eq!(list.title, "Interop list");
    assert_eq!(list.vo(), Some("test.vo.example"));
    assert_eq!(list.version, Version::new("1"));
    assert_eq!(list.created, utc("2027-05-31T23:00:00Z"));
    assert_eq!(list.expires, utc("2027-06-29T00:00:00Z"));
    assert_eq!(list.uri, "http://127.0.0.1:8000/lists/good.smime");
    let [endorser] = list.endorsers.as_slice() else {
        panic!("one endorser expected")
    };
    assert_eq!(endorser.dn, manifest["endorser"]["subject"]);
    assert_eq!(endorser.ca, manifest["endorser"]["issuer"]);
    assert_eq!(endorser.creator.as_deref(), Some("Interop Endorser"));
    assert_eq!(endorser.email.as_deref(), Some("endorser@example.org"));
    assert_eq!(list.images[0].text("hv:hypervisor").as_deref(), Some("KVM"));
    assert_eq!(list.images[0].text("sl:comments").as_deref(), Some(""));
    // The unsigned copy is the same list.
    assert_eq!(list_of("unsigned.json"), list);
}

#[test]
fn cases_refused_later_differ_where_the_manifest_says() {
    let manifest = manifest();
    let verify_at = utc(manifest["verify_at"].as_str().unwrap());
    let good = list_of("good.smime");
    let v2 = list_of("good-v2.smime");
    assert!(v2.version.is_newer_than(&good.version));
    assert!(
        list_of("removed-image.smime")
            .version
            .is_newer_than(&v2.version)
    );
    assert!(
        list_of("rollback-v0.smime")
            .version
            .is_older_than(&good.version)
    );
    assert!(list_of("expired-list.smime").expires < verify_at);
    assert!(good.expires > verify_at && good.created <= verify_at);
    assert!(list_of("future-created.smime").created > verify_at);
    assert_ne!(
        list_of("other-identifier.smime").identifier,
        good.identifier
    );
    assert_ne!(
        list_of("json-dn-mismatch.smime").endorsers[0].dn,
        manifest["endorser"]["subject"]
    );
    let rogue = list_of("rogue.smime");
    assert_eq!(rogue.endorsers[0].dn, manifest["endorser"]["subject"]);
    assert_ne!(rogue.endorsers[0].ca, manifest["endorser"]["issuer"]);
    let tampered = list_of("tampered.smime");
    assert_eq!(
        tampered.images[0].text("dc:description").as_deref(),
        Some("Test image X")
    );
}

#[test]
fn path_traversal_image_is_reported_not_imported() {
    let parsed = parse_bytes(&case_payload("path-traversal.smime")).unwrap();
    let [rejected] = parsed.rejected.as_slice() else {
        panic!("one rejected image expected")
    };
    assert_eq!(
        rejected.error.location(),
        &Location::Image {
            index: 1,
            identifier: Some("../../../../owned-by-list".into())
        }
    );
    assert_message(
        &rejected.error,
        &["image #1 (\"../../../../owned-by-list\")"],
    );
    assert!(
        parsed
            .list
            .images
            .iter()
            .all(|i| !i.identifier.as_str().contains('/'))
    );
}

#[test]
fn missing_keys_case_names_the_image_key_too() {
    // With the list's identifier put back, the next fault is image 0's missing checksum.
    let mut doc: Value = serde_json::from_slice(&case_payload("missing-keys.smime")).unwrap();
    doc["hv:imagelist"]["dc:identifier"] = json!("4a58acb9-e7f1-4128-9edf-8c2df3696d7c");
    let err = parse(&doc).unwrap_err();
    let id = "f3cba9bb-ce26-4020-b238-77a60f7fe90c";
    assert!(
        matches!(&err, ListError::MissingKey { key, location: Location::Image { index: 0, identifier: Some(i) } }
        if key == "sl:checksum:sha512" && i == id),
        "{err:?}"
    );
    assert_message(&err, &["image #0", id, "sl:checksum:sha512"]);
}

// ---- cloudkeeper ----

fn cloudkeeper(dir: &Path, file: &str) -> Vec<u8> {
    fs::read(dir.join(file)).unwrap()
}

#[test]
fn cloudkeeper_unsigned_list_parses() {
    let Some(dir) = cloudkeeper_dir() else { return };
    let parsed = parse_bytes(&cloudkeeper(&dir, "imagelist01.unsigned")).unwrap();
    assert!(parsed.rejected.is_empty());
    let list = parsed.list;
    assert_eq!(
        list.identifier.as_str(),
        "76fdee70-8119-5d33-aaaa-3c57e1c60df1"
    );
    assert_eq!(list.vo(), Some("some1.vo.net"));
    assert_eq!(list.version, Version::new("20150618211400"));
    assert_eq!(list.created, utc("2015-06-18T21:14:00Z"));
    assert_eq!(list.expires, utc("2499-12-31T22:00:00Z"));
    assert_eq!(list.endorsers.len(), 1);
    assert_eq!(list.endorsers[0].ca, "/DC=XXX/DC=YYY/CN=SOME TEST CA");
    assert_eq!(
        list.endorsers[0].creator.as_deref(),
        Some("Applications Database")
    );
    assert_eq!(
        ids(&list),
        [
            "c0482bc2-bf41-5d49-aaaa-a750174a186b",
            "662b0e71-3e21-bbbb-b6a1-cc2f51319fa7"
        ]
    );
    // AppDB writes sizes as strings of digits.
    assert_eq!(list.images[0].size, 121_243_136);
    assert_eq!(list.images[1].size, 581_816_320);
    assert_eq!(list.images[0].version, "3.3.0-1");
    assert_eq!(
        list.images[0].text("ad:user:fullname").as_deref(),
        Some("Bruce Wayne")
    );
    assert_eq!(
        list.images[0].text("dc:date:expires").as_deref(),
        Some("2499-12-31T22:00:00Z")
    );
}

#[test]
fn cloudkeeper_signed_payloads_parse_with_crlf() {
    let Some(dir) = cloudkeeper_dir() else { return };
    let unsigned = parse_bytes(&cloudkeeper(&dir, "imagelist01.unsigned"))
        .unwrap()
        .list;
    let expected = [
        ("imagelist01.signed", "aaaa", ["aaaa", "bbbb"], true),
        ("imagelist02.signed", "cccc", ["cccc", "dddd"], true),
        ("imagelist03.signed", "eeee", ["eeee", "ffff"], true),
        // Identifiers that are not RFC 4122 UUIDs are opaque and accepted.
        ("imagelist04.signed", "gggg", ["gggg", "hhhh"], true),
        // Tampered after signing: its JSON is still a list.
        ("imagelist_invalid.signed", "aaaa", ["aaaa", "bbbb"], false),
    ];
    for (file, list_tag, image_tags, intact) in expected {
        let d = split_detached(&cloudkeeper(&dir, file));
        assert_eq!(signature_covers(&d), intact, "{file}");
        let bytes = payload(&d);
        assert!(
            bytes.windows(2).any(|w| w == b"\r\n"),
            "{file}: CRLF expected"
        );
        let parsed = parse_bytes(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(parsed.rejected.is_empty(), "{file}");
        let list = parsed.list;
        assert_eq!(
            list.identifier.as_str(),
            format!("76fdee70-8119-5d33-{list_tag}-3c57e1c60df1"),
            "{file}"
        );
        assert_eq!(
            ids(&list),
            [
                format!("c0482bc2-bf41-5d49-{}-a750174a186b", image_tags[0]),
                format!("662b0e71-3e21-{}-b6a1-cc2f51319fa7", image_tags[1]),
            ],
            "{file}"
        );
        if list_tag == "aaaa" {
            assert_eq!(list, unsigned, "{file}");
        }
    }
}

/// What a cloudkeeper `structures/*.json` file is, and so what it must yield.
enum Structure {
    /// A whole list document.
    List { images: usize },
    /// The contents of `hv:imagelist` without the wrapper: refused as a document; wrapped, it
    /// yields this.
    ListBody(Result<usize, &'static str>),
    /// One element of `hv:images` (`{"hv:image": …}`).
    ImageEntry,
    /// The contents of one `hv:image`, or the missing key that refuses the list.
    Image(Result<(), &'static str>),
    /// A value for `hv:endorser`, or the missing key that refuses the list.
    Endorser(Result<(), &'static str>),
    /// Not image-list data at all (fixtures of cloudkeeper's hash helpers).
    Unrelated,
}

fn structure(file: &str) -> Structure {
    match file {
        "image_list10.json" => Structure::List { images: 2 },
        "image_list07.json" => Structure::ListBody(Ok(2)),
        // List heads without images: the first mandatory key missing is named.
        "image_list05.json" => Structure::ListBody(Err("hv:version")),
        "image_list06.json" => Structure::ListBody(Err("dc:source")),
        "image_list01.json" => Structure::ImageEntry,
        // AppDB images; 03 with the endorser's keys mixed in, appliance02 as cloudkeeper's
        // appliance model with a numeric size.
        "image_list03.json" | "image_list13.json" | "appliance02.json" => Structure::Image(Ok(())),
        // An appliance without hv:uri, hv:size and checksum.
        "appliance01.json" => Structure::Image(Err("hv:uri")),
        // An image without dc:identifier.
        "image_list14.json" => Structure::Image(Err("dc:identifier")),
        "image_list02.json" => Structure::Endorser(Ok(())),
        // The endorser's keys without the hv:x509 object.
        "image_list04.json" => Structure::Endorser(Err("hv:endorser.hv:x509")),
        "hash01.json" | "hash02.json" | "hash03.json" => Structure::Unrelated,
        other => panic!("cloudkeeper structure {other} is not classified by this test"),
    }
}

/// An `hv:image` object as the model writes it back: every key kept, `hv:size` a number.
fn normalised(image: &Value) -> Value {
    let mut image = image.clone();
    if let Some(size) = image["hv:size"].as_str() {
        image["hv:size"] = json!(size.parse::<u64>().unwrap());
    }
    image
}

/// image_list10.json, the one whole list, with its images replaced.
fn template(dir: &Path, images: Value) -> Value {
    let mut doc: Value =
        serde_json::from_slice(&cloudkeeper(dir, "structures/image_list10.json")).unwrap();
    doc["hv:imagelist"]["hv:images"] = images;
    doc
}

#[test]
fn cloudkeeper_structures_yield_what_they_are() {
    let Some(ck) = cloudkeeper_dir() else { return };
    let dir = ck.join("structures");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 15);
    let full = parse_bytes(&fs::read(dir.join("image_list10.json")).unwrap())
        .unwrap()
        .list;
    for file in &files {
        let bytes = fs::read(dir.join(file)).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let as_document = parse_bytes(&bytes);
        let kind = structure(file);
        if let Structure::List { images } = kind {
            let parsed = as_document.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(parsed.list.images.len(), images, "{file}");
            assert!(parsed.rejected.is_empty(), "{file}");
            continue;
        }
        // Everything else is no list document.
        let err = as_document.unwrap_err();
        assert!(
            matches!(&err, ListError::MissingKey { key, location: Location::List } if key == "hv:imagelist"),
            "{file}: {err:?}"
        );
        let image_id = value["dc:identifier"].as_str().map(str::to_owned);
        match kind {
            Structure::List { .. } => unreachable!(),
            Structure::ListBody(expect) => {
                let result = parse(&json!({"hv:imagelist": value}));
                match expect {
                    Ok(n) => {
                        let list = result.unwrap().list;
                        assert_eq!(list.images.len(), n, "{file}");
                        assert_eq!(list, full, "{file}");
                    }
                    Err(key) => assert!(
                        matches!(&result, Err(ListError::MissingKey { key: k, location: Location::List }) if k == key),
                        "{file}: {result:?}"
                    ),
                }
            }
            Structure::ImageEntry => {
                let list = parse(&template(&ck, json!([value]))).unwrap().list;
                let [image] = list.images.as_slice() else {
                    panic!("{file}: one image expected")
                };
                assert_eq!(image.identifier, full.images[0].identifier, "{file}");
                assert_eq!(
                    Value::Object(image.to_json()),
                    normalised(&value["hv:image"]),
                    "{file}"
                );
            }
            Structure::Image(expect) => {
                let result = parse(&template(&ck, json!([{"hv:image": value}])));
                match expect {
                    Ok(()) => {
                        let parsed = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                        assert!(parsed.rejected.is_empty(), "{file}");
                        let image = &parsed.list.images[0];
                        assert_eq!(Some(image.identifier.as_str()), image_id.as_deref());
                        assert_eq!(Value::Object(image.to_json()), normalised(&value), "{file}");
                    }
                    Err(key) => {
                        let err = result.unwrap_err();
                        let location = Location::Image {
                            index: 0,
                            identifier: image_id.clone(),
                        };
                        assert!(
                            matches!(&err, ListError::MissingKey { key: k, location: l } if k == key && *l == location),
                            "{file}: {err:?}"
                        );
                        assert_message(&err, &["image #0", key]);
                    }
                }
            }
            Structure::Endorser(expect) => {
                let mut doc = template(&ck, json!([]));
                doc["hv:imagelist"]["hv:endorser"] = value.clone();
                let result = parse(&doc);
                match expect {
                    Ok(()) => {
                        let list = result.unwrap().list;
                        assert_eq!(list.endorsers, full.endorsers, "{file}");
                    }
                    Err(key) => assert!(
                        matches!(&result, Err(ListError::MissingKey { key: k, location: Location::List }) if k == key),
                        "{file}: {result:?}"
                    ),
                }
            }
            Structure::Unrelated => {
                // As an image it lacks every mandatory key, the first of them is named.
                let result = parse(&template(&ck, json!([{"hv:image": value}])));
                assert!(
                    matches!(&result, Err(ListError::MissingKey { key, .. }) if key == "dc:identifier"),
                    "{file}: {result:?}"
                );
            }
        }
    }
}
