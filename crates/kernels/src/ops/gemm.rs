//! GEMM, `C = epilogue(A·B)`, on strided views of backend buffers.
//!
//! **Spec.** For every output (i, j): `acc = +0.0` (or C\[i,j\] under
//! [`Epilogue::Accumulate`]); for k = 0..K−1 in ascending order,
//! `acc = fma(A[i,k], B[k,j], acc)`; then the epilogue: `None` and
//! `Accumulate → acc`, `Bias → acc + bias[j]`, `BiasRelu → relu(acc +
//! bias[j])`. Every backend computes exactly this; blocking, packing and
//! threading only decide who computes which outputs.

use super::{Mat, Storage};
use crate::error::Result;
use crate::numerics::relu;

/// What happens to each accumulator after its last fma. `T` is the buffer
/// type of the bias (`[f32]` in the CPU kernels, a backend buffer in
/// [`GemmOps::gemm`]).
#[derive(Debug)]
pub enum Epilogue<'a, T: ?Sized = [f32]> {
    None,
    /// `C += A·B`: each output's fma chain starts from C's current value
    /// instead of +0.0, so a long reduction split into several calls (the
    /// conv dW over image chunks) gives the bits of one call.
    Accumulate,
    Bias(&'a T),
    BiasRelu(&'a T),
}

impl<T: ?Sized> Clone for Epilogue<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Epilogue<'_, T> {}

impl<'a, T: ?Sized> Epilogue<'a, T> {
    /// The same epilogue with its bias seen through `f`.
    pub fn map<U: ?Sized>(self, f: impl FnOnce(&'a T) -> &'a U) -> Epilogue<'a, U> {
        match self {
            Epilogue::None => Epilogue::None,
            Epilogue::Accumulate => Epilogue::Accumulate,
            Epilogue::Bias(b) => Epilogue::Bias(f(b)),
            Epilogue::BiasRelu(b) => Epilogue::BiasRelu(f(b)),
        }
    }
    /// The bias, if the epilogue adds one.
    pub fn bias(&self) -> Option<&'a T> {
        match *self {
            Epilogue::None | Epilogue::Accumulate => None,
            Epilogue::Bias(b) | Epilogue::BiasRelu(b) => Some(b),
        }
    }
}

impl Epilogue<'_, [f32]> {
    /// The epilogue applied to column `j`'s finished accumulator.
    #[inline(always)]
    pub(crate) fn apply(&self, j: usize, acc: f32) -> f32 {
        match self {
            Epilogue::None | Epilogue::Accumulate => acc,
            Epilogue::Bias(b) => acc + b[j],
            Epilogue::BiasRelu(b) => relu(acc + b[j]),
        }
    }
}

/// Rows of A per step of the CPU GEMM (its microkernel's height): the unit
/// in which [`StepsRun`] counts.
pub const PANEL_ROWS: usize = 6;

/// How much of a product's multiply-add work ran. The AVX2 GEMM leaves out
/// the k steps at which an A panel ([`PANEL_ROWS`] rows of A) is all zero,
/// where that changes no bit; `ran` counts the steps of its A panels that
/// ran, `all` all of them. The scalar specification and the CUDA kernels
/// run every step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepsRun {
    pub ran: u64,
    pub all: u64,
}

impl StepsRun {
    /// Every step of an m-row product over k ran.
    pub fn every(m: usize, k: usize) -> Self {
        let all = (m.div_ceil(PANEL_ROWS) * k) as u64;
        StepsRun { ran: all, all }
    }
    /// The share that ran (1 for an empty product).
    pub fn share(&self) -> f64 {
        if self.all == 0 {
            1.0
        } else {
            self.ran as f64 / self.all as f64
        }
    }
}

impl std::ops::Add for StepsRun {
    type Output = StepsRun;
    fn add(self, o: StepsRun) -> StepsRun {
        StepsRun { ran: self.ran + o.ran, all: self.all + o.all }
    }
}

impl std::ops::AddAssign for StepsRun {
    fn add_assign(&mut self, o: StepsRun) {
        *self = *self + o;
    }
}

/// The GEMM family.
pub trait GemmOps: Storage {
    /// `c = epilogue(a · b)`, `c` row-major `a.rows × b.cols` (resized,
    /// except under [`Epilogue::Accumulate`], where it must already hold
    /// that many values). The bias holds `b.cols` values.
    fn gemm(
        &self,
        a: Mat<'_, Self::Buf>,
        b: Mat<'_, Self::Buf>,
        c: &mut Self::Buf,
        epi: Epilogue<'_, Self::Buf>,
    ) -> Result<()>;
}

/// The shape checks every backend's GEMM makes; returns (m, n, k).
pub(crate) fn gemm_shapes<T: super::Len>(
    op: &'static str,
    a: &Mat<'_, T>,
    b: &Mat<'_, T>,
    c: &T,
    epi: &Epilogue<'_, T>,
) -> Result<(usize, usize, usize)> {
    use crate::error::{check_len, shape_err};
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if b.rows != k {
        return Err(shape_err(op, format!("A {m}×{k} · B {}×{n}: inner dimensions differ", b.rows)));
    }
    if let Some(bias) = epi.bias() {
        check_len(op, "bias", bias.len(), n)?;
    }
    if matches!(epi, Epilogue::Accumulate) {
        check_len(op, "C (accumulated into)", c.len(), m * n)?;
    }
    Ok((m, n, k))
}
