//! One function per endpoint of the distribution-spec, each turning a request into calls on the
//! store and the store's answers (or errors) into the spec's responses.

// A refused request is answered with its response: the `Err` is that response, built once
// per request and sent as it is, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use oci_store::{
    BlobBody, BlobWriter, Error, ErrorCode, ListParams, OciInterface, PushManifestParams,
    ReferrersParams,
};
use oci_types::{Descriptor, Digest, ImageIndex, Manifest, MediaType, Repository, Tag, media_type};
use tokio::sync::Semaphore;

use crate::ServerOptions;
use crate::auth::{Access, Authenticator};
use crate::body::{BodyWatch, MinRate, body_stream};
use crate::policy::Action;
use crate::route::{self, Route};
use crate::wire::{self, Reply, append, set};

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) store: Arc<dyn OciInterface>,
    pub(crate) options: ServerOptions,
    pub(crate) auth: Option<Authenticator>,
    pub(crate) upload_slots: Arc<Semaphore>,
    /// Blob bodies being served ([`ServerOptions::max_concurrent_downloads`]).
    pub(crate) download_slots: Arc<Semaphore>,
}

type Outcome = Result<Reply, Reply>;

/// Answers one request, and logs it.
pub(crate) async fn handle(state: Arc<State>, request: Request<Incoming>) -> Reply {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let carries_body = request.version() < http::Version::HTTP_2
        && (request.headers().contains_key(header::TRANSFER_ENCODING)
            || content_length(request.headers()).is_some_and(|length| length > 0));
    let mut response = match dispatch(&state, request).await {
        Ok(response) | Err(response) => response,
    };
    if carries_body && (response.status().is_client_error() || response.status().is_server_error())
    {
        // An error may be answered before the body was read (a refusal, a range out of
        // order): hyper then cannot reuse the connection, and a client that sent its next
        // request on it would meet a reset. Saying so makes it open a new one.
        set(&mut response, header::CONNECTION, "close");
    }
    // Clients written for the Docker registry look for this header on every answer.
    set(
        &mut response,
        "Docker-Distribution-API-Version",
        "registry/2.0",
    );
    tracing::info!(
        target: "oci_server::access",
        %method,
        %path,
        status = response.status().as_u16(),
        bytes = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-"),
        millis = started.elapsed().as_millis() as u64,
    );
    response
}

fn fail(error: Error) -> Reply {
    wire::error(&error)
}

