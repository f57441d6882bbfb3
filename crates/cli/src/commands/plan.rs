//! `kappa plan`: the expansion of a sweep file, without running anything.

use crate::{exit, sweep_file};
use kappa_core::format_real;
use kappa_core::halving::Halving;
use kappa_core::search::Search;
use kappa_core::spec::SearchStart;
use kappa_core::{AxisName, Plan, Sweep};
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

/// The columns of the trial table: the built-ins the trials carry, then the named axes.
fn columns(sweep: &Sweep) -> Vec<String> {
    let mut cols: Vec<String> = sweep.grid.builtins().axes().map(|a| a.as_str().to_string()).collect();
    cols.extend(sweep.grid.named_axes().map(|(n, _)| n.to_string()));
    if let Some(sc) = &sweep.scaling {
        for r in &sc.rules {
            for n in r.named.keys() {
                if !cols.contains(n) {
                    cols.push(n.clone());
                }
            }
        }
    }
    cols
}

/// What rounding did to a scaled trial's whole-number parameters (`params.warmup 333.3 → 333`).
fn roundings(sweep: &Sweep, t: &kappa_core::PlannedTrial) -> Vec<String> {
    let (Some((r, kappa)), Some(sc)) = (t.variant, &sweep.scaling) else { return Vec::new() };
    let base = sweep.grid.point(t.seq / (1 + sc.variants())).0;
    let mut out = Vec::new();
    for (name, e) in &sc.rules[r].named {
        let Some(v) = base.named.get(name) else { continue };
        if !(v.is_i64() || v.is_u64()) {
            continue;
        }
        let exact = v.as_f64().unwrap_or(0.0) * (kappa as f64).powf(*e);
        if exact.fract() != 0.0 {
            out.push(format!("{name} {} → {}", format_real(exact), exact.round()));
        }
    }
    out
}

/// `kappa plan`: prints the sweep's expansion (text, or JSON with `--json`); runs nothing.
pub fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    let (sweep, _) = sweep_file::load(&args.file)?;
    let plan = Plan::new(&sweep, kappa_worker::code_version(&sweep.task));
    let shown = args.show.min(plan.len()) as usize;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan_json(&sweep, &plan, shown))?);
        return Ok(exit::OK);
    }
    match Search::new(&plan) {
        Some(search) => print_search(&sweep, &search),
        None => print_counts(&sweep, &plan),
    }
    if let Some(h) = Halving::new(&plan) {
        print_halving(&sweep, &h);
    }
    print_tasks(&sweep);
    print_axes(&sweep);
    if shown > 0 {
        print_trials(&sweep, &plan, shown);
    }
    Ok(exit::OK)
}

/// The expansion as JSON: the sweep, its dimensions, its tasks and the first `shown` trials.
fn plan_json(sweep: &Sweep, plan: &Plan<'_>, shown: usize) -> serde_json::Value {
    let dims: Vec<_> = sweep
        .grid
        .dims()
        .iter()
        .map(|d| {
            let axes: Vec<_> = d
                .axes
                .iter()
                .map(|(name, values)| json!({ "name": name.name(), "values": values.to_json() }))
                .collect();
            json!({ "len": d.len, "axes": axes })
        })
        .collect();
    let trials: Vec<_> = plan
        .trials()
        .take(shown)
        .map(|t| {
            let variant = t.variant.map(
                |(r, kappa)| json!({ "rule": sweep.scaling.as_ref().map(|s| s.rules[r].name.clone()), "kappa": kappa }),
            );
            json!({ "id": t.id, "seq": t.seq, "params": t.params, "scaled": variant, "task": t.task })
        })
        .collect();
    json!({
        "name": sweep.name,
        "task": sweep.variants[0].json,
        "tasks": sweep.variants.iter().map(|v| &v.json).collect::<Vec<_>>(),
        "total": plan.distinct(),
        "grid_points": sweep.grid.len(),
        "dimensions": dims,
        "scaling": sweep.scaling,
        "search": Search::new(plan).map(|s| search_json(&s)).or_else(|| Halving::new(plan).map(|h| halving_json(&h))),
        "trials": trials,
    })
}

/// A search's settings and what it will do, as JSON.
fn search_json(search: &Search) -> serde_json::Value {
    let s = search.spec();
    json!({
        "kind": "bracket",
        "axis": s.axis.name(),
        "range": s.range,
        "start": match s.start { SearchStart::Rule => json!("rule"), SearchStart::Value(v) => json!(v) },
        "factor": s.factor,
        "tolerance": s.tolerance,
        "max_trials_per_group": s.max_trials,
        "groups": search.groups(),
        "chains": search.chains().iter().filter(|c| c.len() > 1).count(),
        "at_most": search.bound(),
    })
}

