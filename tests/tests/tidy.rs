//! Tidy checks over the whole workspace, run with `cargo test -p tests --test tidy`.
//!
//! They enforce the shape described in STYLE.md:
//! - every `.rs` file starts with a `//!` module doc (before any inner attribute);
//! - dependencies between workspace crates point down only (read from `cargo metadata`),
//!   and library crates use neither the test kit nor the CLI-only crates;
//! - no test is skipped or expected to panic (the ignore / should-panic attributes, or
//!   doc-test fences with those flags);
//! - every workspace member inherits the workspace lints and lives in a folder named
//!   exactly as its package.
//!
//! The checks read files only; they never change them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Top-level folders whose `.rs` files are checked.
const SOURCE_ROOTS: &[&str] = &["crates", "xtask", "tests", "fuzz"];

/// Folder names never entered while collecting `.rs` files (build output, fuzz data).
const SKIPPED_DIRS: &[&str] = &["target", "corpus", "artifacts"];

/// Allowed normal (and build) dependency edges between workspace crates under `crates/`.
const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    ("vmc-cli", &["vmc-publish", "vmc-cache", "vmc-model"]),
    ("vmc-publish", &["vmc-cache", "vmc-model"]),
    (
        "vmc-cache",
        &["vmc-store", "vmc-fetch", "vmc-trust", "vmc-model"],
    ),
    ("vmc-store", &["vmc-model"]),
    ("vmc-fetch", &["vmc-model"]),
    ("vmc-trust", &["vmc-model"]),
    ("vmc-model", &[]),
    ("vmc-testkit", &[]),
];

/// The crate under `crates/` that is a binary and may use the CLI-only crates.
const CLI_CRATE: &str = "vmc-cli";

/// External crates only `vmc-cli`, `xtask` and `tests` may depend on.
const CLI_ONLY_DEPS: &[&str] = &[
    "clap",
    "clap_complete",
    "clap_mangen",
    "anyhow",
    "indicatif",
];

/// The test-support crate; libraries may use it as a dev-dependency only.
const TESTKIT: &str = "vmc-testkit";

/// Crates that must never import each other, under any dependency kind.
const SIBLINGS: &[&str] = &["vmc-fetch", "vmc-trust", "vmc-store"];

/// The workspace root, found from this package's manifest directory (`tests/` → `..`).
fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = dir.parent().expect("tests package has a parent directory");
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// `path` relative to the workspace root, with `/` separators, for messages.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// All `.rs` files under [`SOURCE_ROOTS`], sorted, skipping build output and hidden folders.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = SOURCE_ROOTS
        .iter()
        .map(|dir| root.join(dir))
        .filter(|dir| dir.is_dir())
        .collect();
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry
                .file_type()
                .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
            if file_type.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                    pending.push(path);
                }
            } else if file_type.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "tidy found no .rs files under {}; is the workspace root right?",
        root.display()
    );
    files
}

/// Reads a source file as text.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Panics with a report listing `problems`, if there are any.
fn report(title: &str, hint: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let mut message = format!("tidy: {title} ({} found)\n", problems.len());
    for problem in problems {
        let _ = writeln!(message, "  - {problem}");
    }
    let _ = write!(message, "hint: {hint}");
    panic!("{message}");
}

// ---------------------------------------------------------------------------
// Module docs
// ---------------------------------------------------------------------------

/// `None` if `source` starts with a `//!` module doc, else the offending first line.
fn missing_module_doc(source: &str) -> Option<String> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    match source
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty())
    {
        None => Some("file is empty".to_owned()),
        Some((_, line)) if line.trim_start().starts_with("//!") => None,
        Some((index, line)) => Some(format!("line {}: `{}`", index + 1, line.trim())),
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = workspace_root();
    let problems: Vec<String> = rust_files(&root)
        .iter()
        .filter_map(|path| {
            missing_module_doc(&read(path))
                .map(|first| format!("{} starts with {first}", relative(&root, path)))
        })
        .collect();
    report(
        "every .rs file must start with a `//!` module doc",
        "make the first non-empty line a `//!` comment saying what the file is for; \
         inner attributes such as `#![allow(...)]` go after the doc",
        &problems,
    );
}

// ---------------------------------------------------------------------------
// Skipped and panicking tests
// ---------------------------------------------------------------------------

