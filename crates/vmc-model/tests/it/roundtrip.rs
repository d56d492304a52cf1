//! Parse → `to_json_bytes` → parse yields an equal list: for hand-written lists, for the
//! interop payloads and for generated lists.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use vmc_model::{
    EndorserClaim, Identifier, Image, ImageList, JsonObject, ParseLimits, Version, parse_image_list,
};

use crate::common::{accept, base_list, image_obj, list_obj, parse_bytes};

fn round_trip(list: &ImageList) -> ImageList {
    let bytes = list.to_json_bytes();
    let parsed = parse_image_list(&bytes, &ParseLimits::default())
        .unwrap_or_else(|e| panic!("written list does not parse: {e}"));
    assert!(parsed.rejected.is_empty());
    parsed.list
}

#[test]
fn base_list_round_trips() {
    let list = accept(&base_list()).list;
    assert_eq!(round_trip(&list), list);
}

#[test]
fn written_form_is_pretty_json_ending_in_a_newline() {
    let list = accept(&base_list()).list;
    let bytes = list.to_json_bytes();
    assert!(bytes.starts_with(b"{\n  \"hv:imagelist\": {\n"));
    assert!(bytes.ends_with(b"}\n"));
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value, list.to_json());
}

#[test]
fn normalised_forms_round_trip_to_the_canonical_form() {
    let mut doc = base_list();
    list_obj(&mut doc).insert(
        "dc:date:created".into(),
        json!("2027-01-01T05:30:00.5+05:30"),
    );
    list_obj(&mut doc).insert(
        "hv:endorser".into(),
        json!([
            {"hv:x509": {"hv:dn": "/CN=One", "hv:ca": "/CN=CA", "x:k": 1}},
            {"hv:x509": {"hv:dn": "/CN=Two", "hv:ca": "/CN=CA", "dc:creator": null}},
        ]),
    );
    list_obj(&mut doc).insert("ad:vo".into(), json!("vo.example.org"));
    image_obj(&mut doc, 0).insert("hv:size".into(), json!("121243136"));
    image_obj(&mut doc, 0).insert("hv:version".into(), json!(20141029));
    image_obj(&mut doc, 1).insert("sl:checksum:sha512".into(), json!("AB".repeat(64)));
    image_obj(&mut doc, 2).insert("ad:user:fullname".into(), json!("Barry Allen"));

    let list = accept(&doc).list;
    assert_eq!(round_trip(&list), list);

    let written = list.to_json();
    let inner = &written["hv:imagelist"];
    assert_eq!(inner["dc:date:created"], "2027-01-01T00:00:00.500Z");
    assert!(inner["hv:endorser"].is_array());
    assert_eq!(inner["hv:endorser"][0]["hv:x509"]["x:k"], 1);
    assert!(
        inner["hv:endorser"][1]["hv:x509"]
            .get("dc:creator")
            .is_none()
    );
    let first = &inner["hv:images"][0]["hv:image"];
    assert_eq!(first["hv:size"], json!(121_243_136));
    assert_eq!(first["hv:version"], "20141029");
    assert_eq!(
        inner["hv:images"][1]["hv:image"]["sl:checksum:sha512"],
        "ab".repeat(64)
    );
    assert_eq!(
        inner["hv:images"][2]["hv:image"]["ad:user:fullname"],
        "Barry Allen"
    );
}

#[test]
fn rejected_images_are_not_written_back() {
    let mut doc = base_list();
    image_obj(&mut doc, 1).insert("dc:identifier".into(), json!("../b"));
    let parsed = accept(&doc);
    assert_eq!(parsed.rejected.len(), 1);
    let again = round_trip(&parsed.list);
    let ids: Vec<&str> = again.images.iter().map(|i| i.identifier.as_str()).collect();
    assert_eq!(ids, ["img-a", "img-c"]);
}

#[test]
fn interop_payloads_round_trip() {
    let openssl = crate::common::openssl_cli().join("lists/unsigned.json");
    assert_round_trip(&openssl);
    if let Some(dir) = crate::common::cloudkeeper_dir() {
        for file in ["imagelist01.unsigned", "structures/image_list10.json"] {
            assert_round_trip(&dir.join(file));
        }
    }
}

