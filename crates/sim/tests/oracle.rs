//! THEORY.md §6 oracle numbers (T1–T5), plus determinism, divergence and edge cases.
//!
//! Setup of §6: d = 4, λ = (0.5, 1, 2, 4), x₀ = 0, Gaussian σ_i = σ. `E f` is the time average after
//! burn-in, averaged over paths, with its SE from per-path averages. Each check requires the SE to be
//! small against the tolerance, so a pass means the simulator is right, not merely noisy.
//!
//! `KAPPA_TEST_BACKEND=cuda` runs every check on the GPU backend (same tolerances: the backends
//! agree statistically, not bitwise); unset or `cpu`, on the CPU.

use kappa_core::task::{Backend, Eigenvalues, LandscapeSpec, NoiseSpec, RecordEvery, SdeModel, Sigma, SimTask};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId, TrialMetrics};
use kappa_sim::{Cancel, run_trial};

const LAMBDA: [f64; 4] = [0.5, 1.0, 2.0, 4.0];

fn sim(sigma: f64, steps: u64, paths: u32, burn_in: f64) -> SimTask {
    SimTask {
        landscape: LandscapeSpec::Quadratic { eigenvalues: Eigenvalues::List(LAMBDA.to_vec()), rotation_seed: None },
        noise: NoiseSpec::Gaussian { sigma: Sigma::Scalar(sigma) },
        x0: 0.0,
        paths,
        samples: steps,
        record_every: RecordEvery::Percent(10.0),
        burn_in,
        bias_correction: true,
        refine: 1,
        sde_model: SdeModel::Compagnoni,
        backend: test_backend(),
        lr_schedule: Default::default(),
    }
}

/// The backend under test: `KAPPA_TEST_BACKEND` (`cpu` when unset).
fn test_backend() -> Backend {
    match std::env::var("KAPPA_TEST_BACKEND") {
        Err(_) => Backend::Cpu,
        Ok(b) => b.parse().unwrap_or_else(|e| panic!("KAPPA_TEST_BACKEND: {e}")),
    }
}

fn params(optimizer: OptimizerKind, lr: f64) -> Hyperparams {
    Hyperparams { optimizer, batch_size: 1, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, seed: 7 }
}

