//! Metrics of a `cache sync` in the Prometheus text exposition format, for node_exporter's
//! textfile collector (`--collector.textfile.directory`): the last run's time, outcome and
//! duration, lists by outcome and error code, images cached, failed and expired (by code and
//! reason), bytes downloaded, handler failures, and the size of the cache.
//!
//! Every sample is a gauge about the last run (a textfile is rewritten each run, so counters
//! would reset anyway); every label value of a family is written, zeros included, so that
//! alerts can compare against them. [`write_textfile`] replaces the file atomically, as the
//! collector requires.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vmc_model::{ErrorCode, ExpiryReason};

use crate::error::{CacheError, io};
use crate::report::{SyncReport, UpdateStatus};

/// The name of the sample that carries the last successful run's time.
pub const LAST_SUCCESS: &str = "vmc_sync_last_success_timestamp_seconds";

/// Every expiry reason, in the contract's order.
const REASONS: [ExpiryReason; 6] = [
    ExpiryReason::Unselected,
    ExpiryReason::Removed,
    ExpiryReason::Replaced,
    ExpiryReason::ListExpired,
    ExpiryReason::Unendorsed,
    ExpiryReason::Corrupt,
];

/// Every list outcome.
const STATUSES: [UpdateStatus; 5] = [
    UpdateStatus::Added,
    UpdateStatus::Updated,
    UpdateStatus::Unchanged,
    UpdateStatus::Failed,
    UpdateStatus::Skipped,
];

/// The state of the cache after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTotals {
    /// Files in the cache.
    pub images: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// What the metrics are rendered from.
#[derive(Debug, Clone, Copy)]
pub struct SyncMetrics<'a> {
    /// What the run did (an empty report when it stopped with an error).
    pub report: &'a SyncReport,
    /// Whether the run succeeded as a whole (no error, nothing failed).
    pub success: bool,
    /// How long it took.
    pub duration: Duration,
    /// When it ended.
    pub now: DateTime<Utc>,
    /// When a run last succeeded before this one (see [`last_success`]); replaced by `now`
    /// when this run succeeded.
    pub previous_success: Option<DateTime<Utc>>,
    /// The cache after the run, when known.
    pub cache: Option<CacheTotals>,
}

