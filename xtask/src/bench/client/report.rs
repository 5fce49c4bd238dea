//! What the client scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    BOUND_LIMIT, JOBS, LAYER_TYPE, LAYERS, PULL_VS_ORAS, PULL_VS_SKOPEO, PUSH_VS_ORAS,
    PUSH_VS_SKOPEO, RSS_VS_SKOPEO, Sample, Step,
};
use crate::bench::measure::{
    Runs, StepCpu, Target, ballast_note, cpu_block, cpu_json, format_mib, format_seconds,
    in_each_run, median_cores_busy, median_or_nan, ratio_row, run_header, seconds_row,
    targets_json, verdict_table,
};

/// Everything the client scenario measured.
#[derive(Debug)]
pub(super) struct ClientReport {
    /// Bytes of the layers (gzip streams).
    pub(super) layer_bytes: u64,
    /// Random bytes in them.
    pub(super) random_bytes: u64,
    pub(super) manifest_digest: String,
    pub(super) skopeo_version: String,
    pub(super) oras_version: String,
    /// What hoist was built from ([`describe_revision`](crate::bench::machine::describe_revision)).
    pub(super) hoist_revision: String,
    pub(super) pause_secs: u64,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) ballast_bytes: Vec<u64>,
    pub(super) runs: Vec<Vec<Sample>>,
}

impl ClientReport {
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

    /// Figures without a target: the cores busy during the transfers (the tool's CPU and the
    /// registries' over the step's seconds), hoist's beside oras's and the bound's.
    fn reported(&self) -> Vec<Value> {
        let busy = |step| median_cores_busy(&self.cpu(step));
        [
            ("pull", Step::HoistPull, Step::OrasPull, "oras"),
            ("push", Step::HoistPush, Step::OrasPush, "oras"),
            ("push", Step::HoistPush, Step::Upload, "curl upload"),
        ]
        .into_iter()
        .map(|(what, hoist, other, name)| {
            json!({
                "name": format!("{what}: cores busy, hoist / {name}"),
                "value": format!("{:.2} cores", busy(hoist)),
                "peer": format!("{:.2} cores {name}", busy(other)),
                "ratio": "",
            })
        })
        .collect()
    }

    fn median_rss(&self, step: Step) -> f64 {
        let values: Vec<f64> = self.rss(step).iter().map(|&k| k as f64).collect();
        median_or_nan(&values)
    }

    /// The machine's limit for a pull: the slowest of serving, hashing and writing.
    pub(super) fn pull_bound(&self) -> f64 {
        [Step::Serve, Step::Hash, Step::Write]
            .into_iter()
            .map(|s| self.median(s))
            .fold(f64::NAN, f64::max)
    }

    /// Which of serving, hashing and writing is the pull's bound.
    pub(super) fn pull_bound_step(&self) -> Step {
        let mut slowest = Step::Serve;
        for step in [Step::Hash, Step::Write] {
            if self.median(step) > self.median(slowest) {
                slowest = step;
            }
        }
        slowest
    }

    /// The ratios of the targets, by run: pull vs skopeo, pull vs bound, push vs upload, push
    /// vs skopeo, pull vs oras, push vs oras.
    pub(super) fn run_ratios(&self) -> [Vec<f64>; 6] {
        let per_run = |f: &dyn Fn(&[Sample]) -> Option<f64>| -> Vec<f64> {
            self.runs.iter().filter_map(|run| f(run)).collect()
        };
        let at = |run: &[Sample], step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
        [
            per_run(&|run| Some(at(run, Step::HoistPull)? / at(run, Step::SkopeoPull)?)),
            per_run(&|run| {
                let bound = at(run, Step::Serve)?
                    .max(at(run, Step::Hash)?)
                    .max(at(run, Step::Write)?);
                Some(at(run, Step::HoistPull)? / bound)
            }),
            per_run(&|run| Some(at(run, Step::HoistPush)? / at(run, Step::Upload)?)),
            per_run(&|run| Some(at(run, Step::HoistPush)? / at(run, Step::SkopeoPush)?)),
            per_run(&|run| Some(at(run, Step::HoistPull)? / at(run, Step::OrasPull)?)),
            per_run(&|run| Some(at(run, Step::HoistPush)? / at(run, Step::OrasPush)?)),
        ]
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let (at_most, below) = (Target::at_most, Target::below);
        let m = |step| self.median(step);
        let s = |step: Step, what: &str| format_seconds(self.median(step), what);
        let mib =
            |step: Step, what: &str| format!("{} {what}", format_mib(self.median_rss(step) as u64));
        let bound = self.pull_bound_step();
        vec![
            at_most(
                "pull: hoist / skopeo",
                m(Step::HoistPull) / m(Step::SkopeoPull),
                PULL_VS_SKOPEO,
            )
            .versus_peer(s(Step::HoistPull, ""), s(Step::SkopeoPull, "skopeo")),
            at_most(
                "pull: hoist / oras",
                m(Step::HoistPull) / m(Step::OrasPull),
                PULL_VS_ORAS,
            )
            .versus_peer(s(Step::HoistPull, ""), s(Step::OrasPull, "oras")),
            at_most(
                "pull: hoist / max(GET, hash, write)",
                m(Step::HoistPull) / self.pull_bound(),
                BOUND_LIMIT,
            )
            .versus_bound(s(Step::HoistPull, ""), s(bound, bound.bound_name())),
            at_most(
                "push: hoist / curl upload",
                m(Step::HoistPush) / m(Step::Upload),
                BOUND_LIMIT,
            )
            .versus_bound(s(Step::HoistPush, ""), s(Step::Upload, "curl upload")),
            below(
                "push: hoist / skopeo",
                m(Step::HoistPush) / m(Step::SkopeoPush),
                PUSH_VS_SKOPEO,
            )
            .versus_peer(s(Step::HoistPush, ""), s(Step::SkopeoPush, "skopeo")),
            at_most(
                "push: hoist / oras",
                m(Step::HoistPush) / m(Step::OrasPush),
                PUSH_VS_ORAS,
            )
            .versus_peer(s(Step::HoistPush, ""), s(Step::OrasPush, "oras")),
            at_most(
                "pull peak RSS: hoist / skopeo",
                self.median_rss(Step::HoistPull) / self.median_rss(Step::SkopeoPull),
                RSS_VS_SKOPEO,
            )
            .versus_peer(mib(Step::HoistPull, ""), mib(Step::SkopeoPull, "skopeo")),
            at_most(
                "push peak RSS: hoist / skopeo",
                self.median_rss(Step::HoistPush) / self.median_rss(Step::SkopeoPush),
                RSS_VS_SKOPEO,
            )
            .versus_peer(mib(Step::HoistPush, ""), mib(Step::SkopeoPush, "skopeo")),
        ]
    }

