//! The CUDA side: kernel sources in the workspace's `kernels/` folder, one
//! file per op family named like `cpu/<family>.rs`, compiled at run time by
//! NVRTC with fixed, exactness-preserving options ([`compile`]), and a lint
//! of the resulting PTX ([`lint`]).
//!
//! Status: the sources compile to PTX and pass the lint on machines without a
//! GPU (CI does this with the `nvidia-cuda-nvrtc` wheel). The launch
//! wrappers, the device buffers and the bit-exact GPU tests are not written
//! yet, and no kernel has run on a GPU so far.

pub mod compile;
pub mod lint;

pub use compile::{compile_ptx, nvrtc_available, Module, MODULES};
pub use lint::lint_ptx;
