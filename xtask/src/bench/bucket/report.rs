//! What the bucket scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{LAYERS, Peer, Probe, REDIRECT_LIMIT, Reading, SEED, TIME_LIMIT};
use crate::bench::load::{RPS_LIMIT, WRK_CONNECTIONS};
use crate::bench::measure::{
    Runs, Target, ballast_note, in_each_run, median_or_nan, rate_mb_s, verdict,
};

/// Everything the bucket scenario measured.
#[derive(Debug)]
pub(super) struct BucketReport {
    /// Bytes of the image's layers.
    pub(super) layer_bytes: u64,
    pub(super) manifest: String,
    /// Bytes of the object moto's GET is measured on.
    pub(super) moto_bytes: u64,
    /// The untimed `PUT` of that object, in seconds (curl's clock).
    pub(super) moto_put_seconds: f64,
    /// Whether the registry answered a blob GET with a redirect to moto.
    pub(super) registry_redirects: bool,
    pub(super) registry_version: String,
    pub(super) hoist_revision: String,
    pub(super) wrk_secs: u64,
    pub(super) pause_secs: u64,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    pub(super) ballast_bytes: Vec<u64>,
    pub(super) runs: Vec<Vec<Reading>>,
}

impl BucketReport {
    fn values(&self, probe: Probe) -> Vec<f64> {
        in_each_run(&self.runs, |r| r.probe == probe)
            .iter()
            .map(|r| r.value)
            .collect()
    }

    fn median(&self, probe: Probe) -> f64 {
        median_or_nan(&self.values(probe))
    }

