//! The network: a fully connected MLP (no hidden layer: logistic or linear regression) whose
//! parameters live in one flat `Vec<f64>`.
//!
//! Layout of the flat vector, layer by layer from the input side: the weights `W_l` (`n_l × n_{l+1}`,
//! row-major, so a batch is `A_{l+1} = σ(A_l W_l + b_l)` with one sample per row), then the biases
//! `b_l` (`n_{l+1}`). The gradient has the same layout, so the simulator's optimizers step both as
//! plain slices. Weights and biases are ndarray views into those slices, never copies.
//!
//! Losses are means over samples: softmax cross-entropy for classification, `½‖y − ŷ‖²` for
//! regression. All work buffers are allocated once per [`Workspace`]; a batch larger than the
//! workspace is processed in chunks of [`CHUNK`] rows, in a fixed order (so results do not depend
//! on anything but the inputs).

use crate::data::{Data, Targets, argmax};
use kappa_core::task::{Activation, Objective};
use kappa_sim::normal::NormalStream;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, s};

/// Rows processed at once (a larger batch or an evaluation is split into chunks of this size).
pub const CHUNK: usize = 256;

/// The architecture and where each weight matrix and bias vector sits in the flat vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Layer widths: inputs, hidden layers…, outputs.
    sizes: Vec<usize>,
    activation: Activation,
    objective: Objective,
    /// Offset of `W_l` in the flat vector; `b_l` follows it.
    offsets: Vec<usize>,
    dim: usize,
}

/// Buffers for one replicate's forward and backward passes.
#[derive(Clone, Debug)]
pub struct Workspace {
    rows: usize,
    /// Gathered minibatch inputs (`rows × inputs`).
    xb: Vec<f64>,
    /// Gathered targets: labels or values.
    labels: Vec<u32>,
    values: Vec<f64>,
    /// `acts[l]`: the output of layer `l` (`rows × sizes[l+1]`): activations of hidden layers,
    /// the logits / predictions of the last.
    acts: Vec<Vec<f64>>,
    /// `deltas[l]`: ∂loss/∂(pre-activation of layer l's output), same shape as `acts[l]`.
    deltas: Vec<Vec<f64>>,
}

/// The loss (mean over samples) and, for classification, the accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eval {
    /// Mean loss.
    pub loss: f64,
    /// Fraction classified correctly (`None` for regression).
    pub accuracy: Option<f64>,
}

