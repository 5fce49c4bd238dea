//! oci-archive's public API: archives written and read back in each format, a chunked upload,
//! a blob that fails its check, crash safety, and hostile archives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use bytes::Bytes;
use futures::TryStreamExt;
use oci_archive::{
    ArchiveFormat, ArchiveLimits, ArchiveReader, ArchiveWriter, DockerFormat, ReadAs, WriteOptions,
    archive_name,
};
use oci_store::{OciInterface, PushManifestParams, body_from_bytes};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, MediaType, Platform, Repository, Tag, media_type,
};

/// A layer tar holding one file.
fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, content).unwrap();
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn descriptor(media_type: &'static str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(
        MediaType::from_static(media_type),
        Digest::sha256(bytes),
        bytes.len() as u64,
    )
}

/// A small image: a gzip layer, a plain one, a config naming both.
struct Image {
    blobs: Vec<(Descriptor, Vec<u8>)>,
    manifest: Vec<u8>,
    manifest_descriptor: Descriptor,
}

fn image(seed: &str, architecture: &str) -> Image {
    let plain_a = layer_tar("a", seed.as_bytes());
    let layer_a = gzip(&plain_a);
    let layer_b = layer_tar("b", format!("{seed} b").as_bytes());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [
            Digest::sha256(&plain_a).to_string(), Digest::sha256(&layer_b).to_string()
        ]},
        "config": {}
    }))
    .unwrap();
    let config_d = descriptor(media_type::OCI_CONFIG, &config);
    let a = descriptor(media_type::OCI_LAYER_GZIP, &layer_a);
    let b = descriptor(media_type::OCI_LAYER_TAR, &layer_b);
    let manifest = ImageManifest::new(config_d.clone(), vec![a.clone(), b.clone()]).to_json();
    Image {
        manifest_descriptor: descriptor(media_type::OCI_MANIFEST, &manifest),
        blobs: vec![(config_d, config), (a, layer_a), (b, layer_b)],
        manifest,
    }
}

async fn push(store: &dyn OciInterface, repo: &Repository, image: &Image, tags: &[&str]) {
    for (descriptor, bytes) in &image.blobs {
        store
            .push_blob(repo, descriptor, body_from_bytes(bytes.clone()))
            .await
            .unwrap();
    }
    let params = PushManifestParams::new().with_tags(tags.iter().map(|t| Tag::parse(t).unwrap()));
    store
        .push_manifest(
            repo,
            Bytes::from(image.manifest.clone()),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .unwrap();
}

async fn read_all(store: &dyn OciInterface, repo: &Repository, digest: &Digest) -> Vec<u8> {
    let reader = store.get_blob(repo, digest).await.unwrap();
    let pieces: Vec<Bytes> = reader.into_stream().try_collect().await.unwrap();
    pieces.concat()
}

fn repo(name: &str) -> Repository {
    Repository::parse(name).unwrap()
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

#[tokio::test]
async fn an_oci_archive_round_trips_with_its_digests() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if gzip { "x.tar.gz" } else { "x.tar" });
        let writer =
            ArchiveWriter::create(&path, ArchiveFormat::Oci { gzip }, WriteOptions::new()).unwrap();
        let default = ArchiveReader::default_repository();
        let one = image("one", "amd64");
        push(&writer, &default, &one, &["v1", "latest"]).await;
        assert!(!path.exists(), "nothing appears before finish");
        writer.finish().await.unwrap();
        let reader = ArchiveReader::open(&path, ReadAs::Oci, ArchiveLimits::default())
            .await
            .unwrap();
        assert_eq!(
            reader.compression(),
            if gzip {
                oci_types::Compression::Gzip
            } else {
                oci_types::Compression::None
            }
        );
        for t in ["v1", "latest"] {
            let found = reader.resolve_tag(&default, &tag(t)).await.unwrap();
            assert_eq!(found.digest, one.manifest_descriptor.digest);
        }
        for (descriptor, bytes) in &one.blobs {
            assert_eq!(
                &read_all(&reader, &default, &descriptor.digest).await,
                bytes
            );
            // A read for a push says where the blob lies in the archive, for a push that
            // sends it from there unread.
            let for_push = reader
                .get_blob(&default, &descriptor.digest)
                .await
                .unwrap()
                .into_stream_for_push();
            let span = for_push.file_span().expect("a span of the archive");
            let mut there = vec![0u8; usize::try_from(span.len()).unwrap()];
            std::os::unix::fs::FileExt::read_exact_at(span.file(), &mut there, span.offset())
                .unwrap();
            assert_eq!(&there, bytes);
        }
        let tags: Vec<Tag> = reader
            .tags(&default, &Default::default())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(tags, [tag("latest"), tag("v1")]);
    }
}

