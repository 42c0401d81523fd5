//! [`LocalHandle`]: a per-thread table in front of the shards.
//!
//! A handle merges adds into a private table behind its own lock, which only its owner takes
//! on the add path (uncontended: one cache line that never moves between cores). The shards see
//! the handle's data when it *spills*: when the table reaches `local_capacity` keys, at every
//! flush pass, at shutdown, when the handle is dropped, and before any read of the aggregator
//! (`get`, `len`, `snapshot`, `counters`). A spill of at least as many keys as there are shards
//! groups them by shard in one pass and takes each shard lock once; a smaller one takes each
//! key's shard lock in turn, as that many `add`s would.
//!
//! Lock order, everywhere: flush lock → registry → a handle's table → a shard. The add path
//! takes only the last two; a flush pass or shutdown drains every registered table while
//! holding the registry, and a dropped handle unregisters and drains under the registry too, so
//! shutdown can never close the shards while a table still holds accepted data.
//! The pool of spill scratch is a leaf: a spill takes it under a handle's table, with no
//! shard held, and takes nothing else while holding it.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use super::core::{Borrowed, KeyArg, Owned, Shared};
use super::error::AddError;
use super::merge::{Merge, Sum};
use super::shard::Shard;
use crate::constants::{SPARE_LOCAL_TABLES, SPARE_SPILL_SCRATCH};
use crate::sync::{Arc, Mutex, Ordering};

/// One handle's private table. Entries carry their hash, so a key is hashed once per add and
/// never again: neither when the table grows nor when it spills into a shard.
pub(crate) struct LocalTable<K, V> {
    table: HashTable<(u64, K, V)>,
    /// Adds since the last spill (credited to the shards' counters by the spill).
    adds: u64,
    /// Set by shutdown: adds are refused from then on.
    closed: bool,
}

impl<K, V> LocalTable<K, V> {
    fn new(closed: bool) -> Self {
        Self {
            table: HashTable::new(),
            adds: 0,
            closed,
        }
    }
}

pub(crate) type Slot<K, V> = Arc<Mutex<LocalTable<K, V>>>;

/// Spill scratch: a spill's entries grouped by shard, one `Vec` per shard. Kept in a pool on
/// the aggregator (at most [`SPARE_SPILL_SCRATCH`]) rather than in each handle, so a fresh
/// handle's first spill allocates nothing once the pool is warm, and a steady state allocates
/// nothing (a group grows only past its largest share so far).
pub(crate) type Groups<K, V> = Box<[Vec<(u64, K, V)>]>;

/// Every live handle's table, so flushes and shutdown can drain them.
pub(crate) struct Registry<K, V> {
    /// Set by shutdown: handles made from now on are born closed.
    closed: bool,
    slots: Vec<Slot<K, V>>,
    /// Emptied tables of dropped handles, reused by the next handles (at most
    /// [`SPARE_LOCAL_TABLES`]). Never drained by a flush: they hold nothing.
    spare: Vec<Slot<K, V>>,
}

impl<K, V> Registry<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            closed: false,
            slots: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Live handles.
    #[cfg(all(test, not(accrue_loom)))]
    pub(crate) fn slots_len(&self) -> usize {
        self.slots.len()
    }
}

