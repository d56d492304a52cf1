//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.
//!
//! Steps: `fmt` (rustfmt check), `clippy` (all targets, warnings denied), `test` (the whole
//! workspace, including the tidy test) and `doc` (rustdoc with warnings denied), each with the
//! PostgreSQL backend ([`FEATURES`]). Not `--all-features`: that would also compile SQLite into
//! the build (`bundled-sqlite`), and the tests should run against the system SQLite that a
//! default build links.
//!
//! The `test` step's output is read as it passes through: libtest's `test result:` lines and the
//! `vmc-test-skipped:` lines of tests that could not run here ([`vmc_testkit::skip`]: no
//! PostgreSQL server, no cloudkeeper fixtures, a slow test outside CI). At the end it prints
//! `tests: N passed, N failed, N skipped` — the tests that ran their checks, and those that did
//! not — with the reasons.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use vmc_testkit::skip;

use crate::cmd;

/// Usage text of `cargo xtask ci`.
pub const USAGE: &str = "\
Run the CI checks in order, stopping at the first failure

Usage: cargo xtask ci [OPTIONS]

Steps: fmt, clippy, test, doc

Options:
      --only <STEPS>  run only these steps (comma-separated, e.g. `--only test`)
      --skip <STEPS>  skip these steps (comma-separated)
      --no-clippy     same as `--skip clippy`
  -h, --help          print this help";

/// One CI step: a name and the cargo invocation it runs.
struct Step {
    /// Whether its output is read for libtest's results and the skip lines of
    /// [`vmc_testkit::skip`] (the `test` step).
    tally: bool,
    /// Name used by `--only` and `--skip`.
    name: &'static str,
    /// Arguments passed to cargo.
    args: &'static [&'static str],
    /// Extra environment variables for the command.
    env: &'static [(&'static str, &'static str)],
}

/// The features CI builds with: the default (system SQLite) plus the PostgreSQL backend, named in
/// every crate that has it so that each crate's own `cfg(feature = "postgres")` tests run.
const FEATURES: &str =
    "vmc-store/postgres,vmc-cache/postgres,vmc-cli/postgres,vmc-publish/postgres";

/// The CI steps, in the order they run.
const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        tally: false,
        args: &["fmt", "--all", "--check"],
        env: &[],
    },
    Step {
        name: "clippy",
        tally: false,
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            FEATURES,
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
    },
    Step {
        name: "test",
        tally: true,
        args: &["test", "--workspace", "--features", FEATURES],
        env: &[],
    },
    Step {
        name: "doc",
        tally: false,
        args: &["doc", "--workspace", "--no-deps", "--features", FEATURES],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
    },
];

/// Runs `cargo xtask ci` with the arguments after `ci`.
pub fn run(args: &[String]) -> Result<()> {
    let selected = select_steps(args)?;
    if selected.is_empty() {
        bail!("no steps selected");
    }
    let names: Vec<&str> = selected.iter().map(|s| s.name).collect();
    let started = Instant::now();
    let mut tally: Option<Tally> = None;
    for (index, step) in selected.iter().enumerate() {
        let mut command = cmd::cargo_command(step.args);
        for (key, value) in step.env {
            command.env(key, value);
        }
        eprintln!(
            "==> [{}/{}] {}: {}",
            index + 1,
            selected.len(),
            step.name,
            cmd::display(&command)
        );
        let step_started = Instant::now();
        let result = if step.tally {
            let (outcome, counted) = run_counted(&mut command);
            counted.report();
            tally = Some(counted);
            outcome
        } else {
            cmd::run(&mut command)
        };
        result.with_context(|| {
            format!(
                "ci failed at step `{}` after {}",
                step.name,
                elapsed(started.elapsed())
            )
        })?;
        eprintln!(
            "==> {} ok in {}",
            step.name,
            elapsed(step_started.elapsed())
        );
    }
    eprintln!(
        "==> ci passed: {} in {}",
        names.join(", "),
        elapsed(started.elapsed())
    );
    if let Some(tally) = tally {
        eprintln!("{}", tally.closing_line());
    }
    Ok(())
}

/// What the test step's output said: libtest's counts and the tests that skipped their checks.
#[derive(Debug, Default)]
struct Tally {
    /// Sum of libtest's `passed` (a skipped test returns early and is counted there too).
    passed: u64,
    /// Sum of libtest's `failed`.
    failed: u64,
    /// Skip reasons, with the tests that gave each.
    skipped: BTreeMap<String, Vec<String>>,
}

impl Tally {
    /// Reads one line of the test run's stdout or stderr.
    fn line(&mut self, line: &str) {
        if let Some((test, reason)) = skip::parse(line) {
            self.skipped
                .entry(reason.to_owned())
                .or_default()
                .push(test.to_owned());
        } else if let Some(result) = line.trim().strip_prefix("test result: ") {
            // `ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in …`
            for part in result.split(['.', ';']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    match what {
                        "passed" => self.passed += n,
                        "failed" => self.failed += n,
                        _ => {}
                    }
                }
            }
        }
    }

    fn skipped_count(&self) -> u64 {
        self.skipped.values().map(|t| t.len() as u64).sum()
    }

    /// `tests: N passed, N failed, N skipped`: the tests that ran their checks, and those that
    /// could not run here.
    fn closing_line(&self) -> String {
        let skipped = self.skipped_count();
        format!(
            "tests: {} passed, {} failed, {} skipped",
            self.passed.saturating_sub(skipped),
            self.failed,
            skipped
        )
    }

    /// Prints the closing line and why tests were skipped.
    fn report(&self) {
        eprintln!("==> {}", self.closing_line());
        for (reason, tests) in &self.skipped {
            eprintln!("==>   {} skipped: {reason}", tests.len());
        }
    }
}