/// Attribute names that skip a test or make a panic pass (split so this file does not match).
const FORBIDDEN_ATTRS: &[&str] = &[concat!("ign", "ore"), concat!("should", "_panic")];

/// The identifiers in `text`, outside string literals.
fn identifiers(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c == '"' {
            in_string = true;
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The text of each outer attribute (`#[...]`) that starts on `line`, up to its closing `]`
/// or the end of the line.
fn attributes(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = line;
    let opener = concat!("#", "[");
    while let Some(start) = rest.find(opener) {
        let body = &rest[start + opener.len()..];
        let mut depth = 1usize;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push(&body[..end]);
        rest = &body[end..];
    }
    found
}

/// The lines of `source` (1-based numbers) that skip a test or expect a panic: an attribute
/// naming one of [`FORBIDDEN_ATTRS`] (also inside `cfg_attr`), or a doc-test fence flagged so.
fn skipped_tests(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        let hit = if let Some(doc) = trimmed
            .strip_prefix("///")
            .or_else(|| trimmed.strip_prefix("//!"))
        {
            // A doc-test fence: ```rust,ignore and the like.
            doc.trim_start().strip_prefix("```").is_some_and(|info| {
                info.split(|c: char| c == ',' || c.is_whitespace())
                    .any(|flag| FORBIDDEN_ATTRS.contains(&flag))
            })
        } else {
            let code = trimmed.split("//").next().unwrap_or("");
            attributes(code).iter().any(|attr| {
                identifiers(attr)
                    .iter()
                    .any(|word| FORBIDDEN_ATTRS.contains(&word.as_str()))
            })
        };
        if hit {
            found.push((index + 1, line.trim().to_owned()));
        }
    }
    found
}

#[test]
fn no_test_is_skipped_or_expected_to_panic() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for path in rust_files(&root) {
        for (line, text) in skipped_tests(&read(&path)) {
            problems.push(format!("{}:{line}: `{text}`", relative(&root, &path)));
        }
    }
    report(
        concat!(
            "tests must not be skipped (#",
            "[ignore]) or expected to panic (#",
            "[should_panic])"
        ),
        "gate slow or server-needing tests on an env var that .ci/run sets and say so when \
         skipped; test an error by matching the returned `Err`",
        &problems,
    );
}

// ---------------------------------------------------------------------------
// Dependency direction
// ---------------------------------------------------------------------------

/// One workspace package as read from `cargo metadata`.
struct Package {
    /// Package name.
    name: String,
    /// Path of its `Cargo.toml`.
    manifest: PathBuf,
    /// Dependencies as `(package name, kind)`, kind being `normal`, `dev` or `build`.
    deps: Vec<(String, String)>,
}

/// The workspace packages, from `cargo metadata --format-version 1 --no-deps`.
fn workspace_packages(root: &Path) -> Vec<Package> {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| OsString::from("cargo"));
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} metadata: {e}", cargo.to_string_lossy()));
    assert!(
        output.status.success(),
        "cargo metadata failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    parse_packages(&metadata)
}

/// Extracts the packages from `cargo metadata` JSON.
fn parse_packages(metadata: &Value) -> Vec<Package> {
    let packages = metadata["packages"]
        .as_array()
        .expect("cargo metadata has a `packages` array");
    packages
        .iter()
        .map(|package| Package {
            name: package["name"].as_str().expect("package name").to_owned(),
            manifest: PathBuf::from(
                package["manifest_path"]
                    .as_str()
                    .expect("package manifest_path"),
            ),
            deps: package["dependencies"]
                .as_array()
                .expect("package dependencies")
                .iter()
                .map(|dep| {
                    let name = dep["name"].as_str().expect("dependency name").to_owned();
                    let kind = dep["kind"].as_str().unwrap_or("normal").to_owned();
                    (name, kind)
                })
                .collect(),
        })
        .collect()
}

/// Whether `package` lives under `<root>/crates/`.
fn in_crates_dir(root: &Path, package: &Package) -> bool {
    let crates = root.join("crates");
    let manifest = package
        .manifest
        .canonicalize()
        .unwrap_or_else(|_| package.manifest.clone());
    manifest.starts_with(&crates)
}

