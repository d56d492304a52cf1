//! `vmc cache …`

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use vmc_cache::metrics::{self, CacheTotals, SyncMetrics};
use vmc_cache::store::ImageFilter;
use vmc_cache::{CacheError, SyncOptions, SyncReport};
use vmc_model::ExpiryReason;

use super::{Ctx, print_run};
use crate::args::CacheCmd;
use crate::output::{self, Format};
use crate::progress::Bars;
use crate::{Outcome, UsageError, report};

/// Parses `30d`, `12h`, `90m`, `45s` (or a plain number of seconds).
pub fn parse_duration(text: &str) -> Result<TimeDelta, UsageError> {
    let bad = || {
        UsageError(format!(
            "{text:?} is not a duration such as 30d, 12h, 90m or 45s"
        ))
    };
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        "w" => n.checked_mul(604_800).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    TimeDelta::try_seconds(seconds).ok_or_else(bad)
}

/// Writes the metrics file of a sync (see `vmc_cache::metrics`); says whether it could. A run
/// that found the lock taken writes nothing: the holder will.
fn write_metrics(
    ctx: &Ctx,
    path: &Path,
    result: &Result<SyncReport, CacheError>,
    elapsed: Duration,
) -> bool {
    if matches!(result, Err(CacheError::Locked { .. })) {
        return true;
    }
    let vmc = &ctx.vmc;
    let empty = SyncReport::default();
    let (report, success) = match result {
        Ok(r) => (r, !r.has_failures()),
        Err(_) => (&empty, false),
    };
    let cache = vmc.store().cache_entries().ok().map(|entries| CacheTotals {
        images: entries.len(),
        bytes: entries.iter().map(|e| e.size).sum(),
    });
    let previous_success = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| metrics::last_success(&text));
    let text = metrics::render(&SyncMetrics {
        report,
        success,
        duration: elapsed,
        now: vmc.config().clock.now(),
        previous_success,
        cache,
    });
    match metrics::write_textfile(path, &text) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("metrics file: {:#}", anyhow::Error::from(e));
            false
        }
    }
}

