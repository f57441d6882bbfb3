//! `kappa worker`: pulls trials from a coordinator and runs them until Ctrl-C or SIGTERM.

use crate::args::{CoordinatorArg, announce_backend, backend, command_workdir, duration, parse_gpus};
use crate::exit::{self, invalid};
use crate::logging::{self, LogArgs};
use crate::signal::interrupted;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

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
    #[arg(long, value_name = "auto|cpu|cuda", env = "KAPPA_BACKEND", value_parser = backend)]
    backend: Option<kappa_core::task::Backend>,
    /// Run `kind = "command"` trials (programs named by sweep files) as child processes.
    /// Without it such trials are refused with that reason.
    #[arg(long, env = "KAPPA_ALLOW_COMMANDS", value_parser = clap::builder::BoolishValueParser::new())]
    allow_commands: bool,
    /// Working directory of command trials; their per-attempt logs go to `kappa-logs/` in it.
    #[arg(long, value_name = "DIR", default_value = ".", env = "KAPPA_WORKDIR")]
    workdir: PathBuf,
    /// Where trial directories go: `DIR/<sweep>/<trial id>/`, kept across attempts (a command
    /// trial's `KAPPA_TRIAL_DIR`, where it checkpoints; a training trial's checkpoint between
    /// rungs of successive halving). On a cluster, point it at storage every node shares, so an
    /// attempt on another node resumes from the checkpoint. Default: `kappa-trials/` in the
    /// working directory.
    #[arg(long, value_name = "DIR", env = "KAPPA_TRIAL_ROOT")]
    trial_root: Option<PathBuf>,
    /// On SIGTERM/Ctrl-C, stop leasing, pass SIGTERM to command trials (time to checkpoint) and
    /// let running trials end for up to this long before stopping the rest (e.g. `90s`; default:
    /// at once, with 3 s for a command to exit). What it stops is handed back as preempted.
    #[arg(long, value_name = "DURATION", value_parser = duration, env = "KAPPA_DRAIN_TIMEOUT")]
    drain_timeout: Option<Duration>,
    #[command(flatten)]
    log: LogArgs,
}

/// `kappa worker`: pulls trials until Ctrl-C or SIGTERM, then hands its leases back.
pub fn worker(args: WorkerArgs) -> anyhow::Result<u8> {
    logging::init(&args.log)?;
    if args.slots == 0 {
        return Err(invalid("--slots must be at least 1"));
    }
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).ok();
    let name =
        args.name.clone().unwrap_or_else(|| format!("{}-{}", host.as_deref().unwrap_or("worker"), std::process::id()));
    let trial_root = match &args.trial_root {
        Some(dir) => std::path::absolute(dir).map_err(|e| invalid(format!("--trial-root {}: {e}", dir.display())))?,
        // (Not checked here: a worker without commands may be started anywhere.)
        None => std::path::absolute(&args.workdir)
            .map_err(|e| invalid(format!("--workdir {}: {e}", args.workdir.display())))?
            .join("kappa-trials"),
    };
    let cfg = kappa_worker::WorkerConfig {
        coordinator: args.coordinator.coordinator.clone(),
        name,
        slots: args.slots,
        lease_wait: Duration::from_secs(10),
        exit_when_finished: false,
        token: args.coordinator.token.token()?,
        tls_ca: args.coordinator.token.ca()?,
        commands: if args.allow_commands {
            let workdir = command_workdir(&args.workdir)?;
            let host = host.unwrap_or_else(|| "localhost".into());
            Some(kappa_worker::CommandEnv {
                logs: workdir.join("kappa-logs"),
                workdir,
                host,
                trial_root: trial_root.clone(),
                per_sweep: true,
            })
        } else {
            None
        },
        trials: Some(kappa_worker::TrialDirs { root: trial_root, per_sweep: true }),
        gpus: parse_gpus(&args.gpus)?,
        backend: args.backend,
        code_versions: kappa_worker::code_versions(),
        drain: args.drain_timeout.unwrap_or_default(),
    };
    announce_backend(args.backend);
    if !cfg.gpus.is_empty() {
        logging::note(&format!("worker GPUs: {:?}", cfg.gpus));
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
    tracing::info!(reported = stats.reported, handed_back = stats.abandoned, "worker stopped");
    logging::note(&format!("worker stopped: {} attempts reported, {} handed back", stats.reported, stats.abandoned));
    Ok(exit::OK)
}