/// Dependency-direction violations among `packages` (whose `crates/` members are `in_crates`).
fn dependency_violations(
    packages: &[Package],
    in_crates: &dyn Fn(&Package) -> bool,
) -> Vec<String> {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED_EDGES
        .iter()
        .map(|(from, to)| (*from, to.iter().copied().collect()))
        .collect();
    let internal: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package.name.as_str();
        for (dep, kind) in &package.deps {
            let dep = dep.as_str();
            if SIBLINGS.contains(&name) && SIBLINGS.contains(&dep) {
                problems.push(format!(
                    "{name} has a {kind} dependency on {dep}: fetch, trust and store never \
                     import each other (vmc-cache combines them)"
                ));
            }
        }
        if !in_crates(package) {
            // xtask and the workspace `tests` package may use any crate.
            continue;
        }
        let Some(allowed_here) = allowed.get(name) else {
            problems.push(format!(
                "{name} is not in the tidy dependency table; add its allowed edges to \
                 ALLOWED_EDGES in tests/tests/tidy.rs (and to STYLE.md)"
            ));
            continue;
        };
        for (dep, kind) in &package.deps {
            let dep = dep.as_str();
            if kind == "dev" {
                continue;
            }
            if dep == TESTKIT {
                problems.push(format!(
                    "{name} -> {dep} ({kind}) is not an allowed edge; {TESTKIT} may only be \
                     a [dev-dependencies] entry"
                ));
            } else if internal.contains(dep) && !allowed_here.contains(dep) {
                let allowed_list: Vec<&str> = allowed_here.iter().copied().collect();
                problems.push(format!(
                    "{name} -> {dep} ({kind}) is not an allowed edge; {name} may depend on [{}]",
                    allowed_list.join(", ")
                ));
            }
            if name != CLI_CRATE && CLI_ONLY_DEPS.contains(&dep) {
                problems.push(format!(
                    "library crate {name} has a {kind} dependency on {dep}; only vmc-cli, \
                     xtask and tests may use {}",
                    CLI_ONLY_DEPS.join(", ")
                ));
            }
        }
    }
    problems
}

#[test]
fn dependencies_point_down_only() {
    let root = workspace_root();
    let packages = workspace_packages(&root);
    assert!(
        packages.iter().any(|p| p.name == "vmc-model"),
        "cargo metadata did not list vmc-model; wrong workspace?"
    );
    let problems = dependency_violations(&packages, &|p| in_crates_dir(&root, p));
    report(
        "dependency direction violated (see the graph in STYLE.md)",
        "move the code to the crate that may own it, or make the dependency a \
         [dev-dependencies] entry if only tests need it",
        &problems,
    );
}

// ---------------------------------------------------------------------------
// Manifests: workspace lints, folder names
// ---------------------------------------------------------------------------

/// Whether a `Cargo.toml` text sets `[lints] workspace = true` (in any TOML spelling).
fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut table = String::new();
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .replace(char::is_whitespace, "");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let full_key = if table.is_empty() {
            key
        } else {
            format!("{table}.{key}")
        };
        if (full_key == "lints.workspace" && value == "true")
            || (full_key == "lints" && value == "{workspace=true}")
        {
            return true;
        }
    }
    false
}

#[test]
fn every_member_inherits_workspace_lints() {
    let root = workspace_root();
    let problems: Vec<String> = workspace_packages(&root)
        .iter()
        .filter(|p| !inherits_workspace_lints(&read(&p.manifest)))
        .map(|p| format!("{} ({})", p.name, relative(&root, &p.manifest)))
        .collect();
    report(
        "every workspace member must inherit the workspace lints",
        "add `[lints]` with `workspace = true` to the member's Cargo.toml",
        &problems,
    );
}

#[test]
fn every_member_folder_is_named_after_its_package() {
    let root = workspace_root();
    let problems: Vec<String> = workspace_packages(&root)
        .iter()
        .filter_map(|p| {
            let dir = p.manifest.parent()?;
            let folder = dir.file_name()?.to_string_lossy();
            (folder != p.name.as_str())
                .then(|| format!("package {} lives in {}", p.name, relative(&root, dir)))
        })
        .collect();
    report(
        "each member folder must be named exactly as its package",
        "rename the folder (or the package) so they match",
        &problems,
    );
}

// ---------------------------------------------------------------------------
// Self-tests: each check catches what it should, on synthetic input
// ---------------------------------------------------------------------------

