//! Training data: the shipped digits, users' CSV tables and a teacher–student generator, split
//! into a training part and a held-out part.
//!
//! Everything here is a function of the [`DataSpec`] and the holdout fraction alone (never of a
//! trial's seed), so every trial of a sweep trains and evaluates on the same split:
//! - the split is a deterministic shuffle, seeded by a fixed constant (digits, CSV) or by the
//!   teacher–student data seed; the first `round(holdout · n)` shuffled samples are held out;
//! - digits pixels are scaled to [0, 1] (divided by 16);
//! - CSV feature columns are standardised with the *training* split's mean and (population)
//!   standard deviation, applied to both parts (a constant column is only centred); regression
//!   targets are left as they are;
//! - teacher–student inputs are standard normal and need no scaling.

use kappa_core::task::{DataSpec, Objective};
use kappa_sim::normal::NormalStream;
use kappa_sim::rng::mix64;
use ndarray::{Array2, ArrayView2, s};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// The digits table: 64 pixel columns (0..16) and the label, 1,797 rows, no header.
pub const DIGITS_CSV: &str = include_str!("../data/digits.csv");

/// Why data could not be loaded: a message for the user naming the file, line and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

/// The targets of a set of samples.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class label per sample, each below `classes`.
    Classes {
        /// The labels.
        labels: Vec<u32>,
        /// Number of classes (the network's outputs).
        classes: usize,
    },
    /// Real targets, one row per sample.
    Values(Array2<f64>),
}

impl Targets {
    /// The network outputs these targets need.
    pub fn outputs(&self) -> usize {
        match self {
            Targets::Classes { classes, .. } => *classes,
            Targets::Values(v) => v.ncols(),
        }
    }

    /// Samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values(v) => v.nrows(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objective these targets are for.
    pub fn objective(&self) -> Objective {
        match self {
            Targets::Classes { .. } => Objective::Classification,
            Targets::Values(_) => Objective::Regression,
        }
    }

    fn select(&self, rows: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, classes } => {
                Targets::Classes { labels: rows.iter().map(|&r| labels[r]).collect(), classes: *classes }
            }
            Targets::Values(v) => Targets::Values(v.select(ndarray::Axis(0), rows)),
        }
    }
}

/// Samples: features (one row per sample, contiguous) and targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// Features, `n × inputs`, standard (row-major) layout.
    pub x: Array2<f64>,
    /// Targets, `n` of them.
    pub y: Targets,
}

impl Data {
    /// Samples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.x.ncols()
    }

    fn select(&self, rows: &[usize]) -> Data {
        Data { x: self.x.select(ndarray::Axis(0), rows), y: self.y.select(rows) }
    }
}

/// A data set split into its training part and its held-out part.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The training part (minibatches, full-batch gradients, the train loss).
    pub train: Data,
    /// The held-out part (test loss and accuracy).
    pub test: Data,
    /// One line saying what the data is, for the trial's notes.
    pub description: String,
}

impl Split {
    /// The objective of the targets.
    pub fn objective(&self) -> Objective {
        self.train.y.objective()
    }
}

/// Seed of the split shuffle for data without a seed of its own (digits, CSV).
const SPLIT_KEY: u64 = 0x6b61_7070_615f_7370; // "kappa_sp"
/// Mixed into the teacher–student seed for its normal stream.
const TEACHER_KEY: u64 = 0x7465_6163_6865_7221; // "teacher!"

