//! One shard: a hash table of pending `(key, value)` pairs and its counters, guarded by the
//! shard's lock in [`Shared`](super::core::Shared).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::merge::Merge;

/// The state behind one shard lock.
pub(crate) struct Shard<K, V> {
    pub(crate) table: HashTable<(K, V)>,
    /// Set by shutdown: adds are refused from then on.
    pub(crate) closed: bool,
    // Counters live under the lock we already hold, so counting costs no shared cache line;
    // the hit path bumps only `adds` (merges = adds - new_keys).
    pub(crate) adds: u64,
    pub(crate) new_keys: u64,
}

/// Which side of a merge is older.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Age {
    /// The incoming items are newer than what the shard holds (a normal add).
    Newer,
    /// The incoming items are older (a batch handed back by a full channel).
    Older,
}

impl<K, V> Shard<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            table: HashTable::new(),
            closed: false,
            adds: 0,
            new_keys: 0,
        }
    }

    /// Merges a whole table into this shard, preserving per-key order whichever side is older,
    /// and returns how many keys were new to the shard.
    ///
    /// Iterates over the smaller table: when the incoming one is larger, the two are swapped
    /// first, so handing back a big batch to a nearly empty shard costs O(small).
    pub(crate) fn absorb<S, M>(
        &mut self,
        mut incoming: HashTable<(K, V)>,
        age: Age,
        hasher: &S,
        merge: &M,
    ) -> usize
    where
        K: Eq + std::hash::Hash,
        S: BuildHasher,
        M: Merge<V>,
    {
        let before = self.table.len();
        let mut age = age;
        if incoming.len() > self.table.len() {
            std::mem::swap(&mut self.table, &mut incoming);
            age = match age {
                Age::Newer => Age::Older,
                Age::Older => Age::Newer,
            };
        }
        for (key, value) in incoming {
            let hash = hasher.hash_one(&key);
            match self.table.find_mut(hash, |(k, _)| *k == key) {
                Some((_, acc)) => match age {
                    Age::Newer => merge.merge(acc, value),
                    Age::Older => {
                        let newer = std::mem::replace(acc, value);
                        merge.merge(acc, newer);
                    }
                },
                None => {
                    self.table
                        .insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
                }
            }
        }
        self.table.len() - before
    }
}
