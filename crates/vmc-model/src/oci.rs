//! OCI registry sources, as data: references (`oci://REGISTRY/PROJECT[/REPOSITORY][:TAG]`),
//! digests, manifests (OCI image manifest, OCI artifact manifest, Docker v2 schema 2, OCI image
//! index and Docker manifest list), the disk-image layer of a manifest and its format, and the
//! mapping of the artifacts' annotations onto the fields vmc shows for list images.
//!
//! No I/O: the fetching side (vmc-fetch) hands bytes in. The names follow the OCI image-spec
//! and distribution-spec (v1.1) and, for the annotations, what EGI's registry carries: its
//! images are pushed with `oras push --annotation-file` (fedcloud-vmi-templates), one file per
//! manifest with layer media type `application/x-qemu-disk`, the Glance properties
//! (`org.openstack.glance.os_distro`, `os_version`, `architecture`, `disk_format`, …) and
//! `eu.egi.cloud.*` keys on the layer, `org.opencontainers.image.{revision,source,created}` on
//! the manifest; atrope's Harbor source reads them the same way (layer annotations over the
//! manifest's).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use crate::error::OciError;
use crate::list::JsonObject;

/// OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI artifact manifest (image-spec 1.1 release candidates; dropped from 1.1.0, still served
/// by some registries).
pub const MEDIA_TYPE_OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// Docker image manifest v2, schema 2.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type vmc reads, for the `Accept` header of manifest requests.
pub const MANIFEST_MEDIA_TYPES: [&str; 5] = [
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_OCI_ARTIFACT,
];

/// Largest manifest accepted (the distribution spec's 4 MiB that registries should accept).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Annotation: the file name `oras push` gives a layer, or a manifest's title.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Annotation prefix of the Glance image properties.
pub const GLANCE_PREFIX: &str = "org.openstack.glance.";

// ---------------------------------------------------------------------------------------------
// Digests

/// A digest algorithm vmc verifies (the two the image-spec registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// `sha256` (64 hex digits), what registries use.
    Sha256,
    /// `sha512` (128 hex digits), what image lists use.
    Sha512,
}

impl DigestAlgorithm {
    /// The name in a digest string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Hex digits of an encoded digest.
    pub const fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A content digest, `algorithm:hex` (hex lowercase, as the image-spec requires).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    hex: String,
}

impl Digest {
    /// A digest from its parts; `hex` must be the algorithm's length of lowercase hex digits.
    pub fn new(algorithm: DigestAlgorithm, hex: &str) -> Result<Digest, OciError> {
        let ok = hex.len() == algorithm.hex_len()
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Digest {
                algorithm,
                hex: hex.to_owned(),
            })
        } else {
            Err(OciError::BadDigest {
                value: format!("{algorithm}:{hex}"),
                reason: "the encoded part is not the algorithm's length of lowercase hex digits",
            })
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The encoded part (lowercase hex).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Digest, OciError> {
        let bad = |reason| OciError::BadDigest {
            value: s.to_owned(),
            reason,
        };
        let (algorithm, hex) = s.split_once(':').ok_or_else(|| bad("it has no ':'"))?;
        let algorithm = match algorithm {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(bad("the algorithm is not sha256 or sha512")),
        };
        Digest::new(algorithm, hex).map_err(|_| {
            bad("the encoded part is not the algorithm's length of lowercase hex digits")
        })
    }
}

// ---------------------------------------------------------------------------------------------
// References

/// Longest repository name accepted (distribution's limit).
const MAX_NAME_LEN: usize = 255;
/// Longest tag (distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
const MAX_TAG_LEN: usize = 128;

