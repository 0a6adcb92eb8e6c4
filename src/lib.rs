//! # ffwd
//!
//! Forward-Forward training, bit-exact on every backend. This facade
//! re-exports the workspace crates: [`tensor`] (storage, Philox RNG,
//! safetensors), [`kernels`] (the numeric spec and the AVX2 backend),
//! [`layers`] (FF layers and models), [`data`] (dataset readers) and
//! [`train`] (trainer, configs, metrics, checkpoints).

pub use ffwd_datasets as data;
pub use ffwd_kernels as kernels;
pub use ffwd_layers as layers;
pub use ffwd_tensor as tensor;
pub use ffwd_train as train;
