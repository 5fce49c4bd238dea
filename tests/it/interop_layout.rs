//! Interop of `oci-layout` with real peers (skopeo, umoci, from Debian packages; see
//! `tests/peers/install.sh`):
//! - a layout written by [`LayoutStore`] passes `umoci stat`, `umoci unpack`, `skopeo inspect`
//!   and `skopeo copy`, with the digests hoist wrote kept as they are;
//! - layouts written by umoci and by skopeo open in [`LayoutStore`], and every manifest, config
//!   and layer reads back through it (verified streams) byte for byte as the file on disk.
//!
//! Each test skips, saying so, when its peer is missing, except on CI (see `support`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt;
use oci_layout::{LayoutOptions, LayoutStore};
use oci_store::{ListParams, OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, Manifest, MediaType, Platform, Repository, Tag,
    media_type,
};
use serde_json::{Value, json};

use crate::support::{peer, run};

/// The content of `etc/greeting` in the layers built here.
const GREETING: &[u8] = b"hello from hoist\n";
/// The command of the images built here.
const CMD: [&str; 3] = ["/bin/sh", "-c", "cat /etc/greeting"];
/// What `umoci stat` must show of the images built here (their history).
const CREATED_BY: &str = "hoist interop test";
/// More than any blob of these tests.
const MAX_BLOB: u64 = 64 << 20;
/// The annotation that names a tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The repository whose tags are bare `ref.name` tags: what skopeo and umoci read and write.
fn repo() -> Repository {
    LayoutOptions::default().default_repository
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

/// `oci:DIR:TAG`, skopeo's name of a tag in a layout.
fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// `DIR:TAG`, umoci's name of a tag in a layout.
fn umoci_ref(dir: &Path, tag: &str) -> String {
    format!("{}:{tag}", dir.display())
}

/// skopeo with the arguments every call here needs: `--insecure-policy` so that a machine
/// without `/etc/containers/policy.json` runs the tests too (no signatures are involved).
fn skopeo(skopeo: &Path, args: &[&str]) -> std::process::Output {
    run(skopeo, ["--insecure-policy"].iter().chain(args))
}

/// A gzip-compressed layer tar: a directory, a regular file with [`GREETING`], a symlink to it,
/// and `etc/arch` naming `arch`. Returns the compressed and the uncompressed tar.
fn gzip_layer(arch: &str) -> (Vec<u8>, Vec<u8>) {
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut dir, "etc/", std::io::empty()).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, GREETING.len() as u64);
    tar.append_data(&mut file, "etc/greeting", GREETING)
        .unwrap();
    let mut link = header(tar::EntryType::Symlink, 0o777, 0);
    tar.append_link(&mut link, "etc/motd", "greeting").unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, arch.len() as u64);
    tar.append_data(&mut file, "etc/arch", arch.as_bytes())
        .unwrap();
    let uncompressed = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&uncompressed).unwrap();
    (gz.finish().unwrap(), uncompressed)
}

/// What [`push_image`] stored: every descriptor and the exact bytes pushed.
struct Pushed {
    manifest: Descriptor,
    manifest_bytes: Bytes,
    config: Descriptor,
    config_bytes: Bytes,
    layer: Descriptor,
    layer_bytes: Bytes,
}

impl Pushed {
    /// Digest to bytes of everything pushed.
    fn blobs(&self) -> [(&Digest, &Bytes); 3] {
        [
            (&self.manifest.digest, &self.manifest_bytes),
            (&self.config.digest, &self.config_bytes),
            (&self.layer.digest, &self.layer_bytes),
        ]
    }
}

