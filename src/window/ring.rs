//! One key's counts: a single contiguous array holding one ring of buckets per tracked unit.
//!
//! Every bucket has an integer index per unit (see [`Calendar`]); the bucket with index `i`
//! lives in slot `i mod len` of its unit's ring, and the ring holds the indexes
//! `newest - len + 1 ..= newest`. Advancing the ring to a later index zeroes the slots it
//! reuses; nothing ever moves. Reads never rotate: they compute which stored indexes a window
//! covers, so queries only need the key's shard locked shared and never block each other.
//!
//! The instants at which every ring's newest bucket starts and ends are cached
//! (`valid_from..valid_until`): while the clock stays inside, a record adds to the newest
//! buckets' counts without any calendar arithmetic.

use std::ops::Range;

use jiff::Timestamp;

use super::calendar::{Calendar, Unit, UnitExt};
use super::error::WindowError;

/// Most buckets one unit may track (the same bound as tiny-counter's).
pub(crate) const MAX_BUCKETS: usize = 100_000;

/// Where each tracked unit's ring lives in a key's bucket array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    slots: Vec<Slot>,
    /// Slot index per unit ordinal, `NONE` when untracked.
    by_unit: [u8; 8],
    total: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) unit: Unit,
    pub(crate) len: usize,
    pub(crate) offset: usize,
}

const NONE: u8 = u8::MAX;

impl Layout {
    /// Validates and lays out `(unit, bucket count)` pairs; a unit given twice keeps the last
    /// count.
    pub(crate) fn new(units: &[(Unit, usize)]) -> Result<Self, WindowError> {
        let mut counts = [0usize; 8];
        for &(unit, count) in units {
            if count == 0 || count > MAX_BUCKETS {
                return Err(WindowError::InvalidBucketCount { unit, count });
            }
            counts[unit.ordinal()] = count;
        }
        let mut slots = Vec::new();
        let mut by_unit = [NONE; 8];
        let mut offset = 0;
        for unit in Unit::ALL {
            let len = counts[unit.ordinal()];
            if len > 0 {
                by_unit[unit.ordinal()] = slots.len() as u8;
                slots.push(Slot { unit, len, offset });
                offset += len;
            }
        }
        if slots.is_empty() {
            return Err(WindowError::NoUnits);
        }
        Ok(Self {
            slots,
            by_unit,
            total: offset,
        })
    }

    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub(crate) fn slot_of(&self, unit: Unit) -> Option<usize> {
        match self.by_unit[unit.ordinal()] {
            NONE => None,
            i => Some(usize::from(i)),
        }
    }

    pub(crate) fn len_of(&self, unit: Unit) -> Option<usize> {
        self.slot_of(unit).map(|i| self.slots[i].len)
    }

    /// The coarsest tracked unit, which `ever()` reads.
    pub(crate) fn longest(&self) -> usize {
        self.slots.len() - 1
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }
}

/// The indexes of one instant, per slot of a layout.
pub(crate) type Indexes = [i64; 8];

/// Per-slot indexes of `t`.
pub(crate) fn indexes_of(layout: &Layout, cal: &Calendar, t: Timestamp) -> Indexes {
    let mut out = [0; 8];
    for (i, s) in layout.slots.iter().enumerate() {
        out[i] = cal.index(t, s.unit);
    }
    out
}

/// One key's rings and metadata. Guarded by its shard's lock.
///
/// The count of each ring's newest bucket lives in `current`, next to the fields a record
/// reads, and its slot in `buckets` stays zero until the ring advances past it: a record on
/// the fast path touches one or two cache lines, not one per ring.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct KeyState {
    // What a record on the fast path reads and writes, in the entry's first two cache lines
    // (after the 16-byte key): flags, the cached bucket span, last seen, the current counts.
    /// Changed since the last persist (and listed in the store's dirty set).
    pub(crate) dirty: bool,
    /// Created while the stored copy could not be read: merge the stored copy in before
    /// persisting, never overwrite it.
    pub(crate) unloaded: bool,
    /// The instants (Unix nanoseconds) at which every ring's newest bucket has started and
    /// the first ring's newest bucket ends: inside, a record needs no calendar arithmetic.
    /// Empty (`MAX..MIN`) when not representable.
    valid_from: i64,
    valid_until: i64,
    /// Exact instant of the latest event ever recorded for this key.
    last_seen: Seen,
    /// Count of the newest bucket of each ring.
    current: [u64; 8],
    /// Exact instant of the earliest event ever recorded for this key.
    first_seen: Seen,
    /// Reserved slots not yet committed or cancelled.
    pub(crate) pending: u64,
    /// Index of the newest bucket each ring holds.
    newest: Indexes,
    /// Every ring, one after the other; the newest bucket's slot is kept at zero.
    buckets: Box<[u64]>,
}

