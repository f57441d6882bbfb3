//! `kappa report --check`: the report against what the sweep expects (each rule's verdict, the
//! learning-rate exponent, the critical batch size).

use crate::report::Report;

/// Whether every rule's verdict matches what the sweep expects (`kappa report --check`); the
/// messages say what does not.
pub fn check(report: &Report) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for r in &report.rules {
        let Some(expect) = r.expect else { continue };
        match r.verdict {
            None if r.unsettled_classes > 0 => problems.push(format!(
                "rule `{}`: no verdict: {} of its classes rest on plateaus of trials whose loss had not settled; {}",
                r.name,
                r.unsettled_classes,
                r.settle.advice(report.samples)
            )),
            None => problems.push(format!("rule `{}`: no verdict yet ({} trials missing)", r.name, report.missing)),
            Some(v) if v != expect => {
                problems.push(format!("rule `{}` {} but the sweep expects it {}", r.name, v.as_str(), expect.as_str()))
            }
            Some(_) => {}
        }
    }
    if let Some([lo, hi]) = report.expect_exponent {
        if report.lr_scaling.is_empty() {
            problems.push("expect_exponent: no group has two batch sizes with two learning rates each".into());
        }
        for l in &report.lr_scaling {
            match l.exponent {
                Some(a) if (lo..=hi).contains(&a) => {}
                Some(a) => problems.push(format!("{}: learning-rate exponent {a:.3} is outside [{lo}, {hi}]", l.group)),
                None => problems.push(format!(
                    "{}: no learning-rate exponent ({})",
                    l.group,
                    l.note.as_deref().unwrap_or("?")
                )),
            }
        }
    }
    if let Some([lo, hi]) = report.expect_b_crit {
        if report.critical_batch.is_empty() {
            problems.push("expect_b_crit: no group has two batch sizes with two learning rates each".into());
        }
        for c in &report.critical_batch {
            match c.b_crit {
                Some(b) if (lo..=hi).contains(&b) => {}
                Some(b) => problems.push(format!("{}: critical batch size {b:.1} is outside [{lo}, {hi}]", c.group)),
                None => {
                    problems.push(format!("{}: no critical batch size ({})", c.group, c.note.as_deref().unwrap_or("?")))
                }
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// The rules without `expect` whose verdict stayed undecided, and why: not failures of
/// `--check`, but a reader must see them.
pub fn undecided(report: &Report) -> Vec<String> {
    report
        .rules
        .iter()
        .filter(|r| r.expect.is_none() && r.verdict.is_none())
        .map(|r| {
            let why = if r.unsettled_classes > 0 {
                format!(
                    "{} of its classes rest on plateaus of trials whose loss had not settled; {}",
                    r.unsettled_classes,
                    r.settle.advice(report.samples)
                )
            } else {
                format!("{} trials missing or failed", report.missing)
            };
            format!("rule `{}` (no expect) stayed undecided: {why}", r.name)
        })
        .collect()
}
