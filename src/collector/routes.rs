//! The HTTP API: the Tlytics routes, their extensions, and the operational routes.
//!
//! | route | what |
//! |---|---|
//! | `POST /events` | a JSON array of events (Tlytics) |
//! | `POST /batch` | `{"events": [...]}` (Tlytics) |
//! | `GET /health` | liveness, `{"port":N,"status":"healthy"}` (Tlytics) |
//! | `GET /view?page=&page_size=&key=` | stored events, newest first (Tlytics, plus `key`) |
//! | `GET /ready` | readiness: the event store answers and the last write succeeded |
//! | `GET /v1/values?key=&from=&to=&granularity=` | aggregated timelines from the metrics store |
//! | `GET /metrics` | Prometheus text |
//! | `GET /openapi.json` | the OpenAPI 3.1 description of all of the above |
//! | `GET /v1/events`, `GET /v1/latest`, `DELETE /v1/events[/{id}]` | queries and deletes (`query`) |
//! | `GET/PUT/DELETE /v1/kv/{ns}/{key}`, `GET /v1/kv/{ns}` | the KV store (`kv`) |
//! | `GET /v1/live` (WebSocket), `GET /v1/live/sse` | live feeds (`live`) |
//! | `POST/GET /v1/keys`, `DELETE /v1/keys/{id}` | API-key management (`keys`) |
//!
//! With API keys configured every route but `/health`, `/ready` and `/openapi.json` needs
//! `Authorization: Bearer <key>` with the scope its row of [`ROUTES`] names; `HEAD` is answered
//! by the `GET` handler behind the same check.
//!
//! Everything else, including a known path with the wrong method, is Gin's plain-text
//! `404 page not found`.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Router};

use super::auth::Access::{self, Need, NeedUnlimited, Open};
use super::auth::{self, KeyRegistry, Principal, Scope};
use super::error::{ApiError, StoreFault};
use super::event::{self, Event, Limits};
use super::json;
use super::live::LiveHub;
use super::metrics::{Gauges, Metrics};
use super::ops::WriteOps;
use super::pipeline::flusher::Pipeline;
use super::route::{Route, Verb};
use super::store::{PageQuery, ReadPool, read_page};
use super::time_fmt::{EventTime, format_rfc3339};
use super::writer::{Ingest, WriterShared, now_ns};
use super::{body, keys, kv, live, openapi, query};

/// Every route the server answers, with the access it needs: the one list the router, the
/// API-key check, `/openapi.json` and the tests are built from.
pub(crate) const ROUTES: &[Route<AppState>] = &[
    row(Verb::Post, "/events", Need(Scope::Write), |m| {
        on(m, post_events)
    }),
    row(Verb::Post, "/batch", Need(Scope::Write), |m| {
        on(m, post_batch)
    }),
    row(Verb::Get, "/health", Open, |m| on(m, health)),
    row(Verb::Get, "/view", Need(Scope::Read), |m| on(m, view)),
    row(Verb::Get, "/ready", Open, |m| on(m, ready)),
    row(Verb::Get, "/v1/values", Need(Scope::Read), |m| {
        on(m, values)
    }),
    row(Verb::Get, "/metrics", NeedUnlimited(Scope::Read), |m| {
        on(m, metrics)
    }),
    row(Verb::Get, "/openapi.json", Open, |m| {
        on(m, openapi_document)
    }),
    row(Verb::Get, "/v1/events", Need(Scope::Read), |m| {
        on(m, query::range)
    }),
    row(Verb::Delete, "/v1/events", Need(Scope::Delete), |m| {
        on(m, query::delete_many)
    }),
    row(Verb::Delete, "/v1/events/{id}", Need(Scope::Delete), |m| {
        on(m, query::delete_one)
    }),
    row(Verb::Get, "/v1/latest", Need(Scope::Read), |m| {
        on(m, query::latest)
    }),
    row(Verb::Get, "/v1/kv/{ns}", Need(Scope::Read), |m| {
        on(m, kv::list)
    }),
    row(Verb::Get, "/v1/kv/{ns}/{*key}", Need(Scope::Read), |m| {
        on(m, kv::get)
    }),
    row(Verb::Put, "/v1/kv/{ns}/{*key}", Need(Scope::Write), |m| {
        on(m, kv::put)
    }),
    row(
        Verb::Delete,
        "/v1/kv/{ns}/{*key}",
        Need(Scope::Delete),
        |m| on(m, kv::delete),
    ),
    row(Verb::Get, "/v1/live", Need(Scope::Read), |m| {
        on(m, live::ws)
    }),
    row(Verb::Get, "/v1/live/sse", Need(Scope::Read), |m| {
        on(m, live::sse)
    }),
    row(Verb::Post, "/v1/keys", Need(Scope::Admin), |m| {
        on(m, keys::create)
    }),
    row(Verb::Get, "/v1/keys", Need(Scope::Admin), |m| {
        on(m, keys::list)
    }),
    row(Verb::Delete, "/v1/keys/{id}", Need(Scope::Admin), |m| {
        on(m, keys::revoke)
    }),
];

