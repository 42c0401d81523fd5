//! Live feeds from the client: [`Client::subscribe`] follows the collector's server-sent events
//! (`GET /v1/live/sse`) and reconnects on its own.
//!
//! **Reconnecting.** When the connection breaks, or the server closes it (a restart), the
//! subscription waits with the client's exponential backoff and full jitter (never sooner than
//! `Retry-After`) and connects again — for ever, or up to
//! [`Retry::max_attempts`](crate::client::Retry::max_attempts) failed attempts in a row. An
//! events feed resumes after the last event it delivered (`Last-Event-ID`): the server first
//! replays the committed events after it, so nothing is missed or delivered twice across a
//! reconnect. Each reconnect is reported as [`LiveMessage::Reconnected`]; a flushes feed (or an
//! events feed that had not seen an event yet) cannot resume, which that message says.
//!
//! **Never silent.** A reader slower than the feed makes the server skip messages for it; the
//! server then sends [`LiveMessage::Lagged`] with the exact count, where the gap is. A key that
//! is refused or revoked ends the subscription with [`ClientError::Rejected`].

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::Stream;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::core::Client;
use super::error::ClientError;
use super::http::{HttpCore, backoff, error_message};
use super::query::StoredEvent;

/// Largest server-sent event the client reads (a flush of many keys is one event).
const MAX_SSE_EVENT: usize = 64 * 1024 * 1024;

/// What a subscription follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Each event once it is committed.
    Events,
    /// Each aggregated metrics flush once the metrics store took it.
    Flushes,
}

/// One aggregated metric of a [`Flush`]: a key's values in one time bucket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct FlushSample {
    /// The event key.
    pub key: String,
    /// The bucket start (RFC 3339, UTC).
    pub at: String,
    /// What the flush added: `count` and the sums of the numeric `data` fields.
    pub values: serde_json::Value,
}

/// One metrics flush, as the server stored it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Flush {
    /// The samples whose key matches the subscription's prefix.
    pub samples: Vec<FlushSample>,
    /// The id of the last event the flushed metrics cover.
    pub watermark: i64,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LiveMessage {
    /// A committed event (feed [`Feed::Events`]).
    Event(StoredEvent),
    /// A metrics flush (feed [`Feed::Flushes`]).
    Flush(Flush),
    /// The server skipped `missed` messages here because this reader fell behind.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The connection broke and was made again.
    Reconnected {
        /// `true`: the feed resumed right after the last delivered event, nothing missed.
        /// `false`: messages sent while disconnected are not delivered (a flushes feed, or an
        /// events feed before its first event).
        resumed: bool,
    },
}

/// Settings of a subscription; from [`Client::subscribe`].
#[derive(Debug, Clone)]
#[must_use = "a subscription does nothing until `start` is awaited"]
pub struct SubscribeRequest {
    core: Arc<HttpCore>,
    feed: Feed,
    prefix: String,
    after: Option<i64>,
}

impl SubscribeRequest {
    /// Only keys starting with this (a key limited to a namespace is narrowed to it).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Starts after this event id (a [`StoredEvent::id`]): the committed events after it are
    /// delivered first, then the live ones. Events feeds only.
    pub fn after(mut self, id: i64) -> Self {
        self.after = Some(id);
        self
    }

    /// Connects (once; a refused key or a bad request is reported here) and returns the
    /// subscription, which reconnects by itself from then on.
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] for `after` on a flushes feed (nothing sent);
    /// [`ClientError::Rejected`] when the server refused (`400`, `401`, `403`);
    /// [`ClientError::TimedOut`] when it could not connect within the retry budget
    /// ([`Retry::max_attempts`](crate::client::Retry::max_attempts)).
    pub async fn start(self) -> Result<Subscription, ClientError> {
        if self.after.is_some() && self.feed == Feed::Flushes {
            return Err(ClientError::Config(
                "after() applies to the events feed only".into(),
            ));
        }
        let mut url = self.core.url("v1/live/sse");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "stream",
                match self.feed {
                    Feed::Events => "events",
                    Feed::Flushes => "flushes",
                },
            );
            if !self.prefix.is_empty() {
                q.append_pair("prefix", &self.prefix);
            }
        }
        let mut sub = Subscription {
            core: self.core,
            url,
            feed: self.feed,
            last_id: self.after,
            resp: None,
            parser: SseParser::default(),
            pending: VecDeque::new(),
            attempt: 0,
            reconnects: 0,
            done: false,
        };
        sub.connect_until_up().await?;
        Ok(sub)
    }
}

