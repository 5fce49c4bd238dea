//! Responses: bodies, the spec's error JSON, and the headers every answer carries.

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use oci_store::{BlobBody, Error, ErrorCode};

/// The body type of every response: bytes, possibly streamed from a store.
pub(crate) type Body = UnsyncBoxBody<Bytes, Error>;

/// A response under construction.
pub(crate) type Reply = Response<Body>;

pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn stream(body: BlobBody) -> Body {
    StreamBody::new(body.map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}

/// A response with a status and an empty body.
pub(crate) fn status(code: StatusCode) -> Reply {
    let mut response = Response::new(empty());
    *response.status_mut() = code;
    response
}

/// A JSON response.
pub(crate) fn json(code: StatusCode, value: &serde_json::Value, content_type: &str) -> Reply {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(bytes.clone()));
    *response.status_mut() = code;
    set(&mut response, header::CONTENT_TYPE, content_type);
    set(
        &mut response,
        header::CONTENT_LENGTH,
        &bytes.len().to_string(),
    );
    response
}

/// Sets a header whose value is known to be valid ASCII (digests, names, numbers, paths).
pub(crate) fn set(response: &mut Reply, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Appends a header that may repeat (`OCI-Tag`).
pub(crate) fn append(response: &mut Reply, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(name, value);
    }
}

/// The spec's error body for `error`, with the status its code calls for.
pub(crate) fn error(error: &Error) -> Reply {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = error.code().map_or("UNKNOWN", ErrorCode::as_str);
    // A server-side failure's text names files and backends: it goes to the log, and the
    // client learns only that the server failed.
    let message = if status.is_server_error() {
        tracing::error!(%error, "request failed");
        "the registry failed to answer this request (the reason is in its log)".to_owned()
    } else {
        error.to_string()
    };
    let mut entry = serde_json::json!({"code": code, "message": message});
    if let Error::Remote {
        detail: Some(detail),
        ..
    } = error
    {
        entry["detail"] = detail.clone();
    }
    let mut response = json(
        status,
        &serde_json::json!({"errors": [entry]}),
        "application/json",
    );
    if let Error::TooManyRequests { retry_after } = error {
        let seconds = retry_after.map_or(1, |d| d.as_secs().max(1));
        set(&mut response, header::RETRY_AFTER, &seconds.to_string());
    }
    response
}

/// An error of a code, status and message of the server's own (405 for disabled operations).
pub(crate) fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Reply {
    json(
        status,
        &serde_json::json!({"errors": [{"code": code.as_str(), "message": message}]}),
        "application/json",
    )
}
