//! Launch wrappers for `kernels/gemm.cu`: the tiled SGEMM with its
//! epilogues ([`GemmOps`] on device buffers), and the launch every
//! GEMM-shaped op of the backend goes through.

use super::device::{err, int, CudaBackend, CudaDevice, DevBuf};
use crate::error::Result;
use crate::ops::gemm::{gemm_shapes, Epilogue};
use crate::ops::{GemmOps, Len, Mat};
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

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

/// A strided operand as the kernels take it: (values, row stride, column stride).
pub(crate) type Operand<'a> = (CudaView<'a, f32>, usize, usize);

/// The epilogue codes of `gemm.cu`.
pub(crate) const EPI_NONE: i32 = 0;
const EPI_BIAS: i32 = 1;
const EPI_BIAS_RELU: i32 = 2;
pub(crate) const EPI_ACCUMULATE: i32 = 3;

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
}

impl CudaBackend {
    /// Launch the GEMM: A (m × k) and B (k × n) as strided operands, C
    /// row-major m × n; `code` is the epilogue (`EPI_*`), `bias` n values
    /// when the epilogue adds one. The callers check every shape.
    pub(crate) fn launch_gemm(
        &self,
        a: Operand<'_>,
        b: Operand<'_>,
        c: &mut CudaViewMut<'_, f32>,
        (m, n, k): (usize, usize, usize),
        bias: &CudaView<'_, f32>,
        code: i32,
    ) -> Result<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        let tile = self.dev.resolve_tile(self.tile, m, n);
        let func = self.dev.function("gemm", &format!("ffwd_gemm{}_f32", tile.entry_suffix()))?;
        let (a_rs, a_cs, b_rs, b_cs, ldc) = (a.1 as i64, a.2 as i64, b.1 as i64, b.2 as i64, n as i64);
        let (mi, ni, ki) = (int("gemm", m)?, int("gemm", n)?, int("gemm", k)?);
        let mut lb = self.dev.stream.launch_builder(&func);
        lb.arg(&a.0).arg(&a_rs).arg(&a_cs).arg(&b.0).arg(&b_rs).arg(&b_cs);
        lb.arg(c).arg(&ldc).arg(&mi).arg(&ni).arg(&ki).arg(bias).arg(&code);
        let cfg = CudaDevice::tile_grid(tile, m, n);
        // SAFETY: the callers size A, B and C from (m, n, k), and the strides
        // address only those values (checked when the views were made); the
        // bias holds n values when the epilogue reads it.
        unsafe { lb.launch(cfg) }.map_err(|e| err("gemm", e))?;
        Ok(())
    }

    /// A view of a [`Mat`]'s buffer with its strides.
    pub(crate) fn operand<'a>(&self, m: &Mat<'a, DevBuf>) -> Result<Operand<'a>> {
        Ok((m.buf.view()?, m.rs, m.cs))
    }
}

impl GemmOps for CudaBackend {
    fn gemm(&self, a: Mat<'_, DevBuf>, b: Mat<'_, DevBuf>, c: &mut DevBuf, epi: Epilogue<'_, DevBuf>) -> Result<()> {
        let (m, n, k) = gemm_shapes("gemm", &a, &b, c, &epi)?;
        if !matches!(epi, Epilogue::Accumulate) {
            c.set_len(self.dev, m * n, false)?;
        }
        if c.is_empty() {
            return Ok(());
        }
        let dummy = self.dev.dummy()?.slice(0..1);
        let (bias, code) = match epi {
            Epilogue::None => (dummy, EPI_NONE),
            Epilogue::Accumulate => (dummy, EPI_ACCUMULATE),
            Epilogue::Bias(v) => (v.view()?, EPI_BIAS),
            Epilogue::BiasRelu(v) => (v.view()?, EPI_BIAS_RELU),
        };
        self.launch_gemm(self.operand(&a)?, self.operand(&b)?, &mut c.view_mut()?, (m, n, k), &bias, code)
    }
}
