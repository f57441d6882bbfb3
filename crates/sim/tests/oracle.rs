//! THEORY.md §6 oracle numbers for the discrete optimizers, plus determinism and divergence.

use kappa_core::task::{LandscapeSpec, NoiseSpec, RecordEvery, SimTask};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId};
use kappa_sim::{Cancel, run_trial};

fn task(sigma: f64, steps: u64, paths: u32, burn_in: f64) -> TaskSpec {
    TaskSpec::Optimizer(SimTask {
        landscape: LandscapeSpec::Quadratic {
            eigenvalues: vec![0.5, 1.0, 2.0, 4.0],
        },
        noise: NoiseSpec::Gaussian { sigma },
        x0: 0.0,
        paths,
        samples: steps,
        record_every: RecordEvery::Percent(10.0),
        burn_in,
    })
}

fn params(optimizer: OptimizerKind, lr: f64) -> Hyperparams {
    Hyperparams {
        optimizer,
        batch_size: 1,
        lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        seed: 7,
    }
}

fn stationary(task: &TaskSpec, p: &Hyperparams) -> (f64, f64) {
    match run_trial(task, p, TrialId(42), &Cancel::new()).unwrap() {
        AttemptOutcome::Succeeded(m) => {
            let e = m.stationary_loss.unwrap();
            (e.mean, e.se)
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn assert_matches(name: &str, (mean, se): (f64, f64), oracle: f64, max_rel_se: f64) {
    let rel = (mean - oracle) / oracle;
    eprintln!(
        "{name}: {mean:.7e} ± {se:.2e} vs {oracle:.7e} ({:+.3}%)",
        rel * 100.0
    );
    assert!(
        se / oracle < max_rel_se,
        "{name}: SE {se:e} too large to test against {oracle:e}"
    );
    assert!(
        (mean - oracle).abs() <= 4.0 * se,
        "{name}: {mean:e} ± {se:e} is more than 4 SE from {oracle:e}"
    );
}

/// T1: SGD, σ = 1, η = 0.01; exact discrete stationary loss Σ ησ²/(2(2 − ηλ_i)) = 0.0100951.
#[test]
fn t1_sgd_discrete_stationary_loss() {
    let est = stationary(
        &task(1.0, 40_000, 128, 0.05),
        &params(OptimizerKind::Sgd, 0.01),
    );
    assert_matches("T1 SGD", est, 0.0100951, 0.003);
}

/// T2: SignSGD, σ = 1, η = 1e-3; discrete MC 0.00125446 ± 0.00000095 (formula 0.00125238).
#[test]
fn t2_signsgd_discrete_stationary_loss() {
    let est = stationary(
        &task(1.0, 200_000, 512, 0.1),
        &params(OptimizerKind::SignSgd, 1e-3),
    );
    assert_matches("T2 SignSGD", est, 0.00125446, 0.003);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let t = task(1.0, 2_000, 40, 0.5);
    let p = params(OptimizerKind::Sgd, 0.05);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run_trial(&t, &p, TrialId(1), &Cancel::new()).unwrap())
    };
    let one = run(1);
    let two = run(2);
    let AttemptOutcome::Succeeded(a) = one else {
        panic!()
    };
    let AttemptOutcome::Succeeded(b) = two else {
        panic!()
    };
    // Bit-identical, not merely close.
    let bits = |m: &kappa_core::TrialMetrics| -> Vec<u64> {
        m.curve
            .iter()
            .flat_map(|c| [c.loss_mean.to_bits(), c.loss_se.to_bits()])
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(
        a.stationary_loss.unwrap().mean.to_bits(),
        b.stationary_loss.unwrap().mean.to_bits()
    );
    // A different seed gives a different result.
    let mut q = p.clone();
    q.seed = 8;
    let AttemptOutcome::Succeeded(c) = run_trial(&t, &q, TrialId(1), &Cancel::new()).unwrap()
    else {
        panic!()
    };
    assert_ne!(bits(&a), bits(&c));
}

#[test]
fn too_large_a_learning_rate_diverges_with_its_step() {
    // SGD on λ = 4 is unstable for η > 2/4.
    let out = run_trial(
        &task(1.0, 5_000, 8, 0.5),
        &params(OptimizerKind::Sgd, 0.6),
        TrialId(3),
        &Cancel::new(),
    )
    .unwrap();
    match out {
        AttemptOutcome::Diverged { step, metrics } => {
            assert!(step > 10 && step < 5_000, "step {step}");
            assert!(metrics.curve.iter().all(|c| c.loss_mean.is_finite()));
        }
        other => panic!("expected divergence, got {other:?}"),
    }
}

#[test]
fn cancellation_stops_a_run() {
    let cancel = Cancel::new();
    cancel.cancel();
    let r = run_trial(
        &task(1.0, 100_000, 8, 0.5),
        &params(OptimizerKind::Sgd, 0.01),
        TrialId(4),
        &cancel,
    );
    assert_eq!(r, Err(kappa_sim::SimError::Cancelled));
}

#[test]
fn noiseless_signsgd_reaches_the_minimum_neighbourhood() {
    let mut t = task(0.0, 2_000, 1, 0.5);
    let TaskSpec::Optimizer(s) = &mut t;
    s.x0 = 0.5;
    let AttemptOutcome::Succeeded(m) = run_trial(
        &t,
        &params(OptimizerKind::SignSgd, 1e-3),
        TrialId(5),
        &Cancel::new(),
    )
    .unwrap() else {
        panic!()
    };
    // |x_i| shrinks by η per step until it oscillates within η of 0: after 500 steps it is there.
    let last = m.curve.last().unwrap();
    assert!(last.loss_mean < 0.5 * 7.5 * 1e-6, "{last:?}");
    assert_eq!(m.curve[0].loss_mean, 0.5 * 7.5 * 0.25);
}
