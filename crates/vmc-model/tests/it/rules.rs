//! One test per rule of `spec/imagelist.md` checks 5 and 11: what is accepted, and for each
//! refusal the exact error, naming the key and the image.

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use vmc_model::{
    ErrorCode, ImageError, ListError, Location, ParseLimits, Version, parse_image_list,
};

use crate::common::{
    accept, assert_message, base_list, endorser_obj, image_obj, list_obj, parse_bytes, refuse, sha,
};

const LIST_KEYS: [&str; 10] = [
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
];

const IMAGE_KEYS: [&str; 6] = [
    "dc:identifier",
    "dc:title",
    "hv:uri",
    "hv:size",
    "sl:checksum:sha512",
    "hv:version",
];

fn image_loc(index: usize, id: &str) -> Location {
    Location::Image {
        index,
        identifier: Some(id.to_owned()),
    }
}

#[test]
fn a_valid_list_yields_every_field() {
    let parsed = accept(&base_list());
    assert!(parsed.rejected.is_empty());
    let list = parsed.list;
    assert_eq!(list.identifier.as_str(), "list-1");
    assert_eq!(list.title, "Test list");
    assert_eq!(list.description, "A list for tests");
    assert_eq!(list.source, "https://example.org/");
    assert_eq!(
        list.created,
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(
        list.expires,
        Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(list.version, Version::new("1.2"));
    assert_eq!(list.uri, "https://example.org/list.smime");
    assert_eq!(list.endorsers.len(), 1);
    let e = &list.endorsers[0];
    assert_eq!(e.dn, "/C=XX/O=Test/CN=Endorser");
    assert_eq!(e.ca, "/C=XX/O=Test/CN=Test CA");
    assert_eq!(e.creator.as_deref(), Some("Endorser"));
    assert_eq!(e.email.as_deref(), Some("endorser@example.org"));
    assert!(e.extra.is_empty());
    assert!(list.extra.is_empty());
    assert_eq!(list.vo(), None);
    let ids: Vec<&str> = list.images.iter().map(|i| i.identifier.as_str()).collect();
    assert_eq!(ids, ["img-a", "img-b", "img-c"]);
    let b = &list.images[1];
    assert_eq!(b.title, "Image img-b");
    assert_eq!(b.uri, "https://example.org/img-b.img");
    assert_eq!(b.size, 1002);
    assert_eq!(b.sha512, sha(2));
    assert_eq!(b.version, "1.2");
    assert!(b.extra.is_empty());
}

#[test]
fn missing_mandatory_list_key_is_named() {
    for key in LIST_KEYS {
        let mut doc = base_list();
        list_obj(&mut doc).remove(key);
        let err = refuse(&doc);
        match &err {
            ListError::MissingKey { key: k, location } => {
                assert_eq!(k, key);
                assert_eq!(location, &Location::List);
            }
            other => panic!("{key}: unexpected {other:?}"),
        }
        assert_message(&err, &["the list", key, "missing"]);
        assert_eq!(err.code(), ErrorCode::ListMalformed);
    }
}

#[test]
fn document_without_hv_imagelist_is_refused() {
    let err = refuse(&json!({"imagelist": {}}));
    assert!(matches!(
        &err,
        ListError::MissingKey { key, location: Location::List } if key == "hv:imagelist"
    ));
    assert_message(&err, &["hv:imagelist"]);

    let err = refuse(&json!({"hv:imagelist": []}));
    assert!(matches!(
        &err,
        ListError::WrongType { key, location: Location::List, .. } if key == "hv:imagelist"
    ));
    assert_message(&err, &["hv:imagelist", "an object"]);

    for root in [json!([]), json!("list"), json!(null), json!(3)] {
        let err = refuse(&root);
        assert!(
            matches!(&err, ListError::WrongType { key, .. } if key == "(document)"),
            "{root}: {err:?}"
        );
    }
}

#[test]
fn list_value_of_wrong_type_is_named() {
    let cases: [(&str, Value, &str); 10] = [
        ("dc:identifier", json!(7), "a string"),
        ("dc:title", json!(7), "a string"),
        ("dc:description", json!(null), "a string"),
        ("dc:source", json!(["x"]), "a string"),
        ("dc:date:created", json!(1_700_000_000), "a string"),
        ("dc:date:expires", json!({}), "a string"),
        ("hv:version", json!(1.2), "a string"),
        ("hv:uri", json!(true), "a string"),
        ("hv:images", json!({"hv:image": {}}), "an array"),
        (
            "hv:endorser",
            json!("/CN=E"),
            "an object or a non-empty array",
        ),
    ];
    for (key, value, expected) in cases {
        let mut doc = base_list();
        list_obj(&mut doc).insert(key.into(), value);
        let err = refuse(&doc);
        match &err {
            ListError::WrongType {
                key: k,
                location,
                expected: e,
            } => {
                assert_eq!(k, key);
                assert_eq!(location, &Location::List);
                assert!(e.starts_with(expected), "{key}: {e}");
            }
            other => panic!("{key}: unexpected {other:?}"),
        }
        assert_message(&err, &["the list", key, expected]);
    }
}

#[test]
fn missing_mandatory_image_key_names_key_and_image() {
    for key in IMAGE_KEYS {
        let mut doc = base_list();
        image_obj(&mut doc, 1).remove(key);
        let err = refuse(&doc);
        let expected_loc = if key == "dc:identifier" {
            Location::Image {
                index: 1,
                identifier: None,
            }
        } else {
            image_loc(1, "img-b")
        };
        match &err {
            ListError::MissingKey { key: k, location } => {
                assert_eq!(k, key);
                assert_eq!(location, &expected_loc);
            }
            other => panic!("{key}: unexpected {other:?}"),
        }
        if key == "dc:identifier" {
            assert_message(&err, &["image #1:", key]);
        } else {
            assert_message(&err, &["image #1 (\"img-b\")", key, "missing"]);
        }
    }
}

#[test]
fn image_value_of_wrong_type_names_key_and_image() {
    let cases: [(&str, Value); 6] = [
        ("dc:title", json!(5)),
        ("hv:uri", json!(["https://example.org/x"])),
        ("sl:checksum:sha512", json!(12)),
        ("hv:version", json!({"major": 1})),
        ("hv:version", json!(null)),
        ("hv:size", json!(null)),
    ];
    for (key, value) in cases {
        let mut doc = base_list();
        image_obj(&mut doc, 2).insert(key.into(), value.clone());
        let err = refuse(&doc);
        assert!(
            matches!(&err, ListError::WrongType { key: k, location, .. }
                if k == key && *location == image_loc(2, "img-c")),
            "{key} = {value}: {err:?}"
        );
        assert_message(&err, &["image #2 (\"img-c\")", key]);
    }

    // A non-string identifier cannot name the image; the position still does.
    let mut doc = base_list();
    image_obj(&mut doc, 0).insert("dc:identifier".into(), json!(17));
    let err = refuse(&doc);
    assert!(
        matches!(&err, ListError::WrongType { key, location: Location::Image { index: 0, identifier: None }, .. }
        if key == "dc:identifier")
    );
    assert_message(&err, &["image #0:", "dc:identifier", "a string"]);
}

#[test]
fn image_entry_must_be_an_object_holding_hv_image() {
    let mut doc = base_list();
    list_obj(&mut doc)["hv:images"][1] = json!("img-b");
    let err = refuse(&doc);
    assert!(
        matches!(&err, ListError::WrongType { key, location: Location::Image { index: 1, identifier: None }, .. }
        if key == "hv:images[]")
    );
    assert_message(&err, &["image #1", "hv:images[]"]);

    let mut doc = base_list();
    list_obj(&mut doc)["hv:images"][1] = json!({"image": {}});
    let err = refuse(&doc);
    assert!(
        matches!(&err, ListError::MissingKey { key, location: Location::Image { index: 1, .. } }
        if key == "hv:image")
    );
    assert_message(&err, &["image #1", "hv:image"]);

    let mut doc = base_list();
    list_obj(&mut doc)["hv:images"][1] = json!({"hv:image": ["x"]});
    let err = refuse(&doc);
    assert!(
        matches!(&err, ListError::WrongType { key, location: Location::Image { index: 1, .. }, .. }
        if key == "hv:image")
    );
}

#[test]
fn an_empty_image_list_is_a_list() {
    let mut doc = base_list();
    list_obj(&mut doc).insert("hv:images".into(), json!([]));
    let parsed = accept(&doc);
    assert!(parsed.list.images.is_empty());
    assert!(parsed.rejected.is_empty());
}

fn size_of(value: Value) -> Result<u64, ListError> {
    let mut doc = base_list();
    image_obj(&mut doc, 0).insert("hv:size".into(), value);
    crate::common::parse(&doc).map(|p| p.list.images[0].size)
}

#[test]
fn size_as_number_or_digit_string() {
    assert_eq!(size_of(json!(1024)).unwrap(), 1024);
    assert_eq!(size_of(json!("121243136")).unwrap(), 121_243_136);
    assert_eq!(size_of(json!(0)).unwrap(), 0);
    assert_eq!(size_of(json!("0")).unwrap(), 0);
    assert_eq!(size_of(json!("007")).unwrap(), 7);
    assert_eq!(size_of(json!(u64::MAX)).unwrap(), u64::MAX);
    assert_eq!(size_of(json!(u64::MAX.to_string())).unwrap(), u64::MAX);
}

#[test]
fn size_that_is_no_unsigned_integer_is_refused() {
    let bad = [
        json!("12a"),
        json!(""),
        json!("-1"),
        json!("+1"),
        json!(" 1"),
        json!("1 "),
        json!("1.0"),
        json!("1e3"),
        json!("١٢"),
        json!("18446744073709551616"),
        json!(-1),
        json!(1.5),
        json!(1e3),
        json!(true),
        json!([1]),
    ];
    for value in bad {
        let err = size_of(value.clone()).unwrap_err();
        assert!(
            matches!(&err, ListError::WrongType { key, location, .. }
                if key == "hv:size" && *location == image_loc(0, "img-a")),
            "{value}: {err:?}"
        );
        assert_message(
            &err,
            &["image #0 (\"img-a\")", "hv:size", "non-negative integer"],
        );
    }
    // 2^64 as a JSON number, written out (serde_json reads it as a float).
    let mut text = serde_json::to_string(&base_list()).unwrap();
    text = text.replacen("\"hv:size\":1001", "\"hv:size\":18446744073709551616", 1);
    let err = parse_bytes(text.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ListError::WrongType { key, .. } if key == "hv:size"),
        "{err:?}"
    );
}

#[test]
fn image_version_may_be_a_number() {
    let mut doc = base_list();
    image_obj(&mut doc, 0).insert("hv:version".into(), json!(20141029));
    assert_eq!(accept(&doc).list.images[0].version, "20141029");
}

#[test]
fn endorser_as_object_or_array() {
    let parsed = accept(&base_list());
    assert_eq!(parsed.list.endorsers.len(), 1);

    let mut doc = base_list();
    list_obj(&mut doc).insert(
        "hv:endorser".into(),
        json!([
            {"hv:x509": {"hv:dn": "/CN=One", "hv:ca": "/CN=CA 1", "dc:creator": "One"}},
            {"hv:x509": {"hv:dn": "/CN=Two", "hv:ca": "/CN=CA 2", "hv:email": "two@example.org"}},
            {"hv:x509": {"hv:dn": "/CN=Three", "hv:ca": "/CN=CA 1"}},
        ]),
    );
    let endorsers = accept(&doc).list.endorsers;
    let pairs: Vec<(&str, &str)> = endorsers
        .iter()
        .map(|e| (e.dn.as_str(), e.ca.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("/CN=One", "/CN=CA 1"),
            ("/CN=Two", "/CN=CA 2"),
            ("/CN=Three", "/CN=CA 1")
        ]
    );
    assert_eq!(endorsers[0].creator.as_deref(), Some("One"));
    assert_eq!(endorsers[0].email, None);
    assert_eq!(endorsers[1].creator, None);
    assert_eq!(endorsers[1].email.as_deref(), Some("two@example.org"));

    let mut doc = base_list();
    list_obj(&mut doc).insert(
        "hv:endorser".into(),
        json!([{"hv:x509": {"hv:dn": "/CN=Only", "hv:ca": "/CN=CA"}}]),
    );
    assert_eq!(accept(&doc).list.endorsers[0].dn, "/CN=Only");
}

#[test]
fn endorser_empty_array_is_refused() {
    let mut doc = base_list();
    list_obj(&mut doc).insert("hv:endorser".into(), json!([]));
    let err = refuse(&doc);
    assert!(
        matches!(&err, ListError::WrongType { key, location: Location::List, .. }
        if key == "hv:endorser")
    );
    assert_message(&err, &["the list", "hv:endorser", "non-empty array"]);
}

#[test]
fn endorser_claim_faults_name_the_path() {
    // (value of hv:endorser, expected key, missing rather than wrong type)
    let cases: [(Value, &str, bool); 8] = [
        (json!({"x509": {}}), "hv:endorser.hv:x509", true),
        (json!({"hv:x509": "/CN=E"}), "hv:endorser.hv:x509", false),
        (
            json!({"hv:x509": {"hv:ca": "/CN=CA"}}),
            "hv:endorser.hv:x509.hv:dn",
            true,
        ),
        (
            json!({"hv:x509": {"hv:dn": "/CN=E"}}),
            "hv:endorser.hv:x509.hv:ca",
            true,
        ),
        (
            json!({"hv:x509": {"hv:dn": ["/CN=E"], "hv:ca": "/CN=CA"}}),
            "hv:endorser.hv:x509.hv:dn",
            false,
        ),
        (
            json!({"hv:x509": {"hv:dn": "/CN=E", "hv:ca": "/CN=CA", "hv:email": 3}}),
            "hv:endorser.hv:x509.hv:email",
            false,
        ),
        (
            json!([{"hv:x509": {"hv:dn": "/CN=E", "hv:ca": "/CN=CA"}}, {"hv:x509": {"hv:dn": "/CN=F"}}]),
            "hv:endorser[1].hv:x509.hv:ca",
            true,
        ),
        (
            json!([{"hv:x509": {"hv:dn": "/CN=E", "hv:ca": "/CN=CA"}}, "/CN=F"]),
            "hv:endorser[1]",
            false,
        ),
    ];
    for (value, expected_key, missing) in cases {
        let mut doc = base_list();
        list_obj(&mut doc).insert("hv:endorser".into(), value.clone());
        let err = refuse(&doc);
        let ok = match &err {
            ListError::MissingKey { key, location } => {
                missing && key == expected_key && *location == Location::List
            }
            ListError::WrongType { key, location, .. } => {
                !missing && key == expected_key && *location == Location::List
            }
            _ => false,
        };
        assert!(ok, "{value}: {err:?}");
        assert_message(&err, &["the list", expected_key]);
    }
}

#[test]
fn endorser_optional_keys_may_be_absent_or_null() {
    let mut doc = base_list();
    let x509 = endorser_obj(&mut doc);
    x509.remove("hv:email");
    x509.insert("dc:creator".into(), Value::Null);
    let e = &accept(&doc).list.endorsers[0];
    assert_eq!(e.creator, None);
    assert_eq!(e.email, None);
}

fn dates_of(created: &str, expires: &str) -> Result<(String, String), ListError> {
    let mut doc = base_list();
    list_obj(&mut doc).insert("dc:date:created".into(), json!(created));
    list_obj(&mut doc).insert("dc:date:expires".into(), json!(expires));
    crate::common::parse(&doc).map(|p| (p.list.created.to_rfc3339(), p.list.expires.to_rfc3339()))
}

#[test]
fn dates_with_offsets_are_converted_to_utc() {
    let (c, e) = dates_of("2027-01-31T10:00:00+01:00", "2027-03-01T00:30:00-05:30").unwrap();
    assert_eq!(c, "2027-01-31T09:00:00+00:00");
    assert_eq!(e, "2027-03-01T06:00:00+00:00");
    let (c, e) = dates_of("2027-01-31T10:00:00.250Z", "2027-12-31T23:59:59+00:00").unwrap();
    assert_eq!(c, "2027-01-31T10:00:00.250+00:00");
    assert_eq!(e, "2027-12-31T23:59:59+00:00");
    // A date near the end of the range (cloudkeeper's lists expire in 2499).
    let (_, e) = dates_of("2015-06-18T21:14:00Z", "2499-12-31T22:00:00Z").unwrap();
    assert_eq!(e, "2499-12-31T22:00:00+00:00");
}

#[test]
fn dates_that_are_not_rfc3339_are_refused() {
    let good = "2027-01-01T00:00:00Z";
    let bad = [
        "9999-99-99",
        "yesterday",
        "2027-01-01",
        "2027-01-01T00:00:00",
        "2027-02-30T00:00:00Z",
        "2027-01-01T25:00:00Z",
        "01/02/2027 10:00",
        "",
    ];
    for value in bad {
        for key in ["dc:date:created", "dc:date:expires"] {
            let result = if key == "dc:date:created" {
                dates_of(value, good)
            } else {
                dates_of(good, value)
            };
            let err = result.unwrap_err();
            match &err {
                ListError::BadDate {
                    key: k,
                    location,
                    value: v,
                } => {
                    assert_eq!(k, key);
                    assert_eq!(location, &Location::List);
                    assert_eq!(v, value);
                }
                other => panic!("{key} = {value:?}: unexpected {other:?}"),
            }
            assert_message(&err, &["the list", key, "RFC 3339", &format!("{value:?}")]);
        }
    }
    // The quoted value is bounded.
    let long = "x".repeat(1000);
    match dates_of(&long, good).unwrap_err() {
        ListError::BadDate { value, .. } => assert_eq!(value, "x".repeat(64)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unsafe_image_identifier_leaves_out_that_image_only() {
    let long = "a".repeat(129);
    let unsafe_ids = [
        "..",
        ".",
        "/",
        "a/../../b",
        "../../../../etc/passwd",
        "a\0b",
        "a\u{1}b",
        "a\nb",
        "a\u{7f}b",
        "",
        ".hidden",
        "-rf",
        "a b",
        "a\\b",
        "é",
        long.as_str(),
    ];
    for bad in unsafe_ids {
        let mut doc = base_list();
        image_obj(&mut doc, 1).insert("dc:identifier".into(), json!(bad));
        let parsed = accept(&doc);
        let ids: Vec<&str> = parsed
            .list
            .images
            .iter()
            .map(|i| i.identifier.as_str())
            .collect();
        assert_eq!(ids, ["img-a", "img-c"], "{bad:?}");
        assert_eq!(parsed.rejected.len(), 1, "{bad:?}");
        let error = &parsed.rejected[0].error;
        let shown: String = bad.chars().take(64).collect();
        match error {
            ImageError::UnsafeIdentifier { location, source } => {
                assert_eq!(location, &image_loc(1, &shown), "{bad:?}");
                assert_eq!(source.value, bad);
            }
            other => panic!("{bad:?}: unexpected {other:?}"),
        }
        assert_eq!(error.code(), ErrorCode::ImageInvalid);
        assert_eq!(error.location(), &image_loc(1, &shown));
        assert_message(
            error,
            &[&format!("image #1 ({shown:?})"), "unsafe identifier"],
        );
        let cause = std::error::Error::source(error).unwrap().to_string();
        assert!(cause.contains(&format!("{bad:?}")), "{cause}");
    }
}

#[test]
fn opaque_non_uuid_identifiers_are_accepted() {
    let mut doc = base_list();
    list_obj(&mut doc).insert(
        "dc:identifier".into(),
        json!("76fdee70-8119-5d33-gggg-3c57e1c60df1"),
    );
    for (i, id) in [
        "c0482bc2-bf41-5d49-gggg-a750174a186b",
        "A.b_c-9",
        &"z".repeat(128),
    ]
    .into_iter()
    .enumerate()
    {
        image_obj(&mut doc, i).insert("dc:identifier".into(), json!(id));
    }
    let parsed = accept(&doc);
    assert_eq!(parsed.list.images.len(), 3);
    assert!(parsed.rejected.is_empty());
    assert_eq!(
        parsed.list.identifier.as_str(),
        "76fdee70-8119-5d33-gggg-3c57e1c60df1"
    );
}

#[test]
fn unsafe_list_identifier_refuses_the_list() {
    for bad in ["..", "/", "a/../../b", "a\0b", "a\u{1b}b", "", "../list"] {
        let mut doc = base_list();
        list_obj(&mut doc).insert("dc:identifier".into(), json!(bad));
        let err = refuse(&doc);
        match &err {
            ListError::ListIdentifier(source) => assert_eq!(source.value, bad),
            other => panic!("{bad:?}: unexpected {other:?}"),
        }
        assert_message(&err, &["the list", "dc:identifier"]);
        assert_eq!(err.code(), ErrorCode::ListMalformed);
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains(&format!("{bad:?}")), "{cause}");
    }
}

#[test]
fn duplicate_image_identifiers_refuse_the_list() {
    let mut doc = base_list();
    image_obj(&mut doc, 2).insert("dc:identifier".into(), json!("img-a"));
    let err = refuse(&doc);
    assert!(
        matches!(&err, ListError::DuplicateImageId { identifier } if identifier == "img-a"),
        "{err:?}"
    );
    assert_message(&err, &["\"img-a\"", "more than once"]);
    assert_eq!(err.code(), ErrorCode::ListMalformed);

    // Even when the repeated identifier is itself unsafe.
    let mut doc = base_list();
    image_obj(&mut doc, 0).insert("dc:identifier".into(), json!("../x"));
    image_obj(&mut doc, 1).insert("dc:identifier".into(), json!("../x"));
    assert!(
        matches!(refuse(&doc), ListError::DuplicateImageId { identifier } if identifier == "../x")
    );
}

#[test]
fn checksum_is_normalised_to_lowercase() {
    let mut doc = base_list();
    image_obj(&mut doc, 0).insert("sl:checksum:sha512".into(), json!("AB".repeat(64)));
    image_obj(&mut doc, 1).insert("sl:checksum:sha512".into(), json!("aB".repeat(64)));
    let parsed = accept(&doc);
    assert_eq!(parsed.list.images[0].sha512, "ab".repeat(64));
    assert_eq!(parsed.list.images[1].sha512, "ab".repeat(64));
    let json = parsed.list.to_json();
    assert_eq!(
        json["hv:imagelist"]["hv:images"][0]["hv:image"]["sl:checksum:sha512"],
        "ab".repeat(64)
    );
}

#[test]
fn malformed_checksum_leaves_out_that_image() {
    let bad = [
        "ab".repeat(63) + "a",
        "ab".repeat(64) + "a",
        "zz".repeat(64),
        format!(" {}", "a".repeat(127)),
        String::new(),
    ];
    for value in bad {
        let mut doc = base_list();
        image_obj(&mut doc, 2).insert("sl:checksum:sha512".into(), json!(value));
        let parsed = accept(&doc);
        assert_eq!(parsed.list.images.len(), 2, "{value:?}");
        assert_eq!(parsed.rejected.len(), 1);
        let error = &parsed.rejected[0].error;
        assert_eq!(
            error,
            &ImageError::BadChecksum {
                location: image_loc(2, "img-c")
            }
        );
        assert_message(error, &["image #2 (\"img-c\")", "sl:checksum:sha512"]);
    }
}

#[test]
fn image_uri_must_be_http_https_or_file() {
    for good in [
        "http://example.org/x.img",
        "HTTPS://example.org/x.img",
        "file:///var/images/x.img",
    ] {
        let mut doc = base_list();
        image_obj(&mut doc, 0).insert("hv:uri".into(), json!(good));
        let parsed = accept(&doc);
        assert_eq!(parsed.list.images[0].uri, good);
        assert!(parsed.rejected.is_empty());
    }
    for bad in [
        "ftp://example.org/x.img",
        "javascript:alert(1)",
        "/etc/passwd",
        "",
        "http:/x",
    ] {
        let mut doc = base_list();
        image_obj(&mut doc, 0).insert("hv:uri".into(), json!(bad));
        let parsed = accept(&doc);
        assert_eq!(parsed.list.images.len(), 2, "{bad:?}");
        let error = &parsed.rejected[0].error;
        assert_eq!(
            error,
            &ImageError::BadUri {
                location: image_loc(0, "img-a")
            }
        );
        assert_message(error, &["image #0 (\"img-a\")", "hv:uri"]);
    }
}

#[test]
fn several_rejected_images_are_reported_in_payload_order() {
    let mut doc = base_list();
    image_obj(&mut doc, 2).insert("dc:identifier".into(), json!("../c"));
    image_obj(&mut doc, 0).insert("sl:checksum:sha512".into(), json!("00"));
    let parsed = accept(&doc);
    assert_eq!(parsed.list.images.len(), 1);
    assert_eq!(parsed.list.images[0].identifier.as_str(), "img-b");
    let indexes: Vec<&Location> = parsed.rejected.iter().map(|r| r.error.location()).collect();
    assert_eq!(indexes, [&image_loc(0, "img-a"), &image_loc(2, "../c")]);
}

#[test]
fn payload_over_the_size_limit_is_refused() {
    let bytes = serde_json::to_vec(&base_list()).unwrap();
    let at = ParseLimits {
        max_bytes: bytes.len(),
        ..ParseLimits::default()
    };
    assert!(parse_image_list(&bytes, &at).is_ok());
    let under = ParseLimits {
        max_bytes: bytes.len() - 1,
        ..ParseLimits::default()
    };
    let err = parse_image_list(&bytes, &under).unwrap_err();
    assert!(
        matches!(err, ListError::TooLarge { size, max } if size == bytes.len() && max == bytes.len() - 1)
    );
    assert_message(&err, &[&bytes.len().to_string(), "over the limit"]);
    assert_eq!(ParseLimits::default().max_bytes, 16 * 1024 * 1024);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for open in ["[", "{\"a\":"] {
        let text = open.repeat(10_000);
        let err = parse_bytes(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, ListError::TooDeep { max: 32 }),
            "{open}: {err:?}"
        );
        assert_message(&err, &["32"]);
    }
    // Also with a balanced document and a huge limit: serde_json's own recursion limit holds.
    let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = ParseLimits {
        max_depth: usize::MAX,
        ..ParseLimits::default()
    };
    assert!(matches!(
        parse_image_list(text.as_bytes(), &huge),
        Err(ListError::Syntax { .. })
    ));
}

#[test]
fn nesting_limit_is_exact_and_counts_unknown_keys() {
    // root { hv:imagelist { hv:images [ { hv:image { : five levels.
    let bytes = serde_json::to_vec(&base_list()).unwrap();
    let five = ParseLimits {
        max_depth: 5,
        ..ParseLimits::default()
    };
    assert!(parse_image_list(&bytes, &five).is_ok());
    let four = ParseLimits {
        max_depth: 4,
        ..ParseLimits::default()
    };
    assert!(matches!(
        parse_image_list(&bytes, &four),
        Err(ListError::TooDeep { max: 4 })
    ));

    // Brackets inside strings do not count.
    let mut doc = base_list();
    list_obj(&mut doc).insert("x:brackets".into(), json!("[[[[[[{{{{{{\"\\\\[[["));
    assert!(parse_image_list(&serde_json::to_vec(&doc).unwrap(), &five).is_ok());

    // An unknown key nesting deeper than the limit refuses the list.
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let mut doc = base_list();
    image_obj(&mut doc, 0).insert("x:deep".into(), deep);
    assert!(matches!(refuse(&doc), ListError::TooDeep { max: 32 }));
}

#[test]
fn too_many_images_are_refused() {
    let bytes = serde_json::to_vec(&base_list()).unwrap();
    let three = ParseLimits {
        max_images: 3,
        ..ParseLimits::default()
    };
    assert_eq!(
        parse_image_list(&bytes, &three).unwrap().list.images.len(),
        3
    );
    let two = ParseLimits {
        max_images: 2,
        ..ParseLimits::default()
    };
    let err = parse_image_list(&bytes, &two).unwrap_err();
    assert!(matches!(err, ListError::TooManyImages { count: 3, max: 2 }));
    assert_message(&err, &["3 images", "limit of 2"]);
}

#[test]
fn non_utf8_payload_is_refused_with_its_offset() {
    let mut bytes = serde_json::to_vec(&base_list()).unwrap();
    let at = bytes.windows(9).position(|w| w == b"Test list").unwrap();
    bytes[at + 4] = 0xff;
    let err = parse_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, ListError::NotUtf8 { offset } if offset == at + 4),
        "{err:?}"
    );
    assert_message(&err, &["UTF-8", &(at + 4).to_string()]);

    // Latin-1 text (é as 0xE9) is no UTF-8 either.
    let latin1 = b"{\"hv:imagelist\": {\"dc:title\": \"caf\xe9\"}}";
    let at = latin1.iter().position(|&b| b == 0xe9).unwrap();
    assert!(matches!(parse_bytes(latin1), Err(ListError::NotUtf8 { offset }) if offset == at));

    // A lone surrogate escape is refused by the JSON layer.
    let mut doc = base_list();
    list_obj(&mut doc).insert("dc:title".into(), json!("PLACEHOLDER"));
    let text = serde_json::to_string(&doc)
        .unwrap()
        .replace("PLACEHOLDER", "\\ud800");
    assert!(matches!(
        parse_bytes(text.as_bytes()),
        Err(ListError::Syntax { .. })
    ));
}

