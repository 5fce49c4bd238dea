//! Scenario `layout` (issue 3): pushing a blob into an image layout takes at most
//! [`RATIO_LIMIT`] times the slower of writing the same bytes into a new file on the same
//! filesystem (`dd` with `conv=fdatasync`) and hashing them (`openssl dgst -sha256`); reading it
//! back with verification takes at most [`RATIO_LIMIT`] times `openssl dgst -sha256` of the
//! stored blob; the peak resident set of both stays under [`RSS_LIMIT_KIB`].
//!
//! How it measures (see "This machine, measured" in the peers' README for why):
//! * the layout side is the release-built example `layout_bench` of `oci-layout`, which prints
//!   its own peak RSS; xtask itself depends on no workspace crate, it only builds and runs;
//! * the source is random data, generated once, synced, and read once before timing so that
//!   every tool reads it from the page cache alike;
//! * every run writes into fresh directories (a reused target flatters whoever writes second,
//!   since touching fresh memory is what writing costs here), and the order of the tools
//!   alternates from one run to the next;
//! * a run's directories are deleted after it, all at once, followed by `sync` and a pause
//!   (after a large deletion the machine is slower for a while);
//! * each run starts by writing an untimed ballast file (zeros, a few times the size, kept
//!   until the run ends): memory freed recently, by the previous run or anyone else, is still
//!   backed by the host and much faster to write into than memory it has taken back, so
//!   without the ballast the first tool of a run writes much faster than the next; the
//!   ballast uses that memory up, so every timed tool writes into fresh memory alike (see
//!   [`run_ballast`]);
//! * the stored blob is read once, untimed, before it is read back, so that both readers find
//!   it in the page cache whatever the layout's write path leaves there;
//! * every tool is timed as a child process, with `Instant` around it; results are medians.
//!
//! Misses are printed as `FAIL` but do not fail the command (the machine is shared and noisy);
//! only a failing command does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::data::{blob_path, urandom_file};
use super::machine::{
    Workspace, ballast_bytes, check_dd, dd, openssl_dgst, parse_openssl_digest, read_through,
    remove_dir, require_tools, run_ballast, sha256_of, sync_and_pause,
};
use super::measure::{Runs, print_step, timed, write_results};
use super::{BenchArgs, Scenario};
use crate::{cargo, describe};

mod report;

use report::Report;

/// The limit on push / max(dd, openssl) and on read / openssl.
const RATIO_LIMIT: f64 = 1.2;
/// The limit on the peak resident set of push and read, in KiB.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// What is timed in the layout scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `dd conv=fdatasync` of the source into a new file.
    Dd,
    /// `openssl dgst -sha256` of the source.
    OpensslSource,
    /// `layout_bench push` of the source into a new layout.
    Push,
    /// `openssl dgst -sha256` of the blob stored by the push.
    OpensslBlob,
    /// `layout_bench read` of that blob.
    Read,
}

impl Tool {
    const ALL: [Self; 5] = [
        Self::Dd,
        Self::OpensslSource,
        Self::Push,
        Self::OpensslBlob,
        Self::Read,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::Dd => "dd",
            Self::OpensslSource => "openssl_source",
            Self::Push => "push",
            Self::OpensslBlob => "openssl_blob",
            Self::Read => "read",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Dd => "dd conv=fdatasync, new file",
            Self::OpensslSource => "openssl dgst -sha256 (source)",
            Self::Push => "layout_bench push, new layout",
            Self::OpensslBlob => "openssl dgst -sha256 (stored blob)",
            Self::Read => "layout_bench read (verified)",
        }
    }
}

/// The order of the tools in run `index` (from 0): even runs write with `dd` first, odd runs
/// push first, and the stored blob is read first by `openssl` in even runs and by the layout in
/// odd ones. The push always precedes what reads its blob.
fn run_order(index: usize) -> [Tool; 5] {
    use Tool::{Dd, OpensslBlob, OpensslSource, Push, Read};
    if index.is_multiple_of(2) {
        [Dd, OpensslSource, Push, OpensslBlob, Read]
    } else {
        [Push, Read, OpensslBlob, OpensslSource, Dd]
    }
}

