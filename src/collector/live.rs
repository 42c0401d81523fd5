//! Live feeds: new events (once **committed**) and aggregated metric flushes (once the metrics
//! store took them), pushed over WebSocket (`GET /v1/live`) or server-sent events
//! (`GET /v1/live/sse`), filtered by key prefix.
//!
//! ```text
//!  writer thread ── commit ──► LiveFeed (CommitObserver) ──┐
//!  metrics pipeline ── flush stored ──► publish_flush ─────┤ per matching subscription:
//!                                                          ▼ Outbox::offer (never blocks)
//!                        connection ◄── bounded outbox (messages and bytes) ◄──┘
//!                        task        full? count the miss; the next message that fits is
//!                                    preceded by {"type":"lagged","missed":N}
//! ```
//!
//! **Bounded, never silent.** Every connection has one outbox bounded in messages and bytes.
//! Publishing never waits for a subscriber: when the outbox is full the message is counted as
//! missed, and the subscriber gets `{"type":"lagged","missed":N}` exactly where the gap is — so
//! a slow consumer costs the server a fixed amount of memory and knows what it lost. Sends wait
//! for the socket (TCP backpressure), so nothing else queues up behind a slow reader.
//!
//! **Resuming.** A subscription to `events` may give `after` (WebSocket) or `Last-Event-ID`
//! (SSE): the committed events after that id are first read from the event store, then the feed
//! turns live without a gap or a duplicate (ids are assigned in commit order, and a live event
//! already read from the store is skipped).
//!
//! **WebSocket protocol** (text frames of JSON; every request carries an `id`, string or
//! number, echoed in its reply; a bad request gets an `error` reply and the connection stays
//! open):
//!
//! | request | reply |
//! |---|---|
//! | `{"id":1,"type":"subscribe","stream":"events"\|"flushes","prefix":"app/","after":41}` | `{"id":1,"type":"subscribed","subscription":"s7",...}` |
//! | `{"id":2,"type":"unsubscribe","subscription":"s7"}` | `{"id":2,"type":"unsubscribed","subscription":"s7"}` |
//! | `{"id":3,"type":"ping"}` | `{"id":3,"type":"pong"}` |
//! | anything else | `{"id":..,"type":"error","error":"Invalid request","detail":".."}` |
//!
//! Pushed: `{"type":"ready"}` on connect; `{"type":"event","subscription":"s7","event":{"id":42,
//! "key":..,"timestamp":..,"data":..}}`; `{"type":"flush","subscription":..,"flush":{"watermark":
//! N,"samples":[{"key":..,"at":..,"values":{"count":..,"data":{..}}}]}}`; `{"type":"lagged",
//! "missed":N}`. Revoking the key sends an `error` and closes with code 1008; a server shutdown
//! closes with 1001.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use serde_json::Value as Json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::auth::Principal;
use super::error::ApiError;
use super::event::Event;
use super::query::{Params, bad_query, prefix_range, write_event};
use super::routes::AppState;
use super::store::ReadPool;
use super::time_fmt::EventTime;
use super::writer::CommitObserver;

/// Default outbox bound of one connection, in messages.
pub(crate) const DEFAULT_BUFFER_MESSAGES: usize = 1024;
/// Default outbox bound of one connection, in bytes (shared event bodies counted per outbox).
pub(crate) const DEFAULT_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// The smallest byte bound: one event of the largest allowed size must fit.
pub(crate) const MIN_BUFFER_BYTES: usize = 128 * 1024;
/// Default cap on open live connections.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Subscriptions one WebSocket may hold.
const MAX_SUBSCRIPTIONS: usize = 16;
/// Events read from the store per resume query (at most 256 × 64 KiB of `data` in memory).
const REPLAY_CHUNK: usize = 256;
/// Largest request frame a WebSocket accepts (a larger one closes it with 1009: a protocol
/// limit, not a request the server can answer).
const MAX_REQUEST_FRAME: usize = 64 * 1024;

/// Bounds of the live feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveConfig {
    pub(crate) buffer_messages: usize,
    pub(crate) buffer_bytes: usize,
    pub(crate) max_connections: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            buffer_messages: DEFAULT_BUFFER_MESSAGES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What a subscription follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Events,
    Flushes,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Flushes => "flushes",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "events" => Some(Self::Events),
            "flushes" => Some(Self::Flushes),
            _ => None,
        }
    }
}

