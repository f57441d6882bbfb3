//! `kappa plan`: the expansion of a sweep file, without running anything.

use crate::{exit, sweep_file};
use kappa_core::grid::format_real;
use kappa_core::{Plan, Sweep};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `kappa plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How many trials to list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    show: u64,
}

/// Distinct trials of a plan (scaled variants may repeat one).
fn distinct(plan: &Plan<'_>, sweep: &Sweep) -> u64 {
    if sweep.scaling.is_some() { plan.trials().count() as u64 } else { plan.len() }
}

pub fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    let (sweep, _) = sweep_file::load(&args.file)?;
    let plan = Plan::new(&sweep, kappa_worker::code_version(&sweep.task));
    let shown = args.show.min(plan.len());
    if args.json {
        let dims: Vec<_> = sweep
            .grid
            .dims()
            .iter()
            .map(|d| {
                let axes: Vec<_> = d
                    .axes
                    .iter()
                    .map(|(name, values)| {
                        let v: Vec<serde_json::Value> = match values {
                            kappa_core::AxisValues::Optimizer(v) => v.iter().map(|o| json!(o.as_str())).collect(),
                            kappa_core::AxisValues::Int(v) => v.iter().map(|x| json!(x)).collect(),
                            kappa_core::AxisValues::Real(v) => v.iter().map(|x| json!(x)).collect(),
                        };
                        json!({ "name": name.as_str(), "values": v })
                    })
                    .collect();
                json!({ "len": d.len, "axes": axes })
            })
            .collect();
        let trials: Vec<_> = (0..shown)
            .map(|i| {
                let t = plan.trial(i);
                let variant = t.variant.map(|(r, kappa)| {
                    json!({ "rule": sweep.scaling.as_ref().map(|s| s.rules[r].name.clone()), "kappa": kappa })
                });
                json!({ "id": t.id, "seq": t.seq, "params": t.params, "scaled": variant })
            })
            .collect();
        let out = json!({
            "name": sweep.name,
            "task": plan.task_json(),
            "total": distinct(&plan, &sweep),
            "grid_points": sweep.grid.len(),
            "dimensions": dims,
            "scaling": sweep.scaling,
            "trials": trials,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    let factors: Vec<String> = sweep
        .grid
        .dims()
        .iter()
        .map(|d| {
            let names: Vec<&str> = d.axes.iter().map(|(n, _)| n.as_str()).collect();
            if names.len() == 1 {
                format!("{} ({})", names[0], d.len)
            } else {
                format!("zip[{}] ({})", names.join(", "), d.len)
            }
        })
        .collect();
    match &sweep.scaling {
        None => println!("sweep `{}`: {} trials = {}", sweep.name, plan.len(), factors.join(" × ")),
        Some(sc) => {
            let n = distinct(&plan, &sweep);
            println!(
                "sweep `{}`: {n} trials = {} base points ({}) × (1 + {} rules × {} κ > 1){}",
                sweep.name,
                sweep.grid.len(),
                factors.join(" × "),
                sc.rules.len(),
                sc.kappas.len() - 1,
                if n < plan.len() {
                    format!(", {} repeated across rules counted once", plan.len() - n)
                } else {
                    String::new()
                }
            );
            println!("scaling: κ = {:?}, tolerance {}", sc.kappas, sc.tolerance);
            for r in &sc.rules {
                println!(
                    "  rule {:<14} η ∝ κ^{}, 1−β ∝ κ^{}, ε ∝ κ^{}, θ ∝ κ^{}{}",
                    r.name,
                    r.lr,
                    r.one_minus_beta,
                    r.eps,
                    r.weight_decay,
                    r.expect.map(|v| format!("  (expected: {})", v.as_str())).unwrap_or_default()
                );
            }
        }
    }
    println!("task: {}", plan.task_json());
    for d in sweep.grid.dims() {
        for (name, values) in &d.axes {
            let n = values.len();
            let mut v: Vec<String> = (0..n.min(8)).map(|i| values.display(i)).collect();
            if n > 8 {
                v.push(format!("… {} more", n - 8));
            }
            println!("  {:<13} {}", name.as_str(), v.join(", "));
        }
    }
    if shown > 0 {
        println!("first {shown} trials:");
        println!(
            "  {:<16}  {:>6}  {:<9} {:>6} {:>9} {:>6} {:>6} {:>8} {:>7} {:>5}  scaled by",
            "id", "seq", "optimizer", "batch", "lr", "beta1", "beta2", "eps", "wd", "seed"
        );
        for t in plan.trials().take(shown as usize) {
            let p = &t.params;
            let scaled = match (t.variant, &sweep.scaling) {
                (Some((r, kappa)), Some(sc)) => format!("{} κ={kappa}", sc.rules[r].name),
                _ => "base".into(),
            };
            println!(
                "  {}  {:>6}  {:<9} {:>6} {:>9} {:>6} {:>6} {:>8} {:>7} {:>5}  {scaled}",
                t.id,
                t.seq,
                p.optimizer,
                p.batch_size,
                format_real(p.lr),
                format_real(p.beta1),
                format_real(p.beta2),
                format_real(p.eps),
                format_real(p.weight_decay),
                p.seed
            );
        }
    }
    Ok(exit::OK)
}
