//! `kappa bench large`: sweeps of 10⁶ and 10⁷ noop trials, as a user meets them. For each size:
//! a `kappa run` plans and stores the sweep and starts running it, and is killed (`kill -9`)
//! a few seconds in; the sweep is then resumed in this process up to its first lease
//! (measuring what a resume costs and the coordinator's memory per pending trial);
//! `kappa status` and `kappa export` are timed on the store (export's peak memory too); and the
//! store's size on disk is read. Then a local `kappa run` of a smaller sweep runs to the end, for
//! its dispatch rate with every result committed. Each figure is printed beside its target.

use super::dispatch::{Child, noop_sweep, proc_status_kib, rss_kib};
use anyhow::{Context, anyhow};
use kappa_coordinator::{Coordinator, CoordinatorConfig, PlanRequest};
use kappa_core::{OnNewVersion, Sweep, WorkerId};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `kappa bench large`.
#[derive(clap::Args, Debug)]
pub struct LargeBench {
    /// Sweep sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    trials: Vec<u64>,
    /// How long each `kappa run` runs before it is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    run_for: f64,
    /// Trials of the local dispatch run (0 skips it).
    #[arg(long, default_value_t = 300_000)]
    dispatch_trials: u64,
    /// Where the state directories go (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// A figure against its target, as one line.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Targets per size: planned and stored, resumed to the first lease (seconds).
fn targets(n: u64) -> Option<(f64, f64)> {
    match n {
        1_000_000 => Some((5.0, 1.0)),
        10_000_000 => Some((60.0, 5.0)),
        _ => None,
    }
}

pub(super) fn bench_large(b: LargeBench) -> anyhow::Result<u8> {
    let keep = b.dir.is_some();
    let root =
        b.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("kappa-bench-large-{}", std::process::id())));
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let result = (|| {
        for &n in &b.trials {
            size(&root, n, b.run_for)?;
        }
        if b.dispatch_trials > 0 {
            dispatch(&root, b.dispatch_trials)?;
        }
        Ok(())
    })();
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    result.map(|()| crate::exit::OK)
}

/// Writes the sweep file of `n` noop trials named `name` into `root`: a seed axis, and above
/// 10⁶ trials (an axis's largest `num`) as many learning rates as it takes.
fn sweep_file(root: &Path, name: &str, n: u64) -> anyhow::Result<(PathBuf, String)> {
    const AXIS: u64 = 1_000_000;
    let text = if n <= AXIS {
        noop_sweep(name, n)
    } else {
        if !n.is_multiple_of(AXIS) {
            return Err(anyhow!("sweeps above {AXIS} trials must be a multiple of {AXIS}"));
        }
        let lrs: Vec<String> = (1..=n / AXIS).map(|i| format!("{}", i as f64 * 0.001)).collect();
        format!(
            "version = 1\nname = \"{name}\"\n[task]\nkind = \"noop\"\n[grid]\noptimizer = [\"sgd\"]\nlr = [{}]\n\
             seed = {{ linspace = [0, {}], num = {AXIS} }}\n[execution]\nmax_trials = {n}\n",
            lrs.join(", "),
            AXIS - 1
        )
    };
    let file = root.join(format!("{name}.toml"));
    std::fs::write(&file, &text)?;
    Ok((file, text))
}

/// Starts `kappa run` on `file` and returns it with the time its plan was stored (its first line).
fn start_run(file: &Path, state: &Path) -> anyhow::Result<(Child, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg(file)
        .arg("--state")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start kappa run")?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut stderr = std::io::BufReader::new(stderr);
    let mut line = String::new();
    stderr.read_line(&mut line)?;
    if !line.starts_with("sweep `") {
        return Err(anyhow!("kappa run did not plan the sweep: {line}"));
    }
    let planned = started.elapsed();
    // The rest (its progress) is read and dropped, so the run never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Ok((Child(child), planned))
}