/// A message waiting in an outbox.
#[derive(Debug)]
enum Item {
    /// A committed event; `body` is shared by every subscriber.
    Event {
        sub: Arc<str>,
        id: i64,
        body: Arc<[u8]>,
    },
    Flush {
        sub: Arc<str>,
        body: Arc<[u8]>,
    },
    Lagged(u64),
}

impl Item {
    fn bytes(&self) -> usize {
        match self {
            Self::Event { body, .. } | Self::Flush { body, .. } => body.len() + 64,
            Self::Lagged(_) => 64,
        }
    }
}

#[derive(Debug, Default)]
struct OutboxState {
    items: VecDeque<Item>,
    bytes: usize,
    /// Messages missed since the last one that fit.
    gap: u64,
    closed: bool,
}

/// One connection's bounded queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
    hub: Arc<HubStats>,
    max_messages: usize,
    max_bytes: usize,
}

impl Outbox {
    /// Queues `item`, or counts it missed when the outbox is full. Never blocks on the reader.
    fn offer(&self, item: Item) {
        let size = item.bytes();
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        let room = |s: &OutboxState, n: usize, bytes: usize| {
            s.items.len() + n <= self.max_messages && s.bytes + bytes <= self.max_bytes
        };
        if s.gap > 0 {
            // The notice goes where the gap is: before the first message that fits again.
            if room(&s, 2, size + 64) {
                let gap = std::mem::take(&mut s.gap);
                s.items.push_back(Item::Lagged(gap));
                s.bytes += 64;
                s.items.push_back(item);
                s.bytes += size;
                self.hub.queued(size + 64);
            } else {
                s.gap += 1;
                self.hub.missed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        } else if room(&s, 1, size) {
            s.items.push_back(item);
            s.bytes += size;
            self.hub.queued(size);
        } else {
            s.gap = 1;
            self.hub.missed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(s);
        self.ready.notify_one();
    }

    /// The next message: queued ones first, then a pending gap notice.
    fn pop(&self) -> Option<Item> {
        let mut s = self.state.lock();
        if let Some(item) = s.items.pop_front() {
            let size = item.bytes();
            s.bytes -= size;
            self.hub.dequeued(size);
            return Some(item);
        }
        (s.gap > 0).then(|| Item::Lagged(std::mem::take(&mut s.gap)))
    }

    /// Waits for the next message.
    async fn next(&self) -> Item {
        loop {
            if let Some(item) = self.pop() {
                return item;
            }
            self.ready.notified().await;
        }
    }

    fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        self.hub.dequeued(s.bytes);
        s.bytes = 0;
        s.items.clear();
    }
}

/// One subscription, registered in the hub.
#[derive(Debug)]
struct Subscription {
    label: Arc<str>,
    stream: Stream,
    prefix: Box<str>,
    outbox: Arc<Outbox>,
}

/// Counters shared by the hub and the outboxes.
#[derive(Debug, Default)]
pub(crate) struct HubStats {
    queued_bytes: AtomicUsize,
    queued_bytes_max: AtomicUsize,
    missed: AtomicU64,
    delivered: AtomicU64,
    connections: AtomicUsize,
}

impl HubStats {
    fn queued(&self, n: usize) {
        let now = self.queued_bytes.fetch_add(n, Ordering::AcqRel) + n;
        self.queued_bytes_max.fetch_max(now, Ordering::AcqRel);
    }

    fn dequeued(&self, n: usize) {
        self.queued_bytes.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The subscriptions of a server.
pub(crate) struct LiveHub {
    subs: RwLock<Vec<Arc<Subscription>>>,
    event_subs: AtomicUsize,
    flush_subs: AtomicUsize,
    next_label: AtomicU64,
    stats: Arc<HubStats>,
    cfg: LiveConfig,
    /// Cancelled when the server shuts down: every live connection closes.
    shutdown: CancellationToken,
}

impl fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveHub")
            .field("subscriptions", &self.subs.read().len())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl LiveHub {
    pub(crate) fn new(cfg: LiveConfig) -> Arc<Self> {
        Arc::new(Self {
            subs: RwLock::new(Vec::new()),
            event_subs: AtomicUsize::new(0),
            flush_subs: AtomicUsize::new(0),
            next_label: AtomicU64::new(1),
            stats: Arc::new(HubStats::default()),
            cfg,
            shutdown: CancellationToken::new(),
        })
    }

    /// The writer's hook.
    pub(crate) fn observer(self: &Arc<Self>) -> Box<dyn CommitObserver> {
        Box::new(LiveFeed(Arc::clone(self)))
    }

    /// Closes every live connection (server shutdown).
    pub(crate) fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub(crate) fn wants_flushes(&self) -> bool {
        self.flush_subs.load(Ordering::Acquire) > 0
    }

    fn outbox(&self) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(OutboxState::default()),
            ready: Notify::new(),
            hub: Arc::clone(&self.stats),
            max_messages: self.cfg.buffer_messages,
            max_bytes: self.cfg.buffer_bytes,
        })
    }

