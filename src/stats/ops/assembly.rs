//! [`Assembly`]: one write batch built outside the store's shared buffer, for a writer that
//! owns its batches (the metrics sink): calls merged per bucket row, the system rows added, the
//! batch numbered in the assembly's own writer sequence. The store's buffer, lane and flush task
//! are not involved, so such a writer's batches never interleave with the store's own.

use jiff::Timestamp;

use super::{Op, Stats, random_writer_id};
use crate::stats::buffer::Buffer;
use crate::stats::driver::{BatchId, WriteBatch};
use crate::stats::error::StatsError;
use crate::stats::value::Value;

/// Calls merged per bucket row until [`Stats::assemble`] turns them into one [`WriteBatch`].
pub(crate) struct Assembly {
    buffer: Buffer,
    writer: String,
    next_seq: u64,
}

impl Assembly {
    /// Merges every call per bucket row; batches are numbered from 1 under a random writer id.
    pub(crate) fn new() -> Self {
        Self {
            // The size trigger is never consulted: the owner decides when to assemble.
            buffer: Buffer::new(usize::MAX, true),
            writer: random_writer_id(),
            next_seq: 1,
        }
    }

    /// The writer id of this assembly's batches.
    pub(crate) fn writer(&self) -> &str {
        &self.writer
    }
}

impl Stats {
    /// Validates one `track` (`Op::Track`) or `assert` call and merges it into `assembly`.
    ///
    /// # Errors
    ///
    /// As [`track`](Self::track), and [`StatsError::Closed`] once the store is shut down:
    /// nothing was added.
    pub(crate) fn assemble_call(
        &self,
        assembly: &Assembly,
        op: Op,
        key: &str,
        at: Timestamp,
        values: &Value,
    ) -> Result<(), StatsError> {
        if *self.inner.gate.read() {
            return Err(StatsError::Closed);
        }
        if let Some(call) = self.prepare(op, key, at, values)? {
            assembly
                .buffer
                .add(&call.key, &call.buckets, call.fields, self.untracked);
        }
        Ok(())
    }

    /// Everything merged into `assembly` since the last batch, as the next batch of its writer
    /// (`None`: nothing was added). Write it with the driver, retrying the same batch: drivers
    /// apply a batch id once.
    ///
    /// # Errors
    ///
    /// [`StatsError::Time`] for a bucket outside the supported range; the calls are dropped.
    pub(crate) fn assemble(
        &self,
        assembly: &mut Assembly,
    ) -> Result<Option<WriteBatch>, StatsError> {
        let items = assembly.buffer.drain();
        if items.is_empty() {
            return Ok(None);
        }
        let rows = self.rows(items, true)?;
        let seq = assembly.next_seq;
        assembly.next_seq += 1;
        Ok(Some(WriteBatch {
            id: BatchId {
                writer: assembly.writer.clone(),
                seq,
            },
            rows,
        }))
    }
}
