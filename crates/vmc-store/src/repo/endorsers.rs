//! Endorsers, their certificate identities, and their links to subscriptions.

use std::collections::BTreeMap;

use diesel::prelude::*;
use vmc_model::{CertIdentity, Endorser};

use super::{require_subscription, require_touched};
use crate::Store;
use crate::conn::AnyConnection;
use crate::error::{StoreError, is_unique_violation};
use crate::rows::{NewIdentityRow, NewLinkRow};
use crate::schema::{endorser_links, endorsers, identities, list_versions, subscriptions};

impl Store {
    /// Creates endorser `id` holding `identities` (duplicates are stored once).
    ///
    /// Fails with [`StoreError::Conflict`] when `id` exists and with
    /// [`StoreError::IdentityTaken`] when an identity belongs to another endorser; nothing is
    /// stored then.
    pub fn add_endorser(
        &self,
        id: &str,
        identities: &[CertIdentity],
    ) -> Result<Endorser, StoreError> {
        self.write(|conn| {
            if endorser_exists(conn, id)? {
                return Err(StoreError::Conflict {
                    what: "endorser",
                    key: id.to_owned(),
                });
            }
            diesel::insert_into(endorsers::table)
                .values(endorsers::id.eq(id))
                .execute(conn)
                .map_err(|e| conflict_or(e, "endorser", id))?;
            for identity in identities {
                attach_identity(conn, id, identity)?;
            }
            load_endorser(conn, id)?.ok_or_else(|| not_found(id))
        })
    }

    /// Adds a certificate identity to endorser `endorser_id` (nothing happens when it holds it
    /// already).
    ///
    /// Fails with [`StoreError::NotFound`] for an unknown endorser and with
    /// [`StoreError::IdentityTaken`] when another endorser holds the identity.
    pub fn add_identity(
        &self,
        endorser_id: &str,
        identity: &CertIdentity,
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            if !endorser_exists(conn, endorser_id)? {
                return Err(not_found(endorser_id));
            }
            attach_identity(conn, endorser_id, identity)
        })
    }

    /// Every endorser, sorted by id, with its identities (in the order they were added) and
    /// the URLs of the subscriptions it is linked to (sorted).
    pub fn endorsers(&self) -> Result<Vec<Endorser>, StoreError> {
        self.read(|conn| {
            let ids: Vec<String> = endorsers::table
                .select(endorsers::id)
                .order(endorsers::id.asc())
                .load(conn)?;
            let mut by_id: BTreeMap<String, Endorser> = ids
                .into_iter()
                .map(|id| {
                    let endorser = Endorser {
                        id: id.clone(),
                        identities: Vec::new(),
                        subscriptions: Vec::new(),
                    };
                    (id, endorser)
                })
                .collect();
            let held: Vec<(String, String, String)> = identities::table
                .select((
                    identities::endorser_id,
                    identities::subject,
                    identities::issuer,
                ))
                .order(identities::id.asc())
                .load(conn)?;
            for (endorser_id, subject, issuer) in held {
                if let Some(e) = by_id.get_mut(&endorser_id) {
                    e.identities.push(CertIdentity { subject, issuer });
                }
            }
            let links: Vec<(String, String)> = endorser_links::table
                .inner_join(
                    subscriptions::table.on(subscriptions::id.eq(endorser_links::subscription_id)),
                )
                .select((endorser_links::endorser_id, subscriptions::url))
                .order(subscriptions::url.asc())
                .load(conn)?;
            for (endorser_id, url) in links {
                if let Some(e) = by_id.get_mut(&endorser_id) {
                    e.subscriptions.push(url);
                }
            }
            Ok(by_id.into_values().collect())
        })
    }

    /// The endorser with id `key`, else the one holding an identity with subject DN `key`.
    ///
    /// Fails with [`StoreError::Ambiguous`] when several endorsers hold that subject (under
    /// different issuers).
    pub fn find_endorser(&self, key: &str) -> Result<Option<Endorser>, StoreError> {
        self.read(|conn| {
            if let Some(endorser) = load_endorser(conn, key)? {
                return Ok(Some(endorser));
            }
            let mut owners: Vec<String> = identities::table
                .filter(identities::subject.eq(key))
                .select(identities::endorser_id)
                .order(identities::endorser_id.asc())
                .load(conn)?;
            owners.dedup();
            match owners.as_slice() {
                [] => Ok(None),
                [one] => load_endorser(conn, one),
                _ => Err(StoreError::Ambiguous {
                    what: "endorser subject",
                    key: key.to_owned(),
                    candidates: owners,
                }),
            }
        })
    }

    /// The endorser holding exactly this (subject, issuer) identity.
    pub fn endorser_by_identity(
        &self,
        identity: &CertIdentity,
    ) -> Result<Option<Endorser>, StoreError> {
        self.read(|conn| match identity_owner(conn, identity)? {
            Some((_, owner)) => load_endorser(conn, &owner),
            None => Ok(None),
        })
    }

    /// Removes endorser `id` with its identities and links: list versions its identities
    /// signed endorse nothing any more.
    pub fn remove_endorser(&self, id: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            let rows = diesel::delete(endorsers::table.find(id)).execute(conn)?;
            require_touched(rows, "endorser", id)?;
            tracing::info!(endorser = id, "endorser removed");
            Ok(())
        })
    }

    /// Lets endorser `endorser_id` sign for subscription `subscription_id` (nothing happens
    /// when it may already).
    pub fn link(&self, endorser_id: &str, subscription_id: i64) -> Result<(), StoreError> {
        self.write(|conn| {
            if !endorser_exists(conn, endorser_id)? {
                return Err(not_found(endorser_id));
            }
            require_subscription(conn, subscription_id)?;
            let linked = endorser_links::table
                .find((endorser_id, subscription_id))
                .select(endorser_links::subscription_id)
                .first::<i64>(conn)
                .optional()?;
            if linked.is_none() {
                diesel::insert_into(endorser_links::table)
                    .values(NewLinkRow {
                        endorser_id,
                        subscription_id,
                    })
                    .execute(conn)?;
            }
            Ok(())
        })
    }

    /// Withdraws endorser `endorser_id`'s endorsement of subscription `subscription_id`
    /// (nothing happens when they are not linked).
    pub fn unlink(&self, endorser_id: &str, subscription_id: i64) -> Result<(), StoreError> {
        self.write(|conn| {
            if !endorser_exists(conn, endorser_id)? {
                return Err(not_found(endorser_id));
            }
            require_subscription(conn, subscription_id)?;
            diesel::delete(endorser_links::table.find((endorser_id, subscription_id)))
                .execute(conn)?;
            Ok(())
        })
    }

    /// The id of the endorser that holds exactly this (subject, issuer) identity, if that
    /// endorser is linked to subscription `subscription_id`; `None` otherwise.
    pub fn linked_endorser_for(
        &self,
        subscription_id: i64,
        identity: &CertIdentity,
    ) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(identities::table
                .inner_join(
                    endorser_links::table
                        .on(endorser_links::endorser_id.eq(identities::endorser_id)),
                )
                .filter(identities::subject.eq(&identity.subject))
                .filter(identities::issuer.eq(&identity.issuer))
                .filter(endorser_links::subscription_id.eq(subscription_id))
                .select(identities::endorser_id)
                .first::<String>(conn)
                .optional()?)
        })
    }
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "endorser",
        key: id.to_owned(),
    }
}

