//! [`Calendar`]: a time zone plus a first day of the week, and the DST-aware conversion of a
//! local wall-clock boundary back to an instant.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::civil::{SECS_PER_DAY, civil_from_days};
use super::error::{TimeError, TimeZoneError};

/// The calendar buckets are counted in: an IANA time zone (from jiff's bundled database, so it
/// works without `/usr/share/zoneinfo`) and the first day of the week.
///
/// All bucket arithmetic lives here: [`floor`](Self::floor), [`add`](Self::add),
/// [`next_bucket`](Self::next_bucket), [`timeline`](Self::timeline), and the continuous bucket
/// numbering [`index`](Self::index) / [`start_of`](Self::start_of) that windowed counters
/// share (consecutive buckets, consecutive integers).
///
/// Cloning is cheap (the zone is reference-counted).
///
/// # Bucket rules
///
/// A bucket boundary is computed on the **local wall clock**: `n` seconds inside the minute,
/// minutes inside the hour, hours inside the day, days inside the year (`7d` starts Jan 1, 8, 15,
/// …; the last bucket of a year is short), weeks from the year's first configured weekday (the
/// days before it form a partial week 0 that starts on January 1), months and quarters inside
/// the year, years on the absolute year number (`10y` → 2020, 2030). Counts larger than their
/// anchor (`90s`, `25h`) mean one bucket per anchor period.
///
/// The boundary then becomes an instant through the zone's rules. Daylight saving time:
///
/// * **Spring forward** (a local hour is skipped): a boundary inside the gap starts at the
///   transition instant. An hourly timeline skips the missing hour; the day still starts at its
///   (possibly clamped) midnight.
/// * **Fall back** (a local hour repeats): a repeated boundary is resolved to the occurrence
///   with the instant's own UTC offset, so each occurrence of a repeated hour is its own `1h`
///   bucket and an hourly timeline holds both. A repeated *midnight* (America/Havana) likewise
///   gives that date a one-hour first bucket. When the repeat covers only part of a bucket and
///   the wall clock had already left it (Lord_Howe's 30-minute change with `7m`, Newfoundland's
///   old 00:01 changes), the repeated stretch starts a bucket at the change, so every bucket is
///   one contiguous interval.
/// * Daily and longer buckets stay on local calendar boundaries whatever the offset.
///
/// The timeline steps with [`Calendar::next_bucket`], which takes the smallest of a few floored
/// candidates (one `add`, the wall clock plus `n` units, the next anchor period, the first
/// boundary after an offset change). So every bucket the write side can produce between two
/// instants is on the read side's timeline, and nothing else is: `floor(t) <= t`,
/// `floor(floor(t)) == floor(t)`, `floor(t)` is on `timeline(from, to)` for `from <= t <= to`,
/// and the bucket of `b` covers exactly `[b, next_bucket(b))`. These are property-tested over
/// DST zones including 30-minute shifts (Australia/Lord_Howe) and midnight transitions.
///
/// Sub-second parts are dropped by `floor`. The zone is not stored anywhere: changing it for an
/// existing data set moves every boundary.
///
/// # Examples
///
/// ```
/// use accrue::time::Calendar;
/// use jiff::Timestamp;
///
/// let cal = Calendar::from_name("Europe/Bratislava").unwrap();
/// let t: Timestamp = "2024-03-15T13:47:12Z".parse().unwrap();
/// let day = cal.floor(t, "1d".parse().unwrap()).unwrap();
/// assert_eq!(day.to_string(), "2024-03-14T23:00:00Z"); // 2024-03-15 00:00+01:00
/// ```
#[derive(Clone, PartialEq)]
pub struct Calendar {
    pub(super) tz: TimeZone,
    /// `Some` for zones with one fixed offset (UTC, `Etc/GMT-4`): no lookups needed.
    pub(super) fixed: Option<i32>,
    pub(super) week_start: Weekday,
}

/// How [`Calendar::resolve`] treats a local time inside a gap (skipped by a forward shift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gap {
    /// The first instant whose wall clock is at or after the local time: the transition.
    Clamp,
    /// Interpret with the offset before the gap, i.e. move forward by the gap's length.
    Shift,
}

impl Calendar {
    /// A calendar in `tz` with weeks starting on Monday.
    ///
    /// ```
    /// let cal = accrue::time::Calendar::new(jiff::tz::TimeZone::UTC);
    /// assert_eq!(cal.week_start(), jiff::civil::Weekday::Monday);
    /// ```
    pub fn new(tz: TimeZone) -> Self {
        let fixed = tz.to_fixed_offset().ok().map(|o| o.seconds());
        Self {
            tz,
            fixed,
            week_start: Weekday::Monday,
        }
    }

    /// A UTC calendar with weeks starting on Monday.
    pub fn utc() -> Self {
        Self::new(TimeZone::UTC)
    }

