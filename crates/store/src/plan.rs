//! Recording a plan: the trials of the current sweep file, new ones added, known ones kept.

use crate::schema::{CODE_VERSION, TERMINAL};
use crate::{Store, StoreError, now_s};
use kappa_core::{CodeVersion, LeaseEnd, Origin, PlannedTrial, TrialId};
use rusqlite::params;

/// What identifies a plan, recorded with it.
#[derive(Clone, Copy, Debug)]
pub struct PlanHeader<'a> {
    /// The sweep's name.
    pub sweep: &'a str,
    /// The sweep file's path.
    pub spec_path: &'a str,
    /// The sweep file's text.
    pub spec: &'a str,
    /// The code version the trials' ids are made with (recorded: see [`Store::code_version`]).
    pub version: &'a CodeVersion,
    /// The canonical JSON of each of the sweep's tasks, which [`PlannedTrial::task`] indexes.
    pub tasks: &'a [String],
    /// How many rows the plan has at most (entries that repeat a trial are yielded once).
    pub len: u64,
    /// A digest of everything the plan's trials follow from (the sweep text, the code version,
    /// the planner's own version): a store whose last plan has the same one holds exactly
    /// these trials already, so they are not read again.
    pub fingerprint: &'a str,
}

/// One trial of a plan as the store records it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRow {
    /// The trial.
    pub id: TrialId,
    /// Its position in the plan.
    pub seq: u64,
    /// Its task, an index into [`PlanHeader::tasks`].
    pub task: usize,
    /// Its parameters, as JSON.
    pub params: String,
    /// Where it comes from, as JSON (`None`: a grid point).
    pub origin: Option<String>,
}

impl From<PlannedTrial> for PlanRow {
    fn from(t: PlannedTrial) -> PlanRow {
        let origin = (t.origin != Origin::Grid).then(|| t.origin.to_json());
        // Serialising parameters (strings and JSON values) cannot fail.
        PlanRow {
            id: t.id,
            seq: t.seq,
            task: t.task,
            params: serde_json::to_string(&t.params).unwrap_or_default(),
            origin,
        }
    }
}

/// The `meta` key of the last synced plan's fingerprint.
const FINGERPRINT: &str = "plan_fingerprint";

/// What [`Store::sync_plan`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSync {
    /// Trials in the plan.
    pub total: u64,
    /// Trials added by this plan (never seen before).
    pub new: u64,
    /// Trials already finished in an earlier run (kept, not re-run).
    pub reused: u64,
    /// Trials a run that is gone left unfinished: left running (put back to pending now) or
    /// handed back preempted by its draining workers.
    pub requeued: u64,
}

impl Store {
    /// Records a plan: new trials are inserted as pending, known ones are kept (finished ones are
    /// reused; their parameters are rewritten as this plan names them, so an axis added since
    /// shows in their exports too), and trials a dead run left `running` go back to pending
    /// (their open attempts are logged as lost, abandoned). One transaction: a crash part way
    /// leaves the store as it was.
    ///
    /// When the store's last plan has the header's fingerprint, its trials are these already:
    /// `rows` is not called (the resume of an unchanged sweep costs the same at 10 trials and
    /// at 10⁷), only interrupted trials are re-queued. Otherwise every row it yields is
    /// written, as it comes (rows in plan order go in fastest).
    pub fn sync_plan<I: IntoIterator<Item = PlanRow>>(
        &mut self,
        header: &PlanHeader<'_>,
        rows: impl FnOnce() -> I,
    ) -> Result<PlanSync, StoreError> {
        let PlanHeader { sweep, spec_path, fingerprint, .. } = *header;
        if let Some(found) = self.meta("sweep_name")?
            && found != sweep
        {
            return Err(StoreError::OtherSweep { path: self.path.clone(), found, expected: sweep.to_string() });
        }
        let sync = if self.meta(FINGERPRINT)?.as_deref() == Some(fingerprint) {
            self.resume_plan(spec_path)?
        } else {
            self.replan(header, rows())?
        };
        // The plan's transaction may have grown the WAL to the size of the database: copy it
        // back and truncate it (a reader holding an old snapshot only delays that).
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(sync)
    }

