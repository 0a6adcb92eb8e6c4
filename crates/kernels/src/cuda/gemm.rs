//! Launch wrappers for `kernels/gemm.cu`: the tiled SGEMM with its epilogues.

use super::device::{err, CudaDevice};
use crate::cpu::gemm::Epilogue;
use crate::error::Result;
use crate::mat::MatRef;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

/// The GEMM's tile: the outputs (rows × columns of C) one thread block
/// owns. Every tile walks k in the same order, so all give the same bits;
/// [`Tile::Auto`] takes the largest tile whose grid still has a block for
/// every multiprocessor (128 × 128, then 128 × 64), else 64 × 64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tile {
    #[default]
    Auto,
    T64,
    T128x64,
    T128,
}

impl Tile {
    /// Every fixed tile, for the tests.
    pub const FIXED: [Tile; 3] = [Tile::T64, Tile::T128x64, Tile::T128];

    /// (rows, columns) of C per block; (0, 0) for [`Tile::Auto`].
    pub fn dims(self) -> (usize, usize) {
        match self {
            Tile::Auto => (0, 0),
            Tile::T64 => (64, 64),
            Tile::T128x64 => (128, 64),
            Tile::T128 => (128, 128),
        }
    }

    /// The suffix of the kernel entry point built for this tile.
    pub(crate) fn entry_suffix(self) -> &'static str {
        match self {
            Tile::T128 => "_128",
            Tile::T128x64 => "_128x64",
            Tile::T64 | Tile::Auto => "",
        }
    }
}

impl CudaDevice {
    /// The fixed tile `tile` stands for on an m × n output.
    pub(crate) fn resolve_tile(&self, tile: Tile, m: usize, n: usize) -> Tile {
        if tile != Tile::Auto {
            return tile;
        }
        let blocks = |t: Tile| {
            let (bm, bn) = t.dims();
            m.div_ceil(bm) * n.div_ceil(bn)
        };
        [Tile::T128, Tile::T128x64].into_iter().find(|&t| blocks(t) >= self.sm_count()).unwrap_or(Tile::T64)
    }

    /// The grid of an m × n output in tiles of `tile` (a fixed one).
    pub(crate) fn tile_grid(tile: Tile, m: usize, n: usize) -> LaunchConfig {
        let (bm, bn) = tile.dims();
        LaunchConfig {
            grid_dim: ((n as u32).div_ceil(bn as u32).max(1), (m as u32).div_ceil(bm as u32).max(1), 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// `epilogue(a · b)` as a row-major m × n matrix; under
    /// [`Epilogue::Accumulate`], `c0 + a · b` with each chain starting from
    /// `c0` (`c0` is ignored otherwise and may be empty).
    pub fn gemm(&self, a: MatRef, b: MatRef, epi: Epilogue, c0: &[f32]) -> Result<Vec<f32>> {
        self.gemm_tiled(a, b, epi, c0, Tile::Auto)
    }

    /// [`CudaDevice::gemm`] with the tile chosen by the caller.
    pub fn gemm_tiled(&self, a: MatRef, b: MatRef, epi: Epilogue, c0: &[f32], tile: Tile) -> Result<Vec<f32>> {
        let (m, n, k) = (a.rows, b.cols, a.cols);
        if b.rows != k {
            return Err(crate::error::shape_err("cuda gemm", format!("A {m}×{k} · B {}×{n}", b.rows)));
        }
        let (ad, bd) = (self.up(a.data)?, self.up(b.data)?);
        let (bias, code) = match epi {
            Epilogue::None => (vec![0.0f32], 0i32),
            Epilogue::Accumulate => (vec![0.0f32], 3),
            Epilogue::Bias(v) => (v.to_vec(), 1),
            Epilogue::BiasRelu(v) => (v.to_vec(), 2),
        };
        let biasd = self.up(&bias)?;
        let mut cd = if code == 3 {
            if c0.len() != m * n {
                return Err(crate::error::shape_err("cuda gemm", format!("C₀ has {} elements, not {m}×{n}", c0.len())));
            }
            self.up(c0)?
        } else {
            self.zeros(m * n)?
        };
        self.launch_gemm((&ad, a.rs, a.cs), (&bd, b.rs, b.cs), &mut cd, (m, n, k), &biasd, code, tile)?;
        self.down(&cd, m * n)
    }

    /// `C = A · B` on device buffers: A (m × k) and B (k × n) as strided
    /// views `(buffer, row stride, column stride)`, C row-major m × n.
    pub fn gemm_on(
        &self,
        a: (&CudaSlice<f32>, usize, usize),
        b: (&CudaSlice<f32>, usize, usize),
        c: &mut CudaSlice<f32>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<()> {
        let reach = |(buf, rs, cs): (&CudaSlice<f32>, usize, usize), rows: usize, cols: usize| {
            rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < buf.len()
        };
        if !reach(a, m, k) || !reach(b, k, n) || c.len() < m * n {
            return Err(crate::error::shape_err("cuda gemm_on", format!("buffers too small for {m}×{k} · {k}×{n}")));
        }
        let nobias = self.zeros(1)?;
        self.launch_gemm(a, b, c, (m, n, k), &nobias, 0, Tile::Auto)
    }

    /// Launch the GEMM on device buffers: A (m × k) and B (k × n) as strided
    /// views, C row-major m × n; `code` is the epilogue (0 none, 1 bias,
    /// 2 bias + ReLU, 3 accumulate).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_gemm(
        &self,
        a: (&CudaSlice<f32>, usize, usize),
        b: (&CudaSlice<f32>, usize, usize),
        c: &mut CudaSlice<f32>,
        (m, n, k): (usize, usize, usize),
        bias: &CudaSlice<f32>,
        code: i32,
        tile: Tile,
    ) -> Result<()> {
        let tile = self.resolve_tile(tile, m, n);
        let func = self.function("gemm", &format!("ffwd_gemm{}_f32", tile.entry_suffix()))?;
        let (a_rs, a_cs, b_rs, b_cs, ldc) = (a.1 as i64, a.2 as i64, b.1 as i64, b.2 as i64, n as i64);
        let (mi, ni, ki) = (m as i32, n as i32, k as i32);
        let mut lb = self.stream.launch_builder(&func);
        lb.arg(a.0).arg(&a_rs).arg(&a_cs).arg(b.0).arg(&b_rs).arg(&b_cs);
        lb.arg(c).arg(&ldc).arg(&mi).arg(&ni).arg(&ki).arg(bias).arg(&code);
        let cfg = Self::tile_grid(tile, m, n);
        // SAFETY: the callers size A, B and C from (m, n, k) and the strides
        // address only those buffers; bias holds n values when used.
        unsafe { lb.launch(cfg) }.map_err(|e| err("gemm", e))?;
        Ok(())
    }
}
