//! Graceful shutdown: producers race with `shutdown`. Every add either succeeds — and is then
//! delivered — or gets its key and value back in `AddError::Closed`. With the receiver gone,
//! `shutdown` hands back what it could not deliver instead of dropping it, and
//! `shutdown_timeout` does the same for a consumer that stopped reading.
//!
//! `cargo run --example graceful_shutdown`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use accrue::Aggregator;

fn main() {
    // 1. Shutdown racing with producers: accepted == delivered.
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .flush_interval(Duration::from_millis(5))
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let (agg, accepted, refused) = (agg.clone(), accepted.clone(), refused.clone());
            thread::spawn(move || {
                for i in 0.. {
                    match agg.add((t * 1_000_000 + i) % 997, 1) {
                        Ok(()) => accepted.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            assert!(e.is_closed());
                            let (_key, value) = e.into_inner(); // nothing is lost silently
                            refused.fetch_add(value, Ordering::Relaxed);
                            return;
                        }
                    };
                }
            })
        })
        .collect();
    let consumer = thread::spawn(move || {
        rx.iter()
            .flat_map(|b| b.into_iter().map(|(_, v)| v))
            .sum::<u64>()
    });
    thread::sleep(Duration::from_millis(50));
    agg.shutdown().expect("consumer alive");
    agg.shutdown().expect("idempotent");
    for p in producers {
        p.join().unwrap();
    }
    let delivered = consumer.join().unwrap();
    let accepted = accepted.load(Ordering::Relaxed);
    println!(
        "accepted {accepted}, delivered {delivered}, refused after shutdown {}",
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(accepted, delivered);

    // 2. The receiver is gone: shutdown hands the data back.
    let (agg, rx) = Aggregator::<&str, u64>::builder().build().unwrap();
    agg.add("orphan", 42).unwrap();
    drop(rx);
    let err = agg.shutdown().unwrap_err();
    println!("{err}");
    let items: Vec<_> = err
        .into_batches()
        .into_iter()
        .flat_map(|b| b.into_vec())
        .collect();
    assert_eq!(items, vec![("orphan", 42)]);

    // 3. A consumer that never reads: shutdown_timeout gives up after the deadline.
    let (agg, _rx) = Aggregator::<u32, u64>::builder()
        .shards(4)
        .channel_capacity(1)
        .build()
        .unwrap();
    for k in 0..100 {
        agg.add(k, 1).unwrap();
    }
    let err = agg.shutdown_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.timed_out());
    println!("stalled consumer: {err}");
    assert!(err.item_count() > 0);
}
