//! Launch wrappers for `kernels/pool.cu`: 2×2 max-pool and nearest 2× upsampling.

use super::device::{err, grid_for, CudaDevice};
use crate::cpu::conv::Cnhw;
use crate::error::Result;
use cudarc::driver::PushKernelArg;

impl CudaDevice {
    /// 2×2 max-pool of a CNHW block `g`: (pooled values, positions).
    pub fn maxpool2_forward(&self, x: &[f32], g: Cnhw) -> Result<(Vec<f32>, Vec<u8>)> {
        let func = self.function("pool", "ffwd_maxpool2_forward_f32")?;
        let n = g.c * g.n * (g.h / 2) * (g.w / 2);
        let (xd, mut yd) = (self.up(x)?, self.zeros(n)?);
        let mut id = self.stream.alloc_zeros::<u8>(n.max(1)).map_err(|e| err("alloc", e))?;
        let (p, h, w) = ((g.c * g.n) as i32, g.h as i32, g.w as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&p).arg(&h).arg(&w).arg(&mut yd).arg(&mut id);
        // SAFETY: planes·h·w inputs are read; n outputs and n positions written.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err("maxpool2_forward", e))?;
        let idx = self.stream.clone_dtoh(&id).map_err(|e| err("download", e))?;
        Ok((self.down(&yd, n)?, idx[..n].to_vec()))
    }

    /// The max-pool's input gradient (CNHW `g`).
    pub fn maxpool2_backward(&self, dy: &[f32], idx: &[u8], g: Cnhw) -> Result<Vec<f32>> {
        let func = self.function("pool", "ffwd_maxpool2_backward_f32")?;
        let (gd, mut xd) = (self.up(dy)?, self.zeros(g.len())?);
        let id = self.stream.clone_htod(if idx.is_empty() { &[0u8][..] } else { idx }).map_err(|e| err("upload", e))?;
        let (p, h, w) = ((g.c * g.n) as i32, g.h as i32, g.w as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&gd).arg(&id).arg(&p).arg(&h).arg(&w).arg(&mut xd);
        // SAFETY: one thread per input element; dy and idx hold the pooled count.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("maxpool2_backward", e))?;
        self.down(&xd, g.len())
    }

    /// Nearest 2× upsampling (`forward`) of CNHW `g`, or its input gradient
    /// from a 2h × 2w `x` (`!forward`).
    pub fn upsample2(&self, x: &[f32], g: Cnhw, forward: bool) -> Result<Vec<f32>> {
        let (name, n) = if forward {
            ("ffwd_upsample2_forward_f32", 4 * g.len())
        } else {
            ("ffwd_upsample2_backward_f32", g.len())
        };
        let func = self.function("pool", name)?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(n)?);
        let (p, h, w) = ((g.c * g.n) as i32, g.h as i32, g.w as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&p).arg(&h).arg(&w).arg(&mut yd);
        // SAFETY: one thread per output; inputs hold the matching count.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(name, e))?;
        self.down(&yd, n)
    }
}
