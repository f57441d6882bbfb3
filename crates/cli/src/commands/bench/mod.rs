//! `kappa bench`: performance against a baseline measured side by side in the same run (the
//! machine is shared and noisy, so only the ratio means something). One file per benchmark:
//! `sim` (simulator vs NumPy), `gpu` (CUDA backend vs PyTorch eager), `train` (native training vs
//! NumPy), `dispatch` (noop trials through a coordinator vs Optuna), `commands` (process-per-trial
//! dispatch vs HyperQueue), `scale` (1,000 simulated workers against one coordinator, a third
//! killed mid-sweep), `large` (10⁶ and 10⁷ trials planned, resumed, read; local dispatch against
//! targets), `search` (the bracketing search against a log grid, in trials to an accuracy), `halving`
//! (successive halving against the grid it halves, in samples to the same best learning rates);
//! [`Baseline`] runs a baseline script and reads its JSON.

mod commands;
mod dispatch;
mod gpu;
mod halving;
mod large;
mod scale;
mod search;
mod sim;
mod train;

use anyhow::{Context, anyhow};
use std::process::Command;

/// A baseline's result: the JSON object it printed last.
pub(crate) struct Baseline(serde_json::Value);

impl Baseline {
    /// Runs a baseline script (`python script args…`) and reads the last stdout line that is a
    /// JSON object. The error names what failed, how to install what it needs (`hint`), and the
    /// end of its stderr.
    pub(crate) fn run(cmd: &mut Command, hint: &str) -> anyhow::Result<Baseline> {
        let script = cmd.get_args().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let output = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
        match (output.status.success(), line) {
            (true, Some(line)) => {
                Ok(Baseline(serde_json::from_str(line).with_context(|| format!("{script} printed no JSON"))?))
            }
            _ => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(anyhow!("{script} failed ({hint}):\n{}", tail.join("\n")))
            }
        }
    }

    /// A number the baseline must report.
    pub(crate) fn rate(&self, key: &str) -> anyhow::Result<f64> {
        self.0[key].as_f64().ok_or_else(|| anyhow!("the baseline's JSON lacks `{key}`"))
    }

    /// A number the baseline may report (NaN when absent).
    pub(crate) fn get(&self, key: &str) -> f64 {
        self.0[key].as_f64().unwrap_or(f64::NAN)
    }

    /// A text the baseline may report.
    pub(crate) fn text(&self, key: &str) -> &str {
        self.0[key].as_str().unwrap_or("?")
    }
}

pub(crate) const NUMPY_HINT: &str = "install it with `pip install numpy`, or pass --no-baseline";

/// Arguments of `kappa bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
enum BenchWhat {
    /// Simulator throughput on a diagonal quadratic (λ evenly spaced in [0.1, 10], Gaussian
    /// noise): SGD's SDE (Euler–Maruyama with Δ = η) and the discrete optimizers `--optimizers`
    /// names, each against tests/bench/sim_numpy.py doing the same work with NumPy right after it.
    Sim(sim::SimBench),
    /// The CUDA backend: SignSGD's SDE and AdamW (power-law spectrum λ_i = 10·i⁻¹, Gaussian noise),
    /// against tests/bench/gpu_torch.py running the same workloads with PyTorch eager on the same
    /// GPU, in the same run. Needs an NVIDIA GPU (and PyTorch with CUDA for the baseline).
    Gpu(gpu::GpuBench),
    /// Native training: a 64-128-10 ReLU MLP on the digits (batch 64, Adam), kappa-train against
    /// tests/bench/mlp_numpy.py running the same loop with NumPy; one replicate on one thread,
    /// then one replicate per thread.
    Train(train::TrainBench),
    /// Dispatch throughput: N noop trials through a `kappa coordinator` and 2 `kappa worker`
    /// processes with durable results; coordinator memory per pending trial; and, when Optuna is
    /// installed (`pip install optuna`), the same trials through Optuna with SQLite storage.
    Dispatch(dispatch::DispatchBench),
    /// Process-per-trial dispatch: N command trials running `true` through a local `kappa run`
    /// with 2 slots, against HyperQueue running N `true` tasks on one local 2-core worker
    /// (`python3 -m pip install hyperqueue`).
    Commands(commands::CommandsBench),
    /// Scale: one `kappa coordinator` and 1,000 simulated workers (lightweight clients in this
    /// process, each registering, heartbeating, leasing and reporting noop trials over gRPC on
    /// loopback), a third of them killed abruptly mid-sweep; throughput, lease and report
    /// latency, coordinator CPU and memory per worker, lease expiries, and exactly-once from the
    /// store.
    Scale(scale::ScaleBench),
    /// Large sweeps: 10⁶ and 10⁷ noop trials planned and stored by `kappa run`, killed, resumed
    /// to the first lease (time, and coordinator memory per pending trial), `kappa status` and
    /// `kappa export` on them, their size on disk; and a local `kappa run`'s dispatch rate with
    /// every result committed.
    Large(large::LargeBench),
    /// Searches: the bracketing search against a log grid refined by the parabola, for each batch
    /// size's best learning rate within an accuracy (5%): trials each needs, on SGD's exact
    /// expected loss (THEORY.md §7) and on the digits MLP trained natively; and what
    /// `start = "rule"` saves over a fixed start. Target: the bracket needs ≤ 1/3 of the grid's.
    Search(search::SearchBench),
    /// Successive halving: sweeps/lr-scaling-digits.toml as a grid and as halving (and, with
    /// --torch, sweeps/torch-lr-scaling.toml), locally and through a coordinator with two
    /// workers: each batch size's best learning rate (the same within one grid step), the
    /// samples each computed (target: halving ≤ 40% of the grid's), what restarting every rung
    /// would have cost, and the wall times.
    Halving(halving::HalvingBench),
}

pub fn bench(args: BenchArgs) -> anyhow::Result<u8> {
    match args.what {
        BenchWhat::Sim(b) => sim::bench_sim(b),
        BenchWhat::Gpu(b) => gpu::bench_gpu(b),
        BenchWhat::Train(b) => train::bench_train(b),
        BenchWhat::Dispatch(b) => dispatch::bench_dispatch(b),
        BenchWhat::Commands(b) => commands::bench_commands(b),
        BenchWhat::Scale(b) => scale::bench_scale(b),
        BenchWhat::Large(b) => large::bench_large(b),
        BenchWhat::Search(b) => search::bench_search(b),
        BenchWhat::Halving(b) => halving::bench_halving(b),
    }
}
