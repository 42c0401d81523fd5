//! RFC 3339 timestamps exactly as Tlytics (Go's `time` package) reads and prints them.
//!
//! Parsing accepts the strict form `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; printing is Go's
//! `RFC3339Nano`: fraction with trailing zeros trimmed, `Z` for a zero offset. Both are written
//! here rather than with a date library because the output must be byte-for-byte Go's and the
//! printer runs for every row of `/view`.

use std::fmt;

/// Nanoseconds per second.
const NANOS: i64 = 1_000_000_000;
/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`, in Unix seconds.
const GO_ZERO_UNIX_S: i64 = -62_135_596_800;

/// An instant with the UTC offset it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventTime {
    /// Nanoseconds since the Unix epoch, UTC.
    pub(crate) unix_ns: i64,
    /// The offset from UTC the client used, in seconds (echoed back by `/view`).
    pub(crate) offset_s: i32,
}

/// Why a timestamp string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeError {
    /// Not of the form `2025-08-25T10:00:00Z`.
    Syntax,
    /// A field out of its range (month 13, 25:00, Feb 30, offset +24:00).
    Range,
    /// Valid RFC 3339 but outside what 64-bit nanoseconds can hold (1677-09-21 .. 2262-04-11).
    OutOfRange,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "timestamp is not RFC 3339 (expected e.g. 2025-08-25T10:00:00Z)",
            Self::Range => "timestamp has a field out of range",
            Self::OutOfRange => {
                "timestamp is outside the supported range 1677-09-21T00:12:44Z..2262-04-11T23:47:16Z"
            }
        })
    }
}

/// Parses a strict RFC 3339 timestamp. `Ok(None)` is Go's zero time (`0001-01-01T00:00:00Z` in
/// any offset), which Tlytics replaces with the server's clock.
pub(crate) fn parse_rfc3339(s: &str) -> Result<Option<EventTime>, TimeError> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(TimeError::Syntax);
    }
    if !(b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':') {
        return Err(TimeError::Syntax);
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let min = digits(&b[14..16])?;
    let sec = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return Err(TimeError::Range);
    }
    let mut rest = &b[19..];
    let mut nanos: i64 = 0;
    if rest.len() >= 2 && rest[0] == b'.' && rest[1].is_ascii_digit() {
        let n = 1 + rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        // Go keeps nine digits and ignores the rest.
        let frac = &rest[1..n];
        for i in 0..9 {
            nanos = nanos * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &rest[n..];
    }
    let offset_s: i32 = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return Err(TimeError::Range);
            }
            let off = (h * 3600 + m * 60) as i32;
            if *sign == b'-' { -off } else { off }
        }
        _ => return Err(TimeError::Syntax),
    };
    let local_s =
        days_from_civil(year as i64, month, day) * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    let unix_s = local_s - i64::from(offset_s);
    if unix_s == GO_ZERO_UNIX_S && nanos == 0 {
        return Ok(None);
    }
    let unix_ns = unix_s
        .checked_mul(NANOS)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or(TimeError::OutOfRange)?;
    Ok(Some(EventTime { unix_ns, offset_s }))
}

fn digits(b: &[u8]) -> Result<u32, TimeError> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return Err(TimeError::Syntax);
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Ok(n)
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends `t` as Go's `RFC3339Nano` in the offset it was written in.
pub(crate) fn format_rfc3339(t: EventTime, out: &mut Vec<u8>) {
    let local = i128::from(t.unix_ns) + i128::from(t.offset_s) * i128::from(NANOS);
    let secs = local.div_euclid(i128::from(NANOS)) as i64;
    let nanos = local.rem_euclid(i128::from(NANOS)) as u32;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let mut buf = itoa_pad(y.unsigned_abs() as u32, 4);
    if y < 0 {
        out.push(b'-');
    }
    out.append(&mut buf);
    out.push(b'-');
    out.extend_from_slice(&itoa_pad(mo, 2));
    out.push(b'-');
    out.extend_from_slice(&itoa_pad(d, 2));
    out.push(b'T');
    out.extend_from_slice(&itoa_pad(sod / 3600, 2));
    out.push(b':');
    out.extend_from_slice(&itoa_pad(sod / 60 % 60, 2));
    out.push(b':');
    out.extend_from_slice(&itoa_pad(sod % 60, 2));
    if nanos != 0 {
        let frac = itoa_pad(nanos, 9);
        let keep = frac.iter().rposition(|&c| c != b'0').map_or(0, |i| i + 1);
        out.push(b'.');
        out.extend_from_slice(&frac[..keep]);
    }
    if t.offset_s == 0 {
        out.push(b'Z');
    } else {
        let abs = t.offset_s.unsigned_abs();
        out.push(if t.offset_s < 0 { b'-' } else { b'+' });
        out.extend_from_slice(&itoa_pad(abs / 3600, 2));
        out.push(b':');
        out.extend_from_slice(&itoa_pad(abs / 60 % 60, 2));
    }
}

/// `n` in decimal, left-padded with zeros to `width` digits (more if `n` needs them).
fn itoa_pad(n: u32, width: usize) -> Vec<u8> {
    let mut digits = Vec::with_capacity(10);
    let mut n = n;
    loop {
        digits.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits
}

/// [`format_rfc3339`] into a `String`.
#[cfg(test)]
pub(crate) fn to_rfc3339(t: EventTime) -> String {
    let mut out = Vec::with_capacity(35);
    format_rfc3339(t, &mut out);
    String::from_utf8(out).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EventTime {
        parse_rfc3339(s).unwrap().unwrap()
    }

    #[test]
    fn parses_utc_and_offsets_to_the_same_instant() {
        let a = p("2025-08-25T10:00:00Z");
        let b = p("2025-08-25T12:00:00+02:00");
        let c = p("2025-08-25T05:30:00-04:30");
        assert_eq!(a.unix_ns, 1_756_116_000 * NANOS);
        assert_eq!(a.unix_ns, b.unix_ns);
        assert_eq!(a.unix_ns, c.unix_ns);
        assert_eq!((a.offset_s, b.offset_s, c.offset_s), (0, 7200, -16_200));
    }

    #[test]
    fn fraction_is_kept_to_nine_digits_and_printed_trimmed() {
        let t = p("2025-08-25T12:00:00.123+02:00");
        assert_eq!(t.unix_ns % NANOS, 123_000_000);
        assert_eq!(to_rfc3339(t), "2025-08-25T12:00:00.123+02:00");
        let t = p("2025-08-25T10:00:00.1234567891234Z");
        assert_eq!(t.unix_ns % NANOS, 123_456_789);
        assert_eq!(to_rfc3339(t), "2025-08-25T10:00:00.123456789Z");
        assert_eq!(
            to_rfc3339(p("2025-08-25T10:00:00.000Z")),
            "2025-08-25T10:00:00Z"
        );
        assert_eq!(
            to_rfc3339(p("2025-08-25T10:00:00+00:00")),
            "2025-08-25T10:00:00Z"
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "",
            "2025-08-25",
            "2025-08-25T10:00:00",
            "2025-08-25 10:00:00Z",
            "2025-08-25t10:00:00Z",
            "2025-08-25T10:00:00z",
            "2025-08-25T10:00:00+0200",
            "2025-08-25T10:00:00.Z",
            "2025-08-25T10:00Z",
            "25-08-25T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), Err(TimeError::Syntax), "{bad:?}");
        }
        for bad in [
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:60:00Z",
            "2025-01-01T00:00:60Z",
            "2025-01-01T00:00:00+24:00",
            "2025-01-00T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), Err(TimeError::Range), "{bad:?}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn go_zero_time_means_now_and_far_dates_are_out_of_range() {
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Ok(None));
        assert_eq!(parse_rfc3339("0001-01-01T01:00:00+01:00"), Ok(None));
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00.5Z"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339("9999-01-01T00:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert!(parse_rfc3339("1677-09-22T00:00:00Z").is_ok());
        assert!(parse_rfc3339("2262-04-10T00:00:00Z").is_ok());
    }

    #[test]
    fn round_trips_before_the_epoch_and_across_midnight_offsets() {
        for s in [
            "1969-12-31T23:59:59.999999999Z",
            "1900-03-01T00:00:00-05:00",
            "2000-02-29T23:30:00+14:00",
            "2025-01-01T00:00:00.000000001-11:45",
        ] {
            assert_eq!(to_rfc3339(p(s)), s);
        }
    }
}
