//! The integration tests of `vmc-model`: every parsing rule of `spec/imagelist.md` (checks 5
//! and 11), the round trip through the HEPiX JSON form, and the interop payloads of
//! `../shared/interop`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod interop;
mod roundtrip;
mod rules;