/// What an `oci://` subscription follows: a registry, a project (a Harbor project; EGI has one
/// per VO), optionally one repository of it, optionally one tag or digest of that.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`, lowercase.
    pub registry: String,
    /// The first path component.
    pub project: String,
    /// The rest of the path, if any (`ubuntu`, `images/ubuntu`).
    pub repository: Option<String>,
    /// The tag, if one is named.
    pub tag: Option<String>,
    /// The digest, if one is named (`@sha256:…`).
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `oci://REGISTRY/PROJECT[/REPOSITORY][:TAG|@DIGEST]` (the scheme may be left out).
    pub fn parse(text: &str) -> Result<Reference, OciError> {
        let bad = |reason: &'static str| OciError::BadReference {
            reference: text.to_owned(),
            reason,
        };
        let (registry, path) =
            split_registry(text, "it names no project after the registry").map_err(bad)?;
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => (
                path,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(|_| bad("the digest is not valid"))?,
                ),
            ),
            None => (path, None),
        };
        let (name, tag) = match path.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (path, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(bad(
                "the tag is not 1-128 of A-Z a-z 0-9 _ . - (not starting with . or -)",
            ));
        }
        if name.len() > MAX_NAME_LEN || !name.split('/').all(is_name_component) {
            return Err(bad(
                "the repository path is not lowercase components (a-z 0-9 separated by . _ __ -) joined by /",
            ));
        }
        let (project, repository) = match name.split_once('/') {
            Some((p, r)) => (p, Some(r.to_owned())),
            None => (name, None),
        };
        if (tag.is_some() || digest.is_some()) && repository.is_none() {
            return Err(bad(
                "a tag or digest needs a repository, not only a project",
            ));
        }
        Ok(Reference {
            registry: registry.to_ascii_lowercase(),
            project: project.to_owned(),
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The repository name on the registry (`project/repository`), when one is named.
    pub fn name(&self) -> Option<String> {
        self.repository
            .as_ref()
            .map(|r| format!("{}/{r}", self.project))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.project)?;
        if let Some(r) = &self.repository {
            write!(f, "/{r}")?;
        }
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits `[oci://]REGISTRY/REST` into the registry (checked) and the rest; `no_path` is the
/// reason given when there is no `/`.
fn split_registry<'a>(
    text: &'a str,
    no_path: &'static str,
) -> Result<(&'a str, &'a str), &'static str> {
    let rest = match text.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("oci") => rest,
        Some(_) => return Err("the scheme is not oci://"),
        None => text,
    };
    let (registry, path) = rest.split_once('/').ok_or(no_path)?;
    if !is_registry_host(registry) {
        return Err("the registry is not a host name or address with an optional port");
    }
    Ok((registry, path))
}

fn is_registry_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return false;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-'
        && tag.bytes().all(ok)
}

// ---------------------------------------------------------------------------------------------
// What a site allows

/// A registry and repository pattern a site allows, the OCI counterpart of an endorser:
/// `REGISTRY/PATTERN`, where the pattern's `/`-separated components match one repository-path
/// component each: literally, `*` for any one component, or `**` as the last component for
/// one or more. `registry.egi.eu/vo.access.egi.eu/**` allows every repository of that
/// project on that host; the host (with its port) must match exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowRule {
    /// `host[:port]`, lowercase.
    pub registry: String,
    /// The path pattern's components.
    components: Vec<String>,
}

