//! The GPU backend (`backend = "cuda"`): the kernel in `kernel.cu`, compiled by NVRTC at first use,
//! driven through cudarc's driver API. Both libcuda and libnvrtc are loaded at run time, so the
//! same binary builds without a CUDA toolkit and runs on machines without a GPU.
//!
//! cudarc panics when it first touches a library it cannot load, so nothing here calls into cudarc
//! before [`probe`] has checked that both libraries load; every other failure (no device, driver
//! error, NVRTC error) comes back as a reason, never a panic. A process keeps one context, module
//! and kernel per device ([`device`]); each trial runs on its own stream.
//!
//! Results agree with the CPU backend statistically, not bitwise: state is float32, normals come
//! from Philox-4x32-10 and Box–Muller, Student-t draws from normal / √(χ²/ν) with Marsaglia–Tsang
//! gamma variates.

use crate::landscape::{self, Landscape};
use crate::noise::{Family, Noise};
use crate::run::{BlockResult, steps_of};
use crate::theory::{self, Form};
use crate::{Cancel, SimError};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use kappa_core::task::{SdeModel, SimTask};
use kappa_core::{AttemptOutcome, Hyperparams, OptimizerKind, TrialId};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

/// The kernel source (CUDA C++), compiled by NVRTC at run time after [`kernel_source`]'s header.
pub const KERNEL_SOURCE: &str = include_str!("kernel.cu");

/// The source NVRTC compiles: the optimizer table's case numbers (`#define KIND_SGD 0u`, …, one
/// per row of [`kappa_core::OPTIMIZERS`]), then [`KERNEL_SOURCE`].
pub fn kernel_source() -> String {
    let mut s = String::from("// Generated from kappa-core's optimizer table.\n");
    for o in OptimizerKind::ALL {
        s.push_str(&format!("#define KIND_{} {}u\n", o.as_str().to_uppercase(), kind_code(o)));
    }
    s.push_str(KERNEL_SOURCE);
    s
}

/// Coordinates per thread: one Philox call gives their four normals. Must match `K` in the kernel.
const K: usize = 4;
/// Threads per block.
const BLOCK_THREADS: u32 = 256;
/// Element-substeps per launch (about 10 ms on a recent GPU): cancellation and divergence are
/// checked between launches, which are the only host synchronisations of a trial.
const WORK_PER_LAUNCH: u64 = 1 << 32;
/// A per-thread partial loss above this (or not finite) means the path diverged. float32 state
/// overflows long before the CPU's 1e150.
const DIVERGENCE_PARTIAL: f32 = 1e30;

/// A loaded kernel on one device.
pub struct Device {
    ctx: Arc<CudaContext>,
    sim: CudaFunction,
    kat: CudaFunction,
    /// The device's name and compute capability, for notes.
    pub description: String,
}

/// Why the CUDA backend cannot run here; `Ok` when both libraries load.
pub fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            preload_nvrtc()?;
            // SAFETY: only tries to dlopen the candidate names; no symbol is used.
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                return Err("the NVIDIA driver library (libcuda.so.1) cannot be loaded".into());
            }
            // SAFETY: as above.
            if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                return Err(nvrtc_missing());
            }
            Ok(())
        })
        .clone()
}

fn nvrtc_missing() -> String {
    "the NVRTC library (libnvrtc.so.13 or .12) cannot be loaded: install it (CUDA toolkit, or \
     `pip install nvidia-cuda-nvrtc-cu12`) and put its directory on LD_LIBRARY_PATH, or set \
     KAPPA_NVRTC_LIB to the file"
        .into()
}

/// Loads `$KAPPA_NVRTC_LIB` (a path to libnvrtc) for the life of the process, so that cudarc's
/// own `dlopen` by name finds it by its soname.
fn preload_nvrtc() -> Result<(), String> {
    let Some(path) = std::env::var_os("KAPPA_NVRTC_LIB") else { return Ok(()) };
    // SAFETY: loading a shared library runs its initialisers; libnvrtc's are benign.
    match unsafe { libloading::Library::new(&path) } {
        Ok(lib) => {
            std::mem::forget(lib);
            Ok(())
        }
        Err(e) => Err(format!("KAPPA_NVRTC_LIB={}: {e}", path.to_string_lossy())),
    }
}

