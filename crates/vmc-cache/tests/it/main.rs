//! Library-level integration tests of `vmc-cache`: the update pipeline against the openssl-cli
//! interop fixtures, the cache policy against a generated PKI, and event delivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod events;
mod import;
mod manifest;
mod nodes;
mod oci;
mod props;
mod update;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use sha2::{Digest, Sha512};
use vmc_cache::{Clock, Config, Dispatcher, NewSubscriptionRequest, Vmc};
use vmc_model::{
    CertIdentity, EndorserClaim, Identifier, Image, ImageList, NewImagePolicy, Version,
};
use vmc_testkit::pki::{CaDirOptions, TestPki};
use vmc_testkit::server::{Route, TestServer};

/// The openssl-cli interop fixtures, generated for this test process by the `openssl` CLI.
pub(crate) fn openssl_cli() -> PathBuf {
    vmc_testkit::interop::openssl_cli().to_owned()
}

/// Lowercase hex sha512 of `bytes`.
pub(crate) fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

/// Deterministic pseudo-random bytes.
pub(crate) fn image_bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A subscription request with the new-image policy `policy` and no named endorser.
pub(crate) fn request(url: &str, policy: NewImagePolicy) -> NewSubscriptionRequest {
    NewSubscriptionRequest {
        url: url.to_owned(),
        endorsers: Vec::new(),
        auto_endorse: false,
        new_images: policy,
        auth: None,
    }
}

/// One image served by a [`Gen`] environment.
#[derive(Debug, Clone)]
pub(crate) struct GenImage {
    pub(crate) id: &'static str,
    pub(crate) title: String,
    pub(crate) bytes: Vec<u8>,
    /// The `hv:size` the list claims, when it is not the real length.
    pub(crate) declared_size: Option<u64>,
}

impl GenImage {
    pub(crate) fn new(id: &'static str, seed: u8, len: usize) -> Self {
        Self {
            id,
            title: format!("Image {id}"),
            bytes: image_bytes(seed, len),
            declared_size: None,
        }
    }

    /// The server path of this image's current bytes (changes with the bytes).
    pub(crate) fn path(&self) -> String {
        format!("/img/{}-{}", self.id, &sha512_hex(&self.bytes)[..12])
    }
}

/// A generated PKI, CA directory, HTTP server and vmc home with an adjustable clock.
pub(crate) struct Gen {
    pub(crate) pki: TestPki,
    pub(crate) ca: tempfile::TempDir,
    pub(crate) home: tempfile::TempDir,
    pub(crate) server: TestServer,
    pub(crate) now: DateTime<Utc>,
    pub(crate) clock: Arc<AtomicI64>,
    pub(crate) list_id: &'static str,
}

pub(crate) const LIST_PATH: &str = "/list.smime";

impl Gen {
    pub(crate) fn new() -> Self {
        let now = Utc.with_ymd_and_hms(2030, 3, 1, 12, 0, 0).unwrap();
        let pki = TestPki::generate(now);
        let ca = pki.ca_dir(CaDirOptions::default());
        Self {
            pki,
            ca,
            home: tempfile::tempdir().unwrap(),
            server: TestServer::start(),
            now,
            clock: Arc::new(AtomicI64::new(now.timestamp())),
            list_id: "0b7d1c4e-5a3f-4e1b-9c2d-6f8a9b0c1d2e",
        }
    }

    pub(crate) fn config(&self) -> Config {
        let mut config = Config::with_home(self.home.path());
        config.ca_dir = self.ca.path().to_path_buf();
        let clock = Arc::clone(&self.clock);
        config.clock = Clock::from_fn(move || {
            DateTime::from_timestamp(clock.load(Ordering::SeqCst), 0).unwrap()
        });
        config
    }

    pub(crate) fn set_now(&self, at: DateTime<Utc>) {
        self.clock.store(at.timestamp(), Ordering::SeqCst);
    }

    pub(crate) fn open(&self) -> Vmc {
        Vmc::open(self.config()).unwrap()
    }

    pub(crate) fn endorser_identity(&self) -> CertIdentity {
        CertIdentity {
            subject: self.pki.endorser.subject_one_line(),
            issuer: self.pki.endorser.issuer_one_line(),
        }
    }

    /// Publishes (serves and signs) list `version` holding `images`, expiring in 30 days.
    pub(crate) fn publish(&self, version: &str, images: &[GenImage]) {
        self.publish_until(version, images, self.now + Duration::days(30));
    }

    pub(crate) fn publish_until(&self, version: &str, images: &[GenImage], expires: DateTime<Utc>) {
        let list_images = images
            .iter()
            .map(|g| {
                self.server.add(&g.path(), Route::new(g.bytes.clone()));
                Image::new(
                    Identifier::new(g.id).unwrap(),
                    g.title.clone(),
                    self.server.url(&g.path()),
                    g.declared_size.unwrap_or(g.bytes.len() as u64),
                    sha512_hex(&g.bytes),
                    "1.0",
                )
            })
            .collect();
        let created = self.now - Duration::hours(1) + Duration::seconds(version_seconds(version));
        let list = ImageList {
            identifier: Identifier::new(self.list_id).unwrap(),
            title: "Generated list".into(),
            description: "A list generated by the tests".into(),
            source: "https://example.org/".into(),
            created,
            expires,
            version: Version::new(version),
            uri: self.server.url(LIST_PATH),
            endorsers: vec![EndorserClaim {
                dn: self.pki.endorser.subject_one_line(),
                ca: self.pki.endorser.issuer_one_line(),
                creator: None,
                email: None,
                extra: serde_json::Map::new(),
            }],
            images: list_images,
            extra: serde_json::Map::new(),
        };
        let signed = self.pki.endorser.sign_smime(&list.to_json_bytes());
        self.server.replace(LIST_PATH, Route::new(signed));
    }

    /// Adds the endorser `e1` and subscribes to the list with `policy`.
    pub(crate) fn subscribe(&self, vmc: &Vmc, policy: NewImagePolicy) {
        vmc.store()
            .add_endorser("e1", &[self.endorser_identity()])
            .unwrap();
        let report = vmc
            .subscribe(
                &request(&self.server.url(LIST_PATH), policy),
                &Dispatcher::new(vmc.config()),
            )
            .unwrap();
        assert_eq!(
            report.status,
            vmc_cache::UpdateStatus::Added,
            "{:?}",
            report.error
        );
    }

    /// The subscription to the list, as `vmc`'s store has it now.
    pub(crate) fn subscription(&self, vmc: &Vmc) -> vmc_model::Subscription {
        vmc.store()
            .find_subscription(&self.server.url(LIST_PATH))
            .unwrap()
            .unwrap()
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    pub(crate) fn expired_dir(&self) -> PathBuf {
        self.home.path().join("expired")
    }
}

/// Seconds added to `dc:date:created` so that later versions are created later.
fn version_seconds(version: &str) -> i64 {
    version
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse::<i64>()
        .unwrap_or(0)
        .min(3000)
}

/// The ids of the current cache entries, sorted.
pub(crate) fn cached_ids(vmc: &Vmc) -> Vec<String> {
    let mut ids: Vec<String> = vmc
        .store()
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.identifier.to_string())
        .collect();
    ids.sort();
    ids
}
