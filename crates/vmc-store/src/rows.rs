//! Row structs, as the tables hold them, and their conversion into `vmc-model` types.
//!
//! They never leave the crate. The subscription row carries credentials: its `Debug` redacts
//! them, and the insertable rows have no `Debug` at all.

use std::fmt;

use diesel::prelude::*;
use vmc_model::{
    CertIdentity, ErrorCode, EventType, ExpiryReason, Identifier, Image, JsonObject, LastError,
    ListVersionInfo, NewImagePolicy, Subscription, SubscriptionAuth,
};

use crate::error::StoreError;
use crate::schema::{
    cache_entries, endorser_links, events, identities, images, list_versions, subscriptions,
};
use crate::time;
use crate::types::{CacheEntry, EventOutcome, EventRecord, ExpiredEntry, MissingEntry};

/// `cache_entries.state` of a file in the cache.
pub(crate) const STATE_CACHED: &str = "cached";
/// `cache_entries.state` of a file moved to the expired directory.
pub(crate) const STATE_EXPIRED: &str = "expired";
/// `cache_entries.state` of a cached file found gone from the cache directory.
pub(crate) const STATE_MISSING: &str = "missing";

/// A size as stored (BIGINT), refusing sizes above `i64::MAX`.
pub(crate) fn size_to_db(what: &'static str, size: u64) -> Result<i64, StoreError> {
    i64::try_from(size).map_err(|_| StoreError::OutOfRange {
        what,
        value: size.to_string(),
    })
}

fn size_from_db(what: &'static str, size: i64) -> Result<u64, StoreError> {
    u64::try_from(size).map_err(|_| StoreError::Corrupt {
        what,
        value: size.to_string(),
    })
}

/// A stored identifier, checked again on the way out.
pub(crate) fn identifier_from_db(value: String) -> Result<Identifier, StoreError> {
    Identifier::new(value).map_err(|e| StoreError::Corrupt {
        what: "image identifier",
        value: e.value,
    })
}

fn parse_enum<T: std::str::FromStr>(what: &'static str, value: &str) -> Result<T, StoreError> {
    value.parse().map_err(|_| StoreError::Corrupt {
        what,
        value: value.to_owned(),
    })
}

/// A `subscriptions` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub(crate) struct SubscriptionRow {
    pub(crate) id: i64,
    pub(crate) url: String,
    pub(crate) list_identifier: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) new_images: String,
    pub(crate) auth_kind: Option<String>,
    pub(crate) auth_user: Option<String>,
    pub(crate) auth_secret: Option<String>,
    pub(crate) current_version_id: Option<i64>,
    pub(crate) updated: Option<String>,
    pub(crate) last_error_code: Option<String>,
    pub(crate) last_error_message: Option<String>,
}

impl fmt::Debug for SubscriptionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("list_identifier", &self.list_identifier)
            .field("enabled", &self.enabled)
            .field("new_images", &self.new_images)
            .field("auth_kind", &self.auth_kind)
            .field("auth_user", &self.auth_user.as_ref().map(|_| "<redacted>"))
            .field(
                "auth_secret",
                &self.auth_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("current_version_id", &self.current_version_id)
            .finish_non_exhaustive()
    }
}

impl SubscriptionRow {
    /// The domain subscription, with its current version's facts.
    pub(crate) fn into_model(
        self,
        current: Option<ListVersionInfo>,
    ) -> Result<Subscription, StoreError> {
        let auth = match self.auth_kind.as_deref() {
            None => None,
            Some("basic") => match (self.auth_user, self.auth_secret) {
                (Some(username), Some(password)) => {
                    Some(SubscriptionAuth::Basic { username, password })
                }
                _ => return Err(corrupt_auth("basic")),
            },
            Some("bearer") => match self.auth_secret {
                Some(token) => Some(SubscriptionAuth::Bearer { token }),
                None => return Err(corrupt_auth("bearer")),
            },
            Some(other) => return Err(corrupt_auth(other)),
        };
        let last_error = match (self.last_error_code, self.last_error_message) {
            (Some(code), Some(message)) => Some(LastError {
                code: parse_enum::<ErrorCode>("error code", &code)?,
                message,
            }),
            _ => None,
        };
        Ok(Subscription {
            id: self.id,
            url: self.url,
            identifier: self.list_identifier,
            title: self.title,
            enabled: self.enabled,
            new_images: parse_enum::<NewImagePolicy>("new-image policy", &self.new_images)?,
            auth,
            updated: time::decode_opt("subscription update time", self.updated.as_deref())?,
            last_error,
            current,
        })
    }
}

