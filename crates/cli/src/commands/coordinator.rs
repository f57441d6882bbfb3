//! `kappa coordinator`: serves every submitted sweep to workers until Ctrl-C or SIGTERM.

use crate::args::{TokenArg, duration};
use crate::exit::{self, invalid};
use crate::logging::{self, LogArgs};
use crate::signal::interrupted;
use anyhow::{Context, anyhow};
use kappa_coordinator::{Access, Coordinator, CoordinatorConfig, ServeOptions, Server};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `kappa coordinator`.
#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", env = "KAPPA_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// State root: each submitted sweep keeps its store in DIR/NAME (NAME: the sweep name); a restarted
    /// coordinator reloads them all.
    #[arg(long, value_name = "DIR", env = "KAPPA_STATE", default_value = "runs")]
    state: PathBuf,
    /// How often workers renew their leases.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    heartbeat: Duration,
    /// Missed heartbeats after which a lease expires and its trial runs again.
    #[arg(long, value_name = "N", default_value_t = 3)]
    missed_heartbeats: u32,
    /// Also serve Prometheus metrics (GET /metrics) on this address.
    #[arg(long, value_name = "ADDR", env = "KAPPA_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Also serve the web dashboard on this address (e.g. 127.0.0.1:8080): progress, trials,
    /// curves and reports, live. With a token (--token-file or --tokens) it asks for one and
    /// offers cancel and retry where the holder may use them; without one it is read-only.
    #[arg(long, value_name = "ADDR", env = "KAPPA_UI_LISTEN")]
    ui_listen: Option<String>,
    /// PEM certificate to serve TLS with (clients then use https:// and --tls-ca).
    #[arg(long, value_name = "FILE", env = "KAPPA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "KAPPA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Tokens file: one `[[user]]` entry per person or worker node, each a name, the SHA-256 of
    /// its token and a role (read, submit, admin, worker), plus `commands = true` to submit
    /// command sweeps. Make entries with `kappa token new`. Reloaded on SIGHUP and when the file
    /// changes: a removed entry's token is refused from then on. Not with --token-file.
    #[arg(long, value_name = "FILE", env = "KAPPA_TOKENS")]
    tokens: Option<PathBuf>,
    #[command(flatten)]
    token: TokenArg,
    #[command(flatten)]
    log: LogArgs,
}

/// Who may call: the tokens file, the shared token, or anyone; with a warning to print.
fn access(args: &CoordinatorArgs) -> anyhow::Result<(Access, Option<String>)> {
    let Some(file) = &args.tokens else {
        return Ok(match args.token.token()? {
            Some(t) => (Access::shared(&t), None),
            None => (Access::open(), None),
        });
    };
    let env_token = std::env::var("KAPPA_TOKEN").is_ok_and(|t| !t.trim().is_empty());
    let shared = match (&args.token.token_file, env_token) {
        (Some(f), _) => Some(format!("--token-file {} (or KAPPA_TOKEN_FILE)", f.display())),
        (None, true) => Some("KAPPA_TOKEN".to_string()),
        (None, false) => None,
    };
    if let Some(shared) = shared {
        return Err(invalid(format!(
            "--tokens {} and {shared} both say who may call: give one (--tokens for a holder per person or node, \
             --token-file for one shared token)",
            file.display()
        )));
    }
    let (access, warning) = Access::from_file(file).map_err(|e| invalid(e.to_string()))?;
    if access.holders().is_empty() {
        logging::warning(&format!(
            "{} has no [[user]] entry: every call is refused until one is added (kappa token new)",
            file.display()
        ));
    }
    Ok((access, warning))
}

