//! Loom models of the aggregator's concurrency: every interleaving (up to
//! `LOOM_MAX_PREEMPTIONS`) of adds, flushes, re-insertion under a full channel and shutdown
//! must deliver exact totals, in order for order-sensitive merges.
//!
//! Keys 1 and 7 sit in different shards of a 2-shard aggregator with the SipHash hasher
//! (checked by a std unit test), so flushes produce two batches and a capacity-1 channel fills.
//!
//! Run with `bash .ci/loom` (`RUSTFLAGS="--cfg accrue_loom" cargo test --release --lib loom_`).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use loom::thread;

use super::{Aggregator, BatchReceiver, Builder};
use crate::sync::Arc;

/// A deterministic hasher: loom replays executions and needs the same shard choices each time.
type H = BuildHasherDefault<DefaultHasher>;
type Append = fn(&mut Vec<u8>, Vec<u8>);

fn append(acc: &mut Vec<u8>, mut newer: Vec<u8>) {
    acc.append(&mut newer);
}

fn summing(
    shards: usize,
    capacity: usize,
) -> (Arc<Aggregator<u8, u64, H>>, BatchReceiver<u8, u64>) {
    let (agg, rx) = Builder::<u8, u64>::new()
        .shards(shards)
        .channel_capacity(capacity)
        .hasher(H::default())
        .build()
        .unwrap();
    (Arc::new(agg), rx)
}

/// An order-keeping aggregator (merge appends) on `shards` shards and a `capacity`-slot channel;
/// set `local_capacity` on the builder where a model needs it.
fn appending(shards: usize, capacity: usize) -> Builder<u8, Vec<u8>, H, Append> {
    Builder::<u8, Vec<u8>>::new()
        .shards(shards)
        .channel_capacity(capacity)
        .hasher(H::default())
        .merge(append as Append)
}

fn totals(rx: &BatchReceiver<u8, u64>) -> HashMap<u8, u64> {
    let mut out = HashMap::new();
    for batch in rx.try_iter() {
        for (k, v) in batch {
            *out.entry(k).or_insert(0) += v;
        }
    }
    out
}

/// A consumer applying batches in arrival order until the channel closes.
fn in_arrival_order(rx: &BatchReceiver<u8, Vec<u8>>) -> HashMap<u8, Vec<u8>> {
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    while let Some(batch) = rx.recv() {
        for (k, mut v) in batch {
            got.entry(k).or_default().append(&mut v);
        }
    }
    got
}

#[test]
fn loom_add_vs_flush() {
    loom::model(|| {
        let (agg, rx) = summing(2, 8);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            a.add(1, 1).unwrap();
            a.add(7, 1).unwrap();
            a.add(1, 1).unwrap();
        });
        agg.flush_once();
        producer.join().unwrap();
        agg.shutdown().unwrap();
        assert_eq!(totals(&rx), HashMap::from([(1, 2), (7, 1)]));
    });
}

#[test]
fn loom_flush_vs_flush_never_skips_a_request() {
    loom::model(|| {
        let (agg, rx) = summing(2, 8);
        let a = agg.clone();
        let other = thread::spawn(move || {
            a.add(1, 1).unwrap();
            a.flush_once()
        });
        agg.add(7, 1).unwrap();
        let mine = agg.flush_once();
        let theirs = other.join().unwrap();
        // Whether each call ran a pass or was coalesced into the other's, every add made before
        // a flush_once call has been offered to the channel by the time both returned.
        assert!(mine.passes + theirs.passes >= 1);
        assert_eq!(agg.len(), 0);
        assert_eq!(totals(&rx), HashMap::from([(1, 1), (7, 1)]));
        agg.shutdown().unwrap();
        assert!(totals(&rx).is_empty(), "nothing delivered twice");
    });
}

