//! A worker's settings, the errors that stop it, and what it did.

use crate::CommandEnv;
use std::time::Duration;

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
    /// Where trial directories are, for training trials of successive halving (their
    /// checkpoints between rungs); `None`: the command trials' directories, and without those
    /// a training trial's every rung starts at step 0.
    pub trials: Option<crate::TrialDirs>,
    /// GPU device ordinals this worker may hand to trials.
    pub gpus: Vec<u32>,
    /// Where simulations run, over the task's `backend` (`--backend`); `None` follows the task.
    pub backend: Option<kappa_core::task::Backend>,
    /// The code versions it computes with ([`code_versions`](crate::code_versions)): it is leased only trials planned
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
