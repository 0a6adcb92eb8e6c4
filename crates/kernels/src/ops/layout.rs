//! Copies between layouts: column blocks of row-major matrices, CNHW
//! blocks and per-image rows, and ranges. No arithmetic.
//!
//! A *row-major* matrix of `rows × w` holds row i at `i·w`. A *CNHW* block
//! (see [`Cnhw`]) holds image b's plane of channel c at `(c·n + b)·h·w`; its
//! *rows* form holds image b's C·H·W values at `b·C·H·W`, channel by
//! channel (PyTorch's `flatten`).

use super::conv::Cnhw;
use super::Storage;
use crate::error::Result;

/// The layout family.
pub trait LayoutOps: Storage {
    /// Copy each of the `rows` rows of `src` (width `src_w`) into columns
    /// `dst_off..dst_off + src_w` of `dst` (width `dst_w`; not resized).
    fn put_cols(&self, src: &Self::Buf, src_w: usize, dst: &mut Self::Buf, dst_w: usize, dst_off: usize) -> Result<()>;
    /// Columns `off..off + w` of `src` (width `src_w`) as a row-major
    /// matrix of width `w` (`dst` resized).
    fn take_cols(&self, src: &Self::Buf, src_w: usize, off: usize, w: usize, dst: &mut Self::Buf) -> Result<()>;
    /// A CNHW block as per-image rows (`dst` resized).
    fn cnhw_to_rows(&self, src: &Self::Buf, g: Cnhw, dst: &mut Self::Buf) -> Result<()>;
    /// Per-image rows as a CNHW block (`dst` resized).
    fn rows_to_cnhw(&self, src: &Self::Buf, g: Cnhw, dst: &mut Self::Buf) -> Result<()>;
    /// Copy all of `src` into `dst` from `dst_off` on (`dst` not resized).
    fn copy_into(&self, src: &Self::Buf, dst: &mut Self::Buf, dst_off: usize) -> Result<()>;
}
