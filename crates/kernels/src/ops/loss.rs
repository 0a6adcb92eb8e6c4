//! Losses and their gradients. Each writes its mean loss into a
//! statistics slot ([`StatSlot`]) rather than returning it.
//!
//! Conventions of the goodness losses: the batch holds `n` positive rows
//! then `n` negative rows (row i and row n+i come from the same image).
//! `gm` is the goodness in the chosen form: `G` (sum) or `G / D` (mean).
//! `w = 1 / n`.
//!
//! * Threshold (Hinton): `s⁺ = θ − gm⁺`, `s⁻ = gm⁻ − θ`; loss
//!   `w·Σ softplus(s)`; `dL/dgm = ∓ w·σ(s)` (− for positives).
//! * SymBa: `s = (−α)·(gm⁺ − gm⁻)` per pair; loss `w·Σ softplus(s)`;
//!   `t = (α·σ(s))·w`, `dL/dgm⁺ = −t`, `dL/dgm⁻ = t`.
//! * Mean form: `dL/dG = (dL/dgm) / D`.
//! * Sums over rows are L32 sums.
//!
//! The other losses are specified at their trait methods.

use super::{Len, StatSlot, Storage};
use crate::error::Result;

/// The goodness used by a loss: `Σh²` or `Σh²/D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GoodnessForm {
    #[default]
    Sum,
    Mean,
}

/// Per-layer FF loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FfLoss {
    /// `softplus(θ − G⁺) + softplus(G⁻ − θ)`.
    Threshold { theta: f32 },
    /// `softplus(−α (G⁺ − G⁻))`.
    Symba { alpha: f32 },
}

/// ε of the cosine: each norm is taken as `max(‖·‖, ε)`.
pub const COSINE_EPS: f32 = 1e-8;

/// How [`LossOps::goodness_means`] averages the n positive and the n
/// negative goodness values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeanOf {
    /// `l32_sum(g[half]) / n` in f32 (the FF MLP's reports).
    L32,
    /// `(Σ g[half] in f64, ascending, from the sum's neutral −0.0) / n / d`,
    /// rounded to f32: the mean per value of a block of `d` values (the
    /// conv nets' reports).
    PerValueF64 { d: usize },
}

/// What a discriminator's logits stand for in [`LossOps::gan_loss`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GanHalves {
    /// `2n` logits: n of real samples (target 1), then n of fakes (target 0).
    RealThenFake,
    /// `n` logits, all with target 1 (the generator's non-saturating loss).
    AllReal,
}

/// Where a loss writes: its gradient (resized to the input), its work
/// space, and the statistics slot of its mean loss.
pub struct LossOut<'a, B: LossOps> {
    pub grad: &'a mut B::Buf,
    pub scratch: &'a mut B::LossScratch,
    pub stat: StatSlot<'a, B::Buf>,
}

impl<'a, B: LossOps> LossOut<'a, B> {
    pub fn new(grad: &'a mut B::Buf, scratch: &'a mut B::LossScratch, stat: StatSlot<'a, B::Buf>) -> Self {
        Self { grad, scratch, stat }
    }
}

/// The loss family.
pub trait LossOps: Storage {
    /// Work space of the losses, kept between steps.
    type LossScratch: Default + Clone + std::fmt::Debug + Send + Sync;

    /// The FF loss over `g` (n positives then n negatives, sum-form goodness
    /// of a layer of width `d`): `dL/dG` into `out.grad` and the mean loss.
    fn ff_loss(&self, loss: FfLoss, form: GoodnessForm, d: usize, g: &Self::Buf, out: LossOut<'_, Self>) -> Result<()>;
    /// The mean goodness of the positives and of the negatives (the two
    /// halves of `g`) at `out.at` and `out.at + 1`.
    fn goodness_means(&self, g: &Self::Buf, mean: MeanOf, out: StatSlot<'_, Self::Buf>) -> Result<()>;
    /// Softmax cross-entropy of `logits` (labels × c): per row `mx` = the
    /// first maximum by `>`, `sh = z − mx`, `e = exp(sh)`, `s = l32_sum(e)`,
    /// `p = e / s`; `grad = (p − onehot)·w`, `w = 1/m`; the mean
    /// loss `l32_sum(ln(s) − sh_y) · w` at `out`.
    fn softmax_xent(&self, logits: &Self::Buf, c: usize, labels: &Self::Ids, out: LossOut<'_, Self>) -> Result<()>;
    /// Binary cross-entropy of the softmax of `logits` against one-hot
    /// targets (the FFCL output loss): `p` as in
    /// [`LossOps::softmax_xent`], `q = (s − e)/s`; loss `w·Σ −[t·max(ln p,
    /// −100) + (1−t)·max(ln q, −100)]`, `w = 1/(m·c)`;
    /// `g = w·(p − t)/max(p·q, 1e-12)`, `dz = p·(g − l32 Σ p·g)`.
    fn softmax_bce(&self, logits: &Self::Buf, c: usize, labels: &Self::Ids, out: LossOut<'_, Self>) -> Result<()>;
    /// Cosine-embedding loss (target +1) of rows of `a` against the
    /// constant rows of `b` (m × d): `w·Σ (1 − cos)`, `w = 1/m`, `cos =
    /// (a·b) / (max(‖a‖, ε)·max(‖b‖, ε))` ([`COSINE_EPS`]); `grad = dL/da
    /// = −w·(b/den − k·a)` with `k = cos/‖a‖²` where `‖a‖ > ε`, else 0.
    /// Dots and squared norms are L32 sums of the products.
    fn cosine_embedding(&self, a: &Self::Buf, b: &Self::Buf, d: usize, out: LossOut<'_, Self>) -> Result<()>;
    /// Softmax of each row of `logits` (rows of `c`; `out` resized): `e /
    /// l32_sum(e)` with `e` as in [`LossOps::softmax_xent`].
    fn softmax_rows(
        &self,
        logits: &Self::Buf,
        c: usize,
        out: &mut Self::Buf,
        scratch: &mut Self::LossScratch,
    ) -> Result<()>;
    /// Mean squared error of `a` against `b`: `δ = a − b`, loss
    /// `l32_sumsq(δ) / len` at `out`, `grad = δ · (2 / len)` (resized).
    fn mse(&self, a: &Self::Buf, b: &Self::Buf, grad: &mut Self::Buf, out: StatSlot<'_, Self::Buf>) -> Result<()>;
    /// The non-saturating GAN loss of logits `z`, `w = 1/n`: a real
    /// logit's term `softplus(−z)`, its gradient `−(σ(−z)·w)`; a fake's
    /// `softplus(z)` and `σ(z)·w`. The loss is `(L_real + L_fake)·w` with
    /// each part an L32 sum over its rows (`L_real · w` when all are real).
    fn gan_loss(
        &self,
        z: &Self::Buf,
        halves: GanHalves,
        grad: &mut Self::Buf,
        scratch: &mut Self::LossScratch,
        out: StatSlot<'_, Self::Buf>,
    ) -> Result<()>;
}

/// Rows of logits for `labels` of `c` classes, checked.
pub(crate) fn labelled_rows<T: Len>(op: &'static str, logits: &T, c: usize, labels: usize) -> Result<usize> {
    crate::error::check_len(op, "logits", logits.len(), labels * c)?;
    if c == 0 {
        return Err(crate::error::shape_err(op, "zero classes"));
    }
    Ok(labels)
}
