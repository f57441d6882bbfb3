//! The worker registry: who registered, with what, and when each was last heard from (after
//! Ballista's executor manager).

use crate::access::{Access, Action, Holder};
use kappa_core::WorkerId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

struct Worker {
    /// `name#id`, as the store and logs show it.
    name: String,
    slots: u32,
    gpus: u32,
    /// The code versions it computes with.
    versions: Arc<[String]>,
    last_seen: Instant,
    /// Marked lost (silent for longer than a lease); logged once.
    lost: bool,
    /// Who registered it.
    holder: Arc<Holder>,
}

/// A registered worker, as `kappa status --coordinator` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    /// `name#id`.
    pub name: String,
    /// Trials it runs at once.
    pub slots: u32,
    /// GPUs it has.
    pub gpus: u32,
    /// The code versions it computes with.
    pub code_versions: Vec<String>,
    /// Seconds since it was last heard from.
    pub silent_s: f64,
    /// Silent for longer than a lease.
    pub lost: bool,
    /// Sweeps with trials waiting that it cannot be leased, because they were planned with code
    /// it does not compute with.
    pub blocked: Vec<Blocked>,
}

/// A sweep a worker cannot run: planned with code it does not compute with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The sweep.
    pub sweep: String,
    /// The code version its trials need.
    pub needs: String,
    /// Its trials waiting.
    pub pending: u64,
}

/// The first worker id of this process: the clock's milliseconds (mod 10⁹) times 10⁴, plus one.
/// A worker that outlived a restarted coordinator still carries an id of the one before, which
/// this process does not hand out again (unless the one before registered 10⁴ workers per
/// millisecond between the two starts, or the restart comes 10⁹ ms, about 11.6 days, later to the
/// millisecond): the coordinator takes it for an unknown worker (register again; its reports
/// are fenced by their leases) rather than for another holder's worker, which a worker token may
/// not act for. Ids stay below 2⁵³, exact in JSON.
fn first_id() -> u64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    (ms % 1_000_000_000) as u64 * 10_000 + 1
}

/// Registered workers.
pub(crate) struct WorkerRegistry {
    workers: Mutex<HashMap<WorkerId, Worker>>,
    /// How many, shared with every sweep runner for its progress reports.
    count: Arc<AtomicU32>,
    next: AtomicU64,
}

impl WorkerRegistry {
    pub(crate) fn new() -> WorkerRegistry {
        WorkerRegistry {
            workers: Mutex::default(),
            count: Arc::new(AtomicU32::new(0)),
            next: AtomicU64::new(first_id()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<WorkerId, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a worker; returns its id and the name the store and logs know it by.
    pub(crate) fn register(
        &self,
        holder: Arc<Holder>,
        name: &str,
        slots: u32,
        gpus: u32,
        versions: Vec<String>,
    ) -> (WorkerId, String) {
        let id = WorkerId(self.next.fetch_add(1, Ordering::Relaxed));
        let full = format!("{name}#{}", id.0);
        let mut w = self.lock();
        let versions = versions.into();
        let last_seen = Instant::now();
        w.insert(id, Worker { name: full.clone(), slots, gpus, versions, last_seen, lost: false, holder });
        self.count.store(w.len() as u32, Ordering::Relaxed);
        (id, full)
    }

    /// Forgets a worker; returns its name if it was registered.
    pub(crate) fn remove(&self, id: WorkerId) -> Option<String> {
        let mut w = self.lock();
        let gone = w.remove(&id).map(|w| w.name);
        self.count.store(w.len() as u32, Ordering::Relaxed);
        gone
    }

    /// Whether a worker id is registered; a registered worker heard from again is no longer lost.
    pub(crate) fn touch(&self, id: WorkerId) -> bool {
        let mut w = self.lock();
        let Some(worker) = w.get_mut(&id) else { return false };
        worker.last_seen = Instant::now();
        if std::mem::take(&mut worker.lost) {
            tracing::info!(worker = %worker.name, "worker back");
        }
        true
    }

    /// Who registered a worker (`None`: not registered).
    pub(crate) fn holder(&self, id: WorkerId) -> Option<Arc<Holder>> {
        self.lock().get(&id).map(|w| w.holder.clone())
    }

    /// Forgets the workers whose holder's token `access` no longer lets work; returns their ids
    /// and names.
    pub(crate) fn remove_revoked(&self, access: &Access) -> Vec<(WorkerId, String)> {
        let mut w = self.lock();
        let gone: Vec<WorkerId> =
            w.iter().filter(|(_, x)| access.still(&x.holder, Action::Work).is_err()).map(|(id, _)| *id).collect();
        let out = gone.into_iter().filter_map(|id| w.remove(&id).map(|x| (id, x.name))).collect();
        self.count.store(w.len() as u32, Ordering::Relaxed);
        out
    }

    /// Whether a worker id is registered.
    pub(crate) fn knows(&self, id: WorkerId) -> bool {
        self.lock().contains_key(&id)
    }

    /// A worker's name (its id when it is not registered, e.g. after a coordinator restart).
    pub(crate) fn name(&self, id: WorkerId) -> String {
        self.lock().get(&id).map(|w| w.name.clone()).unwrap_or_else(|| id.to_string())
    }

    /// A worker's name and the code versions it computes with (none when it is not registered).
    pub(crate) fn identity(&self, id: WorkerId) -> (String, Arc<[String]>) {
        match self.lock().get(&id) {
            Some(w) => (w.name.clone(), w.versions.clone()),
            None => (id.to_string(), Arc::from(Vec::new())),
        }
    }

    /// Every registered worker, by id.
    pub(crate) fn list(&self) -> Vec<WorkerInfo> {
        let now = Instant::now();
        let mut all: Vec<(WorkerId, WorkerInfo)> = self
            .lock()
            .iter()
            .map(|(id, w)| {
                let info = WorkerInfo {
                    name: w.name.clone(),
                    slots: w.slots,
                    gpus: w.gpus,
                    code_versions: w.versions.to_vec(),
                    silent_s: now.duration_since(w.last_seen).as_secs_f64(),
                    lost: w.lost,
                    blocked: Vec::new(),
                };
                (*id, info)
            })
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, w)| w).collect()
    }

    /// Whether some registered worker computes with `version`.
    pub(crate) fn any_computes(&self, version: &str) -> bool {
        self.lock().values().any(|w| w.versions.iter().any(|v| v == version))
    }

    /// Every code version the registered workers compute with, sorted.
    pub(crate) fn versions(&self) -> Vec<String> {
        let mut all: Vec<String> = self.lock().values().flat_map(|w| w.versions.iter().cloned()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Marks (and logs, once) the workers not heard from for longer than `silence`.
    pub(crate) fn mark_lost(&self, silence: Duration) {
        let now = Instant::now();
        for w in self.lock().values_mut() {
            if !w.lost && now.duration_since(w.last_seen) > silence {
                w.lost = true;
                tracing::warn!(worker = %w.name, silent_s = now.duration_since(w.last_seen).as_secs_f64(), "worker lost");
            }
        }
    }

    /// The most GPUs any registered worker has.
    pub(crate) fn most_gpus(&self) -> u32 {
        self.lock().values().map(|w| w.gpus).max().unwrap_or(0)
    }

    /// Registered workers.
    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The shared counter of registered workers.
    pub(crate) fn counter(&self) -> Arc<AtomicU32> {
        self.count.clone()
    }
}
