//! The read side's axis: [`Calendar::next_bucket`] and the [`Timeline`] iterator.

use std::fmt;
use std::iter::FusedIterator;

use jiff::Timestamp;

use super::calendar::{Calendar, Gap, check_local, ts, unix_floor};
use super::civil::SECS_PER_DAY;
use super::error::TimeError;

/// Whether a series over a range of buckets lists the buckets with nothing stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Blanks {
    /// Every bucket of the range, an empty one as an empty map (the default).
    #[default]
    Keep,
    /// Only buckets that hold something.
    Skip,
}
use super::granularity::{Granularity, Unit};

impl Calendar {
    /// The start of the bucket that follows the one containing `t`: the smallest bucket start
    /// of `g` greater than `floor(t)`.
    ///
    /// Plain `add` does not always land on a bucket (`33m` restarts every hour, the last `7d`
    /// bucket of a year is short, `1w` has a partial week 0, a fall-back day has a 25-hour
    /// bucket). The step takes the smallest of these candidates, each floored:
    ///
    /// 1. `add(b, g)` — elapsed for `s/m/h`, calendar otherwise (catches the second occurrence of
    ///    a repeated hour);
    /// 2. for `s/m/h`: the next wall-clock boundary after `b`'s wall clock (buckets longer than
    ///    `n` elapsed units; buckets that start at an offset change, off the boundary grid);
    /// 3. the start of the next anchor period (minute, hour, day, year);
    /// 4. for every UTC-offset change `T` before the best of 1–3: the bucket of `T` itself (a
    ///    boundary skipped or repeated by the change starts there: the second midnight of a
    ///    Havana fall-back day), and for `s/m/h` the first wall-clock boundary at or after `T`'s
    ///    local time (30-minute shifts such as Australia/Lord_Howe).
    ///
    /// Together they make the timeline hold every bucket the write side can produce, and
    /// nothing else.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] when there is no representable next bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::time::Calendar;
    /// use jiff::Timestamp;
    ///
    /// let cal = Calendar::utc();
    /// let b: Timestamp = "2025-01-15T11:33:00Z".parse().unwrap();
    /// let next = cal.next_bucket(b, "33m".parse().unwrap()).unwrap();
    /// assert_eq!(next.to_string(), "2025-01-15T12:00:00Z");
    /// ```
    pub fn next_bucket(&self, t: Timestamp, g: Granularity) -> Result<Timestamp, TimeError> {
        let b = self.floor_unix(unix_floor(t), g)?;
        ts(self.next_unix(b, g)?)
    }

    /// The bucket after bucket start `b` (which must satisfy `floor(b) == b`).
    pub(super) fn next_unix(&self, b: i64, g: Granularity) -> Result<i64, TimeError> {
        let n = i64::from(g.count());
        let mut best: Option<i64> = None;
        let consider = |best: &mut Option<i64>, c: Result<i64, TimeError>| {
            if let Ok(c) = c
                && c > b
                && best.is_none_or(|x| c < x)
            {
                *best = Some(c);
            }
        };
        // 1. One step of `add`; for calendar units also the earlier occurrence of a repeated
        // result (the first pass of a repeated midnight is a bucket of its own).
        consider(
            &mut best,
            self.add_unix(b, g).and_then(|c| self.floor_unix(c, g)),
        );
        if g.unit().fixed_seconds().is_none() && self.fixed.is_none() {
            consider(
                &mut best,
                self.add_unix_with(b, g, false)
                    .and_then(|c| self.floor_unix(c, g)),
            );
        }
        if g.unit() == Unit::Week && n > 1 {
            // From the partial week 0 to the year's first configured weekday.
            let one = Granularity::one(Unit::Week);
            consider(
                &mut best,
                self.add_unix(b, one).and_then(|c| self.floor_unix(c, g)),
            );
        }
        let anchor = anchor_of(g.unit());
        if let (Some(unit_secs), Some(anchor)) = (g.unit().fixed_seconds(), anchor) {
            // 2. The next wall-clock boundary after b's wall clock, preferring b's offset.
            let offset = self.offset_at(b);
            let local = b + i64::from(offset);
            let next = next_boundary(self.floor_local(local, g), local, n * unit_secs, anchor);
            consider(
                &mut best,
                check_local(next)
                    .and_then(|local| self.resolve(local, Some(offset), Gap::Shift))
                    .and_then(|c| self.floor_unix(c, g)),
            );
        }
        // 3. Start of the next anchor period.
        if let Some(anchor) = anchor {
            let one = Granularity::one(anchor);
            consider(
                &mut best,
                self.floor_unix(b, one)
                    .and_then(|a| self.add_unix(a, one))
                    .and_then(|a| self.floor_unix(a, g)),
            );
        }
        // 4. Offset changes before the best candidate so far.
        if self.fixed.is_none() {
            let mut after = b;
            for _ in 0..MAX_CHANGES_PER_STEP {
                let Some(change) = self
                    .next_transition(after)
                    .filter(|&t| best.is_none_or(|x| t < x))
                else {
                    break;
                };
                after = change;
                // A boundary skipped or repeated by the change starts its bucket at the change.
                consider(&mut best, self.floor_unix(change, g));
                let (Some(unit_secs), Some(anchor)) = (g.unit().fixed_seconds(), anchor) else {
                    continue;
                };
                let offset = self.offset_at(change);
                let local = change + i64::from(offset);
                let boundary = self.floor_local(local, g);
                let boundary = if boundary < local {
                    next_boundary(boundary, local, n * unit_secs, anchor)
                } else {
                    boundary
                };
                consider(&mut best, self.floor_unix(boundary - i64::from(offset), g));
            }
        }
        best.ok_or(TimeError::OutOfRange {
            local_seconds: b.saturating_add(1),
        })
    }

