//! Artifacts from the command line: `hoist artifact push` and `pull`, `hoist attach` and
//! `hoist referrers --tree`, against the CNCF registry (`docker-registry`) and `hoist serve`,
//! and side by side with oras, the reference client for artifacts, both ways.

use std::path::Path;
use std::process::Command;

use crate::cli::Hoist;
use crate::client_peers::shared_cncf;
use crate::support::{ServeProcess, peer};

/// Pushes two files, pulls them back, attaches an SBOM and a signature of the SBOM, and reads
/// the tree of referrers, all through the registry at `addr`.
fn round_trip(addr: &str) {
    let work = tempfile::tempdir().unwrap();
    let (readme, data) = (work.path().join("README.md"), work.path().join("data.json"));
    std::fs::write(&readme, "# notes\n").unwrap();
    std::fs::write(&data, "{\"a\":1}").unwrap();
    let hoist = Hoist::new();
    let reference = format!("{addr}/cli/files:v1");
    let pushed = hoist.stdout(&[
        "artifact",
        "push",
        "--artifact-type",
        "application/vnd.example.notes",
        "-a",
        "org.example.owner=team",
        &reference,
        readme.to_str().unwrap(),
        &format!("{}:application/json", data.display()),
    ]);
    let manifest: serde_json::Value =
        serde_json::from_str(&hoist.stdout(&["manifest", &reference])).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.example.notes");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(manifest["annotations"]["org.example.owner"], "team");
    assert_eq!(
        manifest["layers"][1]["annotations"]["org.opencontainers.image.title"],
        "data.json"
    );
    assert_eq!(manifest["layers"][1]["mediaType"], "application/json");
    assert_eq!(hoist.stdout(&["digest", &reference]), pushed);

    let out = work.path().join("out");
    let listed = hoist.stdout(&["artifact", "pull", &reference, out.to_str().unwrap()]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(std::fs::read(out.join("README.md")).unwrap(), b"# notes\n");
    assert_eq!(std::fs::read(out.join("data.json")).unwrap(), b"{\"a\":1}");

    let sbom = hoist.stdout(&[
        "attach",
        "--artifact-type",
        "application/spdx+json",
        &reference,
        data.to_str().unwrap(),
    ]);
    let signature = hoist.stdout(&[
        "attach",
        "--artifact-type",
        "application/vnd.example.signature",
        &format!("{addr}/cli/files@{sbom}"),
        readme.to_str().unwrap(),
    ]);
    let tree = hoist.stdout(&["referrers", "--tree", &reference]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 3, "{tree}");
    assert_eq!(lines[0], pushed);
    assert!(
        lines[1].starts_with(&format!("  {sbom}\tapplication/spdx+json\t")),
        "{tree}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "    {signature}\tapplication/vnd.example.signature\t"
        )),
        "{tree}"
    );
}

#[test]
fn cncf_artifacts_push_pull_attach_and_list_as_a_tree() {
    let Some(registry) = shared_cncf() else {
        return;
    };
    round_trip(&registry.addr.to_string());
}

#[test]
fn artifacts_push_pull_attach_and_list_as_a_tree_on_hoist_serve() {
    let serve = ServeProcess::start(&["--memory"]);
    round_trip(&serve.addr().to_string());
}

#[test]
fn an_artifact_is_not_pushed_to_a_digest_nor_attached_without_a_type() {
    let hoist = Hoist::new();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let layout = format!("oci:{}", work.path().join("layout").display());
    let (code, stderr) = hoist.fails(&[
        "artifact",
        "push",
        &format!("{layout}@sha256:{}", "0".repeat(64)),
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    let (code, stderr) = hoist.fails(&["attach", &format!("{layout}:v1"), file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--artifact-type"), "{stderr}");
}

/// `oras ARGS` in `dir` (oras takes file names relative to where it runs), which must succeed;
/// its stdout.
fn oras(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let output = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oras {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// oras and hoist read each other's artifacts and attachments through the registry at `addr`.
fn with_oras(oras_bin: &Path, addr: &str) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("notes.txt"), "from oras\n").unwrap();
    std::fs::write(dir.join("data.bin"), vec![7u8; 100_000]).unwrap();
    let hoist = Hoist::new();

    // oras push, hoist artifact pull.
    let by_oras = format!("{addr}/interop/by-oras:v1");
    oras(
        oras_bin,
        dir,
        &[
            "push",
            "--plain-http",
            "--artifact-type",
            "application/vnd.example.oras",
            &by_oras,
            "notes.txt:text/plain",
            "data.bin",
        ],
    );
    let out = dir.join("hoist-out");
    hoist.ok(&["artifact", "pull", &by_oras, out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"from oras\n"
    );
    assert_eq!(
        std::fs::read(out.join("data.bin")).unwrap(),
        vec![7u8; 100_000]
    );

    // hoist artifact push, oras pull.
    let by_hoist = format!("{addr}/interop/by-hoist:v1");
    std::fs::write(dir.join("report.json"), "{\"ok\":true}").unwrap();
    let pushed = hoist.stdout(&[
        "artifact",
        "push",
        &by_hoist,
        &format!("{}:application/json", dir.join("report.json").display()),
    ]);
    let oras_out = dir.join("oras-out");
    std::fs::create_dir_all(&oras_out).unwrap();
    oras(oras_bin, &oras_out, &["pull", "--plain-http", &by_hoist]);
    assert_eq!(
        std::fs::read(oras_out.join("report.json")).unwrap(),
        b"{\"ok\":true}"
    );

    // hoist attach, oras discover; oras attach, hoist referrers.
    let attached = hoist.stdout(&[
        "attach",
        "--artifact-type",
        "application/spdx+json",
        &by_hoist,
        dir.join("notes.txt").to_str().unwrap(),
    ]);
    let found: serde_json::Value = serde_json::from_str(&oras(
        oras_bin,
        dir,
        &["discover", "--plain-http", "--format", "json", &by_hoist],
    ))
    .unwrap();
    let manifests = found["manifests"].as_array().unwrap();
    assert!(
        manifests
            .iter()
            .any(|m| m["digest"] == attached.as_str()
                && m["artifactType"] == "application/spdx+json"),
        "{found}"
    );
    oras(
        oras_bin,
        dir,
        &[
            "attach",
            "--plain-http",
            "--artifact-type",
            "application/vnd.example.signature",
            &format!("{addr}/interop/by-hoist@{pushed}"),
            "notes.txt",
        ],
    );
    let listed = hoist.stdout(&["referrers", &by_hoist]);
    assert!(
        listed.contains("\tapplication/vnd.example.signature\t"),
        "{listed}"
    );
    assert!(listed.contains(&attached), "{listed}");
}

#[test]
fn cncf_oras_and_hoist_read_each_others_artifacts() {
    let (Some(oras_bin), Some(registry)) = (peer("oras"), shared_cncf()) else {
        return;
    };
    with_oras(&oras_bin, &registry.addr.to_string());
}

#[test]
fn oras_and_hoist_read_each_others_artifacts_through_hoist_serve() {
    let Some(oras_bin) = peer("oras") else {
        return;
    };
    let serve = ServeProcess::start(&["--memory"]);
    with_oras(&oras_bin, &serve.addr().to_string());
}
