//! The store writer: one thread owns the SQLite connection and commits whatever has queued up
//! since its last commit in one transaction (group commit), so the scheduler never waits on disk.
//!
//! Under load (a commit of [`BUSY`] operations or more) leases are written behind: a lease is
//! held back up to [`LEASE_BEHIND`], and a trial that ends meanwhile (the common case for short
//! trials at high rates) is written once, lease and result together, instead of twice. A lease
//! still open after that is written as it was. So a crash loses at most the leases of the last
//! [`LEASE_BEHIND`]: those trials are pending again on resume, as they would be once re-queued.
//! An idle or lightly loaded writer records every lease at once.

use kappa_core::TrialId;
use kappa_store::{Store, StoreError, StoreOp};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest batch committed at once.
const MAX_BATCH: usize = 8192;

/// Shortest time between two commits: under load, what arrives meanwhile goes in one
/// transaction (one WAL sync, each page written once however many trials changed it).
/// An idle writer commits the first operation at once.
const COMMIT_EVERY: Duration = Duration::from_millis(20);

/// How long a lease is held back under load waiting for its trial's result, so that a short
/// trial's lease and result are written once (see the module docs). It is also what a crash can
/// lose: the leases of the last 2 s, whose trials are then pending again on resume.
pub const LEASE_BEHIND: Duration = Duration::from_secs(2);

/// A commit this large means load: leases are written behind until commits are small again.
pub const BUSY: usize = 512;

/// Operations queued and not yet committed beyond which the runner leases nothing more until
/// the writer catches up: memory stays bounded, and the rate a sweep runs at is the rate its
/// results are recorded at.
pub const MAX_BACKLOG: u64 = 50_000;

/// Handle to the writer thread.
pub struct StoreWriter {
    tx: Mutex<Option<Sender<StoreOp>>>,
    thread: Mutex<Option<JoinHandle<Result<Store, StoreError>>>>,
    failed: Arc<Mutex<Option<String>>>,
    /// Operations queued so far (shared with the thread), and operations committed so far.
    sent: Arc<AtomicU64>,
    committed: tokio::sync::watch::Receiver<u64>,
}

/// Leases held back by the writer, in the order they came.
#[derive(Default)]
struct Behind {
    ops: HashMap<TrialId, StoreOp>,
    order: VecDeque<(Instant, TrialId)>,
}

impl Behind {
    /// Holds a lease; returns one held for the same trial before, to be written first (cannot
    /// happen: a trial is leased again only after its lease ended, which takes the held one).
    fn hold(&mut self, id: TrialId, op: StoreOp, now: Instant) -> Option<StoreOp> {
        let earlier = self.ops.insert(id, op);
        if earlier.is_none() {
            self.order.push_back((now, id));
        }
        earlier
    }

    /// The held lease of `id`, if any.
    fn take(&mut self, id: TrialId) -> Option<StoreOp> {
        self.ops.remove(&id)
    }

    /// Leases held since before `due` (every one with `None`), oldest first.
    fn due(&mut self, due: Option<Instant>, out: &mut Vec<StoreOp>) {
        while let Some(&(at, id)) = self.order.front() {
            if due.is_some_and(|d| at > d) {
                break;
            }
            self.order.pop_front();
            // Gone already when its trial's report took it.
            if let Some(op) = self.ops.remove(&id) {
                out.push(op);
            }
        }
    }

    /// When the oldest held lease is due.
    fn next_due(&self) -> Option<Instant> {
        self.order.front().map(|&(at, _)| at + LEASE_BEHIND)
    }
}

/// The trial an operation is about.
fn trial_of(op: &StoreOp) -> Option<TrialId> {
    match op {
        StoreOp::Leased { id, .. }
        | StoreOp::Reported { id, .. }
        | StoreOp::Lost { id, .. }
        | StoreOp::Halted { id, .. } => Some(*id),
        StoreOp::HaltedAfter { .. } | StoreOp::Proposed { .. } | StoreOp::Promoted { .. } => None,
    }
}

