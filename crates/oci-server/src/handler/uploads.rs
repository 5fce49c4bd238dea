//! Blob uploads: whole, chunked, resumed, mounted, with the server's limits.

#![allow(clippy::result_large_err)]

use super::*;

/// The answer to a failed upload: 413 when the body passed the blob size limit, 408 when it
/// arrived too slowly.
pub(super) fn upload_failure(state: &State, watch: &BodyWatch, error: Error) -> Reply {
    match state.options.max_blob_size {
        Some(limit) if watch.overflowed() => too_large("blob", limit),
        _ if watch.too_slow() => wire::refusal(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BlobUploadInvalid,
            &format!(
                "the body arrived slower than {} bytes/s over {:?}: cut off",
                state.options.min_body_rate, state.options.body_rate_window
            ),
        ),
        _ => fail(error),
    }
}

/// A request body with the server's limits on it.
pub(super) fn upload_body(
    state: &State,
    body: Incoming,
    room: Option<u64>,
) -> (BlobBody, Arc<BodyWatch>) {
    let rate = state.body_rate();
    body_stream(body, room, Some(rate))
}

/// What is left of the blob size limit for an upload that has `written` bytes; 413 when the
/// request's own `Content-Length` already goes past it.
pub(super) fn room_for(
    state: &State,
    written: u64,
    headers: &HeaderMap,
) -> Result<Option<u64>, Reply> {
    let Some(limit) = state.options.max_blob_size else {
        return Ok(None);
    };
    let room = limit.saturating_sub(written);
    if content_length(headers).is_some_and(|length| length > room) {
        return Err(too_large("blob", limit));
    }
    Ok(Some(room))
}

pub(super) fn upload_status(code: StatusCode, repo: &Repository, id: &str, size: u64) -> Reply {
    let mut response = wire::status(code);
    set(
        &mut response,
        header::LOCATION,
        &format!("/v2/{repo}/blobs/uploads/{id}"),
    );
    // The spec's `Range` is inclusive; an empty upload is reported as `0-0`, as the Docker
    // registry does (clients read it as nothing uploaded yet).
    set(
        &mut response,
        header::RANGE,
        &format!("0-{}", size.saturating_sub(1)),
    );
    set(&mut response, "Docker-Upload-UUID", id);
    set(&mut response, header::CONTENT_LENGTH, "0");
    response
}

pub(super) fn blob_created(repo: &Repository, digest: &Digest) -> Reply {
    let mut response = wire::status(StatusCode::CREATED);
    set(
        &mut response,
        header::LOCATION,
        &format!("/v2/{repo}/blobs/{digest}"),
    );
    set(&mut response, "Docker-Content-Digest", digest.as_str());
    set(&mut response, header::CONTENT_LENGTH, "0");
    response
}

pub(super) fn upload_slot(state: &State) -> Result<tokio::sync::OwnedSemaphorePermit, Reply> {
    Arc::clone(&state.upload_slots)
        .try_acquire_owned()
        .map_err(|_| {
            fail(Error::TooManyRequests {
                retry_after: Some(std::time::Duration::from_secs(1)),
            })
        })
}

pub(super) async fn post_upload(
    state: &State,
    repo: &Repository,
    query: &[(String, String)],
    access: &Access,
    request: Request<Incoming>,
) -> Outcome {
    let store = state.store.as_ref();
    if let Some(mount) = first(query, "mount") {
        let digest = digest_of(mount)?;
        if let Some(from) = first(query, "from") {
            let from = repository(from)?;
            // A mount reads the source: without pull on it, the answer is the ordinary upload
            // the spec allows instead, which tells nothing about what the source holds.
            let mounted = if access.may(from.as_str(), Action::Pull) {
                store.mount_blob(&from, repo, &digest).await
            } else {
                Err(Error::Denied {
                    message: format!("no pull on {from}, the source of a mount"),
                })
            };
            match mounted {
                Ok(_) => return Ok(blob_created(repo, &digest)),
                // The spec: a registry that cannot mount starts an upload instead.
                Err(error)
                    if matches!(
                        error.code(),
                        Some(
                            ErrorCode::BlobUnknown
                                | ErrorCode::NameUnknown
                                | ErrorCode::Unsupported
                                | ErrorCode::Denied
                        )
                    ) =>
                {
                    tracing::debug!(%error, "mount refused; starting an upload instead");
                }
                Err(error) => return Err(fail(error)),
            }
        }
    }
    if let Some(digest) = first(query, "digest") {
        let digest = digest_of(digest)?;
        let _slot = upload_slot(state)?;
        let length = content_length(request.headers());
        let room = room_for(state, 0, request.headers())?;
        let (body, watch) = upload_body(state, request.into_body(), room);
        let failed = |error| upload_failure(state, &watch, error);
        match length {
            Some(size) => {
                let descriptor = Descriptor::new(
                    MediaType::from_static(media_type::OCTET_STREAM),
                    digest.clone(),
                    size,
                );
                store
                    .push_blob(repo, &descriptor, body)
                    .await
                    .map_err(failed)?;
            }
            None => {
                let mut writer = store.push_blob_chunked(repo, None).await.map_err(fail)?;
                if let Err(error) = write_body(writer.as_mut(), body).await {
                    let _ = writer.cancel().await;
                    return Err(failed(error));
                }
                writer.commit(&digest).await.map_err(fail)?;
            }
        }
        return Ok(blob_created(repo, &digest));
    }
    let writer = store.push_blob_chunked(repo, None).await.map_err(fail)?;
    let id = writer.id().to_owned();
    writer.close().await.map_err(fail)?;
    let mut response = upload_status(StatusCode::ACCEPTED, repo, &id, 0);
    if let Some(minimum) = state.options.min_chunk_size {
        set(&mut response, "OCI-Chunk-Min-Length", &minimum.to_string());
    }
    Ok(response)
}

