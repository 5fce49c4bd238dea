//! What the layout leaves on disk, how it reads layouts others wrote, and how it meets bad
//! input: each failure names the file or input at fault and changes nothing on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use oci_layout::{GcOptions, LayoutOptions, LayoutStore, find_layout};
use oci_store::{ErrorCode, OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, Tag, media_type};
use serde_json::Value;

fn default_repo() -> Repository {
    LayoutOptions::default().default_repository
}

fn tag(name: &str) -> Tag {
    name.parse().unwrap()
}

/// Pushes a small image (config and one layer) with `tags`; returns the manifest descriptor
/// and the layer's.
async fn push_image(
    store: &LayoutStore,
    repo: &Repository,
    seed: &str,
    tags: &[&str],
) -> (Descriptor, Descriptor) {
    let layer = store
        .push_blob_bytes(
            repo,
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            Bytes::from(format!("layer {seed}")),
        )
        .await
        .unwrap();
    let config = store
        .push_blob_bytes(
            repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from(format!("{{\"seed\":\"{seed}\"}}")),
        )
        .await
        .unwrap();
    let manifest = ImageManifest::new(config, vec![layer.clone()]).to_json();
    let pushed = store
        .push_manifest(
            repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tags(tags.iter().map(|t| tag(t))),
        )
        .await
        .unwrap();
    (pushed, layer)
}

fn index_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

/// Every file under `dir` with its size and content hash: what "nothing on disk changed" means.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Digest> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), Digest::sha256(&std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}

#[tokio::test]
async fn the_default_repository_is_written_with_bare_tags_others_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let (default_manifest, _) = push_image(&store, &default_repo(), "a", &["v1"]).await;
    let team: Repository = "team/app".parse().unwrap();
    let (team_manifest, _) = push_image(&store, &team, "b", &["v2"]).await;
    push_image(&store, &team, "c", &[]).await;

    let header: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(header["imageLayoutVersion"], "1.0.0");
    let index = index_json(dir.path());
    assert_eq!(index["schemaVersion"], 2);
    let names: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                e["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        names.contains(&("v1".to_owned(), default_manifest.digest.to_string())),
        "{names:?}"
    );
    assert!(
        names.contains(&("team/app:v2".to_owned(), team_manifest.digest.to_string())),
        "{names:?}"
    );
    assert!(
        names.iter().any(|(n, _)| n.starts_with("team/app@sha256:")),
        "untagged push: {names:?}"
    );
    let repos: Vec<Repository> = store
        .repositories(&Default::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(repos, [default_repo(), team]);
}

#[tokio::test]
async fn a_layout_written_by_hand_as_skopeo_does_opens_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let config = b"{}";
    let manifest = ImageManifest::new(
        Descriptor::of_bytes(MediaType::from_static(media_type::OCI_CONFIG), config),
        vec![],
    )
    .to_json();
    let manifest_digest = Digest::sha256(&manifest);
    std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("blobs/sha256")
            .join(Digest::sha256(config).encoded()),
        config,
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("blobs/sha256")
            .join(manifest_digest.encoded()),
        &manifest,
    )
    .unwrap();
    std::fs::write(dir.path().join("manifest.json"), "[]").unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"{}","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}},
            {{"mediaType":"application/vnd.example.unknown","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"odd"}}}},
            {{"mediaType":"{}","digest":"sha256:not-hex","size":1,"annotations":{{"org.opencontainers.image.ref.name":"broken"}}}}
        ]}}"#,
        media_type::OCI_MANIFEST,
        manifest.len(),
        manifest.len(),
        media_type::OCI_MANIFEST,
    );
    std::fs::write(dir.path().join("index.json"), index).unwrap();
    let before = snapshot(dir.path());

    let store = LayoutStore::open(dir.path()).await.unwrap();
    let reader = store
        .get_tag(&default_repo(), &tag("latest"))
        .await
        .unwrap();
    assert_eq!(reader.descriptor().digest, manifest_digest);
    assert_eq!(reader.bytes(1 << 20).await.unwrap(), manifest);
    let tags: Vec<Tag> = store
        .tags(&default_repo(), &Default::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        tags,
        [tag("latest"), tag("odd")],
        "an unknown media type is tolerated, a broken entry skipped"
    );
    assert_eq!(snapshot(dir.path()), before, "reading changes nothing");
    let report = store.fsck().await.unwrap();
    assert_eq!(report.unreadable_entries, 1);
    assert_eq!(report.checked, 2);
    assert!(
        report.corrupt.is_empty() && report.missing.is_empty() && report.stray.is_empty(),
        "{report:?}"
    );

    // A write keeps the entry hoist cannot read, and the file it does not know.
    push_image(&store, &default_repo(), "new", &["new"]).await;
    let entries = index_json(dir.path())["manifests"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        entries.iter().any(|e| e["digest"] == "sha256:not-hex"),
        "the unreadable entry survives a rewrite"
    );
    assert!(dir.path().join("manifest.json").is_file());
}

