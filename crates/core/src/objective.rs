//! The objective a learning rate is judged by (`[analysis] objective`, `metric`, `target_loss`),
//! one definition for the report's best-learning-rate analysis and the bracketing search: the
//! seed mean of the metric at the last record point (`final`), of the stationary estimate
//! (`stationary`), or the samples until the seed-mean curve first reaches the target
//! (`samples_to_target`, interpolated between record points). A diverged trial is worse than any
//! finite value, and so is one that did not train or was unstable ([`crate::Health`]). Also the
//! best of (lr, objective) pairs (the argmin, refined by a parabola through its neighbours) and
//! the least-squares fits both read.

use crate::spec::{Analysis, AnalysisObjective};
use crate::{TrialResult, TrialStatus};

/// One finished trial, as the analysis reads it.
#[derive(Clone, Debug)]
pub struct Obs {
    /// The objective's value and SE (`+∞` diverged; `None` for samples-to-target).
    pub value: Option<(f64, f64)>,
    /// (samples, step, metric mean, SE, noise scale) per record point; the metric as objectives
    /// compare it, lower better (negated under `[analysis] mode = "max"`, [`Analysis::signed`]).
    pub curve: Vec<[f64; 5]>,
    /// Diverged, did not train or was unstable: worse than any finite objective.
    pub diverged: bool,
    /// Stopped at a rung of successive halving: read where it stopped, short of the budget the
    /// trials that ran it all are read at.
    pub stopped: bool,
}

impl Obs {
    /// A run that failed in any way: worse than any finite objective.
    pub fn failed() -> Obs {
        Obs { value: Some((f64::INFINITY, 0.0)), curve: Vec::new(), diverged: true, stopped: false }
    }
}

/// A curve point's value of `metric` (`loss`, or a metric recorded beside it) and its SE.
pub fn metric_point(p: &crate::CurvePoint, metric: &str) -> Option<(f64, f64)> {
    if metric == "loss" { Some((p.loss_mean, p.loss_se)) } else { p.extra.get(metric).map(|v| (*v, 0.0)) }
}

/// A finished trial as the objective reads it (`None`: nothing to read: failed, or no metric).
pub fn observe(r: &TrialResult, a: &Analysis) -> Option<Obs> {
    observe_parts(r.status, r.metrics.as_ref(), a)
}

/// [`observe`] of a trial that ended with `status` and `metrics`.
pub fn observe_parts(status: TrialStatus, metrics: Option<&crate::TrialMetrics>, a: &Analysis) -> Option<Obs> {
    let diverged = || Some(Obs::failed());
    match (status, metrics) {
        (TrialStatus::Diverged, _) => diverged(),
        // A run that did not train, or whose loss exploded short of overflowing, is no optimum.
        // A trial stopped at a rung of successive halving is read as far as it got.
        (TrialStatus::Succeeded | TrialStatus::Stopped, Some(m)) if m.health() != crate::Health::Trained => diverged(),
        (TrialStatus::Succeeded | TrialStatus::Stopped, Some(m)) => {
            let curve: Vec<[f64; 5]> = m
                .curve
                .iter()
                .filter_map(|p| {
                    // Lower is better from here on: a maximised metric is negated.
                    let (v, se) = metric_point(p, &a.metric)?;
                    let v = a.signed(v);
                    let ns = p.extra.get("noise_scale").copied().unwrap_or(f64::NAN);
                    Some([p.samples as f64, p.step as f64, v, se, ns])
                })
                .collect();
            let value = match a.objective {
                AnalysisObjective::Final => curve.last().map(|p| (p[2], p[3])),
                AnalysisObjective::Stationary => m.stationary_loss.map(|e| (e.mean, e.se)),
                AnalysisObjective::SamplesToTarget => None,
            };
            let usable = value.is_some() || (a.objective == AnalysisObjective::SamplesToTarget && !curve.is_empty());
            usable.then_some(Obs { value, curve, diverged: false, stopped: status == TrialStatus::Stopped })
        }
        _ => None,
    }
}

