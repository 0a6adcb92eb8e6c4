//! The statistics of training batches, kept where the backend computes
//! them. Each op that produces a scalar (a loss, a mean goodness) writes it
//! into a `StatLog`'s buffer on the backend; the network reads the log
//! back every [`Backend::stats_every`] batches (every batch on the CPU, in
//! blocks on a device, so the device never waits for the host inside a
//! training step) and turns each batch's row into a [`BatchStats`].
//!
//! A row holds [`SLOTS`] values per layer (a loss, then the mean G⁺ and G⁻
//! or a second loss) and as many for the readout after the last layer. A non-finite
//! loss is an error naming its layer when the log is read: at once on the
//! CPU, up to `stats_every` batches late on a device.

use crate::{Error, Result};
use ffwd_kernels::{Backend, Len, StatSlot};

/// Values per layer in a batch's row.
pub const SLOTS: usize = 3;

/// Per-layer statistics of one training batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerStats {
    pub loss: f32,
    /// Mean sum-form goodness over the positive rows (NaN: not a goodness
    /// loss).
    pub g_pos: f32,
    /// Mean sum-form goodness over the negative rows (NaN likewise).
    pub g_neg: f32,
    /// A second loss of the layer, NaN if none (a UFF GAN cell: the
    /// generator's).
    pub aux: f32,
}

impl LayerStats {
    /// A layer whose loss is not a goodness loss.
    pub fn loss_only(loss: f32) -> Self {
        Self { loss, g_pos: f32::NAN, g_neg: f32::NAN, aux: f32::NAN }
    }
}

/// Statistics of one training batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// Per layer; `None` for layers that did not learn in this batch.
    pub layers: Vec<Option<LayerStats>>,
    /// The readout's (or classifier head's) loss, if it learned.
    pub readout_loss: Option<f32>,
}

/// What a layer (or the readout) wrote into its slots in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A loss in slot 0.
    Loss,
    /// A goodness loss in slot 0 and the mean G⁺, G⁻ in slots 1, 2.
    Goodness,
    /// A loss in slot 0 and a second one (checked too) in slot 1.
    LossAux,
    /// Two losses in slots 0 and 1, reported as their mean `(a + b)·0.5`
    /// (the contrastive twins' two copies).
    TwinMean,
}

/// A network's log of batch statistics on the backend (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct StatLog<T> {
    buf: T,
    /// Layers, not counting the readout.
    layers: usize,
    /// What each pending batch wrote, per layer then the readout.
    pending: Vec<Vec<Option<Entry>>>,
    /// The layer index of the output head, if its loss is checked.
    readout_checked: Option<usize>,
}

impl<T: Len + Default> StatLog<T> {
    /// A log for `layers` layers and a readout; a non-finite readout loss
    /// is an error naming the output head, layer `readout_checked` (if
    /// given).
    pub fn new(layers: usize, readout_checked: Option<usize>) -> Self {
        Self { buf: T::default(), layers, pending: Vec::new(), readout_checked }
    }

    fn width(&self) -> usize {
        SLOTS * (self.layers + 1)
    }

    /// Start a batch's row; returns its first position.
    pub fn begin<B: Backend<Buf = T>>(&mut self, be: &B) -> Result<usize> {
        let want = self.width() * be.stats_every().max(self.pending.len() + 1);
        if self.buf.len() < want {
            be.resize(&mut self.buf, want)?;
        }
        let at = self.pending.len() * self.width();
        self.pending.push(vec![None; self.layers + 1]);
        Ok(at)
    }

    /// Position of slot `k` of `layer` (`layers` for the readout) in the row at `row`.
    pub fn at(&self, row: usize, layer: usize, k: usize) -> usize {
        row + SLOTS * layer + k
    }

