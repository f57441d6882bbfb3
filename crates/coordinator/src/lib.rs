//! kappa-coordinator: the gRPC service that hands out trials and records their outcomes.
//!
//! One [`Coordinator`] owns the scheduler state (a [`kappa_core::Scheduler`] behind a mutex, held
//! only for in-memory updates) and the store writer. Every state change is applied in memory first
//! and then queued for the writer, which commits in batches; the database is the durable truth that
//! a restarted coordinator recovers from.

#![warn(missing_docs)]

mod hub;
pub mod metrics;
mod service;
mod writer;

pub use hub::{Hub, HubError, Leased, Submitted};
pub use service::serve;
pub use writer::StoreWriter;

use kappa_core::sched::{Disposition, Grant, ReportKind, Revoked};
use kappa_core::{
    AttemptOutcome, Counts, FailureClass, RetryPolicy, Scheduler, SchedulerConfig, TrialId, TrialStatus, WorkerId,
};
use kappa_proto::pb;
use kappa_store::{InFlight, ReportEffect, Store, StoreError, StoreOp, now_s};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Coordinator settings.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// How often workers renew their leases.
    pub heartbeat_interval: Duration,
    /// A lease not renewed for this long expires (default: 3 missed heartbeats).
    pub lease_timeout: Duration,
    /// Retries per failure class.
    pub retries: RetryPolicy,
    /// Failed attempts the sweep may have before it halts.
    pub failure_budget: Option<u64>,
    /// GPUs each trial needs: such trials go only to workers with that many free.
    pub gpus: u32,
    /// Wall-clock limit of one attempt, enforced by the worker.
    pub attempt_timeout: Option<Duration>,
    /// Wait before retrying a failed attempt, doubling with each failure (capped at a minute).
    pub retry_backoff: Duration,
}

impl CoordinatorConfig {
    /// These settings with a sweep's own execution settings (retries, timeout).
    pub fn for_sweep(&self, sweep: &kappa_core::Sweep) -> CoordinatorConfig {
        CoordinatorConfig {
            retries: sweep.execution.retries,
            failure_budget: sweep.execution.failure_budget,
            gpus: sweep.execution.gpus,
            attempt_timeout: sweep.execution.timeout,
            ..self.clone()
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            heartbeat_interval: Duration::from_secs(5),
            lease_timeout: Duration::from_secs(15),
            retries: RetryPolicy::default(),
            failure_budget: None,
            gpus: 0,
            attempt_timeout: None,
            retry_backoff: Duration::from_millis(SchedulerConfig::DEFAULT_RETRY_BACKOFF_MS),
        }
    }
}

/// Errors that stop the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store writer stopped on an error.
    #[error("writing results failed: {0}")]
    WriteFailed(String),
}

struct Inner {
    cfg: CoordinatorConfig,
    sweep: String,
    task_json: Arc<str>,
    sched: Mutex<Scheduler>,
    writer: StoreWriter,
    /// Shared with every sweep of a hub: rung when trials become pending or a sweep finishes.
    work: Arc<Notify>,
    /// Registered workers, maintained by the hub (for progress reports).
    workers: Arc<AtomicU32>,
    progress: watch::Sender<pb::Progress>,
    reused: u64,
    /// Trials finished before this coordinator started (terminal, so fixed).
    stored: Counts,
    started: Instant,
    /// Cancelled: nothing is leased.
    cancelled: std::sync::atomic::AtomicBool,
}

