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
//! gradient to that position and writes +0.0 elsewhere. One implementation
//! serves both backends (a compare-and-select has nothing to round),
//! parallel over image planes.

use super::conv::Cnhw;
use super::pages;
use super::CpuBackend;
use crate::error::{check_len, shape_err, Result};
use rayon::prelude::*;

fn pool_check(op: &'static str, g: Cnhw) -> Result<()> {
    if g.h < 2 || g.w < 2 {
        return Err(shape_err(op, format!("{}×{} planes: a 2×2 pool needs at least 2×2", g.h, g.w)));
    }
    Ok(())
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
        let (hw, w) = (g.plane(), g.w);
        y.par_chunks_mut(ho * wo).zip(idx.par_chunks_mut(ho * wo)).enumerate().for_each(|(p, (yp, ip))| {
            let xp = &x[p * hw..(p + 1) * hw];
            for oy in 0..ho {
                for ox in 0..wo {
                    let base = 2 * oy * w + 2 * ox;
                    let cand = [xp[base], xp[base + 1], xp[base + w], xp[base + w + 1]];
                    let mut best = 0;
                    for (t, &v) in cand.iter().enumerate().skip(1) {
                        if v > cand[best] {
                            best = t;
                        }
                    }
                    yp[oy * wo + ox] = cand[best];
                    ip[oy * wo + ox] = best as u8;
                }
            }
        });
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
    fn maxpool2_backward(&self, dy: &Vec<f32>, idx: &Vec<u8>, g: Cnhw, dx: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("maxpool2_backward");
        pages::grow(dx, g.len())?;
        CpuBackend::maxpool2_backward(self, dy, idx, g, dx)
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