#[tokio::test]
async fn a_malformed_index_or_header_is_refused_naming_the_file() {
    for (file, content, expected) in [
        ("index.json", "{not json", "index.json"),
        (
            "index.json",
            r#"{"schemaVersion":2}"#,
            "\"manifests\" is missing",
        ),
        (
            "index.json",
            r#"{"schemaVersion":1,"manifests":[]}"#,
            "schemaVersion",
        ),
        (
            "oci-layout",
            r#"{"imageLayoutVersion":"2.0.0"}"#,
            "oci-layout",
        ),
        ("oci-layout", "[]", "imageLayoutVersion"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join(file), content).unwrap();
        let before = snapshot(dir.path());
        let error = LayoutStore::open(dir.path()).await.unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{file} = {content:?}: error {error:?} should mention {expected:?}"
        );
        assert!(error.contains(file), "{error:?} should name {file}");
        assert_eq!(
            snapshot(dir.path()),
            before,
            "a refused open changes nothing"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("random.txt"), "not a layout").unwrap();
    let error = LayoutStore::open(dir.path()).await.unwrap_err().to_string();
    assert!(error.contains("no oci-layout file"), "{error}");
}

#[tokio::test]
async fn a_corrupt_or_truncated_blob_is_caught_naming_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let (_, layer) = push_image(&store, &default_repo(), "corrupt", &["v1"]).await;
    let path = dir.path().join("blobs/sha256").join(layer.digest.encoded());
    let original = std::fs::read(&path).unwrap();
    for damaged in [
        original[..original.len() - 1].to_vec(),
        [original.as_slice(), b"!"].concat(),
        {
            let mut flipped = original.clone();
            flipped[0] ^= 1;
            flipped
        },
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let result: Result<Vec<Bytes>, _> = async {
            store
                .get_blob(&default_repo(), &layer.digest)
                .await?
                .into_stream()
                .try_collect()
                .await
        }
        .await;
        let error = result.unwrap_err();
        assert!(
            matches!(
                error.code(),
                Some(ErrorCode::DigestInvalid | ErrorCode::SizeInvalid)
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains(layer.digest.encoded()),
            "{error} should name the blob"
        );
        let report = store.fsck().await.unwrap();
        assert_eq!(
            report.corrupt,
            std::slice::from_ref(&layer.digest),
            "{report:?}"
        );
    }
    std::fs::remove_file(&path).unwrap();
    let report = store.fsck().await.unwrap();
    assert_eq!(
        report.missing,
        std::slice::from_ref(&layer.digest),
        "{report:?}"
    );
}

