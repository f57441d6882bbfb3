//! Sweep-file errors and the machinery that locates them: key paths, a span-preserving parse of
//! the text, line and column.

use std::fmt;
use std::ops::Range;
use toml::de::DeTable;

/// A sweep-file error: where it is and what is wrong (details behind a box, so `Result`s stay
/// small; fields are reachable through `Deref`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(Box<SpecErrorDetail>);

impl SpecError {
    /// The same error with its message rewritten.
    pub(super) fn map_message(mut self, f: impl FnOnce(&str) -> String) -> SpecError {
        self.0.message = f(&self.0.message);
        self
    }
}

impl std::ops::Deref for SpecError {
    type Target = SpecErrorDetail;
    fn deref(&self) -> &SpecErrorDetail {
        &self.0
    }
}

/// Where a sweep-file error is and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecErrorDetail {
    /// The file (as the user named it).
    pub file: String,
    /// The dotted key path, e.g. `grid.lr[2]`, where known.
    pub key: Option<String>,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// The source line, where known.
    pub source_line: Option<String>,
}

impl fmt::Display for SpecErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "`{k}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(src), Some(l), Some(c)) = (&self.source_line, self.line, self.column) {
            let gutter = l.to_string().len();
            write!(f, "\n{:gutter$} |\n{l} | {src}\n{:gutter$} | {:>c$}", "", "", "^")?;
        }
        Ok(())
    }
}

/// One step of a key path.
#[derive(Clone, Debug)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The source text plus a span-preserving parse of it, to locate keys in errors.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) doc: Option<DeTable<'a>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let (first, rest) = path.split_first()?;
        let Seg::Key(k) = first else { return None };
        let (key, mut value) = doc.get_key_value(k.as_str())?;
        let mut span = value.span();
        // A table header's value span can be empty; fall back to the key.
        if span.is_empty() {
            span = key.span();
        }
        for seg in rest {
            let next = match seg {
                Seg::Key(k) => value.get_ref().get(k.as_str()),
                Seg::Index(i) => value.get_ref().get(*i),
            };
            match next {
                Some(v) => {
                    value = v;
                    if !v.span().is_empty() {
                        span = v.span();
                    }
                }
                None => break,
            }
        }
        Some(span)
    }

    pub(super) fn error_at(&self, span: Option<Range<usize>>, key: Option<String>, message: String) -> SpecError {
        let (line, column, source_line) = match span {
            Some(r) => {
                let (l, c, src) = line_col(self.text, r.start);
                (Some(l), Some(c), Some(src))
            }
            None => (None, None, None),
        };
        SpecError(Box::new(SpecErrorDetail { file: self.file.to_string(), key, line, column, message, source_line }))
    }

    /// The 1-based line of a key path, where it can be found.
    pub(super) fn line_of(&self, path: &[Seg]) -> Option<usize> {
        self.span_of(path).map(|r| line_col(self.text, r.start).0)
    }

    pub(super) fn err(&self, path: &[Seg], message: impl Into<String>) -> SpecError {
        let key = (!path.is_empty()).then(|| path_string(path));
        self.error_at(self.span_of(path), key, message.into())
    }
}

/// 1-based line and column (in characters) of byte offset `at`, and the text of that line.
pub(super) fn line_col(text: &str, at: usize) -> (usize, usize, String) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[start..at].chars().count() + 1;
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    (line, column, text[start..end].trim_end_matches('\r').to_string())
}

/// A key step of a path.
pub(super) fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}
