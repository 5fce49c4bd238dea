//! `docker-daemon:NAME:TAG` against real daemons (Docker 20.10, Docker 26.1, podman 4.3; see
//! [`crate::daemons`]): images loaded with the right config digest, an index loading the
//! daemon's own platform, an image the daemon has only tagged, images the daemon built saved
//! out into layouts that skopeo and umoci read, and a corrupt image refused with the
//! daemon's own words.

use std::process::Output;

use serde_json::Value;

use crate::build_interop::{EPOCH, Work, hoist, raw_manifest, unpack};
use crate::cli::Hoist;
use crate::daemons::{Daemon, Engine};
use crate::support::peer;

/// `hoist ARGS` with `DOCKER_HOST` set to the daemon's socket.
fn hoist_with(hoist: &Hoist, daemon: &Daemon, args: &[&str]) -> Output {
    hoist
        .command(args)
        .env("DOCKER_HOST", daemon.host())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap()
}

fn ok(output: &Output, what: &str) -> (String, String) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The config digest of `oci:DIR:TAG`, read by hoist.
fn config_of(hoist: &Hoist, reference: &str) -> String {
    let inspected: Value =
        serde_json::from_str(&hoist.stdout(&["inspect", "--json", reference])).unwrap();
    inspected["config"]["digest"].as_str().unwrap().to_owned()
}

/// Builds a small image for `arch` into `oci:WORK/NAME:v1`.
fn small_image(hoist: &Hoist, work: &Work, name: &str, arch: &str) -> String {
    work.file(
        &format!("{name}-tree/hello"),
        format!("hello from {name}").as_bytes(),
        0o644,
    );
    hoist!(
        hoist,
        "build --platform linux/{arch} --label built.by=hoist --layer {} {}",
        work.at(&format!("{name}-tree")),
        work.oci(name, "v1")
    );
    config_of(hoist, &work.oci(name, "v1"))
}

fn loads_with_its_config_digest_and_is_tagged_when_present(engine: Engine) {
    let Some(daemon) = Daemon::start(engine) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let config = small_image(&hoist, &work, "app", "amd64");
    let (digest, stderr) = ok(
        &hoist_with(
            &hoist,
            &daemon,
            &[
                "copy",
                &work.oci("app", "v1"),
                "docker-daemon:example/app:v1",
            ],
        ),
        "load",
    );
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(stderr.contains("loaded example/app:v1"), "{stderr}");
    assert_eq!(
        daemon.image_id("example/app:v1"),
        config,
        "{}",
        engine.name()
    );
    let label = daemon.docker_text([
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"built.by\"}}",
        "example/app:v1",
    ]);
    assert_eq!(label, "hoist");
    // The daemon has the image now: a second name costs a tag, not a load.
    let (again, stderr) = ok(
        &hoist_with(
            &hoist,
            &daemon,
            &[
                "copy",
                &work.oci("app", "v1"),
                "docker-daemon:example/app:second",
            ],
        ),
        "tag",
    );
    assert_eq!(again, digest);
    assert!(stderr.contains("already has image"), "{stderr}");
    assert_eq!(daemon.image_id("example/app:second"), config);
}

#[test]
fn docker20_loads_an_image_with_its_config_digest() {
    loads_with_its_config_digest_and_is_tagged_when_present(Engine::Docker20);
}

#[test]
fn docker26_loads_an_image_with_its_config_digest() {
    loads_with_its_config_digest_and_is_tagged_when_present(Engine::Docker26);
}

#[test]
fn podman_loads_an_image_with_its_config_digest() {
    loads_with_its_config_digest_and_is_tagged_when_present(Engine::Podman);
}

#[test]
fn an_index_loads_the_daemons_own_platform() {
    let Some(daemon) = Daemon::start(Engine::Docker20) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let amd = small_image(&hoist, &work, "amd", "amd64");
    let arm = small_image(&hoist, &work, "arm", "arm64");
    hoist!(
        &hoist,
        "index create {} {} {}",
        work.oci("index", "v1"),
        work.oci("amd", "v1"),
        work.oci("arm", "v1")
    );
    let (_, stderr) = ok(
        &hoist_with(
            &hoist,
            &daemon,
            &[
                "copy",
                &work.oci("index", "v1"),
                "docker-daemon:example/multi:v1",
            ],
        ),
        "load of an index",
    );
    assert!(
        stderr.contains("is an index") && stderr.contains("linux/amd64"),
        "{stderr}"
    );
    let loaded = daemon.image_id("example/multi:v1");
    assert_eq!(
        loaded, amd,
        "the daemon's platform (linux/amd64), not arm64's {arm}"
    );
}

