//! Writes: the changes a coordinator makes to the record, committed in batches.

use crate::schema::{TERMINAL, failed_without_result};
use crate::{Store, StoreError};
use kappa_core::{AttemptOutcome, AttemptRef, FailureClass, LeaseEnd, TrialId};
use rusqlite::{Transaction, params};
use std::collections::{HashMap, HashSet};

/// One change to the record, produced by the coordinator.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    /// An attempt was leased to a worker.
    Leased {
        /// The trial.
        id: TrialId,
        /// Its attempt number.
        attempt: u32,
        /// The worker's name.
        worker: String,
        /// When (Unix seconds).
        at: f64,
    },
    /// A worker reported an attempt.
    Reported {
        /// The trial.
        id: TrialId,
        /// The attempt reported.
        attempt: u32,
        /// The worker's name.
        worker: String,
        /// When (Unix seconds).
        at: f64,
        /// How long the attempt ran, as the worker measured it.
        duration_s: f64,
        /// What the report said (the store encodes its metrics).
        outcome: AttemptOutcome,
        /// What the coordinator made of it.
        effect: ReportEffect,
        /// Under successive halving, the rung the attempt ran to and what its final result made
        /// of the trial (stopped there, succeeded at the last rung, diverged, failed): recorded
        /// in the `rungs` table, in order, with the result.
        rung: Option<RungEnd>,
    },
    /// A lease ended without a report (expired, handed back); the attempt log says `lost`.
    Lost {
        /// The trial.
        id: TrialId,
        /// The attempt that was lost.
        attempt: u32,
        /// When (Unix seconds).
        at: f64,
        /// How the lease ended; an expired one is a failed attempt of class `lost`.
        end: LeaseEnd,
        /// `Some(why)`: the trial lost too many leases and is failed for good with this message;
        /// `None`: it is pending again.
        failed: Option<String>,
        /// Under successive halving, the rung of the lost attempt (a trial failed for good
        /// there is recorded in the `rungs` table).
        rung: Option<u32>,
    },
    /// Successive halving promoted trials stopped at a rung: pending again, at their new rung.
    Promoted {
        /// Each trial and the rung it goes on to.
        trials: Vec<(TrialId, u32)>,
    },
    /// A trial failed for good without an attempt of its own (the sweep's failure budget ran out).
    Halted {
        /// The trial.
        id: TrialId,
        /// Why, in words.
        error: String,
    },
    /// A search proposed trials (before any is leased): each is inserted as pending in the
    /// current plan, or, already known (an earlier run proposed it, or it is in the plan), made
    /// part of the current plan with its result kept.
    Proposed {
        /// The trials, as rows of a plan.
        rows: Vec<crate::PlanRow>,
        /// The content hash of each task a row's `task` indexes (the plan's tasks).
        tasks: std::sync::Arc<[String]>,
    },
    /// Every pending trial of the current plan after a plan position failed for good, like
    /// [`StoreOp::Halted`]: the ones a scheduler had not loaded yet when the budget ran out.
    HaltedAfter {
        /// Trials after this plan position (`None`: every pending one).
        after_seq: Option<u64>,
        /// Why, in words.
        error: String,
    },
}

/// How an attempt of successive halving ended at its rung.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RungEnd {
    /// The rung it ran to.
    pub rung: u32,
    /// The trial's status after it (stopped, succeeded, diverged, failed).
    pub status: kappa_core::TrialStatus,
}

/// What a report did to its trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportEffect {
    /// The trial is finished with the report's outcome.
    Final,
    /// A failed attempt that will be retried.
    Retry,
    /// A report for a superseded attempt: kept in the attempt log, not counted.
    Late,
    /// An attempt handed back unfinished (preempted): the trial is pending again, nothing is
    /// counted against it.
    Requeue,
}

