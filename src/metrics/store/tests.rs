//! Unit tests of the store: system rows, large flushes, writer numbering, the write buffer.

use super::*;
use crate::metrics::buffer::Fields;
use crate::metrics::driver::MemoryDriver;
use crate::metrics::keys::IdentifierMode;
use crate::metrics::packer::encode_segment;
use crate::time::Unit;
use serde_json::json;

fn store(codec: PathCodec) -> MetricsStore {
    MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
        .time_zone("UTC")
        .buffer_size(usize::MAX)
        .buffer_async(FlushTask::None)
        .path_codec(codec)
        .build()
        .unwrap()
}

/// What `rows` computed before its system rows had an index: a scan per merge.
fn scanning_rows(
    stats: &MetricsStore,
    items: Vec<(PendingKey, Pending)>,
    merge_system: bool,
) -> Vec<RowUpdate> {
    let field = |key: &str| match stats.inner.codec {
        PathCodec::V1 => format!("keys.{}", encode_segment(key)),
        PathCodec::Legacy => format!("keys.{key}"),
    };
    let mut rows = Vec::new();
    let mut system: Vec<RowUpdate> = Vec::new();
    let mut index: HashMap<(Granularity, i64), usize> = HashMap::new();
    for (pk, pending) in items {
        let at = Timestamp::from_second(pk.at).unwrap();
        let mut sys = vec![(
            "count".to_owned(),
            FieldOp::Inc(count(pending.tracked + pending.untracked)),
        )];
        if pending.tracked > 0 {
            sys.push((field(&pk.key), FieldOp::Inc(count(pending.tracked))));
        }
        if pending.untracked > 0 {
            sys.push((field(UNTRACKED_KEY), FieldOp::Inc(count(pending.untracked))));
        }
        let slot = merge_system
            .then(|| index.get(&(pk.granularity, pk.at)).copied())
            .flatten();
        match slot {
            Some(i) => {
                let fields = &mut system[i].fields;
                for (name, op) in sys {
                    match fields.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, existing)) => existing.merge(op),
                        None => fields.push((name, op)),
                    }
                }
            }
            None => {
                index.insert((pk.granularity, pk.at), system.len());
                system.push(RowUpdate {
                    row: RowId::new(SYSTEM_KEY, pk.granularity, at),
                    fields: sys,
                });
            }
        }
        let mut fields = pending.fields.into_vec();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        rows.push(RowUpdate {
            row: RowId::new(&*pk.key, pk.granularity, at),
            fields,
        });
    }
    for s in &mut system {
        s.fields.sort_by(|a, b| a.0.cmp(&b.0));
    }
    rows.extend(system);
    rows
}

/// Pseudo-random pending items: 40 keys (some needing encoding) over two granularities and
/// three bucket starts, tracked and untracked calls, unsorted fields of both kinds.
fn items(n: usize, seed: u64) -> Vec<(PendingKey, Pending)> {
    let grans: [Granularity; 2] = ["1m".parse().unwrap(), "1h".parse().unwrap()];
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let k = next(40);
            let key: Arc<str> = if k % 7 == 0 {
                Arc::from(format!("odd.key$%{k}"))
            } else {
                Arc::from(format!("key::{k}"))
            };
            let (tracked, untracked) = match next(3) {
                0 => (1 + next(3), 0),
                1 => (0, 1 + next(3)),
                _ => (1 + next(3), 1 + next(3)),
            };
            let fields = vec![
                ("z".to_owned(), FieldOp::Inc(Number::Int(1))),
                ("a.b".to_owned(), FieldOp::Set(Value::Int(2))),
            ];
            let pk = PendingKey {
                key,
                granularity: grans[next(2) as usize],
                at: 1_740_830_400 + 3600 * next(3) as i64,
                op: i as u64,
            };
            let pending = Pending {
                first: i as u64,
                fields: Fields::Owned(fields),
                tracked,
                untracked,
            };
            (pk, pending)
        })
        .collect()
}

#[test]
fn rows_equal_the_scanning_merge() {
    for codec in [PathCodec::V1, PathCodec::Legacy] {
        let stats = store(codec);
        for (n, seed) in [(1, 3), (5, 7), (60, 11), (2000, 13)] {
            for merge in [true, false] {
                let items = items(n, seed);
                assert_eq!(
                    stats.rows(items.clone(), merge).unwrap(),
                    scanning_rows(&stats, items, merge),
                    "{codec:?} n={n} merge={merge}"
                );
            }
        }
    }
}

#[test]
fn rows_without_system_tracking() {
    let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
        .buffer_async(FlushTask::None)
        .system_tracking(SystemTracking::Off)
        .build()
        .unwrap();
    let rows = stats.rows(items(50, 5), true).unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r.row.key != SYSTEM_KEY));
}

