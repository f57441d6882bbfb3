//! Running one training trial: `paths` independent replicates in parallel, summarised like a
//! simulation's paths.

use crate::data::{self, Split};
use crate::model::{Network, Workspace};
use kappa_core::task::{NoiseSpec, Objective, SdeModel, Sigma, TrainTask};
use kappa_core::{AttemptOutcome, CurvePoint, Estimate, Hyperparams, TrialId, TrialMetrics};
use kappa_sim::noise::Noise;
use kappa_sim::optim::{Optimizer, OptimizerConfig};
use kappa_sim::run::{DIVERGENCE_LOSS, mean_se, quantile};
use kappa_sim::sde::Sde;
use kappa_sim::{Cancel, Rate, SimError, Steps, rng};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where gradients come from.
pub(crate) enum Method {
    /// Minibatches of B samples drawn without replacement, reshuffled every epoch.
    Minibatch { batch: usize },
    /// Full-batch gradients plus N(0, σ_B² I).
    Injected { noise: Noise },
    /// The optimizer's SDE: full-batch drift, the injected covariance as diffusion.
    Sde { sde: Sde, noise: Noise, refine: u32 },
}

/// Everything a replicate needs, shared by all replicates of a trial.
pub(crate) struct Setup<'a> {
    pub net: Network,
    pub split: &'a Split,
    pub method: Method,
    pub optimizer: OptimizerConfig,
    pub steps: Steps,
    /// Each step's learning rate (the task's schedule).
    pub rate: Rate,
    pub id: TrialId,
    pub seed: u64,
    /// The trial's batch size B.
    pub batch_size: u64,
    pub cancel: &'a Cancel,
    /// The earliest step at which some replicate diverged (`u64::MAX`: none yet). Replicates
    /// past it stop early; the outcome cannot depend on it (see [`summarise`]).
    pub diverged: AtomicU64,
}

/// The metrics of one replicate at its record points.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ReplicateResult {
    pub train_loss: Vec<f64>,
    pub test_loss: Vec<f64>,
    pub train_accuracy: Vec<f64>,
    pub test_accuracy: Vec<f64>,
    /// The gradient-noise probe at each record point (see [`Replicate::probe`]).
    pub probe: Vec<Probe>,
    /// The step at which this replicate diverged.
    pub diverged_at: Option<u64>,
}

/// What the gradient noise scale is estimated from at one record point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Probe {
    /// Minibatch training: mean |G_b|² and |G_B|² over [`PROBE_PAIRS`] fresh minibatches of
    /// b = B and 4B samples (McCandlish et al. 2018, App. A).
    TwoBatch { small: f64, big: f64, b: f64, big_b: f64 },
    /// Injected noise of known trace: the full-batch |G|².
    Exact { grad_sq: f64, trace: f64 },
    /// Not measured (the training split is too small for a second, larger batch).
    None,
}

/// Pairs of minibatches each probe averages.
const PROBE_PAIRS: usize = 4;

/// The random stream of replicate `r`'s probes: apart from its training stream, so measuring the
/// noise scale changes nothing the replicate computes.
const PROBE_STREAM: u64 = 1 << 40;

/// The gradient noise scale B_simple at one record point, from every replicate's probe: the
/// unbiased estimates of |G|² and tr Σ₁ are averaged over replicates before dividing.
fn noise_scale(probes: impl Iterator<Item = Probe>) -> Option<f64> {
    let (mut g2, mut tr, mut n) = (0.0, 0.0, 0usize);
    for p in probes {
        match p {
            Probe::TwoBatch { small, big, b, big_b } => {
                g2 += (big_b * big - b * small) / (big_b - b);
                tr += (small - big) / (1.0 / b - 1.0 / big_b);
            }
            Probe::Exact { grad_sq, trace } => {
                g2 += grad_sq;
                tr += trace;
            }
            Probe::None => return None,
        }
        n += 1;
    }
    (n > 0 && g2 > 0.0 && tr > 0.0).then(|| tr / g2)
}

