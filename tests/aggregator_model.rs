//! Property test against a model: any sequence of adds, flushes (manual and caller-driven),
//! partial consumption with a tiny channel (so batches bounce back), and a final shutdown
//! delivers every added value exactly once, in add order per key.
//!
//! The merge appends, so it is order-sensitive: each add carries a unique, increasing id, and
//! the ids a consumer sees for a key (batches in arrival order) must be exactly the ids added for
//! that key, in order.

use std::collections::HashMap;

use accrue::{Aggregator, Batch, BatchReceiver};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Flush,
    FlushOnce,
    Consume(u8),
    TryAddCapped(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12).prop_map(Op::Add),
        2 => Just(Op::Flush),
        1 => Just(Op::FlushOnce),
        2 => (0u8..4).prop_map(Op::Consume),
        1 => (0u8..12).prop_map(Op::TryAddCapped),
    ]
}

type Ids = Vec<u32>;

fn append(acc: &mut Ids, mut newer: Ids) {
    acc.append(&mut newer);
}

fn receive(rx: &BatchReceiver<u8, Ids>, got: &mut HashMap<u8, Ids>, max: usize) {
    apply(got, rx.try_iter().take(max));
}

/// Applies batches in arrival order.
fn apply(got: &mut HashMap<u8, Ids>, batches: impl Iterator<Item = Batch<u8, Ids>>) {
    for batch in batches {
        for (k, mut ids) in batch {
            got.entry(k).or_default().append(&mut ids);
        }
    }
}

fn is_prefix(a: &[u32], b: &[u32]) -> bool {
    a.len() <= b.len() && a == &b[..a.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_interleaving_delivers_every_value_once_in_order(
        shard_bits in 0u32..4,
        capacity in 1usize..4,
        max_keys in 1usize..10,
        ops in prop::collection::vec(op(), 0..120),
    ) {
        let (agg, rx) = Aggregator::<u8, Ids>::builder()
            .shards(1 << shard_bits)
            .channel_capacity(capacity)
            .max_keys(max_keys)
            .merge(append as fn(&mut Ids, Ids))
            .build()
            .unwrap();
        let mut model: HashMap<u8, Ids> = HashMap::new();
        let mut got: HashMap<u8, Ids> = HashMap::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Add(k) => {
                    agg.add(k, vec![next_id]).unwrap();
                    model.entry(k).or_default().push(next_id);
                    next_id += 1;
                }
                Op::TryAddCapped(k) => {
                    let was_pending = agg.get(&k).is_some();
                    let at_capacity = agg.len() >= max_keys;
                    match agg.try_add(k, vec![next_id]) {
                        Ok(()) => {
                            prop_assert!(was_pending || !at_capacity);
                            model.entry(k).or_default().push(next_id);
                        }
                        Err(e) => {
                            prop_assert!(e.is_at_capacity());
                            prop_assert!(!was_pending && at_capacity);
                            prop_assert_eq!(e.into_inner(), (k, vec![next_id]));
                        }
                    }
                    next_id += 1;
                }
                Op::Flush => { agg.flush(); }
                Op::FlushOnce => {
                    let r = agg.flush_once();
                    prop_assert!(!r.coalesced, "single-threaded: nothing to coalesce with");
                }
                Op::Consume(n) => receive(&rx, &mut got, n as usize),
            }
            // What a consumer has seen is always a prefix of what was added, per key.
            for (k, ids) in &got {
                prop_assert!(is_prefix(ids, &model[k]), "key {}: {:?} vs {:?}", k, ids, model[k]);
            }
        }
        // Shut down with a consumer running: it applies batches in arrival order until the
        // channel closes.
        let consumer = std::thread::spawn(move || {
            let mut got = got;
            apply(&mut got, rx.iter()); // blocks until the channel closes
            got
        });
        agg.shutdown().unwrap();
        let got = consumer.join().unwrap();
        prop_assert_eq!(got, model);
        prop_assert!(agg.add(0, vec![next_id]).unwrap_err().is_closed());
    }
}

