//! Persistence, resize-on-load, merge and export/import of windowed counters, plus storage
//! failures.
#![cfg(feature = "window-persist")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use accrue::{
    time::Unit,
    window::{
        BinaryFormat, FileStorage, JsonFormat, MemoryStorage, Record, Snapshot, Storage,
        StorageError, StorageWrite, TestClock, WindowError, WindowStore, WindowStoreBuilder,
    },
};
use jiff::Timestamp;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const DAY: Duration = Duration::from_secs(86_400);

/// A fresh directory, removed when the guard drops.
fn tmp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn builder(clock: &TestClock) -> WindowStoreBuilder {
    WindowStore::builder().with_clock(clock.clone())
}

#[cfg(feature = "sqlite")]
#[test]
fn p01_sqlite_round_trip_in_both_formats_and_loaded_keys_are_clean() {
    use accrue::window::SqliteStorage;
    let dir = tmp_dir();
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    for (name, json) in [("bin", false), ("json", true)] {
        let path = dir.path().join(format!("{name}.db"));
        let open = || {
            let b = builder(&clock).with_storage(SqliteStorage::open(&path).unwrap());
            if json {
                b.with_format(JsonFormat)
            } else {
                b.with_format(BinaryFormat)
            }
            .build()
            .unwrap()
        };
        let s = open();
        s.record_with("e", Record::count(7)).unwrap();
        s.persist().unwrap();
        drop(s);
        let s = open();
        assert!(!s.is_dirty());
        assert_eq!(s.query("e").ever().sum(), Some(7));
        // tiny-counter: true (the dirty flag was stored with the data).
        assert!(!s.is_dirty(), "{name}");
    }
}

#[test]
fn p02_dirty_tracking_and_persist_without_storage() {
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let s = builder(&clock)
        .with_storage(MemoryStorage::new())
        .build()
        .unwrap();
    assert!(!s.is_dirty());
    s.record("e");
    assert!(s.is_dirty());
    s.persist().unwrap();
    assert!(!s.is_dirty());
    let _ = s.query("e").ever().sum();
    assert!(!s.is_dirty());
    s.limit()
        .at_most("e", 5, Unit::Hour)
        .reserve("e")
        .unwrap()
        .cancel();
    assert!(s.is_dirty());
    let bare = WindowStore::new();
    let err = bare.persist().unwrap_err();
    assert!(matches!(err, WindowError::NoStorage));
    assert_eq!(err.to_string(), "storage error: No storage configured");
}

/// The P03-P05 file: days(7) at 18:00 with 4 today, 1 a day ago, 1 five days ago.
fn p03_storage(clock: &TestClock) -> MemoryStorage {
    let storage = MemoryStorage::new();
    let s = builder(clock)
        .track_days(7)
        .with_storage(storage.clone())
        .build()
        .unwrap();
    s.record_with("e", Record::count(4)).unwrap();
    s.record_with("e", Record::one().ago(DAY)).unwrap();
    s.record_with("e", Record::one().ago(5 * DAY)).unwrap();
    s.persist().unwrap();
    storage
}

#[test]
fn p03_shrinking_a_ring_on_load_keeps_the_newest_buckets() {
    let clock = TestClock::at(at("2025-03-05T18:00:00Z"));
    let storage = p03_storage(&clock);
    let s = builder(&clock)
        .track_days(3)
        .with_storage(storage)
        .build()
        .unwrap();
    assert_eq!(s.query("e").last_days(3).buckets(), vec![4, 1, 0]);
    assert_eq!(s.query("e").ever().sum(), Some(5));
}

#[test]
fn p04_growing_a_ring_on_load_pads_with_zeros() {
    let clock = TestClock::at(at("2025-03-05T18:00:00Z"));
    let storage = p03_storage(&clock);
    let s = builder(&clock)
        .track_days(14)
        .with_storage(storage)
        .build()
        .unwrap();
    assert_eq!(
        s.query("e").last_days(14).buckets(),
        vec![4, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(s.query("e").ever().sum(), Some(6));
}

#[test]
fn p05_a_finer_unit_added_on_load_is_replayed_at_bucket_midpoints() {
    let clock = TestClock::at(at("2025-03-05T18:00:00Z"));
    let storage = p03_storage(&clock);
    let s = builder(&clock)
        .track_hours(24)
        .track_days(7)
        .with_storage(storage)
        .build()
        .unwrap();
    let hours = s.query("e").last_hours(24).buckets();
    // Today's 4 happened between midnight and 18:00 (the last event seen): midpoint 09:00,
    // 9 hour buckets back. Yesterday's midpoint is 30 hours back: beyond the ring.
    let nonzero: Vec<(usize, u64)> = hours
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, c)| *c > 0)
        .collect();
    assert_eq!(nonzero, vec![(9, 4)]);
    assert_eq!(s.query("e").last_hours(1).sum(), Some(0));
    assert_eq!(
        s.query("e").last_days(7).buckets(),
        vec![4, 1, 0, 0, 0, 1, 0]
    );
}

