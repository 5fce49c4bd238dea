//! `cargo xtask lint`: repository rules that rustc and clippy do not check.
//!
//! * Layering: each workspace crate may depend (normally, for dev or for build) only on the
//!   workspace crates listed for it in [`LAYERING`]; siblings never depend on each other and
//!   nothing depends upwards. A workspace member missing from the table is an error too.
//! * Tidy: no `todo!`, `unimplemented!` or `dbg!` calls in any `.rs` file of a member; every
//!   library and binary crate root starts with a `//!` doc comment; every member's `Cargo.toml`
//!   inherits the workspace lints.
//! * Unused dependencies: every dependency a member declares is named in its Rust code as
//!   `name::`, `use name` or `extern crate name` (`-` read as `_`, or its `package =` rename),
//!   unless [`USED_WITHOUT_A_PATH`] says why it is not; a normal or build dependency must be
//!   named outside test code (`tests/`, `benches/`, `examples/`, `tests.rs` files and
//!   `#[cfg(test)] mod` blocks), else it belongs in `[dev-dependencies]`. A plain text search,
//!   not name resolution: it runs offline in milliseconds, with nothing to install
//!   (cargo-machete, which does much the same, would have to be built in CI first).
//!
//! The checks are plain functions over parsed data or file text, unit-tested below; the
//! `workspace_is_lint_clean` test runs them over the real workspace, so `cargo test` enforces
//! them as well.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, describe};

/// Which workspace crates a workspace crate may depend on.
#[derive(Debug)]
enum Allowed {
    Only(&'static [&'static str]),
    Any,
}

/// The two bottom layers, which every mid-layer crate may use.
const BASE: &[&str] = &["oci-types", "oci-store"];

/// The layering table: every workspace member must be listed here.
const LAYERING: &[(&str, Allowed)] = &[
    ("oci-types", Allowed::Only(&[])),
    ("oci-store", Allowed::Only(&["oci-types"])),
    ("oci-layout", Allowed::Only(BASE)),
    ("oci-bucket", Allowed::Only(BASE)),
    ("oci-registry", Allowed::Only(BASE)),
    ("oci-server", Allowed::Only(BASE)),
    ("oci-build", Allowed::Only(BASE)),
    ("oci-unpack", Allowed::Only(BASE)),
    ("oci-archive", Allowed::Only(BASE)),
    ("oci-docker", Allowed::Only(BASE)),
    ("oci-artifact", Allowed::Only(BASE)),
    (
        "hoist",
        Allowed::Only(&[
            "oci-types",
            "oci-store",
            "oci-layout",
            "oci-bucket",
            "oci-registry",
            "oci-server",
            "oci-build",
            "oci-unpack",
            "oci-archive",
            "oci-docker",
            "oci-artifact",
        ]),
    ),
    ("xtask", Allowed::Only(&[])),
    ("hoist-tests", Allowed::Any),
];

/// The kind of a dependency, as in the `kind` field of `cargo metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepKind {
    Normal,
    Dev,
    Build,
}

impl DepKind {
    fn from_metadata(kind: Option<&Value>) -> Result<Self> {
        match kind {
            None | Some(Value::Null) => Ok(Self::Normal),
            Some(Value::String(s)) if s == "normal" => Ok(Self::Normal),
            Some(Value::String(s)) if s == "dev" => Ok(Self::Dev),
            Some(Value::String(s)) if s == "build" => Ok(Self::Build),
            Some(other) => bail!("unknown dependency kind {other} in cargo metadata"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Normal => "dependency",
            Self::Dev => "dev-dependency",
            Self::Build => "build-dependency",
        }
    }
}

/// A declared dependency of workspace crate `from` on workspace crate `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) kind: DepKind,
}

/// A workspace member, as far as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) manifest_path: PathBuf,
    /// Root files of the member's library and binary targets (`lib.rs`, `main.rs`, ...).
    pub(crate) crate_roots: Vec<PathBuf>,
    /// Every dependency it declares, of any kind.
    pub(crate) dependencies: Vec<Dependency>,
}

/// A dependency a member declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dependency {
    /// The package's name, as in `Cargo.toml`.
    pub(crate) package: String,
    /// The name the code uses: the rename if there is one, else the package's, `-` as `_`.
    pub(crate) ident: String,
    pub(crate) kind: DepKind,
}