#[tokio::test]
async fn an_upload_id_that_names_another_path_is_unknown_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    push_image(&store, &default_repo(), "anchor", &["v1"]).await;
    std::fs::write(dir.path().join("x"), "outside").unwrap();
    let before = snapshot(dir.path());
    for id in [
        "../../x",
        "../x",
        "/etc/passwd",
        "..",
        "",
        "0123456789abcdef0123456789abcdeF",
        "a/b",
    ] {
        let error = store
            .push_blob_chunked_resume(&default_repo(), id, None, None)
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(ErrorCode::BlobUploadUnknown),
            "{id:?}: {error}"
        );
        assert!(
            error.to_string().contains(&format!("{id:?}")),
            "{error} should name {id:?}"
        );
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_digest_in_the_wrong_form_is_refused_or_reported() {
    for input in [
        "dir@sha256:XYZ",
        "dir@md5:d41d8cd98f00b204e9800998ecf8427e",
        "dir:bad tag",
        "dir:-x",
        ":v1",
    ] {
        let error = find_layout(input).unwrap_err().to_string();
        assert!(error.contains(input), "{error} should name {input:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    push_image(&store, &default_repo(), "stray", &["v1"]).await;
    let odd = dir
        .path()
        .join("blobs/sha256/E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855");
    std::fs::write(&odd, "").unwrap();
    let report = store.fsck().await.unwrap();
    assert_eq!(report.stray, [odd], "{report:?}");
}

/// A symlink in a blob's place is not followed by a read that is not verified (a range, what
/// a server serves): a hostile layout, or a root others can write to, could otherwise serve
/// `/etc/shadow`. A verified read follows it (layouts share blobs so), and fails when what it
/// finds is not the blob.
#[tokio::test]
async fn a_symlink_in_a_blobs_place_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"the host's secret").unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let (image, layer) = push_image(&store, &default_repo(), "linked", &["v1"]).await;
    // A blob shared by a symlink to the same bytes elsewhere reads whole.
    let path = dir.path().join("blobs/sha256").join(layer.digest.encoded());
    let shared = outside.path().join("shared");
    std::fs::copy(&path, &shared).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&shared, &path).unwrap();
    let reader = store
        .get_blob(&default_repo(), &layer.digest)
        .await
        .unwrap();
    let read = reader.bytes(1 << 20).await.unwrap();
    assert_eq!(read.as_ref(), std::fs::read(&shared).unwrap());
    for digest in [&layer.digest, &image.digest] {
        let path = dir.path().join("blobs/sha256").join(digest.encoded());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
    }
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let repo = default_repo();
    let ranged = store.get_blob_range(&repo, &layer.digest, 0, None).await;
    assert!(ranged.is_err(), "{ranged:?}");
    let whole = match store.get_blob(&repo, &layer.digest).await {
        Ok(reader) => reader.bytes(1 << 20).await.map(|b| b.to_vec()),
        Err(error) => Err(error),
    };
    assert!(whole.is_err(), "{whole:?}");
    let manifest = store.get_manifest(&repo, &image.digest).await;
    let read = match manifest {
        Ok(reader) => reader.bytes(1 << 20).await.map(|b| b.to_vec()),
        Err(error) => Err(error),
    };
    assert!(read.is_err(), "{read:?}");
}

/// An entry of `index.json` whose `ref.name` hoist cannot read (`localhost:5000/app:v1`, as
/// other tools write a full reference) is still a root: gc keeps its image, which it removed
/// before. An entry that is not a descriptor at all stops gc, naming `index.json`: what it
/// references cannot be known.
#[tokio::test]
async fn gc_keeps_the_images_of_entries_whose_names_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let (image, layer) = push_image(&store, &default_repo(), "foreign", &["v1"]).await;
    let mut index = index_json(dir.path());
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] =
        "localhost:5000/app:v1".into();
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let all = GcOptions::default().with_grace(Duration::ZERO);
    let report = store.gc(&all).await.unwrap();
    assert!(report.removed_blobs.is_empty(), "{report:?}");
    for digest in [&image.digest, &layer.digest] {
        let path = dir.path().join("blobs/sha256").join(digest.encoded());
        assert!(path.is_file(), "{digest} was removed");
    }

    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"digest": "not a digest"}));
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    let error = store.gc(&all).await.unwrap_err().to_string();
    assert!(
        error.contains("index.json") && error.contains("not descriptors"),
        "{error}"
    );
    let path = dir.path().join("blobs/sha256").join(layer.digest.encoded());
    assert!(path.is_file());
}

