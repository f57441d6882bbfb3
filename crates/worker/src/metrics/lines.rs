//! Metrics from stdout lines: JSON objects (kappa's own format, the default), Python dicts as
//! `print(dict)` writes them (the Hugging Face Trainer's `{'loss': 0.41, 'epoch': 1.0}`), or a
//! regular expression whose named groups are the metrics (the PyTorch examples' `Loss: 0.2143`).

use super::{Record, list};
use kappa_core::metrics::LinePattern;
use std::collections::{BTreeMap, BTreeSet};

/// Names remembered for the message of a trial that produced no loss.
const MAX_SEEN: usize = 32;

/// Reads metrics from stdout lines.
pub(crate) struct LineReader {
    how: How,
    loss: String,
    /// Lines read, and the metric names seen (for the message when no loss came).
    lines: u64,
    seen: BTreeSet<String>,
    matched: u64,
}

enum How {
    Json,
    PythonDict,
    Regex(regex::Regex),
}

impl LineReader {
    pub(crate) fn new(pattern: &LinePattern, loss: &str) -> Result<LineReader, String> {
        let how = match pattern {
            LinePattern::Json => How::Json,
            LinePattern::PythonDict => How::PythonDict,
            LinePattern::Regex(re) => How::Regex(kappa_core::metrics::compile_pattern(re, loss)?),
        };
        Ok(LineReader { how, loss: loss.to_string(), lines: 0, seen: BTreeSet::new(), matched: 0 })
    }

    /// The record of one line, if it is a metrics line.
    pub(crate) fn line(&mut self, line: &str) -> Option<Record> {
        self.lines += 1;
        let map = match &self.how {
            How::Json => dict_text(line).and_then(parse_json_object)?,
            How::PythonDict => dict_text(line).and_then(parse_python_dict)?,
            How::Regex(re) => regex_map(re, line)?,
        };
        self.matched += 1;
        for k in map.keys() {
            if self.seen.len() < MAX_SEEN {
                self.seen.insert(k.clone());
            }
        }
        Some(Record::from_map(&map, &self.loss))
    }

    /// Why no loss point came: what was looked for, and what was found.
    pub(crate) fn missing(&self) -> String {
        let loss = &self.loss;
        let what = match &self.how {
            How::Json => format!("a JSON object with a numeric `{loss}`"),
            How::PythonDict => format!("a Python dict with a numeric '{loss}'"),
            How::Regex(re) => format!("a match of /{}/ with a numeric `{loss}` group", re.as_str()),
        };
        let found = if self.matched == 0 {
            String::new()
        } else {
            format!("; {} lines matched, with the keys {}", self.matched, list(&self.seen, 12))
        };
        format!("no stdout line was {what} ({} lines read{found})", self.lines)
    }
}

/// The line as a candidate dict: trimmed, from `{` to `}`.
fn dict_text(line: &str) -> Option<&str> {
    let t = line.trim();
    (t.starts_with('{') && t.ends_with('}')).then_some(t)
}

/// The named groups of the first match of `re` in `line` that parse as numbers (Rust's `f64`
/// syntax: `nan`, `inf` and `infinity` in any case read as not finite).
fn regex_map(re: &regex::Regex, line: &str) -> Option<BTreeMap<String, Option<f64>>> {
    let caps = re.captures(line)?;
    let mut map = BTreeMap::new();
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name)
            && let Ok(v) = m.as_str().trim().parse::<f64>()
        {
            map.insert(name.to_string(), v.is_finite().then_some(v));
        }
    }
    Some(map)
}

/// A flat JSON object of numbers: `None` values for keys whose value is `null`, `NaN` or
/// `±Infinity` (Python's `json.dumps` writes the last two); non-numeric values are skipped.
fn parse_json_object(text: &str) -> Option<BTreeMap<String, Option<f64>>> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // Python's json writes bare NaN / Infinity, which strict JSON refuses: read them as null.
        Err(_) => {
            let fixed = text.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null");
            serde_json::from_str(&fixed).ok()?
        }
    };
    let obj = value.as_object()?;
    Some(
        obj.iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::Null => Some((k.clone(), None)),
                serde_json::Value::Number(n) => Some((k.clone(), n.as_f64())),
                _ => None,
            })
            .collect(),
    )
}

