//! [`ClientBuilder`]: every setting of the client, with its default and its reason.

use std::fmt;
use std::time::Duration;

use super::error::ClientError;

/// What `emit` does when the queue is full. Either way the drop is counted exactly
/// ([`ClientStats::dropped`](crate::client::ClientStats::dropped)) and logged with a `tracing`
/// warning (at most once a second, with the running total).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the new event: `emit` returns [`EmitError::Full`](crate::client::EmitError::Full)
    /// with it. Keeps the oldest data, like a bounded channel. Default.
    #[default]
    DropNewest,
    /// Make room by dropping the oldest queued event; `emit` succeeds. Keeps the newest data.
    DropOldest,
}

/// Retry timing: exponential backoff with full jitter, capped; `Retry-After` is honoured.
///
/// Attempt *n* (from 0) waits a random time in `[0, min(max, initial × 2ⁿ)]`; when the server
/// sent `Retry-After`, at least that long. Network errors, timeouts, `408`, `429` and every
/// `5xx` are retried; other `4xx` are not.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use accrue::client::{Client, Retry};
///
/// let retry = Retry::default()
///     .initial(Duration::from_millis(50))
///     .max(Duration::from_secs(5))
///     .max_attempts(Some(20)); // then the batch counts as failed
/// let builder = Client::builder("http://127.0.0.1:8081").retry(retry);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) max_attempts: Option<u32>,
}

