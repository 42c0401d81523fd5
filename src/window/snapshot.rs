//! A key's counts outside the store: what export, import, merge and persistence move around,
//! and the conversion of counts written under another configuration or calendar.

use jiff::Timestamp;
use jiff::civil::Weekday;

use super::calendar::{Calendar, CalendarId, Unit};
use super::error::WindowError;
use super::ring::{Indexes, KeyState, Layout};

/// One key's counts and first/last-seen instants, detached from any store.
///
/// Each tracked unit keeps its ring of counts, newest first, together with the integer index of
/// its newest bucket under the calendar (time zone and first weekday) the snapshot was taken
/// in. Importing, merging or loading a snapshot happens on the receiving store's clock: counts
/// in buckets after its current one (a sender whose clock runs ahead) land in its current
/// bucket. A snapshot for a store with another configuration is converted:
/// a unit both have is copied bucket by bucket (by index, so two stores whose clocks differ
/// line up by calendar bucket); a ring that is longer keeps only its newest buckets, a shorter
/// one pads with zeros; a unit the snapshot does not have, or a snapshot from another calendar,
/// is rebuilt by replaying each bucket's count at the midpoint of the part of the bucket in
/// which its events can have happened (clipped to the exact first/last-seen instants and to
/// now), finest source unit first. That replay is an approximation; copies are exact.
///
/// # Examples
///
/// ```
/// use accrue::{time::Unit, window::{Record, WindowStore}};
///
/// let a = WindowStore::new();
/// a.record_with("signup", Record::count(3)).unwrap();
/// let snap = a.export_all()?.remove("signup").unwrap();
/// assert_eq!(snap.total(Unit::Day), Some(3));
/// assert_eq!(snap.counts(Unit::Minute).unwrap()[0], 3);
///
/// let b = WindowStore::builder().track_days(7).build()?;
/// b.merge_event("signup", snap)?;
/// assert_eq!(b.query("signup").last_days(1).sum(), Some(3));
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub(crate) calendar: CalendarId,
    pub(crate) first_seen: Option<Timestamp>,
    pub(crate) last_seen: Option<Timestamp>,
    /// Finest unit first.
    pub(crate) rings: Vec<RingSnapshot>,
}

/// One unit's ring in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RingSnapshot {
    pub(crate) unit: Unit,
    /// Index of the newest bucket.
    pub(crate) newest: i64,
    /// Counts, newest first.
    pub(crate) counts: Vec<u64>,
}

