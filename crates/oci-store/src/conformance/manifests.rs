//! Checks of manifest pushes and reads.

use bytes::Bytes;
use oci_types::{
    Algorithm, Descriptor, Digest, ImageManifest, MediaType, Platform, Repository, media_type,
};

use super::{
    Fixture, assert_code, assert_read_fails, config_type, index_of, push, push_image,
    push_manifest, read, seeded_bytes, tag,
};
use crate::{ErrorCode, PushManifestParams};

/// Reads a manifest by digest and checks bytes and media type.
async fn assert_manifest(
    f: &Fixture,
    repo: &Repository,
    digest: &Digest,
    bytes: &[u8],
    kind: &str,
) {
    let reader = f
        .store
        .get_manifest(repo, digest)
        .await
        .unwrap_or_else(|e| panic!("get_manifest {digest} in {repo}: {e}"));
    assert_eq!(
        reader.descriptor().media_type.as_str(),
        kind,
        "stored media type"
    );
    assert_eq!(&reader.descriptor().digest, digest);
    assert_eq!(
        read(reader).await.unwrap(),
        bytes,
        "manifest bytes kept exactly"
    );
    let resolved = f.store.resolve_manifest(repo, digest).await.unwrap();
    assert_eq!(
        (resolved.media_type.as_str(), resolved.size),
        (kind, bytes.len() as u64),
        "resolve_manifest"
    );
}

async fn assert_tag(f: &Fixture, repo: &Repository, name: &str, digest: &Digest, bytes: &[u8]) {
    let reader = f
        .store
        .get_tag(repo, &tag(name))
        .await
        .unwrap_or_else(|e| panic!("get_tag {name} in {repo}: {e}"));
    assert_eq!(
        &reader.descriptor().digest,
        digest,
        "tag {name} points at the manifest"
    );
    assert_eq!(read(reader).await.unwrap(), bytes);
    let resolved = f.store.resolve_tag(repo, &tag(name)).await.unwrap();
    assert_eq!(&resolved.digest, digest, "resolve_tag {name}");
}

async fn assert_no_manifest(f: &Fixture, repo: &Repository, bytes: &[u8]) {
    assert_code(
        f.store.resolve_manifest(repo, &Digest::sha256(bytes)).await,
        &[ErrorCode::ManifestUnknown, ErrorCode::NameUnknown],
        "a refused manifest",
    );
}

/// A manifest pushed without tags reads back by digest.
pub async fn manifest_push_by_digest(f: &Fixture) {
    let repo = f.repo("manifest_push_by_digest");
    let (bytes, pushed) = push_image(f, &repo, 1, &[]).await;
    assert_manifest(f, &repo, &pushed.digest, &bytes, media_type::OCI_MANIFEST).await;
}

/// A manifest pushed with a tag reads back by tag and by digest.
pub async fn manifest_push_with_tag(f: &Fixture) {
    let repo = f.repo("manifest_push_with_tag");
    let (bytes, pushed) = push_image(f, &repo, 2, &["v1"]).await;
    assert_tag(f, &repo, "v1", &pushed.digest, &bytes).await;
    assert_manifest(f, &repo, &pushed.digest, &bytes, media_type::OCI_MANIFEST).await;
}

/// Several tags in one push all point at the manifest.
pub async fn manifest_several_tags(f: &Fixture) {
    let repo = f.repo("manifest_several_tags");
    let (bytes, pushed) = push_image(f, &repo, 3, &["1", "1.2", "1.2.3", "latest"]).await;
    for name in ["1", "1.2", "1.2.3", "latest"] {
        assert_tag(f, &repo, name, &pushed.digest, &bytes).await;
    }
}

