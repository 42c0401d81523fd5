//! Events on the wire: decoding with the rules Tlytics' Go decoder applies, then validation.
//!
//! Decoding borrows from the request body (keys and `data` are copied once, into the
//! [`Event`]s handed to the writer). The rules, those of Tlytics' Go decoder:
//!
//! * field names match case-insensitively (Go's Unicode folding: `KEY`, `Timestamp`, and even
//!   the Kelvin sign for `k`), a later duplicate wins, unknown fields are ignored;
//! * `key` is a string or `null` (`null` changes nothing), `timestamp` a strict RFC 3339 string
//!   or `null`, `data` an object or `null`, the optional `id` a string or `null`;
//! * a `null` element is an event with an empty key;
//! * trailing bytes after the JSON value are an error (an improvement on Tlytics).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::data;
use super::error::ApiError;
use super::pipeline::sample::Sample;
use super::time_fmt::{EventTime, parse_rfc3339};

/// Per-request and per-event limits, checked before anything is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_events: usize,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_data_bytes: usize,
    /// Deepest nesting of objects and arrays in `data` (the object itself is level 1).
    pub(crate) max_data_depth: usize,
    pub(crate) max_id_bytes: usize,
}

/// A validated event, owned, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) key: Box<str>,
    pub(crate) time: EventTime,
    /// Whitespace-free JSON object text, or `None` for `null` / absent.
    pub(crate) data: Option<Box<str>>,
    /// The client's idempotency id: a second event with the same id is a duplicate.
    pub(crate) id: Option<Box<str>>,
    /// Its aggregation bucket and metrics, filled in by the metrics pipeline when it is on.
    pub(crate) metric: Option<(i64, Sample)>,
}

impl Event {
    /// Bytes this event holds on the heap, for the queue's memory bound.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.key.len()
            + self.data.as_ref().map_or(0, |d| d.len())
            + self.id.as_ref().map_or(0, |i| i.len())
            + self.metric.as_ref().map_or(0, |(_, s)| s.heap_bytes())
    }
}

/// One decoded element, borrowing from the body.
#[derive(Debug, Default)]
pub(crate) struct WireEvent<'a> {
    key: Cow<'a, str>,
    time: Option<EventTime>,
    data: Option<&'a RawValue>,
    id: Option<Cow<'a, str>>,
}

/// The three field names and the extension, matched as Go does.
enum Field {
    Key,
    Timestamp,
    Data,
    Id,
    Other,
}

impl Field {
    fn of(name: &str) -> Self {
        if folds_to(name, "key") {
            Self::Key
        } else if folds_to(name, "timestamp") {
            Self::Timestamp
        } else if folds_to(name, "data") {
            Self::Data
        } else if folds_to(name, "id") {
            Self::Id
        } else {
            Self::Other
        }
    }
}

/// Whether `name` equals the lower-case ASCII `target` under Unicode simple case folding, as
/// Go's `encoding/json` matches field names. Besides ASCII case, only two non-ASCII letters fold
/// onto ASCII ones: KELVIN SIGN onto `k` and LATIN SMALL LETTER LONG S onto `s`.
pub(crate) fn folds_to(name: &str, target: &str) -> bool {
    let mut t = target.bytes();
    for c in name.chars() {
        let folded = match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c if c.is_ascii() => c.to_ascii_lowercase(),
            _ => return false,
        };
        if t.next() != Some(folded as u8) {
            return false;
        }
    }
    t.next().is_none()
}

/// A string that borrows from the input when it has no escapes.
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for WireEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(EventOrNull)
    }
}

struct EventOrNull;

impl<'de> Visitor<'de> for EventOrNull {
    type Value = WireEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireEvent::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireEvent::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(EventFields)
    }
}

struct EventFields;

