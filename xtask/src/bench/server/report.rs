//! What the server scenario measured, and the table and JSON made of it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    DOWNLOAD_LIMIT, IDLE_CONNECTIONS, MANIFEST_LOADS, MANY_CONNECTIONS, ONE_CONNECTION, Peer,
    Probe, ProbeOf, Reading, UPLOAD_LIMIT,
};
use crate::bench::load::{RPS_LIMIT, WRK_CONNECTIONS};
use crate::bench::measure::{
    Runs, Target, ballast_note, format_mib, format_ratio, format_small_ratio, in_each_run,
    median_or_nan, run_header, seconds_row, targets_json, verdict_table,
};

/// `conn` or `conns`, for `n` connections.
fn conns(n: u32) -> &'static str {
    if n == 1 { "conn" } else { "conns" }
}

/// The names of the manifest targets, in the order of [`MANIFEST_LOADS`].
const MANIFEST_TARGETS: [&str; 6] = [
    "manifest HEAD req/s, 1 conn, hoist / registry",
    "manifest GET req/s, 1 conn, hoist / registry",
    "manifest HEAD req/s, 32 conns, hoist / registry",
    "manifest GET req/s, 32 conns, hoist / registry",
    "manifest HEAD req/s, 256 conns, hoist / registry",
    "manifest GET req/s, 256 conns, hoist / registry",
];

/// Everything the server scenario measured.
#[derive(Debug)]
pub(super) struct ServerReport {
    pub(super) size_bytes: u64,
    pub(super) wrk_secs: u64,
    pub(super) ballast_bytes: Vec<u64>,
    /// The uncounted warm-up runs before the counted ones (0 with `--quick`).
    pub(super) warm_up: usize,
    /// The counted runs.
    pub(super) runs: Vec<Vec<Reading>>,
    /// `VmRSS` before and after opening the idle connections, in KiB, hoist then registry.
    pub(super) idle_kib: [(u64, u64); 2],
}

impl ServerReport {
    pub(super) fn values(&self, probe: Probe) -> Vec<f64> {
        in_each_run(&self.runs, |r| r.probe == probe)
            .iter()
            .map(|r| r.value)
            .collect()
    }

    fn median(&self, probe: Probe) -> f64 {
        median_or_nan(&self.values(probe))
    }

