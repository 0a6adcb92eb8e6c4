//! Launch wrappers for `kernels/math.cu` ([`MathOps`] on device buffers):
//! the elementwise transcendentals, the ReLU, its mask and the sum. One
//! thread per value.

use super::device::{err, grid_for, CudaBackend, DevBuf};
use crate::error::{check_len, Result};
use crate::ops::math::{MathOps, Unary};
use crate::ops::Len;
use cudarc::driver::PushKernelArg;

impl MathOps for CudaBackend {
    fn unary(&self, f: Unary, x: &DevBuf, out: &mut DevBuf) -> Result<()> {
        let name = match f {
            Unary::Exp => "ffwd_exp_f32",
            Unary::Log1p => "ffwd_log1p_f32",
            Unary::Ln => "ffwd_ln_f32",
            Unary::Softplus => "ffwd_softplus_f32",
            Unary::Sigmoid => "ffwd_sigmoid_f32",
        };
        out.set_len(self.dev, x.len(), false)?;
        if x.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("math", name)?;
        let n = x.len() as i64;
        let (xv, mut yv) = (x.view()?, out.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&mut yv).arg(&n);
        // SAFETY: the kernel reads n floats of x and writes n of out, both that long.
        unsafe { b.launch(grid_for(x.len())) }.map_err(|e| err(name, e))?;
        Ok(())
    }
    fn relu(&self, x: &mut DevBuf) -> Result<()> {
        if x.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("math", "ffwd_relu_f32")?;
        let n = x.len() as i64;
        let mut xv = x.view_mut()?;
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&mut xv).arg(&n);
        // SAFETY: n floats read and written in place.
        unsafe { b.launch(grid_for(n as usize)) }.map_err(|e| err("relu", e))?;
        Ok(())
    }
    fn relu_backward(&self, y: &DevBuf, dy: &DevBuf, dx: &mut DevBuf) -> Result<()> {
        check_len("relu_backward", "dy", dy.len(), y.len())?;
        dx.set_len(self.dev, y.len(), false)?;
        if y.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("math", "ffwd_relu_backward_f32")?;
        let n = y.len() as i64;
        let (yv, gv, mut xv) = (y.view()?, dy.view()?, dx.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&yv).arg(&gv).arg(&mut xv).arg(&n);
        // SAFETY: n floats in each buffer (checked).
        unsafe { b.launch(grid_for(n as usize)) }.map_err(|e| err("relu_backward", e))?;
        Ok(())
    }
    fn add_assign(&self, acc: &mut DevBuf, x: &DevBuf) -> Result<()> {
        check_len("add_assign", "x", x.len(), acc.len())?;
        if x.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("math", "ffwd_add_f32")?;
        let n = x.len() as i64;
        let (mut av, xv) = (acc.view_mut()?, x.view()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&mut av).arg(&xv).arg(&n);
        // SAFETY: n floats in each buffer (checked).
        unsafe { b.launch(grid_for(n as usize)) }.map_err(|e| err("add_assign", e))?;
        Ok(())
    }
}
