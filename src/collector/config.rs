//! [`CollectorBuilder`]: every setting of `accrue serve`, with its default and its reason.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::auth::AdminKey;
use super::error::CollectorError;
use super::event::Limits;
use super::live::LiveConfig;

/// When a `200` is sent for a `POST /events` or `POST /batch`.
///
/// # Examples
///
/// ```
/// use accrue::collector::AckMode;
///
/// assert_eq!("queued".parse::<AckMode>().unwrap(), AckMode::Queued);
/// assert_eq!(AckMode::default().as_str(), "durable");
/// assert!("sometimes".parse::<AckMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// After the events are committed to the event store (default). Concurrent requests share
    /// one transaction (group commit), so this costs latency, not throughput. A `kill -9` right
    /// after the answer loses nothing; with [`Synchronous::Full`] neither does a power cut.
    #[default]
    Durable,
    /// As soon as the events are in the bounded ingest queue (Tlytics' behaviour). The writer
    /// still commits continuously, so the window a crash can lose is what sits in the queue —
    /// milliseconds under normal load. A graceful shutdown writes the queue out first.
    Queued,
}

impl AckMode {
    /// The name used on the command line: `durable` or `queued`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Durable => "durable",
            Self::Queued => "queued",
        }
    }
}

impl std::str::FromStr for AckMode {
    type Err = CollectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "durable" => Ok(Self::Durable),
            "queued" => Ok(Self::Queued),
            _ => Err(CollectorError::Config(format!(
                "ack mode {s:?} is not one of: durable, queued"
            ))),
        }
    }
}

/// SQLite's `PRAGMA synchronous` for the event store (WAL mode).
///
/// # Examples
///
/// ```
/// use accrue::collector::{Collector, Synchronous};
///
/// // Survive power cuts too: one fsync per group commit.
/// let builder = Collector::builder().synchronous("full".parse::<Synchronous>().unwrap());
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// A commit is in the WAL file when it returns: it survives the process dying (`kill -9`,
    /// OOM killer, panic) but not an operating-system crash or power cut. Default.
    #[default]
    Normal,
    /// A commit is also fsynced: it survives a power cut. Group commit shares one fsync among
    /// all requests of a group.
    Full,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }

    /// The name used on the command line: `normal` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Full => "full",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = CollectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            _ => Err(CollectorError::Config(format!(
                "synchronous mode {s:?} is not one of: normal, full"
            ))),
        }
    }
}

/// Default database file.
pub(crate) const DEFAULT_DB: &str = "./accrue.db";
/// Tlytics' port.
pub(crate) const DEFAULT_PORT: u16 = 8081;
/// Tlytics' flush period; here the period of the metrics aggregation flush.
pub(crate) const DEFAULT_FLUSH: Duration = Duration::from_secs(5);
/// Tlytics' limit: 5 MiB per body.
pub(crate) const DEFAULT_MAX_BODY: usize = 5 * 1024 * 1024;
/// Tlytics' limit: 10 000 events per request.
pub(crate) const DEFAULT_MAX_EVENTS: usize = 10_000;
/// Tlytics' limit: 256 bytes per key.
pub(crate) const DEFAULT_MAX_KEY: usize = 256;
/// Tlytics' limit: 64 KiB of `data` per event.
pub(crate) const DEFAULT_MAX_DATA: usize = 64 * 1024;
/// Deep enough for any document a person designs; the attacks it stops (a 10,000-deep `data`)
/// are thousands of levels deep.
pub(crate) const DEFAULT_MAX_DATA_DEPTH: usize = 32;
/// Long enough for a UUID, ULID or a hash in hex.
pub(crate) const DEFAULT_MAX_ID: usize = 128;
/// Ten full requests, or about half a second of the load-generator's peak: enough to ride out a
/// slow commit, small enough that a stuck store is reported (503) within a second.
pub(crate) const DEFAULT_QUEUE_EVENTS: usize = 100_000;
/// The byte bound of the queue (event keys, data and ids): 64 MiB.
pub(crate) const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Most events committed in one transaction; a larger backlog is split over several.
pub(crate) const DEFAULT_MAX_GROUP: usize = 20_000;
/// How long a durable request waits for a failing event store before it is answered `503`:
/// under the usual client timeouts (30 s and up), over SQLite's 5 s wait for a write lock.
pub(crate) const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the HTTP server waits for open requests on shutdown before closing them.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The metrics store's default granularities (Trifle Stats' list).
pub(crate) const DEFAULT_GRANULARITIES: [&str; 7] = ["1m", "1h", "1d", "1w", "1mo", "1q", "1y"];
/// Connections served at once; one more is answered `503`. Well under the usual open-file
/// limits of a server process, with room left for the database files.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a connection may take to deliver a request head (from connect, or from the end of
/// the previous response on a kept-alive connection).
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request body may take to arrive: a full 5 MiB body at 90 KB/s.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent `/view` readers (each is one SQLite connection).
pub(crate) const DEFAULT_READERS: usize = 4;

