//! Scenario `server` (issue 4): with filesystem storage for both, `hoist serve` against
//! `docker-registry` side by side in one run: blob download and upload throughput at least
//! [`DOWNLOAD_LIMIT`] and [`UPLOAD_LIMIT`] times the registry's, manifest HEAD and GET requests
//! per second at [`ONE_CONNECTION`], [`WRK_CONNECTIONS`] and [`MANY_CONNECTIONS`] concurrent
//! connections (issue 18) each at least [`RPS_LIMIT`](super::load::RPS_LIMIT) times the
//! registry's; the upload is also compared with writing the same bytes into a new file
//! (`dd conv=fdatasync`), the machine's bound, and the memory of an idle connection reported.
//! Both servers run as they start by default: hoist with its connection timeouts and limits on
//! (issue 14) and serving blobs as stored, like the registry; a second hoist with
//! `--verify-reads` over the same root, which hashes every blob byte it serves, is measured for
//! downloads only and reported without a verdict.
//!
//! The p99 latency of every manifest load test is reported beside the registry's (no target).
//! GET: `wrk --latency` (its `99%` line, over every request of the test; one wrk thread for a
//! single connection, two otherwise). HEAD: xtask's own loader (wrk 4.1 hangs on HEAD), one
//! blocking thread per connection (see [`super::load`] for why), which times every request
//! from its write to the end of the response head and takes the nearest-rank 99th percentile
//! of all of them. A single connection measures the latency of one request after another (what
//! a client resolving tags one by one sees); 256, how the server holds up under many.
//!
//! How it measures: both servers run on free loopback ports with fresh data directories; every
//! run uploads a new random blob (so that no server finds it already stored) with `curl`
//! (`POST`, then one monolithic `PUT -T`), downloads it once untimed and then
//! [`DOWNLOADS_PER_RUN`] times timed by curl's own clock (median), writes it
//! with `dd` into a new file, and load-tests the manifest with `wrk` and the HEAD loader; the
//! order of the servers (and of `dd` among the writes) alternates between runs; results are
//! medians (of the runs' requests per second, and of the runs' p99 latencies) of
//! [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS) counted runs after an uncounted warm-up run (its
//! load tests [`WARM_UP_SECS`] long; no warm-up with `--quick`).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::data::urandom_file;
use super::load::{REPO, TAG, WRK_CONNECTIONS, head_load, write_get_script, wrk};
use super::machine::{
    Workspace, ballast_bytes, build_hoist, check_dd, dd, read_through, remove_dir, require_tools,
    run_ballast, sha256_of, status_kib,
};
use super::measure::{Defaults, Runs, median_or_nan, timed, write_results};
use super::peers::{
    MANIFEST_TYPE, Proc, Registry, curl, download_blob, start_hoist_serve, upload_blob,
};
use super::{BenchArgs, Scenario};

mod report;

use report::ServerReport;

/// The default blob size of the server scenario.
const SERVER_SIZE_MIB: u64 = 256;
/// The blob size of `--quick`, a smoke run.
const QUICK_SIZE_MIB: u64 = 64;
/// The length of each load test, in seconds: in counted runs, in the warm-up, with `--quick`.
const LOAD_SECS: u64 = 3;
const WARM_UP_SECS: u64 = 1;
const QUICK_LOAD_SECS: u64 = 2;
/// The scenario's defaults for what the command line leaves out: [`SERVER_SIZE_MIB`] and
/// [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS), or with `--quick` [`QUICK_SIZE_MIB`] and one
/// run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(SERVER_SIZE_MIB, QUICK_SIZE_MIB);

/// Timed downloads of the blob from each server in a run (their median is the run's figure):
/// one takes a tenth of a second, and a few such swung the ratio by a third between runs.
const DOWNLOADS_PER_RUN: usize = 9;
/// hoist's throughput over the registry's, at least.
const DOWNLOAD_LIMIT: f64 = 1.5;
const UPLOAD_LIMIT: f64 = 1.5;
/// Concurrent connections of the second, heavier manifest load tests (issue 14).
const MANY_CONNECTIONS: u32 = 256;
/// The connection of the lightest manifest load tests: one request after another (issue 18).
const ONE_CONNECTION: u32 = 1;
/// How many idle connections the memory measure opens to each server.
const IDLE_CONNECTIONS: usize = 200;
/// `{}`, the config blob of the manifest.
const EMPTY_CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The servers compared: hoist (as it starts by default, serving blobs as stored like the
/// registry), the registry, and, for downloads only, hoist with `--verify-reads` over the same
/// root, which hashes every blob byte it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Hoist,
    Registry,
    HoistVerified,
}

