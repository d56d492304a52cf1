//! The image service a publisher talks to: one trait, implemented for OpenStack Glance v2
//! ([`crate::Glance`]) and by test doubles.

use std::collections::BTreeMap;
use std::path::Path;

use crate::PublishError;

/// Who may see a published image (Glance's `visibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Only the owner project.
    #[default]
    Private,
    /// The owner and the member projects it is shared with.
    Shared,
    /// Every project that asks for it by id or lists community images.
    Community,
    /// Every project.
    Public,
}

impl Visibility {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
            Visibility::Public => "public",
        }
    }

    /// Parses Glance's name.
    pub fn parse(text: &str) -> Option<Visibility> {
        Some(match text {
            "private" => Visibility::Private,
            "shared" => Visibility::Shared,
            "community" => Visibility::Community,
            "public" => Visibility::Public,
            _ => return None,
        })
    }
}

/// An image to create (its metadata; the file is uploaded afterwards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRemoteImage {
    /// The display name.
    pub name: String,
    /// `qcow2`, `raw`, `vmdk`…
    pub disk_format: String,
    /// `bare`, `ova`…
    pub container_format: String,
    /// Who may see it.
    pub visibility: Visibility,
    /// The owner project, when not the caller's.
    pub owner: Option<String>,
    /// Minimum RAM in MiB (0: none).
    pub min_ram: u64,
    /// Minimum disk in GiB (0: none).
    pub min_disk: u64,
    /// Further properties, all strings (`vmc_identifier`, `os_distro`…).
    pub properties: BTreeMap<String, String>,
}

/// An image as the service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteImage {
    /// Its id.
    pub id: String,
    /// `queued`, `saving`, `active`, `deactivated`, `killed`, `deleted`, `importing`…
    pub status: String,
    /// Its hash algorithm (`os_hash_algo`, `sha512` by default), once uploaded.
    pub hash_algo: Option<String>,
    /// Its hash (`os_hash_value`), once uploaded.
    pub hash_value: Option<String>,
    /// Whether it is hidden from listings (`os_hidden`).
    pub hidden: bool,
    /// Whether deletion is refused (`protected`).
    pub protected: bool,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its owner project.
    pub owner: Option<String>,
    /// Its visibility, as the service names it.
    pub visibility: String,
    /// Its string properties (the standard fields above excluded).
    pub properties: BTreeMap<String, String>,
}

/// What deleting an image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// It is gone (or was already).
    Deleted,
    /// The service refused because it is protected or in use (Glance's 403 for `protected`,
    /// 409 when a store, e.g. Ceph, still has clones of it).
    InUse,
}

/// A cloud image service.
pub trait ImageService {
    /// Creates an image record (status `queued`).
    fn create(&self, image: &NewRemoteImage) -> Result<RemoteImage, PublishError>;
    /// Streams the file at `path` (`size` bytes) as the image's data, hashing it on the way;
    /// returns the sha512 of what was sent.
    fn upload(&self, id: &str, path: &Path, size: u64) -> Result<String, PublishError>;
    /// The image, or `None` when it does not exist.
    fn get(&self, id: &str) -> Result<Option<RemoteImage>, PublishError>;
    /// The images (hidden ones included) whose string property `key` is `value`.
    fn find(&self, key: &str, value: &str) -> Result<Vec<RemoteImage>, PublishError>;
    /// Hides or shows the image in listings.
    fn set_hidden(&self, id: &str, hidden: bool) -> Result<(), PublishError>;
    /// Deactivates the image (running instances keep it; no new instance can use it).
    fn deactivate(&self, id: &str) -> Result<(), PublishError>;
    /// Reactivates a deactivated image.
    fn reactivate(&self, id: &str) -> Result<(), PublishError>;
    /// Shares the image with a project (visibility `shared`).
    fn add_member(&self, id: &str, project: &str) -> Result<(), PublishError>;
    /// Deletes the image.
    fn delete(&self, id: &str) -> Result<Deletion, PublishError>;
}
