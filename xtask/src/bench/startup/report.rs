//! What the startup scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Tool, VS_SKOPEO};
use crate::bench::measure::{
    Runs, Target, format_mib, format_ratio, format_seconds, median_or_nan, targets_json,
    verdict_table,
};

/// Everything the startup scenario measured.
#[derive(Debug)]
pub(super) struct StartupReport {
    pub(super) layer_bytes: u64,
    pub(super) manifest_digest: String,
    /// hoist's revision, skopeo's and oras's versions.
    pub(super) versions: [String; 3],
    /// The uncounted warm-up rounds before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    /// Seconds of every round, by tool (in [`Tool::ALL`]'s order).
    pub(super) seconds: Vec<Vec<f64>>,
    /// Peak RSS of every round, by tool.
    pub(super) rss: Vec<Vec<u64>>,
    /// The order of every round.
    pub(super) order: Vec<[Tool; 3]>,
}

impl StartupReport {
    fn seconds(&self, tool: Tool) -> &[f64] {
        self.seconds.get(tool as usize).map_or(&[], Vec::as_slice)
    }

    fn median(&self, tool: Tool) -> f64 {
        median_or_nan(self.seconds(tool))
    }

    /// The fastest and slowest run of `tool`.
    fn min_max(&self, tool: Tool) -> (f64, f64) {
        let s = self.seconds(tool);
        let min = s.iter().copied().fold(f64::NAN, f64::min);
        let max = s.iter().copied().fold(f64::NAN, f64::max);
        (min, max)
    }

    fn median_rss(&self, tool: Tool) -> u64 {
        let kib: Vec<f64> = self
            .rss
            .get(tool as usize)
            .into_iter()
            .flatten()
            .map(|&k| k as f64)
            .collect();
        let m = median_or_nan(&kib);
        if m.is_finite() { m as u64 } else { 0 }
    }

    fn oras_version(&self) -> String {
        let words: Vec<&str> = self.versions[2].split_whitespace().collect();
        match words.as_slice() {
            ["Version:", v] => format!("oras {v}"),
            _ => self.versions[2].clone(),
        }
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let (hoist, skopeo) = (self.median(Tool::Hoist), self.median(Tool::Skopeo));
        vec![
            Target::at_most(
                "hoist digest / skopeo inspect --raw",
                hoist / skopeo,
                VS_SKOPEO,
            )
            .versus_peer(format_seconds(hoist, ""), format_seconds(skopeo, "skopeo")),
        ]
    }

