//! `kappa bench commands`: process-per-trial dispatch. N command trials that run `true` through a
//! local `kappa run` with 2 slots, against HyperQueue running the same N `true` tasks on one local
//! worker with 2 cores (tests/bench/commands_hyperqueue.py), in the same run.

use anyhow::{Context, anyhow};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Arguments of `kappa bench commands`.
#[derive(clap::Args, Debug)]
pub struct CommandsBench {
    /// Command trials (each runs `true`).
    #[arg(long, default_value_t = 10_000)]
    trials: u64,
    /// Trials run at once (`kappa run --workers`; HyperQueue gets as many cores).
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Skip the HyperQueue baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Python interpreter with HyperQueue (`python3 -m pip install hyperqueue`).
    #[arg(long, default_value = "python3")]
    python: String,
    /// The HyperQueue baseline script.
    #[arg(long, default_value = "tests/bench/commands_hyperqueue.py")]
    script: PathBuf,
}

fn true_sweep(n: u64) -> String {
    format!(
        "version = 1\nname = \"bench-commands\"\n[task]\nkind = \"command\"\nargv = [\"true\"]\n[grid]\n\
         optimizer = [\"sgd\"]\nlr = [0.01]\nseed = {{ linspace = [0, {}], num = {n} }}\n[execution]\n\
         max_trials = {n}\n",
        n.saturating_sub(1)
    )
}

pub(super) fn bench_commands(b: CommandsBench) -> anyhow::Result<u8> {
    if b.trials == 0 || b.slots == 0 {
        return Err(crate::exit::invalid("--trials and --slots must be at least 1"));
    }
    let dir = std::env::temp_dir().join(format!("kappa-bench-commands-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let file = dir.join("sweep.toml");
    std::fs::write(&file, true_sweep(b.trials))?;
    println!("workload: {} trials that each run `true` as a child process, {} at a time", b.trials, b.slots);
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg(&file)
        .args(["--workers", &b.slots.to_string(), "--quiet", "--state"])
        .arg(dir.join("state"))
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .output()
        .context("cannot start kappa run")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(anyhow!("kappa run failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let store = kappa_store::Store::open(&dir.join("state"))?;
    let counts = store.counts()?;
    if counts.succeeded != b.trials {
        return Err(anyhow!("only {} of {} trials succeeded", counts.succeeded, b.trials));
    }
    let kappa_rate = b.trials as f64 / seconds;
    println!("kappa      : {kappa_rate:>8.0} trials/s ({seconds:.2} s, planning, logs and durable results included)");
    if b.no_baseline {
        return Ok(crate::exit::OK);
    }
    let hint = "install it with `python3 -m pip install hyperqueue`, or pass --no-baseline";
    let v = super::Baseline::run(
        Command::new(&b.python).arg(&b.script).args([b.trials.to_string(), b.slots.to_string()]),
        hint,
    )?;
    let hq_rate = v.rate("tasks_per_s")?;
    println!(
        "hyperqueue : {hq_rate:>8.0} tasks/s ({:.2} s, one local worker with {} cores)",
        v.get("seconds"),
        b.slots
    );
    println!("ratio      : {:.2}x HyperQueue", kappa_rate / hq_rate);
    Ok(crate::exit::OK)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
