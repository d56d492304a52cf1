//! The hidden `vmc generate-man DIR` and `vmc generate-completions SHELL`, for packagers
//! (`cargo xtask dist` runs them): man pages and shell completions made from the clap
//! definitions, so they never drift from `--help`.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::Outcome;
use crate::args::Cli;
use crate::output;

/// Writes `vmc.1` and one page per subcommand (`vmc-cache-sync.1`, …) into `dir`.
pub fn man(dir: &Path) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    Ok(Outcome::Success)
}

/// `full` without its hidden subcommands (clap_complete would offer them).
fn visible(full: &clap::Command) -> clap::Command {
    clap::Command::new("vmc")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommand_required(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<Outcome> {
    let mut cmd = visible(&Cli::command());
    // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vmc", &mut script);
    let text = String::from_utf8_lossy(&script);
    output::line(text.strip_suffix('\n').unwrap_or(&text));
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_offer_every_visible_command_and_no_hidden_one() {
        let cmd = visible(&Cli::command());
        let names: Vec<&str> = cmd.get_subcommands().map(clap::Command::get_name).collect();
        assert_eq!(
            names,
            [
                "endorser",
                "subscribe",
                "image",
                "cache",
                "publish",
                "node",
                "doctor",
                "import-vmcatcher"
            ]
        );
        assert_eq!(
            cmd.get_arguments().count(),
            Cli::command().get_arguments().count()
        );
    }
}
