//! 2× resampling of CNHW blocks: 2×2 max-pool (stride 2) and 2× nearest
//! upsampling, forward and backward.
//!
//! **Upsampling.** Output (2y + a, 2x + b) copies input (y, x). Backward:
//! each input's gradient is `((g(0,0) + g(0,1)) + g(1,0)) + g(1,1)` over
//! its four outputs, in that order (one implementation, both backends).
//!
//! Odd sides are floored (the last row or column is dropped, as PyTorch's
//! `MaxPool2d(2)` does) and receive zero gradient.
//!
//! **Spec.** Each output takes the window's values in the order (0,0),
//! (0,1), (1,0), (1,1) and keeps the first one that no later value beats by
//! `>`; its position (0–3) is recorded. Backward routes each output's
//! gradient to that position and writes +0.0 elsewhere. A compare-and-select
//! has nothing to round: the AVX2 forward (eight outputs per lane-wise
//! compare, the same `>` in the same order) and the fused pool + ReLU
//! backward give the spec's bits by construction (unit tests check them);
//! everything runs in parallel over image planes.

use super::conv::Cnhw;
use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, Result};
use crate::ops::pool::pool_check;
use rayon::prelude::*;

/// Outputs `from..` of one output row from its two input rows, by the spec.
fn pool_row_scalar(rows: (&[f32], &[f32]), from: usize, (y, idx): (&mut [f32], &mut [u8])) {
    for ox in from..y.len() {
        let cand = [rows.0[2 * ox], rows.0[2 * ox + 1], rows.1[2 * ox], rows.1[2 * ox + 1]];
        let mut best = 0;
        for (t, &v) in cand.iter().enumerate().skip(1) {
            if v > cand[best] {
                best = t;
            }
        }
        y[ox] = cand[best];
        idx[ox] = best as u8;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// The even and odd elements of 16 floats at `p`, each in order.
    #[inline(always)]
    unsafe fn split_even_odd(p: *const f32) -> (__m256, __m256) {
        let (lo, hi) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
        // in-lane shuffles give (lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6); the
        // 64-bit permute (0, 2, 1, 3) puts them in order
        let fix = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
        (fix(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)), fix(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)))
    }

    /// One output row of the pool, 8 outputs at a time, the spec's
    /// compare-and-select in each lane (the same `>` in the same order, so
    /// the same winner, NaN and signed zeros included). Returns how many
    /// outputs it wrote (a multiple of 8); the caller does the rest.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pool_row(rows: (&[f32], &[f32]), y: &mut [f32], idx: &mut [u8]) -> usize {
        let body = y.len() / 8 * 8;
        debug_assert!(rows.0.len() >= 2 * body && rows.1.len() >= 2 * body && idx.len() >= body);
        for ox in (0..body).step_by(8) {
            let (c0, c1) = split_even_odd(rows.0.as_ptr().add(2 * ox));
            let (c2, c3) = split_even_odd(rows.1.as_ptr().add(2 * ox));
            let (mut best, mut at) = (c0, _mm256_setzero_ps());
            for (t, c) in [(1.0f32, c1), (2.0, c2), (3.0, c3)] {
                let beats = _mm256_cmp_ps::<_CMP_GT_OQ>(c, best);
                best = _mm256_blendv_ps(best, c, beats);
                at = _mm256_blendv_ps(at, _mm256_set1_ps(t), beats);
            }
            _mm256_storeu_ps(y.as_mut_ptr().add(ox), best);
            let mut pos = [0i32; 8];
            _mm256_storeu_si256(pos.as_mut_ptr().cast(), _mm256_cvttps_epi32(at));
            for (d, &v) in idx[ox..ox + 8].iter_mut().zip(&pos) {
                *d = v as u8;
            }
        }
        body
    }

    /// One input row of the fused pool + ReLU backward, 8 outputs (16
    /// inputs) at a time: input column 2·ox + t of window row `a / 2` takes
    /// `dy[ox]` where `idx[ox] == a + t` and the pool's output `y[ox] > 0`,
    /// else +0.0 (masks and-ed onto the bits, as the ReLU backward does).
    /// Returns how many outputs it covered (a multiple of 8); the caller
    /// does the rest.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn unpool_relu_row((dy, idx): (&[f32], &[u8]), a: u8, y: &[f32], dx: &mut [f32]) -> usize {
        let body = dy.len() / 8 * 8;
        debug_assert!(idx.len() >= body && y.len() >= body && dx.len() >= 2 * body);
        let (even, odd) = (_mm256_set1_epi32(a as i32), _mm256_set1_epi32(a as i32 + 1));
        let zero = _mm256_setzero_ps();
        for ox in (0..body).step_by(8) {
            let on = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(y.as_ptr().add(ox)), zero);
            let g = _mm256_and_ps(_mm256_loadu_ps(dy.as_ptr().add(ox)), on);
            let at = _mm256_cvtepu8_epi32(_mm_loadl_epi64(idx.as_ptr().add(ox).cast()));
            let ge = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, even)));
            let go = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, odd)));
            // interleave to input order: (e0 o0 e1 o1 | e4 o4 e5 o5), (e2 o2 e3 o3 | e6 o6 e7 o7)
            let (lo, hi) = (_mm256_unpacklo_ps(ge, go), _mm256_unpackhi_ps(ge, go));
            _mm256_storeu_ps(dx.as_mut_ptr().add(2 * ox), _mm256_permute2f128_ps::<0x20>(lo, hi));
            _mm256_storeu_ps(dx.as_mut_ptr().add(2 * ox + 8), _mm256_permute2f128_ps::<0x31>(lo, hi));
        }
        body
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub(super) unsafe fn pool_row(_: (&[f32], &[f32]), _: &mut [f32], _: &mut [u8]) -> usize {
        0
    }
    pub(super) unsafe fn unpool_relu_row(_: (&[f32], &[u8]), _: u8, _: &[f32], _: &mut [f32]) -> usize {
        0
    }
}