/// Runs a `kind = "train"` trial: `task.paths` replicates on the rayon pool.
///
/// Steps: ⌊samples / B⌋ (at least 1). Gradients: minibatches of B = `params.batch_size` drawn
/// without replacement (the training split is reshuffled every epoch, the last partial batch
/// dropped); with `task.noise = Some(σ₁)` full-batch gradients plus N(0, σ_B² I), σ_B = σ₁/√B;
/// with `task.sde` the optimizer's SDE (`task.refine` Euler–Maruyama substeps per step, drift from
/// the full-batch gradient, diffusion from the injected noise). The optimizer is
/// [`kappa_sim::optim::Optimizer`] on the flat parameter vector.
///
/// Metrics at step 0, every `record_every` steps and at the last step, each on the whole
/// training and held-out splits: the curve's loss is the training loss (mean, SE and quantiles
/// over replicates); `extra` holds the means over replicates of `test_loss` and, for
/// classification, `test_accuracy` and `train_accuracy`. The stationary loss is, per replicate,
/// the mean training loss over the record points after the burn-in, then mean and SE over
/// replicates. A non-finite loss (or one above [`DIVERGENCE_LOSS`]) or non-finite parameters
/// end the trial as [`AttemptOutcome::Diverged`] with the curve up to the last record before.
///
/// Errors: [`SimError::Invalid`] for data that cannot be loaded (naming file, line and column)
/// or settings that cannot run (B larger than the training split without injected noise);
/// [`SimError::Cancelled`] once `cancel` is set (checked every step).
pub fn run_train(
    task: &TrainTask,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
) -> Result<AttemptOutcome, SimError> {
    run_train_with(task, params, id, cancel, &Continuation::default())
}

/// How a training attempt of successive halving runs: it stops at its rung's budget and
/// continues from the checkpoint the rung before left in the trial's directory.
#[derive(Clone, Debug, Default)]
pub struct Continuation {
    /// The trial's directory (kept across its attempts): the checkpoint is read from and written
    /// to [`CHECKPOINT`] there. `None`: every attempt starts at step 0.
    pub dir: Option<std::path::PathBuf>,
    /// Stop at this rung's budget, in samples seen (at the last record point within it; see
    /// [`kappa_sim::Steps::until`]); `None`: the whole budget.
    pub stop_samples: Option<u64>,
}

/// A replicate run: its record points, and its state at the end when asked to keep it.
type Ran = (ReplicateResult, Option<Vec<u8>>);

/// The checkpoint's file name in a trial's directory.
pub const CHECKPOINT: &str = "kappa-train.checkpoint";

/// How an error restoring a replicate from the checkpoint begins (the attempt then starts over).
const RESTORE_FAILED: &str = "the checkpoint could not be read back";

/// [`run_train`], stopping at a rung and continuing from a checkpoint: an attempt that finds
/// its trial's checkpoint (model, optimizer state, random streams, data order and position, the
/// record points so far, for every replicate) at a step within its budget goes on from there;
/// one that stops short of the whole budget writes the checkpoint at its last step. The curve
/// is the whole run's from step 0 either way, bit for bit (`resumed_from` says where this
/// attempt started). A checkpoint that cannot be read (another trial's, truncated) is not
/// used: the attempt starts at step 0, and its notes say why.
pub fn run_train_with(
    task: &TrainTask,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    cont: &Continuation,
) -> Result<AttemptOutcome, SimError> {
    let split = data::load_shared(&task.data, task.holdout).map_err(|e| SimError::Invalid(e.to_string()))?;
    let mut setup = setup(task, params, id, cancel, &split)?;
    let full = setup.steps.total;
    setup.steps = setup.steps.until(cont.stop_samples, params.batch_size);
    let file = cont.dir.as_ref().map(|d| d.join(CHECKPOINT));
    let mut notes = Vec::new();
    let saved = match file.as_deref().map(|f| crate::checkpoint::read(f, id, full, task.paths)) {
        Some(Ok(Some(c))) if c.step <= setup.steps.total => Some(c),
        Some(Ok(Some(c))) => {
            notes.push(format!("a checkpoint at step {} is past this rung's end: started at step 0", c.step));
            None
        }
        Some(Err(e)) => {
            notes.push(format!("the checkpoint could not be used ({e}): started at step 0"));
            None
        }
        _ => None,
    };
    let keep = setup.steps.total < full;
    let run = |saved: Option<crate::checkpoint::Saved>| {
        let from = saved.as_ref().map_or(0, |c| c.step);
        let mut blobs = saved.map(|c| c.replicates).unwrap_or_default().into_iter().map(Some).collect::<Vec<_>>();
        blobs.resize(task.paths as usize, None);
        let runs: Result<Vec<Ran>, SimError> = blobs
            .into_par_iter()
            .enumerate()
            .map(|(r, blob)| run_replicate_from(&setup, r as u64, from, blob.as_deref(), keep))
            .collect();
        runs.map(|r| (from, r))
    };
    let (from, runs) = match run(saved) {
        // A replicate's state that does not read back (a damaged file): from step 0.
        Err(SimError::Invalid(e)) if e.starts_with(RESTORE_FAILED) => {
            notes.push(format!("{e}: started at step 0"));
            run(None)?
        }
        other => other?,
    };
    let (results, states): (Vec<ReplicateResult>, Vec<Option<Vec<u8>>>) = runs.into_iter().unzip();
    let mut outcome = summarise(&setup, task, params, &results);
    setup.rate.unsettle(&mut outcome);
    if keep
        && let (Some(f), AttemptOutcome::Succeeded(_)) = (&file, &outcome)
        && let Some(states) = states.into_iter().collect::<Option<Vec<Vec<u8>>>>()
        && let Err(e) = crate::checkpoint::write(f, id, full, setup.steps.total, &states)
    {
        notes.push(format!("the checkpoint could not be written ({e}): the next rung starts at step 0"));
    }
    if !keep
        && from > 0
        && let Some(f) = &file
    {
        // The whole budget is run: the last rung's checkpoint is of no further use.
        let _ = std::fs::remove_file(f);
    }
    if let AttemptOutcome::Succeeded(m) | AttemptOutcome::Diverged { metrics: m, .. } = &mut outcome {
        m.resumed_from = (from > 0).then_some(from);
        m.notes.extend(notes);
    }
    Ok(outcome)
}

