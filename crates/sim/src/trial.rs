//! One trial of a simulation task, on the backend its task (or the worker) names.

use crate::{Cancel, SimError, run};
use kappa_core::task::{Backend, SimTask};
use kappa_core::{AttemptOutcome, Hyperparams, TaskSpec, TrialId};

/// How a worker runs simulations, over what the task says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Overrides the task's `backend` (a worker's `--backend`); `None` follows the task.
    pub backend: Option<Backend>,
    /// The GPU to use (a device ordinal, e.g. the one the worker handed the trial); default 0.
    pub gpu: Option<u32>,
    /// Successive halving: stop at this rung's budget, in samples seen (see
    /// [`crate::Steps::until`]). The run recomputes its steps from step 0: a simulation's
    /// prefix is cheap next to a training run's and bit-identical to the whole run's, so the
    /// curve of a promoted trial is exactly the uninterrupted one.
    pub stop_samples: Option<u64>,
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
    let stop = opts.stop_samples;
    match opts.backend.unwrap_or(sim.backend) {
        Backend::Cpu => run::run_sim(sim, sde, params, id, cancel, stop),
        Backend::Cuda => run_cuda(sim, sde, params, id, cancel, opts.gpu.unwrap_or(0), stop),
        // Landscapes the GPU kernel does not run (full Hessians) stay on the CPU.
        Backend::Auto => match gpu_available(opts.gpu.unwrap_or(0)) {
            Ok(()) if sim.landscape.runs_on_gpu() => {
                run_cuda(sim, sde, params, id, cancel, opts.gpu.unwrap_or(0), stop)
            }
            _ => run::run_sim(sim, sde, params, id, cancel, stop),
        },
    }
}

/// Whether `backend = "cuda"` can run here on GPU `ordinal`: the driver and NVRTC load, the device
/// exists and the kernel compiles (done once per process). `Err` says why not. Never panics.
pub fn gpu_available(ordinal: u32) -> Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        crate::cuda::device(ordinal as usize).map(|_| ())
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
    stop: Option<u64>,
) -> Result<AttemptOutcome, SimError> {
    #[cfg(feature = "cuda")]
    {
        crate::cuda::run_sim(sim, sde, params, id, cancel, ordinal as usize, stop)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (sim, sde, params, id, cancel, stop);
        Err(SimError::Invalid(format!(
            "backend = \"cuda\": no usable NVIDIA GPU: {}",
            gpu_available(ordinal).unwrap_err()
        )))
    }
}
