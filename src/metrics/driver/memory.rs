//! [`MemoryDriver`]: rows in a mutex-protected map (the reference driver, and for tests).

use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;

use super::{Driver, DriverFuture, FieldOp, WriteBatch};
use crate::metrics::error::DriverError;
use crate::metrics::keys::{IdentifierMode, Identity, RowId};
use crate::metrics::value::{Value, Values};

/// An in-process driver: one map per row, keyed by the identity of its mode. Applies each
/// batch under one lock (atomic), records the highest batch seq per writer, and returns copies
/// on read. Data lives as long as the driver. An increment whose sum would leave the range of
/// `f64` leaves the stored value as it was.
///
/// # Examples
///
/// ```
/// use accrue::metrics::{IdentifierMode, MemoryDriver};
/// let driver = MemoryDriver::new(IdentifierMode::Full);
/// assert_eq!(accrue::metrics::Driver::description(&driver), "MemoryDriver(J)");
/// ```
pub struct MemoryDriver {
    mode: IdentifierMode,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rows: HashMap<Identity, Values>,
    applied: HashMap<String, u64>,
    batches: u64,
}

impl MemoryDriver {
    /// An empty store laying identities out in `mode`.
    pub fn new(mode: IdentifierMode) -> Self {
        Self {
            mode,
            state: Mutex::new(State::default()),
        }
    }

    /// Number of batches applied (not counting skipped duplicates).
    pub fn batches_applied(&self) -> u64 {
        self.state.lock().batches
    }

    /// Number of stored rows.
    pub fn row_count(&self) -> usize {
        self.state.lock().rows.len()
    }

    fn apply(&self, batch: &WriteBatch) {
        let mut st = self.state.lock();
        let last = st.applied.get(&batch.id.writer).copied().unwrap_or(0);
        if batch.id.seq <= last {
            return;
        }
        for update in &batch.rows {
            let data = st
                .rows
                .entry(update.row.identity(self.mode, None))
                .or_default();
            for (name, op) in &update.fields {
                match op {
                    FieldOp::Inc(delta) => {
                        let base = data.get(name).and_then(Value::as_number);
                        let sum = base.map_or(*delta, |b| b + *delta);
                        // Beyond the range of f64 (no stored number can hold it): keep.
                        if sum.as_f64().is_finite() {
                            data.insert(name.clone(), sum.into());
                        }
                    }
                    FieldOp::Set(v) => {
                        data.insert(name.clone(), v.clone());
                    }
                }
            }
        }
        st.applied.insert(batch.id.writer.clone(), batch.id.seq);
        st.batches += 1;
    }
}

impl Driver for MemoryDriver {
    fn description(&self) -> String {
        format!("MemoryDriver({})", self.mode.letter())
    }

    fn mode(&self) -> IdentifierMode {
        self.mode
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.apply(batch);
            Ok::<(), DriverError>(())
        })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        Box::pin(async move {
            let st = self.state.lock();
            Ok(rows
                .iter()
                .map(|r| {
                    st.rows
                        .get(&r.identity(self.mode, None))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect())
        })
    }

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        Box::pin(async move { Ok(self.state.lock().applied.get(writer).copied()) })
    }
}

impl fmt::Debug for MemoryDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDriver")
            .field("mode", &self.mode)
            .field("rows", &self.row_count())
            .finish()
    }
}
