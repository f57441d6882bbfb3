//! `kappa retry --failed`: failed trials run again, with a fresh failure budget.

use crate::args::SourceArg;
use crate::client::{connect, runtime, status_error};
use crate::{exit, state};
use kappa_proto::pb;

/// Arguments of `kappa retry`.
#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    /// Put the failed trials back to pending, with a fresh failure budget (required: it is the
    /// only kind of retry there is).
    #[arg(long, required = true)]
    failed: bool,
    #[command(flatten)]
    source: SourceArg,
}

/// `kappa retry --failed`: locally for the next `kappa run`, on a coordinator at once.
pub fn retry(args: RetryArgs) -> anyhow::Result<u8> {
    let _ = args.failed;
    if let Some(c) = args.source.coordinator() {
        return runtime()?.block_on(async {
            let mut cl = connect(&c).await?;
            let r = cl
                .retry_failed(pb::RetryFailedRequest { sweep: args.source.sweep.clone().unwrap_or_default() })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("sweep `{}`: {} failed trials will run again", r.sweep, r.requeued);
            Ok(exit::OK)
        });
    }
    let dir = state::resolve(&args.source.state)?;
    let _lock = state::lock(&dir)?;
    let mut store = kappa_store::Store::open(&dir)?;
    let n = store.reset_failed()?;
    println!("{n} failed trials will run again on the next `kappa run` of this sweep (state {})", dir.display());
    Ok(exit::OK)
}
