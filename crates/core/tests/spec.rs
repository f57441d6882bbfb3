//! Sweep-file parsing and validation: every invalid input gives its own message, at its place.

use kappa_core::{AxisName, Hyperparams, OptimizerKind, Plan};

mod common;

use common::{ids, parse};

const VALID: &str = common::sweep!(
    "demo",
    r#"record_every = "5%"

[grid]
optimizer = ["sgd", "signsgd"]
batch_size = [1, 4]
lr = { log = [1e-3, 1e-1], num = 3 }
seed = [0, 1]

[execution]
retries = 1
timeout = "10m"
"#
);

/// Each case edits `base` (first occurrence of `from` → `to`) and must be rejected with an error at
/// `line` of sweep.toml whose text contains `fragment`; every wrong case is listed at once.
fn assert_rejected(base: &str, cases: &[(&str, &str, usize, &str)]) {
    let mut wrong = Vec::new();
    for (from, to, line, fragment) in cases {
        assert!(base.contains(from), "case setup: {from}");
        let Err(err) = parse(&base.replacen(from, to, 1)) else {
            wrong.push(format!("{to:?} was accepted"));
            continue;
        };
        let shown = err.to_string();
        if !shown.contains(fragment) || err.line != Some(*line) || !shown.starts_with(&format!("sweep.toml:{line}:")) {
            wrong.push(format!("{to:?}: expected line {line} and {fragment:?}, got:\n{shown}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn valid_file_expands() {
    let s = parse(VALID).unwrap();
    assert_eq!(s.name, "demo");
    assert_eq!(s.grid.len(), 2 * 2 * 3 * 2);
    assert_eq!(s.execution.retries, kappa_core::RetryPolicy::uniform(1));
    let t = parse(&VALID.replace("retries = 1", "retries = { error = 0, lost = 9 }\nfailure_budget = 20")).unwrap();
    assert_eq!(t.execution.retries, kappa_core::RetryPolicy { error: 0, crash: 2, timeout: 2, lost: 9 });
    assert_eq!(t.execution.failure_budget, Some(20));
    let err = parse(&VALID.replace("retries = 1", "retries = { oom = 1 }")).unwrap_err();
    assert!(err.to_string().contains("unknown failure class `oom`"), "{err}");
    let err = parse(&VALID.replace("retries = 1", "retries = -1")).unwrap_err();
    assert!(err.to_string().contains("retries must be a whole number"), "{err}");
    let first = s.grid.point(0).0.hyper;
    assert_eq!(first.optimizer, OptimizerKind::Sgd);
    assert_eq!(first.lr, 1e-3);
    assert_eq!(first.beta1, Hyperparams::DEFAULT_BETA1);
    let last = s.grid.point(s.grid.len() - 1).0.hyper;
    assert_eq!((last.optimizer, last.batch_size, last.lr, last.seed), (OptimizerKind::SignSgd, 4, 1e-1, 1));
}

/// (what is changed, the replacement, the expected line, a fragment of the expected message)
#[test]
fn invalid_inputs_name_key_line_and_problem() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("lr = { log = [1e-3, 1e-1], num = 3 }", "lr = [1e-3, -1e-2]", 17, "`grid.lr[1]`: learning rate must be > 0"),
        ("lr = { log = [1e-3, 1e-1], num = 3 }", "lr = [0.0]", 17, "learning rate must be > 0, got 0"),
        ("lr = { log = [1e-3, 1e-1], num = 3 }", "lr = []", 17, "`grid.lr`: axis `lr` is empty"),
        ("seed = [0, 1]", "seed = [0, 1]\nbeta1 = [0.9, 1.0]", 19, "`grid.beta1[1]`: beta1 must be in [0, 1), got 1"),
        ("seed = [0, 1]", "seed = [0, 1]\nbeta2 = [-0.1]", 19, "beta2 must be in [0, 1)"),
        ("batch_size = [1, 4]", "batch_size = [0, 4]", 16, "`grid.batch_size[0]`: batch size must be at least 1"),
        ("sigma = 1.0", "sigma = -1.0", 8, "`task.noise.sigma`: sigma must be finite and >= 0"),
        ("x0 = 0.5", "x0 = 0.5\nlearning_rate = 3", 10, "unknown field `learning_rate`"),
        ("seed = [0, 1]", "seed = [0, 1]\nmomentum = [0.9]", 19, "unknown grid axis `momentum`"),
        ("retries = 1", "retries = 1\nretry = 2", 22, "unknown field `retry`"),
        ("version = 1", "version = 2", 2, "unsupported sweep file version 2"),
        ("name = \"demo\"", "name = \"a/b\"", 3, "sweep name \"a/b\""),
        ("timeout = \"10m\"", "timeout = \"10 fortnights\"", 22, "unknown duration unit"),
        ("optimizer = [\"sgd\", \"signsgd\"]", "optimizer = [\"sgd\", \"lamb\"]", 15, "unknown optimizer `lamb`"),
        ("seed = [0, 1]", "seed = [0, 0]", 18, "repeats the value 0"),
        ("samples = 10_000", "samples = 2", 16, "batch size 4 is larger than the sample budget"),
        ("eigenvalues = [0.5, 1.0, 2.0, 4.0]", "eigenvalues = [0.5, 0.0]", 7, "`task.landscape.eigenvalues[1]`"),
        ("paths = 64", "paths = 0", 10, "`task.paths`: paths must be at least 1"),
        (
            "lr = { log = [1e-3, 1e-1], num = 3 }",
            "lr = { log = [0.0, 1e-1], num = 3 }",
            17,
            "a log range needs positive ends",
        ),
        ("lr = { log = [1e-3, 1e-1], num = 3 }", "lr = { log = [1e-3, 1e-1] }", 17, "needs `num`"),
        ("lr = { log = [1e-3, 1e-1], num = 3 }", "lr = { logg = [1e-3, 1e-1], num = 3 }", 17, "unknown key `logg`"),
        ("record_every = \"5%\"", "record_every = \"5 percent\"", 12, "record_every must look like"),
        ("optimizer = [\"sgd\", \"signsgd\"]", "", 14, "the grid must set `optimizer`"),
        ("[execution]", "[execution]\nmax_trials = 10", 14, "the grid has 24 points, more than the cap of 10"),
    ];
    assert_rejected(VALID, cases);
}

#[test]
fn syntax_errors_have_positions() {
    let err = parse("version = 1\nname = \"x\"\n[task\n").unwrap_err();
    assert_eq!(err.line, Some(3));
    let err = parse("").unwrap_err();
    assert!(err.to_string().contains("missing field"), "{err}");
}

#[test]
fn zip_groups_vary_together() {
    let text = VALID
        .replace("batch_size = [1, 4]\n", "")
        .replace("[execution]", "[[zip]]\nbatch_size = [1, 4, 16]\nlr = [0.01, 0.02, 0.04]\n\n[execution]");
    let text = text.replace("lr = { log = [1e-3, 1e-1], num = 3 }\n", "");
    let s = parse(&text).unwrap();
    assert_eq!(s.grid.len(), 2 * 3 * 2);
    let pairs: Vec<(u64, f64)> = s.grid.iter().map(|p| (p.hyper.batch_size, p.hyper.lr)).collect();
    assert!(pairs.iter().all(|&(b, lr)| (b == 1 && lr == 0.01) || (b == 4 && lr == 0.02) || (b == 16 && lr == 0.04)));

    let bad = text.replace("lr = [0.01, 0.02, 0.04]", "lr = [0.01, 0.02]");
    let err = parse(&bad).unwrap_err();
    assert!(err.to_string().contains("equal lengths"), "{err}");
    let twice = text.replace("seed = [0, 1]", "seed = [0, 1]\nlr = [0.5]");
    let err = parse(&twice).unwrap_err();
    assert!(err.to_string().contains("axis `lr` is already set"), "{err}");
}

#[test]
fn ids_do_not_depend_on_key_or_axis_order() {
    let reordered = VALID
        .replace(
            "optimizer = [\"sgd\", \"signsgd\"]\nbatch_size = [1, 4]\nlr = { log = [1e-3, 1e-1], num = 3 }\nseed = [0, 1]",
            "seed = [0, 1]\nlr = { num = 3, log = [1e-3, 1e-1] }\nbatch_size = [1, 4]\noptimizer = [\"sgd\", \"signsgd\"]",
        )
        .replace("x0 = 0.5\npaths = 64", "paths = 64\nx0 = 5e-1")
        .replace("kind = \"quadratic\", eigenvalues", "eigenvalues")
        .replace("4.0] }", "4.0], kind = \"quadratic\" }");
    assert_ne!(reordered, VALID);
    let mut a = ids(VALID);
    let mut b = ids(&reordered);
    assert_eq!(a.len(), 24);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Defaults written out give the same ids as defaults left out.
    let explicit = VALID.replace("paths = 64", "paths = 64\nburn_in = 0.5");
    assert_eq!(ids(VALID), ids(&explicit));
}

#[test]
fn changing_one_value_changes_only_its_trials() {
    let a = ids(VALID);
    let b = ids(&VALID.replace("batch_size = [1, 4]", "batch_size = [1, 8]"));
    let same = a.iter().filter(|id| b.contains(id)).count();
    assert_eq!(same, 12, "the batch-size-1 half is unchanged");
    let c = ids(&VALID.replace("sigma = 1.0", "sigma = 2.0"));
    assert!(a.iter().all(|id| !c.contains(id)), "a task change touches every trial");
    let all: std::collections::HashSet<_> = a.iter().collect();
    assert_eq!(all.len(), a.len(), "ids are distinct");
}

#[test]
fn a_million_point_grid_plans_lazily() {
    let text = VALID
        .replace("lr = { log = [1e-3, 1e-1], num = 3 }", "lr = { log = [1e-4, 1e-1], num = 1000 }")
        .replace("seed = [0, 1]", "seed = { linspace = [0, 249], num = 250 }");
    let s = parse(&text).unwrap();
    assert_eq!(s.grid.len(), 1_000_000);
    assert_eq!(s.grid.axis(AxisName::Seed).map(|a| a.len()), Some(250));
    let plan = Plan::new(&s, "v");
    let last = plan.trial(999_999);
    assert_eq!(last.params.hyper.seed, 249);
}

const SDE: &str = r#"
version = 1
name = "sde"

[task]
kind = "sde"
landscape = { kind = "quadratic", eigenvalues = { log = [0.1, 10.0], num = 1000 } }
noise = { kind = "student_t", sigma = 1.0, nu = 3.0 }
refine = 4
sde_model = "compagnoni"
samples = 1000

[grid]
optimizer = ["sgd", "adam"]
lr = [0.01]
"#;

#[test]
fn sde_tasks_and_new_noise_parse() {
    let s = parse(SDE).unwrap();
    let kappa_core::TaskSpec::Sde(sim) = &s.task else { panic!("{:?}", s.task) };
    assert_eq!(sim.landscape.dim(), 1000);
    assert_eq!(sim.refine, 4);
    assert_eq!(sim.noise.variance_factor(), Some(3.0));
    let pl = SDE.replace("{ log = [0.1, 10.0], num = 1000 }", "{ power_law = 1.5, max = 2.0, num = 100000 }");
    let s = parse(&pl).unwrap();
    assert_eq!(s.task.sim().unwrap().landscape.dim(), 100_000);
    let per = SDE
        .replace("{ log = [0.1, 10.0], num = 1000 }", "[1.0, 2.0]")
        .replace("sigma = 1.0, nu = 3.0", "sigma = [0.5, 0.0], nu = 3.0");
    parse(&per).unwrap();
}

#[test]
fn invalid_sde_and_noise_settings_are_named() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("refine = 4", "refine = 0", 9, "`task.refine`: refine must be from 1 to 10000"),
        ("nu = 3.0", "nu = 0.0", 8, "`task.noise.nu`: nu must be finite and > 0"),
        ("sigma = 1.0, nu = 3.0", "sigma = 1.0", 8, "student_t noise needs `nu`"),
        (
            "kind = \"student_t\", sigma = 1.0, nu = 3.0",
            "kind = \"gaussian\", sigma = 1.0, nu = 3.0",
            8,
            "`nu` applies to kind = \"student_t\"",
        ),
        (
            "sigma = 1.0, nu",
            "sigma = [1.0, 2.0], nu",
            8,
            "one value per coordinate: 2 given, the landscape has d = 1000",
        ),
        ("num = 1000 }", "num = 0 }", 7, "`num` (the dimension) must be a whole number"),
        (
            "{ log = [0.1, 10.0], num = 1000 }",
            "{ log = [0.0, 10.0], num = 1000 }",
            7,
            "spectrum ends must be finite and > 0",
        ),
        ("{ log = [0.1, 10.0], num = 1000 }", "{ num = 1000 }", 7, "needs exactly one of"),
        (
            "sde_model = \"compagnoni\"",
            "sde_model = \"malladi\"",
            14,
            "malladi\" defines SDEs for rmsprop, rmspropw, adam, adamw only, not sgd",
        ),
        (
            "optimizer = [\"sgd\", \"adam\"]",
            "optimizer = [\"sgd\", \"lion\"]",
            14,
            "lion has no SDE in kappa yet; the optimizers with one are sgd, signsgd, rmsprop, rmspropw, adam, adamw",
        ),
        ("nu = 3.0", "nu = 2.0", 14, "the sgd SDE needs finite noise variance"),
        ("refine = 4", "refine = 4\nbias_correction = false", 10, "`bias_correction` applies to kind = \"optimizer\""),
        (
            "kind = \"sde\"",
            "kind = \"optimizer\"",
            9,
            "`refine` does not apply to kind = \"optimizer\" (it applies to kind = \"sde\", \"train\")",
        ),
        ("kind = \"sde\"", "kind = \"langevin\"", 6, "unknown variant `langevin`"),
    ];
    assert_rejected(SDE, cases);
}

