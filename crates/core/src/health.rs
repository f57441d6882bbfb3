//! What a finished run's loss curve says about the run itself: whether it trained at all
//! ([`Health`]), and, when its stationary loss was taken before the loss settled, what budget
//! would have let it settle ([`TrialMetrics::settle_factor`]).

use crate::trial::{SETTLED_REL, TrialMetrics};
use serde::{Deserialize, Serialize};

/// The loss grew by this factor over its start (two orders of magnitude) without overflowing:
/// the run is unstable, whatever it ends at.
pub const UNSTABLE_GROWTH: f64 = 100.0;

/// A rise during the averaging window counts as "rising at the end" from this fraction of the
/// run's start on.
pub const RISE: f64 = 0.01;

/// Whether a run that ended without overflowing trained. Diverged runs (the loss overflowed) are
/// a status of their own; these are finished runs that a table must not show as fine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The loss came down from where it started.
    Trained,
    /// It did not end below where it started (its stationary estimate, else its final loss, is
    /// not lower than its start by more than 2 SE), or its loss was rising during the averaging
    /// window. A run that starts at a minimum (loss 0) has nothing to come down from and is
    /// judged only by the rise.
    DidNotTrain,
    /// Its loss grew to [`UNSTABLE_GROWTH`] times its start or more, without overflowing (an
    /// overflow is a divergence).
    Unstable,
}

impl Health {
    /// The name in exports and the API (as it serialises).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Trained => "trained",
            Health::DidNotTrain => "did_not_train",
            Health::Unstable => "unstable",
        }
    }

    /// The name in tables and prose.
    pub fn label(self) -> &'static str {
        match self {
            Health::Trained => "trained",
            Health::DidNotTrain => "did not train",
            Health::Unstable => "unstable",
        }
    }

    /// The definition, in one line, for the foot of a table that counts it.
    pub fn definition(self) -> &'static str {
        match self {
            Health::Trained => "the loss came down from where it started",
            Health::DidNotTrain => {
                "did not train: did not end below its first recorded loss by more than 2 SE (stationary estimate, \
                 else final loss), or rising during the averaging window"
            }
            Health::Unstable => "unstable: the loss grew to 100× its start without overflowing",
        }
    }
}

impl TrialMetrics {
    /// Whether the run trained ([`Health`]), from its curve and stationary estimate. Its start
    /// is its first recorded loss (at step 0 for simulations and training; a command's first
    /// printed line may come after some training). A run that starts at a minimum (loss 0) is
    /// judged only by a rise during the averaging window. A run with fewer than two record points
    /// is taken as trained: there is nothing to judge it by.
    pub fn health(&self) -> Health {
        let finite: Vec<&crate::trial::CurvePoint> = self.curve.iter().filter(|p| p.loss_mean.is_finite()).collect();
        if finite.len() < 2 {
            return Health::Trained;
        }
        let (start, start_se) = (finite[0].loss_mean, finite[0].loss_se);
        // Rising: the window's halves differ beyond noise ([`TrialMetrics::settled`]), upwards, by
        // at least RISE of the start (a loss trained close to 0 that creeps up by a hair is not a
        // run going wrong); a run started at 0 is measured against its plateau instead.
        let scale = if start > 0.0 && start.is_finite() { start } else { self.stationary_loss.map_or(0.0, |e| e.mean) };
        let rising = self.settled() == Some(false)
            && self.stationary_drift.is_some_and(|d| d.mean > 0.0 && d.mean >= RISE * scale);
        if !(start > 0.0 && start.is_finite()) {
            return if rising { Health::DidNotTrain } else { Health::Trained };
        }
        if finite.iter().map(|p| p.loss_mean).fold(f64::NEG_INFINITY, f64::max) >= UNSTABLE_GROWTH * start {
            return Health::Unstable;
        }
        // The end: the stationary estimate, else the last point; not below the start beyond 2 SE.
        let last = finite[finite.len() - 1];
        let (end, end_se) = self.stationary_loss.map_or((last.loss_mean, last.loss_se), |e| (e.mean, e.se));
        let came_down = end < start - 2.0 * end_se.hypot(start_se);
        if !came_down || rising { Health::DidNotTrain } else { Health::Trained }
    }

