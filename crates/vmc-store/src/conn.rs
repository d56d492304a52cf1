//! The connection: one `MultiConnection` enum over the backends, opened from a URL,
//! configured, migrated, and the transaction helpers every operation goes through.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::result::Error as DieselError;
use diesel::{Connection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::StoreError;
use crate::url::{Target, redact_url};

/// The SQLite schema migrations, applied at open.
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The PostgreSQL schema migrations, applied at open.
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The oldest SQLite that works: `RETURNING` came with 3.35.0.
const SQLITE_MIN_VERSION: &str = "3.35.0";

/// How long a SQLite writer waits for another one before giving up (milliseconds).
pub(crate) const BUSY_TIMEOUT_MS: u32 = 30_000;

/// A key for `pg_advisory_xact_lock` that serialises concurrent migrations ("vmcstore").
#[cfg(feature = "postgres")]
const MIGRATION_LOCK_KEY: i64 = 0x766d_6373_746f_7265;

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    /// SQLite (the system's library, or compiled in with `bundled-sqlite`).
    Sqlite(SqliteConnection),
    /// PostgreSQL (cargo feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
}

impl AnyConnection {
    /// `"sqlite"` or `"postgres"`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            AnyConnection::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(_) => "postgres",
        }
    }
}

/// Opens the database named by `url`, configures the connection and applies pending
/// migrations.
pub(crate) fn open(url: &str) -> Result<AnyConnection, StoreError> {
    match crate::url::parse(url)? {
        Target::SqliteFile(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let Some(name) = path.to_str() else {
                return Err(StoreError::UnsupportedUrl {
                    url: redact_url(url),
                });
            };
            open_sqlite(url, name)
        }
        Target::SqliteMemory => open_sqlite(url, ":memory:"),
        #[cfg(feature = "postgres")]
        Target::Postgres(pg_url) => open_postgres(url, &pg_url),
        #[cfg(not(feature = "postgres"))]
        Target::Postgres(_) => Err(StoreError::PostgresNotBuilt {
            url: redact_url(url),
        }),
    }
}

fn open_sqlite(url: &str, name: &str) -> Result<AnyConnection, StoreError> {
    let mut conn = SqliteConnection::establish(name).map_err(|source| StoreError::Open {
        url: redact_url(url),
        source,
    })?;
    use diesel::RunQueryDsl;
    let version: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "sqlite_version()",
    ))
    .get_result(&mut conn)
    .map_err(|source| StoreError::Configure {
        url: redact_url(url),
        source,
    })?;
    if !sqlite_is_recent(&version) {
        return Err(StoreError::SqliteTooOld {
            url: redact_url(url),
            found: version,
            required: SQLITE_MIN_VERSION,
        });
    }
    // One statement each, in this order: the timeout first so that the others wait for a
    // busy database instead of failing.
    for pragma in [
        format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"),
        "PRAGMA journal_mode = WAL;".to_owned(),
        "PRAGMA foreign_keys = ON;".to_owned(),
    ] {
        conn.batch_execute(&pragma)
            .map_err(|source| StoreError::Configure {
                url: redact_url(url),
                source,
            })?;
    }
    // BEGIN IMMEDIATE: two processes opening a new database one after the other, not both.
    let applied = conn
        .immediate_transaction(|conn| migrate(conn, SQLITE_MIGRATIONS))
        .map_err(|e| migration_error(url, e))?;
    log_applied(url, &applied);
    Ok(AnyConnection::Sqlite(conn))
}

