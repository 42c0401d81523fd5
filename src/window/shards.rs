//! The sharded key map behind a [`WindowStore`](super::WindowStore): entries, shards, the
//! dirty set, and the state a store shares with its reservations and auto-persist task.

use std::fmt;

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use jiff::Timestamp;

use super::calendar::Calendar;
use super::clock::Clock;
use super::error::WindowError;
use super::key::Key;
use super::ring::{KeyState, Layout};
use crate::sync::{AtomicUsize, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One key: its name and its rings. Lives in its shard's table and is guarded by the shard's
/// lock. Cache-line aligned, so what a record touches spans exactly two lines.
#[repr(C, align(64))]
pub(crate) struct Entry {
    pub(crate) key: Key,
    pub(crate) state: KeyState,
}

/// One shard of the key map, behind a reader-writer lock: queries take it shared, writes
/// exclusively (one lock per operation on one key).
#[derive(Default)]
pub(crate) struct Shard {
    table: HashTable<Box<Entry>>,
    /// Keys known to be in neither memory nor storage (only kept when there is storage).
    misses: HashTable<Box<str>>,
    /// This shard's part of the dirty set: every key changed since it was last persisted, once.
    dirty: Vec<Key>,
}

impl Shard {
    #[inline]
    fn find(&self, hash: u64, key: &str) -> Option<&Entry> {
        self.table.find(hash, |e| e.key.is(key)).map(|e| &**e)
    }

    /// The key's state and what marks it dirty.
    #[inline]
    fn find_mut<'s>(
        &'s mut self,
        hash: u64,
        key: &str,
        count: &'s AtomicUsize,
    ) -> Option<(&'s mut KeyState, Dirty<'s>)> {
        let Shard { table, dirty, .. } = self;
        let e = table.find_mut(hash, |e| e.key.is(key))?;
        let Entry { key, state } = &mut **e;
        Some((
            state,
            Dirty {
                list: dirty,
                count,
                key,
            },
        ))
    }
}

/// Puts one key in the dirty set.
pub(crate) struct Dirty<'s> {
    list: &'s mut Vec<Key>,
    count: &'s AtomicUsize,
    key: &'s Key,
}

impl Dirty<'_> {
    /// Marks the key changed, once until it is persisted.
    #[inline]
    pub(crate) fn mark(&mut self, st: &mut KeyState) {
        if !st.dirty {
            st.dirty = true;
            self.list.push(self.key.clone());
            self.count.fetch_add(1, Ordering::Release);
        }
    }
}

/// Bound on remembered misses per shard; past it the set starts over.
const MAX_MISSES_PER_SHARD: usize = 4096;

/// Where the state of a key that was absent from memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Its stored copy.
    Stored,
    /// Nothing: storage has no copy (or there is no storage).
    New,
    /// Nothing, because the stored copy could not be read.
    Unreadable,
}

/// Everything a store, its reservations and its auto-persist task share.
pub(crate) struct Inner {
    shards: Box<[CachePadded<RwLock<Shard>>]>,
    shift: u32,
    hasher: ahash::RandomState,
    pub(crate) layout: Layout,
    pub(crate) cal: Calendar,
    pub(crate) clock: std::sync::Arc<dyn Clock>,
    /// Keys in the dirty set, over all shards.
    pub(crate) dirty_count: AtomicUsize,
    #[cfg(feature = "window-persist")]
    pub(crate) persistence: Option<super::persist::Persistence>,
}

/// Shard guards held together, in ascending shard order, each shard once.
pub(crate) struct Held<'a, G> {
    inner: &'a Inner,
    guards: Vec<(usize, G)>,
}

impl<'a, G: std::ops::Deref<Target = Shard>> Held<'a, G> {
    /// The state of `key`, if it is in memory.
    pub(crate) fn get(&self, key: &str) -> Option<&KeyState> {
        let hash = self.inner.hash(key);
        let i = self.inner.shard_index(hash);
        let (_, g) = self.guards.iter().find(|(j, _)| *j == i)?;
        g.find(hash, key).map(|e| &e.state)
    }
}

