//! Running one simulation trial: many independent paths, streaming statistics.
//!
//! Paths are simulated in fixed blocks of [`BLOCK`] paths; each block has its own random stream,
//! and block results are combined in block order, so the outcome does not depend on how rayon
//! schedules blocks. Memory is O(paths × records) for results plus O(BLOCK × d) per running block;
//! trajectories are never stored.

use crate::landscape::{self, Land, Landscape};
use crate::noise::Noise;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::sde::{Scratch, Sde, SdeState};
use crate::steps::{Rate, Steps};
use crate::theory::{self, Form};
use crate::{Cancel, SimError, rng};
use kappa_core::task::SimTask;
use kappa_core::{AttemptOutcome, CurvePoint, Estimate, Hyperparams, TrialId, TrialMetrics};
use rayon::prelude::*;

/// Paths per random stream. Part of the simulator's definition: changing it changes results.
pub const BLOCK: usize = 16;

/// A loss above this (or not finite) means the run diverged.
pub const DIVERGENCE_LOSS: f64 = 1e150;

/// The steps of a simulation of `task` at batch size `batch_size`: ⌊samples / B⌋.
pub fn steps_of(task: &SimTask, batch_size: u64) -> Steps {
    Steps::new(task.samples / batch_size.max(1), task.record_every, task.burn_in)
}

/// Each step's learning rate in a simulation of `task`: the trial's η under the task's schedule.
pub fn rate_of(task: &SimTask, params: &Hyperparams) -> Rate {
    Rate::new(params.lr, &task.lr_schedule, params.batch_size, task.samples)
}

/// How paths move: the discrete optimizer, or its SDE.
enum Method {
    Discrete(OptimizerConfig),
    Sde(Sde, u32),
}

/// Everything a block needs, shared by all blocks of a trial.
struct Setup<'a> {
    land: &'a Land,
    noise: &'a Noise,
    method: &'a Method,
    x0: f64,
    steps: &'a Steps,
    rate: &'a Rate,
    id: TrialId,
    seed: u64,
    /// The batch size B (σ₁² = B σ_B²).
    batch: u64,
    phases: bool,
    cancel: &'a Cancel,
}

/// What a block of paths (or, on the GPU, all of them) leaves for [`summarise`].
pub(crate) struct BlockResult {
    /// Loss at each record point, path-major: `losses[p * records + r]`.
    pub(crate) losses: Vec<f64>,
    /// Per-path mean loss over the post-burn-in steps.
    pub(crate) stationary: Vec<f64>,
    /// Per path, the mean loss over the second half of those steps minus the mean over the
    /// first half (empty: not measured).
    pub(crate) drift: Vec<f64>,
    /// Counts of (path, coordinate) pairs in phases 1, 2, 3 at each record point.
    pub(crate) phase_counts: Vec<[u64; 3]>,
    /// Records written before divergence (all of them if none).
    pub(crate) recorded: usize,
    /// Sum over the block's paths of |∇f|² at each record point (empty: not measured).
    pub(crate) grad_sq: Vec<f64>,
    /// Sums over the block's paths of tr(H Σ₁) and ∇fᵀ H ∇f at each record point, for B_noise
    /// (empty: not measured).
    pub(crate) curvature: Vec<[f64; 2]>,
    /// First step at which a path of the block diverged.
    pub(crate) diverged_at: Option<u64>,
}

/// Runs a simulation trial: the discrete optimizer (`sde = false`) or its SDE.
pub fn run_sim(
    task: &SimTask,
    sde: bool,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    stop: Option<u64>,
) -> Result<AttemptOutcome, SimError> {
    let land = landscape::build(&task.landscape);
    let d = land.dim();
    let noise = Noise::for_batch(&task.noise, params.batch_size, d).map_err(|e| SimError::Invalid(e.to_string()))?;
    let method = if sde {
        let sde = Sde::new(params, task.sde_model, task.refine, land.diagonal(), &noise).map_err(SimError::Invalid)?;
        Method::Sde(sde, task.refine)
    } else {
        let mut cfg = OptimizerConfig::from_params(params);
        cfg.bias_correction = task.bias_correction;
        Method::Discrete(cfg)
    };
    let steps = steps_of(task, params.batch_size).until(stop, params.batch_size);
    let rate = rate_of(task, params);
    if let Method::Sde(sde, _) = &method {
        sde.check_schedule(&rate).map_err(SimError::Invalid)?;
    }
    let setup = Setup {
        land: &land,
        noise: &noise,
        method: &method,
        x0: task.x0,
        steps: &steps,
        rate: &rate,
        id,
        seed: params.seed,
        batch: params.batch_size,
        phases: params.optimizer.sign_like(),
        cancel,
    };
    let paths = task.paths as usize;
    let blocks = paths.div_ceil(BLOCK);
    let results: Vec<BlockResult> = (0..blocks)
        .into_par_iter()
        .map(|b| run_block(&setup, b as u64, BLOCK.min(paths - b * BLOCK)))
        .collect::<Result<_, _>>()?;
    let form = if sde { Form::Sde } else { Form::Discrete };
    let (theory, notes) = theory::predict(params, form, &land, &noise, task.x0, &steps, &rate, params.batch_size);
    let trace = noise.per_sample_trace(params.batch_size);
    let mut outcome = summarise(&results, &steps, params.batch_size, d, trace, theory, notes);
    rate.unsettle(&mut outcome);
    Ok(outcome)
}

