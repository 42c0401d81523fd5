//! The client's counters: [`ClientStats`] (a snapshot any time) and [`CloseReport`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Totals since the client was built, from [`Client::stats`](crate::client::Client::stats).
///
/// Every event given to `emit` ends up in exactly one of: `dropped` (queue overflow, or
/// `Invalid`/`Closed` errors, which are not counted here because the caller got the event back),
/// `queued`, `in_flight`, `delivered`, `duplicates`, `rejected` or `failed`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use accrue::client::{Client, Event};
///
/// let client = Client::builder("http://127.0.0.1:9").queue_capacity(2).build().unwrap();
/// for _ in 0..5 {
///     let _ = client.emit(Event::new("e"));
/// }
/// let stats = client.stats();
/// assert_eq!(stats.queued + stats.in_flight, 2);
/// assert_eq!(stats.dropped, 3); // exact
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Events accepted by `emit` (queued), including those later dropped by
    /// [`Overflow::DropOldest`](crate::client::Overflow::DropOldest).
    pub emitted: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events waiting in the queue now.
    pub queued: u64,
    /// Events in batches being sent (or waiting to be retried) now.
    pub in_flight: u64,
    /// Events the server acknowledged as stored.
    pub delivered: u64,
    /// Events the server acknowledged as already stored (their id was seen before: a retry of a
    /// request whose answer was lost).
    pub duplicates: u64,
    /// Events refused for good: the server answered a permanent 4xx, or the event broke a limit
    /// the client checks (`data` too large).
    pub rejected: u64,
    /// Events given up on: the retry limit or the close deadline passed.
    pub failed: u64,
    /// HTTP requests sent (first attempts and retries).
    pub requests: u64,
    /// Of those, retries.
    pub retries: u64,
}

/// What [`Client::close`](crate::client::Client::close) did: the totals at the end, and how
/// many events it could not deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Events the server acknowledged (stored), over the client's life.
    pub delivered: u64,
    /// Events the server already had, over the client's life.
    pub duplicates: u64,
    /// Events dropped by queue overflow, over the client's life.
    pub dropped: u64,
    /// Events refused for good, over the client's life.
    pub rejected: u64,
    /// Events that were queued or in flight when the deadline passed, plus any given up on
    /// earlier: not delivered.
    pub undelivered: u64,
}

/// The live counters, shared by the client handles and the batcher task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) dropped: AtomicU64,
    pub(crate) dequeued: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Events pushed out of the queue by `DropOldest` (already counted in `dequeued`'s
    /// complement, i.e. they were accepted).
    pub(crate) evicted: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, queued: u64) -> ClientStats {
        let dequeued = self.dequeued.load(Relaxed);
        let evicted = self.evicted.load(Relaxed);
        ClientStats {
            emitted: dequeued + queued + evicted,
            dropped: self.dropped.load(Relaxed),
            queued,
            in_flight: self.in_flight.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }
}
