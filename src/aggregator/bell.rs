//! [`Bell`]: how an async consumer learns that a batch was sent, without a thread polling the
//! channel. The aggregator rings it after every batch it sends and once its sender is gone;
//! [`BatchReceiver::recv_async`](super::BatchReceiver::recv_async) registers its waker on it
//! before looking at the channel a second time.
//!
//! No wake-up is lost: the consumer registers under the bell's lock and then tries the
//! channel; the aggregator sends and then takes the lock. Either the ring finds the waker, or
//! the send happened before the consumer took the lock, and its second try sees the batch (or
//! the closed channel).
//!
//! The bell also records the last flush pass that has sent everything it will send, and rings
//! for it ([`PassDone`]): a consumer that gathers one flush into one write knows when it has
//! all of it, instead of guessing from time. The same register-then-look order applies.

use std::fmt;
use std::task::Waker;

use crate::sync::{AtomicU64, Mutex, Ordering};

/// The wakers of the consumers waiting for a batch or for the end of a pass.
pub(crate) struct Bell {
    waiting: Mutex<Vec<Waker>>,
    /// The sequence number of the last flush pass that has sent all it will send.
    passed: AtomicU64,
}

impl Default for Bell {
    fn default() -> Self {
        Bell {
            waiting: Mutex::new(Vec::new()),
            passed: AtomicU64::new(0),
        }
    }
}

impl Bell {
    /// Records that flush pass `seq` has sent everything it will send (its batches are in the
    /// channel), then rings. Passes end in `seq` order.
    pub(crate) fn pass_done(&self, seq: u64) {
        self.passed.store(seq, Ordering::Release);
        self.ring();
    }

    /// The last pass that has sent everything: every batch of it and of the passes before is
    /// in the channel (or already received).
    #[cfg(any(feature = "sink", all(test, accrue_loom)))]
    pub(crate) fn passed(&self) -> u64 {
        self.passed.load(Ordering::Acquire)
    }

    /// Registers `waker` to be woken by the next ring (once per task: a task polled again
    /// replaces its own entry).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut waiting = self.waiting.lock();
        if !waiting.iter().any(|w| w.will_wake(waker)) {
            waiting.push(waker.clone());
        }
    }

    /// Wakes every registered consumer (each then tries the channel).
    pub(crate) fn ring(&self) {
        let woken = std::mem::take(&mut *self.waiting.lock());
        for waker in woken {
            waker.wake();
        }
    }
}

/// Completes once flush pass `seq` has sent everything it will send (see [`Bell::pass_done`]).
#[cfg(any(feature = "sink", all(test, accrue_loom)))]
pub(crate) struct PassDone<'a> {
    pub(crate) bell: &'a Bell,
    pub(crate) seq: u64,
}

#[cfg(any(feature = "sink", all(test, accrue_loom)))]
impl std::future::Future for PassDone<'_> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;

        if self.bell.passed() >= self.seq {
            return Poll::Ready(());
        }
        // Register, then look again: a pass that ends in between is seen by the second look,
        // one that ends after it rings the bell.
        self.bell.register(cx.waker());
        if self.bell.passed() >= self.seq {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for Bell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bell")
            .field("waiting", &self.waiting.lock().len())
            .field("passed", &self.passed.load(Ordering::Relaxed))
            .finish()
    }
}
