//! IGTF namespace policies: `*.namespaces` (EUGridPMA namespaces format) and `*.signing_policy`
//! (Globus EACL) files of a CA directory, parsed and enforced.
//!
//! - `TO Issuer "<DN>" PERMIT Subject "<regex>"` (also `DENY`, and `SELF` for the CA the file is
//!   named after). The regular expression must match the whole subject (it is anchored).
//! - `access_id_CA X509 '<DN>'` followed by `cond_subjects globus '"<glob>" "<glob>"'`, where
//!   `*` matches any run of characters and `?` one character.
//!
//! DNs and subjects are compared in OpenSSL one-line form, case-insensitively (distinguished
//! name matching in X.500 ignores case for the attribute values the IGTF uses).
//! Evaluation for a certificate issued by CA `X`: if any `.namespaces` rule names `X`, a
//! matching `DENY` refuses, else a matching `PERMIT` allows, else the subject is refused. Only
//! when no namespaces rule names `X` are `.signing_policy` globs for `X` used (any match
//! allows, none refuses). A CA that no policy names is not constrained.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder};

/// Which file format a rule came from (namespaces take precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyKind {
    /// `*.namespaces`.
    Namespaces,
    /// `*.signing_policy`.
    SigningPolicy,
}

/// The issuer a parsed statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IssuerRef {
    /// The CA whose hash or alias names the file.
    SelfCa,
    /// An explicit one-line DN.
    Dn(String),
}

/// One parsed rule, before the issuer is resolved.
#[derive(Debug, Clone)]
pub(crate) struct ParsedRule {
    /// The CA the rule constrains.
    pub issuer: IssuerRef,
    /// `PERMIT` (true) or `DENY` (false).
    pub permit: bool,
    /// The compiled, anchored, case-insensitive pattern.
    pub pattern: Regex,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: PolicyKind,
    permit: bool,
    pattern: Regex,
    path: PathBuf,
}

/// The outcome of a namespace check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No policy names the issuer.
    Unconstrained,
    /// A policy allows the subject.
    Permit,
    /// A policy refuses the subject (the file that did).
    Deny(PathBuf),
}

/// All rules of a CA directory, by issuer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies {
    by_issuer: HashMap<String, Vec<Rule>>,
}

impl Policies {
    /// Adds the rules of one file, `SELF` already resolved to `issuer_of_self`.
    pub(crate) fn add(
        &mut self,
        kind: PolicyKind,
        path: &Path,
        rules: Vec<ParsedRule>,
        issuer_of_self: Option<&str>,
    ) -> Result<(), String> {
        let mut resolved = Vec::with_capacity(rules.len());
        for rule in rules {
            let issuer = match rule.issuer {
                IssuerRef::Dn(dn) => dn,
                IssuerRef::SelfCa => issuer_of_self
                    .ok_or("SELF names no CA certificate of the directory")?
                    .to_owned(),
            };
            resolved.push((issuer, rule.permit, rule.pattern));
        }
        for (issuer, permit, pattern) in resolved {
            self.by_issuer
                .entry(issuer.to_lowercase())
                .or_default()
                .push(Rule {
                    kind,
                    permit,
                    pattern,
                    path: path.to_path_buf(),
                });
        }
        Ok(())
    }

    /// How many issuers are constrained.
    pub(crate) fn issuer_count(&self) -> usize {
        self.by_issuer.len()
    }

    /// Checks `subject` (one-line) against the rules for `issuer` (one-line).
    pub(crate) fn check(&self, issuer: &str, subject: &str) -> Decision {
        let Some(rules) = self.by_issuer.get(&issuer.to_lowercase()) else {
            return Decision::Unconstrained;
        };
        let namespaces: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.kind == PolicyKind::Namespaces)
            .collect();
        if let Some(first) = namespaces.first() {
            if let Some(deny) = namespaces
                .iter()
                .find(|r| !r.permit && r.pattern.is_match(subject))
            {
                return Decision::Deny(deny.path.clone());
            }
            if namespaces
                .iter()
                .any(|r| r.permit && r.pattern.is_match(subject))
            {
                return Decision::Permit;
            }
            return Decision::Deny(first.path.clone());
        }
        if rules
            .iter()
            .any(|r| r.permit && r.pattern.is_match(subject))
        {
            return Decision::Permit;
        }
        match rules.first() {
            Some(r) => Decision::Deny(r.path.clone()),
            None => Decision::Unconstrained,
        }
    }
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(true)
        .build()
        .map_err(|e| format!("bad pattern {pattern:?}: {e}"))
}

