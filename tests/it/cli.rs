//! The `hoist` command line, run as a program against real peers: the CNCF registry
//! (`docker-registry`), `skopeo` and `umoci` (installed and started by `tests/peers/`), and
//! `hoist serve`. Each test isolates credentials with a `DOCKER_CONFIG` of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use oci_layout::LayoutStore;
use oci_types::Digest;
use tempfile::TempDir;

use crate::client_peers::shared_cncf;
use crate::server_interop::{LayoutImage, layout_image, layout_index, oci_ref, skopeo};
use crate::support::{ServeProcess, hoist_binary, peer};

/// `hoist` with a home of its own: no credentials but those a test writes.
pub(crate) struct Hoist {
    home: TempDir,
}

impl Hoist {
    pub(crate) fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn docker_config(&self) -> PathBuf {
        self.home.path().join("docker")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(hoist_binary());
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("DOCKER_CONFIG", self.docker_config())
            .env("REGISTRY_AUTH_FILE", self.home.path().join("auth.json"))
            .env("XDG_RUNTIME_DIR", self.home.path())
            .env_remove("RUST_LOG");
        command
    }

    /// Runs `hoist ARGS`, which must succeed; returns its output.
    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "hoist {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `hoist ARGS`, which must succeed; returns its stdout, trimmed.
    pub(crate) fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args).stdout)
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// Runs `hoist ARGS`, which must fail; returns its exit code and stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> (i32, String) {
        let output = self.command(args).output().unwrap();
        assert!(
            !output.status.success(),
            "hoist {args:?} succeeded, expected a failure:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// The peers every test here needs, or `None` after saying which one is missing.
fn peers() -> Option<(PathBuf, String)> {
    let skopeo = peer("skopeo")?;
    let registry = shared_cncf()?;
    Some((skopeo, registry.addr.to_string()))
}

/// A single layout in `dir` with one image per `arch` (tagged with the arch) and, with several,
/// an index of them tagged `multi`.
async fn source_layout(dir: &Path, arches: &[&str]) -> (Vec<LayoutImage>, Option<LayoutImage>) {
    let store = LayoutStore::open(dir).await.unwrap();
    let mut images = Vec::new();
    for arch in arches {
        let tag = arch.replace('/', "-");
        images.push(layout_image(&store, arch, Some(&tag)).await);
    }
    let index = if arches.len() > 1 {
        let children: Vec<(&LayoutImage, &str)> =
            images.iter().zip(arches.iter().copied()).collect();
        Some(layout_index(&store, &children, "multi").await)
    } else {
        None
    };
    (images, index)
}

/// `skopeo copy oci:DIR:TAG docker://TARGET` (into the CNCF registry, plain HTTP).
pub(crate) fn skopeo_push(skopeo_bin: &Path, dir: &Path, tag: &str, target: &str, all: bool) {
    let source = oci_ref(dir, tag);
    let target = format!("docker://{target}");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), target.as_str()]);
    skopeo(skopeo_bin, &args);
}

fn digest_of(output: &str) -> Digest {
    Digest::parse(output.lines().last().unwrap_or_default().trim())
        .unwrap_or_else(|e| panic!("no digest in {output:?}: {e}"))
}

/// From the CNCF registry into a layout with `hoist copy`: skopeo inspects the result and
/// umoci unpacks it, with the registry's digest.
#[tokio::test(flavor = "multi_thread")]
async fn copy_from_the_registry_to_a_layout_is_read_by_skopeo_and_umoci() {
    let (Some((skopeo_bin, addr)), Some(umoci)) = (peers(), peer("umoci")) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (images, _) = source_layout(&source, &["amd64"]).await;
    skopeo_push(
        &skopeo_bin,
        &source,
        "amd64",
        &format!("{addr}/cli/single:v1"),
        false,
    );

    let hoist = Hoist::new();
    let out = work.path().join("out");
    let copied = digest_of(&hoist.stdout(&[
        "copy",
        &format!("{addr}/cli/single:v1"),
        &format!("oci:{}:v1", out.display()),
    ]));
    assert_eq!(copied, images[0].manifest.digest);
    assert_eq!(
        digest_of(&hoist.stdout(&["digest", &format!("{addr}/cli/single:v1")])),
        copied
    );

    let inspected = skopeo(&skopeo_bin, &["inspect", &oci_ref(&out, "v1")]);
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"], copied.to_string());
    assert_eq!(inspected["Architecture"], "amd64");

    let bundle = work.path().join("bundle");
    crate::support::run(
        &umoci,
        [
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:v1", out.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/arch")).unwrap(),
        "amd64"
    );
}