/// A metric named like the untracked marker, written both ways, is one field.
#[test]
fn untracked_marker_as_a_key_is_one_field() {
    let stats = store(PathCodec::V1);
    let mut items = items(1, 3);
    items[0].0.key = Arc::from(UNTRACKED_KEY);
    items[0].1.tracked = 2;
    items[0].1.untracked = 3;
    let rows = stats.rows(items, true).unwrap();
    let system = &rows[1];
    assert_eq!(
        system.fields,
        [
            ("count".to_owned(), FieldOp::Inc(Number::Int(5))),
            (
                "keys.__untracked__".to_owned(),
                FieldOp::Inc(Number::Int(5))
            ),
        ]
    );
}

/// A flush past `BLOCKING_ROWS_FROM` goes through the blocking pool (here from a
/// current-thread runtime) and writes the same totals.
#[tokio::test]
async fn large_flush_on_the_blocking_pool() {
    let stats = store(PathCodec::V1);
    let keys = BLOCKING_ROWS_FROM / stats.granularities().len() + 100;
    let at: Timestamp = "2025-03-01T12:34:00Z".parse().unwrap();
    for i in 0..keys {
        stats
            .track(&format!("k{i}"), at, json!({"count": 1}))
            .await
            .unwrap();
    }
    stats
        .untracked()
        .track("u", at, json!({"count": 2}))
        .await
        .unwrap();
    assert!(stats.pending() * stats.granularities().len() >= BLOCKING_ROWS_FROM);
    let outcome = stats.flush().await.unwrap();
    assert_eq!(outcome.batches, 1);
    assert_eq!(outcome.rows, (keys + 1 + 1) * 7);
    let system = stats
        .values(
            SYSTEM_KEY,
            at,
            at,
            Granularity::one(Unit::Day),
            Blanks::Keep,
        )
        .await
        .unwrap();
    let system = Value::Map(system.values[0].clone()).to_json();
    assert_eq!(system["count"], json!(keys + 1));
    assert_eq!(system["keys"].as_object().unwrap().len(), keys + 1);
    assert_eq!(system["keys"]["k0"], json!(1));
    assert_eq!(system["keys"][UNTRACKED_KEY], json!(1));
    assert_eq!(stats.flush().await.unwrap(), FlushOutcome::default());
    stats.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stable_writer_id_reused_after_restarts_loses_no_batch() {
    let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let at: Timestamp = "2025-03-01T12:34:00Z".parse().unwrap();
    // Three lives of one writer, two batches each: a restarted instance used to number its
    // batches from 1 again, and the driver skipped them as already applied.
    for _ in 0..3 {
        let stats = MetricsStore::builder(driver.clone())
            .granularities(["1h"])
            .writer_id("ingest-1")
            .buffer_async(FlushTask::None)
            .build()
            .unwrap();
        for _ in 0..2 {
            stats.track("k", at, json!({"n": 1})).await.unwrap();
            stats.flush().await.unwrap();
        }
        stats.shutdown().await.unwrap();
    }
    let stats = MetricsStore::builder(driver)
        .granularities(["1h"])
        .build()
        .unwrap();
    let series = stats
        .values("k", at, at, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    assert_eq!(
        Value::Map(series.values[0].clone()).to_json(),
        json!({"n": 6})
    );
}

#[tokio::test]
async fn enqueue_reports_the_size_trigger_and_leaves_it_to_the_caller() {
    let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer_size(2)
        .buffer_async(FlushTask::None)
        .build()
        .unwrap();
    let at: Timestamp = "2025-03-01T12:34:00Z".parse().unwrap();
    let enqueue = |key| stats.enqueue(Op::Track, key, at, &json!({"n": 1}).into());
    assert!(!enqueue("a").unwrap());
    assert!(enqueue("a").unwrap());
    assert!(!enqueue("b").unwrap());
    assert_eq!(stats.pending(), 3, "nothing was flushed");
    stats.shutdown().await.unwrap();
    assert!(matches!(enqueue("a"), Err(MetricsError::Closed)));
}

#[test]
fn enqueue_needs_a_buffer() {
    let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
        .buffer(Buffering::Off)
        .build()
        .unwrap();
    let at: Timestamp = "2025-03-01T12:34:00Z".parse().unwrap();
    let err = stats
        .enqueue(Op::Track, "a", at, &json!({"n": 1}).into())
        .unwrap_err();
    assert!(matches!(err, MetricsError::Unbuffered), "{err}");
    assert!(err.to_string().contains("buffer(Buffering::Off)"));
}
