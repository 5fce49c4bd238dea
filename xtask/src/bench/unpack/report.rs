//! What the unpack scenario measured, per image and in all, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{GZIP_LEVEL, Kind, RSS_LIMIT_KIB, Sample, Step, TIME_LIMIT};
use crate::bench::data::TreeStats;
use crate::bench::measure::{
    Runs, Target, Usage, ballast_note, cpu_row, format_mib, format_ratio, in_each_run, load_note,
    median_or_nan, ratio_row, reported_json, reported_rows, rss_row, run_header, seconds_row,
    targets_json, verdict_table,
};

/// What one image's runs measured.
#[derive(Debug)]
pub(super) struct ImageReport {
    pub(super) kind: Kind,
    pub(super) layers: usize,
    pub(super) layer_bytes: u64,
    pub(super) tar_bytes: u64,
    pub(super) manifest: String,
    pub(super) stats: TreeStats,
    pub(super) runs: Vec<Vec<Sample>>,
}

/// Of `(step, seconds)`, the fastest inflater and the slower of it and tar: the machine's
/// limit for an unpack that inflates on one core while another extracts.
fn bound_of(at: &dyn Fn(Step) -> Option<f64>) -> Option<((Step, f64), (Step, f64))> {
    let mut inflate: Option<(Step, f64)> = None;
    for step in Step::INFLATE {
        let s = at(step)?;
        if inflate.is_none_or(|(_, best)| s < best) {
            inflate = Some((step, s));
        }
    }
    let inflate = inflate?;
    let tar = at(Step::Tar)?;
    let slowest = if tar > inflate.1 {
        (Step::Tar, tar)
    } else {
        inflate
    };
    Some((inflate, slowest))
}

impl ImageReport {
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

    /// On medians: the fastest inflater, and the slowest of it and tar.
    pub(super) fn bounds(&self) -> ((Step, f64), (Step, f64)) {
        bound_of(&|step| Some(self.median(step)))
            .unwrap_or(((Step::Zlib, f64::NAN), (Step::Tar, f64::NAN)))
    }

    pub(super) fn time_ratio(&self) -> f64 {
        self.median(Step::Hoist) / self.median(Step::Umoci)
    }

