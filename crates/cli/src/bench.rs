//! `kappa bench sim`: simulator throughput against a vectorised NumPy baseline, measured side by
//! side in one run (the machine is shared, so only the ratio means something).

use anyhow::{Context, anyhow};
use kappa_core::task::{Eigenvalues, LandscapeSpec, NoiseSpec, RecordEvery, SdeModel, Sigma, SimTask, Spectrum};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

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

/// Arguments of `kappa bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
enum BenchWhat {
    /// SGD SDE on a diagonal quadratic (λ evenly spaced in [0.1, 10]), Euler–Maruyama with Δ = η,
    /// against tests/bench/sim_numpy.py doing the same work with NumPy.
    Sim(SimBench),
    /// The CUDA backend: SignSGD's SDE and AdamW (power-law spectrum λ_i = 10·i⁻¹, Gaussian noise),
    /// against tests/bench/gpu_torch.py running the same workloads with PyTorch eager on the same
    /// GPU, in the same run. Needs an NVIDIA GPU (and PyTorch with CUDA for the baseline).
    Gpu(GpuBench),
    /// Native training: a 64-128-10 ReLU MLP on the digits (batch 64, Adam), kappa-train against
    /// tests/bench/mlp_numpy.py running the same loop with NumPy; one replicate on one thread,
    /// then one replicate per thread.
    Train(TrainBench),
    /// Dispatch throughput: N noop trials through a `kappa coordinator` and 2 `kappa worker`
    /// processes with durable results; coordinator memory per pending trial; and, when Optuna is
    /// installed (`pip install optuna`), the same trials through Optuna with SQLite storage.
    Dispatch(DispatchBench),
    /// Process-per-trial dispatch: N command trials running `true` through a local `kappa run`
    /// with 2 slots, against HyperQueue running N `true` tasks on one local 2-core worker
    /// (`python3 -m pip install hyperqueue`).
    Commands(crate::bench_commands::CommandsBench),
}

