//! [`WindowStoreBuilder`].

use std::fmt;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;

use super::calendar::{Calendar, Unit};
use super::clock::{Clock, SystemClock};
use super::error::WindowError;
use super::ring::Layout;
use super::shards::Inner;
use super::store::WindowStore;
use crate::sync::Arc;

/// The default rings: 60 minutes, 72 hours, 56 days, 52 weeks, 12 months, 4 years.
const DEFAULT_UNITS: [(Unit, usize); 6] = [
    (Unit::Minute, 60),
    (Unit::Hour, 72),
    (Unit::Day, 56),
    (Unit::Week, 52),
    (Unit::Month, 12),
    (Unit::Year, 4),
];

/// Configures an [`WindowStore`]: which units to track and how many buckets each, the time
/// zone and first weekday of the calendar, the clock, and (with `window-persist`) storage.
///
/// Units not named keep no ring; naming none gives the default rings. Naming a unit twice
/// keeps the last count. Everything is validated by [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use accrue::{time::Unit, window::WindowStore};
/// use jiff::{civil::Weekday, tz::TimeZone};
///
/// let store = WindowStore::builder()
///     .track_seconds(120)
///     .track_minutes(120)
///     .track_days(90)
///     .time_zone(TimeZone::get("Europe/Paris").unwrap())
///     .week_start(Weekday::Sunday)
///     .build()?;
/// assert_eq!(
///     store.tracked_intervals(),
///     vec![(Unit::Second, 120), (Unit::Minute, 120), (Unit::Day, 90)]
/// );
/// assert!(WindowStore::builder().track_days(0).build().is_err());
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[must_use = "a builder does nothing until build()"]
pub struct WindowStoreBuilder {
    units: Vec<(Unit, usize)>,
    zone: TimeZone,
    week_start: Weekday,
    clock: std::sync::Arc<dyn Clock>,
    shards: usize,
    #[cfg(feature = "window-persist")]
    pub(crate) persist: super::persist::PersistConfig,
}

impl fmt::Debug for WindowStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowStoreBuilder")
            .field("units", &self.units)
            .field("zone", &self.zone.iana_name())
            .field("week_start", &self.week_start)
            .finish_non_exhaustive()
    }
}

impl WindowStoreBuilder {
    pub(crate) fn new() -> Self {
        Self {
            units: Vec::new(),
            zone: TimeZone::UTC,
            week_start: Weekday::Monday,
            clock: std::sync::Arc::new(SystemClock),
            shards: (crate::sync::available_parallelism() * 8)
                .next_power_of_two()
                .clamp(16, 1024),
            #[cfg(feature = "window-persist")]
            persist: super::persist::PersistConfig::default(),
        }
    }

    /// Tracks `buckets` buckets of `unit` (1 to 100 000).
    pub fn track(mut self, unit: Unit, buckets: usize) -> Self {
        self.units.push((unit, buckets));
        self
    }

    /// Tracks `n` seconds.
    pub fn track_seconds(self, n: usize) -> Self {
        self.track(Unit::Second, n)
    }

    /// Tracks `n` minutes.
    pub fn track_minutes(self, n: usize) -> Self {
        self.track(Unit::Minute, n)
    }

    /// Tracks `n` hours.
    pub fn track_hours(self, n: usize) -> Self {
        self.track(Unit::Hour, n)
    }

    /// Tracks `n` days.
    pub fn track_days(self, n: usize) -> Self {
        self.track(Unit::Day, n)
    }

    /// Tracks `n` weeks.
    pub fn track_weeks(self, n: usize) -> Self {
        self.track(Unit::Week, n)
    }

    /// Tracks `n` months.
    pub fn track_months(self, n: usize) -> Self {
        self.track(Unit::Month, n)
    }

    /// Tracks `n` quarters.
    pub fn track_quarters(self, n: usize) -> Self {
        self.track(Unit::Quarter, n)
    }

    /// Tracks `n` years.
    pub fn track_years(self, n: usize) -> Self {
        self.track(Unit::Year, n)
    }

    /// Replaces the units with 60 minutes and 72 hours (132 buckets, 1 KiB of counts).
    pub fn for_rate_limiting(mut self) -> Self {
        self.units = vec![(Unit::Minute, 60), (Unit::Hour, 72)];
        self
    }

    /// Replaces the units with 56 days, 52 weeks and 12 months.
    pub fn for_analytics(mut self) -> Self {
        self.units = vec![(Unit::Day, 56), (Unit::Week, 52), (Unit::Month, 12)];
        self
    }

    /// The zone whose civil calendar day, week, month, quarter and year buckets follow, and
    /// schedules are read in. Default UTC; the process's local zone is never used.
    pub fn time_zone(mut self, zone: TimeZone) -> Self {
        self.zone = zone;
        self
    }

    /// The first day of week buckets. Default Monday.
    pub fn week_start(mut self, day: Weekday) -> Self {
        self.week_start = day;
        self
    }

    /// The clock (default [`SystemClock`]); a [`TestClock`](crate::window::TestClock) for tests.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = std::sync::Arc::new(clock);
        self
    }

    /// A shared clock.
    pub fn with_shared_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Number of key-map shards (rounded up to a power of two). Default: 8 per CPU, 16 to
    /// 1024.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Validates and builds the store.
    ///
    /// # Errors
    ///
    /// [`WindowError::InvalidBucketCount`] for a unit with 0 or more than 100 000 buckets,
    /// [`WindowError::UnnamedTimeZone`] for a zone that cannot be stored; with persistence,
    /// [`WindowError::AutoPersistRequiresStorage`] and friends.
    pub fn build(self) -> Result<WindowStore, WindowError> {
        let units: &[(Unit, usize)] = if self.units.is_empty() {
            &DEFAULT_UNITS
        } else {
            &self.units
        };
        let layout = Layout::new(units)?;
        let cal = Calendar::new(self.zone, self.week_start)?;
        #[cfg(feature = "window-persist")]
        {
            let (persistence, auto) = self.persist.build()?;
            let inner = Arc::new(Inner::new(
                layout,
                cal,
                self.clock,
                self.shards,
                persistence,
            ));
            #[cfg(all(feature = "window-tokio", not(accrue_loom)))]
            let auto_persist = auto
                .map(|interval| super::persist::AutoPersist::spawn(&inner, interval))
                .transpose()?;
            #[cfg(not(all(feature = "window-tokio", not(accrue_loom))))]
            let _ = auto;
            Ok(WindowStore {
                inner,
                #[cfg(all(feature = "window-tokio", not(accrue_loom)))]
                auto_persist,
            })
        }
        #[cfg(not(feature = "window-persist"))]
        {
            Ok(WindowStore {
                inner: Arc::new(Inner::new(layout, cal, self.clock, self.shards)),
            })
        }
    }
}
