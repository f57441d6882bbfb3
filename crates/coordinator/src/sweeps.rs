//! The sweep registry: every sweep a coordinator serves, in submission order, and how sweeps get
//! there (after Ballista's task manager). [`plan_into`] is the one way a sweep is planned into a
//! store, for `kappa run` and `kappa coordinator` alike.

use crate::access::{Action, Holder};
use crate::runner::{RunnerSetup, SweepRunner};
use crate::search::SearchDriver;
use crate::{CoordinatorConfig, CoordinatorError};
use kappa_core::{CodeVersion, OnNewVersion, Plan, Sweep, TaskSpec, version};
use kappa_store::{InFlight, PlanHeader, PlanRow, PlanSync, StateLock, Store, StoreError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::Notify;

/// What a submission did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The sweep's name.
    pub sweep: String,
    /// Trials planned, new ones, and ones reused from earlier runs.
    pub sync: PlanSync,
}

/// A sweep to plan into a state directory: what [`plan_into`] and the registry take.
#[derive(Clone, Copy, Debug)]
pub struct PlanRequest<'a> {
    /// The state directory.
    pub dir: &'a Path,
    /// The sweep.
    pub sweep: &'a Sweep,
    /// Its file's text (stored, and part of the plan's fingerprint).
    pub sweep_text: &'a str,
    /// What its file is called (in errors and the store).
    pub file: &'a str,
    /// What to do when the directory was planned with other code.
    pub on_new: OnNewVersion,
}

/// A sweep's state directory, planned and ready to serve.
pub struct Planned {
    /// Its store, with the plan synced.
    pub store: Store,
    /// The directory's lock: no other process writes this store while it is held.
    pub lock: StateLock,
    /// What syncing the plan found.
    pub sync: PlanSync,
    /// Attempts a stopped coordinator left running (read before the sync closed them).
    pub in_flight: Vec<InFlight>,
    /// What `prepare` returned.
    pub prepared: u64,
    /// The code version its ids are made with (recorded in the store).
    pub version: CodeVersion,
    /// The code version a worker must compute with to be leased its trials (`None`: any
    /// worker; no code of kappa's computes them).
    pub requires: Option<String>,
}

/// Plans a sweep into its state directory: takes the directory's lock, opens or creates its
/// store, lets `prepare` change it first (e.g. reset failed trials), notes the attempts a stopped
/// process left running, and syncs the plan (new trials inserted, finished ones kept,
/// interrupted ones re-queued), in one transaction. Its ids are made with the code version the
/// directory recorded at its first plan, chosen against `current` (the running code's version
/// for the sweep's task) by [`version::choose`].
pub fn plan_into(
    req: PlanRequest<'_>,
    current: &CodeVersion,
    prepare: impl FnOnce(&mut Store) -> Result<u64, StoreError>,
) -> Result<Planned, CoordinatorError> {
    let PlanRequest { dir, sweep, sweep_text, file, on_new } = req;
    let lock = StateLock::acquire(dir)?;
    let mut store = Store::create(dir)?;
    // A store that holds a sweep and no record was made before stores recorded their version.
    let recorded = match store.code_version()? {
        None if store.sweep_info()?.is_some() => Some(CodeVersion::legacy_of(&sweep.task)),
        recorded => recorded,
    };
    let version = version::choose(recorded.as_ref(), current, on_new).map_err(|mismatch| {
        CoordinatorError::NewVersion { sweep: sweep.name.clone(), dir: dir.to_path_buf(), mismatch }
    })?;
    let prepared = prepare(&mut store)?;
    let in_flight = store.in_flight()?;
    let plan = Plan::new(sweep, version.clone());
    let tasks = plan.task_jsons();
    let fingerprint = plan.fingerprint(sweep_text);
    let header = PlanHeader {
        sweep: &sweep.name,
        spec_path: file,
        spec: sweep_text,
        version: &version,
        tasks: &tasks,
        fingerprint: &fingerprint,
        len: plan.len(),
    };
    let started = std::time::Instant::now();
    let sync = std::thread::scope(|scope| store.sync_plan(&header, || plan_rows(&plan, scope)))?;
    tracing::debug!(sweep = %sweep.name, secs = started.elapsed().as_secs_f64(), "plan stored");
    // A command's ids may carry a version (an old store's) that no worker needs to have.
    let requires = current.get().and(version.get()).map(str::to_string);
    if requires.as_deref().is_some_and(|v| Some(v) != current.get()) {
        tracing::warn!(
            sweep = %sweep.name, recorded = %version, current = %current,
            "sweep planned with other code: its trials go only to workers that compute with the recorded version"
        );
    }
    Ok(Planned { store, lock, sync, in_flight, prepared, version, requires })
}