impl CpuBackend {
    /// `y` (CNHW, h/2 × w/2) and the argmax positions `idx` (one per output).
    pub fn maxpool2_forward(&self, x: &[f32], g: Cnhw, y: &mut [f32], idx: &mut [u8]) -> Result<()> {
        pool_check("maxpool2_forward", g)?;
        check_len("maxpool2_forward", "x", x.len(), g.len())?;
        let (ho, wo) = (g.h / 2, g.w / 2);
        check_len("maxpool2_forward", "y", y.len(), g.c * g.n * ho * wo)?;
        check_len("maxpool2_forward", "idx", idx.len(), y.len())?;
        if y.is_empty() {
            return Ok(());
        }
        let hw = g.plane();
        y.par_chunks_mut(ho * wo).zip(idx.par_chunks_mut(ho * wo)).enumerate().for_each(|(p, (yp, ip))| {
            self.pool_plane(&x[p * hw..(p + 1) * hw], g, (yp, ip));
        });
        Ok(())
    }

    /// One plane (`g.h` × `g.w`) of [`CpuBackend::maxpool2_forward`].
    fn pool_plane(&self, xp: &[f32], g: Cnhw, (yp, ip): (&mut [f32], &mut [u8])) {
        let (wo, w) = (g.w / 2, g.w);
        for oy in 0..g.h / 2 {
            let rows = (&xp[2 * oy * w..][..w], &xp[(2 * oy + 1) * w..][..w]);
            let out = (&mut yp[oy * wo..(oy + 1) * wo], &mut ip[oy * wo..(oy + 1) * wo]);
            let done = match self.kind {
                // SAFETY: the Avx2 backend exists only where avx2 was detected.
                CpuKind::Avx2 => unsafe { avx2::pool_row(rows, out.0, out.1) },
                CpuKind::Scalar => 0,
            };
            pool_row_scalar(rows, done, out);
        }
    }

    /// ReLU, the optional pool and the optional per-image sum of squares
    /// of a conv block's output, plane by plane while each is in the
    /// cache (see [`crate::ops::PoolOps::relu_pool_sumsq`]): the same
    /// per-plane loops as the three ops, so the same bits.
    pub fn relu_pool_sumsq(
        &self,
        r: &mut [f32],
        g: Cnhw,
        pool: Option<(&mut [f32], &mut [u8])>,
        sumsq: Option<&mut [f32]>,
    ) -> Result<()> {
        check_len("relu_pool_sumsq", "r", r.len(), g.len())?;
        let hw = g.plane();
        let out_plane = if pool.is_some() { (g.h / 2) * (g.w / 2) } else { hw };
        if let Some((y, idx)) = &pool {
            pool_check("relu_pool_sumsq", g)?;
            check_len("relu_pool_sumsq", "y", y.len(), g.c * g.n * out_plane)?;
            check_len("relu_pool_sumsq", "idx", idx.len(), y.len())?;
        }
        if let Some(out) = &sumsq {
            check_len("relu_pool_sumsq", "sums of squares", out.len(), g.n)?;
        }
        if g.is_empty() {
            if let Some(out) = sumsq {
                out.fill(0.0);
            }
            return Ok(());
        }
        let want = sumsq.is_some();
        let mut planes = Vec::new();
        pages::grow(&mut planes, g.c * g.n)?;
        let one = |rp: &mut [f32], pooled: Option<(&mut [f32], &mut [u8])>, ss: &mut f32| {
            self.relu_rows(rp);
            let out: &[f32] = match pooled {
                Some((yp, ip)) => {
                    self.pool_plane(rp, g, (&mut *yp, ip));
                    yp
                }
                None => rp,
            };
            if want {
                *ss = self.plane_sumsq(out);
            }
        };
        let ss = planes[..g.c * g.n].par_iter_mut();
        match pool {
            Some((y, idx)) => r
                .par_chunks_mut(hw)
                .zip(y.par_chunks_mut(out_plane).zip(idx.par_chunks_mut(out_plane)))
                .zip(ss)
                .with_min_len(16)
                .for_each(|((rp, (yp, ip)), s)| one(rp, Some((yp, ip)), s)),
            None => r.par_chunks_mut(hw).zip(ss).with_min_len(16).for_each(|(rp, s)| one(rp, None, s)),
        }
        if let Some(out) = sumsq {
            self.image_sums(&planes[..g.c * g.n], g, out);
        }
        Ok(())
    }

