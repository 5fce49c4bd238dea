//! Scenario `client` (issue "registry client speed"): `hoist copy` beside `skopeo copy`, both
//! ways between `docker-registry` (filesystem storage, loopback) and an OCI image layout, on an
//! image of [`LAYERS`] layers of random, incompressible data (1 GiB in all by default).
//!
//! Targets, on medians:
//! * pull (registry to a new layout): hoist takes at most [`PULL_VS_SKOPEO`] times skopeo's
//!   time, and at most [`BOUND_LIMIT`] times the machine's limit for the same bytes, measured in
//!   the same run: the slowest of the registry serving them (`curl` GETs to `/dev/null`),
//!   hashing them (`openssl dgst -sha256`) and writing them as new files (`dd
//!   conv=fdatasync`), each [`JOBS`] at a time as hoist does;
//! * push (layout to a registry): hoist takes at most [`BOUND_LIMIT`] times what the registry
//!   itself needs to take the blobs (`curl` `POST` + monolithic `PUT`, [`JOBS`] at a time), and
//!   less time than skopeo;
//! * peak RSS (GNU `time -f %M`): hoist's at most skopeo's, in both directions.
//!
//! How it measures:
//! * the layers are gzip streams (`gzip -1` of `/dev/urandom`, which stores random data
//!   incompressibly) typed `tar+gzip`, made once per bench: skopeo compresses a layer it pushes
//!   to a registry unless it already looks compressed, and that would compare a gzip run with a
//!   copy; each push is checked to give the source's manifest digest, so both tools copied the
//!   same bytes;
//! * the source layout and the pull registry are made and filled once (with `curl`, not with the
//!   tools measured); before every step the layers are read from both, untimed, so that every
//!   step finds them in the page cache (this machine pages out what has not been touched for a
//!   minute: DAMON `pageout`, which made a `curl` GET of the registry 7 times slower late in a
//!   run);
//! * every push goes to a registry of its own, started for the run with fresh storage on a
//!   fresh port: the registry's filesystem driver stores blobs globally (a second upload of a
//!   blob another repository has is received in full, then dropped instead of moved), and
//!   skopeo's blob info cache would try to mount blobs it has seen on the same host; a new
//!   registry makes every blob a full upload for every tool;
//! * every pull and every bound writes into a new directory; nothing is deleted until the run
//!   ends (freed memory is faster to write into), then the run's directory goes, followed by
//!   `sync` and the pause; each run starts with the ballast write of the layout scenario;
//! * `sync` before every step, so that no step pays for the write-back of another;
//! * the order of the steps reverses from one run to the next, and each hoist step sits between
//!   skopeo's and the bound it is compared with (the machine drifts within a run: writes get
//!   slower as a run uses up memory the host still backs).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::{
    BenchArgs, MANIFEST_TYPE, Target, ballast_bytes, build_hoist, curl, download_blob_from,
    format_mib, format_ratio, free_port, median, openssl_dgst, parse_mem_available,
    parse_openssl_digest, rate_mb_s, read_through, remove_dir, require_tools, run_status,
    start_registry, stop_registry, sync_and_pause, target_dir, timed, upload_blob_to, verdict,
    write_ballast,
};

/// The default image size of the scenario, and that of `--quick`.
const CLIENT_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The image's layers.
pub(super) const LAYERS: usize = 8;
/// Blobs at once: hoist's default `--jobs`, used for the bounds too.
const JOBS: usize = 4;
/// Layers generated at once (one per core).
pub(super) const GEN_JOBS: usize = 2;
/// hoist's pull time over skopeo's, at most.
const PULL_VS_SKOPEO: f64 = 0.75;
/// hoist's time over the machine's (pull) or the registry's (push) bound, at most.
const BOUND_LIMIT: f64 = 1.1;
/// hoist's push time over skopeo's: less than this.
const PUSH_VS_SKOPEO: f64 = 1.0;
/// hoist's peak RSS over skopeo's, at most.
const RSS_VS_SKOPEO: f64 = 1.0;
/// The image in the pull registry.
const SOURCE_REPO: &str = "bench/client";
const TAG: &str = "1";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Copies of the image a run writes beyond the three [`ballast_bytes`] counts (two pulls, the
/// `dd` copies and three registries make six) plus the two kept all along (the source layout
/// and the pull registry).
const EXTRA_COPIES: u64 = 5;

/// Sets the scenario's defaults for what the command line left out: [`CLIENT_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) fn apply_defaults(args: &mut BenchArgs, size_given: bool, runs_given: bool) {
    if !size_given {
        args.size_mib = if args.quick {
            QUICK_SIZE_MIB
        } else {
            CLIENT_SIZE_MIB
        };
    }
    if args.quick && !runs_given {
        args.runs = 1;
    }
}

