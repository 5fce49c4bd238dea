//! Checks of tags, deletes and listings.

use std::sync::Arc;

use oci_types::{Digest, Repository, Tag, media_type};

use super::{
    Fixture, assert_code, assert_read_fails, collect, get, push, push_image, push_manifest, tag,
};
use crate::{ErrorCode, ListParams};

async fn tags_of(f: &Fixture, repo: &Repository, params: &ListParams) -> Vec<String> {
    collect(f.store.tags(repo, params))
        .await
        .unwrap_or_else(|e| panic!("tags of {repo}: {e}"))
        .iter()
        .map(Tag::to_string)
        .collect()
}

/// Pushing a tag that exists moves it to the new manifest.
pub async fn tag_overwrite(f: &Fixture) {
    let repo = f.repo("tag_overwrite");
    let (_, old) = push_image(f, &repo, 201, &["moving"]).await;
    let (_, new) = push_image(f, &repo, 202, &["moving"]).await;
    assert_ne!(old.digest, new.digest);
    let resolved = f.store.resolve_tag(&repo, &tag("moving")).await.unwrap();
    assert_eq!(resolved.digest, new.digest, "the tag follows the last push");
    f.store
        .resolve_manifest(&repo, &old.digest)
        .await
        .expect("the old manifest stays");
}

/// A tag never pushed is `MANIFEST_UNKNOWN` and is not listed.
pub async fn tag_unknown(f: &Fixture) {
    let repo = f.repo("tag_unknown");
    push_image(f, &repo, 211, &["real"]).await;
    assert_code(
        f.store.resolve_tag(&repo, &tag("imagined")).await,
        &[ErrorCode::ManifestUnknown],
        "unknown tag",
    );
    assert_eq!(tags_of(f, &repo, &ListParams::new()).await, ["real"]);
}

/// Tags are listed in lexical (byte) order, whatever order they were pushed in.
pub async fn tags_sorted(f: &Fixture) {
    let repo = f.repo("tags_sorted");
    let names = ["latest", "1.10", "1.9", "A", "_x", "a", "Z-9", "0"];
    push_image(f, &repo, 221, &names).await;
    let mut expected: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(tags_of(f, &repo, &ListParams::new()).await, expected);
}

/// Paging with `start_after` and `limit` walks every tag once, across page boundaries.
pub async fn tags_paged(f: &Fixture) {
    let repo = f.repo("tags_paged");
    let names: Vec<String> = (0..23).map(|i| format!("t{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    push_image(f, &repo, 231, &refs).await;
    for page in [1, 5, 7, 22, 23, 100] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut params = ListParams::new().with_limit(page);
            params.start_after = after.clone();
            let batch = tags_of(f, &repo, &params).await;
            assert!(
                batch.len() <= page,
                "a page of {page} returned {}",
                batch.len()
            );
            if batch.is_empty() {
                break;
            }
            after = batch.last().cloned();
            seen.extend(batch);
        }
        assert_eq!(seen, names, "paging by {page}");
    }
    assert_eq!(
        tags_of(f, &repo, &ListParams::new().with_start_after("t020")).await,
        ["t021", "t022"]
    );
    assert_eq!(
        tags_of(f, &repo, &ListParams::new().with_start_after("t0055"))
            .await
            .first()
            .map(String::as_str),
        Some("t006")
    );
    assert!(
        tags_of(f, &repo, &ListParams::new().with_start_after("zzz"))
            .await
            .is_empty()
    );
    assert!(
        tags_of(f, &repo, &ListParams::new().with_limit(0))
            .await
            .is_empty()
    );
}

/// Listing the tags of a repository that does not exist is `NAME_UNKNOWN`.
pub async fn tags_unknown_repository(f: &Fixture) {
    let repo = f.repo("tags_unknown_repository");
    assert_code(
        collect(f.store.tags(&repo, &ListParams::new())).await,
        &[ErrorCode::NameUnknown],
        "tags of an unknown repository",
    );
}

/// Sixteen concurrent pushes of different tags all land.
pub async fn tags_concurrent_pushes(f: &Fixture) {
    let repo = f.repo("tags_concurrent_pushes");
    let (bytes, pushed) = push_image(f, &repo, 241, &[]).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&f.store);
            let (repo, bytes) = (repo.clone(), bytes.clone());
            tokio::spawn(async move {
                let params = crate::PushManifestParams::new().with_tag(tag(&format!("c{i:02}")));
                let kind = oci_types::MediaType::from_static(media_type::OCI_MANIFEST);
                store.push_manifest(&repo, bytes, &kind, &params).await
            })
        })
        .collect();
    for task in tasks {
        let descriptor = task
            .await
            .expect("push task panicked")
            .expect("concurrent tag push");
        assert_eq!(descriptor.digest, pushed.digest);
    }
    let expected: Vec<String> = (0..16).map(|i| format!("c{i:02}")).collect();
    assert_eq!(tags_of(f, &repo, &ListParams::new()).await, expected);
}

