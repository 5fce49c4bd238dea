//! What the images scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{FIFTY, INTAKE_LIMIT, PLATFORMS, PULL_VS_ORAS, PUSH_VS_ORAS, RSS_LIMIT, Sample, Step};
use crate::bench::measure::{
    Runs, StepCpu, Target, ballast_note, cpu_block, cpu_json, format_mib, format_ratio,
    format_seconds, format_spread, in_each_run, median_cores_busy, median_or_nan, min_max,
    reported_json, reported_rows, rss_row, run_header, seconds_row, targets_json, verdict_table,
};

/// A comparison with a verdict: its names (time, RSS), hoist's step, the step its time is
/// compared with and its limit, and the step its peak RSS is compared with.
struct Compared {
    names: [&'static str; 2],
    hoist: Step,
    time_vs: Step,
    time_limit: f64,
    rss_vs: Step,
}

const COMPARED: [Compared; 3] = [
    Compared {
        names: [
            "50 layers pull: hoist / oras",
            "50 layers pull: hoist peak RSS / oras's",
        ],
        hoist: Step::HoistPull,
        time_vs: Step::OrasPull,
        time_limit: PULL_VS_ORAS,
        rss_vs: Step::OrasPull,
    },
    Compared {
        names: [
            "50 layers push: hoist / oras",
            "50 layers push: hoist peak RSS / oras's",
        ],
        hoist: Step::HoistPush,
        time_vs: Step::OrasPush,
        time_limit: PUSH_VS_ORAS,
        rss_vs: Step::OrasPush,
    },
    Compared {
        names: [
            "4-platform index copy: hoist / target's intake",
            "4-platform index copy: hoist peak RSS / oras's",
        ],
        hoist: Step::HoistIndex,
        time_vs: Step::Intake,
        time_limit: INTAKE_LIMIT,
        rss_vs: Step::OrasIndex,
    },
];

/// Everything the scenario measured.
#[derive(Debug)]
pub(super) struct ImagesReport {
    pub(super) fifty_bytes: u64,
    pub(super) index_bytes: u64,
    pub(super) fifty_digest: String,
    pub(super) index_digest: String,
    pub(super) versions: Vec<String>,
    pub(super) hoist_revision: String,
    pub(super) ballast_bytes: Vec<u64>,
    /// The uncounted warm-up runs before them (0 with `--quick`).
    pub(super) warm_up: usize,
    /// The counted runs (the warm-up left out).
    pub(super) runs: Vec<Vec<Sample>>,
}

impl ImagesReport {
    fn samples(&self, step: Step) -> Vec<Sample> {
        in_each_run(&self.runs, |s| s.step == step)
    }

    fn seconds(&self, step: Step) -> Vec<f64> {
        self.samples(step).iter().map(|s| s.seconds).collect()
    }

    fn median(&self, step: Step) -> f64 {
        median_or_nan(&self.seconds(step))
    }

    /// Each run's CPU use of `step`, with the step's seconds.
    fn cpu(&self, step: Step) -> Vec<(StepCpu, f64)> {
        self.samples(step)
            .iter()
            .map(|s| (s.cpu, s.seconds))
            .collect()
    }

    fn median_busy(&self, step: Step) -> f64 {
        median_cores_busy(&self.cpu(step))
    }

