//! Verification of a signed list: signature (check 2), chain and namespaces (check 3),
//! revocation (check 4).

use chrono::{DateTime, Duration, Utc};
use openssl::error::ErrorStack;
use openssl::pkcs7::Pkcs7Flags;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509, X509Ref, X509StoreContext};

use crate::der;
use crate::dn::{one_line_dn, rfc2253_dn};
use crate::error::TrustError;
use crate::message;
use crate::policy::Decision;
use crate::store::{TrustStore, newest};
use crate::time::to_utc;
use crate::{CrlMode, Signer, Verified, VerifyOptions};

/// How far in the future a CRL's `lastUpdate` may lie (clock skew between CA and site).
const CRL_SKEW: Duration = Duration::minutes(5);

/// `X509_V_ERR_CERT_NOT_YET_VALID`.
const ERR_CERT_NOT_YET_VALID: i32 = 9;
/// `X509_V_ERR_CERT_HAS_EXPIRED`.
const ERR_CERT_HAS_EXPIRED: i32 = 10;

fn openssl(context: &'static str) -> impl FnOnce(ErrorStack) -> TrustError {
    move |source| TrustError::Openssl { context, source }
}

fn serial_hex(cert: &X509Ref) -> String {
    cert.serial_number()
        .to_bn()
        .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// Verifies a signed list against the trust store: exactly one signer whose signature covers
/// the payload, a chain to a CA of the directory valid at `options.now`, the IGTF namespaces,
/// and the CRLs per `options.crl`. Returns the exact signed payload and the signer.
pub fn verify(
    store: &TrustStore,
    message: &[u8],
    options: &VerifyOptions,
) -> Result<Verified, TrustError> {
    let parsed = message::parse(message)?;
    let p7 = &parsed.p7;

    // Check 2: one signer, whose signature covers the content.
    let der = p7.to_der().map_err(|e| TrustError::MalformedSignature {
        reason: "cannot re-encode the PKCS#7 structure".to_owned(),
        source: Some(e),
    })?;
    let infos = der::signer_infos(&der).ok_or_else(|| TrustError::MalformedSignature {
        reason: "cannot read the SignerInfos".to_owned(),
        source: None,
    })?;
    if infos.count != 1 {
        return Err(TrustError::SignerCount { count: infos.count });
    }
    let no_certs = Stack::<X509>::new().map_err(openssl("allocating a certificate stack"))?;
    let signers =
        p7.signers(&no_certs, Pkcs7Flags::empty())
            .map_err(|e| TrustError::MalformedSignature {
                reason: "the signer's certificate is not in the message".to_owned(),
                source: Some(e),
            })?;
    let signer = match signers.iter().next() {
        Some(cert) if signers.len() == 1 => cert.to_owned(),
        _ => {
            return Err(TrustError::SignerCount {
                count: signers.len(),
            });
        }
    };
    let signer_subject = one_line_dn(signer.subject_name());
    let empty_store = X509StoreBuilder::new()
        .map_err(openssl("creating an empty certificate store"))?
        .build();
    // The chain is checked separately below, with the directory's CAs only as anchors.
    let flags = Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY;
    let invalid = |source| TrustError::SignatureInvalid {
        signer: signer_subject.clone(),
        source,
    };
    let payload = match parsed.detached {
        // The part as it is (a binary signature), else OpenSSL's CRLF text form of it (what
        // `openssl smime -sign` signs), computed only when needed.
        Some(raw) => match p7.verify(&no_certs, &empty_store, Some(&raw), None, flags) {
            Ok(()) => raw,
            Err(first) => {
                let canonical = crate::message::openssl_canonical(&raw);
                if canonical == raw {
                    return Err(invalid(Some(first)));
                }
                p7.verify(&no_certs, &empty_store, Some(&canonical), None, flags)
                    .map_err(|e| invalid(Some(e)))?;
                canonical
            }
        },
        None => {
            let mut out = Vec::new();
            p7.verify(&no_certs, &empty_store, None, Some(&mut out), flags)
                .map_err(|e| invalid(Some(e)))?;
            out
        }
    };
    let payload = strip_text_headers(payload);

    // Check 3: the chain, with the message's certificates as untrusted intermediates only.
    let mut untrusted = Stack::<X509>::new().map_err(openssl("allocating a certificate stack"))?;
    if let Some(certs) = p7.signed().and_then(|s| s.certificates()) {
        for cert in certs {
            untrusted
                .push(cert.to_owned())
                .map_err(openssl("collecting the message's certificates"))?;
        }
    }
    let chain = build_chain(store, &signer, &untrusted, options.now)?;
    check_namespaces(store, &chain)?;

    // Check 4: revocation, for every issuing CA of the chain.
    if options.crl != CrlMode::Off {
        check_crls(store, &chain, options)?;
    }

    let weak_digest = infos
        .digest_oids
        .iter()
        .any(|oid| oid == der::OID_SHA1 || oid == der::OID_MD5);
    // Reported in `Verified::weak_digest`; the caller says it once (vmc-cache logs it).
    let signer = Signer {
        subject: signer_subject,
        issuer: one_line_dn(signer.issuer_name()),
        subject_rfc2253: rfc2253_dn(signer.subject_name()),
        issuer_rfc2253: rfc2253_dn(signer.issuer_name()),
        serial: serial_hex(&signer),
        not_before: to_utc(signer.not_before()).unwrap_or_else(epoch),
        not_after: to_utc(signer.not_after()).unwrap_or_else(epoch),
        chain: chain
            .iter()
            .map(|c| one_line_dn(c.subject_name()))
            .collect(),
    };
    Ok(Verified {
        payload,
        signer,
        format: parsed.format,
        weak_digest,
    })
}

/// Content signed in S/MIME text mode starts with its own MIME header
/// (`Content-Type: text/plain`); the list is what follows the blank line, as
/// `openssl smime -verify -text` prints it.
fn strip_text_headers(payload: Vec<u8>) -> Vec<u8> {
    const PREFIX: &[u8] = b"content-type:";
    let starts = payload
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
    if !starts {
        return payload;
    }
    let end = payload
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| payload.windows(2).position(|w| w == b"\n\n").map(|p| p + 2));
    match end {
        Some(end) => payload.get(end..).unwrap_or_default().to_vec(),
        None => payload,
    }
}

