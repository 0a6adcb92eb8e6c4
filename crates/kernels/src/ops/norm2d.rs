//! Normalisations of CNHW blocks: batch norm over channels (the Trifecta's
//! block input) and the per-image length norm (vanilla FF's), forward and
//! backward, and the per-image goodness of a block.
//!
//! **Batch-norm spec**, per channel row x of n = N·H·W values:
//! `mean = l32_sum(x) / n`; `var = l32 Σ fma(d, d, lane), d = x_i − mean,
//! / n`; `rstd = 1 / √(var + ε)` ([`bn_rstd`]); `y_i = ((x_i − mean) ·
//! rstd) · γ + β`. Evaluation applies the same formula with the running
//! mean and `rstd` of the running variance. Backward: `x̂_i` recomputed as
//! above; `Σdy = l32_sum(dy)`, `Σdy·x̂ = l32 Σ fma(dy_i, x̂_i, lane)`;
//! `dγ = Σdy·x̂`, `dβ = Σdy`; `dx_i = (γ · rstd) · ((dy_i − Σdy / n) −
//! x̂_i · (Σdy·x̂ / n))`. Running statistics: `r ← (1 − m) · r + m · s`,
//! with the unbiased variance `var · (n / (n − 1))`.
//!
//! **Block goodness**, per image b: `ss_b` = the sum over channels
//! ascending, from +0.0, of `l32_sumsq(plane c of b)`; its gradient
//! `dx = x · (dL/dG_b + dL/dG_b)`.
//!
//! **Length-norm spec**, per image b over its D = C·H·W values:
//! `r = √(ss_b / D)`; `inv = 1 / (r + ε)`; `y = x · inv`. Backward: `dot_b`
//! = the same sum of per-plane `l32 Σ fma(dy, x, lane)`; `coef = −(inv ·
//! inv) · (dot_b / (D · r))` (0 when r = 0); `dx = dy · inv + x · coef`.

use super::conv::Cnhw;
use super::Storage;
use crate::error::Result;

/// `1 / √(var + ε)`, the one expression batch norm uses in training and
/// evaluation.
pub fn bn_rstd(var: f32, eps: f32) -> f32 {
    1.0 / (var + eps).sqrt()
}

/// Per-channel statistics of a batch norm (each `c` values).
pub struct BnStats<'a, T: ?Sized> {
    pub mean: &'a T,
    pub rstd: &'a T,
}

/// The gradients of a batch norm with batch statistics. Without `dx`
/// (nothing consumes the input gradient: an FF block's input, the first
/// block of a backprop net) only `dγ` and `dβ` are worked out.
pub struct BnGrads<'a, T: ?Sized> {
    pub dx: Option<&'a mut T>,
    pub dgamma: &'a mut T,
    pub dbeta: &'a mut T,
}

/// The batch-norm and block-norm family.
pub trait Norm2dOps: Storage {
    /// Work space of the length-norm backward.
    type NormScratch: Default + Clone + std::fmt::Debug + Send + Sync;

    /// Per-channel batch statistics of `x`: `mean`, biased `var` and `rstd`
    /// (each resized to the channels).
    fn batchnorm_stats(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        eps: f32,
        mean: &mut Self::Buf,
        var: &mut Self::Buf,
        rstd: &mut Self::Buf,
    ) -> Result<()>;
    /// `rstd = bn_rstd(var, eps)` per channel (evaluation from the running
    /// variance; resized).
    fn bn_rstd(&self, var: &Self::Buf, eps: f32, rstd: &mut Self::Buf) -> Result<()>;
    /// `y = ((x − mean) · rstd) · γ + β` per channel (resized).
    fn batchnorm_apply(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        stats: BnStats<'_, Self::Buf>,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// Batch-norm backward with batch statistics (outputs resized; `dx`
    /// left alone where `grads.dx` is `None`, the same `dγ`, `dβ` bits).
    fn batchnorm_backward(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        stats: BnStats<'_, Self::Buf>,
        gamma: &Self::Buf,
        dy: &Self::Buf,
        grads: BnGrads<'_, Self::Buf>,
    ) -> Result<()>;
    /// Running statistics with momentum `m` from one batch of `n` values
    /// per channel.
    fn batchnorm_update_running(
        &self,
        mean: &Self::Buf,
        var: &Self::Buf,
        n: usize,
        m: f32,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
    ) -> Result<()>;
    /// Per-image sum of squares of a CNHW block (`out` resized to g.n).
    fn block_sumsq(&self, x: &Self::Buf, g: Cnhw, out: &mut Self::Buf) -> Result<()>;
    /// The block goodness gradient `dx = x · (dL/dG_b + dL/dG_b)` (resized).
    fn block_local_grad(&self, x: &Self::Buf, g: Cnhw, dldg: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// The length norm's `inv` per image (resized to g.n).
    fn sample_norm_inv(&self, x: &Self::Buf, g: Cnhw, eps: f32, inv: &mut Self::Buf) -> Result<()>;
    /// Per-image length normalisation: `y` and `inv` (both resized).
    fn sample_norm_forward(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        eps: f32,
        y: &mut Self::Buf,
        inv: &mut Self::Buf,
    ) -> Result<()>;
    /// Backward of [`Norm2dOps::sample_norm_forward`] (`dx` resized).
    fn sample_norm_backward(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        inv: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        scratch: &mut Self::NormScratch,
    ) -> Result<()>;
}
