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

use bytes::Bytes;
use oci_build::{
    BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, Base, BaseRole, BuildOptions, Built,
    COMPRESSION_ANNOTATION, Compression, Endpoint, EnvEdit, GzipOptions, IndexOptions, LayerSource,
    ManifestRef, Mtime, TarOptions, append_to_index, build_image, create_index, fetch_image,
    index_entry, platform_tag, remove_from_index,
};
use oci_store::{ErrorCode, MemoryStore, OciInterface, OciInterfaceExt};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, Manifest, Platform, Repository, Tag, media_type,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// `SOURCE_DATE_EPOCH` of the builds: 2023-11-14T22:13:20Z.
const CREATED: u64 = 1_700_000_000;
const CREATED_TEXT: &str = "2023-11-14T22:13:20Z";

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

fn tags(names: &[&str]) -> Vec<Tag> {
    names.iter().map(|name| tag(name)).collect()
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

fn index_options(docker: bool, platform_tags: bool) -> IndexOptions {
    let mut options = IndexOptions::default();
    options.docker = docker;
    options.platform_tags = platform_tags;
    options
}

/// A small tree: `README`, `bin/app` (executable) and `etc/conf` holding `conf`.
fn tree(conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("README"), "read me\n").unwrap();
    fs::write(root.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/conf"), conf).unwrap();
    dir
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

/// Each entry of a tar: its path, mode, mtime and content.
fn unpack(tar: &[u8]) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_str().unwrap().to_owned();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(
            path,
            (header.mode().unwrap(), header.mtime().unwrap(), data),
        );
    }
    files
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn platforms(index: &ImageIndex) -> Vec<String> {
    let platform = |m: &Descriptor| m.platform.as_ref().unwrap().to_string();
    index.manifests.iter().map(platform).collect()
}

/// Repository `app` of a memory store of its own.
struct Fixture {
    store: MemoryStore,
    repo: Repository,
}

impl Fixture {
    fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            repo: Repository::parse("app").unwrap(),
        }
    }

    fn at(&self) -> Endpoint<'_> {
        Endpoint::new(&self.store, &self.repo)
    }

    /// Builds an image with one layer, the directory `layer`.
    async fn build(
        &self,
        base: Option<Base<'_>>,
        layer: &Path,
        tag_names: &[&str],
        options: &BuildOptions,
    ) -> oci_build::Result<Built> {
        let layers = vec![LayerSource::Directory(layer.to_path_buf())];
        build_image(base, layers, self.at(), &tags(tag_names), options).await
    }

    /// An untagged image for `platform_text` whose layer holds `conf`: its manifest.
    async fn image(&self, platform_text: &str, conf: &str, docker: bool) -> Descriptor {
        let dir = tree(conf);
        let mut options = options(platform_text, CREATED);
        options.docker = Some(docker);
        let built = self.build(None, dir.path(), &[], &options).await.unwrap();
        built.manifest
    }

    /// The index entry of a new image (see [`Self::image`]).
    async fn entry(&self, platform_text: &str, conf: &str, docker: bool) -> Descriptor {
        let image = self.image(platform_text, conf, docker).await;
        let entry = index_entry(self.at(), &ManifestRef::Digest(image.digest.clone())).await;
        entry.unwrap()
    }

    /// Index entries of new images for `platforms`, in that order.
    async fn entries(&self, platforms: &[&str], docker: bool) -> Vec<Descriptor> {
        let mut entries = Vec::new();
        for platform in platforms {
            entries.push(self.entry(platform, platform, docker).await);
        }
        entries
    }

    async fn manifest(&self, digest: &Digest) -> Manifest {
        let reader = self.store.get_manifest(&self.repo, digest).await.unwrap();
        let media_type = reader.descriptor().media_type.clone();
        Manifest::parse(&reader.bytes(1 << 22).await.unwrap(), &media_type).unwrap()
    }

    async fn image_manifest(&self, digest: &Digest) -> ImageManifest {
        match self.manifest(digest).await {
            Manifest::Image(manifest) => manifest,
            other => panic!("{digest} is not an image manifest: {other:?}"),
        }
    }

    async fn index(&self, digest: &Digest) -> ImageIndex {
        match self.manifest(digest).await {
            Manifest::Index(index) => index,
            other => panic!("{digest} is not an index: {other:?}"),
        }
    }

    async fn blob(&self, digest: &Digest) -> Bytes {
        let blob = self.store.get_blob_bytes(&self.repo, digest, 1 << 26);
        blob.await.unwrap()
    }

    async fn config(&self, manifest: &ImageManifest) -> Value {
        serde_json::from_slice(&self.blob(&manifest.config.digest).await).unwrap()
    }

    /// A gzip layer blob, decompressed.
    async fn layer_tar(&self, layer: &Descriptor) -> Vec<u8> {
        let blob = self.blob(&layer.digest).await;
        let mut tar = Vec::new();
        let mut decoder = flate2::read::MultiGzDecoder::new(&blob[..]);
        decoder.read_to_end(&mut tar).unwrap();
        tar
    }

    async fn resolve(&self, name: &str) -> Digest {
        let resolved = self.store.resolve_tag(&self.repo, &tag(name)).await;
        resolved.unwrap().digest
    }

    async fn assert_untagged(&self, name: &str) {
        let resolved = self.store.resolve_tag(&self.repo, &tag(name)).await;
        let error = resolved.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{error}");
    }
}

