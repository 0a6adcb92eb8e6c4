//! Launch wrappers for `kernels/conv.cu` ([`ConvOps`] on device buffers):
//! im2col / col2im around the GEMM. On the device the whole batch is one
//! chunk: the CPU's chunking never changes a bit (the forward and dX write
//! disjoint columns per chunk, and dW continues each chain).

use super::device::{err, grid_for, int, CudaBackend, DevBuf};
use super::gemm::{EPI_ACCUMULATE, EPI_NONE};
use crate::error::{check_len, Result};
use crate::ops::conv::{channels_check, conv_check, Cnhw, ConvBackward, ConvOps};
use crate::ops::Len;
use cudarc::driver::{CudaView, PushKernelArg};

/// The col buffers of the conv ops, kept between steps.
#[derive(Clone, Debug, Default)]
pub struct DevConvScratch {
    col: DevBuf,
    dcol: DevBuf,
}

impl CudaBackend {
    /// `col` (Cin·9 × N·H·W) of CNHW `x` (its `g.c` channels at `xv`).
    fn im2col(&self, xv: &CudaView<'_, f32>, g: Cnhw, col: &mut DevBuf) -> Result<()> {
        const OP: &str = "im2col";
        let n = g.c * 9 * g.row();
        col.set_len(self.dev, n, false)?;
        let f = self.dev.function("conv", "ffwd_im2col_f32")?;
        let (c, ni, h, w) = (int(OP, g.c)?, int(OP, g.n)?, int(OP, g.h)?, int(OP, g.w)?);
        let mut cv = col.view_mut()?;
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(xv).arg(&c).arg(&ni).arg(&h).arg(&w).arg(&mut cv);
        // SAFETY: one thread per col value; xv holds c·n·h·w values (checked by the callers).
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
}

impl ConvOps for CudaBackend {
    type ConvScratch = DevConvScratch;

    fn conv3x3_forward(
        &self,
        x: &DevBuf,
        g: Cnhw,
        w: &DevBuf,
        cout: usize,
        y: &mut DevBuf,
        scratch: &mut DevConvScratch,
    ) -> Result<()> {
        self.conv3x3_forward_channels(x, g, w, cout, (0..g.c, false), y, scratch)
    }
    fn conv3x3_forward_channels(
        &self,
        x: &DevBuf,
        g: Cnhw,
        w: &DevBuf,
        cout: usize,
        (channels, cont): (std::ops::Range<usize>, bool),
        y: &mut DevBuf,
        scratch: &mut DevConvScratch,
    ) -> Result<()> {
        const OP: &str = "conv3x3_forward";
        conv_check(OP, x, g, w, cout)?;
        channels_check(OP, g, cout, &channels, cont.then_some(y.len()))?;
        let (k9, cols) = (g.c * 9, g.row());
        if !cont {
            y.set_len(self.dev, cout * cols, false)?;
        }
        if cols == 0 || cout == 0 {
            return Ok(());
        }
        // The part: its channels' rows of x, its taps' columns of W.
        let gp = g.with_channels(channels.len());
        let xv = x.view()?.slice(channels.start * cols..channels.end * cols);
        self.im2col(&xv, gp, &mut scratch.col)?;
        let dummy = self.dev.dummy()?.slice(0..1);
        let (wv, cv) = (w.view()?.slice(channels.start * 9..), scratch.col.view()?);
        let code = if cont { EPI_ACCUMULATE } else { EPI_NONE };
        self.launch_gemm((wv, k9, 1), (cv, cols, 1), &mut y.view_mut()?, (cout, cols, gp.c * 9), &dummy, code)
    }
    fn conv3x3_backward(
        &self,
        a: ConvBackward<'_, DevBuf>,
        dw: &mut DevBuf,
        dx: Option<&mut DevBuf>,
        scratch: &mut DevConvScratch,
    ) -> Result<()> {
        const OP: &str = "conv3x3_backward";
        let ConvBackward { x, g, w, cout, dy } = a;
        conv_check(OP, x, g, w, cout)?;
        check_len(OP, "dy", dy.len(), cout * g.row())?;
        let (k9, cols) = (g.c * 9, g.row());
        dw.set_len(self.dev, w.len(), false)?;
        let dummy = self.dev.dummy()?.slice(0..1);
        if cols == 0 {
            if !dw.is_empty() {
                self.dev.stream.memset_zeros(&mut dw.view_mut()?).map_err(|e| err(OP, e))?;
            }
        } else if cout > 0 {
            self.im2col(&x.view()?, g, &mut scratch.col)?;
            // dW = dY · colᵀ: one chain per weight over all N·H·W columns.
            let (yv, cv) = (dy.view()?, scratch.col.view()?);
            self.launch_gemm((yv, cols, 1), (cv, 1, cols), &mut dw.view_mut()?, (cout, k9, cols), &dummy, EPI_NONE)?;
        }
        let Some(dx) = dx else { return Ok(()) };
        dx.set_len(self.dev, x.len(), false)?;
        if x.is_empty() {
            return Ok(());
        }
        // dcol = Wᵀ · dY, then col2im.
        scratch.dcol.set_len(self.dev, k9 * cols, false)?;
        {
            let (wv, yv) = (w.view()?, dy.view()?);
            let mut dc = scratch.dcol.view_mut()?;
            if cout == 0 {
                self.dev.stream.memset_zeros(&mut dc).map_err(|e| err(OP, e))?;
            } else {
                self.launch_gemm((wv, 1, k9), (yv, cols, 1), &mut dc, (k9, cols, cout), &dummy, EPI_NONE)?;
            }
        }
        let f = self.dev.function("conv", "ffwd_col2im_f32")?;
        let (c, n, h, wi) = (int(OP, g.c)?, int(OP, g.n)?, int(OP, g.h)?, int(OP, g.w)?);
        let (dv, mut xv) = (scratch.dcol.view()?, dx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&dv).arg(&c).arg(&n).arg(&h).arg(&wi).arg(&mut xv);
        // SAFETY: one thread per dx value; dcol holds Cin·9 × n·h·w values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("col2im", e))?;
        Ok(())
    }
}