/// skopeo pushes a multi-arch index into the CNCF registry; hoist copies it to another
/// repository of the same registry and back to a third: the index keeps its digest all the way,
/// as skopeo sees it.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_copied_between_repositories_and_back_keeps_its_digest() {
    let Some((skopeo_bin, addr)) = peers() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (_, index) = source_layout(&source, &["amd64", "arm64"]).await;
    let index = index.unwrap();
    skopeo_push(
        &skopeo_bin,
        &source,
        "multi",
        &format!("{addr}/cli/multi:1"),
        true,
    );

    let hoist = Hoist::new();
    let there = digest_of(&hoist.stdout(&[
        "copy",
        &format!("{addr}/cli/multi:1"),
        &format!("{addr}/cli/multi-copy:1"),
    ]));
    let back = digest_of(&hoist.stdout(&[
        "cp",
        &format!("{addr}/cli/multi-copy:1"),
        &format!("{addr}/cli/multi-back:1"),
    ]));
    assert_eq!(there, index.manifest.digest);
    assert_eq!(back, index.manifest.digest);
    let raw = skopeo(
        &skopeo_bin,
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{addr}/cli/multi-back:1"),
        ],
    );
    assert_eq!(
        raw.stdout,
        index.manifest_bytes.to_vec(),
        "the same index bytes"
    );
    // Every child came along: skopeo can read each platform's image.
    for arch in ["amd64", "arm64"] {
        let inspected = skopeo(
            &skopeo_bin,
            &[
                "inspect",
                "--tls-verify=false",
                "--override-arch",
                arch,
                &format!("docker://{addr}/cli/multi-back:1"),
            ],
        );
        let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
        assert_eq!(inspected["Architecture"], arch);
    }
}

/// `--platform` on a real index in the CNCF registry: `linux/arm64` picks the arm64 child,
/// `linux/arm/v6` falls back to the v5 image (a v6 CPU runs v5 code, not v7).
#[tokio::test(flavor = "multi_thread")]
async fn platform_selection_picks_the_right_child_of_a_real_index() {
    let Some((skopeo_bin, addr)) = peers() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let arches = ["amd64", "arm64", "arm/v7", "arm/v5"];
    let (images, _) = source_layout(&source, &arches).await;
    skopeo_push(
        &skopeo_bin,
        &source,
        "multi",
        &format!("{addr}/cli/platforms:1"),
        true,
    );

    let hoist = Hoist::new();
    let out = work.path().join("out");
    let reference = format!("{addr}/cli/platforms:1");
    let arm64 = digest_of(&hoist.stdout(&[
        "copy",
        "--platform",
        "linux/arm64",
        &reference,
        &format!("oci:{}:arm64", out.display()),
    ]));
    assert_eq!(arm64, images[1].manifest.digest);
    let v6 = digest_of(&hoist.stdout(&[
        "copy",
        "--platform",
        "linux/arm/v6",
        &reference,
        &format!("oci:{}:v6", out.display()),
    ]));
    assert_eq!(v6, images[3].manifest.digest, "arm/v6 runs the v5 image");
    assert_eq!(
        digest_of(&hoist.stdout(&["digest", "--platform", "linux/arm/v7", &reference])),
        images[2].manifest.digest
    );
    let (code, stderr) = hoist.fails(&[
        "copy",
        "--platform",
        "linux/s390x",
        &reference,
        &format!("oci:{}:no", out.display()),
    ]);
    assert_eq!(
        code, 3,
        "no image for the platform is 'not found': {stderr}"
    );
    assert!(stderr.contains("linux/s390x"), "{stderr}");
}

/// Into `hoist serve` and out again, through layouts: the same digests, and the layout that
/// comes out holds what went in.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_into_hoist_serve_and_out_again() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (_, index) = source_layout(&source, &["amd64", "arm64"]).await;
    let index = index.unwrap();
    let server = ServeProcess::start(&["--root", work.path().join("served").to_str().unwrap()]);
    let addr = server.addr().to_string();
    let hoist = Hoist::new();

    let pushed = digest_of(&hoist.stdout(&[
        "push",
        &format!("{}:multi", source.display()),
        &format!("{addr}/served/app:1"),
    ]));
    assert_eq!(pushed, index.manifest.digest);
    let out = work.path().join("out");
    let pulled = digest_of(&hoist.stdout(&[
        "pull",
        &format!("{addr}/served/app:1"),
        out.to_str().unwrap(),
    ]));
    assert_eq!(pulled, index.manifest.digest);
    assert_eq!(
        hoist.stdout(&["ls", &format!("oci:{}", out.display())]),
        "1"
    );
    assert_eq!(hoist.stdout(&["ls", &format!("{addr}/served/app")]), "1");
    assert_eq!(hoist.stdout(&["catalog", &addr]), "served/app");
    assert!(hoist.stdout(&["fsck", out.to_str().unwrap()]).is_empty());
}