    fn max_rss(&self, step: Step) -> u64 {
        self.samples(step)
            .iter()
            .filter_map(|s| s.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// How the README's table names what a step's figure is of.
    fn who(step: Step) -> &'static str {
        match step {
            Step::OrasPull | Step::OrasPush | Step::OrasIndex => "oras",
            Step::SkopeoPull | Step::SkopeoPush | Step::SkopeoIndex => "skopeo",
            Step::Intake => "curl upload",
            Step::HoistPull | Step::HoistPush | Step::HoistIndex => "hoist",
        }
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for c in &COMPARED {
            let (hoist, other) = (self.median(c.hoist), self.median(c.time_vs));
            let target = Target::at_most(c.names[0], hoist / other, c.time_limit);
            let (hoist_text, other_text) = (
                format_seconds(hoist, ""),
                format_seconds(other, Self::who(c.time_vs)),
            );
            targets.push(if c.time_vs == Step::Intake {
                target.versus_bound(hoist_text, other_text)
            } else {
                target.versus_peer(hoist_text, other_text)
            });
            let (hoist, other) = (self.max_rss(c.hoist), self.max_rss(c.rss_vs));
            targets.push(
                Target::at_most(c.names[1], hoist as f64 / other as f64, RSS_LIMIT).versus_peer(
                    format_mib(hoist),
                    format!("{} {}", format_mib(other), Self::who(c.rss_vs)),
                ),
            );
        }
        targets
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    fn reported(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "50 layers pull: hoist / skopeo".to_owned(),
                format_ratio(self.median(Step::HoistPull) / self.median(Step::SkopeoPull)),
            ),
            (
                "50 layers push: hoist / skopeo".to_owned(),
                format_ratio(self.median(Step::HoistPush) / self.median(Step::SkopeoPush)),
            ),
            (
                "4-platform index copy: hoist / oras".to_owned(),
                format_ratio(self.median(Step::HoistIndex) / self.median(Step::OrasIndex)),
            ),
            (
                "4-platform index copy: hoist / skopeo --all".to_owned(),
                format_ratio(self.median(Step::HoistIndex) / self.median(Step::SkopeoIndex)),
            ),
        ];
        for (name, hoist, other) in [
            ("50 layers pull", Step::HoistPull, Step::OrasPull),
            ("50 layers push", Step::HoistPush, Step::OrasPush),
            ("index copy", Step::HoistIndex, Step::Intake),
        ] {
            rows.push((
                format!(
                    "{name}: cores busy, {} / {}",
                    Self::who(hoist),
                    Self::who(other)
                ),
                format!(
                    "{:.2} / {:.2}",
                    self.median_busy(hoist),
                    self.median_busy(other)
                ),
            ));
        }
        for step in [Step::HoistPull, Step::HoistPush, Step::HoistIndex] {
            rows.push((
                format!("{}, median (min–max)", step.label()),
                format_spread(&self.seconds(step)),
            ));
        }
        rows
    }

    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let runs = self.runs.len();
        let _ = writeln!(
            out,
            "images bench: a {FIFTY}-layer image ({:.1} MB of layers, {}) pulled and pushed, and \
             a {}-platform index ({:.1} MB of layers, {}) copied to a new registry;\nhoist copy \
             beside oras cp and skopeo copy, docker-registry on loopback, a fresh registry for \
             every push and copy;\n{}, order reversing between runs and turning every second run, {}; {}; hoist built from \
             {}\n",
            self.fifty_bytes as f64 / 1e6,
            self.fifty_digest,
            PLATFORMS.len(),
            self.index_bytes as f64 / 1e6,
            self.index_digest,
            Runs {
                warm_up: self.warm_up,
                counted: runs
            }
            .describe(),
            ballast_note(&self.ballast_bytes),
            self.versions.join(", "),
            self.hoist_revision,
        );
        run_header(&mut out, 36, "seconds (MB/s of the layers)", runs, "MB/s");
        for step in Step::ALL {
            let bytes = match step {
                Step::HoistIndex | Step::OrasIndex | Step::SkopeoIndex | Step::Intake => {
                    self.index_bytes
                }
                _ => self.fifty_bytes,
            };
            seconds_row(&mut out, 36, step.label(), &self.seconds(step), bytes);
        }
        run_header(&mut out, 36, "peak RSS", runs, "max");
        for step in Step::ALL.into_iter().filter(|s| s.is_tool()) {
            let rss: Vec<u64> = self
                .samples(step)
                .iter()
                .filter_map(|s| s.peak_rss_kib)
                .collect();
            rss_row(&mut out, 36, step.label(), &rss);
        }
        let cpu: Vec<(&str, Vec<(StepCpu, f64)>)> = Step::ALL
            .iter()
            .map(|&step| (step.label(), self.cpu(step)))
            .collect();
        cpu_block(&mut out, 36, &cpu);
        let _ = writeln!(out);
        verdict_table(&mut out, 52, 11, &self.targets());
        reported_rows(&mut out, &self.reported());
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let by_step = |f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
            Step::ALL
                .iter()
                .map(|&s| (s.key().to_owned(), f(s)))
                .collect()
        };
        let mut value = json!({
            "scenario": "images",
            "fifty_layers": FIFTY,
            "fifty_layer_bytes": self.fifty_bytes,
            "fifty_manifest": self.fifty_digest,
            "index_platforms": PLATFORMS,
            "index_layer_bytes": self.index_bytes,
            "index_digest": self.index_digest,
            "versions": self.versions,
            "hoist_revision": self.hoist_revision,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "ballast_bytes": self.ballast_bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "min_max_seconds": by_step(&|s| {
                let (min, max) = min_max(&self.seconds(s));
                json!([min, max])
            }),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().filter_map(|x| x.peak_rss_kib).collect::<Vec<_>>())),
            "targets": targets_json(&self.targets(), "at_most"),
            "reported": reported_json(self.reported()),
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