/// Turns a signing_policy glob into an anchored regex (`*` any run, `?` one character).
fn glob(pattern: &str) -> Result<Regex, String> {
    let mut re = String::new();
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0u8; 4]))),
        }
    }
    anchored(&re)
}

/// A token of a namespaces file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
}

fn tokenize(text: &str, quote: char) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            // comment to the end of the line
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if c == quote {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some(c) if c == quote => break,
                    Some(c) => s.push(c),
                    None => return Err(format!("unterminated {quote}-quoted string")),
                }
            }
            tokens.push(Token::Quoted(s));
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == quote {
                    break;
                }
                s.push(c);
                chars.next();
            }
            // a lone backslash is a line continuation
            if s != "\\" {
                tokens.push(Token::Word(s));
            }
        }
    }
    Ok(tokens)
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// Parses a `.namespaces` file.
pub(crate) fn parse_namespaces(text: &str) -> Result<Vec<ParsedRule>, String> {
    let tokens = tokenize(text, '"')?;
    let mut rules = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !keyword(tokens.get(i), "TO") || !keyword(tokens.get(i + 1), "Issuer") {
            return Err(format!("expected `TO Issuer` at token {}", i + 1));
        }
        let issuer = match tokens.get(i + 2) {
            Some(Token::Quoted(dn)) => IssuerRef::Dn(dn.clone()),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("SELF") => IssuerRef::SelfCa,
            _ => return Err(format!("expected an issuer DN or SELF at token {}", i + 3)),
        };
        i += 3;
        let mut clauses = 0;
        while i < tokens.len() && !keyword(tokens.get(i), "TO") {
            let permit = if keyword(tokens.get(i), "PERMIT") {
                true
            } else if keyword(tokens.get(i), "DENY") {
                false
            } else {
                return Err(format!("expected PERMIT or DENY at token {}", i + 1));
            };
            if !keyword(tokens.get(i + 1), "Subject") {
                return Err(format!("expected `Subject` at token {}", i + 2));
            }
            let Some(Token::Quoted(pattern)) = tokens.get(i + 2) else {
                return Err(format!(
                    "expected a quoted subject pattern at token {}",
                    i + 3
                ));
            };
            rules.push(ParsedRule {
                issuer: issuer.clone(),
                permit,
                pattern: anchored(pattern)?,
            });
            clauses += 1;
            i += 3;
        }
        if clauses == 0 {
            return Err("a TO Issuer statement without PERMIT or DENY".to_owned());
        }
    }
    Ok(rules)
}