/// Configures and starts a [`Collector`](crate::collector::Collector), the server behind `accrue serve`.
///
/// Every setting has a default suited to a single machine; `accrue serve --help` lists the same
/// settings as flags and environment variables.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use accrue::collector::{AckMode, Collector};
///
/// let dir = tempfile::tempdir()?;
/// let server = Collector::builder()
///     .db(dir.path().join("events.db"))
///     .port(0) // a free port; 8081 by default
///     .ack(AckMode::Durable)
///     .retention(Some(Duration::from_secs(30 * 86_400)))
///     .start()
///     .await?;
/// println!("listening on {}", server.local_addr());
/// // In a binary: `server.run_until_signal().await?` waits for SIGTERM / Ctrl-C.
/// server.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CollectorBuilder {
    pub(crate) db: PathBuf,
    pub(crate) bind: IpAddr,
    pub(crate) port: u16,
    pub(crate) flush: Duration,
    pub(crate) stats_driver: Option<String>,
    pub(crate) ack: AckMode,
    pub(crate) synchronous: Synchronous,
    pub(crate) retention: Option<Duration>,
    pub(crate) max_body_bytes: usize,
    pub(crate) limits: Limits,
    pub(crate) queue_events: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) max_group_events: usize,
    pub(crate) commit_window: Duration,
    pub(crate) commit_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) readers: usize,
    pub(crate) metrics: bool,
    pub(crate) granularities: Vec<String>,
    pub(crate) time_zone: String,
    pub(crate) week_start: jiff::civil::Weekday,
    /// The admin key (hashed at once) and the live-feed bounds.
    pub(crate) admin_key: Option<AdminKey>,
    pub(crate) live: LiveConfig,
}

impl Default for CollectorBuilder {
    fn default() -> Self {
        Self {
            db: PathBuf::from(DEFAULT_DB),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            flush: DEFAULT_FLUSH,
            stats_driver: None,
            ack: AckMode::Durable,
            synchronous: Synchronous::Normal,
            retention: None,
            max_body_bytes: DEFAULT_MAX_BODY,
            limits: Limits {
                max_events: DEFAULT_MAX_EVENTS,
                max_key_bytes: DEFAULT_MAX_KEY,
                max_data_bytes: DEFAULT_MAX_DATA,
                max_data_depth: DEFAULT_MAX_DATA_DEPTH,
                max_id_bytes: DEFAULT_MAX_ID,
            },
            queue_events: DEFAULT_QUEUE_EVENTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_group_events: DEFAULT_MAX_GROUP,
            commit_window: Duration::ZERO,
            commit_timeout: DEFAULT_COMMIT_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            readers: DEFAULT_READERS,
            metrics: true,
            granularities: DEFAULT_GRANULARITIES
                .iter()
                .map(|g| (*g).to_owned())
                .collect(),
            time_zone: "UTC".into(),
            week_start: jiff::civil::Weekday::Monday,
            admin_key: None,
            live: LiveConfig::default(),
        }
    }
}

