//! A command trial's metrics, from whichever source its task names (`[task] metrics`): stdout
//! lines (JSON objects, Python dicts, a regex with named groups: `lines.rs`), TensorBoard event
//! files (`tfevents.rs`) or a CSV file (`csv.rs`). Every source yields `Record`s, and one
//! `Curve` turns them into the curve points, the stationary loss and the settled check, so
//! nothing downstream knows which source a trial used.
//!
//! Files are read as they grow, while the program runs (on a blocking thread, a poll every
//! [`FILE_POLL`]), and once more after it ends.

mod csv;
mod lines;
mod tfevents;

use kappa_core::metrics::MetricsSource;
use kappa_core::{CurvePoint, Estimate, TrialMetrics};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often files are read while the program runs.
pub const FILE_POLL: Duration = Duration::from_millis(500);

/// At most this many metrics besides the loss are kept per trial (the first seen); the rest are
/// named in a note. A program that logs hundreds of tags (per-layer norms) would otherwise make
/// every stored curve point that large.
const MAX_METRICS: usize = 64;

/// Longer curves are thinned evenly (first and last point kept) after the stationary loss is
/// computed from every point: what is stored and sent stays bounded.
const MAX_POINTS: usize = 5_000;

/// At most this many warnings (corrupt records, unreadable files) go to a trial's notes.
const MAX_WARNINGS: usize = 10;

/// One observation a source read: a loss or not, and other metrics, at a step.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Record {
    /// The step, where the source says.
    pub step: Option<u64>,
    /// The samples seen, where the source says.
    pub samples: Option<u64>,
    /// The loss: `None` when the record has none (its metrics join a point of the curve: the one
    /// at its step, or the last before it); `NaN` or infinite marks the run diverged.
    pub loss: Option<f64>,
    /// Every other finite metric, by name.
    pub extra: BTreeMap<String, f64>,
    /// The step this attempt continued from, where a program says so (`resumed_from`).
    pub resumed_from: Option<u64>,
}

impl Record {
    /// A record from a flat map of numbers (`None`: `null`, `NaN`, `±inf`), as JSON lines, Python
    /// dicts and regex groups give them: `loss` names the loss; `step`, `samples` and
    /// `resumed_from` are what they say; every other finite number is a metric.
    pub(crate) fn from_map(map: &BTreeMap<String, Option<f64>>, loss: &str) -> Record {
        let whole = |k: &str| map.get(k).copied().flatten().and_then(count);
        let extra = map
            .iter()
            .filter(|(k, _)| !(k.as_str() == loss || matches!(k.as_str(), "step" | "samples" | "resumed_from")))
            .filter_map(|(k, v)| v.filter(|v| v.is_finite()).map(|v| (k.clone(), v)))
            .collect();
        Record {
            step: whole("step"),
            samples: whole("samples"),
            loss: map.get(loss).map(|v| v.unwrap_or(f64::NAN)),
            extra,
            resumed_from: whole("resumed_from"),
        }
    }
}

/// A number as a step or sample count: whole, from 0 up to what a u64 holds (a fraction is
/// truncated); `None` otherwise.
pub(crate) fn count(v: f64) -> Option<u64> {
    (0.0..1.8e19).contains(&v).then_some(v as u64)
}

/// What a file source read in one poll.
#[derive(Default)]
pub(crate) struct Polled {
    pub records: Vec<Record>,
    /// Problems worth telling the user (a corrupt record skipped, an unreadable file).
    pub warnings: Vec<String>,
    /// The source was rewritten from its start: every record it gave before is void (its
    /// records in this poll are read from the start).
    pub reset: bool,
}

/// Where a trial's metrics come from, ready to read.
enum Source {
    Lines(lines::LineReader),
    /// `None` while a read runs on a blocking thread, and for good after one panicked.
    Files(Option<Box<FileReader>>),
}

