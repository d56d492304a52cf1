//! The images of the current list versions, and which of them are selected for caching.

use std::collections::{HashMap, HashSet};

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
use crate::types::{CacheEntry, ImageFilter, ImageRecord};

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
            let cached = cached_by_identifier(conn)?;
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
                    ) = row;
                    let image = image.into_model()?;
                    // An image id in two subscriptions shares its one cached file.
                    let cached = cached.get(image.identifier.as_str()).cloned();
                    Ok(ImageRecord {
                        endorsed: signer.is_some_and(|s| endorsing.contains(&(s, sub_id))),
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
                    })
                })
                .collect()
        })
    }

    /// Selects (or deselects) the images with these ids, in every subscription that carries
    /// them. Returns how many selections changed (already selected ones do not count).
    ///
    /// Fails with [`StoreError::NotFound`], changing nothing, when an id is not an image of
    /// any current list.
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
) -> Result<HashMap<String, CacheEntry>, StoreError> {
    cache_entries::table
        .filter(cache_entries::state.eq(STATE_CACHED))
        .select(CacheEntryRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|row| {
            let entry = row.into_cached()?;
            Ok((entry.identifier.as_str().to_owned(), entry))
        })
        .collect()
}