impl Snapshot {
    /// The tracked units, finest first, with their counts newest first (index 0 is the bucket
    /// that was current when the snapshot's key last advanced).
    pub fn units(&self) -> impl Iterator<Item = (Unit, &[u64])> + '_ {
        self.rings.iter().map(|r| (r.unit, r.counts.as_slice()))
    }

    /// The counts of `unit`, newest first, or `None` when it is not tracked.
    pub fn counts(&self, unit: Unit) -> Option<&[u64]> {
        self.ring(unit).map(|r| r.counts.as_slice())
    }

    /// The sum of `unit`'s ring, or `None` when it is not tracked.
    pub fn total(&self, unit: Unit) -> Option<u64> {
        self.ring(unit)
            .map(|r| r.counts.iter().fold(0u64, |a, &c| a.saturating_add(c)))
    }

    /// The exact instant of the earliest event recorded.
    pub fn first_seen(&self) -> Option<Timestamp> {
        self.first_seen
    }

    /// The exact instant of the latest event recorded.
    pub fn last_seen(&self) -> Option<Timestamp> {
        self.last_seen
    }

    /// The IANA name (or `fixed:<seconds>`) of the time zone the calendar buckets follow.
    pub fn time_zone(&self) -> &str {
        &self.calendar.zone
    }

    /// The first day of the week buckets.
    pub fn week_start(&self) -> Weekday {
        self.calendar.week_start
    }

    fn ring(&self, unit: Unit) -> Option<&RingSnapshot> {
        self.rings.iter().find(|r| r.unit == unit)
    }

    /// Captures a key.
    pub(crate) fn of(state: &KeyState, layout: &Layout, cal: &Calendar) -> Self {
        let rings = layout
            .slots()
            .iter()
            .enumerate()
            .map(|(i, s)| RingSnapshot {
                unit: s.unit,
                newest: state.newest(i),
                counts: state.newest_first(layout, i),
            })
            .collect();
        Self {
            calendar: cal.id().clone(),
            first_seen: state.first_seen(),
            last_seen: state.last_seen(),
            rings,
        }
    }

    /// Checks what decoding cannot: units in order and unique, ring lengths in bounds.
    pub(crate) fn validate(&self) -> Result<(), WindowError> {
        let mut prev: Option<Unit> = None;
        for r in &self.rings {
            if prev.is_some_and(|p| p >= r.unit) {
                return Err(WindowError::Decode("units out of order or repeated".into()));
            }
            if r.counts.is_empty() || r.counts.len() > super::ring::MAX_BUCKETS {
                return Err(WindowError::Decode(format!(
                    "{} ring of {} buckets",
                    r.unit,
                    r.counts.len()
                )));
            }
            prev = Some(r.unit);
        }
        Ok(())
    }

    /// Converts into a key of `layout` under `cal`, on the receiver's clock `now`.
    pub(crate) fn restore(
        &self,
        layout: &Layout,
        cal: &Calendar,
        now: Timestamp,
    ) -> Result<KeyState, WindowError> {
        let same_calendar = self.calendar == *cal.id();
        let source_cal;
        let src = if same_calendar {
            cal
        } else {
            source_cal = Calendar::from_id(&self.calendar)?;
            &source_cal
        };
        let mut buckets = vec![0u64; layout.total()].into_boxed_slice();
        let mut newest: Indexes = [0; 8];
        let mut replay_slots = Vec::new();
        for (i, s) in layout.slots().iter().enumerate() {
            let ring = &mut buckets[s.offset..s.offset + s.len];
            match self.ring(s.unit).filter(|_| same_calendar) {
                Some(r) => {
                    // On the receiver's clock: buckets newer than now (a sender clock ahead of
                    // ours) land in the current bucket.
                    let head = r.newest.min(cal.index(now, s.unit));
                    newest[i] = head;
                    for (k, &c) in r.counts.iter().enumerate() {
                        let idx = r.newest.saturating_sub(k as i64).min(head);
                        if head.abs_diff(idx) < s.len as u64 {
                            let slot = &mut ring[idx.rem_euclid(s.len as i64) as usize];
                            *slot = slot.saturating_add(c);
                        }
                    }
                }
                None => {
                    newest[i] = cal.index(now, s.unit);
                    replay_slots.push(i);
                }
            }
        }
        let mut state = KeyState::from_parts(layout, cal, buckets, newest);
        state.set_seen(self.first_seen, self.last_seen);
        if !replay_slots.is_empty() {
            let events = self.replay_points(src, now);
            for &slot in &replay_slots {
                let unit = layout.slots()[slot].unit;
                let head = state.newest(slot);
                for &(t, c) in &events {
                    state.add_one(layout, slot, cal.index(t, unit).min(head), c);
                }
            }
        }
        Ok(state)
    }

    /// `(instant, count)` pairs standing for every counted event, each bucket's count at the
    /// midpoint of the span its events can have happened in. Finer rings are trusted over
    /// coarser ones for the span they cover.
    fn replay_points(&self, src: &Calendar, now: Timestamp) -> Vec<(Timestamp, u64)> {
        let mut out = Vec::new();
        let mut covered_from: Option<Timestamp> = None;
        let mut finer: Option<&RingSnapshot> = None;
        for ring in &self.rings {
            let unit = ring.unit;
            for (k, &count) in ring.counts.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let idx = ring.newest - k as i64;
                let start = src.start_of(idx, unit);
                let end = src.start_of(idx.saturating_add(1), unit);
                let (lo, hi, c) = match covered_from {
                    Some(cf) if start >= cf => continue,
                    Some(cf) if end > cf => {
                        // Straddles the finer rings' start: only what they do not account for.
                        let seen = finer.map_or(0, |f| f.sum_starting_in(src, start, end));
                        (start, cf, count.saturating_sub(seen))
                    }
                    _ => (start, end, count),
                };
                if c == 0 {
                    continue;
                }
                out.push((self.midpoint(lo, hi, now), c));
            }
            let oldest = ring.newest - (ring.counts.len() as i64 - 1);
            let start = src.start_of(oldest, unit);
            covered_from = Some(covered_from.map_or(start, |cf| cf.min(start)));
            finer = Some(ring);
        }
        out
    }

    /// The middle of `[lo, hi)` narrowed to when events were seen and to `now`.
    fn midpoint(&self, lo: Timestamp, hi: Timestamp, now: Timestamp) -> Timestamp {
        let (mut a, mut b) = (lo, hi);
        if let Some(f) = self.first_seen.filter(|&f| f > a && f < b) {
            a = f;
        }
        if let Some(l) = self.last_seen.filter(|&l| l >= a && l < b) {
            b = l;
        }
        if now >= a && now < b {
            b = now;
        }
        let half = b.duration_since(a) / 2;
        a.checked_add(half).unwrap_or(a)
    }
}

