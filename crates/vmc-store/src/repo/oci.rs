//! OCI registry subscriptions: storing a registry snapshot as a version of the subscription,
//! and which of its images the site's allow rule endorses now.

use std::collections::HashMap;

use diesel::prelude::*;
use vmc_model::oci::{AllowRule, Reference};
use vmc_model::{CertIdentity, ImageList};

use super::subscriptions::KIND_OCI;
use crate::Store;
use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::schema::subscriptions;
use crate::types::{ImportOutcome, ListImport};

/// A registry snapshot to store as a version of an OCI subscription.
#[derive(Debug, Clone, Copy)]
pub struct OciImport<'a> {
    /// The snapshot's canonical text (what was found: repository, tag, manifest digest);
    /// its sha512 tells an unchanged registry.
    pub raw: &'a [u8],
    /// sha512 of `raw`, lowercase hex.
    pub sha512: &'a str,
    /// The images found, as list images (version = manifest digest, `sha512` = the layer's
    /// `algorithm:hex` digest).
    pub list: &'a ImageList,
    /// When vmc took it.
    pub imported: chrono::DateTime<chrono::Utc>,
    /// Select every image (the first import under policy `subscribe`).
    pub select_all: bool,
}

impl Store {
    /// Stores a registry snapshot under OCI subscription `id` as [`Store::import_list`] stores
    /// a list (one transaction, new images by policy, pruning), with no signer: an OCI
    /// image is endorsed by the subscription's allow rule, not by a certificate.
    pub fn import_oci(&self, id: i64, import: &OciImport<'_>) -> Result<ImportOutcome, StoreError> {
        let no_signer = CertIdentity {
            subject: String::new(),
            issuer: String::new(),
        };
        self.import_version(
            id,
            &ListImport {
                raw: import.raw,
                sha512: import.sha512,
                list: import.list,
                signer: &no_signer,
                imported: import.imported,
                select_all: import.select_all,
            },
            None,
        )
    }
}

/// The allow rule of every OCI subscription (`None` when the stored text no longer parses:
/// it then endorses nothing).
pub(crate) fn oci_rules(
    conn: &mut AnyConnection,
) -> Result<HashMap<i64, Option<AllowRule>>, StoreError> {
    let rows: Vec<(i64, Option<String>)> = subscriptions::table
        .filter(subscriptions::kind.eq(KIND_OCI))
        .select((subscriptions::id, subscriptions::oci_allow))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, rule)| (id, rule.and_then(|r| AllowRule::parse(&r).ok())))
        .collect())
}

/// Whether `rule` admits the image at `uri` (`oci://REGISTRY/NAME@DIGEST`).
pub(crate) fn rule_allows(rule: Option<&AllowRule>, uri: &str) -> bool {
    let Some(rule) = rule else { return false };
    Reference::parse(uri).is_ok_and(|r| rule.allows_reference(&r))
}
