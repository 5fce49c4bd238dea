//! The copy engine between memory stores: what is copied, skipped, mounted and selected, and
//! what a failure leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use oci_build::{
    CopyEvent, CopyOptions, Endpoint, Error, ManifestRef, PlatformFilter, copy, fetch_image,
};
use oci_store::conformance::Faulty;
use oci_store::{
    ErrorCode, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams, ReferrersParams,
};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, Manifest, MediaType, Platform, Repository, Tag,
    media_type,
};

fn repo(name: &str) -> Repository {
    Repository::parse(name).unwrap()
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

fn mt(value: &'static str) -> MediaType {
    MediaType::from_static(value)
}

/// Pushes an image for `platform` with `layers` layers of distinct content; returns its
/// manifest descriptor (with the platform set, ready for an index).
async fn push_image(
    store: &dyn OciInterface,
    repo: &Repository,
    platform: &str,
    layers: usize,
) -> Descriptor {
    let platform = Platform::parse(platform).unwrap();
    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "variant": platform.variant,
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let config = store
        .push_blob_bytes(
            repo,
            mt(media_type::OCI_CONFIG),
            Bytes::from(config.to_string()),
        )
        .await
        .unwrap();
    let mut descriptors = Vec::new();
    for n in 0..layers {
        let content = format!("{platform} layer {n} ").repeat(1000 + n * 77);
        descriptors.push(
            store
                .push_blob_bytes(repo, mt(media_type::OCI_LAYER_GZIP), Bytes::from(content))
                .await
                .unwrap(),
        );
    }
    let manifest = ImageManifest::new(config, descriptors).to_json();
    store
        .push_manifest(
            repo,
            manifest.into(),
            &mt(media_type::OCI_MANIFEST),
            &PushManifestParams::new(),
        )
        .await
        .unwrap()
        .with_platform(platform)
}

/// Pushes an index of images for `platforms` under `tag`; returns the index descriptor and
/// the children.
async fn push_index(
    store: &dyn OciInterface,
    repo: &Repository,
    platforms: &[&str],
    tag_name: &str,
) -> (Descriptor, Vec<Descriptor>) {
    let mut children = Vec::new();
    for platform in platforms {
        children.push(push_image(store, repo, platform, 2).await);
    }
    let index = ImageIndex::new(children.clone()).to_json();
    let index = store
        .push_manifest(
            repo,
            index.into(),
            &mt(media_type::OCI_INDEX),
            &PushManifestParams::new().with_tag(tag(tag_name)),
        )
        .await
        .unwrap();
    (index, children)
}

async fn tag_image(
    store: &dyn OciInterface,
    repo: &Repository,
    image: &Descriptor,
    tag_name: &str,
) {
    let bytes = store.get_manifest_bytes(repo, &image.digest).await;
    store
        .push_manifest(
            repo,
            bytes,
            &image.media_type,
            &PushManifestParams::new().with_tag(tag(tag_name)),
        )
        .await
        .unwrap();
}

trait ManifestBytes {
    async fn get_manifest_bytes(&self, repo: &Repository, digest: &Digest) -> Bytes;
}

impl<T: OciInterface + ?Sized> ManifestBytes for T {
    async fn get_manifest_bytes(&self, repo: &Repository, digest: &Digest) -> Bytes {
        self.get_manifest(repo, digest)
            .await
            .unwrap()
            .bytes(1 << 22)
            .await
            .unwrap()
    }
}

async fn has_blob(store: &dyn OciInterface, repo: &Repository, digest: &Digest) -> bool {
    store.resolve_blob(repo, digest).await.is_ok()
}

async fn blobs_of(
    store: &dyn OciInterface,
    repo: &Repository,
    image: &Descriptor,
) -> Vec<Descriptor> {
    let bytes = store.get_manifest_bytes(repo, &image.digest).await;
    match Manifest::parse(&bytes, &image.media_type).unwrap() {
        Manifest::Image(m) => std::iter::once(m.config).chain(m.layers).collect(),
        _ => panic!("not an image"),
    }
}

fn only(platforms: &[&str]) -> CopyOptions {
    CopyOptions::default().with_platforms(PlatformFilter::Only(
        platforms
            .iter()
            .map(|p| Platform::parse(p).unwrap())
            .collect(),
    ))
}

#[tokio::test]
async fn an_image_is_copied_whole_and_tagged() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let (from, to) = (repo("src/app"), repo("dst/app"));
    let image = push_image(&src, &from, "linux/amd64", 3).await;
    tag_image(&src, &from, &image, "v1").await;

    let report = copy(
        Endpoint::new(&src, &from),
        &ManifestRef::Tag(tag("v1")),
        Endpoint::new(&dst, &to),
        &[tag("v1"), tag("latest")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();

    assert_eq!(report.root.as_ref().unwrap().digest, image.digest);
    assert_eq!(
        (
            report.blobs_copied,
            report.blobs_skipped,
            report.manifests_pushed
        ),
        (4, 0, 1)
    );
    let expected_bytes: u64 = blobs_of(&src, &from, &image)
        .await
        .iter()
        .map(|d| d.size)
        .sum();
    assert_eq!(report.bytes_copied, expected_bytes);
    for t in ["v1", "latest"] {
        assert_eq!(
            dst.resolve_tag(&to, &tag(t)).await.unwrap().digest,
            image.digest
        );
    }
    assert_eq!(
        dst.get_manifest_bytes(&to, &image.digest).await,
        src.get_manifest_bytes(&from, &image.digest).await
    );
}

#[tokio::test]
async fn a_whole_index_keeps_its_digest() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("multi");
    let (index, children) = push_index(
        &src,
        &r,
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        "1.0",
    )
    .await;

    let report = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();

    assert_eq!(report.root.unwrap().digest, index.digest);
    assert_eq!(
        dst.resolve_tag(&r, &tag("1.0")).await.unwrap().digest,
        index.digest
    );
    assert_eq!(report.manifests_pushed, 4);
    for child in &children {
        for blob in blobs_of(&src, &r, child).await {
            assert!(has_blob(&dst, &r, &blob.digest).await);
        }
    }
}

#[tokio::test]
async fn one_platform_copies_that_image_alone() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("multi");
    let (_, children) = push_index(&src, &r, &["linux/amd64", "linux/arm64"], "1.0").await;

    let report = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &only(&["linux/arm64"]),
    )
    .await
    .unwrap();

    assert_eq!(report.root.unwrap().digest, children[1].digest);
    assert_eq!(
        dst.resolve_tag(&r, &tag("1.0")).await.unwrap().digest,
        children[1].digest
    );
    for blob in blobs_of(&src, &r, &children[0]).await {
        assert!(!has_blob(&dst, &r, &blob.digest).await, "amd64 blob copied");
    }
}