/// A manifest is stored as the exact bytes pushed: whitespace, key order and unknown fields.
pub async fn manifest_exact_bytes(f: &Fixture) {
    let repo = f.repo("manifest_exact_bytes");
    let config = push(f, &repo, "{}").await;
    let layer = push(f, &repo, seeded_bytes(5, 77)).await;
    let json = format!(
        "{{\n  \"layers\" : [ {{\"size\":{},\"digest\":\"{}\",\"mediaType\":\"{}\"}} ],\n\t\"schemaVersion\": 2,\
         \"x-unknown\": {{\"kept\": [1,2,3]}},\n  \"config\": {{\"mediaType\":\"{}\",\"size\":{},\"digest\":\"{}\"}},\
         \"mediaType\":\"{}\"   }}\n\n",
        layer.size,
        layer.digest,
        media_type::OCI_LAYER_GZIP,
        media_type::OCI_CONFIG,
        config.size,
        config.digest,
        media_type::OCI_MANIFEST,
    );
    let pushed = push_manifest(
        f,
        &repo,
        Bytes::from(json.clone()),
        media_type::OCI_MANIFEST,
        &["odd"],
    )
    .await;
    assert_manifest(
        f,
        &repo,
        &pushed.digest,
        json.as_bytes(),
        media_type::OCI_MANIFEST,
    )
    .await;
}

fn docker_manifest(config: &Descriptor, layer: &Descriptor) -> Bytes {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {"mediaType": media_type::DOCKER_CONFIG, "size": config.size, "digest": config.digest},
        "layers": [{"mediaType": media_type::DOCKER_LAYER_GZIP, "size": layer.size, "digest": layer.digest}],
    })
    .to_string()
    .into()
}

