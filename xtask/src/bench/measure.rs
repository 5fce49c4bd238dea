//! Measuring, shared by every scenario: timing child processes, what GNU `time` says of them
//! (CPU seconds, peak RSS), medians and percentiles, the order of the tools from one run to the
//! next, targets and their verdicts, and the tables and JSON files the results end in; the
//! runs themselves (a warm-up, then the counted ones) in [`runs`].

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::describe;

mod runs;

pub(super) use runs::{DEFAULT_RUNS, Defaults, Runs};

/// Runs `cmd` to completion with its output captured, timing it from spawn to exit; fails
/// unless it exits successfully.
pub(super) fn timed(cmd: &mut Command) -> Result<(f64, Output)> {
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

/// Runs `cmd` with its stdout read and thrown away by xtask, timing it from spawn to exit;
/// returns the seconds and the bytes read.
pub(super) fn timed_drain(cmd: &mut Command) -> Result<(f64, u64)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut buf).context("cannot read the pipe")?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let status = child.wait()?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok((seconds, total))
}

/// What GNU `time -f "%U %S %M"` says of a process: user and system seconds, peak RSS.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Usage {
    pub(super) user: f64,
    pub(super) sys: f64,
    pub(super) peak_rss_kib: u64,
}

/// `program` under GNU `time`, which writes user and system seconds and the peak RSS into
/// `time_file` (read back with [`read_usage`]).
pub(super) fn with_time(time_file: &Path, program: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%U %S %M", "-o"])
        .arg(time_file)
        .arg(program);
    cmd
}

/// Fails unless GNU `time` is where [`with_time`] runs it.
pub(super) fn require_gnu_time() -> Result<()> {
    if !Path::new("/usr/bin/time").exists() {
        bail!("GNU time is not installed at /usr/bin/time (apt-get install -y time)");
    }
    Ok(())
}

/// The [`Usage`] GNU `time -f "%U %S %M"` wrote (the last line; a line about the exit status
/// may precede it).
pub(super) fn parse_time_line(text: &str) -> Option<Usage> {
    let line = text.lines().rfind(|l| !l.trim().is_empty())?;
    let mut parts = line.split_whitespace();
    let user = parts.next()?.parse().ok()?;
    let sys = parts.next()?.parse().ok()?;
    let peak_rss_kib = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Usage {
        user,
        sys,
        peak_rss_kib,
    })
}

/// The [`Usage`] in the `time_file` of [`with_time`].
pub(super) fn read_usage(time_file: &Path) -> Result<Usage> {
    let text = fs::read_to_string(time_file)
        .with_context(|| format!("cannot read {}", time_file.display()))?;
    parse_time_line(&text).with_context(|| format!("no times in {}: {text:?}", time_file.display()))
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// [`median`], NaN if there is nothing.
pub(super) fn median_or_nan(values: &[f64]) -> f64 {
    median(values).unwrap_or(f64::NAN)
}

/// The smallest and largest of `values`, NaN for none.
pub(super) fn min_max(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::NAN, f64::min);
    let max = values.iter().copied().fold(f64::NAN, f64::max);
    (min, max)
}

/// The median of `values` with their range, in seconds (`1.234 s (1.200–1.300)`).
pub(super) fn format_spread(values: &[f64]) -> String {
    let (min, max) = min_max(values);
    format!("{:.3} s ({min:.3}–{max:.3})", median_or_nan(values))
}

