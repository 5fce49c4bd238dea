//! Building images and indexes into memory stores: what the manifest, config and layers say,
//! reproducibility, bases, and what a failure leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, SystemTime};

use oci_build::{
    BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, Base, BaseRole, BuildOptions, Built,
    COMPRESSION_ANNOTATION, Compression, ConfigEdit, Endpoint, EnvEdit, GzipOptions, IndexOptions,
    LayerSource, ManifestRef, append_to_index, build_image, create_index, fetch_image, index_entry,
    platform_tag, remove_from_index,
};
use oci_store::{ErrorCode, MemoryStore, OciInterface, OciInterfaceExt};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, Manifest, Platform, Repository, Tag, media_type,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// `SOURCE_DATE_EPOCH` of the builds: 2023-11-14T22:13:20Z.
const CREATED: u64 = 1_700_000_000;

fn repo(name: &str) -> Repository {
    Repository::parse(name).unwrap()
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

fn platform(text: &str) -> Platform {
    Platform::parse(text).unwrap()
}

fn by_tag(name: &str) -> ManifestRef {
    ManifestRef::Tag(tag(name))
}

/// Options for a reproducible build for `platform`.
fn options(platform_text: &str, created: u64) -> BuildOptions {
    let mut options = BuildOptions::default();
    options.platform = Some(platform(platform_text));
    options.created = Some(created);
    options
}

fn gzip_threads(threads: usize) -> Compression {
    let mut gzip = GzipOptions::default();
    gzip.threads = threads;
    Compression::Gzip(gzip)
}

/// A small tree: `README`, `bin/app` (executable) and `etc/conf` holding `conf`.
fn tree(root: &Path, conf: &str) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("README"), "read me\n").unwrap();
    fs::write(root.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/conf"), conf).unwrap();
}

/// Sets the modification time of every file and directory under `root` to `time`.
fn touch_all(root: &Path, time: SystemTime) {
    for item in fs::read_dir(root).unwrap() {
        let path = item.unwrap().path();
        fs::File::open(&path).unwrap().set_modified(time).unwrap();
        if path.is_dir() {
            touch_all(&path, time);
        }
    }
}

async fn build(
    store: &dyn OciInterface,
    repo: &Repository,
    base: Option<Base<'_>>,
    layer: &Path,
    tags: &[Tag],
    options: &BuildOptions,
) -> Built {
    build_image(
        base,
        vec![LayerSource::Directory(layer.to_path_buf())],
        Endpoint::new(store, repo),
        tags,
        options,
    )
    .await
    .unwrap()
}

/// An image for `platform_text` whose single layer holds `conf`; its manifest descriptor.
async fn image_for(
    store: &dyn OciInterface,
    repo: &Repository,
    platform_text: &str,
    conf: &str,
    docker: bool,
) -> Descriptor {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), conf);
    let mut options = options(platform_text, CREATED);
    options.docker = docker;
    build(store, repo, None, dir.path(), &[], &options)
        .await
        .manifest
}

async fn manifest_bytes(store: &dyn OciInterface, repo: &Repository, digest: &Digest) -> Manifest {
    let reader = store.get_manifest(repo, digest).await.unwrap();
    let media_type = reader.descriptor().media_type.clone();
    Manifest::parse(&reader.bytes(1 << 22).await.unwrap(), &media_type).unwrap()
}

async fn image_manifest(
    store: &dyn OciInterface,
    repo: &Repository,
    digest: &Digest,
) -> ImageManifest {
    match manifest_bytes(store, repo, digest).await {
        Manifest::Image(manifest) => manifest,
        other => panic!("{digest} is not an image manifest: {other:?}"),
    }
}

async fn index(store: &dyn OciInterface, repo: &Repository, digest: &Digest) -> ImageIndex {
    match manifest_bytes(store, repo, digest).await {
        Manifest::Index(index) => index,
        other => panic!("{digest} is not an index: {other:?}"),
    }
}

