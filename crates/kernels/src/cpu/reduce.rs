//! Row reductions in the L32 order (see [`crate::numerics::l32_tree`]) and
//! the length normalisations built on them.
//!
//! Normalisation spec, per row x of length D:
//! `ss = l32_sumsq(x)`; RMS: `den = sqrt(ss / D) + eps`; L2:
//! `den = sqrt(ss) + eps`; `inv = 1 / den`; `y_i = x_i · inv`.

use crate::numerics::{l32_sum, l32_sumsq};
use rayon::prelude::*;

/// Which length normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    /// x / (√mean(x²) + ε): unit mean-square activity (the default).
    #[default]
    Rms,
    /// x / (‖x‖₂ + ε).
    L2,
    /// No normalisation.
    None,
}

#[inline(always)]
pub(crate) fn norm_inv(kind: Norm, ss: f32, d: usize, eps: f32) -> f32 {
    match kind {
        Norm::Rms => 1.0 / ((ss / d as f32).sqrt() + eps),
        Norm::L2 => 1.0 / (ss.sqrt() + eps),
        Norm::None => 1.0,
    }
}

/// `given`: each row's sum of squares, already known (it must equal the
/// L32 sum of squares of that row; the FF forward's sum-form goodness is).
pub(crate) fn normalize_scalar(x: &[f32], given: Option<&[f32]>, out: &mut [f32], d: usize, kind: Norm, eps: f32) {
    if d == 0 {
        return;
    }
    for (i, (xr, yr)) in x.chunks(d).zip(out.chunks_mut(d)).enumerate() {
        if kind == Norm::None {
            yr.copy_from_slice(xr);
            continue;
        }
        let ss = given.map_or_else(|| l32_sumsq(xr), |g| g[i]);
        let inv = norm_inv(kind, ss, d, eps);
        for (y, &v) in yr.iter_mut().zip(xr) {
            *y = v * inv;
        }
    }
}

pub(crate) fn row_sumsq_scalar(x: &[f32], d: usize, out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(x.chunks(d.max(1))) {
        *o = l32_sumsq(r);
    }
}

pub(crate) fn row_sum_scalar(x: &[f32], d: usize, out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(x.chunks(d.max(1))) {
        *o = l32_sum(r);
    }
}

/// Rows per parallel task so that a task holds at least ~16k elements.
fn rows_per_task(d: usize) -> usize {
    (16_384 / d.max(1)).max(1)
}

pub(crate) fn normalize_avx2(x: &[f32], given: Option<&[f32]>, out: &mut [f32], d: usize, kind: Norm, eps: f32) {
    if d == 0 {
        return;
    }
    let rpt = rows_per_task(d);
    out.par_chunks_mut(rpt * d).zip(x.par_chunks(rpt * d)).enumerate().for_each(|(t, (yb, xb))| {
        for (i, (xr, yr)) in xb.chunks(d).zip(yb.chunks_mut(d)).enumerate() {
            if kind == Norm::None {
                yr.copy_from_slice(xr);
                continue;
            }
            // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
            unsafe {
                let ss = given.map_or_else(|| avx2::sumsq(xr), |g| g[t * rpt + i]);
                let inv = norm_inv(kind, ss, d, eps);
                avx2::scale(xr, inv, yr);
            }
        }
    });
}

pub(crate) fn row_reduce_avx2(x: &[f32], d: usize, out: &mut [f32], squares: bool) {
    let rpt = rows_per_task(d);
    let d1 = d.max(1);
    out.par_chunks_mut(rpt).zip(x.par_chunks(rpt * d1)).for_each(|(ob, xb)| {
        for (o, r) in ob.iter_mut().zip(xb.chunks(d1)) {
            // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
            *o = unsafe {
                if squares {
                    avx2::sumsq(r)
                } else {
                    avx2::sum(r)
                }
            };
        }
    });
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// The L32 tree on four registers holding lanes 0–7, 8–15, 16–23, 24–31.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn tree(r: [__m256; 4]) -> f32 {
        let s0 = _mm256_add_ps(r[0], r[2]); // offset 16
        let s1 = _mm256_add_ps(r[1], r[3]);
        let t = _mm256_add_ps(s0, s1); // offset 8
        let v = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t)); // offset 4
        let v = _mm_add_ps(v, _mm_movehl_ps(v, v)); // offset 2
        let v = _mm_add_ss(v, _mm_shuffle_ps::<0x55>(v, v)); // offset 1
        _mm_cvtss_f32(v)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn sumsq(x: &[f32]) -> f32 {
        let mut r = [_mm256_setzero_ps(); 4];
        let mut it = x.chunks_exact(32);
        for ch in &mut it {
            for q in 0..4 {
                let v = _mm256_loadu_ps(ch.as_ptr().add(8 * q));
                r[q] = _mm256_fmadd_ps(v, v, r[q]);
            }
        }
        let rest = it.remainder();
        if !rest.is_empty() {
            // zero padding is bit-neutral: lanes start at +0 and never become −0
            let mut pad = [0.0f32; 32];
            pad[..rest.len()].copy_from_slice(rest);
            for q in 0..4 {
                let v = _mm256_loadu_ps(pad.as_ptr().add(8 * q));
                r[q] = _mm256_fmadd_ps(v, v, r[q]);
            }
        }
        tree(r)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn sum(x: &[f32]) -> f32 {
        let mut r = [_mm256_setzero_ps(); 4];
        let mut it = x.chunks_exact(32);
        for ch in &mut it {
            for q in 0..4 {
                r[q] = _mm256_add_ps(r[q], _mm256_loadu_ps(ch.as_ptr().add(8 * q)));
            }
        }
        let rest = it.remainder();
        if !rest.is_empty() {
            let mut pad = [0.0f32; 32];
            pad[..rest.len()].copy_from_slice(rest);
            for q in 0..4 {
                r[q] = _mm256_add_ps(r[q], _mm256_loadu_ps(pad.as_ptr().add(8 * q)));
            }
        }
        tree(r)
    }

    /// y = x · s elementwise.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn scale(x: &[f32], s: f32, y: &mut [f32]) {
        let n = x.len().min(y.len());
        let vs = _mm256_set1_ps(s);
        let body = n / 8 * 8;
        let mut i = 0;
        while i < body {
            _mm256_storeu_ps(y.as_mut_ptr().add(i), _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), vs));
            i += 8;
        }
        for j in body..n {
            y[j] = x[j] * s;
        }
    }
}
