//! What passes between the coordinator and a worker about one attempt: the [`Lease`] that hands
//! it out, the [`AttemptReport`] that ends it, the [`AttemptRef`] that names it meanwhile
//! (renewed, revoked), and the [`WorkerId`] of its holder. kappa-proto converts them to and from
//! the wire.

use crate::id::TrialId;
use crate::params::Params;
use crate::trial::AttemptOutcome;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A registered worker, numbered by the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

impl WorkerId {
    /// The holder of a lease recovered after a coordinator restart: the worker that held it is
    /// not known yet. The first worker to renew or report that exact (trial, attempt) adopts it.
    pub const ORPHAN: WorkerId = WorkerId(0);
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// One attempt of one trial: what a held lease is renewed and revoked by, and what a report is
/// fenced by (only the current attempt's counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptRef {
    /// The trial.
    pub trial: TrialId,
    /// The attempt (1 for the first; attempt numbers only grow).
    pub attempt: u32,
}

impl AttemptRef {
    /// Attempt `attempt` of `trial`.
    pub fn new(trial: TrialId, attempt: u32) -> AttemptRef {
        AttemptRef { trial, attempt }
    }
}

impl fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} attempt {}", self.trial, self.attempt)
    }
}

/// One attempt of one trial, handed to a worker: what to run and under which limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The trial.
    pub id: TrialId,
    /// The sweep it belongs to (its name: where the trial's directory is).
    pub sweep: Arc<str>,
    /// Its attempt number (1 for the first; attempt numbers only grow).
    pub attempt: u32,
    /// Its hyperparameters.
    pub params: Params,
    /// The task, as the canonical JSON that trial ids hash and the store keeps (shared by every
    /// lease of a sweep; the worker parses it).
    pub task: Arc<str>,
    /// Wall-clock limit of the attempt (`execution.timeout`), enforced by the worker.
    pub timeout: Option<Duration>,
    /// GPUs the trial needs (`execution.resources.gpus`): the worker gives it that many of its
    /// free devices.
    pub gpus: u32,
    /// Under successive halving, the rung this attempt runs to (`None`: no halving).
    pub stop: Option<Stop>,
}

/// Where an attempt of successive halving stops: its rung's budget. The trial's configuration
/// (and id) is the one at the full budget: its record points and schedules are the full run's,
/// and it continues from where the rung before left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop {
    /// The rung (0: the first).
    pub rung: u32,
    /// Its budget in samples seen: the attempt stops at the last record point within it
    /// (a command gets it as `{samples}` and `KAPPA_SAMPLES`).
    pub samples: u64,
    /// The last rung: the whole budget (the trial succeeds there rather than stopping).
    pub last: bool,
}

impl Lease {
    /// The attempt it hands out.
    pub fn attempt_ref(&self) -> AttemptRef {
        AttemptRef::new(self.id, self.attempt)
    }
}

/// How an attempt ended, as the worker that ran it reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptReport {
    /// The worker, as the coordinator numbered it when it registered.
    pub worker: WorkerId,
    /// The trial.
    pub id: TrialId,
    /// The attempt reported: only the current lease's report counts.
    pub attempt: u32,
    /// What happened.
    pub outcome: AttemptOutcome,
    /// How long the attempt ran, as the worker measured it (seconds, finite and ≥ 0).
    pub duration_s: f64,
}
