//! The discrete optimizers of THEORY.md §2, one implementation each.
//!
//! Simulation and (later) training both call [`Optimizer::step`] on a parameter slice and a
//! gradient slice; the optimizer keeps its own moment buffers. Decoupled weight decay is applied
//! as `x ← x − η θ x` (PyTorch AdamW's `lr * weight_decay`), ε sits outside the square root.

use kappa_core::{Hyperparams, OptimizerKind};

/// Optimizer settings, lowered from [`Hyperparams`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// Which update rule.
    pub kind: OptimizerKind,
    /// Step size η.
    pub lr: f64,
    /// First-moment decay (Adam family).
    pub beta1: f64,
    /// Second-moment decay (Adam and RMSprop families).
    pub beta2: f64,
    /// ε outside the square root.
    pub eps: f64,
    /// Decoupled weight decay θ; only the `W` variants read it.
    pub weight_decay: f64,
    /// Divide the moments by `1 − β^k`.
    pub bias_correction: bool,
}

impl OptimizerConfig {
    /// Settings for a trial's hyperparameters, with bias correction on.
    pub fn from_params(p: &Hyperparams) -> OptimizerConfig {
        OptimizerConfig {
            kind: p.optimizer,
            lr: p.lr,
            beta1: p.beta1,
            beta2: p.beta2,
            eps: p.eps,
            weight_decay: p.weight_decay,
            bias_correction: true,
        }
    }
}

/// One optimizer instance: its settings and its state for one parameter vector.
#[derive(Clone, Debug)]
pub struct Optimizer {
    cfg: OptimizerConfig,
    m: Vec<f64>,
    v: Vec<f64>,
    step: u64,
    // β^k for the bias corrections, kept incrementally.
    beta1_pow: f64,
    beta2_pow: f64,
}

impl Optimizer {
    /// A fresh optimizer for a parameter vector of length `dim`.
    pub fn new(cfg: OptimizerConfig, dim: usize) -> Optimizer {
        let m = if cfg.kind.uses_beta1() { vec![0.0; dim] } else { Vec::new() };
        let v = if cfg.kind.uses_beta2() { vec![0.0; dim] } else { Vec::new() };
        Optimizer { cfg, m, v, step: 0, beta1_pow: 1.0, beta2_pow: 1.0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Its state: moments, steps, and the bias corrections' β^k (see [`crate::checkpoint`]).
    pub(crate) fn state(&self) -> (&[f64], &[f64], u64, f64, f64) {
        (&self.m, &self.v, self.step, self.beta1_pow, self.beta2_pow)
    }

    /// Sets its state (moments of this optimizer's dimension).
    pub(crate) fn set_state(&mut self, m: Vec<f64>, v: Vec<f64>, step: u64, b1: f64, b2: f64) -> Result<(), String> {
        if m.len() != self.m.len() || v.len() != self.v.len() {
            return Err(format!(
                "optimizer moments of length {} and {}, this optimizer has {} and {}",
                m.len(),
                v.len(),
                self.m.len(),
                self.v.len()
            ));
        }
        (self.m, self.v, self.step, self.beta1_pow, self.beta2_pow) = (m, v, step, b1, b2);
        Ok(())
    }

    /// Applies one update to `x` given the stochastic gradient `g` (same length).
    #[inline(always)]
    pub fn step(&mut self, x: &mut [f64], g: &[f64]) {
        debug_assert_eq!(x.len(), g.len());
        self.step += 1;
        let c = self.cfg;
        let lr = c.lr;
        match c.kind {
            OptimizerKind::Sgd => {
                for (xi, gi) in x.iter_mut().zip(g) {
                    *xi -= lr * gi;
                }
            }
            OptimizerKind::SignSgd => {
                for (xi, gi) in x.iter_mut().zip(g) {
                    *xi -= lr * sign(*gi);
                }
            }
            OptimizerKind::Rmsprop | OptimizerKind::RmspropW => {
                let decay = if c.kind == OptimizerKind::RmspropW { lr * c.weight_decay } else { 0.0 };
                self.beta2_pow *= c.beta2;
                let corr2 = if c.bias_correction { 1.0 / (1.0 - self.beta2_pow) } else { 1.0 };
                let b = c.beta2;
                for ((xi, gi), vi) in x.iter_mut().zip(g).zip(self.v.iter_mut()) {
                    *vi = b * *vi + (1.0 - b) * gi * gi;
                    let denom = (*vi * corr2).sqrt() + c.eps;
                    *xi -= lr * gi / denom + decay * *xi;
                }
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                let decay = if c.kind == OptimizerKind::AdamW { lr * c.weight_decay } else { 0.0 };
                self.beta1_pow *= c.beta1;
                self.beta2_pow *= c.beta2;
                let (corr1, corr2) = if c.bias_correction {
                    (1.0 / (1.0 - self.beta1_pow), 1.0 / (1.0 - self.beta2_pow))
                } else {
                    (1.0, 1.0)
                };
                let (b1, b2) = (c.beta1, c.beta2);
                for (((xi, gi), mi), vi) in x.iter_mut().zip(g).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
                    *mi = b1 * *mi + (1.0 - b1) * gi;
                    *vi = b2 * *vi + (1.0 - b2) * gi * gi;
                    let denom = (*vi * corr2).sqrt() + c.eps;
                    *xi -= lr * (*mi * corr1) / denom + decay * *xi;
                }
            }
        }
    }
}

/// sign(g) with sign(0) = 0.
#[inline]
fn sign(g: f64) -> f64 {
    if g > 0.0 {
        1.0
    } else if g < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: OptimizerKind) -> OptimizerConfig {
        OptimizerConfig { kind, lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.5, bias_correction: true }
    }

    #[test]
    fn sgd_and_signsgd_updates() {
        let mut x = [1.0, -2.0, 0.5];
        Optimizer::new(cfg(OptimizerKind::Sgd), 3).step(&mut x, &[1.0, -1.0, 0.0]);
        assert_eq!(x, [0.9, -1.9, 0.5]);
        let mut x = [1.0, -2.0, 0.5];
        Optimizer::new(cfg(OptimizerKind::SignSgd), 3).step(&mut x, &[3.0, -0.01, 0.0]);
        assert_eq!(x, [0.9, -1.9, 0.5]);
    }

    #[test]
    fn first_adam_step_is_lr_times_sign() {
        // With bias correction, m̂ = g and v̂ = g², so the first step is lr·g/(|g|+ε).
        let mut x = [1.0, 1.0];
        Optimizer::new(cfg(OptimizerKind::Adam), 2).step(&mut x, &[2.0, -0.5]);
        assert!((x[0] - 0.9).abs() < 1e-7 && (x[1] - 1.1).abs() < 1e-7, "{x:?}");
        // AdamW adds the decoupled decay lr·θ·x.
        let mut x = [1.0];
        Optimizer::new(cfg(OptimizerKind::AdamW), 1).step(&mut x, &[2.0]);
        assert!((x[0] - (1.0 - 0.1 - 0.05)).abs() < 1e-7, "{x:?}");
        // RMSprop's first step is the same as Adam's.
        let mut x = [1.0];
        Optimizer::new(cfg(OptimizerKind::Rmsprop), 1).step(&mut x, &[2.0]);
        assert!((x[0] - 0.9).abs() < 1e-7, "{x:?}");
    }
}
