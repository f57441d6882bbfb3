//! The CUDA backend without a GPU: `cuda` is a clear error, `auto` is the CPU backend bit for bit,
//! and the kernel source compiles with NVRTC when libnvrtc can be loaded (the one check of the
//! kernel code that needs no GPU). On a machine with a GPU, the Philox known answers and a smoke
//! run against the CPU backend.
#![cfg(feature = "cuda")]

use kappa_core::task::{
    Backend, Eigenvalues, LandscapeSpec, LrSchedule, NoiseSpec, RecordEvery, SdeModel, Sigma, SimTask,
};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TaskSpec, TrialId};
use kappa_sim::{Cancel, RunOptions, SimError, gpu_available, run_trial, run_trial_with};

fn task(backend: Backend) -> SimTask {
    SimTask {
        landscape: LandscapeSpec::Quadratic {
            eigenvalues: Eigenvalues::List(vec![0.5, 1.0, 2.0, 4.0, 3.0]),
            rotation_seed: None,
        },
        noise: NoiseSpec::Gaussian { sigma: Sigma::Scalar(1.0) },
        x0: 0.5,
        paths: 40,
        samples: 2_000,
        record_every: RecordEvery::Percent(10.0),
        burn_in: 0.5,
        bias_correction: true,
        refine: 1,
        sde_model: SdeModel::Compagnoni,
        backend,
        lr_schedule: Default::default(),
    }
}

fn params(optimizer: OptimizerKind) -> Hyperparams {
    Hyperparams { optimizer, batch_size: 1, lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.5, seed: 3 }
}

