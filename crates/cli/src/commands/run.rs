//! `kappa run`: a coordinator and N workers in this process, talking real gRPC on 127.0.0.1.

use crate::args::{announce_backend, backend, command_workdir, parse_gpus};
use crate::exit::{self, invalid};
use crate::signal::interrupted;
use crate::{progress, summary, sweep_file};
use anyhow::{Context, anyhow};
use kappa_coordinator::{Coordinator, CoordinatorConfig, PlanRequest, ServeOptions, Server, SweepRunner};
use kappa_core::OnNewVersion;
use kappa_store::Store;
use kappa_worker::WorkerConfig;
use std::path::PathBuf;
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
    #[arg(long, value_name = "auto|cpu|cuda", env = "KAPPA_BACKEND", value_parser = backend)]
    backend: Option<kappa_core::task::Backend>,
    /// Working directory of `kind = "command"` trials (their logs go to STATE/logs/).
    #[arg(long, value_name = "DIR", default_value = ".", env = "KAPPA_WORKDIR")]
    workdir: PathBuf,
    /// Plan the sweep afresh when its state directory was planned by a kappa that computes it
    /// with other code (a simulator or trainer version): every trial runs again, and the old
    /// results stay in the store outside the plan. Without it such a run is refused; command
    /// sweeps never need it.
    #[arg(long)]
    rerun_on_new_version: bool,
    /// Serve the web dashboard while the sweep runs (progress, trials, curves, the report, live),
    /// on 127.0.0.1 on a free port, or on ADDR with `--ui=ADDR` (the URL is printed). It stays up
    /// after the sweep finishes, until Ctrl-C. Read-only.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = crate::ui::DEFAULT_ADDR
    )]
    ui: Option<String>,
}

/// How the local workers run their trials.
struct Workers {
    count: u32,
    commands: kappa_worker::CommandEnv,
    gpus: Vec<u32>,
    backend: Option<kappa_core::task::Backend>,
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    crate::logging::init_quiet();
    let (sweep, text) = sweep_file::load(&args.file)?;
    // Bad flags are refused before the state directory is touched.
    let workdir = command_workdir(&args.workdir)?;
    let gpus = parse_gpus(&args.gpus)?;
    let state = args.state.clone().unwrap_or_else(|| PathBuf::from("runs").join(&sweep.name));
    if state.exists() && !state.is_dir() {
        return Err(invalid(format!("--state {} exists and is not a directory", state.display())));
    }
    // The workers run in this process and die with it: what a dead run left running is re-run
    // at once, not waited for.
    let cfg = CoordinatorConfig { adopt_in_flight: false, ..CoordinatorConfig::default() };
    let coordinator = Arc::new(Coordinator::new(None, cfg, kappa_worker::code_version));
    let on_new = if args.rerun_on_new_version { OnNewVersion::Rerun } else { OnNewVersion::Refuse };
    let file = args.file.display().to_string();
    let req = PlanRequest { dir: &state, sweep: &sweep, sweep_text: &text, file: &file, on_new };
    let (runner, sync) = coordinator.open(req).map_err(|e| match e {
        // The user chooses: this binary, the one that planned it, or a fresh plan.
        kappa_coordinator::CoordinatorError::NewVersion { .. } => invalid(e.to_string()),
        e => e.into(),
    })?;
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
    let count = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A local sweep file is the user's own: its commands run, in --workdir, logs and trial
    // directories in the state directory.
    let commands = kappa_worker::CommandEnv {
        workdir,
        logs: std::path::absolute(state.join("logs"))?,
        host: "localhost".into(),
        trial_root: std::path::absolute(state.join("trials"))?,
        per_sweep: false,
    };
    announce_backend(args.backend);
    let workers = Workers { count, commands, gpus, backend: args.backend };
    let ui = match &args.ui {
        Some(addr) => {
            let ui = runtime.block_on(crate::ui::start(
                coordinator.clone(),
                addr,
                Arc::new(kappa_coordinator::Access::open()),
            ))?;
            // The line a user (or a test) looks for.
            eprintln!("dashboard on {}", ui.url());
            Some(ui)
        }
        None => None,
    };
    let ended = runtime.block_on(drive(coordinator.clone(), runner, workers, args.quiet));
    // Whatever `drive` did not get to (it failed early): commit what is queued.
    coordinator.shutdown().context("could not save every result")?;
    let ended = ended?;
    let store = Store::open(&state)?;
    summary::print_run_summary(&store, &sweep, sync.reused, started.elapsed())?;
    let counts = store.counts()?;
    if let Some(ui) = ui {
        // The dashboard outlives the sweep: its results are what people come to look at.
        if matches!(ended, Ended::Finished) {
            eprintln!("the dashboard stays up on {} until Ctrl-C", ui.url());
            runtime.block_on(interrupted());
        }
        runtime.block_on(ui.stop(Duration::from_secs(2)));
    }
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
    coordinator: Arc<Coordinator>,
    runner: SweepRunner,
    workers: Workers,
    quiet: bool,
) -> anyhow::Result<Ended> {
    if runner.is_finished() {
        return Ok(Ended::Finished);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1")?;
    let server = Server::start(listener, coordinator, ServeOptions::default()).await?;
    let url = format!("http://{}", server.addr());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pool = tokio::task::JoinSet::new();
    for i in 0..workers.count {
        let cfg = WorkerConfig {
            coordinator: url.clone(),
            name: format!("local-{i}"),
            slots: 1,
            lease_wait: Duration::from_secs(5),
            exit_when_finished: true,
            token: None,
            tls_ca: None,
            commands: Some(workers.commands.clone()),
            trials: Some(workers.commands.trial_dirs()),
            gpus: workers.gpus.iter().copied().skip(i as usize).step_by(workers.count as usize).collect(),
            backend: workers.backend,
            code_versions: kappa_worker::code_versions(),
            drain: Duration::ZERO,
        };
        pool.spawn(kappa_worker::run(cfg, stop_rx.clone()));
    }
    let mut display =
        (!quiet).then(|| tokio::spawn(progress::follow(url.clone(), None, None, String::new(), stop_rx.clone())));
    let ended = {
        let finished = runner.finished();
        let interrupt = interrupted();
        let write_failed = server.write_failed();
        tokio::pin!(finished, interrupt, write_failed);
        loop {
            tokio::select! {
                _ = &mut finished => break Ok(Ended::Finished),
                _ = &mut interrupt => break Ok(Ended::Interrupted),
                // Results that cannot be written must stop the run, not pile up in memory.
                f = &mut write_failed => break Err(anyhow!("writing results failed: {f}")),
                Some(joined) = pool.join_next() => {
                    match joined {
                        Ok(Ok(_)) if pool.is_empty() && !runner.is_finished() => {
                            break Err(anyhow!("every worker stopped before the sweep finished"));
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break Err(anyhow!("a worker stopped: {e}")),
                        Err(e) => break Err(anyhow!("a worker crashed: {e}")),
                    }
                }
            }
        }
    };
    // A second Ctrl-C while shutting down leaves at once; the store is consistent at any instant.
    let second = tokio::spawn(async {
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
    // Whatever a worker still held when it stopped goes back to pending; every result is saved.
    server.stop(Duration::from_secs(5)).await.context("could not save every result")?;
    // Shut down: a Ctrl-C from now on is the caller's (it ends a lingering dashboard).
    second.abort();
    ended
}
