//! `cargo xtask bench`: speed and memory targets, measured against the machine's own limits in
//! the same run and reported as ratios.
//!
//! Scenario `layout` (issue 3): pushing a blob into an image layout takes at most 1.2× the
//! slower of writing the same bytes into a new file on the same filesystem (`dd` with
//! `conv=fdatasync`) and hashing them (`openssl dgst -sha256`); reading it back with
//! verification takes at most 1.2× `openssl dgst -sha256` of the stored blob; the peak
//! resident set of both stays under 32 MiB.
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
//! * each run starts by writing an untimed ballast file (zeros, [`BALLAST_FACTOR`] times the
//!   size, kept until the run ends): memory freed recently, by the previous run or anyone else,
//!   is still backed by the host and much faster to write into than memory it has taken back,
//!   so without the ballast the first tool of a run writes 1.5 to 3 times faster than the next
//!   (measured: 1.1 to 2.3 s against 3.2 to 4.2 s for the same `dd` after a 20 s pause);
//!   the ballast uses that memory up, so every timed tool writes into fresh memory alike;
//! * the stored blob is read once, untimed, before it is read back, so that both readers find
//!   it in the page cache whatever the layout's write path leaves there;
//! * every tool is timed as a child process, with [`Instant`] around it; results are medians.
//!
//! Misses are printed as `FAIL` but do not fail the command (the machine is shared and noisy);
//! only a failing command does.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{cargo, describe, run_status};

mod archive;
mod bucket;
mod build;
mod client;
mod unpack;

/// The scenarios `cargo xtask bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Push a blob into a new layout and read it back (issue 3).
    Layout,
    /// `hoist serve` against `docker-registry`, side by side (issue 4).
    Server,
    /// `hoist copy` against `skopeo copy`, pull and push (issue "registry client speed").
    Client,
    /// `hoist build` against `umoci insert` (issue "hoist build speed").
    Build,
    /// `hoist unpack` against `umoci unpack` (issue "hoist unpack speed").
    Unpack,
    /// `hoist copy` to and from docker-archives and into a Docker daemon against `skopeo copy`
    /// and `docker load`.
    Archive,
    /// `hoist serve --storage s3://` against `docker-registry` on the `s3` driver, one moto.
    Bucket,
}

/// What `cargo xtask bench` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchArgs {
    pub(crate) scenario: Scenario,
    pub(crate) size_mib: u64,
    pub(crate) runs: usize,
    /// Pause after each run's deletion (and after creating the source), in seconds.
    pub(crate) pause_secs: u64,
    /// Whether each run starts with the ballast write.
    pub(crate) ballast: bool,
    /// `--quick`: a smoke test (shorter load tests in the server scenario).
    pub(crate) quick: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            scenario: Scenario::Layout,
            size_mib: 1024,
            runs: 3,
            pause_secs: 20,
            ballast: true,
            quick: false,
        }
    }
}

/// The largest blob `--size-mib` accepts (1 TiB).
const MAX_SIZE_MIB: u64 = 1 << 20;

/// Parses the arguments after `bench`: `[layout] [--size-mib N] [--runs R] [--pause S]
/// [--quick]`, where `--quick` means `--pause 0` and no ballast (a smoke test, not a measure).
pub(crate) fn parse_args(args: &[OsString]) -> Result<BenchArgs, String> {
    let mut parsed = BenchArgs::default();
    let mut size_given = false;
    let mut runs_given = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(arg) = arg.to_str() else {
            return Err(format!("unexpected argument {arg:?} to `bench`"));
        };
        let mut value = |name: &str| -> Result<u64, String> {
            let value = rest
                .next()
                .ok_or_else(|| format!("`{name}` needs a value"))?;
            value
                .to_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("`{name}` needs a whole number, not {value:?}"))
        };
        match arg {
            "layout" => parsed.scenario = Scenario::Layout,
            "server" => parsed.scenario = Scenario::Server,
            "client" => parsed.scenario = Scenario::Client,
            "build" => parsed.scenario = Scenario::Build,
            "unpack" => parsed.scenario = Scenario::Unpack,
            "archive" => parsed.scenario = Scenario::Archive,
            "bucket" => parsed.scenario = Scenario::Bucket,
            "--size-mib" => {
                parsed.size_mib = value(arg)?;
                size_given = true;
            }
            "--runs" => {
                parsed.runs =
                    usize::try_from(value(arg)?).map_err(|_| "`--runs` is too large".to_owned())?;
                runs_given = true;
            }
            "--pause" => parsed.pause_secs = value(arg)?,
            "--quick" => {
                parsed.pause_secs = 0;
                parsed.ballast = false;
                parsed.quick = true;
            }
            other => return Err(format!("unexpected argument {other:?} to `bench`")),
        }
    }
    if parsed.scenario == Scenario::Server && !size_given {
        parsed.size_mib = SERVER_SIZE_MIB;
    }
    if parsed.scenario == Scenario::Client {
        client::apply_defaults(&mut parsed, size_given, runs_given);
    }
    if parsed.scenario == Scenario::Build {
        build::apply_defaults(&mut parsed, size_given, runs_given);
    }
    if parsed.scenario == Scenario::Unpack {
        unpack::apply_defaults(&mut parsed, size_given, runs_given);
    }
    if parsed.scenario == Scenario::Archive {
        archive::apply_defaults(&mut parsed, size_given, runs_given);
    }
    if parsed.scenario == Scenario::Bucket {
        bucket::apply_defaults(&mut parsed, size_given, runs_given);
    }
    if !(1..=MAX_SIZE_MIB).contains(&parsed.size_mib) {
        return Err(format!("`--size-mib` must be from 1 to {MAX_SIZE_MIB}"));
    }
    if parsed.runs == 0 {
        return Err("`--runs` must be at least 1".to_owned());
    }
    Ok(parsed)
}

pub(crate) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    match args.scenario {
        Scenario::Layout => layout(root, args),
        Scenario::Server => server(root, args),
        Scenario::Client => client::run(root, args),
        Scenario::Build => build::run(root, args),
        Scenario::Unpack => unpack::run(root, args),
        Scenario::Archive => archive::run(root, args),
        Scenario::Bucket => bucket::run(root, args),
    }
}

/// The size of the ballast written before each run, in multiples of the blob size: more than
/// a run frees (the dd copy, the blob and the previous ballast) minus what the host has taken
/// back after the pause.
const BALLAST_FACTOR: u64 = 4;
/// Memory the ballast leaves to the rest of the machine, beyond what the run itself needs.
const BALLAST_SPARE: u64 = 4 << 30;

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

/// The digest in the output of `openssl dgst -sha256 -r` (`HEX *FILE`).
fn parse_openssl_digest(stdout: &str) -> Result<String> {
    let hex = stdout.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("unexpected output of openssl dgst: {stdout:?}");
    }
    Ok(format!("sha256:{hex}"))
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

