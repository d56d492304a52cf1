//! The repository operations of [`crate::Store`], one module per area, and the lookups they
//! share.

mod cache;
mod endorsers;
mod events;
mod images;
mod lists;
mod nodes;
mod oci;
pub(crate) mod publications;

pub use oci::OciImport;
mod subscriptions;

use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::schema::subscriptions as subscriptions_table;

/// Fails with `NotFound` unless subscription `id` exists.
fn require_subscription(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    let found = subscriptions_table::table
        .find(id)
        .select(subscriptions_table::id)
        .first::<i64>(conn)
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound {
            what: "subscription",
            key: id.to_string(),
        }),
    }
}

/// Fails with `NotFound` when an UPDATE or DELETE of subscription `id` touched no row.
fn require_touched(rows: usize, what: &'static str, key: impl ToString) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound {
            what,
            key: key.to_string(),
        })
    } else {
        Ok(())
    }
}