/// The nearest-rank `percent` percentile of `values` (sorted in place), `None` if empty.
pub(super) fn percentile(values: &mut [u64], percent: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (percent / 100.0 * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// The order of run `index` (from 0): `order` turned round by a third of its length every
/// second run, and reversed in odd runs. What comes first in one run comes last in the next,
/// and over six runs every item has been near the start, the middle and the end, so that the
/// machine's drift within a run (the first write after the ballast is the fast one on this kind
/// of VM) touches every tool alike. Turning keeps neighbours side by side (but at the seam), so
/// a tool placed next to what it is compared with mostly stays there.
pub(super) fn alternate<T, const N: usize>(mut order: [T; N], index: usize) -> [T; N] {
    alternate_in_place(&mut order, index);
    order
}

/// [`alternate`] on a part of an order, in place.
pub(super) fn alternate_in_place<T>(order: &mut [T], index: usize) {
    let len = order.len();
    if len > 0 {
        order.rotate_left((index / 2) * len.div_ceil(3) % len);
    }
    if !index.is_multiple_of(2) {
        order.reverse();
    }
}

/// Of every run, the first item that `wanted` picks (runs without one are left out).
pub(super) fn in_each_run<S: Clone>(runs: &[Vec<S>], wanted: impl Fn(&S) -> bool) -> Vec<S> {
    runs.iter()
        .filter_map(|run| run.iter().find(|s| wanted(s)).cloned())
        .collect()
}

/// A target's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) name: &'static str,
    pub(super) measured: String,
    pub(super) limit: String,
    pub(super) pass: bool,
    pub(super) value: f64,
    pub(super) limit_value: f64,
    /// hoist's own figure behind the ratio (`2.310 s`), if the scenario gives it; empty if not.
    pub(super) hoist: String,
    /// The peer's figure hoist is compared with (`3.020 s skopeo`); empty if none.
    pub(super) peer: String,
    /// The machine's limit hoist is compared with (`2.200 s curl upload`); empty if none.
    pub(super) bound: String,
}

impl Target {
    /// A ratio that passes when it is at most `limit` (`≤ 1.10×`).
    pub(super) fn at_most(name: &'static str, ratio: f64, limit: f64) -> Self {
        Self {
            name,
            measured: format_ratio(ratio),
            limit: format!("≤ {}", format_ratio(limit)),
            pass: ratio <= limit,
            value: ratio,
            limit_value: limit,
            hoist: String::new(),
            peer: String::new(),
            bound: String::new(),
        }
    }

    /// With the figures behind a ratio against a peer: hoist's and the peer's, so that the
    /// README's table shows what was compared and not only the quotient.
    pub(super) fn versus_peer(self, hoist: String, peer: String) -> Self {
        Self {
            hoist,
            peer,
            ..self
        }
    }

    /// With the figures behind a ratio against the machine's limit: hoist's and the limit's.
    pub(super) fn versus_bound(self, hoist: String, bound: String) -> Self {
        Self {
            hoist,
            bound,
            ..self
        }
    }

    /// A ratio that passes when it is below `limit` (`< 1.00×`).
    pub(super) fn below(name: &'static str, ratio: f64, limit: f64) -> Self {
        Self {
            limit: format!("< {}", format_ratio(limit)),
            pass: ratio < limit,
            ..Self::at_most(name, ratio, limit)
        }
    }

    /// A ratio that passes when it is at least `limit` (`≥ 2.00×`).
    pub(super) fn at_least(name: &'static str, ratio: f64, limit: f64) -> Self {
        Self {
            limit: format!("≥ {}", format_ratio(limit)),
            pass: ratio >= limit,
            ..Self::at_most(name, ratio, limit)
        }
    }

    /// A peak RSS that passes when it is below `limit_kib` (`< 64.0 MiB`).
    pub(super) fn rss_below(name: &'static str, kib: u64, limit_kib: u64) -> Self {
        Self {
            name,
            measured: format_mib(kib),
            limit: format!("< {}", format_mib(limit_kib)),
            pass: kib < limit_kib,
            value: kib as f64,
            limit_value: limit_kib as f64,
            hoist: format_mib(kib),
            peer: String::new(),
            bound: String::new(),
        }
    }
}

/// `PASS` when a target is met, else `FAIL`.
pub(super) fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

pub(super) fn format_ratio(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

/// A ratio with three significant digits however small (`0.0143×`), as p99 ratios can be.
pub(super) fn format_small_ratio(ratio: f64) -> String {
    if ratio >= 1.0 || !ratio.is_finite() || ratio <= 0.0 {
        return format_ratio(ratio);
    }
    let decimals = (2.0 - ratio.log10().floor()) as usize;
    format!("{ratio:.decimals$}×")
}

/// Seconds as the README's table shows them, with `what` they are of (`2.310 s skopeo`).
pub(super) fn format_seconds(seconds: f64, what: &str) -> String {
    let figure = if seconds < 0.1 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.3} s")
    };
    if what.is_empty() {
        figure
    } else {
        format!("{figure} {what}")
    }
}

pub(super) fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Prints the progress line of one timed step: its label, seconds and, where measured, its
/// peak RSS.
pub(super) fn print_step(label: &str, seconds: f64, peak_rss_kib: Option<u64>) {
    match peak_rss_kib {
        Some(kib) => println!("    {label:<36}{seconds:>8.3} s {:>12}", format_mib(kib)),
        None => println!("    {label:<36}{seconds:>8.3} s"),
    }
}

