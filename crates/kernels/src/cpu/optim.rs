//! Optimiser updates, elementwise. Host-side scalars (bias corrections,
//! 1 − β, decay factors) are computed once per step by [`AdamStep::scalars`]
//! and handed to every backend, so all backends see the same f32 values.
//!
//! Adam / AdamW spec per element (g = gradient, w = parameter):
//! ```text
//! L2 decay (Adam):       g = fma(wd, w, g)
//! decoupled (AdamW):     w = w · (1 − lr·wd)
//! m = fma(β1, m, (1−β1)·g)
//! v = fma(β2, v, ((1−β2)·g)·g)
//! d = fma(sqrt(v), c2, ε)           c2 = 1 / sqrt(1 − β2^t)
//! w = fma(−s, m / d, w)             s  = lr / (1 − β1^t)
//! ```
//! This is PyTorch's Adam (`denom = sqrt(v) / sqrt(bc2) + ε`, `w −= (lr /
//! bc1) · m / denom`) with the per-step scalars `s` and `c2` computed once
//! on the host in f64, so each element costs one square root and one
//! division instead of a square root and three divisions. (Inside the fused
//! dW pass the divider is no longer what the update waits on: dropping both
//! operations saves 2 % of the pass; the rest of the update's cost is its
//! other instructions and the traffic of W, m and v. Splitting the update
//! so that a tile's square roots and divisions run inside the next tile's
//! fma loop, where the divider is otherwise idle, was tried twice:
//! bit-identical, and 1–4 % slower (benches/results/cpu-2026-11-22.md,
//! "Tried and reverted"), so each tile's update runs in one piece after
//! its fmas.)
//! SGD with momentum (PyTorch semantics):
//! ```text
//! g = fma(wd, w, g);  buf = fma(μ, buf, g);  g = nesterov ? fma(μ, buf, g) : buf
//! w = w − lr · g
//! ```

use super::gemm::{packed_index, prefetch_rows, PackedMat, SharedMut, TileSink, NR};
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, Result};
use crate::ops::optim::{check_step, OptimOps};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

pub use crate::ops::optim::{AdamScalars, AdamStep, OptimStep, SgdStep};

#[inline(always)]
pub(crate) fn adam_one(s: &AdamScalars, w: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
    let mut g = g;
    let mut p = *w;
    if s.wd != 0.0 {
        if s.decoupled {
            p = p * s.decay;
        } else {
            g = s.wd.mul_add(p, g);
        }
    }
    *m = s.b1.mul_add(*m, s.omb1 * g);
    *v = s.b2.mul_add(*v, (s.omb2 * g) * g);
    let d = v.sqrt().mul_add(s.c2, s.eps);
    *w = (-s.step).mul_add(*m / d, p);
}

pub(crate) fn adam_scalar(s: &AdamScalars, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for i in 0..w.len() {
        adam_one(s, &mut w[i], g[i], &mut m[i], &mut v[i]);
    }
}

#[inline(always)]
pub(crate) fn sgd_one(s: &SgdStep, w: &mut f32, g: f32, buf: &mut f32) {
    let mut g = g;
    if s.weight_decay != 0.0 {
        g = s.weight_decay.mul_add(*w, g);
    }
    if s.momentum != 0.0 {
        *buf = s.momentum.mul_add(*buf, g);
        g = if s.nesterov { s.momentum.mul_add(*buf, g) } else { *buf };
    }
    *w = *w - s.lr * g;
}

pub(crate) fn sgd_scalar(s: &SgdStep, w: &mut [f32], g: &[f32], buf: &mut [f32]) {
    for i in 0..w.len() {
        sgd_one(s, &mut w[i], g[i], &mut buf[i]);
    }
}

const CHUNK: usize = 8192;

pub(crate) fn adam_avx2(s: &AdamScalars, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    w.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((w, g), m), v)| {
            // SAFETY: Avx2 backend ⇒ avx2+fma detected; the four chunks have equal length.
            unsafe { avx2::adam(s, w, g, m, v) };
        });
}