    /// How many times this run's sample budget it would have taken for its stationary loss to
    /// settle ([`TrialMetrics::settled`]: the averaging window's halves within [`SETTLED_REL`])
    /// with the same `burn_in` fraction, from an exponential fitted to the curve's second half
    /// (L(s) = P + A·e^(−s/τ)). `None` when it settled, was not checked, or the fit cannot say
    /// (no such exponential, one that says it settled already, or beyond a thousand times).
    pub fn settle_factor(&self, burn_in: f64) -> Option<f64> {
        if self.settled()? {
            return None;
        }
        let budget = self.curve.last()?.samples as f64;
        let fit = Relaxation::fit(&self.curve, budget * 0.5)?;
        let settles = |n: f64| fit.relative_drift(burn_in * n, n) <= SETTLED_REL;
        if settles(budget) {
            return None;
        }
        let (mut lo, mut hi) = (budget, budget * 2.0);
        while !settles(hi) {
            (lo, hi) = (hi, hi * 2.0);
            if hi > 1000.0 * budget {
                return None;
            }
        }
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if settles(mid) { hi = mid } else { lo = mid }
        }
        Some(hi / budget)
    }

    /// The burn-in fraction at which this run's stationary loss would have settled within the same
    /// budget (at most 0.9, so the window keeps a tenth of the run); `None` as for
    /// [`TrialMetrics::settle_factor`], or when no burn-in up to 0.9 is enough.
    pub fn burn_in_to_settle(&self, burn_in: f64) -> Option<f64> {
        if self.settled()? {
            return None;
        }
        let budget = self.curve.last()?.samples as f64;
        let fit = Relaxation::fit(&self.curve, budget * 0.5)?;
        let b = (1..=18)
            .map(|k| k as f64 * 0.05)
            .find(|b| *b > burn_in && fit.relative_drift(b * budget, budget) <= SETTLED_REL)?;
        Some(b)
    }
}

/// Rounds a budget up to two significant digits (`123_456` → `130_000`).
pub fn round_up(x: f64) -> u64 {
    if x < 100.0 {
        return x.ceil() as u64;
    }
    let unit = 10f64.powf(x.log10().floor() - 1.0);
    ((x / unit).ceil() * unit) as u64
}

/// L(s) = P + A·e^(−s/τ): a loss relaxing to its plateau P.
#[derive(Clone, Copy, Debug)]
struct Relaxation {
    plateau: f64,
    amplitude: f64,
    tau: f64,
}

impl Relaxation {
    /// Least squares over the curve's points from `from` samples on: τ on a log grid refined by
    /// golden-section search, P and A linear for each τ. `None` with fewer than 6 points or
    /// without a positive plateau.
    fn fit(curve: &[crate::trial::CurvePoint], from: f64) -> Option<Relaxation> {
        let pts: Vec<(f64, f64)> = curve
            .iter()
            .filter(|p| p.samples as f64 >= from && p.loss_mean.is_finite())
            .map(|p| (p.samples as f64, p.loss_mean))
            .collect();
        if pts.len() < 6 {
            return None;
        }
        let span = pts.last()?.0;
        // τ from a hundredth of the span to a hundred spans, in log τ.
        let tau = |k: f64| span * 10f64.powf(-2.0 + 4.0 * k / 120.0);
        let sse = |k: f64| Self::linear(&pts, from, tau(k)).map_or(f64::INFINITY, |(e, _)| e);
        let k = (0..=120).map(f64::from).min_by(|a, b| sse(*a).total_cmp(&sse(*b)))?;
        let (mut lo, mut hi) = ((k - 1.0).max(0.0), (k + 1.0).min(120.0));
        let phi = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..60 {
            let (a, b) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
            if sse(a) < sse(b) { hi = b } else { lo = a }
        }
        let (_, fit) = Self::linear(&pts, from, tau(0.5 * (lo + hi)))?;
        Some(fit).filter(|f| f.plateau > 0.0 && f.amplitude.is_finite())
    }

    /// For one τ: P and A by least squares, and the sum of squared residuals.
    fn linear(pts: &[(f64, f64)], from: f64, tau: f64) -> Option<(f64, Relaxation)> {
        let xs: Vec<f64> = pts.iter().map(|(s, _)| (-(s - from) / tau).exp()).collect();
        let n = pts.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let a = xs.iter().zip(pts).map(|(x, p)| (x - mx) * (p.1 - my)).sum::<f64>() / sxx;
        let p = my - a * mx;
        let sse: f64 = xs.iter().zip(pts).map(|(x, q)| (p + a * x - q.1).powi(2)).sum();
        // The amplitude at s = 0 (the basis is shifted to `from`).
        Some((sse, Relaxation { plateau: p, amplitude: a * (from / tau).exp(), tau }))
    }

