//! Running one optimizer trial: many independent paths, streaming statistics.
//!
//! Paths are simulated in fixed blocks of [`BLOCK`] paths; each block has its own random stream,
//! and block results are combined in block order, so the outcome does not depend on how rayon
//! schedules blocks. Memory is O(paths × (d + records)); trajectories are never stored.

use crate::landscape::{self, Landscape};
use crate::noise::Noise;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::rng;
use crate::{Cancel, SimError};
use kappa_core::task::SimTask;
use kappa_core::{AttemptOutcome, CurvePoint, Estimate, Hyperparams, TrialId, TrialMetrics};
use rayon::prelude::*;

/// Paths per random stream. Part of the simulator's definition: changing it changes results.
pub const BLOCK: usize = 16;

/// A loss above this (or not finite) means the run diverged.
pub const DIVERGENCE_LOSS: f64 = 1e150;

/// The steps a trial takes and where it records.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Total optimizer steps: ⌊samples / B⌋.
    pub steps: u64,
    /// Steps at which the loss is recorded (0 and the last step included).
    pub record_steps: Vec<u64>,
    /// Steps up to and including this one are burn-in.
    pub burn_in_steps: u64,
}

impl Schedule {
    /// The schedule of `task` at batch size `batch_size`.
    pub fn new(task: &SimTask, batch_size: u64) -> Schedule {
        let steps = task.samples / batch_size.max(1);
        let every = task.record_every.interval(steps);
        let mut record_steps: Vec<u64> = (0..=steps).step_by(every as usize).collect();
        if record_steps.last() != Some(&steps) {
            record_steps.push(steps);
        }
        let burn_in_steps = ((steps as f64) * task.burn_in).floor() as u64;
        Schedule {
            steps,
            record_steps,
            burn_in_steps,
        }
    }
}

struct BlockResult {
    /// Loss at each record point, path-major: `losses[p * records + r]`.
    losses: Vec<f64>,
    /// Per-path mean loss over the post-burn-in steps.
    stationary: Vec<f64>,
    /// Records written before divergence (all of them if none).
    recorded: usize,
    /// First step at which a path of the block diverged.
    diverged_at: Option<u64>,
}

/// Runs the discrete optimizer on a simulated landscape.
pub fn run_optimizer(
    task: &SimTask,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
) -> Result<AttemptOutcome, SimError> {
    let land = landscape::build(&task.landscape);
    let noise = Noise::for_batch(&task.noise, params.batch_size);
    let opt = OptimizerConfig::from_params(params);
    let sched = Schedule::new(task, params.batch_size);
    let paths = task.paths as usize;
    let blocks = paths.div_ceil(BLOCK);
    let results: Vec<BlockResult> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let n = BLOCK.min(paths - b * BLOCK);
            run_block(
                land.as_ref(),
                &noise,
                opt,
                task.x0,
                &sched,
                id,
                params.seed,
                b as u64,
                n,
                cancel,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(summarise(&results, &sched, params.batch_size))
}

#[allow(clippy::too_many_arguments)]
fn run_block(
    land: &dyn Landscape,
    noise: &Noise,
    opt: OptimizerConfig,
    x0: f64,
    sched: &Schedule,
    id: TrialId,
    seed: u64,
    block: u64,
    n: usize,
    cancel: &Cancel,
) -> Result<BlockResult, SimError> {
    let d = land.dim();
    let records = sched.record_steps.len();
    let mut rng = rng::stream(id, seed, block);
    let mut x = vec![x0; n * d];
    let mut opts: Vec<Optimizer> = (0..n).map(|_| Optimizer::new(opt, d)).collect();
    let mut g = vec![0.0; d];
    let mut losses = vec![f64::NAN; n * records];
    let mut sums = vec![0.0; n];
    let mut next_record = 0;
    let mut diverged_at = None;
    let record = |step: u64, x: &[f64], losses: &mut [f64], next: &mut usize| {
        if *next < records && sched.record_steps[*next] == step {
            for p in 0..n {
                losses[p * records + *next] = land.loss(&x[p * d..(p + 1) * d]);
            }
            *next += 1;
        }
    };
    record(0, &x, &mut losses, &mut next_record);
    'steps: for step in 1..=sched.steps {
        if step % 64 == 0 && cancel.is_cancelled() {
            return Err(SimError::Cancelled);
        }
        for p in 0..n {
            let xp = &mut x[p * d..(p + 1) * d];
            land.grad(xp, &mut g);
            noise.add_to(&mut rng, &mut g);
            opts[p].step(xp, &g);
            let loss = land.loss(xp);
            if !(loss.is_finite() && loss <= DIVERGENCE_LOSS) {
                diverged_at = Some(step);
                break 'steps;
            }
            if step > sched.burn_in_steps {
                sums[p] += loss;
            }
        }
        record(step, &x, &mut losses, &mut next_record);
    }
    let averaged = (sched.steps - sched.burn_in_steps).max(1) as f64;
    let stationary = sums.iter().map(|s| s / averaged).collect();
    Ok(BlockResult {
        losses,
        stationary,
        recorded: next_record,
        diverged_at,
    })
}

fn summarise(blocks: &[BlockResult], sched: &Schedule, batch_size: u64) -> AttemptOutcome {
    let records = sched.record_steps.len();
    let recorded = blocks.iter().map(|b| b.recorded).min().unwrap_or(records);
    let mut curve = Vec::with_capacity(recorded);
    for r in 0..recorded {
        let values = blocks.iter().flat_map(|b| {
            let paths = b.stationary.len();
            (0..paths).map(move |p| b.losses[p * records + r])
        });
        let est = mean_se(values);
        let step = sched.record_steps[r];
        curve.push(CurvePoint {
            samples: step * batch_size,
            step,
            loss_mean: est.mean,
            loss_se: est.se,
        });
    }
    let diverged = blocks.iter().filter_map(|b| b.diverged_at).min();
    match diverged {
        Some(step) => AttemptOutcome::Diverged {
            step,
            metrics: TrialMetrics {
                curve,
                stationary_loss: None,
            },
        },
        None => {
            let stationary = mean_se(blocks.iter().flat_map(|b| b.stationary.iter().copied()));
            AttemptOutcome::Succeeded(TrialMetrics {
                curve,
                stationary_loss: Some(stationary),
            })
        }
    }
}

/// Mean and standard error of the mean (Welford, in iteration order).
pub fn mean_se(values: impl Iterator<Item = f64>) -> Estimate {
    let (mut n, mut mean, mut m2) = (0u64, 0.0f64, 0.0f64);
    for v in values {
        n += 1;
        let delta = v - mean;
        mean += delta / n as f64;
        m2 += delta * (v - mean);
    }
    let se = if n > 1 {
        (m2 / (n - 1) as f64 / n as f64).sqrt()
    } else {
        0.0
    };
    Estimate {
        mean: if n > 0 { mean } else { f64::NAN },
        se,
    }
}
