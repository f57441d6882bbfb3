//! `[task]`: the checks of each task kind, building the typed [`TaskSpec`].

use super::SpecError;
use super::error::{Ctx, Seg, k};
use super::execution::parse_duration;
use super::range::as_f64;
use super::raw::{
    DataKind, LandscapeKind, MAX_DIM, MetricsFrom, NoiseKind, RawData, RawLandscape, RawLrSchedule, RawMetrics,
    RawTask, ScheduleKind, TaskKind,
};
use crate::metrics::{LinePattern, MetricsSource};
use crate::task::{
    CommandTask, DataSpec, Eigenvalues, LandscapeSpec, LrSchedule, MAX_DENSE_DIM, MAX_GPU_DENSE_DIM, ModelSpec,
    NoiseSpec, Objective, Sigma, SimTask, Spectrum, TaskSpec, TrainTask,
};

pub(super) fn validate_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let at = |p: &[&str]| -> Vec<Seg> { std::iter::once(k("task")).chain(p.iter().map(|s| k(s))).collect() };
    let Some(task_kind) = raw.kind else {
        return Err(ctx.err(
            &[k("task")],
            "[task] needs `kind` (one of \"optimizer\", \"sde\", \"train\", \"command\", \"noop\"), \
             or the grid needs a `task.kind` axis",
        ));
    };
    let kind = task_kind.name();
    // Which keys each kind reads; any other key given is an error naming the kinds that read it.
    let given = [
        ("landscape", raw.landscape.is_some()),
        ("noise", raw.noise.is_some()),
        ("x0", raw.x0.is_some()),
        ("paths", raw.paths.is_some()),
        ("samples", raw.samples.is_some()),
        ("record_every", raw.record_every.is_some()),
        ("burn_in", raw.burn_in.is_some()),
        ("bias_correction", raw.bias_correction.is_some()),
        ("refine", raw.refine.is_some()),
        ("sde_model", raw.sde_model.is_some()),
        ("backend", raw.backend.is_some()),
        ("sleep", raw.sleep.is_some()),
        ("model", raw.model.is_some()),
        ("data", raw.data.is_some()),
        ("holdout", raw.holdout.is_some()),
        ("sde", raw.sde.is_some()),
        ("argv", raw.argv.is_some()),
        ("env", raw.env.is_some()),
        ("lr_schedule", raw.lr_schedule.is_some()),
        ("metrics", raw.metrics.is_some()),
    ];
    for (field, is_given) in given {
        if is_given && !task_kind.reads(field) {
            if field == "bias_correction" && task_kind == TaskKind::Sde {
                return Err(ctx.err(
                    &at(&[field]),
                    "`bias_correction` applies to kind = \"optimizer\" (the Adam SDE builds the correction in)",
                ));
            }
            let readers: Vec<String> =
                TaskKind::ALL.iter().filter(|k| k.reads(field)).map(|k| format!("\"{}\"", k.name())).collect();
            return Err(ctx.err(
                &at(&[field]),
                format!("`{field}` does not apply to kind = \"{kind}\" (it applies to kind = {})", readers.join(", ")),
            ));
        }
    }
    match task_kind {
        TaskKind::Noop => {
            // A trivial trial, for measuring dispatch: it only sleeps, if asked to.
            let sleep_ms = match &raw.sleep {
                Some(t) => parse_duration(t).map_err(|m| ctx.err(&at(&["sleep"]), m))?.as_millis() as u64,
                None => 0,
            };
            Ok(TaskSpec::Noop { sleep_ms })
        }
        TaskKind::Command => command_task(ctx, raw),
        TaskKind::Train => train_task(ctx, raw),
        TaskKind::Optimizer | TaskKind::Sde => sim_task(ctx, raw),
    }
}

