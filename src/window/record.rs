//! [`Record`]: how many events one [`WindowStore::record_with`](super::WindowStore::record_with)
//! call records, and when they happened.

use std::time::Duration;

use jiff::Timestamp;

/// Events to record in one call: a count (1 by default) and when they happened (now by
/// default).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use accrue::window::{Record, TestClock, WindowStore};
///
/// let clock = TestClock::at("2025-03-05T12:30:40Z".parse().unwrap());
/// let store = WindowStore::builder().with_clock(clock).build()?;
/// store.record_with("bytes", Record::count(4096))?;
/// store.record_with("bytes", Record::count(10).ago(Duration::from_secs(30)))?;
/// store.record_with("bytes", Record::one().ago(Duration::from_secs(3600)))?;
/// assert_eq!(store.query("bytes").last_minutes(1).sum(), Some(4106));
/// assert_eq!(store.query("bytes").last_hours(2).sum(), Some(4107));
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Record {
    pub(super) count: u64,
    pub(super) when: When,
}

/// When the events of a [`Record`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    Now,
    At(Timestamp),
    Ago(Duration),
}

impl Record {
    /// One event, now.
    pub const fn one() -> Self {
        Self::count(1)
    }

    /// `count` events, now. Counts saturate at `u64::MAX`; a count of 0 records nothing.
    pub const fn count(count: u64) -> Self {
        Record {
            count,
            when: When::Now,
        }
    }

    /// The events happened at `at`. An instant after the store's clock is refused
    /// ([`WindowError::FutureEvent`](super::WindowError::FutureEvent)); one older than a ring
    /// is kept by the coarser rings that still cover it and dropped by the others.
    pub const fn at(self, at: Timestamp) -> Self {
        Record {
            when: When::At(at),
            ..self
        }
    }

    /// The events happened `ago` before the store's clock reading.
    pub const fn ago(self, ago: Duration) -> Self {
        Record {
            when: When::Ago(ago),
            ..self
        }
    }
}

impl Default for Record {
    fn default() -> Self {
        Record::one()
    }
}
