//! Rate limits: rules, schedules, atomic check-and-record, and reservations.

use std::fmt;
use std::time::Duration;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

use super::calendar::{Unit, Window};
use super::clock;
use super::error::{LimitExceeded, WindowError};
use super::key::{Key, KeyName, same};
use super::ring::KeyState;
use super::shards::{Dirty, Held, Inner, Shard};
use super::store::WindowStore;
use crate::sync::Arc as SyncArc;

/// A rule of a [`Limiter`], as reported in [`LimitExceeded`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Rule {
    /// At most `limit` events of `key` (counting pending reservations) in `window`.
    AtMost {
        /// The key counted.
        key: KeyName,
        /// The most events admitted.
        limit: u64,
        /// The window.
        window: Window,
    },
    /// At least `count` events of `key` in `window` (a prerequisite).
    AtLeast {
        /// The key counted.
        key: KeyName,
        /// The fewest events required.
        count: u64,
        /// The window.
        window: Window,
    },
    /// No event of `key` in the last `duration` (exact, from the latest event's instant).
    Cooldown {
        /// The key.
        key: KeyName,
        /// The quiet time required.
        duration: Duration,
    },
    /// An event of `key` within the last `duration`.
    Within {
        /// The prerequisite key.
        key: KeyName,
        /// How recent it must be.
        duration: Duration,
    },
    /// Only while the schedule allows.
    During(Schedule),
    /// Only while the schedule does not allow.
    OutsideOf(Schedule),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtMost { key, limit, window } => {
                write!(f, "at most {limit} {key:?} per {window:?}")
            }
            Self::AtLeast { key, count, window } => {
                write!(f, "at least {count} {key:?} per {window:?}")
            }
            Self::Cooldown { key, duration } => write!(f, "cooldown of {duration:?} after {key:?}"),
            Self::Within { key, duration } => write!(f, "{key:?} within the last {duration:?}"),
            Self::During(s) => write!(f, "during {s:?}"),
            Self::OutsideOf(s) => write!(f, "outside of {s:?}"),
        }
    }
}

/// The borrowed form a limiter holds, so building one allocates nothing per key.
#[derive(Clone, Debug)]
enum RuleRef<'a> {
    AtMost(&'a str, u64, Window),
    AtLeast(&'a str, u64, Window),
    Cooldown(&'a str, Duration),
    Within(&'a str, Duration),
    During(Schedule),
    OutsideOf(Schedule),
}

impl RuleRef<'_> {
    #[inline]
    fn key(&self) -> Option<&str> {
        match self {
            Self::AtMost(k, ..)
            | Self::AtLeast(k, ..)
            | Self::Cooldown(k, _)
            | Self::Within(k, _) => Some(k),
            Self::During(_) | Self::OutsideOf(_) => None,
        }
    }

    /// The owned rule; `target` is the checked key, shared when the rule names it.
    fn to_rule(&self, target: &KeyName) -> Rule {
        let own = |k: &str| {
            if *target == k {
                target.clone()
            } else {
                KeyName::from(k)
            }
        };
        match self {
            Self::AtMost(k, limit, window) => Rule::AtMost {
                key: own(k),
                limit: *limit,
                window: *window,
            },
            Self::AtLeast(k, count, window) => Rule::AtLeast {
                key: own(k),
                count: *count,
                window: *window,
            },
            Self::Cooldown(k, d) => Rule::Cooldown {
                key: own(k),
                duration: *d,
            },
            Self::Within(k, d) => Rule::Within {
                key: own(k),
                duration: *d,
            },
            Self::During(s) => Rule::During(s.clone()),
            Self::OutsideOf(s) => Rule::OutsideOf(s.clone()),
        }
    }
}

/// A set of rules checked together, from [`WindowStore::limit`].
///
/// Every rule must pass. The terminal methods take `&self`, so a limiter can be built once and
/// reused. [`check_and_record`](Self::check_and_record) and [`reserve`](Self::reserve) check
/// and act in one critical section: the shards of every key the rules name are locked (in
/// ascending order, each once) for the whole step, and pending reservations count against `at_most` limits, so
/// concurrent callers can never get more through than the limit.
///
/// When several rules deny, the error reports the one with the longest wait (an unknown wait
/// counting as longest).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use accrue::{time::Unit, window::{TestClock, WindowStore}};
///
/// let clock = TestClock::at("2025-03-05T12:00:10Z".parse().unwrap());
/// let store = WindowStore::builder().with_clock(clock.clone()).build()?;
/// let limit = store.limit().at_most("api", 3, Unit::Minute);
/// for _ in 0..3 {
///     limit.check_and_record("api")?;
/// }
/// let denied = limit.check_and_record("api").unwrap_err();
/// // The next slot frees when the 12:00 bucket leaves the window, at 12:01:00.
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(50)));
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a limiter does nothing until check, allowed, usage, check_and_record or reserve"]
pub struct Limiter<'a> {
    store: &'a WindowStore,
    rules: Rules<'a>,
}

