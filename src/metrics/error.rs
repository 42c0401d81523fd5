//! Errors of the metrics store: bad input ([`MetricsError`] variants raised before any I/O),
//! configuration ([`ConfigError`]), and driver failures ([`DriverError`]).

use std::error::Error;
use std::fmt;

use crate::time::{GranularityError, TimeError, TimeZoneError};

/// Why a value tree was refused. Raised before any I/O: nothing was written.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ValueError {
    /// The top level is not a map.
    NotAMap {
        /// What it was instead (`"an integer"`, …).
        found: &'static str,
    },
    /// A `track` leaf that is not a number (strings, even numeric ones, are refused).
    NotANumber {
        /// The dotted path of the leaf.
        path: String,
        /// What it was instead.
        found: &'static str,
    },
    /// A float that is NaN or infinite (not representable in any backend).
    NotFinite {
        /// The dotted path of the leaf.
        path: String,
    },
    /// A map key that is empty (or, with [`PathCodec::V1`](crate::metrics::PathCodec::V1), contains an
    /// empty path segment such as `a..b`).
    EmptyKey {
        /// The dotted path of the parent map (`""` at the top).
        path: String,
    },
    /// A map key the legacy path codec cannot store: it contains `"`, `\` or NUL.
    Unrepresentable {
        /// The offending key.
        key: String,
    },
    /// Two spellings of the same stored field (`{"b": {"c": 1}, "b.c": 2}`).
    DuplicatePath {
        /// The stored (packed) field name.
        path: String,
    },
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAMap { found } => write!(f, "values must be a map, found {found}"),
            Self::NotANumber { path, found } => {
                write!(f, "track needs numbers, but {path:?} is {found}")
            }
            Self::NotFinite { path } => write!(f, "{path:?} is not a finite number"),
            Self::EmptyKey { path } => write!(f, "empty key (or path segment) under {path:?}"),
            Self::Unrepresentable { key } => write!(
                f,
                "key {key:?} contains '\"', '\\' or NUL, which the legacy path codec cannot store (use PathCodec::V1)"
            ),
            Self::DuplicatePath { path } => {
                write!(f, "two keys address the same field {path:?}")
            }
        }
    }
}

impl Error for ValueError {}

/// What went wrong in the metrics store.
#[derive(Debug)]
#[non_exhaustive]
pub enum MetricsError {
    /// The metric key is empty, too long, contains control characters, or is the reserved
    /// system key. Nothing was written.
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The values are not valid for the operation. Nothing was written.
    InvalidValue(ValueError),
    /// The instant cannot be bucketed (outside the years -9999..=9999). Nothing was written.
    Time(TimeError),
    /// The read spans more buckets than the configured limit.
    TooManyBuckets {
        /// The configured limit ([`MetricsStoreBuilder::max_buckets`](crate::metrics::MetricsStoreBuilder::max_buckets)).
        limit: usize,
    },
    /// The store was shut down; the call was refused and changed nothing.
    Closed,
    /// A call that only queues into the write buffer was made on a store built with
    /// [`buffer(Buffering::Off)`](crate::metrics::MetricsStoreBuilder::buffer). Nothing was written.
    Unbuffered,
    /// The driver failed. For a buffered write this is reported by `flush`/`shutdown`; the
    /// data stays in the buffer and is retried.
    Driver(DriverError),
    /// [`flush`](crate::metrics::MetricsStore::flush) on a [checkpointed](crate::metrics::MetricsStoreBuilder::checkpointed)
    /// store, which writes only on [`commit`](crate::metrics::MetricsStore::commit). Nothing was written.
    Checkpointed,
    /// [`commit`](crate::metrics::MetricsStore::commit) on a store that numbers its own batches (not built
    /// with [`checkpointed`](crate::metrics::MetricsStoreBuilder::checkpointed)). Nothing was written.
    NotCheckpointed,
    /// A [`commit`](crate::metrics::MetricsStore::commit) whose seq is not above the last one committed (or
    /// is below a failed commit, which must be retried first). Nothing was written and the
    /// tracked data is still pending.
    CommitOrder {
        /// The seq asked for.
        seq: u64,
        /// The last seq committed (or the failed one); 0 before any commit.
        last: u64,
    },
    /// Shutdown could not write everything: the batches are handed back here, in order, so
    /// nothing is lost silently. Each carries its id; writing them again through a driver is
    /// idempotent.
    Unflushed {
        /// The batches that were not written.
        batches: Vec<crate::metrics::driver::WriteBatch>,
        /// The last driver error.
        source: DriverError,
    },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey { key, reason } => write!(f, "invalid metric key {key:?}: {reason}"),
            Self::InvalidValue(_) => f.write_str("invalid values"),
            Self::Time(e) => e.fmt(f),
            Self::TooManyBuckets { limit } => {
                write!(
                    f,
                    "the range spans more than {limit} buckets (raise max_buckets or narrow it)"
                )
            }
            Self::Closed => f.write_str("the metrics store has been shut down"),
            Self::Unbuffered => f.write_str(
                "this call needs the write buffer, but the metrics store was built with buffer(Buffering::Off)",
            ),
            Self::Checkpointed => f.write_str(
                "this metrics store is checkpointed: it writes only on commit(seq), never on flush",
            ),
            Self::NotCheckpointed => f.write_str(
                "commit(seq) needs a checkpointed metrics store (MetricsStoreBuilder::checkpointed)",
            ),
            Self::CommitOrder { seq, last } => write!(
                f,
                "commit seq {seq} is not above the last committed seq {last}: nothing was written"
            ),
            Self::Driver(_) => f.write_str("driver error"),
            Self::Unflushed { batches, .. } => write!(
                f,
                "{} batch(es) could not be written at shutdown",
                batches.len()
            ),
        }
    }
}

