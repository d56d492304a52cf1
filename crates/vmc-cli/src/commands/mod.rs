//! One function per command; each returns whether everything asked for succeeded.

mod cache;
mod doctor;
mod endorser;
mod generate;
mod image;
mod import;
mod node;
mod publish;
mod subscribe;

use anyhow::Context;
use vmc_cache::{Vmc, report::SyncReport};
use vmc_model::Subscription;

use crate::args::{Cli, Command};
use crate::output::{self, Format};
use crate::report;
use crate::{Outcome, UsageError, settings};

/// What every command gets.
pub struct Ctx {
    /// The open instance.
    pub vmc: Vmc,
    /// Text or JSON.
    pub format: Format,
    /// Progress bars wanted (not quiet).
    pub bars: bool,
    /// The command line, for the lock holder note.
    pub who: String,
}

impl Ctx {
    /// A subscription by list identifier or URL.
    pub fn subscription(&self, key: &str) -> anyhow::Result<Subscription> {
        self.vmc.store().find_subscription(key)?.ok_or_else(|| {
            vmc_cache::CacheError::NoSuchSubscription {
                key: key.to_owned(),
            }
            .into()
        })
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::GenerateMan { dir } => return generate::man(dir),
        Command::GenerateCompletions { shell } => return generate::completions(*shell),
        _ => {}
    }
    let config = settings::config(&cli.global).map_err(|e| UsageError(format!("{e:#}")))?;
    if matches!(cli.command, Command::Doctor) {
        return Ok(doctor::run(&config, settings::format(&cli.global)));
    }
    if let Command::ImportVmcatcher(args) = &cli.command {
        // An import checks its inputs before vmc's database is opened, which creates it.
        let checked = import::check(&config, args)?;
        return import::run(&open(config, &cli)?, args, checked);
    }
    let ctx = open(config, &cli)?;
    match cli.command {
        Command::Endorser(cmd) => endorser::run(&ctx, cmd),
        Command::Subscribe(cmd) => subscribe::run(&ctx, cmd),
        Command::Image(cmd) => image::run(&ctx, cmd),
        Command::Cache(cmd) => cache::run(&ctx, cmd),
        Command::Publish(cmd) => publish::run(&ctx, cmd),
        Command::Node(cmd) => node::run(&ctx, cmd),
        Command::Doctor => Ok(doctor::run(ctx.vmc.config(), ctx.format)),
        Command::ImportVmcatcher(_)
        | Command::GenerateMan { .. }
        | Command::GenerateCompletions { .. } => Ok(Outcome::Success),
    }
}

/// Opens the instance (creating and migrating the database) for a command.
fn open(config: vmc_cache::Config, cli: &Cli) -> anyhow::Result<Ctx> {
    let db = settings::redact_database_url(&config.database_url);
    let vmc = Vmc::open(config).with_context(|| format!("cannot open the database {db}"))?;
    Ok(Ctx {
        vmc,
        format: settings::format(&cli.global),
        bars: !cli.global.quiet,
        // The lock note names the command; URLs in it lose their credentials.
        who: std::env::args()
            .map(|a| {
                if a.contains("://") {
                    vmc_cache::fetch::redact_url(&a)
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// Prints a run report (JSON, or text lines plus a summary on stderr) and says whether it
/// succeeded.
pub fn print_run(ctx: &Ctx, r: &SyncReport, what: &str) -> Outcome {
    match ctx.format {
        Format::Json => output::json(&report::run(r)),
        Format::Text => {
            for s in &r.subscriptions {
                let name = s
                    .identifier
                    .clone()
                    .unwrap_or_else(|| vmc_cache::fetch::redact_url(&s.url));
                match &s.error {
                    None if s.skipped.is_some() => output::line(format!(
                        "{}\t{name}\t{}",
                        s.status.as_str(),
                        s.skipped.as_deref().unwrap_or_default()
                    )),
                    None => output::line(format!(
                        "{}\t{name}{}",
                        s.status.as_str(),
                        s.version
                            .as_ref()
                            .map(|v| format!(" (version {v})"))
                            .unwrap_or_default()
                    )),
                    Some(e) => output::line(format!("failed\t{name}\t{}: {}", e.code, e.message)),
                }
                for x in &s.rejected_images {
                    output::line(format!(
                        "image left out\t{}\timage_invalid: {}",
                        x.identifier.as_deref().unwrap_or("?"),
                        x.message
                    ));
                }
            }
            for id in &r.downloaded {
                output::line(format!("cached\t{id}"));
            }
            for l in &r.from_peers {
                output::line(format!("copied\t{}\tfrom node {}", l.identifier, l.node));
            }
            for l in &r.left_to_others {
                output::line(format!(
                    "elsewhere\t{}\tnode {} downloads it",
                    l.identifier, l.node
                ));
            }
            for id in &r.missing {
                output::line(format!("missing\t{id}"));
            }
            for e in &r.expired {
                output::line(format!("expired\t{}\t{}", e.identifier, e.reason));
            }
            if r.verified > 0 {
                output::line(format!(
                    "verified\t{} {}",
                    r.verified,
                    if r.verified == 1 { "file" } else { "files" }
                ));
            }
            for f in &r.failed {
                output::line(format!(
                    "failed\t{}\t{}: {}",
                    f.identifier, f.code, f.message
                ));
            }
        }
    }
    let failed_lists = r.subscriptions.iter().filter(|s| s.error.is_some()).count();
    let summary = format!(
        "vmc {what}: {} lists ({failed_lists} failed), {} images cached, {} expired, {} failed, {} downloaded{}",
        r.subscriptions.len(),
        r.downloaded.len(),
        r.expired.len(),
        r.failed.len(),
        output::bytes(r.bytes_downloaded),
        if r.handler_failures > 0 {
            format!(", {} handler failures (handler_failed)", r.handler_failures)
        } else {
            String::new()
        }
    );
    // The one-line summary: on stderr for people; under -q only when something failed, so a
    // cron job mails only runs that need attention (the exit status says the same).
    if r.has_failures() {
        tracing::error!("{summary}");
    } else if ctx.bars {
        eprintln!("{summary}");
    }
    if r.has_failures() {
        Outcome::Failed
    } else {
        Outcome::Success
    }
}
