//! Domain types of vmc and the parsing of HEPiX image lists.
//!
//! This crate does no I/O: it turns verified payload bytes into typed values
//! ([`parse_image_list`]) and back ([`ImageList::to_json`]), and names the things the other
//! crates talk about: endorsers, subscriptions, expiry reasons, event types and the stable
//! [`ErrorCode`]s of the command-line contract. [`oci`] does the same for OCI registry
//! sources: references, digests, manifests, the disk-image layer and its annotations.

pub mod code;
pub mod domain;
pub mod error;
pub mod ident;
pub mod list;
pub mod oci;
pub mod version;

pub use code::{ErrorCode, UnknownErrorCode};
pub use domain::{
    CertIdentity, Endorser, EventType, ExpiryReason, LastError, ListVersionInfo, NewImagePolicy,
    ParseEnumError, Subscription, SubscriptionAuth,
};
pub use error::{IdentifierError, ImageError, ListError, Location, OciError};
pub use ident::{Identifier, MAX_IDENTIFIER_LEN, is_safe_identifier};
pub use list::{
    EndorserClaim, Image, ImageList, JsonObject, ParseLimits, ParsedList, RejectedImage,
    parse_image_list,
};
pub use version::Version;
