//! A denied `check_and_record`, `check_and_record_count` or `reserve` leaves the store as it
//! was: no key created, nothing dirty, the key count unchanged. Otherwise traffic that a limit
//! turns away on ever new keys would fill memory. Allowed calls still create and record.
//!
//! Each case runs every operation through a rule set naming only the checked key (one lock)
//! and through one naming other keys (their shards locked together).

use accrue::{
    time::Unit,
    window::{Limiter, Record, Reservation, TestClock, WindowError, WindowStore},
};

#[derive(Clone, Copy, Debug)]
enum Op {
    CheckAndRecord,
    CheckAndRecordCount,
    Reserve,
}

const OPS: [Op; 3] = [Op::CheckAndRecord, Op::CheckAndRecordCount, Op::Reserve];

impl Op {
    /// Runs the operation for `key`; a reservation is committed at once.
    fn run(self, limit: &Limiter<'_>, key: &str) -> Result<(), WindowError> {
        match self {
            Op::CheckAndRecord => limit.check_and_record(key),
            Op::CheckAndRecordCount => limit.check_and_record_count(key, 2),
            Op::Reserve => limit.reserve(key).map(Reservation::commit),
        }
    }

    /// Events an admitted call records.
    fn events(self) -> u64 {
        match self {
            Op::CheckAndRecordCount => 2,
            Op::CheckAndRecord | Op::Reserve => 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Rules {
    /// `at_most(key)`: the one-lock path.
    OnTheKey,
    /// `at_most("a").at_most("global")` checked for another key: the several-locks path.
    OnOtherKeys,
}

const RULES: [Rules; 2] = [Rules::OnTheKey, Rules::OnOtherKeys];

/// Events already in "global", which `Rules::OnOtherKeys` limits.
const GLOBAL: u64 = 1;

impl Rules {
    /// A limiter that denies one more event of `key` when `key` already has `have` events,
    /// and one that admits it.
    fn limiters<'a>(self, s: &'a WindowStore, key: &'a str, have: u64) -> [Limiter<'a>; 2] {
        match self {
            Rules::OnTheKey => [
                s.limit().at_most(key, have, Unit::Minute),
                s.limit().at_most(key, have + 10, Unit::Minute),
            ],
            Rules::OnOtherKeys => [
                s.limit()
                    .at_most("a", 10, Unit::Minute)
                    .at_most("global", GLOBAL, Unit::Minute),
                s.limit().at_most("a", 10, Unit::Minute).at_most(
                    "global",
                    GLOBAL + 10,
                    Unit::Minute,
                ),
            ],
        }
    }
}

fn clock() -> TestClock {
    TestClock::at("2025-03-05T12:00:00Z".parse().unwrap())
}

/// A store holding only "global" (clean), as `Rules::OnOtherKeys` expects.
fn store() -> WindowStore {
    let s = WindowStore::builder().with_clock(clock()).build().unwrap();
    s.record_with("global", Record::count(GLOBAL)).unwrap();
    s.reset_dirty();
    s
}

fn assert_denied(r: Result<(), WindowError>, case: &str) {
    match r {
        Err(WindowError::LimitExceeded(_)) => {}
        other => panic!("{case}: expected a denial, got {other:?}"),
    }
}

fn keys(s: &WindowStore) -> Vec<String> {
    let mut keys: Vec<String> = s.export_all().unwrap().into_keys().collect();
    keys.sort();
    keys
}

#[test]
fn a_denied_call_on_a_new_key_creates_nothing_and_an_allowed_one_records() {
    for rules in RULES {
        for op in OPS {
            let case = format!("{op:?} with rules {rules:?}");
            let s = store();
            let [deny, allow] = rules.limiters(&s, "b", 0);
            let (len, memory, listed) = (s.len(), s.memory_usage(), keys(&s));

            assert_denied(op.run(&deny, "b"), &case);
            assert_eq!(s.len(), len, "{case}: key count");
            assert_eq!(s.memory_usage(), memory, "{case}: memory");
            assert_eq!(keys(&s), listed, "{case}: keys");
            assert!(!s.is_dirty(), "{case}: dirty");
            assert!(s.export_dirty().unwrap().is_empty(), "{case}");
            assert_eq!(s.query("b").ever().sum(), None, "{case}: the key exists");
            assert_eq!(deny.usage("b").unwrap().pending, 0, "{case}");

            op.run(&allow, "b").unwrap();
            assert_eq!(s.len(), len + 1, "{case}: key count");
            assert_eq!(s.query("b").ever().sum(), Some(op.events()), "{case}");
            assert!(s.is_dirty(), "{case}");
            assert_eq!(
                s.export_dirty().unwrap().into_keys().collect::<Vec<_>>(),
                ["b"],
                "{case}"
            );
            // The key exists now: a denial still changes nothing.
            s.reset_dirty();
            let [deny, _] = rules.limiters(&s, "b", op.events());
            assert_denied(op.run(&deny, "b"), &case);
            assert!(!s.is_dirty(), "{case}: dirty");
            assert_eq!(s.query("b").ever().sum(), Some(op.events()), "{case}");
        }
    }
}

#[test]
fn denied_traffic_on_distinct_keys_does_not_grow_the_store() {
    for rules in RULES {
        for op in OPS {
            let case = format!("{op:?} with rules {rules:?}");
            let s = store();
            let (len, memory) = (s.len(), s.memory_usage());
            for i in 0..1000 {
                let key = format!("client-{i}");
                let [deny, _] = rules.limiters(&s, &key, 0);
                assert_denied(op.run(&deny, &key), &case);
            }
            assert_eq!(s.len(), len, "{case}: key count");
            assert_eq!(s.memory_usage(), memory, "{case}: memory");
            assert!(!s.is_dirty(), "{case}: dirty");
        }
    }
}

#[test]
fn a_denied_reservation_holds_nothing_and_a_held_one_still_counts() {
    for rules in RULES {
        let s = store();
        let [deny, allow] = rules.limiters(&s, "b", 0);
        assert_denied(deny.reserve("b").map(drop), &format!("{rules:?}"));
        assert_eq!(s.query("b").ever().sum(), None);
        let held = allow.reserve("b").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            allow.usage("b").unwrap().pending,
            u64::from(matches!(rules, Rules::OnTheKey))
        );
        held.cancel();
        assert_eq!(s.query("b").ever().sum(), Some(0));
    }
}

#[cfg(feature = "window-persist")]
mod stored {
    use accrue::window::MemoryStorage;

