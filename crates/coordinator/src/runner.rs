//! One sweep: its scheduler, its store writer and its published progress.

use crate::halving::{HalvingDriver, HalvingStart};
use crate::search::SearchDriver;
use crate::writer::StoreWriter;
use crate::{CoordinatorConfig, CoordinatorError};
use kappa_core::sched::{Disposition, Revoked};
use kappa_core::{
    AttemptOutcome, AttemptRef, AttemptReport, Counts, Execution, Lease, LeaseEnd, Progress, Scheduler,
    SchedulerConfig, TrialId, TrialStatus, WorkerId,
};
use kappa_store::{InFlight, OpenTrial, ReportEffect, Store, StoreOp, now_s};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

struct Inner {
    name: String,
    /// The state directory of its store.
    dir: std::path::PathBuf,
    /// GPUs each trial needs (`execution.resources.gpus`).
    gpus: u32,
    /// The code version a worker must compute with to be leased its trials (`None`: any).
    requires: Option<String>,
    sched: Mutex<Scheduler>,
    writer: StoreWriter,
    /// Shared with every sweep of a coordinator: rung when trials become pending or a sweep finishes.
    work: Arc<Notify>,
    /// Registered workers, counted by the coordinator (for progress reports).
    workers: Arc<AtomicU32>,
    progress: watch::Sender<Progress>,
    reused: u64,
    /// Trials finished before this runner started (terminal, so fixed).
    stored: Counts,
    /// The lease clock's origin: the scheduler's time is milliseconds since it. A tokio instant,
    /// so tests drive lease expiry and retry backoff with paused time.
    started: Instant,
    /// Cancelled: nothing is leased.
    cancelled: AtomicBool,
    /// Asks the loader for the next chunk of pending trials (see [`Loader`]).
    load_more: SyncSender<()>,
    /// Set when the runner shuts down: the loader stops.
    stopped: AtomicBool,
    /// The sweep's search, when its trials come from one: fed every final result.
    search: Option<SearchDriver>,
    /// The sweep's successive halving: fed every rung result.
    halving: Option<HalvingDriver>,
    /// Who submitted it.
    owner: Option<String>,
}

/// Pending trials read from the store per chunk, and the queue length below which the loader
/// reads the next one: a sweep of 10⁷ trials leases after reading its first chunk, and holds
/// about a chunk of pending trials in memory rather than all of them.
const LOAD_CHUNK: usize = 20_000;
const LOAD_LOW: usize = 10_000;

/// The thread that feeds a runner's scheduler its pending trials in plan order, a chunk at a
/// time, from a connection of its own (the writer owns the other).
struct Loader {
    runner: Weak<Inner>,
    store: Store,
    wake: Receiver<()>,
}

impl Loader {
    fn run(self) {
        while self.wake.recv().is_ok() {
            loop {
                let Some(inner) = self.runner.upgrade() else { return };
                let runner = SweepRunner { inner };
                if runner.inner.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let after = {
                    let sched = runner.sched();
                    if sched.unloaded() == 0 {
                        return;
                    }
                    if sched.queued() >= LOAD_LOW {
                        break;
                    }
                    sched.loaded_through()
                };
                match runner.load_chunk(&self.store, after) {
                    Ok(0) => return,
                    Ok(_) => runner.inner.work.notify_waiters(),
                    Err(e) => {
                        // The trials it could not read stay pending in the store for the next run.
                        tracing::error!(sweep = %runner.inner.name, error = %e, "reading pending trials failed");
                        runner.inner.writer.fail(format!("reading pending trials: {e}"));
                        return;
                    }
                }
            }
        }
    }
}

