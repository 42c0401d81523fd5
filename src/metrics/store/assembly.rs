//! [`Assembly`]: the rows of one write batch, built outside the store's shared buffer for a
//! writer that owns its batches (the metrics sink, the collector's metrics pipeline): the calls
//! of one flush fanned out to every granularity's bucket row and combined per row (a plain
//! table, emptied by each batch: no aggregation across flushes), the system rows added, the
//! batch numbered in the assembly's own writer sequence. The store's buffer, lane and flush
//! task are not involved, so such a writer's batches never interleave with the store's own.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::{MetricsStore, Op, first_seq, random_writer_id};
use crate::metrics::buffer::{Fields, Pending, PendingKey, merge};
use crate::metrics::driver::{BatchId, WriteBatch};
use crate::metrics::error::MetricsError;
use crate::metrics::value::Value;

/// Calls combined per bucket row until [`MetricsStore::assemble`] turns them into one
/// [`WriteBatch`].
pub(crate) struct Assembly {
    rows: HashMap<PendingKey, Pending, ahash::RandomState>,
    /// Calls added so far: the first call of a row orders it in the batch.
    calls: u64,
    writer: String,
    next_seq: u64,
}

impl std::fmt::Debug for Assembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembly")
            .field("writer", &self.writer)
            .field("next_seq", &self.next_seq)
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl Assembly {
    /// An empty assembly; batches are numbered under a random writer id.
    pub(crate) fn new() -> Self {
        Self {
            rows: HashMap::default(),
            calls: 0,
            writer: random_writer_id(),
            next_seq: first_seq(),
        }
    }

    fn add(
        &mut self,
        key: &Arc<str>,
        buckets: &[(crate::time::Granularity, i64)],
        fields: &Arc<[(String, crate::metrics::driver::FieldOp)]>,
        untracked: bool,
    ) {
        self.calls += 1;
        for &(granularity, at) in buckets {
            let pending = Pending {
                first: self.calls,
                fields: Fields::Shared(fields.clone()),
                tracked: u64::from(!untracked),
                untracked: u64::from(untracked),
            };
            let row = PendingKey {
                key: key.clone(),
                granularity,
                at,
                op: 0,
            };
            match self.rows.get_mut(&row) {
                Some(acc) => merge(acc, pending),
                None => {
                    self.rows.insert(row, pending);
                }
            }
        }
    }
}

impl MetricsStore {
    /// Validates one `track` (`Op::Track`) or `assert` call and merges it into `assembly`.
    ///
    /// # Errors
    ///
    /// As [`track`](Self::track), and [`MetricsError::Closed`] once the store is shut down:
    /// nothing was added.
    pub(crate) fn assemble_call(
        &self,
        assembly: &mut Assembly,
        op: Op,
        key: &str,
        at: Timestamp,
        values: &Value,
    ) -> Result<(), MetricsError> {
        if *self.inner.gate.read() {
            return Err(MetricsError::Closed);
        }
        if let Some(call) = self.prepare(op, key, at, values)? {
            assembly.add(&call.key, &call.buckets, &call.fields, self.untracked);
        }
        Ok(())
    }

    /// Everything merged into `assembly` since the last batch, as the next batch of its writer
    /// (`None`: nothing was added). Write it with the driver, retrying the same batch: drivers
    /// apply a batch id once.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Time`] for a bucket outside the supported range; the calls are dropped.
    pub(crate) fn assemble(
        &self,
        assembly: &mut Assembly,
    ) -> Result<Option<WriteBatch>, MetricsError> {
        if assembly.rows.is_empty() {
            return Ok(None);
        }
        let mut items: Vec<(PendingKey, Pending)> = assembly.rows.drain().collect();
        items.sort_unstable_by_key(|(_, p)| p.first);
        assembly.calls = 0;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::metrics::driver::{Driver, FieldOp, MemoryDriver};
    use crate::metrics::keys::{IdentifierMode, SYSTEM_KEY, UNTRACKED_KEY};
    use crate::metrics::value::Number;
    use crate::time::{Blanks, Granularity, Unit};

    #[tokio::test]
    async fn a_flush_becomes_one_batch_of_combined_rows_numbered_in_its_own_sequence() {
        let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
        let stats = MetricsStore::builder(driver.clone())
            .time_zone("UTC")
            .granularities(["1h", "1d"])
            .build()
            .unwrap();
        let at: Timestamp = "2025-03-01T12:34:00Z".parse().unwrap();
        let later: Timestamp = "2025-03-01T13:10:00Z".parse().unwrap();
        let mut assembly = Assembly::new();
        assert!(
            stats.assemble(&mut assembly).unwrap().is_none(),
            "nothing added"
        );
        let call =
            |stats: &MetricsStore, assembly: &mut Assembly, op, key, at, v: serde_json::Value| {
                stats.assemble_call(assembly, op, key, at, &v.into())
            };
        call(&stats, &mut assembly, Op::Track, "a", at, json!({"n": 2})).unwrap();
        call(
            &stats,
            &mut assembly,
            Op::Track,
            "a",
            later,
            json!({"n": 3}),
        )
        .unwrap();
        call(
            &stats.untracked(),
            &mut assembly,
            Op::Track,
            "b",
            at,
            json!({"n": 1}),
        )
        .unwrap();
        call(&stats, &mut assembly, Op::Assert, "g", at, json!({"v": 7})).unwrap();
        assert!(matches!(
            call(&stats, &mut assembly, Op::Track, "a", at, json!({"n": "x"})),
            Err(MetricsError::InvalidValue(_))
        ));

        let batch = stats.assemble(&mut assembly).unwrap().expect("a batch");
        let day = batch
            .rows
            .iter()
            .find(|r| r.row.key == "a" && r.row.granularity.to_string() == "1d")
            .expect("a's day row");
        assert_eq!(
            day.fields,
            vec![("n".to_owned(), FieldOp::Inc(Number::Int(5)))],
            "both hours combined in the day's row"
        );
        let system_rows = batch
            .rows
            .iter()
            .filter(|r| r.row.key == SYSTEM_KEY)
            .count();
        assert_eq!(system_rows, 3, "12h, 13h and the day");
        driver.write(&batch).await.unwrap();
        let system = stats
            .values(
                SYSTEM_KEY,
                at,
                at,
                Granularity::one(Unit::Day),
                Blanks::Keep,
            )
            .await
            .unwrap();
        assert_eq!(
            crate::metrics::value::Value::Map(system.values[0].clone()).to_json(),
            json!({"count": 4, "keys": {"a": 2, "g": 1, UNTRACKED_KEY: 1}})
        );

        call(&stats, &mut assembly, Op::Track, "a", at, json!({"n": 1})).unwrap();
        let next = stats.assemble(&mut assembly).unwrap().expect("a batch");
        assert_eq!(
            (next.id.seq, next.id.writer == batch.id.writer),
            (batch.id.seq + 1, true)
        );
        assert_eq!(
            next.rows.len(),
            4,
            "emptied by the last batch: a and system, 1h and 1d"
        );

        stats.shutdown().await.unwrap();
        assert!(matches!(
            call(&stats, &mut assembly, Op::Track, "a", at, json!({"n": 1})),
            Err(MetricsError::Closed)
        ));
    }
}