    /// The p99 latencies of `probe`'s runs, in milliseconds.
    pub(super) fn p99s(&self, probe: Probe) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|r| r.probe == probe).and_then(|r| r.p99_ms))
            .collect()
    }

    /// The median of the runs' p99 latencies of `probe`, in milliseconds.
    pub(super) fn median_p99(&self, probe: Probe) -> f64 {
        median_or_nan(&self.p99s(probe))
    }

    /// hoist's p99 latency over the registry's (below 1 when hoist answers faster).
    pub(super) fn p99_ratio(&self, probe: ProbeOf) -> f64 {
        self.median_p99(probe(Peer::Hoist)) / self.median_p99(probe(Peer::Registry))
    }

    /// hoist's throughput (or request rate) over the registry's.
    pub(super) fn ratio(&self, probe: ProbeOf) -> f64 {
        self.ratio_of(probe, Peer::Hoist)
    }

    /// `peer`'s throughput (or request rate) over the registry's.
    pub(super) fn ratio_of(&self, probe: ProbeOf, peer: Peer) -> f64 {
        let (h, r) = (self.median(probe(peer)), self.median(probe(Peer::Registry)));
        if matches!(probe(peer), Probe::Upload(_) | Probe::Download(_)) {
            r / h
        } else {
            h / r
        }
    }

    /// An upload's throughput as a share of `dd`'s, in percent.
    pub(super) fn upload_vs_dd(&self, peer: Peer) -> f64 {
        100.0 * self.median(Probe::Dd) / self.median(Probe::Upload(peer))
    }

    pub(super) fn idle_kib_per_conn(&self, peer: Peer) -> f64 {
        let (before, after) = self.idle_kib[usize::from(peer == Peer::Registry)];
        (after as f64 - before as f64) / IDLE_CONNECTIONS as f64
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let at_least = Target::at_least;
        let mut targets = vec![
            // Like for like: neither hashes what it serves (the ratio of hoist --verify-reads
            // is in the table, without a verdict).
            at_least(
                "blob download MB/s, hoist / registry",
                self.ratio(Probe::Download),
                DOWNLOAD_LIMIT,
            ),
            at_least(
                "blob upload MB/s, hoist / registry",
                self.ratio(Probe::Upload),
                UPLOAD_LIMIT,
            ),
        ];
        // Every level of connections (issue 18: 1, 32 and 256), with the figures behind it.
        for (name, (_, probe)) in MANIFEST_TARGETS.into_iter().zip(MANIFEST_LOADS) {
            let rate = |peer| format!("{:.0} req/s", self.median(probe(peer)));
            targets.push(at_least(name, self.ratio(probe), RPS_LIMIT).versus_peer(
                rate(Peer::Hoist),
                format!("{} docker-registry", rate(Peer::Registry)),
            ));
        }
        targets
    }

    pub(super) fn table(&self) -> String {
        let runs = self.runs.len();
        let mut out = String::new();
        let ballast = ballast_note(&self.ballast_bytes);
        let _ = writeln!(
            out,
            "server bench: hoist serve vs docker-registry, filesystem storage, fresh data dirs, \
             loopback;\n{} MiB random blob (a new one per run), {}, {ballast}; \
             server order alternates\n(odd runs: hoist first, dd before the uploads; even runs: \
             registry first, dd after);\nGET: wrk \
             -t1 -c{ONE_CONNECTION}, -t2 -c{WRK_CONNECTIONS} and -t2 -c{MANY_CONNECTIONS} \
             -d{}s --latency; HEAD: xtask's own loader (wrk 4.1 hangs on HEAD),\n\
             {ONE_CONNECTION}, {WRK_CONNECTIONS} and {MANY_CONNECTIONS} keep-alive connections, \
             one thread each; p99: wrk's 99% line, the loader's nearest rank\n",
            self.size_bytes >> 20,
            Runs {
                warm_up: self.warm_up,
                counted: runs
            }
            .describe(),
            self.wrk_secs,
        );
        let header = |out: &mut String, title: &str, unit: &str| {
            run_header(out, 38, title, runs, unit);
        };
        header(&mut out, "seconds", "MB/s");
        for probe in Probe::TIMED {
            seconds_row(
                &mut out,
                38,
                &probe.label(),
                &self.values(probe),
                self.size_bytes,
            );
        }
        let _ = writeln!(out);
        header(&mut out, "requests/s", "");
        for probe in Probe::RATES {
            let _ = write!(out, "{:<38}", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, "{v:>10.0}");
            }
            let _ = writeln!(out, "{:>10.0}", self.median(probe));
        }
        let _ = writeln!(out);
        header(&mut out, "p99 latency, ms", "");
        for probe in Probe::RATES {
            let _ = write!(out, "{:<38}", probe.label());
            for v in self.p99s(probe) {
                let _ = write!(out, "{v:>10.2}");
            }
            let _ = writeln!(out, "{:>10.2}", self.median_p99(probe));
        }
        let _ = writeln!(
            out,
            "\n{:<24}{:>12}{:>12}{:>8}{:>12}{:>12}{:>8}",
            "manifest (medians)",
            "hoist req/s",
            "registry",
            "ratio",
            "hoist p99",
            "registry",
            "ratio"
        );
        for (method, probe) in MANIFEST_LOADS {
            let connections = probe(Peer::Hoist).connections().unwrap_or(0);
            let _ = writeln!(
                out,
                "{:<24}{:>12.0}{:>12.0}{:>8}{:>12}{:>12}{:>8}",
                format!("{method}, {connections} {}", conns(connections)),
                self.median(probe(Peer::Hoist)),
                self.median(probe(Peer::Registry)),
                format_ratio(self.ratio(probe)),
                format!("{:.2} ms", self.median_p99(probe(Peer::Hoist))),
                format!("{:.2} ms", self.median_p99(probe(Peer::Registry))),
                format_small_ratio(self.p99_ratio(probe)),
            );
        }
        let _ = writeln!(
            out,
            "(ratios: hoist / registry; more req/s is better, a lower p99 is better)"
        );
        let _ = writeln!(
            out,
            "\nidle connections ({IDLE_CONNECTIONS}, before load){:>12}{:>12}{:>12}",
            "RSS before", "after", "KiB/conn"
        );
        for peer in [Peer::Hoist, Peer::Registry] {
            let (before, after) = self.idle_kib[usize::from(peer == Peer::Registry)];
            let _ = writeln!(
                out,
                "{:<38}{:>12}{:>12}{:>12.1}",
                peer.key(),
                format_mib(before),
                format_mib(after),
                self.idle_kib_per_conn(peer)
            );
        }
        let _ = writeln!(out);
        verdict_table(&mut out, 48, 10, &self.targets());
        for peer in [Peer::Hoist, Peer::Registry] {
            let _ = writeln!(
                out,
                "{:<48}{:>10}{:>10}   (reported)",
                format!("{} upload / dd write bound", peer.key()),
                format!("{:.0}%", self.upload_vs_dd(peer)),
                "-"
            );
        }
        let _ = writeln!(
            out,
            "{:<48}{:>10}{:>10}   (reported: hashes every byte it serves; the registry does not)",
            "download MB/s, hoist --verify-reads / registry",
            format_ratio(self.ratio_of(Probe::Download, Peer::HoistVerified)),
            "-"
        );
        out
    }

    pub(super) fn to_json(&self) -> Value {
        let all = Probe::TIMED.iter().chain(&Probe::RATES);
        let values: serde_json::Map<String, Value> = all
            .clone()
            .map(|&p| (p.key(), json!(self.values(p))))
            .collect();
        let medians: serde_json::Map<String, Value> =
            all.map(|&p| (p.key(), json!(self.median(p)))).collect();
        let p99s: serde_json::Map<String, Value> = Probe::RATES
            .iter()
            .map(|&p| (p.key(), json!(self.p99s(p))))
            .collect();
        let median_p99s: serde_json::Map<String, Value> = Probe::RATES
            .iter()
            .map(|&p| (p.key(), json!(self.median_p99(p))))
            .collect();
        let manifest_vs_registry: serde_json::Map<String, Value> = MANIFEST_LOADS
            .iter()
            .map(|&(method, probe)| {
                let connections = probe(Peer::Hoist).connections().unwrap_or(0);
                (
                    format!("{}_c{connections}", method.to_lowercase()),
                    json!({
                        "connections": connections,
                        "requests_per_sec_ratio": self.ratio(probe),
                        "p99_ratio": self.p99_ratio(probe),
                    }),
                )
            })
            .collect();
        let idle = |peer: Peer| {
            let (before, after) = self.idle_kib[usize::from(peer == Peer::Registry)];
            json!({
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": self.idle_kib_per_conn(peer),
            })
        };
        json!({
            "scenario": "server",
            "size_bytes": self.size_bytes,
            "runs": self.runs.len(),
            "warm_up_runs": self.warm_up,
            "wrk": {
                "threads": 2,
                "connections": [ONE_CONNECTION, WRK_CONNECTIONS, MANY_CONNECTIONS],
                "seconds": self.wrk_secs,
            },
            "head_loader": {
                "threads": "one per connection",
                "connections": [ONE_CONNECTION, WRK_CONNECTIONS, MANY_CONNECTIONS],
                "seconds": self.wrk_secs,
            },
            "ballast_bytes": self.ballast_bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|r| r.probe.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "values": values,
            "medians": medians,
            "p99_ms": p99s,
            "median_p99_ms": median_p99s,
            "units": {
                "dd, upload, download": "seconds",
                "manifest": "requests/s",
                "p99": "milliseconds",
            },
            "manifest_hoist_vs_registry": manifest_vs_registry,
            "download_verify_reads_vs_registry": self.ratio_of(Probe::Download, Peer::HoistVerified),
            "upload_percent_of_dd": {
                "hoist": self.upload_vs_dd(Peer::Hoist),
                "registry": self.upload_vs_dd(Peer::Registry),
            },
            "idle_connections": IDLE_CONNECTIONS,
            "idle_memory": { "hoist": idle(Peer::Hoist), "registry": idle(Peer::Registry) },
            "targets": targets_json(&self.targets(), "at_least"),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_report_ratios_and_table() {
        let run = |up_h, up_r, down_h, down_r, rps_h, rps_r, p99_h| {
            let timed = [
                (Probe::Dd, 0.7),
                (Probe::Upload(Peer::Hoist), up_h),
                (Probe::Upload(Peer::Registry), up_r),
                (Probe::Download(Peer::Hoist), down_h),
                (Probe::Download(Peer::Registry), down_r),
                (Probe::Download(Peer::HoistVerified), down_h * 2.0),
            ]
            .map(|(probe, value)| Reading {
                probe,
                value,
                p99_ms: None,
            });
            // At 256 connections: half the rate, 8 times hoist's p99; the registry's p99 is
            // 4 ms at 32 connections, 30 ms at 256.
            let rates = [
                (Probe::HeadOne(Peer::Hoist), rps_h / 4.0, 0.1),
                (Probe::HeadOne(Peer::Registry), rps_r / 4.0, 0.5),
                (Probe::GetOne(Peer::Hoist), rps_h / 4.0, 0.1),
                (Probe::GetOne(Peer::Registry), rps_r / 4.0, 0.5),
                (Probe::Head(Peer::Hoist), rps_h, p99_h),
                (Probe::Head(Peer::Registry), rps_r, 4.0),
                (Probe::Get(Peer::Hoist), rps_h, p99_h),
                (Probe::Get(Peer::Registry), rps_r, 4.0),
                (Probe::HeadMany(Peer::Hoist), rps_h / 2.0, p99_h * 8.0),
                (Probe::HeadMany(Peer::Registry), rps_r / 2.0, 30.0),
                (Probe::GetMany(Peer::Hoist), rps_h / 2.0, p99_h * 8.0),
                (Probe::GetMany(Peer::Registry), rps_r / 2.0, 30.0),
            ]
            .map(|(probe, value, p99)| Reading {
                probe,
                value,
                p99_ms: Some(p99),
            });
            timed.into_iter().chain(rates).collect::<Vec<_>>()
        };
        let report = ServerReport {
            size_bytes: 256 << 20,
            wrk_secs: 5,
            ballast_bytes: vec![0; 3],
            warm_up: 1,
            runs: vec![
                run(0.8, 1.3, 0.05, 0.2, 20000.0, 1000.0, 1.0),
                run(0.7, 1.2, 0.05, 0.12, 21000.0, 1100.0, 2.0),
                run(0.9, 1.4, 0.05, 0.13, 19000.0, 900.0, 1.5),
            ],
            idle_kib: [(10_000, 10_400), (30_000, 31_000)],
        };
        assert!((report.ratio(Probe::Upload) - 1.3 / 0.8).abs() < 1e-9);
        assert!((report.ratio(Probe::Download) - 2.6).abs() < 1e-9);
        assert!((report.ratio_of(Probe::Download, Peer::HoistVerified) - 1.3).abs() < 1e-9);
        assert!((report.ratio(Probe::Head) - 20.0).abs() < 1e-9);
        assert!((report.ratio(Probe::GetMany) - 20.0).abs() < 1e-9);
        assert_eq!(report.p99s(Probe::Get(Peer::Hoist)), [1.0, 2.0, 1.5]);
        assert!((report.median_p99(Probe::HeadMany(Peer::Hoist)) - 12.0).abs() < 1e-9);
        assert!((report.p99_ratio(Probe::GetMany) - 0.4).abs() < 1e-9);
        assert!(report.p99s(Probe::Dd).is_empty());
        assert!((report.upload_vs_dd(Peer::Hoist) - 87.5).abs() < 1e-9);
        assert!((report.idle_kib_per_conn(Peer::Registry) - 5.0).abs() < 1e-9);
        let verdicts: Vec<bool> = report.targets().iter().map(|t| t.pass).collect();
        // The download target is the default hoist's (2.6x), like for like; that of
        // hoist --verify-reads (1.3x) is reported without a verdict.
        assert_eq!(verdicts, [true; 8]);
        let names: Vec<&str> = report.targets().iter().map(|t| t.name).collect();
        for (name, (method, probe)) in MANIFEST_TARGETS.into_iter().zip(MANIFEST_LOADS) {
            let connections = probe(Peer::Hoist).connections().unwrap();
            assert!(name.contains(method), "{name}");
            assert!(name.contains(&format!(" {connections} conn")), "{name}");
            assert!(names.contains(&name), "{name}");
        }
        assert_eq!(report.targets()[2].hoist, "5000 req/s");
        assert_eq!(report.targets()[2].peer, "250 req/s docker-registry");
        assert_eq!(
            report.targets()[0].name,
            "blob download MB/s, hoist / registry"
        );
        let table = report.table();
        assert!(table.contains("PASS") && table.contains("2.60×"), "{table}");
        assert!(
            table.contains("hoist --verify-reads / registry") && table.contains("1.30×"),
            "{table}"
        );
        assert!(table.contains("88%"), "{table}");
        assert!(table.contains("GET, 256 conns"), "{table}");
        assert!(
            table.contains("12.00 ms") && table.contains("0.400×"),
            "{table}"
        );
        assert!(table.contains("hoist HEAD manifest, 256 conns"), "{table}");
        assert!(table.contains("hoist GET manifest, 1 conn "), "{table}");
        assert!(table.contains("HEAD, 1 conn "), "{table}");
        let json = report.to_json();
        assert_eq!(json["scenario"], json!("server"));
        assert_eq!(json["medians"]["hoist_upload"], json!(0.8));
        assert_eq!(json["medians"]["hoist_verify_reads_download"], json!(0.1));
        assert_eq!(
            json["median_p99_ms"]["registry_manifest_get_c256"],
            json!(30.0)
        );
        assert_eq!(
            json["p99_ms"]["hoist_manifest_head"],
            json!([1.0, 2.0, 1.5])
        );
        assert_eq!(
            json["manifest_hoist_vs_registry"]["get_c256"]["p99_ratio"],
            json!(0.4)
        );
        assert_eq!(json["download_verify_reads_vs_registry"], json!(1.3));
        assert_eq!(json["targets"][1]["pass"], json!(true));
    }
}
