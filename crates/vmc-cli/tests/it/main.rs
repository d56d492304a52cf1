//! Integration tests of the `vmc` binary: the command line contract of `spec/cli.md`, run
//! through the real executable against the interop fixtures served on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod commands;
mod common;
mod errors;
mod flow;
mod help;
mod lock;
mod missing;
mod node;
mod oci;
mod publish;
mod secrets;
mod site;
mod vmcatcher;
