//! Starting the web dashboard beside a coordinator (`kappa coordinator --ui-listen`,
//! `kappa run --ui`).

use crate::exit::invalid;
use kappa_coordinator::{Access, Coordinator};
use kappa_ui::{Dashboard, UiServer};
use std::sync::Arc;

/// The address `kappa run --ui` serves on when none is named: loopback, a free port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:0";

/// Serves the dashboard of `coordinator` on `addr` (on the current tokio runtime) to whom
/// `access` lets in; the caller prints its URL. Without a token it is read-only, and a warning
/// says so when `addr` is not a loopback address.
pub async fn start(coordinator: Arc<Coordinator>, addr: &str, access: Arc<Access>) -> anyhow::Result<UiServer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| invalid(format!("the dashboard cannot listen on {addr}: {e}")))?;
    let open = !access.required();
    let server = UiServer::start(listener, Dashboard::new(coordinator, access))?;
    if open && !kappa_ui::is_loopback(&server.addr()) {
        crate::logging::warning(&format!(
            "the dashboard on {} has no token (--token-file): anyone who reaches it can read every sweep (it is \
             read-only)",
            server.addr()
        ));
    }
    Ok(server)
}
