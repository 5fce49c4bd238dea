//! What a run of several scenarios makes of their results, shared by all of them: each
//! scenario's `target/bench/NAME.json` read back, one row per target (and per figure reported
//! without one), `target/bench/all.json`, and the benchmark section of `README.md` between
//! [`START`] and [`END`].
//!
//! The rows come from the JSON files rather than from the scenarios' reports, so that the
//! combined results say exactly what each scenario's own file says.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::data::read_json;
use super::machine::MachineInfo;
use super::{BenchCmd, Scenario};

/// The markers around the part of `README.md` that `--readme` rewrites.
pub(super) const START: &str = "<!-- bench:start -->";
pub(super) const END: &str = "<!-- bench:end -->";
/// The section `--readme` adds, before [`BEFORE_HEADING`], when the README has no markers.
const HEADING: &str = "## Benchmark";
const BEFORE_HEADING: &str = "## Using the library";

/// Runs a scenario (`run`) and reads back the `bench_dir/NAME.json` it wrote. A file left by an
/// earlier run is removed first, so that a failing scenario cannot pass off old results.
pub(super) fn run_and_read(
    bench_dir: &Path,
    name: &str,
    run: impl FnOnce() -> Result<()>,
) -> Result<Value> {
    let path = bench_dir.join(format!("{name}.json"));
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    run()?;
    read_json(&path)
}

/// One row of the combined table: a target, or a figure reported without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) scenario: String,
    pub(super) what: String,
    pub(super) hoist: String,
    pub(super) peer: String,
    pub(super) limit: String,
    /// The measured ratio (or figure, for a peak RSS under a fixed limit).
    pub(super) ratio: String,
    pub(super) target: String,
    /// `PASS`, `FAIL`, or `reported` for a figure without a target.
    pub(super) verdict: String,
}

/// The rows of the scenarios that ran, in their order: every entry of each file's `targets`,
/// then of its top-level `reported`.
pub(super) fn rows(done: &[(&str, Value)]) -> Vec<Row> {
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let mut rows = Vec::new();
    for (scenario, json) in done {
        for t in json["targets"].as_array().into_iter().flatten() {
            let ratio = match t["measured"].as_str() {
                Some(measured) => measured.to_owned(),
                None => format!("{:.2}", t["value"].as_f64().unwrap_or(f64::NAN)),
            };
            let pass = t["pass"].as_bool().unwrap_or(false);
            rows.push(Row {
                scenario: (*scenario).to_owned(),
                what: text(t, "name"),
                hoist: text(t, "hoist"),
                peer: text(t, "peer"),
                limit: text(t, "bound"),
                ratio,
                target: text(t, "target"),
                verdict: if pass { "PASS" } else { "FAIL" }.to_owned(),
            });
        }
        for r in json["reported"].as_array().into_iter().flatten() {
            let value = match &r["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push(Row {
                scenario: (*scenario).to_owned(),
                what: text(r, "name"),
                hoist: value,
                peer: text(r, "peer"),
                limit: text(r, "bound"),
                ratio: text(r, "ratio"),
                target: String::new(),
                verdict: "reported".to_owned(),
            });
        }
    }
    rows
}

