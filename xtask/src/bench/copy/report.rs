//! What the copy scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{BOUND_LIMIT, JOBS, LAYERS, Sample, Step};
use crate::bench::measure::{
    Runs, StepCpu, Target, ballast_note, cpu_block, cpu_json, format_mib, format_ratio,
    format_seconds, in_each_run, median_cores_busy, median_or_nan, ratio_row, run_header,
    seconds_row, targets_json, verdict_table,
};

/// Everything the copy scenario measured.
#[derive(Debug)]
pub(super) struct CopyReport {
    /// Bytes of the layers.
    pub(super) layer_bytes: u64,
    pub(super) manifest_digest: String,
    /// hoist's revision, skopeo's and oras's versions (their first lines).
    pub(super) versions: [String; 3],
    pub(super) pause_secs: u64,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) ballast_bytes: Vec<u64>,
    pub(super) runs: Vec<Vec<Sample>>,
}

impl CopyReport {
    fn seconds(&self, step: Step) -> Vec<f64> {
        in_each_run(&self.runs, |s| s.step == step)
            .iter()
            .map(|s| s.seconds)
            .collect()
    }

    fn median(&self, step: Step) -> f64 {
        median_or_nan(&self.seconds(step))
    }

    fn rss(&self, step: Step) -> Vec<u64> {
        in_each_run(&self.runs, |s| s.step == step)
            .iter()
            .filter_map(|s| s.peak_rss_kib)
            .collect()
    }

    /// Each run's CPU use of `step`, with the step's seconds.
    fn cpu(&self, step: Step) -> Vec<(StepCpu, f64)> {
        in_each_run(&self.runs, |s| s.step == step)
            .iter()
            .map(|s| (s.cpu, s.seconds))
            .collect()
    }

    fn median_rss(&self, step: Step) -> u64 {
        let kib: Vec<f64> = self.rss(step).iter().map(|&k| k as f64).collect();
        let m = median_or_nan(&kib);
        if m.is_finite() { m as u64 } else { 0 }
    }

    fn tool_versions(&self) -> (String, String) {
        let skopeo = self.versions[1].replace("skopeo version", "skopeo");
        let words: Vec<&str> = self.versions[2].split_whitespace().collect();
        let oras = match words.as_slice() {
            ["Version:", v] => format!("oras {v}"),
            _ => self.versions[2].clone(),
        };
        (skopeo, oras)
    }

