//! `vmc import-vmcatcher`: one command that moves a vmcatcher site to vmc (see
//! `vmc_cache::import`), with a text or JSON report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use vmc_cache::Config;
use vmc_cache::fetch::redact_url;
use vmc_cache::import::{CheckedImport, ImportOptions, ImportReport, check_import};

use super::Ctx;
use crate::args::ImportArgs;
use crate::output::{self, Format};
use crate::report::ErrorJson;
use crate::{Outcome, UsageError, settings};

/// vmcatcher's database as a file path: a plain path, or an SQLAlchemy SQLite URL read as
/// SQLAlchemy reads it (the one rule `VMCATCHER_RDBMS` gets everywhere, see
/// [`settings::sqlalchemy_sqlite_path`]).
pub fn source_path(text: &str) -> Result<PathBuf, UsageError> {
    match settings::sqlalchemy_sqlite_path(text) {
        Ok(Some(path)) => Ok(path),
        Ok(None) => Err(UsageError(format!(
            "--vmcatcher-database {}: only SQLite vmcatcher databases can be imported (a file path or sqlite:////abs/path)",
            redact_url(text)
        ))),
        Err(e) => Err(UsageError(format!("--vmcatcher-database {e}"))),
    }
}

/// The SQLite file of vmc's own database URL, if it is one.
fn own_database_file(url: &str) -> Option<PathBuf> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("sqlite://") {
        &url["sqlite://".len()..]
    } else if lower.starts_with("sqlite:") {
        &url["sqlite:".len()..]
    } else if url.contains("://") {
        return None;
    } else {
        url
    };
    Some(PathBuf::from(rest))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One endorser in the JSON report.
#[derive(Debug, Serialize)]
struct EndorserJson {
    id: String,
    status: &'static str,
    identities: usize,
    notes: Vec<String>,
}

/// One subscription in the JSON report.
#[derive(Debug, Serialize)]
struct SubscriptionJson {
    identifier: String,
    url: String,
    status: &'static str,
    version: Option<String>,
    new_images: &'static str,
    enabled: bool,
    endorsers: Vec<String>,
    stored_list_error: Option<ErrorJson>,
    error: Option<ErrorJson>,
    selected: Vec<String>,
    pending: Vec<String>,
    notes: Vec<String>,
}

/// One adopted file in the JSON report.
#[derive(Debug, Serialize)]
struct AdoptedJson {
    identifier: String,
    source: String,
    size: u64,
    how: &'static str,
}

/// One file left alone in the JSON report.
#[derive(Debug, Serialize)]
struct SkippedJson {
    identifier: String,
    source: String,
    reason: &'static str,
    message: String,
}

/// The JSON report of `vmc import-vmcatcher`.
#[derive(Debug, Serialize)]
struct ImportJson {
    endorsers: Vec<EndorserJson>,
    subscriptions: Vec<SubscriptionJson>,
    adopted: Vec<AdoptedJson>,
    skipped: Vec<SkippedJson>,
    cache_error: Option<String>,
}

fn to_json(r: &ImportReport) -> ImportJson {
    ImportJson {
        endorsers: r
            .endorsers
            .iter()
            .map(|e| EndorserJson {
                id: e.id.clone(),
                status: e.status.as_str(),
                identities: e.identities.len(),
                notes: e.notes.clone(),
            })
            .collect(),
        subscriptions: r
            .subscriptions
            .iter()
            .map(|s| SubscriptionJson {
                identifier: s.identifier.clone(),
                url: redact_url(&s.url),
                status: s.status.as_str(),
                version: s.version.clone(),
                new_images: s.new_images.as_str(),
                enabled: s.enabled,
                endorsers: s.endorsers.clone(),
                stored_list_error: s.stored_list_error.as_ref().map(ErrorJson::from),
                error: s.error.as_ref().map(ErrorJson::from),
                selected: s.selected.clone(),
                pending: s.pending.clone(),
                notes: s.notes.clone(),
            })
            .collect(),
        adopted: r
            .adopted
            .iter()
            .map(|a| AdoptedJson {
                identifier: a.identifier.clone(),
                source: a.source.display().to_string(),
                size: a.size,
                how: a.how.as_str(),
            })
            .collect(),
        skipped: r
            .skipped
            .iter()
            .map(|s| SkippedJson {
                identifier: s.identifier.clone(),
                source: s.source.display().to_string(),
                reason: s.reason.as_str(),
                message: s.message.clone(),
            })
            .collect(),
        cache_error: r.cache_error.clone(),
    }
}