#[tokio::test]
async fn the_same_tree_gives_the_same_digest_whatever_its_mtimes_and_the_gzip_threads() {
    let dir = tree("x=1\n");
    // Several gzip blocks, so that the threads have blocks to share.
    let big: Vec<u8> = (0u32..1 << 15)
        .flat_map(|i| Sha256::digest(i.to_le_bytes()))
        .collect();
    fs::write(dir.path().join("big"), big).unwrap();
    let f = Fixture::new();
    let mut first = options("linux/amd64", CREATED);
    first.compression = gzip_threads(1);
    let one = f.build(None, dir.path(), &[], &first).await.unwrap();

    touch_all(dir.path(), SystemTime::now() + Duration::from_secs(3600));
    let mut second = options("linux/amd64", CREATED);
    second.compression = gzip_threads(4);
    let other = f.build(None, dir.path(), &[], &second).await.unwrap();
    assert_eq!(one.manifest.digest, other.manifest.digest);
    assert_eq!(one.layers, other.layers);

    let later = options("linux/amd64", CREATED + 1);
    let later = f.build(None, dir.path(), &[], &later).await.unwrap();
    assert_ne!(one.manifest.digest, later.manifest.digest);
}

#[tokio::test]
async fn a_built_image_reads_back_with_its_platform_config_and_files() {
    let dir = tree("x=1\n");
    let f = Fixture::new();
    let mut options = options("linux/amd64", CREATED);
    let edit = &mut options.config;
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
    let built = f.build(None, dir.path(), &["v1"], &options).await.unwrap();
    assert_eq!(built.platform, platform("linux/amd64"));
    assert_eq!(f.resolve("v1").await, built.manifest.digest);

    let (v1, wanted) = (by_tag("v1"), platform("linux/amd64"));
    let image = fetch_image(&f.store, &f.repo, &v1, Some(&wanted));
    let image = image.await.unwrap();
    assert_eq!(image.manifest_descriptor.digest, built.manifest.digest);
    assert_eq!(image.manifest.media_type, media_type::OCI_MANIFEST);
    assert_eq!(image.manifest.config.media_type, media_type::OCI_CONFIG);
    let [layer] = image.layers() else {
        panic!("one layer expected: {:?}", image.layers());
    };
    assert_eq!(layer, &built.layers[0].descriptor);
    assert_eq!(layer.media_type, media_type::OCI_LAYER_GZIP);
    let made_by = &layer.annotations[COMPRESSION_ANNOTATION];
    assert!(made_by.starts_with("gzip;"), "{made_by}");

    let config: Value = serde_json::from_slice(&image.config).unwrap();
    let tar = f.layer_tar(layer).await;
    let diff_ids = json!({"type": "layers", "diff_ids": [sha256(&tar)]});
    assert_eq!(config["rootfs"], diff_ids);
    assert_eq!(built.layers[0].diff_id.to_string(), sha256(&tar));
    assert_eq!([&config["os"], &config["architecture"]], ["linux", "amd64"]);
    assert_eq!(config["created"], CREATED_TEXT);
    let history = json!([{"created": CREATED_TEXT, "created_by": "hoist build"}]);
    assert_eq!(config["history"], history);
    let runtime = &config["config"];
    assert_eq!(runtime["Entrypoint"], json!(["/bin/app"]));
    assert_eq!(runtime["Cmd"], json!(["--help"]));
    assert_eq!(runtime["Env"], json!(["PATH=/usr/bin:/opt/bin", "LANG=C"]));
    assert_eq!(runtime["WorkingDir"], "/work");
    assert_eq!(runtime["User"], "1000:1000");
    assert_eq!(runtime["Labels"], json!({"org.example.team": "build"}));
    let ports = json!({"8080/tcp": {}, "53/udp": {}});
    assert_eq!(runtime["ExposedPorts"], ports);
    assert_eq!(runtime["Volumes"], json!({"/data": {}}));

    // The files were just written, so their times are clamped to the build's.
    let files = unpack(&tar);
    let listed: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(listed, ["README", "bin/", "bin/app", "etc/", "etc/conf"]);
    let app = (0o755, CREATED, b"#!/bin/sh\necho hi\n".to_vec());
    assert_eq!(files["bin/app"], app);
    assert_eq!(files["etc/conf"].2, b"x=1\n");
    assert!(files.values().all(|(_, mtime, _)| *mtime == CREATED));
}