/// The coordinator of one sweep: its scheduler and its store writer. Cheap to clone. Workers and
/// waiting are the [`Hub`]'s business; this type never blocks.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl Coordinator {
    /// Builds a coordinator over a store whose plan is already synced: every unfinished trial of
    /// the current plan is loaded as pending. `work` and `workers` are shared with its hub.
    ///
    /// `in_flight` are attempts that were running when an earlier coordinator stopped: their
    /// workers may still be running them, and a result they report while the lease is current
    /// (renewed or reported within a lease timeout) is accepted instead of running it again.
    fn new(
        store: Store,
        cfg: CoordinatorConfig,
        work: Arc<Notify>,
        workers: Arc<AtomicU32>,
        in_flight: Vec<InFlight>,
    ) -> Result<Coordinator, CoordinatorError> {
        let info = store.sweep_info()?;
        let sweep = info.as_ref().map(|i| i.name.clone()).unwrap_or_default();
        let counts = store.counts()?;
        let open = store.open_trials()?;
        let task_json: Arc<str> = store.task_json()?.unwrap_or_default().into();
        let mut sched = Scheduler::new(SchedulerConfig {
            lease_timeout_ms: cfg.lease_timeout.as_millis() as u64,
            retries: cfg.retries,
            failure_budget: cfg.failure_budget,
            retry_backoff_ms: cfg.retry_backoff.as_millis() as u64,
        });
        sched.set_failed_attempts(store.failed_attempts()?);
        for t in open {
            sched.add(t.id, t.params, t.attempts, t.failures, TrialStatus::Pending);
        }
        let resumed: Vec<StoreOp> = in_flight
            .into_iter()
            .filter(|f| sched.resume_in_flight(f.id, f.attempt))
            .map(|f| StoreOp::Leased { id: f.id, attempt: f.attempt, worker: f.worker, at: f.started_at })
            .collect();
        let reused = counts.done();
        // Finished trials are only counted, not held: the scheduler needs just the open ones.
        let progress = kappa_proto::progress(
            &sweep,
            merge(sched.counts(), counts),
            reused,
            workers.load(Ordering::Relaxed),
            sched.is_finished(),
        );
        let (tx, _) = watch::channel(progress);
        let inner = Inner {
            cfg,
            sweep,
            task_json,
            sched: Mutex::new(sched),
            writer: StoreWriter::start(store),
            work,
            workers,
            progress: tx,
            reused,
            stored: counts,
            started: Instant::now(),
            cancelled: std::sync::atomic::AtomicBool::new(false),
        };
        // The store shows them running again, as the scheduler does.
        inner.writer.send_all(resumed);
        Ok(Coordinator { inner: Arc::new(inner) })
    }

    /// The sweep's name.
    pub fn sweep(&self) -> &str {
        &self.inner.sweep
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.cfg
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    fn sched(&self) -> MutexGuard<'_, Scheduler> {
        // A panic while holding the lock would poison it; the state itself stays consistent
        // (every method finishes its update before returning), so recover it.
        self.inner.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current progress.
    pub fn progress(&self) -> pb::Progress {
        self.inner.progress.borrow().clone()
    }

    /// Whether every trial is finished.
    pub fn is_finished(&self) -> bool {
        self.inner.progress.borrow().finished
    }

    /// Whether the sweep is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// Cancels (nothing more is leased; every lease is revoked) or resumes the sweep.
    pub fn set_cancelled(&self, cancelled: bool) {
        self.inner.cancelled.store(cancelled, Ordering::Relaxed);
        if cancelled {
            self.release_all();
        } else {
            self.refresh();
            self.inner.work.notify_waiters();
        }
    }

    /// A receiver of progress snapshots.
    pub fn subscribe(&self) -> watch::Receiver<pb::Progress> {
        self.inner.progress.subscribe()
    }

    fn publish(&self, sched: &Scheduler) {
        let p = kappa_proto::progress(
            &self.inner.sweep,
            merge(sched.counts(), self.inner.stored),
            self.inner.reused,
            self.inner.workers.load(Ordering::Relaxed),
            sched.is_finished(),
        );
        let p = pb::Progress { cancelled: self.is_cancelled(), ..p };
        self.inner.progress.send_replace(p);
    }

    /// Leases up to `max` pending trials to `worker` (named `name` in the store); never waits.
    pub fn try_lease(&self, worker: WorkerId, name: &str, max: usize) -> Vec<Grant> {
        if self.is_cancelled() {
            return Vec::new();
        }
        let mut sched = self.sched();
        let grants = sched.lease(worker, self.now_ms(), max);
        if sched.is_halted() {
            // A restart with the failure budget already used up fails what is left.
            self.record_halted(&mut sched);
            self.publish(&sched);
        }
        if !grants.is_empty() {
            let at = now_s();
            self.inner.writer.send_all(grants.iter().map(|g| StoreOp::Leased {
                id: g.id,
                attempt: g.attempt,
                worker: name.to_string(),
                at,
            }));
            self.publish(&sched);
        }
        grants
    }

    /// Renews leases; returns the ones this sweep does not consider current (unknown ids included).
    pub fn heartbeat(&self, worker: WorkerId, held: &[(TrialId, u32)]) -> Vec<(TrialId, u32)> {
        if self.is_cancelled() {
            return held.to_vec();
        }
        self.sched().heartbeat(worker, held, self.now_ms())
    }

    /// Applies a report and queues it for the store; `Unknown` when the trial is not this sweep's.
    /// A late report (not the current lease) is recorded only with `record_late`; the hub first
    /// looks for the sweep whose lease it is, since two sweeps may plan the same trial.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &self,
        worker: WorkerId,
        name: &str,
        id: TrialId,
        attempt: u32,
        outcome: &AttemptOutcome,
        duration_s: f64,
        record_late: bool,
    ) -> Disposition {
        let kind = match outcome {
            AttemptOutcome::Succeeded(_) => ReportKind::Succeeded,
            AttemptOutcome::Diverged { .. } => ReportKind::Diverged,
            AttemptOutcome::Failed { class, .. } => ReportKind::Failed(*class),
        };
        let mut sched = self.sched();
        let disposition = sched.report(worker, id, attempt, kind);
        let effect = match disposition {
            Disposition::Accepted { status: TrialStatus::Pending } => ReportEffect::Retry,
            Disposition::Accepted { .. } => ReportEffect::Final,
            Disposition::Late if record_late => ReportEffect::Late,
            Disposition::Late | Disposition::Unknown => return disposition,
        };
        let (metrics, error, class, diverged_step) = match outcome {
            AttemptOutcome::Succeeded(m) => (serde_json::to_string(m).ok(), None, None, None),
            AttemptOutcome::Diverged { step, metrics } => {
                (serde_json::to_string(metrics).ok(), None, None, Some(*step))
            }
            AttemptOutcome::Failed { error, class } => (None, Some(error.clone()), Some(*class), None),
        };
        self.inner.writer.send(StoreOp::Reported {
            id,
            attempt,
            worker: name.to_string(),
            at: now_s(),
            duration_s,
            outcome: outcome.status(),
            metrics,
            error,
            class,
            diverged_step,
            effect,
        });
        self.record_halted(&mut sched);
        if effect != ReportEffect::Late {
            self.publish(&sched);
        }
        let finished = sched.is_finished();
        drop(sched);
        if effect == ReportEffect::Retry || finished {
            self.inner.work.notify_waiters();
        }
        disposition
    }

    /// A worker left: its leases go back to pending.
    pub fn release_worker(&self, worker: WorkerId) {
        let revoked = self.sched().release_worker(worker);
        self.requeue(revoked, "released");
    }

    /// Every lease goes back to pending (the process is stopping).
    pub fn release_all(&self) {
        let revoked = self.sched().release_all();
        self.requeue(revoked, "released");
    }

    /// Expires overdue leases.
    pub fn expire(&self) {
        let revoked = self.sched().expire(self.now_ms());
        self.requeue(revoked, "expired");
    }

    /// Records the trials the scheduler failed because the failure budget ran out.
    fn record_halted(&self, sched: &mut Scheduler) {
        let halted = sched.take_halted();
        if halted.is_empty() {
            return;
        }
        let error = format!(
            "not run: the sweep's failure budget of {} failed attempts is used up (see the other failures; \
             `kappa retry --failed` runs them again)",
            self.inner.cfg.failure_budget.unwrap_or_default()
        );
        self.inner.writer.send_all(halted.into_iter().map(|(id, _)| StoreOp::Halted { id, error: error.clone() }));
    }

    fn requeue(&self, revoked: Vec<Revoked>, reason: &'static str) {
        let at = now_s();
        let mut sched = self.sched();
        self.record_halted(&mut sched);
        self.publish(&sched);
        drop(sched);
        if revoked.is_empty() {
            return;
        }
        self.inner.writer.send_all(revoked.into_iter().map(|r| {
            if r.gave_up {
                // Lost too many leases: failed for good, in the store as in the scheduler.
                StoreOp::Reported {
                    id: r.id,
                    attempt: r.attempt,
                    worker: r.worker.to_string(),
                    at,
                    duration_s: 0.0,
                    outcome: TrialStatus::Failed,
                    metrics: None,
                    error: Some(format!(
                        "lost its lease {} times (the worker died, hung or was cut off each time): given up",
                        self.inner.cfg.retries.lost + 1
                    )),
                    class: Some(FailureClass::Lost),
                    diverged_step: None,
                    effect: ReportEffect::Final,
                }
            } else {
                StoreOp::Revoked { id: r.id, attempt: r.attempt, at, reason }
            }
        }));
        self.inner.work.notify_waiters();
    }

    /// Publishes progress again (after the worker count changed).
    pub fn refresh(&self) {
        let sched = self.sched();
        self.publish(&sched);
    }

    /// The canonical task JSON handed out with every lease.
    pub fn task_json(&self) -> Arc<str> {
        self.inner.task_json.clone()
    }

    /// Resolves when every trial is finished.
    pub async fn finished(&self) {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends when the sweep finishes.
        let _ = rx.wait_for(|p| p.finished).await;
    }

    /// A write error that stopped the store writer, if any.
    pub fn write_failure(&self) -> Option<String> {
        self.inner.writer.failure()
    }

    /// Commits everything queued and closes the store.
    pub fn shutdown(&self) -> Result<(), CoordinatorError> {
        let failure = self.inner.writer.failure();
        self.inner.writer.close()?;
        match failure {
            Some(f) => Err(CoordinatorError::WriteFailed(f)),
            None => Ok(()),
        }
    }
}

/// Adds the in-memory counts of open trials to the store's counts of finished ones.
fn merge(open: Counts, stored: Counts) -> Counts {
    Counts {
        total: open.total + stored.done(),
        pending: open.pending,
        running: open.running,
        succeeded: open.succeeded + stored.succeeded,
        failed: open.failed + stored.failed,
        diverged: open.diverged + stored.diverged,
    }
}
