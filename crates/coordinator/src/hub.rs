//! The hub: every sweep a coordinator serves, and the workers that serve them.
//!
//! Workers register with the hub, not with a sweep; a lease takes trials from the sweeps in the
//! order they were submitted, and a report goes to the sweep that knows the trial. With a state
//! root, each sweep keeps its own store in `<root>/<sweep name>/`, and a restarted hub reloads
//! every sweep found there (finished trials are kept, interrupted ones re-queued).

use crate::{Coordinator, CoordinatorConfig, CoordinatorError};
use kappa_core::sched::{Disposition, Grant};
use kappa_core::{AttemptOutcome, Plan, Sweep, TrialId, WorkerId};
use kappa_proto::pb;
use kappa_store::{InFlight, PlanSync, StateLock, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Hub errors, each mapped to one gRPC status by the service.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The sweep file is invalid.
    #[error("{0}")]
    InvalidSweep(String),
    /// The sweep exists and is running with another definition.
    #[error("sweep `{0}` is running with a different definition: wait for it to finish, or submit under another name")]
    Conflict(String),
    /// No sweep by that name.
    #[error("no sweep named `{0}` here")]
    NoSuchSweep(String),
    /// This hub has no state root, so it cannot take new sweeps.
    #[error("this coordinator serves a fixed sweep and takes no submissions")]
    NoStateRoot,
    /// The state could not be read or written.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The state directory could not be prepared.
    #[error("{0}")]
    State(String),
}

/// One lease handed to a worker, with what it needs to run the trial.
#[derive(Clone, Debug)]
pub struct Leased {
    /// The sweep's canonical task JSON.
    pub task: Arc<str>,
    /// The attempt's wall-clock limit.
    pub timeout: Option<Duration>,
    /// GPUs the trial needs.
    pub gpus: u32,
    /// The trial and its attempt.
    pub grant: Grant,
}

/// What a submission did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The sweep's name.
    pub sweep: String,
    /// Trials planned, new ones, and ones reused from earlier runs.
    pub sync: PlanSync,
}

struct Entry {
    coordinator: Coordinator,
    spec: String,
    /// Held for the sweep's life: no other process may write its store.
    _lock: Option<StateLock>,
}

/// Every sweep of a coordinator process, and its workers.
pub struct Hub {
    root: Option<PathBuf>,
    cfg: CoordinatorConfig,
    code_version: fn(&kappa_core::TaskSpec) -> &'static str,
    sweeps: RwLock<Vec<Entry>>,
    /// Registered workers: name and GPUs.
    workers: Mutex<HashMap<WorkerId, (String, u32)>>,
    worker_count: Arc<AtomicU32>,
    next_worker: AtomicU64,
    work: Arc<Notify>,
    reports: AtomicU64,
    /// Sweeps being planned (outside the lock of `sweeps`).
    planning: Mutex<std::collections::HashSet<String>>,
}

/// A claim on planning one sweep; dropping it releases the name.
struct Planning<'a> {
    set: &'a Mutex<std::collections::HashSet<String>>,
    name: String,
}

impl<'a> Planning<'a> {
    fn claim(set: &'a Mutex<std::collections::HashSet<String>>, name: &str) -> Result<Planning<'a>, HubError> {
        if !set.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string()) {
            return Err(HubError::Conflict(name.to_string()));
        }
        Ok(Planning { set, name: name.to_string() })
    }
}

impl Drop for Planning<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

