//! `GET /v1/values?key=&from=&to=&granularity=&skip_blanks=`: a timeline from the metrics
//! store, the same shape as [`MetricsStore::values`](crate::metrics::MetricsStore::values):
//! `{"at": [bucket starts], "values": [one object per bucket]}`.
//!
//! * `key` (required) — the event key;
//! * `from`, `to` — RFC 3339 instants (default: the last 24 hours up to now); both bucket ends
//!   are included;
//! * `granularity` — e.g. `1h` (default: the first configured one);
//! * `skip_blanks` — `true` leaves out buckets with nothing stored.
//!
//! Each bucket holds `count` (events) and `data` (the sums of the events' numeric `data`
//! fields), or `{}` when nothing was stored. Bucket starts are printed in the configured time
//! zone's offset.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};

use super::error::ApiError;
use super::json;
use super::pipeline::flusher::metric_key;
use super::routes::AppState;
use crate::metrics::{MetricsError, Value};
use crate::time::{Blanks, Granularity, Unit};

fn parse_time(name: &str, v: &str) -> Result<Timestamp, ApiError> {
    v.parse::<Timestamp>().map_err(|e| {
        ApiError::bad_query(format!(
            "{name} must be an RFC 3339 instant like 2025-08-25T10:00:00Z: {e}"
        ))
    })
}

pub(crate) async fn values(
    State(st): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    match values_inner(&st, &pairs).await {
        Ok(body) => json::response(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

async fn values_inner(st: &AppState, pairs: &[(String, String)]) -> Result<Vec<u8>, ApiError> {
    let Some(pipeline) = &st.pipeline else {
        return Err(ApiError::no_metrics());
    };
    let stats = pipeline.stats();
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let key = first("key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_query("key is required".into()))?;
    let to = match first("to") {
        Some(v) => parse_time("to", v)?,
        None => Timestamp::now(),
    };
    let from = match first("from") {
        Some(v) => parse_time("from", v)?,
        None => to - SignedDuration::from_hours(24),
    };
    if from > to {
        return Err(ApiError::bad_query("from is after to".into()));
    }
    let granularity = match first("granularity") {
        Some(g) => g
            .parse::<Granularity>()
            .map_err(|e| ApiError::bad_query(e.to_string()))?,
        None => stats
            .granularities()
            .first()
            .copied()
            .unwrap_or(Granularity::one(Unit::Hour)),
    };
    let blanks = match first("skip_blanks") {
        Some("true" | "1") => Blanks::Skip,
        _ => Blanks::Keep,
    };
    let series = stats
        .values(&metric_key(key), from, to, granularity, blanks)
        .await
        .map_err(|e| match e {
            MetricsError::TooManyBuckets { .. } | MetricsError::Time(_) => {
                ApiError::bad_query(e.to_string())
            }
            e => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "reading /v1/values failed"
                );
                ApiError::values_failed()
            }
        })?;
    let tz = stats.calendar().time_zone().clone();
    let mut out = Vec::with_capacity(64 + series.at.len() * 48);
    out.extend_from_slice(b"{\"at\":[");
    for (i, at) in series.at.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Bucket starts are whole seconds, and may lie outside the nanosecond range of event
        // times (the year bucket of an event in 1677 starts on 1677-01-01).
        let offset = tz.to_offset(*at);
        let text = if offset.seconds() == 0 {
            at.to_string()
        } else {
            at.display_with_offset(offset).to_string()
        };
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"values\":[");
    for (i, v) in series.values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let json = Value::Map(v.clone()).to_json();
        serde_json::to_writer(&mut out, &json).expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
