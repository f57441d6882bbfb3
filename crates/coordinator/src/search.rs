//! A sweep's search, driven by its runner: the recorded results replayed when the sweep starts
//! (so a resumed search proposes what an uninterrupted one did), then each final result handed
//! to the search, and what it proposes recorded in the store before anything leases it.

use crate::CoordinatorError;
use kappa_core::search::Search;
use kappa_core::{
    FailureCounts, Plan, PlannedTrial, Scheduler, Sweep, TrialId, TrialMetrics, TrialResult, TrialStatus,
};
use kappa_store::{PlanRow, Store, StoreOp};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// `metrics` as the store keeps them (JSON), the ones a replay reads after a restart: a search
/// decides on these, so it makes the same decisions from the same numbers to the last bit.
pub(crate) fn as_stored(metrics: Option<&TrialMetrics>) -> Option<TrialMetrics> {
    metrics.and_then(|m| serde_json::to_string(m).ok()).and_then(|s| serde_json::from_str(&s).ok())
}

/// One sweep's search and what it needs to turn proposals into pending trials.
pub(crate) struct SearchDriver {
    search: Mutex<Search>,
    /// Finished results the store held when the sweep started (any plan's): a proposal that
    /// has one is not run again.
    known: HashMap<TrialId, TrialResult>,
    /// Unfinished trials of earlier plans, with their attempts so far: a proposal of one goes on
    /// from its attempt numbers.
    stale: Mutex<HashMap<TrialId, (u32, FailureCounts)>>,
    /// The trials in the current plan: the scheduler has them (pending, or counted as finished).
    planned: Mutex<HashSet<TrialId>>,
    /// The content hash of each of the plan's tasks (what the store's rows name).
    task_hashes: Arc<[String]>,
    /// Each task's canonical JSON (what leases carry).
    task_jsons: Vec<Arc<str>>,
    /// The most trials the search can run.
    bound: u64,
}

impl SearchDriver {
    /// The search of `sweep` (`None`: a grid), its recorded results replayed and every trial
    /// they lead to recorded in `store`'s current plan, before the sweep's runner reads it.
    pub(crate) fn prepare(
        store: &mut Store,
        sweep: &Sweep,
        version: &kappa_core::CodeVersion,
    ) -> Result<Option<SearchDriver>, CoordinatorError> {
        let plan = Plan::new(sweep, version.clone());
        let Some(mut search) = Search::new(&plan) else { return Ok(None) };
        let known = store.finished_results()?;
        search.set_next_seq(store.max_seq()?.map_or(0, |s| s + 1));
        let proposed = search.replay(&|id| known.get(&id).cloned());
        let jsons = plan.task_jsons();
        let task_hashes: Arc<[String]> = jsons.iter().map(|j| kappa_core::id::content_hash(j)).collect();
        let planned: HashSet<TrialId> = proposed.iter().map(|t| t.id).collect();
        let rows: Vec<PlanRow> = proposed.into_iter().map(PlanRow::from).collect();
        store.apply(&[StoreOp::Proposed { rows, tasks: task_hashes.clone() }])?;
        // What the search decided from results it no longer has (failed trials retried since)
        // is not its plan any more.
        let retired = store.retire_except(&planned)?;
        if retired > 0 {
            tracing::info!(sweep = %sweep.name, retired, "trials the search no longer proposes left out of its plan");
        }
        let stale = store.open_elsewhere()?.into_iter().map(|t| (t.id, (t.attempts, t.failures))).collect();
        let bound = search.bound();
        Ok(Some(SearchDriver {
            search: Mutex::new(search),
            known,
            stale: Mutex::new(stale),
            planned: Mutex::new(planned),
            task_hashes,
            task_jsons: jsons.into_iter().map(Arc::from).collect(),
            bound,
        }))
    }

    /// The most trials the search can run.
    pub(crate) fn bound(&self) -> u64 {
        self.bound
    }

    /// Hands the search a final result; the trials it proposes are added to `sched` (pending,
    /// or finished when the store already holds their result) and returned as the store
    /// operation that records them (queue it after the result's own).
    pub(crate) fn record(
        &self,
        sched: &mut Scheduler,
        id: TrialId,
        status: TrialStatus,
        metrics: Option<&TrialMetrics>,
    ) -> Option<StoreOp> {
        let stored = as_stored(metrics);
        let metrics = stored.as_ref();
        let mut search = self.search.lock().unwrap_or_else(|e| e.into_inner());
        let mut planned = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        let mut stale = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        let mut queue: VecDeque<PlannedTrial> = search.record_parts(id, status, metrics).into();
        let mut rows = Vec::new();
        while let Some(t) = queue.pop_front() {
            // A trial proposed again (a probe of one group that is a rule's variant of
            // another's best) is in the plan already.
            if !planned.insert(t.id) {
                continue;
            }
            let task = self.task_jsons.get(t.task).cloned().unwrap_or_else(|| Arc::from("{}"));
            match self.known.get(&t.id) {
                Some(r) => {
                    sched.add(t.id, t.params.clone(), task, 0, FailureCounts::default(), r.status);
                    queue.extend(search.record(t.id, r));
                }
                None => {
                    let (attempts, failures) = stale.remove(&t.id).unwrap_or_default();
                    sched.add(t.id, t.params.clone(), task, attempts, failures, TrialStatus::Pending)
                }
            }
            rows.push(PlanRow::from(t));
        }
        (!rows.is_empty()).then(|| StoreOp::Proposed { rows, tasks: self.task_hashes.clone() })
    }
}
