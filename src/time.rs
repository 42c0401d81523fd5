//! Time buckets: which bucket of a granularity an instant falls in, in a time zone.
//!
//! The metrics store writes every value into one bucket per configured [`Granularity`]
//! (`1m`, `1h`, `1d`, `1w`, `1mo`, `1q`, `1y`, or any `<n><unit>`), and reads a range back as
//! the list of bucket starts between two instants. Both sides use this module; so do windowed
//! counters. There is exactly one implementation of "which bucket is this instant in".
//!
//! # API
//!
//! * [`Granularity`] — `<n><unit>` with units [`Unit`] `s m h d w mo q y`, parsed strictly
//!   ([`GranularityError`] names the bad string and the reason: zero, leading zero, overflow,
//!   unknown unit, …). [`Granularity::parse_list_lenient`] reproduces upstream's lenient list
//!   handling.
//! * [`Calendar`] — an IANA time zone from jiff's bundled database plus a first day of the week
//!   (Monday by default). Its methods:
//!   * [`floor(t, g)`](Calendar::floor) — the bucket start of `t`;
//!   * [`add(t, g)`](Calendar::add) — one step of `g` (elapsed for `s/m/h`, calendar for the
//!     rest, months clamped to the month's length);
//!   * [`next_bucket(t, g)`](Calendar::next_bucket) — the start of the following bucket;
//!   * [`timeline(from, to, g)`](Calendar::timeline) — a [`Timeline`] iterator over the bucket
//!     starts from `floor(from)` to `floor(to)` inclusive;
//!   * [`index(t, unit)`](Calendar::index) / [`start_of(i, unit)`](Calendar::start_of) — a
//!     continuous numbering of one-unit buckets (consecutive buckets, consecutive integers;
//!     weeks are whole weeks from the configured first day) for ring buffers and windows.
//! * [`TimeError`] — a result outside the years -9999..=9999; [`TimeZoneError`] — unknown zone.
//!
//! # Bucket rules
//!
//! A bucket boundary is computed on the **local wall clock**: `n` seconds inside the minute,
//! minutes inside the hour, hours inside the day, days inside the year (`7d` starts Jan 1, 8, 15,
//! …; the last bucket of a year is short), weeks from the year's first configured weekday (the
//! days before it form a partial week 0 that starts on January 1), months and quarters inside
//! the year, years on the absolute year number (`10y` → 2020, 2030). Counts larger than their
//! anchor (`90s`, `25h`) mean one bucket per anchor period.
//!
//! The boundary then becomes an instant through the zone's rules. Daylight saving time:
//!
//! * **Spring forward** (a local hour is skipped): a boundary inside the gap starts at the
//!   transition instant. An hourly timeline skips the missing hour; the day still starts at its
//!   (possibly clamped) midnight.
//! * **Fall back** (a local hour repeats): a repeated boundary is resolved to the occurrence
//!   with the instant's own UTC offset, so each occurrence of a repeated hour is its own `1h`
//!   bucket and an hourly timeline holds both. A repeated *midnight* (America/Havana) likewise
//!   gives that date a one-hour first bucket. When the repeat covers only part of a bucket and
//!   the wall clock had already left it (Lord_Howe's 30-minute change with `7m`, Newfoundland's
//!   old 00:01 changes), the repeated stretch starts a bucket at the change, so every bucket is
//!   one contiguous interval.
//! * Daily and longer buckets stay on local calendar boundaries whatever the offset.
//!
//! The timeline steps with [`Calendar::next_bucket`], which takes the smallest of a few floored
//! candidates (one `add`, the wall clock plus `n` units, the next anchor period, the first
//! boundary after an offset change). So every bucket the write side can produce between two
//! instants is on the read side's timeline, and nothing else is: `floor(t) <= t`,
//! `floor(floor(t)) == floor(t)`, `floor(t)` is on `timeline(from, to)` for `from <= t <= to`,
//! and the bucket of `b` covers exactly `[b, next_bucket(b))`. These are property-tested over
//! DST zones including 30-minute shifts (Australia/Lord_Howe) and midnight transitions.
//!
//! Sub-second parts are dropped by `floor`. The zone is not stored anywhere: changing it for an
//! existing data set moves every boundary.
//!
//! # Examples
//!
//! ```
//! use accrue::{Calendar, Granularity, Unit};
//! use jiff::{Timestamp, civil::Weekday};
//!
//! let cal = Calendar::from_name("Europe/Bratislava").unwrap().with_week_start(Weekday::Sunday);
//! let t: Timestamp = "2024-10-27T00:30:00Z".parse().unwrap(); // 02:30+02:00, first 02:xx
//! let hour = cal.floor(t, Granularity::one(Unit::Hour)).unwrap();
//! assert_eq!(hour.to_string(), "2024-10-27T00:00:00Z"); // 02:00+02:00, not the later 02:00+01:00
//!
//! // The fall-back day has 25 hourly buckets.
//! let day = cal.floor(t, "1d".parse().unwrap()).unwrap();
//! let next_day = cal.next_bucket(day, "1d".parse().unwrap()).unwrap();
//! let hours = cal.timeline(day, next_day, "1h".parse().unwrap()).unwrap().count();
//! assert_eq!(hours, 25 + 1); // both ends inclusive
//! ```

mod calendar;
mod civil;
mod error;
mod floor;
mod granularity;
mod index;
mod timeline;

#[cfg(test)]
mod tests;

pub use self::calendar::Calendar;
pub use self::error::{TimeError, TimeZoneError};
pub use self::granularity::{Granularity, GranularityError, GranularityErrorKind, Unit};
pub use self::timeline::Timeline;
