//! Loom models of one key under concurrent check-and-record, reserve, commit and cancel.

use loom::thread;

use crate::sync::Arc;
use crate::time::Unit;
use crate::window::{TestClock, WindowStore};

fn store() -> Arc<WindowStore> {
    let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
    Arc::new(
        WindowStore::builder()
            .with_clock(clock)
            .track_minutes(2)
            .shards(1)
            .build()
            .unwrap(),
    )
}

fn count(s: &WindowStore) -> u64 {
    s.query("k").last_minutes(1).sum().unwrap_or(0)
}

#[test]
fn loom_check_and_record_admits_exactly_the_limit() {
    loom::model(|| {
        let s = store();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    s.limit()
                        .at_most("k", 1, Unit::Minute)
                        .check_and_record("k")
                        .is_ok()
                })
            })
            .collect();
        let admitted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(admitted, 1);
        assert_eq!(count(&s), 1);
    });
}

#[test]
fn loom_reservation_and_check_and_record_share_one_slot() {
    loom::model(|| {
        let s = store();
        let s2 = s.clone();
        let reserver =
            thread::spawn(
                move || match s2.limit().at_most("k", 1, Unit::Minute).reserve("k") {
                    Ok(r) => {
                        r.commit();
                        true
                    }
                    Err(_) => false,
                },
            );
        let recorded = s
            .limit()
            .at_most("k", 1, Unit::Minute)
            .check_and_record("k")
            .is_ok();
        let reserved = reserver.join().unwrap();
        assert!(reserved ^ recorded, "exactly one gets the slot");
        assert_eq!(count(&s), 1);
    });
}

#[test]
fn loom_cancelled_reservation_releases_its_slot() {
    loom::model(|| {
        let s = store();
        let s2 = s.clone();
        let reserver = thread::spawn(move || {
            s2.limit()
                .at_most("k", 1, Unit::Minute)
                .reserve("k")
                .map(|r| r.cancel())
                .is_ok()
        });
        let recorded = s
            .limit()
            .at_most("k", 1, Unit::Minute)
            .check_and_record("k")
            .is_ok();
        let reserved = reserver.join().unwrap();
        // Denied only while the reservation was held.
        assert!(recorded || reserved);
        assert_eq!(count(&s), u64::from(recorded));
        // Afterwards nothing is pending: the slot is free again unless it was recorded.
        let usage = s.limit().at_most("k", 1, Unit::Minute).usage("k").unwrap();
        assert_eq!(usage.pending, 0);
        assert_eq!(usage.remaining, u64::from(!recorded));
    });
}

#[test]
fn loom_rules_on_two_keys_are_checked_and_recorded_atomically() {
    loom::model(|| {
        let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
        let s = Arc::new(
            WindowStore::builder()
                .with_clock(clock)
                .track_minutes(2)
                .shards(2)
                .build()
                .unwrap(),
        );
        // Two keys in different shards, so two shard locks are taken in order.
        let shard = |k: &str| s.inner.shard_index(s.inner.hash_of(k));
        let b = ["b", "c", "d", "e", "f", "g"]
            .into_iter()
            .find(|k| shard(k) != shard("a"))
            .expect("two shards");
        // Each admits only while neither key has been recorded: exactly one can win.
        let threads: Vec<_> = ["a", b]
            .into_iter()
            .map(|key| {
                let s = s.clone();
                thread::spawn(move || {
                    s.limit()
                        .at_most("a", 1, Unit::Minute)
                        .at_most(b, 1, Unit::Minute)
                        .check_and_record(key)
                        .is_ok()
                })
            })
            .collect();
        let admitted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(admitted, 1);
        let total = ["a", b]
            .iter()
            .map(|k| s.query(k).last_minutes(1).sum().unwrap_or(0))
            .sum::<u64>();
        assert_eq!(total, 1);
    });
}

#[test]
fn loom_a_new_key_is_created_once_and_only_by_the_admitted_caller() {
    loom::model(|| {
        let s = store();
        // The same new key through the several-keys path and the one-key path: each admits
        // while it is absent, makes its state outside the lock, then decides again.
        let s2 = s.clone();
        let several = thread::spawn(move || {
            s2.limit()
                .at_most("k", 1, Unit::Minute)
                .at_most("g", 1, Unit::Minute)
                .check_and_record("k")
                .is_ok()
        });
        let one = s
            .limit()
            .at_most("k", 1, Unit::Minute)
            .check_and_record("k")
            .is_ok();
        let several = several.join().unwrap();
        assert!(one ^ several, "exactly one gets the slot");
        assert_eq!(count(&s), 1);
        // "g" was only checked, and the denied caller left nothing behind.
        assert_eq!(s.len(), 1);
    });
}

#[test]
fn loom_sanity_a_split_check_then_record_is_caught() {
    let r = std::panic::catch_unwind(|| {
        loom::model(|| {
            let s = store();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    thread::spawn(move || {
                        let limit = s.limit().at_most("k", 1, Unit::Minute);
                        if limit.check("k").is_ok() {
                            s.record("k");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(count(&s), 1);
        });
    });
    assert!(r.is_err());
}