impl<'de> Visitor<'de> for EventFields {
    type Value = WireEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ev = WireEvent::default();
        while let Some(CowStr(name)) = map.next_key()? {
            match Field::of(&name) {
                Field::Key => {
                    // Go leaves a string unchanged when it decodes `null` into it.
                    if let Some(CowStr(k)) = map.next_value::<Option<CowStr<'de>>>()? {
                        ev.key = k;
                    }
                }
                Field::Timestamp => {
                    if let Some(CowStr(s)) = map.next_value::<Option<CowStr<'de>>>()? {
                        ev.time = parse_rfc3339(&s)
                            .map_err(|e| de::Error::custom(format_args!("{e}: {s:?}")))?;
                    }
                }
                Field::Data => {
                    // ... but sets a map to nil.
                    ev.data = map.next_value::<Option<&'de RawValue>>()?;
                    if let Some(raw) = ev.data
                        && !raw.get().starts_with('{')
                    {
                        return Err(de::Error::custom("data must be a JSON object or null"));
                    }
                }
                Field::Id => {
                    if let Some(CowStr(id)) = map.next_value::<Option<CowStr<'de>>>()? {
                        ev.id = Some(id);
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ev)
    }
}

/// `[event, ...]` or `null`, stopping at `limit + 1` elements.
struct EventArray<'c> {
    limit: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for EventArray<'_> {
    type Value = Vec<WireEvent<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for EventArray<'_> {
    type Value = Vec<WireEvent<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
        while let Some(ev) = seq.next_element()? {
            if out.len() == self.limit {
                self.too_many.set(true);
                return Err(de::Error::custom("too many events"));
            }
            out.push(ev);
        }
        Ok(out)
    }
}

/// `[raw, ...]` or `null` for `/batch`, whose elements are decoded one by one afterwards.
struct RawArray<'c> {
    limit: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for RawArray<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.limit {
                self.too_many.set(true);
                return Err(de::Error::custom("too many events"));
            }
            out.push(raw);
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for RawArray<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

