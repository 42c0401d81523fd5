//! Unit tests of the aggregator's behaviour (std build; loom models are in `loom_tests`).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{AddError, Aggregator, BatchReceiver, BuildError, Last, TryRecvError};

fn drain<K: std::hash::Hash + Eq, V: std::ops::AddAssign + Copy>(
    rx: &BatchReceiver<K, V>,
) -> HashMap<K, V> {
    let mut out = HashMap::new();
    for batch in rx.try_iter() {
        for (k, v) in batch {
            out.entry(k).and_modify(|acc| *acc += v).or_insert(v);
        }
    }
    out
}

#[test]
fn add_merges_and_get_len_snapshot_see_pending_values() {
    let (agg, _rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    assert!(agg.is_empty());
    agg.add(1, 10).unwrap();
    agg.add(1, 5).unwrap();
    agg.add(2, 1).unwrap();
    assert_eq!(agg.get(&1), Some(15));
    assert_eq!(agg.get(&3), None);
    assert_eq!(agg.len(), 2);
    let mut snap = agg.snapshot();
    snap.sort();
    assert_eq!(snap, vec![(1, 15), (2, 1)]);
}

#[test]
fn add_ref_looks_up_by_borrow_and_owns_on_insert() {
    let (agg, rx) = Aggregator::<String, u64>::builder().build().unwrap();
    agg.add_ref("a", 1).unwrap();
    agg.add_ref("a", 2).unwrap();
    agg.add("a".to_string(), 3).unwrap();
    assert_eq!(agg.get("a"), Some(6));
    agg.flush();
    assert_eq!(drain(&rx), HashMap::from([("a".to_string(), 6)]));
}

#[test]
fn flush_hands_every_key_over_once_with_sequence_and_shard() {
    let (agg, rx) = Aggregator::<u64, u64>::builder().shards(8).build().unwrap();
    for k in 0..1000u64 {
        agg.add(k, k).unwrap();
        agg.add(k, 1).unwrap();
    }
    let report = agg.flush();
    assert_eq!(report.seq, 1);
    assert_eq!(report.passes, 1);
    assert_eq!(report.items_sent, 1000);
    assert!(!report.deferred);
    let batches: Vec<_> = rx.try_iter().collect();
    assert_eq!(batches.len() as u64, report.batches_sent);
    let mut shards_seen = std::collections::HashSet::new();
    let mut total = HashMap::new();
    for b in batches {
        assert_eq!(b.seq(), 1);
        assert!(b.shard() < 8);
        assert!(
            shards_seen.insert(b.shard()),
            "one batch per shard per flush"
        );
        assert!(!b.is_empty());
        for (k, v) in b {
            assert!(total.insert(k, v).is_none(), "key {k} delivered twice");
        }
    }
    assert_eq!(total.len(), 1000);
    assert!(total.iter().all(|(k, v)| *v == k + 1));
    assert!(agg.is_empty());
    // An empty flush sends nothing but still counts as a pass.
    let again = agg.flush();
    assert_eq!((again.seq, again.batches_sent), (2, 0));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
fn full_channel_keeps_data_and_a_later_flush_delivers_it_exactly_once() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .shards(4)
        .channel_capacity(1)
        .build()
        .unwrap();
    for k in 0..64 {
        agg.add(k, 1).unwrap();
    }
    let first = agg.flush();
    assert_eq!(first.batches_sent, 1, "only one batch fits");
    assert!(first.deferred);
    assert!(!agg.is_empty(), "the rest stays pending");
    // Newer data for the pending keys merges with what stayed behind.
    for k in 0..64 {
        agg.add(k, 10).unwrap();
    }
    let mut total: HashMap<u32, u64> = HashMap::new();
    let mut rounds = 0;
    while total.values().sum::<u64>() < 64 * 11 {
        for b in rx.try_iter() {
            for (k, v) in b {
                *total.entry(k).or_default() += v;
            }
        }
        agg.flush();
        rounds += 1;
        assert!(rounds < 100, "flushes must make progress");
    }
    for b in rx.try_iter() {
        for (k, v) in b {
            *total.entry(k).or_default() += v;
        }
    }
    assert_eq!(total.len(), 64);
    assert!(total.values().all(|&v| v == 11), "{total:?}");
    let c = agg.counters();
    assert!(c.deferred_flushes >= 1);
    assert_eq!(c.pending_keys, 0);
}

#[test]
fn handed_back_batch_is_merged_before_newer_values() {
    // A racing `try_send` that fails hands the batch back; emulate with a receiver that is
    // gone, which re-inserts the batch the same way.
    let (agg, rx) = Aggregator::<&str, Vec<u32>>::builder()
        .shards(1)
        .merge(|acc: &mut Vec<u32>, mut newer: Vec<u32>| acc.append(&mut newer))
        .build()
        .unwrap();
    agg.add("k", vec![1]).unwrap();
    agg.add("k", vec![2]).unwrap();
    drop(rx);
    let report = agg.flush();
    assert_eq!(report.items_reinserted, 1);
    agg.add("k", vec![3]).unwrap();
    assert_eq!(agg.get("k"), Some(vec![1, 2, 3]));
    // With the receiver gone, shutdown hands everything back instead of dropping it.
    let err = agg.shutdown().unwrap_err();
    assert!(!err.timed_out());
    assert_eq!(err.item_count(), 1);
    let items: Vec<_> = err
        .into_batches()
        .into_iter()
        .flat_map(|b| b.into_vec())
        .collect();
    assert_eq!(items, vec![("k", vec![1, 2, 3])]);
}

#[test]
fn order_is_kept_when_the_channel_is_full_on_the_pass() {
    let (agg, rx) = Aggregator::<u8, Vec<u32>>::builder()
        .shards(1)
        .channel_capacity(1)
        .merge(|acc: &mut Vec<u32>, mut newer: Vec<u32>| acc.append(&mut newer))
        .build()
        .unwrap();
    agg.add(0, vec![0]).unwrap();
    agg.flush(); // fills the channel
    agg.add(1, vec![1]).unwrap();
    agg.add(1, vec![2]).unwrap();
    assert!(agg.flush().deferred);
    agg.add(1, vec![3]).unwrap();
    let mut got: Vec<(u8, Vec<u32>)> = Vec::new();
    got.extend(rx.try_recv().unwrap().into_vec());
    agg.flush();
    got.extend(rx.try_recv().unwrap().into_vec());
    assert_eq!(got, vec![(0, vec![0]), (1, vec![1, 2, 3])]);
}

#[test]
fn try_add_bounds_new_keys_exactly_and_existing_keys_always_merge() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .max_keys(100)
        .build()
        .unwrap();
    let agg = Arc::new(agg);
    let accepted: usize = (0..4)
        .map(|t| {
            let agg = agg.clone();
            thread::spawn(move || {
                (0..100u32)
                    .filter(|i| agg.try_add(t * 1000 + i, 1).is_ok())
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(accepted, 100, "exactly max_keys new keys across threads");
    assert_eq!(agg.len(), 100);
    assert!(agg.needs_flush());
    let (k, _) = agg.snapshot()[0];
    agg.try_add(k, 5).unwrap();
    assert_eq!(agg.get(&k), Some(6));
    match agg.try_add(999_999, 7) {
        Err(AddError::AtCapacity(k, v)) => assert_eq!((k, v), (999_999, 7)),
        other => panic!("expected AtCapacity, got {other:?}"),
    }
    // `add` is not bounded by max_keys.
    agg.add(999_999, 1).unwrap();
    // A flush frees the capacity.
    agg.flush();
    assert!(!agg.needs_flush());
    agg.try_add(12345, 1).unwrap();
    let delivered: u64 = drain(&rx).values().sum();
    assert_eq!(delivered, 100 + 5 + 1);
}

#[test]
fn shutdown_delivers_everything_closes_the_channel_and_is_idempotent() {
    let (agg, rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    for k in 0..500 {
        agg.add(k, 2).unwrap();
    }
    agg.shutdown().unwrap();
    assert!(agg.is_closed());
    agg.shutdown().unwrap();
    let total: u64 = rx.iter().flat_map(|b| b.into_vec()).map(|(_, v)| v).sum();
    assert_eq!(total, 1000);
    assert!(rx.recv().is_none());
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    match agg.add(7, 3) {
        Err(AddError::Closed(k, v)) => assert_eq!((k, v), (7, 3)),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(agg.add_ref(&8, 1).unwrap_err().is_closed());
    assert_eq!(agg.flush().batches_sent, 0);
}

#[test]
fn shutdown_blocks_until_a_slow_consumer_has_taken_everything() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .shards(16)
        .channel_capacity(1)
        .build()
        .unwrap();
    for k in 0..10_000 {
        agg.add(k, 1).unwrap();
    }
    let consumer = thread::spawn(move || {
        let mut total = 0u64;
        for b in rx.iter() {
            thread::sleep(Duration::from_millis(2));
            total += b.into_iter().map(|(_, v)| v).sum::<u64>();
        }
        total
    });
    agg.shutdown().unwrap();
    assert_eq!(consumer.join().unwrap(), 10_000);
}

#[test]
fn shutdown_timeout_hands_back_what_a_stalled_consumer_did_not_take() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .shards(4)
        .channel_capacity(1)
        .build()
        .unwrap();
    for k in 0..100 {
        agg.add(k, 1).unwrap();
    }
    let err = agg.shutdown_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(err.timed_out());
    let in_channel: u64 = rx
        .try_iter()
        .flat_map(|b| b.into_vec())
        .map(|(_, v)| v)
        .sum();
    let handed_back: u64 = err
        .into_batches()
        .into_iter()
        .flat_map(|b| b.into_vec())
        .map(|(_, v)| v)
        .sum();
    assert_eq!(in_channel + handed_back, 100);
    assert!(in_channel > 0 && handed_back > 0);
}

#[test]
fn drop_shuts_down_and_delivers() {
    let (agg, rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    agg.add(1, 1).unwrap();
    drop(agg);
    assert_eq!(drain(&rx), HashMap::from([(1, 1)]));
    assert!(rx.recv().is_none());
}

#[test]
fn spawned_flusher_flushes_on_its_interval() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .flush_interval(Duration::from_millis(10))
        .spawn()
        .unwrap();
    agg.add(1, 1).unwrap();
    let b = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("periodic flush");
    assert_eq!(b.into_vec(), vec![(1, 1)]);
    assert_eq!(
        agg.config().flush_interval(),
        Some(Duration::from_millis(10))
    );
    agg.shutdown().unwrap();
}

#[test]
fn size_trigger_flushes_before_the_interval() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .flush_interval(Duration::from_secs(3600))
        .flush_threshold(50)
        .spawn()
        .unwrap();
    for k in 0..49 {
        agg.add(k, 1).unwrap();
    }
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    agg.add(49, 1).unwrap();
    let mut got = 0;
    while got < 50 {
        let b = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("size-triggered flush");
        got += b.len();
    }
    assert_eq!(got, 50);
    agg.shutdown().unwrap();
}

#[test]
fn merges_last_min_max_closures() {
    let (agg, rx) = Aggregator::<&str, i64>::builder()
        .merge(Last)
        .build()
        .unwrap();
    agg.add("g", 1).unwrap();
    agg.add("g", -3).unwrap();
    agg.shutdown().unwrap();
    assert_eq!(rx.recv().unwrap().into_vec(), vec![("g", -3)]);
}

#[test]
fn counters_track_adds_merges_keys_and_flushes() {
    let (agg, rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    for i in 0..10 {
        agg.add(i % 3, 1).unwrap();
    }
    let c = agg.counters();
    assert_eq!(
        (c.adds, c.merges, c.new_keys, c.pending_keys),
        (10, 7, 3, 3)
    );
    agg.flush();
    let c = agg.counters();
    assert_eq!((c.flushes, c.items_sent, c.pending_keys), (1, 3, 0));
    assert_eq!(c.batches_sent, rx.len() as u64);
}

#[test]
fn invalid_settings_are_build_errors() {
    let b = || Aggregator::<u32, u64>::builder();
    assert!(matches!(
        b().shards(0).build().unwrap_err(),
        BuildError::ShardCount(0)
    ));
    assert!(matches!(
        b().shards(12).build().unwrap_err(),
        BuildError::ShardCount(12)
    ));
    assert!(matches!(
        b().channel_capacity(0).build().unwrap_err(),
        BuildError::ChannelCapacity
    ));
    assert!(matches!(
        b().flush_interval(Duration::ZERO).spawn().unwrap_err(),
        BuildError::FlushInterval
    ));
    assert!(matches!(
        b().flush_threshold(0).build().unwrap_err(),
        BuildError::FlushThreshold
    ));
    assert!(matches!(
        b().max_keys(0).build().unwrap_err(),
        BuildError::MaxKeys
    ));
    assert!(matches!(
        b().local_capacity(0).build().unwrap_err(),
        BuildError::LocalCapacity
    ));
    assert!(
        BuildError::ShardCount(12)
            .to_string()
            .contains("power of two")
    );
    let (agg, _rx) = b().shards(1).build().unwrap();
    agg.add(1, 1).unwrap();
    assert_eq!(agg.get(&1), Some(1));
}

#[test]
fn default_shards_are_a_power_of_two_of_at_least_64() {
    let (agg, rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    let shards = agg.config().shards();
    assert!(shards >= 64 && shards.is_power_of_two());
    assert_eq!(rx.capacity(), shards * 4);
}

#[test]
fn keys_spread_over_shards() {
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .shards(64)
        .build()
        .unwrap();
    for k in 0..64_000u64 {
        agg.add(k, 1).unwrap();
    }
    agg.flush();
    let sizes: Vec<usize> = rx.try_iter().map(|b| b.len()).collect();
    assert_eq!(sizes.len(), 64, "every shard receives keys");
    assert!(sizes.iter().all(|&n| n > 700 && n < 1300), "{sizes:?}");
}

mod absorb {
    use hashbrown::HashTable;

    use super::super::shard::{Age, Shard};

    type V = Vec<u32>;

    fn append(acc: &mut V, mut newer: V) {
        acc.append(&mut newer)
    }

    fn table(h: &ahash::RandomState, items: &[(u32, &[u32])]) -> HashTable<(u32, V)> {
        let mut t = HashTable::new();
        for (k, v) in items {
            t.insert_unique(h.hash_one(k), (*k, v.to_vec()), |(k, _)| h.hash_one(k));
        }
        t
    }

    fn sorted(shard: &Shard<u32, V>) -> Vec<(u32, V)> {
        let mut v: Vec<_> = shard.table.iter().cloned().collect();
        v.sort();
        v
    }

    #[test]
    fn older_batch_goes_before_newer_values_whichever_table_is_larger() {
        let h = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let merge = append as fn(&mut V, V);
        // Shard larger than the incoming batch: iterate the batch.
        let mut shard = Shard::new();
        shard.table = table(&h, &[(1, &[3]), (2, &[30]), (9, &[90])]);
        let new = shard.absorb(
            table(&h, &[(1, &[1, 2]), (5, &[5])]),
            Age::Older,
            &h,
            &merge,
        );
        assert_eq!(new, 1);
        assert_eq!(
            sorted(&shard),
            vec![
                (1, vec![1, 2, 3]),
                (2, vec![30]),
                (5, vec![5]),
                (9, vec![90])
            ]
        );
        // Incoming batch larger than the shard: the tables swap, order still holds.
        let mut shard = Shard::new();
        shard.table = table(&h, &[(1, &[3])]);
        let older = table(&h, &[(1, &[1, 2]), (2, &[20]), (3, &[30])]);
        assert_eq!(shard.absorb(older, Age::Older, &h, &merge), 2);
        assert_eq!(
            sorted(&shard),
            vec![(1, vec![1, 2, 3]), (2, vec![20]), (3, vec![30])]
        );
        // And newer incoming values go after, in both shapes.
        let mut shard = Shard::new();
        shard.table = table(&h, &[(1, &[1]), (2, &[2]), (3, &[3])]);
        shard.absorb(table(&h, &[(1, &[4])]), Age::Newer, &h, &merge);
        let mut small = Shard::new();
        small.table = table(&h, &[(1, &[1])]);
        small.absorb(table(&h, &[(1, &[4]), (7, &[7])]), Age::Newer, &h, &merge);
        assert_eq!(sorted(&shard)[0], (1, vec![1, 4]));
        assert_eq!(sorted(&small), vec![(1, vec![1, 4]), (7, vec![7])]);
    }
}

#[test]
fn loom_models_put_their_two_keys_in_different_shards() {
    // The loom models rely on keys 1 and 7 landing in different shards of a 2-shard aggregator
    // with the default SipHash hasher, so that a flush produces two batches and a capacity-1
    // channel really fills up.
    type H = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
    let (agg, rx) = super::Builder::<u8, u64>::new()
        .shards(2)
        .hasher(H::default())
        .build()
        .unwrap();
    agg.add(1, 1).unwrap();
    agg.add(7, 1).unwrap();
    agg.flush();
    assert_eq!(rx.len(), 2);
}

// ---- LocalHandle ----

#[test]
fn local_handle_merges_privately_and_reads_drain_it() {
    let (agg, rx) = Aggregator::<String, u64>::builder().build().unwrap();
    let local = agg.local();
    local.add_ref("a", 1).unwrap();
    local.add_ref("a", 2).unwrap();
    local.add("b".to_string(), 5).unwrap();
    agg.add_ref("a", 10).unwrap();
    assert_eq!(
        (local.len(), agg.len()),
        (2, 2),
        "len drains the handle first"
    );
    assert!(local.is_empty());
    local.add_ref("a", 100).unwrap();
    assert_eq!(agg.get("a"), Some(113));
    local.add_ref("c", 1).unwrap();
    let mut snap = agg.snapshot();
    snap.sort();
    assert_eq!(
        snap,
        vec![("a".into(), 113), ("b".into(), 5), ("c".into(), 1)]
    );
    let c = agg.counters();
    assert_eq!(
        (c.adds, c.new_keys, c.merges, c.pending_keys),
        (6, 3, 3, 3),
        "adds through the handle count once they reach the shards"
    );
    agg.flush();
    assert_eq!(
        drain(&rx),
        HashMap::from([("a".into(), 113), ("b".into(), 5), ("c".into(), 1)])
    );
}

#[test]
fn local_handle_spills_at_its_capacity_and_keeps_at_most_that_many_keys() {
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .shards(4)
        .local_capacity(8)
        .build()
        .unwrap();
    let local = agg.local();
    for round in 0..3u64 {
        for k in 0..100u64 {
            local.add(k, round + 1).unwrap();
            assert!(local.len() <= 8);
        }
    }
    assert_eq!(agg.config().local_capacity(), 8);
    // Spills happened on the add path: the shards hold the other keys already.
    let in_local = local.len();
    assert!(in_local > 0);
    let shard_keys: usize = agg.shared.shards.iter().map(|s| s.lock().table.len()).sum();
    assert_eq!(shard_keys, 100, "every key has spilled at least once");
    agg.flush();
    let got = drain(&rx);
    assert_eq!(got.len(), 100);
    assert!(got.values().all(|&v| v == 6), "{got:?}");
    assert!(local.is_empty(), "the flush drained the handle");
}

#[test]
fn flush_delivers_what_handles_hold_and_later_adds_wait_for_the_next() {
    let (agg, rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    let (a, b) = (agg.local(), agg.local());
    a.add(1, 1).unwrap();
    b.add(1, 2).unwrap();
    b.add(2, 3).unwrap();
    let report = agg.flush();
    assert_eq!(report.items_sent, 2);
    assert_eq!(drain(&rx), HashMap::from([(1, 3), (2, 3)]));
    a.add(1, 7).unwrap();
    assert!(rx.try_recv().is_err());
    agg.flush();
    assert_eq!(drain(&rx), HashMap::from([(1, 7)]));
}

#[test]
fn dropping_a_handle_spills_it_and_handles_work_from_many_threads() {
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .local_capacity(64)
        .build()
        .unwrap();
    thread::scope(|s| {
        for t in 0..4u64 {
            let agg = &agg;
            s.spawn(move || {
                let local = agg.local();
                for i in 0..10_000u64 {
                    local.add((t + i) % 500, 1).unwrap();
                }
            });
        }
    });
    assert_eq!(
        agg.shared.locals.lock().slots_len(),
        0,
        "dropped handles unregister"
    );
    agg.shutdown().unwrap();
    let got = drain(&rx);
    assert_eq!(got.len(), 500);
    assert_eq!(got.values().sum::<u64>(), 40_000);
    assert!(got.values().all(|&v| v == 80));
}

#[test]
fn handle_order_survives_bounced_batches_and_spills() {
    type Ids = Vec<u32>;
    fn append(acc: &mut Ids, mut newer: Ids) {
        acc.append(&mut newer);
    }
    let (agg, rx) = Aggregator::<u8, Ids>::builder()
        .shards(2)
        .channel_capacity(1)
        .local_capacity(2)
        .merge(append as fn(&mut Ids, Ids))
        .build()
        .unwrap();
    let local = agg.local();
    let mut expected: HashMap<u8, Ids> = HashMap::new();
    let mut got: HashMap<u8, Ids> = HashMap::new();
    for id in 0..200u32 {
        let k = (id * 7 % 5) as u8;
        local.add(k, vec![id]).unwrap();
        expected.entry(k).or_default().push(id);
        if id % 9 == 0 {
            agg.flush_once(); // the channel holds one batch: the rest waits
        }
        if id % 23 == 0 {
            for batch in rx.try_iter() {
                for (k, mut ids) in batch {
                    got.entry(k).or_default().append(&mut ids);
                }
            }
        }
    }
    assert!(
        agg.counters().deferred_flushes > 0,
        "the full channel deferred flushes"
    );
    drop(local);
    let consumer = thread::spawn(move || {
        while let Some(batch) = rx.recv() {
            for (k, mut ids) in batch {
                got.entry(k).or_default().append(&mut ids);
            }
        }
        got
    });
    agg.shutdown().unwrap();
    assert_eq!(consumer.join().unwrap(), expected);
}

#[test]
fn handles_refuse_after_shutdown_and_may_outlive_the_aggregator() {
    let (agg, rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    let local = agg.local();
    local.add(1, 1).unwrap();
    drop(agg); // shuts down: the handle's value is delivered
    assert_eq!(drain(&rx), HashMap::from([(1, 1)]));
    assert!(rx.recv().is_none());
    let err = local.add(2, 5).unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner(), (2, 5));
    assert!(local.is_empty());

    let (agg, _rx) = Aggregator::<u32, u64>::builder().build().unwrap();
    agg.shutdown().unwrap();
    let late = agg.local();
    assert_eq!(late.add(1, 1).unwrap_err().into_inner(), (1, 1));
}

#[test]
fn handle_spills_count_toward_the_size_trigger() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .flush_interval(Duration::from_secs(3600))
        .flush_threshold(100)
        .local_capacity(10)
        .spawn()
        .unwrap();
    let local = agg.local();
    for k in 0..200 {
        local.add(k, 1).unwrap();
    }
    // Spills moved at least 190 keys into the shards: the trigger fired long before the hour.
    let b = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("size-triggered flush");
    assert!(!b.is_empty());
    drop(local);
    agg.shutdown().unwrap();
    let total = b.len() as u64 + drain(&rx).values().sum::<u64>();
    assert_eq!(total, 200);
}