#[test]
fn module_doc_check_wants_doc_before_attributes() {
    assert_eq!(missing_module_doc("\n//! Doc.\n#![allow(x)]\n"), None);
    assert_eq!(
        missing_module_doc("#![allow(x)]\n//! Doc.\n"),
        Some("line 1: `#![allow(x)]`".to_owned())
    );
    assert_eq!(
        missing_module_doc("\n\n// a comment\n"),
        Some("line 3: `// a comment`".to_owned())
    );
    assert_eq!(missing_module_doc("  \n"), Some("file is empty".to_owned()));
    assert!(missing_module_doc("/// Item doc.\nfn f() {}\n").is_some());
}

#[test]
fn skipped_test_check_finds_attributes_and_doc_fences() {
    let ignore = concat!("#", "[ign", "ore]");
    let ignore_reason = concat!("#", "[ign", "ore = \"slow\"]");
    let panics = concat!("#", "[should", "_panic(expected = \"boom\")]");
    let cfg_attr = concat!("#", "[cfg_attr(miri, ign", "ore)]");
    let fence = concat!("/// ```rust,ign", "ore");
    let source = format!(
        "{ignore}\nfn a() {{}}\n    {ignore_reason}\n{panics}\n{cfg_attr}\n{fence}\n/// ```\n"
    );
    let lines: Vec<usize> = skipped_tests(&source).iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, [1, 3, 4, 5, 6]);

    let harmless = concat!(
        "#",
        "[allow(clippy::ign",
        "ore_without_reason)]\n",
        "#",
        "[doc = \"ign",
        "ore\"]\n",
        "// #",
        "[ign",
        "ore]\n",
        "/// ```no_run\n",
        "let s = \"ign",
        "ore\";\n"
    );
    assert_eq!(skipped_tests(harmless), Vec::new());
}

#[test]
fn lints_check_accepts_every_spelling() {
    assert!(inherits_workspace_lints(
        "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"
    ));
    assert!(inherits_workspace_lints(
        "[lints]\n  workspace=true # inherit\n"
    ));
    assert!(inherits_workspace_lints(
        "lints = { workspace = true }\n[package]\n"
    ));
    assert!(inherits_workspace_lints("lints.workspace = true\n"));
    assert!(!inherits_workspace_lints(
        "[package]\nworkspace = true\n[lints]\n"
    ));
    assert!(!inherits_workspace_lints("[lints]\nworkspace = false\n"));
    assert!(!inherits_workspace_lints("[lints]\n# workspace = true\n"));
}

#[test]
fn dependency_check_flags_bad_edges() {
    let package = |name: &str, deps: &[(&str, &str)]| Package {
        name: name.to_owned(),
        manifest: PathBuf::from(format!("/ws/crates/{name}/Cargo.toml")),
        deps: deps
            .iter()
            .map(|(d, k)| ((*d).to_owned(), (*k).to_owned()))
            .collect(),
    };
    let in_crates = |p: &Package| p.name.starts_with("vmc-");
    let good = [
        package("vmc-model", &[("serde", "normal"), ("proptest", "dev")]),
        package("vmc-testkit", &[("openssl", "normal")]),
        package(
            "vmc-fetch",
            &[("vmc-model", "normal"), ("vmc-testkit", "dev")],
        ),
        package("vmc-cli", &[("vmc-cache", "normal"), ("clap", "normal")]),
        package("tests", &[("vmc-testkit", "normal"), ("anyhow", "normal")]),
    ];
    assert_eq!(
        dependency_violations(&good, &in_crates),
        Vec::<String>::new()
    );

    let bad = [
        package("vmc-model", &[("vmc-store", "normal")]),
        package(
            "vmc-store",
            &[("vmc-model", "normal"), ("vmc-testkit", "normal")],
        ),
        package("vmc-trust", &[("anyhow", "normal"), ("vmc-fetch", "dev")]),
        package("vmc-fetch", &[]),
        package("vmc-testkit", &[]),
        package("vmc-cli", &[("vmc-store", "normal")]),
        package("vmc-extra", &[]),
    ];
    let problems = dependency_violations(&bad, &in_crates);
    let expect = [
        "vmc-model -> vmc-store (normal)",
        "vmc-store -> vmc-testkit (normal)",
        "library crate vmc-trust has a normal dependency on anyhow",
        "vmc-trust has a dev dependency on vmc-fetch",
        "vmc-cli -> vmc-store (normal)",
        "vmc-extra is not in the tidy dependency table",
    ];
    for needle in expect {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected a problem containing {needle:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}