    /// `dx` (CNHW like the pool's input `g`) from `dy` and the positions.
    pub fn maxpool2_backward(&self, dy: &[f32], idx: &[u8], g: Cnhw, dx: &mut [f32]) -> Result<()> {
        pool_check("maxpool2_backward", g)?;
        let (ho, wo) = (g.h / 2, g.w / 2);
        check_len("maxpool2_backward", "dy", dy.len(), g.c * g.n * ho * wo)?;
        check_len("maxpool2_backward", "idx", idx.len(), dy.len())?;
        check_len("maxpool2_backward", "dx", dx.len(), g.len())?;
        if dx.is_empty() {
            return Ok(());
        }
        let (hw, w) = (g.plane(), g.w);
        dx.par_chunks_mut(hw).enumerate().for_each(|(p, xp)| {
            xp.fill(0.0);
            for oy in 0..ho {
                for ox in 0..wo {
                    let o = p * ho * wo + oy * wo + ox;
                    let t = idx[o] as usize;
                    xp[(2 * oy + t / 2) * w + 2 * ox + t % 2] = dy[o];
                }
            }
        });
        Ok(())
    }

    /// The gradient through the pool and the ReLU before it, in one pass:
    /// `dx = relu_backward(r, maxpool2_backward(dy, idx))`, where `r` is the
    /// ReLU's output (the pool's input, CNHW `g`): each input takes its
    /// output's gradient where the pool recorded it and `r > 0` there, else
    /// +0.0. At the recorded position `r` is the pool's output `y`, so `y`
    /// is read (a quarter of `r`'s size). A compare-and-select has nothing
    /// to round, so the bits are the two ops' (checked by a unit test); the
    /// intermediate gradient is never written.
    pub fn maxpool2_relu_backward(&self, dy: &[f32], idx: &[u8], y: &[f32], g: Cnhw, dx: &mut [f32]) -> Result<()> {
        pool_check("maxpool2_relu_backward", g)?;
        let (ho, wo) = (g.h / 2, g.w / 2);
        check_len("maxpool2_relu_backward", "dy", dy.len(), g.c * g.n * ho * wo)?;
        check_len("maxpool2_relu_backward", "idx", idx.len(), dy.len())?;
        check_len("maxpool2_relu_backward", "y", y.len(), dy.len())?;
        check_len("maxpool2_relu_backward", "dx", dx.len(), g.len())?;
        if dx.is_empty() {
            return Ok(());
        }
        let (hw, w, kind) = (g.plane(), g.w, self.kind);
        dx.par_chunks_mut(hw).enumerate().for_each(|(p, xp)| {
            for iy in 0..g.h {
                let xr = &mut xp[iy * w..(iy + 1) * w];
                if iy >= 2 * ho {
                    xr.fill(0.0);
                    continue;
                }
                let o0 = p * ho * wo + (iy / 2) * wo;
                let (gr, ir, yr) = (&dy[o0..o0 + wo], &idx[o0..o0 + wo], &y[o0..o0 + wo]);
                let a = (iy % 2) as u8 * 2;
                let done = match kind {
                    // SAFETY: the Avx2 backend exists only where avx2 was detected.
                    CpuKind::Avx2 => unsafe { avx2::unpool_relu_row((gr, ir), a, yr, xr) },
                    CpuKind::Scalar => 0,
                };
                for ix in 2 * done..w {
                    let ox = ix / 2;
                    let routed = ox < wo && ir[ox] == a + (ix % 2) as u8;
                    xr[ix] = if routed && yr[ox] > 0.0 { gr[ox] } else { 0.0 };
                }
            }
        });
        Ok(())
    }

