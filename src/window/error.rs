//! Errors of the windowed counters.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use super::calendar::{Unit, UnitExt};
use super::limit::Rule;

/// Everything that can go wrong in [`WindowStore`](crate::window::WindowStore): invalid configuration,
/// invalid input (refused before anything changes), a denied rate limit, and storage failures.
#[derive(Debug)]
#[non_exhaustive]
pub enum WindowError {
    /// a record was given an instant after the store's clock. Nothing was recorded.
    FutureEvent {
        /// The instant given.
        at: Timestamp,
        /// The clock's instant.
        now: Timestamp,
    },
    /// A unit was configured with zero buckets or more than 100 000.
    InvalidBucketCount {
        /// The unit.
        unit: Unit,
        /// The count asked for.
        count: usize,
    },
    /// The builder was told to track no unit at all.
    NoUnits,
    /// The time zone has no name that could be stored with the data (a zone built from a
    /// POSIX string); use an IANA zone or a fixed offset.
    UnnamedTimeZone,
    /// Persisted data names a time zone this build does not know.
    UnknownTimeZone(String),
    /// A rule or query names a unit the store does not track.
    UnitNotTracked(Unit),
    /// A rule's window is longer than the unit's ring.
    WindowTooLong {
        /// The unit.
        unit: Unit,
        /// Buckets asked for.
        count: usize,
        /// Buckets tracked.
        tracked: usize,
    },
    /// A rule's window is a duration no tracked fixed-length unit can hold.
    SpanNotTracked(Duration),
    /// A rule's window is empty (zero buckets or a zero duration).
    EmptyWindow,
    /// A schedule hour out of range (start 0-23, end 1-24).
    InvalidHour(u8),
    /// A schedule whose start and end hours are equal.
    InvalidHourRange(u8, u8),
    /// A rate-limit rule denied the event.
    LimitExceeded(LimitExceeded),
    /// `persist`, `persist_all` or `compact` on a store without storage.
    NoStorage,
    /// `auto_persist` without `with_storage`.
    AutoPersistRequiresStorage,
    /// `auto_persist` with a zero interval.
    InvalidAutoPersistInterval,
    /// `auto_persist` outside a tokio runtime.
    NoRuntime,
    /// The storage backend failed.
    Storage(StorageError),
    /// Persisted bytes could not be decoded.
    Decode(String),
}

impl WindowError {
    /// The denial details when this is [`WindowError::LimitExceeded`].
    pub fn as_limit_exceeded(&self) -> Option<&LimitExceeded> {
        match self {
            Self::LimitExceeded(e) => Some(e),
            _ => None,
        }
    }

    /// How long to wait before the denied event could be admitted, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.as_limit_exceeded().and_then(|e| e.retry_after)
    }
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FutureEvent { at, now } => write!(
                f,
                "future events cannot be recorded ({at} is after the clock's {now})"
            ),
            Self::InvalidBucketCount { unit, count } => write!(
                f,
                "invalid bucket count: {} must track between 1 and {} buckets (got {count})",
                unit.name(),
                super::MAX_BUCKETS
            ),
            Self::NoUnits => f.write_str("no time unit tracked: track at least one unit"),
            Self::UnnamedTimeZone => f.write_str(
                "the time zone has no storable name: use an IANA zone or a fixed offset",
            ),
            Self::UnknownTimeZone(name) => write!(f, "unknown time zone in stored data: {name}"),
            Self::UnitNotTracked(unit) => write!(
                f,
                "{} are not tracked by this store (see the builder's track_*)",
                unit.name()
            ),
            Self::WindowTooLong {
                unit,
                count,
                tracked,
            } => write!(
                f,
                "window of {count} {} is longer than the {tracked} tracked",
                unit.name()
            ),
            Self::SpanNotTracked(d) => write!(
                f,
                "no tracked unit of fixed length (seconds to weeks) holds a window of {d:?}"
            ),
            Self::EmptyWindow => f.write_str("a window must cover at least one bucket"),
            Self::InvalidHour(h) => write!(f, "invalid hour: {h} (start 0-23, end 1-24)"),
            Self::InvalidHourRange(s, e) => write!(
                f,
                "invalid hour range: start_hour {s} == end_hour {e} (the range would be empty)"
            ),
            Self::LimitExceeded(e) => e.fmt(f),
            Self::NoStorage => f.write_str("storage error: No storage configured"),
            Self::AutoPersistRequiresStorage => f.write_str(
                "auto_persist requires storage to be configured - use with_storage() or remove auto_persist()",
            ),
            Self::InvalidAutoPersistInterval => {
                f.write_str("auto_persist interval must be greater than zero")
            }
            Self::NoRuntime => {
                f.write_str("auto_persist must be built inside a tokio runtime (none is running)")
            }
            Self::Storage(_) => f.write_str("storage error"),
            Self::Decode(msg) => write!(f, "cannot decode stored counter: {msg}"),
        }
    }
}

impl Error for WindowError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for WindowError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// A denied rate limit: which key, which rule, and when to retry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LimitExceeded {
    /// The key that was checked, recorded or reserved.
    pub key: super::key::KeyName,
    /// The rule that denied it (the one with the longest wait when several did).
    pub rule: Rule,
    /// How long until the rule could admit the event: the time until enough counted events
    /// leave an `at_most` window (pending reservations counted as if committed now: a
    /// cancelled one frees its slot sooner), the rest of a cooldown, the time until a schedule
    /// opens. `None` when no wait helps by itself (an `at_least` or `within` prerequisite, more
    /// events asked at once than the limit, a custom schedule).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit exceeded for event {:?}: {}",
            self.key, self.rule
        )?;
        if let Some(d) = self.retry_after {
            write!(f, " (retry after {d:?})")?;
        }
        Ok(())
    }
}

/// A storage backend failure, with its cause.
#[derive(Debug)]
pub struct StorageError {
    context: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl StorageError {
    /// A failure described by `context`, caused by `source`.
    pub fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A failure with a message only.
    pub fn msg(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl Error for StorageError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_is_a_chain_of_causes_each_printed_once() {
        let io = std::io::Error::other("no space left on device");
        let e = WindowError::from(StorageError::new("cannot append to c.log", io));
        assert_eq!(e.to_string(), "storage error");
        let storage = e.source().unwrap();
        assert_eq!(storage.to_string(), "cannot append to c.log");
        assert_eq!(
            storage.source().unwrap().to_string(),
            "no space left on device"
        );
        assert!(storage.source().unwrap().source().is_none());

        let e = StorageError::msg("not a counter log");
        assert_eq!(e.to_string(), "not a counter log");
        assert!(e.source().is_none());
    }
}