/// How a runner serves its sweep, besides its store.
pub(crate) struct RunnerSetup {
    /// The sweep's `[execution]`.
    pub(crate) execution: Execution,
    /// Attempts that were running when an earlier coordinator stopped: their workers may still
    /// be running them, and a result they report while the lease is current (renewed or
    /// reported within a lease timeout) is accepted instead of running it again.
    pub(crate) in_flight: Vec<InFlight>,
    /// The code version its trials' ids are made with, when some code of kappa's computes them:
    /// only workers that compute with it are leased them.
    pub(crate) requires: Option<String>,
    /// Its search, when its trials come from one.
    pub(crate) search: Option<SearchDriver>,
    /// Its successive halving, and where its trials' attempts stop.
    pub(crate) halving: Option<(HalvingDriver, HalvingStart)>,
    /// Who submitted it (`None`: nobody recorded).
    pub(crate) owner: Option<String>,
}

/// The runner of one sweep: its scheduler and its store writer. Cheap to clone. Workers and
/// waiting are the [`crate::Coordinator`]'s business; this type never blocks.
#[derive(Clone)]
pub struct SweepRunner {
    inner: Arc<Inner>,
}

impl SweepRunner {
    /// A runner over a store whose plan is already synced: every unfinished trial of the current
    /// plan is loaded as pending. `work` and `workers` are shared with its coordinator; `setup`
    /// says how the sweep runs.
    pub(crate) fn new(
        store: Store,
        cfg: &CoordinatorConfig,
        work: Arc<Notify>,
        workers: Arc<AtomicU32>,
        setup: RunnerSetup,
    ) -> Result<SweepRunner, CoordinatorError> {
        let RunnerSetup { execution, in_flight, requires, search, halving, owner } = setup;
        let (halving, start) = match halving {
            Some((driver, start)) => (Some(driver), Some(start)),
            None => (None, None),
        };
        let name = store.sweep_info()?.map(|i| i.name).unwrap_or_default();
        let mut counts = store.counts()?;
        // Open trials are loaded as the queue drains (see `Loader`): counted now, read later.
        let open = counts.pending + counts.running;
        counts.total -= open;
        (counts.pending, counts.running) = (0, 0);
        let reader = store.reopen()?;
        let dir = store.dir().to_path_buf();
        let gpus = execution.gpus;
        let mut sched = Scheduler::new(SchedulerConfig {
            first_stop: start.as_ref().map(|s| s.first_stop),
            sweep: Arc::from(name.as_str()),
            lease_timeout: cfg.lease_timeout,
            retry_backoff: cfg.retry_backoff,
            execution,
        });
        sched.set_failed_attempts(store.failed_attempts()?);
        let mut promoted = Vec::new();
        if let Some(start) = start {
            for (id, stop) in start.stops {
                sched.set_stop(id, stop);
                promoted.push(id);
            }
            // Stopped trials are held whole: a promotion takes them on.
            let stopped = crate::halving::load_stopped(&reader, &mut sched)?;
            counts.stopped -= stopped;
            counts.total -= stopped;
        }
        sched.expect(open);
        let ids: Vec<TrialId> = in_flight.iter().map(|f| f.id).collect();
        for t in reader.open_trials_by_id(&ids)? {
            sched.load(None, t.id, t.params, t.task, t.attempts, t.failures);
        }
        // Trials promoted past the first rung go first, as they did before the restart.
        for t in reader.open_trials_by_id(&promoted)? {
            sched.load(None, t.id, t.params, t.task, t.attempts, t.failures);
            sched.prioritize(t.id);
        }
        // The first chunk now, so the first lease finds work (and before the writer starts: a
        // store that cannot be read starts nothing).
        let by_id = halving.is_some();
        feed(&mut sched, reader.pending_after(None, LOAD_CHUNK)?, by_id);
        let resumed: Vec<StoreOp> = in_flight
            .into_iter()
            .filter(|f| sched.resume_in_flight(f.id, f.attempt))
            .map(|f| StoreOp::Leased { id: f.id, attempt: f.attempt, worker: f.worker, at: f.started_at })
            .collect();
        let reused = counts.done();
        // Finished trials are only counted, not held: the scheduler needs just the open ones.
        let progress = Progress {
            sweep: name.clone(),
            counts: merge(sched.counts(), counts),
            reused,
            workers: workers.load(Ordering::Relaxed),
            finished: sched.is_finished(),
            cancelled: false,
            at_most: search.as_ref().map(SearchDriver::bound),
            rungs: halving.as_ref().map(HalvingDriver::progress).unwrap_or_default(),
            owner: owner.clone(),
        };
        let (tx, _) = watch::channel(progress);
        let (load_more, wake) = std::sync::mpsc::sync_channel(1);
        let inner = Inner {
            writer: StoreWriter::start(store, &name, work.clone()),
            name,
            dir,
            gpus,
            requires,
            sched: Mutex::new(sched),
            work,
            workers,
            progress: tx,
            reused,
            stored: counts,
            started: Instant::now(),
            cancelled: AtomicBool::new(false),
            load_more,
            stopped: AtomicBool::new(false),
            search,
            halving,
            owner,
        };
        // The store shows them running again, as the scheduler does.
        inner.writer.send_all(resumed);
        let runner = SweepRunner { inner: Arc::new(inner) };
        // The rest as the queue drains.
        let loader = Loader { runner: Arc::downgrade(&runner.inner), store: reader, wake };
        std::thread::Builder::new()
            .name("kappa-loader".into())
            .spawn(move || loader.run())
            .map_err(|e| CoordinatorError::WriteFailed(format!("could not start the loader thread: {e}")))?;
        runner.wake_loader();
        {
            // A restart with the failure budget already used up fails what is left at once (not
            // at the first lease: a sweep no registered worker may run is never leased).
            let mut sched = runner.sched();
            if sched.halt_if_over_budget() {
                runner.record_halted(&mut sched);
                runner.publish(&sched);
            }
        }
        Ok(runner)
    }

