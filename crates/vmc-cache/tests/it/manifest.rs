//! The whole openssl-cli interop MANIFEST through the update pipeline, plus the cache
//! consequences of `bad-checksum` and `removed-image`.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use serde_json::Value;
use vmc_cache::{Clock, Config, Dispatcher, Mirror, NoProgress, SyncOptions, UpdateStatus, Vmc};
use vmc_model::{CertIdentity, ErrorCode, ExpiryReason, NewImagePolicy};
use vmc_store::ImageFilter;
use vmc_testkit::server::{Route, TestServer};

use crate::{cached_ids, openssl_cli, request};

fn fixtures() -> PathBuf {
    openssl_cli()
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("MANIFEST.json")).unwrap()).unwrap()
}

fn list_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("lists").join(name)).unwrap()
}

/// Subject and issuer of a PEM certificate in OpenSSL's one-line form.
fn identity_of(pem: &Path) -> CertIdentity {
    let out = Command::new("openssl")
        .args([
            "x509", "-noout", "-subject", "-issuer", "-nameopt", "compat", "-in",
        ])
        .arg(pem)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl x509 failed on {}",
        pem.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .trim()
            .to_owned()
    };
    CertIdentity {
        subject: field("subject="),
        issuer: field("issuer="),
    }
}

struct Interop {
    manifest: Value,
    server: TestServer,
    home: tempfile::TempDir,
}

