//! Row reductions in the L32 order (see [`crate::numerics::l32_tree`]) and
//! the normalisations built on them.
//!
//! Normalisation spec, per row x of length D: `ss = l32_sumsq(x)`; RMS:
//! `den = sqrt(ss / D) + eps`; L2: `den = sqrt(ss) + eps`; `inv = 1 / den`;
//! `y_i = x_i · inv`. Standardisation: `μ = l32_sum(x) / D`, `c = x − μ`,
//! `σ² = l32_sumsq(c) / D`, `y = c · (1 / √(σ² + ε))`.

use super::Storage;
use crate::error::Result;

/// Which length normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    /// x / (√mean(x²) + ε): unit mean-square activity (the default).
    #[default]
    Rms,
    /// x / (‖x‖₂ + ε).
    L2,
    /// No normalisation.
    None,
}

/// The spec of a row's normaliser from its sum of squares.
#[inline(always)]
pub fn norm_inv(kind: Norm, ss: f32, d: usize, eps: f32) -> f32 {
    match kind {
        Norm::Rms => 1.0 / ((ss / d as f32).sqrt() + eps),
        Norm::L2 => 1.0 / (ss.sqrt() + eps),
        Norm::None => 1.0,
    }
}

/// The reductions family. `x` is row-major with rows of `d`.
pub trait ReduceOps: Storage {
    /// Row sums of squares in the L32 order (`out` resized to the rows).
    fn row_sumsq(&self, x: &Self::Buf, d: usize, out: &mut Self::Buf) -> Result<()>;
    /// Row sums in the L32 order.
    fn row_sum(&self, x: &Self::Buf, d: usize, out: &mut Self::Buf) -> Result<()>;
    /// Length-normalise each row (`out` resized).
    fn normalize_rows(&self, x: &Self::Buf, out: &mut Self::Buf, d: usize, kind: Norm, eps: f32) -> Result<()>;
    /// [`ReduceOps::normalize_rows`] with each row's sum of squares already
    /// known (`sumsq`, one per row; the same bits when they are the rows'
    /// L32 sums of squares, as an FF forward's goodness is).
    fn normalize_rows_given(
        &self,
        x: &Self::Buf,
        sumsq: &Self::Buf,
        out: &mut Self::Buf,
        d: usize,
        kind: Norm,
        eps: f32,
    ) -> Result<()>;
    /// Standardise each row (layer norm without gain or bias; `y` resized).
    fn standardize_rows(&self, x: &Self::Buf, d: usize, eps: f32, y: &mut Self::Buf) -> Result<()>;
}

/// Rows of a row-major buffer of `len` values with rows of `d`, or an
/// error naming `op`.
pub(crate) fn rows_of(op: &'static str, len: usize, d: usize) -> Result<usize> {
    if d == 0 || !len.is_multiple_of(d) {
        return Err(crate::error::shape_err(op, format!("{len} values are not whole rows of {d}")));
    }
    Ok(len / d)
}