/// Pushes a one-layer linux/`arch` image into `store`'s default repository, tagged `tag` if
/// given: the layer of [`gzip_layer`], an OCI config whose `diff_ids` is the digest of the
/// uncompressed tar, and an OCI manifest.
async fn push_image(store: &LayoutStore, arch: &str, tag: Option<&Tag>) -> Pushed {
    let repo = repo();
    let (compressed, uncompressed) = gzip_layer(arch);
    let layer_bytes = Bytes::from(compressed);
    let layer = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            layer_bytes.clone(),
        )
        .await
        .unwrap();
    let config_json = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": CMD, "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [Digest::sha256(&uncompressed).to_string()] },
        "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": CREATED_BY }],
    });
    let config_bytes = Bytes::from(serde_json::to_vec(&config_json).unwrap());
    let config = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            config_bytes.clone(),
        )
        .await
        .unwrap();
    let manifest_bytes =
        Bytes::from(ImageManifest::new(config.clone(), vec![layer.clone()]).to_json());
    let params = match tag {
        Some(tag) => PushManifestParams::new().with_tag(tag.clone()),
        None => PushManifestParams::new(),
    };
    let manifest = store
        .push_manifest(
            &repo,
            manifest_bytes.clone(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .unwrap();
    assert_eq!(manifest.digest, Digest::sha256(&manifest_bytes));
    Pushed {
        manifest,
        manifest_bytes,
        config,
        config_bytes,
        layer,
        layer_bytes,
    }
}

/// A new layout in `dir` written by [`LayoutStore`], holding one linux/amd64 image tagged `v1`.
async fn layout_store_image(dir: &Path) -> Pushed {
    let store = LayoutStore::open(dir).await.unwrap();
    push_image(&store, "amd64", Some(&tag("v1"))).await
}

fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout
        .join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.encoded())
}

/// The entries of `layout`'s `index.json` named `tag` by their `ref.name`.
fn index_entries(layout: &Path, tag: &str) -> Vec<Value> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["annotations"][REF_NAME] == tag)
        .cloned()
        .collect()
}

/// The one `index.json` entry of `layout` for `tag`, as a descriptor.
fn index_entry(layout: &Path, tag: &str) -> Descriptor {
    let entries = index_entries(layout, tag);
    assert_eq!(
        entries.len(),
        1,
        "{}: expected one entry for {tag}",
        layout.display()
    );
    serde_json::from_value(entries[0].clone()).unwrap()
}

/// The bytes `store` serves for a manifest and for a blob must be those of the file the peer
/// wrote.
fn assert_same_as_file(layout: &Path, what: &str, digest: &Digest, served: &[u8]) {
    let path = blob_path(layout, digest);
    let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        served == on_disk.as_slice(),
        "{what} {digest}: LayoutStore served {} bytes that differ from {} ({} bytes)",
        served.len(),
        path.display(),
        on_disk.len()
    );
}

/// Reads, through `store`, `top` and everything it references (index children, configs,
/// layers), each as a verified stream, and checks each byte for byte against its file in
/// `layout`. Returns the digests read, manifests first within each image.
async fn read_back(store: &LayoutStore, layout: &Path, top: &Descriptor) -> Vec<Digest> {
    let repo = repo();
    let mut read = Vec::new();
    let mut queue = vec![top.clone()];
    while let Some(expected) = queue.pop() {
        let reader = store
            .get_manifest(&repo, &expected.digest)
            .await
            .unwrap_or_else(|e| panic!("get_manifest {}: {e}", expected.digest));
        let served = reader.descriptor().clone();
        assert_eq!(
            (&served.media_type, served.size),
            (&expected.media_type, expected.size),
            "manifest {}: descriptor served by LayoutStore",
            expected.digest
        );
        let bytes = reader
            .bytes(MAX_BLOB)
            .await
            .unwrap_or_else(|e| panic!("reading manifest {}: {e}", expected.digest));
        assert_same_as_file(layout, "manifest", &expected.digest, &bytes);
        read.push(expected.digest.clone());
        match Manifest::parse(&bytes, &expected.media_type)
            .unwrap_or_else(|e| panic!("manifest {}: {e}", expected.digest))
        {
            Manifest::Index(index) => queue.extend(index.manifests),
            Manifest::Image(image) => {
                for blob in std::iter::once(&image.config).chain(&image.layers) {
                    let reader = store
                        .get_blob(&repo, &blob.digest)
                        .await
                        .unwrap_or_else(|e| panic!("get_blob {}: {e}", blob.digest));
                    assert_eq!(reader.descriptor().size, blob.size, "blob {}", blob.digest);
                    let bytes = reader
                        .bytes(MAX_BLOB)
                        .await
                        .unwrap_or_else(|e| panic!("reading blob {}: {e}", blob.digest));
                    assert_same_as_file(layout, blob.media_type.as_str(), &blob.digest, &bytes);
                    read.push(blob.digest.clone());
                }
            }
            other => panic!("manifest {}: unexpected {other:?}", expected.digest),
        }
    }
    read
}