#[tokio::test]
async fn an_explicit_tar_mtime_is_not_replaced_by_the_clamp_to_the_build_time() {
    let dir = tree("x=1\n");
    let f = Fixture::new();
    let mut options = options("linux/amd64", CREATED);
    // Earlier than `created`, so clamping to it changes nothing.
    options.tar = TarOptions::default().with_mtime(Mtime::Set(1000));
    let built = f.build(None, dir.path(), &[], &options).await.unwrap();
    let files = unpack(&f.layer_tar(&built.layers[0].descriptor).await);
    let times: Vec<u64> = files.values().map(|(_, mtime, _)| *mtime).collect();
    assert_eq!(times, [1000; 5]);
}

/// A base image (tag `base` of its own store) and the directory of a layer to put on it.
struct BaseSetup {
    base: Fixture,
    manifest: ImageManifest,
    config: Value,
    digest: Digest,
    layer: tempfile::TempDir,
    reference: ManifestRef,
}

impl BaseSetup {
    async fn new() -> Self {
        let base = Fixture::new();
        let dir = tree("base\n");
        let options = options("linux/amd64", 1_600_000_000);
        let built = base.build(None, dir.path(), &["base"], &options).await;
        let digest = built.unwrap().manifest.digest;
        let manifest = base.image_manifest(&digest).await;
        let config = base.config(&manifest).await;
        let layer = tempfile::tempdir().unwrap();
        fs::write(layer.path().join("top"), "on top\n").unwrap();
        Self {
            base,
            manifest,
            config,
            digest,
            layer,
            reference: by_tag("base"),
        }
    }

    /// Builds on the base into `target`, tagged `v1`.
    async fn build_on(&self, target: &Fixture, options: &BuildOptions) -> Built {
        let base = Base::new(
            self.base.at(),
            &self.reference,
            BaseRole::Build {
                name: Some("registry.example/base:1"),
            },
        );
        let built = target.build(Some(base), self.layer.path(), &["v1"], options);
        built.await.unwrap()
    }
}