/// Targets of a block of rows.
#[derive(Clone, Copy)]
enum Rows<'a> {
    Classes(&'a [u32]),
    Values(ArrayView2<'a, f64>),
}

impl Network {
    /// A network from `inputs` through `hidden` to `outputs`.
    pub fn new(
        inputs: usize,
        hidden: &[usize],
        outputs: usize,
        activation: Activation,
        objective: Objective,
    ) -> Network {
        let mut sizes = vec![inputs];
        sizes.extend_from_slice(hidden);
        sizes.push(outputs);
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut dim = 0;
        for w in sizes.windows(2) {
            offsets.push(dim);
            dim += w[0] * w[1] + w[1];
        }
        Network { sizes, activation, objective, offsets, dim }
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Layer widths, inputs first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Weight layers.
    fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// A short description, e.g. `64-128-10 relu MLP (9610 parameters)`.
    pub fn describe(&self) -> String {
        let widths = self.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-");
        let kind = match (self.layers(), self.objective) {
            (1, Objective::Classification) => "logistic regression".to_string(),
            (1, Objective::Regression) => "linear regression".to_string(),
            (_, _) => format!("{} MLP", activation_name(self.activation)),
        };
        let loss = match self.objective {
            Objective::Classification => "softmax cross-entropy",
            Objective::Regression => "½‖y − ŷ‖²",
        };
        format!("model: {widths} {kind} ({} parameters), loss {loss} (mean over samples)", self.dim)
    }

    /// Ranges of `W_l` and `b_l` in the flat vector.
    fn ranges(&self, l: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
        let w = self.offsets[l]..self.offsets[l] + n_in * n_out;
        (w.clone(), w.end..w.end + n_out)
    }

    fn weights<'a>(&self, params: &'a [f64], l: usize) -> ArrayView2<'a, f64> {
        let (w, _) = self.ranges(l);
        ArrayView2::from_shape((self.sizes[l], self.sizes[l + 1]), &params[w]).expect("layout")
    }

    /// Initialises `params`: weights of a layer followed by ReLU with He's N(0, 2/fan_in), every
    /// other layer (tanh, and the linear output layer) with Xavier's N(0, 2/(fan_in + fan_out));
    /// biases 0.
    pub fn init(&self, params: &mut [f64], rng: &mut NormalStream) {
        assert_eq!(params.len(), self.dim);
        for l in 0..self.layers() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let relu = l + 1 < self.layers() && self.activation == Activation::Relu;
            let sd = if relu { (2.0 / n_in as f64).sqrt() } else { (2.0 / (n_in + n_out) as f64).sqrt() };
            let (w, b) = self.ranges(l);
            let w = &mut params[w];
            rng.fill(w);
            for v in w {
                *v *= sd;
            }
            params[b].fill(0.0);
        }
    }

    /// Work buffers for batches of up to [`CHUNK`] rows.
    pub fn workspace(&self) -> Workspace {
        let rows = CHUNK;
        let buf = |w: usize| vec![0.0; rows * w];
        Workspace {
            rows,
            xb: buf(self.sizes[0]),
            labels: vec![0; rows],
            values: buf(*self.sizes.last().expect("an output layer")),
            acts: self.sizes[1..].iter().map(|&w| buf(w)).collect(),
            deltas: self.sizes[1..].iter().map(|&w| buf(w)).collect(),
        }
    }

    /// Forward pass of the rows `x` (at most `ws.rows`): fills `ws.acts`.
    #[inline(always)]
    fn forward(&self, params: &[f64], x: ArrayView2<'_, f64>, ws: &mut Workspace) {
        let n = x.nrows();
        debug_assert!(n <= ws.rows);
        let last = self.layers() - 1;
        for l in 0..=last {
            let n_out = self.sizes[l + 1];
            let (before, after) = ws.acts.split_at_mut(l);
            let out = &mut after[0][..n * n_out];
            let (_, b) = self.ranges(l);
            let bias = &params[b];
            for row in out.chunks_exact_mut(n_out) {
                row.copy_from_slice(bias);
            }
            let mut z = ArrayViewMut2::from_shape((n, n_out), out).expect("layout");
            let w = self.weights(params, l);
            if l == 0 {
                general_mat_mul(1.0, &x, &w, 1.0, &mut z);
            } else {
                let a =
                    ArrayView2::from_shape((n, self.sizes[l]), &before[l - 1][..n * self.sizes[l]]).expect("layout");
                general_mat_mul(1.0, &a, &w, 1.0, &mut z);
            }
            if l < last {
                let out = z.as_slice_mut().expect("contiguous");
                match self.activation {
                    // `if` rather than `max` so that a NaN stays a NaN (divergence must show).
                    Activation::Relu => out.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
                    Activation::Tanh => out.iter_mut().for_each(|v| *v = v.tanh()),
                }
            }
        }
    }

    /// Loss summed over the `n` rows in `ws.acts`' last layer, and the number classified
    /// correctly. With `scale`, also writes `scale · ∂loss_i/∂z` into the last delta buffer.
    #[inline(always)]
    fn loss(&self, n: usize, y: Rows<'_>, ws: &mut Workspace, scale: Option<f64>) -> (f64, usize) {
        let k = *self.sizes.last().expect("outputs");
        let last = self.layers() - 1;
        let out = &ws.acts[last][..n * k];
        let delta = &mut ws.deltas[last][..n * k];
        let mut total = 0.0;
        let mut correct = 0;
        match y {
            Rows::Classes(labels) => {
                for ((z, d), &label) in out.chunks_exact(k).zip(delta.chunks_exact_mut(k)).zip(labels) {
                    let label = label as usize;
                    let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                    let mut sum = 0.0;
                    for (di, &zi) in d.iter_mut().zip(z) {
                        *di = (zi - m).exp();
                        sum += *di;
                    }
                    total += m + sum.ln() - z[label];
                    if argmax(z) == label {
                        correct += 1;
                    }
                    if let Some(scale) = scale {
                        let inv = scale / sum;
                        for di in d.iter_mut() {
                            *di *= inv;
                        }
                        d[label] -= scale;
                    }
                }
            }
            Rows::Values(y) => {
                let y = y.as_slice().expect("contiguous targets");
                for ((z, d), t) in out.chunks_exact(k).zip(delta.chunks_exact_mut(k)).zip(y.chunks_exact(k)) {
                    let mut sq = 0.0;
                    for ((di, &zi), &ti) in d.iter_mut().zip(z).zip(t) {
                        let diff = zi - ti;
                        sq += diff * diff;
                        if let Some(scale) = scale {
                            *di = scale * diff;
                        }
                    }
                    total += 0.5 * sq;
                }
            }
        }
        (total, correct)
    }

    /// Backward pass after [`Network::forward`] and [`Network::loss`] with a scale: adds the
    /// gradient of the rows `x` to `grad`.
    #[inline(always)]
    fn backward(&self, params: &[f64], x: ArrayView2<'_, f64>, ws: &mut Workspace, grad: &mut [f64]) {
        let n = x.nrows();
        for l in (0..self.layers()).rev() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let (below, here) = ws.deltas.split_at_mut(l);
            let d = ArrayView2::from_shape((n, n_out), &here[0][..n * n_out]).expect("layout");
            let (w, b) = self.ranges(l);
            let (gw, gb) = grad[w.start..b.end].split_at_mut(w.len());
            let mut gw = ArrayViewMut2::from_shape((n_in, n_out), gw).expect("layout");
            if l == 0 {
                general_mat_mul(1.0, &x.t(), &d, 1.0, &mut gw);
            } else {
                let a = ArrayView2::from_shape((n, n_in), &ws.acts[l - 1][..n * n_in]).expect("layout");
                general_mat_mul(1.0, &a.t(), &d, 1.0, &mut gw);
            }
            for row in here[0][..n * n_out].chunks_exact(n_out) {
                for (g, v) in gb.iter_mut().zip(row) {
                    *g += v;
                }
            }
            if l > 0 {
                // δ_{l−1} = (δ_l W_lᵀ) ⊙ σ'(a_{l−1}).
                let prev = &mut below[l - 1][..n * n_in];
                let mut dp = ArrayViewMut2::from_shape((n, n_in), &mut *prev).expect("layout");
                general_mat_mul(1.0, &d, &self.weights(params, l).t(), 0.0, &mut dp);
                let a = &ws.acts[l - 1][..n * n_in];
                match self.activation {
                    Activation::Relu => {
                        for (p, &ai) in prev.iter_mut().zip(a) {
                            // A select, not a branch: it vectorises.
                            *p = if ai > 0.0 { *p } else { 0.0 };
                        }
                    }
                    Activation::Tanh => {
                        for (p, &ai) in prev.iter_mut().zip(a) {
                            *p *= 1.0 - ai * ai;
                        }
                    }
                }
            }
        }
    }

    /// Loss and accuracy on the whole of `data`.
    #[inline(always)]
    pub fn evaluate(&self, params: &[f64], data: &Data, ws: &mut Workspace) -> Eval {
        let n = data.len();
        let (mut total, mut correct) = (0.0, 0);
        for start in (0..n).step_by(ws.rows) {
            let end = (start + ws.rows).min(n);
            self.forward(params, data.x.slice(s![start..end, ..]), ws);
            let (t, c) = self.loss(end - start, rows(&data.y, start, end), ws, None);
            total += t;
            correct += c;
        }
        let accuracy = matches!(data.y, Targets::Classes { .. }).then(|| correct as f64 / n as f64);
        Eval { loss: total / n as f64, accuracy }
    }

    /// The full-batch gradient of the mean loss over `data`, written into `grad`; returns the
    /// mean loss.
    #[inline(always)]
    pub fn full_gradient(&self, params: &[f64], data: &Data, ws: &mut Workspace, grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        let n = data.len();
        let scale = 1.0 / n as f64;
        let mut total = 0.0;
        for start in (0..n).step_by(ws.rows) {
            let end = (start + ws.rows).min(n);
            let x = data.x.slice(s![start..end, ..]);
            self.forward(params, x, ws);
            total += self.loss(end - start, rows(&data.y, start, end), ws, Some(scale)).0;
            self.backward(params, x, ws, grad);
        }
        total * scale
    }

    /// The gradient of the mean loss over the samples `batch` of `data` (gathered in that
    /// order), written into `grad`; returns the batch's mean loss.
    #[inline(always)]
    pub fn batch_gradient(
        &self,
        params: &[f64],
        data: &Data,
        batch: &[u32],
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> f64 {
        grad.fill(0.0);
        let scale = 1.0 / batch.len() as f64;
        let p = data.inputs();
        let k = *self.sizes.last().expect("outputs");
        let mut total = 0.0;
        for chunk in batch.chunks(ws.rows) {
            let n = chunk.len();
            let mut xb = std::mem::take(&mut ws.xb);
            for (dst, &i) in xb.chunks_exact_mut(p).zip(chunk) {
                dst.copy_from_slice(data.x.row(i as usize).as_slice().expect("standard layout"));
            }
            let x = ArrayView2::from_shape((n, p), &xb[..n * p]).expect("layout");
            self.forward(params, x, ws);
            let mut labels = std::mem::take(&mut ws.labels);
            let mut values = std::mem::take(&mut ws.values);
            let y = match &data.y {
                Targets::Classes { labels: all, .. } => {
                    for (dst, &i) in labels.iter_mut().zip(chunk) {
                        *dst = all[i as usize];
                    }
                    Rows::Classes(&labels[..n])
                }
                Targets::Values(all) => {
                    for (dst, &i) in values.chunks_exact_mut(k).zip(chunk) {
                        dst.copy_from_slice(all.row(i as usize).as_slice().expect("standard layout"));
                    }
                    Rows::Values(ArrayView2::from_shape((n, k), &values[..n * k]).expect("layout"))
                }
            };
            total += self.loss(n, y, ws, Some(scale)).0;
            self.backward(params, x, ws, grad);
            ws.labels = labels;
            ws.values = values;
            ws.xb = xb;
        }
        total * scale
    }
}

