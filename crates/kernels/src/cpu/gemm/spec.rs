//! The specification of the GEMM: a naive triple loop.

use super::*;

/// The specification: a naive triple loop.
pub(crate) fn gemm_scalar(a: MatRef, b: MatRef, c: &mut MatMut, epi: Epilogue, g: Option<&mut [f32]>) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let accumulate = matches!(epi, Epilogue::Accumulate);
    for i in 0..m {
        for j in 0..n {
            let mut acc = if accumulate { c.data[i * c.rs + j] } else { 0.0f32 };
            for p in 0..k {
                acc = a.at(i, p).mul_add(b.at(p, j), acc);
            }
            c.data[i * c.rs + j] = epi.apply(j, acc);
        }
    }
    if let Some(g) = g {
        for i in 0..m {
            g[i] = l32_sumsq(&c.data[i * c.rs..i * c.rs + n]);
        }
    }
}
