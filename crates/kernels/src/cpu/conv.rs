//! 3×3 convolution (padding 1, stride 1, no bias) on channel-major
//! activations, forward, dW and dX, as im2col + our GEMM.
//!
//! **Layout.** Convolutional activations are *CNHW*: channel-major, each
//! channel one contiguous row of N·H·W values (image b's plane at offset
//! b·H·W). A conv is then a single GEMM over the whole batch,
//! `Y (Cout × N·HW) = W (Cout × Cin·9) · col (Cin·9 × N·HW)`, and batch norm
//! reduces contiguous rows. [`Cnhw`] describes such a block.
//!
//! **Spec.** With `col[(ci,ky,kx), (b,oy,ox)] = x[ci, b, oy+ky−1, ox+kx−1]`
//! (zero outside the image) and columns ordered (b, oy, ox):
//! * forward: `y[co, col] = fma chain over k = (ci,ky,kx) ascending of
//!   W[co,k]·col[k,col]`, from +0.0 (the GEMM spec);
//! * dW: `dW[co,k] = fma chain over all N·HW columns ascending of
//!   dY[co,col]·col[k,col]`, from +0.0 — one chain through the whole batch;
//! * dX: `dcol[k,col] = fma chain over co ascending of W[co,k]·dY[co,col]`,
//!   then `dx[ci,b,iy,ix] = Σ over (ky,kx) ascending, where
//!   (oy,ox) = (iy−ky+1, ix−kx+1) is inside the image, of
//!   dcol[(ci,ky,kx),(b,oy,ox)]`, from +0.0 with plain `+`.
//!
//! **Implementation.** On AVX2 no col matrix is written. Where the image
//! width is a multiple of 16 (or of 8, with planes a multiple of 16), the
//! forward packs nothing either: each image is copied with a zero border
//! and the microkernel reads every tap's row of a 16-pixel run (or of two
//! 8-pixel runs on consecutive image rows) in place (`forward_padded`),
//! images in parallel. Otherwise the GEMM packs its B panels straight from
//! the image (`ImplicitCol`, eight image values a vector), the forward as
//! one product over the whole batch. Where Cin·9 ≥ Cout, the dW runs as
//! `dWᵀ = col · dYᵀ` (the same chains: fma's product is symmetric) with
//! only dYᵀ packed and col's rows read in place from zero-bordered copies
//! of the images, in groups of images (`dw_in_place`); otherwise the GEMM
//! packs colᵀ from the image (8 × 8 transposes) and continues each
//! output's chain across image chunks with [`Epilogue::Accumulate`]; the
//! group or chunk size never changes a bit. Where dY is mostly zeros (a
//! block that ends in a 2 × 2 max pool: one value per window at most), the
//! dW runs each output channel's chains over its nonzero pixels alone, the
//! images copied channel-last so that a pixel's patch is read in place
//! (`sparse_dw`; the same bits wherever the values allow it, the dense dW
//! elsewhere). The dX writes no dcol where
//! the forward reads images in place: tap after tap, each 6 × 16 tile of
//! `W_tᵀ · dY` is added straight into bordered per-image sums at the tap's
//! offset (`dx_fused`), image groups in parallel; elsewhere it runs in
//! small image groups, each group's dcol product and its col2im (a
//! fixed-order sum, a row at a time) on one thread (`dx_grouped`). The
//! scalar spec materialises im2col in chunks of about 16 MB and sums
//! col2im element by element (`col2im_spec`).

use super::gemm::{self, BSource, Epi, Epilogue};
use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, shape_err, Result};
use crate::mat::{MatMut, MatRef};
use crate::ops::conv::ConvBackward;
use rayon::prelude::*;

pub use crate::ops::conv::Cnhw;

#[cfg(target_arch = "x86_64")]
mod sparse_dw;

/// Scratch of the conv ops (grown once, reused).
#[derive(Default, Debug, Clone)]
pub struct ConvScratch {
    col: Vec<f32>,
    dcol: Vec<f32>,
}

/// Floats of col per chunk, about 16 MB.
const COL_BUDGET: usize = 1 << 22;

fn images_per_chunk(g: Cnhw) -> usize {
    (COL_BUDGET / (g.c * 9 * g.plane()).max(1)).clamp(1, g.n.max(1))
}

/// `col` (Cin·9 × nb·HW) for images b0..b0+nb.
pub(crate) fn im2col(x: &[f32], g: Cnhw, b0: usize, nb: usize, col: &mut [f32]) {
    let (h, w, hw) = (g.h, g.w, g.plane());
    let cols = nb * hw;
    col[..g.c * 9 * cols].par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        let (ci, ky, kx) = (r / 9, (r % 9) / 3, r % 3);
        for bi in 0..nb {
            let plane = &x[(ci * g.n + b0 + bi) * hw..][..hw];
            for oy in 0..h {
                let out = &mut row[bi * hw + oy * w..][..w];
                let iy = oy + ky;
                if iy == 0 || iy > h {
                    out.fill(0.0);
                    continue;
                }
                let src = &plane[(iy - 1) * w..][..w];
                match kx {
                    0 => {
                        out[0] = 0.0;
                        out[1..].copy_from_slice(&src[..w - 1]);
                    }
                    1 => out.copy_from_slice(src),
                    _ => {
                        out[..w - 1].copy_from_slice(&src[1..]);
                        out[w - 1] = 0.0;
                    }
                }
            }
        }
    });
}

/// The im2col matrix of images b0..b0+nb (Cin·9 × nb·HW), never written
/// out: the AVX2 GEMM packs its B panels straight from the image
/// ([`ImplicitCol::pack_panel`]), so the forward reads the input once
/// instead of writing and reading back a copy nine times its size. The
/// values are [`im2col`]'s, so the products are the same bits.
#[derive(Clone, Copy)]
pub(crate) struct ImplicitCol<'a> {
    pub x: &'a [f32],
    pub g: Cnhw,
    pub b0: usize,
    pub nb: usize,
}

