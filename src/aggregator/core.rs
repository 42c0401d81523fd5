//! [`Aggregator`] and the state it shares with its flusher.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use super::bell::Bell;
use super::config::Config;
use super::error::{AddError, ShutdownError};
use super::local::{Groups, LocalHandle, LocalTable, Registry};
use super::merge::{Merge, Sum};
use super::receiver::{Batch, BatchReceiver};
use super::shard::{Age, Shard};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, chan};

/// A sharded concurrent map that merges values per key and periodically hands everything it
/// holds to a bounded channel, losing nothing when that channel is full.
///
/// * `K` – the key; `V` – the value; `S` – the hasher (ahash by default);
///   `M` – the [`Merge`] that folds a new value into the pending one ([`Sum`] by default).
///
/// See the [crate docs](crate) for the full story: flush triggers, backpressure and shutdown.
///
/// # Examples
///
/// ```
/// use accrue::Aggregator;
///
/// let (agg, rx) = Aggregator::<String, u64>::builder().build().unwrap();
/// agg.add("requests".to_string(), 1).unwrap();
/// agg.add_ref("requests", 2).unwrap(); // no allocation: the key exists
/// agg.add_ref("errors", 1).unwrap();
/// assert_eq!(agg.get("requests"), Some(3));
///
/// agg.flush();
/// let mut seen: Vec<_> = rx.try_iter().flat_map(|b| b.into_vec()).collect();
/// seen.sort();
/// assert_eq!(seen, vec![("errors".to_string(), 1), ("requests".to_string(), 3)]);
/// ```
///
/// Share it between threads by reference (scoped threads) or in an `Arc`; all methods take
/// `&self`. Dropping the aggregator shuts it down (see [`shutdown`](Self::shutdown)).
pub struct Aggregator<K, V, S = ahash::RandomState, M = Sum> {
    pub(crate) shared: crate::sync::Arc<Shared<K, V, S, M>>,
    #[cfg(not(accrue_loom))]
    pub(crate) flusher: Flusher,
    pub(crate) drop_timeout: Duration,
}

/// The flusher thread, joined by whichever shutdown comes first (the aggregator's or a
/// [`ShutdownHandle`](super::ShutdownHandle)'s).
#[cfg(not(accrue_loom))]
pub(crate) type Flusher = std::sync::Arc<Mutex<Option<std::thread::JoinHandle<()>>>>;

/// The shards, each lock on its own cache line.
type Shards<K, V> = Box<[CachePadded<Mutex<Shard<K, V>>>]>;

/// What the aggregator and its flusher thread share.
pub(crate) struct Shared<K, V, S, M> {
    pub(super) shards: Shards<K, V>,
    /// `64 - log2(shards)`: the shard is taken from the hash bits just below the top 7, which
    /// hashbrown uses as its tag, and far from the low bits it probes with.
    shift: u32,
    pub(super) hasher: S,
    pub(super) merge: M,
    pub(crate) config: Config,
    /// Pending keys over all shards. Kept only when `max_keys` or `flush_threshold` needs it,
    /// so the common path touches no shared counter.
    pub(super) keys: AtomicUsize,
    pub(super) count_keys: bool,
    /// Every live [`LocalHandle`]'s table.
    pub(super) locals: Mutex<Registry<K, V>>,
    /// [`Shared::spill_table`], monomorphised where the trait bounds are known, so that
    /// shutdown and `Drop` (which have none) can drain handles.
    pub(super) spill: fn(&Self, &mut LocalTable<K, V>),
    /// Spill scratch not in use (see [`Groups`]).
    pub(super) spill_groups: Mutex<Vec<Groups<K, V>>>,
    flush: Mutex<FlushState<K, V>>,
    /// "Another flush pass is wanted": set by every flush request, cleared by the pass that
    /// serves it. See [`Shared::flush_once`].
    flush_again: AtomicBool,
    /// A size-triggered wake-up is on its way to the flusher thread.
    pub(crate) wake_pending: AtomicBool,
    pub(crate) closing: AtomicBool,
    pub(crate) wake_tx: chan::Sender<()>,
    /// Rung after every batch sent and once the sender is gone: async consumers wait on it.
    bell: Arc<Bell>,
    totals: Totals,
}