/// An optional exact instant in 16 bytes (`Option<Timestamp>` takes 24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    /// Unix seconds; `i64::MIN` for none (jiff's range ends far above it).
    secs: i64,
    nanos: i32,
}

impl Seen {
    const NONE: Self = Self {
        secs: i64::MIN,
        nanos: 0,
    };

    fn of(t: Option<Timestamp>) -> Self {
        t.map_or(Self::NONE, |t| Self {
            secs: t.as_second(),
            nanos: t.subsec_nanosecond(),
        })
    }

    #[inline]
    fn get(self) -> Option<Timestamp> {
        if self.secs == i64::MIN {
            None
        } else {
            Timestamp::new(self.secs, self.nanos).ok()
        }
    }
}

/// `t` in Unix nanoseconds, when that fits an `i64` (years 1677 to 2262).
#[inline]
fn nanos(t: Timestamp) -> Option<i64> {
    i64::try_from(t.as_nanosecond()).ok()
}

impl KeyState {
    /// An empty key whose rings end at the buckets of `now`.
    pub(crate) fn new(layout: &Layout, cal: &Calendar, now: Timestamp) -> Self {
        Self::from_parts(
            layout,
            cal,
            vec![0; layout.total].into_boxed_slice(),
            indexes_of(layout, cal, now),
        )
    }

    /// Builds a key from a bucket array laid out per `layout` (newest buckets included) and
    /// each ring's newest index.
    pub(crate) fn from_parts(
        layout: &Layout,
        cal: &Calendar,
        mut buckets: Box<[u64]>,
        newest: Indexes,
    ) -> Self {
        debug_assert_eq!(buckets.len(), layout.total);
        let mut current = [0; 8];
        for (i, s) in layout.slots.iter().enumerate() {
            let p = s.offset + ring_pos(newest[i], s.len);
            current[i] = std::mem::take(&mut buckets[p]);
        }
        let mut s = Self {
            valid_from: i64::MAX,
            valid_until: i64::MIN,
            current,
            last_seen: Seen::NONE,
            first_seen: Seen::NONE,
            pending: 0,
            dirty: false,
            unloaded: false,
            newest,
            buckets,
        };
        s.refresh_cache(layout, cal);
        s
    }

    fn refresh_cache(&mut self, layout: &Layout, cal: &Calendar) {
        let mut from = Timestamp::MIN;
        let mut until = Timestamp::MAX;
        for (i, s) in layout.slots.iter().enumerate() {
            from = from.max(cal.start_of(self.newest[i], s.unit));
            until = until.min(cal.start_of(self.newest[i].saturating_add(1), s.unit));
        }
        match (nanos(from), nanos(until)) {
            (Some(from), Some(until)) => {
                self.valid_from = from;
                self.valid_until = until;
            }
            _ => {
                self.valid_from = i64::MAX;
                self.valid_until = i64::MIN;
            }
        }
    }

    /// Whether `t` falls in every ring's newest bucket.
    #[inline]
    fn is_current(&self, t: Timestamp) -> bool {
        match nanos(t) {
            Some(t) => self.valid_from <= t && t < self.valid_until,
            None => false,
        }
    }

    /// The index of `t` in slot `slot`, from the cache when `t` is current.
    #[inline]
    pub(crate) fn index_in(
        &self,
        layout: &Layout,
        cal: &Calendar,
        slot: usize,
        t: Timestamp,
    ) -> i64 {
        if self.is_current(t) {
            self.newest[slot]
        } else {
            cal.index(t, layout.slots[slot].unit)
        }
    }

