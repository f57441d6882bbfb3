//! kappa-store: the durable record of a sweep, in one SQLite database (WAL) under the state
//! directory.
//!
//! The coordinator is the only writer. It sends [`StoreOp`]s in batches to [`Store::apply`], which
//! commits each batch in one transaction (group commit). Readers (`kappa status`, `kappa export`)
//! open the same file; WAL lets them read while a run writes.
//!
//! Exactly-once lives here too: a trial row that reached a terminal status is never updated by a
//! later report (every terminal update is guarded by `status NOT IN (terminal)`).

#![warn(missing_docs)]

use kappa_core::{Counts, FailureClass, Hyperparams, PlannedTrial, TrialId, TrialMetrics, TrialStatus};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// The database file name inside a state directory.
pub const DB_FILE: &str = "kappa.db";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory holds no kappa database.
    #[error("no kappa state in {0} (run `kappa run` first, or pass --state DIR)")]
    NotFound(PathBuf),
    /// The path is not a usable directory.
    #[error("state directory {path}: {reason}")]
    BadDir {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The file is not a kappa database, or is damaged.
    #[error("state database {path} is unreadable or corrupt: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the schema check said.
        reason: String,
    },
    /// The database belongs to another sweep.
    #[error("state directory {path} holds sweep `{found}`, not `{expected}` (use another --state)")]
    OtherSweep {
        /// The database file.
        path: PathBuf,
        /// The sweep recorded there.
        found: String,
        /// The sweep being run.
        expected: String,
    },
    /// Another process holds the state directory.
    #[error("state directory {0} is in use by another kappa process (wait for it, or pass another --state)")]
    Locked(PathBuf),
    /// Any other SQLite error.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
}

/// Seconds since the Unix epoch.
pub fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

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
        /// What the report said: succeeded, failed or diverged.
        outcome: TrialStatus,
        /// Metrics as JSON (`TrialMetrics`), when there are any.
        metrics: Option<String>,
        /// The failure message, for failed attempts.
        error: Option<String>,
        /// The failure class, for failed attempts.
        class: Option<FailureClass>,
        /// The divergence step, for diverged attempts.
        diverged_step: Option<u64>,
        /// What the coordinator made of it.
        effect: ReportEffect,
    },
    /// A lease was taken back (expired, worker gone, shutdown); the trial is pending again.
    Revoked {
        /// The trial.
        id: TrialId,
        /// The abandoned attempt.
        attempt: u32,
        /// When (Unix seconds).
        at: f64,
        /// Why, in a word: `expired`, `released`.
        reason: &'static str,
    },
    /// A trial failed for good without an attempt of its own (the sweep's failure budget ran out).
    Halted {
        /// The trial.
        id: TrialId,
        /// Why, in words.
        error: String,
    },
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
}

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

/// A trial that still has to run, as the scheduler needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenTrial {
    /// The trial.
    pub id: TrialId,
    /// Its hyperparameters.
    pub params: Hyperparams,
    /// Attempts leased so far.
    pub attempts: u32,
    /// Failed attempts so far by class (error, crash, timeout, lost: see
    /// [`FailureClass::index`]); lost ones are leases that expired.
    pub failures: [u32; 4],
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

/// Everything recorded about one trial.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialRecord {
    /// The trial.
    pub id: TrialId,
    /// Position in the plan.
    pub seq: u64,
    /// Its hyperparameters.
    pub params: Hyperparams,
    /// Where it stands.
    pub status: TrialStatus,
    /// Attempts leased.
    pub attempts: u32,
    /// Metrics of the counted attempt.
    pub metrics: Option<TrialMetrics>,
    /// Last failure message.
    pub error: Option<String>,
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
    /// `succeeded`, `failed`, `diverged`, `lost`, or `late-<outcome>`.
    pub outcome: Option<String>,
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
}

