//! [`Event`]: what the client sends, and its wire form (the collector's event object).

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde_json::{Map, Value};

/// One event for the collector: a key, an optional time, optional `data` fields.
///
/// The collector's wire object is `{"key", "timestamp", "data", "id"}`. The client fills in
/// `timestamp` with the time of [`emit`](crate::client::Client::emit) when it is not set (so a
/// retried or delayed event keeps the time it happened, not the time it arrived) and gives every
/// event a unique `id`, which makes retried batches idempotent on the server.
///
/// Build one field at a time (a fresh map per event: nothing is shared between requests), or
/// from a JSON object:
///
/// ```
/// use accrue::client::Event;
/// use serde_json::json;
///
/// let a = Event::new("signup").with("plan", "pro").with("seats", 3);
/// let b = Event::new("signup").with_json(json!({"plan": "pro", "seats": 3})).unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.data().unwrap()["seats"], 3);
///
/// // `data` must be a JSON object (or nothing), as the collector requires.
/// assert!(Event::new("x").with_json(json!([1, 2])).is_err());
/// ```
#[derive(Clone, PartialEq)]
pub struct Event {
    pub(crate) key: Cow<'static, str>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) data: Option<Map<String, Value>>,
}

impl Event {
    /// An event with this key, no time (filled in by `emit`) and no data. A `&'static str` key
    /// is not copied.
    pub fn new(key: impl Into<Cow<'static, str>>) -> Self {
        Self {
            key: key.into(),
            timestamp: None,
            data: None,
        }
    }

    /// Adds (or replaces) one `data` field.
    #[must_use]
    pub fn with(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.data
            .get_or_insert_with(Map::new)
            .insert(field.into(), value.into());
        self
    }

    /// Sets `data` to this map (an empty map is sent as `{}`).
    #[must_use]
    pub fn with_data(mut self, data: Map<String, Value>) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets `data` from a JSON value, which must be an object or `null`.
    ///
    /// # Errors
    ///
    /// [`InvalidEvent::DataNotObject`] for any other JSON value; the event is dropped.
    pub fn with_json(mut self, data: Value) -> Result<Self, InvalidEvent> {
        match data {
            Value::Object(map) => self.data = Some(map),
            Value::Null => self.data = None,
            other => {
                return Err(InvalidEvent::DataNotObject {
                    found: json_type(&other),
                });
            }
        }
        Ok(self)
    }

    /// Sets the time the event happened (default: when it is emitted).
    #[must_use]
    pub fn at(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The time, if set.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The `data` fields, if any.
    pub fn data(&self) -> Option<&Map<String, Value>> {
        self.data.as_ref()
    }

    /// Checks what the collector checks about the key before the event is queued.
    pub(crate) fn validate(&self, max_key_bytes: usize) -> Result<(), InvalidEvent> {
        if self.key.is_empty() {
            return Err(InvalidEvent::EmptyKey);
        }
        if self.key.len() > max_key_bytes {
            return Err(InvalidEvent::KeyTooLong {
                len: self.key.len(),
                max: max_key_bytes,
            });
        }
        Ok(())
    }

    /// Appends the wire object to `out`: `{"key":…,"timestamp":…,"data":…,"id":…}`.
    /// Returns the length of the `data` text, for the per-event limit.
    pub(crate) fn write_json(&self, id: &str, out: &mut Vec<u8>) -> usize {
        out.extend_from_slice(b"{\"key\":");
        write_str(out, &self.key);
        if let Some(ts) = self.timestamp {
            out.extend_from_slice(b",\"timestamp\":\"");
            // RFC 3339 in UTC with the fraction trimmed, as the collector parses it.
            use std::io::Write as _;
            let _ = write!(out, "{ts}");
            out.push(b'"');
        }
        let mut data_len = 0;
        if let Some(data) = &self.data {
            out.extend_from_slice(b",\"data\":");
            let start = out.len();
            serde_json::to_writer(&mut *out, data).expect("a JSON map always serializes");
            data_len = out.len() - start;
        }
        out.extend_from_slice(b",\"id\":");
        write_str(out, id);
        out.push(b'}');
        data_len
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("key", &self.key)
            .field("timestamp", &self.timestamp)
            .field("data", &self.data)
            .finish()
    }
}

/// A JSON string literal, escaped.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("a string always serializes");
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why an [`Event`] cannot be sent; checked before it is queued, so nothing was sent.
///
/// # Examples
///
/// ```
/// use accrue::client::{Event, InvalidEvent};
///
/// let err = Event::new("x").with_json(serde_json::json!("text")).unwrap_err();
/// assert_eq!(err, InvalidEvent::DataNotObject { found: "a string" });
/// assert_eq!(err.to_string(), "event data must be a JSON object or null, not a string");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// The key is empty (the collector answers `Event key is required`).
    EmptyKey,
    /// The key is longer than the client's `max_key_bytes` (the collector's limit, 256 bytes by
    /// default).
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `data` is not a JSON object.
    DataNotObject {
        /// What it was instead.
        found: &'static str,
    },
    /// `data` is larger than the client's `max_data_bytes` once serialized (the collector's
    /// limit, 64 KiB by default). Found when the batch is built; the event is counted as
    /// rejected.
    DataTooLarge {
        /// Its serialized size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyKey => f.write_str("event key is empty"),
            Self::KeyTooLong { len, max } => {
                write!(f, "event key is {len} bytes; the limit is {max}")
            }
            Self::DataNotObject { found } => {
                write!(f, "event data must be a JSON object or null, not {found}")
            }
            Self::DataTooLarge { len, max } => {
                write!(f, "event data is {len} bytes; the limit is {max}")
            }
        }
    }
}

impl std::error::Error for InvalidEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_the_collector() {
        let ts: Timestamp = "2025-08-25T10:00:00.5Z".parse().unwrap();
        let e = Event::new("page\"view").with("n", 1).at(ts);
        let mut out = Vec::new();
        let data_len = e.write_json("abc", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"key":"page\"view","timestamp":"2025-08-25T10:00:00.5Z","data":{"n":1},"id":"abc"}"#
        );
        assert_eq!(data_len, r#"{"n":1}"#.len());
        let mut out = Vec::new();
        Event::new("k").write_json("1", &mut out);
        assert_eq!(out, br#"{"key":"k","id":"1"}"#);
    }

    #[test]
    fn keys_are_checked_like_the_server_does() {
        assert_eq!(Event::new("").validate(256), Err(InvalidEvent::EmptyKey));
        assert_eq!(
            Event::new("abcd").validate(3),
            Err(InvalidEvent::KeyTooLong { len: 4, max: 3 })
        );
        assert!(Event::new("abc").validate(3).is_ok());
        assert_eq!(
            Event::new("x").with_json(Value::from(1)).unwrap_err(),
            InvalidEvent::DataNotObject { found: "a number" }
        );
        assert_eq!(Event::new("x").with_json(Value::Null).unwrap().data, None);
    }
}
