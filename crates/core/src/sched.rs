//! The lease/attempt state machine: which trial is where, and which report counts.
//!
//! Pure and synchronous: time is passed in as milliseconds, so the coordinator drives it from a
//! clock and tests drive it from a script. Invariants it keeps:
//! - a trial is in exactly one of pending / leased / done;
//! - every lease carries a fresh attempt number (attempts only grow);
//! - only a report for the *current* lease of a trial changes state; any other report is late;
//! - a terminal trial never changes again.
//!
//! It holds only what it needs: open trials (pending, leased, backing off) in full, finished
//! ones as a bare id (a late report for one is recognised as late). A large plan's pending
//! trials need not all be in memory: the caller declares how many it has not loaded yet
//! ([`Scheduler::expect`]) and feeds them in plan order ([`Scheduler::load`]) as the queue
//! drains, so a sweep of 10⁷ trials starts leasing after its first chunk is read.

use crate::id::TrialId;
use crate::lease::Lease;
use crate::params::Params;
use crate::spec::Execution;
use crate::trial::{AttemptOutcome, Counts, FailureClass, TrialStatus};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// A registered worker, numbered by the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

impl WorkerId {
    /// The holder of a lease recovered after a coordinator restart: the worker that held it is
    /// not known yet. The first worker to renew or report that exact (trial, attempt) adopts it.
    pub const ORPHAN: WorkerId = WorkerId(0);
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Scheduler settings: the lease timing of the process, and the sweep's own `[execution]` table
/// as the sweep file gave it.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The sweep's name, handed out with every lease.
    pub sweep: Arc<str>,
    /// A lease not renewed for this long expires.
    pub lease_timeout: Duration,
    /// A failed attempt's retry waits this long, doubling with each failure (capped at
    /// [`SchedulerConfig::MAX_RETRY_BACKOFF`]); zero retries at once.
    pub retry_backoff: Duration,
    /// The sweep's execution settings. Its retries are per failure class, lost leases included:
    /// a trial whose worker dies or hangs every time (out of memory, say) must not be re-run
    /// forever. Its failure budget bounds the failed attempts (every class) of the whole sweep;
    /// once used up, the sweep halts: nothing more is retried and every pending trial fails with
    /// that reason. Its timeout and GPUs go out with every lease.
    pub execution: Execution,
}

impl SchedulerConfig {
    /// Default for `retry_backoff`.
    pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
    /// Longest wait before a retry.
    pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

    fn lease_timeout_ms(&self) -> u64 {
        self.lease_timeout.as_millis() as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Pending,
    Leased { worker: WorkerId, deadline: u64 },
}

#[derive(Debug)]
struct Entry {
    params: Params,
    /// Its task's canonical JSON (shared by every trial of the same task).
    task: Arc<str>,
    attempt: u32,
    /// Failed attempts by class ([`FailureClass::index`]).
    failures: [u32; 4],
    /// A retry is not leased before this time.
    not_before: u64,
    state: State,
}

/// What the scheduler made of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// It was the current attempt; the trial is now in `status` (`Pending` when it will be retried).
    Accepted {
        /// The trial's status after the report.
        status: TrialStatus,
    },
    /// Not the current attempt (superseded, expired, or the trial is already done): recorded, not counted.
    Late,
    /// No such trial.
    Unknown,
}

/// A lease that was taken back (expired, or its worker left).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The trial, now pending again.
    pub id: TrialId,
    /// The attempt that was abandoned.
    pub attempt: u32,
    /// The worker that held it.
    pub worker: WorkerId,
    /// The lease expired (a failed attempt of class `lost`), rather than being handed back.
    pub expired: bool,
    /// The trial lost too many leases (or the failure budget ran out) and is now failed for
    /// good, not pending.
    pub gave_up: bool,
}

/// Why a trial failed for good without a report of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// It lost more leases than its retries allow.
    Lost,
    /// The sweep's failure budget ran out before it could run (again).
    Budget,
}

/// Pending trials the failure budget failed before the caller loaded them (see
/// [`Scheduler::take_halted_tail`]): the caller fails them in its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaltedTail {
    /// They come after this plan position (`None`: none was loaded).
    pub after_seq: Option<u64>,
    /// How many there were.
    pub count: u64,
}

