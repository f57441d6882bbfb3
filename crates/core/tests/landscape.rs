//! `[task] landscape`: rotated quadratics, full Hessians and the double well, their errors at
//! their place, and the ids of diagonal quadratics unchanged.

use kappa_core::TaskSpec;
use kappa_core::task::LandscapeSpec;

mod common;

use common::{ids, parse};

const BASE: &str = common::sweep!(
    "land",
    r#"
[grid]
optimizer = ["sgd", "signsgd"]
lr = [0.01]
"#
);

const QUAD: &str = r#"landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0] }"#;

fn landscape(text: &str) -> LandscapeSpec {
    match parse(text).unwrap_or_else(|e| panic!("{e}")).task {
        TaskSpec::Optimizer(s) | TaskSpec::Sde(s) => s.landscape,
        other => panic!("{other:?}"),
    }
}

#[test]
fn landscapes_parse() {
    let rot =
        landscape(&BASE.replace(
            QUAD,
            r#"landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0], rotation_seed = 3 }"#,
        ));
    assert!(matches!(rot, LandscapeSpec::Quadratic { rotation_seed: Some(3), .. }) && !rot.is_diagonal());
    let h = landscape(&BASE.replace(
        QUAD,
        r#"landscape = { kind = "quadratic", hessian = [[2.0, 0.5, 0, 0], [0.5, 1.0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 3]] }"#,
    ));
    assert_eq!(h.dim(), 4);
    let w = landscape(&BASE.replace(QUAD, r#"landscape = { kind = "double_well", a = [1.0, 2.0, 1.0, 0.5] }"#));
    assert_eq!(w, LandscapeSpec::DoubleWell { a: vec![1.0, 2.0, 1.0, 0.5] });
    // The canonical form of a diagonal quadratic has no rotation: its ids are unchanged.
    let canonical = serde_json::to_string(&parse(BASE).unwrap().task).unwrap();
    assert!(!canonical.contains("rotation_seed"), "{canonical}");
    let rotated = ids(&BASE
        .replace(QUAD, r#"landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0], rotation_seed = 3 }"#));
    assert!(ids(BASE).iter().all(|id| !rotated.contains(id)));
    // A rotation seed is an axis like any task field.
    let axis = BASE.replace("lr = [0.01]", "lr = [0.01]\ntask.landscape.rotation_seed = [1, 2]");
    assert_eq!(parse(&axis).unwrap().variants.len(), 2);
}

#[test]
fn bad_landscapes_are_named_at_their_place() {
    let cases: &[(&str, usize, &str)] = &[
        (
            r#"landscape = { kind = "quadratic", hessian = [[2.0, 0.5], [0.4, 1.0]] }"#,
            7,
            "the Hessian is not symmetric: hessian[1][0] = 0.4 but hessian[0][1] = 0.5",
        ),
        (
            r#"landscape = { kind = "quadratic", hessian = [[1.0, 2.0], [2.0, 1.0]] }"#,
            7,
            "the Hessian is not positive definite: its leading 2 × 2 block is not",
        ),
        (
            r#"landscape = { kind = "quadratic", hessian = [[1.0, 0.0], [0.0, 1.0, 0.0]] }"#,
            7,
            "row 1 of the Hessian has 3 entries, but it has 2 rows",
        ),
        (r#"landscape = { kind = "quadratic", hessian = [1.0, 2.0] }"#, 7, "hessian must be a square matrix"),
        (
            r#"landscape = { kind = "quadratic", eigenvalues = [1.0], hessian = [[1.0]] }"#,
            7,
            "give `eigenvalues` (with `rotation_seed` to rotate them) or `hessian`, not both",
        ),
        (
            r#"landscape = { kind = "quadratic", hessian = [[1.0]], rotation_seed = 1 }"#,
            7,
            "`rotation_seed` rotates `eigenvalues`",
        ),
        (r#"landscape = { kind = "double_well", a = [1.0, -2.0] }"#, 7, "a must be finite and > 0"),
        (
            r#"landscape = { kind = "double_well", eigenvalues = [1.0] }"#,
            7,
            "`eigenvalues` does not apply to a double_well landscape",
        ),
        (r#"landscape = { kind = "double_well" }"#, 7, "a double well needs `a = [1.0, 2.0]`"),
        (r#"landscape = { kind = "quadratic", rotation_seed = 1 }"#, 7, "needs `eigenvalues = [...]`"),
    ];
    let mut wrong = Vec::new();
    for (to, line, fragment) in cases {
        match parse(&BASE.replace(QUAD, to)) {
            Ok(_) => wrong.push(format!("{to} was accepted")),
            Err(e) if !(e.to_string().contains(fragment) && e.line == Some(*line)) => {
                wrong.push(format!("{to}: expected line {line} and {fragment:?}, got {e} (line {:?})", e.line))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The noise's σ per coordinate must match the dimension of every landscape.
    let err = parse(
        &BASE
            .replace(QUAD, r#"landscape = { kind = "double_well", a = [1.0, 2.0] }"#)
            .replace("sigma = 1.0", "sigma = [1.0, 2.0, 3.0]"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("3 given, the landscape has d = 2"), "{err}");
    // The GPU kernel runs landscapes whose coordinates move on their own: said at parse time.
    let cuda = |land: &str| parse(&BASE.replace(QUAD, land).replace("x0 = 0.5", "x0 = 0.5\nbackend = \"cuda\""));
    let err =
        cuda(r#"landscape = { kind = "quadratic", eigenvalues = { log = [0.1, 1.0], num = 200 }, rotation_seed = 1 }"#)
            .unwrap_err()
            .to_string();
    assert!(
        err.contains(
            "runs full Hessians up to d = 128 (a path's coordinates in one warp); a rotated quadratic of d = 200 runs on the CPU"
        ),
        "{err}"
    );
    cuda(r#"landscape = { kind = "quadratic", eigenvalues = [1.0, 2.0, 3.0, 4.0], rotation_seed = 1 }"#).unwrap();
    cuda(r#"landscape = { kind = "double_well", a = [1.0, 2.0, 1.0, 1.0] }"#).unwrap();
}
