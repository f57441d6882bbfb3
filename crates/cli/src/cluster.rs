//! The cluster commands: `kappa coordinator`, `kappa worker`, `kappa submit`, `kappa watch`, and
//! the `--coordinator` forms of `kappa status`.

use crate::plan::load_sweep;
use crate::run::interrupted;
use crate::{exit, invalid};
use anyhow::{Context, anyhow};
use kappa_coordinator::{CoordinatorConfig, Hub};
use kappa_core::spec::parse_duration;
use kappa_proto::pb;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where the shared token (and, for TLS, the certificate authority) come from.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArg {
    /// File holding the shared bearer token (every RPC must carry it).
    #[arg(long, value_name = "FILE", env = "KAPPA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate authority to trust for an https:// coordinator.
    #[arg(long, value_name = "FILE", env = "KAPPA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl TokenArg {
    /// The token: from `--token-file`, else the `KAPPA_TOKEN` variable, else none.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f)
                .map_err(|e| invalid(format!("cannot read token file {}: {e}", f.display())))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(invalid(format!("token file {} is empty", f.display())));
            }
            return Ok(Some(t));
        }
        Ok(std::env::var("KAPPA_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
    }

    /// The certificate authority's PEM, if given.
    pub fn ca(&self) -> anyhow::Result<Option<Vec<u8>>> {
        match &self.tls_ca {
            Some(f) => {
                Ok(Some(std::fs::read(f).map_err(|e| invalid(format!("cannot read --tls-ca {}: {e}", f.display())))?))
            }
            None => Ok(None),
        }
    }
}

/// The coordinator a client talks to.
#[derive(clap::Args, Debug, Clone)]
pub struct CoordinatorArg {
    /// Coordinator URL, e.g. http://10.0.0.1:7070 (https://… when it serves TLS).
    #[arg(long, value_name = "URL", env = "KAPPA_COORDINATOR")]
    pub coordinator: String,
    #[command(flatten)]
    pub token: TokenArg,
}

/// Arguments of `kappa coordinator`.
#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", env = "KAPPA_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// State root: each submitted sweep keeps its store in DIR/NAME (NAME: the sweep name); a restarted
    /// coordinator reloads them all.
    #[arg(long, value_name = "DIR", env = "KAPPA_STATE", default_value = "runs")]
    state: PathBuf,
    /// How often workers renew their leases.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    heartbeat: Duration,
    /// Missed heartbeats after which a lease expires and its trial runs again.
    #[arg(long, value_name = "N", default_value_t = 3)]
    missed_heartbeats: u32,
    /// Also serve Prometheus metrics (GET /metrics) on this address.
    #[arg(long, value_name = "ADDR", env = "KAPPA_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// PEM certificate to serve TLS with (clients then use https:// and --tls-ca).
    #[arg(long, value_name = "FILE", env = "KAPPA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "KAPPA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    token: TokenArg,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// `kappa coordinator`: serves until Ctrl-C or SIGTERM, then commits everything and exits.
pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<u8> {
    let token = args.token.token()?;
    let auth = kappa_proto::Auth::new(token.as_deref()).map_err(|e| invalid(e.to_string()))?;
    let cfg = CoordinatorConfig {
        heartbeat_interval: args.heartbeat,
        lease_timeout: args.heartbeat * args.missed_heartbeats.max(1),
        ..CoordinatorConfig::default()
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let read = |f: &PathBuf| std::fs::read(f).map_err(|e| invalid(format!("cannot read {}: {e}", f.display())));
            Some(tonic::transport::Identity::from_pem(read(c)?, read(k)?))
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let hub = Arc::new(Hub::new(Some(args.state.clone()), cfg, kappa_worker::code_version));
    let loaded = hub.load_all().with_context(|| format!("cannot load the sweeps in {}", args.state.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served: anyhow::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| invalid(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        // The first line a supervisor (or a test) can wait for.
        println!("kappa coordinator listening on {addr}, state in {} ({scheme})", args.state.display());
        for name in &loaded {
            println!("resumed sweep `{name}`");
        }
        if token.is_none() {
            eprintln!("warning: no token (--token-file or KAPPA_TOKEN): any client that reaches {addr} is trusted");
        }
        if let Some(m) = &args.metrics_listen {
            let l =
                tokio::net::TcpListener::bind(m).await.map_err(|e| invalid(format!("cannot listen on {m}: {e}")))?;
            println!("metrics on http://{}/metrics", l.local_addr()?);
            tokio::spawn(kappa_coordinator::metrics::serve_metrics(l, hub.clone(), std::future::pending()));
        }
        // Serve until Ctrl-C/SIGTERM, or until results stop being written (a full disk, say):
        // a coordinator that cannot record results must not keep handing out trials.
        let watched = hub.clone();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let failed = failure.clone();
        let stop = async move {
            let interrupt = interrupted();
            tokio::pin!(interrupt);
            let mut health = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut interrupt => break,
                    _ = health.tick() => if let Some(f) = watched.write_failure() {
                        eprintln!("error: writing results failed: {f}; stopping");
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
                        break;
                    }
                }
            }
        };
        kappa_coordinator::serve(listener, hub.clone(), auth, tls, stop).await.context("the server failed")?;
        let failure = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failure {
            Some(f) => Err(anyhow!("writing results failed: {f} (fix it and start the coordinator again)")),
            None => Ok(()),
        }
    });
    // Leases die with the process: their trials are pending again in the store.
    hub.release_all();
    let shutdown = hub.shutdown();
    served?;
    shutdown.context("could not save every result")?;
    println!("coordinator stopped; every result is saved");
    Ok(exit::OK)
}

/// Arguments of `kappa worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// Trials run at once.
    #[arg(long, value_name = "N", default_value_t = 1, env = "KAPPA_SLOTS")]
    slots: usize,
    /// Name shown in the store and logs (default: host name and process id).
    #[arg(long, value_name = "NAME", env = "KAPPA_WORKER_NAME")]
    name: Option<String>,
    /// GPUs this worker hands to trials that ask for them (`resources.gpus`): `auto` (from
    /// CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`), a count N (devices 0..N), or a list `0,2`.
    #[arg(long, value_name = "auto|N|LIST", default_value = "auto", env = "KAPPA_GPUS")]
    gpus: String,
    /// Where simulations run, over each task's `backend`: `cpu`, `cuda` (an error on a machine
    /// without a usable NVIDIA GPU) or `auto` (the GPU when there is one). Default: the task's.
    #[arg(long, value_name = "auto|cpu|cuda", env = "KAPPA_BACKEND", value_parser = backend_arg)]
    backend: Option<kappa_core::task::Backend>,
    /// Run `kind = "command"` trials (programs named by sweep files) as child processes.
    /// Without it such trials are refused with that reason.
    #[arg(long, env = "KAPPA_ALLOW_COMMANDS")]
    allow_commands: bool,
    /// Working directory of command trials; their per-attempt logs go to `kappa-logs/` in it.
    #[arg(long, value_name = "DIR", default_value = ".", env = "KAPPA_WORKDIR")]
    workdir: PathBuf,
    /// On SIGTERM/Ctrl-C, stop leasing and let running trials finish for up to this long
    /// before handing the rest back (e.g. `90s`; default: hand back at once).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "KAPPA_DRAIN_TIMEOUT")]
    drain_timeout: Option<Duration>,
}

/// The working directory `--workdir` names for command trials, as an absolute path.
pub fn command_workdir(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|e| invalid(format!("--workdir {}: {e}", dir.display())))
}

