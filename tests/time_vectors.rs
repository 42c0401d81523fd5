//! The time-bucket vectors of the metrics stores we replace (one test per row; where
//! implementations disagree, the behaviour we chose), plus the daylight-saving cases.

use accrue::time::{Calendar, Granularity, GranularityErrorKind, Unit};
use jiff::Timestamp;
use jiff::civil::Weekday;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn g(s: &str) -> Granularity {
    s.parse().unwrap()
}

fn zone(name: &str) -> Calendar {
    Calendar::from_name(name).unwrap()
}

fn floor(cal: &Calendar, at: &str, gran: &str) -> String {
    cal.floor(t(at), g(gran)).unwrap().to_string()
}

fn unix(cal: &Calendar, at: &str, gran: &str) -> i64 {
    cal.floor(t(at), g(gran)).unwrap().as_second()
}

fn timeline(cal: &Calendar, from: &str, to: &str, gran: &str) -> Vec<String> {
    cal.timeline(t(from), t(to), g(gran))
        .unwrap()
        .map(|p| p.to_string())
        .collect()
}

fn names(list: &[Granularity]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

// ---------------------------------------------------------------- A. parsing and configuration

#[test]
fn a1_parse_15m() {
    let g = g("15m");
    assert_eq!((g.count(), g.unit()), (15, Unit::Minute));
}

#[test]
fn a2_parse_invalid() {
    let err = "invalid".parse::<Granularity>().unwrap_err();
    assert_eq!(err.input(), "invalid");
    assert_eq!(err.kind(), GranularityErrorKind::MissingCount);
    assert!(err.to_string().contains("\"invalid\""), "{err}");
}

#[test]
fn a3_zero_is_rejected() {
    let err = "0m".parse::<Granularity>().unwrap_err();
    assert_eq!(
        (err.input(), err.kind()),
        ("0m", GranularityErrorKind::Zero)
    );
    assert!(Granularity::new(0, Unit::Minute).is_err());
}

#[test]
fn a4_malformed_strings_are_rejected_with_their_reason() {
    use GranularityErrorKind::*;
    for (input, kind) in [
        ("1M", UnknownUnit),
        ("m", MissingCount),
        ("10", MissingUnit),
        ("1hour", UnknownUnit),
        ("-1h", MissingCount),
        (" 1h", MissingCount),
        ("1h ", UnknownUnit),
        ("1x", UnknownUnit),
        ("1H", UnknownUnit),
        ("", Empty),
        ("4294967296s", Overflow),
        ("99999999999999999999d", Overflow),
    ] {
        let err = input.parse::<Granularity>().unwrap_err();
        assert_eq!(err.kind(), kind, "{input:?}");
        assert_eq!(err.input(), input);
        assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
    }
    assert_eq!(g("4294967295s").count(), u32::MAX);
}

#[test]
fn a5_leading_zero_is_rejected() {
    let err = "01h".parse::<Granularity>().unwrap_err();
    assert_eq!(err.kind(), GranularityErrorKind::LeadingZero);
    assert!(err.to_string().contains("\"1h\""), "names the fix: {err}");
    assert_eq!(
        "00h".parse::<Granularity>().unwrap_err().kind(),
        GranularityErrorKind::Zero
    );
}

#[test]
fn a6_every_unit_parses_and_round_trips() {
    for (s, unit) in [
        ("30s", Unit::Second),
        ("2w", Unit::Week),
        ("1mo", Unit::Month),
        ("1q", Unit::Quarter),
        ("1y", Unit::Year),
        ("5m", Unit::Minute),
        ("6h", Unit::Hour),
        ("7d", Unit::Day),
    ] {
        assert_eq!(g(s).unit(), unit);
        assert_eq!(g(s).to_string(), s);
    }
}

#[test]
fn a7_lenient_list_drops_invalid_and_duplicates() {
    let (list, dropped) = Granularity::parse_list_lenient(["1m", "1h", "1h", "invalid", "1d"]);
    assert_eq!(names(&list), ["1m", "1h", "1d"]);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].input(), "invalid");
}

