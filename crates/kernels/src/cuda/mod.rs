//! The CUDA side: kernel sources in the workspace's `kernels/` folder, one
//! file per op family named like `cpu/<family>.rs`, compiled at run time by
//! NVRTC with fixed, exactness-preserving options ([`compile`]), and a lint
//! of the resulting PTX ([`lint`]).
//!
//! [`device`] holds the device, its stream and the module cache (keyed by
//! module; PTX is cached per module and architecture); each op family's
//! launch wrappers sit in the file of its name (`cuda/gemm.rs` launches
//! `kernels/gemm.cu`), in two forms: on device buffers (`*_on`, what
//! device-resident training uses) and host slice in, host vector out (what
//! `tests/gpu_bitexact.rs` compares with the scalar spec).
//!
//! Status: the sources compile to PTX and pass the lint on machines without
//! a GPU (CI does this with the `nvidia-cuda-nvrtc` wheel); on one H100 every
//! op matches the scalar specification bit for bit and CPU and GPU training
//! write byte-identical checkpoints (benches/results/gpu-h100-2026-11-23.md).

pub mod compile;
mod conv;
pub mod device;
mod embed;
pub mod gemm;
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
pub use conv::ConvOut;
pub use device::{cuda_device, cuda_device_checked, CudaDevice};
pub use gemm::Tile;
pub use linear::{LinearDims, UpdatedLayer};
pub use lint::lint_ptx;
pub use optim::OptimParams;