#[derive(clap::Args, Debug)]
struct DispatchBench {
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

#[derive(clap::Args, Debug)]
struct TrainBench {
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

#[derive(clap::Args, Debug)]
struct GpuBench {
    /// Paths.
    #[arg(long, default_value_t = 16_384)]
    paths: u32,
    /// Dimension d.
    #[arg(long, default_value_t = 1024)]
    dim: usize,
    /// Steps.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Timed repetitions of each workload (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// GPU device ordinal.
    #[arg(long, default_value_t = 0)]
    device: u32,
    /// Python interpreter with PyTorch for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The PyTorch baseline script.
    #[arg(long, default_value = "tests/bench/gpu_torch.py")]
    script: PathBuf,
    /// Skip the PyTorch baseline.
    #[arg(long)]
    no_baseline: bool,
}

#[derive(clap::Args, Debug)]
struct SimBench {
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

pub fn bench(args: BenchArgs) -> anyhow::Result<u8> {
    match args.what {
        BenchWhat::Sim(b) => bench_sim(b),
        BenchWhat::Gpu(b) => bench_gpu(b),
        BenchWhat::Train(b) => bench_train(b),
        BenchWhat::Dispatch(b) => bench_dispatch(b),
        BenchWhat::Commands(b) => crate::bench_commands::bench_commands(b),
    }
}

fn bench_sim(b: SimBench) -> anyhow::Result<u8> {
    let (lr, sigma, x0) = (0.01, 1.0, 0.5);
    let task = TaskSpec::Sde(SimTask {
        landscape: LandscapeSpec::Quadratic {
            eigenvalues: Eigenvalues::Generated(Spectrum::Linspace { lo: 0.1, hi: 10.0, num: b.dim }),
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

const NUMPY_HINT: &str = "install it with `pip install numpy`, or pass --no-baseline";

/// The GPU targets of issue #7: ≥ 10× PyTorch eager, ≥ 3e11 element-steps/s for SignSGD's SDE.
const GPU_TARGET_RATIO: f64 = 10.0;
const GPU_TARGET_SIGNSGD_SDE: f64 = 3e11;

fn bench_gpu(b: GpuBench) -> anyhow::Result<u8> {
    use kappa_core::task::Backend;
    kappa_sim::gpu_available(b.device).map_err(|e| anyhow!("no usable NVIDIA GPU: {e}"))?;
    let (sigma, x0) = (1.0, 0.5);
    let workloads = [("signsgd_sde", OptimizerKind::SignSgd, true, 1e-3), ("adamw", OptimizerKind::AdamW, false, 1e-3)];
    let work = f64::from(b.paths) * b.dim as f64 * b.steps as f64;
    println!(
        "workloads: SignSGD SDE (Δ = η) and AdamW, d = {} (λ_i = 10·i^-1), {} paths, {} steps ({work:.3e} element-steps), \
         float32, loss recorded every 10% and summed every step",
        b.dim, b.paths, b.steps
    );
    let mut met = true;
    for (name, optimizer, sde, lr) in workloads {
        let sim = SimTask {
            landscape: LandscapeSpec::Quadratic {
                eigenvalues: Eigenvalues::Generated(Spectrum::PowerLaw { max: 10.0, alpha: 1.0, num: b.dim }),
            },
            noise: NoiseSpec::Gaussian { sigma: Sigma::Scalar(sigma) },
            x0,
            paths: b.paths,
            samples: b.steps,
            record_every: RecordEvery::Percent(10.0),
            burn_in: 0.5,
            bias_correction: true,
            refine: 1,
            sde_model: SdeModel::Compagnoni,
            backend: Backend::Cuda,
        };
        let task = if sde { TaskSpec::Sde(sim) } else { TaskSpec::Optimizer(sim) };
        let params = Hyperparams {
            optimizer,
            batch_size: 1,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            seed: 0,
        };
        let opts = kappa_sim::RunOptions { backend: Some(Backend::Cuda), gpu: Some(b.device) };
        let mut best = f64::INFINITY;
        let mut stationary = f64::NAN;
        // The first run compiles nothing (gpu_available did) but warms the allocator: not timed.
        for i in 0..=b.repeat.max(1) {
            let started = Instant::now();
            let out = kappa_sim::run_trial_with(&task, &params, TrialId(1), &kappa_sim::Cancel::new(), &opts)
                .map_err(|e| anyhow!("{name}: the GPU run failed: {e}"))?;
            let secs = started.elapsed().as_secs_f64();
            let AttemptOutcome::Succeeded(m) = out else { return Err(anyhow!("{name}: did not succeed: {out:?}")) };
            stationary = m.stationary_loss.map_or(f64::NAN, |e| e.mean);
            if i > 0 {
                best = best.min(secs);
            }
        }
        let kappa_rate = work / best;
        println!(
            "{name} kappa  : {kappa_rate:.3e} element-steps/s ({best:.4} s, whole trial), stationary loss {stationary:.5e}"
        );
        if name == "signsgd_sde" {
            let ok = kappa_rate >= GPU_TARGET_SIGNSGD_SDE;
            met &= ok;
            println!(
                "{name} target : ≥ {GPU_TARGET_SIGNSGD_SDE:.0e} element-steps/s: {}",
                if ok { "met" } else { "NOT met" }
            );
        }
        if b.no_baseline {
            continue;
        }
        let v = match Baseline::run(
            Command::new(&b.python)
                .arg(&b.script)
                .args(["--workload", name, "--paths", &b.paths.to_string(), "--dim", &b.dim.to_string()])
                .args(["--steps", &b.steps.to_string(), "--lr", &lr.to_string(), "--sigma", &sigma.to_string()])
                .args(["--x0", &x0.to_string(), "--device", &b.device.to_string()]),
            "needs PyTorch with CUDA; --no-baseline skips it",
        ) {
            Ok(v) => v,
            Err(e) => {
                println!("{name} torch  : {e:#}");
                met = false;
                continue;
            }
        };
        let torch_rate = v.rate("element_steps_per_s")?;
        println!(
            "{name} torch  : {torch_rate:.3e} element-steps/s ({:.4} s), stationary loss {:.5e} ({})",
            v.get("seconds"),
            v.get("stationary_loss"),
            v.text("device")
        );
        let ratio = kappa_rate / torch_rate;
        let ok = ratio >= GPU_TARGET_RATIO;
        met &= ok;
        println!(
            "{name} ratio  : {ratio:.1}x PyTorch eager (target ≥ {GPU_TARGET_RATIO}x: {})",
            if ok { "met" } else { "NOT met" }
        );
    }
    println!("targets: {}", if met { "all met" } else { "NOT all met" });
    Ok(if met { crate::exit::OK } else { crate::exit::CHECK_FAILED })
}

fn bench_train(b: TrainBench) -> anyhow::Result<u8> {
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

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn noop_sweep(name: &str, n: u64) -> String {
    format!(
        "version = 1\nname = \"{name}\"\n[task]\nkind = \"noop\"\n[grid]\noptimizer = [\"sgd\"]\nlr = [0.01]\n\
         seed = {{ linspace = [0, {}], num = {n} }}\n[execution]\nmax_trials = {n}\n",
        n.saturating_sub(1)
    )
}

fn start_coordinator(dir: &std::path::Path) -> anyhow::Result<(Child, String)> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["coordinator", "--listen", "127.0.0.1:0", "--state"])
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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn bench_dispatch(b: DispatchBench) -> anyhow::Result<u8> {
    let dir = std::env::temp_dir().join(format!("kappa-bench-dispatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (coord, addr) = start_coordinator(&dir.join("dispatch"))?;
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
        let (coord, addr) = start_coordinator(&dir.join("memory"))?;
        let pid = coord.0.id();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let before = rss_kib(pid).unwrap_or(0);
        runtime.block_on(async {
            let mut client = kappa_proto::connect(&format!("http://{addr}"), None).await?;
            client
                .submit(kappa_proto::pb::SubmitRequest {
                    spec: noop_sweep("memory", b.memory_trials),
                    file_name: "noop.toml".into(),
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
