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
//! baselines on the same layers ([`backprop`]), the optimiser state
//! ([`optim`]) and the configuration types ([`config`]).

// Sums are written as `t = t + x` on purpose: the order is part of the spec.
#![allow(clippy::assign_op_pattern)]

pub mod backprop;
pub mod config;
pub mod conv;
mod error;
pub mod ff;
pub mod ff_cuda;
pub mod ffcl;
mod linear;
pub mod optim;
pub mod probe;
pub mod readout;
pub mod uff;

pub use error::{Error, Result};
