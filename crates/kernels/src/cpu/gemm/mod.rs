//! GEMM, `C = epilogue(A·B)`, in any operand layout (strided views), with an
//! optional fused row goodness `g_i = l32_sumsq(C[i, :])`.
//!
//! **Spec.** For every output (i, j): `acc = +0.0`; for k = 0..K−1 in
//! ascending order, `acc = fma(A[i,k], B[k,j], acc)`; then the epilogue:
//! `None → acc`, `Accumulate` (acc starts at C\[i,j\]) `→ acc`,
//! `Bias → acc + bias[j]`, `BiasRelu → relu(acc + bias[j])`.
//!
//! **AVX2.** BLIS-style: B is packed in KC×16 column panels, A in 6×KC row
//! panels, and a 6×16 outer-product microkernel keeps 12 accumulators in
//! registers. K is blocked by KC = 256; every block after the first *loads*
//! the C tile as its accumulators, so each output's fma chain continues in
//! ascending k exactly as the spec says. Threads split M into row blocks,
//! or, for few rows (the batch-100 forward), the columns of C; no block
//! size or split changes an output's arithmetic, so results do not depend
//! on the thread count.
//!
//! **Zero steps.** The FF forward and the fused dW + Adam pass leave out
//! the k steps at which an A panel's six rows are all zero (an image's
//! background, a block of ReLU-dead units), through a microkernel that
//! reads B by row offsets; where that could change a bit (a NaN from
//! 0 · inf, or the sign of a zero that the epilogue would see) they do
//! not, so the results stay the spec's (the AVX2 driver, `gemm_avx2_src`,
//! gives the argument in full).

//!
//! **Files.** `spec.rs` the specification; `pack.rs` the packing of both
//! operands (and the compacted A panels of the zero-step path); `avx2.rs`
//! the microkernels, and `avx512.rs` their 512-bit twins (the same
//! chains, one register per tile row; taken where the CPU has AVX-512F);
//! `offsets.rs` products that read B rows in place at
//! offsets (the conv forward); `driver.rs` the blocking, the thread split and the
//! tile loop; `buffers.rs` the thread-local packing buffers.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
mod buffers;
mod driver;
#[cfg(target_arch = "x86_64")]
mod offsets;
mod pack;
mod spec;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::{kernel_add_into, kernel_rows_in_place, pack_cols16, pack_rows16, transpose8};
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::{kernel_add_into_pair, kernel_rows_in_place12, kernel_rows_in_place_cols32, wide};
pub use buffers::warm_up_workers;
pub(crate) use buffers::*;
pub(crate) use driver::*;
#[cfg(target_arch = "x86_64")]
pub(crate) use offsets::*;
pub(crate) use pack::*;
pub(crate) use spec::*;

use super::{CpuBackend, CpuKind};
use crate::cpu::pages;
use crate::error::{check_len, shape_err, Result};
use crate::mat::{MatMut, MatRef};
use crate::numerics::l32_sumsq;
use crate::ops::gemm::gemm_shapes;
pub use crate::ops::gemm::{Epilogue, StepsRun};
use crate::ops::{GemmOps, Mat};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// A K×N matrix kept in the GEMM's packed-B layout: column panels of width
/// 16, panel q holding columns 16q..16q+16 of all K rows, row-major with
/// stride 16; columns past N are zero. Weights stored this way are never
/// repacked, and a 6-row tile of a panel is 96 contiguous floats.
#[derive(Debug)]
pub struct PackedMat {
    k: usize,
    n: usize,
    data: Vec<f32>,
    /// Whether every value is finite, as far as known (see
    /// [`PackedMat::all_finite`]): [`FINITE_UNKNOWN`], [`FINITE_YES`] or
    /// [`FINITE_NO`]. The forward may skip A's zero k steps only if the B
    /// rows it skips hold no inf or NaN (0 · inf is a NaN).
    finite: AtomicU8,
}

const FINITE_UNKNOWN: u8 = 0;
const FINITE_YES: u8 = 1;
const FINITE_NO: u8 = 2;

