//! [`Sample`]: what the aggregator keeps per (event key, bucket) — the number of events and the
//! sums of the numeric leaves of their `data`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::aggregator::Merge;
use crate::collector::event::CowStr;

/// A numeric leaf: integers stay exact until a sum overflows `i64` or meets a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
    /// A sum that left the range of `f64` (every input is finite: ingest refuses the rest).
    /// It stays so for the rest of the flush window and is left out of what is written, so the
    /// count and the other fields still arrive.
    Overflow,
}

impl Num {
    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Overflow, _) | (_, Num::Overflow) => Num::Overflow,
            (Num::Int(a), Num::Int(b)) => a
                .checked_add(b)
                .map_or(Num::Float(a as f64 + b as f64), Num::Int),
            (a, b) => {
                let sum = a.as_f64() + b.as_f64();
                if sum.is_finite() {
                    Num::Float(sum)
                } else {
                    Num::Overflow
                }
            }
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
            Num::Overflow => f64::NAN,
        }
    }
}

/// The path from the top of `data` down to a numeric leaf, encoded in one allocation: each
/// key as its LEB128 byte length followed by its UTF-8 bytes. Any total order serves the
/// merge, so paths compare as bytes.
pub(crate) type Path = Box<[u8]>;

fn push_segment(path: &mut Vec<u8>, segment: &str) {
    let mut n = segment.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            path.push(byte);
            break;
        }
        path.push(byte | 0x80);
    }
    path.extend_from_slice(segment.as_bytes());
}

/// The keys of an encoded path.
pub(crate) fn segments(mut path: &[u8]) -> impl Iterator<Item = &str> {
    std::iter::from_fn(move || {
        if path.is_empty() {
            return None;
        }
        let (mut n, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = path[i];
            n |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let (seg, rest) = path[i..].split_at(n);
        path = rest;
        Some(std::str::from_utf8(seg).expect("paths are built from str"))
    })
}

/// Events counted and numeric `data` leaves summed, for one (key, bucket).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Sample {
    pub(crate) count: u64,
    /// Sorted by path, no duplicates.
    pub(crate) fields: Vec<(Path, Num)>,
}

impl Sample {
    /// Bytes on the heap, for the ingest queue's memory bound.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.fields.iter().map(|(p, _)| 32 + p.len()).sum()
    }

    /// One event with `data` (the stored JSON object text, or `None`).
    ///
    /// Numbers anywhere in the object tree are kept; strings, booleans, `null` and arrays are
    /// not metrics and are skipped. Integers beyond `i64` become floats. The text is scanned
    /// once, without building a tree.
    pub(crate) fn of_event(data: Option<&str>) -> Self {
        let mut fields = Vec::new();
        if let Some(text) = data {
            let mut path = Vec::new();
            let mut de = serde_json::Deserializer::from_str(text);
            // The text was validated as a JSON object when the event was accepted.
            let _ = Collect {
                path: &mut path,
                out: &mut fields,
            }
            .deserialize(&mut de);
        }
        // A key repeated in `data` counts once, with its last value (as JSON readers decode it).
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Path, Num)> = Vec::with_capacity(fields.len());
        for f in fields {
            match out.last_mut() {
                Some(last) if last.0 == f.0 => *last = f,
                _ => out.push(f),
            }
        }
        Sample {
            count: 1,
            fields: out,
        }
    }
}

/// Walks a JSON value, recording every number with its path.
struct Collect<'a> {
    path: &'a mut Vec<u8>,
    out: &'a mut Vec<(Path, Num)>,
}

impl<'de> DeserializeSeed<'de> for Collect<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Collect<'_> {
    fn leaf(self, n: Num) {
        if !self.path.is_empty() {
            self.out.push((self.path.as_slice().into(), n));
        }
    }
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Num::Int(v));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(i64::try_from(v).map_or(Num::Float(v as f64), Num::Int));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // Ingest refuses numbers beyond f64; a stored one from before that rule overflowed.
        self.leaf(if v.is_finite() {
            Num::Float(v)
        } else {
            Num::Overflow
        });
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(CowStr(key)) = map.next_key()? {
            let len = self.path.len();
            push_segment(self.path, &key);
            map.next_value_seed(Collect {
                path: self.path,
                out: self.out,
            })?;
            self.path.truncate(len);
        }
        Ok(())
    }
}

/// The aggregator's merge: counts add, fields add path by path (a merge-join of sorted lists).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SampleMerge;

