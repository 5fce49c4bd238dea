//! One function per endpoint of the distribution-spec, each turning a request into calls on the
//! store and the store's answers (or errors) into the spec's responses.

// A refused request is answered with its response: the `Err` is that response, built once
// per request and sent as it is, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use oci_store::{
    BlobBody, BlobLocator, BlobWriter, Error, ErrorCode, ListParams, OciInterface,
    PushManifestParams, ReferrersParams,
};
use oci_types::{Descriptor, Digest, ImageIndex, Manifest, MediaType, Repository, Tag, media_type};
use tokio::sync::Semaphore;

use crate::ServerOptions;
use crate::auth::{Access, Authenticator};
use crate::body::{BodyWatch, MinRate, body_stream, read_whole};
use crate::conn::{Activity, Download};
use crate::policy::Action;
use crate::route::{self, Route};
use crate::wire::{self, Reply, append, set};

mod blobs;
mod manifests;
mod upload_lock;
mod uploads;

use blobs::{BlobRead, get_blob, holding, redirect_blob};

/// The range readers of the handlers, for the fuzz targets (`crate::fuzzing`): the part of a
/// blob of `size` bytes that `range` asks for, after reading `content_range` as a chunk's.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzzing_ranges(range: &[u8], content_range: &[u8], size: u64) -> Option<(u64, u64)> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(content_range) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    if let Ok(Some((start, end))) = uploads::content_range(&headers) {
        assert!(start <= end, "a chunk's range ends before it starts");
        // The check of a chunk's length against its Content-Length, with the sizes at hand.
        uploads::range_has_length(start, end, size);
    }
    let mut headers = HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(range) {
        headers.insert(header::RANGE, value);
    }
    match blobs::range_request(&headers, size) {
        blobs::RangeRequest::Part(start, end) => {
            assert!(
                start < end && end <= size,
                "{start}..{end} is not within {size} bytes"
            );
            Some((start, end))
        }
        _ => None,
    }
}
use manifests::{get_manifest, put_manifest};
use uploads::{patch_upload, post_upload, put_upload, upload_status};

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) store: Arc<dyn OciInterface>,
    pub(crate) options: ServerOptions,
    pub(crate) auth: Option<Authenticator>,
    pub(crate) upload_slots: Arc<Semaphore>,
    /// One request at a time on each upload session.
    pub(crate) upload_locks: upload_lock::UploadLocks,
    /// Blob bodies being served ([`ServerOptions::max_concurrent_downloads`]).
    pub(crate) download_slots: Arc<Semaphore>,
    /// Where whole-blob GETs are redirected ([`RegistryServer::with_blob_redirects`]).
    ///
    /// [`RegistryServer::with_blob_redirects`]: crate::RegistryServer::with_blob_redirects
    pub(crate) redirects: Option<BlobRedirects>,
}

impl State {
    /// The least a request body must bring in each window: uploads, manifests and token
    /// requests alike.
    pub(crate) fn body_rate(&self) -> MinRate {
        MinRate {
            bytes_per_second: self.options.min_body_rate,
            window: self.options.body_rate_window,
        }
    }
}

/// Blob GETs answered with a redirect to a URL of the storage itself.
#[derive(Debug, Clone)]
pub(crate) struct BlobRedirects {
    pub(crate) locator: Arc<dyn BlobLocator>,
    /// How long each URL given out stays valid.
    pub(crate) valid_for: std::time::Duration,
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
            Some(auth) => {
                let rate = state.body_rate();
                auth.token_endpoint(request, rate).await
            }
            None => Err(wire::refusal(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "token auth is not enabled",
            )),
        };
    }
    // What the request may do beyond its own endpoint: the source of a mount, the catalog.
    let access = match &state.auth {
        Some(auth) => auth.authorize(&request, &route, state.options.tls).await?,
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
            if let Some(redirects) = &state.redirects
                && !read.head
                && !request.headers().contains_key(header::RANGE)
                && let Some(response) =
                    redirect_blob(store.as_ref(), redirects, &repo, &digest).await?
            {
                return Ok(response);
            }
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
                // Counted on its connection, which is closed if it takes the body slower than
                // the minimum rate: a slow reader must not hold the slot for ever.
                let activity = request.extensions().get::<Arc<Activity>>();
                let download = activity.map(Activity::download);
                response = response.map(|body| holding(body, slot, download));
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
            let _turn = state.upload_locks.turn(id).await;
            patch_upload(state, &repository(name)?, id, request).await
        }
        (Route::Upload { name, id }, Method::PUT) => {
            let _turn = state.upload_locks.turn(id).await;
            put_upload(state, &repository(name)?, id, &query, request).await
        }
        (Route::Upload { name, id }, Method::GET) => {
            let repo = repository(name)?;
            let _turn = state.upload_locks.turn(id).await;
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
            let _turn = state.upload_locks.turn(id).await;
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

fn too_large(what: &str, limit: u64) -> Reply {
    wire::refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        &format!("{what} larger than the limit of {limit} bytes"),
    )
}

// ---- listings ----

/// The most names one listing answer holds: a larger `n`, or none, gets this many and a
/// `Link` to the rest (the spec lets a registry return fewer than asked), so that no request
/// makes the server collect and render every tag or repository at once.
pub const MAX_LISTING_PAGE: usize = 10_000;

/// The page size a listing answers with: `n` up to [`MAX_LISTING_PAGE`], which is also the default.
fn page_size(query: &[(String, String)]) -> Result<usize, Reply> {
    let Some(n) = first(query, "n") else {
        return Ok(MAX_LISTING_PAGE);
    };
    let n = n.parse::<usize>().map_err(|_| {
        wire::refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            &format!("n={n:?} is not a count"),
        )
    })?;
    Ok(n.min(MAX_LISTING_PAGE))
}

/// Fetches one page (one more than asked, to know whether a next page exists); returns the page
/// and the `last` of the next one.
async fn page<T: ToString>(
    list: impl FnOnce(ListParams) -> futures::stream::BoxStream<'static, oci_store::Result<T>>,
    n: usize,
    query: &[(String, String)],
) -> Result<(Vec<String>, Option<String>), Reply> {
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    let mut params = ListParams::new();
    params.start_after = first(query, "last").map(str::to_owned);
    params.limit = Some(n.saturating_add(1));
    let mut items: Vec<String> = list(params)
        .map_ok(|t| t.to_string())
        .try_collect()
        .await
        .map_err(fail)?;
    if items.len() > n {
        items.truncate(n);
        let next = items.last().cloned();
        Ok((items, next))
    } else {
        Ok((items, None))
    }
}

fn link(response: &mut Reply, path: &str, n: usize, last: Option<String>) {
    if let Some(last) = last {
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
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
    let n = page_size(query)?;
    let (tags, next) = page(|params| store.tags(repo, &params), n, query).await?;
    let mut response = wire::json(
        StatusCode::OK,
        &serde_json::json!({"name": name, "tags": tags}),
        "application/json",
    );
    link(&mut response, &format!("/v2/{repo}/tags/list"), n, next);
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
    let n = page_size(query)?;
    let (repositories, next) = page(listed, n, query).await?;
    let mut response = wire::json(
        StatusCode::OK,
        &serde_json::json!({"repositories": repositories}),
        "application/json",
    );
    link(&mut response, "/v2/_catalog", n, next);
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