impl Clone for PackedMat {
    fn clone(&self) -> Self {
        Self { k: self.k, n: self.n, data: self.data.clone(), finite: AtomicU8::new(self.finite.load(Relaxed)) }
    }
}

impl PartialEq for PackedMat {
    fn eq(&self, other: &Self) -> bool {
        (self.k, self.n) == (other.k, other.n) && self.data == other.data
    }
}

impl PackedMat {
    pub fn zeros(k: usize, n: usize) -> crate::Result<Self> {
        let data = super::pages::zeroed(k * n.div_ceil(NR) * NR)?;
        Ok(Self { k, n, data, finite: AtomicU8::new(FINITE_YES) })
    }
    /// Pack a row-major k × n matrix.
    pub fn from_row_major(src: &[f32], k: usize, n: usize) -> crate::Result<Self> {
        crate::error::check_len("PackedMat::from_row_major", "source", src.len(), k * n)?;
        let mut p = Self::zeros(k, n)?;
        for r in 0..k {
            for j in 0..n {
                let idx = p.index(r, j);
                p.data[idx] = src[r * n + j];
            }
        }
        p.finite = AtomicU8::new(FINITE_UNKNOWN);
        Ok(p)
    }
    /// The row-major k × n matrix.
    pub fn to_row_major(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.k * self.n];
        self.write_row_major(&mut out);
        out
    }
    /// Write the row-major k × n matrix into `out` (length k·n).
    pub fn write_row_major(&self, out: &mut [f32]) {
        for r in 0..self.k {
            for j in 0..self.n {
                out[r * self.n + j] = self.data[self.index(r, j)];
            }
        }
    }
    /// Position of logical element (r, j) in [`PackedMat::data`].
    #[inline(always)]
    pub fn index(&self, r: usize, j: usize) -> usize {
        packed_index(self.k, r, j)
    }
    pub fn rows(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
    /// The packed storage (padding included).
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The packed storage, to change: whether every value is finite is
    /// unknown afterwards (and found out again when a forward needs it).
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.finite = AtomicU8::new(FINITE_UNKNOWN);
        &mut self.data
    }
    /// Whether every value is finite: known after [`PackedMat::zeros`] and
    /// after each fused optimiser step (which checks each weight it writes),
    /// otherwise found by one pass over the data, whose answer is kept until
    /// the next [`PackedMat::data_mut`].
    pub fn all_finite(&self) -> bool {
        match self.finite.load(Relaxed) {
            FINITE_YES => true,
            FINITE_NO => false,
            _ => {
                let yes = self.data.iter().all(|v| v.is_finite());
                self.finite.store(if yes { FINITE_YES } else { FINITE_NO }, Relaxed);
                yes
            }
        }
    }
    /// Record what an update that checked every value it wrote found.
    pub(crate) fn set_all_finite(&mut self, yes: bool) {
        self.finite = AtomicU8::new(if yes { FINITE_YES } else { FINITE_NO });
    }
}

/// Position of element (r, j) of a K-row matrix in the packed layout (see
/// [`PackedMat`]): panel j/16, row r, lane j%16.
#[inline(always)]
pub(crate) fn packed_index(k: usize, r: usize, j: usize) -> usize {
    (j / NR) * k * NR + r * NR + j % NR
}

