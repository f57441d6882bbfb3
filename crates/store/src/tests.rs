//! The store's unit tests: plans, writes, reads and resume, on databases in scratch directories.

use super::*;
use kappa_core::{
    AttemptOutcome, CodeVersion, Counts, FailureClass, Hyperparams, PlannedTrial, TrialId, TrialMetrics, TrialStatus,
};
use std::path::Path;

static TASKS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec!["{}".to_string()]);

/// A plan header of sweep `name` (one task), the plan it names told by `fingerprint`.
fn header<'a>(name: &'a str, version: &'a CodeVersion, fingerprint: &'a str) -> PlanHeader<'a> {
    PlanHeader { sweep: name, spec_path: "f.toml", spec: "spec", version, tasks: &TASKS, fingerprint, len: 3 }
}

fn rows(trials: impl Iterator<Item = PlannedTrial>) -> Vec<PlanRow> {
    trials.map(PlanRow::from).collect()
}

fn trial(i: u64) -> PlannedTrial {
    PlannedTrial {
        id: TrialId(1000 + i),
        seq: i,
        variant: None,
        task: 0,
        params: kappa_core::Params::from(Hyperparams { lr: 0.1, seed: i, ..Hyperparams::defaults() }),
        origin: kappa_core::Origin::Grid,
    }
}

fn report(i: u64, attempt: u32, effect: ReportEffect) -> StoreOp {
    reported(i, attempt, effect, AttemptOutcome::Succeeded(TrialMetrics::default()))
}

/// Worker `w`'s report of trial `i`'s `attempt`.
fn reported(i: u64, attempt: u32, effect: ReportEffect, outcome: AttemptOutcome) -> StoreOp {
    StoreOp::Reported {
        id: TrialId(1000 + i),
        attempt,
        worker: "w".into(),
        at: 1.0,
        duration_s: 0.5,
        outcome,
        effect,
        rung: None,
    }
}

/// Trial `i`'s first attempt succeeded with `metrics`, its final result.
fn finished(i: u64, metrics: TrialMetrics) -> StoreOp {
    reported(i, 1, ReportEffect::Final, AttemptOutcome::Succeeded(metrics))
}

#[test]
fn plan_run_resume_and_replan() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let sync = s.sync_plan(&header("demo", &CodeVersion::NONE, "p1"), || rows((0..3).map(trial))).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 3, reused: 0, requeued: 0 });
    let lease = |i: u64, a: u32| StoreOp::Leased { id: TrialId(1000 + i), attempt: a, worker: "w".into(), at: 0.0 };
    s.apply(&[lease(0, 1), lease(1, 1), report(0, 1, ReportEffect::Final)]).unwrap();
    // A late duplicate never overwrites the counted result, nor the counted attempt.
    s.apply(&[report(0, 1, ReportEffect::Late)]).unwrap();
    let c = s.counts().unwrap();
    assert_eq!((c.succeeded, c.running, c.pending), (1, 1, 1));
    let counted: i64 = s
        .conn
        .query_row(
            "SELECT counted FROM attempts WHERE trial_id = ?1 AND attempt = 1",
            [TrialId(1000).to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counted, 1, "a late duplicate of a counted attempt left it counted");
    drop(s);

    // Resume: the running trial is requeued, the finished one reused.
    let mut s = Store::open(dir.path()).unwrap();
    let sync = s.sync_plan(&header("demo", &CodeVersion::NONE, "p1"), || rows((0..3).map(trial))).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 0, reused: 1, requeued: 1 });
    let open = s.pending_after(None, usize::MAX).unwrap();
    assert_eq!(open.iter().map(|t| (t.id.0, t.attempts)).collect::<Vec<_>>(), vec![(1001, 1), (1002, 0)]);
    let log = s.attempts().unwrap();
    assert_eq!(log[1].outcome.as_deref(), Some("lost"));

    // Replan with one trial dropped and one added.
    let sync =
        s.sync_plan(&header("demo", &CodeVersion::NONE, "p2"), || rows([1, 2, 3].into_iter().map(trial))).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 1, reused: 0, requeued: 0 });
    assert_eq!(s.trials().unwrap().len(), 3);
    assert!(matches!(
        s.sync_plan(&header("other", &CodeVersion::NONE, "p1"), || rows(std::iter::empty())),
        Err(StoreError::OtherSweep { .. })
    ));
}

