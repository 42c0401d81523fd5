//! Backpressure: a consumer that is far slower than the producers. The channel holds 2 batches;
//! every flush that finds it full leaves the data in the aggregator (merged per key, so memory
//! follows the number of keys, not the number of adds) and the next flush retries. Nothing is
//! dropped, nothing is delivered twice. `try_add` with `max_keys` bounds memory for new keys.
//!
//! `cargo run --example backpressure`

use std::thread;
use std::time::Duration;

use accrue::Aggregator;

fn main() {
    let (agg, rx) = Aggregator::<u32, u64>::builder()
        .shards(64)
        .channel_capacity(2)
        .flush_interval(Duration::from_millis(1))
        .max_keys(5_000)
        .spawn()
        .expect("valid configuration");

    let consumer = thread::spawn(move || {
        let mut total = 0u64;
        for batch in rx.iter() {
            thread::sleep(Duration::from_millis(2)); // a slow database write
            total += batch.into_iter().map(|(_, v)| v).sum::<u64>();
        }
        total
    });

    let mut accepted = 0u64;
    let mut refused = 0u64;
    for i in 0..200_000u32 {
        match agg.try_add(i % 10_000, 1) {
            Ok(()) => accepted += 1,
            Err(e) if e.is_at_capacity() => refused += 1, // the caller decides: retry, shed, log
            Err(e) => panic!("{e}"),
        }
    }
    let c = agg.counters();
    println!(
        "accepted {accepted}, refused at capacity {refused}; flushes {}, deferred by a full channel {}, re-inserted items {}, pending keys {}",
        c.flushes, c.deferred_flushes, c.items_reinserted, c.pending_keys
    );
    assert!(c.pending_keys <= 5_000, "max_keys bounds pending keys");

    agg.shutdown().expect("the consumer is alive");
    let delivered = consumer.join().unwrap();
    println!("delivered {delivered}");
    assert_eq!(
        delivered, accepted,
        "every accepted add is delivered exactly once"
    );
}
