//! What the archive scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{ENGINE, LAYERS, LOAD_VS_DOCKER, READ_VS_SKOPEO, SEED, Sample, Step, WRITE_VS_SKOPEO};
use crate::bench::data::SOURCE_DATE_EPOCH;
use crate::bench::measure::{
    Runs, Target, Usage, ballast_note, cpu_row, format_ratio, in_each_run, load_note,
    median_or_nan, ratio_row, reported_json, reported_rows, rss_row, run_header, seconds_row,
    targets_json, verdict_table,
};

/// Everything the archive scenario measured.
#[derive(Debug)]
pub(super) struct ArchiveReport {
    /// Random bytes in the layers.
    pub(super) random_bytes: u64,
    /// Bytes of the layers (gzip streams).
    pub(super) layer_bytes: u64,
    pub(super) skopeo_archive_bytes: u64,
    pub(super) hoist_archive_bytes: u64,
    pub(super) manifest: String,
    pub(super) config: String,
    /// skopeo, docker, dockerd.
    pub(super) versions: Vec<String>,
    pub(super) hoist_revision: String,
    pub(super) cores: usize,
    pub(super) pause_secs: u64,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) ballast_bytes: Vec<u64>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    pub(super) load: Vec<(f64, f64)>,
    pub(super) runs: Vec<Vec<Sample>>,
}

impl ArchiveReport {
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