/// Longest a stopping coordinator waits for calls in flight (a worker's lease call waits up to
/// 30 s for work).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// `kappa coordinator`: serves until Ctrl-C or SIGTERM, then commits everything and exits.
pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<u8> {
    logging::init(&args.log)?;
    let (access, warning) = access(&args)?;
    // With a tokens file SIGHUP means "reload it": until its handler is installed (below, once
    // the runtime runs), it must not stop the process, e.g. while the sweeps are loading.
    #[cfg(unix)]
    if access.tokens_file().is_some() {
        // SAFETY: setting a signal's disposition to ignore, before any thread of ours starts.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
        }
    }
    if let Some(w) = warning {
        logging::warning(&w);
    }
    let access = Arc::new(access);
    let cfg = CoordinatorConfig {
        heartbeat_interval: args.heartbeat,
        lease_timeout: args.heartbeat * args.missed_heartbeats.max(1),
        ..CoordinatorConfig::default()
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let read = |f: &PathBuf| std::fs::read(f).map_err(|e| invalid(format!("cannot read {}: {e}", f.display())));
            Some(tonic::transport::Identity::from_pem(read(c)?, read(k)?))
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let coordinator = Arc::new(Coordinator::new(Some(args.state.clone()), cfg, kappa_worker::code_version));
    let loaded =
        coordinator.load_all().with_context(|| format!("cannot load the sweeps in {}", args.state.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // SIGHUP reloads the tokens file (only then: otherwise it stops the process, as usual),
        // from before the first line a supervisor waits for.
        #[cfg(unix)]
        if access.tokens_file().is_some() {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            let a = access.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    a.request_reload();
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| invalid(format!("cannot listen on {}: {e}", args.listen)))?;
        let server = Server::start(listener, coordinator.clone(), ServeOptions { access: access.clone(), tls }).await?;
        let addr = server.addr();
        // The first line a supervisor (or a test) can wait for.
        logging::out(
            &format!("kappa coordinator listening on {addr}, state in {} ({scheme})", args.state.display()),
            &[("addr", json!(addr.to_string())), ("state", json!(args.state.display().to_string())), ("tls", json!(scheme == "https"))],
        );
        for name in &loaded {
            logging::out(&format!("resumed sweep `{name}`"), &[("sweep", json!(name))]);
        }
        tracing::info!(%addr, state = %args.state.display(), tls = scheme == "https", sweeps = loaded.len(), "coordinator started");
        if !access.required() {
            logging::warning(&format!(
                "no token (--tokens, --token-file or KAPPA_TOKEN): any client that reaches {addr} is trusted"
            ));
        }
        if let Some(file) = access.tokens_file() {
            let holders: Vec<String> = access.holders().iter().map(|h| h.to_string()).collect();
            logging::out(
                &format!("tokens from {} ({} holders; SIGHUP or a change of the file reloads it)", file.display(), holders.len()),
                &[("tokens", json!(file.display().to_string())), ("holders", json!(holders))],
            );
        }
        if let Some(m) = &args.metrics_listen {
            let l =
                tokio::net::TcpListener::bind(m).await.map_err(|e| invalid(format!("cannot listen on {m}: {e}")))?;
            let url = format!("http://{}/metrics", l.local_addr()?);
            logging::out(&format!("metrics on {url}"), &[("url", json!(url))]);
            tokio::spawn(kappa_coordinator::metrics::serve_metrics(l, coordinator.clone(), std::future::pending()));
        }
        let ui = match &args.ui_listen {
            Some(addr) => {
                let ui = crate::ui::start(coordinator.clone(), addr, access.clone()).await?;
                logging::out(&format!("dashboard on {}", ui.url()), &[("url", json!(ui.url()))]);
                Some(ui)
            }
            None => None,
        };
        // Serve until Ctrl-C/SIGTERM, or until results stop being written (a full disk, say):
        // a coordinator that cannot record results must not keep handing out trials.
        let failure = tokio::select! {
            _ = interrupted() => None,
            f = server.write_failed() => {
                logging::error(&format!("writing results failed: {f}; stopping"));
                Some(f)
            }
        };
        tracing::info!("coordinator stopping");
        if let Some(ui) = ui {
            ui.stop(Duration::from_secs(2)).await;
        }
        let stopped = server.stop(STOP_GRACE).await;
        if let Some(f) = failure {
            return Err(anyhow!("writing results failed: {f} (fix it and start the coordinator again)"));
        }
        stopped.context("could not save every result")
    })?;
    logging::out("coordinator stopped; every result is saved", &[]);
    Ok(exit::OK)
}
