//! Running one leased trial to its report (after Ballista's `run_received_task`): read the
//! lease, take its GPUs, run it on the rayon pool or as a child process, give the GPUs back, and
//! queue the report unless the lease was revoked meanwhile.

use crate::WorkerStats;
use crate::command::{self, CommandEnv};
use crate::executor::{execute, execute_in};
use crate::held::Held;
use crate::reporter::ReportQueue;
use kappa_core::{AttemptOutcome, AttemptRef, AttemptReport, FailureClass, Lease, TaskSpec, WorkerId};
use kappa_sim::Cancel;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

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
    /// Where trial directories are (training's checkpoints between rungs).
    pub(crate) trials: Option<crate::TrialDirs>,
    pub(crate) backend: Option<kappa_core::task::Backend>,
    /// The worker is stopping: command trials get SIGTERM, and what it stops is preempted.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
    /// How long its recent trials ran (a moving average, microseconds; `u64::MAX`: none yet).
    pub(crate) recent_us: Arc<AtomicU64>,
    /// Trials leased ahead of the free slots, in lease order: each slot that finishes a trial
    /// runs the next one.
    pub(crate) ahead: Arc<Mutex<VecDeque<Queued>>>,
}

/// A trial leased ahead, waiting for a slot.
pub(crate) struct Queued {
    since: Instant,
    worker: WorkerId,
    trial: Trial,
}

/// Leasing ahead: while trials take this little time, a worker leases enough of them at once to
/// keep each slot busy for about this long, so a lease call and a report flush per batch, not
/// per trial, bound how fast trials go; slow trials are never leased ahead (they would wait on
/// one worker while another is idle).
const AHEAD_WINDOW_US: u64 = 100_000;
/// Most trials leased ahead per slot.
const AHEAD_PER_SLOT: u64 = 255;
/// A trial leased ahead that waited this long for a slot (the one before it ran long) is handed
/// back, for another worker to run.
pub(crate) const AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    fn report(&self, worker: WorkerId, attempt: AttemptRef, outcome: AttemptOutcome, duration_s: f64) {
        let AttemptRef { trial: id, attempt } = attempt;
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
                self.refuse(worker, lease.attempt_ref(), format!("this worker cannot read the task: {e}"));
                return None;
            }
        };
        let need = lease.gpus as usize;
        let gpus = match self.gpu_pool.lock() {
            Ok(mut p) if p.len() >= need => p.drain(..need).collect(),
            _ => {
                let error = format!("the trial needs {need} GPU(s) and this worker has none free");
                self.refuse(worker, lease.attempt_ref(), error);
                return None;
            }
        };
        let cancel = Cancel::new();
        self.held.insert(lease.attempt_ref(), cancel.clone());
        Some(Trial { lease, task, gpus, cancel })
    }

    /// Fails an attempt this worker cannot run, with the reason.
    pub(crate) fn refuse(&self, worker: WorkerId, attempt: AttemptRef, error: String) {
        tracing::error!(trial = %attempt.trial, attempt = attempt.attempt, error = %error, "cannot run the trial");
        self.report(worker, attempt, AttemptOutcome::Failed { error, class: FailureClass::Error }, 0.0);
    }

    /// How many trials to lease beyond `free` free slots (see [`AHEAD_WINDOW_US`]), at most
    /// `cap` in all.
    pub(crate) fn lease_ahead(&self, free: usize, cap: usize) -> usize {
        let recent = self.recent_us.load(Ordering::Relaxed);
        if recent == u64::MAX || self.draining.load(Ordering::Relaxed) {
            return 0;
        }
        let per_slot = (AHEAD_WINDOW_US / recent.max(1)).min(AHEAD_PER_SLOT) as usize;
        // Trials leased ahead earlier and still waiting for a slot count against the window.
        (free * per_slot).saturating_sub(self.queued()).min(cap.saturating_sub(free))
    }

    /// Forgets how long recent trials took (the worker went idle).
    pub(crate) fn forget_durations(&self) {
        self.recent_us.store(u64::MAX, Ordering::Relaxed);
    }

    /// Trials leased ahead and waiting for a slot.
    pub(crate) fn queued(&self) -> usize {
        self.ahead.lock().map_or(0, |q| q.len())
    }

    /// Queues a trial leased ahead of the free slots (as session `worker`).
    pub(crate) fn queue(&self, worker: WorkerId, trial: Trial) {
        if let Ok(mut q) = self.ahead.lock() {
            q.push_back(Queued { since: Instant::now(), worker, trial });
        }
    }

    /// Hands back the trials leased ahead that waited longer than `limit` for a slot (every one
    /// with zero): reported as preempted, they are pending again at once for any worker.
    pub(crate) fn hand_back_queued(&self, limit: std::time::Duration, why: &str) -> usize {
        let stale: Vec<Queued> = match self.ahead.lock() {
            Ok(mut q) => {
                // The oldest are at the front.
                let stale = q.iter().take_while(|t| t.since.elapsed() >= limit).count();
                q.drain(..stale).collect()
            }
            Err(_) => Vec::new(),
        };
        for t in &stale {
            let key = t.trial.lease.attempt_ref();
            let still_held = self.held.release(key);
            self.return_gpus(&t.trial);
            if still_held {
                self.report(t.worker, key, AttemptOutcome::Preempted { reason: why.to_string() }, 0.0);
            }
        }
        stale.len()
    }

    /// Runs `trial` to its end holding the slot `permit`, then, in the same slot, the trials
    /// leased ahead, in order, until none is left; queues each report as its session
    /// (nothing when it was revoked or cancelled).
    pub(crate) async fn run(self, worker: WorkerId, trial: Trial, permit: OwnedSemaphorePermit) {
        self.run_one(worker, trial).await;
        while let Some((worker, trial)) = self.next_queued() {
            self.run_one(worker, trial).await;
        }
        drop(permit);
    }

    /// The next trial leased ahead that is still this worker's to run: one whose lease was
    /// revoked meanwhile is dropped; a stopping worker hands the rest back instead.
    pub(crate) fn next_queued(&self) -> Option<(WorkerId, Trial)> {
        if self.draining.load(Ordering::Relaxed) {
            self.hand_back_queued(std::time::Duration::ZERO, "its worker was stopping before it started it");
            return None;
        }
        loop {
            let t = self.ahead.lock().ok()?.pop_front()?;
            if self.held.contains(t.trial.lease.attempt_ref()) {
                return Some((t.worker, t.trial));
            }
            self.return_gpus(&t.trial);
        }
    }

    /// Puts the GPUs `trial` was handed back in the pool.
    fn return_gpus(&self, trial: &Trial) {
        if let Ok(mut pool) = self.gpu_pool.lock() {
            pool.extend(&trial.gpus);
        }
    }

    async fn run_one(&self, worker: WorkerId, trial: Trial) {
        let lease = &trial.lease;
        let key = lease.attempt_ref();
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
            _ => {
                let dir = match &*trial.task {
                    TaskSpec::Train(_) => self.trials.as_ref().and_then(|t| t.path(lease).ok()),
                    _ => None,
                };
                run_on_pool(&trial, cancel, self.backend, dir).await
            }
        };
        self.return_gpus(&trial);
        let took = started.elapsed().as_micros().min(u128::from(u64::MAX - 1)) as u64;
        let _ = self.recent_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
            Some(if r == u64::MAX { took } else { (r * 7 + took) / 8 })
        });
        let still_held = self.held.release(key);
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
    }
}

