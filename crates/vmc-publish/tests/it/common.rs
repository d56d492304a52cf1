//! The test site: a store with one endorsed subscription whose images are selected and
//! cached as real qcow2 files (Glance checks content against `disk_format`), a Glance, and
//! helpers to look at what Glance holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use sha2::{Digest, Sha512};
use vmc_cache::store::{CacheEntry, ListImport, NewSubscription, NodeInfo, Store};
use vmc_model::{
    CertIdentity, EndorserClaim, ExpiryReason, Identifier, Image, ImageList, JsonObject,
    NewImagePolicy, Version,
};
use vmc_publish::{
    Deletion, Glance, GlanceAuth, ImageService, NewRemoteImage, PublishConfig, PublishError,
    RemoteImage,
};
use vmc_testkit::glance::{self, DEFAULT_PROJECT};

/// The list URL of the site's subscription (with credentials, which must not reach Glance).
pub const LIST_URL: &str = "https://user:secret@lists.example/dteam.smime";

/// The start of the tests' clock.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap()
}

/// A running Glance, or `None` when the test is skipped.
pub fn glance(test: &str) -> Option<glance::Glance> {
    let venv = glance::venv_from_env(test)?;
    Some(glance::Glance::start(&venv).unwrap_or_else(|e| panic!("{test}: Glance: {e}")))
}

/// A running Glance, a fresh site and a client of that Glance, or `None` when the test is
/// skipped (`test` names the test in messages and the database schema).
pub fn start(test: &str) -> Option<(glance::Glance, Site, Glance)> {
    let g = glance(test)?;
    let site = Site::new(test);
    let client = client(&g.url());
    Some((g, site, client))
}

/// A client of `url` with the identity headers of the default project, over the agent
/// vmc-fetch builds (as the CLI does).
pub fn client(url: &str) -> Glance {
    let http = vmc_cache::fetch::Client::new(vmc_cache::fetch::ClientConfig::default()).unwrap();
    Glance::new(
        http.agent().clone(),
        url,
        GlanceAuth::TrustedHeaders(glance::identity_headers(DEFAULT_PROJECT)),
    )
}

/// The configuration the tests publish with (node `node-a`, a one-day grace time, converted
/// files in `dir`).
pub fn config(dir: &Path) -> PublishConfig {
    let mut config = PublishConfig::new("test-cloud", "node-a", dir.join("converted"));
    config.grace = Duration::days(1);
    config
}

/// A qcow2 file of 1 MiB virtual size whose data depend on `seed`.
pub fn qcow2(dir: &Path, seed: u8) -> PathBuf {
    let raw = dir.join(format!("seed-{seed}.raw"));
    let mut data = vec![0u8; 1 << 20];
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    for byte in &mut data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = (x >> 24) as u8;
    }
    std::fs::write(&raw, data).unwrap();
    let out = dir.join(format!("seed-{seed}.qcow2"));
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&out)
        .status()
        .expect("qemu-img (Debian qemu-utils) is needed by these tests");
    assert!(status.success());
    std::fs::remove_file(raw).unwrap();
    out
}

/// sha512 of a file, lowercase hex.
pub fn sha512_of(path: &Path) -> String {
    hex::encode(Sha512::digest(std::fs::read(path).unwrap()))
}

/// A database URL: a SQLite file in `dir`, or a fresh PostgreSQL schema.
fn database_url(dir: &Path, test: &str) -> String {
    match postgres_url(test) {
        Some(url) => url,
        None => format!("sqlite://{}", dir.join("vmc.db").display()),
    }
}

#[cfg(feature = "postgres")]
fn postgres_url(test: &str) -> Option<String> {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let admin = std::env::var("VMC_TEST_POSTGRES_URL").ok()?;
    let short: String = test.chars().take(30).collect();
    let schema = format!(
        "vmcp_{short}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = diesel::PgConnection::establish(&admin).unwrap();
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    ))
    .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some(format!("{admin}{sep}options=-csearch_path%3D{schema}"))
}

#[cfg(not(feature = "postgres"))]
fn postgres_url(_test: &str) -> Option<String> {
    None
}

/// A site: store, cache directory, one endorsed subscription.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub store: Store,
    pub cache_dir: PathBuf,
    sub: i64,
    signer: CertIdentity,
    versions: AtomicUsize,
}

/// An image of a list version: id, file, version.
pub struct Img<'a> {
    pub id: &'a str,
    pub file: &'a Path,
    pub version: &'a str,
}