#[test]
fn a_page_of_trials_is_filtered_sorted_counted_and_offset() {
    use kappa_core::Estimate;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    // lr 0.1, 0.2, 0.3, 0.1, 0.2, 0.3; seeds 0..6.
    let planned = |i: u64| {
        let mut t = trial(i);
        t.params.hyper.lr = 0.1 * ((i % 3) + 1) as f64;
        t
    };
    s.sync_plan(&header("demo", &CodeVersion::NONE, "p1"), || rows((0..6).map(planned))).unwrap();
    let lease = |i: u64| StoreOp::Leased { id: TrialId(1000 + i), attempt: 1, worker: "w".into(), at: 0.0 };
    let done = |i: u64| StoreOp::Reported {
        rung: None,
        id: TrialId(1000 + i),
        attempt: 1,
        worker: "w".into(),
        at: 1.0,
        duration_s: i as f64,
        outcome: AttemptOutcome::Succeeded(TrialMetrics {
            stationary_loss: Some(Estimate { mean: 10.0 - i as f64, se: 0.1 }),
            ..TrialMetrics::default()
        }),
        effect: ReportEffect::Final,
    };
    let failed = StoreOp::Reported {
        rung: None,
        id: TrialId(1004),
        attempt: 1,
        worker: "w".into(),
        at: 1.0,
        duration_s: 0.1,
        outcome: AttemptOutcome::Failed { error: "boom".into(), class: kappa_core::FailureClass::Error },
        effect: ReportEffect::Final,
    };
    s.apply(&[lease(0), done(0), lease(1), done(1), lease(2), done(2), lease(3), done(3), lease(4), failed]).unwrap();
    let page = |q: TrialQuery| {
        let p = s.trial_page(&q).unwrap();
        (p.total, p.trials.iter().map(|t| t.seq).collect::<Vec<_>>())
    };
    assert_eq!(page(TrialQuery::default()), (6, vec![0, 1, 2, 3, 4, 5]));
    assert_eq!(page(TrialQuery { offset: 2, limit: 3, ..TrialQuery::default() }), (6, vec![2, 3, 4]));
    assert_eq!(page(TrialQuery { descending: true, limit: 2, ..TrialQuery::default() }), (6, vec![5, 4]));
    let status = |st| TrialQuery { status: Some(st), ..TrialQuery::default() };
    assert_eq!(page(status(TrialStatus::Succeeded)), (4, vec![0, 1, 2, 3]));
    assert_eq!(page(status(TrialStatus::Pending)), (1, vec![5]));
    // A parameter filter (a number; a string), alone and with a status.
    let lr = |v: f64| vec![("lr".to_string(), serde_json::json!(v))];
    assert_eq!(page(TrialQuery { filters: lr(0.2), ..TrialQuery::default() }), (2, vec![1, 4]));
    assert_eq!(
        page(TrialQuery { filters: lr(0.2), status: Some(TrialStatus::Failed), ..TrialQuery::default() }),
        (1, vec![4])
    );
    let sgd = vec![("optimizer".to_string(), serde_json::json!("sgd"))];
    assert_eq!(page(TrialQuery { filters: sgd, ..TrialQuery::default() }).0, 6);
    let seed = vec![("seed".to_string(), serde_json::json!(3))];
    assert_eq!(page(TrialQuery { filters: seed, ..TrialQuery::default() }), (1, vec![3]));
    // A name that is not a parameter name matches nothing, rather than reaching the SQL.
    let bad = vec![("lr') OR 1=1 --".to_string(), serde_json::json!(1))];
    assert_eq!(page(TrialQuery { filters: bad, ..TrialQuery::default() }), (0, vec![]));
    // Sorted by loss (missing ones last, either way), by a parameter, ties in plan order.
    let by = |sort, descending| TrialQuery { sort, descending, ..TrialQuery::default() };
    assert_eq!(page(by(SortKey::Stationary, false)), (6, vec![3, 2, 1, 0, 4, 5]));
    assert_eq!(page(by(SortKey::Stationary, true)), (6, vec![0, 1, 2, 3, 5, 4]));
    assert_eq!(page(by(SortKey::Param("lr".into()), false)), (6, vec![0, 3, 1, 4, 2, 5]));
    assert_eq!(page(by(SortKey::Duration, true)).1[..2], [3, 2]);
    assert_eq!(page(by(SortKey::Status, false)).1, vec![4, 5, 0, 1, 2, 3]);
    // One trial and its attempts.
    assert_eq!(s.trial(TrialId(1004)).unwrap().map(|t| t.result.status), Some(TrialStatus::Failed));
    assert!(s.trial(TrialId(9)).unwrap().is_none());
    let log = s.attempts_of(TrialId(1004)).unwrap();
    assert_eq!(log.iter().map(|a| (a.attempt, a.class.as_deref())).collect::<Vec<_>>(), [(1, Some("error"))]);
}

#[test]
fn a_retried_failure_is_logged_but_not_the_trials_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header("demo", &CodeVersion::NONE, "p1"), || rows((0..1).map(trial))).unwrap();
    let lease = |a: u32| StoreOp::Leased { id: TrialId(1000), attempt: a, worker: "w".into(), at: 0.0 };
    let failed = |effect| StoreOp::Reported {
        rung: None,
        id: TrialId(1000),
        attempt: 1,
        worker: "w".into(),
        at: 1.0,
        duration_s: 0.5,
        outcome: AttemptOutcome::Failed { error: "boom".into(), class: kappa_core::FailureClass::Error },
        effect,
    };
    s.apply(&[lease(1), failed(ReportEffect::Retry), lease(2), report(0, 2, ReportEffect::Final)]).unwrap();
    // A late duplicate of the failed attempt leaves its record (and the failure count) alone.
    s.apply(&[report(0, 1, ReportEffect::Late)]).unwrap();
    let log: Vec<(Option<String>, bool)> = s.attempts().unwrap().into_iter().map(|a| (a.outcome, a.counted)).collect();
    assert_eq!(log, [(Some("failed".into()), false), (Some("succeeded".into()), true)]);
    assert_eq!(s.failed_attempts().unwrap(), 1);
}