#[tokio::test]
async fn a_build_on_a_base_reuses_its_layers_and_names_it() {
    let setup = BaseSetup::new().await;
    let f = Fixture::new();
    let built = setup.build_on(&f, &options("linux/amd64", CREATED)).await;
    let manifest = f.image_manifest(&built.manifest.digest).await;

    let base_layer = &setup.manifest.layers[0];
    assert_eq!(
        manifest.layers,
        [base_layer.clone(), built.layers[0].descriptor.clone()]
    );
    let original = setup.base.blob(&base_layer.digest).await;
    assert_eq!(f.blob(&base_layer.digest).await, original);

    let config = f.config(&manifest).await;
    let base_id = &setup.config["rootfs"]["diff_ids"][0];
    let diff_ids = json!([base_id, built.layers[0].diff_id.to_string()]);
    assert_eq!(config["rootfs"]["diff_ids"], diff_ids);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], setup.config["history"][0]);
    assert_eq!(history[1]["created"], CREATED_TEXT);
    assert_eq!(config["created"], CREATED_TEXT);
    let annotations = BTreeMap::from([
        (
            BASE_NAME_ANNOTATION.to_owned(),
            "registry.example/base:1".to_owned(),
        ),
        (BASE_DIGEST_ANNOTATION.to_owned(), setup.digest.to_string()),
    ]);
    assert_eq!(manifest.annotations, annotations);
}

#[tokio::test]
async fn docker_builds_use_docker_media_types_for_manifest_config_and_every_layer() {
    let setup = BaseSetup::new().await;
    let f = Fixture::new();
    let mut options = options("linux/amd64", CREATED);
    options.docker = Some(true);
    let built = setup.build_on(&f, &options).await;
    assert_eq!(built.manifest.media_type, media_type::DOCKER_MANIFEST);
    let manifest = f.image_manifest(&built.manifest.digest).await;
    assert_eq!(manifest.media_type, media_type::DOCKER_MANIFEST);
    assert_eq!(manifest.config.media_type, media_type::DOCKER_CONFIG);
    assert_eq!(manifest.layers.len(), 2);
    for layer in &manifest.layers {
        assert_eq!(layer.media_type, media_type::DOCKER_LAYER_GZIP);
        assert!(layer.annotations.is_empty(), "{:?}", layer.annotations);
    }
    let (base, reused) = (&setup.manifest.layers[0], &manifest.layers[0]);
    assert_eq!((&reused.digest, reused.size), (&base.digest, base.size));
    // Docker's schema 2 has no annotations.
    assert!(
        manifest.annotations.is_empty(),
        "{:?}",
        manifest.annotations
    );
}

#[tokio::test]
async fn a_base_index_without_the_platform_fails_naming_it_and_tags_nothing() {
    let f = Fixture::new();
    let entries = f.entries(&["linux/amd64", "linux/arm64"], false).await;
    let multi = tags(&["multi"]);
    create_index(f.at(), entries, &multi, &IndexOptions::default())
        .await
        .unwrap();
    let dir = tree("top\n");
    let reference = by_tag("multi");
    let base = Base::new(f.at(), &reference, BaseRole::Build { name: None });
    let options = options("linux/s390x", CREATED);
    let error = f.build(Some(base), dir.path(), &["v1"], &options).await;
    let error = error.unwrap_err().to_string();
    assert!(error.contains("linux/s390x"), "{error}");
    assert!(error.contains("linux/amd64, linux/arm64"), "{error}");
    f.assert_untagged("v1").await;
}

