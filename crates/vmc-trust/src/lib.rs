//! The security core of vmc: which signed image lists a site trusts.
//!
//! A site trusts only what chains to its CA directory (the IGTF layout kept by fetch-crl in
//! `/etc/grid-security/certificates`) — checks 2–4 of `spec/imagelist.md`:
//!
//! 1. [`TrustStore::load`] reads the CA directory: CA certificates (`<hash>.0`…, `*.pem`), CRLs
//!    (`<hash>.r0`…, `*.crl.pem`) and IGTF namespace policies (`*.namespaces`,
//!    `*.signing_policy`). Unreadable or malformed files are skipped and reported.
//! 2. [`verify`] takes the bytes of a signed list in any of the four layouts publishers emit
//!    ([`MessageFormat`]), checks the single signer's signature over the payload, builds the
//!    chain to a CA of the directory at the injected time ([`VerifyOptions::now`]), enforces the
//!    namespaces, and checks each issuing CA's CRL according to the [`CrlMode`].
//! 3. On success it returns the exact signed payload and the [`Signer`]; on failure a
//!    [`TrustError`] whose [`TrustError::code`] is the contract's error code.
//!
//! Invariants: only certificates of the CA directory are trust anchors (certificates carried
//! in a message are untrusted chain material); a CRL counts only if its CA's key signed it;
//! the wall clock is never read.

mod der;
mod dn;
mod error;
mod message;
mod policy;
mod store;
mod time;
mod verify;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

pub use dn::{one_line_dn, rfc2253_dn};
pub use error::TrustError;
pub use store::{CrlStatus, SkippedFile, TrustStore};
pub use verify::verify;

/// How certificate revocation lists are used (`--crl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrlMode {
    /// Every issuing CA of the chain must have a current CRL signed by it (the default).
    #[default]
    Require,
    /// A CA's CRL is checked (signature, currency, listing) when the directory has one.
    IfPresent,
    /// CRLs are not consulted.
    Off,
}

impl CrlMode {
    /// The `--crl` spelling: `require`, `if-present` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Require => "require",
            Self::IfPresent => "if-present",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for CrlMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CrlMode {
    type Err = TrustError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "require" => Ok(Self::Require),
            "if-present" => Ok(Self::IfPresent),
            "off" => Ok(Self::Off),
            _ => Err(TrustError::InvalidCrlMode {
                value: s.to_owned(),
            }),
        }
    }
}

/// The settings of one verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// How CRLs are used.
    pub crl: CrlMode,
    /// The time at which certificates and CRLs must be valid (injected; never the wall clock).
    pub now: DateTime<Utc>,
}

/// The layout a signed list arrived in (detected from its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// S/MIME `multipart/signed` with a detached signature (the usual HEPiX form).
    SmimeDetached,
    /// S/MIME `application/pkcs7-mime` (opaque: the content is inside the signature).
    SmimeOpaque,
    /// PEM `-----BEGIN PKCS7-----` signed-data with the content inside.
    PemPkcs7,
    /// DER PKCS#7 signed-data with the content inside.
    DerPkcs7,
}

/// Who signed a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Subject in OpenSSL one-line form: `/C=XX/O=Org/CN=Name`.
    pub subject: String,
    /// Issuer in OpenSSL one-line form.
    pub issuer: String,
    /// Subject in RFC 2253 form: `CN=Name,O=Org,C=XX`.
    pub subject_rfc2253: String,
    /// Issuer in RFC 2253 form.
    pub issuer_rfc2253: String,
    /// Serial number, uppercase hex (as `openssl x509 -serial` prints it).
    pub serial: String,
    /// Start of the certificate's validity.
    pub not_before: DateTime<Utc>,
    /// End of the certificate's validity.
    pub not_after: DateTime<Utc>,
    /// Subjects (one-line) of the verified chain, the signer first, up to the trust anchor.
    pub chain: Vec<String>,
}

/// A list whose signature, chain and revocation status passed.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The exact bytes the signature covers (what gets parsed as the list).
    pub payload: Vec<u8>,
    /// The signer.
    pub signer: Signer,
    /// The layout the list arrived in.
    pub format: MessageFormat,
    /// Whether the signature used a weak digest (sha1 or md5); it verified, but is logged.
    pub weak_digest: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_mode_round_trips() {
        for mode in [CrlMode::Require, CrlMode::IfPresent, CrlMode::Off] {
            assert_eq!(mode.as_str().parse::<CrlMode>().ok(), Some(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert_eq!(CrlMode::default(), CrlMode::Require);
        let err = "sometimes".parse::<CrlMode>().err();
        assert!(matches!(&err, Some(TrustError::InvalidCrlMode { value }) if value == "sometimes"));
        assert_eq!(err.and_then(|e| e.code()), None);
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TrustStore>();
        assert_send_sync::<TrustError>();
        assert_send_sync::<Verified>();
    }
}
