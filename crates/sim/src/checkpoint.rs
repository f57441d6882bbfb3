//! The state of a run, written to a file and read back to the bit: what a promoted trial of
//! successive halving continues from. A small binary format (little-endian words; reals as
//! their bits), so a continued run computes exactly what the uninterrupted one would have.

use crate::normal::{CHUNK, LANES, NormalStream};
use crate::optim::Optimizer;
use crate::rng::StreamRng;
use crate::sde::SdeState;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Writes a state.
#[derive(Default)]
pub struct Encoder(Vec<u8>);

/// Reads a state back; every read fails with a message on truncated or malformed input.
pub struct Decoder<'a>(&'a [u8]);

impl Encoder {
    /// An empty encoding.
    pub fn new() -> Encoder {
        Encoder::default()
    }
    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    /// A word.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A real, as its bits.
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    /// Reals, with their count.
    pub fn f64s(&mut self, v: &[f64]) {
        self.u64(v.len() as u64);
        for x in v {
            self.f64(*x);
        }
    }
    /// Small whole numbers, with their count.
    pub fn u32s(&mut self, v: &[u32]) {
        self.u64(v.len() as u64);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Bytes, with their count.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

impl<'a> Decoder<'a> {
    /// Reads `bytes`.
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder(bytes)
    }
    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("truncated: {} bytes wanted, {} left", n, self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    /// A word.
    pub fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "truncated word".to_string())?))
    }
    /// A real.
    pub fn f64(&mut self) -> Result<f64, String> {
        self.u64().map(f64::from_bits)
    }
    fn len(&mut self, size: usize) -> Result<usize, String> {
        let n = self.u64()? as usize;
        if n.saturating_mul(size) > self.0.len() {
            return Err(format!("a count of {n} runs past the end"));
        }
        Ok(n)
    }
    /// Reals.
    pub fn f64s(&mut self) -> Result<Vec<f64>, String> {
        let n = self.len(8)?;
        (0..n).map(|_| self.f64()).collect()
    }
    /// Small whole numbers.
    pub fn u32s(&mut self) -> Result<Vec<u32>, String> {
        let n = self.len(4)?;
        (0..n).map(|_| Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "truncated".to_string())?))).collect()
    }
    /// Bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.len(1)?;
        self.take(n)
    }
}

