//! THEORY.md §6 T7 end to end through the report: AdamW at κ = 4 under `adamw-sqrt` keeps its
//! plateau (ratio 1 ± 1%); the square-root rule with θ fixed (`adam-sqrt`) moves it by ≈ +24%.

mod common;

use common::run_trials;
use kappa_core::{Plan, Sweep, Verdict};
use kappa_report::{build, check};

const SWEEP: &str = r#"
version = 1
name = "t7"

[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0] }
noise = { kind = "gaussian", sigma = 1.0 }
x0 = 0.5
paths = 384
samples = 120_000
record_every = "2%"
burn_in = 0.3

[grid]
optimizer = ["adamw"]
lr = [1e-3]
beta1 = [0.9]
beta2 = [0.999]
eps = [1e-8]
weight_decay = [1.0]

[scaling]
kappa = [4]
rules = [{ preset = "adamw-sqrt", expect = "holds" }, { preset = "adam-sqrt", name = "theta-fixed", expect = "fails" }]
"#;

#[test]
fn t7_adamw_sqrt_holds_and_theta_fixed_fails() {
    let sweep = Sweep::parse("t7.toml", SWEEP).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let results = run_trials(&sweep, &plan);
    assert_eq!(results.len(), 3, "base + one trial per rule");
    let report = build(&sweep, &plan, &results);
    assert_eq!(report.missing, 0);
    let class = |rule: &str| report.classes.iter().find(|c| c.rule == rule).unwrap();

    let good = &class("adamw-sqrt").kappas[1];
    assert_eq!((good.params.hyper.lr, good.params.hyper.batch_size), (2e-3, 4));
    let r = good.plateau_ratio.unwrap();
    eprintln!("adamw-sqrt: plateau ratio {:.4} ± {:.4}, theory {:?}", r.mean, r.se, good.theory_ratio);
    assert!((r.mean - 1.0).abs() < 0.01, "plateau ratio {r:?}");
    assert!(r.se < 0.005);
    assert!((good.theory_ratio.unwrap() - 1.0).abs() < 1e-3);

    let bad = &class("theta-fixed").kappas[1];
    assert_eq!(bad.params.hyper.weight_decay, 1.0);
    let r = bad.plateau_ratio.unwrap();
    let theory = bad.theory_ratio.unwrap();
    eprintln!("theta fixed: plateau ratio {:.4} ± {:.4}, theory {theory:.4}", r.mean, r.se);
    assert!((theory - 1.248).abs() < 0.005, "theory {theory}");
    assert!((r.mean - theory).abs() < 0.03, "measured {r:?} vs predicted {theory}");

    let verdict = |name: &str| report.rules.iter().find(|r| r.name == name).unwrap().verdict;
    eprintln!("{:?}", report.rules);
    assert!(matches!(verdict("adamw-sqrt"), Some(Verdict::Holds)), "{:?}", class("adamw-sqrt").note);
    assert_eq!(verdict("theta-fixed"), Some(Verdict::Fails));
    // Where each rule breaks: adamw-sqrt holds up to the largest κ (batch 4), θ fixed only at κ = 1.
    let upto = |name: &str| {
        let r = report.rules.iter().find(|r| r.name == name).unwrap();
        (r.holds_up_to_kappa, r.holds_up_to_batch)
    };
    assert_eq!(upto("adamw-sqrt"), (Some(4), Some(4)));
    assert_eq!(upto("theta-fixed"), (Some(1), Some(1)));
    assert_eq!(check(&report), Ok(()));
}
