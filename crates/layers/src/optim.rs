//! Optimiser state for one parameter tensor, stepping through the backend.

use crate::config::{OptimConfig, OptimKind};
use crate::state::StateIo;
use crate::Result;
use ffwd_kernels::{AdamStep, Backend, Len, OptimStep, SgdStep};

/// Moments (Adam/AdamW) or the momentum buffer (SGD) of one tensor on the
/// backend, and the step count.
#[derive(Clone, Debug)]
pub struct OptState<B: Backend> {
    cfg: OptimConfig,
    a: B::Buf,
    b: B::Buf,
    t: u64,
    /// The learning rate's factor of the run's schedule (1: as configured).
    scale: f32,
}

impl<B: Backend> OptState<B> {
    /// Zero state for a tensor of `len` values.
    pub fn new(be: &B, cfg: &OptimConfig, len: usize) -> Result<Self> {
        let b = if cfg.kind == OptimKind::Sgd { B::Buf::default() } else { be.zeros(len)? };
        Ok(Self { cfg: cfg.clone(), a: be.zeros(len)?, b, t: 0, scale: 1.0 })
    }
    /// Zero state laid out as the weights `w` (the backend's packed layout).
    pub fn for_packed(be: &B, cfg: &OptimConfig, w: &B::Packed) -> Result<Self> {
        let b = if cfg.kind == OptimKind::Sgd { B::Buf::default() } else { be.packed_state(w)? };
        Ok(Self { cfg: cfg.clone(), a: be.packed_state(w)?, b, t: 0, scale: 1.0 })
    }
    pub fn steps(&self) -> u64 {
        self.t
    }
    /// Count one step and return its hyper-parameters and the state buffers
    /// (for fused kernels that apply the update themselves).
    pub fn next_step(&mut self) -> (OptimStep, &mut B::Buf, &mut B::Buf) {
        self.t += 1;
        let mut step = optim_step(&self.cfg, self.t);
        if self.scale != 1.0 {
            match &mut step {
                OptimStep::Adam(s) => s.lr *= self.scale,
                OptimStep::Sgd(s) => s.lr *= self.scale,
            }
        }
        (step, &mut self.a, &mut self.b)
    }

    /// Save or load the state of the tensor `name`: `{name}.t` (steps),
    /// `{name}.m` (Adam's first moment; SGD's momentum buffer) and
    /// `{name}.v` (Adam's second moment). `packed`: the weights whose
    /// layout the state shares, if packed.
    pub fn walk_state(&mut self, be: &B, io: &mut StateIo<'_>, name: &str, packed: Option<&B::Packed>) -> Result<()> {
        if let StateIo::LrScale(s) = io {
            self.scale = *s;
            return Ok(());
        }
        io.counter(&format!("{name}.t"), &mut self.t)?;
        for (suffix, buf) in [("m", &mut self.a), ("v", &mut self.b)] {
            if buf.is_empty() {
                continue;
            }
            let n = format!("{name}.{suffix}");
            match packed {
                Some(w) => io.packed(be, &n, w, buf)?,
                None => io.buf(be, &n, buf)?,
            }
        }
        Ok(())
    }

    /// Apply one update of `w` with gradient `g`.
    pub fn step(&mut self, be: &B, w: &mut B::Buf, g: &B::Buf) -> Result<()> {
        let (step, a, b) = self.next_step();
        be.optim_step(&step, w, g, a, b)?;
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
