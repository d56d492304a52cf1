//! Turns flags and environment variables into the library's [`vmc_cache::Config`]
//! (flag > environment, first variable listed wins > default).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use vmc_cache::fetch::ClientConfig;
use vmc_cache::trust::CrlMode;
use vmc_cache::{CacheMode, Clock, Config, EventScope, Mirror};

use crate::args::{CacheModeArg, CrlArg, EventsArg, GlobalArgs};
use crate::env;
use crate::output::Format;

/// The home directory: `--home`, `VMC_HOME`, `/var/lib/vmc` as root, else
/// `$XDG_DATA_HOME/vmc` or `~/.local/share/vmc`.
pub fn home(global: &GlobalArgs) -> PathBuf {
    if let Some(h) = &global.home {
        return h.clone();
    }
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/vmc");
    }
    if let Some(xdg) = env::first(&["XDG_DATA_HOME"]) {
        return PathBuf::from(xdg).join("vmc");
    }
    let home = env::first(&["HOME"]).unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/vmc")
}

/// The output format: `--json` or `VMC_OUTPUT=json`.
pub fn format(global: &GlobalArgs) -> Format {
    if global.json || env::first(&[env::VMC_OUTPUT]).is_some_and(|v| v.eq_ignore_ascii_case("json"))
    {
        Format::Json
    } else {
        Format::Text
    }
}

/// The database URL with any password replaced, for handlers and messages.
pub fn redact_database_url(url: &str) -> String {
    vmc_cache::fetch::redact_url(url)
}

