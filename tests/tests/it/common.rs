//! Shared set-up of the scenarios: the real `vmc` binary, a world of a generated PKI, a CA
//! directory, a loopback server and a vmc home, signed image lists built as JSON values (so
//! that tests can break them on purpose), a seeded random generator and the slow-test gate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use tempfile::TempDir;
use vmc_cache::{Clock, Config, Dispatcher, NewSubscriptionRequest, Vmc};
use vmc_model::{CertIdentity, NewImagePolicy};
use vmc_testkit::pki::{CaDirOptions, Leaf, TestPki};
use vmc_testkit::server::{Route, TestServer};

/// The variable that `.ci/run` sets to run the slow scenarios.
pub const SLOW_ENV: &str = "VMC_TEST_SLOW";

/// Whether the slow scenarios run; when they do not, the test is reported as skipped.
pub fn slow_enabled() -> bool {
    if std::env::var_os(SLOW_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        true
    } else {
        vmc_testkit::skip::skipped(&format!("slow: set {SLOW_ENV}=1 to run it (.ci/run does)"));
        false
    }
}

/// The instant every list, certificate and CRL is valid around (also `VMC_NOW`).
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 1, 12, 0, 0).unwrap()
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Lowercase hex SHA-512.
pub fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

/// A small, seeded xorshift generator (no dependency; the seed is printed by its users).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A seed from `VMC_TEST_SEED` or the clock, printed so a failure can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("VMC_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: seed {seed} (replay with VMC_TEST_SEED={seed})");
        Rng::new(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// Deterministic pseudo-random bytes (fast enough for hundreds of MiB).
pub fn image_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `vmc` binary of this build (`target/<profile>/vmc`), rebuilt with
/// `cargo build -p vmc-cli` when it is missing or older than the sources. `VMC_TEST_BIN`
/// names another one.
pub fn vmc_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("VMC_TEST_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/it-<hash> → target/<profile>/vmc
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let bin = profile_dir.join("vmc");
        if is_stale(&bin) {
            build_vmc(profile_dir);
        }
        assert!(
            bin.is_file(),
            "the vmc binary is missing at {}: build it with `cargo build -p vmc-cli` \
             (`cargo test --workspace` does)",
            bin.display()
        );
        bin
    })
}

/// Whether `bin` is missing or older than a source file of the crates it is built from.
fn is_stale(bin: &Path) -> bool {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let crates = workspace().join("crates");
    let mut pending = vec![crates];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !["tests", "target", "benches", "examples", "vmc-testkit"]
                    .contains(&name.as_ref())
                {
                    pending.push(path);
                }
            } else if (name.ends_with(".rs") || name == "Cargo.toml" || name.ends_with(".sql"))
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > built)
            {
                return true;
            }
        }
    }
    false
}

fn build_vmc(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "vmc-cli", "--bin", "vmc"])
        .current_dir(workspace());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    eprintln!("building the vmc binary: {cmd:?}");
    let status = cmd.status().unwrap();
    assert!(status.success(), "`cargo build -p vmc-cli` failed");
}

/// stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One image a [`World`] serves.
#[derive(Debug, Clone)]
pub struct Img {
    /// `dc:identifier`.
    pub id: String,
    /// `dc:title`.
    pub title: String,
    /// The bytes.
    pub bytes: Arc<[u8]>,
}

impl Img {
    /// An image of `len` deterministic bytes.
    pub fn new(id: &str, seed: u64, len: usize) -> Img {
        Img {
            id: id.to_owned(),
            title: format!("Image {id}"),
            bytes: image_bytes(seed, len).into(),
        }
    }

    /// Its server path.
    pub fn path(&self) -> String {
        format!("/img/{}", self.id)
    }

    /// Its sha512.
    pub fn sha512(&self) -> String {
        sha512_hex(&self.bytes)
    }
}

/// A generated PKI and CA directory, a loopback server and a vmc home.
pub struct World {
    /// The PKI, valid around [`now`].
    pub pki: TestPki,
    /// The CA directory (root and intermediate, current CRLs).
    pub ca: TempDir,
    /// The vmc home.
    pub home: TempDir,
    /// Serves lists and images.
    pub server: TestServer,
}

/// The list identifier of [`World::list`] by default.
pub const LIST_ID: &str = "0b7d1c4e-5a3f-4e1b-9c2d-6f8a9b0c1d2e";

impl World {
    /// A fresh world.
    pub fn new() -> World {
        Self::with_ca(CaDirOptions::default())
    }

    /// A fresh world whose CA directory is written with `options`.
    pub fn with_ca(options: CaDirOptions) -> World {
        let pki = TestPki::generate(now());
        let ca = pki.ca_dir(options);
        World {
            pki,
            ca,
            home: tempfile::tempdir().unwrap(),
            server: TestServer::start(),
        }
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.home().join("cache")
    }

    /// The library configuration of this world (clock pinned to [`now`]).
    pub fn config(&self) -> Config {
        let mut config = Config::with_home(self.home());
        config.ca_dir = self.ca.path().to_path_buf();
        config.clock = Clock::fixed(now());
        config
    }

