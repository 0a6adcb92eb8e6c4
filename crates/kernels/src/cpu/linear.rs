//! The local gradient of a goodness loss through ReLU, and the bias gradient.
//!
//! Spec: `dz[i,j] = h[i,j] · c_i` with `c_i = dLdG_i + dLdG_i` (h is zero
//! wherever the ReLU is off, so no mask is needed). `db[j]` is the
//! sequential column sum of `dz` over rows i = 0..M−1 from +0.0.
//!
//! In an FF layer's parameter gradients (`dW = xnᵀ·dz`, `db`), rows whose
//! dL/dG is exactly zero (either sign) are left out: their dz row is zero,
//! so leaving them out changes no value, only, in principle, the sign of a
//! sum that is exactly zero (and an inf · 0 that would have made a NaN).
//! A saturated goodness loss gives many such rows (17–42 % of them in the
//! 4×2000 MNIST run at batch 100), and each saves its share of the dW
//! GEMM. [`gather_active`] gathers the others, in order (the scalar
//! specification multiplies the gathered copy; the AVX2 backend packs the
//! same rows, in the same order, straight from their places by index).

use rayon::prelude::*;

/// The number of rows kept in an FF layer's parameter gradients: those
/// whose dL/dG is not zero.
pub fn active_count(dldg: &[f32]) -> usize {
    dldg.iter().filter(|&&g| g != 0.0).count()
}

/// Gather the kept rows `i` (dL/dG ≠ 0, in order) of `xn` (rows × din, any
/// strides), `h` (rows × dout) and `dldg` into `out` and return them as
/// `(xn' (k × din), h' (k × dout), dldg' (k))`, `k` = [`active_count`].
/// `out` must hold at least `k · (din + dout + 1)` floats.
pub fn gather_active<'o>(
    xn: crate::MatRef,
    h: &[f32],
    dldg: &[f32],
    out: &'o mut [f32],
) -> (&'o [f32], &'o [f32], &'o [f32]) {
    let din = xn.cols;
    let dout = h.len().checked_div(xn.rows).unwrap_or(0);
    let k = active_count(dldg);
    let (xo, rest) = out.split_at_mut(k * din);
    let (ho, rest) = rest.split_at_mut(k * dout);
    let go = &mut rest[..k];
    let kept = dldg.iter().enumerate().filter(|(_, &g)| g != 0.0);
    for (n, (i, &g)) in kept.enumerate() {
        let dst = &mut xo[n * din..(n + 1) * din];
        if xn.cs == 1 {
            dst.copy_from_slice(&xn.data[i * xn.rs..i * xn.rs + din]);
        } else {
            for (c, o) in dst.iter_mut().enumerate() {
                *o = xn.data[i * xn.rs + c * xn.cs];
            }
        }
        ho[n * dout..(n + 1) * dout].copy_from_slice(&h[i * dout..(i + 1) * dout]);
        go[n] = g;
    }
    (xo, ho, go)
}

pub(crate) fn local_grad_scalar(h: &[f32], d: usize, dldg: &[f32], dz: &mut [f32]) {
    for ((hr, zr), &g) in h.chunks(d).zip(dz.chunks_mut(d)).zip(dldg) {
        let c = g + g;
        for (z, &v) in zr.iter_mut().zip(hr) {
            *z = v * c;
        }
    }
}

pub(crate) fn local_grad_avx2(h: &[f32], d: usize, dldg: &[f32], dz: &mut [f32]) {
    let rpt = (16_384 / d.max(1)).max(1);
    dz.par_chunks_mut(rpt * d).zip(h.par_chunks(rpt * d)).zip(dldg.par_chunks(rpt)).for_each(|((zb, hb), gb)| {
        for ((hr, zr), &g) in hb.chunks(d).zip(zb.chunks_mut(d)).zip(gb) {
            // SAFETY: Avx2 backend ⇒ avx2+fma detected.
            unsafe { super::reduce::avx2::scale(hr, g + g, zr) };
        }
    });
}

pub(crate) fn bias_grad_scalar(dz: &[f32], m: usize, n: usize, db: &mut [f32]) {
    for (j, o) in db.iter_mut().enumerate().take(n) {
        let mut acc = 0.0f32;
        for i in 0..m {
            acc = acc + dz[i * n + j];
        }
        *o = acc;
    }
}

pub(crate) fn bias_grad_avx2(dz: &[f32], m: usize, n: usize, db: &mut [f32]) {
    const COLS: usize = 256;
    db.par_chunks_mut(COLS).enumerate().for_each(|(t, out)| {
        let j0 = t * COLS;
        // SAFETY: Avx2 backend ⇒ avx2+fma detected; indices stay below m·n.
        unsafe { avx2::colsum(dz, m, n, j0, out) };
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// out[c] = Σ_i dz[i, j0 + c], sequential in i, 8 columns per register.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn colsum(dz: &[f32], m: usize, n: usize, j0: usize, out: &mut [f32]) {
        let w = out.len();
        let body = w / 8 * 8;
        let mut c = 0;
        while c < body {
            let mut acc = _mm256_setzero_ps();
            for i in 0..m {
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(dz.as_ptr().add(i * n + j0 + c)));
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(c), acc);
            c += 8;
        }
        for c in body..w {
            let mut acc = 0.0f32;
            for i in 0..m {
                acc = acc + dz[i * n + j0 + c];
            }
            out[c] = acc;
        }
    }
}
