//! Elementwise transcendentals over slices: the scalar spec from
//! [`crate::numerics`] and AVX2 lanes performing the identical operation
//! sequence. Tails shorter than 8 use the scalar spec (same bits by
//! definition).

use crate::numerics;
use rayon::prelude::*;

/// Which elementwise function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Exp,
    Log1p,
    Ln,
    Softplus,
    Sigmoid,
}

impl Unary {
    pub fn scalar(self) -> fn(f32) -> f32 {
        match self {
            Unary::Exp => numerics::exp,
            Unary::Log1p => numerics::log1p,
            Unary::Ln => numerics::ln,
            Unary::Softplus => numerics::softplus,
            Unary::Sigmoid => numerics::sigmoid,
        }
    }
}

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
}