/// Serialises flush passes; owns the batch sender.
struct FlushState<K, V> {
    /// `None` once shut down.
    tx: Option<chan::Sender<Batch<K, V>>>,
    seq: u64,
    /// Where the next pass starts, so a pass cut short by a full channel does not starve the
    /// shards after it.
    next_shard: usize,
    /// Size of each shard's last batch: the capacity its replacement table is allocated with,
    /// outside the lock.
    hints: Vec<usize>,
    spare: Option<HashTable<(K, V)>>,
    backpressured: bool,
}

/// Counters updated once per flush pass, never on the add path.
#[derive(Default)]
struct Totals {
    flushes: AtomicU64,
    coalesced: AtomicU64,
    batches_sent: AtomicU64,
    items_sent: AtomicU64,
    items_reinserted: AtomicU64,
    deferred: AtomicU64,
}

/// What one [`flush`](Aggregator::flush) or [`flush_once`](Aggregator::flush_once) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Sequence number of the last pass run (0 if none ran).
    pub seq: u64,
    /// Flush passes run by this call (a pass requested meanwhile by another thread is served
    /// by the same call, so this can exceed 1).
    pub passes: u64,
    /// Batches handed to the channel.
    pub batches_sent: u64,
    /// Items (keys) in those batches.
    pub items_sent: u64,
    /// Items that came back from a full (or receiver-less) channel and were merged into the
    /// shards again, for a later flush.
    pub items_reinserted: u64,
    /// The channel filled up: some shards kept their data for the next flush.
    pub deferred: bool,
    /// Another thread was flushing; it will run one more pass on this call's behalf.
    pub coalesced: bool,
}

/// A point-in-time view of an aggregator's activity, from [`Aggregator::counters`].
///
/// Totals since creation; the shard counters are read shard by shard, so the figures are not one
/// atomic snapshot while adds run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Accepted adds.
    pub adds: u64,
    /// Adds that merged into a pending key.
    pub merges: u64,
    /// Adds that created a pending key.
    pub new_keys: u64,
    /// Flush passes run.
    pub flushes: u64,
    /// Flush requests that found a flush running and were served by it.
    pub coalesced_flushes: u64,
    /// Batches handed to the channel.
    pub batches_sent: u64,
    /// Items handed to the channel.
    pub items_sent: u64,
    /// Items handed back by a full channel and merged into the shards again.
    pub items_reinserted: u64,
    /// Flush passes cut short because the channel was full.
    pub deferred_flushes: u64,
    /// Keys pending in the shards now.
    pub pending_keys: u64,
}

/// A key passed by value or by reference, hashed and compared without cloning.
pub(crate) trait KeyArg<K> {
    fn hash_with<S: BuildHasher>(&self, s: &S) -> u64;
    fn matches(&self, k: &K) -> bool;
    fn into_owned(self) -> K;
}

pub(crate) struct Owned<K>(pub(crate) K);
pub(crate) struct Borrowed<'a, Q: ?Sized>(pub(crate) &'a Q);

impl<K: Hash + Eq> KeyArg<K> for Owned<K> {
    #[inline]
    fn hash_with<S: BuildHasher>(&self, s: &S) -> u64 {
        s.hash_one(&self.0)
    }
    #[inline]
    fn matches(&self, k: &K) -> bool {
        *k == self.0
    }
    #[inline]
    fn into_owned(self) -> K {
        self.0
    }
}

impl<K, Q> KeyArg<K> for Borrowed<'_, Q>
where
    K: Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    #[inline]
    fn hash_with<S: BuildHasher>(&self, s: &S) -> u64 {
        s.hash_one(self.0)
    }
    #[inline]
    fn matches(&self, k: &K) -> bool {
        k.borrow() == self.0
    }
    #[inline]
    fn into_owned(self) -> K {
        self.0.to_owned()
    }
}