/// In the debug log each request's lines are inside that request's span alone: a span entered
/// across an await stayed entered on its thread, and the requests of the other blobs logged
/// inside it (`request{..}:request{..}:..`).
#[tokio::test(flavor = "multi_thread")]
async fn each_request_logs_inside_its_own_span_only() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    big_layout(&source, 6, 64 << 10).await;
    let server = ServeProcess::start(&["--memory"]);
    let target = format!("{}/spans/app:1", server.addr());
    let hoist = Hoist::new();
    hoist.ok(&["copy", &format!("oci:{}:big", source.display()), &target]);
    let out = work.path().join("out");
    let pulled = hoist
        .command(&[
            "copy",
            "-j",
            "4",
            &target,
            &format!("oci:{}:1", out.display()),
        ])
        .env("RUST_LOG", "oci_registry=debug,hyper_util=debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{log}");
    let in_spans: Vec<&str> = log.lines().filter(|l| l.contains("request{")).collect();
    assert!(
        in_spans.len() >= 6,
        "one line at least per blob request:\n{log}"
    );
    let nested: Vec<&&str> = in_spans
        .iter()
        .filter(|l| l.matches("request{").count() > 1)
        .collect();
    assert!(
        nested.is_empty(),
        "requests logged inside others: {nested:#?}"
    );
}

/// A copy killed part-way (after its first blob landed) and run again completes, and the
/// second run transfers only what the first did not.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_copy_completes_and_sends_only_what_is_missing() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    big_layout(&source, 6, 24 << 20).await;
    let served = work.path().join("served");
    let server = ServeProcess::start(&["--root", served.to_str().unwrap()]);
    let addr = server.addr().to_string();
    let hoist = Hoist::new();
    let target = format!("{addr}/big/app:1");
    let source_ref = format!("oci:{}:big", source.display());

    let blobs = served.join("big/app/blobs/sha256");
    let mut first = hoist
        .command(&["copy", "-j", "1", &source_ref, &target])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_files(&blobs) < 2 {
        assert!(Instant::now() < deadline, "no blob landed within a minute");
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the copy ended ({status}) before it could be interrupted");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // A blob whose bytes were all sent before the kill may still land: the server finishes
    // what it received whole. Let it settle before counting.
    std::thread::sleep(Duration::from_millis(500));
    let landed = count_files(&blobs);
    assert!(
        landed < 7,
        "the copy was interrupted with {landed} of 7 blobs in place"
    );
    let (code, _) = hoist.fails(&["digest", &target]);
    assert_eq!(code, 3, "no tag after an interrupted copy");

    let second = hoist.ok(&["copy", "-v", &source_ref, &target]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    let skipped = stderr
        .lines()
        .filter(|l| l.starts_with("blob ") && l.ends_with("already there"))
        .count();
    assert_eq!(
        skipped,
        landed,
        "the second run skips what the first sent:\n{stderr}\nfiles: {:?}",
        std::fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    assert_eq!(count_files(&blobs), 8, "7 blobs and the manifest");
    assert_eq!(
        digest_of(&hoist.stdout(&["digest", &target])),
        digest_of(&String::from_utf8_lossy(&second.stdout))
    );
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// A layout with one image of `layers` random layers of `size` bytes, tagged `big`.
async fn big_layout(dir: &Path, layers: usize, size: usize) {
    use bytes::Bytes;
    use oci_store::{OciInterface, OciInterfaceExt, PushManifestParams};
    use oci_types::{ImageManifest, MediaType, Tag, media_type};
    let store = LayoutStore::open(dir).await.unwrap();
    let repo = crate::server_interop::layout_repo();
    let mut descriptors = Vec::new();
    for n in 0..layers {
        let content = oci_store::conformance::seeded_bytes(100 + n as u64, size);
        descriptors.push(
            store
                .push_blob_bytes(
                    &repo,
                    MediaType::from_static(media_type::OCI_LAYER_GZIP),
                    content,
                )
                .await
                .unwrap(),
        );
    }
    let config = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}"),
        )
        .await
        .unwrap();
    store
        .push_manifest(
            &repo,
            ImageManifest::new(config, descriptors).to_json().into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag(Tag::parse("big").unwrap()),
        )
        .await
        .unwrap();
}

// ---- credentials ----

/// An htpasswd file with `user:password` (bcrypt).
pub(crate) fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash(password, 4).unwrap();
    std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
    path
}