/// The rules, the first two inline: building a limiter per call allocates nothing.
#[derive(Clone, Debug, Default)]
struct Rules<'a> {
    inline: [Option<RuleRef<'a>>; 2],
    more: Vec<RuleRef<'a>>,
}

impl<'a> Rules<'a> {
    #[inline]
    fn push(&mut self, rule: RuleRef<'a>) {
        match self.inline.iter_mut().find(|r| r.is_none()) {
            Some(slot) => *slot = Some(rule),
            None => self.more.push(rule),
        }
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = &RuleRef<'a>> + '_ {
        self.inline.iter().flatten().chain(&self.more)
    }

    fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.more.len()
    }
}

/// The verdict of one rule.
enum Verdict {
    Pass,
    Deny(Option<Duration>),
}

/// Current usage of an `at_most` rule, from [`Limiter::usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Events counted in the window.
    pub count: u64,
    /// Slots held by pending reservations.
    pub pending: u64,
    /// The rule's limit.
    pub limit: u64,
    /// `limit - count - pending`, floored at zero.
    pub remaining: u64,
}

/// How the rules see the locked keys.
trait States {
    fn get(&self, key: &str) -> Option<&KeyState>;
}

/// One key locked: every rule names it (or no key).
struct One<'s>(&'s str, Option<&'s KeyState>);

impl States for One<'_> {
    fn get(&self, key: &str) -> Option<&KeyState> {
        debug_assert_eq!(key, self.0);
        self.1
    }
}

/// Several keys locked: their shards, in order.
impl<G: std::ops::Deref<Target = Shard>> States for Held<'_, G> {
    fn get(&self, key: &str) -> Option<&KeyState> {
        Held::get(self, key)
    }
}

/// Several keys locked, the checked one seen as `fresh` (the state it would be created with)
/// while it is absent from memory.
struct Creating<'s, G> {
    held: &'s G,
    key: &'s str,
    fresh: Option<&'s KeyState>,
}

impl<G: States> States for Creating<'_, G> {
    fn get(&self, key: &str) -> Option<&KeyState> {
        match self.held.get(key) {
            None if same(key, self.key) => self.fresh,
            st => st,
        }
    }
}

impl<'a> Limiter<'a> {
    #[inline]
    pub(crate) fn new(store: &'a WindowStore) -> Self {
        Self {
            store,
            rules: Rules::default(),
        }
    }

    /// At most `limit` events of `key` in `window`, counting pending reservations: the event
    /// being checked is admitted while `count + pending + 1 <= limit` (for a rule on another
    /// key, while that key's `count + pending < limit`).
    #[inline]
    pub fn at_most<K: AsRef<str> + ?Sized>(
        mut self,
        key: &'a K,
        limit: u64,
        window: impl Into<Window>,
    ) -> Self {
        self.rules
            .push(RuleRef::AtMost(key.as_ref(), limit, window.into()));
        self
    }

