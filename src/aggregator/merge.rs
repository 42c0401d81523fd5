//! How two values of the same key become one.

/// Folds a newer value into the accumulated one. Runs under the key's shard lock, so
/// implementations need no atomics or locks of their own.
///
/// The aggregator calls `merge(acc, newer)` with `acc` always the *older* side:
/// for a plain [`add`](crate::Aggregator::add) `acc` is what is pending and `newer` is the
/// added value; when a batch comes back from a full channel, its (older) value becomes `acc` and
/// the (newer) value that accumulated in the meantime is merged into it. Order-sensitive merges
/// (append, last-write-wins) therefore see values in the order they were added.
///
/// A merge must be associative (`merge(merge(a, b), c) == merge(a, merge(b, c))`), because an
/// accumulated value may be merged with another accumulated value. It need not be commutative.
///
/// Closures `Fn(&mut V, V)` implement `Merge<V>`.
///
/// # Examples
///
/// ```
/// use accrue::{Aggregator, aggregator::Merge};
///
/// // A closure: keep every value, in order.
/// let (agg, rx) = Aggregator::<&str, Vec<u32>>::builder()
///     .merge(|acc: &mut Vec<u32>, mut newer: Vec<u32>| acc.append(&mut newer))
///     .build()
///     .unwrap();
/// agg.add("k", vec![1]).unwrap();
/// agg.add("k", vec![2]).unwrap();
/// agg.flush();
/// assert_eq!(rx.try_recv().unwrap().into_vec(), vec![("k", vec![1, 2])]);
///
/// // A type: count, sum and extremes of a latency in one pass.
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Summary { count: u64, sum: f64, max: f64 }
///
/// struct Summarize;
/// impl Merge<Summary> for Summarize {
///     fn merge(&self, acc: &mut Summary, newer: Summary) {
///         acc.count += newer.count;
///         acc.sum += newer.sum;
///         acc.max = acc.max.max(newer.max);
///     }
/// }
///
/// let (agg, rx) = Aggregator::<&str, Summary>::builder().merge(Summarize).build().unwrap();
/// for ms in [3.0, 9.0, 6.0] {
///     agg.add("GET /", Summary { count: 1, sum: ms, max: ms }).unwrap();
/// }
/// agg.flush();
/// let (_, s) = rx.try_recv().unwrap().into_vec()[0];
/// assert_eq!(s, Summary { count: 3, sum: 18.0, max: 9.0 });
/// ```
pub trait Merge<V>: Send + Sync + 'static {
    /// Folds `newer` into `acc`.
    fn merge(&self, acc: &mut V, newer: V);
}

impl<V, F> Merge<V> for F
where
    F: Fn(&mut V, V) + Send + Sync + 'static,
{
    #[inline]
    fn merge(&self, acc: &mut V, newer: V) {
        self(acc, newer)
    }
}

/// Adds values up. Integers wrap on overflow (so the merge stays associative); floats add.
/// The default merge of [`Aggregator`](crate::Aggregator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum;

/// Counts events: each add carries how many events it stands for (usually `1`) and the counts
/// add up, wrapping at `u64::MAX`. The same arithmetic as [`Sum`] over `u64`, named for intent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count;

/// Keeps the smallest value (by `PartialOrd`; an incomparable newer value such as NaN is
/// ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Min;

/// Keeps the largest value (by `PartialOrd`; an incomparable newer value such as NaN is
/// ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Max;

/// Keeps the most recently added value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Last;

/// Keeps the first value added since the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct First;

mod sealed {
    pub trait Summable {
        fn add_to(&mut self, other: Self);
    }
}
use sealed::Summable;

macro_rules! summable_ints {
    ($($t:ty)*) => {$(
        impl Summable for $t {
            #[inline]
            fn add_to(&mut self, other: Self) {
                *self = self.wrapping_add(other);
            }
        }
    )*};
}
summable_ints!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

impl Summable for f32 {
    #[inline]
    fn add_to(&mut self, other: Self) {
        *self += other;
    }
}

impl Summable for f64 {
    #[inline]
    fn add_to(&mut self, other: Self) {
        *self += other;
    }
}

impl<V: Summable + Send + Sync + 'static> Merge<V> for Sum {
    #[inline]
    fn merge(&self, acc: &mut V, newer: V) {
        acc.add_to(newer);
    }
}

impl Merge<u64> for Count {
    #[inline]
    fn merge(&self, acc: &mut u64, newer: u64) {
        *acc = acc.wrapping_add(newer);
    }
}

impl<V: PartialOrd + Send + Sync + 'static> Merge<V> for Min {
    #[inline]
    fn merge(&self, acc: &mut V, newer: V) {
        if newer < *acc {
            *acc = newer;
        }
    }
}

impl<V: PartialOrd + Send + Sync + 'static> Merge<V> for Max {
    #[inline]
    fn merge(&self, acc: &mut V, newer: V) {
        if newer > *acc {
            *acc = newer;
        }
    }
}

impl<V: Send + Sync + 'static> Merge<V> for Last {
    #[inline]
    fn merge(&self, acc: &mut V, newer: V) {
        *acc = newer;
    }
}

impl<V: Send + Sync + 'static> Merge<V> for First {
    #[inline]
    fn merge(&self, _acc: &mut V, _newer: V) {}
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    fn fold<M: Merge<V>, V>(m: &M, vals: Vec<V>) -> V {
        let mut it = vals.into_iter();
        let mut acc = it.next().unwrap();
        for v in it {
            m.merge(&mut acc, v);
        }
        acc
    }

    #[test]
    fn builtins() {
        assert_eq!(fold(&Sum, vec![1u64, 2, 3]), 6);
        assert_eq!(fold(&Sum, vec![u8::MAX, 2]), 1);
        assert_eq!(fold(&Sum, vec![0.5f64, 0.25]), 0.75);
        assert_eq!(fold(&Count, vec![1u64, 1, 5]), 7);
        assert_eq!(fold(&Min, vec![3i32, -1, 2]), -1);
        assert_eq!(fold(&Max, vec![3i32, -1, 2]), 3);
        assert_eq!(fold(&Max, vec![1.0f64, f64::NAN, 2.0]), 2.0);
        assert_eq!(fold(&Last, vec!["a", "b", "c"]), "c");
        assert_eq!(fold(&First, vec!["a", "b", "c"]), "a");
        let cat = |acc: &mut String, n: String| acc.push_str(&n);
        assert_eq!(fold(&cat, vec!["a".into(), "b".into()]), "ab");
    }
}
