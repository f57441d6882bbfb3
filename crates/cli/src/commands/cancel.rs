//! `kappa cancel`: a coordinator stops leasing a sweep and revokes its running trials.

use crate::args::CoordinatorArg;
use crate::client::{connect, runtime, status_error};
use crate::exit;
use kappa_proto::pb;

/// Arguments of `kappa cancel`.
#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The sweep (default: the most recently submitted; with a coordinator's tokens file, your
    /// own most recently submitted).
    #[arg(long)]
    sweep: Option<String>,
}

/// `kappa cancel`.
pub fn cancel(args: CancelArgs) -> anyhow::Result<u8> {
    runtime()?.block_on(async {
        let mut cl = connect(&args.coordinator).await?;
        let r = cl
            .cancel(pb::CancelRequest { sweep: args.sweep.clone().unwrap_or_default() })
            .await
            .map_err(status_error)?
            .into_inner();
        println!(
            "sweep `{}` cancelled: {} trials left unfinished (finished ones are kept; submit the sweep again to resume)",
            r.sweep, r.unfinished
        );
        Ok(exit::OK)
    })
}