    /// A calendar in the IANA zone `name` (`"UTC"`, `"GMT"`, `"Europe/Bratislava"`), looked up
    /// in the bundled time zone database.
    ///
    /// # Errors
    ///
    /// [`TimeZoneError`] naming the zone when it is unknown.
    ///
    /// ```
    /// let err = accrue::time::Calendar::from_name("Invalid/Timezone").unwrap_err();
    /// assert_eq!(err.name(), "Invalid/Timezone");
    /// ```
    pub fn from_name(name: &str) -> Result<Self, TimeZoneError> {
        TimeZone::get(name)
            .map(Self::new)
            .map_err(|e| TimeZoneError::new(name, e))
    }

    /// Sets the first day of the week (used by `w` granularities and [`Unit::Week`] indexes).
    ///
    /// [`Unit::Week`]: crate::time::Unit::Week
    #[must_use]
    pub fn with_week_start(mut self, first_day: Weekday) -> Self {
        self.week_start = first_day;
        self
    }

    /// The time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first day of the week.
    pub fn week_start(&self) -> Weekday {
        self.week_start
    }

    /// UTC offset in seconds at Unix second `unix`.
    #[inline]
    pub(super) fn offset_at(&self, unix: i64) -> i32 {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        match Timestamp::from_second(unix) {
            Ok(ts) => self.tz.to_offset(ts).seconds(),
            Err(_) => self.tz.to_offset(clamp_ts(unix)).seconds(),
        }
    }

    /// Converts a local wall-clock time (seconds since 1970-01-01T00:00 local) to a Unix second.
    ///
    /// * unambiguous → its instant;
    /// * repeated (fold) → the occurrence with offset `prefer` if it is one of the two, else the
    ///   earlier occurrence;
    /// * skipped (gap) → per `gap`.
    pub(super) fn resolve(
        &self,
        local: i64,
        prefer: Option<i32>,
        gap: Gap,
    ) -> Result<i64, TimeError> {
        if let Some(fixed) = self.fixed {
            return Ok(local - i64::from(fixed));
        }
        let dt = civil_datetime(local)?;
        Ok(match self.tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => local - i64::from(offset.seconds()),
            AmbiguousOffset::Fold { before, after } => {
                let (b, a) = (before.seconds(), after.seconds());
                match prefer {
                    Some(p) if p == a => local - i64::from(a),
                    Some(p) if p == b => local - i64::from(b),
                    _ => (local - i64::from(b)).min(local - i64::from(a)),
                }
            }
            AmbiguousOffset::Gap { before, after } => {
                let shifted = local - i64::from(before.seconds());
                match gap {
                    Gap::Shift => shifted,
                    Gap::Clamp => {
                        // The transition T satisfies local - after < T <= local - before.
                        let lower = local - i64::from(after.seconds());
                        Timestamp::from_second(lower)
                            .ok()
                            .and_then(|ts| self.tz.following(ts).next())
                            .map(|tr| tr.timestamp().as_second())
                            .filter(|&t| t > lower && t <= shifted)
                            .unwrap_or(shifted)
                    }
                }
            }
        })
    }
}

/// Largest Unix second not after `t` (sub-second parts are dropped toward the past).
#[inline]
pub(super) fn unix_floor(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() < 0 { s - 1 } else { s }
}

/// The Unix second `s` as a timestamp.
pub(super) fn ts(s: i64) -> Result<Timestamp, TimeError> {
    Timestamp::from_second(s).map_err(|_| TimeError::OutOfRange { local_seconds: s })
}

fn clamp_ts(s: i64) -> Timestamp {
    if s < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    }
}

/// The civil date-time of a local-seconds value, checked against jiff's range.
fn civil_datetime(local: i64) -> Result<DateTime, TimeError> {
    let days = local.div_euclid(SECS_PER_DAY);
    let sod = local.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let out = || TimeError::OutOfRange {
        local_seconds: local,
    };
    let year = i16::try_from(y).map_err(|_| out())?;
    DateTime::new(
        year,
        m as i8,
        d as i8,
        (sod / 3600) as i8,
        (sod % 3600 / 60) as i8,
        (sod % 60) as i8,
        0,
    )
    .map_err(|_| out())
}

/// Checks that a local-seconds value lies in the representable civil range.
pub(super) fn check_local(local: i64) -> Result<i64, TimeError> {
    const MIN: i64 = -377_705_116_800; // -9999-01-01T00:00
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59
    if (MIN..=MAX).contains(&local) {
        Ok(local)
    } else {
        Err(TimeError::OutOfRange {
            local_seconds: local,
        })
    }
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calendar")
            .field("time_zone", &self.tz.iana_name().unwrap_or("<unnamed>"))
            .field("week_start", &self.week_start)
            .finish()
    }
}