/// Decimal megabytes per second, as `dd` and the peers' README count them.
pub(super) fn rate_mb_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

/// How the ballast of the runs is described in a table's heading.
pub(super) fn ballast_note(ballast_bytes: &[u64]) -> String {
    match ballast_bytes.iter().max() {
        Some(&max) if max > 0 => format!("up to {} MiB ballast before each run", max >> 20),
        _ => "no ballast".to_owned(),
    }
}

/// The line of the load averages at the start and end of each run, if any were taken.
pub(super) fn load_note(out: &mut String, load: &[(f64, f64)]) {
    if load.is_empty() {
        return;
    }
    let load: Vec<String> = load
        .iter()
        .map(|(start, end)| format!("{start:.2} -> {end:.2}"))
        .collect();
    let _ = writeln!(
        out,
        "load average (1 min) at the start and end of each run: {}\n",
        load.join(", ")
    );
}

/// The heading of a table of runs: `title`, a column per run, the median and `last`.
pub(super) fn run_header(out: &mut String, width: usize, title: &str, runs: usize, last: &str) {
    let _ = write!(out, "{title:<width$}");
    for i in 1..=runs {
        let _ = write!(out, "{:>10}", format!("run {i}"));
    }
    let _ = writeln!(out, "{:>10}{last:>10}", "median");
}

/// A row of seconds: one per run, their median, and the MB/s of `bytes` at the median.
pub(super) fn seconds_row(
    out: &mut String,
    width: usize,
    label: &str,
    seconds: &[f64],
    bytes: u64,
) {
    let _ = write!(out, "{label:<width$}");
    for v in seconds {
        let _ = write!(out, "{v:>10.3}");
    }
    let m = median_or_nan(seconds);
    let _ = writeln!(out, "{m:>10.3}{:>10.0}", rate_mb_s(bytes, m));
}

/// A row of ratios, one per run.
pub(super) fn ratio_row(out: &mut String, width: usize, name: &str, ratios: &[f64]) {
    let _ = write!(out, "{name:<width$}");
    for r in ratios {
        let _ = write!(out, "{:>10}", format_ratio(*r));
    }
    let _ = writeln!(out);
}

/// A row of CPU seconds (user + system), one per run, their median and the medians of user
/// and system seconds.
pub(super) fn cpu_row(out: &mut String, width: usize, label: &str, usages: &[Usage]) {
    let _ = write!(out, "{label:<width$}");
    for usage in usages {
        let _ = write!(out, "{:>10.2}", usage.user + usage.sys);
    }
    let cpu: Vec<f64> = usages.iter().map(|u| u.user + u.sys).collect();
    let user: Vec<f64> = usages.iter().map(|u| u.user).collect();
    let sys: Vec<f64> = usages.iter().map(|u| u.sys).collect();
    let _ = writeln!(
        out,
        "{:>10.2}{:>10}",
        median_or_nan(&cpu),
        format!("{:.1}/{:.1}", median_or_nan(&user), median_or_nan(&sys))
    );
}

/// The CPU a step used: the tool's CPU seconds (user and system; none where many processes
/// did the work, as `curl`s do for an intake) and the registries' during the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct StepCpu {
    pub(super) tool: Option<f64>,
    pub(super) registries: f64,
}

impl StepCpu {
    /// The cores the tool and the registries kept busy together on average over `seconds`.
    pub(super) fn cores_busy(self, seconds: f64) -> f64 {
        (self.tool.unwrap_or(0.0) + self.registries) / seconds
    }
}

/// The median of the cores busy of `samples` (each a step's CPU and seconds).
pub(super) fn median_cores_busy(samples: &[(StepCpu, f64)]) -> f64 {
    let busy: Vec<f64> = samples.iter().map(|&(c, s)| c.cores_busy(s)).collect();
    median_or_nan(&busy)
}