#[test]
fn a8_lenient_list_keeps_first_occurrence_order() {
    let (list, _) = Granularity::parse_list_lenient(["1h", "1d", "invalid", "1h"]);
    assert_eq!(names(&list), ["1h", "1d"]);
}

#[test]
fn a9_lenient_lists_like_ruby() {
    let lenient = |items: &[&str]| names(&Granularity::parse_list_lenient(items.iter()).0);
    assert_eq!(
        lenient(&["1h", "1d", "1y", "1whatever"]),
        ["1h", "1d", "1y"]
    );
    assert!(lenient(&["1foo", "1bar"]).is_empty());
    assert!(lenient(&[]).is_empty());
    assert_eq!(lenient(&["1h", "1d", "1h", "1d"]), ["1h", "1d"]);
    // `nil` → the default list (the metrics store's config uses it when none is given).
    assert_eq!(
        names(&Granularity::DEFAULTS),
        ["1m", "1h", "1d", "1w", "1mo", "1q", "1y"]
    );
}

#[test]
fn a10_calendar_defaults() {
    let cal = Calendar::utc();
    assert_eq!(cal.week_start(), Weekday::Monday);
    assert!(Calendar::from_name("GMT").is_ok());
}

#[test]
fn a11_invalid_time_zone_is_a_typed_error_naming_it() {
    // Upstream falls back to UTC/GMT silently; we refuse (the zone moves every boundary).
    let err = Calendar::from_name("Invalid/Timezone").unwrap_err();
    assert_eq!(err.name(), "Invalid/Timezone");
    assert!(err.to_string().contains("\"Invalid/Timezone\""), "{err}");
}

// ---------------------------------------------------------------- B. floor in UTC

#[test]
fn b1_15m() {
    assert_eq!(
        floor(&Calendar::utc(), "2025-01-15T10:37:45Z", "15m"),
        "2025-01-15T10:30:00Z"
    );
}

#[test]
fn b2_1h() {
    assert_eq!(
        unix(&Calendar::utc(), "2023-03-15T14:30:45Z", "1h"),
        1_678_888_800
    );
}

#[test]
fn b3_1d() {
    assert_eq!(
        unix(&Calendar::utc(), "2023-03-15T14:30:45Z", "1d"),
        1_678_838_400
    );
}

#[test]
fn b4_several_granularities() {
    let cal = Calendar::utc();
    let at = "2023-01-15T14:30:00Z";
    assert_eq!(floor(&cal, at, "1m"), "2023-01-15T14:30:00Z");
    assert_eq!(floor(&cal, at, "1h"), "2023-01-15T14:00:00Z");
    assert_eq!(floor(&cal, at, "1d"), "2023-01-15T00:00:00Z");
    assert_eq!(floor(&cal, at, "1mo"), "2023-01-01T00:00:00Z");
}

#[test]
fn b5_partial_week_zero() {
    assert_eq!(
        floor(&Calendar::utc(), "2025-01-02T12:00:00Z", "1w"),
        "2025-01-01T00:00:00Z"
    );
}

#[test]
fn b6_week_of_a_sunday() {
    assert_eq!(
        unix(&Calendar::utc(), "2025-08-17T14:35:42Z", "1w"),
        1_754_870_400
    );
}

#[test]
fn b7_33m() {
    assert_eq!(
        floor(&Calendar::utc(), "2025-08-17T10:37:45Z", "33m"),
        "2025-08-17T10:33:00Z"
    );
}

#[test]
fn b8_week_start_sunday_or_monday() {
    let sunday = Calendar::utc().with_week_start(Weekday::Sunday);
    assert_eq!(
        floor(&sunday, "2025-01-08T12:00:00Z", "1w"),
        "2025-01-05T00:00:00Z"
    );
    assert_eq!(
        floor(&Calendar::utc(), "2025-01-08T12:00:00Z", "1w"),
        "2025-01-06T00:00:00Z"
    );
}