/// Dependencies that a member needs without naming them in its code, and why: `(member,
/// package, reason)`.
const USED_WITHOUT_A_PATH: &[(&str, &str, &str)] = &[
    (
        "oci-bucket",
        "reqwest",
        "turns on rustls without a built-in provider in object_store's HTTP client",
    ),
    (
        "oci-store",
        "zlib-rs",
        "turns on std in flate2's backend, so that it detects the CPU's features at run time",
    ),
];

/// Runs every check over the workspace at `root`, printing each problem; fails if there is any.
pub(crate) fn run(root: &Path) -> Result<()> {
    let problems = check(root)?;
    if problems.is_empty() {
        println!("lint: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("lint: {problem}");
    }
    bail!("{} lint problem(s) found", problems.len());
}

/// Every problem found in the workspace at `root`, as human-readable lines.
pub(crate) fn check(root: &Path) -> Result<Vec<String>> {
    let metadata = cargo_metadata(root)?;
    let (members, edges) = parse_metadata(&metadata)?;
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let mut problems = check_layering(&names, &edges);
    problems.extend(tidy(root, &members)?);
    problems.extend(unused_dependencies(root, &members)?);
    let readme = fs::read_to_string(root.join("README.md")).context("cannot read README.md")?;
    problems.extend(readme_crate_table(&readme, &names));
    Ok(problems)
}

/// The README's crate table must name every member, and only members, so that it says what
/// exists: one row per crate, `| [`NAME`](PATH) | what it is for |`.
pub(crate) fn readme_crate_table(readme: &str, members: &[String]) -> Vec<String> {
    let listed: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| [`"))
        .filter_map(|rest| rest.split_once("`]").map(|(name, _)| name))
        .collect();
    let mut problems: Vec<String> = members
        .iter()
        .filter(|member| !listed.contains(&member.as_str()))
        .map(|member| format!("README.md: the crate table has no row for crate {member}"))
        .collect();
    problems.extend(
        listed
            .iter()
            .filter(|name| !members.iter().any(|m| m == *name))
            .map(|name| format!("README.md: the crate table names {name}, which is no crate")),
    );
    problems
}

fn cargo_metadata(root: &Path) -> Result<Value> {
    let mut cmd = cargo(root);
    cmd.args(["metadata", "--format-version", "1", "--no-deps", "--locked"]);
    let output = cmd
        .output()
        .with_context(|| format!("failed to start {}", describe(&cmd)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            describe(&cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("cannot parse the output of {}", describe(&cmd)))
}

fn str_field<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value
        .get(field)
        .and_then(Value::as_str)
        .with_context(|| format!("cargo metadata: missing string field `{field}`"))
}

fn array_field<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>> {
    value
        .get(field)
        .and_then(Value::as_array)
        .with_context(|| format!("cargo metadata: missing array field `{field}`"))
}

/// The workspace members and the dependency edges between them, from `cargo metadata` output.
pub(crate) fn parse_metadata(metadata: &Value) -> Result<(Vec<Member>, Vec<Edge>)> {
    let member_ids: BTreeSet<&str> = array_field(metadata, "workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages: Vec<&Value> = array_field(metadata, "packages")?
        .iter()
        .filter(|p| {
            p.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| member_ids.contains(id))
        })
        .collect();

    let mut members = Vec::new();
    for package in &packages {
        let mut crate_roots = Vec::new();
        for target in array_field(package, "targets")? {
            let is_lib_or_bin = array_field(target, "kind")?
                .iter()
                .filter_map(Value::as_str)
                .any(|k| k == "bin" || k == "proc-macro" || k.ends_with("lib"));
            if is_lib_or_bin {
                crate_roots.push(PathBuf::from(str_field(target, "src_path")?));
            }
        }
        let mut dependencies = BTreeSet::new();
        for dep in array_field(package, "dependencies")? {
            let name = str_field(dep, "name")?;
            let used_as = dep.get("rename").and_then(Value::as_str).unwrap_or(name);
            dependencies.insert(Dependency {
                package: name.to_owned(),
                ident: used_as.replace('-', "_"),
                kind: DepKind::from_metadata(dep.get("kind"))?,
            });
        }
        members.push(Member {
            name: str_field(package, "name")?.to_owned(),
            manifest_path: PathBuf::from(str_field(package, "manifest_path")?),
            crate_roots,
            dependencies: dependencies.into_iter().collect(),
        });
    }

    let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut edges = BTreeSet::new();
    for package in &packages {
        let from = str_field(package, "name")?;
        for dep in array_field(package, "dependencies")? {
            let to = str_field(dep, "name")?;
            if names.contains(to) {
                edges.insert(Edge {
                    from: from.to_owned(),
                    to: to.to_owned(),
                    kind: DepKind::from_metadata(dep.get("kind"))?,
                });
            }
        }
    }
    Ok((members, edges.into_iter().collect()))
}

/// Checks the dependency `edges` between the workspace `members` against [`LAYERING`].
///
/// Edges to crates that are not workspace members are ignored.
pub(crate) fn check_layering(members: &[String], edges: &[Edge]) -> Vec<String> {
    let allowed_for = |name: &str| LAYERING.iter().find(|(n, _)| *n == name).map(|(_, a)| a);
    let mut problems = Vec::new();
    for member in members {
        if allowed_for(member).is_none() {
            problems.push(format!(
                "crate {member} is a workspace member but has no layering rule: \
                 add it to the layering table in xtask/src/lint.rs"
            ));
        }
    }
    for edge in edges {
        if !members.contains(&edge.to) || edge.from == edge.to {
            continue;
        }
        // A crate missing from the table has been reported above.
        let Some(allowed) = allowed_for(&edge.from) else {
            continue;
        };
        let allowed = match allowed {
            Allowed::Any => continue,
            Allowed::Only(list) => *list,
        };
        if !allowed.contains(&edge.to.as_str()) {
            let may = if allowed.is_empty() {
                "no workspace crate".to_owned()
            } else {
                allowed.join(", ")
            };
            problems.push(format!(
                "crate {} depends on {} ({}): not allowed; {} may depend on: {may}",
                edge.from,
                edge.to,
                edge.kind.describe(),
                edge.from,
            ));
        }
    }
    problems
}

/// The tidy checks over the files of every member.
fn tidy(root: &Path, members: &[Member]) -> Result<Vec<String>> {
    let show = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut problems = Vec::new();
    for member in members {
        let manifest = fs::read_to_string(&member.manifest_path)
            .with_context(|| format!("cannot read {}", member.manifest_path.display()))?;
        if !has_workspace_lints(&manifest) {
            problems.push(format!(
                "{}: missing `[lints]` with `workspace = true` (crate {})",
                show(&member.manifest_path),
                member.name
            ));
        }

        for crate_root in &member.crate_roots {
            let text = fs::read_to_string(crate_root)
                .with_context(|| format!("cannot read {}", crate_root.display()))?;
            if !starts_with_crate_doc(&text) {
                problems.push(format!(
                    "{}: must start with a `//!` doc comment saying what the crate is for",
                    show(crate_root)
                ));
            }
        }

        let Some(member_dir) = member.manifest_path.parent() else {
            continue;
        };
        for file in rust_files(member_dir)? {
            let text = fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            for (line, mac) in find_forbidden_macros(&text) {
                problems.push(format!("{}:{line}: `{mac}!` left in the code", show(&file)));
            }
        }
    }
    Ok(problems)
}

/// The dependencies of every member that its Rust files (under its directory: `src/`,
/// `tests/`, `benches/`, `examples/`, `build.rs`) never name, and its normal and build
/// dependencies that only its test code names, as problems.
fn unused_dependencies(root: &Path, members: &[Member]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for member in members {
        let Some(member_dir) = member.manifest_path.parent() else {
            continue;
        };
        let (mut all_code, mut non_test_code) = (String::new(), String::new());
        for file in rust_files(member_dir)? {
            let text = fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let relative = file.strip_prefix(member_dir).unwrap_or(&file);
            if !is_test_file(relative) {
                non_test_code.push_str(&without_test_modules(&text));
                non_test_code.push('\n');
            }
            all_code.push_str(&text);
            all_code.push('\n');
        }
        let manifest = member
            .manifest_path
            .strip_prefix(root)
            .unwrap_or(&member.manifest_path)
            .display();
        for dep in &member.dependencies {
            let allowed = USED_WITHOUT_A_PATH
                .iter()
                .any(|(m, p, _)| *m == member.name && *p == dep.package);
            if allowed {
                continue;
            }
            let what = format!("{} `{}`", dep.kind.describe(), dep.package);
            if !names_crate(&all_code, &dep.ident) {
                problems.push(format!(
                    "{manifest}: {what} is not used in the code of crate {} (remove it, or add \
                     it to USED_WITHOUT_A_PATH in xtask/src/lint.rs with the reason)",
                    member.name,
                ));
            } else if dep.kind != DepKind::Dev && !names_crate(&non_test_code, &dep.ident) {
                problems.push(format!(
                    "{manifest}: {what} is used only in the tests of crate {}: make it a \
                     dev-dependency",
                    member.name,
                ));
            }
        }
    }
    Ok(problems)
}

/// Whether a file at `relative` (to its member's directory) holds only test code: under
/// `tests/`, `benches/` or `examples/`, or a `tests.rs` module.
pub(crate) fn is_test_file(relative: &Path) -> bool {
    relative.file_name().is_some_and(|n| n == "tests.rs")
        || relative.components().any(|c| {
            let c = c.as_os_str();
            c == "tests" || c == "benches" || c == "examples"
        })
}

/// `text` without its `#[cfg(test)] mod NAME { ... }` blocks (braces counted, which is enough
/// for test modules: an unbalanced brace in a string or a char literal would end one early or
/// late).
pub(crate) fn without_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    let mut after_cfg_test = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if after_cfg_test && trimmed.starts_with("mod ") && trimmed.ends_with('{') {
            let mut depth = 1i64;
            for inner in lines.by_ref() {
                depth += inner.matches('{').count() as i64 - inner.matches('}').count() as i64;
                if depth <= 0 {
                    break;
                }
            }
            after_cfg_test = false;
            continue;
        }
        after_cfg_test = trimmed == "#[cfg(test)]";
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether `code` names the crate `ident`: `ident::` (in a path or a `use`), `use ident` or
/// `extern crate ident`, where `ident` is not the tail of a longer identifier.
pub(crate) fn names_crate(code: &str, ident: &str) -> bool {
    let is_ident_char = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(ident).any(|(at, _)| {
        if code[..at].chars().next_back().is_some_and(is_ident_char) {
            return false;
        }
        let after = &code[at + ident.len()..];
        if after.starts_with("::") {
            return true;
        }
        if after.chars().next().is_some_and(is_ident_char) {
            return false;
        }
        let before = code[..at].trim_end();
        let words: Vec<&str> = before.rsplit(char::is_whitespace).take(2).collect();
        matches!(words.as_slice(), ["use", ..] | ["crate", "extern"])
    })
}

/// Every `.rs` file under `dir`, sorted, skipping `target`, hidden directories and nested
/// packages (directories with their own `Cargo.toml`).
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if file_type.is_dir() {
                let skip =
                    name.starts_with('.') || name == "target" || path.join("Cargo.toml").exists();
                if !skip {
                    pending.push(path);
                }
            } else if file_type.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Macros that must not be committed.
const FORBIDDEN_MACROS: &[&str] = &["todo", "unimplemented", "dbg"];

/// The 1-based line numbers and names of forbidden macro calls (`name!(`) in `text`.
///
/// A call counts only if the name is not the tail of a longer identifier (`my_dbg!(` is fine);
/// calls through a path (`std::` prefix) are found.
pub(crate) fn find_forbidden_macros(text: &str) -> Vec<(usize, &'static str)> {
    let patterns: Vec<(String, &'static str)> = FORBIDDEN_MACROS
        .iter()
        .map(|name| (format!("{name}!("), *name))
        .collect();
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for (pattern, name) in &patterns {
            let hit = line.match_indices(pattern.as_str()).any(|(at, _)| {
                !line[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if hit {
                found.push((index + 1, *name));
            }
        }
    }
    found
}

/// Whether `text` starts, after optional blank lines, with a `//!` doc comment.
pub(crate) fn starts_with_crate_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .lines()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.trim_start().starts_with("//!"))
}

/// Whether the `Cargo.toml` text opts into the workspace lints: a `[lints]` table with
/// `workspace = true`, or `lints.workspace = true` / `lints = { workspace = true }` at top level.
pub(crate) fn has_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            continue;
        }
        if compact.starts_with('[') {
            table = Some(compact.trim_matches(|c| c == '[' || c == ']').to_owned());
            continue;
        }
        let found = match table.as_deref() {
            None => compact == "lints.workspace=true" || compact == "lints={workspace=true}",
            Some("lints") => compact == "workspace=true",
            Some(_) => false,
        };
        if found {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn edge(from: &str, to: &str, kind: DepKind) -> Edge {
        Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            kind,
        }
    }

    const MEMBERS: &[&str] = &[
        "oci-types",
        "oci-store",
        "oci-layout",
        "oci-registry",
        "hoist",
        "xtask",
        "hoist-tests",
    ];

    #[test]
    fn allowed_edges_pass() {
        let edges = [
            edge("oci-store", "oci-types", DepKind::Normal),
            edge("oci-layout", "oci-types", DepKind::Normal),
            edge("oci-layout", "oci-store", DepKind::Dev),
            edge("hoist", "oci-registry", DepKind::Normal),
            edge("hoist-tests", "hoist", DepKind::Dev),
            edge("hoist-tests", "xtask", DepKind::Build),
        ];
        assert_eq!(
            check_layering(&names(MEMBERS), &edges),
            Vec::<String>::new()
        );
    }

    #[test]
    fn sideways_edge_is_reported() {
        let edges = [edge("oci-layout", "oci-registry", DepKind::Normal)];
        assert_eq!(
            check_layering(&names(MEMBERS), &edges),
            [
                "crate oci-layout depends on oci-registry (dependency): not allowed; \
              oci-layout may depend on: oci-types, oci-store"
            ]
        );
    }

    #[test]
    fn upward_edge_is_reported_for_every_kind() {
        let edges = [
            edge("oci-types", "oci-store", DepKind::Normal),
            edge("oci-types", "oci-store", DepKind::Dev),
            edge("oci-types", "oci-store", DepKind::Build),
        ];
        let problems = check_layering(&names(MEMBERS), &edges);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert_eq!(
            problems[1],
            "crate oci-types depends on oci-store (dev-dependency): not allowed; \
             oci-types may depend on: no workspace crate"
        );
        assert!(problems[2].contains("(build-dependency)"));
    }

    #[test]
    fn unknown_member_is_reported() {
        let problems = check_layering(&names(&["oci-types", "oci-mystery"]), &[]);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("oci-mystery"));
        assert!(problems[0].contains("add it to the layering table in xtask/src/lint.rs"));
    }

    #[test]
    fn edges_to_non_members_are_ignored() {
        let edges = [edge("oci-types", "serde", DepKind::Normal)];
        assert!(check_layering(&names(MEMBERS), &edges).is_empty());
    }

    #[test]
    fn metadata_is_parsed_into_members_and_workspace_edges() {
        let metadata = serde_json::json!({
            "workspace_members": ["a-id", "b-id"],
            "packages": [
                {
                    "id": "a-id", "name": "oci-types", "manifest_path": "/w/a/Cargo.toml",
                    "targets": [{ "kind": ["lib"], "src_path": "/w/a/src/lib.rs" }],
                    "dependencies": [
                        { "name": "serde", "kind": null },
                        { "name": "oci-store", "kind": "dev" }
                    ]
                },
                {
                    "id": "b-id", "name": "oci-store", "manifest_path": "/w/b/Cargo.toml",
                    "targets": [
                        { "kind": ["bin"], "src_path": "/w/b/src/main.rs" },
                        { "kind": ["test"], "src_path": "/w/b/tests/t.rs" },
                        { "kind": ["custom-build"], "src_path": "/w/b/build.rs" }
                    ],
                    "dependencies": [{ "name": "oci-types", "kind": "build" }]
                }
            ]
        });
        let (members, edges) = parse_metadata(&metadata).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(
            members[0]
                .dependencies
                .iter()
                .map(|d| (d.ident.as_str(), d.kind))
                .collect::<Vec<_>>(),
            [("oci_store", DepKind::Dev), ("serde", DepKind::Normal)]
        );
        assert_eq!(members[0].crate_roots, [PathBuf::from("/w/a/src/lib.rs")]);
        assert_eq!(members[1].crate_roots, [PathBuf::from("/w/b/src/main.rs")]);
        assert_eq!(
            edges,
            [
                edge("oci-store", "oci-types", DepKind::Build),
                edge("oci-types", "oci-store", DepKind::Dev),
            ]
        );
    }

    #[test]
    fn crates_are_found_by_path_use_or_extern_crate() {
        assert!(names_crate("let h = sha2::Sha256::new();", "sha2"));
        assert!(names_crate("use serde_json;\n", "serde_json"));
        assert!(names_crate("pub use oci_types as types;", "oci_types"));
        assert!(names_crate("extern crate libc;", "libc"));
        assert!(names_crate("#[tokio::main]\nasync fn main() {}", "tokio"));
        assert!(names_crate("x = ::url::Url::parse(s);", "url"));
        assert!(!names_crate("let sha2 = 1; // sha2", "sha2"));
        assert!(!names_crate("my_sha2::Sha256::new();", "sha2"));
        assert!(!names_crate("sha256::digest();", "sha2"));
        assert!(!names_crate("use sha2x::Sha;", "sha2"));
        assert!(!names_crate("", "sha2"));
    }

    #[test]
    fn test_code_is_told_apart() {
        assert!(is_test_file(Path::new("tests/build.rs")));
        assert!(is_test_file(Path::new("src/build/compress/tests.rs")));
        assert!(is_test_file(Path::new("benches/b.rs")));
        assert!(!is_test_file(Path::new("src/lib.rs")));
        assert!(!is_test_file(Path::new("build.rs")));
        let text = "use a::b;\n#[cfg(test)]\nmod tests {\n    use sha2::X;\n    fn f() {\n    }\n}\n\
                    fn g() {}\n#[cfg(test)]\nmod other;\n";
        let kept = without_test_modules(text);
        assert!(!kept.contains("sha2"), "{kept}");
        assert!(
            kept.contains("use a::b;") && kept.contains("fn g() {}"),
            "{kept}"
        );
        assert!(kept.contains("mod other;"), "{kept}");
    }

    #[test]
    fn forbidden_macros_are_found_with_line_numbers() {
        // `\x21` is `!`: spelled so that this file does not trip the check it tests.
        let text = "fn f() {\n    let x = 1;\n    todo\x21()\n}\n";
        assert_eq!(find_forbidden_macros(text), [(3, "todo")]);

        let text = "std::dbg\x21(x);\nunimplemented\x21(\"later\")\n";
        assert_eq!(
            find_forbidden_macros(text),
            [(1, "dbg"), (2, "unimplemented")]
        );
    }

    #[test]
    fn similar_names_are_not_forbidden_macros() {
        let text = "my_dbg\x21(x);\nlet todo = 1;\nfn todo_list() {}\nassert\x21(x);\n";
        assert!(find_forbidden_macros(text).is_empty());
    }

    #[test]
    fn crate_doc_must_come_first() {
        assert!(starts_with_crate_doc("//! What this is for.\n"));
        assert!(starts_with_crate_doc(
            "\n\n  //! Indented, after blank lines.\n"
        ));
        assert!(!starts_with_crate_doc("// A plain comment.\n//! Doc.\n"));
        assert!(!starts_with_crate_doc("use std::fs;\n"));
        assert!(!starts_with_crate_doc(""));
    }

    #[test]
    fn manifest_must_inherit_workspace_lints() {
        assert!(has_workspace_lints(
            "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"
        ));
        assert!(has_workspace_lints(
            "[package]\nname = \"a\"\n[lints]  # shared\n# comment\n  workspace=true\n"
        ));
        assert!(has_workspace_lints(
            "lints.workspace = true\n[package]\nname = \"a\"\n"
        ));
        assert!(!has_workspace_lints("[package]\nname = \"a\"\n"));
        assert!(!has_workspace_lints("[package]\nlints.workspace = true\n"));
        assert!(!has_workspace_lints(
            "[lints]\n[dependencies]\nworkspace = true\n"
        ));
        assert!(!has_workspace_lints("[lints]\nworkspace = false\n"));
    }

    /// Like rust-analyzer's tidy tests: `cargo test` fails if the workspace breaks a rule.
    #[test]
    fn workspace_is_lint_clean() {
        let root = crate::workspace_root().unwrap();
        let problems = check(&root).unwrap();
        assert!(
            problems.is_empty(),
            "`cargo xtask lint` found problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_readme_table_names_every_crate_and_only_crates() {
        let readme = "| crate | for |\n|---|---|\n| [`oci-types`](crates/oci-types) | data |\n\
                      | [`gone`](crates/gone) | old |\n";
        let members = ["oci-types".to_owned(), "oci-store".to_owned()];
        let problems = readme_crate_table(readme, &members);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("oci-store"));
        assert!(problems[1].contains("gone"));
    }
}
