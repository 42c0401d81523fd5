//! Properties of the bucket maths: for random instants, zones and granularities,
//! `floor(t) <= t`, `floor` is idempotent, `floor(t)` is on `timeline(t - x, t + x)`, the step
//! after `floor(t)` is the next bucket; plus exhaustive sweeps across real DST transitions and
//! the `index` / `start_of` contract the windowed counters rely on.

use accrue::time::{Calendar, Granularity, Unit};
use jiff::Timestamp;
use jiff::civil::Weekday;
use proptest::prelude::*;

/// Zones with every kind of transition: 1 h DST both hemispheres, 30-minute shifts
/// (Lord_Howe), 45-minute offsets (Chatham, Kathmandu), negative half-hour (St_Johns),
/// Casablanca's Ramadan shifts, Troll's two-hour jump, Dublin's negative DST, midnight
/// transitions (Havana, Sao_Paulo, Santiago), a skipped day (Apia) and fixed zones.
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Bratislava",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/Havana",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "Europe/Dublin",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "Etc/GMT-4",
];

const COUNTS: &[u32] = &[1, 1, 1, 2, 3, 5, 7, 10, 15, 30, 33, 45, 90, 150, 400];
const WEEKDAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

fn approx_len(g: Granularity) -> i64 {
    let unit = match g.unit() {
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 3600,
        Unit::Day => 86_400,
        Unit::Week => 7 * 86_400,
        Unit::Month => 31 * 86_400,
        Unit::Quarter => 92 * 86_400,
        Unit::Year => 366 * 86_400,
    };
    // Counts larger than the anchor degenerate to one bucket per anchor period.
    let anchor = match g.unit() {
        Unit::Second => 60,
        Unit::Minute => 3600,
        Unit::Hour => 86_400,
        Unit::Year => i64::MAX / 4,
        _ => 366 * 86_400,
    };
    // Keep the range inside the representable years.
    (unit * i64::from(g.count()))
        .min(anchor)
        .min(20 * 366 * 86_400)
}