/// A file source.
pub(crate) enum FileReader {
    Tensorboard(tfevents::EventDir),
    Csv(csv::CsvFile),
}

impl FileReader {
    fn poll(&mut self, out: &mut Polled) {
        match self {
            FileReader::Tensorboard(d) => d.poll(out),
            FileReader::Csv(c) => c.poll(out),
        }
    }

    /// The last read, after the program ended: what is still incomplete is said.
    fn end(&mut self, out: &mut Polled) {
        self.poll(out);
        match self {
            FileReader::Tensorboard(d) => d.end(out),
            FileReader::Csv(c) => c.end(out),
        }
    }

    fn missing(&self) -> String {
        match self {
            FileReader::Tensorboard(d) => d.missing(),
            FileReader::Csv(c) => c.missing(),
        }
    }
}

/// A command trial's metrics as they are read (what a worker runs for each command attempt;
/// public for tests and tools that read a program's metrics the same way).
pub struct Metrics {
    source: Source,
    /// A trial without a loss point fails (every source but the default JSON lines: a program
    /// that prints none still succeeds, with a note, as before sources existed).
    required: bool,
    curve: Curve,
    /// Names the trial in logged warnings.
    label: String,
}

impl Metrics {
    /// The reader of `source` for one attempt: file templates filled in by `render`, relative
    /// paths taken from `workdir`; `batch` turns steps into samples; `label` names the trial in
    /// logged warnings.
    pub fn new(
        source: &MetricsSource,
        batch: u64,
        render: impl Fn(&str) -> Result<String, String>,
        workdir: &Path,
        label: String,
    ) -> Result<Metrics, String> {
        let path = |t: &str| -> Result<PathBuf, String> {
            let p = PathBuf::from(render(t)?);
            Ok(if p.is_absolute() { p } else { workdir.join(p) })
        };
        let src = match source {
            MetricsSource::Stdout { pattern, loss } => Source::Lines(lines::LineReader::new(pattern, loss)?),
            MetricsSource::Tensorboard { dir, loss } => {
                let reader = FileReader::Tensorboard(tfevents::EventDir::new(path(dir)?, loss.clone()));
                Source::Files(Some(Box::new(reader)))
            }
            MetricsSource::Csv { path: p, loss, step, samples } => {
                let reader = FileReader::Csv(csv::CsvFile::new(path(p)?, loss.clone(), step.clone(), samples.clone()));
                Source::Files(Some(Box::new(reader)))
            }
        };
        Ok(Metrics { source: src, required: !source.is_default(), curve: Curve::new(batch), label })
    }

    /// One line of the program's stdout (read only by stdout sources).
    pub fn line(&mut self, line: &str) {
        if let Source::Lines(r) = &mut self.source
            && let Some(rec) = r.line(line)
        {
            self.curve.push(rec);
        }
    }

    /// Whether it reads files (to poll while the program runs).
    pub fn reads_files(&self) -> bool {
        matches!(self.source, Source::Files(_))
    }

    /// Reads what the program appended to its files since the last poll.
    pub async fn poll(&mut self) {
        self.read(false).await;
    }

    /// The last read of its files, after the program ended.
    pub async fn end(&mut self) {
        self.read(true).await;
    }

    async fn read(&mut self, last: bool) {
        let Source::Files(slot) = &mut self.source else { return };
        let Some(mut owned) = slot.take() else { return };
        // Reading may take a while (a large event file with images): off the async threads.
        let (back, polled) = match tokio::task::spawn_blocking(move || {
            let mut out = Polled::default();
            if last {
                owned.end(&mut out)
            } else {
                owned.poll(&mut out)
            }
            (owned, out)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // A panic while reading: say so, and read no more (the reader is gone).
                self.curve.warn(&self.label, format!("reading the metrics files failed: {e}"));
                return;
            }
        };
        *slot = Some(back);
        if polled.reset {
            self.curve.clear();
        }
        for w in polled.warnings {
            self.curve.warn(&self.label, w);
        }
        for r in polled.records {
            self.curve.push(r);
        }
    }

