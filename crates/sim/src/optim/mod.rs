//! The discrete optimizers of THEORY.md §2 and §8, one file per update rule.
//!
//! Simulation and training both call [`Optimizer::step`] on a parameter slice, a gradient slice
//! and that step's learning rate (a schedule sets it per step); the optimizer keeps its own
//! state. Decoupled weight decay is applied as `x ← x − η θ x` with the old `x` (PyTorch AdamW's
//! `lr * weight_decay`), ε sits outside the square root, `sign(0) = 0`. What is not the update
//! rule (which hyperparameters each reads, its SDE, its rule) is kappa-core's optimizer table.

mod adam;
mod lion;
mod momentum;
mod nesterov;
mod rmsprop;
mod sgd;
mod signsgd;
mod signum;

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

/// An optimizer's state for one parameter vector: what its rule reads and writes.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// First moment (Adam, Signum, Lion) or momentum buffer (heavy ball, Nesterov).
    pub(crate) m: Vec<f64>,
    /// Second moment (RMSprop, Adam).
    pub(crate) v: Vec<f64>,
    /// β₁^k and β₂^k for the bias corrections, kept incrementally.
    pub(crate) beta1_pow: f64,
    pub(crate) beta2_pow: f64,
}

/// One optimizer instance: its settings and its state for one parameter vector.
#[derive(Clone, Debug)]
pub struct Optimizer {
    cfg: OptimizerConfig,
    state: State,
    step: u64,
}

impl Optimizer {
    /// A fresh optimizer for a parameter vector of length `dim`.
    pub fn new(cfg: OptimizerConfig, dim: usize) -> Optimizer {
        let m = if cfg.kind.uses_beta1() { vec![0.0; dim] } else { Vec::new() };
        let v = if cfg.kind.uses_eps() { vec![0.0; dim] } else { Vec::new() };
        Optimizer { cfg, state: State { m, v, beta1_pow: 1.0, beta2_pow: 1.0 }, step: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Its state: moments, steps, and the bias corrections' β^k (see [`crate::checkpoint`]).
    pub(crate) fn state(&self) -> (&[f64], &[f64], u64, f64, f64) {
        let s = &self.state;
        (&s.m, &s.v, self.step, s.beta1_pow, s.beta2_pow)
    }

    /// Sets its state (moments of this optimizer's dimension).
    pub(crate) fn set_state(&mut self, m: Vec<f64>, v: Vec<f64>, step: u64, b1: f64, b2: f64) -> Result<(), String> {
        let s = &mut self.state;
        if m.len() != s.m.len() || v.len() != s.v.len() {
            return Err(format!(
                "optimizer moments of length {} and {}, this optimizer has {} and {}",
                m.len(),
                v.len(),
                s.m.len(),
                s.v.len()
            ));
        }
        (s.m, s.v, self.step, s.beta1_pow, s.beta2_pow) = (m, v, step, b1, b2);
        Ok(())
    }

    /// Applies one update with learning rate `lr` (this step's η) to `x` given the stochastic
    /// gradient `g` (same length).
    #[inline(always)]
    pub fn step(&mut self, x: &mut [f64], g: &[f64], lr: f64) {
        debug_assert_eq!(x.len(), g.len());
        self.step += 1;
        let (c, s) = (&self.cfg, &mut self.state);
        match c.kind {
            OptimizerKind::Sgd => sgd::step(x, g, lr),
            OptimizerKind::SignSgd => signsgd::step(x, g, lr),
            OptimizerKind::Rmsprop | OptimizerKind::RmspropW => rmsprop::step(c, s, x, g, lr),
            OptimizerKind::Adam | OptimizerKind::AdamW => adam::step(c, s, x, g, lr),
            OptimizerKind::Momentum => momentum::step(c, s, x, g, lr),
            OptimizerKind::Nesterov => nesterov::step(c, s, x, g, lr),
            OptimizerKind::Signum => signum::step(c, s, x, g, lr),
            OptimizerKind::Lion => lion::step(c, s, x, g, lr),
        }
    }
}

/// The decoupled decay per step, ηθ, for optimizers that read θ (0 for the others).
#[inline(always)]
pub(crate) fn decay(c: &OptimizerConfig, lr: f64) -> f64 {
    if c.kind.uses_weight_decay() { lr * c.weight_decay } else { 0.0 }
}

/// sign(g) with sign(0) = 0.
#[inline]
pub(crate) fn sign(g: f64) -> f64 {
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
        Optimizer::new(cfg(OptimizerKind::Sgd), 3).step(&mut x, &[1.0, -1.0, 0.0], 0.1);
        assert_eq!(x, [0.9, -1.9, 0.5]);
        let mut x = [1.0, -2.0, 0.5];
        Optimizer::new(cfg(OptimizerKind::SignSgd), 3).step(&mut x, &[3.0, -0.01, 0.0], 0.1);
        assert_eq!(x, [0.9, -1.9, 0.5]);
    }

    #[test]
    fn first_adam_step_is_lr_times_sign() {
        // With bias correction, m̂ = g and v̂ = g², so the first step is lr·g/(|g|+ε).
        let mut x = [1.0, 1.0];
        Optimizer::new(cfg(OptimizerKind::Adam), 2).step(&mut x, &[2.0, -0.5], 0.1);
        assert!((x[0] - 0.9).abs() < 1e-7 && (x[1] - 1.1).abs() < 1e-7, "{x:?}");
        // AdamW adds the decoupled decay lr·θ·x.
        let mut x = [1.0];
        Optimizer::new(cfg(OptimizerKind::AdamW), 1).step(&mut x, &[2.0], 0.1);
        assert!((x[0] - (1.0 - 0.1 - 0.05)).abs() < 1e-7, "{x:?}");
        // RMSprop's first step is the same as Adam's.
        let mut x = [1.0];
        Optimizer::new(cfg(OptimizerKind::Rmsprop), 1).step(&mut x, &[2.0], 0.1);
        assert!((x[0] - 0.9).abs() < 1e-7, "{x:?}");
    }

    #[test]
    fn momentum_and_nesterov_follow_pytorch() {
        // b₁ = g₁, x₁ = x₀ − η b₁ − ηθx₀; b₂ = μ b₁ + g₂, x₂ = x₁ − η b₂ − ηθx₁ (θ = 0.5).
        let mut c = cfg(OptimizerKind::Momentum);
        c.beta1 = 0.5;
        let mut o = Optimizer::new(c, 1);
        let mut x = [1.0];
        o.step(&mut x, &[2.0], 0.1);
        assert!((x[0] - (1.0 - 0.2 - 0.05)).abs() < 1e-15, "{x:?}");
        o.step(&mut x, &[1.0], 0.1);
        let x1 = 0.75;
        assert!((x[0] - (x1 - 0.1 * (0.5 * 2.0 + 1.0) - 0.05 * x1)).abs() < 1e-15, "{x:?}");
        // Nesterov: x₁ = x₀ − η (g₁ + μ b₁) − ηθx₀ with b₁ = g₁.
        let mut c = cfg(OptimizerKind::Nesterov);
        c.beta1 = 0.5;
        let mut x = [1.0];
        Optimizer::new(c, 1).step(&mut x, &[2.0], 0.1);
        assert!((x[0] - (1.0 - 0.1 * 3.0 - 0.05)).abs() < 1e-15, "{x:?}");
    }

    #[test]
    fn signum_and_lion_at_beta1_zero_are_signsgd_bit_for_bit() {
        let g: Vec<f64> = (0..64).map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.37).collect();
        let mut reference = vec![0.25; 64];
        let mut sign = Optimizer::new(cfg(OptimizerKind::SignSgd), 64);
        for kind in [OptimizerKind::Signum, OptimizerKind::Lion] {
            let mut c = cfg(kind);
            (c.beta1, c.weight_decay) = (0.0, 0.0);
            let mut o = Optimizer::new(c, 64);
            let mut x = vec![0.25; 64];
            let mut y = reference.clone();
            for step in 0..5 {
                let gs: Vec<f64> = g.iter().map(|v| v * (step as f64 - 2.0)).collect();
                o.step(&mut x, &gs, 0.01);
                sign.step(&mut y, &gs, 0.01);
            }
            assert_eq!(x, y, "{kind}");
            reference = vec![0.25; 64];
            sign = Optimizer::new(cfg(OptimizerKind::SignSgd), 64);
        }
    }