    use super::*;

    /// "b" (3 events) and "global" persisted, then a new store on the same storage: both
    /// are in storage and not in memory.
    fn reopened(storage: &MemoryStorage) -> WindowStore {
        let s = WindowStore::builder()
            .with_clock(clock())
            .with_storage(storage.clone())
            .build()
            .unwrap();
        s.record_with("b", Record::count(3)).unwrap();
        s.record_with("global", Record::count(GLOBAL)).unwrap();
        s.close().unwrap();
        let s = WindowStore::builder()
            .with_clock(clock())
            .with_storage(storage.clone())
            .build()
            .unwrap();
        assert_eq!(s.len(), 0);
        s
    }

    #[test]
    fn a_denied_call_on_a_key_only_in_storage_changes_nothing() {
        for rules in RULES {
            for op in OPS {
                let case = format!("{op:?} with rules {rules:?}");
                let storage = MemoryStorage::new();
                let s = reopened(&storage);
                let stored = storage.get("b").unwrap();
                let [deny, allow] = rules.limiters(&s, "b", 3);

                assert_denied(op.run(&deny, "b"), &case);
                assert!(!s.is_dirty(), "{case}: dirty");
                assert_eq!(s.query("b").ever().sum(), Some(3), "{case}");
                s.persist().unwrap();
                assert_eq!(
                    storage.get("b"),
                    Some(stored.clone()),
                    "{case}: stored copy"
                );
                s.compact().unwrap();
                assert_eq!(storage.len(), 2, "{case}");

                op.run(&allow, "b").unwrap();
                assert_eq!(s.query("b").ever().sum(), Some(3 + op.events()), "{case}");
                s.close().unwrap();
                let s = WindowStore::builder()
                    .with_clock(clock())
                    .with_storage(storage.clone())
                    .build()
                    .unwrap();
                assert_eq!(s.query("b").ever().sum(), Some(3 + op.events()), "{case}");
            }
        }
    }

    #[test]
    fn a_denied_call_on_a_key_in_neither_memory_nor_storage_creates_nothing() {
        for rules in RULES {
            for op in OPS {
                let case = format!("{op:?} with rules {rules:?}");
                let storage = MemoryStorage::new();
                let s = reopened(&storage);
                s.query("global").ever().sum().unwrap();
                let len = s.len();
                for _ in 0..2 {
                    let [deny, _] = rules.limiters(&s, "new", 0);
                    assert_denied(op.run(&deny, "new"), &case);
                    assert_eq!(s.len(), len, "{case}: key count");
                    assert!(!s.is_dirty(), "{case}: dirty");
                }
                assert_eq!(s.query("new").ever().sum(), None, "{case}");
                s.persist().unwrap();
                assert_eq!(storage.len(), 2, "{case}");
                assert!(storage.get("new").is_none(), "{case}");

                let [_, allow] = rules.limiters(&s, "new", 0);
                op.run(&allow, "new").unwrap();
                assert_eq!(s.len(), len + 1, "{case}: key count");
                s.persist().unwrap();
                assert_eq!(storage.len(), 3, "{case}");
            }
        }
    }
}