    /// Unix second of the first UTC-offset change strictly after `unix`, if any.
    fn next_transition(&self, unix: i64) -> Option<i64> {
        let t = Timestamp::from_second(unix).ok()?;
        self.tz
            .following(t)
            .next()
            .map(|tr| tr.timestamp().as_second())
    }

    /// The bucket starts of `g` from `floor(from)` to `floor(to)`, both inclusive, as the read
    /// side (`values`) enumerates them: every bucket any write between `from` and `to` lands
    /// in, in order, and nothing else. Empty when `from > to`; a single point when both lie in
    /// one bucket.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] if `from` or `to` cannot be floored.
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::time::Calendar;
    /// use jiff::Timestamp;
    ///
    /// let cal = Calendar::utc();
    /// let from: Timestamp = "2025-01-15T10:00:00Z".parse().unwrap();
    /// let to: Timestamp = "2025-01-15T12:10:00Z".parse().unwrap();
    /// let points: Vec<String> = cal
    ///     .timeline(from, to, "33m".parse().unwrap())
    ///     .unwrap()
    ///     .map(|t| t.strftime("%H:%M").to_string())
    ///     .collect();
    /// assert_eq!(points, ["10:00", "10:33", "11:00", "11:33", "12:00"]);
    /// ```
    pub fn timeline(
        &self,
        from: Timestamp,
        to: Timestamp,
        g: Granularity,
    ) -> Result<Timeline, TimeError> {
        let (next, end) = if from > to {
            (None, 0)
        } else {
            let start = self.floor_unix(unix_floor(from), g)?;
            let end = self.floor_unix(unix_floor(to), g)?;
            (Some(start), end)
        };
        Ok(Timeline {
            calendar: self.clone(),
            granularity: g,
            next,
            end,
        })
    }
}

/// The wall-clock boundary after `boundary` (the boundary at or before local time `local`):
/// `step` seconds later, or the start of the next anchor period if that comes first.
fn next_boundary(boundary: i64, local: i64, step: i64, anchor: Unit) -> i64 {
    let anchor_secs = match anchor {
        Unit::Minute => 60,
        Unit::Hour => 3600,
        _ => SECS_PER_DAY,
    };
    let anchor_end = local - local.rem_euclid(anchor_secs) + anchor_secs;
    (boundary + step).min(anchor_end)
}

/// Offset changes examined per step: a year holds at most a handful (Casablanca's Ramadan
/// shifts make four).
const MAX_CHANGES_PER_STEP: usize = 8;

/// The anchor period inside which a unit's buckets are counted (`None` for years).
fn anchor_of(unit: Unit) -> Option<Unit> {
    match unit {
        Unit::Second => Some(Unit::Minute),
        Unit::Minute => Some(Unit::Hour),
        Unit::Hour => Some(Unit::Day),
        Unit::Day | Unit::Week | Unit::Month | Unit::Quarter => Some(Unit::Year),
        Unit::Year => None,
    }
}

/// Iterator over the bucket starts of a [`Calendar::timeline`], in increasing order.
#[derive(Clone)]
pub struct Timeline {
    calendar: Calendar,
    granularity: Granularity,
    next: Option<i64>,
    end: i64,
}

impl Iterator for Timeline {
    type Item = Timestamp;

    fn next(&mut self) -> Option<Timestamp> {
        let current = self.next.take().filter(|&c| c <= self.end)?;
        if current < self.end {
            self.next = self.calendar.next_unix(current, self.granularity).ok();
        }
        ts(current).ok()
    }
}

impl FusedIterator for Timeline {}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline")
            .field("granularity", &self.granularity)
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}
