//! The Go library's stress test, made harder: 1,000,000 adds from 1,000 threads over 10,000 keys
//! into a capacity-1 channel, flushed every millisecond, read by a deliberately slow consumer.
//! The consumer's totals must equal the inputs exactly — per key, not just in sum. Run twice:
//! with direct adds, and with one `LocalHandle` per thread whose small table spills into the
//! shards while flushes drain it.

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use accrue::Aggregator;

const THREADS: u64 = 1_000;
const ADDS_PER_THREAD: u64 = 1_000;
const KEYS: u64 = 10_000;

fn key(thread: u64, i: u64) -> u64 {
    (thread * 7 + i * 13) % KEYS
}

#[test]
fn million_adds_thousand_threads_capacity_one_slow_consumer_exact_totals() {
    run(false);
}

#[test]
fn million_local_handle_adds_thousand_threads_spilling_exact_totals() {
    run(true);
}

fn run(local: bool) {
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .local_capacity(64)
        .channel_capacity(1)
        .flush_interval(Duration::from_millis(1))
        .spawn()
        .unwrap();

    let consumer = thread::spawn(move || {
        let mut totals: HashMap<u64, u64> = HashMap::new();
        let mut batches = 0u64;
        for batch in rx.iter() {
            batches += 1;
            if batches.is_multiple_of(8) {
                thread::sleep(Duration::from_micros(500)); // slow on purpose
            }
            for (k, v) in batch {
                *totals.entry(k).or_default() += v;
            }
        }
        (totals, batches)
    });

    thread::scope(|s| {
        for t in 0..THREADS {
            let agg = &agg;
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, move || {
                    if local {
                        let local = agg.local();
                        for i in 0..ADDS_PER_THREAD {
                            local.add(key(t, i), 1).unwrap();
                        }
                    } else {
                        for i in 0..ADDS_PER_THREAD {
                            agg.add(key(t, i), 1).unwrap();
                        }
                    }
                })
                .unwrap();
        }
    });

    let counters = agg.counters();
    agg.shutdown().unwrap();
    let (totals, batches) = consumer.join().unwrap();

    let mut expected: HashMap<u64, u64> = HashMap::new();
    for t in 0..THREADS {
        for i in 0..ADDS_PER_THREAD {
            *expected.entry(key(t, i)).or_default() += 1;
        }
    }
    assert_eq!(totals.values().sum::<u64>(), THREADS * ADDS_PER_THREAD);
    assert_eq!(totals, expected);
    assert_eq!(counters.adds, THREADS * ADDS_PER_THREAD);
    assert!(batches > 0);
    eprintln!(
        "stress (local handles: {local}): {batches} batches, {} flush passes, {} deferred by a full channel, {} items re-inserted",
        counters.flushes, counters.deferred_flushes, counters.items_reinserted
    );
}