/// Compiles the kernel to PTX for `arch` (e.g. `compute_90`). Needs only libnvrtc, not a GPU.
pub fn compile_ptx(arch: &str) -> Result<cudarc::nvrtc::Ptx, String> {
    preload_nvrtc()?;
    // SAFETY: only tries to dlopen the candidate names.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(nvrtc_missing());
    }
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("kappa_sim.cu".into()),
        ..Default::default()
    };
    catch_unwind(AssertUnwindSafe(|| cudarc::nvrtc::compile_ptx_with_opts(kernel_source(), opts)))
        .map_err(|p| format!("NVRTC panicked: {}", panic_message(&p)))?
        .map_err(|e| format!("NVRTC could not compile the kernel: {e}"))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The device `ordinal` with the kernel loaded (created once per process), or why not.
pub fn device(ordinal: usize) -> Result<Arc<Device>, String> {
    type Loaded = HashMap<usize, Result<Arc<Device>, String>>;
    static DEVICES: OnceLock<Mutex<Loaded>> = OnceLock::new();
    probe()?;
    let mut map = DEVICES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    map.entry(ordinal)
        .or_insert_with(|| {
            catch_unwind(AssertUnwindSafe(|| load_device(ordinal)))
                .unwrap_or_else(|p| Err(format!("the CUDA driver panicked: {}", panic_message(&p))))
        })
        .clone()
}

fn load_device(ordinal: usize) -> Result<Arc<Device>, String> {
    let count = CudaContext::device_count().map_err(|e| format!("cuInit/cuDeviceGetCount failed: {e}"))?;
    if count <= 0 {
        return Err("the driver sees no CUDA device".into());
    }
    if ordinal >= count as usize {
        return Err(format!("device {ordinal} asked for, the driver sees {count}"));
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| format!("cannot create a context on device {ordinal}: {e}"))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    if major < 6 {
        return Err(format!("compute capability {major}.{minor} is below the 6.0 the kernel needs"));
    }
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let started = std::time::Instant::now();
    let ptx = compile_ptx(&format!("compute_{major}{minor}"))?;
    let compile_s = started.elapsed().as_secs_f64();
    let module = ctx.load_module(ptx).map_err(|e| format!("cannot load the kernel's PTX: {e}"))?;
    let sim = module.load_function("kappa_sim").map_err(|e| e.to_string())?;
    let kat = module.load_function("kappa_philox_kat").map_err(|e| e.to_string())?;
    let description = format!("{name} (compute {major}.{minor}, device {ordinal}; NVRTC {compile_s:.2} s)");
    Ok(Arc::new(Device { ctx, sim, kat, description }))
}

/// The kernel's parameters, laid out as `struct Params` in `kernel.cu` (no padding: the 8-byte
/// fields come first, 14 `u32` fill 56 bytes, then 16 floats).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Params {
    key: u64,
    step_begin: u64,
    step_end: u64,
    burn_in: u64,
    paths: u64,
    d: u32,
    tpp: u32,
    refine: u32,
    method: u32,
    kind: u32,
    model: u32,
    noise: u32,
    phases: u32,
    records: u32,
    rec_start: u32,
    bias_correction: u32,
    scheduled: u32,
    landscape: u32,
    pad: u32,
    eta: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    dt: f32,
    nu: f32,
    x0: f32,
    div_threshold: f32,
    lbeta: f32,
    r1: f32,
    r2: f32,
    sigma_unit: f32,
    eps_eff: f32,
    b1pow0: f32,
    b2pow0: f32,
}

// SAFETY: plain old data with the C layout the kernel declares.
unsafe impl DeviceRepr for Params {}

const _: () = assert!(std::mem::size_of::<Params>() == 40 + 56 + 64);

/// The kernel's case number of optimizer `k`: its row in the optimizer table.
fn kind_code(k: OptimizerKind) -> u32 {
    k as u32
}

/// The kernel's key from a trial's id and seed (the CPU streams' mixing, another constant).
fn key(id: TrialId, seed: u64) -> u64 {
    use crate::rng::mix64;
    mix64(id.0 ^ mix64(seed ^ mix64(0x6b61_7070_6167_7075)))
}