async fn dispatch(state: &Arc<State>, request: Request<Incoming>) -> Outcome {
    let path = request.uri().path().to_owned();
    let Some(route) = route::parse(&path) else {
        return Err(wire::refusal(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            &format!("no endpoint at {path}"),
        ));
    };
    if route == Route::Token {
        return match &state.auth {
            Some(auth) => auth.token_endpoint(request).await,
            None => Err(wire::refusal(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "token auth is not enabled",
            )),
        };
    }
    // What the request may do beyond its own endpoint: the source of a mount, the catalog.
    let access = match &state.auth {
        Some(auth) => auth.authorize(&request, &route, state.options.tls)?,
        None => Access::unrestricted(),
    };
    let method = request.method().clone();
    let writes = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if writes && state.options.read_only {
        return Err(not_allowed(
            &route,
            &state.options,
            "this registry is read-only",
        ));
    }
    if method == Method::DELETE && !state.options.deletes && !matches!(route, Route::Upload { .. })
    {
        return Err(not_allowed(
            &route,
            &state.options,
            "deletes are disabled on this registry",
        ));
    }
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let store = &state.store;
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(wire::json(
            StatusCode::OK,
            &serde_json::json!({}),
            "application/json",
        )),
        (Route::Catalog, Method::GET) => catalog(store.as_ref(), &query, access).await,
        (Route::Blob { name, digest }, method @ (Method::GET | Method::HEAD)) => {
            let (repo, digest) = (repository(name)?, digest_of(digest)?);
            let read = BlobRead {
                head: method == Method::HEAD,
                verify: state.options.verify_blob_reads,
            };
            // Each body being served holds up to a few read buffers: a bounded number of them
            // bounds the memory that stalled downloads can hold. A request beyond waits.
            let slot = if read.head {
                None
            } else {
                Some(
                    Arc::clone(&state.download_slots)
                        .acquire_owned()
                        .await
                        // Never closed: this cannot fail.
                        .map_err(|_| fail(Error::TooManyRequests { retry_after: None }))?,
                )
            };
            let mut response =
                get_blob(store.as_ref(), &repo, &digest, request.headers(), read).await?;
            if let Some(slot) = slot {
                response = response.map(|body| holding(body, slot));
            }
            Ok(response)
        }
        (Route::Blob { name, digest }, Method::DELETE) => {
            let (repo, digest) = (repository(name)?, digest_of(digest)?);
            store.delete_blob(&repo, &digest).await.map_err(fail)?;
            Ok(wire::status(StatusCode::ACCEPTED))
        }
        (Route::Manifest { name, reference }, method @ (Method::GET | Method::HEAD)) => {
            let repo = repository(name)?;
            // A tag-shaped reference that is not a valid tag names nothing that can exist:
            // unknown, as the conformance suite expects of `.INVALID_MANIFEST_NAME`. A
            // malformed digest stays the client's error (400 `DIGEST_INVALID`), as the same
            // suite expects of an invalid digest format.
            if !reference.contains(':') && reference_of(reference).is_err() {
                return Err(wire::refusal(
                    StatusCode::NOT_FOUND,
                    ErrorCode::ManifestUnknown,
                    &format!(
                        "no manifest can be stored under {reference:?}: it is not a valid tag"
                    ),
                ));
            }
            get_manifest(store.as_ref(), &repo, reference, method == Method::HEAD).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            put_manifest(state, &repository(name)?, reference, &query, request).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            let repo = repository(name)?;
            match reference_of(reference)? {
                Reference::Tag(tag) => store.delete_tag(&repo, &tag).await,
                Reference::Digest(digest) => store.delete_manifest(&repo, &digest).await,
            }
            .map_err(fail)?;
            Ok(wire::status(StatusCode::ACCEPTED))
        }
        (Route::Uploads { name }, Method::POST) => {
            post_upload(state, &repository(name)?, &query, &access, request).await
        }
        (Route::Upload { name, id }, Method::PATCH) => {
            patch_upload(state, &repository(name)?, id, request).await
        }
        (Route::Upload { name, id }, Method::PUT) => {
            put_upload(state, &repository(name)?, id, &query, request).await
        }
        (Route::Upload { name, id }, Method::GET) => {
            let repo = repository(name)?;
            let writer = store
                .push_blob_chunked_resume(&repo, id, None, None)
                .await
                .map_err(fail)?;
            let size = writer.size();
            writer.close().await.map_err(fail)?;
            Ok(upload_status(StatusCode::NO_CONTENT, &repo, id, size))
        }
        (Route::Upload { name, id }, Method::DELETE) => {
            let repo = repository(name)?;
            let writer = store
                .push_blob_chunked_resume(&repo, id, None, None)
                .await
                .map_err(fail)?;
            writer.cancel().await.map_err(fail)?;
            Ok(wire::status(StatusCode::NO_CONTENT))
        }
        (Route::Tags { name }, Method::GET) => {
            tags(store.as_ref(), name, &repository(name)?, &query).await
        }
        (Route::Referrers { name, digest }, Method::GET) => {
            referrers(
                store.as_ref(),
                &repository(name)?,
                &digest_of(digest)?,
                &query,
            )
            .await
        }
        (route, method) => Err(not_allowed(
            &route,
            &state.options,
            &format!("{method} is not allowed on {path}"),
        )),
    }
}

