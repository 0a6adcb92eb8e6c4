//! Launch wrappers for `kernels/conv.cu`: im2col / col2im and the 3×3 conv built on the GEMM.

use super::device::{err, grid_for, CudaDevice};
use super::gemm::Tile;
use crate::cpu::conv::Cnhw;
use crate::error::Result;
use cudarc::driver::PushKernelArg;

/// The conv's output, and (dW, dX) when a gradient was given.
pub type ConvOut = (Vec<f32>, Option<(Vec<f32>, Vec<f32>)>);

impl CudaDevice {
    /// The 3×3 conv of CNHW `x` with W (cout × Cin·9): y, and with `dy`
    /// also (dW, dX). im2col, one GEMM over the whole batch, col2im.
    pub fn conv3x3(&self, x: &[f32], g: Cnhw, w: &[f32], cout: usize, dy: Option<&[f32]>) -> Result<ConvOut> {
        let (k9, cols) = (g.c * 9, g.row());
        let (xd, wd, nobias) = (self.up(x)?, self.up(w)?, self.zeros(1)?);
        let mut col = self.zeros(k9 * cols)?;
        let (c, n, h, wi) = (g.c as i32, g.n as i32, g.h as i32, g.w as i32);
        let f = self.function("conv", "ffwd_im2col_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&h).arg(&wi).arg(&mut col);
        // SAFETY: one thread per col value; x holds c·n·h·w values.
        unsafe { b.launch(grid_for(k9 * cols)) }.map_err(|e| err("im2col", e))?;
        let mut y = self.zeros(cout * cols)?;
        self.launch_gemm((&wd, k9, 1), (&col, cols, 1), &mut y, (cout, cols, k9), &nobias, 0, Tile::Auto)?;
        let y = self.down(&y, cout * cols)?;
        let Some(dy) = dy else { return Ok((y, None)) };
        let dyd = self.up(dy)?;
        let mut dw = self.zeros(cout * k9)?;
        self.launch_gemm((&dyd, cols, 1), (&col, 1, cols), &mut dw, (cout, k9, cols), &nobias, 0, Tile::Auto)?;
        let mut dcol = self.zeros(k9 * cols)?;
        self.launch_gemm((&wd, 1, k9), (&dyd, cols, 1), &mut dcol, (k9, cols, cout), &nobias, 0, Tile::Auto)?;
        let mut dx = self.zeros(g.len())?;
        let f = self.function("conv", "ffwd_col2im_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&dcol).arg(&c).arg(&n).arg(&h).arg(&wi).arg(&mut dx);
        // SAFETY: one thread per dx value; dcol holds Cin·9 × n·h·w values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("col2im", e))?;
        Ok((y, Some((self.down(&dw, cout * k9)?, self.down(&dx, g.len())?))))
    }
}
