//! `cargo xtask dist`: the release archive of the `hoist` command line.
//!
//! Builds `hoist` once with the `dist` profile (fat LTO, one codegen unit, stripped; panics
//! unwind, so that the server outlives one request's bug; see [`build_binary`] for how it is
//! linked), then has the built binary write its
//! own man page and shell completions (so they come from the same clap definitions as the
//! program), and packs under `target/dist/`:
//!
//! ```text
//! hoist-VERSION-TARGET/            hoist, hoist.1, completions/{hoist.bash,_hoist,hoist.fish},
//!                                  README.md, LICENSE
//! hoist-VERSION-TARGET.tar.gz      that directory
//! SHA256SUMS                       sha256sum of the archive and of each file in it
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, run_status};

/// The completion scripts packed, by shell, with the names their shells look for.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "hoist.bash"),
    ("zsh", "_hoist"),
    ("fish", "hoist.fish"),
];

/// What makes a glibc executable static: the C library linked in (rustc makes it a static
/// PIE, so the program's address is still randomised).
const STATIC_GLIBC: &str = "-C target-feature=+crt-static";

/// Builds `hoist` with the `dist` profile for this machine and returns the executable's path
/// (`TARGET_DIR/HOST/dist/hoist`), as `cargo xtask dist` packs it and `cargo xtask bench`
/// measures it.
///
/// On a glibc host it is linked statically: a short command then starts without the dynamic
/// loader mapping and binding the C library (`hoist digest` took 2.6 ms dynamic, 1.8 ms
/// static). The catch of a static glibc is name lookup: `getaddrinfo` reads `/etc/hosts` and
/// asks DNS itself (the `files` and `dns` sources are inside the C library since glibc 2.34),
/// but any other source in `/etc/nsswitch.conf` (mdns, resolve, ldap) is a module it loads from
/// the running system, usable only if that system's glibc is the one linked in; with another
/// version the source counts as unavailable, and the lookup goes on as nsswitch.conf says for
/// that case. `--target` keeps the flag off build scripts and proc macros, which cannot be
/// static.
pub(crate) fn build_binary(root: &Path) -> Result<PathBuf> {
    build_for(root, &host_triple()?, &target_dir(root)?)
}

/// [`build_binary`] for `host`, with cargo's target directory `target` already known.
fn build_for(root: &Path, host: &str, target: &Path) -> Result<PathBuf> {
    let mut build = build_command(root, host, std::env::var("RUSTFLAGS").ok().as_deref());
    println!("==> build: {}", describe(&build));
    run_status(&mut build)?;
    Ok(target.join(host).join("dist").join("hoist"))
}

/// The `cargo build` of [`build_binary`] for `host`, adding to the caller's `rustflags`.
fn build_command(root: &Path, host: &str, rustflags: Option<&str>) -> Command {
    let mut build = cargo(root);
    build.args([
        "build",
        "--profile",
        "dist",
        "--locked",
        "-p",
        "hoist",
        "--target",
        host,
    ]);
    if host.ends_with("-linux-gnu") {
        let flags = match rustflags.map(str::trim) {
            Some(flags) if !flags.is_empty() => format!("{flags} {STATIC_GLIBC}"),
            _ => STATIC_GLIBC.to_owned(),
        };
        build.env("RUSTFLAGS", flags);
    }
    build
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let (host, target) = (host_triple()?, target_dir(root)?);
    let binary = build_for(root, &host, &target)?;
    let dist = target.join("dist");
    let version = version_of(&binary)?;
    let name = format!("hoist-{version}-{host}");
    let stage = dist.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    let completions = stage.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;

    copy_file(&binary, &stage.join("hoist"))?;
    write_output(Command::new(&binary).arg("man"), &stage.join("hoist.1"))?;
    for (shell, file) in COMPLETIONS {
        write_output(
            Command::new(&binary).args(["completions", shell]),
            &completions.join(file),
        )?;
    }
    for doc in ["README.md", "LICENSE"] {
        copy_file(&root.join(doc), &stage.join(doc))?;
    }

    let archive = format!("{name}.tar.gz");
    run_status(
        Command::new("tar")
            .current_dir(&dist)
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-czf",
            ])
            .args([&archive, &name]),
    )?;
    let mut files = vec![archive.clone()];
    files.extend(files_under(&dist, &stage)?);
    let mut sums = Command::new("sha256sum");
    sums.current_dir(&dist).args(&files);
    write_output(&mut sums, &dist.join("SHA256SUMS"))?;

    println!("packed {}", dist.join(&archive).display());
    println!("checksums in {}", dist.join("SHA256SUMS").display());
    Ok(())
}

