//! Publications: which cached file went into which cloud image service (a Glance), under which
//! remote id, and where it is in its life (uploading, active, deactivated, deleted).
//!
//! A claim is an insert guarded by a unique index over (target, identifier, sha512) for the
//! rows that are not `deleted`: of two nodes sharing the database, one gets the row and the
//! other sees `None`. Every later change names the token the caller last saw, so a node whose
//! claim was taken over (it was presumed dead) changes nothing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use vmc_model::Identifier;

use crate::Store;
use crate::error::{StoreError, is_unique_violation};
use crate::rows::identifier_from_db;
use crate::schema::publications;
use crate::time;

/// Where a publication is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PublicationState {
    /// Claimed by a node that creates the remote image and uploads the file.
    Uploading,
    /// The last attempt failed (see `last_error`); the next run tries again.
    Failed,
    /// Uploaded, its checksum checked, visible to users.
    Active,
    /// Hidden from listings and deactivated (superseded or expired); deleted after the grace
    /// time unless in use.
    Deactivated,
    /// Deleted from the image service (kept as history).
    Deleted,
}

impl PublicationState {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicationState::Uploading => "uploading",
            PublicationState::Failed => "failed",
            PublicationState::Active => "active",
            PublicationState::Deactivated => "deactivated",
            PublicationState::Deleted => "deleted",
        }
    }
}

impl fmt::Display for PublicationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PublicationState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "uploading" => PublicationState::Uploading,
            "failed" => PublicationState::Failed,
            "active" => PublicationState::Active,
            "deactivated" => PublicationState::Deactivated,
            "deleted" => PublicationState::Deleted,
            _ => return Err(()),
        })
    }
}

/// A publication as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its row id.
    pub id: i64,
    /// The image service it is published in (the site's name for a cloud and project).
    pub target: String,
    /// The image id.
    pub identifier: Identifier,
    /// vmc's sha512 of the cached image (lowercase hex).
    pub sha512: String,
    /// The image's `hv:version`.
    pub version: String,
    /// The URL of the list it came from.
    pub list_url: String,
    /// The disk format uploaded (`qcow2`, `raw`…).
    pub disk_format: String,
    /// The sha512 of the uploaded file (differs from `sha512` when converted).
    pub file_sha512: String,
    /// Where it is.
    pub state: PublicationState,
    /// The current claim's token (also a property of the remote image).
    pub token: String,
    /// The remote image's id, once created.
    pub remote_id: Option<String>,
    /// Who holds, or last held, the claim.
    pub claimed_by: String,
    /// When it became active.
    pub published_at: Option<DateTime<Utc>>,
    /// When its state last changed (for `uploading`: when it was claimed; for `deactivated`:
    /// when the grace time started).
    pub changed_at: DateTime<Utc>,
    /// Why it was deactivated (`superseded`, `expired`).
    pub reason: Option<String>,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A new claim (state `uploading`).
#[derive(Debug, Clone)]
pub struct NewPublication<'a> {
    /// See [`Publication::target`].
    pub target: &'a str,
    /// See [`Publication::identifier`].
    pub identifier: &'a Identifier,
    /// See [`Publication::sha512`].
    pub sha512: &'a str,
    /// See [`Publication::version`].
    pub version: &'a str,
    /// See [`Publication::list_url`].
    pub list_url: &'a str,
    /// See [`Publication::disk_format`].
    pub disk_format: &'a str,
    /// See [`Publication::file_sha512`].
    pub file_sha512: &'a str,
    /// See [`Publication::token`].
    pub token: &'a str,
    /// See [`Publication::claimed_by`].
    pub claimed_by: &'a str,
    /// When the claim is taken ([`Publication::changed_at`]).
    pub claimed_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = publications)]
struct PublicationRow {
    id: i64,
    target: String,
    identifier: String,
    sha512: String,
    version: String,
    list_url: String,
    disk_format: String,
    file_sha512: String,
    state: String,
    token: String,
    remote_id: Option<String>,
    claimed_by: String,
    published_at: Option<String>,
    changed_at: String,
    reason: Option<String>,
    last_error: Option<String>,
}

