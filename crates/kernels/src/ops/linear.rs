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
//!
//! **Peer normalisation** (Hinton's released FF code; optional). A running
//! mean `m_j` of each unit's activity on the positive rows and the penalty
//! `P = λ / (2(1 − μ)) · Σ_j (m_j − m̄)²`, `m̄` the mean over units, whose
//! gradient on a positive row is `∂P/∂h_ij = λ · (m_j − m̄) / n` (the `m̄`
//! terms cancel, and `∂m_j/∂h_ij = (1 − μ)/n`): units busier than their
//! peers are pushed down, idle ones up. [`LinearOps::peer_grad`] updates
//! the means and writes `p_j = (λ·(m_j − m̄))·(1/n)`; a [`PeerTerm`] adds it
//! to the local gradient of the first `n` rows: `dz[i,j] =
//! h[i,j]·(dL/dG_i + dL/dG_i)`, then `dz[i,j] + p_j` if `i < n`. The term
//! passes the ReLU as if it were on (a straight-through derivative, as in
//! Hinton's code and the PyTorch port's `ReLU_full_grad`), so a unit that
//! is off on every positive row is still pulled toward its peers; where
//! the ReLU is on it is the exact gradient of P. With a peer term, the
//! first `n` rows are kept in dW and db whatever their dL/dG.

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
    /// Peer normalisation's term, if any.
    pub peer: Option<PeerTerm<'a, B::Buf>>,
}

/// Peer normalisation's gradient term (see the module docs): `p` (one
/// value per unit, from [`LinearOps::peer_grad`]) added to the local
/// gradient of the first `rows` rows (the positives) where `h > 0`.
pub struct PeerTerm<'a, T> {
    pub p: &'a T,
    pub rows: usize,
}

impl<T> Clone for PeerTerm<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PeerTerm<'_, T> {}

/// The settings of peer normalisation: the penalty weight λ and the
/// momentum μ of the running means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerNorm {
    pub lambda: f32,
    pub momentum: f32,
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
    /// from the forward's `(xn, h, dL/dG)` and the peer term, if any:
    /// `(dw, db)`, dW din × dout row-major, both resized; `dims` is (din,
    /// dout).
    fn linear_grads(
        &self,
        forward: (&Self::Buf, &Self::Buf, &Self::Buf),
        peer: Option<PeerTerm<'_, Self::Buf>>,
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
    /// Peer normalisation's step on the activity `h` (rows of `d`; the
    /// first `n` rows are the positives; `dims` = (d, n)): per unit j, `s_j` = the
    /// sequential sum of `h[i,j]` over `i < n` from +0.0, `mean_j = s_j /
    /// n`, `m_j ← μ·m_j + (1−μ)·mean_j` (two rounded products, then the
    /// sum; `1 − μ` rounded once) in `means` (d values); then `m̄ =
    /// l32_sum(m) / d`, `w = 1/n` and `p_j = (λ·(m_j − m̄))·w` (resized).
    fn peer_grad(
        &self,
        h: &Self::Buf,
        dims: (usize, usize),
        peer: PeerNorm,
        means: &mut Self::Buf,
        p: &mut Self::Buf,
    ) -> Result<()>;
}

/// The shape of a [`LinearOps::peer_grad`] call, checked: `n ≥ 1` positive
/// rows of `d` values inside `h`, and `d` means.
pub(crate) fn peer_dims(h_len: usize, d: usize, n: usize, means_len: usize) -> Result<()> {
    use crate::error::{check_len, shape_err};
    if n == 0 || d == 0 || h_len < n * d {
        return Err(shape_err("peer_grad", format!("{n} positive rows of {d} units in an activity of {h_len} values")));
    }
    check_len("peer_grad", "running means", means_len, d)
}

/// Whether row `i` takes part in an FF layer's dW and db: its dL/dG is not
/// zero, or it is a positive row under a peer term (`i < peer_rows`).
#[inline(always)]
pub fn row_kept(i: usize, dldg: f32, peer_rows: usize) -> bool {
    dldg != 0.0 || i < peer_rows
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
