//! `hoist sync` between two CNCF registries (`docker-registry`): a config with tag filters,
//! run twice, and a repository of many tags mirrored in bounded memory.

use oci_layout::LayoutStore;

use crate::cli::Hoist;
use crate::client_peers::shared_cncf;
use crate::mirror_cli::PrivateRegistry;
use crate::server_interop::{layout_image, layout_index, skopeo};
use crate::support::peer;

#[tokio::test(flavor = "multi_thread")]
async fn cncf_sync_mirrors_filtered_tags_of_several_repositories_and_then_has_nothing_to_do() {
    let (Some(skopeo_bin), Some(source)) = (peer("skopeo"), shared_cncf()) else {
        return;
    };
    let target = PrivateRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let store = LayoutStore::open(&layout).await.unwrap();
    let amd64 = layout_image(&store, "amd64", Some("img")).await;
    let arm64 = layout_image(&store, "arm64", None).await;
    layout_index(&store, &[(&amd64, "amd64"), (&arm64, "arm64")], "multi").await;
    // app: versions and a branch; tools: an index under a few tags.
    let push = |tag: &str, to: &str| {
        let target = format!("{}/sync/{to}", source.addr);
        crate::cli::skopeo_push(&skopeo_bin, &layout, tag, &target, true);
    };
    for tag in ["v1.0.0", "v1.2.0", "v2.0.0", "main"] {
        push("img", &format!("app:{tag}"));
    }
    for tag in ["1.0", "edge"] {
        push("multi", &format!("tools:{tag}"));
    }
    let config = work.path().join("mirror.yaml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  - source: {src}/sync/app\n    destination: {dst}/copy/app\n    tags:\n      semver: '>=1.1, <2'\n  - source: {src}/sync/tools\n    destination: {dst}/copy/tools\n    tags:\n      regex: '^[0-9]'\n  - source: {src}/sync/tools\n    destination: {dst}/copy/tools-amd64\n    tags:\n      regex: '^1'\n    platforms: [linux/amd64]\n",
            src = source.addr,
            dst = target.addr
        ),
    )
    .unwrap();
    let hoist = Hoist::new();
    let dry = hoist.stdout(&["sync", "--dry-run", "--config", config.to_str().unwrap()]);
    assert_eq!(dry.lines().count(), 3, "{dry}");
    assert!(dry.lines().all(|l| l.ends_with("would be copied")), "{dry}");
    let tags = |repo: &str| {
        let listed = hoist
            .command(&["ls", &format!("{}/copy/{repo}", target.addr)])
            .output()
            .unwrap();
        String::from_utf8(listed.stdout).unwrap()
    };
    assert_eq!(tags("app"), "", "the dry run copied something");

    let output = hoist.ok(&["sync", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut copied: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    copied.sort();
    assert_eq!(
        copied,
        [
            format!("{}/copy/app:v1.2.0", target.addr),
            format!("{}/copy/tools-amd64:1.0", target.addr),
            format!("{}/copy/tools:1.0", target.addr),
        ]
    );
    assert_eq!(tags("app").trim(), "v1.2.0");
    assert_eq!(tags("tools").trim(), "1.0");
    // The index arrived whole: skopeo reads every platform from the mirror.
    let raw = skopeo(
        &skopeo_bin,
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/copy/tools:1.0", target.addr),
        ],
    );
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // Again: nothing to copy, and it says so.
    let again = hoist.ok(&["sync", "--config", config.to_str().unwrap()]);
    assert!(
        again.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let said = String::from_utf8_lossy(&again.stderr);
    // The platform's image, too: what is there is compared with the source's child for it.
    assert!(
        said.contains("3 already there") && said.contains("nothing to copy"),
        "{said}"
    );
    assert_eq!(
        hoist.stdout(&["digest", &format!("{}/copy/tools-amd64:1.0", target.addr)]),
        amd64.manifest.digest.to_string()
    );
}

#[test]
fn sync_configs_with_unknown_keys_or_bad_patterns_are_refused_with_their_line() {
    let hoist = Hoist::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[sync]]\nsource = \"localhost:5000/a\"\ndestination = \"localhost:5000/b\"\n[sync.tags]\nregex = \"(\"\n",
    )
    .unwrap();
    let (code, stderr) = hoist.fails(&["sync", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("line 5") && stderr.contains("tag regex"),
        "{stderr}"
    );
    std::fs::write(
        &config,
        "[[sync]]\nsource = \"a/b\"\ndestination = \"c/d\"\nreferers = true\n",
    )
    .unwrap();
    let (code, stderr) = hoist.fails(&["sync", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("referers") && stderr.contains("line 4"),
        "{stderr}"
    );
    // A config is read through its bound, whatever the file says its size is: a FIFO says 0
    // bytes and may hold any number.
    let fifo = work.path().join("endless.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let line = vec![b'#'; 64 << 10];
            // Stops once hoist has read its fill and closed the pipe.
            for _ in 0..64 {
                if pipe.write_all(&line).is_err() {
                    break;
                }
            }
        })
    };
    let (code, stderr) = hoist.fails(&["sync", "--config", fifo.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("more than the 1048576 bytes"), "{stderr}");
    writer.join().unwrap();
    // A source that cannot be listed is a failure, reported, and the exit code says so.
    let (code, stderr) = hoist.fails(&["sync", "127.0.0.1:1/gone/app", "127.0.0.1:1/copy/app"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot list the tags of 127.0.0.1:1/gone/app"),
        "{stderr}"
    );
    assert!(stderr.contains("1 failed"), "{stderr}");
}

/// The peak resident memory of process `pid` so far, in KiB (`VmHWM`), if it is still there.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

// The measured peak is printed for the person running the test (shown with `--nocapture`).
#[allow(clippy::print_stdout)]
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_tags_are_mirrored_in_bounded_memory() {
    use futures::StreamExt;
    use oci_store::{OciInterface, OciInterfaceExt, PushManifestParams};
    use oci_types::{ImageManifest, MediaType, Repository, media_type};

    const TAGS: usize = 10_000;
    let (source, target) = (
        crate::support::ServeProcess::start(&["--memory"]),
        crate::support::ServeProcess::start(&["--memory"]),
    );
    // One small image under many tags: cheap to make, and every tag still costs the mirror its
    // listing, its checks and its copy.
    let client = oci_registry::RegistryClient::builder(&source.addr().to_string())
        .build()
        .await
        .unwrap();
    let repo: Repository = "many/tags".parse().unwrap();
    let config = client
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            "{}".into(),
        )
        .await
        .unwrap();
    let manifest = bytes::Bytes::from(ImageManifest::new(config, Vec::new()).to_json());
    let manifest_type = MediaType::from_static(media_type::OCI_MANIFEST);
    futures::stream::iter(0..TAGS)
        .map(|n| {
            let (client, repo, manifest, manifest_type) =
                (&client, &repo, &manifest, &manifest_type);
            async move {
                let params =
                    PushManifestParams::new().with_tag(format!("t{n:05}").parse().unwrap());
                client
                    .push_manifest(repo, manifest.clone(), manifest_type, &params)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;

    let hoist = Hoist::new();
    let mut sync = hoist
        .command(&[
            "sync",
            "-q",
            "--images",
            "16",
            &format!("{}/many/tags", source.addr()),
            &format!("{}/many/tags", target.addr()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(sync.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = sync.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "hoist sync failed: {status}");
    let target_client = oci_registry::RegistryClient::builder(&target.addr().to_string())
        .build()
        .await
        .unwrap();
    let mirrored = target_client
        .tags(&repo, &oci_store::ListParams::default())
        .fold(0usize, |n, tag| {
            tag.unwrap();
            std::future::ready(n + 1)
        })
        .await;
    assert_eq!(mirrored, TAGS);
    println!("hoist sync of {TAGS} tags: peak RSS {} MiB", peak / 1024);
    assert!(peak > 0, "the sync's memory was never read");
    assert!(
        peak < 96 * 1024,
        "hoist sync of {TAGS} tags peaked at {peak} KiB"
    );
}
