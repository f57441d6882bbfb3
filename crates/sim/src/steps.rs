//! The trajectory a trial runs: its steps, where it records, and each step's learning rate —
//! what simulation (CPU and GPU) and native training both run by (kappa-train reuses it).

use kappa_core::task::{LrSchedule, RecordEvery};

/// Each step's learning rate: the trial's η times its schedule's multiplier at the fraction of
/// the sample budget seen before the step (THEORY.md §8).
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    /// The trial's η (the grid's `lr`).
    pub lr: f64,
    schedule: LrSchedule,
    /// B / N: the budget fraction one step sees.
    per_step: f64,
}

impl Rate {
    /// η at every step.
    pub fn constant(lr: f64) -> Rate {
        Rate { lr, schedule: LrSchedule::Constant, per_step: 0.0 }
    }

    /// η under `schedule`, for steps of `batch` samples out of a budget of `samples`.
    pub fn new(lr: f64, schedule: &LrSchedule, batch: u64, samples: u64) -> Rate {
        Rate { lr, schedule: schedule.clone(), per_step: batch as f64 / samples.max(1) as f64 }
    }

    /// Whether every step has the same rate.
    pub fn is_constant(&self) -> bool {
        self.schedule.is_constant()
    }

    /// The schedule.
    pub fn schedule(&self) -> &LrSchedule {
        &self.schedule
    }

    /// Under a schedule the loss is meant to keep moving through the averaging window: the
    /// settled check (is its second half the first's?) does not apply. Takes the outcome's
    /// drift away and says why; a constant rate leaves it as it is.
    pub fn unsettle(&self, outcome: &mut kappa_core::AttemptOutcome) {
        if self.is_constant() {
            return;
        }
        if let kappa_core::AttemptOutcome::Succeeded(m) = outcome {
            m.stationary_drift = None;
            m.notes.push(format!(
                "under the {} learning-rate schedule the stationary loss is the loss averaged over the window \
                 after the burn-in, which the schedule keeps moving: the settled check does not apply",
                self.schedule.kind_name()
            ));
        }
    }

    /// The multiplier of step `k` (the update from step k to k + 1; k = 0 is the first): exactly
    /// 1.0 without a schedule, so a constant rate computes the same bits as before schedules.
    #[inline(always)]
    pub fn scale(&self, k: u64) -> f64 {
        if self.is_constant() { 1.0 } else { self.schedule.factor(k as f64 * self.per_step) }
    }

    /// The learning rate of step `k`.
    #[inline(always)]
    pub fn at(&self, k: u64) -> f64 {
        self.lr * self.scale(k)
    }
}

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