/// Receives each finished tile of a GEMM in place of C (the dW GEMM hands
/// its tiles to the optimiser this way).
pub(crate) trait TileSink: Sync {
    /// The tile at (i0, j0) with `rows` rows is about to be computed: a
    /// hint to start fetching what [`TileSink::take`] will read, so that
    /// its loads do not wait on memory after the tile's fmas.
    fn prefetch(&self, i0: usize, j0: usize, rows: usize);
    /// The finished tile at (i0, j0): `rows` × `cols` values, row stride 16.
    ///
    /// # Safety
    /// The tile lies inside the GEMM's C, whose shape the sink was built
    /// for; no other call is handed the same tile at the same time (the
    /// GEMM's tasks partition C); `tile` holds `rows` × 16 values.
    unsafe fn take(&self, i0: usize, j0: usize, rows: usize, cols: usize, tile: &[f32]);
    /// Whether [`TileSink::take`] could give other bits for the tile at
    /// (i0, j0) if some of its zeros had the other sign. A GEMM that left
    /// out A's all-zero k steps knows each output only up to the sign of a
    /// zero (see [`gemm_avx2_src`]) and asks this before handing the tile
    /// over; where the answer is yes, it recomputes the tile by the spec.
    /// `tile` holds `rows` × 16 values (row stride 16).
    fn zero_sign_matters(&self, i0: usize, j0: usize, rows: usize, tile: &[f32]) -> bool;
}

/// Recomputes the tile at (i0, j0), `rows` × `cols`, by the spec into a
/// buffer of row stride 16 (see [`TileSink::zero_sign_matters`]).
pub(crate) type ExactTile<'a> = dyn Fn(usize, usize, usize, usize, &mut [f32; MR * NR]) + Sync + 'a;

/// The epilogue as the AVX2 driver sees it: the public ones, or a sink that
/// receives each finished tile (rows × cols, stride 16) instead of storing it.
#[derive(Clone, Copy)]
pub(crate) enum Epi<'a> {
    Out(Epilogue<'a>),
    Sink(&'a dyn TileSink),
}

/// Where the B operand comes from.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a> {
    Mat(MatRef<'a>),
    Packed(&'a PackedMat),
    /// `dz[i,j] = h[i,j] · (dLdG_i + dLdG_i)` (plus the peer term, see
    /// [`crate::cpu::linear::dz_at`]) built while packing, with the bias
    /// gradient `db[j]` accumulated in row order on the way.
    LocalGrad {
        h: MatRef<'a>,
        dldg: &'a [f32],
        peer: Option<crate::cpu::linear::PeerCols<'a>>,
        db: SharedMut,
        /// The most rows this layer's batches can keep: the packing
        /// buffers are sized for it, so that a batch keeping more rows
        /// than the last (see `linear`) does not grow them.
        rows_cap: usize,
        /// The rows that take part, in order (k-th row of dz = row
        /// `kept[k]` of h), or all of them. The same map picks A's columns:
        /// A is then the transposed view of all rows (see [`kmap`]).
        kept: Option<&'a [u32]>,
    },
    /// The im2col matrix of a 3×3 conv, packed straight from the image.
    Im2col(crate::cpu::conv::ImplicitCol<'a>),
    /// Its transpose (pixels × taps), the dW's B.
    Im2colT(crate::cpu::conv::ImplicitCol<'a>),
}

/// Row `k` of the product's inner dimension in the operands' own rows:
/// `kept[k]` where only some rows take part, else `k`.
#[inline(always)]
fn kept_row(kept: Option<&[u32]>, k: usize) -> usize {
    kept.map_or(k, |ix| ix[k] as usize)
}

/// The map from the product's k to A's column, where B's source keeps only
/// some rows (the FF dW leaves out rows with dL/dG = 0 without copying).
fn kmap<'a>(b: &BSource<'a>) -> Option<&'a [u32]> {
    match *b {
        BSource::LocalGrad { kept, .. } => kept,
        _ => None,
    }
}

impl BSource<'_> {
    fn rows(&self) -> usize {
        match self {
            BSource::Mat(m) => m.rows,
            BSource::Packed(p) => p.k,
            BSource::LocalGrad { h, kept, .. } => kept.map_or(h.rows, |ix| ix.len()),
            BSource::Im2col(c) => c.rows(),
            BSource::Im2colT(c) => c.cols(),
        }
    }
    fn cols(&self) -> usize {
        match self {
            BSource::Mat(m) => m.cols,
            BSource::Packed(p) => p.n,
            BSource::LocalGrad { h, .. } => h.cols,
            BSource::Im2col(c) => c.cols(),
            BSource::Im2colT(c) => c.rows(),
        }
    }
}

pub(crate) const MR: usize = crate::ops::gemm::PANEL_ROWS;
pub(crate) const NR: usize = 16;
pub(crate) const KC: usize = 256;
const MC_MAX: usize = 72;
/// Up to this many rows, threads split the columns of C instead of its rows.
const COL_SPLIT_MAX_ROWS: usize = 512;
const NC: usize = 4096;

impl CpuBackend {
    /// `c = epilogue(a · b)` (see [`crate::ops::gemm`] for the spec).
    pub fn gemm(&self, a: MatRef, b: MatRef, mut c: MatMut, epi: Epilogue) -> Result<()> {
        self.gemm_impl("gemm", a, b, &mut c, epi, None)
    }

    pub(crate) fn gemm_impl(
        &self,
        op: &'static str,
        a: MatRef,
        b: MatRef,
        c: &mut MatMut,
        epi: Epilogue,
        g: Option<&mut [f32]>,
    ) -> Result<()> {
        if a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
            return Err(shape_err(
                op,
                format!("A {}×{} · B {}×{} → C {}×{}", a.rows, a.cols, b.rows, b.cols, c.rows, c.cols),
            ));
        }
        if let Some(bias) = epi.bias() {
            check_len(op, "bias", bias.len(), b.cols)?;
        }
        match self.kind {
            CpuKind::Scalar => gemm_scalar(a, b, c, epi, g),
            CpuKind::Avx2 => gemm_avx2(a, b, c, epi, g),
        }
        Ok(())
    }
}

