//! Manifest reads and pushes.

#![allow(clippy::result_large_err)]

use super::uploads::{upload_failure, upload_slot};
use super::*;

pub(super) fn manifest_headers(response: &mut Reply, descriptor: &Descriptor) {
    set(
        response,
        header::CONTENT_TYPE,
        descriptor.media_type.as_str(),
    );
    set(
        response,
        header::CONTENT_LENGTH,
        &descriptor.size.to_string(),
    );
    set(
        response,
        "Docker-Content-Digest",
        descriptor.digest.as_str(),
    );
}

pub(super) async fn get_manifest(
    store: &dyn OciInterface,
    repo: &Repository,
    reference: &str,
    head: bool,
) -> Outcome {
    let reference = reference_of(reference)?;
    if head {
        let descriptor = match &reference {
            Reference::Tag(tag) => store.resolve_tag(repo, tag).await,
            Reference::Digest(digest) => store.resolve_manifest(repo, digest).await,
        }
        .map_err(fail)?;
        let mut response = wire::status(StatusCode::OK);
        manifest_headers(&mut response, &descriptor);
        return Ok(response);
    }
    let reader = match &reference {
        Reference::Tag(tag) => store.get_tag(repo, tag).await,
        Reference::Digest(digest) => store.get_manifest(repo, digest).await,
    }
    .map_err(fail)?;
    let descriptor = reader.descriptor().clone();
    let mut response = Reply::new(wire::stream(reader.into_stream()));
    manifest_headers(&mut response, &descriptor);
    Ok(response)
}

/// The most tags one manifest push applies (its `?tag=` values, and the tag it is pushed by).
pub(super) const MAX_TAGS_PER_PUSH: usize = 64;

pub(super) async fn put_manifest(
    state: &State,
    repo: &Repository,
    reference: &str,
    query: &[(String, String)],
    request: Request<Incoming>,
) -> Outcome {
    let limit = state.options.max_manifest_size;
    if content_length(request.headers()).is_some_and(|n| n > limit) {
        return Err(too_large("manifest", limit));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    // A manifest is held whole while it is read and checked: it takes one of the slots
    // uploads take, and must arrive at the rate they must, so that bodies sent slowly on
    // many streams cannot hold more than the slots' worth of memory.
    let _slot = upload_slot(state)?;
    let bytes = collect(state, request.into_body(), limit).await?;
    let media_type = match declared.filter(|t| !t.is_empty()) {
        Some(text) => MediaType::parse(&text).map_err(|e| {
            fail(Error::ManifestInvalid {
                repo: repo.clone(),
                reason: e.to_string(),
            })
        })?,
        None => stated_media_type(&bytes).ok_or_else(|| {
            fail(Error::ManifestInvalid {
                repo: repo.clone(),
                reason: "no Content-Type and no mediaType field".to_owned(),
            })
        })?,
    };
    let mut params = PushManifestParams::new();
    match reference_of(reference)? {
        Reference::Tag(tag) => params.tags.push(tag),
        Reference::Digest(digest) => params.digest = Some(digest),
    }
    // At most MAX_TAGS_PER_PUSH of `?tag=`: each costs the store work under its lock, and
    // the ones beyond are not refused but left unconfirmed (no `OCI-Tag`), which a client
    // answers by pushing them one by one, as the spec has it.
    for (_, value) in query.iter().filter(|(k, _)| k == "tag") {
        let tag = Tag::parse(value).map_err(|e| fail(e.into()))?;
        if !params.tags.contains(&tag) && params.tags.len() < MAX_TAGS_PER_PUSH {
            params.tags.push(tag);
        }
    }
    let subject = subject_of(&bytes, &media_type);
    let descriptor = state
        .store
        .push_manifest(repo, bytes, &media_type, &params)
        .await
        .map_err(fail)?;
    let mut response = wire::status(StatusCode::CREATED);
    set(
        &mut response,
        header::LOCATION,
        &format!("/v2/{repo}/manifests/{}", descriptor.digest),
    );
    set(
        &mut response,
        "Docker-Content-Digest",
        descriptor.digest.as_str(),
    );
    set(&mut response, header::CONTENT_LENGTH, "0");
    if let Some(subject) = subject {
        set(&mut response, "OCI-Subject", subject.as_str());
    }
    for tag in &params.tags {
        append(&mut response, "OCI-Tag", tag.as_str());
    }
    Ok(response)
}

pub(super) fn stated_media_type(bytes: &[u8]) -> Option<MediaType> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    MediaType::parse(value.get("mediaType")?.as_str()?).ok()
}

pub(super) fn subject_of(bytes: &[u8], media_type: &MediaType) -> Option<Digest> {
    if !(media_type.is_manifest() || media_type.is_index()) {
        return None;
    }
    Manifest::parse(bytes, media_type)
        .ok()?
        .subject()
        .map(|s| s.digest.clone())
}

/// A manifest's body, at most `limit` bytes (413 past it), arriving at the server's minimum
/// rate (408 below it).
async fn collect(state: &State, body: Incoming, limit: u64) -> Result<Bytes, Reply> {
    read_whole(body, limit, state.body_rate())
        .await
        .map_err(|(error, watch)| {
            if watch.overflowed() {
                too_large("manifest", limit)
            } else {
                upload_failure(state, &watch, error)
            }
        })
}