impl<K, V, S, M> Shared<K, V, S, M>
where
    K: Hash + Eq,
    S: BuildHasher,
    M: Merge<V>,
{
    pub(crate) fn new(
        config: Config,
        hasher: S,
        merge: M,
    ) -> (Self, BatchReceiver<K, V>, chan::Receiver<()>) {
        let n = config.shards;
        debug_assert!(n.is_power_of_two());
        let (tx, rx) = chan::bounded(config.channel_capacity);
        let (wake_tx, wake_rx) = chan::bounded(1);
        let bell = Arc::new(Bell::default());
        let rx = BatchReceiver {
            rx,
            bell: bell.clone(),
        };
        let shared = Self {
            shards: (0..n)
                .map(|_| CachePadded::new(Mutex::new(Shard::new())))
                .collect(),
            shift: 64 - n.trailing_zeros(),
            hasher,
            merge,
            count_keys: config.max_keys.is_some() || config.flush_threshold.is_some(),
            config,
            keys: AtomicUsize::new(0),
            locals: Mutex::new(Registry::new()),
            spill: Self::spill_table,
            spill_groups: Mutex::new(Vec::new()),
            flush: Mutex::new(FlushState {
                tx: Some(tx),
                seq: 0,
                next_shard: 0,
                hints: vec![0; n],
                spare: None,
                backpressured: false,
            }),
            flush_again: AtomicBool::new(false),
            wake_pending: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            wake_tx,
            bell,
            totals: Totals::default(),
        };
        (shared, rx, wake_rx)
    }
}

impl<K, V, S, M> Shared<K, V, S, M> {
    /// Whether a shutdown has started.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    #[inline]
    pub(super) fn shard_index(&self, hash: u64) -> usize {
        // Two shifts so that a single shard (shift = 64) yields 0 without a branch.
        (((hash << 7) >> (self.shift - 1)) >> 1) as usize
    }

    /// Marks the aggregator closing, wakes the flusher thread and waits for it to end.
    #[cfg(not(accrue_loom))]
    pub(crate) fn stop_flusher(&self, flusher: &Flusher) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.wake_tx.try_send(());
        let handle = flusher.lock().take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the flusher thread panicked");
        }
    }

    /// Closes every shard and delivers what they hold with blocking sends, then closes the
    /// channel. Needs no trait bounds, so `Drop` can call it.
    pub(crate) fn close(&self, deadline: Option<Instant>) -> Result<(), ShutdownError<K, V>> {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.wake_tx.try_send(());
        let mut st = self.flush.lock();
        let Some(tx) = st.tx.take() else {
            return Ok(());
        };
        st.seq += 1;
        let seq = st.seq;
        // Handles first, while the shards are still open: from here on they refuse adds.
        self.drain_locals(true);
        let mut undelivered = Vec::new();
        let mut timed_out = false;
        let (mut batches, mut items) = (0, 0);
        for (i, shard) in self.shards.iter().enumerate() {
            let table = {
                let mut shard = shard.lock();
                shard.closed = true;
                if self.count_keys {
                    self.keys.fetch_sub(shard.table.len(), Ordering::AcqRel);
                }
                std::mem::take(&mut shard.table)
            };
            if table.is_empty() {
                continue;
            }
            let len = table.len() as u64;
            let batch = Batch {
                seq,
                shard: i,
                items: table,
            };
            match chan::send_until(&tx, batch, deadline) {
                Ok(()) => {
                    self.bell.ring();
                    batches += 1;
                    items += len;
                }
                Err(chan::SendTimeoutError::Timeout(b)) => {
                    timed_out = true;
                    undelivered.push(b);
                }
                Err(chan::SendTimeoutError::Disconnected(b)) => undelivered.push(b),
            }
        }
        self.bell.pass_done(seq);
        drop(tx);
        drop(st);
        // The channel is closed now: waiting consumers see the end.
        self.bell.ring();
        self.totals.flushes.fetch_add(1, Ordering::Relaxed);
        self.totals
            .batches_sent
            .fetch_add(batches, Ordering::Relaxed);
        self.totals.items_sent.fetch_add(items, Ordering::Relaxed);
        tracing::debug!(seq, batches, items, "aggregator shut down");
        if undelivered.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError::new(undelivered, timed_out))
        }
    }
}

