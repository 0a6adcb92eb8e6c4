//! The label-embedding channel of convolutional FF: a learned H×W map per
//! class, written as one input channel, and its gradient.
//!
//! **Spec.** Forward copies `emb[label_b]` into image b's plane of the
//! channel. Backward: `demb[l] = Σ over b ascending with label_b = l of
//! dchan[b]`, elementwise from +0.0 with plain `+` (zero for classes not in
//! the batch).

use super::Storage;
use crate::error::Result;

/// The label-channel family. The channel is `labels.len()` planes of `hw`
/// values starting at `offset` of a CNHW buffer (channel c of n images
/// starts at c·n·hw).
pub trait EmbedOps: Storage {
    /// Write `emb[labels[b]]` (emb: classes × hw) into the channel of `x`.
    fn label_channel(
        &self,
        emb: &Self::Buf,
        hw: usize,
        labels: &Self::Ids,
        x: &mut Self::Buf,
        offset: usize,
    ) -> Result<()>;
    /// `demb` (classes × hw, overwritten, not resized) from the channel's
    /// gradient in `dx`.
    fn label_channel_grad(
        &self,
        dx: &Self::Buf,
        offset: usize,
        hw: usize,
        labels: &Self::Ids,
        demb: &mut Self::Buf,
    ) -> Result<()>;
}
