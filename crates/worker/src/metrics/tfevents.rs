//! Scalars from TensorBoard event files (`events.out.tfevents.*`), as PyTorch's `SummaryWriter`,
//! tensorboardX, Lightning, the Hugging Face Trainer and TF2 write them.
//!
//! An event file is a TFRecord file: each record is its length (u64, little-endian), the masked
//! CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data. The data is an `Event`
//! protobuf (`proto/tensorboard.proto`, decoded with prost). Scalars are `simple_value`s, or
//! rank-0 tensors (TF2's `tf.summary.scalar`).
//!
//! Every file under the directory (runs in subdirectories too) is read from where the last poll
//! stopped. A record not yet wholly written is waited for. A record whose data fails its CRC is
//! skipped with a warning naming the file and offset; a header that fails its CRC (its length
//! cannot be trusted) is skipped up to the next valid record.

use super::{Polled, Record, list};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The messages of `proto/tensorboard.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/tensorboard.rs"));
}

/// Records larger than this hold images, graphs or histograms, never a scalar: skipped unread.
const MAX_SCALAR_RECORD: u64 = 16 << 20;
/// A header: the length and its CRC.
const HEADER: u64 = 12;
/// How deep runs may be nested under the directory.
const MAX_DEPTH: usize = 8;
/// Scalar tags remembered for the message of a trial whose loss tag never came.
const MAX_TAGS: usize = 200;

/// The masked CRC-32C TFRecord frames carry.
pub(crate) fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A directory of event files, read as they grow.
pub(crate) struct EventDir {
    dir: PathBuf,
    loss: String,
    files: BTreeMap<PathBuf, FileState>,
    /// Scalar tags seen, and how many events were read.
    tags: BTreeSet<String>,
    events: u64,
}

/// Where reading a file stopped.
#[derive(Default)]
struct FileState {
    /// The offset of the first record not yet read.
    offset: u64,
    /// Looking for the next valid header after a corrupt one (warned once).
    resync: bool,
    /// Could not be opened (warned once).
    unreadable: bool,
}

impl EventDir {
    pub(crate) fn new(dir: PathBuf, loss: String) -> EventDir {
        EventDir { dir, loss, files: BTreeMap::new(), tags: BTreeSet::new(), events: 0 }
    }

    /// Reads what was appended to every event file since the last poll.
    pub(crate) fn poll(&mut self, out: &mut Polled) {
        let mut found = Vec::new();
        scan(&self.dir, 0, &mut found);
        found.sort();
        for path in found {
            let state = self.files.entry(path.clone()).or_default();
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    if !state.unreadable {
                        state.unreadable = true;
                        out.warnings.push(format!("cannot read the event file {}: {e}", path.display()));
                    }
                    continue;
                }
            };
            let Ok(end) = file.metadata().map(|m| m.len()) else { continue };
            if end < state.offset {
                out.warnings.push(format!(
                    "the event file {} shrank below offset {}: read again from its start",
                    path.display(),
                    state.offset
                ));
                *state = FileState::default();
            }
            let loss = &self.loss;
            let (tags, events) = (&mut self.tags, &mut self.events);
            let mut on_event = |data: &[u8], at: u64, warnings: &mut Vec<String>| match pb::Event::decode(data) {
                Ok(ev) => {
                    *events += 1;
                    if let Some(r) = record(&ev, loss, tags) {
                        out.records.push(r);
                    }
                }
                Err(e) => warnings.push(format!("the record at offset {at} is not an event ({e}); skipped")),
            };
            let mut warnings = Vec::new();
            if let Err(e) = read_records(&mut file, state, end, &mut on_event, &mut warnings) {
                warnings.push(format!("reading it failed: {e}"));
            }
            out.warnings.extend(warnings.into_iter().map(|w| format!("{}: {w}", path.display())));
        }
    }

    /// After the last poll: a file that ends inside a record is said to.
    pub(crate) fn end(&mut self, out: &mut Polled) {
        for (path, state) in &self.files {
            let Ok(len) = std::fs::metadata(path).map(|m| m.len()) else { continue };
            if len > state.offset && !state.resync {
                out.warnings.push(format!(
                    "{} ends with {} bytes of an incomplete record at offset {} (its writer stopped mid-record)",
                    path.display(),
                    len - state.offset,
                    state.offset
                ));
            }
        }
    }

    /// Why no loss point came: the directory, its files, and the scalar tags they have.
    pub(crate) fn missing(&self) -> String {
        let dir = self.dir.display();
        if !self.dir.is_dir() {
            return format!("the TensorBoard directory {dir} does not exist (the program wrote no event files there)");
        }
        if self.files.is_empty() {
            return format!("no event files (events.out.tfevents.*) under {dir}");
        }
        format!(
            "no scalar tagged `{}` in the {} event files under {dir} ({} events); scalar tags found: {}",
            self.loss,
            self.files.len(),
            self.events,
            list(&self.tags, 20)
        )
    }
}

/// The event files under `dir`, runs in subdirectories included (symlinked directories are not
/// followed).
fn scan(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        if ft.is_dir() {
            if depth < MAX_DEPTH {
                scan(&path, depth + 1, found);
            }
        } else if e.file_name().to_string_lossy().contains("tfevents") {
            found.push(path);
        }
    }
}

/// The record of one event: its scalars (`loss` the loss, every other tag a metric) at its step;
/// `None` when it has none. Tags are remembered in `tags`.
fn record(ev: &pb::Event, loss: &str, tags: &mut BTreeSet<String>) -> Option<Record> {
    let Some(pb::event::What::Summary(summary)) = &ev.what else { return None };
    let mut rec = Record { step: u64::try_from(ev.step).ok(), ..Record::default() };
    let mut any = false;
    for v in &summary.value {
        let Some(x) = scalar(v) else { continue };
        any = true;
        if tags.len() < MAX_TAGS {
            tags.insert(v.tag.clone());
        }
        if v.tag == loss {
            rec.loss = Some(x);
        } else if x.is_finite() {
            rec.extra.insert(v.tag.clone(), x);
        }
    }
    any.then_some(rec)
}

/// A summary value's scalar: a `simple_value`, or a rank-0 numeric tensor (of the `scalars`
/// plugin, where a plugin is named).
fn scalar(v: &pb::summary::Value) -> Option<f64> {
    match v.value.as_ref()? {
        pb::summary::value::Value::SimpleValue(x) => Some(f64::from(*x)),
        pb::summary::value::Value::Tensor(t) => {
            let plugin = v.metadata.as_ref().and_then(|m| m.plugin_data.as_ref()).map(|p| p.plugin_name.as_str());
            if plugin.is_some_and(|p| !p.is_empty() && p != "scalars") {
                return None;
            }
            tensor_scalar(t)
        }
    }
}

/// The value of a rank-0 tensor of a numeric type.
fn tensor_scalar(t: &pb::TensorProto) -> Option<f64> {
    if let Some(shape) = &t.tensor_shape
        && (shape.unknown_rank || !shape.dim.is_empty())
    {
        return None;
    }
    let c = &t.tensor_content;
    let bytes = |n: usize| -> Option<&[u8]> { (c.len() == n).then_some(c.as_slice()) };
    match t.dtype {
        1 => t
            .float_val
            .first()
            .map(|x| f64::from(*x))
            .or_else(|| Some(f64::from(f32::from_le_bytes(bytes(4)?.try_into().ok()?)))),
        2 => t.double_val.first().copied().or_else(|| Some(f64::from_le_bytes(bytes(8)?.try_into().ok()?))),
        3 => t
            .int_val
            .first()
            .map(|x| f64::from(*x))
            .or_else(|| Some(f64::from(i32::from_le_bytes(bytes(4)?.try_into().ok()?)))),
        4 => t.int_val.first().map(|x| f64::from(*x)).or_else(|| Some(f64::from(bytes(1)?[0]))),
        5 => t
            .int_val
            .first()
            .map(|x| f64::from(*x))
            .or_else(|| Some(f64::from(i16::from_le_bytes(bytes(2)?.try_into().ok()?)))),
        6 => t.int_val.first().map(|x| f64::from(*x)).or_else(|| Some(f64::from(bytes(1)?[0] as i8))),
        9 => t
            .int64_val
            .first()
            .map(|x| *x as f64)
            .or_else(|| Some(i64::from_le_bytes(bytes(8)?.try_into().ok()?) as f64)),
        14 | 19 => {
            let bits = match t.half_val.first() {
                Some(h) => *h as u16,
                None => u16::from_le_bytes(bytes(2)?.try_into().ok()?),
            };
            Some(if t.dtype == 14 { f64::from(f32::from_bits(u32::from(bits) << 16)) } else { half(bits) })
        }
        _ => None,
    }
}

/// An IEEE half-precision value.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// What is done with each record's data, at its offset (problems go to the warnings).
type OnEvent<'a> = dyn FnMut(&[u8], u64, &mut Vec<String>) + 'a;

/// Reads the complete records of `r` from `state.offset` up to `end`, calling `on_event` with
/// each one's data and offset, and leaves `state.offset` at the first record not yet complete.
fn read_records<R: Read + Seek>(
    r: &mut R,
    state: &mut FileState,
    end: u64,
    on_event: &mut OnEvent<'_>,
    warnings: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut data = Vec::new();
    while state.offset + HEADER <= end {
        let at = state.offset;
        r.seek(SeekFrom::Start(at))?;
        let mut header = [0u8; HEADER as usize];
        r.read_exact(&mut header)?;
        let len = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(header[8..].try_into().unwrap_or_default());
        if masked_crc(&header[..8]) != crc {
            if !state.resync {
                state.resync = true;
                warnings.push(format!(
                    "a corrupt record header (bad length CRC) at offset {at}: skipped to the next valid record"
                ));
            }
            // The next offset where a valid header starts, within what is there now.
            match next_header(r, at + 1, end)? {
                Some(next) => state.offset = next,
                None => {
                    // Keep the last bytes: a header may be starting there.
                    state.offset = end.saturating_sub(HEADER - 1).max(at + 1);
                    return Ok(());
                }
            }
            continue;
        }
        state.resync = false;
        // (`at + HEADER <= end` holds: `end - at` does not wrap, and neither does the sum below.)
        let Some(total) = len.checked_add(HEADER + 4) else { return Ok(()) };
        if total > end - at {
            // Not wholly written yet: wait for it.
            return Ok(());
        }
        if len > MAX_SCALAR_RECORD {
            state.offset = at + total;
            continue;
        }
        data.resize(len as usize + 4, 0);
        r.read_exact(&mut data)?;
        let (body, tail) = data.split_at(len as usize);
        let crc = u32::from_le_bytes(tail.try_into().unwrap_or_default());
        if masked_crc(body) == crc {
            on_event(body, at, warnings);
        } else {
            warnings.push(format!("the record at offset {at} ({len} bytes) fails its CRC: skipped"));
        }
        state.offset = at + total;
    }
    Ok(())
}

/// The first offset in `[from, end - HEADER]` where a header with a valid CRC starts.
fn next_header<R: Read + Seek>(r: &mut R, from: u64, end: u64) -> std::io::Result<Option<u64>> {
    const CHUNK: u64 = 1 << 16;
    let mut start = from;
    let mut buf = Vec::new();
    while start + HEADER <= end {
        let n = (end - start).min(CHUNK + HEADER);
        buf.resize(n as usize, 0);
        r.seek(SeekFrom::Start(start))?;
        r.read_exact(&mut buf)?;
        for i in 0..=(buf.len() - HEADER as usize) {
            let crc = u32::from_le_bytes(buf[i + 8..i + 12].try_into().unwrap_or_default());
            if masked_crc(&buf[i..i + 8]) == crc {
                return Ok(Some(start + i as u64));
            }
        }
        start += n - (HEADER - 1);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use std::io::Cursor;

    /// A TFRecord frame around `data`.
    fn frame(data: &[u8]) -> Vec<u8> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = len.to_vec();
        out.extend(masked_crc(&len).to_le_bytes());
        out.extend(data);
        out.extend(masked_crc(data).to_le_bytes());
        out
    }

    fn scalar_event(step: i64, tag: &str, v: f32) -> Vec<u8> {
        let value = pb::summary::Value {
            tag: tag.into(),
            metadata: None,
            value: Some(pb::summary::value::Value::SimpleValue(v)),
        };
        pb::Event { wall_time: 1.0, step, what: Some(pb::event::What::Summary(pb::Summary { value: vec![value] })) }
            .encode_to_vec()
    }

    /// The (offset, step) of every event read from `bytes`, in polls that see the first `cuts`
    /// bytes in turn; and the warnings.
    fn read_in_polls(bytes: &[u8], cuts: &[usize]) -> (Vec<(u64, i64)>, Vec<String>) {
        let mut state = FileState::default();
        let mut seen = Vec::new();
        let mut warnings = Vec::new();
        for &cut in cuts.iter().chain([&bytes.len()]) {
            let mut r = Cursor::new(bytes[..cut].to_vec());
            let mut on = |d: &[u8], at: u64, _: &mut Vec<String>| {
                seen.push((at, pb::Event::decode(d).map(|e| e.step).unwrap_or(-1)));
            };
            read_records(&mut r, &mut state, cut as u64, &mut on, &mut warnings).unwrap();
        }
        (seen, warnings)
    }

    #[test]
    fn frames_are_read_as_the_file_grows_and_corrupt_ones_are_skipped() {
        let mut bytes = frame(
            &pb::Event { what: Some(pb::event::What::FileVersion("brain.Event:2".into())), ..Default::default() }
                .encode_to_vec(),
        );
        let first = bytes.len();
        for step in 0..5 {
            bytes.extend(frame(&scalar_event(step, "loss", 1.0 / (step + 1) as f32)));
        }
        // Growing: every cut point, including mid-header and mid-data, reads each event once.
        let cuts: Vec<usize> = (0..bytes.len()).step_by(7).collect();
        let (seen, warnings) = read_in_polls(&bytes, &cuts);
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [0, 0, 1, 2, 3, 4]);
        assert!(warnings.is_empty(), "{warnings:?}");
        // A flipped byte in the data of the second scalar: that record alone is skipped, by offset.
        let rec = frame(&scalar_event(0, "loss", 1.0)).len();
        let mut bad = bytes.clone();
        bad[first + rec + 14] ^= 0x40;
        let (seen, warnings) = read_in_polls(&bad, &[]);
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [0, 0, 2, 3, 4]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains(&format!("offset {}", first + rec)) && warnings[0].contains("CRC"),
            "{warnings:?}"
        );
        // A flipped byte in a length: skipped to the next valid header.
        let mut bad = bytes.clone();
        bad[first + rec + 1] ^= 0x01;
        let (seen, warnings) = read_in_polls(&bad, &[first + rec + 20]);
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [0, 0, 2, 3, 4]);
        assert_eq!(warnings.len(), 1, "warned once: {warnings:?}");
        assert!(warnings[0].contains("corrupt record header") && warnings[0].contains(&format!("{}", first + rec)));
    }

    #[test]
    fn a_length_near_the_top_of_u64_waits_and_never_wraps() {
        // A header with a valid CRC whose length would wrap `offset + length` around: it is a
        // record not yet written (forever), never a jump backwards.
        let mut bytes = frame(&scalar_event(0, "loss", 1.0));
        let len = (u64::MAX - 20).to_le_bytes();
        bytes.extend(len);
        bytes.extend(masked_crc(&len).to_le_bytes());
        bytes.extend([0u8; 64]);
        let (seen, warnings) = read_in_polls(&bytes, &[]);
        assert_eq!(seen.len(), 1);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn scalars_come_as_simple_values_and_rank_0_tensors() {
        let tensor = |dtype: i32, f: &dyn Fn(&mut pb::TensorProto)| {
            let mut t =
                pb::TensorProto { dtype, tensor_shape: Some(pb::TensorShapeProto::default()), ..Default::default() };
            f(&mut t);
            pb::summary::Value {
                tag: "t".into(),
                metadata: Some(pb::SummaryMetadata {
                    plugin_data: Some(pb::summary_metadata::PluginData { plugin_name: "scalars".into() }),
                }),
                value: Some(pb::summary::value::Value::Tensor(t)),
            }
        };
        let cases: Vec<(pb::summary::Value, Option<f64>)> = vec![
            (tensor(1, &|t| t.float_val = vec![0.25]), Some(0.25)),
            (tensor(1, &|t| t.tensor_content = 0.5f32.to_le_bytes().to_vec()), Some(0.5)),
            (tensor(2, &|t| t.double_val = vec![0.1]), Some(0.1)),
            (tensor(2, &|t| t.tensor_content = 0.1f64.to_le_bytes().to_vec()), Some(0.1)),
            (tensor(3, &|t| t.int_val = vec![-7]), Some(-7.0)),
            (tensor(9, &|t| t.int64_val = vec![1 << 40]), Some((1u64 << 40) as f64)),
            (tensor(19, &|t| t.half_val = vec![0x3c00]), Some(1.0)),
            (tensor(19, &|t| t.half_val = vec![0xc100]), Some(-2.5)),
            (tensor(14, &|t| t.half_val = vec![0x3f80]), Some(1.0)),
            // Not scalars: a vector, a string tensor, another plugin's tensor.
            (
                tensor(1, &|t| {
                    t.float_val = vec![1.0];
                    t.tensor_shape = Some(pb::TensorShapeProto {
                        dim: vec![pb::tensor_shape_proto::Dim { size: 1 }],
                        unknown_rank: false,
                    });
                }),
                None,
            ),
            (tensor(7, &|_| {}), None),
        ];
        for (v, want) in &cases {
            assert_eq!(scalar(v), *want, "{v:?}");
        }
        let mut text = tensor(1, &|t| t.float_val = vec![1.0]);
        text.metadata = Some(pb::SummaryMetadata {
            plugin_data: Some(pb::summary_metadata::PluginData { plugin_name: "text".into() }),
        });
        assert_eq!(scalar(&text), None);
        assert!(half(0x7c00).is_infinite() && half(0x7e00).is_nan());
    }

    #[test]
    fn random_bytes_and_cut_files_never_panic() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let mut good = Vec::new();
        for step in 0..20 {
            good.extend(frame(&scalar_event(step, "loss", step as f32)));
        }
        for i in 0..2000 {
            let mut bytes = if i % 2 == 0 {
                (0..rng.random_range(0..300)).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
            } else {
                good.clone()
            };
            for _ in 0..rng.random_range(0..4) {
                if !bytes.is_empty() {
                    let j = rng.random_range(0..bytes.len());
                    bytes[j] = rng.random();
                }
            }
            let cuts: Vec<usize> = (0..3).map(|_| rng.random_range(0..=bytes.len())).collect();
            let mut sorted = cuts.clone();
            sorted.sort();
            let (seen, _) = read_in_polls(&bytes, &sorted);
            // Every event read is one a frame held (steps are what was written or undecodable).
            assert!(seen.len() <= 20 || i % 2 == 0, "{seen:?}");
        }
    }
}
