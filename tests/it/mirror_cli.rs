//! Mirroring from the command line: `hoist copy --all-tags` between a layout and the CNCF
//! registry (`docker-registry`) and between its repositories, read back by skopeo.

use crate::cli::Hoist;
use crate::client_peers::shared_cncf;
use crate::server_interop::{layout_image, layout_index, oci_ref, skopeo};
use crate::support::peer;
use oci_layout::LayoutStore;

/// The lines `copy --all-tags` prints on stdout, `TAG DIGEST copied|unchanged`, sorted.
fn lines(stdout: &str) -> Vec<(String, String, String)> {
    let mut lines: Vec<_> = stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 3, "{line:?}");
            (
                fields[0].to_owned(),
                fields[1].to_owned(),
                fields[2].to_owned(),
            )
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
    let expected = |which: [&str; 3]| {
        let mut all = vec![
            (
                "amd64".to_owned(),
                amd64.manifest.digest.to_string(),
                which[0].to_owned(),
            ),
            (
                "arm64".to_owned(),
                arm64.manifest.digest.to_string(),
                which[1].to_owned(),
            ),
            (
                "multi".to_owned(),
                index.manifest.digest.to_string(),
                which[2].to_owned(),
            ),
        ];
        all.sort();
        all
    };

    // A layout's tags into a repository, then that repository into another.
    let first = hoist.stdout(&["copy", "--all-tags", &layout, &src_repo]);
    assert_eq!(lines(&first), expected(["copied"; 3]));
    let mirrored = hoist.stdout(&["copy", "--all-tags", &src_repo, &dst_repo]);
    assert_eq!(lines(&mirrored), expected(["copied"; 3]));
    // Again: nothing to do, and nothing read but the tags.
    let again = hoist.stdout(&["copy", "--all-tags", &src_repo, &dst_repo]);
    assert_eq!(lines(&again), expected(["unchanged"; 3]));

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
    let moved = lines(&hoist.stdout(&["copy", "--all-tags", &src_repo, &dst_repo]));
    assert_eq!(
        moved[0],
        (
            "amd64".to_owned(),
            arm64.manifest.digest.to_string(),
            "copied".to_owned()
        )
    );
    assert!(
        moved[1..].iter().all(|(_, _, what)| what == "unchanged"),
        "{moved:?}"
    );
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