#[tokio::test]
async fn docker_archives_hold_several_images_by_name_and_position() {
    for format in [DockerFormat::Hybrid, DockerFormat::Classic] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.tar");
        let writer =
            ArchiveWriter::create(&path, ArchiveFormat::Docker(format), WriteOptions::new())
                .unwrap();
        let (app, v1) = archive_name("example/app:v1").unwrap();
        let (busybox, latest) = archive_name("busybox").unwrap();
        let one = image("one", "amd64");
        let two = image("two", "amd64");
        push(&writer, &app, &one, &["v1", "v2"]).await;
        push(&writer, &busybox, &two, &["latest"]).await;
        let report = writer.finish().await.unwrap();
        assert_eq!(report.images.len(), 2, "{format:?}");
        let reader = ArchiveReader::open(&path, ReadAs::Docker, ArchiveLimits::default())
            .await
            .unwrap();
        let names: Vec<Vec<String>> = reader.images().iter().map(|i| i.names.clone()).collect();
        assert!(names.contains(&vec![
            "example/app:v1".to_owned(),
            "example/app:v2".to_owned()
        ]));
        assert!(names.contains(&vec!["busybox:latest".to_owned()]));
        let first = reader.resolve_tag(&app, &v1).await.unwrap();
        let second = reader.resolve_tag(&busybox, &latest).await.unwrap();
        if format == DockerFormat::Hybrid {
            // The OCI layout beside manifest.json keeps the manifests as they were.
            assert_eq!(first.digest, one.manifest_descriptor.digest);
        } else {
            assert_eq!(first.media_type.as_str(), media_type::OCI_MANIFEST);
        }
        // Whatever the manifest, the config and layers are the same bytes.
        let manifest = reader.get_manifest(&app, &first.digest).await.unwrap();
        let manifest: Vec<Bytes> = manifest.into_stream().try_collect().await.unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.concat()).unwrap();
        let layer_types: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        if format == DockerFormat::Classic {
            assert_eq!(
                layer_types,
                [media_type::OCI_LAYER_GZIP, media_type::OCI_LAYER_TAR],
                "compression is read from the bytes"
            );
        }
        for (descriptor, bytes) in &two.blobs {
            assert_eq!(
                &read_all(&reader, &busybox, &descriptor.digest).await,
                bytes
            );
        }
        // By position, as skopeo's FILE:@N.
        let by_position = ArchiveReader::default_repository();
        let positions = [
            reader
                .resolve_tag(&by_position, &tag("0"))
                .await
                .unwrap()
                .digest,
            reader
                .resolve_tag(&by_position, &tag("1"))
                .await
                .unwrap()
                .digest,
        ];
        assert!(positions.contains(&first.digest) && positions.contains(&second.digest));
    }
}

#[tokio::test]
async fn a_chunked_upload_lands_in_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.tar");
    let writer = ArchiveWriter::create(
        &path,
        ArchiveFormat::Oci { gzip: false },
        WriteOptions::new(),
    )
    .unwrap();
    let default = ArchiveReader::default_repository();
    let one = image("chunks", "amd64");
    let (layer, bytes) = &one.blobs[1];
    let mut upload = writer.push_blob_chunked(&default, None).await.unwrap();
    for piece in bytes.chunks(7) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    let id = upload.id().to_owned();
    upload.close().await.unwrap();
    let upload = writer
        .push_blob_chunked_resume(&default, &id, Some(bytes.len() as u64), None)
        .await
        .unwrap();
    upload.commit(&layer.digest).await.unwrap();
    push(&writer, &default, &one, &["v1"]).await;
    writer.finish().await.unwrap();
    let reader = ArchiveReader::open(&path, ReadAs::Oci, ArchiveLimits::default())
        .await
        .unwrap();
    assert_eq!(&read_all(&reader, &default, &layer.digest).await, bytes);
}