/// Plan entries computed per chunk, on the rayon pool, while the store writes the chunk before.
const PLAN_CHUNK: u64 = 1 << 20;

/// Every distinct trial of `plan` as the store records it, in plan order (a repeated id keeps
/// its first position), computed a chunk ahead on `scope`'s thread and the rayon pool.
fn plan_rows<'s>(plan: &'s Plan<'s>, scope: &'s std::thread::Scope<'s, '_>) -> impl Iterator<Item = PlanRow> + 's {
    use rayon::prelude::*;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<PlanRow>>(2);
    scope.spawn(move || {
        for start in (0..plan.len()).step_by(PLAN_CHUNK as usize) {
            let end = (start + PLAN_CHUNK).min(plan.len());
            // In plan order: trials are leased in plan order, so their rows are then read and
            // written in the order they lie in the table.
            let rows: Vec<PlanRow> = (start..end).into_par_iter().map(|seq| PlanRow::from(plan.trial(seq))).collect();
            if tx.send(rows).is_err() {
                // The store stopped reading (an error): nothing more to compute.
                return;
            }
        }
    });
    let mut seen = HashSet::new();
    let repeats = plan.repeats();
    rx.into_iter().flatten().filter(move |r| !repeats || seen.insert(r.id))
}

pub(crate) struct Entry {
    pub(crate) runner: SweepRunner,
    sweep_text: String,
    /// Its trials run programs on the workers (`kind = "command"`).
    commands: bool,
    /// The code version its ids are made with.
    version: CodeVersion,
    /// Held for the sweep's life: no other process may write its store.
    _lock: StateLock,
}

/// Every sweep of a coordinator, and what it needs to plan new ones.
pub(crate) struct SweepRegistry {
    root: Option<PathBuf>,
    cfg: CoordinatorConfig,
    code_version: fn(&TaskSpec) -> CodeVersion,
    entries: RwLock<Vec<Entry>>,
    /// Sweeps being planned (outside the lock of `entries`).
    planning: Mutex<HashSet<String>>,
    /// Rung when a sweep arrives, shared with every runner.
    work: Arc<Notify>,
    workers: Arc<AtomicU32>,
}

/// A claim on planning one sweep; dropping it releases the name.
struct Planning<'a> {
    set: &'a Mutex<HashSet<String>>,
    name: String,
}

impl<'a> Planning<'a> {
    fn claim(set: &'a Mutex<HashSet<String>>, name: &str) -> Result<Planning<'a>, CoordinatorError> {
        if !set.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string()) {
            return Err(CoordinatorError::Conflict(name.to_string()));
        }
        Ok(Planning { set, name: name.to_string() })
    }
}

impl Drop for Planning<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

impl SweepRegistry {
    pub(crate) fn new(
        root: Option<PathBuf>,
        cfg: CoordinatorConfig,
        code_version: fn(&TaskSpec) -> CodeVersion,
        work: Arc<Notify>,
        workers: Arc<AtomicU32>,
    ) -> SweepRegistry {
        SweepRegistry { root, cfg, code_version, entries: RwLock::default(), planning: Mutex::default(), work, workers }
    }

