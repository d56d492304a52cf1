//! A test PKI generated in code: CAs, endorser certificates, CRLs, a hashed CA directory in
//! the IGTF layout, and S/MIME / PKCS#7 signing of image lists — all relative to an injected
//! clock, never the wall clock.
//!
//! ```no_run
//! # use vmc_testkit::pki::{TestPki, CaDirOptions};
//! # let now = chrono::Utc::now();
//! let pki = TestPki::generate(now);
//! let dir = tempfile::tempdir().unwrap();
//! pki.write_ca_dir(dir.path(), CaDirOptions::default());
//! let signed = pki.endorser.sign_smime(b"{\"hv:imagelist\": {}}");
//! ```
//!
//! Keys are EC P-256 (fast to generate). Every helper panics on an OpenSSL failure: this is
//! test support. DNs are written in OpenSSL one-line form (`/C=XX/O=Org/CN=Name`) without
//! escapes, which is how `openssl x509 -subject -nameopt compat` prints them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{
    X509, X509Builder, X509Crl, X509CrlBuilder, X509Extension, X509Name, X509Ref,
    X509RevokedBuilder,
};

/// Subject of the test root CA.
pub const ROOT_DN: &str = "/C=XX/O=TestGrid/CN=Test Root CA";
/// Subject of the test intermediate CA (issued by the root).
pub const INTERMEDIATE_DN: &str = "/C=XX/O=TestGrid/CN=Test Intermediate CA";
/// Subject of the endorser (issued by the root) — and of the rogue, issued by the rogue CA.
pub const ENDORSER_DN: &str = "/C=XX/O=TestGrid/OU=Images/CN=Test Endorser";
/// Subject of the second endorser (issued by the intermediate).
pub const ENDORSER2_DN: &str = "/C=XX/O=TestGrid/OU=Images/CN=Test Second Endorser";
/// Subject of a valid certificate that endorses nothing.
pub const OTHER_DN: &str = "/C=XX/O=TestGrid/OU=Images/CN=Test Other Endorser";
/// Subject of the certificate listed in the root's CRL.
pub const REVOKED_DN: &str = "/C=XX/O=TestGrid/OU=Images/CN=Test Revoked Endorser";
/// Subject of the certificate that expired a year before `now`.
pub const EXPIRED_DN: &str = "/C=XX/O=TestGrid/OU=Images/CN=Test Expired Endorser";
/// Subject of the certificate that becomes valid a year after `now`.
pub const NOT_YET_VALID_DN: &str = "/C=XX/O=TestGrid/OU=Images/CN=Test Future Endorser";
/// Subject of the rogue CA (in no CA directory).
pub const ROGUE_CA_DN: &str = "/C=XX/O=TestRogue/CN=Test Rogue CA";

/// Serial of the endorser (the rogue reuses it).
pub const ENDORSER_SERIAL: u32 = 0x1000;
/// Serial of the revoked certificate.
pub const REVOKED_SERIAL: u32 = 0x1002;

fn time(t: DateTime<Utc>) -> Asn1Time {
    Asn1Time::from_unix(t.timestamp()).expect("asn1 time")
}

fn serial(n: u32) -> Asn1Integer {
    BigNum::from_u32(n)
        .and_then(|bn| bn.to_asn1_integer())
        .expect("serial")
}

/// Builds an `X509Name` from a one-line DN such as `/C=XX/O=Org/CN=Name` (no escapes).
pub fn name(one_line: &str) -> X509Name {
    let mut builder = X509Name::builder().expect("name builder");
    for part in one_line.split('/').filter(|p| !p.is_empty()) {
        let (field, value) = part.split_once('=').expect("field=value");
        builder
            .append_entry_by_text(field, value)
            .expect("name entry");
    }
    builder.build()
}

/// A fresh EC P-256 key.
pub fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("ec key")).expect("pkey")
}

/// Validity and serial of a certificate to issue.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Serial number.
    pub serial: u32,
}

impl Validity {
    /// Valid from `now - 30 days` to `now + 10 years`, with `serial`.
    pub fn around(now: DateTime<Utc>, serial: u32) -> Self {
        Self {
            not_before: now - Duration::days(30),
            not_after: now + Duration::days(3650),
            serial,
        }
    }
}