    fn subscribe(&self, outbox: &Arc<Outbox>, stream: Stream, prefix: &str) -> Arc<str> {
        let label: Arc<str> =
            format!("s{}", self.next_label.fetch_add(1, Ordering::Relaxed)).into();
        let sub = Arc::new(Subscription {
            label: label.clone(),
            stream,
            prefix: prefix.into(),
            outbox: Arc::clone(outbox),
        });
        self.subs.write().push(sub);
        match stream {
            Stream::Events => &self.event_subs,
            Stream::Flushes => &self.flush_subs,
        }
        .fetch_add(1, Ordering::AcqRel);
        label
    }

    fn unsubscribe(&self, label: &str) -> bool {
        let mut subs = self.subs.write();
        let Some(i) = subs.iter().position(|s| &*s.label == label) else {
            return false;
        };
        let sub = subs.swap_remove(i);
        match sub.stream {
            Stream::Events => &self.event_subs,
            Stream::Flushes => &self.flush_subs,
        }
        .fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Publishes one metrics flush that the metrics store took: `samples` are `(key, bucket
    /// start in ns, values)`.
    pub(crate) fn publish_flush(
        &self,
        watermark: i64,
        samples: &[(Box<str>, jiff::Timestamp, crate::metrics::Values)],
    ) {
        if !self.wants_flushes() {
            return;
        }
        let subs = self.subs.read();
        for s in subs.iter().filter(|s| s.stream == Stream::Flushes) {
            let mut body = b"{\"samples\":[".to_vec();
            let mut any = false;
            for (key, at, values) in samples.iter().filter(|(k, ..)| k.starts_with(&*s.prefix)) {
                if any {
                    body.push(b',');
                }
                any = true;
                // Bucket starts are whole seconds: RFC 3339 in UTC without a fraction.
                body.extend_from_slice(format!("{{\"at\":\"{at}\",\"key\":").as_bytes());
                super::json::write_str(&mut body, key);
                body.extend_from_slice(b",\"values\":");
                let json = crate::metrics::Value::Map(values.clone()).to_json();
                serde_json::to_writer(&mut body, &json).expect("writing to a Vec cannot fail");
                body.push(b'}');
            }
            if !any {
                continue;
            }
            body.extend_from_slice(format!("],\"watermark\":{watermark}}}").as_bytes());
            s.outbox.offer(Item::Flush {
                sub: s.label.clone(),
                body: body.into(),
            });
        }
    }

    /// `/metrics` lines.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let st = &self.stats;
        let subs = self.subs.read().len();
        for (name, kind, help, v) in [
            (
                "accrue_live_connections",
                "gauge",
                "Open live connections (WebSocket and SSE).",
                st.connections.load(Ordering::Relaxed) as u64,
            ),
            (
                "accrue_live_subscriptions",
                "gauge",
                "Live subscriptions.",
                subs as u64,
            ),
            (
                "accrue_live_queued_bytes",
                "gauge",
                "Bytes waiting in live outboxes.",
                st.queued_bytes.load(Ordering::Relaxed) as u64,
            ),
            (
                "accrue_live_queued_bytes_max",
                "gauge",
                "Most bytes ever waiting in live outboxes at once.",
                st.queued_bytes_max.load(Ordering::Relaxed) as u64,
            ),
            (
                "accrue_live_delivered_total",
                "counter",
                "Live messages sent.",
                st.delivered.load(Ordering::Relaxed),
            ),
            (
                "accrue_live_missed_total",
                "counter",
                "Live messages a slow subscriber missed (each reported in a lagged notice).",
                st.missed.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
}

/// The writer's hook: offers every committed event to the matching subscriptions.
struct LiveFeed(Arc<LiveHub>);

impl CommitObserver for LiveFeed {
    fn committed(&mut self, events: &mut [(i64, &mut Event)]) {
        let hub = &self.0;
        if hub.event_subs.load(Ordering::Acquire) == 0 {
            return;
        }
        let subs = hub.subs.read();
        for (id, e) in events.iter() {
            let mut body: Option<Arc<[u8]>> = None;
            for s in subs
                .iter()
                .filter(|s| s.stream == Stream::Events && e.key.starts_with(&*s.prefix))
            {
                let body = body.get_or_insert_with(|| {
                    let mut b = Vec::with_capacity(96 + e.key.len());
                    write_event(
                        &mut b,
                        *id,
                        &e.key,
                        e.time,
                        e.data.as_deref(),
                        e.id.as_deref(),
                    );
                    b.into()
                });
                s.outbox.offer(Item::Event {
                    sub: s.label.clone(),
                    id: *id,
                    body: Arc::clone(body),
                });
            }
        }
    }
}

/// A connection's registration; unregisters everything when dropped.
struct Session {
    hub: Arc<LiveHub>,
    outbox: Arc<Outbox>,
    /// Subscription label → highest event id sent (resumed feeds skip what they already sent).
    subs: HashMap<Arc<str>, i64>,
    principal: Principal,
}

impl Session {
    /// Registers a connection, or `503` when the server has too many.
    fn open(hub: &Arc<LiveHub>, principal: Principal) -> Result<Self, ApiError> {
        let n = hub.stats.connections.fetch_add(1, Ordering::AcqRel);
        if n >= hub.cfg.max_connections {
            hub.stats.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::busy(5, "too many live connections"));
        }
        Ok(Self {
            hub: Arc::clone(hub),
            outbox: hub.outbox(),
            subs: HashMap::new(),
            principal,
        })
    }

    fn subscribe(&mut self, stream: Stream, prefix: &str) -> Result<(Arc<str>, String), String> {
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
            ));
        }
        let prefix = self
            .principal
            .narrow(prefix)
            .map_err(|e| e.detail.unwrap_or_default())?;
        let label = self.hub.subscribe(&self.outbox, stream, &prefix);
        self.subs.insert(label.clone(), i64::MIN);
        Ok((label, prefix))
    }

    fn unsubscribe(&mut self, label: &str) -> bool {
        self.subs.remove(label).is_some() && self.hub.unsubscribe(label)
    }

    /// Whether an item is still wanted (a resumed feed drops live events it already sent).
    fn wanted(&mut self, item: &Item) -> bool {
        match item {
            Item::Event { sub, id, .. } => match self.subs.get_mut(sub) {
                Some(last) if *id > *last => {
                    *last = *id;
                    true
                }
                _ => false,
            },
            Item::Flush { sub, .. } => self.subs.contains_key(sub),
            Item::Lagged(_) => true,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for label in self.subs.keys() {
            self.hub.unsubscribe(label);
        }
        self.outbox.close();
        self.hub.stats.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

fn ws_frame(item: &Item) -> String {
    let mut out = Vec::with_capacity(item.bytes() + 32);
    match item {
        Item::Event { sub, body, .. } => {
            out.extend_from_slice(b"{\"type\":\"event\",\"subscription\":");
            super::json::write_str(&mut out, sub);
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(body);
            out.push(b'}');
        }
        Item::Flush { sub, body } => {
            out.extend_from_slice(b"{\"type\":\"flush\",\"subscription\":");
            super::json::write_str(&mut out, sub);
            out.extend_from_slice(b",\"flush\":");
            out.extend_from_slice(body);
            out.push(b'}');
        }
        Item::Lagged(n) => {
            out.extend_from_slice(format!("{{\"type\":\"lagged\",\"missed\":{n}}}").as_bytes());
        }
    }
    String::from_utf8(out).expect("the frames are built from UTF-8")
}

/// Reads committed events after `after` in `[lo, hi)` from the store, `REPLAY_CHUNK` at a time.
async fn replay_chunk(
    readers: &Arc<ReadPool>,
    prefix: &str,
    after: i64,
) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    let (lo, hi) = prefix_range(prefix);
    readers
        .run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, key, ts_ns, ts_offset_s, data, event_id FROM events
                 WHERE id > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                 ORDER BY id LIMIT ?4",
            )?;
            let rows =
                stmt.query_map(rusqlite::params![after, lo, hi, REPLAY_CHUNK as i64], |r| {
                    let id: i64 = r.get(0)?;
                    let mut b = Vec::with_capacity(128);
                    let key = r.get_ref(1)?.as_str()?;
                    let time = EventTime {
                        unix_ns: r.get(2)?,
                        offset_s: r.get(3)?,
                    };
                    let data = r.get_ref(4)?.as_str_or_null()?;
                    let eid = r.get_ref(5)?.as_str_or_null()?;
                    write_event(&mut b, id, key, time, data, eid);
                    Ok((id, b))
                })?;
            rows.collect()
        })
        .await
}

