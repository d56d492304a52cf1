//! Subscriptions: their settings and what their last update left.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use vmc_model::{LastError, Subscription};

use super::require_touched;
use crate::Store;
use crate::conn::AnyConnection;
use crate::error::{StoreError, is_unique_violation};
use crate::rows::{NewSubscriptionRow, SubscriptionRow, VersionInfoRow, auth_to_db};
use crate::schema::{list_versions, subscriptions};
use crate::time;
use crate::types::{NewSubscription, SubscriptionChange};

impl Store {
    /// Creates a subscription; fails with [`StoreError::Conflict`] when one has this URL.
    pub fn add_subscription(&self, new: &NewSubscription) -> Result<Subscription, StoreError> {
        self.write(|conn| {
            let id = insert_subscription(conn, new)?;
            load_subscription(conn, id)
        })
    }

    /// Creates a subscription of kind `oci` (its URL an `oci://` reference) whose images are
    /// endorsed while `allow` (the text of a [`vmc_model::oci::AllowRule`], which the caller
    /// parsed) admits them; fails like [`Store::add_subscription`].
    pub fn add_oci_subscription(
        &self,
        new: &NewSubscription,
        allow: &str,
    ) -> Result<Subscription, StoreError> {
        self.write(|conn| {
            let id = insert_subscription(conn, new)?;
            diesel::update(subscriptions::table.find(id))
                .set((
                    subscriptions::kind.eq(KIND_OCI),
                    subscriptions::oci_allow.eq(Some(allow)),
                ))
                .execute(conn)?;
            load_subscription(conn, id)
        })
    }