    /// The plan is the store's last one: re-queue what a dead run left running, and count.
    fn resume_plan(&mut self, spec_path: &str) -> Result<PlanSync, StoreError> {
        let generation = self.generation()?;
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'spec_path'", [spec_path]).map_err(sql)?;
        let requeued = close_interrupted(&tx, generation).map_err(sql)?;
        let count = |filter: &str| {
            tx.query_row(&format!("SELECT count(*) FROM trials WHERE generation = ?1{filter}"), [generation], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sql)
        };
        let sync =
            PlanSync { total: count("")?, new: 0, reused: count(&format!(" AND status IN {TERMINAL}"))?, requeued };
        tx.commit().map_err(sql)?;
        Ok(sync)
    }

    /// A new or changed plan: every trial is written (inserted, or its row brought up to date).
    fn replan(
        &mut self,
        header: &PlanHeader<'_>,
        rows: impl IntoIterator<Item = PlanRow>,
    ) -> Result<PlanSync, StoreError> {
        let generation = self.generation()? + 1;
        let empty: bool = self
            .conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM trials) AND NOT EXISTS (SELECT 1 FROM attempts)", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql(e))?;
        if empty && header.len >= BULK_MIN {
            let total = self.bulk_load(header, rows.into_iter(), generation)?;
            return Ok(PlanSync { total, new: total, reused: 0, requeued: 0 });
        }
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        let tx = self.conn.transaction().map_err(sql)?;
        let count_all = |tx: &rusqlite::Transaction<'_>| {
            tx.query_row("SELECT count(*) FROM trials", [], |r| r.get::<_, i64>(0)).map_err(sql)
        };
        let before = count_all(&tx)?;
        let total = write_plan(&tx, header, rows, generation, true).map_err(|e| e.at(&path))?;
        let requeued = close_interrupted(&tx, generation).map_err(sql)?;
        let reused = tx
            .query_row(
                &format!("SELECT count(*) FROM trials WHERE generation = ?1 AND status IN {TERMINAL}"),
                [generation],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql)? as u64;
        let new = (count_all(&tx)? - before) as u64;
        tx.commit().map_err(sql)?;
        Ok(PlanSync { total, new, reused, requeued })
    }

    /// The first plan of a store that holds no trial yet: written into a new file beside it with
    /// no journal (nothing in it can be lost: a crash leaves the old file, and the new one is
    /// removed the next time), made durable and then renamed over the store: the rows are
    /// written once, not twice as through the WAL (and checkpointed). Should a reader hold the
    /// store's WAL past the busy timeout, the rows are copied from the new file instead.
    /// Returns how many rows.
    fn bulk_load(
        &mut self,
        header: &PlanHeader<'_>,
        rows: impl Iterator<Item = PlanRow>,
        generation: i64,
    ) -> Result<u64, StoreError> {
        let side = self.path.with_extension("db.new");
        let io = |e: std::io::Error| StoreError::BadDir { path: side.clone(), reason: e.to_string() };
        match std::fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let sql = |e| StoreError::Sqlite { path: side.clone(), source: e };
        let build = || -> Result<u64, StoreError> {
            let conn = rusqlite::Connection::open(&side).map_err(sql)?;
            conn.pragma_update(None, "journal_mode", "OFF").map_err(sql)?;
            conn.pragma_update(None, "synchronous", "OFF").map_err(sql)?;
            conn.pragma_update(None, "cache_size", -(128 << 10)).map_err(sql)?;
            conn.execute_batch(crate::schema::SCHEMA).map_err(sql)?;
            // What the store holds besides trials: its settings and tasks.
            conn.execute("ATTACH DATABASE ?1 AS old", [self.path.to_string_lossy()]).map_err(sql)?;
            conn.execute_batch(
                "INSERT INTO meta SELECT * FROM old.meta; INSERT INTO tasks SELECT * FROM old.tasks; DETACH DATABASE old;",
            )
            .map_err(sql)?;
            let tx = conn.unchecked_transaction().map_err(sql)?;
            let total = write_plan(&tx, header, rows, generation, false).map_err(|e| e.at(&side))?;
            // Indexed once at the end, by sorting, rather than entry by entry in plan order.
            tx.execute_batch(crate::schema::INDEXES).map_err(sql)?;
            tx.commit().map_err(sql)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
            conn.close().map_err(|(_, e)| sql(e))?;
            std::fs::File::open(&side).and_then(|f| f.sync_all()).map_err(io)?;
            Ok(total)
        };
        let total = match build() {
            Ok(total) => total,
            Err(e) => {
                let _ = std::fs::remove_file(&side);
                return Err(e);
            }
        };
        // The file is replaced: no other connection may hold it (its WAL and shared memory would
        // outlive it under the same names). Leaving WAL mode needs the only connection, and
        // empties the WAL; while another process holds the store, the rows are copied instead.
        let alone = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0))
            .is_ok_and(|m| m.eq_ignore_ascii_case("delete"));
        if !alone {
            let copied = self.copy_plan_from(&side, header, generation);
            let _ = std::fs::remove_file(&side);
            copied?;
            return Ok(total);
        }
        let placeholder = rusqlite::Connection::open_in_memory().map_err(|e| self.sql(e))?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        let replaced =
            old.close().map_err(|(_, e)| self.sql(e)).and_then(|()| std::fs::rename(&side, &self.path).map_err(io));
        if let Some(dir) = self.path.parent() {
            // The rename itself is durable once the directory is.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        // Whatever happened, the store is opened again (the new file, or the old one as it was).
        self.conn = rusqlite::Connection::open(&self.path).map_err(|e| self.sql(e))?;
        self.init(false)?;
        if let Err(e) = replaced {
            let _ = std::fs::remove_file(&side);
            return Err(e);
        }
        Ok(total)
    }

    /// Writes the plan built in `side` into the store through its WAL, in one transaction.
    fn copy_plan_from(
        &mut self,
        side: &std::path::Path,
        header: &PlanHeader<'_>,
        generation: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |e| StoreError::Sqlite { path: path.clone(), source: e };
        self.conn.execute("ATTACH DATABASE ?1 AS side", [side.to_string_lossy()]).map_err(sql)?;
        let copy = (|| {
            let tx = self.conn.transaction().map_err(sql)?;
            write_plan(&tx, header, std::iter::empty(), generation, false).map_err(|e| e.at(&path))?;
            tx.execute_batch("INSERT INTO main.trials SELECT * FROM side.trials").map_err(sql)?;
            tx.commit().map_err(sql)
        })();
        let _ = self.conn.execute_batch("DETACH DATABASE side");
        copy
    }
}

