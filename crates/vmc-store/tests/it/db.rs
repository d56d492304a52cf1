//! Test databases: a fresh SQLite file, or a fresh schema on the PostgreSQL server named by
//! `VMC_TEST_POSTGRES_URL` (dropped when the test ends), plus raw access for the tests that
//! look under the API (introspection, older schema versions).

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use tempfile::TempDir;
use vmc_store::Store;

/// The variable naming the PostgreSQL server for the PostgreSQL half of the suite.
pub const POSTGRES_URL_ENV: &str = "VMC_TEST_POSTGRES_URL";

/// A column as the live database describes it, in `schema.rs` terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub table: String,
    pub name: String,
    /// `BigInt`, `Text`, `Bool` or `Binary` (or the database's own name when unknown).
    pub sql_type: String,
    pub nullable: bool,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    column_type: String,
    #[diesel(sql_type = Bool)]
    not_null: bool,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

enum Kind {
    Sqlite {
        path: PathBuf,
        _dir: TempDir,
    },
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres {
        admin_url: String,
        schema: String,
    },
}

/// One test's database.
pub struct TestDb {
    url: String,
    kind: Kind,
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory (not created yet).
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db").join("vmc.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            kind: Kind::Sqlite { path, _dir: dir },
        }
    }

    /// A fresh schema on the test PostgreSQL server, or `None` (saying why) when there is no
    /// server to test against.
    pub fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_ENV) else {
            vmc_testkit::skip::skipped(&format!(
                "{POSTGRES_URL_ENV} is not set: no PostgreSQL server to test on (.ci/run starts one)"
            ));
            return None;
        };
        if !cfg!(feature = "postgres") {
            vmc_testkit::skip::skipped("the PostgreSQL half needs the cargo feature `postgres`");
            return None;
        }
        Some(Self::postgres_schema(admin_url, test))
    }

    #[cfg(feature = "postgres")]
    fn postgres_schema(admin_url: String, test: &str) -> TestDb {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let short: String = test.chars().take(32).collect();
        let schema = format!(
            "vmct_{}_{}_{}",
            short,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .unwrap();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        TestDb {
            url: format!("{admin_url}{sep}options=-csearch_path%3D{schema}"),
            kind: Kind::Postgres { admin_url, schema },
        }
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres_schema(_admin_url: String, _test: &str) -> TestDb {
        unreachable!("checked by the caller")
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite { .. } => "sqlite",
            Kind::Postgres { .. } => "postgres",
        }
    }

    /// Opens the store (migrating the database).
    pub fn open(&self) -> Store {
        let store = Store::open(&self.url).unwrap();
        assert_eq!(store.backend(), self.backend());
        store
    }

    /// How many migrations this backend has (its directories under `migrations/`).
    pub fn migration_count(&self) -> usize {
        std::fs::read_dir(self.migrations_dir())
            .unwrap()
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
            .count()
    }

    fn migrations_dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(self.backend())
    }

    /// Runs SQL directly, bypassing the store.
    pub fn execute(&self, sql: &str) {
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                conn.batch_execute("PRAGMA foreign_keys = ON;").unwrap();
                conn.batch_execute(sql).unwrap();
            }
            Kind::Postgres { .. } => self.pg_execute(sql),
        }
    }

    /// Applies only the first migration of the migration directory, as a database created by
    /// an older vmc would be.
    pub fn migrate_first_only(&self) {
        let source = FileBasedMigrations::from_path(self.migrations_dir()).unwrap();
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                conn.run_next_migration(source).unwrap();
            }
            Kind::Postgres { .. } => self.pg_migrate_first_only(source),
        }
    }

    /// The applied migration versions, oldest first.
    pub fn applied_migrations(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .names("SELECT version AS name FROM __diesel_schema_migrations")
            .into_iter()
            .collect();
        versions.sort();
        versions
    }

    /// The names of the indexes of the live schema.
    pub fn index_names(&self) -> Vec<String> {
        let sql = match self.kind {
            Kind::Sqlite { .. } => "SELECT name FROM sqlite_master WHERE type = 'index'",
            Kind::Postgres { .. } => {
                "SELECT indexname::text AS name FROM pg_indexes WHERE schemaname = current_schema()"
            }
        };
        self.names(sql)
    }

    /// Every column of the vmc tables (diesel's own table left out), sorted.
    pub fn columns(&self) -> Vec<Column> {
        let sql = match self.kind {
            Kind::Sqlite { .. } => {
                "SELECT m.name AS table_name, p.name AS column_name, p.type AS column_type, \
                 p.\"notnull\" <> 0 AS not_null \
                 FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%'"
            }
            Kind::Postgres { .. } => {
                "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                 data_type::text AS column_type, is_nullable = 'NO' AS not_null \
                 FROM information_schema.columns WHERE table_schema = current_schema()"
            }
        };
        let rows: Vec<ColumnRow> = match &self.kind {
            Kind::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query(sql).load(&mut conn).unwrap()
            }
            Kind::Postgres { .. } => self.pg_load(sql),
        };
        let mut columns: Vec<Column> = rows
            .into_iter()
            .filter(|r| r.table_name != "__diesel_schema_migrations")
            .map(|r| Column {
                sql_type: match r.column_type.to_ascii_lowercase().as_str() {
                    "integer" | "bigint" => "BigInt".to_owned(),
                    "text" => "Text".to_owned(),
                    "boolean" => "Bool".to_owned(),
                    "blob" | "bytea" => "Binary".to_owned(),
                    _ => r.column_type,
                },
                table: r.table_name,
                name: r.column_name,
                nullable: !r.not_null,
            })
            .collect();
        columns.sort();
        columns
    }

    fn names(&self, sql: &str) -> Vec<String> {
        let rows: Vec<NameRow> = match &self.kind {
            Kind::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query(sql).load(&mut conn).unwrap()
            }
            Kind::Postgres { .. } => self.pg_load(sql),
        };
        rows.into_iter().map(|r| r.name).collect()
    }
}

#[cfg(feature = "postgres")]
impl TestDb {
    fn pg(&self) -> diesel::PgConnection {
        diesel::PgConnection::establish(&self.url).unwrap()
    }

    fn pg_execute(&self, sql: &str) {
        self.pg().batch_execute(sql).unwrap();
    }

    fn pg_load<T>(&self, sql: &str) -> Vec<T>
    where
        T: QueryableByName<diesel::pg::Pg> + 'static,
    {
        diesel::sql_query(sql).load(&mut self.pg()).unwrap()
    }

    fn pg_migrate_first_only(&self, source: FileBasedMigrations) {
        self.pg().run_next_migration(source).unwrap();
    }
}

#[cfg(not(feature = "postgres"))]
impl TestDb {
    fn pg_execute(&self, _sql: &str) {
        unreachable!("no PostgreSQL test database without the feature")
    }

    fn pg_load<T>(&self, _sql: &str) -> Vec<T> {
        unreachable!("no PostgreSQL test database without the feature")
    }

    fn pg_migrate_first_only(&self, _source: FileBasedMigrations) {
        unreachable!("no PostgreSQL test database without the feature")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Kind::Postgres { admin_url, schema } = &self.kind
            && let Ok(mut admin) = diesel::PgConnection::establish(admin_url)
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}