impl Hub {
    /// A hub over the state root `root` (sweeps are reloaded from it), or over nothing.
    /// `code_version` names the code that computes a task's results (part of trial ids).
    pub fn new(
        root: Option<PathBuf>,
        cfg: CoordinatorConfig,
        code_version: fn(&kappa_core::TaskSpec) -> &'static str,
    ) -> Hub {
        Hub {
            root,
            cfg,
            code_version,
            sweeps: RwLock::new(Vec::new()),
            workers: Mutex::new(HashMap::new()),
            worker_count: Arc::new(AtomicU32::new(0)),
            next_worker: AtomicU64::new(1),
            work: Arc::new(Notify::new()),
            reports: AtomicU64::new(0),
            planning: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The coordinator settings every sweep starts from.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    fn sweeps(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.sweeps.read().unwrap_or_else(|e| e.into_inner())
    }

    fn coordinator(
        &self,
        store: Store,
        sweep: &Sweep,
        in_flight: Vec<InFlight>,
    ) -> Result<Coordinator, CoordinatorError> {
        Coordinator::new(store, self.cfg.for_sweep(sweep), self.work.clone(), self.worker_count.clone(), in_flight)
    }

    /// Adds a sweep whose store is already synced (as `kappa run` prepares it).
    pub fn add(&self, store: Store, sweep: &Sweep, spec: &str) -> Result<Coordinator, HubError> {
        let c = self.coordinator(store, sweep, Vec::new())?;
        self.sweeps.write().unwrap_or_else(|e| e.into_inner()).push(Entry {
            coordinator: c.clone(),
            spec: spec.to_string(),
            _lock: None,
        });
        self.work.notify_waiters();
        Ok(c)
    }

    /// Reloads every sweep under the state root (after a restart). Returns their names.
    pub fn load_all(&self) -> Result<Vec<String>, HubError> {
        let Some(root) = &self.root else { return Ok(Vec::new()) };
        std::fs::create_dir_all(root).map_err(|e| HubError::State(format!("cannot create {}: {e}", root.display())))?;
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| HubError::State(format!("cannot read {}: {e}", root.display())))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| Store::db_path(p).is_file())
            .collect();
        dirs.sort();
        let mut names = Vec::new();
        for dir in dirs {
            let store = Store::open(&dir).map_err(CoordinatorError::from)?;
            let Some(info) = store.sweep_info().map_err(CoordinatorError::from)? else { continue };
            let cancelled = store.cancelled().map_err(CoordinatorError::from)?;
            drop(store);
            let submitted = self.submit(&info.spec, &info.spec_path)?;
            if cancelled && let Some(c) = self.sweep(&submitted.sweep) {
                c.set_cancelled(true);
            }
            names.push(submitted.sweep);
        }
        Ok(names)
    }

    /// Plans a sweep from its file text into `<root>/<name>/` and starts serving it. Submitting
    /// the same sweep again is harmless; an edited one replaces it once it is finished. Planning
    /// (which takes about a second per 100,000 trials) happens outside the hub's lock, so the
    /// other sweeps keep leasing meanwhile.
    pub fn submit(&self, spec: &str, file: &str) -> Result<Submitted, HubError> {
        let root = self.root.as_ref().ok_or(HubError::NoStateRoot)?;
        let sweep = Sweep::parse(file, spec).map_err(|e| HubError::InvalidSweep(e.to_string()))?;
        if let Some(done) = self.resubmitted(root, &sweep, spec)? {
            return Ok(done);
        }
        let planning = Planning::claim(&self.planning, &sweep.name)?;
        let (entry, sync, _) = self.start(root, &sweep, spec, file, |_| Ok(0))?;
        self.sweeps.write().unwrap_or_else(|e| e.into_inner()).push(entry);
        drop(planning);
        self.work.notify_waiters();
        Ok(Submitted { sweep: sweep.name, sync })
    }

    /// A submission of a sweep this hub already serves: the same definition is a no-op (resuming
    /// it if cancelled); an edited one replaces a finished sweep (`None`: plan it) and conflicts
    /// with a running one.
    fn resubmitted(&self, root: &Path, sweep: &Sweep, spec: &str) -> Result<Option<Submitted>, HubError> {
        let mut sweeps = self.sweeps.write().unwrap_or_else(|e| e.into_inner());
        let existing = sweeps.iter().position(|e| e.coordinator.sweep() == sweep.name);
        if let Some(i) = existing {
            let e = &sweeps[i];
            if e.spec == spec {
                if e.coordinator.is_cancelled() {
                    // Submitting a cancelled sweep again resumes it.
                    e.coordinator.set_cancelled(false);
                    Store::open(&root.join(&sweep.name))
                        .and_then(|mut s| s.set_cancelled(false))
                        .map_err(CoordinatorError::from)?;
                }
                let p = e.coordinator.progress();
                return Ok(Some(Submitted {
                    sweep: sweep.name.clone(),
                    sync: PlanSync { total: p.total, new: 0, reused: p.succeeded + p.failed + p.diverged, requeued: 0 },
                }));
            }
            if !e.coordinator.is_finished() {
                return Err(HubError::Conflict(sweep.name.clone()));
            }
            let old = sweeps.remove(i);
            old.coordinator.shutdown()?;
        }
        Ok(None)
    }

    /// Opens (or creates) a sweep's store, lets `prepare` change it, syncs its plan, and builds
    /// its coordinator, ready to be served.
    fn start(
        &self,
        root: &Path,
        sweep: &Sweep,
        spec: &str,
        file: &str,
        prepare: impl FnOnce(&mut Store) -> Result<u64, kappa_store::StoreError>,
    ) -> Result<(Entry, PlanSync, u64), HubError> {
        let dir = root.join(&sweep.name);
        let lock = StateLock::acquire(&dir).map_err(CoordinatorError::from)?;
        let mut store = Store::create(&dir).map_err(CoordinatorError::from)?;
        let prepared = prepare(&mut store).map_err(CoordinatorError::from)?;
        // Attempts a stopped coordinator left running: their workers may report them yet.
        let in_flight = store.in_flight().map_err(CoordinatorError::from)?;
        let plan = Plan::new(sweep, (self.code_version)(&sweep.task));
        let sync = store
            .sync_plan(&sweep.name, file, spec, &plan.task_json().to_string(), plan.trials())
            .map_err(CoordinatorError::from)?;
        let c = self.coordinator(store, sweep, in_flight)?;
        Ok((Entry { coordinator: c, spec: spec.to_string(), _lock: Some(lock) }, sync, prepared))
    }

