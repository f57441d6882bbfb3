//! Blocking work (planning, store reads) run on tokio's blocking pool, off the threads that serve
//! workers: the one way the gRPC service and the dashboard do it.

use crate::CoordinatorError;

/// Runs `f` on tokio's blocking pool; a panic in it is [`CoordinatorError::Crashed`], named by
/// `what`, in the caller's error type.
pub async fn blocking<T, E>(what: &'static str, f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<CoordinatorError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(CoordinatorError::Crashed(what, e.to_string()).into()))
}
