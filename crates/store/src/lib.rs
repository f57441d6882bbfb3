//! kappa-store: the durable record of a sweep, in one SQLite database (WAL) under the state
//! directory.
//!
//! The coordinator is the only writer. It sends [`StoreOp`]s in batches to [`Store::apply`], which
//! commits each batch in one transaction (group commit). Readers (`kappa status`, `kappa export`)
//! open the same file; WAL lets them read while a run writes.
//!
//! Exactly-once lives here too: a trial row that reached a terminal status is never updated by a
//! later report (every terminal update is guarded by `status NOT IN (terminal)`).
//!
//! Module map: `schema` (tables, version, migrations), `ops` (writes: [`StoreOp`] and
//! [`Store::apply`]), `plan` (recording a plan: [`Store::sync_plan`]), `records` (reads), `page` (pages of
//! trials, filtered and sorted, for the dashboard), `export` (CSV and JSON lines), `lock`
//! (the state directory's [`StateLock`]), `store` (opening one: [`Store`]), `error`.

#![warn(missing_docs)]

mod error;
mod export;
mod lock;
mod ops;
mod page;
mod plan;
mod records;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use export::{ExportError, trial_fields, trial_json, write_csv, write_jsonl};
pub use lock::StateLock;
pub use ops::{ReportEffect, RungEnd, StoreOp};
pub use page::{SortKey, TrialPage, TrialQuery, valid_param_name};
pub use plan::{PlanHeader, PlanRow, PlanSync};
pub use records::{AttemptRecord, InFlight, OpenTrial, RungRecord, SweepInfo, TrialRecord};
pub use schema::SCHEMA_VERSION;
pub use store::{DB_FILE, Store, now_s};