    fn max_daemon_rss(&self, step: Step) -> u64 {
        self.samples(step)
            .iter()
            .filter_map(|s| s.daemon_peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// The slowest of the machine's limits, on medians, and which it is.
    pub(super) fn bound(&self) -> (Step, f64) {
        let mut slowest = (Step::Cat, f64::NAN);
        for step in Step::BOUNDS {
            let m = self.median(step);
            if slowest.1.is_nan() || m > slowest.1 {
                slowest = (step, m);
            }
        }
        slowest
    }

    /// The compared pairs: (name, hoist's step, its peer).
    pub(super) const PAIRS: [(&'static str, Step, Step); 4] = [
        ("write: hoist / skopeo", Step::HoistWrite, Step::SkopeoWrite),
        (
            "read skopeo's archive: hoist / skopeo",
            Step::HoistRead,
            Step::SkopeoRead,
        ),
        (
            "read own archive: hoist / skopeo",
            Step::HoistReadOwn,
            Step::SkopeoRead,
        ),
        (
            "load: hoist / docker load",
            Step::HoistLoad,
            Step::DockerLoad,
        ),
    ];

    /// Per run, for each of [`Self::PAIRS`]: hoist's time over its peer's.
    pub(super) fn run_ratios(&self) -> Vec<Vec<f64>> {
        Self::PAIRS
            .iter()
            .map(|&(_, hoist, peer)| {
                self.runs
                    .iter()
                    .filter_map(|run| {
                        let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
                        Some(at(hoist)? / at(peer)?)
                    })
                    .collect()
            })
            .collect()
    }

    fn ratio(&self, hoist: Step, peer: Step) -> f64 {
        self.median(hoist) / self.median(peer)
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let at_most = Target::at_most;
        let [write, read, _, load] = Self::PAIRS;
        vec![
            at_most(write.0, self.ratio(write.1, write.2), WRITE_VS_SKOPEO),
            at_most(read.0, self.ratio(read.1, read.2), READ_VS_SKOPEO),
            at_most(load.0, self.ratio(load.1, load.2), LOAD_VS_DOCKER),
        ]
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    pub(super) fn reported(&self) -> Vec<(String, String)> {
        let (bound_step, bound) = self.bound();
        let [_, _, own, _] = Self::PAIRS;
        let mut out = vec![
            (own.0.to_owned(), format_ratio(self.ratio(own.1, own.2))),
            (
                format!("write: hoist / slowest bound ({})", bound_step.key()),
                format_ratio(self.median(Step::HoistWrite) / bound),
            ),
            (
                format!(
                    "read skopeo's: hoist / slowest bound ({})",
                    bound_step.key()
                ),
                format_ratio(self.median(Step::HoistRead) / bound),
            ),
            (
                "write: hoist / dd (archive's size)".to_owned(),
                format_ratio(self.median(Step::HoistWrite) / self.median(Step::Dd)),
            ),
        ];
        for (name, hoist, peer) in [
            ("write", Step::HoistWrite, Step::SkopeoWrite),
            ("read skopeo's", Step::HoistRead, Step::SkopeoRead),
            ("load", Step::HoistLoad, Step::DockerLoad),
        ] {
            out.push((
                format!("{name}: peak RSS (max), hoist / {}", peer.key()),
                format_ratio(self.max_rss(hoist) as f64 / self.max_rss(peer) as f64),
            ));
        }
        out.push((
            "load: dockerd peak RSS (max), hoist / docker load".to_owned(),
            format_ratio(
                self.max_daemon_rss(Step::HoistLoad) as f64
                    / self.max_daemon_rss(Step::DockerLoad) as f64,
            ),
        ));
        out
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
            "archive bench: hoist copy vs {} and docker load ({}; {});\n{} MiB of random \
             data in {LAYERS} gzip layers ({} MB), manifest {},\nconfig {}; archives: \
             skopeo's {} MB (classic format), hoist's {} MB (Docker 25+ format, hoist's \
             default);\nhoist writes a temporary file, fsyncs it and renames it; skopeo does \
             not fsync the archive;\neach load into a fresh {ENGINE} daemon (data root of its \
             own, started untimed);\n{runs_note}, {ballast}, {} s pause after each run; {} \
             cores; step order reverses between runs and turns every second run;\nbefore every step: sync, untimed read \
             of its input; every step writes into a new directory;\nhoist built from {}\n",
            self.versions.first().map_or("skopeo", String::as_str),
            self.versions.get(1).map_or("docker", String::as_str),
            self.versions.get(2).map_or("dockerd", String::as_str),
            self.random_bytes >> 20,
            self.layer_bytes / 1_000_000,
            self.manifest,
            self.config,
            self.skopeo_archive_bytes / 1_000_000,
            self.hoist_archive_bytes / 1_000_000,
            self.pause_secs,
            self.cores,
            self.hoist_revision,
        );
        let _ = writeln!(out, "commands measured:");
        for step in Step::ALL {
            let _ = writeln!(out, "  {:<16}{}", step.key(), step.command());
        }
        let _ = writeln!(out);
        load_note(&mut out, &self.load);
        let header = |out: &mut String, title: &str, last: &str| {
            run_header(out, 38, title, runs, last);
        };
        header(&mut out, "seconds (MB/s of the layers)", "MB/s");
        for step in Step::ALL {
            seconds_row(
                &mut out,
                38,
                step.label(),
                &self.seconds(step),
                self.layer_bytes,
            );
        }
        for ((name, ..), ratios) in Self::PAIRS.iter().zip(self.run_ratios()) {
            ratio_row(&mut out, 38, name, &ratios);
        }
        let _ = writeln!(out);
        header(&mut out, "CPU seconds, user+sys", "user/sys");
        for step in Step::ALL {
            let usages: Vec<Usage> = self.samples(step).iter().map(|s| s.usage).collect();
            cpu_row(&mut out, 38, step.label(), &usages);
        }
        let _ = writeln!(out);
        header(&mut out, "peak RSS", "max");
        for step in Step::ALL {
            let values: Vec<u64> = self
                .samples(step)
                .iter()
                .map(|s| s.usage.peak_rss_kib)
                .collect();
            rss_row(&mut out, 38, step.label(), &values);
        }
        for (step, label) in [
            (Step::DockerLoad, "  dockerd (VmHWM), docker load"),
            (Step::HoistLoad, "  dockerd (VmHWM), hoist copy"),
        ] {
            let values: Vec<u64> = self
                .samples(step)
                .iter()
                .filter_map(|s| s.daemon_peak_rss_kib)
                .collect();
            rss_row(&mut out, 38, label, &values);
        }
        let (bound_step, _) = self.bound();
        let _ = writeln!(
            out,
            "slowest bound (median): {}\n",
            bound_step.label().trim()
        );
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
        let ratios: serde_json::Map<String, Value> = Self::PAIRS
            .iter()
            .zip(self.run_ratios())
            .map(|(&(_, hoist, peer), r)| {
                (format!("{}_over_{}", hoist.key(), peer.key()), json!(r))
            })
            .collect();
        json!({
            "scenario": "archive",
            "layers": LAYERS,
            "random_bytes": self.random_bytes,
            "layer_bytes": self.layer_bytes,
            "skopeo_archive_bytes": self.skopeo_archive_bytes,
            "hoist_archive_bytes": self.hoist_archive_bytes,
            "manifest_digest": self.manifest,
            "config_digest": self.config,
            "seed": SEED,
            "source_date_epoch": SOURCE_DATE_EPOCH,
            "engine": ENGINE,
            "versions": self.versions,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load_average_start_end": self.load,
            "commands": by_step(&|s| json!(s.command())),
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.peak_rss_kib).collect::<Vec<_>>())),
            "dockerd_peak_rss_kib": {
                "docker_load": self.samples(Step::DockerLoad).iter().filter_map(|s| s.daemon_peak_rss_kib).collect::<Vec<_>>(),
                "hoist_load": self.samples(Step::HoistLoad).iter().filter_map(|s| s.daemon_peak_rss_kib).collect::<Vec<_>>(),
            },
            "slowest_bound": self.bound().0.key(),
            "ratios_per_run": ratios,
            "targets": targets_json(&self.targets(), "at_most"),
            "reported": reported_json(self.reported()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: Step, seconds: f64, rss: u64) -> Sample {
        Sample {
            step,
            seconds,
            usage: Usage {
                user: seconds / 2.0,
                sys: seconds / 4.0,
                peak_rss_kib: rss,
            },
            daemon_peak_rss_kib: step.loads().then_some(100_000),
        }
    }

    fn report(hoist_write: f64) -> ArchiveReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::SkopeoWrite, 4.0, 60_000),
                (Step::HoistWrite, hoist_write, 20_000),
                (Step::SkopeoRead, 6.0, 70_000),
                (Step::HoistRead, 3.0, 21_000),
                (Step::HoistReadOwn, 2.8, 22_000),
                (Step::Cat, 0.3, 1_000),
                (Step::Hash, 1.6, 5_000),
                (Step::Dd, 2.0, 3_000),
                (Step::DockerLoad, 10.0, 40_000),
                (Step::HoistLoad, 10.5, 23_000),
            ]
            .into_iter()
            .map(|(step, s, rss)| sample(step, s * scale, rss))
            .collect()
        };
        ArchiveReport {
            random_bytes: 1 << 30,
            layer_bytes: (1 << 30) + 200_000,
            skopeo_archive_bytes: (1 << 30) + 30_000,
            hoist_archive_bytes: (1 << 30) + 40_000,
            manifest: "sha256:00".to_owned(),
            config: "sha256:11".to_owned(),
            versions: vec![
                "skopeo version 1.9.3".to_owned(),
                "Docker version 20.10.24".to_owned(),
                "Docker version 20.10.24 (dockerd)".to_owned(),
            ],
            hoist_revision: "27d4ca9".to_owned(),
            cores: 2,
            pause_secs: 20,
            warm_up: 1,
            ballast_bytes: vec![4 << 30; 3],
            load: vec![(0.5, 1.5); 3],
            runs: vec![run(1.0), run(0.9), run(1.2)],
        }
    }

    #[test]
    fn report_compares_hoist_with_its_peers() {
        let report = report(2.8);
        let targets = report.targets();
        let values: Vec<f64> = targets.iter().map(|t| t.value).collect();
        for (v, e) in values.iter().zip([0.7, 0.5, 1.05]) {
            assert!((v - e).abs() < 1e-9, "{values:?}");
        }
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        assert_eq!(report.bound(), (Step::Dd, 2.0));
        let ratios = report.run_ratios();
        assert_eq!(ratios.len(), 4);
        assert_eq!(ratios[0].len(), 3);
        let table = report.table();
        assert!(table.contains("write: hoist / skopeo"), "{table}");
        assert!(table.contains("0.70×") && table.contains("PASS"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        assert!(table.contains("skopeo does not fsync"), "{table}");
        assert!(table.contains("docker-daemon:bench/img:v1"), "{table}");
        assert!(table.contains("dockerd (VmHWM)"), "{table}");
        assert!(table.contains("97.7 MiB"), "{table}");
        assert!(
            table.contains("read own archive: hoist / skopeo"),
            "{table}"
        );
        let rss = report
            .reported()
            .into_iter()
            .find(|(name, _)| name.starts_with("read skopeo's: peak RSS"))
            .map(|(_, value)| value);
        assert_eq!(rss.as_deref(), Some("0.30×"));
        let json = report.to_json();
        assert_eq!(json["scenario"], json!("archive"));
        assert_eq!(json["median_seconds"]["hoist_write"], json!(2.8));
        assert_eq!(json["peak_rss_kib"]["skopeo_read"], json!(vec![70_000; 3]));
        assert_eq!(
            json["dockerd_peak_rss_kib"]["hoist_load"],
            json!(vec![100_000; 3])
        );
        assert_eq!(json["slowest_bound"], json!("dd"));
        assert_eq!(
            json["ratios_per_run"]["hoist_load_over_docker_load"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(json["targets"][2]["pass"], json!(true));
    }

    #[test]
    fn a_slow_write_fails() {
        let report = report(3.5);
        let verdicts: Vec<bool> = report.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, true, true]);
        assert!(report.table().contains("FAIL"));
        assert_eq!(report.to_json()["targets"][0]["pass"], json!(false));
    }
}