    /// At least `count` events of `key` in `window` (reservations do not count).
    #[inline]
    pub fn at_least<K: AsRef<str> + ?Sized>(
        mut self,
        key: &'a K,
        count: u64,
        window: impl Into<Window>,
    ) -> Self {
        self.rules
            .push(RuleRef::AtLeast(key.as_ref(), count, window.into()));
        self
    }

    /// No event of `key` in the last `duration`, measured exactly from its latest event. A key
    /// never seen passes.
    #[inline]
    pub fn cooldown<K: AsRef<str> + ?Sized>(mut self, key: &'a K, duration: Duration) -> Self {
        self.rules.push(RuleRef::Cooldown(key.as_ref(), duration));
        self
    }

    /// An event of `key` no longer than `duration` ago. A key never seen fails.
    #[inline]
    pub fn within<K: AsRef<str> + ?Sized>(mut self, key: &'a K, duration: Duration) -> Self {
        self.rules.push(RuleRef::Within(key.as_ref(), duration));
        self
    }

    /// Only while `schedule` allows, in the store's time zone (or the schedule's own).
    #[inline]
    pub fn during(mut self, schedule: Schedule) -> Self {
        self.rules.push(RuleRef::During(schedule));
        self
    }

    /// Only while `schedule` does not allow.
    #[inline]
    pub fn outside_of(mut self, schedule: Schedule) -> Self {
        self.rules.push(RuleRef::OutsideOf(schedule));
        self
    }

    /// Checks the rules for one more event of `key`, without recording.
    ///
    /// # Errors
    ///
    /// [`WindowError::LimitExceeded`] when a rule denies; a configuration error
    /// ([`WindowError::UnitNotTracked`], …) when a rule cannot be evaluated.
    pub fn check(&self, key: impl AsRef<str>) -> Result<(), WindowError> {
        let key = key.as_ref();
        let inner = &*self.store.inner;
        let now = inner.now();
        if self.single_key(key) {
            return match inner.with_key(key, |st| self.evaluate(key, 1, &One(key, Some(st)), now)) {
                Some(r) => r,
                None => self.evaluate(key, 1, &One(key, None), now),
            };
        }
        self.with_locked(key, |states| self.evaluate(key, 1, states, now))
    }

    /// Whether [`check`](Self::check) passes.
    pub fn allowed(&self, key: impl AsRef<str>) -> bool {
        self.check(key).is_ok()
    }

    /// The usage of the first `at_most` rule on `key`; all zeros when there is none.
    ///
    /// # Errors
    ///
    /// The rule's window cannot be evaluated (unit not tracked, …).
    pub fn usage(&self, key: impl AsRef<str>) -> Result<Usage, WindowError> {
        let key = key.as_ref();
        let inner = &*self.store.inner;
        let now = inner.now();
        let Some((limit, window)) = self.rules.iter().find_map(|r| match r {
            RuleRef::AtMost(k, limit, w) if *k == key => Some((*limit, *w)),
            _ => None,
        }) else {
            return Ok(Usage {
                count: 0,
                pending: 0,
                limit: 0,
                remaining: 0,
            });
        };
        let (unit, n) = window.resolve(|u| inner.layout.len_of(u))?;
        let (count, pending) = inner
            .with_key(key, |st| (window_sum(inner, st, unit, n, now), st.pending))
            .unwrap_or((0, 0));
        Ok(Usage {
            count,
            pending,
            limit,
            remaining: limit.saturating_sub(count.saturating_add(pending)),
        })
    }

    /// Checks the rules and records one event of `key` if they pass, atomically.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check); nothing is recorded, and a key not yet in the store is not
    /// created.
    ///
    /// **Blocking:** holds the shard locks of every key the rules name for the check and the
    /// record.
    pub fn check_and_record(&self, key: impl AsRef<str>) -> Result<(), WindowError> {
        self.check_and_record_count(key, 1)
    }