impl ImplicitCol<'_> {
    pub fn rows(&self) -> usize {
        self.g.c * 9
    }
    pub fn cols(&self) -> usize {
        self.nb * self.g.plane()
    }
    /// `col[k, j]` (zero outside the image).
    pub fn at(&self, k: usize, j: usize) -> f32 {
        let (g, hw) = (self.g, self.g.plane());
        let (ci, ky, kx) = (k / 9, (k % 9) / 3, k % 3);
        let (b, oy, ox) = (self.b0 + j / hw, (j % hw) / g.w, j % g.w);
        // input (oy + ky − 1, ox + kx − 1), shifted by one to stay unsigned
        let (iy, ix) = (oy + ky, ox + kx);
        if iy == 0 || iy > g.h || ix == 0 || ix > g.w {
            return 0.0;
        }
        self.x[(ci * g.n + b) * hw + (iy - 1) * g.w + ix - 1]
    }
    /// The same panel of the transposed matrix (the dW's B, `colᵀ`, whose
    /// rows are pixels and columns taps): `panel[k·16 + c] = col[jq + c,
    /// k0 + k]`, zero past `w`. For each tap, the pixels fall into runs
    /// along image rows, each a shifted slice of one input row.
    pub fn pack_panel_t(&self, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) {
        assert!(w <= 16 && panel.len() >= kc * 16 && k0 + kc <= self.cols() && jq + w <= self.rows());
        #[cfg(target_arch = "x86_64")]
        if super::avx2_available() {
            // SAFETY: avx2 detected; the bounds were checked above.
            unsafe { self.pack_panel_t_avx2(k0, kc, jq, w, panel) };
            return;
        }
        self.pack_panel_t_scalar(k0, kc, jq, w, panel)
    }
    /// [`ImplicitCol::pack_panel_t`], one value at a time.
    pub fn pack_panel_t_scalar(&self, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) {
        const NR: usize = 16;
        let (g, hw) = (self.g, self.g.plane());
        if w < NR {
            for k in 0..kc {
                panel[k * NR + w..(k + 1) * NR].fill(0.0);
            }
        }
        for c in 0..w {
            let kk = jq + c;
            let (ci, ky, kx) = (kk / 9, (kk % 9) / 3, kk % 3);
            let chan = ci * g.n * hw;
            let mut p = k0;
            while p < k0 + kc {
                let (b, r) = (self.b0 + p / hw, p % hw);
                let (oy, ox) = (r / g.w, r % g.w);
                let len = (g.w - ox).min(k0 + kc - p);
                let out = p - k0;
                let iy = oy + ky; // input row + 1
                if iy == 0 || iy > g.h {
                    for t in 0..len {
                        panel[(out + t) * NR + c] = 0.0;
                    }
                } else {
                    let row = &self.x[chan + b * hw + (iy - 1) * g.w..][..g.w];
                    for t in 0..len {
                        let ix = ox + t + kx; // input column + 1
                        panel[(out + t) * NR + c] = if ix == 0 || ix > g.w { 0.0 } else { row[ix - 1] };
                    }
                }
                p += len;
            }
        }
    }
    /// Rows `k0..k0+kc`, columns `jq..jq+w` (w ≤ 16) as one packed panel,
    /// `panel[k·16 + c] = col[k0 + k, jq + c]`, zero past `w`. The panel's
    /// columns fall into runs along image rows; each run of each k row is
    /// a shifted slice of one input row, its out-of-image ends zero.
    pub fn pack_panel(&self, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) {
        assert!(w <= 16 && panel.len() >= kc * 16 && k0 + kc <= self.rows() && jq + w <= self.cols());
        #[cfg(target_arch = "x86_64")]
        if super::avx2_available() {
            // SAFETY: avx2 detected; the bounds were checked above.
            unsafe { self.pack_panel_avx2(k0, kc, jq, w, panel) };
            return;
        }
        self.pack_panel_scalar(k0, kc, jq, w, panel)
    }
    /// [`ImplicitCol::pack_panel`] with slice copies.
    pub fn pack_panel_scalar(&self, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) {
        const NR: usize = 16;
        let (g, hw) = (self.g, self.g.plane());
        // (first panel column, length, image plane offset within a channel, oy, ox)
        let mut runs = [(0usize, 0usize, 0usize, 0usize, 0usize); NR];
        let (mut nruns, mut c) = (0, 0);
        while c < w {
            let j = jq + c;
            let (b, r) = (self.b0 + j / hw, j % hw);
            let (oy, ox) = (r / g.w, r % g.w);
            let len = (g.w - ox).min(w - c);
            runs[nruns] = (c, len, b * hw, oy, ox);
            nruns += 1;
            c += len;
        }
        for k in 0..kc {
            let kk = k0 + k;
            let (ci, ky, kx) = (kk / 9, (kk % 9) / 3, kk % 3);
            let dst = &mut panel[k * NR..(k + 1) * NR];
            dst[w..].fill(0.0);
            let chan = ci * g.n * hw;
            for &(c0, len, plane, oy, ox) in &runs[..nruns] {
                let out = &mut dst[c0..c0 + len];
                let iy = oy + ky; // input row + 1
                if iy == 0 || iy > g.h {
                    out.fill(0.0);
                    continue;
                }
                let row = chan + plane + (iy - 1) * g.w;
                // output t of the run reads input column ox + t + kx − 1:
                // inside the row for t in lo..hi
                let lo = (1usize).saturating_sub(ox + kx).min(len);
                let hi = (g.w + 1).saturating_sub(ox + kx).min(len).max(lo);
                out[..lo].fill(0.0);
                out[hi..].fill(0.0);
                if hi > lo {
                    let src = row + ox + lo + kx - 1;
                    out[lo..hi].copy_from_slice(&self.x[src..src + hi - lo]);
                }
            }
        }
    }
}

/// A tap `(ci, ky, kx)` of the im2col rows, stepped in row order.
#[derive(Clone, Copy)]
struct Tap {
    ci: usize,
    ky: usize,
    kx: usize,
}

impl Tap {
    fn of(k: usize) -> Self {
        Tap { ci: k / 9, ky: (k % 9) / 3, kx: k % 3 }
    }
    /// The next row's tap (no divisions in the packers' loops).
    #[inline]
    fn next(self) -> Self {
        match (self.ky, self.kx) {
            (2, 2) => Tap { ci: self.ci + 1, ky: 0, kx: 0 },
            (ky, 2) => Tap { ky: ky + 1, kx: 0, ..self },
            (_, kx) => Tap { kx: kx + 1, ..self },
        }
    }
}

