//! `kappa export`: every trial of the current plan as CSV or JSON lines (written by
//! `kappa_store::write_csv` / `write_jsonl`, which the dashboard's downloads share).

use crate::args::StateArg;
use crate::{exit, state};
use anyhow::Context;
use clap::ValueEnum;
use kappa_store::Store;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Output formats of `kappa export`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One row per trial; curves are left out (use jsonl for them).
    Csv,
    /// One JSON object per trial, with the full loss curve.
    Jsonl,
}

/// Arguments of `kappa export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    state: StateArg,
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn export(args: ExportArgs) -> anyhow::Result<u8> {
    let dir = state::resolve(&args.state)?;
    let store = Store::open(&dir)?;
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    match args.format {
        Format::Jsonl => kappa_store::write_jsonl(&store, &mut w)?,
        Format::Csv => kappa_store::write_csv(&store, &mut w)?,
    }
    w.flush()?;
    Ok(exit::OK)
}