/// Parses a Globus `.signing_policy` file.
pub(crate) fn parse_signing_policy(text: &str) -> Result<Vec<ParsedRule>, String> {
    let mut rules = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let tokens = tokenize(line, '\'').map_err(|e| format!("line {}: {e}", n + 1))?;
        let Some(Token::Word(head)) = tokens.first() else {
            if tokens.is_empty() {
                continue;
            }
            return Err(format!("line {}: unexpected quoted string", n + 1));
        };
        match head.to_ascii_lowercase().as_str() {
            "access_id_ca" => match tokens.get(2) {
                Some(Token::Quoted(dn)) => current = Some(dn.clone()),
                _ => return Err(format!("line {}: access_id_CA without a DN", n + 1)),
            },
            "cond_subjects" => {
                let Some(issuer) = current.clone() else {
                    return Err(format!("line {}: cond_subjects before access_id_CA", n + 1));
                };
                let Some(Token::Quoted(list)) = tokens.get(2) else {
                    return Err(format!("line {}: cond_subjects without patterns", n + 1));
                };
                let patterns: Vec<String> = if list.contains('"') {
                    tokenize(list, '"')
                        .map_err(|e| format!("line {}: {e}", n + 1))?
                        .into_iter()
                        .map(|t| match t {
                            Token::Quoted(s) | Token::Word(s) => s,
                        })
                        .collect()
                } else {
                    list.split_whitespace().map(str::to_owned).collect()
                };
                for pattern in patterns {
                    rules.push(ParsedRule {
                        issuer: IssuerRef::Dn(issuer.clone()),
                        permit: true,
                        pattern: glob(&pattern)?,
                    });
                }
            }
            _ => {} // pos_rights, access_id_ANYBODY, …: no bearing on namespaces
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r#"##############################################################################
#NAMESPACES-VERSION: 1.0
#
TO Issuer "/C=XX/O=Grid/CN=Grid CA" \
  PERMIT Subject "/C=XX/O=Grid/.*"
TO Issuer "/C=XX/O=Grid/CN=Grid CA" \
  DENY Subject "/C=XX/O=Grid/OU=Banned/.*"
TO Issuer SELF PERMIT Subject "/C=XX/O=Other/CN=[^/]*\.example"
"#;

    const SP: &str = r#"# EACL for a CA
 access_id_CA      X509         '/C=XX/O=Grid/CN=Grid CA'
 pos_rights        globus        CA:sign
 cond_subjects     globus       '"/C=XX/O=Grid/*" "/C=XX/O=Grid2/CN=?ne"'
"#;

    fn policies(kind: PolicyKind, rules: Vec<ParsedRule>) -> Policies {
        let mut p = Policies::default();
        p.add(kind, Path::new("x"), rules, Some("/C=XX/O=Self/CN=Self CA"))
            .unwrap();
        p
    }

    #[test]
    fn namespaces_permit_deny_and_self() {
        let rules = parse_namespaces(NS).unwrap();
        assert_eq!(rules.len(), 3);
        let p = policies(PolicyKind::Namespaces, rules);
        let ca = "/C=XX/O=Grid/CN=Grid CA";
        assert_eq!(p.check(ca, "/C=XX/O=Grid/CN=Alice"), Decision::Permit);
        assert_eq!(
            p.check(&ca.to_uppercase(), "/c=xx/o=grid/cn=alice"),
            Decision::Permit
        );
        assert!(matches!(
            p.check(ca, "/C=XX/O=Grid/OU=Banned/CN=Eve"),
            Decision::Deny(_)
        ));
        assert!(matches!(
            p.check(ca, "/C=YY/O=Grid/CN=Mallory"),
            Decision::Deny(_)
        ));
        // anchored: a prefix elsewhere does not match
        assert!(matches!(
            p.check(ca, "/C=ZZ/C=XX/O=Grid/CN=x"),
            Decision::Deny(_)
        ));
        let me = "/C=XX/O=Self/CN=Self CA";
        assert_eq!(
            p.check(me, "/C=XX/O=Other/CN=host.example"),
            Decision::Permit
        );
        assert!(matches!(
            p.check(me, "/C=XX/O=Other/CN=a/CN=host.example"),
            Decision::Deny(_)
        ));
        assert_eq!(
            p.check("/C=XX/O=Unrelated CA", "/CN=anything"),
            Decision::Unconstrained
        );
    }

    #[test]
    fn signing_policy_globs() {
        let rules = parse_signing_policy(SP).unwrap();
        assert_eq!(rules.len(), 2);
        let p = policies(PolicyKind::SigningPolicy, rules);
        let ca = "/C=XX/O=Grid/CN=Grid CA";
        assert_eq!(p.check(ca, "/C=XX/O=Grid/OU=x/CN=Bob"), Decision::Permit);
        assert_eq!(p.check(ca, "/C=XX/O=Grid2/CN=One"), Decision::Permit);
        assert!(matches!(
            p.check(ca, "/C=XX/O=Grid2/CN=Once"),
            Decision::Deny(_)
        ));
        assert!(matches!(
            p.check(ca, "/C=XX/O=Evil/CN=Bob"),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn namespaces_take_precedence_over_signing_policy() {
        let mut p = Policies::default();
        p.add(
            PolicyKind::SigningPolicy,
            Path::new("sp"),
            parse_signing_policy(SP).unwrap(),
            None,
        )
        .unwrap();
        let ns = r#"TO Issuer "/C=XX/O=Grid/CN=Grid CA" PERMIT Subject "/C=XX/O=Grid/OU=Only/.*""#;
        p.add(
            PolicyKind::Namespaces,
            Path::new("ns"),
            parse_namespaces(ns).unwrap(),
            None,
        )
        .unwrap();
        let ca = "/C=XX/O=Grid/CN=Grid CA";
        assert_eq!(p.check(ca, "/C=XX/O=Grid/OU=Only/CN=a"), Decision::Permit);
        assert_eq!(
            p.check(ca, "/C=XX/O=Grid/OU=Other/CN=a"),
            Decision::Deny(PathBuf::from("ns"))
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(parse_namespaces("TO Issuer \"/C=XX\" ALLOW Subject \"x\"").is_err());
        assert!(parse_namespaces("TO Issuer \"/C=XX\" PERMIT Subject \"(unclosed\"").is_err());
        assert!(parse_namespaces("TO Issuer \"/C=XX").is_err());
        assert!(parse_namespaces("PERMIT Subject \"x\"").is_err());
        assert!(parse_signing_policy("cond_subjects globus '\"/C=XX/*\"'").is_err());
        let mut p = Policies::default();
        let self_rule = parse_namespaces("TO Issuer SELF PERMIT Subject \".*\"").unwrap();
        assert!(
            p.add(PolicyKind::Namespaces, Path::new("n"), self_rule, None)
                .is_err()
        );
        assert_eq!(p.issuer_count(), 0);
    }
}