pub(super) fn command_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let argv = raw.argv.ok_or_else(|| {
        ctx.err(&[k("task")], "kind = \"command\" needs `argv = [\"program\", \"arg\", ...]` (run without a shell)")
    })?;
    let path = |i: usize| vec![k("task"), k("argv"), Seg::Index(i)];
    if argv.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(ctx.err(&[k("task"), k("argv")], "argv must start with the program to run"));
    }
    for (i, a) in argv.iter().enumerate() {
        crate::command::check(a).map_err(|m| ctx.err(&path(i), m))?;
        if a.contains('\0') {
            return Err(ctx.err(&path(i), "arguments cannot contain NUL characters"));
        }
    }
    let env = raw.env.unwrap_or_default();
    for (name, value) in &env {
        let p = vec![k("task"), k("env"), k(name)];
        if name.is_empty() || name.contains(['=', '\0']) || name.starts_with("KAPPA_") {
            return Err(ctx.err(
                &p,
                format!("`{name}` is not a usable variable name (no `=`, not empty, and KAPPA_* is kappa's own)"),
            ));
        }
        crate::command::check(value).map_err(|m| ctx.err(&p, m))?;
    }
    let burn_in = burn_in(ctx, raw.burn_in)?;
    let lr_schedule = lr_schedule(ctx, raw.lr_schedule)?;
    let metrics = metrics(ctx, raw.metrics)?;
    Ok(TaskSpec::Command(CommandTask { argv, env, burn_in, lr_schedule, metrics }))
}

