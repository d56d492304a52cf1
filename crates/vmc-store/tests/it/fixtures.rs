//! Lists, identities and subscriptions to store, built in code.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use vmc_model::{
    CertIdentity, EndorserClaim, Identifier, Image, ImageList, JsonObject, NewImagePolicy, Version,
};
use vmc_store::{ListImport, NewSubscription, Store};

/// A fixed instant, `secs` after 2027-01-01T00:00:00Z, with some nanoseconds so that
/// precision loss shows.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        + chrono::Duration::seconds(secs)
        + chrono::Duration::nanoseconds(123_456_789)
}

pub fn identity(subject: &str, issuer: &str) -> CertIdentity {
    CertIdentity {
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
    }
}

pub fn id(text: &str) -> Identifier {
    Identifier::new(text).unwrap()
}

/// A 128-hex-digit digest made of `c`.
pub fn sha(c: char) -> String {
    c.to_string().repeat(128)
}

/// An image with the mandatory keys and a few others (nested, numeric, odd order).
pub fn image(identifier: &str, digest: char) -> Image {
    let mut image = Image::new(
        id(identifier),
        format!("Image {identifier}"),
        format!("https://example.org/{identifier}.img"),
        1024,
        sha(digest),
        "1.0",
    );
    let extra = json!({
        "sl:os": "Linux",
        "dc:description": format!("the {identifier} image"),
        "hv:hypervisor": "KVM",
        "ad:user:fullname": "Jane Doe",
        "hv:ram_minimum": 2048,
        "zz:nested": {"b": [1, 2, {"c": null}], "a": true},
    });
    if let serde_json::Value::Object(map) = extra {
        image.extra = map;
    }
    image
}

/// A list with these images, signed (claimed) by `signer`.
pub fn list(
    identifier: &str,
    version: &str,
    signer: &CertIdentity,
    images: Vec<Image>,
) -> ImageList {
    let mut extra = JsonObject::new();
    extra.insert("ad:vo".into(), json!("dteam"));
    extra.insert("ad:swid".into(), json!("42"));
    ImageList {
        identifier: id(identifier),
        title: format!("List {identifier}"),
        description: "test list".into(),
        source: "https://example.org/".into(),
        created: at(0),
        expires: at(86_400 * 30),
        version: Version::new(version),
        uri: format!("https://example.org/{identifier}"),
        endorsers: vec![EndorserClaim {
            dn: signer.subject.clone(),
            ca: signer.issuer.clone(),
            creator: None,
            email: None,
            extra: JsonObject::new(),
        }],
        images,
        extra,
    }
}

/// Adds an enabled subscription with this URL and policy.
pub fn subscription(store: &Store, url: &str, policy: NewImagePolicy) -> i64 {
    store
        .add_subscription(&NewSubscription {
            url: url.to_owned(),
            new_images: policy,
            auth: None,
            enabled: true,
        })
        .unwrap()
        .id
}

/// Imports `list` under subscription `sub` as signed by `signer`; returns the version id.
pub fn import(store: &Store, sub: i64, list: &ImageList, signer: &CertIdentity) -> i64 {
    import_with(store, sub, list, signer, false).version_id
}

pub fn import_with(
    store: &Store,
    sub: i64,
    list: &ImageList,
    signer: &CertIdentity,
    select_all: bool,
) -> vmc_store::ImportOutcome {
    let raw = list.to_json_bytes();
    let digest = format!("{:0>128}", raw.len());
    store
        .import_list(
            sub,
            &ListImport {
                raw: &raw,
                sha512: &digest,
                list,
                signer,
                imported: at(60),
                select_all,
            },
        )
        .unwrap()
}
