//! The FF layer's linear map `h = relu(xn·W + b)` with weights kept in the
//! backend's own layout ([`LinearOps::Packed`]), its goodness, and its local
//! gradient.
//!
//! **Spec.** Forward: `h = relu(xn·W + b)` by the GEMM spec and the row
//! goodness `g_i = l32_sumsq(h_i)`. Local gradient through ReLU:
//! `dz[i,j] = h[i,j] · (dL/dG_i + dL/dG_i)` (h is zero wherever the ReLU is
//! off, so no mask is needed). Bias gradient: the sequential column sum of
//! `dz` over rows from +0.0. In an FF layer's parameter gradients
//! (`dW = xnᵀ·dz`, `db`), rows whose dL/dG is exactly zero (either sign)
//! are left out: their dz row is zero, so leaving them out changes no
//! value, only, in principle, the sign of a sum that is exactly zero (and
//! an inf · 0 that would have made a NaN). The fused update applies the
//! optimiser to every element of W and b with those gradients.

use super::gemm::StepsRun;
use super::optim::OptimStep;
use super::Storage;
use crate::error::Result;
use std::fmt::Debug;

/// A weight matrix in a backend's layout: `rows × cols` logically.
pub trait Weights {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
}

/// A parameter tensor with its optimiser state: `a` (Adam's m, SGD's
/// momentum buffer) and `b` (Adam's v; unused by SGD, may be empty).
pub struct Param<'a, P, S> {
    pub value: &'a mut P,
    pub a: &'a mut S,
    pub b: &'a mut S,
}

/// One fused backward and update of an FF layer (see
/// [`LinearOps::linear_backward_update`]).
pub struct LinearUpdate<'a, B: LinearOps> {
    /// The normalised input of the forward, rows × din.
    pub xn: &'a B::Buf,
    /// The forward's activity, rows × dout.
    pub h: &'a B::Buf,
    /// dL/dG per row.
    pub dldg: &'a B::Buf,
    pub w: Param<'a, B::Packed, B::Buf>,
    pub bias: Param<'a, B::Buf, B::Buf>,
    /// The step both tensors take.
    pub step: &'a OptimStep,
}

/// The FF linear layer family.
pub trait LinearOps: Storage {
    /// Weights in the layout the forward and the fused update read (the
    /// CPU's packed GEMM panels; row-major on CUDA).
    type Packed: Weights + Clone + Debug + Send + Sync;
    /// Work space of the layer ops, kept between steps.
    type LinearScratch: Default + Clone + Debug + Send + Sync;

    /// Weights from a row-major `k × n` host matrix.
    fn pack(&self, row_major: &[f32], k: usize, n: usize) -> Result<Self::Packed>;
    /// The row-major host matrix.
    fn unpack(&self, w: &Self::Packed) -> Result<Vec<f32>>;
    /// The row-major matrix in a backend buffer (resized).
    fn unpack_into(&self, w: &Self::Packed, out: &mut Self::Buf) -> Result<()>;
    /// A zero optimiser state laid out as `w` (what
    /// [`LinearOps::linear_backward_update`] and
    /// [`LinearOps::packed_step`] take).
    fn packed_state(&self, w: &Self::Packed) -> Result<Self::Buf>;
    /// An optimiser state laid out as `w` (see [`LinearOps::packed_state`])
    /// as a row-major host matrix: what a saved training state holds, the
    /// same on every backend.
    fn unpack_state(&self, w: &Self::Packed, state: &Self::Buf) -> Result<Vec<f32>>;
    /// An optimiser state laid out as `w` from a row-major host matrix
    /// (`state` resized); the inverse of [`LinearOps::unpack_state`].
    fn pack_state(&self, w: &Self::Packed, row_major: &[f32], state: &mut Self::Buf) -> Result<()>;
    /// The fused FF forward: `h = relu(x · w + bias)` (rows × w.cols(),
    /// resized) and the row goodness `g` (rows, resized), `rows = x.len() /
    /// w.rows()`. Returns how much of the product ran.
    fn linear_forward_packed(
        &self,
        x: &Self::Buf,
        w: &Self::Packed,
        bias: &Self::Buf,
        h: &mut Self::Buf,
        g: &mut Self::Buf,
    ) -> Result<StepsRun>;
    /// The fused backward and update: `dz = local_grad(h, dL/dG)` on the
    /// kept rows, `dW = xnᵀ·dz`, `db` = column sums of dz, then the
    /// optimiser step on every element of W and of the bias. dz and dW need
    /// not exist in memory. Returns how much of the dW product ran.
    fn linear_backward_update(&self, u: LinearUpdate<'_, Self>, scratch: &mut Self::LinearScratch) -> Result<StepsRun>;
    /// The same gradients without the update (the unfused specification)
    /// from the forward's `(xn, h, dL/dG)`: `(dw, db)`, dW din × dout
    /// row-major, both resized; `dims` is (din, dout).
    fn linear_grads(
        &self,
        forward: (&Self::Buf, &Self::Buf, &Self::Buf),
        dims: (usize, usize),
        grads: (&mut Self::Buf, &mut Self::Buf),
        scratch: &mut Self::LinearScratch,
    ) -> Result<()>;
    /// One optimiser step on weights `w` with a row-major gradient `grad`
    /// (k × n) and state `a`, `b` in `w`'s layout.
    fn packed_step(
        &self,
        step: &OptimStep,
        w: Param<'_, Self::Packed, Self::Buf>,
        grad: &Self::Buf,
        scratch: &mut Self::LinearScratch,
    ) -> Result<()>;
    /// `dz = h · (2·dL/dG)` row-wise (resized).
    fn local_grad(&self, h: &Self::Buf, d: usize, dldg: &Self::Buf, dz: &mut Self::Buf) -> Result<()>;
    /// `db` = column sums of the `m × n` matrix `dz` (resized).
    fn bias_grad(&self, dz: &Self::Buf, m: usize, n: usize, db: &mut Self::Buf) -> Result<()>;
}

/// The shape of one FF layer's step: rows (2·batch), inputs, outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearDims {
    pub rows: usize,
    pub din: usize,
    pub dout: usize,
}

impl LinearDims {
    /// The dims of a fused update, checked against every buffer's length.
    pub(crate) fn of_update<B: LinearOps>(op: &'static str, u: &LinearUpdate<'_, B>) -> Result<Self> {
        use super::Len;
        use crate::error::check_len;
        let (din, dout) = (u.w.value.rows(), u.w.value.cols());
        let rows = u.dldg.len();
        check_len(op, "Xn", u.xn.len(), rows * din)?;
        check_len(op, "h", u.h.len(), rows * dout)?;
        check_len(op, "bias", u.bias.value.len(), dout)?;
        check_len(op, "bias state", u.bias.a.len(), dout)?;
        if matches!(u.step, OptimStep::Adam(_)) {
            check_len(op, "bias second moment", u.bias.b.len(), dout)?;
        }
        Ok(Self { rows, din, dout })
    }
}
