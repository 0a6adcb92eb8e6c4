//! # ffwd-layers
//!
//! The algorithms, one module per variant, built only from `ffwd-kernels`
//! ops with every gradient written by hand (no autodiff). This crate owns
//! the FF layer ([`ff::FfLayer`]: normalise → linear → ReLU → goodness →
//! local loss → local update), the supervised FF network of Hinton (2022)
//! with the label written into the input ([`ff::FfNet`]; threshold or SymBa
//! loss, simultaneous or layer-by-layer training, prediction A by goodness
//! per label and prediction B by a linear softmax readout), the
//! convolutional FF net and the Trifecta ([`conv`]), the backprop
//! baselines on the same layers ([`backprop`]), the FF contrastive twins
//! ([`ffcl`]), the unsupervised FF stacks ([`uff`]), the linear probe
//! ([`probe`]), the optimiser state ([`optim`]) and the configuration types
//! ([`config`]).
//!
//! **One code for every backend.** Every network is generic over
//! `B: ffwd_kernels::Backend` and built on one (`FfNet::new(be, …)`): its
//! parameters, optimiser state and work buffers live on that backend, and
//! every step is a sequence of backend ops; only batches, predictions,
//! statistics and checkpoints cross to the host. Scalar results are
//! written into a log on the backend and read back in blocks
//! ([`stats`]). [`Network`] is the object-safe face of every network.

// Sums are written as `t = t + x` on purpose: the order is part of the spec.
#![allow(clippy::assign_op_pattern)]

pub mod backprop;
mod checks;
pub mod config;
pub mod conv;
mod error;
pub mod ff;
pub mod ffcl;
mod linear;
pub mod network;
pub mod optim;
pub mod predict;
pub mod probe;
pub mod readout;
pub mod state;
pub mod stats;
pub mod tensors;
pub mod uff;

pub use error::{Error, Result};
pub use network::{Batch, Network};
pub use predict::Predictions;
pub use state::{NetState, StateIo};
pub use stats::{BatchStats, LayerStats};