    /// Per run: hoist / umoci, hoist / the run's slowest bound.
    pub(super) fn run_ratios(&self) -> [Vec<f64>; 2] {
        let mut vs_umoci = Vec::new();
        let mut vs_bound = Vec::new();
        for run in &self.runs {
            let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
            let Some(hoist) = at(Step::Hoist) else {
                continue;
            };
            if let Some(umoci) = at(Step::Umoci) {
                vs_umoci.push(hoist / umoci);
            }
            if let Some((_, (_, bound))) = bound_of(&at) {
                vs_bound.push(hoist / bound);
            }
        }
        [vs_umoci, vs_bound]
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let [time_name, rss_name, rss_vs_name] = self.kind.target_names();
        let ratio = self.time_ratio();
        let rss = self.max_rss(Step::Hoist);
        let rss_vs_umoci = rss as f64 / self.max_rss(Step::Umoci).max(1) as f64;
        vec![
            Target::at_most(time_name, ratio, TIME_LIMIT),
            Target::rss_below(rss_name, rss, RSS_LIMIT_KIB),
            Target::at_most(rss_vs_name, rss_vs_umoci, 1.0),
        ]
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    fn reported(&self) -> Vec<(String, String)> {
        let key = self.kind.key();
        let ((inflate_step, inflate), (bound_step, bound)) = self.bounds();
        let hoist = self.median(Step::Hoist);
        let tar = self.median(Step::Tar);
        vec![
            (
                format!("{key}: hoist / slowest bound ({})", bound_step.key()),
                format_ratio(hoist / bound),
            ),
            (
                format!("{key}: hoist / ({} + tar_x)", inflate_step.key()),
                format_ratio(hoist / (inflate + tar)),
            ),
            (
                format!("{key}: hoist / fastest inflate ({})", inflate_step.key()),
                format_ratio(hoist / inflate),
            ),
            (format!("{key}: hoist / tar -xf"), format_ratio(hoist / tar)),
            (
                format!("{key}: hoist / umoci raw unpack"),
                format_ratio(hoist / self.median(Step::UmociRaw)),
            ),
            (
                format!("{key}: hoist CPU s / ({} + tar) CPU s", inflate_step.key()),
                format_ratio(
                    self.median_cpu(Step::Hoist)
                        / (self.median_cpu(inflate_step) + self.median_cpu(Step::Tar)),
                ),
            ),
            (
                format!("{key}: umoci peak RSS (max)"),
                format_mib(self.max_rss(Step::Umoci)),
            ),
        ]
    }

    fn table(&self, out: &mut String) {
        let runs = self.runs.len();
        let s = &self.stats;
        let _ = writeln!(
            out,
            "image {}: {} layers, {} MB gzip, {} MB of tars; unpacked: {} files, {} dirs, {} \
             symlinks, {:.1} MiB of files; manifest {}",
            self.kind.key(),
            self.layers,
            self.layer_bytes / 1_000_000,
            self.tar_bytes / 1_000_000,
            s.files,
            s.dirs,
            s.symlinks,
            s.bytes as f64 / f64::from(1 << 20),
            self.manifest
        );
        let header = |out: &mut String, title: &str, last: &str| {
            run_header(out, 38, title, runs, last);
        };
        header(out, "seconds (MB/s of the tars)", "MB/s");
        for step in Step::ALL {
            seconds_row(out, 38, step.label(), &self.seconds(step), self.tar_bytes);
        }
        let [vs_umoci, vs_bound] = self.run_ratios();
        for (name, ratios) in [
            ("hoist / umoci unpack", vs_umoci),
            ("hoist / slowest bound", vs_bound),
        ] {
            ratio_row(out, 38, name, &ratios);
        }
        header(out, "CPU seconds, user+sys", "user/sys");
        for step in Step::ALL {
            let usages: Vec<Usage> = self.samples(step).iter().map(|s| s.usage).collect();
            cpu_row(out, 38, step.label(), &usages);
        }
        header(out, "peak RSS", "max");
        for step in Step::TOOLS {
            let rss: Vec<u64> = self
                .samples(step)
                .iter()
                .map(|s| s.usage.peak_rss_kib)
                .collect();
            rss_row(out, 38, step.label(), &rss);
        }
        let _ = writeln!(out);
    }

    pub(super) fn to_json(&self) -> Value {
        let by_step = |f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
            Step::ALL
                .iter()
                .map(|&s| (s.key().to_owned(), f(s)))
                .collect()
        };
        let [vs_umoci, vs_bound] = self.run_ratios();
        let ((inflate_step, _), (bound_step, _)) = self.bounds();
        json!({
            "layers": self.layers,
            "layer_bytes": self.layer_bytes,
            "tar_bytes": self.tar_bytes,
            "manifest": self.manifest,
            "files": self.stats.files,
            "dirs": self.stats.dirs,
            "symlinks": self.stats.symlinks,
            "file_bytes": self.stats.bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.usage.peak_rss_kib).collect::<Vec<_>>())),
            "fastest_inflate": inflate_step.key(),
            "slowest_bound": bound_step.key(),
            "ratios_per_run": {
                "hoist_over_umoci": vs_umoci,
                "hoist_over_slowest_bound": vs_bound,
            },
            "reported": reported_json(self.reported()),
        })
    }
}

/// Everything the scenario measured.
#[derive(Debug)]
pub(super) struct UnpackReport {
    pub(super) images: Vec<ImageReport>,
    pub(super) cores: usize,
    pub(super) versions: Vec<String>,
    pub(super) hoist_revision: String,
    /// The pause after the set-up (none between runs: nothing is deleted).
    pub(super) pause_secs: u64,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) ballast_bytes: Vec<u64>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    pub(super) load: Vec<(f64, f64)>,
}

