//! The packer: value trees ⇄ flat maps of dotted field names.

use std::collections::BTreeMap;

use super::error::ValueError;
use super::value::{Value, Values};

/// How map keys become stored field names.
///
/// * [`V1`](Self::V1) (default): map keys are *public paths* (`.` separates segments; `\.`,
///   `\*`, `\\` escape a literal dot, star, backslash) and each segment is percent-encoded for
///   storage (`"`→`%22`, `%`→`%25`, `.`→`%2E`, `*`→`%2A`, `$`→`%24`, `\`→`%5C`, NUL→`%00`),
///   so any key round-trips and is safe in SQL JSON paths and Mongo field names. Identical to
///   legacy for names without those characters. This is Trifle's "storage format v1".
/// * [`Legacy`](Self::Legacy): keys are joined with `.` verbatim, as the Ruby gem and the Go
///   snapshot store them (a key `test.rb` reads back as `test: {rb: …}`); keys holding `"`,
///   `\` or NUL are refused. Use it to share a data set with those readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PathCodec {
    /// Upstream's legacy dotted names.
    Legacy,
    /// Escaped public paths, percent-encoded segments.
    #[default]
    V1,
}

/// The characters V1 percent-encodes in a segment.
const ENCODED: [(char, &str); 7] = [
    ('%', "%25"),
    ('\0', "%00"),
    ('"', "%22"),
    ('.', "%2E"),
    ('*', "%2A"),
    ('$', "%24"),
    ('\\', "%5C"),
];

/// Percent-encodes one path segment for storage (V1).
///
/// ```
/// assert_eq!(accrue::metrics::encode_segment("test.rb"), "test%2Erb");
/// assert_eq!(accrue::metrics::encode_segment("$count"), "%24count");
/// ```
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    encode_segment_into(&mut out, segment);
    out
}

/// [`encode_segment`] appending to `out` (no allocation when `out` has room).
pub(crate) fn encode_segment_into(out: &mut String, segment: &str) {
    for c in segment.chars() {
        match ENCODED.iter().find(|(ch, _)| *ch == c) {
            Some((_, code)) => out.push_str(code),
            None => out.push(c),
        }
    }
}

/// Decodes a stored segment (V1); the exact inverse of [`encode_segment`]. Unknown `%xx`
/// sequences are kept verbatim.
pub fn decode_segment(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match ENCODED.iter().find(|(_, code)| tail.starts_with(code)) {
            Some((c, code)) => {
                out.push(*c);
                rest = &tail[code.len()..];
            }
            None => {
                out.push('%');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits a public path into segments (V1 syntax): `.` separates, `\.` `\*` `\\` are escapes,
/// any other backslash is literal. The empty string has no segments.
///
/// ```
/// assert_eq!(accrue::metrics::parse_public_path(r"jobs.test\.rb"), ["jobs", "test.rb"]);
/// assert_eq!(accrue::metrics::parse_public_path(".jobs..count."), ["", "jobs", "", "count", ""]);
/// assert!(accrue::metrics::parse_public_path("").is_empty());
/// ```
pub fn parse_public_path(path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    let mut segments = vec![String::new()];
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        let current = segments.last_mut().expect("never empty");
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('.' | '*' | '\\')) => {
                    current.push(next);
                    chars.next();
                }
                _ => current.push('\\'),
            },
            '.' => segments.push(String::new()),
            c => current.push(c),
        }
    }
    segments
}

/// What the leaves of a packed tree may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaves {
    /// Integers and floats only (`track`).
    Numbers,
    /// Any scalar or array (`assert`).
    Any,
}

/// Flattens a value tree into `(stored field name, leaf)` pairs, sorted by name, validating
/// it on the way: the top level must be a map, keys non-empty, floats finite, and with
/// [`Leaves::Numbers`] every leaf a number. Empty maps produce no fields.
///
/// # Errors
///
/// [`ValueError`] describing the first problem; nothing is returned.
pub(crate) fn pack(
    value: &Value,
    codec: PathCodec,
    leaves: Leaves,
) -> Result<Vec<(String, Value)>, ValueError> {
    let Value::Map(map) = value else {
        return Err(ValueError::NotAMap {
            found: value.kind(),
        });
    };
    let mut out = BTreeMap::new();
    pack_map(map, "", "", codec, leaves, &mut out)?;
    Ok(out.into_iter().collect())
}