    /// Slot `k` of `layer` in the row at `row`, marked as holding `e`.
    pub fn slot(&mut self, row: usize, layer: usize, k: usize, e: Entry) -> StatSlot<'_, T> {
        if let Some(p) = self.pending.last_mut() {
            p[layer] = Some(e);
        }
        let at = self.at(row, layer, k);
        StatSlot::new(&mut self.buf, at)
    }

    /// The buffer and the positions of each layer's slots, for ops that
    /// write several layers' statistics (the pipelined FF stack); mark the
    /// layers with [`StatLog::mark`].
    pub fn buf_mut(&mut self) -> &mut T {
        &mut self.buf
    }

    /// Record that `layer` wrote `e` in the current batch.
    pub fn mark(&mut self, layer: usize, e: Entry) {
        if let Some(p) = self.pending.last_mut() {
            p[layer] = Some(e);
        }
    }

    /// Drop the current batch's row (a batch that failed before it ended).
    pub fn abandon(&mut self) {
        self.pending.pop();
    }

    /// The batches read back now: all pending ones once the backend's block
    /// is full, else none.
    /// End a batch begun with [`StatLog::begin`]: a failed step leaves no
    /// row behind and its error is returned; else the statistics due (see
    /// [`StatLog::take_due`]).
    pub fn finish<B: Backend<Buf = T>>(&mut self, be: &B, step: Result<()>) -> Result<Vec<BatchStats>> {
        if let Err(e) = step {
            self.abandon();
            return Err(e);
        }
        self.take_due(be)
    }

    pub fn take_due<B: Backend<Buf = T>>(&mut self, be: &B) -> Result<Vec<BatchStats>> {
        if self.pending.len() >= be.stats_every().max(1) {
            self.take(be)
        } else {
            Ok(Vec::new())
        }
    }

    /// Read back every pending batch, in order; a non-finite loss is an
    /// error naming its layer.
    pub fn take<B: Backend<Buf = T>>(&mut self, be: &B) -> Result<Vec<BatchStats>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let w = self.width();
        let rows = std::mem::take(&mut self.pending);
        let n = rows.len() * w;
        let values = be.with_host(&self.buf, |v| v[..n].to_vec())?;
        let mut out = Vec::with_capacity(rows.len());
        for (r, wrote) in rows.iter().enumerate() {
            let row = &values[r * w..(r + 1) * w];
            let mut b = BatchStats { layers: vec![None; self.layers], readout_loss: None };
            for (l, e) in wrote.iter().enumerate() {
                let Some(e) = *e else { continue };
                let v = &row[SLOTS * l..SLOTS * (l + 1)];
                let s = match e {
                    Entry::Loss => LayerStats::loss_only(v[0]),
                    Entry::Goodness => LayerStats { loss: v[0], g_pos: v[1], g_neg: v[2], aux: f32::NAN },
                    Entry::LossAux => LayerStats { aux: v[1], ..LayerStats::loss_only(v[0]) },
                    Entry::TwinMean => LayerStats::loss_only((v[0] + v[1]) * 0.5),
                };
                let checked = l < self.layers || self.readout_checked.is_some();
                let what = || match self.readout_checked {
                    Some(h) if l >= self.layers => format!("the output head (layer {h})"),
                    _ => format!("layer {l}"),
                };
                for x in [s.loss, if e == Entry::LossAux { s.aux } else { 0.0 }] {
                    if checked && !x.is_finite() {
                        return Err(Error::NonFinite { what: what(), loss: x });
                    }
                }
                if l < self.layers {
                    b.layers[l] = Some(s);
                } else {
                    b.readout_loss = Some(s.loss);
                }
            }
            out.push(b);
        }
        Ok(out)
    }
}

/// A few scalars on the backend, for calls outside a network's log (a
/// single layer's step in a test, the probe's epochs): write them through
/// [`Scalars::slot`], read them with [`Scalars::read`].
#[derive(Debug)]
pub struct Scalars<B: Backend> {
    buf: B::Buf,
}

impl<B: Backend> Scalars<B> {
    /// Room for `n` values.
    pub fn new(be: &B, n: usize) -> Result<Self> {
        Ok(Self { buf: be.zeros(n)? })
    }
    /// Where an op writes value `at`.
    pub fn slot(&mut self, at: usize) -> StatSlot<'_, B::Buf> {
        StatSlot::new(&mut self.buf, at)
    }
    /// The values on the host (waits for the backend).
    pub fn read(&self, be: &B) -> Result<Vec<f32>> {
        Ok(be.download(&self.buf)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffwd_kernels::CpuBackend;

    /// A log of 2 layers and a checked head, with one batch whose slot 0
    /// of `layer` holds `v`.
    fn one_batch(layer: usize, v: f32) -> Result<Vec<BatchStats>> {
        let be = CpuBackend::scalar();
        let mut log = StatLog::<Vec<f32>>::new(2, Some(2));
        let row = log.begin(&be)?;
        let s = log.slot(row, layer, 0, Entry::Loss);
        s.buf[s.at] = v;
        log.take(&be)
    }

    #[test]
    fn a_diverged_loss_names_the_layer_or_the_output_head() {
        let e = one_batch(1, f32::NAN).unwrap_err().to_string();
        assert!(e.starts_with("layer 1: training diverged"), "{e}");
        let e = one_batch(2, f32::INFINITY).unwrap_err().to_string();
        assert!(e.starts_with("the output head (layer 2): training diverged"), "{e}");
        let ok = one_batch(2, 0.5).unwrap();
        assert_eq!(ok[0].readout_loss, Some(0.5));
    }

    #[test]
    fn a_failed_step_leaves_no_row_behind() {
        let be = CpuBackend::scalar();
        let mut log = StatLog::<Vec<f32>>::new(1, None);
        log.begin(&be).unwrap();
        let err = crate::Error::Batch("bad".into());
        assert!(log.finish(&be, Err(err)).is_err());
        assert!(log.take(&be).unwrap().is_empty());
        let row = log.begin(&be).unwrap();
        let s = log.slot(row, 0, 0, Entry::Loss);
        s.buf[s.at] = 1.5;
        let got = log.finish(&be, Ok(())).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].layers[0].map(|l| l.loss), Some(1.5));
    }
}