impl<K, V, S, M> Shared<K, V, S, M>
where
    K: Hash + Eq,
    S: BuildHasher,
    M: Merge<V>,
{
    #[inline]
    pub(crate) fn insert<A: KeyArg<K>>(
        &self,
        key: A,
        value: V,
        enforce_cap: bool,
    ) -> Result<(), AddError<K, V>> {
        let hash = key.hash_with(&self.hasher);
        let mut guard = self.shards[self.shard_index(hash)].lock();
        let shard = &mut *guard;
        if shard.closed {
            drop(guard);
            return Err(AddError::Closed(key.into_owned(), value));
        }
        if let Some((_, acc)) = shard.table.find_mut(hash, |(k, _)| key.matches(k)) {
            self.merge.merge(acc, value);
            shard.adds += 1;
            return Ok(());
        }
        if self.count_keys && !self.reserve_key(enforce_cap) {
            drop(guard);
            return Err(AddError::AtCapacity(key.into_owned(), value));
        }
        shard.adds += 1;
        shard.new_keys += 1;
        let hasher = &self.hasher;
        shard
            .table
            .insert_unique(hash, (key.into_owned(), value), |(k, _)| hasher.hash_one(k));
        Ok(())
    }

    /// Counts a new key; `false` if `max_keys` is enforced and reached. Wakes the flusher when
    /// the size trigger is crossed.
    #[cold]
    fn reserve_key(&self, enforce_cap: bool) -> bool {
        let now = match (enforce_cap, self.config.max_keys) {
            (true, Some(max)) => {
                match self
                    .keys
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    }) {
                    Ok(prev) => prev + 1,
                    Err(_) => return false,
                }
            }
            _ => self.keys.fetch_add(1, Ordering::AcqRel) + 1,
        };
        self.note_pending(now);
        true
    }

    /// Wakes the flusher when `now` pending keys cross the size trigger or `max_keys`.
    pub(super) fn note_pending(&self, now: usize) {
        let over_threshold = self.config.flush_threshold.is_some_and(|t| now >= t)
            || self.config.max_keys.is_some_and(|m| now >= m);
        if over_threshold
            && !self.wake_pending.load(Ordering::Relaxed)
            && !self.wake_pending.swap(true, Ordering::AcqRel)
        {
            let _ = self.wake_tx.try_send(());
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.drain_locals(false);
        let hash = self.hasher.hash_one(key);
        let shard = self.shards[self.shard_index(hash)].lock();
        shard
            .table
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v.clone())
    }

    /// Runs flush passes until no request is outstanding. With `wait == false` it returns at
    /// once (coalesced) when another thread is flushing.
    ///
    /// Protocol: a request raises `flush_again` *before* trying the lock. The holder serves
    /// requests in a loop and re-checks the flag after unlocking, so a request that lost the
    /// race for the lock is always served by somebody: never two passes at once, never a
    /// request skipped.
    pub(crate) fn flush(&self, wait: bool) -> FlushReport {
        let mut report = FlushReport::default();
        // An RMW, not a store: it extends the release sequence of earlier requests, so the pass
        // that consumes the flag synchronises with *every* requester's adds. A plain store here
        // lets a pass consume the flag without seeing another requester's data (found by loom).
        self.flush_again.swap(true, Ordering::SeqCst);
        loop {
            let guard = if wait {
                Some(self.flush.lock())
            } else {
                self.flush.try_lock()
            };
            let Some(mut st) = guard else {
                if report.passes == 0 {
                    report.coalesced = true;
                    self.totals.coalesced.fetch_add(1, Ordering::Relaxed);
                }
                return report;
            };
            while self.flush_again.swap(false, Ordering::SeqCst) {
                self.pass(&mut st, &mut report);
            }
            drop(st);
            if !self.flush_again.load(Ordering::SeqCst) {
                return report;
            }
        }
    }

    /// One flush pass: swap each shard's table out under its lock, then offer it to the
    /// channel. A full channel ends the pass; the batch in hand goes back into its shard and the
    /// shards not yet visited keep their data, so nothing is copied twice while the consumer is
    /// behind.
    fn pass(&self, st: &mut FlushState<K, V>, report: &mut FlushReport) {
        let FlushState {
            tx,
            seq,
            next_shard,
            hints,
            spare,
            backpressured,
        } = st;
        let Some(tx) = tx.as_ref() else {
            return;
        };
        // Re-arm the size trigger: adds from here on count toward the next flush.
        self.wake_pending.store(false, Ordering::Release);
        // Everything the handles hold joins this pass.
        self.drain_locals(false);
        *seq += 1;
        report.seq = *seq;
        report.passes += 1;
        let n = self.shards.len();
        let start = *next_shard;
        let (mut batches, mut items, mut reinserted) = (0u64, 0u64, 0u64);
        let mut deferred = false;
        for j in 0..n {
            let i = (start + j) & (n - 1);
            if tx.is_full() {
                *next_shard = i;
                deferred = true;
                break;
            }
            let fresh = spare
                .take()
                .unwrap_or_else(|| HashTable::with_capacity(hints[i]));
            let table = {
                let mut shard = self.shards[i].lock();
                if shard.table.is_empty() {
                    *spare = Some(fresh);
                    continue;
                }
                if self.count_keys {
                    self.keys.fetch_sub(shard.table.len(), Ordering::AcqRel);
                }
                std::mem::replace(&mut shard.table, fresh)
            };
            let len = table.len();
            hints[i] = len;
            let batch = Batch {
                seq: *seq,
                shard: i,
                items: table,
            };
            match tx.try_send(batch) {
                Ok(()) => {
                    self.bell.ring();
                    batches += 1;
                    items += len as u64;
                    tracing::trace!(seq = *seq, shard = i, items = len, "batch sent");
                }
                Err(chan::TrySendError::Full(b)) => {
                    self.reinsert(i, b.items);
                    reinserted += len as u64;
                    *next_shard = i;
                    deferred = true;
                    break;
                }
                Err(chan::TrySendError::Disconnected(b)) => {
                    // Nobody can receive; keep the data for shutdown to hand back.
                    self.reinsert(i, b.items);
                    reinserted += len as u64;
                    *next_shard = i;
                    deferred = true;
                    break;
                }
            }
        }
        // Everything this pass sends is in the channel: a consumer gathering it may write.
        self.bell.pass_done(*seq);
        if deferred && !*backpressured {
            tracing::warn!(
                seq = *seq,
                "batch channel is full: pending data stays in the aggregator until the consumer catches up"
            );
        } else if !deferred && *backpressured {
            tracing::info!(seq = *seq, "batch channel has room again");
        }
        *backpressured = deferred;
        tracing::debug!(
            seq = *seq,
            batches,
            items,
            reinserted,
            deferred,
            "flush pass"
        );
        report.batches_sent += batches;
        report.items_sent += items;
        report.items_reinserted += reinserted;
        report.deferred |= deferred;
        let t = &self.totals;
        t.flushes.fetch_add(1, Ordering::Relaxed);
        t.batches_sent.fetch_add(batches, Ordering::Relaxed);
        t.items_sent.fetch_add(items, Ordering::Relaxed);
        t.items_reinserted.fetch_add(reinserted, Ordering::Relaxed);
        t.deferred.fetch_add(deferred as u64, Ordering::Relaxed);
    }

    /// Merges a batch that could not be sent back into its shard, older values first.
    fn reinsert(&self, i: usize, items: HashTable<(K, V)>) {
        let mut shard = self.shards[i].lock();
        // Flush passes never overlap shutdown (both hold the flush lock), so the shard is open.
        debug_assert!(!shard.closed);
        let new_keys = shard.absorb(items, Age::Older, &self.hasher, &self.merge);
        if self.count_keys {
            self.keys.fetch_add(new_keys, Ordering::AcqRel);
        }
    }
}

