//! # ffwd-train
//!
//! The thin trainer around `ffwd-layers`: the TOML run configuration
//! ([`config::RunConfig`]), the epoch loop with Philox-driven shuffles and
//! negatives ([`trainer::Trainer`]), per-epoch per-layer metrics appended as
//! JSON lines, checkpoints in safetensors written atomically
//! ([`checkpoint`]), and the `ffwd` command line ([`cli`]).

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
mod error;
pub mod model;
pub mod plot;
pub mod png;
pub mod resume;
pub mod rundir;
pub mod trainer;

pub use error::{Error, Result};