/// Packs `map` under the stored prefix `prefix` (public-facing path `shown` for errors).
fn pack_map(
    map: &Values,
    prefix: &str,
    shown: &str,
    codec: PathCodec,
    leaves: Leaves,
    out: &mut BTreeMap<String, Value>,
) -> Result<(), ValueError> {
    for (key, value) in map {
        let stored = match codec {
            PathCodec::Legacy => {
                if key.is_empty() {
                    return Err(ValueError::EmptyKey {
                        path: shown.to_owned(),
                    });
                }
                if key.contains(['"', '\\', '\0']) {
                    return Err(ValueError::Unrepresentable { key: key.clone() });
                }
                key.clone()
            }
            PathCodec::V1 => {
                let segments = parse_public_path(key);
                if segments.is_empty() || segments.iter().any(String::is_empty) {
                    return Err(ValueError::EmptyKey {
                        path: shown.to_owned(),
                    });
                }
                segments
                    .iter()
                    .map(|s| encode_segment(s))
                    .collect::<Vec<_>>()
                    .join(".")
            }
        };
        let path = if prefix.is_empty() {
            stored
        } else {
            format!("{prefix}.{stored}")
        };
        let shown_path = if shown.is_empty() {
            key.clone()
        } else {
            format!("{shown}.{key}")
        };
        match value {
            Value::Map(child) => pack_map(child, &path, &shown_path, codec, leaves, out)?,
            leaf => {
                check_leaf(leaf, &shown_path, leaves)?;
                if out.insert(path.clone(), leaf.clone()).is_some() {
                    return Err(ValueError::DuplicatePath { path });
                }
            }
        }
    }
    Ok(())
}

fn check_leaf(leaf: &Value, path: &str, leaves: Leaves) -> Result<(), ValueError> {
    match leaf {
        Value::Float(f) if !f.is_finite() => Err(ValueError::NotFinite {
            path: path.to_owned(),
        }),
        Value::Int(_) | Value::Float(_) => Ok(()),
        other if leaves == Leaves::Numbers => Err(ValueError::NotANumber {
            path: path.to_owned(),
            found: other.kind(),
        }),
        Value::Array(items) => items.iter().try_for_each(|v| check_nested(v, path)),
        _ => Ok(()),
    }
}

/// Array contents are opaque but must still be representable (finite floats).
fn check_nested(v: &Value, path: &str) -> Result<(), ValueError> {
    match v {
        Value::Float(f) if !f.is_finite() => Err(ValueError::NotFinite {
            path: path.to_owned(),
        }),
        Value::Array(items) => items.iter().try_for_each(|v| check_nested(v, path)),
        Value::Map(m) => m.values().try_for_each(|v| check_nested(v, path)),
        _ => Ok(()),
    }
}

/// Rebuilds a tree from stored `(field name, leaf)` pairs: split on `.`, decode each segment
/// (V1), merge. The empty name is skipped. When a stored row holds both a scalar `a` and
/// fields under `a.` (a type change by `assert`), the map wins, whatever the order.
pub(crate) fn unpack<I>(fields: I, codec: PathCodec) -> Values
where
    I: IntoIterator<Item = (String, Value)>,
{
    let mut root = Values::new();
    for (name, value) in fields {
        if name.is_empty() {
            continue;
        }
        let segments: Vec<String> = name
            .split('.')
            .map(|s| match codec {
                PathCodec::Legacy => s.to_owned(),
                PathCodec::V1 => decode_segment(s),
            })
            .collect();
        insert(&mut root, &segments, value);
    }
    root
}

fn insert(map: &mut Values, segments: &[String], value: Value) {
    let (first, rest) = segments.split_first().expect("split yields a segment");
    if rest.is_empty() {
        match map.get(first) {
            // A map beats a scalar.
            Some(Value::Map(_)) => {}
            _ => {
                map.insert(first.clone(), value);
            }
        }
        return;
    }
    let child = map
        .entry(first.clone())
        .and_modify(|v| {
            if !matches!(v, Value::Map(_)) {
                *v = Value::map();
            }
        })
        .or_insert_with(Value::map);
    if let Value::Map(child) = child {
        insert(child, rest, value);
    }
}
