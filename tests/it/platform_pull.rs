//! What a pull does with the types and the store together: a reference as a person types it,
//! a multi-platform index in a store, the best child for a platform, and its config.

use bytes::Bytes;
use oci_store::{MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{
    Descriptor, ImageIndex, ImageManifest, Manifest, MediaType, Platform, PlatformMatcher,
    Reference, media_type,
};

/// Pushes one image per platform and an index of them tagged `1.0`; returns the store.
async fn multi_platform_store(reference: &Reference, platforms: &[&str]) -> MemoryStore {
    let store = MemoryStore::new();
    let repo = reference.repository();
    let mut children = Vec::new();
    for platform in platforms {
        let platform: Platform = platform.parse().unwrap();
        let config = format!(
            r#"{{"architecture":"{}","os":"{}","variant":"{}"}}"#,
            platform.architecture,
            platform.os,
            platform.variant.clone().unwrap_or_default()
        );
        let config = store
            .push_blob_bytes(
                repo,
                MediaType::from_static(media_type::OCI_CONFIG),
                Bytes::from(config),
            )
            .await
            .unwrap();
        let manifest = ImageManifest::new(config, vec![]).to_json();
        let pushed = store
            .push_manifest(
                repo,
                manifest.into(),
                &MediaType::from_static(media_type::OCI_MANIFEST),
                &PushManifestParams::new(),
            )
            .await
            .unwrap();
        children.push(pushed.with_platform(platform));
    }
    let tag = reference.tag().cloned().unwrap();
    store
        .push_manifest(
            repo,
            ImageIndex::new(children).to_json().into(),
            &MediaType::from_static(media_type::OCI_INDEX),
            &PushManifestParams::new().with_tag(tag),
        )
        .await
        .unwrap();
    store
}

/// Resolves `reference` in `store` and returns the config of the child that best runs on
/// `wanted`, or `None` when no child does.
async fn config_for(store: &MemoryStore, reference: &Reference, wanted: &str) -> Option<String> {
    let repo = reference.repository();
    let tag = reference.tag().unwrap();
    let index = store.get_tag(repo, tag).await.unwrap();
    let media_type = index.descriptor().media_type.clone();
    let bytes = index.bytes(1 << 20).await.unwrap();
    let Manifest::Index(index) = Manifest::parse(&bytes, &media_type).unwrap() else {
        panic!("expected an index");
    };
    let matcher = PlatformMatcher::new(&wanted.parse().unwrap());
    let platforms: Vec<Platform> = index
        .manifests
        .iter()
        .map(|d: &Descriptor| d.platform.clone().unwrap())
        .collect();
    let best = matcher.best(&platforms)?;
    let child = &index.manifests[best];
    let bytes = store
        .get_manifest(repo, &child.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    let Manifest::Image(image) = Manifest::parse(&bytes, &child.media_type).unwrap() else {
        panic!("expected an image manifest");
    };
    let config = store
        .get_blob_bytes(repo, &image.config.digest, 1 << 20)
        .await
        .unwrap();
    Some(String::from_utf8(config.to_vec()).unwrap())
}

#[tokio::test]
async fn a_pull_picks_the_best_platform_of_an_index() {
    let reference: Reference = "localhost:5000/team/app:1.0".parse().unwrap();
    let store = multi_platform_store(
        &reference,
        &[
            "linux/amd64",
            "linux/arm/v5",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/386",
        ],
    )
    .await;
    let arch_of = |config: Option<String>| -> Option<(String, String)> {
        let value: serde_json::Value = serde_json::from_str(&config?).ok()?;
        Some((
            value["architecture"].as_str()?.to_owned(),
            value["variant"].as_str()?.to_owned(),
        ))
    };
    let pick = |s: &str| {
        Some((
            s.split('/').next().unwrap().to_owned(),
            s.split('/').nth(1).unwrap_or("").to_owned(),
        ))
    };
    assert_eq!(
        arch_of(config_for(&store, &reference, "linux/arm64").await),
        pick("arm64/v8")
    );
    assert_eq!(
        arch_of(config_for(&store, &reference, "linux/aarch64").await),
        pick("arm64/v8")
    );
    assert_eq!(
        arch_of(config_for(&store, &reference, "linux/x86_64").await),
        pick("amd64")
    );
    assert_eq!(
        arch_of(config_for(&store, &reference, "linux/arm/v7").await),
        pick("arm/v7")
    );
    assert_eq!(
        arch_of(config_for(&store, &reference, "linux/armhf").await),
        pick("arm/v7")
    );
    assert_eq!(
        arch_of(config_for(&store, &reference, "linux/arm/v6").await),
        pick("arm/v5")
    );
    assert_eq!(config_for(&store, &reference, "linux/s390x").await, None);
    assert_eq!(config_for(&store, &reference, "windows/amd64").await, None);
}

#[tokio::test]
async fn docker_hub_names_are_read_as_docker_reads_them() {
    for (typed, expected) in [
        ("ubuntu", "docker.io/library/ubuntu:latest"),
        (
            "index.docker.io/library/ubuntu:22.04",
            "docker.io/library/ubuntu:22.04",
        ),
        ("ghcr.io/org/app:1.2", "ghcr.io/org/app:1.2"),
    ] {
        let reference: Reference = typed.parse().unwrap();
        assert_eq!(reference.to_string(), expected);
        let store = multi_platform_store(&reference, &["linux/amd64"]).await;
        let tags: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
            store.tags(reference.repository(), &Default::default()),
        )
        .await
        .unwrap();
        assert_eq!(tags, [reference.tag().cloned().unwrap()]);
    }
}
