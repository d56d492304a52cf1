//! Test support shared by the vmc crates' tests (never a normal dependency).
//!
//! - [`server`]: a thread-based HTTP/1.1 server on `127.0.0.1:0` that can misbehave on purpose.
//! - [`registry`]: a real OCI registry (`docker-registry`, distribution 2.8) on `127.0.0.1`,
//!   anonymous or behind the bearer-token flow, and pushes through the distribution API.
//! - [`pki`]: a test PKI generated in code (CAs, endorsers, CRLs, a hashed CA directory) and
//!   S/MIME signing of image lists, all relative to an injected clock.
//! - [`interop`]: the openssl-cli interop lists, regenerated at test time with the `openssl`
//!   command line, and the cloudkeeper fixtures read from `VMC_INTEROP_DIR`.
//! - [`skip`]: how a test that cannot run here says so, so that it is counted as skipped.
//! - [`glance`]: a real OpenStack Glance on `127.0.0.1`, started from a virtualenv.
//! - [`keystone`]: a real OpenStack Keystone on `127.0.0.1`, likewise.
//! - [`proxy`]: an HTTP proxy in front of a real server that fails on purpose (5xx, a dropped
//!   connection, a corrupted body byte).

pub mod glance;
pub mod interop;
pub mod keystone;
pub mod pki;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod skip;
