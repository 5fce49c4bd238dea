//! Blob reads: whole, ranged, and the slots that bound bodies being served.

#![allow(clippy::result_large_err)]

use super::*;

/// A `Range: bytes=…` request, resolved against the blob's size.
pub(super) enum RangeRequest {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

pub(super) fn range_request(headers: &HeaderMap, size: u64) -> RangeRequest {
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

pub(super) fn blob_headers(response: &mut Reply, digest: &Digest) {
    set(response, "Docker-Content-Digest", digest.as_str());
    set(response, header::ACCEPT_RANGES, "bytes");
    set(response, header::CONTENT_TYPE, media_type::OCTET_STREAM);
}

/// `body`, holding `slot` until it is dropped (sent whole, failed, or its client gone).
pub(super) fn holding(
    body: wire::Body,
    slot: tokio::sync::OwnedSemaphorePermit,
    download: Option<Download>,
) -> wire::Body {
    use http_body_util::BodyExt as _;
    body.map_frame(move |frame| {
        let _held = (&slot, &download);
        frame
    })
    .boxed_unsync()
}

/// What a blob GET or HEAD asks of the store.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlobRead {
    /// A HEAD: the size only.
    pub(super) head: bool,
    /// A full read verifies the digest ([`ServerOptions::verify_blob_reads`](crate::ServerOptions::verify_blob_reads)).
    pub(super) verify: bool,
}

pub(super) async fn get_blob(
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

/// A whole-blob GET answered with a redirect to where the storage serves the content itself
/// (`307`, as the CNCF registry answers on object storage), once the repository is known to
/// hold the blob; `None` when the locator has no URL for it (then it is streamed as usual).
pub(super) async fn redirect_blob(
    store: &dyn OciInterface,
    redirects: &BlobRedirects,
    repo: &Repository,
    digest: &Digest,
) -> Result<Option<Reply>, Reply> {
    // The URL names content only: whether this repository holds it is the store's answer.
    store.resolve_blob(repo, digest).await.map_err(fail)?;
    let url = redirects
        .locator
        .blob_url(digest, redirects.valid_for)
        .await
        .map_err(fail)?;
    // A URL that is not a valid header value (none that the object stores sign) is streamed.
    let Some(location) = url.and_then(|url| http::HeaderValue::from_str(&url).ok()) else {
        return Ok(None);
    };
    let mut response = wire::status(StatusCode::TEMPORARY_REDIRECT);
    response.headers_mut().insert(header::LOCATION, location);
    set(&mut response, "Docker-Content-Digest", digest.as_str());
    Ok(Some(response))
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
