//! Integration tests of vmc-publish against a real Glance 33 on 127.0.0.1 (started per test
//! from the virtualenv `VMC_TEST_GLANCE_VENV` names; skipped, saying so, when it is unset,
//! and failing under CI). The database is a SQLite file, or a fresh PostgreSQL schema when the
//! crate is built with `postgres` and `VMC_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod convert;
mod faults;
mod keystone;
mod lifecycle;
mod nodes;
