//! [`Value`]: the typed tree a metric holds, and [`Number`], the exact numeric leaf.

use std::collections::BTreeMap;
use std::fmt;

/// A map of values by key: the top level of what [`MetricsStore::track`](crate::metrics::MetricsStore::track) and
/// [`MetricsStore::assert`](crate::metrics::MetricsStore::assert) take and [`MetricsStore::values`](crate::metrics::MetricsStore::values)
/// returns. Ordered, so packing and serialisation are deterministic.
pub type Values = BTreeMap<String, Value>;

/// A value in a metric's tree: maps of string keys whose leaves are numbers (for
/// [`track`](crate::metrics::MetricsStore::track)) or any scalar (for [`assert`](crate::metrics::MetricsStore::assert)).
///
/// Integers stay integers end to end (no float drift on integer sums); floats must be finite.
/// Arrays are opaque leaves: stored and returned as they are, never indexed or summed.
///
/// Build values from Rust scalars, from [`serde_json::Value`] (`json!` is handy), or with the
/// enum directly.
///
/// # Examples
///
/// ```
/// use accrue::metrics::Value;
/// use serde_json::json;
///
/// let v = Value::from(json!({"count": 1, "meta": {"duration": 2.5}}));
/// assert_eq!(v.get("count"), Some(&Value::Int(1)));
/// assert_eq!(v.get("meta").and_then(|m| m.get("duration")), Some(&Value::Float(2.5)));
/// assert_eq!(v.to_json(), json!({"count": 1, "meta": {"duration": 2.5}}));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// A string.
    Str(String),
    /// An opaque array, stored as one leaf.
    Array(Vec<Value>),
    /// A nested map.
    Map(Values),
}

/// A numeric leaf: an exact integer or a float.
///
/// Sums of integers stay integers; a sum that would overflow `i64`, or involves a float,
/// becomes a float (as SQLite does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
}

impl std::ops::Add for Number {
    type Output = Number;

    /// Exact for integers that do not overflow.
    ///
    /// ```
    /// use accrue::metrics::Number;
    /// assert_eq!(Number::Int(2) + Number::Int(3), Number::Int(5));
    /// assert_eq!(Number::Int(1) + Number::Float(0.5), Number::Float(1.5));
    /// assert_eq!(Number::Int(i64::MAX) + Number::Int(1), Number::Float(i64::MAX as f64 + 1.0));
    /// ```
    fn add(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => match a.checked_add(b) {
                Some(s) => Number::Int(s),
                None => Number::Float(a as f64 + b as f64),
            },
            (a, b) => Number::Float(a.as_f64() + b.as_f64()),
        }
    }
}

impl Number {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Self {
        match n {
            Number::Int(i) => Value::Int(i),
            Number::Float(f) => Value::Float(f),
        }
    }
}

impl Value {
    /// An empty map.
    pub fn map() -> Self {
        Value::Map(Values::new())
    }

    /// The child `key` of a map (`None` for other values).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&Values> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The number, if this is an integer or a float.
    pub fn as_number(&self) -> Option<Number> {
        match *self {
            Value::Int(i) => Some(Number::Int(i)),
            Value::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }

    /// Whether this is an empty map.
    pub fn is_empty_map(&self) -> bool {
        matches!(self, Value::Map(m) if m.is_empty())
    }

    /// Converts to JSON (floats that are not finite, which validation never lets in, become
    /// `null`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// The name of the value's type, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
        }
    }
}

impl From<serde_json::Value> for Value {
    /// JSON integers become [`Value::Int`] (a `u64` above `i64::MAX` becomes a float), other
    /// numbers [`Value::Float`].
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s),
            J::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            J::Object(o) => Value::Map(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
        }
    }
}

impl From<Values> for Value {
    fn from(m: Values) -> Self {
        Value::Map(m)
    }
}

macro_rules! from_int {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8 i16 i32 i64 u8 u16 u32);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Value::Map(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}
