//! Saying that a test skipped its checks, so that the skip is counted and never taken for a pass.
//!
//! libtest has no run-time skip: a test that cannot run here (no PostgreSQL server, no interop
//! directory, a slow test outside CI) returns early and libtest counts it as passed. Such a test
//! calls [`skipped`], which writes one line, `vmc-test-skipped: <test>: <reason>`, straight to
//! the process's standard error (past libtest's output capture). `cargo xtask ci` collects these
//! lines and reports, at its end, how many tests ran and how many were skipped and why.

use std::io::Write as _;

/// The start of every skip line.
pub const MARKER: &str = "vmc-test-skipped:";

/// Reports that the current test skipped its checks for `reason` (one short sentence that is
/// the same for every test skipped for that reason: the summary groups by it).
pub fn skipped(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    let line = format!("{MARKER} {test}: {reason}\n");
    // Written in one call to the unbuffered, uncaptured stderr handle: lines of tests running
    // on other threads do not interleave with it.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Parses a skip line into (test, reason).
pub fn parse(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_end().strip_prefix(MARKER)?.trim_start();
    // Test names are Rust paths (`a::b::c`): the first ": " ends the name.
    rest.split_once(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_line_parses_back() {
        let line = format!("{MARKER} suite::postgres::open: no server: set X=1\n");
        assert_eq!(
            parse(&line),
            Some(("suite::postgres::open", "no server: set X=1"))
        );
        assert_eq!(parse("test foo ... ok"), None);
    }
}
