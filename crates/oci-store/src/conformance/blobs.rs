//! Checks of blob reads, pushes, ranges and mounts.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use oci_types::{Algorithm, Descriptor, Digest, Digester, MediaType, Repository};

use super::{Fixture, assert_code, assert_read_fails, get, layer_type, push, read, seeded_bytes};
use crate::{ErrorCode, body_from_bytes};

/// A pushed blob reads back byte for byte, with its digest and size.
pub async fn blob_push_then_get(f: &Fixture) {
    let repo = f.repo("blob_push_then_get");
    let content = seeded_bytes(1, 100_000);
    let pushed = push(f, &repo, content.clone()).await;
    assert_eq!(get(f, &repo, &pushed.digest).await, content);
}

/// Resolving a blob gives its digest and size without its content.
pub async fn blob_resolve(f: &Fixture) {
    let repo = f.repo("blob_resolve");
    let pushed = push(f, &repo, "resolve me").await;
    let resolved = f.store.resolve_blob(&repo, &pushed.digest).await.unwrap();
    assert_eq!((resolved.digest, resolved.size), (pushed.digest, 10));
}

/// A blob that was never pushed is `BLOB_UNKNOWN` for get, resolve and range reads.
pub async fn blob_unknown(f: &Fixture) {
    let repo = f.repo("blob_unknown");
    push(f, &repo, "something else").await;
    let missing = Digest::sha256(b"never pushed");
    let codes = [ErrorCode::BlobUnknown];
    assert_read_fails(f.store.get_blob(&repo, &missing).await, &codes, "get_blob").await;
    assert_code(
        f.store.resolve_blob(&repo, &missing).await,
        &codes,
        "resolve_blob",
    );
    assert_read_fails(
        f.store.get_blob_range(&repo, &missing, 0, Some(1)).await,
        &codes,
        "get_blob_range",
    )
    .await;
}

/// A repository that does not exist gives `NAME_UNKNOWN` or `BLOB_UNKNOWN`.
pub async fn blob_unknown_repository(f: &Fixture) {
    let repo = f.repo("blob_unknown_repository");
    let missing = Digest::sha256(b"x");
    let codes = [ErrorCode::NameUnknown, ErrorCode::BlobUnknown];
    assert_read_fails(f.store.get_blob(&repo, &missing).await, &codes, "get_blob").await;
    assert_code(
        f.store.resolve_blob(&repo, &missing).await,
        &codes,
        "resolve_blob",
    );
}

/// Content that does not match its digest is refused with `DIGEST_INVALID` and never appears.
pub async fn blob_wrong_digest_leaves_nothing(f: &Fixture) {
    let repo = f.repo("blob_wrong_digest_leaves_nothing");
    push(f, &repo, "anchor").await;
    let claimed = Descriptor::of_bytes(layer_type(), b"what was promised");
    let result = f
        .store
        .push_blob(&repo, &claimed, body_from_bytes("what was sent 123"))
        .await;
    assert_code(
        result,
        &[ErrorCode::DigestInvalid],
        "push with a wrong digest",
    );
    assert_code(
        f.store.resolve_blob(&repo, &claimed.digest).await,
        &[ErrorCode::BlobUnknown],
        "the refused blob under its claimed digest",
    );
    let sent = Digest::sha256(b"what was sent 123");
    assert_code(
        f.store.resolve_blob(&repo, &sent).await,
        &[ErrorCode::BlobUnknown],
        "the refused blob under its real digest",
    );
}

/// Content shorter or longer than its stated size is refused with `SIZE_INVALID` (or
/// `DIGEST_INVALID`) and never appears.
pub async fn blob_wrong_size_leaves_nothing(f: &Fixture) {
    let repo = f.repo("blob_wrong_size_leaves_nothing");
    push(f, &repo, "anchor").await;
    let content = Bytes::from_static(b"twelve bytes");
    for stated in [11, 13, 0, 1 << 40] {
        let mut claimed = Descriptor::of_bytes(layer_type(), &content);
        claimed.size = stated;
        let result = f
            .store
            .push_blob(&repo, &claimed, body_from_bytes(content.clone()))
            .await;
        assert_code(
            result,
            &[ErrorCode::SizeInvalid, ErrorCode::DigestInvalid],
            &format!("push of 12 bytes stated as {stated}"),
        );
        assert_code(
            f.store.resolve_blob(&repo, &claimed.digest).await,
            &[ErrorCode::BlobUnknown],
            "the refused blob",
        );
    }
}

/// A body that fails part-way fails the push, and nothing appears.
pub async fn blob_failed_body_leaves_nothing(f: &Fixture) {
    let repo = f.repo("blob_failed_body_leaves_nothing");
    push(f, &repo, "anchor").await;
    let content = seeded_bytes(3, 4096);
    let descriptor = Descriptor::of_bytes(layer_type(), &content);
    let broken = futures::stream::iter(vec![
        Ok(content.slice(..1000)),
        Err(crate::Error::io(
            "the source went away",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        )),
    ])
    .boxed()
    .into();
    let result = f.store.push_blob(&repo, &descriptor, broken).await;
    assert!(result.is_err(), "a push whose body failed must fail");
    assert_code(
        f.store.resolve_blob(&repo, &descriptor.digest).await,
        &[ErrorCode::BlobUnknown],
        "the blob whose body failed",
    );
}