impl StoreWriter {
    /// Starts the writer thread of sweep `sweep`; it owns `store` until [`StoreWriter::close`].
    /// `caught_up` is rung after each large commit (lease calls held back by the backlog wait on
    /// it).
    pub fn start(mut store: Store, sweep: &str, caught_up: Arc<tokio::sync::Notify>) -> StoreWriter {
        let sweep = sweep.to_string();
        let (tx, rx): (Sender<StoreOp>, Receiver<StoreOp>) = channel();
        let failed = Arc::new(Mutex::new(None));
        let flag = failed.clone();
        let (done, committed) = tokio::sync::watch::channel(0u64);
        let sent = Arc::new(AtomicU64::new(0));
        let queued = sent.clone();
        let thread = std::thread::Builder::new()
            .name("kappa-store-writer".into())
            .spawn(move || {
                let mut behind = Behind::default();
                let mut batch = Vec::with_capacity(1024);
                let mut last_commit = Instant::now() - COMMIT_EVERY;
                let mut closed = false;
                let mut busy = false;
                while !closed {
                    // Wait for work, or for the oldest held lease to fall due.
                    let first = match behind.next_due() {
                        Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    let mut received = Vec::new();
                    match first {
                        Ok(op) => received.push(op),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => closed = true,
                    }
                    if !received.is_empty() {
                        if let Some(wait) = COMMIT_EVERY.checked_sub(last_commit.elapsed()) {
                            std::thread::sleep(wait);
                        }
                        while received.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(op) => received.push(op),
                                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                    closed = true;
                                    break;
                                }
                            }
                        }
                    }
                    let now = Instant::now();
                    for op in received {
                        if let StoreOp::Leased { id, .. } = &op
                            && busy
                            && !closed
                        {
                            if let Some(earlier) = behind.hold(*id, op, now) {
                                batch.push(earlier);
                            }
                            continue;
                        }
                        // Whatever else happens to a trial comes after its lease.
                        if let Some(lease) = trial_of(&op).and_then(|id| behind.take(id)) {
                            batch.push(lease);
                        }
                        if let StoreOp::HaltedAfter { .. } = op {
                            behind.due(None, &mut batch);
                        }
                        batch.push(op);
                    }
                    behind.due(if closed { None } else { now.checked_sub(LEASE_BEHIND) }, &mut batch);
                    if batch.is_empty() {
                        continue;
                    }
                    if let Err(e) = store.apply(&batch) {
                        tracing::error!(sweep = %sweep, error = %e, ops = batch.len(), "store write failed");
                        if let Ok(mut f) = flag.lock() {
                            *f = Some(e.to_string());
                        }
                        return Err(e);
                    }
                    last_commit = Instant::now();
                    busy = batch.len() >= BUSY;
                    // A held lease counts as committed once it is written.
                    done.send_modify(|n| *n += batch.len() as u64);
                    // Lease calls held back by the backlog re-check it now (after the count).
                    if queued.load(Ordering::SeqCst).saturating_sub(*done.borrow()) + batch.len() as u64 > MAX_BACKLOG {
                        caught_up.notify_waiters();
                    }
                    batch.clear();
                }
                Ok(store)
            })
            .ok();
        if thread.is_none()
            && let Ok(mut f) = failed.lock()
        {
            *f = Some("could not start the store writer thread".into());
        }
        StoreWriter { tx: Mutex::new(Some(tx)), thread: Mutex::new(thread), failed, sent, committed }
    }

    /// Waits until everything queued before the call is committed (or the writer stopped), so a
    /// reader of the store that is told afterwards sees it.
    pub async fn flushed(&self) {
        let target = self.sent.load(Ordering::SeqCst);
        let mut rx = self.committed.clone();
        // An error means the thread is gone (closed or failed): nothing more will be committed.
        let _ = rx.wait_for(|n| *n >= target).await;
    }

    /// Operations queued and not yet committed.
    pub fn backlog(&self) -> u64 {
        self.sent.load(Ordering::SeqCst).saturating_sub(*self.committed.borrow())
    }

    /// Queues an operation. Never blocks on disk.
    pub fn send(&self, op: StoreOp) {
        if let Ok(guard) = self.tx.lock()
            && let Some(tx) = guard.as_ref()
        {
            // A send fails only when the writer died; `failure()` reports why.
            if tx.send(op).is_ok() {
                self.sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Queues several operations.
    pub fn send_all(&self, ops: impl IntoIterator<Item = StoreOp>) {
        for op in ops {
            self.send(op);
        }
    }

    /// Records a failure to keep the record (reported like a write error; the first one stays).
    pub fn fail(&self, why: String) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert(why);
        }
    }

    /// The write error that stopped the writer, if any.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Commits everything queued and stops the thread, returning the store.
    pub fn close(&self) -> Result<Option<Store>, StoreError> {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        match handle {
            Some(h) => match h.join() {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::{AttemptOutcome, CodeVersion, TrialMetrics};
    use kappa_store::{PlanHeader, PlanRow, ReportEffect};

    #[test]
    fn under_load_a_lease_and_its_result_are_written_once_with_the_lease_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(dir.path()).unwrap();
        let n = 2 * BUSY as u64;
        let tasks = ["{}".to_string()];
        let header = PlanHeader {
            sweep: "w",
            spec_path: "w.toml",
            spec: "",
            version: &CodeVersion::NONE,
            tasks: &tasks,
            fingerprint: "f",
            len: n,
        };
        let rows =
            || (0..n).map(|i| PlanRow { id: TrialId(i + 1), seq: i, task: 0, params: "{}".into(), origin: None });
        store.sync_plan(&header, rows).unwrap();
        let writer = StoreWriter::start(store, "w", Arc::default());
        // Enough leases for a busy commit, then more while busy, then every result.
        let lease = |i: u64| StoreOp::Leased { id: TrialId(i + 1), attempt: 1, worker: "w".into(), at: 10.0 };
        writer.send_all((0..BUSY as u64).map(lease));
        writer.send_all((BUSY as u64..n).map(lease));
        writer.send_all((0..n).map(|i| StoreOp::Reported {
            id: TrialId(i + 1),
            attempt: 1,
            worker: "w".into(),
            at: 20.0,
            duration_s: 0.1,
            outcome: AttemptOutcome::Succeeded(TrialMetrics::default()),
            effect: ReportEffect::Final,
            rung: None,
        }));
        writer.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.counts().unwrap().succeeded, n);
        let log = store.attempts().unwrap();
        assert_eq!(log.len() as u64, n);
        // Whether its lease was held back or written first, every attempt starts at its lease.
        assert!(log.iter().all(|a| a.started_at == 10.0 && a.ended_at == Some(20.0) && a.counted), "{log:?}");
        assert!(store.trials().unwrap().iter().all(|t| t.attempts == 1 && t.started_at == Some(10.0)));
    }
}
