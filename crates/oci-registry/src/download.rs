//! Blob downloads: `GET` with redirects followed (credentials stay with the registry's host) and a
//! body that resumes with `Range` from the byte reached when the connection breaks or stalls.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use http::{Method, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use oci_store::{BlobBody, Error, Result};
use oci_types::{Digest, Repository};

use crate::client::{RegistryClient, Target};
use crate::response::incoming_stream;
use crate::transport::Call;

/// How often a broken blob download is resumed from the byte reached.
const DOWNLOAD_RESUMES: u32 = 5;

impl RegistryClient {
    /// Opens a blob's content from `offset` on, following redirects (credentials never go to
    /// another host). Returns the response and the URL that answered.
    pub(crate) async fn open_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<(Response<Incoming>, Uri)> {
        let mut uri = self.uri(&format!("/v2/{repo}/blobs/{digest}"))?;
        let scope = Self::scope(repo, "pull");
        for _ in 0..6 {
            let mut call = Call::new(Method::GET, uri.clone());
            if let Some((start, end)) = range {
                let value = match end {
                    Some(end) => format!("bytes={start}-{}", end.saturating_sub(1)),
                    None => format!("bytes={start}-"),
                };
                call = call.header(header::RANGE, &value);
            }
            let response = self.send(&mut call, &scope).await?;
            if response.status().is_redirection() {
                let next = self.location(&response)?;
                tracing::debug!(
                    from = %crate::client::loggable(&uri),
                    to = %crate::client::loggable(&next),
                    "following a redirect"
                );
                uri = next;
                continue;
            }
            let ok = if range.is_some() {
                [StatusCode::PARTIAL_CONTENT, StatusCode::OK]
            } else {
                [StatusCode::OK, StatusCode::OK]
            };
            if ok.contains(&response.status()) {
                return Ok((response, uri));
            }
            return Err(self.error_from(response, Target::Blob(repo, digest)).await);
        }
        Err(self.backend(format!("too many redirects fetching {digest}")))
    }

    /// A blob body that resumes with `Range` from the byte reached when the connection breaks.
    pub(crate) fn resuming_body(
        &self,
        repo: &Repository,
        digest: &Digest,
        first: Response<Incoming>,
        start: u64,
        end: u64,
    ) -> BlobBody {
        struct State {
            client: RegistryClient,
            repo: Repository,
            digest: Digest,
            body: Option<BoxStream<'static, Result<Bytes>>>,
            offset: u64,
            end: u64,
            resumes: u32,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            repo: repo.clone(),
            digest: digest.clone(),
            body: Some(incoming_stream(first)),
            offset: start,
            end,
            resumes: DOWNLOAD_RESUMES,
            done: false,
        };
        stream::unfold(state, |mut state| async move {
            loop {
                if state.done {
                    return None;
                }
                let Some(body) = state.body.as_mut() else {
                    match state.client.open_blob(&state.repo, &state.digest, Some((state.offset, Some(state.end)))).await {
                        Ok((response, _)) if response.status() == StatusCode::PARTIAL_CONTENT && content_range_start(&response) == Some(state.offset) => {
                            state.body = Some(incoming_stream(response));
                            continue;
                        }
                        Ok((response, _)) => {
                            state.done = true;
                            let error = state.client.backend(format!(
                                "resuming {} at byte {}: the registry answered {} without the range asked",
                                state.digest,
                                state.offset,
                                response.status()
                            ));
                            return Some((Err(error), state));
                        }
                        Err(error) => {
                            state.done = true;
                            return Some((Err(error), state));
                        }
                    }
                };
                let stall = state.client.inner.stall_timeout;
                let next = match tokio::time::timeout(stall, body.next()).await {
                    Ok(next) => next,
                    Err(_) => Some(Err(Error::unavailable(
                        format!("downloading {}: no data for {stall:?}", state.digest),
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ))),
                };
                match next {
                    Some(Ok(chunk)) => {
                        state.offset += chunk.len() as u64;
                        return Some((Ok(chunk), state));
                    }
                    Some(Err(error)) if state.resumes > 0 && state.offset < state.end => {
                        state.resumes -= 1;
                        tracing::warn!(%error, digest = %state.digest, offset = state.offset, "download broke off; resuming");
                        state.body = None;
                    }
                    Some(Err(error)) => {
                        state.done = true;
                        return Some((Err(error), state));
                    }
                    None => return None,
                }
            }
        })
        .boxed()
        .into()
    }
}

/// The first byte stated by `Content-Range: bytes a-b/size`.
pub(crate) fn content_range_start(response: &Response<Incoming>) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}
