//! What the build scenario measured, per tree and in all, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{RSS_LIMIT_KIB, Sample, Step, TIME_LIMIT, Tree};
use crate::bench::data::{SOURCE_DATE_EPOCH, TreeStats};
use crate::bench::measure::{
    Runs, Target, Usage, ballast_note, cpu_row, format_mib, format_ratio, in_each_run, load_note,
    median_or_nan, rate_mb_s, ratio_row, reported_json, reported_rows, rss_row, run_header,
    seconds_row, targets_json, verdict_table,
};

/// What one tree's runs measured.
#[derive(Debug)]
pub(super) struct TreeReport {
    pub(super) tree: Tree,
    pub(super) stats: TreeStats,
    pub(super) tar_bytes: u64,
    pub(super) hoist_layer_bytes: u64,
    pub(super) manifest: String,
    pub(super) runs: Vec<Vec<Sample>>,
}

impl TreeReport {
    fn samples(&self, step: Step) -> Vec<Sample> {
        in_each_run(&self.runs, |s| s.step == step)
    }

    fn seconds(&self, step: Step) -> Vec<f64> {
        self.samples(step).iter().map(|s| s.seconds).collect()
    }

    fn median(&self, step: Step) -> f64 {
        median_or_nan(&self.seconds(step))
    }

    fn median_cpu(&self, step: Step) -> f64 {
        let cpu: Vec<f64> = self.samples(step).iter().map(Sample::cpu).collect();
        median_or_nan(&cpu)
    }