impl UnpackReport {
    pub(super) fn targets(&self) -> Vec<Target> {
        self.images.iter().flat_map(ImageReport::targets).collect()
    }

    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let runs = self.images.first().map_or(0, |t| t.runs.len());
        let runs_note = Runs {
            warm_up: self.warm_up,
            counted: runs,
        }
        .describe();
        let ballast = ballast_note(&self.ballast_bytes);
        let _ = writeln!(
            out,
            "unpack bench: hoist unpack --rootless beside umoci unpack --rootless of the same \
             OCI layout (made by hoist build, gzip -{GZIP_LEVEL}), each into a new \
             directory;\n{runs_note}, {ballast}, {} s pause after the set-up, nothing but the \
             ballast deleted until the end; {} cores; {};\nimages and step order alternate \
             between runs; before every step: sync, untimed read of its input;\nhoist built \
             from {}\n",
            self.pause_secs,
            self.cores,
            self.versions.join(", "),
            self.hoist_revision,
        );
        load_note(&mut out, &self.load);
        for image in &self.images {
            image.table(&mut out);
        }
        verdict_table(&mut out, 52, 11, &self.targets());
        for image in &self.images {
            reported_rows(&mut out, &image.reported());
        }
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let images: serde_json::Map<String, Value> = self
            .images
            .iter()
            .map(|t| (t.kind.key().to_owned(), t.to_json()))
            .collect();
        json!({
            "scenario": "unpack",
            "gzip_level": GZIP_LEVEL,
            "versions": self.versions,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.images.first().map_or(0, |t| t.runs.len()),
            "warm_up_runs": self.warm_up,
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load_average_start_end": self.load,
            "images": images,
            "targets": targets_json(&self.targets(), "limit"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hoist: f64, rss: u64) -> ImageReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::Umoci, 20.0, 40_000),
                (Step::UmociRaw, 12.0, 18_000),
                (Step::Hoist, hoist, rss),
                (Step::Gzip, 5.0, 2_000),
                (Step::Pigz, 3.0, 2_000),
                (Step::Zlib, 2.0, 9_000),
                (Step::Tar, 4.0, 3_000),
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
            })
            .collect()
        };
        ImageReport {
            kind: Kind::Generated,
            layers: 8,
            layer_bytes: 600_000_000,
            tar_bytes: 1_080_000_000,
            manifest: "sha256:00".to_owned(),
            stats: TreeStats {
                files: 900,
                dirs: 150,
                symlinks: 18,
                bytes: 1 << 30,
            },
            runs: vec![run(1.0), run(0.9), run(1.1)],
        }
    }

    #[test]
    fn report_compares_hoist_with_umoci_and_the_bounds() {
        let image = report(5.0, 30_000);
        assert!((image.time_ratio() - 0.25).abs() < 1e-9);
        assert_eq!(image.bounds(), ((Step::Zlib, 2.0), (Step::Tar, 4.0)));
        assert!(image.targets().iter().all(|t| t.pass));
        let [vs_umoci, vs_bound] = image.run_ratios();
        assert_eq!(vs_umoci.len(), 3);
        assert!((vs_bound[0] - 1.25).abs() < 1e-9);
        let slow = report(12.0, 70_000);
        let verdicts: Vec<bool> = slow.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, false, false]);

        let unpack = UnpackReport {
            images: vec![image],
            cores: 2,
            versions: vec!["umoci version 0.4.7".to_owned()],
            hoist_revision: "cc97138".to_owned(),
            pause_secs: 90,
            warm_up: 1,
            ballast_bytes: vec![4 << 30; 3],
            load: vec![(0.5, 2.0)],
        };
        let table = unpack.table();
        assert!(table.contains("generated: hoist / umoci unpack"), "{table}");
        assert!(table.contains("0.25×") && table.contains("PASS"), "{table}");
        assert!(table.contains("hoist / (zlib_python3 + tar_x)"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        assert!(table.contains("0.50 -> 2.00"), "{table}");
        let json = unpack.to_json();
        assert_eq!(json["scenario"], json!("unpack"));
        assert_eq!(
            json["images"]["generated"]["median_seconds"]["hoist_unpack"],
            json!(5.0)
        );
        assert_eq!(json["images"]["generated"]["slowest_bound"], json!("tar_x"));
        assert_eq!(json["targets"][1]["pass"], json!(true));
    }
}