/// A 405 with the `Allow` header RFC 9110 requires: the methods this route takes under the
/// server's options.
fn not_allowed(route: &Route<'_>, options: &ServerOptions, message: &str) -> Reply {
    let writable = !options.read_only;
    let deletable = writable && options.deletes;
    let methods: Vec<&str> = match route {
        Route::Base => vec!["GET", "HEAD"],
        Route::Catalog | Route::Tags { .. } | Route::Referrers { .. } => vec!["GET"],
        Route::Token => vec!["GET", "POST"],
        Route::Blob { .. } => [("GET", true), ("HEAD", true), ("DELETE", deletable)]
            .into_iter()
            .filter(|m| m.1)
            .map(|m| m.0)
            .collect(),
        Route::Manifest { .. } => [
            ("GET", true),
            ("HEAD", true),
            ("PUT", writable),
            ("DELETE", deletable),
        ]
        .into_iter()
        .filter(|m| m.1)
        .map(|m| m.0)
        .collect(),
        Route::Uploads { .. } => [("POST", writable)]
            .into_iter()
            .filter(|m| m.1)
            .map(|m| m.0)
            .collect(),
        Route::Upload { .. } => [
            ("GET", true),
            ("PATCH", writable),
            ("PUT", writable),
            ("DELETE", writable),
        ]
        .into_iter()
        .filter(|m| m.1)
        .map(|m| m.0)
        .collect(),
    };
    let mut response = wire::refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        message,
    );
    set(&mut response, header::ALLOW, &methods.join(", "));
    response
}

fn repository(name: &str) -> Result<Repository, Reply> {
    Repository::parse(name).map_err(|e| fail(e.into()))
}

fn digest_of(text: &str) -> Result<Digest, Reply> {
    Digest::parse(text).map_err(|e| fail(e.into()))
}

enum Reference {
    Tag(Tag),
    Digest(Digest),
}

fn reference_of(text: &str) -> Result<Reference, Reply> {
    if text.contains(':') {
        digest_of(text).map(Reference::Digest)
    } else {
        Tag::parse(text)
            .map(Reference::Tag)
            .map_err(|e| fail(e.into()))
    }
}

fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The answer to a failed upload: 413 when the body passed the blob size limit, 408 when it
/// arrived too slowly.
fn upload_failure(state: &State, watch: &BodyWatch, error: Error) -> Reply {
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
fn upload_body(state: &State, body: Incoming, room: Option<u64>) -> (BlobBody, Arc<BodyWatch>) {
    let rate = MinRate {
        bytes_per_second: state.options.min_body_rate,
        window: state.options.body_rate_window,
    };
    body_stream(body, room, Some(rate))
}

/// What is left of the blob size limit for an upload that has `written` bytes; 413 when the
/// request's own `Content-Length` already goes past it.
fn room_for(state: &State, written: u64, headers: &HeaderMap) -> Result<Option<u64>, Reply> {
    let Some(limit) = state.options.max_blob_size else {
        return Ok(None);
    };
    let room = limit.saturating_sub(written);
    if content_length(headers).is_some_and(|length| length > room) {
        return Err(too_large("blob", limit));
    }
    Ok(Some(room))
}

fn too_large(what: &str, limit: u64) -> Reply {
    wire::refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        &format!("{what} larger than the limit of {limit} bytes"),
    )
}

// ---- blobs ----

/// A `Range: bytes=…` request, resolved against the blob's size.
enum RangeRequest {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn range_request(headers: &HeaderMap, size: u64) -> RangeRequest {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Unsatisfiable;
    };
    if spec.contains(',') {
        // Several ranges: RFC 9110 lets a server ignore the header and send the whole blob.
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(suffix)) if suffix > 0 && size > 0 => {
            RangeRequest::Part(size.saturating_sub(suffix), size)
        }
        (false, Some(start), None) if last.trim().is_empty() && start < size => {
            RangeRequest::Part(start, size)
        }
        (false, Some(start), Some(end)) if start <= end && start < size => {
            RangeRequest::Part(start, end.saturating_add(1).min(size))
        }
        _ => RangeRequest::Unsatisfiable,
    }
}

