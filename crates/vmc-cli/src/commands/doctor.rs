//! `vmc doctor`: prints every check with its fix; exit 1 when any check fails.

use serde::Serialize;
use vmc_cache::Config;
use vmc_cache::doctor::{self, Status};

use crate::Outcome;
use crate::output::{self, Format};

#[derive(Serialize)]
struct CheckJson<'a> {
    name: &'a str,
    status: &'a str,
    message: &'a str,
    fix: Option<&'a str>,
}

#[derive(Serialize)]
struct DoctorJson<'a> {
    ok: bool,
    checks: Vec<CheckJson<'a>>,
}

/// Runs the checks and prints them.
pub fn run(config: &Config, format: Format) -> Outcome {
    let checks = doctor::diagnose(config);
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    match format {
        Format::Json => output::json(&DoctorJson {
            ok,
            checks: checks
                .iter()
                .map(|c| CheckJson {
                    name: c.name,
                    status: c.status.as_str(),
                    message: &c.message,
                    fix: c.fix.as_deref(),
                })
                .collect(),
        }),
        Format::Text => {
            for c in &checks {
                output::line(format!(
                    "{:<4}  {:<13} {}",
                    c.status.as_str(),
                    c.name,
                    c.message
                ));
                if let Some(fix) = &c.fix {
                    output::line(format!("{:<19} fix: {fix}", ""));
                }
            }
        }
    }
    if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    }
}
