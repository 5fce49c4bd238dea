//! The cache's own tests: fills, tags, verification.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_types::{ImageManifest, MediaType, Repository, Tag, media_type};

use super::Cached;
use crate::conformance::{Faulty, Fixture, seeded_bytes};
use crate::{ErrorCode, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams};

mod cached_memory {
    use super::*;
    crate::conformance_tests!(|| async {
        let remote = MemoryStore::new();
        let corrupter = remote.conformance_corrupter();
        Fixture::new(Cached::new(remote, MemoryStore::new())).with_corrupter(corrupter)
    });
}

fn repo() -> Repository {
    "cache/test".parse().unwrap()
}

async fn push_image(store: &MemoryStore, tag: &str, seed: u64) -> oci_types::Descriptor {
    let layer = store
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            seeded_bytes(seed, 1000),
        )
        .await
        .unwrap();
    let config = store
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from("{}"),
        )
        .await
        .unwrap();
    store
        .push_manifest(
            &repo(),
            ImageManifest::new(config, vec![layer]).to_json().into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag(tag.parse().unwrap()),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_digest_make_one_fetch() {
    let origin = MemoryStore::new();
    let blob = origin
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            seeded_bytes(1, 1 << 20),
        )
        .await
        .unwrap();
    let remote = Faulty::new(origin);
    let cache = Arc::new(Cached::new(remote.clone(), MemoryStore::new()));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (cache, digest) = (Arc::clone(&cache), blob.digest.clone());
            tokio::spawn(async move { cache.get_blob_bytes(&repo(), &digest, 1 << 21).await })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap().len(), 1 << 20);
    }
    assert_eq!(
        remote.calls("get_blob"),
        1,
        "sixteen concurrent misses, one fetch"
    );
    cache
        .get_blob_bytes(&repo(), &blob.digest, 1 << 21)
        .await
        .unwrap();
    assert_eq!(
        remote.calls("get_blob"),
        1,
        "a later read is served locally"
    );
}

#[tokio::test]
async fn a_manifest_is_cached_once_its_blobs_are_and_its_tag_is_trusted_for_the_ttl() {
    let origin = MemoryStore::new();
    let manifest = push_image(&origin, "v1", 3).await;
    let remote = Faulty::new(origin);
    let cache = Cached::new(remote.clone(), MemoryStore::new())
        .with_tag_ttl(std::time::Duration::from_secs(3600));
    let tag: Tag = "v1".parse().unwrap();
    // As a pull goes: the manifest (served at once, its blobs not cached yet), then its
    // blobs, read whole as ranges (as a server reads them).
    let first = cache
        .get_tag(&repo(), &tag)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    assert!(cache.local().resolve_tag(&repo(), &tag).await.is_err());
    let parsed = oci_types::Manifest::parse(&first, &manifest.media_type).unwrap();
    for reference in parsed.references() {
        let read = cache
            .get_blob_range(&repo(), &reference.digest, 0, None)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert_eq!(read.len() as u64, reference.size);
    }
    // The last blob in, the manifest and its tag were cached.
    assert_eq!(
        cache
            .local()
            .resolve_tag(&repo(), &tag)
            .await
            .unwrap()
            .digest,
        manifest.digest
    );
    // Within the TTL the tag is not asked again.
    let asked = remote.calls("resolve_tag");
    cache.resolve_tag(&repo(), &tag).await.unwrap();
    cache.get_tag(&repo(), &tag).await.unwrap();
    assert_eq!(remote.calls("resolve_tag"), asked);
    // With the remote away, all of it serves.
    remote.set_offline(true);
    let offline = cache
        .get_tag(&repo(), &tag)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    assert_eq!(offline, first);
}