impl<K, V, S, M> Shared<K, V, S, M> {
    pub(crate) fn counters(&self) -> Counters {
        self.drain_locals(false);
        let mut c = Counters::default();
        for shard in self.shards.iter() {
            let s = shard.lock();
            c.adds += s.adds;
            c.new_keys += s.new_keys;
            c.pending_keys += s.table.len() as u64;
        }
        c.merges = c.adds - c.new_keys;
        let t = &self.totals;
        c.flushes = t.flushes.load(Ordering::Relaxed);
        c.coalesced_flushes = t.coalesced.load(Ordering::Relaxed);
        c.batches_sent = t.batches_sent.load(Ordering::Relaxed);
        c.items_sent = t.items_sent.load(Ordering::Relaxed);
        c.items_reinserted = t.items_reinserted.load(Ordering::Relaxed);
        c.deferred_flushes = t.deferred.load(Ordering::Relaxed);
        c
    }

    pub(crate) fn len(&self) -> usize {
        self.drain_locals(false);
        self.shards.iter().map(|s| s.lock().table.len()).sum()
    }

    pub(crate) fn snapshot(&self) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        self.drain_locals(false);
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let s = shard.lock();
            out.extend(s.table.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }
}

impl<K, V, S, M> Aggregator<K, V, S, M>
where
    K: Hash + Eq,
    S: BuildHasher,
    M: Merge<V>,
{
    /// Merges `value` into `key`'s pending value, or inserts it.
    ///
    /// Never refuses a key for capacity: `max_keys` bounds [`try_add`](Self::try_add) only (a new
    /// key at capacity still wakes the flusher).
    ///
    /// # Errors
    ///
    /// [`AddError::Closed`] with the key and value after [`shutdown`](Self::shutdown).
    ///
    /// **Blocking:** takes the key's shard lock for one hash-table probe and the merge.
    ///
    /// # Examples
    ///
    /// ```
    /// let (agg, _rx) = accrue::Aggregator::<u64, u64>::builder().build().unwrap();
    /// agg.add(1, 10).unwrap();
    /// agg.add(1, 5).unwrap();
    /// assert_eq!(agg.get(&1), Some(15));
    /// ```
    #[inline]
    pub fn add(&self, key: K, value: V) -> Result<(), AddError<K, V>> {
        self.shared.insert(Owned(key), value, false)
    }

    /// Like [`add`](Self::add), but looks the key up by reference and clones it only when it is
    /// new (`&str` for `String` keys, for example).
    ///
    /// # Errors
    ///
    /// [`AddError::Closed`] after shutdown (the key is cloned into the error).
    ///
    /// # Examples
    ///
    /// ```
    /// let (agg, _rx) = accrue::Aggregator::<String, u64>::builder().build().unwrap();
    /// agg.add_ref("hits", 1).unwrap(); // allocates "hits"
    /// agg.add_ref("hits", 1).unwrap(); // allocates nothing
    /// assert_eq!(agg.get("hits"), Some(2));
    /// ```
    #[inline]
    pub fn add_ref<Q>(&self, key: &Q, value: V) -> Result<(), AddError<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.shared.insert(Borrowed(key), value, false)
    }

    /// Like [`add`](Self::add), but refuses a **new** key while `max_keys` keys are pending.
    /// Existing keys always merge. The bound is exact across threads; re-insertion of a batch
    /// handed back by a full channel may exceed it, because that data was already accepted.
    ///
    /// # Errors
    ///
    /// [`AddError::AtCapacity`] (with the key and value, nothing changed) at capacity;
    /// [`AddError::Closed`] after shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// let (agg, _rx) = accrue::Aggregator::<u32, u64>::builder().max_keys(1).build().unwrap();
    /// agg.try_add(1, 1).unwrap();
    /// agg.try_add(1, 1).unwrap(); // existing key: merges
    /// let err = agg.try_add(2, 1).unwrap_err();
    /// assert!(err.is_at_capacity());
    /// assert_eq!(err.into_inner(), (2, 1));
    /// ```
    #[inline]
    pub fn try_add(&self, key: K, value: V) -> Result<(), AddError<K, V>> {
        self.shared.insert(Owned(key), value, true)
    }

    /// The pending (not yet flushed) value of `key`, cloned. Like every read (`len`,
    /// `snapshot`, `counters`), it first moves what the [`LocalHandle`]s hold into the shards,
    /// so their adds are included.
    ///
    /// **Blocking:** takes each live handle's lock in turn, then the key's shard lock.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.shared.get(key)
    }

    /// A handle for one producer thread: its adds merge into a private table and reach the
    /// shards in bulk, which is much faster on many keys from several threads. See
    /// [`LocalHandle`] for when its data is delivered and how it orders with other adds.
    ///
    /// # Examples
    ///
    /// ```
    /// let (agg, _rx) = accrue::Aggregator::<u64, u64>::builder().build().unwrap();
    /// let local = agg.local();
    /// local.add(1, 10).unwrap();
    /// local.add(1, 5).unwrap();
    /// assert_eq!(agg.get(&1), Some(15)); // reads drain the handles first
    /// ```
    pub fn local(&self) -> LocalHandle<K, V, S, M> {
        LocalHandle::new(self.shared.clone())
    }

    /// Runs a flush now and waits for it: everything added before the call has been offered to
    /// the channel when it returns (or, if the channel was full, is still pending and will be
    /// offered by the next flush). If another thread is flushing, waits for it and then runs one
    /// more pass.
    ///
    /// **Blocking:** waits for a running flush; never waits for the channel.
    pub fn flush(&self) -> FlushReport {
        self.shared.flush(true)
    }

    /// The deterministic flush step, for callers that drive flushing themselves
    /// ([`Builder::build`](super::Builder::build)). If another thread is flushing, returns at once with
    /// [`FlushReport::coalesced`] set, and that thread runs one more pass on this call's behalf.
    ///
    /// **Blocking:** never waits for the channel or for another flush.
    pub fn flush_once(&self) -> FlushReport {
        self.shared.flush(false)
    }
}

