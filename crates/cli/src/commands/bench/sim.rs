//! `kappa bench sim`: simulator throughput on a diagonal quadratic with Gaussian noise, workload by
//! workload (SGD's SDE, then discrete optimizers), each against a vectorised NumPy implementation
//! of the same workload run right after it.

use super::{Baseline, NUMPY_HINT};
use crate::exit::invalid;
use anyhow::anyhow;
use kappa_core::task::{Eigenvalues, LandscapeSpec, NoiseSpec, RecordEvery, SdeModel, Sigma, SimTask, Spectrum};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The workloads `--optimizers` runs unless told otherwise, in this order.
const DEFAULT_WORKLOADS: &str = "sgd-sde,sgd,signsgd,adamw,momentum,nesterov,signum,lion";

#[derive(clap::Args, Debug)]
pub struct SimBench {
    /// Paths.
    #[arg(long, default_value_t = 1000)]
    paths: u32,
    /// Dimension d.
    #[arg(long, default_value_t = 1000)]
    dim: usize,
    /// Steps of SGD's SDE (`sgd-sde`).
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Steps of each discrete optimizer (fewer than the SDE's: NumPy takes ~5 s per 3e8
    /// element-steps here, and there are seven of them by default).
    #[arg(long, default_value_t = 300)]
    optimizer_steps: u64,
    /// The workloads, in order, comma separated: `sgd-sde` (SGD's SDE, Euler–Maruyama with
    /// Δ = η) and discrete optimizers by name (sgd, signsgd, rmsprop, rmspropw, adam, adamw,
    /// momentum, nesterov, signum, lion).
    #[arg(long, default_value = DEFAULT_WORKLOADS)]
    optimizers: String,
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

/// What one workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// SGD's SDE (`kind = "sde"`), Euler–Maruyama with Δ = η.
    SgdSde,
    /// A discrete optimizer (`kind = "optimizer"`).
    Optimizer(OptimizerKind),
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SgdSde => "sgd-sde",
            Workload::Optimizer(o) => o.as_str(),
        }
    }

    fn optimizer(self) -> OptimizerKind {
        match self {
            Workload::SgdSde => OptimizerKind::Sgd,
            Workload::Optimizer(o) => o,
        }
    }
}

/// Parses `--optimizers`: names separated by commas, each once.
fn parse_workloads(list: &str) -> anyhow::Result<Vec<Workload>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(invalid(format!(
                "--optimizers {list:?}: an empty name (names are separated by single commas)"
            )));
        }
        let w = if name.eq_ignore_ascii_case("sgd-sde") {
            Workload::SgdSde
        } else {
            let o: OptimizerKind = name.parse().map_err(|_| {
                invalid(format!(
                    "--optimizers: unknown workload `{name}` (expected sgd-sde or a discrete optimizer: {})",
                    OptimizerKind::names()
                ))
            })?;
            Workload::Optimizer(o)
        };
        if out.contains(&w) {
            return Err(invalid(format!("--optimizers: `{name}` is listed twice")));
        }
        out.push(w);
    }
    Ok(out)
}

// The settings every workload shares.
const LR: f64 = 0.01;
const SIGMA: f64 = 1.0;
const X0: f64 = 0.5;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;
const WEIGHT_DECAY: f64 = 0.01;

/// One workload's measured throughputs.
struct Measured {
    workload: Workload,
    steps: u64,
    kappa: f64,
    numpy: Option<f64>,
}

pub(super) fn bench_sim(b: SimBench) -> anyhow::Result<u8> {
    let workloads = parse_workloads(&b.optimizers)?;
    for (flag, value) in [
        ("--paths", u64::from(b.paths)),
        ("--dim", b.dim as u64),
        ("--steps", b.steps),
        ("--optimizer-steps", b.optimizer_steps),
    ] {
        if value == 0 {
            return Err(invalid(format!("{flag} must be at least 1")));
        }
    }
    let threads = rayon::current_num_threads();
    let mut measured = Vec::with_capacity(workloads.len());
    for (i, &w) in workloads.iter().enumerate() {
        if i > 0 {
            println!();
        }
        measured.push(bench_one(&b, w, threads)?);
    }
    if measured.len() > 1 {
        println!();
        println!(
            "summary: d = {}, {} paths, {threads} threads; element-steps/s = paths × d × steps / seconds",
            b.dim, b.paths
        );
        println!("  {:<10} {:>6} {:>11} {:>11} {:>9}", "workload", "steps", "kappa", "numpy", "ratio");
        for m in &measured {
            let (numpy, ratio) = match m.numpy {
                Some(n) => (format!("{n:.3e}"), format!("{:.1}x", m.kappa / n)),
                None => ("-".to_string(), "-".to_string()),
            };
            println!("  {:<10} {:>6} {:>11.3e} {numpy:>11} {ratio:>9}", m.workload.name(), m.steps, m.kappa);
        }
    }
    Ok(crate::exit::OK)
}

