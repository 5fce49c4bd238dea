//! `hoist sync` between two CNCF registries (`docker-registry`): a config with tag filters,
//! run twice, and a repository of many tags mirrored in bounded memory.

use oci_layout::LayoutStore;

use crate::cli::Hoist;
use crate::client_peers::shared_cncf;
use crate::mirror_cli::PrivateRegistry;
use crate::server_interop::{layout_image, layout_index, oci_ref, skopeo};
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
        skopeo(
            &skopeo_bin,
            &[
                "copy",
                "-q",
                "--all",
                "--dest-tls-verify=false",
                &oci_ref(&layout, tag),
                &format!("docker://{}/sync/{to}", source.addr),
            ],
        );
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
            "sync:\n  - source: {src}/sync/app\n    destination: {dst}/copy/app\n    tags:\n      semver: '>=1.1, <2'\n  - source: {src}/sync/tools\n    destination: {dst}/copy/tools\n    tags:\n      regex: '^[0-9]'\n",
            src = source.addr,
            dst = target.addr
        ),
    )
    .unwrap();
    let hoist = Hoist::new();
    let dry = hoist.stdout(&["sync", "--dry-run", "--config", config.to_str().unwrap()]);
    assert_eq!(dry.lines().count(), 2, "{dry}");
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
    assert!(
        said.contains("2 already there") && said.contains("nothing to copy"),
        "{said}"
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
}