    /// The metrics of the run (the curve, its stationary loss from the points after `burn_in` of
    /// its last step, the settled check), or, when a source the task names produced no loss
    /// point, what it looked for and what it found. With the default source (JSON lines) a run
    /// without one has an empty curve and a note saying so.
    pub fn finish(self, burn_in: f64) -> Result<TrialMetrics, String> {
        if self.curve.points.is_empty() {
            let missing = match &self.source {
                Source::Lines(r) => r.missing(),
                Source::Files(f) => {
                    f.as_ref().map_or_else(|| "its metrics files could not be read".into(), |f| f.missing())
                }
            };
            if self.required {
                return Err(missing);
            }
            let mut m = self.curve.finish(burn_in);
            m.notes.insert(0, missing);
            return Ok(m);
        }
        Ok(self.curve.finish(burn_in))
    }
}

/// Metrics without a loss, waiting for the point they join.
struct Loose {
    /// Their step, where known: they join the point at it, or the last before it.
    step: Option<u64>,
    /// Otherwise the point of the last loss read before them (its index in `points`).
    after: Option<usize>,
    extra: BTreeMap<String, f64>,
}

/// Turns records into a curve.
pub(crate) struct Curve {
    batch: u64,
    points: Vec<CurvePoint>,
    loose: Vec<Loose>,
    /// Records with a loss so far (the step of one that gives none).
    lines: u64,
    /// The step this attempt continued from, as its program last said (`resumed_from`).
    resumed_from: Option<u64>,
    /// The metric names kept, and how many others were dropped.
    names: BTreeSet<String>,
    dropped: BTreeSet<String>,
    warnings: Vec<String>,
}

impl Curve {
    pub(crate) fn new(batch: u64) -> Curve {
        Curve {
            batch: batch.max(1),
            points: Vec::new(),
            loose: Vec::new(),
            lines: 0,
            resumed_from: None,
            names: BTreeSet::new(),
            dropped: BTreeSet::new(),
            warnings: Vec::new(),
        }
    }

    /// Forgets every point read so far (a rewritten file: its records are read again).
    fn clear(&mut self) {
        self.points.clear();
        self.loose.clear();
        self.lines = 0;
        self.names.clear();
        self.dropped.clear();
    }