/// The image manifest `tag` points at in `store`.
async fn image_of(store: &LayoutStore, tag: &Tag) -> ImageManifest {
    let reader = store.get_tag(&repo(), tag).await.unwrap();
    let media_type = reader.descriptor().media_type.clone();
    let bytes = reader.bytes(MAX_BLOB).await.unwrap();
    match Manifest::parse(&bytes, &media_type).unwrap() {
        Manifest::Image(image) => image,
        other => panic!("{tag}: expected an image manifest, got {other:?}"),
    }
}

/// The tags of `store`'s default repository.
async fn tags_of(store: &LayoutStore) -> BTreeSet<String> {
    store
        .tags(&repo(), &ListParams::new())
        .map_ok(|t| t.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// The uncompressed content of a gzip layer.
fn gunzip(layer: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(layer)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The content of the regular file `path` in an uncompressed layer tar, if there.
fn file_in_tar(tar: &[u8], path: &str) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.trim_start_matches("./") == path {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            return Some(content);
        }
    }
    None
}

#[tokio::test]
async fn umoci_stats_and_unpacks_an_image_written_by_layout_store() {
    let Some(umoci) = peer("umoci") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    layout_store_image(&layout).await;

    // stat reads the manifest and the config: the history shows.
    let stat = run(&umoci, ["stat", "--image", &umoci_ref(&layout, "v1")]);
    let stat = String::from_utf8_lossy(&stat.stdout);
    assert!(
        stat.contains(CREATED_BY),
        "umoci stat shows no history:\n{stat}"
    );
    let stat = run(
        &umoci,
        ["stat", "--json", "--image", &umoci_ref(&layout, "v1")],
    );
    let stat: Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(stat["history"][0]["created_by"], CREATED_BY, "{stat}");

    // unpack applies the layer (checking its diff_id) and turns the config into a runtime spec.
    let bundle = tmp.path().join("bundle");
    run(
        &umoci,
        [
            "unpack".as_ref(),
            "--rootless".as_ref(),
            "--image".as_ref(),
            umoci_ref(&layout, "v1").as_ref(),
            bundle.as_os_str(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("etc").is_dir());
    assert_eq!(
        std::fs::read(rootfs.join("etc/greeting")).unwrap(),
        GREETING
    );
    assert_eq!(std::fs::read(rootfs.join("etc/arch")).unwrap(), b"amd64");
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/motd")).unwrap(),
        Path::new("greeting")
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(CMD), "runtime spec: {spec}");
}

#[tokio::test]
async fn skopeo_inspects_an_image_written_by_layout_store() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let ours = layout_store_image(&layout).await;
    let name = oci_ref(&layout, "v1");

    let inspect = skopeo(&skopeo_bin, &["inspect", &name]);
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspect["Digest"],
        ours.manifest.digest.as_str(),
        "{inspect}"
    );
    assert_eq!(inspect["Architecture"], "amd64", "{inspect}");
    assert_eq!(inspect["Os"], "linux", "{inspect}");
    assert_eq!(
        inspect["Layers"],
        json!([ours.layer.digest.as_str()]),
        "{inspect}"
    );

    let raw = skopeo(&skopeo_bin, &["inspect", "--raw", &name]);
    assert!(
        raw.stdout == ours.manifest_bytes,
        "skopeo inspect --raw: not the manifest we pushed"
    );
    let config = skopeo(&skopeo_bin, &["inspect", "--config", "--raw", &name]);
    assert!(
        config.stdout == ours.config_bytes,
        "skopeo inspect --config --raw: not the config we pushed"
    );
}

