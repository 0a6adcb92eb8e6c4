//! Launch wrappers for `kernels/optim.cu` (and the optimiser parameters the
//! fused passes of `kernels/linear.cu` take): Adam/AdamW and SGD.

use super::device::{err, grid_for, CudaDevice};
use crate::cpu::optim::{AdamStep, OptimStep, SgdStep};
use crate::error::Result;
use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};

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

impl CudaDevice {
    /// One optimiser step on device buffers: `w` (n values) with gradient
    /// `g` and state `a` (Adam m / SGD momentum) and `b` (Adam v; unused by
    /// SGD, any buffer).
    pub fn optim_on(
        &self,
        p: &OptimParams,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        (a, b): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
        n: usize,
    ) -> Result<()> {
        let func = self.function("optim", "ffwd_optim_f32")?;
        let nl = n as i64;
        let mut lb = self.stream.launch_builder(&func);
        lb.arg(w).arg(g).arg(a).arg(b).arg(&nl).arg(p);
        // SAFETY: w, g and a hold n floats (b too under Adam; SGD never reads it).
        unsafe { lb.launch(grid_for(n)) }.map_err(|e| err("optim", e))?;
        Ok(())
    }

    /// One Adam/AdamW step; returns (w, m, v).
    pub fn adam(&self, step: &AdamStep, w: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> Result<[Vec<f32>; 3]> {
        let (mut wd, gd, mut md, mut vd) = (self.up(w)?, self.up(g)?, self.up(m)?, self.up(v)?);
        self.optim_on(&OptimParams::adam(step), &mut wd, &gd, (&mut md, &mut vd), w.len())?;
        Ok([self.down(&wd, w.len())?, self.down(&md, w.len())?, self.down(&vd, w.len())?])
    }

    /// One SGD step; returns (w, buf).
    pub fn sgd(&self, step: &SgdStep, w: &[f32], g: &[f32], buf: &[f32]) -> Result<[Vec<f32>; 2]> {
        let (mut wd, gd, mut bd, mut unused) = (self.up(w)?, self.up(g)?, self.up(buf)?, self.zeros(1)?);
        self.optim_on(&OptimParams::sgd(step), &mut wd, &gd, (&mut bd, &mut unused), w.len())?;
        Ok([self.down(&wd, w.len())?, self.down(&bd, w.len())?])
    }
}
