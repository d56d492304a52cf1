//! The cache's files: entering it, found missing from it, leaving it for the expired
//! directory, being purged. A record is `cached`, `missing` (the file was found gone; at most
//! one cached-or-missing record per image id) or `expired` (history of a file in the expired
//! directory, always with its file name).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use vmc_model::{ExpiryReason, Identifier};

use crate::Store;
use crate::conn::AnyConnection;
use crate::error::{StoreError, is_unique_violation};
use crate::repo::events::insert_announcement;
use crate::rows::{
    CacheEntryRow, NewCacheEntryRow, STATE_CACHED, STATE_EXPIRED, STATE_MISSING, size_to_db,
};
use crate::schema::cache_entries;
use crate::schema::nodes;
use crate::time;
use crate::types::{Announcement, CacheEntry, ExpiredEntry, MissingEntry, PeerCopy};

/// The partial unique index `cache_entries_one_cached` covers these states.
const CURRENT_STATES: [&str; 2] = [STATE_CACHED, STATE_MISSING];

/// PostgreSQL: the upsert of a cached record. The conflict target names the partial unique
/// index by its predicate, written literally (a bound parameter would not let PostgreSQL
/// infer the index); a concurrent writer's row is overwritten instead of failing.
#[cfg(feature = "postgres")]
fn upsert_cached_pg(
    conn: &mut diesel::PgConnection,
    row: &NewCacheEntryRow<'_>,
) -> Result<(), StoreError> {
    use diesel::upsert::{DecoratableTarget, excluded};
    diesel::insert_into(cache_entries::table)
        .values(row)
        .on_conflict((cache_entries::node, cache_entries::identifier))
        .filter_target(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "state IN ('cached', 'missing')",
        ))
        .do_update()
        .set((
            cache_entries::state.eq(excluded(cache_entries::state)),
            cache_entries::filename.eq(excluded(cache_entries::filename)),
            cache_entries::size.eq(excluded(cache_entries::size)),
            cache_entries::sha512.eq(excluded(cache_entries::sha512)),
            cache_entries::subscription_id.eq(excluded(cache_entries::subscription_id)),
            cache_entries::list_version_id.eq(excluded(cache_entries::list_version_id)),
            cache_entries::cached_at.eq(excluded(cache_entries::cached_at)),
            cache_entries::missing_since.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Writes `row` as image `row.identifier`'s record in node `node`'s cache, replacing its
/// cached or missing record: on PostgreSQL an upsert on the partial unique index; on SQLite a
/// delete and an insert, which the write transaction (held from its start) keeps together.
fn replace_current(
    conn: &mut AnyConnection,
    node: &str,
    row: &NewCacheEntryRow<'_>,
) -> Result<(), StoreError> {
    #[cfg(feature = "postgres")]
    if let AnyConnection::Postgres(c) = conn {
        return upsert_cached_pg(c, row);
    }
    diesel::delete(
        cache_entries::table
            .filter(cache_entries::node.eq(node))
            .filter(cache_entries::state.eq_any(CURRENT_STATES))
            .filter(cache_entries::identifier.eq(row.identifier)),
    )
    .execute(conn)?;
    diesel::insert_into(cache_entries::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The record of image `identifier` in `state` in node `node`'s cache.
type RecordIn<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Filter<cache_entries::table, diesel::dsl::Eq<cache_entries::node, &'a str>>,
        diesel::dsl::Eq<cache_entries::state, &'a str>,
    >,
    diesel::dsl::Eq<cache_entries::identifier, &'a str>,
>;

/// The record of image `identifier` in `state` in node `node`'s cache, to update or delete.
fn record_in<'a>(node: &'a str, state: &'a str, identifier: &'a Identifier) -> RecordIn<'a> {
    cache_entries::table
        .filter(cache_entries::node.eq(node))
        .filter(cache_entries::state.eq(state))
        .filter(cache_entries::identifier.eq(identifier.as_str()))
}

/// The stored expiry time, once `expired_file` is known to name a file.
fn expiry_time(
    identifier: &Identifier,
    expired_file: &str,
    at: DateTime<Utc>,
) -> Result<String, StoreError> {
    if expired_file.is_empty() {
        return Err(StoreError::EmptyExpiredFile {
            identifier: identifier.to_string(),
        });
    }
    time::encode("expiry time", at)
}

/// A unique violation on the expired file name as [`StoreError::Conflict`].
fn expired_file_conflict(e: diesel::result::Error, expired_file: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict {
            what: "expired file",
            key: expired_file.to_owned(),
        }
    } else {
        e.into()
    }
}

impl Store {
    /// The records in `state`, sorted by image id, each converted by `convert`.
    fn entries_in<T>(
        &self,
        state: &str,
        convert: fn(CacheEntryRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.read(|conn| {
            cache_entries::table
                .filter(cache_entries::node.eq(&self.cache_node))
                .filter(cache_entries::state.eq(state))
                .select(CacheEntryRow::as_select())
                .order(cache_entries::identifier.asc())
                .load(conn)?
                .into_iter()
                .map(convert)
                .collect()
        })
    }

    /// The files in the cache, sorted by image id.
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.entries_in(STATE_CACHED, CacheEntryRow::into_cached)
    }

    /// Whether image `identifier` has a file in the cache (one count, not the whole table).
    pub fn is_cached(&self, identifier: &Identifier) -> Result<bool, StoreError> {
        self.read(|conn| {
            let count: i64 = record_in(&self.cache_node, STATE_CACHED, identifier)
                .count()
                .get_result(conn)?;
            Ok(count > 0)
        })
    }

    /// The cached files found gone from the cache directory, sorted by image id.
    pub fn missing_entries(&self) -> Result<Vec<MissingEntry>, StoreError> {
        self.entries_in(STATE_MISSING, CacheEntryRow::into_missing)
    }

    /// Records a file entering the cache, replacing the cached or missing record of the same
    /// image id (one transaction). Conflict-safe: two processes recording the same image at
    /// the same time both succeed and one record remains (on PostgreSQL an upsert on the
    /// partial unique index; on SQLite the transaction holds the write lock from its start,
    /// so nothing comes between the delete and the insert).
    pub fn record_cached(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        self.record_cached_and_announce(entry, None).map(drop)
    }

    /// [`Store::record_cached`], writing `announce` (its `AvailablePostfix`) to the event
    /// outbox in the same transaction; returns the outbox id. A crash after the commit leaves
    /// the event for the next run to deliver; a crash before it leaves neither.
    pub fn record_cached_and_announce(
        &self,
        entry: &CacheEntry,
        announce: Option<&Announcement>,
    ) -> Result<Option<i64>, StoreError> {
        let row = NewCacheEntryRow {
            node: &self.cache_node,
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
            replace_current(conn, &self.cache_node, &row)?;
            announce
                .map(|event| insert_announcement(conn, event))
                .transpose()
        })
    }

    /// Records that the cached file of `identifier` is gone from the cache directory (state
    /// `missing`, since `at`); says whether a cached record changed. Idempotent: a record that
    /// is already missing, or no record at all (another process got there first), is `false`.
    pub fn record_missing(
        &self,
        identifier: &Identifier,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = time::encode("missing-since time", at)?;
        self.write(|conn| {
            let rows = diesel::update(record_in(&self.cache_node, STATE_CACHED, identifier))
                .set((
                    cache_entries::state.eq(STATE_MISSING),
                    cache_entries::missing_since.eq(Some(&at)),
                ))
                .execute(conn)?;
            Ok(rows > 0)
        })
    }

    /// Forgets the missing record of `identifier` (its image is no longer wanted, and there is
    /// no file to move); says whether there was one.
    pub fn forget_missing(&self, identifier: &Identifier) -> Result<bool, StoreError> {
        self.write(|conn| {
            let rows = diesel::delete(record_in(&self.cache_node, STATE_MISSING, identifier))
                .execute(conn)?;
            Ok(rows > 0)
        })
    }

    /// Records the cached file of `identifier` moving to the expired directory as
    /// `expired_file`, with the reason and time; the record stays as history until
    /// [`Store::forget_expired`].
    ///
    /// Fails with [`StoreError::NotFound`] when no file of that id is cached, with
    /// [`StoreError::Conflict`] when `expired_file` names another expired record, and with
    /// [`StoreError::EmptyExpiredFile`] when `expired_file` is empty (a file that is gone is
    /// [`Store::record_missing`], not an expiry).
    pub fn record_expired(
        &self,
        identifier: &Identifier,
        reason: ExpiryReason,
        expired_file: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record_expired_and_announce(identifier, reason, expired_file, at, None)
            .map(drop)
    }

    /// [`Store::record_expired`], writing `announce` (its `ExpirePostfix`) to the event outbox
    /// in the same transaction; returns the outbox id.
    pub fn record_expired_and_announce(
        &self,
        identifier: &Identifier,
        reason: ExpiryReason,
        expired_file: &str,
        at: DateTime<Utc>,
        announce: Option<&Announcement>,
    ) -> Result<Option<i64>, StoreError> {
        let at = expiry_time(identifier, expired_file, at)?;
        self.write(|conn| {
            let rows = diesel::update(record_in(&self.cache_node, STATE_CACHED, identifier))
                .set((
                    cache_entries::state.eq(STATE_EXPIRED),
                    cache_entries::expired_at.eq(Some(&at)),
                    cache_entries::expiry_reason.eq(Some(reason.as_str())),
                    cache_entries::expired_file.eq(Some(expired_file)),
                ))
                .execute(conn)
                .map_err(|e| expired_file_conflict(e, expired_file))?;
            super::require_touched(rows, "cached image", identifier)?;
            announce
                .map(|event| insert_announcement(conn, event))
                .transpose()
        })
    }

    /// Records a file moved to the expired directory as `expired_file` whose cached record is
    /// no longer there to update (another process sharing the database expired or replaced it
    /// first): a new expired record from `entry`, so that `cache purge` finds the file.
    ///
    /// Fails like [`Store::record_expired`] on an empty or taken `expired_file`.
    pub fn add_expired(
        &self,
        entry: &CacheEntry,
        reason: ExpiryReason,
        expired_file: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.add_expired_and_announce(entry, reason, expired_file, at, None)
            .map(drop)
    }

    /// [`Store::add_expired`], writing `announce` to the event outbox in the same transaction.
    pub fn add_expired_and_announce(
        &self,
        entry: &CacheEntry,
        reason: ExpiryReason,
        expired_file: &str,
        at: DateTime<Utc>,
        announce: Option<&Announcement>,
    ) -> Result<Option<i64>, StoreError> {
        let at = expiry_time(&entry.identifier, expired_file, at)?;
        let cached_at = time::encode("cache time", entry.cached_at)?;
        let size = size_to_db("cached file size", entry.size)?;
        self.write(|conn| {
            diesel::insert_into(cache_entries::table)
                .values((
                    cache_entries::node.eq(&self.cache_node),
                    cache_entries::identifier.eq(entry.identifier.as_str()),
                    cache_entries::state.eq(STATE_EXPIRED),
                    cache_entries::filename.eq(&entry.filename),
                    cache_entries::size.eq(size),
                    cache_entries::sha512.eq(entry.sha512.to_ascii_lowercase()),
                    cache_entries::subscription_id.eq(entry.subscription_id),
                    cache_entries::list_version_id.eq(entry.list_version_id),
                    cache_entries::cached_at.eq(&cached_at),
                    cache_entries::expired_at.eq(Some(&at)),
                    cache_entries::expiry_reason.eq(Some(reason.as_str())),
                    cache_entries::expired_file.eq(Some(expired_file)),
                ))
                .execute(conn)
                .map_err(|e| expired_file_conflict(e, expired_file))?;
            announce
                .map(|event| insert_announcement(conn, event))
                .transpose()
        })
    }

    /// The files in the expired directory, oldest expiry first.
    pub fn expired_entries(&self) -> Result<Vec<ExpiredEntry>, StoreError> {
        self.read(|conn| {
            cache_entries::table
                .filter(cache_entries::node.eq(&self.cache_node))
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
                    .filter(cache_entries::node.eq(&self.cache_node))
                    .filter(cache_entries::state.eq(STATE_EXPIRED))
                    .filter(cache_entries::expired_file.eq(expired_file)),
            )
            .execute(conn)?;
            Ok(())
        })
    }
}

