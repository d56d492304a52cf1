//! Reading the database of the old vmcatcher (a SQLite file written by its SQLAlchemy model),
//! read-only, into plain structs, for `vmc import-vmcatcher`.
//!
//! vmcatcher keeps endorsers (`endorser`) with their certificate identities
//! (`endorserPrincible`), subscriptions (`subscription`), which endorser may sign which
//! subscription (`subscriptionAuth`), the images a subscription accepted with their cache flag
//! (`ImageDefinition`) and every signed list it accepted (`imageListInstance`, raw bytes in
//! `data`). Nothing here trusts those bytes: the caller verifies the list again before using
//! it. Columns that later vmcatcher versions added to `subscription` (`trustAnchor`,
//! `userName`, `password`, `updateMode`) are read when present.
//!
//! The file is opened with SQLite's `mode=ro`: it is never written, and a missing file is an
//! error instead of a new empty database.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use vmc_model::{CertIdentity, SubscriptionAuth};

use crate::error::StoreError;

/// The tables vmcatcher creates on SQLite: the DDL SQLAlchemy's `create_all` emits for the
/// model in vmcatcher's `databaseDefinition.py` (its newest version, with the optional
/// `subscription` columns), for tests and tools that need a vmcatcher-shaped database.
/// As there, `userName` and `password` are nullable (`None` when the subscription has no
/// credentials) and the signed list `data` is a `BLOB` (`LargeBinary`). The reader needs every
/// table but `ImageInstance`, and none of the optional columns.
pub const SCHEMA_SQL: &str = r#"
CREATE TABLE endorser (
    id INTEGER NOT NULL,
    identifier VARCHAR(50) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (identifier)
);
CREATE TABLE "endorserPrincible" (
    id INTEGER NOT NULL,
    hv_dn VARCHAR(50) NOT NULL,
    hv_ca VARCHAR(50) NOT NULL,
    endorser INTEGER,
    PRIMARY KEY (id),
    UNIQUE (hv_dn),
    FOREIGN KEY(endorser) REFERENCES endorser (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE subscription (
    id INTEGER NOT NULL,
    identifier VARCHAR(50) NOT NULL,
    description VARCHAR(200),
    uri VARCHAR(200) NOT NULL,
    authorised BOOLEAN NOT NULL,
    imagelist_latest INTEGER,
    updated DATETIME,
    "trustAnchor" INTEGER NOT NULL,
    "userName" VARCHAR(200),
    password VARCHAR(200),
    "updateMode" INTEGER NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (identifier),
    UNIQUE (uri),
    CHECK (authorised IN (0, 1))
);
CREATE TABLE "subscriptionAuth" (
    id INTEGER NOT NULL,
    subscription INTEGER,
    endorser INTEGER,
    authorised BOOLEAN NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(subscription) REFERENCES subscription (id) ON DELETE CASCADE ON UPDATE CASCADE,
    FOREIGN KEY(endorser) REFERENCES endorser (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CHECK (authorised IN (0, 1))
);
CREATE TABLE "ImageDefinition" (
    id INTEGER NOT NULL,
    identifier VARCHAR(50) NOT NULL,
    latest INTEGER,
    cache INTEGER NOT NULL,
    subscription INTEGER,
    PRIMARY KEY (id),
    UNIQUE (identifier),
    FOREIGN KEY(subscription) REFERENCES subscription (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE "imageListInstance" (
    id INTEGER NOT NULL,
    data BLOB NOT NULL,
    data_hash VARCHAR(128) NOT NULL,
    expired DATETIME,
    sub_auth INTEGER,
    imported DATETIME NOT NULL,
    created DATETIME NOT NULL,
    expires DATETIME NOT NULL,
    version VARCHAR(50) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(sub_auth) REFERENCES "subscriptionAuth" (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE "ImageInstance" (
    id INTEGER NOT NULL,
    description VARCHAR(50) NOT NULL,
    hypervisor VARCHAR(50) NOT NULL,
    sha512 VARCHAR(128) NOT NULL,
    uri VARCHAR(128) NOT NULL,
    os VARCHAR(50) NOT NULL,
    osversion VARCHAR(50) NOT NULL,
    arch VARCHAR(50) NOT NULL,
    version VARCHAR(50) NOT NULL,
    size INTEGER NOT NULL,
    title VARCHAR(100) NOT NULL,
    comments VARCHAR(100),
    "fkIdentifier" INTEGER,
    fkimagelistinstance INTEGER,
    PRIMARY KEY (id),
    FOREIGN KEY("fkIdentifier") REFERENCES "ImageDefinition" (id) ON DELETE CASCADE ON UPDATE CASCADE,
    FOREIGN KEY(fkimagelistinstance) REFERENCES "imageListInstance" (id) ON DELETE CASCADE ON UPDATE CASCADE
);
"#;

/// The tables the reader needs.
const REQUIRED_TABLES: [&str; 6] = [
    "endorser",
    "endorserPrincible",
    "subscription",
    "subscriptionAuth",
    "ImageDefinition",
    "imageListInstance",
];

/// What a vmcatcher database holds, as far as vmc can use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmcatcherDb {
    /// Endorsers, by key.
    pub endorsers: Vec<VmcatcherEndorser>,
    /// Subscriptions, by key.
    pub subscriptions: Vec<VmcatcherSubscription>,
}

/// A vmcatcher endorser (`endorser` with its `endorserPrincible` rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmcatcherEndorser {
    /// vmcatcher's row key (what `subscriptionAuth.endorser` points at).
    pub key: i64,
    /// The name the site gave it (`vmcatcher_endorser --endorser_uuid`); may be empty.
    pub identifier: String,
    /// Its certificate identities (`hv:dn` subject, `hv:ca` issuer).
    pub identities: Vec<CertIdentity>,
}

/// A link between a subscription and an endorser (`subscriptionAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmcatcherLink {
    /// The endorser's key.
    pub endorser_key: i64,
    /// The row's `authorised` flag (vmcatcher's own links always set it).
    pub authorised: bool,
}

/// A signed list vmcatcher accepted (`imageListInstance`), unverified.
#[derive(Clone, PartialEq, Eq)]
pub struct VmcatcherList {
    /// vmcatcher's row key.
    pub key: i64,
    /// The signed document as vmcatcher fetched it.
    pub data: Vec<u8>,
    /// vmcatcher's sha512 of `data` (hex).
    pub data_hash: String,
    /// The list's `hv:version` as vmcatcher recorded it.
    pub version: String,
    /// When vmcatcher imported it (its text form, UTC).
    pub imported: Option<String>,
    /// When vmcatcher found it expired, if it did.
    pub expired: Option<String>,
}

impl fmt::Debug for VmcatcherList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmcatcherList")
            .field("key", &self.key)
            .field("data", &format_args!("{} bytes", self.data.len()))
            .field("data_hash", &self.data_hash)
            .field("version", &self.version)
            .field("imported", &self.imported)
            .field("expired", &self.expired)
            .finish()
    }
}

/// An image a subscription accepted (`ImageDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmcatcherImage {
    /// The image's `dc:identifier`.
    pub identifier: String,
    /// vmcatcher's cache flags; bit 1 (`1`) means selected for caching.
    pub cache: i64,
}

impl VmcatcherImage {
    /// Whether vmcatcher was told to cache it (`vmcatcher_image -a`).
    pub fn selected(&self) -> bool {
        self.cache & 1 != 0
    }
}

/// A vmcatcher subscription with everything that belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmcatcherSubscription {
    /// vmcatcher's row key.
    pub key: i64,
    /// The list's `dc:identifier`.
    pub identifier: String,
    /// The list's description.
    pub description: Option<String>,
    /// Where the list is fetched from.
    pub uri: String,
    /// Whether vmcatcher used it.
    pub authorised: bool,
    /// `updateMode`, when the column exists: what updates do with new images.
    pub update_mode: Option<i64>,
    /// `trustAnchor`, when the column exists (0 none, 1 browser, 2 IGTF: how vmcatcher checked
    /// the HTTPS server).
    pub trust_anchor: Option<i64>,
    /// `userName` and `password`, when set (`Debug` redacts the password).
    pub auth: Option<SubscriptionAuth>,
    /// Endorsers linked to it.
    pub links: Vec<VmcatcherLink>,
    /// The newest list vmcatcher accepted for it (`imagelist_latest`, else the newest stored).
    pub latest_list: Option<VmcatcherList>,
    /// The images it accepted, by identifier.
    pub images: Vec<VmcatcherImage>,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct EndorserRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    identifier: Option<String>,
}

