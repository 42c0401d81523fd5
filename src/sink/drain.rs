//! The loop every sink runs: receive batches off the runtime, write them one at a time, stop
//! cleanly. [`SinkTask`] is its handle, [`SinkReport`] its result.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Batch, BatchReceiver, RecvTimeoutError};

/// How often the receiving thread checks whether it should stop.
const RECV_POLL: Duration = Duration::from_millis(50);
/// Default of the sinks' `stop_timeout`.
pub(crate) const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What writing one batch came to.
pub(crate) enum Outcome {
    /// Written (`items`), minus the items the destination refused for good (`rejected`).
    Written { items: u64, rejected: u64 },
    /// The stop deadline passed before the batch could be written: hand it back.
    GaveUp,
}

/// A destination for batches (the two sinks).
pub(crate) trait Write<K, V>: Send + 'static {
    fn write<'a>(
        &'a mut self,
        batch: &'a Batch<K, V>,
        flushed_at: Timestamp,
        give_up: &'a CancellationToken,
    ) -> impl Future<Output = Outcome> + Send + 'a;

    /// Called once after the last batch (the stats sink flushes what is pending).
    fn finish<'a>(
        &'a mut self,
        give_up: &'a CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'a {
        let _ = give_up;
        async {}
    }
}

/// Shuts the aggregator down and returns what it could not deliver.
pub(crate) type Shutdown<K, V> = Box<dyn FnOnce() -> Vec<Batch<K, V>> + Send>;

/// What a sink did, returned by [`SinkTask::join`].
#[non_exhaustive]
pub struct SinkReport<K, V> {
    /// Batches written.
    pub batches: u64,
    /// Items written (each key of each batch), refused ones excluded.
    pub items: u64,
    /// Items the destination refused for good (invalid for it); logged when it happened.
    pub rejected: u64,
    /// Batches not written before the stop deadline (the one being retried, those still in the
    /// channel, and what the aggregator's shutdown handed back): nothing is dropped silently.
    pub unsent: Vec<Batch<K, V>>,
}

impl<K, V> SinkReport<K, V> {
    /// Whether every batch the sink received was written.
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
            .field("batches", &self.batches)
            .field("items", &self.items)
            .field("rejected", &self.rejected)
            .field("unsent_batches", &self.unsent.len())
            .field("unsent_items", &self.unsent_items())
            .finish()
    }
}

/// A running sink: await [`join`](Self::join) for its [`SinkReport`].
pub struct SinkTask<K, V> {
    handle: JoinHandle<SinkReport<K, V>>,
}

impl<K, V> fmt::Debug for SinkTask<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkTask")
            .field("finished", &self.handle.is_finished())
            .finish()
    }
}

impl<K, V> SinkTask<K, V> {
    /// Waits for the sink to end (the aggregator shut down, or the token was cancelled and
    /// the stop finished) and returns what it did.
    ///
    /// # Panics
    ///
    /// If the sink task panicked (the panic is resumed here).
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

/// Starts the loop on the current tokio runtime.
///
/// # Panics
///
/// Outside a tokio runtime.
pub(crate) fn spawn<K, V, W>(
    rx: BatchReceiver<K, V>,
    stop: CancellationToken,
    shutdown: Option<Shutdown<K, V>>,
    writer: W,
    stop_timeout: Duration,
) -> SinkTask<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
    W: Write<K, V>,
{
    SinkTask {
        handle: tokio::spawn(run(rx, stop, shutdown, writer, stop_timeout)),
    }
}

async fn run<K, V, W>(
    rx: BatchReceiver<K, V>,
    stop: CancellationToken,
    mut shutdown: Option<Shutdown<K, V>>,
    mut writer: W,
    stop_timeout: Duration,
) -> SinkReport<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
    W: Write<K, V>,
{
    // One batch in hand between the thread and the writer: the aggregator's own bounded
    // channel is the queue, so a slow destination keeps data merging in the shards.
    let (tx, mut batches) = tokio::sync::mpsc::channel::<Batch<K, V>>(1);
    let quit = Arc::new(AtomicBool::new(false));
    let receiving = tokio::task::spawn_blocking({
        let quit = quit.clone();
        move || {
            while !quit.load(Ordering::Acquire) {
                match rx.recv_timeout(RECV_POLL) {
                    Ok(batch) => {
                        if let Err(e) = tx.blocking_send(batch) {
                            return (Some(e.0), rx);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            (None, rx)
        }
    });
    let give_up = CancellationToken::new();
    // The stop is watched by its own task: the loop below may be inside a write (retrying)
    // when it comes, and the deadline must reach that write.
    let watcher = tokio::spawn({
        let (stop, give_up) = (stop.clone(), give_up.clone());
        let shutdown = shutdown.take();
        async move {
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
    });
    let mut report = SinkReport::default();
    loop {
        let next = tokio::select! {
            biased;
            next = batches.recv() => next,
            () = give_up.cancelled() => None,
        };
        // `None`: the aggregator shut down and every batch was received, or the deadline.
        let Some(batch) = next else { break };
        match writer.write(&batch, Timestamp::now(), &give_up).await {
            Outcome::Written { items, rejected } => {
                report.batches += 1;
                report.items += items;
                report.rejected += rejected;
            }
            Outcome::GaveUp => {
                report.unsent.push(batch);
                break;
            }
        }
    }
    writer.finish(&give_up).await;
    // Stop the thread, then collect everything not written: the batch it was handing over,
    // the channel's content, and what a shutdown could no longer deliver.
    quit.store(true, Ordering::Release);
    batches.close();
    while let Ok(b) = batches.try_recv() {
        report.unsent.push(b);
    }
    match receiving.await {
        Ok((pending, rx)) => {
            report.unsent.extend(pending);
            report.unsent.extend(rx.try_iter());
        }
        Err(e) => tracing::error!(error = %e, "the sink's receiving thread failed"),
    }
    // Ends the watcher if no stop came; then collect what the shutdown could not deliver
    // (the channel is gone now, so it returns at once).
    give_up.cancel();
    if let Ok(Some(h)) = watcher.await {
        match h.await {
            Ok(rest) => report.unsent.extend(rest),
            Err(e) => tracing::error!(error = %e, "the aggregator's shutdown failed"),
        }
    }
    if !report.unsent.is_empty() {
        tracing::error!(
            batches = report.unsent.len(),
            items = report.unsent_items(),
            "the sink stopped before writing everything; the batches are in its report"
        );
    }
    report
}

/// The shutdown hook for an aggregator shared with the sink.
pub(crate) fn shutdown_hook<K, V, S, M>(agg: Arc<crate::Aggregator<K, V, S, M>>) -> Shutdown<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: std::hash::BuildHasher + Send + Sync + 'static,
    M: crate::Merge<V>,
{
    Box::new(move || match agg.shutdown() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_batches(),
    })
}