    /// Advances every ring whose newest bucket is older than `now`'s, zeroing what it reuses,
    /// and returns `now`'s indexes. A clock that went backwards changes nothing.
    pub(crate) fn advance(&mut self, layout: &Layout, cal: &Calendar, now: Timestamp) -> Indexes {
        if self.is_current(now) {
            return self.newest;
        }
        let idx = indexes_of(layout, cal, now);
        self.advance_to(layout, cal, &idx);
        idx
    }

    fn advance_to(&mut self, layout: &Layout, cal: &Calendar, idx: &Indexes) {
        let mut moved = false;
        for (i, s) in layout.slots.iter().enumerate() {
            let old = self.newest[i];
            let new = idx[i];
            if new <= old {
                continue;
            }
            moved = true;
            let ring = &mut self.buckets[s.offset..s.offset + s.len];
            let gap = new.abs_diff(old);
            let done = std::mem::take(&mut self.current[i]);
            if gap >= s.len as u64 {
                ring.fill(0);
            } else {
                let mut p = ring_pos(old, s.len);
                ring[p] = done;
                for _ in 0..gap {
                    p += 1;
                    if p == s.len {
                        p = 0;
                    }
                    ring[p] = 0;
                }
            }
            self.newest[i] = new;
        }
        if moved {
            self.refresh_cache(layout, cal);
        }
    }

    /// Records `count` events that happened at `now` (the clock's instant).
    #[inline]
    pub(crate) fn record_now(
        &mut self,
        layout: &Layout,
        cal: &Calendar,
        now: Timestamp,
        count: u64,
    ) {
        if self.is_current(now) {
            for c in &mut self.current[..layout.slots.len()] {
                *c = c.saturating_add(count);
            }
        } else {
            let idx = self.advance(layout, cal, now);
            self.add(layout, &idx, count);
        }
        self.saw(now);
    }

    /// Records `count` events at `at <= now`, whose indexes are `at_idx` (worked out before
    /// taking the lock): each ring that still holds `at`'s bucket counts them; rings too short
    /// for it drop them.
    pub(crate) fn record_at(
        &mut self,
        layout: &Layout,
        cal: &Calendar,
        now: Timestamp,
        at: Timestamp,
        at_idx: &Indexes,
        count: u64,
    ) {
        self.advance(layout, cal, now);
        self.add(layout, at_idx, count);
        self.saw(at);
    }

    /// Adds `count` at the given per-slot indexes, where the rings hold them.
    pub(crate) fn add(&mut self, layout: &Layout, idx: &Indexes, count: u64) {
        for (i, s) in layout.slots.iter().enumerate() {
            self.bump(i, s, idx[i], count);
        }
    }

    /// Adds `count` to slot `slot` at bucket index `index`, if the ring holds it.
    pub(crate) fn add_one(&mut self, layout: &Layout, slot: usize, index: i64, count: u64) {
        self.bump(slot, &layout.slots[slot], index, count);
    }

    fn bump(&mut self, i: usize, s: &Slot, index: i64, count: u64) {
        let newest = self.newest[i];
        let b = if index == newest {
            &mut self.current[i]
        } else if index > newest || newest.abs_diff(index) >= s.len as u64 {
            return;
        } else {
            &mut self.buckets[s.offset + ring_pos(index, s.len)]
        };
        *b = b.saturating_add(count);
    }

    /// Widens the exact first/last-seen instants to include `t`.
    #[inline]
    pub(crate) fn saw(&mut self, t: Timestamp) {
        match self.last_seen.get() {
            // first_seen <= last_seen <= t: only last_seen moves, and first_seen (on another
            // cache line) is not read.
            Some(l) if l <= t => self.last_seen = Seen::of(Some(t)),
            Some(_) => {
                if self.first_seen.get().is_none_or(|f| f > t) {
                    self.first_seen = Seen::of(Some(t));
                }
            }
            None => {
                self.last_seen = Seen::of(Some(t));
                self.first_seen = Seen::of(Some(t));
            }
        }
    }