/// `[task] metrics`: where a command's metrics come from, each field checked where it is.
fn metrics(ctx: &Ctx<'_>, raw: Option<RawMetrics>) -> Result<MetricsSource, SpecError> {
    let Some(r) = raw else { return Ok(MetricsSource::default()) };
    let at = |f: &str| vec![k("task"), k("metrics"), k(f)];
    let Some(from) = r.from else {
        return Err(ctx.err(
            &[k("task"), k("metrics")],
            "metrics needs `from`: \"stdout\" (with a `pattern`), \"tensorboard\" (with a `dir`) or \"csv\" (with a \
             `path`)",
        ));
    };
    let (name, reads): (&str, &[&str]) = match from {
        MetricsFrom::Stdout => ("stdout", &["pattern", "loss"]),
        MetricsFrom::Tensorboard => ("tensorboard", &["dir", "loss"]),
        MetricsFrom::Csv => ("csv", &["path", "loss", "step", "samples"]),
    };
    let given = [
        ("pattern", r.pattern.is_some()),
        ("dir", r.dir.is_some()),
        ("path", r.path.is_some()),
        ("step", r.step.is_some()),
        ("samples", r.samples.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(f, g)| *g && !reads.contains(f)) {
        let more = match *field {
            "step" | "samples" if from == MetricsFrom::Stdout => {
                format!(" (a pattern's `(?P<{field}>...)` group is the {field})")
            }
            _ => String::new(),
        };
        return Err(ctx.err(
            &at(field),
            format!("`{field}` does not apply to metrics from {name} (it takes `{}`){more}", reads.join("`, `")),
        ));
    }
    let loss = r.loss.unwrap_or_else(|| crate::metrics::DEFAULT_LOSS.to_string());
    if loss.trim().is_empty() {
        return Err(ctx.err(&at("loss"), "`loss` must name the metric that is the loss"));
    }
    let named = |field: &str, v: &Option<String>| -> Result<(), SpecError> {
        match v {
            Some(v) if v.trim().is_empty() => Err(ctx.err(&at(field), format!("`{field}` must not be empty"))),
            _ => Ok(()),
        }
    };
    named("step", &r.step)?;
    named("samples", &r.samples)?;
    let file = |field: &str, v: Option<String>, example: &str| -> Result<String, SpecError> {
        let v = v.ok_or_else(|| {
            ctx.err(&[k("task"), k("metrics")], format!("metrics from {name} need `{field}`, for example {example}"))
        })?;
        if v.trim().is_empty() || v.contains('\0') {
            return Err(ctx.err(&at(field), format!("`{field}` must name a path")));
        }
        crate::command::check(&v).map_err(|m| ctx.err(&at(field), m))?;
        // Trials run side by side and one after another: each must read its own files.
        if !crate::command::names(&v).iter().any(|n| n == "trial_dir" || n == "trial_id") {
            return Err(ctx.err(
                &at(field),
                format!(
                    "`{field} = \"{v}\"` would be the same for every trial, which would read each other's files: put \
                     `{{trial_dir}}` in it (the trial's own directory) and give your program the same, for example \
                     `--logdir {{trial_dir}}/tb` in argv"
                ),
            ));
        }
        Ok(v)
    };
    Ok(match from {
        MetricsFrom::Stdout => {
            let pattern = r.pattern.ok_or_else(|| {
                ctx.err(
                    &[k("task"), k("metrics")],
                    "metrics from stdout need `pattern`: \"json\", \"python_dict\", or a regular expression with \
                     named groups such as 'Loss: (?P<loss>[0-9.eE+-]+)'",
                )
            })?;
            let pattern = LinePattern::from(pattern);
            if let LinePattern::Regex(re) = &pattern {
                crate::metrics::compile_pattern(re, &loss).map_err(|m| ctx.err(&at("pattern"), m))?;
            }
            MetricsSource::Stdout { pattern, loss }
        }
        MetricsFrom::Tensorboard => {
            MetricsSource::Tensorboard { dir: file("dir", r.dir, "dir = \"{trial_dir}/tb\"")?, loss }
        }
        MetricsFrom::Csv => MetricsSource::Csv {
            path: file("path", r.path, "path = \"{trial_dir}/metrics.csv\"")?,
            loss,
            step: r.step,
            samples: r.samples,
        },
    })
}

pub(super) fn train_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let at = |p: &[&str]| -> Vec<Seg> { std::iter::once(k("task")).chain(p.iter().map(|s| k(s))).collect() };
    let required = |field: &str, example: &str| {
        ctx.err(&[k("task")], format!("kind = \"train\" needs `{field}` (for example {example})"))
    };
    let model = raw.model.ok_or_else(|| required("model", "model = { hidden = [128], activation = \"relu\" }"))?;
    let hidden = model.hidden.unwrap_or_default();
    if let Some(i) = hidden.iter().position(|&w| w == 0 || w > 65_536) {
        return Err(ctx.err(
            &[k("task"), k("model"), k("hidden"), Seg::Index(i)],
            format!("hidden layer widths must be from 1 to 65536, got {}", hidden[i]),
        ));
    }
    let model = ModelSpec { hidden, activation: model.activation.unwrap_or_default() };
    let data = raw.data.ok_or_else(|| required("data", "data = { kind = \"digits\" }"))?;
    let data = train_data(ctx, data)?;
    let holdout = raw.holdout.unwrap_or(0.2);
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(ctx.err(&at(&["holdout"]), format!("holdout must be a fraction in (0, 1), got {holdout}")));
    }
    let samples = raw.samples.ok_or_else(|| required("samples", "samples = 100000 (samples seen, steps × B)"))?;
    if samples == 0 {
        return Err(ctx.err(&at(&["samples"]), "samples must be at least 1"));
    }
    let burn_in = burn_in(ctx, raw.burn_in)?;
    let paths = raw.paths.unwrap_or(1);
    if !(1..=4096).contains(&paths) {
        return Err(ctx.err(&at(&["paths"]), format!("paths (replicates) must be from 1 to 4096, got {paths}")));
    }
    let noise = match raw.noise {
        None => None,
        Some(n) => {
            if n.kind != NoiseKind::Gaussian || n.nu.is_some() {
                return Err(ctx.err(
                    &at(&["noise"]),
                    "training injects Gaussian noise only: noise = { kind = \"gaussian\", sigma = 0.1 }",
                ));
            }
            let value = n.sigma.ok_or_else(|| ctx.err(&at(&["noise"]), "noise needs `sigma` (the per-sample σ₁)"))?;
            let sigma = as_f64(&value).filter(|s| s.is_finite() && *s >= 0.0).ok_or_else(|| {
                ctx.err(&at(&["noise", "sigma"]), "sigma must be one finite number ≥ 0 (the same for every parameter)")
            })?;
            Some(sigma)
        }
    };
    let sde = raw.sde.unwrap_or(false);
    if sde && noise.is_none() {
        return Err(ctx.err(
            &at(&["sde"]),
            "sde = true integrates the SDE of full-batch gradients plus injected noise: give `noise = { kind = \"gaussian\", sigma = ... }`",
        ));
    }
    if !sde {
        for (field, is_given) in [("refine", raw.refine.is_some()), ("sde_model", raw.sde_model.is_some())] {
            if is_given {
                return Err(ctx.err(&at(&[field]), format!("`{field}` applies with sde = true only")));
            }
        }
    } else if raw.bias_correction.is_some() {
        return Err(
            ctx.err(&at(&["bias_correction"]), "`bias_correction` applies to the optimizer, not with sde = true")
        );
    }
    Ok(TaskSpec::Train(TrainTask {
        model,
        data,
        holdout,
        samples,
        record_every: raw.record_every.unwrap_or_default(),
        burn_in,
        paths,
        bias_correction: raw.bias_correction.unwrap_or(true),
        noise,
        sde,
        refine: refine(ctx, raw.refine)?,
        sde_model: raw.sde_model.unwrap_or_default(),
        lr_schedule: lr_schedule(ctx, raw.lr_schedule)?,
    }))
}