/// The empty blob can be pushed and read.
pub async fn blob_empty(f: &Fixture) {
    let repo = f.repo("blob_empty");
    let pushed = push(f, &repo, Bytes::new()).await;
    assert_eq!(
        pushed.digest.as_str(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(get(f, &repo, &pushed.digest).await, b"");
    assert_eq!(
        f.store
            .resolve_blob(&repo, &pushed.digest)
            .await
            .unwrap()
            .size,
        0
    );
}

/// Pushing the same blob twice succeeds and keeps one blob.
pub async fn blob_pushed_twice(f: &Fixture) {
    let repo = f.repo("blob_pushed_twice");
    let first = push(f, &repo, "same content").await;
    let second = push(f, &repo, "same content").await;
    assert_eq!(first.digest, second.digest);
    assert_eq!(get(f, &repo, &first.digest).await, b"same content");
}

/// SHA-512 blobs are verified with SHA-512.
pub async fn blob_sha512(f: &Fixture) {
    if !f.caps.sha512 {
        return f.skip("blob_sha512", "sha512");
    }
    let repo = f.repo("blob_sha512");
    let content = seeded_bytes(512, 5000);
    let descriptor = Descriptor::new(layer_type(), Digest::of(Algorithm::Sha512, &content), 5000);
    let stored = f
        .store
        .push_blob(&repo, &descriptor, body_from_bytes(content.clone()))
        .await
        .unwrap();
    assert_eq!(stored.digest.algorithm(), Algorithm::Sha512);
    assert_eq!(get(f, &repo, &descriptor.digest).await, content);
    let wrong = Descriptor::new(layer_type(), Digest::of(Algorithm::Sha512, b"other"), 5000);
    assert_code(
        f.store
            .push_blob(&repo, &wrong, body_from_bytes(content))
            .await,
        &[ErrorCode::DigestInvalid],
        "sha512 push with a wrong digest",
    );
}

async fn range(
    f: &Fixture,
    repo: &Repository,
    digest: &Digest,
    start: u64,
    end: Option<u64>,
) -> Vec<u8> {
    let reader = f
        .store
        .get_blob_range(repo, digest, start, end)
        .await
        .unwrap_or_else(|e| panic!("range {start}..{end:?}: {e}"));
    assert_eq!(
        &reader.descriptor().digest,
        digest,
        "a range's descriptor names the whole blob"
    );
    assert_eq!(
        reader.descriptor().size,
        11,
        "a range's descriptor has the whole blob's size"
    );
    read(reader).await.unwrap()
}

/// A range inside the blob gives exactly those bytes (`[start, end)`).
pub async fn blob_range_in_bounds(f: &Fixture) {
    let repo = f.repo("blob_range_in_bounds");
    let pushed = push(f, &repo, "hello world").await;
    assert_eq!(range(f, &repo, &pushed.digest, 6, Some(8)).await, b"wo");
    assert_eq!(range(f, &repo, &pushed.digest, 0, Some(1)).await, b"h");
    assert_eq!(range(f, &repo, &pushed.digest, 10, Some(11)).await, b"d");
}

/// A range with no end runs to the end of the blob.
pub async fn blob_range_to_end(f: &Fixture) {
    let repo = f.repo("blob_range_to_end");
    let pushed = push(f, &repo, "hello world").await;
    assert_eq!(
        range(f, &repo, &pushed.digest, 1, None).await,
        b"ello world"
    );
}

/// A range whose end lies past the blob is cut at the end.
pub async fn blob_range_beyond_end(f: &Fixture) {
    let repo = f.repo("blob_range_beyond_end");
    let pushed = push(f, &repo, "hello world").await;
    assert_eq!(
        range(f, &repo, &pushed.digest, 1, Some(5000)).await,
        b"ello world"
    );
}

/// Ranges that select no byte are `RANGE_INVALID`.
pub async fn blob_range_invalid(f: &Fixture) {
    let repo = f.repo("blob_range_invalid");
    let pushed = push(f, &repo, "hello world").await;
    for (start, end) in [
        (11, None),
        (5000, None),
        (5, Some(5)),
        (6, Some(2)),
        (12, Some(20)),
    ] {
        assert_read_fails(
            f.store
                .get_blob_range(&repo, &pushed.digest, start, end)
                .await,
            &[ErrorCode::RangeInvalid],
            &format!("range {start}..{end:?} of an 11-byte blob"),
        )
        .await;
    }
}

/// A 64 MiB blob is pushed and read as a stream of 1 MiB pieces and verified on the way, without
/// the check ever holding it whole.
pub async fn blob_large_streamed(f: &Fixture) {
    const PIECE: usize = 1 << 20;
    const PIECES: u64 = 64;
    let repo = f.repo("blob_large_streamed");
    let piece = |i: u64| seeded_bytes(1000 + i, PIECE);
    let mut digester = Digester::new(Algorithm::Sha256);
    for i in 0..PIECES {
        digester.update(&piece(i));
    }
    let descriptor = Descriptor::new(layer_type(), digester.finish(), PIECES * PIECE as u64);
    let body = futures::stream::iter(0..PIECES)
        .map(move |i| Ok(piece(i)))
        .boxed()
        .into();
    f.store.push_blob(&repo, &descriptor, body).await.unwrap();

    let mut stream = f
        .store
        .get_blob(&repo, &descriptor.digest)
        .await
        .unwrap()
        .into_stream();
    let mut check = Digester::new(Algorithm::Sha256);
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len() as u64;
        check.update(&chunk);
    }
    assert_eq!(total, descriptor.size);
    assert_eq!(check.finish(), descriptor.digest);
}

/// Sixteen concurrent pushes of one blob all succeed and leave it whole.
pub async fn blob_concurrent_pushes(f: &Fixture) {
    let repo = f.repo("blob_concurrent_pushes");
    let content = seeded_bytes(16, 300_000);
    let descriptor = Descriptor::of_bytes(layer_type(), &content);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&f.store);
            let (repo, descriptor, content) = (repo.clone(), descriptor.clone(), content.clone());
            tokio::spawn(async move {
                store
                    .push_blob(&repo, &descriptor, body_from_bytes(content))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .expect("push task panicked")
            .expect("concurrent push");
    }
    assert_eq!(get(f, &repo, &descriptor.digest).await, content);
}

/// A stored blob damaged behind the store's back is caught when read: the read fails with
/// `DIGEST_INVALID` or `SIZE_INVALID` instead of returning the damaged bytes as good.
pub async fn blob_corruption_detected(f: &Fixture) {
    let Some(corrupt) = f.corrupter.clone() else {
        return f.skip("blob_corruption_detected", "corrupter hook");
    };
    let repo = f.repo("blob_corruption_detected");
    let pushed = push(f, &repo, seeded_bytes(99, 10_000)).await;
    assert!(
        corrupt(repo.clone(), pushed.digest.clone()).await,
        "the corrupter found the blob"
    );
    assert_read_fails(
        f.store.get_blob(&repo, &pushed.digest).await,
        &[ErrorCode::DigestInvalid, ErrorCode::SizeInvalid],
        "reading a corrupted blob",
    )
    .await;
}

/// Names outside the distribution-spec grammar never reach a store: parsing refuses them, and
/// the refusal carries `NAME_INVALID` (or `DIGEST_INVALID` for digests).
pub async fn name_invalid_refused(_f: &Fixture) {
    for name in [
        "",
        "UPPER/case",
        "a/../b",
        "../x",
        "a//b",
        "/a",
        "a/",
        "a b",
        "a___b",
    ] {
        let result = Repository::parse(name).map_err(crate::Error::from);
        assert_code(
            result,
            &[ErrorCode::NameInvalid],
            &format!("repository {name:?}"),
        );
    }
    for digest in [
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:../../etc/passwd",
    ] {
        let result = Digest::parse(digest).map_err(crate::Error::from);
        assert_code(
            result,
            &[ErrorCode::DigestInvalid],
            &format!("digest {digest:?}"),
        );
    }
    let result = MediaType::parse("not a media type").map_err(crate::Error::from);
    assert_code(result, &[ErrorCode::ManifestInvalid], "media type");
}

/// A blob mounted from another repository reads back in the target.
pub async fn blob_mount(f: &Fixture) {
    if !f.caps.cross_repo_mount {
        return f.skip("blob_mount", "cross-repository mount");
    }
    let from = f.repo("blob_mount_from");
    let to = f.repo("blob_mount_to");
    let pushed = push(f, &from, "mount me").await;
    push(f, &to, "anchor").await;
    let mounted = f
        .store
        .mount_blob(&from, &to, &pushed.digest)
        .await
        .unwrap();
    assert_eq!(mounted.digest, pushed.digest);
    assert_eq!(get(f, &to, &pushed.digest).await, b"mount me");
}

/// Mounting a blob the source lacks is `BLOB_UNKNOWN` (or `NAME_UNKNOWN`), and nothing appears.
pub async fn blob_mount_unknown(f: &Fixture) {
    if !f.caps.cross_repo_mount {
        return f.skip("blob_mount_unknown", "cross-repository mount");
    }
    let from = f.repo("blob_mount_unknown_from");
    let to = f.repo("blob_mount_unknown_to");
    push(f, &from, "anchor").await;
    let missing = Digest::sha256(b"not there");
    assert_code(
        f.store.mount_blob(&from, &to, &missing).await,
        &[ErrorCode::BlobUnknown, ErrorCode::NameUnknown],
        "mount of an unknown blob",
    );
    assert_code(
        f.store.resolve_blob(&to, &missing).await,
        &[ErrorCode::BlobUnknown, ErrorCode::NameUnknown],
        "the unknown blob in the target",
    );
}