    /// Exact instant of the latest event ever recorded.
    pub(crate) fn last_seen(&self) -> Option<Timestamp> {
        self.last_seen.get()
    }

    /// Exact instant of the earliest event ever recorded.
    pub(crate) fn first_seen(&self) -> Option<Timestamp> {
        self.first_seen.get()
    }

    /// Sets both instants (from a snapshot).
    pub(crate) fn set_seen(&mut self, first: Option<Timestamp>, last: Option<Timestamp>) {
        self.first_seen = Seen::of(first);
        self.last_seen = Seen::of(last);
    }

    /// The stored index range of slot `slot` covered by positions `range` back from the bucket
    /// with index `current` (position 0). Empty when nothing stored is covered.
    fn covered(
        &self,
        layout: &Layout,
        slot: usize,
        current: i64,
        range: &Range<usize>,
    ) -> (i64, i64) {
        let s = &layout.slots[slot];
        let newest = i128::from(self.newest[slot]);
        let cur = i128::from(current);
        // A ring reaches `len` buckets back from the current one, however long the window.
        let end = range.end.min(s.len);
        let hi = (cur - range.start as i128).min(newest);
        let lo = (cur - end as i128 + 1).max(newest - s.len as i128 + 1);
        if lo > hi {
            (1, 0)
        } else {
            (lo as i64, hi as i64)
        }
    }

    /// Calls `f(index, count)` for the stored buckets of slot `slot` in `lo..=hi`, newest first.
    fn for_each(
        &self,
        layout: &Layout,
        slot: usize,
        lo: i64,
        hi: i64,
        mut f: impl FnMut(i64, u64),
    ) {
        if lo > hi {
            return;
        }
        let s = &layout.slots[slot];
        let newest = self.newest[slot];
        let ring = &self.buckets[s.offset..s.offset + s.len];
        let mut p = ring_pos(hi, s.len);
        let mut i = hi;
        loop {
            f(
                i,
                if i == newest {
                    self.current[slot]
                } else {
                    ring[p]
                },
            );
            if i == lo {
                break;
            }
            i -= 1;
            p = if p == 0 { s.len - 1 } else { p - 1 };
        }
    }

    /// Calls `f(index, count)` for the stored buckets of slot `slot` covered by positions
    /// `range` back from `current`, oldest first, until `f` returns `true`; returns that index.
    pub(crate) fn find_oldest_first(
        &self,
        layout: &Layout,
        slot: usize,
        current: i64,
        range: Range<usize>,
        mut f: impl FnMut(u64) -> bool,
    ) -> Option<i64> {
        let (lo, hi) = self.covered(layout, slot, current, &range);
        if lo > hi {
            return None;
        }
        let s = &layout.slots[slot];
        let newest = self.newest[slot];
        let ring = &self.buckets[s.offset..s.offset + s.len];
        let mut p = ring_pos(lo, s.len);
        for i in lo..=hi {
            if f(if i == newest {
                self.current[slot]
            } else {
                ring[p]
            }) {
                return Some(i);
            }
            p += 1;
            if p == s.len {
                p = 0;
            }
        }
        None
    }

    /// Sum of positions `range` back from bucket `current` of slot `slot`.
    pub(crate) fn sum(
        &self,
        layout: &Layout,
        slot: usize,
        current: i64,
        range: Range<usize>,
    ) -> u64 {
        let (lo, hi) = self.covered(layout, slot, current, &range);
        if lo == hi && hi == self.newest[slot] {
            return self.current[slot];
        }
        let mut total = 0u64;
        self.for_each(layout, slot, lo, hi, |_, c| total = total.saturating_add(c));
        total
    }

    /// The counts of positions `range` back from bucket `current`, newest first; positions
    /// beyond the ring are left out.
    pub(crate) fn buckets(
        &self,
        layout: &Layout,
        slot: usize,
        current: i64,
        range: Range<usize>,
    ) -> Vec<u64> {
        let len = layout.slots[slot].len;
        let end = range.end.min(len);
        let start = range.start.min(end);
        let mut out = vec![0; end - start];
        let (lo, hi) = self.covered(layout, slot, current, &(start..end));
        self.for_each(layout, slot, lo, hi, |i, c| {
            out[(current.abs_diff(i) as usize) - start] = c;
        });
        out
    }