    /// Nearest 2× upsampling of `x` (CNHW `g`) into `y` (2h × 2w).
    pub fn upsample2_forward(&self, x: &[f32], g: Cnhw, y: &mut [f32]) -> Result<()> {
        check_len("upsample2_forward", "x", x.len(), g.len())?;
        check_len("upsample2_forward", "y", y.len(), 4 * g.len())?;
        if y.is_empty() {
            return Ok(());
        }
        let (hw, w) = (g.plane(), g.w);
        y.par_chunks_mut(4 * hw).enumerate().for_each(|(p, yp)| {
            let xp = &x[p * hw..(p + 1) * hw];
            for oy in 0..2 * g.h {
                for ox in 0..2 * w {
                    yp[oy * 2 * w + ox] = xp[(oy / 2) * w + ox / 2];
                }
            }
        });
        Ok(())
    }

    /// `dx` (CNHW `g`, the upsampling's input) from `dy` (2h × 2w).
    pub fn upsample2_backward(&self, dy: &[f32], g: Cnhw, dx: &mut [f32]) -> Result<()> {
        check_len("upsample2_backward", "dy", dy.len(), 4 * g.len())?;
        check_len("upsample2_backward", "dx", dx.len(), g.len())?;
        if dx.is_empty() {
            return Ok(());
        }
        let (hw, w) = (g.plane(), g.w);
        dx.par_chunks_mut(hw).enumerate().for_each(|(p, xp)| {
            let gp = &dy[p * 4 * hw..(p + 1) * 4 * hw];
            for y in 0..g.h {
                for x in 0..w {
                    let at = |a: usize, b: usize| gp[(2 * y + a) * 2 * w + 2 * x + b];
                    let mut t = at(0, 0);
                    t = t + at(0, 1);
                    t = t + at(1, 0);
                    t = t + at(1, 1);
                    xp[y * w + x] = t;
                }
            }
        });
        Ok(())
    }
}

impl crate::ops::PoolOps for CpuBackend {
    type PoolIdx = Vec<u8>;

    fn maxpool2_forward(&self, x: &Vec<f32>, g: Cnhw, y: &mut Vec<f32>, idx: &mut Vec<u8>) -> Result<()> {
        let _p = crate::profile::scope("maxpool2_forward");
        let n = g.c * g.n * (g.h / 2) * (g.w / 2);
        pages::grow(y, n)?;
        pages::grow(idx, n)?;
        CpuBackend::maxpool2_forward(self, x, g, y, idx)
    }
    fn relu_pool_sumsq(
        &self,
        r: &mut Vec<f32>,
        g: Cnhw,
        pool: Option<(&mut Vec<f32>, &mut Vec<u8>)>,
        sumsq: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let _p = crate::profile::scope("relu_pool_sumsq");
        let pool = match pool {
            Some((y, idx)) => {
                let n = g.c * g.n * (g.h / 2) * (g.w / 2);
                pages::grow(y, n)?;
                pages::grow(idx, n)?;
                Some((&mut y[..], &mut idx[..]))
            }
            None => None,
        };
        let sumsq = match sumsq {
            Some(out) => {
                pages::grow(out, g.n)?;
                Some(&mut out[..])
            }
            None => None,
        };
        CpuBackend::relu_pool_sumsq(self, r, g, pool, sumsq)
    }
    fn maxpool2_backward(&self, dy: &Vec<f32>, idx: &Vec<u8>, g: Cnhw, dx: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("maxpool2_backward");
        pages::grow(dx, g.len())?;
        CpuBackend::maxpool2_backward(self, dy, idx, g, dx)
    }
    fn maxpool2_relu_backward(
        &self,
        dy: &Vec<f32>,
        idx: &Vec<u8>,
        y: &Vec<f32>,
        g: Cnhw,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("maxpool2_relu_backward");
        pages::grow(dx, g.len())?;
        CpuBackend::maxpool2_relu_backward(self, dy, idx, y, g, dx)
    }
    fn upsample2_forward(&self, x: &Vec<f32>, g: Cnhw, y: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("upsample2_forward");
        pages::grow(y, 4 * g.len())?;
        CpuBackend::upsample2_forward(self, x, g, y)
    }
    fn upsample2_backward(&self, dy: &Vec<f32>, g: Cnhw, dx: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("upsample2_backward");
        pages::grow(dx, g.len())?;
        CpuBackend::upsample2_backward(self, dy, g, dx)
    }
}