/// Plans at least this large into a store with no trial are written beside it
/// ([`Store::bulk_load`]): below it, rows written twice through the WAL cost less than the
/// copy, the fsync and the rename.
pub(crate) const BULK_MIN: u64 = 10_000;

/// Why a plan could not be written.
enum PlanWriteError {
    Sql(rusqlite::Error),
    NoTask,
    BadTask { id: TrialId, task: usize, tasks: usize },
}

impl PlanWriteError {
    /// The error, writing the store at `path`.
    fn at(self, path: &std::path::Path) -> StoreError {
        let path = path.to_path_buf();
        match self {
            PlanWriteError::Sql(source) => StoreError::Sqlite { path, source },
            PlanWriteError::NoTask => StoreError::Corrupt { path, reason: "a plan with no task".into() },
            PlanWriteError::BadTask { id, task, tasks } => {
                StoreError::Corrupt { path, reason: format!("trial {id} runs task {task} of a plan with {tasks}") }
            }
        }
    }
}

impl From<rusqlite::Error> for PlanWriteError {
    fn from(e: rusqlite::Error) -> Self {
        PlanWriteError::Sql(e)
    }
}

/// Writes a plan's settings, tasks and rows as generation `generation`; `upsert`: rows already
/// there are brought up to date (their results kept). Returns how many rows.
fn write_plan(
    tx: &rusqlite::Transaction<'_>,
    header: &PlanHeader<'_>,
    rows: impl IntoIterator<Item = PlanRow>,
    generation: i64,
    upsert: bool,
) -> Result<u64, PlanWriteError> {
    let PlanHeader { sweep, spec_path, spec, version, tasks, fingerprint, .. } = *header;
    let hashes: Vec<String> = tasks.iter().map(|t| kappa_core::id::content_hash(t)).collect();
    let first_hash = hashes.first().cloned().ok_or(PlanWriteError::NoTask)?;
    let set_meta = "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
    for (k, v) in [
        ("sweep_name", sweep.to_string()),
        ("spec", spec.to_string()),
        ("spec_path", spec_path.to_string()),
        ("generation", generation.to_string()),
        ("task", first_hash),
        (CODE_VERSION, version.to_string()),
        (FINGERPRINT, fingerprint.to_string()),
    ] {
        tx.execute(set_meta, params![k, v])?;
    }
    for (hash, json) in hashes.iter().zip(tasks) {
        tx.execute("INSERT OR IGNORE INTO tasks(hash, json) VALUES (?1, ?2)", params![hash, json])?;
    }
    let mut insert = tx.prepare(if upsert {
        "INSERT INTO trials(id, seq, generation, task, params, status, created_at, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, generation = excluded.generation, params = excluded.params,
           origin = excluded.origin"
    } else {
        "INSERT INTO trials(id, seq, generation, task, params, status, created_at, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)"
    })?;
    let now = now_s();
    let mut id = String::with_capacity(16);
    let mut n = 0;
    for t in rows {
        let task = hashes.get(t.task).ok_or(PlanWriteError::BadTask { id: t.id, task: t.task, tasks: hashes.len() })?;
        id.clear();
        std::fmt::Write::write_fmt(&mut id, format_args!("{}", t.id)).map_err(|_| PlanWriteError::NoTask)?;
        insert.execute(params![id, t.seq as i64, generation, task, t.params, now, t.origin])?;
        n += 1;
    }
    Ok(n)
}

/// Puts the trials a dead run left running back to pending and logs their open attempts as
/// lost (abandoned). Returns how many trials were interrupted: those, and the pending ones a
/// draining run handed back unfinished (preempted: Ctrl-C, SIGTERM), which are pending already.
fn close_interrupted(tx: &rusqlite::Transaction<'_>, generation: i64) -> rusqlite::Result<u64> {
    // From the (few) preempted attempts, through their partial index: the trials whose last
    // attempt was handed back and that are still pending.
    let handed_back: i64 = tx.query_row(
        "SELECT count(*) FROM attempts a JOIN trials t ON t.id = a.trial_id
          WHERE a.outcome = 'preempted' AND a.attempt = t.attempts AND t.status = 'pending' AND t.generation = ?1",
        [generation],
        |r| r.get(0),
    )?;
    let requeued =
        tx.execute("UPDATE trials SET status = 'pending' WHERE generation = ?1 AND status = 'running'", [generation])?;
    tx.execute(
        "UPDATE attempts SET ended_at = ?1, outcome = 'lost', error = ?2 WHERE ended_at IS NULL",
        params![now_s(), LeaseEnd::Abandoned.reason()],
    )?;
    Ok(requeued as u64 + handed_back as u64)
}