const fn row(
    verb: Verb,
    path: &'static str,
    access: Access,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
) -> Route<AppState> {
    Route {
        verb,
        path,
        access,
        handler,
    }
}

/// `/view` defaults and bounds (Tlytics: page 1, size 10; sizes above 1000 are clamped).
const DEFAULT_PAGE_SIZE: i64 = 10;
const MAX_PAGE_SIZE: i64 = 1000;
/// Bodies above this are parsed on the blocking pool, to keep the async workers responsive.
const PARSE_INLINE_MAX: usize = 256 * 1024;

/// What every handler can reach. Cheap to clone; later features (auth, live feeds) add their
/// state to [`AppInner`].
#[derive(Clone, Debug)]
pub(crate) struct AppState(pub(crate) Arc<AppInner>);

#[derive(Debug)]
pub(crate) struct AppInner {
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) writer: Arc<WriterShared>,
    pub(crate) readers: Arc<ReadPool>,
    pub(crate) metrics: Arc<Metrics>,
    /// The metrics pipeline, when it is on.
    pub(crate) pipeline: Option<Arc<Pipeline>>,
    pub(crate) limits: Limits,
    pub(crate) max_body: usize,
    /// The port actually bound, reported by `/health`.
    pub(crate) port: u16,
    /// API keys.
    pub(crate) auth: Arc<KeyRegistry>,
    /// Live-feed subscriptions.
    pub(crate) live: Arc<LiveHub>,
    /// Store writes other than inserts, run by the writer.
    pub(crate) ops: WriteOps,
}

impl Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// The router: every row of [`ROUTES`], each behind the API-key check of its own access, then
/// the 404 fallbacks and request counting.
pub(crate) fn router(state: AppState) -> Router {
    OPENAPI.get_or_init(|| openapi::document(ROUTES).into_bytes());
    let mut paths: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for r in ROUTES {
        let guard = auth::Guard::new(Arc::clone(&state.auth), r.access);
        let endpoint = (r.handler)(r.verb.filter())
            .route_layer(middleware::from_fn_with_state(guard, auth::authorize));
        match paths.iter_mut().find(|(p, _)| *p == r.path) {
            // `merge` panics on a method routed twice: a duplicate row fails every test.
            Some((_, methods)) => *methods = std::mem::take(methods).merge(endpoint),
            None => paths.push((r.path, endpoint)),
        }
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .method_not_allowed_fallback(not_found)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        // Failures are logged by the handlers with their cause, and every answer is counted by
        // status in `/metrics`; logging each 5xx here would flood the log exactly when the
        // server is overloaded (every 503).
        .layer(
            tower_http::trace::TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ),
        )
        .with_state(state)
}