#[tokio::test]
async fn arm_v6_falls_back_to_v5_not_v7() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("arm");
    let (_, children) = push_index(
        &src,
        &r,
        &["linux/arm/v7", "linux/arm/v5", "linux/amd64"],
        "t",
    )
    .await;

    let report = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("t")),
        Endpoint::new(&dst, &r),
        &[tag("t")],
        &only(&["linux/arm/v6"]),
    )
    .await
    .unwrap();
    assert_eq!(report.root.unwrap().digest, children[1].digest);

    let image = fetch_image(
        &src,
        &r,
        &ManifestRef::Tag(tag("t")),
        Some(&Platform::parse("linux/riscv64").unwrap()),
    )
    .await;
    assert!(
        matches!(image, Err(Error::NoMatchingPlatform { .. })),
        "{image:?}"
    );
    let image = fetch_image(
        &src,
        &r,
        &ManifestRef::Tag(tag("t")),
        Some(&Platform::parse("linux/arm/v7").unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(image.manifest_descriptor.digest, children[0].digest);
    assert!(String::from_utf8_lossy(&image.config).contains("\"v7\""));
}

#[tokio::test]
async fn several_platforms_make_a_narrower_index_in_source_order() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("multi");
    let (index, children) = push_index(
        &src,
        &r,
        &["linux/amd64", "linux/arm64", "linux/s390x"],
        "1.0",
    )
    .await;

    let report = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &only(&["linux/s390x", "linux/amd64"]),
    )
    .await
    .unwrap();

    let root = report.root.unwrap();
    assert_ne!(root.digest, index.digest);
    let bytes = dst.get_manifest_bytes(&r, &root.digest).await;
    let Manifest::Index(narrowed) = Manifest::parse(&bytes, &root.media_type).unwrap() else {
        panic!()
    };
    let digests: Vec<_> = narrowed
        .manifests
        .iter()
        .map(|c| c.digest.clone())
        .collect();
    assert_eq!(
        digests,
        vec![children[0].digest.clone(), children[2].digest.clone()]
    );
    assert!(dst.resolve_manifest(&r, &children[1].digest).await.is_err());
}