impl Site {
    pub fn new(test: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(dir.path(), test);
        let store = Store::open(&url).unwrap();
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir_all(&cache_dir).unwrap();
        let signer = CertIdentity {
            subject: "/CN=Endorser".into(),
            issuer: "/CN=CA".into(),
        };
        store
            .add_endorser("endorser", std::slice::from_ref(&signer))
            .unwrap();
        let sub = store
            .add_subscription(&NewSubscription {
                url: LIST_URL.into(),
                new_images: NewImagePolicy::Subscribe,
                auth: None,
                enabled: true,
            })
            .unwrap()
            .id;
        store.link("endorser", sub).unwrap();
        Site {
            dir,
            url,
            store,
            cache_dir,
            sub,
            signer,
            versions: AtomicUsize::new(0),
        }
    }

    /// A second connection to the same database (another node).
    pub fn reopen(&self) -> Store {
        Store::open(&self.url).unwrap()
    }

    /// Imports a new list version carrying `images` (declared qcow2), selects them, and
    /// caches their files.
    pub fn list(&self, images: &[Img<'_>]) {
        self.list_as(images, "QCOW2");
    }

    /// [`Site::list`] with the images declared as `format` (`hv:format`).
    pub fn list_as(&self, images: &[Img<'_>], format: &str) {
        let n = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let mut model = Vec::new();
        for img in images {
            let size = std::fs::metadata(img.file).unwrap().len();
            let mut image = Image::new(
                Identifier::new(img.id).unwrap(),
                format!("Test image {}", img.id),
                format!("https://images.example/{}.qcow2", img.id),
                size,
                sha512_of(img.file),
                img.version,
            );
            let extra = json!({
                "hv:format": format,
                "sl:os": "Linux",
                "sl:osname": "AlmaLinux",
                "sl:osversion": "9.4",
                "sl:arch": "amd64",
                "hv:ram_minimum": "2048",
                "org.openstack.glance.hw_disk_bus": "virtio",
                "org.openstack.glance.os_hash_value": "not settable",
            });
            if let serde_json::Value::Object(map) = extra {
                image.extra = map;
            }
            model.push(image);
        }
        let mut extra = JsonObject::new();
        extra.insert("ad:vo".into(), json!("dteam"));
        let list = ImageList {
            identifier: Identifier::new("dteam-list").unwrap(),
            title: "dteam images".into(),
            description: "test".into(),
            source: "https://lists.example/".into(),
            created: t0() - Duration::days(1),
            expires: t0() + Duration::days(365),
            version: Version::new(format!("{n}.0")),
            uri: LIST_URL.into(),
            endorsers: vec![EndorserClaim {
                dn: self.signer.subject.clone(),
                ca: self.signer.issuer.clone(),
                creator: None,
                email: None,
                extra: JsonObject::new(),
            }],
            images: model.clone(),
            extra,
        };
        let raw = list.to_json_bytes();
        let digest = hex::encode(Sha512::digest(&raw));
        let outcome = self
            .store
            .import_list(
                self.sub,
                &ListImport {
                    raw: &raw,
                    sha512: &digest,
                    list: &list,
                    signer: &self.signer,
                    imported: t0() - Duration::hours(1),
                    select_all: true,
                },
            )
            .unwrap();
        let ids: Vec<Identifier> = model.iter().map(|i| i.identifier.clone()).collect();
        self.store.set_selected(&ids, true).unwrap();
        for (img, image) in images.iter().zip(&model) {
            std::fs::copy(img.file, self.cache_dir.join(img.id)).unwrap();
            self.store
                .record_cached(&CacheEntry {
                    identifier: image.identifier.clone(),
                    filename: img.id.to_owned(),
                    size: image.size,
                    sha512: image.sha512.clone(),
                    subscription_id: Some(self.sub),
                    list_version_id: Some(outcome.version_id),
                    cached_at: t0() - Duration::minutes(30),
                })
                .unwrap();
        }
    }

    /// Lists and caches the one image `alma9`, version 1, a qcow2 made from `seed`; returns
    /// its file.
    pub fn alma9(&self, seed: u8) -> PathBuf {
        let file = qcow2(self.dir.path(), seed);
        self.list(&[Img {
            id: "alma9",
            file: &file,
            version: "1",
        }]);
        file
    }

    /// Lists and caches the images `ids`, version 1, qcow2 files made from the seeds
    /// `first_seed`, `first_seed + 1`…; returns their files.
    pub fn list_version_1(&self, ids: &[&str], first_seed: u8) -> Vec<PathBuf> {
        let files: Vec<PathBuf> = (first_seed..)
            .take(ids.len())
            .map(|seed| qcow2(self.dir.path(), seed))
            .collect();
        let images: Vec<Img<'_>> = ids
            .iter()
            .zip(&files)
            .map(|(id, file)| Img {
                id,
                file,
                version: "1",
            })
            .collect();
        self.list(&images);
        files
    }

    /// The cache expires image `id` (as `cache sync` does when it is no longer wanted).
    pub fn expire(&self, id: &str) {
        let identifier = Identifier::new(id).unwrap();
        let expired = format!("{id}.expired");
        std::fs::rename(self.cache_dir.join(id), self.dir.path().join(&expired)).unwrap();
        self.store
            .record_expired(&identifier, ExpiryReason::Unselected, &expired, t0())
            .unwrap();
    }
}

/// Registers `node` (pid 4242 on host `other-host`) as having started at `started` and last
/// beaten at `last_seen`.
pub fn register(store: &Store, node: &str, started: DateTime<Utc>, last_seen: DateTime<Utc>) {
    let info = NodeInfo {
        name: node.into(),
        host: "other-host".into(),
        pid: 4242,
        version: "test".into(),
        url: None,
        cache_mode: None,
    };
    store
        .register_node(&info, "publish sync test-cloud", started)
        .unwrap();
    store
        .heartbeat(node, "publish sync test-cloud", last_seen)
        .unwrap();
}

/// Every image of Glance's default project with `vmc_identifier` = `id`, hidden ones too.
pub fn remote_images(glance: &Glance, id: &str) -> Vec<RemoteImage> {
    glance.find("vmc_identifier", id).unwrap()
}

/// Puts or removes a tag on an image, as an operator would.
pub fn tag(url: &str, image: &str, tag: &str, on: bool) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let target = format!("{url}/v2/images/{image}/tags/{tag}");
    let headers = glance::identity_headers(DEFAULT_PROJECT);
    let status = if on {
        let mut request = agent.put(&target);
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        request.send_empty().unwrap().status()
    } else {
        let mut request = agent.delete(&target);
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        request.call().unwrap().status()
    };
    assert_eq!(status.as_u16(), 204, "tag {tag} on {image}");
}

/// The member projects of an image, as Glance lists them.
pub fn members_of(url: &str, image: &str) -> Vec<String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = agent.get(format!("{url}/v2/images/{image}/members"));
    for (k, v) in glance::identity_headers(DEFAULT_PROJECT) {
        request = request.header(k, v);
    }
    let text = request
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {text}"))
        .iter()
        .map(|m| m["member_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Sets an image's `protected` flag, as an operator would (`openstack image set --protected`).
pub fn protect(url: &str, image: &str, on: bool) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = agent.patch(format!("{url}/v2/images/{image}")).header(
        "Content-Type",
        "application/openstack-images-v2.1-json-patch",
    );
    for (k, v) in glance::identity_headers(DEFAULT_PROJECT) {
        request = request.header(k, v);
    }
    let body = json!([{"op": "replace", "path": "/protected", "value": on}]).to_string();
    let response = request.send(body.as_bytes()).unwrap();
    assert_eq!(response.status().as_u16(), 200, "protected={on} on {image}");
}

/// The upload step of [`WithUpload`]: image id, file, size; the sha512 sent.
pub type UploadStep<'a> = Box<dyn Fn(&str, &Path, u64) -> Result<String, PublishError> + 'a>;

/// Glance, with the upload done by a test's own step (which may crash the run, or let
/// something happen around the upload).
pub struct WithUpload<'a> {
    pub glance: &'a Glance,
    pub upload: UploadStep<'a>,
}

impl ImageService for WithUpload<'_> {
    fn create(&self, image: &NewRemoteImage) -> Result<RemoteImage, PublishError> {
        self.glance.create(image)
    }
    fn upload(&self, id: &str, path: &Path, size: u64) -> Result<String, PublishError> {
        (self.upload)(id, path, size)
    }
    fn get(&self, id: &str) -> Result<Option<RemoteImage>, PublishError> {
        self.glance.get(id)
    }
    fn find(&self, key: &str, value: &str) -> Result<Vec<RemoteImage>, PublishError> {
        self.glance.find(key, value)
    }
    fn set_hidden(&self, id: &str, hidden: bool) -> Result<(), PublishError> {
        self.glance.set_hidden(id, hidden)
    }
    fn deactivate(&self, id: &str) -> Result<(), PublishError> {
        self.glance.deactivate(id)
    }
    fn reactivate(&self, id: &str) -> Result<(), PublishError> {
        self.glance.reactivate(id)
    }
    fn add_member(&self, id: &str, project: &str) -> Result<(), PublishError> {
        self.glance.add_member(id, project)
    }
    fn delete(&self, id: &str) -> Result<Deletion, PublishError> {
        self.glance.delete(id)
    }
}
