//! Read-only queries. None of them changes a key: each reads the rings under the key's shard's shared
//! lock, working out which stored buckets a window covers at the clock's instant.

use std::ops::Range;
use std::time::Duration;

use jiff::Timestamp;

use super::calendar::Unit;
use super::clock;
use super::ring::KeyState;
use super::shards::Inner;

/// Which ring a range reads: one unit, or the coarsest tracked (`ever`).
#[derive(Clone, Copy, Debug)]
enum Sel {
    One(Unit),
    Ever,
}

/// A resolved range on one key's state: `None` when the unit is not tracked.
fn read_range(
    inner: &Inner,
    st: &KeyState,
    sel: Sel,
    range: &Range<usize>,
    now: Timestamp,
) -> Option<(usize, i64, Range<usize>)> {
    let layout = &inner.layout;
    match sel {
        Sel::One(u) => {
            let slot = layout.slot_of(u)?;
            let cur = st.index_in(layout, &inner.cal, slot, now);
            Some((slot, cur, range.clone()))
        }
        Sel::Ever => {
            let slot = layout.longest();
            let cur = st.index_in(layout, &inner.cal, slot, now);
            Some((slot, st.head_index(slot, cur), range.clone()))
        }
    }
}

fn sum_of(
    inner: &Inner,
    st: &KeyState,
    sel: Sel,
    range: &Range<usize>,
    now: Timestamp,
) -> Option<u64> {
    let (slot, cur, r) = read_range(inner, st, sel, range, now)?;
    Some(st.sum(&inner.layout, slot, cur, r))
}

/// How many buckets of the ring a range covers (windows longer than the ring are capped).
fn covered(inner: &Inner, sel: Sel, range: &Range<usize>) -> Option<usize> {
    let len = match sel {
        Sel::One(u) => inner.layout.len_of(u)?,
        Sel::Ever => inner.layout.slots()[inner.layout.longest()].len,
    };
    Some(range.end.min(len) - range.start.min(len))
}

/// Reads several keys under their shards' shared locks, taken in ascending order, each
/// shard once (a key named twice is locked once).
fn with_keys<R>(inner: &Inner, keys: &[&str], f: impl FnOnce(&[Option<&KeyState>]) -> R) -> R {
    loop {
        let exists: Vec<bool> = keys.iter().map(|k| inner.ensure(k, false)).collect();
        let held = inner.lock_read(keys);
        if keys
            .iter()
            .zip(&exists)
            .any(|(k, e)| *e && held.get(k).is_none())
        {
            continue; // compacted away in between: look again
        }
        let states: Vec<Option<&KeyState>> = keys.iter().map(|k| held.get(k)).collect();
        return f(&states);
    }
}

/// A query on one key, from [`WindowStore::query`](crate::window::WindowStore::query).
///
/// Windows are whole clock-aligned buckets: `last_minutes(2)` at 12:01:00 is the 12:01 bucket
/// plus the whole 12:00 bucket, so an event at 12:00:58 is in it, and `last_minutes(1)` is just
/// the current minute. Results are `None` when the key is unknown (in neither memory nor
/// storage) or the unit is not tracked, and `Some(0)` when the key is known but the window is
/// empty.
///
/// # Examples
///
/// ```
/// use accrue::window::{Record, TestClock, WindowStore};
///
/// let clock = TestClock::at("2025-03-05T12:00:58Z".parse().unwrap());
/// let store = WindowStore::builder().with_clock(clock.clone()).build()?;
/// store.record_with("e", Record::count(3)).unwrap();
/// clock.set("2025-03-05T12:01:00Z".parse().unwrap());
/// assert_eq!(store.query("e").last_minutes(1).sum(), Some(0));
/// assert_eq!(store.query("e").last_minutes(2).sum(), Some(3));
/// assert_eq!(store.query("e").last_seconds(10).sum(), None); // seconds are not tracked
/// assert_eq!(store.query("e").last_seen(), Some(std::time::Duration::from_secs(2)));
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct Query<'a> {
    inner: &'a Inner,
    key: &'a str,
}

impl<'a> Query<'a> {
    pub(crate) fn new(inner: &'a Inner, key: &'a str) -> Self {
        Self { inner, key }
    }