/// Checks the trial's settings and lowers them.
pub(crate) fn setup<'a>(
    task: &TrainTask,
    params: &Hyperparams,
    id: TrialId,
    cancel: &'a Cancel,
    split: &'a Split,
) -> Result<Setup<'a>, SimError> {
    let invalid = |m: String| Err(SimError::Invalid(m));
    if task.paths == 0 {
        return invalid("paths (replicates) must be at least 1".into());
    }
    if params.batch_size == 0 {
        return invalid("batch_size must be at least 1".into());
    }
    let n_train = split.train.len();
    let hidden: Vec<usize> = task.model.hidden.iter().map(|&w| w as usize).collect();
    if hidden.contains(&0) {
        return invalid("hidden layer widths must be at least 1".into());
    }
    let net =
        Network::new(split.train.inputs(), &hidden, split.train.y.outputs(), task.model.activation, split.objective());
    let d = net.dim();
    let noise_for = |sigma: f64| {
        Noise::for_batch(&NoiseSpec::Gaussian { sigma: Sigma::Scalar(sigma) }, params.batch_size, d)
            .map_err(|e| SimError::Invalid(e.to_string()))
    };
    let method = match (task.noise, task.sde) {
        (None, true) => {
            return invalid("sde = true needs injected noise (`noise`): its diffusion is that noise".into());
        }
        (None, false) => {
            if params.batch_size as usize > n_train {
                return invalid(format!(
                    "batch_size {} is larger than the training split ({n_train} samples: {}); minibatches are \
                     drawn without replacement",
                    params.batch_size, split.description
                ));
            }
            Method::Minibatch { batch: params.batch_size as usize }
        }
        (Some(sigma), sde) => {
            if !(sigma.is_finite() && sigma >= 0.0) {
                return invalid(format!("noise sigma must be finite and ≥ 0, got {sigma}"));
            }
            let noise = noise_for(sigma)?;
            if sde {
                let sde = Sde::generic(params, task.sde_model, task.refine).map_err(SimError::Invalid)?;
                Method::Sde { sde, noise, refine: task.refine.max(1) }
            } else {
                Method::Injected { noise }
            }
        }
    };
    let rate = Rate::new(params.lr, &task.lr_schedule, params.batch_size, task.samples);
    if let Method::Sde { sde, .. } = &method {
        sde.check_schedule(&rate).map_err(SimError::Invalid)?;
    }
    let mut optimizer = OptimizerConfig::from_params(params);
    optimizer.bias_correction = task.bias_correction;
    Ok(Setup {
        net,
        split,
        method,
        optimizer,
        steps: Steps::new((task.samples / params.batch_size.max(1)).max(1), task.record_every, task.burn_in),
        rate,
        id,
        seed: params.seed,
        batch_size: params.batch_size,
        cancel,
        diverged: AtomicU64::new(u64::MAX),
    })
}

/// One replicate's state: parameters, gradient, optimizer (or SDE state), random streams.
pub(crate) struct Replicate<'s, 'a> {
    s: &'s Setup<'a>,
    pub params: Vec<f64>,
    pub grad: Vec<f64>,
    z: Vec<f64>,
    ws: Workspace,
    // What a checkpoint keeps (`crate::checkpoint`), besides the parameters.
    pub(crate) rng: rng::StreamRng,
    pub(crate) probe_rng: rng::StreamRng,
    pub(crate) opt: Optimizer,
    pub(crate) sde_state: Option<kappa_sim::sde::SdeState>,
    pub(crate) order: Vec<u32>,
    pub(crate) cursor: usize,
}

