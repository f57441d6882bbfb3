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
use crate::lease::{AttemptRef, Lease, Stop, WorkerId};
use crate::params::Params;
use crate::spec::Execution;
use crate::trial::{AttemptOutcome, Counts, FailureClass, FailureCounts, TrialStatus};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

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
    /// Successive halving: the rung every trial starts at (its first lease stops there), unless
    /// [`Scheduler::set_stop`] says otherwise. `None`: trials run their whole budget.
    pub first_stop: Option<Stop>,
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
    /// Failed attempts by class.
    failures: FailureCounts,
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
    halted: Vec<AttemptRef>,
    /// Successive halving: where a trial's next attempt stops, when not at `cfg.first_stop`.
    stops: HashMap<TrialId, Option<Stop>>,
    /// Trials stopped at a rung, kept whole: a promotion takes them on ([`Scheduler::reopen`]).
    stopped: HashMap<TrialId, Entry>,
    /// Promoted trials waiting, leased before any other: the highest rung first, then by id (an
    /// order the state alone decides, so a resumed sweep leases them as the uninterrupted one).
    promoted: BTreeSet<(Reverse<u32>, TrialId)>,
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
            stops: HashMap::new(),
            stopped: HashMap::new(),
            promoted: BTreeSet::new(),
        }
    }

    /// Where `id`'s next attempt stops (successive halving; `None`: its whole budget).
    pub fn stop_of(&self, id: TrialId) -> Option<Stop> {
        self.stops.get(&id).copied().unwrap_or(self.cfg.first_stop)
    }

    /// Sets where `id`'s next attempt stops (successive halving: the rung it was promoted to;
    /// `None`: the whole budget).
    pub fn set_stop(&mut self, id: TrialId, stop: Option<Stop>) {
        if stop == self.cfg.first_stop {
            self.stops.remove(&id);
        } else {
            self.stops.insert(id, stop);
        }
    }

    /// Takes a trial stopped at a rung on to the rung `stop` (successive halving's promotion):
    /// pending again, ahead of trials that have not started, with its attempts so far. Returns
    /// whether it was stopped here.
    pub fn reopen(&mut self, id: TrialId, stop: Option<Stop>) -> bool {
        let Some(mut e) = self.stopped.remove(&id) else { return false };
        self.set_stop(id, stop);
        self.done.remove(&id);
        e.state = State::Pending;
        e.not_before = 0;
        self.entries.insert(id, e);
        self.promoted.insert((Reverse(stop.map_or(0, |s| s.rung)), id));
        self.counts.shift(TrialStatus::Stopped, TrialStatus::Pending);
        true
    }

    /// Leases pending trial `id` before the rest, as a promoted one (a resumed sweep's trials
    /// promoted past the first rung): the highest rung first. Returns whether it is pending here.
    pub fn prioritize(&mut self, id: TrialId) -> bool {
        let pending = self.entries.get(&id).is_some_and(|e| e.state == State::Pending);
        if pending {
            let rung = self.stop_of(id).map_or(0, |s| s.rung);
            self.promoted.insert((Reverse(rung), id));
        }
        pending
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
    pub fn take_halted(&mut self) -> Vec<AttemptRef> {
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
        self.queue.len() + self.promoted.len()
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
        failures: FailureCounts,
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
        failures: FailureCounts,
        status: TrialStatus,
    ) {
        if self.entries.contains_key(&id) || self.done.contains(&id) {
            return;
        }
        if status.is_terminal() {
            self.counts.add(status, 1);
            self.done.insert(id);
            if status == TrialStatus::Stopped {
                self.stopped.insert(
                    id,
                    Entry { params, task, attempt: attempts, failures, not_before: 0, state: State::Pending },
                );
            }
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
        // Promoted trials first (a copy of one may also be in the queue: whichever comes
        // second finds it leased and skips it).
        while out.len() < max {
            let Some((_, id)) = self.promoted.pop_first() else { break };
            match self.entries.get(&id) {
                Some(e) if e.state == State::Pending && e.not_before <= now_ms => {
                    out.push(self.lease_one(id, worker, now_ms))
                }
                Some(e) if e.state == State::Pending => self.queue.push_back(id),
                _ => {}
            }
        }
        let mut budget = self.queue.len();
        while out.len() < max && budget > 0 {
            budget -= 1;
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(e) = self.entries.get(&id) else {
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
            out.push(self.lease_one(id, worker, now_ms));
        }
        for id in waiting.into_iter().rev() {
            self.queue.push_front(id);
        }
        out
    }

    /// Leases pending trial `id` (in `entries`) to `worker`.
    fn lease_one(&mut self, id: TrialId, worker: WorkerId, now_ms: u64) -> Lease {
        let stop = self.stop_of(id);
        let deadline = now_ms + self.cfg.lease_timeout_ms();
        let e = self.entries.get_mut(&id).expect("a pending entry");
        e.attempt += 1;
        e.state = State::Leased { worker, deadline };
        self.counts.shift(TrialStatus::Pending, TrialStatus::Running);
        Lease {
            id,
            sweep: self.cfg.sweep.clone(),
            attempt: e.attempt,
            params: e.params.clone(),
            task: e.task.clone(),
            timeout: self.cfg.execution.timeout,
            gpus: self.cfg.execution.gpus,
            stop,
        }
    }

    /// Renews the leases `worker` says it holds; returns those that are no longer its current ones
    /// (the worker should abandon them).
    pub fn heartbeat(&mut self, worker: WorkerId, held: &[AttemptRef], now_ms: u64) -> Vec<AttemptRef> {
        self.clock = self.clock.max(now_ms);
        let mut stale = Vec::new();
        for &AttemptRef { trial, attempt } in held {
            match self.entries.get_mut(&trial) {
                Some(Entry { attempt: a, state: State::Leased { worker: w, deadline }, .. })
                    if *a == attempt && (*w == worker || *w == WorkerId::ORPHAN) =>
                {
                    *w = worker;
                    *deadline = now_ms + self.cfg.lease_timeout_ms();
                }
                _ => stale.push(AttemptRef::new(trial, attempt)),
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
        let at_rung = self.stops.get(&id).copied().unwrap_or(self.cfg.first_stop).is_some_and(|s| !s.last);
        let Some(e) = self.entries.get_mut(&id) else {
            return if self.done.contains(&id) { Disposition::Late } else { Disposition::Unknown };
        };
        let current = matches!(e.state, State::Leased { worker: w, .. } if w == worker || w == WorkerId::ORPHAN)
            && e.attempt == attempt;
        if !current {
            return Disposition::Late;
        }
        let status = match outcome {
            // A rung reached: stopped there until a promotion takes it on.
            AttemptOutcome::Succeeded(_) if at_rung => TrialStatus::Stopped,
            AttemptOutcome::Succeeded(_) => TrialStatus::Succeeded,
            AttemptOutcome::Diverged { .. } => TrialStatus::Diverged,
            // Handed back unfinished: pending again (at once, below), nothing counted.
            AttemptOutcome::Preempted { .. } => TrialStatus::Pending,
            &AttemptOutcome::Failed { class, .. } => {
                let of_class = e.failures.add(class);
                self.failed_attempts += 1;
                if of_class > retries.of(class) || !budget_left { TrialStatus::Failed } else { TrialStatus::Pending }
            }
        };
        self.counts.shift(TrialStatus::Running, status);
        if let AttemptOutcome::Succeeded(m) = outcome
            && status == TrialStatus::Succeeded
        {
            self.counts.add_health(m.health(), 1);
        }
        if let AttemptOutcome::Preempted { .. } = outcome {
            e.state = State::Pending;
            e.not_before = clock;
            self.queue.push_front(id);
        } else if status == TrialStatus::Pending {
            e.state = State::Pending;
            let doublings = e.failures.ran().saturating_sub(1).min(16);
            e.not_before = clock + (backoff << doublings).min(SchedulerConfig::MAX_RETRY_BACKOFF.as_millis() as u64);
            self.queue.push_back(id);
        } else {
            if let Some(e) = self.entries.remove(&id)
                && status == TrialStatus::Stopped
            {
                self.stopped.insert(id, e);
            }
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
        let promoted: Vec<TrialId> = std::mem::take(&mut self.promoted).into_iter().map(|(_, id)| id).collect();
        for id in promoted.into_iter().chain(std::mem::take(&mut self.queue)) {
            if let Some(e) = self.entries.get(&id)
                && e.state == State::Pending
            {
                self.counts.shift(TrialStatus::Pending, TrialStatus::Failed);
                self.halted.push(AttemptRef::new(id, e.attempt));
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
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            if let State::Leased { worker, deadline } = e.state
                && pred(worker, deadline)
            {
                if lost {
                    e.failures.add(FailureClass::Lost);
                    self.failed_attempts += 1;
                }
                let over_budget = lost && self.cfg.execution.failure_budget.is_some_and(|b| self.failed_attempts >= b);
                let gave_up = e.failures.of(FailureClass::Lost) > allowed || over_budget;
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
mod tests;