pub(crate) fn sgd_avx2(s: &SgdStep, w: &mut [f32], g: &[f32], buf: &mut [f32]) {
    w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(buf.par_chunks_mut(CHUNK)).for_each(|((w, g), b)| {
        // SAFETY: Avx2 backend ⇒ avx2+fma detected; the chunks have equal length.
        unsafe { avx2::sgd(s, w, g, b) };
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{adam_one, sgd_one, AdamScalars, SgdStep};
    use std::arch::x86_64::*;

    /// Returns whether every new weight is finite.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn adam(s: &AdamScalars, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> bool {
        let n = w.len();
        let body = n / 8 * 8;
        let (nstep, b1, b2) = (_mm256_set1_ps(-s.step), _mm256_set1_ps(s.b1), _mm256_set1_ps(s.b2));
        let (omb1, omb2) = (_mm256_set1_ps(s.omb1), _mm256_set1_ps(s.omb2));
        let (c2, eps) = (_mm256_set1_ps(s.c2), _mm256_set1_ps(s.eps));
        let (wd, decay) = (_mm256_set1_ps(s.wd), _mm256_set1_ps(s.decay));
        let (zero, mut check) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < body {
            let mut gv = _mm256_loadu_ps(g.as_ptr().add(i));
            let mut p = _mm256_loadu_ps(w.as_ptr().add(i));
            if s.wd != 0.0 {
                if s.decoupled {
                    p = _mm256_mul_ps(p, decay);
                } else {
                    gv = _mm256_fmadd_ps(wd, p, gv);
                }
            }
            let mv = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m.as_ptr().add(i)), _mm256_mul_ps(omb1, gv));
            let vv =
                _mm256_fmadd_ps(b2, _mm256_loadu_ps(v.as_ptr().add(i)), _mm256_mul_ps(_mm256_mul_ps(omb2, gv), gv));
            let d = _mm256_fmadd_ps(_mm256_sqrt_ps(vv), c2, eps);
            let wn = _mm256_fmadd_ps(nstep, _mm256_div_ps(mv, d), p);
            _mm256_storeu_ps(w.as_mut_ptr().add(i), wn);
            _mm256_storeu_ps(m.as_mut_ptr().add(i), mv);
            _mm256_storeu_ps(v.as_mut_ptr().add(i), vv);
            check = finite_check(check, wn, zero);
            i += 8;
        }
        for j in body..n {
            adam_one(s, &mut w[j], g[j], &mut m[j], &mut v[j]);
        }
        all_finite(check) && w[body..].iter().all(|x| x.is_finite())
    }

    /// `check` OR `0 · x`: stays a (signed) zero while every x is finite
    /// and becomes a NaN once one is inf or NaN.
    #[inline(always)]
    unsafe fn finite_check(check: __m256, x: __m256, zero: __m256) -> __m256 {
        _mm256_or_ps(check, _mm256_mul_ps(x, zero))
    }

    #[inline(always)]
    unsafe fn all_finite(check: __m256) -> bool {
        _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(check, check)) == 0
    }

    /// Whether Adam would step some weight of a tile differently had a
    /// zero of `tile` the other sign (see [`super::PackedTileUpdate`]):
    /// a zero gradient whose decayed copy (L2 decay: w = 0) meets
    /// `β1·m` = −0 exactly.
    ///
    /// # Safety
    /// avx2 present; `tile.len()` is a multiple of 8 and `w`, `m` hold at
    /// least as many values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn adam_zero_sign_matters(s: &AdamScalars, w: &[f32], tile: &[f32], m: &[f32]) -> bool {
        debug_assert!(tile.len().is_multiple_of(8) && w.len() >= tile.len() && m.len() >= tile.len());
        if s.b1 == 0.0 {
            // β1·m is a zero for every finite m: any zero gradient may matter.
            return tile.contains(&0.0);
        }
        let (zero, b1) = (_mm256_setzero_ps(), _mm256_set1_ps(s.b1));
        let l2 = s.wd != 0.0 && !s.decoupled;
        for i in (0..tile.len()).step_by(8) {
            let zeros = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_loadu_ps(tile.as_ptr().add(i)), zero));
            if zeros == 0 {
                continue;
            }
            let mv = _mm256_loadu_ps(m.as_ptr().add(i));
            // β1·m = −0 exactly: m = ±0 with the sign opposite to β1's.
            let mut lanes = zeros
                & _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(mv, zero))
                & _mm256_movemask_ps(_mm256_xor_ps(mv, b1));
            if l2 {
                // wd·w + g keeps the zero's sign only where w = ±0.
                lanes &= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_loadu_ps(w.as_ptr().add(i)), zero));
            }
            if lanes != 0 {
                return true;
            }
        }
        false
    }

    /// Whether SGD would step some weight of a tile differently had a zero
    /// of `tile` the other sign (see [`super::PackedTileUpdate`]). Per
    /// lane, with the gradient g a zero:
    /// - `g1 = wd·w + g` keeps g's sign unless `wd·w` is not −0 exactly
    ///   (with wd = 0 it is g itself);
    /// - with momentum, `buf' = μ·buf + g1` keeps it where `μ·buf` is −0
    ///   (buf' is stored: that lane matters), and Nesterov's `μ·buf' + g1`
    ///   where `μ·buf'` is −0; otherwise the step is `buf'`, which does not;
    /// - `w − lr·g2` sees the sign of a zero g2 only where w is −0.
    ///
    /// # Safety
    /// avx2 present; `tile.len()` is a multiple of 8 and `w` holds at least
    /// as many values, and so does `buf` when there is momentum.
    #[target_feature(enable = "avx2")]
    pub unsafe fn sgd_zero_sign_matters(s: &SgdStep, w: &[f32], tile: &[f32], buf: &[f32]) -> bool {
        debug_assert!(tile.len().is_multiple_of(8) && w.len() >= tile.len());
        let zero = _mm256_setzero_ps();
        let (wd, mu) = (_mm256_set1_ps(s.weight_decay), _mm256_set1_ps(s.momentum));
        // Lanes where x·c is exactly −0 for a nonzero c: x = ±0 of the sign
        // opposite to c's (c = 0 is handled by the caller's cases).
        let neg_zero_product = |x: __m256, c: __m256| {
            _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, zero)) & _mm256_movemask_ps(_mm256_xor_ps(x, c))
        };
        for i in (0..tile.len()).step_by(8) {
            let zeros = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_loadu_ps(tile.as_ptr().add(i)), zero));
            if zeros == 0 {
                continue;
            }
            let wv = _mm256_loadu_ps(w.as_ptr().add(i));
            // g1 is a zero whose sign is g's.
            let g1 = if s.weight_decay == 0.0 { zeros } else { zeros & neg_zero_product(wv, wd) };
            if g1 == 0 {
                continue;
            }
            // g2, the step, is a zero whose sign is g's.
            let g2 = if s.momentum == 0.0 {
                g1
            } else {
                let bv = _mm256_loadu_ps(buf.as_ptr().add(i));
                if g1 & neg_zero_product(bv, mu) != 0 {
                    return true; // buf' itself
                }
                if s.nesterov {
                    // buf' = round(μ·buf) in these lanes (g1 adds a zero).
                    g1 & neg_zero_product(_mm256_mul_ps(mu, bv), mu)
                } else {
                    0
                }
            };
            // w = −0: −0 − (+0) = −0 but −0 − (−0) = +0.
            let neg_zero_w = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(wv, zero)) & _mm256_movemask_ps(wv);
            if g2 & neg_zero_w != 0 {
                return true;
            }
        }
        false
    }

    /// Returns whether every new weight is finite.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sgd(s: &SgdStep, w: &mut [f32], g: &[f32], buf: &mut [f32]) -> bool {
        let n = w.len();
        let body = n / 8 * 8;
        let (lr, mu, wd) = (_mm256_set1_ps(s.lr), _mm256_set1_ps(s.momentum), _mm256_set1_ps(s.weight_decay));
        let (zero, mut check) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < body {
            let p = _mm256_loadu_ps(w.as_ptr().add(i));
            let mut gv = _mm256_loadu_ps(g.as_ptr().add(i));
            if s.weight_decay != 0.0 {
                gv = _mm256_fmadd_ps(wd, p, gv);
            }
            if s.momentum != 0.0 {
                let b = _mm256_fmadd_ps(mu, _mm256_loadu_ps(buf.as_ptr().add(i)), gv);
                _mm256_storeu_ps(buf.as_mut_ptr().add(i), b);
                gv = if s.nesterov { _mm256_fmadd_ps(mu, b, gv) } else { b };
            }
            let wn = _mm256_sub_ps(p, _mm256_mul_ps(lr, gv));
            _mm256_storeu_ps(w.as_mut_ptr().add(i), wn);
            check = finite_check(check, wn, zero);
            i += 8;
        }
        for j in body..n {
            sgd_one(s, &mut w[j], g[j], &mut buf[j]);
        }
        all_finite(check) && w[body..].iter().all(|x| x.is_finite())
    }
}