/// Loads the data `spec` names and splits off the fraction `holdout` (0 < holdout < 1).
pub fn load(spec: &DataSpec, holdout: f64) -> Result<Split, DataError> {
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(DataError(format!("holdout must be a fraction in (0, 1), got {holdout}")));
    }
    match spec {
        DataSpec::Digits => {
            let mut all = digits()?;
            all.x.mapv_inplace(|v| v / 16.0);
            let (train, test) = split(&all, holdout, SPLIT_KEY)?;
            let description = describe("digits (UCI, 8×8 pixels scaled to [0, 1])", &all, &train, &test);
            Ok(Split { train, test, description })
        }
        DataSpec::Csv { path, target, header, objective } => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
                match e.kind() {
                    std::io::ErrorKind::NotFound => DataError(format!(
                        "{path}: no such file (relative paths are relative to the worker's working directory, {cwd})"
                    )),
                    _ => DataError(format!("{path}: cannot read the file: {e}")),
                }
            })?;
            let all = parse_csv(&text, path, *header, target, *objective)?;
            let (mut train, mut test) = split(&all, holdout, SPLIT_KEY)?;
            standardise(&mut train.x, &mut test.x);
            let what = format!("{path} (features standardised with the training split's mean and std)");
            let description = describe(&what, &all, &train, &test);
            Ok(Split { train, test, description })
        }
        DataSpec::TeacherStudent { objective, inputs, outputs, teacher_hidden, samples, label_noise, seed } => {
            let all = teacher_student(
                *objective,
                *inputs as usize,
                *outputs as usize,
                *teacher_hidden as usize,
                *samples as usize,
                *label_noise,
                *seed,
            )?;
            let (train, test) = split(&all, holdout, mix64(*seed ^ SPLIT_KEY))?;
            let teacher = if *teacher_hidden == 0 {
                "a linear teacher".to_string()
            } else {
                format!("a teacher with {teacher_hidden} tanh hidden units")
            };
            let what = format!("teacher–student ({teacher}, data seed {seed}, label noise {label_noise})");
            let description = describe(&what, &all, &train, &test);
            Ok(Split { train, test, description })
        }
    }
}

/// [`load`], remembering the last split this process loaded (keyed by the data settings, the
/// fraction, and a CSV file's size and modification time): the trials of a sweep share their data,
/// so a worker parses or generates it once rather than once per trial.
pub fn load_shared(spec: &DataSpec, holdout: f64) -> Result<Arc<Split>, DataError> {
    type Key = (DataSpec, u64, Option<(u64, Option<std::time::SystemTime>)>);
    static LAST: Mutex<Option<(Key, Arc<Split>)>> = Mutex::new(None);
    let stamp = match spec {
        DataSpec::Csv { path, .. } => std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok())),
        DataSpec::Digits | DataSpec::TeacherStudent { .. } => None,
    };
    let key: Key = (spec.clone(), holdout.to_bits(), stamp);
    if let Some((k, split)) = &*LAST.lock().unwrap_or_else(|e| e.into_inner())
        && *k == key
    {
        return Ok(split.clone());
    }
    // Loaded without the lock: trials of another sweep are not held up meanwhile.
    let split = Arc::new(load(spec, holdout)?);
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, split.clone()));
    Ok(split)
}

fn describe(what: &str, all: &Data, train: &Data, test: &Data) -> String {
    let mut s = format!("data: {what}: {} samples, {} features, ", all.len(), all.inputs());
    match &all.y {
        Targets::Classes { classes, .. } => write!(s, "{classes} classes").unwrap(),
        Targets::Values(v) => {
            write!(s, "{} regression target{}", v.ncols(), if v.ncols() == 1 { "" } else { "s" }).unwrap()
        }
    }
    write!(s, "; {} for training, {} held out", train.len(), test.len()).unwrap();
    s
}

/// The whole digits data set: pixels 0..16 (unscaled) and labels 0..9.
pub fn digits() -> Result<Data, DataError> {
    parse_csv(DIGITS_CSV, "digits.csv (embedded)", false, "64", Objective::Classification)
}

/// A uniform index in `0..n` (multiply-shift; the bias is below 2⁻³² for any `n` < 2³²).
pub(crate) fn below(rng: &mut Xoshiro256PlusPlus, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Fisher–Yates shuffle of `v`.
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..v.len()).rev() {
        v.swap(i, below(rng, i + 1));
    }
}