    /// Checks the rules for `count` events of `key` (an `at_most` rule on `key` admits them
    /// while `sum + pending + count <= limit`) and records them if they pass, atomically.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check); nothing is recorded, and a key not yet in the store is not
    /// created.
    pub fn check_and_record_count(
        &self,
        key: impl AsRef<str>,
        count: u64,
    ) -> Result<(), WindowError> {
        let key = key.as_ref();
        let inner = &*self.store.inner;
        let now = inner.now();
        let act = |st: &mut KeyState, d: &mut Dirty<'_>| {
            if count > 0 {
                st.record_now(&inner.layout, &inner.cal, now, count);
                d.mark(st);
            }
        };
        if self.single_key(key) {
            return inner.with_key_mut_if(
                key,
                |st| self.evaluate(key, count, &One(key, st), now),
                act,
            );
        }
        self.with_locked_mut(key, count, now, act)
    }

    /// Checks the rules and, if they pass, holds one slot of `key` until the reservation is
    /// committed (recorded), cancelled, or dropped (cancelled). Held slots count against every
    /// `at_most` rule on `key`, in checks by other callers too.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check); nothing is reserved, and a key not yet in the store is not
    /// created.
    ///
    /// # Examples
    ///
    /// ```
    /// use accrue::{time::Unit, window::WindowStore};
    ///
    /// let store = WindowStore::new();
    /// let limit = store.limit().at_most("export", 1, Unit::Hour);
    /// let slot = limit.reserve("export")?;
    /// assert!(limit.check_and_record("export").is_err()); // the slot is held
    /// slot.commit();
    /// assert_eq!(store.query("export").last_hours(1).sum(), Some(1));
    /// # Ok::<(), accrue::window::WindowError>(())
    /// ```
    pub fn reserve(&self, key: impl AsRef<str>) -> Result<Reservation, WindowError> {
        let key = key.as_ref();
        let inner = &*self.store.inner;
        let now = inner.now();
        let act = |st: &mut KeyState, d: &mut Dirty<'_>| {
            st.pending += 1;
            d.mark(st);
        };
        if self.single_key(key) {
            inner.with_key_mut_if(key, |st| self.evaluate(key, 1, &One(key, st), now), act)?;
        } else {
            self.with_locked_mut(key, 1, now, act)?;
        }
        Ok(Reservation {
            inner: self.store.inner.clone(),
            key: Key::new(key),
            open: true,
        })
    }

    /// Whether every rule names `key` or no key (the one-lock fast path).
    fn single_key(&self, key: &str) -> bool {
        self.rules
            .iter()
            .all(|r| r.key().is_none_or(|k| same(k, key)))
    }

    /// `key` and the other keys the rules name, each once, each loaded into memory if it is
    /// in storage, with whether it exists. None is created.
    fn keys<'k>(&'k self, key: &'k str) -> Vec<(&'k str, bool)> {
        let inner = &*self.store.inner;
        let mut out: Vec<(&str, bool)> = Vec::with_capacity(self.rules.len() + 1);
        out.push((key, inner.ensure(key, false)));
        for k in self.rules.iter().filter_map(RuleRef::key) {
            if !out.iter().any(|(o, _)| same(o, k)) {
                out.push((k, inner.ensure(k, false)));
            }
        }
        out
    }

    fn with_locked(
        &self,
        key: &str,
        f: impl Fn(&dyn States) -> Result<(), WindowError>,
    ) -> Result<(), WindowError> {
        let inner = &*self.store.inner;
        loop {
            let keys = self.keys(key);
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            let held = inner.lock_read(&names);
            if keys
                .iter()
                .any(|(k, exists)| *exists && held.get(k).is_none())
            {
                continue; // compacted away in between: look again
            }
            return f(&held);
        }
    }

    /// Checks the rules with every key they name locked and, if they pass, runs `act` on
    /// `key` in the same critical section. `key` is created only once the rules have admitted
    /// it: a denial leaves no key behind and marks nothing dirty.
    fn with_locked_mut(
        &self,
        key: &str,
        count: u64,
        now: Timestamp,
        act: impl FnOnce(&mut KeyState, &mut Dirty<'_>),
    ) -> Result<(), WindowError> {
        let inner = &*self.store.inner;
        // The state `key` starts from if the rules admit it while it is absent from memory.
        let mut fresh: Option<KeyState> = None;
        loop {
            let keys = self.keys(key);
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            let mut held = inner.lock_write(&names);
            if keys
                .iter()
                .any(|(k, exists)| *exists && held.get(k).is_none())
            {
                continue; // compacted away in between: look again
            }
            let seen = Creating {
                held: &held,
                key,
                fresh: fresh.as_ref(),
            };
            self.evaluate(key, count, &seen, now)?;
            if let Some((st, mut d)) = held.get_mut(key) {
                act(st, &mut d);
                return Ok(());
            }
            let Some(state) = fresh.take() else {
                // Admitted while absent: make its state outside the locks, then check again
                // on that state (another caller may have taken the slot meanwhile).
                drop(held);
                fresh = Some(inner.state_to_create(key));
                continue;
            };
            let (st, mut d) = held.insert(key, state).expect("the key's shard is held");
            act(st, &mut d);
            return Ok(());
        }
    }

    /// Evaluates every rule for `count` more events of `target`.
    fn evaluate(
        &self,
        target: &str,
        count: u64,
        states: &dyn States,
        now: Timestamp,
    ) -> Result<(), WindowError> {
        let inner = &*self.store.inner;
        let mut worst: Option<(usize, Option<Duration>)> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let verdict = match rule {
                RuleRef::AtMost(k, limit, window) => {
                    let extra = if same(k, target) { count } else { 1 };
                    at_most(inner, states.get(k), *limit, *window, extra, now)?
                }
                RuleRef::AtLeast(k, need, window) => {
                    let (unit, n) = window.resolve(|u| inner.layout.len_of(u))?;
                    let have = states
                        .get(k)
                        .map_or(0, |st| window_sum(inner, st, unit, n, now));
                    if have < *need {
                        Verdict::Deny(None)
                    } else {
                        Verdict::Pass
                    }
                }
                RuleRef::Cooldown(k, d) => match states.get(k).and_then(|st| st.last_seen()) {
                    Some(last) => {
                        let since = clock::elapsed(last, now);
                        if since < *d {
                            Verdict::Deny(Some(*d - since))
                        } else {
                            Verdict::Pass
                        }
                    }
                    None => Verdict::Pass,
                },
                RuleRef::Within(k, d) => match states.get(k).and_then(|st| st.last_seen()) {
                    Some(last) if clock::elapsed(last, now) <= *d => Verdict::Pass,
                    _ => Verdict::Deny(None),
                },
                RuleRef::During(s) => {
                    if s.allows_in(now, inner.cal.zone()) {
                        Verdict::Pass
                    } else {
                        Verdict::Deny(s.wait_in(now, inner.cal.zone()))
                    }
                }
                RuleRef::OutsideOf(s) => {
                    if s.allows_in(now, inner.cal.zone()) {
                        Verdict::Deny(s.wait_in(now, inner.cal.zone()))
                    } else {
                        Verdict::Pass
                    }
                }
            };
            if let Verdict::Deny(wait) = verdict {
                let longer = match worst {
                    None => true,
                    Some((_, None)) => false,
                    Some((_, Some(w))) => wait.is_none_or(|x| x > w),
                };
                if longer {
                    worst = Some((i, wait));
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((i, retry_after)) => {
                let key = KeyName::from(target);
                let rule = self
                    .rules
                    .iter()
                    .nth(i)
                    .expect("a rule denied")
                    .to_rule(&key);
                Err(WindowError::LimitExceeded(LimitExceeded {
                    key,
                    rule,
                    retry_after,
                }))
            }
        }
    }
}

fn window_sum(inner: &Inner, st: &KeyState, unit: Unit, n: usize, now: Timestamp) -> u64 {
    let slot = inner
        .layout
        .slot_of(unit)
        .expect("resolved windows are tracked");
    let cur = st.index_in(&inner.layout, &inner.cal, slot, now);
    st.sum(&inner.layout, slot, cur, 0..n)
}

/// `at_most`: admits while `sum + pending + extra <= limit`; on denial the wait is until
/// enough of the oldest buckets leave the window.
fn at_most(
    inner: &Inner,
    st: Option<&KeyState>,
    limit: u64,
    window: Window,
    extra: u64,
    now: Timestamp,
) -> Result<Verdict, WindowError> {
    let (unit, n) = window.resolve(|u| inner.layout.len_of(u))?;
    let Some(st) = st else {
        return Ok(if extra > limit {
            Verdict::Deny(None)
        } else {
            Verdict::Pass
        });
    };
    let slot = inner
        .layout
        .slot_of(unit)
        .expect("resolved windows are tracked");
    let cur = st.index_in(&inner.layout, &inner.cal, slot, now);
    let sum = st.sum(&inner.layout, slot, cur, 0..n);
    let held = sum.saturating_add(st.pending);
    if held.saturating_add(extra) <= limit {
        return Ok(Verdict::Pass);
    }
    if extra > limit {
        return Ok(Verdict::Deny(None));
    }
    // Drop the oldest buckets one by one until the rest fits: the window admits again when the
    // last of those leaves it, `n` buckets after its own. Pending reservations count as if
    // committed now, in the current bucket: if they alone keep it full, it admits again when
    // the current bucket leaves the window (sooner if they are cancelled).
    let mut left = held;
    let freed = st
        .find_oldest_first(&inner.layout, slot, cur, 0..n, |c| {
            left = left.saturating_sub(c);
            left.saturating_add(extra) <= limit
        })
        .unwrap_or(cur);
    Ok(Verdict::Deny(Some(clock::elapsed(
        now,
        inner.cal.start_of(freed.saturating_add(n as i64), unit),
    ))))
}

/// A held slot of an `at_most` limit, from [`Limiter::reserve`]. Commit records the event;
/// cancel, or dropping the reservation, releases the slot.
///
/// A reservation keeps its key in memory (`compact` never evicts a key with pending slots).
/// Commit it before the store is dropped: the store's final persist cannot see a later commit.
#[must_use = "a reservation is cancelled when dropped"]
pub struct Reservation {
    inner: SyncArc<Inner>,
    key: Key,
    open: bool,
}

impl Reservation {
    /// The reserved key.
    pub fn key(&self) -> &str {
        self.key.as_str()
    }

    /// Records the event (at the clock's instant now) and releases the slot, atomically.
    pub fn commit(mut self) {
        self.open = false;
        let inner = &*self.inner;
        let now = inner.now();
        inner.with_key_mut(self.key.as_str(), |st, d| {
            st.pending = st.pending.saturating_sub(1);
            st.record_now(&inner.layout, &inner.cal, now, 1);
            d.mark(st);
        });
    }

    /// Releases the slot without recording.
    pub fn cancel(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.open) {
            self.inner.with_key_mut(self.key.as_str(), |st, d| {
                st.pending = st.pending.saturating_sub(1);
                d.mark(st);
            });
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("key", &self.key())
            .field("open", &self.open)
            .finish()
    }
}

/// When a [`Limiter::during`] / [`Limiter::outside_of`] rule allows events, in the store's
/// time zone unless [`in_zone`](Self::in_zone) names another.
///
/// # Examples
///
/// ```
/// use accrue::window::Schedule;
///
/// let office = Schedule::hours(9, 17)?; // 09:00-17:00
/// let night = Schedule::hours(22, 6)?; // overnight: 22:00-06:00
/// let evening = Schedule::hours(18, 24)?; // until midnight
/// assert!(Schedule::hours(9, 9).is_err());
/// assert!(Schedule::hours(24, 5).is_err());
/// let weekend = Schedule::weekends().in_zone(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
/// # let _ = (office, night, evening, weekend);
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Clone)]
pub struct Schedule {
    kind: ScheduleKind,
    zone: Option<TimeZone>,
}