    fn warn(&mut self, label: &str, w: String) {
        tracing::warn!(trial = %label, "{w}");
        if self.warnings.len() < MAX_WARNINGS && !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Keeps the metrics whose names are kept (the first [`MAX_METRICS`] seen).
    fn keep(&mut self, extra: &mut BTreeMap<String, f64>) {
        extra.retain(|k, _| {
            if self.names.contains(k) {
                return true;
            }
            if self.names.len() < MAX_METRICS {
                self.names.insert(k.clone());
                return true;
            }
            self.dropped.insert(k.clone());
            false
        });
    }

    pub(crate) fn push(&mut self, mut r: Record) {
        // Where this attempt started (a program continuing from its checkpoint says so).
        if let Some(from) = r.resumed_from {
            self.resumed_from = (from >= 1).then_some(from);
        }
        self.keep(&mut r.extra);
        let Some(loss) = r.loss else {
            if !r.extra.is_empty() {
                let step = r.step.or(r.samples.map(|n| n / self.batch));
                let after = self.points.len().checked_sub(1);
                self.loose.push(Loose { step, after, extra: r.extra });
            }
            return;
        };
        self.lines += 1;
        let (step, samples) = match (r.step, r.samples) {
            (Some(s), Some(n)) => (s, n),
            (Some(s), None) => (s, s.saturating_mul(self.batch)),
            (None, Some(n)) => (n / self.batch, n),
            (None, None) => (self.lines, self.lines * self.batch),
        };
        self.points.push(CurvePoint { extra: r.extra, ..CurvePoint::single(samples, step, loss) });
    }

    /// The metrics of the run, with the stationary loss from the curve's tail: the mean of its
    /// points after `burn_in` of the last step (SE from their spread: one path), and the same
    /// settled check as simulations (the tail's second half against its first). Needs four
    /// points in the tail.
    pub(crate) fn finish(mut self, burn_in: f64) -> TrialMetrics {
        // A step read twice (a curve re-emitted from a checkpoint over lines already read, event
        // files of two attempts, a program's train and eval lines): one point, in the place of its
        // first record, its later record's values winning and its metrics the union of both.
        let mut at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        let mut moved: Vec<usize> = Vec::with_capacity(self.points.len());
        let mut curve: Vec<CurvePoint> = Vec::with_capacity(self.points.len());
        for mut p in std::mem::take(&mut self.points) {
            match at.get(&p.step) {
                Some(&i) => {
                    let mut extra = std::mem::take(&mut curve[i].extra);
                    extra.append(&mut p.extra);
                    curve[i] = CurvePoint { extra, ..p };
                    moved.push(i);
                }
                None => {
                    at.insert(p.step, curve.len());
                    moved.push(curve.len());
                    curve.push(p);
                }
            }
        }
        // Metrics read without a loss join the point at their step, or the last before it (the
        // first point, when they come before every point); without a step, the point of the loss
        // read before them.
        let mut by_step: Vec<(u64, usize)> = curve.iter().enumerate().map(|(i, p)| (p.step, i)).collect();
        by_step.sort_unstable();
        for l in std::mem::take(&mut self.loose) {
            let target = match l.step {
                Some(s) => match by_step.partition_point(|(step, _)| *step <= s) {
                    0 => by_step.first().map(|(_, i)| *i),
                    n => Some(by_step[n - 1].1),
                },
                None => l.after.map(|a| moved[a]).or(if curve.is_empty() { None } else { Some(0) }),
            };
            if let Some(i) = target {
                curve[i].extra.extend(l.extra);
            }
        }
        let mut notes = std::mem::take(&mut self.warnings);
        if !self.dropped.is_empty() {
            let names: Vec<&str> = self.dropped.iter().take(8).map(String::as_str).collect();
            notes.push(format!(
                "{} metrics beyond the first {MAX_METRICS} were not kept ({}{})",
                self.dropped.len(),
                names.join(", "),
                if self.dropped.len() > names.len() { ", ..." } else { "" }
            ));
        }
        let last = curve.iter().map(|p| p.step).max().unwrap_or(0);
        let tail: Vec<f64> =
            curve.iter().filter(|p| p.step as f64 > burn_in * last as f64).map(|p| p.loss_mean).collect();
        let finite = tail.iter().all(|l| l.is_finite());
        let (stationary_loss, stationary_drift) = match Estimate::drift_of(&tail) {
            Some(drift) if finite => (Some(Estimate::of_samples(tail.iter().copied())), Some(drift)),
            _ => {
                if !curve.is_empty() {
                    notes.push(format!(
                        "no stationary loss: {} loss points after the burn-in (step > {:.0}), 4 needed",
                        tail.len(),
                        burn_in * last as f64
                    ));
                }
                (None, None)
            }
        };
        if stationary_loss.is_some() {
            notes.push(format!(
                "stationary loss: the mean of the {} loss points after step {:.0} (burn_in {burn_in}), SE from their \
                 spread",
                tail.len(),
                burn_in * last as f64
            ));
        }
        if curve.len() > MAX_POINTS {
            let n = curve.len();
            notes.push(format!("the curve's {n} points are stored thinned evenly to {MAX_POINTS}"));
            let keep: BTreeSet<usize> = (0..MAX_POINTS).map(|j| j * (n - 1) / (MAX_POINTS - 1)).collect();
            curve = curve.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, p)| p).collect();
        }
        TrialMetrics { resumed_from: self.resumed_from, curve, stationary_loss, stationary_drift, theory: None, notes }
    }
}

