//! Optimiser state for one parameter tensor, stepping through the kernels.

use crate::config::{OptimConfig, OptimKind};
use crate::Result;
use ffwd_kernels::{AdamStep, CpuBackend, OptimStep, SgdStep};

/// Moments (Adam/AdamW) or the momentum buffer (SGD) of one tensor, and the
/// step count.
#[derive(Clone, Debug)]
pub struct OptState {
    cfg: OptimConfig,
    a: Vec<f32>,
    b: Vec<f32>,
    t: u64,
}

impl OptState {
    pub fn new(cfg: &OptimConfig, len: usize) -> Self {
        let zeroed = ffwd_kernels::cpu::pages::zeroed;
        let b = if cfg.kind == OptimKind::Sgd { Vec::new() } else { zeroed(len) };
        Self { cfg: cfg.clone(), a: zeroed(len), b, t: 0 }
    }
    pub fn steps(&self) -> u64 {
        self.t
    }
    /// Count one step and return its hyper-parameters and the state buffers
    /// (for fused kernels that apply the update themselves).
    pub fn next_step(&mut self) -> (OptimStep, &mut [f32], &mut [f32]) {
        self.t += 1;
        (optim_step(&self.cfg, self.t), &mut self.a, &mut self.b)
    }

    /// Apply one update of `w` with gradient `g`.
    pub fn step(&mut self, be: &CpuBackend, w: &mut [f32], g: &[f32]) -> Result<()> {
        let (step, a, b) = self.next_step();
        match step {
            OptimStep::Adam(s) => be.adam(&s, w, g, a, b)?,
            OptimStep::Sgd(s) => be.sgd(&s, w, g, a)?,
        }
        Ok(())
    }
}

/// The hyper-parameters of step `t` (counted from 1) of the optimiser `c`.
pub fn optim_step(c: &OptimConfig, t: u64) -> OptimStep {
    match c.kind {
        OptimKind::Adam | OptimKind::Adamw => OptimStep::Adam(AdamStep {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            decoupled: c.kind == OptimKind::Adamw,
            t,
        }),
        OptimKind::Sgd => OptimStep::Sgd(SgdStep {
            lr: c.lr,
            momentum: c.momentum,
            weight_decay: c.weight_decay,
            nesterov: c.nesterov,
        }),
    }
}
