//! `cargo xtask dist`: what a package needs besides the binary, generated from the clap
//! definitions so it never drifts from `--help`.
//!
//! Builds `vmc` (release) with the PostgreSQL backend ([`FEATURES`]: a site scales out to
//! several nodes on one database without rebuilding), checks that the binary accepts a
//! `postgres://` URL, then writes into `target/dist/`:
//! - `man/`: `vmc.1` and one page per command (`vmc-cache-sync.1`, …), by the hidden
//!   `vmc generate-man DIR` (clap_mangen);
//! - `completions/`: `vmc.bash`, `_vmc` (zsh) and `vmc.fish`, by the hidden
//!   `vmc generate-completions SHELL` (clap_complete);
//! - `systemd/`: the service and timer of `contrib/systemd/` (vmc logs to stderr, that is the
//!   journal: no log file, no logrotate).
//!
//! `--deb` then runs `cargo deb -p vmc-cli --no-build` (cargo-deb's metadata in
//! `crates/vmc-cli/Cargo.toml` packages these files).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{cmd, feed};

/// Usage text of `cargo xtask dist`.
pub const USAGE: &str = "\
Build vmc and generate its man pages, shell completions and systemd units into target/dist/

Usage: cargo xtask dist [OPTIONS]

Options:
      --debug  build the debug profile instead of release (faster; for checking the output)
      --deb    also build the Debian package (needs `cargo install cargo-deb`)
  -h, --help   print this help";

/// The features of the packaged binary: the PostgreSQL backend besides the default SQLite one
/// (the package then depends on libpq, which cargo-deb's `$auto` finds).
pub const FEATURES: &str = "postgres";

/// Shells with a completion script, and the file name each expects.
const COMPLETIONS: &[(&str, &str)] = &[("bash", "vmc.bash"), ("zsh", "_vmc"), ("fish", "vmc.fish")];

/// Runs `cargo xtask dist` with the arguments after `dist`.
pub fn run(args: &[String]) -> Result<()> {
    let mut profile = "release";
    let mut deb = false;
    for arg in args {
        match arg.as_str() {
            "--debug" => profile = "debug",
            "--deb" => deb = true,
            _ => bail!(
                "unknown option `{arg}` for `cargo xtask dist` (see `cargo xtask dist --help`)"
            ),
        }
    }
    let mut build = cmd::cargo_command(&["build", "-p", "vmc-cli", "--features", FEATURES]);
    if profile == "release" {
        build.arg("--release");
    }
    println!("$ {}", cmd::display(&build));
    cmd::run(&mut build).context("cannot build vmc")?;
    let bin = feed::vmc_binary(profile);
    ensure!(
        bin.is_file(),
        "{} is missing after the build",
        bin.display()
    );

    check_postgres(&bin)?;

    let out = feed::target_dir().join("dist");
    let written = generate(&bin, &out)?;
    for path in &written {
        println!("  {}", path.strip_prefix(&out).unwrap_or(path).display());
    }
    println!("dist: {} files in {}", written.len(), out.display());

    if deb {
        if feed::target_dir() != cmd::project_root().join("target") {
            bail!(
                "--deb needs the default target directory (cargo-deb's assets name ../../target/dist); unset CARGO_TARGET_DIR"
            );
        }
        if profile != "release" {
            bail!("--deb packages the release build: drop --debug");
        }
        let probe = cmd::cargo_command(&["deb", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            bail!("cargo-deb is not installed: `cargo install cargo-deb`");
        }
        let mut package = cmd::cargo_command(&["deb", "-p", "vmc-cli", "--no-build"]);
        println!("$ {}", cmd::display(&package));
        cmd::run(&mut package).context("cargo deb failed")?;
    }
    Ok(())
}

/// Checks that `bin` has the PostgreSQL backend: a `postgres://` URL of a closed loopback
/// port must fail to connect, not be refused as unsupported by the build.
fn check_postgres(bin: &Path) -> Result<()> {
    let out = vmc(bin)
        .args([
            "--database",
            "postgres://vmc-dist-check@127.0.0.1:1/vmc?connect_timeout=5",
            "node",
            "list",
        ])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && !stderr.contains("which this build lacks"),
        "{} has no PostgreSQL backend: {}",
        bin.display(),
        stderr.trim()
    );
    println!("postgres backend: present ({})", stderr.trim());
    Ok(())
}

/// A `vmc` command with no `VMC_*`/`VMCATCHER_*` settings from the caller's environment.
fn vmc(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

/// Writes the man pages, completions and systemd units below `out` (replacing what was there)
/// and returns the files written.
fn generate(bin: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    for sub in ["man", "completions", "systemd"] {
        let dir = out.join(sub);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut written = Vec::new();

    let man = out.join("man");
    let mut command = vmc(bin);
    command.arg("generate-man").arg(&man);
    cmd::run(&mut command).context("cannot generate the man pages")?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)
        .with_context(|| format!("cannot read {}", man.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    ensure!(
        pages.iter().any(|p| p.ends_with("vmc.1"))
            && pages.iter().any(|p| p.ends_with("vmc-cache-sync.1")),
        "vmc generate-man wrote no vmc.1 or vmc-cache-sync.1 into {}",
        man.display()
    );
    written.extend(pages);

    for (shell, name) in COMPLETIONS {
        let output = vmc(bin)
            .args(["generate-completions", shell])
            .output()
            .with_context(|| format!("cannot run {} generate-completions", bin.display()))?;
        ensure!(
            output.status.success() && !output.stdout.is_empty(),
            "vmc generate-completions {shell} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let script = String::from_utf8_lossy(&output.stdout);
        ensure!(
            script.contains("import-vmcatcher") && !script.contains("generate-man"),
            "the {shell} completions do not offer exactly the visible commands"
        );
        let path = out.join("completions").join(name);
        fs::write(&path, &output.stdout)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }

    let contrib = cmd::project_root().join("contrib/systemd");
    for unit in ["vmc-sync.service", "vmc-sync.timer"] {
        let from = contrib.join(unit);
        let to = out.join("systemd").join(unit);
        fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
        written.push(to);
    }
    Ok(written)
}
