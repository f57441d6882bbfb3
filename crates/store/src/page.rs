//! Pages of trials for the dashboard: filtered by status and by parameter values, sorted, and
//! counted, without reading the sweep into memory (a sweep of 10⁷ trials is paged by SQLite).

use crate::records::{AttemptRecord, TrialRecord};
use crate::{Store, StoreError};
use kappa_core::{TrialId, TrialStatus};
use rusqlite::types::Value;

/// What a page of trials is sorted by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Position in the plan (the default, and the tie-breaker of every other key).
    #[default]
    Seq,
    /// Status name.
    Status,
    /// Attempts leased.
    Attempts,
    /// Run time of the counted attempt.
    Duration,
    /// Stationary loss (mean).
    Stationary,
    /// A parameter by its name in the trial's parameters (`lr`, `params.width`).
    Param(String),
}

/// Which trials a page shows, and in what order.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialQuery {
    /// Only trials in this status.
    pub status: Option<TrialStatus>,
    /// Only trials whose parameter (by name) equals the value (a number, a string or a bool).
    pub filters: Vec<(String, serde_json::Value)>,
    /// The order.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// Trials skipped.
    pub offset: u64,
    /// Trials shown at most.
    pub limit: u64,
}

impl Default for TrialQuery {
    fn default() -> Self {
        TrialQuery { status: None, filters: Vec::new(), sort: SortKey::Seq, descending: false, offset: 0, limit: 50 }
    }
}

/// One page of trials.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialPage {
    /// Trials matching the query (all pages).
    pub total: u64,
    /// This page's trials.
    pub trials: Vec<TrialRecord>,
}

/// Whether a parameter name can be used in a JSON path: the names kappa gives parameters
/// (`lr`, `params.width`, `task.noise.sigma`). Others are refused rather than quoted.
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The JSON path of a parameter in a trial's `params` object (names hold dots, so quoted).
fn param_path(name: &str) -> String {
    format!("$.\"{name}\"")
}

impl Store {
    /// A page of the current plan's trials. Parameter names must pass [`valid_param_name`]
    /// (others match nothing).
    pub fn trial_page(&self, q: &TrialQuery) -> Result<TrialPage, StoreError> {
        let mut args: Vec<Value> = vec![Value::Integer(self.generation()?)];
        let mut filter = String::from("generation = ?1");
        if let Some(s) = q.status {
            args.push(Value::Text(s.to_string()));
            filter.push_str(&format!(" AND status = ?{}", args.len()));
        }
        for (name, value) in &q.filters {
            if !valid_param_name(name) {
                filter.push_str(" AND 0");
                continue;
            }
            args.push(Value::Text(param_path(name)));
            let path = args.len();
            // json_extract gives numbers as numbers, strings as text and booleans as 0/1.
            let value = match value {
                serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
                serde_json::Value::Number(n) => {
                    n.as_i64().map_or_else(|| Value::Real(n.as_f64().unwrap_or(f64::NAN)), Value::Integer)
                }
                serde_json::Value::String(s) => Value::Text(s.clone()),
                other => Value::Text(other.to_string()),
            };
            args.push(value);
            filter.push_str(&format!(" AND json_extract(params, ?{path}) = ?{}", args.len()));
        }
        let total: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM trials WHERE {filter}"), rusqlite::params_from_iter(&args), |r| {
                r.get(0)
            })
            .map_err(|e| self.sql(e))?;
        let key = match &q.sort {
            SortKey::Seq => "seq".to_string(),
            SortKey::Status => "status".to_string(),
            SortKey::Attempts => "attempts".to_string(),
            SortKey::Duration => "duration_s".to_string(),
            SortKey::Stationary => "json_extract(metrics, '$.stationary_loss.mean')".to_string(),
            SortKey::Param(name) if valid_param_name(name) => {
                args.push(Value::Text(param_path(name)));
                format!("json_extract(params, ?{})", args.len())
            }
            SortKey::Param(_) => "seq".to_string(),
        };
        let dir = if q.descending { "DESC" } else { "ASC" };
        // Missing values (no stationary loss yet) last in either direction.
        let order = if q.sort == SortKey::Seq {
            format!("seq {dir}")
        } else {
            format!("({key}) IS NULL, {key} {dir}, seq {dir}")
        };
        args.push(Value::Integer(q.limit.min(i64::MAX as u64) as i64));
        args.push(Value::Integer(q.offset.min(i64::MAX as u64) as i64));
        let sql = format!("{filter} ORDER BY {order} LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
        let mut trials = Vec::new();
        self.records_where(&sql, &args, |t| {
            trials.push(t);
            Ok::<(), StoreError>(())
        })?;
        Ok(TrialPage { total: total as u64, trials })
    }

    /// The current plan's first trial (what a sweep's trials carry: its parameter names).
    pub fn first_trial(&self) -> Result<Option<TrialRecord>, StoreError> {
        let mut found = None;
        self.records_where("generation = ?1 ORDER BY seq LIMIT 1", &[Value::Integer(self.generation()?)], |t| {
            found = Some(t);
            Ok::<(), StoreError>(())
        })?;
        Ok(found)
    }

    /// One trial of the current plan by id.
    pub fn trial(&self, id: TrialId) -> Result<Option<TrialRecord>, StoreError> {
        let args = [Value::Integer(self.generation()?), Value::Text(id.to_string())];
        let mut found = None;
        self.records_where("generation = ?1 AND id = ?2", &args, |t| {
            found = Some(t);
            Ok::<(), StoreError>(())
        })?;
        Ok(found)
    }

    /// The attempt log of one trial, by attempt.
    pub fn attempts_of(&self, id: TrialId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.attempts_where("trial_id = ?1 ORDER BY attempt", &[Value::Text(id.to_string())])
    }
}
