//! Command metrics from the sources programs already write (`[task] metrics`): TensorBoard event
//! files written by the real tensorboardX and PyTorch writers (read back exactly, as they grow, a
//! truncated record waited for, a corrupt one skipped with its file and offset); Python dicts and
//! CSV files; and an unmodified third-party-style script (sweeps/mnist-style/train.py, the PyTorch
//! MNIST example's loop) swept end to end through `kappa run` from its printed lines and from its
//! event files, with the stationary loss, the report's best-lr analysis and the dashboard's curve.
//! `.ci/run` installs PyTorch, tensorboard and tensorboardX; elsewhere the tests say why they skip.

use kappa_core::TrialMetrics;
use kappa_core::metrics::MetricsSource;
use kappa_tests::{Sandbox, http, show};
use kappa_worker::metrics::Metrics;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Whether python3 imports `modules`; if not, the test says why it skips (a failure under CI).
fn python_has(modules: &str, install: &str) -> bool {
    let ok = kappa_tests::python_imports(modules);
    if !ok {
        kappa_tests::skip(&format!("python3 cannot import {modules}"), install);
    }
    ok
}

fn has_writers() -> bool {
    python_has(
        "numpy, torch, tensorboardX, torch.utils.tensorboard",
        "python3 -m pip install torch tensorboard tensorboardX numpy",
    )
}

/// Writes event files into `dir` with `writer` (tests/python/tb_write.py) and returns what it
/// says it wrote.
fn tb_write(writer: &str, dir: &Path) -> Value {
    let out = std::process::Command::new("python3")
        .args([&format!("{REPO}/tests/python/tb_write.py"), "--writer", writer, "--dir"])
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "tb_write.py --writer {writer}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("tb_write.py prints JSON")
}