/// How far around a transition the sweep's timeline reaches: three buckets, at least 4 h.
fn reach(g: Granularity) -> i64 {
    (3 * approx_len(g)).max(4 * 3600)
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

/// Checks every invariant for one instant against one precomputed timeline window.
fn check_instant(cal: &Calendar, t: Timestamp, g: Granularity, line: &[Timestamp]) {
    let b = cal.floor(t, g).unwrap();
    assert!(b <= t, "{cal:?} {g}: floor({t}) = {b} > t");
    assert_eq!(
        cal.floor(b, g).unwrap(),
        b,
        "{cal:?} {g}: floor not idempotent at {t}"
    );
    if let Err(i) = line.binary_search(&b) {
        let near = &line[i.saturating_sub(2)..(i + 2).min(line.len())];
        panic!("{cal:?} {g}: floor({t}) = {b} missing from the timeline, near {near:?}");
    }
    let next = cal.next_bucket(b, g).unwrap();
    assert!(
        next > t,
        "{cal:?} {g}: next bucket {next} of {b} is not after {t}"
    );
    assert_eq!(
        cal.floor(next, g).unwrap(),
        next,
        "{cal:?} {g}: next {next} is not a bucket"
    );
    let last = ts(next.as_second() - 1);
    assert_eq!(
        cal.floor(last, g).unwrap(),
        b,
        "{cal:?} {g}: bucket {b} ends before {next}"
    );
}

fn check_timeline(cal: &Calendar, g: Granularity, line: &[Timestamp]) {
    for w in line.windows(2) {
        assert!(w[0] < w[1], "{cal:?} {g}: timeline not increasing {line:?}");
        assert_eq!(cal.next_bucket(w[0], g).unwrap(), w[1]);
    }
    for &p in line {
        assert_eq!(
            cal.floor(p, g).unwrap(),
            p,
            "{cal:?} {g}: timeline point {p} is not a bucket"
        );
    }
}

fn granularity() -> impl Strategy<Value = Granularity> {
    (0..Unit::ALL.len(), 0..COUNTS.len())
        .prop_map(|(u, c)| Granularity::new(COUNTS[c], Unit::ALL[u]).unwrap())
}

fn calendar() -> impl Strategy<Value = Calendar> {
    (0..ZONES.len(), 0..7usize).prop_map(|(z, w)| {
        Calendar::from_name(ZONES[z])
            .unwrap()
            .with_week_start(WEEKDAYS[w])
    })
}

proptest! {
    // PROPTEST_CASES overrides the count for longer runs (e.g. 40000 with --release).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(if cfg!(debug_assertions) { 500 } else { 3000 }),
        ..ProptestConfig::default()
    })]

    #[test]
    fn floor_is_a_bucket_on_the_timeline(
        cal in calendar(),
        g in granularity(),
        at in -2_208_988_800i64..4_102_444_800, // 1900 .. 2100
        spread in 0i64..40,
    ) {
        let t = ts(at);
        let x = approx_len(g) * spread;
        let (from, to) = (ts(at - x), ts(at + x));
        let line: Vec<Timestamp> = cal.timeline(from, to, g).unwrap().collect();
        check_timeline(&cal, g, &line);
        check_instant(&cal, t, g, &line);
        // The ends are on it too.
        prop_assert_eq!(line.first().copied(), Some(cal.floor(from, g).unwrap()));
        prop_assert_eq!(line.last().copied(), Some(cal.floor(to, g).unwrap()));
    }

    #[test]
    fn add_of_a_bucket_is_the_next_bucket_when_the_granularity_divides_its_anchor(
        cal in calendar(),
        unit in 0..Unit::ALL.len(),
        at in -2_208_988_800i64..4_102_444_800,
    ) {
        let unit = Unit::ALL[unit];
        for n in [1u32, 2, 3, 4, 6, 12, 15, 30] {
            let divides = match unit {
                Unit::Second | Unit::Minute => 60 % n == 0,
                Unit::Hour => 24 % n == 0,
                Unit::Day | Unit::Week => n == 1 && unit == Unit::Day,
                Unit::Month => 12 % n == 0,
                Unit::Quarter => 4 % n == 0,
                Unit::Year => true,
            };
            // Sub-day steps are elapsed time: only equal to the next bucket in fixed zones.
            let fixed = cal.time_zone().to_fixed_offset().is_ok();
            if !divides || (matches!(unit, Unit::Second | Unit::Minute | Unit::Hour) && !fixed) {
                continue;
            }
            let g = Granularity::new(n, unit).unwrap();
            let b = cal.floor(ts(at), g).unwrap();
            let added = cal.add(b, g).unwrap();
            prop_assert_eq!(cal.floor(added, g).unwrap(), cal.next_bucket(b, g).unwrap(), "{:?} {}", cal, g);
            if cal.time_zone().to_fixed_offset().is_ok() {
                prop_assert_eq!(added, cal.next_bucket(b, g).unwrap(), "{:?} {}", cal, g);
            }
        }
    }

    #[test]
    fn index_and_start_of_are_inverse_and_consecutive(
        cal in calendar(),
        unit in 0..Unit::ALL.len(),
        at in -2_208_988_800i64..4_102_444_800,
    ) {
        let unit = Unit::ALL[unit];
        let t = ts(at);
        let i = cal.index(t, unit);
        let start = cal.start_of(i, unit).unwrap();
        let next = cal.start_of(i + 1, unit).unwrap();
        prop_assert!(start <= t && t < next, "{:?} {:?}: {} not in [{}, {})", cal, unit, t, start, next);
        prop_assert_eq!(cal.index(start, unit), i);
        prop_assert_eq!(cal.index(ts(next.as_second() - 1), unit), i);
        if unit != Unit::Week {
            let floor = cal.floor(t, Granularity::one(unit)).unwrap();
            prop_assert!(floor == start || cal.index(floor, unit) == i);
        }
        if unit == Unit::Week {
            let local = cal.time_zone().to_datetime(start);
            prop_assert_eq!(local.weekday(), cal.week_start());
        }
    }
}

