//! The CUDA backend: kernel sources in the workspace's `kernels/` folder,
//! one file per op family named like `cpu/<family>.rs` and `ops/<family>.rs`,
//! compiled at run time by NVRTC with fixed, exactness-preserving options
//! ([`compile`]), and a lint of the resulting PTX ([`lint`]).
//!
//! [`CudaBackend`] implements every op family of [`crate::ops`] on device
//! buffers ([`DevBuf`]); [`device`] holds the device, its stream and the
//! module cache; each family's launch wrappers sit in the file of its name
//! (`cuda/gemm.rs` launches `kernels/gemm.cu`). Every wrapper checks the
//! lengths of its buffers against the shapes it is given before it
//! launches, and labels against the class count, so no launch reads or
//! writes out of bounds.
//!
//! Status: the sources compile to PTX and pass the lint on machines without
//! a GPU (CI does this with the `nvidia-cuda-nvrtc` wheel). The ops that
//! existed before the backend trait matched the scalar specification bit
//! for bit on one H100 (benches/results/gpu-h100-2026-11-23.md); the ones
//! added with it (`kernels/README.md` lists them), and the generic
//! conformance suite (`crates/kernels/tests/conformance.rs`) that checks
//! every family, have not run on a GPU yet.

pub mod compile;
mod conv;
pub mod device;
mod embed;
pub mod gemm;
mod layout;
pub mod linear;
pub mod lint;
mod loss;
mod math;
mod norm2d;
pub mod optim;
mod philox;
mod pool;
mod reduce;

pub use compile::{compile_ptx, nvrtc_available, Module, MODULES};
pub use conv::DevConvScratch;
pub use device::{
    cuda_device, cuda_device_checked, CudaBackend, CudaDevice, Dev, DevBuf, DevBytes, DevIds, STATS_EVERY,
};
pub use gemm::Tile;
pub use linear::DevMat;
pub use lint::lint_ptx;
pub use loss::DevLossScratch;
pub use optim::OptimParams;
