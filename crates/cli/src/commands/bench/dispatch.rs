//! `kappa bench dispatch`: noop trials through a `kappa coordinator` and 2 `kappa worker`
//! processes until every result is committed, lease latency, coordinator memory per pending
//! trial, and the same trials through Optuna with SQLite storage.

use super::Baseline;
use anyhow::{Context, anyhow};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct DispatchBench {
    /// Trials to dispatch.
    #[arg(long, default_value_t = 100_000)]
    trials: u64,
    /// Slots per worker process.
    #[arg(long, default_value_t = 256)]
    slots: u32,
    /// Pending trials for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    memory_trials: u64,
    /// Trials for the Optuna baseline (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    optuna_trials: u64,
    /// Python interpreter with Optuna.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The Optuna baseline script.
    #[arg(long, default_value = "tests/bench/dispatch_optuna.py")]
    script: PathBuf,
}

/// A child process killed on drop.
pub(super) struct Child(pub(super) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn noop_sweep(name: &str, n: u64) -> String {
    format!(
        "version = 1\nname = \"{name}\"\n[task]\nkind = \"noop\"\n[grid]\noptimizer = [\"sgd\"]\nlr = [0.01]\n\
         seed = {{ linspace = [0, {}], num = {n} }}\n[execution]\nmax_trials = {n}\n",
        n.saturating_sub(1)
    )
}

/// Starts `kappa coordinator` on a free port with its state in `dir` and the flags `extra`;
/// returns it and its address.
pub(super) fn start_coordinator(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<(Child, String)> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["coordinator", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--state")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start a coordinator")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .strip_prefix("kappa coordinator listening on ")
        .and_then(|r| r.split(',').next())
        .ok_or_else(|| anyhow!("unexpected coordinator output: {line}"))?
        .to_string();
    Ok((Child(child), addr))
}

/// A process's resident memory (KiB).
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A figure in KiB from `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
pub(super) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn bench_dispatch(b: DispatchBench) -> anyhow::Result<u8> {
    let dir = std::env::temp_dir().join(format!("kappa-bench-dispatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (coord, addr) = start_coordinator(&dir.join("dispatch"), &[])?;
    let exe = std::env::current_exe()?;
    let url = format!("http://{addr}");
    let _workers: Vec<Child> = (0..2)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "worker",
                    "--coordinator",
                    &url,
                    "--slots",
                    &b.slots.to_string(),
                    "--name",
                    &format!("bench-{i}"),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map(Child)
        })
        .collect::<Result<_, _>>()?;
    println!(
        "dispatch: {} noop trials, 1 coordinator + 2 worker processes ({} slots each), results in SQLite",
        b.trials, b.slots
    );
    let rate = runtime.block_on(async {
        let mut client = kappa_proto::connect(&url, None).await?;
        let started = Instant::now();
        client
            .submit(kappa_proto::pb::SubmitRequest {
                spec: noop_sweep("dispatch", b.trials),
                file_name: "noop.toml".into(),
                ..Default::default()
            })
            .await?;
        let planned = started.elapsed().as_secs_f64();
        // A probe worker beside the real ones: it times every Lease call it makes while the sweep
        // runs (and reports what it gets, so nothing it takes is lost).
        let probe = tokio::spawn(probe_lease_latency(url.clone()));
        loop {
            let p = client.status(kappa_proto::pb::StatusRequest { sweep: "dispatch".into() }).await?.into_inner();
            if p.progress.as_ref().is_some_and(|p| p.finished) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Durable means committed: wait until the store itself holds every result.
        let state = dir.join("dispatch").join("dispatch");
        loop {
            let committed = kappa_store::Store::open(&state).and_then(|s| s.counts()).map(|c| c.succeeded).unwrap_or(0);
            if committed >= b.trials {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "kappa : {:.0} trials/s end to end, every result committed ({secs:.2} s, of which planning {planned:.2} s)",
            b.trials as f64 / secs
        );
        let mut lat = probe.await.unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        if !lat.is_empty() {
            let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize] * 1e3;
            println!(
                "lease : p50 {:.2} ms, p99 {:.2} ms over {} lease calls made during the run",
                q(0.5),
                q(0.99),
                lat.len()
            );
        }
        Ok::<f64, anyhow::Error>(b.trials as f64 / secs)
    })?;
    drop(coord);
    if b.memory_trials > 0 {
        let (coord, addr) = start_coordinator(&dir.join("memory"), &[])?;
        let pid = coord.0.id();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let before = rss_kib(pid).unwrap_or(0);
        runtime.block_on(async {
            let mut client = kappa_proto::connect(&format!("http://{addr}"), None).await?;
            client
                .submit(kappa_proto::pb::SubmitRequest {
                    spec: noop_sweep("memory", b.memory_trials),
                    file_name: "noop.toml".into(),
                    ..Default::default()
                })
                .await?;
            Ok::<(), anyhow::Error>(())
        })?;
        let after = rss_kib(pid).unwrap_or(0);
        println!(
            "memory: {:.0} bytes of coordinator RSS per pending trial ({} pending; RSS {} → {} KiB)",
            (after.saturating_sub(before) * 1024) as f64 / b.memory_trials as f64,
            b.memory_trials,
            before,
            after
        );
    }
    if b.optuna_trials > 0 {
        let mut optuna = Command::new(&b.python);
        optuna.arg(&b.script).args(["--trials", &b.optuna_trials.to_string()]);
        match Baseline::run(&mut optuna, "install it with `pip install optuna`") {
            Ok(v) => {
                let r = v.get("trials_per_s");
                println!("optuna: {r:.0} trials/s ({} trials, SQLite storage)", b.optuna_trials);
                println!("ratio : {:.0}x Optuna+SQLite", rate / r);
            }
            Err(e) => println!("optuna: baseline not run: {e:#}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(crate::exit::OK)
}

/// Leases one trial at a time until the sweep is finished, timing each Lease call.
async fn probe_lease_latency(url: String) -> Vec<f64> {
    use kappa_proto::pb;
    let mut out = Vec::new();
    let Ok(mut c) = kappa_proto::connect(&url, None).await else { return out };
    let reg = pb::RegisterRequest {
        protocol_version: kappa_proto::PROTOCOL_VERSION,
        name: "probe".into(),
        slots: 1,
        gpus: 0,
        code_versions: Vec::new(),
    };
    let Ok(r) = c.register(reg).await else { return out };
    let worker_id = r.into_inner().worker_id;
    loop {
        let t = Instant::now();
        let Ok(resp) = c.lease(pb::LeaseRequest { worker_id, max_trials: 1, wait_ms: 1000, free_gpus: 0 }).await else {
            break;
        };
        out.push(t.elapsed().as_secs_f64());
        let resp = resp.into_inner();
        if resp.sweep_finished {
            break;
        }
        for l in resp.leases {
            let report = pb::ReportRequest {
                worker_id,
                trial_id: l.trial_id,
                attempt: l.attempt,
                outcome: Some(pb::report_request::Outcome::Succeeded(pb::TrialMetrics::default())),
                duration_s: 0.0,
            };
            let _ = c.report(report).await;
        }
    }
    let _ = c.deregister(pb::DeregisterRequest { worker_id }).await;
    out
}
