//! Gradients of a linear map `y = x·W + b` (W row-major in × out), shared
//! by every layer type that learns one: the FF layer, the backprop layers,
//! the readout and the dense layers of the twins and the UFF cells.

use crate::Result;
use ffwd_kernels::{CpuBackend, Epilogue, MatMut, MatRef};

/// `dW = xᵀ·dz` (in × out) and `db` = the column sums of `dz`, for `rows`
/// rows of `x` (rows × in) and `dz` (rows × out). `dw` and `db` are sized here.
pub(crate) fn param_grads(
    be: &CpuBackend,
    x: &[f32],
    dz: &[f32],
    (rows, din, dout): (usize, usize, usize),
    dw: &mut Vec<f32>,
    db: &mut Vec<f32>,
) -> Result<()> {
    dw.resize(din * dout, 0.0);
    db.resize(dout, 0.0);
    be.gemm(MatRef::new(x, rows, din)?.t(), MatRef::new(dz, rows, dout)?, MatMut::new(dw, din, dout)?, Epilogue::None)?;
    be.bias_grad(dz, rows, dout, db)?;
    Ok(())
}

/// `dx = dz·Wᵀ` (rows × in) for `dz` (rows × out) and row-major `w`.
pub(crate) fn input_grad(
    be: &CpuBackend,
    dz: &[f32],
    w: &[f32],
    (rows, din, dout): (usize, usize, usize),
    dx: &mut Vec<f32>,
) -> Result<()> {
    dx.resize(rows * din, 0.0);
    be.gemm(MatRef::new(dz, rows, dout)?, MatRef::new(w, din, dout)?.t(), MatMut::new(dx, rows, din)?, Epilogue::None)?;
    Ok(())
}
