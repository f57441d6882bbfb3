//! Reads: what the store knows about the sweep, its trials and their attempts.

use crate::schema::{FAILED_ATTEMPT, TERMINAL, failed_without_result};
use crate::{Store, StoreError};
use kappa_core::{CodeVersion, Counts, FailureCounts, Params, TrialId, TrialResult, TrialStatus};
use rusqlite::OptionalExtension;

/// Every trial of the current plan, in plan order (a filter for `trials_where`).
const PLAN_ORDER: &str = "generation = ?1 ORDER BY seq";

/// A trial that still has to run, as the scheduler needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenTrial {
    /// The trial.
    pub id: TrialId,
    /// Its position in the plan.
    pub seq: u64,
    /// Its parameters.
    pub params: Params,
    /// Its task's canonical JSON (one allocation per distinct task).
    pub task: std::sync::Arc<str>,
    /// Attempts leased so far.
    pub attempts: u32,
    /// Failed attempts so far by class; lost ones are leases that expired.
    pub failures: FailureCounts,
}

/// One rung result of successive halving, as recorded (see [`Store::rung_results`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RungRecord {
    /// The trial.
    pub id: TrialId,
    /// The rung its attempt ran to.
    pub rung: u32,
    /// The attempt.
    pub attempt: u32,
    /// What it made of the trial: stopped, succeeded (the last rung), diverged or failed.
    pub status: kappa_core::TrialStatus,
    /// Its metrics, as stored.
    pub metrics: Option<kappa_core::TrialMetrics>,
    /// The step the attempt continued from (0: from the start).
    pub from_step: u64,
    /// The last step it reached (`None`: no result).
    pub to_step: Option<u64>,
    /// The samples it computed (from `from_step` to `to_step`).
    pub samples: Option<u64>,
}

/// An attempt the store shows still running (its lease was open when the coordinator stopped).
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    /// The trial.
    pub id: TrialId,
    /// The running attempt.
    pub attempt: u32,
    /// The worker's name.
    pub worker: String,
    /// When it was leased (Unix seconds).
    pub started_at: f64,
}

/// Everything recorded about one trial: its result, and the bookkeeping around it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialRecord {
    /// The result as far as it got (id, hyperparameters, status, metrics, last error).
    pub result: TrialResult,
    /// Position in the plan.
    pub seq: u64,
    /// Attempts leased.
    pub attempts: u32,
    /// Divergence step, for diverged trials.
    pub diverged_step: Option<u64>,
    /// Worker of the last attempt.
    pub worker: Option<String>,
    /// When the last attempt started (Unix seconds).
    pub started_at: Option<f64>,
    /// When the trial finished (Unix seconds).
    pub finished_at: Option<f64>,
    /// Run time of the counted attempt.
    pub duration_s: Option<f64>,
    /// Successive halving: the rung it is at, stopped at or finished (its promotions so far;
    /// `None`: not halved).
    pub rung: Option<u32>,
}

/// One row of the attempt log.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// The trial.
    pub id: TrialId,
    /// The attempt number.
    pub attempt: u32,
    /// The worker it was leased to.
    pub worker: String,
    /// When it was leased.
    pub started_at: f64,
    /// When it ended, if it did.
    pub ended_at: Option<f64>,
    /// `succeeded`, `failed`, `diverged`, `preempted` (handed back unfinished by a draining
    /// worker: not a failure), `lost` (its lease ended without a report), or `late-<outcome>`.
    pub outcome: Option<String>,
    /// The failure message, or for a lost attempt how its lease ended.
    pub error: Option<String>,
    /// The failure class: `error`, `crash`, `timeout`, or `lost` for an expired lease.
    pub class: Option<String>,
    /// Whether this attempt's result is the trial's result.
    pub counted: bool,
}

/// Facts about the sweep a store holds.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepInfo {
    /// Sweep name.
    pub name: String,
    /// How many times a plan was synced (each `kappa run` is one).
    pub generation: i64,
    /// The sweep file text of the latest plan.
    pub spec: String,
    /// The sweep file path of the latest plan.
    pub spec_path: String,
    /// The code version its trial ids are made with.
    pub code_version: Option<CodeVersion>,
}