#[tokio::test]
async fn a_blob_that_fails_its_check_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tar");
    let writer = ArchiveWriter::create(
        &path,
        ArchiveFormat::Oci { gzip: false },
        WriteOptions::new(),
    )
    .unwrap();
    let default = ArchiveReader::default_repository();
    let one = image("checked", "amd64");
    let (layer, _) = &one.blobs[1];
    let wrong = writer
        .push_blob(
            &default,
            layer,
            body_from_bytes(vec![0u8; layer.size as usize]),
        )
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(oci_store::ErrorCode::DigestInvalid));
    // The archive goes on, and the blob is not in it until pushed right.
    assert!(writer.resolve_blob(&default, &layer.digest).await.is_err());
    push(&writer, &default, &one, &["v1"]).await;
    writer.finish().await.unwrap();
    let reader = ArchiveReader::open(&path, ReadAs::Oci, ArchiveLimits::default())
        .await
        .unwrap();
    assert_eq!(
        reader
            .resolve_tag(&default, &tag("v1"))
            .await
            .unwrap()
            .digest,
        one.manifest_descriptor.digest
    );
    // A stream cannot take anything back: the archive is given up.
    let stream = ArchiveWriter::to_stream(
        Box::new(Vec::new()),
        ArchiveFormat::Docker(DockerFormat::Hybrid),
        WriteOptions::new(),
        "stream",
    );
    stream
        .push_blob(
            &default,
            layer,
            body_from_bytes(vec![0u8; layer.size as usize]),
        )
        .await
        .unwrap_err();
    let later = stream.finish().await.unwrap_err().to_string();
    assert!(later.contains("given up"), "{later}");
}

#[tokio::test]
async fn a_manifest_needs_its_blobs_in_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(
        dir.path().join("m.tar"),
        ArchiveFormat::Oci { gzip: false },
        WriteOptions::new(),
    )
    .unwrap();
    let one = image("missing", "amd64");
    let error = writer
        .push_manifest(
            &ArchiveReader::default_repository(),
            Bytes::from(one.manifest.clone()),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(oci_store::ErrorCode::ManifestBlobUnknown)
    );
}

#[tokio::test]
async fn an_unfinished_archive_leaves_the_old_file_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.tar");
    std::fs::write(&path, b"the old archive").unwrap();
    {
        let writer = ArchiveWriter::create(
            &path,
            ArchiveFormat::Oci { gzip: false },
            WriteOptions::new(),
        )
        .unwrap();
        push(
            &writer,
            &ArchiveReader::default_repository(),
            &image("x", "amd64"),
            &["v1"],
        )
        .await;
        // Dropped without finish, as a copy that fails half-way.
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"the old archive");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file is left behind");
    // Finished, it replaces the old file whole.
    let writer = ArchiveWriter::create(
        &path,
        ArchiveFormat::Oci { gzip: false },
        WriteOptions::new(),
    )
    .unwrap();
    push(
        &writer,
        &ArchiveReader::default_repository(),
        &image("x", "amd64"),
        &["v1"],
    )
    .await;
    writer.finish().await.unwrap();
    ArchiveReader::open(&path, ReadAs::Oci, ArchiveLimits::default())
        .await
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "an ordinary file, not a private temporary one"
    );
}

#[tokio::test]
async fn a_docker_archive_takes_one_platform_of_an_index_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.tar");
    let arm = Platform::new("linux", "arm64");
    let writer = ArchiveWriter::create(
        &path,
        ArchiveFormat::Docker(DockerFormat::Hybrid),
        WriteOptions::new().with_platform(arm.clone()),
    )
    .unwrap();
    let (app, v1) = archive_name("example/app:v1").unwrap();
    let amd = image("amd", "amd64");
    let arm_image = image("arm", "arm64");
    push(&writer, &app, &amd, &[]).await;
    push(&writer, &app, &arm_image, &[]).await;
    let mut children = Vec::new();
    for (image, platform) in [(&amd, Platform::new("linux", "amd64")), (&arm_image, arm)] {
        let mut child = image.manifest_descriptor.clone();
        child.platform = Some(platform);
        children.push(child);
    }
    let index = ImageIndex::new(children).to_json();
    writer
        .push_manifest(
            &app,
            Bytes::from(index),
            &MediaType::from_static(media_type::OCI_INDEX),
            &PushManifestParams::new().with_tag(v1.clone()),
        )
        .await
        .unwrap();
    let report = writer.finish().await.unwrap();
    assert_eq!(report.images[0].0, arm_image.manifest_descriptor.digest);
    assert!(
        report.notes[0].contains("linux/arm64"),
        "{:?}",
        report.notes
    );
    let reader = ArchiveReader::open(&path, ReadAs::Docker, ArchiveLimits::default())
        .await
        .unwrap();
    assert_eq!(
        reader.resolve_tag(&app, &v1).await.unwrap().digest,
        arm_image.manifest_descriptor.digest
    );
}