#[tokio::test]
async fn gc_removes_only_what_nothing_reachable_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let (kept, kept_layer) = push_image(&store, &default_repo(), "kept", &["kept"]).await;
    let (dropped, dropped_layer) =
        push_image(&store, &default_repo(), "dropped", &["dropped"]).await;
    let loose = store
        .push_blob_bytes(
            &default_repo(),
            MediaType::from_static(media_type::OCTET_STREAM),
            Bytes::from("loose"),
        )
        .await
        .unwrap();
    store
        .delete_manifest(&default_repo(), &dropped.digest)
        .await
        .unwrap();
    let mut upload = store
        .push_blob_chunked(&default_repo(), None)
        .await
        .unwrap();
    upload.write(Bytes::from("abandoned")).await.unwrap();
    upload.close().await.unwrap();
    std::fs::write(dir.path().join(".hoist/tmp/blob-crashed.partial"), "debris").unwrap();

    // With the default grace period, everything here is too young to go.
    let report = store.gc(&GcOptions::default()).await.unwrap();
    assert!(
        report.removed_blobs.is_empty() && report.removed_uploads.is_empty(),
        "{report:?}"
    );

    let dry = store
        .gc(&GcOptions::default()
            .with_grace(Duration::ZERO)
            .with_dry_run(true))
        .await
        .unwrap();
    let mut dry_blobs: Vec<Digest> = dry.removed_blobs.iter().map(|(d, _)| d.clone()).collect();
    dry_blobs.sort();
    let mut expected = vec![
        dropped.digest.clone(),
        dropped_layer.digest.clone(),
        loose.digest.clone(),
    ];
    // The dropped image's config is its own too.
    let dropped_config = dir
        .path()
        .join("blobs/sha256")
        .join(Digest::sha256(br#"{"seed":"dropped"}"#).encoded());
    assert!(dropped_config.is_file());
    expected.push(Digest::sha256(br#"{"seed":"dropped"}"#));
    expected.sort();
    assert_eq!(dry_blobs, expected);
    assert!(dry.dry_run);
    assert!(
        dir.path()
            .join("blobs/sha256")
            .join(loose.digest.encoded())
            .is_file(),
        "a dry run removes nothing"
    );

    let report = store
        .gc(&GcOptions::default().with_grace(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.removed_blobs.len(), 4);
    assert_eq!(report.removed_uploads.len(), 1);
    assert_eq!(report.removed_temp_files, 1);
    assert!(report.freed_bytes > 0);
    for gone in &expected {
        assert!(
            !dir.path()
                .join("blobs/sha256")
                .join(gone.encoded())
                .exists()
        );
    }
    store
        .get_tag(&default_repo(), &tag("kept"))
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    store
        .get_blob_bytes(&default_repo(), &kept_layer.digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        store
            .resolve_tag(&default_repo(), &tag("kept"))
            .await
            .unwrap()
            .digest,
        kept.digest
    );
    assert!(store.fsck().await.unwrap().is_clean());
}

#[tokio::test]
async fn find_layout_prefers_the_deepest_layout() {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("images");
    let inner = outer.join("team/app");
    let outer_store = LayoutStore::open(&outer).await.unwrap();
    push_image(&outer_store, &default_repo(), "y", &["v0"]).await;
    let store = LayoutStore::open(&inner).await.unwrap();
    push_image(&store, &default_repo(), "x", &["v1"]).await;
    let text = |p: &Path| p.to_string_lossy().into_owned();

    let found = find_layout(&format!("{}:v1", text(&inner))).unwrap();
    assert_eq!(
        (
            found.dir.clone(),
            found.repository.clone(),
            found.tag.clone()
        ),
        (inner.clone(), None, Some(tag("v1")))
    );
    let found = find_layout(&format!("{}/other/repo:v2", text(&outer))).unwrap();
    assert_eq!(found.dir, outer);
    assert_eq!(
        found.repository.map(|r| r.to_string()).as_deref(),
        Some("other/repo")
    );
    let digest = Digest::sha256(b"m");
    let found = find_layout(&format!("{}@{digest}", text(&inner))).unwrap();
    assert_eq!(
        (found.dir, found.tag, found.digest),
        (inner.clone(), None, Some(digest))
    );
    let colon = dir.path().join("odd:name");
    let odd = LayoutStore::open(&colon).await.unwrap();
    push_image(&odd, &default_repo(), "z", &["v1"]).await;
    assert_eq!(
        find_layout(&text(&colon)).unwrap().dir,
        colon,
        "a layout directory is taken whole"
    );
}

/// A copy from another store pushes that store's verified read, which the layout does not hash
/// again: corrupt content must still be refused, leaving no blob and no temporary file.
#[tokio::test]
async fn a_lying_source_read_pushed_without_a_second_hash_stores_nothing() {
    let source = tempfile::tempdir().unwrap();
    let source_store = LayoutStore::open(source.path()).await.unwrap();
    let (_, layer) = push_image(&source_store, &default_repo(), "lying", &["v1"]).await;
    let path = source
        .path()
        .join("blobs/sha256")
        .join(layer.digest.encoded());
    let mut flipped = std::fs::read(&path).unwrap();
    flipped[0] ^= 1;
    std::fs::write(&path, &flipped).unwrap();

    let target = tempfile::tempdir().unwrap();
    let target_store = LayoutStore::open(target.path()).await.unwrap();
    let body = source_store
        .get_blob(&default_repo(), &layer.digest)
        .await
        .unwrap()
        .into_stream();
    assert_eq!(body.verified_as(), Some((&layer.digest, layer.size)));
    let error = target_store
        .push_blob(&default_repo(), &layer, body)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    assert!(
        !target
            .path()
            .join("blobs/sha256")
            .join(layer.digest.encoded())
            .exists()
    );
    let leftovers: Vec<_> = std::fs::read_dir(target.path().join(".hoist/tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The intact content goes through.
    std::fs::write(&path, {
        flipped[0] ^= 1;
        flipped
    })
    .unwrap();
    let body = source_store
        .get_blob(&default_repo(), &layer.digest)
        .await
        .unwrap()
        .into_stream();
    target_store
        .push_blob(&default_repo(), &layer, body)
        .await
        .unwrap();
    assert!(target_store.fsck().await.unwrap().corrupt.is_empty());
}

/// The data file of upload `id` in a layout at `dir`.
fn upload_data(dir: &Path, id: &str) -> PathBuf {
    dir.join(".hoist/uploads").join(id).join("data")
}

/// Writes `content` into a new upload and closes it; returns the upload's id.
async fn upload_closed(store: &LayoutStore, repo: &Repository, content: &'static [u8]) -> String {
    let mut writer = store.push_blob_chunked(repo, None).await.unwrap();
    writer.write(Bytes::from_static(content)).await.unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    id
}

fn sha256(content: &[u8]) -> Digest {
    let mut digester = oci_types::Digester::new(oci_types::Algorithm::Sha256);
    digester.update(content);
    digester.finish()
}

/// An upload written in several requests by one process is hashed as it is written; the commit
/// checks that hash (no second read of the data), and refuses a wrong digest all the same.
#[tokio::test]
async fn an_upload_written_by_this_process_commits_on_its_running_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let repo = default_repo();
    let write_in_two = |store: LayoutStore| {
        let repo = repo.clone();
        async move {
            let mut first = store.push_blob_chunked(&repo, None).await.unwrap();
            first.write(Bytes::from_static(b"running ")).await.unwrap();
            let id = first.id().to_owned();
            first.close().await.unwrap();
            let mut second = store
                .push_blob_chunked_resume(&repo, &id, Some(8), None)
                .await
                .unwrap();
            second.write(Bytes::from_static(b"hash")).await.unwrap();
            (id, second)
        }
    };
    let content = b"running hash";

    let (_, writer) = write_in_two(store.clone()).await;
    let error = writer.commit(&sha256(b"something else")).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");

    let (_, writer) = write_in_two(store.clone()).await;
    let stored = writer.commit(&sha256(content)).await.unwrap();
    assert_eq!(stored.size, content.len() as u64);
    let read = store.get_blob(&repo, &stored.digest).await.unwrap();
    assert_eq!(read.bytes(100).await.unwrap(), Bytes::from_static(content));

    // What the commit checks is the hash of what this process wrote: data changed in place
    // between two requests (same length) is not read again, as no blob is once written; fsck
    // finds it. The length is checked.
    let tamper = |length_change: bool| {
        let (store, repo, dir) = (store.clone(), repo.clone(), dir.path().to_owned());
        async move {
            let id = upload_closed(&store, &repo, b"tampered case").await;
            let changed: &[u8] = if length_change {
                b"TAMPERED CASE!"
            } else {
                b"TAMPERED CASE"
            };
            std::fs::write(upload_data(&dir, &id), changed).unwrap();
            let writer = store
                .push_blob_chunked_resume(&repo, &id, None, None)
                .await
                .unwrap();
            writer.commit(&sha256(b"tampered case")).await
        }
    };
    let error = tamper(true).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    tamper(false).await.unwrap();
    let report = store.fsck().await.unwrap();
    assert_eq!(report.corrupt, [sha256(b"tampered case")], "{report:?}");
}

/// An upload resumed by another process (another store over the same directory) has no
/// running hash there, nor does a commit with another algorithm: the data is read back.
#[tokio::test]
async fn an_upload_resumed_elsewhere_or_committed_as_sha512_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let repo = default_repo();
    let here = LayoutStore::open(dir.path()).await.unwrap();
    let id = upload_closed(&here, &repo, b"written here").await;

    // The data changed in place: only a read back can tell.
    std::fs::write(upload_data(dir.path(), &id), b"WRITTEN HERE").unwrap();
    let elsewhere = LayoutStore::open(dir.path()).await.unwrap();
    let writer = elsewhere
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap();
    let error = writer.commit(&sha256(b"written here")).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");

    let mut writer = here.push_blob_chunked(&repo, None).await.unwrap();
    writer.write(Bytes::from_static(b"sha512")).await.unwrap();
    let mut digester = oci_types::Digester::new(oci_types::Algorithm::Sha512);
    digester.update(b"sha512");
    let stored = writer.commit(&digester.finish()).await.unwrap();
    let read = here.get_blob(&repo, &stored.digest).await.unwrap();
    assert_eq!(
        read.bytes(100).await.unwrap(),
        Bytes::from_static(b"sha512")
    );
}

/// Blobs are written straight to the disk where the filesystem allows (`O_DIRECT`, in aligned
/// blocks, the unaligned tail through the page cache): every size around the block and buffer
/// edges reads back exactly, in pieces of any size, on a disk and on tmpfs (which refuses
/// direct I/O).
#[tokio::test]
async fn blobs_of_every_size_around_block_edges_read_back_exactly() {
    let on_disk = tempfile::tempdir().unwrap();
    let mut dirs = vec![on_disk.path().to_path_buf()];
    let in_memory = Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").unwrap());
    dirs.extend(in_memory.as_ref().map(|d| d.path().to_path_buf()));
    let quarter = 256 << 10;
    let sizes = [
        0,
        1,
        511,
        4095,
        4096,
        4097,
        quarter - 1,
        quarter,
        quarter + 1,
        quarter + 4096,
        3 * quarter + 12_345,
    ];
    for dir in dirs {
        let store = LayoutStore::open(&dir).await.unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let content =
                Bytes::from(oci_store::conformance::seeded_bytes(i as u64, size).to_vec());
            let descriptor = Descriptor::new(
                MediaType::from_static(media_type::OCTET_STREAM),
                sha256(&content),
                size as u64,
            );
            // Pieces of an odd size, as from a network.
            let pieces: Vec<_> = content
                .chunks(7919)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            store
                .push_blob(
                    &default_repo(),
                    &descriptor,
                    oci_store::BlobBody::new(futures::stream::iter(pieces)),
                )
                .await
                .unwrap_or_else(|e| panic!("{size} bytes into {}: {e}", dir.display()));
            let path = dir.join("blobs/sha256").join(descriptor.digest.encoded());
            assert_eq!(std::fs::read(&path).unwrap(), content, "{size} bytes");
        }
        assert!(store.fsck().await.unwrap().corrupt.is_empty());
    }
}

/// `read_buffer` sets the size of the pieces a blob read hands out, whole or ranged.
#[tokio::test]
async fn reads_come_in_pieces_of_the_read_buffer() {
    let dir = tempfile::tempdir().unwrap();
    for read_buffer in [4096, 1 << 20] {
        let store = oci_layout::LayoutStore::open_per_repository_with(
            dir.path(),
            LayoutOptions::default().with_read_buffer(read_buffer),
        )
        .await
        .unwrap();
        let repo: Repository = "pieces".parse().unwrap();
        let content = Bytes::from(oci_store::conformance::seeded_bytes(5, 3 << 20).to_vec());
        let blob = store
            .push_blob_bytes(
                &repo,
                MediaType::from_static(media_type::OCTET_STREAM),
                content.clone(),
            )
            .await
            .unwrap();
        let pieces: Vec<Bytes> = store
            .get_blob(&repo, &blob.digest)
            .await
            .unwrap()
            .into_stream()
            .try_collect()
            .await
            .unwrap();
        assert!(pieces.iter().all(|p| p.len() <= read_buffer));
        assert_eq!(pieces.len(), (3 << 20) / read_buffer);
        assert_eq!(pieces.concat(), content);
        let ranged: Vec<Bytes> = store
            .get_blob_range(&repo, &blob.digest, 10, Some(2 << 20))
            .await
            .unwrap()
            .into_stream()
            .try_collect()
            .await
            .unwrap();
        assert!(ranged.iter().all(|p| p.len() <= read_buffer));
        assert_eq!(ranged.concat(), content.slice(10..2 << 20));
    }
}

/// A whole blob's read for a push carries the file it lies in, all of it; a read that is
/// hashed, or a range, does not (whoever sent the span would skip the check).
#[tokio::test]
async fn a_read_for_a_push_carries_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path()).await.unwrap();
    let repo = default_repo();
    let content = Bytes::from(oci_store::conformance::seeded_bytes(7, (5 << 20) + 17).to_vec());
    let blob = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCTET_STREAM),
            content.clone(),
        )
        .await
        .unwrap();
    let read = || store.get_blob(&repo, &blob.digest);
    let for_push = read().await.unwrap().into_stream_for_push();
    let span = for_push.file_span().expect("a span of the blob's file");
    assert_eq!((span.offset(), span.len()), (0, content.len() as u64));
    let mut there = vec![0u8; content.len()];
    std::os::unix::fs::FileExt::read_exact_at(span.file(), &mut there, 0).unwrap();
    assert!(there == content);
    assert!(
        span.name().ends_with(blob.digest.encoded()),
        "{}",
        span.name()
    );
    assert!(read().await.unwrap().into_stream().file_span().is_none());
    let ranged = store
        .get_blob_range(&repo, &blob.digest, 1, None)
        .await
        .unwrap();
    assert!(ranged.into_stream_for_push().file_span().is_none());
}