    pub(super) fn table(&self) -> String {
        let runs = self.runs.len();
        let runs_note = Runs {
            warm_up: self.warm_up,
            counted: runs,
        }
        .describe();
        let mut out = String::new();
        let ballast = ballast_note(&self.ballast_bytes);
        let _ = writeln!(
            out,
            "client bench: hoist copy vs {} and {} with docker-registry (filesystem storage, \
             loopback);\n{} MiB in {LAYERS} gzip layers of random data, manifest {};\n\
             {runs_note}, {ballast}, {} s pause after each run; step order reverses between runs \
             and turns every second run;\nbefore every step: sync, untimed read of the layers from the source and \
             the registry;\npulls into new layouts, pushes into a new registry each; bounds: \
             {LAYERS} blobs {JOBS} at a time (hoist's --jobs);\nhoist built from {}\n",
            self.skopeo_version,
            self.oras_version,
            self.layer_bytes >> 20,
            self.manifest_digest,
            self.pause_secs,
            self.hoist_revision,
        );
        let header = |out: &mut String, title: &str, last: &str| {
            run_header(out, 36, title, runs, last);
        };
        let trim_last_line = |out: &mut String| {
            let kept = out.trim_end().len();
            out.truncate(kept);
            out.push('\n');
        };
        header(&mut out, "seconds", "MB/s");
        for step in Step::ALL {
            seconds_row(
                &mut out,
                36,
                step.label(),
                &self.seconds(step),
                self.layer_bytes,
            );
        }
        let names = [
            "pull hoist / skopeo",
            "pull hoist / bound",
            "push hoist / curl upload",
            "push hoist / skopeo",
            "pull hoist / oras",
            "push hoist / oras",
        ];
        for (name, ratios) in names.iter().zip(self.run_ratios()) {
            ratio_row(&mut out, 36, name, &ratios);
        }
        let _ = writeln!(
            out,
            "pull bound (slowest median): {}",
            self.pull_bound_step().label().trim()
        );
        let _ = writeln!(out);
        header(&mut out, "peak RSS", "");
        trim_last_line(&mut out);
        for step in Step::TOOLS {
            let _ = write!(out, "{:<36}", step.label());
            for kib in self.rss(step) {
                let _ = write!(out, "{:>10}", format_mib(kib));
            }
            let _ = writeln!(out, "{:>10}", format_mib(self.median_rss(step) as u64));
        }
        let _ = writeln!(out);
        let cpu: Vec<(&str, Vec<(StepCpu, f64)>)> = Step::ALL
            .iter()
            .map(|&step| (step.label(), self.cpu(step)))
            .collect();
        cpu_block(&mut out, 36, &cpu);
        let _ = writeln!(out);
        verdict_table(&mut out, 38, 10, &self.targets());
        for row in self.reported() {
            let _ = writeln!(
                out,
                "{:<38}{:>10}  vs {}   (reported)",
                row["name"].as_str().unwrap_or_default(),
                row["value"].as_str().unwrap_or_default(),
                row["peer"].as_str().unwrap_or_default(),
            );
        }
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let seconds: serde_json::Map<String, Value> = Step::ALL
            .iter()
            .map(|&s| (s.key().to_owned(), json!(self.seconds(s))))
            .collect();
        let medians: serde_json::Map<String, Value> = Step::ALL
            .iter()
            .map(|&s| (s.key().to_owned(), json!(self.median(s))))
            .collect();
        let rss: serde_json::Map<String, Value> = Step::TOOLS
            .iter()
            .map(|&s| (s.key().to_owned(), json!(self.rss(s))))
            .collect();
        let [
            pull_skopeo,
            pull_bound,
            push_upload,
            push_skopeo,
            pull_oras,
            push_oras,
        ] = self.run_ratios();
        let mut value = json!({
            "scenario": "client",
            "layers": LAYERS,
            "layer_media_type": LAYER_TYPE,
            "layer_bytes": self.layer_bytes,
            "random_bytes": self.random_bytes,
            "manifest_digest": self.manifest_digest,
            "skopeo": self.skopeo_version,
            "oras": self.oras_version,
            "hoist_revision": self.hoist_revision,
            "jobs": JOBS,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": seconds,
            "median_seconds": medians,
            "peak_rss_kib": rss,
            "pull_bound": self.pull_bound_step().key(),
            "ratios_per_run": {
                "pull_hoist_over_skopeo": pull_skopeo,
                "pull_hoist_over_bound": pull_bound,
                "push_hoist_over_upload": push_upload,
                "push_hoist_over_skopeo": push_skopeo,
                "pull_hoist_over_oras": pull_oras,
                "push_hoist_over_oras": push_oras,
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

    fn sample(step: Step, seconds: f64, rss: u64) -> Sample {
        Sample {
            step,
            seconds,
            peak_rss_kib: Step::TOOLS.contains(&step).then_some(rss),
            cpu: StepCpu {
                tool: Step::TOOLS.contains(&step).then_some(seconds / 2.0),
                registries: seconds,
            },
        }
    }

    fn report(hoist_pull: f64) -> ClientReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::HoistPull, hoist_pull, 20_000),
                (Step::SkopeoPull, 4.0, 60_000),
                (Step::OrasPull, 3.6, 40_000),
                (Step::Serve, 1.0, 0),
                (Step::Hash, 0.5, 0),
                (Step::Write, 2.5, 0),
                (Step::HoistPush, 3.0, 18_000),
                (Step::SkopeoPush, 5.0, 50_000),
                (Step::OrasPush, 3.5, 30_000),
                (Step::Upload, 2.9, 0),
            ]
            .into_iter()
            .map(|(step, s, rss)| sample(step, s * scale, rss))
            .collect()
        };
        ClientReport {
            layer_bytes: 1 << 30,
            random_bytes: 1 << 30,
            manifest_digest: "sha256:00".to_owned(),
            skopeo_version: "skopeo 1.9.3".to_owned(),
            oras_version: "oras 1.2.0".to_owned(),
            hoist_revision: "c02f2a6".to_owned(),
            pause_secs: 20,
            warm_up: 1,
            ballast_bytes: vec![4 << 30; 3],
            runs: vec![run(1.0), run(0.9), run(1.2)],
        }
    }