impl<'a> Held<'a, RwLockWriteGuard<'a, Shard>> {
    /// `key`'s state and what marks it dirty.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<(&mut KeyState, Dirty<'_>)> {
        let hash = self.inner.hash(key);
        let i = self.inner.shard_index(hash);
        let count = &self.inner.dirty_count;
        let (_, g) = self.guards.iter_mut().find(|(j, _)| *j == i)?;
        g.find_mut(hash, key, count)
    }

    /// Puts `state` in memory for `key` unless it is there already, then returns `key`'s
    /// state and what marks it dirty. `None` when `key`'s shard is not held.
    pub(crate) fn insert(
        &mut self,
        key: &str,
        state: KeyState,
    ) -> Option<(&mut KeyState, Dirty<'_>)> {
        let inner = self.inner;
        let hash = inner.hash(key);
        let i = inner.shard_index(hash);
        let (_, g) = self.guards.iter_mut().find(|(j, _)| *j == i)?;
        inner.insert(g, hash, key, state);
        g.find_mut(hash, key, &inner.dirty_count)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("layout", &self.layout)
            .field("calendar", self.cal.id())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn new(
        layout: Layout,
        cal: Calendar,
        clock: std::sync::Arc<dyn Clock>,
        shards: usize,
        #[cfg(feature = "window-persist")] persistence: Option<super::persist::Persistence>,
    ) -> Self {
        let shards = shards.max(1).next_power_of_two();
        Self {
            shards: (0..shards)
                .map(|_| CachePadded::new(RwLock::new(Shard::default())))
                .collect(),
            shift: 64 - shards.trailing_zeros(),
            // Loom replays every interleaving: the shard of a key must not change between runs.
            #[cfg(not(accrue_loom))]
            hasher: ahash::RandomState::new(),
            #[cfg(accrue_loom)]
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            layout,
            cal,
            clock,
            dirty_count: AtomicUsize::new(0),
            #[cfg(feature = "window-persist")]
            persistence,
        }
    }

    #[inline]
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub(crate) fn shard_index(&self, hash: u64) -> usize {
        // High bits pick the shard; the table probes with the low ones.
        if self.shift >= 64 {
            0
        } else {
            (hash >> self.shift) as usize
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[self.shard_index(hash)]
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Runs `f` on `key`'s state under its shard's exclusive lock, creating the key (or
    /// loading it from storage) when needed.
    #[inline]
    pub(crate) fn with_key_mut<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut KeyState, &mut Dirty<'_>) -> R,
    ) -> R {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let mut g = shard.write();
        if g.find(hash, key).is_none() {
            drop(g);
            let (loaded, _) = self.load_for_write(key);
            g = shard.write();
            self.insert(&mut g, hash, key, loaded);
        }
        let (st, mut d) = g
            .find_mut(hash, key, &self.dirty_count)
            .expect("present under the lock");
        f(st, &mut d)
    }

    /// Runs `check` on `key`'s state (`None`: the key is in neither memory nor storage) and,
    /// if it passes, `act`, both under the shard's exclusive lock, in one critical section.
    /// A key absent from memory is only created when `check` passes: a failing check leaves
    /// no key behind and marks nothing dirty. Like a query, it may load the key's stored copy
    /// into memory (clean) or remember that storage has none.
    ///
    /// `check` may run twice for a key absent from memory: once before its state is made
    /// (outside the lock), again on that state.
    #[inline]
    pub(crate) fn with_key_mut_if<R, E>(
        &self,
        key: &str,
        check: impl Fn(Option<&KeyState>) -> Result<(), E>,
        act: impl FnOnce(&mut KeyState, &mut Dirty<'_>) -> R,
    ) -> Result<R, E> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let mut g = shard.write();
        if let Some((st, mut d)) = g.find_mut(hash, key, &self.dirty_count) {
            check(Some(st))?;
            return Ok(act(st, &mut d));
        }
        let missing = self.known_missing(&g, hash, key);
        if missing {
            // Known to be nowhere: a denial needs no state, so it makes none.
            check(None)?;
        }
        drop(g);
        let (fresh, origin) = if missing {
            (
                KeyState::new(&self.layout, &self.cal, self.now()),
                Origin::New,
            )
        } else {
            self.load_for_write(key)
        };
        let mut g = shard.write();
        if let Some((st, mut d)) = g.find_mut(hash, key, &self.dirty_count) {
            // Created meanwhile: decide on that state, ours is stale.
            check(Some(st))?;
            return Ok(act(st, &mut d));
        }
        if let Err(e) = check(Some(&fresh)) {
            match origin {
                // Keep what a read would keep: the clean stored copy, or the miss.
                Origin::Stored => self.insert(&mut g, hash, key, fresh),
                Origin::New if self.has_storage() => self.remember_miss(&mut g, hash, key),
                Origin::New | Origin::Unreadable => {}
            }
            return Err(e);
        }
        self.insert(&mut g, hash, key, fresh);
        let (st, mut d) = g
            .find_mut(hash, key, &self.dirty_count)
            .expect("present under the lock");
        Ok(act(st, &mut d))
    }

    /// Inserts `state` for `key` unless it is present (someone raced us in).
    fn insert(&self, g: &mut Shard, hash: u64, key: &str, state: KeyState) {
        if g.find(hash, key).is_some() {
            return;
        }
        if let Ok(m) = g.misses.find_entry(hash, |m| &**m == key) {
            m.remove();
        }
        let hasher = &self.hasher;
        g.table.insert_unique(
            hash,
            Box::new(Entry {
                key: Key::new(key),
                state,
            }),
            |e| hasher.hash_one(e.key.as_str()),
        );
    }

    /// Runs `f` on `key`'s state under its shard's shared lock; `None` when the key is in
    /// neither memory nor storage.
    #[inline]
    pub(crate) fn with_key<R>(&self, key: &str, f: impl FnOnce(&KeyState) -> R) -> Option<R> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        {
            let g = shard.read();
            if let Some(e) = g.find(hash, key) {
                return Some(f(&e.state));
            }
            if !self.has_storage() || g.misses.find(hash, |m| &**m == key).is_some() {
                return None;
            }
        }
        if !self.load(key, hash) {
            return None;
        }
        let g = shard.read();
        g.find(hash, key).map(|e| f(&e.state))
    }

    /// Makes sure `key` is in memory if it is anywhere: loads it from storage when needed,
    /// creates it when `create`. Returns whether it exists.
    pub(crate) fn ensure(&self, key: &str, create: bool) -> bool {
        if create {
            self.with_key_mut(key, |_, _| ());
            return true;
        }
        self.with_key(key, |_| ()).is_some()
    }

    /// Loads `key` from storage into memory; false (and a remembered miss) when absent.
    fn load(&self, key: &str, hash: u64) -> bool {
        let loaded = match self.load_state(key) {
            Ok(Some(state)) => state,
            Ok(None) => {
                let mut g = self.shard(hash).write();
                if g.find(hash, key).is_some() {
                    return true;
                }
                self.remember_miss(&mut g, hash, key);
                return false;
            }
            Err(e) => {
                tracing::error!(
                    key,
                    error = &e as &dyn std::error::Error,
                    "window: cannot load key from storage"
                );
                return false;
            }
        };
        let mut g = self.shard(hash).write();
        self.insert(&mut g, hash, key, loaded);
        true
    }

    /// Remembers that `key` is in neither memory nor storage (the set starts over when full).
    fn remember_miss(&self, g: &mut Shard, hash: u64, key: &str) {
        if g.misses.len() >= MAX_MISSES_PER_SHARD {
            g.misses.clear();
        }
        if g.misses.find(hash, |m| &**m == key).is_none() {
            let hasher = &self.hasher;
            g.misses
                .insert_unique(hash, key.into(), |m| hasher.hash_one(&**m));
        }
    }

    /// Whether `key`, absent from `g`, is known to be in storage neither.
    #[inline]
    fn known_missing(&self, g: &Shard, hash: u64, key: &str) -> bool {
        !self.has_storage() || g.misses.find(hash, |m| &**m == key).is_some()
    }

    /// The state a key absent from memory starts from when a check admits it: an empty key
    /// when it is known to be in storage neither (as the check saw it), else as
    /// [`load_for_write`](Self::load_for_write).
    pub(crate) fn state_to_create(&self, key: &str) -> KeyState {
        let hash = self.hash(key);
        if self.known_missing(&self.shard(hash).read(), hash, key) {
            return KeyState::new(&self.layout, &self.cal, self.now());
        }
        self.load_for_write(key).0
    }

    /// The state a write to a key absent from memory starts from, and where it came from: the
    /// stored copy, or an empty key (marked `unloaded` when the stored copy could not be read).
    fn load_for_write(&self, key: &str) -> (KeyState, Origin) {
        match self.load_state(key) {
            Ok(Some(state)) => (state, Origin::Stored),
            Ok(None) => (
                KeyState::new(&self.layout, &self.cal, self.now()),
                Origin::New,
            ),
            Err(e) => {
                tracing::error!(
                    key,
                    error = &e as &dyn std::error::Error,
                    "window: cannot load key from storage; recording into a new copy that \
                     will be merged with it before persisting"
                );
                let mut state = KeyState::new(&self.layout, &self.cal, self.now());
                state.unloaded = true;
                (state, Origin::Unreadable)
            }
        }
    }

    fn has_storage(&self) -> bool {
        #[cfg(feature = "window-persist")]
        {
            self.persistence.is_some()
        }
        #[cfg(not(feature = "window-persist"))]
        {
            false
        }
    }

    /// Reads and converts `key`'s stored copy. Loaded keys are clean.
    pub(crate) fn load_state(&self, key: &str) -> Result<Option<KeyState>, WindowError> {
        #[cfg(feature = "window-persist")]
        if let Some(p) = &self.persistence {
            return match p.load(key)? {
                Some(snap) => Ok(Some(snap.restore(&self.layout, &self.cal, self.now())?)),
                None => Ok(None),
            };
        }
        let _ = key;
        Ok(None)
    }

    /// Locks the shards of `keys` in ascending order, each once, shared.
    pub(crate) fn lock_read(&self, keys: &[&str]) -> Held<'_, RwLockReadGuard<'_, Shard>> {
        Held {
            inner: self,
            guards: self
                .shard_order(keys)
                .into_iter()
                .map(|i| (i, self.shards[i].read()))
                .collect(),
        }
    }

    /// Locks the shards of `keys` in ascending order, each once, exclusively.
    pub(crate) fn lock_write(&self, keys: &[&str]) -> Held<'_, RwLockWriteGuard<'_, Shard>> {
        Held {
            inner: self,
            guards: self
                .shard_order(keys)
                .into_iter()
                .map(|i| (i, self.shards[i].write()))
                .collect(),
        }
    }

    fn shard_order(&self, keys: &[&str]) -> Vec<usize> {
        let mut order: Vec<usize> = keys
            .iter()
            .map(|k| self.shard_index(self.hash(k)))
            .collect();
        order.sort_unstable();
        order.dedup();
        order
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty_count.load(Ordering::Acquire) > 0
    }

    /// Calls `f` on every shard, locked exclusively, one at a time, with the dirty count.
    pub(crate) fn for_each_shard_mut(&self, mut f: impl FnMut(&mut Shard, &AtomicUsize)) {
        for s in self.shards.iter() {
            f(&mut s.write(), &self.dirty_count);
        }
    }

    /// Calls `f(key, state)` for every key in memory, each shard locked shared in turn.
    pub(crate) fn for_each_key(&self, mut f: impl FnMut(&str, &KeyState)) {
        for s in self.shards.iter() {
            let g = s.read();
            for e in g.table.iter() {
                f(e.key.as_str(), &e.state);
            }
        }
    }

    /// Drops clean keys without reservations from memory (their stored copy is current) and
    /// forgets remembered misses.
    #[cfg(feature = "window-persist")]
    pub(crate) fn evict_clean(&self) {
        for s in self.shards.iter() {
            let mut g = s.write();
            g.table.retain(|e| e.state.dirty || e.state.pending > 0);
            g.misses.clear();
        }
    }

    pub(crate) fn memory_usage(&self) -> usize {
        let mut total = std::mem::size_of::<Inner>()
            + self.shards.len() * std::mem::size_of::<CachePadded<RwLock<Shard>>>();
        for s in self.shards.iter() {
            let g = s.read();
            total += g.table.allocation_size()
                + g.misses.allocation_size()
                + g.dirty.capacity() * std::mem::size_of::<Key>();
            for e in g.table.iter() {
                total += std::mem::size_of::<Entry>() + e.key.heap_len() + e.state.heap_bytes();
            }
            total += g.misses.iter().map(|m| m.len()).sum::<usize>();
            total += g.dirty.iter().map(Key::heap_len).sum::<usize>();
        }
        total
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().table.len()).sum()
    }
}