/// What a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `hoist copy REGISTRY/REPO:TAG oci:DIR:TAG` into a new directory.
    HoistPull,
    /// `skopeo copy docker://REGISTRY/REPO:TAG oci:DIR:TAG` into a new directory.
    SkopeoPull,
    /// `curl` GETs of the layers to `/dev/null`, [`JOBS`] at a time.
    Serve,
    /// `openssl dgst -sha256` of the layers, [`JOBS`] at a time.
    Hash,
    /// `dd conv=fdatasync` of the layers into new files, [`JOBS`] at a time.
    Write,
    /// `hoist copy oci:DIR:TAG REGISTRY/REPO:TAG` into a new registry.
    HoistPush,
    /// `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG` into a new registry.
    SkopeoPush,
    /// `curl` `POST` + `PUT` of the layers into a new registry, [`JOBS`] at a time.
    Upload,
}

impl Step {
    const ALL: [Self; 8] = [
        Self::HoistPull,
        Self::SkopeoPull,
        Self::Serve,
        Self::Hash,
        Self::Write,
        Self::HoistPush,
        Self::SkopeoPush,
        Self::Upload,
    ];
    /// The steps whose peak RSS is measured.
    const TOOLS: [Self; 4] = [
        Self::HoistPull,
        Self::SkopeoPull,
        Self::HoistPush,
        Self::SkopeoPush,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::HoistPull => "hoist_pull",
            Self::SkopeoPull => "skopeo_pull",
            Self::Serve => "curl_get",
            Self::Hash => "openssl_dgst",
            Self::Write => "dd",
            Self::HoistPush => "hoist_push",
            Self::SkopeoPush => "skopeo_push",
            Self::Upload => "curl_upload",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::HoistPull => "pull: hoist copy",
            Self::SkopeoPull => "pull: skopeo copy",
            Self::Serve => "  curl GET (registry serves)",
            Self::Hash => "  openssl dgst -sha256 (hash)",
            Self::Write => "  dd conv=fdatasync (write)",
            Self::HoistPush => "push: hoist copy",
            Self::SkopeoPush => "push: skopeo copy",
            Self::Upload => "  curl POST+PUT (registry takes)",
        }
    }
}

/// The order of even runs: each hoist step sits between the two it is compared with (skopeo's
/// and the bound's), so that the machine's drift within a run touches them alike.
const ORDER: [Step; 8] = [
    Step::SkopeoPull,
    Step::HoistPull,
    Step::Write,
    Step::Hash,
    Step::Serve,
    Step::Upload,
    Step::HoistPush,
    Step::SkopeoPush,
];

/// The order of run `index` (from 0): [`ORDER`] in even runs, reversed in odd ones.
fn client_order(index: usize) -> [Step; 8] {
    let mut order = ORDER;
    if !index.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// The sizes of the layers of an image of `total` bytes: equal, the last one taking the rest.
pub(super) fn layer_sizes(total: u64) -> [u64; LAYERS] {
    let each = total / LAYERS as u64;
    let mut sizes = [each; LAYERS];
    sizes[LAYERS - 1] = total - each * (LAYERS as u64 - 1);
    sizes
}

/// The value of the header `name` in HTTP response heads (the last one wins).
fn parse_header(headers: &str, name: &str) -> Option<String> {
    headers
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .next_back()
}

/// The peak RSS in KiB that GNU `time -f %M -o FILE` wrote (its last line; a line about the
/// exit status may precede it).
fn parse_time_rss(text: &str) -> Option<u64> {
    text.lines()
        .rfind(|l| !l.trim().is_empty())?
        .trim()
        .parse()
        .ok()
}

/// Runs `f` on every item, `jobs` at a time on threads of their own; returns the seconds it all
/// took and the results in the order of `items`. Stops starting new items after an error.
pub(super) fn parallel<T, R, F>(jobs: usize, items: &[T], f: F) -> Result<(f64, Vec<R>)>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    let started = Instant::now();
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        match f(item) {
                            Ok(r) => results
                                .lock()
                                .map_err(|_| anyhow!("a worker panicked"))?
                                .push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("a worker panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    outcomes.into_iter().collect::<Result<()>>()?;
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow!("a worker panicked"))?;
    results.sort_by_key(|(i, _)| *i);
    Ok((seconds, results.into_iter().map(|(_, r)| r).collect()))
}

/// A blob of the source image.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
    /// Where the source layout stores it.
    path: PathBuf,
}