fn metrics(task: &TaskSpec, p: &Hyperparams) -> TrialMetrics {
    match run_trial(task, p, TrialId(42), &Cancel::new()).unwrap() {
        AttemptOutcome::Succeeded(m) => m,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn stationary(task: &TaskSpec, p: &Hyperparams) -> (f64, f64) {
    let e = metrics(task, p).stationary_loss.expect("a stationary loss");
    (e.mean, e.se)
}

/// `|mean − oracle| ≤ tol·oracle`, with an SE small enough (≤ tol/2) for that to mean something.
fn assert_within(name: &str, (mean, se): (f64, f64), oracle: f64, tol: f64) {
    let rel = (mean - oracle) / oracle;
    eprintln!("{name}: {mean:.5e} ± {se:.1e} vs {oracle:.5e} ({:+.2}%, {:.2} SE)", rel * 100.0, (mean - oracle) / se);
    assert!(se <= tol * oracle / 2.0, "{name}: SE {se:e} too large to test a {tol} tolerance");
    assert!(rel.abs() <= tol, "{name}: {mean:e} is {:.2}% from {oracle:e}", rel * 100.0);
}

/// T1: SGD, σ = 1, η = 0.01: discrete 0.0100951 (0.5%); SDE by EM with Δ ≪ η: 0.0100000 (0.5%).
#[test]
fn t1_sgd_discrete_and_sde() {
    let p = params(OptimizerKind::Sgd, 0.01);
    let est = stationary(&TaskSpec::Optimizer(sim(1.0, 40_000, 320, 0.05)), &p);
    assert_within("T1 SGD discrete", est, 0.0100951, 0.005);
    let mut s = sim(1.0, 25_000, 400, 0.05);
    s.refine = 8;
    let est = stationary(&TaskSpec::Sde(s), &p);
    assert_within("T1 SGD SDE (Δ = η/8)", est, 0.0100000, 0.005);
    let m = metrics(&TaskSpec::Optimizer(sim(1.0, 1000, 4, 0.5)), &p);
    let theory = m.theory.and_then(|t| t.stationary_loss).unwrap();
    assert!((theory - 0.0100951).abs() < 1e-7, "discrete closed form {theory}");
}

/// T2: SignSGD, σ = 1, η = 1e-3: discrete MC 0.00125446 (0.5%); the formula 0.00125238.
#[test]
fn t2_signsgd_discrete() {
    let p = params(OptimizerKind::SignSgd, 1e-3);
    let m = metrics(&TaskSpec::Optimizer(sim(1.0, 200_000, 512, 0.1)), &p);
    let e = m.stationary_loss.unwrap();
    assert_within("T2 SignSGD", (e.mean, e.se), 0.00125446, 0.005);
    let theory = m.theory.unwrap();
    assert!((theory.stationary_loss.unwrap() - 0.00125238).abs() < 1e-8, "{theory:?}");
    // The phase-3 transient formula is part of the theory for Gaussian noise.
    assert_eq!(theory.curve.len(), m.curve.len());
    let phases = m.curve.last().unwrap().phases.expect("SignSGD records phases");
    assert!((phases.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(phases[2] > 0.9, "near the minimum almost everything is in phase 3: {phases:?}");
}

/// T3: doubling σ (1 → 2) at η = 0.01: stationary SGD ×4, SignSGD ×2, RMSprop ×2 (slope 2, 1, 1 ± 0.05).
#[test]
fn t3_noise_scaling_slopes() {
    let cases = [
        (OptimizerKind::Sgd, 2.0, 20_000),
        (OptimizerKind::SignSgd, 1.0, 40_000),
        (OptimizerKind::Rmsprop, 1.0, 40_000),
    ];
    for (opt, slope, steps) in cases {
        let mut p = params(opt, 0.01);
        p.beta2 = 0.99;
        let (lo, se_lo) = stationary(&TaskSpec::Optimizer(sim(1.0, steps, 64, 0.2)), &p);
        let (hi, se_hi) = stationary(&TaskSpec::Optimizer(sim(2.0, steps, 64, 0.2)), &p);
        let measured = (hi / lo).log2();
        let se = ((se_lo / lo).powi(2) + (se_hi / hi).powi(2)).sqrt() / std::f64::consts::LN_2;
        eprintln!("T3 {opt}: slope {measured:.4} ± {se:.4} (expected {slope})");
        assert!(se < 0.015, "{opt}: slope SE {se} too large");
        assert!((measured - slope).abs() <= 0.05, "{opt}: slope {measured}, expected {slope}");
    }
}

/// T4: RMSpropW, η = 1e-3, β = 0.999, ε = 1e-8, σ = 1: θ = 1 → 5.7500e-4 (1%); θ = 0 → 1.0000e-3 (1%).
#[test]
fn t4_rmspropw() {
    let mut p = params(OptimizerKind::RmspropW, 1e-3);
    p.weight_decay = 1.0;
    let task = TaskSpec::Optimizer(sim(1.0, 60_000, 256, 0.15));
    assert_within("T4 RMSpropW θ=1", stationary(&task, &p), 5.75e-4, 0.01);
    p.weight_decay = 0.0;
    let est = stationary(&TaskSpec::Optimizer(sim(1.0, 100_000, 256, 0.15)), &p);
    assert_within("T4 RMSpropW θ=0", est, 1.0e-3, 0.01);
    p.optimizer = OptimizerKind::Rmsprop;
    p.weight_decay = 1.0; // RMSprop ignores θ
    let m = metrics(&TaskSpec::Optimizer(sim(1.0, 1000, 4, 0.5)), &p);
    assert!((m.theory.unwrap().stationary_loss.unwrap() - 1e-3).abs() < 1e-12);
}

/// T5: AdamW as T4 with β₁ = 0.9: 5.6931e-4 (1%); the AdamW SDE by EM (Δ = η) ≈ 5.71e-4.
#[test]
fn t5_adamw_discrete_and_sde() {
    let mut p = params(OptimizerKind::AdamW, 1e-3);
    p.weight_decay = 1.0;
    let task = TaskSpec::Optimizer(sim(1.0, 60_000, 256, 0.15));
    assert_within("T5 AdamW", stationary(&task, &p), 5.6931e-4, 0.01);
    let sde = TaskSpec::Sde(sim(1.0, 60_000, 256, 0.15));
    assert_within("T5 AdamW SDE (Δ = η)", stationary(&sde, &p), 5.71e-4, 0.01);
    let theory = metrics(&TaskSpec::Optimizer(sim(1.0, 1000, 4, 0.5)), &p).theory.unwrap();
    assert!((theory.stationary_loss.unwrap() - 5.6931e-4).abs() < 1e-8, "{theory:?}");
}

/// Every SDE of the simulator runs and lands near its optimizer's stationary loss.
#[test]
fn every_sde_tracks_its_optimizer() {
    for (opt, model) in [
        (OptimizerKind::SignSgd, SdeModel::Compagnoni),
        (OptimizerKind::Rmsprop, SdeModel::Compagnoni),
        (OptimizerKind::Adam, SdeModel::Compagnoni),
        (OptimizerKind::RmspropW, SdeModel::Malladi),
        (OptimizerKind::AdamW, SdeModel::Malladi),
    ] {
        let mut p = params(opt, 1e-2);
        p.beta2 = 0.99;
        p.weight_decay = 0.5;
        let mut s = sim(1.0, 20_000, 32, 0.3);
        s.sde_model = model;
        let (sde, _) = stationary(&TaskSpec::Sde(s.clone()), &p);
        let (opt_loss, _) = stationary(&TaskSpec::Optimizer(s), &p);
        let rel = (sde - opt_loss) / opt_loss;
        eprintln!("{opt} {model:?}: SDE {sde:.4e} vs optimizer {opt_loss:.4e} ({:+.1}%)", rel * 100.0);
        assert!(rel.abs() < 0.1, "{opt} {model:?}: SDE {sde} vs optimizer {opt_loss}");
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let mut s = sim(1.0, 2_000, 40, 0.5);
    s.x0 = 0.3;
    for (t, opt) in [(TaskSpec::Optimizer(s.clone()), OptimizerKind::Adam), (TaskSpec::Sde(s), OptimizerKind::SignSgd)]
    {
        let p = params(opt, 0.05);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| run_trial(&t, &p, TrialId(1), &Cancel::new()).unwrap())
        };
        let (AttemptOutcome::Succeeded(a), AttemptOutcome::Succeeded(b)) = (run(1), run(2)) else { panic!() };
        let bits = |m: &TrialMetrics| -> Vec<u64> {
            m.curve.iter().flat_map(|c| [c.loss_mean.to_bits(), c.loss_se.to_bits(), c.loss_q50.to_bits()]).collect()
        };
        assert_eq!(bits(&a), bits(&b), "{opt}: 1 vs 2 threads differ");
        assert_eq!(a.stationary_loss.unwrap().mean.to_bits(), b.stationary_loss.unwrap().mean.to_bits());
        let mut q = p.clone();
        q.seed = 8;
        let AttemptOutcome::Succeeded(c) = run_trial(&t, &q, TrialId(1), &Cancel::new()).unwrap() else { panic!() };
        assert_ne!(bits(&a), bits(&c), "another seed must give another result");
    }
}

#[test]
fn curves_carry_quantiles_in_order() {
    let mut s = sim(1.0, 1_000, 64, 0.5);
    s.x0 = 1.0;
    let m = metrics(&TaskSpec::Optimizer(s), &params(OptimizerKind::Sgd, 0.01));
    for c in &m.curve[1..] {
        assert!(c.loss_q10 <= c.loss_q50 && c.loss_q50 <= c.loss_q90, "{c:?}");
        assert!(c.loss_q10 > 0.0);
    }
    assert_eq!(m.curve[0].loss_q10, m.curve[0].loss_q90, "every path starts at x0");
}

#[test]
fn too_large_a_learning_rate_diverges_with_its_step() {
    // SGD on λ = 4 is unstable for η > 2/4.
    for task in [TaskSpec::Optimizer(sim(1.0, 5_000, 8, 0.5)), TaskSpec::Sde(sim(1.0, 5_000, 8, 0.5))] {
        let out = run_trial(&task, &params(OptimizerKind::Sgd, 0.6), TrialId(3), &Cancel::new()).unwrap();
        match out {
            AttemptOutcome::Diverged { step, metrics } => {
                assert!(step > 10 && step < 5_000, "step {step}");
                assert!(metrics.curve.iter().all(|c| c.loss_mean.is_finite()));
                assert!(metrics.notes.iter().any(|n| n.contains("overflowed")));
            }
            other => panic!("expected divergence, got {other:?}"),
        }
    }
}

#[test]
fn cancellation_stops_a_run() {
    let cancel = Cancel::new();
    cancel.cancel();
    let r = run_trial(
        &TaskSpec::Optimizer(sim(1.0, 100_000, 8, 0.5)),
        &params(OptimizerKind::Sgd, 0.01),
        TrialId(4),
        &cancel,
    );
    assert_eq!(r, Err(kappa_sim::SimError::Cancelled));
}

/// σ = 0: SignSGD is sign-GD (phase 1): |x_i| falls by η per step and reaches the minimum's
/// η-neighbourhood in finite time, then stays there.
#[test]
fn noiseless_signsgd_reaches_the_minimum_in_finite_time() {
    let mut s = sim(0.0, 2_000, 1, 0.5);
    s.x0 = 0.5;
    s.record_every = RecordEvery::Steps(100);
    let m = metrics(&TaskSpec::Optimizer(s.clone()), &params(OptimizerKind::SignSgd, 1e-3));
    assert_eq!(m.curve[0].loss_mean, 0.5 * 7.5 * 0.25);
    assert_eq!(m.curve[0].phases, Some([1.0, 0.0, 0.0]), "σ = 0: every coordinate is in phase 1");
    // After 500 steps |x| ≤ η: the loss is at most ½ Σλ η².
    let bound = 0.5 * 7.5 * 1e-6 * 1.0001;
    assert!(m.curve.iter().filter(|c| c.step >= 500).all(|c| c.loss_mean <= bound), "{:?}", m.curve);
    assert!(m.curve.iter().filter(|c| c.step <= 400).all(|c| c.loss_mean > bound));
    // The SDE is the sign-GD ODE: the same, to Euler precision.
    let sde = metrics(&TaskSpec::Sde(s), &params(OptimizerKind::SignSgd, 1e-3));
    assert!(sde.curve.iter().filter(|c| c.step >= 500).all(|c| c.loss_mean <= bound));
}

#[test]
fn one_dimension_works() {
    let mut s = sim(1.0, 5_000, 64, 0.5);
    s.landscape = LandscapeSpec::Quadratic { eigenvalues: Eigenvalues::List(vec![2.0]), rotation_seed: None };
    let p = params(OptimizerKind::Sgd, 0.01);
    let (mean, se) = stationary(&TaskSpec::Optimizer(s), &p);
    let exact = 0.01 / (2.0 * (2.0 - 0.02));
    assert!((mean - exact).abs() < 4.0 * se + 0.02 * exact, "{mean} ± {se} vs {exact}");
}

/// Student-t with ν = 1 (Cauchy): no NaN anywhere; SGD says it has no finite stationary loss;
/// SignSGD's loss stays finite and matches η Σσ/(4ℓ₁) roughly.
#[test]
fn cauchy_noise() {
    let mut s = sim(1.0, 40_000, 64, 0.25);
    s.noise = NoiseSpec::StudentT { sigma: Sigma::Scalar(1.0), nu: 1.0 };
    let sgd = metrics(&TaskSpec::Optimizer(s.clone()), &params(OptimizerKind::Sgd, 1e-3));
    assert!(sgd.stationary_loss.is_none());
    assert!(sgd.notes.iter().any(|n| n.contains("no finite stationary loss")), "{:?}", sgd.notes);
    assert!(sgd.curve.iter().all(|c| !c.loss_mean.is_nan()));
    let sign = metrics(&TaskSpec::Optimizer(s.clone()), &params(OptimizerKind::SignSgd, 1e-3));
    let e = sign.stationary_loss.unwrap();
    let theory = sign.theory.unwrap().stationary_loss.unwrap();
    assert!((theory - 1e-3 * 4.0 / (4.0 * 2.0 / std::f64::consts::PI)).abs() < 1e-12);
    eprintln!("SignSGD under Cauchy noise: {:.4e} ± {:.1e} vs theory {theory:.4e}", e.mean, e.se);
    assert!(e.mean.is_finite() && (e.mean - theory).abs() / theory < 0.1);
    // The SignSGD SDE under Cauchy noise is defined and agrees.
    let sde = metrics(&TaskSpec::Sde(s), &params(OptimizerKind::SignSgd, 1e-3)).stationary_loss.unwrap();
    assert!((sde.mean - theory).abs() / theory < 0.1, "{sde:?} vs {theory}");
}

#[test]
fn per_coordinate_sigma_and_batch_scaling() {
    let mut s = sim(1.0, 20_000, 64, 0.2);
    s.noise = NoiseSpec::Gaussian { sigma: Sigma::PerCoordinate(vec![0.0, 1.0, 2.0, 0.5]) };
    let mut p = params(OptimizerKind::Sgd, 0.01);
    p.batch_size = 4;
    let m = metrics(&TaskSpec::Optimizer(s), &p);
    // σ_B = σ/2: exact discrete Σ η σ_B²/(2(2 − ηλ)).
    let exact: f64 = [0.0, 1.0, 2.0, 0.5]
        .iter()
        .zip(LAMBDA)
        .map(|(s, l): (&f64, f64)| 0.01 * (s / 2.0).powi(2) / (2.0 * (2.0 - 0.01 * l)))
        .sum();
    assert!((m.theory.unwrap().stationary_loss.unwrap() - exact).abs() < 1e-15);
    let e = m.stationary_loss.unwrap();
    assert!((e.mean - exact).abs() < 4.0 * e.se + 0.005 * exact, "{e:?} vs {exact}");
    // The budget is in samples: 20,000 samples at B = 4 is 5,000 steps.
    assert_eq!(m.curve.last().unwrap().step, 5_000);
    assert_eq!(m.curve.last().unwrap().samples, 20_000);
}

/// The gradient noise scale B_simple = tr Σ₁ / E|∇f|² (THEORY.md §7) that CPU trials record as
/// `noise_scale`: exact at the start (every path at x₀), and at stationarity it matches SGD's
/// closed form E x_i² = η σ₁²/(B λ_i (2 − ηλ_i)).
#[test]
fn the_gradient_noise_scale_is_recorded_and_matches_sgd_at_stationarity() {
    if test_backend() != Backend::Cpu {
        kappa_tests::skip_here("the GPU backend records no noise scale", "run it on the CPU backend");
        return;
    }
    let (sigma, eta, batch) = (1.0, 0.05, 4u64);
    let mut s = sim(sigma, 40_000, 2000, 0.5);
    s.x0 = 0.5;
    let mut p = params(OptimizerKind::Sgd, eta);
    p.batch_size = batch;
    let m = metrics(&TaskSpec::Optimizer(s), &p);
    let ns = |i: usize| m.curve[i].extra["noise_scale"];
    let trace = LAMBDA.len() as f64 * sigma * sigma;
    let start: f64 = LAMBDA.iter().map(|l| (l * 0.5) * (l * 0.5)).sum();
    assert!((ns(0) / (trace / start) - 1.0).abs() < 1e-12, "{} vs {}", ns(0), trace / start);
    let grad_sq: f64 = LAMBDA.iter().map(|l| l * eta * sigma * sigma / (batch as f64 * (2.0 - eta * l))).sum();
    let last = ns(m.curve.len() - 1);
    assert!((last / (trace / grad_sq) - 1.0).abs() < 0.05, "stationary noise scale {last} vs {}", trace / grad_sq);
}

// ---------------------------------------------------------------- THEORY.md §8: momentum, sign momentum

/// Heavy ball's exact stationary loss at two (η, μ, σ) settings, and Nesterov with weight decay
/// (the Lyapunov solve), against the discrete optimizer (1%).
#[test]
fn heavy_ball_and_nesterov_match_their_exact_stationary_loss() {
    for (opt, lr, mu, sigma, theta) in [
        (OptimizerKind::Momentum, 0.01, 0.9, 1.0, 0.0),
        (OptimizerKind::Momentum, 0.05, 0.5, 0.5, 0.0),
        (OptimizerKind::Nesterov, 0.02, 0.8, 1.0, 0.5),
    ] {
        let p = Hyperparams { beta1: mu, weight_decay: theta, ..params(opt, lr) };
        let m = metrics(&TaskSpec::Optimizer(sim(sigma, 40_000, 256, 0.05)), &p);
        let oracle = m.theory.as_ref().and_then(|t| t.stationary_loss).expect("a closed form");
        if theta == 0.0 {
            // THEORY.md §8: Σ η s² (1+μ) / (2 (1−μ) (2(1+μ) − ηλ)).
            let closed: f64 = LAMBDA
                .iter()
                .map(|l| lr * sigma * sigma * (1.0 + mu) / (2.0 * (1.0 - mu) * (2.0 * (1.0 + mu) - lr * l)))
                .sum();
            assert!((oracle - closed).abs() < 1e-12 * closed, "{oracle} vs {closed}");
        }
        let e = m.stationary_loss.unwrap();
        assert_within(&format!("{opt} η={lr} μ={mu} σ={sigma} θ={theta}"), (e.mean, e.se), oracle, 0.01);
        // The exact curve (second moments stepped) is the theory's curve, ending at the plateau.
        let curve = &m.theory.as_ref().unwrap().curve;
        assert_eq!(curve.len(), m.curve.len());
        assert!((curve.last().unwrap().loss - oracle).abs() < 0.01 * oracle);
    }
}

/// Signum and Lion with β₁ = 0 are SignSGD: the same numbers from the same streams.
#[test]
fn signum_and_lion_at_beta1_zero_are_signsgd() {
    let task = TaskSpec::Optimizer(sim(1.0, 2_000, 32, 0.1));
    let sign = metrics(&task, &params(OptimizerKind::SignSgd, 1e-2));
    for o in [OptimizerKind::Signum, OptimizerKind::Lion] {
        let m = metrics(&task, &Hyperparams { beta1: 0.0, ..params(o, 1e-2) });
        assert_eq!(m.curve, sign.curve, "{o}");
        assert_eq!(m.stationary_loss, sign.stationary_loss, "{o}");
        assert_eq!(m.theory, sign.theory, "{o}: SignSGD's closed form applies");
    }
}

/// Optimizers without an SDE are refused by `kind = "sde"`, naming those that have one.
#[test]
fn sde_of_an_optimizer_without_one_is_refused() {
    for o in [OptimizerKind::Momentum, OptimizerKind::Nesterov, OptimizerKind::Signum, OptimizerKind::Lion] {
        let err = run_trial(&TaskSpec::Sde(sim(1.0, 100, 4, 0.1)), &params(o, 1e-2), TrialId(1), &Cancel::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{o} has no SDE")) && err.contains("sgd, signsgd, rmsprop"), "{err}");
    }
}

// ---------------------------------------------------------------- THEORY.md §8: schedules

/// The run's loss against the exact expected loss (the theory's curve) at three points along the
/// run: within 4 SE of the points' own spread plus `bias` (relative).
fn assert_tracks_exact_curve(name: &str, m: &TrialMetrics, bias: f64) {
    let theory = m.theory.as_ref().expect("an exact curve");
    assert_eq!(theory.curve.len(), m.curve.len(), "{name}");
    let n = m.curve.len();
    for r in [n * 3 / 10, n * 6 / 10, n - 1] {
        let (got, exact) = (&m.curve[r], theory.curve[r].loss);
        let z = (got.loss_mean - exact) / got.loss_se;
        eprintln!(
            "{name} at step {}: {:.5e} ± {:.1e} vs exact {:.5e} ({:+.2}%, {z:+.2} SE)",
            got.step,
            got.loss_mean,
            got.loss_se,
            exact,
            (got.loss_mean / exact - 1.0) * 100.0
        );
        assert!(
            (got.loss_mean - exact).abs() <= 4.0 * got.loss_se + bias * exact,
            "{name}: step {}: {} vs {exact}",
            got.step,
            got.loss_mean
        );
        assert!(got.loss_se < 0.02 * exact, "{name}: SE too large to test");
    }
}

/// SGD's exact curve under warmup + cosine and under WSD (THEORY.md §8 recursion), for the
/// discrete optimizer, heavy ball, and the SGD SDE in its time change.
#[test]
fn sgd_under_schedules_follows_its_exact_curve() {
    use kappa_core::task::LrSchedule;
    let schedules = [
        LrSchedule::Cosine { warmup: 0.1, min_factor: 0.05 },
        LrSchedule::Wsd { warmup: 0.05, decay: 0.3, min_factor: 0.0 },
    ];
    for schedule in schedules {
        let mut s = sim(1.0, 3000, 4000, 0.5);
        s.x0 = 1.0;
        s.lr_schedule = schedule.clone();
        for (opt, mu) in [(OptimizerKind::Sgd, 0.0), (OptimizerKind::Momentum, 0.5)] {
            let p = Hyperparams { beta1: mu, ..params(opt, 0.05) };
            let m = metrics(&TaskSpec::Optimizer(s.clone()), &p);
            assert_tracks_exact_curve(&format!("{opt} {}", schedule.kind_name()), &m, 0.0);
            // The prediction of the stationary loss averages the exact curve over the same steps.
            let (st, pred) = (m.stationary_loss.unwrap(), m.theory.unwrap().stationary_loss.unwrap());
            assert!((st.mean - pred).abs() < 4.0 * st.se, "{opt}: {st:?} vs {pred}");
        }
        let mut sde = s.clone();
        sde.refine = 8;
        let m = metrics(&TaskSpec::Sde(sde), &Hyperparams { seed: 11, ..params(OptimizerKind::Sgd, 0.05) });
        // Euler–Maruyama at Δ = η_k/8 against the SDE's own law: O(ηλ/16) apart.
        assert_tracks_exact_curve(&format!("sgd SDE {}", schedule.kind_name()), &m, 0.015);
    }
}

/// A constant schedule is no schedule, bit for bit; the SDEs other than SGD's refuse a schedule
/// at run time too (the spec refuses it first).
#[test]
fn a_constant_schedule_changes_nothing() {
    let p = params(OptimizerKind::Adam, 1e-2);
    let base = metrics(&TaskSpec::Optimizer(sim(1.0, 500, 8, 0.5)), &p);
    let mut s = sim(1.0, 500, 8, 0.5);
    s.lr_schedule = kappa_core::task::LrSchedule::Constant;
    assert_eq!(metrics(&TaskSpec::Optimizer(s.clone()), &p), base);
    s.lr_schedule = kappa_core::task::LrSchedule::Cosine { warmup: 0.1, min_factor: 0.0 };
    let err = run_trial(&TaskSpec::Sde(s), &p, TrialId(1), &Cancel::new()).unwrap_err().to_string();
    assert!(err.contains("runs SGD's SDE only"), "{err}");
}

// ---------------------------------------------------------------- THEORY.md §8: landscapes

fn rotated(sigma: Vec<f64>, seed: u64) -> SimTask {
    let mut s = sim(1.0, 40_000, 256, 0.1);
    s.landscape =
        LandscapeSpec::Quadratic { eigenvalues: Eigenvalues::List(LAMBDA.to_vec()), rotation_seed: Some(seed) };
    s.noise = NoiseSpec::Gaussian { sigma: Sigma::PerCoordinate(sigma) };
    s
}

/// On a rotated quadratic with unequal σ_i: SGD's exact stationary loss Σ η (QᵀΣQ)_kk /
/// (2(2 − ηλ_k)) and SignSGD's linear-phase plateau η Σσ_i/(4√(2/π)) (the Lyapunov equation's
/// trace, the same for every rotation), each against the discrete optimizer (1%).
#[test]
fn rotated_quadratics_match_their_closed_forms() {
    let sigma = vec![0.5, 1.0, 2.0, 1.5];
    let sgd = params(OptimizerKind::Sgd, 0.01);
    let m = metrics(&TaskSpec::Optimizer(rotated(sigma.clone(), 5)), &sgd);
    let oracle = m.theory.as_ref().and_then(|t| t.stationary_loss).unwrap();
    let e = m.stationary_loss.unwrap();
    assert_within("rotated SGD (exact)", (e.mean, e.se), oracle, 0.01);
    // Its exact curve is the theory's curve too.
    assert_eq!(m.theory.unwrap().curve.len(), m.curve.len());
    // And B_noise is recorded next to B_simple.
    assert!(m.curve.last().unwrap().extra.contains_key("b_noise"), "{:?}", m.curve.last());

    let sign = params(OptimizerKind::SignSgd, 1e-3);
    let mut task = rotated(sigma.clone(), 5);
    task.samples = 200_000;
    let m = metrics(&TaskSpec::Optimizer(task), &sign);
    let plateau = 1e-3 * sigma.iter().sum::<f64>() / (4.0 * (2.0 / std::f64::consts::PI).sqrt());
    assert_eq!(m.theory.as_ref().and_then(|t| t.stationary_loss), Some(plateau));
    let e = m.stationary_loss.unwrap();
    assert_within("rotated SignSGD (linear phase)", (e.mean, e.se), plateau, 0.01);
}

/// With equal σ_i SGD does not see the rotation: the same exact stationary loss as diagonal; a
/// given Hessian equal to a rotated one gives the same numbers.
#[test]
fn sgd_does_not_see_a_rotation_and_a_given_hessian_is_a_rotation() {
    let sgd = params(OptimizerKind::Sgd, 0.01);
    let rot = metrics(&TaskSpec::Optimizer(rotated(vec![1.0; 4], 9)), &sgd);
    let diag = metrics(&TaskSpec::Optimizer(sim(1.0, 40_000, 256, 0.1)), &sgd);
    let (r, d) = (rot.theory.unwrap().stationary_loss.unwrap(), diag.theory.unwrap().stationary_loss.unwrap());
    assert!((r - d).abs() < 1e-12 * d, "{r} vs {d}");
    let (a, b) = (rot.stationary_loss.unwrap(), diag.stationary_loss.unwrap());
    assert!((a.mean - b.mean).abs() < 4.0 * (a.se.hypot(b.se)), "{a:?} vs {b:?}");
    let h = kappa_sim::landscape::Dense::rotated(LAMBDA.to_vec(), 9);
    let rows: Vec<Vec<f64>> = h.h.chunks(4).map(<[f64]>::to_vec).collect();
    let mut given = rotated(vec![1.0; 4], 9);
    given.landscape = LandscapeSpec::QuadraticHessian { hessian: rows };
    given.samples = 2000;
    let mut same = rotated(vec![1.0; 4], 9);
    same.samples = 2000;
    let (g, s) = (metrics(&TaskSpec::Optimizer(given), &sgd), metrics(&TaskSpec::Optimizer(same), &sgd));
    assert_eq!(
        g.curve.iter().map(|c| c.loss_mean).collect::<Vec<_>>(),
        s.curve.iter().map(|c| c.loss_mean).collect::<Vec<_>>()
    );
}

/// The double well's SGD-SDE stationary loss (THEORY.md §8's integral) against the SDE by
/// Euler–Maruyama at Δ = η/8, in the regime where paths hop between the wells (2%).
#[test]
fn double_well_sde_matches_its_stationary_integral() {
    let mut s = sim(1.0, 40_000, 256, 0.2);
    s.landscape = LandscapeSpec::DoubleWell { a: vec![1.0, 2.0] };
    // η s² = 0.2 on the first coordinate (a = 1): THEORY.md's 0.05716 for it.
    s.noise = NoiseSpec::Gaussian { sigma: Sigma::Scalar(20f64.sqrt()) };
    s.x0 = 1.0;
    s.refine = 8;
    let p = params(OptimizerKind::Sgd, 0.01);
    let m = metrics(&TaskSpec::Sde(s), &p);
    let oracle = m.theory.as_ref().and_then(|t| t.stationary_loss).unwrap();
    assert!((kappa_sim::theory::double_well_coordinate(1.0, 0.2) - 0.05716).abs() < 1e-5);
    let e = m.stationary_loss.unwrap();
    assert_within("double well SGD SDE", (e.mean, e.se), oracle, 0.02);
}