#[test]
fn b9_last_week_of_the_year() {
    assert_eq!(
        floor(&Calendar::utc(), "2025-12-31T12:00:00Z", "1w"),
        "2025-12-29T00:00:00Z"
    );
}

#[test]
fn b10_year_starting_on_a_sunday() {
    assert_eq!(
        floor(&Calendar::utc(), "2023-01-01T10:00:00Z", "1w"),
        "2023-01-01T00:00:00Z"
    );
}

#[test]
fn b11_two_weeks() {
    let cal = Calendar::utc();
    assert_eq!(
        floor(&cal, "2024-01-03T10:00:00Z", "2w"),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(
        floor(&cal, "2024-01-16T10:00:00Z", "2w"),
        "2024-01-15T00:00:00Z"
    );
}

#[test]
fn b12_seven_days_restart_every_year() {
    let cal = Calendar::utc();
    assert_eq!(
        floor(&cal, "2024-12-31T12:00:00Z", "7d"),
        "2024-12-30T00:00:00Z"
    );
    assert_eq!(
        floor(&cal, "2025-12-31T12:00:00Z", "7d"),
        "2025-12-31T00:00:00Z"
    );
}

#[test]
fn b13_months_quarters_decades() {
    let cal = Calendar::utc();
    assert_eq!(
        floor(&cal, "2025-11-20T12:00:00Z", "5mo"),
        "2025-11-01T00:00:00Z"
    );
    assert_eq!(
        floor(&cal, "2025-11-20T12:00:00Z", "2q"),
        "2025-07-01T00:00:00Z"
    );
    assert_eq!(
        floor(&cal, "2025-11-20T12:00:00Z", "10y"),
        "2020-01-01T00:00:00Z"
    );
}

// ---------------------------------------------------------------- C. floor in other zones

const C_AT: &str = "2024-03-15T13:47:12Z";

#[test]
fn c1_bratislava_seconds_and_minutes() {
    let br = zone("Europe/Bratislava");
    assert_eq!(unix(&br, C_AT, "30s"), 1_710_510_420);
    assert_eq!(unix(&br, C_AT, "1m"), 1_710_510_420);
}

#[test]
fn c2_bratislava_15m() {
    assert_eq!(unix(&zone("Europe/Bratislava"), C_AT, "15m"), 1_710_510_300);
}

#[test]
fn c3_bratislava_1h() {
    assert_eq!(unix(&zone("Europe/Bratislava"), C_AT, "1h"), 1_710_507_600);
}

#[test]
fn c4_bratislava_6h() {
    assert_eq!(unix(&zone("Europe/Bratislava"), C_AT, "6h"), 1_710_500_400);
}

#[test]
fn c5_bratislava_1d() {
    assert_eq!(unix(&zone("Europe/Bratislava"), C_AT, "1d"), 1_710_457_200);
}

#[test]
fn c6_bratislava_weeks() {
    let br = zone("Europe/Bratislava");
    for gran in ["7d", "1w", "2w"] {
        assert_eq!(unix(&br, C_AT, gran), 1_710_111_600, "{gran}");
    }
}

#[test]
fn c7_bratislava_months() {
    let br = zone("Europe/Bratislava");
    for gran in ["1mo", "2mo"] {
        assert_eq!(unix(&br, C_AT, gran), 1_709_247_600, "{gran}");
    }
}

#[test]
fn c8_bratislava_quarter_and_year() {
    let br = zone("Europe/Bratislava");
    for gran in ["1q", "1y"] {
        assert_eq!(unix(&br, C_AT, gran), 1_704_063_600, "{gran}");
    }
}

#[test]
fn c9_kolkata_half_hour_offset() {
    let kolkata = zone("Asia/Kolkata");
    assert_eq!(unix(&kolkata, C_AT, "1h"), 1_710_509_400);
    assert_eq!(unix(&kolkata, C_AT, "1d"), 1_710_441_000);
}

#[test]
fn c10_new_york_local_date_differs_from_utc() {
    assert_eq!(
        unix(&zone("America/New_York"), "2024-03-15T03:30:00Z", "1d"),
        1_710_388_800
    );
}

#[test]
fn c11_gmt() {
    assert_eq!(unix(&zone("GMT"), C_AT, "1d"), 1_710_460_800);
    // The invalid-zone half of this row is a typed error here (see a11).
    assert!(Calendar::from_name("Not/AZone").is_err());
}

// ---------------------------------------------------------------- D. DST

#[test]
fn d1_week_counts_civil_days_not_elapsed_hours() {
    // Go counts elapsed 168 h and puts Monday 00:30 after spring-forward in the previous week.
    let br = zone("Europe/Bratislava");
    assert_eq!(
        floor(&br, "2024-03-31T22:30:00Z", "1w"),
        "2024-03-31T22:00:00Z"
    ); // 04-01 00:00+02
}

#[test]
fn d2_repeated_hour_floors_to_the_occurrence_with_the_inputs_offset() {
    let br = zone("Europe/Bratislava");
    // 02:30+02:00 (first occurrence): Go answers 01:00Z, after the input.
    assert_eq!(
        floor(&br, "2024-10-27T00:30:00Z", "1h"),
        "2024-10-27T00:00:00Z"
    );
    // 02:30+01:00 (second occurrence).
    assert_eq!(
        floor(&br, "2024-10-27T01:30:00Z", "1h"),
        "2024-10-27T01:00:00Z"
    );
    // The day is one bucket starting at midnight +02:00.
    assert_eq!(
        floor(&br, "2024-10-27T01:30:00Z", "1d"),
        "2024-10-26T22:00:00Z"
    );
}

#[test]
fn d3_nonexistent_midnight_starts_at_the_transition() {
    // Sao Paulo 2018-11-04 00:00 does not exist: the day starts at 01:00-02:00 (Go: the
    // previous evening, Ruby: shifted by the input's offset).
    let sp = zone("America/Sao_Paulo");
    assert_eq!(
        floor(&sp, "2018-11-04T12:00:00Z", "1d"),
        "2018-11-04T03:00:00Z"
    );
    assert_eq!(
        floor(&sp, "2018-11-04T03:00:00Z", "1d"),
        "2018-11-04T03:00:00Z"
    );
    assert_eq!(
        floor(&sp, "2018-11-04T02:59:59Z", "1d"),
        "2018-11-03T03:00:00Z"
    );
}

#[test]
fn d4_boundary_at_gap_start_is_the_transition_instant() {
    let br = zone("Europe/Bratislava");
    // 2024-03-31: 02:00+01:00 -> 03:00+02:00 at 01:00Z.
    assert_eq!(
        floor(&br, "2024-03-31T01:30:00Z", "2h"),
        "2024-03-31T01:00:00Z"
    );
    assert_eq!(
        floor(&br, "2024-03-31T01:30:00Z", "1h"),
        "2024-03-31T01:00:00Z"
    );
    assert_eq!(
        floor(&br, "2024-03-31T00:59:59Z", "1h"),
        "2024-03-31T00:00:00Z"
    );
}

#[test]
fn d5_summer_and_winter_instants_share_the_year_bucket() {
    // Ruby floors summer instants with +02:00 and splits the year in two keys.
    let br = zone("Europe/Bratislava");
    for at in [
        "2024-07-01T12:00:00Z",
        "2024-01-15T12:00:00Z",
        "2024-12-31T22:59:59Z",
    ] {
        assert_eq!(floor(&br, at, "1y"), "2023-12-31T23:00:00Z", "{at}");
        assert_eq!(floor(&br, at, "1q").len(), 20);
    }
    assert_eq!(
        floor(&br, "2024-07-01T12:00:00Z", "1mo"),
        "2024-06-30T22:00:00Z"
    );
}

#[test]
fn d6_boundary_inside_a_30_minute_gap_clamps_to_the_transition() {
    // Lord Howe 2021-10-03 02:00+10:30 -> 02:30+11:00 at 15:30Z; the 7m boundary 02:28 is
    // inside the gap. Shifting by the gap (Go) gives 15:58Z, after the input.
    let lh = zone("Australia/Lord_Howe");
    assert_eq!(
        floor(&lh, "2021-10-02T15:30:00Z", "7m"),
        "2021-10-02T15:30:00Z"
    );
    assert_eq!(
        floor(&lh, "2021-10-02T15:34:00Z", "7m"),
        "2021-10-02T15:30:00Z"
    );
    assert_eq!(
        floor(&lh, "2021-10-02T15:35:00Z", "7m"),
        "2021-10-02T15:35:00Z"
    ); // 02:35
}

#[test]
fn d7_repeated_midnight_keeps_the_inputs_offset() {
    // Havana 2024-11-03: 01:00-04:00 -> 00:00-05:00, so midnight happens twice (04:00Z, 05:00Z).
    // An ambiguous boundary takes the occurrence with the input's offset.
    let havana = zone("America/Havana");
    assert_eq!(
        floor(&havana, "2024-11-03T04:30:00Z", "1d"),
        "2024-11-03T04:00:00Z"
    );
    assert_eq!(
        floor(&havana, "2024-11-03T12:00:00Z", "1d"),
        "2024-11-03T05:00:00Z"
    );
    let days = timeline(
        &havana,
        "2024-11-02T12:00:00Z",
        "2024-11-04T12:00:00Z",
        "1d",
    );
    assert_eq!(
        days,
        [
            "2024-11-02T04:00:00Z",
            "2024-11-03T04:00:00Z",
            "2024-11-03T05:00:00Z",
            "2024-11-04T05:00:00Z"
        ]
    );
    // Hourly buckets keep both occurrences.
    assert_eq!(
        floor(&havana, "2024-11-03T04:30:00Z", "1h"),
        "2024-11-03T04:00:00Z"
    );
    assert_eq!(
        floor(&havana, "2024-11-03T05:30:00Z", "1h"),
        "2024-11-03T05:00:00Z"
    );
}

#[test]
fn d8_partial_repeat_starts_a_bucket_at_the_change() {
    // Lord Howe 2021-04-04 02:00+11:00 -> 01:30+10:30 at 15:00Z (2021-04-03). With 7m the
    // wall clock had left the 01:28 bucket before the change: 01:30+10:30 starts a new one
    // instead of jumping back to 01:28+11:00.
    let lh = zone("Australia/Lord_Howe");
    assert_eq!(
        floor(&lh, "2021-04-03T15:00:00Z", "7m"),
        "2021-04-03T15:00:00Z"
    );
    assert_eq!(
        floor(&lh, "2021-04-03T15:04:59Z", "7m"),
        "2021-04-03T15:00:00Z"
    );
    assert_eq!(
        floor(&lh, "2021-04-03T15:05:00Z", "7m"),
        "2021-04-03T15:05:00Z"
    ); // 01:35+10:30
    // With 1h the 01:00 bucket spans the repeat (1.5 elapsed hours).
    assert_eq!(
        floor(&lh, "2021-04-03T15:20:00Z", "1h"),
        "2021-04-03T14:00:00Z"
    );
}

// ---------------------------------------------------------------- E. add

fn add(cal: &Calendar, at: &str, gran: &str) -> String {
    cal.add(t(at), g(gran)).unwrap().to_string()
}

#[test]
fn e1_month_end_clamps() {
    assert_eq!(
        add(&Calendar::utc(), "2025-01-31T10:00:00Z", "1mo"),
        "2025-02-28T10:00:00Z"
    );
}

#[test]
fn e2_leap_february() {
    assert_eq!(
        add(&Calendar::utc(), "2024-01-31T10:00:00Z", "1mo"),
        "2024-02-29T10:00:00Z"
    );
}

#[test]
fn e3_leap_day_plus_a_year() {
    assert_eq!(
        add(&Calendar::utc(), "2024-02-29T10:00:00Z", "1y"),
        "2025-02-28T10:00:00Z"
    );
}

#[test]
fn e4_quarter_clamps() {
    assert_eq!(
        add(&Calendar::utc(), "2024-11-30T00:00:00Z", "1q"),
        "2025-02-28T00:00:00Z"
    );
}

#[test]
fn e5_hour_keeps_seconds() {
    assert_eq!(
        add(&Calendar::utc(), "2025-01-15T10:37:45Z", "1h"),
        "2025-01-15T11:37:45Z"
    );
}

#[test]
fn e6_hours_and_days() {
    let cal = Calendar::utc();
    assert_eq!(
        add(&cal, "2023-03-15T14:30:45Z", "2h"),
        "2023-03-15T16:30:45Z"
    );
    assert_eq!(
        add(&cal, "2023-03-15T14:30:45Z", "1d"),
        "2023-03-16T14:30:45Z"
    );
}

#[test]
fn e7_calendar_day_across_spring_forward() {
    let br = zone("Europe/Bratislava");
    let out = br.add(t("2026-03-28T11:00:00Z"), g("1d")).unwrap();
    assert_eq!(out.as_second(), 1_774_778_400); // 2026-03-29T12:00+02:00
}

#[test]
fn e8_24_hours_are_elapsed() {
    let br = zone("Europe/Bratislava");
    assert_eq!(
        add(&br, "2026-03-28T11:00:00Z", "24h"),
        "2026-03-29T11:00:00Z"
    );
}

// ---------------------------------------------------------------- F. timeline

#[test]
fn f1_15m() {
    let points = timeline(
        &Calendar::utc(),
        "2025-01-15T10:37:00Z",
        "2025-01-15T11:05:00Z",
        "15m",
    );
    assert_eq!(
        points,
        [
            "2025-01-15T10:30:00Z",
            "2025-01-15T10:45:00Z",
            "2025-01-15T11:00:00Z"
        ]
    );
}

#[test]
fn f2_hours_inclusive() {
    let points = timeline(
        &Calendar::utc(),
        "2023-03-15T10:00:00Z",
        "2023-03-15T12:00:00Z",
        "1h",
    );
    assert_eq!(
        points,
        [
            "2023-03-15T10:00:00Z",
            "2023-03-15T11:00:00Z",
            "2023-03-15T12:00:00Z"
        ]
    );
}

#[test]
fn f3_days() {
    let points = timeline(
        &Calendar::utc(),
        "2023-03-15T00:00:00Z",
        "2023-03-17T00:00:00Z",
        "1d",
    );
    assert_eq!(
        points,
        [
            "2023-03-15T00:00:00Z",
            "2023-03-16T00:00:00Z",
            "2023-03-17T00:00:00Z"
        ]
    );
}

#[test]
fn f4_single_point() {
    let points = timeline(
        &Calendar::utc(),
        "2023-03-15T10:00:00Z",
        "2023-03-15T10:00:00Z",
        "1h",
    );
    assert_eq!(points, ["2023-03-15T10:00:00Z"]);
}

#[test]
fn f5_four_hours() {
    let points = timeline(
        &Calendar::utc(),
        "2025-08-17T10:00:00Z",
        "2025-08-17T13:00:00Z",
        "1h",
    );
    assert_eq!(points.len(), 4);
    assert!(points.iter().all(|p| p.ends_with(":00:00Z")));
}

#[test]
fn f6_from_after_to_is_empty() {
    assert!(
        timeline(
            &Calendar::utc(),
            "2025-01-15T12:00:00Z",
            "2025-01-15T10:00:00Z",
            "1h"
        )
        .is_empty()
    );
}

#[test]
fn f7_months() {
    let points = timeline(
        &Calendar::utc(),
        "2024-11-15T00:00:00Z",
        "2025-02-15T00:00:00Z",
        "1mo",
    );
    assert_eq!(
        points,
        [
            "2024-11-01T00:00:00Z",
            "2024-12-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
            "2025-02-01T00:00:00Z"
        ]
    );
}

// The timeline cases where plain `add` misses written buckets.

#[test]
fn f8_33m_restarts_every_hour() {
    let points = timeline(
        &Calendar::utc(),
        "2025-01-15T10:00:00Z",
        "2025-01-15T12:10:00Z",
        "33m",
    );
    let hm: Vec<&str> = points.iter().map(|p| &p[11..16]).collect();
    assert_eq!(hm, ["10:00", "10:33", "11:00", "11:33", "12:00"]);
}

#[test]
fn f9_5h_reaches_the_midnight_bucket() {
    let points = timeline(
        &Calendar::utc(),
        "2025-08-17T18:00:00Z",
        "2025-08-18T02:00:00Z",
        "5h",
    );
    assert_eq!(
        points,
        [
            "2025-08-17T15:00:00Z",
            "2025-08-17T20:00:00Z",
            "2025-08-18T00:00:00Z"
        ]
    );
}

#[test]
fn f10_7d_across_new_year() {
    let points = timeline(
        &Calendar::utc(),
        "2025-12-20T00:00:00Z",
        "2026-01-10T00:00:00Z",
        "7d",
    );
    assert_eq!(
        points,
        [
            "2025-12-17T00:00:00Z",
            "2025-12-24T00:00:00Z",
            "2025-12-31T00:00:00Z",
            "2026-01-01T00:00:00Z",
            "2026-01-08T00:00:00Z"
        ]
    );
}

#[test]
fn f11_1w_includes_the_partial_week_zero() {
    let points = timeline(
        &Calendar::utc(),
        "2024-12-25T00:00:00Z",
        "2025-01-08T00:00:00Z",
        "1w",
    );
    assert_eq!(
        points,
        [
            "2024-12-23T00:00:00Z",
            "2024-12-30T00:00:00Z",
            "2025-01-01T00:00:00Z",
            "2025-01-06T00:00:00Z"
        ]
    );
}

#[test]
fn f12_fall_back_5h_does_not_get_stuck() {
    // Bratislava 2024-10-27: the 00:00-05:00 local bucket lasts six elapsed hours.
    let br = zone("Europe/Bratislava");
    let points = timeline(&br, "2024-10-26T22:00:00Z", "2024-10-27T12:00:00Z", "5h");
    assert_eq!(
        points,
        [
            "2024-10-26T22:00:00Z",
            "2024-10-27T04:00:00Z",
            "2024-10-27T09:00:00Z"
        ]
    );
}

#[test]
fn f13_hourly_timeline_across_dst() {
    let br = zone("Europe/Bratislava");
    // Spring forward skips 02:00 local: 00:00, 01:00, 03:00, 04:00 local.
    let spring = timeline(&br, "2024-03-30T23:00:00Z", "2024-03-31T02:00:00Z", "1h");
    assert_eq!(
        spring,
        [
            "2024-03-30T23:00:00Z",
            "2024-03-31T00:00:00Z",
            "2024-03-31T01:00:00Z",
            "2024-03-31T02:00:00Z"
        ]
    );
    // Fall back holds both 02:00 local buckets (00:00Z and 01:00Z).
    let fall = timeline(&br, "2024-10-26T23:00:00Z", "2024-10-27T02:00:00Z", "1h");
    assert_eq!(
        fall,
        [
            "2024-10-26T23:00:00Z",
            "2024-10-27T00:00:00Z",
            "2024-10-27T01:00:00Z",
            "2024-10-27T02:00:00Z"
        ]
    );
    let day = timeline(&br, "2024-10-26T22:00:00Z", "2024-10-27T22:59:59Z", "1h");
    assert_eq!(day.len(), 25);
    let day = timeline(&br, "2024-03-30T23:00:00Z", "2024-03-31T21:59:59Z", "1h");
    assert_eq!(day.len(), 23);
}
