//! The trust store: CA certificates, CRLs and namespace policies read from a CA directory.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::x509::{X509, X509Crl, X509CrlRef, X509Ref};

use crate::dn::one_line_dn;
use crate::error::TrustError;
use crate::policy::{self, Policies, PolicyKind};
use crate::time::to_utc;

/// A file of the CA directory that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped (unreadable, malformed, CRL not signed by its CA, …).
    pub reason: String,
}

/// The CRL situation of one CA of the directory (for `vmc doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlStatus {
    /// The CA's subject, one-line form.
    pub ca_subject: String,
    /// Whether the directory holds a CRL signed by this CA.
    pub present: bool,
    /// `nextUpdate` of the newest such CRL.
    pub next_update: Option<DateTime<Utc>>,
    /// Whether that CRL is past its `nextUpdate` at the time asked about.
    pub stale: bool,
}

/// A CA certificate of the directory.
#[derive(Debug, Clone)]
pub(crate) struct CaEntry {
    pub cert: X509,
    pub subject: String,
}

/// A CRL of the directory.
#[derive(Clone)]
pub(crate) struct CrlEntry {
    pub crl: Arc<X509Crl>,
    pub issuer: String,
    pub last_update: Option<DateTime<Utc>>,
    pub next_update: Option<DateTime<Utc>>,
}

impl fmt::Debug for CrlEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrlEntry")
            .field("issuer", &self.issuer)
            .field("last_update", &self.last_update)
            .field("next_update", &self.next_update)
            .finish_non_exhaustive()
    }
}

/// The trust anchors, CRLs and namespace policies of a site. `Send + Sync`; share it by
/// reference across verifications.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    pub(crate) cas: Vec<CaEntry>,
    pub(crate) crls: Vec<CrlEntry>,
    pub(crate) policies: Policies,
    skipped: Vec<SkippedFile>,
}

/// What a file name says a CA-directory file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    Cert,
    Crl,
    Namespaces,
    SigningPolicy,
}

fn is_hash(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn classify(name: &str) -> Option<(FileKind, &str)> {
    if name.starts_with('.') {
        return None; // editor and fetch-crl temporaries
    }
    if let Some(stem) = name.strip_suffix(".crl.pem") {
        return Some((FileKind::Crl, stem));
    }
    if let Some(stem) = name.strip_suffix(".pem") {
        return Some((FileKind::Cert, stem));
    }
    if let Some(stem) = name.strip_suffix(".namespaces") {
        return Some((FileKind::Namespaces, stem));
    }
    if let Some(stem) = name.strip_suffix(".signing_policy") {
        return Some((FileKind::SigningPolicy, stem));
    }
    let (stem, ext) = name.rsplit_once('.')?;
    if !is_hash(stem) {
        return None;
    }
    if !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_digit()) {
        return Some((FileKind::Cert, stem));
    }
    match ext.strip_prefix('r') {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            Some((FileKind::Crl, stem))
        }
        _ => None,
    }
}

fn looks_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn parse_certs(bytes: &[u8]) -> Result<Vec<X509>, String> {
    if looks_pem(bytes) {
        match X509::stack_from_pem(bytes) {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            Ok(_) => Err("no certificate in the PEM file".to_owned()),
            Err(e) => Err(format!("malformed PEM certificate: {e}")),
        }
    } else {
        X509::from_der(bytes)
            .map(|c| vec![c])
            .map_err(|e| format!("neither a PEM nor a DER certificate: {e}"))
    }
}

fn parse_crl(bytes: &[u8]) -> Result<X509Crl, String> {
    if looks_pem(bytes) {
        X509Crl::from_pem(bytes).map_err(|e| format!("malformed PEM CRL: {e}"))
    } else {
        X509Crl::from_der(bytes).map_err(|e| format!("neither a PEM nor a DER CRL: {e}"))
    }
}

fn same_name(crl: &X509CrlRef, ca: &X509Ref) -> bool {
    crl.issuer_name()
        .try_cmp(ca.subject_name())
        .is_ok_and(|o| o.is_eq())
}

/// Whether `crl` names `ca` as its issuer and is signed by `ca`'s key.
pub(crate) fn crl_signed_by(crl: &X509CrlRef, ca: &X509Ref) -> bool {
    same_name(crl, ca)
        && ca
            .public_key()
            .is_ok_and(|key| crl.verify(&key).unwrap_or(false))
}