const SCALED: &str = r#"
version = 1
name = "scaled"

[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [1.0] }
noise = { kind = "gaussian", sigma = 1.0 }
samples = 10_000

[grid]
optimizer = ["adamw"]
lr = [1e-3]
beta1 = [0.9]
weight_decay = [1.0]
seed = [0, 1]

[scaling]
kappa = [1, 2, 4]
rules = ["adamw-sqrt", { preset = "adam-sqrt", name = "fixed", expect = "fails" }]
"#;

#[test]
fn scaling_expands_every_base_point_under_every_rule() {
    let s = parse(SCALED).unwrap();
    let sc = s.scaling.as_ref().unwrap();
    assert_eq!(sc.kappas, vec![1, 2, 4]);
    assert_eq!(sc.rules[1].name, "fixed");
    assert_eq!(sc.rules[1].expect, Some(kappa_core::Verdict::Fails));
    let plan = Plan::new(&s, "v");
    let trials: Vec<_> = plan.trials().collect();
    assert_eq!(trials.len(), 2 * (1 + 2 * 2));
    let t = trials.iter().find(|t| t.variant == Some((0, 4))).unwrap();
    assert_eq!(t.params.hyper.batch_size, 4);
    assert!((t.params.hyper.lr - 2e-3).abs() < 1e-15 && (t.params.hyper.beta1 - 0.6).abs() < 1e-12);
    // With θ = 0 the two rules derive the same AdamW trials: each runs once.
    let same = SCALED.replace("weight_decay = [1.0]", "weight_decay = [0.0]");
    let s = parse(&same).unwrap();
    assert_eq!(Plan::new(&s, "v").trials().count(), 2 * (1 + 2));
}

