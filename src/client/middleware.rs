//! Tower middleware: one event per request, sent with the [`Client`].
//!
//! [`AccrueLayer`] wraps any tower service over `http::Request`/`http::Response` (axum routers
//! included). Per request it emits (key `http_request` by default, time = request start):
//!
//! | field | |
//! |---|---|
//! | `method` | `GET`, `POST`, … |
//! | `route` | the route *template* axum matched (`/users/{id}`), `null` when none matched — never the raw path, so the number of distinct values stays bounded |
//! | `status_code` | the response status; `500` when the handler panicked |
//! | `duration_ms`, `duration_us` | time until the response head was ready |
//! | `request_size` | body bytes the handler read (or `Content-Length`, if larger) |
//! | `response_size` | body bytes sent (counted as the body streams) |
//! | `client_ip` | from the configured trusted proxy header only, else the socket's peer (axum's `ConnectInfo`), else absent |
//! | `user_agent` | when present |
//! | `panicked` | `true` when the handler panicked (the panic then continues) |
//!
//! plus the layer's template fields ([`AccrueLayer::with`]) and whatever the handler put in an
//! [`EventFields`] response extension. Every request gets a fresh map: nothing is shared or
//! mutated across requests (Tlytics' `TrackEvent` shared one map between all of them).

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::header::{CONTENT_LENGTH, HeaderName, USER_AGENT};
use bytes::Buf;
use futures_util::FutureExt as _;
use futures_util::future::CatchUnwind;
use http_body::{Body, Frame, SizeHint};
use jiff::Timestamp;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use super::core::Client;
use super::event::Event;

type Request<B> = axum::http::Request<B>;
type Response<B> = axum::http::Response<B>;

/// Extra event fields a handler adds for its request: put it in the response's extensions
/// (in axum, return `(Extension(EventFields(map)), body)` or insert it in a middleware).
///
/// ```
/// use accrue::client::EventFields;
/// use axum::Extension;
/// use serde_json::json;
///
/// async fn handler() -> (Extension<EventFields>, &'static str) {
///     let fields = json!({"user_plan": "pro"}).as_object().unwrap().clone();
///     (Extension(EventFields(fields)), "ok")
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventFields(pub Map<String, Value>);

#[derive(Debug, Clone)]
struct Config {
    client: Client,
    key: Cow<'static, str>,
    template: Map<String, Value>,
    ip_header: Option<HeaderName>,
    user_agent: bool,
}

/// A tower [`Layer`] that emits one event per request through a [`Client`].
///
/// Apply it with axum's `Router::layer` (every route, the fallback included) or `route_layer`
/// / `MethodRouter::layer` (some routes): it must run *inside* the router to see the matched
/// route. [`AccrueLayer::track`] makes the per-route custom events of Tlytics' `TrackEvent`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::get};
/// use accrue::client::{AccrueLayer, Client};
///
/// let client = Client::new("http://127.0.0.1:8081")?;
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .route(
///         "/api/users",
///         get(|| async { "[]" })
///             .layer(AccrueLayer::track(client.clone(), "api_access").with("endpoint", "users")),
///     )
///     // Behind one reverse proxy that appends the peer to X-Forwarded-For:
///     .layer(AccrueLayer::new(client.clone()).client_ip_header("x-forwarded-for"));
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AccrueLayer {
    cfg: Arc<Config>,
}

impl AccrueLayer {
    /// One `http_request` event per request.
    pub fn new(client: Client) -> Self {
        Self::track(client, "http_request")
    }

    /// One event named `key` per request (the Gin `TrackEvent` equivalent); add fixed fields
    /// with [`with`](Self::with).
    pub fn track(client: Client, key: impl Into<Cow<'static, str>>) -> Self {
        Self {
            cfg: Arc::new(Config {
                client,
                key: key.into(),
                template: Map::new(),
                ip_header: None,
                user_agent: true,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.cfg));
        self
    }

    /// A field every event of this layer carries (copied into each request's own map).
    pub fn with(self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        let (field, value) = (field.into(), value.into());
        self.edit(|c| {
            c.template.insert(field, value);
        })
    }

    /// Takes `client_ip` from this header, set by a reverse proxy you trust (e.g.
    /// `x-forwarded-for`, `x-real-ip`): the **rightmost** address of its last occurrence, the
    /// one your proxy added — the entries to its left come from the client and can be forged.
    /// Without it, headers are never trusted and the socket's peer is used.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name.
    pub fn client_ip_header(self, name: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a valid header name");
        self.edit(|c| c.ip_header = Some(name))
    }

    /// Whether to record the `User-Agent` header. Default: [`UserAgent::Recorded`].
    pub fn user_agent(self, agent: UserAgent) -> Self {
        self.edit(|c| c.user_agent = agent == UserAgent::Recorded)
    }
}

impl<S> Layer<S> for AccrueLayer {
    type Service = AccrueService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccrueService {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// The service [`AccrueLayer`] makes. The inner service receives the request with its body
/// wrapped (to count bytes); axum routes and body-generic services accept that.
#[derive(Debug, Clone)]
pub struct AccrueService<S> {
    inner: S,
    cfg: Arc<Config>,
}

/// What is known when the request starts; completed into the event at the end.
#[derive(Debug)]
struct Pending {
    cfg: Arc<Config>,
    at: Timestamp,
    started: Instant,
    method: axum::http::Method,
    route: Option<Arc<str>>,
    client_ip: Option<IpAddr>,
    user_agent: Option<String>,
    declared: Option<u64>,
    read: Arc<AtomicU64>,
    status: u16,
    duration_us: u64,
    extra: Option<Map<String, Value>>,
}

impl Pending {
    fn emit(self, response_size: u64, panicked: bool) {
        let mut data = self.cfg.template.clone();
        data.insert("method".into(), self.method.as_str().into());
        data.insert(
            "route".into(),
            self.route.as_deref().map_or(Value::Null, Value::from),
        );
        data.insert("status_code".into(), self.status.into());
        data.insert("duration_ms".into(), (self.duration_us / 1000).into());
        data.insert("duration_us".into(), self.duration_us.into());
        let read = self.read.load(Relaxed);
        data.insert(
            "request_size".into(),
            read.max(self.declared.unwrap_or(0)).into(),
        );
        data.insert("response_size".into(), response_size.into());
        if let Some(ip) = self.client_ip {
            data.insert("client_ip".into(), ip.to_string().into());
        }
        if let Some(ua) = self.user_agent {
            data.insert("user_agent".into(), ua.into());
        }
        if panicked {
            data.insert("panicked".into(), true.into());
        }
        if let Some(extra) = self.extra {
            data.extend(extra);
        }
        let event = Event::new(self.cfg.key.clone()).at(self.at).with_data(data);
        // Never blocks; a full queue or a closed client is counted by the client.
        let _ = self.cfg.client.emit(event);
    }
}

impl<S, B, ResBody> Service<Request<B>> for AccrueService<S>
where
    S: Service<Request<CountedBody<B>>, Response = Response<ResBody>>,
    B: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let cfg = &self.cfg;
        let headers = req.headers();
        let client_ip = match &cfg.ip_header {
            Some(name) => trusted_ip(headers.get_all(name).iter().next_back()),
            None => req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip()),
        };
        let user_agent = cfg
            .user_agent
            .then(|| headers.get(USER_AGENT))
            .flatten()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let read = Arc::new(AtomicU64::new(0));
        let pending = Pending {
            cfg: cfg.clone(),
            at: Timestamp::now(),
            started: Instant::now(),
            method: req.method().clone(),
            route: req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| Arc::from(p.as_str())),
            client_ip,
            user_agent,
            declared,
            read: read.clone(),
            status: 0,
            duration_us: 0,
            extra: None,
        };
        let req = req.map(|inner| CountedBody {
            inner,
            read: Some(read),
        });
        ResponseFuture {
            inner: AssertUnwindSafe(self.inner.call(req)).catch_unwind(),
            pending: Some(pending),
        }
    }
}

