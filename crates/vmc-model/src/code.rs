//! The stable error codes of the command-line contract (`spec/cli.md`), shared by every crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable reason why a list, an image or a handler failed.
///
/// The string forms (`as_str`, serde, `Display`) are part of the public contract: they appear
/// in `--json` output, in the database and in text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The list or image could not be fetched (network, HTTP status, size cap).
    FetchFailed,
    /// The document carries no PKCS#7 signature.
    NotSigned,
    /// The signature does not verify over the payload, or there is not exactly one signer.
    SignatureInvalid,
    /// The signer does not chain to a CA of the CA directory (or violates its namespace).
    CertificateUntrusted,
    /// A certificate of the chain is outside its validity period.
    CertificateExpired,
    /// A certificate of the chain is listed in its CA's CRL.
    CertificateRevoked,
    /// A CA of the chain has no CRL in the CA directory (CRL mode `require`).
    CrlMissing,
    /// A CA's CRL is past its next update.
    CrlExpired,
    /// The signer is not an identity of an endorser linked to the subscription.
    SignerNotEndorser,
    /// The list's `hv:endorser` claim does not name the signer.
    EndorserMismatch,
    /// The payload is not a well-formed image list.
    ListMalformed,
    /// The list's `dc:date:expires` has passed.
    ListExpired,
    /// The list's `dc:date:created` is in the future.
    ListNotYetValid,
    /// The list's version or creation date goes back.
    VersionRollback,
    /// The list's `dc:identifier` is not the subscription's.
    IdentifierMismatch,
    /// One image of the list fails its own checks and was left out.
    ImageInvalid,
    /// A downloaded file does not match its `sl:checksum:sha512`.
    ChecksumMismatch,
    /// A downloaded file does not match its `hv:size`.
    SizeMismatch,
    /// Not enough free space for a download.
    DiskFull,
    /// An event handler failed or timed out.
    HandlerFailed,
}

impl ErrorCode {
    /// Every code, in the order of the contract.
    pub const ALL: [ErrorCode; 20] = [
        Self::FetchFailed,
        Self::NotSigned,
        Self::SignatureInvalid,
        Self::CertificateUntrusted,
        Self::CertificateExpired,
        Self::CertificateRevoked,
        Self::CrlMissing,
        Self::CrlExpired,
        Self::SignerNotEndorser,
        Self::EndorserMismatch,
        Self::ListMalformed,
        Self::ListExpired,
        Self::ListNotYetValid,
        Self::VersionRollback,
        Self::IdentifierMismatch,
        Self::ImageInvalid,
        Self::ChecksumMismatch,
        Self::SizeMismatch,
        Self::DiskFull,
        Self::HandlerFailed,
    ];

    /// The contract's snake_case name, e.g. `certificate_revoked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FetchFailed => "fetch_failed",
            Self::NotSigned => "not_signed",
            Self::SignatureInvalid => "signature_invalid",
            Self::CertificateUntrusted => "certificate_untrusted",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateRevoked => "certificate_revoked",
            Self::CrlMissing => "crl_missing",
            Self::CrlExpired => "crl_expired",
            Self::SignerNotEndorser => "signer_not_endorser",
            Self::EndorserMismatch => "endorser_mismatch",
            Self::ListMalformed => "list_malformed",
            Self::ListExpired => "list_expired",
            Self::ListNotYetValid => "list_not_yet_valid",
            Self::VersionRollback => "version_rollback",
            Self::IdentifierMismatch => "identifier_mismatch",
            Self::ImageInvalid => "image_invalid",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::SizeMismatch => "size_mismatch",
            Self::DiskFull => "disk_full",
            Self::HandlerFailed => "handler_failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the contract's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert!("no_such_code".parse::<ErrorCode>().is_err());
    }
}
