//! Trials, their lifecycle status and the metrics they produce.

use crate::id::TrialId;
use crate::params::Params;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One planned trial: its id, its position in the plan and its hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTrial {
    /// Content id.
    pub id: TrialId,
    /// Index of the grid point (plan order).
    pub seq: u64,
    /// The parameters.
    pub params: Params,
    /// For a trial derived by a scaling rule: (rule index, κ). `None` for a base point.
    pub variant: Option<(usize, u64)>,
    /// Which of the sweep's tasks it runs (an index into [`crate::Sweep::variants`]).
    pub task: usize,
    /// Where it comes from (recorded with it).
    pub origin: crate::origin::Origin,
}

impl PlannedTrial {
    /// Its setting, as a key: its parameters but the seed, and its task (the trials of one
    /// setting are its seeds; searches judge them together).
    pub fn setting_key(&self) -> String {
        let mut p = self.params.clone();
        p.hyper.seed = 0;
        format!("{}#{}", p.identity(), self.task)
    }
}

/// A trial's result as far as it got: what kappa status, export and report read, from the store
/// or over the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialResult {
    /// Content id.
    pub id: TrialId,
    /// The parameters.
    pub params: Params,
    /// Where it stands.
    pub status: TrialStatus,
    /// Metrics of the counted attempt (succeeded and diverged trials).
    pub metrics: Option<TrialMetrics>,
    /// The last failure message, if any.
    pub error: Option<String>,
    /// Where it comes from (`None`: a grid point, or a store made before origins were
    /// recorded, whose scaled trials the plan of its sweep text names).
    pub origin: Option<crate::origin::Origin>,
}

impl TrialResult {
    /// Whether a succeeded trial trained ([`crate::Health`]); `None` for any other status (an
    /// overflow is a status of its own) and without metrics.
    pub fn health(&self) -> Option<crate::Health> {
        match self.status {
            TrialStatus::Succeeded => self.metrics.as_ref().map(TrialMetrics::health),
            _ => None,
        }
    }
}

/// How far a sweep is: what the coordinator publishes and the Watch stream carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The sweep's name.
    pub sweep: String,
    /// Trials by status.
    pub counts: Counts,
    /// Trials finished in an earlier run and reused.
    pub reused: u64,
    /// Registered workers.
    pub workers: u32,
    /// Every trial is finished.
    pub finished: bool,
    /// Cancelled: nothing more is leased until the sweep is submitted again.
    pub cancelled: bool,
    /// A search's sweep: the most trials it can run (`counts.total` is the trials it proposed
    /// so far). `None`: the plan is fixed.
    pub at_most: Option<u64>,
    /// Successive halving: each rung's budget and how many trials have finished it (empty for
    /// other sweeps).
    pub rungs: Vec<RungCount>,
    /// Who submitted it (`None`: nobody recorded, without a tokens file).
    pub owner: Option<String>,
}

/// One rung of successive halving as progress shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RungCount {
    /// Its budget in samples seen.
    pub samples: u64,
    /// Trials that have finished it (a trial that went on to the next rung counts in both).
    pub reached: u64,
}

/// How an attempt ended without a report: its lease ended. The attempt log records every such
/// attempt as `lost`, with this as the reason; only an expired lease is a failed attempt (of
/// class `lost`, with its own retries and counted in the failure budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Not renewed in time: the worker died, hung or was cut off.
    Expired,
    /// Its worker left before reporting (it stopped, or was told to).
    WorkerLeft,
    /// The sweep was cancelled.
    Cancelled,
    /// The coordinator stopped (the attempt runs again when it is back).
    Stopped,
    /// The process that held the lease is gone and left it open (found on resume).
    Abandoned,
    /// Its worker's token was revoked: the worker is refused from then on.
    Revoked,
}

impl LeaseEnd {
    /// Whether this end is a failed attempt of class `lost`.
    pub fn is_failure(self) -> bool {
        self == LeaseEnd::Expired
    }