fn build_cert(
    subject: &str,
    key: &PKeyRef<Private>,
    issuer: Option<(&X509Ref, &PKeyRef<Private>)>,
    validity: Validity,
    ca: bool,
) -> X509 {
    let mut b = X509Builder::new().expect("x509 builder");
    b.set_version(2).expect("version");
    b.set_serial_number(&serial(validity.serial))
        .expect("serial");
    b.set_subject_name(&name(subject)).expect("subject");
    match issuer {
        Some((cert, _)) => b.set_issuer_name(cert.subject_name()).expect("issuer"),
        None => b.set_issuer_name(&name(subject)).expect("issuer"),
    }
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&time(validity.not_before))
        .expect("not before");
    b.set_not_after(&time(validity.not_after))
        .expect("not after");
    let mut exts: Vec<X509Extension> = Vec::new();
    if ca {
        exts.push(BasicConstraints::new().critical().ca().build().expect("bc"));
        exts.push(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .expect("ku"),
        );
    } else {
        exts.push(BasicConstraints::new().critical().build().expect("bc"));
        exts.push(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .non_repudiation()
                .build()
                .expect("ku"),
        );
        exts.push(
            ExtendedKeyUsage::new()
                .email_protection()
                .client_auth()
                .build()
                .expect("eku"),
        );
    }
    {
        let ctx = b.x509v3_context(issuer.map(|(c, _)| c), None);
        exts.push(SubjectKeyIdentifier::new().build(&ctx).expect("ski"));
        if issuer.is_some() {
            exts.push(
                AuthorityKeyIdentifier::new()
                    .keyid(true)
                    .build(&ctx)
                    .expect("aki"),
            );
        }
    }
    for ext in exts {
        b.append_extension(ext).expect("extension");
    }
    let signing_key = issuer.map_or(key, |(_, k)| k);
    b.sign(signing_key, MessageDigest::sha256())
        .expect("sign cert");
    b.build()
}

/// A certificate authority: its certificate, key and the chain above it.
#[derive(Clone)]
pub struct Ca {
    /// The CA certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
    /// Subject, one-line form.
    pub subject: String,
    /// Issuer, one-line form (equal to `subject` for a root).
    pub issuer: String,
    /// The CA certificates above this one, nearest first (empty for a root).
    pub chain: Vec<X509>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A self-signed root CA with a fresh key.
    pub fn root(subject: &str, validity: Validity) -> Ca {
        let key = new_key();
        let cert = build_cert(subject, &key, None, validity, true);
        Ca {
            cert,
            key,
            subject: subject.to_owned(),
            issuer: subject.to_owned(),
            chain: Vec::new(),
        }
    }

    /// A subordinate CA issued by this one.
    pub fn issue_ca(&self, subject: &str, validity: Validity) -> Ca {
        let key = new_key();
        let cert = build_cert(subject, &key, Some((&self.cert, &self.key)), validity, true);
        let mut chain = vec![self.cert.clone()];
        chain.extend(self.chain.iter().cloned());
        Ca {
            cert,
            key,
            subject: subject.to_owned(),
            issuer: self.subject.clone(),
            chain,
        }
    }

    /// An end-entity (signing) certificate issued by this CA.
    pub fn issue_leaf(&self, subject: &str, validity: Validity) -> Leaf {
        let key = new_key();
        let cert = build_cert(
            subject,
            &key,
            Some((&self.cert, &self.key)),
            validity,
            false,
        );
        // The intermediates a signer ships in its messages: the CAs below the root.
        let mut intermediates = Vec::new();
        if !self.chain.is_empty() {
            intermediates.push(self.cert.clone());
            intermediates.extend(self.chain.iter().take(self.chain.len() - 1).cloned());
        }
        Leaf {
            cert,
            key,
            subject: subject.to_owned(),
            issuer: self.subject.clone(),
            intermediates,
        }
    }

    /// OpenSSL subject hash, as used for `<hash>.0` file names.
    pub fn hash(&self) -> u32 {
        self.cert.subject_name_hash()
    }

