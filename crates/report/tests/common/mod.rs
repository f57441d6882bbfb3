//! What the report's test binaries share (each includes it with `mod common;`).

use kappa_core::{AttemptOutcome, Plan, Sweep, TrialId, TrialStatus};
use kappa_report::TrialResult;
use std::collections::HashMap;

/// Runs every trial of `sweep` in process, each on its own task, and records what it gave: a
/// success, or a divergence with the metrics up to it. Any other outcome panics.
pub fn run_trials(sweep: &Sweep, plan: &Plan<'_>) -> HashMap<TrialId, TrialResult> {
    let mut results = HashMap::new();
    for t in plan.trials() {
        let task = &sweep.variants[t.task].task;
        let out = kappa_sim::run_trial(task, &t.params.hyper, t.id, &kappa_sim::Cancel::new()).unwrap();
        let (status, metrics) = match out {
            AttemptOutcome::Succeeded(m) => (TrialStatus::Succeeded, Some(m)),
            AttemptOutcome::Diverged { metrics, .. } => (TrialStatus::Diverged, Some(metrics)),
            other => panic!("{other:?}"),
        };
        results.insert(
            t.id,
            TrialResult { id: t.id, params: t.params.clone(), status, metrics, error: None, origin: None },
        );
    }
    results
}