impl Merge<Sample> for SampleMerge {
    fn merge(&self, acc: &mut Sample, newer: Sample) {
        acc.count += newer.count;
        if newer.fields.is_empty() {
            return;
        }
        if acc.fields.is_empty() {
            acc.fields = newer.fields;
            return;
        }
        let old = std::mem::take(&mut acc.fields);
        let mut merged = Vec::with_capacity(old.len().max(newer.fields.len()));
        let (mut a, mut b) = (
            old.into_iter().peekable(),
            newer.fields.into_iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                    std::cmp::Ordering::Less => a.next(),
                    std::cmp::Ordering::Greater => b.next(),
                    std::cmp::Ordering::Equal => {
                        let (p, x) = a.next().expect("peeked");
                        let (_, y) = b.next().expect("peeked");
                        Some((p, x.add(y)))
                    }
                },
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            match next {
                Some(f) => merged.push(f),
                None => break,
            }
        }
        acc.fields = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Path {
        let mut out = Vec::new();
        for s in p {
            push_segment(&mut out, s);
        }
        out.into()
    }

    fn sorted(mut v: Vec<(Path, Num)>) -> Vec<(Path, Num)> {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn paths_round_trip_through_their_encoding() {
        let long = "x".repeat(300);
        for p in [&["a"][..], &["a.b", "", "c"], &[long.as_str(), "é"]] {
            let enc = path(p);
            assert_eq!(segments(&enc).collect::<Vec<_>>(), p);
        }
    }

    #[test]
    fn a_repeated_key_counts_once_with_its_last_value() {
        let s = Sample::of_event(Some(r#"{"a":1,"b":2,"a":5}"#));
        assert_eq!(
            s.fields,
            sorted(vec![
                (path(&["a"]), Num::Int(5)),
                (path(&["b"]), Num::Int(2))
            ])
        );
    }

    #[test]
    fn extracts_numeric_leaves_only() {
        let s = Sample::of_event(Some(
            r#"{"ms":12,"page":"home","ok":true,"tags":[1,2],"n":null,
                "db":{"rows":3,"time":1.5,"q":"x"},"big":18446744073709551615,"a.b":1}"#,
        ));
        assert_eq!(s.count, 1);
        assert_eq!(
            s.fields,
            sorted(vec![
                (path(&["a.b"]), Num::Int(1)),
                (path(&["big"]), Num::Float(18_446_744_073_709_551_615.0)),
                (path(&["db", "rows"]), Num::Int(3)),
                (path(&["db", "time"]), Num::Float(1.5)),
                (path(&["ms"]), Num::Int(12)),
            ])
        );
        assert_eq!(
            Sample::of_event(None),
            Sample {
                count: 1,
                fields: vec![]
            }
        );
        assert_eq!(Sample::of_event(Some("{}")).fields, vec![]);
    }

    #[test]
    fn merge_adds_counts_and_fields_exactly() {
        let m = SampleMerge;
        let mut acc = Sample::of_event(Some(r#"{"a":1,"c":2}"#));
        m.merge(&mut acc, Sample::of_event(None));
        m.merge(&mut acc, Sample::of_event(Some(r#"{"b":5,"c":3}"#)));
        m.merge(&mut acc, Sample::of_event(Some(r#"{"c":0.5}"#)));
        m.merge(
            &mut acc,
            Sample::of_event(Some(r#"{"a":9223372036854775807}"#)),
        );
        assert_eq!(acc.count, 5);
        assert_eq!(
            acc.fields,
            sorted(vec![
                (path(&["a"]), Num::Float(9_223_372_036_854_775_808.0)),
                (path(&["b"]), Num::Int(5)),
                (path(&["c"]), Num::Float(5.5)),
            ])
        );
        let mut empty = Sample::default();
        m.merge(&mut empty, Sample::of_event(Some(r#"{"x":1}"#)));
        assert_eq!(empty.fields, vec![(path(&["x"]), Num::Int(1))]);
    }

    #[test]
    fn a_sum_leaving_f64_overflows_that_field_alone_for_the_window() {
        let m = SampleMerge;
        let mut acc = Sample::of_event(Some(r#"{"v":1,"x":1e308}"#));
        m.merge(&mut acc, Sample::of_event(Some(r#"{"v":2,"x":1e308}"#)));
        m.merge(&mut acc, Sample::of_event(Some(r#"{"v":3,"x":-1e308}"#)));
        assert_eq!(acc.count, 3);
        assert_eq!(
            acc.fields,
            sorted(vec![
                (path(&["v"]), Num::Int(6)),
                (path(&["x"]), Num::Overflow),
            ])
        );
        // Integers past i64 become floats, never an overflow.
        let mut big = Sample::of_event(Some(r#"{"n":9223372036854775807}"#));
        m.merge(
            &mut big,
            Sample::of_event(Some(r#"{"n":9223372036854775807}"#)),
        );
        assert_eq!(
            big.fields[0].1,
            Num::Float(2.0 * 9_223_372_036_854_775_807.0)
        );
    }
}