/// A Python dict's `repr` (what `print(dict)` writes): keys in single or double quotes; values
/// that are numbers (`1e-05`, `3`, `-0.5`, `1_000`), `nan` / `inf` / `-inf` (as `None` values:
/// not finite), or a number wrapped in a call (`np.float64(0.41)`, `tensor(0.41)`) are read; other
/// values (strings, `None`, `True`, lists, nested dicts) are skipped. `None` when the text is not
/// a dict.
fn parse_python_dict(text: &str) -> Option<BTreeMap<String, Option<f64>>> {
    let mut p = Py { s: text.as_bytes(), i: 0 };
    p.expect(b'{')?;
    let mut map = BTreeMap::new();
    p.ws();
    if p.eat(b'}') {
        return p.at_end().then_some(map);
    }
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match p.value()? {
            PyValue::Number(v) => {
                map.insert(key, v.is_finite().then_some(v));
            }
            PyValue::Other => {}
        }
        p.ws();
        if p.eat(b',') {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            continue;
        }
        p.expect(b'}')?;
        break;
    }
    p.at_end().then_some(map)
}

enum PyValue {
    Number(f64),
    Other,
}

/// A small reader of Python literals (enough of `repr` for flat dicts of numbers).
struct Py<'a> {
    s: &'a [u8],
    i: usize,
}

impl Py<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    /// A quoted string (`'...'` or `"..."`, backslash escapes kept as they are).
    fn string(&mut self) -> Option<String> {
        let q = self.peek().filter(|c| *c == b'\'' || *c == b'"')?;
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                c if c == q => break,
                _ => self.i += 1,
            }
        }
        let end = self.i.min(self.s.len());
        self.i += 1;
        String::from_utf8(self.s.get(start..end)?.to_vec()).ok()
    }

    /// A bare word: a name or a number's characters.
    fn word(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-')) {
            // A sign only at the start or after an exponent: `1e-05`, `-inf`.
            if matches!(self.s[self.i], b'+' | b'-') && self.i > start && !matches!(self.s[self.i - 1], b'e' | b'E') {
                break;
            }
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    fn value(&mut self) -> Option<PyValue> {
        match self.peek()? {
            b'\'' | b'"' => {
                self.string()?;
                Some(PyValue::Other)
            }
            b'[' | b'(' | b'{' => {
                self.skip_nested()?;
                Some(PyValue::Other)
            }
            _ => {
                let w = self.word().to_string();
                if w.is_empty() {
                    return None;
                }
                self.ws();
                if self.peek() == Some(b'(') {
                    // `np.float64(0.41)`, `tensor(0.41)`: the number inside, if that is all.
                    let save = self.i;
                    self.i += 1;
                    self.ws();
                    let inner = self.word().to_string();
                    self.ws();
                    if self.eat(b')')
                        && let Some(v) = number(&inner)
                    {
                        return Some(PyValue::Number(v));
                    }
                    self.i = save;
                    self.skip_nested()?;
                    return Some(PyValue::Other);
                }
                Some(number(&w).map_or(PyValue::Other, PyValue::Number))
            }
        }
    }

    /// Skips a bracketed value (lists, tuples, dicts, call arguments), strings inside included.
    fn skip_nested(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'[' | b'(' | b'{' => {
                    depth += 1;
                    self.i += 1;
                }
                b']' | b')' | b'}' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
                b'\'' | b'"' => {
                    self.string()?;
                }
                _ => self.i += 1,
            }
        }
    }
}

