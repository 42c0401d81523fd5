//! The collector's errors: [`CollectorError`] for starting and stopping a server, and the
//! JSON error answers of the HTTP API.

use std::error::Error;
use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why a [`Collector`](crate::collector::Collector) could not start, or did not stop cleanly.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use accrue::collector::{Collector, CollectorError};
///
/// // Settings are checked before anything is opened or bound.
/// let err = Collector::builder()
///     .stats_driver("ftp://example/metrics")
///     .start()
///     .await
///     .unwrap_err();
/// assert!(matches!(err, CollectorError::Config(_)));
/// assert!(err.to_string().contains("ftp"));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CollectorError {
    /// A setting is invalid; the message names it and the accepted values.
    Config(String),
    /// The listening socket could not be bound.
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The event store (SQLite) failed to open, migrate or answer.
    Store {
        /// What was being done.
        context: String,
        /// The database error.
        source: BoxError,
    },
    /// The metrics store could not be opened or written.
    Metrics {
        /// What was being done.
        context: String,
        /// The driver's error.
        source: BoxError,
    },
    /// `--stats-driver` names a database whose driver is not compiled into this build.
    DriverNotBuilt {
        /// The URL scheme, e.g. `postgres`.
        scheme: String,
        /// What would provide it.
        hint: String,
    },
    /// Shutdown finished, but acknowledged events could not be written before the deadline.
    /// They are counted here and were logged; in `durable` mode no acknowledged event can be
    /// in this state (its request was answered only after the commit).
    Unwritten {
        /// Events still in the queue when the writer gave up.
        events: u64,
    },
    /// A background task panicked or could not be started.
    Task(String),
}

