//! Helpers shared by the test modules: a valid list to mutate, parsing shortcuts and
//! assertions on error messages.

use std::fmt::Display;
use std::path::PathBuf;

use serde_json::{Map, Value, json};
use vmc_model::{ListError, ParseLimits, ParsedList, parse_image_list};

/// A valid sha512 in lowercase hex, different for each `n`.
pub fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(64)
}

/// A valid list with three images (`img-a`, `img-b`, `img-c`) and one endorser.
pub fn base_list() -> Value {
    let image = |id: &str, n: u8| {
        json!({"hv:image": {
            "dc:identifier": id,
            "dc:title": format!("Image {id}"),
            "hv:uri": format!("https://example.org/{id}.img"),
            "hv:size": 1000 + u64::from(n),
            "sl:checksum:sha512": sha(n),
            "hv:version": format!("1.{n}"),
        }})
    };
    json!({"hv:imagelist": {
        "dc:identifier": "list-1",
        "dc:title": "Test list",
        "dc:description": "A list for tests",
        "dc:source": "https://example.org/",
        "dc:date:created": "2027-01-01T00:00:00Z",
        "dc:date:expires": "2027-02-01T00:00:00Z",
        "hv:version": "1.2",
        "hv:uri": "https://example.org/list.smime",
        "hv:endorser": {"hv:x509": {
            "hv:dn": "/C=XX/O=Test/CN=Endorser",
            "hv:ca": "/C=XX/O=Test/CN=Test CA",
            "dc:creator": "Endorser",
            "hv:email": "endorser@example.org",
        }},
        "hv:images": [image("img-a", 1), image("img-b", 2), image("img-c", 3)],
    }})
}

/// The `hv:imagelist` object of a document.
pub fn list_obj(doc: &mut Value) -> &mut Map<String, Value> {
    doc["hv:imagelist"].as_object_mut().unwrap()
}

/// The `hv:image` object of image `index`.
pub fn image_obj(doc: &mut Value, index: usize) -> &mut Map<String, Value> {
    doc["hv:imagelist"]["hv:images"][index]["hv:image"]
        .as_object_mut()
        .unwrap()
}

/// The `hv:x509` object of the (single, object-form) endorser.
pub fn endorser_obj(doc: &mut Value) -> &mut Map<String, Value> {
    doc["hv:imagelist"]["hv:endorser"]["hv:x509"]
        .as_object_mut()
        .unwrap()
}

/// Parses raw bytes with the default limits.
pub fn parse_bytes(bytes: &[u8]) -> Result<ParsedList, ListError> {
    parse_image_list(bytes, &ParseLimits::default())
}

/// Serialises `doc` and parses it with the default limits.
pub fn parse(doc: &Value) -> Result<ParsedList, ListError> {
    parse_bytes(&serde_json::to_vec(doc).unwrap())
}

/// Parses `doc`, which must be refused; returns the error.
pub fn refuse(doc: &Value) -> ListError {
    match parse(doc) {
        Ok(parsed) => panic!("list was accepted: {parsed:#?}"),
        Err(e) => e,
    }
}

/// Parses `doc`, which must be accepted.
pub fn accept(doc: &Value) -> ParsedList {
    match parse(doc) {
        Ok(parsed) => parsed,
        Err(e) => panic!("list was refused: {e}"),
    }
}

/// Asserts that the message of `err` names every one of `parts` and follows the style rules
/// (lowercase start, no trailing period).
pub fn assert_message(err: &impl Display, parts: &[&str]) {
    let msg = err.to_string();
    for part in parts {
        assert!(msg.contains(part), "message {msg:?} does not name {part:?}");
    }
    assert!(!msg.ends_with('.'), "message {msg:?} ends with a period");
    let first = msg.chars().next().unwrap();
    assert!(!first.is_uppercase(), "message {msg:?} starts upper case");
}

/// The openssl-cli interop fixtures, generated for this test process by the `openssl` CLI.
pub fn openssl_cli() -> PathBuf {
    vmc_testkit::interop::openssl_cli().to_owned()
}

/// The cloudkeeper fixtures, or `None` (the test says it is skipped) when they are absent.
pub fn cloudkeeper_dir() -> Option<PathBuf> {
    vmc_testkit::interop::cloudkeeper()
}
