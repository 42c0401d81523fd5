//! Persisting a store: the dirty set to storage, lazily loading keys back, compaction.

use std::time::Duration;

use super::format::{BinaryFormat, Format};
use super::storage::{Storage, StorageWrite};
use crate::sync::{Arc, Mutex};
use crate::window::builder::EventStoreBuilder;
use crate::window::error::WindowError;
use crate::window::snapshot::Snapshot;
use crate::window::store::{Entry, EventStore, Inner};

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

impl EventStoreBuilder {
    /// Keeps counters in `storage` ([`SqliteStorage`](crate::SqliteStorage),
    /// [`FileStorage`](crate::FileStorage), [`MemoryStorage`](crate::MemoryStorage) or your
    /// own [`Storage`]). Keys are read from it the first time they are needed; changes are
    /// written by [`persist`](EventStore::persist), by auto-persist, and when the store is
    /// dropped.
    #[cfg_attr(docsrs, doc(cfg(feature = "window-persist")))]
    pub fn with_storage(mut self, storage: impl Storage) -> Self {
        self.persist.storage = Some(Box::new(storage));
        self
    }

    /// The encoding of stored counters: [`BinaryFormat`] (default) or
    /// [`JsonFormat`](crate::JsonFormat). Either reads both.
    #[cfg_attr(docsrs, doc(cfg(feature = "window-persist")))]
    pub fn with_format(mut self, format: impl Format) -> Self {
        self.persist.format = Some(Box::new(format));
        self
    }

    /// Persists the dirty keys every `interval` on the current tokio runtime (the writes run
    /// on its blocking pool). The task stops when the store is dropped, which persists a last
    /// time.
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
    /// Writes `entries` (each clean from here on unless written again meanwhile) in one
    /// atomic batch; on failure they go back into the dirty set.
    fn persist_entries(
        &self,
        p: &Persistence,
        mut entries: Vec<Arc<Entry>>,
    ) -> Result<(), WindowError> {
        crate::window::store::lock_order(&mut entries);
        let mut storage = p.storage.lock();
        let now = self.now();
        let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(entries.len());
        let mut result = Ok(());
        for e in &entries {
            let mut st = e.state.write();
            if st.evicted {
                values.push(None);
                continue;
            }
            if st.unloaded {
                // Never overwrite a stored copy we could not read: merge it in first.
                match storage
                    .load(e.key.as_str())
                    .map_err(WindowError::from)
                    .and_then(|b| {
                        b.map(|b| p.format.decode(&b)?.restore(&self.layout, &self.cal, now))
                            .transpose()
                    }) {
                    Ok(stored) => {
                        if let Some(stored) = stored {
                            st.merge_from(&self.layout, &self.cal, now, &stored);
                        }
                        st.unloaded = false;
                    }
                    Err(err) => {
                        result = Err(err);
                        values.push(None);
                        continue;
                    }
                }
            }
            st.dirty = false;
            st.advance(&self.layout, &self.cal, now);
            if st.is_empty() {
                values.push(Some(Vec::new()));
            } else {
                let mut buf = Vec::with_capacity(64);
                p.format
                    .encode(&Snapshot::of(&st, &self.layout, &self.cal), &mut buf);
                values.push(Some(buf));
            }
        }
        if result.is_ok() {
            let batch: Vec<StorageWrite<'_>> = entries
                .iter()
                .zip(&values)
                .filter_map(|(e, v)| {
                    v.as_ref().map(|v| {
                        if v.is_empty() {
                            StorageWrite::Delete {
                                key: e.key.as_str(),
                            }
                        } else {
                            StorageWrite::Put {
                                key: e.key.as_str(),
                                value: v,
                            }
                        }
                    })
                })
                .collect();
            result = storage.write(&batch).map_err(WindowError::from);
        }
        drop(storage);
        if result.is_err() {
            for e in &entries {
                let mut st = e.state.write();
                if !st.evicted {
                    st.dirty = false;
                    self.mark_dirty(e, &mut st);
                }
            }
        }
        result
    }

    pub(crate) fn persist(&self) -> Result<(), WindowError> {
        let p = self.persistence.as_ref().ok_or(WindowError::NoStorage)?;
        // Taking the dirty set under the storage lock keeps persists in order.
        let guard = p.storage.lock();
        let entries = self.take_dirty();
        drop(guard);
        if entries.is_empty() {
            return Ok(());
        }
        self.persist_entries(p, entries)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "window-persist")))]
impl EventStore {
    /// Writes every key changed since it was last persisted, in one atomic batch. A key whose
    /// windows have all emptied is deleted from storage.
    ///
    /// **When data is acknowledged:** a record is on stable storage once a `persist` (or an
    /// auto-persist tick, or the final persist on drop) that started after it returned `Ok`.
    ///
    /// # Errors
    ///
    /// [`WindowError::NoStorage`] without storage; a storage failure, after which every key of
    /// the batch is dirty again and nothing is lost.
    ///
    /// **Blocking:** does I/O (one sync); readers of keys not yet in memory wait for it.
    pub fn persist(&self) -> Result<(), WindowError> {
        self.inner.persist()
    }

    /// Writes every key in memory, dirty or not.
    ///
    /// # Errors
    ///
    /// As [`persist`](Self::persist).
    pub fn persist_all(&self) -> Result<(), WindowError> {
        let p = self
            .inner
            .persistence
            .as_ref()
            .ok_or(WindowError::NoStorage)?;
        let guard = p.storage.lock();
        for e in self.inner.take_dirty() {
            e.state.write().dirty = false;
        }
        drop(guard);
        self.inner.persist_entries(p, self.inner.entries())
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
            self.inner.entry(&key, false);
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