/// The per-step scalars of either kind (see [`AdamStep::scalars`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Prepared {
    Adam(AdamScalars),
    Sgd(SgdStep),
}

impl OptimStep {
    pub(crate) fn prepare(&self) -> Prepared {
        match self {
            OptimStep::Adam(a) => Prepared::Adam(a.scalars()),
            OptimStep::Sgd(s) => Prepared::Sgd(*s),
        }
    }
}

/// The spec: one element. `a`, `b` are (m, v) for Adam and (buf, unused) for SGD.
#[inline(always)]
pub(crate) fn update_one(p: &Prepared, w: &mut f32, g: f32, a: &mut f32, b: &mut f32) {
    match p {
        Prepared::Adam(s) => adam_one(s, w, g, a, b),
        Prepared::Sgd(s) => sgd_one(s, w, g, a),
    }
}

/// The optimiser step on a packed W, fed tile by tile by the dW GEMM (AVX2
/// backend). W and its state `a`, `b` (Adam: m, v; SGD: the momentum
/// buffer, `b` unused) share W's packed layout, so the 6 × 16 tile at
/// (i0, j0) is one run of contiguous floats in each, and the GEMM's tiles
/// partition W. Every weight written is checked finite on the way
/// ([`PackedTileUpdate::all_finite`]), so that the next forward knows
/// whether it may leave out A's zero steps (see `gemm_avx2_src`).
///
/// When the GEMM left out A's zero steps, a gradient that is a zero may
/// have the other sign than the spec's. Adam's update does not see that
/// sign (`v` squares it, and `m = fma(β1, m, (1−β1)·g)` adds it to
/// `β1·m`, which decides the sum's sign unless it is exactly −0, that is
/// unless m is −0; with L2 decay the zero is first added to `wd·w`, which
/// decides unless w is ±0); [`TileSink::zero_sign_matters`] finds the
/// lanes where it would. SGD's update sees it in a few more ways (see
/// `sgd_zero_sign_matters`), each again only through an exact −0 in its
/// state or in W.
pub(crate) struct PackedTileUpdate {
    p: Prepared,
    w: SharedMut,
    a: SharedMut,
    b: SharedMut,
    /// W's rows (the height of each 16-column panel).
    rows: usize,
    /// Set when a weight written is not finite.
    not_finite: AtomicBool,
}

