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

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::BenchArgs;
use super::data::{blob_path, urandom_file};
use super::machine::{
    Workspace, ballast_bytes, check_dd, dd, openssl_dgst, parse_openssl_digest, read_through,
    remove_dir, run_ballast, sha256_of, sync_and_pause,
};
use super::measure::{
    Target, format_mib, format_ratio, in_each_run, median_or_nan, rate_mb_s, targets_json, timed,
    verdict_table, write_results,
};
use crate::{cargo, describe};

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

fn ratio_target(name: &'static str, ratio: f64) -> Target {
    Target {
        name,
        measured: format_ratio(ratio),
        limit: format_ratio(RATIO_LIMIT),
        pass: ratio <= RATIO_LIMIT,
        value: ratio,
        limit_value: RATIO_LIMIT,
    }
}

fn rss_target(name: &'static str, kib: u64) -> Target {
    Target {
        name,
        measured: format_mib(kib),
        limit: format_mib(RSS_LIMIT_KIB),
        pass: kib < RSS_LIMIT_KIB,
        value: kib as f64,
        limit_value: RSS_LIMIT_KIB as f64,
    }
}

/// Everything measured in one invocation, and what follows from it.
#[derive(Debug)]
struct Report {
    size_bytes: u64,
    pause_secs: u64,
    /// The ballast written before each run, in bytes.
    ballast_bytes: Vec<u64>,
    digest: String,
    /// The samples of each run, in the order they were taken.
    runs: Vec<Vec<Sample>>,
}

impl Report {
    fn seconds(&self, tool: Tool) -> Vec<f64> {
        in_each_run(&self.runs, |s| s.tool == tool)
            .iter()
            .map(|s| s.seconds)
            .collect()
    }

    fn median(&self, tool: Tool) -> f64 {
        median_or_nan(&self.seconds(tool))
    }

