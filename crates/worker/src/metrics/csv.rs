//! Metrics from a CSV file with a header line (Lightning's and Keras' `CSVLogger`), read as it
//! grows. Lightning rewrites the whole file when a new metric appears, and a later attempt may
//! write its own over the last one's: a file whose first line or last line read changed, or that
//! shrank, is read again from its start, and what was read from it before is dropped.
//!
//! Each complete row is a record: the loss column is the loss (an empty cell: none in this row,
//! its metrics join a point), the step column the step (default `step`, else the row number),
//! the samples column the samples seen (default `samples`, else step × B), and every other cell
//! that is a number a metric named by its column.

use super::{Polled, Record, list};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// One line's cells (quoted cells as CSV quotes them; a line that is not valid CSV has none).
fn parse_row(line: &[u8]) -> csv::StringRecord {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
    let mut row = csv::StringRecord::new();
    match reader.read_record(&mut row) {
        Ok(true) => row,
        _ => csv::StringRecord::new(),
    }
}

/// A CSV metrics file, read as it grows.
pub(crate) struct CsvFile {
    path: PathBuf,
    loss: String,
    step: Option<String>,
    samples: Option<String>,
    /// The offset of the first line not yet read, the header's bytes and columns.
    offset: u64,
    header_line: Vec<u8>,
    header: Option<Header>,
    /// Rows read (the step of a row when there is no step column), and the last line read (its
    /// bytes still there at its offset: the file was not rewritten).
    rows: u64,
    last_line: Vec<u8>,
    /// Warned that the file cannot be read / that a named column is missing.
    unreadable: bool,
    warned_columns: bool,
}

struct Header {
    names: Vec<String>,
    loss: Option<usize>,
    step: Option<usize>,
    samples: Option<usize>,
}

impl CsvFile {
    pub(crate) fn new(path: PathBuf, loss: String, step: Option<String>, samples: Option<String>) -> CsvFile {
        CsvFile {
            path,
            loss,
            step,
            samples,
            offset: 0,
            header_line: Vec::new(),
            header: None,
            rows: 0,
            last_line: Vec::new(),
            unreadable: false,
            warned_columns: false,
        }
    }

