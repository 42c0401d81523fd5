//! `floor` (bucket start) and `add` (one step) on a [`Calendar`].

use jiff::Timestamp;

use super::calendar::{Calendar, Gap, check_local, ts, unix_floor};
use super::civil::{SECS_PER_DAY, add_months, civil_from_days, days_from_civil, weekday_monday0};
use super::granularity::{Granularity, Unit};

use super::error::TimeError;

impl Calendar {
    /// The start of the bucket of granularity `g` that contains `t`.
    ///
    /// The boundary is computed on the local wall clock (seconds inside the minute,
    /// minutes inside the hour, hours inside the day, days and weeks inside the year — the first
    /// bucket of `w` is the partial week from January 1 to the first configured weekday — months
    /// and quarters inside the year, years on the absolute year number), then turned back into an
    /// instant through the zone's rules:
    ///
    /// * a boundary that exists once is that instant;
    /// * a repeated boundary (fall-back) is the occurrence with the input's UTC offset (else the
    ///   earlier one), so both occurrences of a repeated hour are buckets of their own — and a
    ///   day whose midnight repeats (America/Havana) has a short first bucket for the first
    ///   pass of its midnight hour;
    /// * a skipped boundary (spring-forward gap) is the transition instant: the first instant
    ///   whose wall clock is at or after the boundary;
    /// * when a fall-back repeats only part of a bucket (30-minute shifts, changes at 00:01)
    ///   and the wall clock had already left that bucket before the change, the repeated stretch
    ///   is a bucket of its own starting at the change — so every bucket is one interval.
    ///
    /// So `floor(t) <= t`, `floor(floor(t)) == floor(t)`, and sub-second parts are dropped.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] near the ends of the years -9999..=9999.
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::time::Calendar;
    /// use jiff::Timestamp;
    ///
    /// let cal = Calendar::utc();
    /// let t: Timestamp = "2025-01-02T12:00:00Z".parse().unwrap(); // a Thursday
    /// // The partial week 0: January 1 until the first Monday.
    /// assert_eq!(cal.floor(t, "1w".parse().unwrap()).unwrap().to_string(), "2025-01-01T00:00:00Z");
    /// assert_eq!(cal.floor(t, "5h".parse().unwrap()).unwrap().to_string(), "2025-01-02T10:00:00Z");
    /// ```
    pub fn floor(&self, t: Timestamp, g: Granularity) -> Result<Timestamp, TimeError> {
        ts(self.floor_unix(unix_floor(t), g)?)
    }

    /// [`floor`](Self::floor) on Unix seconds.
    pub(super) fn floor_unix(&self, unix: i64, g: Granularity) -> Result<i64, TimeError> {
        let offset = self.offset_at(unix);
        let local = check_local(unix + i64::from(offset))?;
        let boundary = check_local(self.floor_local(local, g))?;
        let start = self.resolve(boundary, Some(offset), Gap::Clamp)?;
        if self.fixed.is_some() || self.offset_at(start) == offset {
            return Ok(start);
        }
        // The offset changed between the boundary and `unix`. If the wall clock had already
        // left this boundary's bucket when the change came (a fall-back that repeats only part
        // of a bucket: Lord_Howe's 30 minutes, Newfoundland's 00:01), the wall clock re-enters
        // the bucket's range from the change on: that stretch is a bucket of its own, starting
        // at the change. Otherwise the bucket simply spans the change.
        let change = Timestamp::from_second(unix.saturating_add(1))
            .ok()
            .and_then(|t| self.tz.preceding(t).next())
            .map(|tr| tr.timestamp().as_second());
        if let Some(change) = change.filter(|&c| c > start) {
            let before = change - 1 + i64::from(self.offset_at(change - 1));
            if self.floor_local(before, g) != boundary {
                return Ok(change);
            }
        }
        Ok(start)
    }

    /// The local boundary (local seconds) of the bucket holding local time `local`.
    pub(super) fn floor_local(&self, local: i64, g: Granularity) -> i64 {
        let n = i64::from(g.count());
        match g.unit() {
            Unit::Second => {
                let sec = local.rem_euclid(60);
                local - sec + sec / n * n
            }
            Unit::Minute => {
                let in_hour = local.rem_euclid(3600);
                local - in_hour + in_hour / 60 / n * n * 60
            }
            Unit::Hour => {
                let in_day = local.rem_euclid(SECS_PER_DAY);
                local - in_day + in_day / 3600 / n * n * 3600
            }
            Unit::Day => {
                let day = local.div_euclid(SECS_PER_DAY);
                let jan1 = jan1_of(day);
                (jan1 + (day - jan1) / n * n) * SECS_PER_DAY
            }
            Unit::Week => {
                let day = local.div_euclid(SECS_PER_DAY);
                let jan1 = jan1_of(day);
                let first = jan1 + self.days_until_week_start(jan1);
                if day < first {
                    jan1 * SECS_PER_DAY
                } else {
                    (first + (day - first) / 7 / n * n * 7) * SECS_PER_DAY
                }
            }
            Unit::Month | Unit::Quarter => {
                let (y, m, _) = civil_from_days(local.div_euclid(SECS_PER_DAY));
                let months = if g.unit() == Unit::Month { n } else { n * 3 };
                let m0 = (m - 1) / months * months;
                days_from_civil(y, m0 + 1, 1) * SECS_PER_DAY
            }
            Unit::Year => {
                let (y, _, _) = civil_from_days(local.div_euclid(SECS_PER_DAY));
                days_from_civil(y.div_euclid(n) * n, 1, 1) * SECS_PER_DAY
            }
        }
    }

