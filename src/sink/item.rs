//! What an aggregated item becomes: [`SinkKey`] (name and time) and [`SinkValue`] (fields).

use std::borrow::Cow;
use std::sync::Arc;

use jiff::Timestamp;

/// A number a sink writes: integers stay integers.
///
/// ```
/// use accrue::sink::Amount;
/// assert_eq!(Amount::from(3u32), Amount::Int(3));
/// assert_eq!(Amount::from(u64::MAX), Amount::Float(u64::MAX as f64));
/// assert_eq!(Amount::from(0.5f32), Amount::Float(0.5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

macro_rules! amount_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Amount {
            fn from(v: $t) -> Self {
                match i64::try_from(v) {
                    Ok(i) => Amount::Int(i),
                    Err(_) => Amount::Float(v as f64),
                }
            }
        }
    )*};
}
amount_from_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl From<f64> for Amount {
    fn from(v: f64) -> Self {
        Amount::Float(v)
    }
}

impl From<f32> for Amount {
    fn from(v: f32) -> Self {
        Amount::Float(f64::from(v))
    }
}

/// How a field is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field {
    /// Added to what is stored (a count, a sum): `track` in a metrics store.
    Add(Amount),
    /// Replaces what is stored (a gauge, a minimum of the last flush): `assert`.
    Set(Amount),
}

impl Field {
    /// The number.
    pub fn amount(self) -> Amount {
        match self {
            Field::Add(a) | Field::Set(a) => a,
        }
    }
}

/// The fields of one item, in the order they were written.
///
/// ```
/// use accrue::sink::{Amount, Field, Fields};
/// let mut f = Fields::default();
/// f.add("count", 3u64);
/// f.set("last", 1.5);
/// assert_eq!(f.iter().collect::<Vec<_>>(), vec![
///     ("count", Field::Add(Amount::Int(3))),
///     ("last", Field::Set(Amount::Float(1.5))),
/// ]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    items: Vec<(Cow<'static, str>, Field)>,
}

impl Fields {
    /// A field added to what is stored.
    pub fn add(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Amount>) {
        self.items.push((name.into(), Field::Add(value.into())));
    }

    /// A field that replaces what is stored.
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Amount>) {
        self.items.push((name.into(), Field::Set(value.into())));
    }

    /// The fields.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Field)> + '_ {
        self.items.iter().map(|(n, f)| (&**n, *f))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Removes every field (to reuse the allocation).
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

/// The key of an aggregated item, as a sink names it.
///
/// Implemented for string types (the name; the time is the flush's) and for `(K, Timestamp)`
/// (the item belongs to that time, e.g. a bucket you keyed it by).
pub trait SinkKey {
    /// The metric or event name.
    fn name(&self) -> Cow<'_, str>;

    /// The time the item belongs to; `None` means "when it was flushed".
    fn at(&self) -> Option<Timestamp> {
        None
    }
}

impl SinkKey for String {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl SinkKey for &'static str {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl SinkKey for Box<str> {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl SinkKey for Arc<str> {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl SinkKey for Cow<'static, str> {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<K: SinkKey> SinkKey for (K, Timestamp) {
    fn name(&self) -> Cow<'_, str> {
        self.0.name()
    }

    fn at(&self) -> Option<Timestamp> {
        Some(self.1)
    }
}

/// The value of an aggregated item, as fields.
///
/// Plain numbers write one field, added up, named by the sink's `value_field` (default
/// `count`). Implement it for a summary type to write several:
///
/// ```
/// use accrue::sink::{Fields, SinkValue};
///
/// struct Latency { count: u64, sum_ms: f64, max_ms: f64 }
///
/// impl SinkValue for Latency {
///     fn write_fields(&self, _default: &str, out: &mut Fields) {
///         out.add("count", self.count);
///         out.add("sum_ms", self.sum_ms);
///         out.set("max_ms", self.max_ms); // the flush's maximum replaces the stored one
///     }
/// }
///
/// let mut fields = Fields::default();
/// Latency { count: 2, sum_ms: 7.5, max_ms: 5.0 }.write_fields("count", &mut fields);
/// assert_eq!(fields.iter().count(), 3);
/// ```
pub trait SinkValue {
    /// Appends this value's fields; `default` is the sink's name for a single number.
    fn write_fields(&self, default: &str, out: &mut Fields);
}

macro_rules! sink_value_number {
    ($($t:ty),*) => {$(
        impl SinkValue for $t {
            fn write_fields(&self, default: &str, out: &mut Fields) {
                out.add(default.to_owned(), *self);
            }
        }
    )*};
}
sink_value_number!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64);