/// Runs the test command, passing its output through while reading it into a [`Tally`].
fn run_counted(command: &mut Command) -> (Result<()>, Tally) {
    let shown = cmd::display(command);
    let mut child = match command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return (
                Err(anyhow::Error::new(e).context(format!("could not start `{shown}`"))),
                Tally::default(),
            );
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return (
            Err(anyhow::anyhow!("`{shown}`: no pipes")),
            Tally::default(),
        );
    };
    let out = std::thread::spawn(move || pass_through(stdout, false));
    let err = pass_through(stderr, true);
    let mut tally = Tally::default();
    for line in out.join().unwrap_or_default().iter().chain(&err) {
        tally.line(line);
    }
    let outcome = match child.wait() {
        Ok(status) => cmd::succeeded(&shown, status),
        Err(e) => Err(anyhow::Error::new(e).context(format!("waiting for `{shown}`"))),
    };
    (outcome, tally)
}

/// Copies `from` line by line to our stdout (or stderr) and returns the lines that matter to
/// a [`Tally`].
fn pass_through(from: impl Read, to_stderr: bool) -> Vec<String> {
    let mut kept = Vec::new();
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = if to_stderr {
            std::io::stderr().lock().write_all(&buf)
        } else {
            std::io::stdout().lock().write_all(&buf)
        };
        let line = String::from_utf8_lossy(&buf);
        if line.starts_with(skip::MARKER) || line.starts_with("test result: ") {
            kept.push(line.into_owned());
        }
    }
    kept
}

/// Parses the options of `cargo xtask ci` into the steps to run, in CI order.
fn select_steps(args: &[String]) -> Result<Vec<&'static Step>> {
    let mut only: Option<Vec<&'static str>> = None;
    let mut skip: Vec<&'static str> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--only" | "--skip" => {
                let value = match inline {
                    Some(value) => value,
                    None => iter
                        .next()
                        .cloned()
                        .with_context(|| format!("`{flag}` needs a list of steps"))?,
                };
                let steps = parse_step_list(&value)?;
                if flag == "--only" {
                    only.get_or_insert_with(Vec::new).extend(steps);
                } else {
                    skip.extend(steps);
                }
            }
            "--no-clippy" if inline.is_none() => skip.push("clippy"),
            _ => bail!("unknown option `{arg}` for `cargo xtask ci` (see `cargo xtask ci --help`)"),
        }
    }
    Ok(STEPS
        .iter()
        .filter(|s| only.as_ref().is_none_or(|only| only.contains(&s.name)))
        .filter(|s| !skip.contains(&s.name))
        .collect())
}

/// Parses `a,b,c` into known step names.
fn parse_step_list(value: &str) -> Result<Vec<&'static str>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            STEPS
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.name)
                .with_context(|| {
                    let known: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
                    format!("unknown step `{name}` (known: {})", known.join(", "))
                })
        })
        .collect()
}

/// Formats a duration as `1m05s` or `4.2s`.
fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(args: &[&str]) -> Result<Vec<&'static str>> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Ok(select_steps(&args)?.iter().map(|s| s.name).collect())
    }

    #[test]
    fn default_runs_all_steps_in_order() {
        assert_eq!(names(&[]).unwrap(), ["fmt", "clippy", "test", "doc"]);
    }

    #[test]
    fn only_and_skip_keep_ci_order() {
        assert_eq!(names(&["--only", "doc,fmt"]).unwrap(), ["fmt", "doc"]);
        assert_eq!(names(&["--only=test"]).unwrap(), ["test"]);
        assert_eq!(names(&["--no-clippy"]).unwrap(), ["fmt", "test", "doc"]);
        assert_eq!(
            names(&["--skip", "fmt", "--skip=doc"]).unwrap(),
            ["clippy", "test"]
        );
    }

    #[test]
    fn unknown_steps_and_options_are_errors() {
        let err = names(&["--only", "lint"]).unwrap_err();
        assert!(format!("{err:#}").contains("unknown step `lint`"));
        assert!(names(&["--fast"]).is_err());
        assert!(names(&["--only"]).is_err());
    }

    #[test]
    fn the_tally_counts_skipped_tests_apart_from_passed_ones() {
        let mut tally = Tally::default();
        for line in [
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; \
             finished in 0.50s",
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; \
             finished in 1.00s",
            &format!("{} suite::postgres::open: no server here", skip::MARKER),
            &format!("{} suite::postgres::close: no server here", skip::MARKER),
            &format!("{} crash::killed: slow", skip::MARKER),
            "test crash::killed ... ok",
        ] {
            tally.line(line);
        }
        assert_eq!(
            tally.closing_line(),
            "tests: 12 passed, 1 failed, 3 skipped"
        );
        assert_eq!(tally.skipped["no server here"].len(), 2);
    }

    #[test]
    fn elapsed_formats_minutes_and_seconds() {
        assert_eq!(elapsed(Duration::from_millis(4_200)), "4.2s");
        assert_eq!(elapsed(Duration::from_secs(65)), "1m05s");
    }
}
