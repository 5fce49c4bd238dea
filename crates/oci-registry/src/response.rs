//! Reading what a registry answers: its headers, bodies read within a limit, and error answers
//! turned into the typed error of what was asked.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use oci_store::{Error, ErrorCode, Result};
use oci_types::{Digest, MAX_MANIFEST_SIZE, MediaType};

use crate::client::{RegistryClient, Target};
use crate::transport::retry_after;

/// Error bodies are read up to this size (registries send small JSON; anything larger is not
/// an error description worth holding).
const ERROR_BODY_LIMIT: usize = 8 * 1024;

impl RegistryClient {
    /// Turns an error answer into the typed error of what was asked; a HEAD's missing body is
    /// made up for by the target (a 404 on a blob is `BLOB_UNKNOWN`, not a guess).
    pub(crate) async fn error_from(
        &self,
        response: Response<Incoming>,
        target: Target<'_>,
    ) -> Error {
        let status = response.status();
        let wait = retry_after(&response);
        let body = read_limited(response, ERROR_BODY_LIMIT, self.inner.stall_timeout)
            .await
            .unwrap_or_default();
        let wire: Option<(String, String, Option<serde_json::Value>)> =
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("errors")?.as_array()?.first().cloned())
                .map(|e| {
                    (
                        e.get("code")
                            .and_then(|c| c.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        e.get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        e.get("detail").cloned().filter(|d| !d.is_null()),
                    )
                });
        let code = match &wire {
            Some((code, _, _)) => ErrorCode::from_wire(code),
            None => match (status.as_u16(), &target) {
                (404, Target::Blob(..)) => Some(ErrorCode::BlobUnknown),
                (404, Target::Manifest(..)) => Some(ErrorCode::ManifestUnknown),
                (404, Target::Upload(..)) => Some(ErrorCode::BlobUploadUnknown),
                (404, Target::Repository(..)) => Some(ErrorCode::NameUnknown),
                (401, _) => Some(ErrorCode::Unauthorized),
                (403, _) => Some(ErrorCode::Denied),
                (429, _) => Some(ErrorCode::TooManyRequests),
                (416, _) => Some(ErrorCode::RangeInvalid),
                _ => None,
            },
        };
        let message = wire
            .as_ref()
            .map(|(code, message, _)| {
                if message.is_empty() {
                    code.clone()
                } else {
                    message.clone()
                }
            })
            .unwrap_or_else(|| format!("{self} answered {status}"));
        match (code, &target) {
            (Some(ErrorCode::BlobUnknown), Target::Blob(repo, digest)) => Error::BlobUnknown {
                repo: (*repo).clone(),
                digest: (*digest).clone(),
            },
            (Some(ErrorCode::ManifestUnknown), Target::Manifest(repo, reference)) => {
                Error::ManifestUnknown {
                    repo: (*repo).clone(),
                    reference: (*reference).to_owned(),
                }
            }
            (
                Some(ErrorCode::NameUnknown),
                Target::Blob(repo, _)
                | Target::Manifest(repo, _)
                | Target::Upload(repo, _)
                | Target::Repository(repo),
            ) => Error::NameUnknown {
                repo: (*repo).clone(),
            },
            (Some(ErrorCode::BlobUploadUnknown), Target::Upload(repo, id)) => {
                Error::BlobUploadUnknown {
                    repo: (*repo).clone(),
                    id: (*id).to_owned(),
                }
            }
            (Some(ErrorCode::Unauthorized), _) => Error::Unauthorized {
                message: format!("{self}: {message}"),
            },
            (Some(ErrorCode::Denied), _) => Error::Denied {
                message: format!("{self}: {message}"),
            },
            (Some(ErrorCode::TooManyRequests), _) => Error::TooManyRequests { retry_after: wait },
            (Some(ErrorCode::RangeInvalid), _) => Error::RangeInvalid {
                target: format!("{target:?}"),
                reason: message,
            },
            (code, _) => Error::Remote {
                status: status.as_u16(),
                code,
                message: format!("{self}: {message}"),
                detail: wire.and_then(|(_, _, detail)| detail),
            },
        }
    }
}

/// The total size stated by `Content-Range: bytes a-b/size`.
pub(crate) fn content_range_total(response: &Response<Incoming>) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

pub(crate) fn content_length(response: &Response<Incoming>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub(crate) fn header_digest(response: &Response<Incoming>) -> Option<Digest> {
    Digest::parse(
        response
            .headers()
            .get("Docker-Content-Digest")?
            .to_str()
            .ok()?,
    )
    .ok()
}

pub(crate) fn header_media_type(response: &Response<Incoming>) -> Option<MediaType> {
    let value = response
        .headers()
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    MediaType::parse(value.split(';').next()?.trim()).ok()
}

pub(crate) fn incoming_stream(response: Response<Incoming>) -> BoxStream<'static, Result<Bytes>> {
    response
        .into_body()
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| Error::unavailable("reading a registry's answer", e)))
        .boxed()
}

/// Reads a body, keeping at most `limit` bytes; a body that brings nothing for `stall` is
/// broken off (`UNAVAILABLE`), like a download.
pub(crate) async fn read_limited(
    response: Response<Incoming>,
    limit: usize,
    stall: Duration,
) -> Result<Bytes> {
    let mut body = incoming_stream(response);
    let mut buffer = BytesMut::new();
    loop {
        let next = tokio::time::timeout(stall, body.next())
            .await
            .map_err(|_| {
                Error::unavailable(
                    format!("reading a registry's answer: no data for {stall:?}"),
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk?;
        let room = limit.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buffer.len() >= limit {
            break;
        }
    }
    Ok(buffer.freeze())
}

/// Reads a manifest body whole (at most [`MAX_MANIFEST_SIZE`]).
pub(crate) async fn read_manifest(
    client: &RegistryClient,
    response: Response<Incoming>,
) -> Result<Bytes> {
    let bytes = read_limited(response, MAX_MANIFEST_SIZE + 1, client.inner.stall_timeout).await?;
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(client.backend(format!("a manifest larger than {MAX_MANIFEST_SIZE} bytes")));
    }
    Ok(bytes)
}
