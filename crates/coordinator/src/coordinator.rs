//! The coordinator: every sweep of a process and the workers that serve them. Workers register
//! with the coordinator, not with a sweep; a lease takes trials from the sweeps in the order they
//! were submitted, and a report goes to the sweep whose lease it is. With a state root, each
//! sweep keeps its own store in `<root>/<sweep name>/`, and a restarted coordinator reloads every
//! sweep found there (finished trials are kept, interrupted ones re-queued).

use crate::access::{Access, Action, Holder};
use crate::runner::SweepRunner;
use crate::sweeps::{PlanRequest, Submitted, SweepRegistry};
use crate::workers::{Blocked, WorkerInfo, WorkerRegistry};
use crate::{CoordinatorConfig, CoordinatorError};
use kappa_core::sched::Disposition;
use kappa_core::{AttemptRef, AttemptReport, CodeVersion, Lease, LeaseEnd, Progress, TaskSpec, WorkerId};
use kappa_store::PlanSync;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Every sweep of a coordinator process, and its workers.
pub struct Coordinator {
    sweeps: SweepRegistry,
    workers: WorkerRegistry,
    work: Arc<Notify>,
    reports: AtomicU64,
}

impl Coordinator {
    /// A coordinator over the state root `root` (sweeps are reloaded from it with
    /// [`Coordinator::load_all`] and submitted into it), or over none (`kappa run`: one sweep,
    /// opened with [`Coordinator::open`]). `code_version` names the code this build computes a
    /// task's results with (part of the ids of the sweeps it plans afresh).
    pub fn new(
        root: Option<PathBuf>,
        cfg: CoordinatorConfig,
        code_version: fn(&TaskSpec) -> CodeVersion,
    ) -> Coordinator {
        let work = Arc::new(Notify::new());
        let workers = WorkerRegistry::new();
        let sweeps = SweepRegistry::new(root, cfg, code_version, work.clone(), workers.counter());
        Coordinator { sweeps, workers, work, reports: AtomicU64::new(0) }
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        self.sweeps.config()
    }

    /// Plans a sweep into its state directory and serves it (what `kappa run` does).
    pub fn open(&self, req: PlanRequest<'_>) -> Result<(SweepRunner, PlanSync), CoordinatorError> {
        self.sweeps.open(req)
    }

    /// Reloads every sweep under the state root (after a restart). Returns their names.
    pub fn load_all(&self) -> Result<Vec<String>, CoordinatorError> {
        self.sweeps.load_all()
    }

    /// Plans a sweep from its file text into `<root>/<name>/` and serves it. Submitting the same
    /// sweep again is harmless; an edited one replaces it once it is finished or cancelled. A
    /// sweep planned with other code keeps its ids (its trials go to workers that compute with
    /// that code) unless `rerun` plans it afresh. `by` submits it: a new sweep records it as
    /// its owner; someone else's sweep needs an admin, command trials a holder that may run
    /// them. Logged (audit) either way.
    pub fn submit(
        &self,
        by: &Holder,
        sweep_text: &str,
        file: &str,
        rerun: bool,
    ) -> Result<Submitted, CoordinatorError> {
        let done = self.sweeps.submit(by, sweep_text, file, rerun);
        let detail = |s: &Submitted| format!(": {} trials, {} new", s.sync.total, s.sync.new);
        audited(by, Action::Submit, file, done, |s| (s.sweep.clone(), detail(s)))
    }

    /// Cancels a sweep (empty name: the latest) for `by` (its owner or an admin); returns its
    /// name and its unfinished trials.
    pub fn cancel(&self, by: &Holder, name: &str) -> Result<(String, u64), CoordinatorError> {
        let done = self.sweeps.cancel(by, name);
        audited(by, Action::Cancel, name, done, |(s, n)| (s.clone(), format!(": {n} trials will not run")))
    }

    /// Puts a sweep's failed trials back to pending (empty name: the latest) for `by` (its owner
    /// or an admin); returns its name and how many will run again.
    pub fn retry_failed(&self, by: &Holder, name: &str) -> Result<(String, u64), CoordinatorError> {
        let done = self.sweeps.retry_failed(by, name);
        audited(by, Action::Retry, name, done, |(s, n)| (s.clone(), format!(": {n} failed trials run again")))
    }

    /// A sweep's file and every trial record (empty name: the latest sweep), read from its store.
    pub fn results(
        &self,
        name: &str,
    ) -> Result<(kappa_store::SweepInfo, Vec<kappa_store::TrialRecord>), CoordinatorError> {
        self.sweeps.results(name)
    }