    /// Opens the library on this world.
    pub fn open(&self) -> Vmc {
        Vmc::open(self.config()).unwrap()
    }

    /// The endorser's identity.
    pub fn identity(&self) -> CertIdentity {
        CertIdentity {
            subject: self.pki.endorser.subject_one_line(),
            issuer: self.pki.endorser.issuer_one_line(),
        }
    }

    /// `vmc` with a clean environment wired to this world.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(vmc_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("HOME", self.home())
            .env("VMC_HOME", self.home())
            .env("VMC_CA_DIR", self.ca.path())
            .env("VMC_NOW", now().to_rfc3339());
        cmd
    }

    /// Runs `vmc ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `vmc --json ARGS`, checks the exit status and parses stdout.
    pub fn json(&self, args: &[&str], status: i32) -> Value {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(status),
            "{args:?}: {}",
            describe(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", describe(&out)))
    }

    /// Adds the endorser as `e1` through the CLI.
    pub fn cli_endorser(&self) {
        let id = self.identity();
        let out = self.run(&[
            "endorser",
            "add",
            "--id",
            "e1",
            "--subject",
            &id.subject,
            "--issuer",
            &id.issuer,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }

    /// The `hv:image` entry of `img` (served at its path on this server).
    pub fn image_entry(&self, img: &Img) -> Value {
        image_entry(
            &img.id,
            &img.title,
            &self.server.url(&img.path()),
            img.bytes.len() as u64,
            &img.sha512(),
        )
    }

    /// A list document (`{"hv:imagelist": …}`) endorsed by the endorser.
    pub fn list(&self, id: &str, version: &str, images: Vec<Value>) -> Value {
        list_doc(
            &self.pki.endorser,
            id,
            version,
            images,
            &self.server.url("/list"),
        )
    }

    /// Signs `payload` as the endorser (detached S/MIME, as publishers do).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.pki.endorser.sign_smime(payload)
    }

    /// Signs `doc` and serves it at `path`.
    pub fn publish(&self, path: &str, doc: &Value) {
        let bytes = serde_json::to_vec_pretty(doc).unwrap();
        self.server.replace(path, Route::new(self.sign(&bytes)));
    }

    /// Adds endorser `e1` and subscribes (library level) to `path` with `policy`.
    pub fn subscribe(&self, vmc: &Vmc, path: &str, policy: NewImagePolicy) {
        if vmc.store().find_endorser("e1").unwrap().is_none() {
            vmc.store().add_endorser("e1", &[self.identity()]).unwrap();
        }
        let report = vmc
            .subscribe(
                &request(&self.server.url(path), policy),
                &Dispatcher::new(vmc.config()),
            )
            .unwrap();
        assert_eq!(
            report.status,
            vmc_cache::UpdateStatus::Added,
            "{:?}",
            report.error
        );
    }
}

/// A subscription request naming endorser `e1`.
pub fn request(url: &str, policy: NewImagePolicy) -> NewSubscriptionRequest {
    NewSubscriptionRequest {
        url: url.to_owned(),
        endorsers: vec!["e1".to_owned()],
        auto_endorse: false,
        new_images: policy,
        auth: None,
    }
}

/// An `{"hv:image": …}` entry with the mandatory keys.
pub fn image_entry(id: &str, title: &str, uri: &str, size: u64, sha512: &str) -> Value {
    json!({"hv:image": {
        "dc:identifier": id,
        "dc:title": title,
        "dc:description": format!("description of {id}"),
        "hv:uri": uri,
        "hv:size": size,
        "sl:checksum:sha512": sha512,
        "hv:version": "1.0",
        "hv:hypervisor": "KVM",
        "hv:format": "raw",
        "sl:arch": "x86_64",
        "sl:os": "Linux",
    }})
}

/// A list document claiming `signer` as its endorser, created an hour before [`now`] (plus
/// the version's digits in seconds, so later versions are created later), expiring in 30
/// days.
pub fn list_doc(signer: &Leaf, id: &str, version: &str, images: Vec<Value>, uri: &str) -> Value {
    let bump: i64 = version
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse::<i64>()
        .unwrap_or(0)
        .min(3000);
    let created = now() - Duration::hours(1) + Duration::seconds(bump);
    json!({"hv:imagelist": {
        "dc:identifier": id,
        "dc:title": "Generated list",
        "dc:description": "A list generated by the hardening tests",
        "dc:source": "https://example.org/",
        "dc:date:created": created.to_rfc3339(),
        "dc:date:expires": (now() + Duration::days(30)).to_rfc3339(),
        "hv:version": version,
        "hv:uri": uri,
        "ad:vo": "vo.example.org",
        "hv:endorser": {"hv:x509": {
            "hv:dn": signer.subject_one_line(),
            "hv:ca": signer.issuer_one_line(),
            "dc:creator": "Test Endorser",
            "hv:email": "endorser@example.org",
        }},
        "hv:images": images,
    }})
}

/// The files of a directory (names), sorted; empty when it does not exist.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