    /// Replaces the allow rule of OCI subscription `id` (the caller parsed it); its images are
    /// endorsed, from now on, while the new rule admits them. Fails with
    /// [`StoreError::NotFound`] when `id` is no OCI subscription.
    pub fn set_oci_allow(&self, id: i64, allow: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            let rows = diesel::update(
                subscriptions::table
                    .find(id)
                    .filter(subscriptions::kind.eq(KIND_OCI)),
            )
            .set(subscriptions::oci_allow.eq(Some(allow)))
            .execute(conn)?;
            require_touched(rows, "oci subscription", id)
        })
    }

    /// The allow rule of subscription `id` when it is of kind `oci`, `None` for a list.
    pub fn oci_allow(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            let row: Option<(String, Option<String>)> = subscriptions::table
                .find(id)
                .select((subscriptions::kind, subscriptions::oci_allow))
                .first(conn)
                .optional()?;
            match row {
                None => Err(StoreError::NotFound {
                    what: "subscription",
                    key: id.to_string(),
                }),
                Some((kind, allow)) if kind == KIND_OCI => Ok(allow),
                Some(_) => Ok(None),
            }
        })
    }

    /// Every subscription, sorted by URL, with its current version's facts.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.read(|conn| {
            let rows: Vec<(SubscriptionRow, Option<VersionInfoRow>)> = subscriptions::table
                .left_join(
                    list_versions::table
                        .on(subscriptions::current_version_id.eq(list_versions::id.nullable())),
                )
                .select((
                    SubscriptionRow::as_select(),
                    Option::<VersionInfoRow>::as_select(),
                ))
                .order(subscriptions::url.asc())
                .load(conn)?;
            rows.into_iter().map(into_model).collect()
        })
    }

    /// Subscription `id`; fails with [`StoreError::NotFound`] when there is none.
    pub fn subscription(&self, id: i64) -> Result<Subscription, StoreError> {
        self.read(|conn| load_subscription(conn, id))
    }

    /// The subscription following the list with `dc:identifier` `key`, else the one with URL
    /// `key`.
    ///
    /// Fails with [`StoreError::Ambiguous`] when several subscriptions follow that list
    /// identifier (mirrors): name one by URL then.
    pub fn find_subscription(&self, key: &str) -> Result<Option<Subscription>, StoreError> {
        self.read(|conn| {
            let by_identifier: Vec<(i64, String)> = subscriptions::table
                .filter(subscriptions::list_identifier.eq(key))
                .select((subscriptions::id, subscriptions::url))
                .order(subscriptions::url.asc())
                .load(conn)?;
            let id = match by_identifier.as_slice() {
                [(id, _)] => Some(*id),
                [] => subscriptions::table
                    .filter(subscriptions::url.eq(key))
                    .select(subscriptions::id)
                    .first::<i64>(conn)
                    .optional()?,
                _ => {
                    return Err(StoreError::Ambiguous {
                        what: "subscription identifier",
                        key: key.to_owned(),
                        candidates: by_identifier.into_iter().map(|(_, url)| url).collect(),
                    });
                }
            };
            id.map(|id| load_subscription(conn, id)).transpose()
        })
    }

    /// Changes subscription `id`'s settings (what `change` names, nothing else).
    pub fn update_subscription(
        &self,
        id: i64,
        change: &SubscriptionChange,
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            super::require_subscription(conn, id)?;
            let target = subscriptions::table.find(id);
            if let Some(policy) = change.new_images {
                diesel::update(target)
                    .set(subscriptions::new_images.eq(policy.as_str()))
                    .execute(conn)?;
            }
            if let Some(enabled) = change.enabled {
                diesel::update(target)
                    .set(subscriptions::enabled.eq(enabled))
                    .execute(conn)?;
            }
            if let Some(auth) = &change.auth {
                let (kind, user, secret) = auth_to_db(auth.as_ref());
                diesel::update(target)
                    .set((
                        subscriptions::auth_kind.eq(kind),
                        subscriptions::auth_user.eq(user),
                        subscriptions::auth_secret.eq(secret),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
    }

    /// Removes subscription `id` with its list versions, images, selections and links. Cache
    /// entries of its images stay, no longer tied to it, so the next sync expires them as
    /// `unendorsed`.
    pub fn remove_subscription(&self, id: i64) -> Result<(), StoreError> {
        self.write(|conn| {
            let rows = diesel::delete(subscriptions::table.find(id)).execute(conn)?;
            require_touched(rows, "subscription", id)?;
            tracing::info!(subscription = id, "subscription removed");
            Ok(())
        })
    }

    /// Records the `dc:identifier` subscription `id` is known to follow before any list of it
    /// was accepted (vmcatcher recorded it): `find_subscription` finds it by that identifier,
    /// and the first list accepted must carry it (check 8). Leaves a known identifier as it is;
    /// returns whether it was set.
    pub fn expect_list_identifier(&self, id: i64, identifier: &str) -> Result<bool, StoreError> {
        self.write(|conn| {
            let rows = diesel::update(
                subscriptions::table
                    .find(id)
                    .filter(subscriptions::list_identifier.is_null()),
            )
            .set(subscriptions::list_identifier.eq(Some(identifier)))
            .execute(conn)?;
            Ok(rows == 1)
        })
    }

    /// Records a failed update: sets the last error and the update time, nothing else (the
    /// current version stays).
    pub fn record_update_failure(
        &self,
        id: i64,
        error: &LastError,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = time::encode("update time", at)?;
        self.write(|conn| {
            let rows = diesel::update(subscriptions::table.find(id))
                .set((
                    subscriptions::last_error_code.eq(Some(error.code.as_str())),
                    subscriptions::last_error_message.eq(Some(&error.message)),
                    subscriptions::updated.eq(Some(&at)),
                ))
                .execute(conn)?;
            require_touched(rows, "subscription", id)
        })
    }

    /// Records an update that found the same list again: clears the last error, sets the
    /// update time.
    pub fn record_unchanged(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = time::encode("update time", at)?;
        self.write(|conn| {
            let rows = diesel::update(subscriptions::table.find(id))
                .set((
                    subscriptions::last_error_code.eq(None::<String>),
                    subscriptions::last_error_message.eq(None::<String>),
                    subscriptions::updated.eq(Some(&at)),
                ))
                .execute(conn)?;
            require_touched(rows, "subscription", id)
        })
    }
}

fn conflict(url: &str) -> StoreError {
    StoreError::Conflict {
        what: "subscription",
        key: url.to_owned(),
    }
}

fn into_model(
    (row, current): (SubscriptionRow, Option<VersionInfoRow>),
) -> Result<Subscription, StoreError> {
    let current = current.map(VersionInfoRow::into_model).transpose()?;
    row.into_model(current)
}

/// Subscription `id` with its current version's facts.
pub(super) fn load_subscription(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Subscription, StoreError> {
    let row: Option<(SubscriptionRow, Option<VersionInfoRow>)> = subscriptions::table
        .left_join(
            list_versions::table
                .on(subscriptions::current_version_id.eq(list_versions::id.nullable())),
        )
        .filter(subscriptions::id.eq(id))
        .select((
            SubscriptionRow::as_select(),
            Option::<VersionInfoRow>::as_select(),
        ))
        .first(conn)
        .optional()?;
    match row {
        Some(row) => into_model(row),
        None => Err(StoreError::NotFound {
            what: "subscription",
            key: id.to_string(),
        }),
    }
}

/// The `kind` of a subscription that follows an OCI registry.
pub(crate) const KIND_OCI: &str = "oci";

/// Inserts subscription `new` (kind `list`); fails with [`StoreError::Conflict`] when one has
/// this URL.
fn insert_subscription(conn: &mut AnyConnection, new: &NewSubscription) -> Result<i64, StoreError> {
    let exists = subscriptions::table
        .filter(subscriptions::url.eq(&new.url))
        .select(subscriptions::id)
        .first::<i64>(conn)
        .optional()?;
    if exists.is_some() {
        return Err(conflict(&new.url));
    }
    let (auth_kind, auth_user, auth_secret) = auth_to_db(new.auth.as_ref());
    let id: i64 = diesel::insert_into(subscriptions::table)
        .values(NewSubscriptionRow {
            url: &new.url,
            enabled: new.enabled,
            new_images: new.new_images.as_str(),
            auth_kind,
            auth_user,
            auth_secret,
        })
        .returning(subscriptions::id)
        .get_result(conn)
        .map_err(|e| {
            if is_unique_violation(&e) {
                conflict(&new.url)
            } else {
                e.into()
            }
        })?;
    tracing::info!(subscription = id, url = %crate::redact_url(&new.url), "subscription added");
    Ok(id)
}