    /// The `<hash>` file-name stem (`%08x`).
    pub fn hash_name(&self) -> String {
        format!("{:08x}", self.hash())
    }

    /// A CRL of this CA listing `revoked`, signed by this CA's key.
    pub fn crl(
        &self,
        revoked: &[&X509Ref],
        last_update: DateTime<Utc>,
        next_update: DateTime<Utc>,
    ) -> X509Crl {
        self.crl_signed_with(&self.key, &self.cert, revoked, last_update, next_update)
    }

    /// A CRL naming this CA as issuer but signed by another key (`signer_cert` provides the
    /// authority key identifier): a forgery that must be ignored.
    pub fn crl_signed_with(
        &self,
        key: &PKeyRef<Private>,
        signer_cert: &X509Ref,
        revoked: &[&X509Ref],
        last_update: DateTime<Utc>,
        next_update: DateTime<Utc>,
    ) -> X509Crl {
        let mut b = X509CrlBuilder::new().expect("crl builder");
        b.set_issuer_name(self.cert.subject_name())
            .expect("crl issuer");
        b.set_last_update(&time(last_update)).expect("last update");
        b.set_next_update(&time(next_update)).expect("next update");
        for cert in revoked {
            let mut r = X509RevokedBuilder::new().expect("revoked builder");
            r.set_serial_number(cert.serial_number())
                .expect("revoked serial");
            r.set_revocation_date(&time(last_update))
                .expect("revocation date");
            b.add_revoked(r.build()).expect("add revoked");
        }
        // The builder insists on an authority key identifier and a CRL number.
        let scratch = X509Builder::new().expect("scratch builder");
        let aki = {
            let ctx = scratch.x509v3_context(Some(signer_cert), None);
            AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&ctx)
                .expect("crl aki")
        };
        b.append_extension(aki).expect("append aki");
        let number = u32::try_from(last_update.timestamp().rem_euclid(0x7fff_ffff)).unwrap_or(1);
        let der = der_integer(number);
        let oid = Asn1Object::from_str("2.5.29.20").expect("crlNumber oid");
        let value = Asn1OctetString::new_from_bytes(&der).expect("octet string");
        let ext = X509Extension::new_from_der(&oid, false, &value).expect("crl number ext");
        b.append_extension(ext).expect("append crl number");
        b.sort().expect("sort crl");
        b.sign(key, MessageDigest::sha256()).expect("sign crl");
        b.build().expect("build crl")
    }
}

/// DER INTEGER of a non-negative number.
fn der_integer(n: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    if bytes.first().is_none_or(|&b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    let mut out = vec![0x02, u8::try_from(bytes.len()).unwrap_or(5)];
    out.extend(bytes);
    out
}

/// How a message is laid out by [`Leaf::sign_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignFormat {
    /// S/MIME `multipart/signed`, detached signature.
    SmimeDetached,
    /// S/MIME `application/x-pkcs7-mime`, content inside.
    SmimeOpaque,
    /// PEM PKCS#7 signed-data.
    Pem,
    /// DER PKCS#7 signed-data.
    Der,
}

/// Options of [`Leaf::sign_with`].
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    /// The layout.
    pub format: SignFormat,
    /// Sign the bytes as they are (`-binary`); otherwise text is canonicalised to CRLF line
    /// ends before signing, as `openssl smime -sign` does by default.
    pub binary: bool,
    /// Ship the signer's intermediate CAs in the message.
    pub include_chain: bool,
    /// Ship no certificate at all (not even the signer's).
    pub no_certs: bool,
    /// Sign in S/MIME text mode (the content gets a `Content-Type: text/plain` header).
    pub text: bool,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            format: SignFormat::SmimeDetached,
            binary: false,
            include_chain: true,
            no_certs: false,
            text: false,
        }
    }
}

