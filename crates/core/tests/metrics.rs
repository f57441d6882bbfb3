//! `[task] metrics` of command tasks: each source parses, the default keeps every id, and bad
//! input is named at its field and line.

use kappa_core::TaskSpec;
use kappa_core::metrics::{LinePattern, MetricsSource};

mod common;

use common::{ids, parse};

const BASE: &str = r#"version = 1
name = "cmd"
[task]
kind = "command"
argv = ["python3", "train.py", "--lr", "{lr}", "--logdir", "{trial_dir}/tb"]
metrics = { from = "tensorboard", dir = "{trial_dir}/tb", loss = "train/loss" }
[grid]
optimizer = ["sgd"]
lr = [0.1, 1.0]
params.width = [8]
"#;

const METRICS: &str = r#"{ from = "tensorboard", dir = "{trial_dir}/tb", loss = "train/loss" }"#;

fn source(text: &str) -> MetricsSource {
    match parse(text).unwrap_or_else(|e| panic!("{e}")).task {
        TaskSpec::Command(c) => c.metrics,
        other => panic!("not a command: {other:?}"),
    }
}

#[test]
fn every_source_parses() {
    assert_eq!(source(BASE), MetricsSource::Tensorboard { dir: "{trial_dir}/tb".into(), loss: "train/loss".into() });
    let with = |m: &str| source(&BASE.replace(METRICS, m));
    assert_eq!(
        with(r#"{ from = "csv", path = "{trial_dir}/m.csv", loss = "train_loss", step = "step" }"#),
        MetricsSource::Csv {
            path: "{trial_dir}/m.csv".into(),
            loss: "train_loss".into(),
            step: Some("step".into()),
            samples: None
        }
    );
    assert_eq!(
        with(r#"{ from = "stdout", pattern = 'Loss: (?P<loss>[0-9.eE+-]+)' }"#),
        MetricsSource::Stdout {
            pattern: LinePattern::Regex("Loss: (?P<loss>[0-9.eE+-]+)".into()),
            loss: "loss".into()
        }
    );
    assert_eq!(
        with(r#"{ from = "stdout", pattern = "python_dict", loss = "eval_loss" }"#),
        MetricsSource::Stdout { pattern: LinePattern::PythonDict, loss: "eval_loss".into() }
    );
    // A group of another name is the loss when `loss` says so; placeholders of user parameters.
    with(r#"{ from = "stdout", pattern = 'L=(?P<train>\S+)', loss = "train" }"#);
    with(r#"{ from = "csv", path = "logs/{trial_id}-w{width}.csv" }"#);
}

#[test]
fn the_default_source_keeps_every_id() {
    let plain = BASE.replace(&format!("metrics = {METRICS}\n"), "");
    let json = BASE.replace(METRICS, r#"{ from = "stdout", pattern = "json" }"#);
    assert_eq!(ids(&plain), ids(&json));
    let canonical = serde_json::to_string(&parse(&json).unwrap().task).unwrap();
    assert!(!canonical.contains("metrics"), "{canonical}");
    // Another source reads other numbers: other ids.
    let tb = ids(BASE);
    assert!(ids(&plain).iter().all(|id| !tb.contains(id)));
}

#[test]
fn bad_sources_are_named_at_their_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{ from = "wandb" }"#, "unknown variant `wandb`, expected one of `stdout`, `tensorboard`, `csv`"),
        (r#"{ dir = "tb" }"#, "metrics needs `from`"),
        (r#"{ from = "tensorboard" }"#, "metrics from tensorboard need `dir`"),
        (r#"{ from = "csv", dir = "x" }"#, "`dir` does not apply to metrics from csv"),
        (r#"{ from = "csv" }"#, "metrics from csv need `path`"),
        (r#"{ from = "stdout" }"#, "metrics from stdout need `pattern`"),
        (r#"{ from = "stdout", pattern = "json", step = "s" }"#, "a pattern's `(?P<step>...)` group is the step"),
        (r#"{ from = "stdout", pattern = 'Loss: (?P<loss>[0-9.+)' }"#, "invalid regular expression"),
        (r#"{ from = "stdout", pattern = 'Loss: ([0-9.]+)' }"#, "needs a group named `loss`"),
        (r#"{ from = "stdout", pattern = 'Loss: (?P<l>[0-9.]+)' }"#, "it has `l`"),
        (r#"{ from = "tensorboard", dir = "{trial_dir/tb" }"#, "unclosed `{`"),
        (r#"{ from = "tensorboard", dir = "{trial_dir}/{logdir}" }"#, "unknown placeholder `{logdir}`"),
        (r#"{ from = "tensorboard", dir = "{trial_dir}", loss = " " }"#, "`loss` must name the metric"),
        (r#"{ from = "tensorboard", dir = "tb", tag = "x" }"#, "unknown field `tag`"),
        (r#"{ from = "tensorboard", dir = "runs/{lr}" }"#, "would be the same for every trial"),
    ];
    let mut wrong = Vec::new();
    for (to, fragment) in cases {
        match parse(&BASE.replace(METRICS, to)) {
            Ok(_) => wrong.push(format!("{to} was accepted")),
            Err(e) if !(e.to_string().contains(fragment) && e.line == Some(6)) => {
                wrong.push(format!("{to}: expected line 6 and {fragment:?}, got {e} (line {:?})", e.line))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Only command tasks read metrics.
    let noop = "version = 1\nname = \"n\"\n[task]\nkind = \"noop\"\nmetrics = { from = \"csv\", path = \"m\" }\n\
                [grid]\nseed = [0]\n";
    let err = parse(noop).unwrap_err().to_string();
    assert!(err.contains("`metrics` does not apply to kind = \"noop\" (it applies to kind = \"command\")"), "{err}");
}

#[test]
fn a_metric_where_higher_is_better_is_maximised() {
    let with = |analysis: &str| {
        parse(&BASE.replace("params.width = [8]\n", &format!("params.width = [8]\n[analysis]\n{analysis}\n")))
    };
    let a = with("metric = \"test/accuracy\"\nmode = \"max\"").unwrap().analysis;
    assert_eq!(a.mode, kappa_core::spec::Mode::Max);
    assert_eq!(
        (a.signed(0.9), a.shown(-0.9), a.shown(f64::INFINITY), a.goal()),
        (-0.9, 0.9, f64::NEG_INFINITY, "maximises")
    );
    assert_eq!(with("metric = \"test/accuracy\"").unwrap().analysis.signed(0.9), 0.9, "min by default");
    // Samples to an accuracy target: reached from below, and the fewest samples are best.
    let a = with("metric = \"test/accuracy\"\nmode = \"max\"\ntarget_loss = 0.9\nobjective = \"samples_to_target\"")
        .unwrap()
        .analysis;
    assert_eq!((a.signed(0.9), a.maximises(), a.shown(5e3), a.goal()), (-0.9, false, 5e3, "minimises"));
    let err = with("mode = \"max\"").unwrap_err();
    assert!(err.to_string().contains("the loss is minimised") && err.line == Some(12), "{err}");
    let err = with("metric = \"acc\"\nmode = \"highest\"").unwrap_err().to_string();
    assert!(err.contains("unknown variant `highest`, expected `min` or `max`"), "{err}");
}