    /// Why, in words, as the attempt log keeps it.
    pub fn reason(self) -> &'static str {
        match self {
            LeaseEnd::Expired => "its lease expired: the worker died, hung or was cut off",
            LeaseEnd::WorkerLeft => "handed back: its worker left",
            LeaseEnd::Cancelled => "handed back: the sweep was cancelled",
            LeaseEnd::Stopped => "handed back: the coordinator stopped",
            LeaseEnd::Abandoned => "abandoned: the process that ran it stopped",
            LeaseEnd::Revoked => "handed back: its worker's token was revoked",
        }
    }
}

/// Where a trial stands. `Succeeded`, `Failed` and `Diverged` are terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Waiting for a worker.
    Pending,
    /// Leased to a worker.
    Running,
    /// Finished with metrics.
    Succeeded,
    /// Failed on every attempt it was allowed.
    Failed,
    /// The loss overflowed: a result, not an error (it is never retried).
    Diverged,
    /// Successive halving stopped it at a rung: its result is what it reached there (a later
    /// promotion may take it on from there).
    Stopped,
}

impl TrialStatus {
    /// Every status.
    pub const ALL: [TrialStatus; 6] = [
        TrialStatus::Pending,
        TrialStatus::Running,
        TrialStatus::Succeeded,
        TrialStatus::Failed,
        TrialStatus::Diverged,
        TrialStatus::Stopped,
    ];

    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Succeeded => "succeeded",
            TrialStatus::Failed => "failed",
            TrialStatus::Diverged => "diverged",
            TrialStatus::Stopped => "stopped",
        }
    }

    /// Whether the trial is finished (for good, or stopped at a rung of successive halving
    /// until a promotion takes it on).
    pub fn is_terminal(self) -> bool {
        matches!(self, TrialStatus::Succeeded | TrialStatus::Failed | TrialStatus::Diverged | TrialStatus::Stopped)
    }

    /// Whether the trial has a result of its own to read (succeeded, diverged, or stopped at a
    /// rung with what it reached).
    pub fn has_result(self) -> bool {
        matches!(self, TrialStatus::Succeeded | TrialStatus::Diverged | TrialStatus::Stopped)
    }
}

impl fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error for an unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trial status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for TrialStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrialStatus::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// A mean with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The mean.
    pub mean: f64,
    /// Its standard error.
    pub se: f64,
}

impl Estimate {
    /// Mean and standard error of the mean of samples (Welford, in iteration order; SE 0 for
    /// fewer than two samples, NaN mean for none).
    pub fn of_samples(values: impl Iterator<Item = f64>) -> Estimate {
        let (mut n, mut mean, mut m2) = (0u64, 0.0f64, 0.0f64);
        for v in values {
            n += 1;
            let delta = v - mean;
            mean += delta / n as f64;
            m2 += delta * (v - mean);
        }
        let se = if n > 1 { (m2 / (n - 1) as f64 / n as f64).sqrt() } else { 0.0 };
        Estimate { mean: if n > 0 { mean } else { f64::NAN }, se }
    }

    /// How a series moved across it: the mean of its second half minus the mean of its first
    /// half, with the SE of that difference from each half's spread. `None` for fewer than four
    /// values (two per half).
    pub fn drift_of(series: &[f64]) -> Option<Estimate> {
        if series.len() < 4 {
            return None;
        }
        let (first, second) = series.split_at(series.len() / 2);
        let (a, b) = (Estimate::of_samples(first.iter().copied()), Estimate::of_samples(second.iter().copied()));
        Some(Estimate { mean: b.mean - a.mean, se: a.se.hypot(b.se) })
    }

