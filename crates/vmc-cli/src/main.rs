//! The `vmc` binary: parses the command line, builds the library configuration, runs one
//! command and maps its outcome to the exit status of the contract (0 ok, 1 failed, 2 usage or
//! setup error).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    reason = "the binary owns the terminal and the exit status"
)]
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls,
    reason = "doc comments of the clap types are the terminal help text, not HTML"
)]

mod args;
mod commands;
mod env;
mod output;
mod progress;
mod report;
mod settings;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for succeeded.
    Success,
    /// Something failed (details already printed).
    Failed,
}

/// An error that is the user's or the site's set-up (exit status 2), not a failure of the work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn init_logging(global: &args::GlobalArgs) {
    let default = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    // VMC_LOG: a level (`debug`) or per-crate levels (`warn,vmc_fetch=trace`).
    let custom = env::first(&[env::VMC_LOG]).map(|f| (f.parse::<Targets>(), f));
    let filter = match &custom {
        Some((Ok(targets), _)) => targets.clone(),
        _ => default.parse().unwrap_or_default(),
    };
    let color = env::first(&[env::NO_COLOR]).is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(color)
                .without_time()
                .with_target(false),
        )
        .with(filter)
        .init();
    if let Some((Err(e), value)) = custom {
        tracing::warn!(
            "VMC_LOG={value:?} ignored: {e}; expected e.g. `debug` or `warn,vmc_fetch=trace`"
        );
    }
}

fn exit_status(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
        if let Some(e) = cause.downcast_ref::<vmc_cache::CacheError>() {
            return if e.is_setup() { 2 } else { 1 };
        }
    }
    1
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging(&cli.global);
    match commands::run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("vmc: error: {error:#}");
            ExitCode::from(exit_status(&error))
        }
    }
}