#[tokio::test]
async fn no_matching_platform_names_what_the_index_has() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("multi");
    push_index(&src, &r, &["linux/amd64", "linux/arm64"], "1.0").await;
    let error = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &only(&["windows/amd64"]),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("windows/amd64") && message.contains("linux/amd64, linux/arm64"),
        "{message}"
    );
    assert!(dst.resolve_tag(&r, &tag("1.0")).await.is_err());
}

#[tokio::test]
async fn a_second_copy_reads_no_blob_and_a_partial_target_gets_only_what_is_missing() {
    let src = Faulty::new(MemoryStore::new());
    let dst = MemoryStore::new();
    let r = repo("app");
    let (_, children) = push_index(&src, &r, &["linux/amd64", "linux/arm64"], "1.0").await;
    // The target already has the amd64 image's blobs (as after an interrupted copy).
    let mut present_bytes = 0;
    for blob in blobs_of(&src, &r, &children[0]).await {
        let content = src.get_blob_bytes(&r, &blob.digest, 1 << 30).await.unwrap();
        present_bytes += content.len() as u64;
        dst.push_blob_bytes(&r, blob.media_type.clone(), content)
            .await
            .unwrap();
    }
    let reads_before = src.calls("get_blob");
    let first = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((first.blobs_skipped, first.blobs_copied), (3, 3));
    assert_eq!(
        src.calls("get_blob") - reads_before,
        3,
        "only the missing blobs are read"
    );
    let total: u64 = blobs_of(&src, &r, &children[1])
        .await
        .iter()
        .map(|d| d.size)
        .sum();
    assert_eq!(first.bytes_copied, total);
    assert!(present_bytes > 0);

    let reads_before = src.calls("get_blob");
    let second = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(src.calls("get_blob"), reads_before);
    assert_eq!(
        (
            second.blobs_copied,
            second.manifests_pushed,
            second.manifests_skipped
        ),
        (0, 1, 0)
    );
}

#[tokio::test]
async fn a_failed_blob_leaves_no_tag_and_no_manifest() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("app");
    let (index, children) = push_index(&src, &r, &["linux/amd64", "linux/arm64"], "1.0").await;
    let victim = blobs_of(&src, &r, &children[1]).await[2].digest.clone();
    assert!(src.corrupt_blob_for_tests(&victim));

    let error = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("1.0")),
        Endpoint::new(&dst, &r),
        &[tag("1.0")],
        &CopyOptions::default().with_jobs(2),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains(&victim.to_string()), "{error}");
    assert_eq!(
        error.store_error().and_then(|e| e.code()),
        Some(ErrorCode::DigestInvalid),
        "{error:?}"
    );
    assert!(dst.resolve_tag(&r, &tag("1.0")).await.is_err());
    assert!(dst.resolve_manifest(&r, &index.digest).await.is_err());
    assert!(!has_blob(&dst, &r, &victim).await);
}

#[tokio::test]
async fn blobs_are_mounted_within_one_store() {
    let store = MemoryStore::new();
    let (from, to) = (repo("team/a"), repo("team/b"));
    let image = push_image(&store, &from, "linux/amd64", 2).await;
    tag_image(&store, &from, &image, "v1").await;
    let options = CopyOptions::default().with_mount(true);
    let report = copy(
        Endpoint::new(&store, &from),
        &ManifestRef::Tag(tag("v1")),
        Endpoint::new(&store, &to),
        &[tag("v1")],
        &options,
    )
    .await
    .unwrap();
    assert_eq!((report.blobs_mounted, report.blobs_copied), (3, 0));
    assert_eq!(
        store.resolve_tag(&to, &tag("v1")).await.unwrap().digest,
        image.digest
    );
}