    /// Figures without a target: hoist against oras, and the peak RSS of every tool.
    fn reported(&self) -> Vec<Value> {
        let (hoist, oras) = (self.median(Tool::Hoist), self.median(Tool::Oras));
        let mut rows = vec![json!({
            "name": "hoist digest / oras manifest fetch",
            "value": format_seconds(hoist, ""),
            "peer": format_seconds(oras, "oras"),
            "ratio": format_ratio(hoist / oras),
        })];
        let hoist_rss = self.median_rss(Tool::Hoist);
        for peer in [Tool::Skopeo, Tool::Oras] {
            let kib = self.median_rss(peer);
            rows.push(json!({
                "name": format!("peak RSS: hoist digest / {}", peer.label()),
                "value": format_mib(hoist_rss),
                "peer": format!("{} {}", format_mib(kib), peer.label().split(' ').next().unwrap_or("")),
                "ratio": format_ratio(hoist_rss as f64 / kib as f64),
            }));
        }
        rows
    }

    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "startup bench: hoist digest vs skopeo inspect --raw ({}) vs oras manifest fetch \
             ({}) of an OCI layout;\none layer of {} MiB, manifest {};\n{} (rounds), each \
             tool once per round, order reversing between rounds and turning every second round;\nhoist built from {}\n",
            self.versions[1].replace("skopeo version", "skopeo"),
            self.oras_version(),
            self.layer_bytes >> 20,
            self.manifest_digest,
            Runs {
                warm_up: self.warm_up,
                counted: self.seconds(Tool::Hoist).len(),
            }
            .describe(),
            self.versions[0],
        );
        let _ = writeln!(
            out,
            "{:<24}{:>12}{:>12}{:>12}{:>14}",
            "milliseconds", "median", "min", "max", "peak RSS"
        );
        for tool in Tool::ALL {
            let (min, max) = self.min_max(tool);
            let _ = writeln!(
                out,
                "{:<24}{:>12.2}{:>12.2}{:>12.2}{:>14}",
                tool.label(),
                self.median(tool) * 1e3,
                min * 1e3,
                max * 1e3,
                format_mib(self.median_rss(tool))
            );
        }
        let _ = writeln!(out);
        verdict_table(&mut out, 48, 10, &self.targets());
        for row in self.reported() {
            let _ = writeln!(
                out,
                "{:<48}{:>10}{:>10}   (reported: {} vs {})",
                row["name"].as_str().unwrap_or_default(),
                row["ratio"].as_str().unwrap_or_default(),
                "-",
                row["value"].as_str().unwrap_or_default(),
                row["peer"].as_str().unwrap_or_default(),
            );
        }
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let by_tool = |f: &dyn Fn(Tool) -> Value| -> serde_json::Map<String, Value> {
            Tool::ALL
                .iter()
                .map(|&t| (t.key().to_owned(), f(t)))
                .collect()
        };
        json!({
            "scenario": "startup",
            "layer_bytes": self.layer_bytes,
            "manifest_digest": self.manifest_digest,
            "hoist_revision": self.versions[0],
            "skopeo": self.versions[1].replace("skopeo version", "skopeo"),
            "oras": self.oras_version(),
            "runs": self.seconds(Tool::Hoist).len(),
            "warm_up_runs": self.warm_up,
            "order": self.order.iter()
                .map(|round| round.iter().map(|t| t.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_tool(&|t| json!(self.seconds(t))),
            "median_seconds": by_tool(&|t| json!(self.median(t))),
            "min_max_seconds": by_tool(&|t| json!(<[f64; 2]>::from(self.min_max(t)))),
            "peak_rss_kib": by_tool(&|t| json!(self.rss.get(t as usize))),
            "median_peak_rss_kib": by_tool(&|t| json!(self.median_rss(t))),
            "targets": targets_json(&self.targets(), "at_most"),
            "reported": self.reported(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hoist_ms: f64) -> StartupReport {
        let ms = |base: f64| (0..5).map(|i| (base + f64::from(i)) / 1e3).collect();
        StartupReport {
            layer_bytes: 1 << 20,
            manifest_digest: "sha256:00".to_owned(),
            versions: [
                "c02f2a6".to_owned(),
                "skopeo version 1.9.3".to_owned(),
                "Version:    1.2.0".to_owned(),
            ],
            warm_up: 1,
            seconds: vec![ms(hoist_ms), ms(50.0), ms(20.0)],
            rss: vec![vec![4096; 5], vec![40960; 5], vec![20480; 5]],
            order: vec![[Tool::Skopeo, Tool::Hoist, Tool::Oras]; 5],
        }
    }

    #[test]
    fn hoist_is_compared_with_skopeo_and_oras() {
        let report = report(3.0);
        let targets = report.targets();
        assert!((targets[0].value - 5.0 / 52.0).abs() < 1e-9);
        assert!(targets[0].pass);
        assert_eq!(targets[0].peer, "52.0 ms skopeo");
        assert_eq!(report.min_max(Tool::Oras), (0.02, 0.024));
        let table = report.table();
        assert!(table.contains("oras 1.2.0"), "{table}");
        assert!(
            table.contains("hoist digest / oras manifest fetch"),
            "{table}"
        );
        assert!(table.contains("0.23×"), "{table}");
        let json = report.to_json();
        assert_eq!(json["median_peak_rss_kib"]["hoist_digest"], json!(4096));
        assert_eq!(json["reported"][1]["ratio"], json!("0.10×"));
        assert_eq!(json["reported"][1]["peer"], json!("40.0 MiB skopeo"));
        assert_eq!(
            json["min_max_seconds"]["oras_manifest_fetch"],
            json!([0.02, 0.024])
        );
    }

    #[test]
    fn a_slow_start_fails() {
        let report = report(12.0);
        assert!(!report.targets()[0].pass);
        assert!(report.table().contains("FAIL"));
    }
}