impl Peer {
    fn key(self) -> &'static str {
        match self {
            Self::Hoist => "hoist",
            Self::Registry => "registry",
            Self::HoistVerified => "hoist_verify_reads",
        }
    }
}

/// What a run measures: times in seconds for [`Probe::TIMED`], requests per second (and a p99
/// latency) for [`Probe::RATES`]. `HeadOne` and `GetOne` are at [`ONE_CONNECTION`], `Head`
/// and `Get` at [`WRK_CONNECTIONS`], `HeadMany` and `GetMany` at [`MANY_CONNECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Dd,
    Upload(Peer),
    Download(Peer),
    HeadOne(Peer),
    GetOne(Peer),
    Head(Peer),
    Get(Peer),
    HeadMany(Peer),
    GetMany(Peer),
}

impl Probe {
    const TIMED: [Self; 6] = [
        Self::Dd,
        Self::Upload(Peer::Hoist),
        Self::Upload(Peer::Registry),
        Self::Download(Peer::Hoist),
        Self::Download(Peer::Registry),
        Self::Download(Peer::HoistVerified),
    ];
    const RATES: [Self; 12] = [
        Self::HeadOne(Peer::Hoist),
        Self::HeadOne(Peer::Registry),
        Self::GetOne(Peer::Hoist),
        Self::GetOne(Peer::Registry),
        Self::Head(Peer::Hoist),
        Self::Head(Peer::Registry),
        Self::Get(Peer::Hoist),
        Self::Get(Peer::Registry),
        Self::HeadMany(Peer::Hoist),
        Self::HeadMany(Peer::Registry),
        Self::GetMany(Peer::Hoist),
        Self::GetMany(Peer::Registry),
    ];

    fn key(self) -> String {
        match self {
            Self::Dd => "dd".to_owned(),
            Self::Upload(p) => format!("{}_upload", p.key()),
            Self::Download(p) => format!("{}_download", p.key()),
            Self::HeadOne(p) => format!("{}_manifest_head_c{ONE_CONNECTION}", p.key()),
            Self::GetOne(p) => format!("{}_manifest_get_c{ONE_CONNECTION}", p.key()),
            Self::Head(p) => format!("{}_manifest_head", p.key()),
            Self::Get(p) => format!("{}_manifest_get", p.key()),
            Self::HeadMany(p) => format!("{}_manifest_head_c{MANY_CONNECTIONS}", p.key()),
            Self::GetMany(p) => format!("{}_manifest_get_c{MANY_CONNECTIONS}", p.key()),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Dd => "dd conv=fdatasync, new file".to_owned(),
            Self::Upload(p) => format!("{} upload (POST + PUT)", p.key()),
            Self::Download(p) => format!("{} download (GET)", p.key()),
            Self::HeadOne(p) => format!("{} HEAD manifest, {ONE_CONNECTION} conn", p.key()),
            Self::GetOne(p) => format!("{} GET manifest, {ONE_CONNECTION} conn", p.key()),
            Self::Head(p) => format!("{} HEAD manifest, {WRK_CONNECTIONS} conns", p.key()),
            Self::Get(p) => format!("{} GET manifest, {WRK_CONNECTIONS} conns", p.key()),
            Self::HeadMany(p) => format!("{} HEAD manifest, {MANY_CONNECTIONS} conns", p.key()),
            Self::GetMany(p) => format!("{} GET manifest, {MANY_CONNECTIONS} conns", p.key()),
        }
    }

    /// The concurrent connections of a load test, `None` for the timed probes.
    fn connections(self) -> Option<u32> {
        match self {
            Self::HeadOne(_) | Self::GetOne(_) => Some(ONE_CONNECTION),
            Self::Head(_) | Self::Get(_) => Some(WRK_CONNECTIONS),
            Self::HeadMany(_) | Self::GetMany(_) => Some(MANY_CONNECTIONS),
            Self::Dd | Self::Upload(_) | Self::Download(_) => None,
        }
    }
}

/// The order of run `index` (from 0): hoist first in even runs, the registry first in odd
/// ones; `dd` before the uploads in even runs, after them in odd ones.
fn server_order(index: usize) -> Vec<Probe> {
    use Probe::{Dd, Download, Get, GetMany, GetOne, Head, HeadMany, HeadOne, Upload};
    let even = index.is_multiple_of(2);
    let (a, b) = if even {
        (Peer::Hoist, Peer::Registry)
    } else {
        (Peer::Registry, Peer::Hoist)
    };
    let mut order = if even {
        vec![Dd, Upload(a), Upload(b)]
    } else {
        vec![Upload(a), Upload(b), Dd]
    };
    // The registry's download between hoist's two kinds, alternately first and last.
    let (first, last) = if even {
        (Peer::Hoist, Peer::HoistVerified)
    } else {
        (Peer::HoistVerified, Peer::Hoist)
    };
    order.extend([Download(first), Download(Peer::Registry), Download(last)]);
    order.extend([HeadOne(a), HeadOne(b), GetOne(a), GetOne(b)]);
    order.extend([Head(a), Head(b), Get(a), Get(b)]);
    order.extend([HeadMany(a), HeadMany(b), GetMany(a), GetMany(b)]);
    order
}