#[test]
fn bad_state_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Store::open(dir.path()), Err(StoreError::NotFound(_))));
    std::fs::write(dir.path().join(DB_FILE), b"this is not a database, just some text padding it out").unwrap();
    let e = Store::open(dir.path()).err().unwrap();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(Store::create(&file), Err(StoreError::BadDir { .. })));
    let d2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(d2.path().join(DB_FILE)).unwrap();
    assert!(matches!(Store::open(d2.path()), Err(StoreError::Corrupt { .. })));
}

fn lost(i: u64, attempt: u32, end: kappa_core::LeaseEnd, failed: Option<&str>) -> StoreOp {
    StoreOp::Lost { id: TrialId(1000 + i), attempt, at: 2.0, end, failed: failed.map(str::to_string), rung: None }
}

#[test]
fn every_attempt_that_ends_without_a_report_is_lost_and_only_expired_ones_count() {
    use kappa_core::LeaseEnd;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header("demo", &CodeVersion::NONE, "p1"), || rows((0..3).map(trial))).unwrap();
    let lease = |i: u64, a: u32| StoreOp::Leased { id: TrialId(1000 + i), attempt: a, worker: "w".into(), at: 0.0 };
    s.apply(&[lease(0, 1), lost(0, 1, LeaseEnd::Expired, None), lease(1, 1), lost(1, 1, LeaseEnd::WorkerLeft, None)])
        .unwrap();
    s.apply(&[lease(2, 1), lost(2, 1, LeaseEnd::Expired, Some("lost its lease 1 times: given up"))]).unwrap();
    let log = s.attempts().unwrap();
    assert!(log.iter().all(|a| a.outcome.as_deref() == Some("lost")), "{log:?}");
    assert_eq!(log.iter().map(|a| a.class.as_deref()).collect::<Vec<_>>(), [Some("lost"), None, Some("lost")]);
    assert_eq!(log[1].error.as_deref(), Some(LeaseEnd::WorkerLeft.reason()));
    assert!(log[2].counted, "the attempt that failed the trial is its counted one");
    let open = s.pending_after(None, usize::MAX).unwrap();
    assert_eq!(
        open.iter().map(|t| (t.id.0, t.failures.of(kappa_core::FailureClass::Lost))).collect::<Vec<_>>(),
        [(1000, 1), (1001, 0)]
    );
    assert_eq!(s.failed_attempts().unwrap(), 2);
    let failed = &s.trials().unwrap()[2];
    assert_eq!(failed.result.status, TrialStatus::Failed);
    assert_eq!(failed.result.error.as_deref(), Some("lost its lease 1 times: given up"));
    // A retry gives the failed trial a fresh budget: its lost attempt stops counting.
    assert_eq!(s.reset_failed().unwrap(), 1);
    assert_eq!(s.failed_attempts().unwrap(), 1);
}

/// A version 1 store, as kappa wrote it before the attempt log had one word for lost leases.
#[test]
fn a_version_1_store_is_migrated_in_place_and_counts_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header("demo", &CodeVersion::NONE, "p1"), || rows((0..2).map(trial))).unwrap();
    s.conn
        .execute_batch(
            "UPDATE meta SET value = '1' WHERE key = 'schema_version';
             INSERT INTO attempts(trial_id, attempt, worker, started_at, ended_at, outcome, counted) VALUES
               ('00000000000003e8', 1, 'w', 0, 1, 'expired', 0),
               ('00000000000003e8', 2, 'w', 1, 2, 'released', 0),
               ('00000000000003e8', 3, 'w', 2, 3, 'lost', 0),
               ('00000000000003e9', 1, 'w', 0, 1, 'expired-before-retry', 0),
               ('00000000000003e9', 2, 'w', 1, 2, 'failed', 0);
             UPDATE trials SET attempts = 3 WHERE id = '00000000000003e8';
             UPDATE trials SET attempts = 2 WHERE id = '00000000000003e9';",
        )
        .unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.meta("schema_version").unwrap(), Some(SCHEMA_VERSION.to_string()));
    let log: Vec<_> =
        s.attempts().unwrap().into_iter().map(|a| (a.outcome.unwrap_or_default(), a.class, a.error)).collect();
    let expired = Some(kappa_core::LeaseEnd::Expired.reason().to_string());
    assert_eq!(log[0], ("lost".into(), Some("lost".into()), expired.clone()));
    assert_eq!(log[1], ("lost".into(), None, Some("handed back".into())));
    assert_eq!(log[2], ("lost".into(), None, Some(kappa_core::LeaseEnd::Abandoned.reason().into())));
    assert_eq!(log[3], ("lost-before-retry".into(), Some("lost".into()), expired));
    // The same failures count as before: one expired lease, one failed attempt.
    assert_eq!(s.failed_attempts().unwrap(), 2);
    assert_eq!(s.pending_after(None, usize::MAX).unwrap()[0].failures, kappa_core::FailureCounts::new(0, 0, 0, 1));
    drop(s);
    // Opening it again changes nothing more.
    assert_eq!(Store::open(dir.path()).unwrap().attempts().unwrap().len(), 5);
}

/// Copies a state directory made by an earlier kappa (tests/fixtures/stores/) to a temporary one.
fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stores").join(name);
    std::fs::copy(Store::db_path(&from), Store::db_path(dir.path())).unwrap();
    dir
}