#[tokio::test]
async fn referrers_come_along_when_asked_recursively() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("signed");
    let image = push_image(&src, &r, "linux/amd64", 1).await;
    tag_image(&src, &r, &image, "v1").await;
    let empty = src
        .push_blob_bytes(&r, mt(media_type::OCI_EMPTY), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let push_referrer = |subject: Descriptor, kind: &'static str| {
        let (src, r, empty) = (&src, &r, empty.clone());
        async move {
            let mut manifest = ImageManifest::new(empty, Vec::new());
            manifest.artifact_type = Some(mt(kind));
            manifest.subject = Some(Descriptor::new(
                subject.media_type.clone(),
                subject.digest.clone(),
                subject.size,
            ));
            src.push_manifest(
                r,
                manifest.to_json().into(),
                &mt(media_type::OCI_MANIFEST),
                &PushManifestParams::new(),
            )
            .await
            .unwrap()
        }
    };
    let sbom = push_referrer(image.clone(), "application/spdx+json").await;
    let signature = push_referrer(
        sbom.clone(),
        "application/vnd.dev.cosign.artifact.sig.v1+json",
    )
    .await;

    let without = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("v1")),
        Endpoint::new(&dst, &r),
        &[tag("v1")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(without.referrers, 0);
    assert!(dst.resolve_manifest(&r, &sbom.digest).await.is_err());

    let with = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("v1")),
        Endpoint::new(&dst, &r),
        &[tag("v1")],
        &CopyOptions::default().with_referrers(true),
    )
    .await
    .unwrap();
    assert_eq!(with.referrers, 2);
    let listed: Vec<Descriptor> = dst
        .referrers(&r, &image.digest, &ReferrersParams::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, sbom.digest);
    assert!(dst.resolve_manifest(&r, &signature.digest).await.is_ok());
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    Bytes::from(encoder.finish().unwrap())
}

#[tokio::test]
async fn schema1_is_converted_to_schema2() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("legacy");
    let base = b"base layer tar bytes".repeat(500);
    let top = b"top layer tar bytes".repeat(300);
    let base_blob = src
        .push_blob_bytes(&r, mt(media_type::DOCKER_LAYER_GZIP), gzip(&base))
        .await
        .unwrap();
    let empty_blob = src
        .push_blob_bytes(&r, mt(media_type::DOCKER_LAYER_GZIP), gzip(b""))
        .await
        .unwrap();
    let top_blob = src
        .push_blob_bytes(&r, mt(media_type::DOCKER_LAYER_GZIP), gzip(&top))
        .await
        .unwrap();
    let v1 = |id: &str, parent: Option<&str>, cmd: &str, throwaway: bool| {
        let mut object = serde_json::json!({
            "id": id, "created": "2016-01-02T03:04:05Z",
            "container_config": {"Cmd": ["/bin/sh", "-c", cmd]},
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["sh"]},
        });
        if let Some(parent) = parent {
            object["parent"] = parent.into();
        }
        if throwaway {
            object["throwaway"] = true.into();
        }
        serde_json::json!({ "v1Compatibility": object.to_string() })
    };
    // Newest first, as schema 1 lists them.
    let manifest = serde_json::json!({
        "schemaVersion": 1, "name": "legacy", "tag": "old", "architecture": "amd64",
        "fsLayers": [
            {"blobSum": top_blob.digest.to_string()},
            {"blobSum": empty_blob.digest.to_string()},
            {"blobSum": base_blob.digest.to_string()},
        ],
        "history": [v1("c", Some("b"), "echo top", false), v1("b", Some("a"), "#(nop) ENV X=1", true), v1("a", None, "#(nop) ADD base", false)],
    });
    let manifest = Bytes::from(manifest.to_string());
    src.push_manifest(
        &r,
        manifest,
        &mt(media_type::DOCKER_SCHEMA1_MANIFEST),
        &PushManifestParams::new().with_tag(tag("old")),
    )
    .await
    .unwrap();

    let report = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("old")),
        Endpoint::new(&dst, &r),
        &[tag("old")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    let root = report.root.unwrap();
    assert_eq!(root.media_type.as_str(), media_type::DOCKER_MANIFEST);
    let image = fetch_image(&dst, &r, &ManifestRef::Tag(tag("old")), None)
        .await
        .unwrap();
    assert_eq!(image.manifest_descriptor.digest, root.digest);
    let layers: Vec<_> = image.layers().iter().map(|l| l.digest.clone()).collect();
    assert_eq!(
        layers,
        vec![base_blob.digest.clone(), top_blob.digest.clone()],
        "oldest first, throwaway dropped"
    );
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([
            Digest::sha256(&base).to_string(),
            Digest::sha256(&top).to_string()
        ])
    );
    assert_eq!(config["history"].as_array().unwrap().len(), 3);
    assert_eq!(config["history"][1]["empty_layer"], true);
    assert_eq!(config["history"][2]["created_by"], "/bin/sh -c echo top");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(config.get("id").is_none() && config.get("parent").is_none());
}