    #[test]
    fn report_compares_hoist_with_skopeo_and_the_bounds() {
        let report = report(2.7);
        assert_eq!(report.pull_bound_step(), Step::Write);
        assert!((report.pull_bound() - 2.5).abs() < 1e-9);
        let targets = report.targets();
        let values: Vec<f64> = targets.iter().map(|t| t.value).collect();
        let expected = [
            2.7 / 4.0,
            2.7 / 3.6,
            2.7 / 2.5,
            3.0 / 2.9,
            3.0 / 5.0,
            3.0 / 3.5,
            1.0 / 3.0,
            0.36,
        ];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-9, "{values:?}");
        }
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        let [pull_skopeo, .., push_oras] = report.run_ratios();
        assert_eq!(pull_skopeo.len(), 3);
        assert_eq!(push_oras.len(), 3);
        assert_eq!(targets[1].peer, "3.600 s oras");
        assert_eq!(targets[2].bound, "2.500 s dd write");
        let table = report.table();
        assert!(table.contains("pull: hoist / skopeo"), "{table}");
        assert!(table.contains("1.08×"), "{table}");
        assert!(table.contains("dd conv=fdatasync (write)"), "{table}");
        assert!(table.contains("19.5 MiB"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        let json = report.to_json();
        assert_eq!(json["scenario"], json!("client"));
        assert_eq!(json["median_seconds"]["hoist_pull"], json!(2.7));
        assert_eq!(json["peak_rss_kib"]["skopeo_push"], json!(vec![50_000; 3]));
        assert_eq!(json["median_cores_busy"]["hoist_push"], json!(1.5));
        assert_eq!(json["reported"][2]["peer"], json!("1.00 cores curl upload"));
        assert_eq!(json["pull_bound"], json!("dd"));
        assert_eq!(json["oras"], json!("oras 1.2.0"));
        assert_eq!(json["targets"][1]["peer"], json!("3.600 s oras"));
        assert_eq!(json["targets"][0]["pass"], json!(true));
    }

    #[test]
    fn a_slow_pull_fails() {
        let report = report(3.5);
        let verdicts: Vec<bool> = report.targets().iter().map(|t| t.pass).collect();
        assert_eq!(
            verdicts,
            [false, false, false, true, true, true, true, true]
        );
        assert!(report.table().contains("FAIL"));
    }
}