/// Every real transition of every zone between 2005 and 2030, swept in 15-minute steps over
/// ±3 hours (and ±1 s around the instant itself), for granularities that hit its corner cases.
#[test]
fn sweeps_across_every_transition() {
    let grans: Vec<Granularity> = [
        "1m", "7m", "15m", "30m", "45m", "1h", "2h", "5h", "1d", "1w", "1mo",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut transitions = 0;
    for name in ZONES {
        let cal = Calendar::from_name(name).unwrap();
        let start: Timestamp = "2005-01-01T00:00:00Z".parse().unwrap();
        let end: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        for tr in cal.time_zone().following(start) {
            let at = tr.timestamp().as_second();
            if at > end.as_second() {
                break;
            }
            transitions += 1;
            for &g in &grans {
                let line: Vec<Timestamp> = cal
                    .timeline(ts(at - reach(g)), ts(at + reach(g)), g)
                    .unwrap()
                    .collect();
                check_timeline(&cal, g, &line);
                let mut offsets: Vec<i64> = (-12..=12).map(|k| k * 900).collect();
                offsets.extend([-1, 1]);
                for d in offsets {
                    check_instant(&cal, ts(at + d), g, &line);
                }
            }
            // Documented exception of `index(_, Hour)`: a change whose wall clock (before or
            // after) is not a whole hour (Chatham's 03:45 -> 02:45, Newfoundland's 00:01 changes
            // until 2011) can create a bucket shorter than an hour that shares its Unix-hour
            // index with its neighbour.
            let wall = |s: i64| s + i64::from(cal.time_zone().to_offset(ts(s)).seconds());
            let off_grid = wall(at) % 3600 != 0 || (wall(at - 1) + 1) % 3600 != 0;
            for unit in Unit::ALL {
                if unit == Unit::Hour && off_grid {
                    eprintln!(
                        "{name}: skipping the hour index at the off-grid change {}",
                        ts(at)
                    );
                    continue;
                }
                for d in [-3601, -1, 0, 1, 3599] {
                    let t = ts(at + d);
                    let i = cal.index(t, unit);
                    assert_eq!(
                        cal.index(cal.start_of(i, unit).unwrap(), unit),
                        i,
                        "{name} {unit:?} {t}"
                    );
                    if unit != Unit::Week {
                        let start = cal.start_of(i, unit).unwrap();
                        let floor = cal.floor(t, Granularity::one(unit)).unwrap();
                        // A repeated midnight (Havana) splits one civil date into two `1d`
                        // buckets; the index numbers the date, from its first midnight.
                        let repeated = floor > start && cal.index(floor, unit) == i;
                        assert!(
                            floor == start || repeated,
                            "{name} {unit:?} {t}: {start} vs {floor}"
                        );
                    }
                }
            }
        }
    }
    assert!(transitions > 300, "only {transitions} transitions swept");
}

#[test]
fn index_matches_the_documented_formulas() {
    let utc = Calendar::utc();
    let t: Timestamp = "2024-03-15T13:47:12Z".parse().unwrap();
    assert_eq!(utc.index(t, Unit::Second), t.as_second());
    assert_eq!(utc.index(t, Unit::Minute), t.as_second().div_euclid(60));
    assert_eq!(utc.index(t, Unit::Hour), t.as_second().div_euclid(3600));
    assert_eq!(utc.index(t, Unit::Day), t.as_second().div_euclid(86_400));
    assert_eq!(utc.index(t, Unit::Month), 2024 * 12 + 2);
    assert_eq!(utc.index(t, Unit::Quarter), 2024 * 4);
    assert_eq!(utc.index(t, Unit::Year), 2024);
    // Weeks: the Monday 2024-03-11 is day 19793; 19793 div 7 = 2827.
    assert_eq!(utc.index(t, Unit::Week), 19_793 / 7);
    assert_eq!(
        utc.start_of(19_793 / 7, Unit::Week).unwrap().to_string(),
        "2024-03-11T00:00:00Z"
    );
    // Weeks are continuous across New Year (no partial week 0).
    let dec30: Timestamp = "2024-12-30T00:00:00Z".parse().unwrap();
    let jan2: Timestamp = "2025-01-02T00:00:00Z".parse().unwrap();
    assert_eq!(utc.index(dec30, Unit::Week), utc.index(jan2, Unit::Week));
    // Kolkata hours start at :30 UTC and are still numbered consecutively.
    let kolkata = Calendar::from_name("Asia/Kolkata").unwrap();
    let h = kolkata.index(t, Unit::Hour);
    assert_eq!(
        kolkata.start_of(h, Unit::Hour).unwrap().to_string(),
        "2024-03-15T13:30:00Z"
    );
    assert_eq!(
        kolkata.start_of(h + 1, Unit::Hour).unwrap().to_string(),
        "2024-03-15T14:30:00Z"
    );
}

#[test]
fn out_of_range_is_an_error_not_a_panic() {
    let cal = Calendar::from_name("Europe/Bratislava").unwrap();
    let max = Timestamp::MAX;
    assert!(cal.add(max, "1y".parse().unwrap()).is_err());
    assert!(cal.add(max, "1h".parse().unwrap()).is_err());
    assert!(cal.start_of(i64::MAX, Unit::Month).is_err());
    assert!(cal.start_of(i64::MIN, Unit::Week).is_err());
    assert!(cal.start_of(i64::MAX, Unit::Hour).is_err());
    // A count far beyond the anchor floors to year 0 (absolute year numbers).
    let g: Granularity = "4294967295y".parse().unwrap();
    let year0 = cal
        .floor("2024-05-01T00:00:00Z".parse().unwrap(), g)
        .unwrap();
    let local = cal.time_zone().to_datetime(year0);
    assert_eq!(
        (local.year(), local.month(), local.day(), local.hour()),
        (0, 1, 1, 0)
    );
    let line: Vec<_> = cal
        .timeline(max, max, "1y".parse().unwrap())
        .unwrap()
        .collect();
    assert_eq!(line.len(), 1);
}
