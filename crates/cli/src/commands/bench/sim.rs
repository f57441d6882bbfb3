//! `kappa bench sim`: simulator throughput (SGD's SDE on a diagonal quadratic) against a
//! vectorised NumPy implementation of the same Euler–Maruyama workload.

use super::{Baseline, NUMPY_HINT};
use anyhow::anyhow;
use kappa_core::task::{Eigenvalues, LandscapeSpec, NoiseSpec, RecordEvery, SdeModel, Sigma, SimTask, Spectrum};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct SimBench {
    /// Paths.
    #[arg(long, default_value_t = 1000)]
    paths: u32,
    /// Dimension d.
    #[arg(long, default_value_t = 1000)]
    dim: usize,
    /// Steps.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Python interpreter with NumPy for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The NumPy baseline script.
    #[arg(long, default_value = "tests/bench/sim_numpy.py")]
    script: PathBuf,
    /// Skip the NumPy baseline.
    #[arg(long)]
    no_baseline: bool,
}

pub(super) fn bench_sim(b: SimBench) -> anyhow::Result<u8> {
    let (lr, sigma, x0) = (0.01, 1.0, 0.5);
    let task = TaskSpec::Sde(SimTask {
        landscape: LandscapeSpec::Quadratic {
            eigenvalues: Eigenvalues::Generated(Spectrum::Linspace { lo: 0.1, hi: 10.0, num: b.dim }),
            rotation_seed: None,
        },
        noise: NoiseSpec::Gaussian { sigma: Sigma::Scalar(sigma) },
        x0,
        paths: b.paths,
        samples: b.steps,
        record_every: RecordEvery::Percent(1.0),
        burn_in: 0.5,
        bias_correction: true,
        refine: 1,
        sde_model: SdeModel::Compagnoni,
        backend: Default::default(),
        lr_schedule: Default::default(),
    });
    let params = Hyperparams {
        optimizer: OptimizerKind::Sgd,
        batch_size: 1,
        lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        seed: 0,
    };
    let work = f64::from(b.paths) * b.dim as f64 * b.steps as f64;
    println!(
        "workload: SGD SDE, d = {}, {} paths, {} steps ({:.2e} element-steps), {} threads",
        b.dim,
        b.paths,
        b.steps,
        work,
        rayon::current_num_threads()
    );
    let started = Instant::now();
    let out = kappa_sim::run_trial(&task, &params, TrialId(1), &kappa_sim::Cancel::new())
        .map_err(|e| anyhow!("simulation failed: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let AttemptOutcome::Succeeded(m) = out else { return Err(anyhow!("the benchmark run did not succeed: {out:?}")) };
    let kappa_rate = work / secs;
    let stationary = m.stationary_loss.map_or(f64::NAN, |e| e.mean);
    println!("kappa : {kappa_rate:.3e} element-steps/s ({secs:.2} s), stationary loss {stationary:.4}");
    if b.no_baseline {
        return Ok(crate::exit::OK);
    }
    let v = Baseline::run(
        Command::new(&b.python)
            .arg(&b.script)
            .args(["--paths", &b.paths.to_string(), "--dim", &b.dim.to_string(), "--steps", &b.steps.to_string()])
            .args(["--lr", &lr.to_string(), "--sigma", &sigma.to_string(), "--x0", &x0.to_string()]),
        NUMPY_HINT,
    )?;
    let numpy_rate = v.rate("element_steps_per_s")?;
    println!(
        "numpy : {numpy_rate:.3e} element-steps/s ({:.2} s), stationary loss {:.4}",
        v.get("seconds"),
        v.get("stationary_loss")
    );
    println!("ratio : {:.1}x NumPy", kappa_rate / numpy_rate);
    Ok(crate::exit::OK)
}
