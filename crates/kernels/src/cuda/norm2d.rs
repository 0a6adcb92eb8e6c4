//! Launch wrappers for `kernels/norm2d.cu` ([`Norm2dOps`] on device
//! buffers): batch norm, the block goodness and the per-image length norm
//! of conv blocks. Reductions take one warp per channel or image.

use super::device::{err, grid_for, int, warp_rows, CudaBackend, DevBuf};
use crate::error::{check_len, Result};
use crate::ops::conv::Cnhw;
use crate::ops::norm2d::{BnGrads, BnStats, Norm2dOps};
use crate::ops::Len;
use cudarc::driver::PushKernelArg;

/// (channels, values per channel) of a CNHW block as kernel arguments.
fn rows_args(op: &'static str, g: Cnhw) -> Result<(i32, i32)> {
    Ok((int(op, g.c)?, int(op, g.row())?))
}

/// (channels, images, plane) of a CNHW block as kernel arguments.
fn image_args(op: &'static str, g: Cnhw) -> Result<(i32, i32, i32)> {
    Ok((int(op, g.c)?, int(op, g.n)?, int(op, g.plane())?))
}

impl Norm2dOps for CudaBackend {
    /// The per-image coefficients of the length-norm backward.
    type NormScratch = DevBuf;

    fn batchnorm_stats(
        &self,
        x: &DevBuf,
        g: Cnhw,
        eps: f32,
        mean: &mut DevBuf,
        var: &mut DevBuf,
        rstd: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "batchnorm_stats";
        check_len(OP, "x", x.len(), g.len())?;
        for b in [&mut *mean, &mut *var, &mut *rstd] {
            b.set_len(self.dev, g.c, false)?;
        }
        if g.c == 0 {
            return Ok(());
        }
        if g.row() == 0 {
            // No values: mean and var 0, rstd of 0 (as the CPU).
            for b in [&mut *mean, &mut *var] {
                self.dev.stream.memset_zeros(&mut b.view_mut()?).map_err(|e| err(OP, e))?;
            }
            let zeros = mean.clone();
            return self.bn_rstd(&zeros, eps, rstd);
        }
        let func = self.dev.function("norm2d", "ffwd_bn_stats_f32")?;
        let (c, n) = rows_args(OP, g)?;
        let (xv, mut mv, mut vv, mut rv) = (x.view()?, mean.view_mut()?, var.view_mut()?, rstd.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&c).arg(&n).arg(&eps).arg(&mut mv).arg(&mut vv).arg(&mut rv);
        // SAFETY: one warp per channel row of n values; c values per output.
        unsafe { b.launch(warp_rows(g.c)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn bn_rstd(&self, var: &DevBuf, eps: f32, rstd: &mut DevBuf) -> Result<()> {
        const OP: &str = "bn_rstd";
        rstd.set_len(self.dev, var.len(), false)?;
        if var.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("norm2d", "ffwd_bn_rstd_f32")?;
        let c = int(OP, var.len())?;
        let (vv, mut rv) = (var.view()?, rstd.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&vv).arg(&c).arg(&eps).arg(&mut rv);
        // SAFETY: c values in each buffer.
        unsafe { b.launch(grid_for(var.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn batchnorm_apply(
        &self,
        x: &DevBuf,
        g: Cnhw,
        stats: BnStats<'_, DevBuf>,
        gamma: &DevBuf,
        beta: &DevBuf,
        y: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "batchnorm_apply";
        check_len(OP, "x", x.len(), g.len())?;
        for (what, v) in [("mean", stats.mean), ("rstd", stats.rstd), ("gamma", gamma), ("beta", beta)] {
            check_len(OP, what, v.len(), g.c)?;
        }
        y.set_len(self.dev, g.len(), false)?;
        if g.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("norm2d", "ffwd_bn_apply_f32")?;
        let (c, n) = rows_args(OP, g)?;
        let (xv, mv, rv, gv, bv, mut yv) =
            (x.view()?, stats.mean.view()?, stats.rstd.view()?, gamma.view()?, beta.view()?, y.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&c).arg(&n).arg(&mv).arg(&rv).arg(&gv).arg(&bv).arg(&mut yv);
        // SAFETY: one thread per value; the per-channel vectors hold c values (checked).
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn batchnorm_backward(
        &self,
        x: &DevBuf,
        g: Cnhw,
        stats: BnStats<'_, DevBuf>,
        gamma: &DevBuf,
        dy: &DevBuf,
        grads: BnGrads<'_, DevBuf>,
    ) -> Result<()> {
        const OP: &str = "batchnorm_backward";
        check_len(OP, "x", x.len(), g.len())?;
        check_len(OP, "dy", dy.len(), g.len())?;
        for (what, v) in [("mean", stats.mean), ("rstd", stats.rstd), ("gamma", gamma)] {
            check_len(OP, what, v.len(), g.c)?;
        }
        let BnGrads { mut dx, dgamma, dbeta } = grads;
        if let Some(dx) = dx.as_deref_mut() {
            dx.set_len(self.dev, g.len(), false)?;
        }
        dgamma.set_len(self.dev, g.c, false)?;
        dbeta.set_len(self.dev, g.c, false)?;
        if g.c == 0 {
            return Ok(());
        }
        if g.row() == 0 {
            for b in [dgamma, dbeta] {
                self.dev.stream.memset_zeros(&mut b.view_mut()?).map_err(|e| err(OP, e))?;
            }
            return Ok(());
        }
        let func = self.dev.function("norm2d", "ffwd_bn_backward_f32")?;
        let (c, n) = rows_args(OP, g)?;
        let (xv, mv, rv, gv, yv) = (x.view()?, stats.mean.view()?, stats.rstd.view()?, gamma.view()?, dy.view()?);
        let (mut dgv, mut dbv) = (dgamma.view_mut()?, dbeta.view_mut()?);
        let mut dxv = match dx {
            Some(dx) => Some(dx.view_mut()?),
            None => None,
        };
        // Without dx the kernel gets a null pointer and the flag 0, and
        // never touches it.
        let null = 0u64;
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&c).arg(&n).arg(&mv).arg(&rv).arg(&gv).arg(&yv);
        match dxv.as_mut() {
            Some(v) => b.arg(v).arg(&1i32),
            None => b.arg(&null).arg(&0i32),
        };
        b.arg(&mut dgv).arg(&mut dbv);
        // SAFETY: one warp per channel row; all buffers sized from g
        // (checked); with the flag 0 the kernel leaves the null dx alone.
        unsafe { b.launch(warp_rows(g.c)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn batchnorm_update_running(
        &self,
        mean: &DevBuf,
        var: &DevBuf,
        n: usize,
        m: f32,
        running_mean: &mut DevBuf,
        running_var: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "batchnorm_update_running";
        check_len(OP, "var", var.len(), mean.len())?;
        check_len(OP, "running mean", running_mean.len(), mean.len())?;
        check_len(OP, "running var", running_var.len(), mean.len())?;
        if mean.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("norm2d", "ffwd_bn_update_running_f32")?;
        // The same f32 factor as the specification's.
        let unbias = if n > 1 { n as f32 / (n - 1) as f32 } else { 1.0 };
        let c = int(OP, mean.len())?;
        let (mv, vv, mut rm, mut rv) = (mean.view()?, var.view()?, running_mean.view_mut()?, running_var.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&mv).arg(&vv).arg(&c).arg(&unbias).arg(&m).arg(&mut rm).arg(&mut rv);
        // SAFETY: c values in every buffer (checked).
        unsafe { b.launch(grid_for(mean.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn block_sumsq(&self, x: &DevBuf, g: Cnhw, out: &mut DevBuf) -> Result<()> {
        self.per_image("block_sumsq", "ffwd_block_sumsq_f32", x, g, None, out)
    }
    fn block_local_grad(&self, x: &DevBuf, g: Cnhw, dldg: &DevBuf, dx: &mut DevBuf) -> Result<()> {
        const OP: &str = "block_local_grad";
        check_len(OP, "x", x.len(), g.len())?;
        check_len(OP, "dL/dG", dldg.len(), g.n)?;
        dx.set_len(self.dev, g.len(), false)?;
        if g.is_empty() {
            return Ok(());
        }
        let f = self.dev.function("norm2d", "ffwd_block_local_grad_f32")?;
        let (c, n, hw) = image_args(OP, g)?;
        let (xv, lv, mut dv) = (x.view()?, dldg.view()?, dx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&xv).arg(&c).arg(&n).arg(&hw).arg(&lv).arg(&mut dv);
        // SAFETY: one thread per value; dL/dG holds g.n values (checked).
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn sample_norm_inv(&self, x: &DevBuf, g: Cnhw, eps: f32, inv: &mut DevBuf) -> Result<()> {
        self.per_image("sample_norm_inv", "ffwd_sample_norm_inv_f32", x, g, Some(eps), inv)
    }
    fn sample_norm_forward(&self, x: &DevBuf, g: Cnhw, eps: f32, y: &mut DevBuf, inv: &mut DevBuf) -> Result<()> {
        const OP: &str = "sample_norm_forward";
        self.sample_norm_inv(x, g, eps, inv)?;
        y.set_len(self.dev, g.len(), false)?;
        if g.is_empty() {
            return Ok(());
        }
        let f = self.dev.function("norm2d", "ffwd_scale_images_f32")?;
        let (c, n, hw) = image_args(OP, g)?;
        let (xv, iv, mut yv) = (x.view()?, inv.view()?, y.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&xv).arg(&c).arg(&n).arg(&hw).arg(&iv).arg(&mut yv);
        // SAFETY: one thread per value; inv holds g.n values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("scale_images", e))?;
        Ok(())
    }
    fn sample_norm_backward(
        &self,
        x: &DevBuf,
        g: Cnhw,
        inv: &DevBuf,
        dy: &DevBuf,
        dx: &mut DevBuf,
        scratch: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "sample_norm_backward";
        check_len(OP, "x", x.len(), g.len())?;
        check_len(OP, "dy", dy.len(), g.len())?;
        check_len(OP, "inv", inv.len(), g.n)?;
        dx.set_len(self.dev, g.len(), false)?;
        scratch.set_len(self.dev, g.n, false)?;
        if g.n == 0 {
            return Ok(());
        }
        let (c, n, hw) = image_args(OP, g)?;
        {
            let f = self.dev.function("norm2d", "ffwd_sample_norm_coef_f32")?;
            let (xv, gv, iv, mut cv) = (x.view()?, dy.view()?, inv.view()?, scratch.view_mut()?);
            let mut b = self.dev.stream.launch_builder(&f);
            b.arg(&xv).arg(&gv).arg(&c).arg(&n).arg(&hw).arg(&iv).arg(&mut cv);
            // SAFETY: one warp per image; x and dy hold g.len() values, inv g.n.
            unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("sample_norm_coef", e))?;
        }
        if g.is_empty() {
            return Ok(());
        }
        let f = self.dev.function("norm2d", "ffwd_sample_norm_dx_f32")?;
        let (xv, gv, iv, cv, mut dv) = (x.view()?, dy.view()?, inv.view()?, scratch.view()?, dx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&xv).arg(&gv).arg(&c).arg(&n).arg(&hw).arg(&iv).arg(&cv).arg(&mut dv);
        // SAFETY: one thread per value.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("sample_norm_dx", e))?;
        Ok(())
    }
}

impl CudaBackend {
    /// A one-warp-per-image reduction `name` of CNHW `x` into `out` (g.n
    /// values), with `eps` when the kernel takes one.
    fn per_image(
        &self,
        op: &'static str,
        name: &str,
        x: &DevBuf,
        g: Cnhw,
        eps: Option<f32>,
        out: &mut DevBuf,
    ) -> Result<()> {
        check_len(op, "x", x.len(), g.len())?;
        out.set_len(self.dev, g.n, false)?;
        if g.n == 0 {
            return Ok(());
        }
        let f = self.dev.function("norm2d", name)?;
        let (c, n, hw) = image_args(op, g)?;
        let dummy = self.dev.dummy()?;
        let xv = if x.is_empty() { dummy.slice(0..0) } else { x.view()? };
        let mut ov = out.view_mut()?;
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&xv).arg(&c).arg(&n).arg(&hw);
        if let Some(e) = &eps {
            b.arg(e);
        }
        b.arg(&mut ov);
        // SAFETY: one warp per image; g.len() values read, g.n written (checked).
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err(op, e))?;
        Ok(())
    }
}