#[test]
fn a_leading_byte_order_mark_is_skipped() {
    let plain = serde_json::to_vec(&base_list()).unwrap();
    let mut with_bom = b"\xef\xbb\xbf".to_vec();
    with_bom.extend_from_slice(&plain);
    assert_eq!(
        parse_bytes(&with_bom).unwrap(),
        parse_bytes(&plain).unwrap()
    );

    // Only at the very start: elsewhere it is no JSON whitespace.
    let mut late = b" \xef\xbb\xbf".to_vec();
    late.extend_from_slice(&plain);
    assert!(matches!(parse_bytes(&late), Err(ListError::Syntax { .. })));
    // Offsets of invalid bytes still count from the first byte of the payload.
    let mut bad = b"\xef\xbb\xbf{\"a\": \"\xff\"}".to_vec();
    assert!(matches!(
        parse_bytes(&bad),
        Err(ListError::NotUtf8 { offset: 10 })
    ));
    bad.truncate(3);
    assert!(matches!(parse_bytes(&bad), Err(ListError::Syntax { .. })));
}

#[test]
fn text_that_is_not_json_is_a_syntax_error() {
    let cases: [(&[u8], usize); 5] = [
        (b"this is not json\r\n", 1),
        (b"", 1),
        (b"{\n  \"hv:imagelist\": {\n", 3),
        (b"{\"hv:imagelist\": {}} trailing", 1),
        (b"{\"hv:imagelist\": {,}}", 1),
    ];
    for (text, line) in cases {
        let err = parse_bytes(text).unwrap_err();
        match &err {
            ListError::Syntax { line: l, .. } => assert_eq!(*l, line, "{text:?}"),
            other => panic!("{text:?}: unexpected {other:?}"),
        }
        assert_message(&err, &["not valid JSON", &format!("line {line}")]);
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(err.code(), ErrorCode::ListMalformed);
    }
}

