//! The runner with a user-written sink: exact totals under a full channel and a slow sink,
//! retries of the same flush, progress while running, and a stop deadline that hands back
//! what was not acknowledged.

#![cfg(feature = "sink")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use accrue::Aggregator;
use accrue::sink::{Flush, Runner, Sink, WriteError, Written};
use parking_lot::Mutex;

/// Adds every flush into a shared map, slowly, failing the first `fail` attempts.
#[derive(Clone, Default)]
struct Totals {
    sums: Arc<Mutex<HashMap<u64, u64>>>,
    attempts: Arc<Mutex<Vec<u64>>>,
    fail: Arc<AtomicU32>,
    delay: Duration,
}

impl Sink<u64, u64> for Totals {
    async fn write(&mut self, flush: &Flush<u64, u64>) -> Result<Written, WriteError> {
        self.attempts.lock().push(flush.id());
        tokio::time::sleep(self.delay).await;
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(WriteError::new("the destination is busy"));
        }
        let mut sums = self.sums.lock();
        for (k, v) in flush.iter() {
            *sums.entry(*k).or_default() += v;
        }
        Ok(Written::all(flush.len()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_behind_a_full_channel_gets_exact_totals() {
    let sink = Totals {
        delay: Duration::from_millis(5),
        fail: Arc::new(AtomicU32::new(3)),
        ..Totals::default()
    };
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .flush_interval(Duration::from_millis(1))
        .channel_capacity(1)
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let task = Runner::new(sink.clone()).spawn_with_aggregator(&agg, rx);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let agg = agg.clone();
            std::thread::spawn(move || {
                for i in 0..50_000u64 {
                    agg.add((i * 7 + t) % 100, 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while task.progress().writes == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.progress()
    })
    .await
    .expect("progress is reported while running");
    assert!(seen.last_write.is_some());
    task.stop();
    let report = task.join().await;
    assert!(report.is_complete(), "{report:?}");
    let sums = sink.sums.lock();
    assert_eq!(sums.len(), 100);
    assert!(sums.values().all(|n| *n == 2_000), "{sums:?}");
    assert_eq!(sums.values().sum::<u64>(), 200_000);
    let attempts = sink.attempts.lock();
    assert_eq!(
        attempts[..4],
        [1, 1, 1, 1],
        "a failed write is retried with the same flush"
    );
    assert_eq!(report.writes, *attempts.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_deadline_hands_back_what_was_not_acknowledged() {
    let sink = Totals {
        fail: Arc::new(AtomicU32::new(u32::MAX)),
        ..Totals::default()
    };
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .flush_interval(Duration::from_millis(2))
        .channel_capacity(2)
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let task = Runner::new(sink.clone())
        .stop_timeout(Duration::from_millis(200))
        .spawn_with_aggregator(&agg, rx);
    let mut total = 0;
    for round in 0..100u64 {
        for k in 0..50u64 {
            agg.add(k, round + k).unwrap();
            total += round + k;
        }
        if round % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    task.stop();
    let report = tokio::time::timeout(Duration::from_secs(10), task.join())
        .await
        .expect("the stop deadline holds");
    assert!(!report.is_complete());
    assert_eq!((report.writes, report.items), (0, 0));
    let handed_back: u64 = report
        .unsent
        .into_iter()
        .flat_map(|b| b.into_vec())
        .map(|(_, v)| v)
        .sum();
    assert_eq!(handed_back, total, "every value is in the report");
    assert!(sink.sums.lock().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_stop_the_task_ends_when_the_aggregator_shuts_down() {
    let sink = Totals::default();
    let (agg, rx) = Aggregator::<u64, u64>::builder().build().unwrap();
    let task = Runner::new(sink.clone()).spawn(rx);
    agg.add(1, 10).unwrap();
    agg.add(1, 5).unwrap();
    agg.shutdown().unwrap();
    let report = task.join().await;
    assert!(report.is_complete());
    assert_eq!((report.writes, report.items), (1, 1));
    assert_eq!(sink.sums.lock()[&1], 15);
}

/// Records, per write, the flush passes its batches came from.
#[derive(Clone, Default)]
struct Passes {
    writes: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Sink<u64, u64> for Passes {
    async fn write(&mut self, flush: &Flush<u64, u64>) -> Result<Written, WriteError> {
        self.writes
            .lock()
            .push(flush.batches().iter().map(|b| b.seq()).collect());
        Ok(Written::all(flush.len()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_holds_exactly_one_flush_pass_however_fast_passes_follow() {
    // Passes follow each other within microseconds, faster than any time window could tell
    // apart: the runner knows from the aggregator when a pass has sent everything, so no pass
    // is split and none is mixed with the next.
    let sink = Passes::default();
    let (agg, rx) = Aggregator::<u64, u64>::builder()
        .shards(64)
        .channel_capacity(256)
        .build()
        .unwrap();
    let agg = Arc::new(agg);
    let task = Runner::new(sink.clone()).spawn_with_aggregator(&agg, rx);
    let flusher = {
        let agg = agg.clone();
        std::thread::spawn(move || {
            let mut sent = HashMap::new();
            for round in 0..40u64 {
                for k in 0..5_000 {
                    agg.add(round * 5_000 + k, 1).unwrap();
                }
                let report = agg.flush_once();
                assert_eq!(report.passes, 1);
                if report.batches_sent > 0 {
                    sent.insert(report.seq, report.batches_sent);
                }
            }
            sent
        })
    };
    let sent = tokio::task::spawn_blocking(move || flusher.join().unwrap())
        .await
        .unwrap();
    task.stop();
    let report = task.join().await;
    assert!(report.is_complete(), "{report:?}");
    let writes = sink.writes.lock().clone();
    let mut seen = HashMap::new();
    for passes in &writes {
        let first = passes[0];
        assert!(
            passes.iter().all(|&p| p == first),
            "one write, one pass: {passes:?}"
        );
        assert!(
            seen.insert(first, passes.len() as u64).is_none(),
            "pass {first} split"
        );
    }
    for (seq, batches) in sent {
        assert_eq!(
            seen.get(&seq),
            Some(&batches),
            "pass {seq}: every batch, in one write"
        );
    }
}