#[test]
fn invalid_scaling_is_named() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "kappa = [1, 2, 4]",
            "kappa = [1, 2, 16]",
            20,
            "rule `adamw-sqrt` at κ = 16 scales base point beta1 = 0.9 (grid.beta1[0])",
        ),
        ("kappa = [1, 2, 4]", "kappa = [0, 2]", 19, "`scaling.kappa[0]`: κ values are batch multipliers"),
        ("kappa = [1, 2, 4]", "kappa = [1]", 19, "at least one κ > 1"),
        ("rules = [\"adamw-sqrt\",", "rules = [\"adamw-cbrt\",", 20, "unknown scaling rule `adamw-cbrt`"),
        ("expect = \"fails\"", "expect = \"maybe\"", 20, "expect must be"),
        ("name = \"fixed\"", "name = \"adamw-sqrt\"", 20, "rule `adamw-sqrt` is listed twice"),
        ("kappa = [1, 2, 4]", "kappa = [1, 2, 4]\nrulez = []", 20, "unknown key `rulez` in [scaling]"),
        ("samples = 10_000", "samples = 3", 19, "κ = 4 scales batch size 1 to 4, larger than the sample budget"),
    ];
    assert_rejected(SCALED, cases);
}

#[test]
fn noop_tasks_take_no_simulation_keys() {
    let noop = "version = 1\nname = \"n\"\n[task]\nkind = \"noop\"\nsleep = \"5ms\"\n[grid]\noptimizer = [\"sgd\"]\nlr = [0.1]\n";
    let s = parse(noop).unwrap();
    assert_eq!(s.task, kappa_core::TaskSpec::Noop { sleep_ms: 5 });
    let err = parse(&noop.replace("sleep = \"5ms\"", "samples = 10")).unwrap_err();
    assert!(err.to_string().contains("`samples` does not apply to kind = \"noop\""), "{err}");
    assert_eq!(err.line, Some(5));
    let err = parse(&VALID.replace("x0 = 0.5", "x0 = 0.5\nsleep = \"1s\"")).unwrap_err();
    assert!(
        err.to_string().contains("`sleep` does not apply to kind = \"optimizer\" (it applies to kind = \"noop\")"),
        "{err}"
    );
}

