//! SGD: `x ← x − η g`.

/// One SGD step.
#[inline(always)]
pub(super) fn step(x: &mut [f64], g: &[f64], lr: f64) {
    for (xi, gi) in x.iter_mut().zip(g) {
        *xi -= lr * gi;
    }
}
