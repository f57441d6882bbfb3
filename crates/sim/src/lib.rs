//! kappa-sim: landscapes, gradient noise, the discrete optimizers and their simulation.
//!
//! Synchronous and deterministic: a trial's result depends only on its task, its hyperparameters,
//! its id and seed, never on the number of threads. Parallelism is rayon over blocks of paths.

#![warn(missing_docs)]

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod landscape;
pub mod noise;
pub mod normal;
pub mod optim;
pub mod rng;
pub mod run;
pub mod sde;
pub mod steps;
pub mod theory;

use kappa_core::task::{Backend, SimTask};
use kappa_core::{AttemptOutcome, Hyperparams, TaskSpec, TrialId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
pub use steps::Steps;

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

/// How a worker runs simulations, over what the task says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Overrides the task's `backend` (a worker's `--backend`); `None` follows the task.
    pub backend: Option<Backend>,
    /// The GPU to use (a device ordinal, e.g. the one the worker handed the trial); default 0.
    pub gpu: Option<u32>,
}

/// Runs one trial of a simulation task on the backend its task names.
pub fn run_trial(
    task: &TaskSpec,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
) -> Result<AttemptOutcome, SimError> {
    run_trial_with(task, params, id, cancel, &RunOptions::default())
}

/// Runs one trial of a simulation task, with a worker's options.
pub fn run_trial_with(
    task: &TaskSpec,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    opts: &RunOptions,
) -> Result<AttemptOutcome, SimError> {
    let (sim, sde) = match task {
        TaskSpec::Optimizer(sim) => (sim, false),
        TaskSpec::Sde(sim) => (sim, true),
        TaskSpec::Train(_) | TaskSpec::Command(_) | TaskSpec::Noop { .. } => {
            return Err(SimError::Invalid(format!("a {} task is not a simulation", task.kind_name())));
        }
    };
    match opts.backend.unwrap_or(sim.backend) {
        Backend::Cpu => run::run_sim(sim, sde, params, id, cancel),
        Backend::Cuda => run_cuda(sim, sde, params, id, cancel, opts.gpu.unwrap_or(0)),
        Backend::Auto => match gpu_available(opts.gpu.unwrap_or(0)) {
            Ok(()) => run_cuda(sim, sde, params, id, cancel, opts.gpu.unwrap_or(0)),
            Err(_) => run::run_sim(sim, sde, params, id, cancel),
        },
    }
}

/// Whether `backend = "cuda"` can run here on GPU `ordinal`: the driver and NVRTC load, the device
/// exists and the kernel compiles (done once per process). `Err` says why not. Never panics.
pub fn gpu_available(ordinal: u32) -> Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        cuda::device(ordinal as usize).map(|_| ())
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        Err("kappa-sim was built without its `cuda` feature".into())
    }
}

fn run_cuda(
    sim: &SimTask,
    sde: bool,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    ordinal: u32,
) -> Result<AttemptOutcome, SimError> {
    #[cfg(feature = "cuda")]
    {
        cuda::run_sim(sim, sde, params, id, cancel, ordinal as usize)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (sim, sde, params, id, cancel);
        Err(SimError::Invalid(format!(
            "backend = \"cuda\": no usable NVIDIA GPU: {}",
            gpu_available(ordinal).unwrap_err()
        )))
    }
}