    fn p99s(&self, probe: Probe) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|r| r.probe == probe).and_then(|r| r.p99_ms))
            .collect()
    }

    fn median_p99(&self, probe: Probe) -> f64 {
        median_or_nan(&self.p99s(probe))
    }

    /// hoist's median over the registry's: times for pushes and pulls (lower is better),
    /// requests per second for the loads (higher is better).
    pub(super) fn ratio(&self, probe: fn(Peer) -> Probe) -> f64 {
        self.median(probe(Peer::Hoist)) / self.median(probe(Peer::Registry))
    }

    /// The median time of hoist's redirect answers, in milliseconds.
    fn redirect_ms(&self) -> f64 {
        let all: Vec<f64> = self
            .runs
            .iter()
            .flatten()
            .filter_map(|r| r.redirect_ms)
            .collect();
        median_or_nan(&all)
    }

    /// `hoist`'s median over `other`'s.
    fn ratio_of(&self, hoist: Probe, other: Probe) -> f64 {
        self.median(hoist) / self.median(other)
    }

    /// The bytes a probe moves, for its MB/s.
    fn bytes(&self, probe: Probe) -> Option<u64> {
        match probe {
            Probe::Push(_) | Probe::Pull(_) => Some(self.layer_bytes),
            Probe::MotoGet | Probe::RedirectGet => Some(self.moto_bytes),
            Probe::Head(_) | Probe::Get(_) => None,
        }
    }

    /// A pull's MB/s as a share of moto's own GET speed, in percent.
    fn pull_vs_moto(&self, peer: Peer) -> f64 {
        let pull = rate_mb_s(self.layer_bytes, self.median(Probe::Pull(peer)));
        let moto = rate_mb_s(self.moto_bytes, self.median(Probe::MotoGet));
        100.0 * pull / moto
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let (at_most, at_least) = (Target::at_most, Target::at_least);
        vec![
            at_most(
                "push time, hoist / registry",
                self.ratio(Probe::Push),
                TIME_LIMIT,
            ),
            at_most(
                "pull time, hoist --redirect-blobs / registry (both redirect)",
                self.ratio_of(
                    Probe::Pull(Peer::HoistRedirect),
                    Probe::Pull(Peer::Registry),
                ),
                TIME_LIMIT,
            ),
            at_most(
                "blob download after hoist's redirect / moto's own GET",
                self.ratio_of(Probe::RedirectGet, Probe::MotoGet),
                REDIRECT_LIMIT,
            ),
            at_least(
                "manifest HEAD req/s, hoist / registry",
                self.ratio(Probe::Head),
                RPS_LIMIT,
            ),
            at_least(
                "manifest GET req/s, hoist / registry",
                self.ratio(Probe::Get),
                RPS_LIMIT,
            ),
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
            "bucket bench: hoist serve --storage s3:// vs {} (s3 driver{}), one moto on \
             loopback,\na fresh bucket and fresh servers per run; client: hoist copy for \
             both; {} MiB in {LAYERS} gzip layers\nof seeded random data, manifest {};\n\
             {runs_note}, {ballast}, {} s pause after each run; server order alternates; \
             manifest\nloads: HEAD with xtask's loader, GET with wrk -t2, \
             {WRK_CONNECTIONS} connections, {} s each; hoist built from {}\n",
            self.registry_version,
            if self.registry_redirects {
                ", blob GETs redirected to moto"
            } else {
                ", blobs streamed through"
            },
            self.layer_bytes >> 20,
            self.manifest,
            self.pause_secs,
            self.wrk_secs,
            self.hoist_revision,
        );
        let header = |out: &mut String, title: &str, last: &str| {
            let _ = write!(out, "| {title} |");
            for i in 1..=runs {
                let _ = write!(out, " run {i} |");
            }
            let _ = writeln!(out, " median | {last} |");
            let _ = write!(out, "|---|");
            for _ in 0..runs {
                let _ = write!(out, "---:|");
            }
            let _ = writeln!(out, "---:|---:|");
        };
        header(&mut out, "seconds", "MB/s");
        for probe in Probe::ALL.into_iter().filter(|p| !p.is_load()) {
            let _ = write!(out, "| {} |", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, " {v:.3} |");
            }
            let m = self.median(probe);
            let rate = self.bytes(probe).map_or(f64::NAN, |b| rate_mb_s(b, m));
            let _ = writeln!(out, " {m:.3} | {rate:.0} |");
        }
        let _ = writeln!(out);
        header(&mut out, "requests/s", "p99 ms");
        for probe in Probe::ALL.into_iter().filter(|p| p.is_load()) {
            let _ = write!(out, "| {} |", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, " {v:.0} |");
            }
            let _ = writeln!(
                out,
                " {:.0} | {:.2} |",
                self.median(probe),
                self.median_p99(probe)
            );
        }
        let _ = writeln!(
            out,
            "\npull speed as a share of moto's own GET: hoist {:.0}% (streamed; {:.2}× the \
             registry's time), hoist with redirects {:.0}%, registry {:.0}% (moto PUT of {} \
             MiB, untimed: {:.0} MB/s)",
            self.pull_vs_moto(Peer::Hoist),
            self.ratio(Probe::Pull),
            self.pull_vs_moto(Peer::HoistRedirect),
            self.pull_vs_moto(Peer::Registry),
            self.moto_bytes >> 20,
            rate_mb_s(self.moto_bytes, self.moto_put_seconds),
        );
        let _ = writeln!(
            out,
            "hoist's redirect answered in {:.1} ms (median; one read of the repository's link \
             in moto, then a URL signed in the process) before the download",
            self.redirect_ms()
        );
        let _ = writeln!(out, "\n| target | measured | limit | verdict |");
        let _ = writeln!(out, "|---|---:|---:|---|");
        for t in self.targets() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                t.name,
                t.measured,
                t.limit,
                verdict(t.pass)
            );
        }
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let map = |f: &dyn Fn(Probe) -> Value| -> serde_json::Map<String, Value> {
            Probe::ALL.iter().map(|&p| (p.key(), f(p))).collect()
        };
        json!({
            "scenario": "bucket",
            "layer_bytes": self.layer_bytes,
            "layers": LAYERS,
            "seed": SEED,
            "manifest": self.manifest,
            "moto_object_bytes": self.moto_bytes,
            "moto_put_seconds": self.moto_put_seconds,
            "registry": self.registry_version,
            "registry_blob_redirects": self.registry_redirects,
            "hoist_revision": self.hoist_revision,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load": {
                "connections": WRK_CONNECTIONS,
                "seconds": self.wrk_secs,
                "head": "xtask's loader, one thread per connection",
                "get": "wrk -t2",
            },
            "order": self.runs.iter()
                .map(|run| run.iter().map(|r| r.probe.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "values": map(&|p| json!(self.values(p))),
            "medians": map(&|p| json!(self.median(p))),
            "p99_ms": Probe::ALL.iter().filter(|p| p.is_load())
                .map(|&p| (p.key(), json!(self.p99s(p))))
                .collect::<serde_json::Map<String, Value>>(),
            "units": {
                "push, pull, moto_get": "seconds",
                "manifest": "requests/s",
                "p99": "milliseconds",
            },
            "redirect_ms": self.redirect_ms(),
            "pull_percent_of_moto_get": {
                "hoist": self.pull_vs_moto(Peer::Hoist),
                "hoist_redirect": self.pull_vs_moto(Peer::HoistRedirect),
                "registry": self.pull_vs_moto(Peer::Registry),
            },
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "limit": t.limit_value,
                "at_most": t.name.contains("time"),
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::bucket_order;
    use super::*;

    fn report(hoist_push: f64, hoist_rps: f64, redirect_get: f64) -> BucketReport {
        let run = |i: usize| {
            bucket_order(i)
                .into_iter()
                .map(|probe| {
                    let value = match probe {
                        Probe::Push(Peer::Hoist | Peer::HoistRedirect) => hoist_push,
                        Probe::Push(Peer::Registry) | Probe::Pull(_) => 2.0,
                        Probe::MotoGet => 0.1,
                        Probe::RedirectGet => redirect_get,
                        Probe::Head(Peer::Hoist | Peer::HoistRedirect)
                        | Probe::Get(Peer::Hoist | Peer::HoistRedirect) => hoist_rps,
                        Probe::Head(Peer::Registry) | Probe::Get(Peer::Registry) => 1000.0,
                    };
                    let p99_ms = probe.is_load().then_some(1.0);
                    Reading {
                        probe,
                        value,
                        p99_ms,
                        redirect_ms: (probe == Probe::RedirectGet).then_some(5.0),
                    }
                })
                .collect()
        };
        BucketReport {
            layer_bytes: 256 << 20,
            manifest: "sha256:00".to_owned(),
            moto_bytes: 64 << 20,
            moto_put_seconds: 0.4,
            registry_redirects: true,
            registry_version: "docker-registry 2.8.2".to_owned(),
            hoist_revision: "abc".to_owned(),
            wrk_secs: 5,
            pause_secs: 20,
            warm_up: 1,
            ballast_bytes: vec![0; 3],
            runs: (0..3).map(run).collect(),
        }
    }

    #[test]
    fn targets_compare_hoist_with_the_registry() {
        let good = report(1.5, 3000.0, 0.105);
        assert!(good.targets().iter().all(|t| t.pass));
        assert!((good.ratio(Probe::Push) - 0.75).abs() < 1e-9);
        let table = good.table();
        assert!(table.contains("| push time, hoist / registry | 0.75× | ≤ 1.00× | PASS |"));
        let slow = report(2.5, 1500.0, 0.2);
        let verdicts: Vec<bool> = slow.targets().iter().map(|t| t.pass).collect();
        // push, pull with redirects, the redirect's GET against moto's, HEAD, GET.
        assert_eq!(verdicts, [false, true, false, false, false]);
        let json = slow.to_json();
        assert_eq!(json["targets"][0]["pass"], false);
        assert_eq!(json["medians"]["registry_pull"], 2.0);
    }
}
