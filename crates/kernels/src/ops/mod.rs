//! The backend-neutral half of the engine: what every op is, apart from
//! where it runs.
//!
//! **Op types.** The descriptions an op takes ([`Norm`](reduce::Norm),
//! [`FfLoss`](loss::FfLoss), [`GoodnessForm`](loss::GoodnessForm),
//! [`Epilogue`](gemm::Epilogue), [`OptimStep`](optim::OptimStep),
//! [`Cnhw`](conv::Cnhw), …) live here, one file per op family.
//!
//! **Op families.** Each family is one trait with one signature for every
//! backend, on the backend's own buffers ([`Storage::Buf`]: a host `Vec<f32>`
//! on the CPU, device memory on CUDA) and, where they differ, its own packed
//! weights, scratch and index types (associated types of the family). A
//! [`Backend`] is the sum of the families. Every family's three
//! implementations carry one name in three places:
//!
//! | family | trait | CPU (scalar spec + AVX2) | CUDA launch wrappers | CUDA source |
//! | --- | --- | --- | --- | --- |
//! | GEMM | [`GemmOps`] | `cpu/gemm/` | `cuda/gemm.rs` | `kernels/gemm.cu` |
//! | FF linear layer | [`LinearOps`] | `cpu/linear.rs` | `cuda/linear.rs` | `kernels/linear.cu` |
//! | row reductions, norms | [`ReduceOps`] | `cpu/reduce.rs` | `cuda/reduce.rs` | `kernels/reduce.cu` |
//! | losses | [`LossOps`] | `cpu/loss.rs` | `cuda/loss.rs` | `kernels/loss.cu` |
//! | optimisers | [`OptimOps`] | `cpu/optim.rs` | `cuda/optim.rs` | `kernels/optim.cu` |
//! | conv 3×3 | [`ConvOps`] | `cpu/conv.rs` | `cuda/conv.rs` | `kernels/conv.cu` |
//! | pool, upsample | [`PoolOps`] | `cpu/pool.rs` | `cuda/pool.rs` | `kernels/pool.cu` |
//! | batch norm, block norms | [`Norm2dOps`] | `cpu/norm2d.rs` | `cuda/norm2d.rs` | `kernels/norm2d.cu` |
//! | label channel | [`EmbedOps`] | `cpu/embed.rs` | `cuda/embed.rs` | `kernels/embed.cu` |
//! | elementwise math | [`MathOps`] | `cpu/math.rs` | `cuda/math.rs` | `kernels/math.cu` |
//! | random draws | [`PhiloxOps`] | `cpu/philox.rs` | `cuda/philox.rs` | `kernels/philox.cu` |
//! | copies between layouts | [`LayoutOps`] | `cpu/layout.rs` | `cuda/layout.rs` | `kernels/layout.cu` |
//!
//! **Conventions.** An op sizes its outputs itself (a CPU output `Vec` is
//! resized, keeping its allocation) and checks the length of every input
//! against the shapes it is given; a mismatch is an error that names the op
//! and the shapes, on every backend. Buffers that an op reads *and* writes
//! (an optimiser's weights and state, an accumulating GEMM's C, a buffer
//! written at an offset) are checked, never resized. Scalar results (a
//! loss, a mean goodness) are written into a statistics buffer at a given
//! position ([`StatSlot`]) instead of being returned, so that a device never
//! has to wait for the host inside a training step; the networks read their
//! statistics back every [`Backend::stats_every`] batches.

pub mod conv;
pub mod embed;
pub mod gemm;
pub mod layout;
pub mod linear;
pub mod loss;
pub mod math;
pub mod norm2d;
pub mod optim;
pub mod philox;
pub mod pool;
pub mod reduce;

pub use conv::ConvOps;
pub use embed::EmbedOps;
pub use gemm::GemmOps;
pub use layout::LayoutOps;
pub use linear::LinearOps;
pub use loss::LossOps;
pub use math::MathOps;
pub use norm2d::Norm2dOps;
pub use optim::OptimOps;
pub use philox::PhiloxOps;
pub use pool::PoolOps;
pub use reduce::ReduceOps;

use crate::error::Result;
use std::fmt::Debug;

/// Something with a number of elements: every backend buffer.
pub trait Len {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Len for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

impl<T> Len for [T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
}

/// The memory of a backend: its `f32` buffers and `u32` label buffers, and
/// the moves between them and the host.
pub trait Storage: Clone + Send + Sync + Debug + 'static {
    /// An owned buffer of `f32` values.
    type Buf: Len + Default + Clone + Debug + Send + Sync;
    /// An owned buffer of `u32` class labels.
    type Ids: Len + Default + Clone + Debug + Send + Sync;

