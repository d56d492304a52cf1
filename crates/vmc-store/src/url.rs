//! Database URLs: which backend, which file, and their passwords kept out of messages.
//!
//! Accepted forms: `sqlite:///abs/path` (absolute), `sqlite://rel/path` (relative to the
//! working directory), `sqlite:path`, a plain path, `:memory:` / `sqlite::memory:` (a private
//! in-memory database), and `postgres://…` / `postgresql://…` (libpq URIs, cargo feature
//! `postgres`).

use std::path::PathBuf;

use crate::error::StoreError;

/// Where a database lives, as parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite file.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database.
    SqliteMemory,
    /// A PostgreSQL server (the URL as given, for libpq).
    Postgres(String),
}

/// Parses a database URL (see the module doc).
pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return if cfg!(feature = "postgres") {
            Ok(Target::Postgres(url.to_owned()))
        } else {
            Err(StoreError::PostgresNotBuilt {
                url: redact_url(url),
            })
        };
    }
    let path = if let Some(rest) = strip_prefix_ignore_case(url, "sqlite://") {
        rest
    } else if let Some(rest) = strip_prefix_ignore_case(url, "sqlite:") {
        rest
    } else if has_scheme(url) {
        return Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        });
    } else {
        url
    };
    if path.is_empty() {
        return Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        });
    }
    if path == ":memory:" {
        return Ok(Target::SqliteMemory);
    }
    // SQLite reads a name starting with `file:` as a URI; a plain path never means that.
    if path.starts_with("file:") {
        return Ok(Target::SqliteFile(PathBuf::from(format!("./{path}"))));
    }
    Ok(Target::SqliteFile(PathBuf::from(path)))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Whether `url` starts with `scheme://` (RFC 3986 scheme characters).
fn has_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The URL with any password (in the user-info part or as a `password=` parameter) replaced
/// by `***`, for messages and logs.
///
/// ```
/// assert_eq!(
///     vmc_store::redact_url("postgres://vmc:s3cret@db.example.org/vmc?password=x&sslmode=require"),
///     "postgres://vmc:***@db.example.org/vmc?password=***&sslmode=require"
/// );
/// assert_eq!(vmc_store::redact_url("sqlite:///var/lib/vmc/vmc.db"), "sqlite:///var/lib/vmc/vmc.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            tail
        }
        None => url,
    };
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Target {
        Target::SqliteFile(PathBuf::from(path))
    }

    #[test]
    fn sqlite_urls_and_plain_paths() {
        assert_eq!(
            parse("sqlite:///abs/vmc.db").ok(),
            Some(file("/abs/vmc.db"))
        );
        assert_eq!(parse("sqlite://rel/vmc.db").ok(), Some(file("rel/vmc.db")));
        assert_eq!(parse("SQLite://rel/vmc.db").ok(), Some(file("rel/vmc.db")));
        assert_eq!(parse("sqlite:rel.db").ok(), Some(file("rel.db")));
        assert_eq!(
            parse("/var/lib/vmc/vmc.db").ok(),
            Some(file("/var/lib/vmc/vmc.db"))
        );
        assert_eq!(parse("vmc.db").ok(), Some(file("vmc.db")));
        assert_eq!(
            parse("dir with space/x:y.db").ok(),
            Some(file("dir with space/x:y.db"))
        );
        assert_eq!(parse("file:x.db").ok(), Some(file("./file:x.db")));
        assert_eq!(parse(":memory:").ok(), Some(Target::SqliteMemory));
        assert_eq!(parse("sqlite::memory:").ok(), Some(Target::SqliteMemory));
        assert_eq!(parse("sqlite://:memory:").ok(), Some(Target::SqliteMemory));
    }

    #[test]
    fn unknown_schemes_and_empty_paths_are_refused() {
        for bad in ["mysql://u:p@h/db", "http://x/y", "sqlite://", "", "sqlite:"] {
            assert!(
                matches!(parse(bad), Err(StoreError::UnsupportedUrl { .. })),
                "{bad}"
            );
        }
        let Err(err) = parse("mysql://u:pw@h/db") else {
            panic!("mysql accepted");
        };
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn postgres_urls_need_the_feature() {
        for url in [
            "postgres://u:pw@127.0.0.1/db",
            "postgresql://h/db",
            "POSTGRES://h/db",
        ] {
            let parsed = parse(url);
            if cfg!(feature = "postgres") {
                assert_eq!(parsed.ok(), Some(Target::Postgres(url.to_owned())));
            } else {
                let Err(err) = parsed else {
                    panic!("{url} accepted without the feature");
                };
                assert!(matches!(err, StoreError::PostgresNotBuilt { .. }));
                assert!(err.to_string().contains("postgres"), "{err}");
                assert!(!err.to_string().contains("pw"), "{err}");
            }
        }
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&PASSWORD=pw"),
            "postgres://h/db?user=u&PASSWORD=***"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("/plain/path.db"), "/plain/path.db");
    }
}