/// Whether the tests run where there is a GPU: then the no-GPU checks are skipped.
fn no_gpu() -> bool {
    match gpu_available(0) {
        Ok(()) => {
            eprintln!("a usable GPU is present: the no-GPU checks are skipped");
            false
        }
        Err(why) => {
            eprintln!("no usable GPU here: {why}");
            true
        }
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_not_a_panic() {
    if !no_gpu() {
        return;
    }
    for t in [TaskSpec::Optimizer(task(Backend::Cuda)), TaskSpec::Sde(task(Backend::Cuda))] {
        let err = run_trial(&t, &params(OptimizerKind::Adam), TrialId(1), &Cancel::new()).unwrap_err();
        let SimError::Invalid(msg) = err else { panic!("{err:?}") };
        assert!(msg.starts_with("backend = \"cuda\": no usable NVIDIA GPU: "), "{msg}");
    }
    // The worker's override asks for the same thing.
    let opts = RunOptions { backend: Some(Backend::Cuda), gpu: None, stop_samples: None };
    let t = TaskSpec::Optimizer(task(Backend::Cpu));
    let err = run_trial_with(&t, &params(OptimizerKind::Sgd), TrialId(1), &Cancel::new(), &opts).unwrap_err();
    assert!(err.to_string().contains("no usable NVIDIA GPU"), "{err}");
}

#[test]
fn auto_without_a_gpu_is_the_cpu_backend_bit_for_bit() {
    if !no_gpu() {
        return;
    }
    for (opt, sde) in [(OptimizerKind::Adam, false), (OptimizerKind::SignSgd, true)] {
        let make = |b| if sde { TaskSpec::Sde(task(b)) } else { TaskSpec::Optimizer(task(b)) };
        let p = params(opt);
        let cpu = run_trial(&make(Backend::Cpu), &p, TrialId(9), &Cancel::new()).unwrap();
        let auto = run_trial(&make(Backend::Auto), &p, TrialId(9), &Cancel::new()).unwrap();
        assert_eq!(cpu, auto, "{opt}");
        let opts = RunOptions { backend: Some(Backend::Auto), gpu: None, stop_samples: None };
        let worker = run_trial_with(&make(Backend::Cuda), &p, TrialId(9), &Cancel::new(), &opts).unwrap();
        assert_eq!(cpu, worker, "{opt}: --backend auto overrides the task");
        let opts = RunOptions { backend: Some(Backend::Cpu), gpu: None, stop_samples: None };
        let worker = run_trial_with(&make(Backend::Cuda), &p, TrialId(9), &Cancel::new(), &opts).unwrap();
        assert_eq!(cpu, worker, "{opt}: --backend cpu overrides the task");
    }
}

/// NVRTC compiles the kernel (for the oldest and newest architectures the backend targets). Skips
/// with a message when libnvrtc cannot be loaded, unless KAPPA_REQUIRE_NVRTC=1.
#[test]
fn kernel_compiles_with_nvrtc() {
    for arch in ["compute_70", "compute_80", "compute_90"] {
        match kappa_sim::cuda::compile_ptx(arch) {
            Ok(ptx) => {
                let src = ptx.to_src();
                assert!(src.contains(".entry kappa_sim") && src.contains(".entry kappa_philox_kat"), "{arch}");
                eprintln!("NVRTC compiled the kernel for {arch}: {} bytes of PTX", src.len());
            }
            Err(why) if why.contains("cannot be loaded") && std::env::var_os("KAPPA_REQUIRE_NVRTC").is_none() => {
                kappa_tests::skip_here(
                    &format!("the kernel was not compiled: {why}"),
                    "install NVRTC as the message says; .ci/run does",
                );
                return;
            }
            Err(why) => panic!("{arch}: {why}"),
        }
    }
}

/// Random123's known answers for Philox-4x32-10, computed on the GPU.
#[test]
fn philox_known_answers_on_the_gpu() {
    if gpu_available(0).is_err() {
        kappa_tests::skip_here("no usable GPU", "tests/bench/gpu-check.sh on a machine with an NVIDIA GPU");
        return;
    }
    let inputs = [
        [0, 0, 0, 0, 0, 0],
        [u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX],
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0],
    ];
    let expected = [
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ];
    assert_eq!(kappa_sim::cuda::philox_on_device(0, &inputs).unwrap(), expected);
}

/// On a GPU: every optimizer and SDE runs, keeps the CPU backend's shape, and lands near it.
#[test]
fn gpu_results_have_the_cpu_shape_and_agree_roughly() {
    if gpu_available(0).is_err() {
        kappa_tests::skip_here("no usable GPU", "tests/bench/gpu-check.sh on a machine with an NVIDIA GPU");
        return;
    }
    let well = LandscapeSpec::DoubleWell { a: vec![1.0, 2.0, 0.5, 1.0, 3.0] };
    // A full Hessian: the kernel shares a path's coordinates across its lanes by shuffles.
    let rotated = LandscapeSpec::Quadratic {
        eigenvalues: Eigenvalues::List(vec![0.5, 1.0, 2.0, 4.0, 3.0]),
        rotation_seed: Some(4),
    };
    // d = 100: 25 lanes of a path's 32 share its coordinates.
    let wide = LandscapeSpec::Quadratic {
        eigenvalues: Eigenvalues::Generated(kappa_core::task::Spectrum::Log { lo: 0.1, hi: 4.0, num: 100 }),
        rotation_seed: Some(7),
    };
    let cosine = LrSchedule::Cosine { warmup: 0.1, min_factor: 0.1 };
    let wsd = LrSchedule::Wsd { warmup: 0.05, decay: 0.3, min_factor: 0.0 };
    let cases = OptimizerKind::ALL.map(|o| (o, None, LrSchedule::Constant)).into_iter().chain([
        (OptimizerKind::Sgd, Some(well.clone()), LrSchedule::Constant),
        (OptimizerKind::SignSgd, Some(well), LrSchedule::Constant),
        (OptimizerKind::Sgd, Some(rotated.clone()), LrSchedule::Constant),
        (OptimizerKind::Adam, Some(rotated.clone()), LrSchedule::Constant),
        (OptimizerKind::Momentum, Some(rotated), LrSchedule::Constant),
        (OptimizerKind::Sgd, Some(wide.clone()), LrSchedule::Constant),
        (OptimizerKind::Nesterov, Some(wide), LrSchedule::Constant),
        (OptimizerKind::Sgd, None, cosine),
        (OptimizerKind::Momentum, None, wsd),
    ]);
    for (opt, landscape, schedule) in cases {
        for sde in [false, true] {
            if sde && !schedule.is_constant() && opt != OptimizerKind::Sgd {
                continue;
            }
            if sde && !opt.has_sde() {
                // Refused by both backends alike.
                let t = TaskSpec::Sde(task(Backend::Cuda));
                assert!(run_trial(&t, &params(opt), TrialId(5), &Cancel::new()).is_err(), "{opt}");
                continue;
            }
            let make = |b| {
                let mut t = task(b);
                if let Some(l) = &landscape {
                    t.landscape = l.clone();
                }
                t.lr_schedule = schedule.clone();
                t.paths = 2000;
                t.samples = 20_000;
                if sde { TaskSpec::Sde(t) } else { TaskSpec::Optimizer(t) }
            };
            let p = params(opt);
            let (AttemptOutcome::Succeeded(cpu), AttemptOutcome::Succeeded(gpu)) = (
                run_trial(&make(Backend::Cpu), &p, TrialId(5), &Cancel::new()).unwrap(),
                run_trial(&make(Backend::Cuda), &p, TrialId(5), &Cancel::new()).unwrap(),
            ) else {
                panic!("{opt} sde={sde} {landscape:?} {schedule:?}: not a success")
            };
            assert_eq!(cpu.curve.len(), gpu.curve.len());
            assert_eq!(cpu.curve[0].loss_mean as f32, gpu.curve[0].loss_mean as f32, "both start at x0");
            assert_eq!(cpu.curve.last().unwrap().phases.is_some(), gpu.curve.last().unwrap().phases.is_some());
            let (c, g) = (cpu.stationary_loss.unwrap(), gpu.stationary_loss.unwrap());
            let z = (c.mean - g.mean) / (c.se.powi(2) + g.se.powi(2)).sqrt();
            eprintln!(
                "{opt} sde={sde}: cpu {:.5e} ± {:.1e}, gpu {:.5e} ± {:.1e} ({z:+.2} SE)",
                c.mean, c.se, g.mean, g.se
            );
            assert!(z.abs() < 5.0, "{opt} sde={sde}: CPU and GPU disagree by {z:.1} SE");
            assert!(gpu.notes.iter().any(|n| n.starts_with("ran on the GPU")));
        }
    }
}
