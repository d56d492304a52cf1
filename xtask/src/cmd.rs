//! Helpers shared by subcommands: the workspace root and running commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of the `xtask` package directory).
pub fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo binary that runs us (`$CARGO`), falling back to `cargo` on `PATH`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// A `cargo` command with the given arguments, run from the workspace root.
pub fn cargo_command(args: &[&str]) -> Command {
    let mut command = Command::new(cargo());
    command.args(args).current_dir(project_root());
    command
}

/// Renders a command line for display, e.g. `cargo test --workspace`.
pub fn display(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or(command.get_program())
        .to_string_lossy()
        .into_owned();
    let mut parts = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    parts.push(program);
    parts.extend(command.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Quotes one word for display if it contains spaces.
fn quote(word: &str) -> String {
    if word.contains(char::is_whitespace) || word.is_empty() {
        format!("'{word}'")
    } else {
        word.to_owned()
    }
}

/// Runs a command with inherited stdio and fails unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = display(command);
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    succeeded(&shown, status)
}

/// Fails unless `status`, of the command shown as `shown`, is a success.
pub fn succeeded(shown: &str, status: std::process::ExitStatus) -> Result<()> {
    if !status.success() {
        match status.code() {
            Some(code) => bail!("`{shown}` exited with status {code}"),
            None => bail!("`{shown}` was terminated by a signal"),
        }
    }
    Ok(())
}
