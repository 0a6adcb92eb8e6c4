//! The label-embedding channel of convolutional FF: a learned H×W map per
//! class, written as one extra input channel, and its gradient.
//!
//! **Spec.** Forward copies `emb[label_b]` into image b's plane of the
//! channel. Backward: `demb[l] = Σ over b ascending with label_b = l of
//! dchan[b]`, elementwise from +0.0 with plain `+` (zero for classes not in
//! the batch). One implementation serves both backends, parallel over
//! classes.

use super::CpuBackend;
use crate::error::{check_len, shape_err, Result};
use rayon::prelude::*;

fn check_labels(op: &'static str, labels: &[u32], classes: usize) -> Result<()> {
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(shape_err(op, format!("label {l} with {classes} classes")));
    }
    Ok(())
}

impl CpuBackend {
    /// Write `emb[labels[b]]` (emb: classes × hw) into `chan` (n × hw).
    pub fn label_channel(&self, emb: &[f32], hw: usize, labels: &[u32], chan: &mut [f32]) -> Result<()> {
        let classes = emb.len().checked_div(hw).unwrap_or(0);
        check_len("label_channel", "embedding", emb.len(), classes * hw)?;
        check_len("label_channel", "channel", chan.len(), labels.len() * hw)?;
        check_labels("label_channel", labels, classes)?;
        if hw == 0 {
            return Ok(());
        }
        chan.par_chunks_mut(hw).zip(labels.par_iter()).for_each(|(c, &l)| {
            c.copy_from_slice(&emb[l as usize * hw..(l as usize + 1) * hw]);
        });
        Ok(())
    }

    /// `demb` (classes × hw, overwritten) from the channel's gradient.
    pub fn label_channel_grad(&self, dchan: &[f32], hw: usize, labels: &[u32], demb: &mut [f32]) -> Result<()> {
        let classes = demb.len().checked_div(hw).unwrap_or(0);
        check_len("label_channel_grad", "embedding gradient", demb.len(), classes * hw)?;
        check_len("label_channel_grad", "channel gradient", dchan.len(), labels.len() * hw)?;
        check_labels("label_channel_grad", labels, classes)?;
        if hw == 0 {
            return Ok(());
        }
        demb.par_chunks_mut(hw).enumerate().for_each(|(l, d)| {
            d.fill(0.0);
            for (b, _) in labels.iter().enumerate().filter(|(_, &y)| y as usize == l) {
                for (o, &v) in d.iter_mut().zip(&dchan[b * hw..(b + 1) * hw]) {
                    *o = *o + v;
                }
            }
        });
        Ok(())
    }
}

/// The channel's range `offset..offset + n·hw` of a buffer of `len` values.
fn channel_range(op: &'static str, len: usize, offset: usize, n: usize, hw: usize) -> Result<std::ops::Range<usize>> {
    let end = offset + n * hw;
    if end > len {
        return Err(shape_err(op, format!("a channel of {n} planes of {hw} at {offset} is past a {len}-value buffer")));
    }
    Ok(offset..end)
}

impl crate::ops::EmbedOps for CpuBackend {
    fn label_channel(
        &self,
        emb: &Vec<f32>,
        hw: usize,
        labels: &Vec<u32>,
        x: &mut Vec<f32>,
        offset: usize,
    ) -> Result<()> {
        let _p = crate::profile::scope("label_channel");
        let r = channel_range("label_channel", x.len(), offset, labels.len(), hw)?;
        CpuBackend::label_channel(self, emb, hw, labels, &mut x[r])
    }
    fn label_channel_grad(
        &self,
        dx: &Vec<f32>,
        offset: usize,
        hw: usize,
        labels: &Vec<u32>,
        demb: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("label_channel_grad");
        let r = channel_range("label_channel_grad", dx.len(), offset, labels.len(), hw)?;
        CpuBackend::label_channel_grad(self, &dx[r], hw, labels, demb)
    }
}
