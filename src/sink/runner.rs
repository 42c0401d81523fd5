//! The one loop that drives any [`Sink`] on tokio: [`Runner`] starts it, [`SinkTask`] is its
//! handle, [`SinkReport`] its result.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::contract::{Flush, Sink, Written};
use crate::aggregator::{Aggregator, Batch, BatchReceiver, Merge, TryRecvError};

/// Default [`Runner::stop_timeout`].
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Runner::coalesce`]: a bound only, as the aggregator reports when a flush pass has
/// sent everything (which takes microseconds).
const DEFAULT_COALESCE: Duration = Duration::from_secs(1);
/// First and longest wait between attempts of a write that failed.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Drives a [`Sink`] from an aggregator's [`BatchReceiver`] on the current tokio runtime.
///
/// * **No thread polls**: the runner awaits the channel
///   ([`recv_async`](BatchReceiver::recv_async)); the aggregator wakes it when it sends.
/// * **One flush, one write**: the batches of one flush pass (one per shard) are gathered into
///   one [`Flush`], handed to the sink once. The aggregator reports when a pass has sent
///   everything, so a flush is never split by timing nor mixed with the next one.
/// * **Backpressure**: the next flush is taken only after the last one is written.
/// * **Retries**: a failed write is retried, the same flush, with backoff (50 ms doubling to 5 s).
/// * **Stop with a deadline**: after [`SinkTask::stop`] the runner keeps writing what the
///   aggregator hands over until its channel closes, for at most the
///   [`stop_timeout`](Self::stop_timeout); whatever is not written by then is in
///   [`SinkReport::unsent`]. Nothing is dropped silently.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use accrue::Aggregator;
/// use accrue::sink::{Flush, Runner, Sink, WriteError, Written};
///
/// struct Sum(u64);
///
/// impl Sink<&'static str, u64> for Sum {
///     async fn write(&mut self, flush: &Flush<&'static str, u64>) -> Result<Written, WriteError> {
///         self.0 += flush.iter().map(|(_, n)| n).sum::<u64>();
///         println!("flush {}: running total {}", flush.id(), self.0);
///         Ok(Written::all(flush.len()))
///     }
/// }
///
/// let (agg, rx) = Aggregator::<&'static str, u64>::builder().build()?;
/// let task = Runner::new(Sum(0)).spawn_with_aggregator(&agg, rx);
/// agg.add("a", 2)?;
/// agg.add("b", 3)?;
/// task.stop(); // shuts the aggregator down and writes its final flush
/// let report = task.join().await;
/// assert!(report.is_complete());
/// assert_eq!(report.items, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Runner<T> {
    sink: T,
    stop_timeout: Duration,
    coalesce: Duration,
}

/// Shuts the aggregator down and returns what it could not deliver.
type Shutdown<K, V> = Box<dyn FnOnce() -> Vec<Batch<K, V>> + Send>;

impl<T> Runner<T> {
    /// A runner for `sink`.
    pub fn new(sink: T) -> Self {
        Self {
            sink,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            coalesce: DEFAULT_COALESCE,
        }
    }

    /// How long a stop keeps writing (and retrying) what the aggregator hands over.
    /// Default: 30 s.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The longest wait, after the first batch of a flush arrives, for the rest of it: a bound
    /// only, as the aggregator reports when a flush pass has sent everything (normally within
    /// microseconds). Default: 1 s.
    pub fn coalesce(mut self, window: Duration) -> Self {
        self.coalesce = window;
        self
    }

    /// Starts writing the batches of `rx`. The task ends when the aggregator has shut down
    /// and every batch is written, or after [`SinkTask::stop`] (you shut the aggregator down;
    /// its final flush is written within the stop timeout).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<K, V>(self, rx: BatchReceiver<K, V>) -> SinkTask<K, V>
    where
        T: Sink<K, V>,
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        self.start(rx, None)
    }

    /// [`spawn`](Self::spawn), and [`SinkTask::stop`] shuts `aggregator` down itself (through
    /// its [`shutdown_handle`](Aggregator::shutdown_handle)): its final flush is written before
    /// the task ends. The aggregator stays yours.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_with_aggregator<K, V, S, M>(
        self,
        aggregator: &Aggregator<K, V, S, M>,
        rx: BatchReceiver<K, V>,
    ) -> SinkTask<K, V>
    where
        T: Sink<K, V>,
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        S: std::hash::BuildHasher + Send + Sync + 'static,
        M: Merge<V>,
    {
        let handle = aggregator.shutdown_handle();
        let shutdown: Shutdown<K, V> = Box::new(move || match handle.shutdown() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_batches(),
        });
        self.start(rx, Some(shutdown))
    }

    fn start<K, V>(
        self,
        rx: BatchReceiver<K, V>,
        shutdown: Option<Shutdown<K, V>>,
    ) -> SinkTask<K, V>
    where
        T: Sink<K, V>,
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        let stop = CancellationToken::new();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let handle = tokio::spawn(run(self, rx, stop.clone(), shutdown, progress.clone()));
        SinkTask {
            handle,
            stop: StopHandle(stop),
            progress,
        }
    }
}

/// What a sink has written so far, read with [`SinkTask::progress`] while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Writes the destination acknowledged.
    pub writes: u64,
    /// Aggregator batches in them.
    pub batches: u64,
    /// Items in them, refused ones excluded.
    pub items: u64,
    /// Items the destination refused for good.
    pub rejected: u64,
    /// [`Flush::id`] of the last acknowledged write.
    pub last_write: Option<u64>,
}

/// What a sink did, returned by [`SinkTask::join`].
#[non_exhaustive]
pub struct SinkReport<K, V> {
    /// Writes the destination acknowledged (one per [`Flush`]).
    pub writes: u64,
    /// Aggregator batches in them.
    pub batches: u64,
    /// Items written (each key of each batch), refused ones excluded.
    pub items: u64,
    /// Items the destination refused for good (invalid for it); logged when it happened.
    pub rejected: u64,
    /// Batches not acknowledged before the stop deadline (the flush being written, those
    /// still in the channel, and what the aggregator's shutdown handed back): nothing is
    /// dropped silently.
    pub unsent: Vec<Batch<K, V>>,
}

impl<K, V> SinkReport<K, V> {
    /// Whether every batch the sink received was acknowledged by the destination.
    pub fn is_complete(&self) -> bool {
        self.unsent.is_empty()
    }

    /// Items in [`unsent`](Self::unsent).
    pub fn unsent_items(&self) -> usize {
        self.unsent.iter().map(Batch::len).sum()
    }
}

impl<K, V> Default for SinkReport<K, V> {
    fn default() -> Self {
        Self {
            writes: 0,
            batches: 0,
            items: 0,
            rejected: 0,
            unsent: Vec::new(),
        }
    }
}

impl<K, V> fmt::Debug for SinkReport<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkReport")
            .field("writes", &self.writes)
            .field("batches", &self.batches)
            .field("items", &self.items)
            .field("rejected", &self.rejected)
            .field("unsent_batches", &self.unsent.len())
            .field("unsent_items", &self.unsent_items())
            .finish()
    }
}

/// Starts a running sink's stop from anywhere ([`SinkTask::stop_handle`]).
#[derive(Debug, Clone)]
pub struct StopHandle(CancellationToken);

impl StopHandle {
    /// Starts the stop (see [`SinkTask::stop`]). Idempotent.
    pub fn stop(&self) {
        self.0.cancel();
    }
}

/// A running sink: [`stop`](Self::stop) it, read its [`progress`](Self::progress), await
/// [`join`](Self::join) for its [`SinkReport`].
pub struct SinkTask<K, V> {
    handle: JoinHandle<SinkReport<K, V>>,
    stop: StopHandle,
    progress: Arc<Mutex<Progress>>,
}

impl<K, V> fmt::Debug for SinkTask<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkTask")
            .field("finished", &self.handle.is_finished())
            .field("progress", &*self.progress.lock())
            .finish()
    }
}

impl<K, V> SinkTask<K, V> {
    /// Starts the stop: the aggregator is shut down (by the runner when started with
    /// [`spawn_with_aggregator`](Runner::spawn_with_aggregator), by you otherwise), and what it
    /// hands over is written within the stop timeout. Idempotent; await
    /// [`join`](Self::join) for the result.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// A handle that starts the stop from elsewhere (a signal handler, another task).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// What the destination has acknowledged so far.
    pub fn progress(&self) -> Progress {
        *self.progress.lock()
    }

    /// Waits for the sink to end and returns what it did.
    ///
    /// # Panics
    ///
    /// If the sink panicked (the panic is resumed here).
    pub async fn join(self) -> SinkReport<K, V> {
        match self.handle.await {
            Ok(report) => report,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the sink task was cancelled: {e}"),
        }
    }

    /// Whether the sink has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

async fn run<T, K, V>(
    runner: Runner<T>,
    rx: BatchReceiver<K, V>,
    stop: CancellationToken,
    shutdown: Option<Shutdown<K, V>>,
    progress: Arc<Mutex<Progress>>,
) -> SinkReport<K, V>
where
    T: Sink<K, V>,
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    let Runner {
        mut sink,
        stop_timeout,
        coalesce,
    } = runner;
    let give_up = CancellationToken::new();
    // The stop is watched by its own task: the loop below may be inside a write (retrying)
    // when it comes, and the deadline must reach that write.
    let watcher = tokio::spawn(watch(stop, give_up.clone(), shutdown, stop_timeout));
    let mut unsent = Vec::new();
    let mut carry = None;
    let mut id = 0;
    while let Some(batches) = next_flush(&rx, &mut carry, coalesce, &give_up).await {
        id += 1;
        let flush = Flush::new(id, Timestamp::now(), batches);
        let Some(written) = write(&mut sink, &flush, &give_up).await else {
            unsent.extend(flush.into_batches());
            break;
        };
        let mut p = progress.lock();
        p.writes += 1;
        p.batches += flush.batches().len() as u64;
        p.items += written.items;
        p.rejected += written.rejected;
        p.last_write = Some(id);
    }
    // A batch of the next flush taken before the deadline.
    unsent.extend(carry.take());
    // Ends the watcher if no stop came. A shutdown it started may still be sending its final
    // flush: keep receiving until the channel closes, which the shutdown does once it has sent
    // everything it could (dropping the receiver earlier would drop whatever it sent in
    // between), then collect what it could not deliver.
    give_up.cancel();
    if let Ok(Some(shutting_down)) = watcher.await {
        while let Some(batch) = rx.recv_async().await {
            unsent.push(batch);
        }
        match shutting_down.await {
            Ok(rest) => unsent.extend(rest),
            Err(e) => tracing::error!(
                error = &e as &dyn std::error::Error,
                "the aggregator's shutdown failed"
            ),
        }
    }
    unsent.extend(rx.try_iter());
    let p = *progress.lock();
    let report = SinkReport {
        writes: p.writes,
        batches: p.batches,
        items: p.items,
        rejected: p.rejected,
        unsent,
    };
    if !report.unsent.is_empty() {
        tracing::error!(
            batches = report.unsent.len(),
            items = report.unsent_items(),
            "the sink stopped before writing everything; the batches are in its report"
        );
    }
    report
}

/// Waits for a stop, starts the aggregator's shutdown (if the runner owns it), then gives up
/// after `stop_timeout`. Returns the shutdown's task when it started one.
async fn watch<K, V>(
    stop: CancellationToken,
    give_up: CancellationToken,
    shutdown: Option<Shutdown<K, V>>,
    stop_timeout: Duration,
) -> Option<JoinHandle<Vec<Batch<K, V>>>>
where
    K: Send + 'static,
    V: Send + 'static,
{
    tokio::select! {
        () = stop.cancelled() => {}
        () = give_up.cancelled() => return None,
    }
    tracing::debug!("sink stopping: writing what the aggregator hands over");
    let shutting_down = shutdown.map(tokio::task::spawn_blocking);
    tokio::select! {
        () = tokio::time::sleep(stop_timeout) => give_up.cancel(),
        () = give_up.cancelled() => {}
    }
    shutting_down
}

/// The next flush: every batch of one flush pass, in one piece. The first batch to arrive (or
/// the one carried over) names the pass; the rest of it is taken until the aggregator reports
/// the pass complete and the channel holds no more of it, or a batch of a later pass shows up
/// (kept in `carry` for the next call), or `coalesce` has passed since the first (a bound only:
/// a pass normally ends within microseconds). `None` once the channel is closed and drained,
/// or at the deadline.
async fn next_flush<K, V>(
    rx: &BatchReceiver<K, V>,
    carry: &mut Option<Batch<K, V>>,
    coalesce: Duration,
    give_up: &CancellationToken,
) -> Option<Vec<Batch<K, V>>> {
    let first = match carry.take() {
        Some(batch) => batch,
        None => tokio::select! {
            biased;
            () = give_up.cancelled() => None,
            batch = rx.recv_async() => batch,
        }?,
    };
    let pass = first.seq();
    let mut batches = vec![first];
    let until = Instant::now() + coalesce;
    loop {
        // Read before looking at the channel: once the pass is reported complete, all it sent
        // is already in the channel.
        let complete = rx.passes_done() >= pass;
        let next = match rx.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) if complete => break,
            Err(TryRecvError::Empty) => {
                let more = tokio::time::timeout_at(until, async {
                    tokio::select! {
                        biased;
                        batch = rx.recv_async() => Some(batch),
                        () = rx.pass_done(pass) => None,
                    }
                })
                .await;
                match more {
                    Ok(Some(Some(batch))) => batch,
                    // The pass is complete: look at the channel once more.
                    Ok(None) => continue,
                    Ok(Some(None)) | Err(_) => break,
                }
            }
        };
        if next.seq() == pass {
            batches.push(next);
        } else {
            *carry = Some(next);
            break;
        }
    }
    Some(batches)
}

/// Writes `flush` until the sink acknowledges it (`Some`), retrying with backoff; `None` at
/// the deadline, which also drops a write in progress.
async fn write<T, K, V>(
    sink: &mut T,
    flush: &Flush<K, V>,
    give_up: &CancellationToken,
) -> Option<Written>
where
    T: Sink<K, V>,
{
    let mut wait = RETRY_FIRST;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let result = tokio::select! {
            biased;
            () = give_up.cancelled() => return None,
            result = sink.write(flush) => result,
        };
        match result {
            Ok(written) => {
                tracing::debug!(
                    write = flush.id(),
                    items = written.items,
                    rejected = written.rejected,
                    attempt,
                    "sink write acknowledged"
                );
                return Some(written);
            }
            Err(e) => {
                if attempt == 1 {
                    tracing::warn!(
                        write = flush.id(),
                        error = &e as &dyn std::error::Error,
                        "a sink write was not acknowledged; retrying"
                    );
                }
                tokio::select! {
                    () = give_up.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}
