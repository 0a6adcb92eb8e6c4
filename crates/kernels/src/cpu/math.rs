//! Elementwise ops over slices: the transcendentals (the scalar spec from
//! [`crate::numerics`] and AVX2 lanes performing the identical operation
//! sequence), and the ReLU, its derivative mask and the sum that networks
//! apply between kernels (compare-and-select and one rounded add: AVX2
//! lanes give the spec's bits by construction). Tails shorter than 8 use
//! the scalar spec.

use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, Result};
use crate::numerics::relu;
use crate::ops::math::MathOps;
use rayon::prelude::*;

pub use crate::ops::math::Unary;

pub(crate) fn unary_scalar(f: Unary, x: &[f32], out: &mut [f32]) {
    let g = f.scalar();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = g(v);
    }
}

const CHUNK: usize = 4096;

pub(crate) fn unary_avx2(f: Unary, x: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, x)| {
        // SAFETY: the Avx2 backend is only constructed after avx2+fma were detected.
        unsafe { avx2::unary(f, x, o) }
    });
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::Unary;
    use crate::numerics::consts;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn c(bits: u32) -> __m256 {
        _mm256_castsi256_ps(_mm256_set1_epi32(bits as i32))
    }
    #[inline(always)]
    unsafe fn sel(mask: __m256, yes: __m256, no: __m256) -> __m256 {
        _mm256_blendv_ps(no, yes, mask)
    }
    #[inline(always)]
    unsafe fn neg(x: __m256) -> __m256 {
        _mm256_xor_ps(x, c(0x8000_0000))
    }

    /// Lane version of [`crate::numerics::exp`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp8(x: __m256) -> __m256 {
        let hi = c(consts::EXP_HI);
        let lo = c(consts::EXP_LO);
        let xc = sel(_mm256_cmp_ps::<_CMP_GT_OQ>(x, hi), hi, x);
        let xc = sel(_mm256_cmp_ps::<_CMP_LT_OQ>(xc, lo), lo, xc);
        let notnan = _mm256_cmp_ps::<_CMP_EQ_OQ>(x, x);
        let xc = _mm256_and_ps(xc, notnan);
        let kf =
            _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(xc, c(consts::LOG2E)));
        let nk = neg(kf);
        let r = _mm256_fmadd_ps(nk, c(consts::LN2_HI), xc);
        let r = _mm256_fmadd_ps(nk, c(consts::LN2_LO), r);
        let mut p = c(consts::EXP_POLY[0]);
        for &q in &consts::EXP_POLY[1..] {
            p = _mm256_fmadd_ps(p, r, c(q));
        }
        let k = _mm256_cvtps_epi32(kf);
        let k1 = _mm256_srai_epi32::<1>(k);
        let k2 = _mm256_sub_epi32(k, k1);
        let b = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k1, b)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k2, b)));
        let y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
        let y = sel(_mm256_cmp_ps::<_CMP_LT_OQ>(x, lo), _mm256_setzero_ps(), y);
        sel(notnan, y, x)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn log_mantissa8(m: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let f = _mm256_sub_ps(m, one);
        let s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0), f));
        let z = _mm256_mul_ps(s, s);
        let mut p = c(consts::LOG_POLY[0]);
        for &q in &consts::LOG_POLY[1..] {
            p = _mm256_fmadd_ps(p, z, c(q));
        }
        _mm256_add_ps(_mm256_add_ps(s, s), _mm256_mul_ps(_mm256_mul_ps(s, z), p))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn split_exponent8(u: __m256) -> (__m256, __m256) {
        let bits = _mm256_castps_si256(u);
        let e = _mm256_sub_epi32(
            _mm256_and_si256(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0xff)),
            _mm256_set1_epi32(127),
        );
        let m = _mm256_castsi256_ps(_mm256_or_si256(
            _mm256_and_si256(bits, _mm256_set1_epi32(0x007F_FFFF)),
            _mm256_set1_epi32(0x3F80_0000),
        ));
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(m, c(consts::SQRT2));
        let m = sel(big, _mm256_mul_ps(m, _mm256_set1_ps(0.5)), m);
        let e = _mm256_sub_epi32(e, _mm256_castps_si256(big));
        (_mm256_cvtepi32_ps(e), m)
    }

    /// Lane version of [`crate::numerics::log1p`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn log1p8(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let u = _mm256_add_ps(one, x);
        let (e, m) = split_exponent8(u);
        let cr = _mm256_div_ps(_mm256_sub_ps(x, _mm256_sub_ps(u, one)), u);
        let y = _mm256_fmadd_ps(
            e,
            c(consts::LN2_HI),
            _mm256_fmadd_ps(e, c(consts::LN2_LO), _mm256_add_ps(log_mantissa8(m), cr)),
        );
        let inf = _mm256_set1_ps(f32::INFINITY);
        let m1 = _mm256_set1_ps(-1.0);
        let y = sel(_mm256_cmp_ps::<_CMP_EQ_OQ>(u, inf), inf, y);
        let y = sel(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, m1), _mm256_set1_ps(f32::NEG_INFINITY), y);
        let y = sel(_mm256_cmp_ps::<_CMP_LT_OQ>(x, m1), _mm256_set1_ps(f32::NAN), y);
        sel(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, x), y, x)
    }

    /// Lane version of [`crate::numerics::ln`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn ln8(x: __m256) -> __m256 {
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, c(consts::MIN_NORMAL));
        let xs = sel(tiny, _mm256_mul_ps(x, _mm256_set1_ps(16_777_216.0)), x);
        let (e, m) = split_exponent8(xs);
        let e = sel(tiny, _mm256_sub_ps(e, _mm256_set1_ps(24.0)), e);
        let y = _mm256_fmadd_ps(e, c(consts::LN2_HI), _mm256_fmadd_ps(e, c(consts::LN2_LO), log_mantissa8(m)));
        let zero = _mm256_setzero_ps();
        let inf = _mm256_set1_ps(f32::INFINITY);
        let y = sel(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, inf), inf, y);
        let y = sel(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, zero), _mm256_set1_ps(f32::NEG_INFINITY), y);
        let y = sel(_mm256_cmp_ps::<_CMP_LT_OQ>(x, zero), _mm256_set1_ps(f32::NAN), y);
        sel(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, x), y, x)
    }

    /// Lane version of [`crate::numerics::softplus`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softplus8(x: __m256) -> __m256 {
        let ax = _mm256_and_ps(x, c(0x7FFF_FFFF));
        let pos = _mm256_and_ps(x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps()));
        _mm256_add_ps(pos, log1p8(exp8(neg(ax))))
    }

    /// Lane version of [`crate::numerics::sigmoid`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sigmoid8(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp8(neg(_mm256_and_ps(x, c(0x7FFF_FFFF))));
        let d = _mm256_add_ps(one, e);
        let nonneg = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_setzero_ps());
        sel(nonneg, _mm256_div_ps(one, d), _mm256_div_ps(e, d))
    }

    /// `x = relu(x)`: lanes where `x > 0` keep x, the others become +0.
    #[target_feature(enable = "avx2")]
    pub unsafe fn relu(x: &mut [f32]) {
        let body = x.len() / 8 * 8;
        let zero = _mm256_setzero_ps();
        for i in (0..body).step_by(8) {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            _mm256_storeu_ps(x.as_mut_ptr().add(i), _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_GT_OQ>(v, zero)));
        }
        super::relu_scalar(&mut x[body..]);
    }

    /// `dx = dy where y > 0, else +0`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let body = dx.len() / 8 * 8;
        let zero = _mm256_setzero_ps();
        for i in (0..body).step_by(8) {
            let on = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(y.as_ptr().add(i)), zero);
            _mm256_storeu_ps(dx.as_mut_ptr().add(i), _mm256_and_ps(_mm256_loadu_ps(dy.as_ptr().add(i)), on));
        }
        super::relu_backward_scalar(&y[body..], &dy[body..], &mut dx[body..]);
    }

    /// `out = a − b`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn sub(a: &[f32], b: &[f32], out: &mut [f32]) {
        let body = out.len() / 8 * 8;
        for i in (0..body).step_by(8) {
            let d = _mm256_sub_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), d);
        }
        for i in body..out.len() {
            out[i] = a[i] - b[i];
        }
    }

    /// `acc = acc + x`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn add(acc: &mut [f32], x: &[f32]) {
        let body = acc.len() / 8 * 8;
        for i in (0..body).step_by(8) {
            let s = _mm256_add_ps(_mm256_loadu_ps(acc.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i)));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), s);
        }
        super::add_scalar(&mut acc[body..], &x[body..]);
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn unary(f: Unary, x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len());
        let body = n / 8 * 8;
        let mut i = 0;
        while i < body {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            let y = match f {
                Unary::Exp => exp8(v),
                Unary::Log1p => log1p8(v),
                Unary::Ln => ln8(v),
                Unary::Softplus => softplus8(v),
                Unary::Sigmoid => sigmoid8(v),
            };
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            i += 8;
        }
        let g = f.scalar();
        for j in body..n {
            out[j] = g(x[j]);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) mod avx2 {
    pub unsafe fn unary(f: super::Unary, x: &[f32], out: &mut [f32]) {
        super::unary_scalar(f, x, out)
    }
    pub unsafe fn relu(x: &mut [f32]) {
        super::relu_scalar(x)
    }
    pub unsafe fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        super::relu_backward_scalar(y, dy, dx)
    }
    pub unsafe fn add(acc: &mut [f32], x: &[f32]) {
        super::add_scalar(acc, x)
    }
    pub unsafe fn sub(a: &[f32], b: &[f32], out: &mut [f32]) {
        for i in 0..out.len() {
            out[i] = a[i] - b[i];
        }
    }
}

