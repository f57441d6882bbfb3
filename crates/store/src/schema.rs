//! The schema, and the migrations that bring older stores up to it in place.
//!
//! Version 1 kept three words for an attempt that ended without a report (`expired`,
//! `released`, `lost`); version 2 records every such attempt as `lost`, with the reason in
//! `error` and `class = 'lost'` when it counts as a failed attempt (its lease expired).
//! Version 3 records in `meta.code_version` the code version the store's ids are made with
//! (written at its first plan); a version 2 store is given the version its ids carry (see
//! [`CodeVersion::legacy`]).
//! Version 4 indexes what large sweeps read: a current plan's trials by status in plan order
//! (`trials_by_plan`, replacing `trials_by_generation`), and the attempts still open and the
//! failed and preempted ones (partial indexes), so a resume reads only what it needs; and
//! `trials.unsettled` (1: the stationary loss was taken before the loss settled), written with
//! each result and filled in from the metrics of earlier ones, so `kappa status` finds those
//! trials by an index rather than by reading every result.
//! Version 5 adds `trials.health` (`did_not_train` or `unstable` for a succeeded trial that did
//! not train, see [`kappa_core::Health`]; null otherwise), written with each result and filled in
//! from the metrics of earlier ones, and a partial index on it, so counts of them are read
//! without reading results.

use crate::{Store, StoreError};
use kappa_core::{CodeVersion, LeaseEnd};
use rusqlite::OptionalExtension;
use rusqlite::types::Value;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 7;

/// Version 7's table of successive halving's rung results, in the order they were recorded
/// (`seq`): what a resumed search replays. Part of [`SCHEMA`], and what a version 6 store gets.
macro_rules! rungs_table {
    () => {
        r#"
CREATE TABLE IF NOT EXISTS rungs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id TEXT NOT NULL,
    rung INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    metrics TEXT,
    from_step INTEGER NOT NULL DEFAULT 0,
    to_step INTEGER,
    samples INTEGER,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rungs_by_trial ON rungs(trial_id, rung);
"#
    };
}

/// [`rungs_table!`], for the migration.
pub(crate) const RUNGS: &str = rungs_table!();

pub(crate) const SCHEMA: &str = concat!(
    r#"
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
    duration_s REAL,
    unsettled INTEGER,
    health TEXT,
    origin TEXT,
    rung INTEGER
);
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
"#,
    rungs_table!()
);