impl CollectorError {
    pub(crate) fn metrics(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Metrics {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn store(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Store {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for CollectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(msg) => write!(f, "invalid collector setting: {msg}"),
            Self::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
            Self::Store { context, .. } => write!(f, "event store: {context}"),
            Self::Metrics { context, .. } => write!(f, "metrics store: {context}"),
            Self::DriverNotBuilt { scheme, hint } => {
                write!(
                    f,
                    "no `{scheme}` metrics-store driver in this build: {hint}"
                )
            }
            Self::Unwritten { events } => write!(
                f,
                "{events} queued events could not be written before the shutdown deadline"
            ),
            Self::Task(msg) => write!(f, "background task failed: {msg}"),
        }
    }
}

impl Error for CollectorError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Bind { source, .. } => Some(source),
            Self::Store { source, .. } | Self::Metrics { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Why the event store refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreFault {
    /// The disk (or the file system's quota) is full.
    DiskFull = 1,
    /// Any other write failure.
    Failing = 2,
}

impl StoreFault {
    /// The fault behind a store error.
    pub(crate) fn of(e: &rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull,
            _ => Self::Failing,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::DiskFull),
            2 => Some(Self::Failing),
            _ => None,
        }
    }
}

/// What a client is told to wait after `507`: space rarely comes back within a second.
const DISK_FULL_RETRY_AFTER_S: u32 = 10;

/// The three Tlytics error strings, kept verbatim for its clients.
pub(crate) const INVALID_JSON: &str = "Invalid JSON format";
pub(crate) const INVALID_EVENT: &str = "Invalid event format";
pub(crate) const KEY_REQUIRED: &str = "Event key is required";

/// An error answer: `{"detail": ..., "error": ..., "index": ...}` (keys in Go's sorted order;
/// `detail` and `index` only when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) detail: Option<String>,
    /// The position of the offending event in the request.
    pub(crate) index: Option<usize>,
    /// Seconds, for `Retry-After` on a 503.
    pub(crate) retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str) -> Self {
        Self {
            status,
            error,
            detail: None,
            index: None,
            retry_after: None,
        }
    }

    fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn invalid_json(detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_JSON).with_detail(detail)
    }

    pub(crate) fn invalid_event(index: usize, detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_EVENT)
            .at(index)
            .with_detail(detail)
    }

    pub(crate) fn key_required(index: usize) -> Self {
        Self::new(StatusCode::BAD_REQUEST, KEY_REQUIRED).at(index)
    }

    pub(crate) fn key_too_long(index: usize, len: usize, max: usize) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Event key is too long")
            .at(index)
            .with_detail(format!("the key is {len} bytes; the limit is {max}"))
    }

    pub(crate) fn data_too_large(index: usize, len: usize, max: usize) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Event data is too large")
            .at(index)
            .with_detail(format!(
                "data is {len} bytes without whitespace; the limit is {max}"
            ))
    }

    pub(crate) fn invalid_data(index: usize, why: &super::data::DataError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid event data")
            .at(index)
            .with_detail(why.to_string())
    }

    pub(crate) fn bad_id(index: usize, len: usize, max: usize) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid event id")
            .at(index)
            .with_detail(format!("the id is {len} bytes; it must be 1 to {max}"))
    }

    pub(crate) fn invalid_key(index: usize, detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid event key")
            .at(index)
            .with_detail(detail)
    }

    pub(crate) fn bad_query(detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid query").with_detail(detail)
    }

    pub(crate) fn values_failed() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to retrieve values",
        )
    }

    pub(crate) fn no_metrics() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found")
            .with_detail("the metrics pipeline is disabled on this server")
    }

    pub(crate) fn too_many_events(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many events in one request",
        )
        .with_detail(format!("the limit is {max} events per request"))
    }

    pub(crate) fn body_too_large(max: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
            .with_detail(format!("the limit is {max} bytes"))
    }

    pub(crate) fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "Request body timeout")
            .with_detail("the request body did not arrive within the server's body timeout")
    }

    pub(crate) fn busy(retry_after: u32, detail: &str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server is busy, retry later",
        )
        .with_detail(detail);
        e.retry_after = Some(retry_after);
        e
    }

    /// The event store failed a write: nothing of the request was stored.
    pub(crate) fn store_fault(fault: StoreFault) -> Self {
        let mut e = match fault {
            StoreFault::DiskFull => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "Insufficient storage").with_detail(
                    "the event store's disk is full; nothing of this request was stored",
                )
            }
            StoreFault::Failing => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "Event store unavailable").with_detail(
                    "the event store failed to write; nothing of this request was stored",
                )
            }
        };
        e.retry_after = Some(match fault {
            StoreFault::DiskFull => DISK_FULL_RETRY_AFTER_S,
            StoreFault::Failing => 1,
        });
        e
    }

    pub(crate) fn shutting_down() -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "Server is shutting down");
        e.retry_after = Some(1);
        e
    }

    pub(crate) fn read_failed() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to retrieve events",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(64);
        body.push(b'{');
        if let Some(detail) = &self.detail {
            body.extend_from_slice(b"\"detail\":");
            super::json::write_str(&mut body, detail);
            body.push(b',');
        }
        body.extend_from_slice(b"\"error\":");
        super::json::write_str(&mut body, self.error);
        if let Some(index) = self.index {
            body.extend_from_slice(b",\"index\":");
            body.extend_from_slice(index.to_string().as_bytes());
        }
        body.push(b'}');
        let mut res = super::json::response(self.status, body);
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_the_source_and_not_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = CollectorError::Bind {
            addr: "127.0.0.1:8081".into(),
            source: io,
        };
        assert_eq!(e.to_string(), "cannot listen on 127.0.0.1:8081");
        assert_eq!(e.source().unwrap().to_string(), "address in use");

        let e = CollectorError::store("open", "disk I/O error");
        assert_eq!(e.to_string(), "event store: open");
        assert_eq!(e.source().unwrap().to_string(), "disk I/O error");

        let e = CollectorError::metrics("create the schema", "permission denied");
        assert_eq!(e.to_string(), "metrics store: create the schema");
        assert_eq!(e.source().unwrap().to_string(), "permission denied");

        assert!(CollectorError::Task("panicked".into()).source().is_none());
    }
}
