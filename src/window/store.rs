//! [`WindowStore`]: the sharded map of keys and the operations on it.

use std::collections::HashMap;
use std::fmt;

use jiff::Timestamp;

use super::calendar::Unit;
use super::clock;
use super::error::WindowError;
use super::limit::Limiter;
use super::query::{DeltaQuery, MultiQuery, Query, RatioQuery};
use super::record::{Record, When};
use super::ring::{KeyState, indexes_of};
use super::shards::Inner;
use super::snapshot::Snapshot;
use crate::sync::Arc;

/// Fixed-memory event counts over clock-aligned time windows, with queries, rate limits,
/// reservations, merge and (with the `window-persist` feature) persistence.
///
/// Every key holds one ring of buckets per tracked unit, all in one array (by default 60
/// minutes, 72 hours, 56 days, 52 weeks, 12 months and 4 years: 256 `u64` counts). "Last N
/// days" is today's bucket plus the N - 1 whole days before it, in the store's time zone; see
/// [`Unit`] for where each unit's buckets start.
///
/// The store is `Send + Sync`; share it with an `Arc`. Keys live in a sharded map (8 shards
/// per CPU by default) looked up without allocating; each shard has a reader-writer lock, taken
/// once per operation: shared by queries, which never block each other, exclusive by a record
/// for a few additions. Operations on several keys take their shards' locks in ascending
/// order, each once, so they cannot deadlock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use accrue::{time::Unit, window::{Record, TestClock, WindowStore}};
///
/// let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
/// let store = WindowStore::builder().with_clock(clock.clone()).build()?;
///
/// store.record("app_launch");
/// store.record_with("api_call", Record::count(5)).unwrap();
/// clock.advance(Duration::from_secs(86_400));
/// store.record("app_launch");
///
/// assert_eq!(store.query("app_launch").last_days(1).sum(), Some(1));
/// assert_eq!(store.query("app_launch").last_days(2).sum(), Some(2));
/// assert_eq!(store.query("api_call").last_days(7).buckets(), vec![0, 5, 0, 0, 0, 0, 0]);
/// assert_eq!(store.query("never").last_days(7).sum(), None);
///
/// // Rate limits: check and record in one step.
/// let limit = store.limit().at_most("api_call", 6, Unit::Day);
/// assert!(limit.check_and_record("api_call").is_ok());
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
pub struct WindowStore {
    pub(crate) inner: Arc<Inner>,
    #[cfg(all(feature = "window-tokio", not(accrue_loom)))]
    pub(crate) auto_persist: Option<super::persist::AutoPersist>,
}

impl fmt::Debug for WindowStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowStore")
            .field("tracked", &self.tracked_intervals())
            .field("time_zone", &self.inner.cal.id().zone)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for WindowStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Stops auto-persist, then persists what is dirty (errors are logged: call `close` to see
/// them).
impl Drop for WindowStore {
    fn drop(&mut self) {
        #[cfg(all(feature = "window-tokio", not(accrue_loom)))]
        drop(self.auto_persist.take());
        #[cfg(feature = "window-persist")]
        if self.inner.persistence.is_some()
            && self.inner.is_dirty()
            && let Err(e) = self.inner.persist_batch(false)
        {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "window: final persist on drop failed; changes since the last persist are lost"
            );
        }
    }
}

impl WindowStore {
    /// A store with the default rings (60 minutes, 72 hours, 56 days, 52 weeks, 12 months,
    /// 4 years), in UTC, on the system clock, without storage.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = accrue::window::WindowStore::new();
    /// store.record("app_launch");
    /// assert_eq!(store.query("app_launch").ever().sum(), Some(1));
    /// ```
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// Everything else: units, time zone, clock, storage. See [`WindowStoreBuilder`].
    ///
    /// [`WindowStoreBuilder`]: crate::window::WindowStoreBuilder
    pub fn builder() -> super::builder::WindowStoreBuilder {
        super::builder::WindowStoreBuilder::new()
    }

    /// The store's clock reading.
    pub fn clock_now(&self) -> Timestamp {
        self.inner.now()
    }

    /// Records one event now.
    ///
    /// **Blocking:** holds the key's shard lock for a few additions; the first record of a key that
    /// is in storage but not in memory reads it first.
    #[inline]
    pub fn record(&self, key: impl AsRef<str>) {
        let inner = &*self.inner;
        let now = inner.now();
        inner.with_key_mut(key.as_ref(), |st, d| {
            st.record_now(&inner.layout, &inner.cal, now, 1);
            d.mark(st);
        });
    }