impl CpuBackend {
    /// `x = relu(x)` on this thread, by the backend's kind.
    pub(crate) fn relu_rows(&self, x: &mut [f32]) {
        match self.kind {
            CpuKind::Scalar => relu_scalar(x),
            // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
            CpuKind::Avx2 => unsafe { avx2::relu(x) },
        }
    }
}

/// The spec: `x = relu(x)`.
pub(crate) fn relu_scalar(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = relu(*v);
    }
}

/// The spec: `dx = dy if y > 0 else +0.0`.
pub(crate) fn relu_backward_scalar(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((o, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        *o = if yv > 0.0 { g } else { 0.0 };
    }
}

/// The spec: `acc = acc + x`.
pub(crate) fn add_scalar(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = *a + v;
    }
}

impl CpuBackend {
    /// Elementwise transcendental (exp, log1p, ln, softplus, sigmoid).
    pub fn unary(&self, f: Unary, x: &[f32], out: &mut [f32]) -> Result<()> {
        check_len("unary", "out", out.len(), x.len())?;
        self.unary_unchecked(f, x, out);
        Ok(())
    }

    pub(crate) fn unary_unchecked(&self, f: Unary, x: &[f32], out: &mut [f32]) {
        match self.kind {
            CpuKind::Scalar => unary_scalar(f, x, out),
            CpuKind::Avx2 => unary_avx2(f, x, out),
        }
    }
}