#[derive(Clone)]
enum ScheduleKind {
    Hours { start: u8, end: u8 },
    Weekdays,
    Weekends,
    Custom(std::sync::Arc<dyn Fn(&ZonedDateTime) -> bool + Send + Sync>),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ScheduleKind::Hours { start, end } => write!(f, "hours {start:02}:00-{end:02}:00")?,
            ScheduleKind::Weekdays => f.write_str("weekdays")?,
            ScheduleKind::Weekends => f.write_str("weekends")?,
            ScheduleKind::Custom(_) => f.write_str("custom schedule")?,
        }
        if let Some(z) = &self.zone {
            write!(f, " in {}", z.iana_name().unwrap_or("a fixed zone"))?;
        }
        Ok(())
    }
}

impl Schedule {
    /// From `start:00` to `end:00` every day; `start > end` runs overnight (22-6), `end` 24 is
    /// midnight.
    ///
    /// # Errors
    ///
    /// [`WindowError::InvalidHour`] for a start above 23 or an end above 24,
    /// [`WindowError::InvalidHourRange`] when start equals end.
    pub fn hours(start: u8, end: u8) -> Result<Self, WindowError> {
        if start > 23 {
            return Err(WindowError::InvalidHour(start));
        }
        if end > 24 {
            return Err(WindowError::InvalidHour(end));
        }
        if start == end {
            return Err(WindowError::InvalidHourRange(start, end));
        }
        Ok(Self::of(ScheduleKind::Hours { start, end }))
    }

