//! Checks of chunked, resumable uploads.

use bytes::Bytes;
use oci_types::{Algorithm, Digest};

use super::{Fixture, assert_code, get, push, seeded_bytes};
use crate::ErrorCode;

/// Writes `content` through a writer in pieces of `piece` bytes.
async fn write_all(writer: &mut Box<dyn crate::BlobWriter>, content: &Bytes, piece: usize) {
    for start in (0..content.len()).step_by(piece.max(1)) {
        let end = (start + piece).min(content.len());
        writer.write(content.slice(start..end)).await.unwrap();
    }
}

/// An upload written in several chunks commits to the whole blob.
pub async fn upload_in_several_chunks(f: &Fixture) {
    let repo = f.repo("upload_in_several_chunks");
    let content = seeded_bytes(7, 200_000);
    let mut writer = f
        .store
        .push_blob_chunked(&repo, Some(30_000))
        .await
        .unwrap();
    assert!(writer.chunk_size() >= 1, "a writer reports a chunk size");
    assert!(!writer.id().is_empty(), "a writer has an id");
    write_all(&mut writer, &content, 30_000).await;
    assert_eq!(writer.size(), 200_000);
    let digest = Digest::sha256(&content);
    let stored = writer.commit(&digest).await.unwrap();
    assert_eq!(
        (stored.digest.clone(), stored.size),
        (digest.clone(), 200_000)
    );
    assert_eq!(get(f, &repo, &digest).await, content);
}

/// Committing with a digest the content does not have is `DIGEST_INVALID`; nothing appears
/// under either digest.
pub async fn upload_commit_wrong_digest(f: &Fixture) {
    let repo = f.repo("upload_commit_wrong_digest");
    push(f, &repo, "anchor").await;
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer
        .write(Bytes::from_static(b"actual content"))
        .await
        .unwrap();
    let claimed = Digest::sha256(b"claimed content");
    assert_code(
        writer.commit(&claimed).await,
        &[ErrorCode::DigestInvalid],
        "commit",
    );
    for digest in [claimed, Digest::sha256(b"actual content")] {
        assert_code(
            f.store.resolve_blob(&repo, &digest).await,
            &[ErrorCode::BlobUnknown],
            "blob of a refused commit",
        );
    }
}

/// An upload closed part-way resumes by id at the offset reached and commits whole.
pub async fn upload_resume_at_offset(f: &Fixture) {
    if !f.caps.chunked_resume {
        return f.skip("upload_resume_at_offset", "resumable uploads");
    }
    let repo = f.repo("upload_resume_at_offset");
    let content = seeded_bytes(8, 100_000);
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer.write(content.slice(..40_000)).await.unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();

    let mut resumed = f
        .store
        .push_blob_chunked_resume(&repo, &id, Some(40_000), None)
        .await
        .unwrap();
    assert_eq!(
        resumed.size(),
        40_000,
        "a resumed writer starts where the upload is"
    );
    resumed.write(content.slice(40_000..)).await.unwrap();
    let digest = Digest::sha256(&content);
    resumed.commit(&digest).await.unwrap();
    assert_eq!(get(f, &repo, &digest).await, content);
}