    /// Reads the rows appended since the last poll.
    pub(crate) fn poll(&mut self, out: &mut Polled) {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                if !self.unreadable {
                    self.unreadable = true;
                    out.warnings.push(format!("cannot read the metrics file {}: {e}", self.path.display()));
                }
                return;
            }
        };
        if let Err(e) = self.read(&mut f, out) {
            out.warnings.push(format!("reading the metrics file {} failed: {e}", self.path.display()));
        }
    }

    fn read(&mut self, f: &mut std::fs::File, out: &mut Polled) -> std::io::Result<()> {
        let len = f.metadata()?.len();
        // Rewritten (Lightning adds a column by writing the whole file again; a later attempt
        // writes its own over the last one's): read from the start, and what was read before is
        // void. Seen by the header or the last line read no longer being where they were.
        if self.header.is_some() {
            let same = |f: &mut std::fs::File, at: u64, bytes: &[u8]| -> std::io::Result<bool> {
                let mut there = vec![0u8; bytes.len()];
                f.seek(SeekFrom::Start(at))?;
                Ok(f.read_exact(&mut there).is_ok() && there == bytes)
            };
            let kept = len >= self.offset
                && same(f, 0, &self.header_line)?
                && same(f, self.offset - self.last_line.len() as u64, &self.last_line)?;
            if !kept {
                self.offset = 0;
                self.header = None;
                self.header_line.clear();
                self.last_line.clear();
                self.rows = 0;
                out.reset = true;
            }
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(len.saturating_sub(self.offset)).read_to_end(&mut buf)?;
        // Complete lines only: the last one may still be being written.
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else { return Ok(()) };
        let complete = &buf[..=end];
        let mut consumed = 0u64;
        for line in complete.split_inclusive(|b| *b == b'\n') {
            let row = parse_row(line);
            if self.header.is_none() {
                self.header_line = line.to_vec();
                self.header = Some(self.header_of(&row, out));
            } else if let Some(r) = self.record(&row) {
                out.records.push(r);
            }
            consumed += line.len() as u64;
            self.last_line = line.to_vec();
        }
        self.offset += consumed;
        Ok(())
    }

    fn header_of(&mut self, row: &csv::StringRecord, out: &mut Polled) -> Header {
        let names: Vec<String> = row.iter().map(|c| c.trim().to_string()).collect();
        let col = |n: &str| names.iter().position(|c| c == n);
        let step = col(self.step.as_deref().unwrap_or("step"));
        let samples = col(self.samples.as_deref().unwrap_or("samples"));
        for (what, named, found) in [("step", &self.step, step), ("samples", &self.samples, samples)] {
            if let (Some(n), None) = (named, found)
                && !self.warned_columns
            {
                self.warned_columns = true;
                out.warnings.push(format!(
                    "{} has no column `{n}` for the {what} (its columns: {}); {}",
                    self.path.display(),
                    names.join(", "),
                    if what == "step" { "steps are row numbers" } else { "samples are step × batch size" }
                ));
            }
        }
        Header { loss: col(&self.loss), step, samples, names }
    }

    fn record(&mut self, row: &csv::StringRecord) -> Option<Record> {
        let h = self.header.as_ref()?;
        if row.iter().all(|c| c.trim().is_empty()) {
            return None;
        }
        self.rows += 1;
        let cell =
            |i: Option<usize>| -> Option<&str> { i.and_then(|i| row.get(i)).map(str::trim).filter(|c| !c.is_empty()) };
        let whole = |i: Option<usize>| cell(i).and_then(|c| c.parse::<f64>().ok()).and_then(super::count);
        let mut rec = Record {
            step: Some(whole(h.step).unwrap_or(self.rows)),
            samples: whole(h.samples),
            loss: cell(h.loss).map(|c| c.parse::<f64>().unwrap_or(f64::NAN)),
            ..Record::default()
        };
        for (i, name) in h.names.iter().enumerate() {
            if [h.loss, h.step, h.samples].contains(&Some(i)) || name.is_empty() {
                continue;
            }
            if let Some(v) = cell(Some(i)).and_then(|c| c.parse::<f64>().ok()).filter(|v| v.is_finite()) {
                rec.extra.insert(name.clone(), v);
            }
        }
        Some(rec)
    }

    /// After the last poll: a last line without its newline is read too (a writer that never
    /// ended it). Called once, last: `last_line` is not kept up to date past it.
    pub(crate) fn end(&mut self, out: &mut Polled) {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return };
        let mut rest = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut rest).is_err() {
            return;
        }
        if rest.is_empty() || self.header.is_none() {
            return;
        }
        if let Some(r) = self.record(&parse_row(&rest)) {
            out.records.push(r);
        }
        self.offset += rest.len() as u64;
    }

    /// Why no loss point came: the file, and its columns.
    pub(crate) fn missing(&self) -> String {
        let file = self.path.display();
        match &self.header {
            _ if !self.path.exists() => {
                format!("the metrics file {file} does not exist (the program wrote no CSV there)")
            }
            None => format!("the metrics file {file} has no header line"),
            Some(h) if h.loss.is_none() => {
                let cols: BTreeSet<String> = h.names.iter().cloned().collect();
                format!("{file} has no column `{}`; its columns: {}", self.loss, list(&cols, 30))
            }
            Some(_) => {
                format!("{file} has a column `{}` but no row with a value in it ({} rows)", self.loss, self.rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(c: &mut CsvFile) -> Polled {
        let mut out = Polled::default();
        c.poll(&mut out);
        out
    }

    #[test]
    fn a_growing_csv_is_read_row_by_row_and_a_rewrite_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut c = CsvFile::new(path.clone(), "train_loss".into(), None, None);
        assert!(poll(&mut c).records.is_empty() && c.missing().contains("does not exist"));
        // Lightning's layout: train rows and validation rows, empty cells between.
        std::fs::write(&path, "epoch,step,train_loss,val_loss\n0,9,1.5,\n0,19,1.2").unwrap();
        let got = poll(&mut c).records;
        assert_eq!(got.len(), 1, "the unfinished line waits");
        assert_eq!((got[0].step, got[0].loss, got[0].extra.get("epoch")), (Some(9), Some(1.5), Some(&0.0)));
        std::fs::write(&path, "epoch,step,train_loss,val_loss\n0,9,1.5,\n0,19,1.2,\n0,19,,1.3\n").unwrap();
        let got = poll(&mut c).records;
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].step, got[1].loss, got[1].extra.get("val_loss")), (Some(19), None, Some(&1.3)));
        // A new column: the file is written again with another header, and read again.
        std::fs::write(
            &path,
            "epoch,lr,step,train_loss,val_loss\n0,0.1,9,1.5,\n0,0.1,19,1.2,\n0,,19,,1.3\n1,0.1,29,nan,\n",
        )
        .unwrap();
        let polled = poll(&mut c);
        assert!(polled.reset, "a rewrite voids what was read");
        let got = polled.records;
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].extra.get("lr"), Some(&0.1));
        assert!(got[3].loss.unwrap().is_nan(), "nan marks the run diverged");
        // Another attempt writes its own file over this one, same header, longer already: its
        // rows from the start, not from the middle of one.
        std::fs::write(&path, "epoch,lr,step,train_loss,val_loss\n0,0.2,5,1.9,\n0,0.2,15,1.7,\n0,0.2,25,1.6,\n0,0.2,35,1.5,\n0,0.2,45,1.4,\n")
            .unwrap();
        let polled = poll(&mut c);
        assert!(polled.reset);
        let steps: Vec<_> = polled.records.iter().map(|r| (r.step, r.loss)).collect();
        assert_eq!(steps[0], (Some(5), Some(1.9)), "{steps:?}");
        assert_eq!(steps.len(), 5);
        // Appended to: no reset.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"0,0.2,55,1.3,\n").unwrap();
        let polled = poll(&mut c);
        assert!(!polled.reset && polled.records.len() == 1);
    }

    #[test]
    fn keras_style_rows_count_as_steps_and_missing_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        std::fs::write(&path, "epoch,accuracy,loss,val_loss\n0,0.5,1.0,1.1\n1,0.7,0.6,0.8\n2,0.8,0.4,0.7").unwrap();
        let mut c = CsvFile::new(path.clone(), "loss".into(), Some("epoch".into()), None);
        let mut out = poll(&mut c);
        c.end(&mut out);
        let steps: Vec<_> = out.records.iter().map(|r| (r.step, r.loss)).collect();
        assert_eq!(steps, [(Some(0), Some(1.0)), (Some(1), Some(0.6)), (Some(2), Some(0.4))]);
        let mut c = CsvFile::new(path.clone(), "train_loss".into(), Some("iter".into()), None);
        let out = poll(&mut c);
        assert!(out.warnings[0].contains("no column `iter`"), "{:?}", out.warnings);
        assert_eq!(out.records[1].step, Some(2), "row numbers");
        let m = c.missing();
        assert!(m.contains("no column `train_loss`") && m.contains("`val_loss`"), "{m}");
    }
}