    /// Cancels a sweep (empty name: the latest): nothing more is leased and its leases are revoked.
    /// Returns its name and how many trials are left unfinished.
    pub fn cancel(&self, name: &str) -> Result<(String, u64), HubError> {
        let c = if name.is_empty() { self.latest() } else { self.sweep(name) }
            .ok_or_else(|| HubError::NoSuchSweep(name.to_string()))?;
        c.set_cancelled(true);
        if let Some(root) = &self.root {
            Store::open(&root.join(c.sweep()))
                .and_then(|mut s| s.set_cancelled(true))
                .map_err(CoordinatorError::from)?;
        }
        let p = c.progress();
        Ok((c.sweep().to_string(), p.pending + p.running))
    }

    /// Puts a sweep's failed trials back to pending (`kappa retry --failed`); empty name: the
    /// latest sweep. Returns the sweep's name and how many trials will run again.
    pub fn retry_failed(&self, name: &str) -> Result<(String, u64), HubError> {
        let root = self.root.as_ref().ok_or(HubError::NoStateRoot)?;
        let mut sweeps = self.sweeps.write().unwrap_or_else(|e| e.into_inner());
        let i = if name.is_empty() {
            sweeps.len().checked_sub(1)
        } else {
            sweeps.iter().position(|e| e.coordinator.sweep() == name)
        }
        .ok_or_else(|| HubError::NoSuchSweep(name.to_string()))?;
        let old = sweeps.remove(i);
        old.coordinator.shutdown()?;
        let spec = old.spec.clone();
        let sweep_name = old.coordinator.sweep().to_string();
        drop(old);
        let file = Store::open(&root.join(&sweep_name))
            .and_then(|s| s.sweep_info())
            .map_err(CoordinatorError::from)?
            .map(|i| i.spec_path)
            .unwrap_or_default();
        let sweep = Sweep::parse(&file, &spec).map_err(|e| HubError::InvalidSweep(e.to_string()))?;
        let (entry, _, requeued) = self.start(root, &sweep, &spec, &file, |s| s.reset_failed())?;
        sweeps.push(entry);
        drop(sweeps);
        self.work.notify_waiters();
        Ok((sweep_name, requeued))
    }

    /// Registers a worker.
    pub fn register(&self, name: &str, gpus: u32) -> WorkerId {
        let id = WorkerId(self.next_worker.fetch_add(1, Ordering::Relaxed));
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        w.insert(id, (format!("{name}#{}", id.0), gpus));
        self.worker_count.store(w.len() as u32, Ordering::Relaxed);
        drop(w);
        self.refresh();
        id
    }

    /// Registered workers.
    pub fn worker_count(&self) -> u32 {
        self.worker_count.load(Ordering::Relaxed)
    }