async fn config(store: &dyn OciInterface, repo: &Repository, manifest: &ImageManifest) -> Value {
    let bytes = store
        .get_blob_bytes(repo, &manifest.config.digest, 1 << 22)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A gzip layer blob, decompressed.
async fn layer_tar(store: &dyn OciInterface, repo: &Repository, layer: &Descriptor) -> Vec<u8> {
    let blob = store
        .get_blob_bytes(repo, &layer.digest, 1 << 26)
        .await
        .unwrap();
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

/// Each entry of a tar: its path, mode, mtime and content.
fn unpack(tar: &[u8]) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_str().unwrap().to_owned();
        let (mode, mtime) = (
            entry.header().mode().unwrap(),
            entry.header().mtime().unwrap(),
        );
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(path, (mode, mtime, data));
    }
    files
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

async fn assert_untagged(store: &dyn OciInterface, repo: &Repository, name: &str) {
    let error = store.resolve_tag(repo, &tag(name)).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{error}");
}

async fn resolve(store: &dyn OciInterface, repo: &Repository, name: &str) -> Digest {
    store.resolve_tag(repo, &tag(name)).await.unwrap().digest
}

#[tokio::test]
async fn the_same_tree_gives_the_same_digest_whatever_its_mtimes_and_the_gzip_threads() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), "x=1\n");
    let (store, r) = (MemoryStore::new(), repo("app"));
    let mut first = options("linux/amd64", CREATED);
    first.compression = gzip_threads(1);
    let one = build(&store, &r, None, dir.path(), &[], &first).await;

    touch_all(dir.path(), SystemTime::now() + Duration::from_secs(3600));
    let mut second = options("linux/amd64", CREATED);
    second.compression = gzip_threads(4);
    let other = build(&store, &r, None, dir.path(), &[], &second).await;
    assert_eq!(one.manifest.digest, other.manifest.digest);
    assert_eq!(one.layers, other.layers);

    let later = build(
        &store,
        &r,
        None,
        dir.path(),
        &[],
        &options("linux/amd64", CREATED + 1),
    )
    .await;
    assert_ne!(one.manifest.digest, later.manifest.digest);
}