/// The list in `file` survives the round trip, and only normalisation changes its document.
fn assert_round_trip(file: &std::path::Path) {
    let bytes = std::fs::read(file).unwrap();
    let list = parse_bytes(&bytes).unwrap().list;
    assert_eq!(round_trip(&list), list, "{}", file.display());
    // Only normalisation may change the document: `hv:size` strings become numbers.
    let original: Value = serde_json::from_slice(&bytes).unwrap();
    let mut written = list.to_json();
    for (image, orig) in written["hv:imagelist"]["hv:images"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(original["hv:imagelist"]["hv:images"].as_array().unwrap())
    {
        image["hv:image"]["hv:size"] = orig["hv:image"]["hv:size"].clone();
    }
    assert_eq!(written, original, "{}", file.display());
}

// ---- generated lists ----

fn identifier() -> impl Strategy<Value = Identifier> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,40}".prop_map(|s| Identifier::new(s).unwrap())
}

fn date() -> impl Strategy<Value = DateTime<Utc>> {
    // 0001-01-01 .. 9999-12-31, with sub-second precision.
    (-62_135_596_800_i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Utc.timestamp_opt(secs, nanos).unwrap())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn extra_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z:]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Extra keys never collide with mandatory ones: they all start with `x:`.
fn extras() -> impl Strategy<Value = JsonObject> {
    prop::collection::btree_map("x:[a-z_]{1,8}", extra_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn endorser() -> impl Strategy<Value = EndorserClaim> {
    (
        ".{0,30}",
        ".{0,30}",
        proptest::option::of(".{0,10}"),
        proptest::option::of(".{0,10}"),
        extras(),
    )
        .prop_map(|(dn, ca, creator, email, extra)| EndorserClaim {
            dn,
            ca,
            creator,
            email,
            extra,
        })
}

fn image() -> impl Strategy<Value = Image> {
    (
        identifier(),
        ".{0,20}",
        prop_oneof![
            "https://[a-z]{1,10}\\.org/[a-z/]{0,10}",
            "file:///[a-z/]{0,10}"
        ],
        any::<u64>(),
        "[0-9a-f]{128}",
        "[0-9a-z.-]{0,8}",
        extras(),
    )
        .prop_map(|(id, title, uri, size, sha512, version, extra)| {
            let mut image = Image::new(id, title, uri, size, sha512, version);
            image.extra = extra;
            image
        })
}

fn image_list() -> impl Strategy<Value = ImageList> {
    (
        (
            identifier(),
            ".{0,20}",
            ".{0,40}",
            ".{0,20}",
            date(),
            date(),
        ),
        (
            "[0-9a-z.-]{0,10}",
            ".{0,20}",
            prop::collection::vec(endorser(), 1..4),
            prop::collection::vec(image(), 0..6),
            extras(),
        ),
    )
        .prop_map(
            |(
                (identifier, title, description, source, created, expires),
                (version, uri, endorsers, images, extra),
            )| {
                // Image identifiers must be unique within a list.
                let mut seen = std::collections::HashSet::new();
                let images = images
                    .into_iter()
                    .filter(|i| seen.insert(i.identifier.clone()))
                    .collect();
                ImageList {
                    identifier,
                    title,
                    description,
                    source,
                    created,
                    expires,
                    version: Version::new(version),
                    uri,
                    endorsers,
                    images,
                    extra,
                }
            },
        )
}

proptest! {
    #[test]
    fn generated_lists_round_trip(list in image_list()) {
        let bytes = list.to_json_bytes();
        let parsed = parse_image_list(&bytes, &ParseLimits::default());
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
        let parsed = parsed.unwrap();
        prop_assert!(parsed.rejected.is_empty());
        prop_assert_eq!(parsed.list, list);
    }
}

#[test]
fn numbers_in_unknown_keys_are_written_back_digit_for_digit() {
    // Shortest round-trip forms that serde_json's default (fast, approximate) float parser
    // reads one unit in the last place off; the `float_roundtrip` feature reads them exactly.
    let numbers = [
        "1.0715660391465826e-75",
        "-1.81996730402717e-179",
        "-1.603964615428183e+143",
        "1.5860846119992697e-265",
    ];
    let mut doc = base_list();
    for (i, n) in numbers.iter().enumerate() {
        let value: Value = serde_json::from_str(n).unwrap();
        image_obj(&mut doc, 0).insert(format!("x:n{i}"), value);
    }
    let list = accept(&doc).list;
    let written = String::from_utf8(list.to_json_bytes()).unwrap();
    for n in numbers {
        assert!(
            written.contains(n),
            "{n} not written back as is:\n{written}"
        );
    }
}