    /// The index the ring of `slot` would have as its newest after advancing to `current`.
    pub(crate) fn head_index(&self, slot: usize, current: i64) -> i64 {
        self.newest[slot].max(current)
    }

    pub(crate) fn newest(&self, slot: usize) -> i64 {
        self.newest[slot]
    }

    /// Stored counts of `slot` newest first (index `newest`, `newest - 1`, …).
    pub(crate) fn newest_first(&self, layout: &Layout, slot: usize) -> Vec<u64> {
        let s = &layout.slots[slot];
        let newest = self.newest[slot];
        let mut out = Vec::with_capacity(s.len);
        self.for_each(layout, slot, newest - (s.len as i64 - 1), newest, |_, c| {
            out.push(c)
        });
        out
    }

    #[cfg(feature = "window-persist")]
    pub(crate) fn is_empty(&self) -> bool {
        self.current.iter().all(|&c| c == 0) && self.buckets.iter().all(|&c| c == 0)
    }

    /// Replaces rings and metadata with `other`'s (same layout), keeping pending reservations
    /// and the bookkeeping flags.
    pub(crate) fn replace_data(&mut self, other: KeyState) {
        self.buckets = other.buckets;
        self.current = other.current;
        self.newest = other.newest;
        self.valid_from = other.valid_from;
        self.valid_until = other.valid_until;
        self.first_seen = other.first_seen;
        self.last_seen = other.last_seen;
    }

    /// Adds `other`'s counts (same layout and calendar) into this key, bucket by bucket by
    /// index, after advancing this key to `now`.
    pub(crate) fn merge_from(
        &mut self,
        layout: &Layout,
        cal: &Calendar,
        now: Timestamp,
        other: &KeyState,
    ) {
        self.advance(layout, cal, now);
        for (i, s) in layout.slots.iter().enumerate() {
            let newest = other.newest[i];
            let lo = newest - (s.len as i64 - 1);
            // Counts from a clock that runs ahead of ours land in our newest bucket: merge
            // happens on the receiver's clock.
            let head = self.newest[i];
            other.for_each(layout, i, lo, newest, |idx, c| {
                if c > 0 {
                    self.bump(i, s, idx.min(head), c);
                }
            });
        }
        // Instants from a clock ahead of ours are capped at our latest.
        let cap = now.max(self.last_seen().unwrap_or(now));
        for t in [other.first_seen(), other.last_seen()]
            .into_iter()
            .flatten()
        {
            self.saw(t.min(cap));
        }
    }

    /// Bytes this key owns outside the map slot that points at it.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<u64>()
    }
}