/// The exclusive lock of a state directory, held for as long as this value lives (the operating
/// system releases it on any exit, `kill -9` included).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of `dir` (creating the directory), or says who has it.
    pub fn acquire(dir: &Path) -> Result<StateLock, StoreError> {
        let bad = |e: std::io::Error| StoreError::BadDir { path: dir.to_path_buf(), reason: e.to_string() };
        std::fs::create_dir_all(dir).map_err(bad)?;
        let file =
            std::fs::File::options().create(true).truncate(false).write(true).open(dir.join("lock")).map_err(bad)?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => Err(bad(e)),
        }
    }
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (hash TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    task TEXT NOT NULL REFERENCES tasks(hash),
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    metrics TEXT,
    error TEXT,
    diverged_step INTEGER,
    worker TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    duration_s REAL
);
CREATE INDEX IF NOT EXISTS trials_by_generation ON trials(generation, status);
CREATE TABLE IF NOT EXISTS attempts (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,
    error TEXT,
    counted INTEGER NOT NULL DEFAULT 0,
    class TEXT,
    PRIMARY KEY (trial_id, attempt)
) WITHOUT ROWID;
"#;

const TERMINAL: &str = "('succeeded','failed','diverged')";

impl Store {
    /// The database path inside a state directory.
    pub fn db_path(dir: &Path) -> PathBuf {
        dir.join(DB_FILE)
    }