/// Runs one block, compiled for the widest vector instructions the CPU has. Rust never fuses
/// multiply-adds on its own, so every variant computes the same bits.
fn run_block(s: &Setup<'_>, block: u64, n: usize) -> Result<BlockResult, SimError> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::normal::has_avx512() {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { run_block_avx512(s, block, n) };
        }
        if crate::normal::has_avx2() {
            // SAFETY: as above.
            return unsafe { run_block_avx2(s, block, n) };
        }
    }
    run_block_inner(s, block, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn run_block_avx512(s: &Setup<'_>, block: u64, n: usize) -> Result<BlockResult, SimError> {
    run_block_inner(s, block, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_block_avx2(s: &Setup<'_>, block: u64, n: usize) -> Result<BlockResult, SimError> {
    run_block_inner(s, block, n)
}

/// Runs one block on its landscape, each landscape compiled on its own (the diagonal quadratic's
/// loop is what it was before other landscapes existed).
#[inline(always)]
fn run_block_inner(s: &Setup<'_>, block: u64, n: usize) -> Result<BlockResult, SimError> {
    match s.land {
        Land::Diagonal(q) => run_block_on(s, q, block, n),
        Land::Dense(q) => run_block_on(s, q, block, n),
        Land::DoubleWell(w) => run_block_on(s, w, block, n),
    }
}

#[inline(always)]
fn run_block_on<L: Landscape>(s: &Setup<'_>, land: &L, block: u64, n: usize) -> Result<BlockResult, SimError> {
    let lambda = land.hessian_diagonal();
    let d = land.dim();
    let steps = s.steps;
    let records = steps.record_steps.len();
    let mut rng = rng::stream(s.id, s.seed, block);
    let mut x = vec![s.x0; n * d];
    let mut scratch = Scratch::new(d);
    let mut opts: Vec<Optimizer> = Vec::new();
    let mut sde_states: Vec<SdeState> = Vec::new();
    match s.method {
        Method::Discrete(cfg) => opts = (0..n).map(|_| Optimizer::new(*cfg, d)).collect(),
        Method::Sde(sde, _) => {
            land.grad(&x[..d], &mut scratch.g);
            sde_states = (0..n).map(|_| sde.init(&scratch.g, s.noise)).collect();
        }
    }
    let mut losses = vec![f64::NAN; n * records];
    let mut phase_counts = vec![[0u64; 3]; if s.phases { records } else { 0 }];
    let mut grad_sq = vec![0.0; records];
    // B_noise's per-sample variances σ₁,i² (none for infinite-variance noise).
    let per_sample: Option<Vec<f64>> =
        s.noise.std.as_ref().map(|std| std.iter().map(|v| v * v * s.batch as f64).collect());
    let mut curvature = vec![[0.0; 2]; if per_sample.is_some() { records } else { 0 }];
    // tr(HΣ₁) once, where the Hessian does not depend on x.
    let trace_hs = per_sample.as_ref().filter(|_| land.constant_hessian()).map(|w| land.hess_diag_dot(&x[..d], w));
    let (mut gr, mut hg) = (vec![0.0; d], vec![0.0; d]);
    let mut sums = vec![0.0; n];
    // The averaging window's second half, for the settled check (TrialMetrics::settled).
    let mid = steps.burn_in_steps + (steps.total - steps.burn_in_steps) / 2;
    let mut late = vec![0.0; n];
    let mut next_record = 0;
    let mut diverged_at = None;
    // Records reuse the loss each path computed in its step (the same bits as recomputing it).
    let mut step_losses: Vec<f64> = (0..n).map(|p| land.loss(&x[p * d..(p + 1) * d])).collect();
    let mut record = |step: u64,
                      x: &[f64],
                      step_losses: &[f64],
                      losses: &mut [f64],
                      phase_counts: &mut [[u64; 3]],
                      grad_sq: &mut [f64],
                      curvature: &mut [[f64; 2]],
                      next: &mut usize| {
        if *next < records && steps.record_steps[*next] == step {
            for p in 0..n {
                let xp = &x[p * d..(p + 1) * d];
                losses[p * records + *next] = step_losses[p];
                // |∇f|² (the gradient noise scale B_simple), ∇fᵀH∇f and tr(HΣ₁) (B_noise).
                let (gg, ghg) = land.gradient_norms(xp, &mut gr, &mut hg);
                grad_sq[*next] += gg;
                if let Some(w) = &per_sample {
                    curvature[*next][0] += trace_hs.unwrap_or_else(|| land.hess_diag_dot(xp, w));
                    curvature[*next][1] += ghg;
                }
                if s.phases {
                    land.grad(xp, &mut gr);
                    count_phases(&gr, &s.noise.sigma, &mut phase_counts[*next]);
                }
            }
            *next += 1;
        }
    };
    record(0, &x, &step_losses, &mut losses, &mut phase_counts, &mut grad_sq, &mut curvature, &mut next_record);
    'steps: for step in 1..=steps.total {
        if step % 64 == 0 && s.cancel.is_cancelled() {
            return Err(SimError::Cancelled);
        }
        let scale = s.rate.scale(step - 1);
        for p in 0..n {
            let xp = &mut x[p * d..(p + 1) * d];
            let mut fused = None;
            match s.method {
                Method::Discrete(_) => {
                    let Scratch { g, z } = &mut scratch;
                    land.grad(xp, g);
                    s.noise.standard(&mut rng, z);
                    for ((gi, zi), si) in g.iter_mut().zip(z.iter()).zip(&s.noise.sigma) {
                        *gi += si * zi;
                    }
                    opts[p].step(xp, g, s.rate.lr * scale);
                }
                Method::Sde(sde, refine) => {
                    for _ in 0..*refine {
                        fused = match lambda {
                            Some(lambda) => {
                                sde.substep(xp, &mut sde_states[p], lambda, s.noise, &mut rng, &mut scratch, scale)
                            }
                            None => {
                                let Scratch { g, z } = &mut scratch;
                                land.grad(xp, g);
                                sde.substep_with_grad(xp, &mut sde_states[p], g, s.noise, &mut rng, z, scale);
                                None
                            }
                        };
                    }
                }
            }
            let loss = fused.unwrap_or_else(|| land.loss(xp));
            if !(loss.is_finite() && loss <= DIVERGENCE_LOSS) {
                diverged_at = Some(step);
                break 'steps;
            }
            if step > steps.burn_in_steps {
                sums[p] += loss;
                if step > mid {
                    late[p] += loss;
                }
            }
            step_losses[p] = loss;
        }
        record(step, &x, &step_losses, &mut losses, &mut phase_counts, &mut grad_sq, &mut curvature, &mut next_record);
    }
    let averaged = (steps.total - steps.burn_in_steps).max(1) as f64;
    let stationary = sums.iter().map(|s| s / averaged).collect();
    let (early_steps, late_steps) = ((mid - steps.burn_in_steps) as f64, (steps.total - mid) as f64);
    let drift = if early_steps > 0.0 && late_steps > 0.0 {
        sums.iter().zip(&late).map(|(all, late)| late / late_steps - (all - late) / early_steps).collect()
    } else {
        Vec::new()
    };
    Ok(BlockResult { losses, stationary, drift, phase_counts, recorded: next_record, diverged_at, grad_sq, curvature })
}

/// Adds each coordinate to its SignSGD phase by |Y| = |∇f_i|/(√2σ_i) (THEORY.md §3), from the
/// gradient `grad`.
fn count_phases(grad: &[f64], sigma: &[f64], counts: &mut [u64; 3]) {
    for (g, s) in grad.iter().zip(sigma) {
        let grad = g.abs();
        let phase = if grad == 0.0 {
            2
        } else {
            let y = grad / (std::f64::consts::SQRT_2 * s);
            if y > 1.5 {
                0
            } else if y >= 1.0 {
                1
            } else {
                2
            }
        };
        counts[phase] += 1;
    }
}

/// `trace` is tr Σ₁ (per-sample noise covariance): with it, each record point carries the
/// gradient noise scale `noise_scale` = B_simple = tr Σ₁ / |∇f|² (THEORY.md §7), |∇f|² averaged
/// over paths before dividing (a ratio of path means).
pub(crate) fn summarise(
    blocks: &[BlockResult],
    steps: &Steps,
    batch_size: u64,
    d: usize,
    trace: Option<f64>,
    theory: Option<kappa_core::Theory>,
    mut notes: Vec<String>,
) -> AttemptOutcome {
    let records = steps.record_steps.len();
    let recorded = blocks.iter().map(|b| b.recorded).min().unwrap_or(records);
    let paths: usize = blocks.iter().map(|b| b.stationary.len()).sum();
    let mut curve = Vec::with_capacity(recorded);
    let mut column = Vec::with_capacity(paths);
    for r in 0..recorded {
        column.clear();
        for b in blocks {
            column.extend((0..b.stationary.len()).map(|p| b.losses[p * records + r]));
        }
        let est = mean_se(column.iter().copied());
        column.sort_by(f64::total_cmp);
        let phases = (!blocks.is_empty() && !blocks[0].phase_counts.is_empty()).then(|| {
            let mut c = [0u64; 3];
            for b in blocks {
                for (k, v) in b.phase_counts[r].iter().enumerate() {
                    c[k] += v;
                }
            }
            let total = (paths * d).max(1) as f64;
            c.map(|v| v as f64 / total)
        });
        let step = steps.record_steps[r];
        let mut extra = std::collections::BTreeMap::new();
        if let Some(trace) = trace
            && blocks.iter().all(|b| b.grad_sq.len() > r)
        {
            let mean = blocks.iter().map(|b| b.grad_sq[r]).sum::<f64>() / paths.max(1) as f64;
            if mean > 0.0 && (trace / mean).is_finite() {
                extra.insert("noise_scale".to_string(), trace / mean);
            }
        }
        if blocks.iter().all(|b| b.curvature.len() > r) {
            // B_noise = tr(HΣ₁)/(∇fᵀH∇f), numerator and denominator averaged over paths first.
            let (num, den) =
                blocks.iter().fold((0.0, 0.0), |(a, b), blk| (a + blk.curvature[r][0], b + blk.curvature[r][1]));
            if den > 0.0 && (num / den).is_finite() && num > 0.0 {
                extra.insert("b_noise".to_string(), num / den);
            }
        }
        curve.push(CurvePoint {
            samples: step * batch_size,
            step,
            loss_mean: est.mean,
            loss_se: est.se,
            loss_q10: quantile(&column, 0.1),
            loss_q50: quantile(&column, 0.5),
            loss_q90: quantile(&column, 0.9),
            phases,
            extra,
        });
    }
    let diverged = blocks.iter().filter_map(|b| b.diverged_at).min();
    match diverged {
        Some(step) => {
            let theory = theory.map(|mut t| {
                t.curve.truncate(curve.len());
                t
            });
            notes.push(format!("the loss overflowed at step {step}"));
            AttemptOutcome::Diverged {
                step,
                metrics: TrialMetrics {
                    resumed_from: None,
                    curve,
                    stationary_loss: None,
                    stationary_drift: None,
                    theory,
                    notes,
                },
            }
        }
        None => {
            // Without a finite stationary loss (noted by the theory), the time average measures nothing.
            // (Nor does a run stopped at a rung before its burn-in ended.)
            let finite =
                !notes.iter().any(|n| n.starts_with("no finite stationary loss")) && steps.total > steps.burn_in_steps;
            let stationary = finite.then(|| mean_se(blocks.iter().flat_map(|b| b.stationary.iter().copied())));
            // Each path's drift is exact (every step summed): the SE comes from their spread.
            let measured = blocks.iter().all(|b| b.drift.len() == b.stationary.len());
            let stationary_drift = (finite && measured)
                .then(|| mean_se(blocks.iter().flat_map(|b| b.drift.iter().copied())))
                .filter(|d| d.mean.is_finite());
            AttemptOutcome::Succeeded(TrialMetrics {
                resumed_from: None,
                curve,
                stationary_loss: stationary,
                stationary_drift,
                theory,
                notes,
            })
        }
    }
}

/// Linear-interpolated quantile `q` of sorted values (NaN for none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean and standard error of the mean (Welford, in iteration order): [`Estimate::of_samples`].
pub fn mean_se(values: impl Iterator<Item = f64>) -> Estimate {
    Estimate::of_samples(values)
}
