//! Accepted list versions: importing one with its images, reading the current one, pruning
//! old ones.

use std::collections::HashSet;

use diesel::prelude::*;
use vmc_model::{Identifier, NewImagePolicy, Version};

use super::endorsers::identity_owner;
use crate::Store;
use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::rows::{
    ImageRow, NewImageRow, NewListVersionRow, NewSelectionRow, VersionInfoRow, size_to_db,
};
use crate::schema::{image_selections, images, list_versions, subscriptions};
use crate::time;
use crate::types::{ImportOutcome, ListImport, StoredList};

/// Identifiers per `IN (…)` list, and rows per multi-row INSERT (9 columns × 500 rows stays
/// far below SQLite's 32 766 and PostgreSQL's 65 535 bound values per statement).
const ID_CHUNK: usize = 500;

/// Runs one multi-row INSERT per chunk of `rows` on the backend's own connection: the query is
/// the same for both, but the `MultiConnection` backend does not offer SQLite's multi-row form,
/// and one statement per row costs a round trip per image on PostgreSQL. Each row is written
/// as plain `column = value` pairs (`$values`): the derived `Insertable` may stand for DEFAULT,
/// which SQLite's multi-row `VALUES` cannot say, so Diesel would insert those one statement
/// per row.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, |$row:ident| $values:expr) => {{
        for chunk in $rows.chunks(ID_CHUNK) {
            let values: Vec<_> = chunk.iter().map(|$row| $values).collect();
            match &mut *$conn {
                AnyConnection::Sqlite(c) => {
                    diesel::insert_into($table).values(values).execute(c)?;
                }
                #[cfg(feature = "postgres")]
                AnyConnection::Postgres(c) => {
                    diesel::insert_into($table).values(values).execute(c)?;
                }
            }
        }
        Ok::<(), StoreError>(())
    }};
}