/// Splits `all` by a shuffle seeded with `seed`: the first `round(holdout · n)` go to the test part.
fn split(all: &Data, holdout: f64, seed: u64) -> Result<(Data, Data), DataError> {
    let n = all.len();
    if n < 2 {
        return Err(DataError(format!("{n} sample(s): a training part and a held-out part need at least 2")));
    }
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
    let n_test = ((n as f64) * holdout).round().clamp(1.0, (n - 1) as f64) as usize;
    let (test, train) = order.split_at(n_test);
    // Keep each part in file order: only membership is random.
    let (mut train, mut test) = (train.to_vec(), test.to_vec());
    train.sort_unstable();
    test.sort_unstable();
    Ok((all.select(&train), all.select(&test)))
}

/// Standardises every column of `train` and `test` with `train`'s mean and standard deviation.
fn standardise(train: &mut Array2<f64>, test: &mut Array2<f64>) {
    let n = train.nrows() as f64;
    for j in 0..train.ncols() {
        let mean = train.column(j).sum() / n;
        let var = train.column(j).iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let sd = var.sqrt();
        let scale = if sd > 0.0 { 1.0 / sd } else { 1.0 };
        for m in [&mut *train, &mut *test] {
            m.column_mut(j).mapv_inplace(|v| (v - mean) * scale);
        }
    }
}

/// Parses a numeric CSV table: comma-separated, one sample per line, blank lines ignored, fields
/// optionally in double quotes (with no comma inside), a leading byte-order mark ignored.
/// `target` is a header name or a 0-based column index; every other column is a feature.
/// `source` names the table in errors.
pub fn parse_csv(
    text: &str,
    source: &str,
    header: bool,
    target: &str,
    objective: Objective,
) -> Result<Data, DataError> {
    let err = |msg: String| DataError(format!("{source}: {msg}"));
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let field = |f: &str| {
        let f = f.trim();
        f.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(f).to_string()
    };
    let names: Option<(usize, Vec<String>)> = if header {
        let (line, l) = lines.next().ok_or_else(|| err("the file is empty".into()))?;
        Some((line, l.split(',').map(field).collect()))
    } else {
        None
    };
    let mut width = names.as_ref().map(|(line, n)| (n.len(), *line));
    let column_name = |c: usize| match &names {
        Some((_, n)) => format!(" (\"{}\")", n[c]),
        None => String::new(),
    };
    let mut values: Vec<f64> = Vec::new();
    let mut line_of_row: Vec<usize> = Vec::new();
    let mut raw: Vec<String> = Vec::new();
    for (line, l) in lines {
        raw.clear();
        raw.extend(l.split(',').map(field));
        match width {
            None => width = Some((raw.len(), line)),
            Some((w, first)) if w != raw.len() => {
                let what = if names.is_some() { "the header" } else { "the first row" };
                return Err(err(format!(
                    "line {line} has {} column{}, but {what} (line {first}) has {w}",
                    raw.len(),
                    if raw.len() == 1 { "" } else { "s" }
                )));
            }
            Some(_) => {}
        }
        for (c, f) in raw.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| {
                err(format!("line {line}, column {}{}: \"{f}\" is not a number", c + 1, column_name(c)))
            })?;
            if !v.is_finite() {
                return Err(err(format!(
                    "line {line}, column {}{}: \"{f}\" is not a finite number",
                    c + 1,
                    column_name(c)
                )));
            }
            values.push(v);
        }
        line_of_row.push(line);
    }
    let Some((cols, _)) = width else { return Err(err("the file is empty".into())) };
    let rows = line_of_row.len();
    if rows == 0 {
        return Err(err("no data rows after the header line".into()));
    }
    let t = match &names {
        Some((_, n)) => match n.iter().position(|c| c == target) {
            Some(t) => t,
            None => match target.parse::<usize>() {
                Ok(i) if i < cols => i,
                _ => {
                    return Err(err(format!(
                        "no column named \"{target}\" in the header (columns: {})",
                        n.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
                    )));
                }
            },
        },
        None => match target.parse::<usize>() {
            Ok(i) if i < cols => i,
            Ok(i) => {
                return Err(err(format!(
                    "target column index {i} is out of range: the rows have {cols} columns (indices 0 to {})",
                    cols - 1
                )));
            }
            Err(_) => {
                return Err(err(format!(
                    "without a header line the target must be a 0-based column index, got \"{target}\""
                )));
            }
        },
    };
    if cols < 2 {
        return Err(err(format!("{cols} column: a target and at least one feature column are needed")));
    }
    let table = ArrayView2::from_shape((rows, cols), &values).expect("rows × cols values");
    let mut x = Array2::zeros((rows, cols - 1));
    x.slice_mut(s![.., ..t]).assign(&table.slice(s![.., ..t]));
    x.slice_mut(s![.., t..]).assign(&table.slice(s![.., t + 1..]));
    let y = match objective {
        Objective::Regression => Targets::Values(table.slice(s![.., t..t + 1]).to_owned()),
        Objective::Classification => {
            const MAX_CLASSES: u32 = 100_000;
            let mut labels = Vec::with_capacity(rows);
            for (r, &v) in table.column(t).iter().enumerate() {
                if !(v >= 0.0 && v.fract() == 0.0 && v < f64::from(MAX_CLASSES)) {
                    return Err(err(format!(
                        "line {}, column {}{}: class label {v} must be a whole number from 0 to {} (objective = \
                         \"classification\"; use \"regression\" for a real target)",
                        line_of_row[r],
                        t + 1,
                        column_name(t),
                        MAX_CLASSES - 1
                    )));
                }
                labels.push(v as u32);
            }
            let classes = labels.iter().max().map_or(0, |m| *m as usize + 1).max(2);
            Targets::Classes { labels, classes }
        }
    };
    Ok(Data { x, y })
}