/// A Docker schema 2 manifest is accepted and kept with its media type.
pub async fn manifest_docker_v2(f: &Fixture) {
    let repo = f.repo("manifest_docker_v2");
    let config = push(f, &repo, r#"{"architecture":"amd64","os":"linux"}"#).await;
    let layer = push(f, &repo, seeded_bytes(6, 500)).await;
    let bytes = docker_manifest(&config, &layer);
    let pushed = push_manifest(
        f,
        &repo,
        bytes.clone(),
        media_type::DOCKER_MANIFEST,
        &["docker"],
    )
    .await;
    assert_manifest(
        f,
        &repo,
        &pushed.digest,
        &bytes,
        media_type::DOCKER_MANIFEST,
    )
    .await;
}

/// A Docker manifest list of Docker manifests is accepted.
pub async fn manifest_docker_list(f: &Fixture) {
    let repo = f.repo("manifest_docker_list");
    let mut children = Vec::new();
    for (seed, arch) in [(61, "amd64"), (62, "arm64")] {
        let config = push(
            f,
            &repo,
            format!(r#"{{"architecture":"{arch}","os":"linux"}}"#),
        )
        .await;
        let layer = push(f, &repo, seeded_bytes(seed, 300)).await;
        let bytes = docker_manifest(&config, &layer);
        let pushed = push_manifest(f, &repo, bytes, media_type::DOCKER_MANIFEST, &[]).await;
        children.push(serde_json::json!({
            "mediaType": media_type::DOCKER_MANIFEST, "size": pushed.size, "digest": pushed.digest,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let list: Bytes = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::DOCKER_MANIFEST_LIST, "manifests": children,
    })
    .to_string()
    .into();
    let pushed = push_manifest(
        f,
        &repo,
        list.clone(),
        media_type::DOCKER_MANIFEST_LIST,
        &["multi"],
    )
    .await;
    assert_manifest(
        f,
        &repo,
        &pushed.digest,
        &list,
        media_type::DOCKER_MANIFEST_LIST,
    )
    .await;
}

/// An OCI index of images is accepted once its children are there.
pub async fn manifest_index(f: &Fixture) {
    let repo = f.repo("manifest_index");
    let (_, mut amd) = push_image(f, &repo, 71, &[]).await;
    let (_, mut arm) = push_image(f, &repo, 72, &[]).await;
    amd.platform = Some(Platform::new("linux", "amd64"));
    arm.platform = Some(Platform::new("linux", "arm64").with_variant("v8"));
    let index = index_of(&[amd, arm]);
    let pushed = push_manifest(f, &repo, index.clone(), media_type::OCI_INDEX, &["all"]).await;
    assert_manifest(f, &repo, &pushed.digest, &index, media_type::OCI_INDEX).await;
    assert_tag(f, &repo, "all", &pushed.digest, &index).await;
}

async fn push_refused(
    f: &Fixture,
    repo: &Repository,
    bytes: &Bytes,
    kind: &'static str,
    codes: &[ErrorCode],
    what: &str,
) {
    let result = f
        .store
        .push_manifest(
            repo,
            bytes.clone(),
            &MediaType::from_static(kind),
            &PushManifestParams::new().with_tag(tag("refused")),
        )
        .await;
    assert_code(result, codes, what);
    assert_no_manifest(f, repo, bytes).await;
    assert_code(
        f.store.resolve_tag(repo, &tag("refused")).await,
        &[ErrorCode::ManifestUnknown, ErrorCode::NameUnknown],
        "the tag of a refused manifest",
    );
}

/// A manifest whose config is missing is `MANIFEST_BLOB_UNKNOWN`.
pub async fn manifest_missing_config(f: &Fixture) {
    let repo = f.repo("manifest_missing_config");
    let layer = push(f, &repo, "layer").await;
    let config = Descriptor::of_bytes(config_type(), b"{\"never\":\"pushed\"}");
    let bytes = Bytes::from(ImageManifest::new(config, vec![layer]).to_json());
    push_refused(
        f,
        &repo,
        &bytes,
        media_type::OCI_MANIFEST,
        &[ErrorCode::ManifestBlobUnknown],
        "missing config",
    )
    .await;
}

/// A manifest whose layer is missing is `MANIFEST_BLOB_UNKNOWN`.
pub async fn manifest_missing_layer(f: &Fixture) {
    let repo = f.repo("manifest_missing_layer");
    let mut config = push(f, &repo, "{}").await;
    config.media_type = config_type();
    let present = push(f, &repo, "present layer").await;
    let missing = Descriptor::of_bytes(
        MediaType::from_static(media_type::OCI_LAYER_GZIP),
        b"missing layer",
    );
    let bytes = Bytes::from(ImageManifest::new(config, vec![present, missing]).to_json());
    push_refused(
        f,
        &repo,
        &bytes,
        media_type::OCI_MANIFEST,
        &[ErrorCode::ManifestBlobUnknown],
        "missing layer",
    )
    .await;
}

/// An index whose child manifest is missing is `MANIFEST_BLOB_UNKNOWN`.
pub async fn manifest_index_missing_child(f: &Fixture) {
    let repo = f.repo("manifest_index_missing_child");
    let (_, present) = push_image(f, &repo, 81, &[]).await;
    let missing = Descriptor::of_bytes(
        MediaType::from_static(media_type::OCI_MANIFEST),
        b"{\"schemaVersion\":2}",
    );
    let bytes = index_of(&[present, missing]);
    push_refused(
        f,
        &repo,
        &bytes,
        media_type::OCI_INDEX,
        &[ErrorCode::ManifestBlobUnknown],
        "missing child",
    )
    .await;
}

/// A manifest of a kind the store does not know is refused when its usual reference fields
/// hold something that is not a digest, or its `manifests` name children that are not there:
/// whatever reads it (a collection of garbage, a copy) takes them for references, and one such
/// push stopped every later collection of a bucket.
pub async fn manifest_unknown_kind_references(f: &Fixture) {
    let repo = f.repo("manifest_unknown_kind_references");
    push(f, &repo, "anchor").await;
    let kind = "application/vnd.example.thing+json";
    let not_a_digest = Bytes::from_static(br#"{"layers":[{"digest":"x","size":1}]}"#);
    let codes = [ErrorCode::ManifestInvalid, ErrorCode::Unsupported];
    push_refused(f, &repo, &not_a_digest, kind, &codes, "a layer digest x").await;
    let missing = Descriptor::of_bytes(
        MediaType::from_static(media_type::OCI_MANIFEST),
        b"{\"schemaVersion\":2,\"missing\":true}",
    );
    let child = serde_json::to_string(&missing).unwrap_or_default();
    let orphan = Bytes::from(format!(r#"{{"manifests":[{child}]}}"#));
    let codes = [
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::Unsupported,
    ];
    push_refused(f, &repo, &orphan, kind, &codes, "a missing child").await;
}

/// A manifest whose subject does not exist is accepted (referrers may arrive first).
pub async fn manifest_dangling_subject(f: &Fixture) {
    let repo = f.repo("manifest_dangling_subject");
    let empty = push(f, &repo, "{}").await;
    let mut manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_EMPTY),
            empty.digest,
            2,
        ),
        vec![],
    );
    manifest.artifact_type = Some(MediaType::from_static("application/vnd.example.signature"));
    manifest.subject = Some(Descriptor::of_bytes(
        MediaType::from_static(media_type::OCI_MANIFEST),
        b"a manifest that is not here",
    ));
    let bytes = Bytes::from(manifest.to_json());
    let pushed = push_manifest(f, &repo, bytes.clone(), media_type::OCI_MANIFEST, &[]).await;
    assert_manifest(f, &repo, &pushed.digest, &bytes, media_type::OCI_MANIFEST).await;
}

/// Bytes that are not JSON are `MANIFEST_INVALID`, for known and unknown media types alike.
pub async fn manifest_invalid_json(f: &Fixture) {
    let repo = f.repo("manifest_invalid_json");
    push(f, &repo, "anchor").await;
    let bytes = Bytes::from_static(b"{\"schemaVersion\": 2, \"config\": ");
    push_refused(
        f,
        &repo,
        &bytes,
        media_type::OCI_MANIFEST,
        &[ErrorCode::ManifestInvalid],
        "truncated JSON",
    )
    .await;
    push_refused(
        f,
        &repo,
        &bytes,
        media_type::OCI_INDEX,
        &[ErrorCode::ManifestInvalid],
        "truncated JSON index",
    )
    .await;
    let wrong_shape = Bytes::from_static(b"{\"schemaVersion\": 2, \"layers\": \"none\"}");
    push_refused(
        f,
        &repo,
        &wrong_shape,
        media_type::OCI_MANIFEST,
        &[ErrorCode::ManifestInvalid],
        "manifest without config",
    )
    .await;
}

/// A manifest whose `mediaType` field contradicts the media type it is pushed as is
/// `MANIFEST_INVALID`.
pub async fn manifest_media_type_mismatch(f: &Fixture) {
    let repo = f.repo("manifest_media_type_mismatch");
    let (_, child) = push_image(f, &repo, 91, &[]).await;
    let index = index_of(&[child]);
    push_refused(
        f,
        &repo,
        &index,
        media_type::OCI_MANIFEST,
        &[ErrorCode::ManifestInvalid],
        "index pushed as a manifest",
    )
    .await;
}

/// A manifest larger than 4 MiB is refused.
pub async fn manifest_oversize(f: &Fixture) {
    let repo = f.repo("manifest_oversize");
    let mut config = push(f, &repo, "{}").await;
    config.media_type = config_type();
    let mut manifest = ImageManifest::new(config, vec![]);
    manifest
        .annotations
        .insert("padding".to_owned(), "x".repeat(4 * 1024 * 1024));
    let bytes = Bytes::from(manifest.to_json());
    push_refused(
        f,
        &repo,
        &bytes,
        media_type::OCI_MANIFEST,
        &[ErrorCode::ManifestInvalid, ErrorCode::SizeInvalid],
        "a manifest over 4 MiB",
    )
    .await;
}

/// A push by digest whose bytes have another digest is `DIGEST_INVALID`.
pub async fn manifest_expected_digest_mismatch(f: &Fixture) {
    let repo = f.repo("manifest_expected_digest_mismatch");
    let (bytes, _) = push_image(f, &repo, 101, &[]).await;
    let mut changed = bytes.to_vec();
    changed.push(b'\n');
    let params = PushManifestParams::new().with_digest(Digest::sha256(&bytes));
    let result = f
        .store
        .push_manifest(
            &repo,
            changed.clone().into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await;
    assert_code(
        result,
        &[ErrorCode::DigestInvalid],
        "push by a digest the bytes lack",
    );
    assert_no_manifest(f, &repo, &changed).await;
}

/// Unknown digests and tags are `MANIFEST_UNKNOWN`.
pub async fn manifest_unknown(f: &Fixture) {
    let repo = f.repo("manifest_unknown");
    push_image(f, &repo, 111, &["present"]).await;
    let missing = Digest::sha256(b"no manifest");
    let codes = [ErrorCode::ManifestUnknown];
    assert_read_fails(
        f.store.get_manifest(&repo, &missing).await,
        &codes,
        "get_manifest",
    )
    .await;
    assert_code(
        f.store.resolve_manifest(&repo, &missing).await,
        &codes,
        "resolve_manifest",
    );
    assert_read_fails(
        f.store.get_tag(&repo, &tag("absent")).await,
        &codes,
        "get_tag",
    )
    .await;
    assert_code(
        f.store.resolve_tag(&repo, &tag("absent")).await,
        &codes,
        "resolve_tag",
    );
    let nowhere = f.repo("manifest_unknown_nowhere");
    assert_code(
        f.store.resolve_tag(&nowhere, &tag("any")).await,
        &[ErrorCode::ManifestUnknown, ErrorCode::NameUnknown],
        "resolve_tag in an unknown repository",
    );
}

/// A manifest pushed by a SHA-512 digest is stored and read under it.
pub async fn manifest_sha512(f: &Fixture) {
    if !f.caps.sha512 {
        return f.skip("manifest_sha512", "sha512");
    }
    let repo = f.repo("manifest_sha512");
    let mut config = push(f, &repo, "{}").await;
    config.media_type = config_type();
    let bytes = Bytes::from(ImageManifest::new(config, vec![]).to_json());
    let digest = Digest::of(Algorithm::Sha512, &bytes);
    let params = PushManifestParams::new()
        .with_digest(digest.clone())
        .with_tag(tag("sha512"));
    let pushed = f
        .store
        .push_manifest(
            &repo,
            bytes.clone(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .unwrap();
    assert_eq!(pushed.digest, digest);
    assert_manifest(f, &repo, &digest, &bytes, media_type::OCI_MANIFEST).await;
    assert_tag(f, &repo, "sha512", &digest, &bytes).await;
}

/// Pushing the same manifest again (with another tag) keeps one manifest under both tags.
pub async fn manifest_pushed_twice(f: &Fixture) {
    let repo = f.repo("manifest_pushed_twice");
    let (bytes, first) = push_image(f, &repo, 121, &["first"]).await;
    let second = push_manifest(
        f,
        &repo,
        bytes.clone(),
        media_type::OCI_MANIFEST,
        &["second"],
    )
    .await;
    assert_eq!(first.digest, second.digest);
    assert_tag(f, &repo, "first", &first.digest, &bytes).await;
    assert_tag(f, &repo, "second", &first.digest, &bytes).await;
}

/// An artifact (artifactType, the empty config, a blob of its own type) is accepted.
pub async fn manifest_artifact(f: &Fixture) {
    let repo = f.repo("manifest_artifact");
    let empty = push(f, &repo, "{}").await;
    let mut payload = push(f, &repo, "sbom contents").await;
    payload.media_type = MediaType::from_static("application/spdx+json");
    let mut manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_EMPTY),
            empty.digest,
            2,
        ),
        vec![payload],
    );
    manifest.artifact_type = Some(MediaType::from_static("application/vnd.example.sbom"));
    let bytes = Bytes::from(manifest.to_json());
    let pushed = push_manifest(f, &repo, bytes.clone(), media_type::OCI_MANIFEST, &["sbom"]).await;
    assert_manifest(f, &repo, &pushed.digest, &bytes, media_type::OCI_MANIFEST).await;
}