/// `hoist login` checks the credentials, writes them to docker's config.json as `docker
/// login` does (keeping what else is there), and later commands use them; `hoist logout`
/// removes them. Wrong credentials are refused with the auth exit code and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn login_writes_docker_config_and_logout_removes_it() {
    login_flow(false).await;
}

/// The same with the token flow: the token endpoint checks the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn login_through_a_token_endpoint() {
    login_flow(true).await;
}

async fn login_flow(token_auth: bool) {
    let work = tempfile::tempdir().unwrap();
    let users = htpasswd(work.path(), "ci", "s3cret");
    let mut args = vec!["--memory", "--htpasswd", users.to_str().unwrap()];
    if token_auth {
        args.push("--token-auth");
    }
    let server = ServeProcess::start(&args);
    let addr = server.addr().to_string();
    let hoist = Hoist::new();
    std::fs::create_dir_all(hoist.docker_config()).unwrap();
    let config = hoist.docker_config().join("config.json");
    std::fs::write(
        &config,
        r#"{"auths":{"other.example":{"auth":"eDp5"}},"psFormat":"table"}"#,
    )
    .unwrap();

    let (code, stderr) = hoist.fails(&["login", &addr, "-u", "ci", "-p", "wrong"]);
    assert_eq!(code, 4, "{stderr}");
    let (code, stderr) = hoist.fails(&["catalog", &addr]);
    assert_eq!(code, 4, "no credentials yet: {stderr}");

    hoist.ok(&["login", &addr, "-u", "ci", "-p", "s3cret"]);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        written["auths"][&addr]["auth"], "Y2k6czNjcmV0",
        "base64 of ci:s3cret"
    );
    assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
    assert_eq!(written["psFormat"], "table");
    let source = work.path().join("source");
    source_layout(&source, &["amd64"]).await;
    hoist.ok(&[
        "push",
        &format!("{}:amd64", source.display()),
        &format!("{addr}/private/app:1"),
    ]);
    assert_eq!(hoist.stdout(&["ls", &format!("{addr}/private/app")]), "1");

    hoist.ok(&["logout", &addr]);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(written["auths"].get(&addr).is_none(), "{written}");
    assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
    let (code, _) = hoist.fails(&["ls", &format!("{addr}/private/app")]);
    assert_eq!(code, 4);
}

// ---- snapshots ----

/// Compares `actual` with `tests/it/snapshots/NAME.txt`; with `HOIST_UPDATE_SNAPSHOTS=1`
/// writes it instead (then review the diff and commit it).
fn assert_snapshot(name: &str, actual: &str) {
    let path = crate::support::workspace_root()
        .join("tests/it/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("HOIST_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}); run with HOIST_UPDATE_SNAPSHOTS=1 to write it:\n{actual}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from {}\n--- expected\n{expected}\n--- actual\n{actual}\n\
         (HOIST_UPDATE_SNAPSHOTS=1 rewrites it)",
        path.display()
    );
}

/// What a failed command shows: its exit code and its stderr, with the places that change
/// from run to run replaced.
fn failure_snapshot(hoist: &Hoist, args: &[&str], replace: &[(&str, &str)]) -> String {
    let (code, stderr) = hoist.fails(args);
    let mut text = format!("$ hoist {}\nexit code {code}\n{stderr}", args.join(" "))
        .replace("hoist-under-test", "hoist");
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    text
}

#[test]
fn help_snapshots() {
    let hoist = Hoist::new();
    // The program under test is the same command line built under another name.
    let help = |args: &[&str]| hoist.stdout(args).replace("hoist-under-test", "hoist");
    assert_snapshot("help", &help(&["--help"]));
    assert_snapshot("help-copy", &help(&["copy", "--help"]));
    assert_snapshot("help-inspect", &help(&["inspect", "--help"]));
}

