//! Project automation for vmc, run as `cargo xtask <command>`.
//!
//! Every subcommand is one module with a `run(args)` entry point and one row in
//! [`COMMANDS`]; `--help` is generated from that table.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask is a developer tool that reports progress on the terminal"
)]

mod bench;
mod bench_publish;
mod ci;
mod cmd;
mod demo;
mod dist;
mod feed;
mod fuzz;

use std::process::ExitCode;

use anyhow::{Result, bail};

/// One subcommand: its name, a one-line summary and its entry point.
struct Subcommand {
    /// Name typed after `cargo xtask`.
    name: &'static str,
    /// Usage line shown by `cargo xtask <name> --help`.
    usage: &'static str,
    /// One-line summary shown by `cargo xtask --help`.
    about: &'static str,
    /// Entry point; receives the arguments after the subcommand name.
    run: fn(&[String]) -> Result<()>,
}

/// All subcommands; to add one, add a module and a row here.
const COMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "bench",
        usage: bench::USAGE,
        about: "benchmark vmc against sha512sum, openssl and curl on a local nginx",
        run: bench::run,
    },
    Subcommand {
        name: "bench-publish",
        usage: bench_publish::USAGE,
        about: "time vmc publish sync against openstack image create on a local Glance",
        run: bench_publish::run,
    },
    Subcommand {
        name: "ci",
        usage: ci::USAGE,
        about: "run the CI checks: fmt, clippy, test, doc (stops at the first failure)",
        run: ci::run,
    },
    Subcommand {
        name: "demo",
        usage: demo::USAGE,
        about: "run the offline demo: subscribe, select, sync, expiry and a refused list",
        run: demo::run,
    },
    Subcommand {
        name: "dist",
        usage: dist::USAGE,
        about: "build vmc and generate man pages, shell completions and systemd units (--deb: package)",
        run: dist::run,
    },
    Subcommand {
        name: "fuzz",
        usage: fuzz::USAGE,
        about: "run the cargo-fuzz targets (list parser, signed messages) for a while each",
        run: fuzz::run,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Picks the subcommand named by the first argument and runs it.
fn dispatch(args: &[String]) -> Result<()> {
    let Some((first, rest)) = args.split_first() else {
        eprintln!("{}", help());
        bail!("no command given");
    };
    if matches!(first.as_str(), "-h" | "--help" | "help") {
        print_help(&help());
        return Ok(());
    }
    let Some(command) = COMMANDS.iter().find(|c| c.name == first) else {
        eprintln!("{}", help());
        bail!("unknown command `{first}`");
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print_help(command.usage);
        return Ok(());
    }
    (command.run)(rest)
}

/// Prints help text on stdout. A closed pipe (`cargo xtask --help | head -3`) is not an error.
fn print_help(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// The top-level help: usage and the list of subcommands.
fn help() -> String {
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Project automation for vmc\n\nUsage: cargo xtask <COMMAND> [OPTIONS]\n\nCommands:\n",
    );
    for c in COMMANDS {
        text.push_str(&format!("  {:width$}  {}\n", c.name, c.about));
    }
    text.push_str("\nRun `cargo xtask <COMMAND> --help` for the options of one command.");
    text
}
