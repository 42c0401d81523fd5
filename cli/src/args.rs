//! `accrue serve`'s flags, each with its environment variable and default, and the collector
//! they describe.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use accrue::collector::MetricsPipeline;
use accrue::collector::{AckMode, Collector, CollectorBuilder, CollectorError, Synchronous};

#[derive(Debug, clap::Args)]
pub(crate) struct Serve {
    /// SQLite file of the event store; created on first run.
    #[arg(
        long,
        env = "ACCRUE_DB",
        default_value = "./accrue.db",
        value_name = "PATH"
    )]
    pub(crate) db: PathBuf,

    /// TCP port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "ACCRUE_PORT", default_value_t = 8081)]
    pub(crate) port: u16,

    /// Address to listen on; 0.0.0.0 accepts remote clients (set an admin key first).
    #[arg(
        long,
        env = "ACCRUE_BIND",
        default_value = "127.0.0.1",
        value_name = "ADDR"
    )]
    pub(crate) bind: IpAddr,

    /// How often aggregated metrics are flushed to the metrics store (e.g. 5s, 500ms, 1m).
    #[arg(long, env = "ACCRUE_FLUSH", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) flush: Duration,

    /// Where aggregated metrics go, as a URL. Default: the --db file itself (sqlite://PATH).
    /// postgres://, mysql://, redis:// and mongodb:// need a build with that driver.
    #[arg(long, env = "ACCRUE_STATS_DRIVER", value_name = "URL")]
    pub(crate) stats_driver: Option<String>,

    /// When a POST is answered 200: `durable` after the events are committed (group commit;
    /// kill -9 right after the answer loses nothing), or `queued` as soon as they are queued
    /// (Tlytics' behaviour; a crash can lose what is still in the queue).
    #[arg(long, env = "ACCRUE_ACK", default_value = "durable", value_parser = ["durable", "queued"])]
    pub(crate) ack: String,

    /// SQLite durability of a commit: `normal` survives a process crash, `full` also an OS
    /// crash or power cut (one fsync per group commit).
    #[arg(long, env = "ACCRUE_SYNCHRONOUS", default_value = "normal", value_parser = ["normal", "full"])]
    pub(crate) synchronous: String,

    /// Delete events older than this (event time), e.g. 30d or 12h. Default: keep all.
    #[arg(long, env = "ACCRUE_RETENTION", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) retention: Option<Duration>,

    /// Largest request body in bytes; larger gets 413.
    #[arg(long, env = "ACCRUE_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024, value_name = "BYTES")]
    pub(crate) max_body_bytes: usize,

    /// Most events in one request; more gets 413.
    #[arg(
        long,
        env = "ACCRUE_MAX_EVENTS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub(crate) max_events: usize,

    /// Longest event key in bytes; longer gets 400.
    #[arg(
        long,
        env = "ACCRUE_MAX_KEY_BYTES",
        default_value_t = 256,
        value_name = "BYTES"
    )]
    pub(crate) max_key_bytes: usize,

    /// Largest `data` of one event in bytes (without whitespace); larger gets 400.
    #[arg(long, env = "ACCRUE_MAX_DATA_BYTES", default_value_t = 64 * 1024, value_name = "BYTES")]
    pub(crate) max_data_bytes: usize,

    /// Deepest nesting of objects and arrays in an event's `data` (at most 100); deeper gets
    /// 400.
    #[arg(
        long,
        env = "ACCRUE_MAX_DATA_DEPTH",
        default_value_t = 32,
        value_name = "LEVELS"
    )]
    pub(crate) max_data_depth: usize,

    /// Events the ingest queue holds before answering 503 with Retry-After.
    #[arg(
        long,
        env = "ACCRUE_QUEUE_EVENTS",
        default_value_t = 100_000,
        value_name = "N"
    )]
    pub(crate) queue_events: usize,

    /// Bytes of event keys, data and ids the ingest queue holds before answering 503.
    #[arg(long, env = "ACCRUE_QUEUE_BYTES", default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub(crate) queue_bytes: usize,

    /// How long the writer waits for more requests to share a commit (0: commit what is
    /// queued at once; under load, requests share commits anyway).
    #[arg(long, env = "ACCRUE_COMMIT_WINDOW", default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) commit_window: Duration,

    /// Connections served at once; one more is answered 503 and closed. Keep it below the
    /// open-file limit (ulimit -n).
    #[arg(
        long,
        env = "ACCRUE_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub(crate) max_connections: usize,

    /// How long a connection may take to send a request's headers, from connect or from the
    /// previous response; also the idle limit of a kept-alive connection.
    #[arg(long, env = "ACCRUE_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) header_timeout: Duration,

    /// How long a request body may take to arrive completely; later gets 408.
    #[arg(long, env = "ACCRUE_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) body_timeout: Duration,

    /// How long a request waits for a failing event store (--ack durable) before it is
    /// answered 503 with nothing of it stored; a full disk is answered 507 at once.
    #[arg(long, env = "ACCRUE_COMMIT_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) commit_timeout: Duration,

    /// How long a graceful shutdown may take in all: open requests finish, the queue is
    /// written, the metrics are flushed.
    #[arg(long, env = "ACCRUE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) shutdown_timeout: Duration,

    /// Granularities events are aggregated in, comma-separated (<n><unit>, units s m h d w mo
    /// q y).
    #[arg(
        long,
        env = "ACCRUE_GRANULARITIES",
        default_value = "1m,1h,1d,1w,1mo,1q,1y",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub(crate) granularities: Vec<String>,

    /// IANA time zone the metric buckets are computed in (e.g. UTC, Europe/Bratislava).
    #[arg(
        long,
        env = "ACCRUE_TIME_ZONE",
        default_value = "UTC",
        value_name = "ZONE"
    )]
    pub(crate) time_zone: String,

    /// First day of a week bucket.
    #[arg(long, env = "ACCRUE_WEEK_START", default_value = "monday", value_parser = parse_weekday, value_name = "DAY")]
    pub(crate) week_start: jiff::civil::Weekday,

    /// Store events only: no metrics aggregation, no /v1/values.
    #[arg(long, env = "ACCRUE_NO_METRICS")]
    pub(crate) no_metrics: bool,

    /// A file holding the admin key; or set ACCRUE_ADMIN_KEY. With an admin key (or keys
    /// stored by an earlier run) every route but /health, /ready and /openapi.json needs
    /// `Authorization: Bearer <key>`. There is no flag taking the key itself: it would show in
    /// `ps`.
    #[arg(long, env = "ACCRUE_ADMIN_KEY_FILE", value_name = "PATH")]
    pub(crate) admin_key_file: Option<PathBuf>,

    /// Messages one live-feed connection may have waiting before it misses some (it is told
    /// with a `lagged` message).
    #[arg(
        long,
        env = "ACCRUE_LIVE_BUFFER_MESSAGES",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub(crate) live_buffer_messages: usize,

    /// Bytes one live-feed connection may have waiting.
    #[arg(long, env = "ACCRUE_LIVE_BUFFER_BYTES", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub(crate) live_buffer_bytes: usize,

    /// Live-feed connections (WebSocket and SSE) allowed at once.
    #[arg(
        long,
        env = "ACCRUE_MAX_LIVE_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub(crate) max_live_connections: usize,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. info, debug, accrue=trace.
    #[arg(
        long,
        env = "ACCRUE_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub(crate) log: String,
}

