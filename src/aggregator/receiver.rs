//! The consumer side: [`Batch`] and [`BatchReceiver`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hashbrown::HashTable;

use super::bell::Bell;
#[cfg(any(feature = "sink", all(test, accrue_loom)))]
use super::bell::PassDone;
use crate::sync::{Arc, chan};

/// The items one shard held at one flush: every pending key of that shard with its merged
/// value, plus the flush sequence number and the shard index.
///
/// Each key appears once per batch. For one key, batches arrive in the order its values were
/// accumulated, so a consumer that applies batches in arrival order sees every key's history in
/// order. Sequence numbers increase from one flush to the next; all batches of one flush share
/// theirs (a batch that was handed back by a full channel is delivered by a later flush, with
/// that flush's number).
pub struct Batch<K, V> {
    pub(crate) seq: u64,
    pub(crate) shard: usize,
    pub(crate) items: HashTable<(K, V)>,
}

impl<K, V> Batch<K, V> {
    /// The sequence number of the flush that delivered this batch (starts at 1).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The shard this batch came from.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Number of keys in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no keys (the aggregator never sends empty batches).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Iterates over the items by reference, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.items.iter().map(|(k, v)| (k, v))
    }

    /// Collects the items into a `Vec`, in no particular order.
    pub fn into_vec(self) -> Vec<(K, V)> {
        self.items.into_iter().collect()
    }
}

impl<K, V> IntoIterator for Batch<K, V> {
    type Item = (K, V);
    type IntoIter = hashbrown::hash_table::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<K, V> fmt::Debug for Batch<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("seq", &self.seq)
            .field("shard", &self.shard)
            .field("len", &self.items.len())
            .finish()
    }
}

/// Why [`BatchReceiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No batch is waiting right now.
    Empty,
    /// The aggregator has shut down and every batch has been received.
    Disconnected,
}

/// Why [`BatchReceiver::recv_timeout`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No batch arrived in time.
    Timeout,
    /// The aggregator has shut down and every batch has been received.
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "no batch is waiting",
            Self::Disconnected => "the aggregator has shut down and every batch was received",
        })
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out waiting for a batch",
            Self::Disconnected => "the aggregator has shut down and every batch was received",
        })
    }
}

impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

/// The receiving end of an aggregator's bounded batch channel.
///
/// Clone it to consume from several threads (each batch goes to exactly one receiver). When the
/// aggregator shuts down, the channel closes after its last batch: [`recv`](Self::recv) returns
/// `None` and iteration ends. Dropping every receiver makes flushes keep data in the aggregator
/// and [`shutdown`](crate::Aggregator::shutdown) hand it back.
///
/// Async code awaits [`recv_async`](Self::recv_async): the aggregator wakes the task when it
/// sends, no thread polls.
pub struct BatchReceiver<K, V> {
    pub(crate) rx: chan::Receiver<Batch<K, V>>,
    pub(crate) bell: Arc<Bell>,
}

impl<K, V> BatchReceiver<K, V> {
    /// Blocks until a batch arrives; `None` once the aggregator has shut down and the channel is
    /// drained.
    ///
    /// **Blocking:** parks the thread; in async code call it from `spawn_blocking`.
    pub fn recv(&self) -> Option<Batch<K, V>> {
        self.rx.recv().ok()
    }

    /// Waits for a batch without blocking a thread, on any async runtime: `None` once the
    /// aggregator has shut down and the channel is drained. The aggregator wakes the waiting
    /// task when it sends a batch or closes; nothing polls.
    ///
    /// Cancel-safe: dropping the future before it completes loses no batch.
    ///
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// let (agg, rx) = accrue::Aggregator::<&str, u64>::new();
    /// agg.add("a", 2).unwrap();
    /// agg.shutdown().unwrap();
    /// block_on(async {
    ///     let batch = rx.recv_async().await.expect("the final flush");
    ///     assert_eq!(batch.into_vec(), vec![("a", 2)]);
    ///     assert!(rx.recv_async().await.is_none(), "closed and drained");
    /// });
    /// ```
    pub fn recv_async(&self) -> Recv<'_, K, V> {
        Recv { receiver: self }
    }

    /// The last flush pass that has sent everything it will send: every batch of it (and of
    /// the passes before) is in the channel or already received.
    #[cfg(feature = "sink")]
    pub(crate) fn passes_done(&self) -> u64 {
        self.bell.passed()
    }

    /// Completes once flush pass `seq` has sent everything it will send.
    #[cfg(any(feature = "sink", all(test, accrue_loom)))]
    pub(crate) fn pass_done(&self, seq: u64) -> PassDone<'_> {
        PassDone {
            bell: &self.bell,
            seq,
        }
    }

    /// Returns a waiting batch without blocking.
    pub fn try_recv(&self) -> Result<Batch<K, V>, TryRecvError> {
        self.rx.try_recv().map_err(|e| match e {
            chan::TryRecvError::Empty => TryRecvError::Empty,
            chan::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Waits up to `timeout` for a batch.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Batch<K, V>, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            chan::RecvTimeoutError::Timeout => RecvTimeoutError::Timeout,
            chan::RecvTimeoutError::Disconnected => RecvTimeoutError::Disconnected,
        })
    }

    /// Number of batches waiting in the channel.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no batch is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The channel's capacity in batches.
    pub fn capacity(&self) -> usize {
        self.rx.capacity().unwrap_or(usize::MAX)
    }

    /// A blocking iterator over batches that ends when the aggregator has shut down and the
    /// channel is drained.
    pub fn iter(&self) -> impl Iterator<Item = Batch<K, V>> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// A non-blocking iterator over the batches waiting right now.
    pub fn try_iter(&self) -> impl Iterator<Item = Batch<K, V>> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }
}

impl<K, V> Clone for BatchReceiver<K, V> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            bell: self.bell.clone(),
        }
    }
}

/// The future of [`BatchReceiver::recv_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a, K, V> {
    receiver: &'a BatchReceiver<K, V>,
}

impl<K, V> Future for Recv<'_, K, V> {
    type Output = Option<Batch<K, V>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let receiver = self.receiver;
        let ready = |r: Result<Batch<K, V>, TryRecvError>| match r {
            Ok(batch) => Some(Poll::Ready(Some(batch))),
            Err(TryRecvError::Disconnected) => Some(Poll::Ready(None)),
            Err(TryRecvError::Empty) => None,
        };
        if let Some(done) = ready(receiver.try_recv()) {
            return done;
        }
        // Register, then look again: a batch sent in between is seen by the second look, one
        // sent after it rings the bell (see `bell`).
        receiver.bell.register(cx.waker());
        ready(receiver.try_recv()).unwrap_or(Poll::Pending)
    }
}

impl<K, V> fmt::Debug for Recv<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

impl<K, V> fmt::Debug for BatchReceiver<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchReceiver")
            .field("len", &self.rx.len())
            .finish()
    }
}
