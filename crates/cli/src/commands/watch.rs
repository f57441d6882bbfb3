//! `kappa watch`: a coordinator's live progress on a sweep until it finishes.

use crate::args::CoordinatorArg;
use crate::client::{connect, runtime, status_error};
use crate::exit;
use kappa_core::Progress;
use kappa_proto::pb;
use tokio::sync::watch;

/// Arguments of `kappa watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The sweep (default: the most recently submitted).
    #[arg(long)]
    sweep: Option<String>,
}

/// `kappa watch`: live progress from the coordinator's stream until the sweep finishes.
pub fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    runtime()?.block_on(follow_to_end(&args.coordinator, args.sweep.as_deref().unwrap_or("")))
}

/// Follows `sweep` (empty: the latest) to its end; the exit code says how it ended.
pub async fn follow_to_end(c: &CoordinatorArg, sweep: &str) -> anyhow::Result<u8> {
    // Fail early with a clear error if the coordinator is not there or refuses us.
    let mut cl = connect(c).await?;
    let p = cl.status(pb::StatusRequest { sweep: sweep.to_string() }).await.map_err(status_error)?.into_inner();
    let (_tx, rx) = watch::channel(false);
    crate::progress::follow(c.coordinator.clone(), c.token.token()?, c.token.ca()?, sweep.to_string(), rx).await;
    let mut cl = connect(c).await?;
    let p = cl
        .status(pb::StatusRequest { sweep: p.progress.map(|p| p.sweep).unwrap_or_default() })
        .await
        .map_err(status_error)?
        .into_inner();
    let p = p.progress.map(Progress::from);
    Ok(match p {
        Some(p) if p.finished && p.counts.failed > 0 => exit::TRIALS_FAILED,
        Some(p) if p.finished => exit::OK,
        _ => exit::INTERRUPTED,
    })
}