fn blob_headers(response: &mut Reply, digest: &Digest) {
    set(response, "Docker-Content-Digest", digest.as_str());
    set(response, header::ACCEPT_RANGES, "bytes");
    set(response, header::CONTENT_TYPE, media_type::OCTET_STREAM);
}

/// `body`, holding `slot` until it is dropped (sent whole, failed, or its client gone).
fn holding(body: wire::Body, slot: tokio::sync::OwnedSemaphorePermit) -> wire::Body {
    use http_body_util::BodyExt as _;
    body.map_frame(move |frame| {
        let _held = &slot;
        frame
    })
    .boxed_unsync()
}

/// What a blob GET or HEAD asks of the store.
#[derive(Debug, Clone, Copy)]
struct BlobRead {
    /// A HEAD: the size only.
    head: bool,
    /// A full read verifies the digest ([`ServerOptions::verify_blob_reads`](crate::ServerOptions::verify_blob_reads)).
    verify: bool,
}

async fn get_blob(
    store: &dyn OciInterface,
    repo: &Repository,
    digest: &Digest,
    headers: &HeaderMap,
    read: BlobRead,
) -> Outcome {
    if read.head {
        let size = store.resolve_blob(repo, digest).await.map_err(fail)?.size;
        let mut response = Reply::new(wire::empty());
        blob_headers(&mut response, digest);
        set(&mut response, header::CONTENT_LENGTH, &size.to_string());
        return Ok(response);
    }
    if headers.contains_key(header::RANGE) {
        let size = store.resolve_blob(repo, digest).await.map_err(fail)?.size;
        match range_request(headers, size) {
            RangeRequest::Unsatisfiable => {
                let mut response = wire::refusal(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::RangeInvalid,
                    &format!(
                        "range {:?} selects no byte of a {size}-byte blob",
                        headers.get(header::RANGE)
                    ),
                );
                set(
                    &mut response,
                    header::CONTENT_RANGE,
                    &format!("bytes */{size}"),
                );
                return Err(response);
            }
            RangeRequest::Part(start, end) => {
                let reader = store
                    .get_blob_range(repo, digest, start, Some(end))
                    .await
                    .map_err(fail)?;
                let mut response = Reply::new(wire::stream(reader.into_stream()));
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                blob_headers(&mut response, digest);
                set(
                    &mut response,
                    header::CONTENT_LENGTH,
                    &(end - start).to_string(),
                );
                set(
                    &mut response,
                    header::CONTENT_RANGE,
                    &format!("bytes {start}-{}/{size}", end - 1),
                );
                return Ok(response);
            }
            // Several ranges: served whole, below.
            RangeRequest::Whole => {}
        }
    }
    let reader = if read.verify {
        store.get_blob(repo, digest).await.map_err(fail)?
    } else {
        // A read of every byte as a range: checked for its length, not hashed.
        match store.get_blob_range(repo, digest, 0, None).await {
            Ok(reader) => reader,
            // An empty blob has no range to read.
            Err(error) if error.code() == Some(ErrorCode::RangeInvalid) => {
                store.get_blob(repo, digest).await.map_err(fail)?
            }
            Err(error) => return Err(fail(error)),
        }
    };
    let size = reader.descriptor().size;
    // The first piece is read before answering: a blob that fails in it (a damaged blob that
    // fits in one piece, a file that cannot be read) gets an error answer with its code,
    // rather than a connection cut before any byte, which a client can only retry.
    let mut body = reader.into_stream();
    let body = match body.next().await {
        Some(Err(error)) => return Err(fail(error)),
        Some(Ok(first)) => BlobBody::new(futures::stream::once(async { Ok(first) }).chain(body)),
        None => body,
    };
    let mut response = Reply::new(wire::stream(body));
    blob_headers(&mut response, digest);
    set(&mut response, header::CONTENT_LENGTH, &size.to_string());
    Ok(response)
}

// ---- manifests ----

