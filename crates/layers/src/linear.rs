//! Gradients of a linear map `y = x·W + b` (W row-major in × out), shared
//! by every layer type that learns one by backprop: the FF layer in the BP
//! baselines, the readout and the dense layers of the twins and the UFF
//! cells.

use crate::Result;
use ffwd_kernels::{Backend, Epilogue, Mat};

/// `dW = xᵀ·dz` (in × out) and `db` = the column sums of `dz`, for `rows`
/// rows of `x` (rows × in) and `dz` (rows × out).
pub(crate) fn param_grads<B: Backend>(
    be: &B,
    x: &B::Buf,
    dz: &B::Buf,
    (rows, din, dout): (usize, usize, usize),
    dw: &mut B::Buf,
    db: &mut B::Buf,
) -> Result<()> {
    be.gemm(Mat::new(x, rows, din)?.t(), Mat::new(dz, rows, dout)?, dw, Epilogue::None)?;
    be.bias_grad(dz, rows, dout, db)?;
    Ok(())
}

/// `dx = dz·Wᵀ` (rows × in) for `dz` (rows × out) and row-major `w`.
pub(crate) fn input_grad<B: Backend>(
    be: &B,
    dz: &B::Buf,
    w: &B::Buf,
    (rows, din, dout): (usize, usize, usize),
    dx: &mut B::Buf,
) -> Result<()> {
    be.gemm(Mat::new(dz, rows, dout)?, Mat::new(w, din, dout)?.t(), dx, Epilogue::None)?;
    Ok(())
}