#[test]
fn p06_aged_out_keys_are_deleted_by_compact() {
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let storage = MemoryStorage::new();
    let s = builder(&clock)
        .with_storage(storage.clone())
        .build()
        .unwrap();
    s.record("e");
    s.persist().unwrap();
    drop(s);
    clock.advance(100 * DAY);
    let s = builder(&clock)
        .track_days(56)
        .with_storage(storage.clone())
        .build()
        .unwrap();
    assert_eq!(s.query("e").last_days(56).sum(), Some(0));
    s.compact().unwrap();
    assert_eq!(s.len(), 0, "compact drops clean keys from memory");
    drop(s);
    assert!(storage.is_empty());
    let s = builder(&clock)
        .track_days(56)
        .with_storage(storage)
        .build()
        .unwrap();
    assert_eq!(s.query("e").last_days(56).sum(), None);
}

#[cfg(all(feature = "window-tokio", feature = "sqlite"))]
#[test]
fn p07_auto_persist_on_a_current_thread_runtime() {
    use accrue::window::SqliteStorage;
    let dir = tmp_dir();
    let path = dir.path().join("auto.db");
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let reader = || {
            builder(&clock)
                .with_storage(SqliteStorage::open(&path).unwrap())
                .build()
                .unwrap()
        };
        let writer = builder(&clock)
            .with_storage(SqliteStorage::open(&path).unwrap())
            .auto_persist(Duration::from_millis(50))
            .build()
            .unwrap();
        writer.record_with("e", Record::count(3)).unwrap();
        assert_eq!(reader().query("e").ever().sum(), None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(reader().query("e").ever().sum(), Some(3));
        assert!(!writer.is_dirty());
    });
    let err = WindowStore::builder()
        .auto_persist(Duration::from_millis(50))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "auto_persist requires storage to be configured - use with_storage() or remove auto_persist()"
    );
    assert!(matches!(
        WindowStore::builder()
            .with_storage(MemoryStorage::new())
            .auto_persist(Duration::from_millis(50))
            .build(),
        Err(WindowError::NoRuntime)
    ));
    assert!(matches!(
        WindowStore::builder()
            .with_storage(MemoryStorage::new())
            .auto_persist(Duration::ZERO)
            .build(),
        Err(WindowError::InvalidAutoPersistInterval)
    ));
}

#[test]
fn drop_persists_and_file_storage_round_trips() {
    let dir = tmp_dir();
    let path = dir.path().join("counters.log");
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    {
        let s = builder(&clock)
            .with_storage(FileStorage::open(&path).unwrap())
            .build()
            .unwrap();
        for i in 0..100 {
            s.record_with(format!("k{i}"), Record::count(i + 1))
                .unwrap();
        }
        s.record_with("k0", Record::one().at(at("2025-03-01T08:00:00Z")))
            .unwrap();
    }
    let s = builder(&clock)
        .with_storage(FileStorage::open(&path).unwrap())
        .build()
        .unwrap();
    for i in 0..100u64 {
        assert_eq!(s.query(&format!("k{i}")).last_days(1).sum(), Some(i + 1));
    }
    assert_eq!(
        s.query("k0").last_days(7).buckets(),
        vec![1, 0, 0, 0, 1, 0, 0]
    );
    assert_eq!(
        s.query("k0").first_seen_at(),
        Some(at("2025-03-01T08:00:00Z"))
    );
    assert_eq!(
        s.query("k0").last_seen_at(),
        Some(at("2025-03-05T12:00:00Z"))
    );
    assert_eq!(s.query("nope").ever().sum(), None);
    s.close().unwrap();
}

/// Storage that fails loads of key `a` and/or all writes, on demand.
#[derive(Clone)]
struct Flaky {
    inner: MemoryStorage,
    fail_load: Arc<AtomicBool>,
    fail_write: Arc<AtomicBool>,
}