impl<'s, 'a> Replicate<'s, 'a> {
    /// Replicate `r`: initialised from its own stream `rng::stream(id, seed, r)`.
    pub fn new(s: &'s Setup<'a>, r: u64) -> Replicate<'s, 'a> {
        let d = s.net.dim();
        let mut rng = rng::stream(s.id, s.seed, r);
        let probe_rng = rng::stream(s.id, s.seed, PROBE_STREAM + r);
        let mut params = vec![0.0; d];
        s.net.init(&mut params, &mut rng.normal);
        let n = s.split.train.len();
        let mut rep = Replicate {
            s,
            params,
            grad: vec![0.0; d],
            z: vec![0.0; d],
            ws: s.net.workspace(),
            rng,
            probe_rng,
            opt: Optimizer::new(s.optimizer, d),
            sde_state: None,
            order: (0..n as u32).collect(),
            cursor: n,
        };
        if let Method::Sde { sde, noise, .. } = &s.method {
            s.net.full_gradient(&rep.params, &s.split.train, &mut rep.ws, &mut rep.grad);
            rep.sde_state = Some(sde.init(&rep.grad, noise));
        }
        rep
    }

    /// Steps `k`, `k + 1`, …, `k + n − 1`, compiled for the CPU's vector instructions; returns the
    /// last step's loss.
    pub fn run_steps(&mut self, k: u64, n: u64) -> f64 {
        crate::simd::dispatch(
            #[inline(always)]
            || {
                let mut loss = f64::NAN;
                for i in 0..n {
                    loss = self.step(k + i);
                }
                loss
            },
        )
    }

    /// The gradient-noise probe at the current parameters, from the probe stream (the training
    /// state is untouched: the next step recomputes the gradient).
    pub fn probe(&mut self) -> Probe {
        let s = self.s;
        let train = &s.split.train;
        match &s.method {
            Method::Minibatch { batch } => {
                let (b, big_b) = (*batch, 4 * *batch);
                if big_b > train.len() {
                    return Probe::None;
                }
                let mut draw: Vec<u32> = (0..train.len() as u32).collect();
                let (mut small, mut big) = (0.0, 0.0);
                for _ in 0..PROBE_PAIRS {
                    // A fresh sample of b + 4b distinct indices (partial Fisher-Yates).
                    for i in 0..b + big_b {
                        let j = i + data::below(&mut self.probe_rng.scalar, draw.len() - i);
                        draw.swap(i, j);
                    }
                    s.net.batch_gradient(&self.params, train, &draw[..b], &mut self.ws, &mut self.grad);
                    small += self.grad.iter().map(|g| g * g).sum::<f64>();
                    s.net.batch_gradient(&self.params, train, &draw[b..b + big_b], &mut self.ws, &mut self.grad);
                    big += self.grad.iter().map(|g| g * g).sum::<f64>();
                }
                let k = PROBE_PAIRS as f64;
                Probe::TwoBatch { small: small / k, big: big / k, b: b as f64, big_b: big_b as f64 }
            }
            Method::Injected { noise } | Method::Sde { noise, .. } => {
                s.net.full_gradient(&self.params, train, &mut self.ws, &mut self.grad);
                let grad_sq = self.grad.iter().map(|g| g * g).sum::<f64>();
                let trace = noise.per_sample_trace(s.batch_size).unwrap_or(f64::NAN);
                Probe::Exact { grad_sq, trace }
            }
        }
    }

    /// Optimizer step `k` (0 is the first; or `refine` SDE substeps), at that step's learning
    /// rate; returns the loss the gradient was computed at (the minibatch's or the full training
    /// set's, before the update).
    #[inline(always)]
    pub fn step(&mut self, k: u64) -> f64 {
        let s = self.s;
        let scale = s.rate.scale(k);
        let train = &s.split.train;
        match &s.method {
            Method::Minibatch { batch } => {
                if self.cursor + batch > self.order.len() {
                    // A new epoch: reshuffle; the last partial batch of the epoch is dropped.
                    data::shuffle(&mut self.order, &mut self.rng.scalar);
                    self.cursor = 0;
                }
                let idx = &self.order[self.cursor..self.cursor + batch];
                self.cursor += batch;
                let loss = s.net.batch_gradient(&self.params, train, idx, &mut self.ws, &mut self.grad);
                self.opt.step(&mut self.params, &self.grad, s.rate.lr * scale);
                loss
            }
            Method::Injected { noise } => {
                let loss = s.net.full_gradient(&self.params, train, &mut self.ws, &mut self.grad);
                noise.standard(&mut self.rng, &mut self.z);
                for ((g, z), sigma) in self.grad.iter_mut().zip(&self.z).zip(&noise.sigma) {
                    *g += sigma * z;
                }
                self.opt.step(&mut self.params, &self.grad, s.rate.lr * scale);
                loss
            }
            Method::Sde { sde, noise, refine } => {
                let st = self.sde_state.as_mut().expect("initialised in new");
                let mut first = f64::NAN;
                for k in 0..*refine {
                    let loss = s.net.full_gradient(&self.params, train, &mut self.ws, &mut self.grad);
                    if k == 0 {
                        first = loss;
                    }
                    sde.substep_with_grad(&mut self.params, st, &self.grad, noise, &mut self.rng, &mut self.z, scale);
                }
                first
            }
        }
    }
}