#[test]
fn unknown_keys_are_kept_at_every_level_and_written_back() {
    let mut doc = base_list();
    list_obj(&mut doc).insert("ad:vo".into(), json!("vo.example.org"));
    list_obj(&mut doc).insert("ad:swid".into(), json!(42));
    list_obj(&mut doc).insert("x:list-extra".into(), json!({"nested": [1, "two", null]}));
    image_obj(&mut doc, 0).insert("x:image-extra".into(), json!([true, {"k": "v"}]));
    endorser_obj(&mut doc).insert("x:endorser-extra".into(), json!("kept"));
    let parsed = accept(&doc);
    let list = &parsed.list;
    assert_eq!(list.vo(), Some("vo.example.org"));
    assert_eq!(list.extra["ad:swid"], json!(42));
    assert_eq!(
        list.extra["x:list-extra"],
        json!({"nested": [1, "two", null]})
    );
    assert_eq!(list.extra.len(), 3);
    assert_eq!(
        list.images[0].extra["x:image-extra"],
        json!([true, {"k": "v"}])
    );
    assert_eq!(list.endorsers[0].extra["x:endorser-extra"], json!("kept"));

    let written = list.to_json();
    let inner = &written["hv:imagelist"];
    for key in ["ad:vo", "ad:swid", "x:list-extra"] {
        assert_eq!(inner[key], doc["hv:imagelist"][key], "{key}");
    }
    assert_eq!(
        inner["hv:images"][0]["hv:image"]["x:image-extra"],
        json!([true, {"k": "v"}])
    );
    assert_eq!(
        inner["hv:endorser"]["hv:x509"]["x:endorser-extra"],
        json!("kept")
    );
    // Everything written is what was read.
    assert_eq!(written, doc);
}