impl Blob {
    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// The source image, in its layout.
#[derive(Debug)]
struct Image {
    layout: PathBuf,
    config: Blob,
    layers: Vec<Blob>,
    manifest: Blob,
}

impl Image {
    fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// A `docker-registry` of the scenario, stopped when dropped (its data stays).
#[derive(Debug)]
struct Registry {
    dir: PathBuf,
    stop_script: PathBuf,
    /// `127.0.0.1:PORT`, for curl.
    addr: String,
    /// `localhost:PORT`, for the tools measured.
    host: String,
}

impl Registry {
    fn start(root: &Path, dir: &Path) -> Result<Self> {
        let peers_dir = root.join("tests").join("peers");
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let registry = Self {
            dir: dir.to_path_buf(),
            stop_script: peers_dir.join("stop-registry.sh"),
            addr,
            host: format!("localhost:{port}"),
        };
        start_registry(&peers_dir, dir, &registry.addr)?;
        Ok(registry)
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop_registry(&self.stop_script, &self.dir, false);
    }
}

/// Hashes `file`, moves it into the layout's `blobs/sha256/` and returns it as a [`Blob`].
fn store_blob(file: &Path, layout: &Path) -> Result<Blob> {
    let (_, output) = timed(&mut openssl_dgst(file))?;
    let digest = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
    let size = fs::metadata(file)
        .with_context(|| format!("cannot stat {}", file.display()))?
        .len();
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    fs::rename(file, &path)
        .with_context(|| format!("cannot move {} to {}", file.display(), path.display()))?;
    Ok(Blob { digest, size, path })
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    fs::write(path, value.to_string()).with_context(|| format!("cannot write {}", path.display()))
}

/// Makes the source layout under `work`: [`LAYERS`] gzip layers of random data making
/// `size_bytes` of random bytes in all, a config, a manifest, tagged [`TAG`].
fn make_image(work: &Path, size_bytes: u64) -> Result<Image> {
    let layout = work.join("source");
    let scratch = work.join("scratch");
    for dir in [layout.join("blobs/sha256"), scratch.clone()] {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let sizes: Vec<(usize, u64)> = layer_sizes(size_bytes).into_iter().enumerate().collect();
    let (seconds, made) = parallel(GEN_JOBS, &sizes, |&(i, size)| {
        let raw = scratch.join(format!("layer-{i}.tar"));
        let mut head = Command::new("head");
        head.arg("-c")
            .arg(size.to_string())
            .arg("/dev/urandom")
            .stdout(
                File::create(&raw).with_context(|| format!("cannot create {}", raw.display()))?,
            );
        run_status(&mut head)?;
        let (_, output) = timed(&mut openssl_dgst(&raw))?;
        let diff_id = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
        let gz = scratch.join(format!("layer-{i}.tar.gz"));
        let mut gzip = Command::new("gzip");
        gzip.args(["-1", "-n", "-c"])
            .arg(&raw)
            .stdout(File::create(&gz).with_context(|| format!("cannot create {}", gz.display()))?);
        run_status(&mut gzip)?;
        fs::remove_file(&raw).with_context(|| format!("cannot remove {}", raw.display()))?;
        Ok((diff_id, store_blob(&gz, &layout)?))
    })?;
    println!("    {LAYERS} layers in {seconds:.1} s");
    let (diff_ids, layers): (Vec<String>, Vec<Blob>) = made.into_iter().unzip();

    let config_file = scratch.join("config.json");
    write_json(
        &config_file,
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }),
    )?;
    let config = store_blob(&config_file, &layout)?;
    let descriptor = |media_type: &str, blob: &Blob| json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.size });
    let manifest_file = scratch.join("manifest.json");
    write_json(
        &manifest_file,
        &json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, &config),
            "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
        }),
    )?;
    let manifest = store_blob(&manifest_file, &layout)?;
    let mut entry = descriptor(MANIFEST_TYPE, &manifest);
    entry["annotations"] = json!({ "org.opencontainers.image.ref.name": TAG });
    write_json(
        &layout.join("index.json"),
        &json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry] }),
    )?;
    write_json(
        &layout.join("oci-layout"),
        &json!({ "imageLayoutVersion": "1.0.0" }),
    )?;
    remove_dir(&scratch)?;
    Ok(Image {
        layout,
        config,
        layers,
        manifest,
    })
}

/// The digest the registry at `base` gives for the manifest `repo:tag`.
fn manifest_digest(base: &str, repo: &str, tag: &str) -> Result<String> {
    let mut head = curl();
    head.args(["-I", "-H", &format!("Accept: {MANIFEST_TYPE}")])
        .arg(format!("{base}/v2/{repo}/manifests/{tag}"));
    let (_, output) = timed(&mut head)?;
    let headers = String::from_utf8_lossy(&output.stdout);
    parse_header(&headers, "docker-content-digest")
        .with_context(|| format!("no Docker-Content-Digest for {repo}:{tag}:\n{headers}"))
}

/// Fails unless the registry has `image` as `repo:`[`TAG`], byte for byte.
fn check_pushed(registry: &Registry, repo: &str, image: &Image) -> Result<()> {
    let digest = manifest_digest(&registry.base(), repo, TAG)?;
    if digest != image.manifest.digest {
        bail!(
            "{}/{repo}:{TAG} is {digest}, expected the source's {} (was a layer changed?)",
            registry.host,
            image.manifest.digest
        );
    }
    Ok(())
}