impl Serve {
    /// The collector these flags describe.
    ///
    /// # Errors
    ///
    /// [`CollectorError::Config`] for a mode name the server does not know.
    pub(crate) fn collector(
        &self,
        admin_key: Option<&str>,
    ) -> Result<CollectorBuilder, CollectorError> {
        let ack: AckMode = self.ack.parse()?;
        let synchronous: Synchronous = self.synchronous.parse()?;
        let mut builder = Collector::builder()
            .db(&self.db)
            .port(self.port)
            .bind(self.bind)
            .flush_interval(self.flush)
            .ack(ack)
            .synchronous(synchronous)
            .retention(self.retention)
            .max_body_bytes(self.max_body_bytes)
            .max_events_per_request(self.max_events)
            .max_key_bytes(self.max_key_bytes)
            .max_data_bytes(self.max_data_bytes)
            .max_data_depth(self.max_data_depth)
            .queue_events(self.queue_events)
            .queue_bytes(self.queue_bytes)
            .commit_window(self.commit_window)
            .shutdown_timeout(self.shutdown_timeout)
            .commit_timeout(self.commit_timeout)
            .max_connections(self.max_connections)
            .header_timeout(self.header_timeout)
            .body_timeout(self.body_timeout)
            .granularities(self.granularities.iter().map(|g| g.trim().to_owned()))
            .time_zone(self.time_zone.clone())
            .week_start(self.week_start)
            .metrics_pipeline(if self.no_metrics {
                MetricsPipeline::Off
            } else {
                MetricsPipeline::On
            })
            .live_buffer_messages(self.live_buffer_messages)
            .live_buffer_bytes(self.live_buffer_bytes)
            .max_live_connections(self.max_live_connections);
        if let Some(key) = admin_key {
            builder = builder.admin_key(key);
        }
        if let Some(url) = &self.stats_driver {
            builder = builder.stats_driver(url);
        }
        Ok(builder)
    }
}

/// A duration such as `5s`, `500ms`, `1m30s`, `12h` or `30d` (a day is 24 hours).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 5s, 500ms, 12h or 30d: {e}"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

fn parse_weekday(s: &str) -> Result<jiff::civil::Weekday, String> {
    use jiff::civil::Weekday::*;
    Ok(match s.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Monday,
        "tuesday" | "tue" => Tuesday,
        "wednesday" | "wed" => Wednesday,
        "thursday" | "thu" => Thursday,
        "friday" | "fri" => Friday,
        "saturday" | "sat" => Saturday,
        "sunday" | "sun" => Sunday,
        _ => return Err(format!("{s:?} is not a day of the week (monday … sunday)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go_and_accept_days() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1mo").is_err());
    }
}