/// Where a curve first reaches its target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crossing {
    /// Samples and steps there, linearly interpolated between record points (what the
    /// samples-to-target objective compares learning rates by).
    pub samples: f64,
    /// Steps there.
    pub steps: f64,
    /// The gradient noise scale there (NaN: not recorded).
    pub noise_scale: f64,
    /// Within the first record interval (or at the first point of a curve that does not start
    /// at step 0), the (samples, steps) of that record point: an upper bound, all that is known.
    pub bound: Option<(f64, f64)>,
}

/// The first (samples, step) at which a curve of (samples, step, mean, ...) reaches `target`,
/// linearly interpolated between record points, and the noise scale there. Within the first
/// record interval nothing tells where: the record point is given, as a bound.
pub fn crossing(curve: &[[f64; 5]], target: f64) -> Option<Crossing> {
    let j = curve.iter().position(|p| p[2] <= target)?;
    if j == 0 {
        // Met at the start (step 0: nothing to bound), or by the first record point.
        let p = curve[0];
        return Some(Crossing {
            samples: p[0],
            steps: p[1],
            noise_scale: p[4],
            bound: (p[1] > 0.0).then_some((p[0], p[1])),
        });
    }
    let (a, b) = (curve[j - 1], curve[j]);
    let w = if b[2] == a[2] { 1.0 } else { (target - a[2]) / (b[2] - a[2]) };
    Some(Crossing {
        samples: a[0] + w * (b[0] - a[0]),
        steps: a[1] + w * (b[1] - a[1]),
        noise_scale: a[4] + w * (b[4] - a[4]),
        bound: (j == 1 && a[1] == 0.0).then_some((b[0], b[1])),
    })
}

/// The seed-mean curve of `obs` (each moved by `shift[i]` of its SE), over the points all share.
pub fn mean_curve(obs: &[&Obs], shift: &[f64]) -> Vec<[f64; 5]> {
    let n = obs.iter().map(|o| o.curve.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let k = obs.len() as f64;
            let m = obs.iter().zip(shift).map(|(o, z)| o.curve[i][2] + z * o.curve[i][3]).sum::<f64>() / k;
            // The noise scale over the seeds that have one here (a probe may give none at a point).
            let scales: Vec<f64> = obs.iter().map(|o| o.curve[i][4]).filter(|v| v.is_finite()).collect();
            let ns = if scales.is_empty() { f64::NAN } else { scales.iter().sum::<f64>() / scales.len() as f64 };
            let c = obs[0].curve[i];
            [c[0], c[1], m, 0.0, ns]
        })
        .collect()
}

/// What a search decides by: [`observe_parts`], and a result the objective cannot read (failed,
/// or without the metric) as a failure.
pub fn observe_or_failed(status: TrialStatus, metrics: Option<&crate::TrialMetrics>, a: &Analysis) -> Obs {
    observe_parts(status, metrics, a).unwrap_or_else(Obs::failed)
}

/// The objective of one setting's seeds `obs`, as they are (no resampling), and its SE; an
/// objective that comes out undefined (NaN) counts as a failure (`+∞`).
pub fn seed_mean(obs: &[&Obs], a: &Analysis) -> (f64, f64) {
    let (y, se) = objective(obs, &vec![0.0; obs.len()], a);
    (if y.is_nan() { f64::INFINITY } else { y }, se)
}

/// A cell's objective from the seeds `obs` (resampled, shifted by `shift` SEs), and its SE.
pub fn objective(obs: &[&Obs], shift: &[f64], a: &Analysis) -> (f64, f64) {
    if obs.iter().any(|o| o.diverged) {
        return (f64::INFINITY, 0.0);
    }
    let k = obs.len() as f64;
    match a.objective {
        AnalysisObjective::SamplesToTarget => {
            let target = a.signed(a.target_loss.unwrap_or(0.0));
            (crossing(&mean_curve(obs, shift), target).map_or(f64::INFINITY, |c| c.samples), 0.0)
        }
        _ => {
            let vals: Vec<(f64, f64)> = obs.iter().filter_map(|o| o.value).collect();
            let mean = vals.iter().zip(shift).map(|((v, se), z)| v + z * se).sum::<f64>() / k;
            // The SE shown: the seeds' spread or their paths' noise, whichever is larger.
            let seeds: Vec<crate::Estimate> = vals.iter().map(|&(mean, se)| crate::Estimate { mean, se }).collect();
            (mean, crate::Estimate::pooled(&seeds).map_or(0.0, |e| e.se))
        }
    }
}

