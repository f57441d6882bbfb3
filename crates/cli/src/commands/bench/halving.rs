//! `kappa bench halving`: successive halving against the full grid it halves, in one run.
//!
//! 1. `sweeps/lr-scaling-digits.toml` (the 64-unit tanh MLP on the digits, SGD and Adam, 3 batch
//!    sizes × 13 learning rates, trained natively) as it is and as `[search] kind = "halving"`
//!    (first rung 1/9 of the budget, keeping 1/3 within each optimizer and batch size): each
//!    batch size's best learning rate as `kappa report` finds it (the same within one grid step
//!    is the target), the samples each computed (target: halving ≤ 40% of the grid's), what
//!    halving would have computed had every rung restarted from step 0, and the wall time of
//!    both, through a local `kappa run` and through a coordinator with two workers.
//! 2. With `--torch`: `sweeps/torch-lr-scaling.toml` (a PyTorch CNN as a command trial, resuming
//!    from its own checkpoint) the same way, locally.

use super::dispatch::start_coordinator;
use anyhow::{Context, anyhow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct HalvingBench {
    /// Also the PyTorch command sweep (needs `pip install torch`; a few minutes on 2 cores).
    #[arg(long)]
    torch: bool,
    /// Skip the runs through a coordinator with two workers.
    #[arg(long)]
    no_cluster: bool,
}

/// The digits sweep, as the repository has it.
const DIGITS: &str = include_str!("../../../../../sweeps/lr-scaling-digits.toml");
/// The PyTorch sweep, as the repository has it.
const TORCH: &str = include_str!("../../../../../sweeps/torch-lr-scaling.toml");

/// One sweep run to its end.
struct Run {
    secs: f64,
    /// Samples the attempts computed.
    samples: u64,
    /// What they would have computed had every rung restarted from step 0 (the grid: `samples`).
    restarts: u64,
    /// Each (group, batch size)'s best learning rate, as `kappa report` finds it.
    best: BTreeMap<(String, u64), f64>,
    /// Each (group, batch size)'s learning rate of the grid with the least objective.
    argmin: BTreeMap<(String, u64), f64>,
}

/// `text` renamed `name`, as successive halving with first rung `min_samples` (a command task
/// also gets its whole budget `max_samples`).
fn halved(text: &str, name: &str, min_samples: u64, within: &str, max_samples: Option<u64>) -> anyhow::Result<String> {
    let renamed = rename(text, name)?;
    let max = max_samples.map_or(String::new(), |m| format!("max_samples = {m}\n"));
    Ok(format!(
        "{renamed}\n[search]\nkind = \"halving\"\nmin_samples = {min_samples}\nreduction = 3\nwithin = {within}\n{max}"
    ))
}

/// `text` with its `name` line replaced.
fn rename(text: &str, name: &str) -> anyhow::Result<String> {
    let old = text.lines().find(|l| l.starts_with("name = ")).ok_or_else(|| anyhow!("the sweep has no name line"))?;
    Ok(text.replacen(old, &format!("name = \"{name}\""), 1))
}

/// Runs `file` with a local `kappa run` into `state`.
fn run_local(file: &Path, state: &Path) -> anyhow::Result<Run> {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg(file)
        .arg("--state")
        .arg(state)
        .arg("--quiet")
        .output()
        .context("cannot run kappa run")?;
    if !out.status.success() {
        return Err(anyhow!("kappa run {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr)));
    }
    read(state, started.elapsed().as_secs_f64())
}

/// Runs `file` through a `kappa coordinator` and two `kappa worker`s (one slot each, one trial
/// root) with their state under `dir`.
fn run_cluster(file: &Path, dir: &Path, name: &str) -> anyhow::Result<Run> {
    let (_coord, addr) = start_coordinator(&dir.join("cluster"), &[])?;
    let url = format!("http://{addr}");
    let exe = std::env::current_exe()?;
    let trials = dir.join("trials");
    let _workers: Vec<super::dispatch::Child> = (0..2)
        .map(|i| {
            Command::new(&exe)
                .args(["worker", "--coordinator", &url, "--slots", "1", "--allow-commands", "--name"])
                .arg(format!("w{i}"))
                .arg("--trial-root")
                .arg(&trials)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map(super::dispatch::Child)
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let out = Command::new(&exe).arg("submit").arg(file).args(["--coordinator", &url]).output()?;
    if !out.status.success() {
        return Err(anyhow!("kappa submit failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let state = dir.join("cluster").join(name);
    loop {
        let counts = kappa_store::Store::open(&state).and_then(|s| s.counts());
        if counts.is_ok_and(|c| c.total > 0 && c.pending + c.running == 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    read(&state, started.elapsed().as_secs_f64())
}

/// What a finished sweep's store says: samples computed, with restarts, best learning rates.
fn read(state: &Path, secs: f64) -> anyhow::Result<Run> {
    let store = kappa_store::Store::open(state)?;
    let info = store.sweep_info()?.ok_or_else(|| anyhow!("{} holds no sweep", state.display()))?;
    let trials: Vec<kappa_core::TrialResult> = store.trials()?.into_iter().map(|t| t.result).collect();
    let rungs = store.rung_results()?;
    let (samples, restarts) = if rungs.is_empty() {
        let n = trials.iter().filter_map(|t| t.metrics.as_ref()?.curve.last().map(|p| p.samples)).sum();
        (n, n)
    } else {
        let computed = rungs.iter().filter_map(|r| r.samples).sum();
        let restarts = rungs.iter().filter_map(|r| r.metrics.as_ref()?.curve.last().map(|p| p.samples)).sum();
        (computed, restarts)
    };
    let (_, report) = kappa_report::build_stored(&info.spec_path, &info.spec, info.code_version.clone(), trials)?;
    let (mut best, mut argmin) = (BTreeMap::new(), BTreeMap::new());
    for l in &report.lr_scaling {
        for p in &l.points {
            if let Some(lr) = p.best_lr {
                best.insert((l.group.clone(), p.batch_size), lr);
            }
            if let Some(o) = p.objective.iter().filter(|o| o[1].is_finite()).min_by(|a, b| a[1].total_cmp(&b[1])) {
                argmin.insert((l.group.clone(), p.batch_size), o[0]);
            }
        }
    }
    Ok(Run { secs, samples, restarts, best, argmin })
}

/// Compares halving with the grid: each best learning rate, the samples and the wall time.
/// Halving's best learning rate is a grid point (the best of the ones that ran the whole budget;
/// no parabola is drawn through neighbours read at a smaller budget), so it is held to the
/// grid's best point, within one step; the grid's refined optimum is shown beside it.
fn compare(what: &str, grid: &Run, halving: &Run, step: f64) -> bool {
    let mut same = true;
    for (key, g) in &grid.argmin {
        let h = halving.best.get(key).copied();
        let within = h.is_some_and(|h| (h / g).ln().abs() <= step.ln() * 1.0001);
        same &= within;
        println!(
            "  {} B = {}: best lr {} (grid's best point; refined {}) vs {} (halving){}",
            key.0,
            key.1,
            kappa_core::format_real(*g),
            grid.best.get(key).map_or("-".into(), |v| kappa_core::format_real(*v)),
            h.map_or("-".into(), kappa_core::format_real),
            if h == Some(*g) {
                ", the same"
            } else if within {
                ", one step apart"
            } else {
                "  ← more than one grid step apart"
            }
        );
    }
    let ratio = halving.samples as f64 / grid.samples.max(1) as f64;
    println!(
        "{what}: samples {} (halving) / {} (grid) = {ratio:.3} (target ≤ 0.40){}; restarting every rung from step 0 \
         would have computed {} ({:.3} of the grid's); wall time {:.1} s vs {:.1} s ({:.2})",
        kappa_core::format_count(halving.samples),
        kappa_core::format_count(grid.samples),
        if ratio <= 0.4 { "" } else { "  ← over the target" },
        kappa_core::format_count(halving.restarts),
        halving.restarts as f64 / grid.samples.max(1) as f64,
        halving.secs,
        grid.secs,
        halving.secs / grid.secs.max(1e-9)
    );
    same && ratio <= 0.4
}

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

pub(super) fn bench_halving(b: HalvingBench) -> anyhow::Result<u8> {
    let dir = std::env::temp_dir().join(format!("kappa-bench-halving-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_all(&b, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_all(b: &HalvingBench, dir: &Path) -> anyhow::Result<u8> {
    let mut ok = true;
    // The digits grid's learning rates are 13 log-spaced from 2e-3 to 8: one step is 8/2e-3 ^ 1/12.
    let step = (8.0f64 / 2e-3).powf(1.0 / 12.0);
    let grid = write(dir, "digits-grid.toml", &rename(DIGITS, "digits-grid")?)?;
    let halving = write(
        dir,
        "digits-halving.toml",
        &halved(DIGITS, "digits-halving", 3_200, "[\"optimizer\", \"batch_size\"]", None)?,
    )?;
    println!(
        "digits MLP (sweeps/lr-scaling-digits.toml: 78 trials of 28,800 samples) as a grid and as halving (rungs 3,200 → \
         9,600 → 28,800, keep 1/3 within optimizer and batch size)"
    );
    let g = run_local(&grid, &dir.join("local-grid"))?;
    let h = run_local(&halving, &dir.join("local-halving"))?;
    ok &= compare("digits, local kappa run (2 workers)", &g, &h, step);
    if !b.no_cluster {
        let g = run_cluster(&grid, &dir.join("cluster-grid"), "digits-grid")?;
        let h = run_cluster(&halving, &dir.join("cluster-halving"), "digits-halving")?;
        ok &= compare("digits, coordinator + 2 workers", &g, &h, step);
    }
    if b.torch {
        let torch_ok = Command::new("python3").args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
        if !torch_ok {
            return Err(anyhow!("--torch needs PyTorch: pip install torch"));
        }
        // Its 6 learning rates are log-spaced from 0.01 to 1: one step is 100 ^ 1/5. Each
        // attempt stops at its rung's budget (--stop-at {samples}) and checkpoints there.
        let step = 100f64.powf(0.2);
        let stop = TORCH
            .replace("\"--checkpoint-every\", \"0\"]", "\"--checkpoint-every\", \"0\", \"--stop-at\", \"{samples}\"]");
        if stop == TORCH {
            return Err(anyhow!("sweeps/torch-lr-scaling.toml's argv changed: the bench cannot add --stop-at"));
        }
        let grid = write(dir, "torch-grid.toml", &rename(TORCH, "torch-grid")?)?;
        let halving = write(
            dir,
            "torch-halving.toml",
            &halved(&stop, "torch-halving", 3_400, "[\"optimizer\", \"batch_size\"]", Some(30_000))?,
        )?;
        // The commands run in the repository (the sweep names sweeps/torch/train.py).
        let root = std::env::current_dir()?;
        if !root.join("sweeps/torch/train.py").exists() {
            return Err(anyhow!(
                "run `kappa bench halving --torch` from the repository's root (it runs sweeps/torch/train.py)"
            ));
        }
        println!(
            "PyTorch CNN (sweeps/torch-lr-scaling.toml: 36 command trials of 30,000 samples) as a grid and as halving"
        );
        let g = run_local(&grid, &dir.join("torch-grid"))?;
        let h = run_local(&halving, &dir.join("torch-halving"))?;
        ok &= compare("torch, local kappa run (2 workers)", &g, &h, step);
    }
    Ok(if ok { crate::exit::OK } else { crate::exit::CHECK_FAILED })
}