/// A state that can be written and read back exactly.
pub trait Checkpoint: Sized {
    /// Writes it.
    fn save(&self, e: &mut Encoder);
    /// Reads it back.
    fn load(d: &mut Decoder<'_>) -> Result<Self, String>;
}

impl Checkpoint for Optimizer {
    fn save(&self, e: &mut Encoder) {
        let (m, v, step, b1, b2) = self.state();
        e.f64s(m);
        e.f64s(v);
        e.u64(step);
        e.f64(b1);
        e.f64(b2);
    }
    fn load(_: &mut Decoder<'_>) -> Result<Self, String> {
        Err("an optimizer is read into one made for its settings: Optimizer::restore".into())
    }
}

impl Optimizer {
    /// Reads the state [`Checkpoint::save`] wrote into this optimizer (made for the same
    /// settings and dimension).
    pub fn restore(&mut self, d: &mut Decoder<'_>) -> Result<(), String> {
        let (m, v, step, b1, b2) = (d.f64s()?, d.f64s()?, d.u64()?, d.f64()?, d.f64()?);
        self.set_state(m, v, step, b1, b2)
    }
}

impl Checkpoint for SdeState {
    fn save(&self, e: &mut Encoder) {
        let (m, v, t) = self.parts();
        e.f64s(m);
        e.f64s(v);
        e.f64(t);
    }
    fn load(d: &mut Decoder<'_>) -> Result<Self, String> {
        Ok(SdeState::from_parts(d.f64s()?, d.f64s()?, d.f64()?))
    }
}

impl Checkpoint for NormalStream {
    fn save(&self, e: &mut Encoder) {
        let (s, spare, spare_len) = self.parts();
        for word in s {
            for lane in word {
                e.u64(*lane);
            }
        }
        for x in spare {
            e.f64(*x);
        }
        e.u64(spare_len as u64);
    }
    fn load(d: &mut Decoder<'_>) -> Result<Self, String> {
        let mut s = [[0u64; LANES]; 4];
        for word in &mut s {
            for lane in word.iter_mut() {
                *lane = d.u64()?;
            }
        }
        let mut spare = [0.0; CHUNK];
        for x in &mut spare {
            *x = d.f64()?;
        }
        let spare_len = d.u64()? as usize;
        if spare_len > CHUNK {
            return Err(format!("{spare_len} spare normals, more than a chunk"));
        }
        Ok(NormalStream::from_parts(s, spare, spare_len))
    }
}

/// xoshiro256++'s four words (read through its serde form: the crate has no accessor).
fn xoshiro_words(x: &Xoshiro256PlusPlus) -> [u64; 4] {
    let value = serde_json::to_value(x).unwrap_or_default();
    let mut out = [0u64; 4];
    if let Some(words) = value.get("s").and_then(|s| s.as_array()) {
        for (o, w) in out.iter_mut().zip(words) {
            *o = w.as_u64().unwrap_or(0);
        }
    }
    out
}

impl Checkpoint for Xoshiro256PlusPlus {
    fn save(&self, e: &mut Encoder) {
        for w in xoshiro_words(self) {
            e.u64(w);
        }
    }
    fn load(d: &mut Decoder<'_>) -> Result<Self, String> {
        let words = [d.u64()?, d.u64()?, d.u64()?, d.u64()?];
        serde_json::from_value(serde_json::json!({ "s": words })).map_err(|e| format!("a random stream: {e}"))
    }
}

impl Checkpoint for StreamRng {
    fn save(&self, e: &mut Encoder) {
        self.normal.save(e);
        self.scalar.save(e);
    }
    fn load(d: &mut Decoder<'_>) -> Result<Self, String> {
        Ok(StreamRng { normal: NormalStream::load(d)?, scalar: Xoshiro256PlusPlus::load(d)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerConfig;
    use kappa_core::{Hyperparams, OptimizerKind};
    use rand::Rng;

    #[test]
    fn streams_and_optimizers_continue_to_the_bit_after_a_round_trip() {
        let mut rng = crate::rng::stream(kappa_core::TrialId(7), 3, 1);
        let mut z = vec![0.0; 5];
        rng.normal.fill(&mut z);
        let _ = rng.scalar.next_u64();
        let mut e = Encoder::new();
        rng.save(&mut e);
        let bytes = e.into_bytes();
        let mut back = StreamRng::load(&mut Decoder::new(&bytes)).unwrap();
        let (mut a, mut b) = (vec![0.0; 37], vec![0.0; 37]);
        rng.normal.fill(&mut a);
        back.normal.fill(&mut b);
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(rng.scalar.next_u64(), back.scalar.next_u64());

        let p = Hyperparams {
            optimizer: OptimizerKind::AdamW,
            batch_size: 1,
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
            seed: 0,
        };
        let cfg = OptimizerConfig::from_params(&p);
        let (mut x, g) = (vec![1.0, -2.0, 0.5], vec![0.3, -0.1, 0.7]);
        let mut opt = Optimizer::new(cfg, 3);
        opt.step(&mut x, &g, cfg.lr);
        let mut e = Encoder::new();
        opt.save(&mut e);
        let bytes = e.into_bytes();
        let mut again = Optimizer::new(cfg, 3);
        again.restore(&mut Decoder::new(&bytes)).unwrap();
        let mut y = x.clone();
        opt.step(&mut x, &g, cfg.lr);
        again.step(&mut y, &g, cfg.lr);
        assert_eq!(x, y);
        assert!(Optimizer::new(cfg, 2).restore(&mut Decoder::new(&bytes)).is_err(), "another dimension is refused");
        assert!(StreamRng::load(&mut Decoder::new(&bytes[..10])).is_err());
    }
}