fn corrupt_auth(kind: &str) -> StoreError {
    StoreError::Corrupt {
        what: "subscription credentials of kind",
        value: kind.to_owned(),
    }
}

/// The stored form of credentials: (kind, user, secret).
pub(crate) fn auth_to_db(
    auth: Option<&SubscriptionAuth>,
) -> (Option<&'static str>, Option<&str>, Option<&str>) {
    match auth {
        None => (None, None, None),
        Some(SubscriptionAuth::Basic { username, password }) => {
            (Some("basic"), Some(username), Some(password))
        }
        Some(SubscriptionAuth::Bearer { token }) => (Some("bearer"), None, Some(token)),
    }
}

/// A new `subscriptions` row (no `Debug`: it holds credentials).
#[derive(Insertable)]
#[diesel(table_name = subscriptions)]
pub(crate) struct NewSubscriptionRow<'a> {
    pub(crate) url: &'a str,
    pub(crate) enabled: bool,
    pub(crate) new_images: &'a str,
    pub(crate) auth_kind: Option<&'a str>,
    pub(crate) auth_user: Option<&'a str>,
    pub(crate) auth_secret: Option<&'a str>,
}

/// The facts of a `list_versions` row, without its raw bytes.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = list_versions)]
pub(crate) struct VersionInfoRow {
    pub(crate) id: i64,
    pub(crate) version: String,
    pub(crate) created: String,
    pub(crate) expires: String,
    pub(crate) imported: String,
    pub(crate) sha512: String,
    pub(crate) signer_subject: String,
    pub(crate) signer_issuer: String,
}

impl VersionInfoRow {
    pub(crate) fn into_model(self) -> Result<ListVersionInfo, StoreError> {
        Ok(ListVersionInfo {
            id: self.id,
            version: self.version,
            created: time::decode("list creation date", &self.created)?,
            expires: time::decode("list expiry date", &self.expires)?,
            imported: time::decode("list import time", &self.imported)?,
            sha512: self.sha512,
            signer: CertIdentity {
                subject: self.signer_subject,
                issuer: self.signer_issuer,
            },
        })
    }
}

/// A new `list_versions` row.
#[derive(Insertable)]
#[diesel(table_name = list_versions)]
pub(crate) struct NewListVersionRow<'a> {
    pub(crate) subscription_id: i64,
    pub(crate) signer_identity_id: Option<i64>,
    pub(crate) signer_subject: &'a str,
    pub(crate) signer_issuer: &'a str,
    pub(crate) list_identifier: &'a str,
    pub(crate) title: &'a str,
    pub(crate) vo: Option<&'a str>,
    pub(crate) version: &'a str,
    pub(crate) created: String,
    pub(crate) expires: String,
    pub(crate) imported: String,
    pub(crate) sha512: String,
    pub(crate) raw: &'a [u8],
}

/// An `images` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = images)]
pub(crate) struct ImageRow {
    pub(crate) identifier: String,
    pub(crate) title: String,
    pub(crate) uri: String,
    pub(crate) size: i64,
    pub(crate) sha512: String,
    pub(crate) version: String,
    pub(crate) extra: String,
}