/// Whether every value is finite (a sum is: NaN and ±∞ propagate; branch-free, so it vectorises).
#[inline(always)]
fn all_finite(v: &[f64]) -> bool {
    let mut acc = [0.0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i] * 0.0;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|x| x * 0.0).sum();
    acc.iter().sum::<f64>() + tail == 0.0
}

fn finite_loss(l: f64) -> bool {
    l.is_finite() && l <= DIVERGENCE_LOSS
}

/// Runs replicate `r` from step `from` (its state and record points so far in `saved`, as
/// [`Replicate::save`] wrote them; `None` with `from` = 0) to the end of the schedule, or until
/// it diverges; with `keep`, returns its state at the end too.
pub(crate) fn run_replicate_from(
    s: &Setup<'_>,
    r: u64,
    from: u64,
    saved: Option<&[u8]>,
    keep: bool,
) -> Result<(ReplicateResult, Option<Vec<u8>>), SimError> {
    crate::simd::dispatch(
        #[inline(always)]
        || run_replicate_inner(s, r, from, saved, keep),
    )
}

#[inline(always)]
fn run_replicate_inner(
    s: &Setup<'_>,
    r: u64,
    from: u64,
    saved: Option<&[u8]>,
    keep: bool,
) -> Result<(ReplicateResult, Option<Vec<u8>>), SimError> {
    let mut rep = Replicate::new(s, r);
    let mut out = ReplicateResult::default();
    let from = match saved {
        Some(bytes) => {
            let mut d = kappa_sim::checkpoint::Decoder::new(bytes);
            rep.restore(&mut d, &mut out)
                .map_err(|e| SimError::Invalid(format!("{RESTORE_FAILED} (replicate {r}: {e})")))?;
            from
        }
        None => 0,
    };
    let mut eval_ws = s.net.workspace();
    let classification = s.split.objective() == Objective::Classification;
    let mut record = |params: &[f64], out: &mut ReplicateResult| -> bool {
        let train = s.net.evaluate(params, &s.split.train, &mut eval_ws);
        let test = s.net.evaluate(params, &s.split.test, &mut eval_ws);
        if !finite_loss(train.loss) {
            return false;
        }
        out.train_loss.push(train.loss);
        out.test_loss.push(test.loss);
        if classification {
            out.train_accuracy.push(train.accuracy.unwrap_or(f64::NAN));
            out.test_accuracy.push(test.accuracy.unwrap_or(f64::NAN));
        }
        true
    };
    let mut next_record = s.steps.record_steps.iter().take_while(|&&t| t <= from).count();
    if from == 0 {
        if !(all_finite(&rep.params) && record(&rep.params, &mut out)) {
            out.diverged_at = Some(0);
            s.diverged.fetch_min(0, Ordering::Relaxed);
            return Ok((out, None));
        }
        out.probe.push(rep.probe());
        next_record = 1;
    }
    for step in from + 1..=s.steps.total {
        if s.cancel.is_cancelled() {
            return Err(SimError::Cancelled);
        }
        if step > s.diverged.load(Ordering::Relaxed) {
            // Another replicate diverged earlier: the trial's curve ends there anyway.
            break;
        }
        let loss = rep.step(step - 1);
        let mut ok = finite_loss(loss) && all_finite(&rep.params);
        if ok && s.steps.record_steps.get(next_record) == Some(&step) {
            ok = record(&rep.params, &mut out);
            if ok {
                out.probe.push(rep.probe());
            }
            next_record += 1;
        }
        if !ok {
            out.diverged_at = Some(step);
            s.diverged.fetch_min(step, Ordering::Relaxed);
            break;
        }
    }
    let state = (keep && out.diverged_at.is_none()).then(|| {
        let mut e = kappa_sim::checkpoint::Encoder::new();
        rep.save(&mut e, &out);
        e.into_bytes()
    });
    Ok((out, state))
}

