//! Chunked, resumable uploads to a registry: PATCH per chunk with `Content-Range`, a closing
//! PUT with the digest, and resumption through the upload status endpoint.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use http::{Method, StatusCode, Uri, header};
use oci_store::{BlobBody, BlobWriter, Error, PushCheck, Result};
use oci_types::{Descriptor, Digest, Repository};

use crate::client::{RegistryClient, Target};
use crate::transport::{Body, Call};

/// The largest `OCI-Chunk-Min-Length` a chunked upload follows (a chunk is held in memory).
const MAX_CHUNK_MIN_LENGTH: usize = 256 << 20;

pub(crate) struct RegistryWriter {
    client: RegistryClient,
    repo: Repository,
    /// The upload's current URL (registries may move it with every answer).
    location: Uri,
    /// The upload's first URL, base64url-encoded: an id safe in any path or header, which a
    /// server proxying through this client can hand out as its own.
    id: String,
    /// Bytes the registry has confirmed.
    confirmed: u64,
    /// Bytes written but not yet sent.
    pending: BytesMut,
    chunk_size: usize,
}

fn encode_id(location: &Uri) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(location.to_string())
}

fn decode_id(id: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The size a registry reports as `Range: 0-<last byte>`. `0-0` is read as nothing yet: it is
/// what the Docker registry (and hoist's server) answer for an empty upload, and it is
/// ambiguous with one byte; after a PATCH the client knows better and takes the larger.
fn reported_size(value: Option<&str>) -> Option<u64> {
    let (start, end) = value?.trim().trim_start_matches("bytes=").split_once('-')?;
    let end: i64 = end.trim().parse().ok()?;
    if start.trim() == "0" && end == 0 {
        return Some(0);
    }
    Some(u64::try_from(end.checked_add(1)?).unwrap_or(0))
}

/// The chunk size of an upload: `wanted`, or the registry's minimum (`OCI-Chunk-Min-Length`)
/// where it asks for more, up to [`MAX_CHUNK_MIN_LENGTH`]. A chunk is held in memory until it
/// is full, so no registry can make the client hold a whole layer; one that asks for more
/// gets chunks of the bound, and says whether it takes them.
fn chunk_size_for(wanted: usize, asked: usize) -> usize {
    let minimum = asked.min(MAX_CHUNK_MIN_LENGTH);
    if minimum < asked {
        tracing::warn!(
            asked,
            minimum,
            "the registry asks for chunks larger than the client holds; sending smaller ones"
        );
    }
    wanted.max(minimum).max(1)
}

/// The chunk size of an upload to a registry that refused a whole-blob PUT of
/// `refused_put_size` bytes: well below it (half), since the closing PUT carries a chunk too, at
/// most the client's `chunk_size`, and at least 64 KiB unless `chunk_size` is smaller.
pub(crate) fn chunk_below_refused(refused_put_size: u64, chunk_size: usize) -> usize {
    let half = usize::try_from(refused_put_size / 2).unwrap_or(usize::MAX);
    half.min(chunk_size).max((64 << 10).min(chunk_size))
}

impl RegistryWriter {
    /// Moves the upload to the URL the registry gave last, remembering it for resumption.
    fn moved_to(&mut self, location: Uri) {
        self.client
            .inner
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.id.clone(), location.clone());
        self.location = location;
    }

    fn forget(&self) {
        self.client
            .inner
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }

    /// Starts an upload: `POST /v2/<repo>/blobs/uploads/`.
    pub(crate) async fn start(
        client: &RegistryClient,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        let mut call = Call::new(
            Method::POST,
            client.uri(&format!("/v2/{repo}/blobs/uploads/"))?,
        )
        .header(header::CONTENT_LENGTH, "0");
        let scope = RegistryClient::scope(repo, "pull,push");
        let response = client
            .expect(
                &mut call,
                &scope,
                &[StatusCode::ACCEPTED],
                Target::Repository(repo),
            )
            .await?;
        let location = client.location(&response)?;
        let asked: usize = response
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            client: client.clone(),
            repo: repo.clone(),
            id: encode_id(&location),
            location,
            confirmed: 0,
            pending: BytesMut::new(),
            chunk_size: chunk_size_for(chunk_size.unwrap_or(client.inner.chunk_size), asked),
        })
    }

    /// Continues an upload by id (its URL): asks the registry where it is.
    pub(crate) async fn resume(
        client: &RegistryClient,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        let unknown = || Error::BlobUploadUnknown {
            repo: repo.clone(),
            id: id.to_owned(),
        };
        // An id is this registry's upload URL for this repository: never follow one elsewhere.
        let latest = client
            .inner
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        let location = match latest {
            Some(location) => location,
            None => {
                let url = decode_id(id).ok_or_else(unknown)?;
                client.resolve(&url).map_err(|_| unknown())?
            }
        };
        // The path, as it will be sent: dot segments (plain or percent-encoded) could lead
        // a server that resolves them from this repository's uploads elsewhere.
        let path = location.path();
        let dot_segment = path.split('/').any(|segment| {
            let segment = segment.to_ascii_lowercase().replace("%2e", ".");
            segment == "." || segment == ".."
        });
        if !client.is_own_host(&location)
            || dot_segment
            || !path.starts_with(&format!("/v2/{repo}/blobs/uploads/"))
        {
            return Err(unknown());
        }
        let mut writer = Self {
            client: client.clone(),
            repo: repo.clone(),
            id: id.to_owned(),
            location,
            confirmed: 0,
            pending: BytesMut::new(),
            chunk_size: chunk_size.unwrap_or(client.inner.chunk_size).max(1),
        };
        writer.confirmed = writer.status().await?.unwrap_or(0);
        if let Some(offset) = offset.filter(|&o| o != writer.confirmed) {
            return Err(Error::RangeInvalid {
                target: format!("upload {id}"),
                reason: format!(
                    "resume at offset {offset}, but the registry has {} bytes",
                    writer.confirmed
                ),
            });
        }
        Ok(writer)
    }

    /// `GET` on the upload: how many bytes the registry has, if it says.
    async fn status(&mut self) -> Result<Option<u64>> {
        let mut call = Call::new(Method::GET, self.location.clone());
        let scope = RegistryClient::scope(&self.repo, "pull,push");
        let response = self
            .client
            .expect(
                &mut call,
                &scope,
                &[StatusCode::NO_CONTENT, StatusCode::OK],
                Target::Upload(&self.repo, &self.id),
            )
            .await?;
        if let Ok(location) = self.client.location(&response) {
            self.moved_to(location);
        }
        let range = response
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        Ok(reported_size(range))
    }

    fn with_digest(&self, digest: &Digest) -> Result<Uri> {
        let text = self.location.to_string();
        let separator = if text.contains('?') { '&' } else { '?' };
        format!("{text}{separator}digest={digest}")
            .parse()
            .map_err(|e| {
                self.client
                    .backend(format!("cannot build the upload URL: {e}"))
            })
    }

    /// Sends the pending bytes as one chunk. A PATCH that fails after the registry took part
    /// of it (a connection broken mid-body, an answer lost) leaves the upload further on than
    /// this writer knows, and a retry of the same range is refused (416); so after a failure
    /// the writer asks the registry where the upload stands and sends the rest of the chunk
    /// from there, as long as each try gets further.
    async fn send_chunk(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = self.pending.split().freeze();
        let start = self.confirmed;
        let end = start + chunk.len() as u64;
        // Bytes of the chunk the registry has.
        let mut sent = 0;
        let mut resumed = 0;
        loop {
            let from = start + sent as u64;
            let error = match self.patch(chunk.slice(sent..), from).await {
                Ok(reported) => {
                    self.confirmed = reported.unwrap_or(end).max(end);
                    return Ok(());
                }
                Err(error) => error,
            };
            let Ok(status) = self.status().await else {
                return Err(error);
            };
            // `0-0` is both nothing and one byte; a 416 for a PATCH from 0 says it is one.
            let refused = matches!(error, Error::RangeInvalid { .. });
            let size = if status == Some(0) && from == 0 && refused {
                1
            } else {
                status.unwrap_or(0)
            };
            self.confirmed = size;
            if size == end {
                tracing::debug!(upload = %self.id, size, "the registry had the whole chunk");
                return Ok(());
            }
            resumed += 1;
            if size <= from || size > end || resumed > self.client.inner.retry.attempts {
                return Err(error);
            }
            tracing::debug!(upload = %self.id, from, size, "resuming the chunk where the registry stands");
            // from < size < end, so the registry has a part of this chunk shorter than it.
            sent = (size - start) as usize;
        }
    }

    /// One PATCH of `bytes` at offset `from`; the size the registry reports after it, if any.
    async fn patch(&mut self, bytes: Bytes, from: u64) -> Result<Option<u64>> {
        let last = from + bytes.len() as u64 - 1;
        let mut call = Call::new(Method::PATCH, self.location.clone())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, &format!("{from}-{last}"))
            .header(header::CONTENT_LENGTH, &bytes.len().to_string())
            .body(Body::Bytes(bytes));
        let scope = RegistryClient::scope(&self.repo, "pull,push");
        let response = self
            .client
            .expect(
                &mut call,
                &scope,
                &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
                Target::Upload(&self.repo, &self.id),
            )
            .await?;
        if let Ok(location) = self.client.location(&response) {
            self.moved_to(location);
        }
        let range = response
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        Ok(reported_size(range))
    }
}

