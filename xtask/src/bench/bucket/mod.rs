//! Scenario `bucket` (issue 15, "Speed"): `hoist serve --storage s3://...` beside
//! `docker-registry` with its `s3` storage driver, both on one moto (`moto_server`, an
//! S3-compatible server on loopback) started by the bench, side by side in one run.
//!
//! Targets, on medians:
//! * push (`hoist copy oci:DIR:v1 127.0.0.1:PORT/REPO:TAG`) of an image of [`LAYERS`] gzip
//!   layers of seeded random data (256 MiB in all) takes at most [`TIME_LIMIT`] times as long
//!   through hoist as through the registry;
//! * pull (`hoist copy 127.0.0.1:PORT/REPO:TAG oci:NEW:v1`, into a new layout) through a second
//!   `hoist serve` on the same bucket with `--redirect-blobs` the same, like for like: the
//!   registry on `s3` redirects blob GETs to presigned URLs by default; the pull through hoist
//!   streaming blobs itself (its default) is reported beside it;
//! * a blob GET through hoist's redirect (`curl -L` of the first layer): the download after the
//!   redirect takes at most [`REDIRECT_LIMIT`] times moto's own GET of the same bytes; the
//!   redirect's own time (one small request to hoist, which reads the repository's link in
//!   moto) is reported beside it;
//! * manifest requests per second (HEAD with xtask's loader, GET with `wrk`, both at
//!   [`WRK_CONNECTIONS`] connections, the server scenario's helpers) at least
//!   [`RPS_LIMIT`](super::load::RPS_LIMIT) times the registry's.
//!
//! Reported beside them, measured in the same runs: moto's own GET speed (`curl` of one layer's
//! bytes, stored as an object in a bucket of its own, to `/dev/null`), the machine's limit for
//! the blob path through either server.
//!
//! How it measures:
//! * one moto for the whole bench, in memory; every run makes a bucket for each server
//!   (`bench-hoist-N`, `bench-registry-N`) and starts both servers afresh on new ports, so that
//!   nothing of a previous run is found (no blob is skipped as already there);
//! * the client is the same for both servers (`hoist copy`, plain HTTP on loopback, its default
//!   `--jobs`), so only the server differs; each push is checked to give the source's manifest
//!   digest, each pull to name it in the new layout's `index.json`;
//! * the registry runs as configured by default apart from its storage and logs: `s3` with
//!   `regionendpoint` (which in 2.8 also selects path-style addressing: it has no
//!   `forcepathstyle` option), `secure: false`, `v4auth: true`, deletes enabled, its access log
//!   off (hoist runs with `-q`, which logs no request either). Its blob GETs are redirects to
//!   presigned moto URLs, as the registry does by default on `s3`;
//! * the image is made once (`hoist build`, `SOURCE_DATE_EPOCH` set: the same size gives the
//!   same digests); before every push its blobs are read, untimed, so that every push finds them
//!   in the page cache; `sync` before every timed step; each run starts with the ballast write
//!   of the layout scenario and ends with the deletion of its directory, `sync` and the pause;
//! * the order of the servers alternates between runs (hoist first in odd runs), and moto's GET
//!   and the GET through hoist's redirect sit before the pulls in odd runs and after them in
//!   even ones.
//!
//! Misses are printed as `FAIL` but do not fail the command.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::data::{LayoutImage, blob_path, layer_sizes, layout_image, oci_ref, seeded_image};
use super::load::{REPO, TAG, WRK_CONNECTIONS, head_load, write_get_script, wrk};
use super::machine::{
    Revision, Workspace, ballast_bytes, build_hoist, read_through, remove_dir, require_tools,
    revision, run_ballast, sync, sync_and_pause, version,
};
use super::measure::{Defaults, Runs, median, median_or_nan, rate_mb_s, timed, write_results};
use super::peers::{check_digest_printed, curl, manifest_digest, parse_size_and_time};
use super::{BenchArgs, Scenario};

mod report;
mod servers;

use report::BucketReport;
use servers::{
    blob_redirect, create_bucket, moto_program, s3_curl, start_hoist, start_moto, start_registry,
};