    /// Days from day number `day` to the next configured first weekday (0 if it is one).
    pub(super) fn days_until_week_start(&self, day: i64) -> i64 {
        (i64::from(self.week_start.to_monday_zero_offset()) - weekday_monday0(day)).rem_euclid(7)
    }

    /// `t` plus one step of `g`:
    ///
    /// * `s`, `m`, `h`: elapsed time (`n × 1 s/60 s/3600 s`);
    /// * `d`, `w`: `n` (× 7) calendar days, keeping the wall clock;
    /// * `mo`, `q`, `y`: `n` (× 3, × 12) months, the day clamped to the target month's length
    ///   (Jan 31 + `1mo` = Feb 28/29, Feb 29 + `1y` = Feb 28).
    ///
    /// A calendar result that is repeated by a fall-back keeps `t`'s offset when it can (else the
    /// earlier occurrence); one skipped by a spring-forward gap moves forward by the gap's length.
    /// Sub-second parts are kept.
    ///
    /// `add` is not the timeline step: `add(11:33, 33m)` is 12:06, but the next `33m` bucket is
    /// 12:00 (buckets restart every hour). Use [`next_bucket`](Self::next_bucket) to walk buckets.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] when the result leaves the years -9999..=9999.
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::time::Calendar;
    /// use jiff::Timestamp;
    ///
    /// let cal = Calendar::from_name("Europe/Bratislava").unwrap();
    /// let t: Timestamp = "2026-03-28T11:00:00Z".parse().unwrap(); // 12:00+01:00
    /// // One calendar day later is 12:00+02:00: 23 elapsed hours across the DST change.
    /// assert_eq!(cal.add(t, "1d".parse().unwrap()).unwrap().to_string(), "2026-03-29T10:00:00Z");
    /// assert_eq!(cal.add(t, "24h".parse().unwrap()).unwrap().to_string(), "2026-03-29T11:00:00Z");
    /// ```
    pub fn add(&self, t: Timestamp, g: Granularity) -> Result<Timestamp, TimeError> {
        let unix = unix_floor(t);
        let nanos = t.subsec_nanosecond().rem_euclid(1_000_000_000);
        let out = self.add_unix(unix, g)?;
        Timestamp::new(out, nanos).map_err(|_| TimeError::OutOfRange { local_seconds: out })
    }

    pub(super) fn add_unix(&self, unix: i64, g: Granularity) -> Result<i64, TimeError> {
        self.add_unix_with(unix, g, true)
    }

    /// `add` on Unix seconds; a repeated result keeps `unix`'s offset if `keep_offset`, else
    /// takes the earlier occurrence.
    pub(super) fn add_unix_with(
        &self,
        unix: i64,
        g: Granularity,
        keep_offset: bool,
    ) -> Result<i64, TimeError> {
        let n = i64::from(g.count());
        if let Some(secs) = g.unit().fixed_seconds() {
            let out = unix + n * secs;
            check_local(out)?;
            return Ok(out);
        }
        let offset = self.offset_at(unix);
        let local = check_local(unix + i64::from(offset))?;
        let day = local.div_euclid(SECS_PER_DAY);
        let sod = local.rem_euclid(SECS_PER_DAY);
        let new_day = match g.unit() {
            Unit::Day => day + n,
            Unit::Week => day + 7 * n,
            unit => {
                let months = match unit {
                    Unit::Month => n,
                    Unit::Quarter => 3 * n,
                    _ => 12 * n,
                };
                let (y, m, d) = civil_from_days(day);
                let (y, m, d) = add_months(y, m, d, months);
                days_from_civil(y, m, d)
            }
        };
        let target = check_local(new_day * SECS_PER_DAY + sod)?;
        self.resolve(target, keep_offset.then_some(offset), Gap::Shift)
    }
}

/// Day number of January 1 of the year holding day number `day`.
pub(super) fn jan1_of(day: i64) -> i64 {
    let (y, _, _) = civil_from_days(day);
    days_from_civil(y, 1, 1)
}
