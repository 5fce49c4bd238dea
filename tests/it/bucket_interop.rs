//! The object-storage backend against a real S3-compatible server: moto's `moto_server`,
//! installed by `tests/peers/install.sh` into `$HOIST_PEERS_DIR/moto-venv` (default
//! `/opt/hoist-peers/moto-venv`). The conformance suite through `oci-bucket` on moto, an
//! upload started by one store and finished by another over the same bucket, and skopeo
//! pushing and pulling through `hoist serve --storage s3://...`.
//!
//! Locally these skip when moto is not installed; on CI (`CI=true`) that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oci_bucket::BucketStore;
use oci_layout::LayoutStore;
use oci_store::OciInterface;
use oci_store::conformance::{Fixture, seeded_bytes};
use oci_types::{Digest, Repository};

use crate::server_interop::{layout_image, layout_index, layout_tag_digest, oci_ref, skopeo};
use crate::support::{free_addr, hoist_binary, peer};

/// moto's server program, from the venv the install script makes, else from `PATH`.
pub(crate) fn moto_server() -> Option<PathBuf> {
    let dir = std::env::var_os("HOIST_PEERS_DIR")
        .map_or_else(|| "/opt/hoist-peers".into(), PathBuf::from);
    let venv = dir.join("moto-venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    peer("moto_server")
}

/// A `moto_server` on a free loopback port, killed on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Moto {
    pub(crate) fn start(program: &Path) -> Self {
        Self::spawn(Command::new(program), program)
    }

    /// A moto that outlives no test process: a static is never dropped, so a shell beside it
    /// stops it once this process is gone.
    fn start_watched(program: &Path) -> Self {
        let mut shell = Command::new("bash");
        shell.args([
            "-c",
            r#"program="$1"; shift; "$program" "$@" & moto=$!
               while kill -0 "$WATCHED" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 1; done
               kill "$moto" 2>/dev/null"#,
            "watch-moto",
        ]);
        shell
            .arg(program)
            .env("WATCHED", std::process::id().to_string());
        Self::spawn(shell, program)
    }

    pub(crate) fn spawn(mut command: Command, program: &Path) -> Self {
        let addr = free_addr();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let moto = Self {
            child,
            endpoint: format!("http://{addr}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Creates a bucket (moto starts empty).
    pub(crate) fn bucket(&self, name: &str) {
        let url = format!("{}/{name}", self.endpoint);
        let curl = peer("curl").expect("curl, installed with the peers");
        crate::support::run(&curl, ["-sf", "-X", "PUT", url.as_str()]);
    }

    pub(crate) fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", "hoist".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "hoist".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    pub(crate) async fn store(&self, bucket: &str, prefix: &str) -> BucketStore {
        let env = self.env();
        let options = [
            ("aws_endpoint", env[0].1.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "hoist"),
            ("aws_secret_access_key", "hoist"),
            ("aws_region", "us-east-1"),
        ];
        oci_bucket::open_url_with(&format!("s3://{bucket}/{prefix}"), options)
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One moto for the conformance checks of this binary (starting one per check would take
/// minutes); each check gets a prefix of its own. It lives until the test process ends.
pub(crate) fn shared_moto() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| {
        let program = moto_server()?;
        let moto = Moto::start_watched(&program);
        moto.bucket("conformance");
        Some(moto)
    })
    .as_ref()
}

static PREFIX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn on_moto() -> Option<Fixture> {
    let moto = shared_moto()?;
    let n = PREFIX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(Fixture::new(
        moto.store("conformance", &format!("check-{n}")).await,
    ))
}

/// The conformance checks over moto, one test each; a check skips (printing why) without moto.
mod conformance_on_moto {
    oci_store::conformance_tests!(optional super::on_moto);
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_multipart_upload_started_by_one_store_is_finished_by_another() {
    let Some(moto) = shared_moto() else { return };
    let first = moto.store("conformance", "replicas").await;
    let second = moto.store("conformance", "replicas").await;
    let repo: Repository = "team/app".parse().unwrap();
    // Two and a half parts of 8 MiB: two multipart parts, a tail kept in the bucket.
    let content = seeded_bytes(3, 20 * 1024 * 1024 + 5);
    let mut writer = first.push_blob_chunked(&repo, None).await.unwrap();
    for piece in content.slice(..12 * 1024 * 1024).chunks(1024 * 1024) {
        writer
            .write(bytes::Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    let mut resumed = second
        .push_blob_chunked_resume(&repo, &id, Some(12 * 1024 * 1024), None)
        .await
        .unwrap();
    resumed
        .write(content.slice(12 * 1024 * 1024..))
        .await
        .unwrap();
    let digest = Digest::sha256(&content);
    resumed.commit(&digest).await.unwrap();
    let read = oci_store::OciInterfaceExt::get_blob_bytes(&first, &repo, &digest, u64::MAX)
        .await
        .unwrap();
    assert!(read == content, "the blob read back differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_content_above_the_copy_limit_is_streamed_into_place() {
    let Some(moto) = shared_moto() else { return };
    // S3's limit is 5 GiB; a limit of 1 MiB takes the same path with 6 MiB, in parts of 5 MiB.
    let store = moto
        .store("conformance", "copy-limit")
        .await
        .with_part_size(5 * 1024 * 1024)
        .with_copy_limit(1024 * 1024);
    let repo: Repository = "team/app".parse().unwrap();
    let content = seeded_bytes(4, 6 * 1024 * 1024 + 7);
    let kind = oci_types::MediaType::from_static(oci_types::media_type::OCI_LAYER_TAR);
    let pushed = oci_store::OciInterfaceExt::push_blob_bytes(&store, &repo, kind, content.clone())
        .await
        .unwrap();
    let mut writer = store.push_blob_chunked(&repo, None).await.unwrap();
    let chunked = seeded_bytes(5, 6 * 1024 * 1024 + 11);
    for piece in chunked.chunks(2 * 1024 * 1024) {
        writer
            .write(bytes::Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    writer.commit(&Digest::sha256(&chunked)).await.unwrap();
    for (digest, expected) in [
        (&pushed.digest, &content),
        (&Digest::sha256(&chunked), &chunked),
    ] {
        let read = oci_store::OciInterfaceExt::get_blob_bytes(&store, &repo, digest, u64::MAX)
            .await
            .unwrap();
        assert!(read == *expected, "{digest} read back differs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_a_missing_bucket_is_a_clear_start_up_error() {
    let Some(moto) = shared_moto() else { return };
    let options = [
        ("aws_endpoint", moto.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "hoist"),
        ("aws_secret_access_key", "hoist"),
        ("aws_region", "us-east-1"),
    ];
    let error = oci_bucket::open_url_with("s3://no-such-bucket/x", options)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("the bucket does not exist"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_skopeo_pushes_and_pulls_through_hoist_serve_on_s3() {
    let Some(program) = moto_server() else { return };
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    // A moto of its own, killed when the test ends.
    let moto = Moto::start(&program);
    moto.bucket("registry");
    let tmp = tempfile::tempdir().unwrap();
    let (source, out) = (tmp.path().join("source"), tmp.path().join("out"));
    let store = LayoutStore::open(&source).await.unwrap();
    let single = layout_image(&store, "s390x", Some("v1")).await;
    let amd64 = layout_image(&store, "amd64", None).await;
    let arm64 = layout_image(&store, "arm64", None).await;
    let index = layout_index(&store, &[(&amd64, "amd64"), (&arm64, "arm64")], "multi").await;

    let serve = crate::bucket_replicas::Replica::start(&moto, "s3://registry/hoist", &[], false);
    let registry = |tag: &str| format!("docker://{}/team/app:{tag}", serve.addr);
    for tag in ["v1", "multi"] {
        skopeo(
            &skopeo_bin,
            &[
                "copy",
                "-q",
                "--all",
                "--dest-tls-verify=false",
                &oci_ref(&source, tag),
                &registry(tag),
            ],
        );
    }
    // What is in the bucket, read by another store: the same digests.
    let bucket = moto.store("registry", "hoist").await;
    let repo: Repository = "team/app".parse().unwrap();
    for (tag, ours) in [
        ("v1", &single.manifest.digest),
        ("multi", &index.manifest.digest),
    ] {
        let stored = bucket
            .resolve_tag(&repo, &tag.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(&stored.digest, ours, "{tag} as stored in the bucket");
    }
    for (tag, ours) in [
        ("v1", &single.manifest.digest),
        ("multi", &index.manifest.digest),
    ] {
        skopeo(
            &skopeo_bin,
            &[
                "copy",
                "-q",
                "--all",
                "--src-tls-verify=false",
                &registry(tag),
                &oci_ref(&out, tag),
            ],
        );
        assert_eq!(
            &layout_tag_digest(&out, tag),
            ours,
            "{tag} pulled back through hoist serve"
        );
    }
}

/// Runs `hoist serve --storage URL` on `moto` until it exits (for one that must refuse to start).
pub(crate) fn serve_until_exit(moto: &Moto, url: &str) -> std::process::Output {
    Command::new(hoist_binary())
        .args([
            "serve",
            "--storage",
            url,
            "--addr",
            &free_addr().to_string(),
        ])
        .envs(moto.env())
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap()
}

#[test]
fn moto_hoist_serve_refuses_to_start_on_a_missing_bucket() {
    let Some(program) = moto_server() else { return };
    let moto = Moto::start(&program);
    let output = serve_until_exit(&moto, "s3://missing/x");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "hoist serve started on a missing bucket"
    );
    assert!(stderr.contains("the bucket does not exist"), "{stderr}");
}
