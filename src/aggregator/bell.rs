//! [`Bell`]: how an async consumer learns that a batch was sent, without a thread polling the
//! channel. The aggregator rings it after every batch it sends and once its sender is gone;
//! [`BatchReceiver::recv_async`](super::BatchReceiver::recv_async) registers its waker on it
//! before looking at the channel a second time.
//!
//! No wake-up is lost: the consumer registers under the bell's lock and then tries the
//! channel; the aggregator sends and then takes the lock. Either the ring finds the waker, or
//! the send happened before the consumer took the lock, and its second try sees the batch (or
//! the closed channel).

use std::fmt;
use std::task::Waker;

use crate::sync::Mutex;

/// The wakers of the consumers waiting for a batch.
#[derive(Default)]
pub(crate) struct Bell {
    waiting: Mutex<Vec<Waker>>,
}

impl Bell {
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

impl fmt::Debug for Bell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bell")
            .field("waiting", &self.waiting.lock().len())
            .finish()
    }
}
