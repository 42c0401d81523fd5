//! Errors of the time module.

use std::fmt;

/// An instant or bucket outside the range the calendar can represent.
///
/// Buckets are computed on civil dates between the years -9999 and 9999 (jiff's range); a floor,
/// step or bucket index that would leave it reports this error instead of wrapping or clamping.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// The computation reached a civil date-time outside -9999..=9999; carries the offending
    /// local time as seconds since 1970-01-01T00:00 (local wall clock).
    OutOfRange {
        /// Local wall-clock seconds since 1970-01-01T00:00 that could not be represented.
        local_seconds: i64,
    },
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { local_seconds } => write!(
                f,
                "time outside the supported range (years -9999..=9999): local second {local_seconds}"
            ),
        }
    }
}

impl std::error::Error for TimeError {}

/// A time zone name that is not in the bundled IANA database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneError {
    name: String,
    reason: String,
}

impl TimeZoneError {
    pub(crate) fn new(name: &str, reason: impl fmt::Display) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The name that was looked up.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TimeZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown time zone {:?} (use an IANA name such as \"UTC\" or \"Europe/Bratislava\"): {}",
            self.name, self.reason
        )
    }
}

impl std::error::Error for TimeZoneError {}
