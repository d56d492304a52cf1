//! Site-side domain types: endorsers, subscriptions, selections, cache entries and events.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;

/// A certificate identity: a subject DN together with the DN of the CA that issued it, both in
/// OpenSSL one-line form (`/C=XX/O=Grid/CN=Jane Doe`). Subject alone never identifies anyone:
/// a rogue CA can issue the same subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CertIdentity {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
}

/// A person or service whose signature a site trusts for the lists it is linked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorser {
    /// The site's name for the endorser (a UUID unless given).
    pub id: String,
    /// The certificates it signs with.
    pub identities: Vec<CertIdentity>,
    /// URLs of the subscriptions it is linked to, i.e. may sign for.
    pub subscriptions: Vec<String>,
}

/// What updates do with images that were not in the list before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewImagePolicy {
    /// Recorded as known, not selected (the default).
    #[default]
    Refuse,
    /// Known, not selected.
    Accept,
    /// Selected for caching.
    Subscribe,
}

impl NewImagePolicy {
    /// The contract's name: `refuse`, `accept` or `subscribe`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Accept => "accept",
            Self::Subscribe => "subscribe",
        }
    }
}

/// The string is not a value of the named enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what} (expected one of: {expected})")]
pub struct ParseEnumError {
    /// What was being parsed.
    pub what: &'static str,
    /// The refused text.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: &'static str,
}

macro_rules! string_enum {
    ($ty:ident, $what:literal, [$($variant:ident),+ $(,)?]) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                [$(Self::$variant),+]
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| ParseEnumError {
                        what: $what,
                        value: s.to_owned(),
                        expected: concat!($(stringify!($variant), " "),+),
                    })
            }
        }
    };
}

string_enum!(
    NewImagePolicy,
    "new-image policy",
    [Refuse, Accept, Subscribe]
);

/// A failure remembered on a subscription: its code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// The contract's error code.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

/// Credentials for a protected list, as kept by the site. They are never printed or logged:
/// `Debug` redacts them.
#[derive(Clone, PartialEq, Eq)]
pub enum SubscriptionAuth {
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer`.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for SubscriptionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A subscription to an image list, as the site configured it and as its last update left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Storage key.
    pub id: i64,
    /// Where the list is fetched from.
    pub url: String,
    /// The list's `dc:identifier`, known after the first accepted import (or, imported from
    /// vmcatcher, the one vmcatcher followed).
    pub identifier: Option<String>,
    /// The list's `dc:title` from the current version.
    pub title: Option<String>,
    /// Whether updates and syncs use it.
    pub enabled: bool,
    /// What updates do with new images.
    pub new_images: NewImagePolicy,
    /// Credentials for the URL, if any.
    pub auth: Option<SubscriptionAuth>,
    /// When an update last ran (successful or not).
    pub updated: Option<DateTime<Utc>>,
    /// The last update's failure, `None` after a success.
    pub last_error: Option<LastError>,
    /// Summary of the current (newest accepted) list version, if any.
    pub current: Option<ListVersionInfo>,
}

/// Facts of one accepted list version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListVersionInfo {
    /// Storage key.
    pub id: i64,
    /// `hv:version`.
    pub version: String,
    /// `dc:date:created`.
    pub created: DateTime<Utc>,
    /// `dc:date:expires`.
    pub expires: DateTime<Utc>,
    /// When vmc accepted it.
    pub imported: DateTime<Utc>,
    /// sha512 of the signed bytes as fetched (lowercase hex).
    pub sha512: String,
    /// The certificate that signed it.
    pub signer: CertIdentity,
}

/// Why an image left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExpiryReason {
    /// The image was unsubscribed.
    Unselected,
    /// It is gone from the current list.
    Removed,
    /// The list names another sha512 for it.
    Replaced,
    /// The current list has passed `dc:date:expires`.
    ListExpired,
    /// No linked endorser, or the subscription was removed or disabled.
    Unendorsed,
    /// Re-hashing the file failed.
    Corrupt,
}

impl ExpiryReason {
    /// The contract's name, e.g. `list_expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unselected => "unselected",
            Self::Removed => "removed",
            Self::Replaced => "replaced",
            Self::ListExpired => "list_expired",
            Self::Unendorsed => "unendorsed",
            Self::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for ExpiryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExpiryReason {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Unselected,
            Self::Removed,
            Self::Replaced,
            Self::ListExpired,
            Self::Unendorsed,
            Self::Corrupt,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| ParseEnumError {
            what: "expiry reason",
            value: s.to_owned(),
            expected: "unselected removed replaced list_expired unendorsed corrupt",
        })
    }
}

/// The event types of the old vmcatcher, kept by name for existing handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventType {
    /// A sync starts.
    ProcessPrefix,
    /// A sync ends.
    ProcessPostfix,
    /// An image is verified, before its move into the cache.
    AvailablePrefix,
    /// An image is in the cache.
    AvailablePostfix,
    /// An image is about to move to the expired directory.
    ExpirePrefix,
    /// An image has moved to the expired directory.
    ExpirePostfix,
    /// An update found an image identifier not seen before.
    SubscriptionImageNew,
    /// An image announced by `AvailablePrefix` did not reach the cache (the move or its
    /// record failed); vmc's own type, which vmcatcher never sent. The reason is on stdin.
    AvailableFailed,
}

impl EventType {
    /// The name handlers see in `VMCATCHER_EVENT_TYPE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProcessPrefix => "ProcessPrefix",
            Self::ProcessPostfix => "ProcessPostfix",
            Self::AvailablePrefix => "AvailablePrefix",
            Self::AvailablePostfix => "AvailablePostfix",
            Self::ExpirePrefix => "ExpirePrefix",
            Self::ExpirePostfix => "ExpirePostfix",
            Self::SubscriptionImageNew => "SubscriptionImageNew",
            Self::AvailableFailed => "AvailableFailed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::ProcessPrefix,
            Self::ProcessPostfix,
            Self::AvailablePrefix,
            Self::AvailablePostfix,
            Self::ExpirePrefix,
            Self::ExpirePostfix,
            Self::SubscriptionImageNew,
            Self::AvailableFailed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| ParseEnumError {
            what: "event type",
            value: s.to_owned(),
            expected: "ProcessPrefix ProcessPostfix AvailablePrefix AvailablePostfix ExpirePrefix ExpirePostfix SubscriptionImageNew AvailableFailed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_names() {
        for p in [
            NewImagePolicy::Refuse,
            NewImagePolicy::Accept,
            NewImagePolicy::Subscribe,
        ] {
            assert_eq!(p.as_str().parse::<NewImagePolicy>(), Ok(p));
        }
        assert!("Refuse".parse::<NewImagePolicy>().is_err());
        for r in [
            "unselected",
            "removed",
            "replaced",
            "list_expired",
            "unendorsed",
            "corrupt",
        ] {
            assert_eq!(r.parse::<ExpiryReason>().map(|x| x.as_str()), Ok(r));
        }
        assert_eq!(
            "AvailablePostfix".parse::<EventType>(),
            Ok(EventType::AvailablePostfix)
        );
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let basic = SubscriptionAuth::Basic {
            username: "u".into(),
            password: "s3cret".into(),
        };
        let bearer = SubscriptionAuth::Bearer {
            token: "t0ken".into(),
        };
        assert!(!format!("{basic:?}").contains("s3cret"));
        assert!(!format!("{bearer:?}").contains("t0ken"));
    }
}
