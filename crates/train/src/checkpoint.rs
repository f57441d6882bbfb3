//! A training trial's checkpoint in its directory: every replicate's state at one step (see
//! [`crate::run::run_train_with`]). Written to a temporary file, synced and renamed, so a
//! crash leaves the old checkpoint or the new one, never half of one.

use kappa_core::TrialId;
use kappa_sim::checkpoint::{Decoder, Encoder};
use std::io::Write;
use std::path::Path;

/// What a checkpoint file starts with (its format's version is part of it).
const MAGIC: &[u8] = b"kappa-train checkpoint 1\n";

/// A checkpoint read back.
pub(crate) struct Saved {
    /// The step every replicate reached.
    pub(crate) step: u64,
    /// Each replicate's state, as it saved it.
    pub(crate) replicates: Vec<Vec<u8>>,
}

/// Reads `file` (`Ok(None)`: there is none), checking that it is trial `id`'s with `full`
/// steps in all and `paths` replicates.
pub(crate) fn read(file: &Path, id: TrialId, full: u64, paths: u32) -> Result<Option<Saved>, String> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let body =
        bytes.strip_prefix(MAGIC).ok_or_else(|| format!("{} is not a kappa-train checkpoint", file.display()))?;
    let mut d = Decoder::new(body);
    let (trial, total, step, n) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
    if trial != id.0 || total != full || n != u64::from(paths) {
        return Err(format!(
            "{} is another run's (trial {}, {total} steps, {n} replicates; this is trial {id}, {full} steps, {paths})",
            file.display(),
            TrialId(trial)
        ));
    }
    let replicates = (0..n).map(|_| d.bytes().map(<[u8]>::to_vec)).collect::<Result<Vec<_>, _>>()?;
    if !d.is_empty() {
        return Err(format!("{} has bytes after its last replicate", file.display()));
    }
    Ok(Some(Saved { step, replicates }))
}

/// Writes trial `id`'s checkpoint at `step` (of `full`) to `file`.
pub(crate) fn write(file: &Path, id: TrialId, full: u64, step: u64, replicates: &[Vec<u8>]) -> Result<(), String> {
    let mut e = Encoder::new();
    e.u64(id.0);
    e.u64(full);
    e.u64(step);
    e.u64(replicates.len() as u64);
    for r in replicates {
        e.bytes(r);
    }
    // A name of this writer's own: an attempt whose lease expired may still be writing beside
    // the one that took over (on a shared trial root, from another node).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = file.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&e.into_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        // The rename itself durable too.
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", file.display())
    })
}