/// Where a best learning rate lies among the grid's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Between two learning rates that trained: refined by the parabola through the three.
    Inside,
    /// The grid's first or last learning rate: the optimum may lie beyond.
    Grid,
    /// Next to a learning rate that diverged, did not train or was unstable: the optimum is
    /// limited by stability, not by noise, and no parabola is drawn through the cliff.
    Stability,
}

/// The best learning rate of (lr, objective) pairs (lr ascending; a diverged, untrained or
/// unstable trial's objective is +∞): the refined minimum and where it lies ([`Edge`]).
pub fn best_lr(points: &[(f64, f64)]) -> Option<(f64, Edge)> {
    let (i, &(lr, y)) =
        points.iter().enumerate().filter(|(_, p)| p.1.is_finite()).min_by(|a, b| a.1.1.total_cmp(&b.1.1))?;
    if i == 0 || i + 1 == points.len() {
        return Some((lr, if points.len() > 1 { Edge::Grid } else { Edge::Inside }));
    }
    let (l, r) = (points[i - 1], points[i + 1]);
    if !(l.1.is_finite() && r.1.is_finite()) {
        return Some((lr, Edge::Stability));
    }
    // The parabola goes through the logs of the metric's own values: positive ones, or a
    // maximised metric's (negated here, `Analysis::signed`), whose vertex is then its maximum.
    let sign = if l.1 > 0.0 && y > 0.0 && r.1 > 0.0 {
        1.0
    } else if l.1 < 0.0 && y < 0.0 && r.1 < 0.0 {
        -1.0
    } else {
        return Some((lr, Edge::Inside));
    };
    let (x0, x1, x2) = (l.0.ln(), lr.ln(), r.0.ln());
    let (y0, y1, y2) = ((sign * l.1).ln(), (sign * y).ln(), (sign * r.1).ln());
    let num = (x1 - x0).powi(2) * (y1 - y2) - (x1 - x2).powi(2) * (y1 - y0);
    let den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0);
    if den == 0.0 || !num.is_finite() {
        return Some((lr, Edge::Inside));
    }
    let vertex = (x1 - 0.5 * num / den).clamp(x0, x2);
    Some((vertex.exp(), Edge::Inside))
}

/// [`best_lr`] of a sweep whose learning rates did not all run the whole budget (successive
/// halving: `stopped[i]` says the i-th stopped at a rung). Only the ones that ran it all are
/// compared; no parabola is drawn through a stopped neighbour (its objective is read at a
/// smaller budget), and a stopped neighbour is no stability edge.
pub fn best_finished_lr(points: &[(f64, f64)], stopped: &[bool]) -> Option<(f64, Edge)> {
    if !stopped.iter().any(|s| *s) {
        return best_lr(points);
    }
    let finished: Vec<(f64, f64)> =
        points.iter().zip(stopped).map(|(&(lr, y), &s)| (lr, if s { f64::INFINITY } else { y })).collect();
    let (lr, edge) = best_lr(&finished)?;
    let i = finished.iter().position(|p| p.0 == lr);
    match (edge, i) {
        (Edge::Stability, Some(i)) => {
            // A neighbour that really failed is an edge; one that only stopped is not.
            let failed = |j: usize| points.get(j).is_some_and(|p| !p.1.is_finite());
            let edge = if (i > 0 && failed(i - 1)) || failed(i + 1) { Edge::Stability } else { Edge::Inside };
            Some((lr, edge))
        }
        _ => Some((lr, edge)),
    }
}

/// Least squares y = a + b x: (a, b); `None` with fewer than two distinct x.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    weighted_fit(&points.iter().map(|&(x, y)| (x, y, 1.0)).collect::<Vec<_>>())
}

/// Least-squares slope of log y on log x.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0).map(|(x, y)| (x.ln(), y.ln())).collect();
    linear_fit(&pts).map(|(_, slope)| slope)
}

