//! # ffwd
//!
//! Forward-Forward training, bit-exact on every backend. This facade
//! re-exports the workspace crates: [`tensor`] (storage, Philox RNG,
//! safetensors), [`kernels`] (the op families as traits, the `Backend`
//! trait that sums them, the scalar spec + AVX2 CPU backend and the CUDA
//! backend), [`layers`] (every network, written once over `Backend`, and
//! the `Network` trait), [`data`] (dataset readers) and [`train`]
//! (trainer, configs, metrics, checkpoints).

pub use ffwd_datasets as data;
pub use ffwd_kernels as kernels;
pub use ffwd_layers as layers;
pub use ffwd_tensor as tensor;
pub use ffwd_train as train;