/// How much ballast to write for blobs of `size` bytes when the machine has `available` bytes
/// of memory available: [`BALLAST_FACTOR`] times the size, less if that would leave under
/// [`BALLAST_SPARE`] once the run's own files (source, dd copy, blob) are in the page cache.
fn ballast_bytes(size: u64, available: u64) -> u64 {
    let room = available.saturating_sub(3 * size + BALLAST_SPARE);
    (BALLAST_FACTOR * size).min(room)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `PASS` when `value` is within `limit`, else `FAIL`.
fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn format_ratio(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Decimal megabytes per second, as `dd` and the peers' README count them.
fn rate_mb_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

/// A target's outcome.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    name: &'static str,
    measured: String,
    limit: String,
    pass: bool,
    value: f64,
    limit_value: f64,
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
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|s| s.tool == tool).map(|s| s.seconds))
            .collect()
    }

    fn median(&self, tool: Tool) -> f64 {
        median(&self.seconds(tool)).unwrap_or(f64::NAN)
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
        let _ = writeln!(
            out,
            "\n{:<36}{:>11}{:>11}   verdict",
            "target", "measured", "limit"
        );
        for target in self.targets() {
            let _ = writeln!(
                out,
                "{:<36}{:>11}{:>11}   {}",
                target.name,
                target.measured,
                target.limit,
                verdict(target.pass)
            );
        }
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
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "limit": t.limit_value,
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Where cargo puts its output: `$CARGO_TARGET_DIR` or `target/` under the workspace root.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
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

/// Runs `cmd` to completion with its output captured, timing it from spawn to exit; fails
/// unless it exits successfully.
fn timed(cmd: &mut Command) -> Result<(f64, Output)> {
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok((seconds, output))
}

fn openssl_dgst(file: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256", "-r"]).arg(file);
    cmd
}

/// Reads `file` to the end and throws the bytes away (so that it is in the page cache).
fn read_through(file: &Path) -> Result<()> {
    let mut f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    while f
        .read(&mut buffer)
        .with_context(|| format!("cannot read {}", file.display()))?
        > 0
    {}
    Ok(())
}

fn sync_and_pause(seconds: u64) -> Result<()> {
    run_status(&mut Command::new("sync"))?;
    if seconds > 0 {
        println!("    sync, pause {seconds} s");
        std::thread::sleep(Duration::from_secs(seconds));
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// The paths one run uses: everything under a directory of its own.
struct RunDirs {
    dir: PathBuf,
    ballast: PathBuf,
    dd_file: PathBuf,
    layout: PathBuf,
}

impl RunDirs {
    /// Where the layout stores the blob `digest` (`sha256:HEX`).
    fn blob(&self, digest: &str) -> PathBuf {
        self.layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }
}

/// Writes `bytes` zeros through the page cache into `file`, then syncs.
fn write_ballast(file: &Path, bytes: u64) -> Result<()> {
    let mut head = Command::new("head");
    head.arg("-c")
        .arg(bytes.to_string())
        .arg("/dev/zero")
        .stdout(File::create(file).with_context(|| format!("cannot create {}", file.display()))?);
    run_status(&mut head)?;
    run_status(&mut Command::new("sync"))
}

fn layout(root: &Path, args: &BenchArgs) -> Result<()> {
    let exe = build_layout_bench(root)?;
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("layout-work");
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let size_bytes = args.size_mib << 20;

    let source = work.join("source.bin");
    println!(
        "==> source: {} MiB of random data at {}",
        args.size_mib,
        source.display()
    );
    let mut head = Command::new("head");
    head.arg("-c")
        .arg(size_bytes.to_string())
        .arg("/dev/urandom")
        .stdout(
            File::create(&source).with_context(|| format!("cannot create {}", source.display()))?,
        );
    run_status(&mut head)?;
    let (_, output) = timed(&mut openssl_dgst(&source))?;
    let digest = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
    read_through(&source)?;
    println!("    {digest}");
    sync_and_pause(args.pause_secs)?;

    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    for index in 0..args.runs {
        let dir = work.join(format!("run-{}", index + 1));
        let dirs = RunDirs {
            ballast: dir.join("ballast"),
            dd_file: dir.join("dd").join("file"),
            layout: dir.join("layout"),
            dir,
        };
        if let Some(parent) = dirs.dd_file.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        println!("==> run {} of {}", index + 1, args.runs);
        let ballast = if args.ballast {
            let meminfo =
                fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            let available =
                parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
            ballast_bytes(size_bytes, available)
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dirs.ballast, ballast)?;
        }
        ballasts.push(ballast);
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
    let json_path = bench_dir.join("layout.json");
    let mut text = serde_json::to_string_pretty(&report.to_json())?;
    text.push('\n');
    fs::write(&json_path, text).with_context(|| format!("cannot write {}", json_path.display()))?;
    println!();
    print!("{}", report.table());
    println!("\nresults: {}", json_path.display());
    Ok(())
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
        Tool::Dd => {
            let mut cmd = Command::new("dd");
            cmd.arg(format!("if={}", source.display()))
                .arg(format!("of={}", dirs.dd_file.display()))
                .args(["bs=1M", "conv=fdatasync"]);
            cmd
        }
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
        Tool::Dd => {
            let written = fs::metadata(&dirs.dd_file)
                .with_context(|| format!("dd wrote no {}", dirs.dd_file.display()))?
                .len();
            if written != size_bytes {
                bail!("dd wrote {written} bytes, expected {size_bytes}");
            }
        }
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

// Scenario `server` (issue 4): with filesystem storage for both, `hoist serve` against
// `docker-registry` side by side in one run: blob download and upload throughput at least
// [`DOWNLOAD_LIMIT`] and [`UPLOAD_LIMIT`] times the registry's, manifest HEAD and GET requests
// per second with [`WRK_CONNECTIONS`] concurrent connections at least [`RPS_LIMIT`] times the
// registry's; the upload is also compared with writing the same bytes into a new file
// (`dd conv=fdatasync`), the machine's bound, and the memory of an idle connection reported.
// Both servers run as they start by default: hoist with its connection timeouts and limits on
// (issue 14) and serving blobs as stored, like the registry; a second hoist with
// `--verify-reads` over the same root, which hashes every blob byte it serves, is measured for
// downloads only and reported without a verdict.
//
// Issue 14 also asks for manifest requests at [`MANY_CONNECTIONS`] concurrent connections,
// reported (no target) as requests per second and p99 latency beside the registry's; p99 is
// reported for the [`WRK_CONNECTIONS`] runs too. GET: `wrk --latency` (its `99%` line, over
// every request of the test). HEAD: xtask's own loader (wrk 4.1 hangs on HEAD), which times
// every request from its write to the end of the response head and takes the nearest-rank
// 99th percentile of all of them. The loader keeps one blocking thread per connection, also at
// [`MANY_CONNECTIONS`]: each connection then has exactly one request in flight and is read as
// soon as its answer arrives, so a latency is the server's plus a thread wake-up, never time
// spent waiting behind another connection of the same client thread (as it would be with a few
// threads each driving several connections); 256 small-stack threads cost the client little,
// and the same for both servers. All connections are open before the clock starts.
//
// How it measures: both servers run on free loopback ports with fresh data directories; every
// run uploads a new random blob (so that no server finds it already stored) with `curl`
// (`POST`, then one monolithic `PUT -T`), downloads it once untimed and then
// [`DOWNLOADS_PER_RUN`] times timed by curl's own clock (median), writes it
// with `dd` into a new file, and load-tests the manifest with `wrk` and the HEAD loader; the
// order of the servers (and of `dd` among the writes) alternates between runs; results are
// medians (of the runs' requests per second, and of the runs' p99 latencies).

/// The default blob size of the server scenario.
const SERVER_SIZE_MIB: u64 = 256;
/// Timed downloads of the blob from each server in a run (their median is the run's figure).
const DOWNLOADS_PER_RUN: usize = 3;
/// hoist's throughput over the registry's, at least.
const DOWNLOAD_LIMIT: f64 = 1.5;
const UPLOAD_LIMIT: f64 = 1.5;
/// hoist's manifest requests per second over the registry's, at least.
const RPS_LIMIT: f64 = 2.0;
/// Concurrent connections of the manifest load tests (`wrk` and the HEAD loader).
const WRK_CONNECTIONS: u32 = 32;
/// Concurrent connections of the second, heavier manifest load tests (issue 14).
const MANY_CONNECTIONS: u32 = 256;
/// The stack of a HEAD loader thread: it only holds a few buffers.
const LOADER_STACK_BYTES: usize = 64 * 1024;
/// How many idle connections the memory measure opens to each server.
const IDLE_CONNECTIONS: usize = 200;
/// The repository and tag the scenario pushes to.
const REPO: &str = "bench/server";
const TAG: &str = "latest";
/// `{}`, the config blob of the manifest.
const EMPTY_CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The servers compared: hoist (as it starts by default, serving blobs as stored like the
/// registry), the registry, and, for downloads only, hoist with `--verify-reads` over the same
/// root, which hashes every blob byte it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Hoist,
    Registry,
    HoistVerified,
}

impl Peer {
    fn key(self) -> &'static str {
        match self {
            Self::Hoist => "hoist",
            Self::Registry => "registry",
            Self::HoistVerified => "hoist_verify_reads",
        }
    }
}

/// What a run measures: times in seconds for [`Probe::TIMED`], requests per second (and a p99
/// latency) for [`Probe::RATES`]. `Head` and `Get` are at [`WRK_CONNECTIONS`], `HeadMany` and
/// `GetMany` at [`MANY_CONNECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Dd,
    Upload(Peer),
    Download(Peer),
    Head(Peer),
    Get(Peer),
    HeadMany(Peer),
    GetMany(Peer),
}

impl Probe {
    const TIMED: [Self; 6] = [
        Self::Dd,
        Self::Upload(Peer::Hoist),
        Self::Upload(Peer::Registry),
        Self::Download(Peer::Hoist),
        Self::Download(Peer::Registry),
        Self::Download(Peer::HoistVerified),
    ];
    const RATES: [Self; 8] = [
        Self::Head(Peer::Hoist),
        Self::Head(Peer::Registry),
        Self::Get(Peer::Hoist),
        Self::Get(Peer::Registry),
        Self::HeadMany(Peer::Hoist),
        Self::HeadMany(Peer::Registry),
        Self::GetMany(Peer::Hoist),
        Self::GetMany(Peer::Registry),
    ];

    fn key(self) -> String {
        match self {
            Self::Dd => "dd".to_owned(),
            Self::Upload(p) => format!("{}_upload", p.key()),
            Self::Download(p) => format!("{}_download", p.key()),
            Self::Head(p) => format!("{}_manifest_head", p.key()),
            Self::Get(p) => format!("{}_manifest_get", p.key()),
            Self::HeadMany(p) => format!("{}_manifest_head_c{MANY_CONNECTIONS}", p.key()),
            Self::GetMany(p) => format!("{}_manifest_get_c{MANY_CONNECTIONS}", p.key()),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Dd => "dd conv=fdatasync, new file".to_owned(),
            Self::Upload(p) => format!("{} upload (POST + PUT)", p.key()),
            Self::Download(p) => format!("{} download (GET)", p.key()),
            Self::Head(p) => format!("{} HEAD manifest, {WRK_CONNECTIONS} conns", p.key()),
            Self::Get(p) => format!("{} GET manifest, {WRK_CONNECTIONS} conns", p.key()),
            Self::HeadMany(p) => format!("{} HEAD manifest, {MANY_CONNECTIONS} conns", p.key()),
            Self::GetMany(p) => format!("{} GET manifest, {MANY_CONNECTIONS} conns", p.key()),
        }
    }

    /// The concurrent connections of a load test, `None` for the timed probes.
    fn connections(self) -> Option<u32> {
        match self {
            Self::Head(_) | Self::Get(_) => Some(WRK_CONNECTIONS),
            Self::HeadMany(_) | Self::GetMany(_) => Some(MANY_CONNECTIONS),
            Self::Dd | Self::Upload(_) | Self::Download(_) => None,
        }
    }
}

/// The order of run `index` (from 0): hoist first in even runs, the registry first in odd
/// ones; `dd` before the uploads in even runs, after them in odd ones.
fn server_order(index: usize) -> Vec<Probe> {
    use Probe::{Dd, Download, Get, GetMany, Head, HeadMany, Upload};
    let even = index.is_multiple_of(2);
    let (a, b) = if even {
        (Peer::Hoist, Peer::Registry)
    } else {
        (Peer::Registry, Peer::Hoist)
    };
    let mut order = if even {
        vec![Dd, Upload(a), Upload(b)]
    } else {
        vec![Upload(a), Upload(b), Dd]
    };
    // The registry's download between hoist's two kinds, alternately first and last.
    let (first, last) = if even {
        (Peer::Hoist, Peer::HoistVerified)
    } else {
        (Peer::HoistVerified, Peer::Hoist)
    };
    order.extend([Download(first), Download(Peer::Registry), Download(last)]);
    order.extend([Head(a), Head(b), Get(a), Get(b)]);
    order.extend([HeadMany(a), HeadMany(b), GetMany(a), GetMany(b)]);
    order
}

/// The `Location` header of an HTTP response head (the last one, after redirects or `100`s).
fn parse_location(headers: &str) -> Option<String> {
    headers
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .next_back()
}

/// The URL to `PUT` a monolithic upload to: `location` made absolute against `base`
/// (`http://host:port`), with the digest query parameter appended.
fn upload_url(base: &str, location: &str, digest: &str) -> String {
    let absolute = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}/{}", location.trim_start_matches('/'))
    };
    let sep = if absolute.contains('?') { '&' } else { '?' };
    format!("{absolute}{sep}digest={digest}")
}

