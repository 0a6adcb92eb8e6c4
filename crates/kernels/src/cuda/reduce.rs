//! Launch wrappers for `kernels/reduce.cu` ([`ReduceOps`] on device
//! buffers): L32 row reductions, length normalisation, standardisation.
//! One warp per row.

use super::device::{err, int, warp_rows, CudaBackend, DevBuf};
use crate::error::{check_len, Result};
use crate::ops::reduce::{rows_of, Norm, ReduceOps};
use crate::ops::Len;
use cudarc::driver::PushKernelArg;

fn norm_code(kind: Norm) -> i32 {
    match kind {
        Norm::Rms => 0,
        Norm::L2 => 1,
        Norm::None => 2,
    }
}

impl ReduceOps for CudaBackend {
    fn row_sumsq(&self, x: &DevBuf, d: usize, out: &mut DevBuf) -> Result<()> {
        let rows = rows_of("row_sumsq", x.len(), d)?;
        out.set_len(self.dev, rows, false)?;
        self.launch_row_reduce(x, rows, d, true, out)
    }
    fn row_sum(&self, x: &DevBuf, d: usize, out: &mut DevBuf) -> Result<()> {
        let rows = rows_of("row_sum", x.len(), d)?;
        out.set_len(self.dev, rows, false)?;
        self.launch_row_reduce(x, rows, d, false, out)
    }
    fn normalize_rows(&self, x: &DevBuf, out: &mut DevBuf, d: usize, kind: Norm, eps: f32) -> Result<()> {
        const OP: &str = "normalize_rows";
        let rows = rows_of(OP, x.len(), d)?;
        out.set_len(self.dev, x.len(), false)?;
        if rows == 0 {
            return Ok(());
        }
        let func = self.dev.function("reduce", "ffwd_normalize_rows_f32")?;
        let (r, dd, k) = (int(OP, rows)?, int(OP, d)?, norm_code(kind));
        let (xv, mut yv) = (x.view()?, out.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&mut yv).arg(&r).arg(&dd).arg(&k).arg(&eps);
        // SAFETY: x and out hold rows·d floats (checked).
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn normalize_rows_given(
        &self,
        x: &DevBuf,
        sumsq: &DevBuf,
        out: &mut DevBuf,
        d: usize,
        kind: Norm,
        eps: f32,
    ) -> Result<()> {
        const OP: &str = "normalize_rows_given";
        let rows = rows_of(OP, x.len(), d)?;
        check_len(OP, "sums of squares", sumsq.len(), rows)?;
        out.set_len(self.dev, x.len(), false)?;
        if rows == 0 {
            return Ok(());
        }
        let func = self.dev.function("reduce", "ffwd_normalize_rows_given_f32")?;
        let (r, dd, k) = (int(OP, rows)?, int(OP, d)?, norm_code(kind));
        let (xv, sv, mut yv) = (x.view()?, sumsq.view()?, out.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&sv).arg(&mut yv).arg(&r).arg(&dd).arg(&k).arg(&eps);
        // SAFETY: x and out hold rows·d floats, sumsq rows (checked).
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn standardize_rows(&self, x: &DevBuf, d: usize, eps: f32, y: &mut DevBuf) -> Result<()> {
        const OP: &str = "standardize_rows";
        let rows = rows_of(OP, x.len(), d)?;
        y.set_len(self.dev, x.len(), false)?;
        if rows == 0 {
            return Ok(());
        }
        let func = self.dev.function("reduce", "ffwd_standardize_rows_f32")?;
        let (r, dd) = (int(OP, rows)?, int(OP, d)?);
        let (xv, mut yv) = (x.view()?, y.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&mut yv).arg(&r).arg(&dd).arg(&eps);
        // SAFETY: rows·d floats read and written (checked).
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
}
