//! Integration tests of vmc-trust: a PKI generated in code, the independent openssl-cli and
//! cloudkeeper fixtures of `../shared/interop`, and CA directory loading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloudkeeper;
mod generated;
mod interop;
mod load;
mod namespaces;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use vmc_model::ErrorCode;
use vmc_trust::{CrlMode, TrustError, TrustStore, Verified, VerifyOptions};

/// `../shared/interop`, beside the checkout.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop")
}

/// Parses an RFC 3339 instant.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Verification options.
pub fn opts(now: DateTime<Utc>, crl: CrlMode) -> VerifyOptions {
    VerifyOptions { crl, now }
}

/// Verifies and returns the error code (`None` when accepted).
pub fn code_of(result: &Result<Verified, TrustError>) -> Option<ErrorCode> {
    match result {
        Ok(_) => None,
        Err(e) => Some(
            e.code()
                .unwrap_or_else(|| panic!("setup error instead of a verdict: {e}")),
        ),
    }
}

/// Verifies `message` against `store` and returns the error code (`None` when accepted).
pub fn verdict(
    store: &TrustStore,
    message: &[u8],
    now: DateTime<Utc>,
    crl: CrlMode,
) -> Option<ErrorCode> {
    code_of(&vmc_trust::verify(store, message, &opts(now, crl)))
}
