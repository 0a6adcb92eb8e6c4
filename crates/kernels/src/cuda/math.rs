//! Launch wrappers for `kernels/math.cu`: the elementwise transcendentals.

use super::device::{err, grid_for, CudaDevice};
use crate::cpu::math::Unary;
use crate::error::Result;
use cudarc::driver::PushKernelArg;

impl CudaDevice {
    /// Elementwise transcendental.
    pub fn unary(&self, f: Unary, x: &[f32]) -> Result<Vec<f32>> {
        let name = match f {
            Unary::Exp => "ffwd_exp_f32",
            Unary::Log1p => "ffwd_log1p_f32",
            Unary::Ln => "ffwd_ln_f32",
            Unary::Softplus => "ffwd_softplus_f32",
            Unary::Sigmoid => "ffwd_sigmoid_f32",
        };
        let func = self.function("math", name)?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(x.len())?);
        let n = x.len() as i64;
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&mut yd).arg(&n);
        // SAFETY: the kernel reads n floats of xd and writes n of yd, both that long.
        unsafe { b.launch(grid_for(x.len())) }.map_err(|e| err(name, e))?;
        self.down(&yd, x.len())
    }
}