/// The default image size of the scenario, and that of `--quick`.
const BUCKET_SIZE_MIB: u64 = 256;
const QUICK_SIZE_MIB: u64 = 64;
/// The image's layers.
const LAYERS: usize = 4;
/// The seed of the first layer's random bytes; layer N uses `SEED + N`.
const SEED: u64 = 0x6275_636b_6574_0015;
/// The tag of the image in the source layout and in the pulled ones.
const IMAGE_TAG: &str = "v1";
/// hoist's push and pull times over the registry's, at most.
const TIME_LIMIT: f64 = 1.0;
/// The time of the download after hoist's redirect over moto's own GET of the same bytes, at
/// most.
const REDIRECT_LIMIT: f64 = 1.10;
/// Timed GETs of the object from moto in a run (their median is the run's figure).
const MOTO_GETS: usize = 3;
/// The bucket and key of the object moto's own GET speed is measured on.
const MOTO_BUCKET: &str = "bench-moto";
const MOTO_KEY: &str = "object.bin";
/// The access key and secret both servers use (moto takes any).
const ACCESS_KEY: &str = "hoist";

/// The scenario's defaults for what the command line leaves out: [`BUCKET_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(BUCKET_SIZE_MIB, QUICK_SIZE_MIB);

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// `hoist serve --storage`, streaming blobs through (its default).
    Hoist,
    /// A second `hoist serve` on the same bucket, with `--redirect-blobs`.
    HoistRedirect,
    Registry,
}

impl Peer {
    fn key(self) -> &'static str {
        match self {
            Self::Hoist => "hoist",
            Self::HoistRedirect => "hoist_redirect",
            Self::Registry => "registry",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hoist => "hoist",
            Self::HoistRedirect => "hoist --redirect-blobs",
            Self::Registry => "registry",
        }
    }
}

/// What a run measures: seconds for pushes, pulls and moto's GET, requests per second for the
/// manifest loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Push(Peer),
    Pull(Peer),
    MotoGet,
    /// `curl -L` of the first layer through hoist with redirects: the blob GET answered with
    /// a redirect, then moto's own GET of the presigned URL.
    RedirectGet,
    Head(Peer),
    Get(Peer),
}

impl Probe {
    const ALL: [Self; 11] = [
        Self::Push(Peer::Hoist),
        Self::Push(Peer::Registry),
        Self::Pull(Peer::Hoist),
        Self::Pull(Peer::HoistRedirect),
        Self::Pull(Peer::Registry),
        Self::MotoGet,
        Self::RedirectGet,
        Self::Head(Peer::Hoist),
        Self::Head(Peer::Registry),
        Self::Get(Peer::Hoist),
        Self::Get(Peer::Registry),
    ];

    fn key(self) -> String {
        match self {
            Self::Push(p) => format!("{}_push", p.key()),
            Self::Pull(p) => format!("{}_pull", p.key()),
            Self::MotoGet => "moto_get".to_owned(),
            Self::RedirectGet => "hoist_redirect_blob_get".to_owned(),
            Self::Head(p) => format!("{}_manifest_head", p.key()),
            Self::Get(p) => format!("{}_manifest_get", p.key()),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Push(p) => format!("push through {} (hoist copy)", p.name()),
            Self::Pull(p) => format!("pull through {} (hoist copy)", p.name()),
            Self::MotoGet => "moto GET of one layer's bytes (curl)".to_owned(),
            Self::RedirectGet => {
                "the same layer after hoist's redirect (curl -L, download only)".to_owned()
            }
            Self::Head(p) => format!("{} HEAD manifest, {WRK_CONNECTIONS} conns", p.name()),
            Self::Get(p) => format!("{} GET manifest, {WRK_CONNECTIONS} conns", p.name()),
        }
    }

    fn is_load(self) -> bool {
        matches!(self, Self::Head(_) | Self::Get(_))
    }
}

/// The order of run `index` (from 0): hoist first in even runs, the registry first in odd ones
/// (the pulls: hoist, hoist with redirects, the registry, or the reverse); moto's GET and the
/// GET through hoist's redirect before the pulls in even runs, after them in odd ones.
fn bucket_order(index: usize) -> Vec<Probe> {
    use Probe::{Get, Head, MotoGet, Pull, Push, RedirectGet};
    let even = index.is_multiple_of(2);
    let (a, b) = if even {
        (Peer::Hoist, Peer::Registry)
    } else {
        (Peer::Registry, Peer::Hoist)
    };
    let mut order = vec![Push(a), Push(b)];
    let pulls = [Pull(a), Pull(Peer::HoistRedirect), Pull(b)];
    if even {
        order.extend([MotoGet, RedirectGet]);
        order.extend(pulls);
    } else {
        order.extend(pulls);
        order.extend([RedirectGet, MotoGet]);
    }
    order.extend([Head(a), Head(b), Get(a), Get(b)]);
    order
}

/// Fails unless the server at `base` has the manifest `digest` as [`REPO`]:[`TAG`].
fn check_pushed(base: &str, digest: &str) -> Result<()> {
    let got = manifest_digest(base, REPO, TAG)?;
    if got != digest {
        bail!("{base} has {REPO}:{TAG} as {got}, expected the source's {digest}");
    }
    Ok(())
}