/// The JSON of the steps' CPU use, keyed by step: `cpu_seconds` (the tool's, per run),
/// `registry_cpu_seconds` (per run) and `median_cores_busy`, for a report to add to its own.
pub(super) fn cpu_json(steps: &[(&str, Vec<(StepCpu, f64)>)]) -> serde_json::Map<String, Value> {
    let by_step = |f: fn(&[(StepCpu, f64)]) -> Value| -> Value {
        Value::Object(
            steps
                .iter()
                .map(|(key, samples)| ((*key).to_owned(), f(samples)))
                .collect(),
        )
    };
    serde_json::Map::from_iter([
        (
            "cpu_seconds".to_owned(),
            by_step(|s| json!(s.iter().map(|(c, _)| c.tool).collect::<Vec<_>>())),
        ),
        (
            "registry_cpu_seconds".to_owned(),
            by_step(|s| json!(s.iter().map(|(c, _)| c.registries).collect::<Vec<_>>())),
        ),
        (
            "median_cores_busy".to_owned(),
            by_step(|s| json!(median_cores_busy(s))),
        ),
    ])
}

/// A block of rows of CPU seconds, one per step: the tool's + the registries' in each run,
/// their medians, and the median cores busy; then what that means, and the machine's cores.
pub(super) fn cpu_block(out: &mut String, width: usize, rows: &[(&str, Vec<(StepCpu, f64)>)]) {
    let runs = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    run_header(out, width, "CPU s: the tool's + registries'", runs, "busy");
    for (label, samples) in rows {
        let _ = write!(out, "{label:<width$}");
        let tool: Vec<f64> = samples.iter().map(|(c, _)| c.tool.unwrap_or(0.0)).collect();
        let registries: Vec<f64> = samples.iter().map(|(c, _)| c.registries).collect();
        for (t, r) in tool.iter().zip(&registries) {
            let _ = write!(out, "{:>10}", format!("{t:.2}+{r:.2}"));
        }
        let _ = writeln!(
            out,
            "{:>10}{:>10.2}",
            format!(
                "{:.2}+{:.2}",
                median_or_nan(&tool),
                median_or_nan(&registries)
            ),
            median_cores_busy(samples)
        );
    }
    let _ = writeln!(
        out,
        "(busy: the cores the tool and the registries kept busy together, their CPU seconds over \
         the step's seconds; the machine has {})",
        super::machine::cores()
    );
}

/// A row of peak RSS, one per run, their median and their largest.
pub(super) fn rss_row(out: &mut String, width: usize, label: &str, kib: &[u64]) {
    let _ = write!(out, "{label:<width$}");
    for k in kib {
        let _ = write!(out, "{:>10}", format_mib(*k));
    }
    let as_f64: Vec<f64> = kib.iter().map(|&k| k as f64).collect();
    let _ = writeln!(
        out,
        "{:>10}{:>10}",
        format_mib(median(&as_f64).unwrap_or(0.0) as u64),
        format_mib(kib.iter().copied().max().unwrap_or(0))
    );
}

/// The targets' table: a heading, then a row per target with its verdict.
pub(super) fn verdict_table(out: &mut String, name_width: usize, width: usize, targets: &[Target]) {
    let _ = writeln!(
        out,
        "{:<name_width$}{:>width$}{:>width$}   verdict",
        "target", "measured", "limit"
    );
    for t in targets {
        let _ = writeln!(
            out,
            "{:<name_width$}{:>width$}{:>width$}   {}",
            t.name,
            t.measured,
            t.limit,
            verdict(t.pass)
        );
    }
}

/// Rows reported beside the targets' table, without a verdict: (name, value).
pub(super) fn reported_rows(out: &mut String, rows: &[(String, String)]) {
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<52}{value:>11}{:>11}   (reported)", "-");
    }
}

/// The targets as JSON, the limit under `limit_key` (`limit`, `at_most`, `at_least`), with
/// the text of the table's columns (`measured`, `target`, and `hoist`, `peer`, `bound` where the
/// scenario gave them), from which `cargo xtask bench --readme` writes its table.
pub(super) fn targets_json(targets: &[Target], limit_key: &str) -> Vec<Value> {
    targets
        .iter()
        .map(|t| {
            let mut value = json!({ "name": t.name, "value": t.value });
            value[limit_key] = json!(t.limit_value);
            value["pass"] = json!(t.pass);
            value["measured"] = json!(t.measured);
            value["target"] = json!(t.limit);
            for (key, text) in [("hoist", &t.hoist), ("peer", &t.peer), ("bound", &t.bound)] {
                if !text.is_empty() {
                    value[key] = json!(text);
                }
            }
            value
        })
        .collect()
}