fn insert_images(conn: &mut AnyConnection, rows: &[NewImageRow<'_>]) -> Result<(), StoreError> {
    insert_rows!(conn, images::table, rows, |r| (
        images::list_version_id.eq(r.list_version_id),
        images::identifier.eq(r.identifier),
        images::position.eq(r.position),
        images::title.eq(r.title),
        images::uri.eq(r.uri),
        images::size.eq(r.size),
        images::sha512.eq(r.sha512.as_str()),
        images::version.eq(r.version),
        images::extra.eq(r.extra.as_str()),
    ))
}

fn insert_selections(
    conn: &mut AnyConnection,
    rows: &[NewSelectionRow<'_>],
) -> Result<(), StoreError> {
    insert_rows!(conn, image_selections::table, rows, |r| (
        image_selections::subscription_id.eq(r.subscription_id),
        image_selections::identifier.eq(r.identifier),
        image_selections::selected.eq(r.selected),
        image_selections::first_seen.eq(r.first_seen),
    ))
}

impl Store {
    /// Stores a verified list version under subscription `id`, in one transaction: the
    /// version (raw bytes, digest, dates, signer), its images, selection rows for image ids
    /// the subscription never carried (selected when its policy is `subscribe`; with
    /// `select_all` every image of this list is selected), the subscription's list identifier
    /// and title, a cleared last error and the update time; then versions beyond
    /// [`Store::keep_versions`] are pruned (never the current one).
    ///
    /// The signer must be a stored identity ([`StoreError::NotFound`] otherwise); whether it
    /// may sign for this subscription is the caller's check. A list with another
    /// `dc:identifier` than the subscription's fails with [`StoreError::IdentifierMismatch`].
    ///
    /// When the subscription's current version already has `sha512`, or a higher version
    /// (another process sharing the database imported the same bytes, or a newer list, first),
    /// nothing is stored and the outcome says [`ImportOutcome::already_current`]; the check
    /// runs inside the transaction, after the subscription row is locked, so two concurrent
    /// imports of one version store it once and an older one never replaces a newer one.
    pub fn import_list(
        &self,
        id: i64,
        import: &ListImport<'_>,
    ) -> Result<ImportOutcome, StoreError> {
        self.import_version(id, import, Some(import.signer))
    }

    /// [`Store::import_list`]; `signer` is `None` for an OCI registry snapshot, which no
    /// certificate signs (its version then points at no identity).
    pub(crate) fn import_version(
        &self,
        id: i64,
        import: &ListImport<'_>,
        signer: Option<&vmc_model::CertIdentity>,
    ) -> Result<ImportOutcome, StoreError> {
        let list = import.list;
        let created = time::encode("list creation date", list.created)?;
        let expires = time::encode("list expiry date", list.expires)?;
        let imported = time::encode("list import time", import.imported)?;
        let mut image_rows = Vec::with_capacity(list.images.len());
        for (position, image) in list.images.iter().enumerate() {
            image_rows.push(NewImageRow {
                list_version_id: 0,
                identifier: image.identifier.as_str(),
                position: i64::try_from(position).map_err(|_| StoreError::OutOfRange {
                    what: "image position",
                    value: position.to_string(),
                })?,
                title: &image.title,
                uri: &image.uri,
                size: size_to_db("image size", image.size)?,
                sha512: image.sha512.to_ascii_lowercase(),
                version: &image.version,
                // A map of JSON values always serializes.
                extra: serde_json::to_string(&image.extra).unwrap_or_default(),
            });
        }
        let keep = self.keep_versions();
        let sha512 = import.sha512.to_ascii_lowercase();
        self.write(|conn| {
            // Two processes importing the same new version: the second sees the first's
            // commit here and stores nothing. SQLite's write transaction holds the lock from
            // its start; PostgreSQL locks the subscription row until the commit.
            #[cfg(feature = "postgres")]
            if let AnyConnection::Postgres(c) = &mut *conn {
                subscriptions::table
                    .find(id)
                    .select(subscriptions::id)
                    .for_update()
                    .load::<i64>(c)?;
            }
            if let Some(version_id) = superseding_current(conn, id, &sha512, &list.version)? {
                return Ok(ImportOutcome {
                    version_id,
                    new_images: Vec::new(),
                    already_current: true,
                });
            }
            let (policy, stored_identifier) = subscription_policy(conn, id)?;
            if let Some(expected) = stored_identifier
                && expected != list.identifier.as_str()
            {
                return Err(StoreError::IdentifierMismatch {
                    subscription: id,
                    expected,
                    found: list.identifier.as_str().to_owned(),
                });
            }
            let signer_id = match signer {
                None => None,
                Some(signer) => match identity_owner(conn, signer)? {
                    Some((signer_id, _)) => Some(signer_id),
                    None => {
                        return Err(StoreError::NotFound {
                            what: "signer identity",
                            key: format!("{} (issuer {})", signer.subject, signer.issuer),
                        });
                    }
                },
            };
            let version_id: i64 = diesel::insert_into(list_versions::table)
                .values(NewListVersionRow {
                    subscription_id: id,
                    signer_identity_id: signer_id,
                    signer_subject: &import.signer.subject,
                    signer_issuer: &import.signer.issuer,
                    list_identifier: list.identifier.as_str(),
                    title: &list.title,
                    vo: list.vo(),
                    version: list.version.as_str(),
                    created: created.clone(),
                    expires: expires.clone(),
                    imported: imported.clone(),
                    sha512: sha512.clone(),
                    raw: import.raw,
                })
                .returning(list_versions::id)
                .get_result(conn)?;
            for row in &mut image_rows {
                row.list_version_id = version_id;
            }
            insert_images(conn, &image_rows)?;

            let known: HashSet<String> = image_selections::table
                .filter(image_selections::subscription_id.eq(id))
                .select(image_selections::identifier)
                .load::<String>(conn)?
                .into_iter()
                .collect();
            let new_images: Vec<Identifier> = list
                .images
                .iter()
                .filter(|image| !known.contains(image.identifier.as_str()))
                .map(|image| image.identifier.clone())
                .collect();
            let selected = import.select_all || policy == NewImagePolicy::Subscribe;
            let selection_rows: Vec<NewSelectionRow<'_>> = new_images
                .iter()
                .map(|identifier| NewSelectionRow {
                    subscription_id: id,
                    identifier: identifier.as_str(),
                    selected,
                    first_seen: &imported,
                })
                .collect();
            insert_selections(conn, &selection_rows)?;
            if import.select_all {
                let ids: Vec<&str> = list.images.iter().map(|i| i.identifier.as_str()).collect();
                for chunk in ids.chunks(ID_CHUNK) {
                    diesel::update(
                        image_selections::table
                            .filter(image_selections::subscription_id.eq(id))
                            .filter(image_selections::identifier.eq_any(chunk)),
                    )
                    .set(image_selections::selected.eq(true))
                    .execute(conn)?;
                }
            }

            diesel::update(subscriptions::table.find(id))
                .set((
                    subscriptions::list_identifier.eq(Some(list.identifier.as_str())),
                    subscriptions::title.eq(Some(&list.title)),
                    subscriptions::current_version_id.eq(Some(version_id)),
                    subscriptions::last_error_code.eq(None::<String>),
                    subscriptions::last_error_message.eq(None::<String>),
                    subscriptions::updated.eq(Some(&imported)),
                ))
                .execute(conn)?;
            let pruned = prune(conn, id, version_id, keep)?;
            tracing::info!(
                subscription = id,
                version = version_id,
                list_version = list.version.as_str(),
                images = list.images.len(),
                new_images = new_images.len(),
                pruned,
                "list version imported"
            );
            Ok(ImportOutcome {
                version_id,
                new_images,
                already_current: false,
            })
        })
    }

    /// Subscription `id`'s current (newest accepted) list version with its images, exactly as
    /// imported; `None` before the first import.
    pub fn current_version(&self, id: i64) -> Result<Option<StoredList>, StoreError> {
        self.read(|conn| {
            let current = subscriptions::table
                .find(id)
                .select(subscriptions::current_version_id)
                .first::<Option<i64>>(conn)
                .optional()?;
            let version_id = match current {
                None => {
                    return Err(StoreError::NotFound {
                        what: "subscription",
                        key: id.to_string(),
                    });
                }
                Some(None) => return Ok(None),
                Some(Some(version_id)) => version_id,
            };
            let (info, raw, list_identifier, vo): (
                VersionInfoRow,
                Vec<u8>,
                String,
                Option<String>,
            ) = list_versions::table
                .find(version_id)
                .select((
                    VersionInfoRow::as_select(),
                    list_versions::raw,
                    list_versions::list_identifier,
                    list_versions::vo,
                ))
                .first(conn)?;
            let images = images::table
                .filter(images::list_version_id.eq(version_id))
                .order(images::position.asc())
                .select(ImageRow::as_select())
                .load(conn)?
                .into_iter()
                .map(ImageRow::into_model)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(StoredList {
                info: info.into_model()?,
                raw,
                images,
                list_identifier,
                vo,
            }))
        })
    }

    /// How many list versions subscription `id` keeps (at most [`Store::keep_versions`]).
    pub fn version_count(&self, id: i64) -> Result<usize, StoreError> {
        self.read(|conn| {
            super::require_subscription(conn, id)?;
            let count: i64 = list_versions::table
                .filter(list_versions::subscription_id.eq(id))
                .count()
                .get_result(conn)?;
            Ok(usize::try_from(count).unwrap_or(usize::MAX))
        })
    }
}

/// Subscription `id`'s current version, when it makes importing these bytes pointless: it
/// has their digest `sha512`, or a higher `hv:version` than `version` (another process
/// imported a newer list between this one's fetch and its import).
fn superseding_current(
    conn: &mut AnyConnection,
    id: i64,
    sha512: &str,
    version: &Version,
) -> Result<Option<i64>, StoreError> {
    let current: Option<(i64, String, String)> = subscriptions::table
        .inner_join(
            list_versions::table
                .on(subscriptions::current_version_id.eq(list_versions::id.nullable())),
        )
        .filter(subscriptions::id.eq(id))
        .select((
            list_versions::id,
            list_versions::sha512,
            list_versions::version,
        ))
        .first(conn)
        .optional()?;
    Ok(current
        .filter(|(_, digest, current)| digest == sha512 || Version::new(current) > *version)
        .map(|(version_id, _, _)| version_id))
}

/// The subscription's policy and list identifier.
fn subscription_policy(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<(NewImagePolicy, Option<String>), StoreError> {
    let row: Option<(String, Option<String>)> = subscriptions::table
        .find(id)
        .select((subscriptions::new_images, subscriptions::list_identifier))
        .first(conn)
        .optional()?;
    let Some((policy, identifier)) = row else {
        return Err(StoreError::NotFound {
            what: "subscription",
            key: id.to_string(),
        });
    };
    let policy = policy.parse().map_err(|_| StoreError::Corrupt {
        what: "new-image policy",
        value: policy.clone(),
    })?;
    Ok((policy, identifier))
}

/// Deletes subscription `id`'s versions beyond the newest `keep` (never `current`); returns
/// how many went.
fn prune(
    conn: &mut AnyConnection,
    id: i64,
    current: i64,
    keep: usize,
) -> Result<usize, StoreError> {
    let ids: Vec<i64> = list_versions::table
        .filter(list_versions::subscription_id.eq(id))
        .select(list_versions::id)
        .order(list_versions::id.desc())
        .load(conn)?;
    let old: Vec<i64> = ids
        .into_iter()
        .skip(keep.max(1))
        .filter(|v| *v != current)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(list_versions::table.filter(list_versions::id.eq_any(&old)))
            .execute(conn)?,
    )
}
