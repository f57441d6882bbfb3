//! `kappa bench train`: native training throughput (an MLP on the digits) against the same loop in
//! NumPy.

use super::{Baseline, NUMPY_HINT};
use anyhow::anyhow;
use kappa_core::OptimizerKind;
use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct TrainBench {
    /// Timed steps per replicate.
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Minibatch size.
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// Hidden width.
    #[arg(long, default_value_t = 128)]
    hidden: u32,
    /// `adam` (η = 1e-3) or `sgd` (η = 0.1).
    #[arg(long, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Python interpreter with NumPy for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The NumPy baseline script.
    #[arg(long, default_value = "tests/bench/mlp_numpy.py")]
    script: PathBuf,
    /// Skip the NumPy baseline.
    #[arg(long)]
    no_baseline: bool,
}

pub(super) fn bench_train(b: TrainBench) -> anyhow::Result<u8> {
    let lr = match b.optimizer {
        OptimizerKind::Adam => 1e-3,
        OptimizerKind::Sgd => 0.1,
        other => return Err(anyhow!("the training benchmark runs adam or sgd, not {other}")),
    };
    let threads = rayon::current_num_threads();
    println!(
        "workload: 64-{}-10 ReLU MLP on the digits, softmax cross-entropy, batch {}, {} (lr {lr}), {} steps, f64",
        b.hidden, b.batch, b.optimizer, b.steps
    );
    let cfg = kappa_train::BenchConfig {
        hidden: vec![b.hidden],
        batch_size: b.batch,
        optimizer: b.optimizer,
        lr,
        steps: b.steps,
        replicates: 1,
    };
    let fail = |e: kappa_sim::SimError| anyhow!("the training benchmark failed: {e}");
    let one = kappa_train::bench_mlp(&cfg).map_err(fail)?;
    println!(
        "kappa : {:.3e} samples/s, 1 replicate ({:.2} s; train loss {:.4}, held-out accuracy {:.3})",
        one.samples_per_second, one.seconds, one.train_loss, one.test_accuracy
    );
    let all = kappa_train::bench_mlp(&kappa_train::BenchConfig { replicates: threads as u32, ..cfg }).map_err(fail)?;
    println!(
        "kappa : {:.3e} samples/s, {threads} replicates on {threads} threads ({:.2} s)",
        all.samples_per_second, all.seconds
    );
    if b.no_baseline {
        return Ok(crate::exit::OK);
    }
    let v = Baseline::run(
        Command::new(&b.python)
            .arg(&b.script)
            .args(["--steps", &b.steps.to_string(), "--batch", &b.batch.to_string(), "--hidden", &b.hidden.to_string()])
            .args(["--optimizer", b.optimizer.as_str(), "--lr", &lr.to_string()]),
        NUMPY_HINT,
    )?;
    let numpy_rate = v.rate("samples_per_s")?;
    println!(
        "numpy : {numpy_rate:.3e} samples/s ({:.2} s; train loss {:.4}, held-out accuracy {:.3})",
        v.get("seconds"),
        v.get("train_loss"),
        v.get("test_accuracy")
    );
    println!(
        "ratio : {:.1}x NumPy on one thread, {:.1}x with {threads} replicates on {threads} threads",
        one.samples_per_second / numpy_rate,
        all.samples_per_second / numpy_rate
    );
    Ok(crate::exit::OK)
}
