//! Recording a plan: the trials of the current sweep file, new ones added, known ones kept.

use crate::schema::{CODE_VERSION, TERMINAL};
use crate::{Store, StoreError, now_s};
use kappa_core::{CodeVersion, LeaseEnd, PlannedTrial};
use rusqlite::params;

/// What [`Store::sync_plan`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSync {
    /// Trials in the plan.
    pub total: u64,
    /// Trials added by this plan (never seen before).
    pub new: u64,
    /// Trials already finished in an earlier run (kept, not re-run).
    pub reused: u64,
    /// Trials left running by a run that is gone, put back to pending.
    pub requeued: u64,
}

impl Store {
    /// Records a plan: new trials are inserted as pending, known ones are kept (finished ones are
    /// reused; their parameters are rewritten as this plan names them, so an axis added since
    /// shows in their exports too), and trials a dead run left `running` go back to pending (their open attempts are
    /// logged as lost, abandoned). `tasks` holds the canonical JSON of each of the sweep's
    /// tasks, which [`PlannedTrial::task`] indexes; `version` is the code version the trials' ids
    /// were made with (recorded: see [`Store::code_version`]). One transaction.
    pub fn sync_plan(
        &mut self,
        sweep: &str,
        spec_path: &str,
        spec: &str,
        version: &CodeVersion,
        tasks: &[String],
        trials: impl Iterator<Item = PlannedTrial>,
    ) -> Result<PlanSync, StoreError> {
        if let Some(found) = self.meta("sweep_name")?
            && found != sweep
        {
            return Err(StoreError::OtherSweep { path: self.path.clone(), found, expected: sweep.to_string() });
        }
        let generation = self.generation()? + 1;
        let now = now_s();
        let hashes: Vec<String> = tasks.iter().map(|t| kappa_core::id::content_hash(t)).collect();
        let Some(first_hash) = hashes.first().cloned() else {
            return Err(self.corrupt("a plan with no task"));
        };
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        let mut sync = PlanSync::default();
        {
            let count_all = |tx: &rusqlite::Transaction<'_>| {
                tx.query_row("SELECT count(*) FROM trials", [], |r| r.get::<_, i64>(0)).map_err(sql)
            };
            let before = count_all(&tx)?;
            let set_meta =
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
            for (k, v) in [
                ("sweep_name", sweep.to_string()),
                ("spec", spec.to_string()),
                ("spec_path", spec_path.to_string()),
                ("generation", generation.to_string()),
                ("task", first_hash),
                (CODE_VERSION, version.to_string()),
            ] {
                tx.execute(set_meta, params![k, v]).map_err(sql)?;
            }
            for (hash, json) in hashes.iter().zip(tasks) {
                tx.execute("INSERT OR IGNORE INTO tasks(hash, json) VALUES (?1, ?2)", params![hash, json])
                    .map_err(sql)?;
            }
            let mut insert = tx
                .prepare(
                    "INSERT INTO trials(id, seq, generation, task, params, status, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)
                     ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, generation = excluded.generation,
                       params = excluded.params",
                )
                .map_err(sql)?;
            for t in trials {
                let params_json = serde_json::to_string(&t.params).unwrap_or_default();
                let task_hash = hashes.get(t.task).ok_or_else(|| StoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("trial {} runs task {} of a plan with {}", t.id, t.task, hashes.len()),
                })?;
                insert
                    .execute(params![t.id.to_string(), t.seq as i64, generation, task_hash, params_json, now])
                    .map_err(sql)?;
                sync.total += 1;
            }
            sync.requeued = tx
                .execute(
                    "UPDATE trials SET status = 'pending' WHERE generation = ?1 AND status = 'running'",
                    [generation],
                )
                .map_err(sql)? as u64;
            tx.execute(
                "UPDATE attempts SET ended_at = ?1, outcome = 'lost', error = ?2 WHERE ended_at IS NULL",
                params![now, LeaseEnd::Abandoned.reason()],
            )
            .map_err(sql)?;
            sync.reused = tx
                .query_row(
                    &format!("SELECT count(*) FROM trials WHERE generation = ?1 AND status IN {TERMINAL}"),
                    [generation],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(sql)? as u64;
            sync.new = (count_all(&tx)? - before) as u64;
        }
        tx.commit().map_err(sql)?;
        Ok(sync)
    }
}
