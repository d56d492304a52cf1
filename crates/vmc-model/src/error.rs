//! Errors of the model layer: why a payload is not a well-formed image list, or why one image
//! of it is left out.

use crate::code::ErrorCode;

/// A value is not a safe identifier (see [`crate::Identifier`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "identifier {value:?} is not a safe file name (allowed: A-Z a-z 0-9 . _ -, first a letter or digit, at most 128)"
)]
pub struct IdentifierError {
    /// The refused value.
    pub value: String,
}

/// Where in the list a problem is: the list itself or one of its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The `hv:imagelist` object.
    List,
    /// The image at this 0-based position of `hv:images`, with its identifier when it has one.
    Image {
        /// Position in `hv:images`.
        index: usize,
        /// Its `dc:identifier` as written, if it is a string.
        identifier: Option<String>,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::List => f.write_str("the list"),
            Location::Image {
                index,
                identifier: Some(id),
            } => write!(f, "image #{index} ({id:?})"),
            Location::Image {
                index,
                identifier: None,
            } => write!(f, "image #{index}"),
        }
    }
}

/// Why a payload is not a well-formed image list (code `list_malformed`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The payload is larger than the limit.
    #[error("list is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not UTF-8.
    #[error("list is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Arrays and objects nest deeper than the limit.
    #[error("list nests arrays and objects deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The payload is not JSON.
    #[error("list is not valid JSON (line {line}, column {column})")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A mandatory key is missing.
    #[error("{location}: mandatory key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
        /// Where it is missing.
        location: Location,
    },
    /// A key has a value of the wrong JSON type or form.
    #[error("{location}: key {key:?} must be {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// Where.
        location: Location,
        /// What was expected, e.g. "a string".
        expected: &'static str,
    },
    /// A date is not RFC 3339.
    #[error("{location}: key {key:?} is not an RFC 3339 date: {value:?}")]
    BadDate {
        /// The key.
        key: String,
        /// Where.
        location: Location,
        /// The value as written (truncated to 64 characters).
        value: String,
    },
    /// The list's own `dc:identifier` is not safe.
    #[error("the list's dc:identifier is not acceptable")]
    ListIdentifier(#[source] IdentifierError),
    /// Two images share one `dc:identifier`.
    #[error("image identifier {identifier:?} appears more than once")]
    DuplicateImageId {
        /// The repeated identifier.
        identifier: String,
    },
    /// The list holds more images than the limit.
    #[error("list holds {count} images, over the limit of {max}")]
    TooManyImages {
        /// Number of images.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl ListError {
    /// The contract's error code: always `list_malformed`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ListMalformed
    }
}

/// Why one image of an otherwise good list is left out (code `image_invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Its identifier cannot be a file name.
    #[error("{location}: unsafe identifier")]
    UnsafeIdentifier {
        /// Which image.
        location: Location,
        /// The cause.
        #[source]
        source: IdentifierError,
    },
    /// Its `sl:checksum:sha512` is not 128 hexadecimal digits.
    #[error("{location}: sl:checksum:sha512 is not 128 hexadecimal digits")]
    BadChecksum {
        /// Which image.
        location: Location,
    },
    /// Its `hv:uri` is not an http, https or file URL.
    #[error("{location}: hv:uri is not an http, https or file URL")]
    BadUri {
        /// Which image.
        location: Location,
    },
}

impl ImageError {
    /// The contract's error code: always `image_invalid`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ImageInvalid
    }

    /// The image the error is about.
    pub fn location(&self) -> &Location {
        match self {
            ImageError::UnsafeIdentifier { location, .. }
            | ImageError::BadChecksum { location }
            | ImageError::BadUri { location } => location,
        }
    }
}

/// Why an OCI reference, digest or manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// A digest is not `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase).
    #[error("digest {value:?} is not valid: {reason}")]
    BadDigest {
        /// The refused text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `oci://` reference cannot be parsed.
    #[error("oci reference {reference:?} is not valid: {reason}")]
    BadReference {
        /// The refused text.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A site's registry/repository rule cannot be parsed.
    #[error("registry rule {rule:?} is not valid: {reason}")]
    BadAllowRule {
        /// The refused text.
        rule: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The manifest is larger than vmc reads.
    #[error("manifest is {size} bytes, over the limit of {max}")]
    ManifestTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The manifest is not JSON of the expected shape.
    #[error("manifest is not valid JSON of a manifest: {reason}")]
    ManifestSyntax {
        /// The parser's message.
        reason: String,
    },
    /// The manifest breaks a rule of the image-spec.
    #[error("manifest is not valid: {reason}")]
    ManifestInvalid {
        /// Which rule.
        reason: String,
    },
    /// The manifest's media type is none vmc reads.
    #[error("manifest media type {media_type:?} is not supported")]
    UnsupportedManifest {
        /// The media type.
        media_type: String,
    },
    /// A descriptor points outside the repository (`urls`): its content would come from
    /// elsewhere.
    #[error("manifest {field} points outside the repository (urls {urls:?})")]
    ForeignDescriptor {
        /// Which descriptor (`layers[0]`).
        field: String,
        /// The URLs it names.
        urls: Vec<String>,
    },
    /// The layer's media type and its `org.openstack.glance.disk_format` disagree.
    #[error("layer media type {media_type:?} contradicts disk_format {disk_format:?}")]
    DiskFormatConflict {
        /// The layer's media type.
        media_type: String,
        /// The annotation's value.
        disk_format: String,
    },
    /// No layer is a disk image (qcow2, raw, vmdk, ova).
    #[error("manifest has no disk-image layer (layer media types: {media_types:?})")]
    NoDiskLayer {
        /// The media types of the layers.
        media_types: Vec<String>,
    },
    /// More than one layer is a disk image.
    #[error("manifest has {count} disk-image layers, expected one")]
    SeveralDiskLayers {
        /// How many.
        count: usize,
    },
}