    fn range(self, sel: Sel, range: Range<usize>) -> RangeQuery<'a> {
        RangeQuery {
            inner: self.inner,
            key: self.key,
            sel,
            range,
        }
    }

    /// The current bucket of `unit` and the `n - 1` before it.
    pub fn last(self, n: usize, unit: Unit) -> RangeQuery<'a> {
        self.range(Sel::One(unit), 0..n)
    }

    /// The current second and the `n - 1` before it.
    pub fn last_seconds(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Second)
    }

    /// The current minute and the `n - 1` before it.
    pub fn last_minutes(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Minute)
    }

    /// The current hour and the `n - 1` before it.
    pub fn last_hours(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Hour)
    }

    /// Today and the `n - 1` days before it.
    pub fn last_days(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Day)
    }

    /// This week and the `n - 1` weeks before it.
    pub fn last_weeks(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Week)
    }

    /// This month and the `n - 1` months before it.
    pub fn last_months(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Month)
    }

    /// This quarter and the `n - 1` quarters before it.
    pub fn last_quarters(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Quarter)
    }

    /// This year and the `n - 1` years before it.
    pub fn last_years(self, n: usize) -> RangeQuery<'a> {
        self.last(n, Unit::Year)
    }

    /// Everything still held: the whole ring of the coarsest tracked unit.
    pub fn ever(self) -> RangeQuery<'a> {
        self.range(Sel::Ever, 0..usize::MAX)
    }

    /// Buckets `range` back from the current one of `unit` (`0..7` is the last 7).
    pub fn range_of(self, unit: Unit, range: Range<usize>) -> RangeQuery<'a> {
        self.range(Sel::One(unit), range)
    }

    /// Days `range` back from today: `days(0..7)` is this week's 7 days, `days(7..14)` the 7
    /// before.
    pub fn days(self, range: Range<usize>) -> RangeQuery<'a> {
        self.range_of(Unit::Day, range)
    }

    /// Days from `offset` back, to the end of the ring; narrow with
    /// [`take`](RangeQuery::take): `days_from(14).take(7)`.
    pub fn days_from(self, offset: usize) -> RangeQuery<'a> {
        self.range_of(Unit::Day, offset..usize::MAX)
    }

    /// The exact instant of the latest recorded event.
    pub fn last_seen_at(self) -> Option<Timestamp> {
        self.inner.with_key(self.key, |st| st.last_seen()).flatten()
    }

    /// The exact instant of the earliest recorded event.
    pub fn first_seen_at(self) -> Option<Timestamp> {
        self.inner
            .with_key(self.key, |st| st.first_seen())
            .flatten()
    }

    /// Time since the latest recorded event (exact; zero if the clock went back before it).
    pub fn last_seen(self) -> Option<Duration> {
        let now = self.inner.now();
        self.last_seen_at().map(|t| clock::elapsed(t, now))
    }

    /// Time since the earliest recorded event (exact).
    pub fn first_seen(self) -> Option<Duration> {
        let now = self.inner.now();
        self.first_seen_at().map(|t| clock::elapsed(t, now))
    }

    /// Time since the start of the oldest non-empty bucket of `unit`'s ring.
    pub fn first_seen_in(self, unit: Unit) -> Option<Duration> {
        let inner = self.inner;
        let now = inner.now();
        let slot = inner.layout.slot_of(unit)?;
        let idx = inner
            .with_key(self.key, |st| {
                let cur = st.index_in(&inner.layout, &inner.cal, slot, now);
                let b = st.buckets(&inner.layout, slot, cur, 0..usize::MAX);
                b.iter().rposition(|&c| c > 0).map(|p| cur - p as i64)
            })
            .flatten()?;
        Some(clock::elapsed(inner.cal.start_of(idx, unit), now))
    }
}

/// A window of one key, from [`Query`].
#[derive(Clone, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct RangeQuery<'a> {
    inner: &'a Inner,
    key: &'a str,
    sel: Sel,
    range: Range<usize>,
}

