//! stdout is data only: text or one JSON document. A closed pipe (`vmc … | head`) ends the
//! program quietly with status 0.

use std::io::{self, Write};

use serde::Serialize;

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document (JSON Lines for streams).
    Json,
}

/// Exits quietly when stdout is a closed pipe.
fn handle(result: io::Result<()>) {
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("vmc: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes text lines to stdout.
pub fn line(text: impl std::fmt::Display) {
    let mut out = io::stdout().lock();
    handle(writeln!(out, "{text}"));
}

/// Writes one JSON document to stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    let mut out = io::stdout().lock();
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    handle(writeln!(out, "{text}"));
}

/// Writes one JSON Lines record to stdout.
pub fn json_line<T: Serialize + ?Sized>(value: &T) {
    let mut out = io::stdout().lock();
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    handle(writeln!(out, "{text}"));
}

/// Formats a byte count for people (`1.5 GiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