#[test]
fn a_version_2_store_records_the_version_its_ids_carry() {
    for (name, kind) in [("sim", "optimizer"), ("command", "command"), ("noop", "noop")] {
        let dir = fixture(name);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.meta("schema_version").unwrap(), Some(SCHEMA_VERSION.to_string()));
        assert_eq!(s.code_version().unwrap(), Some(CodeVersion::legacy(kind)), "{name}");
        assert_eq!(s.code_version().unwrap().unwrap().get(), Some("kappa-sim/3"));
        // Every trial and its result are still there.
        assert!(s.trials().unwrap().iter().all(|t| t.result.status == TrialStatus::Succeeded), "{name}");
        assert_counts_agree(&s);
    }
    // A store that never held a plan records nothing; its first plan does.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::create(dir.path()).unwrap();
    s.conn.execute_batch("UPDATE meta SET value = '2' WHERE key = 'schema_version'").unwrap();
    drop(s);
    let mut s = Store::open(dir.path()).unwrap();
    assert_eq!(s.code_version().unwrap(), None);
    s.sync_plan(&header("demo", &"kappa-sim/9".into(), "p1"), || rows((0..1).map(trial))).unwrap();
    assert_eq!(s.code_version().unwrap(), Some(CodeVersion::code("kappa-sim/9")));
}
/// The counts read through the indexes agree with a count of the rows and of their results'
/// health.
fn assert_counts_agree(s: &Store) {
    let g = s.generation().unwrap();
    let mut by_scan = Counts::default();
    let mut stmt = s.conn.prepare("SELECT status, count(*) FROM trials WHERE generation = ?1 GROUP BY status").unwrap();
    for row in stmt.query_map([g], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap() {
        let (status, n) = row.unwrap();
        by_scan.add(status.parse().unwrap(), n as u64);
    }
    let mut stmt = s.conn.prepare("SELECT metrics FROM trials WHERE generation = ?1 AND status = 'succeeded'").unwrap();
    for row in stmt.query_map([g], |r| r.get::<_, Option<String>>(0)).unwrap() {
        if let Some(m) = row.unwrap().and_then(|m| serde_json::from_str::<TrialMetrics>(&m).ok()) {
            by_scan.add_health(m.health(), 1);
        }
    }
    assert_eq!(s.counts().unwrap(), by_scan);
}

fn header_of(len: u64, fingerprint: &str) -> PlanHeader<'_> {
    PlanHeader { len, ..header("demo", &CodeVersion::NONE, fingerprint) }
}

#[test]
fn an_unchanged_plan_is_resumed_without_reading_its_rows_and_a_changed_one_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header_of(3, "p1"), || rows((0..3).map(trial))).unwrap();
    let lease = StoreOp::Leased { id: TrialId(1000), attempt: 1, worker: "w".into(), at: 0.0 };
    s.apply(&[lease, report(1, 1, ReportEffect::Final)]).unwrap();
    let generation = s.generation().unwrap();
    // Same fingerprint: the rows are not asked for, the interrupted trial is re-queued.
    let sync = s.sync_plan(&header_of(3, "p1"), || -> Vec<PlanRow> { panic!("the rows were read") }).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 0, reused: 1, requeued: 1 });
    assert_eq!(s.generation().unwrap(), generation, "a resume is not a new plan");
    assert_eq!(s.attempts().unwrap()[0].outcome.as_deref(), Some("lost"));
    // Another fingerprint: every row is written again, results kept.
    let sync = s.sync_plan(&header_of(4, "p2"), || rows((0..4).map(trial))).unwrap();
    assert_eq!(sync, PlanSync { total: 4, new: 1, reused: 1, requeued: 0 });
    assert_eq!(s.generation().unwrap(), generation + 1);
    assert_counts_agree(&s);
}

/// Rows that stop (a panic, as a crash would) after `n`.
fn rows_failing_after(n: u64, total: u64) -> impl Iterator<Item = PlanRow> {
    (0..total).map(move |i| if i == n { panic!("crash while planning") } else { PlanRow::from(trial(i)) })
}

#[test]
fn a_crash_part_way_through_a_plan_leaves_the_store_as_it_was() {
    let n = 3 * plan::BULK_MIN;
    let dir = tempfile::tempdir().unwrap();
    // A first plan, written beside the store: the store keeps no trial, and the next plan works.
    let mut s = Store::create(dir.path()).unwrap();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.sync_plan(&header_of(n, "p1"), || rows_failing_after(n / 2, n))
    }));
    assert!(crashed.is_err());
    drop(s);
    let mut s = Store::open(dir.path()).unwrap();
    assert_eq!(s.counts().unwrap().total, 0);
    assert_eq!(s.sweep_info().unwrap(), None, "the crashed plan left a sweep behind");
    let sync = s.sync_plan(&header_of(n, "p1"), || rows((0..n).map(trial))).unwrap();
    assert_eq!(sync, PlanSync { total: n, new: n, reused: 0, requeued: 0 });
    assert!(!dir.path().join("kappa.db.new").exists());
    let pending = s.pending_after(None, usize::MAX).unwrap();
    assert_eq!(pending.iter().map(|t| t.seq).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    // A changed plan synced in place: the old plan stays whole.
    s.apply(&[
        StoreOp::Leased { id: TrialId(1000), attempt: 1, worker: "w".into(), at: 0.0 },
        report(0, 1, ReportEffect::Final),
    ])
    .unwrap();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.sync_plan(&header_of(n + 1, "p2"), || rows_failing_after(n / 2, n + 1))
    }));
    assert!(crashed.is_err());
    drop(s);
    let mut s = Store::open(dir.path()).unwrap();
    let c = s.counts().unwrap();
    assert_eq!((c.total, c.succeeded), (n, 1));
    let sync = s.sync_plan(&header_of(n + 1, "p2"), || rows((0..n + 1).map(trial))).unwrap();
    assert_eq!(sync, PlanSync { total: n + 1, new: 1, reused: 1, requeued: 0 });
    // Every trial once.
    let ids: std::collections::HashSet<TrialId> = s.trials().unwrap().iter().map(|t| t.result.id).collect();
    assert_eq!(ids.len() as u64, n + 1);
    assert_counts_agree(&s);
}

