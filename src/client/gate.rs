//! The emit gate: lets `close` know that no `emit` is between its "closed?" check and its push,
//! so the final drain sees every event that `emit` acknowledged.
//!
//! One atomic word: the top bit is "closed", the rest counts emitters inside. An emitter adds
//! one, backs out if the bit was set, pushes, and subtracts one (release). `close` sets the bit
//! and waits until the count is zero (acquire): every push that was let in is then visible to
//! the drain. Two uncontended atomic operations per emit.

use crate::sync::{AtomicUsize, Ordering};

const CLOSED: usize = 1 << (usize::BITS - 1);

#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: AtomicUsize,
}

impl Gate {
    /// Enters, unless closed. A `true` must be followed by [`leave`](Self::leave).
    #[inline]
    pub(crate) fn enter(&self) -> bool {
        let s = self.state.fetch_add(1, Ordering::Acquire);
        if s & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    #[inline]
    pub(crate) fn leave(&self) {
        self.state.fetch_sub(1, Ordering::Release);
    }

    /// Closes; later [`enter`](Self::enter)s fail.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closed and no emitter inside: everything pushed is visible to this thread.
    pub(crate) fn is_drained(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }
}

#[cfg(all(test, accrue_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc, Mutex};

    /// Two emitters race one closer: every push an emitter got in is seen by the closer's
    /// drain once the gate reports drained; pushes after the close are refused.
    #[test]
    fn loom_gate_close_sees_every_admitted_push() {
        loom::model(|| {
            let gate = Arc::new(Gate::default());
            let queue = Arc::new(Mutex::new(Vec::new()));
            let emitters: Vec<_> = (0..2)
                .map(|i| {
                    let (gate, queue) = (gate.clone(), queue.clone());
                    loom::thread::spawn(move || {
                        if gate.enter() {
                            queue.lock().push(i);
                            gate.leave();
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            gate.close();
            while !gate.is_drained() {
                loom::thread::yield_now();
            }
            let drained = std::mem::take(&mut *queue.lock());
            let admitted: Vec<bool> = emitters.into_iter().map(|h| h.join().unwrap()).collect();
            let expected = admitted.iter().filter(|a| **a).count();
            assert_eq!(drained.len(), expected);
            assert!(queue.lock().is_empty());
        });
    }
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    #[test]
    fn closed_gate_refuses_and_drains() {
        let g = Gate::default();
        assert!(g.enter());
        g.close();
        assert!(g.is_closed());
        assert!(!g.is_drained()); // one emitter inside
        assert!(!g.enter());
        g.leave();
        assert!(g.is_drained());
    }
}