    /// The mean of replicate estimates (one per seed), with the SE of that mean: the larger of
    /// the SE from the replicates' spread (sd of their means / √n, which holds their path noise
    /// too; n ≥ 2) and the SE from their own SEs (√Σse² / n). So replicates of single-path trials
    /// (commands: SE 0 each) get their seeds' spread, and two seeds that happen to agree still
    /// carry their paths' noise. `None` for no replicate.
    pub fn pooled(replicates: &[Estimate]) -> Option<Estimate> {
        if replicates.is_empty() {
            return None;
        }
        let n = replicates.len() as f64;
        let mean = replicates.iter().map(|e| e.mean).sum::<f64>() / n;
        let within = replicates.iter().map(|e| e.se * e.se).sum::<f64>().sqrt() / n;
        let between = if replicates.len() > 1 {
            (replicates.iter().map(|e| (e.mean - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
        } else {
            0.0
        };
        Some(Estimate { mean, se: within.max(between) })
    }
}

#[cfg(test)]
mod estimate_tests {
    use super::Estimate;

    #[test]
    fn pooled_replicates_carry_their_seeds_spread_and_their_paths_noise() {
        let e = |mean, se| Estimate { mean, se };
        // Two single-path trials (SE 0 each): the SE is their spread's, not 0.
        let p = Estimate::pooled(&[e(1.08e-4, 0.0), e(7.9e-5, 0.0)]).unwrap();
        assert!((p.mean - 9.35e-5).abs() < 1e-12);
        assert!((p.se - 1.45e-5).abs() < 1e-12, "{p:?}");
        // Two agreeing seeds still carry their paths' noise.
        let q = Estimate::pooled(&[e(1.0, 0.1), e(1.0, 0.1)]).unwrap();
        assert!((q.se - 0.1 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(Estimate::pooled(&[e(2.0, 0.3)]), Some(e(2.0, 0.3)));
        assert_eq!(Estimate::pooled(&[]), None);
    }

    #[test]
    fn drift_compares_the_halves_of_a_series() {
        let flat = Estimate::drift_of(&[1.0, 1.2, 0.8, 1.1, 0.9, 1.0]).unwrap();
        assert!(flat.mean.abs() < 0.1 && flat.se > 0.05, "{flat:?}");
        let falling = Estimate::drift_of(&[4.0, 3.9, 2.0, 1.9]).unwrap();
        assert!((falling.mean + 2.0).abs() < 1e-12 && (falling.se - 0.05_f64.hypot(0.05)).abs() < 1e-12);
        assert_eq!(Estimate::drift_of(&[1.0, 2.0, 3.0]), None);
        let e = Estimate::of_samples([1.0, 2.0, 3.0].into_iter());
        assert_eq!(e.mean, 2.0);
        assert!((e.se - (1.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!(Estimate::of_samples(std::iter::empty()).mean.is_nan());
    }

    #[test]
    fn settled_means_the_halves_agree_within_their_noise_or_within_a_few_percent() {
        let e = |mean, se| Estimate { mean, se };
        let m = |stationary: Estimate, drift: Option<Estimate>| super::TrialMetrics {
            stationary_loss: Some(stationary),
            stationary_drift: drift,
            ..Default::default()
        };
        // Noise: a difference of 2 SE is no evidence of a trend.
        assert_eq!(m(e(1.0, 0.01), Some(e(-0.2, 0.1))).settled(), Some(true));
        // A real but small trend (1% of the loss) still settled.
        assert_eq!(m(e(1.0, 0.001), Some(e(-0.01, 0.0001))).settled(), Some(true));
        // The quickstart's case: still falling by far more than its noise and a few percent.
        assert_eq!(m(e(2.6e-2, 1e-4), Some(e(-1.5e-2, 2e-4))).settled(), Some(false));
        assert_eq!(m(e(1.0, 0.01), None).settled(), None);
        assert_eq!(super::TrialMetrics::default().settled(), None);
    }
}

/// One recorded point of a loss curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Samples seen so far (steps × batch size).
    pub samples: u64,
    /// Optimizer steps so far.
    pub step: u64,
    /// Mean loss over paths.
    pub loss_mean: f64,
    /// Standard error of that mean.
    pub loss_se: f64,
    /// 10% quantile of the loss over paths.
    #[serde(default)]
    pub loss_q10: f64,
    /// Median of the loss over paths.
    #[serde(default)]
    pub loss_q50: f64,
    /// 90% quantile of the loss over paths.
    #[serde(default)]
    pub loss_q90: f64,
    /// SignSGD only: fractions of (path, coordinate) pairs in each phase of THEORY.md §3, by the
    /// signal-to-noise ratio |Y| = |∇f_i|/(√2 σ_i): `[|Y| > 3/2, 1 ≤ |Y| ≤ 3/2, |Y| < 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<[f64; 3]>,
    /// Further metrics at this point by name (training: `test_loss`, `test_accuracy`,
    /// `train_accuracy`; command tasks: every other numeric key of the metrics line).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, f64>,
}

impl CurvePoint {
    /// A point of one loss value with no spread (a single path, a command's printed line): SE 0
    /// and every quantile the loss itself, no phases, no further metrics.
    pub fn single(samples: u64, step: u64, loss: f64) -> CurvePoint {
        CurvePoint {
            samples,
            step,
            loss_mean: loss,
            loss_se: 0.0,
            loss_q10: loss,
            loss_q50: loss,
            loss_q90: loss,
            phases: None,
            extra: Default::default(),
        }
    }
}

/// What a successful trial reports. New fields are added, never renamed.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct TrialMetrics {
    /// Loss against samples seen.
    pub curve: Vec<CurvePoint>,
    /// Time average of the loss after the burn-in, averaged over paths; SE from per-path averages.
    /// `None` where no finite stationary loss exists (then `notes` says why).
    pub stationary_loss: Option<Estimate>,
    /// How the loss moved during that averaging window: the mean over the window's second half
    /// minus the mean over its first half, per path (or per replicate), then pooled over paths
    /// ([`Estimate::pooled`]; a single-path trial's SE comes from its record points' spread).
    /// With `stationary_loss` it says whether the loss had settled ([`TrialMetrics::settled`]).
    /// `None` where it was not measured (results from before kappa measured it, GPU runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stationary_drift: Option<Estimate>,
    /// What THEORY.md §4 predicts for this trial, where it has a closed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theory: Option<Theory>,
    /// Remarks about the result a reader needs (e.g. "no finite stationary loss").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The step this attempt continued from (its checkpoint's), when it did not start at step 0:
    /// the curve still runs from step 0, the attempt computed only the steps after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
}

/// A drift beyond this many standard errors is a trend, not noise.
pub const SETTLED_Z: f64 = 3.0;
/// A trend of at most this fraction of the stationary loss (between the halves of the window)
/// still counts as settled: it moves the average by less than that.
pub const SETTLED_REL: f64 = 0.05;

impl TrialMetrics {
    /// Whether the loss had settled during the averaging window, so that `stationary_loss` is a
    /// stationary value and not a point on the way down (or up): the window's two halves agree
    /// within [`SETTLED_Z`] standard errors of their difference, or within [`SETTLED_REL`] of the
    /// loss. `None` when there is no stationary loss or its drift was not measured.
    pub fn settled(&self) -> Option<bool> {
        let (s, d) = (self.stationary_loss?, self.stationary_drift?);
        Some(d.mean.abs() <= SETTLED_Z * d.se || d.mean.abs() <= SETTLED_REL * s.mean.abs())
    }

    /// Why the stationary loss is not a stationary value, in words (`None` when settled or not
    /// checked).
    pub fn unsettled_note(&self) -> Option<String> {
        if self.settled()? {
            return None;
        }
        let (s, d) = (self.stationary_loss?, self.stationary_drift?);
        Some(format!(
            "the loss {} by {:.0}% between the halves of the averaging window ({:.2e} ± {:.1e}); \
             raise the budget or burn_in",
            if d.mean < 0.0 { "still fell" } else { "rose" },
            100.0 * d.mean.abs() / s.mean.abs(),
            d.mean,
            d.se
        ))
    }
}

/// Closed-form predictions (THEORY.md §4).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Theory {
    /// Predicted stationary loss, where a closed form exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stationary_loss: Option<f64>,
    /// Predicted loss curve at the recorded steps (SignSGD phase-3 transient, Gaussian noise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<TheoryPoint>,
}

/// One point of a predicted curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TheoryPoint {
    /// Samples seen.
    pub samples: u64,
    /// Optimizer steps.
    pub step: u64,
    /// Predicted mean loss.
    pub loss: f64,
}

/// How one attempt ended, as a worker reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// Metrics were produced.
    Succeeded(TrialMetrics),
    /// The loss overflowed at `step`.
    Diverged {
        /// The step at which the loss stopped being finite.
        step: u64,
        /// Metrics recorded up to that point.
        metrics: TrialMetrics,
    },
    /// The attempt failed (error, crash, timeout); it may be retried.
    Failed {
        /// Why, in words.
        error: String,
        /// Which kind of failure: each class has its own retry allowance.
        class: FailureClass,
    },
    /// The worker was draining (SIGTERM: an allocation's time limit, an eviction) and handed the
    /// attempt back unfinished. Not a failure: it never consumes the trial's retries nor the
    /// sweep's failure budget; the trial runs again (from its checkpoint, if it keeps one).
    Preempted {
        /// What happened, in words.
        reason: String,
    },
}

/// Why an attempt failed. Each class has its own retry allowance ([`RetryPolicy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// The task itself reported an error (invalid settings, a command's non-zero exit status).
    Error,
    /// The task crashed: a panic in native code, or a command killed by a signal.
    Crash,
    /// The attempt ran past the sweep's timeout and was stopped.
    Timeout,
    /// The worker stopped renewing the lease (died, hung, cut off) and it expired.
    Lost,
}

impl FailureClass {
    /// Every class, in the order of [`RetryPolicy`]'s fields.
    pub const ALL: [FailureClass; 4] =
        [FailureClass::Error, FailureClass::Crash, FailureClass::Timeout, FailureClass::Lost];

    /// The name stored, sent and written in sweep files.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Error => "error",
            FailureClass::Crash => "crash",
            FailureClass::Timeout => "timeout",
            FailureClass::Lost => "lost",
        }
    }