impl fmt::Debug for RegistryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryWriter")
            .field("repo", &self.repo)
            .field("location", &self.location.path())
            .field("confirmed", &self.confirmed)
            .field("pending", &self.pending.len())
            .finish()
    }
}

#[async_trait]
impl BlobWriter for RegistryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.pending.extend_from_slice(&chunk);
        while self.pending.len() >= self.chunk_size {
            let rest = self.pending.split_off(self.chunk_size);
            self.send_chunk().await?;
            self.pending = rest;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.confirmed + self.pending.len() as u64
    }

    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn id(&self) -> &str {
        &self.id
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.send_chunk().await
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<Descriptor> {
        let uri = self.with_digest(digest)?;
        let rest = self.pending.split().freeze();
        let size = self.confirmed + rest.len() as u64;
        let mut call = Call::new(Method::PUT, uri)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, &rest.len().to_string());
        if !rest.is_empty() {
            call = call.header(
                header::CONTENT_RANGE,
                &format!("{}-{}", self.confirmed, size - 1),
            );
        }
        let mut call = call.body(Body::Bytes(rest));
        let scope = RegistryClient::scope(&self.repo, "pull,push");
        self.client
            .expect(
                &mut call,
                &scope,
                &[StatusCode::CREATED, StatusCode::NO_CONTENT],
                Target::Upload(&self.repo, &self.id),
            )
            .await?;
        self.forget();
        Ok(Descriptor::octet_stream(digest, size))
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        // Another writer of this upload may have moved it on since this one last heard.
        let latest = self
            .client
            .inner
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&self.id)
            .cloned()
            .unwrap_or_else(|| self.location.clone());
        self.forget();
        let mut call = Call::new(Method::DELETE, latest);
        let scope = RegistryClient::scope(&self.repo, "pull,push");
        let response = self.client.send(&mut call, &scope).await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self
                .client
                .error_from(response, Target::Upload(&self.repo, &self.id))
                .await),
        }
    }
}