impl PublicationRow {
    fn into_model(self) -> Result<Publication, StoreError> {
        Ok(Publication {
            id: self.id,
            target: self.target,
            identifier: identifier_from_db(self.identifier)?,
            sha512: self.sha512,
            version: self.version,
            list_url: self.list_url,
            disk_format: self.disk_format,
            file_sha512: self.file_sha512,
            state: self.state.parse().map_err(|()| StoreError::Corrupt {
                what: "publication state",
                value: self.state.clone(),
            })?,
            token: self.token,
            remote_id: self.remote_id,
            claimed_by: self.claimed_by,
            published_at: time::decode_opt("publication time", self.published_at.as_deref())?,
            changed_at: time::decode("publication change time", &self.changed_at)?,
            reason: self.reason,
            last_error: self.last_error,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = publications)]
struct NewPublicationRow<'a> {
    target: &'a str,
    identifier: &'a str,
    sha512: String,
    version: &'a str,
    list_url: &'a str,
    disk_format: &'a str,
    file_sha512: String,
    state: &'static str,
    token: &'a str,
    claimed_by: &'a str,
    changed_at: String,
}

#[derive(AsChangeset)]
#[diesel(table_name = publications, treat_none_as_null = true)]
struct PublicationChange<'a> {
    version: &'a str,
    list_url: &'a str,
    disk_format: &'a str,
    file_sha512: &'a str,
    state: &'static str,
    token: &'a str,
    remote_id: Option<&'a str>,
    claimed_by: &'a str,
    published_at: Option<String>,
    changed_at: String,
    reason: Option<&'a str>,
    last_error: Option<&'a str>,
}

impl Store {
    /// The publications (of one target, or of all), oldest first.
    pub fn publications(&self, target: Option<&str>) -> Result<Vec<Publication>, StoreError> {
        self.read(|conn| {
            let mut query = publications::table
                .select(PublicationRow::as_select())
                .order(publications::id.asc())
                .into_boxed();
            if let Some(target) = target {
                query = query.filter(publications::target.eq(target.to_owned()));
            }
            query
                .load(conn)?
                .into_iter()
                .map(PublicationRow::into_model)
                .collect()
        })
    }

    /// Claims the publication of a file: inserts it as `uploading`. `None` when a row for the
    /// same target, image id and sha512 exists that is not `deleted` (another run has it).
    pub fn claim_publication(
        &self,
        new: &NewPublication<'_>,
    ) -> Result<Option<Publication>, StoreError> {
        let row = NewPublicationRow {
            target: new.target,
            identifier: new.identifier.as_str(),
            sha512: new.sha512.to_ascii_lowercase(),
            version: new.version,
            list_url: new.list_url,
            disk_format: new.disk_format,
            file_sha512: new.file_sha512.to_ascii_lowercase(),
            state: PublicationState::Uploading.as_str(),
            token: new.token,
            claimed_by: new.claimed_by,
            changed_at: time::encode("publication change time", new.claimed_at)?,
        };
        let inserted = self.write(|conn| {
            diesel::insert_into(publications::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict {
                            what: "publication",
                            key: format!("{} {}", new.target, new.identifier),
                        }
                    } else {
                        StoreError::from(e)
                    }
                })?;
            // The token is unique: it names the row just inserted.
            Ok(publications::table
                .filter(publications::token.eq(new.token))
                .select(PublicationRow::as_select())
                .first(conn)?)
        });
        match inserted {
            Ok(row) => row.into_model().map(Some),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `publication`'s changeable fields (everything but its target, image id and
    /// sha512), provided its stored token is still `expected_token`. Returns whether it was
    /// written (`false`: another run has taken the claim over since).
    pub fn save_publication(
        &self,
        expected_token: &str,
        publication: &Publication,
    ) -> Result<bool, StoreError> {
        let p = publication;
        let change = PublicationChange {
            version: &p.version,
            list_url: &p.list_url,
            disk_format: &p.disk_format,
            file_sha512: &p.file_sha512,
            state: p.state.as_str(),
            token: &p.token,
            remote_id: p.remote_id.as_deref(),
            claimed_by: &p.claimed_by,
            published_at: p
                .published_at
                .map(|t| time::encode("publication time", t))
                .transpose()?,
            changed_at: time::encode("publication change time", p.changed_at)?,
            reason: p.reason.as_deref(),
            last_error: p.last_error.as_deref(),
        };
        let rows = self.write(|conn| {
            Ok(diesel::update(
                publications::table
                    .filter(publications::id.eq(p.id))
                    .filter(publications::token.eq(expected_token)),
            )
            .set(&change)
            .execute(conn)?)
        })?;
        Ok(rows == 1)
    }
}