    /// Position in [`FailureClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for FailureClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown failure class `{s}` (expected one of: error, crash, timeout, lost)"))
    }
}

/// A trial's failed attempts so far, by class: what its retries (per class), its retry backoff
/// and the sweep's failure budget are counted against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts([u32; 4]);

impl FailureCounts {
    /// Counts by class, one per [`FailureClass`] in the order of [`FailureClass::ALL`].
    pub fn new(error: u32, crash: u32, timeout: u32, lost: u32) -> FailureCounts {
        FailureCounts([error, crash, timeout, lost])
    }

    /// Failed attempts of `class`.
    pub fn of(&self, class: FailureClass) -> u32 {
        self.0[class.index()]
    }

    /// Counts one more failed attempt of `class`; returns how many of that class there are now.
    pub fn add(&mut self, class: FailureClass) -> u32 {
        self.0[class.index()] += 1;
        self.0[class.index()]
    }

    /// The failed attempts the trial ran to an end (every class but lost leases): what its
    /// retry backoff doubles with.
    pub fn ran(&self) -> u32 {
        [FailureClass::Error, FailureClass::Crash, FailureClass::Timeout].into_iter().map(|c| self.of(c)).sum()
    }
}

/// Retries allowed per failure class: a trial fails for good on its `n + 1`-th failure of a class
/// allowing `n` retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// After task errors.
    pub error: u32,
    /// After crashes.
    pub crash: u32,
    /// After timeouts.
    pub timeout: u32,
    /// After lost leases.
    pub lost: u32,
}