/// Where [`checked_body`] leaves the reason it failed a body: the transport reports only that
/// the request body broke off.
pub(crate) type BodyFailure = Arc<Mutex<Option<Error>>>;

/// Wraps a pushed body so that a body of the wrong length ends in an error, which aborts the
/// upload before the registry can commit it. The digest is the registry's to check: it
/// verifies every upload when it commits it (distribution-spec) and answers a mismatch with
/// `DIGEST_INVALID`, which the push returns; hashing here too would spend a core on what the
/// registry does anyway (a body that verifies itself, a store's read, still does). A body that
/// lies in a file keeps that file's span, when it is the descriptor's size, for a PUT that
/// sends it unread (`send_file.rs`), which sends exactly that many bytes.
pub(crate) fn checked_body(
    descriptor: &Descriptor,
    body: BlobBody,
    failure: BodyFailure,
) -> BlobBody {
    // Sent from its file, the body is the span's length, which must be the descriptor's.
    let span = body
        .file_span()
        .filter(|span| span.len() == descriptor.size)
        .cloned();
    let mut check = Some(PushCheck::counting(descriptor));
    let record = move |error: Error| -> Error {
        let message = error.to_string();
        *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        Error::Backend {
            backend: "oci-registry".to_owned(),
            message,
            source: None,
        }
    };
    let checked = body
        .map(Some)
        .chain(stream::once(async { None }))
        .filter_map(move |item| {
            let out = match item {
                Some(Ok(chunk)) => match check.as_mut().map(|c| c.update(&chunk)) {
                    Some(Err(error)) => Some(Err(record(error))),
                    _ => Some(Ok(chunk)),
                },
                // The body's own failure, including its own digest check
                // (`PushCheck::for_body`), is the reason to report.
                Some(Err(error)) => Some(Err(record(error))),
                None => check
                    .take()
                    .and_then(|c| c.finish().err())
                    .map(|e| Err(record(e))),
            };
            futures::future::ready(out)
        })
        .boxed();
    BlobBody::from(checked).with_file(span)
}

#[cfg(test)]
mod tests {
    use super::{MAX_CHUNK_MIN_LENGTH, chunk_below_refused, chunk_size_for, reported_size};

    #[test]
    fn chunks_after_a_refused_put_stay_below_it() {
        assert_eq!(chunk_below_refused(10 << 20, 8 << 20), 5 << 20);
        assert_eq!(chunk_below_refused(100 << 20, 8 << 20), 8 << 20);
        assert_eq!(chunk_below_refused(1000, 8 << 20), 64 << 10);
        // A client chunk size under 64 KiB (a programmer's choice) is kept, not a panic.
        assert_eq!(chunk_below_refused(1000, 4096), 4096);
    }

    #[test]
    fn a_registrys_chunk_minimum_is_followed_up_to_a_bound() {
        assert_eq!(chunk_size_for(8 << 20, 0), 8 << 20);
        assert_eq!(chunk_size_for(8 << 20, 32 << 20), 32 << 20);
        assert_eq!(chunk_size_for(8 << 20, usize::MAX), MAX_CHUNK_MIN_LENGTH);
        assert_eq!(chunk_size_for(0, 0), 1);
    }

    #[test]
    fn ranges_report_sizes() {
        assert_eq!(reported_size(Some("0-99")), Some(100));
        assert_eq!(reported_size(Some("bytes=0-0")), Some(0));
        assert_eq!(reported_size(Some("0-1")), Some(2));
        assert_eq!(reported_size(Some("0--1")), Some(0));
        assert_eq!(reported_size(Some("junk")), None);
        assert_eq!(reported_size(Some("0-9223372036854775807")), None);
        assert_eq!(reported_size(None), None);
    }
}