/// The base URL's `host:port`, as `hoist copy` takes a registry reference.
fn host_of(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// One measure of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    probe: Probe,
    value: f64,
    /// The load tests' 99th percentile latency, in milliseconds.
    p99_ms: Option<f64>,
    /// The GET through hoist's redirect: the redirect's time, before the download, in
    /// milliseconds.
    redirect_ms: Option<f64>,
}

/// What the probes of a run use.
struct RunCx<'a> {
    hoist: &'a Path,
    layout: &'a Path,
    image: &'a LayoutImage,
    dir: &'a Path,
    moto: &'a str,
    moto_bytes: u64,
    get_script: &'a Path,
    wrk_secs: u64,
    hoist_base: &'a str,
    hoist_redirect_base: &'a str,
    registry_base: &'a str,
}

impl RunCx<'_> {
    fn base(&self, peer: Peer) -> &str {
        match peer {
            Peer::Hoist => self.hoist_base,
            Peer::HoistRedirect => self.hoist_redirect_base,
            Peer::Registry => self.registry_base,
        }
    }

    /// Reads the source's blobs, untimed, so that the push finds them in the page cache.
    fn warm_source(&self) -> Result<()> {
        for (digest, _) in &self.image.layers {
            read_through(&blob_path(self.layout, digest))?;
        }
        Ok(())
    }
}

