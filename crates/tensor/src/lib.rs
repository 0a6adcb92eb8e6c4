//! # ffwd-tensor
//!
//! Storage for the ffwd engine: a [`Tensor`] is a shape plus a contiguous,
//! row-major `f32` buffer on the host; [`HalfTensor`] stores the same values as
//! f16 or bf16 (round-to-nearest-even through `half`); `bytemuck` gives byte
//! views of both. This crate also owns the counter-based random number
//! generator every other part of ffwd draws from ([`Philox`], Philox4x32-10
//! keyed by `(seed, stream)`, checked against the Random123 known-answer
//! vectors), and safetensors I/O with crash-safe writes
//! ([`io::save_safetensors`] writes a temporary file and renames it).
//! [`DeviceTensor`] is the same storage in CUDA device memory.
//! Nothing here computes: arithmetic lives in `ffwd-kernels`.

pub mod device;
mod error;
pub mod io;
pub mod philox;
mod tensor;

pub use device::DeviceTensor;
pub use error::{Error, Result};
pub use philox::{stream, Philox};
pub use tensor::{DType, HalfTensor, Tensor};
