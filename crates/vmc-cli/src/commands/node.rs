//! `vmc node …`: the nodes of the site (vmc processes sharing this database).

use crate::args::NodeCmd;
use crate::output::{self, Format};
use crate::{Outcome, report};

use super::Ctx;

/// Runs a node command.
pub fn run(ctx: &Ctx, cmd: NodeCmd) -> anyhow::Result<Outcome> {
    match cmd {
        NodeCmd::List => {
            let now = ctx.vmc.config().clock.now();
            let nodes = ctx.vmc.nodes()?;
            match ctx.format {
                Format::Json => output::json(
                    &nodes
                        .iter()
                        .map(|n| report::node(n, now))
                        .collect::<Vec<_>>(),
                ),
                Format::Text => {
                    for n in &nodes {
                        let r = &n.record;
                        let leases: Vec<String> = r
                            .leases
                            .iter()
                            .map(|l| {
                                let lapsed = if l.expires_at <= now { " (lapsed)" } else { "" };
                                format!("{}{lapsed}", l.resource)
                            })
                            .collect();
                        output::line(format!(
                            "{}\t{}\t{}\tpid {}\tvmc {}\tstarted {}\tseen {}\t{}\tleases: {}{}{}",
                            r.info.name,
                            if n.alive { "alive" } else { "silent" },
                            r.info.host,
                            r.info.pid,
                            r.info.version,
                            report::time(r.started_at),
                            report::time(r.last_seen),
                            r.activity,
                            if leases.is_empty() {
                                "-".to_owned()
                            } else {
                                leases.join(", ")
                            },
                            r.info
                                .url
                                .as_deref()
                                .map(|u| format!("\tserves {u}"))
                                .unwrap_or_default(),
                            r.info
                                .cache_mode
                                .as_deref()
                                .map(|m| format!("\tcache {m}"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
            Ok(Outcome::Success)
        }
        NodeCmd::Remove { name } => {
            ctx.vmc.store().remove_node(&name)?;
            match ctx.format {
                Format::Json => output::json(&serde_json::json!({ "removed": name })),
                Format::Text => output::line(format!("removed node {name}")),
            }
            Ok(Outcome::Success)
        }
    }
}