/// What the local-handle property does, one step at a time.
#[derive(Debug, Clone)]
enum HandleOp {
    /// Add to a key; its source (a handle, or `Aggregator::add` directly) is fixed per key, so
    /// per-key order is well defined.
    Add(u8),
    Spill(u8),
    /// Drop a handle (it spills) and make a fresh one in its place.
    Replace(u8),
    /// A read, which drains every handle.
    Get(u8),
    Flush,
    FlushOnce,
    Consume(u8),
}

fn handle_op() -> impl Strategy<Value = HandleOp> {
    prop_oneof![
        8 => (0u8..12).prop_map(HandleOp::Add),
        1 => (0u8..3).prop_map(HandleOp::Spill),
        1 => (0u8..3).prop_map(HandleOp::Replace),
        1 => (0u8..12).prop_map(HandleOp::Get),
        2 => Just(HandleOp::Flush),
        1 => Just(HandleOp::FlushOnce),
        2 => (0u8..4).prop_map(HandleOp::Consume),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn local_handles_deliver_every_value_once_in_order(
        shard_bits in 0u32..4,
        capacity in 1usize..4,
        local_capacity in 1usize..5,
        handles in 1usize..4,
        ops in prop::collection::vec(handle_op(), 0..150),
    ) {
        let (agg, rx) = Aggregator::<u8, Ids>::builder()
            .shards(1 << shard_bits)
            .channel_capacity(capacity)
            .local_capacity(local_capacity)
            .merge(append as fn(&mut Ids, Ids))
            .build()
            .unwrap();
        let mut locals: Vec<_> = (0..handles).map(|_| agg.local()).collect();
        // Key k goes through handle k % (handles + 1); the last "handle" is the direct path.
        let source = |k: u8| k as usize % (handles + 1);
        let mut model: HashMap<u8, Ids> = HashMap::new();
        let mut got: HashMap<u8, Ids> = HashMap::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                HandleOp::Add(k) => {
                    match locals.get(source(k)) {
                        Some(local) => local.add(k, vec![next_id]).unwrap(),
                        None => agg.add(k, vec![next_id]).unwrap(),
                    }
                    model.entry(k).or_default().push(next_id);
                    next_id += 1;
                }
                HandleOp::Spill(h) => {
                    if let Some(local) = locals.get(h as usize) {
                        local.spill();
                        prop_assert!(local.is_empty());
                    }
                }
                HandleOp::Replace(h) => {
                    if (h as usize) < locals.len() {
                        locals[h as usize] = agg.local();
                    }
                }
                HandleOp::Get(k) => {
                    // Pending = everything added minus what was already sent (in the channel
                    // or consumed), so the pending ids are a suffix of the model's.
                    if let Some(pending) = agg.get(&k) {
                        let all = &model[&k];
                        prop_assert!(all.ends_with(&pending), "key {}: {:?} vs {:?}", k, pending, all);
                    }
                    prop_assert!(locals.iter().all(|l| l.is_empty()), "reads drain handles");
                }
                HandleOp::Flush => { agg.flush(); }
                HandleOp::FlushOnce => { agg.flush_once(); }
                HandleOp::Consume(n) => receive(&rx, &mut got, n as usize),
            }
            prop_assert!(locals.iter().all(|l| l.len() <= local_capacity));
            for (k, ids) in &got {
                prop_assert!(is_prefix(ids, &model[k]), "key {}: {:?} vs {:?}", k, ids, model[k]);
            }
        }
        let consumer = std::thread::spawn(move || {
            let mut got = got;
            apply(&mut got, rx.iter()); // blocks until the channel closes
            got
        });
        // Shut down with the handles still alive: their tables are delivered too.
        agg.shutdown().unwrap();
        let got = consumer.join().unwrap();
        prop_assert_eq!(got, model);
        for local in &locals {
            prop_assert!(local.add(0, vec![next_id]).unwrap_err().is_closed());
        }
    }
}