    #[test]
    fn signum_and_lion_take_the_sign_of_their_averages() {
        // Signum: m₁ = (1−β₁)g = 0.1·2, so the step is −η·1 − ηθx.
        let mut x = [1.0];
        let mut o = Optimizer::new(cfg(OptimizerKind::Signum), 1);
        o.step(&mut x, &[2.0], 0.1);
        assert!((x[0] - (1.0 - 0.1 - 0.05)).abs() < 1e-15, "{x:?}");
        // m = 0.2; a gradient of −1 gives m = 0.18 − 0.1 = 0.08 > 0: still a step down.
        o.step(&mut x, &[-1.0], 0.1);
        assert!((x[0] - (0.85 - 0.1 - 0.05 * 0.85)).abs() < 1e-15, "{x:?}");
        // Lion: c = β₁m + (1−β₁)g uses the old m; m then moves by β₂.
        let mut x = [1.0];
        let mut o = Optimizer::new(cfg(OptimizerKind::Lion), 1);
        o.step(&mut x, &[2.0], 0.1);
        assert!((x[0] - (1.0 - 0.1 - 0.05)).abs() < 1e-15, "{x:?}");
        // m = 0.01·2 = 0.02; with g = −1, c = 0.9·0.02 − 0.1 = −0.082 < 0: a step up.
        o.step(&mut x, &[-1.0], 0.1);
        assert!((x[0] - (0.85 + 0.1 - 0.05 * 0.85)).abs() < 1e-15, "{x:?}");
    }
}