/// Runs a simulation or training trial on the rayon pool; `None` when it was cancelled.
/// Simulations run on the worker's `backend` (or the task's), on the trial's first GPU if it was
/// handed one.
async fn run_on_pool(
    trial: &Trial,
    cancel: Cancel,
    backend: Option<kappa_core::task::Backend>,
    dir: Option<std::path::PathBuf>,
) -> Option<AttemptOutcome> {
    let opts = kappa_sim::RunOptions {
        backend,
        gpu: trial.gpus.first().copied(),
        stop_samples: trial.lease.stop.map(|s| s.samples),
    };
    if let TaskSpec::Noop { sleep_ms: 0 } = &*trial.task {
        // Nothing to compute: a hand-off to the pool would cost more than the trial.
        return execute(&trial.task, &trial.lease.params.hyper, trial.lease.id, &cancel, &opts);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (task, params, id, c) = (trial.task.clone(), trial.lease.params.clone(), trial.lease.id, cancel.clone());
    rayon::spawn(move || {
        let _ = tx.send(execute_in(&task, &params.hyper, id, &c, &opts, dir));
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

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::TrialId;

    fn env(recent_us: u64, queued: usize) -> TrialEnv {
        let (reports, _outbox) = ReportQueue::new();
        TrialEnv {
            held: Held::default(),
            reports,
            stats: Arc::default(),
            gpu_pool: Arc::default(),
            commands: None,
            trials: None,
            backend: None,
            draining: Arc::default(),
            recent_us: Arc::new(AtomicU64::new(recent_us)),
            ahead: Arc::default(),
        }
        .with_queued(queued)
    }

    impl TrialEnv {
        fn with_queued(self, n: usize) -> TrialEnv {
            let lease = Lease {
                id: TrialId(1),
                sweep: Arc::from("s"),
                attempt: 1,
                params: kappa_core::Params::from(kappa_core::Hyperparams::defaults()),
                task: Arc::from("{}"),
                timeout: None,
                gpus: 0,
                stop: None,
            };
            let trial = || Trial {
                lease: lease.clone(),
                task: Arc::new(TaskSpec::Noop { sleep_ms: 0 }),
                gpus: Vec::new(),
                cancel: Cancel::new(),
            };
            for _ in 0..n {
                self.queue(WorkerId(1), trial());
            }
            self
        }
    }

    #[test]
    fn only_short_trials_are_leased_ahead_and_only_up_to_a_window_per_slot() {
        // Nothing known yet, or trials longer than the window: only the free slots.
        assert_eq!(env(u64::MAX, 0).lease_ahead(4, 1024), 0);
        assert_eq!(env(200_000, 0).lease_ahead(4, 1024), 0);
        // 10 ms trials: 10 more per free slot; noop-like ones: the per-slot cap, within the call's.
        assert_eq!(env(10_000, 0).lease_ahead(4, 1024), 40);
        assert_eq!(env(1, 0).lease_ahead(2, 1024), 2 * AHEAD_PER_SLOT as usize);
        assert_eq!(env(1, 0).lease_ahead(8, 1024), 1024 - 8);
        // Trials already waiting for a slot count against the window.
        assert_eq!(env(10_000, 30).lease_ahead(4, 1024), 10);
        let draining = env(1, 0);
        draining.draining.store(true, Ordering::Relaxed);
        assert_eq!(draining.lease_ahead(4, 1024), 0);
    }
}