/// The GPUs `--gpus` names: `auto`, a count, or a comma-separated list of device ordinals.
pub fn parse_gpus(spec: &str) -> anyhow::Result<Vec<u32>> {
    let spec = spec.trim();
    if spec == "auto" {
        return Ok(detect_gpus());
    }
    if let Ok(n) = spec.parse::<u32>() {
        return Ok((0..n).collect());
    }
    spec.split(',')
        .map(|p| {
            p.trim().parse::<u32>().map_err(|_| {
                invalid(format!("--gpus must be `auto`, a count or a list of device numbers like 0,2; got `{spec}`"))
            })
        })
        .collect()
}

/// GPUs visible to this process: CUDA_VISIBLE_DEVICES when set, else what `nvidia-smi -L` lists.
fn detect_gpus() -> Vec<u32> {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        let n = v.split(',').filter(|d| !d.trim().is_empty() && d.trim() != "-1").count();
        return (0..n as u32).collect();
    }
    match std::process::Command::new("nvidia-smi").arg("-L").stderr(std::process::Stdio::null()).output() {
        Ok(o) if o.status.success() => {
            let n = String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count();
            (0..n as u32).collect()
        }
        _ => Vec::new(),
    }
}

/// Parses `--backend`.
pub fn backend_arg(s: &str) -> Result<kappa_core::task::Backend, String> {
    s.parse()
}

/// Says on stderr where a worker's simulations will run, for a `--backend` other than the task's.
pub fn announce_backend(backend: Option<kappa_core::task::Backend>) {
    use kappa_core::task::Backend;
    match backend {
        None | Some(Backend::Cpu) => {}
        Some(b) => match kappa_sim::gpu_available(0) {
            Ok(()) => eprintln!("simulations: --backend {b}, GPU 0 usable"),
            Err(why) if b == Backend::Auto => eprintln!("simulations: --backend auto, on the CPU ({why})"),
            Err(why) => eprintln!("simulations: --backend cuda, but no usable NVIDIA GPU: {why} (trials will fail)"),
        },
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    kappa_core::spec::parse_duration(s)
}

/// `kappa worker`: pulls trials until Ctrl-C or SIGTERM, then hands its leases back.
pub fn worker(args: WorkerArgs) -> anyhow::Result<u8> {
    if args.slots == 0 {
        return Err(invalid("--slots must be at least 1"));
    }
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).ok();
    let name =
        args.name.clone().unwrap_or_else(|| format!("{}-{}", host.as_deref().unwrap_or("worker"), std::process::id()));
    let cfg = kappa_worker::WorkerConfig {
        coordinator: args.coordinator.coordinator.clone(),
        name,
        slots: args.slots,
        lease_wait: Duration::from_secs(10),
        exit_when_finished: false,
        token: args.coordinator.token.token()?,
        tls_ca: args.coordinator.token.ca()?,
        verbose: true,
        commands: if args.allow_commands {
            let workdir = command_workdir(&args.workdir)?;
            let host = host.unwrap_or_else(|| "localhost".into());
            Some(kappa_worker::CommandEnv { logs: workdir.join("kappa-logs"), workdir, host })
        } else {
            None
        },
        gpus: parse_gpus(&args.gpus)?,
        backend: args.backend,
        drain: args.drain_timeout.unwrap_or_default(),
    };
    announce_backend(args.backend);
    if !cfg.gpus.is_empty() {
        eprintln!("worker GPUs: {:?}", cfg.gpus);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let stats = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            interrupted().await;
            let _ = stop_tx.send(true);
        });
        kappa_worker::run(cfg, stop_rx).await
    })?;
    eprintln!("worker stopped: {} attempts reported, {} handed back", stats.reported, stats.abandoned);
    Ok(exit::OK)
}

/// Arguments of `kappa submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// Follow progress until the sweep finishes.
    #[arg(long)]
    watch: bool,
}

async fn client(c: &CoordinatorArg) -> anyhow::Result<kappa_proto::Client> {
    Ok(kappa_proto::connect_with(&c.coordinator, c.token.token()?.as_deref(), c.token.ca()?.as_deref()).await?)
}

