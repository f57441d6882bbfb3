//! The lease/attempt state machine: which trial is where, and which report counts.
//!
//! Pure and synchronous: time is passed in as milliseconds, so the coordinator drives it from a
//! clock and tests drive it from a script. Invariants it keeps:
//! - a trial is in exactly one of pending / leased / done;
//! - every lease carries a fresh attempt number (attempts only grow);
//! - only a report for the *current* lease of a trial changes state; any other report is late;
//! - a terminal trial never changes again.

use crate::id::TrialId;
use crate::params::Hyperparams;
use crate::trial::{Counts, TrialStatus};
use std::collections::{HashMap, VecDeque};

/// A registered worker, numbered by the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Scheduler settings.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// A lease not renewed for this long expires.
    pub lease_timeout_ms: u64,
    /// Failed attempts allowed before a trial is failed for good (retries + 1).
    pub max_failures: u32,
    /// Expired leases allowed before a trial is failed for good: a trial whose worker dies or
    /// hangs every time (out of memory, say) must not be re-run forever.
    pub max_lost: u32,
    /// A failed attempt's retry waits this long, doubling with each failure (capped at
    /// [`SchedulerConfig::MAX_RETRY_BACKOFF_MS`]); 0 retries at once.
    pub retry_backoff_ms: u64,
}

impl SchedulerConfig {
    /// Default for `max_lost`.
    pub const DEFAULT_MAX_LOST: u32 = 5;
    /// Default for `retry_backoff_ms`.
    pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1000;
    /// Longest wait before a retry.
    pub const MAX_RETRY_BACKOFF_MS: u64 = 60_000;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Pending,
    Leased { worker: WorkerId, deadline: u64 },
    Done(TrialStatus),
}

#[derive(Debug)]
struct Entry {
    params: Hyperparams,
    attempt: u32,
    failures: u32,
    lost: u32,
    /// A retry is not leased before this time.
    not_before: u64,
    state: State,
}

/// A lease handed to a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The trial.
    pub id: TrialId,
    /// Its attempt number (1 for the first).
    pub attempt: u32,
    /// Its hyperparameters.
    pub params: Hyperparams,
    /// When the lease expires unless renewed.
    pub deadline_ms: u64,
}

/// What a worker says happened to an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// Produced metrics.
    Succeeded,
    /// Loss overflowed (final; never retried).
    Diverged,
    /// Failed; retried while the failure budget lasts.
    Failed,
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
    /// The trial lost too many leases and is now failed for good, not pending.
    pub gave_up: bool,
}

