//! Just enough URL handling for fetching: the scheme, the userinfo (credentials that must never
//! be logged) and `file://` paths. Everything else is left to the HTTP library.

use std::path::PathBuf;

use crate::error::FetchError;

/// A URL split for fetching.
#[derive(Clone)]
pub(crate) enum Target {
    /// An `http` or `https` URL.
    Http {
        /// The URL without userinfo, as sent.
        url: String,
        /// Credentials taken from the URL's userinfo (`user:password@`), percent-decoded.
        userinfo: Option<(String, String)>,
    },
    /// A `file://` URL.
    File {
        /// The URL as given (redacted).
        url: String,
        /// The local path.
        path: PathBuf,
    },
}

impl Target {
    /// Parses `url`, refusing schemes other than `http`, `https` and `file`.
    pub(crate) fn parse(url: &str) -> Result<Target, FetchError> {
        let redacted = redact_url(url);
        let invalid = |reason| FetchError::InvalidUrl {
            url: redacted.clone(),
            reason,
        };
        if url.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(invalid("it contains spaces or control characters"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid("it has no scheme"));
        };
        let scheme_lower = scheme.to_ascii_lowercase();
        match scheme_lower.as_str() {
            "http" | "https" => {
                let (authority, tail) = split_authority(rest);
                let (userinfo, host) = match authority.rsplit_once('@') {
                    Some((info, host)) => (Some(info), host),
                    None => (None, authority),
                };
                if host.is_empty() {
                    return Err(invalid("it has no host"));
                }
                let userinfo = match userinfo {
                    None => None,
                    Some(info) => {
                        let (user, password) = info.split_once(':').unwrap_or((info, ""));
                        let user = percent_decode(user).ok_or_else(|| {
                            invalid("its user name is not valid percent-encoded UTF-8")
                        })?;
                        let password = percent_decode(password).ok_or_else(|| {
                            invalid("its password is not valid percent-encoded UTF-8")
                        })?;
                        Some((user, password))
                    }
                };
                let tail = if tail.is_empty() { "/" } else { tail };
                Ok(Target::Http {
                    url: format!("{scheme_lower}://{host}{tail}"),
                    userinfo,
                })
            }
            "file" => {
                let (authority, tail) = split_authority(rest);
                if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                    return Err(invalid("a file url must name no host other than localhost"));
                }
                let path = tail.split(['?', '#']).next().unwrap_or_default();
                if !path.starts_with('/') {
                    return Err(invalid("a file url needs an absolute path"));
                }
                let path = percent_decode(path)
                    .ok_or_else(|| invalid("its path is not valid percent-encoded UTF-8"))?;
                Ok(Target::File {
                    url: redacted,
                    path: PathBuf::from(path),
                })
            }
            _ => Err(FetchError::UnsupportedScheme {
                url: redacted,
                scheme: scheme.to_owned(),
            }),
        }
    }
}

/// Splits `rest` (after `scheme://`) into the authority and what follows it.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// Strips the userinfo (`user:password@`) from a URL, for logs and error messages.
///
/// Anything that does not look like `scheme://authority…` is returned unchanged, except that an
/// `@` in the part before the first `/` is treated as the end of a userinfo.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (authority, tail) = split_authority(rest);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{prefix}{host}{tail}"),
        None => url.to_owned(),
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_strips_userinfo_only() {
        assert_eq!(
            redact_url("https://TOKEN:x-oauth-basic@appdb.example/list?x=1"),
            "https://appdb.example/list?x=1"
        );
        assert_eq!(redact_url("http://u@h:8080"), "http://h:8080");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("http://h/"), "http://h/");
        assert_eq!(redact_url("file:///tmp/x"), "file:///tmp/x");
        assert_eq!(redact_url("u:p@h/x"), "h/x");
    }

    #[test]
    fn userinfo_is_split_and_decoded() {
        let t = Target::parse("https://us%40er:p%3Ass@host:443/p?q=1").unwrap();
        match t {
            Target::Http { url, userinfo } => {
                assert_eq!(url, "https://host:443/p?q=1");
                assert_eq!(userinfo, Some(("us@er".into(), "p:ss".into())));
            }
            Target::File { .. } => panic!("not http"),
        }
        match Target::parse("HTTP://host").unwrap() {
            Target::Http { url, userinfo } => {
                assert_eq!(url, "http://host/");
                assert!(userinfo.is_none());
            }
            Target::File { .. } => panic!("not http"),
        }
    }

    #[test]
    fn file_urls_give_paths() {
        match Target::parse("file:///tmp/a%20b").unwrap() {
            Target::File { path, .. } => assert_eq!(path, PathBuf::from("/tmp/a b")),
            Target::Http { .. } => panic!("not file"),
        }
        match Target::parse("file://localhost/x").unwrap() {
            Target::File { path, .. } => assert_eq!(path, PathBuf::from("/x")),
            Target::Http { .. } => panic!("not file"),
        }
        assert!(matches!(
            Target::parse("file://other/x"),
            Err(FetchError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn bad_urls_are_refused_without_leaking_secrets() {
        let err = Target::parse("ftp://u:secret@h/x").err().unwrap();
        assert!(matches!(err, FetchError::UnsupportedScheme { .. }));
        assert!(!err.to_string().contains("secret"));
        assert!(matches!(
            Target::parse("no scheme"),
            Err(FetchError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Target::parse("http:///x"),
            Err(FetchError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Target::parse("http://u:%zz@h/"),
            Err(FetchError::InvalidUrl { .. })
        ));
    }
}
