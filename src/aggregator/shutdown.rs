//! [`ShutdownHandle`]: a clonable handle that shuts an [`Aggregator`] down from anywhere (a
//! sink task, a signal handler) without sharing the aggregator itself.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use super::core::{Aggregator, Flusher, Shared};
use super::error::ShutdownError;
use super::merge::Merge;
use crate::sync::Arc;

/// Shuts an [`Aggregator`] down, exactly as [`Aggregator::shutdown`] does, from a clone that
/// can move into another thread or task. Whichever shutdown comes first does the work; the
/// others find it done.
///
/// # Examples
///
/// ```
/// use accrue::Aggregator;
///
/// let (agg, rx) = Aggregator::<&str, u64>::new();
/// let handle = agg.shutdown_handle();
/// agg.add("jobs", 2).unwrap();
/// std::thread::spawn(move || handle.shutdown().unwrap()).join().unwrap();
/// assert!(agg.is_closed());
/// let total: u64 = rx.iter().flatten().map(|(_, n)| n).sum();
/// assert_eq!(total, 2);
/// ```
pub struct ShutdownHandle<K, V, S = ahash::RandomState, M = super::Sum> {
    shared: Arc<Shared<K, V, S, M>>,
    flusher: Flusher,
}

impl<K, V, S, M> Aggregator<K, V, S, M> {
    /// A clonable handle that shuts this aggregator down (see [`ShutdownHandle`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle<K, V, S, M> {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            flusher: std::sync::Arc::clone(&self.flusher),
        }
    }
}

impl<K, V, S, M> ShutdownHandle<K, V, S, M>
where
    K: Hash + Eq,
    S: BuildHasher,
    M: Merge<V>,
{
    /// [`Aggregator::shutdown`]: stops the flusher, delivers everything pending with blocking
    /// sends, then closes the channel.
    ///
    /// # Errors
    ///
    /// [`ShutdownError`] with every batch that could not be delivered.
    pub fn shutdown(&self) -> Result<(), ShutdownError<K, V>> {
        self.shutdown_inner(None)
    }

    /// [`Aggregator::shutdown_timeout`]: gives up waiting for the consumer after `timeout`.
    ///
    /// # Errors
    ///
    /// [`ShutdownError`] with every batch that could not be delivered by then.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), ShutdownError<K, V>> {
        self.shutdown_inner(Some(Instant::now() + timeout))
    }

    fn shutdown_inner(&self, deadline: Option<Instant>) -> Result<(), ShutdownError<K, V>> {
        self.shared.stop_flusher(&self.flusher);
        self.shared.close(deadline)
    }
}

impl<K, V, S, M> ShutdownHandle<K, V, S, M> {
    /// Whether a shutdown has started.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closing()
    }
}

impl<K, V, S, M> Clone for ShutdownHandle<K, V, S, M> {
    fn clone(&self) -> Self {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            flusher: std::sync::Arc::clone(&self.flusher),
        }
    }
}

impl<K, V, S, M> fmt::Debug for ShutdownHandle<K, V, S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
