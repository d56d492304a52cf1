//! Identifiers that become file names: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::IdentifierError;

/// The longest identifier accepted, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// An opaque `dc:identifier` that is safe to use as a file name.
///
/// Real lists carry identifiers that are not RFC 4122 UUIDs, so nothing but the character set
/// and the length is checked: a first ASCII letter or digit, then up to 127 letters, digits,
/// `.`, `_` or `-`. This rules out `..`, `/`, empty strings, NUL and control characters.
///
/// ```
/// use vmc_model::Identifier;
/// assert!(Identifier::new("f3cba9bb-ce26-4020-b238-77a60f7fe90c").is_ok());
/// assert!(Identifier::new("76fdee70-8119-5d33-gggg-3c57e1c60df1").is_ok());
/// assert!(Identifier::new("../etc/passwd").is_err());
/// assert!(Identifier::new("..").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Identifier(String);

impl Identifier {
    /// Checks `value` and wraps it.
    pub fn new(value: impl Into<String>) -> Result<Self, IdentifierError> {
        let value = value.into();
        if is_safe_identifier(&value) {
            Ok(Self(value))
        } else {
            Err(IdentifierError { value })
        }
    }

    /// The identifier as text (also its file name in the cache).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `value` matches `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
pub fn is_safe_identifier(value: &str) -> bool {
    let bytes = value.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            bytes.len() <= MAX_IDENTIFIER_LEN
                && first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => false,
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Identifier {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Identifier {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Identifier {
    type Error = IdentifierError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Identifier> for String {
    fn from(value: Identifier) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_opaque_non_uuid_identifiers() {
        for ok in [
            "a",
            "A9",
            "76fdee70-8119-5d33-gggg-3c57e1c60df1",
            "x.y_z-1",
            &"a".repeat(128),
        ] {
            assert!(is_safe_identifier(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_path_traversal_and_odd_characters() {
        for bad in [
            "",
            "..",
            ".",
            "/",
            "a/../../b",
            "../x",
            ".hidden",
            "-rf",
            "_x",
            "a b",
            "a\0b",
            "a\nb",
            "ä",
            "a/b",
            "a\\b",
            "$(id)",
            &"a".repeat(129),
        ] {
            assert!(!is_safe_identifier(bad), "{bad:?}");
            assert!(Identifier::new(bad).is_err());
        }
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        assert!(serde_json::from_str::<Identifier>("\"../x\"").is_err());
        let id: Identifier = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
    }
}
