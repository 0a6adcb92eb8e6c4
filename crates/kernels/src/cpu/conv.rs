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
//! **Implementation.** The batch is cut into image chunks so the col buffer
//! stays near 16 MB; the forward and dX write disjoint columns per chunk,
//! and dW continues each output's chain across chunks with
//! [`Epilogue::Accumulate`], so the chunk size never changes a bit. The
//! GEMMs run on the backend (scalar spec or AVX2); im2col and col2im are
//! copies and fixed-order sums shared by both, parallel over rows.

use super::gemm::Epilogue;
use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, shape_err, Result};
use crate::mat::{MatMut, MatRef};
use crate::ops::conv::ConvBackward;
use rayon::prelude::*;

pub use crate::ops::conv::Cnhw;

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
pub(crate) fn col2im(dcol: &[f32], g: Cnhw, b0: usize, nb: usize, dx: &mut [f32]) {
    let (h, w, hw) = (g.h, g.w, g.plane());
    let cols = nb * hw;
    // planes (ci, b) of dx, CNHW: index ci·N + b; only b in b0..b0+nb
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, plane)| {
        let (ci, b) = (p / g.n, p % g.n);
        if b < b0 || b >= b0 + nb {
            return;
        }
        let bi = b - b0;
        for iy in 0..h {
            let acc = &mut plane[iy * w..(iy + 1) * w];
            acc.fill(0.0);
            for ky in 0..3 {
                // oy = iy − ky + 1 inside [0, h)
                if iy + 1 < ky || iy + 1 - ky >= h {
                    continue;
                }
                let oy = iy + 1 - ky;
                for kx in 0..3 {
                    let src = &dcol[(ci * 9 + ky * 3 + kx) * cols + bi * hw + oy * w..][..w];
                    // ox = ix + 1 − kx inside [0, w): ix from kx − 1 (at least 0) to w − 1 + kx − 1 (at most w − 1)
                    let lo = kx.saturating_sub(1);
                    let hi = (w + kx).saturating_sub(1).min(w);
                    for (a, &v) in acc[lo..hi].iter_mut().zip(&src[lo + 1 - kx..hi + 1 - kx]) {
                        *a = *a + v;
                    }
                }
            }
        }
    });
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
        Self::conv_check("conv3x3_forward", x, g, wts, cout)?;
        check_len("conv3x3_forward", "y", y.len(), cout * g.row())?;
        let (k9, hw, row) = (g.c * 9, g.plane(), g.row());
        let per = images_per_chunk(g);
        let wm = MatRef::new(wts, cout, k9)?;
        for b0 in (0..g.n).step_by(per) {
            let nb = per.min(g.n - b0);
            let cols = nb * hw;
            let want = scratch.col.len().max(k9 * per * hw);
            pages::grow(&mut scratch.col, want)?;
            {
                let _p = crate::profile::scope("conv3x3_forward: im2col");
                im2col(x, g, b0, nb, &mut scratch.col);
            }
            let colm = MatRef::new(&scratch.col[..k9 * cols], k9, cols)?;
            let ym = MatMut::strided(&mut y[b0 * hw..], cout, cols, row)?;
            let _p = crate::profile::scope("conv3x3_forward: gemm");
            self.gemm(wm, colm, ym, Epilogue::None)?;
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
        for b0 in (0..g.n).step_by(per) {
            let nb = per.min(g.n - b0);
            let cols = nb * hw;
            let want = scratch.col.len().max(k9 * per * hw);
            pages::grow(&mut scratch.col, want)?;
            {
                let _p = crate::profile::scope("conv3x3_backward: im2col");
                im2col(x, g, b0, nb, &mut scratch.col);
            }
            let colt = MatRef::new(&scratch.col[..k9 * cols], k9, cols)?.t();
            let dym = MatRef::strided(&dy[b0 * hw..], cout, cols, row, 1)?;
            let epi = if b0 == 0 { Epilogue::None } else { Epilogue::Accumulate };
            {
                let _p = crate::profile::scope("conv3x3_backward: dW gemm");
                self.gemm(dym, colt, MatMut::new(dw, cout, k9)?, epi)?;
            }
            if let Some(dx) = dx.as_deref_mut() {
                let want = scratch.dcol.len().max(k9 * per * hw);
                pages::grow(&mut scratch.dcol, want)?;
                {
                    let _p = crate::profile::scope("conv3x3_backward: dX gemm");
                    self.gemm(wt, dym, MatMut::new(&mut scratch.dcol[..k9 * cols], k9, cols)?, Epilogue::None)?;
                }
                let _p = crate::profile::scope("conv3x3_backward: col2im");
                match self.kind {
                    CpuKind::Scalar => col2im_spec(&scratch.dcol, g, b0, nb, dx),
                    CpuKind::Avx2 => col2im(&scratch.dcol, g, b0, nb, dx),
                }
            }
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
}
