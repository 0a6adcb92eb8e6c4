//! Random draws on the backend, from the counter-based Philox4x32-10
//! stream `(seed, stream)` (see `ffwd_tensor::Philox`), each value taking
//! the block of its position, so the result never depends on how the work
//! is split.
//!
//! **Spec.** A uniform from a word: `u(x) = (x >> 8) · 2⁻²⁴`. A Gaussian
//! from one block `w` (Irwin–Hall, no transcendental): `((u(w0) + u(w1)) +
//! (u(w2) + u(w3)) − 2) · 1.7320508`. For a batch of rows of `d` values
//! whose first row sits at position `first` of the epoch, value j of row i
//! draws block `4·((first + i)·d + j) + part`.
//!
//! * [`PhiloxOps::gaussian`]: `out[i, j]` = the Gaussian of that block.
//! * [`PhiloxOps::dae_corrupt`]: the denoising autoencoder's input:
//!   `g` = the Gaussian of part 0, `m = u(word 0 of part 2)`;
//!   `out = (x if m ≥ p else 0) + σ·g`.

use super::Storage;
use crate::error::Result;

/// Where a batch's draws sit: the Philox key, the stream, and the epoch
/// position of the batch's first row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RngPos {
    pub seed: u64,
    pub stream: u64,
    pub first: u64,
}

/// The random-draw family.
pub trait PhiloxOps: Storage {
    /// `rows × d` Gaussians from blocks of part `part` (`out` resized).
    fn gaussian(&self, pos: RngPos, rows: usize, d: usize, part: u64, out: &mut Self::Buf) -> Result<()>;
    /// The DAE's corrupted copy of `x` (rows of `d`; `out` resized): each
    /// value zeroed with probability `mask_prob`, then `noise_std` times a
    /// Gaussian added.
    fn dae_corrupt(
        &self,
        x: &Self::Buf,
        d: usize,
        pos: RngPos,
        mask_prob: f32,
        noise_std: f32,
        out: &mut Self::Buf,
    ) -> Result<()>;
}

/// A uniform in [0, 1) from the top 24 bits of a word.
#[inline(always)]
pub fn uniform24(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The Irwin–Hall Gaussian of one Philox block (unit variance).
#[inline(always)]
pub fn gauss(w: [u32; 4]) -> f32 {
    (((uniform24(w[0]) + uniform24(w[1])) + (uniform24(w[2]) + uniform24(w[3]))) - 2.0) * 1.732_050_8
}
