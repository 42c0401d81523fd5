//! Persisting a store: the dirty set to storage, lazily loading keys back, compaction.

use std::time::Duration;

use super::format::{BinaryFormat, Format};
use super::storage::{Storage, StorageWrite};
use crate::sync::Mutex;
use crate::window::builder::WindowStoreBuilder;
use crate::window::error::WindowError;
use crate::window::key::Key;
use crate::window::ring::KeyState;
use crate::window::shards::Inner;
use crate::window::snapshot::Snapshot;
use crate::window::store::WindowStore;

/// A store's storage and format.
pub(crate) struct Persistence {
    /// Also serialises persists, so two never interleave their writes of one key.
    storage: Mutex<Box<dyn Storage>>,
    format: Box<dyn Format>,
}

/// What the builder collected.
#[derive(Default)]
pub(crate) struct PersistConfig {
    storage: Option<Box<dyn Storage>>,
    format: Option<Box<dyn Format>>,
    auto: Option<Duration>,
}

impl PersistConfig {
    /// Validates; returns the persistence and the auto-persist interval.
    pub(crate) fn build(self) -> Result<(Option<Persistence>, Option<Duration>), WindowError> {
        if let Some(d) = self.auto {
            if d.is_zero() {
                return Err(WindowError::InvalidAutoPersistInterval);
            }
            if self.storage.is_none() {
                return Err(WindowError::AutoPersistRequiresStorage);
            }
        }
        let persistence = self.storage.map(|storage| Persistence {
            storage: Mutex::new(storage),
            format: self.format.unwrap_or_else(|| Box::new(BinaryFormat)),
        });
        Ok((persistence, self.auto))
    }
}

impl Persistence {
    pub(crate) fn load(&self, key: &str) -> Result<Option<Snapshot>, WindowError> {
        let bytes = self.storage.lock().load(key)?;
        bytes.map(|b| self.format.decode(&b)).transpose()
    }

    pub(crate) fn keys(&self) -> Result<Vec<String>, WindowError> {
        Ok(self.storage.lock().keys()?)
    }
}

impl WindowStoreBuilder {
    /// Keeps counters in `storage` ([`SqliteStorage`](crate::window::SqliteStorage),
    /// [`FileStorage`](crate::window::FileStorage), [`MemoryStorage`](crate::window::MemoryStorage) or your
    /// own [`Storage`]). Keys are read from it the first time they are needed; changes are
    /// written by [`persist`](WindowStore::persist), by auto-persist, and when the store is
    /// dropped.
    #[cfg_attr(docsrs, doc(cfg(feature = "window-persist")))]
    pub fn with_storage(mut self, storage: impl Storage) -> Self {
        self.persist.storage = Some(Box::new(storage));
        self
    }

    /// The encoding of stored counters: [`BinaryFormat`] (default) or
    /// [`JsonFormat`](crate::window::JsonFormat). Either reads both.
    #[cfg_attr(docsrs, doc(cfg(feature = "window-persist")))]
    pub fn with_format(mut self, format: impl Format) -> Self {
        self.persist.format = Some(Box::new(format));
        self
    }

    /// Persists the dirty keys every `interval` on the current tokio runtime (the writes run
    /// on its blocking pool). The task stops when the store is dropped, which persists a last
    /// time — synchronously, so drop the store outside async code (or call
    /// [`close`](WindowStore::close) from `spawn_blocking`).
    ///
    /// # Errors (from `build`)
    ///
    /// [`WindowError::AutoPersistRequiresStorage`] without storage,
    /// [`WindowError::InvalidAutoPersistInterval`] for a zero interval,
    /// [`WindowError::NoRuntime`] outside a tokio runtime.
    #[cfg(feature = "window-tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "window-tokio")))]
    pub fn auto_persist(mut self, interval: Duration) -> Self {
        self.persist.auto = Some(interval);
        self
    }
}