impl Error for MetricsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::InvalidValue(e) => Some(e),
            // Transparent: its text is the inner error's, so its cause is the inner one's.
            Self::Time(e) => e.source(),
            Self::Driver(e) | Self::Unflushed { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl From<ValueError> for MetricsError {
    fn from(e: ValueError) -> Self {
        Self::InvalidValue(e)
    }
}

impl From<TimeError> for MetricsError {
    fn from(e: TimeError) -> Self {
        Self::Time(e)
    }
}

impl From<DriverError> for MetricsError {
    fn from(e: DriverError) -> Self {
        Self::Driver(e)
    }
}

/// An invalid [`MetricsStoreBuilder`](crate::metrics::MetricsStoreBuilder) setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unknown time zone name.
    TimeZone(TimeZoneError),
    /// A configured granularity does not parse (strict mode).
    Granularity(GranularityError),
    /// The buffer size is zero.
    BufferSize,
    /// The asynchronous buffer needs a tokio runtime to run its flusher in: build inside one
    /// (or use [`BlockingMetricsStore`](crate::metrics::BlockingMetricsStore)).
    NoRuntime,
    /// `max_buckets` is zero.
    MaxBuckets,
    /// A [checkpointed](crate::metrics::MetricsStoreBuilder::checkpointed) store needs the write buffer: it
    /// collects what is written between two commits.
    CheckpointedUnbuffered,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimeZone(e) => e.fmt(f),
            Self::Granularity(e) => e.fmt(f),
            Self::BufferSize => f.write_str("buffer size must be at least 1 operation"),
            Self::NoRuntime => f.write_str(
                "the asynchronous buffer needs a tokio runtime: build the store inside one, turn buffer_async off, or use BlockingMetricsStore",
            ),
            Self::MaxBuckets => f.write_str("max_buckets must be at least 1"),
            Self::CheckpointedUnbuffered => f.write_str(
                "a checkpointed store needs the write buffer (it holds the writes between commits): remove buffer(Buffering::Off)",
            ),
        }
    }
}

impl Error for ConfigError {}

/// The family of a [`DriverError`]; tells the buffer whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverErrorKind {
    /// The database could not be reached, the connection dropped, or it is busy/locked:
    /// retrying later can succeed. The buffer keeps the batch and retries it first.
    Connection,
    /// The database refused the statement or the data (schema missing, constraint, type).
    /// Retrying as is will fail again; the buffer still keeps the batch (nothing is dropped)
    /// and reports the error at every flush.
    Rejected,
    /// Stored data could not be decoded.
    Corrupt,
    /// Anything else (a panicked worker, an internal error).
    Other,
}

/// A driver failure: a kind, a message, and the underlying error as `source()` (driver crates
/// stay out of the API).
#[derive(Debug)]
pub struct DriverError {
    kind: DriverErrorKind,
    message: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl DriverError {
    /// A new error of `kind`.
    pub fn new(kind: DriverErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A [`DriverErrorKind::Connection`] error.
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(DriverErrorKind::Connection, message)
    }

    /// A [`DriverErrorKind::Rejected`] error.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(DriverErrorKind::Rejected, message)
    }

    /// The kind.
    pub fn kind(&self) -> DriverErrorKind {
        self.kind
    }

    /// Whether retrying later can succeed ([`DriverErrorKind::Connection`]).
    pub fn is_retryable(&self) -> bool {
        self.kind == DriverErrorKind::Connection
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DriverErrorKind::Connection => "connection",
            DriverErrorKind::Rejected => "rejected",
            DriverErrorKind::Corrupt => "corrupt data",
            DriverErrorKind::Other => "error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl Error for DriverError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing() -> DriverError {
        DriverError::connection("cannot reach the database")
            .with_source(std::io::Error::other("connection refused"))
    }

    #[test]
    fn a_driver_error_keeps_its_cause_out_of_its_message() {
        let e = failing();
        assert_eq!(e.to_string(), "connection: cannot reach the database");
        assert_eq!(e.source().unwrap().to_string(), "connection refused");
        assert!(DriverError::rejected("no table").source().is_none());
    }

    #[test]
    fn a_metrics_error_with_a_cause_returns_it_from_source() {
        let e = MetricsError::Driver(failing());
        assert_eq!(e.to_string(), "driver error");
        let source = e.source().unwrap();
        assert_eq!(source.to_string(), "connection: cannot reach the database");
        assert_eq!(
            source.source().unwrap().to_string(),
            "connection refused",
            "the chain goes on below the driver error"
        );

        let e = MetricsError::Unflushed {
            batches: Vec::new(),
            source: failing(),
        };
        assert_eq!(
            e.to_string(),
            "0 batch(es) could not be written at shutdown"
        );
        assert!(!e.to_string().contains("cannot reach"));
        assert_eq!(
            e.source().unwrap().to_string(),
            "connection: cannot reach the database"
        );

        let e = MetricsError::InvalidValue(ValueError::NotFinite { path: "x".into() });
        assert_eq!(e.to_string(), "invalid values");
        assert_eq!(
            e.source().unwrap().to_string(),
            "\"x\" is not a finite number"
        );
    }

    #[test]
    fn a_transparent_variant_shows_the_inner_error_once() {
        let inner = TimeError::OutOfRange {
            local_seconds: i64::MAX,
        };
        let e = MetricsError::Time(inner.clone());
        assert_eq!(e.to_string(), inner.to_string());
        assert!(
            e.source().is_none(),
            "the inner error is the message, not a cause"
        );
    }
}
