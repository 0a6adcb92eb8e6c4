//! # ffwd-kernels
//!
//! Every numeric op of ffwd, and the rules that make them bit-exact. The
//! crate owns the **specification** of each op's arithmetic — the scalar
//! code in [`numerics`] and the `*_scalar` functions of [`cpu`], with the
//! order of every reduction written in the module docs — and the **AVX2+FMA
//! backend** that reproduces it bit for bit with rayon parallelism at any
//! thread count. Both sit in one type, [`CpuBackend`] (chosen at run
//! time). The CUDA backend, [`CudaBackend`] (kernels in the workspace's
//! `kernels/*.cu`), follows the same spec. Every backend implements the
//! same op-family traits of [`ops`], whose sum is [`Backend`]: the
//! networks of `ffwd-layers` are written once over it.
//!
//! The determinism rules in brief: only correctly rounded primitives
//! (`+ − × ÷ √`, explicit fma); our own transcendentals; a GEMM output is a
//! sequential fma chain over k from +0.0; row reductions use the L32 order
//! (32 strided lanes, then a fixed pairwise tree); column sums run
//! sequentially over rows; ReLU is a compare and select; parallelism only
//! partitions outputs, never a reduction.
//!
//! All `unsafe` of the engine lives in this crate, inside the AVX2 kernels
//! and the CUDA launch wrappers, each block with its `SAFETY` reason.

// The specification spells out every rounding step (`acc = acc + v`) and
// index (`for i in 0..n`) on purpose: it is read as the order of operations.
#![allow(clippy::assign_op_pattern, clippy::needless_range_loop)]

pub mod cpu;
pub mod cuda;
mod error;
pub mod mat;
pub mod numerics;
pub mod ops;
pub mod profile;

pub use cpu::conv::ConvScratch;
pub use cpu::gemm::{warm_up_workers, PackedMat};
pub use cpu::loss::{argmax, argmax_value, LossScratch};
pub use cpu::pages::try_zeros;
pub use cpu::{avx2_available, CpuBackend, CpuKind};
pub use cuda::CudaBackend;
pub use error::{Error, Result};
pub use mat::{MatMut, MatRef};
pub use ops::conv::{Cnhw, ConvBackward};
pub use ops::gemm::{Epilogue, StepsRun};
pub use ops::linear::{LinearDims, LinearUpdate, Param, PeerNorm, PeerTerm, Weights};
pub use ops::loss::{FfLoss, GanHalves, GoodnessForm, LossOut, MeanOf};
pub use ops::math::Unary;
pub use ops::norm2d::{bn_rstd, BnGrads, BnStats};
pub use ops::optim::{AdamStep, OptimStep, SgdStep};
pub use ops::philox::RngPos;
pub use ops::reduce::Norm;
pub use ops::{
    Backend, ConvOps, EmbedOps, GemmOps, LayoutOps, Len, LinearOps, LossOps, Mat, MathOps, Norm2dOps, OptimOps,
    PhiloxOps, PoolOps, ReduceOps, StatSlot, Storage,
};
