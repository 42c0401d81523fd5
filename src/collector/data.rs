//! An event's `data` on its way in: whitespace removed, nesting depth and number range checked,
//! in one pass over text the JSON decoder has already validated.
//!
//! The checks are what every reader of a stored `data` can handle: the `where=` filters (SQLite's
//! JSON functions), the metrics pipeline (which sums every numeric leaf as an `f64` or `i64`)
//! and the live feeds. Text that passes is readable by all of them, so nothing a writer stores
//! can make another client's read fail.

use std::borrow::Cow;
use std::fmt;

/// The deepest nesting a server may be configured to accept: well inside what every reader
/// of `data` parses (serde_json stops at 128 levels, SQLite's JSON functions at 1000).
pub(crate) const MAX_DEPTH_LIMIT: usize = 100;

/// Why a `data` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataError {
    /// Objects and arrays nest deeper than the limit.
    TooDeep { limit: usize },
    /// A number is beyond the range of a 64-bit float (it would read back as infinity).
    NumberOutOfRange { number: String },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooDeep { limit } => write!(
                f,
                "data nests objects and arrays more than {limit} levels deep (the limit)"
            ),
            Self::NumberOutOfRange { number } => write!(
                f,
                "the number {number} is outside the range of a 64-bit float"
            ),
        }
    }
}

/// Longest prefix of an out-of-range number quoted in the error.
const QUOTED_NUMBER: usize = 32;
/// Digits a number may have without an exponent and still be certain to be a finite `f64`.
const SAFE_DIGITS: usize = 300;

/// `json` (valid JSON text) without whitespace between tokens, after checking that it nests at
/// most `max_depth` levels (the outermost object is level 1) and that every number is a finite
/// `f64`. Borrows when there is no whitespace to remove (the usual case for machine-written
/// JSON); strings are never changed.
///
/// # Errors
///
/// [`DataError`] naming the limit or the number.
pub(crate) fn compact(json: &str, max_depth: usize) -> Result<Cow<'_, str>, DataError> {
    let b = json.as_bytes();
    // Filled from the first whitespace on; until then the input itself is the output.
    let mut out: Option<Vec<u8>> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                let end = string_end(b, i);
                if let Some(o) = &mut out {
                    o.extend_from_slice(&b[i..end]);
                }
                i = end;
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.get_or_insert_with(|| {
                    let mut o = Vec::with_capacity(b.len());
                    o.extend_from_slice(&b[..i]);
                    o
                });
                i += 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(DataError::TooDeep { limit: max_depth });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let end = number_end(b, i);
                check_number(&json[i..end])?;
                if let Some(o) = &mut out {
                    o.extend_from_slice(&b[i..end]);
                }
                i = end;
                continue;
            }
            _ => {}
        }
        if let Some(o) = &mut out {
            o.push(c);
        }
        i += 1;
    }
    Ok(match out {
        None => Cow::Borrowed(json),
        // Only ASCII whitespace outside strings was removed, so the text is still UTF-8.
        Some(o) => Cow::Owned(String::from_utf8(o).expect("removing ASCII whitespace keeps UTF-8")),
    })
}

/// The index just past the string that opens at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The index just past the number that starts at `start`.
fn number_end(b: &[u8], start: usize) -> usize {
    start
        + b[start..]
            .iter()
            .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(b.len() - start)
}

/// Refuses a number that would not read back as a finite `f64`. Only one with an exponent or
/// hundreds of digits can be out of range, so the usual number is not parsed at all.
fn check_number(n: &str) -> Result<(), DataError> {
    let exponent = n.bytes().any(|c| c == b'e' || c == b'E');
    if (exponent || n.len() > SAFE_DIGITS) && !n.parse::<f64>().is_ok_and(f64::is_finite) {
        let mut number: String = n.chars().take(QUOTED_NUMBER).collect();
        if number.len() < n.len() {
            number.push('…');
        }
        return Err(DataError::NumberOutOfRange { number });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_whitespace_outside_strings_only() {
        assert_eq!(
            compact(r#"{"a":1}"#, 8).unwrap(),
            Cow::Borrowed(r#"{"a":1}"#)
        );
        assert_eq!(
            compact("{ \"a b\" : [ 1 , \"\\\" x \" ] ,\n\t\"c\":{} }", 8).unwrap(),
            "{\"a b\":[1,\"\\\" x \"],\"c\":{}}"
        );
        assert_eq!(compact(r#"{"\\":" "}"#, 8).unwrap(), r#"{"\\":" "}"#);
        assert_eq!(
            compact(r#"{ "é" : -1.5e3 }"#, 8).unwrap(),
            r#"{"é":-1.5e3}"#
        );
    }

    #[test]
    fn depth_counts_objects_and_arrays_but_not_brackets_in_strings() {
        let nest = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        assert!(compact(&nest(4), 4).is_ok());
        assert_eq!(compact(&nest(5), 4), Err(DataError::TooDeep { limit: 4 }));
        assert!(compact(r#"{"a":[[[1]]]}"#, 4).is_ok());
        assert!(compact(r#"{"a":[[[[1]]]]}"#, 4).is_err());
        assert!(compact(r#"{"a":"[[[[[[{{{{"}"#, 2).is_ok());
        // Siblings do not add up.
        assert!(compact(r#"{"a":{"b":1},"c":{"d":[1]},"e":[]}"#, 3).is_ok());
        let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        assert!(compact(&format!(r#"{{"a":{deep}}}"#), 32).is_err());
    }

    #[test]
    fn numbers_beyond_f64_are_refused_and_the_rest_pass_unparsed() {
        for ok in [
            "1e308",
            "-1.7976931348623157e308",
            "1e-400",
            "0",
            "-0.0",
            "18446744073709551616",
            "2.5E+10",
        ] {
            assert!(compact(&format!(r#"{{"x":{ok}}}"#), 4).is_ok(), "{ok}");
        }
        for bad in ["1e400", "-1e309", "1E+999"] {
            let e = compact(&format!(r#"{{"x":[{bad}]}}"#), 4).unwrap_err();
            assert_eq!(
                e,
                DataError::NumberOutOfRange {
                    number: bad.to_owned()
                }
            );
        }
        let huge = "9".repeat(400);
        let e = compact(&format!(r#"{{"x":{huge}}}"#), 4).unwrap_err();
        assert!(e.to_string().contains("…"), "{e}");
        // Digits inside strings are text.
        assert!(compact(r#"{"x":"1e400"}"#, 4).is_ok());
    }
}