#[test]
fn pending_trials_are_read_in_plan_order_after_a_position_and_the_rest_can_be_halted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header_of(6, "p1"), || rows((0..6).map(trial))).unwrap();
    s.apply(&[
        StoreOp::Leased { id: TrialId(1001), attempt: 1, worker: "w".into(), at: 0.0 },
        report(1, 1, ReportEffect::Final),
    ])
    .unwrap();
    let seqs = |v: Vec<OpenTrial>| v.iter().map(|t| t.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.pending_after(None, 2).unwrap()), [0, 2]);
    assert_eq!(seqs(s.pending_after(Some(2), 10).unwrap()), [3, 4, 5]);
    s.apply(&[StoreOp::HaltedAfter { after_seq: Some(3), error: "budget".into() }]).unwrap();
    let c = s.counts().unwrap();
    assert_eq!((c.pending, c.failed, c.succeeded), (3, 2, 1));
    assert_eq!(s.failed_trials().unwrap().iter().map(|t| t.seq).collect::<Vec<_>>(), [4, 5]);
    assert_counts_agree(&s);
}

#[test]
fn a_version_3_store_gets_its_unsettled_trials_indexed() {
    use kappa_core::trial::Estimate;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header_of(2, "p1"), || rows((0..2).map(trial))).unwrap();
    let metrics = |drift: f64| TrialMetrics {
        stationary_loss: Some(Estimate { mean: 1.0, se: 0.01 }),
        stationary_drift: Some(Estimate { mean: drift, se: 0.01 }),
        ..TrialMetrics::default()
    };
    s.apply(&[finished(0, metrics(0.5)), finished(1, metrics(0.0))]).unwrap();
    assert_eq!(s.unsettled_trials().unwrap().iter().map(|t| t.seq).collect::<Vec<_>>(), [0]);
    // As version 3 left it: no column values (the column is there, as this build made it).
    s.conn
        .execute_batch("UPDATE trials SET unsettled = NULL; UPDATE meta SET value = '3' WHERE key = 'schema_version';")
        .unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.meta("schema_version").unwrap(), Some(SCHEMA_VERSION.to_string()));
    assert_eq!(s.unsettled_trials().unwrap().iter().map(|t| t.seq).collect::<Vec<_>>(), [0]);
}

#[test]
fn a_resume_counts_the_trials_a_draining_run_handed_back_as_interrupted() {
    // Ctrl-C or SIGTERM: the workers hand their attempts back (preempted), so those trials are
    // pending already when the run resumes; they were interrupted all the same.
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header_of(3, "p1"), || rows((0..3).map(trial))).unwrap();
    let lease = |i: u64| StoreOp::Leased { id: TrialId(1000 + i), attempt: 1, worker: "w".into(), at: 0.0 };
    let handed_back =
        |i: u64| reported(i, 1, ReportEffect::Requeue, AttemptOutcome::Preempted { reason: "draining".into() });
    s.apply(&[lease(0), lease(1), lease(2), handed_back(0), handed_back(1), report(2, 1, ReportEffect::Final)])
        .unwrap();
    let sync = s.sync_plan(&header_of(3, "p1"), Vec::new).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 0, reused: 1, requeued: 2 });
    // Once one of them has run again, it is no longer interrupted.
    s.apply(&[
        StoreOp::Leased { id: TrialId(1000), attempt: 2, worker: "w".into(), at: 2.0 },
        report(0, 2, ReportEffect::Final),
    ])
    .unwrap();
    let sync = s.sync_plan(&header_of(3, "p1"), Vec::new).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 0, reused: 2, requeued: 1 });
    // One whose later attempt failed and waits for its retry was not interrupted by this run.
    let failed = reported(
        1,
        2,
        ReportEffect::Retry,
        AttemptOutcome::Failed { error: "boom".into(), class: kappa_core::FailureClass::Error },
    );
    s.apply(&[StoreOp::Leased { id: TrialId(1001), attempt: 2, worker: "w".into(), at: 0.5 }, failed]).unwrap();
    let sync = s.sync_plan(&header_of(3, "p1"), Vec::new).unwrap();
    assert_eq!(sync, PlanSync { total: 3, new: 0, reused: 2, requeued: 0 });
}

