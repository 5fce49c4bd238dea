//! What the layout scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{RATIO_LIMIT, RSS_LIMIT_KIB, Sample, Tool};
use crate::bench::measure::{
    Runs, Target, format_mib, format_ratio, in_each_run, median_or_nan, rate_mb_s, targets_json,
    verdict_table,
};

fn ratio_target(name: &'static str, ratio: f64) -> Target {
    Target {
        name,
        measured: format_ratio(ratio),
        limit: format_ratio(RATIO_LIMIT),
        pass: ratio <= RATIO_LIMIT,
        value: ratio,
        limit_value: RATIO_LIMIT,
        hoist: String::new(),
        peer: String::new(),
        bound: String::new(),
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
        hoist: format_mib(kib),
        peer: String::new(),
        bound: String::new(),
    }
}

/// Everything measured in one invocation, and what follows from it.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) size_bytes: u64,
    pub(super) pause_secs: u64,
    /// The ballast written before each run, in bytes.
    pub(super) ballast_bytes: Vec<u64>,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) digest: String,
    /// The samples of each run, in the order they were taken.
    pub(super) runs: Vec<Vec<Sample>>,
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

    pub(super) fn table(&self) -> String {
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
            "layout bench: {} MiB of random data, {}, each writing into fresh \
             directories after\n{ballast}; tool order alternates between runs (odd runs: dd \
             first; even runs: push first);\n{} s pause after each run's deletion\n",
            self.size_bytes >> 20,
            Runs {
                warm_up: self.warm_up,
                counted: runs
            }
            .describe(),
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

    pub(super) fn to_json(&self) -> Value {
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
            "warm_up_runs": self.warm_up,
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
            warm_up: 1,
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
}