/// An end-entity certificate that signs image lists.
#[derive(Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
    /// Subject, one-line form.
    pub subject: String,
    /// Issuer, one-line form.
    pub issuer: String,
    /// The intermediate CAs between this certificate and its root (shipped in messages).
    pub intermediates: Vec<X509>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// Subject in one-line form.
    pub fn subject_one_line(&self) -> String {
        self.subject.clone()
    }

    /// Issuer in one-line form.
    pub fn issuer_one_line(&self) -> String {
        self.issuer.clone()
    }

    /// Serial number, uppercase hex as `openssl x509 -serial` prints it.
    pub fn serial_hex(&self) -> String {
        self.cert
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
            .expect("serial hex")
    }

    /// Detached `multipart/signed` S/MIME, text canonicalised to CRLF (like `openssl smime
    /// -sign`), with the intermediates in the message.
    pub fn sign_smime(&self, payload: &[u8]) -> Vec<u8> {
        self.sign_with(payload, &SignOptions::default())
    }

    /// Detached `multipart/signed` S/MIME over the bytes as they are (LF stays LF).
    pub fn sign_smime_binary(&self, payload: &[u8]) -> Vec<u8> {
        self.sign_with(
            payload,
            &SignOptions {
                binary: true,
                ..SignOptions::default()
            },
        )
    }

    /// Opaque `application/x-pkcs7-mime` S/MIME.
    pub fn sign_opaque(&self, payload: &[u8]) -> Vec<u8> {
        self.sign_with(
            payload,
            &SignOptions {
                format: SignFormat::SmimeOpaque,
                binary: true,
                ..SignOptions::default()
            },
        )
    }

    /// PEM PKCS#7 signed-data with the content inside.
    pub fn sign_pem(&self, payload: &[u8]) -> Vec<u8> {
        self.sign_with(
            payload,
            &SignOptions {
                format: SignFormat::Pem,
                binary: true,
                ..SignOptions::default()
            },
        )
    }

    /// DER PKCS#7 signed-data with the content inside.
    pub fn sign_der(&self, payload: &[u8]) -> Vec<u8> {
        self.sign_with(
            payload,
            &SignOptions {
                format: SignFormat::Der,
                binary: true,
                ..SignOptions::default()
            },
        )
    }

    /// The PKCS#7 signed-data over `payload` (content inside unless `detached`).
    pub fn pkcs7(&self, payload: &[u8], options: &SignOptions, detached: bool) -> Pkcs7 {
        let mut certs = Stack::new().expect("stack");
        if options.include_chain {
            for c in &self.intermediates {
                certs.push(c.clone()).expect("push cert");
            }
        }
        let mut flags = Pkcs7Flags::empty();
        if detached {
            flags |= Pkcs7Flags::DETACHED;
        }
        if options.binary {
            flags |= Pkcs7Flags::BINARY;
        }
        if options.no_certs {
            flags |= Pkcs7Flags::NOCERTS;
        }
        if options.text {
            flags |= Pkcs7Flags::TEXT;
        }
        Pkcs7::sign(&self.cert, &self.key, &certs, payload, flags).expect("pkcs7 sign")
    }

    /// Signs `payload` in the layout and manner of `options`.
    pub fn sign_with(&self, payload: &[u8], options: &SignOptions) -> Vec<u8> {
        let detached = options.format == SignFormat::SmimeDetached;
        let p7 = self.pkcs7(payload, options, detached);
        match options.format {
            SignFormat::SmimeDetached | SignFormat::SmimeOpaque => {
                let mut flags = Pkcs7Flags::empty();
                if detached {
                    flags |= Pkcs7Flags::DETACHED;
                }
                if options.binary {
                    flags |= Pkcs7Flags::BINARY;
                }
                if options.text {
                    flags |= Pkcs7Flags::TEXT;
                }
                p7.to_smime(payload, flags).expect("to smime")
            }
            SignFormat::Pem => p7.to_pem().expect("to pem"),
            SignFormat::Der => p7.to_der().expect("to der"),
        }
    }
}