impl ImageRow {
    pub(crate) fn into_model(self) -> Result<Image, StoreError> {
        let extra: JsonObject =
            serde_json::from_str(&self.extra).map_err(|_| StoreError::Corrupt {
                what: "image extra keys",
                value: self.extra.clone(),
            })?;
        Ok(Image {
            identifier: identifier_from_db(self.identifier)?,
            title: self.title,
            uri: self.uri,
            size: size_from_db("image size", self.size)?,
            sha512: self.sha512,
            version: self.version,
            extra,
        })
    }
}

/// A new `images` row (inserted as `column = value` pairs, see `repo::lists`).
pub(crate) struct NewImageRow<'a> {
    pub(crate) list_version_id: i64,
    pub(crate) identifier: &'a str,
    pub(crate) position: i64,
    pub(crate) title: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) size: i64,
    pub(crate) sha512: String,
    pub(crate) version: &'a str,
    pub(crate) extra: String,
}

/// A new `image_selections` row (inserted as `column = value` pairs, see `repo::lists`).
pub(crate) struct NewSelectionRow<'a> {
    pub(crate) subscription_id: i64,
    pub(crate) identifier: &'a str,
    pub(crate) selected: bool,
    pub(crate) first_seen: &'a str,
}

/// A new `identities` row.
#[derive(Insertable)]
#[diesel(table_name = identities)]
pub(crate) struct NewIdentityRow<'a> {
    pub(crate) endorser_id: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) issuer: &'a str,
}

/// A new `endorser_links` row.
#[derive(Insertable)]
#[diesel(table_name = endorser_links)]
pub(crate) struct NewLinkRow<'a> {
    pub(crate) endorser_id: &'a str,
    pub(crate) subscription_id: i64,
}

/// A `cache_entries` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = cache_entries)]
pub(crate) struct CacheEntryRow {
    pub(crate) identifier: String,
    pub(crate) filename: String,
    pub(crate) size: i64,
    pub(crate) sha512: String,
    pub(crate) subscription_id: Option<i64>,
    pub(crate) list_version_id: Option<i64>,
    pub(crate) cached_at: String,
    pub(crate) expired_at: Option<String>,
    pub(crate) expiry_reason: Option<String>,
    pub(crate) expired_file: Option<String>,
    pub(crate) missing_since: Option<String>,
}

impl CacheEntryRow {
    pub(crate) fn into_cached(self) -> Result<CacheEntry, StoreError> {
        Ok(CacheEntry {
            identifier: identifier_from_db(self.identifier)?,
            filename: self.filename,
            size: size_from_db("cached file size", self.size)?,
            sha512: self.sha512,
            subscription_id: self.subscription_id,
            list_version_id: self.list_version_id,
            cached_at: time::decode("cache time", &self.cached_at)?,
        })
    }

    pub(crate) fn into_missing(mut self) -> Result<MissingEntry, StoreError> {
        let since = self.missing_since.take().ok_or(StoreError::Corrupt {
            what: "missing-since time",
            value: String::new(),
        })?;
        Ok(MissingEntry {
            since: time::decode("missing-since time", &since)?,
            entry: self.into_cached()?,
        })
    }

    pub(crate) fn into_expired(self) -> Result<ExpiredEntry, StoreError> {
        let missing = |what: &'static str| StoreError::Corrupt {
            what,
            value: String::new(),
        };
        let reason = self.expiry_reason.ok_or_else(|| missing("expiry reason"))?;
        let expired_at = self.expired_at.ok_or_else(|| missing("expiry time"))?;
        Ok(ExpiredEntry {
            identifier: identifier_from_db(self.identifier)?,
            file: self
                .expired_file
                .ok_or_else(|| missing("expired file name"))?,
            reason: parse_enum::<ExpiryReason>("expiry reason", &reason)?,
            expired_at: time::decode("expiry time", &expired_at)?,
            size: size_from_db("expired file size", self.size)?,
            sha512: self.sha512,
        })
    }
}

