//! Integration tests of vmc-store.
//!
//! The repository suite (`suite`) is written once against a [`db::TestDb`] and runs twice:
//! on a fresh SQLite file, and on PostgreSQL when the crate is built with the feature
//! `postgres` and `VMC_TEST_POSTGRES_URL` names a server (each test then works in a schema of
//! its own, dropped afterwards). Without them the PostgreSQL tests say they are skipped.
//! SQLite-only matters (URLs, concurrent processes) live in `open` and `concurrency`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod concurrency;
mod db;
mod fixtures;
mod node_caches;
mod nodes;
mod open;
mod publications;
mod races;
mod schema;
mod suite;

/// Instantiates each named test of the enclosing module once per backend: `sqlite::NAME`
/// and `postgres::NAME`, each given a fresh [`db::TestDb`].
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let db = $crate::db::TestDb::sqlite();
                    super::$name(&db);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(db) = $crate::db::TestDb::postgres(stringify!($name)) {
                        super::$name(&db);
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
