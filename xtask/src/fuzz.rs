//! `cargo xtask fuzz`: runs the fuzz targets of `fuzz/` under libFuzzer with `cargo fuzz`.
//!
//! Each target runs for `--seconds` (default 60), `--jobs` targets at once (default 1), from
//! its committed corpus (`fuzz/corpus/TARGET`: the seeds and what earlier runs merged in) and
//! its working corpus (`fuzz/target/corpus/TARGET`, not committed), where the fuzzer writes
//! every input it keeps. After a clean run, the inputs of the working corpus that reach code
//! the committed corpus does not are merged into it (libFuzzer's `-merge=1`), so the committed
//! corpus stays small enough for `cargo test` to run on every change (the test `fuzz_corpus`).
//! Inputs are capped in size, time and memory, so a hang or a runaway allocation is a failure
//! like a panic. A failing input lands in `fuzz/artifacts/TARGET/`; it belongs in
//! `fuzz/regressions/TARGET/` once fixed, where `cargo test` keeps running it.
//!
//! `cargo fuzz` needs nightly compiler flags; `RUSTC_BOOTSTRAP=1` unlocks them on the stable
//! toolchain. Install it with `cargo install cargo-fuzz --locked`.

use std::path::Path;
use std::process::{Child, Command};

use anyhow::{Context, Result, bail};

/// What `cargo xtask fuzz` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FuzzArgs {
    /// Seconds each target runs.
    pub(crate) seconds: u64,
    /// Targets run at once.
    pub(crate) jobs: usize,
    /// Only these targets (all when empty).
    pub(crate) targets: Vec<String>,
}

/// Per input: the longest it may take, the most memory the process may hold, and its size.
const TIMEOUT_SECS: u64 = 10;
const RSS_LIMIT_MB: u64 = 2048;
const MAX_INPUT_LEN: u64 = 1 << 20;

pub(crate) fn parse_args(args: &[std::ffi::OsString]) -> Result<FuzzArgs, String> {
    let mut parsed = FuzzArgs {
        seconds: 60,
        jobs: 1,
        targets: Vec::new(),
    };
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{flag} takes a positive number"))
        };
        match arg.as_str() {
            "--seconds" => parsed.seconds = number("--seconds")?,
            "--jobs" | "-j" => {
                parsed.jobs = usize::try_from(number("--jobs")?).map_err(|e| e.to_string())?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            target => parsed.targets.push(target.to_owned()),
        }
    }
    Ok(parsed)
}

/// The targets of `fuzz/Cargo.toml`: its `[[bin]]` names.
fn all_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(fuzz_dir.join("Cargo.toml"))
        .context("cannot read fuzz/Cargo.toml")?;
    Ok(manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "hoist-fuzz")
        .map(str::to_owned)
        .collect())
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = crate::cargo(root);
    cmd.arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", root.join("fuzz").join("target"));
    cmd
}

pub(crate) fn run(root: &Path, args: &FuzzArgs) -> Result<()> {
    let fuzz_dir = root.join("fuzz");
    let known = all_targets(&fuzz_dir)?;
    let targets = if args.targets.is_empty() {
        known.clone()
    } else {
        for target in &args.targets {
            if !known.contains(target) {
                bail!(
                    "no fuzz target {target}; the targets are {}",
                    known.join(", ")
                );
            }
        }
        args.targets.clone()
    };
    let version = cargo_fuzz(root).arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("cargo fuzz is not installed: `cargo install cargo-fuzz --locked`");
    }
    // One build of every target first, so that the runs start together and are timed alone.
    let mut build = cargo_fuzz(root);
    build.args(["build", "-O", "--debug-assertions"]);
    println!("==> {}", crate::describe(&build));
    crate::run_status(&mut build)?;

    let mut failed = Vec::new();
    for batch in targets.chunks(args.jobs.max(1)) {
        let children: Vec<(&String, Child)> = batch
            .iter()
            .map(|target| Ok((target, start(root, &fuzz_dir, target, args.seconds)?)))
            .collect::<Result<_>>()?;
        for (target, mut child) in children {
            let status = child
                .wait()
                .with_context(|| format!("waiting for {target}"))?;
            if status.success() {
                println!("    {target}: no failure in {} s", args.seconds);
                merge(root, &fuzz_dir, target)?;
            } else {
                println!(
                    "    {target}: FAILED ({status}); the input is in fuzz/artifacts/{target}/"
                );
                failed.push(target.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    println!(
        "==> fuzz: {} targets, {} s each, no failure",
        targets.len(),
        args.seconds
    );
    Ok(())
}

/// The working corpus of `target`, where the fuzzer writes (first), and the committed one.
fn corpora(fuzz_dir: &Path, target: &str) -> Result<[std::path::PathBuf; 2]> {
    let dirs = [
        fuzz_dir.join("target").join("corpus").join(target),
        fuzz_dir.join("corpus").join(target),
    ];
    for dir in &dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(dirs)
}

/// Merges into the committed corpus of `target` the inputs of its working corpus that reach
/// code the committed one does not.
fn merge(root: &Path, fuzz_dir: &Path, target: &str) -> Result<()> {
    let [work, committed] = corpora(fuzz_dir, target)?;
    let before = count_files(&committed);
    let mut cmd = cargo_fuzz(root);
    cmd.args(["run", "-O", "--debug-assertions", target])
        .arg(&committed)
        .arg(&work)
        .arg("--")
        .arg("-merge=1")
        .arg(format!("-max_len={MAX_INPUT_LEN}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::run_status(&mut cmd)?;
    println!(
        "    {target}: {} inputs merged into fuzz/corpus/{target}",
        count_files(&committed).saturating_sub(before)
    );
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).count())
}

/// Starts `target` on its corpora for `seconds`, its output to `fuzz/target/TARGET.log`.
fn start(root: &Path, fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Child> {
    let [work, committed] = corpora(fuzz_dir, target)?;
    let log_dir = fuzz_dir.join("target");
    std::fs::create_dir_all(&log_dir)?;
    let log_path = log_dir.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = cargo_fuzz(root);
    cmd.args(["run", "-O", "--debug-assertions", target])
        .arg(&work)
        .arg(&committed)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-max_len={MAX_INPUT_LEN}"))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log);
    println!(
        "==> {target}: {} (log {})",
        crate::describe(&cmd),
        log_path.display()
    );
    cmd.spawn()
        .with_context(|| format!("cannot start {}", crate::describe(&cmd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn seconds_jobs_and_targets() {
        assert_eq!(
            parse_args(&args(&["--seconds", "600", "-j", "2", "tar", "digest"])).unwrap(),
            FuzzArgs {
                seconds: 600,
                jobs: 2,
                targets: vec!["tar".to_owned(), "digest".to_owned()],
            }
        );
        assert!(parse_args(&args(&["--seconds", "0"])).is_err());
        assert!(parse_args(&args(&["--fast"])).is_err());
    }

    #[test]
    fn the_targets_are_the_bins_of_the_fuzz_crate() {
        let root = crate::workspace_root().unwrap();
        let targets = all_targets(&root.join("fuzz")).unwrap();
        assert!(targets.contains(&"manifest".to_owned()), "{targets:?}");
        assert!(!targets.contains(&"hoist-fuzz".to_owned()));
    }
}
