//! Where a store gets "now" from.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// A source of the current instant. The store reads it once per operation.
///
/// # Examples
///
/// ```
/// use accrue::window::{Clock, SystemClock};
///
/// let now = SystemClock.now();
/// assert!(now > "2020-01-01T00:00:00Z".parse().unwrap());
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> jiff::Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to, for deterministic tests. Clones share one instant.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use accrue::window::{Clock, TestClock};
///
/// let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
/// let other = clock.clone();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(other.now().to_string(), "2025-03-05T12:01:30Z");
/// clock.rewind(Duration::from_secs(30)); // clocks can go backwards too
/// assert_eq!(other.now().to_string(), "2025-03-05T12:01:00Z");
/// ```
#[derive(Clone)]
pub struct TestClock(std::sync::Arc<Mutex<Timestamp>>);

impl TestClock {
    /// A clock stopped at `t`.
    pub fn at(t: Timestamp) -> Self {
        Self(std::sync::Arc::new(Mutex::new(t)))
    }

    /// A clock stopped at the current system time.
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    /// Sets the instant.
    pub fn set(&self, t: Timestamp) {
        *self.lock() = t;
    }

    /// Moves the instant forward (saturating at the end of time).
    pub fn advance(&self, d: Duration) {
        let mut t = self.lock();
        *t = t.saturating_add(signed(d)).unwrap_or(Timestamp::MAX);
    }

    /// Moves the instant backward (saturating at the start of time).
    pub fn rewind(&self, d: Duration) {
        let mut t = self.lock();
        *t = t.saturating_sub(signed(d)).unwrap_or(Timestamp::MIN);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TestClock").field(&self.now()).finish()
    }
}

/// `d` as a signed duration, saturating.
pub(crate) fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// `later - earlier` as a duration, zero when `later` is not after `earlier`.
pub(crate) fn elapsed(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// `t - d`, clamped to the start of time.
pub(crate) fn before(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(signed(d)).unwrap_or(Timestamp::MIN)
}