/// The state machine.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    entries: HashMap<TrialId, Entry>,
    queue: VecDeque<TrialId>,
    counts: Counts,
    /// The latest time the scheduler was told (reports carry none; they use this).
    clock: u64,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(cfg: SchedulerConfig) -> Scheduler {
        Scheduler { cfg, entries: HashMap::new(), queue: VecDeque::new(), counts: Counts::default(), clock: 0 }
    }

    /// Adds a trial as the store knows it: `attempts` leases so far, `failures` of them failed,
    /// `lost` of them expired. A non-terminal status (pending, or running from a process that is
    /// gone) becomes pending.
    pub fn add(
        &mut self,
        id: TrialId,
        params: Hyperparams,
        attempts: u32,
        failures: u32,
        lost: u32,
        status: TrialStatus,
    ) {
        if self.entries.contains_key(&id) {
            return;
        }
        let state = if status.is_terminal() { State::Done(status) } else { State::Pending };
        let counted = if status.is_terminal() { status } else { TrialStatus::Pending };
        self.counts.add(counted, 1);
        if state == State::Pending {
            self.queue.push_back(id);
        }
        self.entries.insert(id, Entry { params, attempt: attempts, failures, lost, not_before: 0, state });
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
    pub fn lease(&mut self, worker: WorkerId, now_ms: u64, max: usize) -> Vec<Grant> {
        self.clock = self.clock.max(now_ms);
        let mut out = Vec::new();
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
            let deadline_ms = now_ms + self.cfg.lease_timeout_ms;
            e.state = State::Leased { worker, deadline: deadline_ms };
            self.counts.shift(TrialStatus::Pending, TrialStatus::Running);
            out.push(Grant { id, attempt: e.attempt, params: e.params.clone(), deadline_ms });
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
                    if *a == attempt && *w == worker =>
                {
                    *deadline = now_ms + self.cfg.lease_timeout_ms;
                }
                _ => stale.push((id, attempt)),
            }
        }
        stale
    }

    /// Applies a report for (`id`, `attempt`) from `worker`.
    pub fn report(&mut self, worker: WorkerId, id: TrialId, attempt: u32, kind: ReportKind) -> Disposition {
        let max_failures = self.cfg.max_failures;
        let backoff = self.cfg.retry_backoff_ms;
        let clock = self.clock;
        let Some(e) = self.entries.get_mut(&id) else {
            return Disposition::Unknown;
        };
        let current = matches!(e.state, State::Leased { worker: w, .. } if w == worker) && e.attempt == attempt;
        if !current {
            return Disposition::Late;
        }
        let status = match kind {
            ReportKind::Succeeded => TrialStatus::Succeeded,
            ReportKind::Diverged => TrialStatus::Diverged,
            ReportKind::Failed => {
                e.failures += 1;
                if e.failures >= max_failures { TrialStatus::Failed } else { TrialStatus::Pending }
            }
        };
        self.counts.shift(TrialStatus::Running, status);
        if status == TrialStatus::Pending {
            e.state = State::Pending;
            let doublings = e.failures.saturating_sub(1).min(16);
            e.not_before = clock + (backoff << doublings).min(SchedulerConfig::MAX_RETRY_BACKOFF_MS);
            self.queue.push_back(id);
        } else {
            e.state = State::Done(status);
        }
        Disposition::Accepted { status }
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
        let max_lost = self.cfg.max_lost.max(1);
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            if let State::Leased { worker, deadline } = e.state
                && pred(worker, deadline)
            {
                if lost {
                    e.lost += 1;
                }
                let gave_up = e.lost >= max_lost;
                e.state = if gave_up { State::Done(TrialStatus::Failed) } else { State::Pending };
                out.push(Revoked { id: *id, attempt: e.attempt, worker, gave_up });
            }
        }
        // Deterministic requeue order.
        out.sort_by_key(|r| r.id);
        for r in &out {
            if r.gave_up {
                self.counts.shift(TrialStatus::Running, TrialStatus::Failed);
            } else {
                self.counts.shift(TrialStatus::Running, TrialStatus::Pending);
                self.queue.push_front(r.id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::OptimizerKind;

    fn params() -> Hyperparams {
        Hyperparams {
            optimizer: OptimizerKind::Sgd,
            batch_size: 1,
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            seed: 0,
        }
    }

    fn sched(n: u64) -> Scheduler {
        let mut s = Scheduler::new(SchedulerConfig {
            lease_timeout_ms: 100,
            max_failures: 2,
            max_lost: 5,
            retry_backoff_ms: 0,
        });
        for i in 0..n {
            s.add(TrialId(i), params(), 0, 0, 0, TrialStatus::Pending);
        }
        s
    }

    const W1: WorkerId = WorkerId(1);
    const W2: WorkerId = WorkerId(2);

    #[test]
    fn lease_report_finishes() {
        let mut s = sched(2);
        let g = s.lease(W1, 0, 10);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].attempt, 1);
        assert_eq!(
            s.report(W1, g[0].id, 1, ReportKind::Succeeded),
            Disposition::Accepted { status: TrialStatus::Succeeded }
        );
        assert!(!s.is_finished());
        s.report(W1, g[1].id, 1, ReportKind::Diverged);
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
        assert_eq!(r, vec![Revoked { id: TrialId(0), attempt: 1, worker: W1, gave_up: false }]);
        let g2 = s.lease(W2, 160, 1);
        assert_eq!(g2[0].attempt, 2);
        // The old worker's report is late, its heartbeat says the lease is stale.
        assert_eq!(s.report(W1, TrialId(0), 1, ReportKind::Succeeded), Disposition::Late);
        assert_eq!(s.heartbeat(W1, &[(TrialId(0), 1)], 170), vec![(TrialId(0), 1)]);
        assert_eq!(
            s.report(W2, TrialId(0), 2, ReportKind::Succeeded),
            Disposition::Accepted { status: TrialStatus::Succeeded }
        );
        // A duplicate of the accepted report is late.
        assert_eq!(s.report(W2, TrialId(0), 2, ReportKind::Succeeded), Disposition::Late);
        assert_eq!(s.counts().succeeded, 1);
    }

    #[test]
    fn failures_retry_then_fail() {
        let mut s = sched(1);
        let g = s.lease(W1, 0, 1);
        assert_eq!(
            s.report(W1, g[0].id, 1, ReportKind::Failed),
            Disposition::Accepted { status: TrialStatus::Pending }
        );
        let g = s.lease(W1, 0, 1);
        assert_eq!(g[0].attempt, 2);
        assert_eq!(s.report(W1, g[0].id, 2, ReportKind::Failed), Disposition::Accepted { status: TrialStatus::Failed });
        assert!(s.is_finished());
        assert!(s.lease(W1, 0, 1).is_empty());
    }

    #[test]
    fn resumed_trials_keep_counting_attempts() {
        let mut s = Scheduler::new(SchedulerConfig {
            lease_timeout_ms: 100,
            max_failures: 3,
            max_lost: 5,
            retry_backoff_ms: 0,
        });
        s.add(TrialId(1), params(), 4, 0, 0, TrialStatus::Running);
        s.add(TrialId(2), params(), 1, 0, 0, TrialStatus::Succeeded);
        assert_eq!(s.counts().pending, 1);
        assert_eq!(s.counts().succeeded, 1);
        let g = s.lease(W1, 0, 5);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].attempt, 5);
    }

    #[test]
    fn a_trial_that_keeps_losing_its_lease_fails_in_the_end() {
        let mut s =
            Scheduler::new(SchedulerConfig { lease_timeout_ms: 10, max_failures: 3, max_lost: 3, retry_backoff_ms: 0 });
        s.add(TrialId(1), params(), 0, 0, 0, TrialStatus::Pending);
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
        let mut s =
            Scheduler::new(SchedulerConfig { lease_timeout_ms: 10, max_failures: 3, max_lost: 1, retry_backoff_ms: 0 });
        s.add(TrialId(1), params(), 0, 0, 0, TrialStatus::Pending);
        s.lease(W1, 0, 1);
        assert!(!s.release_worker(W1)[0].gave_up);
        assert_eq!(s.counts().pending, 1);
    }

    #[test]
    fn failed_attempts_back_off_before_their_retry() {
        let mut s = Scheduler::new(SchedulerConfig {
            lease_timeout_ms: 10_000,
            max_failures: 5,
            max_lost: 5,
            retry_backoff_ms: 100,
        });
        s.add(TrialId(1), params(), 0, 0, 0, TrialStatus::Pending);
        s.add(TrialId(2), params(), 0, 0, 0, TrialStatus::Pending);
        let g = s.lease(W1, 0, 1);
        assert_eq!(g[0].id, TrialId(1));
        s.report(W1, TrialId(1), 1, ReportKind::Failed);
        // Trial 1 waits 100 ms; trial 2 goes first.
        assert_eq!(s.lease(W1, 50, 2).iter().map(|g| g.id).collect::<Vec<_>>(), vec![TrialId(2)]);
        assert!(s.lease(W1, 99, 1).is_empty());
        let g = s.lease(W1, 100, 1);
        assert_eq!((g[0].id, g[0].attempt), (TrialId(1), 2));
        // The second failure waits twice as long.
        s.report(W1, TrialId(1), 2, ReportKind::Failed);
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
            let cfg = SchedulerConfig {
                lease_timeout_ms: 100,
                max_failures: 1 + rand(3) as u32,
                max_lost: u32::MAX,
                retry_backoff_ms: rand(3) * 50,
            };
            // The "store": final status per trial, and attempts/failures so far.
            let mut finals: HashMap<TrialId, TrialStatus> = HashMap::new();
            let mut attempts: HashMap<TrialId, (u32, u32)> = HashMap::new();
            let rebuild = |finals: &HashMap<TrialId, TrialStatus>, attempts: &HashMap<TrialId, (u32, u32)>| {
                let mut s = Scheduler::new(cfg);
                for i in 0..trials {
                    let id = TrialId(i);
                    let (a, f) = attempts.get(&id).copied().unwrap_or((0, 0));
                    s.add(id, params(), a, f, 0, finals.get(&id).copied().unwrap_or(TrialStatus::Pending));
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
                        let kind = [ReportKind::Succeeded, ReportKind::Failed, ReportKind::Diverged][rand(3) as usize];
                        let before = finals.get(&id).copied();
                        match s.report(w, id, a, kind) {
                            Disposition::Accepted { status } => {
                                assert!(before.is_none(), "a finished trial was reported again and accepted");
                                if status == TrialStatus::Pending {
                                    attempts.entry(id).or_default().1 += 1;
                                } else {
                                    if kind == ReportKind::Failed {
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
                    if let Disposition::Accepted { status } = s.report(w, g.id, g.attempt, ReportKind::Succeeded) {
                        assert!(finals.insert(g.id, status).is_none());
                    }
                }
            }
            assert!(s.is_finished());
            assert_eq!(finals.len() as u64, trials);
        }
    }
}