/// A read buffer set to nothing (the field is public) is read as the smallest usable one.
#[tokio::test]
async fn a_zero_read_buffer_reads_in_small_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LayoutOptions::default();
    options.read_buffer = 0;
    let store = LayoutStore::open_with(dir.path(), options).await.unwrap();
    let content = Bytes::from(oci_store::conformance::seeded_bytes(6, 10_000).to_vec());
    let blob = store
        .push_blob_bytes(
            &default_repo(),
            MediaType::from_static(media_type::OCTET_STREAM),
            content.clone(),
        )
        .await
        .unwrap();
    let pieces: Vec<Bytes> = store
        .get_blob(&default_repo(), &blob.digest)
        .await
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pieces.len(), 3, "4 KiB pieces");
    assert_eq!(pieces.concat(), content);
}

/// A layout may come from anywhere, and its `index.json` is read whole: one past 64 MiB is
/// refused, naming the file, without being read into memory.
#[tokio::test]
async fn an_index_json_past_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = std::fs::File::create(dir.path().join("index.json")).unwrap();
    index.set_len((64 << 20) + 1).unwrap();
    let error = LayoutStore::open(dir.path()).await.unwrap_err().to_string();
    assert!(
        error.contains("index.json") && error.contains("larger than 67108864 bytes"),
        "{error}"
    );
}