#[test]
fn expected_image_keys_are_kept_and_readable_as_text() {
    let mut doc = base_list();
    let extras = json!({
        "dc:description": "CernVM",
        "hv:hypervisor": "KVM",
        "hv:format": "OVA",
        "sl:arch": "x86_64",
        "sl:os": "Linux",
        "sl:osname": "Scientific Linux",
        "sl:osversion": "6.0",
        "sl:comments": "",
        "ad:mpuri": "https://appdb.example/store/vm/image/1/",
        "ad:group": "General group",
        "ad:user:fullname": "Bruce Wayne",
        "ad:user:guid": "9d9dd6cf-b61a-aaaa-b1df-b5731adf717c",
        "hv:ram_minimum": 2048,
        "hv:core_minimum": "1",
        "x:flag": false,
        "x:none": null,
        "x:list": ["a"],
        "x:obj": {"a": 1},
    });
    for (k, v) in extras.as_object().unwrap() {
        image_obj(&mut doc, 0).insert(k.clone(), v.clone());
    }
    let list = accept(&doc).list;
    let image = &list.images[0];
    assert_eq!(&image.extra, extras.as_object().unwrap());
    for key in [
        "dc:description",
        "hv:hypervisor",
        "hv:format",
        "sl:arch",
        "sl:os",
        "sl:osname",
        "sl:osversion",
        "sl:comments",
        "ad:mpuri",
        "ad:group",
        "ad:user:fullname",
        "ad:user:guid",
        "hv:core_minimum",
    ] {
        assert_eq!(image.text(key).as_deref(), extras[key].as_str(), "{key}");
    }
    assert_eq!(image.text("hv:ram_minimum").as_deref(), Some("2048"));
    assert_eq!(image.text("x:flag").as_deref(), Some("false"));
    assert_eq!(image.text("x:none"), None);
    assert_eq!(image.text("x:list"), None);
    assert_eq!(image.text("x:obj"), None);
    assert_eq!(image.text("no:such:key"), None);
    // Mandatory keys are fields, not extras.
    assert_eq!(image.text("dc:title"), None);
}