/// A thread's own entry point into an [`Aggregator`](crate::Aggregator): adds merge into a
/// private table first and reach the shared shards in bulk. From
/// [`Aggregator::local`](crate::Aggregator::local).
///
/// Use one per producer thread on hot paths: its add path touches no cache line another
/// thread writes, so on two threads it ran 1.1x–4.4x dashmap's best usage (1.0x–4.6x
/// [`Aggregator::add`](crate::Aggregator::add)) over 1, 1k and 100k `u64` keys and 1 and 1k
/// `String` keys; see the README's bench table. It gains least where keys rarely repeat
/// between spills, as with 100k keys (each key new to the handle is cloned once, as
/// [`add_ref`](Self::add_ref) does after every flush).
///
/// **Acknowledged** means the same as for [`Aggregator::add`](crate::Aggregator::add): once
/// `add` returns `Ok`, the value is delivered by a later flush or handed back by
/// [`shutdown`](crate::Aggregator::shutdown);
/// it is never lost, whether the handle lives on, is dropped, or outlives the aggregator. Every
/// flush pass drains every handle, so a flush still delivers everything added before it.
///
/// **Order:** a handle's adds to one key merge in the order they were made. Relative to adds
/// made elsewhere (other handles, [`Aggregator::add`](crate::Aggregator::add)) they are
/// ordered as of the spill that moves them into the shards, so do not mix a handle and direct
/// adds to the same key from one thread when the merge is order-sensitive.
///
/// **Bounds:** a handle holds at most [`local_capacity`](crate::aggregator::Builder::local_capacity) keys;
/// those keys count toward the size trigger and `max_keys` once spilled. A handle never refuses
/// a key for capacity (like `add`); use [`Aggregator::try_add`](crate::Aggregator::try_add) for
/// a bounded add.
///
/// **Short-lived handles:** a dropped handle's emptied table (with its allocation) is kept for
/// the next [`local`](crate::Aggregator::local), up to 8 tables, until shutdown; so a handle per
/// task allocates nothing once warm. Each spill takes every shard lock its keys need once, so
/// a handle that sees each key only once (as in the 1,000-thread stress run) is slower than
/// plain `add`.
///
/// # Examples
///
/// ```
/// use accrue::Aggregator;
///
/// let (agg, rx) = Aggregator::<u64, u64>::builder().build().unwrap();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let local = agg.local();
///             for i in 0..1_000 {
///                 local.add(i % 10, 1).unwrap();
///             }
///         }); // dropping the handle moves its data into the shards
///     }
/// });
/// assert_eq!(agg.get(&3), Some(200));
/// agg.shutdown().unwrap();
/// let total: u64 = rx.iter().flat_map(|b| b.into_vec()).map(|(_, v)| v).sum();
/// assert_eq!(total, 2_000);
/// ```
pub struct LocalHandle<K, V, S = ahash::RandomState, M = Sum> {
    shared: Arc<Shared<K, V, S, M>>,
    slot: Slot<K, V>,
}

impl<K, V, S, M> LocalHandle<K, V, S, M> {
    pub(crate) fn new(shared: Arc<Shared<K, V, S, M>>) -> Self {
        let slot = shared.register();
        Self { shared, slot }
    }
}

impl<K, V, S, M> LocalHandle<K, V, S, M>
where
    K: Hash + Eq,
    S: BuildHasher,
    M: Merge<V>,
{
    /// Merges `value` into `key`'s value in this handle's table, or inserts it.
    ///
    /// # Errors
    ///
    /// [`AddError::Closed`] with the key and value after the aggregator's shutdown.
    ///
    /// **Blocking:** takes this handle's own lock (contended only while a flush drains it);
    /// when the table is full, spills it, taking each shard lock once.
    #[inline]
    pub fn add(&self, key: K, value: V) -> Result<(), AddError<K, V>> {
        self.shared.local_insert(&self.slot, Owned(key), value)
    }

    /// Like [`add`](Self::add), but looks the key up by reference and clones it only when it is
    /// new to this handle's table.
    ///
    /// # Errors
    ///
    /// [`AddError::Closed`] after shutdown (the key is cloned into the error).
    #[inline]
    pub fn add_ref<Q>(&self, key: &Q, value: V) -> Result<(), AddError<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.shared.local_insert(&self.slot, Borrowed(key), value)
    }
}

impl<K, V, S, M> LocalHandle<K, V, S, M> {
    /// Keys waiting in this handle's table (not yet in the shards).
    pub fn len(&self) -> usize {
        self.slot.lock().table.len()
    }

    /// Whether this handle's table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves this handle's table into the shards now, so
    /// [`Aggregator::get`](crate::Aggregator::get) and the next flush see it without draining
    /// every other handle.
    pub fn spill(&self) {
        let mut local = self.slot.lock();
        (self.shared.spill)(&self.shared, &mut local);
    }
}

impl<K, V, S, M> Drop for LocalHandle<K, V, S, M> {
    /// Unregisters the handle and moves what it holds into the shards.
    fn drop(&mut self) {
        self.shared.unregister(&self.slot);
    }
}