    fn max_rss(&self, step: Step) -> u64 {
        self.samples(step)
            .iter()
            .map(|s| s.usage.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    fn umoci_layer_bytes(&self) -> Option<u64> {
        self.samples(Step::Umoci)
            .first()
            .and_then(|s| s.layer_bytes)
    }

    /// The slowest of the bounds' medians, and which it is.
    pub(super) fn bound(&self) -> (Step, f64) {
        let mut slowest = (Step::BOUNDS[0], self.median(Step::BOUNDS[0]));
        for step in &Step::BOUNDS[1..] {
            let m = self.median(*step);
            if m > slowest.1 {
                slowest = (*step, m);
            }
        }
        slowest
    }

    pub(super) fn time_ratio(&self) -> f64 {
        self.median(Step::Hoist) / self.median(Step::Umoci)
    }

    /// Per run: hoist / umoci, hoist / the slowest bound.
    pub(super) fn run_ratios(&self) -> [Vec<f64>; 2] {
        let at = |run: &[Sample], step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
        let per_run = |f: &dyn Fn(&[Sample]) -> Option<f64>| -> Vec<f64> {
            self.runs.iter().filter_map(|run| f(run)).collect()
        };
        [
            per_run(&|run| Some(at(run, Step::Hoist)? / at(run, Step::Umoci)?)),
            per_run(&|run| {
                let bound = Step::BOUNDS
                    .iter()
                    .map(|&s| at(run, s))
                    .collect::<Option<Vec<f64>>>()?
                    .into_iter()
                    .fold(f64::NAN, f64::max);
                Some(at(run, Step::Hoist)? / bound)
            }),
        ]
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let [time_name, rss_name] = self.tree.target_names();
        let ratio = self.time_ratio();
        let rss = self.max_rss(Step::Hoist);
        vec![
            Target::at_most(time_name, ratio, TIME_LIMIT),
            Target::rss_below(rss_name, rss, RSS_LIMIT_KIB),
        ]
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    fn reported(&self, cores: usize) -> Vec<(String, String)> {
        let key = self.tree.key();
        let (bound_step, bound) = self.bound();
        let hoist = self.median(Step::Hoist);
        let mb_s = |step| rate_mb_s(self.tar_bytes, self.median(step));
        let mut lines = vec![
            (
                format!("{key}: hoist / slowest bound ({})", bound_step.key()),
                format_ratio(hoist / bound),
            ),
            (
                format!("{key}: hoist MB/s / pigz 1 core MB/s"),
                format_ratio(mb_s(Step::Hoist) / mb_s(Step::GzipOne)),
            ),
            (
                format!("{key}: hoist / pigz {cores} cores"),
                format_ratio(hoist / self.median(Step::GzipAll)),
            ),
            (
                format!("{key}: hoist CPU s / pigz 1 core CPU s"),
                format_ratio(self.median_cpu(Step::Hoist) / self.median_cpu(Step::GzipOne)),
            ),
            (
                format!("{key}: hoist 1 thread / hoist"),
                format_ratio(self.median(Step::HoistOneThread) / hoist),
            ),
            (
                format!("{key}: umoci peak RSS (max)"),
                format_mib(self.max_rss(Step::Umoci)),
            ),
        ];
        if let Some(umoci) = self.umoci_layer_bytes() {
            lines.push((
                format!("{key}: layer MB, hoist / umoci"),
                format!(
                    "{} / {}",
                    self.hoist_layer_bytes / 1_000_000,
                    umoci / 1_000_000
                ),
            ));
        }
        lines
    }

    fn table(&self, out: &mut String, cores: usize, level: u32) {
        let runs = self.runs.len();
        let s = &self.stats;
        let _ = writeln!(
            out,
            "tree {}: {} files, {} dirs, {} symlinks, {:.1} MiB of files; tar {} MB; \
             manifest {}",
            self.tree.key(),
            s.files,
            s.dirs,
            s.symlinks,
            s.bytes as f64 / f64::from(1 << 20),
            self.tar_bytes / 1_000_000,
            self.manifest
        );
        let header = |out: &mut String, title: &str, last: &str| {
            run_header(out, 38, title, runs, last);
        };
        header(out, "seconds (MB/s of the tar)", "MB/s");
        for step in Step::ALL {
            seconds_row(
                out,
                38,
                &step.label(cores, level),
                &self.seconds(step),
                self.tar_bytes,
            );
        }
        let [vs_umoci, vs_bound] = self.run_ratios();
        for (name, ratios) in [
            ("hoist / umoci", vs_umoci),
            ("hoist / slowest bound", vs_bound),
        ] {
            ratio_row(out, 38, name, &ratios);
        }
        header(out, "CPU seconds, user+sys", "user/sys");
        for step in Step::ALL {
            let usages: Vec<Usage> = self.samples(step).iter().map(|s| s.usage).collect();
            cpu_row(out, 38, &step.label(cores, level), &usages);
        }
        header(out, "peak RSS", "max");
        for step in Step::TOOLS {
            let rss: Vec<u64> = self
                .samples(step)
                .iter()
                .map(|s| s.usage.peak_rss_kib)
                .collect();
            rss_row(out, 38, &step.label(cores, level), &rss);
        }
        let _ = writeln!(out);
    }

    fn to_json(&self, cores: usize) -> Value {
        let by_step = |f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
            Step::ALL
                .iter()
                .map(|&s| (s.key().to_owned(), f(s)))
                .collect()
        };
        let [vs_umoci, vs_bound] = self.run_ratios();
        let (bound_step, _) = self.bound();
        json!({
            "files": self.stats.files,
            "dirs": self.stats.dirs,
            "symlinks": self.stats.symlinks,
            "file_bytes": self.stats.bytes,
            "tar_bytes": self.tar_bytes,
            "manifest": self.manifest,
            "hoist_layer_bytes": self.hoist_layer_bytes,
            "umoci_layer_bytes": self.umoci_layer_bytes(),
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.peak_rss_kib).collect::<Vec<_>>())),
            "slowest_bound": bound_step.key(),
            "ratios_per_run": {
                "hoist_over_umoci": vs_umoci,
                "hoist_over_slowest_bound": vs_bound,
            },
            "reported": reported_json(self.reported(cores)),
        })
    }
}

/// Everything the scenario measured.
#[derive(Debug)]
pub(super) struct BuildReport {
    pub(super) trees: Vec<TreeReport>,
    pub(super) cores: usize,
    pub(super) gzip_level: u32,
    pub(super) umoci_version: String,
    pub(super) pigz_version: String,
    pub(super) hoist_revision: String,
    pub(super) pause_secs: u64,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) ballast_bytes: Vec<u64>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    pub(super) load: Vec<(f64, f64)>,
}