/// What `wrk` reports that the scenario uses.
#[derive(Debug, Clone, PartialEq)]
struct WrkSummary {
    requests_per_sec: f64,
    /// Responses with a status outside 2xx and 3xx.
    non_2xx: u64,
    /// The `99%` line of `--latency`'s distribution, in milliseconds.
    p99_ms: Option<f64>,
}

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.00s`, `1.50m`, `1.00h`), in
/// milliseconds.
fn parse_wrk_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => return Some(number / 1000.0),
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(number * scale)
}

fn parse_wrk(stdout: &str) -> Result<WrkSummary> {
    let rps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no `Requests/sec:` in the output of wrk:\n{stdout}"))?;
    let non_2xx = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|v| v.trim().parse::<u64>())
        .transpose()
        .context("unreadable `Non-2xx or 3xx responses:` in the output of wrk")?
        .unwrap_or(0);
    let p99_ms = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_wrk_duration_ms(v).context("unreadable `99%` latency in the output of wrk"))
        .transpose()?;
    Ok(WrkSummary {
        requests_per_sec: rps,
        non_2xx,
        p99_ms,
    })
}

/// `VmRSS` of a `/proc/PID/status`, in KiB.
fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// A free TCP port on loopback (free when this returns; nothing else should take it meanwhile).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind loopback")?;
    Ok(listener.local_addr()?.port())
}

/// A running server of the scenario.
struct Endpoint {
    peer: Peer,
    /// `http://127.0.0.1:PORT`.
    base: String,
    pid: u32,
}

/// The servers the scenario started; stopped when dropped, whatever happened.
struct Servers {
    hoist: Vec<std::process::Child>,
    registry_dir: Option<PathBuf>,
    stop_script: PathBuf,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for mut child in self.hoist.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.registry_dir.take() {
            stop_registry(&self.stop_script, &dir, true);
        }
    }
}

/// Starts `docker-registry` with `tests/peers/start-registry.sh` (filesystem storage under
/// `dir/data`, listening on `addr`); returns its PID.
fn start_registry(peers_dir: &Path, dir: &Path, addr: &str) -> Result<u32> {
    let mut start = Command::new("bash");
    start
        .arg(peers_dir.join("start-registry.sh"))
        .env("REGISTRY_DIR", dir)
        .env("REGISTRY_ADDR", addr)
        .env_remove("REGISTRY_RESET");
    let (_, output) = timed(&mut start)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("start-registry.sh printed no PID: {stdout:?}"))
}

