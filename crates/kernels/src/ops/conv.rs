//! 3×3 convolution (padding 1, stride 1, no bias) on channel-major
//! activations, forward, dW and dX.
//!
//! **Layout.** Convolutional activations are *CNHW*: channel-major, each
//! channel one contiguous row of N·H·W values (image b's plane at offset
//! b·H·W). A conv is then a single GEMM over the whole batch,
//! `Y (Cout × N·HW) = W (Cout × Cin·9) · col (Cin·9 × N·HW)`, and batch norm
//! reduces contiguous rows. [`Cnhw`] describes such a block.
//!
//! **Spec.** With `col[(ci,ky,kx), (b,oy,ox)] = x[ci, b, oy+ky−1, ox+kx−1]`
//! (zero outside the image) and columns ordered (b, oy, ox):
//! * forward: `y[co, col] = fma chain over k = (ci,ky,kx) ascending of
//!   W[co,k]·col[k,col]`, from +0.0 (the GEMM spec);
//! * dW: `dW[co,k] = fma chain over all N·HW columns ascending of
//!   dY[co,col]·col[k,col]`, from +0.0 — one chain through the whole batch;
//! * dX: `dcol[k,col] = fma chain over co ascending of W[co,k]·dY[co,col]`,
//!   then `dx[ci,b,iy,ix] = Σ over (ky,kx) ascending, where
//!   (oy,ox) = (iy−ky+1, ix−kx+1) is inside the image, of
//!   dcol[(ci,ky,kx),(b,oy,ox)]`, from +0.0 with plain `+`.

use super::Storage;
use crate::error::Result;

/// A CNHW block: `c` channels of `n` images of `h × w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cnhw {
    pub c: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
}

impl Cnhw {
    pub fn new(c: usize, n: usize, h: usize, w: usize) -> Self {
        Self { c, n, h, w }
    }
    /// Values per image plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
    /// Values per channel row (N·H·W).
    pub fn row(&self) -> usize {
        self.n * self.h * self.w
    }
    /// Values in the block.
    pub fn len(&self) -> usize {
        self.c * self.row()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per image (C·H·W).
    pub fn per_image(&self) -> usize {
        self.c * self.plane()
    }
    /// The same images with `c` channels.
    pub fn with_channels(&self, c: usize) -> Self {
        Self { c, ..*self }
    }
}

/// The gradients of one conv (see [`ConvOps::conv3x3_backward`]).
pub struct ConvBackward<'a, T: ?Sized> {
    /// The forward's input, CNHW `g`.
    pub x: &'a T,
    pub g: Cnhw,
    /// The weights, Cout × (Cin·9) row-major (k = ci·9 + ky·3 + kx).
    pub w: &'a T,
    pub cout: usize,
    /// The output's gradient, CNHW with `cout` channels.
    pub dy: &'a T,
}

/// The conv family.
pub trait ConvOps: Storage {
    /// Work space of the conv ops (the col buffers), kept between steps.
    type ConvScratch: Default + Clone + std::fmt::Debug + Send + Sync;

    /// `y = conv3x3(x, w)` (CNHW with `cout` channels, resized).
    fn conv3x3_forward(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        w: &Self::Buf,
        cout: usize,
        y: &mut Self::Buf,
        scratch: &mut Self::ConvScratch,
    ) -> Result<()>;
    /// The forward's fma chains over the k steps of input channels
    /// `channels` only: from +0.0 into `y` (resized), or, with `cont`,
    /// continuing the chains `y` holds (y keeps its length, `cout` × N·H·W).
    /// `x`, `g` and `w` are the whole conv's. The k steps run in the spec's
    /// order, so `channels(0..a)` then `channels(a..c)` with `cont` gives
    /// [`ConvOps::conv3x3_forward`]'s bits: evaluation computes the image
    /// channels' part of the first block once and continues it with each
    /// label's channel (the last one).
    #[allow(clippy::too_many_arguments)]
    fn conv3x3_forward_channels(
        &self,
        x: &Self::Buf,
        g: Cnhw,
        w: &Self::Buf,
        cout: usize,
        part: (std::ops::Range<usize>, bool),
        y: &mut Self::Buf,
        scratch: &mut Self::ConvScratch,
    ) -> Result<()>;
    /// `dw` (resized) and, when asked, `dx` (CNHW like x, resized).
    fn conv3x3_backward(
        &self,
        a: ConvBackward<'_, Self::Buf>,
        dw: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
        scratch: &mut Self::ConvScratch,
    ) -> Result<()>;
}

/// The checks of [`ConvOps::conv3x3_forward_channels`]: the range lies
/// inside the input's channels, and a continued `y` has the output's length.
pub(crate) fn channels_check(
    op: &'static str,
    g: Cnhw,
    cout: usize,
    channels: &std::ops::Range<usize>,
    cont: Option<usize>,
) -> Result<()> {
    use crate::error::{check_len, shape_err};
    if channels.start >= channels.end || channels.end > g.c {
        return Err(shape_err(op, format!("channels {channels:?} of an input with {} channels", g.c)));
    }
    if let Some(len) = cont {
        check_len(op, "y (continued)", len, cout * g.row())?;
    }
    Ok(())
}

/// The checks every backend's conv makes.
pub(crate) fn conv_check<T: super::Len>(op: &'static str, x: &T, g: Cnhw, w: &T, cout: usize) -> Result<()> {
    use crate::error::{check_len, shape_err};
    check_len(op, "x", x.len(), g.len())?;
    check_len(op, "weights", w.len(), cout * g.c * 9)?;
    if g.h == 0 || g.w == 0 || g.c == 0 {
        return Err(shape_err(op, format!("empty image geometry {}×{}×{}", g.c, g.h, g.w)));
    }
    Ok(())
}