    pub(crate) fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    /// The sweeps, in submission order (a read lock: leasing and reporting go on together).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn root(&self) -> Result<&Path, CoordinatorError> {
        self.root.as_deref().ok_or(CoordinatorError::NoStateRoot)
    }

    /// The runner of a sweep by name (empty: the most recently submitted).
    pub(crate) fn find(&self, name: &str) -> Result<SweepRunner, CoordinatorError> {
        let entries = self.read();
        let found = if name.is_empty() { entries.last() } else { entries.iter().find(|e| e.runner.name() == name) };
        found.map(|e| e.runner.clone()).ok_or_else(|| CoordinatorError::NoSuchSweep(name.to_string()))
    }

    /// The running code's version for a sweep's task.
    pub(crate) fn current_version(&self, sweep: &Sweep) -> CodeVersion {
        (self.code_version)(&sweep.task)
    }

    /// Plans a sweep into its directory and starts serving it, owned by `claim` when it is a new
    /// sweep (else by whom its store records). `prepare` may change the store first.
    fn start(
        &self,
        req: PlanRequest<'_>,
        claim: Option<&str>,
        prepare: impl FnOnce(&mut Store) -> Result<u64, StoreError>,
    ) -> Result<(Entry, PlanSync, u64), CoordinatorError> {
        let PlanRequest { dir, sweep, sweep_text, .. } = req;
        let mut p = plan_into(req, &self.current_version(sweep), prepare)?;
        let owner = match claim {
            Some(o) => Some(p.store.claim_owner(o)?),
            None => p.store.owner()?,
        };
        let search = SearchDriver::prepare(&mut p.store, sweep, &p.version)?;
        let halving = crate::halving::HalvingDriver::prepare(&mut p.store, sweep, &p.version)?;
        if halving.is_none() {
            // Trials a halving of this state stopped at a rung run their whole budget now.
            let requeued = p.store.requeue_stopped()?;
            if requeued > 0 {
                tracing::info!(sweep = %sweep.name, requeued, "trials stopped at a rung of successive halving run their whole budget");
            }
        }
        let in_flight = if self.cfg.adopt_in_flight { p.in_flight } else { Vec::new() };
        let runner = SweepRunner::new(
            p.store,
            &self.cfg,
            self.work.clone(),
            self.workers.clone(),
            RunnerSetup { execution: sweep.execution.clone(), in_flight, requires: p.requires, search, halving, owner },
        )?;
        tracing::info!(
            sweep = %sweep.name, total = p.sync.total, new = p.sync.new, reused = p.sync.reused,
            requeued = p.sync.requeued, version = %p.version, state = %dir.display(), "sweep submitted"
        );
        Ok((
            Entry {
                runner,
                sweep_text: sweep_text.to_string(),
                commands: matches!(sweep.task, TaskSpec::Command(_)),
                version: p.version,
                _lock: p.lock,
            },
            p.sync,
            p.prepared,
        ))
    }

    fn push(&self, entry: Entry) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).push(entry);
        self.work.notify_waiters();
    }

    /// Plans a sweep into its state directory (not under the root) and serves it: what `kappa
    /// run` does with its `--state`.
    pub(crate) fn open(&self, req: PlanRequest<'_>) -> Result<(SweepRunner, PlanSync), CoordinatorError> {
        let planning = Planning::claim(&self.planning, &req.sweep.name)?;
        let (entry, sync, _) = self.start(req, None, |_| Ok(0))?;
        let runner = entry.runner.clone();
        self.push(entry);
        drop(planning);
        Ok((runner, sync))
    }

    /// Reloads every sweep under the state root (after a restart). Returns their names.
    pub(crate) fn load_all(&self) -> Result<Vec<String>, CoordinatorError> {
        let Some(root) = &self.root else { return Ok(Vec::new()) };
        let io = |source| CoordinatorError::StateRoot { path: root.clone(), source };
        std::fs::create_dir_all(root).map_err(io)?;
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(io)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| Store::db_path(p).is_file())
            .collect();
        dirs.sort();
        let mut names = Vec::new();
        for dir in dirs {
            let store = Store::open(&dir)?;
            let Some(info) = store.sweep_info()? else { continue };
            let cancelled = store.cancelled()?;
            drop(store);
            let submitted = self.submit(&Holder::anyone(), &info.spec, &info.spec_path, false)?;
            if cancelled && let Ok(r) = self.find(&submitted.sweep) {
                r.set_cancelled(true);
            }
            names.push(submitted.sweep);
        }
        Ok(names)
    }

    /// Plans a sweep from its file text into `<root>/<name>/` and starts serving it. Submitting
    /// the same sweep again is harmless; an edited one replaces it once it is finished or
    /// cancelled. A sweep planned with other code keeps its ids, and its trials go to workers
    /// that compute with that code, unless `rerun` plans it afresh with this process's. Planning
    /// (about 10 s per 10⁶ new trials on 2 cores; next to nothing for an unchanged sweep) happens
    /// outside the registry's lock, so the other sweeps keep leasing meanwhile. Submitting a
    /// sweep with command trials needs a holder that may run them; submitting again someone
    /// else's sweep needs an admin.
    pub(crate) fn submit(
        &self,
        by: &Holder,
        sweep_text: &str,
        file: &str,
        rerun: bool,
    ) -> Result<Submitted, CoordinatorError> {
        let root = self.root()?;
        let sweep = Sweep::parse(file, sweep_text)?;
        if matches!(sweep.task, TaskSpec::Command(_)) {
            by.may_run_commands(Action::Submit, &sweep.name)?;
        }
        if let Some(done) = self.resubmitted(root, by, &sweep, sweep_text, rerun)? {
            return Ok(done);
        }
        let planning = Planning::claim(&self.planning, &sweep.name)?;
        let on_new = if rerun { OnNewVersion::Rerun } else { OnNewVersion::Keep };
        let dir = root.join(&sweep.name);
        // A store under this name that no entry serves (one whose restart failed, or a sweep an
        // edit replaced a moment ago) is still someone's: its recorded owner decides, before
        // anything is planned into it. A new one is the submitter's.
        // (A store whose first planning was cut off holds neither a sweep nor an owner, or not
        // even its schema: it is planned as a new one.)
        let recorded = match Store::db_path(&dir).is_file().then(|| Store::open(&dir)) {
            Some(Ok(store)) => {
                let owner = store.owner()?;
                (store.sweep_info()?.is_some() || owner.is_some()).then_some(owner)
            }
            Some(Err(_)) | None => None,
        };
        if let Some(owner) = &recorded {
            by.may_change(Action::Submit, &sweep.name, owner.as_deref())?;
        }
        let claim = if recorded.is_some() { None } else { by.owner() };
        let (entry, sync, _) =
            self.start(PlanRequest { dir: &dir, sweep: &sweep, sweep_text, file, on_new }, claim, |_| Ok(0))?;
        self.push(entry);
        drop(planning);
        Ok(Submitted { sweep: sweep.name, sync })
    }

    /// A submission of a sweep already served: the same definition is a no-op (resuming it if
    /// cancelled); an edited one, or one to plan afresh with new code (`rerun`), replaces a
    /// finished or cancelled sweep (`None`: plan it) and conflicts with a running one.
    fn resubmitted(
        &self,
        root: &Path,
        by: &Holder,
        sweep: &Sweep,
        sweep_text: &str,
        rerun: bool,
    ) -> Result<Option<Submitted>, CoordinatorError> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let Some(i) = entries.iter().position(|e| e.runner.name() == sweep.name) else { return Ok(None) };
        let e = &entries[i];
        by.may_change(Action::Submit, &sweep.name, e.runner.owner())?;
        let new_code = rerun
            && version::choose(Some(&e.version), &self.current_version(sweep), OnNewVersion::Rerun)
                .is_ok_and(|v| v != e.version);
        if e.sweep_text == sweep_text && !new_code {
            if e.runner.is_cancelled() {
                // Submitting a cancelled sweep again resumes it.
                e.runner.set_cancelled(false);
                Store::open(&root.join(&sweep.name))?.set_cancelled(false)?;
            }
            let c = e.runner.progress().counts;
            return Ok(Some(Submitted {
                sweep: sweep.name.clone(),
                sync: PlanSync { total: c.total, new: 0, reused: c.done(), requeued: 0 },
            }));
        }
        if !e.runner.is_finished() && !e.runner.is_cancelled() {
            return Err(if e.sweep_text == sweep_text {
                CoordinatorError::RerunConflict(sweep.name.clone())
            } else {
                CoordinatorError::Conflict(sweep.name.clone())
            });
        }
        let old = entries.remove(i);
        old.runner.shutdown()?;
        if old.runner.is_cancelled() {
            // The new definition runs: a restarted coordinator must not find it cancelled.
            drop(old);
            Store::open(&root.join(&sweep.name))?.set_cancelled(false)?;
        }
        Ok(None)
    }

    /// Cancels a sweep (empty name: the latest): nothing more is leased and its leases are
    /// revoked. Returns its name and how many trials are left unfinished.
    pub(crate) fn cancel(&self, by: &Holder, name: &str) -> Result<(String, u64), CoordinatorError> {
        let r = self.authorize(by, Action::Cancel, name)?;
        r.set_cancelled(true);
        if let Some(root) = &self.root {
            Store::open(&root.join(r.name()))?.set_cancelled(true)?;
        }
        let c = r.progress().counts;
        Ok((r.name().to_string(), c.pending + c.running))
    }

    /// Puts a sweep's failed trials back to pending (`kappa retry --failed`); empty name: the
    /// latest sweep. Returns the sweep's name and how many trials will run again.
    pub(crate) fn retry_failed(&self, by: &Holder, name: &str) -> Result<(String, u64), CoordinatorError> {
        let root = self.root()?;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let i = Self::authorized(&entries, by, Action::Retry, name)?;
        let old = entries.remove(i);
        old.runner.shutdown()?;
        let (sweep_text, sweep_name) = (old.sweep_text.clone(), old.runner.name().to_string());
        drop(old);
        let dir = root.join(&sweep_name);
        let file = Store::open(&dir)?.sweep_info()?.map(|i| i.spec_path).unwrap_or_default();
        let sweep = Sweep::parse(&file, &sweep_text)?;
        let req =
            PlanRequest { dir: &dir, sweep: &sweep, sweep_text: &sweep_text, file: &file, on_new: OnNewVersion::Keep };
        let (entry, _, requeued) = self.start(req, None, |s| s.reset_failed())?;
        entries.push(entry);
        drop(entries);
        self.work.notify_waiters();
        Ok((sweep_name, requeued))
    }

    /// The runner of the sweep `by` may cancel or retry (`action`) by that name, or the refusal.
    /// An empty name is the latest sweep a holder of a tokens file owns (anyone else's latest
    /// is never changed by not naming it), else the latest sweep.
    pub(crate) fn authorize(&self, by: &Holder, action: Action, name: &str) -> Result<SweepRunner, CoordinatorError> {
        if action == Action::Retry {
            // A retry plans the sweep again under the state root.
            self.root()?;
        }
        let entries = self.read();
        let i = Self::authorized(&entries, by, action, name)?;
        Ok(entries[i].runner.clone())
    }

    fn authorized(entries: &[Entry], by: &Holder, action: Action, name: &str) -> Result<usize, CoordinatorError> {
        let i = match (name, by.owner()) {
            ("", Some(me)) => entries
                .iter()
                .rposition(|e| e.runner.owner() == Some(me))
                .ok_or_else(|| CoordinatorError::NoSweepOf(me.to_string()))?,
            ("", None) => entries.len().checked_sub(1).ok_or_else(|| CoordinatorError::NoSuchSweep(String::new()))?,
            (name, _) => entries
                .iter()
                .position(|e| e.runner.name() == name)
                .ok_or_else(|| CoordinatorError::NoSuchSweep(name.to_string()))?,
        };
        let e = &entries[i];
        by.may_change(action, e.runner.name(), e.runner.owner())?;
        if e.commands && action == Action::Retry {
            by.may_run_commands(Action::Retry, e.runner.name())?;
        }
        Ok(i)
    }

    /// A sweep's file and every trial record (empty name: the latest sweep), read from its store.
    pub(crate) fn results(
        &self,
        name: &str,
    ) -> Result<(kappa_store::SweepInfo, Vec<kappa_store::TrialRecord>), CoordinatorError> {
        let root = self.root()?;
        let r = self.find(name)?;
        let store = Store::open(&root.join(r.name()))?;
        let info = store.sweep_info()?.ok_or_else(|| CoordinatorError::NoSuchSweep(name.to_string()))?;
        Ok((info, store.trials()?))
    }

    /// Commits everything queued in every sweep and closes the stores.
    pub(crate) fn shutdown(&self) -> Result<(), CoordinatorError> {
        let mut first = Ok(());
        for e in self.read().iter() {
            if let Err(err) = e.runner.shutdown()
                && first.is_ok()
            {
                first = Err(err);
            }
        }
        first
    }
}