/// Figures reported without a verdict, as JSON.
pub(super) fn reported_json(rows: Vec<(String, String)>) -> Vec<Value> {
    rows.into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// Writes `json` into `bench_dir/SCENARIO.json`, then prints `table` and where the JSON went.
pub(super) fn write_results(
    bench_dir: &Path,
    scenario: &str,
    json: &Value,
    table: &str,
) -> Result<()> {
    let json_path = bench_dir.join(format!("{scenario}.json"));
    let mut text = serde_json::to_string_pretty(json)?;
    text.push('\n');
    fs::write(&json_path, text).with_context(|| format!("cannot write {}", json_path.display()))?;
    println!();
    print!("{table}");
    println!("\nresults: {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
        assert!(median_or_nan(&[]).is_nan());
    }

    #[test]
    fn ranges_are_the_extremes() {
        assert_eq!(min_max(&[2.0, 1.0, 3.0]), (1.0, 3.0));
        assert!(min_max(&[]).0.is_nan());
        assert_eq!(format_spread(&[2.0, 1.0, 3.0]), "2.000 s (1.000–3.000)");
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

    #[test]
    fn order_reverses_in_odd_runs_and_turns_every_second() {
        assert_eq!(alternate([1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(alternate([1, 2, 3], 1), [3, 2, 1]);
        assert_eq!(alternate([1, 2, 3], 2), [2, 3, 1]);
        assert_eq!(alternate([1, 2, 3], 3), [1, 3, 2]);
        assert_eq!(alternate([1, 2, 3], 6), [1, 2, 3]);
        // Three items over six runs: every one in every place twice.
        for item in 1..=3 {
            let mut places = [0; 3];
            for index in 0..6 {
                let order = alternate([1, 2, 3], index);
                places[order.iter().position(|&i| i == item).unwrap()] += 1;
            }
            assert_eq!(places, [2, 2, 2], "item {item}");
        }
        // Ten steps (the client scenario) over six runs: each one in both halves of the order,
        // never kept to one.
        for item in 0..10 {
            let places: Vec<usize> = (0..6)
                .map(|index| {
                    let order = alternate(std::array::from_fn::<usize, 10, _>(|i| i), index);
                    order.iter().position(|&i| i == item).unwrap()
                })
                .collect();
            assert!(
                places.iter().any(|&p| p < 5) && places.iter().any(|&p| p >= 5),
                "{places:?}"
            );
        }
        assert_eq!(alternate::<u8, 0>([], 3), [0u8; 0]);
        let runs = vec![vec![(1, 0.5), (2, 1.0)], vec![(2, 2.0)], vec![(1, 0.7)]];
        assert_eq!(in_each_run(&runs, |s| s.0 == 1), [(1, 0.5), (1, 0.7)]);
    }

    #[test]
    fn ratios_and_verdicts_are_formatted() {
        assert_eq!(format_ratio(1.0), "1.00×");
        assert_eq!(format_ratio(1.234), "1.23×");
        assert_eq!(format_mib(32 * 1024), "32.0 MiB");
        assert_eq!(verdict(true), "PASS");
        assert_eq!(verdict(false), "FAIL");
        assert!((rate_mb_s(1_000_000_000, 2.0) - 500.0).abs() < 1e-9);
        assert!(Target::at_most("x", 1.1, 1.1).pass);
        assert!(!Target::below("x", 1.0, 1.0).pass);
        assert_eq!(Target::at_least("x", 2.5, 2.0).limit, "≥ 2.00×");
        assert!(!Target::rss_below("x", 64 * 1024, 64 * 1024).pass);
        assert_eq!(ballast_note(&[0, 0]), "no ballast");
        assert_eq!(
            ballast_note(&[1 << 30, 2 << 30]),
            "up to 2048 MiB ballast before each run"
        );
        let json = targets_json(&[Target::at_most("x", 0.5, 1.0)], "at_most");
        assert_eq!(json[0]["at_most"], json!(1.0));
        assert_eq!(json[0]["pass"], json!(true));
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
    fn time_lines_are_parsed() {
        assert_eq!(
            parse_time_line("4.51 0.62 20480\n"),
            Some(Usage {
                user: 4.51,
                sys: 0.62,
                peak_rss_kib: 20480
            })
        );
        assert_eq!(
            parse_time_line("Command exited with non-zero status 1\n0.00 0.00 1234\n")
                .map(|u| u.peak_rss_kib),
            Some(1234)
        );
        assert_eq!(parse_time_line("Command terminated by signal 9\n"), None);
        assert_eq!(parse_time_line(""), None);
    }
}