/// Random Gaussian inputs labelled by a random teacher network, seeded by `seed` only.
///
/// The teacher has one tanh hidden layer of `hidden` units (weights N(0, 1/fan_in), no biases),
/// or is linear when `hidden` is 0. Classification labels are the argmax of its outputs;
/// regression targets are its outputs plus `label_noise` · N(0, 1).
pub fn teacher_student(
    objective: Objective,
    inputs: usize,
    outputs: usize,
    hidden: usize,
    samples: usize,
    label_noise: f64,
    seed: u64,
) -> Result<Data, DataError> {
    if inputs == 0 || outputs == 0 || samples == 0 {
        return Err(DataError("teacher–student data needs at least one input, output and sample".into()));
    }
    if objective == Objective::Classification && outputs < 2 {
        return Err(DataError("teacher–student classification needs at least 2 outputs (classes)".into()));
    }
    let mut rng = NormalStream::new(mix64(seed ^ TEACHER_KEY));
    let mut normal = |shape: (usize, usize), scale: f64| {
        let mut v = vec![0.0; shape.0 * shape.1];
        rng.fill(&mut v);
        Array2::from_shape_vec(shape, v.into_iter().map(|z| z * scale).collect()).expect("shape")
    };
    let teacher: Vec<Array2<f64>> = if hidden == 0 {
        vec![normal((inputs, outputs), 1.0 / (inputs as f64).sqrt())]
    } else {
        vec![
            normal((inputs, hidden), 1.0 / (inputs as f64).sqrt()),
            normal((hidden, outputs), 1.0 / (hidden as f64).sqrt()),
        ]
    };
    let x = normal((samples, inputs), 1.0);
    let mut out = x.dot(&teacher[0]);
    if hidden > 0 {
        out.mapv_inplace(f64::tanh);
        out = out.dot(&teacher[1]);
    }
    let y = match objective {
        Objective::Classification => {
            let labels =
                out.rows().into_iter().map(|r| argmax(r.as_slice().expect("standard layout")) as u32).collect();
            Targets::Classes { labels, classes: outputs }
        }
        Objective::Regression => {
            if label_noise > 0.0 {
                out += &normal((samples, outputs), label_noise);
            }
            Targets::Values(out)
        }
    };
    Ok(Data { x, y })
}