impl RetryPolicy {
    /// Retries of `class`.
    pub fn of(&self, class: FailureClass) -> u32 {
        match class {
            FailureClass::Error => self.error,
            FailureClass::Crash => self.crash,
            FailureClass::Timeout => self.timeout,
            FailureClass::Lost => self.lost,
        }
    }

    /// The same number of retries for errors, crashes and timeouts (`retries = N` in a sweep
    /// file); lost leases keep their default.
    pub fn uniform(n: u32) -> RetryPolicy {
        RetryPolicy { error: n, crash: n, timeout: n, ..RetryPolicy::default() }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { error: 2, crash: 2, timeout: 2, lost: 4 }
    }
}

impl AttemptOutcome {
    /// The failure class of a failed attempt.
    pub fn failure_class(&self) -> Option<FailureClass> {
        match self {
            AttemptOutcome::Failed { class, .. } => Some(*class),
            _ => None,
        }
    }

    /// The status this outcome gives the trial when it is final.
    pub fn status(&self) -> TrialStatus {
        match self {
            AttemptOutcome::Succeeded(_) => TrialStatus::Succeeded,
            AttemptOutcome::Diverged { .. } => TrialStatus::Diverged,
            AttemptOutcome::Failed { .. } => TrialStatus::Failed,
            AttemptOutcome::Preempted { .. } => TrialStatus::Pending,
        }
    }
}

