//! Proleptic Gregorian day numbers (days since 1970-01-01), exact integer arithmetic.
//!
//! The bucket maths works on "local seconds" (Unix seconds plus the zone's UTC offset) and
//! civil day numbers; these helpers convert without allocating or consulting a time zone
//! (Howard Hinnant's `days_from_civil` / `civil_from_days`).

pub(crate) const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of the civil date `y-m-d` (`m` 1..=12, `d` 1..=31).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month 1..=12, day 1..=31)` of a day number.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Weekday of a day number, Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
pub(crate) fn weekday_monday0(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

/// Number of days in month `m` of year `y`.
pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Adds `months` to `(y, m, d)`, clamping the day to the target month's length
/// (Jan 31 + 1 month = Feb 28/29).
pub(crate) fn add_months(y: i64, m: i64, d: i64, months: i64) -> (i64, i64, i64) {
    let m0 = y * 12 + (m - 1) + months;
    let (ny, nm) = (m0.div_euclid(12), m0.rem_euclid(12) + 1);
    (ny, nm, d.min(days_in_month(ny, nm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(weekday_monday0(days_from_civil(2025, 1, 1)), 2); // Wednesday
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(add_months(2024, 1, 31, 1), (2024, 2, 29));
        assert_eq!(add_months(2025, 1, 31, 1), (2025, 2, 28));
        assert_eq!(add_months(2024, 11, 30, 3), (2025, 2, 28));
        assert_eq!(add_months(2024, 2, 29, 12), (2025, 2, 28));
        assert_eq!(add_months(2024, 1, 15, -2), (2023, 11, 15));
    }
}