impl AllowRule {
    /// Parses `REGISTRY/PATTERN` (an `oci://` prefix is accepted).
    pub fn parse(text: &str) -> Result<AllowRule, OciError> {
        let bad = |reason: &'static str| OciError::BadAllowRule {
            rule: text.to_owned(),
            reason,
        };
        let (registry, pattern) =
            split_registry(text, "it names no repository pattern after the registry")
                .map_err(bad)?;
        let components: Vec<String> = pattern.split('/').map(str::to_owned).collect();
        let last = components.len() - 1;
        for (i, c) in components.iter().enumerate() {
            let ok = c == "*" || (c == "**" && i == last) || is_name_component(c);
            if !ok {
                return Err(bad(
                    "a pattern component is not a repository name component, * or a final **",
                ));
            }
        }
        Ok(AllowRule {
            registry: registry.to_ascii_lowercase(),
            components,
        })
    }

    /// Whether the rule allows repository `name` (`project/repository`) on `registry`.
    pub fn allows(&self, registry: &str, name: &str) -> bool {
        if !self.registry.eq_ignore_ascii_case(registry) {
            return false;
        }
        let parts: Vec<&str> = name.split('/').collect();
        let mut i = 0;
        for c in &self.components {
            match c.as_str() {
                "**" => return i < parts.len(),
                "*" if i < parts.len() => {}
                literal if parts.get(i) == Some(&literal) => {}
                _ => return false,
            }
            i += 1;
        }
        i == parts.len()
    }

    /// Whether the rule allows the repository of `reference`; for a reference to a whole
    /// project, whether it may allow repositories of it (each one found is then checked with
    /// [`AllowRule::allows`]).
    pub fn allows_reference(&self, reference: &Reference) -> bool {
        match reference.name() {
            Some(name) => self.allows(&reference.registry, &name),
            None => {
                self.registry == reference.registry
                    && match self.components.first().map(String::as_str) {
                        Some("*" | "**") => true,
                        Some(first) => first == reference.project,
                        None => false,
                    }
            }
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.components.join("/"))
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// A content descriptor (image-spec `descriptor.md`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `mediaType`.
    pub media_type: String,
    /// `digest`.
    pub digest: Digest,
    /// `size` in bytes.
    pub size: u64,
    /// `artifactType`, if given.
    pub artifact_type: Option<String>,
    /// `annotations`, verbatim.
    pub annotations: BTreeMap<String, String>,
    /// `platform.architecture` and `platform.os` of an index entry, if given.
    pub platform: Option<(String, String)>,
}

/// Which format a manifest came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`.
    OciImage,
    /// `application/vnd.oci.artifact.manifest.v1+json`.
    OciArtifact,
    /// `application/vnd.docker.distribution.manifest.v2+json`.
    DockerV2,
}

/// A manifest of one artifact: its config (none for an artifact manifest) and its layers
/// (`blobs` of an artifact manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// The format.
    pub kind: ManifestKind,
    /// `artifactType`, or the config's media type when that is not an image config.
    pub artifact_type: Option<String>,
    /// `config`.
    pub config: Option<Descriptor>,
    /// `layers` (or `blobs`).
    pub layers: Vec<Descriptor>,
    /// `subject` (what this manifest refers to, e.g. a signature's image).
    pub subject: Option<Descriptor>,
    /// `annotations`, verbatim.
    pub annotations: BTreeMap<String, String>,
}

