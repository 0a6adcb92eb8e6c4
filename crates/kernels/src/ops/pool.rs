//! 2× resampling of CNHW blocks: 2×2 max-pool (stride 2) and 2× nearest
//! upsampling, forward and backward.
//!
//! **Max-pool spec.** Each output takes the window's values in the order
//! (0,0), (0,1), (1,0), (1,1) and keeps the first one that no later value
//! beats by `>`; its position (0–3) is recorded. Backward routes each
//! output's gradient to that position and writes +0.0 elsewhere. Odd sides
//! are floored (the last row or column is dropped, as PyTorch's
//! `MaxPool2d(2)` does) and receive zero gradient. Through a ReLU before
//! the pool (`maxpool2_relu_backward`): that gradient where the ReLU's
//! output is `> 0`, else +0.0 (at the recorded position the ReLU's output
//! is the pool's, so the pool's output is what is read).
//!
//! **Upsampling spec.** Output (2y + a, 2x + b) copies input (y, x).
//! Backward: each input's gradient is `((g(0,0) + g(0,1)) + g(1,0)) +
//! g(1,1)` over its four outputs, in that order.

use super::conv::Cnhw;
use super::Storage;
use crate::error::Result;

/// The pool family.
pub trait PoolOps: Storage {
    /// The positions a max-pool records (one byte per output).
    type PoolIdx: Default + Clone + std::fmt::Debug + Send + Sync;

    /// `y` (CNHW, h/2 × w/2) and the argmax positions `idx` (both resized).
    fn maxpool2_forward(&self, x: &Self::Buf, g: Cnhw, y: &mut Self::Buf, idx: &mut Self::PoolIdx) -> Result<()>;
    /// `dx` (CNHW `g`, the pool's input; resized) from `dy` and the positions.
    fn maxpool2_backward(&self, dy: &Self::Buf, idx: &Self::PoolIdx, g: Cnhw, dx: &mut Self::Buf) -> Result<()>;
    /// The gradient through a ReLU and the max-pool after it in one pass:
    /// `dx = relu_backward(r, maxpool2_backward(dy, idx))` bit for bit, `r`
    /// the ReLU's output (the pool's input, CNHW `g`), read where it
    /// counts from the pool's output `y` (the value the pool recorded is
    /// `r` at the recorded position; elsewhere the gradient is +0.0
    /// either way); `dx` resized.
    fn maxpool2_relu_backward(
        &self,
        dy: &Self::Buf,
        idx: &Self::PoolIdx,
        y: &Self::Buf,
        g: Cnhw,
        dx: &mut Self::Buf,
    ) -> Result<()>;
    /// The end of a conv block's forward in one pass over its planes:
    /// `r = relu(r)` in place (CNHW `g`); with `pool`, the 2×2 max-pool of
    /// it into `(y, idx)` (resized); with `sumsq`, each image's sum of
    /// squares of the output — the pool's, else `r` — (resized to g.n).
    /// Bit for bit [`MathOps::relu`](crate::ops::MathOps::relu), then
    /// [`PoolOps::maxpool2_forward`], then
    /// [`Norm2dOps::block_sumsq`](crate::ops::Norm2dOps::block_sumsq).
    fn relu_pool_sumsq(
        &self,
        r: &mut Self::Buf,
        g: Cnhw,
        pool: Option<(&mut Self::Buf, &mut Self::PoolIdx)>,
        sumsq: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// Nearest 2× upsampling of `x` (CNHW `g`) into `y` (2h × 2w, resized).
    fn upsample2_forward(&self, x: &Self::Buf, g: Cnhw, y: &mut Self::Buf) -> Result<()>;
    /// `dx` (CNHW `g`, the upsampling's input; resized) from `dy`.
    fn upsample2_backward(&self, dy: &Self::Buf, g: Cnhw, dx: &mut Self::Buf) -> Result<()>;
}

/// A 2×2 pool needs planes of at least 2×2.
pub(crate) fn pool_check(op: &'static str, g: Cnhw) -> Result<()> {
    if g.h < 2 || g.w < 2 {
        return Err(crate::error::shape_err(op, format!("{}×{} planes: a 2×2 pool needs at least 2×2", g.h, g.w)));
    }
    Ok(())
}