impl<K, V, S, M> Aggregator<K, V, S, M> {
    /// Stops the flusher, delivers everything pending with blocking sends, then closes the
    /// channel so receivers see the end of the stream. Adds that lose the race with shutdown
    /// get [`AddError::Closed`] back; every accepted add is delivered or handed back.
    ///
    /// Idempotent: later calls return `Ok(())` at once.
    ///
    /// # Errors
    ///
    /// [`ShutdownError`] carrying the batches that could not be delivered because every
    /// receiver was dropped.
    ///
    /// **Blocking:** until the consumer has taken every batch. If the consumer may never read,
    /// use [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn shutdown(&self) -> Result<(), ShutdownError<K, V>> {
        self.shutdown_inner(None)
    }

    /// [`shutdown`](Self::shutdown) that gives up waiting for the consumer after `timeout`; what
    /// could not be sent by then is handed back in the error.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), ShutdownError<K, V>> {
        self.shutdown_inner(Some(Instant::now() + timeout))
    }

    fn shutdown_inner(&self, deadline: Option<Instant>) -> Result<(), ShutdownError<K, V>> {
        #[cfg(not(accrue_loom))]
        self.shared.stop_flusher(&self.flusher);
        self.shared.close(deadline)
    }

    /// Whether [`shutdown`](Self::shutdown) has started.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closing()
    }

    /// Number of pending keys.
    ///
    /// **Blocking:** takes each shard lock in turn.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether no key is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clones every pending `(key, value)`. Shards are copied one after another, so the result
    /// is not an atomic snapshot across shards while adds run.
    ///
    /// **Blocking:** takes each shard lock in turn for the time of its copy.
    pub fn snapshot(&self) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        self.shared.snapshot()
    }

    /// Activity counters: adds, merges, flushes, backpressure, pending keys.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// The effective settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Whether the size trigger or `max_keys` asks for a flush, for callers driving flushes
    /// themselves: `true` once a threshold is crossed, until the next flush pass.
    pub fn needs_flush(&self) -> bool {
        self.shared.wake_pending.load(Ordering::Acquire)
    }
}

impl<K, V, S, M> Drop for Aggregator<K, V, S, M> {
    /// Shuts down with the builder's `drop_timeout`; data that cannot be delivered by then is
    /// logged (with `tracing::error!`) and dropped. Call [`shutdown`](Self::shutdown) yourself to
    /// get it back instead.
    fn drop(&mut self) {
        if let Err(e) = self.shutdown_timeout(self.drop_timeout) {
            tracing::error!(
                items = e.item_count(),
                batches = e.batches().len(),
                "aggregator dropped with undelivered data: {e}"
            );
        }
    }
}

impl<K, V, S, M> fmt::Debug for Aggregator<K, V, S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregator")
            .field("config", &self.shared.config)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