    /// Records a [`Record`]: any count of events, now, at an instant or some time ago.
    ///
    /// # Errors
    ///
    /// [`WindowError::FutureEvent`] when the record's instant is after the clock; nothing is
    /// recorded (the key is not even created). Records for now or some time ago always succeed.
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::window::{Record, TestClock, WindowStore};
    ///
    /// let clock = TestClock::at("2025-03-05T12:30:00Z".parse().unwrap());
    /// let store = WindowStore::builder().with_clock(clock).build()?;
    /// store.record_with("sync", Record::one().at("2025-03-05T10:00:00Z".parse().unwrap()))?;
    /// assert_eq!(store.query("sync").last_minutes(60).sum(), Some(0)); // beyond 60 minutes
    /// assert_eq!(store.query("sync").last_hours(3).sum(), Some(1));
    /// let later = Record::one().at("2025-03-05T14:00:00Z".parse().unwrap());
    /// assert!(store.record_with("sync", later).is_err());
    /// # Ok::<(), accrue::window::WindowError>(())
    /// ```
    #[inline]
    pub fn record_with(&self, key: impl AsRef<str>, record: Record) -> Result<(), WindowError> {
        let inner = &*self.inner;
        let now = inner.now();
        let at = match record.when {
            When::Now => None,
            When::At(at) if at > now => return Err(WindowError::FutureEvent { at, now }),
            When::At(at) => Some(at),
            When::Ago(ago) => Some(clock::before(now, ago)),
        };
        if record.count == 0 {
            return Ok(());
        }
        match at {
            None => inner.with_key_mut(key.as_ref(), |st, d| {
                st.record_now(&inner.layout, &inner.cal, now, record.count);
                d.mark(st);
            }),
            Some(at) => {
                let at_idx = indexes_of(&inner.layout, &inner.cal, at);
                inner.with_key_mut(key.as_ref(), |st, d| {
                    st.record_at(&inner.layout, &inner.cal, now, at, &at_idx, record.count);
                    d.mark(st);
                });
            }
        }
        Ok(())
    }

    /// Queries one key. See [`Query`].
    pub fn query<'a>(&'a self, key: &'a (impl AsRef<str> + ?Sized)) -> Query<'a> {
        Query::new(&self.inner, key.as_ref())
    }

    /// Queries the sum of several keys (a key listed twice counts twice).
    pub fn query_many<'a, K: AsRef<str>>(&'a self, keys: &'a [K]) -> MultiQuery<'a> {
        MultiQuery::new(&self.inner, keys.iter().map(|k| k.as_ref()).collect())
    }