/// `{"events": [...]}` (or `null`): the `/batch` envelope.
struct BatchEnvelope<'c> {
    limit: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BatchEnvelope<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for BatchEnvelope<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object {"events": [...]}"#)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        while let Some(CowStr(name)) = map.next_key()? {
            if folds_to(&name, "events") {
                events = map.next_value_seed(RawArray {
                    limit: self.limit,
                    too_many: self.too_many,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(events)
    }
}

/// Decodes a `POST /events` body: a JSON array of events, or `null`.
///
/// # Errors
///
/// `400 Invalid JSON format` for anything that does not decode, `413` past `max_events`; then
/// the validation errors of [`validate`].
pub(crate) fn decode_events(
    body: &[u8],
    limits: &Limits,
    now: EventTime,
) -> Result<Vec<Event>, ApiError> {
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = EventArray {
        limit: limits.max_events,
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    let wire = match parsed {
        Ok(wire) => wire,
        Err(_) if too_many.get() => return Err(ApiError::too_many_events(limits.max_events)),
        Err(e) => return Err(ApiError::invalid_json(e.to_string())),
    };
    wire.into_iter()
        .enumerate()
        .map(|(i, w)| validate(i, w, limits, now))
        .collect()
}

/// Decodes a `POST /batch` body: `{"events": [...]}`, or `null`.
///
/// The envelope is decoded first (`400 Invalid JSON format` if the body is not JSON of that
/// shape), then each element in order: `400 Invalid event format` for an element that does not
/// decode, then the validation errors of [`validate`] — the first failing element decides.
pub(crate) fn decode_batch(
    body: &[u8],
    limits: &Limits,
    now: EventTime,
) -> Result<Vec<Event>, ApiError> {
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = BatchEnvelope {
        limit: limits.max_events,
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    let raws = match parsed {
        Ok(raws) => raws,
        Err(_) if too_many.get() => return Err(ApiError::too_many_events(limits.max_events)),
        Err(e) => return Err(ApiError::invalid_json(e.to_string())),
    };
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let wire: WireEvent<'_> = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::invalid_event(i, e.to_string()))?;
            validate(i, wire, limits, now)
        })
        .collect()
}

/// Checks one decoded element against the limits and turns it into an owned [`Event`].
///
/// # Errors
///
/// `400 Event key is required` (the Tlytics message) for a missing or empty key; `400` naming
/// the limit for an oversized key, `data` or id, for `data` nested too deep, or for a number in
/// it beyond the range of a 64-bit float.
fn validate(
    index: usize,
    w: WireEvent<'_>,
    limits: &Limits,
    now: EventTime,
) -> Result<Event, ApiError> {
    if w.key.is_empty() {
        return Err(ApiError::key_required(index));
    }
    if w.key.len() > limits.max_key_bytes {
        return Err(ApiError::key_too_long(
            index,
            w.key.len(),
            limits.max_key_bytes,
        ));
    }
    let data = match w.data {
        Some(raw) => {
            let compact = data::compact(raw.get(), limits.max_data_depth)
                .map_err(|e| ApiError::invalid_data(index, &e))?;
            if compact.len() > limits.max_data_bytes {
                return Err(ApiError::data_too_large(
                    index,
                    compact.len(),
                    limits.max_data_bytes,
                ));
            }
            Some(compact.into_owned().into_boxed_str())
        }
        None => None,
    };
    let id = match w.id {
        Some(id) if id.is_empty() || id.len() > limits.max_id_bytes => {
            return Err(ApiError::bad_id(index, id.len(), limits.max_id_bytes));
        }
        Some(id) => Some(id.into_owned().into_boxed_str()),
        None => None,
    };
    Ok(Event {
        key: w.key.into_owned().into_boxed_str(),
        time: w.time.unwrap_or(now),
        data,
        id,
        metric: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_events: 3,
        max_key_bytes: 8,
        max_data_bytes: 32,
        max_data_depth: 3,
        max_id_bytes: 4,
    };
    const NOW: EventTime = EventTime {
        unix_ns: 42,
        offset_s: 0,
    };

    fn events(body: &str) -> Result<Vec<Event>, ApiError> {
        decode_events(body.as_bytes(), &LIMITS, NOW)
    }

    fn batch(body: &str) -> Result<Vec<Event>, ApiError> {
        decode_batch(body.as_bytes(), &LIMITS, NOW)
    }

    fn err(r: Result<Vec<Event>, ApiError>) -> (u16, &'static str, Option<usize>) {
        let e = r.unwrap_err();
        (e.status.as_u16(), e.error, e.index)
    }

    #[test]
    fn folding_matches_go() {
        assert!(folds_to("KEY", "key"));
        assert!(folds_to("kEy", "key"));
        assert!(folds_to("\u{212A}ey", "key"));
        assert!(folds_to("time\u{017F}tamp", "timestamp"));
        assert!(!folds_to("keys", "key"));
        assert!(!folds_to("ke", "key"));
        assert!(!folds_to("k\u{0435}y", "key"));
    }

    #[test]
    fn decodes_fields_case_insensitively_with_last_duplicate_winning() {
        let ev = events(
            r#"[{"KEY":"a","Key":"b","key":null,"TimeStamp":"2025-08-25T12:00:00+02:00",
                 "DATA":{"x": [1, 2]},"extra":{"deep":[true]}}]"#,
        )
        .unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(&*ev[0].key, "b");
        assert_eq!(ev[0].time.offset_s, 7200);
        assert_eq!(ev[0].data.as_deref(), Some(r#"{"x":[1,2]}"#));
        assert_eq!(ev[0].id, None);
    }

    #[test]
    fn missing_or_null_timestamp_and_data_get_defaults() {
        let ev = events(
            r#"[{"key":"a"},{"key":"b","timestamp":null,"data":null},
                            {"key":"c","data":{"a":1},"data":null},
                            {"key":"d","timestamp":"0001-01-01T00:00:00Z"}]"#,
        );
        assert_eq!(err(ev), (413, "Too many events in one request", None));
        let ev = events(
            r#"[{"key":"a"},{"key":"b","timestamp":null,"data":null},
                {"key":"c","data":{"a":1},"data":null}]"#,
        )
        .unwrap();
        assert!(ev.iter().all(|e| e.time == NOW && e.data.is_none()));
        let ev = events(r#"[{"key":"d","timestamp":"0001-01-01T00:00:00Z"}]"#).unwrap();
        assert_eq!(ev[0].time, NOW);
    }

    #[test]
    fn null_and_empty_bodies() {
        assert!(events("null").unwrap().is_empty());
        assert!(events("[]").unwrap().is_empty());
        assert!(events(" [ ] \n").unwrap().is_empty());
        assert!(batch("null").unwrap().is_empty());
        assert!(batch("{}").unwrap().is_empty());
        assert!(batch(r#"{"events":null}"#).unwrap().is_empty());
        assert!(batch(r#"{"events":[]}"#).unwrap().is_empty());
        assert!(
            batch(r#"{"events":[{"key":"a"}],"EVENTS":null}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn events_errors_are_invalid_json() {
        for body in [
            "",
            "   ",
            "[",
            "{}",
            r#"{"events":[]}"#,
            "[42]",
            "[[]]",
            r#"[{"key":1}]"#,
            r#"[{"key":"a","timestamp":1}]"#,
            r#"[{"key":"a","timestamp":""}]"#,
            r#"[{"key":"a","timestamp":"2025-08-25"}]"#,
            r#"[{"key":"a","data":[1]}]"#,
            r#"[{"key":"a","data":"x"}]"#,
            r#"[{"key":"a","data":3}]"#,
            r#"[{"key":"a","id":7}]"#,
            r#"[{"key":"a"}] trailing"#,
            r#"[{"key":"a"}][]"#,
        ] {
            assert_eq!(err(events(body)).1, "Invalid JSON format", "{body:?}");
        }
    }

    #[test]
    fn batch_separates_envelope_errors_from_element_errors() {
        for body in [
            "",
            "[]",
            r#"{"events":{}}"#,
            r#"{"events":5}"#,
            r#"{"events":[}"#,
        ] {
            assert_eq!(err(batch(body)).1, "Invalid JSON format", "{body:?}");
        }
        // Go decodes the whole body before looking at elements: a syntax error anywhere wins.
        assert_eq!(
            err(batch(r#"{"events":[42, {"key":}]}"#)).1,
            "Invalid JSON format"
        );
        assert_eq!(
            err(batch(r#"{"events":[{"key":"a"}, 42]}"#)),
            (400, "Invalid event format", Some(1))
        );
        assert_eq!(
            err(batch(r#"{"events":[{"key":"a","data":[]}]}"#)),
            (400, "Invalid event format", Some(0))
        );
        // Elements are checked in order, so an empty key before a bad element is reported.
        assert_eq!(
            err(batch(r#"{"events":[{"key":""}, 42]}"#)),
            (400, "Event key is required", Some(0))
        );
    }

    #[test]
    fn key_is_required_and_null_element_has_no_key() {
        assert_eq!(
            err(events(r#"[{"key":"a"},{"data":{}}]"#)),
            (400, "Event key is required", Some(1))
        );
        assert_eq!(
            err(events("[null]")),
            (400, "Event key is required", Some(0))
        );
        assert_eq!(
            err(batch(r#"{"events":[null]}"#)),
            (400, "Event key is required", Some(0))
        );
        assert_eq!(
            err(events(r#"[{"key":""}]"#)),
            (400, "Event key is required", Some(0))
        );
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(err(events(r#"[{"key":"123456789"}]"#)).0, 400);
        assert_eq!(
            err(events(r#"[{"key":"123456789"}]"#)).1,
            "Event key is too long"
        );
        assert!(events(r#"[{"key":"12345678"}]"#).is_ok());
        let big = format!(r#"[{{"key":"a","data":{{"x":"{}"}}}}]"#, "y".repeat(30));
        assert_eq!(err(events(&big)).1, "Event data is too large");
        // The limit applies to the stored (whitespace-free) text.
        let spaced = r#"[{"key":"a","data":{    "x"   :   "0123456789012345678901"   }}]"#;
        assert!(events(spaced).is_ok());
        assert_eq!(
            err(events(r#"[{"key":"a","id":"12345"}]"#)).1,
            "Invalid event id"
        );
        assert_eq!(
            err(events(r#"[{"key":"a","id":""}]"#)).1,
            "Invalid event id"
        );
        assert_eq!(
            events(r#"[{"key":"a","id":"1234"}]"#).unwrap()[0]
                .id
                .as_deref(),
            Some("1234")
        );
        assert_eq!(
            err(batch(
                r#"{"events":[{"key":"a"},{"key":"a"},{"key":"a"},{"key":"a"}]}"#
            ))
            .0,
            413
        );
        assert!(batch(r#"{"events":[{"key":"a"},{"key":"a"},{"key":"a"}]}"#).is_ok());
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let ev = events(r#"[{"k\u0065y":"caf\u00e9"}]"#).unwrap();
        assert_eq!(&*ev[0].key, "café");
    }
}