#[tokio::test]
async fn a_built_image_reads_back_with_its_platform_config_and_files() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), "x=1\n");
    let (store, r) = (MemoryStore::new(), repo("app"));
    let mut options = options("linux/amd64", CREATED);
    let mut edit = ConfigEdit::default();
    edit.entrypoint = Some(vec!["/bin/app".to_owned()]);
    edit.cmd = Some(vec!["--help".to_owned()]);
    edit.env = vec![
        EnvEdit::Set("PATH".to_owned(), "/usr/bin".to_owned()),
        EnvEdit::Append("PATH".to_owned(), "/opt/bin".to_owned()),
        EnvEdit::Append("LANG".to_owned(), "C".to_owned()),
    ];
    edit.working_dir = Some("/work".to_owned());
    edit.user = Some("1000:1000".to_owned());
    edit.labels = [("org.example.team".to_owned(), "build".to_owned())].into();
    edit.exposed_ports = vec!["8080".to_owned(), "53/udp".to_owned()];
    edit.volumes = vec!["/data".to_owned()];
    options.config = edit;
    let built = build(&store, &r, None, dir.path(), &[tag("v1")], &options).await;
    assert_eq!(built.platform, platform("linux/amd64"));
    assert_eq!(resolve(&store, &r, "v1").await, built.manifest.digest);

    let image = fetch_image(&store, &r, &by_tag("v1"), Some(&platform("linux/amd64")))
        .await
        .unwrap();
    assert_eq!(image.manifest_descriptor.digest, built.manifest.digest);
    assert_eq!(image.manifest.media_type.as_str(), media_type::OCI_MANIFEST);
    assert_eq!(
        image.manifest.config.media_type.as_str(),
        media_type::OCI_CONFIG
    );
    let [layer] = image.layers() else {
        panic!("one layer expected: {:?}", image.layers());
    };
    assert_eq!(layer, &built.layers[0].descriptor);
    assert_eq!(layer.media_type.as_str(), media_type::OCI_LAYER_GZIP);
    assert!(
        layer.annotations[COMPRESSION_ANNOTATION].starts_with("gzip"),
        "{:?}",
        layer.annotations
    );

    let config: Value = serde_json::from_slice(&image.config).unwrap();
    let tar = layer_tar(&store, &r, layer).await;
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [sha256(&tar)]})
    );
    assert_eq!(built.layers[0].diff_id.to_string(), sha256(&tar));
    assert_eq!(
        (&config["os"], &config["architecture"]),
        (&json!("linux"), &json!("amd64"))
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        config["history"],
        json!([{"created": "2023-11-14T22:13:20Z", "created_by": "hoist build"}])
    );
    let runtime = &config["config"];
    assert_eq!(runtime["Entrypoint"], json!(["/bin/app"]));
    assert_eq!(runtime["Cmd"], json!(["--help"]));
    assert_eq!(runtime["Env"], json!(["PATH=/usr/bin:/opt/bin", "LANG=C"]));
    assert_eq!(runtime["WorkingDir"], "/work");
    assert_eq!(runtime["User"], "1000:1000");
    assert_eq!(runtime["Labels"], json!({"org.example.team": "build"}));
    assert_eq!(
        runtime["ExposedPorts"],
        json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(runtime["Volumes"], json!({"/data": {}}));

    // Files are just written, so their times are clamped to the build's.
    let files = unpack(&tar);
    let listed: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(listed, ["README", "bin/", "bin/app", "etc/", "etc/conf"]);
    assert_eq!(
        files["bin/app"],
        (0o755, CREATED, b"#!/bin/sh\necho hi\n".to_vec())
    );
    assert_eq!(files["etc/conf"].2, b"x=1\n");
    assert!(files.values().all(|(_, mtime, _)| *mtime == CREATED));
}

/// A base image (tag `base` of repository `base` in its own store) and the directory of a new
/// layer.
struct BaseSetup {
    store: MemoryStore,
    repo: Repository,
    manifest: ImageManifest,
    config: Value,
    digest: Digest,
    layer: tempfile::TempDir,
}

async fn base_setup() -> BaseSetup {
    let (store, r) = (MemoryStore::new(), repo("base"));
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), "base\n");
    let built = build(
        &store,
        &r,
        None,
        dir.path(),
        &[tag("base")],
        &options("linux/amd64", 1_600_000_000),
    )
    .await;
    let manifest = image_manifest(&store, &r, &built.manifest.digest).await;
    let config = config(&store, &r, &manifest).await;
    let layer = tempfile::tempdir().unwrap();
    fs::write(layer.path().join("top"), "on top\n").unwrap();
    BaseSetup {
        store,
        repo: r,
        manifest,
        config,
        digest: built.manifest.digest,
        layer,
    }
}

impl BaseSetup {
    fn base<'a>(&'a self, reference: &'a ManifestRef) -> Base<'a> {
        Base {
            source: Endpoint::new(&self.store, &self.repo),
            reference,
            role: BaseRole::Build {
                name: Some("registry.example/base:1"),
            },
        }
    }
}

