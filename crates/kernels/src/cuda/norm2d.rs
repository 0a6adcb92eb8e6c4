//! Launch wrappers for `kernels/norm2d.cu`: batch norm and the per-image length norm of conv blocks.

use super::device::{err, grid_for, warp_rows, CudaDevice};
use crate::cpu::conv::Cnhw;
use crate::error::Result;
use cudarc::driver::PushKernelArg;

impl CudaDevice {
    /// Batch-norm statistics of CNHW `g`: (mean, var, rstd).
    pub fn batchnorm_stats(&self, x: &[f32], g: Cnhw, eps: f32) -> Result<[Vec<f32>; 3]> {
        let func = self.function("norm2d", "ffwd_bn_stats_f32")?;
        let xd = self.up(x)?;
        let (mut md, mut vd, mut rd) = (self.zeros(g.c)?, self.zeros(g.c)?, self.zeros(g.c)?);
        let (c, n) = (g.c as i32, g.row() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&c).arg(&n).arg(&eps).arg(&mut md).arg(&mut vd).arg(&mut rd);
        // SAFETY: one warp per channel row of n values; c values per output.
        unsafe { b.launch(warp_rows(g.c)) }.map_err(|e| err("bn_stats", e))?;
        Ok([self.down(&md, g.c)?, self.down(&vd, g.c)?, self.down(&rd, g.c)?])
    }

    /// Batch-norm apply: `((x − mean)·rstd)·γ + β` per channel.
    pub fn batchnorm_apply(&self, x: &[f32], g: Cnhw, p: [&[f32]; 4]) -> Result<Vec<f32>> {
        let func = self.function("norm2d", "ffwd_bn_apply_f32")?;
        let xd = self.up(x)?;
        let pd = p.iter().map(|v| self.up(v)).collect::<Result<Vec<_>>>()?;
        let mut yd = self.zeros(g.len())?;
        let (c, n) = (g.c as i32, g.row() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&c).arg(&n).arg(&pd[0]).arg(&pd[1]).arg(&pd[2]).arg(&pd[3]).arg(&mut yd);
        // SAFETY: one thread per value; the per-channel vectors hold c values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("bn_apply", e))?;
        self.down(&yd, g.len())
    }

    /// Batch-norm backward: (dx, dγ, dβ).
    pub fn batchnorm_backward(&self, x: &[f32], g: Cnhw, p: [&[f32]; 3], dy: &[f32]) -> Result<[Vec<f32>; 3]> {
        let func = self.function("norm2d", "ffwd_bn_backward_f32")?;
        let (xd, gd) = (self.up(x)?, self.up(dy)?);
        let pd = p.iter().map(|v| self.up(v)).collect::<Result<Vec<_>>>()?;
        let (mut dxd, mut dgd, mut dbd) = (self.zeros(g.len())?, self.zeros(g.c)?, self.zeros(g.c)?);
        let (c, n) = (g.c as i32, g.row() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd)
            .arg(&c)
            .arg(&n)
            .arg(&pd[0])
            .arg(&pd[1])
            .arg(&pd[2])
            .arg(&gd)
            .arg(&mut dxd)
            .arg(&mut dgd)
            .arg(&mut dbd);
        // SAFETY: one warp per channel row; all buffers sized from g.
        unsafe { b.launch(warp_rows(g.c)) }.map_err(|e| err("bn_backward", e))?;
        Ok([self.down(&dxd, g.len())?, self.down(&dgd, g.c)?, self.down(&dbd, g.c)?])
    }

    /// Running-statistics update: (running mean, running var).
    pub fn batchnorm_update_running(
        &self,
        mean: &[f32],
        var: &[f32],
        n: usize,
        m: f32,
        running: (&[f32], &[f32]),
    ) -> Result<[Vec<f32>; 2]> {
        let func = self.function("norm2d", "ffwd_bn_update_running_f32")?;
        let (md, vd, mut rm, mut rv) = (self.up(mean)?, self.up(var)?, self.up(running.0)?, self.up(running.1)?);
        let unbias = if n > 1 { n as f32 / (n - 1) as f32 } else { 1.0 };
        let c = mean.len() as i32;
        let mut b = self.stream.launch_builder(&func);
        b.arg(&md).arg(&vd).arg(&c).arg(&unbias).arg(&m).arg(&mut rm).arg(&mut rv);
        // SAFETY: c values in every buffer.
        unsafe { b.launch(grid_for(mean.len())) }.map_err(|e| err("bn_update_running", e))?;
        Ok([self.down(&rm, mean.len())?, self.down(&rv, mean.len())?])
    }

    /// Per-image sum of squares of a CNHW block.
    pub fn block_sumsq(&self, x: &[f32], g: Cnhw) -> Result<Vec<f32>> {
        let func = self.function("norm2d", "ffwd_block_sumsq_f32")?;
        let (xd, mut od) = (self.up(x)?, self.zeros(g.n)?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&mut od);
        // SAFETY: one warp per image; g.len() values read, g.n written.
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("block_sumsq", e))?;
        self.down(&od, g.n)
    }

    /// Per-image length norm of CNHW `g`: (y, inv).
    pub fn sample_norm_forward(&self, x: &[f32], g: Cnhw, eps: f32) -> Result<(Vec<f32>, Vec<f32>)> {
        let xd = self.up(x)?;
        let (mut inv, mut yd) = (self.zeros(g.n)?, self.zeros(g.len())?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let f = self.function("norm2d", "ffwd_sample_norm_inv_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&eps).arg(&mut inv);
        // SAFETY: one warp per image; g.len() values read, g.n written.
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("sample_norm_inv", e))?;
        let f = self.function("norm2d", "ffwd_scale_images_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&inv).arg(&mut yd);
        // SAFETY: one thread per value; inv holds g.n values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("scale_images", e))?;
        Ok((self.down(&yd, g.len())?, self.down(&inv, g.n)?))
    }

    /// Backward of the length norm: dx.
    pub fn sample_norm_backward(&self, x: &[f32], g: Cnhw, inv: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
        let (xd, gd, id) = (self.up(x)?, self.up(dy)?, self.up(inv)?);
        let (mut coef, mut dx) = (self.zeros(g.n)?, self.zeros(g.len())?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let f = self.function("norm2d", "ffwd_sample_norm_coef_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&gd).arg(&c).arg(&n).arg(&hw).arg(&id).arg(&mut coef);
        // SAFETY: one warp per image; x and dy hold g.len() values, inv g.n.
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("sample_norm_coef", e))?;
        let f = self.function("norm2d", "ffwd_sample_norm_dx_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&gd).arg(&c).arg(&n).arg(&hw).arg(&id).arg(&coef).arg(&mut dx);
        // SAFETY: one thread per value.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("sample_norm_dx", e))?;
        self.down(&dx, g.len())
    }

    /// The block goodness gradient `x · (dL/dG_b + dL/dG_b)`.
    pub fn block_local_grad(&self, x: &[f32], g: Cnhw, dldg: &[f32]) -> Result<Vec<f32>> {
        let (xd, ld, mut dx) = (self.up(x)?, self.up(dldg)?, self.zeros(g.len())?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let f = self.function("norm2d", "ffwd_block_local_grad_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&ld).arg(&mut dx);
        // SAFETY: one thread per value; dldg holds g.n values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("block_local_grad", e))?;
        self.down(&dx, g.len())
    }
}
