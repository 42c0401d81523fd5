//! Windows, and the store's calendar: a thin adapter over [`crate::time::Calendar`], the
//! crate's one implementation of "which bucket is this instant in".

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

pub(crate) use crate::time::Unit;

use super::error::WindowError;
use crate::time;

/// What windows need to know about a [`Unit`] beyond the calendar arithmetic.
pub(crate) trait UnitExt: Sized {
    /// Position in [`Unit::ALL`].
    fn ordinal(self) -> usize;
    #[cfg(feature = "window-persist")]
    fn from_ordinal(i: u8) -> Option<Self>;
    /// The lowercase plural name, as in messages and the JSON format.
    fn name(self) -> &'static str;
    #[cfg(feature = "window-persist")]
    fn from_name(s: &str) -> Option<Self>;
    /// The nominal length of a bucket for the units that have one (seconds to weeks, ignoring
    /// DST); `None` for months, quarters and years.
    fn fixed_length(self) -> Option<Duration>;
}

impl UnitExt for Unit {
    fn ordinal(self) -> usize {
        self as usize
    }

    #[cfg(feature = "window-persist")]
    fn from_ordinal(i: u8) -> Option<Self> {
        Unit::ALL.get(usize::from(i)).copied()
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Second => "seconds",
            Unit::Minute => "minutes",
            Unit::Hour => "hours",
            Unit::Day => "days",
            Unit::Week => "weeks",
            Unit::Month => "months",
            Unit::Quarter => "quarters",
            Unit::Year => "years",
        }
    }

    #[cfg(feature = "window-persist")]
    fn from_name(s: &str) -> Option<Self> {
        Unit::ALL.into_iter().find(|u| u.name() == s)
    }

    fn fixed_length(self) -> Option<Duration> {
        Some(Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
            Unit::Week => 604_800,
            _ => return None,
        }))
    }
}

/// The window of a rate-limit rule: a number of whole buckets of one unit, or a duration.
///
/// A window of `n` buckets is the current (partial) bucket plus the `n - 1` whole buckets
/// before it, aligned on the clock, not a sliding span ending now. A duration is converted when
/// the rule is checked, to the finest tracked unit of fixed length (seconds, minutes, hours,
/// days, weeks) whose ring can hold it, rounding the bucket count up: 90 minutes is 90 minute
/// buckets when 90 are tracked, else 2 hour buckets; 30 seconds is 30 second buckets, never
/// 30 minutes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use accrue::{time::Unit, window::Window};
///
/// let a: Window = Unit::Minute.into(); // the current minute
/// let b: Window = (7, Unit::Day).into(); // today and the 6 days before
/// let c: Window = Duration::from_secs(90).into(); // resolved against the store's rings
/// assert_ne!(a, b);
/// assert_ne!(b, c);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window(WindowKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WindowKind {
    Buckets(usize, Unit),
    Span(Duration),
}

impl Window {
    /// `count` buckets of `unit`, the current one included.
    pub fn buckets(count: usize, unit: Unit) -> Self {
        Self(WindowKind::Buckets(count, unit))
    }

    /// A duration, resolved against the store's rings when the rule is checked.
    pub fn span(duration: Duration) -> Self {
        Self(WindowKind::Span(duration))
    }

    /// Resolves to `(unit, bucket count)` against the tracked units.
    pub(crate) fn resolve(
        self,
        tracked: impl Fn(Unit) -> Option<usize>,
    ) -> Result<(Unit, usize), WindowError> {
        match self.0 {
            WindowKind::Buckets(0, _) => Err(WindowError::EmptyWindow),
            WindowKind::Buckets(count, unit) => match tracked(unit) {
                None => Err(WindowError::UnitNotTracked(unit)),
                Some(len) if count > len => Err(WindowError::WindowTooLong {
                    unit,
                    count,
                    tracked: len,
                }),
                Some(_) => Ok((unit, count)),
            },
            WindowKind::Span(d) if d.is_zero() => Err(WindowError::EmptyWindow),
            WindowKind::Span(d) => {
                for unit in Unit::ALL {
                    let (Some(step), Some(len)) = (unit.fixed_length(), tracked(unit)) else {
                        continue;
                    };
                    let count = d.as_nanos().div_ceil(step.as_nanos());
                    if count <= len as u128 {
                        return Ok((unit, count as usize));
                    }
                }
                Err(WindowError::SpanNotTracked(d))
            }
        }
    }
}

impl From<Unit> for Window {
    fn from(unit: Unit) -> Self {
        Self::buckets(1, unit)
    }
}

impl From<(usize, Unit)> for Window {
    fn from((count, unit): (usize, Unit)) -> Self {
        Self::buckets(count, unit)
    }
}

impl From<Duration> for Window {
    fn from(d: Duration) -> Self {
        Self::span(d)
    }
}

/// What identifies a calendar in persisted data: a store reading buckets written under another
/// zone or week start re-buckets them instead of copying indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CalendarId {
    pub(crate) zone: String,
    pub(crate) week_start: Weekday,
}

/// The store's calendar: the shared bucket arithmetic plus the zone for schedules.
#[derive(Clone, Debug)]
pub(crate) struct Calendar {
    inner: time::Calendar,
    zone: TimeZone,
    id: CalendarId,
    /// Index of `Timestamp::MIN` / `Timestamp::MAX` per unit: `start_of` clamps to them.
    min_index: [i64; 8],
    max_index: [i64; 8],
}