/// A database URL as SQLAlchemy (and so vmcatcher, whose `VMCATCHER_RDBMS` it is) reads it:
/// `sqlite:////abs/path` is absolute, `sqlite:///rel/path` relative to the working directory,
/// and a value without `://` is a plain path. `Ok(None)` for a URL of another database.
pub fn sqlalchemy_sqlite_path(text: &str) -> Result<Option<PathBuf>, String> {
    let lower = text.get(..10).unwrap_or(text).to_ascii_lowercase();
    let path = if lower.starts_with("sqlite:///") {
        &text["sqlite:///".len()..]
    } else if lower.starts_with("sqlite://") {
        ""
    } else if text.contains("://") {
        return Ok(None);
    } else {
        text
    };
    if path.is_empty() || path == ":memory:" {
        return Err(format!(
            "{:?} names no database file (vmcatcher's form is sqlite:////abs/path or sqlite:///rel/path)",
            redact_database_url(text)
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

/// vmc's database URL for a `VMCATCHER_RDBMS` value: its SQLite file as vmcatcher reads it
/// ([`sqlalchemy_sqlite_path`]), so that vmc and `vmc import-vmcatcher` name the same file;
/// another database's URL as it is.
fn database_from_vmcatcher(text: &str) -> anyhow::Result<String> {
    match sqlalchemy_sqlite_path(text) {
        Ok(Some(path)) => {
            let Some(path) = path.to_str() else {
                bail!("VMCATCHER_RDBMS: the path is not UTF-8");
            };
            Ok(format!("sqlite://{path}"))
        }
        Ok(None) => Ok(text.to_owned()),
        Err(e) => bail!("VMCATCHER_RDBMS {e}"),
    }
}

/// Builds the library configuration.
pub fn config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let home = home(global);
    let mut config = Config::with_home(&home);
    // Handlers get VMCATCHER_RDBMS in the form they were given it (vmcatcher's, for
    // SQLAlchemy), vmc's own URL otherwise.
    let mut rdbms_for_handlers = None;
    if let Some(db) = global.database.clone() {
        config.database_url = db;
    } else if let Some(old) = env::first(&[env::VMCATCHER_RDBMS]) {
        config.database_url = database_from_vmcatcher(&old)?;
        rdbms_for_handlers = Some(old);
    }
    let dir = |flag: &Option<PathBuf>, fallback: &str, default: PathBuf| -> PathBuf {
        flag.clone()
            .or_else(|| env::first(&[fallback]).map(PathBuf::from))
            .unwrap_or(default)
    };
    config.ca_dir = dir(
        &global.ca_dir,
        env::VMCATCHER_DIR_CERT,
        config.ca_dir.clone(),
    );
    config.cache_dir = dir(
        &global.cache_dir,
        env::VMCATCHER_CACHE_DIR_CACHE,
        config.cache_dir.clone(),
    );
    config.partial_dir = dir(
        &global.partial_dir,
        env::VMCATCHER_CACHE_DIR_DOWNLOAD,
        config.partial_dir.clone(),
    );
    config.expired_dir = dir(
        &global.expired_dir,
        env::VMCATCHER_CACHE_DIR_EXPIRE,
        config.expired_dir.clone(),
    );
    config.event_handler = global
        .event_handler
        .clone()
        .or_else(|| env::first(&[env::VMCATCHER_CACHE_EVENT]));
    config.event_timeout = Duration::from_secs(global.event_timeout);
    config.crl = match global.crl {
        Some(CrlArg::Require) | None => CrlMode::Require,
        Some(CrlArg::IfPresent) => CrlMode::IfPresent,
        Some(CrlArg::Off) => CrlMode::Off,
    };
    config.rdbms_for_handlers = Some(redact_database_url(
        rdbms_for_handlers
            .as_deref()
            .unwrap_or(&config.database_url),
    ));
    config.http = ClientConfig::default().with_proxy_from_env_vars(|name| std::env::var(name).ok());
    if let Some(seconds) = global.timeout {
        if seconds == 0 {
            bail!("--timeout 0: give the seconds a stalled connection may wait, e.g. 60");
        }
        config.http.connect_timeout = Duration::from_secs(seconds);
        config.http.read_timeout = Duration::from_secs(seconds);
    }
    for m in &global.mirrors {
        let Some((from, to)) = m.split_once('=') else {
            bail!(
                "--mirror {m:?}: expected FROM=TO, e.g. https://appliances.example.org/=http://mirror.site/"
            );
        };
        config.mirrors.push(Mirror {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    if let Some(node) = &global.node {
        config.node = node.clone();
    }
    config.cache_mode = match global.cache_mode {
        CacheModeArg::Shared => CacheMode::Shared,
        CacheModeArg::PerNode => CacheMode::PerNode,
    };
    config.event_scope = match global.events {
        EventsArg::Site => EventScope::Site,
        EventsArg::Node => EventScope::Node,
    };
    if let Some(url) = &global.node_url {
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or_default();
        if host.is_empty() || host.starts_with('/') {
            bail!("--node-url {url:?}: expected an http:// or https:// URL with a host");
        }
        config.node_url = Some(url.clone());
    }
    if config.cache_mode == CacheMode::Shared && config.event_scope == EventScope::Node {
        bail!(
            "--events node needs --cache-mode per-node: with one cache directory for the site, \
             each change happens once and is announced once"
        );
    }
    config.lease_time = Duration::from_secs(global.lease_time);
    config.refresh_interval = Duration::from_secs(global.refresh_interval);
    config.oci_plain_http = env::first(&[env::VMC_OCI_PLAIN_HTTP])
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    config.oci_ca_file = env::first(&[env::VMC_OCI_CA_FILE]).map(PathBuf::from);
    if let Some(now) = env::first(&[env::VMC_NOW]) {
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&now)
            .with_context(|| format!("{}={now:?} is not an RFC 3339 time", env::VMC_NOW))?
            .with_timezone(&Utc);
        config.clock = Clock::fixed(at);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmcatcher_rdbms_is_read_as_sqlalchemy_reads_it() {
        // sqlite:///rel is relative, sqlite:////abs absolute: vmc's URL names the same file.
        assert_eq!(
            database_from_vmcatcher("sqlite:///rel/x.db").unwrap(),
            "sqlite://rel/x.db"
        );
        assert_eq!(
            database_from_vmcatcher("sqlite:////var/lib/vmcatcher/vmcatcher.db").unwrap(),
            "sqlite:///var/lib/vmcatcher/vmcatcher.db"
        );
        assert_eq!(
            database_from_vmcatcher("/srv/vmcatcher.db").unwrap(),
            "sqlite:///srv/vmcatcher.db"
        );
        assert_eq!(
            database_from_vmcatcher("postgresql://vmc@db/vmcatcher").unwrap(),
            "postgresql://vmc@db/vmcatcher"
        );
        let err = database_from_vmcatcher("sqlite://").unwrap_err();
        assert!(format!("{err}").contains("names no database file"), "{err}");
        assert!(database_from_vmcatcher("sqlite:///:memory:").is_err());
        assert_eq!(
            sqlalchemy_sqlite_path("SQLITE:///vmcatcher.db").unwrap(),
            Some(PathBuf::from("vmcatcher.db"))
        );
    }
}