/// Combines the replicates in order. When some replicate diverged, the curve ends at the last
/// record before the earliest divergence: every replicate has reached it (a replicate only stops
/// early after passing a step at which another diverged), so the outcome is deterministic.
pub(crate) fn summarise(
    s: &Setup<'_>,
    task: &TrainTask,
    params: &Hyperparams,
    results: &[ReplicateResult],
) -> AttemptOutcome {
    let steps = &s.steps;
    let diverged = results.iter().filter_map(|r| r.diverged_at).min();
    let recorded = match diverged {
        Some(step) => steps.record_steps.iter().take_while(|&&r| r < step).count(),
        None => steps.record_steps.len(),
    };
    let classification = s.split.objective() == Objective::Classification;
    let mut curve = Vec::with_capacity(recorded);
    let mut column = Vec::with_capacity(results.len());
    for (r, &step) in steps.record_steps.iter().enumerate().take(recorded) {
        column.clear();
        column.extend(results.iter().map(|x| x.train_loss[r]));
        let est = mean_se(column.iter().copied());
        column.sort_by(f64::total_cmp);
        let mean = |f: fn(&ReplicateResult) -> &Vec<f64>| mean_se(results.iter().map(|x| f(x)[r])).mean;
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("test_loss".to_string(), mean(|x| &x.test_loss));
        if classification {
            extra.insert("test_accuracy".to_string(), mean(|x| &x.test_accuracy));
            extra.insert("train_accuracy".to_string(), mean(|x| &x.train_accuracy));
        }
        if let Some(b) = noise_scale(results.iter().map(|x| x.probe.get(r).copied().unwrap_or(Probe::None))) {
            extra.insert("noise_scale".to_string(), b);
        }
        curve.push(CurvePoint {
            samples: step * params.batch_size,
            step,
            loss_mean: est.mean,
            loss_se: est.se,
            loss_q10: quantile(&column, 0.1),
            loss_q50: quantile(&column, 0.5),
            loss_q90: quantile(&column, 0.9),
            phases: None,
            extra,
        });
    }
    let mut notes = vec![s.split.description.clone(), s.net.describe(), method_note(s, task, params)];
    match diverged {
        Some(step) => {
            notes.push(format!("the loss or the parameters stopped being finite at step {step}"));
            AttemptOutcome::Diverged {
                step,
                metrics: TrialMetrics {
                    resumed_from: None,
                    curve,
                    stationary_loss: None,
                    stationary_drift: None,
                    theory: None,
                    notes,
                },
            }
        }
        None => {
            // Per replicate: the mean train loss over the record points after the burn-in.
            let after: Vec<usize> =
                (0..steps.record_steps.len()).filter(|&r| steps.record_steps[r] > steps.burn_in_steps).collect();
            let stationary = (!after.is_empty()).then(|| {
                mean_se(
                    results.iter().map(|x| after.iter().map(|&r| x.train_loss[r]).sum::<f64>() / after.len() as f64),
                )
            });
            // The settled check: each replicate's record points after the burn-in, second half
            // against first half, pooled over replicates.
            let drifts: Option<Vec<Estimate>> = results
                .iter()
                .map(|x| Estimate::drift_of(&after.iter().map(|&r| x.train_loss[r]).collect::<Vec<f64>>()))
                .collect();
            let stationary_drift = drifts.and_then(|d| Estimate::pooled(&d));
            if stationary.is_some() {
                notes.push(format!(
                    "stationary loss: the train loss averaged over the {} record points after step {}, then over {} \
                     replicate{}; test loss at the end {:.4}",
                    after.len(),
                    steps.burn_in_steps,
                    results.len(),
                    if results.len() == 1 { "" } else { "s" },
                    curve.last().and_then(|c| c.extra.get("test_loss")).copied().unwrap_or(f64::NAN)
                ));
            }
            AttemptOutcome::Succeeded(TrialMetrics {
                resumed_from: None,
                curve,
                stationary_loss: stationary,
                stationary_drift,
                theory: None,
                notes,
            })
        }
    }
}

