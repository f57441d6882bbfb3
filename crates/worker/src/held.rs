//! The leases a worker holds, each with the cancel switch of its trial: what the heartbeat
//! renews, what a revocation or a shutdown cancels, and what decides whether a finished trial's
//! report still counts (a lease no longer held was revoked: its report would be late).

use kappa_core::AttemptRef;
use kappa_sim::Cancel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The leases held, shared by the sessions, the heartbeat and every running trial.
#[derive(Clone, Default)]
pub(crate) struct Held(Arc<Mutex<HashMap<AttemptRef, Cancel>>>);

impl Held {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<AttemptRef, Cancel>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Holds `attempt`, whose trial stops when `cancel` is pulled.
    pub(crate) fn insert(&self, attempt: AttemptRef, cancel: Cancel) {
        self.with(|h| h.insert(attempt, cancel));
    }

    /// Lets go of `attempt`; whether it was still held (not revoked).
    pub(crate) fn release(&self, attempt: AttemptRef) -> bool {
        self.with(|h| h.remove(&attempt).is_some())
    }

    /// Whether `attempt` is held.
    pub(crate) fn contains(&self, attempt: AttemptRef) -> bool {
        self.with(|h| h.contains_key(&attempt))
    }

    /// Every attempt held (what a heartbeat renews).
    pub(crate) fn attempts(&self) -> Vec<AttemptRef> {
        self.with(|h| h.keys().copied().collect())
    }

    /// Lets go of `attempt` and stops its trial; whether it was held.
    pub(crate) fn revoke(&self, attempt: AttemptRef) -> bool {
        match self.with(|h| h.remove(&attempt)) {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every trial held (they are let go of as each ends).
    pub(crate) fn cancel_all(&self) {
        self.with(|h| h.values().for_each(Cancel::cancel));
    }
}