/// The state machine.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    /// Open trials: pending, leased or backing off.
    entries: HashMap<TrialId, Entry>,
    /// Finished trials (a report for one is late).
    done: HashSet<TrialId>,
    queue: VecDeque<TrialId>,
    /// Pending trials counted but not loaded yet, and the plan position of the last one loaded.
    unloaded: u64,
    loaded_through: Option<u64>,
    halted_tail: Option<HaltedTail>,
    counts: Counts,
    /// The latest time the scheduler was told (reports carry none; they use this).
    clock: u64,
    /// Failed attempts of the sweep so far (every class, this run and earlier ones).
    failed_attempts: u64,
    /// Trials failed because the failure budget ran out, not yet collected by the caller.
    halted: Vec<(TrialId, u32)>,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(cfg: SchedulerConfig) -> Scheduler {
        Scheduler {
            cfg,
            entries: HashMap::new(),
            done: HashSet::new(),
            queue: VecDeque::new(),
            unloaded: 0,
            loaded_through: None,
            halted_tail: None,
            counts: Counts::default(),
            clock: 0,
            failed_attempts: 0,
            halted: Vec::new(),
        }
    }

    /// Counts `n` failed attempts from earlier runs against the failure budget.
    pub fn set_failed_attempts(&mut self, n: u64) {
        self.failed_attempts = n;
    }

    /// Failed attempts of the sweep so far.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts
    }

    /// Whether the failure budget is used up.
    pub fn is_halted(&self) -> bool {
        self.cfg.execution.failure_budget.is_some_and(|b| self.failed_attempts >= b)
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Trials failed since the last call because the failure budget ran out, with their last
    /// attempt number: the caller records why.
    pub fn take_halted(&mut self) -> Vec<(TrialId, u32)> {
        std::mem::take(&mut self.halted)
    }

    /// The unloaded pending trials the failure budget failed since the last call, if any.
    pub fn take_halted_tail(&mut self) -> Option<HaltedTail> {
        self.halted_tail.take()
    }

    /// Counts `n` more pending trials that the caller will [`Scheduler::load`] later, in plan
    /// order (until then they are pending, and the sweep is not finished).
    pub fn expect(&mut self, n: u64) {
        self.counts.add(TrialStatus::Pending, n);
        self.unloaded += n;
    }

    /// Pending trials counted by [`Scheduler::expect`] and not loaded yet.
    pub fn unloaded(&self) -> u64 {
        self.unloaded
    }

    /// The plan position of the last trial loaded (`None`: none yet).
    pub fn loaded_through(&self) -> Option<u64> {
        self.loaded_through
    }

    /// Trials waiting in the queue (pending, or backing off before a retry).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Loads one of the expected trials: like [`Scheduler::add`] for a pending trial, without
    /// counting it again. `seq` is its plan position, after every one loaded before (`None`: a
    /// trial loaded out of order, one to adopt in flight). Returns whether it was new here (a
    /// trial already here is skipped and does not count as loaded); nothing is loaded once the
    /// expected ones are.
    pub fn load(
        &mut self,
        seq: Option<u64>,
        id: TrialId,
        params: Params,
        task: Arc<str>,
        attempts: u32,
        failures: [u32; 4],
    ) -> bool {
        if let Some(seq) = seq {
            // Read, loaded or not: the next read starts after it.
            self.loaded_through = Some(self.loaded_through.map_or(seq, |s| s.max(seq)));
        }
        if self.unloaded == 0 || self.entries.contains_key(&id) || self.done.contains(&id) {
            return false;
        }
        self.unloaded -= 1;
        self.queue.push_back(id);
        self.entries
            .insert(id, Entry { params, task, attempt: attempts, failures, not_before: 0, state: State::Pending });
        true
    }

    /// Adds a trial as the store knows it: its parameters and its task (canonical JSON),
    /// `attempts` leases so far, `failures` of them failed by class. A non-terminal status
    /// (pending, or running from a process that is gone) becomes pending.
    pub fn add(
        &mut self,
        id: TrialId,
        params: Params,
        task: Arc<str>,
        attempts: u32,
        failures: [u32; 4],
        status: TrialStatus,
    ) {
        if self.entries.contains_key(&id) || self.done.contains(&id) {
            return;
        }
        if status.is_terminal() {
            self.counts.add(status, 1);
            self.done.insert(id);
            return;
        }
        self.counts.add(TrialStatus::Pending, 1);
        self.queue.push_back(id);
        self.entries
            .insert(id, Entry { params, task, attempt: attempts, failures, not_before: 0, state: State::Pending });
    }

    /// How much longer than a lease an in-flight attempt recovered after a restart waits for its
    /// worker to come back.
    pub const RECONNECT_GRACE_MS: u64 = 10_000;

    /// Marks a pending trial as still running its `attempt` somewhere (a lease the store showed
    /// open when the coordinator restarted). The worker that runs it adopts the lease by renewing
    /// or reporting it before the usual lease timeout; otherwise it expires like any lease.
    /// Returns whether the trial was adopted as in flight.
    pub fn resume_in_flight(&mut self, id: TrialId, attempt: u32) -> bool {
        // Workers reconnect with a backoff of up to 5 s: give them that on top of a lease.
        let deadline = self.clock + self.cfg.lease_timeout_ms() + Self::RECONNECT_GRACE_MS;
        match self.entries.get_mut(&id) {
            Some(e) if e.state == State::Pending && e.attempt == attempt && attempt > 0 => {
                // It stays in the queue; `lease` skips entries that are not pending.
                e.state = State::Leased { worker: WorkerId::ORPHAN, deadline };
                self.counts.shift(TrialStatus::Pending, TrialStatus::Running);
                true
            }
            _ => false,
        }
    }

    /// Counts by status.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether every trial is terminal.
    pub fn is_finished(&self) -> bool {
        self.counts.done() == self.counts.total
    }

    /// Leases up to `max` pending trials to `worker`.
    pub fn lease(&mut self, worker: WorkerId, now_ms: u64, max: usize) -> Vec<Lease> {
        self.clock = self.clock.max(now_ms);
        let mut out = Vec::new();
        if self.is_halted() {
            self.halt();
            return out;
        }
        let mut waiting = Vec::new();
        let mut budget = self.queue.len();
        while out.len() < max && budget > 0 {
            budget -= 1;
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.state != State::Pending {
                continue;
            }
            if e.not_before > now_ms {
                // A retry still backing off keeps its place in line.
                waiting.push(id);
                continue;
            }
            e.attempt += 1;
            e.state = State::Leased { worker, deadline: now_ms + self.cfg.lease_timeout_ms() };
            self.counts.shift(TrialStatus::Pending, TrialStatus::Running);
            out.push(Lease {
                id,
                sweep: self.cfg.sweep.clone(),
                attempt: e.attempt,
                params: e.params.clone(),
                task: e.task.clone(),
                timeout: self.cfg.execution.timeout,
                gpus: self.cfg.execution.gpus,
            });
        }
        for id in waiting.into_iter().rev() {
            self.queue.push_front(id);
        }
        out
    }

    /// Renews the leases `worker` says it holds; returns those that are no longer its current ones
    /// (the worker should abandon them).
    pub fn heartbeat(&mut self, worker: WorkerId, held: &[(TrialId, u32)], now_ms: u64) -> Vec<(TrialId, u32)> {
        self.clock = self.clock.max(now_ms);
        let mut stale = Vec::new();
        for &(id, attempt) in held {
            match self.entries.get_mut(&id) {
                Some(Entry { attempt: a, state: State::Leased { worker: w, deadline }, .. })
                    if *a == attempt && (*w == worker || *w == WorkerId::ORPHAN) =>
                {
                    *w = worker;
                    *deadline = now_ms + self.cfg.lease_timeout_ms();
                }
                _ => stale.push((id, attempt)),
            }
        }
        stale
    }

    /// Applies a report of how (`id`, `attempt`) ended, from `worker`. A failed attempt is
    /// retried while its class's retries and the sweep's failure budget last; a divergence is
    /// final.
    pub fn report(&mut self, worker: WorkerId, id: TrialId, attempt: u32, outcome: &AttemptOutcome) -> Disposition {
        let retries = self.cfg.execution.retries;
        let budget_left = self.cfg.execution.failure_budget.is_none_or(|b| self.failed_attempts + 1 < b);
        let backoff = self.cfg.retry_backoff.as_millis() as u64;
        let clock = self.clock;
        let Some(e) = self.entries.get_mut(&id) else {
            return if self.done.contains(&id) { Disposition::Late } else { Disposition::Unknown };
        };
        let current = matches!(e.state, State::Leased { worker: w, .. } if w == worker || w == WorkerId::ORPHAN)
            && e.attempt == attempt;
        if !current {
            return Disposition::Late;
        }
        let status = match outcome {
            AttemptOutcome::Succeeded(_) => TrialStatus::Succeeded,
            AttemptOutcome::Diverged { .. } => TrialStatus::Diverged,
            // Handed back unfinished: pending again (at once, below), nothing counted.
            AttemptOutcome::Preempted { .. } => TrialStatus::Pending,
            &AttemptOutcome::Failed { class, .. } => {
                e.failures[class.index()] += 1;
                self.failed_attempts += 1;
                if e.failures[class.index()] > retries.of(class) || !budget_left {
                    TrialStatus::Failed
                } else {
                    TrialStatus::Pending
                }
            }
        };
        self.counts.shift(TrialStatus::Running, status);
        if let AttemptOutcome::Preempted { .. } = outcome {
            e.state = State::Pending;
            e.not_before = clock;
            self.queue.push_front(id);
        } else if status == TrialStatus::Pending {
            e.state = State::Pending;
            let failures: u32 = e.failures[..3].iter().sum();
            let doublings = failures.saturating_sub(1).min(16);
            e.not_before = clock + (backoff << doublings).min(SchedulerConfig::MAX_RETRY_BACKOFF.as_millis() as u64);
            self.queue.push_back(id);
        } else {
            self.entries.remove(&id);
            self.done.insert(id);
        }
        if self.is_halted() {
            self.halt();
        }
        Disposition::Accepted { status }
    }

    /// Fails every pending trial if the failure budget is used up (a sweep restarted after its
    /// budget ran out); returns whether it did.
    pub fn halt_if_over_budget(&mut self) -> bool {
        let over = self.is_halted();
        if over {
            self.halt();
        }
        over
    }

    /// Fails every pending trial: the failure budget is used up.
    fn halt(&mut self) {
        for id in std::mem::take(&mut self.queue) {
            if let Some(e) = self.entries.get(&id)
                && e.state == State::Pending
            {
                self.counts.shift(TrialStatus::Pending, TrialStatus::Failed);
                self.halted.push((id, e.attempt));
                self.entries.remove(&id);
                self.done.insert(id);
            }
        }
        if self.unloaded > 0 {
            let count = std::mem::take(&mut self.unloaded);
            self.counts.pending -= count;
            self.counts.failed += count;
            let after_seq = self.loaded_through;
            let earlier = self.halted_tail.map_or(0, |t| t.count);
            self.halted_tail = Some(HaltedTail { after_seq, count: earlier + count });
        }
    }

    /// Returns every lease whose deadline has passed to pending (or fails a trial that lost
    /// `max_lost` leases).
    pub fn expire(&mut self, now_ms: u64) -> Vec<Revoked> {
        self.clock = self.clock.max(now_ms);
        self.revoke_where(|_, deadline| deadline <= now_ms, true)
    }

    /// Returns every lease held by `worker` to pending (it left or is shutting down: not a loss).
    pub fn release_worker(&mut self, worker: WorkerId) -> Vec<Revoked> {
        self.revoke_where(|w, _| w == worker, false)
    }

    /// Returns every lease to pending (the process is stopping: not a loss).
    pub fn release_all(&mut self) -> Vec<Revoked> {
        self.revoke_where(|_, _| true, false)
    }

    fn revoke_where(&mut self, pred: impl Fn(WorkerId, u64) -> bool, lost: bool) -> Vec<Revoked> {
        let allowed = self.cfg.execution.retries.lost;
        let lost_i = FailureClass::Lost.index();
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            if let State::Leased { worker, deadline } = e.state
                && pred(worker, deadline)
            {
                if lost {
                    e.failures[lost_i] += 1;
                    self.failed_attempts += 1;
                }
                let over_budget = lost && self.cfg.execution.failure_budget.is_some_and(|b| self.failed_attempts >= b);
                let gave_up = e.failures[lost_i] > allowed || over_budget;
                e.state = State::Pending;
                out.push(Revoked { id: *id, attempt: e.attempt, worker, expired: lost, gave_up });
            }
        }
        // Deterministic requeue order.
        out.sort_by_key(|r| r.id);
        for r in &out {
            if r.gave_up {
                self.entries.remove(&r.id);
                self.done.insert(r.id);
                self.counts.shift(TrialStatus::Running, TrialStatus::Failed);
            } else {
                self.counts.shift(TrialStatus::Running, TrialStatus::Pending);
                self.queue.push_front(r.id);
            }
        }
        if self.is_halted() {
            self.halt();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Hyperparams, OptimizerKind};
    use crate::trial::{RetryPolicy, TrialMetrics};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Scheduler settings as the tests write them: lease timeout and retry backoff in ms.
    fn config(lease_ms: u64, retries: RetryPolicy, failure_budget: Option<u64>, backoff_ms: u64) -> SchedulerConfig {
        SchedulerConfig {
            sweep: Arc::from("test"),
            lease_timeout: ms(lease_ms),
            retry_backoff: ms(backoff_ms),
            execution: Execution { retries, failure_budget, ..Execution::default() },
        }
    }

    fn new(cfg: SchedulerConfig) -> Scheduler {
        Scheduler::new(cfg)
    }

    const SUCCEEDED: AttemptOutcome = AttemptOutcome::Succeeded(TrialMetrics {
        curve: Vec::new(),
        stationary_loss: None,
        stationary_drift: None,
        theory: None,
        notes: Vec::new(),
    });

    fn diverged() -> AttemptOutcome {
        AttemptOutcome::Diverged { step: 1, metrics: TrialMetrics::default() }
    }

    fn failed(class: FailureClass) -> AttemptOutcome {
        AttemptOutcome::Failed { error: "boom".into(), class }
    }

    fn task() -> Arc<str> {
        Arc::from("{}")
    }

    fn params() -> Params {
        Params::from(Hyperparams {
            optimizer: OptimizerKind::Sgd,
            batch_size: 1,
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            seed: 0,
        })
    }

    fn sched(n: u64) -> Scheduler {
        let mut s = new(config(100, RetryPolicy { error: 1, crash: 1, timeout: 1, lost: 4 }, None, 0));
        for i in 0..n {
            s.add(TrialId(i), params(), task(), 0, [0; 4], TrialStatus::Pending);
        }
        s
    }

    const W1: WorkerId = WorkerId(1);

    fn lost(n: u32) -> RetryPolicy {
        RetryPolicy { lost: n, ..RetryPolicy::default() }
    }

    #[test]
    fn a_lease_in_flight_across_a_restart_is_adopted_by_its_worker() {
        let mut s = sched(3);
        // The store showed trial 0 running attempt 2 and trial 1 attempt 1; trial 2 never ran.
        let mut s2 = new(s.cfg.clone());
        s2.add(TrialId(0), params(), task(), 2, [0; 4], TrialStatus::Running);
        s2.add(TrialId(1), params(), task(), 1, [0; 4], TrialStatus::Running);
        s2.add(TrialId(2), params(), task(), 0, [0; 4], TrialStatus::Pending);
        assert!(s2.resume_in_flight(TrialId(0), 2));
        assert!(s2.resume_in_flight(TrialId(1), 1));
        assert!(!s2.resume_in_flight(TrialId(2), 1), "not the attempt the store knows");
        assert_eq!(s2.counts().running, 2);
        // Only trial 2 is leased; the worker holding trial 0 renews it and reports it.
        assert_eq!(s2.lease(W2, 0, 5).iter().map(|g| g.id).collect::<Vec<_>>(), vec![TrialId(2)]);
        assert!(s2.heartbeat(W1, &[(TrialId(0), 2)], 50).is_empty(), "adopted");
        assert_eq!(s2.report(W2, TrialId(0), 2, &SUCCEEDED), Disposition::Late, "W1's now");
        assert_eq!(s2.report(W1, TrialId(0), 2, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
        // A report straight after the restart, without a heartbeat first, is accepted too.
        assert_eq!(s2.report(W1, TrialId(1), 1, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
        // An in-flight lease nobody claims expires like any other.
        s = new(s.cfg.clone());
        s.add(TrialId(5), params(), task(), 1, [0; 4], TrialStatus::Running);
        assert!(s.resume_in_flight(TrialId(5), 1));
        assert!(s.expire(1000).is_empty(), "its worker has a grace period to reconnect");
        let later = 1000 + Scheduler::RECONNECT_GRACE_MS;
        assert_eq!(s.expire(later).len(), 1);
        assert_eq!(s.lease(W1, later, 1)[0].attempt, 2);
    }

    #[test]
    fn expected_trials_count_as_pending_until_loaded_in_order_and_a_halt_fails_the_rest() {
        let mut s = new(config(100, RetryPolicy::default(), Some(1), 0));
        s.expect(4);
        assert_eq!((s.counts().total, s.counts().pending, s.unloaded()), (4, 4, 4));
        assert!(!s.is_finished());
        // One adopted in flight (out of order), then the first two in plan order.
        assert!(s.load(None, TrialId(3), params(), task(), 1, [0; 4]));
        assert!(s.load(Some(0), TrialId(0), params(), task(), 0, [0; 4]));
        assert!(s.load(Some(1), TrialId(1), params(), task(), 0, [0; 4]));
        // Read again at its place in the plan: skipped, and the next read starts after it.
        assert!(!s.load(Some(2), TrialId(3), params(), task(), 1, [0; 4]), "loaded twice");
        assert_eq!((s.unloaded(), s.loaded_through(), s.queued()), (1, Some(2), 3));
        assert_eq!(s.counts().pending, 4, "loading does not count a trial again");
        // The only failure the budget allows halts the sweep: the unloaded trial fails too.
        let g = s.lease(W1, 0, 1);
        assert_eq!(g[0].id, TrialId(3));
        assert_eq!(
            s.report(W1, TrialId(3), g[0].attempt, &failed(FailureClass::Error)),
            Disposition::Accepted { status: TrialStatus::Failed }
        );
        assert_eq!(s.take_halted().len(), 2);
        assert_eq!(s.take_halted_tail(), Some(HaltedTail { after_seq: Some(2), count: 1 }));
        assert_eq!((s.counts().failed, s.counts().pending, s.unloaded()), (4, 0, 0));
        assert!(s.is_finished());
        // A finished trial is remembered by id only: its late report is late, not unknown.
        assert_eq!(s.report(W1, TrialId(3), g[0].attempt, &SUCCEEDED), Disposition::Late);
        assert_eq!(s.report(W1, TrialId(9), 1, &SUCCEEDED), Disposition::Unknown);
    }

    #[test]
    fn each_failure_class_has_its_own_retries() {
        let mut s = new(config(100, RetryPolicy { error: 0, crash: 2, timeout: 1, lost: 4 }, None, 0));
        s.add(TrialId(1), params(), task(), 0, [0; 4], TrialStatus::Pending);
        s.add(TrialId(2), params(), task(), 0, [0; 4], TrialStatus::Pending);
        let fail = |s: &mut Scheduler, id: TrialId, class: FailureClass| {
            let g = s.lease(W1, 0, 1).into_iter().find(|g| g.id == id).expect("leased");
            match s.report(W1, id, g.attempt, &failed(class)) {
                Disposition::Accepted { status } => status,
                d => panic!("{d:?}"),
            }
        };
        // A task error is not retried at all (deterministic failures).
        assert_eq!(fail(&mut s, TrialId(1), FailureClass::Error), TrialStatus::Failed);
        // Crashes twice, a timeout once, then a third crash is final.
        assert_eq!(fail(&mut s, TrialId(2), FailureClass::Crash), TrialStatus::Pending);
        assert_eq!(fail(&mut s, TrialId(2), FailureClass::Timeout), TrialStatus::Pending);
        assert_eq!(fail(&mut s, TrialId(2), FailureClass::Crash), TrialStatus::Pending);
        assert_eq!(fail(&mut s, TrialId(2), FailureClass::Crash), TrialStatus::Failed);
        assert_eq!(s.failed_attempts(), 5);
    }

    #[test]
    fn a_used_up_failure_budget_halts_the_sweep() {
        let mut s = new(config(100, RetryPolicy::uniform(5), Some(3), 0));
        for i in 0..10 {
            s.add(TrialId(i), params(), task(), 0, [0; 4], TrialStatus::Pending);
        }
        s.set_failed_attempts(1);
        let g = s.lease(W1, 0, 3);
        assert_eq!(
            s.report(W1, g[0].id, 1, &failed(FailureClass::Crash)),
            Disposition::Accepted { status: TrialStatus::Pending }
        );
        assert!(s.take_halted().is_empty());
        // The third failed attempt of the sweep is final, and every pending trial fails with it.
        assert_eq!(
            s.report(W1, g[1].id, 1, &failed(FailureClass::Error)),
            Disposition::Accepted { status: TrialStatus::Failed }
        );
        assert!(s.is_halted());
        let halted = s.take_halted();
        assert_eq!(halted.len(), 8, "7 never run and the retry of the first: {halted:?}");
        assert!(s.lease(W1, 0, 5).is_empty());
        // The trial still running may finish normally.
        assert_eq!(s.report(W1, g[2].id, 1, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
        assert!(s.is_finished());
        assert_eq!((s.counts().failed, s.counts().succeeded), (9, 1));
    }
    #[test]
    fn a_preempted_attempt_runs_again_at_once_and_counts_nothing() {
        let preempted = AttemptOutcome::Preempted { reason: "drain".into() };
        // Retries 0, a long backoff: a failure would end the trial or hold it back; this does not.
        let mut s = new(config(100, RetryPolicy::uniform(0), Some(1), 60_000));
        s.add(TrialId(1), params(), task(), 0, [0; 4], TrialStatus::Pending);
        s.add(TrialId(2), params(), task(), 0, [0; 4], TrialStatus::Pending);
        let g = s.lease(W1, 0, 1);
        assert_eq!(s.report(W1, g[0].id, 1, &preempted), Disposition::Accepted { status: TrialStatus::Pending });
        assert_eq!(s.failed_attempts(), 0);
        let again = s.lease(W1, 0, 1);
        assert_eq!((again[0].id, again[0].attempt), (g[0].id, 2), "first in line, without backoff");
        // A sweep halted meanwhile fails a preempted trial with the rest, never leaves it pending.
        let other = s.lease(W1, 0, 1);
        assert_eq!(
            s.report(W1, other[0].id, 1, &failed(FailureClass::Error)),
            Disposition::Accepted { status: TrialStatus::Failed }
        );
        assert!(s.is_halted());
        assert_eq!(s.report(W1, again[0].id, 2, &preempted), Disposition::Accepted { status: TrialStatus::Pending });
        assert!(s.is_finished(), "{:?}", s.counts());
        assert_eq!(s.counts().failed, 2);
    }

    const W2: WorkerId = WorkerId(2);

    #[test]
    fn lease_report_finishes() {
        let mut s = sched(2);
        let g = s.lease(W1, 0, 10);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].attempt, 1);
        assert_eq!(s.report(W1, g[0].id, 1, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
        assert!(!s.is_finished());
        s.report(W1, g[1].id, 1, &diverged());
        assert!(s.is_finished());
        assert_eq!(s.counts().diverged, 1);
    }

    #[test]
    fn expired_lease_is_fenced() {
        let mut s = sched(1);
        let g = s.lease(W1, 0, 1);
        assert_eq!(s.heartbeat(W1, &[(g[0].id, 1)], 50), vec![]);
        // Renewed at 50: still leased at 120.
        assert!(s.expire(120).is_empty());
        let r = s.expire(150);
        assert_eq!(r, vec![Revoked { id: TrialId(0), attempt: 1, worker: W1, expired: true, gave_up: false }]);
        let g2 = s.lease(W2, 160, 1);
        assert_eq!(g2[0].attempt, 2);
        // The old worker's report is late, its heartbeat says the lease is stale.
        assert_eq!(s.report(W1, TrialId(0), 1, &SUCCEEDED), Disposition::Late);
        assert_eq!(s.heartbeat(W1, &[(TrialId(0), 1)], 170), vec![(TrialId(0), 1)]);
        assert_eq!(s.report(W2, TrialId(0), 2, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
        // A duplicate of the accepted report is late.
        assert_eq!(s.report(W2, TrialId(0), 2, &SUCCEEDED), Disposition::Late);
        assert_eq!(s.counts().succeeded, 1);
    }

    #[test]
    fn failures_retry_then_fail() {
        let mut s = sched(1);
        let g = s.lease(W1, 0, 1);
        assert_eq!(
            s.report(W1, g[0].id, 1, &failed(FailureClass::Error)),
            Disposition::Accepted { status: TrialStatus::Pending }
        );
        let g = s.lease(W1, 0, 1);
        assert_eq!(g[0].attempt, 2);
        assert_eq!(
            s.report(W1, g[0].id, 2, &failed(FailureClass::Error)),
            Disposition::Accepted { status: TrialStatus::Failed }
        );
        assert!(s.is_finished());
        assert!(s.lease(W1, 0, 1).is_empty());
    }

    #[test]
    fn resumed_trials_keep_counting_attempts() {
        let mut s = new(config(100, RetryPolicy { error: 2, crash: 2, timeout: 2, lost: 4 }, None, 0));
        s.add(TrialId(1), params(), task(), 4, [0; 4], TrialStatus::Running);
        s.add(TrialId(2), params(), task(), 1, [0; 4], TrialStatus::Succeeded);
        assert_eq!(s.counts().pending, 1);
        assert_eq!(s.counts().succeeded, 1);
        let g = s.lease(W1, 0, 5);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].attempt, 5);
    }

    #[test]
    fn a_trial_that_keeps_losing_its_lease_fails_in_the_end() {
        let mut s = new(config(10, lost(2), None, 0));
        s.add(TrialId(1), params(), task(), 0, [0; 4], TrialStatus::Pending);
        let mut now = 0;
        for round in 1..=3 {
            assert_eq!(s.lease(W1, now, 1).len(), 1, "round {round}");
            now += 20;
            let r = s.expire(now);
            assert_eq!(r[0].gave_up, round == 3);
        }
        assert!(s.is_finished());
        assert_eq!(s.counts().failed, 1);
        // A graceful hand-back is not a loss.
        let mut s = new(config(10, lost(0), None, 0));
        s.add(TrialId(1), params(), task(), 0, [0; 4], TrialStatus::Pending);
        s.lease(W1, 0, 1);
        assert!(!s.release_worker(W1)[0].gave_up);
        assert_eq!(s.counts().pending, 1);
    }

    #[test]
    fn failed_attempts_back_off_before_their_retry() {
        let mut s = new(config(10_000, RetryPolicy::uniform(4), None, 100));
        s.add(TrialId(1), params(), task(), 0, [0; 4], TrialStatus::Pending);
        s.add(TrialId(2), params(), task(), 0, [0; 4], TrialStatus::Pending);
        let g = s.lease(W1, 0, 1);
        assert_eq!(g[0].id, TrialId(1));
        s.report(W1, TrialId(1), 1, &failed(FailureClass::Error));
        // Trial 1 waits 100 ms; trial 2 goes first.
        assert_eq!(s.lease(W1, 50, 2).iter().map(|g| g.id).collect::<Vec<_>>(), vec![TrialId(2)]);
        assert!(s.lease(W1, 99, 1).is_empty());
        let g = s.lease(W1, 100, 1);
        assert_eq!((g[0].id, g[0].attempt), (TrialId(1), 2));
        // The second failure waits twice as long.
        s.report(W1, TrialId(1), 2, &failed(FailureClass::Error));
        assert!(s.lease(W1, 299, 1).is_empty());
        assert_eq!(s.lease(W1, 300, 1).len(), 1);
    }

    #[test]
    fn released_worker_returns_its_leases() {
        let mut s = sched(3);
        s.lease(W1, 0, 2);
        s.lease(W2, 0, 1);
        let r = s.release_worker(W1);
        assert_eq!(r.len(), 2);
        assert_eq!(s.counts().pending, 2);
        assert_eq!(s.counts().running, 1);
    }

    /// Random interleavings of lease, heartbeat, expiry, report (current, stale and duplicate),
    /// worker loss and coordinator restart (the scheduler rebuilt from what a store would hold):
    /// no trial is lost, none is counted twice, a finished trial never changes.
    #[test]
    fn random_interleavings_count_every_trial_exactly_once() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        for _round in 0..200 {
            let trials = 1 + rand(12);
            let cfg =
                config(100, RetryPolicy { lost: u32::MAX, ..RetryPolicy::uniform(rand(3) as u32) }, None, rand(3) * 50);
            // The "store": final status per trial, and attempts/failures so far.
            let mut finals: HashMap<TrialId, TrialStatus> = HashMap::new();
            let mut attempts: HashMap<TrialId, (u32, u32)> = HashMap::new();
            let rebuild = |finals: &HashMap<TrialId, TrialStatus>, attempts: &HashMap<TrialId, (u32, u32)>| {
                let mut s = new(cfg.clone());
                for i in 0..trials {
                    let id = TrialId(i);
                    let (a, f) = attempts.get(&id).copied().unwrap_or((0, 0));
                    s.add(
                        id,
                        params(),
                        task(),
                        a,
                        [f, 0, 0, 0],
                        finals.get(&id).copied().unwrap_or(TrialStatus::Pending),
                    );
                }
                s
            };
            let mut s = rebuild(&finals, &attempts);
            let mut now = 0u64;
            let mut held: Vec<(WorkerId, TrialId, u32)> = Vec::new();
            for _step in 0..400 {
                match rand(7) {
                    0 => {
                        let w = WorkerId(1 + rand(3));
                        for g in s.lease(w, now, 1 + rand(3) as usize) {
                            let e = attempts.entry(g.id).or_default();
                            assert!(g.attempt > e.0, "attempt numbers only grow");
                            e.0 = g.attempt;
                            held.push((w, g.id, g.attempt));
                        }
                    }
                    1 if !held.is_empty() => {
                        let (w, id, a) = held[rand(held.len() as u64) as usize];
                        s.heartbeat(w, &[(id, a)], now);
                    }
                    2 => {
                        now += rand(150);
                        s.expire(now);
                    }
                    3 | 4 if !held.is_empty() => {
                        // Reports may repeat, come late, or come from the wrong worker.
                        let (w, id, a) = held[rand(held.len() as u64) as usize];
                        let kind = [SUCCEEDED, failed(FailureClass::Error), diverged()][rand(3) as usize].clone();
                        let before = finals.get(&id).copied();
                        match s.report(w, id, a, &kind) {
                            Disposition::Accepted { status } => {
                                assert!(before.is_none(), "a finished trial was reported again and accepted");
                                if status == TrialStatus::Pending {
                                    attempts.entry(id).or_default().1 += 1;
                                } else {
                                    if matches!(kind, AttemptOutcome::Failed { .. }) {
                                        attempts.entry(id).or_default().1 += 1;
                                    }
                                    finals.insert(id, status);
                                }
                            }
                            Disposition::Late => {}
                            Disposition::Unknown => panic!("known trial reported unknown"),
                        }
                    }
                    5 => {
                        s.release_worker(WorkerId(1 + rand(3)));
                    }
                    6 if rand(10) == 0 => {
                        // Restart: everything in memory is lost; the store survives.
                        s = rebuild(&finals, &attempts);
                        held.clear();
                    }
                    _ => {}
                }
                let c = s.counts();
                assert_eq!(c.total, trials);
                assert_eq!(c.pending + c.running + c.done(), trials);
                assert_eq!(c.done(), finals.len() as u64, "counts agree with the store");
            }
            // Drive to completion: every trial ends exactly once.
            let w = WorkerId(9);
            for _ in 0..1000 {
                if s.is_finished() {
                    break;
                }
                now += 1000;
                s.expire(now);
                for g in s.lease(w, now, 16) {
                    if let Disposition::Accepted { status } = s.report(w, g.id, g.attempt, &SUCCEEDED) {
                        assert!(finals.insert(g.id, status).is_none());
                    }
                }
            }
            assert!(s.is_finished());
            assert_eq!(finals.len() as u64, trials);
        }
    }
}