#[inline]
fn ring_pos(index: i64, len: usize) -> usize {
    index.rem_euclid(len as i64) as usize
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn setup() -> (Layout, Calendar) {
        let layout = Layout::new(&[(Unit::Minute, 4), (Unit::Hour, 3)]).unwrap();
        (layout, Calendar::utc())
    }

    #[test]
    fn layout_validates_and_orders_units() {
        assert!(matches!(
            Layout::new(&[(Unit::Day, 0)]),
            Err(WindowError::InvalidBucketCount { count: 0, .. })
        ));
        assert!(matches!(
            Layout::new(&[(Unit::Day, MAX_BUCKETS + 1)]),
            Err(WindowError::InvalidBucketCount { .. })
        ));
        assert!(matches!(Layout::new(&[]), Err(WindowError::NoUnits)));
        let l = Layout::new(&[(Unit::Day, 7), (Unit::Minute, 5), (Unit::Day, 3)]).unwrap();
        assert_eq!(l.slots().len(), 2);
        assert_eq!(l.slots()[0].unit, Unit::Minute);
        assert_eq!(l.len_of(Unit::Day), Some(3));
        assert_eq!(l.total(), 8);
    }

    #[test]
    fn records_rotate_and_windows_read_back() {
        let (l, cal) = setup();
        let t0 = ts("2025-03-05T12:00:10Z");
        let mut k = KeyState::new(&l, &cal, t0);
        k.record_now(&l, &cal, t0, 2);
        let t1 = ts("2025-03-05T12:02:30Z");
        k.record_now(&l, &cal, t1, 5);
        let m = cal.index(t1, Unit::Minute);
        assert_eq!(k.buckets(&l, 0, m, 0..4), vec![5, 0, 2, 0]);
        assert_eq!(k.sum(&l, 0, m, 0..2), 5);
        assert_eq!(k.sum(&l, 0, m, 0..3), 7);
        assert_eq!(k.sum(&l, 1, cal.index(t1, Unit::Hour), 0..1), 7);
        // A read at a later instant does not rotate but sees the same as a rotated ring would.
        let later = cal.index(ts("2025-03-05T12:05:00Z"), Unit::Minute);
        assert_eq!(k.buckets(&l, 0, later, 0..4), vec![0, 0, 0, 5]);
        // Past the whole ring: gone.
        k.record_now(&l, &cal, ts("2025-03-05T12:09:00Z"), 1);
        let m = cal.index(ts("2025-03-05T12:09:00Z"), Unit::Minute);
        assert_eq!(k.buckets(&l, 0, m, 0..4), vec![1, 0, 0, 0]);
        assert_eq!(k.sum(&l, 1, cal.index(t1, Unit::Hour), 0..3), 8);
        assert_eq!(k.first_seen(), Some(t0));
        assert_eq!(k.last_seen(), Some(ts("2025-03-05T12:09:00Z")));
    }

    #[test]
    fn a_clock_going_backwards_keeps_rings_in_sync() {
        let (l, cal) = setup();
        let t0 = ts("2025-03-05T12:03:00Z");
        let mut k = KeyState::new(&l, &cal, t0);
        k.record_now(&l, &cal, t0, 1);
        let back = ts("2025-03-05T12:01:00Z");
        k.record_now(&l, &cal, back, 10);
        let m0 = cal.index(t0, Unit::Minute);
        assert_eq!(k.buckets(&l, 0, m0, 0..4), vec![1, 0, 10, 0]);
        // Forward again: the ring was never shifted.
        let t2 = ts("2025-03-05T12:04:00Z");
        k.record_now(&l, &cal, t2, 100);
        let m2 = cal.index(t2, Unit::Minute);
        assert_eq!(k.buckets(&l, 0, m2, 0..4), vec![100, 1, 0, 10]);
    }

    #[test]
    fn merge_aligns_by_index_and_folds_a_future_into_the_newest_bucket() {
        let (l, cal) = setup();
        let now = ts("2025-03-05T12:03:00Z");
        let mut a = KeyState::new(&l, &cal, now);
        a.record_now(&l, &cal, now, 1);
        let mut b = KeyState::new(&l, &cal, ts("2025-03-05T12:01:00Z"));
        b.record_now(&l, &cal, ts("2025-03-05T12:01:00Z"), 2);
        let mut c = KeyState::new(&l, &cal, ts("2025-03-05T12:07:00Z"));
        c.record_now(&l, &cal, ts("2025-03-05T12:07:00Z"), 4);
        a.merge_from(&l, &cal, now, &b);
        a.merge_from(&l, &cal, now, &c);
        let m = cal.index(now, Unit::Minute);
        assert_eq!(a.buckets(&l, 0, m, 0..4), vec![5, 0, 2, 0]);
        assert_eq!(a.last_seen(), Some(now));
        assert_eq!(a.first_seen(), Some(ts("2025-03-05T12:01:00Z")));
    }
}

#[cfg(all(test, not(accrue_loom)))]
mod layout_tests {
    #[test]
    fn a_record_touches_the_first_two_cache_lines_of_an_entry() {
        use std::mem::{offset_of, size_of};
        let key = size_of::<crate::window::key::Key>();
        assert_eq!(key, 24);
        // Entry = key then the state: flags, bucket span and last seen fill the first line,
        // the current counts the second.
        assert_eq!(key + offset_of!(super::KeyState, last_seen) + 16, 64);
        assert_eq!(key + offset_of!(super::KeyState, current), 64);
        assert_eq!(std::mem::align_of::<crate::window::shards::Entry>(), 64);
    }
}