    /// Reads the next chunk of pending trials after plan position `after` and loads it; returns
    /// how many were read. A trial already here (adopted in flight) is skipped.
    fn load_chunk(&self, store: &Store, after: Option<u64>) -> Result<usize, CoordinatorError> {
        if self.sched().unloaded() == 0 {
            return Ok(0);
        }
        let chunk = store.pending_after(after, LOAD_CHUNK)?;
        let mut sched = self.sched();
        let n = feed(&mut sched, chunk, self.inner.halving.is_some());
        if n == 0 && sched.unloaded() > 0 {
            // The store holds fewer pending trials than it counted: nothing is left to load.
            tracing::warn!(sweep = %self.inner.name, missing = sched.unloaded(), "pending trials missing from the store");
            return Err(CoordinatorError::WriteFailed(format!(
                "the store holds {} fewer pending trials than it counts",
                sched.unloaded()
            )));
        }
        Ok(n)
    }

    /// Asks the loader for more pending trials (it reads a chunk when the queue runs low).
    fn wake_loader(&self) {
        match self.inner.load_more.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// The sweep's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Who submitted it (`None`: nobody recorded, without a tokens file).
    pub fn owner(&self) -> Option<&str> {
        self.inner.owner.as_deref()
    }

    /// The state directory of its store (readers open their own connection to it).
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// GPUs each of its trials needs: they go only to workers with that many free.
    pub fn gpus(&self) -> u32 {
        self.inner.gpus
    }

    /// The code version a worker must compute with to be leased its trials (`None`: any).
    pub fn requires(&self) -> Option<&str> {
        self.inner.requires.as_deref()
    }

    /// Whether a worker that computes with `versions` may be leased its trials.
    pub fn runs_on(&self, versions: &[String]) -> bool {
        self.requires().is_none_or(|v| versions.iter().any(|w| w == v))
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
    pub fn progress(&self) -> Progress {
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
        let was = self.inner.cancelled.swap(cancelled, Ordering::Relaxed);
        if cancelled {
            if !was {
                tracing::info!(sweep = %self.inner.name, "sweep cancelled");
            }
            self.release_all(LeaseEnd::Cancelled);
        } else {
            if was {
                tracing::info!(sweep = %self.inner.name, "sweep resumed");
            }
            self.refresh();
            self.inner.work.notify_waiters();
        }
    }

    /// Waits until every store operation queued so far is committed.
    pub async fn flushed(&self) {
        self.inner.writer.flushed().await
    }

    /// A receiver of progress snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.inner.progress.subscribe()
    }

    fn publish(&self, sched: &Scheduler) {
        let p = Progress {
            sweep: self.inner.name.clone(),
            counts: merge(sched.counts(), self.inner.stored),
            reused: self.inner.reused,
            workers: self.inner.workers.load(Ordering::Relaxed),
            finished: sched.is_finished(),
            cancelled: self.is_cancelled(),
            at_most: self.inner.search.as_ref().map(SearchDriver::bound),
            rungs: self.inner.halving.as_ref().map(HalvingDriver::progress).unwrap_or_default(),
            owner: self.inner.owner.clone(),
        };
        let was_finished = self.inner.progress.borrow().finished;
        if p.finished && !was_finished {
            let c = &p.counts;
            tracing::info!(
                sweep = %p.sweep, total = c.total, succeeded = c.succeeded, failed = c.failed, diverged = c.diverged,
                "sweep finished"
            );
        }
        self.inner.progress.send_replace(p);
    }

    /// Leases up to `max` pending trials to `worker` (named `name` in the store); never waits.
    pub fn try_lease(&self, worker: WorkerId, name: &str, max: usize) -> Vec<Lease> {
        if self.is_cancelled() || self.inner.writer.backlog() > crate::writer::MAX_BACKLOG {
            // Cancelled, or the store is behind: nothing until it catches up (it rings `work`).
            return Vec::new();
        }
        let mut sched = self.sched();
        let leases = sched.lease(worker, self.now_ms(), max);
        if sched.unloaded() > 0 && sched.queued() < LOAD_LOW {
            self.wake_loader();
        }
        if sched.is_halted() {
            // A restart with the failure budget already used up fails what is left.
            self.record_halted(&mut sched);
            self.publish(&sched);
        }
        if !leases.is_empty() {
            let at = now_s();
            self.inner.writer.send_all(leases.iter().map(|l| StoreOp::Leased {
                id: l.id,
                attempt: l.attempt,
                worker: name.to_string(),
                at,
            }));
            self.publish(&sched);
        }
        leases
    }

    /// Renews leases; returns the ones this sweep does not consider current (unknown ids included).
    pub fn heartbeat(&self, worker: WorkerId, held: &[AttemptRef]) -> Vec<AttemptRef> {
        if self.is_cancelled() {
            return held.to_vec();
        }
        self.sched().heartbeat(worker, held, self.now_ms())
    }

    /// Applies a report from the worker named `name` and queues it for the store. A late report
    /// (not the current lease) is recorded only with `record_late`: the coordinator first looks
    /// for the sweep whose lease it is, since two sweeps may plan the same trial. The report comes
    /// back (`Some`) when this sweep did not take it: the trial is not its, or it is late and
    /// not recorded.
    pub fn report(&self, report: AttemptReport, name: &str, record_late: bool) -> (Disposition, Option<AttemptReport>) {
        let mut sched = self.sched();
        let disposition = sched.report(report.worker, report.id, report.attempt, &report.outcome);
        let effect = match disposition {
            Disposition::Accepted { status: TrialStatus::Pending }
                if matches!(report.outcome, AttemptOutcome::Preempted { .. }) =>
            {
                ReportEffect::Requeue
            }
            Disposition::Accepted { status: TrialStatus::Pending } => ReportEffect::Retry,
            Disposition::Accepted { .. } => ReportEffect::Final,
            Disposition::Late if record_late => ReportEffect::Late,
            Disposition::Late | Disposition::Unknown => return (disposition, Some(report)),
        };
        if let AttemptOutcome::Preempted { reason } = &report.outcome
            && effect == ReportEffect::Requeue
        {
            tracing::info!(
                sweep = %self.inner.name, trial = %report.id, attempt = report.attempt, worker = name,
                reason = %reason, "attempt preempted; the trial runs again"
            );
        }
        if let AttemptOutcome::Failed { error, class } = &report.outcome
            && effect != ReportEffect::Late
        {
            // A failed trial is data, not trouble: logged for operators, not as a warning.
            tracing::info!(
                sweep = %self.inner.name, trial = %report.id, attempt = report.attempt, worker = name,
                class = class.as_str(), retried = effect == ReportEffect::Retry, error = %error,
                "attempt failed"
            );
        }
        // A search decides from final results; what it proposes is recorded after the result.
        let metrics = match &report.outcome {
            AttemptOutcome::Succeeded(m) | AttemptOutcome::Diverged { metrics: m, .. } => Some(m),
            _ => None,
        };
        let proposed = match (disposition, &self.inner.search) {
            (Disposition::Accepted { status }, Some(search)) if effect == ReportEffect::Final => {
                search.record(&mut sched, report.id, status, metrics)
            }
            _ => None,
        };
        // Successive halving decides from each rung's result; its promotions follow it too.
        let (rung, promoted) = match (disposition, &self.inner.halving) {
            (Disposition::Accepted { status }, Some(h)) if effect == ReportEffect::Final => {
                h.record(&mut sched, report.id, status, metrics)
            }
            _ => (None, None),
        };
        let proposed = proposed.or(promoted);
        self.inner.writer.send(StoreOp::Reported {
            id: report.id,
            attempt: report.attempt,
            worker: name.to_string(),
            at: now_s(),
            duration_s: report.duration_s,
            outcome: report.outcome,
            effect,
            rung,
        });
        let proposed_any = proposed.is_some();
        if let Some(op) = proposed {
            self.inner.writer.send(op);
        }
        self.record_halted(&mut sched);
        if effect != ReportEffect::Late {
            self.publish(&sched);
        }
        let finished = sched.is_finished();
        drop(sched);
        if matches!(effect, ReportEffect::Retry | ReportEffect::Requeue) || finished || proposed_any {
            self.inner.work.notify_waiters();
        }
        (disposition, None)
    }

    /// A worker left: its leases go back to pending.
    pub fn release_worker(&self, worker: WorkerId, end: LeaseEnd) {
        let mut sched = self.sched();
        let revoked = sched.release_worker(worker);
        self.requeue(sched, revoked, end);
    }

    /// Every lease goes back to pending (the sweep is cancelled, or the process is stopping).
    pub fn release_all(&self, end: LeaseEnd) {
        let mut sched = self.sched();
        let revoked = sched.release_all();
        self.requeue(sched, revoked, end);
    }

    /// Expires overdue leases.
    pub fn expire(&self) {
        let mut sched = self.sched();
        let revoked = sched.expire(self.now_ms());
        for r in &revoked {
            tracing::warn!(
                sweep = %self.inner.name, trial = %r.id, attempt = r.attempt, worker = %r.worker, gave_up = r.gave_up,
                "lease expired"
            );
        }
        self.requeue(sched, revoked, LeaseEnd::Expired);
    }

    /// Records the trials the scheduler failed because the failure budget ran out.
    fn record_halted(&self, sched: &mut Scheduler) {
        let halted = sched.take_halted();
        let tail = sched.take_halted_tail();
        if halted.is_empty() && tail.is_none() {
            return;
        }
        let budget = sched.config().execution.failure_budget.unwrap_or_default();
        tracing::warn!(
            sweep = %self.inner.name, budget, not_run = halted.len() as u64 + tail.map_or(0, |t| t.count),
            "sweep halted: its failure budget is used up"
        );
        let error = format!(
            "not run: the sweep's failure budget of {budget} failed attempts is used up (see the other failures; \
             `kappa retry --failed` runs them again)"
        );
        self.inner.writer.send_all(halted.into_iter().map(|a| StoreOp::Halted { id: a.trial, error: error.clone() }));
        if let Some(t) = tail {
            self.inner.writer.send(StoreOp::HaltedAfter { after_seq: t.after_seq, error });
        }
    }

    /// Records leases that ended without a report (`revoked`, taken from `sched` under the same
    /// lock, so that no report of theirs is recorded before their end) and what a search makes of
    /// a trial given up.
    fn requeue(&self, mut sched: MutexGuard<'_, Scheduler>, revoked: Vec<Revoked>, end: LeaseEnd) {
        let at = now_s();
        // A trial that lost too many leases is failed for good: a final result for its search,
        // recorded after the loss that made it.
        let mut proposed: Vec<StoreOp> = match &self.inner.search {
            Some(search) => revoked
                .iter()
                .filter(|r| r.gave_up)
                .filter_map(|r| search.record(&mut sched, r.id, TrialStatus::Failed, None))
                .collect(),
            None => Vec::new(),
        };
        // Successive halving: the rung of every lost attempt, and what a trial given up there
        // makes of its group.
        let mut rungs = std::collections::HashMap::new();
        if let Some(h) = &self.inner.halving {
            for r in &revoked {
                if r.gave_up {
                    let (end, promoted) = h.record(&mut sched, r.id, TrialStatus::Failed, None);
                    rungs.extend(end.map(|e| (r.id, e.rung)));
                    proposed.extend(promoted);
                }
            }
        }
        self.record_halted(&mut sched);
        self.publish(&sched);
        let lost_allowed = sched.config().execution.retries.lost;
        if revoked.is_empty() {
            return;
        }
        self.inner.writer.send_all(revoked.into_iter().map(|r| StoreOp::Lost {
            id: r.id,
            attempt: r.attempt,
            at,
            end: if r.expired { LeaseEnd::Expired } else { end },
            // Lost too many leases: failed for good, in the store as in the scheduler.
            failed: r.gave_up.then(|| {
                format!(
                    "lost its lease {} times (the worker died, hung or was cut off each time): given up",
                    lost_allowed + 1
                )
            }),
            rung: rungs.get(&r.id).copied(),
        }));
        self.inner.writer.send_all(proposed);
        drop(sched);
        self.inner.work.notify_waiters();
    }

    /// Publishes progress again (after the worker count changed).
    pub fn refresh(&self) {
        let sched = self.sched();
        self.publish(&sched);
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
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.wake_loader();
        let failure = self.inner.writer.failure();
        self.inner.writer.close()?;
        match failure {
            Some(f) => Err(CoordinatorError::WriteFailed(f)),
            None => Ok(()),
        }
    }
}

/// Loads a chunk of pending trials read in plan order; returns how many were read.
/// With `by_id` (successive halving) a chunk is leased in the order of its trials' ids, which
/// are hashes: a learning-rate axis leased in its own order (every result better than the ones
/// before, below the optimum) would promote the most asynchronous halving can, and an order the
/// ids alone decide is the same after a resume.
fn feed(sched: &mut Scheduler, mut chunk: Vec<OpenTrial>, by_id: bool) -> usize {
    if by_id {
        chunk.sort_by_key(|t| t.id);
    }
    let n = chunk.len();
    for t in chunk {
        sched.load(Some(t.seq), t.id, t.params, t.task, t.attempts, t.failures);
    }
    n
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
        stopped: open.stopped + stored.stopped,
        did_not_train: open.did_not_train + stored.did_not_train,
        unstable: open.unstable + stored.unstable,
    }
}