/// `hoist serve`'s time limits are bounded (a year; a week for signed redirect URLs, the most
/// S3 and Google Cloud Storage sign for): a value past the bound is a usage error naming the
/// flag and its range. (A header timeout past the clock's range made every connection's task
/// panic.)
#[test]
fn serve_refuses_time_limits_past_their_bounds() {
    let hoist = Hoist::new();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["--memory", "--idle-timeout", "18446744073709551615"],
            "--idle-timeout",
            "0..=31536000",
        ),
        (
            &["--memory", "--header-timeout", "31536001"],
            "--header-timeout",
            "0..=31536000",
        ),
        (
            &["--memory", "--tls-handshake-timeout", "0"],
            "--tls-handshake-timeout",
            "1..=31536000",
        ),
        (
            &[
                "--storage",
                "memory://",
                "--redirect-blobs",
                "--redirect-expiry",
                "604801",
            ],
            "--redirect-expiry",
            "1..=604800",
        ),
    ];
    for (args, flag, range) in cases {
        let (code, stderr) = hoist.fails(&[&["serve"], args].concat());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(range),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_snapshots() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("layout");
    source_layout(&source, &["amd64", "arm64"]).await;
    let hoist = Hoist::new();
    let dir = source.display().to_string();
    let text = |args: &[&str]| {
        format!("$ hoist {}\n{}\n", args.join(" "), hoist.stdout(args)).replace(&dir, "<DIR>")
    };
    let index = text(&["inspect", &format!("oci:{dir}:multi")]);
    let image = text(&[
        "inspect",
        "--platform",
        "linux/arm64",
        &format!("oci:{dir}:multi"),
    ]);
    assert_snapshot("inspect-index", &index);
    assert_snapshot("inspect-image", &image);
    let json: serde_json::Value =
        serde_json::from_str(&hoist.stdout(&["inspect", "--json", &format!("oci:{dir}:amd64")]))
            .unwrap();
    assert!(json.is_object(), "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_snapshots() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("layout");
    source_layout(&source, &["amd64"]).await;
    let users = htpasswd(work.path(), "ci", "s3cret");
    let server = ServeProcess::start(&["--memory", "--htpasswd", users.to_str().unwrap()]);
    let addr = server.addr().to_string();
    let hoist = Hoist::new();
    let dir = source.display().to_string();
    let replace = [(dir.as_str(), "<DIR>"), (addr.as_str(), "<ADDR>")];

    let bad_reference =
        failure_snapshot(&hoist, &["digest", "localhost:5000/Upper/Case:1"], &replace);
    assert!(bad_reference.contains("exit code 2"), "{bad_reference}");
    assert_snapshot("error-bad-reference", &bad_reference);
    let bad_digest = failure_snapshot(
        &hoist,
        &["manifest", "localhost:5000/app@sha256:1234"],
        &replace,
    );
    assert_snapshot("error-bad-digest", &bad_digest);
    let unknown_tag = failure_snapshot(&hoist, &["digest", &format!("oci:{dir}:nope")], &replace);
    assert!(unknown_tag.contains("exit code 3"), "{unknown_tag}");
    assert_snapshot("error-unknown-tag", &unknown_tag);
    let refused = failure_snapshot(&hoist, &["ls", &format!("{addr}/private/app")], &replace);
    assert!(refused.contains("exit code 4"), "{refused}");
    assert_snapshot("error-auth-refused", &refused);
    let unreachable = failure_snapshot(&hoist, &["ls", "127.0.0.1:9/app"], &replace);
    assert!(unreachable.contains("exit code 5"), "{unreachable}");
}

/// `hoist blob put` of a file over the single-request size, to the CNCF registry on plain
/// HTTP (the file goes by `sendfile`) and into a layout (read in pieces), read back whole by
/// `hoist blob get`; a second put finds the blob there.
#[test]
fn cncf_blob_put_sends_a_file_and_blob_get_reads_it_back() {
    let Some(registry) = shared_cncf() else {
        return;
    };
    let hoist = Hoist::new();
    let work = tempfile::tempdir().unwrap();
    let content = oci_store::conformance::seeded_bytes(42, (3 << 20) + 5).to_vec();
    let file = work.path().join("layer.bin");
    std::fs::write(&file, &content).unwrap();
    let digest = Digest::sha256(&content);
    let layout = work.path().join("layout");
    for repository in [
        format!("{}/blobput/app", registry.addr),
        format!("oci:{}", layout.display()),
    ] {
        let out = hoist.ok(&["blob", "put", &repository, file.to_str().unwrap()]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest.as_str());
        let back = work.path().join("back.bin");
        hoist.ok(&[
            "blob",
            "get",
            &format!("{repository}@{digest}"),
            "-o",
            back.to_str().unwrap(),
        ]);
        assert!(std::fs::read(&back).unwrap() == content, "{repository}");
        let again = hoist.ok(&["blob", "put", &repository, file.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&again.stderr);
        assert!(said.contains("is already in"), "{repository}: {said}");
    }
}

/// An answer of [`raw_registry`]: status line, content type, body, and the digest it states
/// (the body's when `None`).
struct RawAnswer {
    status: &'static str,
    kind: &'static str,
    body: String,
    digest: Option<Digest>,
}

/// A raw HTTP/1.1 "registry" on a free loopback port, for answers no real one gives: every
/// request (method, path) is answered by `answer`, one connection each; a HEAD gets the head.
fn raw_registry(answer: impl Fn(&str, &str) -> RawAnswer + Send + 'static) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let RawAnswer {
                status,
                kind,
                body,
                digest,
            } = answer(method, path);
            let digest = digest.unwrap_or_else(|| Digest::sha256(body.as_bytes()));
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Docker-Content-Digest: {digest}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = stream.write_all(body.as_bytes());
            }
        }
    });
    addr
}