impl Inner {
    /// Writes the dirty keys (every key in memory when `all`) in one atomic batch; each is
    /// clean from then on unless written again meanwhile. If the batch write fails, they are
    /// all dirty again. A key that cannot be written (its stored copy, which it must be merged
    /// with, is still unreadable) is left out and stays dirty; the others are written and the
    /// first such error is returned.
    pub(crate) fn persist_batch(&self, all: bool) -> Result<(), WindowError> {
        let p = self.persistence.as_ref().ok_or(WindowError::NoStorage)?;
        // The storage lock also keeps persists in order: two never interleave one key's writes.
        let mut storage = p.storage.lock();
        let now = self.now();
        let mut keys: Vec<Key> = Vec::new();
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut skipped: Vec<Key> = Vec::new();
        let mut first_error: Option<WindowError> = None;
        // Every key taken out of the dirty set, to put back if the write fails.
        let mut taken: Vec<Key> = Vec::new();
        self.for_each_shard_mut(|g, count| {
            let dirty = g.take_dirty(count);
            taken.extend(dirty.iter().cloned());
            let mut write = |key: &Key, st: &mut KeyState| match self.encode(
                p,
                &mut **storage,
                key.as_str(),
                st,
                now,
            ) {
                Ok(v) => {
                    keys.push(key.clone());
                    values.push(v);
                }
                Err(e) => {
                    tracing::error!(
                        key = key.as_str(),
                        error = &e as &dyn std::error::Error,
                        "window: key not persisted"
                    );
                    skipped.push(key.clone());
                    first_error.get_or_insert(e);
                }
            };
            if all {
                for e in g.entries_mut() {
                    if !e.state.dirty {
                        taken.push(e.key.clone());
                    }
                    write(&e.key, &mut e.state);
                }
            } else {
                for k in &dirty {
                    let hash = self.hash_of(k.as_str());
                    if let Some(e) = g.entry_mut((hash, k.as_str())) {
                        write(&e.key, &mut e.state);
                    }
                }
            }
        });
        let batch: Vec<StorageWrite<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| {
                if v.is_empty() {
                    StorageWrite::Delete { key: k.as_str() }
                } else {
                    StorageWrite::Put {
                        key: k.as_str(),
                        value: v,
                    }
                }
            })
            .collect();
        let written = if batch.is_empty() {
            Ok(())
        } else {
            storage.write(&batch).map_err(WindowError::from)
        };
        drop(storage);
        // Keys that are not durable go back into the dirty set. (After a failed persist_all,
        // keys that were clean go back too; rewriting them is harmless.)
        let back = if written.is_err() { &taken } else { &skipped };
        for k in back {
            self.remark(k.as_str());
        }
        if written.is_err() {
            for k in &skipped {
                self.remark(k.as_str());
            }
        }
        match (written, first_error) {
            (Err(e), _) | (Ok(()), Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
        }
    }

    /// `key`'s bytes for storage (empty: delete, its windows are all empty), marking it clean.
    /// A key whose stored copy could not be read before is merged with it first.
    fn encode(
        &self,
        p: &Persistence,
        storage: &mut dyn Storage,
        key: &str,
        st: &mut KeyState,
        now: jiff::Timestamp,
    ) -> Result<Vec<u8>, WindowError> {
        st.dirty = false;
        if st.unloaded {
            // Never overwrite a stored copy we could not read: merge it in first.
            if let Some(bytes) = storage.load(key)? {
                let stored = p
                    .format
                    .decode(&bytes)?
                    .restore(&self.layout, &self.cal, now)?;
                st.merge_from(&self.layout, &self.cal, now, &stored);
            }
            st.unloaded = false;
        }
        st.advance(&self.layout, &self.cal, now);
        let mut buf = Vec::new();
        if !st.is_empty() {
            buf.reserve(64);
            p.format
                .encode(&Snapshot::of(st, &self.layout, &self.cal), &mut buf);
        }
        Ok(buf)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "window-persist")))]
impl WindowStore {
    /// Writes every key changed since it was last persisted, in one atomic batch. A key whose
    /// windows have all emptied is deleted from storage.
    ///
    /// **When data is acknowledged:** a record is on stable storage once a `persist` (or an
    /// auto-persist tick, or the final persist on drop) that started after it returned `Ok`.
    ///
    /// # Errors
    ///
    /// [`WindowError::NoStorage`] without storage; a storage failure, after which every key of
    /// the batch is dirty again and nothing is lost. A key recorded while its stored copy could
    /// not be read is merged with that copy before it is written; while the copy is still
    /// unreadable the key is left out (and stays dirty), the other keys are written, and the
    /// error is returned.
    ///
    /// **Blocking:** does I/O (one sync); readers of keys not yet in memory wait for it.
    pub fn persist(&self) -> Result<(), WindowError> {
        self.inner.persist_batch(false)
    }

    /// Writes every key in memory, dirty or not.
    ///
    /// # Errors
    ///
    /// As [`persist`](Self::persist).
    pub fn persist_all(&self) -> Result<(), WindowError> {
        self.inner.persist_batch(true)
    }

    /// Loads every stored key, advances it to now, writes it back (deleting keys whose windows
    /// have all emptied), then drops clean keys from memory.
    ///
    /// # Errors
    ///
    /// As [`persist`](Self::persist).
    pub fn compact(&self) -> Result<(), WindowError> {
        let p = self
            .inner
            .persistence
            .as_ref()
            .ok_or(WindowError::NoStorage)?;
        for key in p.keys()? {
            self.inner.ensure(&key, false);
        }
        self.persist_all()?;
        self.inner.evict_clean();
        Ok(())
    }

    /// Persists and drops the store, returning the persist's error instead of logging it.
    ///
    /// # Errors
    ///
    /// As [`persist`](Self::persist).
    pub fn close(self) -> Result<(), WindowError> {
        // On failure the keys stay dirty and the drop that follows tries once more (and logs).
        self.persist()
    }
}