/// A live feed that reconnects by itself; from [`SubscribeRequest::start`]. Read it with
/// [`next`](Self::next) or as a [`Stream`] ([`into_stream`](Self::into_stream)); dropping it
/// closes the connection.
///
/// While nobody calls `next`, nothing is read from the socket: the server notices (TCP
/// backpressure), skips messages for this reader and later reports them as
/// [`LiveMessage::Lagged`].
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), accrue::client::ClientError> {
/// use accrue::client::{Client, Feed, LiveMessage};
///
/// let client = Client::builder("http://127.0.0.1:8081").bearer_token("…").build()?;
/// let mut feed = client.subscribe(Feed::Events).prefix("orders/").start().await?;
/// while let Some(msg) = feed.next().await {
///     match msg? {
///         LiveMessage::Event(e) => println!("{} {} {}", e.id, e.key, e.data),
///         LiveMessage::Lagged { missed } => eprintln!("fell behind: {missed} events skipped"),
///         LiveMessage::Reconnected { resumed } => eprintln!("reconnected (resumed: {resumed})"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscription {
    core: Arc<HttpCore>,
    url: Url,
    feed: Feed,
    /// The id of the last event delivered (or the `after` to start from).
    last_id: Option<i64>,
    resp: Option<reqwest::Response>,
    parser: SseParser,
    pending: VecDeque<LiveMessage>,
    /// Failed connection attempts in a row.
    attempt: u32,
    reconnects: u64,
    done: bool,
}

/// Why a connection attempt failed.
enum Failure {
    /// Worth another attempt (after `after`, if the server said so).
    Transient {
        why: String,
        after: Option<std::time::Duration>,
    },
    /// The subscription ends.
    Fatal(ClientError),
}

