//! Running hot loops compiled for the widest vector instructions the CPU has, as the simulator
//! does: the closure is inlined into a copy of [`dispatch`] built for AVX-512 or AVX2 (chosen at
//! run time, `KAPPA_NO_SIMD` turns it off). Rust never fuses multiply-adds on its own, so every
//! variant computes the same bits; the matrix products (matrixmultiply) pick their own kernels.

/// Runs `f`, compiled for the CPU's vector instructions. `f` should be `#[inline(always)]`
/// down to its loops (a function it calls without inlining keeps the baseline instructions).
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if kappa_sim::normal::has_avx512() {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if kappa_sim::normal::has_avx2() {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