pub(super) async fn write_body(
    writer: &mut dyn BlobWriter,
    mut body: BlobBody,
) -> oci_store::Result<()> {
    while let Some(chunk) = body.next().await {
        writer.write(chunk?).await?;
    }
    Ok(())
}

/// Reads `Content-Range: <start>-<end>` (inclusive, no `bytes ` prefix, per the spec).
pub(super) fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Reply> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let parsed = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b);
    match parsed {
        Some(range) => Ok(Some(range)),
        None => Err(wire::refusal(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            &format!("Content-Range {text:?} is not <start>-<end>"),
        )),
    }
}

/// Whether the chunk `start-end` (inclusive, `start <= end`) is `length` bytes long: `0-(2^64-1)`
/// is one byte more than a `u64` counts, not 0.
pub(super) fn range_has_length(start: u64, end: u64, length: u64) -> bool {
    (end - start).checked_add(1) == Some(length)
}

/// Resumes `id` at the offset the request's `Content-Range` states (checking that its length
/// agrees with `Content-Length`), or wherever the upload is.
pub(super) async fn resume(
    state: &State,
    repo: &Repository,
    id: &str,
    headers: &HeaderMap,
) -> Result<Box<dyn BlobWriter>, Reply> {
    let range = content_range(headers)?;
    if let (Some((start, end)), Some(length)) = (range, content_length(headers))
        && !range_has_length(start, end, length)
    {
        return Err(wire::refusal(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            &format!("Content-Range {start}-{end} does not match Content-Length {length}"),
        ));
    }
    state
        .store
        .push_blob_chunked_resume(repo, id, range.map(|(start, _)| start), None)
        .await
        .map_err(fail)
}

pub(super) async fn patch_upload(
    state: &State,
    repo: &Repository,
    id: &str,
    request: Request<Incoming>,
) -> Outcome {
    if let (Some(minimum), Some(length)) = (
        state.options.min_chunk_size,
        content_length(request.headers()),
    ) && length < minimum
    {
        return Err(wire::refusal(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            &format!(
                "a chunk of {length} bytes is smaller than this registry's minimum of {minimum} (only the last chunk, sent with the closing PUT, may be smaller)"
            ),
        ));
    }
    let _slot = upload_slot(state)?;
    let mut writer = resume(state, repo, id, request.headers()).await?;
    let room = room_for(state, writer.size(), request.headers())?;
    let (body, watch) = upload_body(state, request.into_body(), room);
    let written = write_body(writer.as_mut(), body).await;
    let size = writer.size();
    // Keep what arrived, even when the body broke off: the client resumes from there.
    writer.close().await.map_err(fail)?;
    written.map_err(|error| upload_failure(state, &watch, error))?;
    Ok(upload_status(StatusCode::ACCEPTED, repo, id, size))
}

pub(super) async fn put_upload(
    state: &State,
    repo: &Repository,
    id: &str,
    query: &[(String, String)],
    request: Request<Incoming>,
) -> Outcome {
    let Some(digest) = first(query, "digest") else {
        return Err(wire::refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            "the closing PUT of an upload needs ?digest=",
        ));
    };
    let digest = digest_of(digest)?;
    let _slot = upload_slot(state)?;
    let mut writer = resume(state, repo, id, request.headers()).await?;
    let room = room_for(state, writer.size(), request.headers())?;
    let length = content_length(request.headers());
    let (body, watch) = upload_body(state, request.into_body(), room);
    if let (0, Some(length)) = (writer.size(), length) {
        // The whole blob in this one PUT (POST then PUT, the common monolithic upload): pushed
        // straight into the store, which hashes it as it writes, instead of written into the
        // upload and read back to be hashed at the commit.
        let descriptor = Descriptor::new(
            MediaType::from_static(media_type::OCTET_STREAM),
            digest.clone(),
            length,
        );
        // Cleaning the upload up is best effort: the answer is about the blob.
        let cleaned = |what: &'static str, result: oci_store::Result<()>| {
            if let Err(error) = result {
                tracing::warn!(%repo, upload = id, %error, "cannot {what} the upload");
            }
        };
        return match state.store.push_blob(repo, &descriptor, body).await {
            Ok(_) => {
                cleaned("remove", writer.cancel().await);
                Ok(blob_created(repo, &digest))
            }
            Err(error) => {
                // Content that does not match ends the upload, as a failed commit does; a
                // body that broke off leaves the upload, still empty, to be sent again (what
                // arrived is not kept: it went to the store, not into the upload).
                if matches!(
                    error.code(),
                    Some(ErrorCode::DigestInvalid | ErrorCode::SizeInvalid)
                ) {
                    cleaned("remove", writer.cancel().await);
                } else {
                    cleaned("close", writer.close().await);
                }
                Err(upload_failure(state, &watch, error))
            }
        };
    }
    if let Err(error) = write_body(writer.as_mut(), body).await {
        writer.close().await.map_err(fail)?;
        return Err(upload_failure(state, &watch, error));
    }
    writer.commit(&digest).await.map_err(fail)?;
    Ok(blob_created(repo, &digest))
}