fn saved_images_become_layouts_skopeo_and_umoci_read(engine: Engine) {
    let (Some(skopeo_bin), Some(umoci)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let Some(daemon) = Daemon::start(engine) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let id = daemon.build_scratch_image("example/built:v1", b"built by the daemon\n");
    let (digest, _) = ok(
        &hoist_with(
            &hoist,
            &daemon,
            &[
                "copy",
                "docker-daemon:example/built:v1",
                &work.oci("saved", "v1"),
            ],
        ),
        "save",
    );
    assert!(digest.starts_with("sha256:"), "{digest}");
    let manifest = raw_manifest(&skopeo_bin, &work.oci("saved", "v1"));
    assert_eq!(manifest["config"]["digest"], id.as_str(), "{manifest}");
    let inspected = crate::build_interop::skopeo_json(
        &skopeo_bin,
        &format!("inspect {}", work.oci("saved", "v1")),
    );
    assert_eq!(inspected["Architecture"], "amd64", "{inspected}");
    let tree = unpack(&umoci, &work, "saved", "v1", "bundle");
    assert!(
        tree.nodes.contains_key("hello.txt"),
        "{:?}",
        tree.nodes.keys()
    );
    let hello = std::fs::read(work.path("bundle/rootfs/hello.txt")).unwrap();
    assert_eq!(hello, b"built by the daemon\n");
}

#[test]
fn docker20_saves_a_built_image_that_skopeo_and_umoci_read() {
    saved_images_become_layouts_skopeo_and_umoci_read(Engine::Docker20);
}

#[test]
fn docker26_saves_a_built_image_that_skopeo_and_umoci_read() {
    saved_images_become_layouts_skopeo_and_umoci_read(Engine::Docker26);
}

#[test]
fn podman_saves_a_built_image_that_skopeo_and_umoci_read() {
    saved_images_become_layouts_skopeo_and_umoci_read(Engine::Podman);
}

/// A corrupt image (its one layer is not a tar at all, though its digest and diff_id are
/// right, so hoist's own checks pass it on) sent to each daemon: hoist fails with what the
/// daemon said, and the daemon has no image of that name. (A config whose diff_id does not
/// match its layer is refused by Docker but taken by podman 4.3, which does not check.)
fn a_corrupt_image_is_refused_with_the_daemons_words(engine: Engine) {
    let Some(daemon) = Daemon::start(engine) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    small_image(&hoist, &work, "bad", "amd64");
    let layout = work.path("bad");
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let read_json = |digest: &str| -> Value {
        serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap()
    };
    let put = |bytes: &[u8]| -> String {
        let digest = oci_types::Digest::sha256(bytes).to_string();
        std::fs::write(blob(&digest), bytes).unwrap();
        digest
    };
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifest = read_json(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read_json(manifest["config"]["digest"].as_str().unwrap());
    let garbage = oci_store::conformance::seeded_bytes(3, 64 << 10);
    let layer = put(&garbage);
    config["rootfs"]["diff_ids"][0] = Value::String(layer.clone());
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = Value::String(put(&config_bytes));
    manifest["config"]["size"] = Value::from(config_bytes.len());
    manifest["layers"][0]["digest"] = Value::String(layer);
    manifest["layers"][0]["size"] = Value::from(garbage.len());
    manifest["layers"][0]["mediaType"] =
        Value::String(oci_types::media_type::OCI_LAYER_TAR.to_owned());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = Value::String(put(&manifest_bytes));
    index["manifests"][0]["size"] = Value::from(manifest_bytes.len());
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let output = hoist_with(
        &hoist,
        &daemon,
        &[
            "copy",
            &work.oci("bad", "v1"),
            "docker-daemon:example/bad:v1",
        ],
    );
    assert!(
        !output.status.success(),
        "{} loaded a corrupt image",
        engine.name()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not load example/bad:v1"), "{stderr}");
    assert!(
        stderr.contains("the Docker daemon reported"),
        "the daemon's own words: {stderr}"
    );
    let listed = daemon.docker_text(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!listed.contains("example/bad"), "{listed}");
}

#[test]
fn docker20_refuses_a_corrupt_image_and_hoist_says_why() {
    a_corrupt_image_is_refused_with_the_daemons_words(Engine::Docker20);
}

#[test]
fn docker26_refuses_a_corrupt_image_and_hoist_says_why() {
    a_corrupt_image_is_refused_with_the_daemons_words(Engine::Docker26);
}

#[test]
fn podman_refuses_a_corrupt_image_and_hoist_says_why() {
    a_corrupt_image_is_refused_with_the_daemons_words(Engine::Podman);
}

/// An image whose layer is two gzip members (the uncompressed tar cut in two and each half
/// compressed: the same diff_id, another blob), loaded into each daemon. A load sends gzip
/// layers uncompressed, sized by their gzip trailer, which here counts only the second member:
/// the layer goes as stored instead, and the daemon loads it with the config's digest.
fn a_layer_of_two_gzip_members_loads(engine: Engine) {
    let Some(daemon) = Daemon::start(engine) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let config = small_image(&hoist, &work, "members", "amd64");
    let layout = work.path("members");
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let layer = std::fs::read(blob(manifest["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar).unwrap();
    let gzip = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, bytes).unwrap();
        encoder.finish().unwrap()
    };
    let members = [gzip(&tar[..512]), gzip(&tar[512..])].concat();
    let put = |bytes: &[u8]| -> String {
        let digest = oci_types::Digest::sha256(bytes).to_string();
        std::fs::write(blob(&digest), bytes).unwrap();
        digest
    };
    manifest["layers"][0]["digest"] = Value::String(put(&members));
    manifest["layers"][0]["size"] = Value::from(members.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = Value::String(put(&manifest_bytes));
    index["manifests"][0]["size"] = Value::from(manifest_bytes.len());
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    ok(
        &hoist_with(
            &hoist,
            &daemon,
            &[
                "copy",
                &work.oci("members", "v1"),
                "docker-daemon:example/members:v1",
            ],
        ),
        "load",
    );
    assert_eq!(
        daemon.image_id("example/members:v1"),
        config,
        "{}",
        engine.name()
    );
}

#[test]
fn docker20_loads_a_layer_of_two_gzip_members() {
    a_layer_of_two_gzip_members_loads(Engine::Docker20);
}

#[test]
fn docker26_loads_a_layer_of_two_gzip_members() {
    a_layer_of_two_gzip_members_loads(Engine::Docker26);
}

#[test]
fn podman_loads_a_layer_of_two_gzip_members() {
    a_layer_of_two_gzip_members_loads(Engine::Podman);
}