/// Runs `probe`, checking what it did.
fn measure(probe: Probe, cx: &RunCx<'_>) -> Result<Reading> {
    let mut p99_ms = None;
    let mut redirect_ms = None;
    let value = match probe {
        Probe::Push(peer) => {
            cx.warm_source()?;
            sync()?;
            let base = cx.base(peer);
            let mut copy = Command::new(cx.hoist);
            copy.args(["copy", &oci_ref(cx.layout, IMAGE_TAG)])
                .arg(format!("{}/{REPO}:{TAG}", host_of(base)));
            let (seconds, output) = timed(&mut copy)?;
            check_digest_printed(&output.stdout, &cx.image.manifest)?;
            check_pushed(base, &cx.image.manifest)?;
            seconds
        }
        Probe::Pull(peer) => {
            sync()?;
            let dir = cx.dir.join(format!("pull-{}", peer.key()));
            let mut copy = Command::new(cx.hoist);
            copy.arg("copy")
                .arg(format!("{}/{REPO}:{TAG}", host_of(cx.base(peer))))
                .arg(oci_ref(&dir, IMAGE_TAG));
            let (seconds, output) = timed(&mut copy)?;
            check_digest_printed(&output.stdout, &cx.image.manifest)?;
            let pulled = layout_image(&dir, IMAGE_TAG)?;
            if pulled != *cx.image {
                bail!("the pull from {} gave {pulled:?}", peer.key());
            }
            for (digest, size) in &pulled.layers {
                let got = fs::metadata(blob_path(&dir, digest))?.len();
                if got != *size {
                    bail!("the pulled {digest} has {got} bytes, expected {size}");
                }
            }
            seconds
        }
        Probe::MotoGet | Probe::RedirectGet => {
            let url = if probe == Probe::MotoGet {
                format!("{}/{MOTO_BUCKET}/{MOTO_KEY}", cx.moto)
            } else {
                let layer = &cx.image.layers[0].0;
                format!("{}/v2/{REPO}/blobs/{layer}", cx.hoist_redirect_base)
            };
            // Seconds of the download, and of the redirect before it (curl's own clock).
            let get = || -> Result<(f64, f64)> {
                let mut cmd = if probe == Probe::MotoGet {
                    s3_curl()
                } else {
                    let mut plain = curl();
                    plain.arg("-L");
                    plain
                };
                cmd.args([
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download} %{time_total} %{time_redirect}",
                ])
                .arg(&url);
                let (_, output) = timed(&mut cmd)?;
                let text = String::from_utf8_lossy(&output.stdout);
                let (size, seconds) = parse_size_and_time(&text)
                    .with_context(|| format!("GET {url}: curl wrote {text:?}"))?;
                let redirect: f64 = text
                    .split_whitespace()
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .with_context(|| format!("GET {url}: curl wrote {text:?}"))?;
                if size != cx.moto_bytes {
                    bail!("GET {url} gave {size} bytes, expected {}", cx.moto_bytes);
                }
                if probe == Probe::RedirectGet && redirect <= 0.0 {
                    bail!("GET {url} was not redirected");
                }
                Ok((seconds - redirect, redirect))
            };
            // Untimed first, then the median of a few.
            get()?;
            let times = (0..MOTO_GETS).map(|_| get()).collect::<Result<Vec<_>>>()?;
            if probe == Probe::RedirectGet {
                let redirects: Vec<f64> = times.iter().map(|(_, r)| r * 1000.0).collect();
                redirect_ms = median(&redirects);
            }
            let downloads: Vec<f64> = times.iter().map(|(d, _)| *d).collect();
            median_or_nan(&downloads)
        }
        Probe::Head(peer) | Probe::Get(peer) => {
            let base = cx.base(peer);
            let load = if matches!(probe, Probe::Head(_)) {
                head_load(base, WRK_CONNECTIONS, cx.wrk_secs)?
            } else {
                wrk(base, cx.get_script, WRK_CONNECTIONS, cx.wrk_secs)?
            };
            p99_ms = Some(load.p99_ms);
            load.requests_per_sec
        }
    };
    Ok(Reading {
        probe,
        value,
        p99_ms,
        redirect_ms,
    })
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    let exe = build_hoist(root)?;
    require_tools(Scenario::Bucket.tools())?;
    let moto_program = moto_program()?;
    let workspace = Workspace::new(root, "bucket", None)?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    let size_bytes = args.size_mib << 20;
    let wrk_secs = if args.quick { 2 } else { 5 };

    println!(
        "==> image: {} MiB of random data (seed {SEED:#x}) in {LAYERS} layers, hoist build",
        args.size_mib
    );
    let (layout, image, seconds) = seeded_image(
        &exe,
        &work,
        &layer_sizes(size_bytes, LAYERS),
        SEED,
        IMAGE_TAG,
    )?;
    println!(
        "    hoist build in {seconds:.1} s, manifest {}",
        image.manifest
    );
    let layer_bytes: u64 = image.layers.iter().map(|(_, size)| size).sum();

    let (_moto, moto) = start_moto(&moto_program, &work.join("moto.log"))?;
    println!("==> moto on {moto}");
    // moto's own GET speed, on the bytes of the first layer as an object of its own.
    create_bucket(&moto, MOTO_BUCKET)?;
    let (first_layer, moto_bytes) = image.layers[0].clone();
    let object = blob_path(&layout, &first_layer);
    read_through(&object)?;
    let mut put = s3_curl();
    put.args(["-X", "PUT", "-H", "Expect:", "-o", "/dev/null"])
        .args(["-w", "%{size_upload} %{time_total}", "-T"])
        .arg(&object)
        .arg(format!("{moto}/{MOTO_BUCKET}/{MOTO_KEY}"));
    let (_, output) = timed(&mut put)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, moto_put_seconds) = parse_size_and_time(&text)
        .with_context(|| format!("PUT of the object to moto: curl wrote {text:?}"))?;

    let get_script = write_get_script(&work)?;
    sync_and_pause(args.pause_secs)?;

    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    let mut registry_redirects = false;
    let plan = Runs::new(args);
    for run in plan.iter() {
        let number = run.seq + 1;
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dir, |available| {
            ballast_bytes(layer_bytes, available)
        })?;

        let (hoist_bucket, registry_bucket) = (
            format!("bench-hoist-{number}"),
            format!("bench-registry-{number}"),
        );
        create_bucket(&moto, &hoist_bucket)?;
        create_bucket(&moto, &registry_bucket)?;
        let (hoist_proc, hoist_base) =
            start_hoist(&exe, &moto, &hoist_bucket, &[], &dir.join("hoist.log"))?;
        let (redirect_proc, hoist_redirect_base) = start_hoist(
            &exe,
            &moto,
            &hoist_bucket,
            &["--redirect-blobs"],
            &dir.join("hoist-redirect.log"),
        )?;
        let (registry_proc, registry_base) = start_registry(&dir, &moto, &registry_bucket)?;
        println!(
            "    hoist serve on {hoist_base} and with --redirect-blobs on {hoist_redirect_base} \
             (s3://{hoist_bucket}/hoist), docker-registry on \
             {registry_base} (s3://{registry_bucket}/registry)"
        );
        let cx = RunCx {
            hoist: &exe,
            layout: &layout,
            image: &image,
            dir: &dir,
            moto: &moto,
            moto_bytes,
            get_script: &get_script,
            wrk_secs,
            hoist_base: &hoist_base,
            hoist_redirect_base: &hoist_redirect_base,
            registry_base: &registry_base,
        };
        let mut readings = Vec::new();
        for probe in bucket_order(run.index) {
            let reading = measure(probe, &cx)?;
            match reading.p99_ms {
                None => {
                    let bytes = if matches!(probe, Probe::MotoGet | Probe::RedirectGet) {
                        moto_bytes
                    } else {
                        layer_bytes
                    };
                    println!(
                        "    {:<44}{:>9.3} s {:>7.0} MB/s",
                        probe.label(),
                        reading.value,
                        rate_mb_s(bytes, reading.value)
                    );
                }
                Some(p99) => println!(
                    "    {:<44}{:>9.0} req/s, p99 {p99:.2} ms",
                    probe.label(),
                    reading.value
                ),
            }
            readings.push(reading);
            if probe == Probe::Push(Peer::Hoist)
                && blob_redirect(&hoist_redirect_base, &image.layers[0].0)?.is_none()
            {
                bail!("hoist serve --redirect-blobs answered a blob GET without a redirect");
            }
            if probe == Probe::Push(Peer::Registry) && run.seq == 0 {
                registry_redirects = blob_redirect(&registry_base, &image.layers[0].0)?.is_some();
            }
        }
        if run.counted {
            runs.push(readings);
            ballasts.push(ballast);
        }
        drop(hoist_proc);
        drop(redirect_proc);
        drop(registry_proc);
        remove_dir(&dir)?;
        if !run.last {
            sync_and_pause(args.pause_secs)?;
        }
    }
    drop(_moto);
    remove_dir(&work)?;

    let report = BucketReport {
        layer_bytes,
        manifest: image.manifest.clone(),
        moto_bytes,
        moto_put_seconds,
        registry_redirects,
        registry_version: version("docker-registry", "--version"),
        hoist_revision: revision(root, Revision::Count),
        wrk_secs,
        pause_secs: args.pause_secs,
        warm_up: plan.warm_up,
        ballast_bytes: ballasts,
        runs,
    };
    write_results(&bench_dir, "bucket", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::servers::registry_config;
    use super::*;
    use crate::bench::measure::DEFAULT_RUNS;

    #[test]
    fn defaults_are_256_mib_and_quick_is_64_mib_once() {
        let mut args = BenchArgs::default();
        DEFAULTS.apply(&mut args, false, false);
        assert_eq!((args.size_mib, args.runs), (256, DEFAULT_RUNS));
        let mut quick = BenchArgs {
            quick: true,
            ..BenchArgs::default()
        };
        DEFAULTS.apply(&mut quick, false, false);
        assert_eq!((quick.size_mib, quick.runs), (64, 1));
        let mut given = BenchArgs {
            quick: true,
            size_mib: 8,
            runs: 2,
            ..BenchArgs::default()
        };
        DEFAULTS.apply(&mut given, true, true);
        assert_eq!((given.size_mib, given.runs), (8, 2));
    }

    #[test]
    fn order_alternates_the_servers_and_measures_everything_once() {
        for index in 0..2 {
            let order = bucket_order(index);
            assert_eq!(order.len(), Probe::ALL.len());
            assert!(Probe::ALL.iter().all(|p| order.contains(p)));
            // Every pull after its push; every load after the pushes.
            let pos = |p| order.iter().position(|&q| q == p).unwrap();
            for peer in [Peer::Hoist, Peer::Registry] {
                assert!(pos(Probe::Push(peer)) < pos(Probe::Pull(peer)));
                assert!(pos(Probe::Push(peer)) < pos(Probe::Head(peer)));
            }
        }
        assert_eq!(bucket_order(0)[0], Probe::Push(Peer::Hoist));
        assert_eq!(bucket_order(1)[0], Probe::Push(Peer::Registry));
        assert_eq!(bucket_order(0)[2], Probe::MotoGet);
        assert_eq!(bucket_order(1)[6], Probe::MotoGet);
        // The pull with redirects comes after the push of the bucket it reads.
        for index in 0..2 {
            let order = bucket_order(index);
            let pos = |p| order.iter().position(|&q| q == p).unwrap();
            assert!(pos(Probe::Push(Peer::Hoist)) < pos(Probe::Pull(Peer::HoistRedirect)));
            assert!(pos(Probe::Push(Peer::Hoist)) < pos(Probe::RedirectGet));
        }
    }

    #[test]
    fn registry_config_names_the_bucket_and_endpoint() {
        let config = registry_config("http://127.0.0.1:9000", "b-1", "127.0.0.1:5001");
        for line in [
            "regionendpoint: http://127.0.0.1:9000",
            "bucket: b-1",
            "secure: false",
            "v4auth: true",
            "addr: 127.0.0.1:5001",
            "enabled: true",
        ] {
            assert!(config.contains(line), "{line} missing from\n{config}");
        }
    }
}