/// Successive halving's settings and what it can spend, as JSON.
fn halving_json(h: &Halving) -> serde_json::Value {
    let s = h.spec();
    json!({
        "kind": "halving",
        "min_samples": s.min_samples,
        "reduction": s.reduction,
        "within": kappa_core::halving::within_names(s),
        "max_samples": s.max_samples,
        "rungs": h.rungs(),
        "groups": h.groups().len(),
        "settings": h.settings(),
        "expected_samples": h.expected_samples(),
        "most_samples": h.most_samples(),
        "grid_samples": h.grid_samples(),
    })
}

/// What successive halving will do: its rungs, its groups, the most samples it can spend.
fn print_halving(sweep: &Sweep, h: &Halving) {
    let s = h.spec();
    let within = kappa_core::halving::within_names(s);
    let groups = if within.is_empty() {
        "one group (every setting compared with every other)".to_string()
    } else {
        format!("{} groups (settings compared only within equal {})", h.groups().len(), within.join(", "))
    };
    println!(
        "successive halving: {} settings (every grid point but the seed; its seeds go on together, judged by their \
         mean) in {groups}",
        h.settings()
    );
    let rungs: Vec<String> = h.rungs().into_iter().map(kappa_core::format_count).collect();
    println!(
        "  rungs: {} samples seen; at each, the best 1/{} of a group's settings that finished it go on (at least one \
         per group), continuing where they stopped",
        rungs.join(" → "),
        s.reduction
    );
    let (expected, most, grid) = (h.expected_samples(), h.most_samples(), h.grid_samples());
    let pct = |n: u64| 100.0 * n as f64 / grid.max(1) as f64;
    println!(
        "  samples: {} ({:.0}% of the grid's {}) when each rung keeps exactly 1/{}; at most {} ({:.0}%) whatever \
         order results come in (a trial promoted early stays promoted){}",
        kappa_core::format_count(expected),
        pct(expected),
        kappa_core::format_count(grid),
        s.reduction,
        kappa_core::format_count(most),
        pct(most),
        if sweep
            .variants
            .iter()
            .all(|v| matches!(v.task, kappa_core::TaskSpec::Train(_) | kappa_core::TaskSpec::Command(_)))
        {
            ""
        } else {
            "; simulations recompute each rung from step 0 (bit-identical, cheap next to training)"
        }
    );
    let scheduled = sweep.variants.iter().find_map(|v| v.task.lr_schedule().filter(|s| !s.is_constant()));
    if let Some(schedule) = scheduled {
        println!(
            "  warning: rungs compare runs stopped at a fraction of their budget, and under the {} learning-rate \
             schedule (a fraction of the whole budget) the stopped runs have not decayed: their ranking can differ \
             from the finished ones' (README, \"Successive halving\")",
            schedule.kind_name()
        );
    } else if sweep.variants.iter().any(|v| matches!(v.task, kappa_core::TaskSpec::Command(_))) {
        println!(
            "  warning: rungs compare runs stopped at a fraction of their budget; if your program decays its learning \
             rate over the whole budget, the stopped runs have not decayed and their ranking can differ from the \
             finished ones' (README, \"Successive halving\")"
        );
    }
}

/// What a search will do: its groups, how they run, at most how many trials.
fn print_search(sweep: &Sweep, search: &Search) {
    let s = search.spec();
    let seeds = sweep.grid.axis(AxisName::Seed).map_or(1, |v| v.len());
    let axis = s.axis.name();
    println!(
        "sweep `{}`: a bracketing search for the best {axis} of each of {} groups (every combination of the grid's \
         other axes, {seeds} seed(s) each): at most {} trials",
        sweep.name,
        search.groups(),
        search.bound()
    );
    println!(
        "search: {axis} in [{}, {}], factor {}, tolerance ±{}%, at most {} trials per group ({} probes × {seeds} seeds); \
         each round runs 2–4 probes of a group at once, every seed",
        format_real(s.range[0]),
        format_real(s.range[1]),
        s.factor,
        s.tolerance * 100.0,
        s.max_trials,
        s.max_trials / seeds as u64
    );
    match s.start {
        SearchStart::Rule => {
            let chains = search.chains().iter().filter(|c| c.len() > 1).count();
            println!(
                "  start = \"rule\": the batch sizes of each of {chains} chain(s) run one after another from the smallest \
                 (which starts at the range's middle, {}); each next one starts at the optimum before times (B'/B)^a, a \
                 fitted over the optima found (the theory's exponent until two are)",
                format_real(s.middle())
            );
        }
        SearchStart::Value(v) => println!("  start = {}: every group starts there, all at once", format_real(v)),
    }
    if let Some(sc) = &sweep.scaling {
        println!(
            "  then each group's best probe is followed by its rules' variants: {} rule(s) × {} κ > 1 × {seeds} seed(s)",
            sc.rules.len(),
            sc.kappas.len() - 1
        );
    }
}

