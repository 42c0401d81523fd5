//! The one place the crate gets its synchronisation primitives from.
//!
//! Normal builds use `parking_lot` locks, `std` atomics and threads, and a bounded
//! `crossbeam-channel`. Under `--cfg accrue_loom` every primitive is swapped for a loom-visible
//! one so the model checker sees every lock, atomic and channel operation. loom has no bounded
//! channel, so [`chan`] carries a small `Mutex<VecDeque>` + `Condvar` model with the subset of
//! crossbeam's API the aggregator uses. loom cannot model time either: the periodic flusher loop
//! is compiled out under loom, and tests drive the deterministic flush step instead.
//!
//! We use a crate-specific cfg (`accrue_loom`) rather than bare `loom`, because tokio and
//! tokio-util compile whole modules out under `--cfg loom`.

#[cfg(not(accrue_loom))]
mod imp {
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    pub(crate) use parking_lot::Mutex;

    /// The number of CPUs the default shard count scales with.
    pub(crate) fn available_parallelism() -> usize {
        num_cpus::get()
    }

    /// Bounded channel: crossbeam's.
    pub(crate) mod chan {
        pub(crate) use crossbeam_channel::{
            Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
            bounded,
        };

        /// Blocking send, bounded by `deadline` when one is given.
        pub(crate) fn send_until<T>(
            tx: &Sender<T>,
            value: T,
            deadline: Option<std::time::Instant>,
        ) -> Result<(), SendTimeoutError<T>> {
            match deadline {
                None => tx
                    .send(value)
                    .map_err(|e| SendTimeoutError::Disconnected(e.into_inner())),
                Some(deadline) => tx.send_deadline(value, deadline),
            }
        }
    }
}

#[cfg(accrue_loom)]
mod imp {
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    /// loom's mutex with parking_lot's API (`lock()` returns the guard, no poisoning).
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        #[track_caller]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("loom mutex poisoned")
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }

    /// A fixed CPU count keeps models small and deterministic (as tokio's `mocked.rs`).
    pub(crate) fn available_parallelism() -> usize {
        2
    }

    /// A bounded MPMC channel built from loom primitives, with crossbeam's API subset.
    pub(crate) mod chan {
        use std::collections::VecDeque;
        use std::fmt;
        use std::time::{Duration, Instant};

        use loom::sync::{Arc, Condvar, Mutex};

        pub(crate) use crossbeam_channel::{
            RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
        };

        struct State<T> {
            queue: VecDeque<T>,
            cap: usize,
            senders: usize,
            receivers: usize,
        }

        struct Chan<T> {
            state: Mutex<State<T>>,
            not_empty: Condvar,
            not_full: Condvar,
        }

        pub(crate) struct Sender<T>(Arc<Chan<T>>);
        pub(crate) struct Receiver<T>(Arc<Chan<T>>);

        impl<T> fmt::Debug for Sender<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Sender { .. }")
            }
        }
        impl<T> fmt::Debug for Receiver<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Receiver { .. }")
            }
        }

        pub(crate) fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
            assert!(
                cap > 0,
                "the loom channel model needs a capacity of at least 1"
            );
            let chan = Arc::new(Chan {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    cap,
                    senders: 1,
                    receivers: 1,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
            });
            (Sender(chan.clone()), Receiver(chan))
        }

        impl<T> Sender<T> {
            pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
                let mut s = self.0.state.lock().unwrap();
                if s.receivers == 0 {
                    return Err(TrySendError::Disconnected(value));
                }
                if s.queue.len() >= s.cap {
                    return Err(TrySendError::Full(value));
                }
                s.queue.push_back(value);
                drop(s);
                self.0.not_empty.notify_all();
                Ok(())
            }
        }

        /// Blocking send. loom has no time: a deadline behaves like an unbounded wait.
        pub(crate) fn send_until<T>(
            tx: &Sender<T>,
            value: T,
            _deadline: Option<Instant>,
        ) -> Result<(), SendTimeoutError<T>> {
            let mut s = tx.0.state.lock().unwrap();
            loop {
                if s.receivers == 0 {
                    return Err(SendTimeoutError::Disconnected(value));
                }
                if s.queue.len() < s.cap {
                    s.queue.push_back(value);
                    drop(s);
                    tx.0.not_empty.notify_all();
                    return Ok(());
                }
                s = tx.0.not_full.wait(s).unwrap();
            }
        }

        impl<T> Receiver<T> {
            pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
                let mut s = self.0.state.lock().unwrap();
                match s.queue.pop_front() {
                    Some(v) => {
                        drop(s);
                        self.0.not_full.notify_all();
                        Ok(v)
                    }
                    None if s.senders == 0 => Err(TryRecvError::Disconnected),
                    None => Err(TryRecvError::Empty),
                }
            }

            pub(crate) fn recv(&self) -> Result<T, RecvError> {
                self.recv_timeout(Duration::ZERO).map_err(|_| RecvError)
            }

            /// loom has no time: waits until a value or disconnection arrives.
            pub(crate) fn recv_timeout(&self, _timeout: Duration) -> Result<T, RecvTimeoutError> {
                let mut s = self.0.state.lock().unwrap();
                loop {
                    if let Some(v) = s.queue.pop_front() {
                        drop(s);
                        self.0.not_full.notify_all();
                        return Ok(v);
                    }
                    if s.senders == 0 {
                        return Err(RecvTimeoutError::Disconnected);
                    }
                    s = self.0.not_empty.wait(s).unwrap();
                }
            }

            pub(crate) fn len(&self) -> usize {
                self.0.state.lock().unwrap().queue.len()
            }

            pub(crate) fn capacity(&self) -> Option<usize> {
                Some(self.0.state.lock().unwrap().cap)
            }
        }

        impl<T> Sender<T> {
            pub(crate) fn is_full(&self) -> bool {
                let s = self.0.state.lock().unwrap();
                s.queue.len() >= s.cap
            }
        }

        impl<T> Clone for Receiver<T> {
            fn clone(&self) -> Self {
                self.0.state.lock().unwrap().receivers += 1;
                Self(self.0.clone())
            }
        }

        impl<T> Drop for Sender<T> {
            fn drop(&mut self) {
                self.0.state.lock().unwrap().senders -= 1;
                self.0.not_empty.notify_all();
            }
        }

        impl<T> Drop for Receiver<T> {
            fn drop(&mut self) {
                self.0.state.lock().unwrap().receivers -= 1;
                self.0.not_full.notify_all();
            }
        }
    }
}

pub(crate) use imp::*;

// ---------------------------------------------------------------------------------------------
// Reader-writer lock, added for the `window` module: its key maps and per-key bucket rings are
// read by queries that must never block each other. parking_lot's in normal builds; loom's,
// wrapped to parking_lot's API, under `--cfg accrue_loom`.
// ---------------------------------------------------------------------------------------------

#[cfg(not(accrue_loom))]
pub(crate) use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(accrue_loom)]
pub(crate) use loom_rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(accrue_loom)]
mod loom_rwlock {
    pub(crate) type RwLockReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
    pub(crate) type RwLockWriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

    /// loom's reader-writer lock with parking_lot's API (guards directly, no poisoning).
    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::RwLock::new(value))
        }

        #[track_caller]
        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().expect("loom rwlock poisoned")
        }

        #[track_caller]
        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().expect("loom rwlock poisoned")
        }
    }
}
