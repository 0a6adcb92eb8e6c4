//! Launch wrappers for `kernels/reduce.cu`: L32 row reductions, length normalisation, standardisation.

use super::device::{err, warp_rows, CudaDevice};
use crate::cpu::reduce::Norm;
use crate::error::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

impl CudaDevice {
    /// Row sums of squares (`squares`) or row sums, L32 order.
    pub fn row_reduce(&self, x: &[f32], d: usize, squares: bool) -> Result<Vec<f32>> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let (xd, mut od) = (self.up(x)?, self.zeros(rows)?);
        self.row_reduce_on(&xd, rows, d, squares, &mut od)?;
        self.down(&od, rows)
    }

    /// Row sums of squares of `rows` rows of width `d` on device buffers.
    pub fn row_sumsq_on(&self, x: &CudaSlice<f32>, rows: usize, d: usize, out: &mut CudaSlice<f32>) -> Result<()> {
        self.row_reduce_on(x, rows, d, true, out)
    }

    fn row_reduce_on(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        d: usize,
        squares: bool,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let name = if squares { "ffwd_row_sumsq_f32" } else { "ffwd_row_sum_f32" };
        let func = self.function("reduce", name)?;
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(x).arg(&r).arg(&dd).arg(out);
        // SAFETY: the callers size x to rows·d floats and out to rows.
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err(name, e))?;
        Ok(())
    }

    /// Length normalisation of rows of width `d`.
    pub fn normalize_rows(&self, x: &[f32], d: usize, kind: Norm, eps: f32) -> Result<Vec<f32>> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let (xd, mut yd) = (self.up(x)?, self.zeros(x.len())?);
        self.normalize_rows_on(&xd, &mut yd, rows, d, (kind, eps))?;
        self.down(&yd, x.len())
    }

    /// Length normalisation of `rows` rows of width `d` on device buffers.
    pub fn normalize_rows_on(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        rows: usize,
        d: usize,
        (kind, eps): (Norm, f32),
    ) -> Result<()> {
        let func = self.function("reduce", "ffwd_normalize_rows_f32")?;
        let k: i32 = match kind {
            Norm::Rms => 0,
            Norm::L2 => 1,
            Norm::None => 2,
        };
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(x).arg(y).arg(&r).arg(&dd).arg(&k).arg(&eps);
        // SAFETY: the callers size x and y to rows·d floats.
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err("normalize_rows", e))?;
        Ok(())
    }

    /// Row standardisation of rows of width `d`.
    pub fn standardize_rows(&self, x: &[f32], d: usize, eps: f32) -> Result<Vec<f32>> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let func = self.function("reduce", "ffwd_standardize_rows_f32")?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(x.len())?);
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&mut yd).arg(&r).arg(&dd).arg(&eps);
        // SAFETY: rows·d floats read and written.
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err("standardize_rows", e))?;
        self.down(&yd, x.len())
    }
}
