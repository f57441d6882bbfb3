//! Reports of sweeps, built from their stores and cached (`/api/sweeps/NAME/report` and
//! `report.html` answer with them).

use crate::error::{ApiError, ApiResult};
use crate::sweeps::{FLUSH_WAIT, open, read};
use kappa_coordinator::{ErrorCode, SweepRunner};
use kappa_report::Report;
use kappa_store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A report is rebuilt at most this often while results arrive (it reads every trial).
const REPORT_EVERY: Duration = Duration::from_secs(3);

/// Reports by sweep, rebuilt when results arrived and the last one is older than
/// [`REPORT_EVERY`] and than [`REPORT_COST`] times what it took to build (a report reads every
/// trial: on a sweep of 10⁶ that takes seconds, and it must not take a core from the scheduler).
#[derive(Default)]
pub(crate) struct ReportCache {
    reports: Mutex<HashMap<String, Cached>>,
    /// One build at a time, whatever the number of browsers asking.
    building: tokio::sync::Mutex<()>,
}

/// A rebuild waits at least this many times as long as the last build took.
const REPORT_COST: u32 = 5;

struct Cached {
    done: u64,
    at: Instant,
    took: Duration,
    computed_at: f64,
    report: Arc<Report>,
}

impl ReportCache {
    /// The cached report of `name`, if it is still good for `done` finished trials (a finished
    /// sweep's final report is built at once, whatever it costs: it is built once).
    fn fresh(&self, name: &str, done: u64, finished: bool) -> Option<(Arc<Report>, f64)> {
        let cache = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let c = cache.get(name)?;
        let due = finished || c.at.elapsed() >= REPORT_EVERY.max(c.took * REPORT_COST);
        (c.done == done || !due).then(|| (c.report.clone(), c.computed_at))
    }
}

/// A sweep's report, built from its store.
fn build_report(r: &SweepRunner) -> ApiResult<Report> {
    let store = open(r)?;
    let info = store.sweep_info()?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the sweep holds no plan yet"))?;
    let mut results = Vec::new();
    store.each_trial(|t| {
        results.push(t.result);
        Ok::<(), StoreError>(())
    })?;
    let (_, report) = kappa_report::build_stored(&info.spec_path, &info.spec, info.code_version, results)
        .map_err(|e| ApiError::internal(format!("the stored sweep file: {e}")))?;
    Ok(report)
}

/// The cached report of a sweep, rebuilt when due; with when it was built.
pub(crate) async fn cached_report(cache: &ReportCache, r: SweepRunner) -> ApiResult<(Arc<Report>, f64)> {
    let name = r.name().to_string();
    if let Some(hit) = cache.fresh(&name, r.progress().counts.done(), r.is_finished()) {
        return Ok(hit);
    }
    let _building = cache.building.lock().await;
    // Another request may have built it meanwhile.
    if let Some(hit) = cache.fresh(&name, r.progress().counts.done(), r.is_finished()) {
        return Ok(hit);
    }
    // Counted before the flush, so every result it counts is in the store the build reads.
    let done = r.progress().counts.done();
    let _ = tokio::time::timeout(FLUSH_WAIT, r.flushed()).await;
    let started = Instant::now();
    let report = Arc::new(read(move || build_report(&r)).await?);
    let computed_at = kappa_store::now_s();
    let entry = Cached { done, at: Instant::now(), took: started.elapsed(), computed_at, report: report.clone() };
    cache.reports.lock().unwrap_or_else(|e| e.into_inner()).insert(name, entry);
    Ok((report, computed_at))
}