/// The rightmost parsable address of a proxy header value.
fn trusted_ip(value: Option<&axum::http::HeaderValue>) -> Option<IpAddr> {
    let text = value?.to_str().ok()?;
    let last = text.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

pin_project_lite::pin_project! {
    /// The future of [`AccrueService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: CatchUnwind<AssertUnwindSafe<F>>,
        pending: Option<Pending>,
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut pending = this.pending.take().expect("polled after completion");
        pending.duration_us = pending.started.elapsed().as_micros() as u64;
        match result {
            Ok(Ok(mut res)) => {
                pending.status = res.status().as_u16();
                pending.extra = res.extensions_mut().remove::<EventFields>().map(|f| f.0);
                Poll::Ready(Ok(res.map(|inner| ResponseBody {
                    inner,
                    sent: 0,
                    pending: Some(pending),
                })))
            }
            Ok(Err(e)) => {
                // The service failed without a response (axum services cannot); the
                // connection is answered by the server, typically with a 500.
                pending.status = 500;
                pending.emit(0, false);
                Poll::Ready(Err(e))
            }
            Err(panic) => {
                pending.status = 500;
                pending.emit(0, true);
                std::panic::resume_unwind(panic)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body that counts the bytes the handler reads.
    #[derive(Debug)]
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        read: Option<Arc<AtomicU64>>,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(f)), Some(read)) = (&frame, this.read.as_ref())
            && let Some(data) = f.data_ref()
        {
            read.fetch_add(data.remaining() as u64, Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts the bytes sent and emits the request's event when it ends
    /// (or is dropped: a client that disconnects mid-body still gets its request recorded).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        sent: u64,
        pending: Option<Pending>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(p) = this.pending.take() {
                p.emit(*this.sent, false);
            }
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    *this.sent += data.remaining() as u64;
                }
            }
            Some(Err(_)) | None => {
                if let Some(p) = this.pending.take() {
                    p.emit(*this.sent, false);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether [`AccrueLayer`] records the request's `User-Agent` ([`AccrueLayer::user_agent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserAgent {
    /// Recorded as the event's `user_agent` field (the default).
    #[default]
    Recorded,
    /// Not recorded.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_rightmost_proxy_entry_is_trusted() {
        let v = HeaderValue::from_static("6.6.6.6, 10.0.0.1,  203.0.113.9");
        assert_eq!(trusted_ip(Some(&v)), Some("203.0.113.9".parse().unwrap()));
        let v = HeaderValue::from_static("[2001:db8::1]:4711");
        assert_eq!(trusted_ip(Some(&v)), Some("2001:db8::1".parse().unwrap()));
        let v = HeaderValue::from_static("1.2.3.4, garbage");
        assert_eq!(trusted_ip(Some(&v)), None);
        assert_eq!(trusted_ip(None), None);
    }
}
