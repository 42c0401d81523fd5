//! [`Sample`]: what the aggregator keeps per (event key, bucket) — the number of events and the
//! sums of the numeric leaves of their `data`.

use serde_json::Value as Json;

use crate::Merge;

/// A numeric leaf: integers stay exact until a sum overflows `i64` or meets a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a
                .checked_add(b)
                .map_or(Num::Float(a as f64 + b as f64), Num::Int),
            (a, b) => Num::Float(a.as_f64() + b.as_f64()),
        }
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// The path from the top of `data` down to a numeric leaf.
pub(crate) type Path = Box<[Box<str>]>;

/// Events counted and numeric `data` leaves summed, for one (key, bucket).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Sample {
    pub(crate) count: u64,
    /// Sorted by path, no duplicates.
    pub(crate) fields: Vec<(Path, Num)>,
}

impl Sample {
    /// One event with `data` (the stored JSON object text, or `None`).
    ///
    /// Numbers anywhere in the object tree are kept; strings, booleans, `null` and arrays are
    /// not metrics and are skipped. Integers beyond `i64` become floats.
    pub(crate) fn of_event(data: Option<&str>) -> Self {
        let mut fields = Vec::new();
        if let Some(text) = data {
            // The text was validated as a JSON object when the event was accepted.
            if let Ok(Json::Object(map)) = serde_json::from_str::<Json>(text) {
                let mut path = Vec::new();
                collect(&map, &mut path, &mut fields);
            }
        }
        // Paths are unique: a repeated key in `data` decodes to its last value.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Sample { count: 1, fields }
    }
}

fn collect(
    map: &serde_json::Map<String, Json>,
    path: &mut Vec<Box<str>>,
    out: &mut Vec<(Path, Num)>,
) {
    for (k, v) in map {
        path.push(k.as_str().into());
        match v {
            Json::Number(n) => {
                let num = match n.as_i64() {
                    Some(i) => Num::Int(i),
                    None => Num::Float(n.as_f64().unwrap_or(0.0)),
                };
                out.push((path.clone().into_boxed_slice(), num));
            }
            Json::Object(inner) => collect(inner, path, out),
            _ => {}
        }
        path.pop();
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
        p.iter().map(|s| Box::<str>::from(*s)).collect()
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
            vec![
                (path(&["a.b"]), Num::Int(1)),
                (path(&["big"]), Num::Float(18_446_744_073_709_551_615.0)),
                (path(&["db", "rows"]), Num::Int(3)),
                (path(&["db", "time"]), Num::Float(1.5)),
                (path(&["ms"]), Num::Int(12)),
            ]
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
            vec![
                (path(&["a"]), Num::Float(9_223_372_036_854_775_808.0)),
                (path(&["b"]), Num::Int(5)),
                (path(&["c"]), Num::Float(5.5)),
            ]
        );
        let mut empty = Sample::default();
        m.merge(&mut empty, Sample::of_event(Some(r#"{"x":1}"#)));
        assert_eq!(empty.fields, vec![(path(&["x"]), Num::Int(1))]);
    }
}