    /// |mean over the window's second half − mean over its first half| ÷ the window's mean, for the
    /// window [start, end].
    fn relative_drift(&self, start: f64, end: f64) -> f64 {
        let mid = 0.5 * (start + end);
        // Mean of A·e^(−s/τ) over [a, b].
        let excess =
            |a: f64, b: f64| self.amplitude * self.tau * ((-a / self.tau).exp() - (-b / self.tau).exp()) / (b - a);
        let (first, second) = (excess(start, mid), excess(mid, end));
        (second - first).abs() / (self.plateau + 0.5 * (first + second)).abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::{CurvePoint, Estimate};

    fn point(samples: u64, loss: f64) -> CurvePoint {
        CurvePoint::single(samples, samples, loss)
    }

    /// A run of `budget` samples recorded every 1%, its loss `f`, its stationary loss and drift
    /// measured over [burn_in · budget, budget] as the simulator does (halves of the window).
    fn run(budget: u64, burn_in: f64, f: impl Fn(f64) -> f64) -> TrialMetrics {
        let curve: Vec<CurvePoint> = (0..=100).map(|i| budget * i / 100).map(|s| point(s, f(s as f64))).collect();
        let window =
            |a: f64, b: f64| (0..1000).map(|k| f(a + (b - a) * (k as f64 + 0.5) / 1000.0)).sum::<f64>() / 1000.0;
        let (start, end) = (burn_in * budget as f64, budget as f64);
        let mid = 0.5 * (start + end);
        let (first, second) = (window(start, mid), window(mid, end));
        TrialMetrics {
            curve,
            stationary_loss: Some(Estimate { mean: 0.5 * (first + second), se: 1e-9 }),
            stationary_drift: Some(Estimate { mean: second - first, se: 1e-9 }),
            ..Default::default()
        }
    }

    #[test]
    fn a_loss_that_comes_down_trained_one_that_ends_higher_did_not_and_one_that_explodes_is_unstable() {
        let falling = run(10_000, 0.5, |s| 0.1 + (-s / 1000.0).exp());
        assert_eq!(falling.health(), Health::Trained);
        // Started at 1, ended on a plateau of 2: the noise floor is above where it started.
        let above = run(10_000, 0.5, |s| 2.0 - (-s / 1000.0).exp());
        assert_eq!(above.health(), Health::DidNotTrain);
        // Came down, then rose during the averaging window.
        let rising = run(10_000, 0.5, |s| 0.1 + (-s / 1000.0).exp() + s / 40_000.0);
        assert_eq!(rising.health(), Health::DidNotTrain);
        // 1 → 1.2e4 without overflowing: unstable (SGD at η·λ > 2 held at a large plateau).
        let exploding = run(10_000, 0.5, |s| (s / 1000.0).exp().min(1.2e4));
        assert_eq!(exploding.health(), Health::Unstable);
        // Started at the minimum (loss 0) and rose to its noise floor: nothing to train, and a
        // rise from 0 is no instability.
        let at_minimum = run(10_000, 0.5, |s| 0.01 * (1.0 - (-s / 1000.0).exp()));
        assert_eq!(at_minimum.health(), Health::Trained);
        // A loss that never moved (a command at chance level from its first printed line on) did
        // not train; its start is its first printed loss.
        let mut flat = run(10_000, 0.5, |s| 2.3 + 0.01 * (s * 0.37).sin());
        flat.curve.remove(0);
        assert_eq!(flat.health(), Health::DidNotTrain);
        // One that came down from its first printed line trained.
        let mut falling = run(10_000, 0.5, |s| 0.1 + (-s / 1000.0).exp());
        falling.curve.remove(0);
        assert_eq!(falling.health(), Health::Trained);
        // A loss trained close to 0 that creeps up by a hair at the end still trained.
        let creeping = run(10_000, 0.5, |s| 0.001 + (-s / 500.0).exp() + s * 1e-7);
        assert_eq!(creeping.settled(), Some(false));
        assert_eq!(creeping.health(), Health::Trained);
        // Down by less than its noise is not down.
        let mut noisy = run(10_000, 0.5, |s| if s == 0.0 { 1.0 } else { 0.999 });
        noisy.stationary_loss = Some(Estimate { mean: 0.999, se: 0.01 });
        assert_eq!(noisy.health(), Health::DidNotTrain);
        noisy.stationary_loss = Some(Estimate { mean: 0.9, se: 0.01 });
        assert_eq!(noisy.health(), Health::Trained);
        assert_eq!(TrialMetrics::default().health(), Health::Trained);
        // One record point: nothing to compare the end with.
        let one = TrialMetrics { curve: vec![point(1, 0.5)], ..Default::default() };
        assert_eq!(one.health(), Health::Trained);
    }

    #[test]
    fn an_unsettled_run_is_told_the_budget_and_the_burn_in_that_settle_it() {
        // τ = 4000 samples on a budget of 10,000: the window [5000, 10000] still falls by far more
        // than 5%.
        let f = |s: f64| 0.01 + (-s / 4000.0).exp();
        let m = run(10_000, 0.5, f);
        assert_eq!(m.settled(), Some(false));
        let n = (m.settle_factor(0.5).unwrap() * 10_000.0).ceil() as u64;
        // At the suggested budget the same run settles, and at 80% of it it does not.
        assert_eq!(run(n, 0.5, f).settled(), Some(true), "{n}");
        assert_eq!(run(n * 8 / 10, 0.5, f).settled(), Some(false), "{n}");
        // The same budget with a later window is not enough here: no burn-in up to 0.9 settles it.
        assert_eq!(m.burn_in_to_settle(0.5), None);
        // A run that is nearly there settles with a later window.
        let g = |s: f64| 0.2 + (-s / 1500.0).exp();
        let m = run(10_000, 0.3, g);
        assert_eq!(m.settled(), Some(false));
        let b = m.burn_in_to_settle(0.3).unwrap();
        assert_eq!(run(10_000, b, g).settled(), Some(true), "{b}");
        // Settled runs need nothing.
        assert_eq!(run(10_000, 0.5, |s| 0.1 + (-s / 100.0).exp()).settle_factor(0.5), None);
    }

    #[test]
    fn budgets_round_up_to_two_digits() {
        assert_eq!(round_up(123_456.0), 130_000);
        assert_eq!(round_up(99.2), 100);
        assert_eq!(round_up(30_000.0), 30_000);
    }
}
