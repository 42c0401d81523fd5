//! The [`Storage`] trait and the in-memory backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::window::error::StorageError;

/// One change in a [`Storage::write`] batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageWrite<'a> {
    /// Store `value` under `key`, replacing what was there.
    Put {
        /// The key.
        key: &'a str,
        /// The encoded counter.
        value: &'a [u8],
    },
    /// Remove `key` (its windows are all empty).
    Delete {
        /// The key.
        key: &'a str,
    },
}

/// Where a store keeps its counters between runs: a key-value map of encoded snapshots.
///
/// A store owns its storage: it reads a key the first time it needs it and writes the keys
/// that changed on [`persist`](crate::window::WindowStore::persist). Two stores writing one storage
/// overwrite each other's keys.
pub trait Storage: Send + 'static {
    /// The bytes stored under `key`.
    ///
    /// # Errors
    ///
    /// The backend failed; the store then treats the key as unreadable (never as absent).
    fn load(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Every stored key.
    ///
    /// # Errors
    ///
    /// The backend failed.
    fn keys(&mut self) -> Result<Vec<String>, StorageError>;

    /// Applies `batch` atomically and durably: when this returns `Ok`, every change is on
    /// stable storage; when it returns `Err`, none may be.
    ///
    /// # Errors
    ///
    /// The backend failed.
    fn write(&mut self, batch: &[StorageWrite<'_>]) -> Result<(), StorageError>;
}

/// Keeps counters in memory, for tests and for moving data between stores in one process.
/// Clones share the same map.
///
/// # Examples
///
/// ```
/// use accrue::window::{Record, MemoryStorage, WindowStore};
///
/// let storage = MemoryStorage::new();
/// let a = WindowStore::builder().with_storage(storage.clone()).build()?;
/// a.record_with("e", Record::count(7)).unwrap();
/// a.persist()?;
/// drop(a);
/// let b = WindowStore::builder().with_storage(storage.clone()).build()?;
/// assert_eq!(b.query("e").ever().sum(), Some(7));
/// assert_eq!(storage.len(), 1);
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored keys.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes stored under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map().get(key).cloned()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map().get(key).cloned())
    }

    fn keys(&mut self) -> Result<Vec<String>, StorageError> {
        Ok(self.map().keys().cloned().collect())
    }

    fn write(&mut self, batch: &[StorageWrite<'_>]) -> Result<(), StorageError> {
        let mut m = self.map();
        for w in batch {
            match *w {
                StorageWrite::Put { key, value } => {
                    m.insert(key.to_owned(), value.to_vec());
                }
                StorageWrite::Delete { key } => {
                    m.remove(key);
                }
            }
        }
        Ok(())
    }
}