#[test]
fn image_constructor_normalises_the_checksum() {
    let image = vmc_model::Image::new(
        vmc_model::Identifier::new("img-x").unwrap(),
        "X",
        "https://example.org/x",
        5,
        "F".repeat(128),
        "2",
    );
    assert_eq!(image.sha512, "f".repeat(128));
    assert!(image.extra.is_empty());
    let json = image.to_json();
    let keys: Vec<&str> = json.keys().map(String::as_str).collect();
    assert_eq!(keys, IMAGE_KEYS);
}

#[test]
fn unknown_image_keys_keep_their_document_order() {
    let mut doc = base_list();
    let image = image_obj(&mut doc, 0);
    let mandatory: Vec<(String, serde_json::Value)> = std::mem::take(image).into_iter().collect();
    // Unknown keys before, between and after the mandatory ones, in no sorted order.
    image.insert("z:first".into(), json!(1));
    for (i, (key, value)) in mandatory.into_iter().enumerate() {
        image.insert(key, value);
        image.insert(format!("m:after-{i}"), json!(i));
    }
    image.insert("a:last".into(), json!("end"));
    let parsed = accept(&doc);
    let keys: Vec<&str> = parsed.list.images[0]
        .extra
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec!["z:first".to_owned()];
    expected.extend((0..keys.len() - 2).map(|i| format!("m:after-{i}")));
    expected.push("a:last".into());
    assert_eq!(keys, expected);
}

#[test]
fn images_are_checked_in_order_with_a_repeat_refused_where_it_stands() {
    // An earlier image's malformation is found before a later repeated identifier.
    let mut doc = base_list();
    image_obj(&mut doc, 0).remove("hv:size");
    image_obj(&mut doc, 2).insert("dc:identifier".into(), json!("img-b"));
    assert!(
        matches!(refuse(&doc), ListError::MissingKey { ref key, .. } if key == "hv:size"),
        "{:?}",
        refuse(&doc)
    );
    // A repeated identifier is refused before that image's own malformation.
    let mut doc = base_list();
    image_obj(&mut doc, 2).insert("dc:identifier".into(), json!("img-a"));
    image_obj(&mut doc, 2).remove("hv:size");
    assert!(
        matches!(refuse(&doc), ListError::DuplicateImageId { ref identifier } if identifier == "img-a"),
        "{:?}",
        refuse(&doc)
    );
}
