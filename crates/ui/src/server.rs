//! Serving a [`Dashboard`]: the HTTP server and its sampler, started and stopped together.

use crate::{Dashboard, api, live};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
        let loopback_only = addr.ip().is_loopback() && !dashboard.auth.access.required();
        dashboard.auth.loopback_only.store(loopback_only, Ordering::Relaxed);
        let dashboard = Arc::new(dashboard);
        let sampler = tokio::spawn(live::sample(dashboard.coordinator.clone(), dashboard.live.clone()));
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