/// Runs a cache command.
pub fn run(ctx: &Ctx, cmd: CacheCmd) -> anyhow::Result<Outcome> {
    let vmc = &ctx.vmc;
    let bars = Bars::new(ctx.bars && ctx.format == Format::Text);
    match cmd {
        CacheCmd::Sync {
            jobs,
            verify,
            metrics_file,
            publish,
            lock,
            publish_args,
        } => {
            let started = Instant::now();
            let (lock, result) = match vmc.lock(Duration::from_secs(lock.lock_wait), &ctx.who) {
                Ok(lock) => {
                    let result = vmc.join_site("cache sync").and_then(|_node| {
                        let options = SyncOptions {
                            jobs: usize::from(jobs),
                            verify,
                            update_lists: true,
                        };
                        vmc.sync(&options, &bars)
                    });
                    (Some(lock), result)
                }
                Err(e) => (None, Err(e)),
            };
            drop(bars);
            let metrics_ok = match &metrics_file {
                Some(path) => write_metrics(ctx, path, &result, started.elapsed()),
                None => true,
            };
            let outcome = print_run(ctx, &result?, "cache sync");
            // Publishing runs under the same lock, after the cache is complete.
            let published = if publish {
                super::publish::sync(ctx, &publish_args, false)?
            } else {
                Outcome::Success
            };
            drop(lock);
            Ok(
                if metrics_ok && outcome == Outcome::Success && published == Outcome::Success {
                    Outcome::Success
                } else {
                    Outcome::Failed
                },
            )
        }
        CacheCmd::Download { jobs, lock } => {
            let _lock = vmc.lock(Duration::from_secs(lock.lock_wait), &ctx.who)?;
            let _node = vmc.join_site("cache download")?;
            let r = vmc.download(usize::from(jobs), &bars)?;
            drop(bars);
            Ok(print_run(ctx, &r, "cache download"))
        }
        CacheCmd::Expire { lock } => {
            let _lock = vmc.lock(Duration::from_secs(lock.lock_wait), &ctx.who)?;
            let _node = vmc.join_site("cache expire")?;
            let r = vmc.expire()?;
            Ok(print_run(ctx, &r, "cache expire"))
        }
        CacheCmd::Verify { jobs, lock } => {
            let _lock = vmc.lock(Duration::from_secs(lock.lock_wait), &ctx.who)?;
            let r = vmc.verify_cache(usize::from(jobs), &bars)?;
            drop(bars);
            let outcome = print_run(ctx, &r, "cache verify");
            // A corrupt file (expired) or a lost one (missing) is a cache that did not verify.
            let corrupt = r.expired.iter().any(|e| e.reason == ExpiryReason::Corrupt);
            Ok(if corrupt || !r.missing.is_empty() {
                Outcome::Failed
            } else {
                outcome
            })
        }
        CacheCmd::List => {
            let records = vmc.store().images(&ImageFilter::default())?;
            let dir = &vmc.config().cache_dir;
            let mut entries: Vec<_> = vmc
                .store()
                .cache_entries()?
                .iter()
                .map(|c| report::cached(c, dir, &records))
                .collect();
            let missing = vmc.store().missing_entries()?;
            entries.extend(missing.iter().map(|m| report::missing(m, dir, &records)));
            entries.sort_by(|a, b| a.identifier.cmp(&b.identifier));
            match ctx.format {
                Format::Json => output::json(&entries),
                Format::Text => {
                    for e in &entries {
                        output::line(format!(
                            "{}\t{}\t{}\t{}{}",
                            e.identifier,
                            output::bytes(e.size),
                            e.cached_at,
                            e.file,
                            e.missing_since
                                .as_ref()
                                .map(|t| format!("\tmissing since {t}"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
            Ok(Outcome::Success)
        }
        CacheCmd::Purge { older_than } => {
            let min_age = older_than.as_deref().map(parse_duration).transpose()?;
            let now = vmc.config().clock.now();
            let mut purged = Vec::new();
            let mut failed = false;
            // Only expired records name a file in the expired directory; cached and missing
            // records are the cache's own (a missing one is fetched again or forgotten by sync).
            for e in vmc.store().expired_entries()? {
                if min_age.is_some_and(|age| now - e.expired_at < age) {
                    continue;
                }
                let path = vmc.config().expired_dir.join(&e.file);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::error!("cannot delete {}: {err}", path.display());
                        failed = true;
                        continue;
                    }
                }
                vmc.store().forget_expired(&e.file)?;
                purged.push(e.file);
            }
            match ctx.format {
                Format::Json => output::json(&serde_json::json!({ "purged": purged })),
                Format::Text => {
                    for p in &purged {
                        output::line(format!("purged\t{p}"));
                    }
                }
            }
            Ok(if failed {
                Outcome::Failed
            } else {
                Outcome::Success
            })
        }
        CacheCmd::Events { failed } => {
            for e in vmc.store().events(failed, None)? {
                let (outcome, message) = match &e.outcome {
                    vmc_cache::store::EventOutcome::Failed { message } => {
                        ("failed", Some(message.clone()))
                    }
                    other => (other.as_str(), None),
                };
                match ctx.format {
                    Format::Json => output::json_line(&serde_json::json!({
                        "id": e.id,
                        "session": e.session,
                        "type": e.event_type.as_str(),
                        "identifier": e.identifier,
                        "outcome": outcome,
                        "message": message,
                        "at": report::time(e.at),
                        "payload": e.payload,
                    })),
                    Format::Text => output::line(format!(
                        "{}\t{}\t{}\t{}{}",
                        report::time(e.at),
                        e.event_type,
                        e.identifier.as_deref().unwrap_or("-"),
                        outcome,
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                }
            }
            Ok(Outcome::Success)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30d").ok(), TimeDelta::try_days(30));
        assert_eq!(parse_duration("12h").ok(), TimeDelta::try_hours(12));
        assert_eq!(parse_duration("90m").ok(), TimeDelta::try_minutes(90));
        assert_eq!(parse_duration("45").ok(), TimeDelta::try_seconds(45));
        assert!(parse_duration("ten days").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }
}
