//! Mirroring from the command line: `hoist copy --all-tags` between a layout and the CNCF
//! registry (`docker-registry`) and between its repositories, read back by skopeo; `hoist serve
//! --mirror` as a pull-through cache of a `docker-registry`.

use crate::cli::Hoist;
use crate::client_peers::shared_cncf;
use crate::server_interop::{layout_image, layout_index, oci_ref, skopeo};
use crate::support::peer;
use oci_layout::LayoutStore;
use oci_store::{OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{ImageManifest, MediaType, media_type};

/// The lines `copy --all-tags` prints on stdout, `REPO:TAG DIGEST copied`, as (tag, digest),
/// sorted.
fn copied(stdout: &str) -> Vec<(String, String)> {
    let mut lines: Vec<_> = stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 3, "{line:?}");
            assert_eq!(fields[2], "copied", "{line:?}");
            let tag = fields[0].rsplit_once(':').unwrap().1;
            (tag.to_owned(), fields[1].to_owned())
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn cncf_copy_all_tags_mirrors_a_repository_and_skips_what_is_unchanged() {
    let (Some(skopeo_bin), Some(registry)) = (peer("skopeo"), shared_cncf()) else {
        return;
    };
    let addr = registry.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let store = LayoutStore::open(&source).await.unwrap();
    let amd64 = layout_image(&store, "amd64", Some("amd64")).await;
    let arm64 = layout_image(&store, "arm64", Some("arm64")).await;
    let index = layout_index(&store, &[(&amd64, "amd64"), (&arm64, "arm64")], "multi").await;
    let (src_repo, dst_repo) = (
        format!("{addr}/mirror/source"),
        format!("{addr}/mirror/copy"),
    );
    let hoist = Hoist::new();
    let layout = format!("oci:{}", source.display());
    let all = vec![
        ("amd64".to_owned(), amd64.manifest.digest.to_string()),
        ("arm64".to_owned(), arm64.manifest.digest.to_string()),
        ("multi".to_owned(), index.manifest.digest.to_string()),
    ];

    // A layout's tags into a repository, then that repository into another.
    let first = hoist.stdout(&["copy", "--all-tags", &layout, &src_repo]);
    assert_eq!(copied(&first), all);
    let mirrored = hoist.stdout(&["copy", "--all-tags", &src_repo, &dst_repo]);
    assert_eq!(copied(&mirrored), all);
    // Again: nothing to do, and nothing read but the tags; it says so.
    let again = hoist.ok(&["copy", "--all-tags", &src_repo, &dst_repo]);
    assert!(
        again.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("3 already there"), "{said}");

    // A moved tag is the only one copied; skopeo sees the mirror as the source.
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci_ref(&source, "arm64"),
            &format!("docker://{src_repo}:amd64"),
        ],
    );
    let moved = hoist.ok(&["copy", "--all-tags", &src_repo, &dst_repo]);
    assert_eq!(
        copied(&String::from_utf8(moved.stdout).unwrap()),
        [("amd64".to_owned(), arm64.manifest.digest.to_string())]
    );
    assert!(String::from_utf8_lossy(&moved.stderr).contains("2 already there"));
    for (tag, bytes) in [
        ("amd64", &arm64.manifest_bytes),
        ("multi", &index.manifest_bytes),
    ] {
        let raw = skopeo(
            &skopeo_bin,
            &[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{dst_repo}:{tag}"),
            ],
        );
        assert_eq!(raw.stdout, bytes.to_vec(), "{tag} in the mirror");
    }

    // Whole repositories only.
    let (code, stderr) = hoist.fails(&[
        "copy",
        "--all-tags",
        &format!("{src_repo}:amd64"),
        &dst_repo,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without a tag"), "{stderr}");
}

/// A `docker-registry` of a test's own (the shared one cannot be stopped), with its access log.
pub(crate) struct PrivateRegistry {
    dir: tempfile::TempDir,
    pub(crate) addr: std::net::SocketAddr,
}

impl PrivateRegistry {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::support::free_addr();
        let output = std::process::Command::new("bash")
            .arg(crate::support::workspace_root().join("tests/peers/start-registry.sh"))
            .env("REGISTRY_DIR", dir.path())
            .env("REGISTRY_ADDR", addr.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "start-registry.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir, addr }
    }

    fn stop(&self) {
        let output = std::process::Command::new("bash")
            .arg(crate::support::workspace_root().join("tests/peers/stop-registry.sh"))
            .env("REGISTRY_DIR", self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success());
    }

    /// How many times the access log shows a GET of `path`.
    fn gets(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap();
        let wanted = format!("\"GET {path} ");
        log.lines().filter(|line| line.contains(&wanted)).count()
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cncf_hoist_serve_mirror_fetches_each_blob_once_and_serves_while_upstream_is_down() {
    let (Some(skopeo_bin), Some(_)) = (peer("skopeo"), peer("docker-registry")) else {
        return;
    };
    let upstream = PrivateRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let store = LayoutStore::open(&source).await.unwrap();
    let amd64 = layout_image(&store, "amd64", Some("v1")).await;
    let arm64 = layout_image(&store, "arm64", None).await;
    let index = layout_index(&store, &[(&amd64, "amd64"), (&arm64, "arm64")], "multi").await;
    for tag in ["v1", "multi"] {
        let target = format!("{}/mirror/app:{tag}", upstream.addr);
        crate::cli::skopeo_push(&skopeo_bin, &source, tag, &target, true);
    }
    let serve = crate::support::ServeProcess::start(&[
        "--memory",
        "--mirror",
        &format!("http://{}", upstream.addr),
        "--mirror-tag-ttl",
        "0",
    ]);
    let mirror = format!("{}/mirror/app", serve.addr());

    // Four pulls at once through the mirror: each blob fetched from upstream once.
    let pulls: Vec<_> = (0..4)
        .map(|n| {
            let (mirror, out) = (mirror.clone(), work.path().join(format!("pull-{n}")));
            std::thread::spawn(move || {
                let hoist = Hoist::new();
                hoist.stdout(&["copy", &format!("{mirror}:v1"), &oci_ref(&out, "v1")])
            })
        })
        .collect();
    for pull in pulls {
        assert_eq!(pull.join().unwrap(), amd64.manifest.digest.to_string());
    }
    let manifest: serde_json::Value = serde_json::from_slice(&amd64.manifest_bytes).unwrap();
    let blobs = [
        manifest["config"]["digest"].as_str().unwrap(),
        manifest["layers"][0]["digest"].as_str().unwrap(),
    ];
    for blob in blobs {
        assert_eq!(
            upstream.gets(&format!("/v2/mirror/app/blobs/{blob}")),
            1,
            "GETs of {blob} upstream"
        );
    }
    // A multi-platform index through the mirror, as skopeo pulls it.
    let by_skopeo = work.path().join("skopeo");
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{mirror}:multi"),
            &oci_ref(&by_skopeo, "multi"),
        ],
    );
    assert_eq!(
        crate::server_interop::layout_tag_digest(&by_skopeo, "multi"),
        index.manifest.digest
    );

    // Pushes are refused: the mirror is no place to write.
    let (_, stderr) = Hoist::new().fails(&[
        "copy",
        &oci_ref(&source, "v1"),
        &format!("{}/mirror/pushed:v1", serve.addr()),
    ]);
    assert!(
        stderr.contains("405")
            || stderr.to_lowercase().contains("unsupported")
            || stderr.to_lowercase().contains("not allowed"),
        "{stderr}"
    );

    // Upstream gone: the same pulls are served from what the mirror kept.
    upstream.stop();
    let hoist = Hoist::new();
    for (tag, digest) in [
        ("v1", &amd64.manifest.digest),
        ("multi", &index.manifest.digest),
    ] {
        let out = work.path().join(format!("offline-{tag}"));
        let pulled = hoist.stdout(&["copy", &format!("{mirror}:{tag}"), &oci_ref(&out, tag)]);
        assert_eq!(pulled, digest.to_string(), "{tag} with upstream down");
    }
}

#[test]
fn a_mirror_whose_upstream_refuses_its_credentials_answers_with_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let users = crate::cli::htpasswd(work.path(), "alice", "secret");
    let upstream =
        crate::support::ServeProcess::start(&["--memory", "--htpasswd", users.to_str().unwrap()]);
    let serve = crate::support::ServeProcess::start(&[
        "--memory",
        "--mirror",
        &format!("http://{}", upstream.addr()),
    ]);
    let hoist = Hoist::new();
    let (code, stderr) = hoist.fails(&[
        "copy",
        &format!("{}/team/app:v1", serve.addr()),
        &oci_ref(&work.path().join("out"), "v1"),
    ]);
    assert_ne!(code, 0);
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized") || lower.contains("denied"),
        "{stderr}"
    );
    // It names the upstream that refused, not only the mirror.
    assert!(stderr.contains(&upstream.addr().to_string()), "{stderr}");
    // The mirror is still there and answers the next request the same way.
    let (code, again) = hoist.fails(&["digest", &format!("{}/team/app:v1", serve.addr())]);
    assert_ne!(code, 0);
    assert!(
        again.to_lowercase().contains("401") || again.to_lowercase().contains("unauthorized"),
        "{again}"
    );
}