#[tokio::test]
async fn skopeo_copies_an_image_written_by_layout_store_keeping_its_digests() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (layout, other) = (tmp.path().join("layout"), tmp.path().join("other"));
    let ours = layout_store_image(&layout).await;

    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            &oci_ref(&layout, "v1"),
            &oci_ref(&other, "v1"),
        ],
    );
    let entry = index_entry(&other, "v1");
    assert_eq!(
        entry.digest, ours.manifest.digest,
        "skopeo copy changed the manifest digest"
    );
    assert_eq!(entry.media_type.as_str(), media_type::OCI_MANIFEST);
    assert_eq!(entry.size, ours.manifest_bytes.len() as u64);

    // The copy opens in LayoutStore and reads back as what we pushed, byte for byte.
    let store = LayoutStore::open(&other).await.unwrap();
    assert_eq!(tags_of(&store).await, BTreeSet::from(["v1".to_owned()]));
    let resolved = store.resolve_tag(&repo(), &tag("v1")).await.unwrap();
    assert_eq!(resolved.digest, ours.manifest.digest);
    let read = read_back(&store, &other, &resolved).await;
    assert_eq!(read, ours.blobs().map(|(digest, _)| digest.clone()));
    for (digest, bytes) in ours.blobs() {
        assert_same_as_file(&other, "what we pushed", digest, bytes);
    }
}

#[tokio::test]
async fn a_layout_written_by_umoci_reads_back_byte_for_byte() {
    let Some(umoci) = peer("umoci") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let bundle = tmp.path().join("bundle");
    run(
        &umoci,
        ["init".as_ref(), "--layout".as_ref(), layout.as_os_str()],
    );
    run(&umoci, ["new", "--image", &umoci_ref(&layout, "base")]);
    run(
        &umoci,
        [
            "unpack".as_ref(),
            "--rootless".as_ref(),
            "--image".as_ref(),
            umoci_ref(&layout, "base").as_ref(),
            bundle.as_os_str(),
        ],
    );
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/greeting"), GREETING).unwrap();
    run(
        &umoci,
        [
            "repack".as_ref(),
            "--image".as_ref(),
            umoci_ref(&layout, "v2").as_ref(),
            bundle.as_os_str(),
        ],
    );

    let store = LayoutStore::open(&layout).await.unwrap();
    assert_eq!(
        tags_of(&store).await,
        BTreeSet::from(["base".to_owned(), "v2".to_owned()])
    );
    let mut layers = Vec::new();
    for name in ["base", "v2"] {
        let resolved = store.resolve_tag(&repo(), &tag(name)).await.unwrap();
        let entry = index_entry(&layout, name);
        assert_eq!(resolved.digest, entry.digest, "{name}");
        assert_eq!(resolved.media_type, entry.media_type, "{name}");
        let read = read_back(&store, &layout, &resolved).await;
        let image = image_of(&store, &tag(name)).await;
        assert_eq!(read.len(), 2 + image.layers.len(), "{name}: {read:?}");
        layers.push(image.layers);
    }
    let (base, v2) = (&layers[0], &layers[1]);
    assert_eq!(v2.len(), base.len() + 1, "v2 has one more layer than base");
    assert_eq!(v2[..base.len()], base[..]);

    // The new layer, read through the store, holds the file added to the bundle, and its
    // uncompressed digest is the diff_id umoci wrote into the config.
    let added = v2.last().unwrap();
    let layer = store
        .get_blob_bytes(&repo(), &added.digest, MAX_BLOB)
        .await
        .unwrap();
    let tar = gunzip(&layer);
    assert_eq!(file_in_tar(&tar, "etc/greeting").as_deref(), Some(GREETING));
    let config = image_of(&store, &tag("v2")).await.config;
    let config: Value = serde_json::from_slice(
        &store
            .get_blob_bytes(&repo(), &config.digest, MAX_BLOB)
            .await
            .unwrap(),
    )
    .unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), v2.len());
    assert_eq!(
        diff_ids.last().unwrap(),
        Digest::sha256(&tar).as_str(),
        "diff_id of the added layer"
    );

    // LayoutStore adds an image to umoci's layout: umoci's entries stay as they were, and umoci
    // reads all three tags.
    let before = [index_entry(&layout, "base"), index_entry(&layout, "v2")];
    push_image(&store, "amd64", Some(&tag("ours"))).await;
    assert_eq!(
        [index_entry(&layout, "base"), index_entry(&layout, "v2")],
        before
    );
    let list = run(
        &umoci,
        ["ls".as_ref(), "--layout".as_ref(), layout.as_os_str()],
    );
    let listed: BTreeSet<&str> = std::str::from_utf8(&list.stdout).unwrap().lines().collect();
    assert_eq!(listed, BTreeSet::from(["base", "ours", "v2"]));
    for name in ["base", "v2", "ours"] {
        run(&umoci, ["stat", "--image", &umoci_ref(&layout, name)]);
    }
}