/// Why a connection ends.
enum End {
    Revoked,
    Shutdown,
    /// The peer closed or the socket failed.
    Gone,
}

/// `GET /v1/live`: the WebSocket upgrade.
pub(crate) async fn ws(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let session = match Session::open(&st.live, by) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let revoked = st.auth.revocation(&session.principal.who);
    upgrade
        .max_message_size(MAX_REQUEST_FRAME)
        .max_frame_size(MAX_REQUEST_FRAME)
        .write_buffer_size(0)
        .max_write_buffer_size(st.live.cfg.buffer_bytes + MAX_REQUEST_FRAME)
        .on_upgrade(move |socket| run_ws(socket, st, session, revoked))
}

/// A request frame.
struct Request {
    id: Json,
    kind: String,
    body: serde_json::Map<String, Json>,
}

fn parse_request(text: &str) -> Result<Request, (Json, String)> {
    let v: Json = serde_json::from_str(text)
        .map_err(|e| (Json::Null, format!("a request is one JSON object: {e}")))?;
    let Json::Object(mut body) = v else {
        return Err((Json::Null, "a request is one JSON object".into()));
    };
    let id = match body.remove("id") {
        Some(id @ (Json::String(_) | Json::Number(_))) => id,
        _ => {
            return Err((
                Json::Null,
                "every request needs an \"id\" (a string or a number)".into(),
            ));
        }
    };
    let kind = match body.remove("type") {
        Some(Json::String(t)) => t,
        _ => return Err((id, "every request needs a \"type\"".into())),
    };
    Ok(Request { id, kind, body })
}