const TRAIN: &str = r#"version = 1
name = "mlp"
[task]
kind = "train"
model = { hidden = [32], activation = "tanh" }
data = { kind = "digits" }
samples = 6400
paths = 4
[grid]
optimizer = ["adamw"]
batch_size = [16, 64]
lr = [1e-3]
"#;

#[test]
fn train_tasks_parse_with_defaults_and_name_bad_values() {
    use kappa_core::task::{Activation, DataSpec, Objective};
    let s = parse(TRAIN).unwrap();
    let kappa_core::TaskSpec::Train(t) = &s.task else { panic!("{:?}", s.task) };
    assert_eq!((t.model.hidden.as_slice(), t.model.activation), (&[32][..], Activation::Tanh));
    assert_eq!((t.data.clone(), t.holdout, t.paths, t.noise, t.sde), (DataSpec::Digits, 0.2, 4, None, false));
    let csv = parse(&TRAIN.replace(
        r#"{ kind = "digits" }"#,
        r#"{ kind = "csv", path = "t.csv", target = "y", objective = "regression" }"#,
    ))
    .unwrap();
    let kappa_core::TaskSpec::Train(t) = &csv.task else { panic!() };
    assert_eq!(
        t.data,
        DataSpec::Csv { path: "t.csv".into(), target: "y".into(), header: true, objective: Objective::Regression }
    );
    let sde = parse(
        &TRAIN.replace("paths = 4", "paths = 4\nnoise = { kind = \"gaussian\", sigma = 0.5 }\nsde = true\nrefine = 2"),
    )
    .unwrap();
    let kappa_core::TaskSpec::Train(t) = &sde.task else { panic!() };
    assert_eq!((t.noise, t.sde, t.refine), (Some(0.5), true, 2));

    let cases: &[(&str, &str, usize, &str)] = &[
        ("hidden = [32]", "hidden = [0]", 5, "hidden layer widths must be from 1 to 65536"),
        ("paths = 4", "paths = 4\nsde = true", 9, "give `noise"),
        ("paths = 4", "paths = 4\nrefine = 2", 9, "`refine` applies with sde = true only"),
        ("paths = 4", "paths = 4\nholdout = 1.0", 9, "holdout must be a fraction in (0, 1)"),
        ("paths = 4", "paths = 4\nnoise = { kind = \"student_t\", sigma = 1.0, nu = 3.0 }", 9, "Gaussian noise only"),
        ("paths = 4", "paths = 4\nx0 = 1.0", 9, "`x0` does not apply to kind = \"train\""),
        (
            r#"{ kind = "digits" }"#,
            r#"{ kind = "digits", path = "x.csv" }"#,
            6,
            "`path` does not apply to data kind = \"digits\"",
        ),
        (r#"{ kind = "digits" }"#, r#"{ kind = "csv", target = "y" }"#, 6, "data kind = \"csv\" needs `path`"),
        (
            r#"{ kind = "digits" }"#,
            r#"{ kind = "csv", path = "a.csv", target = "y", header = false }"#,
            6,
            "must be a column index",
        ),
        (r#"{ kind = "digits" }"#, r#"{ kind = "teacher_student", outputs = 1 }"#, 6, "outputs must be from 2"),
        (r#"{ kind = "digits" }"#, r#"{ kind = "mnist" }"#, 6, "unknown variant `mnist`"),
        ("samples = 6400", "samples = 10", 11, "batch size 16 is larger than the sample budget"),
    ];
    assert_rejected(TRAIN, cases);
}

#[test]
fn command_tasks_check_their_templates() {
    let cmd = r#"version = 1
name = "c"
[task]
kind = "command"
argv = ["python3", "train.py", "--lr", "{lr}", "--bs={batch_size}"]
env = { DATA = "/data/{seed}" }
[grid]
optimizer = ["adamw"]
lr = [0.1, 0.2]
"#;
    let s = parse(cmd).unwrap();
    let kappa_core::TaskSpec::Command(c) = &s.task else { panic!("{:?}", s.task) };
    assert_eq!(c.argv[3], "{lr}");
    assert_eq!(c.env["DATA"], "/data/{seed}");
    assert_rejected(
        cmd,
        &[
            ("{lr}", "{learning_rate}", 5, "unknown placeholder `{learning_rate}`"),
            ("\"python3\", ", "\"\", ", 5, "argv must start with the program"),
            ("DATA = ", "KAPPA_LR = ", 6, "KAPPA_* is kappa's own"),
            ("argv = [", "samples = 5\nargv = [", 5, "`samples` does not apply to kind = \"command\""),
        ],
    );
    let err =
        parse(&cmd.replace("argv = [\"python3\", \"train.py\", \"--lr\", \"{lr}\", \"--bs={batch_size}\"]\n", ""))
            .unwrap_err();
    assert!(err.to_string().contains("needs `argv"), "{err}");
}

#[test]
fn backend_parses_and_only_a_non_cpu_backend_changes_ids() {
    use kappa_core::task::Backend;
    let backend = |text: &str| parse(text).unwrap().task.sim().unwrap().backend;
    assert_eq!(backend(VALID), Backend::Cpu);
    for (name, b) in [("cpu", Backend::Cpu), ("cuda", Backend::Cuda), ("auto", Backend::Auto)] {
        let text = VALID.replace("x0 = 0.5", &format!("x0 = 0.5\nbackend = \"{name}\""));
        assert_eq!(backend(&text), b);
        let sde = text.replace("kind = \"optimizer\"", "kind = \"sde\"");
        assert_eq!(backend(&sde), b);
    }
    // The default written out keeps every existing id; another backend is another trial.
    assert_eq!(ids(VALID), ids(&VALID.replace("x0 = 0.5", "x0 = 0.5\nbackend = \"cpu\"")));
    let cuda = ids(&VALID.replace("x0 = 0.5", "x0 = 0.5\nbackend = \"cuda\""));
    assert!(ids(VALID).iter().all(|id| !cuda.contains(id)));
    let canonical = serde_json::to_string(&parse(VALID).unwrap().task).unwrap();
    assert!(!canonical.contains("backend"), "{canonical}");
    let err = parse(&VALID.replace("x0 = 0.5", "x0 = 0.5\nbackend = \"gpu\"")).unwrap_err();
    assert!(err.to_string().contains("backend"), "{err}");
    assert_eq!(err.line, Some(10));
    let err = parse(&TRAIN.replace("paths = 4", "paths = 4\nbackend = \"cuda\"")).unwrap_err();
    assert!(
        err.to_string()
            .contains("`backend` does not apply to kind = \"train\" (it applies to kind = \"optimizer\", \"sde\")"),
        "{err}"
    );
    assert_eq!("auto".parse::<Backend>(), Ok(Backend::Auto));
    assert!("gpu".parse::<Backend>().unwrap_err().contains("\"cpu\", \"cuda\" or \"auto\""));
}

#[test]
fn analysis_settings_parse_and_bad_ones_are_named() {
    let with = |t: &str| VALID.replace("[execution]", &format!("[analysis]\n{t}\n\n[execution]"));
    let s =
        parse(&with("target_loss = 0.05\nobjective = \"samples_to_target\"\nexpect_exponent = [0.4, 0.6]")).unwrap();
    assert_eq!(s.analysis.target_loss, Some(0.05));
    assert_eq!(s.analysis.objective, kappa_core::spec::AnalysisObjective::SamplesToTarget);
    assert_eq!(s.analysis.metric, "loss");
    assert_eq!(parse(VALID).unwrap().analysis, kappa_core::spec::Analysis::default());
    let base = with("target_loss = 0.05");
    // [analysis] is on line 20 and its first key on line 21 of `base`.
    assert_rejected(
        &base,
        &[
            ("target_loss = 0.05", "target_loss = -1.0", 21, "target_loss must be positive"),
            ("target_loss = 0.05", "objective = \"samples_to_target\"", 21, "needs a target_loss"),
            ("target_loss = 0.05", "objective = \"best\"", 21, "unknown variant"),
            ("target_loss = 0.05", "metric = \"test loss\"", 21, "must name a curve metric"),
            ("target_loss = 0.05", "objective = \"stationary\"\nmetric = \"test_loss\"", 22, "training loss only"),
            ("target_loss = 0.05", "expect_exponent = [0.6, 0.4]", 21, "low < high"),
            ("target_loss = 0.05", "expect_b_crit = [1.0, 10.0]", 21, "needs a target_loss"),
            ("target_loss = 0.05", "target_loss = 0.05\nexpect_b_crit = [0.0, 10.0]", 22, "positive numbers"),
            ("target_loss = 0.05", "target = 0.05", 21, "unknown field"),
        ],
    );
}