/// An index (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    /// Whether it is a Docker manifest list.
    pub docker: bool,
    /// `manifests`.
    pub manifests: Vec<Descriptor>,
    /// `annotations`, verbatim.
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// One artifact.
    Image(Box<ImageManifest>),
    /// An index of manifests.
    Index(ImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<Value>,
    #[serde(default)]
    urls: Vec<String>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    architecture: Option<String>,
    os: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    blobs: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Config media types of runnable container images (anything else names an artifact type).
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Parses a manifest as served. `content_type` is the response's `Content-Type`; the
/// document's own `mediaType` wins when present, and the two must agree when both name a
/// manifest type. Refuses descriptors that point outside the repository (`urls`: foreign
/// or non-distributable layers are fetched from elsewhere, unverified by the registry).
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, OciError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(OciError::ManifestTooLarge {
            size: bytes.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| OciError::ManifestSyntax {
        reason: e.to_string(),
    })?;
    if raw.schema_version != Some(2) {
        return Err(OciError::ManifestInvalid {
            reason: "schemaVersion is not 2".into(),
        });
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| MANIFEST_MEDIA_TYPES.contains(c));
    let media_type = match (raw.media_type.as_deref(), header) {
        (Some(own), Some(header)) if own != header => {
            return Err(OciError::ManifestInvalid {
                reason: format!("its mediaType {own:?} is not the Content-Type {header:?}"),
            });
        }
        (Some(own), _) => own.to_owned(),
        (None, Some(header)) => header.to_owned(),
        // An OCI manifest may leave out mediaType; the fields tell which it is.
        (None, None) if raw.manifests.is_some() => MEDIA_TYPE_OCI_INDEX.to_owned(),
        (None, None) => MEDIA_TYPE_OCI_MANIFEST.to_owned(),
    };
    let descriptors = |list: Option<Vec<RawDescriptor>>, field: &str| {
        list.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("{field}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    let optional =
        |d: Option<RawDescriptor>, field: &str| d.map(|d| descriptor(d, field)).transpose();
    match media_type.as_str() {
        MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => {
            let Some(manifests) = raw.manifests else {
                return Err(OciError::ManifestInvalid {
                    reason: "an index has no manifests array".into(),
                });
            };
            Ok(Manifest::Index(ImageIndex {
                docker: media_type == MEDIA_TYPE_DOCKER_LIST,
                manifests: descriptors(Some(manifests), "manifests")?,
                annotations: raw.annotations,
            }))
        }
        MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => {
            let Some(config) = raw.config else {
                return Err(OciError::ManifestInvalid {
                    reason: "an image manifest has no config".into(),
                });
            };
            let Some(layers) = raw.layers else {
                return Err(OciError::ManifestInvalid {
                    reason: "an image manifest has no layers array".into(),
                });
            };
            let config = descriptor(config, "config")?;
            let artifact_type = raw.artifact_type.or_else(|| {
                (!IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str())
                    && config.media_type != "application/vnd.oci.empty.v1+json")
                    .then(|| config.media_type.clone())
            });
            Ok(Manifest::Image(Box::new(ImageManifest {
                kind: if media_type == MEDIA_TYPE_DOCKER_MANIFEST {
                    ManifestKind::DockerV2
                } else {
                    ManifestKind::OciImage
                },
                artifact_type,
                config: Some(config),
                layers: descriptors(Some(layers), "layers")?,
                subject: optional(raw.subject, "subject")?,
                annotations: raw.annotations,
            })))
        }
        MEDIA_TYPE_OCI_ARTIFACT => Ok(Manifest::Image(Box::new(ImageManifest {
            kind: ManifestKind::OciArtifact,
            artifact_type: raw.artifact_type,
            config: None,
            layers: descriptors(raw.blobs, "blobs")?,
            subject: optional(raw.subject, "subject")?,
            annotations: raw.annotations,
        }))),
        other => Err(OciError::UnsupportedManifest {
            media_type: other.to_owned(),
        }),
    }
}

fn descriptor(raw: RawDescriptor, field: &str) -> Result<Descriptor, OciError> {
    let invalid = |reason: &str| OciError::ManifestInvalid {
        reason: format!("{field}: {reason}"),
    };
    if !raw.urls.is_empty() {
        return Err(OciError::ForeignDescriptor {
            field: field.to_owned(),
            urls: raw.urls,
        });
    }
    let media_type = raw.media_type.ok_or_else(|| invalid("no mediaType"))?;
    let digest = raw
        .digest
        .ok_or_else(|| invalid("no digest"))?
        .parse::<Digest>()
        .map_err(|e| invalid(&e.to_string()))?;
    let size = match raw.size {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| invalid("size is not a non-negative integer"))?,
        _ => return Err(invalid("size is not a non-negative integer")),
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type: raw.artifact_type,
        annotations: raw.annotations,
        platform: raw.platform.and_then(|p| Some((p.architecture?, p.os?))),
    })
}

// ---------------------------------------------------------------------------------------------
// Disk images

/// A disk image format vmc records (`hv:format` of list images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// QEMU copy-on-write v2.
    Qcow2,
    /// Raw disk image.
    Raw,
    /// VMware disk.
    Vmdk,
    /// Open Virtualization Archive.
    Ova,
}