    /// Monday to Friday.
    pub fn weekdays() -> Self {
        Self::of(ScheduleKind::Weekdays)
    }

    /// Saturday and Sunday.
    pub fn weekends() -> Self {
        Self::of(ScheduleKind::Weekends)
    }

    /// Allows whenever `f` returns true for the local time (no retry-after is known).
    pub fn custom(f: impl Fn(&ZonedDateTime) -> bool + Send + Sync + 'static) -> Self {
        Self::of(ScheduleKind::Custom(std::sync::Arc::new(f)))
    }

    /// Evaluates in `zone` instead of the store's time zone.
    pub fn in_zone(mut self, zone: TimeZone) -> Self {
        self.zone = Some(zone);
        self
    }

    fn of(kind: ScheduleKind) -> Self {
        Self { kind, zone: None }
    }

    /// Whether the schedule allows events at `t` (in `default_zone` unless it has its own).
    pub fn allows_in(&self, t: Timestamp, default_zone: &TimeZone) -> bool {
        let z = t.to_zoned_datetime(self.zone.as_ref().unwrap_or(default_zone).clone());
        self.allows_local(&z)
    }

    fn allows_local(&self, z: &ZonedDateTime) -> bool {
        match &self.kind {
            ScheduleKind::Hours { start, end } => {
                let h = z.hour() as u8;
                if start < end {
                    *start <= h && h < *end
                } else {
                    h >= *start || h < *end
                }
            }
            ScheduleKind::Weekdays => !is_weekend(z.weekday()),
            ScheduleKind::Weekends => is_weekend(z.weekday()),
            ScheduleKind::Custom(f) => f(z),
        }
    }