fn tensorboard(dir: &Path, loss: &str) -> Metrics {
    let source = MetricsSource::Tensorboard { dir: dir.to_string_lossy().into(), loss: loss.into() };
    Metrics::new(&source, 1, |t| Ok(t.to_string()), Path::new("/"), "test".into()).expect("a reader")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The (step → loss) and (step → tag → value) a trial's curve holds.
type Read = (BTreeMap<u64, f64>, BTreeMap<u64, BTreeMap<String, f64>>);

fn eq(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 2.5e-16 * x.abs().max(y.abs())
}

/// Whether two reads hold the same steps, tags and values: equal to the last bit for values the
/// file holds as float32, and within an ulp for doubles (serde_json's float parsing, which reads
/// tb_write.py's JSON, is not always correctly rounded).
fn same(a: &Read, b: &Read) -> bool {
    a.0.len() == b.0.len()
        && a.0.iter().zip(&b.0).all(|((s, x), (t, y))| s == t && eq(*x, *y))
        && a.1.len() == b.1.len()
        && a.1.iter().zip(&b.1).all(|((s, x), (t, y))| {
            s == t && x.len() == y.len() && x.iter().zip(y).all(|((k, u), (l, v))| k == l && eq(*u, *v))
        })
}

fn read_back(m: &TrialMetrics) -> Read {
    let loss = m.curve.iter().map(|p| (p.step, p.loss_mean)).collect();
    let extra = m.curve.iter().map(|p| (p.step, p.extra.clone())).collect();
    (loss, extra)
}

/// What tb_write.py wrote (into the run `run`, or all of them), as the curve should hold it:
/// `train/loss` the loss, every other scalar a metric at its step (every step it writes at has a
/// loss).
fn expected(written: &Value, run: Option<&str>) -> Read {
    let mut loss = BTreeMap::new();
    let mut extra: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    for s in written["scalars"].as_array().unwrap() {
        if run.is_some_and(|r| s["run"] != r) {
            continue;
        }
        let (tag, step, v) = (s["tag"].as_str().unwrap(), s["step"].as_u64().unwrap(), s["value"].as_f64().unwrap());
        if tag == "train/loss" {
            loss.insert(step, v);
        } else {
            extra.entry(step).or_default().insert(tag.to_string(), v);
        }
    }
    for s in loss.keys() {
        extra.entry(*s).or_default();
    }
    (loss, extra)
}

/// The event files tb_write.py wrote, relative to `from`.
fn files(written: &Value, from: &Path) -> Vec<PathBuf> {
    written["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Path::new(f.as_str().unwrap()).strip_prefix(from).unwrap().to_path_buf())
        .collect()
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn event_files_of_the_real_writers_read_back_exactly_while_they_grow() {
    if !has_writers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    for writer in ["tensorboardx", "torch", "torch-tensor"] {
        let src = tmp.path().join(format!("src-{writer}"));
        let written = tb_write(writer, &src);
        let want = expected(&written, None);
        assert!(want.0.len() >= 40, "{written}");
        // The files appear and grow under the reader, 97 bytes at a time in turn (records and
        // headers are cut everywhere), with a poll after each piece.
        let live = tmp.path().join(format!("live-{writer}"));
        let mut m = tensorboard(&live, "train/loss");
        let files = files(&written, &src);
        assert!(files.len() >= 2 && files.iter().any(|f| f.components().count() > 1), "runs: {files:?}");
        let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(src.join(f)).unwrap()).collect();
        let mut at = vec![0usize; files.len()];
        while at.iter().zip(&bytes).any(|(a, b)| a < &b.len()) {
            for (i, f) in files.iter().enumerate() {
                let end = (at[i] + 97).min(bytes[i].len());
                append(&live.join(f), &bytes[i][at[i]..end]);
                at[i] = end;
                rt.block_on(m.poll());
            }
        }
        rt.block_on(m.end());
        let got = m.finish(0.5).unwrap_or_else(|e| panic!("{writer}: {e}"));
        let back = read_back(&got);
        assert!(same(&back, &want), "{writer}: read {back:?}\nwritten {want:?}");
        assert!(!got.notes.iter().any(|n| n.contains("CRC") || n.contains("incomplete")), "{:?}", got.notes);
        // The histogram and the text summary are not scalars: not metrics.
        assert!(got.curve.iter().all(|p| p.extra.keys().all(|k| !k.contains("weights") && !k.contains("notes"))));
    }
}

#[test]
fn a_truncated_record_is_waited_for_and_a_corrupt_one_is_skipped_naming_file_and_offset() {
    if !has_writers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let src = tmp.path().join("src");
    let written = tb_write("tensorboardx", &src);
    let want = expected(&written, Some("."));
    let main = files(&written, &src).into_iter().find(|f| f.components().count() == 1).unwrap();
    let bytes = std::fs::read(src.join(&main)).unwrap();

    // Cut 5 bytes short of the end: nothing is wrong yet; the rest arrives; all of it is read.
    let live = tmp.path().join("growing");
    let mut m = tensorboard(&live, "train/loss");
    append(&live.join(&main), &bytes[..bytes.len() - 5]);
    rt.block_on(m.poll());
    append(&live.join(&main), &bytes[bytes.len() - 5..]);
    rt.block_on(m.poll());
    rt.block_on(m.end());
    let got = m.finish(0.5).unwrap();
    let back = read_back(&got);
    assert!(same(&back, &want), "read {back:?}\nwritten {want:?}");
    assert!(got.notes.iter().all(|n| !n.contains("incomplete")), "{:?}", got.notes);

    // A writer that stopped mid-record: the records before it count, and a note says where.
    let live = tmp.path().join("cut");
    let mut m = tensorboard(&live, "train/loss");
    let cut = bytes.len() / 3 + 3;
    append(&live.join(&main), &bytes[..cut]);
    rt.block_on(m.end());
    let got = m.finish(0.5).unwrap();
    let (loss, _) = read_back(&got);
    assert!(!loss.is_empty() && loss.len() <= want.0.len(), "{loss:?}");
    assert!(loss.iter().all(|(s, v)| want.0.get(s).is_some_and(|w| eq(*v, *w))), "only values written: {loss:?}");
    let note = got.notes.iter().find(|n| n.contains("incomplete record")).unwrap_or_else(|| panic!("{:?}", got.notes));
    assert!(note.contains(&live.join(&main).display().to_string()), "{note}");

    // One flipped bit in the middle of the file: that record is skipped with a warning naming
    // the file and the offset; every other value is read, and nothing that was not written.
    let live = tmp.path().join("corrupt");
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    append(&live.join(&main), &bad);
    let mut m = tensorboard(&live, "train/loss");
    rt.block_on(m.end());
    let got = m.finish(0.5).unwrap();
    let (loss, extra) = read_back(&got);
    assert!(
        loss.len() + 2 >= want.0.len() && loss.iter().all(|(s, v)| want.0.get(s).is_some_and(|w| eq(*v, *w))),
        "{loss:?}"
    );
    assert!(
        extra.iter().all(|(s, e)| e.iter().all(|(k, v)| want.1[s].get(k).is_some_and(|w| eq(*v, *w)))),
        "{extra:?}"
    );
    let warning = got.notes.iter().find(|n| n.contains("offset")).unwrap_or_else(|| panic!("{:?}", got.notes));
    assert!(warning.contains(&live.join(&main).display().to_string()), "{warning}");
    assert!(warning.contains("CRC"), "{warning}");
}

/// Runs `file` with `kappa run` (the repository as the working directory) and returns the
/// exported trials.
fn run(sb: &Sandbox, file: &str, state: &str) -> Vec<Value> {
    let out = sb.kappa(&["run", file, "--state", state, "--workdir", REPO, "--workers", "2"]);
    assert!(out.status.success(), "{}", show(&out));
    sb.export_jsonl(state)
}

#[test]
fn an_unmodified_script_is_swept_from_its_printed_lines_and_from_its_event_files() {
    if !python_has("torch, torch.utils.tensorboard", "python3 -m pip install torch tensorboard") {
        return;
    }
    let sb = Sandbox::new();
    // The script's own `Train Epoch: 1 [0/1438 (0%)]\tLoss: 2.30` lines, read with a regex; and
    // the same script logging to TensorBoard. Three epochs, three learning rates around the best.
    let head = r#"version = 1
[task]
kind = "command"
argv = ["python3", "sweeps/mnist-style/train.py", "--lr", "{lr}", "--batch-size", "{batch_size}",
        "--seed", "{seed}", "--epochs", "3"ARGS]
env = { OMP_NUM_THREADS = "1" }
METRICS
[grid]
batch_size = [32, 64]
lr = [0.3, 3.0, 30.0]
[analysis]
metric = "METRIC"
"#;
    let printed = head
        .replace("version = 1", "version = 1\nname = \"printed\"")
        .replace("ARGS", "")
        .replace(
            "METRICS",
            r#"metrics = { from = "stdout", pattern = 'Train Epoch: (?P<epoch>\d+) .*Loss: (?P<loss>\S+)' }"#,
        )
        .replace("METRIC", "loss");
    let tb = head
        .replace("version = 1", "version = 1\nname = \"tb\"")
        .replace("ARGS", r#", "--logdir", "{trial_dir}/tb""#)
        .replace("METRICS", r#"metrics = { from = "tensorboard", dir = "{trial_dir}/tb", loss = "train/loss" }"#)
        .replace("METRIC", "test/accuracy\"\nmode = \"max");
    sb.write("printed.toml", &printed);
    sb.write("tb.toml", &tb);
    for (file, state, metric) in [("printed.toml", "printed", "loss"), ("tb.toml", "tb", "test/accuracy")] {
        let trials = run(&sb, file, state);
        assert_eq!(trials.len(), 6);
        for t in &trials {
            assert_eq!(t["status"], "succeeded", "{t}");
            let curve = t["metrics"]["curve"].as_array().unwrap();
            let b = t["params"]["batch_size"].as_u64().unwrap();
            // 3 epochs of 1438 samples, a line every 10 batches: 5 lines an epoch at B = 32, 3 at 64.
            assert_eq!(curve.len(), if b == 32 { 15 } else { 9 }, "{state}: {t}");
            assert!(t["metrics"]["stationary_loss"]["mean"].as_f64().is_some_and(|l| l > 0.0), "{t}");
            assert!(!t["settled"].is_null(), "the settled check: {t}");
            if state == "tb" {
                // Steps are the script's global step (batches), samples step × B; the test
                // metrics join the loss point of their step or the last before it.
                let steps: Vec<u64> = curve.iter().map(|c| c["step"].as_u64().unwrap()).collect();
                let per_epoch = 1438u64.div_ceil(b);
                assert_eq!(&steps[..3], &[0, 10, 20], "{steps:?}");
                assert!(steps.contains(&per_epoch), "epoch 2 starts at step {per_epoch}: {steps:?}");
                assert!(curve.iter().all(|c| c["samples"].as_u64() == Some(c["step"].as_u64().unwrap() * b)));
                let acc: Vec<f64> = curve.iter().filter_map(|c| c["extra"]["test/accuracy"].as_f64()).collect();
                assert_eq!(acc.len(), 3, "one per epoch: {curve:?}");
                assert!(acc.iter().all(|a| (0.0..=1.0).contains(a)));
            } else {
                assert_eq!(curve[0]["extra"]["epoch"].as_f64(), Some(1.0), "{t}");
            }
        }
        // The report's best-lr analysis, on the metric the sweep names.
        let out = sb.kappa(&["report", "--state", state, "--out", &format!("rep-{state}")]);
        assert!(out.status.success(), "{}", show(&out));
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(sb.path().join(format!("rep-{state}/summary.json"))).unwrap(),
        )
        .unwrap();
        let lr = &summary["lr_scaling"][0];
        assert!(lr["objective"].as_str().unwrap().contains(metric), "{lr}");
        let points = lr["points"].as_array().unwrap();
        assert_eq!(points.len(), 2, "{lr}");
        for p in points {
            let best = p["best_lr"].as_f64().unwrap_or_else(|| panic!("no best lr: {p}"));
            assert!((0.3..=30.0).contains(&best), "{p}");
        }
    }
    // The dashboard draws a trial's curve from what was read.
    let (mut proc, lines) = sb.spawn_stderr(&["run", "tb.toml", "--state", "tb", "--workdir", REPO, "--ui", "--quiet"]);
    let url = lines
        .wait_for("dashboard on ", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no dashboard URL printed: {}", lines.text()));
    let url = url.trim().to_string();
    let trials = http::get(&url, "/api/sweeps/tb/trials?limit=10").json();
    let id = trials["trials"][0]["id"].as_str().unwrap_or_else(|| panic!("{trials}")).to_string();
    let detail = http::get(&url, &format!("/api/sweeps/tb/trials/{id}")).json();
    let curve = detail["curve"].as_array().unwrap_or_else(|| panic!("{detail}"));
    assert!(curve.len() >= 9 && curve[1][0].as_f64().is_some_and(|s| s > 0.0), "{detail}");
    proc.signal(libc::SIGINT);
    let status = proc.wait_exit(Duration::from_secs(30), "kappa run --ui did not exit on Ctrl-C");
    assert_eq!(status.code(), Some(0), "{}", lines.text());
}

#[test]
fn python_dicts_and_csv_files_are_curves_and_a_missing_loss_fails_the_trial_saying_what_it_found() {
    let sb = Sandbox::new();
    // The Hugging Face Trainer's lines (`print(dict)`), an eval line between, `nan` at the end
    // for the diverging learning rate; and a Lightning-style CSV whose file is rewritten when a
    // column appears.
    sb.write(
        "hf.py",
        r#"import sys
lr = float(sys.argv[1])
for i in range(1, 13):
    loss = 1.0 / i if lr < 1 else (float("nan") if i == 12 else 1.0 * i)
    print({"loss": loss, "grad_norm": 0.5, "learning_rate": lr, "epoch": i / 4})
    if i % 4 == 0:
        print({"eval_loss": 1.5 / i, "eval_runtime": 0.1, "epoch": i / 4})
print({"train_runtime": 1.0, "train_loss": 0.3})
"#,
    );
    sb.write(
        "lightning.py",
        r#"import os, sys
path = os.path.join(os.environ["KAPPA_TRIAL_DIR"], "metrics.csv")
rows = []
for step in range(9, 120, 10):
    rows.append({"epoch": step // 40, "step": step, "train_loss": 2.0 / (step + 1)})
    if step % 40 == 39:
        rows.append({"epoch": step // 40, "step": step, "val_loss": 3.0 / (step + 1)})
    keys = sorted({k for r in rows for k in r})
    with open(path + ".tmp", "w") as f:
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r.get(k, "")) for k in keys) + "\n")
    os.replace(path + ".tmp", path)
"#,
    );
    sb.write(
        "hf.toml",
        "version = 1\nname = \"hf\"\n[task]\nkind = \"command\"\nargv = [\"python3\", \"hf.py\", \"{lr}\"]\n\
         metrics = { from = \"stdout\", pattern = \"python_dict\" }\n[grid]\nlr = [0.1, 2.0]\n",
    );
    sb.write(
        "csv.toml",
        "version = 1\nname = \"csv\"\n[task]\nkind = \"command\"\nargv = [\"python3\", \"lightning.py\"]\n\
         metrics = { from = \"csv\", path = \"{trial_dir}/metrics.csv\", loss = \"train_loss\" }\n[grid]\nbatch_size = [8]\n",
    );
    let workdir = sb.path().to_string_lossy().to_string();
    let out = sb.kappa(&["run", "hf.toml", "--state", "hf", "--workdir", &workdir]);
    assert!(out.status.success() || out.status.code() == Some(3), "{}", show(&out));
    let trials = sb.export_jsonl("hf");
    let by_lr = |lr: f64| trials.iter().find(|t| t["params"]["lr"].as_f64() == Some(lr)).unwrap();
    let ok = by_lr(0.1);
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let curve = ok["metrics"]["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 12, "{ok}");
    assert_eq!(curve[3]["loss_mean"].as_f64(), Some(0.25));
    assert_eq!(curve[3]["extra"]["eval_loss"].as_f64(), Some(0.375), "the eval line joins its step: {ok}");
    assert_eq!(curve[0]["extra"]["learning_rate"].as_f64(), Some(0.1));
    let bad = by_lr(2.0);
    assert_eq!(bad["status"], "diverged", "`nan` in a dict: {bad}");

    let out = sb.kappa(&["run", "csv.toml", "--state", "csv", "--workdir", &workdir]);
    assert!(out.status.success(), "{}", show(&out));
    let t = &sb.export_jsonl("csv")[0];
    let curve = t["metrics"]["curve"].as_array().unwrap();
    let steps: Vec<u64> = curve.iter().map(|c| c["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (9..120).step_by(10).collect::<Vec<u64>>(), "{t}");
    assert_eq!(curve[3]["samples"].as_u64(), Some(39 * 8));
    assert_eq!(curve[3]["extra"]["val_loss"].as_f64(), Some(3.0 / 40.0), "{t}");
    assert_eq!(curve[3]["loss_mean"].as_f64(), Some(2.0 / 40.0));

    // The loss under another name: the trial fails, and says what it looked for and found.
    sb.write(
        "wrong.toml",
        &std::fs::read_to_string(sb.path().join("csv.toml"))
            .unwrap()
            .replace("loss = \"train_loss\"", "loss = \"loss\"")
            .replace("name = \"csv\"", "name = \"wrong\""),
    );
    let out = sb.kappa(&["run", "wrong.toml", "--state", "wrong", "--workdir", &workdir]);
    assert!(!out.status.success(), "{}", show(&out));
    let t = &sb.export_jsonl("wrong")[0];
    assert_eq!(t["status"], "failed", "{t}");
    let error = t["error"].as_str().unwrap_or_else(|| panic!("{t}"));
    assert!(
        error.contains("without a loss") && error.contains("no column `loss`") && error.contains("`train_loss`"),
        "{error}"
    );
}

#[test]
fn an_accuracy_is_maximised_by_the_best_lr_analysis_and_reports_its_own_values() {
    let sb = Sandbox::new();
    // Accuracy peaks at lr = 0.13, between the grid's 0.1 and 0.3 (and the loss keeps falling
    // with lr): `mode = "max"` finds the peak, refined by the parabola through the logs of the
    // accuracies (exact here); the objective values the report gives are the accuracies.
    sb.write(
        "acc.py",
        r#"import math, sys
lr, b = float(sys.argv[1]), int(sys.argv[2])
for step in range(1, 21):
    acc = (1 - math.exp(-step / 5)) * 0.95 * math.exp(-0.1 * math.log(lr / 0.13) ** 2) * (1 - 0.01 * math.log2(b))
    print('{"step": %d, "loss": %r, "acc": %r}' % (step, 1.0 / (step * lr), acc))
"#,
    );
    sb.write(
        "acc.toml",
        "version = 1\nname = \"acc\"\n[task]\nkind = \"command\"\nargv = [\"python3\", \"acc.py\", \"{lr}\", \"{batch_size}\"]\n\
         [grid]\nbatch_size = [8, 16]\nlr = [0.01, 0.03, 0.1, 0.3, 1.0]\n[analysis]\nmetric = \"acc\"\nmode = \"max\"\n",
    );
    let workdir = sb.path().to_string_lossy().to_string();
    let out = sb.kappa(&["run", "acc.toml", "--state", "acc", "--workdir", &workdir]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sb.kappa(&["report", "--state", "acc", "--out", "rep"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("best lr maximises the final acc"), "{}", show(&out));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("rep/summary.json")).unwrap()).unwrap();
    let lr = &summary["lr_scaling"][0];
    assert_eq!(lr["maximise"], true, "{lr}");
    for p in lr["points"].as_array().unwrap() {
        let best = p["best_lr"].as_f64().unwrap();
        assert!((best / 0.13 - 1.0).abs() < 1e-6, "the peak at 0.13: {p}");
        let values: Vec<f64> = p["objective"].as_array().unwrap().iter().map(|o| o[1].as_f64().unwrap()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)), "accuracies as they are: {values:?}");
    }
}