#[tokio::test]
async fn a_build_on_a_base_reuses_its_layers_and_names_it() {
    let setup = base_setup().await;
    let (target, r) = (MemoryStore::new(), repo("app"));
    let reference = by_tag("base");
    let options = options("linux/amd64", CREATED);
    let built = build(
        &target,
        &r,
        Some(setup.base(&reference)),
        setup.layer.path(),
        &[tag("v1")],
        &options,
    )
    .await;
    let manifest = image_manifest(&target, &r, &built.manifest.digest).await;

    assert_eq!(manifest.layers.len(), 2);
    assert_eq!(manifest.layers[0], setup.manifest.layers[0]);
    assert_eq!(manifest.layers[1], built.layers[0].descriptor);
    let base_layer = &setup.manifest.layers[0];
    let copied = target
        .get_blob_bytes(&r, &base_layer.digest, 1 << 26)
        .await
        .unwrap();
    let original = setup
        .store
        .get_blob_bytes(&setup.repo, &base_layer.digest, 1 << 26)
        .await
        .unwrap();
    assert_eq!(copied, original);

    let config = config(&target, &r, &manifest).await;
    let base_ids = setup.config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!([base_ids[0], built.layers[0].diff_id.to_string()])
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], setup.config["history"][0]);
    assert_eq!(history[1]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        manifest.annotations,
        BTreeMap::from([
            (
                BASE_NAME_ANNOTATION.to_owned(),
                "registry.example/base:1".to_owned()
            ),
            (BASE_DIGEST_ANNOTATION.to_owned(), setup.digest.to_string()),
        ])
    );
}

#[tokio::test]
async fn docker_builds_use_docker_media_types_for_manifest_config_and_every_layer() {
    let setup = base_setup().await;
    let (target, r) = (MemoryStore::new(), repo("app"));
    let reference = by_tag("base");
    let mut options = options("linux/amd64", CREATED);
    options.docker = true;
    let built = build(
        &target,
        &r,
        Some(setup.base(&reference)),
        setup.layer.path(),
        &[tag("v1")],
        &options,
    )
    .await;
    assert_eq!(
        built.manifest.media_type.as_str(),
        media_type::DOCKER_MANIFEST
    );
    let manifest = image_manifest(&target, &r, &built.manifest.digest).await;
    assert_eq!(manifest.media_type.as_str(), media_type::DOCKER_MANIFEST);
    assert_eq!(
        manifest.config.media_type.as_str(),
        media_type::DOCKER_CONFIG
    );
    for layer in &manifest.layers {
        assert_eq!(layer.media_type.as_str(), media_type::DOCKER_LAYER_GZIP);
        assert!(layer.annotations.is_empty(), "{:?}", layer.annotations);
    }
    let base_layer = &setup.manifest.layers[0];
    assert_eq!(
        (&manifest.layers[0].digest, manifest.layers[0].size),
        (&base_layer.digest, base_layer.size)
    );
    // Docker's schema 2 has no annotations.
    assert!(
        manifest.annotations.is_empty(),
        "{:?}",
        manifest.annotations
    );
}

#[tokio::test]
async fn a_base_index_without_the_platform_fails_naming_it_and_tags_nothing() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let entries = vec![
        index_entry(
            Endpoint::new(&store, &r),
            &ManifestRef::Digest(
                image_for(&store, &r, "linux/amd64", "a", false)
                    .await
                    .digest,
            ),
        )
        .await
        .unwrap(),
        index_entry(
            Endpoint::new(&store, &r),
            &ManifestRef::Digest(
                image_for(&store, &r, "linux/arm64", "b", false)
                    .await
                    .digest,
            ),
        )
        .await
        .unwrap(),
    ];
    create_index(
        Endpoint::new(&store, &r),
        entries,
        &[tag("multi")],
        &IndexOptions::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), "top\n");
    let reference = by_tag("multi");
    let base = Base {
        source: Endpoint::new(&store, &r),
        reference: &reference,
        role: BaseRole::Build { name: None },
    };
    let error = build_image(
        Some(base),
        vec![LayerSource::Directory(dir.path().to_path_buf())],
        Endpoint::new(&store, &r),
        &[tag("v1")],
        &options("linux/s390x", CREATED),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("linux/s390x"), "{error}");
    assert!(
        error.contains("linux/amd64") && error.contains("linux/arm64"),
        "{error}"
    );
    assert_untagged(&store, &r, "v1").await;
}