impl MathOps for CpuBackend {
    fn unary(&self, f: Unary, x: &Vec<f32>, out: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("unary");
        pages::grow(out, x.len())?;
        self.unary_unchecked(f, x, out);
        Ok(())
    }
    fn relu(&self, x: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("relu");
        x.par_chunks_mut(CHUNK).for_each(|c| self.relu_rows(c));
        Ok(())
    }
    fn relu_backward(&self, y: &Vec<f32>, dy: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("relu_backward");
        check_len("relu_backward", "dy", dy.len(), y.len())?;
        pages::grow(dx, y.len())?;
        match self.kind {
            CpuKind::Scalar => relu_backward_scalar(y, dy, dx),
            CpuKind::Avx2 => dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(
                // SAFETY: the Avx2 backend exists only where avx2+fma were detected; equal chunk lengths.
                |(o, (y, g))| unsafe { avx2::relu_backward(y, g, o) },
            ),
        }
        Ok(())
    }
    fn add_assign(&self, acc: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("add_assign");
        check_len("add_assign", "x", x.len(), acc.len())?;
        match self.kind {
            CpuKind::Scalar => add_scalar(acc, x),
            // SAFETY: the Avx2 backend exists only where avx2+fma were detected; equal chunk lengths.
            CpuKind::Avx2 => {
                acc.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(a, x)| unsafe { avx2::add(a, x) })
            }
        }
        Ok(())
    }
}