    /// hoist's copy over `other`'s, run by run.
    fn run_ratios(&self, other: Step) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| {
                let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
                Some(at(Step::Hoist)? / at(other)?)
            })
            .collect()
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let (hoist, intake) = (self.median(Step::Hoist), self.median(Step::Intake));
        vec![
            Target::at_most(
                "registry to registry: hoist / curl upload",
                hoist / intake,
                BOUND_LIMIT,
            )
            .versus_bound(
                format_seconds(hoist, ""),
                format_seconds(intake, "curl upload"),
            ),
        ]
    }

    /// Figures without a target, as rows for the table and the README: hoist against skopeo
    /// and oras, the copy within one registry against the one between two, and peak RSS.
    fn reported(&self) -> Vec<Value> {
        let hoist = self.median(Step::Hoist);
        let mut rows = Vec::new();
        for (peer, name) in [(Step::Skopeo, "skopeo"), (Step::Oras, "oras")] {
            let m = self.median(peer);
            rows.push(json!({
                "name": format!("registry to registry: hoist / {name}"),
                "value": format_seconds(hoist, ""),
                "peer": format_seconds(m, name),
                "ratio": format_ratio(hoist / m),
            }));
        }
        let mount = self.median(Step::Mount);
        rows.push(json!({
            "name": "within one registry (mounts): hoist / hoist between two",
            "value": format_seconds(mount, ""),
            "bound": format_seconds(hoist, "hoist copy between two"),
            "ratio": format_ratio(mount / hoist),
        }));
        // Not a ratio: how much of the machine each kept busy (with the registries).
        rows.push(json!({
            "name": "registry to registry: cores busy, hoist / curl upload",
            "value": format!("{:.2} cores", median_cores_busy(&self.cpu(Step::Hoist))),
            "bound": format!(
                "{:.2} cores curl upload",
                median_cores_busy(&self.cpu(Step::Intake))
            ),
            "ratio": "",
        }));
        let hoist_rss = self.median_rss(Step::Hoist);
        for (peer, name) in [(Step::Skopeo, "skopeo"), (Step::Oras, "oras")] {
            let kib = self.median_rss(peer);
            rows.push(json!({
                "name": format!("peak RSS: hoist / {name}"),
                "value": format_mib(hoist_rss),
                "peer": format!("{} {name}", format_mib(kib)),
                "ratio": format_ratio(hoist_rss as f64 / kib as f64),
            }));
        }
        rows
    }

    pub(super) fn table(&self) -> String {
        let runs = self.runs.len();
        let runs_note = Runs {
            warm_up: self.warm_up,
            counted: runs,
        }
        .describe();
        let (skopeo, oras) = self.tool_versions();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "copy bench: hoist copy vs {skopeo} and {oras} between two docker-registries \
             (filesystem storage, loopback), and hoist copy within one;\n{} MiB in {LAYERS} \
             layers of seeded random data, manifest {};\n{runs_note}, {}, {} s pause after \
             each run; step order reverses between runs and turns every second run;\nevery copy between registries into \
             a new registry; intake: {JOBS} blobs at a time (hoist's --jobs);\nhoist built \
             from {}\n",
            self.layer_bytes >> 20,
            self.manifest_digest,
            ballast_note(&self.ballast_bytes),
            self.pause_secs,
            self.versions[0],
        );
        run_header(&mut out, 36, "seconds", runs, "MB/s");
        for step in Step::ALL {
            seconds_row(
                &mut out,
                36,
                step.label(),
                &self.seconds(step),
                self.layer_bytes,
            );
        }
        for (name, other) in [
            ("hoist / curl upload", Step::Intake),
            ("hoist / skopeo", Step::Skopeo),
            ("hoist / oras", Step::Oras),
        ] {
            ratio_row(&mut out, 36, name, &self.run_ratios(other));
        }
        let _ = writeln!(out, "\n{:<36}{:>10}", "peak RSS", "median");
        for step in Step::TOOLS {
            let _ = writeln!(
                out,
                "{:<36}{:>10}",
                step.label(),
                format_mib(self.median_rss(step))
            );
        }
        let cpu: Vec<(&str, Vec<(StepCpu, f64)>)> = Step::ALL
            .iter()
            .map(|&step| (step.label(), self.cpu(step)))
            .collect();
        cpu_block(&mut out, 36, &cpu);
        let _ = writeln!(out);
        verdict_table(&mut out, 58, 10, &self.targets());
        for row in self.reported() {
            let other = row["peer"]
                .as_str()
                .or_else(|| row["bound"].as_str())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<58}{:>10}{:>10}   (reported: {} vs {other})",
                row["name"].as_str().unwrap_or_default(),
                row["ratio"].as_str().unwrap_or_default(),
                "-",
                row["value"].as_str().unwrap_or_default(),
            );
        }
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let by_step =
            |steps: &[Step], f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
                steps.iter().map(|&s| (s.key().to_owned(), f(s))).collect()
            };
        let (skopeo, oras) = self.tool_versions();
        let mut value = json!({
            "scenario": "copy",
            "layers": LAYERS,
            "layer_bytes": self.layer_bytes,
            "manifest_digest": self.manifest_digest,
            "hoist_revision": self.versions[0],
            "skopeo": skopeo,
            "oras": oras,
            "jobs": JOBS,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&Step::ALL, &|s| json!(self.seconds(s))),
            "median_seconds": by_step(&Step::ALL, &|s| json!(self.median(s))),
            "peak_rss_kib": by_step(&Step::TOOLS, &|s| json!(self.rss(s))),
            "ratios_per_run": {
                "hoist_over_upload": self.run_ratios(Step::Intake),
                "hoist_over_skopeo": self.run_ratios(Step::Skopeo),
                "hoist_over_oras": self.run_ratios(Step::Oras),
                "mount_over_hoist": self.runs.iter().filter_map(|run| {
                    let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
                    Some(at(Step::Mount)? / at(Step::Hoist)?)
                }).collect::<Vec<_>>(),
            },
            "targets": targets_json(&self.targets(), "at_most"),
            "reported": self.reported(),
        });
        let cpu: Vec<_> = Step::ALL.iter().map(|&s| (s.key(), self.cpu(s))).collect();
        if let Some(object) = value.as_object_mut() {
            object.extend(cpu_json(&cpu));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hoist: f64) -> CopyReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::Oras, 4.0, Some(40_000)),
                (Step::Skopeo, 5.0, Some(60_000)),
                (Step::Hoist, hoist, Some(20_000)),
                (Step::Intake, 2.5, None),
                (Step::Mount, 0.05, Some(10_000)),
            ]
            .into_iter()
            .map(|(step, s, peak_rss_kib)| Sample {
                step,
                seconds: s * scale,
                peak_rss_kib,
                cpu: StepCpu {
                    tool: peak_rss_kib.map(|_| s * scale),
                    registries: s * scale / 2.0,
                },
            })
            .collect()
        };
        CopyReport {
            layer_bytes: 1 << 30,
            manifest_digest: "sha256:00".to_owned(),
            versions: [
                "c02f2a6".to_owned(),
                "skopeo version 1.9.3".to_owned(),
                "Version:    1.2.0".to_owned(),
            ],
            pause_secs: 20,
            warm_up: 1,
            ballast_bytes: vec![0; 3],
            runs: vec![run(1.0), run(0.9), run(1.2)],
        }
    }

    #[test]
    fn hoist_is_compared_with_the_intake_and_reported_against_its_peers() {
        let report = report(2.7);
        let targets = report.targets();
        assert!((targets[0].value - 2.7 / 2.5).abs() < 1e-9);
        assert!(targets[0].pass);
        assert_eq!(targets[0].bound, "2.500 s curl upload");
        let reported = report.reported();
        assert_eq!(reported[0]["ratio"], json!("0.54×"));
        assert_eq!(reported[1]["peer"], json!("4.000 s oras"));
        assert_eq!(reported[2]["value"], json!("50.0 ms"));
        assert_eq!(reported[3]["value"], json!("1.50 cores"));
        assert_eq!(reported[3]["bound"], json!("0.50 cores curl upload"));
        assert_eq!(reported[5]["ratio"], json!("0.50×"));
        assert_eq!(
            json!(report.to_json()["median_cores_busy"]["curl_upload"]),
            json!(0.5)
        );
        let table = report.table();
        assert!(table.contains("skopeo 1.9.3 and oras 1.2.0"), "{table}");
        assert!(table.contains("within one registry: hoist copy"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        let json = report.to_json();
        assert_eq!(json["median_seconds"]["hoist_copy"], json!(2.7));
        assert_eq!(json["peak_rss_kib"]["oras_cp"], json!(vec![40_000; 3]));
        assert_eq!(
            json["ratios_per_run"]["mount_over_hoist"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn a_slow_copy_fails() {
        let report = report(3.0);
        assert!(!report.targets()[0].pass);
        assert!(report.table().contains("FAIL"));
    }
}