impl PackedTileUpdate {
    /// `a` is as long as `w.data()`, and so is `b` for Adam (checked by
    /// the caller). Only for the Avx2 backend: `take` runs AVX2 code.
    pub(crate) fn new(p: Prepared, w: &mut PackedMat, a: &mut [f32], b: &mut [f32]) -> Self {
        let rows = w.rows();
        PackedTileUpdate {
            p,
            w: SharedMut(w.data_mut().as_mut_ptr()),
            a: SharedMut(a.as_mut_ptr()),
            b: SharedMut(b.as_mut_ptr()),
            rows,
            not_finite: AtomicBool::new(false),
        }
    }

    /// Whether every weight the update wrote so far is finite.
    pub(crate) fn all_finite(&self) -> bool {
        !self.not_finite.load(Relaxed)
    }

    /// Where the tile at (i0, j0) starts in W's packed layout.
    fn offset(&self, i0: usize, j0: usize) -> usize {
        packed_index(self.rows, i0, j0)
    }
}

impl TileSink for PackedTileUpdate {
    fn prefetch(&self, i0: usize, j0: usize, rows: usize) {
        let off = self.offset(i0, j0);
        let adam = matches!(self.p, Prepared::Adam(_));
        for base in [Some(self.w), Some(self.a), adam.then_some(self.b)].into_iter().flatten() {
            prefetch_rows(base.get().wrapping_add(off), NR, rows);
        }
    }