/// Builds and checks the chain from `signer` to a CA of the directory at time `now`.
fn build_chain(
    store: &TrustStore,
    signer: &X509Ref,
    untrusted: &Stack<X509>,
    now: DateTime<Utc>,
) -> Result<Vec<X509>, TrustError> {
    let mut builder = X509StoreBuilder::new().map_err(openssl("creating a certificate store"))?;
    for ca in &store.cas {
        builder
            .add_cert(ca.cert.clone())
            .map_err(openssl("adding a CA certificate to the store"))?;
    }
    let mut param = X509VerifyParam::new().map_err(openssl("creating verify parameters"))?;
    param.set_time(now.timestamp());
    builder
        .set_param(&param)
        .map_err(openssl("setting the verification time"))?;
    let anchors = builder.build();

    let mut ctx = X509StoreContext::new().map_err(openssl("creating a verify context"))?;
    let outcome = ctx
        .init(&anchors, signer, untrusted, |ctx| {
            if ctx.verify_cert()? {
                let chain = ctx
                    .chain()
                    .map(|c| c.iter().map(ToOwned::to_owned).collect())
                    .unwrap_or_default();
                Ok(Ok(chain))
            } else {
                let error = ctx.error();
                let cert = ctx.current_cert().map(ToOwned::to_owned);
                Ok(Err((error.as_raw(), error.error_string(), cert)))
            }
        })
        .map_err(openssl("verifying the certificate chain"))?;

    match outcome {
        Ok(chain) => Ok(chain),
        Err((code, text, cert)) => {
            let cert: &X509Ref = cert.as_deref().unwrap_or(signer);
            let subject = one_line_dn(cert.subject_name());
            Err(match code {
                ERR_CERT_HAS_EXPIRED => TrustError::CertificateExpired {
                    subject,
                    not_after: to_utc(cert.not_after()).unwrap_or_else(epoch),
                    at: now,
                },
                ERR_CERT_NOT_YET_VALID => TrustError::CertificateNotYetValid {
                    subject,
                    not_before: to_utc(cert.not_before()).unwrap_or_else(epoch),
                    at: now,
                },
                _ => TrustError::CertificateUntrusted {
                    subject,
                    issuer: one_line_dn(cert.issuer_name()),
                    reason: text.to_owned(),
                },
            })
        }
    }
}

/// Every certificate below the anchor must lie in its issuer's IGTF namespace.
fn check_namespaces(store: &TrustStore, chain: &[X509]) -> Result<(), TrustError> {
    for cert in chain.iter().take(chain.len().saturating_sub(1)) {
        let issuer = one_line_dn(cert.issuer_name());
        let subject = one_line_dn(cert.subject_name());
        if let Decision::Deny(policy) = store.policies.check(&issuer, &subject) {
            return Err(TrustError::NamespaceViolation {
                subject,
                issuer,
                policy,
            });
        }
    }
    Ok(())
}

/// Checks each certificate of the chain against the CRL of the CA that issued it. The anchor
/// at the top of a longer chain is trusted as such; a self-signed signer that is itself the
/// anchor is checked against its own CRL.
fn check_crls(
    store: &TrustStore,
    chain: &[X509],
    options: &VerifyOptions,
) -> Result<(), TrustError> {
    for (i, cert) in chain.iter().enumerate() {
        let ca: &X509Ref = match chain.get(i + 1) {
            Some(ca) => ca,
            None if i == 0 => cert,
            None => break,
        };
        let ca_subject = one_line_dn(ca.subject_name());
        let crls = store.crls_of(ca);
        if crls.is_empty() {
            if options.crl == CrlMode::Require {
                return Err(TrustError::CrlMissing { ca: ca_subject });
            }
            continue;
        }
        for entry in &crls {
            if let openssl::x509::CrlStatus::Revoked(_) =
                entry.crl.get_by_serial(cert.serial_number())
            {
                return Err(TrustError::CertificateRevoked {
                    subject: one_line_dn(cert.subject_name()),
                    serial: serial_hex(cert),
                    ca: ca_subject,
                });
            }
        }
        if let Some(current) = newest(&crls) {
            if let Some(last_update) = current.last_update
                && last_update > options.now + CRL_SKEW
            {
                return Err(TrustError::CrlNotYetValid {
                    ca: ca_subject,
                    last_update,
                });
            }
            if let Some(next_update) = current.next_update
                && next_update < options.now
            {
                return Err(TrustError::CrlExpired {
                    ca: ca_subject,
                    next_update,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_headers_are_stripped_only_when_present() {
        assert_eq!(strip_text_headers(b"{\"a\":1}".to_vec()), b"{\"a\":1}");
        assert_eq!(
            strip_text_headers(b"Content-Type: text/plain\r\n\r\n{\"a\":1}\r\n".to_vec()),
            b"{\"a\":1}\r\n"
        );
        assert_eq!(
            strip_text_headers(b"content-type: text/plain\n\nx".to_vec()),
            b"x"
        );
    }
}
