//! A stress tool: many threads, many keys, a tiny channel, a slow consumer; prints throughput
//! and verifies exact per-key totals.
//!
//! ```text
//! cargo run --release --example stress -- --threads 1000 --adds 1000 --keys 10000 \
//!     --capacity 1 --flush-ms 1 --consumer-delay-us 0 [--local]
//! ```
//!
//! `--local` makes each thread add through its own `LocalHandle` (`Aggregator::local`).

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use accrue::Aggregator;

struct Args {
    threads: u64,
    adds: u64,
    keys: u64,
    capacity: usize,
    flush_ms: u64,
    consumer_delay_us: u64,
    local: bool,
}

fn parse() -> Args {
    let mut a = Args {
        threads: 1_000,
        adds: 1_000,
        keys: 10_000,
        capacity: 1,
        flush_ms: 1,
        consumer_delay_us: 0,
        local: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--local" {
            a.local = true;
            continue;
        }
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--threads" => a.threads = value(),
            "--adds" => a.adds = value(),
            "--keys" => a.keys = value(),
            "--capacity" => a.capacity = value() as usize,
            "--flush-ms" => a.flush_ms = value(),
            "--consumer-delay-us" => a.consumer_delay_us = value(),
            "--help" | "-h" => {
                println!(
                    "flags: --threads N (1000) --adds N per thread (1000) --keys N (10000) \
                     --capacity N batches (1) --flush-ms N (1) --consumer-delay-us N per batch (0) \
                     --local (one LocalHandle per thread)"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; try --help"),
        }
    }
    a
}

fn main() {
    let a = parse();
    let start = Instant::now();
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .channel_capacity(a.capacity)
        .flush_interval(Duration::from_millis(a.flush_ms.max(1)))
        .spawn()
        .expect("valid configuration");
    let delay = Duration::from_micros(a.consumer_delay_us);
    let consumer = thread::spawn(move || {
        let mut totals: HashMap<u64, u64> = HashMap::new();
        for batch in rx.iter() {
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            for (k, v) in batch {
                *totals.entry(k).or_default() += v;
            }
        }
        totals
    });
    thread::scope(|s| {
        for t in 0..a.threads {
            let agg = &agg;
            let (adds, keys, local) = (a.adds, a.keys, a.local);
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, move || {
                    if local {
                        let local = agg.local();
                        for i in 0..adds {
                            local.add((t * adds + i) % keys, 1).unwrap();
                        }
                    } else {
                        for i in 0..adds {
                            agg.add((t * adds + i) % keys, 1).unwrap();
                        }
                    }
                })
                .expect("spawn");
        }
    });
    let added = start.elapsed();
    let c = agg.counters();
    agg.shutdown().expect("consumer alive");
    let totals = consumer.join().unwrap();
    let elapsed = start.elapsed();

    let total_adds = a.threads * a.adds;
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for t in 0..a.threads {
        for i in 0..a.adds {
            *expected.entry((t * a.adds + i) % a.keys).or_default() += 1;
        }
    }
    assert_eq!(totals, expected, "per-key totals must be exact");
    println!(
        "{total_adds} adds{} from {} threads over {} keys: adds done in {:.1} ms, delivered in {:.1} ms ({:.1} M adds/s); {} flushes, {} deferred (channel full), {} items re-inserted",
        if a.local { " (local handles)" } else { "" },
        a.threads,
        a.keys,
        added.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3,
        total_adds as f64 / elapsed.as_secs_f64() / 1e6,
        c.flushes,
        c.deferred_flushes,
        c.items_reinserted,
    );
}
