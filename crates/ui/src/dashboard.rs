//! The dashboard of one coordinator: the state its handlers share.

use crate::auth::Auth;
use crate::live::Live;
use crate::reports::ReportCache;
use kappa_coordinator::{Access, Coordinator};
use std::sync::Arc;
use tokio::sync::watch;

/// The dashboard of one coordinator: what its handlers share.
pub struct Dashboard {
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) live: Arc<Live>,
    pub(crate) reports: ReportCache,
    /// Set when the server stops: event streams end, so a graceful stop does not wait on them.
    pub(crate) stopping: watch::Sender<bool>,
}

impl Dashboard {
    /// A dashboard of `coordinator`, open to whom `access` lets in (the coordinator's own). With
    /// a token, every data call needs one (a login cookie or a bearer header) of a holder that
    /// may read, and a holder that may submit cancels and retries its own sweeps (an admin any
    /// sweep); without one the dashboard is read-only.
    pub fn new(coordinator: Arc<Coordinator>, access: Arc<Access>) -> Dashboard {
        Dashboard {
            coordinator,
            auth: Arc::new(Auth::new(access)),
            live: Arc::new(Live::new()),
            reports: ReportCache::default(),
            stopping: watch::channel(false).0,
        }
    }
}
