//! `kappa submit`: validates a sweep file here, then hands it to a coordinator.

use crate::args::CoordinatorArg;
use crate::client::{connect, runtime, status_error};
use crate::commands::watch::follow_to_end;
use crate::exit;
use crate::sweep_file;
use kappa_proto::pb;
use std::path::PathBuf;

/// Arguments of `kappa submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// Follow progress until the sweep finishes.
    #[arg(long)]
    watch: bool,
    /// Plan the sweep afresh with the coordinator's code when it was planned with other code (a
    /// simulator or trainer version): every trial runs again. Without it the sweep keeps its
    /// ids and its trials wait for workers that compute with the code it was planned with.
    #[arg(long)]
    rerun_on_new_version: bool,
}

/// `kappa submit`: validates the file here (for its error messages), then hands it to the coordinator.
pub fn submit(args: SubmitArgs) -> anyhow::Result<u8> {
    let (sweep, text) = sweep_file::load(&args.file)?;
    runtime()?.block_on(async {
        let mut c = connect(&args.coordinator).await?;
        let r = c
            .submit(pb::SubmitRequest {
                spec: text,
                file_name: args.file.display().to_string(),
                rerun_on_new_version: args.rerun_on_new_version,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        println!(
            "submitted sweep `{}`: {} trials ({} new, {} finished earlier and reused)",
            r.sweep, r.total, r.new_trials, r.reused
        );
        for w in r.warning.lines().filter(|w| !w.is_empty()) {
            eprintln!("warning: {w}");
        }
        if args.watch {
            return follow_to_end(&args.coordinator, &sweep.name).await;
        }
        Ok(exit::OK)
    })
}