impl CollectorBuilder {
    /// The SQLite file of the event store, created on first run. Default: `./accrue.db`.
    pub fn db(mut self, path: impl Into<PathBuf>) -> Self {
        self.db = path.into();
        self
    }

    /// The address to listen on. Default: `127.0.0.1` (use `0.0.0.0` to accept remote
    /// clients, with an [`admin_key`](Self::admin_key) and scoped keys, behind TLS).
    pub fn bind(mut self, addr: IpAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The port to listen on; `0` picks a free one (see
    /// [`Collector::local_addr`](crate::collector::Collector::local_addr)). Default: 8081.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How often aggregated metrics are flushed into the metrics store. Default: 5 s.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush = every;
        self
    }

    /// Where aggregated metrics go, as a URL: `sqlite://PATH`, `sqlite::memory:` or `memory:`.
    /// Default: the event store's own SQLite file.
    pub fn stats_driver(mut self, url: impl Into<String>) -> Self {
        self.stats_driver = Some(url.into());
        self
    }

    /// When a POST is answered with `200`. Default: [`AckMode::Durable`].
    pub fn ack(mut self, mode: AckMode) -> Self {
        self.ack = mode;
        self
    }

    /// Durability of a commit. Default: [`Synchronous::Normal`].
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.synchronous = mode;
        self
    }