/// A blob that upstream sends slowly, through a mirror whose idle timeout is shorter than the
/// whole fetch: the mirror passes on what upstream sends as it comes, so the pull completes
/// (a mirror that said nothing until it had all of it would be cut by its own idle timeout,
/// and every retry would start the fetch again), fetches the blob once, and keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_streams_a_slow_upstream_blob_as_it_comes_and_keeps_it() {
    use crate::fault_proxy::{Fault, Proxy, Rule};
    use std::time::{Duration, Instant};

    let work = tempfile::tempdir().unwrap();
    let upstream = crate::support::ServeProcess::start(&["--memory"]);
    let source = work.path().join("source");
    let store = LayoutStore::open(&source).await.unwrap();
    let repo = crate::server_interop::layout_repo();
    // 4 MiB of incompressible bytes: nothing on the way decompresses a layer.
    let layer = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            oci_store::conformance::seeded_bytes(21, 4 << 20),
        )
        .await
        .unwrap();
    let config = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let manifest = store
        .push_manifest(
            &repo,
            ImageManifest::new(config, vec![layer.clone()])
                .to_json()
                .into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
    let pushed = format!("{}/slow/app:v1", upstream.addr());
    Hoist::new().ok(&["copy", &oci_ref(&source, "v1"), &pushed]);

    // 64 KiB every 50 ms: about 3.2 s for the layer, every time it is asked for.
    let proxy = Proxy::start(upstream.addr()).await;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", layer.digest),
        10,
        Fault::Throttle(64 << 10, Duration::from_millis(50)),
    ));
    let serve = crate::support::ServeProcess::start(&[
        "--memory",
        "--mirror",
        &format!("http://{}", proxy.host()),
        "--idle-timeout",
        "1",
    ]);
    let mirrored = format!("{}/slow/app:v1", serve.addr());
    let pull = |out: std::path::PathBuf| {
        let mirrored = mirrored.clone();
        tokio::task::spawn_blocking(move || {
            Hoist::new().stdout(&["copy", &mirrored, &oci_ref(&out, "v1")])
        })
    };
    let started = Instant::now();
    let pulled = pull(work.path().join("first")).await.unwrap();
    assert_eq!(pulled, manifest.digest.to_string());
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the layer came slowly: {:?}",
        started.elapsed()
    );
    let fetches = proxy
        .log()
        .iter()
        .filter(|seen| seen.method == "GET" && seen.path().ends_with(layer.digest.as_str()))
        .count();
    assert_eq!(fetches, 1, "{:#?}", proxy.log());

    // Upstream gone: the mirror kept what it passed on.
    drop(upstream);
    let again = pull(work.path().join("again")).await.unwrap();
    assert_eq!(again, manifest.digest.to_string());
}
