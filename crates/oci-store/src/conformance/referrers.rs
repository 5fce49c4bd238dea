//! Checks of the referrers listing.

use bytes::Bytes;
use oci_types::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType, Repository, media_type};

use super::{Fixture, collect, index_of, push, push_image, push_manifest};
use crate::ReferrersParams;

const SIGNATURE: &str = "application/vnd.example.signature";
const SBOM: &str = "application/vnd.example.sbom";

/// Pushes an artifact manifest about `subject`, with `artifact_type` (or none, so that the
/// config media type stands in for it).
async fn push_referrer(
    f: &Fixture,
    repo: &Repository,
    subject: &Descriptor,
    artifact_type: Option<&'static str>,
    config_type: &'static str,
    note: &str,
) -> Descriptor {
    let config = push(f, repo, "{}").await;
    let mut manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(config_type),
            config.digest,
            config.size,
        ),
        vec![push(f, repo, format!("payload {note}")).await],
    );
    manifest.artifact_type = artifact_type.map(MediaType::from_static);
    manifest.subject = Some(Descriptor::new(
        subject.media_type.clone(),
        subject.digest.clone(),
        subject.size,
    ));
    manifest
        .annotations
        .insert("org.example.note".to_owned(), note.to_owned());
    push_manifest(
        f,
        repo,
        Bytes::from(manifest.to_json()),
        media_type::OCI_MANIFEST,
        &[],
    )
    .await
}

async fn referrers(
    f: &Fixture,
    repo: &Repository,
    digest: &Digest,
    filter: Option<&'static str>,
) -> Vec<Descriptor> {
    let mut params = ReferrersParams::new();
    params.artifact_type = filter.map(MediaType::from_static);
    collect(f.store.referrers(repo, digest, &params))
        .await
        .unwrap_or_else(|e| panic!("referrers of {digest} in {repo}: {e}"))
}

fn sorted_digests(mut ds: Vec<Digest>) -> Vec<Digest> {
    ds.sort();
    ds
}

/// The referrers of an image are listed with artifact type and annotations, ordered by digest.
pub async fn referrers_of_manifest(f: &Fixture) {
    if !f.caps.referrers {
        return f.skip("referrers_of_manifest", "referrers");
    }
    let repo = f.repo("referrers_of_manifest");
    let (_, image) = push_image(f, &repo, 301, &["v1"]).await;
    let sig = push_referrer(
        f,
        &repo,
        &image,
        Some(SIGNATURE),
        media_type::OCI_EMPTY,
        "sig",
    )
    .await;
    let sbom = push_referrer(f, &repo, &image, Some(SBOM), media_type::OCI_EMPTY, "sbom").await;
    let found = referrers(f, &repo, &image.digest, None).await;
    let digests: Vec<Digest> = found.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(
        digests,
        sorted_digests(vec![sig.digest.clone(), sbom.digest.clone()])
    );
    for descriptor in &found {
        let (kind, note) = if descriptor.digest == sig.digest {
            (SIGNATURE, "sig")
        } else {
            (SBOM, "sbom")
        };
        assert_eq!(
            descriptor.artifact_type.as_ref().map(MediaType::as_str),
            Some(kind)
        );
        assert_eq!(
            descriptor
                .annotations
                .get("org.example.note")
                .map(String::as_str),
            Some(note)
        );
        assert_eq!(descriptor.media_type.as_str(), media_type::OCI_MANIFEST);
        assert!(descriptor.size > 0);
    }
}

/// An artifact-type filter keeps exact matches only.
pub async fn referrers_filtered(f: &Fixture) {
    if !f.caps.referrers {
        return f.skip("referrers_filtered", "referrers");
    }
    let repo = f.repo("referrers_filtered");
    let (_, image) = push_image(f, &repo, 311, &[]).await;
    let sig = push_referrer(
        f,
        &repo,
        &image,
        Some(SIGNATURE),
        media_type::OCI_EMPTY,
        "sig",
    )
    .await;
    push_referrer(f, &repo, &image, Some(SBOM), media_type::OCI_EMPTY, "sbom").await;
    let found = referrers(f, &repo, &image.digest, Some(SIGNATURE)).await;
    assert_eq!(
        found.iter().map(|d| &d.digest).collect::<Vec<_>>(),
        [&sig.digest]
    );
    assert!(
        referrers(
            f,
            &repo,
            &image.digest,
            Some("application/vnd.example.none")
        )
        .await
        .is_empty()
    );
}

