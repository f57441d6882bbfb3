//! Every example sweep shows what its header says: each header states its time here
//! (`# time: ~N s on 2 cores`), and each example that takes under a minute is run as a newcomer
//! runs it, then `kappa report --check` (its rules' `expect`, `[analysis]` expectations), and
//! every figure its header quotes is compared with summary.json: a header line
//! `# figure: PATH in [LO, HI]` names the figure (a path into summary.json, see [`lookup`]) and
//! the range that two seeds or runs gave here, with the text the header quotes it in beside it.

use kappa_tests::{Sandbox, show};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The repository's root (command examples run there, as README's commands do).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// What an example's header promises.
#[derive(Debug, PartialEq)]
struct Header {
    /// Seconds it takes here (`# time: ~N s` or `~N min`).
    seconds: f64,
    /// (path into summary.json, lowest, highest).
    figures: Vec<(String, f64, f64)>,
    /// It needs PyTorch.
    torch: bool,
}

/// Reads the header (the leading comment lines) of an example.
fn header(text: &str) -> Result<Header, String> {
    let mut seconds = None;
    let mut figures = Vec::new();
    // The header: every comment line before the first line of TOML (blank lines included).
    for line in text.lines().take_while(|l| l.starts_with('#') || l.trim().is_empty()) {
        let line = line.trim_start_matches('#').trim();
        if let Some(t) = line.strip_prefix("time:") {
            let t = t.trim().trim_start_matches('~');
            let (n, unit) = t.split_once(' ').ok_or_else(|| format!("`{line}`: write `time: ~N s on 2 cores`"))?;
            let n: f64 = n.parse().map_err(|_| format!("`{line}`: `{n}` is not a number"))?;
            seconds = Some(match unit.split_whitespace().next() {
                Some("s") => n,
                Some("min") => 60.0 * n,
                _ => return Err(format!("`{line}`: the unit is `s` or `min`")),
            });
        } else if let Some(f) = line.strip_prefix("figure:") {
            let (path, range) =
                f.split_once(" in ").ok_or_else(|| format!("`{line}`: write `figure: PATH in [LO, HI]`"))?;
            let range = range.trim().trim_start_matches('[').trim_end_matches(']');
            let (lo, hi) = range.split_once(',').ok_or_else(|| format!("`{line}`: the range is `[LO, HI]`"))?;
            let num =
                |s: &str| s.trim().parse::<f64>().map_err(|_| format!("`{line}`: `{}` is not a number", s.trim()));
            figures.push((path.trim().to_string(), num(lo)?, num(hi)?));
        }
    }
    let seconds = seconds.ok_or("no `# time: ~N s on 2 cores` line")?;
    let torch = ["python3\", \"sweeps/torch/", "python3\", \"sweeps/mnist-style/"].iter().any(|p| text.contains(p));
    Ok(Header { seconds, figures, torch })
}

/// The value at `path` in `v`: keys separated by `.` (outside brackets), `key[field=value]` picks
/// the first element of the array `key` whose `field` reads `value` (a string as is, a number as
/// JSON writes it), `key[i]` its i-th element.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut segments = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                segments.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    segments.push(&path[start..]);
    segments.into_iter().try_fold(v, |v, seg| match seg.split_once('[') {
        None => v.get(seg),
        Some((key, sel)) => {
            let arr = v.get(key)?.as_array()?;
            let sel = sel.strip_suffix(']')?;
            let text = |x: &Value| x.as_str().map_or_else(|| x.to_string(), str::to_string);
            match sel.split_once('=') {
                Some((field, want)) => arr.iter().find(|e| e.get(field).is_some_and(|x| text(x) == want)),
                None => arr.get(sel.parse::<usize>().ok()?),
            }
        }
    })
}

#[test]
fn headers_and_figure_paths_read_as_written() {
    let h = header(
        "# A sweep.\n# figure: rules[name=a].plateau.ratio in [0.98, 1.02]\n# time: ~3 s on 2 cores\nversion = 1\n",
    )
    .unwrap();
    assert_eq!(
        h,
        Header { seconds: 3.0, figures: vec![("rules[name=a].plateau.ratio".into(), 0.98, 1.02)], torch: false }
    );
    assert_eq!(header("# time: ~2 min on 2 cores\n").unwrap().seconds, 120.0);
    assert!(header("# no time\n").unwrap_err().contains("time:"));
    assert!(header("# time: ~3 s\n# figure: a in 0.1\n").unwrap_err().contains("[LO, HI]"));
    let v: Value = serde_json::json!({"rules": [{"name": "a", "plateau": {"ratio": 1.0}}], "xs": [{"b": 2}]});
    assert_eq!(lookup(&v, "rules[name=a].plateau.ratio"), Some(&Value::from(1.0)));
    assert_eq!(lookup(&v, "xs[0].b"), Some(&Value::from(2)));
    assert_eq!(lookup(&v, "rules[name=b].plateau"), None);
    // Selectors may hold dots and numbers.
    let v: Value = serde_json::json!({"slopes": [{"label": "sgd lr=0.01", "kappa": 4, "slope": 2.0}]});
    assert_eq!(lookup(&v, "slopes[label=sgd lr=0.01].slope"), Some(&Value::from(2.0)));
    assert_eq!(lookup(&v, "slopes[kappa=4].slope"), Some(&Value::from(2.0)));
    // A blank line in a header does not end it.
    let h = header("# time: ~1 s on 2 cores\n\n# figure: a in [1, 2]\nversion = 1\n# figure: b in [1, 2]\n").unwrap();
    assert_eq!(h.figures.len(), 1);
}

#[test]
fn every_example_under_a_minute_shows_what_its_header_says() {
    let root = repo();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root.join("sweeps"))
        .expect("sweeps/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    let mut problems = Vec::new();
    let mut ran = 0;
    for path in &examples {
        let name = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).expect("read example");
        let h = match header(&text) {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        if h.seconds >= 60.0 {
            continue;
        }
        // PyTorch, and its TensorBoard writer where the example logs to TensorBoard.
        let imports = if text.contains("tensorboard") { "torch, torch.utils.tensorboard" } else { "torch" };
        if h.torch && !kappa_tests::python_imports(imports) {
            kappa_tests::skip(&format!("python3 cannot import {imports}"), "python3 -m pip install torch tensorboard");
            continue;
        }
        let sb = Sandbox::new();
        let file = path.display().to_string();
        let workdir = root.display().to_string();
        let out = sb.kappa(&["run", &file, "--state", "s", "--quiet", "--workdir", &workdir]);
        if !out.status.success() {
            problems.push(format!("{name}: kappa run failed: {}", show(&out)));
            continue;
        }
        let out = sb.kappa(&["report", "--state", "s", "--out", "rep", "--check"]);
        if !out.status.success() {
            problems.push(format!("{name}: kappa report --check failed: {}", show(&out)));
        }
        let summary: Value = std::fs::read_to_string(sb.path().join("rep/summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        for (figure, lo, hi) in &h.figures {
            match lookup(&summary, figure).and_then(Value::as_f64) {
                Some(x) if (*lo..=*hi).contains(&x) => {}
                Some(x) => problems.push(format!("{name}: {figure} is {x}, its header says [{lo}, {hi}]")),
                None => problems.push(format!("{name}: summary.json has no number at {figure}")),
            }
        }
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} examples ran");
    assert!(problems.is_empty(), "examples that do not show what their header says:\n{}", problems.join("\n"));
}
