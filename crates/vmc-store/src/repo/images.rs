//! The images of the current list versions, and which of them are selected for caching.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use vmc_model::Identifier;

use crate::Store;
use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::rows::{CacheEntryRow, ImageRow, STATE_CACHED};
use crate::schema::{
    cache_entries, endorser_links, identities, image_selections, images, list_versions,
    subscriptions,
};
use crate::time;
use crate::types::{CacheEntry, ImageFilter, ImageRecord, PendingSelection};

/// Identifiers per `IN (…)` list.
const ID_CHUNK: usize = 500;

/// What one row of the image query carries beside the image.
type ImageJoinRow = (
    ImageRow,
    i64,
    String,
    bool,
    i64,
    String,
    Option<String>,
    String,
    Option<i64>,
    Option<bool>,
    String,
);

impl Store {
    /// One record per image of the current version of every subscription that `filter`
    /// admits, sorted by subscription URL, then image id.
    pub fn images(&self, filter: &ImageFilter) -> Result<Vec<ImageRecord>, StoreError> {
        self.read(|conn| {
            let mut query = images::table
                .inner_join(list_versions::table.on(list_versions::id.eq(images::list_version_id)))
                .inner_join(
                    subscriptions::table
                        .on(subscriptions::current_version_id.eq(list_versions::id.nullable())),
                )
                .left_join(
                    image_selections::table.on(image_selections::subscription_id
                        .eq(subscriptions::id)
                        .and(image_selections::identifier.eq(images::identifier))),
                )
                .select((
                    ImageRow::as_select(),
                    subscriptions::id,
                    subscriptions::url,
                    subscriptions::enabled,
                    list_versions::id,
                    list_versions::list_identifier,
                    list_versions::vo,
                    list_versions::expires,
                    list_versions::signer_identity_id,
                    image_selections::selected.nullable(),
                    list_versions::sha512,
                ))
                .order((subscriptions::url.asc(), images::identifier.asc()))
                .into_boxed();
            if let Some(id) = filter.subscription_id {
                query = query.filter(subscriptions::id.eq(id));
            }
            if filter.selected_only {
                query = query.filter(image_selections::selected.nullable().eq(Some(true)));
            }
            if let Some(identifier) = &filter.identifier {
                query = query.filter(images::identifier.eq(identifier.clone()));
            }
            if let Some(sha512) = &filter.sha512 {
                query = query.filter(images::sha512.eq(sha512.to_ascii_lowercase()));
            }
            let rows: Vec<ImageJoinRow> = query.load(conn)?;
            let endorsing = endorsing_pairs(conn)?;
            let rules = super::oci::oci_rules(conn)?;
            let cached = cached_by_identifier(conn, &self.cache_node)?;
            rows.into_iter()
                .map(|row| {
                    let (
                        image,
                        sub_id,
                        url,
                        enabled,
                        version_id,
                        list_identifier,
                        vo,
                        expires,
                        signer,
                        selected,
                        list_sha512,
                    ) = row;
                    let image = image.into_model()?;
                    // An image id in two subscriptions shares its one cached file.
                    let cached = cached.get(image.identifier.as_str()).cloned();
                    // An OCI image is endorsed while the site's rule allows its repository.
                    let endorsed = match rules.get(&sub_id) {
                        Some(rule) => super::oci::rule_allows(rule.as_ref(), &image.uri),
                        None => signer.is_some_and(|s| endorsing.contains(&(s, sub_id))),
                    };
                    Ok(ImageRecord {
                        endorsed,
                        image,
                        subscription_id: sub_id,
                        subscription_url: url,
                        list_identifier,
                        list_vo: vo,
                        list_version_id: version_id,
                        list_expires: time::decode("list expiry date", &expires)?,
                        subscription_enabled: enabled,
                        selected: selected.unwrap_or(false),
                        cached,
                        list_sha512,
                    })
                })
                .collect()
        })
    }

    /// Selects (or deselects) the images with these ids, in every subscription that carries
    /// them. Returns how many selections changed (already selected ones do not count).
    ///
    /// Fails with [`StoreError::NotFound`], changing nothing, when an id is not an image of
    /// any current list (nor, to deselect, a pending selection).
    pub fn set_selected(
        &self,
        identifiers: &[Identifier],
        selected: bool,
    ) -> Result<usize, StoreError> {
        self.write(|conn| {
            let wanted: Vec<&str> = identifiers.iter().map(Identifier::as_str).collect();
            let mut current: HashSet<String> = HashSet::new();
            for chunk in wanted.chunks(ID_CHUNK) {
                current.extend(
                    images::table
                        .inner_join(
                            subscriptions::table.on(subscriptions::current_version_id
                                .eq(images::list_version_id.nullable())),
                        )
                        .filter(images::identifier.eq_any(chunk))
                        .select(images::identifier)
                        .load::<String>(conn)?,
                );
            }
            if !selected {
                // A pending selection (selected, no current list names it) can be withdrawn.
                for chunk in wanted.chunks(ID_CHUNK) {
                    current.extend(
                        image_selections::table
                            .filter(image_selections::identifier.eq_any(chunk))
                            .filter(image_selections::selected.eq(true))
                            .select(image_selections::identifier)
                            .load::<String>(conn)?,
                    );
                }
            }
            if let Some(missing) = wanted.iter().find(|id| !current.contains(**id)) {
                return Err(StoreError::NotFound {
                    what: "image",
                    key: (*missing).to_owned(),
                });
            }
            let mut changed = 0;
            for chunk in wanted.chunks(ID_CHUNK) {
                changed += diesel::update(
                    image_selections::table
                        .filter(image_selections::identifier.eq_any(chunk))
                        .filter(image_selections::selected.ne(selected)),
                )
                .set(image_selections::selected.eq(selected))
                .execute(conn)?;
            }
            tracing::info!(
                images = wanted.len(),
                selected,
                changed,
                "image selection changed"
            );
            Ok(changed)
        })
    }
}

