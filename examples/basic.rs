//! The basics: sum values per key from several threads, let the flusher thread hand batches to
//! a consumer, shut down, and check that the consumer saw every add exactly once.
//!
//! `cargo run --example basic`

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use accrue::Aggregator;

fn main() {
    let (agg, rx) = Aggregator::<String, u64>::builder()
        .flush_interval(Duration::from_millis(50))
        .spawn()
        .expect("valid configuration");

    // The consumer: batches arrive every 50 ms until shutdown closes the channel.
    let consumer = thread::spawn(move || {
        let mut totals: HashMap<String, u64> = HashMap::new();
        for batch in rx.iter() {
            println!(
                "flush #{} from shard {}: {} keys",
                batch.seq(),
                batch.shard(),
                batch.len()
            );
            for (key, count) in batch {
                *totals.entry(key).or_default() += count;
            }
        }
        totals
    });

    thread::scope(|s| {
        for t in 0..4 {
            let agg = &agg;
            s.spawn(move || {
                for i in 0..10_000u64 {
                    let route = ["/", "/login", "/api/items"][(i % 3) as usize];
                    agg.add_ref(route, 1).unwrap();
                    if i % 2_500 == 0 {
                        thread::sleep(Duration::from_millis(20 + t));
                    }
                }
            });
        }
    });

    agg.shutdown().expect("the consumer is alive");
    let totals = consumer.join().unwrap();
    println!("{totals:?}");
    assert_eq!(totals.values().sum::<u64>(), 40_000);
    assert_eq!(totals["/"], 4 * 3_334);
    assert_eq!(totals["/login"], 4 * 3_333);
    assert_eq!(totals["/api/items"], 4 * 3_333);
}