/// Fails unless the layout `dir` has every blob of `image` with its size and an `index.json`
/// naming its manifest.
fn check_pulled(dir: &Path, image: &Image) -> Result<()> {
    let index_path = dir.join("index.json");
    let index = fs::read_to_string(&index_path)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    if !index.contains(&image.manifest.digest) {
        bail!(
            "{} does not name {}: {index}",
            index_path.display(),
            image.manifest.digest
        );
    }
    for blob in image.layers.iter().chain([&image.config, &image.manifest]) {
        let path = dir.join("blobs/sha256").join(blob.hex());
        let size = fs::metadata(&path)
            .with_context(|| format!("the pull left no {}", path.display()))?
            .len();
        if size != blob.size {
            bail!(
                "{} has {size} bytes, expected {}",
                path.display(),
                blob.size
            );
        }
    }
    Ok(())
}

/// Puts the image into `registry` as [`SOURCE_REPO`]:[`TAG`] with curl.
fn seed(registry: &Registry, image: &Image) -> Result<()> {
    let base = registry.base();
    let blobs: Vec<&Blob> = image.layers.iter().chain([&image.config]).collect();
    parallel(JOBS, &blobs, |blob| {
        upload_blob_to(
            &base,
            SOURCE_REPO,
            Some(blob.path.as_path()),
            "",
            &blob.digest,
        )
    })?;
    let mut put = curl();
    put.args(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Content-Type: {MANIFEST_TYPE}")])
        .arg("--data-binary")
        .arg(format!("@{}", image.manifest.path.display()))
        .arg(format!("{base}/v2/{SOURCE_REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut put)?;
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of the manifest to {base} answered {code}, expected 201");
    }
    check_pushed(registry, SOURCE_REPO, image)
}

/// Reads the source layers and downloads them from the pull registry, untimed, so that the next
/// step finds them in the page cache.
fn warm(pull: &Registry, image: &Image) -> Result<()> {
    let base = pull.base();
    parallel(JOBS, &image.layers, |l| {
        read_through(&l.path)?;
        download_blob_from(&base, SOURCE_REPO, &l.digest, l.size)
    })?;
    Ok(())
}

/// The source hoist was built from: `HEAD`'s short hash and the files changed since, from the
/// output of `git status --porcelain` (`XY PATH` lines).
fn describe_revision(head: &str, porcelain: &str) -> String {
    let changed: Vec<&str> = porcelain
        .lines()
        .filter_map(|l| l.get(3..))
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .collect();
    if changed.is_empty() {
        head.trim().to_owned()
    } else {
        format!("{} + uncommitted {}", head.trim(), changed.join(", "))
    }
}

/// [`describe_revision`] of the workspace's crates (`unknown` without git).
fn revision(root: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&[
            "status",
            "--porcelain",
            "--",
            "crates",
            "Cargo.toml",
            "Cargo.lock",
        ]),
    ) {
        (Some(head), Some(status)) => describe_revision(&head, &status),
        _ => "unknown".to_owned(),
    }
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    /// For [`Step::TOOLS`].
    peak_rss_kib: Option<u64>,
}

/// What the steps of a run use.
struct RunCx<'a> {
    hoist: &'a Path,
    image: &'a Image,
    pull: &'a Registry,
    /// The run's directory.
    dir: PathBuf,
    /// The run's number, from 1, in repository names.
    number: usize,
    /// The fresh registries of the pushes.
    hoist_target: &'a Registry,
    skopeo_target: &'a Registry,
    upload_target: &'a Registry,
}

/// `program` under GNU `time`, which writes its peak RSS into `rss_file`.
fn with_time(rss_file: &Path, program: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o"]).arg(rss_file).arg(program);
    cmd
}

fn oci(dir: &Path) -> String {
    format!("oci:{}:{TAG}", dir.display())
}