/// The count of trials and how it comes about (dimensions, rules, trials run once), and the rules.
fn print_counts(sweep: &Sweep, plan: &Plan<'_>) {
    let factors: Vec<String> = sweep
        .grid
        .dims()
        .iter()
        .map(|d| {
            let names: Vec<&str> = d.axes.iter().map(|(n, _)| n.name()).collect();
            if names.len() == 1 {
                format!("{} ({})", names[0], d.len)
            } else {
                format!("zip[{}] ({})", names.join(", "), d.len)
            }
        })
        .collect();
    let n = plan.distinct();
    // Why grid points coincide: fields a kind does not read, or values equal as numbers (1, 1.0).
    let why_same = || {
        let names: std::collections::BTreeSet<&str> =
            sweep.variants.iter().flat_map(|v| v.left_out.iter().map(String::as_str)).collect();
        if names.is_empty() {
            "their values are equal".to_string()
        } else {
            format!("{} left out where the kind does not read it", names.into_iter().collect::<Vec<_>>().join(", "))
        }
    };
    match &sweep.scaling {
        None if n < plan.len() => println!(
            "sweep `{}`: {n} trials = {} grid points ({}), {} of them the same trial as another and run once ({})",
            sweep.name,
            plan.len(),
            factors.join(" × "),
            plan.len() - n,
            why_same()
        ),
        None => println!("sweep `{}`: {} trials = {}", sweep.name, plan.len(), factors.join(" × ")),
        Some(sc) => {
            println!(
                "sweep `{}`: {n} trials = {} base points ({}) × (1 + {} rules × {} κ > 1){}",
                sweep.name,
                sweep.grid.len(),
                factors.join(" × "),
                sc.rules.len(),
                sc.kappas.len() - 1,
                if n < plan.len() {
                    format!(", {} repeats of another trial counted once", plan.len() - n)
                } else {
                    String::new()
                }
            );
            println!("scaling: κ = {:?}, tolerance {}", sc.kappas, sc.tolerance);
            for r in &sc.rules {
                let named: String = r.named.iter().map(|(n, e)| format!(", {n} ∝ κ^{e}")).collect();
                println!(
                    "  rule {:<14} η ∝ κ^{}, 1−β ∝ κ^{}, ε ∝ κ^{}, θ ∝ κ^{}{named}{}",
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
}

/// The task, or how many variants the task axes make.
fn print_tasks(sweep: &Sweep) {
    if sweep.variants.len() == 1 {
        println!("task: {}", sweep.variants[0].json);
    } else {
        let scaled = sweep.scaled_tasks.len();
        let what = if scaled > 0 {
            format!("[task] under each combination of the task axes, {scaled} of them scaled by rules")
        } else {
            "[task] under each combination of the task axes".to_string()
        };
        println!("tasks: {} ({what}); the first: {}", sweep.variants.len(), sweep.variants[0].json);
    }
}

/// Each axis with its first values.
fn print_axes(sweep: &Sweep) {
    let searched = sweep.search.as_ref().map(|s| s.axis.name());
    for d in sweep.grid.dims() {
        for (name, values) in &d.axes {
            if searched == Some(name.name()) {
                println!("  {:<13} searched", name.name());
                continue;
            }
            let n = values.len();
            let mut v: Vec<String> = (0..n.min(8)).map(|i| values.display(i)).collect();
            if n > 8 {
                v.push(format!("… {} more", n - 8));
            }
            println!("  {:<13} {}", name.name(), v.join(", "));
        }
    }
}

/// The first `shown` trials as a table: id, plan position, parameters, and the rule that scaled them.
fn print_trials(sweep: &Sweep, plan: &Plan<'_>, shown: usize) {
    let cols = columns(sweep);
    let rows: Vec<(kappa_core::PlannedTrial, Vec<String>, String)> = plan
        .trials()
        .take(shown)
        .map(|t| {
            let cells = cols.iter().map(|c| t.params.display(c)).collect();
            let scaled = match (t.variant, &sweep.scaling) {
                (Some((r, kappa)), Some(sc)) => {
                    let rounded = roundings(sweep, &t);
                    let note =
                        if rounded.is_empty() { String::new() } else { format!(" (rounded: {})", rounded.join(", ")) };
                    format!("{} κ={kappa}{note}", sc.rules[r].name)
                }
                _ => "base".into(),
            };
            (t, cells, scaled)
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r.1[i].chars().count()).chain([c.chars().count()]).max().unwrap_or(0))
        .collect();
    println!("first {} trials:", rows.len());
    let head: Vec<String> = cols.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
    println!("  {:<16}  {:>6}  {}  scaled by", "id", "seq", head.join(" "));
    for (t, cells, scaled) in &rows {
        let line: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        println!("  {}  {:>6}  {}  {scaled}", t.id, t.seq, line.join(" "));
    }
}