impl Store {
    /// The cached copies of image `identifier` in the caches of other nodes (per-node caches),
    /// with where each node serves its cache and when it last beat; the copy's own checksum
    /// and size are in its record.
    pub fn peer_copies(&self, identifier: &Identifier) -> Result<Vec<PeerCopy>, StoreError> {
        self.read(|conn| {
            let rows: Vec<(String, CacheEntryRow)> = cache_entries::table
                .filter(cache_entries::state.eq(STATE_CACHED))
                .filter(cache_entries::identifier.eq(identifier.as_str()))
                .filter(cache_entries::node.ne(&self.cache_node))
                .filter(cache_entries::node.ne(""))
                .select((cache_entries::node, CacheEntryRow::as_select()))
                .order(cache_entries::node.asc())
                .load(conn)?;
            rows.into_iter()
                .map(|(node, row)| {
                    let seen: Option<(Option<String>, String)> = nodes::table
                        .find(&node)
                        .select((nodes::url, nodes::last_seen))
                        .first(conn)
                        .optional()?;
                    let (url, last_seen) = match seen {
                        Some((url, seen)) => (url, Some(time::decode("node heartbeat", &seen)?)),
                        None => (None, None),
                    };
                    Ok(PeerCopy {
                        node,
                        url,
                        last_seen,
                        entry: row.into_cached()?,
                    })
                })
                .collect()
        })
    }
}