#[test]
fn trials_that_did_not_train_are_counted_from_their_index_and_a_version_4_store_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header_of(3, "p1"), || rows((0..3).map(trial))).unwrap();
    let curve = |losses: &[f64]| TrialMetrics {
        curve: losses
            .iter()
            .enumerate()
            .map(|(i, &l)| kappa_core::CurvePoint::single(i as u64 * 10, i as u64, l))
            .collect(),
        ..TrialMetrics::default()
    };
    // Trained (came down), unstable (1 → 1e3 without overflowing), did not train (ended higher).
    s.apply(&[
        finished(0, curve(&[1.0, 0.5, 0.1])),
        finished(1, curve(&[1.0, 30.0, 1e3])),
        finished(2, curve(&[1.0, 1.5, 2.0])),
    ])
    .unwrap();
    let c = s.counts().unwrap();
    assert_eq!((c.succeeded, c.did_not_train, c.unstable), (3, 1, 1));
    // As version 4 left it: no column, no index.
    s.conn
        .execute_batch(
            "DROP INDEX trials_unhealthy; ALTER TABLE trials DROP COLUMN health;
             UPDATE meta SET value = '4' WHERE key = 'schema_version';",
        )
        .unwrap();
    assert!(s.counts().is_err(), "a version 4 store has no health column");
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.meta("schema_version").unwrap(), Some(SCHEMA_VERSION.to_string()));
    assert_eq!(s.counts().unwrap(), c);
    assert_counts_agree(&s);
}

#[test]
fn a_search_records_its_proposals_before_they_run_and_a_known_one_keeps_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let v = CodeVersion::from("v");
    s.sync_plan(&header("s", &v, "f1"), || rows((0..2).map(trial))).unwrap();
    s.apply(&[finished(0, TrialMetrics::default())]).unwrap();
    let probe = |i: u64, round: u32| PlannedTrial {
        origin: kappa_core::Origin::Probe { group: 0, round, reason: kappa_core::Reason::Refine, start: None },
        ..trial(i)
    };
    let tasks: std::sync::Arc<[String]> = TASKS.iter().map(|t| kappa_core::id::content_hash(t)).collect();
    // A new trial is pending with its origin; trial 0 (finished) proposed again keeps its result.
    s.apply(&[StoreOp::Proposed { rows: rows([probe(5, 1), probe(0, 1)].into_iter()), tasks: tasks.clone() }]).unwrap();
    let all = s.trials().unwrap();
    let five = all.iter().find(|t| t.result.id == TrialId(1005)).unwrap();
    assert_eq!(five.result.status, TrialStatus::Pending);
    assert_eq!(five.result.origin.as_ref().and_then(|o| o.group()), Some(0));
    let zero = all.iter().find(|t| t.result.id == TrialId(1000)).unwrap();
    assert_eq!(zero.result.status, TrialStatus::Succeeded);
    assert_eq!(zero.result.origin, Some(probe(0, 1).origin), "a grid row proposed by a search is its probe now");
    assert_eq!(s.counts().unwrap().total, 3);
    // A new plan (another generation): proposed again, the trial is part of it, result kept.
    s.sync_plan(&header("s", &v, "f2"), || rows((0..1).map(trial))).unwrap();
    assert_eq!(s.counts().unwrap().total, 1);
    s.apply(&[StoreOp::Proposed { rows: rows([probe(5, 1)].into_iter()), tasks }]).unwrap();
    assert_eq!(s.counts().unwrap().total, 2);
    assert_counts_agree(&s);
}

/// A store of this build taken back to an older schema by `older` (SQL, which sets the schema
/// version) and opened again: migrated to the current schema with its trials and ids unchanged.
/// `missing` says what `older` removed (reading the trials fails without it).
fn migrated(older: &str, missing: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let v = CodeVersion::from("v");
    s.sync_plan(&header("s", &v, "f1"), || rows((0..3).map(trial))).unwrap();
    s.apply(&[finished(1, TrialMetrics::default())]).unwrap();
    let before: Vec<_> = s.trials().unwrap().into_iter().map(|t| (t.result.id, t.result.status)).collect();
    s.conn.execute_batch(older).unwrap();
    assert!(s.trials().is_err(), "an older store has no {missing}");
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.meta("schema_version").unwrap(), Some(SCHEMA_VERSION.to_string()));
    let after: Vec<_> = s.trials().unwrap().into_iter().map(|t| (t.result.id, t.result.status)).collect();
    assert_eq!(before, after);
    (dir, s)
}

#[test]
fn a_version_5_store_gets_the_origin_column_with_its_trials_and_ids_unchanged() {
    let (_dir, s) = migrated(
        "ALTER TABLE trials DROP COLUMN origin; UPDATE meta SET value = '5' WHERE key = 'schema_version';",
        "origin column",
    );
    assert!(
        s.trials().unwrap().iter().all(|t| t.result.origin.is_none()),
        "grid trials, from before origins were kept"
    );
}