/// Index of the first largest value.
pub(crate) fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str, header: bool, target: &str, objective: Objective) -> Result<Data, DataError> {
        parse_csv(text, "t.csv", header, target, objective)
    }

    #[test]
    fn digits_are_complete() {
        let d = digits().unwrap();
        assert_eq!((d.len(), d.inputs(), d.y.outputs()), (1797, 64, 10));
        assert!(d.x.iter().all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
        let Targets::Classes { labels, .. } = &d.y else { panic!() };
        for c in 0..10 {
            let count = labels.iter().filter(|&&l| l == c).count();
            assert!((170..=185).contains(&count), "class {c}: {count}");
        }
        let s = load(&DataSpec::Digits, 0.2).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (1438, 359));
        assert!(s.train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(s.description.contains("1438 for training, 359 held out"), "{}", s.description);
        // The split does not depend on anything but the data and the fraction.
        assert_eq!(load(&DataSpec::Digits, 0.2).unwrap(), s);
    }

    #[test]
    fn csv_with_header_named_target_and_quotes() {
        let d = csv("\u{feff}a, \"b\" ,label\n1,2,0\n\n3,4.5,2\r\n-1,0,1\n", true, "label", Objective::Classification)
            .unwrap();
        assert_eq!(d.x, ndarray::array![[1.0, 2.0], [3.0, 4.5], [-1.0, 0.0]]);
        assert_eq!(d.y, Targets::Classes { labels: vec![0, 2, 1], classes: 3 });
        let r = csv("y,a\n0.5,1\n1.5,2\n", true, "y", Objective::Regression).unwrap();
        assert_eq!(r.y, Targets::Values(ndarray::array![[0.5], [1.5]]));
        assert_eq!(r.x, ndarray::array![[1.0], [2.0]]);
        // An index works with a header too, and the target may sit in the middle.
        let m = csv("a,b,c\n1,2,3\n", true, "1", Objective::Regression).unwrap();
        assert_eq!((m.x, m.y), (ndarray::array![[1.0, 3.0]], Targets::Values(ndarray::array![[2.0]])));
    }

    #[test]
    fn csv_errors_name_the_file_line_and_column() {
        let e = |text: &str, header: bool, target: &str, o: Objective| csv(text, header, target, o).unwrap_err().0;
        let c = Objective::Classification;
        assert_eq!(e("a,b\n1,2\n3,x\n", true, "b", c), "t.csv: line 3, column 2 (\"b\"): \"x\" is not a number");
        assert_eq!(e("1,2\n3,,\n", false, "1", c), "t.csv: line 2 has 3 columns, but the first row (line 1) has 2");
        assert_eq!(e("a,b\n1\n", true, "b", c), "t.csv: line 2 has 1 column, but the header (line 1) has 2");
        assert_eq!(e("1,nan\n", false, "0", c), "t.csv: line 1, column 2: \"nan\" is not a finite number");
        assert_eq!(e("", true, "y", c), "t.csv: the file is empty");
        assert_eq!(e("\n\n", false, "0", c), "t.csv: the file is empty");
        assert_eq!(e("a,b\n", true, "b", c), "t.csv: no data rows after the header line");
        assert_eq!(e("a,b\n1,2\n", true, "y", c), "t.csv: no column named \"y\" in the header (columns: \"a\", \"b\")");
        assert!(e("1,2\n", false, "5", c).contains("index 5 is out of range: the rows have 2 columns"));
        assert!(e("1\n", false, "0", c).contains("a target and at least one feature column"));
        let label = e("x,y\n1,0\n2,1.5\n", true, "y", c);
        assert!(
            label.starts_with("t.csv: line 3, column 2 (\"y\"): class label 1.5 must be a whole number"),
            "{label}"
        );
        assert!(e("x,y\n1,-1\n", true, "y", c).contains("class label -1 must be a whole number"));
        let missing = load(
            &DataSpec::Csv { path: "/nonexistent/kappa.csv".into(), target: "y".into(), header: true, objective: c },
            0.2,
        )
        .unwrap_err()
        .0;
        assert!(missing.starts_with("/nonexistent/kappa.csv: no such file"), "{missing}");
    }

    #[test]
    fn csv_features_are_standardised_with_the_training_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        let mut text = String::from("f1,f2,const,y\n");
        for i in 0..50 {
            writeln!(text, "{},{},7,{}", i, (i * i) as f64 / 10.0, i % 3).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        let spec = DataSpec::Csv {
            path: path.display().to_string(),
            target: "y".into(),
            header: true,
            objective: Objective::Classification,
        };
        let s = load(&spec, 0.3).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (35, 15));
        for j in 0..2 {
            let c = s.train.x.column(j);
            let mean = c.sum() / 35.0;
            let var = c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 35.0;
            assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12, "column {j}: {mean} {var}");
        }
        assert!(s.train.x.column(2).iter().chain(s.test.x.column(2)).all(|&v| v == 0.0));
        assert!(s.description.contains("standardised"), "{}", s.description);
    }

    #[test]
    fn a_shared_split_follows_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        let spec = DataSpec::Csv {
            path: path.display().to_string(),
            target: "y".into(),
            header: true,
            objective: Objective::Regression,
        };
        std::fs::write(&path, "x,y\n1,1\n2,2\n3,3\n4,4\n").unwrap();
        let a = load_shared(&spec, 0.5).unwrap();
        assert_eq!(a.train.len() + a.test.len(), 4);
        assert!(Arc::ptr_eq(&a, &load_shared(&spec, 0.5).unwrap()) || *a == *load_shared(&spec, 0.5).unwrap());
        std::fs::write(&path, "x,y\n1,1\n2,2\n3,3\n4,4\n5,5\n6,6\n").unwrap();
        let b = load_shared(&spec, 0.5).unwrap();
        assert_eq!(b.train.len() + b.test.len(), 6);
        assert_eq!(*load_shared(&DataSpec::Digits, 0.2).unwrap(), load(&DataSpec::Digits, 0.2).unwrap());
    }

    #[test]
    fn teacher_student_is_a_function_of_its_seed() {
        let make = |seed, objective| teacher_student(objective, 5, 3, 8, 300, 0.1, seed).unwrap();
        let a = make(1, Objective::Classification);
        assert_eq!(a, make(1, Objective::Classification));
        assert_ne!(a.x, make(2, Objective::Classification).x);
        let Targets::Classes { labels, classes: 3 } = &a.y else { panic!() };
        // Every class occurs (a random teacher does not collapse onto one class here).
        assert!((0..3).all(|c| labels.contains(&c)));
        let r = make(1, Objective::Regression);
        assert_eq!(r, make(1, Objective::Regression));
        assert_eq!(r.y.outputs(), 3);
        // The split follows the data seed.
        let spec = |seed| DataSpec::TeacherStudent {
            objective: Objective::Regression,
            inputs: 4,
            outputs: 1,
            teacher_hidden: 0,
            samples: 100,
            label_noise: 0.0,
            seed,
        };
        assert_eq!(load(&spec(3), 0.25).unwrap(), load(&spec(3), 0.25).unwrap());
        assert_eq!(load(&spec(3), 0.25).unwrap().test.len(), 25);
        assert_ne!(load(&spec(3), 0.25).unwrap().train.x, load(&spec(4), 0.25).unwrap().train.x);
    }
}
