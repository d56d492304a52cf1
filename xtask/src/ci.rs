//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.
//!
//! Steps: `fmt` (rustfmt check), `clippy` (all targets, warnings denied), `test` (the whole
//! workspace, including the tidy test) and `doc` (rustdoc with warnings denied), each with the
//! PostgreSQL backend ([`FEATURES`]). Not `--all-features`: that would also compile SQLite into
//! the build (`bundled-sqlite`), and the tests should run against the system SQLite that a
//! default build links.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

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
        args: &["fmt", "--all", "--check"],
        env: &[],
    },
    Step {
        name: "clippy",
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
        args: &["test", "--workspace", "--features", FEATURES],
        env: &[],
    },
    Step {
        name: "doc",
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
        cmd::run(&mut command).with_context(|| {
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
    Ok(())
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
    fn elapsed_formats_minutes_and_seconds() {
        assert_eq!(elapsed(Duration::from_millis(4_200)), "4.2s");
        assert_eq!(elapsed(Duration::from_secs(65)), "1m05s");
    }
}
