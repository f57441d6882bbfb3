//! `[task] lr_schedule`: parsing, defaults, errors at their place, axes and rules over its
//! fields, and ids unchanged without one (THEORY.md §8).

use kappa_core::task::LrSchedule;
use kappa_core::{Plan, TaskSpec};

mod common;

use common::{ids, parse};

const BASE: &str = common::sweep!(
    "sched",
    r#"lr_schedule = { kind = "wsd", warmup = 0.1, decay = 0.3 }

[grid]
optimizer = ["sgd", "momentum"]
batch_size = [1, 4]
lr = [0.01]
"#
);

fn schedule(task: &TaskSpec) -> &LrSchedule {
    task.lr_schedule().expect("a kind with a schedule")
}

#[test]
fn schedules_parse_with_their_defaults() {
    let s = parse(BASE).unwrap();
    assert_eq!(*schedule(&s.task), LrSchedule::Wsd { warmup: 0.1, decay: 0.3, min_factor: 0.0 });
    let cos = parse(&BASE.replace(r#"{ kind = "wsd", warmup = 0.1, decay = 0.3 }"#, r#"{ kind = "cosine" }"#)).unwrap();
    assert_eq!(*schedule(&cos.task), LrSchedule::Cosine { warmup: 0.0, min_factor: 0.0 });
    let step =
        parse(&BASE.replace(r#"{ kind = "wsd", warmup = 0.1, decay = 0.3 }"#, r#"{ kind = "step", at = [0.5] }"#))
            .unwrap();
    assert_eq!(*schedule(&step.task), LrSchedule::Step { at: vec![0.5], factor: 0.1, warmup: 0.0 });
    // Whole numbers where fractions go are fine.
    parse(&BASE.replace("warmup = 0.1", "warmup = 0")).unwrap();
}

#[test]
fn no_schedule_and_a_constant_one_keep_every_id() {
    let none = BASE.replace("lr_schedule = { kind = \"wsd\", warmup = 0.1, decay = 0.3 }\n", "");
    let constant = BASE.replace(r#"{ kind = "wsd", warmup = 0.1, decay = 0.3 }"#, r#"{ kind = "constant" }"#);
    assert_eq!(ids(&none), ids(&constant));
    let canonical = serde_json::to_string(&parse(&constant).unwrap().task).unwrap();
    assert!(!canonical.contains("lr_schedule"), "{canonical}");
    // A schedule is part of what a trial runs: other ids.
    let scheduled = ids(BASE);
    assert!(ids(&none).iter().all(|id| !scheduled.contains(id)));
}

#[test]
fn bad_schedules_are_named_at_their_field() {
    let w = r#"{ kind = "wsd", warmup = 0.1, decay = 0.3 }"#;
    let cases: &[(&str, &str)] = &[
        (r#"{ kind = "wsd", warmup = 0.8, decay = 0.3 }"#, "warmup + decay must be at most 1"),
        (r#"{ kind = "step", at = [0.5, 0.4] }"#, "boundaries must be increasing, got 0.5 then 0.4"),
        (r#"{ kind = "step", at = [0.5, 1.0] }"#, "boundaries must be fractions of the budget in (0, 1)"),
        (r#"{ kind = "step" }"#, "a step schedule needs `at`"),
        (r#"{ kind = "cosine", decay = 0.2 }"#, "`decay` does not apply to a cosine schedule"),
        (r#"{ kind = "cosine", warmup = 1.5 }"#, "warmup must be a fraction of the budget in [0, 1)"),
        (r#"{ kind = "cosine", min_factor = 2 }"#, "min_factor must be in [0, 1]"),
        (r#"{ kind = "linear" }"#, "unknown variant `linear`"),
        (r#"{ kind = "cosine", warmpu = 0.1 }"#, "unknown field `warmpu`"),
    ];
    let mut wrong = Vec::new();
    for (to, fragment) in cases {
        match parse(&BASE.replace(w, to)) {
            Ok(_) => wrong.push(format!("{to} was accepted")),
            Err(e) if !(e.to_string().contains(fragment) && e.line == Some(12)) => {
                wrong.push(format!("{to}: expected line 12 and {fragment:?}, got {e} (line {:?})", e.line))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Noop tasks take none.
    let noop =
        "version = 1\nname = \"n\"\n[task]\nkind = \"noop\"\nlr_schedule = { kind = \"cosine\" }\n[grid]\nseed = [0]\n";
    assert!(parse(noop).unwrap_err().to_string().contains("`lr_schedule` does not apply to kind = \"noop\""));
}

#[test]
fn sde_runs_under_a_schedule_are_sgd_only() {
    let sde = BASE.replace("kind = \"optimizer\"", "kind = \"sde\"").replace("\"momentum\"", "\"signsgd\"");
    let err = parse(&sde).unwrap_err().to_string();
    assert!(err.contains("under a learning-rate schedule kind = \"sde\" runs SGD's SDE only"), "{err}");
    assert!(err.contains("signsgd"), "{err}");
    parse(&sde.replace(", \"signsgd\"", "")).unwrap();
}

#[test]
fn axes_and_rules_set_schedule_fields() {
    let axis = BASE.replace("lr = [0.01]", "lr = [0.01]\ntask.lr_schedule.warmup = [0.0, 0.2]");
    let s = parse(&axis).unwrap();
    let plan = Plan::new(&s, "v");
    let warmups: Vec<f64> = plan
        .trials()
        .map(|t| match schedule(&s.variants[t.task].task) {
            LrSchedule::Wsd { warmup, .. } => *warmup,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(warmups.contains(&0.0) && warmups.contains(&0.2), "{warmups:?}");
    // A value that breaks the schedule is named with the axis.
    let bad = BASE.replace("lr = [0.01]", "lr = [0.01]\ntask.lr_schedule.warmup = [0.0, 0.9]");
    let err = parse(&bad).unwrap_err().to_string();
    assert!(err.contains("warmup + decay must be at most 1"), "{err}");
    // A rule scales a schedule field like any task field (here the warmup with κ, for the sake
    // of the test: a fraction of the budget needs no scaling to stay per sample).
    let rule = BASE.replace(
        "lr = [0.01]",
        "lr = [0.01]

[scaling]
kappa = [1, 2]
rules = [{ name = \"w\", lr = 1, task = { lr_schedule = { warmup = 1 } } }]",
    );
    let s = parse(&rule).unwrap();
    let warmups: Vec<f64> = s
        .variants
        .iter()
        .map(|v| match schedule(&v.task) {
            LrSchedule::Wsd { warmup, .. } => *warmup,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(warmups.contains(&0.1) && warmups.contains(&0.2), "{warmups:?}");
}

/// β₁ = 0 is a grid value like any: heavy ball at μ = 0 and Lion at β₁ = 0 (SignSGD exactly) run
/// under rules that leave 1 − β alone; a rule that scales 1 − β still refuses what leaves (0, 1).
#[test]
fn a_zero_beta1_runs_under_rules_that_keep_beta() {
    let text = BASE
        .replace("optimizer = [\"sgd\", \"momentum\"]", "optimizer = [\"momentum\", \"lion\"]\nbeta1 = [0.0, 0.9]")
        .replace("lr = [0.01]", "lr = [0.01]\n\n[scaling]\nkappa = [1, 2]\nrules = [\"sgd-linear\", \"signsgd-sqrt\"]");
    parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let err = parse(&text.replace("\"signsgd-sqrt\"]", "\"adam-sqrt\"]")).unwrap_err().to_string();
    assert!(err.contains("outside (0, 1)"), "{err}");
}
