//! The schema, and the migrations that bring older stores up to it in place.
//!
//! Version 1 kept three words for an attempt that ended without a report (`expired`,
//! `released`, `lost`); version 2 records every such attempt as `lost`, with the reason in
//! `error` and `class = 'lost'` when it counts as a failed attempt (its lease expired).
//! Version 3 records in `meta.code_version` the code version the store's ids are made with
//! (written at its first plan); a version 2 store is given the version its ids carry (see
//! [`CodeVersion::legacy`]).

use crate::{Store, StoreError};
use kappa_core::{CodeVersion, LeaseEnd};
use rusqlite::OptionalExtension;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 3;

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

/// The `meta` key of the code version the store's ids are made with.
pub(crate) const CODE_VERSION: &str = "code_version";

/// Terminal trial statuses, as SQL.
pub(crate) const TERMINAL: &str = "('succeeded','failed','diverged')";

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
        if !has_meta {
            self.conn.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
            self.conn
                .execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])
                .map_err(|e| self.sql(e))?;
        }
        let version = self.meta("schema_version")?;
        match version.as_deref().map(str::parse::<i64>) {
            Some(Ok(1)) => {
                self.migrate_from_1()?;
                self.migrate_from_2()
            }
            Some(Ok(2)) => self.migrate_from_2(),
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
        let migrate = || -> Result<(), rusqlite::Error> {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
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
            self.conn
                .execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [SCHEMA_VERSION.to_string()])?;
            self.conn.execute_batch("COMMIT")
        };
        migrate().map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.sql(e)
        })
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
