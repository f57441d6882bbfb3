//! Training throughput: an MLP on the digits, the workload `kappa bench train` compares with
//! `tests/bench/mlp_numpy.py`.

use crate::data;
use crate::run::{Replicate, setup};
use kappa_core::task::{Activation, DataSpec, ModelSpec, RecordEvery, SdeModel, TrainTask};
use kappa_core::{Hyperparams, OptimizerKind, TrialId};
use kappa_sim::Cancel;
use rayon::prelude::*;
use std::time::Instant;

/// The benchmark's workload.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// Hidden widths (64 inputs and 10 classes around them).
    pub hidden: Vec<u32>,
    /// Minibatch size.
    pub batch_size: u64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Its step size.
    pub lr: f64,
    /// Timed steps per replicate (after a few untimed warm-up steps).
    pub steps: u64,
    /// Replicates trained side by side on the rayon pool (1: one thread's throughput).
    pub replicates: u32,
}

impl Default for BenchConfig {
    /// 64-128-10 ReLU MLP, batch 64, Adam (η = 1e-3), 2000 steps, one replicate.
    fn default() -> Self {
        BenchConfig {
            hidden: vec![128],
            batch_size: 64,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            steps: 2000,
            replicates: 1,
        }
    }
}

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// Training samples processed per second, all replicates together.
    pub samples_per_second: f64,
    /// Wall time of the timed steps.
    pub seconds: f64,
    /// Mean training loss after the run (replicate 0), a sanity check that it trained.
    pub train_loss: f64,
    /// Held-out accuracy after the run (replicate 0).
    pub test_accuracy: f64,
}

/// Trains `cfg.replicates` replicates of the MLP on the digits (80/20 split) with minibatches of
/// `cfg.batch_size` and times `cfg.steps` steps of each: the trial's own code path (gather,
/// forward, backward, optimizer step), without the evaluations at record points.
pub fn bench_mlp(cfg: &BenchConfig) -> Result<BenchResult, kappa_sim::SimError> {
    let task = TrainTask {
        model: ModelSpec { hidden: cfg.hidden.clone(), activation: Activation::Relu },
        data: DataSpec::Digits,
        holdout: 0.2,
        samples: cfg.steps.saturating_mul(cfg.batch_size),
        record_every: RecordEvery::Percent(100.0),
        burn_in: 0.5,
        paths: cfg.replicates,
        bias_correction: true,
        noise: None,
        sde: false,
        refine: 1,
        sde_model: SdeModel::Compagnoni,
        lr_schedule: Default::default(),
    };
    let params = Hyperparams {
        optimizer: cfg.optimizer,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        seed: 0,
    };
    let split = data::load(&task.data, task.holdout).map_err(|e| kappa_sim::SimError::Invalid(e.to_string()))?;
    let cancel = Cancel::new();
    let s = setup(&task, &params, TrialId(0x0062_656e_6368), &cancel, &split)?;
    let mut reps: Vec<Replicate<'_, '_>> =
        (0..u64::from(cfg.replicates.max(1))).map(|r| Replicate::new(&s, r)).collect();
    for rep in &mut reps {
        rep.run_steps(0, 10);
    }
    let started = Instant::now();
    reps.par_iter_mut().for_each(|rep| {
        rep.run_steps(10, cfg.steps);
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut ws = s.net.workspace();
    let train = s.net.evaluate(&reps[0].params, &split.train, &mut ws);
    let test = s.net.evaluate(&reps[0].params, &split.test, &mut ws);
    let samples = reps.len() as f64 * cfg.steps as f64 * cfg.batch_size as f64;
    Ok(BenchResult {
        samples_per_second: samples / seconds,
        seconds,
        train_loss: train.loss,
        test_accuracy: test.accuracy.unwrap_or(f64::NAN),
    })
}
