//! Row reductions in the L32 order (see [`crate::numerics::l32_tree`]) and
//! the length normalisations built on them.
//!
//! Normalisation spec, per row x of length D:
//! `ss = l32_sumsq(x)`; RMS: `den = sqrt(ss / D) + eps`; L2:
//! `den = sqrt(ss) + eps`; `inv = 1 / den`; `y_i = x_i · inv`.

use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, shape_err, Result};
use crate::numerics::{l32_sum, l32_sumsq};
use crate::ops::reduce::{rows_of, ReduceOps};
use rayon::prelude::*;

pub use crate::ops::reduce::{norm_inv, Norm};

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

impl CpuBackend {
    /// Row sums of squares in the L32 order; `x` is row-major `out.len() × d`.
    pub fn row_sumsq(&self, x: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
        check_len("row_sumsq", "x", x.len(), out.len() * d)?;
        match self.kind {
            CpuKind::Scalar => row_sumsq_scalar(x, d, out),
            CpuKind::Avx2 => row_reduce_avx2(x, d, out, true),
        }
        Ok(())
    }

    /// Standardise each row of `x` (row-major, rows of `d`):
    /// `y = (x − μ) / √(σ² + ε)` with `μ = L32 sum(x) / d` and
    /// `σ² = L32 sum((x − μ)²) / d` (layer norm without gain or bias). One
    /// implementation for both backends (no transcendental but √).
    pub fn standardize_rows(&self, x: &[f32], d: usize, eps: f32, y: &mut [f32]) -> Result<()> {
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(shape_err("standardize_rows", format!("{} values are not rows of {d}", x.len())));
        }
        check_len("standardize_rows", "y", y.len(), x.len())?;
        use rayon::prelude::*;
        // The L32 sums, in AVX2 lanes on that backend (the same bits).
        type RowSum = fn(&[f32]) -> f32;
        let (sum, sumsq): (RowSum, RowSum) = match self.kind {
            #[cfg(target_arch = "x86_64")]
            CpuKind::Avx2 => (
                // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
                |v| unsafe { avx2::sum(v) },
                // SAFETY: as above.
                |v| unsafe { avx2::sumsq(v) },
            ),
            _ => (crate::numerics::l32_sum, crate::numerics::l32_sumsq),
        };
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(yr, xr)| {
            let mu = sum(xr) / d as f32;
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v - mu;
            }
            let var = sumsq(yr) / d as f32;
            let r = 1.0 / (var + eps).sqrt();
            for o in yr.iter_mut() {
                *o = *o * r;
            }
        });
        Ok(())
    }

    /// Row sums in the L32 order.
    pub fn row_sum(&self, x: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
        check_len("row_sum", "x", x.len(), out.len() * d)?;
        match self.kind {
            CpuKind::Scalar => row_sum_scalar(x, d, out),
            CpuKind::Avx2 => row_reduce_avx2(x, d, out, false),
        }
        Ok(())
    }

    /// Length-normalise each row of width `d` (see [`crate::ops::reduce`] for the spec).
    pub fn normalize_rows(&self, x: &[f32], out: &mut [f32], d: usize, kind: Norm, eps: f32) -> Result<()> {
        self.normalize_impl("normalize_rows", x, None, out, (d, kind, eps))
    }

    /// [`CpuBackend::normalize_rows`] with each row's sum of squares already
    /// known (`sumsq`, one per row): one pass over `x` instead of two. The
    /// result is the same bits when `sumsq` holds the rows' L32 sums of
    /// squares, as [`CpuBackend::row_sumsq`] and the goodness of
    /// [`CpuBackend::linear_forward_packed`] give them.
    pub fn normalize_rows_given(
        &self,
        x: &[f32],
        sumsq: &[f32],
        out: &mut [f32],
        d: usize,
        kind: Norm,
        eps: f32,
    ) -> Result<()> {
        self.normalize_impl("normalize_rows_given", x, Some(sumsq), out, (d, kind, eps))
    }

    fn normalize_impl(
        &self,
        op: &'static str,
        x: &[f32],
        given: Option<&[f32]>,
        out: &mut [f32],
        (d, kind, eps): (usize, Norm, f32),
    ) -> Result<()> {
        check_len(op, "out", out.len(), x.len())?;
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(shape_err(op, format!("{} elements is not a whole number of rows of {d}", x.len())));
        }
        if let Some(ss) = given {
            check_len(op, "sums of squares", ss.len(), x.len() / d)?;
        }
        match self.kind {
            CpuKind::Scalar => normalize_scalar(x, given, out, d, kind, eps),
            CpuKind::Avx2 => normalize_avx2(x, given, out, d, kind, eps),
        }
        Ok(())
    }
}

impl ReduceOps for CpuBackend {
    fn row_sumsq(&self, x: &Vec<f32>, d: usize, out: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("row_sumsq");
        pages::grow(out, rows_of("row_sumsq", x.len(), d)?)?;
        CpuBackend::row_sumsq(self, x, d, out)
    }
    fn row_sum(&self, x: &Vec<f32>, d: usize, out: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("row_sum");
        pages::grow(out, rows_of("row_sum", x.len(), d)?)?;
        CpuBackend::row_sum(self, x, d, out)
    }
    fn normalize_rows(&self, x: &Vec<f32>, out: &mut Vec<f32>, d: usize, kind: Norm, eps: f32) -> Result<()> {
        let _p = crate::profile::scope("normalize_rows");
        pages::grow(out, x.len())?;
        CpuBackend::normalize_rows(self, x, out, d, kind, eps)
    }
    fn normalize_rows_given(
        &self,
        x: &Vec<f32>,
        sumsq: &Vec<f32>,
        out: &mut Vec<f32>,
        d: usize,
        kind: Norm,
        eps: f32,
    ) -> Result<()> {
        let _p = crate::profile::scope("normalize_rows_given");
        pages::grow(out, x.len())?;
        CpuBackend::normalize_rows_given(self, x, sumsq, out, d, kind, eps)
    }
    fn standardize_rows(&self, x: &Vec<f32>, d: usize, eps: f32, y: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("standardize_rows");
        pages::grow(y, x.len())?;
        CpuBackend::standardize_rows(self, x, d, eps, y)
    }
}