impl Store {
    /// Applies a batch of changes in one transaction.
    pub fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        // An attempt leased and finished within one batch (short trials at a high rate) is
        // written once, with its lease time, rather than written and then rewritten.
        let finished = finished_in(ops);
        let mut leased_at: HashMap<AttemptRef, f64> = HashMap::new();
        for op in ops {
            match op {
                StoreOp::Leased { id, attempt, at, .. } if finished.contains(&AttemptRef::new(*id, *attempt)) => {
                    leased_at.insert(AttemptRef::new(*id, *attempt), *at);
                    Ok(())
                }
                StoreOp::Leased { id, attempt, worker, at } => write_lease(&tx, *id, *attempt, worker, *at),
                StoreOp::Reported { id, attempt, worker, at, duration_s, outcome, effect, rung } => {
                    let lease_at = leased_at.remove(&AttemptRef::new(*id, *attempt));
                    let report =
                        Report { id: *id, attempt: *attempt, worker, at: *at, duration_s: *duration_s, outcome };
                    write_report(&tx, &report, *effect, lease_at, *rung)
                }
                StoreOp::Lost { id, attempt, at, end, failed, rung } => {
                    write_lost(&tx, *id, *attempt, *at, *end, failed.as_deref()).and_then(|()| match (failed, rung) {
                        (Some(_), Some(k)) => write_rung(
                            &tx,
                            *id,
                            *attempt,
                            RungEnd { rung: *k, status: kappa_core::TrialStatus::Failed },
                            None,
                            *at,
                        ),
                        _ => Ok(()),
                    })
                }
                StoreOp::Promoted { trials } => write_promoted(&tx, trials),
                StoreOp::Halted { id, error } => tx
                    .prepare_cached(&format!(
                        "UPDATE trials SET status = 'failed', error = ?2 WHERE id = ?1 AND status NOT IN {TERMINAL}"
                    ))
                    .and_then(|mut s| s.execute(params![id.to_string(), error]))
                    .map(drop),
                StoreOp::Proposed { rows, tasks } => write_proposed(&tx, rows, tasks),
                StoreOp::HaltedAfter { after_seq, error } => tx
                    .execute(
                        "UPDATE trials SET status = 'failed', error = ?2
                         WHERE generation = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation')
                           AND status = 'pending' AND seq > ?1",
                        params![after_seq.map_or(-1, |s| s as i64), error],
                    )
                    .map(drop),
            }
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }
}

/// A search's proposals: inserted pending, or brought into the current plan with their results.
fn write_proposed(tx: &Transaction<'_>, rows: &[crate::PlanRow], tasks: &[String]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO trials(id, seq, generation, task, params, status, created_at, origin)
         VALUES (?1, ?2, (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'), ?3, ?4, 'pending', ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET
           -- A row of an earlier plan comes in with this plan's position and origin, and pending
           -- if a run that is gone left it running (its attempts were closed when this plan was
           -- synced).
           seq = CASE WHEN generation = excluded.generation THEN seq ELSE excluded.seq END,
           origin = CASE WHEN generation = excluded.generation THEN coalesce(origin, excluded.origin)
                         ELSE excluded.origin END,
           -- (and pending too if it failed without a result of its own: the failure budget
           -- stopped it before it ran).
           status = CASE WHEN generation <> excluded.generation AND (status = 'running' OR {not_run})
                         THEN 'pending' ELSE status END,
           generation = excluded.generation",
        not_run = failed_without_result("trials")
    ))?;
    let now = crate::now_s();
    for r in rows {
        // A row of a task the plan does not have cannot be proposed: the search makes rows from
        // the plan's tasks.
        let Some(task) = tasks.get(r.task) else { continue };
        insert.execute(params![r.id.to_string(), r.seq as i64, task, r.params, now, r.origin])?;
    }
    Ok(())
}

/// The attempts a batch reports final results of.
fn finished_in(ops: &[StoreOp]) -> HashSet<AttemptRef> {
    ops.iter()
        .filter_map(|op| match op {
            StoreOp::Reported { id, attempt, effect: ReportEffect::Final, .. } => Some(AttemptRef::new(*id, *attempt)),
            _ => None,
        })
        .collect()
}

/// A lease: its attempt logged, its trial running.
fn write_lease(tx: &Transaction<'_>, id: TrialId, attempt: u32, worker: &str, at: f64) -> rusqlite::Result<()> {
    let id = id.to_string();
    tx.prepare_cached("INSERT OR REPLACE INTO attempts(trial_id, attempt, worker, started_at) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![id, attempt, worker, at]))?;
    tx.prepare_cached(&format!(
        "UPDATE trials SET status = 'running', attempts = max(attempts, ?2), worker = ?3, started_at = ?4
         WHERE id = ?1 AND status NOT IN {TERMINAL}"
    ))
    .and_then(|mut s| s.execute(params![id, attempt, worker, at]))?;
    Ok(())
}

/// A [`StoreOp::Reported`], borrowed.
struct Report<'a> {
    id: TrialId,
    attempt: u32,
    worker: &'a str,
    at: f64,
    duration_s: f64,
    outcome: &'a AttemptOutcome,
}