    unsafe fn take(&self, i0: usize, j0: usize, rows: usize, _cols: usize, tile: &[f32]) {
        let (off, len) = (self.offset(i0, j0), rows * NR);
        // SAFETY: the Avx2 backend detected avx2+fma. The GEMM's C is W's
        // shape and the tile lies inside it (the caller's contract), so its
        // rows i0..i0+rows of panel j0/16 are `len` contiguous floats of W,
        // a and b starting at `off`, handed to this call alone; `tile` holds
        // rows × 16 values.
        unsafe {
            let w = std::slice::from_raw_parts_mut(self.w.get().add(off), len);
            let a = std::slice::from_raw_parts_mut(self.a.get().add(off), len);
            let finite = match &self.p {
                Prepared::Adam(s) => {
                    avx2::adam(s, w, &tile[..len], a, std::slice::from_raw_parts_mut(self.b.get().add(off), len))
                }
                Prepared::Sgd(s) => avx2::sgd(s, w, &tile[..len], a),
            };
            if !finite {
                self.not_finite.store(true, Relaxed);
            }
        }
    }

    fn zero_sign_matters(&self, i0: usize, j0: usize, rows: usize, tile: &[f32]) -> bool {
        let (off, len) = (self.offset(i0, j0), rows * NR);
        match &self.p {
            // SAFETY: as in `take` (the same tile, read only; avx2 detected).
            Prepared::Adam(s) => unsafe {
                let w = std::slice::from_raw_parts(self.w.get().add(off), len);
                let m = std::slice::from_raw_parts(self.a.get().add(off), len);
                avx2::adam_zero_sign_matters(s, w, &tile[..len], m)
            },
            // SAFETY: as above; `a` is the momentum buffer (as long as W)
            // when there is momentum.
            Prepared::Sgd(s) => unsafe {
                let w = std::slice::from_raw_parts(self.w.get().add(off), len);
                let buf: &[f32] =
                    if s.momentum != 0.0 { std::slice::from_raw_parts(self.a.get().add(off), len) } else { &[] };
                avx2::sgd_zero_sign_matters(s, w, &tile[..len], buf)
            },
        }
    }
}

impl CpuBackend {
    /// One Adam/AdamW step on `w` with gradient `g` and moments `m`, `v`.
    pub fn adam(&self, step: &AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<()> {
        check_len("adam", "grad", g.len(), w.len())?;
        check_len("adam", "m", m.len(), w.len())?;
        check_len("adam", "v", v.len(), w.len())?;
        let s = step.scalars();
        match self.kind {
            CpuKind::Scalar => adam_scalar(&s, w, g, m, v),
            CpuKind::Avx2 => adam_avx2(&s, w, g, m, v),
        }
        Ok(())
    }

    /// One SGD (momentum, Nesterov, L2 decay) step.
    pub fn sgd(&self, step: &SgdStep, w: &mut [f32], g: &[f32], buf: &mut [f32]) -> Result<()> {
        check_len("sgd", "grad", g.len(), w.len())?;
        check_len("sgd", "momentum buffer", buf.len(), w.len())?;
        match self.kind {
            CpuKind::Scalar => sgd_scalar(step, w, g, buf),
            CpuKind::Avx2 => sgd_avx2(step, w, g, buf),
        }
        Ok(())
    }

    /// One step of either kind on host slices (`b` unused by SGD).
    pub(crate) fn optim_slices(
        &self,
        op: &'static str,
        step: &OptimStep,
        w: &mut [f32],
        g: &[f32],
        a: &mut [f32],
        b: &mut [f32],
    ) -> Result<()> {
        check_step(op, step, &*w, g, &*a, &*b)?;
        match step {
            OptimStep::Adam(s) => self.adam(s, w, g, a, b),
            OptimStep::Sgd(s) => self.sgd(s, w, g, a),
        }
    }
}

impl OptimOps for CpuBackend {
    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut Vec<f32>,
        g: &Vec<f32>,
        a: &mut Vec<f32>,
        b: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("optim_step");
        self.optim_slices("optim_step", step, w, g, a, b)
    }
}
