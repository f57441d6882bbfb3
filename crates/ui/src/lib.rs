//! kappa-ui: the live web dashboard, served by the processes that already run (`kappa coordinator
//! --ui-listen`, `kappa run --ui`) on the same tokio runtime as the gRPC service.
//!
//! It is a reader: it takes progress and workers from the [`Coordinator`]'s memory and pages of
//! trials, trial details, reports and exports from each sweep's store through a connection of its
//! own (on tokio's blocking pool, so the scheduler never waits on it). The browser never receives
//! a whole sweep: the server pages, filters, sorts and aggregates. Live updates go out as
//! server-sent events from one sampler task, at most once a second.
//!
//! Module map: `api` (the JSON API under `/api/`), `error` (its errors, classified by the
//! coordinator's `ErrorCode` like the gRPC service's), `auth` (the token: login cookie or bearer
//! header, the guard every request passes, the session calls), `reports` (reports built from
//! the store and cached), `live` (the sampler: rates, ETAs and the event stream), `assets` (the
//! page, its script and style, and the vendored uPlot, embedded in the binary).

#![warn(missing_docs)]

mod api;
mod assets;
mod auth;
mod error;
mod live;
mod reports;

use kappa_coordinator::Coordinator;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::SESSION_COOKIE;

/// The dashboard of one coordinator: what its handlers share.
pub struct Dashboard {
    coordinator: Arc<Coordinator>,
    auth: auth::TokenCheck,
    live: live::Live,
    reports: reports::ReportCache,
    /// Set when the server stops: event streams end, so a graceful stop does not wait on them.
    stopping: watch::Sender<bool>,
    /// Served on loopback without a token: only requests addressed to localhost or an IP are
    /// answered, so a web page whose name was rebound to 127.0.0.1 cannot read the sweeps.
    loopback_only: bool,
}

impl Dashboard {
    /// A dashboard of `coordinator`. With a `token`, every data call needs it (a login cookie
    /// or a bearer header) and an authenticated session may cancel and retry; without one the
    /// dashboard is read-only.
    pub fn new(coordinator: Arc<Coordinator>, token: Option<&str>) -> Dashboard {
        Dashboard {
            coordinator,
            auth: auth::TokenCheck::new(token),
            live: live::Live::new(),
            reports: reports::ReportCache::default(),
            stopping: watch::channel(false).0,
            loopback_only: false,
        }
    }
}

/// The dashboard being served. Stop it with [`UiServer::stop`].
pub struct UiServer {
    addr: SocketAddr,
    dashboard: Arc<Dashboard>,
    serving: JoinHandle<std::io::Result<()>>,
    sampler: JoinHandle<()>,
}

impl UiServer {
    /// Serves `dashboard` on `listener` (the caller binds, so tests serve on `127.0.0.1:0`) and
    /// starts its sampler.
    pub fn start(listener: TcpListener, dashboard: Dashboard) -> std::io::Result<UiServer> {
        let addr = listener.local_addr()?;
        let mut dashboard = dashboard;
        dashboard.loopback_only = addr.ip().is_loopback() && !dashboard.auth.required();
        let dashboard = Arc::new(dashboard);
        let sampler = tokio::spawn(live::sample(dashboard.clone()));
        let app = api::router(dashboard.clone());
        let mut stopped = dashboard.stopping.subscribe();
        let serving = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(UiServer { addr, dashboard, serving, sampler })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open (`http://ADDR/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops serving: event streams end, requests in flight get up to `grace` to finish.
    pub async fn stop(self, grace: std::time::Duration) {
        let _ = self.dashboard.stopping.send(true);
        self.sampler.abort();
        let mut serving = self.serving;
        if tokio::time::timeout(grace, &mut serving).await.is_err() {
            serving.abort();
        }
    }
}

/// Whether `addr` (`HOST:PORT`) names a loopback address only: what a dashboard without a
/// token may listen on unless the user names another address explicitly.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