#[tokio::test]
async fn a_socket_in_a_layer_fails_naming_it_and_moves_no_tag() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let before = image_for(&store, &r, "linux/amd64", "before", false).await;
    let tagged = store.get_manifest(&r, &before.digest).await.unwrap();
    let bytes = tagged.bytes(1 << 22).await.unwrap();
    store
        .push_manifest(
            &r,
            bytes,
            &before.media_type,
            &oci_store::PushManifestParams::new().with_tag(tag("old")),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), "x\n");
    let socket = dir.path().join("etc/control.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let error = build_image(
        None,
        vec![LayerSource::Directory(dir.path().to_path_buf())],
        Endpoint::new(&store, &r),
        &[tag("old"), tag("new")],
        &options("linux/amd64", CREATED),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains(&socket.display().to_string()), "{error}");
    assert_eq!(resolve(&store, &r, "old").await, before.digest);
    assert_untagged(&store, &r, "new").await;
}

/// Index entries of an amd64 and an arm64 image in `store`.
async fn two_platforms(store: &dyn OciInterface, r: &Repository, docker: bool) -> Vec<Descriptor> {
    let mut entries = Vec::new();
    for (platform, conf) in [("linux/amd64", "amd"), ("linux/arm64", "arm")] {
        let image = image_for(store, r, platform, conf, docker).await;
        entries.push(entry(store, r, &image).await);
    }
    entries
}

async fn entry(store: &dyn OciInterface, r: &Repository, image: &Descriptor) -> Descriptor {
    index_entry(
        Endpoint::new(store, r),
        &ManifestRef::Digest(image.digest.clone()),
    )
    .await
    .unwrap()
}

fn platform_tags() -> IndexOptions {
    let mut options = IndexOptions::default();
    options.platform_tags = true;
    options
}

fn platforms(index: &ImageIndex) -> Vec<String> {
    index
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_index_of_two_platforms_tags_each_image_by_platform() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let entries = two_platforms(&store, &r, false).await;
    assert_eq!(entries[0].platform, Some(platform("linux/amd64")));
    let made = create_index(
        Endpoint::new(&store, &r),
        entries.clone(),
        &[tag("v1")],
        &platform_tags(),
    )
    .await
    .unwrap();
    assert_eq!(made.media_type.as_str(), media_type::OCI_INDEX);
    assert_eq!(resolve(&store, &r, "v1").await, made.digest);
    let index = index(&store, &r, &made.digest).await;
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64"]);
    assert_eq!(index.manifests, entries);
    assert_eq!(resolve(&store, &r, "v1-amd64").await, entries[0].digest);
    assert_eq!(resolve(&store, &r, "v1-arm64").await, entries[1].digest);

    let image = fetch_image(&store, &r, &by_tag("v1"), Some(&platform("linux/arm64")))
        .await
        .unwrap();
    assert_eq!(image.manifest_descriptor.digest, entries[1].digest);
}

#[tokio::test]
async fn a_docker_index_is_a_manifest_list() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let entries = two_platforms(&store, &r, true).await;
    let mut options = IndexOptions::default();
    options.docker = true;
    options.annotations = [("org.example".to_owned(), "dropped".to_owned())].into();
    let made = create_index(Endpoint::new(&store, &r), entries, &[tag("v1")], &options)
        .await
        .unwrap();
    assert_eq!(made.media_type.as_str(), media_type::DOCKER_MANIFEST_LIST);
    let index = index(&store, &r, &made.digest).await;
    assert_eq!(index.media_type.as_str(), media_type::DOCKER_MANIFEST_LIST);
    assert!(index.annotations.is_empty(), "{:?}", index.annotations);
    for child in &index.manifests {
        assert_eq!(child.media_type.as_str(), media_type::DOCKER_MANIFEST);
    }

    // Appending keeps it a manifest list, still without annotations.
    let arm = image_for(&store, &r, "linux/arm/v7", "v7", true).await;
    let appended = append_to_index(
        Endpoint::new(&store, &r),
        &by_tag("v1"),
        vec![entry(&store, &r, &arm).await],
        &[tag("v1")],
        &options,
    )
    .await
    .unwrap();
    let index = self::index(&store, &r, &appended.digest).await;
    assert_eq!(index.media_type.as_str(), media_type::DOCKER_MANIFEST_LIST);
    assert!(index.annotations.is_empty(), "{:?}", index.annotations);
}