/// Gin's answer for an unknown route or method.
async fn not_found() -> Response {
    let mut res = (StatusCode::NOT_FOUND, "404 page not found").into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

async fn count_requests(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    st.metrics.count_request(&route, res.status().as_u16());
    res
}

#[derive(Clone, Copy)]
enum Shape {
    /// `POST /events`: a JSON array.
    Array,
    /// `POST /batch`: `{"events": [...]}`.
    Envelope,
}

async fn post_events(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(st, &by, headers, body, Shape::Array).await
}

async fn post_batch(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(st, &by, headers, body, Shape::Envelope).await
}

/// Reads the body (never more than the limit), decodes and validates every event, then hands
/// them to the writer as one job. The Content-Type is not looked at, as in Tlytics.
async fn ingest(
    st: AppState,
    by: &Principal,
    headers: HeaderMap,
    body: Body,
    shape: Shape,
) -> Response {
    match ingest_inner(&st, by, &headers, body, shape).await {
        Ok((count, duplicates)) => {
            st.metrics
                .events_accepted
                .fetch_add(count as u64, Ordering::Relaxed);
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(b"{\"count\":");
            out.extend_from_slice(count.to_string().as_bytes());
            if duplicates > 0 {
                out.extend_from_slice(b",\"duplicates\":");
                out.extend_from_slice(duplicates.to_string().as_bytes());
            }
            out.extend_from_slice(b",\"message\":\"Successfully queued ");
            out.extend_from_slice(count.to_string().as_bytes());
            out.extend_from_slice(b" events\"}");
            json::response(StatusCode::OK, out)
        }
        Err(e) => {
            st.metrics.count_rejected(e.error);
            e.into_response()
        }
    }
}

async fn ingest_inner(
    st: &AppState,
    by: &Principal,
    headers: &HeaderMap,
    body: Body,
    shape: Shape,
) -> Result<(usize, usize), ApiError> {
    let body = body::read(body, headers, st.max_body).await?;
    let now = EventTime {
        unix_ns: now_ns(),
        offset_s: 0,
    };
    let limits = st.limits;
    let decode = move |body: &[u8]| match shape {
        Shape::Array => event::decode_events(body, &limits, now),
        Shape::Envelope => event::decode_batch(body, &limits, now),
    };
    let mut events: Vec<Event> = if body.len() <= PARSE_INLINE_MAX {
        decode(&body)?
    } else {
        tokio::task::spawn_blocking(move || decode(&body))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?
    };
    // A key limited to a namespace writes only there (all or nothing, like every check).
    if by.namespace.is_some() {
        for (i, e) in events.iter().enumerate() {
            by.check_key(&e.key).map_err(|mut err| {
                err.index = Some(i);
                err
            })?;
        }
    }
    if let Some(pipeline) = &st.pipeline {
        pipeline.prepare(&mut events)?;
    }
    let count = events.len();
    let outcome = st.ingest.submit(events).await?;
    Ok((count, outcome.duplicates))
}

async fn health(State(st): State<AppState>) -> Response {
    let body = format!("{{\"port\":{},\"status\":\"healthy\"}}", st.port);
    json::response(StatusCode::OK, body.into_bytes())
}

async fn ready(State(st): State<AppState>) -> Response {
    let fault = st.writer.fault();
    let read = st.readers.ping().await;
    let (status, body) = match (fault, read) {
        (None, Ok(())) => (StatusCode::OK, r#"{"status":"ready"}"#.to_owned()),
        (Some(StoreFault::DiskFull), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"detail":"the event store's disk is full; writes are refused until space is freed","status":"unavailable"}"#
                .to_owned(),
        ),
        (Some(StoreFault::Failing), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"detail":"the last event-store write failed","status":"unavailable"}"#
                .to_owned(),
        ),
        (None, Err(e)) => {
            let mut b = b"{\"detail\":".to_vec();
            json::write_str(&mut b, &format!("the event store does not answer: {e}"));
            b.extend_from_slice(b",\"status\":\"unavailable\"}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                String::from_utf8(b).expect("UTF-8"),
            )
        }
    };
    json::response(status, body.into_bytes())
}

/// Go's `strconv.Atoi`: optional sign, ASCII digits, no spaces, within `i64`.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The lenient `/view` parameters: anything unusable falls back to the default.
pub(crate) fn page_params(pairs: &[(String, String)]) -> (i64, i64, Option<String>) {
    // Gin's `Query` takes the first value of a repeated parameter.
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let page = first("page")
        .and_then(atoi)
        .filter(|&p| p >= 1)
        .unwrap_or(1);
    let size = match first("page_size").and_then(atoi) {
        Some(s) if s >= 1 => s.min(MAX_PAGE_SIZE),
        _ => DEFAULT_PAGE_SIZE,
    };
    let key = first("key").filter(|k| !k.is_empty()).map(str::to_owned);
    (page, size, key)
}