impl Default for Retry {
    /// 100 ms initial, 30 s cap, no attempt limit: a batch is retried until it is delivered or
    /// [`close`](crate::client::Client::close)'s deadline passes, while new events queue up
    /// (and overflow visibly) behind it.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Retry {
    /// The first backoff ceiling. Default: 100 ms.
    #[must_use]
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// The largest backoff ceiling. Default: 30 s.
    #[must_use]
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// Attempts per batch before it is counted as failed; `None` (default) retries until the
    /// close deadline.
    #[must_use]
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff ceiling of attempt `n` (from 0).
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Default queue capacity: a few seconds of a busy service's events, bounded in memory
/// (an event is ~100-500 bytes).
pub(crate) const DEFAULT_QUEUE: usize = 100_000;
/// Default events per request: large enough to amortise the HTTP round trip and the server's
/// commit, a tenth of the collector's per-request limit.
pub(crate) const DEFAULT_BATCH_EVENTS: usize = 1_000;
/// Default bytes per request body: a fifth of the collector's 5 MiB limit.
pub(crate) const DEFAULT_BATCH_BYTES: usize = 1024 * 1024;
/// Default flush period: the longest an event waits in the queue when traffic is light.
pub(crate) const DEFAULT_FLUSH: Duration = Duration::from_secs(1);
/// Requests sent at once: two keeps the server's group commit busy while one answer travels.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 2;
/// Per-request timeout (Tlytics' client used 10 s).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `close` keeps delivering.
pub(crate) const DEFAULT_CLOSE: Duration = Duration::from_secs(10);
/// Default time a query, KV or delete call keeps retrying transient failures.
pub(crate) const DEFAULT_CALL: Duration = Duration::from_secs(30);
/// The collector's default limits.
pub(crate) const DEFAULT_MAX_KEY: usize = 256;
pub(crate) const DEFAULT_MAX_DATA: usize = 64 * 1024;

/// Configures a [`Client`](crate::client::Client); from
/// [`Client::builder`](crate::client::Client::builder).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), accrue::client::ClientError> {
/// use std::time::Duration;
/// use accrue::client::{Client, Overflow};
///
/// let client = Client::builder("http://127.0.0.1:8081")
///     .bearer_token("s3cr3t")              // sent as `Authorization: Bearer`, never logged
///     .queue_capacity(50_000)
///     .overflow(Overflow::DropOldest)
///     .batch_size(500)
///     .flush_interval(Duration::from_millis(250))
///     .build()?;
/// # drop(client);
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) queue: usize,
    pub(crate) overflow: Overflow,
    pub(crate) batch_events: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) flush: Duration,
    pub(crate) in_flight: usize,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) retry: Retry,
    pub(crate) max_key: usize,
    pub(crate) max_data: usize,
    pub(crate) user_agent: String,
    pub(crate) event_ids: bool,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("queue", &self.queue)
            .field("overflow", &self.overflow)
            .field("batch_events", &self.batch_events)
            .field("batch_bytes", &self.batch_bytes)
            .field("flush", &self.flush)
            .field("in_flight", &self.in_flight)
            .field("timeout", &self.timeout)
            .field("close_timeout", &self.close_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            queue: DEFAULT_QUEUE,
            overflow: Overflow::DropNewest,
            batch_events: DEFAULT_BATCH_EVENTS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            flush: DEFAULT_FLUSH,
            in_flight: DEFAULT_IN_FLIGHT,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            close_timeout: DEFAULT_CLOSE,
            call_timeout: DEFAULT_CALL,
            retry: Retry::default(),
            max_key: DEFAULT_MAX_KEY,
            max_data: DEFAULT_MAX_DATA,
            user_agent: concat!("accrue-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            event_ids: true,
            runtime: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request. The token is kept out of
    /// `Debug` output, logs and URLs.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Events the queue holds; `emit` on a full queue drops (see [`Overflow`]). Default:
    /// 100 000. Size it for the longest outage you want to ride out: events/s × seconds.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue = events;
        self
    }

    /// What a full queue drops. Default: [`Overflow::DropNewest`].
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// Most events per request; a full batch is sent at once, without waiting for the flush
    /// period. Default: 1 000 (the collector accepts 10 000).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_events = events;
        self
    }

    /// Most bytes per request body (one event larger than this is sent alone). Default: 1 MiB
    /// (the collector accepts 5 MiB).
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// How often a partial batch is sent. Default: 1 s.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush = every;
        self
    }

    /// Requests in flight at once. Default: 2.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.in_flight = requests;
        self
    }

    /// Timeout of one HTTP request (then it is retried). Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long [`close`](crate::client::Client::close) keeps delivering before it gives up
    /// and reports what is left. Default: 10 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How long a query, KV or delete call ([`Client::events`](crate::client::Client::events),
    /// [`Client::kv`](crate::client::Client::kv), …) keeps retrying network errors, `408`,
    /// `429` and `5xx` (with the [`retry`](Self::retry) backoff) before it returns
    /// [`ClientError::TimedOut`]. Each attempt is also bounded by the request timeout. Default:
    /// 30 s.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Retry timing. Default: [`Retry::default`].
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Longest key `emit` accepts (match the server's `max_key_bytes`). Default: 256.
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key = bytes;
        self
    }

    /// Largest serialized `data` sent (match the server's `max_data_bytes`); a larger event is
    /// counted as rejected instead of failing its whole batch. Default: 64 KiB.
    pub fn max_data_bytes(mut self, bytes: usize) -> Self {
        self.max_data = bytes;
        self
    }

    /// The `User-Agent` header. Default: `accrue-client/<version>`.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// Whether every event carries a unique `id`, so a batch retried after a lost answer is
    /// stored once (the collector skips ids it has). Default: [`EventIds::Stamped`]. Turning it off saves the
    /// server its unique-index insert per event (the end-to-end bench shows the cost) at the
    /// price of duplicates after a lost answer.
    pub fn event_ids(mut self, ids: EventIds) -> Self {
        self.event_ids = ids == EventIds::Stamped;
        self
    }

    /// The tokio runtime the client's task runs on. Default: the runtime `build` is called in.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Checks the settings against each other.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        super::http::parse_base(&self.url)?;
        let bad = |m: String| Err(ClientError::Config(m));
        for (name, v) in [
            ("queue capacity", self.queue),
            ("batch size", self.batch_events),
            ("batch bytes", self.batch_bytes),
            ("max in flight", self.in_flight),
            ("max key bytes", self.max_key),
            ("max data bytes", self.max_data),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        for (name, d) in [
            ("flush interval", self.flush),
            ("request timeout", self.timeout),
            ("call timeout", self.call_timeout),
            ("retry initial delay", self.retry.initial),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.retry.max < self.retry.initial {
            return bad("the retry cap is below the initial delay".into());
        }
        if self.retry.max_attempts == Some(0) {
            return bad("max attempts must be at least 1 (or None)".into());
        }
        if let Some(t) = &self.token
            && (t.is_empty() || t.bytes().any(|b| !(0x21..0x7f).contains(&b)))
        {
            // Never echo the token itself.
            return bad("the bearer token must be non-empty visible ASCII".into());
        }
        Ok(())
    }
}

/// Whether the client stamps each event with a unique `id` ([`ClientBuilder::event_ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventIds {
    /// Every event gets an id: a retried batch is stored once (the default).
    #[default]
    Stamped,
    /// No ids: cheaper for the server, but a batch retried after a lost answer is stored twice.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry::default()
            .initial(Duration::from_millis(100))
            .max(Duration::from_secs(1));
        assert_eq!(r.ceiling(0), Duration::from_millis(100));
        assert_eq!(r.ceiling(1), Duration::from_millis(200));
        assert_eq!(r.ceiling(3), Duration::from_millis(800));
        assert_eq!(r.ceiling(4), Duration::from_secs(1));
        assert_eq!(r.ceiling(400), Duration::from_secs(1));
    }

    #[test]
    fn invalid_settings_are_refused_without_echoing_the_token() {
        let b = ClientBuilder::new("http://x");
        assert!(b.validate().is_ok());
        assert!(b.clone().queue_capacity(0).validate().is_err());
        assert!(b.clone().flush_interval(Duration::ZERO).validate().is_err());
        let e = b
            .clone()
            .bearer_token("bad token\n")
            .validate()
            .unwrap_err();
        assert!(!e.to_string().contains("bad token"), "{e}");
        let dbg = format!("{:?}", b.bearer_token("hunter2"));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
