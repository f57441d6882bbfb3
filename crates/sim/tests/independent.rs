//! kappa's momentum, Nesterov, Signum and Lion against an independent NumPy implementation
//! (tests/python/optim_numpy.py, written from THEORY.md §8 alone) on a rotated quadratic with
//! unequal noise: the mean loss at every record point and the stationary loss agree within Monte
//! Carlo error (4 SE of the difference). Needs python3 with NumPy (`.ci/run` installs it).

use kappa_core::task::{Backend, Eigenvalues, LandscapeSpec, NoiseSpec, RecordEvery, SdeModel, Sigma, SimTask};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId};
use kappa_sim::landscape::Dense;
use kappa_sim::{Cancel, run_trial};
use std::io::Write;
use std::process::{Command, Stdio};

const LAMBDA: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
const SIGMA: [f64; 4] = [0.5, 1.0, 2.0, 1.5];
const SEED: u64 = 17;

fn numpy() -> bool {
    Command::new("python3").args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_momentum_and_sign_optimizers_agree_with_numpy() {
    if !numpy() {
        kappa_tests::skip("python3 with NumPy is missing", "python3 -m pip install numpy");
        return;
    }
    let (paths, steps) = (2000u32, 2000u64);
    let task = SimTask {
        landscape: LandscapeSpec::Quadratic {
            eigenvalues: Eigenvalues::List(LAMBDA.to_vec()),
            rotation_seed: Some(SEED),
        },
        noise: NoiseSpec::Gaussian { sigma: Sigma::PerCoordinate(SIGMA.to_vec()) },
        x0: 0.5,
        paths,
        samples: steps,
        record_every: RecordEvery::Percent(10.0),
        burn_in: 0.5,
        bias_correction: true,
        refine: 1,
        sde_model: SdeModel::Compagnoni,
        backend: Backend::Cpu,
        lr_schedule: Default::default(),
    };
    let h = Dense::rotated(LAMBDA.to_vec(), SEED);
    let hessian: Vec<Vec<f64>> = h.h.chunks(4).map(<[f64]>::to_vec).collect();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/optim_numpy.py");
    let mut wrong = Vec::new();
    for (optimizer, lr, beta1, beta2, weight_decay) in [
        (OptimizerKind::Momentum, 0.01, 0.9, 0.999, 0.0),
        (OptimizerKind::Nesterov, 0.02, 0.8, 0.999, 0.5),
        (OptimizerKind::Signum, 0.01, 0.9, 0.999, 0.1),
        (OptimizerKind::Lion, 0.005, 0.9, 0.99, 0.1),
    ] {
        let p = Hyperparams { optimizer, batch_size: 1, lr, beta1, beta2, eps: 1e-8, weight_decay, seed: 3 };
        let AttemptOutcome::Succeeded(m) =
            run_trial(&TaskSpec::Optimizer(task.clone()), &p, TrialId(9), &Cancel::new()).unwrap()
        else {
            panic!("{optimizer}: not a success")
        };
        let input = serde_json::json!({
            "hessian": hessian, "sigma": SIGMA, "batch_size": 1, "x0": 0.5, "paths": paths, "steps": steps,
            "lr": lr, "beta1": beta1, "beta2": beta2, "weight_decay": weight_decay, "optimizer": optimizer.as_str(),
            "seed": 12345, "record_steps": m.curve.iter().map(|c| c.step).collect::<Vec<_>>(),
            "burn_in_steps": steps / 2,
        });
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{optimizer}: the NumPy script failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let curve = v["curve"].as_array().unwrap();
        assert_eq!(curve.len(), m.curve.len());
        let mut worst: f64 = 0.0;
        for (ours, theirs) in m.curve.iter().zip(curve) {
            let (mean, se) = (theirs[1].as_f64().unwrap(), theirs[2].as_f64().unwrap());
            if ours.step == 0 {
                assert!((ours.loss_mean - mean).abs() < 1e-12, "both start at x0");
                continue;
            }
            let z = (ours.loss_mean - mean) / ours.loss_se.hypot(se);
            worst = worst.max(z.abs());
            if z.abs() > 4.0 {
                wrong.push(format!(
                    "{optimizer} step {}: kappa {} vs NumPy {mean} ({z:+.1} SE)",
                    ours.step, ours.loss_mean
                ));
            }
        }
        let st = m.stationary_loss.unwrap();
        let (mean, se) = (v["stationary"][0].as_f64().unwrap(), v["stationary"][1].as_f64().unwrap());
        let z = (st.mean - mean) / st.se.hypot(se);
        eprintln!(
            "{optimizer}: stationary kappa {:.5e} ± {:.1e}, NumPy {mean:.5e} ± {se:.1e} ({z:+.2} SE); worst curve point {worst:.2} SE",
            st.mean, st.se
        );
        if z.abs() > 4.0 {
            wrong.push(format!("{optimizer}: stationary kappa {} vs NumPy {mean} ({z:+.1} SE)", st.mean));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