#[derive(QueryableByName)]
struct PrincipleRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    endorser: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    hv_dn: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    hv_ca: Option<String>,
}

#[derive(QueryableByName)]
struct SubscriptionRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    identifier: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    uri: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    authorised: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    imagelist_latest: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    trust_anchor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    user_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    password: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    update_mode: Option<i64>,
}

#[derive(QueryableByName)]
struct LinkRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    subscription: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    endorser: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    authorised: Option<i64>,
}

#[derive(QueryableByName)]
struct ImageRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    subscription: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    identifier: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    cache: Option<i64>,
}

#[derive(QueryableByName)]
struct ListKeyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    sub_auth: Option<i64>,
}

#[derive(QueryableByName)]
struct ListRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Binary>)]
    data: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    data_hash: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    imported: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    expired: Option<String>,
}

/// The SQLite URI that opens `path` read-only (`%`, `?` and `#` escaped).
fn read_only_uri(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    Some(uri)
}

fn open_read_only(path: &Path) -> Result<SqliteConnection, StoreError> {
    let shown = path.display().to_string();
    let canonical: PathBuf = std::fs::canonicalize(path).map_err(|_| StoreError::NotFound {
        what: "vmcatcher database",
        key: shown.clone(),
    })?;
    if !canonical.is_file() {
        return Err(StoreError::NotFound {
            what: "vmcatcher database",
            key: shown,
        });
    }
    let uri = read_only_uri(&canonical)
        .ok_or_else(|| StoreError::UnsupportedUrl { url: shown.clone() })?;
    let mut conn = SqliteConnection::establish(&uri).map_err(|source| StoreError::Open {
        url: shown.clone(),
        source,
    })?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};",
        crate::conn::BUSY_TIMEOUT_MS
    ))
    .map_err(|source| StoreError::Configure { url: shown, source })?;
    Ok(conn)
}

