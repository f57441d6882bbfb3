//! Executors: how a worker runs one trial of each task kind.

use kappa_core::{AttemptOutcome, Hyperparams, TaskSpec, TrialId};
use kappa_sim::{Cancel, SimError};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs one trial to an outcome; `None` when it was cancelled. A panic becomes a failed attempt.
pub fn execute(task: &TaskSpec, params: &Hyperparams, id: TrialId, cancel: &Cancel) -> Option<AttemptOutcome> {
    let run = catch_unwind(AssertUnwindSafe(|| match task {
        TaskSpec::Noop { sleep_ms } => {
            if *sleep_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(*sleep_ms));
            }
            Ok(AttemptOutcome::Succeeded(kappa_core::TrialMetrics::default()))
        }
        TaskSpec::Optimizer(_) | TaskSpec::Sde(_) => kappa_sim::run_trial(task, params, id, cancel),
        TaskSpec::Train(_) | TaskSpec::Command(_) => {
            Ok(AttemptOutcome::Failed { error: format!("kind = \"{}\" is not implemented yet", task.kind_name()) })
        }
    }));
    match run {
        Ok(Ok(outcome)) => Some(outcome),
        Ok(Err(SimError::Cancelled)) => None,
        Ok(Err(e @ SimError::Invalid(_))) => Some(AttemptOutcome::Failed { error: e.to_string() }),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Some(AttemptOutcome::Failed { error: format!("panicked: {msg}") })
        }
    }
}