impl CrlEntry {
    fn new(crl: X509Crl) -> Self {
        let last_update = to_utc(crl.last_update());
        let next_update = crl.next_update().and_then(to_utc);
        Self {
            issuer: one_line_dn(crl.issuer_name()),
            crl: Arc::new(crl),
            last_update,
            next_update,
        }
    }
}

impl TrustStore {
    /// Reads a CA directory (IGTF layout). Fails only when the directory itself cannot be
    /// listed; unreadable or malformed files are skipped and reported by [`Self::skipped`].
    pub fn load(dir: &Path) -> Result<TrustStore, TrustError> {
        let unreadable = |source| TrustError::CaDirUnreadable {
            path: dir.to_path_buf(),
            source,
        };
        let mut store = TrustStore::default();
        let mut files: Vec<(PathBuf, FileKind, String)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(unreadable)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    store.skip(dir, format!("cannot list a directory entry: {e}"));
                    continue;
                }
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue; // never an IGTF name
            };
            if let Some((kind, stem)) = classify(name) {
                files.push((entry.path(), kind, stem.to_owned()));
            }
        }
        files.sort();

        // Certificates first: CRLs are matched to them, policies resolve SELF through them.
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut self_names: HashMap<String, String> = HashMap::new();
        for (path, _, stem) in files.iter().filter(|f| f.1 == FileKind::Cert) {
            let certs = match fs::read(path) {
                Ok(bytes) => parse_certs(&bytes),
                Err(e) => Err(format!("unreadable: {e}")),
            };
            match certs {
                Ok(certs) => {
                    for cert in certs {
                        let subject = one_line_dn(cert.subject_name());
                        self_names
                            .entry(stem.to_lowercase())
                            .or_insert_with(|| subject.clone());
                        if store.add_ca(cert, &mut seen) {
                            tracing::trace!(path = %path.display(), %subject, "CA certificate");
                        }
                    }
                }
                Err(reason) => store.skip(path, reason),
            }
        }
        for ca in &store.cas {
            let hash = format!("{:08x}", ca.cert.subject_name_hash());
            self_names.entry(hash).or_insert_with(|| ca.subject.clone());
        }

        let mut seen_crls: HashSet<Vec<u8>> = HashSet::new();
        for (path, _, _) in files.iter().filter(|f| f.1 == FileKind::Crl) {
            let crl = match fs::read(path) {
                Ok(bytes) => parse_crl(&bytes),
                Err(e) => Err(format!("unreadable: {e}")),
            };
            let crl = match crl {
                Ok(crl) => crl,
                Err(reason) => {
                    store.skip(path, reason);
                    continue;
                }
            };
            let named: Vec<&CaEntry> = store
                .cas
                .iter()
                .filter(|ca| same_name(&crl, &ca.cert))
                .collect();
            if !named.is_empty() && !named.iter().any(|ca| crl_signed_by(&crl, &ca.cert)) {
                let reason = format!("CRL not signed by its CA {}", named[0].subject);
                tracing::warn!(path = %path.display(), "{reason}");
                store.skip(path, reason);
                continue;
            }
            if crl.to_der().is_ok_and(|der| seen_crls.insert(der)) {
                store.crls.push(CrlEntry::new(crl));
            }
        }

        let mut seen_policies: HashSet<PathBuf> = HashSet::new();
        for (path, kind, stem) in &files {
            let kind = match kind {
                FileKind::Namespaces => PolicyKind::Namespaces,
                FileKind::SigningPolicy => PolicyKind::SigningPolicy,
                _ => continue,
            };
            // IGTF ships `<hash>.namespaces` as a symlink to `<alias>.namespaces`: read once.
            let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            if !seen_policies.insert(canonical) {
                continue;
            }
            let text = match fs::read(path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    store.skip(path, format!("unreadable: {e}"));
                    continue;
                }
            };
            let parsed = match kind {
                PolicyKind::Namespaces => policy::parse_namespaces(&text),
                PolicyKind::SigningPolicy => policy::parse_signing_policy(&text),
            };
            let self_name = self_names.get(&stem.to_lowercase()).map(String::as_str);
            let added = parsed.and_then(|rules| store.policies.add(kind, path, rules, self_name));
            if let Err(reason) = added {
                store.skip(path, format!("malformed policy: {reason}"));
            }
        }

        tracing::debug!(
            dir = %dir.display(),
            cas = store.cas.len(),
            crls = store.crls.len(),
            policies = store.policies.issuer_count(),
            skipped = store.skipped.len(),
            "CA directory loaded"
        );
        Ok(store)
    }

    /// A store from certificates and CRLs in memory (no namespace policies). Duplicates are
    /// dropped; CRLs are matched to their CAs at verification time.
    pub fn from_pem_certs_and_crls(cas: &[X509], crls: &[X509Crl]) -> TrustStore {
        let mut store = TrustStore::default();
        let mut seen = HashSet::new();
        for ca in cas {
            store.add_ca(ca.clone(), &mut seen);
        }
        // X509Crl is not Clone: copy through DER.
        store.crls = crls
            .iter()
            .filter_map(|crl| crl.to_der().ok())
            .filter_map(|der| X509Crl::from_der(&der).ok())
            .map(CrlEntry::new)
            .collect();
        store
    }

    fn add_ca(&mut self, cert: X509, seen: &mut HashSet<Vec<u8>>) -> bool {
        let fingerprint = cert
            .digest(MessageDigest::sha256())
            .map(|d| d.to_vec())
            .unwrap_or_default();
        if !seen.insert(fingerprint) {
            return false;
        }
        let subject = one_line_dn(cert.subject_name());
        self.cas.push(CaEntry { cert, subject });
        true
    }

    fn skip(&mut self, path: &Path, reason: String) {
        tracing::warn!(path = %path.display(), %reason, "skipping CA directory file");
        self.skipped.push(SkippedFile {
            path: path.to_path_buf(),
            reason,
        });
    }

    /// How many distinct CA certificates were loaded.
    pub fn ca_count(&self) -> usize {
        self.cas.len()
    }

    /// How many distinct CRLs were loaded (CRLs not signed by their CA are not counted).
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// How many CAs an IGTF namespace policy constrains.
    pub fn policy_count(&self) -> usize {
        self.policies.issuer_count()
    }

    /// The files that were skipped, with the reason.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    /// The CA certificates (e.g. for TLS trust in vmc-fetch).
    pub fn root_certificates(&self) -> Vec<X509> {
        self.cas.iter().map(|ca| ca.cert.clone()).collect()
    }

    /// The CRLs signed by `ca` (name and signature match).
    pub(crate) fn crls_of(&self, ca: &X509Ref) -> Vec<&CrlEntry> {
        self.crls
            .iter()
            .filter(|entry| crl_signed_by(&entry.crl, ca))
            .collect()
    }

    /// The CRL situation of every CA at time `now`, one entry per CA certificate.
    pub fn crl_status(&self, now: DateTime<Utc>) -> Vec<CrlStatus> {
        self.cas
            .iter()
            .map(|ca| {
                let crls = self.crls_of(&ca.cert);
                let next_update = newest(&crls).and_then(|c| c.next_update);
                CrlStatus {
                    ca_subject: ca.subject.clone(),
                    present: !crls.is_empty(),
                    next_update,
                    stale: next_update.is_some_and(|n| n < now),
                }
            })
            .collect()
    }
}