fn reply(id: &Json, fields: Json) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), id.clone());
    if let Json::Object(f) = fields {
        obj.extend(f);
    }
    Json::Object(obj).to_string()
}

fn error_reply(id: &Json, detail: &str) -> String {
    reply(
        id,
        serde_json::json!({"type": "error", "error": "Invalid request", "detail": detail}),
    )
}

/// Sends one frame unless the connection must end first.
async fn send(
    socket: &mut WebSocket,
    text: String,
    revoked: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), End> {
    tokio::select! {
        biased;
        () = revoked.cancelled() => Err(End::Revoked),
        () = shutdown.cancelled() => Err(End::Shutdown),
        r = socket.send(Message::Text(text.into())) => r.map_err(|_| End::Gone),
    }
}

async fn run_ws(
    mut socket: WebSocket,
    st: AppState,
    mut session: Session,
    revoked: CancellationToken,
) {
    let shutdown = st.live.shutdown.clone();
    let end = ws_loop(&mut socket, &st, &mut session, &revoked, &shutdown).await;
    let (code, reason) = match end {
        End::Revoked => {
            let msg = serde_json::json!({"type": "error", "error": "Unauthorized",
                "detail": "the API key of this connection was revoked"})
            .to_string();
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                socket.send(Message::Text(msg.into())),
            )
            .await;
            (close_code::POLICY, "API key revoked")
        }
        End::Shutdown => (close_code::AWAY, "server shutting down"),
        End::Gone => return,
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close)).await;
}

