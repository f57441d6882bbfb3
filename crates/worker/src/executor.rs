//! Executors: how a worker runs one trial of each task kind.

use kappa_core::{AttemptOutcome, FailureClass, Hyperparams, TaskSpec, TrialId};
use kappa_sim::{Cancel, RunOptions, SimError};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs one trial to an outcome; `None` when it was cancelled. A panic becomes a failed attempt.
/// `opts` carries the worker's `--backend` and the GPU handed to the trial, if any.
pub fn execute(
    task: &TaskSpec,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    opts: &RunOptions,
) -> Option<AttemptOutcome> {
    execute_in(task, params, id, cancel, opts, None)
}

/// [`execute`] with the trial's directory, where a training trial stopped at a rung of
/// successive halving (`opts.stop_samples`) keeps its checkpoint and the next rung continues
/// from it (`None`: every rung starts at step 0). Simulations recompute their steps from step 0
/// instead: bit-identical, and cheap next to training.
pub fn execute_in(
    task: &TaskSpec,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    opts: &RunOptions,
    dir: Option<std::path::PathBuf>,
) -> Option<AttemptOutcome> {
    let run = catch_unwind(AssertUnwindSafe(|| match task {
        TaskSpec::Noop { sleep_ms } => {
            // Sleep in short slices so a cancel (revocation, shutdown) is noticed.
            let until = std::time::Instant::now() + std::time::Duration::from_millis(*sleep_ms);
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                if cancel.is_cancelled() {
                    return Err(SimError::Cancelled);
                }
                std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
            }
            Ok(AttemptOutcome::Succeeded(kappa_core::TrialMetrics::default()))
        }
        TaskSpec::Optimizer(_) | TaskSpec::Sde(_) => kappa_sim::run_trial_with(task, params, id, cancel, opts),
        TaskSpec::Train(t) => {
            let cont = kappa_train::Continuation { dir: dir.clone(), stop_samples: opts.stop_samples };
            kappa_train::run_train_with(t, params, id, cancel, &cont)
        }
        TaskSpec::Command(_) => Err(SimError::Invalid("command tasks run as child processes, not here".into())),
    }));
    match run {
        Ok(Ok(outcome)) => Some(outcome),
        Ok(Err(SimError::Cancelled)) => None,
        Ok(Err(e @ SimError::Invalid(_))) => {
            Some(AttemptOutcome::Failed { error: e.to_string(), class: FailureClass::Error })
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Some(AttemptOutcome::Failed { error: format!("panicked: {msg}"), class: FailureClass::Crash })
        }
    }
}
