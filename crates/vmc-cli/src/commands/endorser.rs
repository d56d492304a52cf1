//! `vmc endorser …`

use vmc_cache::CacheError;
use vmc_model::{CertIdentity, Endorser};

use super::Ctx;
use crate::args::EndorserCmd;
use crate::output::{self, Format};
use crate::{Outcome, UsageError, report};

fn find(ctx: &Ctx, key: &str) -> anyhow::Result<Endorser> {
    Ok(ctx
        .vmc
        .store()
        .find_endorser(key)?
        .ok_or_else(|| CacheError::NoSuchEndorser {
            key: key.to_owned(),
        })?)
}

fn show(ctx: &Ctx, e: &Endorser) -> anyhow::Result<()> {
    let subs = ctx.vmc.store().subscriptions()?;
    let json = report::endorser(e, &subs);
    match ctx.format {
        Format::Json => output::json(&json),
        Format::Text => {
            output::line(format!("endorser {}", json.id));
            for i in &json.identities {
                output::line(format!("  subject {}\n  issuer  {}", i.subject, i.issuer));
            }
            for s in &json.subscriptions {
                output::line(format!("  endorses {s}"));
            }
        }
    }
    Ok(())
}

/// Runs an endorser command.
pub fn run(ctx: &Ctx, cmd: EndorserCmd) -> anyhow::Result<Outcome> {
    let store = ctx.vmc.store();
    match cmd {
        EndorserCmd::Add {
            id,
            subjects,
            issuers,
            subscriptions,
        } => {
            if subjects.len() != issuers.len() {
                return Err(UsageError(format!(
                    "give one --issuer for every --subject ({} subjects, {} issuers)",
                    subjects.len(),
                    issuers.len()
                ))
                .into());
            }
            for dn in subjects.iter().chain(&issuers) {
                if !dn.starts_with('/') || !dn.contains('=') {
                    return Err(UsageError(format!(
                        "{dn:?} is not a DN in OpenSSL one-line form, e.g. /C=XX/O=Grid/CN=Jane Doe"
                    ))
                    .into());
                }
            }
            let subs = subscriptions
                .iter()
                .map(|s| ctx.subscription(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let identities: Vec<CertIdentity> = subjects
                .into_iter()
                .zip(issuers)
                .map(|(subject, issuer)| CertIdentity { subject, issuer })
                .collect();
            let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            store.add_endorser(&id, &identities)?;
            for s in &subs {
                store.link(&id, s.id)?;
            }
            show(ctx, &find(ctx, &id)?)?;
        }
        EndorserCmd::List => {
            let subs = store.subscriptions()?;
            let all: Vec<_> = store
                .endorsers()?
                .iter()
                .map(|e| report::endorser(e, &subs))
                .collect();
            match ctx.format {
                Format::Json => output::json(&all),
                Format::Text => {
                    for e in &all {
                        let first = e.identities.first();
                        output::line(format!(
                            "{}\t{}\t{}",
                            e.id,
                            first.map(|i| i.subject.as_str()).unwrap_or(""),
                            e.subscriptions.join(",")
                        ));
                    }
                }
            }
        }
        EndorserCmd::Show { endorser } => show(ctx, &find(ctx, &endorser)?)?,
        EndorserCmd::Remove { endorser } => {
            let e = find(ctx, &endorser)?;
            store.remove_endorser(&e.id)?;
            if ctx.format == Format::Json {
                output::json(&serde_json::json!({"removed": e.id}));
            } else {
                output::line(format!("removed endorser {}", e.id));
            }
        }
        EndorserCmd::Link {
            endorser,
            subscription,
        } => {
            let e = find(ctx, &endorser)?;
            let s = ctx.subscription(&subscription)?;
            store.link(&e.id, s.id)?;
            show(ctx, &find(ctx, &e.id)?)?;
        }
        EndorserCmd::Unlink {
            endorser,
            subscription,
        } => {
            let e = find(ctx, &endorser)?;
            let s = ctx.subscription(&subscription)?;
            store.unlink(&e.id, s.id)?;
            show(ctx, &find(ctx, &e.id)?)?;
        }
    }
    Ok(Outcome::Success)
}
