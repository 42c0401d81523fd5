//! Unit tests of the private helpers; the reference vectors and properties are in `tests/time_*.rs`.

use super::calendar::Gap;
use super::*;

#[test]
fn resolve_gap_clamps_to_the_transition_or_shifts() {
    // Sao Paulo 2018-11-04: 00:00 local does not exist (00:00 -> 01:00, -03:00 -> -02:00).
    let cal = Calendar::from_name("America/Sao_Paulo").unwrap();
    let midnight = 1_541_289_600; // 2018-11-04T00:00 as local seconds
    assert_eq!(
        cal.resolve(midnight, None, Gap::Clamp).unwrap(),
        1_541_300_400
    ); // 03:00Z
    assert_eq!(
        cal.resolve(midnight, None, Gap::Shift).unwrap(),
        1_541_300_400
    );
    // 00:30 local: the clamp stays at the transition, the shift moves by the gap.
    assert_eq!(
        cal.resolve(midnight + 1800, None, Gap::Clamp).unwrap(),
        1_541_300_400
    );
    assert_eq!(
        cal.resolve(midnight + 1800, None, Gap::Shift).unwrap(),
        1_541_302_200
    );
}

#[test]
fn resolve_fold_prefers_the_given_offset_else_the_earlier() {
    // Bratislava 2024-10-27 02:00 local occurs at 00:00Z (+02:00) and 01:00Z (+01:00).
    let cal = Calendar::from_name("Europe/Bratislava").unwrap();
    let two = 1_729_994_400; // 2024-10-27T02:00 local seconds
    assert_eq!(
        cal.resolve(two, Some(7200), Gap::Clamp).unwrap(),
        1_729_987_200
    );
    assert_eq!(
        cal.resolve(two, Some(3600), Gap::Clamp).unwrap(),
        1_729_990_800
    );
    assert_eq!(cal.resolve(two, None, Gap::Clamp).unwrap(), 1_729_987_200);
    assert_eq!(
        cal.resolve(two, Some(0), Gap::Clamp).unwrap(),
        1_729_987_200
    );
}