    /// Registers a worker with `slots` slots and `gpus` GPUs that computes with the code
    /// `versions`.
    pub fn register(&self, by: Arc<Holder>, name: &str, slots: u32, gpus: u32, versions: Vec<String>) -> WorkerId {
        let shown = versions.join(",");
        let holder = by.name.clone();
        let (id, full) = self.workers.register(by, name, slots, gpus, versions);
        tracing::info!(worker = %full, id = id.0, slots, gpus, versions = %shown, holder = %holder, "worker registered");
        self.refresh();
        id
    }

    /// Whether `by` may cancel or retry (`action`) the sweep `name` (empty: its latest), as
    /// [`Coordinator::cancel`] and [`Coordinator::retry_failed`] decide, without doing it.
    pub fn may(&self, by: &Holder, action: Action, name: &str) -> Result<(), CoordinatorError> {
        self.sweeps.authorize(by, action, name).map(drop)
    }

    /// Who registered a worker (`None`: not registered).
    pub fn worker_holder(&self, worker: WorkerId) -> Option<Arc<Holder>> {
        self.workers.holder(worker)
    }

    /// A worker leaves: its leases go back to pending in every sweep.
    pub fn deregister(&self, worker: WorkerId) {
        if let Some(name) = self.workers.remove(worker) {
            tracing::info!(worker = %name, "worker left");
        }
        for e in self.sweeps.read().iter() {
            e.runner.release_worker(worker, LeaseEnd::WorkerLeft);
        }
    }

    /// Drops the workers whose token `access` no longer lets work (after a reload of the tokens
    /// file): they are leased nothing more, and the trials they run go back to pending, their
    /// attempts ended as lost. Returns their names.
    pub fn drop_revoked_workers(&self, access: &Access) -> Vec<String> {
        let gone = self.workers.remove_revoked(access);
        for (id, name) in &gone {
            tracing::warn!(target: crate::access::AUDIT, event = "revoked", worker = %name, "worker dropped: its token was revoked");
            for e in self.sweeps.read().iter() {
                e.runner.release_worker(*id, LeaseEnd::Revoked);
            }
        }
        gone.into_iter().map(|(_, n)| n).collect()
    }

    /// Registered workers.
    pub fn worker_count(&self) -> u32 {
        self.workers.count()
    }

    /// Reports received so far.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// Whether a worker id is registered (and, since it called, not lost).
    pub fn knows(&self, worker: WorkerId) -> bool {
        self.workers.touch(worker)
    }

    /// A warning for a sweep whose trials need more GPUs than any registered worker has (they
    /// wait until such a worker registers).
    pub fn gpu_warning(&self, sweep: &str) -> Option<String> {
        let need = self.sweeps.find(sweep).ok()?.gpus();
        (need > 0 && self.workers.most_gpus() < need).then(|| {
            format!(
                "trials of `{sweep}` need {need} GPU(s) each and no registered worker has that many; they wait \
                 until one registers (start workers with --gpus)"
            )
        })
    }

    /// A warning for a sweep planned with code no registered worker computes with (its trials
    /// wait for one); none while no worker is registered.
    pub fn version_warning(&self, sweep: &str) -> Option<String> {
        let r = self.sweeps.find(sweep).ok()?;
        let needs = r.requires()?;
        if r.progress().counts.pending == 0 || self.workers.count() == 0 || self.workers.any_computes(needs) {
            return None;
        }
        Some(format!(
            "trials of `{sweep}` were planned with {needs} and no registered worker computes with it (they have {}); \
             they wait for a worker of that kappa version, or submit again with --rerun-on-new-version to plan \
             them afresh",
            self.workers.versions().join(", ")
        ))
    }