#[test]
fn a_proposal_of_an_earlier_plans_running_trial_comes_in_pending_with_this_plans_position_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let v = CodeVersion::from("v");
    let tasks: std::sync::Arc<[String]> = TASKS.iter().map(|t| kappa_core::id::content_hash(t)).collect();
    let probe = |i: u64, seq: u64, round: u32| PlannedTrial {
        seq,
        origin: kappa_core::Origin::Probe { group: 0, round, reason: kappa_core::Reason::Refine, start: None },
        ..trial(i)
    };
    s.sync_plan(&header("s", &v, "f1"), || rows((0..2).map(trial))).unwrap();
    s.apply(&[StoreOp::Proposed { rows: rows([probe(5, 10, 1)].into_iter()), tasks: tasks.clone() }]).unwrap();
    // Running when its process was killed; then the file is edited (another plan).
    s.apply(&[StoreOp::Leased { id: TrialId(1005), attempt: 1, worker: "w".into(), at: 1.0 }]).unwrap();
    s.sync_plan(&header("s", &v, "f2"), || rows((0..1).map(trial))).unwrap();
    // The edited search proposes it again, in another round, at another position.
    s.apply(&[StoreOp::Proposed { rows: rows([probe(5, 20, 2)].into_iter()), tasks }]).unwrap();
    let five = s.trials().unwrap().into_iter().find(|t| t.result.id == TrialId(1005)).unwrap();
    assert_eq!(five.result.status, TrialStatus::Pending, "a dead run's running trial is pending again");
    assert_eq!((five.seq, five.result.origin), (20, Some(probe(5, 20, 2).origin)));
    assert_eq!(s.pending_after(None, 10).unwrap().len(), 2, "the loader finds it");
    assert_counts_agree(&s);
}

#[test]
fn a_trial_failed_by_the_failure_budget_has_no_result_and_a_retired_one_leaves_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let v = CodeVersion::from("v");
    s.sync_plan(&header("s", &v, "f1"), || rows((0..3).map(trial))).unwrap();
    s.apply(&[
        finished(0, TrialMetrics::default()),
        StoreOp::Halted { id: TrialId(1001), error: "not run: the failure budget".into() },
    ])
    .unwrap();
    let results = s.finished_results().unwrap();
    assert!(results.contains_key(&TrialId(1000)) && !results.contains_key(&TrialId(1001)), "{results:?}");
    let keep: std::collections::HashSet<TrialId> = [TrialId(1000)].into();
    assert_eq!(s.retire_except(&keep).unwrap(), 2);
    assert_eq!(s.counts().unwrap().total, 1);
    assert!(s.finished_results().unwrap().contains_key(&TrialId(1000)));
    assert_counts_agree(&s);
}

#[test]
fn a_trial_the_failure_budget_stopped_comes_back_pending_when_a_later_plan_proposes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let v = CodeVersion::from("v");
    let tasks: std::sync::Arc<[String]> = TASKS.iter().map(|t| kappa_core::id::content_hash(t)).collect();
    s.sync_plan(&header("s", &v, "f1"), || rows((0..2).map(trial))).unwrap();
    // Trial 0 failed for real (retries spent); trial 1 never ran (the budget stopped it).
    s.apply(&[
        StoreOp::Leased { id: TrialId(1000), attempt: 1, worker: "w".into(), at: 1.0 },
        reported(
            0,
            1,
            ReportEffect::Final,
            AttemptOutcome::Failed { error: "boom".into(), class: FailureClass::Error },
        ),
        StoreOp::Halted { id: TrialId(1001), error: "not run: the failure budget".into() },
    ])
    .unwrap();
    s.sync_plan(&header("s", &v, "f2"), || rows(std::iter::empty())).unwrap();
    let open: Vec<TrialId> = s.open_elsewhere().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(open, vec![TrialId(1001)], "the one without a result of its own");
    s.apply(&[StoreOp::Proposed { rows: rows((0..2).map(trial)), tasks }]).unwrap();
    let st = |i: u64| s.trials().unwrap().into_iter().find(|t| t.result.id == TrialId(1000 + i)).unwrap().result.status;
    assert_eq!((st(0), st(1)), (TrialStatus::Failed, TrialStatus::Pending));
    assert_counts_agree(&s);
}

#[test]
fn a_retried_failure_is_no_result_any_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    let v = CodeVersion::from("v");
    s.sync_plan(&header("s", &v, "f1"), || rows((0..1).map(trial))).unwrap();
    s.apply(&[
        StoreOp::Leased { id: TrialId(1000), attempt: 1, worker: "w".into(), at: 1.0 },
        reported(
            0,
            1,
            ReportEffect::Final,
            AttemptOutcome::Failed { error: "boom".into(), class: FailureClass::Error },
        ),
    ])
    .unwrap();
    assert!(s.finished_results().unwrap().contains_key(&TrialId(1000)));
    s.reset_failed().unwrap();
    // Then the failure budget stops it before it runs again: its old failure is not its result.
    s.apply(&[StoreOp::Halted { id: TrialId(1000), error: "not run".into() }]).unwrap();
    assert!(s.finished_results().unwrap().is_empty());
}

#[test]
fn a_version_6_store_gets_the_rungs_of_successive_halving_with_its_trials_and_ids_unchanged() {
    let (_dir, s) = migrated(
        "ALTER TABLE trials DROP COLUMN rung; DROP TABLE rungs; \
         UPDATE meta SET value = '6' WHERE key = 'schema_version';",
        "rung column",
    );
    assert!(s.trials().unwrap().iter().all(|t| t.rung.is_none()), "no trial was halved");
    assert!(s.rung_results().unwrap().is_empty());
}

/// A report `op` as successive halving's result at `rung`, making its trial `status`.
fn at(op: StoreOp, rung: u32, status: kappa_core::TrialStatus) -> StoreOp {
    match op {
        StoreOp::Reported { id, attempt, worker, at, duration_s, outcome, effect, .. } => StoreOp::Reported {
            id,
            attempt,
            worker,
            at,
            duration_s,
            outcome,
            effect,
            rung: Some(crate::RungEnd { rung, status }),
        },
        other => other,
    }
}