impl DiskFormat {
    /// The name (as in Glance's `disk_format`, and `hv:format` of lists).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
            Self::Vmdk => "vmdk",
            Self::Ova => "ova",
        }
    }

    /// The format a name means (Glance `disk_format` values, file extensions).
    pub fn from_name(name: &str) -> Option<DiskFormat> {
        match name.to_ascii_lowercase().as_str() {
            "qcow2" | "qcow" => Some(Self::Qcow2),
            "raw" | "img" => Some(Self::Raw),
            "vmdk" => Some(Self::Vmdk),
            "ova" => Some(Self::Ova),
            _ => None,
        }
    }

    /// The format a layer media type names, if it names one.
    pub fn from_media_type(media_type: &str) -> Option<DiskFormat> {
        match media_type {
            // What EGI's fedcloud-vmi-templates push (`oras push file:application/x-qemu-disk`).
            "application/x-qemu-disk" | "application/x-qcow2" | "application/vnd.qcow2" => {
                Some(Self::Qcow2)
            }
            "application/x-raw-disk-image" | "application/vnd.efi.img" => Some(Self::Raw),
            "application/x-vmdk" | "application/vnd.vmware.vmdk" => Some(Self::Vmdk),
            "application/x-ova" | "application/x-virtualbox-ova" | "application/ovf" => {
                Some(Self::Ova)
            }
            _ => None,
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Layer media types that say nothing of the content: a disk image in one of them is known
/// by the Glance `disk_format` annotation or the file name's extension.
const GENERIC_LAYER_TYPES: [&str; 3] = [
    "application/octet-stream",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.unknown.layer.v1+tar",
];

/// The disk-image layer of a manifest and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayer {
    /// The layer (its digest and size are what the download is verified against).
    pub descriptor: Descriptor,
    /// Its position in `layers`.
    pub index: usize,
    /// The format.
    pub format: DiskFormat,
}

impl ImageManifest {
    /// Finds the one disk-image layer: a layer whose media type names a disk format, or, when
    /// none does, the one layer of a generic media type whose `org.openstack.glance.disk_format`
    /// annotation (the layer's, then the manifest's) or file name (`org.opencontainers.image.title`)
    /// names one. Refuses no such layer, several, and a `disk_format` that contradicts the
    /// media type.
    pub fn disk_layer(&self) -> Result<DiskLayer, OciError> {
        let glance_format = |d: &Descriptor| {
            d.annotations
                .get("org.openstack.glance.disk_format")
                .or_else(|| self.annotations.get("org.openstack.glance.disk_format"))
                .cloned()
        };
        let mut typed = Vec::new();
        for (index, d) in self.layers.iter().enumerate() {
            if let Some(format) = DiskFormat::from_media_type(&d.media_type) {
                if let Some(named) = glance_format(d)
                    && DiskFormat::from_name(&named) != Some(format)
                {
                    return Err(OciError::DiskFormatConflict {
                        media_type: d.media_type.clone(),
                        disk_format: named,
                    });
                }
                typed.push(DiskLayer {
                    descriptor: d.clone(),
                    index,
                    format,
                });
            }
        }
        if typed.is_empty() {
            for (index, d) in self.layers.iter().enumerate() {
                if !GENERIC_LAYER_TYPES.contains(&d.media_type.as_str()) {
                    continue;
                }
                let by_annotation = glance_format(d).and_then(|n| DiskFormat::from_name(&n));
                let by_name = d
                    .annotations
                    .get(ANNOTATION_TITLE)
                    .and_then(|t| t.rsplit_once('.'))
                    .and_then(|(_, ext)| DiskFormat::from_name(ext));
                if let Some(format) = by_annotation.or(by_name) {
                    typed.push(DiskLayer {
                        descriptor: d.clone(),
                        index,
                        format,
                    });
                }
            }
        }
        match typed.len() {
            1 => Ok(typed.remove(0)),
            0 => Err(OciError::NoDiskLayer {
                media_types: self.layers.iter().map(|d| d.media_type.clone()).collect(),
            }),
            n => Err(OciError::SeveralDiskLayers { count: n }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Annotations

/// What vmc shows of an OCI image, from its annotations (the layer's over the manifest's, as
/// atrope merges them), mapped onto the fields of list images; every annotation is also kept
/// verbatim in [`ImageMetadata::annotations`] for handlers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageMetadata {
    /// `eu.egi.cloud.image.title`, else the manifest's `org.opencontainers.image.title`
    /// (`dc:title`).
    pub title: Option<String>,
    /// `eu.egi.cloud.description`, else `org.opencontainers.image.description`
    /// (`dc:description`).
    pub description: Option<String>,
    /// `org.opencontainers.image.version`, else `eu.egi.cloud.tag` (shown as the image's
    /// version; the manifest digest is what identifies the version).
    pub version: Option<String>,
    /// `org.openstack.glance.os_distro` (`sl:os`).
    pub os: Option<String>,
    /// `org.openstack.glance.os_version` (`sl:osversion`).
    pub os_version: Option<String>,
    /// `org.openstack.glance.architecture` (`sl:arch`).
    pub arch: Option<String>,
    /// `org.openstack.glance.min_ram`, MiB, when an integer (`hv:ram_minimum`).
    pub min_ram_mib: Option<u64>,
    /// `org.openstack.glance.min_disk`, GiB, when an integer.
    pub min_disk_gib: Option<u64>,
    /// `org.opencontainers.image.source`.
    pub source: Option<String>,
    /// `org.opencontainers.image.revision`.
    pub revision: Option<String>,
    /// `org.opencontainers.image.created` (RFC 3339 as written).
    pub created: Option<String>,
    /// The VO: the project, as EGI's registry has one project per VO (`VMCATCHER_EVENT_VO`).
    pub vo: Option<String>,
    /// Every `org.openstack.glance.*` annotation, prefix removed (Glance image properties).
    pub glance: BTreeMap<String, String>,
    /// Every annotation, merged (layer over manifest), verbatim.
    pub annotations: BTreeMap<String, String>,
}

impl ImageMetadata {
    /// Maps the annotations of `manifest` and of its disk layer; `vo` is the project.
    pub fn from_manifest(manifest: &ImageManifest, layer: &DiskLayer, vo: Option<&str>) -> Self {
        let mut merged = manifest.annotations.clone();
        // The layer's file name is not the image's title: keep the manifest's under that key.
        for (k, v) in &layer.descriptor.annotations {
            if k == ANNOTATION_TITLE && merged.contains_key(k) {
                continue;
            }
            merged.insert(k.clone(), v.clone());
        }
        let get = |k: &str| merged.get(k).filter(|v| !v.is_empty()).cloned();
        let number = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        ImageMetadata {
            title: get("eu.egi.cloud.image.title")
                .or_else(|| manifest.annotations.get(ANNOTATION_TITLE).cloned()),
            description: get("eu.egi.cloud.description")
                .or_else(|| get("org.opencontainers.image.description")),
            version: get("org.opencontainers.image.version").or_else(|| get("eu.egi.cloud.tag")),
            os: get("org.openstack.glance.os_distro"),
            os_version: get("org.openstack.glance.os_version"),
            arch: get("org.openstack.glance.architecture"),
            min_ram_mib: number("org.openstack.glance.min_ram"),
            min_disk_gib: number("org.openstack.glance.min_disk"),
            source: get("org.opencontainers.image.source"),
            revision: get("org.opencontainers.image.revision"),
            created: get("org.opencontainers.image.created"),
            vo: vo.map(str::to_owned),
            glance: merged
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(GLANCE_PREFIX)?.to_owned(), v.clone())))
                .collect(),
            annotations: merged,
        }
    }

    /// The fields as the keys of a list image (`dc:description`, `hv:format`, `sl:os`,
    /// `sl:osversion`, `sl:arch`, `hv:ram_minimum`), for the code that shows list images
    /// and sets the `VMCATCHER_EVENT_*` variables. `format` is the disk layer's.
    pub fn list_image_keys(&self, format: DiskFormat) -> JsonObject {
        let mut out = JsonObject::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                out.insert(k.to_owned(), v);
            }
        };
        put("dc:description", self.description.clone().map(Value::from));
        put("hv:format", Some(Value::from(format.as_str())));
        put("sl:os", self.os.clone().map(Value::from));
        put("sl:osversion", self.os_version.clone().map(Value::from));
        put("sl:arch", self.arch.clone().map(Value::from));
        put("hv:ram_minimum", self.min_ram_mib.map(Value::from));
        out
    }
}

#[cfg(test)]
mod tests;
