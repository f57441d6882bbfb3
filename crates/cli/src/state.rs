//! State directories: which one a command reads, and the lock that keeps two writers apart.

use crate::args::StateArg;
use crate::exit::invalid;
use kappa_store::Store;
use std::path::{Path, PathBuf};

/// The state directory a command should read: `--state`, or the only sweep under ./runs.
pub fn resolve(arg: &StateArg) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &arg.state {
        if dir.exists() && !dir.is_dir() {
            return Err(invalid(format!("--state {} is not a directory", dir.display())));
        }
        return Ok(dir.clone());
    }
    let runs = PathBuf::from("runs");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&runs) {
        for e in entries.flatten() {
            if Store::db_path(&e.path()).is_file() {
                found.push(e.path());
            }
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(invalid("no sweep found under ./runs: pass --state DIR (the directory `kappa run` wrote)")),
        _ => Err(invalid(format!(
            "several sweeps under ./runs ({}): pick one with --state DIR",
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Takes the exclusive lock of a state directory, so two processes never write one store.
pub fn lock(dir: &Path) -> anyhow::Result<kappa_store::StateLock> {
    Ok(kappa_store::StateLock::acquire(dir)?)
}