/// Counts of trials by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// All trials of the plan.
    pub total: u64,
    /// Waiting.
    pub pending: u64,
    /// Leased.
    pub running: u64,
    /// Finished with metrics.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Diverged.
    pub diverged: u64,
    /// Of the succeeded ones, those that did not train ([`crate::Health::DidNotTrain`]).
    #[serde(default)]
    pub did_not_train: u64,
    /// Stopped at a rung by successive halving.
    #[serde(default)]
    pub stopped: u64,
    /// Of the succeeded ones, those whose loss exploded short of overflowing
    /// ([`crate::Health::Unstable`]).
    #[serde(default)]
    pub unstable: u64,
}

impl Counts {
    /// Counts `n` succeeded trials of health `h` among the ones that did not train or were
    /// unstable (trained ones need no count of their own).
    pub fn add_health(&mut self, h: crate::Health, n: u64) {
        match h {
            crate::Health::Trained => {}
            crate::Health::DidNotTrain => self.did_not_train += n,
            crate::Health::Unstable => self.unstable += n,
        }
    }

    /// What follows the succeeded count in one-line summaries: ` (2 of them did not train, 1
    /// unstable)`, empty when every succeeded trial trained.
    pub fn unhealthy_note(&self) -> String {
        if self.did_not_train + self.unstable == 0 {
            return String::new();
        }
        format!(" ({} of them did not train, {} unstable)", self.did_not_train, self.unstable)
    }

    /// The definitions of the kinds of untrained trials counted here, one line each, for the foot
    /// of a table that counts them.
    pub fn health_definitions(&self) -> Vec<&'static str> {
        [(crate::Health::DidNotTrain, self.did_not_train), (crate::Health::Unstable, self.unstable)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(h, _)| h.definition())
            .collect()
    }

    /// Trials that reached a terminal status.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.diverged + self.stopped
    }

    /// Adds one trial of `status`.
    pub fn add(&mut self, status: TrialStatus, n: u64) {
        self.total += n;
        *self.slot(status) += n;
    }

    /// Moves one trial from `from` to `to`.
    pub fn shift(&mut self, from: TrialStatus, to: TrialStatus) {
        *self.slot(from) -= 1;
        *self.slot(to) += 1;
    }

    fn slot(&mut self, status: TrialStatus) -> &mut u64 {
        match status {
            TrialStatus::Pending => &mut self.pending,
            TrialStatus::Running => &mut self.running,
            TrialStatus::Succeeded => &mut self.succeeded,
            TrialStatus::Failed => &mut self.failed,
            TrialStatus::Diverged => &mut self.diverged,
            TrialStatus::Stopped => &mut self.stopped,
        }
    }
}