pub(super) fn train_data(ctx: &Ctx<'_>, d: RawData) -> Result<DataSpec, SpecError> {
    let at = |f: &str| vec![k("task"), k("data"), k(f)];
    let given = [
        ("path", d.path.is_some()),
        ("target", d.target.is_some()),
        ("header", d.header.is_some()),
        ("objective", d.objective.is_some()),
        ("inputs", d.inputs.is_some()),
        ("outputs", d.outputs.is_some()),
        ("teacher_hidden", d.teacher_hidden.is_some()),
        ("samples", d.samples.is_some()),
        ("label_noise", d.label_noise.is_some()),
        ("seed", d.seed.is_some()),
    ];
    let reads: &[&str] = match d.kind {
        DataKind::Digits => &[],
        DataKind::Csv => &["path", "target", "header", "objective"],
        DataKind::TeacherStudent => {
            &["objective", "inputs", "outputs", "teacher_hidden", "samples", "label_noise", "seed"]
        }
    };
    let kind = d.kind.name();
    if let Some((field, _)) = given.iter().find(|(f, g)| *g && !reads.contains(f)) {
        return Err(ctx.err(&at(field), format!("`{field}` does not apply to data kind = \"{kind}\"")));
    }
    let need = |field: &str| ctx.err(&[k("task"), k("data")], format!("data kind = \"{kind}\" needs `{field}`"));
    Ok(match d.kind {
        DataKind::Digits => DataSpec::Digits,
        DataKind::Csv => {
            let path = d.path.ok_or_else(|| need("path"))?;
            if path.trim().is_empty() {
                return Err(ctx.err(&at("path"), "path must name a file"));
            }
            let target = match d.target.ok_or_else(|| need("target"))? {
                toml::Value::String(s) if !s.is_empty() => s,
                toml::Value::Integer(i) if i >= 0 => i.to_string(),
                other => {
                    return Err(ctx.err(
                        &at("target"),
                        format!("target must be a column name or a 0-based column index, got {other}"),
                    ));
                }
            };
            let header = d.header.unwrap_or(true);
            if !header && target.parse::<usize>().is_err() {
                return Err(ctx.err(&at("target"), "without a header line the target must be a column index"));
            }
            DataSpec::Csv { path, target, header, objective: d.objective.unwrap_or(Objective::Classification) }
        }
        DataKind::TeacherStudent => {
            let objective = d.objective.unwrap_or(Objective::Classification);
            let inputs = d.inputs.unwrap_or(20);
            let outputs = d.outputs.unwrap_or(if objective == Objective::Classification { 2 } else { 1 });
            let samples = d.samples.unwrap_or(2000);
            for (field, v, lo, hi) in [
                ("inputs", inputs, 1, 100_000),
                ("outputs", outputs, if objective == Objective::Classification { 2 } else { 1 }, 10_000),
                ("samples", samples, 2, 10_000_000),
            ] {
                if !(lo..=hi).contains(&v) {
                    return Err(ctx.err(&at(field), format!("{field} must be from {lo} to {hi}, got {v}")));
                }
            }
            let label_noise = d.label_noise.unwrap_or(0.0);
            if !(label_noise.is_finite() && label_noise >= 0.0) {
                return Err(
                    ctx.err(&at("label_noise"), format!("label_noise must be finite and ≥ 0, got {label_noise}"))
                );
            }
            DataSpec::TeacherStudent {
                objective,
                inputs,
                outputs,
                teacher_hidden: d.teacher_hidden.unwrap_or(16),
                samples,
                label_noise,
                seed: d.seed.unwrap_or(0),
            }
        }
    })
}