fn conflict_or(e: diesel::result::Error, what: &'static str, key: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict {
            what,
            key: key.to_owned(),
        }
    } else {
        e.into()
    }
}

fn endorser_exists(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    Ok(endorsers::table
        .find(id)
        .select(endorsers::id)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

/// The identity's row id and owner.
pub(super) fn identity_owner(
    conn: &mut AnyConnection,
    identity: &CertIdentity,
) -> Result<Option<(i64, String)>, StoreError> {
    Ok(identities::table
        .filter(identities::subject.eq(&identity.subject))
        .filter(identities::issuer.eq(&identity.issuer))
        .select((identities::id, identities::endorser_id))
        .first(conn)
        .optional()?)
}

/// Gives `identity` to `endorser_id` unless it holds it; refuses one held by another.
fn attach_identity(
    conn: &mut AnyConnection,
    endorser_id: &str,
    identity: &CertIdentity,
) -> Result<(), StoreError> {
    match identity_owner(conn, identity)? {
        Some((_, owner)) if owner == endorser_id => Ok(()),
        Some((_, owner)) => Err(StoreError::IdentityTaken {
            subject: identity.subject.clone(),
            issuer: identity.issuer.clone(),
            endorser: owner,
        }),
        None => {
            let id: i64 = diesel::insert_into(identities::table)
                .values(NewIdentityRow {
                    endorser_id,
                    subject: &identity.subject,
                    issuer: &identity.issuer,
                })
                .returning(identities::id)
                .get_result(conn)?;
            // Versions signed by this exact (subject, issuer) while no endorser held it point
            // at no identity; they now belong to this one (and endorse what it is linked to).
            diesel::update(
                list_versions::table
                    .filter(list_versions::signer_identity_id.is_null())
                    .filter(list_versions::signer_subject.eq(&identity.subject))
                    .filter(list_versions::signer_issuer.eq(&identity.issuer)),
            )
            .set(list_versions::signer_identity_id.eq(Some(id)))
            .execute(conn)?;
            Ok(())
        }
    }
}

/// Endorser `id` with its identities and linked subscription URLs.
fn load_endorser(conn: &mut AnyConnection, id: &str) -> Result<Option<Endorser>, StoreError> {
    if !endorser_exists(conn, id)? {
        return Ok(None);
    }
    let identities = identities::table
        .filter(identities::endorser_id.eq(id))
        .select((identities::subject, identities::issuer))
        .order(identities::id.asc())
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(|(subject, issuer)| CertIdentity { subject, issuer })
        .collect();
    let subscriptions = endorser_links::table
        .inner_join(subscriptions::table.on(subscriptions::id.eq(endorser_links::subscription_id)))
        .filter(endorser_links::endorser_id.eq(id))
        .select(subscriptions::url)
        .order(subscriptions::url.asc())
        .load::<String>(conn)?;
    Ok(Some(Endorser {
        id: id.to_owned(),
        identities,
        subscriptions,
    }))
}