/// The AVX2 packers: eight values of an image row at a time, each a
/// plain load masked to the lanes inside the image (and the run), which
/// read as +0.0 as im2col writes them; the dW's panels through 8 × 8
/// transposes. The masks depend only on the column shift kx, so each
/// panel (or pixel group) computes its three once.
#[cfg(target_arch = "x86_64")]
impl ImplicitCol<'_> {
    /// The lanes `l < len` whose input column `s + l − 1` (s = output
    /// column + kx) lies inside the row (columns 1..=W), as a mask.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes(&self, s: usize, len: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let lo = 1usize.saturating_sub(s).min(8) as i32;
        let hi = (self.g.w + 1).saturating_sub(s).min(len).min(8) as i32;
        let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_and_si256(
            _mm256_cmpgt_epi32(iota, _mm256_set1_epi32(lo - 1)),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), iota),
        )
    }

    /// Eight values of `x` from index `at − 1` (lane l: `x[at + l − 1]`),
    /// the lanes outside `mask` +0.0. A plain load and an AND where all
    /// eight lie inside `x` (a masked load costs far more), else a masked
    /// load.
    ///
    /// # Safety
    /// avx2 present; every lane that `mask` keeps indexes inside `x`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(&self, at: usize, mask: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        if at >= 1 && at + 7 <= self.x.len() {
            // SAFETY: x[at − 1..at + 7] exists.
            let v = _mm256_loadu_ps(self.x.as_ptr().add(at - 1));
            _mm256_and_ps(v, _mm256_castsi256_ps(mask))
        } else {
            // The lanes the mask keeps lie inside x; the others touch no
            // memory.
            _mm256_maskload_ps(self.x.as_ptr().wrapping_add(at).wrapping_sub(1), mask)
        }
    }

    /// The index in `x` of input row `iy − 1` (iy = output row + ky) of
    /// channel `ci`, image `b`, or `None` in the padding.
    #[inline]
    fn input_row(&self, ci: usize, b: usize, iy: usize) -> Option<usize> {
        let g = self.g;
        (iy != 0 && iy <= g.h).then(|| (ci * g.n + b) * g.plane() + (iy - 1) * g.w)
    }

    /// [`ImplicitCol::pack_panel`] in vector lanes.
    ///
    /// # Safety
    /// avx2 present; `w ≤ 16`, `panel.len() ≥ 16·kc`, rows `k0..k0+kc`
    /// and columns `jq..jq+w` inside the matrix.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_panel_avx2(&self, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) {
        use std::arch::x86_64::*;
        const NR: usize = 16;
        let (g, hw) = (self.g, self.g.plane());
        let z = _mm256_setzero_ps();
        // The panel's eight-lane chunks: (first panel column, image, oy,
        // ox, masks by kx). A run of columns along one image row gives
        // one or two chunks.
        let mut chunks = [(0usize, 0usize, 0usize, 0usize, [_mm256_setzero_si256(); 3]); NR];
        let (mut nch, mut c) = (0, 0);
        while c < w {
            let j = jq + c;
            let (b, r) = (self.b0 + j / hw, j % hw);
            let (oy, ox) = (r / g.w, r % g.w);
            let len = (g.w - ox).min(w - c);
            for t in (0..len).step_by(8) {
                let masks = [0, 1, 2].map(|kx| self.lanes(ox + t + kx, len - t));
                chunks[nch] = (c + t, b, oy, ox + t, masks);
                nch += 1;
            }
            c += len;
        }
        // Chunks starting at columns 0 and 8 fill the row exactly: store
        // them straight into the panel. Otherwise through a row with spare
        // room (lanes past a run are zeros that the next chunk overwrites).
        let direct = w == NR && chunks[..nch].iter().all(|ch| ch.0 % 8 == 0);
        let mut buf = [0.0f32; NR + 8];
        let out = panel.as_mut_ptr();
        let mut tap = Tap::of(k0);
        for k in 0..kc {
            let Tap { ci, ky, kx } = tap;
            let dst = if direct { out.add(k * NR) } else { buf.as_mut_ptr() };
            if !direct {
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), z);
                _mm256_storeu_ps(buf.as_mut_ptr().add(16), z);
            }
            for &(c0, b, oy, ox, masks) in &chunks[..nch] {
                let v = match self.input_row(ci, b, oy + ky) {
                    Some(row) => self.load8(row + ox + kx, masks[kx]),
                    None => z,
                };
                _mm256_storeu_ps(dst.add(c0), v);
            }
            if !direct {
                _mm256_storeu_ps(out.add(k * NR), _mm256_loadu_ps(buf.as_ptr()));
                _mm256_storeu_ps(out.add(k * NR + 8), _mm256_loadu_ps(buf.as_ptr().add(8)));
            }
            tap = tap.next();
        }
    }

    /// [`ImplicitCol::pack_panel_t`] in vector lanes: for eight pixels of
    /// an image row, eight taps' values are loaded as eight vectors and
    /// transposed into eight panel rows.
    ///
    /// # Safety
    /// As [`ImplicitCol::pack_panel_avx2`], with rows (pixels) and columns
    /// (taps) swapped.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_panel_t_avx2(&self, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) {
        use std::arch::x86_64::*;
        const NR: usize = 16;
        let (g, hw) = (self.g, self.g.plane());
        let mut taps = [Tap { ci: 0, ky: 0, kx: 0 }; NR];
        let mut tap = Tap::of(jq);
        for t in taps.iter_mut().take(w) {
            *t = tap;
            tap = tap.next();
        }
        let out = panel.as_mut_ptr();
        let z = _mm256_setzero_ps();
        let mut p = k0;
        while p < k0 + kc {
            let (b, r) = (self.b0 + p / hw, p % hw);
            let (oy, ox) = (r / g.w, r % g.w);
            let len = (g.w - ox).min(k0 + kc - p);
            let mut t = 0;
            while t < len {
                let rows = (len - t).min(8);
                let masks = [0, 1, 2].map(|kx| self.lanes(ox + t + kx, rows));
                for half in 0..2 {
                    let mut v = [z; 8];
                    for (l, v) in v.iter_mut().enumerate() {
                        let c = half * 8 + l;
                        if c < w {
                            let Tap { ci, ky, kx } = taps[c];
                            if let Some(row) = self.input_row(ci, b, oy + ky) {
                                *v = self.load8(row + ox + t + kx, masks[kx]);
                            }
                        }
                    }
                    let v = gemm::transpose8(v);
                    for (l, v) in v.iter().enumerate().take(rows) {
                        _mm256_storeu_ps(out.add((p - k0 + t + l) * NR + half * 8), *v);
                    }
                }
                t += 8;
            }
            p += len;
        }
    }
}

/// `dx` for images b0..b0+nb from `dcol` (Cin·9 × nb·HW), in the spec order:
/// each `dx` value sums from +0.0 the `dcol` values that read it, over
/// (ky, kx) in row-major order, the out-of-image ones left out.
pub(crate) fn col2im_spec(dcol: &[f32], g: Cnhw, b0: usize, nb: usize, dx: &mut [f32]) {
    let (h, w, hw) = (g.h, g.w, g.plane());
    let cols = nb * hw;
    dx.par_chunks_mut(g.row()).enumerate().for_each(|(ci, dxc)| {
        for bi in 0..nb {
            for iy in 0..h {
                for ix in 0..w {
                    let mut acc = 0.0f32;
                    for ky in 0..3 {
                        // oy = iy − ky + 1 inside [0, h)
                        if iy + 1 < ky || iy + 1 - ky >= h {
                            continue;
                        }
                        let oy = iy + 1 - ky;
                        for kx in 0..3 {
                            if ix + 1 < kx || ix + 1 - kx >= w {
                                continue;
                            }
                            let ox = ix + 1 - kx;
                            acc = acc + dcol[(ci * 9 + ky * 3 + kx) * cols + bi * hw + oy * w + ox];
                        }
                    }
                    dxc[(b0 + bi) * hw + iy * w + ix] = acc;
                }
            }
        }
    });
}

/// [`col2im_spec`] with the same bits, a row at a time: for each image
/// plane (in parallel over channels and images) and each of its rows, the
/// nine shifted row segments of `dcol` are added to the row's sums in the
/// spec's (ky, kx) order, contiguous loads the compiler vectorises. A term
/// the spec leaves out (outside the image) is not added either, so every
/// sum sees the same terms in the same order.
#[cfg(test)]
fn col2im(dcol: &[f32], g: Cnhw, b0: usize, nb: usize, dx: &mut [f32]) {
    let hw = g.plane();
    // planes (ci, b) of dx, CNHW: index ci·N + b; only b in b0..b0+nb
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, plane)| {
        let (ci, b) = (p / g.n, p % g.n);
        if b >= b0 && b < b0 + nb {
            col2im_plane(dcol, g, nb, (ci, b - b0), plane);
        }
    });
}

/// One plane of [`col2im`]: channel `ci` of the chunk's image `bi` (the
/// chunk holding `nb` images), in the spec order. The sums run in a
/// bordered accumulator ((H+2) × (W+2), one per thread): tap (ky, kx)'s
/// plane of dcol is added, row by row over whole rows, at offset (ky, kx),
/// the taps in order; the border cells collect the terms whose pixel lies
/// outside the image and are dropped. So each pixel's sum starts at +0.0
/// and adds exactly its in-image terms in the spec's order, and the adds
/// run over whole rows (full vectors on 8- and 16-wide images) with no
/// bounds per tap.
fn col2im_plane(dcol: &[f32], g: Cnhw, nb: usize, (ci, bi): (usize, usize), plane: &mut [f32]) {
    let (h, w, hw) = (g.h, g.w, g.plane());
    let (cols, pw) = (nb * hw, w + 2);
    COL2IM_ACC.with(|acc| {
        let mut acc = acc.borrow_mut();
        acc.clear();
        acc.resize((h + 2) * pw, 0.0);
        for t in 0..9 {
            let (ky, kx) = (t / 3, t % 3);
            let src = &dcol[(ci * 9 + t) * cols + bi * hw..][..hw];
            for (oy, s) in src.chunks_exact(w).enumerate() {
                let dst = &mut acc[(oy + ky) * pw + kx..][..w];
                for (a, &v) in dst.iter_mut().zip(s) {
                    *a = *a + v;
                }
            }
        }
        unpad_plane(&acc, h, w, plane);
    });
}