/// Lowers a trial to the kernel's parameters (steps and record index are set per launch).
fn lower(task: &SimTask, sde: bool, params: &Hyperparams, noise: &Noise, id: TrialId, d: usize) -> Params {
    let eta = params.lr;
    let theta = if params.optimizer.uses_weight_decay() { params.weight_decay } else { 0.0 };
    let (nu, lbeta) = match &noise.family {
        Family::Gaussian => (0.0, 0.0),
        Family::StudentT { nu, .. } => {
            let lb = puruspe::ln_gamma((nu + 1.0) / 2.0) - puruspe::ln_gamma(nu / 2.0) - puruspe::ln_gamma(0.5);
            (*nu, lb)
        }
    };
    let mut p = Params {
        key: key(id, params.seed),
        paths: u64::from(task.paths),
        d: d as u32,
        tpp: (d.div_ceil(K)).next_power_of_two() as u32,
        refine: if sde { task.refine.max(1) } else { 1 },
        method: u32::from(sde),
        kind: kind_code(params.optimizer),
        model: match task.sde_model {
            SdeModel::Compagnoni => 0,
            SdeModel::Malladi => 1,
        },
        noise: u32::from(matches!(noise.family, Family::StudentT { .. })),
        phases: u32::from(params.optimizer.sign_like()),
        bias_correction: u32::from(task.bias_correction),
        eta: eta as f32,
        beta1: params.beta1 as f32,
        beta2: params.beta2 as f32,
        eps: params.eps as f32,
        nu: nu as f32,
        x0: task.x0 as f32,
        div_threshold: DIVERGENCE_PARTIAL,
        lbeta: lbeta as f32,
        b1pow0: 1.0,
        b2pow0: 1.0,
        ..Default::default()
    };
    if sde {
        // As sde.rs: the substep in the model's own time, and the model's coefficients.
        let unit = match task.sde_model {
            SdeModel::Compagnoni => eta,
            SdeModel::Malladi => eta * eta,
        };
        p.dt = (unit / f64::from(p.refine)) as f32;
        let (r1, r2, sigma_unit, eps_eff, decay) = match task.sde_model {
            SdeModel::Compagnoni => {
                ((1.0 - params.beta1) / eta, (1.0 - params.beta2) / eta, eta.sqrt(), params.eps, theta)
            }
            SdeModel::Malladi => {
                let e2 = eta * eta;
                ((1.0 - params.beta1) / e2, (1.0 - params.beta2) / e2, eta, params.eps * eta, theta / eta)
            }
        };
        (p.r1, p.r2, p.sigma_unit, p.eps_eff, p.decay) =
            (r1 as f32, r2 as f32, sigma_unit as f32, eps_eff as f32, decay as f32);
    } else {
        // optim.rs: decoupled decay x ← x − ηθx.
        p.decay = (eta * theta) as f32;
    }
    p
}

fn driver(e: cudarc::driver::DriverError) -> SimError {
    SimError::Invalid(format!("CUDA error: {e}"))
}

/// Runs a simulation trial on GPU `ordinal`; the outcome has the CPU backend's shape.
pub fn run_sim(
    task: &SimTask,
    sde: bool,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    ordinal: usize,
    stop: Option<u64>,
) -> Result<AttemptOutcome, SimError> {
    let dev =
        device(ordinal).map_err(|e| SimError::Invalid(format!("backend = \"cuda\": no usable NVIDIA GPU: {e}")))?;
    catch_unwind(AssertUnwindSafe(|| run_on(&dev, task, sde, params, id, cancel, stop)))
        .unwrap_or_else(|p| Err(SimError::Invalid(format!("the CUDA backend panicked: {}", panic_message(&p)))))
}