impl Shard {
    /// Takes this shard's dirty list (the keys stay marked until cleared by the caller).
    pub(crate) fn take_dirty(&mut self, count: &AtomicUsize) -> Vec<Key> {
        let keys = std::mem::take(&mut self.dirty);
        count.fetch_sub(keys.len(), Ordering::Release);
        keys
    }

    /// Every entry, for persist_all.
    #[cfg(feature = "window-persist")]
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> + '_ {
        self.table.iter_mut().map(|e| &mut **e)
    }

    /// `key`'s entry.
    pub(crate) fn entry_mut(&mut self, hasher_key: (u64, &str)) -> Option<&mut Entry> {
        let (hash, key) = hasher_key;
        self.table
            .find_mut(hash, |e| e.key.is(key))
            .map(|e| &mut **e)
    }
}

impl Inner {
    pub(crate) fn hash_of(&self, key: &str) -> u64 {
        self.hash(key)
    }

    /// Puts `key` back in the dirty set (after a failed persist).
    #[cfg(feature = "window-persist")]
    pub(crate) fn remark(&self, key: &str) {
        let hash = self.hash(key);
        let mut g = self.shard(hash).write();
        if let Some((st, mut d)) = g.find_mut(hash, key, &self.dirty_count) {
            // It may still be flagged (taken out of the list but never reached): flag it anew
            // so it goes back in the list. A key re-marked meanwhile is listed twice, which
            // only writes it twice.
            st.dirty = false;
            d.mark(st);
        }
    }
}