/// A running server of the scenario.
struct Endpoint {
    peer: Peer,
    /// `http://127.0.0.1:PORT`.
    base: String,
    pid: u32,
}

/// Pushes `{}` as config and a manifest with the blob `layer` to `REPO:TAG`.
fn push_manifest(base: &str, layer: &str, layer_size: u64) -> Result<()> {
    upload_blob(base, REPO, None, "{}", EMPTY_CONFIG_DIGEST)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": EMPTY_CONFIG_DIGEST,
            "size": 2,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer,
            "size": layer_size,
        }],
    });
    let mut put = curl();
    put.args(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Content-Type: {MANIFEST_TYPE}")])
        .args(["--data-binary", &manifest.to_string()])
        .arg(format!("{base}/v2/{REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut put)?;
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of the manifest to {base} answered {code}, expected 201");
    }
    Ok(())
}

/// Opens [`IDLE_CONNECTIONS`] connections that send nothing; returns `VmRSS` before and
/// after, in KiB.
fn idle_memory(endpoint: &Endpoint) -> Result<(u64, u64)> {
    let addr = endpoint.base.trim_start_matches("http://");
    let pid = endpoint.pid.to_string();
    let before = status_kib(&pid, "VmRSS")?;
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        conns.push(
            std::net::TcpStream::connect(addr)
                .with_context(|| format!("cannot connect to {addr}"))?,
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = status_kib(&pid, "VmRSS")?;
    drop(conns);
    Ok((before, after))
}

/// One measure of a run: seconds for [`Probe::TIMED`], requests per second for the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    probe: Probe,
    value: f64,
    /// The load tests' 99th percentile latency, in milliseconds.
    p99_ms: Option<f64>,
}

/// A kind of measure, by the peer it measures (`Probe::Get`, ...).
type ProbeOf = fn(Peer) -> Probe;

/// The manifest load tests compared side by side: a name and the probe of each peer.
const MANIFEST_LOADS: [(&str, ProbeOf); 6] = [
    ("HEAD", Probe::HeadOne),
    ("GET", Probe::GetOne),
    ("HEAD", Probe::Head),
    ("GET", Probe::Get),
    ("HEAD", Probe::HeadMany),
    ("GET", Probe::GetMany),
];

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Server.tools())?;
    let exe = build_hoist(root)?;
    let workspace = Workspace::new(root, "server", None)?;
    let work = workspace.work.clone();
    let size_bytes = args.size_mib << 20;
    let wrk_secs = if args.quick {
        QUICK_LOAD_SECS
    } else {
        LOAD_SECS
    };
    // The warm-up run is left out of the results (none with `--quick`).
    let plan = Runs::new(args);

    let registry_dir = work.join("registry");
    let registry = Registry::start(root, &registry_dir, true)?;
    println!(
        "==> docker-registry on {}, data {}",
        registry.addr,
        registry_dir.display()
    );

    let hoist_root = work.join("hoist-root");
    fs::create_dir_all(&hoist_root)?;
    let start_hoist = |flags: &[&str], log: &str| -> Result<(Proc, String)> {
        let started = start_hoist_serve(&exe, &work.join(log), Duration::from_secs(10), |cmd| {
            cmd.arg("--root").arg(&hoist_root).args(flags);
        })?;
        println!(
            "==> hoist serve {} on {}, root {}",
            flags.join(" "),
            started.1.trim_start_matches("http://"),
            hoist_root.display()
        );
        Ok(started)
    };
    let (hoist, hoist_base) = start_hoist(&[], "hoist.log")?;
    // The same root, for downloads only.
    let (verified_hoist, verified_base) = start_hoist(&["--verify-reads"], "hoist-verify.log")?;
    let endpoints = [
        Endpoint {
            peer: Peer::Hoist,
            base: hoist_base,
            pid: hoist.0.id(),
        },
        Endpoint {
            peer: Peer::Registry,
            base: registry.base(),
            pid: registry.pid,
        },
    ];
    let verified = Endpoint {
        peer: Peer::HoistVerified,
        base: verified_base,
        pid: verified_hoist.0.id(),
    };
    let endpoint = |peer: Peer| match peer {
        Peer::Hoist => &endpoints[0],
        Peer::Registry => &endpoints[1],
        Peer::HoistVerified => &verified,
    };

    // Before any load, so that neither server holds garbage from it (Go collects lazily).
    println!("==> idle connections: {IDLE_CONNECTIONS} to each server, RSS before and after");
    let idle_kib = [
        idle_memory(endpoint(Peer::Hoist))?,
        idle_memory(endpoint(Peer::Registry))?,
    ];
    for e in &endpoints {
        let (before, after) = idle_kib[usize::from(e.peer == Peer::Registry)];
        println!("    {:<38}{before:>8} -> {after} KiB", e.peer.key());
    }

    let get_script = write_get_script(&work)?;

    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    let mut manifest_pushed = false;
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        let load_secs = if run.counted { wrk_secs } else { WARM_UP_SECS };
        println!("{}", run.heading(plan));
        let source = dir.join("source.bin");
        urandom_file(&source, size_bytes)?;
        let digest = sha256_of(&source)?;
        read_through(&source)?;
        println!("    source {digest}");
        let ballast = run_ballast(args.ballast, &dir, |available| {
            ballast_bytes(size_bytes, available)
        })?;
        if run.counted {
            ballasts.push(ballast);
        }
        let mut readings = Vec::new();
        for probe in server_order(run.index) {
            let mut p99_ms = None;
            let value = match probe {
                Probe::Dd => {
                    let target = dir.join("dd-file");
                    let (seconds, _) = timed(&mut dd(&source, &target))?;
                    check_dd(&target, size_bytes)?;
                    seconds
                }
                Probe::Upload(peer) => {
                    upload_blob(&endpoint(peer).base, REPO, Some(&source), "", &digest)?
                }
                Probe::Download(peer) => {
                    let base = &endpoint(peer).base;
                    // Untimed first: both servers serve it from the page cache alike. Then
                    // the median of a few: one transfer is short.
                    download_blob(base, REPO, &digest, size_bytes)?;
                    let times = (0..DOWNLOADS_PER_RUN)
                        .map(|_| download_blob(base, REPO, &digest, size_bytes))
                        .collect::<Result<Vec<f64>>>()?;
                    median_or_nan(&times)
                }
                Probe::HeadOne(peer)
                | Probe::GetOne(peer)
                | Probe::Head(peer)
                | Probe::Get(peer)
                | Probe::HeadMany(peer)
                | Probe::GetMany(peer) => {
                    if !manifest_pushed {
                        for e in &endpoints {
                            push_manifest(&e.base, &digest, size_bytes)?;
                        }
                        manifest_pushed = true;
                    }
                    let base = &endpoint(peer).base;
                    let connections = probe.connections().unwrap_or(WRK_CONNECTIONS);
                    let head = matches!(
                        probe,
                        Probe::HeadOne(_) | Probe::Head(_) | Probe::HeadMany(_)
                    );
                    let load = if head {
                        head_load(base, connections, load_secs)?
                    } else {
                        wrk(base, &get_script, connections, load_secs)?
                    };
                    p99_ms = Some(load.p99_ms);
                    load.requests_per_sec
                }
            };
            match p99_ms {
                None => println!("    {:<38}{value:>10.3} s", probe.label()),
                Some(p99) => println!(
                    "    {:<38}{value:>10.0} req/s, p99 {p99:.2} ms",
                    probe.label()
                ),
            }
            readings.push(Reading {
                probe,
                value,
                p99_ms,
            });
        }
        if run.counted {
            runs.push(readings);
        }
    }

    drop((hoist, verified_hoist));
    drop(registry);
    remove_dir(&work)?;

    let report = ServerReport {
        size_bytes,
        wrk_secs,
        ballast_bytes: ballasts,
        warm_up: plan.warm_up,
        runs,
        idle_kib,
    };
    write_results(
        &workspace.bench_dir,
        "server",
        &report.to_json(),
        &report.table(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_order_alternates_peers_and_dd() {
        assert_eq!(server_order(0)[0], Probe::Dd);
        assert_eq!(server_order(0)[1], Probe::Upload(Peer::Hoist));
        assert_eq!(server_order(1)[0], Probe::Upload(Peer::Registry));
        assert_eq!(server_order(1)[2], Probe::Dd);
        for index in 0..2 {
            let order = server_order(index);
            for probe in Probe::TIMED.iter().chain(&Probe::RATES) {
                assert_eq!(order.iter().filter(|p| *p == probe).count(), 1, "{probe:?}");
            }
        }
    }
}