/// A Python number literal: `3`, `-0.5`, `1e-05`, `1_000`, `nan`, `inf`, `-inf`.
fn number(w: &str) -> Option<f64> {
    let w = w.replace('_', "");
    let lower = w.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    // Rust also reads `infinity`; Python's repr writes `inf` and `nan` only, but a user's own
    // print may write either.
    if body.is_empty()
        || !(body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            || body == "nan"
            || body == "inf"
            || body == "infinity")
    {
        return None;
    }
    lower.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn dict(s: &str) -> Option<Vec<(String, Option<f64>)>> {
        parse_python_dict(s).map(|m| m.into_iter().collect())
    }

    #[test]
    fn python_dicts_as_print_writes_them() {
        // The Hugging Face Trainer's log line, its eval line and its final summary.
        let hf = dict("{'loss': 0.4102, 'grad_norm': 1.25, 'learning_rate': 5e-05, 'epoch': 1.0}").unwrap();
        assert_eq!(
            hf,
            [
                ("epoch".into(), Some(1.0)),
                ("grad_norm".into(), Some(1.25)),
                ("learning_rate".into(), Some(5e-05)),
                ("loss".into(), Some(0.4102))
            ]
        );
        let m = parse_python_dict(
            "{'eval_loss': nan, 'eval_runtime': 1.5, 'note': 'a, b}', 'shape': [1, 2], 'ok': True, 'x': None}",
        )
        .unwrap();
        assert_eq!(m.get("eval_loss"), Some(&None), "nan reads as not finite");
        assert_eq!(m.get("eval_runtime"), Some(&Some(1.5)));
        assert!(!m.contains_key("note") && !m.contains_key("shape") && !m.contains_key("ok") && !m.contains_key("x"));
        // NumPy 2 and torch scalars, infinities, signs, underscores, double quotes, a trailing comma.
        let m = parse_python_dict(
            r#"{"a": np.float64(0.25), 'b': tensor(-3), 'c': -inf, 'd': +1_000, 'e': inf, 'f': np.array([1, 2]),}"#,
        )
        .unwrap();
        let want: BTreeMap<String, Option<f64>> = [
            ("a".to_string(), Some(0.25)),
            ("b".to_string(), Some(-3.0)),
            ("c".to_string(), None),
            ("d".to_string(), Some(1000.0)),
            ("e".to_string(), None),
        ]
        .into();
        assert_eq!(m, want);
        assert_eq!(dict("{}"), Some(vec![]));
        for bad in ["{'a': 1", "{'a' 1}", "{'a': 1} tail", "{a: 1}", "{'a': 1,, 'b': 2}", "{'a': }", "{'a': 1)}"] {
            assert_eq!(parse_python_dict(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_regex_reads_its_named_groups() {
        let re = kappa_core::metrics::compile_pattern(
            r"Train Epoch: (?P<epoch>\d+) \[\d+/\d+ \(\d+%\)\]\s+Loss: (?P<loss>\S+)",
            "loss",
        )
        .unwrap();
        let m = regex_map(&re, "Train Epoch: 3 [12800/60000 (21%)]\tLoss: 0.214300").unwrap();
        assert_eq!(m.get("loss"), Some(&Some(0.2143)));
        assert_eq!(m.get("epoch"), Some(&Some(3.0)));
        assert_eq!(regex_map(&re, "Test set: Average loss: 0.05"), None);
        let m = regex_map(&re, "Train Epoch: 9 [0/60000 (0%)]\tLoss: nan").unwrap();
        assert_eq!(m.get("loss"), Some(&None), "nan marks the run diverged");
        // A group that is not a number is not a metric.
        let m = regex_map(&re, "Train Epoch: 9 [0/60000 (0%)]\tLoss: n/a").unwrap();
        assert!(!m.contains_key("loss"));
        let mut r = LineReader::new(&LinePattern::Regex(re.as_str().into()), "loss").unwrap();
        let rec = r.line("Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.3").unwrap();
        assert_eq!((rec.loss, rec.extra.get("epoch").copied()), (Some(2.3), Some(1.0)));
        assert!(r.line("other").is_none());
        let missing = r.missing();
        assert!(missing.contains("2 lines read") && missing.contains("`epoch`"), "{missing}");
    }

    /// Lines made of the characters these parsers care about, and valid lines cut and spliced:
    /// none panics, and what parses is a flat map.
    #[test]
    fn random_lines_never_panic() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let alphabet: Vec<char> =
            "{}[]()'\":,.-+_eE0123456789 nainfNaNInfinityTruelossnp\\\t\u{e9}\u{1F600}".chars().collect();
        let valid = [
            "{'loss': 0.4102, 'learning_rate': 5e-05, 'epoch': np.float64(1.0), 'x': [1, {'a': (2,)}]}",
            r#"{"step": 10, "loss": NaN, "test_accuracy": 0.8, "tag": "x"}"#,
            "Train Epoch: 3 [12800/60000 (21%)]\tLoss: 0.214300",
        ];
        let re = kappa_core::metrics::compile_pattern(r"Epoch: (?P<step>\d+).*Loss: (?P<loss>[0-9.eE+-]+|nan)", "loss")
            .unwrap();
        let mut readers = [
            LineReader::new(&LinePattern::Json, "loss").unwrap(),
            LineReader::new(&LinePattern::PythonDict, "loss").unwrap(),
            LineReader::new(&LinePattern::Regex(re.as_str().into()), "loss").unwrap(),
        ];
        for i in 0..30_000 {
            let line: String = if i % 2 == 0 {
                let n = rng.random_range(0..40);
                (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
            } else {
                let v: Vec<char> = valid[rng.random_range(0..valid.len())].chars().collect();
                let (a, b) = (rng.random_range(0..v.len()), rng.random_range(0..v.len()));
                let mut s: Vec<char> = v[..a.min(b)].to_vec();
                s.extend((0..rng.random_range(0..4)).map(|_| alphabet[rng.random_range(0..alphabet.len())]));
                s.extend(&v[a.max(b)..]);
                s.into_iter().collect()
            };
            for r in &mut readers {
                if let Some(rec) = r.line(&line) {
                    assert!(rec.extra.values().all(|v| v.is_finite()), "{line:?}: {rec:?}");
                }
            }
            let _ = parse_python_dict(&line);
        }
    }
}