/// A sweep's results as a coordinator serves them: its name, file path and text, and every
/// trial (`kappa report --coordinator`).
pub struct RemoteResults {
    /// The sweep's name.
    pub name: String,
    /// Path of the sweep file it was submitted from.
    pub spec_path: String,
    /// The sweep file's text.
    pub spec: String,
    /// Every trial: id, hyperparameters, status, metrics.
    pub trials:
        Vec<(kappa_core::TrialId, kappa_core::Hyperparams, kappa_core::TrialStatus, Option<kappa_core::TrialMetrics>)>,
}

/// Fetches a sweep's results from a coordinator (empty name: its latest sweep).
pub fn fetch_results(c: &CoordinatorArg, sweep: &str) -> anyhow::Result<RemoteResults> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut cl = client(c).await?;
        let mut stream =
            cl.results(pb::ResultsRequest { sweep: sweep.to_string() }).await.map_err(status_error)?.into_inner();
        let mut out =
            RemoteResults { name: String::new(), spec_path: String::new(), spec: String::new(), trials: Vec::new() };
        while let Some(chunk) = stream.message().await.map_err(status_error)? {
            if out.name.is_empty() {
                (out.name, out.spec, out.spec_path) = (chunk.sweep, chunk.spec, chunk.spec_path);
            }
            for t in chunk.trials {
                out.trials.push(
                    kappa_proto::trial_result_from_pb(t)
                        .map_err(|e| anyhow!("bad result from the coordinator: {e}"))?,
                );
            }
        }
        Ok(out)
    })
}

/// `kappa submit`: validates the file here (for its error messages), then hands it to the coordinator.
pub fn submit(args: SubmitArgs) -> anyhow::Result<u8> {
    let (sweep, text) = load_sweep(&args.file)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut c = client(&args.coordinator).await?;
        let r = c
            .submit(pb::SubmitRequest { spec: text, file_name: args.file.display().to_string() })
            .await
            .map_err(status_error)?
            .into_inner();
        println!(
            "submitted sweep `{}`: {} trials ({} new, {} finished earlier and reused)",
            r.sweep, r.total, r.new_trials, r.reused
        );
        if !r.warning.is_empty() {
            eprintln!("warning: {}", r.warning);
        }
        if args.watch {
            return follow_to_end(&args.coordinator, &sweep.name).await;
        }
        Ok(exit::OK)
    })
}

/// Arguments of `kappa watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The sweep (default: the most recently submitted).
    #[arg(long)]
    sweep: Option<String>,
}

/// `kappa watch`: live progress from the coordinator's stream until the sweep finishes.
pub fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(follow_to_end(&args.coordinator, args.sweep.as_deref().unwrap_or("")))
}

async fn follow_to_end(c: &CoordinatorArg, sweep: &str) -> anyhow::Result<u8> {
    // Fail early with a clear error if the coordinator is not there or refuses us.
    let mut cl = client(c).await?;
    let p = cl.status(pb::StatusRequest { sweep: sweep.to_string() }).await.map_err(status_error)?.into_inner();
    let (_tx, rx) = watch::channel(false);
    crate::progress::follow(c.coordinator.clone(), c.token.token()?, c.token.ca()?, sweep.to_string(), rx).await;
    let mut cl = client(c).await?;
    let p = cl
        .status(pb::StatusRequest { sweep: p.progress.map(|p| p.sweep).unwrap_or_default() })
        .await
        .map_err(status_error)?
        .into_inner();
    let done = p.progress.as_ref().is_some_and(|p| p.finished);
    Ok(if !done {
        exit::INTERRUPTED
    } else if p.progress.is_some_and(|p| p.failed > 0) {
        exit::TRIALS_FAILED
    } else {
        exit::OK
    })
}