/// Resuming at an offset other than the upload's size is `RANGE_INVALID` (or
/// `BLOB_UPLOAD_INVALID`), and the upload can still go on from the right one.
pub async fn upload_resume_at_wrong_offset(f: &Fixture) {
    if !f.caps.chunked_resume {
        return f.skip("upload_resume_at_wrong_offset", "resumable uploads");
    }
    let repo = f.repo("upload_resume_at_wrong_offset");
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer
        .write(Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    for wrong in [0, 5, 11, 1000] {
        let result = match f
            .store
            .push_blob_chunked_resume(&repo, &id, Some(wrong), None)
            .await
        {
            // A store may only find out on the first write.
            Ok(mut w) => w.write(Bytes::from_static(b"x")).await.map(|()| w.size()),
            Err(error) => Err(error),
        };
        assert_code(
            result,
            &[ErrorCode::RangeInvalid, ErrorCode::BlobUploadInvalid],
            &format!("resume at {wrong} of a 10-byte upload"),
        );
    }
    let mut resumed = f
        .store
        .push_blob_chunked_resume(&repo, &id, Some(10), None)
        .await
        .unwrap();
    resumed.write(Bytes::from_static(b"abc")).await.unwrap();
    let digest = Digest::sha256(b"0123456789abc");
    resumed.commit(&digest).await.unwrap();
    assert_eq!(get(f, &repo, &digest).await, b"0123456789abc");
}

/// Resuming with no offset continues wherever the upload is.
pub async fn upload_resume_where_it_is(f: &Fixture) {
    if !f.caps.chunked_resume {
        return f.skip("upload_resume_where_it_is", "resumable uploads");
    }
    let repo = f.repo("upload_resume_where_it_is");
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer.write(Bytes::from_static(b"first ")).await.unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    let mut resumed = f
        .store
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap();
    assert_eq!(resumed.size(), 6);
    resumed.write(Bytes::from_static(b"second")).await.unwrap();
    let digest = Digest::sha256(b"first second");
    resumed.commit(&digest).await.unwrap();
    assert_eq!(get(f, &repo, &digest).await, b"first second");
}

/// An id no upload has is `BLOB_UPLOAD_UNKNOWN`.
pub async fn upload_unknown_id(f: &Fixture) {
    if !f.caps.chunked_resume {
        return f.skip("upload_unknown_id", "resumable uploads");
    }
    let repo = f.repo("upload_unknown_id");
    push(f, &repo, "anchor").await;
    for id in ["0123456789abcdef0123456789abcdef", "no-such-upload"] {
        assert_code(
            f.store
                .push_blob_chunked_resume(&repo, id, None, None)
                .await,
            &[ErrorCode::BlobUploadUnknown],
            &format!("resume of unknown upload {id:?}"),
        );
    }
}

/// A cancelled upload is gone: resuming it is `BLOB_UPLOAD_UNKNOWN`, and its content never
/// appears.
pub async fn upload_cancelled(f: &Fixture) {
    let repo = f.repo("upload_cancelled");
    push(f, &repo, "anchor").await;
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer.write(Bytes::from_static(b"doomed")).await.unwrap();
    let id = writer.id().to_owned();
    writer.cancel().await.unwrap();
    if f.caps.chunked_resume {
        assert_code(
            f.store
                .push_blob_chunked_resume(&repo, &id, None, None)
                .await,
            &[ErrorCode::BlobUploadUnknown],
            "resume of a cancelled upload",
        );
    }
    assert_code(
        f.store
            .resolve_blob(&repo, &Digest::sha256(b"doomed"))
            .await,
        &[ErrorCode::BlobUnknown],
        "content of a cancelled upload",
    );
}

/// Cancelling an upload that another writer already cancelled succeeds.
pub async fn upload_cancel_twice(f: &Fixture) {
    if !f.caps.chunked_resume {
        return f.skip("upload_cancel_twice", "resumable uploads");
    }
    let repo = f.repo("upload_cancel_twice");
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer.write(Bytes::from_static(b"x")).await.unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    let first = f
        .store
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap();
    let second = f
        .store
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap();
    first.cancel().await.expect("first cancel");
    second
        .cancel()
        .await
        .expect("second cancel of the same upload");
}

/// An upload with no content commits to the empty blob.
pub async fn upload_empty(f: &Fixture) {
    let repo = f.repo("upload_empty");
    let writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    let digest = Digest::sha256(b"");
    let stored = writer.commit(&digest).await.unwrap();
    assert_eq!(stored.size, 0);
    assert_eq!(get(f, &repo, &digest).await, b"");
}

/// An upload commits under a SHA-512 digest, verified with SHA-512.
pub async fn upload_sha512(f: &Fixture) {
    if !f.caps.sha512 {
        return f.skip("upload_sha512", "sha512");
    }
    let repo = f.repo("upload_sha512");
    let content = seeded_bytes(51, 70_000);
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    write_all(&mut writer, &content, 16_384).await;
    let digest = Digest::of(Algorithm::Sha512, &content);
    writer.commit(&digest).await.unwrap();
    assert_eq!(get(f, &repo, &digest).await, content);
}

/// An upload belongs to its repository: another repository cannot resume it.
pub async fn upload_other_repository(f: &Fixture) {
    if !f.caps.chunked_resume {
        return f.skip("upload_other_repository", "resumable uploads");
    }
    let repo = f.repo("upload_other_repository");
    let other = f.repo("upload_other_repository_b");
    push(f, &other, "anchor").await;
    let mut writer = f.store.push_blob_chunked(&repo, None).await.unwrap();
    writer.write(Bytes::from_static(b"mine")).await.unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    assert_code(
        f.store
            .push_blob_chunked_resume(&other, &id, None, None)
            .await,
        &[ErrorCode::BlobUploadUnknown],
        "resume of an upload from another repository",
    );
}
