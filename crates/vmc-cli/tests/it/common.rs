//! Shared set-up: a clean environment for the binary, a tempdir home, the interop fixtures
//! served on loopback, and the one list of snapshot filters (paths, ports, times, pids).

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;
use vmc_testkit::server::TestServer;

/// The pinned clock of every run.
pub const NOW: &str = "2027-06-01T00:00:00Z";
/// The subject DN of the interop endorser.
pub const SUBJECT: &str = "/C=XX/O=InteropGrid/OU=Images/CN=Interop Endorser";
/// The issuer DN of the interop endorser.
pub const ISSUER: &str = "/C=XX/O=InteropGrid/CN=Interop Root CA";
/// The list identifier of the interop lists.
pub const LIST_ID: &str = "4a58acb9-e7f1-4128-9edf-8c2df3696d7c";
/// Image 0 of the interop lists.
pub const IMAGE0: &str = "f3cba9bb-ce26-4020-b238-77a60f7fe90c";

/// The openssl-cli fixture set, generated for this test process by the `openssl` CLI.
pub fn fixtures() -> PathBuf {
    vmc_testkit::interop::openssl_cli().to_owned()
}

/// The `sl:checksum:sha512` the fixtures' MANIFEST gives image `index`.
pub fn image_sha512(index: usize) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("MANIFEST.json")).unwrap()).unwrap();
    manifest["images"][index]["sl:checksum:sha512"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The bytes of one fixture list.
pub fn list_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("lists").join(name)).unwrap()
}

/// A `vmc` command with no inherited `VMC_*`/`VMCATCHER_*` variables.
pub fn bare() -> Command {
    let mut cmd = Command::cargo_bin("vmc").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .env("VMC_NOW", NOW);
    cmd
}

/// A home, the fixtures on a loopback server, and commands wired to both.
pub struct Env {
    /// The vmc home (also `$HOME`).
    pub home: TempDir,
    /// Serves the openssl-cli fixtures' `lists/` and `images/`.
    pub server: TestServer,
}

impl Env {
    /// A fresh home and server.
    pub fn new() -> Env {
        let server = TestServer::start();
        server.serve_dir("/lists", fixtures().join("lists"));
        server.serve_dir("/images", fixtures().join("images"));
        Env {
            home: tempfile::tempdir().unwrap(),
            server,
        }
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The URL of a fixture list.
    pub fn list_url(&self, name: &str) -> String {
        self.server.url(&format!("/lists/{name}"))
    }

    /// `vmc` with this home, the interop CA directory, the mirror and the pinned clock.
    pub fn cmd(&self) -> Command {
        let mut cmd = bare();
        cmd.env("HOME", self.home())
            .env("VMC_HOME", self.home())
            .env("VMC_CA_DIR", fixtures().join("pki/ca-dir"))
            .arg("--mirror")
            .arg(format!("http://127.0.0.1:8000={}", self.server.base_url()));
        cmd
    }

    /// The same as [`Env::cmd`], as a `std::process::Command` (to spawn in the background).
    pub fn spawnable(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmc"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("VMC_NOW", NOW)
            .env("HOME", self.home())
            .env("VMC_HOME", self.home())
            .env("VMC_CA_DIR", fixtures().join("pki/ca-dir"))
            .arg("--mirror")
            .arg(format!("http://127.0.0.1:8000={}", self.server.base_url()));
        cmd
    }

    /// Runs `vmc ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `vmc --json ARGS`, checks the exit status and parses stdout.
    pub fn json(&self, args: &[&str], status: i32) -> serde_json::Value {
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

    /// Adds the interop endorser as `interop`.
    pub fn add_endorser(&self) {
        let out = self.run(&[
            "endorser",
            "add",
            "--id",
            "interop",
            "--subject",
            SUBJECT,
            "--issuer",
            ISSUER,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }

    /// Adds the endorser and subscribes to `url` with it.
    pub fn subscribe(&self, url: &str) {
        self.add_endorser();
        let out = self.run(&["subscribe", "add", url, "--endorser", "interop"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }

    /// The snapshot filters for this environment (added to the shared ones).
    pub fn settings(&self) -> insta::Settings {
        let mut settings = settings();
        let home = self.home().display().to_string();
        settings.add_filter(&regex_escape(&home), "[HOME]");
        settings.add_filter(
            &regex_escape(&fixtures().display().to_string()),
            "[FIXTURES]",
        );
        settings
    }
}

/// The shared snapshot filters: loopback ports, wall-clock times, pids.
pub fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(true);
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"\bpid \d+", "pid [PID]");
    // OpenSSL's error queue names its source files and lines, which vary between versions.
    settings.add_filter(r"error:[0-9A-F]{8}:[^\n,]*", "[OPENSSL ERROR]");
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[HOME]");
    settings
}

/// Escapes `text` for use as a regex.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Asserts that `value` has at least the keys `expected`.
pub fn assert_has_keys(value: &serde_json::Value, expected: &[&str]) {
    let keys = keys(value);
    for k in expected {
        assert!(keys.iter().any(|x| x == k), "key {k} missing in {value}");
    }
}