/// Rewrites a DER PKCS#7 signed-data so that its SignerInfos are the first one repeated
/// `copies` times (0 gives a signed-data without signers): for signer-count tests.
pub fn with_signer_info_copies(der: &[u8], copies: usize) -> Vec<u8> {
    fn read(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
        let tag = input[0];
        let (len, header) = if input[1] < 0x80 {
            (usize::from(input[1]), 2)
        } else {
            let n = usize::from(input[1] & 0x7f);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            (len, 2 + n)
        };
        (
            tag,
            &input[header..header + len],
            &input[..header + len],
            &input[header + len..],
        )
    }
    fn children(mut content: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !content.is_empty() {
            let (_, _, raw, rest) = read(content);
            out.push(raw);
            content = rest;
        }
        out
    }
    fn write(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | u8::try_from(bytes.len()).unwrap());
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    let (ci_tag, ci, _, _) = read(der);
    let ci_children = children(ci);
    let (exp_tag, exp, _, _) = read(ci_children[1]);
    let (sd_tag, sd, _, _) = read(exp);
    let mut fields = children(sd);
    let infos = fields.pop().unwrap();
    let (set_tag, set, _, _) = read(infos);
    let first = children(set)[0].to_vec();
    let new_set = write(set_tag, &first.repeat(copies));
    let mut sd_content: Vec<u8> = fields.concat();
    sd_content.extend(new_set);
    let new_sd = write(sd_tag, &sd_content);
    let new_exp = write(exp_tag, &new_sd);
    let mut ci_content = ci_children[0].to_vec();
    ci_content.extend(new_exp);
    write(ci_tag, &ci_content)
}

/// What [`TestPki::write_ca_dir`] writes.
#[derive(Debug, Clone, Copy)]
pub struct CaDirOptions {
    /// Write the CRLs (`<hash>.r0`).
    pub crls: bool,
    /// The root's CRL is past its next update (issued `now - 60d`, next update `now - 30d`).
    pub stale_crl: bool,
    /// Write the intermediate CA (and its CRL).
    pub include_intermediate: bool,
    /// The root's CRL is a forgery: the root's name, signed by the rogue CA's key.
    pub wrong_key_crl: bool,
}

impl Default for CaDirOptions {
    /// Root and intermediate with current CRLs.
    fn default() -> Self {
        Self {
            crls: true,
            stale_crl: false,
            include_intermediate: true,
            wrong_key_crl: false,
        }
    }
}

/// The whole test PKI, valid around one instant.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The instant everything is valid around.
    pub now: DateTime<Utc>,
    /// Root CA (`ROOT_DN`), valid `now - 30d .. now + 10y`.
    pub root: Ca,
    /// Intermediate CA (`INTERMEDIATE_DN`), issued by the root.
    pub intermediate: Ca,
    /// The endorser (`ENDORSER_DN`, serial `ENDORSER_SERIAL`), issued by the root.
    pub endorser: Leaf,
    /// A second endorser (`ENDORSER2_DN`), issued by the intermediate.
    pub endorser2: Leaf,
    /// A valid certificate of the root that endorses nothing (`OTHER_DN`).
    pub other: Leaf,
    /// A certificate of the root listed in the root's CRL (`REVOKED_DN`).
    pub revoked: Leaf,
    /// A certificate of the root valid `now - 2y .. now - 1y` (`EXPIRED_DN`).
    pub expired: Leaf,
    /// A certificate of the root valid `now + 1y .. now + 2y` (`NOT_YET_VALID_DN`).
    pub not_yet_valid: Leaf,
    /// A self-signed CA in no CA directory (`ROGUE_CA_DN`).
    pub rogue_ca: Ca,
    /// The rogue CA's certificate with the endorser's subject and serial.
    pub rogue: Leaf,
    /// A self-signed CA with the root's own subject but another key.
    pub impostor_root: Ca,
    /// The impostor root's certificate with the endorser's subject and serial.
    pub impostor: Leaf,
}