/// Weighted least squares y = a + b x over (x, y, weight).
pub fn weighted_fit(points: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    let w: f64 = points.iter().map(|p| p.2).sum();
    if points.len() < 2 || w <= 0.0 {
        return None;
    }
    let mx = points.iter().map(|p| p.2 * p.0).sum::<f64>() / w;
    let my = points.iter().map(|p| p.2 * p.1).sum::<f64>() / w;
    let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let b = points.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    Some((my - b * mx, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_lr_of_a_parabola_is_its_vertex_and_an_edge_minimum_is_flagged() {
        // log y = (log lr − log 3e-3)² + 1: the vertex is at 3e-3 exactly.
        let lrs = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2];
        let y = |lr: f64| ((lr / 3e-3f64).ln().powi(2) + 1.0).exp();
        let pts: Vec<(f64, f64)> = lrs.iter().map(|&l| (l, y(l))).collect();
        let (best, edge) = best_lr(&pts).unwrap();
        assert!((best / 3e-3 - 1.0).abs() < 1e-9 && edge == Edge::Inside, "{best}");
        // Falling all the way: the minimum is the last lr, flagged, not extrapolated.
        let falling: Vec<(f64, f64)> = lrs.iter().map(|&l| (l, 1.0 / l)).collect();
        assert_eq!(best_lr(&falling), Some((1.6e-2, Edge::Grid)));
        // A diverged (or untrained, or unstable) neighbour: the grid's argmin as is, at the
        // stability edge, never a parabola through the cliff.
        let mut div = pts.clone();
        div[3].1 = f64::INFINITY;
        assert_eq!(best_lr(&div), Some((4e-3, Edge::Stability)));
        // A maximised metric (negated, as `Analysis::signed` gives it): log acc = −(log lr − log
        // 3e-3)² − 0.1, its vertex the maximum at 3e-3.
        let acc: Vec<(f64, f64)> = lrs.iter().map(|&l| (l, -(-(l / 3e-3f64).ln().powi(2) - 0.1).exp())).collect();
        let (best, edge) = best_lr(&acc).unwrap();
        assert!((best / 3e-3 - 1.0).abs() < 1e-9 && edge == Edge::Inside, "{best}");
    }

    #[test]
    fn slopes() {
        let pts: Vec<(f64, f64)> = [1.0, 0.5, 0.25].iter().map(|&s: &f64| (s, 3.0 * s * s)).collect();
        assert!((log_log_slope(&pts).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(log_log_slope(&pts[..1]), None);
    }

    #[test]
    fn a_crossing_is_interpolated_and_an_unreached_target_is_none() {
        let curve = [[0.0, 0.0, 1.0, 0.0, 5.0], [100.0, 10.0, 0.5, 0.0, 7.0], [200.0, 20.0, 0.1, 0.0, 9.0]];
        let c = crossing(&curve, 0.3).unwrap();
        assert!(
            (c.samples - 150.0).abs() < 1e-9 && (c.steps - 15.0).abs() < 1e-9 && (c.noise_scale - 8.0).abs() < 1e-9
        );
        assert_eq!(c.bound, None);
        assert_eq!(crossing(&curve, 0.05), None);
        // Reached between the start and the first record point: that point is the bound shown,
        // never a fraction of a record interval (the interpolation only orders learning rates).
        let c = crossing(&curve, 0.7).unwrap();
        assert!((c.samples - 60.0).abs() < 1e-9 && c.bound == Some((100.0, 10.0)), "{c:?}");
        // Met at the start: zero steps, nothing to bound.
        assert_eq!(crossing(&curve, 1.5).map(|c| (c.steps, c.bound)), Some((0.0, None)));
    }

    #[test]
    fn a_seed_without_a_noise_scale_at_a_point_does_not_hide_the_others() {
        let obs =
            |ns: f64| Obs { value: None, curve: vec![[10.0, 1.0, 0.5, 0.0, ns]], diverged: false, stopped: false };
        let (a, b) = (obs(20.0), obs(f64::NAN));
        assert_eq!(mean_curve(&[&a, &b], &[0.0, 0.0])[0][4], 20.0);
        assert!(mean_curve(&[&b, &b], &[0.0, 0.0])[0][4].is_nan());
    }
}