/// Up to `n` names, quoted and comma-separated, with how many more there are.
fn list(names: &BTreeSet<String>, n: usize) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = names.iter().take(n).map(|s| format!("`{s}`")).collect();
    let more = names.len().saturating_sub(n);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(c: &mut Curve, line: &str) {
        let mut r = lines::LineReader::new(&kappa_core::metrics::LinePattern::Json, "loss").unwrap();
        if let Some(rec) = r.line(line) {
            c.push(rec);
        }
    }

    #[test]
    fn metrics_lines_become_a_curve_and_other_lines_are_ignored() {
        let mut p = Curve::new(32);
        json(&mut p, "epoch 1 starting");
        json(&mut p, r#"{"step": 10, "loss": 0.5, "test_accuracy": 0.8, "tag": "x"}"#);
        json(&mut p, r#"{"samples": 640, "loss": 0.25}"#);
        json(&mut p, r#"{"loss": 0.2}"#);
        json(&mut p, r#"{"test_loss": 0.3}"#);
        json(&mut p, "{not json}");
        json(&mut p, r#"{"step": 40, "loss": NaN}"#);
        let m = p.finish(0.5);
        let pts: Vec<(u64, u64, f64)> = m.curve.iter().map(|c| (c.step, c.samples, c.loss_mean)).collect();
        assert_eq!(pts[..3], [(10, 320, 0.5), (20, 640, 0.25), (3, 96, 0.2)]);
        assert_eq!(m.curve[0].extra.get("test_accuracy"), Some(&0.8));
        assert!(!m.curve[0].extra.contains_key("tag"));
        // A line without a loss joins the point read before it.
        assert_eq!(m.curve[2].extra.get("test_loss"), Some(&0.3));
        assert_eq!(m.curve.len(), 4);
        assert!(m.curve[3].loss_mean.is_nan());
        // One line after step 20 (and its loss NaN): no stationary loss, and a note says why.
        assert_eq!(m.stationary_loss, None);
        assert!(m.notes[0].contains("no stationary loss"), "{:?}", m.notes);
    }

    #[test]
    fn no_loss_point_fails_a_named_source_and_leaves_the_default_an_empty_curve() {
        let reader = |source: &MetricsSource| {
            let mut m = Metrics::new(source, 1, |t| Ok(t.to_string()), Path::new("/"), "t".into()).unwrap();
            m.line("epoch 1 done");
            m.finish(0.5)
        };
        let plain = reader(&MetricsSource::default()).unwrap();
        assert!(plain.curve.is_empty() && plain.notes[0].contains("no stdout line was a JSON object"), "{plain:?}");
        let dict = MetricsSource::Stdout { pattern: kappa_core::metrics::LinePattern::PythonDict, loss: "loss".into() };
        let err = reader(&dict).unwrap_err();
        assert!(err.contains("a Python dict with a numeric 'loss' (1 lines read)"), "{err}");
    }

    #[test]
    fn metrics_without_a_loss_join_the_point_at_their_step_or_the_last_before() {
        let mut c = Curve::new(1);
        let rec = |step: u64, loss: Option<f64>, k: &str, v: f64| Record {
            step: Some(step),
            loss,
            extra: [(k.to_string(), v)].into(),
            ..Record::default()
        };
        // As TensorBoard writers log: the evaluation may come before or after the step's loss.
        c.push(rec(5, None, "test/accuracy", 0.1));
        c.push(rec(10, Some(1.0), "lr", 0.1));
        c.push(rec(20, None, "test/accuracy", 0.5));
        c.push(rec(20, Some(0.8), "lr", 0.1));
        c.push(rec(25, None, "test/accuracy", 0.7));
        c.push(rec(30, Some(0.6), "lr", 0.1));
        let m = c.finish(0.5);
        let acc: Vec<Option<f64>> = m.curve.iter().map(|p| p.extra.get("test/accuracy").copied()).collect();
        assert_eq!(acc, [Some(0.1), Some(0.7), None]);
    }

    #[test]
    fn a_curve_re_emitted_from_a_checkpoint_is_one_point_per_step_and_says_where_it_resumed() {
        let mut p = Curve::new(4);
        // The first attempt's lines, re-emitted; then where this attempt resumed; then its own.
        for (step, loss) in [(10, 0.9), (20, 0.7)] {
            json(&mut p, &format!(r#"{{"step": {step}, "loss": {loss}, "resumed_from": 0}}"#));
        }
        json(&mut p, r#"{"resumed_from": 20}"#);
        json(&mut p, r#"{"step": 20, "loss": 0.7, "test_loss": 0.8, "resumed_from": 20}"#);
        json(&mut p, r#"{"step": 30, "loss": 0.5, "resumed_from": 20}"#);
        let m = p.finish(0.5);
        let pts: Vec<(u64, f64)> = m.curve.iter().map(|c| (c.step, c.loss_mean)).collect();
        assert_eq!(pts, [(10, 0.9), (20, 0.7), (30, 0.5)]);
        assert_eq!(m.curve[1].extra.get("test_loss"), Some(&0.8), "a step's lines are one point");
        assert!(m.curve.iter().all(|c| !c.extra.contains_key("resumed_from")), "not a metric");
        assert_eq!(m.resumed_from, Some(20));
        let mut fresh = Curve::new(4);
        json(&mut fresh, r#"{"step": 10, "loss": 0.9, "resumed_from": 0}"#);
        assert_eq!(fresh.finish(0.5).resumed_from, None, "started at step 0");
    }

    #[test]
    fn a_command_gets_a_stationary_loss_and_a_settled_check_from_its_curves_tail() {
        let run = |losses: &[f64]| {
            let mut p = Curve::new(8);
            for (i, l) in losses.iter().enumerate() {
                json(&mut p, &format!(r#"{{"step": {}, "loss": {l}}}"#, (i + 1) * 10));
            }
            p.finish(0.5)
        };
        // Settled: the tail (steps 60..100) fluctuates around 0.1.
        let m = run(&[1.0, 0.5, 0.3, 0.2, 0.15, 0.11, 0.09, 0.1, 0.12, 0.08]);
        let s = m.stationary_loss.unwrap();
        assert!((s.mean - 0.1).abs() < 1e-12 && s.se > 0.0, "{s:?}");
        assert_eq!(m.settled(), Some(true));
        // Still falling through the tail: flagged.
        let m = run(&[1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]);
        assert_eq!(m.settled(), Some(false));
        assert!(m.unsettled_note().unwrap().contains("still fell"));
    }

    #[test]
    fn many_metrics_and_long_curves_stay_bounded_and_say_so() {
        let mut c = Curve::new(1);
        for step in 1..=(MAX_POINTS as u64 + 500) {
            let extra = (0..70).map(|j| (format!("m{j:02}"), j as f64)).collect();
            c.push(Record { step: Some(step), loss: Some(1.0 / step as f64), extra, ..Record::default() });
        }
        let m = c.finish(0.5);
        assert_eq!(m.curve.len(), MAX_POINTS);
        assert_eq!(m.curve.last().unwrap().step, MAX_POINTS as u64 + 500, "the last point is kept");
        assert_eq!(m.curve[0].extra.len(), MAX_METRICS);
        assert!(m.notes.iter().any(|n| n.contains("6 metrics beyond the first 64")), "{:?}", m.notes);
        assert!(m.notes.iter().any(|n| n.contains("thinned")), "{:?}", m.notes);
        // The stationary loss is from every point of the tail, not the thinned ones.
        let n = (MAX_POINTS as u64 + 500) / 2;
        assert!(m.notes.iter().any(|x| x.contains(&format!("mean of the {n} loss points"))), "{:?}", m.notes);
    }
}
