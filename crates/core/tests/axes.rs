//! Named axes: `task.*` overrides and `params.*` user parameters in the grid, their errors, the
//! tasks they make, and what they do (and do not do) to trial ids.

use kappa_core::{Plan, TaskSpec};

mod common;

use common::{ids, parse};

const BASE: &str = common::sweep!(
    "axes",
    r#"
[grid]
optimizer = ["sgd", "signsgd"]
lr = [1e-2]
seed = [0, 1]
"#
);

/// `BASE` with `extra` appended to `[grid]` (the last table).
fn with_axes(extra: &str) -> String {
    format!("{BASE}{extra}\n")
}

/// Each case appends to `[grid]` of `base` (or, with a `from`, replaces it) and must be rejected
/// at `line` with `fragment` in the error.
/// Each case: (text replaced, replacement or appended line, line, column, message fragment).
fn assert_rejected(base: &str, cases: &[(&str, &str, usize, usize, &str)]) {
    let mut wrong = Vec::new();
    for (from, to, line, column, fragment) in cases {
        let text = if from.is_empty() { format!("{base}{to}\n") } else { base.replacen(from, to, 1) };
        assert!(from.is_empty() || base.contains(from), "case setup: {from}");
        match parse(&text) {
            Ok(_) => wrong.push(format!("{to:?} was accepted")),
            Err(err) => {
                let shown = err.to_string();
                if !shown.contains(fragment) || err.line != Some(*line) || err.column != Some(*column) {
                    wrong.push(format!("{to:?}: expected {line}:{column} and {fragment:?}, got:\n{shown}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn bad_named_axes_are_named_with_their_line() {
    // BASE has 16 lines (its first is empty); an appended axis is on line 17.
    assert_eq!(BASE.lines().count(), 16);
    assert_rejected(
        BASE,
        &[
            (
                "",
                "task.noise.sigmaa = [1.0]",
                17,
                21,
                "unknown task field `task.noise.sigmaa` (the nearest task field is `task.noise.sigma`)",
            ),
            ("", "task.nosie.sigma = [1.0]", 17, 20, "nearest task field is `task.noise.sigma`"),
            ("", "task.argv = [[\"a\"]]", 17, 13, "cannot be an axis"),
            ("", "params.lr = [1, 2]", 17, 13, "clashes with the built-in placeholder {lr}"),
            ("", "params.trial_id = [1]", 17, 19, "clashes with the built-in placeholder {trial_id}"),
            ("", "params.a.b = [1]", 17, 14, "must be one word"),
            ("", "params.mode = [1, \"a\"]", 17, 19, "mixes values of different kinds"),
            ("", "params.mode = [[1], [2]]", 17, 16, "numbers, strings or booleans"),
            ("", "params.width = [64, 64]", 17, 16, "repeats the value 64"),
            ("", "params.width = []", 17, 16, "is empty"),
            ("", "task.noise.sigma = [1.0, -2.0]", 17, 26, "task.noise.sigma = -2 makes the task invalid"),
            ("", "task.paths = [64, \"many\"]", 17, 19, "task.paths = many is not a valid value here"),
            ("", "task.kind = [\"optimizer\", \"train\"]", 17, 13, "may vary between \"optimizer\" and \"sde\" only"),
            ("", "task = 3", 17, 8, "takes dotted keys"),
            ("", "params = 3", 17, 10, "takes dotted keys"),
            (
                "optimizer = [\"sgd\", \"signsgd\"]",
                "optimizer = [\"sgd\"]\ntask.noise.sigma = [1.0]\ntask.noise.sigma = [2.0]",
                16,
                12,
                "duplicate key",
            ),
        ],
    );
}

#[test]
fn an_override_that_breaks_a_cross_check_names_the_axis_value() {
    // SGD's SDE needs finite variance: Student-t with nu = 1 has none.
    let sde = BASE.replace("kind = \"optimizer\"", "kind = \"sde\"").replace(
        "noise = { kind = \"gaussian\", sigma = 1.0 }",
        "noise = { kind = \"student_t\", sigma = 1.0, nu = 3.0 }",
    );
    parse(&sde).unwrap();
    let err = parse(&format!("{sde}task.noise.nu = [3.0, 1.0]\n")).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.line, Some(17), "{shown}");
    assert!(
        shown.contains("task.noise.nu = 1 makes the task invalid") && shown.contains("finite noise variance"),
        "{shown}"
    );
    assert!(shown.contains("grid.optimizer"), "says where the check failed: {shown}");
}

#[test]
fn rule_exponents_for_named_parameters_are_checked() {
    let scaled = |rule: &str, axes: &str| format!("{BASE}{axes}\n[scaling]\nkappa = [1, 4]\nrules = [{rule}]\n");
    let err = parse(&scaled("{ name = \"r\", lr = 0.5, params = { act = 1.0 } }", "params.act = [\"relu\", \"gelu\"]"))
        .unwrap_err();
    assert!(err.to_string().contains("`params.act` is not numeric"), "{err}");
    assert_eq!((err.line, err.column), (Some(20), Some(51)), "at the exponent: {err}");
    let err = parse(&scaled("{ name = \"r\", params = { warmup = 1.0 } }", "")).unwrap_err();
    assert!(err.to_string().contains("`params.warmup`, which is not an axis"), "{err}");
    let err = parse(&scaled("{ name = \"r\", task = { burn_in = 1.0 } }", "")).unwrap_err();
    assert!(err.to_string().contains("which the task does not set"), "{err}");
    let err = parse(&scaled("{ name = \"r\", task = { kind = 1.0 } }", "")).unwrap_err();
    assert!(err.to_string().contains("not a number in the task"), "{err}");
    let err = parse(&scaled("{ name = \"r\", task = { x0 = 1000.0 } }", "")).unwrap_err();
    assert!(err.to_string().contains("rule `r` at κ = 4 makes task.x0 = inf") && err.line == Some(20), "{err}");
    let err = parse(&scaled("{ name = \"r\", task = { nosie = 1.0 } }", "")).unwrap_err();
    assert!(err.to_string().contains("nearest task field is `task.noise`"), "{err}");
    // A whole-number parameter is scaled and rounded; a real one is scaled.
    let s = parse(&scaled(
        "{ name = \"warm\", lr = 0.5, params = { warmup = -1.0, scale = 0.5 } }",
        "params.warmup = [1000]\nparams.scale = [1.5]",
    ))
    .unwrap();
    let plan = Plan::new(&s, "v");
    let scaled: Vec<_> = plan.trials().filter(|t| t.variant.is_some()).collect();
    assert_eq!(scaled.len(), 4);
    assert_eq!(scaled[0].params.named["params.warmup"], serde_json::json!(250));
    assert_eq!(scaled[0].params.named["params.scale"], serde_json::json!(3.0));
    let three = parse(&s_with_kappa3()).unwrap();
    let t = Plan::new(&three, "v").trials().find(|t| t.variant.is_some()).unwrap();
    assert_eq!(t.params.named["params.warmup"], serde_json::json!(333), "1000 / 3 rounded");
}

#[test]
fn a_rule_may_scale_task_fields_and_each_scaled_trial_runs_its_own_task() {
    // Steps kept constant as the batch grows: samples ∝ κ, on top of the linear rule.
    let text = format!(
        "{}task.x0 = [0.5, 1.0]\n[scaling]\nkappa = [1, 4]\nrules = [{{ name = \"steps\", lr = 1.0, task = {{ samples = 1.0 }} }}, \"sgd-linear\"]\n",
        BASE.replace("optimizer = [\"sgd\", \"signsgd\"]", "optimizer = [\"sgd\"]")
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.variants.len(), 2 + 2, "two x0 tasks, and each scaled by `steps` at κ = 4");
    let plan = Plan::new(&s, "v");
    let trials: Vec<_> = plan.trials().collect();
    assert_eq!(trials.len(), 2 * 2 * 3, "x0 × seeds × (base, steps, sgd-linear)");
    for t in &trials {
        let TaskSpec::Optimizer(sim) = &s.variants[t.task].task else { panic!() };
        assert_eq!(sim.x0, t.params.named["task.x0"].as_f64().unwrap(), "the scaled task keeps its x0");
        match t.variant {
            Some((0, 4)) => {
                assert_eq!(sim.samples, 40_000);
                assert_eq!(t.params.named["task.samples"], serde_json::json!(40_000));
            }
            _ => {
                assert_eq!(sim.samples, 10_000);
                assert!(!t.params.named.contains_key("task.samples"));
            }
        }
    }
    // The same hyperparameters with the budget scaled are another trial than without.
    let steps: Vec<_> = trials.iter().filter(|t| t.variant == Some((0, 4))).map(|t| t.id).collect();
    let linear: Vec<_> = trials.iter().filter(|t| t.variant == Some((1, 4))).map(|t| t.id).collect();
    assert!(steps.iter().all(|id| !linear.contains(id)));
}

fn s_with_kappa3() -> String {
    format!(
        "{BASE}params.warmup = [1000]\n[scaling]\nkappa = [1, 3]\nrules = [{{ name = \"warm\", params = {{ warmup = -1.0 }} }}]\n"
    )
}

#[test]
fn each_task_combination_is_validated_and_run_as_its_own_task() {
    let s = parse(&with_axes("task.noise.sigma = [0.5, 1.0, 2.0]\ntask.x0 = [0.0, 1.0]")).unwrap();
    assert_eq!(s.variants.len(), 6);
    let plan = Plan::new(&s, "v");
    assert_eq!(plan.trials().count(), 2 * 6 * 2);
    for t in plan.trials() {
        let TaskSpec::Optimizer(sim) = &s.variants[t.task].task else { panic!() };
        let sigma = t.params.named["task.noise.sigma"].as_f64().unwrap();
        let x0 = t.params.named["task.x0"].as_f64().unwrap();
        assert_eq!(*sim.noise.sigma(), kappa_core::task::Sigma::Scalar(sigma));
        assert_eq!(sim.x0, x0);
    }
    // A task axis can be zipped with a built-in one.
    let z = parse(&format!("{BASE}\n[[zip]]\nbatch_size = [1, 4]\ntask.noise.sigma = [1.0, 2.0]\n")).unwrap();
    let pairs: Vec<(u64, f64)> = Plan::new(&z, "v")
        .trials()
        .map(|t| (t.params.hyper.batch_size, t.params.named["task.noise.sigma"].as_f64().unwrap()))
        .collect();
    assert!(pairs.iter().all(|p| *p == (1, 1.0) || *p == (4, 2.0)), "{pairs:?}");
}

#[test]
fn a_kind_axis_leaves_out_what_a_kind_does_not_read_and_runs_repeats_once() {
    let text = with_axes("task.kind = [\"optimizer\", \"sde\"]\ntask.sde_model = [\"compagnoni\", \"malladi\"]")
        .replace("[\"sgd\", \"signsgd\"]", "[\"adam\"]");
    let s = parse(&text).unwrap();
    let plan = Plan::new(&s, "v");
    assert_eq!(plan.len(), 2 * 2 * 2, "grid points");
    let trials: Vec<_> = plan.trials().collect();
    assert_eq!(trials.len(), 3 * 2, "optimizer, sde × 2 models; per seed");
    let optimizer: Vec<_> = trials.iter().filter(|t| t.params.named["task.kind"] == "optimizer").collect();
    assert_eq!(optimizer.len(), 2);
    assert!(optimizer.iter().all(|t| !t.params.named.contains_key("task.sde_model")));
    // Written in [task] itself, a field the kind does not read stays an error.
    let err = parse(&text.replace("samples = 10_000", "samples = 10_000\nsde_model = \"malladi\"")).unwrap_err();
    assert!(err.to_string().contains("does not apply to kind = \"optimizer\""), "{err}");
    assert!(err.to_string().contains("task.refine = [2]"), "hints at a one-value axis: {err}");
}

#[test]
fn ids_depend_on_what_a_trial_is_not_where_a_value_was_written() {
    let plain = ids(BASE);
    // An axis equal to the [task] value changes nothing.
    assert_eq!(ids(&with_axes("task.noise.sigma = [1.0]")), plain);
    // Moving the value from [task] to the grid changes nothing.
    let moved =
        with_axes("task.noise.sigma = 1.0").replace("{ kind = \"gaussian\", sigma = 1.0 }", "{ kind = \"gaussian\" }");
    assert_eq!(ids(&moved), plain);
    // A σ axis keeps the ids of its σ = 1 trials and adds new ones.
    let sigma = ids(&with_axes("task.noise.sigma = [1.0, 2.0]"));
    assert_eq!(sigma.len(), 2 * plain.len());
    assert!(plain.iter().all(|id| sigma.contains(id)));
    // A user parameter is part of the id.
    let user = ids(&with_axes("params.width = [256]"));
    assert!(user.iter().all(|id| !plain.contains(id)));
    assert_eq!(ids(&with_axes("params.width = [256]")), user, "deterministic");
}

#[test]
fn a_command_sweep_needs_no_built_in_axis_and_checks_its_placeholders() {
    let text = r#"
version = 1
name = "cmd"

[task]
kind = "command"
argv = ["python3", "train.py", "--width={width}", "--seed={seed}"]
env = { ACT = "{act}" }

[grid]
params.width = [256, 512]
params.act = ["relu", "gelu"]
"#;
    let s = parse(text).unwrap();
    let trials: Vec<_> = Plan::new(&s, "v").trials().collect();
    assert_eq!(trials.len(), 4);
    let p = &trials[0].params;
    assert_eq!(
        serde_json::to_value(p).unwrap(),
        serde_json::json!({"seed": 0, "params.act": "relu", "params.width": 256}),
        "only the named axes and the seed"
    );
    let err = parse(&text.replace("--width={width}", "--lr={lr}")).unwrap_err();
    assert!(err.to_string().contains("the grid has no `lr` axis") && err.line == Some(7), "{err}");
    let err = parse(&text.replace("--width={width}", "--depth={depth}")).unwrap_err();
    assert!(err.to_string().contains("params.depth = [...]"), "{err}");
    let err = parse(&text.replace("{act}", "{activation}")).unwrap_err();
    assert!(err.line == Some(8), "{err}");
    // Simulations still need an optimizer and a learning rate.
    let err = parse(&BASE.replace("lr = [1e-2]\n", "")).unwrap_err();
    assert!(err.to_string().contains("must set `lr`"), "{err}");
}

#[test]
fn params_round_trip_through_their_written_form() {
    let s = parse(&with_axes("params.width = [256]\ntask.noise.sigma = [2.0]")).unwrap();
    for t in Plan::new(&s, "v").trials() {
        let text = serde_json::to_string(&t.params).unwrap();
        assert!(text.contains("\"params.width\":256") && text.contains("\"task.noise.sigma\":2.0"), "{text}");
        let back: kappa_core::Params = serde_json::from_str(&text).unwrap();
        assert_eq!(back, t.params);
    }
    assert!(serde_json::from_str::<kappa_core::Params>(r#"{"seed": 0, "width": 1}"#).is_err());
}

#[test]
fn what_a_review_found_stays_fixed() {
    // The optimizer and lr are required by the effective kind, not by [task]'s.
    let noop_to_sim = r#"
version = 1
name = "k"
[task]
kind = "noop"
[grid]
task.kind = ["optimizer"]
task.landscape = [{ kind = "quadratic", eigenvalues = [1.0] }]
task.noise = [{ kind = "gaussian", sigma = 1.0 }]
task.samples = [100]
"#;
    let err = parse(noop_to_sim).unwrap_err();
    assert!(err.to_string().contains("must set `optimizer`"), "{err}");
    parse("version = 1\nname = \"k\"\n[task]\n[grid]\ntask.kind = [\"noop\"]\nseed = [0, 1]\n").unwrap();
    // Scaling needs the built-ins it scales, or a scaled trial is its base trial again.
    let cmd = "version = 1\nname = \"c\"\n[task]\nkind = \"command\"\nargv = [\"p\", \"{w}\"]\n[grid]\n\
               params.w = [10, 20]\n[scaling]\nkappa = [1, 2]\nrules = [\"none\"]\n";
    let err = parse(cmd).unwrap_err();
    assert!(err.to_string().contains("must name `optimizer` and `lr`"), "{err}");
    // Cross-table checks pair a task value with the optimizers zipped with it only.
    let sde =
        BASE.replace("kind = \"optimizer\"", "kind = \"sde\"").replace("optimizer = [\"sgd\", \"signsgd\"]\n", "");
    parse(&format!(
        "{sde}\n[[zip]]\noptimizer = [\"adam\", \"sgd\"]\ntask.sde_model = [\"malladi\", \"compagnoni\"]\n"
    ))
    .unwrap();
    let err = parse(&format!(
        "{sde}\n[[zip]]\noptimizer = [\"sgd\", \"adam\"]\ntask.sde_model = [\"malladi\", \"compagnoni\"]\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("not sgd"), "{err}");
    // Values written differently that make the same task are one trial.
    let s = parse(&with_axes("task.noise.sigma = [1, 1.0]")).unwrap();
    assert_eq!(Plan::new(&s, "v").trials().count(), ids(BASE).len());
    // A range over a real field is not rounded; over a whole-number field it is.
    let s = parse(&with_axes("task.noise.sigma = { log = [1, 100], num = 5 }")).unwrap();
    let Some(kappa_core::AxisValues::Named(v)) = s.grid.named_axis("task.noise.sigma") else { panic!() };
    assert!((v[1].as_f64().unwrap() - 10f64.sqrt()).abs() < 1e-12, "{v:?}");
    let s = parse(&with_axes("task.paths = { linspace = [10, 20], num = 3 }")).unwrap();
    let Some(kappa_core::AxisValues::Named(v)) = s.grid.named_axis("task.paths") else { panic!() };
    assert_eq!(*v, vec![serde_json::json!(10), serde_json::json!(15), serde_json::json!(20)]);
    assert_rejected(
        BASE,
        &[
            ("", "task.landscape.eigenvalues = { log = [1, 100], num = 4 }", 17, 30, "give a list of spectra"),
            ("", "params.width = [1]\nparams.Width = [2]", 17, 16, "both would be KAPPA_PARAM_WIDTH"),
            ("", "params.x = {}", 17, 12, "is an empty table"),
            ("", "task = {}", 17, 8, "takes dotted keys"),
            ("", "foo = [1]", 17, 7, "a [task] field is `task.<field>`"),
        ],
    );
}