    /// How long from `t` until the schedule's verdict changes (`None` for custom schedules).
    fn wait_in(&self, t: Timestamp, default_zone: &TimeZone) -> Option<Duration> {
        let zone = self.zone.as_ref().unwrap_or(default_zone).clone();
        let z = t.to_zoned_datetime(zone.clone());
        let allowed = self.allows_local(&z);
        let next = match &self.kind {
            ScheduleKind::Hours { start: 0, end: 24 } => return None,
            ScheduleKind::Hours { start, end } => {
                let target = if allowed { *end } else { *start };
                next_local_hour(&z, target % 24, &zone)?
            }
            ScheduleKind::Weekdays | ScheduleKind::Weekends => {
                // The verdict flips at the next midnight that starts a Saturday (weekend
                // begins) or a Monday (weekend ends).
                let weekend = is_weekend(z.weekday());
                let flip = if weekend {
                    Weekday::Monday
                } else {
                    Weekday::Saturday
                };
                let days = i64::from(z.weekday().until(flip));
                let days = if days == 0 { 7 } else { days };
                let date = z
                    .date()
                    .checked_add(jiff::SignedDuration::from_hours(24 * days))
                    .ok()?;
                date.to_zoned_datetime(zone).ok()?.timestamp()
            }
            ScheduleKind::Custom(_) => return None,
        };
        Some(clock::elapsed(t, next))
    }
}