/// Times `step` and checks what it did.
fn measure(step: Step, cx: &RunCx<'_>) -> Result<Sample> {
    let image = cx.image;
    let rss_file = cx.dir.join(format!("{}.rss", step.key()));
    let hoist = |src: String, dst: String| {
        let mut cmd = with_time(&rss_file, cx.hoist);
        cmd.args(["copy", &src, &dst]);
        cmd
    };
    let skopeo = |tls: &str, src: String, dst: String| {
        let mut cmd = with_time(&rss_file, Path::new("skopeo"));
        cmd.args(["copy", tls, &src, &dst]);
        cmd
    };
    let source = format!("{}/{SOURCE_REPO}:{TAG}", cx.pull.host);
    let seconds = match step {
        Step::HoistPull | Step::SkopeoPull => {
            let dir = cx.dir.join(step.key());
            let mut cmd = if step == Step::HoistPull {
                hoist(source, oci(&dir))
            } else {
                skopeo(
                    "--src-tls-verify=false",
                    format!("docker://{source}"),
                    oci(&dir),
                )
            };
            let (seconds, output) = timed(&mut cmd)?;
            if step == Step::HoistPull {
                check_digest_printed(&output.stdout, image)?;
            }
            check_pulled(&dir, image)?;
            seconds
        }
        Step::HoistPush | Step::SkopeoPush => {
            let (target, tool) = if step == Step::HoistPush {
                (cx.hoist_target, "hoist")
            } else {
                (cx.skopeo_target, "skopeo")
            };
            let repo = format!("bench/push-{tool}-{}", cx.number);
            let dst = format!("{}/{repo}:{TAG}", target.host);
            let mut cmd = if step == Step::HoistPush {
                hoist(oci(&image.layout), dst)
            } else {
                skopeo(
                    "--dest-tls-verify=false",
                    oci(&image.layout),
                    format!("docker://{dst}"),
                )
            };
            let (seconds, output) = timed(&mut cmd)?;
            if step == Step::HoistPush {
                check_digest_printed(&output.stdout, image)?;
            }
            check_pushed(target, &repo, image)?;
            seconds
        }
        Step::Serve => {
            let base = cx.pull.base();
            parallel(JOBS, &image.layers, |l| {
                download_blob_from(&base, SOURCE_REPO, &l.digest, l.size)
            })?
            .0
        }
        Step::Hash => {
            parallel(JOBS, &image.layers, |l| {
                let (_, output) = timed(&mut openssl_dgst(&l.path))?;
                let actual = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
                if actual != l.digest {
                    bail!("openssl dgst says {actual}, expected {}", l.digest);
                }
                Ok(())
            })?
            .0
        }
        Step::Write => {
            let dir = cx.dir.join("dd");
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            parallel(JOBS, &image.layers, |l| {
                let file = dir.join(l.hex());
                let mut dd = Command::new("dd");
                dd.arg(format!("if={}", l.path.display()))
                    .arg(format!("of={}", file.display()))
                    .args(["bs=1M", "conv=fdatasync"]);
                timed(&mut dd)?;
                let written = fs::metadata(&file)?.len();
                if written != l.size {
                    bail!("dd wrote {written} bytes, expected {}", l.size);
                }
                Ok(())
            })?
            .0
        }
        Step::Upload => {
            let base = cx.upload_target.base();
            let repo = format!("bench/upload-{}", cx.number);
            parallel(JOBS, &image.layers, |l| {
                upload_blob_to(&base, &repo, Some(l.path.as_path()), "", &l.digest)
            })?
            .0
        }
    };
    let peak_rss_kib = if Step::TOOLS.contains(&step) {
        let text = fs::read_to_string(&rss_file)
            .with_context(|| format!("cannot read {}", rss_file.display()))?;
        Some(
            parse_time_rss(&text)
                .with_context(|| format!("no peak RSS in {}: {text:?}", rss_file.display()))?,
        )
    } else {
        None
    };
    Ok(Sample {
        step,
        seconds,
        peak_rss_kib,
    })
}

/// Fails unless `hoist copy` printed the manifest's digest on stdout.
fn check_digest_printed(stdout: &[u8], image: &Image) -> Result<()> {
    let stdout = String::from_utf8_lossy(stdout);
    if !stdout.contains(&image.manifest.digest) {
        bail!(
            "hoist copy printed {:?}, not the digest {}",
            stdout.trim(),
            image.manifest.digest
        );
    }
    Ok(())
}

/// Everything the client scenario measured.
#[derive(Debug)]
struct ClientReport {
    /// Bytes of the layers (gzip streams).
    layer_bytes: u64,
    /// Random bytes in them.
    random_bytes: u64,
    manifest_digest: String,
    skopeo_version: String,
    /// What hoist was built from ([`describe_revision`]).
    hoist_revision: String,
    pause_secs: u64,
    ballast_bytes: Vec<u64>,
    runs: Vec<Vec<Sample>>,
}