#[test]
fn loom_reinsert_under_full_channel_keeps_totals_and_order() {
    loom::model(|| {
        let (agg, rx) = appending(2, 1).build().unwrap();
        let agg = Arc::new(agg);
        agg.add(1, vec![1]).unwrap();
        agg.add(7, vec![1]).unwrap();
        let a = agg.clone();
        let producer = thread::spawn(move || {
            a.add(1, vec![2]).unwrap();
            a.add(1, vec![3]).unwrap();
        });
        let f = agg.clone();
        let flusher = thread::spawn(move || {
            f.flush_once();
            f.flush_once();
        });
        let consumer = thread::spawn(move || in_arrival_order(&rx));
        producer.join().unwrap();
        flusher.join().unwrap();
        agg.shutdown().unwrap();
        let got = consumer.join().unwrap();
        assert_eq!(got, HashMap::from([(1, vec![1, 2, 3]), (7, vec![1])]));
    });
}

#[test]
fn loom_shutdown_vs_add_loses_nothing() {
    loom::model(|| {
        let (agg, rx) = summing(2, 4);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            let mut accepted = 0;
            let mut refused = 0;
            for k in [1u8, 7] {
                match a.add(k, 1) {
                    Ok(()) => accepted += 1,
                    Err(e) => {
                        assert!(e.is_closed());
                        assert_eq!(e.into_inner(), (k, 1));
                        refused += 1;
                    }
                }
            }
            (accepted, refused)
        });
        agg.shutdown().unwrap();
        let (accepted, refused) = producer.join().unwrap();
        assert_eq!(accepted + refused, 2);
        let delivered: u64 = totals(&rx).values().sum();
        assert_eq!(delivered, accepted, "every accepted add is delivered");
        assert!(rx.try_recv().is_err());
    });
}

/// A local handle's adds race a flush pass that drains it: every add is delivered once.
#[test]
fn loom_local_handle_add_vs_flush() {
    loom::model(|| {
        let (agg, rx) = summing(2, 8);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            let local = a.local();
            local.add(1, 1).unwrap();
            local.add(7, 1).unwrap();
            local.add(1, 1).unwrap();
            // Dropped here: whatever the flush did not take is spilled into the shards.
        });
        agg.flush_once();
        producer.join().unwrap();
        agg.shutdown().unwrap();
        assert_eq!(totals(&rx), HashMap::from([(1, 2), (7, 1)]));
    });
}

/// A handle with a one-key table spills on every new key, racing a flush into a capacity-1
/// channel (so batches bounce back) and a direct add: totals exact, the handle's order kept.
#[test]
fn loom_local_spills_under_full_channel_keep_totals_and_order() {
    loom::model(|| {
        let (agg, rx) = appending(2, 1).local_capacity(1).build().unwrap();
        let agg = Arc::new(agg);
        agg.add(7, vec![1]).unwrap();
        let a = agg.clone();
        let producer = thread::spawn(move || {
            let local = a.local();
            local.add(1, vec![1]).unwrap();
            local.add(7, vec![2]).unwrap(); // spills key 1
            local.add(1, vec![2]).unwrap(); // spills key 7
        });
        let f = agg.clone();
        let flusher = thread::spawn(move || {
            f.flush_once();
        });
        let consumer = thread::spawn(move || in_arrival_order(&rx));
        producer.join().unwrap();
        flusher.join().unwrap();
        agg.shutdown().unwrap();
        let got = consumer.join().unwrap();
        assert_eq!(got, HashMap::from([(1, vec![1, 2]), (7, vec![1, 2])]));
    });
}

/// Two handles spill at once through the aggregator's pool of spill scratch (one shard, so
/// every spill groups its keys), racing a flush: totals exact, each handle's order kept.
#[test]
fn loom_concurrent_grouped_spills_share_the_scratch_pool() {
    loom::model(|| {
        let (agg, rx) = appending(1, 4).local_capacity(1).build().unwrap();
        let agg = Arc::new(agg);
        let producers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|k| {
                let a = agg.clone();
                thread::spawn(move || {
                    let local = a.local();
                    local.add(k, vec![1]).unwrap();
                    local.add(k + 10, vec![1]).unwrap(); // spills k
                    local.add(k, vec![2]).unwrap(); // spills k + 10
                })
            })
            .collect();
        let f = agg.clone();
        let flusher = thread::spawn(move || {
            f.flush_once();
        });
        for p in producers {
            p.join().unwrap();
        }
        flusher.join().unwrap();
        agg.shutdown().unwrap();
        let got = in_arrival_order(&rx);
        assert_eq!(
            got,
            HashMap::from([
                (1, vec![1, 2]),
                (11, vec![1]),
                (2, vec![1, 2]),
                (12, vec![1])
            ])
        );
    });
}