/// One timed execution.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    tool: Tool,
    seconds: f64,
    /// Reported by `layout_bench` only.
    peak_rss_kib: Option<u64>,
}

/// What `layout_bench` prints: `{"op":..,"seconds":..,"bytes":..,"peak_rss_kib":..}`.
#[derive(Debug, Clone, PartialEq)]
struct BenchLine {
    op: String,
    seconds: f64,
    bytes: u64,
    peak_rss_kib: u64,
}

fn parse_bench_line(stdout: &str) -> Result<BenchLine> {
    let line = stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .context("layout_bench printed nothing")?;
    let value: Value = serde_json::from_str(line)
        .with_context(|| format!("layout_bench printed {line:?}, not JSON"))?;
    let field = |name: &str| {
        value
            .get(name)
            .with_context(|| format!("layout_bench output {line:?} has no `{name}`"))
    };
    Ok(BenchLine {
        op: field("op")?
            .as_str()
            .context("`op` is not a string")?
            .to_owned(),
        seconds: field("seconds")?
            .as_f64()
            .context("`seconds` is not a number")?,
        bytes: field("bytes")?
            .as_u64()
            .context("`bytes` is not a whole number")?,
        peak_rss_kib: field("peak_rss_kib")?
            .as_u64()
            .context("`peak_rss_kib` is not a whole number")?,
    })
}

/// The executable of the example `name` among the JSON messages of `cargo build
/// --message-format=json...`.
fn find_example_executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m.get("reason").and_then(Value::as_str) == Some("compiler-artifact"))
        .filter(|m| {
            let target = m.get("target");
            target.and_then(|t| t.get("name")).and_then(Value::as_str) == Some(name)
                && target
                    .and_then(|t| t.get("kind"))
                    .and_then(Value::as_array)
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "example"))
        })
        .find_map(|m| m.get("executable")?.as_str().map(PathBuf::from))
}

/// Builds `layout_bench` in release mode and returns its path.
fn build_layout_bench(root: &Path) -> Result<PathBuf> {
    let mut cmd = cargo(root);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "oci-layout",
        "--example",
        "layout_bench",
        "--message-format=json-render-diagnostics",
    ]);
    println!("==> build: {}", describe(&cmd));
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start {}", describe(&cmd)))?;
    if !output.status.success() {
        bail!("{} failed ({})", describe(&cmd), output.status);
    }
    find_example_executable(&String::from_utf8_lossy(&output.stdout), "layout_bench")
        .context("cargo built no layout_bench executable")
}

/// The paths one run uses: everything under a directory of its own.
struct RunDirs {
    dir: PathBuf,
    dd_file: PathBuf,
    layout: PathBuf,
}

impl RunDirs {
    /// Where the layout stores the blob `digest` (`sha256:HEX`).
    fn blob(&self, digest: &str) -> PathBuf {
        blob_path(&self.layout, digest)
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Layout.tools())?;
    let exe = build_layout_bench(root)?;
    let Workspace { bench_dir, work } = Workspace::new(root, "layout", None)?;
    let size_bytes = args.size_mib << 20;

    let source = work.join("source.bin");
    println!(
        "==> source: {} MiB of random data at {}",
        args.size_mib,
        source.display()
    );
    urandom_file(&source, size_bytes)?;
    let digest = sha256_of(&source)?;
    read_through(&source)?;
    println!("    {digest}");
    sync_and_pause(args.pause_secs)?;