impl Calendar {
    pub(crate) fn new(zone: TimeZone, week_start: Weekday) -> Result<Self, WindowError> {
        let name = zone_name(&zone).ok_or(WindowError::UnnamedTimeZone)?;
        let inner = time::Calendar::new(zone.clone()).with_week_start(week_start);
        let mut min_index = [0; 8];
        let mut max_index = [0; 8];
        for unit in Unit::ALL {
            // A bucket of margin at each end keeps `start_of` inside the supported years.
            min_index[unit.ordinal()] = inner.index(Timestamp::MIN, unit) + 2;
            max_index[unit.ordinal()] = inner.index(Timestamp::MAX, unit) - 2;
        }
        Ok(Self {
            inner,
            zone,
            id: CalendarId {
                zone: name,
                week_start,
            },
            min_index,
            max_index,
        })
    }

    /// Rebuilds the calendar a snapshot was written under.
    pub(crate) fn from_id(id: &CalendarId) -> Result<Self, WindowError> {
        Self::new(zone_from_name(&id.zone)?, id.week_start)
    }

    #[cfg(all(test, not(accrue_loom)))]
    pub(crate) fn utc() -> Self {
        Self::new(TimeZone::UTC, Weekday::Monday).expect("UTC has a name")
    }

    pub(crate) fn id(&self) -> &CalendarId {
        &self.id
    }

    pub(crate) fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The index of the bucket of `unit` that contains `t`.
    #[inline]
    pub(crate) fn index(&self, t: Timestamp, unit: Unit) -> i64 {
        self.inner.index(t, unit)
    }

    /// The first instant of bucket `index`, clamped to jiff's range.
    pub(crate) fn start_of(&self, index: i64, unit: Unit) -> Timestamp {
        let i = unit.ordinal();
        if index < self.min_index[i] {
            Timestamp::MIN
        } else if index > self.max_index[i] + 1 {
            Timestamp::MAX
        } else {
            let fallback = if index < 0 {
                Timestamp::MIN
            } else {
                Timestamp::MAX
            };
            self.inner.start_of(index, unit).unwrap_or(fallback)
        }
    }
}

/// A name that [`zone_from_name`] turns back into the same zone.
pub(crate) fn zone_name(zone: &TimeZone) -> Option<String> {
    if let Some(name) = zone.iana_name() {
        return Some(name.to_owned());
    }
    let offset = zone.to_fixed_offset().ok()?;
    Some(format!("fixed:{}", offset.seconds()))
}

pub(crate) fn zone_from_name(name: &str) -> Result<TimeZone, WindowError> {
    if let Some(secs) = name.strip_prefix("fixed:") {
        let secs: i32 = secs
            .parse()
            .map_err(|_| WindowError::UnknownTimeZone(name.to_owned()))?;
        let offset = jiff::tz::Offset::from_seconds(secs)
            .map_err(|_| WindowError::UnknownTimeZone(name.to_owned()))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|_| WindowError::UnknownTimeZone(name.to_owned()))
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn consecutive_buckets_have_consecutive_indexes() {
        let cal = Calendar::new(TimeZone::get("Europe/Paris").unwrap(), Weekday::Monday).unwrap();
        for unit in Unit::ALL {
            let i = cal.index(ts("2025-03-05T12:00:00Z"), unit);
            let start = cal.start_of(i, unit);
            let next = cal.start_of(i + 1, unit);
            assert!(start <= ts("2025-03-05T12:00:00Z"), "{unit}");
            assert!(next > ts("2025-03-05T12:00:00Z"), "{unit}");
            assert_eq!(cal.index(next, unit), i + 1, "{unit}");
            assert_eq!(cal.index(start, unit), i, "{unit}");
        }
    }

    #[test]
    fn zone_names_round_trip() {
        for zone in [
            TimeZone::UTC,
            TimeZone::get("America/New_York").unwrap(),
            TimeZone::fixed(jiff::tz::offset(5)),
        ] {
            let name = zone_name(&zone).unwrap();
            let back = zone_from_name(&name).unwrap();
            assert_eq!(zone_name(&back).unwrap(), name);
        }
        assert!(zone_from_name("Not/AZone").is_err());
    }

    #[test]
    fn spans_resolve_to_the_finest_unit_that_holds_them_rounding_up() {
        let tracked = |u| match u {
            Unit::Minute => Some(60),
            Unit::Hour => Some(72),
            _ => None,
        };
        let w = |secs| Window::span(Duration::from_secs(secs)).resolve(tracked);
        assert_eq!(w(30).unwrap(), (Unit::Minute, 1));
        assert_eq!(w(90).unwrap(), (Unit::Minute, 2));
        assert_eq!(w(3600).unwrap(), (Unit::Minute, 60));
        assert_eq!(w(5400).unwrap(), (Unit::Hour, 2));
        assert!(matches!(w(73 * 3600), Err(WindowError::SpanNotTracked(_))));
        assert!(matches!(w(0), Err(WindowError::EmptyWindow)));
        assert!(matches!(
            Window::buckets(2, Unit::Day).resolve(tracked),
            Err(WindowError::UnitNotTracked(Unit::Day))
        ));
        assert!(matches!(
            Window::buckets(61, Unit::Minute).resolve(tracked),
            Err(WindowError::WindowTooLong { .. })
        ));
    }
}
