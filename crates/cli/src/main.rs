//! The `kappa` command: plan, run and inspect optimizer sweeps.

mod bench;
mod bench_commands;
mod cluster;
mod export;
mod plan;
mod progress;
mod report;
mod run;
mod summary;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Every trial succeeded (or diverged: a divergence is a result).
    pub const OK: u8 = 0;
    /// An error stopped kappa (I/O, state database, network).
    pub const ERROR: u8 = 1;
    /// Invalid input: a bad command line, or a sweep file that cannot be read or is invalid.
    pub const INVALID_INPUT: u8 = 2;
    /// The sweep finished, but some trials failed on every attempt they were allowed.
    pub const TRIALS_FAILED: u8 = 3;
    /// `kappa report --check`: a rule's verdict differs from what the sweep expects.
    pub const CHECK_FAILED: u8 = 4;
    /// Interrupted (Ctrl-C or SIGTERM); run the same command again to resume.
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    every trial succeeded (diverged trials count as results)
  1    an error stopped kappa (I/O, state database, network)
  2    invalid input: bad arguments, or a sweep file that is missing, unreadable or invalid
  3    the sweep finished but some trials failed on every attempt
  4    kappa report --check: a scaling rule's verdict is not the one the sweep expects
  130  interrupted (Ctrl-C / SIGTERM): run the same command again to resume";

/// kappa: a sweep runner for optimizer research.
///
/// Expands a sweep file (a grid over optimizer, batch size, learning rate, β, ε, weight decay and
/// seeds) into trials, runs them on workers over gRPC, stores every result durably, and resumes
/// interrupted sweeps.
#[derive(Parser, Debug)]
#[command(name = "kappa", version, about, long_about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a sweep locally: a coordinator and N workers in this process, over real gRPC on 127.0.0.1.
    ///
    /// Results go to a SQLite store under the state directory (default runs/NAME, NAME being the sweep name). Running
    /// the same command again resumes: finished trials are reused, interrupted ones re-run, and
    /// trials added by an edited sweep file are planned and run.
    #[command(after_help = EXIT_CODES)]
    Run(run::RunArgs),
    /// Expand a sweep file and print the trial count per axis and the first trials, without running anything.
    #[command(after_help = EXIT_CODES)]
    Plan(plan::PlanArgs),
    /// Show how far a sweep got: trials by status, and failures.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// Write every trial with its parameters and metrics as CSV or JSON lines.
    #[command(after_help = EXIT_CODES)]
    Export(export::ExportArgs),
    /// Judge the sweep's scaling rules: verdict table, summary.json, PNG/SVG plots and report.html.
    #[command(after_help = EXIT_CODES)]
    Report(report::ReportArgs),
    /// Serve sweeps to workers over gRPC; each submitted sweep is stored under --state.
    #[command(after_help = EXIT_CODES)]
    Coordinator(cluster::CoordinatorArgs),
    /// Pull trials from a coordinator and run them, until Ctrl-C or SIGTERM.
    #[command(after_help = EXIT_CODES)]
    Worker(cluster::WorkerArgs),
    /// Hand a sweep file to a coordinator (again, after an edit, to add trials once it finished).
    #[command(after_help = EXIT_CODES)]
    Submit(cluster::SubmitArgs),
    /// Stop a sweep on a coordinator: nothing more is leased, running trials are revoked.
    #[command(after_help = EXIT_CODES)]
    Cancel(cluster::CancelArgs),
    /// Run failed trials again: `kappa retry --failed` (locally, or on a coordinator).
    #[command(after_help = EXIT_CODES)]
    Retry(cluster::RetryArgs),
    /// Follow a coordinator's progress on a sweep until it finishes.
    #[command(after_help = EXIT_CODES)]
    Watch(cluster::WatchArgs),
    /// Measure performance against a baseline run side by side (e.g. `kappa bench sim`).
    Bench(bench::BenchArgs),
}

/// Where a sweep's state lives.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArg {
    /// State directory of the sweep (default: the only sweep under ./runs).
    #[arg(long, value_name = "DIR", env = "KAPPA_STATE")]
    pub state: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    state: StateArg,
    /// Ask a running coordinator instead of reading a state directory (it wins over --state
    /// and KAPPA_STATE).
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    /// With --coordinator: the sweep (default: all of them).
    #[arg(long, requires = "coordinator")]
    sweep: Option<String>,
    #[command(flatten)]
    token: cluster::TokenArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Output formats of `kappa export`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One row per trial; curves are left out (use jsonl for them).
    Csv,
    /// One JSON object per trial, with the full loss curve.
    Jsonl,
}

/// An error caused by the user's input (exit code 2).
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// Wraps a message as an invalid-input error.
pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    InvalidInput(msg.into()).into()
}

fn main() -> ExitCode {
    // Behave like a Unix filter: `kappa export | head` ends quietly instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Plan(args) => plan::plan(args),
        Command::Status(args) => match &args.coordinator {
            Some(url) => cluster::status(
                &cluster::CoordinatorArg { coordinator: url.clone(), token: args.token.clone() },
                args.sweep.as_deref(),
                args.json,
            ),
            None => summary::status(&args.state, args.json),
        },
        Command::Coordinator(args) => cluster::coordinator(args),
        Command::Worker(args) => cluster::worker(args),
        Command::Submit(args) => cluster::submit(args),
        Command::Watch(args) => cluster::watch(args),
        Command::Retry(args) => cluster::retry(args),
        Command::Cancel(args) => cluster::cancel(args),
        Command::Export(args) => export::export(args),
        Command::Bench(args) => bench::bench(args),
        Command::Report(args) => report::report(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.chain().any(|c| c.is::<InvalidInput>()) { exit::INVALID_INPUT } else { exit::ERROR };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