    /// Opens the store in `dir`, creating the directory and the database if needed.
    pub fn create(dir: &Path) -> Result<Store, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::BadDir { path: dir.to_path_buf(), reason: "exists and is not a directory".into() });
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::BadDir { path: dir.to_path_buf(), reason: e.to_string() })?;
        let path = Self::db_path(dir);
        if path.exists() && !path.is_file() {
            return Err(StoreError::Corrupt { path, reason: "not a regular file".into() });
        }
        let conn = Connection::open(&path).map_err(|e| StoreError::Sqlite { path: path.clone(), source: e })?;
        let store = Store { conn, path };
        store.init(true)?;
        Ok(store)
    }

    /// Opens an existing store for reading (and, for the coordinator, writing); never creates one.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = Self::db_path(dir);
        if !dir.exists() || !path.exists() {
            return Err(StoreError::NotFound(dir.to_path_buf()));
        }
        if !path.is_file() {
            return Err(StoreError::Corrupt { path, reason: "not a regular file".into() });
        }
        let conn =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let store = Store { conn, path };
        store.init(false)?;
        Ok(store)
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), reason: e.to_string() }
    }

    fn sql(&self, e: rusqlite::Error) -> StoreError {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
            {
                self.corrupt(e)
            }
            e => StoreError::Sqlite { path: self.path.clone(), source: e },
        }
    }

    fn init(&self, create: bool) -> Result<(), StoreError> {
        self.conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| self.sql(e))?;
        // Reading the schema is the first real access: a non-database file fails here.
        let has_meta: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.corrupt(e))?
            > 0;
        if !has_meta && !create {
            return Err(self.corrupt("no kappa schema in this database"));
        }
        self.conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| self.sql(e))?;
        self.conn.pragma_update(None, "synchronous", "FULL").map_err(|e| self.sql(e))?;
        if !has_meta {
            self.conn.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
            self.conn
                .execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])
                .map_err(|e| self.sql(e))?;
        }
        let version = self.meta("schema_version")?;
        match version.as_deref().map(str::parse::<i64>) {
            Some(Ok(SCHEMA_VERSION)) => self.add_columns(),
            Some(Ok(v)) => Err(self.corrupt(format!("schema version {v}, this kappa reads {SCHEMA_VERSION}"))),
            _ => Err(self.corrupt("missing or malformed schema_version")),
        }
    }

    /// Columns added since schema version 1 (additive, so older stores are upgraded in place).
    fn add_columns(&self) -> Result<(), StoreError> {
        let has_class: bool = self
            .conn
            .query_row("SELECT count(*) FROM pragma_table_info('attempts') WHERE name = 'class'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.sql(e))?
            > 0;
        if !has_class {
            self.conn.execute_batch("ALTER TABLE attempts ADD COLUMN class TEXT").map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

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
        }))
    }

    fn generation(&self) -> Result<i64, StoreError> {
        Ok(self.meta("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0))
    }

    /// Records a plan: new trials are inserted as pending, known ones are kept (finished ones are
    /// reused), and trials a dead run left `running` go back to pending. One transaction.
    pub fn sync_plan(
        &mut self,
        sweep: &str,
        spec_path: &str,
        spec: &str,
        task_json: &str,
        trials: impl Iterator<Item = PlannedTrial>,
    ) -> Result<PlanSync, StoreError> {
        if let Some(found) = self.meta("sweep_name")?
            && found != sweep
        {
            return Err(StoreError::OtherSweep { path: self.path.clone(), found, expected: sweep.to_string() });
        }
        let generation = self.generation()? + 1;
        let now = now_s();
        let task_hash = kappa_core::id::content_hash(task_json);
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
                ("task", task_hash.clone()),
            ] {
                tx.execute(set_meta, params![k, v]).map_err(sql)?;
            }
            tx.execute("INSERT OR IGNORE INTO tasks(hash, json) VALUES (?1, ?2)", params![task_hash, task_json])
                .map_err(sql)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO trials(id, seq, generation, task, params, status, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)
                     ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, generation = excluded.generation",
                )
                .map_err(sql)?;
            for t in trials {
                let params_json = serde_json::to_string(&t.params).unwrap_or_default();
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
            tx.execute("UPDATE attempts SET ended_at = ?1, outcome = 'lost' WHERE ended_at IS NULL", [now])
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

    /// Puts every failed trial of the current plan back to pending, with a fresh failure budget.
    /// Returns how many.
    pub fn reset_failed(&mut self) -> Result<u64, StoreError> {
        let generation = self.generation()?;
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        // Their earlier failures stop counting against retries and the failure budget.
        tx.execute(
            "UPDATE attempts SET outcome = outcome || '-before-retry'
             WHERE outcome IN ('expired', 'failed')
               AND trial_id IN (SELECT id FROM trials WHERE generation = ?1 AND status = 'failed')",
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

    /// Trials of the current plan that are not finished.
    pub fn open_trials(&self) -> Result<Vec<OpenTrial>, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, params, attempts,
                   (SELECT count(*) FROM attempts a WHERE a.trial_id = trials.id AND a.outcome = 'failed'
                      AND coalesce(a.class, 'error') = 'error'),
                   (SELECT count(*) FROM attempts a WHERE a.trial_id = trials.id AND a.outcome = 'failed'
                      AND a.class = 'crash'),
                   (SELECT count(*) FROM attempts a WHERE a.trial_id = trials.id AND a.outcome = 'failed'
                      AND a.class = 'timeout'),
                   (SELECT count(*) FROM attempts a WHERE a.trial_id = trials.id AND a.outcome = 'expired')
                 FROM trials WHERE generation = ?1 AND status NOT IN {TERMINAL} ORDER BY seq"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([generation], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    [r.get::<_, u32>(3)?, r.get::<_, u32>(4)?, r.get::<_, u32>(5)?, r.get::<_, u32>(6)?],
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, params, attempts, failures) = row.map_err(|e| self.sql(e))?;
            out.push(OpenTrial { id: self.parse_id(&id)?, params: self.parse_params(&params)?, attempts, failures });
        }
        Ok(out)
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
                "SELECT count(*) FROM attempts a JOIN trials t ON t.id = a.trial_id
                 WHERE t.generation = ?1 AND a.outcome IN ('failed', 'expired')",
                [generation],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    fn parse_id(&self, s: &str) -> Result<TrialId, StoreError> {
        s.parse().map_err(|e| self.corrupt(e))
    }

    fn parse_params(&self, s: &str) -> Result<Hyperparams, StoreError> {
        serde_json::from_str(s).map_err(|e| self.corrupt(format!("trial params: {e}")))
    }

    /// Counts of the current plan's trials by status.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare("SELECT status, count(*) FROM trials WHERE generation = ?1 GROUP BY status")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([generation], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.sql(e))?;
        let mut counts = Counts::default();
        for row in rows {
            let (status, n) = row.map_err(|e| self.sql(e))?;
            let status: TrialStatus = status.parse().map_err(|e| self.corrupt(e))?;
            counts.add(status, n as u64);
        }
        Ok(counts)
    }

    /// Applies a batch of changes in one transaction.
    pub fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        for op in ops {
            match op {
                StoreOp::Leased { id, attempt, worker, at } => {
                    let id = id.to_string();
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO attempts(trial_id, attempt, worker, started_at) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| s.execute(params![id, attempt, worker, at]))
                    .map_err(sql)?;
                    tx.prepare_cached(&format!(
                        "UPDATE trials SET status = 'running', attempts = max(attempts, ?2), worker = ?3, started_at = ?4
                         WHERE id = ?1 AND status NOT IN {TERMINAL}"
                    ))
                    .and_then(|mut s| s.execute(params![id, attempt, worker, at]))
                    .map_err(sql)?;
                }
                StoreOp::Reported {
                    id,
                    attempt,
                    worker,
                    at,
                    duration_s,
                    outcome,
                    metrics,
                    error,
                    class,
                    diverged_step,
                    effect,
                } => {
                    let id = id.to_string();
                    let class = class.map(FailureClass::as_str);
                    let (logged, counted) = match effect {
                        ReportEffect::Late => (format!("late-{outcome}"), false),
                        _ => (outcome.to_string(), true),
                    };
                    tx.prepare_cached(
                        "INSERT INTO attempts(trial_id, attempt, worker, started_at, ended_at, outcome, error, counted, class)
                         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT(trial_id, attempt) DO UPDATE SET
                           ended_at = excluded.ended_at, outcome = excluded.outcome,
                           error = excluded.error, counted = excluded.counted, class = excluded.class
                         WHERE attempts.counted = 0",
                    )
                    .and_then(|mut s| s.execute(params![id, attempt, worker, at, logged, error, counted, class]))
                    .map_err(sql)?;
                    match effect {
                        ReportEffect::Final => {
                            tx.prepare_cached(&format!(
                                "UPDATE trials SET status = ?2, metrics = ?3, error = ?4, diverged_step = ?5,
                                   worker = ?6, finished_at = ?7, duration_s = ?8,
                                   failures = failures + (?2 = 'failed')
                                 WHERE id = ?1 AND status NOT IN {TERMINAL}"
                            ))
                            .and_then(|mut s| {
                                s.execute(params![
                                    id,
                                    outcome.as_str(),
                                    metrics,
                                    error,
                                    diverged_step.map(|s| s as i64),
                                    worker,
                                    at,
                                    duration_s
                                ])
                            })
                            .map_err(sql)?;
                        }
                        ReportEffect::Retry => {
                            tx.prepare_cached(&format!(
                                "UPDATE trials SET status = 'pending', failures = failures + 1, error = ?2
                                 WHERE id = ?1 AND status NOT IN {TERMINAL}"
                            ))
                            .and_then(|mut s| s.execute(params![id, error]))
                            .map_err(sql)?;
                        }
                        ReportEffect::Late => {}
                    }
                }
                StoreOp::Revoked { id, attempt, at, reason } => {
                    let id = id.to_string();
                    tx.prepare_cached(
                        "UPDATE attempts SET ended_at = ?3, outcome = ?4 WHERE trial_id = ?1 AND attempt = ?2 AND ended_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![id, attempt, at, reason]))
                    .map_err(sql)?;
                    tx.prepare_cached("UPDATE trials SET status = 'pending' WHERE id = ?1 AND status = 'running'")
                        .and_then(|mut s| s.execute(params![id]))
                        .map_err(sql)?;
                }
                StoreOp::Halted { id, error } => {
                    tx.prepare_cached(&format!(
                        "UPDATE trials SET status = 'failed', error = ?2 WHERE id = ?1 AND status NOT IN {TERMINAL}"
                    ))
                    .and_then(|mut s| s.execute(params![id.to_string(), error]))
                    .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)
    }

    /// Every trial of the current plan, in plan order.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        let generation = self.generation()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, seq, params, status, attempts, metrics, error, diverged_step, worker, started_at, finished_at, duration_s
                 FROM trials WHERE generation = ?1 ORDER BY seq",
            )
            .map_err(|e| self.sql(e))?;
        type Row = (
            String,
            i64,
            String,
            String,
            u32,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
        );
        let rows = stmt
            .query_map([generation], |r| {
                Ok::<Row, rusqlite::Error>((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                seq,
                params,
                status,
                attempts,
                metrics,
                error,
                diverged_step,
                worker,
                started_at,
                finished_at,
                duration_s,
            ) = row.map_err(|e| self.sql(e))?;
            let metrics = match metrics {
                Some(m) => Some(serde_json::from_str(&m).map_err(|e| self.corrupt(format!("metrics of {id}: {e}")))?),
                None => None,
            };
            out.push(TrialRecord {
                id: self.parse_id(&id)?,
                seq: seq as u64,
                params: self.parse_params(&params)?,
                status: status.parse().map_err(|e| self.corrupt(e))?,
                attempts,
                metrics,
                error,
                diverged_step: diverged_step.map(|s| s as u64),
                worker,
                started_at,
                finished_at,
                duration_s,
            });
        }
        Ok(out)
    }

    /// The attempt log of every trial, ordered by trial and attempt.
    pub fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT trial_id, attempt, worker, started_at, ended_at, outcome, counted FROM attempts ORDER BY trial_id, attempt")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, attempt, worker, started_at, ended_at, outcome, counted) = row.map_err(|e| self.sql(e))?;
            out.push(AttemptRecord {
                id: self.parse_id(&id)?,
                attempt,
                worker,
                started_at,
                ended_at,
                outcome,
                counted,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::OptimizerKind;

    fn trial(i: u64) -> PlannedTrial {
        PlannedTrial {
            id: TrialId(1000 + i),
            seq: i,
            variant: None,
            params: Hyperparams {
                optimizer: OptimizerKind::Sgd,
                batch_size: 1,
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                seed: i,
            },
        }
    }

    fn report(i: u64, attempt: u32, effect: ReportEffect) -> StoreOp {
        StoreOp::Reported {
            id: TrialId(1000 + i),
            attempt,
            worker: "w".into(),
            at: 1.0,
            duration_s: 0.5,
            outcome: TrialStatus::Succeeded,
            metrics: Some(serde_json::to_string(&TrialMetrics::default()).unwrap()),
            error: None,
            class: None,
            diverged_step: None,
            effect,
        }
    }

    #[test]
    fn plan_run_resume_and_replan() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path()).unwrap();
        let sync = s.sync_plan("demo", "f.toml", "spec", "{}", (0..3).map(trial)).unwrap();
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
        let sync = s.sync_plan("demo", "f.toml", "spec", "{}", (0..3).map(trial)).unwrap();
        assert_eq!(sync, PlanSync { total: 3, new: 0, reused: 1, requeued: 1 });
        let open = s.open_trials().unwrap();
        assert_eq!(open.iter().map(|t| (t.id.0, t.attempts)).collect::<Vec<_>>(), vec![(1001, 1), (1002, 0)]);
        let log = s.attempts().unwrap();
        assert_eq!(log[1].outcome.as_deref(), Some("lost"));

        // Replan with one trial dropped and one added.
        let sync = s.sync_plan("demo", "f.toml", "spec", "{}", [1, 2, 3].into_iter().map(trial)).unwrap();
        assert_eq!(sync, PlanSync { total: 3, new: 1, reused: 0, requeued: 0 });
        assert_eq!(s.trials().unwrap().len(), 3);
        assert!(matches!(
            s.sync_plan("other", "f.toml", "spec", "{}", std::iter::empty()),
            Err(StoreError::OtherSweep { .. })
        ));
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
}
