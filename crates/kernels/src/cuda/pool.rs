//! Launch wrappers for `kernels/pool.cu` ([`PoolOps`] on device buffers):
//! 2×2 max-pool and nearest 2× upsampling. One thread per output (forward)
//! or per input (backward).

use super::device::{err, grid_for, int, CudaBackend, DevBuf, DevBytes};
use crate::error::{check_len, Result};
use crate::ops::conv::Cnhw;
use crate::ops::pool::{pool_check, PoolOps};
use crate::ops::{Len, MathOps, Norm2dOps};
use cudarc::driver::PushKernelArg;

impl PoolOps for CudaBackend {
    type PoolIdx = DevBytes;

    fn maxpool2_forward(&self, x: &DevBuf, g: Cnhw, y: &mut DevBuf, idx: &mut DevBytes) -> Result<()> {
        const OP: &str = "maxpool2_forward";
        pool_check(OP, g)?;
        check_len(OP, "x", x.len(), g.len())?;
        let n = g.c * g.n * (g.h / 2) * (g.w / 2);
        y.set_len(self.dev, n, false)?;
        idx.set_len(self.dev, n, false)?;
        if n == 0 {
            return Ok(());
        }
        let func = self.dev.function("pool", "ffwd_maxpool2_forward_f32")?;
        let (p, h, w) = (int(OP, g.c * g.n)?, int(OP, g.h)?, int(OP, g.w)?);
        let (xv, mut yv, mut iv) = (x.view()?, y.view_mut()?, idx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&p).arg(&h).arg(&w).arg(&mut yv).arg(&mut iv);
        // SAFETY: planes·h·w inputs are read; n outputs and n positions written.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    /// The three kernels one after another (the same bits; a fused
    /// kernel is left for the GPU work).
    fn relu_pool_sumsq(
        &self,
        r: &mut DevBuf,
        g: Cnhw,
        pool: Option<(&mut DevBuf, &mut DevBytes)>,
        sumsq: Option<&mut DevBuf>,
    ) -> Result<()> {
        check_len("relu_pool_sumsq", "r", r.len(), g.len())?;
        self.relu(r)?;
        match (pool, sumsq) {
            (Some((y, idx)), sumsq) => {
                self.maxpool2_forward(r, g, y, idx)?;
                if let Some(out) = sumsq {
                    self.block_sumsq(y, Cnhw::new(g.c, g.n, g.h / 2, g.w / 2), out)?;
                }
            }
            (None, Some(out)) => self.block_sumsq(r, g, out)?,
            (None, None) => {}
        }
        Ok(())
    }
    fn maxpool2_backward(&self, dy: &DevBuf, idx: &DevBytes, g: Cnhw, dx: &mut DevBuf) -> Result<()> {
        const OP: &str = "maxpool2_backward";
        pool_check(OP, g)?;
        let n = g.c * g.n * (g.h / 2) * (g.w / 2);
        check_len(OP, "dy", dy.len(), n)?;
        check_len(OP, "idx", idx.len(), n)?;
        dx.set_len(self.dev, g.len(), false)?;
        if g.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("pool", "ffwd_maxpool2_backward_f32")?;
        let (p, h, w) = (int(OP, g.c * g.n)?, int(OP, g.h)?, int(OP, g.w)?);
        let (gv, iv, mut xv) = (dy.view()?, idx.view()?, dx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&gv).arg(&iv).arg(&p).arg(&h).arg(&w).arg(&mut xv);
        // SAFETY: one thread per input element; dy and idx hold the pooled count (checked).
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn maxpool2_relu_backward(&self, dy: &DevBuf, idx: &DevBytes, y: &DevBuf, g: Cnhw, dx: &mut DevBuf) -> Result<()> {
        const OP: &str = "maxpool2_relu_backward";
        pool_check(OP, g)?;
        let n = g.c * g.n * (g.h / 2) * (g.w / 2);
        check_len(OP, "dy", dy.len(), n)?;
        check_len(OP, "idx", idx.len(), n)?;
        check_len(OP, "y", y.len(), n)?;
        dx.set_len(self.dev, g.len(), false)?;
        if g.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("pool", "ffwd_maxpool2_relu_backward_f32")?;
        let (p, h, w) = (int(OP, g.c * g.n)?, int(OP, g.h)?, int(OP, g.w)?);
        let (gv, iv, yv, mut xv) = (dy.view()?, idx.view()?, y.view()?, dx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&gv).arg(&iv).arg(&yv).arg(&p).arg(&h).arg(&w).arg(&mut xv);
        // SAFETY: one thread per input element; dy, idx and y hold the pooled count (checked).
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn upsample2_forward(&self, x: &DevBuf, g: Cnhw, y: &mut DevBuf) -> Result<()> {
        self.upsample2("upsample2_forward", "ffwd_upsample2_forward_f32", x, g, y, (g.len(), 4 * g.len()))
    }
    fn upsample2_backward(&self, dy: &DevBuf, g: Cnhw, dx: &mut DevBuf) -> Result<()> {
        self.upsample2("upsample2_backward", "ffwd_upsample2_backward_f32", dy, g, dx, (4 * g.len(), g.len()))
    }
}

impl CudaBackend {
    /// One of the upsampling kernels: `x` of `lens.0` values into `y` of `lens.1`.
    fn upsample2(
        &self,
        op: &'static str,
        name: &str,
        x: &DevBuf,
        g: Cnhw,
        y: &mut DevBuf,
        lens: (usize, usize),
    ) -> Result<()> {
        check_len(op, "input", x.len(), lens.0)?;
        y.set_len(self.dev, lens.1, false)?;
        if lens.1 == 0 {
            return Ok(());
        }
        let func = self.dev.function("pool", name)?;
        let (p, h, w) = (int(op, g.c * g.n)?, int(op, g.h)?, int(op, g.w)?);
        let (xv, mut yv) = (x.view()?, y.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&p).arg(&h).arg(&w).arg(&mut yv);
        // SAFETY: one thread per output; the input holds the matching count (checked).
        unsafe { b.launch(grid_for(lens.1)) }.map_err(|e| err(op, e))?;
        Ok(())
    }
}