fn method_note(s: &Setup<'_>, task: &TrainTask, params: &Hyperparams) -> String {
    let b = params.batch_size;
    let sigma_b = |noise: &Noise| noise.sigma.first().copied().unwrap_or(0.0);
    match &s.method {
        Method::Minibatch { batch } => format!(
            "gradients: minibatches of B = {b} drawn without replacement, reshuffled every epoch ({} steps per \
             epoch, the last {} samples of each epoch unused); {} steps, {} replicates",
            s.split.train.len() / batch,
            s.split.train.len() % batch,
            s.steps.total,
            task.paths
        ),
        Method::Injected { noise } => format!(
            "gradients: full-batch plus injected Gaussian noise N(0, σ_B² I), σ_B = σ₁/√B = {}/√{b} = {:.6}; {} steps, \
             {} replicates",
            task.noise.unwrap_or(0.0),
            sigma_b(noise),
            s.steps.total,
            task.paths
        ),
        Method::Sde { noise, refine, .. } => format!(
            "{} SDE ({}) of {} integrated by Euler–Maruyama, {refine} substep{} per step: drift from the full-batch \
             gradient, diffusion from the injected noise σ_B = σ₁/√B = {}/√{b} = {:.6}; {} steps, {} replicates",
            match task.sde_model {
                SdeModel::Compagnoni => "Compagnoni",
                SdeModel::Malladi => "Malladi",
            },
            if task.sde_model == SdeModel::Compagnoni { "time t = kη" } else { "time t = kη²" },
            params.optimizer,
            if *refine == 1 { "" } else { "s" },
            task.noise.unwrap_or(0.0),
            sigma_b(noise),
            s.steps.total,
            task.paths
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::OptimizerKind;
    use kappa_core::task::{Activation, DataSpec, ModelSpec, RecordEvery};

    fn regression_task(noise: Option<f64>) -> TrainTask {
        TrainTask {
            model: ModelSpec { hidden: vec![], activation: Activation::Relu },
            data: DataSpec::TeacherStudent {
                objective: Objective::Regression,
                inputs: 3,
                outputs: 1,
                teacher_hidden: 0,
                samples: 50,
                label_noise: 0.5,
                seed: 9,
            },
            holdout: 0.2,
            samples: 40,
            record_every: RecordEvery::Steps(1),
            burn_in: 0.0,
            paths: 1,
            bias_correction: true,
            noise,
            sde: false,
            refine: 1,
            sde_model: SdeModel::Compagnoni,
            lr_schedule: Default::default(),
        }
    }

    fn hyper(optimizer: OptimizerKind, batch_size: u64) -> Hyperparams {
        Hyperparams { optimizer, batch_size, lr: 0.05, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1, seed: 3 }
    }

    /// The trainer's step on a linear model with σ = 0 injected noise is the simulator's
    /// optimizer applied to the closed-form full-batch gradient (X̃ᵀX̃w̃ − X̃ᵀy)/n, X̃ = [X 1].
    #[test]
    fn one_linear_step_is_the_simulators_optimizer_on_the_closed_form_gradient() {
        let task = regression_task(Some(0.0));
        let split = data::load(&task.data, task.holdout).unwrap();
        let cancel = Cancel::new();
        let (x, y) = (
            &split.train.x,
            match &split.train.y {
                data::Targets::Values(v) => v.column(0).to_owned(),
                data::Targets::Classes { .. } => unreachable!(),
            },
        );
        let n = x.nrows();
        for kind in OptimizerKind::ALL {
            let params = hyper(kind, 40);
            let s = setup(&task, &params, TrialId(17), &cancel, &split).unwrap();
            let mut rep = Replicate::new(&s, 0);
            let w0 = rep.params.clone();
            assert_eq!(w0.len(), 4);
            rep.step(0);
            // The trainer's update is exactly the simulator's optimizer on the trainer's gradient.
            let mut by_optimizer = w0.clone();
            let mut cfg = OptimizerConfig::from_params(&params);
            cfg.bias_correction = task.bias_correction;
            Optimizer::new(cfg, 4).step(&mut by_optimizer, &rep.grad, cfg.lr);
            assert_eq!(by_optimizer, rep.params, "{kind}");
            // And the trainer's gradient is the closed form.
            let xt = ndarray::concatenate![ndarray::Axis(1), x.view(), ndarray::Array2::ones((n, 1))];
            let w = ndarray::Array1::from(w0.clone());
            let closed = (xt.t().dot(&xt).dot(&w) - xt.t().dot(&y)) / n as f64;
            for (a, b) in closed.iter().zip(&rep.grad) {
                assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{kind}: {closed} vs {:?}", rep.grad);
            }
            let mut by_closed_form = w0.clone();
            Optimizer::new(cfg, 4).step(&mut by_closed_form, closed.as_slice().unwrap(), cfg.lr);
            for (a, b) in by_closed_form.iter().zip(&rep.params) {
                assert!((a - b).abs() < 1e-10, "{kind}: {by_closed_form:?} vs {:?}", rep.params);
            }
        }
    }

    /// The vectorised build of a replicate (AVX2/AVX-512 where the CPU has them) and the
    /// baseline build give the same bits.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let mut task = regression_task(Some(0.3));
        task.model.hidden = vec![6];
        task.model.activation = Activation::Tanh;
        task.samples = 200;
        let split = data::load(&task.data, task.holdout).unwrap();
        let cancel = Cancel::new();
        for (noise, sde) in [(None, false), (Some(0.3), false), (Some(0.3), true)] {
            let t = TrainTask { noise, sde, ..task.clone() };
            let s = setup(&t, &hyper(OptimizerKind::Adam, 8), TrialId(5), &cancel, &split).unwrap();
            let dispatched = run_replicate_from(&s, 2, 0, None, false).unwrap().0;
            assert_eq!(dispatched, run_replicate_inner(&s, 2, 0, None, false).unwrap().0);
            assert_eq!(dispatched.train_loss.len(), 26);
        }
    }

    #[test]
    fn minibatches_cover_each_epoch_without_replacement() {
        let task = regression_task(None);
        let split = data::load(&task.data, task.holdout).unwrap();
        let cancel = Cancel::new();
        let params = hyper(OptimizerKind::Sgd, 7);
        let s = setup(&task, &params, TrialId(1), &cancel, &split).unwrap();
        let mut rep = Replicate::new(&s, 0);
        // 40 training samples, B = 7: 5 steps an epoch, 5 samples left out; then a new order.
        let mut seen = Vec::new();
        let mut orders = Vec::new();
        for _ in 0..10 {
            rep.step(0);
            seen.extend_from_slice(&rep.order[rep.cursor - 7..rep.cursor]);
            if rep.cursor == 35 {
                orders.push(rep.order.clone());
            }
        }
        for epoch in seen.chunks(35) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            e.dedup();
            assert_eq!(e.len(), 35);
        }
        assert_eq!(orders.len(), 2);
        assert_ne!(orders[0], orders[1]);
    }

    /// McCandlish's two-batch estimates are unbiased: over many probes, the trace and |G|²
    /// estimates of a linear-regression task match their exact values from per-sample gradients
    /// within their standard errors (drawn without replacement from N samples, their expectations
    /// are tr Σ₁ · N/(N − 1) and |G|² − tr Σ₁/(N − 1), tr Σ₁ the per-sample gradients' variance).
    #[test]
    fn the_two_batch_noise_scale_estimates_are_unbiased_on_linear_regression() {
        let mut task = regression_task(None);
        if let DataSpec::TeacherStudent { samples, .. } = &mut task.data {
            *samples = 2000;
        }
        let split = data::load(&task.data, task.holdout).unwrap();
        let cancel = Cancel::new();
        let s = setup(&task, &hyper(OptimizerKind::Sgd, 8), TrialId(5), &cancel, &split).unwrap();
        let mut rep = Replicate::new(&s, 0);
        let train = &split.train;
        let n = train.len();
        // Exact: the full gradient and the per-sample gradients' variance at these parameters.
        let mut ws = s.net.workspace();
        let mut g = vec![0.0; s.net.dim()];
        s.net.full_gradient(&rep.params, train, &mut ws, &mut g);
        let g2: f64 = g.iter().map(|x| x * x).sum();
        let mut gi = vec![0.0; s.net.dim()];
        let trace = (0..n as u32)
            .map(|i| {
                s.net.batch_gradient(&rep.params, train, &[i], &mut ws, &mut gi);
                gi.iter().zip(&g).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
            })
            .sum::<f64>()
            / n as f64;
        let nf = n as f64;
        let (want_tr, want_g2) = (trace * nf / (nf - 1.0), g2 - trace / (nf - 1.0));
        let (mut trs, mut g2s) = (Vec::new(), Vec::new());
        for _ in 0..1600 {
            let Probe::TwoBatch { small, big, b, big_b } = rep.probe() else { panic!("a two-batch probe") };
            g2s.push((big_b * big - b * small) / (big_b - b));
            trs.push((small - big) / (1.0 / b - 1.0 / big_b));
        }
        let mean_se = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
            (m, (var / v.len() as f64).sqrt())
        };
        let (tr, tr_se) = mean_se(&trs);
        let (gg, gg_se) = mean_se(&g2s);
        eprintln!(
            "tr {tr} ± {tr_se} (exact {want_tr}); |G|² {gg} ± {gg_se} (exact {want_g2}); B_simple {}",
            want_tr / want_g2
        );
        assert!((tr - want_tr).abs() < 4.0 * tr_se, "trace {tr} ± {tr_se} vs {want_tr}");
        assert!((gg - want_g2).abs() < 4.0 * gg_se, "|G|² {gg} ± {gg_se} vs {want_g2}");
        assert!(tr_se < 0.05 * want_tr && gg_se < 0.1 * want_g2, "the check is sharp enough to mean something");
        // A trial records it as `noise_scale` at every record point.
        let mut task = task.clone();
        task.paths = 2;
        let out = crate::run_train(&task, &hyper(OptimizerKind::Sgd, 8), TrialId(5), &cancel).unwrap();
        let AttemptOutcome::Succeeded(m) = out else { panic!("{out:?}") };
        // (Where the unbiased estimates of one point come out negative, it has none.)
        let measured = m.curve.iter().filter_map(|p| p.extra.get("noise_scale")).collect::<Vec<_>>();
        assert!(measured.len() * 2 >= m.curve.len() && measured.iter().all(|b| **b > 0.0), "{measured:?}");
    }
}
