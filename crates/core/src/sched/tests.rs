//! The scheduler's unit tests: leases, reports, retries, the failure budget, lazy loading, and
//! a randomized run against its invariants.

use super::*;
use crate::params::Hyperparams;
use crate::trial::{RetryPolicy, TrialMetrics};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Scheduler settings as the tests write them: lease timeout and retry backoff in ms.
fn config(lease_ms: u64, retries: RetryPolicy, failure_budget: Option<u64>, backoff_ms: u64) -> SchedulerConfig {
    SchedulerConfig {
        first_stop: None,
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
    resumed_from: None,
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
    Params::from(Hyperparams { lr: 0.1, ..Hyperparams::defaults() })
}

fn sched(n: u64) -> Scheduler {
    let mut s = new(config(100, RetryPolicy { error: 1, crash: 1, timeout: 1, lost: 4 }, None, 0));
    for i in 0..n {
        s.add(TrialId(i), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
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
    s2.add(TrialId(0), params(), task(), 2, FailureCounts::default(), TrialStatus::Running);
    s2.add(TrialId(1), params(), task(), 1, FailureCounts::default(), TrialStatus::Running);
    s2.add(TrialId(2), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
    assert!(s2.resume_in_flight(TrialId(0), 2));
    assert!(s2.resume_in_flight(TrialId(1), 1));
    assert!(!s2.resume_in_flight(TrialId(2), 1), "not the attempt the store knows");
    assert_eq!(s2.counts().running, 2);
    // Only trial 2 is leased; the worker holding trial 0 renews it and reports it.
    assert_eq!(s2.lease(W2, 0, 5).iter().map(|g| g.id).collect::<Vec<_>>(), vec![TrialId(2)]);
    assert!(s2.heartbeat(W1, &[AttemptRef::new(TrialId(0), 2)], 50).is_empty(), "adopted");
    assert_eq!(s2.report(W2, TrialId(0), 2, &SUCCEEDED), Disposition::Late, "W1's now");
    assert_eq!(s2.report(W1, TrialId(0), 2, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
    // A report straight after the restart, without a heartbeat first, is accepted too.
    assert_eq!(s2.report(W1, TrialId(1), 1, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
    // An in-flight lease nobody claims expires like any other.
    s = new(s.cfg.clone());
    s.add(TrialId(5), params(), task(), 1, FailureCounts::default(), TrialStatus::Running);
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
    assert!(s.load(None, TrialId(3), params(), task(), 1, FailureCounts::default()));
    assert!(s.load(Some(0), TrialId(0), params(), task(), 0, FailureCounts::default()));
    assert!(s.load(Some(1), TrialId(1), params(), task(), 0, FailureCounts::default()));
    // Read again at its place in the plan: skipped, and the next read starts after it.
    assert!(!s.load(Some(2), TrialId(3), params(), task(), 1, FailureCounts::default()), "loaded twice");
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
    s.add(TrialId(1), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
    s.add(TrialId(2), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
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
        s.add(TrialId(i), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
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
    s.add(TrialId(1), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
    s.add(TrialId(2), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
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
    assert_eq!(s.heartbeat(W1, &[g[0].attempt_ref()], 50), vec![]);
    // Renewed at 50: still leased at 120.
    assert!(s.expire(120).is_empty());
    let r = s.expire(150);
    assert_eq!(r, vec![Revoked { id: TrialId(0), attempt: 1, worker: W1, expired: true, gave_up: false }]);
    let g2 = s.lease(W2, 160, 1);
    assert_eq!(g2[0].attempt, 2);
    // The old worker's report is late, its heartbeat says the lease is stale.
    assert_eq!(s.report(W1, TrialId(0), 1, &SUCCEEDED), Disposition::Late);
    assert_eq!(s.heartbeat(W1, &[AttemptRef::new(TrialId(0), 1)], 170), vec![AttemptRef::new(TrialId(0), 1)]);
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
    s.add(TrialId(1), params(), task(), 4, FailureCounts::default(), TrialStatus::Running);
    s.add(TrialId(2), params(), task(), 1, FailureCounts::default(), TrialStatus::Succeeded);
    assert_eq!(s.counts().pending, 1);
    assert_eq!(s.counts().succeeded, 1);
    let g = s.lease(W1, 0, 5);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].attempt, 5);
}

#[test]
fn a_trial_that_keeps_losing_its_lease_fails_in_the_end() {
    let mut s = new(config(10, lost(2), None, 0));
    s.add(TrialId(1), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
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
    s.add(TrialId(1), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
    s.lease(W1, 0, 1);
    assert!(!s.release_worker(W1)[0].gave_up);
    assert_eq!(s.counts().pending, 1);
}

#[test]
fn failed_attempts_back_off_before_their_retry() {
    let mut s = new(config(10_000, RetryPolicy::uniform(4), None, 100));
    s.add(TrialId(1), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
    s.add(TrialId(2), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
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
                    FailureCounts::new(f, 0, 0, 0),
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
                    s.heartbeat(w, &[AttemptRef::new(id, a)], now);
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

#[test]
fn succeeded_trials_that_did_not_train_are_counted_as_such() {
    let mut s = sched(2);
    let leases = s.lease(W1, 0, 2);
    assert_eq!(leases.len(), 2);
    let point = |step: u64, loss: f64| crate::trial::CurvePoint::single(step, step, loss);
    let unstable = AttemptOutcome::Succeeded(TrialMetrics {
        curve: vec![point(0, 1.0), point(1, 50.0), point(2, 2e3)],
        ..TrialMetrics::default()
    });
    assert_eq!(s.report(W1, leases[0].id, 1, &unstable), Disposition::Accepted { status: TrialStatus::Succeeded });
    assert_eq!(s.report(W1, leases[1].id, 1, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
    let c = s.counts();
    assert_eq!((c.succeeded, c.unstable, c.did_not_train), (2, 1, 0));
}

/// Successive halving: a trial's lease stops at its rung; a result there stops the trial (a
/// result at the last rung succeeds it); a promotion takes a stopped trial on, with its attempt
/// numbers, leased before any trial that has not started (highest rung first, then by id); the
/// failure budget halts promoted trials with the rest.
#[test]
fn halving_trials_stop_at_their_rung_and_promoted_ones_lease_first() {
    use crate::lease::Stop;
    let rung = |k: u32, last: bool| Some(Stop { rung: k, samples: 1000 * (k as u64 + 1), last });
    let mut cfg = config(100, RetryPolicy::default(), Some(2), 0);
    cfg.first_stop = rung(0, false);
    let mut s = new(cfg);
    for i in 0..4 {
        s.add(TrialId(i), params(), task(), 0, FailureCounts::default(), TrialStatus::Pending);
    }
    let first = s.lease(W1, 0, 2);
    assert!(first.iter().all(|l| l.stop == rung(0, false)), "{first:?}");
    for l in &first {
        assert_eq!(s.report(W1, l.id, l.attempt, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Stopped });
    }
    assert_eq!((s.counts().stopped, s.counts().succeeded, s.counts().done()), (2, 0, 2));
    // Promotions: trial 1 to the last rung, trial 0 to rung 1; both before trials 2 and 3.
    assert!(s.reopen(TrialId(0), rung(1, false)));
    assert!(s.reopen(TrialId(1), rung(2, true)));
    assert!(!s.reopen(TrialId(2), rung(1, false)), "not stopped");
    assert_eq!((s.counts().stopped, s.counts().pending), (0, 4));
    let next = s.lease(W1, 1, 3);
    let got: Vec<(TrialId, u32, Option<Stop>)> = next.iter().map(|l| (l.id, l.attempt, l.stop)).collect();
    assert_eq!(
        got,
        vec![(TrialId(1), 2, rung(2, true)), (TrialId(0), 2, rung(1, false)), (TrialId(2), 1, rung(0, false))],
        "the highest rung first, attempts going on"
    );
    assert_eq!(s.report(W1, TrialId(1), 2, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Succeeded });
    assert_eq!(s.report(W1, TrialId(0), 2, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Stopped });
    assert_eq!(s.report(W1, TrialId(2), 1, &SUCCEEDED), Disposition::Accepted { status: TrialStatus::Stopped });
    // A promoted trial waiting when the failure budget runs out fails with the rest.
    assert!(s.reopen(TrialId(0), rung(2, true)));
    assert!(s.prioritize(TrialId(3)));
    for _ in 0..2 {
        let l = s.lease(W1, 2, 1).pop().unwrap();
        s.report(W1, l.id, l.attempt, &failed(FailureClass::Error));
    }
    assert!(s.is_halted());
    s.lease(W1, 3, 1);
    assert!(s.is_finished(), "{:?}", s.counts());
}