impl Storage for Flaky {
    fn load(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if self.fail_load.load(Ordering::SeqCst) && key == "a" {
            return Err(StorageError::msg("load refused"));
        }
        self.inner.load(key)
    }
    fn keys(&mut self) -> Result<Vec<String>, StorageError> {
        self.inner.keys()
    }
    fn write(&mut self, batch: &[StorageWrite<'_>]) -> Result<(), StorageError> {
        if self.fail_write.load(Ordering::SeqCst) {
            return Err(StorageError::msg("write refused"));
        }
        self.inner.write(batch)
    }
}

#[test]
fn a_failed_persist_loses_nothing_and_unreadable_keys_are_never_overwritten() {
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let flaky = Flaky {
        inner: MemoryStorage::new(),
        fail_load: Arc::new(AtomicBool::new(false)),
        fail_write: Arc::new(AtomicBool::new(false)),
    };
    let s = builder(&clock).with_storage(flaky.clone()).build().unwrap();
    s.record_with("a", Record::count(5)).unwrap();
    s.persist().unwrap();
    drop(s);

    // A new store cannot read "a" but records into it anyway.
    flaky.fail_load.store(true, Ordering::SeqCst);
    let s = builder(&clock).with_storage(flaky.clone()).build().unwrap();
    s.record_with("a", Record::count(2)).unwrap();
    s.record_with("b", Record::count(1)).unwrap();
    // Many keys, so the unreadable one is met before and after others in any shard order.
    for i in 0..50 {
        s.record(format!("other{i}"));
    }
    // Writing a would overwrite its stored 5 with 2: a is left out (and stays dirty) while its
    // stored copy is unreadable; the other keys are written.
    assert!(s.persist().is_err());
    assert!(s.is_dirty());
    assert_eq!(flaky.inner.len(), 52, "every key but a written");
    assert_eq!(s.export_dirty().unwrap().len(), 1);
    s.record("b");
    flaky.fail_load.store(false, Ordering::SeqCst);
    flaky.fail_write.store(true, Ordering::SeqCst);
    assert!(matches!(s.persist(), Err(WindowError::Storage(_))));
    assert!(s.is_dirty());
    flaky.fail_write.store(false, Ordering::SeqCst);
    s.persist().unwrap();
    assert!(!s.is_dirty());
    drop(s);
    let s = builder(&clock)
        .with_storage(flaky.inner.clone())
        .build()
        .unwrap();
    assert_eq!(
        s.query("a").ever().sum(),
        Some(7),
        "stored 5 merged with the 2 recorded blind"
    );
    assert_eq!(s.query("b").ever().sum(), Some(2));
    for i in 0..50 {
        assert_eq!(
            s.query(&format!("other{i}")).ever().sum(),
            Some(1),
            "other{i}"
        );
    }
}

#[test]
fn m01_merge_sums_and_is_commutative() {
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let make = || builder(&clock).build().unwrap();
    let (a, b) = (make(), make());
    a.record_with("e", Record::count(3)).unwrap();
    b.record_with("e", Record::count(5)).unwrap();
    b.record_with("only_b", Record::count(2)).unwrap();
    let (a2, b2) = (make(), make());
    a2.record_with("e", Record::count(3)).unwrap();
    b2.record_with("e", Record::count(5)).unwrap();
    a.reset_dirty();
    a.merge(b).unwrap();
    assert_eq!(a.query("e").ever().sum(), Some(8));
    assert_eq!(a.query("only_b").ever().sum(), Some(2));
    assert!(a.is_dirty());
    assert_eq!(a.export_dirty().unwrap().len(), 2);
    b2.merge(a2).unwrap();
    assert_eq!(b2.query("e").ever().sum(), Some(8));
    assert_eq!(
        a.query("e").last_minutes(60).buckets(),
        b2.query("e").last_minutes(60).buckets()
    );
}

#[test]
fn m02_merge_aligns_by_calendar_day() {
    let ca = TestClock::at(at("2025-03-07T12:00:00Z"));
    let cb = TestClock::at(at("2025-03-05T12:00:00Z"));
    let a = builder(&ca).build().unwrap();
    let b = builder(&cb).build().unwrap();
    a.record_with("e", Record::count(3)).unwrap();
    b.record_with("e", Record::count(5)).unwrap();
    a.merge(b).unwrap();
    assert_eq!(a.query("e").last_days(4).buckets(), vec![3, 0, 5, 0]);
}

#[test]
fn m03_a_sender_clock_ahead_never_pushes_the_receiver_into_its_future() {
    let ca = TestClock::at(at("2025-03-05T12:00:00Z"));
    let cb = TestClock::at(at("2025-03-09T12:00:00Z"));
    let a = builder(&ca).build().unwrap();
    let b = builder(&cb).build().unwrap();
    a.record_with("e", Record::count(3)).unwrap();
    b.record_with("e", Record::count(5)).unwrap();
    a.merge(b).unwrap();
    // tiny-counter advanced A's rings to B's clock. We merge on A's clock: B's future
    // counts land in A's current bucket, and A's own records keep their place.
    assert_eq!(a.query("e").last_days(3).buckets(), vec![8, 0, 0]);
    a.record("e");
    ca.advance(DAY);
    assert_eq!(a.query("e").last_days(3).buckets(), vec![0, 9, 0]);
    assert!(a.query("e").last_seen_at().unwrap() <= at("2025-03-05T12:00:00Z"));
    // Import (replace) follows the receiver's clock too.
    let c = builder(&cb).build().unwrap();
    c.record_with("f", Record::count(4)).unwrap();
    let snap = c.export_all().unwrap().remove("f").unwrap();
    a.import_event("f", snap).unwrap();
    assert_eq!(a.query("f").last_days(2).buckets(), vec![4, 0]);
    a.record("f");
    assert_eq!(a.query("f").last_days(2).buckets(), vec![5, 0]);
}

#[test]
fn m04_merge_and_import_convert_to_the_receivers_configuration() {
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let a = builder(&clock).track_days(7).build().unwrap();
    let b = builder(&clock).track_hours(24).build().unwrap();
    b.record_with("n", Record::count(2)).unwrap();
    let exported = b.export_all().unwrap();
    // tiny-counter: merge into an absent key kept B's config (days None, hours Some(2)).
    a.merge_all(exported.clone()).unwrap();
    assert_eq!(a.query("n").last_days(1).sum(), Some(2));
    assert_eq!(a.query("n").last_hours(1).sum(), None);
    let a2 = builder(&clock).track_days(7).build().unwrap();
    a2.import_all(exported).unwrap();
    assert_eq!(a2.query("n").last_days(1).sum(), Some(2));
    assert_eq!(a2.query("n").last_hours(1).sum(), None);
    // Import replaces.
    let c = builder(&clock).track_days(7).build().unwrap();
    c.record_with("n", Record::count(9)).unwrap();
    a2.import_event("n", c.export_all().unwrap().remove("n").unwrap())
        .unwrap();
    assert_eq!(a2.query("n").last_days(1).sum(), Some(9));
}

#[test]
fn snapshots_serialize_as_json_and_bad_ones_change_nothing() {
    let clock = TestClock::at(at("2025-03-05T12:00:00Z"));
    let s = builder(&clock).build().unwrap();
    s.record_with("a", Record::count(4)).unwrap();
    s.record_with("b", Record::count(1)).unwrap();
    let json = serde_json::to_string(&s.export_all().unwrap()).unwrap();
    assert!(json.contains("\"unit\":\"minutes\""), "{json}");
    let back: HashMap<String, Snapshot> = serde_json::from_str(&json).unwrap();
    let t = builder(&clock).build().unwrap();
    t.merge_all(back).unwrap();
    assert_eq!(t.query("a").ever().sum(), Some(4));
    // A snapshot with a unit repeated is refused before anything changes.
    let bad = json.replacen("\"unit\":\"hours\"", "\"unit\":\"minutes\"", 1);
    assert!(serde_json::from_str::<HashMap<String, Snapshot>>(&bad).is_err());
    let snap = s.export_all().unwrap().remove("a").unwrap();
    assert_eq!(snap.total(Unit::Day), Some(4));
    assert_eq!(snap.time_zone(), "UTC");
}

#[test]
fn a_store_in_another_zone_rebuckets_calendar_units_on_load() {
    let clock = TestClock::at(at("2025-03-05T23:30:00Z"));
    let storage = MemoryStorage::new();
    let s = builder(&clock)
        .track_days(3)
        .with_storage(storage.clone())
        .build()
        .unwrap();
    s.record("e"); // 5 March in UTC
    s.persist().unwrap();
    drop(s);
    // In Tokyo it is 6 March 08:30: the event (at 08:30 Tokyo time, the midpoint of the
    // part of its UTC day that was seen) is today's.
    let s = builder(&clock)
        .track_days(3)
        .time_zone(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap())
        .with_storage(storage)
        .build()
        .unwrap();
    assert_eq!(s.query("e").last_days(3).sum(), Some(1));
}