/// The CRL with the latest `lastUpdate`.
pub(crate) fn newest<'a>(crls: &[&'a CrlEntry]) -> Option<&'a CrlEntry> {
    crls.iter().copied().max_by_key(|c| c.last_update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_igtf_names() {
        assert_eq!(classify("a4b87665.0"), Some((FileKind::Cert, "a4b87665")));
        assert_eq!(classify("A4B87665.12"), Some((FileKind::Cert, "A4B87665")));
        assert_eq!(classify("a4b87665.r0"), Some((FileKind::Crl, "a4b87665")));
        assert_eq!(classify("AEGIS.pem"), Some((FileKind::Cert, "AEGIS")));
        assert_eq!(classify("AEGIS.crl.pem"), Some((FileKind::Crl, "AEGIS")));
        assert_eq!(
            classify("AEGIS.namespaces"),
            Some((FileKind::Namespaces, "AEGIS"))
        );
        assert_eq!(
            classify("a4b87665.signing_policy"),
            Some((FileKind::SigningPolicy, "a4b87665"))
        );
        for ignored in [
            "AEGIS.info",
            "AEGIS.crl_url",
            "README",
            "a4b8766.0",
            "a4b87665.r",
            ".x.pem",
        ] {
            assert_eq!(classify(ignored), None, "{ignored}");
        }
    }
}