/// The indexes of version 4 (see the module docs), as a literal both constants are made of.
macro_rules! indexes_4 {
    () => {
        r#"
CREATE INDEX IF NOT EXISTS trials_by_plan ON trials(generation, status, seq);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts(trial_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS attempts_failed ON attempts(trial_id)
    WHERE outcome = 'failed' OR (outcome = 'lost' AND class = 'lost');
CREATE INDEX IF NOT EXISTS attempts_preempted ON attempts(trial_id) WHERE outcome = 'preempted';
CREATE INDEX IF NOT EXISTS trials_unsettled ON trials(generation, seq) WHERE unsettled = 1;
"#
    };
}

/// The indexes of version 4: what a version 3 store is brought up to before version 5's column.
const INDEXES_4: &str = indexes_4!();

/// The indexes of the current version (see the module docs).
pub(crate) const INDEXES: &str = concat!(
    indexes_4!(),
    "CREATE INDEX IF NOT EXISTS trials_unhealthy ON trials(generation, health) WHERE health IS NOT NULL;\n"
);

/// The `meta` key of the code version the store's ids are made with.
pub(crate) const CODE_VERSION: &str = "code_version";

/// Terminal trial statuses, as SQL.
pub(crate) const TERMINAL: &str = "('succeeded','failed','diverged','stopped')";

/// A trial failed without a result of its own (the failure budget stopped it before it ran, or
/// before its retry), as SQL over the trial row named `t`.
pub(crate) fn failed_without_result(t: &str) -> String {
    format!(
        "({t}.status = 'failed' AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.trial_id = {t}.id AND a.counted = 1))"
    )
}

/// Attempts that count against retries and the failure budget: failed ones, and lost ones whose
/// lease expired (attempts reset by `kappa retry --failed` carry a suffix and no longer match).
pub(crate) const FAILED_ATTEMPT: &str = "(a.outcome = 'failed' OR (a.outcome = 'lost' AND a.class = 'lost'))";

impl Store {
    pub(crate) fn init(&self, create: bool) -> Result<(), StoreError> {
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
        // A checkpoint truncates the WAL back to this size, so a large plan's transaction does
        // not leave a WAL as big as the database behind it.
        self.conn.pragma_update(None, "journal_size_limit", 64 << 20).map_err(|e| self.sql(e))?;
        // Checkpoint every 40 MB of WAL rather than every 4: fewer, longer runs of page copies.
        self.conn.pragma_update(None, "wal_autocheckpoint", 10_000).map_err(|e| self.sql(e))?;
        if create {
            // The writer's connection: trial ids are hashes, so a sweep's writes land all over
            // the id index; keep up to 128 MiB of it in memory (the cache grows only as pages
            // are read). Readers (status, export) keep SQLite's small default.
            self.conn.pragma_update(None, "cache_size", -(128 << 10)).map_err(|e| self.sql(e))?;
        }
        if !has_meta {
            self.conn.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
            self.conn.execute_batch(INDEXES).map_err(|e| self.sql(e))?;
            self.conn
                .execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])
                .map_err(|e| self.sql(e))?;
        }
        let version = self.meta("schema_version")?;
        match version.as_deref().map(str::parse::<i64>) {
            Some(Ok(1)) => {
                self.migrate_from_1()?;
                self.migrate_from_2()?;
                self.migrate_from_3()?;
                self.migrate_from_4()?;
                self.migrate_from_5()?;
                self.migrate_from_6()
            }
            Some(Ok(2)) => {
                self.migrate_from_2()?;
                self.migrate_from_3()?;
                self.migrate_from_4()?;
                self.migrate_from_5()?;
                self.migrate_from_6()
            }
            Some(Ok(3)) => {
                self.migrate_from_3()?;
                self.migrate_from_4()?;
                self.migrate_from_5()?;
                self.migrate_from_6()
            }
            Some(Ok(4)) => {
                self.migrate_from_4()?;
                self.migrate_from_5()?;
                self.migrate_from_6()
            }
            Some(Ok(5)) => {
                self.migrate_from_5()?;
                self.migrate_from_6()
            }
            Some(Ok(6)) => self.migrate_from_6(),
            Some(Ok(SCHEMA_VERSION)) => Ok(()),
            Some(Ok(v)) => Err(self.corrupt(format!("schema version {v}, this kappa reads {SCHEMA_VERSION}"))),
            _ => Err(self.corrupt("missing or malformed schema_version")),
        }
    }

    /// Version 1 → 2, in one transaction: the `class` column (added to version 1 stores over
    /// time), and one word, `lost`, for every attempt that ended without a report.
    fn migrate_from_1(&self) -> Result<(), StoreError> {
        let has_class: bool = self
            .conn
            .query_row("SELECT count(*) FROM pragma_table_info('attempts') WHERE name = 'class'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.sql(e))?
            > 0;
        let add_class = if has_class { "" } else { "ALTER TABLE attempts ADD COLUMN class TEXT;" };
        // Version 1 did not say who handed a `released` lease back (a worker, or a stopping process).
        let (expired, left, abandoned) = (LeaseEnd::Expired.reason(), "handed back", LeaseEnd::Abandoned.reason());
        let sql = format!(
            "BEGIN IMMEDIATE;
             {add_class}
             UPDATE attempts SET outcome = 'lost', class = 'lost', error = coalesce(error, '{expired}')
               WHERE outcome = 'expired';
             UPDATE attempts SET outcome = 'lost-before-retry', class = 'lost', error = coalesce(error, '{expired}')
               WHERE outcome = 'expired-before-retry';
             UPDATE attempts SET outcome = 'lost', error = coalesce(error, '{left}') WHERE outcome = 'released';
             UPDATE attempts SET error = coalesce(error, '{abandoned}') WHERE outcome = 'lost' AND class IS NULL;
             UPDATE meta SET value = '2' WHERE key = 'schema_version';
             COMMIT;"
        );
        self.conn.execute_batch(&sql).map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.sql(e)
        })
    }

    /// Version 2 → 3: a store that holds a sweep records the version its ids were made with, the
    /// one kappa gave every id of its task's kind before stores recorded theirs.
    fn migrate_from_2(&self) -> Result<(), StoreError> {
        self.in_transaction(|| {
            let kind: Option<String> = self
                .conn
                .query_row(
                    "SELECT json_extract(t.json, '$.kind') FROM meta m JOIN tasks t ON t.hash = m.value
                     WHERE m.key = 'task'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            if let Some(kind) = kind {
                self.conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)",
                    [CODE_VERSION.to_string(), CodeVersion::legacy(&kind).to_string()],
                )?;
            }
            self.conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'", []).map(drop)
        })
    }

    /// Version 3 → 4: the `unsettled` column, filled in from the results' metrics, and the
    /// indexes large sweeps read by. One transaction.
    fn migrate_from_3(&self) -> Result<(), StoreError> {
        self.in_transaction(|| {
            self.fill_column("unsettled", "INTEGER", "json_extract(metrics, '$.stationary_drift') IS NOT NULL", |m| {
                (m.settled() == Some(false)).then_some(Value::Integer(1))
            })?;
            self.conn.execute_batch(&format!(
                "DROP INDEX IF EXISTS trials_by_generation;
                 {INDEXES_4}
                 UPDATE meta SET value = '4' WHERE key = 'schema_version';"
            ))
        })
    }

    /// Version 4 → 5: the `health` column, filled in from the succeeded results' metrics, and its
    /// index. One transaction.
    fn migrate_from_4(&self) -> Result<(), StoreError> {
        self.in_transaction(|| {
            self.fill_column("health", "TEXT", "status = 'succeeded' AND metrics IS NOT NULL", |m| {
                crate::ops::health_column(m).map(|h| Value::Text(h.to_string()))
            })?;
            self.conn.execute_batch(&format!("{INDEXES} UPDATE meta SET value = '5' WHERE key = 'schema_version';"))
        })
    }

    /// Version 5 → 6: the `origin` column (where a trial comes from, as JSON; null for a grid
    /// point, and for every trial of a store made before origins were recorded: those are all
    /// grid trials, and their scaled variants are known from the plan of the stored sweep
    /// text). One transaction.
    fn migrate_from_5(&self) -> Result<(), StoreError> {
        self.in_transaction(|| {
            self.fill_column("origin", "TEXT", "0", |_| None)?;
            self.conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'", []).map(drop)
        })
    }

    /// Version 6 → 7: successive halving's `rung` column (null for every trial of a store made
    /// before: none was halved) and its `rungs` table. One transaction.
    fn migrate_from_6(&self) -> Result<(), StoreError> {
        self.in_transaction(|| {
            self.fill_column("rung", "INTEGER", "0", |_| None)?;
            self.conn.execute_batch(RUNGS)?;
            self.conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'", []).map(drop)
        })
    }

    /// Runs one migration in one transaction: committed when `step` succeeds, rolled back when
    /// it fails.
    fn in_transaction(&self, step: impl FnOnce() -> rusqlite::Result<()>) -> Result<(), StoreError> {
        let run = || {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            step()?;
            self.conn.execute_batch("COMMIT")
        };
        run().map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.sql(e)
        })
    }

    /// Adds the column `column` (of type `decl`) to `trials` where it is missing, and fills it
    /// in from the metrics of the rows `filter` selects: `value` gives a row's value (`None`
    /// leaves it null).
    fn fill_column(
        &self,
        column: &str,
        decl: &str,
        filter: &str,
        value: impl Fn(&kappa_core::TrialMetrics) -> Option<Value>,
    ) -> rusqlite::Result<()> {
        // A store made by this build and marked older (in tests) has the column already.
        let has: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('trials') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        if !has {
            self.conn.execute_batch(&format!("ALTER TABLE trials ADD COLUMN {column} {decl}"))?;
        }
        let values: Vec<(String, Value)> = {
            let mut stmt = self.conn.prepare(&format!("SELECT id, metrics FROM trials WHERE {filter}"))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, metrics) = row?;
                let m: Option<kappa_core::TrialMetrics> = serde_json::from_str(&metrics).ok();
                if let Some(v) = m.as_ref().and_then(&value) {
                    out.push((id, v));
                }
            }
            out
        };
        let mut update = self.conn.prepare(&format!("UPDATE trials SET {column} = ?2 WHERE id = ?1"))?;
        for (id, v) in values {
            update.execute(rusqlite::params![id, v])?;
        }
        Ok(())
    }

    /// The code version this store's ids are made with (`None`: never planned).
    pub fn code_version(&self) -> Result<Option<CodeVersion>, StoreError> {
        Ok(self.meta(CODE_VERSION)?.map(|v| CodeVersion::from_record(&v)))
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub(crate) fn generation(&self) -> Result<i64, StoreError> {
        Ok(self.meta("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0))
    }
}