fn run_on(
    dev: &Device,
    task: &SimTask,
    sde: bool,
    params: &Hyperparams,
    id: TrialId,
    cancel: &Cancel,
    stop: Option<u64>,
) -> Result<AttemptOutcome, SimError> {
    let land = landscape::build(&task.landscape);
    // What the kernel's landscape reads: per coordinate λ (diagonal quadratic) or a (double well);
    // a full Hessian row-major (its diagonal in the per-coordinate slot, unread).
    let (code, coefs, hessian) = match &land {
        landscape::Land::Diagonal(q) => (0, q.eigenvalues.clone(), vec![0.0]),
        landscape::Land::DoubleWell(w) => (1, w.a.clone(), vec![0.0]),
        landscape::Land::Dense(h) if task.landscape.runs_on_gpu() => {
            let d = h.dim();
            (2, (0..d).map(|i| h.h[i * d + i]).collect(), h.h.clone())
        }
        landscape::Land::Dense(h) => {
            return Err(SimError::Invalid(format!(
                "backend = \"cuda\" runs full Hessians up to d = {}; {} of d = {} runs on the CPU \
                 (backend = \"cpu\" or \"auto\")",
                kappa_core::task::MAX_GPU_DENSE_DIM,
                task.landscape.describe(),
                h.dim()
            )));
        }
    };
    let d = land.dim();
    let noise = Noise::for_batch(&task.noise, params.batch_size, d).map_err(|e| SimError::Invalid(e.to_string()))?;
    let steps = steps_of(task, params.batch_size).until(stop, params.batch_size);
    if sde {
        // The same refusals as the CPU backend's (an optimizer without an SDE, or without one
        // under a schedule).
        let sde = crate::sde::Sde::generic(params, task.sde_model, task.refine).map_err(SimError::Invalid)?;
        sde.check_schedule(&crate::run::rate_of(task, params)).map_err(SimError::Invalid)?;
    }
    let mut p = lower(task, sde, params, &noise, id, d);
    let rate = crate::run::rate_of(task, params);
    p.scheduled = u32::from(!rate.is_constant());
    p.landscape = code;
    let paths = task.paths as usize;
    let records = steps.record_steps.len();
    p.records = u32::try_from(records).map_err(|_| SimError::Invalid("too many record points".into()))?;
    p.burn_in = steps.burn_in_steps;
    let threads = paths as u64 * u64::from(p.tpp);
    let blocks = threads.div_ceil(u64::from(BLOCK_THREADS));
    if blocks > u64::from(i32::MAX as u32) {
        return Err(SimError::Invalid(format!("{paths} paths × d = {d} is too large for one launch")));
    }
    let out_bytes = (paths * records * 8) as u64;
    if out_bytes > 16 << 30 {
        return Err(SimError::Invalid(format!(
            "{paths} paths × {records} record points need {} GiB of GPU memory: record less often",
            out_bytes >> 30
        )));
    }

    let stream: Arc<CudaStream> = dev.ctx.new_stream().map_err(driver)?;
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let lambda = stream.clone_htod(&f32s(&coefs)).map_err(driver)?;
    let hess = stream.clone_htod(&f32s(&hessian)).map_err(driver)?;
    let sigma = stream.clone_htod(&f32s(&noise.sigma)).map_err(driver)?;
    let std = stream.clone_htod(&f32s(noise.std.as_deref().unwrap_or(&noise.sigma))).map_err(driver)?;
    let record_steps = stream.clone_htod(&steps.record_steps).map_err(driver)?;
    // The schedule's multiplier of every step (one float when there is none: never read).
    let scales: Vec<f32> =
        if rate.is_constant() { vec![1.0] } else { (0..steps.total).map(|k| rate.scale(k) as f32).collect() };
    let lr_scale = stream.clone_htod(&scales).map_err(driver)?;
    let n = threads as usize * K;
    let mut state = stream.alloc_zeros::<f32>(3 * n).map_err(driver)?;
    let mut losses = stream.alloc_zeros::<f64>(paths * records).map_err(driver)?;
    let mut stationary = stream.alloc_zeros::<f64>(paths).map_err(driver)?;
    let mut phase_counts = stream.alloc_zeros::<u64>(3 * records).map_err(driver)?;
    let mut diverged = stream.clone_htod(&[u64::MAX]).map_err(driver)?;

    let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (BLOCK_THREADS, 1, 1), shared_mem_bytes: 0 };
    let per_step = (n as u64) * u64::from(p.refine);
    let steps_per_launch = (WORK_PER_LAUNCH / per_step.max(1)).max(1);
    let mut begin = 0u64;
    let mut diverged_at = None;
    loop {
        if cancel.is_cancelled() {
            return Err(SimError::Cancelled);
        }
        let end = (begin + steps_per_launch).min(steps.total);
        p.step_begin = begin;
        p.step_end = end;
        p.rec_start = steps.record_steps.partition_point(|&s| s < begin) as u32;
        if begin == 0 {
            p.rec_start = 0;
        } else if steps.record_steps.get(p.rec_start as usize) == Some(&begin) {
            p.rec_start += 1; // recorded by the previous launch
        }
        p.b1pow0 = params.beta1.powf(begin as f64) as f32;
        p.b2pow0 = params.beta2.powf(begin as f64) as f32;
        let mut launch = stream.launch_builder(&dev.sim);
        launch
            .arg(&p)
            .arg(&lambda)
            .arg(&sigma)
            .arg(&std)
            .arg(&mut state)
            .arg(&record_steps)
            .arg(&lr_scale)
            .arg(&hess)
            .arg(&mut losses)
            .arg(&mut stationary)
            .arg(&mut phase_counts)
            .arg(&mut diverged);
        // SAFETY: the arguments match the kernel's signature and every buffer has the length
        // the kernel indexes (state 3·paths·tpp·K, losses paths·records, phase_counts 3·records,
        // lr_scale one per step when `scheduled`, hess d × d when `landscape` is 2).
        unsafe { launch.launch(cfg) }.map_err(driver)?;
        // One small copy per launch: the only synchronisation inside a trial.
        let first = stream.clone_dtoh(&diverged).map_err(driver)?[0];
        if first != u64::MAX {
            diverged_at = Some(first);
            break;
        }
        if end >= steps.total {
            break;
        }
        begin = end;
    }
    let losses = stream.clone_dtoh(&losses).map_err(driver)?;
    let sums = stream.clone_dtoh(&stationary).map_err(driver)?;
    let counts = stream.clone_dtoh(&phase_counts).map_err(driver)?;
    let averaged = (steps.total - steps.burn_in_steps).max(1) as f64;
    let recorded = match diverged_at {
        Some(step) => steps.record_steps.partition_point(|&s| s < step),
        None => records,
    };
    let block = BlockResult {
        losses,
        stationary: sums.iter().map(|s| s / averaged).collect(),
        // The kernel sums the whole window only: the settled check is not measured on the GPU.
        drift: Vec::new(),
        phase_counts: if p.phases == 1 { counts.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect() } else { vec![] },
        recorded,
        diverged_at,
        // The kernel keeps no positions at record points: no gradient noise scales on the GPU.
        grad_sq: Vec::new(),
        curvature: Vec::new(),
    };
    let form = if sde { Form::Sde } else { Form::Discrete };
    let (theory, mut notes) = theory::predict(params, form, &land, &noise, task.x0, &steps, &rate, params.batch_size);
    notes.push(format!("ran on the GPU: {} (float32 state, Philox-4x32-10 normals)", dev.description));
    let mut outcome = crate::run::summarise(&[block], &steps, params.batch_size, d, None, theory, notes);
    rate.unsettle(&mut outcome);
    Ok(outcome)
}

/// Philox-4x32-10 on the device for the known-answer tests: each input is a counter (4 words)
/// and a key (2 words).
pub fn philox_on_device(ordinal: usize, inputs: &[[u32; 6]]) -> Result<Vec<[u32; 4]>, String> {
    let dev = device(ordinal)?;
    let stream = dev.ctx.default_stream();
    let flat: Vec<u32> = inputs.iter().flatten().copied().collect();
    let input = stream.clone_htod(&flat).map_err(|e| e.to_string())?;
    let mut out = stream.alloc_zeros::<u32>(4 * inputs.len()).map_err(|e| e.to_string())?;
    let n = inputs.len() as u32;
    let mut launch = stream.launch_builder(&dev.kat);
    launch.arg(&input).arg(&mut out).arg(&n);
    // SAFETY: `in` holds 6·n words and `out` 4·n, as the kernel reads and writes.
    unsafe { launch.launch(LaunchConfig::for_num_elems(n)) }.map_err(|e| e.to_string())?;
    let out = stream.clone_dtoh(&out).map_err(|e| e.to_string())?;
    Ok(out.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}
