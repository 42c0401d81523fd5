//! The flusher thread: a thin timer loop around the deterministic flush step.
//!
//! Compiled out under loom, which cannot model time; loom tests drive
//! [`Aggregator::flush_once`](crate::Aggregator::flush_once) directly.

use std::hash::{BuildHasher, Hash};
use std::io;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::core::Shared;
use super::merge::Merge;
use crate::sync::Arc;

/// Starts the loop: flush every `interval`, and whenever a size trigger sends a wake-up; exit
/// when shutdown sets `closing` (shutdown itself runs the final flush).
pub(crate) fn spawn<K, V, S, M>(
    shared: Arc<Shared<K, V, S, M>>,
    wake: Receiver<()>,
    interval: Duration,
    name: String,
) -> io::Result<JoinHandle<()>>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
    M: Merge<V>,
{
    thread::Builder::new().name(name).spawn(move || {
        let mut next_tick = Instant::now() + interval;
        loop {
            let woke = match wake.recv_deadline(next_tick) {
                Ok(()) => true,
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            shared.flush(false);
            if !woke {
                // Keep the cadence, but never try to catch up on missed ticks.
                next_tick += interval;
                let now = Instant::now();
                if next_tick <= now {
                    next_tick = now + interval;
                }
            }
        }
    })
}