impl ClientReport {
    fn seconds(&self, step: Step) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|s| s.step == step).map(|s| s.seconds))
            .collect()
    }

    fn median(&self, step: Step) -> f64 {
        median(&self.seconds(step)).unwrap_or(f64::NAN)
    }

    fn rss(&self, step: Step) -> Vec<u64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|s| s.step == step)?.peak_rss_kib)
            .collect()
    }

    fn median_rss(&self, step: Step) -> f64 {
        let values: Vec<f64> = self.rss(step).iter().map(|&k| k as f64).collect();
        median(&values).unwrap_or(f64::NAN)
    }

    /// The machine's limit for a pull: the slowest of serving, hashing and writing.
    fn pull_bound(&self) -> f64 {
        [Step::Serve, Step::Hash, Step::Write]
            .into_iter()
            .map(|s| self.median(s))
            .fold(f64::NAN, f64::max)
    }

    /// Which of serving, hashing and writing is the pull's bound.
    fn pull_bound_step(&self) -> Step {
        let mut slowest = Step::Serve;
        for step in [Step::Hash, Step::Write] {
            if self.median(step) > self.median(slowest) {
                slowest = step;
            }
        }
        slowest
    }

    /// The ratios of the targets, by run: pull vs skopeo, pull vs bound, push vs upload, push
    /// vs skopeo.
    fn run_ratios(&self) -> [Vec<f64>; 4] {
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
        ]
    }

    fn targets(&self) -> Vec<Target> {
        let at_most = |name, ratio: f64, limit: f64| Target {
            name,
            measured: format_ratio(ratio),
            limit: format!("≤ {}", format_ratio(limit)),
            pass: ratio <= limit,
            value: ratio,
            limit_value: limit,
        };
        let below = |name, ratio: f64, limit: f64| Target {
            limit: format!("< {}", format_ratio(limit)),
            pass: ratio < limit,
            ..at_most(name, ratio, limit)
        };
        let m = |step| self.median(step);
        vec![
            at_most(
                "pull: hoist / skopeo",
                m(Step::HoistPull) / m(Step::SkopeoPull),
                PULL_VS_SKOPEO,
            ),
            at_most(
                "pull: hoist / max(GET, hash, write)",
                m(Step::HoistPull) / self.pull_bound(),
                BOUND_LIMIT,
            ),
            at_most(
                "push: hoist / curl upload",
                m(Step::HoistPush) / m(Step::Upload),
                BOUND_LIMIT,
            ),
            below(
                "push: hoist / skopeo",
                m(Step::HoistPush) / m(Step::SkopeoPush),
                PUSH_VS_SKOPEO,
            ),
            at_most(
                "pull peak RSS: hoist / skopeo",
                self.median_rss(Step::HoistPull) / self.median_rss(Step::SkopeoPull),
                RSS_VS_SKOPEO,
            ),
            at_most(
                "push peak RSS: hoist / skopeo",
                self.median_rss(Step::HoistPush) / self.median_rss(Step::SkopeoPush),
                RSS_VS_SKOPEO,
            ),
        ]
    }

    fn table(&self) -> String {
        let runs = self.runs.len();
        let mut out = String::new();
        let ballast = match self.ballast_bytes.iter().max() {
            Some(&max) if max > 0 => format!("up to {} MiB ballast before each run", max >> 20),
            _ => "no ballast".to_owned(),
        };
        let _ = writeln!(
            out,
            "client bench: hoist copy vs {} with docker-registry (filesystem storage, \
             loopback);\n{} MiB in {LAYERS} gzip layers of random data, manifest {};\n\
             {runs} run(s), {ballast}, {} s pause after each run; step order reverses between \
             runs;\nbefore every step: sync, untimed read of the layers from the source and \
             the registry;\npulls into new layouts, pushes into a new registry each; bounds: \
             {LAYERS} blobs {JOBS} at a time (hoist's --jobs);\nhoist built from {}\n",
            self.skopeo_version,
            self.layer_bytes >> 20,
            self.manifest_digest,
            self.pause_secs,
            self.hoist_revision,
        );
        let header = |out: &mut String, title: &str, last: &str| {
            let _ = write!(out, "{title:<36}");
            for i in 1..=runs {
                let _ = write!(out, "{:>10}", format!("run {i}"));
            }
            let _ = writeln!(out, "{:>10}{last:>10}", "median");
        };
        let trim_last_line = |out: &mut String| {
            let kept = out.trim_end().len();
            out.truncate(kept);
            out.push('\n');
        };
        header(&mut out, "seconds", "MB/s");
        for step in Step::ALL {
            let _ = write!(out, "{:<36}", step.label());
            for v in self.seconds(step) {
                let _ = write!(out, "{v:>10.3}");
            }
            let m = self.median(step);
            let _ = writeln!(out, "{m:>10.3}{:>10.0}", rate_mb_s(self.layer_bytes, m));
        }
        let names = [
            "pull hoist / skopeo",
            "pull hoist / bound",
            "push hoist / curl upload",
            "push hoist / skopeo",
        ];
        for (name, ratios) in names.iter().zip(self.run_ratios()) {
            let _ = write!(out, "{name:<36}");
            for r in ratios {
                let _ = write!(out, "{:>10}", format_ratio(r));
            }
            let _ = writeln!(out);
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
        let _ = writeln!(
            out,
            "\n{:<38}{:>10}{:>10}   verdict",
            "target", "measured", "limit"
        );
        for t in self.targets() {
            let _ = writeln!(
                out,
                "{:<38}{:>10}{:>10}   {}",
                t.name,
                t.measured,
                t.limit,
                verdict(t.pass)
            );
        }
        out
    }

    fn to_json(&self) -> Value {
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
        let [pull_skopeo, pull_bound, push_upload, push_skopeo] = self.run_ratios();
        json!({
            "scenario": "client",
            "layers": LAYERS,
            "layer_media_type": LAYER_TYPE,
            "layer_bytes": self.layer_bytes,
            "random_bytes": self.random_bytes,
            "manifest_digest": self.manifest_digest,
            "skopeo": self.skopeo_version,
            "hoist_revision": self.hoist_revision,
            "jobs": JOBS,
            "runs": self.runs.len(),
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
            },
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "at_most": t.limit_value,
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(&["curl", "skopeo", "docker-registry", "openssl", "gzip", "dd"])?;
    if !Path::new("/usr/bin/time").exists() {
        bail!("GNU time is not installed at /usr/bin/time (apt-get install -y time)");
    }
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root);
    let (_, output) = timed(Command::new("skopeo").arg("--version"))?;
    let skopeo_version = String::from_utf8_lossy(&output.stdout)
        .trim()
        .replace("skopeo version", "skopeo");
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("client-work");
    if work.to_string_lossy().contains(':') {
        bail!(
            "{} contains `:`, which oci:DIR:TAG cannot express",
            work.display()
        );
    }
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let random_bytes = args.size_mib << 20;

    println!(
        "==> source: {} MiB of random data in {LAYERS} gzip layers at {}",
        args.size_mib,
        work.join("source").display()
    );
    let image = make_image(&work, random_bytes)?;
    println!(
        "    {} ({} bytes of layers)",
        image.manifest.digest,
        image.layer_bytes()
    );
    let pull = Registry::start(root, &work.join("registry-pull"))?;
    println!(
        "==> docker-registry on {}: {SOURCE_REPO}:{TAG} (curl)",
        pull.addr
    );
    seed(&pull, &image)?;
    warm(&pull, &image)?;
    sync_and_pause(args.pause_secs)?;

    let size_bytes = image.layer_bytes();
    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    for index in 0..args.runs {
        let dir = work.join(format!("run-{}", index + 1));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        println!("==> run {} of {}", index + 1, args.runs);
        let ballast = if args.ballast {
            let meminfo =
                fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            let available =
                parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
            ballast_bytes(
                size_bytes,
                available.saturating_sub(EXTRA_COPIES * size_bytes),
            )
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dir.join("ballast"), ballast)?;
        }
        ballasts.push(ballast);
        let hoist_target = Registry::start(root, &dir.join("registry-hoist"))?;
        let skopeo_target = Registry::start(root, &dir.join("registry-skopeo"))?;
        let upload_target = Registry::start(root, &dir.join("registry-curl"))?;
        let cx = RunCx {
            hoist: &hoist,
            image: &image,
            pull: &pull,
            dir: dir.clone(),
            number: index + 1,
            hoist_target: &hoist_target,
            skopeo_target: &skopeo_target,
            upload_target: &upload_target,
        };
        let mut samples = Vec::new();
        for step in client_order(index) {
            run_status(&mut Command::new("sync"))?;
            warm(&pull, &image)?;
            let sample = measure(step, &cx)?;
            match sample.peak_rss_kib {
                Some(kib) => println!(
                    "    {:<36}{:>8.3} s {:>12}",
                    step.label(),
                    sample.seconds,
                    format_mib(kib)
                ),
                None => println!("    {:<36}{:>8.3} s", step.label(), sample.seconds),
            }
            samples.push(sample);
        }
        runs.push(samples);
        drop((hoist_target, skopeo_target, upload_target));
        remove_dir(&dir)?;
        if index + 1 < args.runs {
            sync_and_pause(args.pause_secs)?;
        }
    }
    drop(pull);
    remove_dir(&work)?;

    let report = ClientReport {
        layer_bytes: size_bytes,
        random_bytes,
        manifest_digest: image.manifest.digest.clone(),
        skopeo_version,
        hoist_revision,
        pause_secs: args.pause_secs,
        ballast_bytes: ballasts,
        runs,
    };
    let json_path = bench_dir.join("client.json");
    let mut text = serde_json::to_string_pretty(&report.to_json())?;
    text.push('\n');
    fs::write(&json_path, text).with_context(|| format!("cannot write {}", json_path.display()))?;
    println!();
    print!("{}", report.table());
    println!("\nresults: {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::super::{Scenario, parse_args};
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn client_defaults_to_1_gib_and_quick_to_64_mib_once() {
        let parsed = parse_args(&args(&["client"])).unwrap();
        assert_eq!(parsed.scenario, Scenario::Client);
        assert_eq!((parsed.size_mib, parsed.runs), (CLIENT_SIZE_MIB, 3));
        assert!(parsed.ballast);
        let quick = parse_args(&args(&["client", "--quick"])).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
        assert!(!quick.ballast && quick.quick);
        assert_eq!(quick.pause_secs, 0);
        let given = parse_args(&args(&[
            "--runs",
            "2",
            "client",
            "--quick",
            "--size-mib",
            "128",
        ]))
        .unwrap();
        assert_eq!((given.size_mib, given.runs), (128, 2));
        assert!(parse_args(&args(&["client", "--size-mib", "0"])).is_err());
        // Other scenarios keep their defaults.
        assert_eq!(parse_args(&args(&["layout", "--quick"])).unwrap().runs, 3);
    }

    #[test]
    fn layers_share_the_size() {
        assert_eq!(layer_sizes(1 << 30), [128 << 20; LAYERS]);
        let odd = layer_sizes(1003);
        assert_eq!(odd.iter().sum::<u64>(), 1003);
        assert_eq!(odd[0], 125);
        assert_eq!(odd[LAYERS - 1], 128);
    }

    #[test]
    fn headers_and_time_output_are_parsed() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\
                    docker-content-digest: sha256:aa\r\nDocker-Content-Digest: sha256:bb\r\n\r\n";
        assert_eq!(
            parse_header(head, "Docker-Content-Digest").as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(parse_header(head, "content-length").as_deref(), Some("1"));
        assert_eq!(parse_header(head, "location"), None);

        assert_eq!(parse_time_rss("23456\n"), Some(23456));
        assert_eq!(
            parse_time_rss("Command exited with non-zero status 1\n2345\n\n"),
            Some(2345)
        );
        assert_eq!(parse_time_rss(""), None);
        assert_eq!(parse_time_rss("Command terminated by signal 9\n"), None);
    }

    #[test]
    fn revision_names_the_changed_files() {
        assert_eq!(describe_revision("c02f2a6\n", ""), "c02f2a6");
        assert_eq!(
            describe_revision(
                "c02f2a6\n",
                " M crates/oci-layout/src/layout.rs\n?? crates/x/new.rs\n"
            ),
            "c02f2a6 + uncommitted crates/oci-layout/src/layout.rs, crates/x/new.rs"
        );
    }

    #[test]
    fn order_reverses_between_runs_with_hoist_beside_its_peers() {
        assert_eq!(client_order(0)[0], Step::SkopeoPull);
        assert_eq!(client_order(1)[0], Step::SkopeoPush);
        assert_eq!(client_order(1)[7], Step::SkopeoPull);
        assert_eq!(client_order(2), client_order(0));
        for index in 0..2 {
            let order = client_order(index);
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1);
            }
            for (hoist, peers) in [
                (Step::HoistPull, [Step::SkopeoPull, Step::Write]),
                (Step::HoistPush, [Step::SkopeoPush, Step::Upload]),
            ] {
                for peer in peers {
                    assert_eq!(at(hoist).abs_diff(at(peer)), 1, "{hoist:?} {peer:?}");
                }
            }
        }
    }

    #[test]
    fn parallel_keeps_order_and_stops_at_an_error() {
        let items: Vec<u32> = (0..20).collect();
        let (_, doubled) = parallel(JOBS, &items, |&i| Ok(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let (_, none) = parallel(JOBS, &[] as &[u32], |&i| Ok(i)).unwrap();
        assert!(none.is_empty());
        let failed = parallel(JOBS, &items, |&i| {
            if i == 5 {
                bail!("item 5")
            }
            Ok(i)
        });
        assert!(failed.unwrap_err().to_string().contains("item 5"));
    }

    fn sample(step: Step, seconds: f64, rss: u64) -> Sample {
        Sample {
            step,
            seconds,
            peak_rss_kib: Step::TOOLS.contains(&step).then_some(rss),
        }
    }

    fn report(hoist_pull: f64) -> ClientReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::HoistPull, hoist_pull, 20_000),
                (Step::SkopeoPull, 4.0, 60_000),
                (Step::Serve, 1.0, 0),
                (Step::Hash, 0.5, 0),
                (Step::Write, 2.5, 0),
                (Step::HoistPush, 3.0, 18_000),
                (Step::SkopeoPush, 5.0, 50_000),
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
            hoist_revision: "c02f2a6".to_owned(),
            pause_secs: 20,
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
        let expected = [2.7 / 4.0, 2.7 / 2.5, 3.0 / 2.9, 3.0 / 5.0, 1.0 / 3.0, 0.36];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-9, "{values:?}");
        }
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        let [pull_skopeo, ..] = report.run_ratios();
        assert_eq!(pull_skopeo.len(), 3);
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
        assert_eq!(json["pull_bound"], json!("dd"));
        assert_eq!(json["targets"][0]["pass"], json!(true));
    }

    #[test]
    fn a_slow_pull_fails() {
        let report = report(3.5);
        let verdicts: Vec<bool> = report.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, false, true, true, true, true]);
        assert!(report.table().contains("FAIL"));
    }
}