impl Store {
    /// The sweep this store holds, if a plan was ever synced.
    pub fn sweep_info(&self) -> Result<Option<SweepInfo>, StoreError> {
        let Some(name) = self.meta("sweep_name")? else {
            return Ok(None);
        };
        let generation = self.generation()?;
        Ok(Some(SweepInfo {
            name,
            generation,
            spec: self.meta("spec")?.unwrap_or_default(),
            spec_path: self.meta("spec_path")?.unwrap_or_default(),
            code_version: self.code_version()?,
        }))
    }

    /// The canonical task JSON of the current plan.
    pub fn task_json(&self) -> Result<Option<String>, StoreError> {
        let Some(hash) = self.meta("task")? else {
            return Ok(None);
        };
        self.conn
            .query_row("SELECT json FROM tasks WHERE hash = ?1", [hash], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Records whether the sweep is cancelled (a restarted coordinator keeps it stopped).
    pub fn set_cancelled(&mut self, cancelled: bool) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES ('cancelled', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [if cancelled { "1" } else { "0" }],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Whether the sweep was cancelled.
    pub fn cancelled(&self) -> Result<bool, StoreError> {
        Ok(self.meta("cancelled")?.as_deref() == Some("1"))
    }

    /// Records who submitted the sweep, unless an owner is recorded already (the first
    /// submitter keeps it, whoever edits the sweep later). Returns the owner recorded.
    pub fn claim_owner(&mut self, owner: &str) -> Result<String, StoreError> {
        self.conn
            .execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('owner', ?1)", [owner])
            .map_err(|e| self.sql(e))?;
        Ok(self.owner()?.unwrap_or_else(|| owner.to_string()))
    }

    /// Who submitted the sweep (`None`: submitted without a tokens file, or before kappa
    /// recorded owners).
    pub fn owner(&self) -> Result<Option<String>, StoreError> {
        self.meta("owner")
    }

    /// Puts every failed trial of the current plan back to pending, with a fresh failure budget.
    /// Returns how many.
    pub fn reset_failed(&mut self) -> Result<u64, StoreError> {
        let generation = self.generation()?;
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        // Their earlier failures stop counting against retries and the failure budget.
        tx.execute(
            &format!(
                "UPDATE attempts AS a SET outcome = outcome || '-before-retry', counted = 0
                 WHERE {FAILED_ATTEMPT}
                   AND trial_id IN (SELECT id FROM trials WHERE generation = ?1 AND status = 'failed')"
            ),
            [generation],
        )
        .map_err(sql)?;
        let n = tx
            .execute(
                "UPDATE trials SET status = 'pending', failures = 0 WHERE generation = ?1 AND status = 'failed'",
                [generation],
            )
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(n as u64)
    }

    /// Preempted attempts (handed back unfinished by draining workers) by trial of the current plan.
    pub fn preempted(&self) -> Result<std::collections::HashMap<TrialId, u32>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                // Driven from the preempted attempts (their partial index), not from every trial.
                "SELECT a.trial_id, count(*) FROM attempts a
                 WHERE a.outcome = 'preempted' AND (SELECT t.generation FROM trials t WHERE t.id = a.trial_id) = ?1
                 GROUP BY a.trial_id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([self.generation()?], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
            .map_err(|e| self.sql(e))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (id, n) = row.map_err(|e| self.sql(e))?;
            out.insert(self.parse_id(&id)?, n);
        }
        Ok(out)
    }

    /// Up to `limit` pending trials of the current plan after plan position `after` (`None`:
    /// from the start), in plan order: what a scheduler loads as its queue drains. Right after
    /// [`Store::sync_plan`] every unfinished trial is pending (it re-queues running ones).
    pub fn pending_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<OpenTrial>, StoreError> {
        let after = after.map_or(-1, |s| s as i64);
        self.open_where(
            "t.generation = ?1 AND t.status = 'pending' AND t.seq > ?2 ORDER BY t.seq LIMIT ?3",
            |stmt, g| stmt.query(rusqlite::params![g, after, limit as i64]),
        )
    }

    /// The trials `ids`, those of them that are open in the current plan (in plan order).
    pub fn open_trials_by_id(&self, ids: &[TrialId]) -> Result<Vec<OpenTrial>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.open_where(
                &format!("t.generation = ?1 AND t.id = ?2 AND t.status NOT IN {TERMINAL}"),
                |stmt, g| stmt.query(rusqlite::params![g, id.to_string()]),
            )?);
        }
        out.sort_by_key(|t| t.seq);
        Ok(out)
    }

    /// Open trials chosen by `filter` (a WHERE clause over `trials t`, `?1` the generation),
    /// with their failed attempts by class.
    fn open_where(
        &self,
        filter: &str,
        query: impl for<'s> FnOnce(&'s mut rusqlite::Statement<'_>, i64) -> rusqlite::Result<rusqlite::Rows<'s>>,
    ) -> Result<Vec<OpenTrial>, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                // A trial never leased (most of a large plan) has no attempt to count.
                "SELECT t.id, t.seq, t.params, t.task, t.attempts,
                   CASE WHEN t.attempts = 0 THEN 0 ELSE (SELECT count(*) FROM attempts a
                     WHERE a.trial_id = t.id AND a.outcome = 'failed' AND coalesce(a.class, 'error') = 'error') END,
                   CASE WHEN t.attempts = 0 THEN 0 ELSE (SELECT count(*) FROM attempts a
                     WHERE a.trial_id = t.id AND a.outcome = 'failed' AND a.class = 'crash') END,
                   CASE WHEN t.attempts = 0 THEN 0 ELSE (SELECT count(*) FROM attempts a
                     WHERE a.trial_id = t.id AND a.outcome = 'failed' AND a.class = 'timeout') END,
                   CASE WHEN t.attempts = 0 THEN 0 ELSE (SELECT count(*) FROM attempts a
                     WHERE a.trial_id = t.id AND a.outcome = 'lost' AND a.class = 'lost') END
                 FROM trials t WHERE {filter}"
            ))
            .map_err(|e| self.sql(e))?;
        let tasks = self.tasks()?;
        let mut rows = query(&mut stmt, generation).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let get = |e: rusqlite::Error| self.sql(e);
            let id: String = r.get(0).map_err(get)?;
            let task: String = r.get(3).map_err(get)?;
            let task = tasks
                .get(&task)
                .cloned()
                .ok_or_else(|| self.corrupt(format!("trial {id} names task {task}, which the store lacks")))?;
            let params: String = r.get(2).map_err(get)?;
            out.push(OpenTrial {
                id: self.parse_id(&id)?,
                seq: r.get::<_, i64>(1).map_err(get)? as u64,
                params: self.parse_params(&params)?,
                task,
                attempts: r.get(4).map_err(get)?,
                failures: FailureCounts::new(
                    r.get(5).map_err(get)?,
                    r.get(6).map_err(get)?,
                    r.get(7).map_err(get)?,
                    r.get(8).map_err(get)?,
                ),
            });
        }
        Ok(out)
    }

    /// Every task the store knows, by hash.
    fn tasks(&self) -> Result<std::collections::HashMap<String, std::sync::Arc<str>>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT hash, json FROM tasks").map_err(|e| self.sql(e))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(|e| self.sql(e))?;
        rows.map(|r| r.map(|(h, j)| (h, std::sync::Arc::from(j))).map_err(|e| self.sql(e))).collect()
    }

    /// Attempts still open in the store: each running trial's current attempt (read before
    /// [`Store::sync_plan`], which closes them).
    pub fn in_flight(&self) -> Result<Vec<InFlight>, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.trial_id, a.attempt, a.worker, a.started_at FROM attempts a JOIN trials t ON t.id = a.trial_id
                 WHERE t.generation = ?1 AND t.status = 'running' AND a.ended_at IS NULL AND a.attempt = t.attempts",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([generation], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, String>(2)?, r.get::<_, f64>(3)?))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, attempt, worker, started_at) = row.map_err(|e| self.sql(e))?;
            out.push(InFlight { id: self.parse_id(&id)?, attempt, worker, started_at });
        }
        Ok(out)
    }

    /// Failed attempts (every class, lost leases included) of the current plan's trials, not
    /// counting those reset by a retry: what the sweep's failure budget has used.
    pub fn failed_attempts(&self) -> Result<u64, StoreError> {
        let generation = self.generation()?;
        self.conn
            .query_row(
                &format!(
                    // Driven from the failed attempts (their partial index), not from every trial.
                    "SELECT count(*) FROM attempts a
                     WHERE {FAILED_ATTEMPT} AND (SELECT t.generation FROM trials t WHERE t.id = a.trial_id) = ?1"
                ),
                [generation],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    fn parse_id(&self, s: &str) -> Result<TrialId, StoreError> {
        s.parse().map_err(|e| self.corrupt(e))
    }

    fn parse_params(&self, s: &str) -> Result<Params, StoreError> {
        serde_json::from_str(s).map_err(|e| self.corrupt(format!("trial params: {e}")))
    }

    /// Counts of the current plan's trials by status.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let generation = self.generation()?;
        let mut counts = Counts::default();
        // From the plan index alone (covering): about a second per 10⁷ trials.
        for (status, n) in
            self.grouped("SELECT status, count(*) FROM trials WHERE generation = ?1 GROUP BY status", generation)?
        {
            let status: TrialStatus = status.parse().map_err(|e| self.corrupt(e))?;
            counts.add(status, n);
        }
        // Those that did not train, from their partial index.
        let health = "SELECT health, count(*) FROM trials WHERE generation = ?1 AND health IS NOT NULL GROUP BY health";
        for (health, n) in self.grouped(health, generation)? {
            let health: kappa_core::Health = serde_json::from_value(serde_json::Value::String(health))
                .map_err(|e| self.corrupt(format!("trial health: {e}")))?;
            counts.add_health(health, n);
        }
        Ok(counts)
    }

    /// The (value, count) rows of a `GROUP BY` query over one plan generation.
    fn grouped(&self, sql: &str, generation: i64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([generation], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Every trial of the current plan, in plan order.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.collect_where(PLAN_ORDER)
    }

    /// The results of every finished trial the store holds, of any plan (a search resumed after
    /// an edit reads the results its proposals already have), by id. A trial failed without an
    /// attempt of its own (the failure budget ran out before it ran) has no result.
    pub fn finished_results(&self) -> Result<std::collections::HashMap<TrialId, TrialResult>, StoreError> {
        let mut out = std::collections::HashMap::new();
        // (A trial stopped at a rung of successive halving has not run its budget: no result.)
        let filter =
            format!("status IN {TERMINAL} AND status <> 'stopped' AND NOT {}", failed_without_result("trials"));
        self.records_where(&filter, &[], |t| {
            out.insert(t.result.id, t.result);
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// Every rung result of successive halving of the current plan's trials, in the order they
    /// were recorded.
    pub fn rung_results(&self) -> Result<Vec<RungRecord>, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.trial_id, r.rung, r.attempt, r.status, r.metrics, r.from_step, r.to_step, r.samples
                 FROM rungs r JOIN trials t ON t.id = r.trial_id WHERE t.generation = ?1 ORDER BY r.seq",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([generation]).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let get = |e: rusqlite::Error| self.sql(e);
            let id: String = r.get(0).map_err(get)?;
            let status: String = r.get(3).map_err(get)?;
            let metrics: Option<String> = r.get(4).map_err(get)?;
            out.push(RungRecord {
                id: id.parse().map_err(|_| self.corrupt(format!("trial id {id:?} in the rungs table")))?,
                rung: r.get(1).map_err(get)?,
                attempt: r.get(2).map_err(get)?,
                status: status.parse().map_err(|e| self.corrupt(format!("rung of {id}: {e}")))?,
                metrics: metrics.as_deref().and_then(|m| serde_json::from_str(m).ok()),
                from_step: r.get::<_, i64>(5).map_err(get)? as u64,
                to_step: r.get::<_, Option<i64>>(6).map_err(get)?.map(|s| s as u64),
                samples: r.get::<_, Option<i64>>(7).map_err(get)?.map(|s| s as u64),
            });
        }
        Ok(out)
    }

    /// The current plan's trials stopped at a rung of successive halving, with what a promotion
    /// needs to lease them again.
    pub fn stopped_trials(&self) -> Result<Vec<OpenTrial>, StoreError> {
        self.open_where("t.generation = ?1 AND t.status = 'stopped'", |stmt, g| stmt.query(rusqlite::params![g]))
    }

    /// Makes the current plan's trials stopped at a rung of successive halving pending again, for
    /// a sweep that no longer halves: they run their whole budget (training and commands from
    /// the checkpoint their rung left). Returns how many.
    pub fn requeue_stopped(&mut self) -> Result<u64, StoreError> {
        let generation = self.generation()?;
        self.conn
            .execute("UPDATE trials SET status = 'pending' WHERE generation = ?1 AND status = 'stopped'", [generation])
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// Unfinished trials of earlier plans (and those the failure budget failed before they ran),
    /// with their attempts so far (a search that proposes one again continues its attempt
    /// numbers).
    pub fn open_elsewhere(&self) -> Result<Vec<OpenTrial>, StoreError> {
        let open = format!("t.generation <> ?1 AND (t.status NOT IN {TERMINAL} OR {})", failed_without_result("t"));
        self.open_where(&open, |stmt, g| stmt.query(rusqlite::params![g]))
    }

    /// Takes every trial of the current plan but `keep` out of it (into no plan: its row and
    /// result stay, for a later plan that has it again). A search resumed after `kappa retry
    /// --failed` decides again from the retried trials on: what it had decided from their
    /// failures is no longer its plan.
    pub fn retire_except(&mut self, keep: &std::collections::HashSet<TrialId>) -> Result<u64, StoreError> {
        let generation = self.generation()?;
        let ids: Vec<String> = {
            let mut stmt = self.conn.prepare("SELECT id FROM trials WHERE generation = ?1").map_err(|e| self.sql(e))?;
            let rows = stmt.query_map([generation], |r| r.get::<_, String>(0)).map_err(|e| self.sql(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))?
        };
        let gone: Vec<&String> =
            ids.iter().filter(|id| id.parse::<TrialId>().map_or(true, |t| !keep.contains(&t))).collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut retire = tx.prepare("UPDATE trials SET generation = -1 WHERE id = ?1").map_err(sql)?;
            for id in &gone {
                retire.execute([id]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(gone.len() as u64)
    }

    /// The largest plan position of any trial the store holds (`None`: no trial).
    pub fn max_seq(&self) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT max(seq) FROM trials", [], |r| r.get::<_, Option<i64>>(0))
            .map(|s| s.map(|s| s as u64))
            .map_err(|e| self.sql(e))
    }

    /// Hands every trial of the current plan to `f`, in plan order, one at a time (an export of
    /// 10⁷ trials never holds them all); stops at the first error `f` returns.
    pub fn each_trial<E: From<StoreError>>(&self, f: impl FnMut(TrialRecord) -> Result<(), E>) -> Result<(), E> {
        self.trials_where(PLAN_ORDER, f)
    }

    /// The current plan's failed trials, in plan order.
    pub fn failed_trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.collect_where("generation = ?1 AND status = 'failed' ORDER BY seq")
    }

    /// The current plan's trials whose stationary loss was taken before the loss settled (see
    /// [`kappa_core::TrialMetrics::settled`]), in plan order; read by their index.
    pub fn unsettled_trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.collect_where("generation = ?1 AND unsettled = 1 ORDER BY seq")
    }

    fn collect_where(&self, filter: &str) -> Result<Vec<TrialRecord>, StoreError> {
        let mut out = Vec::new();
        self.trials_where(filter, |t| {
            out.push(t);
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// The trials `filter` chooses (a WHERE clause, `?1` the generation), handed to `f`.
    fn trials_where<E: From<StoreError>>(
        &self,
        filter: &str,
        f: impl FnMut(TrialRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let generation = self.generation()?;
        self.records_where(filter, &[rusqlite::types::Value::Integer(generation)], f)
    }

    /// The trials `filter` chooses (a WHERE clause over `args`), handed to `f`.
    pub(crate) fn records_where<E: From<StoreError>>(
        &self,
        filter: &str,
        args: &[rusqlite::types::Value],
        mut f: impl FnMut(TrialRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, seq, params, status, attempts, metrics, error, diverged_step, worker, started_at, finished_at, duration_s,
                        origin, rung
                 FROM trials WHERE {filter}"
            ))
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(|e| self.sql(e))?;
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            f(self.trial_record(r)?)?;
        }
        Ok(())
    }

    fn trial_record(&self, r: &rusqlite::Row<'_>) -> Result<TrialRecord, StoreError> {
        let get = |e: rusqlite::Error| self.sql(e);
        let id: String = r.get(0).map_err(get)?;
        let metrics: Option<String> = r.get(5).map_err(get)?;
        let metrics = match metrics {
            Some(m) => Some(serde_json::from_str(&m).map_err(|e| self.corrupt(format!("metrics of {id}: {e}")))?),
            None => None,
        };
        let status: String = r.get(3).map_err(get)?;
        let params: String = r.get(2).map_err(get)?;
        Ok(TrialRecord {
            result: TrialResult {
                id: self.parse_id(&id)?,
                params: self.parse_params(&params)?,
                status: status.parse().map_err(|e| self.corrupt(e))?,
                metrics,
                error: r.get(6).map_err(get)?,
                origin: r.get::<_, Option<String>>(12).map_err(get)?.and_then(|o| kappa_core::Origin::from_json(&o)),
            },
            seq: r.get::<_, i64>(1).map_err(get)? as u64,
            attempts: r.get(4).map_err(get)?,
            diverged_step: r.get::<_, Option<i64>>(7).map_err(get)?.map(|s| s as u64),
            worker: r.get(8).map_err(get)?,
            started_at: r.get(9).map_err(get)?,
            finished_at: r.get(10).map_err(get)?,
            duration_s: r.get(11).map_err(get)?,
            rung: r.get(13).map_err(get)?,
        })
    }

    /// The named axes (`params.*`, `task.*`) any trial of the current plan carries, sorted.
    pub fn named_axes(&self) -> Result<Vec<String>, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT j.key FROM trials t, json_each(t.params) j
                 WHERE t.generation = ?1 AND (j.key LIKE 'params.%' OR j.key LIKE 'task.%') ORDER BY j.key",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([generation], |r| r.get::<_, String>(0)).map_err(|e| self.sql(e))?;
        rows.map(|r| r.map_err(|e| self.sql(e))).collect()
    }

    /// The attempt log of every trial, ordered by trial and attempt.
    pub fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError> {
        self.attempts_where("1 ORDER BY trial_id, attempt", &[])
    }

    /// The attempts `filter` chooses (a WHERE clause over `args`).
    pub(crate) fn attempts_where(
        &self,
        filter: &str,
        args: &[rusqlite::types::Value],
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT trial_id, attempt, worker, started_at, ended_at, outcome, error, class, counted
                 FROM attempts WHERE {filter}"
            ))
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let get = |e: rusqlite::Error| self.sql(e);
            let id: String = r.get(0).map_err(get)?;
            out.push(AttemptRecord {
                id: self.parse_id(&id)?,
                attempt: r.get(1).map_err(get)?,
                worker: r.get(2).map_err(get)?,
                started_at: r.get(3).map_err(get)?,
                ended_at: r.get(4).map_err(get)?,
                outcome: r.get(5).map_err(get)?,
                error: r.get(6).map_err(get)?,
                class: r.get(7).map_err(get)?,
                counted: r.get(8).map_err(get)?,
            });
        }
        Ok(out)
    }
}