/// An index can be a subject too, and an index can be a referrer.
pub async fn referrers_of_index(f: &Fixture) {
    if !f.caps.referrers {
        return f.skip("referrers_of_index", "referrers");
    }
    let repo = f.repo("referrers_of_index");
    let (_, child) = push_image(f, &repo, 321, &[]).await;
    let index = push_manifest(
        f,
        &repo,
        index_of(std::slice::from_ref(&child)),
        media_type::OCI_INDEX,
        &["multi"],
    )
    .await;
    let sig = push_referrer(
        f,
        &repo,
        &index,
        Some(SIGNATURE),
        media_type::OCI_EMPTY,
        "index sig",
    )
    .await;
    let mut index_referrer = ImageIndex::new(vec![child.clone()]);
    index_referrer.artifact_type = Some(MediaType::from_static(SBOM));
    index_referrer.subject = Some(Descriptor::new(
        index.media_type.clone(),
        index.digest.clone(),
        index.size,
    ));
    let as_index = push_manifest(
        f,
        &repo,
        Bytes::from(index_referrer.to_json()),
        media_type::OCI_INDEX,
        &[],
    )
    .await;
    let found = referrers(f, &repo, &index.digest, None).await;
    let digests: Vec<Digest> = found.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(
        digests,
        sorted_digests(vec![sig.digest, as_index.digest.clone()])
    );
    let listed = found.iter().find(|d| d.digest == as_index.digest).unwrap();
    assert_eq!(listed.media_type.as_str(), media_type::OCI_INDEX);
    assert_eq!(
        listed.artifact_type.as_ref().map(MediaType::as_str),
        Some(SBOM)
    );
    assert!(
        referrers(f, &repo, &child.digest, None).await.is_empty(),
        "the child has no referrers"
    );
}

/// A digest nothing refers to has an empty list, not an error.
pub async fn referrers_unknown_subject(f: &Fixture) {
    if !f.caps.referrers {
        return f.skip("referrers_unknown_subject", "referrers");
    }
    let repo = f.repo("referrers_unknown_subject");
    push_image(f, &repo, 331, &["x"]).await;
    assert!(
        referrers(f, &repo, &Digest::sha256(b"nobody refers to this"), None)
            .await
            .is_empty()
    );
}

/// Without an `artifactType`, a referrer is listed under its config's media type.
pub async fn referrers_artifact_type_from_config(f: &Fixture) {
    if !f.caps.referrers {
        return f.skip("referrers_artifact_type_from_config", "referrers");
    }
    let repo = f.repo("referrers_artifact_type_from_config");
    let (_, image) = push_image(f, &repo, 341, &[]).await;
    const CONFIG_TYPE: &str = "application/vnd.example.legacy.config.v1+json";
    let legacy = push_referrer(f, &repo, &image, None, CONFIG_TYPE, "legacy").await;
    let found = referrers(f, &repo, &image.digest, Some(CONFIG_TYPE)).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, legacy.digest);
    assert_eq!(
        found[0].artifact_type.as_ref().map(MediaType::as_str),
        Some(CONFIG_TYPE)
    );
}

/// A deleted referrer is no longer listed.
pub async fn referrers_after_delete(f: &Fixture) {
    if !f.caps.referrers || !f.caps.deletes {
        return f.skip("referrers_after_delete", "referrers with deletes");
    }
    let repo = f.repo("referrers_after_delete");
    let (_, image) = push_image(f, &repo, 351, &[]).await;
    let kept = push_referrer(
        f,
        &repo,
        &image,
        Some(SIGNATURE),
        media_type::OCI_EMPTY,
        "kept",
    )
    .await;
    let doomed = push_referrer(
        f,
        &repo,
        &image,
        Some(SIGNATURE),
        media_type::OCI_EMPTY,
        "doomed",
    )
    .await;
    f.store
        .delete_manifest(&repo, &doomed.digest)
        .await
        .unwrap();
    let found = referrers(f, &repo, &image.digest, None).await;
    assert_eq!(
        found.iter().map(|d| &d.digest).collect::<Vec<_>>(),
        [&kept.digest]
    );
}