impl Store {
    /// Records what the site chose for image ids of subscription `sub_id` before a list of
    /// vmc's names them (vmcatcher's selection, at import): each id without a selection row
    /// there (neither selected nor deselected, so a choice the site made in vmc is never
    /// overridden) gets one, selected or not as given. The ids are then known: a list version
    /// that names them neither counts them as new images nor applies the new-image policy to
    /// them ([`Store::import_list`] keeps existing rows). A selected one that no current list
    /// names is a pending selection ([`Store::pending_selections`]) until a list version names
    /// the image, which is then cached like any selected image. Returns the ids recorded; one
    /// transaction.
    pub fn record_selections(
        &self,
        sub_id: i64,
        choices: &[(Identifier, bool)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Identifier>, StoreError> {
        let at = time::encode("selection time", at)?;
        self.write(|conn| {
            let mut known: HashSet<String> = HashSet::new();
            let wanted: Vec<&str> = choices.iter().map(|(id, _)| id.as_str()).collect();
            for chunk in wanted.chunks(ID_CHUNK) {
                known.extend(
                    image_selections::table
                        .filter(image_selections::subscription_id.eq(sub_id))
                        .filter(image_selections::identifier.eq_any(chunk))
                        .select(image_selections::identifier)
                        .load::<String>(conn)?,
                );
            }
            let mut added = Vec::new();
            for (id, selected) in choices {
                if !known.insert(id.as_str().to_owned()) {
                    continue;
                }
                diesel::insert_into(image_selections::table)
                    .values((
                        image_selections::subscription_id.eq(sub_id),
                        image_selections::identifier.eq(id.as_str()),
                        image_selections::selected.eq(*selected),
                        image_selections::first_seen.eq(&at),
                    ))
                    .execute(conn)?;
                added.push(id.clone());
            }
            if !added.is_empty() {
                tracing::info!(
                    subscription = sub_id,
                    images = added.len(),
                    "image selections recorded"
                );
            }
            Ok(added)
        })
    }

    /// The pending selections (selected image ids that the current list of their subscription
    /// does not name, or every selected id of a subscription without a list), of one
    /// subscription or all, sorted by subscription URL, then image id.
    pub fn pending_selections(
        &self,
        subscription_id: Option<i64>,
    ) -> Result<Vec<PendingSelection>, StoreError> {
        self.read(|conn| {
            let listed = images::table
                .filter(
                    images::list_version_id
                        .nullable()
                        .eq(subscriptions::current_version_id),
                )
                .filter(images::identifier.eq(image_selections::identifier));
            let mut query = image_selections::table
                .inner_join(
                    subscriptions::table
                        .on(subscriptions::id.eq(image_selections::subscription_id)),
                )
                .filter(image_selections::selected.eq(true))
                .filter(diesel::dsl::not(diesel::dsl::exists(listed)))
                .select((
                    subscriptions::id,
                    subscriptions::url,
                    subscriptions::list_identifier,
                    image_selections::identifier,
                    image_selections::first_seen,
                ))
                .order((subscriptions::url.asc(), image_selections::identifier.asc()))
                .into_boxed();
            if let Some(id) = subscription_id {
                query = query.filter(subscriptions::id.eq(id));
            }
            let rows: Vec<(i64, String, Option<String>, String, String)> = query.load(conn)?;
            rows.into_iter()
                .map(|(sub_id, url, list_identifier, identifier, since)| {
                    Ok(PendingSelection {
                        subscription_id: sub_id,
                        subscription_url: url,
                        list_identifier,
                        identifier: Identifier::new(identifier.clone()).map_err(|_| {
                            StoreError::Corrupt {
                                what: "image identifier",
                                value: identifier,
                            }
                        })?,
                        since: time::decode("selection time", &since)?,
                    })
                })
                .collect()
        })
    }
}

/// Every (identity id, subscription id) pair where the identity's endorser is linked to the
/// subscription: a version signed by that identity is endorsed for that subscription.
fn endorsing_pairs(conn: &mut AnyConnection) -> Result<HashSet<(i64, i64)>, StoreError> {
    Ok(identities::table
        .inner_join(
            endorser_links::table.on(endorser_links::endorser_id.eq(identities::endorser_id)),
        )
        .select((identities::id, endorser_links::subscription_id))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect())
}

fn cached_by_identifier(
    conn: &mut AnyConnection,
    node: &str,
) -> Result<HashMap<String, CacheEntry>, StoreError> {
    cache_entries::table
        .filter(cache_entries::state.eq(STATE_CACHED))
        .filter(cache_entries::node.eq(node))
        .select(CacheEntryRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|row| {
            let entry = row.into_cached()?;
            Ok((entry.identifier.as_str().to_owned(), entry))
        })
        .collect()
}