/// The columns a reported outcome fills: metrics JSON, error, failure class, divergence step.
fn outcome_columns(outcome: &AttemptOutcome) -> (Option<String>, Option<&str>, Option<&'static str>, Option<i64>) {
    match outcome {
        AttemptOutcome::Succeeded(m) => (serde_json::to_string(m).ok(), None, None, None),
        AttemptOutcome::Diverged { step, metrics } => {
            (serde_json::to_string(metrics).ok(), None, None, Some(*step as i64))
        }
        AttemptOutcome::Failed { error, class } => {
            (None, Some(error.as_str()), Some(FailureClass::as_str(*class)), None)
        }
        AttemptOutcome::Preempted { reason } => (None, Some(reason.as_str()), None, None),
    }
}

/// The `health` column of a succeeded trial with these metrics: null when it trained, so the
/// index holds only the others.
pub(crate) fn health_column(m: &kappa_core::TrialMetrics) -> Option<&'static str> {
    match m.health() {
        kappa_core::Health::Trained => None,
        h => Some(h.as_str()),
    }
}

/// A report: its attempt logged (with `lease_at` when the lease was not written on its own), and
/// its trial updated as `effect` says.
fn write_report(
    tx: &Transaction<'_>,
    r: &Report<'_>,
    effect: ReportEffect,
    lease_at: Option<f64>,
    rung: Option<RungEnd>,
) -> rusqlite::Result<()> {
    let id = r.id.to_string();
    let status = match (rung, effect) {
        (Some(end), ReportEffect::Final) => end.status,
        _ => r.outcome.status(),
    };
    // Found by `kappa status` through an index: no need to read every result.
    let unsettled = match r.outcome {
        AttemptOutcome::Succeeded(m) | AttemptOutcome::Diverged { metrics: m, .. } => {
            (m.settled() == Some(false)).then_some(1)
        }
        _ => None,
    };
    // (A trial stopped at a rung is not a succeeded one: its health is read when it finishes.)
    let health = match r.outcome {
        AttemptOutcome::Succeeded(m) if status == kappa_core::TrialStatus::Succeeded => health_column(m),
        _ => None,
    };
    let (metrics, error, class, diverged_step) = outcome_columns(r.outcome);
    let name = match r.outcome {
        AttemptOutcome::Preempted { .. } => "preempted".to_string(),
        _ => status.to_string(),
    };
    // `counted`: this attempt's result is the trial's (a retried failure is not).
    let (logged, counted) = match effect {
        ReportEffect::Late => (format!("late-{name}"), false),
        ReportEffect::Requeue | ReportEffect::Retry => (name, false),
        ReportEffect::Final => (name, true),
    };
    tx.prepare_cached(
        "INSERT INTO attempts(trial_id, attempt, worker, started_at, ended_at, outcome, error, counted, class)
         VALUES (?1, ?2, ?3, coalesce(?9, ?4), ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(trial_id, attempt) DO UPDATE SET
           ended_at = excluded.ended_at, outcome = excluded.outcome,
           error = excluded.error, counted = excluded.counted, class = excluded.class
         WHERE attempts.counted = 0 AND attempts.outcome IS NOT 'preempted'
           AND attempts.outcome IS NOT 'failed'",
    )
    .and_then(|mut s| s.execute(params![id, r.attempt, r.worker, r.at, logged, error, counted, class, lease_at]))?;
    match effect {
        ReportEffect::Final => tx
            .prepare_cached(&format!(
                "UPDATE trials SET status = ?2, metrics = ?3, error = ?4, diverged_step = ?5,
                   worker = ?6, finished_at = ?7, duration_s = ?8,
                   failures = failures + (?2 = 'failed'),
                   attempts = max(attempts, ?9), started_at = coalesce(?10, started_at),
                   unsettled = ?11, health = ?12, rung = coalesce(?13, rung)
                 WHERE id = ?1 AND status NOT IN {TERMINAL}"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    status.as_str(),
                    metrics,
                    error,
                    diverged_step,
                    r.worker,
                    r.at,
                    r.duration_s,
                    r.attempt,
                    lease_at,
                    unsettled,
                    health,
                    rung.map(|r| r.rung)
                ])
            })
            .map(drop)
            .and_then(|()| match rung {
                Some(end) => write_rung(tx, r.id, r.attempt, end, metrics.as_deref(), r.at),
                None => Ok(()),
            }),
        ReportEffect::Retry => tx
            .prepare_cached(&format!(
                "UPDATE trials SET status = 'pending', failures = failures + 1, error = ?2
                 WHERE id = ?1 AND status NOT IN {TERMINAL}"
            ))
            .and_then(|mut s| s.execute(params![id, error]))
            .map(drop),
        ReportEffect::Requeue => tx
            .prepare_cached(&format!("UPDATE trials SET status = 'pending' WHERE id = ?1 AND status NOT IN {TERMINAL}"))
            .and_then(|mut s| s.execute(params![id]))
            .map(drop),
        ReportEffect::Late => Ok(()),
    }
}

