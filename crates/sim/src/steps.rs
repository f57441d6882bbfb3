//! The steps a trial takes and where it records: what simulation and native training both run
//! by (kappa-train reuses it).

use kappa_core::task::RecordEvery;

/// A trial's optimizer steps, its record points and its burn-in.
#[derive(Clone, Debug, PartialEq)]
pub struct Steps {
    /// Optimizer steps in all.
    pub total: u64,
    /// Steps at which the loss is recorded (0 and the last step included).
    pub record_steps: Vec<u64>,
    /// Steps up to and including this one are burn-in (a fraction of `total`, rounded down).
    pub burn_in_steps: u64,
}

impl Steps {
    /// `total` steps, recorded every `record_every`, the first `burn_in` of them burn-in.
    pub fn new(total: u64, record_every: RecordEvery, burn_in: f64) -> Steps {
        let every = record_every.interval(total);
        let mut record_steps: Vec<u64> = (0..=total).step_by(every as usize).collect();
        if record_steps.last() != Some(&total) {
            record_steps.push(total);
        }
        let burn_in_steps = ((total as f64) * burn_in).floor() as u64;
        Steps { total, record_steps, burn_in_steps }
    }

    /// The first steps of these, up to a rung of successive halving at `samples` samples seen
    /// (`batch` per step): they end at the last record point within it (the first one after
    /// step 0 if none is), so the rung's result is measured where the whole run records too and
    /// the curve is the whole run's up to there, point for point. `None` keeps every step.
    pub fn until(&self, samples: Option<u64>, batch: u64) -> Steps {
        let Some(samples) = samples else { return self.clone() };
        let within = samples / batch.max(1);
        let last = self
            .record_steps
            .iter()
            .copied()
            .rev()
            .find(|&s| s > 0 && s <= within)
            .or_else(|| self.record_steps.get(1).copied())
            .unwrap_or(self.total);
        Steps {
            total: last,
            record_steps: self.record_steps.iter().copied().filter(|&s| s <= last).collect(),
            burn_in_steps: self.burn_in_steps.min(last),
        }
    }
}