/// A schema 1 manifest naming one layer many times has it read (to learn its diff_id) once:
/// each reference read the whole layer again, so a hostile manifest naming a large layer
/// thousands of times took thousands of reads.
#[tokio::test]
async fn schema1_reads_a_layer_named_many_times_once() {
    let (src, dst) = (Faulty::new(MemoryStore::new()), MemoryStore::new());
    let r = repo("legacy");
    let layer = src
        .push_blob_bytes(&r, mt(media_type::DOCKER_LAYER_GZIP), gzip(b"one layer"))
        .await
        .unwrap();
    let v1 = serde_json::json!({
        "v1Compatibility": serde_json::json!({"id": "a", "architecture": "amd64", "os": "linux"})
            .to_string()
    });
    let manifest = serde_json::json!({
        "schemaVersion": 1, "name": "legacy", "tag": "old", "architecture": "amd64",
        "fsLayers": vec![serde_json::json!({"blobSum": layer.digest.to_string()}); 50],
        "history": vec![v1; 50],
    });
    src.push_manifest(
        &r,
        Bytes::from(manifest.to_string()),
        &mt(media_type::DOCKER_SCHEMA1_MANIFEST),
        &PushManifestParams::new().with_tag(tag("old")),
    )
    .await
    .unwrap();
    let before = src.calls("get_blob");
    copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("old")),
        Endpoint::new(&dst, &r),
        &[tag("old")],
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    // One read for the diff_id, one for the transfer.
    assert!(
        src.calls("get_blob") - before <= 2,
        "{} reads",
        src.calls("get_blob") - before
    );
}

#[tokio::test]
async fn progress_events_add_up() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("app");
    let image = push_image(&src, &r, "linux/amd64", 3).await;
    tag_image(&src, &r, &image, "v1").await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let options = CopyOptions::default().with_progress(Some(Arc::new(move |event: &CopyEvent| {
        sink.lock().unwrap().push(event.clone())
    })));
    let report = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("v1")),
        Endpoint::new(&dst, &r),
        &[tag("v1")],
        &options,
    )
    .await
    .unwrap();
    let events = events.lock().unwrap();
    let progressed: u64 = events
        .iter()
        .map(|e| match e {
            CopyEvent::BlobProgress { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(progressed, report.bytes_copied);
    assert!(
        matches!(events[0], CopyEvent::Planned { blobs: 4, .. }),
        "{:?}",
        events[0]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, CopyEvent::BlobDone { .. }))
            .count(),
        4
    );
    assert!(
        matches!(events.last(), Some(CopyEvent::ManifestPushed { tags, .. }) if tags == &vec![tag("v1")])
    );
}

/// A source that serves ever wider indexes cannot make a copy plan (and hold) without bound:
/// past 100,000 manifests the copy stops with an error, before any is pushed.
#[tokio::test]
async fn a_copy_plans_a_bounded_number_of_manifests() {
    let (src, dst) = (MemoryStore::new(), MemoryStore::new());
    let r = repo("wide");
    let push = |bytes: Vec<u8>, tag_name: Option<&str>| {
        let (src, r) = (src.clone(), r.clone());
        let params = match tag_name {
            Some(name) => PushManifestParams::new().with_tag(tag(name)),
            None => PushManifestParams::new(),
        };
        async move {
            src.push_manifest(&r, bytes.into(), &mt(media_type::OCI_INDEX), &params)
                .await
                .unwrap()
        }
    };
    // 101 indexes of 1,000 empty indexes each (each one different by its annotation).
    let mut middles = Vec::new();
    for m in 0..101 {
        let mut leaves = Vec::new();
        for l in 0..1000 {
            let mut leaf = ImageIndex::new(Vec::new());
            leaf.annotations = [("n".to_owned(), format!("{m}.{l}"))].into();
            leaves.push(push(leaf.to_json(), None).await);
        }
        middles.push(push(ImageIndex::new(leaves).to_json(), None).await);
    }
    push(ImageIndex::new(middles).to_json(), Some("wide")).await;
    let error = copy(
        Endpoint::new(&src, &r),
        &ManifestRef::Tag(tag("wide")),
        Endpoint::new(&dst, &r),
        &[tag("wide")],
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("100000 manifests"), "{error}");
    assert!(
        dst.resolve_tag(&r, &tag("wide")).await.is_err(),
        "nothing tagged"
    );
}
