//! What the files scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{GZIP_LEVEL, JOBS, Job, RSS_LIMIT, Sample, Step, TIME_LIMIT};
use crate::bench::data::TreeStats;
use crate::bench::measure::{
    Runs, Target, Usage, cpu_row, format_mib, format_ratio, format_seconds, format_spread,
    in_each_run, load_note, median_or_nan, min_max, ratio_row, reported_json, reported_rows,
    rss_row, run_header, seconds_row, targets_json, verdict_table,
};

/// Everything the scenario measured.
#[derive(Debug)]
pub(super) struct FilesReport {
    pub(super) stats: TreeStats,
    pub(super) build_layer_bytes: u64,
    pub(super) layer_bytes: u64,
    pub(super) tar_bytes: u64,
    pub(super) build_manifest: String,
    pub(super) image_manifest: String,
    pub(super) cores: usize,
    pub(super) versions: Vec<String>,
    pub(super) hoist_revision: String,
    /// The uncounted warm-up runs before them (0 with `--quick`).
    pub(super) warm_up: usize,
    /// The counted runs (the warm-up left out).
    pub(super) runs: Vec<Vec<Sample>>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    pub(super) load: Vec<(f64, f64)>,
}

impl FilesReport {
    /// The runs behind the report: the warm-up and the counted ones.
    fn plan(&self) -> Runs {
        Runs {
            warm_up: self.warm_up,
            counted: self.runs.len(),
        }
    }

    fn samples(&self, step: Step) -> Vec<Sample> {
        in_each_run(&self.runs, |s| s.step == step)
    }

    fn seconds(&self, step: Step) -> Vec<f64> {
        self.samples(step).iter().map(|s| s.seconds).collect()
    }

    fn median(&self, step: Step) -> f64 {
        median_or_nan(&self.seconds(step))
    }