fn manifest_headers(response: &mut Reply, descriptor: &Descriptor) {
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

async fn get_manifest(
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

async fn put_manifest(
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
    let bytes = collect(request.into_body(), limit)
        .await
        .map_err(|e| match e {
            Collect::TooLarge => too_large("manifest", limit),
            Collect::Failed(error) => fail(error),
        })?;
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
    for (_, value) in query.iter().filter(|(k, _)| k == "tag") {
        let tag = Tag::parse(value).map_err(|e| fail(e.into()))?;
        if !params.tags.contains(&tag) {
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

fn stated_media_type(bytes: &[u8]) -> Option<MediaType> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    MediaType::parse(value.get("mediaType")?.as_str()?).ok()
}

fn subject_of(bytes: &[u8], media_type: &MediaType) -> Option<Digest> {
    if !(media_type.is_manifest() || media_type.is_index()) {
        return None;
    }
    Manifest::parse(bytes, media_type)
        .ok()?
        .subject()
        .map(|s| s.digest.clone())
}

enum Collect {
    TooLarge,
    Failed(Error),
}

async fn collect(body: Incoming, limit: u64) -> Result<Bytes, Collect> {
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Collect::Failed(Error::io(
                "reading the request body",
                std::io::Error::other(e),
            ))
        })?;
        if buffer.len() as u64 + chunk.len() as u64 > limit {
            return Err(Collect::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

// ---- uploads ----

fn upload_status(code: StatusCode, repo: &Repository, id: &str, size: u64) -> Reply {
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

fn blob_created(repo: &Repository, digest: &Digest) -> Reply {
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

fn upload_slot(state: &State) -> Result<tokio::sync::OwnedSemaphorePermit, Reply> {
    Arc::clone(&state.upload_slots)
        .try_acquire_owned()
        .map_err(|_| {
            fail(Error::TooManyRequests {
                retry_after: Some(std::time::Duration::from_secs(1)),
            })
        })
}

async fn post_upload(
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

async fn write_body(writer: &mut dyn BlobWriter, mut body: BlobBody) -> oci_store::Result<()> {
    while let Some(chunk) = body.next().await {
        writer.write(chunk?).await?;
    }
    Ok(())
}

/// Reads `Content-Range: <start>-<end>` (inclusive, no `bytes ` prefix, per the spec).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Reply> {
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

/// Resumes `id` at the offset the request's `Content-Range` states (checking that its length
/// agrees with `Content-Length`), or wherever the upload is.
async fn resume(
    state: &State,
    repo: &Repository,
    id: &str,
    headers: &HeaderMap,
) -> Result<Box<dyn BlobWriter>, Reply> {
    let range = content_range(headers)?;
    if let (Some((start, end)), Some(length)) = (range, content_length(headers))
        && end - start + 1 != length
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

async fn patch_upload(
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

async fn put_upload(
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

// ---- listings ----

fn page_size(query: &[(String, String)]) -> Result<Option<usize>, Reply> {
    first(query, "n")
        .map(|n| {
            n.parse::<usize>().map_err(|_| {
                wire::refusal(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::Unsupported,
                    &format!("n={n:?} is not a count"),
                )
            })
        })
        .transpose()
}

/// Fetches one page (one more than asked, to know whether a next page exists); returns the page
/// and the `last` of the next one.
async fn page<T: ToString>(
    list: impl FnOnce(ListParams) -> futures::stream::BoxStream<'static, oci_store::Result<T>>,
    query: &[(String, String)],
) -> Result<(Vec<String>, Option<String>), Reply> {
    let n = page_size(query)?;
    let mut params = ListParams::new();
    params.start_after = first(query, "last").map(str::to_owned);
    params.limit = n.map(|n| n.saturating_add(1));
    let mut items: Vec<String> = list(params)
        .map_ok(|t| t.to_string())
        .try_collect()
        .await
        .map_err(fail)?;
    match n {
        Some(0) => Ok((Vec::new(), None)),
        Some(n) if items.len() > n => {
            items.truncate(n);
            let next = items.last().cloned();
            Ok((items, next))
        }
        _ => Ok((items, None)),
    }
}

fn link(response: &mut Reply, path: &str, n: Option<usize>, last: Option<String>) {
    if let (Some(n), Some(last)) = (n, last) {
        set(
            response,
            header::LINK,
            &format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
}

async fn tags(
    store: &dyn OciInterface,
    name: &str,
    repo: &Repository,
    query: &[(String, String)],
) -> Outcome {
    let (tags, next) = page(|params| store.tags(repo, &params), query).await?;
    let mut response = wire::json(
        StatusCode::OK,
        &serde_json::json!({"name": name, "tags": tags}),
        "application/json",
    );
    link(
        &mut response,
        &format!("/v2/{repo}/tags/list"),
        page_size(query)?,
        next,
    );
    Ok(response)
}

async fn catalog(store: &dyn OciInterface, query: &[(String, String)], access: Access) -> Outcome {
    // Only what the user may pull, filtered before the page is cut so that pages stay full.
    let listed = |mut params: ListParams| {
        let limit = params.limit.take();
        let repositories = store
            .repositories(&params)
            .try_filter(move |r| std::future::ready(access.lists(r.as_str())))
            .boxed();
        match limit {
            Some(limit) => repositories.take(limit).boxed(),
            None => repositories,
        }
    };
    let (repositories, next) = page(listed, query).await?;
    let mut response = wire::json(
        StatusCode::OK,
        &serde_json::json!({"repositories": repositories}),
        "application/json",
    );
    link(&mut response, "/v2/_catalog", page_size(query)?, next);
    Ok(response)
}

async fn referrers(
    store: &dyn OciInterface,
    repo: &Repository,
    digest: &Digest,
    query: &[(String, String)],
) -> Outcome {
    let mut params = ReferrersParams::new();
    if let Some(kind) = first(query, "artifactType") {
        params.artifact_type = Some(MediaType::parse(kind).map_err(|e| fail(e.into()))?);
    }
    let found: Vec<Descriptor> = store
        .referrers(repo, digest, &params)
        .try_collect()
        .await
        .map_err(fail)?;
    let index = ImageIndex::new(found);
    let mut response = Reply::new(wire::full(index.to_json()));
    set(&mut response, header::CONTENT_TYPE, media_type::OCI_INDEX);
    if params.artifact_type.is_some() {
        set(&mut response, "OCI-Filters-Applied", "artifactType");
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Option<(u64, u64)> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, value.parse().unwrap());
        match range_request(&headers, size) {
            RangeRequest::Part(a, b) => Some((a, b)),
            RangeRequest::Whole => Some((0, u64::MAX)),
            RangeRequest::Unsatisfiable => None,
        }
    }

    #[test]
    fn ranges_are_read_as_the_spec_and_rfc_9110_say() {
        assert_eq!(range("bytes=500-1499", 2000), Some((500, 1500)));
        assert_eq!(range("bytes=500-", 2000), Some((500, 2000)));
        assert_eq!(range("bytes=-500", 2000), Some((1500, 2000)));
        assert_eq!(range("bytes=-5000", 2000), Some((0, 2000)));
        assert_eq!(range("bytes=1500-5000", 2000), Some((1500, 2000)));
        assert_eq!(range("bytes=0-0", 1), Some((0, 1)));
        assert_eq!(range("bytes=2000-5000", 2000), None);
        assert_eq!(range("bytes=5000-10000", 2000), None);
        assert_eq!(range("bytes=500-0", 2000), None);
        assert_eq!(range("bytes=-0", 2000), None);
        assert_eq!(range("bytes=0-", 0), None);
        assert_eq!(range("items=0-5", 2000), None);
        assert_eq!(range("bytes=x-5", 2000), None);
        assert_eq!(range("bytes=0-1,5-6", 2000), Some((0, u64::MAX)));
    }
}