impl RingSnapshot {
    /// Sum of the buckets whose start falls in `[from, to)`.
    fn sum_starting_in(&self, cal: &Calendar, from: Timestamp, to: Timestamp) -> u64 {
        let mut total = 0u64;
        for (k, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let s = cal.start_of(self.newest - k as i64, self.unit);
            if s >= from && s < to {
                total = total.saturating_add(c);
            }
        }
        total
    }
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;
    use crate::window::ring::indexes_of;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn same_layout_round_trips_exactly() {
        let cal = Calendar::utc();
        let l = Layout::new(&[(Unit::Minute, 5), (Unit::Day, 3)]).unwrap();
        let now = ts("2025-03-05T12:00:00Z");
        let mut k = KeyState::new(&l, &cal, now);
        k.record_now(&l, &cal, now, 3);
        let at = ts("2025-03-04T10:00:00Z");
        k.record_at(&l, &cal, now, at, &indexes_of(&l, &cal, at), 2);
        let snap = Snapshot::of(&k, &l, &cal);
        assert_eq!(snap.counts(Unit::Day), Some(&[3, 2, 0][..]));
        let back = snap.restore(&l, &cal, ts("2025-03-06T00:00:00Z")).unwrap();
        assert_eq!(Snapshot::of(&back, &l, &cal), snap);
    }

    #[test]
    fn finer_rings_are_trusted_over_coarser_ones() {
        let cal = Calendar::utc();
        let src = Layout::new(&[(Unit::Hour, 2), (Unit::Day, 3)]).unwrap();
        let now = ts("2025-03-05T12:30:00Z");
        let mut k = KeyState::new(&src, &cal, now);
        // 09:00 is older than the 2-hour ring: only the day ring has it.
        let at = ts("2025-03-05T09:00:00Z");
        k.record_at(&src, &cal, now, at, &indexes_of(&src, &cal, at), 4);
        k.record_now(&src, &cal, now, 1);
        let dst = Layout::new(&[(Unit::Minute, 300)]).unwrap();
        let snap = Snapshot::of(&k, &src, &cal);
        let back = snap.restore(&dst, &cal, now).unwrap();
        let m = cal.index(now, Unit::Minute);
        let b = back.buckets(&dst, 0, m, 0..300);
        assert_eq!(b.iter().sum::<u64>(), 5);
        // The hour ring's event at the middle of 12:00..12:30; the day ring's 4 uncovered
        // events in the middle of 09:00 (first seen) .. 11:00 (where the hour ring starts).
        assert_eq!(b[15], 1);
        assert_eq!(b[150], 4);
    }
}
