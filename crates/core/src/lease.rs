//! What passes between the coordinator and a worker about one attempt: the [`Lease`] that hands
//! it out and the [`AttemptReport`] that ends it. kappa-proto converts both to and from the wire.

use crate::id::TrialId;
use crate::params::Params;
use crate::sched::WorkerId;
use crate::trial::AttemptOutcome;
use std::sync::Arc;
use std::time::Duration;

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