fn seconds(t: DateTime<Utc>) -> String {
    format!("{}.{:03}", t.timestamp(), t.timestamp_subsec_millis())
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Writes one family: `# HELP`, `# TYPE gauge`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn gauge(&mut self, name: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
        self
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let inner = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect::<Vec<_>>()
                .join(",");
            let _ = write!(self.out, "{{{inner}}}");
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Renders the metrics of one run.
pub fn render(m: &SyncMetrics<'_>) -> String {
    let r = m.report;
    let mut out = String::new();
    let mut f = Family { out: &mut out };

    let name = "vmc_sync_last_run_timestamp_seconds";
    f.gauge(name, "Unix time the last cache sync ended.")
        .sample(name, &[], seconds(m.now));
    let last_success = if m.success {
        Some(m.now)
    } else {
        m.previous_success
    };
    if let Some(at) = last_success {
        f.gauge(
            LAST_SUCCESS,
            "Unix time the last cache sync without any failure ended.",
        )
        .sample(LAST_SUCCESS, &[], seconds(at));
    }
    let name = "vmc_sync_success";
    f.gauge(
        name,
        "1 when the last cache sync succeeded, 0 when a list, an image or a handler failed or the run stopped with an error.",
    )
    .sample(name, &[], u8::from(m.success));
    let name = "vmc_sync_duration_seconds";
    f.gauge(name, "How long the last cache sync took.").sample(
        name,
        &[],
        format!("{:.3}", m.duration.as_secs_f64()),
    );

    let name = "vmc_sync_lists";
    f.gauge(
        name,
        "Image lists of the last cache sync by outcome (added, updated, unchanged, failed).",
    );
    for status in STATUSES {
        let n = r
            .subscriptions
            .iter()
            .filter(|s| s.status == status)
            .count();
        f.sample(name, &[("status", status.as_str())], n);
    }
    let name = "vmc_sync_list_failures";
    f.gauge(
        name,
        "Image lists the last cache sync rejected, by error code.",
    );
    for code in ErrorCode::ALL {
        let n = r
            .subscriptions
            .iter()
            .filter(|s| s.error.as_ref().is_some_and(|e| e.code == code))
            .count();
        f.sample(name, &[("code", code.as_str())], n);
    }

    let name = "vmc_sync_images_downloaded";
    f.gauge(name, "Images the last cache sync brought into the cache.")
        .sample(name, &[], r.downloaded.len());
    let name = "vmc_sync_downloaded_bytes";
    f.gauge(name, "Bytes the last cache sync received over the network.")
        .sample(name, &[], r.bytes_downloaded);
    let name = "vmc_sync_image_failures";
    f.gauge(
        name,
        "Images the last cache sync could not bring into (or keep in) the cache, by error code.",
    );
    for code in ErrorCode::ALL {
        let n = r.failed.iter().filter(|x| x.code == code).count();
        f.sample(name, &[("code", code.as_str())], n);
    }
    let name = "vmc_sync_images_expired";
    f.gauge(
        name,
        "Images the last cache sync moved to the expired directory, by reason.",
    );
    for reason in REASONS {
        let n = r.expired.iter().filter(|x| x.reason == reason).count();
        f.sample(name, &[("reason", reason.as_str())], n);
    }
    let name = "vmc_sync_images_missing";
    f.gauge(
        name,
        "Cached images whose file the last cache sync found gone from the cache directory.",
    )
    .sample(name, &[], r.missing.len());
    let name = "vmc_sync_verified_files";
    f.gauge(
        name,
        "Cached files the last cache sync re-hashed (--verify).",
    )
    .sample(name, &[], r.verified);
    let name = "vmc_sync_handler_failures";
    f.gauge(
        name,
        "Event handler runs of the last cache sync that failed or timed out (handler_failed).",
    )
    .sample(name, &[], r.handler_failures);

    if let Some(cache) = m.cache {
        let name = "vmc_cache_images";
        f.gauge(
            name,
            "Verified images in the cache after the last cache sync.",
        )
        .sample(name, &[], cache.images);
        let name = "vmc_cache_bytes";
        f.gauge(
            name,
            "Bytes of the verified images in the cache after the last cache sync.",
        )
        .sample(name, &[], cache.bytes);
    }
    out
}

/// The last successful run's time recorded in an earlier metrics file, if any.
pub fn last_success(previous: &str) -> Option<DateTime<Utc>> {
    previous.lines().find_map(|line| {
        let value = line.strip_prefix(LAST_SUCCESS)?.strip_prefix(' ')?;
        let secs: f64 = value.trim().parse().ok()?;
        if !secs.is_finite() {
            return None;
        }
        let whole = secs.floor();
        // Bounded by chrono's range check below; the cast saturates.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (s, nanos) = (whole as i64, ((secs - whole) * 1e9) as u32);
        DateTime::from_timestamp(s, nanos)
    })
}

/// Replaces `path` with `text` atomically: a temporary file in the same directory, written,
/// fsynced and renamed over it (so the collector never reads half a file).
pub fn write_textfile(path: &Path, text: &str) -> Result<(), CacheError> {
    vmc_fetch::replace_file(path, text.as_bytes()).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ExpiryReport, ImageFailure, ListReport};
    use chrono::TimeZone;
    use vmc_model::LastError;

    fn list(status: UpdateStatus, code: Option<ErrorCode>) -> ListReport {
        ListReport {
            url: "https://example.org/list".into(),
            identifier: None,
            status,
            error: code.map(|code| LastError {
                code,
                message: "m".into(),
            }),
            signer: None,
            version: None,
            new_images: Vec::new(),
            rejected_images: Vec::new(),
            skipped: None,
        }
    }

    fn report() -> SyncReport {
        SyncReport {
            subscriptions: vec![
                list(UpdateStatus::Updated, None),
                list(UpdateStatus::Unchanged, None),
                list(UpdateStatus::Failed, Some(ErrorCode::ListExpired)),
            ],
            downloaded: vec!["a".into(), "b".into()],
            missing: vec!["b".into()],
            left_to_others: Vec::new(),
            from_peers: Vec::new(),
            expired: vec![ExpiryReport {
                identifier: "c".into(),
                reason: ExpiryReason::Removed,
                expired_file: Some("c.2027".into()),
            }],
            failed: vec![ImageFailure {
                identifier: "d".into(),
                code: ErrorCode::ChecksumMismatch,
                message: "m".into(),
            }],
            bytes_downloaded: 1_048_576,
            verified: 0,
            handler_failures: 1,
        }
    }

    /// Checks every line strictly (a `# HELP`/`# TYPE … gauge` comment or
    /// `name{labels} value` with a numeric value), parses the text with `prometheus-parse`,
    /// and returns the parsed samples.
    fn parse_strict(text: &str) -> Vec<prometheus_parse::Sample> {
        assert!(text.ends_with('\n'));
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                assert!(
                    rest.starts_with("HELP vmc_") || rest.starts_with("TYPE vmc_"),
                    "{line}"
                );
                if let Some(t) = rest.strip_prefix("TYPE ") {
                    assert!(t.ends_with(" gauge"), "{line}");
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                name.starts_with("vmc_")
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{line}"
            );
            let labels = &series[name.len()..];
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
            samples += 1;
        }
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        assert_eq!(scrape.samples.len(), samples, "{text}");
        scrape.samples
    }

    fn value(samples: &[prometheus_parse::Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
        let s = samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_failed_run_keeps_the_previous_success_time() {
        let now = Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap();
        let before = Utc.with_ymd_and_hms(2027, 5, 31, 23, 0, 0).unwrap();
        let r = report();
        let text = render(&SyncMetrics {
            report: &r,
            success: false,
            duration: Duration::from_millis(1500),
            now,
            previous_success: Some(before),
            cache: Some(CacheTotals {
                images: 3,
                bytes: 42,
            }),
        });
        let samples = parse_strict(&text);
        assert_eq!(value(&samples, "vmc_sync_success", None), 0.0);
        assert_eq!(
            value(&samples, "vmc_sync_lists", Some(("status", "updated"))),
            1.0
        );
        assert_eq!(
            value(
                &samples,
                "vmc_sync_list_failures",
                Some(("code", "list_expired"))
            ),
            1.0
        );
        assert_eq!(
            value(&samples, LAST_SUCCESS, None),
            before.timestamp() as f64
        );
        assert!(text.contains("vmc_sync_success 0\n"), "{text}");
        assert!(text.contains(&format!(
            "vmc_sync_last_run_timestamp_seconds {}.000\n",
            now.timestamp()
        )));
        assert!(text.contains(&format!(
            "vmc_sync_last_success_timestamp_seconds {}.000\n",
            before.timestamp()
        )));
        assert!(text.contains("vmc_sync_duration_seconds 1.500\n"));
        assert!(text.contains("vmc_sync_lists{status=\"failed\"} 1\n"));
        assert!(text.contains("vmc_sync_lists{status=\"added\"} 0\n"));
        assert!(text.contains("vmc_sync_list_failures{code=\"list_expired\"} 1\n"));
        assert!(text.contains("vmc_sync_image_failures{code=\"checksum_mismatch\"} 1\n"));
        assert!(text.contains("vmc_sync_images_expired{reason=\"removed\"} 1\n"));
        assert!(text.contains("vmc_sync_images_expired{reason=\"corrupt\"} 0\n"));
        assert!(text.contains("vmc_sync_downloaded_bytes 1048576\n"));
        assert!(text.contains("vmc_sync_images_downloaded 2\n"));
        assert!(text.contains("vmc_sync_images_missing 1\n"));
        assert!(text.contains("vmc_sync_handler_failures 1\n"));
        assert!(text.contains("vmc_cache_images 3\n"));
        assert_eq!(last_success(&text), Some(before));
    }

    #[test]
    fn a_successful_run_is_the_last_success() {
        let now = Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap()
            + chrono::Duration::milliseconds(250);
        let r = SyncReport::default();
        let text = render(&SyncMetrics {
            report: &r,
            success: true,
            duration: Duration::ZERO,
            now,
            previous_success: None,
            cache: None,
        });
        let samples = parse_strict(&text);
        assert_eq!(value(&samples, "vmc_sync_success", None), 1.0);
        assert_eq!(
            value(&samples, "vmc_sync_lists", Some(("status", "failed"))),
            0.0
        );
        assert_eq!(last_success(&text), Some(now));
        assert!(!text.contains("vmc_cache_images"));
    }

    #[test]
    fn a_first_failed_run_has_no_success_time() {
        let r = SyncReport::default();
        let text = render(&SyncMetrics {
            report: &r,
            success: false,
            duration: Duration::ZERO,
            now: Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap(),
            previous_success: None,
            cache: None,
        });
        assert!(!text.contains(LAST_SUCCESS), "{text}");
        assert_eq!(last_success(&text), None);
        assert_eq!(
            last_success("vmc_sync_last_success_timestamp_seconds NaN\n"),
            None
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_textfile_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmc.prom");
        write_textfile(&path, "one 1\n").unwrap();
        write_textfile(&path, "two 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vmc.prom")]);
        let missing = dir.path().join("no/such/dir/vmc.prom");
        assert!(write_textfile(&missing, "x 1\n").is_err());
    }
}
