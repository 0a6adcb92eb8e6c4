//! Launch wrappers for `kernels/optim.cu` (and the optimiser parameters the
//! fused passes of `kernels/linear.cu` take): Adam/AdamW and SGD.

use super::device::{err, grid_for, CudaBackend, DevBuf};
use crate::error::Result;
use crate::ops::optim::{check_step, AdamStep, OptimOps, OptimStep, SgdStep};
use crate::ops::Len;
use cudarc::driver::{DeviceRepr, PushKernelArg};

/// One optimiser step's scalars as the kernels take them (`struct
/// ffwd_optim` of `kernels/optim.cuh`, field for field). The Adam scalars
/// are [`AdamStep::scalars`], computed once on the host like the CPU does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OptimParams {
    /// 0 Adam/AdamW, 1 SGD.
    kind: i32,
    /// Adam: decoupled decay (AdamW); SGD: Nesterov.
    flag: i32,
    lr: f32,
    b1: f32,
    b2: f32,
    omb1: f32,
    omb2: f32,
    step: f32,
    c2: f32,
    eps: f32,
    wd: f32,
    decay: f32,
    momentum: f32,
}

// SAFETY: repr(C) plain data of i32 and f32 fields, the layout of `struct
// ffwd_optim` (13 four-byte fields, no padding).
unsafe impl DeviceRepr for OptimParams {}

impl OptimParams {
    pub fn new(step: &OptimStep) -> Self {
        match step {
            OptimStep::Adam(a) => Self::adam(a),
            OptimStep::Sgd(s) => Self::sgd(s),
        }
    }

    pub fn adam(step: &AdamStep) -> Self {
        let s = step.scalars();
        Self {
            kind: 0,
            flag: s.decoupled as i32,
            lr: s.lr,
            b1: s.b1,
            b2: s.b2,
            omb1: s.omb1,
            omb2: s.omb2,
            step: s.step,
            c2: s.c2,
            eps: s.eps,
            wd: s.wd,
            decay: s.decay,
            momentum: 0.0,
        }
    }

    pub fn sgd(step: &SgdStep) -> Self {
        Self {
            kind: 1,
            flag: step.nesterov as i32,
            lr: step.lr,
            wd: step.weight_decay,
            momentum: step.momentum,
            ..Default::default()
        }
    }

    /// Whether the step keeps a second state buffer (Adam's v).
    pub fn has_second_state(&self) -> bool {
        self.kind == 0
    }
}

impl CudaBackend {
    /// One optimiser step on device buffers: `w` with gradient `g` and
    /// state `a` (Adam m / SGD momentum) and `b` (Adam v; unused by SGD,
    /// may be empty).
    pub(crate) fn launch_optim(
        &self,
        op: &'static str,
        step: &OptimStep,
        w: &mut DevBuf,
        g: &DevBuf,
        a: &mut DevBuf,
        b: &mut DevBuf,
    ) -> Result<()> {
        check_step(op, step, w, g, a, b)?;
        let n = w.len();
        if n == 0 {
            return Ok(());
        }
        let p = OptimParams::new(step);
        let func = self.dev.function("optim", "ffwd_optim_f32")?;
        let nl = n as i64;
        let (mut wv, gv, mut av) = (w.view_mut()?, g.view()?, a.view_mut()?);
        let mut bv = self.maybe_mut(b)?;
        let mut lb = self.dev.stream.launch_builder(&func);
        lb.arg(&mut wv).arg(&gv).arg(&mut av).arg(&mut bv).arg(&nl).arg(&p);
        // SAFETY: w, g and a hold n floats (b too under Adam; SGD never reads
        // it), checked above.
        unsafe { lb.launch(grid_for(n)) }.map_err(|e| err(op, e))?;
        Ok(())
    }
}

impl OptimOps for CudaBackend {
    fn optim_step(&self, step: &OptimStep, w: &mut DevBuf, g: &DevBuf, a: &mut DevBuf, b: &mut DevBuf) -> Result<()> {
        self.launch_optim("optim_step", step, w, g, a, b)
    }
}