impl Interop {
    fn new() -> Self {
        let server = TestServer::start();
        server.serve_dir("/images", fixtures().join("images"));
        Self {
            manifest: manifest(),
            server,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, home: &Path) -> Config {
        let mut config = Config::with_home(home);
        config.ca_dir = fixtures().join("pki/ca-dir");
        let at: DateTime<Utc> = self.manifest["verify_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        config.clock = Clock::fixed(at);
        config.mirrors = vec![Mirror {
            from: self.manifest["base_url"].as_str().unwrap().to_owned(),
            to: self.server.base_url(),
        }];
        config
    }

    /// A fresh vmc home (below the shared temporary directory) with the MANIFEST's endorser.
    fn fresh(&self, name: &str) -> Vmc {
        let home = self.home.path().join(name.replace('.', "_"));
        std::fs::create_dir_all(&home).unwrap();
        let vmc = Vmc::open(self.config(&home)).unwrap();
        let e = &self.manifest["endorser"];
        vmc.store()
            .add_endorser(
                "interop",
                &[CertIdentity {
                    subject: e["subject"].as_str().unwrap().to_owned(),
                    issuer: e["issuer"].as_str().unwrap().to_owned(),
                }],
            )
            .unwrap();
        vmc
    }

    /// Serves `list` on the feed of case `name` and returns its URL.
    fn feed(&self, name: &str, list: &str) -> String {
        let path = format!("/feed/{name}");
        self.server.replace(&path, Route::new(list_bytes(list)));
        self.server.url(&path)
    }
}

fn expected_code(case: &str) -> ErrorCode {
    match case {
        "tampered.smime" => ErrorCode::SignatureInvalid,
        "revoked.smime" => ErrorCode::CertificateRevoked,
        "expired-signer.smime" => ErrorCode::CertificateExpired,
        "rogue.smime" => ErrorCode::CertificateUntrusted,
        "other-signer.smime" => ErrorCode::SignerNotEndorser,
        "json-dn-mismatch.smime" => ErrorCode::EndorserMismatch,
        "expired-list.smime" => ErrorCode::ListExpired,
        "future-created.smime" => ErrorCode::ListNotYetValid,
        "not-json.smime" | "missing-keys.smime" | "duplicate-ids.smime" => ErrorCode::ListMalformed,
        "other-identifier.smime" => ErrorCode::IdentifierMismatch,
        "rollback-v0.smime" => ErrorCode::VersionRollback,
        "unsigned.json" => ErrorCode::NotSigned,
        other => panic!("no expected code for reject case {other}"),
    }
}

/// Runs one MANIFEST case; returns a description of what went wrong, if anything.
fn run_case(env: &Interop, name: &str, case: &Value) -> Result<(), String> {
    let vmc = env.fresh(name);
    let dispatcher = Dispatcher::new(vmc.config());
    if let Some(signer) = case["endorser"].as_str() {
        let identity = identity_of(&fixtures().join(format!("pki/{signer}.pem")));
        vmc.store().add_endorser(signer, &[identity]).unwrap();
    }
    let expect = case["expect"].as_str().unwrap();
    let (report, after_version) = match case["after"].as_str() {
        Some(after) => {
            let url = env.feed(name, after);
            let first = vmc
                .subscribe(&request(&url, NewImagePolicy::Subscribe), &dispatcher)
                .unwrap();
            if first.status != UpdateStatus::Added {
                return Err(format!("{after} not added first: {:?}", first.error));
            }
            env.feed(name, name);
            let sub = vmc.store().find_subscription(&url).unwrap().unwrap();
            (vmc.update(&sub, &dispatcher).unwrap(), first.version)
        }
        None => {
            let url = env.feed(name, name);
            (
                vmc.subscribe(&request(&url, NewImagePolicy::Subscribe), &dispatcher)
                    .unwrap(),
                None,
            )
        }
    };
    let subs = vmc.store().subscriptions().unwrap();
    match expect {
        "accept" | "accept-list" | "reject-image" => {
            if !matches!(report.status, UpdateStatus::Added | UpdateStatus::Updated) {
                return Err(format!("expected acceptance, got {:?}", report.error));
            }
            let sub = subs.first().ok_or("no subscription stored")?;
            if sub.last_error.is_some() || sub.current.is_none() {
                return Err(format!("bad stored state {sub:?}"));
            }
            if report.signer.is_none() {
                return Err("no signer reported".into());
            }
            let images = vmc.store().images(&ImageFilter::default()).unwrap();
            if expect == "reject-image" {
                let rejected = report
                    .rejected_images
                    .first()
                    .ok_or("no rejected image reported")?;
                let bad = rejected.identifier.clone().unwrap_or_default();
                if vmc_model::is_safe_identifier(&bad) {
                    return Err(format!("rejected image {bad:?} has a safe identifier"));
                }
                if images.iter().any(|r| r.image.identifier.as_str() == bad) {
                    return Err(format!("unsafe image {bad:?} stored"));
                }
                if images.is_empty() {
                    return Err("the safe images of the list were not stored".into());
                }
            } else {
                if !report.rejected_images.is_empty() {
                    return Err(format!("rejected images {:?}", report.rejected_images));
                }
                if images.is_empty() {
                    return Err("no images stored".into());
                }
            }
        }
        "reject" => {
            let code = expected_code(name);
            if report.status != UpdateStatus::Failed {
                return Err(format!("expected failure, got {:?}", report.status));
            }
            let got = report.error.as_ref().map(|e| e.code);
            if got != Some(code) {
                return Err(format!("expected {code}, got {:?}", report.error));
            }
            match &after_version {
                Some(version) => {
                    let sub = subs.first().ok_or("subscription lost")?;
                    let current = sub.current.as_ref().ok_or("no current version")?;
                    if &current.version != version {
                        return Err(format!("current version is now {}", current.version));
                    }
                    if sub.last_error.as_ref().map(|e| e.code) != Some(code) {
                        return Err(format!("last_error {:?}", sub.last_error));
                    }
                }
                None => {
                    if !subs.is_empty() {
                        return Err("a rejected subscription was stored".into());
                    }
                }
            }
        }
        other => return Err(format!("unknown expectation {other}")),
    }
    Ok(())
}

#[test]
fn every_manifest_case_gets_its_verdict_and_code() {
    let env = Interop::new();
    let cases = env.manifest["cases"].as_object().unwrap().clone();
    assert_eq!(cases.len(), 22, "the MANIFEST changed: review this test");
    let mut failures = Vec::new();
    for (name, case) in &cases {
        if let Err(why) = run_case(&env, name, case) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_checksum_image_never_enters_the_cache() {
    let env = Interop::new();
    let vmc = env.fresh("bad-checksum");
    let url = env.feed("bad-checksum", "bad-checksum.smime");
    let report = vmc
        .subscribe(
            &request(&url, NewImagePolicy::Subscribe),
            &Dispatcher::new(vmc.config()),
        )
        .unwrap();
    assert_eq!(report.status, UpdateStatus::Added, "{:?}", report.error);
    let sync = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    let bad = "71f63e65-6e0d-4669-8260-abbe8c6eb38e";
    assert_eq!(sync.failed.len(), 1, "{:?}", sync.failed);
    assert_eq!(sync.failed[0].identifier, bad);
    assert_eq!(sync.failed[0].code, ErrorCode::ChecksumMismatch);
    assert_eq!(sync.downloaded.len(), 2);
    assert!(!cached_ids(&vmc).contains(&bad.to_owned()));
    assert_eq!(cached_ids(&vmc).len(), 2);
    let cache = vmc.config().cache_dir.clone();
    assert!(!cache.join(bad).exists());
    assert!(cache.join("f3cba9bb-ce26-4020-b238-77a60f7fe90c").is_file());
}

#[test]
fn removed_image_expires_as_removed() {
    let env = Interop::new();
    let vmc = env.fresh("removed");
    let url = env.feed("removed", "good-v2.smime");
    let report = vmc
        .subscribe(
            &request(&url, NewImagePolicy::Subscribe),
            &Dispatcher::new(vmc.config()),
        )
        .unwrap();
    assert_eq!(report.status, UpdateStatus::Added, "{:?}", report.error);
    let first = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert!(!first.has_failures(), "{first:?}");
    assert_eq!(cached_ids(&vmc).len(), 3);
    env.feed("removed", "removed-image.smime");
    let second = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert_eq!(second.subscriptions[0].status, UpdateStatus::Updated);
    let gone = "71f63e65-6e0d-4669-8260-abbe8c6eb38e";
    assert_eq!(second.expired.len(), 1, "{:?}", second.expired);
    assert_eq!(second.expired[0].identifier, gone);
    assert_eq!(second.expired[0].reason, ExpiryReason::Removed);
    assert!(
        vmc.config()
            .expired_dir
            .join(second.expired[0].expired_file.as_ref().unwrap())
            .is_file()
    );
    assert!(!cached_ids(&vmc).contains(&gone.to_owned()));
    let expired = vmc.store().expired_entries().unwrap();
    assert!(
        expired
            .iter()
            .any(|e| e.identifier.as_str() == gone && e.reason == ExpiryReason::Removed)
    );
}