/// Deleting a tag removes the tag only; the manifest stays readable by digest.
pub async fn tag_delete(f: &Fixture) {
    if !f.caps.deletes || !f.caps.tag_deletes {
        return f.skip("tag_delete", "tag deletes");
    }
    let repo = f.repo("tag_delete");
    let (_, pushed) = push_image(f, &repo, 251, &["gone", "kept"]).await;
    f.store.delete_tag(&repo, &tag("gone")).await.unwrap();
    assert_code(
        f.store.resolve_tag(&repo, &tag("gone")).await,
        &[ErrorCode::ManifestUnknown],
        "deleted tag",
    );
    assert_eq!(tags_of(f, &repo, &ListParams::new()).await, ["kept"]);
    f.store
        .resolve_manifest(&repo, &pushed.digest)
        .await
        .expect("manifest outlives its tag");
}

/// Deleting a manifest makes it unknown by digest and removes every tag pointing at it.
pub async fn manifest_delete_removes_tags(f: &Fixture) {
    if !f.caps.deletes {
        return f.skip("manifest_delete_removes_tags", "deletes");
    }
    let repo = f.repo("manifest_delete_removes_tags");
    let (_, doomed) = push_image(f, &repo, 261, &["a", "b"]).await;
    let (_, other) = push_image(f, &repo, 262, &["c"]).await;
    f.store
        .delete_manifest(&repo, &doomed.digest)
        .await
        .unwrap();
    assert_read_fails(
        f.store.get_manifest(&repo, &doomed.digest).await,
        &[ErrorCode::ManifestUnknown],
        "deleted manifest",
    )
    .await;
    for name in ["a", "b"] {
        assert_code(
            f.store.resolve_tag(&repo, &tag(name)).await,
            &[ErrorCode::ManifestUnknown],
            "tag of a deleted manifest",
        );
    }
    assert_eq!(tags_of(f, &repo, &ListParams::new()).await, ["c"]);
    assert_eq!(
        f.store.resolve_tag(&repo, &tag("c")).await.unwrap().digest,
        other.digest
    );
}

/// Deleting a blob makes it unknown; other blobs stay.
pub async fn blob_delete(f: &Fixture) {
    if !f.caps.deletes {
        return f.skip("blob_delete", "deletes");
    }
    let repo = f.repo("blob_delete");
    let doomed = push(f, &repo, "delete me").await;
    let kept = push(f, &repo, "keep me").await;
    f.store.delete_blob(&repo, &doomed.digest).await.unwrap();
    assert_read_fails(
        f.store.get_blob(&repo, &doomed.digest).await,
        &[ErrorCode::BlobUnknown],
        "deleted blob",
    )
    .await;
    assert_code(
        f.store.resolve_blob(&repo, &doomed.digest).await,
        &[ErrorCode::BlobUnknown],
        "resolve of a deleted blob",
    );
    assert_eq!(get(f, &repo, &kept.digest).await, b"keep me");
}

/// Deleting what is not there is `BLOB_UNKNOWN` or `MANIFEST_UNKNOWN`.
pub async fn delete_unknown(f: &Fixture) {
    if !f.caps.deletes {
        return f.skip("delete_unknown", "deletes");
    }
    let repo = f.repo("delete_unknown");
    push_image(f, &repo, 271, &["here"]).await;
    let missing = Digest::sha256(b"missing");
    assert_code(
        f.store.delete_blob(&repo, &missing).await,
        &[ErrorCode::BlobUnknown],
        "delete of an unknown blob",
    );
    assert_code(
        f.store.delete_manifest(&repo, &missing).await,
        &[ErrorCode::ManifestUnknown],
        "delete of an unknown manifest",
    );
    if f.caps.tag_deletes {
        assert_code(
            f.store.delete_tag(&repo, &tag("not-here")).await,
            &[ErrorCode::ManifestUnknown],
            "delete of an unknown tag",
        );
    }
}

/// Repositories are listed in order and page with `start_after` and `limit`.
pub async fn repositories_paged(f: &Fixture) {
    if !f.caps.repository_listing {
        return f.skip("repositories_paged", "repository listing");
    }
    let base = f.repo("repositories_paged");
    let names: Vec<Repository> = ["a", "b/c", "b", "d/e/f", "c"]
        .iter()
        .map(|suffix| Repository::parse(&format!("{base}/{suffix}")).unwrap())
        .collect();
    for (i, repo) in names.iter().enumerate() {
        push_manifest(
            f,
            repo,
            super::index_of(&[]),
            media_type::OCI_INDEX,
            &[&format!("r{i}")],
        )
        .await;
    }
    let mut expected: Vec<String> = names.iter().map(ToString::to_string).collect();
    expected.sort();
    // Other checks share the store: look only at this check's part of the listing.
    let mine = |all: Vec<Repository>| -> Vec<String> {
        all.iter()
            .map(ToString::to_string)
            .filter(|n| n.starts_with(&format!("{base}/")))
            .collect()
    };
    let all = collect(
        f.store
            .repositories(&ListParams::new().with_start_after(base.as_str())),
    )
    .await
    .unwrap();
    let sorted = all.windows(2).all(|w| w[0] < w[1]);
    assert!(sorted, "repositories are listed in order without repeats");
    assert_eq!(mine(all), expected);
    let mut seen = Vec::new();
    let mut after = base.to_string();
    loop {
        let page = collect(
            f.store.repositories(
                &ListParams::new()
                    .with_start_after(after.clone())
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.to_string();
        let page = mine(page);
        if page.is_empty() {
            break;
        }
        seen.extend(page);
    }
    assert_eq!(seen, expected, "paging repositories by 2");
}