/// `kappa status --coordinator URL`.
pub fn status(c: &CoordinatorArg, sweep: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut cl = client(c).await?;
        let r = cl
            .status(pb::StatusRequest { sweep: sweep.unwrap_or("").to_string() })
            .await
            .map_err(status_error)?
            .into_inner();
        if as_json {
            let all: Vec<_> = r.sweeps.iter().map(progress_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "coordinator": c.coordinator, "sweeps": all }))?
            );
        } else {
            if r.sweeps.is_empty() {
                println!("coordinator {}: no sweep submitted yet", c.coordinator);
            }
            for p in &r.sweeps {
                println!(
                    "sweep `{}`: {} trials: {} succeeded, {} failed, {} diverged, {} running, {} pending; {} workers{}",
                    p.sweep,
                    p.total,
                    p.succeeded,
                    p.failed,
                    p.diverged,
                    p.running,
                    p.pending,
                    p.workers,
                    if p.finished {
                        "; finished"
                    } else if p.cancelled {
                        "; cancelled"
                    } else {
                        ""
                    }
                );
            }
        }
        Ok(exit::OK)
    })
}

fn progress_json(p: &pb::Progress) -> serde_json::Value {
    serde_json::json!({
        "sweep": p.sweep, "total": p.total, "pending": p.pending, "running": p.running,
        "succeeded": p.succeeded, "failed": p.failed, "diverged": p.diverged,
        "workers": p.workers, "finished": p.finished, "cancelled": p.cancelled,
    })
}

/// A gRPC refusal in words a user can act on.
fn status_error(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::InvalidArgument => invalid(s.message().to_string()),
        tonic::Code::Unauthenticated => anyhow!("the coordinator refused the token: {}", s.message()),
        _ => anyhow!("coordinator: {} ({:?})", s.message(), s.code()),
    }
}

/// Arguments of `kappa retry`.
#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    /// Put the failed trials back to pending, with a fresh failure budget (required: it is the
    /// only kind of retry there is).
    #[arg(long, required = true)]
    failed: bool,
    #[command(flatten)]
    state: crate::StateArg,
    /// Ask a running coordinator instead of changing a state directory.
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    /// With --coordinator: the sweep (default: the latest).
    #[arg(long, requires = "coordinator")]
    sweep: Option<String>,
    #[command(flatten)]
    token: TokenArg,
}

/// `kappa retry --failed`.
pub fn retry(args: RetryArgs) -> anyhow::Result<u8> {
    let _ = args.failed;
    if let Some(url) = &args.coordinator {
        let c = CoordinatorArg { coordinator: url.clone(), token: args.token.clone() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return runtime.block_on(async {
            let mut cl = client(&c).await?;
            let r = cl
                .retry_failed(pb::RetryFailedRequest { sweep: args.sweep.clone().unwrap_or_default() })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("sweep `{}`: {} failed trials will run again", r.sweep, r.requeued);
            Ok(exit::OK)
        });
    }
    let dir = crate::summary::resolve_state(&args.state)?;
    let _lock = crate::run::lock_state(&dir)?;
    let mut store = kappa_store::Store::open(&dir)?;
    let n = store.reset_failed()?;
    println!("{n} failed trials will run again on the next `kappa run` of this sweep (state {})", dir.display());
    Ok(exit::OK)
}

/// Arguments of `kappa cancel`.
#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The sweep (default: the most recently submitted).
    #[arg(long)]
    sweep: Option<String>,
}

/// `kappa cancel`: the coordinator stops leasing the sweep and revokes its running trials.
pub fn cancel(args: CancelArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut cl = client(&args.coordinator).await?;
        let r = cl
            .cancel(pb::CancelRequest { sweep: args.sweep.clone().unwrap_or_default() })
            .await
            .map_err(status_error)?
            .into_inner();
        println!(
            "sweep `{}` cancelled: {} trials left unfinished (finished ones are kept; submit the sweep again to resume)",
            r.sweep, r.unfinished
        );
        Ok(exit::OK)
    })
}