/// `landscape = { kind = …, … }`: a quadratic by its eigenvalues (rotated or not) or its full
/// Hessian, or the double well.
pub(super) fn landscape(ctx: &Ctx<'_>, l: RawLandscape) -> Result<LandscapeSpec, SpecError> {
    let at =
        |p: &[&str]| -> Vec<Seg> { [k("task"), k("landscape")].into_iter().chain(p.iter().map(|s| k(s))).collect() };
    let given = [
        ("eigenvalues", l.eigenvalues.is_some()),
        ("rotation_seed", l.rotation_seed.is_some()),
        ("hessian", l.hessian.is_some()),
        ("a", l.a.is_some()),
    ];
    let (name, reads): (&str, &[&str]) = match l.kind {
        LandscapeKind::Quadratic => ("quadratic", &["eigenvalues", "rotation_seed", "hessian"]),
        LandscapeKind::DoubleWell => ("double_well", &["a"]),
    };
    if let Some((field, _)) = given.iter().find(|(f, g)| *g && !reads.contains(f)) {
        return Err(ctx.err(&at(&[field]), format!("`{field}` does not apply to a {name} landscape")));
    }
    match l.kind {
        LandscapeKind::DoubleWell => {
            let value =
                l.a.ok_or_else(|| ctx.err(&at(&[]), "a double well needs `a = [1.0, 2.0]` (one scale per coordinate)"))?;
            let toml::Value::Array(items) = &value else {
                return Err(ctx.err(&at(&["a"]), "a must be a list of numbers > 0, one per coordinate"));
            };
            if items.is_empty() {
                return Err(ctx.err(&at(&["a"]), "a must not be empty (its length is the dimension)"));
            }
            let a = items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut p = at(&["a"]);
                    p.push(Seg::Index(i));
                    finite_positive(ctx, &p, "a", v)
                })
                .collect::<Result<Vec<f64>, _>>()?;
            Ok(LandscapeSpec::DoubleWell { a })
        }
        LandscapeKind::Quadratic => match (l.eigenvalues, l.hessian) {
            (Some(_), Some(_)) => Err(ctx.err(
                &at(&["hessian"]),
                "give `eigenvalues` (with `rotation_seed` to rotate them) or `hessian`, not both",
            )),
            (None, None) => Err(ctx.err(
                &at(&[]),
                "a quadratic landscape needs `eigenvalues = [...]` or a generated spectrum, or a full `hessian = [[...], ...]`",
            )),
            (Some(value), None) => {
                let eigenvalues = eigenvalues(ctx, &at(&["eigenvalues"]), &value)?;
                if l.rotation_seed.is_some() && eigenvalues.dim() > MAX_DENSE_DIM {
                    return Err(ctx.err(
                        &at(&["rotation_seed"]),
                        format!(
                            "a rotated quadratic has a full d × d Hessian; d = {} is more than {MAX_DENSE_DIM}",
                            eigenvalues.dim()
                        ),
                    ));
                }
                Ok(LandscapeSpec::Quadratic { eigenvalues, rotation_seed: l.rotation_seed })
            }
            (None, Some(value)) => {
                if l.rotation_seed.is_some() {
                    return Err(ctx.err(
                        &at(&["rotation_seed"]),
                        "`rotation_seed` rotates `eigenvalues`; a given `hessian` is already what it is",
                    ));
                }
                Ok(LandscapeSpec::QuadraticHessian { hessian: hessian(ctx, &at(&["hessian"]), &value)? })
            }
        },
    }
}