    #[test]
    fn hoist_is_compared_with_oras_and_the_intake() {
        let run = |scale: f64| -> Vec<Sample> {
            Step::ALL
                .iter()
                .map(|&step| {
                    let (seconds, kib) = match step {
                        Step::HoistPull | Step::HoistPush | Step::HoistIndex => (1.0, 20_000),
                        Step::Intake => (1.0, 0),
                        _ => (2.0, 40_000),
                    };
                    Sample {
                        step,
                        seconds: seconds * scale,
                        peak_rss_kib: step.is_tool().then_some(kib),
                        cpu: StepCpu {
                            tool: step.is_tool().then_some(seconds * scale / 2.0),
                            registries: seconds * scale,
                        },
                    }
                })
                .collect()
        };
        let report = ImagesReport {
            fifty_bytes: 128_000_000,
            index_bytes: 128_000_000,
            fifty_digest: "sha256:00".to_owned(),
            index_digest: "sha256:11".to_owned(),
            versions: vec!["skopeo 1.9.3".to_owned()],
            hoist_revision: "abc".to_owned(),
            ballast_bytes: vec![0; 5],
            warm_up: 1,
            runs: vec![run(1.0), run(1.1), run(0.9), run(1.0), run(1.0)],
        };
        let targets = report.targets();
        let verdicts: Vec<bool> = targets.iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [true, true, true, true, true, true]);
        assert!((targets[4].value - 1.0).abs() < 1e-9);
        assert_eq!(targets[4].bound, "1.000 s curl upload");
        assert_eq!(targets[0].peer, "2.000 s oras");
        assert_eq!(targets[5].peer, "39.1 MiB oras");
        let table = report.table();
        assert!(table.contains("index copy: skopeo copy --all"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        let json = report.to_json();
        assert_eq!(json["median_seconds"]["fifty_pull_hoist"], json!(1.0));
        assert_eq!(
            json["min_max_seconds"]["fifty_pull_oras"],
            json!([1.8, 2.2])
        );
        assert_eq!(json["reported"][0]["value"], json!("0.50×"));
        // The tool took half a core and the registries one: 1.5 cores busy; the intake's
        // curls are not counted.
        assert_eq!(json["median_cores_busy"]["fifty_pull_hoist"], json!(1.5));
        assert_eq!(json["median_cores_busy"]["index_curl_upload"], json!(1.0));
        assert_eq!(json["reported"][4]["value"], json!("1.50 / 1.50"));
        assert!(table.contains("0.50+1.00"), "{table}");
    }
}