fn rows(y: &Targets, start: usize, end: usize) -> Rows<'_> {
    match y {
        Targets::Classes { labels, .. } => Rows::Classes(&labels[start..end]),
        Targets::Values(v) => Rows::Values(v.slice(s![start..end, ..])),
    }
}

/// The sweep-file name of an activation.
pub fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Tanh => "tanh",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::teacher_student;

    /// Every coordinate of the full-batch gradient against a central difference of the loss.
    fn check_gradient(hidden: &[usize], activation: Activation, objective: Objective, samples: usize) {
        let data = teacher_student(objective, 5, 3, 4, samples, 0.3, 11).unwrap();
        let net = Network::new(5, hidden, 3, activation, objective);
        let mut params = vec![0.0; net.dim()];
        net.init(&mut params, &mut NormalStream::new(5));
        // Non-zero biases, so their gradients are exercised away from the initial point.
        for (i, p) in params.iter_mut().enumerate() {
            *p += 0.05 * ((i as f64) * 0.7).sin();
        }
        let mut ws = net.workspace();
        let mut grad = vec![0.0; net.dim()];
        let loss = net.full_gradient(&params, &data, &mut ws, &mut grad);
        assert!((loss - net.evaluate(&params, &data, &mut ws).loss).abs() < 1e-14);
        let h = 1e-5;
        let mut worst: f64 = 0.0;
        for i in 0..net.dim() {
            let mut p = params.clone();
            p[i] += h;
            let up = net.evaluate(&p, &data, &mut ws).loss;
            p[i] -= 2.0 * h;
            let down = net.evaluate(&p, &data, &mut ws).loss;
            let numeric = (up - down) / (2.0 * h);
            worst = worst.max((numeric - grad[i]).abs() / (1e-6 + numeric.abs().max(grad[i].abs())));
        }
        assert!(worst < 1e-5, "{hidden:?} {activation:?} {objective:?}: worst relative error {worst:e}");
        // A minibatch of every sample in order is the full batch.
        let all: Vec<u32> = (0..samples as u32).collect();
        let mut g2 = vec![0.0; net.dim()];
        let l2 = net.batch_gradient(&params, &data, &all, &mut ws, &mut g2);
        assert!((l2 - loss).abs() < 1e-12);
        for (a, b) in grad.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for objective in [Objective::Classification, Objective::Regression] {
            for activation in [Activation::Relu, Activation::Tanh] {
                check_gradient(&[], activation, objective, 40);
                check_gradient(&[6], activation, objective, 40);
                check_gradient(&[7, 4], activation, objective, 40);
            }
        }
        // More rows than a chunk: the chunks add up.
        check_gradient(&[4], Activation::Tanh, Objective::Classification, CHUNK + 37);
    }

    #[test]
    fn layout_and_init() {
        let net = Network::new(64, &[128], 10, Activation::Relu, Objective::Classification);
        assert_eq!(net.dim(), 64 * 128 + 128 + 128 * 10 + 10);
        assert!(net.describe().starts_with("model: 64-128-10 relu MLP (9610 parameters)"), "{}", net.describe());
        let mut p = vec![1.0; net.dim()];
        net.init(&mut p, &mut NormalStream::new(1));
        let w1 = &p[..64 * 128];
        let var = w1.iter().map(|v| v * v).sum::<f64>() / w1.len() as f64;
        assert!((var - 2.0 / 64.0).abs() < 0.1 * 2.0 / 64.0, "He variance {var}");
        assert!(p[64 * 128..64 * 128 + 128].iter().all(|&b| b == 0.0));
        let w2 = &p[64 * 128 + 128..64 * 128 + 128 + 1280];
        let var2 = w2.iter().map(|v| v * v).sum::<f64>() / w2.len() as f64;
        assert!((var2 - 2.0 / 138.0).abs() < 0.15 * 2.0 / 138.0, "Xavier variance {var2}");
        let logistic = Network::new(64, &[], 10, Activation::Relu, Objective::Classification);
        assert!(logistic.describe().contains("64-10 logistic regression (650 parameters)"));
    }
}