/// What a registry says in an error reaches the terminal without its control characters: a
/// message carrying escape sequences (clear the screen, set the title) is shown escaped.
#[test]
fn a_registrys_error_message_cannot_rewrite_the_terminal() {
    let addr = raw_registry(|_, _| RawAnswer {
        status: "403 Forbidden",
        kind: "application/json",
        body: r#"{"errors":[{"code":"DENIED","message":"\u001b[2J\u001b]0;pwned\u0007gone"}]}"#
            .to_owned(),
        digest: None,
    });
    let hoist = Hoist::new();
    let (_, stderr) = hoist.fails(&["inspect", &format!("{addr}/team/app:v1")]);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\u{1b}[2J"), "{stderr}");
}

/// A copy to a destination that pins a digest (`oci:DIR:v1@sha256:X`) copies that digest,
/// not the source's tag again: a source whose tag answers a HEAD with X and a GET with other
/// content (a tag that moved, or a hostile registry) had that content tagged `v1` before the
/// check after the copy failed.
#[test]
fn a_pinned_destination_gets_the_pinned_digest_whatever_the_tag_says_meanwhile() {
    let config = b"{}";
    let manifest = |annotation: &str| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": Digest::sha256(config).to_string(),
                "size": config.len(),
            },
            "layers": [],
            "annotations": {"which": annotation},
        })
        .to_string()
    };
    let (pinned, other) = (manifest("pinned"), manifest("other"));
    let pinned_digest = Digest::sha256(pinned.as_bytes());
    let addr = {
        let (pinned, other, digest) = (pinned.clone(), other.clone(), pinned_digest.clone());
        raw_registry(move |method, path| {
            let manifest = |body: &String, digest: Option<Digest>| RawAnswer {
                status: "200 OK",
                kind: "application/vnd.oci.image.manifest.v1+json",
                body: body.clone(),
                digest,
            };
            let by_digest = format!("/v2/team/app/manifests/{digest}");
            match path {
                // The tag: HEAD says the pinned digest, GET gives other content.
                "/v2/team/app/manifests/v1" if method == "HEAD" => {
                    manifest(&pinned, Some(digest.clone()))
                }
                "/v2/team/app/manifests/v1" => manifest(&other, None),
                p if p == by_digest => manifest(&pinned, None),
                p if p.starts_with("/v2/team/app/blobs/") => RawAnswer {
                    status: "200 OK",
                    kind: "application/octet-stream",
                    body: "{}".to_owned(),
                    digest: None,
                },
                _ => RawAnswer {
                    status: if path == "/v2/" {
                        "200 OK"
                    } else {
                        "404 Not Found"
                    },
                    kind: "application/json",
                    body: "{}".to_owned(),
                    digest: None,
                },
            }
        })
    };
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let hoist = Hoist::new();
    let dst = format!("oci:{}:v1@{pinned_digest}", layout.display());
    hoist.ok(&["copy", &format!("{addr}/team/app:v1"), &dst]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tagged: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "v1")
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(tagged, [pinned_digest.as_str()]);
}