#[tokio::test]
async fn a_socket_in_a_layer_fails_naming_it_and_moves_no_tag() {
    let f = Fixture::new();
    let before = tree("before\n");
    let options = options("linux/amd64", CREATED);
    let old = f
        .build(None, before.path(), &["old"], &options)
        .await
        .unwrap();

    let dir = tree("x\n");
    let socket = dir.path().join("etc/control.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let error = f.build(None, dir.path(), &["old", "new"], &options).await;
    let error = error.unwrap_err().to_string();
    assert!(error.contains(&socket.display().to_string()), "{error}");
    assert_eq!(f.resolve("old").await, old.manifest.digest);
    f.assert_untagged("new").await;
}

#[tokio::test]
async fn an_index_of_two_platforms_tags_each_image_by_platform() {
    let f = Fixture::new();
    let entries = f.entries(&["linux/amd64", "linux/arm64"], false).await;
    assert_eq!(entries[0].platform, Some(platform("linux/amd64")));
    let (v1, options) = (tags(&["v1"]), index_options(false, true));
    let made = create_index(f.at(), entries.clone(), &v1, &options);
    let made = made.await.unwrap();
    assert_eq!(made.media_type, media_type::OCI_INDEX);
    assert_eq!(f.resolve("v1").await, made.digest);
    let index = f.index(&made.digest).await;
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64"]);
    assert_eq!(index.manifests, entries);
    assert_eq!(f.resolve("v1-amd64").await, entries[0].digest);
    assert_eq!(f.resolve("v1-arm64").await, entries[1].digest);

    let (v1, wanted) = (by_tag("v1"), platform("linux/arm64"));
    let image = fetch_image(&f.store, &f.repo, &v1, Some(&wanted));
    assert_eq!(
        image.await.unwrap().manifest_descriptor.digest,
        entries[1].digest
    );
}

#[tokio::test]
async fn a_docker_index_is_a_manifest_list_without_annotations() {
    let f = Fixture::new();
    let entries = f.entries(&["linux/amd64", "linux/arm64"], true).await;
    let mut options = index_options(true, false);
    options.annotations = [("org.example".to_owned(), "dropped".to_owned())].into();
    let v1 = tags(&["v1"]);
    let made = create_index(f.at(), entries, &v1, &options);
    let made = made.await.unwrap();
    assert_eq!(made.media_type, media_type::DOCKER_MANIFEST_LIST);
    let index = f.index(&made.digest).await;
    assert_eq!(index.media_type, media_type::DOCKER_MANIFEST_LIST);
    assert!(index.annotations.is_empty(), "{:?}", index.annotations);
    for child in &index.manifests {
        assert_eq!(child.media_type, media_type::DOCKER_MANIFEST);
    }
}

#[tokio::test]
async fn appending_to_a_manifest_list_keeps_it_without_annotations() {
    let f = Fixture::new();
    let entries = f.entries(&["linux/amd64", "linux/arm64"], true).await;
    let mut options = index_options(true, false);
    create_index(f.at(), entries, &tags(&["v1"]), &options)
        .await
        .unwrap();
    // As for create_index, the annotations are for OCI indexes only.
    options.annotations = [("org.example".to_owned(), "dropped".to_owned())].into();
    let arm = f.entry("linux/arm/v7", "v7", true).await;
    let (at, v1) = (by_tag("v1"), tags(&["v1"]));
    let appended = append_to_index(f.at(), &at, vec![arm], &v1, &options);
    let index = f.index(&appended.await.unwrap().digest).await;
    assert_eq!(index.media_type, media_type::DOCKER_MANIFEST_LIST);
    assert_eq!(index.manifests.len(), 3);
    assert!(index.annotations.is_empty(), "{:?}", index.annotations);
}

#[tokio::test]
async fn two_images_of_one_platform_are_refused() {
    let f = Fixture::new();
    let one = f.entry("linux/amd64", "one", false).await;
    let two = f.entry("linux/amd64", "two", false).await;
    let (one_digest, two_digest) = (one.digest.to_string(), two.digest.to_string());
    let options = IndexOptions::default();
    let error = create_index(f.at(), vec![one, two], &tags(&["v1"]), &options).await;
    let error = error.unwrap_err().to_string();
    assert!(
        error.contains("two images for platform linux/amd64"),
        "{error}"
    );
    assert!(
        error.contains(&one_digest) && error.contains(&two_digest),
        "{error}"
    );
    f.assert_untagged("v1").await;
}

#[tokio::test]
async fn append_adds_a_new_platform_and_replaces_one_the_index_has() {
    let f = Fixture::new();
    let entries = f.entries(&["linux/amd64", "linux/arm64"], false).await;
    let (at, v1) = (by_tag("v1"), tags(&["v1"]));
    let (options, tagging) = (IndexOptions::default(), index_options(false, true));
    create_index(f.at(), entries.clone(), &v1, &options)
        .await
        .unwrap();

    let arm = f.entry("linux/arm/v7", "v7", false).await;
    let added = append_to_index(f.at(), &at, vec![arm.clone()], &v1, &tagging);
    let added = added.await.unwrap();
    assert_eq!(f.resolve("v1").await, added.digest);
    let index = f.index(&added.digest).await;
    assert_eq!(
        platforms(&index),
        ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    );
    assert_eq!(f.resolve("v1-arm-v7").await, arm.digest);

    let amd = f.entry("linux/amd64", "a new amd64 image", false).await;
    assert_ne!(amd.digest, entries[0].digest);
    let replaced = append_to_index(f.at(), &at, vec![amd.clone()], &v1, &options);
    let index = f.index(&replaced.await.unwrap().digest).await;
    assert_eq!(index.manifests, [amd, entries[1].clone(), arm]);
}

#[tokio::test]
async fn remove_takes_a_platform_out_and_names_what_the_index_has_when_it_is_missing() {
    let f = Fixture::new();
    let platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"];
    let entries = f.entries(&platforms, false).await;
    let (at, v1) = (by_tag("v1"), tags(&["v1"]));
    create_index(f.at(), entries.clone(), &v1, &IndexOptions::default())
        .await
        .unwrap();

    let arm64 = [platform("linux/arm64")];
    let removed = remove_from_index(f.at(), &at, &arm64, &v1).await.unwrap();
    assert_eq!(f.resolve("v1").await, removed.digest);
    let index = f.index(&removed.digest).await;
    assert_eq!(index.manifests, [entries[0].clone(), entries[2].clone()]);

    let s390x = [platform("linux/s390x")];
    let error = remove_from_index(f.at(), &at, &s390x, &v1).await;
    let error = error.unwrap_err().to_string();
    assert!(error.contains("linux/s390x"), "{error}");
    assert!(
        error.contains("it has: linux/amd64, linux/arm/v7"),
        "{error}"
    );
    assert_eq!(f.resolve("v1").await, removed.digest);
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

/// A small known tree built with the defaults (gzip) and with zstd: the digests are pinned,
/// so that any change of output (tar layout, compression, config, manifest) is noticed. A
/// change on purpose updates them here and says so in its commit.
#[tokio::test]
async fn the_digest_of_a_small_known_build_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("etc/app/config.toml"), b"name = \"pinned\"\n").unwrap();
    fs::write(root.join("usr/bin/app"), b"#!/bin/sh\necho pinned\n").unwrap();
    std::os::unix::fs::symlink("../bin/app", root.join("usr/bin/app-link")).unwrap();
    for (path, mode) in [
        ("etc", 0o755),
        ("etc/app", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("etc/app/config.toml", 0o644),
        ("usr/bin/app", 0o755),
    ] {
        fs::set_permissions(root.join(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    let store = MemoryStore::new();
    let repo = Repository::parse("pinned").unwrap();
    let mut built = Vec::new();
    for compression in [Compression::default(), Compression::zstd()] {
        let mut options = options("linux/amd64", CREATED);
        options.compression = compression;
        options.config.entrypoint = Some(vec!["/usr/bin/app".to_owned()]);
        let image = build_image(
            None,
            vec![LayerSource::Directory(root.clone())],
            Endpoint::new(&store, &repo),
            &[],
            &options,
        )
        .await
        .unwrap();
        built.push(image.manifest.digest.to_string());
    }
    assert_eq!(
        built,
        [
            "sha256:723e022c4c211e1897a3ac907e8af55400077d2fa35879ee1af7317b25cc9ad7",
            "sha256:cbcedb9bd2e7e08fd41f00a89f654aa5bced372ba2652a2c557e3afd285a208a",
        ]
    );
}