/// A Markdown table of `rows`; empty cells show `–`.
pub(super) fn markdown_table(rows: &[Row]) -> String {
    let cell = |text: &str| {
        if text.is_empty() {
            "–".to_owned()
        } else {
            text.replace('|', "\\|")
        }
    };
    let mut out = String::from(
        "| scenario | what | hoist | peer(s) | limit | ratio | target | verdict |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let cells = [
            &r.scenario,
            &r.what,
            &r.hoist,
            &r.peer,
            &r.limit,
            &r.ratio,
            &r.target,
            &r.verdict,
        ];
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The date and time now, in UTC (`2025-01-31 12:34 UTC`), by `date -u`.
pub(super) fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown date".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// Writes `bench_dir/all.json`: the date, the machine, the command line, every scenario's own
/// JSON, the rows of all of them, and the scenarios that failed.
pub(super) fn write_all(
    bench_dir: &Path,
    cmd: &BenchCmd,
    done: &[(&str, Value)],
    failed: &[(&str, String)],
    rows: &[Row],
) -> Result<PathBuf> {
    let machine = MachineInfo::read();
    let scenarios: serde_json::Map<String, Value> = done
        .iter()
        .map(|(name, json)| ((*name).to_owned(), json.clone()))
        .collect();
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "scenario": r.scenario, "what": r.what, "hoist": r.hoist, "peer": r.peer,
                "limit": r.limit, "ratio": r.ratio, "target": r.target, "verdict": r.verdict,
            })
        })
        .collect();
    let all = json!({
        "date": utc_now(),
        "command": cmd.command,
        "machine": {
            "cores": machine.cores,
            "cpu": machine.cpu,
            "mem_total_kib": machine.mem_total_kib,
            "kernel": machine.kernel,
        },
        "scenarios": scenarios,
        "rows": rows,
        "failed": failed.iter()
            .map(|(name, error)| json!({ "scenario": name, "error": error }))
            .collect::<Vec<_>>(),
    });
    fs::create_dir_all(bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;
    let path = bench_dir.join("all.json");
    let mut text = serde_json::to_string_pretty(&all)?;
    text.push('\n');
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// What goes between the markers: the table, then the date, the machine and the command, and
/// the scenarios that failed if any did.
pub(super) fn section(
    rows: &[Row],
    date: &str,
    machine: &str,
    command: &str,
    failed: &[(&str, String)],
) -> String {
    let mut out = markdown_table(rows);
    let _ = writeln!(out, "\nMeasured {date} on {machine}, by `{command}`.");
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        let _ = writeln!(
            out,
            "Scenarios that failed in that run, so not shown: {}.",
            names.join(", ")
        );
    }
    out
}

/// `readme` with a benchmark section holding empty markers added before
/// [`BEFORE_HEADING`], unless it already has the markers.
pub(super) fn with_markers(readme: &str) -> Result<String> {
    if readme.contains(START) || readme.contains(END) {
        return Ok(readme.to_owned());
    }
    let at = readme
        .find(&format!("\n{BEFORE_HEADING}\n"))
        .map(|at| at + 1)
        .with_context(|| {
            format!("README.md has neither the markers {START} … {END} nor a `{BEFORE_HEADING}` heading to put them before")
        })?;
    let added = format!(
        "{HEADING}\n\nFigures of `cargo xtask bench --readme`: hoist beside its peers and the \
         machine's own limits, as ratios of medians measured in one run.\n\n{START}\n{END}\n\n"
    );
    Ok(format!("{}{added}{}", &readme[..at], &readme[at..]))
}

/// `text` with what lies between [`START`] and [`END`] replaced by `body`; fails unless both
/// markers are there once, in that order.
pub(super) fn replace_between_markers(text: &str, body: &str) -> Result<String> {
    let count = |marker: &str| text.matches(marker).count();
    if count(START) != 1 || count(END) != 1 {
        bail!(
            "the README needs the markers {START} and {END} once each (found {} and {})",
            count(START),
            count(END)
        );
    }
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        bail!("the README needs the markers {START} and {END}");
    };
    if end < start {
        bail!("{END} comes before {START} in the README");
    }
    let body = body.trim_end_matches('\n');
    Ok(format!(
        "{}{START}\n{body}\n{END}{}",
        &text[..start],
        &text[end + END.len()..]
    ))
}

