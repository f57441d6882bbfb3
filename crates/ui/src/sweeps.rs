//! A sweep of the coordinator and its store, as handlers reach them: its runner, a connection of
//! the request's own to its store, and reads run off the runtime's threads (they serve the
//! scheduler).

use crate::error::ApiResult;
use kappa_coordinator::{Coordinator, CoordinatorError, SweepRunner};
use kappa_store::Store;
use std::time::Duration;

/// Runs a handler's store reads off the runtime's threads (they serve the scheduler).
pub(crate) async fn read<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    kappa_coordinator::blocking("the request", f).await
}

/// The runner of the sweep named `name`.
pub(crate) fn runner(c: &Coordinator, name: &str) -> ApiResult<SweepRunner> {
    if name.is_empty() {
        return Err(CoordinatorError::NoSuchSweep(String::new()).into());
    }
    Ok(c.sweep(name)?)
}

/// The most a read waits for the sweep's writer to commit what it has queued.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// A sweep's runner once what it queued before the call is in its store (or [`FLUSH_WAIT`] has
/// passed), so the rows a page reads agree with the counts the page shows.
pub(crate) async fn flushed(c: &Coordinator, name: &str) -> ApiResult<SweepRunner> {
    let r = runner(c, name)?;
    let _ = tokio::time::timeout(FLUSH_WAIT, r.flushed()).await;
    Ok(r)
}

/// A connection of the request's own to a sweep's store.
pub(crate) fn open(r: &SweepRunner) -> ApiResult<Store> {
    Ok(Store::open(r.dir())?)
}