/// A tar with the given entries (name, content; a content starting with "->" makes a
/// symlink to the rest).
fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in entries {
        let mut header = tar::Header::new_gnu();
        if let Some(target) = content.strip_prefix(b"->") {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_cksum();
            builder
                .append_link(&mut header, name, std::str::from_utf8(target).unwrap())
                .unwrap();
        } else {
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            // `append_data` refuses `..`; a hostile archive would not.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

async fn open_error(bytes: &[u8], read_as: ReadAs, limits: ArchiveLimits) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.tar");
    std::fs::write(&path, bytes).unwrap();
    let error = ArchiveReader::open(&path, read_as, limits)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "names the archive: {message}"
    );
    message
}

#[tokio::test]
async fn hostile_and_broken_archives_are_refused_with_reasons() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest =
        |layers: &str| format!(r#"[{{"Config":"c.json","RepoTags":["x:1"],"Layers":[{layers}]}}]"#);
    let limits = ArchiveLimits::default;
    // A layer manifest.json names but the archive lacks.
    let missing = raw_tar(&[
        ("manifest.json", manifest(r#""l.tar""#).as_bytes()),
        ("c.json", config),
    ]);
    let error = open_error(&missing, ReadAs::Docker, limits()).await;
    assert!(
        error.contains("l.tar") && error.contains("no such entry"),
        "{error}"
    );
    // An entry that climbs out of the archive is read inside it: `../l.tar` is `l.tar`, and a
    // manifest naming `../../etc/passwd` finds nothing.
    let escape = raw_tar(&[
        (
            "manifest.json",
            manifest(r#""../../etc/passwd""#).as_bytes(),
        ),
        ("c.json", config),
        ("../l.tar", b"x"),
    ]);
    let error = open_error(&escape, ReadAs::Docker, limits()).await;
    assert!(error.contains("etc/passwd"), "{error}");
    // Links are followed once, inside the archive.
    let chain = raw_tar(&[
        ("manifest.json", manifest(r#""a/layer.tar""#).as_bytes()),
        ("c.json", config),
        ("a/layer.tar", b"->../b/layer.tar"),
        ("b/layer.tar", b"->../l.tar"),
        ("l.tar", b"x"),
    ]);
    let error = open_error(&chain, ReadAs::Docker, limits()).await;
    assert!(error.contains("followed once"), "{error}");
    let outside = raw_tar(&[
        ("manifest.json", manifest(r#""a/layer.tar""#).as_bytes()),
        ("c.json", config),
        ("a/layer.tar", b"->/etc/passwd"),
    ]);
    let error = open_error(&outside, ReadAs::Docker, limits()).await;
    assert!(error.contains("not in the archive"), "{error}");
    // A manifest.json over the limit.
    let big = raw_tar(&[("manifest.json", &vec![b' '; 4096])]);
    let error = open_error(&big, ReadAs::Docker, limits().with_max_json(1024)).await;
    assert!(error.contains("over the limit"), "{error}");
    // A truncated archive.
    let whole = raw_tar(&[
        ("manifest.json", manifest("").as_bytes()),
        ("c.json", config),
    ]);
    let error = open_error(&whole[..700], ReadAs::Docker, limits()).await;
    assert!(error.contains("tar") || error.contains("entry"), "{error}");
    // Not the format asked for.
    let error = open_error(&whole, ReadAs::Oci, limits()).await;
    assert!(error.contains("not an OCI image layout"), "{error}");
    // A decompression bomb: gzip of zeros, stopped by the ratio long before it is spooled.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    let error = open_error(&bomb, ReadAs::Docker, limits()).await;
    assert!(error.contains("decompression bomb"), "{error}");
    // A plain layer that is not the one the config states, and a config stating fewer
    // layers than manifest.json lists: images no runtime could use.
    let stated = Digest::sha256(b"another layer");
    let wrong = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{stated}"]}}}}"#
    );
    let mismatch = raw_tar(&[
        ("manifest.json", manifest(r#""l.tar""#).as_bytes()),
        ("c.json", wrong.as_bytes()),
        ("l.tar", b"x"),
    ]);
    let error = open_error(&mismatch, ReadAs::Docker, limits()).await;
    assert!(
        error.contains("l.tar") && error.contains("diff_id") && error.contains(stated.as_str()),
        "{error}"
    );
    let short = raw_tar(&[
        ("manifest.json", manifest(r#""l.tar""#).as_bytes()),
        ("c.json", config),
        ("l.tar", b"x"),
    ]);
    let error = open_error(&short, ReadAs::Docker, limits()).await;
    assert!(error.contains("states 0 layers"), "{error}");
}

#[tokio::test]
async fn blobs_are_verified_as_they_are_read() {
    // A classic archive whose layer under blobs/sha256/HEX does not hash to HEX.
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        Digest::sha256(b"truth")
    );
    let config = config.as_bytes();
    let liar = format!("blobs/sha256/{}", Digest::sha256(b"truth").encoded());
    let manifest = format!(r#"[{{"Config":"c.json","RepoTags":["x:1"],"Layers":["{liar}"]}}]"#);
    let bytes = raw_tar(&[
        ("manifest.json", manifest.as_bytes()),
        ("c.json", config),
        (&liar, b"lies!"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar.tar");
    std::fs::write(&path, bytes).unwrap();
    let reader = ArchiveReader::open(&path, ReadAs::Docker, ArchiveLimits::default())
        .await
        .unwrap();
    let read = reader
        .get_blob(&repo("library/x"), &Digest::sha256(b"truth"))
        .await
        .unwrap();
    let result: Result<Vec<Bytes>, _> = read.into_stream().try_collect().await;
    assert!(result.is_err());
}

#[tokio::test]
async fn referrers_are_listed_while_written_and_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.tar");
    let writer = ArchiveWriter::create(
        &path,
        ArchiveFormat::Oci { gzip: false },
        WriteOptions::new(),
    )
    .unwrap();
    let default = ArchiveReader::default_repository();
    let one = image("subject", "amd64");
    push(&writer, &default, &one, &["v1"]).await;
    let empty = b"{}".to_vec();
    let empty_d = descriptor(media_type::OCI_EMPTY, &empty);
    writer
        .push_blob(&default, &empty_d, body_from_bytes(empty))
        .await
        .unwrap();
    let mut signature = ImageManifest::new(empty_d, Vec::new());
    signature.artifact_type = Some(MediaType::from_static("application/vnd.example.sig"));
    signature.subject = Some(one.manifest_descriptor.clone());
    signature
        .annotations
        .insert("org.example".to_owned(), "signed".to_owned());
    let signature = signature.to_json();
    writer
        .push_manifest(
            &default,
            Bytes::from(signature.clone()),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new(),
        )
        .await
        .unwrap();
    let check = |found: Vec<Descriptor>| {
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].digest, Digest::sha256(&signature));
        assert_eq!(
            found[0].artifact_type.as_ref().map(MediaType::as_str),
            Some("application/vnd.example.sig")
        );
        assert_eq!(found[0].annotations["org.example"], "signed");
    };
    let subject = &one.manifest_descriptor.digest;
    check(
        writer
            .referrers(&default, subject, &Default::default())
            .try_collect()
            .await
            .unwrap(),
    );
    writer.finish().await.unwrap();
    let reader = ArchiveReader::open(&path, ReadAs::Oci, ArchiveLimits::default())
        .await
        .unwrap();
    check(
        reader
            .referrers(&default, subject, &Default::default())
            .try_collect()
            .await
            .unwrap(),
    );
    let other = oci_store::ReferrersParams::new()
        .with_artifact_type(MediaType::from_static("application/vnd.example.other"));
    let none: Vec<Descriptor> = reader
        .referrers(&default, subject, &other)
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// The entries of the tar at `path`: name and content.
fn tar_entries(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_str().unwrap().to_owned();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            (name, content)
        })
        .collect()
}

/// The layer entries `manifest.json` names for its one image.
fn manifest_layers(entries: &[(String, Vec<u8>)]) -> Vec<String> {
    let (_, manifest) = entries
        .iter()
        .find(|(name, _)| name == "manifest.json")
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// Writes `image` from a memory store into a classic docker-archive with that store as its
/// layer source (what a load into a daemon writes); returns the archive's path.
async fn write_with_layer_source(dir: &tempfile::TempDir, one: &Image) -> std::path::PathBuf {
    let source = std::sync::Arc::new(oci_store::MemoryStore::new());
    let from = repo("source/app");
    push(source.as_ref(), &from, one, &["v1"]).await;
    let path = dir.path().join("load.tar");
    let options = WriteOptions::new().with_layer_source(oci_archive::LayerSource::new(
        std::sync::Arc::clone(&source) as _,
        from.clone(),
    ));
    let writer =
        ArchiveWriter::create(&path, ArchiveFormat::Docker(DockerFormat::Classic), options)
            .unwrap();
    let (app, _) = archive_name("example/app:v1").unwrap();
    push(&writer, &app, one, &["v1"]).await;
    writer.finish().await.unwrap();
    path
}

/// `image` with its gzip layer replaced by `layer` (labelled gzip), and the config's
/// `diff_ids` to match (as far as `layer` inflates: some tests give a broken one).
fn with_gzip_layer(mut one: Image, layer: Vec<u8>) -> Image {
    let descriptor = descriptor(media_type::OCI_LAYER_GZIP, &layer);
    let mut plain = Vec::new();
    let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut plain);
    let mut config: serde_json::Value = serde_json::from_slice(&one.blobs[0].1).unwrap();
    config["rootfs"]["diff_ids"][0] = Digest::sha256(&plain).to_string().into();
    let config = serde_json::to_vec(&config).unwrap();
    one.blobs[0] = (self::descriptor(media_type::OCI_CONFIG, &config), config);
    let config = &one.blobs[0];
    let b = &one.blobs[2];
    let manifest =
        ImageManifest::new(config.0.clone(), vec![descriptor.clone(), b.0.clone()]).to_json();
    one.manifest_descriptor = self::descriptor(media_type::OCI_MANIFEST, &manifest);
    one.manifest = manifest;
    one.blobs[1] = (descriptor, layer);
    one
}

/// A classic docker-archive with a layer source (what a load into a daemon writes) holds its
/// gzip layer uncompressed, sized by its gzip trailer, and is read back with the diff_ids of
/// the config as its layers' digests; the plain layer and the config are as pushed.
#[tokio::test]
async fn gzip_layers_are_written_uncompressed_with_a_layer_source() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough for several deflate blocks and pieces.
    let one = with_gzip_layer(
        image("inflated", "amd64"),
        gzip(&layer_tar(
            "big",
            &oci_store::conformance::seeded_bytes(7, 3 << 20),
        )),
    );
    let path = write_with_layer_source(&dir, &one).await;
    let (gzip_layer, gzip_bytes) = &one.blobs[1];
    let plain: Vec<u8> = std::io::Read::bytes(flate2::read::GzDecoder::new(&gzip_bytes[..]))
        .map(Result::unwrap)
        .collect();
    let entries = tar_entries(&path);
    let entry_name = format!("{}.tar", gzip_layer.digest.encoded());
    let found = entries.iter().find(|(name, _)| *name == entry_name);
    assert!(
        found.is_some_and(|(_, content)| *content == plain),
        "{entry_name}"
    );
    assert_eq!(
        manifest_layers(&entries),
        [
            entry_name,
            format!("{}.tar", one.blobs[2].0.digest.encoded())
        ]
    );

    // Read back, the image's layers are plain tars whose digests are the config's diff_ids.
    let reader = ArchiveReader::open(&path, ReadAs::Docker, ArchiveLimits::default())
        .await
        .unwrap();
    let (app, v1) = archive_name("example/app:v1").unwrap();
    let manifest = reader.resolve_tag(&app, &v1).await.unwrap();
    let manifest = reader.get_manifest(&app, &manifest.digest).await.unwrap();
    let manifest: Vec<Bytes> = manifest.into_stream().try_collect().await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.concat()).unwrap();
    let layers: Vec<(&str, &str)> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap(),
                l["digest"].as_str().unwrap(),
            )
        })
        .collect();
    let diff_a = Digest::sha256(&plain).to_string();
    let diff_b = one.blobs[2].0.digest.to_string();
    assert_eq!(
        layers,
        [
            (media_type::OCI_LAYER_TAR, diff_a.as_str()),
            (media_type::OCI_LAYER_TAR, diff_b.as_str())
        ]
    );
    let config = &one.blobs[0];
    assert_eq!(read_all(&reader, &app, &config.0.digest).await, config.1);
}

/// A gzip layer whose trailer does not give its size is sent as stored, in an entry of its
/// own that `manifest.json` names; the entry begun with the wrong size is completed (cut or
/// padded) and named by nothing. Three ways: two gzip members (the trailer counts only the
/// second: content longer than announced), a trailer that claims more than the content (short,
/// and the decompressor refuses the trailer), a plain tar labelled gzip and a small layer
/// claiming 4 GiB (trailers that cannot be a size: sent as stored from the start).
#[tokio::test]
async fn gzip_layers_whose_trailer_is_not_their_size_are_sent_as_stored() {
    let two_members = [
        gzip(&layer_tar("first", b"first member")),
        gzip(&layer_tar("second", b"second member")),
    ]
    .concat();
    let mut lying = gzip(&layer_tar("liar", b"trailer says more"));
    let end = lying.len();
    let claimed = u32::from_le_bytes(lying[end - 4..].try_into().unwrap()) + 4096;
    lying[end - 4..].copy_from_slice(&claimed.to_le_bytes());
    let plain = layer_tar("plain", &[b'p'; 4000]);
    // A few bytes claiming 4 GiB, more than deflate can make of them: its entry would have
    // been padded with zeros to that size.
    let mut boasting = gzip(&layer_tar("small", b"small"));
    let end = boasting.len();
    boasting[end - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    for (case, layer, wasted) in [
        ("two members", two_members, true),
        ("lying trailer", lying, true),
        ("plain tar", plain, false),
        ("impossible trailer", boasting, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let one = with_gzip_layer(image(case, "amd64"), layer.clone());
        let path = write_with_layer_source(&dir, &one).await;
        let entries = tar_entries(&path);
        let hex = one.blobs[1].0.digest.encoded().to_owned();
        let named = &manifest_layers(&entries)[0];
        let (_, content) = entries.iter().find(|(name, _)| name == named).unwrap();
        assert_eq!(*content, layer, "{case}: {named}");
        let first = entries
            .iter()
            .find(|(name, _)| *name == format!("{hex}.tar"));
        if wasted {
            assert_eq!(*named, format!("{hex}.gz"), "{case}");
            assert!(first.is_some(), "{case}: the entry begun");
        } else {
            assert_eq!(*named, format!("{hex}.tar"), "{case}");
        }
    }
}

/// A gzip layer pushed with content that does not match its digest fails the push, as any
/// push does, though its trailer (read from the source, which holds the right content)
/// promised a size.
#[tokio::test]
async fn an_inflated_layer_is_still_checked_against_its_digest() {
    let one = image("checked inflated", "amd64");
    let source = std::sync::Arc::new(oci_store::MemoryStore::new());
    let from = repo("source/app");
    push(source.as_ref(), &from, &one, &["v1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions::new().with_layer_source(oci_archive::LayerSource::new(
        std::sync::Arc::clone(&source) as _,
        from,
    ));
    let writer = ArchiveWriter::create(
        dir.path().join("bad.tar"),
        ArchiveFormat::Docker(DockerFormat::Classic),
        options,
    )
    .unwrap();
    let (layer, bytes) = &one.blobs[1];
    // The same gzip stream with another file name in its header: it inflates to the same
    // content and size, but is not the blob its descriptor names.
    let mut other = bytes.clone();
    other[4] ^= 1; // MTIME: not covered by any check of the decompressor.
    let (app, _) = archive_name("example/app:v1").unwrap();
    let error = writer
        .push_blob(&app, layer, body_from_bytes(other))
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(oci_store::ErrorCode::DigestInvalid),
        "{error}"
    );
    assert!(writer.resolve_blob(&app, &layer.digest).await.is_err());
}

/// A docker-archive naming one layer (or one config) many times is read, parsed and hashed
/// once per layer: 20,000 references to one 4 MiB layer took 20,000 hashes (80 GB, minutes)
/// before, and open now in moments (bounded here at 60 s, a hang for this test). An image
/// listing more layers than a manifest holds is refused, naming the count.
#[tokio::test]
async fn a_docker_archive_naming_one_layer_many_times_hashes_it_once() {
    let layer = vec![7u8; 4 << 20];
    // A config stating `layers` copies of the layer, padded to `padding` bytes.
    let config = |layers: usize, padding: usize| {
        let diff_id = Digest::sha256(&layer).to_string();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": vec![diff_id; layers]},
            "padding": "x".repeat(padding),
        });
        serde_json::to_vec(&config).unwrap()
    };
    let manifest = |references: usize, images: usize, config: &dyn Fn(usize) -> String| {
        let layers = vec![r#""l.tar""#; references].join(",");
        let images: Vec<String> = (0..images)
            .map(|n| format!(r#"{{"Config":"{}","Layers":[{layers}]}}"#, config(n)))
            .collect();
        format!("[{}]", images.join(","))
    };
    let dir = tempfile::tempdir().unwrap();
    let many = manifest(20_000, 1, &|_| "c.json".to_owned());
    let images = manifest(1, 20_000, &|_| "c.json".to_owned());
    // One config (of almost 8 MiB, the limit) under 20,000 names: each was read, parsed and
    // hashed again, 160 GB of work.
    let variants = manifest(1, 20_000, &|n| format!("{n}/../c.json"));
    let cases = [
        ("one-image", &many, config(20_000, 0), 1),
        ("many-images", &images, config(1, 0), 20_000),
        (
            "config-names",
            &variants,
            config(1, (8 << 20) - 4096),
            20_000,
        ),
    ];
    for (name, text, config, expected) in cases {
        let path = dir.path().join(format!("{name}.tar"));
        std::fs::write(
            &path,
            raw_tar(&[
                ("manifest.json", text.as_bytes()),
                ("c.json", &config),
                ("l.tar", &layer),
            ]),
        )
        .unwrap();
        // On a thread of its own, so that a hang fails the test instead of holding it.
        let (done, opened) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let limits = ArchiveLimits::default();
            let read = ArchiveReader::open_blocking(&path, ReadAs::Docker, &limits);
            let _ = done.send(read.map(|reader| reader.images().len()));
        });
        let images = opened
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name}: still opening after 60 s"))
            .unwrap();
        assert_eq!(images, expected, "{name}");
    }
    let too_many = manifest(40_000, 1, &|_| "c.json".to_owned());
    let error = open_error(
        &raw_tar(&[
            ("manifest.json", too_many.as_bytes()),
            ("c.json", &config(0, 0)),
            ("l.tar", b"x"),
        ]),
        ReadAs::Docker,
        ArchiveLimits::default(),
    )
    .await;
    assert!(error.contains("40000 layers"), "{error}");
}

/// The manifests an archive's index reaches are held in memory while it is read: past
/// `max_manifest_bytes` the archive is refused naming the limit, rather than tens of
/// thousands of 4 MiB "artifacts" filling memory; within it, the same archive opens.
#[tokio::test]
async fn the_manifests_held_in_memory_are_limited() {
    let blobs: Vec<(String, Vec<u8>)> = (0..8u8)
        .map(|n| {
            let content = vec![n; 1 << 20];
            let name = format!("blobs/sha256/{}", Digest::sha256(&content).encoded());
            (name, content)
        })
        .collect();
    let descriptors: Vec<serde_json::Value> = blobs
        .iter()
        .map(|(_, content)| {
            serde_json::json!({
                "mediaType": "application/x-a",
                "digest": Digest::sha256(content).to_string(),
                "size": content.len(),
            })
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": descriptors}).to_string();
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", index.as_bytes()),
    ];
    entries.extend(blobs.iter().map(|(n, c)| (n.as_str(), c.as_slice())));
    let bytes = raw_tar(&entries);
    let limits = ArchiveLimits::default().with_max_manifest_bytes(4 << 20);
    let error = open_error(&bytes, ReadAs::Oci, limits).await;
    assert!(error.contains("more than 4194304 bytes"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("within.tar");
    std::fs::write(&path, &bytes).unwrap();
    let reader = ArchiveReader::open(&path, ReadAs::Oci, ArchiveLimits::default())
        .await
        .unwrap();
    assert_eq!(reader.images().len(), 8);
}