/// A rung's result is recorded with its report, in order, with the samples its attempt computed;
/// the trial is stopped there (no health of its own) until a promotion makes it pending again at
/// its next rung; a promotion of a trial not stopped changes nothing.
#[test]
fn rung_results_are_recorded_in_order_with_their_reports_and_promotions_reopen_stopped_trials() {
    use kappa_core::{CurvePoint, TrialStatus};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header("s", &CodeVersion::from("v"), "f1"), || rows((0..3).map(trial))).unwrap();
    // Batch size 32 (the defaults): 100 steps are 3,200 samples.
    let curve = |to: u64| (0..=to).step_by(50).map(|k| CurvePoint::single(k * 32, k, 2.0 - k as f64 / 100.0)).collect();
    let at_rung = |i: u64, attempt: u32, to: u64, from: Option<u64>, status: TrialStatus, rung: u32| {
        let metrics = TrialMetrics { curve: curve(to), resumed_from: from, ..Default::default() };
        at(reported(i, attempt, ReportEffect::Final, AttemptOutcome::Succeeded(metrics)), rung, status)
    };
    s.apply(&[at_rung(2, 1, 100, None, TrialStatus::Stopped, 0), at_rung(0, 1, 100, None, TrialStatus::Stopped, 0)])
        .unwrap();
    let t = |s: &Store, i: u64| s.trials().unwrap().into_iter().find(|t| t.result.id == TrialId(1000 + i)).unwrap();
    assert_eq!((t(&s, 0).result.status, t(&s, 0).rung), (TrialStatus::Stopped, Some(0)));
    assert_eq!(s.counts().unwrap().stopped, 2);
    assert_eq!(s.counts().unwrap().did_not_train, 0, "a stopped trial has no health of its own");
    s.apply(&[StoreOp::Promoted { trials: vec![(TrialId(1000), 1), (TrialId(1001), 1)] }]).unwrap();
    assert_eq!((t(&s, 0).result.status, t(&s, 0).rung), (TrialStatus::Pending, Some(1)), "promoted");
    assert_eq!((t(&s, 1).result.status, t(&s, 1).rung), (TrialStatus::Pending, None), "not stopped: not promoted");
    s.apply(&[at_rung(0, 2, 300, Some(100), TrialStatus::Succeeded, 1)]).unwrap();
    assert_eq!((t(&s, 0).result.status, t(&s, 0).rung), (TrialStatus::Succeeded, Some(1)));
    let r = s.rung_results().unwrap();
    let got: Vec<_> =
        r.iter().map(|r| (r.id.0, r.rung, r.attempt, r.status, r.from_step, r.to_step, r.samples)).collect();
    assert_eq!(
        got,
        vec![
            (1002, 0, 1, TrialStatus::Stopped, 0, Some(100), Some(3_200)),
            (1000, 0, 1, TrialStatus::Stopped, 0, Some(100), Some(3_200)),
            (1000, 1, 2, TrialStatus::Succeeded, 100, Some(300), Some(6_400)),
        ],
        "in the order recorded, each attempt's own samples"
    );
    assert_eq!(r[2].metrics.as_ref().map(|m| m.curve.len()), Some(7));
    // A trial given up at its rung is a rung result too.
    s.apply(&[
        StoreOp::Promoted { trials: vec![(TrialId(1002), 1)] },
        StoreOp::Leased { id: TrialId(1002), attempt: 2, worker: "w".into(), at: 2.0 },
    ])
    .unwrap();
    s.apply(&[StoreOp::Lost {
        id: TrialId(1002),
        attempt: 2,
        at: 3.0,
        end: kappa_core::LeaseEnd::Expired,
        failed: Some("lost".into()),
        rung: Some(1),
    }])
    .unwrap();
    let last = s.rung_results().unwrap().pop().unwrap();
    assert_eq!((last.id.0, last.rung, last.status, last.to_step), (1002, 1, TrialStatus::Failed, None));
    assert_eq!(t(&s, 2).result.status, TrialStatus::Failed);
    assert_counts_agree(&s);
}

/// A sweep that no longer halves runs its stopped trials' whole budget: they are no result for
/// a search's replay, and pending again once requeued.
#[test]
fn stopped_trials_are_no_results_and_a_sweep_that_no_longer_halves_requeues_them() {
    use kappa_core::TrialStatus;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path()).unwrap();
    s.sync_plan(&header("s", &CodeVersion::from("v"), "f1"), || rows((0..3).map(trial))).unwrap();
    let stopped = at(finished(0, TrialMetrics::default()), 0, TrialStatus::Stopped);
    s.apply(&[stopped, finished(1, TrialMetrics::default())]).unwrap();
    let known = s.finished_results().unwrap();
    assert!(known.contains_key(&TrialId(1001)) && !known.contains_key(&TrialId(1000)), "{known:?}");
    assert_eq!(s.requeue_stopped().unwrap(), 1);
    assert_eq!((s.counts().unwrap().pending, s.counts().unwrap().stopped), (2, 0));
    assert_eq!(s.requeue_stopped().unwrap(), 0);
    assert_counts_agree(&s);
}
