//! kappa-worker: pulls trials from a coordinator, runs them, reports how they ended.
//!
//! The loop (after Ballista's executor poll loop): register, then lease as many trials as there
//! are free slots, run each on the rayon pool (or as a child process), and report it. A
//! heartbeat task renews the leases held; a lease the coordinator revokes is cancelled here. A
//! panic inside a simulation is a failed trial, never a dead worker.
//!
//! Module map: `session` (connecting, registering, the lease loop, draining), `trial` (running
//! one leased trial to its report), `held` (the leases held and their trials' cancel switches),
//! `reporter` (reports in batches, and the heartbeat),
//! `executor` (a task kind → the code that runs it), `command` (`kind = "command"` child
//! processes).

#![warn(missing_docs)]

mod command;
mod executor;
mod held;
mod reporter;
mod session;
mod trial;

pub use command::CommandEnv;
pub use executor::execute;

use kappa_core::{CodeVersion, TaskSpec};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The version of the code that computes `task`'s results, part of its trial ids: simulations
/// are `kappa_sim::VERSION`, training `kappa_train::VERSION`; commands and noops have none (no
/// code of kappa's computes them, so an upgrade never re-runs them).
pub fn code_version(task: &TaskSpec) -> CodeVersion {
    match task {
        TaskSpec::Optimizer(_) | TaskSpec::Sde(_) => CodeVersion::code(sim_version()),
        TaskSpec::Train(_) => CodeVersion::code(kappa_train::VERSION),
        TaskSpec::Command(_) | TaskSpec::Noop { .. } => CodeVersion::NONE,
    }
}

/// The code versions this build computes with, as a worker registers them.
pub fn code_versions() -> Vec<String> {
    vec![sim_version().to_string(), kappa_train::VERSION.to_string()]
}

/// Names the simulator's version as something else, for tests of upgrades and mixed-version
/// clusters only (it changes nothing that is computed, only what this process claims).
const TEST_SIM_VERSION: &str = "KAPPA_TEST_SIM_VERSION";

/// `kappa_sim::VERSION`, or what `KAPPA_TEST_SIM_VERSION` names.
fn sim_version() -> &'static str {
    static VERSION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match std::env::var(TEST_SIM_VERSION) {
        Ok(v) if !v.is_empty() => {
            tracing::warn!(
                variable = TEST_SIM_VERSION,
                version = %v,
                "this process claims a simulator version it does not have (tests only)"
            );
            Box::leak(v.into_boxed_str())
        }
        _ => kappa_sim::VERSION,
    })
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:7070`.
    pub coordinator: String,
    /// Name shown in the store and logs.
    pub name: String,
    /// Trials run at once.
    pub slots: usize,
    /// How long one lease call waits for work.
    pub lease_wait: Duration,
    /// Stop when the coordinator says the sweep is finished (local runs); a cluster worker keeps
    /// polling for the next sweep.
    pub exit_when_finished: bool,
    /// Bearer token for the coordinator, if it requires one.
    pub token: Option<String>,
    /// PEM certificate authority to trust for an `https://` coordinator.
    pub tls_ca: Option<Vec<u8>>,
    /// Run `kind = "command"` trials (refused otherwise), in this working directory.
    pub commands: Option<CommandEnv>,
    /// GPU device ordinals this worker may hand to trials.
    pub gpus: Vec<u32>,
    /// Where simulations run, over the task's `backend` (`--backend`); `None` follows the task.
    pub backend: Option<kappa_core::task::Backend>,
    /// The code versions it computes with ([`code_versions`]): it is leased only trials planned
    /// with one of them (and trials no code of kappa's computes).
    pub code_versions: Vec<String>,
    /// On shutdown, stop leasing, pass SIGTERM to command trials, and let running trials end
    /// for up to this long before stopping the rest (zero: at once); stopped attempts are
    /// reported as preempted.
    pub drain: Duration,
}

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached, or its address is malformed.
    #[error(transparent)]
    Connect(#[from] kappa_proto::ConnectError),
    /// The coordinator refused the worker.
    #[error("coordinator {0}: {1}")]
    Rpc(String, tonic::Status),
}

/// What a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts reported.
    pub reported: u64,
    /// Attempts abandoned (revoked or cancelled at shutdown).
    pub abandoned: u64,
}

/// Runs a worker until `shutdown` turns true or (with `exit_when_finished`) the sweep finishes.
/// A coordinator that goes away (restart, network) is reconnected to with backoff, forever for a
/// cluster worker; a local worker (`exit_when_finished`) gives up if the first connection fails.
pub async fn run(cfg: WorkerConfig, mut shutdown: watch::Receiver<bool>) -> Result<WorkerStats, WorkerError> {
    let stats = Arc::new(Mutex::new(WorkerStats::default()));
    let mut local = session::Local::new(&cfg, stats.clone());
    let result = session::serve(&cfg, &mut shutdown, &mut local).await;
    // Whatever still runs (the worker is refused or stopping) is abandoned.
    local.abandon().await;
    result?;
    let stats = stats.lock().map(|s| *s).unwrap_or_default();
    Ok(stats)
}
