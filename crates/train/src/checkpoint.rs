//! A training trial's checkpoint in its directory: every replicate's state at one step (see
//! [`crate::run::run_train_with`]). Written to a temporary file, synced and renamed, so a
//! crash leaves the old checkpoint or the new one, never half of one.

use crate::run::{Probe, Replicate, ReplicateResult};
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

/// A replicate's part of a checkpoint: its state between steps and its record points so far.
impl Replicate<'_, '_> {
    /// Writes its state and its record points so far (see [`crate::checkpoint`]).
    pub(crate) fn save(&self, e: &mut kappa_sim::checkpoint::Encoder, out: &ReplicateResult) {
        use kappa_sim::checkpoint::Checkpoint;
        e.f64s(&self.params);
        self.opt.save(e);
        self.rng.save(e);
        self.probe_rng.save(e);
        match &self.sde_state {
            Some(st) => {
                e.u64(1);
                st.save(e);
            }
            None => e.u64(0),
        }
        e.u32s(&self.order);
        e.u64(self.cursor as u64);
        for v in [&out.train_loss, &out.test_loss, &out.train_accuracy, &out.test_accuracy] {
            e.f64s(v);
        }
        e.u64(out.probe.len() as u64);
        for p in &out.probe {
            let (tag, v) = match *p {
                Probe::TwoBatch { small, big, b, big_b } => (1, [small, big, b, big_b]),
                Probe::Exact { grad_sq, trace } => (2, [grad_sq, trace, 0.0, 0.0]),
                Probe::None => (0, [0.0; 4]),
            };
            e.u64(tag);
            for x in v {
                e.f64(x);
            }
        }
    }

    /// Reads what [`Replicate::save`] wrote: its state into this replicate (made for the same
    /// trial), its record points into `out`.
    pub(crate) fn restore(
        &mut self,
        d: &mut kappa_sim::checkpoint::Decoder<'_>,
        out: &mut ReplicateResult,
    ) -> Result<(), String> {
        use kappa_sim::checkpoint::Checkpoint;
        let params = d.f64s()?;
        if params.len() != self.params.len() {
            return Err(format!("{} parameters, the model has {}", params.len(), self.params.len()));
        }
        self.params = params;
        self.opt.restore(d)?;
        self.rng = kappa_sim::rng::StreamRng::load(d)?;
        self.probe_rng = kappa_sim::rng::StreamRng::load(d)?;
        self.sde_state = match d.u64()? {
            0 => None,
            _ => Some(kappa_sim::sde::SdeState::load(d)?),
        };
        let order = d.u32s()?;
        if order.len() != self.order.len() {
            return Err(format!("a data order of {} samples, the split has {}", order.len(), self.order.len()));
        }
        self.order = order;
        self.cursor = d.u64()? as usize;
        out.train_loss = d.f64s()?;
        out.test_loss = d.f64s()?;
        out.train_accuracy = d.f64s()?;
        out.test_accuracy = d.f64s()?;
        let n = d.u64()?;
        out.probe = (0..n)
            .map(|_| {
                let tag = d.u64()?;
                let v = [d.f64()?, d.f64()?, d.f64()?, d.f64()?];
                Ok(match tag {
                    1 => Probe::TwoBatch { small: v[0], big: v[1], b: v[2], big_b: v[3] },
                    2 => Probe::Exact { grad_sq: v[0], trace: v[1] },
                    _ => Probe::None,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(())
    }
}
