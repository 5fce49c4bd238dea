//! The public API of `oci-artifact` over the memory store: files pushed and pulled back,
//! attachments listed as referrers, layers found, and hostile titles refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;
use oci_artifact::{
    ArtifactFile, ArtifactOptions, Error, LayerQuery, TITLE, fetch_manifest, find_layers,
    open_layer, pull_artifact, push_artifact,
};
use oci_store::{MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams, ReferrersParams};
use oci_types::{
    Descriptor, Digest, ImageManifest, ManifestRef, MediaType, Repository, media_type,
};

fn repo() -> Repository {
    "team/files".parse().unwrap()
}

#[tokio::test]
async fn files_pushed_as_an_artifact_are_pulled_back_and_found_by_title_type_and_digest() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a.txt"), work.path().join("data.bin"));
    std::fs::write(&a, "hello\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&b, &big).unwrap();
    let store = MemoryStore::new();
    let options = ArtifactOptions::new()
        .with_artifact_type(MediaType::from_static("application/vnd.example.notes"))
        .with_annotation("org.example.owner", "team")
        .with_tag("v1".parse().unwrap());
    let files = [
        ArtifactFile::new(&a).with_media_type(MediaType::from_static("text/plain")),
        ArtifactFile::new(&b).with_title("nested/data.bin"),
    ];
    let pushed = push_artifact(&store, &repo(), &files, &options)
        .await
        .unwrap();

    let (descriptor, manifest) =
        fetch_manifest(&store, &repo(), &ManifestRef::Tag("v1".parse().unwrap()))
            .await
            .unwrap();
    assert_eq!(descriptor.digest, pushed.digest);
    assert_eq!(
        manifest.artifact_type.as_ref().unwrap().as_str(),
        "application/vnd.example.notes"
    );
    assert_eq!(manifest.config.media_type.as_str(), media_type::OCI_EMPTY);
    assert_eq!(manifest.config.size, 2);
    assert_eq!(manifest.annotations["org.example.owner"], "team");
    assert_eq!(manifest.layers[0].annotations[TITLE], "a.txt");
    assert_eq!(
        manifest.layers[1].media_type.as_str(),
        media_type::OCI_LAYER_TAR
    );

    let text = find_layers(
        &manifest,
        &LayerQuery::MediaType(MediaType::from_static("text/plain")),
    );
    assert_eq!(text.len(), 1);
    let by_title = find_layers(&manifest, &LayerQuery::Title("nested/data.bin".into()));
    let by_digest = find_layers(&manifest, &LayerQuery::Digest(Digest::sha256(&big)));
    assert_eq!(by_title, by_digest);
    let read = open_layer(&store, &repo(), by_title[0])
        .await
        .unwrap()
        .bytes(1 << 30)
        .await
        .unwrap();
    assert_eq!(read, big);

    let out = work.path().join("out");
    let pulled = pull_artifact(&store, &repo(), &ManifestRef::Digest(pushed.digest), &out)
        .await
        .unwrap();
    assert_eq!(pulled.len(), 2);
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(out.join("nested/data.bin")).unwrap(), big);
    // Nothing but the files: no temporary left beside them.
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "nested"]);
}

#[tokio::test]
async fn an_attachment_is_a_referrer_of_its_subject() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("sbom.json");
    std::fs::write(&file, "{}").unwrap();
    let store = MemoryStore::new();
    let image = push_artifact(
        &store,
        &repo(),
        &[ArtifactFile::new(&file)],
        &ArtifactOptions::new(),
    )
    .await
    .unwrap();
    let options = ArtifactOptions::new()
        .with_artifact_type(MediaType::from_static("application/spdx+json"))
        .with_subject(image.clone());
    let sbom = push_artifact(&store, &repo(), &[ArtifactFile::new(&file)], &options)
        .await
        .unwrap();
    let referrers: Vec<Descriptor> = store
        .referrers(&repo(), &image.digest, &ReferrersParams::default())
        .map(|d| d.unwrap())
        .collect()
        .await;
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, sbom.digest);
    assert_eq!(
        referrers[0].artifact_type.as_ref().unwrap().as_str(),
        "application/spdx+json"
    );
}

#[tokio::test]
async fn duplicate_titles_and_missing_files_are_refused_before_anything_is_pushed() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a/x.txt"), work.path().join("b/x.txt"));
    for path in [&a, &b] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    let store = MemoryStore::new();
    let error = push_artifact(
        &store,
        &repo(),
        &[ArtifactFile::new(&a), ArtifactFile::new(&b)],
        &ArtifactOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("as another file is"), "{error}");
    let missing = work.path().join("missing");
    let error = push_artifact(
        &store,
        &repo(),
        &[ArtifactFile::new(&missing)],
        &ArtifactOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::File { .. }), "{error}");
    assert!(error.to_string().contains("missing"), "{error}");
}

/// Pushes a manifest whose one layer is titled `title` (a hostile artifact); its tag is `v1`.
async fn hostile(store: &MemoryStore, title: &str) {
    let content = Bytes::from_static(b"owned");
    let mut layer = store
        .push_blob_bytes(&repo(), MediaType::from_static("text/plain"), content)
        .await
        .unwrap();
    layer.annotations = BTreeMap::from([(TITLE.to_owned(), title.to_owned())]);
    let empty = store
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_EMPTY),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let mut manifest = ImageManifest::new(empty, vec![layer]);
    manifest.artifact_type = Some(MediaType::from_static("application/vnd.example"));
    store
        .push_manifest(
            &repo(),
            Bytes::from(manifest.to_json()),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn titles_that_would_leave_the_directory_are_refused_and_nothing_is_written_outside() {
    for title in ["../escaped", "/tmp/escaped", "a/../../escaped", "./a"] {
        let work = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        hostile(&store, title).await;
        let out = work.path().join("out");
        let error = pull_artifact(
            &store,
            &repo(),
            &ManifestRef::Tag("v1".parse().unwrap()),
            &out,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, Error::UnsafeTitle { .. }),
            "{title}: {error}"
        );
        assert!(!work.path().join("escaped").exists(), "{title}");
    }
    // Through a symbolic link that points out of the directory.
    let work = tempfile::tempdir().unwrap();
    let (out, outside) = (work.path().join("out"), work.path().join("outside"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    let store = MemoryStore::new();
    hostile(&store, "link/escaped").await;
    let error = pull_artifact(
        &store,
        &repo(),
        &ManifestRef::Tag("v1".parse().unwrap()),
        &out,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

/// A layer whose manifest states another size than its content's is refused when it is
/// opened (and so when it is pulled): the content is checked against its digest as it is read,
/// and the size a pull reports is the manifest's, so the two must agree.
#[tokio::test]
async fn a_layer_whose_stated_size_is_not_its_contents_is_refused() {
    let store = MemoryStore::new();
    let mut layer = store
        .push_blob_bytes(
            &repo(),
            MediaType::from_static("text/plain"),
            Bytes::from_static(b"five!"),
        )
        .await
        .unwrap();
    layer.size = 1 << 40;
    let error = open_layer(&store, &repo(), &layer).await.unwrap_err();
    assert!(
        error.to_string().contains("reading layer") && format!("{error:?}").contains("SizeInvalid"),
        "{error:?}"
    );
    layer.size = 5;
    assert_eq!(
        open_layer(&store, &repo(), &layer)
            .await
            .unwrap()
            .bytes(16)
            .await
            .unwrap(),
        "five!"
    );
}