impl RangeQuery<'_> {
    /// Keeps the first `n` buckets of the range.
    pub fn take(mut self, n: usize) -> Self {
        self.range.end = self.range.start.saturating_add(n).min(self.range.end);
        self
    }

    fn read<R>(&self, f: impl FnOnce(&KeyState, usize, i64, Range<usize>) -> R) -> Option<R> {
        let inner = self.inner;
        let now = inner.now();
        inner
            .with_key(self.key, |st| {
                let (slot, cur, r) = read_range(inner, st, self.sel, &self.range, now)?;
                Some(f(st, slot, cur, r))
            })
            .flatten()
    }

    /// The sum of the window (saturating at `u64::MAX`).
    pub fn sum(self) -> Option<u64> {
        let layout = &self.inner.layout;
        self.read(|st, slot, cur, r| st.sum(layout, slot, cur, r))
    }

    /// The sum divided by the buckets the window covers (capped at the ring's length: a 100-day
    /// window on a 56-day ring divides by 56). `None` for an empty window.
    pub fn average(self) -> Option<f64> {
        let n = covered(self.inner, self.sel, &self.range)?;
        let sum = self.sum()?;
        if n == 0 {
            None
        } else {
            Some(sum as f64 / n as f64)
        }
    }

    /// The average of the non-zero buckets; `None` when there are none.
    pub fn average_nonzero(self) -> Option<f64> {
        let b = self.buckets_opt()?;
        let nz: Vec<u64> = b.into_iter().filter(|&c| c > 0).collect();
        if nz.is_empty() {
            return None;
        }
        let sum = nz.iter().fold(0u64, |a, &c| a.saturating_add(c));
        Some(sum as f64 / nz.len() as f64)
    }

    /// How many buckets are non-zero.
    pub fn count_nonzero(self) -> Option<usize> {
        Some(self.buckets_opt()?.iter().filter(|&&c| c > 0).count())
    }

    /// The counts, newest first (index 0 is the current bucket); empty when the key or unit
    /// is unknown.
    pub fn buckets(self) -> Vec<u64> {
        self.buckets_opt().unwrap_or_default()
    }

    fn buckets_opt(&self) -> Option<Vec<u64>> {
        let layout = &self.inner.layout;
        self.read(|st, slot, cur, r| st.buckets(layout, slot, cur, r))
    }

    /// Position of the newest non-zero bucket (0 = current), relative to the range's start.
    pub fn last_seen(self) -> Option<usize> {
        self.buckets_opt()?.iter().position(|&c| c > 0)
    }

    /// Position of the oldest non-zero bucket, relative to the range's start.
    pub fn first_seen(self) -> Option<usize> {
        self.buckets_opt()?.iter().rposition(|&c| c > 0)
    }
}

/// A query on the sum of several keys, from
/// [`WindowStore::query_many`](crate::window::WindowStore::query_many).
#[derive(Clone, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct MultiQuery<'a> {
    inner: &'a Inner,
    keys: Vec<&'a str>,
}

macro_rules! last_methods {
    ($out:ty) => {
        /// The current second and the `n - 1` before it.
        pub fn last_seconds(self, n: usize) -> $out {
            self.last(n, Unit::Second)
        }
        /// The current minute and the `n - 1` before it.
        pub fn last_minutes(self, n: usize) -> $out {
            self.last(n, Unit::Minute)
        }
        /// The current hour and the `n - 1` before it.
        pub fn last_hours(self, n: usize) -> $out {
            self.last(n, Unit::Hour)
        }
        /// Today and the `n - 1` days before it.
        pub fn last_days(self, n: usize) -> $out {
            self.last(n, Unit::Day)
        }
        /// This week and the `n - 1` weeks before it.
        pub fn last_weeks(self, n: usize) -> $out {
            self.last(n, Unit::Week)
        }
        /// This month and the `n - 1` months before it.
        pub fn last_months(self, n: usize) -> $out {
            self.last(n, Unit::Month)
        }
        /// This quarter and the `n - 1` quarters before it.
        pub fn last_quarters(self, n: usize) -> $out {
            self.last(n, Unit::Quarter)
        }
        /// This year and the `n - 1` years before it.
        pub fn last_years(self, n: usize) -> $out {
            self.last(n, Unit::Year)
        }
        /// The `n` most recent buckets of `unit`.
        pub fn last(self, n: usize, unit: Unit) -> $out {
            self.window(Sel::One(unit), 0..n)
        }
        /// Everything still held (the coarsest tracked ring).
        pub fn ever(self) -> $out {
            self.window(Sel::Ever, 0..usize::MAX)
        }
    };
}

impl<'a> MultiQuery<'a> {
    pub(crate) fn new(inner: &'a Inner, keys: Vec<&'a str>) -> Self {
        Self { inner, keys }
    }

    fn window(self, sel: Sel, range: Range<usize>) -> MultiRangeQuery<'a> {
        MultiRangeQuery {
            inner: self.inner,
            keys: self.keys,
            sel,
            range,
        }
    }

    last_methods!(MultiRangeQuery<'a>);
}