#[tokio::test]
async fn layouts_written_by_skopeo_read_back_byte_for_byte() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    layout_store_image(&ours).await;
    let tarball = tmp.path().join("layer.tar.gz");
    // Not our layer: skopeo would reuse it instead of compressing it with zstd below.
    std::fs::write(&tarball, gzip_layer("tarball").0).unwrap();

    // Three images skopeo writes itself into one layout: one it makes from a bare layer tar
    // (its own config and manifest, with no mediaType field), and ours rewritten with zstd
    // layers and as a Docker schema 2 manifest.
    let from_tarball = format!("tarball:{}", tarball.display());
    skopeo(
        &skopeo_bin,
        &["copy", "-q", &from_tarball, &oci_ref(&theirs, "tarball")],
    );
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--dest-compress-format",
            "zstd",
            &oci_ref(&ours, "v1"),
            &oci_ref(&theirs, "zstd"),
        ],
    );
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--format",
            "v2s2",
            &oci_ref(&ours, "v1"),
            &oci_ref(&theirs, "docker"),
        ],
    );
    // And a copy of those by skopeo, skopeo reading its own layout.
    let copied = tmp.path().join("copied");
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--format",
            "oci",
            &oci_ref(&theirs, "zstd"),
            &oci_ref(&copied, "zstd"),
        ],
    );

    let store = LayoutStore::open(&theirs).await.unwrap();
    assert_eq!(
        tags_of(&store).await,
        BTreeSet::from(["docker", "tarball", "zstd"].map(str::to_owned))
    );
    let expected_types = [
        (
            "tarball",
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_GZIP,
        ),
        (
            "zstd",
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_ZSTD,
        ),
        (
            "docker",
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP,
        ),
    ];
    for (name, manifest_type, config_type, layer_type) in expected_types {
        let entry = index_entry(&theirs, name);
        let resolved = store.resolve_tag(&repo(), &tag(name)).await.unwrap();
        assert_eq!(resolved.digest, entry.digest, "{name}");
        assert_eq!(resolved.media_type.as_str(), manifest_type, "{name}");
        let read = read_back(&store, &theirs, &resolved).await;
        assert_eq!(read.len(), 3, "{name}: manifest, config, layer: {read:?}");
        let image = image_of(&store, &tag(name)).await;
        assert_eq!(image.config.media_type.as_str(), config_type, "{name}");
        assert_eq!(image.layers.len(), 1, "{name}");
        assert_eq!(image.layers[0].media_type.as_str(), layer_type, "{name}");
    }

    let store = LayoutStore::open(&copied).await.unwrap();
    let resolved = store.resolve_tag(&repo(), &tag("zstd")).await.unwrap();
    assert_eq!(resolved.digest, index_entry(&theirs, "zstd").digest);
    assert_eq!(read_back(&store, &copied, &resolved).await.len(), 3);

    // LayoutStore adds an image to skopeo's layout: skopeo's entries stay as they were, and
    // skopeo reads every tag, ours too, except "docker": skopeo 1.9 writes a Docker manifest
    // into a layout but looks up only OCI manifest and index entries ("no descriptor found for
    // reference"), before LayoutStore touches the layout as after.
    let store = LayoutStore::open(&theirs).await.unwrap();
    let names = ["docker", "tarball", "zstd"];
    let before = names.map(|name| index_entries(&theirs, name));
    let pushed = push_image(&store, "amd64", Some(&tag("ours"))).await;
    assert_eq!(names.map(|name| index_entries(&theirs, name)), before);
    for name in ["tarball", "zstd", "ours"] {
        let inspect = skopeo(&skopeo_bin, &["inspect", &oci_ref(&theirs, name)]);
        let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let expected = match name {
            "ours" => pushed.manifest.digest.clone(),
            _ => index_entry(&theirs, name).digest,
        };
        assert_eq!(inspect["Digest"], expected.as_str(), "{name}: {inspect}");
    }
}