#[tokio::test]
async fn a_whole_blob_read_as_a_range_fills_the_cache() {
    let origin = MemoryStore::new();
    let blob = origin
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            seeded_bytes(4, 5000),
        )
        .await
        .unwrap();
    let remote = Faulty::new(origin);
    let cache = Cached::new(remote.clone(), MemoryStore::new());
    let part = cache
        .get_blob_range(&repo(), &blob.digest, 10, Some(20))
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    assert_eq!(part.len(), 10);
    assert!(
        cache
            .local()
            .resolve_blob(&repo(), &blob.digest)
            .await
            .is_err(),
        "a part fills nothing"
    );
    cache
        .get_blob_range(&repo(), &blob.digest, 0, None)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    assert!(
        cache
            .local()
            .resolve_blob(&repo(), &blob.digest)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn content_is_served_locally_once_fetched() {
    let origin = MemoryStore::new();
    let manifest = push_image(&origin, "v1", 2).await;
    let remote = Faulty::new(origin);
    let cache = Cached::new(remote.clone(), MemoryStore::new());
    // Manifests are cached once their blobs are: pull the blobs, then the manifest.
    let tag: Tag = "v1".parse().unwrap();
    let bytes = cache
        .get_tag(&repo(), &tag)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    let parsed = oci_types::Manifest::parse(&bytes, &manifest.media_type).unwrap();
    for reference in parsed.references() {
        cache
            .get_blob_bytes(&repo(), &reference.digest, 1 << 20)
            .await
            .unwrap();
    }
    cache.get_tag(&repo(), &tag).await.unwrap();
    remote.set_offline(true);
    for reference in parsed.references() {
        cache
            .get_blob_bytes(&repo(), &reference.digest, 1 << 20)
            .await
            .unwrap();
    }
    let offline = cache
        .get_manifest(&repo(), &manifest.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    assert_eq!(offline, bytes);
}

#[tokio::test]
async fn the_last_known_tag_serves_while_the_remote_is_unavailable() {
    let origin = MemoryStore::new();
    let first = push_image(&origin, "moving", 3).await;
    let remote = Faulty::new(origin.clone());
    let cache = Cached::new(remote.clone(), MemoryStore::new());
    let tag: Tag = "moving".parse().unwrap();
    let parsed_first = {
        let bytes = cache
            .get_tag(&repo(), &tag)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        oci_types::Manifest::parse(&bytes, &first.media_type).unwrap()
    };
    for reference in parsed_first.references() {
        cache
            .get_blob_bytes(&repo(), &reference.digest, 1 << 20)
            .await
            .unwrap();
    }
    assert_eq!(
        cache
            .get_tag(&repo(), &tag)
            .await
            .unwrap()
            .descriptor()
            .digest,
        first.digest
    );

    // The tag moves on the remote; the cache follows it.
    let second = push_image(&origin, "moving", 4).await;
    assert_eq!(
        cache.resolve_tag(&repo(), &tag).await.unwrap().digest,
        second.digest
    );

    // The remote goes away: the last answer recorded locally serves.
    remote.set_offline(true);
    let served = cache.resolve_tag(&repo(), &tag).await.unwrap();
    assert_eq!(served.digest, first.digest, "the last recorded answer");
    cache.get_tag(&repo(), &tag).await.unwrap();

    // A tag never seen has no last answer: the remote's failure is reported.
    let unseen: Tag = "unseen".parse().unwrap();
    let error = cache.resolve_tag(&repo(), &unseen).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
}

#[tokio::test]
async fn content_is_verified_before_it_is_cached() {
    let origin = MemoryStore::new();
    let blob = origin
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            seeded_bytes(5, 5000),
        )
        .await
        .unwrap();
    assert!(origin.corrupt_blob_for_tests(&blob.digest));
    let local = MemoryStore::new();
    let cache = Cached::new(origin, local.clone());
    let result = cache.get_blob_bytes(&repo(), &blob.digest, 1 << 20).await;
    assert_eq!(result.unwrap_err().code(), Some(ErrorCode::DigestInvalid));
    // The fill has ended once its turn is free.
    drop(cache.shared.in_flight.turn(&blob.digest).await);
    assert!(
        local.resolve_blob(&repo(), &blob.digest).await.is_err(),
        "nothing corrupt was cached"
    );
}

async fn push_layer(store: &MemoryStore, seed: u64, len: usize) -> oci_types::Descriptor {
    store
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            seeded_bytes(seed, len),
        )
        .await
        .unwrap()
}

/// Waits (30 s at most) until `local` has `digest`.
async fn until_cached(local: &impl OciInterface, digest: &oci_types::Digest) {
    until_cached_within(local, digest, Duration::from_secs(30)).await;
}

