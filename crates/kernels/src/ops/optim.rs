//! Optimiser steps, elementwise. Host-side scalars (bias corrections,
//! 1 − β, decay factors) are computed once per step by [`AdamStep::scalars`]
//! and handed to every backend, so all backends see the same f32 values.
//!
//! Adam / AdamW spec per element (g = gradient, w = parameter):
//! ```text
//! L2 decay (Adam):       g = fma(wd, w, g)
//! decoupled (AdamW):     w = w · (1 − lr·wd)
//! m = fma(β1, m, (1−β1)·g)
//! v = fma(β2, v, ((1−β2)·g)·g)
//! d = fma(sqrt(v), c2, ε)           c2 = 1 / sqrt(1 − β2^t)
//! w = fma(−s, m / d, w)             s  = lr / (1 − β1^t)
//! ```
//! This is PyTorch's Adam (`denom = sqrt(v) / sqrt(bc2) + ε`, `w −= (lr /
//! bc1) · m / denom`) with the per-step scalars `s` and `c2` computed once
//! on the host in f64.
//!
//! SGD with momentum (PyTorch semantics):
//! ```text
//! g = fma(wd, w, g);  buf = fma(μ, buf, g);  g = nesterov ? fma(μ, buf, g) : buf
//! w = w − lr · g
//! ```

use super::Storage;
use crate::error::Result;

/// One Adam/AdamW step's hyper-parameters. `t` is the 1-based step count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// true: AdamW (decoupled decay); false: Adam with L2 decay in the gradient.
    pub decoupled: bool,
    pub t: u64,
}

/// The per-step f32 scalars every backend uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    pub lr: f32,
    pub b1: f32,
    pub b2: f32,
    pub omb1: f32,
    pub omb2: f32,
    /// The step size lr / (1 − β1^t).
    pub step: f32,
    /// 1 / sqrt(1 − β2^t), the second moment's bias correction.
    pub c2: f32,
    pub eps: f32,
    pub wd: f32,
    pub decay: f32,
    pub decoupled: bool,
}

impl AdamStep {
    pub fn scalars(&self) -> AdamScalars {
        let t = self.t.clamp(1, i32::MAX as u64) as i32;
        AdamScalars {
            lr: self.lr,
            b1: self.beta1,
            b2: self.beta2,
            omb1: 1.0 - self.beta1,
            omb2: 1.0 - self.beta2,
            step: (self.lr as f64 / (1.0 - (self.beta1 as f64).powi(t))) as f32,
            c2: (1.0 / (1.0 - (self.beta2 as f64).powi(t)).sqrt()) as f32,
            eps: self.eps,
            wd: self.weight_decay,
            decay: 1.0 - self.lr * self.weight_decay,
            decoupled: self.decoupled,
        }
    }
}

/// One SGD step's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// One optimiser step's hyper-parameters, either kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimStep {
    Adam(AdamStep),
    Sgd(SgdStep),
}

impl OptimStep {
    /// Whether the step keeps a second state buffer (Adam's v).
    pub fn has_second_state(&self) -> bool {
        matches!(self, OptimStep::Adam(_))
    }
}

/// The optimiser family.
pub trait OptimOps: Storage {
    /// One step of `w` with gradient `g` and state `a` (Adam's m, SGD's
    /// momentum buffer) and `b` (Adam's v; SGD ignores it, it may be empty).
    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut Self::Buf,
        g: &Self::Buf,
        a: &mut Self::Buf,
        b: &mut Self::Buf,
    ) -> Result<()>;
}

/// The length checks of an optimiser step.
pub(crate) fn check_step<T: super::Len + ?Sized>(
    op: &'static str,
    step: &OptimStep,
    w: &T,
    g: &T,
    a: &T,
    b: &T,
) -> Result<()> {
    use crate::error::check_len;
    check_len(op, "gradient", g.len(), w.len())?;
    check_len(op, "first state", a.len(), w.len())?;
    if step.has_second_state() {
        check_len(op, "second moment", b.len(), w.len())?;
    }
    Ok(())
}
