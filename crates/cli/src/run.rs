//! `kappa run`: a coordinator and N workers in this process, talking real gRPC on 127.0.0.1.

use crate::plan::load_sweep;
use crate::{exit, progress, summary};
use anyhow::{Context, anyhow};
use kappa_coordinator::{Coordinator, CoordinatorConfig, Hub};
use kappa_core::Plan;
use kappa_store::Store;
use kappa_worker::WorkerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Arguments of `kappa run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    /// State directory (default: runs/NAME, NAME being the sweep name).
    #[arg(long, value_name = "DIR", env = "KAPPA_STATE")]
    state: Option<PathBuf>,
    /// Workers started in this process (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
    /// Print no progress, only the summary.
    #[arg(long, short)]
    quiet: bool,
    /// GPUs for trials that ask for them: `auto`, a count N, or a list `0,2` (shared out among
    /// the workers).
    #[arg(long, value_name = "auto|N|LIST", default_value = "auto", env = "KAPPA_GPUS")]
    gpus: String,
    /// Where simulations run, over the task's `backend`: `auto`, `cpu` or `cuda` (default: the
    /// task's).
    #[arg(long, value_name = "auto|cpu|cuda", env = "KAPPA_BACKEND", value_parser = crate::cluster::backend_arg)]
    backend: Option<kappa_core::task::Backend>,
    /// Working directory of `kind = "command"` trials (their logs go to STATE/logs/).
    #[arg(long, value_name = "DIR", default_value = ".", env = "KAPPA_WORKDIR")]
    workdir: PathBuf,
}

/// Takes the exclusive lock of a state directory, so two runs never write one store.
pub fn lock_state(dir: &Path) -> anyhow::Result<kappa_store::StateLock> {
    Ok(kappa_store::StateLock::acquire(dir)?)
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let (sweep, text) = load_sweep(&args.file)?;
    // Bad flags are refused before the state directory is touched.
    let workdir = crate::cluster::command_workdir(&args.workdir)?;
    let gpus = crate::cluster::parse_gpus(&args.gpus)?;
    let state = args.state.clone().unwrap_or_else(|| PathBuf::from("runs").join(&sweep.name));
    if state.exists() && !state.is_dir() {
        return Err(crate::invalid(format!("--state {} exists and is not a directory", state.display())));
    }
    let _lock = lock_state(&state)?;
    let mut store = Store::create(&state)?;
    let plan = Plan::new(&sweep, kappa_worker::code_version(&sweep.task));
    let sync = store.sync_plan(
        &sweep.name,
        &args.file.display().to_string(),
        &text,
        &plan.task_json().to_string(),
        plan.trials(),
    )?;
    if !args.quiet {
        eprintln!(
            "sweep `{}`: {} trials ({} new, {} finished earlier and reused, {} interrupted and re-queued); state in {}",
            sweep.name,
            sync.total,
            sync.new,
            sync.reused,
            sync.requeued,
            state.display()
        );
    }
    let cfg = CoordinatorConfig::default();
    let hub = Arc::new(Hub::new(None, cfg, kappa_worker::code_version));
    let coordinator = hub.add(store, &sweep, &text)?;
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A local sweep file is the user's own: its commands run, in --workdir, logs in the state.
    let commands =
        kappa_worker::CommandEnv { workdir, logs: std::path::absolute(state.join("logs"))?, host: "localhost".into() };
    crate::cluster::announce_backend(args.backend);
    let ended =
        runtime.block_on(drive(hub.clone(), coordinator.clone(), workers, args.quiet, (commands, gpus, args.backend)));
    hub.shutdown().context("could not save every result")?;
    let ended = ended?;
    let store = Store::open(&state)?;
    summary::print_run_summary(&store, &sweep, sync.reused, started.elapsed())?;
    let counts = store.counts()?;
    Ok(match ended {
        Ended::Interrupted => {
            eprintln!(
                "interrupted: run the same command again to resume ({} of {} trials done)",
                counts.done(),
                counts.total
            );
            exit::INTERRUPTED
        }
        Ended::Finished if counts.failed > 0 => exit::TRIALS_FAILED,
        Ended::Finished => exit::OK,
    })
}

enum Ended {
    Finished,
    Interrupted,
}

async fn drive(
    hub: Arc<Hub>,
    coordinator: Coordinator,
    workers: u32,
    quiet: bool,
    (commands, gpus, backend): (kappa_worker::CommandEnv, Vec<u32>, Option<kappa_core::task::Backend>),
) -> anyhow::Result<Ended> {
    if coordinator.progress().finished {
        return Ok(Ended::Finished);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server =
        tokio::spawn(kappa_coordinator::serve(listener, hub.clone(), kappa_proto::Auth::default(), None, async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
    let mut pool = tokio::task::JoinSet::new();
    for i in 0..workers {
        let cfg = WorkerConfig {
            coordinator: url.clone(),
            name: format!("local-{i}"),
            slots: 1,
            lease_wait: Duration::from_secs(5),
            exit_when_finished: true,
            token: None,
            tls_ca: None,
            verbose: false,
            commands: Some(commands.clone()),
            gpus: gpus.iter().copied().skip(i as usize).step_by(workers as usize).collect(),
            backend,
            drain: Duration::ZERO,
        };
        pool.spawn(kappa_worker::run(cfg, stop_rx.clone()));
    }
    let mut display =
        (!quiet).then(|| tokio::spawn(progress::follow(url.clone(), None, None, String::new(), stop_rx.clone())));
    let finished = coordinator.finished();
    let interrupt = interrupted();
    tokio::pin!(finished, interrupt);
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let ended = loop {
        tokio::select! {
            _ = &mut finished => break Ok(Ended::Finished),
            _ = &mut interrupt => break Ok(Ended::Interrupted),
            _ = health.tick() => {
                // Results that cannot be written must stop the run, not pile up in memory.
                if let Some(f) = hub.write_failure() {
                    break Err(anyhow!("writing results failed: {f}"));
                }
            }
            Some(joined) = pool.join_next() => {
                match joined {
                    Ok(Ok(_)) if pool.is_empty() && !coordinator.progress().finished => {
                        break Err(anyhow!("every worker stopped before the sweep finished"));
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(anyhow!("a worker stopped: {e}")),
                    Err(e) => break Err(anyhow!("a worker crashed: {e}")),
                }
            }
        }
    };
    // A second Ctrl-C while shutting down leaves at once; the store is consistent at any instant.
    tokio::spawn(async {
        interrupted().await;
        eprintln!("interrupted again: exiting now");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    if let (Ok(Ended::Finished), Some(d)) = (&ended, display.as_mut()) {
        // Let the display show the final snapshot before everything stops.
        let _ = tokio::time::timeout(Duration::from_secs(2), d).await;
    }
    let _ = stop_tx.send(true);
    // Workers cancel their trials and hand their leases back.
    let drain = async { while pool.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain).await.is_err() {
        eprintln!("warning: workers did not stop within 30 s; their trials will be re-run on resume");
    }
    if let Some(d) = display
        && !d.is_finished()
    {
        let _ = d.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    // Whatever a worker still held when it stopped goes back to pending.
    hub.release_all();
    ended
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
