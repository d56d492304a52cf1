//! Lists, identities and subscriptions to store, built in code.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use vmc_model::{
    CertIdentity, EndorserClaim, Identifier, Image, ImageList, JsonObject, NewImagePolicy, Version,
};
use vmc_store::{CacheEntry, ListImport, NewSubscription, Store};

use crate::db::TestDb;

/// The URL of the one subscription that [`store_with_subscription`] and
/// [`store_with_linked_subscription`] create.
pub const LIST_URL: &str = "https://example.org/list";

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

/// Adds an enabled subscription with this URL and policy and links the endorser `endorser` to
/// it, so that its signatures endorse what the subscription imports.
pub fn linked_subscription(
    store: &Store,
    endorser: &str,
    url: &str,
    policy: NewImagePolicy,
) -> i64 {
    let sub = subscription(store, url, policy);
    store.link(endorser, sub).unwrap();
    sub
}

/// Adds the endorser `s`, who holds the one identity `/CN=S` issued by `/CN=CA` and is linked to
/// no subscription; returns that identity.
pub fn add_endorser_s(store: &Store) -> CertIdentity {
    let signer = identity("/CN=S", "/CN=CA");
    store
        .add_endorser("s", std::slice::from_ref(&signer))
        .unwrap();
    signer
}

/// Opens `db` and adds the endorser `s` (see [`add_endorser_s`]) and one subscription of
/// [`LIST_URL`] with `policy`, *not* linked to `s`. Returns the store, the identity of `s` and
/// the subscription id.
pub fn store_with_subscription(db: &TestDb, policy: NewImagePolicy) -> (Store, CertIdentity, i64) {
    let store = db.open();
    let signer = add_endorser_s(&store);
    let sub = subscription(&store, LIST_URL, policy);
    (store, signer, sub)
}

/// Like [`store_with_subscription`], but `s` is linked to the subscription, so that the lists
/// it signs there are endorsed.
pub fn store_with_linked_subscription(
    db: &TestDb,
    policy: NewImagePolicy,
) -> (Store, CertIdentity, i64) {
    let store = db.open();
    let signer = add_endorser_s(&store);
    let sub = linked_subscription(&store, "s", LIST_URL, policy);
    (store, signer, sub)
}

/// Version `version` of the list `L`, signed by `signer`, carrying the single image `img-1`
/// (digest of `a`s).
pub fn one_image_list(version: &str, signer: &CertIdentity) -> ImageList {
    list("L", version, signer, vec![image("img-1", 'a')])
}

/// Imports [`one_image_list`] of this version under `sub` as signed by `signer`; returns the
/// version id.
pub fn import_one_image(store: &Store, sub: i64, version: &str, signer: &CertIdentity) -> i64 {
    import(store, sub, &one_image_list(version, signer), signer)
}

/// The cache entry of [`image`]`(identifier, digest)`, downloaded at `at(70)` from list version
/// `version` of subscription `sub`.
pub fn cache_entry(identifier: &str, digest: char, sub: i64, version: i64) -> CacheEntry {
    CacheEntry {
        identifier: id(identifier),
        filename: identifier.into(),
        size: 1024,
        sha512: sha(digest),
        subscription_id: Some(sub),
        list_version_id: Some(version),
        cached_at: at(70),
    }
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
    // A stand-in digest that differs with the bytes (the store compares digests to recognise
    // a version it has already).
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        raw.hash(&mut hasher);
        format!("{:0>128x}", hasher.finish())
    };
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