    let plan = Runs::new(args);
    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    for run in plan.iter() {
        let dir = work.join(format!("run-{}", run.seq + 1));
        let dirs = RunDirs {
            dd_file: dir.join("dd").join("file"),
            layout: dir.join("layout"),
            dir,
        };
        if let Some(parent) = dirs.dd_file.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dirs.dir, |available| {
            ballast_bytes(size_bytes, available)
        })?;
        let mut samples = Vec::new();
        for tool in run_order(run.index) {
            let sample = measure(tool, &exe, &source, &digest, size_bytes, &dirs)?;
            print_step(tool.label(), sample.seconds, None);
            samples.push(sample);
            if tool == Tool::Push {
                read_through(&dirs.blob(&digest))?;
            }
        }
        if run.counted {
            runs.push(samples);
            ballasts.push(ballast);
        }
        remove_dir(&dirs.dir)?;
        if !run.last {
            sync_and_pause(args.pause_secs)?;
        }
    }
    remove_dir(&work)?;

    let report = Report {
        size_bytes,
        pause_secs: args.pause_secs,
        ballast_bytes: ballasts,
        warm_up: plan.warm_up,
        digest,
        runs,
    };
    write_results(&bench_dir, "layout", &report.to_json(), &report.table())
}

/// Times one tool of a run and checks what it did.
fn measure(
    tool: Tool,
    exe: &Path,
    source: &Path,
    digest: &str,
    size_bytes: u64,
    dirs: &RunDirs,
) -> Result<Sample> {
    let blob = dirs.blob(digest);
    let mut cmd = match tool {
        Tool::Dd => dd(source, &dirs.dd_file),
        Tool::OpensslSource => openssl_dgst(source),
        Tool::OpensslBlob => openssl_dgst(&blob),
        Tool::Push => {
            let mut cmd = Command::new(exe);
            cmd.arg("push").arg(source).arg(&dirs.layout).arg(digest);
            cmd
        }
        Tool::Read => {
            let mut cmd = Command::new(exe);
            cmd.arg("read").arg(&dirs.layout).arg(digest);
            cmd
        }
    };
    let (seconds, output) = timed(&mut cmd)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut peak_rss_kib = None;
    match tool {
        Tool::Dd => check_dd(&dirs.dd_file, size_bytes)?,
        Tool::OpensslSource | Tool::OpensslBlob => {
            let actual = parse_openssl_digest(&stdout)?;
            if actual != digest {
                bail!("openssl dgst says {actual}, expected {digest}");
            }
        }
        Tool::Push | Tool::Read => {
            let line = parse_bench_line(&stdout)?;
            let op = if tool == Tool::Push { "push" } else { "read" };
            if line.op != op || line.bytes != size_bytes {
                bail!("layout_bench {op} reported {line:?}, expected {size_bytes} bytes");
            }
            peak_rss_kib = Some(line.peak_rss_kib);
        }
    }
    Ok(Sample {
        tool,
        seconds,
        peak_rss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_alternates_and_reads_follow_the_push() {
        assert_eq!(run_order(0)[0], Tool::Dd);
        assert_eq!(run_order(1)[0], Tool::Push);
        assert_eq!(run_order(2), run_order(0));
        for index in 0..2 {
            let order = run_order(index);
            let at = |tool| order.iter().position(|&t| t == tool);
            for tool in Tool::ALL {
                assert!(at(tool).is_some(), "{tool:?} missing from run {index}");
            }
            assert!(at(Tool::Push) < at(Tool::Read));
            assert!(at(Tool::Push) < at(Tool::OpensslBlob));
        }
    }

    #[test]
    fn tool_outputs_are_parsed() {
        let line = parse_bench_line(
            "{\"op\":\"push\",\"seconds\":1.5,\"bytes\":1024,\"peak_rss_kib\":9000}\n",
        )
        .unwrap();
        assert_eq!(
            line,
            BenchLine {
                op: "push".to_owned(),
                seconds: 1.5,
                bytes: 1024,
                peak_rss_kib: 9000,
            }
        );
        assert!(parse_bench_line("").is_err());
        assert!(parse_bench_line("{\"op\":\"push\"}").is_err());
    }

    #[test]
    fn example_executable_is_found_in_cargo_messages() {
        let messages = concat!(
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"oci_layout\",\"kind\":[\"lib\"]},\"executable\":null}\n",
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"layout_bench\",\"kind\":[\"example\"]},",
            "\"executable\":\"/t/release/examples/layout_bench\"}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n",
        );
        assert_eq!(
            find_example_executable(messages, "layout_bench"),
            Some(PathBuf::from("/t/release/examples/layout_bench"))
        );
        assert_eq!(find_example_executable(messages, "other"), None);
    }
}