/// Lowercase names of the columns of `table`.
fn columns(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<NameRow> =
        diesel::sql_query("SELECT CAST(name AS TEXT) AS name FROM pragma_table_info(?)")
            .bind::<Text, _>(table)
            .load(conn)?;
    Ok(rows.into_iter().map(|r| r.name.to_lowercase()).collect())
}

/// `column` when `present` has it, else `NULL`, as `alias`.
fn optional(present: &[String], column: &str, cast: &str, alias: &str) -> String {
    if present.iter().any(|c| c == &column.to_lowercase()) {
        format!("CAST(\"{column}\" AS {cast}) AS {alias}")
    } else {
        format!("NULL AS {alias}")
    }
}

/// Credentials as vmcatcher sends them: an `Authorization: Basic` header only when both
/// `userName` and `password` are set (`retrieveHttp.py` tests both for `None`). A NULL in either
/// column, an empty user name, or the `0` an old column default left, means none.
fn credentials(user: Option<String>, password: Option<String>) -> Option<SubscriptionAuth> {
    let user = user.filter(|u| !u.is_empty())?;
    let password = password?;
    if user == "0" && (password.is_empty() || password == "0") {
        return None;
    }
    Some(SubscriptionAuth::Basic {
        username: user,
        password,
    })
}

/// Reads the vmcatcher database at `path` (a SQLite file), read-only.
///
/// Fails with [`StoreError::NotFound`] when the file or one of vmcatcher's tables is missing,
/// and with [`StoreError::Open`] or [`StoreError::Query`] when SQLite cannot read it.
pub fn read_vmcatcher(path: &Path) -> Result<VmcatcherDb, StoreError> {
    let mut conn = open_read_only(path)?;
    conn.transaction(read_all)
}