    /// Queries `numerator / denominator` over one window (both keys read at one instant).
    pub fn query_ratio<'a>(
        &'a self,
        numerator: &'a (impl AsRef<str> + ?Sized),
        denominator: &'a (impl AsRef<str> + ?Sized),
    ) -> RatioQuery<'a> {
        RatioQuery::new(&self.inner, numerator.as_ref(), denominator.as_ref())
    }

    /// Queries `positive - negative` over one window (both keys read at one instant).
    pub fn query_delta<'a>(
        &'a self,
        positive: &'a (impl AsRef<str> + ?Sized),
        negative: &'a (impl AsRef<str> + ?Sized),
    ) -> DeltaQuery<'a> {
        DeltaQuery::new(&self.inner, positive.as_ref(), negative.as_ref())
    }

    /// Records on the smaller side whatever makes `positive - negative` over `ever()` zero,
    /// atomically (both keys' shards locked in ascending order).
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::window::{Record, WindowStore};
    ///
    /// let store = WindowStore::new();
    /// store.record_with("credits", Record::count(100)).unwrap();
    /// store.record_with("debits", Record::count(30)).unwrap();
    /// assert_eq!(store.query_delta("credits", "debits").ever().sum(), 70);
    /// store.balance_delta("credits", "debits")?;
    /// assert_eq!(store.query_delta("credits", "debits").ever().sum(), 0);
    /// # Ok::<(), accrue::window::WindowError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for storage-backed failures.
    pub fn balance_delta(
        &self,
        positive: impl AsRef<str>,
        negative: impl AsRef<str>,
    ) -> Result<(), WindowError> {
        let (pos, neg) = (positive.as_ref(), negative.as_ref());
        if pos == neg {
            return Ok(());
        }
        let inner = &*self.inner;
        let longest = inner.layout.longest();
        let keys = [pos, neg];
        let mut create = [false, false];
        loop {
            let now = inner.now();
            let exists = [inner.ensure(pos, create[0]), inner.ensure(neg, create[1])];
            let mut held = inner.lock_write(&keys);
            if (0..2).any(|i| exists[i] && held.get(keys[i]).is_none()) {
                continue; // compacted away in between: look again
            }
            let ever = |st: Option<&KeyState>| {
                st.map_or(0u64, |st| {
                    let cur = st.index_in(&inner.layout, &inner.cal, longest, now);
                    let head = st.head_index(longest, cur);
                    st.sum(&inner.layout, longest, head, 0..usize::MAX)
                })
            };
            let (sa, sb) = (ever(held.get(pos)), ever(held.get(neg)));
            let (side, amount) = match sa.cmp(&sb) {
                std::cmp::Ordering::Equal => return Ok(()),
                std::cmp::Ordering::Greater => (1, sa - sb),
                std::cmp::Ordering::Less => (0, sb - sa),
            };
            let Some((st, mut d)) = held.get_mut(keys[side]) else {
                create[side] = true;
                continue;
            };
            st.record_now(&inner.layout, &inner.cal, now, amount);
            d.mark(st);
            return Ok(());
        }
    }

    /// Starts a set of rate-limit rules. See [`Limiter`].
    #[inline]
    pub fn limit(&self) -> Limiter<'_> {
        Limiter::new(self)
    }

    /// Whether any key changed since it was last persisted (or since [`reset_dirty`]).
    ///
    /// [`reset_dirty`]: Self::reset_dirty
    pub fn is_dirty(&self) -> bool {
        self.inner.is_dirty()
    }

    /// Empties the dirty set without persisting (after shipping [`export_dirty`] elsewhere).
    ///
    /// [`export_dirty`]: Self::export_dirty
    pub fn reset_dirty(&self) {
        let inner = &*self.inner;
        inner.for_each_shard_mut(|g, count| {
            for k in g.take_dirty(count) {
                let hash = inner.hash_of(k.as_str());
                if let Some(e) = g.entry_mut((hash, k.as_str())) {
                    e.state.dirty = false;
                }
            }
        });
    }

    /// Snapshots of every key, in memory or in storage, in this store's configuration.
    ///
    /// # Errors
    ///
    /// A storage or decoding failure.
    pub fn export_all(&self) -> Result<HashMap<String, Snapshot>, WindowError> {
        let inner = &*self.inner;
        let mut out = HashMap::new();
        inner.for_each_key(|key, st| {
            out.insert(key.to_owned(), Snapshot::of(st, &inner.layout, &inner.cal));
        });
        #[cfg(feature = "window-persist")]
        if let Some(p) = &inner.persistence {
            for key in p.keys()? {
                if out.contains_key(&key) {
                    continue;
                }
                if let Some(snap) =
                    inner.with_key(&key, |st| Snapshot::of(st, &inner.layout, &inner.cal))
                {
                    out.insert(key, snap);
                }
            }
        }
        Ok(out)
    }

    /// Snapshots of the keys changed since they were last persisted. The dirty set is left
    /// as it is (see [`reset_dirty`](Self::reset_dirty)).
    ///
    /// # Errors
    ///
    /// None today; the `Result` keeps the signature of [`export_all`](Self::export_all).
    pub fn export_dirty(&self) -> Result<HashMap<String, Snapshot>, WindowError> {
        let inner = &*self.inner;
        let mut out = HashMap::new();
        inner.for_each_key(|key, st| {
            if st.dirty {
                out.insert(key.to_owned(), Snapshot::of(st, &inner.layout, &inner.cal));
            }
        });
        Ok(out)
    }

    /// Replaces `key`'s counts with `snapshot`'s, converted to this store's configuration.
    /// Pending reservations on the key survive.
    ///
    /// # Errors
    ///
    /// The snapshot is invalid (or names an unknown time zone); nothing changes.
    pub fn import_event(
        &self,
        key: impl AsRef<str>,
        snapshot: Snapshot,
    ) -> Result<(), WindowError> {
        let inner = &*self.inner;
        snapshot.validate()?;
        let state = snapshot.restore(&inner.layout, &inner.cal, inner.now())?;
        inner.with_key_mut(key.as_ref(), |st, d| {
            st.replace_data(state);
            st.unloaded = false;
            d.mark(st);
        });
        Ok(())
    }

    /// [`import_event`](Self::import_event) for each pair. Every snapshot is validated and
    /// converted before the first key changes.
    ///
    /// # Errors
    ///
    /// An invalid snapshot; nothing changes.
    pub fn import_all(&self, events: HashMap<String, Snapshot>) -> Result<(), WindowError> {
        let inner = &*self.inner;
        let now = inner.now();
        let states = events
            .into_iter()
            .map(|(k, s)| {
                s.validate()?;
                Ok((k, s.restore(&inner.layout, &inner.cal, now)?))
            })
            .collect::<Result<Vec<_>, WindowError>>()?;
        for (key, state) in states {
            inner.with_key_mut(&key, |st, d| {
                st.replace_data(state);
                st.unloaded = false;
                d.mark(st);
            });
        }
        Ok(())
    }

    /// Adds `snapshot`'s counts into `key` (creating it), bucket by calendar bucket on this
    /// store's clock: counts from a clock ahead of ours land in our current bucket. First/last
    /// seen widen to cover both. Merge is commutative and associative.
    ///
    /// # Errors
    ///
    /// The snapshot is invalid; nothing changes.
    pub fn merge_event(&self, key: impl AsRef<str>, snapshot: Snapshot) -> Result<(), WindowError> {
        let inner = &*self.inner;
        snapshot.validate()?;
        let now = inner.now();
        let state = snapshot.restore(&inner.layout, &inner.cal, now)?;
        inner.with_key_mut(key.as_ref(), |st, d| {
            st.merge_from(&inner.layout, &inner.cal, now, &state);
            d.mark(st);
        });
        Ok(())
    }

    /// [`merge_event`](Self::merge_event) for each pair; all are validated first.
    ///
    /// # Errors
    ///
    /// An invalid snapshot; nothing changes.
    pub fn merge_all(&self, events: HashMap<String, Snapshot>) -> Result<(), WindowError> {
        let inner = &*self.inner;
        let now = inner.now();
        let states = events
            .into_iter()
            .map(|(k, s)| {
                s.validate()?;
                Ok((k, s.restore(&inner.layout, &inner.cal, now)?))
            })
            .collect::<Result<Vec<_>, WindowError>>()?;
        for (key, state) in states {
            inner.with_key_mut(&key, |st, d| {
                st.merge_from(&inner.layout, &inner.cal, now, &state);
                d.mark(st);
            });
        }
        Ok(())
    }

    /// Merges every key of `other` (memory and storage) into this store.
    ///
    /// # Errors
    ///
    /// Reading `other`'s storage failed; nothing changes.
    pub fn merge(&self, other: WindowStore) -> Result<(), WindowError> {
        self.merge_all(other.export_all()?)
    }

    /// Bytes held in memory: the key map's tables, each key's entry, name and bucket array,
    /// the dirty set. Allocator overhead is not included.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = accrue::window::WindowStore::new();
    /// let empty = store.memory_usage();
    /// store.record("k");
    /// let one = store.memory_usage() - empty;
    /// assert!(one >= 256 * 8 && one < 2665, "{one}");
    /// ```
    pub fn memory_usage(&self) -> usize {
        self.inner.memory_usage()
    }

    /// Keys in memory.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no key is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tracked units and their bucket counts, finest first.
    pub fn tracked_intervals(&self) -> Vec<(Unit, usize)> {
        self.inner
            .layout
            .slots()
            .iter()
            .map(|s| (s.unit, s.len))
            .collect()
    }

    /// The time zone calendar buckets and schedules follow.
    pub fn time_zone(&self) -> &jiff::tz::TimeZone {
        self.inner.cal.zone()
    }
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;
    use crate::sync::Ordering;
    use crate::window::TestClock;

    fn store_at(t: &str) -> (WindowStore, TestClock) {
        let clock = TestClock::at(t.parse().unwrap());
        let store = WindowStore::builder()
            .with_clock(clock.clone())
            .build()
            .unwrap();
        (store, clock)
    }

    #[test]
    fn keys_are_created_once_and_dirty_once() {
        let (s, _) = store_at("2025-03-05T12:00:00Z");
        for _ in 0..3 {
            s.record("a");
        }
        s.record("b");
        assert_eq!(s.len(), 2);
        assert_eq!(s.inner.dirty_count.load(Ordering::Relaxed), 2);
        assert_eq!(s.query("a").ever().sum(), Some(3));
        s.reset_dirty();
        assert!(!s.is_dirty());
        s.record("a");
        assert_eq!(s.inner.dirty_count.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn memory_usage_counts_the_bucket_arrays() {
        let (s, _) = store_at("2025-03-05T12:00:00Z");
        let before = s.memory_usage();
        for i in 0..100 {
            s.record(format!("key-{i}"));
        }
        let per_key = (s.memory_usage() - before) / 100;
        assert!(per_key >= 2048, "{per_key}");
        assert!(per_key < 2665, "{per_key}");
    }
}
