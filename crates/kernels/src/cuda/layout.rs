//! Launch wrappers for `kernels/layout.cu` ([`LayoutOps`] on device
//! buffers): column blocks and CNHW ↔ rows copies, one thread per value;
//! ranges by a device-to-device copy.

use super::device::{err, grid_for, int, CudaBackend, DevBuf};
use crate::error::{check_len, shape_err, Result};
use crate::ops::conv::Cnhw;
use crate::ops::layout::LayoutOps;
use crate::ops::reduce::rows_of;
use crate::ops::Len;
use cudarc::driver::PushKernelArg;

impl CudaBackend {
    /// CNHW ↔ rows (`to_rows`), `src` and `dst` both `g.len()` values.
    fn cnhw_rows(&self, op: &'static str, src: &DevBuf, g: Cnhw, to_rows: bool, dst: &mut DevBuf) -> Result<()> {
        check_len(op, "source", src.len(), g.len())?;
        dst.set_len(self.dev, g.len(), false)?;
        if g.is_empty() {
            return Ok(());
        }
        let f = self.dev.function("layout", "ffwd_cnhw_rows_f32")?;
        let (c, n, hw, t) = (int(op, g.c)?, int(op, g.n)?, int(op, g.plane())?, to_rows as i32);
        let (sv, mut dv) = (src.view()?, dst.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&sv).arg(&c).arg(&n).arg(&hw).arg(&t).arg(&mut dv);
        // SAFETY: one thread per value; both buffers hold g.len() values (checked).
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err(op, e))?;
        Ok(())
    }
}

impl LayoutOps for CudaBackend {
    fn put_cols(&self, src: &DevBuf, src_w: usize, dst: &mut DevBuf, dst_w: usize, dst_off: usize) -> Result<()> {
        const OP: &str = "put_cols";
        if dst_off + src_w > dst_w {
            return Err(shape_err(OP, format!("columns {dst_off}..{} of rows of {dst_w}", dst_off + src_w)));
        }
        let rows = rows_of(OP, src.len(), src_w)?;
        check_len(OP, "destination", dst.len(), rows * dst_w)?;
        if src.is_empty() {
            return Ok(());
        }
        let f = self.dev.function("layout", "ffwd_put_cols_f32")?;
        let (r, sw, dw, off) = (rows as i64, int(OP, src_w)?, int(OP, dst_w)?, int(OP, dst_off)?);
        let (sv, mut dv) = (src.view()?, dst.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&sv).arg(&r).arg(&sw).arg(&mut dv).arg(&dw).arg(&off);
        // SAFETY: one thread per source value; every destination index lies
        // in rows × dst_w (checked).
        unsafe { b.launch(grid_for(src.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn take_cols(&self, src: &DevBuf, src_w: usize, off: usize, w: usize, dst: &mut DevBuf) -> Result<()> {
        const OP: &str = "take_cols";
        if off + w > src_w {
            return Err(shape_err(OP, format!("columns {off}..{} of rows of {src_w}", off + w)));
        }
        let rows = rows_of(OP, src.len(), src_w)?;
        dst.set_len(self.dev, rows * w, false)?;
        if rows * w == 0 {
            return Ok(());
        }
        let f = self.dev.function("layout", "ffwd_take_cols_f32")?;
        let (r, sw, o, wi) = (rows as i64, int(OP, src_w)?, int(OP, off)?, int(OP, w)?);
        let (sv, mut dv) = (src.view()?, dst.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&sv).arg(&r).arg(&sw).arg(&o).arg(&wi).arg(&mut dv);
        // SAFETY: one thread per destination value; reads stay in rows × src_w (checked).
        unsafe { b.launch(grid_for(rows * w)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn cnhw_to_rows(&self, src: &DevBuf, g: Cnhw, dst: &mut DevBuf) -> Result<()> {
        self.cnhw_rows("cnhw_to_rows", src, g, true, dst)
    }
    fn rows_to_cnhw(&self, src: &DevBuf, g: Cnhw, dst: &mut DevBuf) -> Result<()> {
        self.cnhw_rows("rows_to_cnhw", src, g, false, dst)
    }
    fn copy_into(&self, src: &DevBuf, dst: &mut DevBuf, dst_off: usize) -> Result<()> {
        const OP: &str = "copy_into";
        let mut d = dst.range_mut(OP, dst_off, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        self.dev.stream.memcpy_dtod(&src.view()?, &mut d).map_err(|e| err(OP, e))
    }
}