    /// Every registered worker, with the sweeps it cannot run for want of their code version.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let mut all = self.workers.list();
        let waiting: Vec<(String, String, u64)> = self
            .sweeps
            .read()
            .iter()
            .filter(|e| !e.runner.is_cancelled())
            .filter_map(|e| {
                let pending = e.runner.progress().counts.pending;
                let needs = e.runner.requires()?;
                (pending > 0).then(|| (e.runner.name().to_string(), needs.to_string(), pending))
            })
            .collect();
        for w in &mut all {
            w.blocked = waiting
                .iter()
                .filter(|(_, needs, _)| !w.code_versions.contains(needs))
                .map(|(sweep, needs, pending)| Blocked {
                    sweep: sweep.clone(),
                    needs: needs.clone(),
                    pending: *pending,
                })
                .collect();
        }
        all
    }

    fn refresh(&self) {
        for e in self.sweeps.read().iter() {
            e.runner.refresh();
        }
    }

    /// Leases up to `max` trials from the sweeps in submission order, waiting up to `wait` for
    /// work; trials that need GPUs only within the worker's `free_gpus`, and trials of a sweep
    /// planned with some code only to a worker that computes with it. Returns the leases and
    /// whether every sweep is finished.
    pub async fn lease(&self, worker: WorkerId, max: usize, wait: Duration, free_gpus: u32) -> (Vec<Lease>, bool) {
        let deadline = tokio::time::Instant::now() + wait;
        let (name, versions) = self.workers.identity(worker);
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = Vec::new();
            let mut all_finished = true;
            let mut gpus_left = free_gpus;
            let served = {
                let sweeps = self.sweeps.read();
                for e in sweeps.iter() {
                    let r = &e.runner;
                    let gpus = r.gpus();
                    let room = match gpus {
                        0 => max - out.len(),
                        g => (max - out.len()).min((gpus_left / g) as usize),
                    };
                    if room > 0 && r.runs_on(&versions) {
                        let granted = r.try_lease(worker, &name, room);
                        gpus_left -= gpus * granted.len() as u32;
                        out.extend(granted);
                    }
                    all_finished &= r.is_finished() || r.is_cancelled();
                }
                !sweeps.is_empty()
            };
            if !out.is_empty() {
                // A worker that deregistered while this call was granting must not keep the
                // leases: either its deregistration released them, or this does.
                if !self.workers.knows(worker) {
                    for e in self.sweeps.read().iter() {
                        e.runner.release_worker(worker, LeaseEnd::WorkerLeft);
                    }
                    return (Vec::new(), false);
                }
                return (out, false);
            }
            if all_finished && served {
                return (out, true);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return (Vec::new(), false);
            }
        }
    }

    /// Renews leases; returns those no sweep considers current.
    pub fn heartbeat(&self, worker: WorkerId, held: &[AttemptRef]) -> Vec<AttemptRef> {
        let mut stale: Option<Vec<AttemptRef>> = None;
        for e in self.sweeps.read().iter() {
            let s = e.runner.heartbeat(worker, held);
            stale = Some(match stale {
                None => s,
                Some(prev) => prev.into_iter().filter(|x| s.contains(x)).collect(),
            });
        }
        stale.unwrap_or_else(|| held.to_vec())
    }

    /// Routes a report to the sweep whose lease it is. Two sweeps may plan the same trial (same
    /// task and hyperparameters, e.g. one asking for more GPUs): a report the lease holder does not
    /// claim goes, as a late one, to the first sweep that knows the trial.
    pub fn report(&self, report: AttemptReport) -> Disposition {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let name = self.workers.name(report.worker);
        let sweeps = self.sweeps.read();
        let mut report = report;
        for record_late in [false, true] {
            for e in sweeps.iter() {
                match e.runner.report(report, &name, record_late) {
                    (_, Some(back)) => report = back,
                    (d, None) => return d,
                }
            }
        }
        Disposition::Unknown
    }

    /// Hands every lease back, whoever holds it (the process is stopping, its workers with it).
    pub fn release_all(&self) {
        for e in self.sweeps.read().iter() {
            e.runner.release_all(LeaseEnd::Stopped);
        }
    }

    /// Expires overdue leases in every sweep, and notes workers gone silent.
    pub fn expire(&self) {
        self.workers.mark_lost(self.config().lease_timeout);
        for e in self.sweeps.read().iter() {
            e.runner.expire();
        }
    }

    /// Progress of every sweep, in submission order.
    pub fn progress(&self) -> Vec<Progress> {
        self.sweeps.read().iter().map(|e| e.runner.progress()).collect()
    }

    /// The runner of a sweep, by name (empty: the most recently submitted).
    pub fn sweep(&self, name: &str) -> Result<SweepRunner, CoordinatorError> {
        self.sweeps.find(name)
    }

    /// Commits everything queued in every sweep and closes the stores.
    pub fn shutdown(&self) -> Result<(), CoordinatorError> {
        self.sweeps.shutdown()
    }

    /// A write failure in any sweep.
    pub fn write_failure(&self) -> Option<String> {
        self.sweeps.read().iter().find_map(|e| e.runner.write_failure())
    }
}

/// Logs (audit) what `by` did, or the refusal: `what` names the sweep asked for (the file, for a
/// submission), `done` the sweep and a detail of what happened.
fn audited<T>(
    by: &Holder,
    action: Action,
    what: &str,
    result: Result<T, CoordinatorError>,
    done: impl FnOnce(&T) -> (String, String),
) -> Result<T, CoordinatorError> {
    match &result {
        Ok(t) => {
            let (sweep, detail) = done(t);
            crate::access::audit(by, action, &sweep, &detail);
        }
        Err(CoordinatorError::Refused(r)) => crate::access::audit_refusal(r, what),
        Err(_) => {}
    }
    result
}
