//! A sweep's successive halving, driven by its runner: the recorded rung results replayed in
//! their order when the sweep starts (so a resumed search stands where the uninterrupted one
//! did, and promotions a crash kept from the store are made now), then each rung result handed
//! to the search under the scheduler's lock, its promotions applied to the scheduler and queued
//! for the store after the result.

use crate::CoordinatorError;
use kappa_core::halving::Halving;
use kappa_core::{Plan, RungCount, Scheduler, Stop, Sweep, TrialId, TrialMetrics, TrialStatus};
use kappa_store::{RungEnd, Store, StoreOp};
use std::collections::HashMap;
use std::sync::Mutex;

/// One sweep's successive halving.
pub(crate) struct HalvingDriver {
    halving: Mutex<Halving>,
}

/// What the runner needs to set its scheduler up for a halving sweep.
pub(crate) struct HalvingStart {
    /// Where every trial's first attempt stops.
    pub(crate) first_stop: Stop,
    /// Trials whose next attempt stops elsewhere (promoted past the first rung).
    pub(crate) stops: Vec<(TrialId, Option<Stop>)>,
}

impl HalvingDriver {
    /// The halving of `sweep` (`None`: it does not halve), its recorded rung results replayed in
    /// order; promotions they imply that the store does not show yet are recorded.
    pub(crate) fn prepare(
        store: &mut Store,
        sweep: &Sweep,
        version: &kappa_core::CodeVersion,
    ) -> Result<Option<(HalvingDriver, HalvingStart)>, CoordinatorError> {
        let plan = Plan::new(sweep, version.clone());
        let Some(mut halving) = Halving::new(&plan) else { return Ok(None) };
        let mut last_result: HashMap<TrialId, u32> = HashMap::new();
        for r in store.rung_results()? {
            halving.record(r.id, r.rung, r.status, r.metrics.as_ref());
            last_result.insert(r.id, r.rung);
        }
        // A promotion is queued after the result that made it: a crash in between leaves the
        // trial stopped in the store with the search past it.
        let mut catch_up = Vec::new();
        let mut stops = Vec::new();
        for t in plan.trials() {
            let Some(standing) = halving.standing(t.id) else { continue };
            if standing.rung > 0 {
                stops.push((t.id, halving.stop_of(t.id)));
            }
            if last_result.get(&t.id).is_some_and(|&k| k < standing.rung) {
                catch_up.push((t.id, standing.rung));
            }
        }
        if !catch_up.is_empty() {
            tracing::info!(sweep = %sweep.name, promoted = catch_up.len(), "promotions recorded on resume");
            store.apply(&[StoreOp::Promoted { trials: catch_up }])?;
        }
        let start = HalvingStart { first_stop: halving.first_stop(), stops };
        Ok(Some((HalvingDriver { halving: Mutex::new(halving) }, start)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Halving> {
        self.halving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each rung's budget and the trials that finished it.
    pub(crate) fn progress(&self) -> Vec<RungCount> {
        let h = self.lock();
        h.rungs().into_iter().zip(h.reached()).map(|(samples, reached)| RungCount { samples, reached }).collect()
    }

    /// Hands the search `id`'s final result at its rung (`status` as the scheduler made it:
    /// stopped, succeeded at the last rung, diverged or failed). The trials it promotes are
    /// pending again in `sched`; returns how the result is recorded and the store operation
    /// that records the promotions (queue it after the result's own).
    pub(crate) fn record(
        &self,
        sched: &mut Scheduler,
        id: TrialId,
        status: TrialStatus,
        metrics: Option<&TrialMetrics>,
    ) -> (Option<RungEnd>, Option<StoreOp>) {
        let stored = crate::search::as_stored(metrics);
        let mut h = self.lock();
        let Some(rung) = h.standing(id).map(|s| s.rung) else { return (None, None) };
        let promotions = h.record(id, rung, status, stored.as_ref());
        let mut trials = Vec::new();
        for p in promotions {
            if sched.reopen(p.id, p.stop) {
                trials.push((p.id, p.rung));
            } else {
                tracing::warn!(trial = %p.id, rung = p.rung, "a promoted trial was not stopped here");
            }
        }
        // Promotions made as the failure budget ran out fail with the rest of what is pending.
        sched.halt_if_over_budget();
        let op = (!trials.is_empty()).then_some(StoreOp::Promoted { trials });
        (Some(RungEnd { rung, status }), op)
    }
}

/// Adds the store's stopped trials to `sched` (a promotion takes them on); returns how many.
pub(crate) fn load_stopped(store: &Store, sched: &mut Scheduler) -> Result<u64, CoordinatorError> {
    let stopped = store.stopped_trials()?;
    let n = stopped.len() as u64;
    for t in stopped {
        sched.add(t.id, t.params, t.task, t.attempts, t.failures, TrialStatus::Stopped);
    }
    Ok(n)
}