/// Stops the registry of `dir` with `stop_script` (`stop-registry.sh`), deleting its data if
/// `wipe`; errors are ignored (this runs on the way out).
fn stop_registry(stop_script: &Path, dir: &Path, wipe: bool) {
    let _ = Command::new("bash")
        .arg(stop_script)
        .env("REGISTRY_DIR", dir)
        .env("REGISTRY_WIPE", if wipe { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn curl() -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f"]);
    cmd
}

/// Polls `GET /v2/` until the server answers (10 s at most).
fn wait_until_answering(base: &str, hoist: &mut std::process::Child) -> Result<()> {
    for _ in 0..100 {
        let ok = curl()
            .args(["-o", "/dev/null", "--max-time", "2"])
            .arg(format!("{base}/v2/"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if let Some(status) = hoist.try_wait()? {
            bail!("hoist serve exited ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("hoist serve did not answer on {base} within 10 s")
}

/// Uploads `body` (a file, or `data` when `file` is `None`) as the blob `digest` to [`REPO`]:
/// `POST`, then one monolithic `PUT`. Returns the seconds both took.
fn upload_blob(base: &str, file: Option<&Path>, data: &str, digest: &str) -> Result<f64> {
    upload_blob_to(base, REPO, file, data, digest)
}

/// [`upload_blob`] to the repository `repo`.
fn upload_blob_to(
    base: &str,
    repo: &str,
    file: Option<&Path>,
    data: &str,
    digest: &str,
) -> Result<f64> {
    let started = Instant::now();
    let mut post = curl();
    post.args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{base}/v2/{repo}/blobs/uploads/"));
    let (_, output) = timed(&mut post)?;
    let headers = String::from_utf8_lossy(&output.stdout);
    let location = parse_location(&headers)
        .with_context(|| format!("no Location in the answer to the POST:\n{headers}"))?;
    let mut put = curl();
    put.args([
        "-X",
        "PUT",
        "-H",
        "Expect:",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .args(["-H", "Content-Type: application/octet-stream"]);
    match file {
        Some(file) => put.arg("-T").arg(file),
        None => put.args(["--data-binary", data]),
    };
    put.arg(upload_url(base, &location, digest));
    let (_, output) = timed(&mut put)?;
    let seconds = started.elapsed().as_secs_f64();
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of {digest} to {base} answered {code}, expected 201");
    }
    Ok(seconds)
}

/// Downloads the blob `digest` from [`REPO`] and checks its size; returns the seconds it took.
fn download_blob(base: &str, digest: &str, size_bytes: u64) -> Result<f64> {
    download_blob_from(base, REPO, digest, size_bytes)
}

/// [`download_blob`] from the repository `repo`.
fn download_blob_from(base: &str, repo: &str, digest: &str, size_bytes: u64) -> Result<f64> {
    let mut get = curl();
    // curl's own clock, from the connection to the last byte: a transfer of a few hundred
    // MiB takes ~0.1 s here, and starting the curl process (10-20 ms) would weigh on both
    // servers' figures alike and pull their ratio towards 1.
    get.args(["-o", "/dev/null", "-w", "%{size_download} %{time_total}"])
        .arg(format!("{base}/v2/{repo}/blobs/{digest}"));
    let (_, output) = timed(&mut get)?;
    let got = String::from_utf8_lossy(&output.stdout);
    let (size, seconds) = parse_size_and_time(&got)
        .with_context(|| format!("GET of {digest} from {base}: curl wrote {got:?}"))?;
    if size != size_bytes {
        bail!("GET of {digest} from {base} gave {size} bytes, expected {size_bytes}");
    }
    Ok(seconds)
}

/// `SIZE SECONDS`, as curl's `-w "%{size_download} %{time_total}"` writes them.
fn parse_size_and_time(text: &str) -> Option<(u64, f64)> {
    let mut parts = text.split_whitespace();
    let size = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    (seconds > 0.0).then_some((size, seconds))
}

/// Pushes `{}` as config and a manifest with the blob `layer` to `REPO:TAG`.
fn push_manifest(base: &str, layer: &str, layer_size: u64) -> Result<()> {
    upload_blob(base, None, "{}", EMPTY_CONFIG_DIGEST)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": EMPTY_CONFIG_DIGEST,
            "size": 2,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer,
            "size": layer_size,
        }],
    });
    let mut put = curl();
    put.args(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Content-Type: {MANIFEST_TYPE}")])
        .args(["--data-binary", &manifest.to_string()])
        .arg(format!("{base}/v2/{REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut put)?;
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of the manifest to {base} answered {code}, expected 201");
    }
    Ok(())
}

/// What a manifest load test measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Load {
    requests_per_sec: f64,
    /// The 99th percentile of the requests' latencies, in milliseconds.
    p99_ms: f64,
}

/// Runs `wrk --latency` with `script` and `connections` connections against the manifest of
/// `base`.
fn wrk(base: &str, script: &Path, connections: u32, seconds: u64) -> Result<Load> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ])
    .arg("-s")
    .arg(script)
    .arg(format!("{base}/v2/{REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut cmd)?;
    let summary = parse_wrk(&String::from_utf8_lossy(&output.stdout))?;
    let p99_ms = match summary.p99_ms {
        Some(p99) if summary.non_2xx == 0 && summary.requests_per_sec > 0.0 => p99,
        _ => bail!("{} against {base}: {summary:?}", describe(&cmd)),
    };
    Ok(Load {
        requests_per_sec: summary.requests_per_sec,
        p99_ms,
    })
}

/// The nearest-rank `percent` percentile of `values` (sorted in place), `None` if empty.
fn percentile(values: &mut [u64], percent: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (percent / 100.0 * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// The status code of an HTTP response head in `buf`, once the head is complete
/// (`\r\n\r\n`); `None` while more is needed.
fn parse_head_status(buf: &[u8]) -> Option<u16> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// `HEAD` requests on the manifest of `base` with `connections` keep-alive connections for
/// `seconds`, one blocking thread each (see the scenario's comment for why): wrk 4.1
/// (Debian's) waits for a body after a `HEAD` response with a `Content-Length` and so cannot
/// measure `HEAD`. Every request is timed from its write to the end of the response head; the
/// clock of the whole test starts once every connection is open.
fn head_load(base: &str, connections: u32, seconds: u64) -> Result<Load> {
    use std::io::Write as _;
    use std::sync::{Arc, Barrier};
    let addr = base.trim_start_matches("http://").to_owned();
    let request = format!(
        "HEAD /v2/{REPO}/manifests/{TAG} HTTP/1.1\r\nHost: {addr}\r\nAccept: {MANIFEST_TYPE}\r\n\r\n"
    );
    let duration = Duration::from_secs(seconds);
    let ready = Arc::new(Barrier::new(connections as usize + 1));
    let mut threads = Vec::with_capacity(connections as usize);
    for _ in 0..connections {
        let (addr, request, ready) = (addr.clone(), request.clone(), Arc::clone(&ready));
        let thread = std::thread::Builder::new()
            .stack_size(LOADER_STACK_BYTES)
            .spawn(move || -> Result<Vec<u64>> {
                let conn = std::net::TcpStream::connect(&addr)
                    .with_context(|| format!("cannot connect to {addr}"));
                // Every thread reaches the barrier, connected or not, or the others would
                // wait forever.
                ready.wait();
                let mut conn = conn?;
                conn.set_nodelay(true)?;
                let deadline = Instant::now() + duration;
                // Nanoseconds of each request.
                let mut latencies = Vec::with_capacity(16 * 1024);
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    let sent = Instant::now();
                    if sent >= deadline {
                        break;
                    }
                    conn.write_all(request.as_bytes())?;
                    buf.clear();
                    let status = loop {
                        let n = conn.read(&mut chunk)?;
                        if n == 0 {
                            bail!("{addr} closed the connection");
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(status) = parse_head_status(&buf) {
                            break status;
                        }
                    };
                    let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    if status != 200 {
                        bail!("HEAD of the manifest on {addr} answered {status}");
                    }
                    latencies.push(nanos);
                }
                Ok(latencies)
            })
            .context("cannot start a HEAD load thread")?;
        threads.push(thread);
    }
    ready.wait();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(mut mine)) => latencies.append(&mut mine),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a HEAD load thread panicked"))),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e.context(format!(
            "HEAD load on {base} with {connections} connections"
        )));
    }
    let count = latencies.len();
    let p99 = percentile(&mut latencies, 99.0)
        .with_context(|| format!("no HEAD request on {base} completed"))?;
    Ok(Load {
        requests_per_sec: count as f64 / elapsed,
        p99_ms: p99 as f64 / 1e6,
    })
}

/// Opens [`IDLE_CONNECTIONS`] connections that send nothing; returns `VmRSS` before and
/// after, in KiB.
fn idle_memory(endpoint: &Endpoint) -> Result<(u64, u64)> {
    let addr = endpoint.base.trim_start_matches("http://");
    let before = vm_rss_kib(endpoint.pid)?;
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        conns.push(
            std::net::TcpStream::connect(addr)
                .with_context(|| format!("cannot connect to {addr}"))?,
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = vm_rss_kib(endpoint.pid)?;
    drop(conns);
    Ok((before, after))
}

/// One measure of a run: seconds for [`Probe::TIMED`], requests per second for the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    probe: Probe,
    value: f64,
    /// The load tests' 99th percentile latency, in milliseconds.
    p99_ms: Option<f64>,
}

/// A kind of measure, by the peer it measures (`Probe::Get`, ...).
type ProbeOf = fn(Peer) -> Probe;

/// The manifest load tests compared side by side: a name and the probe of each peer.
const MANIFEST_LOADS: [(&str, ProbeOf); 4] = [
    ("HEAD", Probe::Head),
    ("GET", Probe::Get),
    ("HEAD", Probe::HeadMany),
    ("GET", Probe::GetMany),
];

/// A ratio with three significant digits however small (`0.0143×`), as p99 ratios can be.
fn format_small_ratio(ratio: f64) -> String {
    if ratio >= 1.0 || !ratio.is_finite() || ratio <= 0.0 {
        return format_ratio(ratio);
    }
    let decimals = (2.0 - ratio.log10().floor()) as usize;
    format!("{ratio:.decimals$}×")
}

/// Everything the server scenario measured.
#[derive(Debug)]
struct ServerReport {
    size_bytes: u64,
    wrk_secs: u64,
    ballast_bytes: Vec<u64>,
    runs: Vec<Vec<Reading>>,
    /// `VmRSS` before and after opening the idle connections, in KiB, hoist then registry.
    idle_kib: [(u64, u64); 2],
}

impl ServerReport {
    fn values(&self, probe: Probe) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|r| r.probe == probe).map(|r| r.value))
            .collect()
    }

    fn median(&self, probe: Probe) -> f64 {
        median(&self.values(probe)).unwrap_or(f64::NAN)
    }

    /// The p99 latencies of `probe`'s runs, in milliseconds.
    fn p99s(&self, probe: Probe) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|r| r.probe == probe).and_then(|r| r.p99_ms))
            .collect()
    }

    /// The median of the runs' p99 latencies of `probe`, in milliseconds.
    fn median_p99(&self, probe: Probe) -> f64 {
        median(&self.p99s(probe)).unwrap_or(f64::NAN)
    }

    /// hoist's p99 latency over the registry's (below 1 when hoist answers faster).
    fn p99_ratio(&self, probe: ProbeOf) -> f64 {
        self.median_p99(probe(Peer::Hoist)) / self.median_p99(probe(Peer::Registry))
    }

    /// hoist's throughput (or request rate) over the registry's.
    fn ratio(&self, probe: ProbeOf) -> f64 {
        self.ratio_of(probe, Peer::Hoist)
    }

    /// `peer`'s throughput (or request rate) over the registry's.
    fn ratio_of(&self, probe: ProbeOf, peer: Peer) -> f64 {
        let (h, r) = (self.median(probe(peer)), self.median(probe(Peer::Registry)));
        if matches!(probe(peer), Probe::Upload(_) | Probe::Download(_)) {
            r / h
        } else {
            h / r
        }
    }

    /// An upload's throughput as a share of `dd`'s, in percent.
    fn upload_vs_dd(&self, peer: Peer) -> f64 {
        100.0 * self.median(Probe::Dd) / self.median(Probe::Upload(peer))
    }

    fn idle_kib_per_conn(&self, peer: Peer) -> f64 {
        let (before, after) = self.idle_kib[usize::from(peer == Peer::Registry)];
        (after as f64 - before as f64) / IDLE_CONNECTIONS as f64
    }

    fn targets(&self) -> Vec<Target> {
        let at_least = |name, ratio: f64, limit: f64| Target {
            name,
            measured: format_ratio(ratio),
            limit: format!("≥ {}", format_ratio(limit)),
            pass: ratio >= limit,
            value: ratio,
            limit_value: limit,
        };
        vec![
            // Like for like: neither hashes what it serves (the ratio of hoist --verify-reads
            // is in the table, without a verdict).
            at_least(
                "blob download MB/s, hoist / registry",
                self.ratio(Probe::Download),
                DOWNLOAD_LIMIT,
            ),
            at_least(
                "blob upload MB/s, hoist / registry",
                self.ratio(Probe::Upload),
                UPLOAD_LIMIT,
            ),
            at_least(
                "manifest HEAD req/s, hoist / registry",
                self.ratio(Probe::Head),
                RPS_LIMIT,
            ),
            at_least(
                "manifest GET req/s, hoist / registry",
                self.ratio(Probe::Get),
                RPS_LIMIT,
            ),
            // The targets are at WRK_CONNECTIONS; the MANY_CONNECTIONS loads are reported in
            // the table, without a verdict.
        ]
    }

    fn table(&self) -> String {
        let runs = self.runs.len();
        let mut out = String::new();
        let ballast = match self.ballast_bytes.iter().max() {
            Some(&max) if max > 0 => format!("up to {} MiB ballast before each run", max >> 20),
            _ => "no ballast".to_owned(),
        };
        let _ = writeln!(
            out,
            "server bench: hoist serve vs docker-registry, filesystem storage, fresh data dirs, \
             loopback;\n{} MiB random blob (a new one per run), {runs} run(s), {ballast}; \
             server order alternates\n(odd runs: hoist first, dd before the uploads; even runs: \
             registry first, dd after);\nGET: wrk -t2 -c{WRK_CONNECTIONS} and -c{MANY_CONNECTIONS} -d{}s --latency; HEAD: xtask's own \
             loader (wrk 4.1 hangs on HEAD),\n{WRK_CONNECTIONS} and {MANY_CONNECTIONS} keep-alive connections, \
             one thread each; p99: wrk's 99% line, the loader's nearest rank\n",
            self.size_bytes >> 20,
            self.wrk_secs,
        );
        let header = |out: &mut String, title: &str, unit: &str| {
            let _ = write!(out, "{title:<38}");
            for i in 1..=runs {
                let _ = write!(out, "{:>10}", format!("run {i}"));
            }
            let _ = writeln!(out, "{:>10}{unit:>10}", "median");
        };
        header(&mut out, "seconds", "MB/s");
        for probe in Probe::TIMED {
            let _ = write!(out, "{:<38}", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, "{v:>10.3}");
            }
            let m = self.median(probe);
            let _ = writeln!(out, "{m:>10.3}{:>10.0}", rate_mb_s(self.size_bytes, m));
        }
        let _ = writeln!(out);
        header(&mut out, "requests/s", "");
        for probe in Probe::RATES {
            let _ = write!(out, "{:<38}", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, "{v:>10.0}");
            }
            let _ = writeln!(out, "{:>10.0}", self.median(probe));
        }
        let _ = writeln!(out);
        header(&mut out, "p99 latency, ms", "");
        for probe in Probe::RATES {
            let _ = write!(out, "{:<38}", probe.label());
            for v in self.p99s(probe) {
                let _ = write!(out, "{v:>10.2}");
            }
            let _ = writeln!(out, "{:>10.2}", self.median_p99(probe));
        }
        let _ = writeln!(
            out,
            "\n{:<24}{:>12}{:>12}{:>8}{:>12}{:>12}{:>8}",
            "manifest (medians)",
            "hoist req/s",
            "registry",
            "ratio",
            "hoist p99",
            "registry",
            "ratio"
        );
        for (method, probe) in MANIFEST_LOADS {
            let connections = probe(Peer::Hoist).connections().unwrap_or(0);
            let _ = writeln!(
                out,
                "{:<24}{:>12.0}{:>12.0}{:>8}{:>12}{:>12}{:>8}",
                format!("{method}, {connections} conns"),
                self.median(probe(Peer::Hoist)),
                self.median(probe(Peer::Registry)),
                format_ratio(self.ratio(probe)),
                format!("{:.2} ms", self.median_p99(probe(Peer::Hoist))),
                format!("{:.2} ms", self.median_p99(probe(Peer::Registry))),
                format_small_ratio(self.p99_ratio(probe)),
            );
        }
        let _ = writeln!(
            out,
            "(ratios: hoist / registry; more req/s is better, a lower p99 is better)"
        );
        let _ = writeln!(
            out,
            "\nidle connections ({IDLE_CONNECTIONS}, before load){:>12}{:>12}{:>12}",
            "RSS before", "after", "KiB/conn"
        );
        for peer in [Peer::Hoist, Peer::Registry] {
            let (before, after) = self.idle_kib[usize::from(peer == Peer::Registry)];
            let _ = writeln!(
                out,
                "{:<38}{:>12}{:>12}{:>12.1}",
                peer.key(),
                format_mib(before),
                format_mib(after),
                self.idle_kib_per_conn(peer)
            );
        }
        let _ = writeln!(
            out,
            "\n{:<48}{:>10}{:>10}   verdict",
            "target", "measured", "limit"
        );
        for t in self.targets() {
            let _ = writeln!(
                out,
                "{:<48}{:>10}{:>10}   {}",
                t.name,
                t.measured,
                t.limit,
                verdict(t.pass)
            );
        }
        for peer in [Peer::Hoist, Peer::Registry] {
            let _ = writeln!(
                out,
                "{:<48}{:>10}{:>10}   (reported)",
                format!("{} upload / dd write bound", peer.key()),
                format!("{:.0}%", self.upload_vs_dd(peer)),
                "-"
            );
        }
        let _ = writeln!(
            out,
            "{:<48}{:>10}{:>10}   (reported: hashes every byte it serves; the registry does not)",
            "download MB/s, hoist --verify-reads / registry",
            format_ratio(self.ratio_of(Probe::Download, Peer::HoistVerified)),
            "-"
        );
        out
    }

    fn to_json(&self) -> Value {
        let all = Probe::TIMED.iter().chain(&Probe::RATES);
        let values: serde_json::Map<String, Value> = all
            .clone()
            .map(|&p| (p.key(), json!(self.values(p))))
            .collect();
        let medians: serde_json::Map<String, Value> =
            all.map(|&p| (p.key(), json!(self.median(p)))).collect();
        let p99s: serde_json::Map<String, Value> = Probe::RATES
            .iter()
            .map(|&p| (p.key(), json!(self.p99s(p))))
            .collect();
        let median_p99s: serde_json::Map<String, Value> = Probe::RATES
            .iter()
            .map(|&p| (p.key(), json!(self.median_p99(p))))
            .collect();
        let manifest_vs_registry: serde_json::Map<String, Value> = MANIFEST_LOADS
            .iter()
            .map(|&(method, probe)| {
                let connections = probe(Peer::Hoist).connections().unwrap_or(0);
                (
                    format!("{}_c{connections}", method.to_lowercase()),
                    json!({
                        "connections": connections,
                        "requests_per_sec_ratio": self.ratio(probe),
                        "p99_ratio": self.p99_ratio(probe),
                    }),
                )
            })
            .collect();
        let idle = |peer: Peer| {
            let (before, after) = self.idle_kib[usize::from(peer == Peer::Registry)];
            json!({
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": self.idle_kib_per_conn(peer),
            })
        };
        json!({
            "scenario": "server",
            "size_bytes": self.size_bytes,
            "runs": self.runs.len(),
            "wrk": {
                "threads": 2,
                "connections": [WRK_CONNECTIONS, MANY_CONNECTIONS],
                "seconds": self.wrk_secs,
            },
            "head_loader": {
                "threads": "one per connection",
                "connections": [WRK_CONNECTIONS, MANY_CONNECTIONS],
                "seconds": self.wrk_secs,
            },
            "ballast_bytes": self.ballast_bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|r| r.probe.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "values": values,
            "medians": medians,
            "p99_ms": p99s,
            "median_p99_ms": median_p99s,
            "units": {
                "dd, upload, download": "seconds",
                "manifest": "requests/s",
                "p99": "milliseconds",
            },
            "manifest_hoist_vs_registry": manifest_vs_registry,
            "download_verify_reads_vs_registry": self.ratio_of(Probe::Download, Peer::HoistVerified),
            "upload_percent_of_dd": {
                "hoist": self.upload_vs_dd(Peer::Hoist),
                "registry": self.upload_vs_dd(Peer::Registry),
            },
            "idle_connections": IDLE_CONNECTIONS,
            "idle_memory": { "hoist": idle(Peer::Hoist), "registry": idle(Peer::Registry) },
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "at_least": t.limit_value,
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Builds the `hoist` command line in release mode and returns its path.
fn build_hoist(root: &Path) -> Result<PathBuf> {
    let mut build = cargo(root);
    build.args(["build", "--release", "--locked", "-p", "hoist"]);
    println!("==> build: {}", describe(&build));
    run_status(&mut build)?;
    Ok(target_dir(root).join("release").join("hoist"))
}

/// Fails unless every one of `tools` is on the `PATH` (Debian packages of the same names).
fn require_tools(tools: &[&str]) -> Result<()> {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("`{tool}` is not installed (apt-get install -y {tool})");
        }
    }
    Ok(())
}

fn server(root: &Path, args: &BenchArgs) -> Result<()> {
    let exe = build_hoist(root)?;
    require_tools(&["curl", "wrk", "docker-registry"])?;
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("server-work");
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let size_bytes = args.size_mib << 20;
    let wrk_secs = if args.quick { 2 } else { 5 };

    let peers_dir = root.join("tests").join("peers");
    let mut servers = Servers {
        hoist: Vec::new(),
        registry_dir: None,
        stop_script: peers_dir.join("stop-registry.sh"),
    };
    let registry_dir = work.join("registry");
    let registry_addr = format!("127.0.0.1:{}", free_port()?);
    println!(
        "==> docker-registry on {registry_addr}, data {}",
        registry_dir.display()
    );
    servers.registry_dir = Some(registry_dir.clone());
    let registry_pid = start_registry(&peers_dir, &registry_dir, &registry_addr)?;

    let hoist_root = work.join("hoist-root");
    fs::create_dir_all(&hoist_root)?;
    let mut start_hoist = |flags: &[&str], log: &str| -> Result<(String, u32)> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        println!(
            "==> hoist serve {} on {addr}, root {}",
            flags.join(" "),
            hoist_root.display()
        );
        let log = File::create(work.join(log))?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--root")
            .arg(&hoist_root)
            .args(["--addr", &addr, "-q"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id();
        servers.hoist.push(child);
        let base = format!("http://{addr}");
        if let Some(child) = servers.hoist.last_mut() {
            wait_until_answering(&base, child)?;
        }
        Ok((base, pid))
    };
    let (hoist_base, hoist_pid) = start_hoist(&[], "hoist.log")?;
    // The same root, for downloads only.
    let (verified_base, verified_pid) = start_hoist(&["--verify-reads"], "hoist-verify.log")?;
    let endpoints = [
        Endpoint {
            peer: Peer::Hoist,
            base: hoist_base,
            pid: hoist_pid,
        },
        Endpoint {
            peer: Peer::Registry,
            base: format!("http://{registry_addr}"),
            pid: registry_pid,
        },
    ];
    let verified = Endpoint {
        peer: Peer::HoistVerified,
        base: verified_base,
        pid: verified_pid,
    };
    let endpoint = |peer: Peer| match peer {
        Peer::Hoist => &endpoints[0],
        Peer::Registry => &endpoints[1],
        Peer::HoistVerified => &verified,
    };

    // Before any load, so that neither server holds garbage from it (Go collects lazily).
    println!("==> idle connections: {IDLE_CONNECTIONS} to each server, RSS before and after");
    let idle_kib = [
        idle_memory(endpoint(Peer::Hoist))?,
        idle_memory(endpoint(Peer::Registry))?,
    ];
    for e in &endpoints {
        let (before, after) = idle_kib[usize::from(e.peer == Peer::Registry)];
        println!("    {:<38}{before:>8} -> {after} KiB", e.peer.key());
    }

    let get_script = work.join("get.lua");
    fs::write(
        &get_script,
        format!("wrk.method = \"GET\"\nwrk.headers[\"Accept\"] = \"{MANIFEST_TYPE}\"\n"),
    )?;

    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    let mut manifest_pushed = false;
    for index in 0..args.runs {
        let dir = work.join(format!("run-{}", index + 1));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        println!("==> run {} of {}", index + 1, args.runs);
        let source = dir.join("source.bin");
        let mut head = Command::new("head");
        head.arg("-c")
            .arg(size_bytes.to_string())
            .arg("/dev/urandom")
            .stdout(
                File::create(&source)
                    .with_context(|| format!("cannot create {}", source.display()))?,
            );
        run_status(&mut head)?;
        let (_, output) = timed(&mut openssl_dgst(&source))?;
        let digest = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
        read_through(&source)?;
        println!("    source {digest}");
        let ballast = if args.ballast {
            let meminfo =
                fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            let available =
                parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
            ballast_bytes(size_bytes, available)
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dir.join("ballast"), ballast)?;
        }
        ballasts.push(ballast);
        let mut readings = Vec::new();
        for probe in server_order(index) {
            let mut p99_ms = None;
            let value = match probe {
                Probe::Dd => {
                    let target = dir.join("dd-file");
                    let mut dd = Command::new("dd");
                    dd.arg(format!("if={}", source.display()))
                        .arg(format!("of={}", target.display()))
                        .args(["bs=1M", "conv=fdatasync"]);
                    let (seconds, _) = timed(&mut dd)?;
                    let written = fs::metadata(&target)?.len();
                    if written != size_bytes {
                        bail!("dd wrote {written} bytes, expected {size_bytes}");
                    }
                    seconds
                }
                Probe::Upload(peer) => {
                    upload_blob(&endpoint(peer).base, Some(&source), "", &digest)?
                }
                Probe::Download(peer) => {
                    let base = &endpoint(peer).base;
                    // Untimed first: both servers serve it from the page cache alike. Then
                    // the median of a few: one transfer takes only ~0.1 s.
                    download_blob(base, &digest, size_bytes)?;
                    let times = (0..DOWNLOADS_PER_RUN)
                        .map(|_| download_blob(base, &digest, size_bytes))
                        .collect::<Result<Vec<f64>>>()?;
                    median(&times).unwrap_or(f64::NAN)
                }
                Probe::Head(peer)
                | Probe::Get(peer)
                | Probe::HeadMany(peer)
                | Probe::GetMany(peer) => {
                    if !manifest_pushed {
                        for e in &endpoints {
                            push_manifest(&e.base, &digest, size_bytes)?;
                        }
                        manifest_pushed = true;
                    }
                    let base = &endpoint(peer).base;
                    let connections = probe.connections().unwrap_or(WRK_CONNECTIONS);
                    let load = if matches!(probe, Probe::Head(_) | Probe::HeadMany(_)) {
                        head_load(base, connections, wrk_secs)?
                    } else {
                        wrk(base, &get_script, connections, wrk_secs)?
                    };
                    p99_ms = Some(load.p99_ms);
                    load.requests_per_sec
                }
            };
            match p99_ms {
                None => println!("    {:<38}{value:>10.3} s", probe.label()),
                Some(p99) => println!(
                    "    {:<38}{value:>10.0} req/s, p99 {p99:.2} ms",
                    probe.label()
                ),
            }
            readings.push(Reading {
                probe,
                value,
                p99_ms,
            });
        }
        runs.push(readings);
    }

    drop(servers);
    remove_dir(&work)?;

    let report = ServerReport {
        size_bytes,
        wrk_secs,
        ballast_bytes: ballasts,
        runs,
        idle_kib,
    };
    let json_path = bench_dir.join("server.json");
    let mut text = serde_json::to_string_pretty(&report.to_json())?;
    text.push('\n');
    fs::write(&json_path, text).with_context(|| format!("cannot write {}", json_path.display()))?;
    println!();
    print!("{}", report.table());
    println!("\nresults: {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn defaults_are_the_issue_scenario() {
        assert_eq!(
            parse_args(&[]),
            Ok(BenchArgs {
                scenario: Scenario::Layout,
                size_mib: 1024,
                runs: 3,
                pause_secs: 20,
                ballast: true,
                quick: false,
            })
        );
        assert_eq!(parse_args(&args(&["layout"])), parse_args(&[]));
    }

    #[test]
    fn options_are_parsed() {
        let parsed = parse_args(&args(&[
            "layout",
            "--size-mib",
            "64",
            "--runs",
            "5",
            "--quick",
        ]));
        assert_eq!(
            parsed,
            Ok(BenchArgs {
                scenario: Scenario::Layout,
                size_mib: 64,
                runs: 5,
                pause_secs: 0,
                ballast: false,
                quick: true,
            })
        );
        assert_eq!(
            parse_args(&args(&["--pause", "90"])).map(|a| a.pause_secs),
            Ok(90)
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["registry"][..],
            &["server", "--size-mib", "0"],
            &["--size-mib"],
            &["--size-mib", "-1"],
            &["--size-mib", "0"],
            &["--size-mib", "1048577"],
            &["--runs", "0"],
            &["--runs", "three"],
            &["--fast"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ballast_is_four_times_the_size_within_available_memory() {
        const GIB: u64 = 1 << 30;
        assert_eq!(ballast_bytes(GIB, 23 * GIB), 4 * GIB);
        assert_eq!(ballast_bytes(GIB, 9 * GIB), 2 * GIB);
        assert_eq!(ballast_bytes(GIB, 6 * GIB), 0);
        assert_eq!(ballast_bytes(64 << 20, GIB), 0);
        let meminfo = "MemTotal:       24684132 kB\nMemFree:        23377000 kB\n\
                       MemAvailable:   24186404 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(24186404 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
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

    #[test]
    fn ratios_and_verdicts_are_formatted() {
        assert_eq!(format_ratio(1.0), "1.00×");
        assert_eq!(format_ratio(1.234), "1.23×");
        assert_eq!(format_mib(32 * 1024), "32.0 MiB");
        assert_eq!(verdict(true), "PASS");
        assert_eq!(verdict(false), "FAIL");
        assert!(ratio_target("x", 1.2).pass);
        assert!(!ratio_target("x", 1.21).pass);
        assert!(rss_target("x", RSS_LIMIT_KIB - 1).pass);
        assert!(!rss_target("x", RSS_LIMIT_KIB).pass);
        assert!((rate_mb_s(1_000_000_000, 2.0) - 500.0).abs() < 1e-9);
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

        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parse_openssl_digest(&format!("{hex} *src.bin\n")).unwrap(),
            format!("sha256:{hex}")
        );
        assert!(parse_openssl_digest("SHA2-256(src.bin)= e3b0").is_err());
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

    #[test]
    fn server_scenario_defaults_to_256_mib() {
        let parsed = parse_args(&args(&["server"])).unwrap();
        assert_eq!(parsed.scenario, Scenario::Server);
        assert_eq!(parsed.size_mib, SERVER_SIZE_MIB);
        assert_eq!(parsed.runs, 3);
        let parsed = parse_args(&args(&["server", "--size-mib", "64", "--quick"])).unwrap();
        assert_eq!((parsed.size_mib, parsed.quick), (64, true));
        assert_eq!(
            parse_args(&args(&["--size-mib", "64", "server"])).map(|a| a.size_mib),
            Ok(64)
        );
    }

    #[test]
    fn location_is_found_and_made_absolute() {
        let headers = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\
                       location: /v2/r/blobs/uploads/abc\r\nRange: 0-0\r\n\r\n";
        let location = parse_location(headers).unwrap();
        assert_eq!(location, "/v2/r/blobs/uploads/abc");
        assert_eq!(
            upload_url("http://127.0.0.1:1", &location, "sha256:00"),
            "http://127.0.0.1:1/v2/r/blobs/uploads/abc?digest=sha256:00"
        );
        let absolute = parse_location(
            "HTTP/1.1 202 Accepted\r\nLocation: http://h:5/v2/r/blobs/uploads/u?_state=x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            upload_url("http://127.0.0.1:1", &absolute, "sha256:00"),
            "http://h:5/v2/r/blobs/uploads/u?_state=x&digest=sha256:00"
        );
        assert_eq!(parse_location("HTTP/1.1 202 Accepted\r\n\r\n"), None);
    }

    #[test]
    fn wrk_output_is_parsed() {
        let out = "Running 5s test @ http://127.0.0.1:1/v2/r/manifests/latest\n\
                   \x20 2 threads and 32 connections\n\
                   \x20 61234 requests in 5.00s, 40.1MB read\n\
                   Requests/sec:  12246.80\n\
                   Transfer/sec:      8.02MB\n";
        assert_eq!(
            parse_wrk(out).unwrap(),
            WrkSummary {
                requests_per_sec: 12246.8,
                non_2xx: 0,
                p99_ms: None
            }
        );
        let errors = "  Non-2xx or 3xx responses: 17\nRequests/sec:    100.00\n";
        assert_eq!(parse_wrk(errors).unwrap().non_2xx, 17);
        assert!(parse_wrk("Usage: wrk <options> <url>\n").is_err());
        let latency = "Running 5s test @ http://127.0.0.1:1/v2/r/manifests/latest\n\
                       \x20 2 threads and 256 connections\n\
                       \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
                       \x20   Latency    10.12ms    3.40ms  61.00ms   90.12%\n\
                       \x20   Req/Sec    12.60k     1.10k   14.00k    70.00%\n\
                       \x20 Latency Distribution\n\
                       \x20    50%    9.80ms\n\
                       \x20    75%   11.20ms\n\
                       \x20    90%   13.00ms\n\
                       \x20    99%   24.51ms\n\
                       \x20 125000 requests in 5.00s, 80.1MB read\n\
                       Requests/sec:  25000.00\n";
        assert_eq!(
            parse_wrk(latency).unwrap(),
            WrkSummary {
                requests_per_sec: 25000.0,
                non_2xx: 0,
                p99_ms: Some(24.51)
            }
        );
        let bad = "    99%   lots\nRequests/sec:  1.00\n";
        assert!(parse_wrk(bad).is_err());
        assert_eq!(parse_wrk_duration_ms("812.00us"), Some(0.812));
        assert_eq!(parse_wrk_duration_ms(" 1.50ms"), Some(1.5));
        assert_eq!(parse_wrk_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_wrk_duration_ms("1.00m"), Some(60000.0));
        assert_eq!(parse_wrk_duration_ms("1.00h"), Some(3_600_000.0));
        assert_eq!(parse_wrk_duration_ms("3.00d"), None);
        assert_eq!(parse_wrk_duration_ms("12"), None);
    }

    #[test]
    fn proc_status_and_head_responses_are_parsed() {
        let status = "Name:\thoist\nVmPeak:\t  20000 kB\nVmRSS:\t   12104 kB\nRssAnon:\t 5000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12104));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
        assert_eq!(
            parse_head_status(b"HTTP/1.1 200 OK\r\nContent-Length: 9"),
            None
        );
        assert_eq!(
            parse_head_status(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            parse_head_status(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Some(404)
        );
    }

    #[test]
    fn curl_size_and_time_are_read() {
        assert_eq!(
            parse_size_and_time("268435456 0.110784"),
            Some((268_435_456, 0.110_784))
        );
        assert_eq!(parse_size_and_time("268435456"), None);
        assert_eq!(parse_size_and_time("12 0.000000"), None);
    }

    #[test]
    fn server_order_alternates_peers_and_dd() {
        assert_eq!(server_order(0)[0], Probe::Dd);
        assert_eq!(server_order(0)[1], Probe::Upload(Peer::Hoist));
        assert_eq!(server_order(1)[0], Probe::Upload(Peer::Registry));
        assert_eq!(server_order(1)[2], Probe::Dd);
        for index in 0..2 {
            let order = server_order(index);
            for probe in Probe::TIMED.iter().chain(&Probe::RATES) {
                assert_eq!(order.iter().filter(|p| *p == probe).count(), 1, "{probe:?}");
            }
        }
    }

    #[test]
    fn server_report_ratios_and_table() {
        let run = |up_h, up_r, down_h, down_r, rps_h, rps_r, p99_h| {
            let timed = [
                (Probe::Dd, 0.7),
                (Probe::Upload(Peer::Hoist), up_h),
                (Probe::Upload(Peer::Registry), up_r),
                (Probe::Download(Peer::Hoist), down_h),
                (Probe::Download(Peer::Registry), down_r),
                (Probe::Download(Peer::HoistVerified), down_h * 2.0),
            ]
            .map(|(probe, value)| Reading {
                probe,
                value,
                p99_ms: None,
            });
            // At 256 connections: half the rate, 8 times hoist's p99; the registry's p99 is
            // 4 ms at 32 connections, 30 ms at 256.
            let rates = [
                (Probe::Head(Peer::Hoist), rps_h, p99_h),
                (Probe::Head(Peer::Registry), rps_r, 4.0),
                (Probe::Get(Peer::Hoist), rps_h, p99_h),
                (Probe::Get(Peer::Registry), rps_r, 4.0),
                (Probe::HeadMany(Peer::Hoist), rps_h / 2.0, p99_h * 8.0),
                (Probe::HeadMany(Peer::Registry), rps_r / 2.0, 30.0),
                (Probe::GetMany(Peer::Hoist), rps_h / 2.0, p99_h * 8.0),
                (Probe::GetMany(Peer::Registry), rps_r / 2.0, 30.0),
            ]
            .map(|(probe, value, p99)| Reading {
                probe,
                value,
                p99_ms: Some(p99),
            });
            timed.into_iter().chain(rates).collect::<Vec<_>>()
        };
        let report = ServerReport {
            size_bytes: 256 << 20,
            wrk_secs: 5,
            ballast_bytes: vec![0; 3],
            runs: vec![
                run(0.8, 1.3, 0.05, 0.2, 20000.0, 1000.0, 1.0),
                run(0.7, 1.2, 0.05, 0.12, 21000.0, 1100.0, 2.0),
                run(0.9, 1.4, 0.05, 0.13, 19000.0, 900.0, 1.5),
            ],
            idle_kib: [(10_000, 10_400), (30_000, 31_000)],
        };
        assert!((report.ratio(Probe::Upload) - 1.3 / 0.8).abs() < 1e-9);
        assert!((report.ratio(Probe::Download) - 2.6).abs() < 1e-9);
        assert!((report.ratio_of(Probe::Download, Peer::HoistVerified) - 1.3).abs() < 1e-9);
        assert!((report.ratio(Probe::Head) - 20.0).abs() < 1e-9);
        assert!((report.ratio(Probe::GetMany) - 20.0).abs() < 1e-9);
        assert_eq!(report.p99s(Probe::Get(Peer::Hoist)), [1.0, 2.0, 1.5]);
        assert!((report.median_p99(Probe::HeadMany(Peer::Hoist)) - 12.0).abs() < 1e-9);
        assert!((report.p99_ratio(Probe::GetMany) - 0.4).abs() < 1e-9);
        assert!(report.p99s(Probe::Dd).is_empty());
        assert!((report.upload_vs_dd(Peer::Hoist) - 87.5).abs() < 1e-9);
        assert!((report.idle_kib_per_conn(Peer::Registry) - 5.0).abs() < 1e-9);
        let verdicts: Vec<bool> = report.targets().iter().map(|t| t.pass).collect();
        // The download target is the default hoist's (2.6x), like for like; that of
        // hoist --verify-reads (1.3x) is reported without a verdict.
        assert_eq!(verdicts, [true, true, true, true]);
        assert_eq!(
            report.targets()[0].name,
            "blob download MB/s, hoist / registry"
        );
        let table = report.table();
        assert!(table.contains("PASS") && table.contains("2.60×"), "{table}");
        assert!(
            table.contains("hoist --verify-reads / registry") && table.contains("1.30×"),
            "{table}"
        );
        assert!(table.contains("88%"), "{table}");
        assert!(table.contains("GET, 256 conns"), "{table}");
        assert!(
            table.contains("12.00 ms") && table.contains("0.400×"),
            "{table}"
        );
        assert!(table.contains("hoist HEAD manifest, 256 conns"), "{table}");
        let json = report.to_json();
        assert_eq!(json["scenario"], json!("server"));
        assert_eq!(json["medians"]["hoist_upload"], json!(0.8));
        assert_eq!(json["medians"]["hoist_verify_reads_download"], json!(0.1));
        assert_eq!(
            json["median_p99_ms"]["registry_manifest_get_c256"],
            json!(30.0)
        );
        assert_eq!(
            json["p99_ms"]["hoist_manifest_head"],
            json!([1.0, 2.0, 1.5])
        );
        assert_eq!(
            json["manifest_hoist_vs_registry"]["get_c256"]["p99_ratio"],
            json!(0.4)
        );
        assert_eq!(json["download_verify_reads_vs_registry"], json!(1.3));
        assert_eq!(json["targets"][1]["pass"], json!(true));
    }

    #[test]
    fn small_ratios_keep_three_digits() {
        assert_eq!(format_small_ratio(0.4), "0.400×");
        assert_eq!(format_small_ratio(0.01432), "0.0143×");
        assert_eq!(format_small_ratio(0.1), "0.100×");
        assert_eq!(format_small_ratio(2.5), "2.50×");
        assert_eq!(format_small_ratio(0.0), "0.00×");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut values, 99.0), Some(99));
        assert_eq!(percentile(&mut values, 50.0), Some(50));
        assert_eq!(percentile(&mut values, 100.0), Some(100));
        assert_eq!(percentile(&mut values, 0.0), Some(1));
        assert_eq!(percentile(&mut [7], 99.0), Some(7));
        let mut few = [5, 1, 3];
        assert_eq!(percentile(&mut few, 99.0), Some(5));
        assert_eq!(percentile(&mut [], 99.0), None);
    }
}