    fn peak_rss_kib(&self, tool: Tool) -> u64 {
        self.runs
            .iter()
            .flatten()
            .filter(|s| s.tool == tool)
            .filter_map(|s| s.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// The machine's limit for a push: the slower of writing and hashing.
    fn push_bound(&self) -> f64 {
        self.median(Tool::Dd).max(self.median(Tool::OpensslSource))
    }

    fn push_ratio(&self) -> f64 {
        self.median(Tool::Push) / self.push_bound()
    }

    fn read_ratio(&self) -> f64 {
        self.median(Tool::Read) / self.median(Tool::OpensslBlob)
    }

    /// Per-run ratios, to judge the spread.
    fn run_ratios(&self) -> (Vec<f64>, Vec<f64>) {
        let (dd, src, push) = (
            self.seconds(Tool::Dd),
            self.seconds(Tool::OpensslSource),
            self.seconds(Tool::Push),
        );
        let (blob, read) = (self.seconds(Tool::OpensslBlob), self.seconds(Tool::Read));
        let push_ratios = push
            .iter()
            .zip(dd.iter().zip(&src))
            .map(|(p, (d, s))| p / d.max(*s))
            .collect();
        let read_ratios = read.iter().zip(&blob).map(|(r, b)| r / b).collect();
        (push_ratios, read_ratios)
    }

    fn targets(&self) -> Vec<Target> {
        vec![
            ratio_target("push / max(dd, openssl source)", self.push_ratio()),
            ratio_target("read / openssl stored blob", self.read_ratio()),
            rss_target("push peak RSS (max of runs)", self.peak_rss_kib(Tool::Push)),
            rss_target("read peak RSS (max of runs)", self.peak_rss_kib(Tool::Read)),
        ]
    }

    fn table(&self) -> String {
        let runs = self.runs.len();
        let mut out = String::new();
        let ballast = match (
            self.ballast_bytes.iter().min(),
            self.ballast_bytes.iter().max(),
        ) {
            (Some(0), Some(0)) | (None, _) | (_, None) => "no ballast".to_owned(),
            (Some(min), Some(max)) if min == max => format!("{} MiB ballast", min >> 20),
            (Some(min), Some(max)) => format!("{}-{} MiB ballast", min >> 20, max >> 20),
        };
        let _ = writeln!(
            out,
            "layout bench: {} MiB of random data, {runs} run(s), each writing into fresh \
             directories after\n{ballast}; tool order alternates between runs (odd runs: dd \
             first; even runs: push first);\n{} s pause after each run's deletion\n",
            self.size_bytes >> 20,
            self.pause_secs,
        );
        let _ = write!(out, "{:<36}", "seconds");
        for i in 1..=runs {
            let _ = write!(out, "{:>9}", format!("run {i}"));
        }
        let _ = writeln!(out, "{:>9}{:>11}", "median", "MB/s");
        for tool in Tool::ALL {
            let _ = write!(out, "{:<36}", tool.label());
            for seconds in self.seconds(tool) {
                let _ = write!(out, "{seconds:>9.3}");
            }
            let median = self.median(tool);
            let _ = writeln!(
                out,
                "{median:>9.3}{:>11.0}",
                rate_mb_s(self.size_bytes, median)
            );
        }
        let (push_ratios, read_ratios) = self.run_ratios();
        for (name, ratios) in [("push ratio", push_ratios), ("read ratio", read_ratios)] {
            let _ = write!(out, "{name:<36}");
            for ratio in ratios {
                let _ = write!(out, "{:>9}", format_ratio(ratio));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        verdict_table(&mut out, 36, 11, &self.targets());
        out
    }

    fn to_json(&self) -> Value {
        let samples: serde_json::Map<String, Value> = Tool::ALL
            .iter()
            .map(|&tool| (tool.key().to_owned(), json!(self.seconds(tool))))
            .collect();
        let medians: serde_json::Map<String, Value> = Tool::ALL
            .iter()
            .map(|&tool| (tool.key().to_owned(), json!(self.median(tool))))
            .collect();
        let rss = |tool| -> Vec<Option<u64>> {
            self.runs
                .iter()
                .flatten()
                .filter(|s| s.tool == tool)
                .map(|s| s.peak_rss_kib)
                .collect()
        };
        let (push_ratios, read_ratios) = self.run_ratios();
        json!({
            "scenario": "layout",
            "size_bytes": self.size_bytes,
            "runs": self.runs.len(),
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "source_digest": self.digest,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.tool.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": samples,
            "median_seconds": medians,
            "push_peak_rss_kib": rss(Tool::Push),
            "read_peak_rss_kib": rss(Tool::Read),
            "push_ratio": self.push_ratio(),
            "read_ratio": self.read_ratio(),
            "push_ratio_per_run": push_ratios,
            "read_ratio_per_run": read_ratios,
            "targets": targets_json(&self.targets(), "limit"),
        })
    }
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

    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    for index in 0..args.runs {
        let dir = work.join(format!("run-{}", index + 1));
        let dirs = RunDirs {
            dd_file: dir.join("dd").join("file"),
            layout: dir.join("layout"),
            dir,
        };
        if let Some(parent) = dirs.dd_file.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        println!("==> run {} of {}", index + 1, args.runs);
        ballasts.push(run_ballast(args.ballast, &dirs.dir, |available| {
            ballast_bytes(size_bytes, available)
        })?);
        let mut samples = Vec::new();
        for tool in run_order(index) {
            let sample = measure(tool, &exe, &source, &digest, size_bytes, &dirs)?;
            println!("    {:<36}{:>8.3} s", tool.label(), sample.seconds);
            samples.push(sample);
            if tool == Tool::Push {
                read_through(&dirs.blob(&digest))?;
            }
        }
        runs.push(samples);
        remove_dir(&dirs.dir)?;
        if index + 1 < args.runs {
            sync_and_pause(args.pause_secs)?;
        }
    }
    remove_dir(&work)?;

    let report = Report {
        size_bytes,
        pause_secs: args.pause_secs,
        ballast_bytes: ballasts,
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
    fn targets_pass_within_their_limits() {
        assert!(ratio_target("x", 1.2).pass);
        assert!(!ratio_target("x", 1.21).pass);
        assert!(rss_target("x", RSS_LIMIT_KIB - 1).pass);
        assert!(!rss_target("x", RSS_LIMIT_KIB).pass);
    }

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

    fn sample(tool: Tool, seconds: f64) -> Sample {
        Sample {
            tool,
            seconds,
            peak_rss_kib: matches!(tool, Tool::Push | Tool::Read).then_some(8192),
        }
    }

    fn report() -> Report {
        let run = |dd, src, push, blob, read| {
            vec![
                sample(Tool::Dd, dd),
                sample(Tool::OpensslSource, src),
                sample(Tool::Push, push),
                sample(Tool::OpensslBlob, blob),
                sample(Tool::Read, read),
            ]
        };
        Report {
            size_bytes: 1 << 30,
            pause_secs: 0,
            ballast_bytes: vec![4 << 30; 3],
            digest: "sha256:00".to_owned(),
            runs: vec![
                run(3.0, 0.6, 3.3, 0.6, 0.9),
                run(2.0, 0.6, 2.2, 0.6, 0.6),
                run(4.0, 0.6, 4.0, 0.6, 0.63),
            ],
        }
    }

    #[test]
    fn report_compares_medians_side_by_side() {
        let report = report();
        assert!((report.push_bound() - 3.0).abs() < 1e-9);
        assert!((report.push_ratio() - 1.1).abs() < 1e-9);
        assert!((report.read_ratio() - 1.05).abs() < 1e-9);
        let targets = report.targets();
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        let table = report.table();
        assert!(table.contains("push / max(dd, openssl source)"), "{table}");
        assert!(table.contains("1.10×"), "{table}");
        assert!(table.contains("8.0 MiB"), "{table}");
        assert!(table.contains("4096 MiB ballast"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        let json = report.to_json();
        assert_eq!(json["push_peak_rss_kib"], json!([8192, 8192, 8192]));
        assert_eq!(json["median_seconds"]["dd"], json!(3.0));
        assert_eq!(json["targets"][0]["pass"], json!(true));
    }

    #[test]
    fn a_miss_is_reported_as_fail() {
        let mut report = report();
        for run in &mut report.runs {
            for s in run.iter_mut().filter(|s| s.tool == Tool::Push) {
                s.seconds *= 2.0;
            }
        }
        assert!(report.table().contains("FAIL"));
        assert_eq!(report.to_json()["targets"][0]["pass"], json!(false));
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
