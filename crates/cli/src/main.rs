//! The `kappa` command: plan, run and inspect optimizer sweeps.
//!
//! Module map: `commands/` (one module per subcommand), and what they share: `args` (flags used
//! by several commands), `state` (state-directory resolution and locking), `sweep_file`
//! (reading a sweep file), `client` (talking to a coordinator), `signal` (Ctrl-C / SIGTERM),
//! `logging` (tracing on stderr), `progress` (the live bar), `summary` (the table after a run),
//! `ui` (the web dashboard beside a coordinator), `exit` (exit codes).

mod args;
mod client;
mod commands;
mod exit;
mod logging;
mod progress;
mod signal;
mod state;
mod summary;
mod sweep_file;
mod ui;

use clap::{Parser, Subcommand};
use commands::*;
use std::process::ExitCode;

/// kappa: a sweep runner for optimizer research.
///
/// Expands a sweep file (a grid over optimizer, batch size, learning rate, β, ε, weight decay and
/// seeds) into trials, runs them on workers over gRPC, stores every result durably, and resumes
/// interrupted sweeps.
#[derive(Parser, Debug)]
#[command(name = "kappa", version, about, long_about, after_help = exit::HELP)]
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
    #[command(after_help = exit::HELP)]
    Run(run::RunArgs),
    /// Expand a sweep file and print the trial count per axis and the first trials, without running anything.
    #[command(after_help = exit::HELP)]
    Plan(plan::PlanArgs),
    /// Show how far a sweep got: trials by status, and failures.
    #[command(after_help = exit::HELP)]
    Status(status::StatusArgs),
    /// Write every trial with its parameters and metrics as CSV or JSON lines.
    #[command(after_help = exit::HELP)]
    Export(export::ExportArgs),
    /// Judge the sweep's scaling rules: verdict table, summary.json, PNG/SVG plots and report.html.
    #[command(after_help = exit::HELP)]
    Report(report::ReportArgs),
    /// Serve sweeps to workers over gRPC; each submitted sweep is stored under --state.
    #[command(after_help = exit::HELP)]
    Coordinator(coordinator::CoordinatorArgs),
    /// Pull trials from a coordinator and run them, until Ctrl-C or SIGTERM.
    #[command(after_help = exit::HELP)]
    Worker(worker::WorkerArgs),
    /// Hand a sweep file to a coordinator (again, after an edit, to add trials once it finished).
    #[command(after_help = exit::HELP)]
    Submit(submit::SubmitArgs),
    /// Stop a sweep on a coordinator: nothing more is leased, running trials are revoked.
    #[command(after_help = exit::HELP)]
    Cancel(cancel::CancelArgs),
    /// Run failed trials again: `kappa retry --failed` (locally, or on a coordinator).
    #[command(after_help = exit::HELP)]
    Retry(retry::RetryArgs),
    /// Follow a coordinator's progress on a sweep until it finishes.
    #[command(after_help = exit::HELP)]
    Watch(watch::WatchArgs),
    /// Measure performance against a baseline run side by side (e.g. `kappa bench sim`).
    Bench(bench::BenchArgs),
    /// Issue tokens for a coordinator's tokens file: `kappa token new NAME --role R --tokens FILE`.
    #[command(after_help = exit::HELP)]
    Token(token::TokenArgs),
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
        Command::Status(args) => status::status(args),
        Command::Coordinator(args) => coordinator::coordinator(args),
        Command::Worker(args) => worker::worker(args),
        Command::Submit(args) => submit::submit(args),
        Command::Watch(args) => watch::watch(args),
        Command::Retry(args) => retry::retry(args),
        Command::Cancel(args) => cancel::cancel(args),
        Command::Export(args) => export::export(args),
        Command::Token(args) => token::token(args),
        Command::Bench(args) => bench::bench(args),
        Command::Report(args) => report::report(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logging::error(&format!("{e:#}"));
            ExitCode::from(exit::of(&e))
        }
    }
}