async fn ws_loop(
    socket: &mut WebSocket,
    st: &AppState,
    session: &mut Session,
    revoked: &CancellationToken,
    shutdown: &CancellationToken,
) -> End {
    if let Err(end) = send(socket, r#"{"type":"ready"}"#.into(), revoked, shutdown).await {
        return end;
    }
    let outbox = Arc::clone(&session.outbox);
    loop {
        let incoming = tokio::select! {
            biased;
            () = revoked.cancelled() => return End::Revoked,
            () = shutdown.cancelled() => return End::Shutdown,
            frame = socket.recv() => Some(frame),
            item = outbox.next() => {
                if session.wanted(&item) {
                    if let Err(end) = send(socket, ws_frame(&item), revoked, shutdown).await {
                        return end;
                    }
                    st.live.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        };
        let Some(frame) = incoming else { continue };
        let text = match frame {
            None | Some(Err(_)) => return End::Gone,
            Some(Ok(Message::Close(_))) => return End::Gone,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                let r = error_reply(&Json::Null, "requests are text frames of JSON");
                if let Err(end) = send(socket, r, revoked, shutdown).await {
                    return end;
                }
                continue;
            }
            Some(Ok(Message::Text(t))) => t,
        };
        let (answers, replay) = handle_request(session, text.as_str());
        for a in answers {
            if let Err(end) = send(socket, a, revoked, shutdown).await {
                return end;
            }
        }
        if let Some(mut replay) = replay {
            loop {
                match replay.next(&st.readers, session).await {
                    Ok(Some(item)) => {
                        if let Err(end) = send(socket, ws_frame(&item), revoked, shutdown).await {
                            return end;
                        }
                        st.live.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(
                            error = &e as &dyn std::error::Error,
                            "reading events to resume a live feed failed"
                        );
                        session.unsubscribe(&replay.label);
                        let msg = serde_json::json!({"type": "error",
                            "error": "Failed to retrieve events", "subscription": &*replay.label,
                            "detail": "resuming failed; the subscription was removed, subscribe again"})
                        .to_string();
                        if let Err(end) = send(socket, msg, revoked, shutdown).await {
                            return end;
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Answers one request; a resumed subscription's replay follows its reply.
fn handle_request(session: &mut Session, text: &str) -> (Vec<String>, Option<Replay>) {
    let req = match parse_request(text) {
        Ok(r) => r,
        Err((id, why)) => return (vec![error_reply(&id, &why)], None),
    };
    let str_field = |name: &str| -> Result<Option<&str>, String> {
        match req.body.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    match req.kind.as_str() {
        "ping" => (
            vec![reply(&req.id, serde_json::json!({"type": "pong"}))],
            None,
        ),
        "subscribe" => {
            let parsed = (|| {
                let stream = match str_field("stream")? {
                    None => Stream::Events,
                    Some(s) => Stream::parse(s)
                        .ok_or_else(|| format!("stream {s:?} is not events or flushes"))?,
                };
                let prefix = str_field("prefix")?.unwrap_or("").to_owned();
                let after = match req.body.get("after") {
                    None | Some(Json::Null) => None,
                    Some(v) => Some(v.as_i64().ok_or("after must be an event id (an integer)")?),
                };
                if after.is_some() && stream == Stream::Flushes {
                    return Err("after only applies to the events stream".into());
                }
                for k in req.body.keys() {
                    if !["stream", "prefix", "after"].contains(&k.as_str()) {
                        return Err(format!("unknown field {k:?} in subscribe"));
                    }
                }
                Ok::<_, String>((stream, prefix, after))
            })();
            let (stream, prefix, after) = match parsed {
                Ok(p) => p,
                Err(why) => return (vec![error_reply(&req.id, &why)], None),
            };
            let (label, prefix) = match session.subscribe(stream, &prefix) {
                Ok(l) => l,
                Err(why) => return (vec![error_reply(&req.id, &why)], None),
            };
            let out = vec![reply(
                &req.id,
                serde_json::json!({"type": "subscribed", "subscription": &*label,
                    "stream": stream.as_str(), "prefix": prefix}),
            )];
            (out, after.map(|a| Replay::new(label, prefix, a)))
        }
        "unsubscribe" => {
            let out = match str_field("subscription") {
                Ok(Some(label)) if session.unsubscribe(label) => reply(
                    &req.id,
                    serde_json::json!({"type": "unsubscribed", "subscription": label}),
                ),
                Ok(Some(label)) => error_reply(
                    &req.id,
                    &format!("no subscription {label:?} on this connection"),
                ),
                Ok(None) => error_reply(&req.id, "subscription is required"),
                Err(why) => error_reply(&req.id, &why),
            };
            (vec![out], None)
        }
        other => (
            vec![error_reply(
                &req.id,
                &format!("unknown type {other:?}; the types are subscribe, unsubscribe and ping"),
            )],
            None,
        ),
    }
}

/// Resuming a subscription: the committed events after `after`, read from the store one chunk
/// at a time (memory stays bounded whatever the backlog). The subscription is registered
/// before the first read, so nothing committed later is missed; what the store read and the
/// live feed both deliver is sent once ([`Session::wanted`] skips ids up to `last`).
struct Replay {
    label: Arc<str>,
    prefix: String,
    last: i64,
    buf: VecDeque<(i64, Vec<u8>)>,
    exhausted: bool,
}

impl Replay {
    fn new(label: Arc<str>, prefix: String, after: i64) -> Self {
        Self {
            label,
            prefix,
            last: after,
            buf: VecDeque::new(),
            exhausted: false,
        }
    }

    /// The next replayed event, or `None` once the store has nothing newer; then the session
    /// skips live events up to the last one replayed.
    async fn next(
        &mut self,
        readers: &Arc<ReadPool>,
        session: &mut Session,
    ) -> rusqlite::Result<Option<Item>> {
        if self.buf.is_empty() && !self.exhausted {
            let rows = replay_chunk(readers, &self.prefix, self.last).await?;
            self.exhausted = rows.len() < REPLAY_CHUNK;
            if let Some((id, _)) = rows.last() {
                self.last = *id;
            }
            self.buf.extend(rows);
        }
        match self.buf.pop_front() {
            Some((id, body)) => Ok(Some(Item::Event {
                sub: self.label.clone(),
                id,
                body: body.into(),
            })),
            None => {
                if let Some(sent) = session.subs.get_mut(&self.label) {
                    *sent = (*sent).max(self.last);
                }
                Ok(None)
            }
        }
    }
}

/// `GET /v1/live/sse?stream=&prefix=&after=`: one subscription as server-sent events
/// (`event: event|flush|lagged|error`, `id:` the event id, for `Last-Event-ID` on reconnect).
pub(crate) async fn sse(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let parsed = (|| {
        let p = Params::new(&pairs, &["stream", "prefix", "after"], &[])?;
        let stream = match p.get("stream") {
            None => Stream::Events,
            Some(s) => Stream::parse(s)
                .ok_or_else(|| bad_query(format!("stream {s:?} is not events or flushes")))?,
        };
        let header_after = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        let after = match p.get("after").or(header_after) {
            None => None,
            Some(a) => Some(
                a.parse::<i64>()
                    .map_err(|_| bad_query("after / Last-Event-ID is an event id"))?,
            ),
        };
        if after.is_some() && stream == Stream::Flushes {
            return Err(bad_query("after only applies to the events stream"));
        }
        Ok((stream, p.get("prefix").unwrap_or("").to_owned(), after))
    })();
    let (stream, prefix, after) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut session = match Session::open(&st.live, by) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (label, prefix) = match session.subscribe(stream, &prefix) {
        Ok(l) => l,
        Err(why) => return super::auth::forbidden(why).into_response(),
    };
    let replay = after.map(|a| Replay::new(label, prefix, a));
    let revoked = st.auth.revocation(&session.principal.who);
    let shutdown = st.live.shutdown.clone();
    let state = SseState {
        st,
        session,
        replay,
        revoked,
        shutdown,
        done: false,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        let ev = s.next().await?;
        Some((Ok::<_, Infallible>(ev), s))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct SseState {
    st: AppState,
    session: Session,
    replay: Option<Replay>,
    revoked: CancellationToken,
    shutdown: CancellationToken,
    done: bool,
}

impl SseState {
    fn revoked_event(&mut self) -> SseEvent {
        self.done = true;
        SseEvent::default().event("error").data(
            r#"{"error":"Unauthorized","detail":"the API key of this connection was revoked"}"#,
        )
    }

    async fn next(&mut self) -> Option<SseEvent> {
        if self.done {
            return None;
        }
        if let Some(replay) = &mut self.replay {
            let next = tokio::select! {
                biased;
                () = self.revoked.cancelled() => return Some(self.revoked_event()),
                () = self.shutdown.cancelled() => return None,
                r = replay.next(&self.st.readers, &mut self.session) => r,
            };
            match next {
                Ok(Some(item)) => {
                    self.st.live.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return Some(sse_event(&item));
                }
                Ok(None) => self.replay = None,
                Err(e) => {
                    tracing::error!(
                        error = &e as &dyn std::error::Error,
                        "reading events to resume a live feed failed"
                    );
                    self.done = true;
                    return Some(SseEvent::default().event("error").data(
                        r#"{"error":"Failed to retrieve events","detail":"resuming failed; reconnect"}"#,
                    ));
                }
            }
        }
        let outbox = Arc::clone(&self.session.outbox);
        loop {
            let item = tokio::select! {
                biased;
                () = self.revoked.cancelled() => return Some(self.revoked_event()),
                () = self.shutdown.cancelled() => return None,
                item = outbox.next() => item,
            };
            if self.session.wanted(&item) {
                self.st.live.stats.delivered.fetch_add(1, Ordering::Relaxed);
                return Some(sse_event(&item));
            }
        }
    }
}

fn sse_event(item: &Item) -> SseEvent {
    match item {
        Item::Event { id, body, .. } => SseEvent::default()
            .event("event")
            .id(id.to_string())
            .data(String::from_utf8_lossy(body)),
        Item::Flush { body, .. } => SseEvent::default()
            .event("flush")
            .data(String::from_utf8_lossy(body)),
        Item::Lagged(n) => SseEvent::default()
            .event("lagged")
            .data(format!("{{\"missed\":{n}}}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(messages: usize, bytes: usize) -> (Arc<HubStats>, Outbox) {
        let hub = Arc::new(HubStats::default());
        let o = Outbox {
            state: Mutex::new(OutboxState::default()),
            ready: Notify::new(),
            hub: Arc::clone(&hub),
            max_messages: messages,
            max_bytes: bytes,
        };
        (hub, o)
    }

    fn ev(id: i64) -> Item {
        Item::Event {
            sub: "s".into(),
            id,
            body: Arc::from(&b"{}"[..]),
        }
    }

    fn drain(o: &Outbox) -> Vec<String> {
        std::iter::from_fn(|| o.pop())
            .map(|i| match i {
                Item::Event { id, .. } => format!("e{id}"),
                Item::Lagged(n) => format!("lag{n}"),
                Item::Flush { .. } => "f".into(),
            })
            .collect()
    }

    #[test]
    fn a_full_outbox_counts_misses_and_reports_them_where_the_gap_is() {
        let (hub, o) = outbox(3, 1 << 20);
        for id in 1..=6 {
            o.offer(ev(id));
        }
        assert_eq!(hub.missed.load(Ordering::Relaxed), 3);
        assert_eq!(drain(&o), ["e1", "e2", "e3", "lag3"]);
        // After a partial drain the notice precedes the first event that fits.
        for id in 7..=10 {
            o.offer(ev(id)); // 10 is missed
        }
        assert!(o.pop().is_some()); // e7: one slot free
        o.offer(ev(11)); // the notice and the event need two slots: missed too
        assert!(o.pop().is_some()); // e8
        o.offer(ev(12));
        assert_eq!(drain(&o), ["e9", "lag2", "e12"]);
        assert_eq!(hub.missed.load(Ordering::Relaxed), 5);
        assert_eq!(hub.queued_bytes.load(Ordering::Relaxed), 0);
        assert!(hub.queued_bytes_max.load(Ordering::Relaxed) <= 3 * 66 + 64);
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let (hub, o) = outbox(1000, 200);
        for id in 0..100 {
            o.offer(ev(id));
        }
        assert!(hub.queued_bytes_max.load(Ordering::Relaxed) <= 200);
        let got = drain(&o);
        let delivered = got.iter().filter(|s| s.starts_with('e')).count() as u64;
        let missed: u64 = got
            .iter()
            .filter_map(|s| s.strip_prefix("lag"))
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(delivered + missed, 100);
        o.close();
        o.offer(ev(1));
        assert!(o.pop().is_none());
    }

    #[test]
    fn requests_need_an_id_and_a_type() {
        assert!(parse_request(r#"{"id":"a","type":"ping"}"#).is_ok());
        assert!(parse_request(r#"{"id":7,"type":"ping"}"#).is_ok());
        let (id, why) = parse_request(r#"{"type":"ping"}"#).err().unwrap();
        assert_eq!((id, why.contains("id")), (Json::Null, true));
        let (id, _) = parse_request(r#"{"id":"x"}"#).err().unwrap();
        assert_eq!(id, Json::String("x".into()));
        assert!(parse_request("[1]").is_err());
        assert!(parse_request("nope").is_err());
    }
}
