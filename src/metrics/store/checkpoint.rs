//! Checkpointed writes: a store whose batches are numbered by its caller with positions in a
//! replayable source ([`MetricsStoreBuilder::checkpointed`], [`MetricsStore::commit`], [`MetricsStore::resume`]),
//! and the read-back of a writer's mark that also keeps the automatic numbering of a stable
//! writer id above what the destination stored.

use super::{
    BlockingMetricsStore, FlushOutcome, Lane, MetricsStore, MetricsStoreBuilder, Numbering,
};
use crate::metrics::error::MetricsError;

impl MetricsStoreBuilder {
    /// Makes the store **checkpointed** under the writer id `writer`: exactly-once across
    /// crashes for a writer fed by a replayable source (a log file, a queue partition).
    ///
    /// Nothing is written under a sequence number of the store's own: there is no timed or
    /// size-triggered flush ([`buffer_duration`](Self::buffer_duration) and
    /// [`buffer_size`](Self::buffer_size) have no effect, and [`MetricsStore::flush`] is refused).
    /// Instead the caller tracks what it reads from its source and calls
    /// [`MetricsStore::commit`]`(seq)` with the source position reached (e.g. the index of the last
    /// record read, plus one): everything tracked since the previous commit is written as one
    /// batch with id (`writer`, `seq`), which the driver applies at most once. After a restart
    /// (under the same id) [`MetricsStore::resume`] returns the highest position the destination
    /// holds, and the caller restarts its source right after it. A process that takes over
    /// the source under another id reads the old id's position with [`MetricsStore::applied`].
    ///
    /// [`MetricsStore::shutdown`] writes nothing: what was not committed is the source's to replay.
    /// Only one live instance may use `writer` at a time. Overrides
    /// [`writer_id`](Self::writer_id) (and is overridden by a later call of it). A store built
    /// with [`buffer(Buffering::Off)`](Self::buffer) is refused.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use accrue::metrics::{IdentifierMode, MemoryDriver, MetricsStore};
    /// use accrue::time::{Blanks, Granularity, Unit};
    /// use serde_json::json;
    ///
    /// // A replayable source: record i says one request took `ms[i]` milliseconds.
    /// let ms = [12, 7, 30, 5, 9];
    /// let at = "2025-02-01T11:35:00Z".parse().unwrap();
    /// let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    /// let open = || {
    ///     MetricsStore::builder(driver.clone())
    ///         .granularities(["1h"])
    ///         .checkpointed("ingest-partition-0")
    ///         .build()
    ///         .unwrap()
    /// };
    ///
    /// // First life: commits records 0..3 (position 3), tracks record 3, then dies.
    /// let stats = open();
    /// assert_eq!(stats.resume().await.unwrap(), None);
    /// for (i, ms) in ms.iter().enumerate().take(4) {
    ///     stats.track("requests", at, json!({"count": 1, "ms": ms})).await.unwrap();
    ///     if i == 2 {
    ///         stats.commit(3).await.unwrap();
    ///     }
    /// }
    /// drop(stats); // a crash: record 3 was never committed
    ///
    /// // Second life: resumes after position 3 and replays the rest.
    /// let stats = open();
    /// let start = stats.resume().await.unwrap().unwrap_or(0);
    /// assert_eq!(start, 3);
    /// for ms in &ms[start as usize..] {
    ///     stats.track("requests", at, json!({"count": 1, "ms": ms})).await.unwrap();
    /// }
    /// stats.commit(ms.len() as u64).await.unwrap();
    ///
    /// let series = stats.values("requests", at, at, Granularity::one(Unit::Hour), Blanks::Keep).await.unwrap();
    /// assert_eq!(accrue::metrics::Value::Map(series.values[0].clone()).to_json(),
    ///            json!({"count": 5, "ms": 63}));
    /// # }
    /// ```
    pub fn checkpointed(mut self, writer: impl Into<String>) -> Self {
        self.writer = Some(writer.into());
        self.numbering = Numbering::Checkpointed;
        self
    }
}