fn print_text(r: &ImportReport) {
    for e in &r.endorsers {
        output::line(format!("endorser\t{}\t{}", e.status.as_str(), e.id));
        for n in &e.notes {
            tracing::warn!("endorser {}: {n}", e.id);
        }
    }
    for s in &r.subscriptions {
        let version = s
            .version
            .as_ref()
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default();
        match &s.error {
            None => output::line(format!(
                "subscription\t{}\t{}{version}",
                s.status.as_str(),
                s.identifier
            )),
            Some(e) => output::line(format!(
                "subscription\t{}\t{}\t{}: {}",
                s.status.as_str(),
                s.identifier,
                e.code,
                e.message
            )),
        }
        if let (Some(e), None) = (&s.stored_list_error, &s.error) {
            tracing::warn!(
                "{}: the list vmcatcher stored was refused ({}: {}); the list was fetched again",
                s.identifier,
                e.code,
                e.message
            );
        }
        for n in &s.notes {
            tracing::warn!("{}: {n}", s.identifier);
        }
        for id in &s.selected {
            output::line(format!("selected\t{id}"));
        }
        for id in &s.pending {
            output::line(format!(
                "pending\t{id}\tselected in vmcatcher, no current list names it: selected when one does"
            ));
        }
    }
    for a in &r.adopted {
        output::line(format!("adopted\t{}\t{}", a.identifier, a.how.as_str()));
    }
    for s in &r.skipped {
        output::line(format!(
            "skipped\t{}\t{}: {}",
            s.identifier,
            s.reason.as_str(),
            s.message
        ));
    }
    if let Some(e) = &r.cache_error {
        output::line(format!("cache\tfailed\t{e}"));
    }
}

/// Checks the import's inputs before vmc's database is opened (and so created): the
/// vmcatcher database, its cache directory, the CA directory. Nothing is written when they fail.
pub fn check(config: &Config, args: &ImportArgs) -> anyhow::Result<CheckedImport> {
    let database = source_path(&args.vmcatcher_database)?;
    if !database.is_file() {
        // vmcatcher's README writes sqlite:///var/lib/…, which SQLAlchemy reads relative to the
        // working directory: name the absolute file when that is the one that exists.
        let absolute = Path::new("/").join(&database);
        let hint = if database.is_relative() && absolute.is_file() {
            format!(
                "; {} exists: SQLAlchemy, and so vmcatcher and vmc, read sqlite:///{} relative to the working directory, write sqlite:///{} for the absolute file",
                absolute.display(),
                database.display(),
                absolute.display()
            )
        } else {
            String::new()
        };
        return Err(UsageError(format!(
            "the vmcatcher database {} does not exist (give --vmcatcher-database or VMCATCHER_RDBMS){hint}",
            database.display()
        ))
        .into());
    }
    if own_database_file(&config.database_url).is_some_and(|own| same_file(&own, &database)) {
        tracing::warn!(
            "vmc's own tables go into the vmcatcher database file {} (VMCATCHER_RDBMS is also vmc's database); set VMC_DATABASE, --database or --home to keep them apart",
            database.display()
        );
    }
    if args.vmcatcher_cache.is_none() {
        tracing::warn!(
            "no vmcatcher cache directory given (--vmcatcher-cache or VMCATCHER_CACHE_DIR_CACHE): no cached file is adopted"
        );
    }
    Ok(check_import(
        config,
        &ImportOptions {
            database,
            cache_dir: args.vmcatcher_cache.clone(),
            fetch_rejected: !args.no_fetch,
        },
    )?)
}

/// Runs `vmc import-vmcatcher` on inputs [`check`] passed.
pub fn run(ctx: &Ctx, args: &ImportArgs, checked: CheckedImport) -> anyhow::Result<Outcome> {
    let vmc = &ctx.vmc;
    let _lock = vmc.lock(Duration::from_secs(args.lock.lock_wait), &ctx.who)?;
    let report = vmc.import_checked(checked)?;
    match ctx.format {
        Format::Json => output::json(&to_json(&report)),
        Format::Text => print_text(&report),
    }
    let failed_subs = report
        .subscriptions
        .iter()
        .filter(|s| s.error.is_some())
        .count();
    tracing::info!(
        "import-vmcatcher: {} endorsers, {} subscriptions ({failed_subs} without a list), {} files adopted, {} left alone",
        report.endorsers.len(),
        report.subscriptions.len(),
        report.adopted.len(),
        report.skipped.len()
    );
    Ok(if report.has_failures() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_urls_name_files_as_sqlalchemy_reads_them() {
        assert_eq!(
            source_path("sqlite:////var/lib/vmcatcher/vmcatcher.db").ok(),
            Some(PathBuf::from("/var/lib/vmcatcher/vmcatcher.db"))
        );
        assert_eq!(
            source_path("sqlite:///vmcatcher.db").ok(),
            Some(PathBuf::from("vmcatcher.db"))
        );
        assert_eq!(
            source_path("/srv/vmcatcher.db").ok(),
            Some(PathBuf::from("/srv/vmcatcher.db"))
        );
        assert!(source_path("sqlite://").is_err());
        assert!(source_path("sqlite:///:memory:").is_err());
        let err = source_path("postgresql://vmc:secret@db/vmcatcher").unwrap_err();
        assert!(!err.0.contains("secret"), "{}", err.0);
    }

    #[test]
    fn own_database_urls_name_their_file() {
        assert_eq!(
            own_database_file("sqlite:///var/lib/vmc/vmc.db"),
            Some(PathBuf::from("/var/lib/vmc/vmc.db"))
        );
        assert_eq!(
            own_database_file("sqlite:////var/lib/vmcatcher/vmcatcher.db"),
            Some(PathBuf::from("//var/lib/vmcatcher/vmcatcher.db"))
        );
        assert_eq!(own_database_file("postgres://db/vmc"), None);
    }
}