#[tokio::test]
async fn skopeo_copies_a_multi_arch_index_written_by_layout_store_keeping_its_digests() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (layout, all, one) = (
        tmp.path().join("layout"),
        tmp.path().join("all"),
        tmp.path().join("one"),
    );
    let store = LayoutStore::open(&layout).await.unwrap();
    let amd64 = push_image(&store, "amd64", None).await;
    let arm64 = push_image(&store, "arm64", None).await;
    let platform = |p: &str| p.parse::<Platform>().unwrap();
    let index_bytes = Bytes::from(
        ImageIndex::new(vec![
            amd64
                .manifest
                .clone()
                .with_platform(platform("linux/amd64")),
            arm64
                .manifest
                .clone()
                .with_platform(platform("linux/arm64")),
        ])
        .to_json(),
    );
    let index = store
        .push_manifest(
            &repo(),
            index_bytes.clone(),
            &MediaType::from_static(media_type::OCI_INDEX),
            &PushManifestParams::new().with_tag(tag("multi")),
        )
        .await
        .unwrap();

    let raw = skopeo(
        &skopeo_bin,
        &["inspect", "--raw", &oci_ref(&layout, "multi")],
    );
    assert!(
        raw.stdout == index_bytes,
        "skopeo inspect --raw: not the index we pushed"
    );

    // --all copies the index and both images as they are.
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--all",
            &oci_ref(&layout, "multi"),
            &oci_ref(&all, "multi"),
        ],
    );
    let entry = index_entry(&all, "multi");
    assert_eq!(
        entry.digest, index.digest,
        "skopeo copy --all changed the index digest"
    );
    assert_eq!(entry.media_type.as_str(), media_type::OCI_INDEX);
    let copy = LayoutStore::open(&all).await.unwrap();
    let resolved = copy.resolve_tag(&repo(), &tag("multi")).await.unwrap();
    let read: BTreeSet<Digest> = read_back(&copy, &all, &resolved)
        .await
        .into_iter()
        .collect();
    let pushed: BTreeSet<Digest> = std::iter::once(index.digest.clone())
        .chain(
            [&amd64, &arm64]
                .iter()
                .flat_map(|p| p.blobs().map(|(d, _)| d.clone())),
        )
        .collect();
    assert_eq!(read, pushed);

    // Without --all skopeo picks the child of the platform asked for, by our platform fields.
    skopeo(
        &skopeo_bin,
        &[
            "--override-os",
            "linux",
            "--override-arch",
            "arm64",
            "copy",
            "-q",
            &oci_ref(&layout, "multi"),
            &oci_ref(&one, "arm64"),
        ],
    );
    assert_eq!(index_entry(&one, "arm64").digest, arm64.manifest.digest);
}