/// A strided view of a host buffer as the CPU kernels take it.
pub(crate) fn host_mat<'a>(m: Mat<'a, Vec<f32>>) -> Result<MatRef<'a>> {
    MatRef::strided(m.buf, m.rows, m.cols, m.rs, m.cs)
}

impl GemmOps for CpuBackend {
    fn gemm(
        &self,
        a: Mat<'_, Vec<f32>>,
        b: Mat<'_, Vec<f32>>,
        c: &mut Vec<f32>,
        epi: Epilogue<'_, Vec<f32>>,
    ) -> Result<()> {
        let _p = crate::profile::scope("gemm");
        let (m, n, _) = gemm_shapes("gemm", &a, &b, c, &epi)?;
        if !matches!(epi, Epilogue::Accumulate) {
            pages::grow(c, m * n)?;
        }
        CpuBackend::gemm(self, host_mat(a)?, host_mat(b)?, MatMut::new(c, m, n)?, epi.map(|v| v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, ASHARED, BPACK};

    #[test]
    fn nested_held_buffers_are_reused_not_reallocated() {
        // A GEMM that runs inside another on the same thread takes a second
        // buffer; once both exist, the same nesting finds them again.
        let round = || {
            let outer = Held::take(&ASHARED, 1000);
            let inner = Held::take(&ASHARED, 500);
            let ptrs = (outer.as_ptr(), inner.as_ptr());
            drop(inner);
            drop(outer);
            ptrs
        };
        let first = round();
        assert_eq!(ASHARED.with(|s| s.borrow().len()), 2, "both buffers went back to the thread's stack");
        for _ in 0..3 {
            assert_eq!(round(), first);
        }
    }

    #[test]
    fn held_buffers_fit_whichever_call_nests_inside_which() {
        // The same two sizes nested the other way round (the next layer's
        // forward inside the update, or the update inside the forward) find
        // the buffers already there: each call takes the smallest that fits.
        let nest = |outer_need: usize, inner_need: usize| {
            let outer = Held::take(&BPACK, outer_need);
            let inner = Held::take(&BPACK, inner_need);
            let ptrs = (outer.as_ptr(), inner.as_ptr());
            drop(inner);
            drop(outer);
            ptrs
        };
        let (big, small) = nest(4000, 300);
        assert_eq!(nest(300, 4000), (small, big), "reversed nesting reallocated");
        assert_eq!(nest(4000, 300), (big, small));
        assert_eq!(BPACK.with(|s| s.borrow().len()), 2);
    }
}