fn read_all(conn: &mut SqliteConnection) -> Result<VmcatcherDb, StoreError> {
    let tables: Vec<NameRow> = diesel::sql_query(
        "SELECT CAST(name AS TEXT) AS name FROM sqlite_master WHERE type = 'table'",
    )
    .load(conn)?;
    for required in REQUIRED_TABLES {
        if !tables.iter().any(|t| t.name.eq_ignore_ascii_case(required)) {
            return Err(StoreError::NotFound {
                what: "vmcatcher table",
                key: required.to_owned(),
            });
        }
    }

    let endorser_rows: Vec<EndorserRow> = diesel::sql_query(
        "SELECT id, CAST(identifier AS TEXT) AS identifier FROM endorser ORDER BY id",
    )
    .load(conn)?;
    let principle_rows: Vec<PrincipleRow> = diesel::sql_query(
        "SELECT endorser, CAST(hv_dn AS TEXT) AS hv_dn, CAST(hv_ca AS TEXT) AS hv_ca \
         FROM \"endorserPrincible\" ORDER BY id",
    )
    .load(conn)?;
    let mut endorsers: Vec<VmcatcherEndorser> = endorser_rows
        .into_iter()
        .map(|r| VmcatcherEndorser {
            key: r.id,
            identifier: r.identifier.unwrap_or_default(),
            identities: Vec::new(),
        })
        .collect();
    for p in principle_rows {
        let (Some(key), Some(subject), Some(issuer)) = (p.endorser, p.hv_dn, p.hv_ca) else {
            continue;
        };
        if let Some(e) = endorsers.iter_mut().find(|e| e.key == key) {
            let identity = CertIdentity { subject, issuer };
            if !e.identities.contains(&identity) {
                e.identities.push(identity);
            }
        }
    }

    let present = columns(conn, "subscription")?;
    let query = format!(
        "SELECT id, CAST(identifier AS TEXT) AS identifier, \
         CAST(description AS TEXT) AS description, CAST(uri AS TEXT) AS uri, \
         CAST(authorised AS INTEGER) AS authorised, \
         CAST(imagelist_latest AS INTEGER) AS imagelist_latest, {}, {}, {}, {} \
         FROM subscription ORDER BY id",
        optional(&present, "trustAnchor", "INTEGER", "trust_anchor"),
        optional(&present, "userName", "TEXT", "user_name"),
        optional(&present, "password", "TEXT", "password"),
        optional(&present, "updateMode", "INTEGER", "update_mode"),
    );
    let sub_rows: Vec<SubscriptionRow> = diesel::sql_query(query).load(conn)?;
    let link_rows: Vec<LinkRow> = diesel::sql_query(
        "SELECT id, subscription, endorser, CAST(authorised AS INTEGER) AS authorised \
         FROM \"subscriptionAuth\" ORDER BY id",
    )
    .load(conn)?;
    let image_rows: Vec<ImageRow> = diesel::sql_query(
        "SELECT subscription, CAST(identifier AS TEXT) AS identifier, \
         CAST(cache AS INTEGER) AS cache FROM \"ImageDefinition\" ORDER BY id",
    )
    .load(conn)?;
    let list_keys: Vec<ListKeyRow> =
        diesel::sql_query("SELECT id, sub_auth FROM \"imageListInstance\" ORDER BY id")
            .load(conn)?;
    // Which subscription each stored list belongs to, through its subscriptionAuth row.
    let auth_subscription: HashMap<i64, i64> = link_rows
        .iter()
        .filter_map(|l| l.subscription.map(|s| (l.id, s)))
        .collect();

    let mut subscriptions = Vec::with_capacity(sub_rows.len());
    for row in sub_rows {
        let owned: Vec<i64> = list_keys
            .iter()
            .filter(|l| {
                l.sub_auth
                    .and_then(|a| auth_subscription.get(&a))
                    .is_some_and(|s| *s == row.id)
            })
            .map(|l| l.id)
            .collect();
        let latest_key = row
            .imagelist_latest
            .filter(|k| owned.contains(k))
            .or_else(|| owned.iter().max().copied());
        let latest_list = match latest_key {
            Some(key) => load_list(conn, key)?,
            None => None,
        };
        subscriptions.push(VmcatcherSubscription {
            key: row.id,
            identifier: row.identifier.unwrap_or_default(),
            description: row.description,
            uri: row.uri.unwrap_or_default(),
            authorised: row.authorised.unwrap_or(0) != 0,
            update_mode: row.update_mode,
            trust_anchor: row.trust_anchor,
            auth: credentials(row.user_name, row.password),
            links: link_rows
                .iter()
                .filter(|l| l.subscription == Some(row.id))
                .filter_map(|l| {
                    l.endorser.map(|endorser_key| VmcatcherLink {
                        endorser_key,
                        authorised: l.authorised.unwrap_or(0) != 0,
                    })
                })
                .collect(),
            latest_list,
            images: image_rows
                .iter()
                .filter(|i| i.subscription == Some(row.id))
                .filter_map(|i| {
                    i.identifier.clone().map(|identifier| VmcatcherImage {
                        identifier,
                        cache: i.cache.unwrap_or(0),
                    })
                })
                .collect(),
        });
    }
    Ok(VmcatcherDb {
        endorsers,
        subscriptions,
    })
}

