//! Request bodies: read up to a limit, within the server's body deadline, with every failure
//! answered as the API's JSON error (never the framework's plain text).

use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;

use super::error::ApiError;

/// Reads `body`, refusing it with `413` as soon as it passes `max` bytes (at once when its
/// `Content-Length` says so), and with `408` when the body deadline passes first.
///
/// # Errors
///
/// `413 Request body is too large`, `408 Request body timeout`, or `400 Invalid JSON format`
/// when the connection broke off mid-body.
pub(crate) async fn read(body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::body_too_large(max));
    }
    let mut buf = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if is_deadline(&e) {
                ApiError::body_timeout()
            } else {
                ApiError::invalid_json(format!("reading the body: {e}"))
            }
        })?;
        if buf.len() + chunk.len() > max {
            return Err(ApiError::body_too_large(max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Whether a body error is the server's body deadline passing.
fn is_deadline(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = s.source();
    }
    false
}
