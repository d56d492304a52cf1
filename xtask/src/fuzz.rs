//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (libFuzzer) for a while each.
//!
//! The machine has only the stable toolchain; cargo-fuzz needs nightly flags, so the runs set
//! `RUSTC_BOOTSTRAP=1`. cargo-fuzz itself is installed from crates.io when missing. Each
//! target keeps its growing corpus in `fuzz/corpus/<target>/` (not committed), starts from the
//! committed seeds in `fuzz/seeds/<target>/` and the committed crash reproducers in
//! `fuzz/regressions/<target>/`, and writes what it finds to `fuzz/artifacts/<target>/`. The
//! command fails when a target crashes or when crash artifacts are waiting: turn each into a
//! regression file (the workspace test `fuzz_regressions` replays them) and fix the bug.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Usage text of `cargo xtask fuzz`.
pub const USAGE: &str = "\
Run the fuzz targets (cargo-fuzz, libFuzzer) for a while each

Usage: cargo xtask fuzz [OPTIONS] [TARGET]...

Targets (all when none is named): parse_image_list, verify_message

Options:
      --seconds <N>  run each target for N seconds [default: 60]
      --jobs <N>     parallel libFuzzer jobs per target [default: 1]
      --build-only   build the targets, run nothing
      --list         print the targets and exit
  -h, --help         print this help

Corpora grow in fuzz/corpus/<target>/; crashes land in fuzz/artifacts/<target>/ and make the
command fail. Copy a minimised crash into fuzz/regressions/<target>/ (the `tests` package
replays every file there) and fix the bug.";

/// The fuzz targets (binaries of `fuzz/Cargo.toml`).
pub const TARGETS: &[&str] = &["parse_image_list", "verify_message"];

/// Largest input libFuzzer generates (signed messages are a few KiB).
const MAX_LEN: &str = "-max_len=16384";

/// Options of one `cargo xtask fuzz` run.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    jobs: u32,
    build_only: bool,
    list: bool,
    targets: Vec<&'static str>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        seconds: 60,
        jobs: 1,
        build_only: false,
        list: false,
        targets: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => iter
                    .next()
                    .cloned()
                    .with_context(|| format!("`{name}` needs a value")),
            }
        };
        match flag {
            "--seconds" => options.seconds = positive("--seconds", &value("--seconds")?)?,
            "--jobs" => options.jobs = positive("--jobs", &value("--jobs")?)?,
            "--build-only" if inline.is_none() => options.build_only = true,
            "--list" if inline.is_none() => options.list = true,
            name if !name.starts_with('-') => {
                let target = TARGETS.iter().find(|t| **t == name).with_context(|| {
                    format!(
                        "unknown fuzz target `{name}` (known: {})",
                        TARGETS.join(", ")
                    )
                })?;
                if !options.targets.contains(target) {
                    options.targets.push(target);
                }
            }
            _ => bail!("unknown option `{arg}` for `cargo xtask fuzz` (see --help)"),
        }
    }
    if options.targets.is_empty() {
        options.targets = TARGETS.to_vec();
    }
    Ok(options)
}

/// `text` as a number above zero, or an error naming `flag`.
fn positive<T: std::str::FromStr + PartialOrd + Default>(flag: &str, text: &str) -> Result<T> {
    text.parse()
        .ok()
        .filter(|n| *n > T::default())
        .with_context(|| format!("{flag} {text:?}: expected a positive number"))
}

/// Runs `cargo xtask fuzz` with the arguments after `fuzz`.
pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    if options.list {
        for t in TARGETS {
            println!("{t}");
        }
        return Ok(());
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = cmd::project_root().join("fuzz");
    for target in &options.targets {
        let mut build = fuzz_command(&fuzz_dir, &["build", target]);
        eprintln!("==> {}", cmd::display(&build));
        cmd::run(&mut build)?;
    }
    if options.build_only {
        return Ok(());
    }
    let mut failed = Vec::new();
    for target in &options.targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let mut dirs = vec![corpus];
        for extra in ["seeds", "regressions"] {
            let dir = fuzz_dir.join(extra).join(target);
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        let mut args: Vec<String> = vec!["run".into(), (*target).to_owned()];
        args.extend(dirs.iter().map(|d| d.display().to_string()));
        args.push("--".into());
        args.push(format!("-max_total_time={}", options.seconds));
        args.push(MAX_LEN.into());
        args.push("-timeout=20".into());
        args.push("-print_final_stats=1".into());
        if options.jobs > 1 {
            args.push(format!("-jobs={}", options.jobs));
            args.push(format!("-workers={}", options.jobs));
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = fuzz_command(&fuzz_dir, &arg_refs);
        eprintln!("==> {}", cmd::display(&run));
        if let Err(e) = cmd::run(&mut run) {
            eprintln!("==> fuzz target {target} failed: {e:#}");
            failed.push(*target);
        }
        let artifacts = crash_artifacts(&fuzz_dir.join("artifacts").join(target));
        if !artifacts.is_empty() {
            eprintln!("==> {target}: crash artifacts waiting:");
            for a in &artifacts {
                eprintln!("    {}", a.display());
            }
            if !failed.contains(target) {
                failed.push(*target);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found problems in: {} (reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET FILE` in fuzz/, \
             then copy the input into fuzz/regressions/TARGET/)",
            failed.join(", ")
        );
    }
    eprintln!(
        "==> fuzzing passed: {} ({} s each)",
        options.targets.join(", "),
        options.seconds
    );
    Ok(())
}

/// `cargo fuzz ARGS` in `fuzz/`, with the flag that lets the stable toolchain take nightly
/// options.
fn fuzz_command(fuzz_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(cmd::cargo());
    command
        .arg("fuzz")
        .args(args)
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1");
    command
}

/// Installs cargo-fuzz from crates.io unless `cargo fuzz` works already.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new(cmd::cargo())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    let mut install = Command::new(cmd::cargo());
    install.args(["install", "cargo-fuzz", "--locked"]);
    eprintln!("==> cargo-fuzz is missing: {}", cmd::display(&install));
    cmd::run(&mut install)
}

/// Files libFuzzer left in an artifacts directory (crashes, leaks, timeouts, OOMs).
fn crash_artifacts(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["crash-", "leak-", "timeout-", "oom-"]
                    .iter()
                    .any(|k| n.starts_with(k))
            })
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        parse(&args)
    }

    #[test]
    fn defaults_run_every_target_for_a_minute() {
        let o = opts(&[]).unwrap();
        assert_eq!(o.seconds, 60);
        assert_eq!(o.jobs, 1);
        assert_eq!(o.targets, TARGETS);
    }

    #[test]
    fn options_and_targets_parse() {
        let o = opts(&["--seconds", "600", "verify_message", "--jobs=2"]).unwrap();
        assert_eq!(o.seconds, 600);
        assert_eq!(o.jobs, 2);
        assert_eq!(o.targets, ["verify_message"]);
        assert!(opts(&["--seconds", "0"]).is_err());
        assert!(opts(&["nope"]).is_err());
        assert!(opts(&["--frobnicate"]).is_err());
        assert!(opts(&["--build-only"]).unwrap().build_only);
    }

    #[test]
    fn artifacts_are_found_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("crash-abc"), b"x").unwrap();
        std::fs::write(dir.path().join("slow-unit-1"), b"x").unwrap();
        std::fs::write(dir.path().join("oom-2"), b"x").unwrap();
        let found = crash_artifacts(dir.path());
        assert_eq!(found.len(), 2);
        assert!(crash_artifacts(&dir.path().join("missing")).is_empty());
    }
}