fn is_weekend(d: Weekday) -> bool {
    matches!(d, Weekday::Saturday | Weekday::Sunday)
}

/// The first instant after `z` at which local time reads `hour:00` (a DST gap moves it later).
fn next_local_hour(z: &ZonedDateTime, hour: u8, zone: &TimeZone) -> Option<Timestamp> {
    let mut date = z.date();
    for _ in 0..3 {
        let dt = date.at(hour as i8, 0, 0, 0);
        let t = dt.to_zoned_datetime(zone.clone()).ok()?.timestamp();
        if t > z.timestamp() {
            return Some(t);
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_wait_exactly_until_they_change() {
        let utc = TimeZone::UTC;
        let office = Schedule::hours(9, 17).unwrap();
        assert!(!office.allows_in(ts("2025-03-05T08:30:00Z"), &utc));
        assert_eq!(
            office.wait_in(ts("2025-03-05T08:30:00Z"), &utc),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            office.wait_in(ts("2025-03-05T18:00:00Z"), &utc),
            Some(Duration::from_secs(15 * 3600))
        );
        assert_eq!(
            office.wait_in(ts("2025-03-05T12:00:00Z"), &utc),
            Some(Duration::from_secs(5 * 3600))
        );
        let night = Schedule::hours(22, 6).unwrap();
        assert!(night.allows_in(ts("2025-03-05T23:00:00Z"), &utc));
        assert!(night.allows_in(ts("2025-03-05T05:59:00Z"), &utc));
        assert!(!night.allows_in(ts("2025-03-05T06:00:00Z"), &utc));
        assert_eq!(
            night.wait_in(ts("2025-03-05T23:00:00Z"), &utc),
            Some(Duration::from_secs(7 * 3600))
        );
        let evening = Schedule::hours(18, 24).unwrap();
        assert_eq!(
            evening.wait_in(ts("2025-03-05T23:30:00Z"), &utc),
            Some(Duration::from_secs(1800))
        );
        // Saturday 10:00 -> Monday 00:00.
        let weekend = Schedule::weekends();
        assert_eq!(
            weekend.wait_in(ts("2025-03-08T10:00:00Z"), &utc),
            Some(Duration::from_secs(38 * 3600))
        );
        // Wednesday 12:00 -> Saturday 00:00.
        assert_eq!(
            weekend.wait_in(ts("2025-03-05T12:00:00Z"), &utc),
            Some(Duration::from_secs(60 * 3600))
        );
        // In another zone: 08:30 UTC is 09:30 in Paris (UTC+1 in March before DST).
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert!(
            office
                .clone()
                .in_zone(paris)
                .allows_in(ts("2025-03-05T08:30:00Z"), &utc)
        );
        assert!(
            Schedule::custom(|z| z.minute() < 30)
                .wait_in(ts("2025-03-05T08:45:00Z"), &utc)
                .is_none()
        );
    }

    #[test]
    fn hour_validation() {
        assert!(matches!(
            Schedule::hours(24, 5),
            Err(WindowError::InvalidHour(24))
        ));
        assert!(matches!(
            Schedule::hours(5, 25),
            Err(WindowError::InvalidHour(25))
        ));
        assert!(matches!(
            Schedule::hours(9, 9),
            Err(WindowError::InvalidHourRange(9, 9))
        ));
        assert!(Schedule::hours(0, 24).is_ok());
    }
}
