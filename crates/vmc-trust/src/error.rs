//! The error type of vmc-trust: setup failures and the security verdicts of checks 2–4.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use openssl::error::ErrorStack;
use vmc_model::ErrorCode;

/// Why a CA directory could not be used or a signed message was refused.
///
/// Verdict variants (everything a message can cause) map to a contract code through
/// [`TrustError::code`]; setup variants (an unreadable CA directory, a bad `--crl` value,
/// an OpenSSL failure unrelated to the message) have no code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The CA directory itself cannot be listed.
    #[error("cannot read the CA directory {path}")]
    CaDirUnreadable {
        /// The directory that was asked for.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// A `--crl` value that is not `require`, `if-present` or `off`.
    #[error("invalid CRL mode {value:?} (expected require, if-present or off)")]
    InvalidCrlMode {
        /// The rejected value.
        value: String,
    },

    /// The document carries no PKCS#7 signature (plain JSON, another MIME type, not signed-data).
    #[error("the document is not signed: {reason}")]
    NotSigned {
        /// What was found instead.
        reason: String,
    },

    /// The document announces a signature but its structure cannot be decoded.
    #[error("malformed signed message: {reason}")]
    MalformedSignature {
        /// What is wrong with the structure.
        reason: String,
        /// The OpenSSL failure, if one was reported.
        #[source]
        source: Option<ErrorStack>,
    },

    /// The signed-data does not have exactly one signer.
    #[error("expected exactly one signer, found {count}")]
    SignerCount {
        /// How many SignerInfos the message carries.
        count: usize,
    },

    /// The signature does not verify over the signed content (tampered payload or signature).
    #[error("the signature of {signer} does not verify over the signed content")]
    SignatureInvalid {
        /// The claimed signer's subject (one-line form).
        signer: String,
        /// The OpenSSL failure of the last attempt.
        #[source]
        source: Option<ErrorStack>,
    },

    /// The signer does not chain to a CA certificate of the CA directory.
    #[error("certificate {subject} does not chain to a trusted CA: {reason}")]
    CertificateUntrusted {
        /// Subject (one-line form) of the certificate where chain building failed.
        subject: String,
        /// Its issuer (one-line form).
        issuer: String,
        /// OpenSSL's verification error text.
        reason: String,
    },

    /// A certificate's subject lies outside the IGTF namespace of the CA that issued it.
    #[error("certificate {subject} is outside the namespace of its CA {issuer} ({policy})")]
    NamespaceViolation {
        /// Subject (one-line form) of the offending certificate.
        subject: String,
        /// The issuing CA (one-line form).
        issuer: String,
        /// The policy file that refused it.
        policy: PathBuf,
    },

    /// A certificate of the chain is past its `notAfter`.
    #[error("certificate {subject} expired at {not_after} (verification time {at})")]
    CertificateExpired {
        /// Subject (one-line form) of the expired certificate.
        subject: String,
        /// Its `notAfter`.
        not_after: DateTime<Utc>,
        /// The verification time.
        at: DateTime<Utc>,
    },

    /// A certificate of the chain is before its `notBefore`.
    #[error("certificate {subject} is not valid before {not_before} (verification time {at})")]
    CertificateNotYetValid {
        /// Subject (one-line form) of the certificate.
        subject: String,
        /// Its `notBefore`.
        not_before: DateTime<Utc>,
        /// The verification time.
        at: DateTime<Utc>,
    },

    /// A certificate of the chain is listed in its CA's CRL.
    #[error("certificate {subject} (serial {serial}) is revoked by {ca}")]
    CertificateRevoked {
        /// Subject (one-line form) of the revoked certificate.
        subject: String,
        /// Its serial number, uppercase hex.
        serial: String,
        /// The CA whose CRL lists it (one-line form).
        ca: String,
    },

    /// A CA of the chain has no usable CRL (none, or none signed by that CA) in `require` mode.
    #[error("no CRL signed by CA {ca} in the CA directory")]
    CrlMissing {
        /// The CA (one-line form).
        ca: String,
    },

    /// A CA's CRL is past its `nextUpdate`.
    #[error("the CRL of CA {ca} expired at {next_update}")]
    CrlExpired {
        /// The CA (one-line form).
        ca: String,
        /// The newest CRL's `nextUpdate`.
        next_update: DateTime<Utc>,
    },

    /// A CA's CRL claims to be issued in the future (`lastUpdate` after the verification time).
    #[error("the CRL of CA {ca} is not valid before {last_update}")]
    CrlNotYetValid {
        /// The CA (one-line form).
        ca: String,
        /// The CRL's `lastUpdate`.
        last_update: DateTime<Utc>,
    },

    /// OpenSSL failed while setting up a verification (not caused by the message).
    #[error("openssl failure while {context}")]
    Openssl {
        /// What was being done.
        context: &'static str,
        /// The OpenSSL error stack.
        #[source]
        source: ErrorStack,
    },
}

impl TrustError {
    /// The contract's error code of a verdict, or `None` for a setup error.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::NotSigned { .. } => ErrorCode::NotSigned,
            Self::MalformedSignature { .. }
            | Self::SignerCount { .. }
            | Self::SignatureInvalid { .. } => ErrorCode::SignatureInvalid,
            Self::CertificateUntrusted { .. } | Self::NamespaceViolation { .. } => {
                ErrorCode::CertificateUntrusted
            }
            Self::CertificateExpired { .. } | Self::CertificateNotYetValid { .. } => {
                ErrorCode::CertificateExpired
            }
            Self::CertificateRevoked { .. } => ErrorCode::CertificateRevoked,
            Self::CrlMissing { .. } => ErrorCode::CrlMissing,
            Self::CrlExpired { .. } | Self::CrlNotYetValid { .. } => ErrorCode::CrlExpired,
            Self::CaDirUnreadable { .. } | Self::InvalidCrlMode { .. } | Self::Openssl { .. } => {
                return None;
            }
        })
    }
}
