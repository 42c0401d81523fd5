//! Concurrency with exact totals: the 8 x 2000 check-and-record stress, reservations
//! under contention, the Q05 lock-order case, and records racing persists.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use accrue::{
    time::Unit,
    window::{Record, TestClock, WindowStore},
};

fn store() -> Arc<WindowStore> {
    let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
    Arc::new(WindowStore::builder().with_clock(clock).build().unwrap())
}

/// Runs `f` on `n` threads started together; returns their results.
fn on_threads<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn stress_8_threads_x_2000_check_and_record_admit_exactly_1000_every_time() {
    // tiny-counter let up to 1005 through (check, then record, in two steps).
    for round in 0..10 {
        let s = store();
        let s2 = s.clone();
        let admitted: usize = on_threads(8, move |_| {
            let limit = s2.limit().at_most("api", 1000, Unit::Hour);
            (0..2000)
                .filter(|_| limit.check_and_record("api").is_ok())
                .count()
        })
        .into_iter()
        .sum();
        assert_eq!(admitted, 1000, "round {round}");
        assert_eq!(s.query("api").last_hours(1).sum(), Some(1000));
    }
}

#[test]
fn stress_reservations_and_records_share_the_limit_exactly() {
    for round in 0..5 {
        let s = store();
        let s2 = s.clone();
        let got: Vec<(usize, usize)> = on_threads(8, move |i| {
            let limit = s2.limit().at_most("api", 1000, Unit::Hour);
            let (mut ok, mut cancelled) = (0, 0);
            for j in 0..2000 {
                if i % 2 == 0 {
                    if limit.check_and_record("api").is_ok() {
                        ok += 1;
                    }
                } else if let Ok(r) = limit.reserve("api") {
                    // Every third reservation is given back; its slot must be reusable.
                    if j % 3 == 0 {
                        r.cancel();
                        cancelled += 1;
                    } else {
                        r.commit();
                        ok += 1;
                    }
                }
            }
            (ok, cancelled)
        });
        let ok: usize = got.iter().map(|g| g.0).sum();
        assert_eq!(ok, 1000, "round {round}");
        assert_eq!(s.query("api").last_hours(1).sum(), Some(1000));
        let u = s
            .limit()
            .at_most("api", 1000, Unit::Hour)
            .usage("api")
            .unwrap();
        assert_eq!((u.pending, u.remaining), (0, 0));
    }
}

#[test]
fn q05_opposite_ratios_and_cross_key_limits_never_deadlock() {
    let s = store();
    s.record_with("a", Record::count(3)).unwrap();
    s.record_with("b", Record::count(4)).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (num, den) in [("a", "b"), ("b", "a")] {
        let (s, tx) = (s.clone(), tx.clone());
        handles.push(thread::spawn(move || {
            for _ in 0..200_000 {
                assert!(s.query_ratio(num, den).last_days(1).is_some());
            }
            tx.send(()).unwrap();
        }));
    }
    // Writers that lock both keys, in opposite roles.
    for (limited, recorded) in [("a", "b"), ("b", "a")] {
        let (s, tx) = (s.clone(), tx.clone());
        handles.push(thread::spawn(move || {
            let limit = s.limit().at_most(limited, u64::MAX, Unit::Day);
            for _ in 0..20_000 {
                limit.check_and_record(recorded).unwrap();
                s.balance_delta(limited, recorded).unwrap();
            }
            tx.send(()).unwrap();
        }));
    }
    for _ in 0..handles.len() {
        // tiny-counter stopped making progress within seconds.
        rx.recv_timeout(Duration::from_secs(120))
            .expect("every thread finished: no deadlock");
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.query_delta("a", "b").ever().sum(), 0);
}

#[test]
fn records_on_many_keys_from_many_threads_are_exact() {
    let s = store();
    let s2 = s.clone();
    on_threads(8, move |i| {
        for j in 0..20_000u64 {
            s2.record_with(
                format!("k{}", (j * 7 + i as u64) % 1000),
                Record::count(1 + (j % 3)),
            )
            .unwrap();
        }
    });
    let total: u64 = (0..1000)
        .map(|k| s.query(&format!("k{k}")).ever().sum().unwrap())
        .sum();
    let expected: u64 = 8 * (0..20_000u64).map(|j| 1 + j % 3).sum::<u64>();
    assert_eq!(total, expected);
    assert_eq!(s.len(), 1000);
}

#[cfg(feature = "window-persist")]
#[test]
fn records_racing_persists_all_reach_storage() {
    use accrue::window::MemoryStorage;
    let storage = MemoryStorage::new();
    let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
    let s = Arc::new(
        WindowStore::builder()
            .with_clock(clock.clone())
            .with_storage(storage.clone())
            .build()
            .unwrap(),
    );
    let s2 = s.clone();
    on_threads(4, move |i| {
        for j in 0..5000u64 {
            if i == 0 && j % 50 == 0 {
                s2.persist().unwrap();
            } else {
                s2.record(format!("k{}", j % 100));
            }
        }
    });
    s.persist().unwrap();
    assert!(!s.is_dirty());
    let expected: u64 = 3 * 5000 + (5000 - 100);
    let fresh = WindowStore::builder()
        .with_clock(clock)
        .with_storage(storage)
        .build()
        .unwrap();
    let total: u64 = (0..100)
        .map(|k| fresh.query(&format!("k{k}")).ever().sum().unwrap())
        .sum();
    assert_eq!(total, expected);
}