impl Subscription {
    /// The next message; `None` once the subscription ended (after an error, which is
    /// yielded first).
    ///
    /// # Errors
    ///
    /// [`ClientError::Rejected`] when the key was revoked or refused on a reconnect;
    /// [`ClientError::TimedOut`] when reconnecting failed
    /// [`max_attempts`](crate::client::Retry::max_attempts) times in a row. Either ends the
    /// subscription.
    pub async fn next(&mut self) -> Option<Result<LiveMessage, ClientError>> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(Ok(m));
            }
            if self.done {
                return None;
            }
            let Some(resp) = self.resp.as_mut() else {
                let resumed = self.feed == Feed::Events && self.last_id.is_some();
                if let Err(e) = self.connect_until_up().await {
                    self.done = true;
                    return Some(Err(e));
                }
                self.reconnects += 1;
                return Some(Ok(LiveMessage::Reconnected { resumed }));
            };
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    let mut events = Vec::new();
                    if let Err(why) = self.parser.feed(&bytes, &mut events) {
                        tracing::warn!(%why, "broken live feed; reconnecting");
                        self.resp = None;
                    }
                    for ev in events {
                        if let Err(e) = self.handle(ev) {
                            self.done = true;
                            self.resp = None;
                            self.pending.clear();
                            return Some(Err(e));
                        }
                    }
                }
                Ok(None) => {
                    tracing::debug!("the collector closed the live feed; reconnecting");
                    self.resp = None;
                }
                Err(e) => {
                    tracing::debug!(
                        error = &e as &dyn std::error::Error,
                        "the live feed broke; reconnecting"
                    );
                    self.resp = None;
                }
            }
        }
    }

    /// The subscription as a [`Stream`] (ends after an error).
    pub fn into_stream(self) -> impl Stream<Item = Result<LiveMessage, ClientError>> {
        futures_util::stream::unfold(self, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
    }

    /// The id of the last event delivered (or the `after` it started from): where a new
    /// subscription would resume.
    pub fn last_event_id(&self) -> Option<i64> {
        self.last_id
    }

    /// How many times the subscription reconnected.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Turns one server-sent event into messages; `Err` ends the subscription.
    fn handle(&mut self, ev: SseEvent) -> Result<(), ClientError> {
        let bad = |what: &str, e: serde_json::Error| {
            ClientError::Protocol(format!("a live {what} message could not be read: {e}"))
        };
        match ev.event.as_str() {
            "event" => {
                let e: StoredEvent = serde_json::from_str(&ev.data).map_err(|e| bad("event", e))?;
                // Resuming never repeats an event; this guard keeps that true for any server.
                if self.last_id.is_some_and(|last| e.id <= last) {
                    return Ok(());
                }
                self.last_id = Some(e.id);
                self.pending.push_back(LiveMessage::Event(e));
            }
            "flush" => {
                let f: Flush = serde_json::from_str(&ev.data).map_err(|e| bad("flush", e))?;
                self.pending.push_back(LiveMessage::Flush(f));
            }
            "lagged" => {
                #[derive(Deserialize)]
                struct Lagged {
                    missed: u64,
                }
                let l: Lagged = serde_json::from_str(&ev.data).map_err(|e| bad("lagged", e))?;
                self.pending
                    .push_back(LiveMessage::Lagged { missed: l.missed });
            }
            "error" => {
                let message = error_message(ev.data.as_bytes());
                if message.starts_with("Unauthorized") || message.starts_with("Forbidden") {
                    return Err(ClientError::Rejected {
                        status: 401,
                        message,
                    });
                }
                // A server-side failure (resuming could not read the store): try again.
                tracing::warn!(%message, "the live feed failed on the server; reconnecting");
                self.resp = None;
            }
            // Unknown event types are for newer clients.
            _ => {}
        }
        Ok(())
    }

    /// Connects, retrying transient failures with backoff.
    async fn connect_until_up(&mut self) -> Result<(), ClientError> {
        loop {
            let (why, after) = match self.connect().await {
                Ok(()) => {
                    self.attempt = 0;
                    return Ok(());
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient { why, after }) => (why, after),
            };
            let wait = backoff(&self.core.retry, self.attempt, after);
            self.attempt += 1;
            if self
                .core
                .retry
                .max_attempts
                .is_some_and(|n| self.attempt >= n)
            {
                return Err(ClientError::TimedOut { last: Some(why) });
            }
            tracing::debug!(%why, ?wait, "live feed connection failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One connection attempt.
    async fn connect(&mut self) -> Result<(), Failure> {
        let resp = self
            .core
            .live(self.url.clone(), self.last_id)
            .await
            .map_err(|e| Failure::Transient {
                why: super::http::transport_error(&e),
                after: None,
            })?;
        let status = resp.status();
        if status == StatusCode::OK {
            self.parser = SseParser::default();
            self.resp = Some(resp);
            return Ok(());
        }
        let after = self.core.retry_after(&resp);
        let body = resp.bytes().await.unwrap_or_default();
        let message = error_message(&body);
        match status.as_u16() {
            408 | 429 | 500..=599 => Err(Failure::Transient {
                why: format!("{status}: {message}"),
                after,
            }),
            code => Err(Failure::Fatal(ClientError::Rejected {
                status: code,
                message,
            })),
        }
    }
}

impl Client {
    /// A live feed of committed events or of metrics flushes, filtered by key prefix, that
    /// reconnects by itself and resumes without gaps: see [`Subscription`]. Needs the `read`
    /// scope on a secured server.
    pub fn subscribe(&self, feed: Feed) -> SubscribeRequest {
        SubscribeRequest {
            core: Arc::clone(self.core_arc()),
            feed,
            prefix: String::new(),
            after: None,
        }
    }
}

/// One dispatched server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
struct SseEvent {
    event: String,
    data: String,
}

/// A `text/event-stream` parser (the WHATWG rules the collector's feed needs: `event`, `data`
/// over several lines, `id`, comments), bounded in memory.
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..nl]);
            bytes = &bytes[nl + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line_done(&line, out)?;
            line.clear();
            self.line = line;
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() + self.data.len() > MAX_SSE_EVENT {
            return Err(format!("an event over {MAX_SSE_EVENT} bytes"));
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // a comment: the keep-alive
        }
        let line = std::str::from_utf8(line).map_err(|_| "a line that is not UTF-8".to_owned())?;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > MAX_SSE_EVENT {
                    return Err(format!("an event over {MAX_SSE_EVENT} bytes"));
                }
            }
            // `id` is the event's own id, which its data carries too; `retry` is the server's
            // reconnect hint, which the client's backoff replaces.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c.as_bytes(), &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_are_dispatched_on_blank_lines_across_chunks() {
        let evs = parse(&[
            "event: event\nid: 4",
            "2\ndata: {\"id\":42}\n\n: keep-alive\n\n",
            "event: lagged\r\ndata: {\"missed\":3}\r\n\r\n",
            "data: a\ndata:b\n\nevent: x\n\n",
        ]);
        assert_eq!(
            evs,
            [
                SseEvent {
                    event: "event".into(),
                    data: "{\"id\":42}".into()
                },
                SseEvent {
                    event: "lagged".into(),
                    data: "{\"missed\":3}".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut err = None;
        for _ in 0..=MAX_SSE_EVENT / chunk.len() {
            if let Err(e) = p.feed(&chunk, &mut out) {
                err = Some(e);
                break;
            }
        }
        assert!(err.is_some_and(|e| e.contains("over")));
        assert!(out.is_empty());
    }
}