thread_local! {
    /// [`col2im_plane`]'s bordered accumulator.
    static COL2IM_ACC: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Floats of dcol per image group of the AVX2 dX (about 2 MB: each group
/// repacks Wᵀ for its product, so a group needs enough columns to repay
/// that; at 512 KB the full-width dX lost 3–6 % to it against the dW in
/// `cargo bench --bench conv`, at 2 MB none).
const DCOL_GROUP_BUDGET: usize = 1 << 19;

thread_local! {
    static DCOL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The AVX2 dX: the batch in small image groups, each group's
/// `dcol = Wᵀ·dY` and col2im on one thread, so dcol never leaves the
/// cache. Groups write disjoint images of `dx`; every value's arithmetic
/// is the spec's whatever the grouping.
fn dx_grouped(be: &CpuBackend, wt: MatRef, dy: &[f32], g: Cnhw, cout: usize, dx: &mut [f32]) -> Result<()> {
    let (k9, hw, row) = (g.c * 9, g.plane(), g.row());
    let per = (DCOL_GROUP_BUDGET / (k9 * hw).max(1)).clamp(1, g.n.max(1));
    let out = gemm::SharedMut(dx.as_mut_ptr());
    (0..g.n.div_ceil(per)).into_par_iter().try_for_each(|gi| {
        let (b0, nb) = (gi * per, per.min(g.n - gi * per));
        let cols = nb * hw;
        DCOL.with(|buf| -> Result<()> {
            let mut buf = buf.borrow_mut();
            if buf.len() < k9 * cols {
                pages::grow(&mut buf, k9 * cols)?;
            }
            let dym = MatRef::strided(&dy[b0 * hw..], cout, cols, row, 1)?;
            be.gemm(wt, dym, MatMut::new(&mut buf[..k9 * cols], k9, cols)?, Epilogue::None)?;
            for ci in 0..g.c {
                for bi in 0..nb {
                    // SAFETY: plane (ci, b0 + bi) of dx (CNHW: index ci·N + b,
                    // hw floats, inside dx whose length the caller checked)
                    // belongs to this group's images only.
                    let plane = unsafe { std::slice::from_raw_parts_mut(out.get().add((ci * g.n + b0 + bi) * hw), hw) };
                    col2im_plane(&buf, g, nb, (ci, bi), plane);
                }
            }
            Ok(())
        })
    })
}

/// Floats per image group of [`dx_fused`] (its packed dY and bordered
/// sums), about 512 KB: a group stays in a core's L2 through all nine taps.
const DX_GROUP_FLOATS: usize = 1 << 17;

thread_local! {
    /// [`dx_fused`]'s packed dY and bordered sums, kept between calls.
    static DX_GROUP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The AVX2 dX with no dcol, for images [`padded_forward_fits`] takes.
///
/// dcol's row (ci, t) is `Wᵀ[(ci, t), :] · dY`; col2im adds, for each
/// pixel, tap t's value of the output pixel it came from, t in order. Here
/// the rows of Wᵀ are taken tap-major, (t, ci), packed once into 6-row
/// tiles over all of K = Cout, and the product with the group's dY
/// (packed once per group, 16-pixel panels) is computed a 6 × 16 tile at
/// a time and added straight into bordered sums ([Cin][nb][(H+2)·(W+2)]),
/// each row at its tap's offset: a run of 16 output pixels along an image
/// row lands on 16 consecutive cells, or, as the forward reads them, on
/// two runs of 8 on consecutive rows [`gemm::SPLIT_HI`] apart; terms whose
/// pixel lies outside the image land on the border and are dropped.
///
/// The order of each cell's sum is the spec's: a higher tap reads its cell
/// from an earlier output pixel (tap (ky, kx) of cell (y, x) comes from
/// pixel (y − ky + 1, x − kx + 1)), so with the tiles in order and each
/// tile's runs taken last pixel first, a cell receives tap t before tap
/// t' > t whether the two rows share a tile (the same run, rows added in
/// order, or t's run first) or not (t's tile first). Each tile's chain is
/// the dcol product's (over co from +0.0), each cell's sum starts at
/// +0.0, so the bits are the spec's. Tiles mix taps, so only the last one
/// holds padding rows (9·Cin rows in all, where one tap per tile would pad
/// Cin to whole tiles nine times). Image groups run in parallel and write
/// disjoint images of `dx`.
#[cfg(target_arch = "x86_64")]
fn dx_fused(wts: &[f32], dy: &[f32], g: Cnhw, cout: usize, dx: &mut [f32]) -> Result<()> {
    use gemm::{MR, NR};
    let (cin, h, w, hw, row) = (g.c, g.h, g.w, g.plane(), g.row());
    let (pw, k9) = (w + 2, cin * 9);
    let plane = (h + 2) * pw;
    let mpad = k9.div_ceil(MR) * MR;
    // Wᵀ's rows tap-major: row t·Cin + ci is W[:, ci, t].
    let mut wt = vec![0.0f32; k9 * cout];
    for (r, dst) in wt.chunks_exact_mut(cout).enumerate() {
        let (t, ci) = (r / cin, r % cin);
        for (co, d) in dst.iter_mut().enumerate() {
            *d = wts[co * k9 + ci * 9 + t];
        }
    }
    let mut apack = vec![0.0f32; mpad * cout];
    gemm::pack_a(&MatRef::new(&wt, k9, cout)?, None, 0, k9, 0, cout, &mut apack);
    // Each tile row's channel and its tap's shift in a bordered plane;
    // padding rows add into one spare group of planes past Cin's.
    let rows: Vec<(usize, usize)> = (0..mpad)
        .map(|r| {
            let (t, ci) = if r < k9 { (r / cin, r % cin) } else { (0, cin) };
            (ci, (t / 3) * pw + t % 3)
        })
        .collect();
    let sums_len = |nb: usize| (cin + 1) * nb * plane;
    let per_image = cout * hw + (cin + 1) * plane;
    let threads = rayon::current_num_threads().max(1);
    let per = (DX_GROUP_FLOATS / per_image).clamp(1, g.n.div_ceil(threads).max(1));
    let out = gemm::SharedMut(dx.as_mut_ptr());
    let (apack, rows) = (&apack, &rows);
    (0..g.n.div_ceil(per)).into_par_iter().try_for_each(|gi| {
        let (b0, nb) = (gi * per, per.min(g.n - gi * per));
        let npix = nb * hw;
        let wide = gemm::wide();
        DX_GROUP.with(|buf| -> Result<()> {
            let mut buf = buf.borrow_mut();
            pages::grow(&mut buf, cout * npix + sums_len(nb))?;
            let (bpack, sums) = buf[..cout * npix + sums_len(nb)].split_at_mut(cout * npix);
            for (j, panel) in bpack.chunks_exact_mut(NR * cout).enumerate() {
                // SAFETY: the backend is AVX2; rows 0..Cout of dy at stride
                // N·HW hold pixels b0·HW + j·16 .. + 16 (npix is a multiple
                // of 16), and the panel holds 16·Cout floats.
                unsafe { gemm::pack_rows16(dy.as_ptr().add(b0 * hw + j * NR), row, cout, panel) };
            }
            sums.fill(0.0);
            // Each 16-pixel run's first cell at tap (0, 0) in its image's
            // bordered plane, and whether it ends on the next image row.
            let runs: Vec<(usize, bool)> = (0..npix)
                .step_by(NR)
                .map(|q| {
                    let (bi, oy, ox) = (q / hw, (q % hw) / w, q % w);
                    (bi * plane + oy * pw + ox, ox + NR > w)
                })
                .collect();
            let sp = sums.as_mut_ptr();
            for (p, ap) in apack.chunks_exact(MR * cout).enumerate() {
                // Plane (ci, 0) of each row, at its tap's shift (planes of
                // channel ci lie nb apart).
                let tile: [usize; MR] = std::array::from_fn(|r| {
                    let (ci, shift) = rows[p * MR + r];
                    ci * nb * plane + shift
                });
                // Runs last first; on 512-bit registers two runs at a time
                // (their tiles computed together, added in the same order).
                let mut j = runs.len();
                while wide && j >= 2 {
                    let ((c0, s0), (c1, s1)) = (runs[j - 1], runs[j - 2]);
                    let hi = |s: bool| if s { gemm::SPLIT_HI } else { NR / 2 };
                    // SAFETY: as for one run below, for runs j − 1 and j − 2
                    // (their panels in bpack, their cells inside sums).
                    unsafe {
                        let (d0, d1) = (tile.map(|o| sp.add(o + c0)), tile.map(|o| sp.add(o + c1)));
                        let (b0, b1) =
                            (bpack.as_ptr().add((j - 1) * NR * cout), bpack.as_ptr().add((j - 2) * NR * cout));
                        gemm::kernel_add_into_pair(cout, ap.as_ptr(), [b0, b1], [&d0, &d1], [hi(s0), hi(s1)]);
                    }
                    j -= 2;
                }
                for (bp, &(cell, split)) in bpack.chunks_exact(NR * cout).zip(&runs).take(j).rev() {
                    // SAFETY: inside sums, see the call below.
                    let dst = tile.map(|o| unsafe { sp.add(o + cell) });
                    // SAFETY: avx2 and fma detected; the panels hold MR·Cout
                    // and 16·Cout floats. A run of 16 at (oy, ox) with ox +
                    // 16 ≤ w reaches cell + shift + 16 ≤ bi·plane + (oy+2)·pw
                    // + w + 2 ≤ (bi+1)·plane inside plane (ci, bi); a split
                    // run (ox = w − 8, oy + 1 < h) reaches cell + shift +
                    // SPLIT_HI + 8 ≤ bi·plane + (oy+3)·pw + 2 ≤ (bi+1)·plane;
                    // ci ≤ Cin and sums holds (Cin + 1)·nb planes, which
                    // this thread alone owns. Rows sharing a plane are
                    // padding rows (the spare planes, never read).
                    unsafe {
                        if split {
                            gemm::kernel_add_into::<{ gemm::SPLIT_HI }>(cout, ap.as_ptr(), bp.as_ptr(), &dst);
                        } else {
                            gemm::kernel_add_into::<{ NR / 2 }>(cout, ap.as_ptr(), bp.as_ptr(), &dst);
                        }
                    }
                }
            }
            for (i, src) in sums[..cin * nb * plane].chunks_exact(plane).enumerate() {
                let (ci, bi) = (i / nb, i % nb);
                // SAFETY: plane (ci, b0 + bi) of dx (CNHW: index ci·N + b,
                // hw floats, inside dx whose length the caller checked)
                // belongs to this group's images only.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add((ci * g.n + b0 + bi) * hw), hw) };
                unpad_plane(src, h, w, dst);
            }
            Ok(())
        })
    })
}

thread_local! {
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether [`forward_padded`] takes images of this geometry: every run of
/// 16 outputs lies in one image row or in the last 8 pixels of one and the
/// first 8 of the next.
fn padded_forward_fits(g: Cnhw) -> bool {
    g.w.is_multiple_of(16) || (g.w.is_multiple_of(8) && g.plane().is_multiple_of(16))
}

/// The AVX2 forward for images whose width is a multiple of 8 and whose
/// plane a multiple of 16 ([`padded_forward_fits`]), without packing B:
/// each image is copied with a zero border into a per-thread buffer (C ×
/// (H+2) × (W+2)), where the row of tap (ci, ky, kx) for 16 outputs along
/// an image row is 16 consecutive floats at a fixed offset from the run's
/// start — or, for a run of 16 outputs whose last 8 start the next image
/// row, two runs of 8, the second [`gemm::SPLIT_HI`] floats past the
/// first — and the microkernel reads it there ([`gemm::offsets_product`]).
/// Images run in parallel (disjoint columns of `y`); each output's chain
/// is the GEMM spec's over the taps in order.
#[cfg(target_arch = "x86_64")]
fn forward_padded(wm: MatRef, xp: &[f32], gp: Cnhw, y: &mut [f32], cont: bool) -> Result<()> {
    let (h, w, hw, row) = (gp.h, gp.w, gp.plane(), gp.row());
    let pw = w + 2;
    let plane = (h + 2) * pw;
    let apack = gemm::pack_a_blocks(&wm);
    let off: Vec<u32> = (0..gp.c * 9)
        .map(|t| {
            let (ci, ky, kx) = (t / 9, (t % 9) / 3, t % 3);
            (ci * plane + ky * pw + kx) as u32
        })
        .collect();
    let out = gemm::SharedMut(y.as_mut_ptr());
    (0..gp.n).into_par_iter().try_for_each(|b| {
        PADDED.with(|buf| -> Result<()> {
            let mut buf = buf.borrow_mut();
            if buf.len() < gp.c * plane {
                pages::grow(&mut buf, gp.c * plane)?;
            }
            let pad = &mut buf[..gp.c * plane];
            for (ci, dst) in pad.chunks_exact_mut(plane).enumerate() {
                pad_plane(&xp[(ci * gp.n + b) * hw..][..hw], h, w, dst);
            }
            // (offset of the run's first tap-(0,0,0) value, column of y,
            // whether its last 8 outputs start the next image row)
            let panels = (0..hw).step_by(16).map(move |p| {
                let (oy, ox) = (p / w, p % w);
                (oy * pw + ox, b * hw + p, ox + 16 > w)
            });
            // SAFETY: the backend is AVX2 (avx2 and fma detected). A run's
            // last tap reads up to (C−1)·plane + (oy+2)·pw + ox + 2 + 16 ≤
            // C·plane floats (ox + 16 ≤ w, oy < h), a split run's up to
            // (C−1)·plane + (oy+3)·pw + 2 + 8 ≤ (C−1)·plane + (oy+4)·pw ≤
            // C·plane (ox = w − 8 ≥ 0, oy + 1 < h since HW is a multiple
            // of 16); y's rows 0..Cout at stride N·HW hold this image's
            // columns b·HW.., which no other task writes.
            unsafe { gemm::offsets_product(&apack, wm.rows, &off, pad, panels, (out.get(), row), cont) };
            Ok(())
        })
    })
}

/// Floats of one [`dw_in_place`] group's padded images and packed dYᵀ,
/// about 8 MB.
const DW_GROUP_FLOATS: usize = 1 << 21;

/// Copy one plane (h × w) into `dst` ((h+2) × (w+2)) inside a zero border.
fn pad_plane(src: &[f32], h: usize, w: usize, dst: &mut [f32]) {
    let pw = w + 2;
    dst[..pw].fill(0.0);
    for (iy, r) in dst[pw..(h + 1) * pw].chunks_exact_mut(pw).enumerate() {
        r[0] = 0.0;
        r[1..=w].copy_from_slice(&src[iy * w..(iy + 1) * w]);
        r[w + 1] = 0.0;
    }
    dst[(h + 1) * pw..].fill(0.0);
}

/// The inside of a bordered plane (`src`, (h+2) × (w+2)) into `dst` (h × w):
/// [`pad_plane`] undone.
fn unpad_plane(src: &[f32], h: usize, w: usize, dst: &mut [f32]) {
    for (iy, o) in dst[..h * w].chunks_exact_mut(w).enumerate() {
        o.copy_from_slice(&src[(iy + 1) * (w + 2) + 1..][..w]);
    }
}

/// Whether the AVX2 dW reads col in place ([`dw_in_place`]): where col
/// has at least as many rows as dY (Cin·9 ≥ Cout), the operand it leaves
/// unpacked is the larger one. (The first block of the full-width
/// Trifecta, 36 taps against 128 outputs, ran 20 % slower that way.)
fn dw_in_place_fits(g: Cnhw, cout: usize) -> bool {
    cfg!(target_arch = "x86_64") && g.c * 9 >= cout
}

/// The AVX2 dW as `dWᵀ = col · dYᵀ`, with col's rows read in place.
///
/// The spec's chain for dW\[co, t\] runs over the pixels (b, y, x) in
/// order, `acc = fma(dY[co, p], col[t, p], acc)`; fma's product is
/// symmetric, so computing dWᵀ\[t, co\] over the same pixels gives the
/// same bits. In that orientation the packed operand is dYᵀ (Cout values
/// per pixel), and col — Cin·9 values per pixel, the larger one from the
/// second block on — is never packed: the images of a group are copied
/// with a zero border ([C][nb][(H+2)·(W+2)]), where tap (ci, ky, kx) of a
/// run of pixels along an image row is a run of floats at a fixed offset,
/// and the microkernel reads its six rows of A there
/// ([`gemm::kernel_rows_in_place`]). Threads split the rows of dWᵀ (six
/// taps a tile) and run every K block of the group for them, so each
/// output's chain is one thread's, in pixel order across the groups.
#[cfg(target_arch = "x86_64")]
fn dw_in_place(x: &[f32], g: Cnhw, dy: &[f32], cout: usize, dw: &mut [f32]) -> Result<()> {
    let s = DwShape::new(g, cout);
    let mut dwt = pages::zeroed(s.rows * s.cols)?;
    DW_GROUP.with(|buf| {
        let mut buf = buf.borrow_mut();
        pages::grow(&mut buf, s.group * s.per_image)?;
        dw_groups(x, g, dy, cout, s, &mut buf, &mut dwt);
        Ok::<(), crate::Error>(())
    })?;
    for (co, dst) in dw.chunks_exact_mut(g.c * 9).enumerate() {
        for (t, d) in dst.iter_mut().enumerate() {
            *d = dwt[t * s.cols + co];
        }
    }
    Ok(())
}

/// The sizes of [`dw_in_place`]'s buffers.
#[derive(Clone, Copy)]
struct DwShape {
    /// Floats of one bordered plane, (H+2)·(W+2).
    plane: usize,
    /// dWᵀ's rows (Cin·9 rounded up to whole tiles) and columns (Cout
    /// rounded up to whole panels).
    rows: usize,
    cols: usize,
    /// Floats per image of a group: its bordered planes and its packed dYᵀ.
    per_image: usize,
    /// Images per group (at most `DW_GROUP_FLOATS` floats).
    group: usize,
}

impl DwShape {
    fn new(g: Cnhw, cout: usize) -> Self {
        use gemm::{MR, NR};
        let plane = (g.h + 2) * (g.w + 2);
        let (rows, cols) = ((g.c * 9).div_ceil(MR) * MR, cout.div_ceil(NR) * NR);
        let per_image = g.c * plane + g.plane() * cols;
        let group = (DW_GROUP_FLOATS / per_image).clamp(1, g.n.max(1));
        Self { plane, rows, cols, per_image, group }
    }
}

thread_local! {
    /// [`dw_in_place`]'s padded images and packed dYᵀ, kept between calls.
    static DW_GROUP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`dw_in_place`]'s groups: dWᵀ (`dwt`, Cin·9 rounded up to whole tiles ×
/// Cout rounded up to whole panels) from +0.0 through every image.
#[cfg(target_arch = "x86_64")]
fn dw_groups(x: &[f32], g: Cnhw, dy: &[f32], cout: usize, s: DwShape, buf: &mut [f32], dwt: &mut [f32]) {
    use gemm::{MR, NR};
    let (h, w, hw, row) = (g.h, g.w, g.plane(), g.row());
    let (pw, k9) = (w + 2, g.c * 9);
    let DwShape { plane, cols: np, per_image, group: nb_max, .. } = s;
    let tiles = s.rows / MR;
    let per_task = tiles.div_ceil(rayon::current_num_threads().max(1));
    let wide = gemm::wide();
    let out = gemm::SharedMut(dwt.as_mut_ptr());
    for b0 in (0..g.n).step_by(nb_max) {
        let nb = nb_max.min(g.n - b0);
        let (pad, bt) = buf[..nb * per_image].split_at_mut(g.c * nb * plane);
        pad.par_chunks_mut(plane).enumerate().for_each(|(i, dst)| {
            let (ci, bi) = (i / nb, i % nb);
            pad_plane(&x[(ci * g.n + b0 + bi) * hw..][..hw], h, w, dst);
        });
        // The group's dYᵀ, K block after K block, each as np/16 panels of
        // kc × 16 (block (pc, kc) starts at pc·np).
        let blocks: Vec<(usize, usize)> = gemm::k_blocks(nb * hw).collect();
        bt.par_chunks_mut(blocks[0].1 * np).zip(blocks.par_iter()).for_each(|(dst, &(pc, kc))| {
            for q in 0..np / NR {
                // SAFETY: the backend is AVX2 (avx2 detected); rows q·16.. of
                // dy (those below cout) hold pixels b0·HW + pc .. + kc of the
                // batch; the panel is kc·16 floats of this block's chunk.
                unsafe {
                    gemm::pack_cols16(
                        dy.as_ptr().add(q * NR * row + b0 * hw),
                        row,
                        cout - q * NR,
                        pc,
                        kc,
                        &mut dst[q * NR * kc..(q + 1) * NR * kc],
                    )
                };
            }
        });
        // Each K block's pixels as runs along image rows (padded offsets).
        let segs: Vec<Vec<(u32, u32)>> = blocks
            .iter()
            .map(|&(pc, kc)| {
                let mut runs = Vec::new();
                let mut p = pc;
                while p < pc + kc {
                    let (bi, y, x0) = (p / hw, (p % hw) / w, p % w);
                    let len = (w - x0).min(pc + kc - p);
                    runs.push(((bi * plane + y * pw + x0) as u32, len as u32));
                    p += len;
                }
                runs
            })
            .collect();
        let (pad, bt): (&[f32], &[f32]) = (pad, bt);
        (0..tiles).step_by(per_task.max(1)).collect::<Vec<_>>().into_par_iter().for_each(|t0| {
            let aoff = |p: usize| -> [usize; MR] {
                std::array::from_fn(|r| {
                    // rows past Cin·9 repeat the last tap; dWᵀ's rows from
                    // Cin·9 on are never read
                    let t = (p * MR + r).min(k9 - 1);
                    (t / 9) * nb * plane + ((t % 9) / 3) * pw + t % 3
                })
            };
            // Each 16-wide panel of dYᵀ (kc × 16, in L1) serves all the
            // task's tiles before the next.
            for (kb, &(pc, kc)) in blocks.iter().enumerate() {
                let mut q0 = 0;
                // On 512-bit registers, two dY panels at a time on each tile
                // (12 chains sharing the tap rows' broadcasts).
                while wide && q0 + 2 <= np / NR {
                    let (o0, o1) = (pc * np + q0 * NR * kc, pc * np + (q0 + 1) * NR * kc);
                    for p in t0..(t0 + per_task).min(tiles) {
                        // SAFETY: as for one tile below, for panels q0 and
                        // q0 + 1 (each kc·16 floats of this block's chunk).
                        unsafe {
                            let c0 = out.get().add(p * MR * np + q0 * NR);
                            gemm::kernel_rows_in_place_cols32(
                                &segs[kb],
                                pad.as_ptr(),
                                &aoff(p),
                                [bt.as_ptr().add(o0), bt.as_ptr().add(o1)],
                                [c0, c0.add(NR)],
                                np,
                                b0 > 0 || kb > 0,
                            )
                        };
                    }
                    q0 += 2;
                }
                for q in q0..np / NR {
                    let panel = &bt[pc * np + q * NR * kc..pc * np + (q + 1) * NR * kc];
                    let end = (t0 + per_task).min(tiles);
                    let mut p = t0;
                    // Two tiles at once on 512-bit registers (12 chains).
                    while wide && p + 2 <= end {
                        let (a0, a1) = (aoff(p), aoff(p + 1));
                        // SAFETY: as for one tile below, for tiles p and
                        // p + 1, both this task's.
                        unsafe {
                            let c0 = out.get().add(p * MR * np + q * NR);
                            gemm::kernel_rows_in_place12(
                                &segs[kb],
                                pad.as_ptr(),
                                [&a0, &a1],
                                panel.as_ptr(),
                                [c0, c0.add(MR * np)],
                                np,
                                b0 > 0 || kb > 0,
                            )
                        };
                        p += 2;
                    }
                    for p in p..end {
                        // SAFETY: avx2 and fma detected. A run (start, len)
                        // of image bi's row y from x0 reads up to bi·plane +
                        // y·pw + x0 + len − 1 + (C−1)·nb·plane + 2·pw + 2 <
                        // (C−1)·nb·plane + (bi+1)·plane (x0 + len ≤ w, y <
                        // h), inside pad; the panel holds kc·16 floats, one
                        // 16 per step of the block's runs (their lengths
                        // add to kc); rows p·6..p·6+6 of dWᵀ (np wide)
                        // belong to this task alone.
                        unsafe {
                            gemm::kernel_rows_in_place(
                                &segs[kb],
                                pad.as_ptr(),
                                &aoff(p),
                                panel.as_ptr(),
                                out.get().add(p * MR * np + q * NR),
                                np,
                                b0 > 0 || kb > 0,
                            )
                        };
                    }
                }
            }
        });
    }
}

impl CpuBackend {
    fn conv_check(op: &'static str, x: &[f32], g: Cnhw, wts: &[f32], cout: usize) -> Result<()> {
        check_len(op, "x", x.len(), g.len())?;
        check_len(op, "weights", wts.len(), cout * g.c * 9)?;
        if g.h == 0 || g.w == 0 || g.c == 0 {
            return Err(shape_err(op, format!("empty image geometry {}×{}×{}", g.c, g.h, g.w)));
        }
        Ok(())
    }

    /// `y = conv3x3(x, W)`: x is CNHW `g`, W is Cout × (Cin·9) row-major
    /// (k = ci·9 + ky·3 + kx), y is CNHW with `cout` channels.
    pub fn conv3x3_forward(
        &self,
        x: &[f32],
        g: Cnhw,
        wts: &[f32],
        cout: usize,
        y: &mut [f32],
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        self.conv3x3_forward_channels(x, g, wts, cout, (0..g.c, false), y, scratch)
    }

    /// The forward's chains over the k steps of input channels `channels`
    /// only, from +0.0 or (`cont`) continuing those in `y` (see
    /// [`crate::ops::ConvOps::conv3x3_forward_channels`]).
    #[allow(clippy::too_many_arguments)]
    pub fn conv3x3_forward_channels(
        &self,
        x: &[f32],
        g: Cnhw,
        wts: &[f32],
        cout: usize,
        (channels, cont): (std::ops::Range<usize>, bool),
        y: &mut [f32],
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        const OP: &str = "conv3x3_forward";
        Self::conv_check(OP, x, g, wts, cout)?;
        check_len(OP, "y", y.len(), cout * g.row())?;
        crate::ops::conv::channels_check(OP, g, cout, &channels, None)?;
        let (k9, hw, row) = (g.c * 9, g.plane(), g.row());
        // The part: its channels' rows of x, its taps' columns of W.
        let gp = g.with_channels(channels.len());
        let xp = &x[channels.start * row..channels.end * row];
        let wm = MatRef::strided(&wts[channels.start * 9..], cout, gp.c * 9, k9, 1)?;
        let epi = if cont { Epilogue::Accumulate } else { Epilogue::None };
        #[cfg(target_arch = "x86_64")]
        if self.kind == CpuKind::Avx2 && g.n > 0 && padded_forward_fits(g) {
            let _p = crate::profile::scope("conv3x3_forward: gemm");
            return forward_padded(wm, xp, gp, y, cont);
        }
        if self.kind == CpuKind::Avx2 && g.n > 0 {
            // One product over the whole batch, B packed from the image.
            let src = ImplicitCol { x: xp, g: gp, b0: 0, nb: g.n };
            let mut ym = MatMut::new(y, cout, row)?;
            let _p = crate::profile::scope("conv3x3_forward: gemm");
            gemm::gemm_avx2_src(wm, BSource::Im2col(src), &mut ym, Epi::Out(epi), None, false);
            return Ok(());
        }
        let kp = gp.c * 9;
        let per = images_per_chunk(gp);
        for b0 in (0..g.n).step_by(per) {
            let nb = per.min(g.n - b0);
            let cols = nb * hw;
            let want = scratch.col.len().max(kp * per * hw);
            pages::grow(&mut scratch.col, want)?;
            {
                let _p = crate::profile::scope("conv3x3_forward: im2col");
                im2col(xp, gp, b0, nb, &mut scratch.col);
            }
            let colm = MatRef::new(&scratch.col[..kp * cols], kp, cols)?;
            let ym = MatMut::strided(&mut y[b0 * hw..], cout, cols, row)?;
            let _p = crate::profile::scope("conv3x3_forward: gemm");
            self.gemm(wm, colm, ym, epi)?;
        }
        Ok(())
    }

    /// The conv's gradients from `dy` (CNHW, `cout` channels): `dw`
    /// (Cout × Cin·9, overwritten) and, when asked, `dx` (CNHW like x).
    pub fn conv3x3_backward(
        &self,
        a: ConvBackward<'_, [f32]>,
        dw: &mut [f32],
        mut dx: Option<&mut [f32]>,
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        let ConvBackward { x, g, w: wts, cout, dy } = a;
        Self::conv_check("conv3x3_backward", x, g, wts, cout)?;
        check_len("conv3x3_backward", "dy", dy.len(), cout * g.row())?;
        check_len("conv3x3_backward", "dW", dw.len(), wts.len())?;
        if let Some(dx) = dx.as_deref() {
            check_len("conv3x3_backward", "dx", dx.len(), x.len())?;
        }
        let (k9, hw, row) = (g.c * 9, g.plane(), g.row());
        if g.n == 0 {
            dw.fill(0.0);
            return Ok(());
        }
        let per = images_per_chunk(g);
        let wt = MatRef::new(wts, cout, k9)?.t();
        let avx2 = self.kind == CpuKind::Avx2;
        // A pooled block's dY (at most one value in four): chains over its
        // nonzero pixels alone, where the values allow (else the dense dW).
        #[cfg(target_arch = "x86_64")]
        let dw_done = avx2 && sparse_dw::looks_sparse(dy, g, cout) && {
            let _p = crate::profile::scope("conv3x3_backward: dW sparse");
            sparse_dw::dw_sparse(x, g, dy, cout, dw)?
        };
        #[cfg(not(target_arch = "x86_64"))]
        let dw_done = false;
        if avx2 && !dw_done && dw_in_place_fits(g, cout) {
            #[cfg(target_arch = "x86_64")]
            {
                let _p = crate::profile::scope("conv3x3_backward: dW gemm");
                dw_in_place(x, g, dy, cout, dw)?;
            }
        } else if !dw_done {
            for b0 in (0..g.n).step_by(per) {
                let nb = per.min(g.n - b0);
                let cols = nb * hw;
                let dym = MatRef::strided(&dy[b0 * hw..], cout, cols, row, 1)?;
                let epi = if b0 == 0 { Epilogue::None } else { Epilogue::Accumulate };
                if avx2 {
                    // colᵀ packed straight from the image.
                    let src = BSource::Im2colT(ImplicitCol { x, g, b0, nb });
                    let _p = crate::profile::scope("conv3x3_backward: dW gemm");
                    gemm::gemm_avx2_src(dym, src, &mut MatMut::new(dw, cout, k9)?, Epi::Out(epi), None, false);
                    continue;
                }
                let want = scratch.col.len().max(k9 * per * hw);
                pages::grow(&mut scratch.col, want)?;
                im2col(x, g, b0, nb, &mut scratch.col);
                let colt = MatRef::new(&scratch.col[..k9 * cols], k9, cols)?.t();
                self.gemm(dym, colt, MatMut::new(dw, cout, k9)?, epi)?;
                if let Some(dx) = dx.as_deref_mut() {
                    let want = scratch.dcol.len().max(k9 * per * hw);
                    pages::grow(&mut scratch.dcol, want)?;
                    {
                        let _p = crate::profile::scope("conv3x3_backward: dX gemm");
                        self.gemm(wt, dym, MatMut::new(&mut scratch.dcol[..k9 * cols], k9, cols)?, Epilogue::None)?;
                    }
                    let _p = crate::profile::scope("conv3x3_backward: col2im");
                    col2im_spec(&scratch.dcol, g, b0, nb, dx);
                }
            }
        }
        if let (CpuKind::Avx2, Some(dx)) = (self.kind, dx) {
            let _p = crate::profile::scope("conv3x3_backward: dX");
            #[cfg(target_arch = "x86_64")]
            if padded_forward_fits(g) {
                return dx_fused(wts, dy, g, cout, dx);
            }
            dx_grouped(self, wt, dy, g, cout, dx)?;
        }
        Ok(())
    }
}

impl crate::ops::ConvOps for CpuBackend {
    type ConvScratch = ConvScratch;

    fn conv3x3_forward(
        &self,
        x: &Vec<f32>,
        g: Cnhw,
        w: &Vec<f32>,
        cout: usize,
        y: &mut Vec<f32>,
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        let _p = crate::profile::scope("conv3x3_forward");
        pages::grow(y, cout * g.row())?;
        CpuBackend::conv3x3_forward(self, x, g, w, cout, y, scratch)
    }
    fn conv3x3_forward_channels(
        &self,
        x: &Vec<f32>,
        g: Cnhw,
        w: &Vec<f32>,
        cout: usize,
        (channels, cont): (std::ops::Range<usize>, bool),
        y: &mut Vec<f32>,
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        let _p = crate::profile::scope("conv3x3_forward");
        crate::ops::conv::channels_check("conv3x3_forward", g, cout, &channels, cont.then_some(y.len()))?;
        pages::grow(y, cout * g.row())?;
        CpuBackend::conv3x3_forward_channels(self, x, g, w, cout, (channels, cont), y, scratch)
    }
    fn conv3x3_backward(
        &self,
        a: ConvBackward<'_, Vec<f32>>,
        dw: &mut Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        let _p = crate::profile::scope("conv3x3_backward");
        pages::grow(dw, a.w.len())?;
        let dx = match dx {
            Some(d) => {
                pages::grow(d, a.x.len())?;
                Some(&mut d[..])
            }
            None => None,
        };
        let a = ConvBackward { x: &a.x[..], g: a.g, w: &a.w[..], cout: a.cout, dy: &a.dy[..] };
        CpuBackend::conv3x3_backward(self, a, dw, dx, scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-at-a-time col2im writes the spec's bits, for every chunk of
    /// images (b0 > 0 too) and odd sides, with signed zeros, subnormals,
    /// infinities and NaN among the values; planes outside the chunk are
    /// left alone.
    #[test]
    fn row_col2im_gives_the_spec_bits_for_every_chunk() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 11 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::from_bits((s >> 20) as u32 & 0x007F_FFFF),
                3 => f32::INFINITY,
                4 if s & 0x100 == 0 => f32::NAN,
                _ => ((s >> 16) as u32 as f32 / u32::MAX as f32 - 0.5) * 8.0,
            }
        };
        for (c, n, h, w) in [(2, 5, 7, 3), (3, 4, 1, 6), (1, 3, 2, 1), (4, 6, 9, 8)] {
            let g = Cnhw::new(c, n, h, w);
            for (b0, nb) in [(0, n), (1, n - 1), (n - 2, 2), (2, 1)] {
                let dcol: Vec<f32> = (0..c * 9 * nb * g.plane()).map(|_| next()).collect();
                let (mut a, mut b) = (vec![7.5f32; g.len()], vec![7.5f32; g.len()]);
                col2im_spec(&dcol, g, b0, nb, &mut a);
                col2im(&dcol, g, b0, nb, &mut b);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{c}×{n}×{h}×{w}, images {b0}..{}", b0 + nb);
            }
        }
    }

    /// The panels packed straight from the image, the forward's and the
    /// dW's (transposed), and single values, are the materialised
    /// im2col's, for chunks starting past the first image, panels that
    /// cross image rows and images, narrow last panels and odd sides.
    #[test]
    fn implicit_panels_hold_the_im2col_values() {
        const NR: usize = 16;
        for (c, n, h, w) in [
            (2, 3, 5, 7),
            (1, 2, 8, 8),
            (3, 2, 4, 20),
            (1, 1, 1, 1),
            (2, 2, 3, 9),
            (1, 3, 2, 16),
            (1, 20, 1, 1),
            (2, 4, 3, 2),
        ] {
            let g = Cnhw::new(c, n, h, w);
            let x: Vec<f32> = (0..g.len()).map(|i| i as f32 + 1.0).collect();
            for (b0, nb) in [(0, n), (n - 1, 1)] {
                let (rows, cols) = (c * 9, nb * g.plane());
                let mut col = vec![f32::NAN; rows * cols];
                im2col(&x, g, b0, nb, &mut col);
                let src = ImplicitCol { x: &x, g, b0, nb };
                assert_eq!((src.rows(), src.cols()), (rows, cols));
                let at = |k: usize, j: usize| col[k * cols + j];
                for k in 0..rows {
                    for j in 0..cols {
                        assert_eq!(src.at(k, j).to_bits(), at(k, j).to_bits(), "at {k},{j}");
                    }
                }
                // A packer against its one-value-at-a-time twin and against
                // col itself (`want(k, c)` the panel's value at row k,
                // column c < wd).
                type Pack<'p> = &'p dyn Fn(usize, usize, usize, usize, &mut [f32]);
                let check = |(fast, spec): (Pack, Pack),
                             (k0, kc, jq, wd): (usize, usize, usize, usize),
                             want: &dyn Fn(usize, usize) -> f32,
                             what: &str| {
                    let (mut panel, mut slow) = (vec![f32::NAN; kc * NR], vec![f32::NAN; kc * NR]);
                    fast(k0, kc, jq, wd, &mut panel);
                    spec(k0, kc, jq, wd, &mut slow);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&panel), bits(&slow), "{what} {g:?} b0 {b0} k0 {k0} jq {jq}");
                    for k in 0..kc {
                        for cc in 0..NR {
                            let w = if cc < wd { want(k, cc) } else { 0.0 };
                            assert_eq!(
                                panel[k * NR + cc].to_bits(),
                                w.to_bits(),
                                "{what} {g:?} b0 {b0} k {k} jq {jq} c {cc}"
                            );
                        }
                    }
                };
                for (k0, kc) in [(0, rows), (rows / 3, rows - rows / 3)] {
                    for jq in (0..cols).step_by(NR) {
                        let wd = NR.min(cols - jq);
                        let pack: (Pack, Pack) = (&|a, b, c, d, p| src.pack_panel(a, b, c, d, p), &|a, b, c, d, p| {
                            src.pack_panel_scalar(a, b, c, d, p)
                        });
                        check(pack, (k0, kc, jq, wd), &|k, c| at(k0 + k, jq + c), "panel");
                    }
                }
                // transposed: pixel rows k0..k0+kc, tap columns jq..jq+16
                for (k0, kc) in [(0, cols), (cols / 2, cols - cols / 2)] {
                    for jq in (0..rows).step_by(NR) {
                        let wd = NR.min(rows - jq);
                        let pack: (Pack, Pack) =
                            (&|a, b, c, d, p| src.pack_panel_t(a, b, c, d, p), &|a, b, c, d, p| {
                                src.pack_panel_t_scalar(a, b, c, d, p)
                            });
                        check(pack, (k0, kc, jq, wd), &|k, c| at(jq + c, k0 + k), "transposed panel");
                    }
                }
            }
        }
    }
}
