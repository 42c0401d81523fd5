//! Property tests (proptest) of what parses client input: the event decoder, the `data`
//! scanner and the `where=` predicate parser. Whatever the bytes, they never panic; what they
//! accept, every reader can read; what they build for SQLite runs against any stored data.

use proptest::prelude::*;
use serde_json::Value;

use super::data;
use super::event::{self, Limits};
use super::pipeline::sample::Sample;
use super::query::Predicate;
use super::time_fmt::EventTime;

const LIMITS: Limits = Limits {
    max_events: 50,
    max_key_bytes: 64,
    max_data_bytes: 4096,
    max_data_depth: 6,
    max_id_bytes: 16,
};
const NOW: EventTime = EventTime {
    unix_ns: 1,
    offset_s: 0,
};

/// Any JSON value, nested up to 10 levels, with keys and strings full of JSON's own syntax.
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof!["[a-z]{0,4}", r#"[\[\]{}",:\\ \t\n.é🦀0-9eE+-]{0,8}"#,];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(10, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compact_equals_the_reference_serialisation_or_names_the_depth(v in json_value()) {
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let limit = 5;
        match data::compact(&pretty, limit) {
            Ok(text) => {
                prop_assert!(depth(&v) <= limit);
                prop_assert_eq!(text.as_ref(), serde_json::to_string(&v).unwrap());
            }
            Err(e) => {
                prop_assert!(depth(&v) > limit, "{e}");
                prop_assert_eq!(e, data::DataError::TooDeep { limit });
            }
        }
    }

    #[test]
    fn the_event_decoders_never_panic_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = event::decode_events(&body, &LIMITS, NOW);
        let _ = event::decode_batch(&body, &LIMITS, NOW);
    }

    #[test]
    fn what_the_decoder_accepts_every_reader_can_read(
        keys in prop::collection::vec("[a-z/]{0,70}", 1..4),
        datas in prop::collection::vec(json_value(), 1..4),
        numbers in prop::collection::vec(r"-?[0-9]{1,3}(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,4})?", 0..3),
    ) {
        // Events with arbitrary data, plus raw numbers of any exponent (which a Value cannot
        // hold when they are out of range).
        let mut elements: Vec<String> = keys
            .iter()
            .zip(datas.iter().cycle())
            .map(|(k, d)| format!(r#"{{"key":{},"data":{{"v":{d}}}}}"#, Value::from(k.as_str())))
            .collect();
        for n in &numbers {
            elements.push(format!(r#"{{"key":"n","data":{{"x":{n}}}}}"#));
        }
        let body = format!("[{}]", elements.join(","));
        match event::decode_events(body.as_bytes(), &LIMITS, NOW) {
            Ok(events) => {
                for e in events {
                    prop_assert!(!e.key.is_empty() && e.key.len() <= LIMITS.max_key_bytes);
                    let Some(text) = e.data.as_deref() else { continue };
                    prop_assert!(text.len() <= LIMITS.max_data_bytes);
                    let parsed: Value = serde_json::from_str(text).unwrap();
                    prop_assert!(parsed.is_object());
                    prop_assert!(depth(&parsed) <= LIMITS.max_data_depth);
                    // Already compact, and within f64.
                    let again = data::compact(text, LIMITS.max_data_depth).unwrap();
                    prop_assert_eq!(again.as_ref(), text);
                    let sample = Sample::of_event(Some(text));
                    prop_assert_eq!(sample.count, 1);
                }
            }
            Err(e) => prop_assert!(e.status.is_client_error(), "{e:?}"),
        }
    }

    #[test]
    fn accepted_predicates_run_on_any_stored_data(
        clause in r#"[a-z.\"\\ ]{0,12}(=|!=|<|<=|>|>=|~)[a-z0-9\".\-\[\]{} ]{0,12}"#,
        junk in ".{0,24}",
    ) {
        for text in [clause.as_str(), junk.as_str()] {
            let Ok(p) = Predicate::parse(text) else { continue };
            prop_assert!(p.path.starts_with("$."));
            let mut sql = String::from("SELECT count(*) FROM events WHERE 1");
            let mut values = Vec::new();
            p.push_sql(&mut sql, &mut values);
            // Nothing of the client's text is in the SQL: it is all bound.
            prop_assert!(!sql.contains(&p.path));
            let db = stored_data();
            let n: rusqlite::Result<i64> =
                db.query_row(&sql, rusqlite::params_from_iter(values), |r| r.get(0));
            prop_assert!(n.is_ok(), "{text:?}: {n:?}");
        }
    }
}

/// An in-memory `events` table holding every shape of `data`, including text SQLite's JSON
/// functions cannot parse (too deep, not JSON).
fn stored_data() -> rusqlite::Connection {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE events (data TEXT)").unwrap();
    let deep = format!("{}1{}", r#"{"a":"#.repeat(2000), "}".repeat(2000));
    for d in [
        None,
        Some(r#"{"a":1,"b":"x","c":{"d":[1,2]},"e":null,"f":true}"#.to_owned()),
        Some(r#"{"a":"1"}"#.to_owned()),
        Some(deep),
        Some("not json".to_owned()),
        Some(r#"{"a":9e999}"#.to_owned()),
    ] {
        db.execute("INSERT INTO events (data) VALUES (?1)", [d])
            .unwrap();
    }
    db
}
