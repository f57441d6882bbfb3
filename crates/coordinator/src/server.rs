//! Hosting a [`Coordinator`] on a socket, once for `kappa run` and `kappa coordinator` (after
//! Ballista's standalone scheduler): serve the gRPC service behind its token check with its
//! health and reflection services, run the lease clock, reload the tokens file when asked or
//! changed, watch the stores for write failures, and on stop hand every lease back and commit
//! everything.

use crate::access::Access;
use crate::guard::Guarded;
use crate::service::{MAX_REQUEST_BYTES, Service};
use crate::{Coordinator, CoordinatorError};
use kappa_proto::pb::coordinator_server::CoordinatorServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

/// How a coordinator is served.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Who may call, and what each holder may do (default: open, any client is trusted).
    pub access: Arc<Access>,
    /// Serve TLS with this identity.
    pub tls: Option<tonic::transport::Identity>,
}

/// A coordinator being served. Stop it with [`Server::stop`].
pub struct Server {
    coordinator: Arc<Coordinator>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
    clock: JoinHandle<()>,
    tokens: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `coordinator` on `listener` until [`Server::stop`] (mini-redis style: the caller
    /// binds, so tests serve on `127.0.0.1:0`), and runs its lease clock.
    pub async fn start(
        listener: TcpListener,
        coordinator: Arc<Coordinator>,
        opts: ServeOptions,
    ) -> Result<Server, CoordinatorError> {
        let addr = listener.local_addr().map_err(CoordinatorError::Socket)?;
        let clock = {
            let c = coordinator.clone();
            let period = (c.config().lease_timeout / 4).max(Duration::from_millis(50));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    c.expire();
                }
            })
        };
        let tokens = opts.access.tokens_file().is_some().then(|| {
            let (c, a) = (coordinator.clone(), opts.access.clone());
            tokio::spawn(watch_tokens(c, a))
        });
        let svc = CoordinatorServer::new(Service { coordinator: coordinator.clone(), access: opts.access.clone() })
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(64 << 20);
        // The token and the role are checked on the request headers, before the body is read.
        let svc = Guarded { inner: svc, access: opts.access };
        // The standard health service (for probes) and reflection (for grpcurl), unauthenticated:
        // they reveal nothing about sweeps.
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<CoordinatorServer<Service>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kappa_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1();
        let mut builder = tonic::transport::Server::builder();
        if let Some(identity) = opts.tls {
            builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        let router = builder.add_service(svc).add_service(health);
        let router = match reflection {
            Ok(r) => router.add_service(r),
            Err(_) => router,
        };
        // Small request/response pairs must not wait for Nagle's algorithm (a 40 ms stall per round
        // trip against delayed ACKs): every accepted connection gets TCP_NODELAY.
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            conn.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        });
        let (stop, mut stopped) = watch::channel(false);
        let serving = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(Server { coordinator, addr, stop, serving, clock, tokens })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The coordinator served.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Resolves when a store stops accepting writes (a full disk, say), with the error: a
    /// coordinator that cannot record results must not keep handing out trials.
    pub async fn write_failed(&self) -> String {
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            check.tick().await;
            if let Some(f) = self.coordinator.write_failure() {
                return f;
            }
        }
    }

    /// Stops serving (waiting up to `grace` for calls in flight), hands every lease still held
    /// back to pending, commits everything queued and closes the stores.
    pub async fn stop(self, grace: Duration) -> Result<(), CoordinatorError> {
        let _ = self.stop.send(true);
        let mut serving = self.serving;
        let served = match tokio::time::timeout(grace, &mut serving).await {
            Ok(Ok(r)) => r.map_err(CoordinatorError::from),
            Ok(Err(_)) => Ok(()),
            // Calls still in flight after the grace period (a long Lease wait) are cut off.
            Err(_) => {
                serving.abort();
                Ok(())
            }
        };
        self.clock.abort();
        if let Some(t) = self.tokens {
            t.abort();
        }
        // Leases die with the server: their trials are pending again in the store.
        self.coordinator.release_all();
        let c = self.coordinator.clone();
        let closed = tokio::task::spawn_blocking(move || c.shutdown())
            .await
            .unwrap_or_else(|e| Err(CoordinatorError::WriteFailed(format!("closing the stores crashed: {e}"))));
        if let Err(e) = &closed {
            tracing::error!(error = %e, "not every result could be saved");
        }
        served.and(closed)
    }
}

/// How often the tokens file is looked at for a change.
const TOKENS_POLL: Duration = Duration::from_secs(1);

/// Reloads the tokens file when asked ([`Access::request_reload`], on SIGHUP) or when a change
/// on disk has settled (two polls in a row), and drops the workers whose tokens were revoked.
async fn watch_tokens(coordinator: Arc<Coordinator>, access: Arc<Access>) {
    let mut tick = tokio::time::interval(TOKENS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = access.reload_requested() => true,
            _ = tick.tick() => {
                let a = access.clone();
                if !tokio::task::spawn_blocking(move || a.changed_on_disk()).await.unwrap_or(false) {
                    continue;
                }
                false
            }
        };
        let a = access.clone();
        // Reading a file: off the async threads.
        let reloaded = tokio::task::spawn_blocking(move || a.reload(forced)).await;
        if matches!(reloaded, Ok(Ok(_))) {
            coordinator.drop_revoked_workers(&access);
        }
    }
}