async fn view(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let (page, size, key) = page_params(&pairs);
    // A key limited to a namespace sees only its events: a `key` outside it is refused, no
    // `key` lists the namespace.
    let key_range = match (&key, &by.namespace) {
        (Some(k), Some(_)) => {
            if let Err(e) = by.check_key(k) {
                return e.into_response();
            }
            None
        }
        (None, Some(ns)) => Some(super::query::prefix_range(ns)),
        _ => None,
    };
    let q = PageQuery {
        key,
        key_range,
        limit: size,
        offset: (page - 1).checked_mul(size),
    };
    let read = st
        .readers
        .run(move |conn| {
            let mut events = Vec::with_capacity(128 * size.min(100) as usize);
            let mut first = true;
            let mut buf = Vec::new();
            let total = read_page(conn, &q, |key, time, data| {
                events.push(if first { b'[' } else { b',' });
                first = false;
                events.extend_from_slice(b"{\"key\":");
                json::write_str(&mut events, key);
                events.extend_from_slice(b",\"timestamp\":\"");
                buf.clear();
                format_rfc3339(time, &mut buf);
                events.extend_from_slice(&buf);
                events.extend_from_slice(b"\",\"data\":");
                events.extend_from_slice(data.unwrap_or("null").as_bytes());
                events.push(b'}');
            })?;
            if first {
                events.push(b'[');
            }
            events.push(b']');
            Ok((total, events))
        })
        .await;
    match read {
        Ok((total, events)) => {
            let total_pages = (total + size - 1) / size;
            let mut out = Vec::with_capacity(events.len() + 96);
            out.extend_from_slice(b"{\"events\":");
            out.extend_from_slice(&events);
            out.extend_from_slice(
                format!(
                    ",\"page\":{page},\"page_size\":{size},\"total\":{total},\"total_pages\":{total_pages}}}"
                )
                .as_bytes(),
            );
            json::response(StatusCode::OK, out)
        }
        Err(e) => {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "reading events for /view failed"
            );
            ApiError::read_failed().into_response()
        }
    }
}

/// `/v1/values`, after checking its `key` against the caller's namespace.
async fn values(
    state: State<AppState>,
    Extension(by): Extension<Principal>,
    query: Query<Vec<(String, String)>>,
) -> Response {
    if let Some((_, key)) = query.0.iter().find(|(k, _)| k == "key")
        && let Err(e) = by.check_key(key)
    {
        return e.into_response();
    }
    super::values::values(state, query).await
}

async fn metrics(State(st): State<AppState>) -> Response {
    let (cap_events, cap_bytes) = st.ingest.capacity();
    let gauges = Gauges {
        queue_events: st.ingest.queued_events() as u64,
        queue_capacity_events: cap_events as u64,
        queue_bytes: st.ingest.queued_bytes() as u64,
        queue_capacity_bytes: cap_bytes as u64,
        stored_events: st.writer.stored.load(Ordering::Acquire),
        store_healthy: st.writer.healthy(),
        metrics_watermark: st.writer.watermark.load(Ordering::Acquire),
        aggregator: st.pipeline.as_ref().map(|p| p.counters()),
    };
    let mut text = st.metrics.render(&gauges);
    st.auth.render_metrics(&mut text);
    st.live.render_metrics(&mut text);
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// `/openapi.json`, written once from [`ROUTES`] by [`router`].
static OPENAPI: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

async fn openapi_document() -> Response {
    let doc = OPENAPI.get().map_or(&[][..], Vec::as_slice);
    let mut res = Response::new(Body::from(bytes::Bytes::from_static(doc)));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> (i64, i64, Option<String>) {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        page_params(&pairs)
    }

    #[test]
    fn view_parameters_are_lenient_like_tlytics() {
        assert_eq!(params(&[]), (1, 10, None));
        for bad in ["0", "-3", "abc", "", " 2", "2.5", "99999999999999999999"] {
            assert_eq!(
                params(&[("page", bad), ("page_size", bad)]),
                (1, 10, None),
                "{bad:?}"
            );
        }
        assert_eq!(
            params(&[("page", "+2"), ("page_size", "007")]),
            (2, 7, None)
        );
        assert_eq!(params(&[("page_size", "1000")]).1, 1000);
        assert_eq!(params(&[("page_size", "1001")]).1, 1000);
        assert_eq!(params(&[("page", "3"), ("page", "4")]).0, 3);
        assert_eq!(params(&[("key", "a")]).2.as_deref(), Some("a"));
        assert_eq!(params(&[("key", "")]).2, None);
    }
}