    /// Reports received so far.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// Whether a worker id is registered.
    pub fn knows(&self, worker: WorkerId) -> bool {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&worker)
    }

    fn name(&self, worker: WorkerId) -> String {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&worker)
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| worker.to_string())
    }

    /// A warning for a sweep whose trials need more GPUs than any registered worker has (they
    /// wait until such a worker registers).
    pub fn gpu_warning(&self, sweep: &str) -> Option<String> {
        let need = self.sweep(sweep)?.config().gpus;
        let most = self.workers.lock().unwrap_or_else(|e| e.into_inner()).values().map(|(_, g)| *g).max();
        (need > 0 && most.unwrap_or(0) < need).then(|| {
            format!(
                "trials of `{sweep}` need {need} GPU(s) each and no registered worker has that many; they wait \
                 until one registers (start workers with --gpus)"
            )
        })
    }

    fn refresh(&self) {
        for e in self.sweeps().iter() {
            e.coordinator.refresh();
        }
    }

    /// Leases up to `max` trials from the sweeps in submission order, waiting up to `wait` for
    /// work; trials that need GPUs only within the worker's `free_gpus`. Returns the leases and
    /// whether every sweep is finished.
    pub async fn lease(&self, worker: WorkerId, max: usize, wait: Duration, free_gpus: u32) -> (Vec<Leased>, bool) {
        let deadline = tokio::time::Instant::now() + wait;
        let name = self.name(worker);
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = Vec::new();
            let mut all_finished = true;
            let mut gpus_left = free_gpus;
            for e in self.sweeps().iter() {
                let c = &e.coordinator;
                let gpus = c.config().gpus;
                let room = match gpus {
                    0 => max - out.len(),
                    g => (max - out.len()).min((gpus_left / g) as usize),
                };
                if room > 0 {
                    let task = c.task_json();
                    let timeout = c.config().attempt_timeout;
                    let granted = c.try_lease(worker, &name, room);
                    gpus_left -= gpus * granted.len() as u32;
                    out.extend(granted.into_iter().map(|grant| Leased { task: task.clone(), timeout, gpus, grant }));
                }
                all_finished &= c.is_finished() || c.is_cancelled();
            }
            if !out.is_empty() {
                // A worker that deregistered while this call was granting must not keep the
                // leases: either its deregistration released them, or this does.
                if !self.knows(worker) {
                    for e in self.sweeps().iter() {
                        e.coordinator.release_worker(worker);
                    }
                    return (Vec::new(), false);
                }
                return (out, false);
            }
            if all_finished && !self.sweeps().is_empty() {
                return (out, true);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return (Vec::new(), false);
            }
        }
    }

    /// A sweep's file and every trial record (empty name: the latest sweep), read from its store.
    pub fn results(&self, name: &str) -> Result<(kappa_store::SweepInfo, Vec<kappa_store::TrialRecord>), HubError> {
        let root = self.root.as_ref().ok_or(HubError::NoStateRoot)?;
        let c = if name.is_empty() { self.latest() } else { self.sweep(name) }
            .ok_or_else(|| HubError::NoSuchSweep(name.to_string()))?;
        let store = Store::open(&root.join(c.sweep())).map_err(CoordinatorError::from)?;
        let info = store
            .sweep_info()
            .map_err(CoordinatorError::from)?
            .ok_or_else(|| HubError::NoSuchSweep(name.to_string()))?;
        let trials = store.trials().map_err(CoordinatorError::from)?;
        Ok((info, trials))
    }

    /// Renews leases; returns those no sweep considers current.
    pub fn heartbeat(&self, worker: WorkerId, held: &[(TrialId, u32)]) -> Vec<(TrialId, u32)> {
        let mut stale: Option<Vec<(TrialId, u32)>> = None;
        for e in self.sweeps().iter() {
            let s = e.coordinator.heartbeat(worker, held);
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
    pub fn report(
        &self,
        worker: WorkerId,
        id: TrialId,
        attempt: u32,
        outcome: AttemptOutcome,
        duration_s: f64,
    ) -> Disposition {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let name = self.name(worker);
        let sweeps = self.sweeps();
        for e in sweeps.iter() {
            let d = e.coordinator.report(worker, &name, id, attempt, &outcome, duration_s, false);
            if matches!(d, Disposition::Accepted { .. }) {
                return d;
            }
        }
        for e in sweeps.iter() {
            let d = e.coordinator.report(worker, &name, id, attempt, &outcome, duration_s, true);
            if d != Disposition::Unknown {
                return d;
            }
        }
        Disposition::Unknown
    }

    /// A worker leaves: its leases go back to pending in every sweep.
    pub fn deregister(&self, worker: WorkerId) {
        {
            let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            w.remove(&worker);
            self.worker_count.store(w.len() as u32, Ordering::Relaxed);
        }
        for e in self.sweeps().iter() {
            e.coordinator.release_worker(worker);
        }
    }

    /// Hands every lease back, whoever holds it (the process is stopping, its workers with it).
    pub fn release_all(&self) {
        for e in self.sweeps().iter() {
            e.coordinator.release_all();
        }
    }

    /// Expires overdue leases in every sweep.
    pub fn expire(&self) {
        for e in self.sweeps().iter() {
            e.coordinator.expire();
        }
    }

    /// Progress of every sweep, in submission order.
    pub fn progress(&self) -> Vec<pb::Progress> {
        self.sweeps().iter().map(|e| e.coordinator.progress()).collect()
    }

    /// The coordinator of a sweep, by name.
    pub fn sweep(&self, name: &str) -> Option<Coordinator> {
        self.sweeps().iter().find(|e| e.coordinator.sweep() == name).map(|e| e.coordinator.clone())
    }

    /// The most recently submitted sweep.
    pub fn latest(&self) -> Option<Coordinator> {
        self.sweeps().last().map(|e| e.coordinator.clone())
    }

    /// Commits everything queued in every sweep and closes the stores.
    pub fn shutdown(&self) -> Result<(), CoordinatorError> {
        let mut first = Ok(());
        for e in self.sweeps().iter() {
            if let Err(err) = e.coordinator.shutdown()
                && first.is_ok()
            {
                first = Err(err);
            }
        }
        first
    }

    /// A write failure in any sweep.
    pub fn write_failure(&self) -> Option<String> {
        self.sweeps().iter().find_map(|e| e.coordinator.write_failure())
    }
}
