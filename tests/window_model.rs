//! Property test: the bucket rings against a naive model that keeps every event with its
//! instant, under random records, past records, clock steps forwards and backwards, and merges.
//!
//! The model: an event at `t` lands in bucket `index(t, unit)` of the shared calendar. A ring
//! of `len` buckets keeps what is newer than `len` buckets before the newest index it has ever
//! advanced to (the largest clock index seen by a write); `last(n)` at clock `now` is the
//! events with `index(now) - min(n, len) < i <= index(now)` that the ring still keeps.

use std::collections::HashMap;
use std::time::Duration;

use accrue::{
    time::{Calendar, Unit},
    window::{Record, TestClock, WindowStore},
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;

const UNITS: [(Unit, usize); 4] = [
    (Unit::Minute, 5),
    (Unit::Hour, 3),
    (Unit::Day, 2),
    (Unit::Week, 2),
];

#[derive(Clone, Debug)]
enum Op {
    /// Move the clock by this many seconds (negative: backwards).
    Step(i64),
    Record(u64),
    /// Record this many seconds before now.
    RecordAgo(u64, u64),
    /// Merge a store whose clock is this many seconds from ours, holding `n` events now.
    Merge(i64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (-600i64..4000).prop_map(Op::Step),
        4 => (1u64..5).prop_map(Op::Record),
        2 => (0u64..200_000, 1u64..3).prop_map(|(s, n)| Op::RecordAgo(s, n)),
        1 => (-90_000i64..90_000, 1u64..4).prop_map(|(s, n)| Op::Merge(s, n)),
    ]
}

struct Model {
    cal: Calendar,
    /// (instant whose buckets count it, count).
    events: Vec<(Timestamp, u64)>,
    /// Per unit: the newest index the ring has advanced to.
    newest: HashMap<Unit, i64>,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
}

impl Model {
    fn saw(&mut self, t: Timestamp) {
        self.first_seen = Some(self.first_seen.map_or(t, |f| f.min(t)));
        self.last_seen = Some(self.last_seen.map_or(t, |l| l.max(t)));
    }

    fn advance(&mut self, now: Timestamp) {
        for (u, _) in UNITS {
            let i = self.cal.index(now, u);
            let n = self.newest.entry(u).or_insert(i);
            *n = (*n).max(i);
        }
    }

    fn last(&self, unit: Unit, len: usize, n: usize, now: Timestamp) -> u64 {
        let cur = self.cal.index(now, unit);
        let newest = self.newest[&unit];
        let lo = (cur - n.min(len) as i64 + 1).max(newest - len as i64 + 1);
        self.events
            .iter()
            .filter(|(t, _)| {
                let i = self.cal.index(*t, unit);
                i >= lo && i <= cur.min(newest)
            })
            .map(|(_, c)| c)
            .sum()
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn rings_match_the_naive_model(ops in proptest::collection::vec(op(), 1..60), paris in any::<bool>()) {
        let zone = if paris { TimeZone::get("Europe/Paris").unwrap() } else { TimeZone::UTC };
        let start = 1_741_170_000; // 2025-03-05 around 10:20 UTC
        let clock = TestClock::at(at(start));
        let mut b = WindowStore::builder().with_clock(clock.clone()).time_zone(zone.clone());
        for (u, n) in UNITS {
            b = b.track(u, n);
        }
        let store = b.build().unwrap();
        let mut model = Model {
            cal: Calendar::new(zone.clone()),
            events: Vec::new(),
            newest: HashMap::new(),
            first_seen: None,
            last_seen: None,
        };
        let mut now = start;
        for op in ops {
            match op {
                Op::Step(s) => {
                    now += s;
                    clock.set(at(now));
                }
                Op::Record(n) => {
                    store.record_with("k", Record::count(n)).unwrap();
                    model.advance(at(now));
                    model.events.push((at(now), n));
                    model.saw(at(now));
                }
                Op::RecordAgo(s, n) => {
                    store.record_with("k", Record::count(n).ago(Duration::from_secs(s))).unwrap();
                    model.advance(at(now));
                    model.events.push((at(now - s as i64), n));
                    model.saw(at(now - s as i64));
                }
                Op::Merge(offset, n) => {
                    let other_clock = TestClock::at(at(now + offset));
                    let mut b = WindowStore::builder().with_clock(other_clock).time_zone(zone.clone());
                    for (u, len) in UNITS {
                        b = b.track(u, len);
                    }
                    let other = b.build().unwrap();
                    other.record_with("k", Record::count(n)).unwrap();
                    store.merge(other).unwrap();
                    // Merged on our clock: counts from a sender ahead of us land in our current
                    // buckets, and its instants are capped at our latest.
                    let cap = at(now).max(model.last_seen.unwrap_or(at(now)));
                    model.advance(at(now));
                    model.events.push((at(now + offset).min(at(now)), n));
                    model.saw(at(now + offset).min(cap));
                }
            }
            if model.newest.is_empty() {
                prop_assert_eq!(store.query("k").last_minutes(1).sum(), None);
                continue;
            }
            for (u, len) in UNITS {
                for n in [1, 2, len, len + 3] {
                    let got = store.query("k").last(n, u).sum().unwrap();
                    let want = model.last(u, len, n, at(now));
                    prop_assert_eq!(got, want, "unit {:?} n {} at {}", u, n, at(now));
                }
            }
        }
        prop_assert_eq!(store.query("k").first_seen_at(), model.first_seen);
        prop_assert_eq!(store.query("k").last_seen_at(), model.last_seen);
    }
}
