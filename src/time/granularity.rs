//! [`Granularity`] (`<n><unit>`), its [`Unit`], and the parse error.

use std::fmt;
use std::str::FromStr;

/// A calendar unit a bucket is counted in.
///
/// The suffix in a granularity string is in parentheses: note that `m` is the minute and `mo`
/// the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// Seconds (`s`), counted inside the local minute.
    Second,
    /// Minutes (`m`), counted inside the local hour.
    Minute,
    /// Hours (`h`), counted inside the local day.
    Hour,
    /// Days (`d`), counted inside the local calendar year (day of year).
    Day,
    /// Weeks (`w`), counted inside the local calendar year from its first configured weekday.
    Week,
    /// Months (`mo`), counted inside the local calendar year.
    Month,
    /// Quarters (`q`, three months), counted inside the local calendar year.
    Quarter,
    /// Years (`y`), counted on the absolute year number (`10y` → 2020, 2030, …).
    Year,
}

impl Unit {
    /// Every unit, shortest first.
    pub const ALL: [Unit; 8] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Quarter,
        Unit::Year,
    ];

    /// The suffix used in granularity strings: `s m h d w mo q y`.
    ///
    /// ```
    /// assert_eq!(accrue::time::Unit::Month.suffix(), "mo");
    /// ```
    pub const fn suffix(self) -> &'static str {
        match self {
            Unit::Second => "s",
            Unit::Minute => "m",
            Unit::Hour => "h",
            Unit::Day => "d",
            Unit::Week => "w",
            Unit::Month => "mo",
            Unit::Quarter => "q",
            Unit::Year => "y",
        }
    }

    /// Length in seconds of the fixed-length units (`s`, `m`, `h`); `None` for calendar units.
    pub(crate) const fn fixed_seconds(self) -> Option<i64> {
        match self {
            Unit::Second => Some(1),
            Unit::Minute => Some(60),
            Unit::Hour => Some(3600),
            _ => None,
        }
    }

    fn from_suffix(s: &str) -> Option<Unit> {
        Some(match s {
            "s" => Unit::Second,
            "m" => Unit::Minute,
            "h" => Unit::Hour,
            "d" => Unit::Day,
            "w" => Unit::Week,
            "mo" => Unit::Month,
            "q" => Unit::Quarter,
            "y" => Unit::Year,
            _ => return None,
        })
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// A bucket size: a positive count of a [`Unit`], written `<n><unit>` (`15m`, `1h`, `2w`,
/// `1mo`).
///
/// Parsing is strict: the whole string must be decimal digits without a leading zero followed by
/// one of `s m h d w mo q y` (case-sensitive, no spaces or signs), and the count must be between
/// 1 and `u32::MAX`. The canonical string is part of every storage key, so a granularity that
/// could be spelled two ways (`01h` and `1h`) would split one series in two; that is why leading
/// zeros are refused rather than normalised.
///
/// Counts larger than the unit's anchor (`90s`, `25h`, `13mo`) are accepted: they degenerate
/// into one bucket per anchor period (minute, hour, day, year), exactly as the write side floors
/// them, and the timeline follows the same rule.
///
/// # Examples
///
/// ```
/// use accrue::time::{Granularity, Unit};
///
/// let g: Granularity = "15m".parse().unwrap();
/// assert_eq!((g.count(), g.unit()), (15, Unit::Minute));
/// assert_eq!(g.to_string(), "15m");
///
/// let err = "01h".parse::<Granularity>().unwrap_err();
/// assert_eq!(err.input(), "01h");
/// assert!(err.to_string().contains("\"01h\""));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Granularity {
    unit: Unit,
    count: u32,
}

impl Granularity {
    /// The default list of a metrics store: `1m 1h 1d 1w 1mo 1q 1y`.
    pub const DEFAULTS: [Granularity; 7] = [
        Granularity::one(Unit::Minute),
        Granularity::one(Unit::Hour),
        Granularity::one(Unit::Day),
        Granularity::one(Unit::Week),
        Granularity::one(Unit::Month),
        Granularity::one(Unit::Quarter),
        Granularity::one(Unit::Year),
    ];

    /// `count` units.
    ///
    /// # Errors
    ///
    /// [`GranularityError`] (kind [`GranularityErrorKind::Zero`]) when `count` is 0.
    ///
    /// ```
    /// use accrue::time::{Granularity, Unit};
    /// assert_eq!(Granularity::new(5, Unit::Minute).unwrap().to_string(), "5m");
    /// assert!(Granularity::new(0, Unit::Hour).is_err());
    /// ```
    pub fn new(count: u32, unit: Unit) -> Result<Self, GranularityError> {
        if count == 0 {
            return Err(GranularityError::new(
                format!("0{}", unit.suffix()),
                GranularityErrorKind::Zero,
            ));
        }
        Ok(Self { unit, count })
    }