impl<K, V, S, M> fmt::Debug for LocalHandle<K, V, S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHandle")
            .field("pending_keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl<K, V, S, M> Shared<K, V, S, M> {
    fn register(&self) -> Slot<K, V> {
        let mut reg = self.locals.lock();
        let closed = reg.closed;
        let slot = match reg.spare.pop() {
            Some(slot) => {
                slot.lock().closed = closed;
                slot
            }
            None => Arc::new(Mutex::new(LocalTable::new(closed))),
        };
        reg.slots.push(slot.clone());
        slot
    }

    fn unregister(&self, slot: &Slot<K, V>) {
        // Drain under the registry, so shutdown (which drains and closes every registered
        // table under it, then closes the shards) either sees this table or sees it empty.
        let mut reg = self.locals.lock();
        if let Some(i) = reg.slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
            reg.slots.swap_remove(i);
        }
        let mut local = slot.lock();
        (self.spill)(self, &mut local);
        // Keep the emptied table (and its allocation) for the next handle; after shutdown no
        // handle will add again, so let it go.
        if !reg.closed && reg.spare.len() < SPARE_LOCAL_TABLES {
            debug_assert!(local.table.is_empty() && local.adds == 0);
            drop(local);
            reg.spare.push(slot.clone());
        }
    }

    /// Drains every handle's table into the shards; with `close`, also refuses their adds and
    /// those of handles made from now on.
    pub(crate) fn drain_locals(&self, close: bool) {
        let mut reg = self.locals.lock();
        reg.closed |= close;
        if close {
            reg.spare = Vec::new();
        }
        for slot in &reg.slots {
            let mut local = slot.lock();
            (self.spill)(self, &mut local);
            local.closed |= close;
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
    fn local_insert<A: KeyArg<K>>(
        &self,
        slot: &Mutex<LocalTable<K, V>>,
        key: A,
        value: V,
    ) -> Result<(), AddError<K, V>> {
        let hash = key.hash_with(&self.hasher);
        let mut guard = slot.lock();
        let local = &mut *guard;
        if local.closed {
            drop(guard);
            return Err(AddError::Closed(key.into_owned(), value));
        }
        local.adds += 1;
        if let Some((_, _, acc)) = local.table.find_mut(hash, |(_, k, _)| key.matches(k)) {
            self.merge.merge(acc, value);
            return Ok(());
        }
        if local.table.len() >= self.config.local_capacity {
            // Counted above; the spill credits it to the shards with the rest.
            local.adds -= 1;
            self.spill_table(local);
            local.adds = 1;
        }
        local
            .table
            .insert_unique(hash, (hash, key.into_owned(), value), |e| e.0);
        Ok(())
    }

    /// Moves a handle's table into the shards, newer than what they hold, grouped so each
    /// shard lock is taken once (below one key per shard, key by key). Monomorphised into
    /// [`Shared::spill`] so code without the trait bounds (`Drop`, shutdown) can call it.
    pub(crate) fn spill_table(&self, local: &mut LocalTable<K, V>) {
        let mut adds = std::mem::take(&mut local.adds);
        if local.table.is_empty() {
            debug_assert_eq!(adds, 0);
            return;
        }
        let n = self.shards.len();
        let table = &mut local.table;
        let mut new_keys_total = 0usize;
        if table.len() < n {
            // Fewer keys than shards: grouping would save no lock, so each key takes its own.
            for (hash, key, value) in table.drain() {
                let mut shard = self.shards[self.shard_index(hash)].lock();
                debug_assert!(!shard.closed, "spill into a closed shard");
                new_keys_total += usize::from(self.merge_into(&mut shard, hash, key, value));
                shard.adds += std::mem::take(&mut adds);
            }
        } else {
            let pooled = self.spill_groups.lock().pop();
            let mut groups = pooled.unwrap_or_else(|| (0..n).map(|_| Vec::new()).collect());
            for entry in table.drain() {
                groups[self.shard_index(entry.0)].push(entry);
            }
            for (s, group) in groups.iter_mut().enumerate() {
                if group.is_empty() {
                    continue;
                }
                let mut shard = self.shards[s].lock();
                // Shutdown closes the handles (under their locks) before it closes any shard.
                debug_assert!(!shard.closed, "spill into a closed shard");
                for (hash, key, value) in group.drain(..) {
                    new_keys_total += usize::from(self.merge_into(&mut shard, hash, key, value));
                }
                shard.adds += std::mem::take(&mut adds);
            }
            let mut pool = self.spill_groups.lock();
            if pool.len() < SPARE_SPILL_SCRATCH {
                pool.push(groups);
            }
        }
        if self.count_keys && new_keys_total > 0 {
            let now = self.keys.fetch_add(new_keys_total, Ordering::AcqRel) + new_keys_total;
            self.note_pending(now);
        }
    }

    /// Merges one spilled entry into `shard`, newer than what it holds; `true` if the key was
    /// new there (counted in the shard's `new_keys`).
    #[inline]
    fn merge_into(&self, shard: &mut Shard<K, V>, hash: u64, key: K, value: V) -> bool {
        if let Some((_, acc)) = shard.table.find_mut(hash, |(k, _)| *k == key) {
            self.merge.merge(acc, value);
            return false;
        }
        let hasher = &self.hasher;
        shard
            .table
            .insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
        shard.new_keys += 1;
        true
    }
}
