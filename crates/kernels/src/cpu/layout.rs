//! Copies between layouts (see [`crate::ops::layout`]): column blocks of
//! row-major matrices, CNHW blocks and per-image rows, ranges. No
//! arithmetic, so one implementation serves both CPU backends.

use super::pages;
use super::CpuBackend;
use crate::error::{check_len, shape_err, Result};
use crate::ops::conv::Cnhw;
use crate::ops::layout::LayoutOps;
use crate::ops::reduce::rows_of;
use rayon::prelude::*;

/// The rows of `src` (width `src_w`) and the check that columns
/// `off..off + w` fit in rows of `dst_w`.
fn col_block(op: &'static str, src_len: usize, src_w: usize, dst_w: usize, off: usize, w: usize) -> Result<usize> {
    if off + w > dst_w {
        return Err(shape_err(op, format!("columns {off}..{} of rows of {dst_w}", off + w)));
    }
    rows_of(op, src_len, src_w)
}

impl LayoutOps for CpuBackend {
    fn put_cols(&self, src: &Vec<f32>, src_w: usize, dst: &mut Vec<f32>, dst_w: usize, dst_off: usize) -> Result<()> {
        let rows = col_block("put_cols", src.len(), src_w, dst_w, dst_off, src_w)?;
        check_len("put_cols", "destination", dst.len(), rows * dst_w)?;
        let _p = crate::profile::scope("put_cols");
        for (d, s) in dst.chunks_exact_mut(dst_w).zip(src.chunks_exact(src_w)) {
            d[dst_off..dst_off + src_w].copy_from_slice(s);
        }
        Ok(())
    }
    fn take_cols(&self, src: &Vec<f32>, src_w: usize, off: usize, w: usize, dst: &mut Vec<f32>) -> Result<()> {
        let rows = col_block("take_cols", src.len(), src_w, src_w, off, w)?;
        pages::grow(dst, rows * w)?;
        if w > 0 {
            for (d, s) in dst.chunks_exact_mut(w).zip(src.chunks_exact(src_w)) {
                d.copy_from_slice(&s[off..off + w]);
            }
        }
        Ok(())
    }
    fn cnhw_to_rows(&self, src: &Vec<f32>, g: Cnhw, dst: &mut Vec<f32>) -> Result<()> {
        check_len("cnhw_to_rows", "source", src.len(), g.len())?;
        let _p = crate::profile::scope("cnhw_to_rows");
        let (hw, d) = (g.plane(), g.per_image());
        pages::grow(dst, g.len())?;
        // One image's row per task; its planes lie N·HW apart in src.
        dst[..g.len()].par_chunks_mut(d.max(1)).with_min_len(8).enumerate().for_each(|(b, row)| {
            for (c, plane) in row.chunks_exact_mut(hw.max(1)).enumerate() {
                plane.copy_from_slice(&src[(c * g.n + b) * hw..][..hw]);
            }
        });
        Ok(())
    }
    fn rows_to_cnhw(&self, src: &Vec<f32>, g: Cnhw, dst: &mut Vec<f32>) -> Result<()> {
        check_len("rows_to_cnhw", "source", src.len(), g.len())?;
        let _p = crate::profile::scope("rows_to_cnhw");
        let (hw, d) = (g.plane(), g.per_image());
        pages::grow(dst, g.len())?;
        // One plane (c, b) per item, index c·N + b.
        dst[..g.len()].par_chunks_mut(hw.max(1)).with_min_len(64).enumerate().for_each(|(p, plane)| {
            let (c, b) = (p / g.n, p % g.n);
            plane.copy_from_slice(&src[b * d + c * hw..][..hw]);
        });
        Ok(())
    }
    fn copy_into(&self, src: &Vec<f32>, dst: &mut Vec<f32>, dst_off: usize) -> Result<()> {
        if dst_off + src.len() > dst.len() {
            return Err(shape_err(
                "copy_into",
                format!("{} values at {dst_off} are past a {}-value buffer", src.len(), dst.len()),
            ));
        }
        dst[dst_off..dst_off + src.len()].copy_from_slice(src);
        Ok(())
    }
}