    /// One `unit` (`1h`, `1d`, …).
    pub const fn one(unit: Unit) -> Self {
        Self { unit, count: 1 }
    }

    /// The number of units per bucket (at least 1).
    pub const fn count(self) -> u32 {
        self.count
    }

    /// The unit.
    pub const fn unit(self) -> Unit {
        self.unit
    }

    /// Parses a configured list the way upstream Trifle Stats does: invalid entries are dropped,
    /// duplicates removed keeping the first occurrence, order preserved. Returns the effective
    /// list and the errors of the dropped entries, so the caller can log them.
    ///
    /// Prefer a strict parse (`"1h".parse()`) in new code: a typo here silently writes nothing.
    ///
    /// ```
    /// use accrue::time::Granularity;
    ///
    /// let (list, dropped) = Granularity::parse_list_lenient(["1h", "1d", "invalid", "1h"]);
    /// let names: Vec<String> = list.iter().map(|g| g.to_string()).collect();
    /// assert_eq!(names, ["1h", "1d"]);
    /// assert_eq!(dropped[0].input(), "invalid");
    /// ```
    pub fn parse_list_lenient<I, S>(items: I) -> (Vec<Granularity>, Vec<GranularityError>)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<Granularity> = Vec::new();
        let mut dropped = Vec::new();
        for item in items {
            match item.as_ref().parse::<Granularity>() {
                Ok(g) if !list.contains(&g) => list.push(g),
                Ok(_) => {}
                Err(e) => dropped.push(e),
            }
        }
        (list, dropped)
    }
}

impl FromStr for Granularity {
    type Err = GranularityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |kind| Err(GranularityError::new(s.to_owned(), kind));
        if s.is_empty() {
            return err(GranularityErrorKind::Empty);
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (number, suffix) = s.split_at(digits);
        if number.is_empty() {
            return err(GranularityErrorKind::MissingCount);
        }
        let Some(unit) = Unit::from_suffix(suffix) else {
            return err(if suffix.is_empty() {
                GranularityErrorKind::MissingUnit
            } else {
                GranularityErrorKind::UnknownUnit
            });
        };
        let Ok(count) = number.parse::<u32>() else {
            return err(GranularityErrorKind::Overflow);
        };
        if count == 0 {
            return err(GranularityErrorKind::Zero);
        }
        if number.starts_with('0') {
            return err(GranularityErrorKind::LeadingZero);
        }
        Ok(Self { unit, count })
    }
}

impl TryFrom<&str> for Granularity {
    type Error = GranularityError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.count, self.unit.suffix())
    }
}

/// What is wrong with a granularity string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GranularityErrorKind {
    /// The string is empty.
    Empty,
    /// No digits before the unit (`m`, `-1h`, ` 1h`).
    MissingCount,
    /// Digits but no unit (`10`).
    MissingUnit,
    /// The unit is not one of `s m h d w mo q y` (`1M`, `1hour`, `1x`).
    UnknownUnit,
    /// The count is zero (`0m`).
    Zero,
    /// The count has a leading zero (`01h`), which would store a second spelling of `1h`.
    LeadingZero,
    /// The count does not fit in a `u32`.
    Overflow,
}

/// A granularity string that is not `<n><unit>`; carries the bad string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GranularityError {
    input: String,
    kind: GranularityErrorKind,
}

impl GranularityError {
    fn new(input: String, kind: GranularityErrorKind) -> Self {
        Self { input, kind }
    }

    /// The string that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it failed.
    pub fn kind(&self) -> GranularityErrorKind {
        self.kind
    }
}

impl fmt::Display for GranularityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid granularity {:?}: ", self.input)?;
        match self.kind {
            GranularityErrorKind::Empty => f.write_str("empty string"),
            GranularityErrorKind::MissingCount => f.write_str(
                "expected a positive count followed by a unit (s, m, h, d, w, mo, q, y), e.g. \"15m\"",
            ),
            GranularityErrorKind::MissingUnit => {
                f.write_str("missing unit: append one of s, m, h, d, w, mo, q, y")
            }
            GranularityErrorKind::UnknownUnit => f.write_str(
                "unknown unit: use one of s, m, h, d, w, mo, q, y (case-sensitive; m is minute, mo is month)",
            ),
            GranularityErrorKind::Zero => f.write_str("the count must be at least 1"),
            GranularityErrorKind::LeadingZero => {
                let digits = self.input.trim_start_matches('0');
                write!(f, "leading zeros are not allowed (write {digits:?})")
            }
            GranularityErrorKind::Overflow => {
                write!(f, "the count is larger than {}", u32::MAX)
            }
        }
    }
}

impl std::error::Error for GranularityError {}