/// Shutdown races a handle's adds and its drop: every accepted add is delivered, every refused
/// one comes back whole, and a handle made after shutdown refuses.
#[test]
fn loom_shutdown_vs_local_handle_loses_nothing() {
    loom::model(|| {
        let (agg, rx) = summing(2, 4);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            let local = a.local();
            let mut accepted = 0;
            for k in [1u8, 7] {
                match local.add(k, 1) {
                    Ok(()) => accepted += 1,
                    Err(e) => {
                        assert!(e.is_closed());
                        assert_eq!(e.into_inner(), (k, 1));
                    }
                }
            }
            drop(local);
            accepted
        });
        agg.shutdown().unwrap();
        let accepted = producer.join().unwrap();
        let delivered: u64 = totals(&rx).values().sum();
        assert_eq!(delivered, accepted, "every accepted add is delivered");
        assert!(agg.local().add(1, 1).unwrap_err().is_closed());
    });
}

/// A handle made after another was dropped reuses its table; the pair races a flush and then
/// shutdown: every accepted add is delivered once, a refused one comes back whole, and a table
/// recycled around shutdown refuses adds.
#[test]
fn loom_recycled_handle_vs_flush_and_shutdown_loses_nothing() {
    loom::model(|| {
        let (agg, rx) = summing(2, 4);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            let mut accepted = 0;
            for k in [1u8, 7] {
                let local = a.local(); // the second one takes the first one's table
                match local.add(k, 1) {
                    Ok(()) => accepted += 1,
                    Err(e) => assert_eq!(e.into_inner(), (k, 1)),
                }
            }
            accepted
        });
        agg.flush_once();
        agg.shutdown().unwrap();
        let accepted = producer.join().unwrap();
        let delivered: u64 = totals(&rx).values().sum();
        assert_eq!(delivered, accepted, "every accepted add is delivered");
        assert!(agg.local().add(1, 1).unwrap_err().is_closed());
    });
}

/// An async consumer parks on the bell while a producer adds and flushes: the batch sent just
/// as the consumer registers (before, between its two looks, or after) always wakes it. A lost
/// wake-up would leave `block_on` parked forever, which loom reports as a deadlock.
#[test]
fn loom_recv_async_is_woken_by_a_send_racing_its_park() {
    loom::model(|| {
        let (agg, rx) = summing(1, 1);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            a.add(1, 5).unwrap();
            a.flush_once();
        });
        let batch = loom::future::block_on(rx.recv_async()).expect("the flushed batch");
        assert_eq!(batch.into_vec(), vec![(1, 5)]);
        producer.join().unwrap();
    });
}

/// The end of the channel wakes a parked consumer too: it drains the final flush and then
/// sees the close, whichever way the shutdown interleaves with its park.
#[test]
fn loom_recv_async_sees_the_shutdown_racing_its_park() {
    loom::model(|| {
        let (agg, rx) = summing(1, 1);
        let a = agg.clone();
        let closer = thread::spawn(move || {
            a.add(7, 3).unwrap();
            a.shutdown().unwrap();
        });
        let total = loom::future::block_on(async {
            let mut total = 0;
            while let Some(batch) = rx.recv_async().await {
                total += batch.into_iter().map(|(_, v)| v).sum::<u64>();
            }
            total
        });
        assert_eq!(total, 3);
        closer.join().unwrap();
    });
}

/// The end of a flush pass wakes a consumer waiting for it, however the two interleave, and
/// once it is seen, everything the pass sent is in the channel.
#[test]
fn loom_pass_done_wakes_a_consumer_racing_its_park_and_publishes_the_pass() {
    loom::model(|| {
        let (agg, rx) = summing(2, 2);
        let a = agg.clone();
        let producer = thread::spawn(move || {
            a.add(1, 5).unwrap();
            a.add(2, 6).unwrap();
            a.flush_once();
        });
        loom::future::block_on(rx.pass_done(1));
        let total: u64 = rx
            .try_iter()
            .flat_map(|b| b.into_vec())
            .map(|(_, v)| v)
            .sum();
        assert_eq!(total, 11);
        producer.join().unwrap();
    });
}
