//! Continuous bucket numbering: [`Calendar::index`] and its inverse [`Calendar::start_of`].

use jiff::Timestamp;

use super::calendar::{Calendar, Gap, check_local, ts, unix_floor};
use super::civil::{SECS_PER_DAY, civil_from_days, days_from_civil};
use super::error::TimeError;
use super::granularity::{Granularity, Unit};

impl Calendar {
    /// The number of the one-`unit` bucket holding `t`, such that consecutive buckets have
    /// consecutive numbers — the shared answer to "which bucket is this instant in" for ring
    /// buffers and windows.
    ///
    /// | unit | index | bucket |
    /// |---|---|---|
    /// | `Second` | Unix seconds | the second |
    /// | `Minute` | `floor(t, 1m)` in Unix seconds div 60 | the local minute |
    /// | `Hour` | `floor(t, 1h)` in Unix seconds div 3600 | the local hour (a repeated hour is two buckets, as in [`floor`](Self::floor)) |
    /// | `Day` | local civil day number (days since 1970-01-01) | the local day |
    /// | `Week` | day number of the week's configured first day, div 7 | a whole week: weeks are continuous here, **not** the metrics store's partial week 0 at January 1 |
    /// | `Month` | `12 × year + month0` | the local month |
    /// | `Quarter` | `4 × year + quarter0` | the local quarter |
    /// | `Year` | the year | the local year |
    ///
    /// For every unit but `Week`, the bucket of index `index(t, u)` starts at `floor(t, 1u)`,
    /// with two exceptions, both from historical or rare rules:
    ///
    /// * a date whose midnight repeats (America/Havana's fall-back) is one `Day` index but two
    ///   `1d` buckets (see [`floor`](Self::floor)); its index starts at the first midnight;
    /// * `Hour` indexes are Unix hours of the bucket start, so an offset change whose wall
    ///   clock is not a whole hour (Pacific/Chatham's 03:45 → 02:45, Newfoundland's 00:01
    ///   changes until 2011) can create a bucket shorter than an hour that shares its index
    ///   with its neighbour.
    ///
    /// Offsets are assumed to be whole minutes (every zone since 1972; some 19th-century local
    /// mean times have seconds).
    ///
    /// ```
    /// use accrue::time::{Calendar, Unit};
    /// use jiff::Timestamp;
    ///
    /// let cal = Calendar::from_name("Europe/Bratislava").unwrap();
    /// let t: Timestamp = "2024-03-15T13:47:12Z".parse().unwrap();
    /// let day = cal.index(t, Unit::Day);
    /// assert_eq!(cal.start_of(day, Unit::Day).unwrap().to_string(), "2024-03-14T23:00:00Z");
    /// assert_eq!(cal.index(cal.start_of(day + 1, Unit::Day).unwrap(), Unit::Day), day + 1);
    /// assert_eq!(cal.index(t, Unit::Month), 2024 * 12 + 2);
    /// ```
    pub fn index(&self, t: Timestamp, unit: Unit) -> i64 {
        let unix = unix_floor(t);
        match unit {
            Unit::Second => unix,
            Unit::Minute | Unit::Hour => {
                let secs = unit.fixed_seconds().unwrap_or(1);
                let start = self
                    .floor_unix(unix, Granularity::one(unit))
                    .unwrap_or(unix);
                start.div_euclid(secs)
            }
            _ => {
                let local = unix + i64::from(self.offset_at(unix));
                let day = local.div_euclid(SECS_PER_DAY);
                match unit {
                    Unit::Day => day,
                    Unit::Week => {
                        let back = (7 - self.days_until_week_start(day)) % 7;
                        (day - back).div_euclid(7)
                    }
                    _ => {
                        let (y, m, _) = civil_from_days(day);
                        match unit {
                            Unit::Month => y * 12 + m - 1,
                            Unit::Quarter => y * 4 + (m - 1) / 3,
                            _ => y,
                        }
                    }
                }
            }
        }
    }

    /// The first instant of the bucket numbered `index` (see [`index`](Self::index)),
    /// DST-resolved like [`floor`](Self::floor): a skipped local midnight starts at the
    /// transition, a repeated one at its first occurrence. `index(start_of(i, u), u) == i`.
    ///
    /// A civil date a zone skipped entirely (Pacific/Apia, 2011-12-30) has a day number but no
    /// instant: `start_of` returns the start of the next day.
    ///
    /// # Errors
    ///
    /// [`TimeError::OutOfRange`] when the bucket is outside the years -9999..=9999.
    pub fn start_of(&self, index: i64, unit: Unit) -> Result<Timestamp, TimeError> {
        let out = |_| TimeError::OutOfRange {
            local_seconds: index,
        };
        let day = match unit {
            Unit::Second => return ts(index),
            Unit::Minute | Unit::Hour => {
                let secs = unit.fixed_seconds().unwrap_or(1);
                let last = index
                    .checked_add(1)
                    .and_then(|i| i.checked_mul(secs))
                    .ok_or(TimeError::OutOfRange {
                        local_seconds: index,
                    })?
                    - 1;
                return ts(self.floor_unix(last, Granularity::one(unit))?);
            }
            Unit::Day => index,
            Unit::Week => {
                let first = index.checked_mul(7).ok_or_else(|| out(()))?;
                first + self.days_until_week_start(first)
            }
            Unit::Month | Unit::Quarter | Unit::Year => {
                let per_year = match unit {
                    Unit::Month => 12,
                    Unit::Quarter => 4,
                    _ => 1,
                };
                let year = index.div_euclid(per_year);
                if year.unsigned_abs() > 10_000 {
                    return Err(out(()));
                }
                let month = index.rem_euclid(per_year) * (12 / per_year) + 1;
                days_from_civil(year, month, 1)
            }
        };
        let local = day
            .checked_mul(SECS_PER_DAY)
            .ok_or_else(|| out(()))
            .and_then(check_local)?;
        ts(self.resolve(local, None, Gap::Clamp)?)
    }
}