/// Waits (`within` at most) until `local` has `digest`.
async fn until_cached_within(
    local: &impl OciInterface,
    digest: &oci_types::Digest,
    within: Duration,
) {
    let cached = async {
        while local.resolve_blob(&repo(), digest).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(within, cached)
        .await
        .expect("the blob was cached");
}

/// Reads `body` until `len` bytes have come, failing if they do not come soon.
async fn read_at_least(body: &mut crate::BlobBody, len: usize) -> Vec<u8> {
    let mut read = Vec::new();
    while read.len() < len {
        let piece = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("bytes came while the remote still sends")
            .expect("the body goes on")
            .unwrap();
        read.extend_from_slice(&piece);
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_streams_to_its_reader_as_it_fills_and_the_fill_outlives_the_reader() {
    let origin = MemoryStore::new();
    let blob = push_layer(&origin, 6, 1 << 20).await;
    let remote = Faulty::new(origin);
    remote.hold_blob_reads_after(256 << 10);
    let cache = Cached::new(remote.clone(), MemoryStore::new());

    // The first quarter reaches the reader while the remote holds the rest back.
    let mut body = cache
        .get_blob(&repo(), &blob.digest)
        .await
        .unwrap()
        .into_stream();
    let first = read_at_least(&mut body, 256 << 10).await;
    assert_eq!(first[..], seeded_bytes(6, 1 << 20)[..256 << 10]);
    assert!(
        cache
            .local()
            .resolve_blob(&repo(), &blob.digest)
            .await
            .is_err(),
        "not cached before the remote has sent it all"
    );

    // The reader leaves; the fill goes on, and the blob serves with the remote away.
    drop(body);
    remote.release_blob_reads();
    until_cached(cache.local(), &blob.digest).await;
    remote.set_offline(true);
    let read = cache
        .get_blob_bytes(&repo(), &blob.digest, 1 << 21)
        .await
        .unwrap();
    assert_eq!(read, seeded_bytes(6, 1 << 20));
    assert_eq!(remote.calls("get_blob"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reader_does_not_wait_long_for_another_readers_fill() {
    let origin = MemoryStore::new();
    let blob = push_layer(&origin, 7, 5000).await;
    let remote = Faulty::new(origin);
    remote.hold_blob_reads_after(1000);
    let cache = Cached::new(remote.clone(), MemoryStore::new());
    let mut first = cache
        .get_blob(&repo(), &blob.digest)
        .await
        .unwrap()
        .into_stream();
    read_at_least(&mut first, 1000).await;

    // A second reader waits a moment for the fill, then reads the remote itself (the paused
    // clock moves on while both wait).
    let started = tokio::time::Instant::now();
    let mut second = cache
        .get_blob(&repo(), &blob.digest)
        .await
        .unwrap()
        .into_stream();
    assert!(started.elapsed() >= super::fill::FILL_WAIT);
    assert_eq!(remote.calls("get_blob"), 2);
    read_at_least(&mut second, 1000).await;

    remote.release_blob_reads();
    for mut body in [first, second] {
        while let Some(piece) = body.next().await {
            piece.unwrap();
        }
    }
    until_cached(cache.local(), &blob.digest).await;
    assert_eq!(
        remote.calls("get_blob"),
        2,
        "the second read filled nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn fills_at_once_are_bounded_and_reads_beyond_are_not_cached() {
    let origin = MemoryStore::new();
    let mut blobs = Vec::new();
    for seed in 0..=super::fill::FILLS_AT_ONCE as u64 {
        blobs.push(push_layer(&origin, 100 + seed, 100).await);
    }
    let remote = Faulty::new(origin);
    remote.hold_blob_reads_after(10);
    let cache = Cached::new(remote.clone(), MemoryStore::new());
    let mut readers = Vec::new();
    for blob in &blobs {
        readers.push(cache.get_blob(&repo(), &blob.digest).await.unwrap());
    }
    remote.release_blob_reads();
    for (reader, blob) in readers.into_iter().zip(&blobs) {
        let read = reader.bytes(1000).await.unwrap();
        assert_eq!(read.len() as u64, blob.size);
    }
    let (beyond, filled) = blobs.split_last().unwrap();
    for blob in filled {
        until_cached(cache.local(), &blob.digest).await;
    }
    assert!(
        cache
            .local()
            .resolve_blob(&repo(), &beyond.digest)
            .await
            .is_err(),
        "the read past the bound was not cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_deleted_while_it_fills_is_not_cached_after() {
    let origin = MemoryStore::new();
    let blob = push_layer(&origin, 8, 5000).await;
    let remote = Faulty::new(origin);
    remote.hold_blob_reads_after(1000);
    let cache = Arc::new(Cached::new(remote.clone(), MemoryStore::new()));
    let mut body = cache
        .get_blob(&repo(), &blob.digest)
        .await
        .unwrap()
        .into_stream();
    read_at_least(&mut body, 1000).await;
    let deleting = {
        let (cache, digest) = (Arc::clone(&cache), blob.digest.clone());
        tokio::spawn(async move { cache.delete_blob(&repo(), &digest).await })
    };
    // The delete reaches the remote, then waits for the fill to end before dropping the
    // local copy.
    tokio::time::sleep(Duration::from_millis(200)).await;
    remote.release_blob_reads();
    drop(body);
    deleting.await.unwrap().unwrap();
    assert!(
        cache
            .local()
            .resolve_blob(&repo(), &blob.digest)
            .await
            .is_err()
    );
    let error = cache
        .get_blob_bytes(&repo(), &blob.digest, 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::BlobUnknown), "{error}");
}

#[tokio::test]
async fn manifests_kept_aside_are_bounded_in_bytes() {
    let origin = MemoryStore::new();
    let layer = push_layer(&origin, 9, 100).await;
    let config = origin
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from("{}"),
        )
        .await
        .unwrap();
    let cache = Cached::new(Faulty::new(origin.clone()), MemoryStore::new());
    // Twenty manifests of 3.5 MiB whose blobs are not cached: each is kept aside when read.
    for n in 0..20 {
        let mut manifest = ImageManifest::new(config.clone(), vec![layer.clone()]);
        manifest
            .annotations
            .insert(format!("pad.{n}"), "x".repeat(7 << 19));
        let pushed = origin
            .push_manifest(
                &repo(),
                manifest.to_json().into(),
                &MediaType::from_static(media_type::OCI_MANIFEST),
                &PushManifestParams::new(),
            )
            .await
            .unwrap();
        cache.get_manifest(&repo(), &pushed.digest).await.unwrap();
    }
    let (count, bytes) = cache.shared.pending();
    assert!(
        bytes <= super::fill::PENDING_BYTES,
        "{bytes} bytes kept aside"
    );
    // As many as fit, the newest.
    assert_eq!(
        count,
        super::fill::PENDING_BYTES / (bytes / count),
        "{count} kept"
    );
}

/// A reader that stops taking what the fill sends holds it back for `LAG_ALLOWED` at most:
/// then the fill goes on into the cache without it, and the reader, when it reads again,
/// gets the rest from the cache. Both ways of reading a whole blob.
#[tokio::test(start_paused = true)]
async fn a_reader_that_holds_the_fill_back_is_let_go_and_reads_on_from_the_cache() {
    for as_range in [false, true] {
        let origin = MemoryStore::new();
        let content = seeded_bytes(10, 100 << 10);
        let blob = push_layer(&origin, 10, 100 << 10).await;
        let remote = Faulty::new(origin);
        remote.split_blob_reads(1024);
        let cache = Cached::new(remote.clone(), MemoryStore::new());
        let reader = if as_range {
            cache.get_blob_range(&repo(), &blob.digest, 0, None).await
        } else {
            cache.get_blob(&repo(), &blob.digest).await
        };
        let mut body = reader.unwrap().into_stream();
        let mut read = read_at_least(&mut body, 1024).await;

        // The reader stops reading; the fill waits for it, then lets it go and finishes.
        let started = tokio::time::Instant::now();
        until_cached_within(cache.local(), &blob.digest, super::fill::LAG_ALLOWED * 4).await;
        assert!(
            started.elapsed() >= super::fill::LAG_ALLOWED,
            "{:?}",
            started.elapsed()
        );

        while let Some(piece) = body.next().await {
            read.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(read, content, "as a range: {as_range}");
        assert_eq!(remote.calls("get_blob"), 1);
    }
}

/// A manifest whose fetch by another request is taking long is fetched again rather than
/// waited for in silence (the paused clock moves on while it waits).
#[tokio::test(start_paused = true)]
async fn a_manifest_request_does_not_wait_long_for_another_ones_fetch() {
    let origin = MemoryStore::new();
    let manifest = push_image(&origin, "v1", 11).await;
    let remote = Faulty::new(origin);
    let cache = Cached::new(remote.clone(), MemoryStore::new());
    // Another request's fetch, under way and not ending.
    let held = cache.shared.in_flight.turn(&manifest.digest).await;
    let started = tokio::time::Instant::now();
    let read = tokio::time::timeout(
        Duration::from_secs(60),
        cache.get_manifest(&repo(), &manifest.digest),
    )
    .await
    .expect("not waited for in silence")
    .unwrap()
    .bytes(1 << 20)
    .await
    .unwrap();
    assert_eq!(oci_types::Digest::sha256(&read), manifest.digest);
    let waited = started.elapsed();
    assert!(
        waited >= super::fill::FILL_WAIT && waited < super::fill::FILL_WAIT * 2,
        "{waited:?}"
    );
    assert_eq!(remote.calls("get_manifest"), 1);
    drop(held);
}
