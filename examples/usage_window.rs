//! Product usage over calendar windows: daily active use, this week against last week,
//! a conversion ratio, an inventory delta, then persistence to a file and a reload with a
//! different configuration.
//!
//! Three weeks of simulated app launches, purchases and visits in Europe/Paris, on a
//! `TestClock`; every figure is asserted.
//!
//! Run: `cargo run --example usage_window --features window-persist`

use std::time::Duration;

use accrue::{
    time::Unit,
    window::{FileStorage, Record, TestClock, WindowError, WindowStore},
};
use jiff::tz::TimeZone;

const DAY: Duration = Duration::from_secs(86_400);

fn main() -> Result<(), WindowError> {
    let dir = std::env::temp_dir().join(format!("accrue-usage-window-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("usage.log");
    let paris = TimeZone::get("Europe/Paris").expect("bundled tz database");

    // Monday 3 March 2025, 08:00 in Paris.
    let clock = TestClock::at("2025-03-03T07:00:00Z".parse().unwrap());
    let store = WindowStore::builder()
        .time_zone(paris.clone())
        .with_clock(clock.clone())
        .with_storage(FileStorage::open(&path)?)
        .build()?;

    // Three weeks: launches on weekdays (more each week), a visit per launch, a purchase
    // every third day; items added and removed.
    for day in 0..21u64 {
        let weekday = day % 7 < 5;
        if weekday {
            let launches = 2 + day / 7;
            store
                .record_with("app_launch", Record::count(launches))
                .unwrap();
            store.record_with("visit", Record::count(launches)).unwrap();
        }
        if day % 3 == 0 {
            store.record("purchase");
        }
        store.record_with("items_added", Record::count(3)).unwrap();
        store
            .record_with("items_removed", Record::count(2))
            .unwrap();
        clock.advance(DAY);
    }
    // Now Monday 24 March, 08:00 (Paris, still winter time): today is empty so far.
    let launches = store.query("app_launch");
    assert_eq!(launches.last_days(1).sum(), Some(0));

    // Last week (days 1..8 back) against the week before (8..15).
    let last_week = launches.days(1..8).sum().unwrap();
    let week_before = launches.days(8..15).sum().unwrap();
    println!("launches: last week {last_week}, the week before {week_before}");
    assert_eq!((last_week, week_before), (20, 15));

    // Calendar weeks (Monday-based): this week has nothing yet.
    assert_eq!(launches.last_weeks(4).buckets(), vec![0, 20, 15, 10]);

    // Active days over the last 28, and the average on days with use.
    let active = store
        .query("app_launch")
        .last_days(28)
        .count_nonzero()
        .unwrap();
    let per_active_day = store
        .query("app_launch")
        .last_days(28)
        .average_nonzero()
        .unwrap();
    println!("active {active} of 28 days, {per_active_day:.2} launches per active day");
    assert_eq!(active, 15);
    assert_eq!(per_active_day, 3.0);

    // Purchases per visit over the last 7 days, and the inventory delta over everything kept.
    let conversion = store.query_ratio("purchase", "visit").last_days(7).unwrap();
    let inventory = store
        .query_delta("items_added", "items_removed")
        .ever()
        .sum();
    println!(
        "conversion {:.1}%, inventory {inventory}",
        conversion * 100.0
    );
    assert_eq!(store.query("purchase").last_days(7).sum(), Some(2));
    assert_eq!(store.query("visit").last_days(7).sum(), Some(16));
    assert_eq!(conversion, 2.0 / 16.0);
    assert_eq!(inventory, 21);

    // When did we last see a purchase? Exactly.
    assert_eq!(store.query("purchase").last_seen(), Some(3 * DAY));

    // Persist (one fsync), then reopen with a different configuration: 14 days and 8 weeks.
    store.persist()?;
    drop(store);
    let reopened = WindowStore::builder()
        .time_zone(paris)
        .track_days(14)
        .track_weeks(8)
        .with_clock(clock.clone())
        .with_storage(FileStorage::open(&path)?)
        .build()?;
    assert_eq!(reopened.query("app_launch").days(1..8).sum(), Some(20));
    assert_eq!(
        reopened.query("app_launch").last_weeks(4).buckets(),
        vec![0, 20, 15, 10]
    );
    assert_eq!(
        reopened.query("app_launch").last_hours(1).sum(),
        None,
        "hours no longer tracked"
    );
    assert!(!reopened.is_dirty(), "loading a key does not dirty it");
    println!(
        "after reload with {:?}: last week {} launches",
        reopened.tracked_intervals(),
        reopened.query("app_launch").days(1..8).sum().unwrap()
    );
    assert_eq!(
        reopened.tracked_intervals(),
        vec![(Unit::Day, 14), (Unit::Week, 8)]
    );
    drop(reopened);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    Ok(())
}
