//! kappa-sim: landscapes, gradient noise, the discrete optimizers and their simulation.
//!
//! Synchronous and deterministic: a trial's result depends only on its task, its hyperparameters,
//! its id and seed, never on the number of threads. Parallelism is rayon over blocks of paths.

#![warn(missing_docs)]

pub mod landscape;
pub mod noise;
pub mod normal;
pub mod optim;
pub mod rng;
pub mod run;
pub mod sde;
pub mod theory;

use kappa_core::{AttemptOutcome, Hyperparams, TaskSpec, TrialId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The simulator's version: part of every trial id, so a change in what the simulator computes
/// must bump it (old results then stop being reused).
pub const VERSION: &str = "kappa-sim/3";

/// Errors that end a simulation without a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The run was cancelled (lease lost, shutdown).
    #[error("cancelled")]
    Cancelled,
    /// The trial's settings cannot be simulated.
    #[error("{0}")]
    Invalid(String),
}

/// A cancellation flag shared between a running trial and whoever may stop it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs one trial of a simulation task.
pub fn run_trial(
    task: &TaskSpec,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
) -> Result<AttemptOutcome, SimError> {
    match task {
        TaskSpec::Optimizer(sim) => run::run_sim(sim, false, params, id, cancel),
        TaskSpec::Sde(sim) => run::run_sim(sim, true, params, id, cancel),
        TaskSpec::Train(_) | TaskSpec::Command(_) | TaskSpec::Noop { .. } => {
            Err(SimError::Invalid(format!("a {} task is not a simulation", task.kind_name())))
        }
    }
}
