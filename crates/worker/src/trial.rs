//! Running one leased trial to its report (after Ballista's `run_received_task`): read the
//! lease, take its GPUs, run it on the rayon pool or as a child process, give the GPUs back, and
//! queue the report unless the lease was revoked meanwhile.

use crate::WorkerStats;
use crate::command::{self, CommandEnv};
use crate::executor::execute;
use crate::reporter::ReportQueue;
use kappa_core::{AttemptOutcome, AttemptReport, FailureClass, Lease, TaskSpec, TrialId, WorkerId};
use kappa_sim::Cancel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

/// The leases a worker holds, each with the cancel switch of its running trial.
pub(crate) type Held = Arc<Mutex<HashMap<(TrialId, u32), Cancel>>>;

/// The GPUs not in use by a trial.
pub(crate) type GpuPool = Arc<Mutex<Vec<u32>>>;

/// What every running trial of a worker shares: the leases held, the report queue, the GPUs, and
/// how commands and simulations run here.
#[derive(Clone)]
pub(crate) struct TrialEnv {
    pub(crate) held: Held,
    pub(crate) reports: ReportQueue,
    pub(crate) stats: Arc<Mutex<WorkerStats>>,
    pub(crate) gpu_pool: GpuPool,
    pub(crate) commands: Option<CommandEnv>,
    pub(crate) backend: Option<kappa_core::task::Backend>,
    /// The worker is stopping: command trials get SIGTERM, and what it stops is preempted.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
}

/// A leased trial, ready to run.
pub(crate) struct Trial {
    pub(crate) lease: Lease,
    pub(crate) task: Arc<TaskSpec>,
    /// GPU ordinals taken from the pool for this trial (returned when it ends).
    pub(crate) gpus: Vec<u32>,
    /// Its cancel switch, in the held leases from the moment it is prepared (so a revocation or
    /// a shutdown reaches it even before it starts).
    cancel: Cancel,
}

/// The tasks of recent leases, parsed once each: a sweep has one task, or one per combination
/// of its task axes.
#[derive(Default)]
pub(crate) struct TaskCache(HashMap<Arc<str>, Arc<TaskSpec>>);

impl TaskCache {
    /// Most tasks kept (a sweep with more task variants parses some twice).
    const MAX: usize = 256;
}

impl TrialEnv {
    /// Queues a report as session `worker` (the reporter sends it as whichever session is current).
    fn report(&self, worker: WorkerId, (id, attempt): (TrialId, u32), outcome: AttemptOutcome, duration_s: f64) {
        self.reports.push(AttemptReport { worker, id, attempt, outcome, duration_s });
    }

    /// Makes a lease ready to run: its task read, its GPUs taken, and it counted as held. A lease
    /// this worker cannot run fails its attempt with the reason (rather than letting its lease
    /// expire).
    pub(crate) fn prepare(&self, worker: WorkerId, lease: Lease, tasks: &mut TaskCache) -> Option<Trial> {
        let task = match tasks.0.get(&lease.task) {
            Some(task) => Ok(task.clone()),
            None => serde_json::from_str::<TaskSpec>(&lease.task).map(Arc::new),
        };
        let task = match task {
            Ok(task) => {
                if tasks.0.len() >= TaskCache::MAX {
                    tasks.0.clear();
                }
                tasks.0.insert(lease.task.clone(), task.clone());
                task
            }
            Err(e) => {
                self.refuse(worker, (lease.id, lease.attempt), format!("this worker cannot read the task: {e}"));
                return None;
            }
        };
        let need = lease.gpus as usize;
        let gpus = match self.gpu_pool.lock() {
            Ok(mut p) if p.len() >= need => p.drain(..need).collect(),
            _ => {
                let error = format!("the trial needs {need} GPU(s) and this worker has none free");
                self.refuse(worker, (lease.id, lease.attempt), error);
                return None;
            }
        };
        let cancel = Cancel::new();
        if let Ok(mut h) = self.held.lock() {
            h.insert((lease.id, lease.attempt), cancel.clone());
        }
        Some(Trial { lease, task, gpus, cancel })
    }

    /// Fails an attempt this worker cannot run, with the reason.
    pub(crate) fn refuse(&self, worker: WorkerId, attempt: (TrialId, u32), error: String) {
        tracing::error!(trial = %attempt.0, attempt = attempt.1, error = %error, "cannot run the trial");
        self.report(worker, attempt, AttemptOutcome::Failed { error, class: FailureClass::Error }, 0.0);
    }

    /// Runs `trial` to its end holding the slot `permit`, and queues its report as session
    /// `worker` (nothing when it was revoked or cancelled).
    pub(crate) async fn run(self, worker: WorkerId, trial: Trial, permit: OwnedSemaphorePermit) {
        let lease = &trial.lease;
        let key = (lease.id, lease.attempt);
        let cancel = trial.cancel.clone();
        let started = Instant::now();
        let outcome = match &*trial.task {
            TaskSpec::Command(task) => match &self.commands {
                Some(env) => command::run(env, task, lease, &trial.gpus, &cancel, &self.draining).await,
                None => Some(AttemptOutcome::Failed {
                    error: "this worker does not run commands (start it with --allow-commands)".into(),
                    class: FailureClass::Error,
                }),
            },
            _ => run_on_pool(&trial, cancel, self.backend).await,
        };
        if let Ok(mut pool) = self.gpu_pool.lock() {
            pool.extend(&trial.gpus);
        }
        let still_held = self.held.lock().map(|mut h| h.remove(&key).is_some()).unwrap_or(false);
        // Stopped by the worker's own shutdown while still its lease: handed back as preempted.
        let draining = self.draining.load(std::sync::atomic::Ordering::Relaxed);
        let outcome = match outcome {
            None if still_held && draining => Some(AttemptOutcome::Preempted {
                reason: "its worker was stopping and stopped it before it finished".into(),
            }),
            other => other,
        };
        // Not held any more means revoked: a report would be late.
        match outcome {
            Some(o) if still_held => {
                if let AttemptOutcome::Failed { error, class } = &o {
                    tracing::info!(
                        trial = %lease.id, attempt = lease.attempt, class = class.as_str(), error = %error,
                        "attempt failed"
                    );
                }
                self.report(worker, key, o, started.elapsed().as_secs_f64());
                if let Ok(mut s) = self.stats.lock() {
                    s.reported += 1;
                }
            }
            _ => {
                if let Ok(mut s) = self.stats.lock() {
                    s.abandoned += 1;
                }
            }
        }
        drop(permit);
    }
}

/// Runs a simulation or training trial on the rayon pool; `None` when it was cancelled.
/// Simulations run on the worker's `backend` (or the task's), on the trial's first GPU if it was
/// handed one.
async fn run_on_pool(
    trial: &Trial,
    cancel: Cancel,
    backend: Option<kappa_core::task::Backend>,
) -> Option<AttemptOutcome> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (task, params, id, c) = (trial.task.clone(), trial.lease.params.clone(), trial.lease.id, cancel.clone());
    let opts = kappa_sim::RunOptions { backend, gpu: trial.gpus.first().copied() };
    rayon::spawn(move || {
        let _ = tx.send(execute(&task, &params.hyper, id, &c, &opts));
    });
    let result = match trial.lease.timeout {
        Some(limit) => match tokio::time::timeout(limit, rx).await {
            Ok(r) => r,
            Err(_) => {
                cancel.cancel();
                return Some(AttemptOutcome::Failed {
                    error: format!("timed out after {:.1?}", limit),
                    class: FailureClass::Timeout,
                });
            }
        },
        None => rx.await,
    };
    result.ok().flatten()
}