impl TestPki {
    /// Generates the PKI, everything valid around `now` (see the field docs).
    pub fn generate(now: DateTime<Utc>) -> TestPki {
        let ca_validity = |serial| Validity::around(now, serial);
        let root = Ca::root(ROOT_DN, ca_validity(1));
        let intermediate = root.issue_ca(INTERMEDIATE_DN, ca_validity(2));
        let endorser = root.issue_leaf(ENDORSER_DN, Validity::around(now, ENDORSER_SERIAL));
        let other = root.issue_leaf(OTHER_DN, Validity::around(now, 0x1001));
        let revoked = root.issue_leaf(REVOKED_DN, Validity::around(now, REVOKED_SERIAL));
        let expired = root.issue_leaf(
            EXPIRED_DN,
            Validity {
                not_before: now - Duration::days(730),
                not_after: now - Duration::days(365),
                serial: 0x1003,
            },
        );
        let not_yet_valid = root.issue_leaf(
            NOT_YET_VALID_DN,
            Validity {
                not_before: now + Duration::days(365),
                not_after: now + Duration::days(730),
                serial: 0x1004,
            },
        );
        let endorser2 = intermediate.issue_leaf(ENDORSER2_DN, Validity::around(now, 0x2000));
        let rogue_ca = Ca::root(ROGUE_CA_DN, ca_validity(1));
        let rogue = rogue_ca.issue_leaf(ENDORSER_DN, Validity::around(now, ENDORSER_SERIAL));
        let impostor_root = Ca::root(ROOT_DN, ca_validity(1));
        let impostor =
            impostor_root.issue_leaf(ENDORSER_DN, Validity::around(now, ENDORSER_SERIAL));
        TestPki {
            now,
            root,
            intermediate,
            endorser,
            endorser2,
            other,
            revoked,
            expired,
            not_yet_valid,
            rogue_ca,
            rogue,
            impostor_root,
            impostor,
        }
    }

    /// The root's current CRL (lists `revoked`; issued `now - 1d`, next update `now + 30d`).
    pub fn root_crl(&self) -> X509Crl {
        self.root.crl(
            &[&self.revoked.cert],
            self.now - Duration::days(1),
            self.now + Duration::days(30),
        )
    }

    /// The root's stale CRL (issued `now - 60d`, next update `now - 30d`).
    pub fn stale_root_crl(&self) -> X509Crl {
        self.root.crl(
            &[&self.revoked.cert],
            self.now - Duration::days(60),
            self.now - Duration::days(30),
        )
    }

    /// A CRL with the root's name signed by the rogue CA's key; it lists nothing.
    pub fn forged_root_crl(&self) -> X509Crl {
        self.root.crl_signed_with(
            &self.rogue_ca.key,
            &self.rogue_ca.cert,
            &[],
            self.now - Duration::days(1),
            self.now + Duration::days(30),
        )
    }

    /// The intermediate's current CRL (empty).
    pub fn intermediate_crl(&self) -> X509Crl {
        self.intermediate.crl(
            &[],
            self.now - Duration::days(1),
            self.now + Duration::days(30),
        )
    }

    /// Writes a hashed CA directory (`<hash>.0` certificates, `<hash>.r0` CRLs, PEM) into
    /// `dir`, which must exist. `stale_crl` and `wrong_key_crl` concern the root's CRL.
    pub fn write_ca_dir(&self, dir: &Path, options: CaDirOptions) {
        write_cert(dir, &self.root.cert);
        if options.include_intermediate {
            write_cert(dir, &self.intermediate.cert);
        }
        if options.crls {
            let root_crl = if options.wrong_key_crl {
                self.forged_root_crl()
            } else if options.stale_crl {
                self.stale_root_crl()
            } else {
                self.root_crl()
            };
            write_crl(dir, &self.root, &root_crl);
            if options.include_intermediate {
                write_crl(dir, &self.intermediate, &self.intermediate_crl());
            }
        }
    }

    /// A fresh temporary CA directory written with `options`.
    pub fn ca_dir(&self, options: CaDirOptions) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        self.write_ca_dir(dir.path(), options);
        dir
    }
}

/// Writes `cert` as `<subject hash>.0` (PEM) into `dir`.
pub fn write_cert(dir: &Path, cert: &X509Ref) {
    let path = dir.join(format!("{:08x}.0", cert.subject_name_hash()));
    fs::write(path, cert.to_pem().expect("cert pem")).expect("write cert");
}

/// Writes `crl` as `<hash of ca>.r0` (PEM) into `dir`.
pub fn write_crl(dir: &Path, ca: &Ca, crl: &X509Crl) {
    let path = dir.join(format!("{}.r0", ca.hash_name()));
    fs::write(path, crl.to_pem().expect("crl pem")).expect("write crl");
}