    /// Delete events whose time is older than this (checked every minute). Default: keep
    /// everything. Metrics already aggregated are not affected.
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.retention = keep;
        self
    }

    /// Largest request body; a larger one gets `413`. Default: 5 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Most events in one request; more gets `413`. Default: 10 000.
    pub fn max_events_per_request(mut self, events: usize) -> Self {
        self.limits.max_events = events;
        self
    }

    /// Longest event key in bytes; longer gets `400`. Default: 256.
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_key_bytes = bytes;
        self
    }

    /// Largest `data` object of one event in bytes, without whitespace; larger gets `400`.
    /// Default: 64 KiB.
    pub fn max_data_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_data_bytes = bytes;
        self
    }

    /// Deepest nesting of objects and arrays in an event's `data` (the object itself is level
    /// 1); deeper gets `400 Invalid event data`. Default: 32; at most 100, which every reader of
    /// stored data (the `where=` filters, the metrics pipeline, the live feeds) can parse.
    pub fn max_data_depth(mut self, levels: usize) -> Self {
        self.limits.max_data_depth = levels;
        self
    }

    /// Events the ingest queue holds before the server answers `503` with `Retry-After`.
    /// Default: 100 000. Must be at least [`max_events_per_request`](Self::max_events_per_request).
    pub fn queue_events(mut self, events: usize) -> Self {
        self.queue_events = events;
        self
    }

    /// Bytes (keys, data, ids) the ingest queue holds before answering `503`. Default: 64 MiB.
    /// Must be at least [`max_body_bytes`](Self::max_body_bytes).
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes;
        self
    }

    /// Most events committed in one transaction. Default: 20 000.
    pub fn max_group_events(mut self, events: usize) -> Self {
        self.max_group_events = events;
        self
    }

    /// How long the writer waits for more requests to join a group once it has one. Default:
    /// zero — the group is whatever queued up while the previous commit ran, which already
    /// shares commits under load without adding latency when idle.
    pub fn commit_window(mut self, wait: Duration) -> Self {
        self.commit_window = wait;
        self
    }

    /// How long a request waits for a failing event store (with [`AckMode::Durable`]) before
    /// it is answered `503` with nothing of it stored; the failed commit is retried with backoff
    /// until then. A full disk is answered `507` at once. Default: 10 s.
    pub fn commit_timeout(mut self, timeout: Duration) -> Self {
        self.commit_timeout = timeout;
        self
    }

    /// How long a graceful shutdown may take in all: open requests finish, the queue is
    /// written, the metrics are flushed. Default: 30 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Connections served at once; a connection beyond it is answered `503` with `Retry-After`
    /// and closed. Keep it below the process's open-file limit (`ulimit -n`) minus a few dozen
    /// for the database files. Default: 1024.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long a connection may take to deliver a complete request head, counted from the
    /// moment the server is ready for it: when the connection opens, and after each response on
    /// a kept-alive connection — so it also closes kept-alive connections left idle that long
    /// (behind a load balancer, keep its upstream idle timeout below this). Default: 30 s.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a request body may take to arrive completely, from the end of its head; a body
    /// still arriving then gets `408`. Default: 60 s.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Most concurrent SQLite readers for `/view`. Default: 4.
    pub fn read_connections(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Whether events are aggregated into the metrics store (and `/v1/values` served).
    /// Default: [`MetricsPipeline::On`].
    pub fn metrics_pipeline(mut self, pipeline: MetricsPipeline) -> Self {
        self.metrics = pipeline == MetricsPipeline::On;
        self
    }

    /// The granularities events are aggregated in (`<n><unit>`, units `s m h d w mo q y`).
    /// Default: `1m 1h 1d 1w 1mo 1q 1y`.
    pub fn granularities<I, S>(mut self, list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.granularities = list.into_iter().map(Into::into).collect();
        self
    }

    /// The IANA time zone buckets are computed in (`UTC`, `Europe/Bratislava`, …).
    /// Default: `UTC`.
    pub fn time_zone(mut self, name: impl Into<String>) -> Self {
        self.time_zone = name.into();
        self
    }

    /// The first day of a `w` bucket. Default: Monday.
    pub fn week_start(mut self, day: jiff::civil::Weekday) -> Self {
        self.week_start = day;
        self
    }

    /// The admin key: with it (or with any stored API key) every route except `/health`,
    /// `/ready` and `/openapi.json` needs `Authorization: Bearer <key>`, and scoped keys can be
    /// created at `POST /v1/keys`. At least 32 printable ASCII characters; it is hashed at once
    /// and never printed (`Debug` shows `<redacted>`). Default: none — with no stored key
    /// either, the server is open, as Tlytics is, and warns at start-up.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let server = accrue::collector::Collector::builder()
    ///     .db(dir.path().join("e.db"))
    ///     .port(0)
    ///     .admin_key("a-long-random-admin-key-from-a-secret-store")
    ///     .start()
    ///     .await?;
    /// server.stop().await?;
    ///
    /// let short = accrue::collector::Collector::builder().admin_key("hunter2").start().await;
    /// assert!(short.unwrap_err().to_string().contains("at least 32"));
    /// # Ok(()) }
    /// ```
    pub fn admin_key(mut self, key: &str) -> Self {
        self.admin_key = Some(AdminKey::new(key));
        self
    }

    /// Messages one live connection may have waiting before it misses some (and is told so with
    /// a `lagged` notice). Default: 1024; at least 2.
    pub fn live_buffer_messages(mut self, messages: usize) -> Self {
        self.live.buffer_messages = messages;
        self
    }

    /// Bytes one live connection may have waiting. Default: 4 MiB; at least 128 KiB (one event
    /// of the largest size must fit).
    pub fn live_buffer_bytes(mut self, bytes: usize) -> Self {
        self.live.buffer_bytes = bytes;
        self
    }

    /// Open live connections (WebSocket and SSE) allowed at once; more get `503`.
    /// Default: 1024.
    pub fn max_live_connections(mut self, connections: usize) -> Self {
        self.live.max_connections = connections;
        self
    }

    /// The event store's path.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// The configured listening address (port `0` until started).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The acknowledgement mode.
    pub fn ack_mode(&self) -> AckMode {
        self.ack
    }

    /// Checks the settings against each other before anything is opened.
    pub(crate) fn validate(&self) -> Result<(), CollectorError> {
        let bad = |m: String| Err(CollectorError::Config(m));
        if self.flush.is_zero() {
            return bad("the flush interval must be greater than zero".into());
        }
        if self.header_timeout.is_zero()
            || self.body_timeout.is_zero()
            || self.commit_timeout.is_zero()
        {
            return bad("the header, body and commit timeouts must be greater than zero".into());
        }
        if self.retention.is_some_and(|r| r.is_zero()) {
            return bad("retention must be greater than zero (omit it to keep everything)".into());
        }
        let l = &self.limits;
        for (name, v) in [
            ("max body bytes", self.max_body_bytes),
            ("max events per request", l.max_events),
            ("max key bytes", l.max_key_bytes),
            ("max data bytes", l.max_data_bytes),
            ("max data depth", l.max_data_depth),
            ("max group events", self.max_group_events),
            ("read connections", self.readers),
            ("max connections", self.max_connections),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if l.max_data_depth > super::data::MAX_DEPTH_LIMIT {
            return bad(format!(
                "max data depth {} is above {}, the deepest every reader of stored data parses",
                l.max_data_depth,
                super::data::MAX_DEPTH_LIMIT
            ));
        }
        if self.queue_events < l.max_events {
            return bad(format!(
                "the queue ({} events) must hold at least one full request ({} events)",
                self.queue_events, l.max_events
            ));
        }
        if self.queue_bytes < self.max_body_bytes {
            return bad(format!(
                "the queue ({} bytes) must hold at least one full body ({} bytes)",
                self.queue_bytes, self.max_body_bytes
            ));
        }
        for g in &self.granularities {
            if let Err(e) = g.parse::<crate::time::Granularity>() {
                return bad(format!("granularity: {e}"));
            }
        }
        if self.metrics && self.granularities.is_empty() {
            return bad("at least one granularity is needed for the metrics pipeline".into());
        }
        if let Err(e) = crate::time::Calendar::from_name(&self.time_zone) {
            return bad(format!("time zone: {e}"));
        }
        if let Some(why) = self.admin_key.as_ref().and_then(|k| k.invalid.as_ref()) {
            return bad(why.clone());
        }
        if self.live.buffer_messages < 2 {
            return bad("the live buffer must hold at least 2 messages".into());
        }
        if self.live.buffer_bytes < super::live::MIN_BUFFER_BYTES {
            return bad(format!(
                "the live buffer must hold at least {} bytes",
                super::live::MIN_BUFFER_BYTES
            ));
        }
        // tokio's semaphore takes at most u32 permits at once.
        if self.max_body_bytes > u32::MAX as usize || l.max_events > u32::MAX as usize {
            return bad("request limits above 4 GiB / 4 billion events are not supported".into());
        }
        Ok(())
    }
}

/// Whether a collector aggregates its events into the metrics store
/// ([`CollectorBuilder::metrics_pipeline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsPipeline {
    /// Events are aggregated and `/v1/values` is served (the default).
    #[default]
    On,
    /// Events are only stored.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_inconsistent_limits_are_not() {
        CollectorBuilder::default().validate().unwrap();
        let e = CollectorBuilder::default()
            .queue_events(10)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("one full request"), "{e}");
        let e = CollectorBuilder::default()
            .flush_interval(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("flush"), "{e}");
        assert!(
            CollectorBuilder::default()
                .max_key_bytes(0)
                .validate()
                .is_err()
        );
        assert!(
            CollectorBuilder::default()
                .retention(Some(Duration::ZERO))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn modes_parse_from_their_names() {
        assert_eq!("queued".parse::<AckMode>().unwrap(), AckMode::Queued);
        assert_eq!("durable".parse::<AckMode>().unwrap().as_str(), "durable");
        assert!("sync".parse::<AckMode>().is_err());
        assert_eq!("full".parse::<Synchronous>().unwrap(), Synchronous::Full);
        assert!("FULL".parse::<Synchronous>().is_err());
    }
}