/// Runs one workload in kappa, then (unless `--no-baseline`) in NumPy, and prints both.
fn bench_one(b: &SimBench, w: Workload, threads: usize) -> anyhow::Result<Measured> {
    let optimizer = w.optimizer();
    let sde = w == Workload::SgdSde;
    let steps = if sde { b.steps } else { b.optimizer_steps };
    // θ only where the rule reads it (what kappa applies anyway; NumPy is told the same).
    let weight_decay = if optimizer.uses_weight_decay() { WEIGHT_DECAY } else { 0.0 };
    let sim = SimTask {
        landscape: LandscapeSpec::Quadratic {
            eigenvalues: Eigenvalues::Generated(Spectrum::Linspace { lo: 0.1, hi: 10.0, num: b.dim }),
            rotation_seed: None,
        },
        noise: NoiseSpec::Gaussian { sigma: Sigma::Scalar(SIGMA) },
        x0: X0,
        paths: b.paths,
        samples: steps,
        record_every: RecordEvery::Percent(1.0),
        burn_in: 0.5,
        bias_correction: true,
        refine: 1,
        sde_model: SdeModel::Compagnoni,
        backend: Default::default(),
        lr_schedule: Default::default(),
    };
    let task = if sde { TaskSpec::Sde(sim) } else { TaskSpec::Optimizer(sim) };
    let params =
        Hyperparams { optimizer, batch_size: 1, lr: LR, beta1: BETA1, beta2: BETA2, eps: EPS, weight_decay, seed: 0 };
    let work = f64::from(b.paths) * b.dim as f64 * steps as f64;
    let sizes =
        format!("d = {}, {} paths, {steps} steps ({work:.2e} element-steps), {threads} threads", b.dim, b.paths);
    if sde {
        println!("workload: SGD SDE, {sizes}");
    } else {
        let mut settings = vec![format!("η {LR}")];
        if optimizer.uses_beta1() {
            settings.push(format!("β1 {BETA1}"));
        }
        if optimizer.uses_beta2() {
            settings.push(format!("β2 {BETA2}"));
        }
        if optimizer.uses_eps() {
            settings.push(format!("ε {EPS:e}"));
        }
        if optimizer.uses_weight_decay() {
            settings.push(format!("θ {weight_decay}"));
        }
        println!("workload: {optimizer} (discrete: {}; {}), {sizes}", optimizer.info().update, settings.join(", "));
    }
    let started = Instant::now();
    let out = kappa_sim::run_trial(&task, &params, TrialId(1), &kappa_sim::Cancel::new())
        .map_err(|e| anyhow!("{}: simulation failed: {e}", w.name()))?;
    let secs = started.elapsed().as_secs_f64();
    let AttemptOutcome::Succeeded(m) = out else {
        return Err(anyhow!("{}: the benchmark run did not succeed: {out:?}", w.name()));
    };
    let kappa_rate = work / secs;
    let stationary = m.stationary_loss.map_or(f64::NAN, |e| e.mean);
    println!("kappa : {kappa_rate:.3e} element-steps/s ({secs:.2} s), stationary loss {stationary:.4}");
    let mut measured = Measured { workload: w, steps, kappa: kappa_rate, numpy: None };
    if b.no_baseline {
        return Ok(measured);
    }
    let mut cmd = Command::new(&b.python);
    cmd.arg(&b.script)
        .args(["--optimizer", w.name()])
        .args(["--paths", &b.paths.to_string(), "--dim", &b.dim.to_string(), "--steps", &steps.to_string()])
        .args(["--lr", &LR.to_string(), "--sigma", &SIGMA.to_string(), "--x0", &X0.to_string()]);
    if !sde {
        cmd.args(["--beta1", &BETA1.to_string(), "--beta2", &BETA2.to_string(), "--eps", &EPS.to_string()])
            .args(["--weight-decay", &weight_decay.to_string()]);
    }
    let v = Baseline::run(&mut cmd, NUMPY_HINT)?;
    let numpy_rate = v.rate("element_steps_per_s")?;
    println!(
        "numpy : {numpy_rate:.3e} element-steps/s ({:.2} s), stationary loss {:.4}",
        v.get("seconds"),
        v.get("stationary_loss")
    );
    println!("ratio : {:.1}x NumPy", kappa_rate / numpy_rate);
    measured.numpy = Some(numpy_rate);
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_workloads_parse_in_order() {
        let w = parse_workloads(DEFAULT_WORKLOADS).unwrap();
        let names: Vec<&str> = w.iter().map(|w| w.name()).collect();
        assert_eq!(names, ["sgd-sde", "sgd", "signsgd", "adamw", "momentum", "nesterov", "signum", "lion"]);
        assert_eq!(
            parse_workloads(" adamw , SGD-SDE").unwrap(),
            [Workload::Optimizer(OptimizerKind::AdamW), Workload::SgdSde]
        );
    }

    #[test]
    fn bad_workload_lists_are_refused_by_name() {
        let err = parse_workloads("sgd,adamx").unwrap_err().to_string();
        assert!(err.contains("`adamx`") && err.contains("sgd-sde"), "{err}");
        let err = parse_workloads("sgd,,adamw").unwrap_err().to_string();
        assert!(err.contains("empty name"), "{err}");
        let err = parse_workloads("lion,lion").unwrap_err().to_string();
        assert!(err.contains("`lion` is listed twice"), "{err}");
        assert!(parse_workloads("").is_err());
    }
}