fn load_list(conn: &mut SqliteConnection, key: i64) -> Result<Option<VmcatcherList>, StoreError> {
    let rows: Vec<ListRow> = diesel::sql_query(
        "SELECT id, CAST(data AS BLOB) AS data, CAST(data_hash AS TEXT) AS data_hash, \
         CAST(version AS TEXT) AS version, CAST(imported AS TEXT) AS imported, \
         CAST(expired AS TEXT) AS expired FROM \"imageListInstance\" WHERE id = ?",
    )
    .bind::<BigInt, _>(key)
    .load(conn)?;
    Ok(rows.into_iter().next().map(|r| VmcatcherList {
        key: r.id,
        data: r.data.unwrap_or_default(),
        data_hash: r.data_hash.unwrap_or_default(),
        version: r.version.unwrap_or_default(),
        imported: r.imported,
        expired: r.expired,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &Path, schema: &str, rows: &str) {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute(schema).unwrap();
        conn.batch_execute(rows).unwrap();
    }

    const ROWS: &str = r#"
        INSERT INTO endorser (id, identifier) VALUES (1, 'Jane'), (2, '');
        INSERT INTO "endorserPrincible" (id, hv_dn, hv_ca, endorser)
            VALUES (1, '/CN=Jane', '/CN=CA', 1), (2, '/CN=Jane 2', '/CN=CA', 1), (3, '/CN=Bob', '/CN=CA', 2);
        INSERT INTO subscription (id, identifier, description, uri, authorised, imagelist_latest,
            updated, "trustAnchor", "userName", password, "updateMode")
            VALUES (1, 'list-a', 'List A', 'https://a.example/list', 1, 11, NULL, 0, NULL, NULL, 3),
                   (2, 'list-b', NULL, 'https://b.example/list', 0, NULL, NULL, 2, 'user', 'pw', 1);
        INSERT INTO "subscriptionAuth" (id, subscription, endorser, authorised)
            VALUES (1, 1, 1, 1), (2, 2, 2, 0);
        INSERT INTO "ImageDefinition" (id, identifier, latest, cache, subscription)
            VALUES (1, 'img-1', 0, 1, 1), (2, 'img-2', 0, 0, 1), (3, 'img-3', 0, 3, 2);
        INSERT INTO "imageListInstance" (id, data, data_hash, expired, sub_auth, imported, created, expires, version)
            VALUES (10, 'old', 'h10', NULL, 1, '2020-01-01 00:00:00', '2020-01-01 00:00:00', '2020-02-01 00:00:00', '1'),
                   (11, 'current', 'h11', NULL, 1, '2020-01-02 00:00:00', '2020-01-02 00:00:00', '2020-02-02 00:00:00', '2'),
                   (12, 'newer but not latest', 'h12', NULL, 1, '2020-01-03 00:00:00', '2020-01-03 00:00:00', '2020-02-03 00:00:00', '3'),
                   (20, 'b1', 'h20', '2020-03-01 00:00:00', 2, '2020-01-01 00:00:00', '2020-01-01 00:00:00', '2020-02-01 00:00:00', '7'),
                   (21, 'b2', 'h21', NULL, 2, '2020-01-05 00:00:00', '2020-01-05 00:00:00', '2020-02-05 00:00:00', '8');
    "#;

    #[test]
    fn reads_every_table_vmc_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmcatcher.db");
        create(&path, SCHEMA_SQL, ROWS);
        let db = read_vmcatcher(&path).unwrap();

        assert_eq!(db.endorsers.len(), 2);
        assert_eq!(db.endorsers[0].identifier, "Jane");
        assert_eq!(
            db.endorsers[0].identities,
            vec![
                CertIdentity {
                    subject: "/CN=Jane".into(),
                    issuer: "/CN=CA".into()
                },
                CertIdentity {
                    subject: "/CN=Jane 2".into(),
                    issuer: "/CN=CA".into()
                },
            ]
        );
        assert_eq!(db.endorsers[1].identifier, "");

        let a = &db.subscriptions[0];
        assert_eq!(a.identifier, "list-a");
        assert_eq!(a.description.as_deref(), Some("List A"));
        assert!(a.authorised);
        assert_eq!(a.update_mode, Some(3));
        assert_eq!(a.auth, None);
        assert_eq!(
            a.links,
            vec![VmcatcherLink {
                endorser_key: 1,
                authorised: true
            }]
        );
        // imagelist_latest wins over a newer row.
        let list = a.latest_list.as_ref().unwrap();
        assert_eq!(
            (list.key, list.data.as_slice()),
            (11, b"current".as_slice())
        );
        assert_eq!(list.version, "2");
        assert_eq!(a.images.len(), 2);
        assert!(a.images[0].selected());
        assert!(!a.images[1].selected());

        let b = &db.subscriptions[1];
        assert!(!b.authorised);
        assert_eq!(b.trust_anchor, Some(2));
        assert_eq!(
            b.auth,
            Some(SubscriptionAuth::Basic {
                username: "user".into(),
                password: "pw".into()
            })
        );
        assert!(!format!("{b:?}").contains("pw\""), "{b:?}");
        assert!(!b.links[0].authorised);
        // No imagelist_latest: the newest stored list.
        assert_eq!(b.latest_list.as_ref().unwrap().key, 21);
        assert!(b.images[0].selected(), "bit 1 of cache 3 selects");
    }

    #[test]
    fn null_credentials_send_none_and_data_is_a_blob() {
        // As vmcatcher writes them: NULL userName/password when the subscription has none
        // (its model's default), a user name with a NULL password (vmcatcher then sends no
        // Authorization header either), and the signed list as BLOB bytes.
        let rows = r#"
            INSERT INTO subscription (id, identifier, description, uri, authorised,
                imagelist_latest, updated, "trustAnchor", "userName", password, "updateMode")
                VALUES (1, 'none', NULL, 'https://a.example/1', 1, 1, NULL, 0, NULL, NULL, 0),
                       (2, 'user-only', NULL, 'https://a.example/2', 1, NULL, NULL, 0, 'alice', NULL, 0),
                       (3, 'both', NULL, 'https://a.example/3', 1, NULL, NULL, 0, 'alice', '', 0);
            INSERT INTO "subscriptionAuth" (id, subscription, endorser, authorised) VALUES (1, 1, NULL, 1);
            INSERT INTO "imageListInstance" (id, data, data_hash, expired, sub_auth, imported, created, expires, version)
                VALUES (1, X'4d494d452d00ff0a', 'h', NULL, 1, '2020-01-01 00:00:00', '2020-01-01 00:00:00', '2020-02-01 00:00:00', '1');
        "#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmcatcher.db");
        create(&path, SCHEMA_SQL, rows);
        let db = read_vmcatcher(&path).unwrap();
        let auth: Vec<Option<SubscriptionAuth>> =
            db.subscriptions.iter().map(|s| s.auth.clone()).collect();
        assert_eq!(
            auth,
            [
                None,
                None,
                Some(SubscriptionAuth::Basic {
                    username: "alice".into(),
                    password: String::new()
                })
            ]
        );
        let list = db.subscriptions[0].latest_list.as_ref().unwrap();
        assert_eq!(list.data, b"MIME-\x00\xff\n");
    }

    #[test]
    fn an_old_schema_without_the_optional_columns_reads() {
        let old = SCHEMA_SQL
            .replace("    \"trustAnchor\" INTEGER NOT NULL,\n", "")
            .replace("    \"userName\" VARCHAR(200),\n", "")
            .replace("    password VARCHAR(200),\n", "")
            .replace("    \"updateMode\" INTEGER NOT NULL,\n", "");
        assert!(!old.contains("updateMode"));
        let rows = r#"
            INSERT INTO endorser (id, identifier) VALUES (1, 'Jane');
            INSERT INTO subscription (id, identifier, description, uri, authorised)
                VALUES (1, 'list-a', NULL, 'file:///srv/list', 1);
        "#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        create(&path, &old, rows);
        let db = read_vmcatcher(&path).unwrap();
        let a = &db.subscriptions[0];
        assert_eq!(
            (a.update_mode, a.trust_anchor, a.auth.as_ref()),
            (None, None, None)
        );
        assert_eq!(a.latest_list, None);
        assert!(a.links.is_empty() && a.images.is_empty());
    }

    #[test]
    fn a_missing_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.db");
        let err = read_vmcatcher(&path).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_database_that_is_not_vmcatchers_names_the_missing_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        create(&path, "CREATE TABLE endorser (id INTEGER PRIMARY KEY);", "");
        let err = read_vmcatcher(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { what: "vmcatcher table", key } if key == "endorserPrincible"),
            "{err}"
        );
    }

    #[test]
    fn the_file_is_opened_read_only() {
        let dir = tempfile::tempdir().unwrap();
        // A name with URI metacharacters still names the file.
        let path = dir.path().join("odd?name#1%.db");
        create(&path, SCHEMA_SQL, ROWS);
        let before = std::fs::read(&path).unwrap();
        let mut conn = open_read_only(&path).unwrap();
        assert!(conn.batch_execute("DELETE FROM endorser;").is_err());
        drop(conn);
        read_vmcatcher(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