impl MetricsStore {
    /// Writes everything tracked since the last commit as one batch numbered `seq` (on a
    /// [checkpointed](MetricsStoreBuilder::checkpointed) store), and waits for the driver.
    ///
    /// `seq` is the caller's source position, starting at 1, and must be greater than the
    /// last one committed by this instance. If the previous commit failed, its batch is kept:
    /// committing its `seq` again re-sends exactly that batch (what was tracked since stays
    /// for the next commit), and committing a greater `seq` re-sends it first, then writes
    /// the rest under `seq`. A commit with nothing tracked writes nothing (the destination's
    /// position stays where it was; replaying those records again writes nothing either).
    ///
    /// On MongoDB, keep the positions a batch ends at the same across restarts (commit every
    /// N records of the source, not on a timer): a batch the database stored only in part is
    /// completed exactly by re-sending it with the same position and content (see
    /// [`Driver::applied`](crate::metrics::Driver::applied)).
    ///
    /// # Errors
    ///
    /// Nothing was written: [`MetricsError::NotCheckpointed`] on an automatic store,
    /// [`MetricsError::CommitOrder`] when `seq` is not greater than the last commit (or below a
    /// failed one), [`MetricsError::Closed`] after shutdown. [`MetricsError::Driver`]: the batch
    /// is kept, to be retried by the next commit.
    pub async fn commit(&self, seq: u64) -> Result<FlushOutcome, MetricsError> {
        if self.inner.numbering != Numbering::Checkpointed {
            return Err(MetricsError::NotCheckpointed);
        }
        if *self.inner.gate.read() {
            return Err(MetricsError::Closed);
        }
        let mut lane = self.inner.lane.lock().await;
        let mut outcome = FlushOutcome::default();
        if let Some(stalled) = lane.stalled.take() {
            let last = stalled.id.seq;
            if seq < last {
                lane.stalled = Some(stalled);
                return Err(MetricsError::CommitOrder { seq, last });
            }
            if let Err(e) = self.inner.driver.write(&stalled).await {
                lane.stalled = Some(stalled);
                return Err(e.into());
            }
            outcome.batches += 1;
            outcome.rows += stalled.len();
            if seq == last {
                return Ok(outcome);
            }
        } else if seq < lane.next_seq {
            return Err(MetricsError::CommitOrder {
                seq,
                last: lane.next_seq - 1,
            });
        }
        lane.next_seq = seq;
        let Some(rows) = self.drain_rows().await? else {
            lane.next_seq = seq.saturating_add(1);
            return Ok(outcome);
        };
        self.write_next(&mut lane, rows, outcome).await
    }

    /// The highest batch seq the destination holds for this store's writer id (`None`:
    /// nothing stored under it), read from the driver. On a
    /// [checkpointed](MetricsStoreBuilder::checkpointed) store this is the source position to
    /// restart after, and later commits must be above it.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Driver`].
    pub async fn resume(&self) -> Result<Option<u64>, MetricsError> {
        let mut lane = self.inner.lane.lock().await;
        let applied = self.inner.driver.applied(&lane.writer).await?;
        if let Some(seq) = applied {
            lane.next_seq = lane.next_seq.max(seq.saturating_add(1));
        }
        lane.numbered_above_mark = true;
        Ok(applied)
    }

    /// The highest batch seq the destination holds for `writer` (`None`: nothing stored under
    /// it), e.g. the position a dead checkpointed writer reached, for a process that takes
    /// over its source under another id.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Driver`].
    pub async fn applied(&self, writer: &str) -> Result<Option<u64>, MetricsError> {
        Ok(self.inner.driver.applied(writer).await?)
    }

    /// Before the first automatic batch of a stable writer id: numbers batches above the mark
    /// the destination holds for it, so that none is skipped as already applied.
    pub(super) async fn number_above_mark(&self, lane: &mut Lane) -> Result<(), MetricsError> {
        if lane.numbered_above_mark {
            return Ok(());
        }
        if let Some(seq) = self.inner.driver.applied(&lane.writer).await? {
            lane.next_seq = lane.next_seq.max(seq.saturating_add(1));
        }
        lane.numbered_above_mark = true;
        Ok(())
    }

    /// Shutdown of a checkpointed store: drops what was not committed (and a failed commit).
    pub(super) async fn discard_uncommitted(&self) {
        let mut lane = self.inner.lane.lock().await;
        lane.stalled = None;
        if let Some(buffer) = &self.inner.buffer {
            drop(buffer.drain());
        }
    }
}

impl BlockingMetricsStore {
    /// See [`MetricsStore::commit`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::commit`].
    pub fn commit(&self, seq: u64) -> Result<FlushOutcome, MetricsError> {
        self.rt.block_on(self.stats.commit(seq))
    }

    /// See [`MetricsStore::resume`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::resume`].
    pub fn resume(&self) -> Result<Option<u64>, MetricsError> {
        self.rt.block_on(self.stats.resume())
    }

    /// See [`MetricsStore::applied`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::applied`].
    pub fn applied(&self, writer: &str) -> Result<Option<u64>, MetricsError> {
        self.rt.block_on(self.stats.applied(writer))
    }
}
