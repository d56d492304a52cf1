//! `hv:version` values and their numeric-aware order.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A list or image version (`hv:version`), ordered chunk by chunk, numbers numerically.
///
/// The rule (written down because the spec leaves `1.0-rc1` vs `1.0` open):
/// 1. The string is split into tokens: maximal runs of ASCII digits (numbers) and maximal runs
///    of other alphanumeric characters (words); every other character only separates.
/// 2. Tokens are compared pairwise from the left. Numbers compare by value (any length, leading
///    zeros ignored); words compare byte-wise; a word is lower than a number.
/// 3. A missing token counts as the number 0. So `1` = `1.0` in rank, `1.0-rc1` < `1.0`
///    (a trailing word marks a pre-release), and `1.0.1` > `1.0`.
/// 4. Versions of equal rank are ordered by their raw text, so the order is total and agrees
///    with equality of the strings.
///
/// ```
/// use vmc_model::Version;
/// let v = |s: &str| Version::new(s);
/// assert!(v("1.10") > v("1.9"));
/// assert!(v("2") > v("1.9.9"));
/// assert!(v("1.0-rc1") < v("1.0"));
/// assert!(v("1.0") < v("1.0.1"));
/// assert!(!v("1.0").is_newer_than(&v("1")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Number(&'a str),
}

const ZERO: Token<'static> = Token::Number("");

impl Version {
    /// Wraps a version string (any string is a version).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` ranks strictly above `other`, ignoring differences of spelling only
    /// (`1.0` is not newer than `1`).
    pub fn is_newer_than(&self, other: &Version) -> bool {
        self.rank_cmp(other) == Ordering::Greater
    }

    /// Whether `self` ranks strictly below `other` (a rollback when `other` is the stored one).
    pub fn is_older_than(&self, other: &Version) -> bool {
        self.rank_cmp(other) == Ordering::Less
    }

    /// Compares by rank only (rules 1–3), without the raw-text tie break.
    pub fn rank_cmp(&self, other: &Version) -> Ordering {
        let mut a = tokens(&self.0);
        let mut b = tokens(&other.0);
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (x, y) => {
                    let ord = cmp_token(x.unwrap_or(ZERO), y.unwrap_or(ZERO));
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
            }
        }
    }
}

fn tokens(s: &str) -> impl Iterator<Item = Token<'_>> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| !c.is_alphanumeric());
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| !c.is_alphanumeric() || c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        rest = tail;
        Some(if digit {
            Token::Number(token.trim_start_matches('0'))
        } else {
            Token::Word(token)
        })
    })
}

fn cmp_token(a: Token<'_>, b: Token<'_>) -> Ordering {
    match (a, b) {
        (Token::Number(x), Token::Number(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        (Token::Word(x), Token::Word(y)) => x.cmp(y),
        (Token::Word(_), Token::Number(_)) => Ordering::Less,
        (Token::Number(_), Token::Word(_)) => Ordering::Greater,
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank_cmp(other).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Version {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::new(s)
    }

    #[test]
    fn numeric_chunks_compare_by_value() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.9.9"));
        assert!(v("1.0.10") > v("1.0.9"));
        assert!(v("10") > v("9"));
        assert!(v("007") > v("6"));
        assert!(v("20231201") > v("20231130"));
        assert!(v("123456789012345678901234567890") > v("123456789012345678901234567889"));
    }

    #[test]
    fn pre_release_words_rank_below_the_release() {
        assert!(v("1.0-rc1") < v("1.0"));
        assert!(v("1.0-rc1") < v("1.0-rc2"));
        assert!(v("1.0-beta") < v("1.0-rc1"));
        assert!(v("1.0") < v("1.0.1"));
        assert!(v("1.0.a") < v("1.0.0"));
    }

    #[test]
    fn spelling_differences_are_equal_in_rank_but_ordered_totally() {
        assert_eq!(v("1").rank_cmp(&v("1.0")), Ordering::Equal);
        assert_eq!(v("1.0").rank_cmp(&v("01-0")), Ordering::Equal);
        assert!(!v("1.0").is_newer_than(&v("1")));
        assert!(!v("1.0").is_older_than(&v("1")));
        assert_ne!(v("1").cmp(&v("1.0")), Ordering::Equal);
        assert_eq!(v("").rank_cmp(&v("0")), Ordering::Equal);
    }

    fn version_strategy() -> impl Strategy<Value = String> {
        "[0-9a-c.\\-]{0,8}"
    }

    proptest! {
        #[test]
        fn order_is_antisymmetric(a in version_strategy(), b in version_strategy()) {
            let (a, b) = (v(&a), v(&b));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
        }

        #[test]
        fn order_is_transitive(a in version_strategy(), b in version_strategy(), c in version_strategy()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
            if a.rank_cmp(&b) != Ordering::Greater && b.rank_cmp(&c) != Ordering::Greater {
                prop_assert!(a.rank_cmp(&c) != Ordering::Greater);
            }
        }

        #[test]
        fn order_is_total_and_reflexive(a in version_strategy()) {
            prop_assert_eq!(v(&a).cmp(&v(&a)), Ordering::Equal);
        }
    }
}
