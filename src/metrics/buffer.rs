//! The write buffer: pending row updates merged in an [`Aggregator`], drained into one
//! [`WriteBatch`] per flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::aggregator::{Aggregator, BatchReceiver};
use crate::metrics::driver::FieldOp;
use crate::time::Granularity;

/// Aggregator key: one bucket of one metric; `op` is 0 when aggregating, else a unique call
/// number so that every call stays separate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PendingKey {
    pub(crate) key: Arc<str>,
    pub(crate) granularity: Granularity,
    pub(crate) at: i64,
    pub(crate) op: u64,
}

/// Fields of one call, shared between its granularities until a merge needs to change them.
#[derive(Debug, Clone)]
pub(crate) enum Fields {
    Shared(Arc<[(String, FieldOp)]>),
    Owned(Vec<(String, FieldOp)>),
}

impl Fields {
    pub(crate) fn into_vec(self) -> Vec<(String, FieldOp)> {
        match self {
            Fields::Shared(f) => f.to_vec(),
            Fields::Owned(v) => v,
        }
    }

    fn make_owned(&mut self) -> &mut Vec<(String, FieldOp)> {
        if let Fields::Shared(f) = self {
            *self = Fields::Owned(f.to_vec());
        }
        match self {
            Fields::Owned(v) => v,
            Fields::Shared(_) => unreachable!("just made owned"),
        }
    }
}

/// Aggregator value: what is pending for one bucket.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Insertion number of the first call that touched the bucket (flush order).
    pub(crate) first: u64,
    pub(crate) fields: Fields,
    /// Calls counted under the metric key / under `__untracked__`.
    pub(crate) tracked: u64,
    pub(crate) untracked: u64,
}

/// Runs under the aggregator's shard lock; `acc` is the older side.
pub(crate) fn merge(acc: &mut Pending, newer: Pending) {
    acc.tracked += newer.tracked;
    acc.untracked += newer.untracked;
    let fields = acc.fields.make_owned();
    for (name, op) in newer.fields.into_vec() {
        match fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => existing.merge(op),
            None => fields.push((name, op)),
        }
    }
}

type MergeFn = fn(&mut Pending, Pending);

pub(crate) struct Buffer {
    agg: Aggregator<PendingKey, Pending, ahash::RandomState, MergeFn>,
    rx: BatchReceiver<PendingKey, Pending>,
    /// Calls since the last drain (the size trigger counts calls, as upstream).
    ops: AtomicUsize,
    seq: AtomicU64,
    pub(crate) size: usize,
    pub(crate) aggregate: bool,
}

impl Buffer {
    pub(crate) fn new(size: usize, aggregate: bool) -> Self {
        let (agg, rx) = Aggregator::builder()
            .merge(merge as MergeFn)
            .build()
            .expect("the default aggregator configuration is valid");
        Self {
            agg,
            rx,
            ops: AtomicUsize::new(0),
            seq: AtomicU64::new(1),
            size,
            aggregate,
        }
    }

    /// Adds one call's bucket updates; returns `true` when the call reached the size trigger.
    pub(crate) fn add(
        &self,
        key: &Arc<str>,
        buckets: &[(Granularity, i64)],
        fields: Arc<[(String, FieldOp)]>,
        untracked: bool,
    ) -> bool {
        let call = self.seq.fetch_add(1, Ordering::Relaxed);
        for &(granularity, at) in buckets {
            let pending = Pending {
                first: call,
                fields: Fields::Shared(fields.clone()),
                tracked: u64::from(!untracked),
                untracked: u64::from(untracked),
            };
            let key = PendingKey {
                key: key.clone(),
                granularity,
                at,
                op: if self.aggregate { 0 } else { call },
            };
            // The aggregator is only closed by dropping the buffer, which cannot happen while
            // `self` is borrowed.
            let _ = self.agg.add(key, pending);
        }
        // Every `size`-th call since the last drain: a flush that failed before draining
        // (a kept batch the driver still refuses) leaves the count running, and the next
        // `size` calls try again, rather than never (`==`) or on every call (`>=`).
        (self.ops.fetch_add(1, Ordering::AcqRel) + 1).is_multiple_of(self.size)
    }

    /// Takes everything pending, in first-insertion order.
    pub(crate) fn drain(&self) -> Vec<(PendingKey, Pending)> {
        self.ops.store(0, Ordering::Release);
        let mut items = Vec::new();
        loop {
            let report = self.agg.flush();
            items.extend(self.rx.try_iter().flat_map(|b| b.into_iter()));
            if !report.deferred {
                break;
            }
        }
        items.sort_unstable_by_key(|(_, p)| p.first);
        items
    }

    /// Calls pending since the last drain.
    pub(crate) fn pending_ops(&self) -> usize {
        self.ops.load(Ordering::Acquire)
    }
}
