//! Shared helpers for cross-crate scenario tests.