    fn max_rss(&self, step: Step) -> u64 {
        self.samples(step)
            .iter()
            .map(|s| s.usage.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// hoist's time over the peer's, per run.
    fn run_ratios(&self, job: Job) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| {
                let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
                Some(at(job.hoist)? / at(job.peer)?)
            })
            .collect()
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for job in JOBS {
            let [time_name, rss_name] = job.targets;
            let (hoist, peer) = (self.median(job.hoist), self.median(job.peer));
            targets.push(
                Target::at_most(time_name, hoist / peer, TIME_LIMIT).versus_peer(
                    format_seconds(hoist, ""),
                    format_seconds(peer, job.peer.short()),
                ),
            );
            let (hoist, peer) = (self.max_rss(job.hoist), self.max_rss(job.peer));
            targets.push(
                Target::at_most(rss_name, hoist as f64 / peer as f64, RSS_LIMIT).versus_peer(
                    format_mib(hoist),
                    format!("{} {}", format_mib(peer), job.peer.short()),
                ),
            );
        }
        targets
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    fn reported(&self) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = JOBS
            .iter()
            .flat_map(|job| {
                [job.hoist, job.peer].map(|step| {
                    (
                        format!(
                            "small files {}: {}, median (min–max)",
                            job.key,
                            step.short()
                        ),
                        format_spread(&self.seconds(step)),
                    )
                })
            })
            .collect();
        rows.push((
            "small files unpack: hoist / tar -xf of the layer's tar (bound)".to_owned(),
            format_ratio(self.median(Step::HoistUnpack) / self.median(Step::TarX)),
        ));
        rows
    }

    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let runs = self.runs.len();
        let s = &self.stats;
        let _ = writeln!(
            out,
            "files bench: a tree of {} small files ({} dirs, {} symlinks, {:.1} MiB), built, \
             unpacked and exported by hoist and by umoci;\nbuild layer (default gzip) {:.1} MB, \
             {}; unpacked image (gzip -{GZIP_LEVEL}) layer {:.1} MB, tar {:.1} MB, {};\n{}, \
             order reversing between runs and turning every second run, nothing deleted until the end; {} cores; {};\nhoist \
             built from {}\n",
            s.files,
            s.dirs,
            s.symlinks,
            s.bytes as f64 / f64::from(1 << 20),
            self.build_layer_bytes as f64 / 1e6,
            self.build_manifest,
            self.layer_bytes as f64 / 1e6,
            self.tar_bytes as f64 / 1e6,
            self.image_manifest,
            self.plan().describe(),
            self.cores,
            self.versions.join(", "),
            self.hoist_revision,
        );
        load_note(&mut out, &self.load);
        run_header(&mut out, 38, "seconds (MB/s of the tar)", runs, "MB/s");
        for step in Step::ALL {
            seconds_row(
                &mut out,
                38,
                step.label(),
                &self.seconds(step),
                self.tar_bytes,
            );
        }
        for job in JOBS {
            ratio_row(
                &mut out,
                38,
                &format!("{}: hoist / umoci", job.key),
                &self.run_ratios(job),
            );
        }
        run_header(&mut out, 38, "CPU seconds, user+sys", runs, "user/sys");
        for step in Step::ALL {
            let usages: Vec<Usage> = self.samples(step).iter().map(|s| s.usage).collect();
            cpu_row(&mut out, 38, step.label(), &usages);
        }
        run_header(&mut out, 38, "peak RSS", runs, "max");
        for step in Step::ALL {
            let rss: Vec<u64> = self
                .samples(step)
                .iter()
                .map(|s| s.usage.peak_rss_kib)
                .collect();
            rss_row(&mut out, 38, step.label(), &rss);
        }
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
        let ratios: serde_json::Map<String, Value> = JOBS
            .iter()
            .map(|&job| (job.key.to_owned(), json!(self.run_ratios(job))))
            .collect();
        json!({
            "scenario": "files",
            "files": self.stats.files,
            "dirs": self.stats.dirs,
            "symlinks": self.stats.symlinks,
            "file_bytes": self.stats.bytes,
            "build_layer_bytes": self.build_layer_bytes,
            "build_manifest": self.build_manifest,
            "gzip_level": GZIP_LEVEL,
            "layer_bytes": self.layer_bytes,
            "tar_bytes": self.tar_bytes,
            "image_manifest": self.image_manifest,
            "versions": self.versions,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "load_average_start_end": self.load,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "min_max_seconds": by_step(&|s| {
                let (min, max) = min_max(&self.seconds(s));
                json!([min, max])
            }),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.peak_rss_kib).collect::<Vec<_>>())),
            "ratios_per_run": ratios,
            "targets": targets_json(&self.targets(), "at_most"),
            "reported": reported_json(self.reported()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hoist: f64, rss: u64) -> FilesReport {
        let run = |scale: f64| -> Vec<Sample> {
            Step::ALL
                .iter()
                .map(|&step| {
                    let (seconds, kib) = match step {
                        Step::HoistBuild | Step::HoistUnpack | Step::HoistExport => (hoist, rss),
                        Step::TarX => (2.0, 3_000),
                        _ => (10.0, 40_000),
                    };
                    Sample {
                        step,
                        seconds: seconds * scale,
                        usage: Usage {
                            user: seconds,
                            sys: 0.5,
                            peak_rss_kib: kib,
                        },
                    }
                })
                .collect()
        };
        FilesReport {
            stats: TreeStats {
                files: 28_000,
                dirs: 409,
                symlinks: 1_400,
                bytes: 128 << 20,
            },
            build_layer_bytes: 60_000_000,
            layer_bytes: 55_000_000,
            tar_bytes: 150_000_000,
            build_manifest: "sha256:00".to_owned(),
            image_manifest: "sha256:11".to_owned(),
            cores: 2,
            versions: vec!["umoci version 0.4.7".to_owned()],
            hoist_revision: "abc".to_owned(),
            warm_up: 1,
            runs: vec![run(1.0), run(0.9), run(1.1), run(1.0), run(1.2)],
            load: vec![(0.5, 1.0)],
        }
    }

    #[test]
    fn hoist_is_compared_with_umoci_on_each_job() {
        let fast = report(3.0, 20_000);
        let targets = fast.targets();
        assert_eq!(targets.len(), 6);
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        assert!((targets[0].value - 0.3).abs() < 1e-9);
        assert_eq!(targets[0].peer, "10.000 s umoci insert");
        assert_eq!(targets[5].peer, "39.1 MiB umoci raw unpack + tar");
        let slow = report(6.0, 50_000);
        assert!(slow.targets().iter().all(|t| !t.pass));
        let table = fast.table();
        assert!(
            table.contains("export: hoist / umoci raw unpack + tar -c"),
            "{table}"
        );
        assert!(
            table.contains("0.30×") && !table.contains("FAIL"),
            "{table}"
        );
        let json = fast.to_json();
        assert_eq!(json["scenario"], json!("files"));
        assert_eq!(json["median_seconds"]["hoist_export"], json!(3.0));
        assert_eq!(json["min_max_seconds"]["umoci_unpack"], json!([9.0, 12.0]));
        assert_eq!(json["targets"][4]["pass"], json!(true));
        assert!(
            json["reported"][0]["value"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.000 s (2.700–3.600)")),
            "{json}"
        );
    }
}
