//! Cross-crate hardening scenarios for vmc (issue 9): vmc keeps working and loses nothing
//! under faults, crashes and hostile input.
//!
//! - `crash`: `vmc cache sync` killed with SIGKILL again and again (slow, `VMC_TEST_SLOW`).
//! - `concurrency`: several syncs and updates at once on one home.
//! - `hostile_server`: every fault of the test server through the CLI and the library.
//! - `hostile_lists`: a corpus of signed hostile lists against every check.
//! - `fuzz_regressions`: the fuzz harnesses replayed on `fuzz/regressions/`.
//! - `secrets`: credentials never appear in output, logs, JSON or handler environments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;
mod concurrency;
mod crash;
/// The fuzz harnesses (`fuzz/src/lib.rs`), shared with the fuzz targets.
#[path = "../../../fuzz/src/lib.rs"]
mod fuzz_harness;
mod fuzz_regressions;
mod hostile_lists;
mod hostile_server;
mod secrets;