/// A full Hessian as written: square, finite, symmetric, positive definite, each checked with
/// the entry or minor that fails.
#[allow(clippy::needless_range_loop)] // matrix indices read best as indices
fn hessian(ctx: &Ctx<'_>, path: &[Seg], value: &toml::Value) -> Result<Vec<Vec<f64>>, SpecError> {
    let sub = |i: usize, j: Option<usize>| {
        let mut p = path.to_vec();
        p.push(Seg::Index(i));
        p.extend(j.map(Seg::Index));
        p
    };
    let shape = "hessian must be a square matrix, written as its rows: hessian = [[2.0, 0.5], [0.5, 1.0]]";
    let toml::Value::Array(rows) = value else { return Err(ctx.err(path, shape)) };
    let d = rows.len();
    if d == 0 {
        return Err(ctx.err(path, shape));
    }
    if d > MAX_DENSE_DIM {
        return Err(ctx.err(path, format!("a {d} × {d} Hessian is larger than {MAX_DENSE_DIM} × {MAX_DENSE_DIM}")));
    }
    let mut h = Vec::with_capacity(d);
    for (i, row) in rows.iter().enumerate() {
        let toml::Value::Array(entries) = row else { return Err(ctx.err(&sub(i, None), shape)) };
        if entries.len() != d {
            return Err(ctx.err(
                &sub(i, None),
                format!(
                    "row {i} of the Hessian has {} entries, but it has {d} rows: a d × d Hessian has d entries per row",
                    entries.len()
                ),
            ));
        }
        let row = entries
            .iter()
            .enumerate()
            .map(|(j, v)| {
                as_f64(v).filter(|x| x.is_finite()).ok_or_else(|| {
                    ctx.err(&sub(i, Some(j)), format!("Hessian entries must be finite numbers, got {v}"))
                })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        h.push(row);
    }
    let scale = h.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    for i in 0..d {
        for j in 0..i {
            if (h[i][j] - h[j][i]).abs() > 1e-12 * scale {
                return Err(ctx.err(
                    &sub(i, Some(j)),
                    format!(
                        "the Hessian is not symmetric: hessian[{i}][{j}] = {} but hessian[{j}][{i}] = {}",
                        h[i][j], h[j][i]
                    ),
                ));
            }
        }
    }
    if let Err((k, pivot)) = crate::task::cholesky(&h) {
        return Err(ctx.err(
            path,
            format!(
                "the Hessian is not positive definite: its leading {n} × {n} block is not (Cholesky pivot {k} is {pivot:.3e}); \
                 a quadratic needs every eigenvalue > 0",
                n = k + 1
            ),
        ));
    }
    Ok(h)
}

/// `lr_schedule = { kind = …, … }`: the fields its kind reads, defaults filled in, checked
/// (THEORY.md §8).
pub(super) fn lr_schedule(ctx: &Ctx<'_>, raw: Option<RawLrSchedule>) -> Result<LrSchedule, SpecError> {
    let Some(r) = raw else { return Ok(LrSchedule::Constant) };
    let at = |f: &str| vec![k("task"), k("lr_schedule"), k(f)];
    let (name, reads): (&str, &[&str]) = match r.kind {
        ScheduleKind::Constant => ("constant", &[]),
        ScheduleKind::Cosine => ("cosine", &["warmup", "min_factor"]),
        ScheduleKind::Wsd => ("wsd", &["warmup", "decay", "min_factor"]),
        ScheduleKind::Step => ("step", &["at", "factor", "warmup"]),
    };
    let given = [
        ("warmup", r.warmup.is_some()),
        ("decay", r.decay.is_some()),
        ("min_factor", r.min_factor.is_some()),
        ("at", r.at.is_some()),
        ("factor", r.factor.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(f, g)| *g && !reads.contains(f)) {
        let takes = if reads.is_empty() { "no fields".to_string() } else { format!("`{}`", reads.join("`, `")) };
        return Err(ctx.err(&at(field), format!("`{field}` does not apply to a {name} schedule (it takes {takes})")));
    }
    let warmup = r.warmup.unwrap_or(0.0);
    let min_factor = r.min_factor.unwrap_or(0.0);
    let schedule = match r.kind {
        ScheduleKind::Constant => LrSchedule::Constant,
        ScheduleKind::Cosine => LrSchedule::Cosine { warmup, min_factor },
        ScheduleKind::Wsd => LrSchedule::Wsd { warmup, decay: r.decay.unwrap_or(0.2), min_factor },
        ScheduleKind::Step => LrSchedule::Step {
            at: r.at.ok_or_else(|| {
                ctx.err(
                    &[k("task"), k("lr_schedule")],
                    "a step schedule needs `at`, its boundaries as fractions of the budget: at = [0.5, 0.75]",
                )
            })?,
            factor: r.factor.unwrap_or(0.1),
            warmup,
        },
    };
    schedule.check().map_err(|(field, m)| ctx.err(&at(field), m))?;
    Ok(schedule)
}

pub(super) fn burn_in(ctx: &Ctx<'_>, value: Option<f64>) -> Result<f64, SpecError> {
    let burn_in = value.unwrap_or(SimTask::DEFAULT_BURN_IN);
    if !(0.0..1.0).contains(&burn_in) {
        return Err(ctx.err(&[k("task"), k("burn_in")], format!("burn_in must be in [0, 1), got {burn_in}")));
    }
    Ok(burn_in)
}

pub(super) fn refine(ctx: &Ctx<'_>, value: Option<u32>) -> Result<u32, SpecError> {
    let refine = value.unwrap_or(1);
    if !(1..=10_000).contains(&refine) {
        return Err(ctx.err(&[k("task"), k("refine")], format!("refine must be from 1 to 10000, got {refine}")));
    }
    Ok(refine)
}

pub(super) fn sim_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let at = |p: &[&str]| -> Vec<Seg> { std::iter::once(k("task")).chain(p.iter().map(|s| k(s))).collect() };
    let required = |field: &str| ctx.err(&[k("task")], format!("[task] needs `{field}`"));
    let is_sde = raw.kind == Some(TaskKind::Sde);
    let landscape = landscape(ctx, raw.landscape.ok_or_else(|| required("landscape"))?)?;
    if raw.backend == Some(crate::task::Backend::Cuda) && !landscape.runs_on_gpu() {
        return Err(ctx.err(
            &at(&["backend"]),
            format!(
                "backend = \"cuda\" runs full Hessians up to d = {MAX_GPU_DENSE_DIM} (a path's coordinates in one \
                 warp); {} of d = {} runs on the CPU (backend = \"cpu\", or \"auto\" to use the GPU where it can)",
                landscape.describe(),
                landscape.dim()
            ),
        ));
    }
    let dim = landscape.dim();
    let noise = raw.noise.ok_or_else(|| required("noise"))?;
    let sigma_value =
        noise.sigma.ok_or_else(|| ctx.err(&at(&["noise"]), "noise needs `sigma` (the per-sample scale σ₁)"))?;
    let sigma = sigma(ctx, &at(&["noise", "sigma"]), &sigma_value, dim)?;
    let noise = match noise.kind {
        NoiseKind::Gaussian => {
            if noise.nu.is_some() {
                return Err(ctx.err(&at(&["noise", "nu"]), "`nu` applies to kind = \"student_t\" noise only"));
            }
            NoiseSpec::Gaussian { sigma }
        }
        NoiseKind::StudentT => {
            let nu = noise
                .nu
                .ok_or_else(|| ctx.err(&at(&["noise"]), "student_t noise needs `nu`, the degrees of freedom"))?;
            if !(nu > 0.0 && nu.is_finite()) {
                return Err(ctx.err(&at(&["noise", "nu"]), format!("nu must be finite and > 0, got {nu}")));
            }
            NoiseSpec::StudentT { sigma, nu }
        }
    };
    let x0 = raw.x0.unwrap_or(0.0);
    if !x0.is_finite() {
        return Err(ctx.err(&at(&["x0"]), format!("x0 must be finite, got {x0}")));
    }
    let paths = raw.paths.unwrap_or(SimTask::DEFAULT_PATHS);
    if paths == 0 {
        return Err(ctx.err(&at(&["paths"]), "paths must be at least 1"));
    }
    let samples = raw.samples.ok_or_else(|| required("samples"))?;
    if samples == 0 {
        return Err(ctx.err(&at(&["samples"]), "samples must be at least 1"));
    }
    let burn_in = burn_in(ctx, raw.burn_in)?;
    let refine = refine(ctx, raw.refine)?;
    let sim = SimTask {
        landscape,
        noise,
        x0,
        paths,
        samples,
        record_every: raw.record_every.unwrap_or_default(),
        burn_in,
        bias_correction: raw.bias_correction.unwrap_or(true),
        refine,
        sde_model: raw.sde_model.unwrap_or_default(),
        backend: raw.backend.unwrap_or_default(),
        lr_schedule: lr_schedule(ctx, raw.lr_schedule)?,
    };
    Ok(if is_sde { TaskSpec::Sde(sim) } else { TaskSpec::Optimizer(sim) })
}

pub(super) fn finite_positive(ctx: &Ctx<'_>, path: &[Seg], what: &str, v: &toml::Value) -> Result<f64, SpecError> {
    let x = as_f64(v).ok_or_else(|| ctx.err(path, format!("{what} must be a number")))?;
    if x > 0.0 && x.is_finite() { Ok(x) } else { Err(ctx.err(path, format!("{what} must be finite and > 0, got {x}"))) }
}

/// The keys of a generated spectrum: its rule (`linspace`, `log` or `power_law`), its dimension
/// `num`, and `max` (for power_law).
pub(super) const SPECTRUM_KEYS: [&str; 5] = ["linspace", "log", "power_law", "num", "max"];

pub(super) fn eigenvalues(ctx: &Ctx<'_>, path: &[Seg], value: &toml::Value) -> Result<Eigenvalues, SpecError> {
    let sub = |key: &str| {
        let mut p = path.to_vec();
        p.push(k(key));
        p
    };
    match value {
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err(ctx.err(path, "eigenvalues must not be empty"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                out.push(finite_positive(ctx, &p, "eigenvalues", v)?);
            }
            Ok(Eigenvalues::List(out))
        }
        toml::Value::Table(t) => {
            let rules: Vec<&str> =
                ["linspace", "log", "power_law"].into_iter().filter(|r| t.contains_key(*r)).collect();
            for key in t.keys() {
                if !SPECTRUM_KEYS.contains(&key.as_str()) {
                    return Err(ctx.err(
                        &sub(key),
                        format!("unknown key `{key}` in a generated spectrum (expected linspace, log or power_law, with num)"),
                    ));
                }
            }
            let [rule] = rules[..] else {
                return Err(ctx.err(
                    path,
                    "a generated spectrum needs exactly one of `linspace = [lo, hi]`, `log = [lo, hi]` or `power_law = alpha`",
                ));
            };
            let num = match t.get("num") {
                Some(toml::Value::Integer(n)) if *n >= 1 && (*n as u64) <= MAX_DIM as u64 => *n as usize,
                Some(_) => {
                    return Err(ctx.err(
                        &sub("num"),
                        format!("`num` (the dimension) must be a whole number from 1 to {MAX_DIM}"),
                    ));
                }
                None => return Err(ctx.err(path, "a generated spectrum needs `num`, the dimension")),
            };
            if rule != "power_law" && t.contains_key("max") {
                return Err(ctx.err(&sub("max"), "`max` applies to power_law spectra only"));
            }
            let spectrum = if rule == "power_law" {
                let alpha = as_f64(&t["power_law"]).filter(|a| *a >= 0.0 && a.is_finite()).ok_or_else(|| {
                    ctx.err(&sub("power_law"), "power_law takes the exponent alpha, a finite number >= 0")
                })?;
                let max = match t.get("max") {
                    Some(v) => finite_positive(ctx, &sub("max"), "max", v)?,
                    None => 1.0,
                };
                Spectrum::PowerLaw { max, alpha, num }
            } else {
                let ends = match &t[rule] {
                    toml::Value::Array(a) if a.len() == 2 => {
                        let mut e = [0.0; 2];
                        for (i, v) in a.iter().enumerate() {
                            let mut p = sub(rule);
                            p.push(Seg::Index(i));
                            e[i] = finite_positive(ctx, &p, "spectrum ends", v)?;
                        }
                        e
                    }
                    _ => return Err(ctx.err(&sub(rule), format!("`{rule}` must be a list of two numbers [lo, hi]"))),
                };
                if rule == "log" {
                    Spectrum::Log { lo: ends[0], hi: ends[1], num }
                } else {
                    Spectrum::Linspace { lo: ends[0], hi: ends[1], num }
                }
            };
            Ok(Eigenvalues::Generated(spectrum))
        }
        _ => Err(ctx.err(
            path,
            "eigenvalues must be a list of numbers or a generated spectrum such as { log = [0.1, 10.0], num = 1000 }",
        )),
    }
}

pub(super) fn sigma(ctx: &Ctx<'_>, path: &[Seg], value: &toml::Value, dim: usize) -> Result<Sigma, SpecError> {
    let check = |p: &[Seg], v: &toml::Value| -> Result<f64, SpecError> {
        let x = as_f64(v).ok_or_else(|| ctx.err(p, "sigma must be a number or a list of numbers"))?;
        if x >= 0.0 && x.is_finite() {
            Ok(x)
        } else {
            Err(ctx.err(p, format!("sigma must be finite and >= 0, got {x}")))
        }
    };
    match value {
        toml::Value::Array(items) => {
            if items.len() != dim {
                return Err(ctx.err(
                    path,
                    format!(
                        "a per-coordinate sigma needs one value per coordinate: {} given, the landscape has d = {dim}",
                        items.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(dim);
            for (i, v) in items.iter().enumerate() {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                out.push(check(&p, v)?);
            }
            Ok(Sigma::PerCoordinate(out))
        }
        v => Ok(Sigma::Scalar(check(path, v)?)),
    }
}