/// Runs `kappa ARGS` to the end; returns its wall time and its peak resident memory (KiB).
fn timed(args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start kappa")?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                return Err(anyhow!("kappa {} failed: {status}", args.join(" ")));
            }
            return Ok((started.elapsed(), peak));
        }
        peak = peak.max(proc_status_kib(pid, "VmHWM:").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn disk_mb(state: &Path) -> (f64, f64) {
    let size = |f: &str| std::fs::metadata(state.join(f)).map_or(0, |m| m.len()) as f64 / 1e6;
    (size("kappa.db"), size("kappa.db-wal"))
}

/// One sweep size: plan, kill, resume, status, export.
fn size(root: &Path, n: u64, run_for: f64) -> anyhow::Result<()> {
    let name = format!("large{n}");
    let (file, text) = sweep_file(root, &name, n)?;
    let state = root.join(&name);
    println!("{n} noop trials:");
    let (run, planned) = start_run(&file, &state)?;
    let (plan_target, resume_target) = targets(n).unwrap_or((f64::INFINITY, f64::INFINITY));
    println!(
        "  plan    : planned and stored in {:.2} s by kappa run (target ≤ {plan_target} s): {}",
        planned.as_secs_f64(),
        verdict(planned.as_secs_f64() <= plan_target)
    );
    std::thread::sleep(Duration::from_secs_f64(run_for));
    // Killed abruptly, as a crash or a preempted node would.
    drop(run);
    let (db, wal) = disk_mb(&state);
    println!(
        "  disk    : {db:.0} MB database + {wal:.0} MB WAL after kill -9 ({:.0} bytes per trial)",
        (db + wal) * 1e6 / n as f64
    );

    // Resumed in this process, to the first lease: what `kappa run` does before its first trial.
    let sweep = Sweep::parse(&file.display().to_string(), &text)?;
    let started = Instant::now();
    let cfg = CoordinatorConfig { adopt_in_flight: false, ..CoordinatorConfig::default() };
    let coordinator = Coordinator::new(None, cfg, kappa_worker::code_version);
    let file = file.display().to_string();
    let req = PlanRequest { dir: &state, sweep: &sweep, sweep_text: &text, file: &file, on_new: OnNewVersion::Refuse };
    let (runner, sync) = coordinator.open(req)?;
    let leases = runner.try_lease(WorkerId(1), "bench", 1);
    let resumed = started.elapsed().as_secs_f64();
    if leases.is_empty() {
        return Err(anyhow!("the resumed sweep leased nothing"));
    }
    let rss_after = rss_kib(std::process::id()).unwrap_or(0);
    let pending = runner.progress().counts.pending + runner.progress().counts.running;
    println!(
        "  resume  : first lease {resumed:.2} s after the start ({} done before the kill, {} re-queued) (target ≤ {resume_target} s): {}",
        sync.reused,
        sync.requeued,
        verdict(resumed <= resume_target)
    );
    // The whole process's memory over the pending trials: an upper bound on what each costs.
    let per = (rss_after * 1024) as f64 / pending.max(1) as f64;
    println!(
        "  memory  : at most {per:.0} bytes per pending trial: this process's whole RSS is {:.0} MB with {pending} pending (target ≤ 1024): {}",
        rss_after as f64 / 1024.0,
        verdict(per <= 1024.0)
    );
    runner.release_all(kappa_core::LeaseEnd::Abandoned);
    coordinator.shutdown()?;
    drop(runner);
    drop(coordinator);

    let state_arg = state.display().to_string();
    let (status_s, _) = timed(&["status", "--state", &state_arg])?;
    println!(
        "  status  : kappa status in {:.2} s (target ≤ 1 s): {}",
        status_s.as_secs_f64(),
        verdict(status_s.as_secs_f64() <= 1.0)
    );
    let out = root.join(format!("{name}.jsonl"));
    let out_arg = out.display().to_string();
    let (export_s, peak) = timed(&["export", "--state", &state_arg, "--format", "jsonl", "--out", &out_arg])?;
    let exported = std::fs::metadata(&out).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&out);
    println!(
        "  export  : kappa export --format jsonl in {:.1} s ({:.0} MB written), peak memory {:.0} MB (target: streamed, not held): {}",
        export_s.as_secs_f64(),
        exported as f64 / 1e6,
        peak as f64 / 1024.0,
        // Holding every trial would take more memory than the file's size.
        verdict(peak * 1024 < (exported / 4).max(128 << 20))
    );
    let (db, wal) = disk_mb(&state);
    println!("  disk    : {db:.0} MB database + {wal:.0} MB WAL after the resume");
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

/// A local `kappa run` of `n` noop trials to the end: its dispatch rate with every result
/// committed (the run ends once the store holds them all).
fn dispatch(root: &Path, n: u64) -> anyhow::Result<()> {
    let (file, _) = sweep_file(root, "dispatch", n)?;
    let state = root.join("dispatch");
    let (mut run, planned) = start_run(&file, &state)?;
    let started = Instant::now();
    let status = run.0.wait()?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(anyhow!("kappa run failed: {status}"));
    }
    let committed = kappa_store::Store::open(&state)?.counts()?.succeeded;
    let rate = committed as f64 / secs;
    println!(
        "local dispatch: kappa run ran {committed} of {n} noop trials in {secs:.1} s after planning them in {:.1} s: {rate:.0} trials/s, every result committed (target ≥ 20,000): {}",
        planned.as_secs_f64(),
        verdict(rate >= 20_000.0 && committed == n)
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