/// A new `cache_entries` row, in state `cached`.
#[derive(Insertable)]
#[diesel(table_name = cache_entries)]
pub(crate) struct NewCacheEntryRow<'a> {
    pub(crate) node: &'a str,
    pub(crate) identifier: &'a str,
    pub(crate) state: &'a str,
    pub(crate) filename: &'a str,
    pub(crate) size: i64,
    pub(crate) sha512: String,
    pub(crate) subscription_id: Option<i64>,
    pub(crate) list_version_id: Option<i64>,
    pub(crate) cached_at: String,
}

/// An `events` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = events)]
pub(crate) struct EventRow {
    pub(crate) id: i64,
    pub(crate) session: String,
    pub(crate) event_type: String,
    pub(crate) identifier: Option<String>,
    pub(crate) payload: String,
    pub(crate) outcome: String,
    pub(crate) failure: Option<String>,
    pub(crate) at: String,
}

impl EventRow {
    pub(crate) fn into_model(self) -> Result<EventRecord, StoreError> {
        let outcome = match (self.outcome.as_str(), self.failure) {
            ("no_handler", _) => EventOutcome::NoHandler,
            ("delivered", _) => EventOutcome::Delivered,
            ("failed", failure) => EventOutcome::Failed {
                message: failure.unwrap_or_default(),
            },
            (other, _) => {
                return Err(StoreError::Corrupt {
                    what: "event outcome",
                    value: other.to_owned(),
                });
            }
        };
        let payload = serde_json::from_str(&self.payload).map_err(|_| StoreError::Corrupt {
            what: "event payload",
            value: self.payload.clone(),
        })?;
        Ok(EventRecord {
            id: self.id,
            session: self.session,
            event_type: parse_enum::<EventType>("event type", &self.event_type)?,
            identifier: self.identifier,
            payload,
            outcome,
            at: time::decode("event time", &self.at)?,
        })
    }
}

/// A new `events` row.
#[derive(Insertable)]
#[diesel(table_name = events)]
pub(crate) struct NewEventRow<'a> {
    pub(crate) session: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) identifier: Option<&'a str>,
    pub(crate) payload: String,
    pub(crate) outcome: &'a str,
    pub(crate) failure: Option<&'a str>,
    pub(crate) at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_rows_never_show_credentials() {
        let row = SubscriptionRow {
            id: 1,
            url: "https://example.org/list".into(),
            list_identifier: None,
            title: None,
            enabled: true,
            new_images: "refuse".into(),
            auth_kind: Some("basic".into()),
            auth_user: Some("the-user".into()),
            auth_secret: Some("the-secret".into()),
            current_version_id: None,
            updated: None,
            last_error_code: None,
            last_error_message: None,
        };
        let shown = format!("{row:?}");
        assert!(
            !shown.contains("the-secret") && !shown.contains("the-user"),
            "{shown}"
        );
        let model = row.into_model(None).unwrap();
        assert_eq!(
            model.auth,
            Some(SubscriptionAuth::Basic {
                username: "the-user".into(),
                password: "the-secret".into()
            })
        );
    }

    #[test]
    fn inconsistent_credentials_are_corrupt_without_showing_them() {
        let bearer = SubscriptionAuth::Bearer {
            token: "tok".into(),
        };
        let (kind, user, secret) = auth_to_db(Some(&bearer));
        assert_eq!((kind, user, secret), (Some("bearer"), None, Some("tok")));
        let row = SubscriptionRow {
            id: 1,
            url: "u".into(),
            list_identifier: None,
            title: None,
            enabled: true,
            new_images: "refuse".into(),
            auth_kind: Some("basic".into()),
            auth_user: None,
            auth_secret: Some("hidden".into()),
            current_version_id: None,
            updated: None,
            last_error_code: None,
            last_error_message: None,
        };
        let err = row.into_model(None).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(!format!("{err} {err:?}").contains("hidden"));
    }

    #[test]
    fn sizes_beyond_bigint_are_refused() {
        assert_eq!(size_to_db("s", i64::MAX as u64).unwrap(), i64::MAX);
        assert!(matches!(
            size_to_db("s", u64::MAX),
            Err(StoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            size_from_db("s", -1),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