/// Promotions of successive halving: stopped trials pending again, at their new rung.
fn write_promoted(tx: &Transaction<'_>, trials: &[(TrialId, u32)]) -> rusqlite::Result<()> {
    let mut s =
        tx.prepare_cached("UPDATE trials SET status = 'pending', rung = ?2 WHERE id = ?1 AND status = 'stopped'")?;
    for (id, rung) in trials {
        s.execute(params![id.to_string(), rung])?;
    }
    Ok(())
}

/// One rung result of successive halving, appended to the `rungs` table (its order is the
/// order a resumed search replays): with its metrics (as stored), the step the attempt resumed
/// from and the step it reached.
fn write_rung(
    tx: &Transaction<'_>,
    id: TrialId,
    attempt: u32,
    end: RungEnd,
    metrics: Option<&str>,
    at: f64,
) -> rusqlite::Result<()> {
    let parsed: Option<kappa_core::TrialMetrics> = metrics.and_then(|m| serde_json::from_str(m).ok());
    let from = parsed.as_ref().and_then(|m| m.resumed_from).unwrap_or(0);
    let to = parsed.as_ref().and_then(|m| m.curve.last()).map(|p| (p.step, p.samples));
    // The samples this attempt computed: from the step it resumed at to the last it reached.
    let samples = to.map(|(step, samples)| samples - samples.checked_div(step).unwrap_or(0) * from.min(step));
    tx.prepare_cached(
        "INSERT INTO rungs(trial_id, rung, attempt, status, metrics, from_step, to_step, samples, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id.to_string(),
        end.rung,
        attempt,
        end.status.as_str(),
        metrics,
        from as i64,
        to.map(|t| t.0 as i64),
        samples.map(|s| s as i64),
        at
    ])
    .map(drop)
}

/// A lease that ended without a report: its attempt logged as lost, its trial pending again or,
/// with `failed`, failed for good.
fn write_lost(
    tx: &Transaction<'_>,
    id: TrialId,
    attempt: u32,
    at: f64,
    end: LeaseEnd,
    failed: Option<&str>,
) -> rusqlite::Result<()> {
    let id = id.to_string();
    let class = end.is_failure().then_some(FailureClass::Lost.as_str());
    tx.prepare_cached(
        "UPDATE attempts SET ended_at = ?3, outcome = 'lost', error = ?4, class = ?5, counted = ?6
         WHERE trial_id = ?1 AND attempt = ?2 AND ended_at IS NULL",
    )
    // The attempt that made a trial fail for good is the one its result stands for.
    .and_then(|mut s| s.execute(params![id, attempt, at, end.reason(), class, failed.is_some()]))?;
    match failed {
        None => tx
            .prepare_cached("UPDATE trials SET status = 'pending' WHERE id = ?1 AND status = 'running'")
            .and_then(|mut s| s.execute(params![id])),
        Some(why) => tx
            .prepare_cached(&format!(
                "UPDATE trials SET status = 'failed', error = ?2, finished_at = ?3, duration_s = 0,
                   failures = failures + 1
                 WHERE id = ?1 AND status NOT IN {TERMINAL}"
            ))
            .and_then(|mut s| s.execute(params![id, why, at])),
    }
    .map(drop)
}
