//! Successive halving (`[search] kind = "halving"`): its settings' errors, at their key and
//! line; its rungs; and the asynchronous promotions of [`Halving`], driven by trials whose loss
//! at every rung is a known function of lr and batch size (a parabola in log lr, least at
//! lr = 0.0025·B), checked against what ASHA promotes, across groups, seeds, divergence, a
//! group's closing rung, replays and duplicate results.

use kappa_core::halving::{Halving, Promotion};
use kappa_core::spec::HalvingSpec;
use kappa_core::{CurvePoint, Plan, PlannedTrial, Stop, Sweep, TrialId, TrialMetrics, TrialStatus};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod common;

use common::{ids, parse};

// ---------------------------------------------------------------------------------------------
// Bad input

/// A halving sweep as a user writes it: the base task's `samples = 10_000` is line 11, `[grid]`
/// line 12, `[search]` line 18, then kind, min_samples, reduction and within on lines 19–22.
const HALVING: &str = common::sweep!(
    "halving",
    r#"[grid]
optimizer = ["sgd"]
lr = [0.004, 0.008, 0.016]
batch_size = [4, 16]
seed = [0, 1]

[search]
kind = "halving"
min_samples = 1_000
reduction = 3
within = ["batch_size"]
"#
);

/// Each case edits `base` (first occurrence of `from` → `to`) and must be rejected with an error
/// at `line` of sweep.toml whose text contains every fragment (the key path among them); every
/// wrong case is listed at once.
fn assert_rejected(base: &str, cases: &[(&str, &str, usize, &[&str])]) {
    let mut wrong = Vec::new();
    for (from, to, line, fragments) in cases {
        assert!(base.contains(from), "case setup: {from}");
        let Err(err) = parse(&base.replacen(from, to, 1)) else {
            wrong.push(format!("{to:?} was accepted"));
            continue;
        };
        let shown = err.to_string();
        let missing: Vec<&&str> = fragments.iter().filter(|f| !shown.contains(**f)).collect();
        if !missing.is_empty() || err.line != Some(*line) || !shown.starts_with(&format!("sweep.toml:{line}:")) {
            wrong.push(format!("{to:?}: expected line {line} and {missing:?}, got:\n{shown}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_valid_halving_sweep_parses_into_its_settings() {
    let s = parse(HALVING).unwrap_or_else(|e| panic!("{e}"));
    let h = s.halving.clone().expect("a halving sweep");
    assert_eq!((h.min_samples, h.reduction, h.max_samples), (1_000, 3, None));
    assert_eq!(kappa_core::halving::within_names(&h), ["batch_size"]);
    assert!(s.search.is_none(), "halving is no bracketing search");
    // Every grid point is a trial: halving runs the grid, it only stops trials early.
    assert_eq!(ids(HALVING).len(), 3 * 2 * 2);
    // The default reduction, and no `within`: one group.
    let plain = HALVING.replace("reduction = 3\n", "").replace("within = [\"batch_size\"]\n", "");
    let h = parse(&plain).unwrap().halving.unwrap();
    assert_eq!(h.reduction, HalvingSpec::DEFAULT_REDUCTION);
    assert!(h.within.is_empty());
    // A grid sweep has none.
    let grid = HALVING.split("\n[search]").next().unwrap();
    assert!(parse(grid).unwrap().halving.is_none());
}

#[test]
fn bad_halving_settings_are_named_with_their_key_and_line() {
    assert_rejected(
        HALVING,
        &[
            (
                "min_samples = 1_000",
                "min_samples = 10_000",
                20,
                &["`search.min_samples`", "min_samples = 10000 is not below the task's budget of 10000 samples"],
            ),
            (
                "min_samples = 1_000",
                "min_samples = 20_000",
                20,
                &["`search.min_samples`", "min_samples = 20000 is not below the task's budget of 10000"],
            ),
            ("min_samples = 1_000", "min_samples = 0", 20, &["`search.min_samples`", "positive whole number, got 0"]),
            ("min_samples = 1_000", "min_samples = 2.5", 20, &["`search.min_samples`", "positive whole number"]),
            ("min_samples = 1_000\n", "", 18, &["`search`", "successive halving needs `min_samples`"]),
            (
                "reduction = 3",
                "reduction = 1",
                21,
                &["`search.reduction`", "reduction must be a whole number ≥ 2", "got 1"],
            ),
            ("reduction = 3", "reduction = 2.5", 21, &["`search.reduction`", "whole number ≥ 2"]),
            (
                "within = [\"batch_size\"]",
                "within = [\"beta1\"]",
                22,
                &[
                    "`search.within`",
                    "within names `beta1`, which is not an axis of [grid]",
                    "its axes: ",
                    "optimizer",
                    "lr",
                    "batch_size",
                    "seed",
                ],
            ),
            (
                "within = [\"batch_size\"]",
                "within = [\"params.width\"]",
                22,
                &["`search.within`", "`params.width`, which is not an axis of [grid]"],
            ),
            (
                "within = [\"batch_size\"]",
                "within = [\"batch_size\", \"seed\"]",
                22,
                &["`search.within`", "within cannot name `seed`", "seeds are judged together"],
            ),
            (
                "within = [\"batch_size\"]",
                "within = \"batch_size\"",
                22,
                &["`search.within`", "within must be a list of axis names"],
            ),
            ("within = [\"batch_size\"]", "within = [16]", 22, &["`search.within`", "within lists axis names, got 16"]),
            (
                "min_samples = 1_000",
                "min_samples = 1_000\nmax_samples = 50_000",
                21,
                &["`search.max_samples`", "max_samples is for command tasks", "its `samples` (10000)"],
            ),
            (
                "seed = [0, 1]",
                "seed = [0, 1]\n\n[scaling]\nkappa = [1, 2]\nrules = [\"sgd-linear\"]",
                18,
                &["`scaling`", "[scaling] with successive halving is not supported yet"],
            ),
            // A setting of the other kind, each way.
            (
                "reduction = 3",
                "reduction = 3\naxis = \"lr\"",
                22,
                &["`search.axis`", "`axis` is a setting of kind = \"bracket\"; kind = \"halving\" has none"],
            ),
            (
                "within = [\"batch_size\"]",
                "within = [\"batch_size\"]\nrange = [1e-4, 1.0]",
                23,
                &["`search.range`", "`range` is a setting of kind = \"bracket\""],
            ),
            (
                "kind = \"halving\"",
                "kind = \"bracket\"",
                20,
                &[
                    "`search.min_samples`",
                    "`min_samples` is a setting of kind = \"halving\"; kind = \"bracket\" has none",
                ],
            ),
            (
                "kind = \"halving\"",
                "kind = \"grid\"",
                20,
                &["`search.min_samples`", "`min_samples` is a setting of kind = \"halving\"; the grid has none"],
            ),
            ("kind = \"halving\"", "kind = \"halve\"", 19, &["`search.kind`", "unknown search kind \"halve\""]),
        ],
    );
}

/// A sweep of trials that only sleep: line 4 is `kind = "noop"`, line 8 `[search]`.
const NOOP: &str = r#"version = 1
name = "n"
[task]
kind = "noop"
[grid]
lr = [0.1, 0.2]
seed = [0, 1]
[search]
kind = "halving"
min_samples = 1_000
"#;

#[test]
fn a_task_that_cannot_stop_and_continue_is_refused() {
    let err = parse(NOOP).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.line, Some(4), "{shown}");
    assert!(shown.starts_with("sweep.toml:4:"), "{shown}");
    assert!(shown.contains("`task.kind`"), "{shown}");
    assert!(shown.contains("kind = \"noop\" has no budget to stop at"), "{shown}");
    // Without halving the same sweep is fine.
    assert!(parse(NOOP.split("[search]").next().unwrap()).is_ok());
}

/// A command task that reads its rung's budget: line 5 is `argv`, line 10 `[search]`, line 13
/// `max_samples`.
const COMMAND: &str = r#"version = 1
name = "c"
[task]
kind = "command"
argv = ["python3", "train.py", "--lr={lr}", "--samples={samples}"]
[grid]
optimizer = ["adamw"]
lr = [0.1, 0.2]
seed = [0, 1]
[search]
kind = "halving"
min_samples = 1_000
max_samples = 9_000
"#;

#[test]
fn a_command_task_needs_max_samples_and_may_read_its_rungs_budget_only_under_halving() {
    // With halving: `{samples}` is the rung's budget, `max_samples` the whole one.
    let s = parse(COMMAND).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.halving.as_ref().unwrap().max_samples, Some(9_000));
    let plan = Plan::new(&s, "v");
    let h = Halving::new(&plan).expect("halving");
    assert_eq!(h.rungs(), [1_000, 3_000, 9_000]);
    assert_rejected(
        COMMAND,
        &[
            (
                "max_samples = 9_000\n",
                "",
                10,
                &["`search`", "a command task has no budget kappa knows: give `max_samples`"],
            ),
            (
                "max_samples = 9_000",
                "max_samples = 1_000",
                12,
                &["`search.min_samples`", "min_samples = 1000 is not below the task's budget of 1000"],
            ),
            ("max_samples = 9_000", "max_samples = -5", 13, &["`search.max_samples`", "positive whole number"]),
        ],
    );
    // Without halving there are no rungs: `{samples}` is refused at its argv entry.
    let grid = COMMAND.split("[search]").next().unwrap();
    let err = parse(grid).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.line, Some(5), "{shown}");
    assert!(shown.contains("`task.argv[3]`"), "{shown}");
    assert!(shown.contains("`{samples}`") && shown.contains("this sweep has no rungs"), "{shown}");
    // ... and accepted once it does not read it.
    assert!(parse(&grid.replace(", \"--samples={samples}\"", "")).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Rungs

fn spec(min_samples: u64, reduction: u64) -> HalvingSpec {
    HalvingSpec { min_samples, reduction, within: Vec::new(), max_samples: None }
}

#[test]
fn rungs_grow_by_the_reduction_and_end_at_the_whole_budget() {
    assert_eq!(spec(10_000, 3).rungs(90_000), [10_000, 30_000, 90_000]);
    assert_eq!(spec(10_000, 3).rungs(100_000), [10_000, 30_000, 90_000, 100_000]);
    assert_eq!(spec(10_000, 3).rungs(30_001), [10_000, 30_000, 30_001]);
    assert_eq!(spec(10_000, 3).rungs(10_001), [10_000, 10_001]);
    assert_eq!(spec(1_000, 2).rungs(8_000), [1_000, 2_000, 4_000, 8_000]);
    assert_eq!(spec(1_000, 4).rungs(20_000), [1_000, 4_000, 16_000, 20_000]);
}

// ---------------------------------------------------------------------------------------------
// Promotions

const MIN: u64 = 10_000;
const FULL: u64 = 90_000;
const RUNGS: [u64; 3] = [10_000, 30_000, 90_000];

/// Learning rates ranked differently at each batch size (see [`loss`]).
const LRS: [f64; 9] = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256];

/// A halving sweep of `lrs` × batch sizes 4 and 16 × seeds 0 and 1 with a budget of
/// [`FULL`] samples, rungs [`RUNGS`], its settings compared within equal batch sizes (or all
/// together): simulations (which recompute a rung from step 0).
fn asha_sweep(lrs: &[f64], within: bool) -> Sweep {
    let task = format!(
        "kind = \"optimizer\"\nlandscape = {{ kind = \"quadratic\", eigenvalues = [0.5, 1.0] }}\n\
         noise = {{ kind = \"gaussian\", sigma = 1.0 }}\nx0 = 0.5\npaths = 8\nsamples = {FULL}\n"
    );
    halving_sweep(&task, "", lrs, within)
}

/// [`asha_sweep`] of a command (which continues a rung from where the one before stopped).
fn command_sweep(lrs: &[f64], within: bool) -> Sweep {
    let task = "kind = \"command\"\nargv = [\"python3\", \"train.py\", \"--lr={lr}\", \"--samples={samples}\"]\n";
    halving_sweep(task, &format!("max_samples = {FULL}\n"), lrs, within)
}

fn halving_sweep(task: &str, search: &str, lrs: &[f64], within: bool) -> Sweep {
    let lrs: Vec<String> = lrs.iter().map(|lr| format!("{lr}")).collect();
    let within = if within { "within = [\"batch_size\"]\n" } else { "" };
    let text = format!(
        "version = 1\nname = \"asha\"\n[task]\n{task}\
         [grid]\noptimizer = [\"sgd\"]\nlr = [{}]\nbatch_size = [4, 16]\nseed = [0, 1]\n\
         [search]\nkind = \"halving\"\nmin_samples = {MIN}\nreduction = 3\n{within}{search}",
        lrs.join(", ")
    );
    Sweep::parse("f.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The loss a trial reaches at rung `rung`: least at lr = 0.0025·B (0.01 at B = 4, 0.04 at
/// B = 16), the same ranking at every rung.
fn loss(lr: f64, b: u64, rung: u32) -> f64 {
    (lr / (0.0025 * b as f64)).ln().powi(2) + 0.1 + 1.0 / (rung as f64 + 1.0)
}

/// What a trial stopped (or finished) at `rung` reports: its curve from step 0 to the rung's
/// budget.
fn metrics(t: &PlannedTrial, rung: u32) -> TrialMetrics {
    let (lr, b) = (t.params.hyper.lr, t.params.hyper.batch_size);
    let samples = RUNGS[rung as usize];
    TrialMetrics {
        curve: vec![CurvePoint::single(0, 0, 100.0), CurvePoint::single(samples, samples / b, loss(lr, b, rung))],
        ..TrialMetrics::default()
    }
}

/// A setting (a trial's parameters but the seed) here: (lr's bits, batch size).
type SettingKey = (u64, u64);

/// The sweep's trials, found by (lr, batch size, seed).
struct Trials(Vec<PlannedTrial>);

impl Trials {
    fn new(plan: &Plan<'_>) -> Trials {
        Trials(plan.trials().collect())
    }

    fn get(&self, lr: f64, b: u64, seed: u64) -> &PlannedTrial {
        self.0
            .iter()
            .find(|t| t.params.hyper.lr == lr && t.params.hyper.batch_size == b && t.params.hyper.seed == seed)
            .unwrap_or_else(|| panic!("no trial lr = {lr}, B = {b}, seed {seed}"))
    }

    fn of(&self, id: TrialId) -> &PlannedTrial {
        self.0.iter().find(|t| t.id == id).expect("a trial of the plan")
    }

    /// A setting's key.
    fn setting(&self, id: TrialId) -> SettingKey {
        let t = self.of(id);
        (t.params.hyper.lr.to_bits(), t.params.hyper.batch_size)
    }
}

/// Records `t`'s result at `rung` as a stop there (or success at the last rung).
fn record(h: &mut Halving, t: &PlannedTrial, rung: u32) -> Vec<Promotion> {
    let status = if rung as usize + 1 == RUNGS.len() { TrialStatus::Succeeded } else { TrialStatus::Stopped };
    h.record(t.id, rung, status, Some(&metrics(t, rung)))
}

/// Records a diverged result of `t` at `rung`.
fn diverge(h: &mut Halving, t: &PlannedTrial, rung: u32) -> Vec<Promotion> {
    h.record(t.id, rung, TrialStatus::Diverged, None)
}

/// The promotion of both seeds of the setting (lr, b) to `rung`.
fn both_seeds(trials: &Trials, lr: f64, b: u64, rung: u32) -> BTreeSet<Promoted> {
    let stop = Stop { rung, samples: RUNGS[rung as usize], last: rung as usize + 1 == RUNGS.len() };
    [0, 1].iter().map(|&seed| promoted(&Promotion { id: trials.get(lr, b, seed).id, stop: Some(stop), rung })).collect()
}

/// A promotion as a comparable tuple: trial, rung, and its stop's (rung, samples, last).
type Promoted = (TrialId, u32, Option<(u32, u64, bool)>);

fn promoted(p: &Promotion) -> Promoted {
    (p.id, p.rung, p.stop.map(|s| (s.rung, s.samples, s.last)))
}

fn as_set(p: &[Promotion]) -> BTreeSet<Promoted> {
    p.iter().map(promoted).collect()
}

/// What ASHA promotes as results finish one rung in a group: after each finished setting, the
/// best ⌊n/3⌋ of the n finished so far, those not promoted yet and finite (reduction 3).
struct Asha {
    done: Vec<(f64, f64)>,
    promoted: Vec<f64>,
}

impl Asha {
    fn new() -> Asha {
        Asha { done: Vec::new(), promoted: Vec::new() }
    }

    /// `lr` finished with objective `y` (`+∞`: diverged); returns the lrs it promotes.
    fn finish(&mut self, lr: f64, y: f64) -> Vec<f64> {
        self.done.push((y, lr));
        let mut ranked = self.done.clone();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        let top = ranked.len() / 3;
        let mut out = Vec::new();
        for &(y, lr) in &ranked[..top] {
            if y.is_finite() && !self.promoted.contains(&lr) {
                self.promoted.push(lr);
                out.push(lr);
            }
        }
        out.sort_by(f64::total_cmp);
        out
    }
}

/// Sorted lrs of the settings promoted by `p`, each checked to be promoted with both seeds, to
/// `rung`, at batch size `b`.
fn promoted_lrs(trials: &Trials, p: &[Promotion], b: u64, rung: u32) -> Vec<f64> {
    let mut lrs: Vec<f64> = p.iter().map(|p| trials.of(p.id).params.hyper.lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    let expected: BTreeSet<_> = lrs.iter().flat_map(|&lr| both_seeds(trials, lr, b, rung)).collect();
    assert_eq!(as_set(p), expected, "both seeds, to rung {rung} at B = {b}");
    assert_eq!(p.len(), 2 * lrs.len(), "each trial once");
    lrs
}

#[test]
fn a_setting_goes_on_once_both_seeds_are_in_the_best_third_of_its_group() {
    let sweep = asha_sweep(&LRS, true);
    let plan = Plan::new(&sweep, kappa_core::CodeVersion::from("v"));
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).expect("halving");
    assert_eq!(h.rungs(), RUNGS);
    assert_eq!(h.groups().len(), 2);
    assert_eq!(h.first_stop(), Stop { rung: 0, samples: MIN, last: false });
    for t in &trials.0 {
        assert_eq!(h.stop_of(t.id), Some(h.first_stop()));
        let s = h.standing(t.id).unwrap();
        assert_eq!((s.rung, s.rungs, s.samples), (0, 3, MIN));
    }

    // Every seed 0 finishes rung 0: no setting has both seeds, nothing goes on.
    for b in [4, 16] {
        for lr in LRS {
            assert_eq!(record(&mut h, trials.get(lr, b, 0), 0), [], "lr {lr}, B = {b}: seed 1 has not finished");
        }
    }
    assert_eq!(h.reached(), [36 / 2, 0, 0]);

    // Seed 1 finishes, the two batch sizes interleaved. At B = 4 the best settings come first (the
    // best third is promoted and no other: 3 of 9); at B = 16 the worst come first, and each
    // setting that is in the best third of those finished when it finishes goes on at once.
    let order4 = [0.008, 0.256, 0.001, 0.128, 0.064, 0.016, 0.002, 0.032, 0.004];
    let order16 = [0.001, 0.002, 0.004, 0.256, 0.008, 0.128, 0.016, 0.064, 0.032];
    let (mut asha4, mut asha16) = (Asha::new(), Asha::new());
    let mut went4 = Vec::new();
    let mut went16 = Vec::new();
    for i in 0..9 {
        for (b, order, asha, went) in [(4, &order4, &mut asha4, &mut went4), (16, &order16, &mut asha16, &mut went16)] {
            let lr = order[i];
            let p = record(&mut h, trials.get(lr, b, 1), 0);
            let lrs = promoted_lrs(&trials, &p, b, 1);
            assert_eq!(lrs, asha.finish(lr, loss(lr, b, 0)), "B = {b}, after lr = {lr} ({} finished)", i + 1);
            went.push(lrs);
        }
    }
    // Spelled out: B = 4 promotes its best (0.008) as the third setting finishes (⌊3/3⌋ = 1), the
    // second best (0.016) at the sixth, the third best (0.004) at the ninth.
    let none: Vec<f64> = Vec::new();
    assert_eq!(went4[2], [0.008]);
    assert_eq!(went4[5], [0.016]);
    assert_eq!(went4[8], [0.004]);
    assert_eq!(went4.iter().flatten().count(), 3, "{went4:?}");
    // B = 16 (best at 0.04) gets better and better settings: from the third on, each is in the
    // best third of those finished when it finishes, and goes on at once: the best of the first
    // three (0.004) at the third, 0.256 at the fourth (best of four), 0.008 at the fifth, 0.128 at
    // the sixth (second of six), 0.016 at the seventh, 0.064 and 0.032 after. Seven of nine went
    // on: what went on early stays promoted (ASHA), so a group can take more than ⌊n/3⌋ on.
    assert_eq!(went16[2], [0.004]);
    assert_eq!(went16[3], [0.256]);
    assert_eq!(went16[4], [0.008]);
    assert_eq!(went16[5], [0.128]);
    assert_eq!(went16[6], [0.016]);
    assert_eq!(went16[7], [0.064]);
    assert_eq!(went16[8], [0.032]);
    assert_eq!(went16.iter().filter(|w| **w == none).count(), 2);
    // Each group is judged alone: B = 4's best third is not B = 16's.
    let at_rung = |h: &Halving, b: u64, rung: u32| -> Vec<f64> {
        LRS.iter().copied().filter(|&lr| h.standing(trials.get(lr, b, 0).id).unwrap().rung == rung).collect()
    };
    assert_eq!(at_rung(&h, 4, 1), [0.004, 0.008, 0.016]);
    assert_eq!(at_rung(&h, 16, 1), [0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256]);
    assert_eq!(at_rung(&h, 16, 0), [0.001, 0.002]);
    for lr in at_rung(&h, 4, 1) {
        for seed in [0, 1] {
            let id = trials.get(lr, 4, seed).id;
            assert_eq!(h.stop_of(id), Some(Stop { rung: 1, samples: 30_000, last: false }));
            assert_eq!(h.standing(id).unwrap().samples, 30_000);
        }
    }
    assert_eq!(h.reached(), [36, 0, 0]);

    // Rung 1 at B = 4: its three promoted settings finish, the best (0.008) goes on to the last
    // rung, the whole budget, as the third finishes.
    assert_eq!(record(&mut h, trials.get(0.004, 4, 0), 1), []);
    assert_eq!(record(&mut h, trials.get(0.004, 4, 1), 1), []);
    assert_eq!(record(&mut h, trials.get(0.016, 4, 1), 1), []);
    assert_eq!(record(&mut h, trials.get(0.016, 4, 0), 1), []);
    assert_eq!(record(&mut h, trials.get(0.008, 4, 1), 1), []);
    let p = record(&mut h, trials.get(0.008, 4, 0), 1);
    assert_eq!(as_set(&p), both_seeds(&trials, 0.008, 4, 2));
    assert_eq!(p[0].stop, Some(Stop { rung: 2, samples: FULL, last: true }));
    assert_eq!(at_rung(&h, 4, 2), [0.008]);
    // A trial at the last rung finishes there: nothing goes further.
    assert_eq!(record(&mut h, trials.get(0.008, 4, 0), 2), []);
    assert_eq!(record(&mut h, trials.get(0.008, 4, 1), 2), []);
    assert_eq!(h.standing(trials.get(0.008, 4, 1).id).unwrap().rung, 2);
    // B = 16 did not move meanwhile.
    assert_eq!(at_rung(&h, 16, 2), none);
    assert_eq!(h.reached(), [36, 6, 2]);
}

#[test]
fn a_diverged_seed_keeps_its_setting_from_ever_going_on() {
    let sweep = asha_sweep(&LRS, true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).unwrap();
    // At B = 4 the best setting (0.008) has a diverged seed: the best finite ones go on instead.
    let mut asha = Asha::new();
    let mut went = Vec::new();
    let order = [0.008, 0.016, 0.001, 0.004, 0.002, 0.256, 0.032, 0.128, 0.064];
    for lr in order {
        let t0 = trials.get(lr, 4, 0);
        assert_eq!(record(&mut h, t0, 0), []);
        let t1 = trials.get(lr, 4, 1);
        let p = if lr == 0.008 { diverge(&mut h, t1, 0) } else { record(&mut h, t1, 0) };
        let y = if lr == 0.008 { f64::INFINITY } else { loss(lr, 4, 0) };
        let lrs = promoted_lrs(&trials, &p, 4, 1);
        assert_eq!(lrs, asha.finish(lr, y), "after lr = {lr}");
        went.extend(lrs);
    }
    went.sort_by(f64::total_cmp);
    assert_eq!(went, [0.004, 0.016, 0.032]);
    for seed in [0, 1] {
        let id = trials.get(0.008, 4, seed).id;
        assert_eq!(h.standing(id).unwrap().rung, 0);
    }
    // Whichever seed diverges, and however the rest of the group is ranked, it never goes on:
    // here every other setting of B = 16 diverged, and the one left is the worst (0.001).
    let mut h = Halving::new(&plan).unwrap();
    let mut out = Vec::new();
    for lr in LRS {
        let (t0, t1) = (trials.get(lr, 16, 0), trials.get(lr, 16, 1));
        if lr == 0.001 {
            out.extend(record(&mut h, t0, 0));
            out.extend(record(&mut h, t1, 0));
        } else {
            out.extend(diverge(&mut h, t0, 0));
            out.extend(record(&mut h, t1, 0));
        }
    }
    // Nine finished: the best third has one finite setting (the group's only one) and it goes on.
    assert_eq!(as_set(&out), both_seeds(&trials, 0.001, 16, 1));
    // A group where everything diverged promotes nobody, even once every setting is decided.
    let mut out = Vec::new();
    for lr in LRS {
        out.extend(diverge(&mut h, trials.get(lr, 4, 0), 0));
        out.extend(record(&mut h, trials.get(lr, 4, 1), 0));
    }
    assert_eq!(out, []);
    assert!(LRS.iter().all(|&lr| h.standing(trials.get(lr, 4, 1).id).unwrap().rung == 0));
}

#[test]
fn a_setting_with_a_diverged_seed_counts_as_finished_at_once_so_a_decided_rung_stays_decided() {
    // B = 4, six lrs; the best (0.008) has its seed 0 diverge first, its seed 1 comes last.
    let lrs = [0.002, 0.004, 0.008, 0.016, 0.032, 0.064];
    let sweep = command_sweep(&lrs, true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).unwrap();
    assert_eq!(diverge(&mut h, trials.get(0.008, 4, 0), 0), []);
    // Whatever its other seed does, 0.008 is +∞: it is one of the settings that finished rung 0,
    // so with the others the best ⌊n/3⌋ of six: 0.016 (second best) as the third setting
    // finishes, 0.004 (third) at the sixth.
    let mut went = Vec::new();
    for lr in [0.016, 0.004, 0.032, 0.002, 0.064] {
        let p: Vec<Promotion> = [0, 1].iter().flat_map(|&s| record(&mut h, trials.get(lr, 4, s), 0)).collect();
        went.push(promoted_lrs(&trials, &p, 4, 1));
    }
    assert_eq!(went, [vec![], vec![0.016], vec![], vec![], vec![0.004]]);
    // At rung 1, 0.004 does better than 0.016 (a ranking that changes with the budget).
    let at_rung_1 = |y: f64| TrialMetrics {
        curve: vec![CurvePoint::single(0, 0, 100.0), CurvePoint::single(RUNGS[1], RUNGS[1] / 4, y)],
        ..TrialMetrics::default()
    };
    let mut out = Vec::new();
    for seed in [0, 1] {
        let t = trials.get(0.016, 4, seed);
        out.extend(h.record(t.id, 1, TrialStatus::Stopped, Some(&at_rung_1(2.0))));
    }
    assert_eq!(out, [], "0.004 has not finished rung 1: nothing is decided there yet");
    // The diverged setting's other seed finishes rung 0, late and well: it changes nothing.
    assert_eq!(record(&mut h, trials.get(0.008, 4, 1), 0), []);
    for seed in [0, 1] {
        let t = trials.get(0.004, 4, seed);
        out.extend(h.record(t.id, 1, TrialStatus::Stopped, Some(&at_rung_1(1.0))));
    }
    // Rung 1 is decided with both: its best (0.004) goes on to the whole budget, alone.
    assert_eq!(as_set(&out), both_seeds(&trials, 0.004, 4, 2));
    let rungs: Vec<u32> = lrs.iter().map(|&lr| h.standing(trials.get(lr, 4, 0).id).unwrap().rung).collect();
    assert_eq!(rungs, [0, 2, 0, 1, 0, 0]);
}

#[test]
fn a_group_smaller_than_the_reduction_still_takes_its_best_to_the_whole_budget() {
    // Two lrs per batch size: ⌊2/3⌋ = 0 would promote nobody; once the group's rung is decided
    // its best goes on anyway, at every rung.
    let sweep = asha_sweep(&[0.008, 0.032], true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).unwrap();
    assert_eq!(h.groups().len(), 2);
    let mut labels: Vec<&str> = h.groups().iter().map(|g| g.label.as_str()).collect();
    labels.sort();
    assert_eq!(labels, ["batch_size=16", "batch_size=4"]);
    // B = 4: three of four trials finished, nothing decided; the fourth decides the rung.
    assert_eq!(record(&mut h, trials.get(0.008, 4, 0), 0), []);
    assert_eq!(record(&mut h, trials.get(0.032, 4, 0), 0), []);
    assert_eq!(record(&mut h, trials.get(0.008, 4, 1), 0), []);
    // B = 16 finishes in between: it decides its own rung, not B = 4's.
    assert_eq!(record(&mut h, trials.get(0.008, 16, 0), 0), []);
    assert_eq!(record(&mut h, trials.get(0.008, 16, 1), 0), []);
    assert_eq!(record(&mut h, trials.get(0.032, 16, 1), 0), []);
    let p = record(&mut h, trials.get(0.032, 16, 0), 0);
    assert_eq!(as_set(&p), both_seeds(&trials, 0.032, 16, 1), "B = 16's best is 0.032 (0.04 = 0.0025·16)");
    let p = record(&mut h, trials.get(0.032, 4, 1), 0);
    assert_eq!(as_set(&p), both_seeds(&trials, 0.008, 4, 1), "B = 4's best is 0.008 (0.01 = 0.0025·4)");
    // Rung 1 has one setting per group: it is the best there, decided once both seeds finish.
    assert_eq!(record(&mut h, trials.get(0.008, 4, 0), 1), []);
    let p = record(&mut h, trials.get(0.008, 4, 1), 1);
    assert_eq!(as_set(&p), both_seeds(&trials, 0.008, 4, 2));
    assert!(p.iter().all(|p| p.stop == Some(Stop { rung: 2, samples: FULL, last: true })));
    assert_eq!(record(&mut h, trials.get(0.032, 16, 1), 1), []);
    let p = record(&mut h, trials.get(0.032, 16, 0), 1);
    assert_eq!(as_set(&p), both_seeds(&trials, 0.032, 16, 2));
    // Each group has one setting at the whole budget; the others stopped at rung 0.
    for (lr, b, rung) in [(0.008, 4, 2), (0.032, 4, 0), (0.008, 16, 0), (0.032, 16, 2)] {
        for seed in [0, 1] {
            assert_eq!(h.standing(trials.get(lr, b, seed).id).unwrap().rung, rung, "lr {lr}, B = {b}");
        }
    }
    // Without `within`, one group of four settings: its best alone goes on (⌊4/3⌋ = 1).
    let sweep = asha_sweep(&[0.008, 0.032], false);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).unwrap();
    assert_eq!(h.groups().len(), 1);
    let mut out = Vec::new();
    for t in &trials.0 {
        out.extend(record(&mut h, t, 0));
    }
    // The losses at the optimum of B = 4 and of B = 16 tie: the tie is broken by plan order, so
    // exactly one of the two optima goes on.
    let went: BTreeSet<SettingKey> = out.iter().map(|p| trials.setting(p.id)).collect();
    assert_eq!(went.len(), 1, "{went:?}");
    assert_eq!(out.len(), 2);
    let (lr, b) = *went.iter().next().unwrap();
    assert!((f64::from_bits(lr), b) == (0.008, 4) || (f64::from_bits(lr), b) == (0.032, 16), "{went:?}");
}

/// A deterministic shuffle (xorshift), so a test's orders are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One recorded rung result.
#[derive(Clone)]
struct Recorded {
    id: TrialId,
    rung: u32,
    status: TrialStatus,
    metrics: Option<TrialMetrics>,
}

/// Runs a search to its end, taking the runnable trials (every trial at rung 0, then each
/// promoted one) in an order drawn from `seed`; `diverges` says which trials diverge (at their
/// first rung). Returns the results in the order they were recorded and what each promoted.
fn drive(
    h: &mut Halving,
    trials: &Trials,
    seed: u64,
    diverges: &dyn Fn(&PlannedTrial) -> bool,
) -> (Vec<Recorded>, Vec<Vec<Promotion>>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut queue: Vec<(TrialId, u32)> = trials.0.iter().map(|t| (t.id, 0)).collect();
    let (mut log, mut promoted) = (Vec::new(), Vec::new());
    while !queue.is_empty() {
        let (id, rung) = queue.swap_remove(rng.below(queue.len()));
        let t = trials.of(id);
        let r = if diverges(t) {
            Recorded { id, rung, status: TrialStatus::Diverged, metrics: None }
        } else {
            let last = rung as usize + 1 == RUNGS.len();
            let status = if last { TrialStatus::Succeeded } else { TrialStatus::Stopped };
            Recorded { id, rung, status, metrics: Some(metrics(t, rung)) }
        };
        let p = h.record(r.id, r.rung, r.status, r.metrics.as_ref());
        queue.extend(p.iter().map(|p| (p.id, p.rung)));
        log.push(r);
        promoted.push(p);
    }
    (log, promoted)
}

/// Every trial's (id, rung, samples there, next stop), and the trials that finished each rung:
/// the search's state as it shows it.
type State = (Vec<(TrialId, u32, u64, Option<Stop>)>, Vec<u64>);

fn state(h: &Halving, trials: &Trials) -> State {
    let standings = trials
        .0
        .iter()
        .map(|t| {
            let s = h.standing(t.id).unwrap();
            (t.id, s.rung, s.samples, h.stop_of(t.id))
        })
        .collect();
    (standings, h.reached())
}

#[test]
fn searches_in_any_order_keep_seeds_together_and_take_a_setting_of_each_group_to_the_end() {
    let sweep = asha_sweep(&LRS, true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    // Seed 1 of B = 4's second best (0.016) diverges; so does everything above lr = 0.1 at B = 16.
    let diverges = |t: &PlannedTrial| {
        let p = &t.params.hyper;
        (p.lr == 0.016 && p.batch_size == 4 && p.seed == 1) || (p.lr > 0.1 && p.batch_size == 16)
    };
    for seed in 1..=40 {
        let mut h = Halving::new(&plan).unwrap();
        let (log, promoted) = drive(&mut h, &trials, seed, &diverges);
        // Every trial finished rung 0, and only promoted trials finished a later one.
        let mut finished: BTreeMap<SettingKey, BTreeMap<u32, usize>> = BTreeMap::new();
        for r in &log {
            *finished.entry(trials.setting(r.id)).or_default().entry(r.rung).or_default() += 1;
        }
        assert_eq!(log.iter().filter(|r| r.rung == 0).count(), 36, "order {seed}");
        for (setting, rungs) in &finished {
            assert!(rungs.values().all(|&n| n == 2), "order {seed}: seeds of {setting:?} finish together: {rungs:?}");
        }
        let promotions: Vec<&Promotion> = promoted.iter().flatten().collect();
        let recorded_above_0 = log.iter().filter(|r| r.rung > 0).count();
        assert_eq!(promotions.len(), recorded_above_0, "order {seed}: every promoted trial ran its rung");
        for p in &promoted {
            // A setting's seeds are promoted together, in the same call.
            let mut by_setting: BTreeMap<SettingKey, Vec<TrialId>> = BTreeMap::new();
            for q in p {
                by_setting.entry(trials.setting(q.id)).or_default().push(q.id);
                assert_eq!(q.stop.map(|s| s.rung), Some(q.rung));
                assert_eq!(q.stop.map(|s| s.samples), Some(RUNGS[q.rung as usize]));
                assert_eq!(q.stop.map(|s| s.last), Some(q.rung == 2));
            }
            assert!(by_setting.values().all(|ids| ids.len() == 2), "order {seed}: {by_setting:?}");
        }
        let at_end = |b: u64| -> BTreeSet<SettingKey> {
            log.iter()
                .filter(|r| r.rung == 2 && trials.of(r.id).params.hyper.batch_size == b)
                .map(|r| trials.setting(r.id))
                .collect()
        };
        // The diverged setting never goes on; each group takes at least one setting to the whole
        // budget, never one that diverged.
        let dead = (0.016f64.to_bits(), 4);
        assert!(promotions.iter().all(|p| trials.setting(p.id) != dead), "order {seed}");
        for b in [4, 16] {
            let at_end = at_end(b);
            assert!(!at_end.is_empty(), "order {seed}: B = {b} took nothing to the whole budget");
            for (lr, _) in &at_end {
                let lr = f64::from_bits(*lr);
                assert!(!(b == 16 && lr > 0.1), "order {seed}: a diverged setting went on");
            }
        }
        // Whatever goes on from rung k was, when promoted, among the best ⌊n/3⌋ (at least one) of
        // the n settings of its group that had finished rung k.
        // (batch size, rung) → (objective, setting) of each setting that finished it, and each
        // (setting, rung)'s results so far.
        let mut seen: HashMap<(u64, u32), Vec<(f64, SettingKey)>> = HashMap::new();
        let mut results: HashMap<(SettingKey, u32), Vec<f64>> = HashMap::new();
        for (r, p) in log.iter().zip(&promoted) {
            let t = trials.of(r.id);
            let y = if r.status == TrialStatus::Diverged {
                f64::INFINITY
            } else {
                loss(t.params.hyper.lr, t.params.hyper.batch_size, r.rung)
            };
            let key = (trials.setting(r.id), r.rung);
            let ys = results.entry(key).or_default();
            ys.push(y);
            // A setting has finished the rung once both seeds have, or one diverged there (its
            // objective is +∞ whatever the other seed does): counting it then bounds the best
            // ⌊n/3⌋ from above either way.
            let first_divergence = y.is_infinite() && ys.iter().filter(|y| y.is_infinite()).count() == 1;
            let both_finite = ys.len() == 2 && ys.iter().all(|y| y.is_finite());
            if first_divergence || both_finite {
                let mean = ys.iter().sum::<f64>() / ys.len() as f64;
                seen.entry((t.params.hyper.batch_size, r.rung)).or_default().push((mean, key.0));
            }
            for q in p {
                let qt = trials.of(q.id);
                let group = &seen[&(qt.params.hyper.batch_size, q.rung - 1)];
                let mut ranked: Vec<&(f64, SettingKey)> = group.iter().collect();
                ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
                let top = (group.len() / 3).max(1);
                let setting = trials.setting(q.id);
                let rank = ranked.iter().position(|(_, s)| *s == setting);
                assert!(
                    rank.is_some_and(|k| k < top && ranked[k].0.is_finite()),
                    "order {seed}: {setting:?} promoted to rung {} at rank {rank:?} of {}",
                    q.rung,
                    group.len()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replays

#[test]
fn a_replay_of_the_recorded_results_makes_the_same_promotions_and_repeats_change_nothing() {
    let sweep = asha_sweep(&LRS, true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let diverges = |t: &PlannedTrial| t.params.hyper.lr == 0.004 && t.params.hyper.seed == 0;
    for seed in [3, 17, 29] {
        let mut live = Halving::new(&plan).unwrap();
        let (log, promoted) = drive(&mut live, &trials, seed, &diverges);
        assert!(promoted.iter().any(|p| !p.is_empty()), "order {seed}: something went on");
        // Replayed into a fresh search (its maps hashed differently), in the order recorded: the
        // same promotions in the same order, each after the same result, and the same state.
        let mut replay = Halving::new(&plan).unwrap();
        for (i, r) in log.iter().enumerate() {
            let p = replay.record(r.id, r.rung, r.status, r.metrics.as_ref());
            assert_eq!(p, promoted[i], "order {seed}: result {i}");
        }
        assert!(state(&replay, &trials) == state(&live, &trials), "order {seed}");
        // Every result recorded a second time, and at every other rung, changes nothing.
        // (At its end every trial has its result at the rung it stands at: any result now is a
        // repeat, or for a rung it is not at.)
        let before = state(&live, &trials);
        for r in &log {
            assert_eq!(live.record(r.id, r.rung, r.status, r.metrics.as_ref()), [], "a second result");
            let t = trials.of(r.id);
            for rung in 0..RUNGS.len() as u32 {
                assert_eq!(live.record(r.id, rung, TrialStatus::Stopped, Some(&metrics(t, rung))), []);
                assert_eq!(live.record(r.id, rung, TrialStatus::Diverged, None), []);
            }
            assert_eq!(live.record(r.id, 3, TrialStatus::Stopped, None), [], "no such rung");
        }
        assert!(state(&live, &trials) == before, "order {seed}: repeats changed the search");
    }
}

#[test]
fn a_result_for_a_rung_the_trial_is_not_at_or_a_repeat_changes_nothing() {
    let sweep = asha_sweep(&LRS, true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).unwrap();
    let t = trials.get(0.008, 4, 0);
    // A rung-1 result before the trial was promoted: ignored, and its real rung-0 result counts.
    assert_eq!(record(&mut h, t, 1), []);
    assert_eq!(h.reached(), [0, 0, 0]);
    assert_eq!(record(&mut h, t, 0), []);
    assert_eq!(h.reached(), [1, 0, 0]);
    // A second rung-0 result, even a better one or a divergence, is not taken.
    assert_eq!(diverge(&mut h, t, 0), []);
    assert_eq!(h.reached(), [1, 0, 0]);
    // The B = 4 group finishes rung 0 best first: 0.008 goes on with the third setting, as if the
    // divergence above had never been recorded.
    assert_eq!(record(&mut h, trials.get(0.008, 4, 1), 0), []);
    for lr in [0.016, 0.004] {
        let p: Vec<Promotion> = [0, 1].iter().flat_map(|&s| record(&mut h, trials.get(lr, 4, s), 0)).collect();
        if lr == 0.004 {
            assert_eq!(as_set(&p), both_seeds(&trials, 0.008, 4, 1));
        } else {
            assert_eq!(p, []);
        }
    }
    // Now at rung 1: a late rung-0 result of it is ignored, and so is a trial not in the sweep.
    let before = state(&h, &trials);
    assert_eq!(record(&mut h, t, 0), []);
    let other = asha_sweep(&[0.5], true);
    let stranger = Plan::new(&other, "v").trials().next().unwrap();
    assert!(trials.0.iter().all(|t| t.id != stranger.id));
    assert_eq!(h.record(stranger.id, 0, TrialStatus::Stopped, Some(&metrics(&stranger, 0))), []);
    assert_eq!(h.standing(stranger.id), None);
    assert_eq!(h.stop_of(stranger.id), None);
    assert!(state(&h, &trials) == before);
}

// ---------------------------------------------------------------------------------------------
// Budget

#[test]
fn most_samples_counts_every_trial_to_the_first_rung_and_a_third_of_each_group_on() {
    // 9 lrs × 2 seeds per batch size, rungs 10k → 30k → 90k, within batch size; 3 then 1 of a
    // group's 9 settings go on. A command continues where it stopped: per group
    // 9 settings · 2 seeds · 10k + 3 · 2 · (30k − 10k) + 1 · 2 · (90k − 30k)
    // = 180k + 120k + 120k = 420k; two groups: 840k.
    let h = |sweep: &Sweep| Halving::new(&Plan::new(sweep, "v")).unwrap().expected_samples();
    assert_eq!(h(&command_sweep(&LRS, true)), 840_000);
    // A simulation recomputes each rung from step 0: 9 · 2 · 10k + 3 · 2 · 30k + 1 · 2 · 90k
    // = 540k per group, 1080k in all.
    assert_eq!(h(&asha_sweep(&LRS, true)), 1_080_000);
    // 4 lrs: per group 4 · 2 · 10k + 1 · 2 · 20k + 1 · 2 · 60k = 80k + 40k + 120k = 240k; two
    // groups: 480k. As one group of 8 settings: 8 · 2 · 10k + 2 · 2 · 20k + 1 · 2 · 60k
    // = 160k + 80k + 120k = 360k.
    let lrs = [0.004, 0.008, 0.016, 0.032];
    assert_eq!(h(&command_sweep(&lrs, true)), 480_000);
    assert_eq!(h(&command_sweep(&lrs, false)), 360_000);
    // Simulated, one group: 8 · 2 · 10k + 2 · 2 · 30k + 1 · 2 · 90k = 160k + 120k + 180k.
    assert_eq!(h(&asha_sweep(&lrs, false)), 460_000);
    // Two lrs: 2 · 2 · 10k + 1 · 2 · 20k + 1 · 2 · 60k = 200k per group (at least one goes on).
    assert_eq!(h(&command_sweep(&[0.008, 0.032], true)), 400_000);
}

#[test]
fn a_search_whose_results_come_best_first_spends_the_expected_samples_exactly_and_worst_first_at_most_the_most() {
    // Results that arrive best first promote exactly the best third at each rung: the samples
    // spent, rung by rung (from where each trial stopped, or from step 0 for a simulation), are
    // expected_samples. Results that arrive worst first (each better than every one before)
    // promote the most asynchronous halving can, and spend no more than most_samples.
    for (sweep, continues, best_first) in [
        (asha_sweep(&LRS, true), false, true),
        (command_sweep(&LRS, true), true, true),
        (asha_sweep(&LRS, true), false, false),
        (command_sweep(&LRS, true), true, false),
    ] {
        let plan = Plan::new(&sweep, "v");
        let trials = Trials::new(&plan);
        let mut h = Halving::new(&plan).unwrap();
        let mut queue: Vec<(TrialId, u32)> = trials.0.iter().map(|t| (t.id, 0)).collect();
        let mut spent = 0u64;
        while !queue.is_empty() {
            // The best result of the lowest rung first.
            queue.sort_by(|a, b| {
                let (ta, tb) = (trials.of(a.0), trials.of(b.0));
                let ya = loss(ta.params.hyper.lr, ta.params.hyper.batch_size, a.1);
                let yb = loss(tb.params.hyper.lr, tb.params.hyper.batch_size, b.1);
                let by_loss = if best_first { ya.total_cmp(&yb) } else { yb.total_cmp(&ya) };
                a.1.cmp(&b.1).then(by_loss).then(a.0.cmp(&b.0))
            });
            let (id, rung) = queue.remove(0);
            let from = if rung == 0 || !continues { 0 } else { RUNGS[rung as usize - 1] };
            spent += RUNGS[rung as usize] - from;
            let p = record(&mut h, trials.of(id), rung);
            queue.extend(p.iter().map(|p| (p.id, p.rung)));
        }
        if best_first {
            assert_eq!(h.reached(), [36, 2 * 2 * 3, 2 * 2]);
            assert_eq!(spent, h.expected_samples(), "continues: {continues}");
        } else {
            assert!(spent > h.expected_samples(), "worst first promotes more: {spent}");
            assert!(spent <= h.most_samples(), "{spent} > {}", h.most_samples());
        }
    }
}

/// [`halving_sweep`] judged by the stationary loss (which a rung that ends before the burn-in
/// does not have).
fn stationary_sweep(lrs: &[f64]) -> Sweep {
    let task = format!(
        "kind = \"optimizer\"\nlandscape = {{ kind = \"quadratic\", eigenvalues = [0.5, 1.0] }}\n\
         noise = {{ kind = \"gaussian\", sigma = 1.0 }}\nx0 = 0.5\npaths = 8\nsamples = {FULL}\n"
    );
    let text = halving_text(&task, lrs).replace("[search]", "[analysis]\nobjective = \"stationary\"\n[search]");
    Sweep::parse("f.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn halving_text(task: &str, lrs: &[f64]) -> String {
    let lrs: Vec<String> = lrs.iter().map(|lr| format!("{lr}")).collect();
    format!(
        "version = 1\nname = \"asha\"\n[task]\n{task}\
         [grid]\noptimizer = [\"sgd\"]\nlr = [{}]\nbatch_size = [4, 16]\nseed = [0, 1]\n\
         [search]\nkind = \"halving\"\nmin_samples = {MIN}\nreduction = 3\nwithin = [\"batch_size\"]\n",
        lrs.join(", ")
    )
}

/// Where the `[analysis]` objective is not defined at a rung (no stationary loss before the
/// burn-in ends), settings are ranked by the metric's last value there: the best still go on,
/// and every group still takes one to the whole budget, instead of all stopping at the first
/// rung.
#[test]
fn settings_whose_objective_a_rung_cannot_read_are_ranked_by_their_last_loss() {
    let sweep = stationary_sweep(&LRS);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let mut h = Halving::new(&plan).unwrap();
    let mut promoted = Vec::new();
    for t in &trials.0 {
        // `metrics` has no stationary loss.
        promoted.extend(record(&mut h, t, 0));
    }
    for b in [4, 16] {
        let lrs = promoted_lrs(
            &trials,
            &promoted
                .iter()
                .filter(|p| p.rung == 1)
                .filter(|p| trials.of(p.id).params.hyper.batch_size == b)
                .copied()
                .collect::<Vec<_>>(),
            b,
            1,
        );
        // At least the best third by their last loss (least at 0.0025·B; results in lr order
        // may promote more: a setting promoted early stays promoted).
        let best = 0.0025 * b as f64;
        let mut ranked = LRS.to_vec();
        ranked.sort_by(|x, y| (x / best).ln().abs().total_cmp(&(y / best).ln().abs()));
        assert!(ranked[..3].iter().all(|lr| lrs.contains(lr)), "B = {b}: {lrs:?}");
    }
    // Rung 1, then the last: each group ends with a setting at the whole budget.
    let mut at_last = 0;
    let mut queue: Vec<Promotion> = promoted.into_iter().filter(|p| p.rung == 1).collect();
    while let Some(p) = queue.pop() {
        let next = record(&mut h, trials.of(p.id), p.rung);
        at_last += next.iter().filter(|n| n.rung == 2).count();
        queue.extend(next);
    }
    assert!(at_last >= 4, "both seeds of at least one setting per batch size: {at_last}");
}

/// A trial that failed at a rung and was retried (`kappa retry --failed`) counts with its new
/// result: its setting goes on when it is among the best, in a replay as when it happened.
#[test]
fn a_retried_failure_is_replaced_by_its_new_result() {
    let sweep = asha_sweep(&[0.004, 0.01, 0.03], true);
    let plan = Plan::new(&sweep, "v");
    let trials = Trials::new(&plan);
    let run = |h: &mut Halving| {
        let mut out = Vec::new();
        // The best setting at B = 4 (lr 0.01) fails on seed 0 first; the others finish.
        out.extend(h.record(trials.get(0.01, 4, 0).id, 0, TrialStatus::Failed, None));
        for &lr in &[0.004, 0.03] {
            for seed in [0, 1] {
                out.extend(record(h, trials.get(lr, 4, seed), 0));
            }
        }
        out.extend(record(h, trials.get(0.01, 4, 1), 0));
        assert!(out.iter().all(|p| trials.of(p.id).params.hyper.lr != 0.01), "a failed setting does not go on");
        // Retried, it finishes the rung: now it counts (a second failure or result would not).
        out.extend(record(h, trials.get(0.01, 4, 0), 0));
        out
    };
    let mut h = Halving::new(&plan).unwrap();
    let live = run(&mut h);
    assert!(live.iter().any(|p| trials.of(p.id).params.hyper.lr == 0.01), "the retried setting goes on: {live:?}");
    assert!(record(&mut h, trials.get(0.01, 4, 0), 0).is_empty(), "a repeat changes nothing");
    let mut again = Halving::new(&plan).unwrap();
    assert_eq!(as_set(&run(&mut again)), as_set(&live), "a replay makes the same promotions");
}