/// Cargo's target directory (it follows `CARGO_TARGET_DIR` and `build.target-dir`).
pub(crate) fn target_dir(root: &Path) -> Result<PathBuf> {
    let output = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cannot read `cargo metadata`")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` names no target directory")
}

/// `0.1.0` out of `hoist --version` (`hoist 0.1.0`).
fn version_of(binary: &Path) -> Result<String> {
    let text = stdout_of(Command::new(binary).arg("--version"))?;
    parse_version(&text).with_context(|| format!("no version in {text:?}"))
}

fn parse_version(text: &str) -> Option<String> {
    let version = text.split_whitespace().nth(1)?;
    version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
        .then(|| version.to_owned())
}

/// The target triple rustc builds for by default (`x86_64-unknown-linux-gnu`).
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let text = stdout_of(Command::new(rustc).arg("-vV"))?;
    parse_host(&text).context("`rustc -vV` names no host")
}

fn parse_host(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
}

fn stdout_of(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .output()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{} printed non-UTF-8", describe(cmd)))
}

/// Runs `cmd` and writes what it prints to `path`.
fn write_output(cmd: &mut Command, path: &Path) -> Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::write(path, &output.stdout).with_context(|| format!("cannot write {}", path.display()))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// The files under `dir`, as paths relative to `base`, sorted.
fn files_under(base: &Path, dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(base)
                    .with_context(|| format!("{} is outside {}", path.display(), base.display()))?;
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_hosts() {
        assert_eq!(parse_version("hoist 0.1.0\n").as_deref(), Some("0.1.0"));
        assert_eq!(parse_version("hoist\n"), None);
        assert_eq!(parse_version("hoist ../x"), None);
        let rustc = "rustc 1.95.0 (abc 2026-01-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(
            parse_host(rustc).as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(parse_host("nothing"), None);
    }

    #[test]
    fn a_glibc_build_is_static_and_keeps_the_callers_flags() {
        let flags = |cmd: &Command| {
            cmd.get_envs()
                .find(|(key, _)| *key == "RUSTFLAGS")
                .and_then(|(_, value)| value)
                .map(|value| value.to_string_lossy().into_owned())
        };
        let root = Path::new("/src");
        let gnu = build_command(root, "x86_64-unknown-linux-gnu", None);
        let args: Vec<_> = gnu
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--target", "x86_64-unknown-linux-gnu"]),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w == ["--profile", "dist"]),
            "{args:?}"
        );
        assert_eq!(flags(&gnu).as_deref(), Some(STATIC_GLIBC));
        let with_own = build_command(
            root,
            "aarch64-unknown-linux-gnu",
            Some("-C target-cpu=native"),
        );
        assert_eq!(
            flags(&with_own).as_deref(),
            Some("-C target-cpu=native -C target-feature=+crt-static")
        );
        // musl is static already; other systems are left as they are.
        assert_eq!(
            flags(&build_command(root, "x86_64-unknown-linux-musl", None)),
            None
        );
        assert_eq!(
            flags(&build_command(root, "aarch64-apple-darwin", None)),
            None
        );
    }

    #[test]
    fn files_are_listed_relative_and_sorted() {
        let dir = std::env::temp_dir().join(format!("xtask-dist-test-{}", std::process::id()));
        let stage = dir.join("pkg");
        fs::create_dir_all(stage.join("completions")).unwrap();
        fs::write(stage.join("hoist"), b"x").unwrap();
        fs::write(stage.join("completions/_hoist"), b"x").unwrap();
        let files = files_under(&dir, &stage).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files, ["pkg/completions/_hoist", "pkg/hoist"]);
    }
}