impl BuildReport {
    pub(super) fn targets(&self) -> Vec<Target> {
        self.trees.iter().flat_map(TreeReport::targets).collect()
    }

    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let runs = self.trees.first().map_or(0, |t| t.runs.len());
        let runs_note = Runs {
            warm_up: self.warm_up,
            counted: runs,
        }
        .describe();
        let ballast = ballast_note(&self.ballast_bytes);
        let _ = writeln!(
            out,
            "build bench: hoist build (SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}, default gzip, \
             level {} = DEFAULT_GZIP_LEVEL, all cores)\nvs {} (umoci insert --rootless into a \
             new layout made by umoci init + new, untimed; pgzip default level);\n\
             {runs_note}, {ballast}, {} s pause after each run; {} cores; {};\ntrees and \
             step order alternate between runs; before every step: sync, untimed read of its \
             input;\nevery step writes into a new directory; hoist built from {}\n",
            self.gzip_level,
            self.umoci_version,
            self.pause_secs,
            self.cores,
            self.pigz_version,
            self.hoist_revision,
        );
        load_note(&mut out, &self.load);
        for tree in &self.trees {
            tree.table(&mut out, self.cores, self.gzip_level);
        }
        verdict_table(&mut out, 52, 11, &self.targets());
        for tree in &self.trees {
            reported_rows(&mut out, &tree.reported(self.cores));
        }
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let trees: serde_json::Map<String, Value> = self
            .trees
            .iter()
            .map(|t| (t.tree.key().to_owned(), t.to_json(self.cores)))
            .collect();
        json!({
            "scenario": "build",
            "source_date_epoch": SOURCE_DATE_EPOCH,
            "hoist_gzip_level": self.gzip_level,
            "umoci": self.umoci_version,
            "pigz": self.pigz_version,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.trees.first().map_or(0, |t| t.runs.len()),
            "warm_up_runs": self.warm_up,
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load_average_start_end": self.load,
            "trees": trees,
            "targets": targets_json(&self.targets(), "limit"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hoist: f64, rss: u64) -> TreeReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::Umoci, 20.0, 40_000),
                (Step::Hoist, hoist, rss),
                (Step::HoistOneThread, 2.0 * hoist, rss),
                (Step::TarRead, 2.0, 3_000),
                (Step::GzipOne, 8.0, 2_000),
                (Step::GzipAll, 4.0, 3_000),
                (Step::Sha, 1.0, 2_000),
                (Step::Write, 3.0, 2_000),
            ]
            .into_iter()
            .map(|(step, s, rss)| Sample {
                step,
                seconds: s * scale,
                usage: Usage {
                    user: s * scale,
                    sys: 0.5,
                    peak_rss_kib: rss,
                },
                layer_bytes: (step == Step::Umoci).then_some(500_000_000),
            })
            .collect()
        };
        TreeReport {
            tree: Tree::Generated,
            stats: TreeStats {
                files: 900,
                dirs: 150,
                symlinks: 18,
                bytes: 1 << 30,
            },
            tar_bytes: 1_075_000_000,
            hoist_layer_bytes: 600_000_000,
            manifest: "sha256:00".to_owned(),
            runs: vec![run(1.0), run(0.9), run(1.1)],
        }
    }

    #[test]
    fn report_compares_hoist_with_umoci_and_the_bounds() {
        let tree = report(5.0, 30_000);
        assert!((tree.time_ratio() - 0.25).abs() < 1e-9);
        assert_eq!(tree.bound(), (Step::GzipAll, 4.0));
        let targets = tree.targets();
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        let [vs_umoci, vs_bound] = tree.run_ratios();
        assert_eq!(vs_umoci.len(), 3);
        assert!((vs_bound[0] - 1.25).abs() < 1e-9);
        let slow = report(12.0, 70_000);
        let verdicts: Vec<bool> = slow.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, false]);

        let build = BuildReport {
            trees: vec![tree],
            cores: 2,
            gzip_level: 1,
            umoci_version: "umoci version 0.4.7".to_owned(),
            pigz_version: "pigz 2.6".to_owned(),
            hoist_revision: "3a12748".to_owned(),
            pause_secs: 20,
            warm_up: 1,
            ballast_bytes: vec![4 << 30; 3],
            load: vec![(0.5, 2.0)],
        };
        let table = build.table();
        assert!(table.contains("generated: hoist / umoci insert"), "{table}");
        assert!(table.contains("0.25×") && table.contains("PASS"), "{table}");
        assert!(table.contains("pigz -p 2 -1 of the tar"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        assert!(table.contains("0.50 -> 2.00"), "{table}");
        let json = build.to_json();
        assert_eq!(json["scenario"], json!("build"));
        assert_eq!(
            json["trees"]["generated"]["median_seconds"]["hoist_build"],
            json!(5.0)
        );
        assert_eq!(
            json["trees"]["generated"]["umoci_layer_bytes"],
            json!(500_000_000)
        );
        assert_eq!(json["targets"][1]["pass"], json!(true));
    }
}