    /// `n` zeros.
    fn zeros(&self, n: usize) -> Result<Self::Buf>;
    /// Make `buf` hold `n` values: the first `min(len, n)` are kept, new
    /// ones are zero (as `Vec::resize`).
    fn resize(&self, buf: &mut Self::Buf, n: usize) -> Result<()>;
    /// `buf` becomes a copy of `host`.
    fn upload(&self, host: &[f32], buf: &mut Self::Buf) -> Result<()>;
    /// `buf` becomes the `n` values `write` puts into a host slice (on the
    /// CPU the slice is `buf` itself, so nothing is copied).
    fn upload_with(&self, buf: &mut Self::Buf, n: usize, write: impl FnOnce(&mut [f32])) -> Result<()>;
    /// A host copy of the values (waits for the work that writes them).
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// `read` on the values as a host slice (on the CPU, no copy).
    fn with_host<R>(&self, buf: &Self::Buf, read: impl FnOnce(&[f32]) -> R) -> Result<R>;
    /// `dst` becomes a copy of `src`.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()>;
    /// `ids` becomes a copy of `host`.
    fn upload_ids(&self, host: &[u32], ids: &mut Self::Ids) -> Result<()>;
}

/// Where an op writes a scalar result: position `at` of a statistics buffer.
pub struct StatSlot<'a, T> {
    pub buf: &'a mut T,
    pub at: usize,
}

impl<'a, T: Len> StatSlot<'a, T> {
    pub fn new(buf: &'a mut T, at: usize) -> Self {
        Self { buf, at }
    }
    /// Check that `count` values fit from `at` on.
    pub(crate) fn check(&self, op: &'static str, count: usize) -> Result<()> {
        if self.at + count > self.buf.len() {
            return Err(crate::error::shape_err(
                op,
                format!("statistics slot {}..{} is past a {}-value buffer", self.at, self.at + count, self.buf.len()),
            ));
        }
        Ok(())
    }
}

/// A backend: the sum of the op families, and the two things that differ
/// in how a backend runs work rather than in what the work computes.
pub trait Backend:
    Storage
    + GemmOps
    + LinearOps
    + ReduceOps
    + LossOps
    + OptimOps
    + ConvOps
    + PoolOps
    + Norm2dOps
    + EmbedOps
    + MathOps
    + PhiloxOps
    + LayoutOps
{
    /// A short name (`cpu-avx2`, `cpu-scalar`, `cuda`).
    fn name(&self) -> &'static str;
    /// Run `a` and `b`, which touch disjoint state: on the CPU side by side
    /// in the current thread pool (`rayon::join`), on a device one after the
    /// other on its stream. Neither may depend on what the other writes, so
    /// the bits are those of `a` then `b`.
    fn alongside<RA: Send, RB: Send>(&self, a: impl FnOnce() -> RA + Send, b: impl FnOnce() -> RB + Send) -> (RA, RB);
    /// How many batches of statistics a network keeps on the backend
    /// before reading them back (1 on the CPU, where reading costs nothing;
    /// more on a device, where a read waits for the device).
    fn stats_every(&self) -> usize;
    /// Wait until all work queued so far is done.
    fn synchronize(&self) -> Result<()>;
}

/// A strided view of a backend buffer as a matrix (row stride `rs`, column
/// stride `cs`), so that a transpose is free.
#[derive(Debug)]
pub struct Mat<'a, T> {
    pub buf: &'a T,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<T> Clone for Mat<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Mat<'_, T> {}

impl<'a, T: Len> Mat<'a, T> {
    /// A row-major `rows × cols` view; `buf` must hold exactly rows·cols values.
    pub fn new(buf: &'a T, rows: usize, cols: usize) -> Result<Self> {
        if buf.len() != rows * cols {
            return Err(crate::error::shape_err(
                "Mat::new",
                format!("{rows}×{cols} needs {} values, the buffer has {}", rows * cols, buf.len()),
            ));
        }
        Ok(Self { buf, rows, cols, rs: cols, cs: 1 })
    }
    /// A strided view; every addressed element must lie in `buf`.
    pub fn strided(buf: &'a T, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 && (rows - 1) * rs + (cols - 1) * cs >= buf.len() {
            return Err(crate::error::shape_err(
                "Mat::strided",
                format!("{rows}×{cols} with strides ({rs}, {cs}) exceeds {} values", buf.len()),
            ));
        }
        Ok(Self { buf, rows, cols, rs, cs })
    }
    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self { buf: self.buf, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
}
