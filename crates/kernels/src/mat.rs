//! Borrowed matrix views. A [`MatRef`] has arbitrary row and column strides
//! (so a transpose is free); a [`MatMut`] is row-major with a row stride.

use crate::error::{shape_err, Result};

#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` view of `data` (length must be rows·cols).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(shape_err(
                "MatRef::new",
                format!("{rows}×{cols} needs {} elements, got {}", rows * cols, data.len()),
            ));
        }
        Ok(Self { data, rows, cols, rs: cols, cs: 1 })
    }
    /// A strided view; checks that every addressed element is in bounds.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 && (rows - 1) * rs + (cols - 1) * cs >= data.len() {
            return Err(shape_err(
                "MatRef::strided",
                format!("{rows}×{cols} with strides ({rs},{cs}) exceeds {} elements", data.len()),
            ));
        }
        Ok(Self { data, rows, cols, rs, cs })
    }
    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    #[inline(always)]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

#[derive(Debug)]
pub struct MatMut<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(shape_err(
                "MatMut::new",
                format!("{rows}×{cols} needs {} elements, got {}", rows * cols, data.len()),
            ));
        }
        Ok(Self { data, rows, cols, rs: cols })
    }
    /// A row-major view with row stride `rs ≥ cols` (a column block of a
    /// wider matrix); checks that every addressed element is in bounds.
    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Result<Self> {
        if cols > rs || (rows > 0 && cols > 0 && (rows - 1) * rs + cols > data.len()) {
            return Err(shape_err(
                "MatMut::strided",
                format!("{rows}×{cols} with row stride {rs} exceeds {} elements", data.len()),
            ));
        }
        Ok(Self { data, rows, cols, rs })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn rb(&self) -> MatRef<'_> {
        MatRef { data: self.data, rows: self.rows, cols: self.cols, rs: self.rs, cs: 1 }
    }
}
