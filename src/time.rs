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
//! The bucket rules (DST included) are documented on [`Calendar`], the public face of this
//! module.
//!
//! # Examples
//!
//! ```
//! use accrue::time::{Calendar, Granularity, Unit};
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
#![doc = include_str!("time/reference.md")]

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
pub use self::timeline::{Blanks, Timeline};
/// The instant type of every accrue API (jiff's), re-exported so a caller needs no matching
/// dependency.
pub use jiff::Timestamp;