/// Whether `found` (`sqlite_version()`, e.g. `3.40.1`) is at least [`SQLITE_MIN_VERSION`]. A
/// version that does not parse is let through: the migrations then say what fails.
fn sqlite_is_recent(found: &str) -> bool {
    fn parse(v: &str) -> Option<[u32; 3]> {
        let mut parts = [0; 3];
        for (i, n) in v.trim().split('.').enumerate() {
            *parts.get_mut(i)? = n.parse().ok()?;
        }
        Some(parts)
    }
    match (parse(found), parse(SQLITE_MIN_VERSION)) {
        (Some(found), Some(min)) => found >= min,
        _ => true,
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str, pg_url: &str) -> Result<AnyConnection, StoreError> {
    use diesel::RunQueryDsl;
    let mut conn = diesel::PgConnection::establish(pg_url).map_err(|source| StoreError::Open {
        url: redact_url(url),
        source,
    })?;
    let applied = conn
        .transaction(|conn| {
            diesel::sql_query(format!(
                "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .execute(conn)
            .map_err(MigrateError::Query)?;
            migrate(conn, POSTGRES_MIGRATIONS)
        })
        .map_err(|e| migration_error(url, e))?;
    log_applied(url, &applied);
    Ok(AnyConnection::Postgres(conn))
}

/// A failure while migrating, inside the migration transaction.
#[derive(Debug)]
enum MigrateError {
    Query(DieselError),
    Migration(Box<dyn std::error::Error + Send + Sync>),
}

impl From<DieselError> for MigrateError {
    fn from(e: DieselError) -> Self {
        MigrateError::Query(e)
    }
}

fn migrate<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, MigrateError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(MigrateError::Migration)
}

fn migration_error(url: &str, e: MigrateError) -> StoreError {
    StoreError::Migration {
        url: redact_url(url),
        source: match e {
            MigrateError::Query(e) => Box::new(e),
            MigrateError::Migration(e) => e,
        },
    }
}

fn log_applied(url: &str, applied: &[String]) {
    if !applied.is_empty() {
        tracing::info!(database = %redact_url(url), migrations = ?applied, "database schema migrated");
    }
}

/// Runs `f` in a write transaction and commits it, or rolls back when `f` fails.
///
/// On SQLite the transaction starts with `BEGIN IMMEDIATE`: it takes the write lock first
/// (waiting up to the busy timeout), so it never has to upgrade a read lock later, which is
/// where concurrent writers otherwise fail with "database is locked".
pub(crate) fn write_tx<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?,
    }
    finish(conn, f)
}

/// Runs `f` in a read transaction, for a consistent view over several queries.
pub(crate) fn read_tx<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    <AnyConnection as Connection>::TransactionManager::begin_transaction(conn)?;
    finish(conn, f)
}

fn finish<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match f(conn) {
        Ok(value) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => {
            match <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn) {
                Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(err),
                Err(rollback) => Err(rollback.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_versions_before_returning_are_refused() {
        for old in ["3.34.1", "3.8.11", "2.99.99", "3.34"] {
            assert!(!sqlite_is_recent(old), "{old}");
        }
        for recent in [
            "3.35.0",
            "3.35",
            "3.35.5",
            "3.40.1",
            "3.100.0",
            "4.0.0",
            "not a version",
        ] {
            assert!(sqlite_is_recent(recent), "{recent}");
        }
    }

    #[test]
    fn the_linked_sqlite_is_recent_enough() {
        assert!(open(":memory:").is_ok());
    }
}

/// The schema migrations applied to a database, and those this build embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Versions recorded in the database (`__diesel_schema_migrations`), oldest first.
    pub applied: Vec<String>,
    /// Versions this build carries for the database's backend, oldest first.
    pub embedded: Vec<String>,
}

impl SchemaStatus {
    /// Applied versions this build does not know: a newer vmc migrated the database.
    pub fn unknown(&self) -> Vec<&str> {
        not_in(&self.applied, &self.embedded)
    }

    /// Embedded versions not applied (none after a successful open).
    pub fn pending(&self) -> Vec<&str> {
        not_in(&self.embedded, &self.applied)
    }
}

/// The versions of `these` that `others` lacks.
fn not_in<'a>(these: &'a [String], others: &[String]) -> Vec<&'a str> {
    these
        .iter()
        .filter(|v| !others.contains(v))
        .map(String::as_str)
        .collect()
}

fn status_of<C>(
    conn: &mut C,
    migrations: &EmbeddedMigrations,
) -> Result<SchemaStatus, Box<dyn std::error::Error + Send + Sync>>
where
    C: MigrationHarness<C::Backend> + Connection,
    EmbeddedMigrations: diesel::migration::MigrationSource<C::Backend>,
{
    let mut applied: Vec<String> = conn
        .applied_migrations()?
        .iter()
        .map(ToString::to_string)
        .collect();
    applied.sort();
    let mut embedded: Vec<String> =
        diesel::migration::MigrationSource::<C::Backend>::migrations(migrations)?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect();
    embedded.sort();
    Ok(SchemaStatus { applied, embedded })
}

/// The applied and embedded migrations of the database behind `conn`.
pub(crate) fn schema_status(
    conn: &mut AnyConnection,
    url: &str,
) -> Result<SchemaStatus, StoreError> {
    match conn {
        AnyConnection::Sqlite(c) => status_of(c, &SQLITE_MIGRATIONS),
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => status_of(c, &POSTGRES_MIGRATIONS),
    }
    .map_err(|source| StoreError::Migration {
        url: redact_url(url),
        source,
    })
}