/// A window over several keys, from [`MultiQuery`].
#[derive(Clone, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct MultiRangeQuery<'a> {
    inner: &'a Inner,
    keys: Vec<&'a str>,
    sel: Sel,
    range: Range<usize>,
}

impl MultiRangeQuery<'_> {
    /// The sum over the keys; `None` when no key is known (or the unit is not tracked).
    pub fn sum(self) -> Option<u64> {
        let inner = self.inner;
        let now = inner.now();
        with_keys(inner, &self.keys, |states| {
            let mut total: Option<u64> = None;
            for st in states.iter().flatten() {
                if let Some(s) = sum_of(inner, st, self.sel, &self.range, now) {
                    total = Some(total.unwrap_or(0).saturating_add(s));
                }
            }
            total
        })
    }

    /// The sum divided by the buckets the window covers.
    pub fn average(self) -> Option<f64> {
        let n = covered(self.inner, self.sel, &self.range)?;
        let sum = self.sum()?;
        if n == 0 {
            None
        } else {
            Some(sum as f64 / n as f64)
        }
    }
}

/// `numerator / denominator`, from [`WindowStore::query_ratio`](crate::window::WindowStore::query_ratio).
///
/// Both keys are read under their shards' shared locks, taken in ascending order, a shard
/// locked once: `query_ratio("a", "a")` is `Some(1.0)` when `a` has events, and two threads
/// asking for `(a, b)` and `(b, a)` never deadlock.
#[derive(Clone, Copy, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct RatioQuery<'a> {
    inner: &'a Inner,
    num: &'a str,
    den: &'a str,
}

impl<'a> RatioQuery<'a> {
    pub(crate) fn new(inner: &'a Inner, num: &'a str, den: &'a str) -> Self {
        Self { inner, num, den }
    }

    /// The ratio over the window; `None` when the denominator is unknown or zero (an unknown
    /// numerator counts as zero).
    fn window(self, sel: Sel, range: Range<usize>) -> Option<f64> {
        let inner = self.inner;
        let now = inner.now();
        with_keys(inner, &[self.num, self.den], |st| {
            let den = sum_of(inner, st[1]?, sel, &range, now)?;
            let num = st[0]
                .and_then(|s| sum_of(inner, s, sel, &range, now))
                .unwrap_or(0);
            if den == 0 {
                None
            } else {
                Some(num as f64 / den as f64)
            }
        })
    }

    last_methods!(Option<f64>);
}

/// `positive - negative`, from [`WindowStore::query_delta`](crate::window::WindowStore::query_delta).
#[derive(Clone, Copy, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct DeltaQuery<'a> {
    inner: &'a Inner,
    pos: &'a str,
    neg: &'a str,
}

impl<'a> DeltaQuery<'a> {
    pub(crate) fn new(inner: &'a Inner, pos: &'a str, neg: &'a str) -> Self {
        Self { inner, pos, neg }
    }

    fn window(self, sel: Sel, range: Range<usize>) -> DeltaRangeQuery<'a> {
        DeltaRangeQuery {
            q: self,
            sel,
            range,
        }
    }

    last_methods!(DeltaRangeQuery<'a>);
}

/// A window of a [`DeltaQuery`].
#[derive(Clone, Debug)]
#[must_use = "a query does nothing until a result method is called"]
pub struct DeltaRangeQuery<'a> {
    q: DeltaQuery<'a>,
    sel: Sel,
    range: Range<usize>,
}

impl DeltaRangeQuery<'_> {
    /// `positive - negative` (unknown keys count as zero), saturating at the `i64` bounds.
    pub fn sum(self) -> i64 {
        let inner = self.q.inner;
        let now = inner.now();
        with_keys(inner, &[self.q.pos, self.q.neg], |st| {
            let s = |i: usize| {
                st[i]
                    .and_then(|s| sum_of(inner, s, self.sel, &self.range, now))
                    .unwrap_or(0)
            };
            let d = i128::from(s(0)) - i128::from(s(1));
            d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        })
    }

    /// The delta divided by the buckets the window covers (0.0 for an empty window).
    pub fn average(self) -> f64 {
        let n = covered(self.q.inner, self.sel, &self.range).unwrap_or(0);
        let sum = self.sum();
        if n == 0 { 0.0 } else { sum as f64 / n as f64 }
    }
}
