//! The cache's files: entering it, leaving it for the expired directory, being purged.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use vmc_model::{ExpiryReason, Identifier};

use crate::Store;
use crate::error::{StoreError, is_unique_violation};
use crate::rows::{CacheEntryRow, NewCacheEntryRow, STATE_CACHED, STATE_EXPIRED, size_to_db};
use crate::schema::cache_entries;
use crate::time;
use crate::types::{CacheEntry, ExpiredEntry};

impl Store {
    /// The files in the cache, sorted by image id.
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.read(|conn| {
            cache_entries::table
                .filter(cache_entries::state.eq(STATE_CACHED))
                .select(CacheEntryRow::as_select())
                .order(cache_entries::identifier.asc())
                .load(conn)?
                .into_iter()
                .map(CacheEntryRow::into_cached)
                .collect()
        })
    }

    /// Records a file entering the cache, replacing the record of an older cached file of the
    /// same image id (one transaction).
    pub fn record_cached(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        let row = NewCacheEntryRow {
            identifier: entry.identifier.as_str(),
            state: STATE_CACHED,
            filename: &entry.filename,
            size: size_to_db("cached file size", entry.size)?,
            sha512: entry.sha512.to_ascii_lowercase(),
            subscription_id: entry.subscription_id,
            list_version_id: entry.list_version_id,
            cached_at: time::encode("cache time", entry.cached_at)?,
        };
        self.write(|conn| {
            diesel::delete(
                cache_entries::table
                    .filter(cache_entries::state.eq(STATE_CACHED))
                    .filter(cache_entries::identifier.eq(entry.identifier.as_str())),
            )
            .execute(conn)?;
            diesel::insert_into(cache_entries::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        })
    }

    /// Records the cached file of `identifier` moving to the expired directory as
    /// `expired_file`, with the reason and time; the record stays as history until
    /// [`Store::forget_expired`].
    ///
    /// Fails with [`StoreError::NotFound`] when no file of that id is cached, and with
    /// [`StoreError::Conflict`] when `expired_file` names another expired record.
    pub fn record_expired(
        &self,
        identifier: &Identifier,
        reason: ExpiryReason,
        expired_file: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = time::encode("expiry time", at)?;
        self.write(|conn| {
            let rows = diesel::update(
                cache_entries::table
                    .filter(cache_entries::state.eq(STATE_CACHED))
                    .filter(cache_entries::identifier.eq(identifier.as_str())),
            )
            .set((
                cache_entries::state.eq(STATE_EXPIRED),
                cache_entries::expired_at.eq(Some(&at)),
                cache_entries::expiry_reason.eq(Some(reason.as_str())),
                cache_entries::expired_file.eq(Some(expired_file)),
            ))
            .execute(conn)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict {
                        what: "expired file",
                        key: expired_file.to_owned(),
                    }
                } else {
                    e.into()
                }
            })?;
            super::require_touched(rows, "cached image", identifier)
        })
    }

    /// The files in the expired directory, oldest expiry first.
    pub fn expired_entries(&self) -> Result<Vec<ExpiredEntry>, StoreError> {
        self.read(|conn| {
            cache_entries::table
                .filter(cache_entries::state.eq(STATE_EXPIRED))
                .select(CacheEntryRow::as_select())
                .order((cache_entries::expired_at.asc(), cache_entries::id.asc()))
                .load(conn)?
                .into_iter()
                .map(CacheEntryRow::into_expired)
                .collect()
        })
    }

    /// Forgets the expired record of `expired_file` once the file is purged (nothing happens
    /// when there is none).
    pub fn forget_expired(&self, expired_file: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::delete(
                cache_entries::table
                    .filter(cache_entries::state.eq(STATE_EXPIRED))
                    .filter(cache_entries::expired_file.eq(expired_file)),
            )
            .execute(conn)?;
            Ok(())
        })
    }
}