#[tokio::test]
async fn two_images_of_one_platform_are_refused() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let one = image_for(&store, &r, "linux/amd64", "one", false).await;
    let two = image_for(&store, &r, "linux/amd64", "two", false).await;
    let entries = vec![entry(&store, &r, &one).await, entry(&store, &r, &two).await];
    let error = create_index(
        Endpoint::new(&store, &r),
        entries,
        &[tag("v1")],
        &IndexOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("linux/amd64"), "{error}");
    assert!(
        error.contains(&one.digest.to_string()) && error.contains(&two.digest.to_string()),
        "{error}"
    );
    assert_untagged(&store, &r, "v1").await;
}

#[tokio::test]
async fn append_adds_a_new_platform_and_replaces_one_the_index_has() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let entries = two_platforms(&store, &r, false).await;
    let target = Endpoint::new(&store, &r);
    create_index(
        target,
        entries.clone(),
        &[tag("v1")],
        &IndexOptions::default(),
    )
    .await
    .unwrap();

    let arm = entry(
        &store,
        &r,
        &image_for(&store, &r, "linux/arm/v7", "v7", false).await,
    )
    .await;
    let added = append_to_index(
        target,
        &by_tag("v1"),
        vec![arm.clone()],
        &[tag("v1")],
        &platform_tags(),
    )
    .await
    .unwrap();
    assert_eq!(resolve(&store, &r, "v1").await, added.digest);
    let index = index(&store, &r, &added.digest).await;
    assert_eq!(
        platforms(&index),
        ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    );
    assert_eq!(resolve(&store, &r, "v1-arm-v7").await, arm.digest);

    let amd = entry(
        &store,
        &r,
        &image_for(&store, &r, "linux/amd64", "new amd", false).await,
    )
    .await;
    let replaced = append_to_index(
        target,
        &by_tag("v1"),
        vec![amd.clone()],
        &[tag("v1")],
        &IndexOptions::default(),
    )
    .await
    .unwrap();
    let index = self::index(&store, &r, &replaced.digest).await;
    assert_eq!(index.manifests, [amd, entries[1].clone(), arm]);
}

#[tokio::test]
async fn remove_takes_a_platform_out_and_names_what_the_index_has_when_it_is_missing() {
    let (store, r) = (MemoryStore::new(), repo("app"));
    let mut entries = two_platforms(&store, &r, false).await;
    entries.push(
        entry(
            &store,
            &r,
            &image_for(&store, &r, "linux/arm/v7", "v7", false).await,
        )
        .await,
    );
    let target = Endpoint::new(&store, &r);
    create_index(
        target,
        entries.clone(),
        &[tag("v1")],
        &IndexOptions::default(),
    )
    .await
    .unwrap();

    let removed = remove_from_index(
        target,
        &by_tag("v1"),
        &[platform("linux/arm64")],
        &[tag("v1")],
    )
    .await
    .unwrap();
    assert_eq!(resolve(&store, &r, "v1").await, removed.digest);
    let index = index(&store, &r, &removed.digest).await;
    assert_eq!(index.manifests, [entries[0].clone(), entries[2].clone()]);

    let error = remove_from_index(
        target,
        &by_tag("v1"),
        &[platform("linux/s390x")],
        &[tag("v1")],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("linux/s390x"), "{error}");
    assert!(error.contains("linux/amd64, linux/arm/v7"), "{error}");
    assert_eq!(resolve(&store, &r, "v1").await, removed.digest);
}

#[test]
fn platform_tags_name_the_os_when_not_linux_and_the_variant() {
    let check = |text: &str, expected: &str| {
        assert_eq!(
            platform_tag(&tag("v1"), &platform(text)).unwrap(),
            tag(expected)
        );
    };
    check("linux/amd64", "v1-amd64");
    check("linux/arm/v7", "v1-arm-v7");
    check("windows/amd64", "v1-windows-amd64");
}