/// The section after a run of some scenarios only (`done`, in `rows`; `failed`): the rows of
/// the other scenarios stay as `old` (the section as it was) has them, each scenario's rows in
/// [`Scenario::ALL`]'s order, and the lines under the old table stay too, with a line for this
/// run added. A scenario re-run on its own (one that failed, or one measured again) then joins
/// the published table without hiding the others, and the section says which run gave what.
pub(super) fn merged_section(
    old: &str,
    rows: &[Row],
    done: &[&str],
    date: &str,
    machine: &str,
    command: &str,
    failed: &[(&str, String)],
) -> String {
    let scenario_of = |line: &str| -> Option<String> {
        let cell = line.strip_prefix("| ")?.split(" | ").next()?;
        (cell != "scenario" && !cell.starts_with("---")).then(|| cell.to_owned())
    };
    let new_table = markdown_table(rows);
    let mut out = markdown_table(&[]);
    for scenario in Scenario::ALL.map(Scenario::name) {
        // A scenario's rows from this run when it ran, else from the section as it was.
        let source = if done.contains(&scenario) {
            new_table.as_str()
        } else {
            old
        };
        for line in source
            .lines()
            .filter(|l| scenario_of(l).as_deref() == Some(scenario))
        {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out);
    const FAILED: &str = "Scenarios that failed in that run, so not shown: ";
    for line in old
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('|'))
    {
        match line.strip_prefix(FAILED) {
            Some(names) => {
                let still: Vec<&str> = names
                    .trim_end_matches('.')
                    .split(", ")
                    .filter(|name| !done.contains(name))
                    .collect();
                if !still.is_empty() {
                    let _ = writeln!(out, "{FAILED}{}.", still.join(", "));
                }
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let _ = writeln!(
        out,
        "Rows of {}: measured {date} on {machine}, by `{command}`.",
        done.join(", ")
    );
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        let _ = writeln!(
            out,
            "Scenarios that failed in the run of `{command}` (their earlier rows, if any, kept): {}.",
            names.join(", ")
        );
    }
    out
}

/// Rewrites the benchmark section of `root/README.md` with `rows`, the date, the machine and
/// the command line; returns the README's path. After a run of every scenario the section is
/// replaced; after a run of some ([`merged_section`]), the others' rows stay.
pub(super) fn rewrite_readme(
    root: &Path,
    cmd: &BenchCmd,
    rows: &[Row],
    done: &[&str],
    failed: &[(&str, String)],
) -> Result<PathBuf> {
    let path = root.join("README.md");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = with_markers(&text)?;
    let (date, machine) = (utc_now(), MachineInfo::read().describe());
    let body = if cmd.scenarios.len() == Scenario::ALL.len() {
        section(rows, &date, &machine, &cmd.command, failed)
    } else {
        let old = match (text.find(START), text.find(END)) {
            (Some(start), Some(end)) if start < end => &text[start + START.len()..end],
            _ => "",
        };
        merged_section(old, rows, done, &date, &machine, &cmd.command, failed)
    };
    let text = replace_between_markers(&text, &body)?;
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(what: &str, verdict: &str) -> Row {
        Row {
            scenario: "client".to_owned(),
            what: what.to_owned(),
            hoist: "2.700 s".to_owned(),
            peer: "4.000 s skopeo".to_owned(),
            limit: String::new(),
            ratio: "0.68×".to_owned(),
            target: "≤ 0.75×".to_owned(),
            verdict: verdict.to_owned(),
        }
    }

    #[test]
    fn rows_come_from_targets_and_reported_figures() {
        let json = json!({
            "targets": [
                { "name": "pull: hoist / skopeo", "value": 0.675, "at_most": 0.75, "pass": true,
                  "measured": "0.68×", "target": "≤ 0.75×", "hoist": "2.700 s",
                  "peer": "4.000 s skopeo" },
                { "name": "old", "value": 1.5, "limit": 1.2, "pass": false },
            ],
            "reported": [{ "name": "mount", "value": "0.1 s" }],
        });
        let rows = rows(&[("client", json)]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], row("pull: hoist / skopeo", "PASS"));
        assert_eq!(
            (rows[1].ratio.as_str(), rows[1].verdict.as_str()),
            ("1.50", "FAIL")
        );
        assert_eq!(
            (rows[2].hoist.as_str(), rows[2].verdict.as_str()),
            ("0.1 s", "reported")
        );
        let table = markdown_table(&rows);
        assert!(
            table.starts_with("| scenario | what | hoist | peer(s) | limit |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| client | pull: hoist / skopeo | 2.700 s | 4.000 s skopeo | – | 0.68× | ≤ 0.75× | PASS |"
            ),
            "{table}"
        );
        assert_eq!(table.lines().count(), 5);
    }

    #[test]
    fn a_run_of_some_scenarios_keeps_the_rows_of_the_others() {
        let old = "\n| scenario | what | hoist | peer(s) | limit | ratio | target | verdict |\n\
                   |---|---|---|---|---|---|---|---|\n\
                   | startup | digest | 2 ms | – | – | 0.19× | ≤ 0.20× | PASS |\n\
                   | client | old pull | 1 s | – | – | 0.7× | ≤ 0.80× | PASS |\n\
                   | bucket | push | – | – | – | 0.49 | – | PASS |\n\
                   \nMeasured 2026-12-05 16:49 UTC on 2 cores, by `cargo xtask bench --readme`.\n\
                   Scenarios that failed in that run, so not shown: unpack, archive.\n";
        let mut new = row("unpack: hoist / umoci", "PASS");
        new.scenario = "unpack".to_owned();
        let mut client = row("new pull", "FAIL");
        client.scenario = "client".to_owned();
        let merged = merged_section(
            old,
            &[client, new],
            &["client", "unpack"],
            "2026-12-05 17:20 UTC",
            "2 cores",
            "cargo xtask bench client unpack --readme",
            &[],
        );
        let lines: Vec<&str> = merged.lines().collect();
        assert!(lines[2].starts_with("| startup | digest"), "{merged}");
        assert!(lines[3].starts_with("| client | new pull"), "{merged}");
        assert!(lines[4].starts_with("| bucket | push"), "{merged}");
        assert!(lines[5].starts_with("| unpack | unpack: hoist"), "{merged}");
        assert!(!merged.contains("old pull"), "{merged}");
        assert!(merged.contains("Measured 2026-12-05 16:49 UTC"), "{merged}");
        assert!(
            merged.contains("Scenarios that failed in that run, so not shown: archive.\n"),
            "{merged}"
        );
        assert!(
            merged.contains(
                "Rows of client, unpack: measured 2026-12-05 17:20 UTC on 2 cores, by \
                 `cargo xtask bench client unpack --readme`."
            ),
            "{merged}"
        );
    }

    #[test]
    fn the_section_between_the_markers_is_replaced() -> Result<()> {
        let text = format!("# hoist\n\n{START}\nold table\n{END}\n\n## Using the library\n");
        let new = replace_between_markers(&text, "new table\n")?;
        assert_eq!(
            new,
            format!("# hoist\n\n{START}\nnew table\n{END}\n\n## Using the library\n")
        );
        // Rewriting again gives the same text: the markers stay, once each.
        assert_eq!(replace_between_markers(&new, "new table")?, new);
        Ok(())
    }

    #[test]
    fn missing_or_misplaced_markers_are_clear_errors() {
        for text in [
            "# hoist\n".to_owned(),
            format!("{START}\nno end\n"),
            format!("{END}\n{START}\n"),
            format!("{START}\n{START}\n{END}\n"),
        ] {
            let err = replace_between_markers(&text, "x")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("bench:"), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn markers_are_added_before_using_the_library() -> Result<()> {
        let text = "# hoist\n\n## Installing\n\ntext\n\n## Using the library\n\nmore\n";
        let added = with_markers(text)?;
        let at = |s: &str| added.find(s).unwrap_or(usize::MAX);
        assert!(at("## Installing") < at(HEADING));
        assert!(at(HEADING) < at(START) && at(START) < at(END));
        assert!(at(END) < at("## Using the library"));
        assert!(added.ends_with("## Using the library\n\nmore\n"));
        assert_eq!(with_markers(&added)?, added);
        assert!(with_markers("# hoist\n").is_err());
        let body = section(
            &[row("pull: hoist / skopeo", "PASS")],
            "2025-01-31 12:34 UTC",
            "2 cores",
            "cargo xtask bench --readme",
            &[("archive", "no docker".to_owned())],
        );
        let done = replace_between_markers(&added, &body)?;
        assert!(done.contains(
            "Measured 2025-01-31 12:34 UTC on 2 cores, by `cargo xtask bench --readme`."
        ));
        assert!(done.contains("failed in that run, so not shown: archive."));
        Ok(())
    }
}
