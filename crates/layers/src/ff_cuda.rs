//! [`CudaFfNet`]: the FF MLP trained on a CUDA device, every parameter,
//! optimiser state and activation resident in device memory.
//!
//! The host [`FfNet`] stays the network's description: its configuration,
//! the label embedding and the choice of each layer's loss. Per batch the
//! host writes the embedded rows (`[x with y⁺; x with y⁻]`, the same bytes
//! the CPU path builds) and uploads them once; then each layer runs, on the
//! device and in the CPU's order of operations: the length normalisation,
//! the forward (GEMM with the bias + ReLU epilogue, then the L32 row
//! goodness), the goodness loss and dL/dG, and the fused backward + update
//! (dz computed while the dW GEMM loads it, the optimiser applied as each
//! dW element's fma chain ends; the bias likewise). Nothing waits for the
//! device inside a batch: each layer's loss and mean G⁺/G⁻ go into a device
//! buffer, one slot per batch, and come back every [`STATS_BLOCK`] batches
//! and at the end of an epoch ([`CudaFfNet::flush`]), with the same values
//! the CPU computes per batch. A diverged loss is therefore reported up to
//! that many batches after it happened, not at once as on the CPU.
//!
//! The kernels follow the scalar specification bit for bit, so training on
//! the device gives the same parameters, bit for bit, as the CPU backends
//! (`tests/cuda_training.rs` compares whole-run checkpoints on a GPU).
//!
//! Supported: local training (`model.training = "local"`), both schedules,
//! prediction by goodness. The readout head (`predict = "readout"`) and
//! the backprop variants run on the CPU only; [`CudaFfNet::new`] says so.

use crate::config::{MlpTraining, OptimConfig, PredictKind};
use crate::ff::{BatchStats, FfNet, LayerStats, Predictions};
use crate::optim::optim_step;
use crate::{Error, Result};
use ffwd_kernels::cuda::{CudaDevice, LinearDims, OptimParams, Tile};
use ffwd_kernels::{Norm, PackedMat};
use ffwd_tensor::DeviceTensor;

/// Batches whose statistics wait on the device before they are read back.
pub const STATS_BLOCK: usize = 64;

/// One layer's device state.
struct DevLayer {
    din: usize,
    dout: usize,
    /// W (din × dout, row-major) and its optimiser state.
    w: [DeviceTensor; 3],
    /// The bias and its optimiser state.
    b: [DeviceTensor; 3],
    /// Optimiser steps taken.
    t: u64,
    /// Work buffers, sized for the largest row count seen.
    xn: DeviceTensor,
    h: DeviceTensor,
    g: DeviceTensor,
    dldg: DeviceTensor,
    loss: DeviceTensor,
    /// (loss, mean G⁺, mean G⁻) per pending batch.
    stats: DeviceTensor,
    rows: usize,
}

/// The FF MLP on a CUDA device (see the module docs).
pub struct CudaFfNet {
    dev: &'static CudaDevice,
    layers: Vec<DevLayer>,
    optim: OptimConfig,
    input: DeviceTensor,
    /// The layers that learned in each batch whose statistics are pending.
    pending: Vec<std::ops::Range<usize>>,
}

fn scratch(dev: &CudaDevice, shape: &[usize]) -> Result<DeviceTensor> {
    Ok(DeviceTensor::zeros(dev.stream(), shape)?)
}

impl DevLayer {
    /// Grow the work buffers to `rows` rows.
    fn reserve(&mut self, dev: &CudaDevice, rows: usize) -> Result<()> {
        if rows > self.rows {
            self.xn = scratch(dev, &[rows, self.din])?;
            self.h = scratch(dev, &[rows, self.dout])?;
            self.g = scratch(dev, &[rows])?;
            self.dldg = scratch(dev, &[rows])?;
            self.rows = rows;
        }
        Ok(())
    }

    fn dims(&self, rows: usize) -> LinearDims {
        LinearDims { rows, din: self.din, dout: self.dout }
    }

    /// Normalise `x` (rows × din) and run the forward into `h`, `g`.
    fn forward(&mut self, dev: &CudaDevice, x: &DeviceTensor, rows: usize, norm: (Norm, f32)) -> Result<()> {
        self.reserve(dev, rows)?;
        dev.normalize_rows_on(x.data(), self.xn.data_mut(), rows, self.din, norm)?;
        let d = self.dims(rows);
        let (w, b) = (self.w[0].data(), self.b[0].data());
        dev.linear_forward_on(self.xn.data(), (w, b), (self.h.data_mut(), self.g.data_mut()), d)?;
        Ok(())
    }
}

impl CudaFfNet {
    /// Upload `net` (untrained, or trained on the device before) to `dev`.
    pub fn new(dev: &'static CudaDevice, net: &FfNet) -> Result<Self> {
        let c = &net.config;
        if c.training != MlpTraining::Local {
            return Err(Error::Config(format!(
                "the CUDA backend trains FF layers locally (model.training = \"local\"); {:?} runs on the CPU",
                c.training
            )));
        }
        if c.predict == PredictKind::Readout || net.readout.is_some() {
            return Err(Error::Config(
                "the CUDA backend predicts by goodness; predict = \"readout\" runs on the CPU".into(),
            ));
        }
        let s = dev.stream();
        let mut layers = Vec::with_capacity(net.layers.len());
        for (i, l) in net.layers.iter().enumerate() {
            if l.steps() > 0 {
                return Err(Error::Layer {
                    layer: i,
                    detail: "has optimiser state from CPU training; the CUDA backend starts from a fresh net".into(),
                });
            }
            let (din, dout) = (l.in_dim, l.out_dim);
            let w = DeviceTensor::from_slice(s, &[din, dout], &l.w.to_row_major())?;
            let b = DeviceTensor::from_slice(s, &[dout], &l.b)?;
            layers.push(DevLayer {
                din,
                dout,
                w: [w, scratch(dev, &[din, dout])?, scratch(dev, &[din, dout])?],
                b: [b, scratch(dev, &[dout])?, scratch(dev, &[dout])?],
                t: 0,
                xn: scratch(dev, &[0, din])?,
                h: scratch(dev, &[0, dout])?,
                g: scratch(dev, &[0])?,
                dldg: scratch(dev, &[0])?,
                loss: scratch(dev, &[1])?,
                stats: scratch(dev, &[STATS_BLOCK, 3])?,
                rows: 0,
            });
        }
        Ok(Self { dev, layers, optim: c.optim.clone(), input: scratch(dev, &[0])?, pending: Vec::new() })
    }

    /// Upload the host's current input rows (`rows` × the input width).
    fn upload_input(&mut self, net: &FfNet, rows: usize) -> Result<()> {
        let vals = &net.input[..rows * net.input_dim()];
        if self.input.len() == vals.len() {
            self.input.write(self.dev.stream(), vals)?;
        } else {
            self.input = DeviceTensor::from_slice(self.dev.stream(), &[rows, net.input_dim()], vals)?;
        }
        Ok(())
    }

    /// Forward `rows` input rows through layers `0..upto` without learning.
    fn forward_input(&mut self, net: &FfNet, rows: usize, upto: usize) -> Result<()> {
        let norm = (net.config.norm.into(), net.config.norm_eps);
        for l in 0..upto {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input } else { &prev[l - 1].h };
            rest[0].forward(self.dev, x, rows, norm)?;
        }
        Ok(())
    }

    /// One training batch: the device twin of [`FfNet::train_batch`] for
    /// local training (layers in `train_layers` learn, layers before it
    /// only forward). `net` supplies the embedding and the losses; its own
    /// parameters are not touched (see [`CudaFfNet::download_into`]).
    ///
    /// Returns the statistics of the batches read back during this call:
    /// none, or every pending batch in order once [`STATS_BLOCK`] are
    /// pending. Call [`CudaFfNet::flush`] at the end of an epoch for the rest.
    pub fn train_batch(
        &mut self,
        net: &mut FfNet,
        images: &[f32],
        labels: &[u8],
        neg_labels: &[u8],
        train_layers: std::ops::Range<usize>,
    ) -> Result<Vec<BatchStats>> {
        let rows = net.embed_batch(images, labels, neg_labels)?;
        self.upload_input(net, rows)?;
        let norm = (net.config.norm.into(), net.config.norm_eps);
        let end = train_layers.end.min(self.layers.len());
        let dev = self.dev;
        let slot = self.pending.len();
        for l in 0..end {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input } else { &prev[l - 1].h };
            let ly = &mut rest[0];
            ly.forward(dev, x, rows, norm)?;
            if !train_layers.contains(&l) {
                continue;
            }
            let (loss, form) = net.loss(l);
            dev.ff_loss_on((loss, form), ly.dout, ly.g.data(), rows, (ly.dldg.data_mut(), ly.loss.data_mut()))?;
            dev.ff_stats_on(ly.g.data(), rows, ly.loss.data(), (ly.stats.data_mut(), slot))?;
            ly.t += 1;
            let p = OptimParams::new(&optim_step(&self.optim, ly.t));
            let d = ly.dims(rows);
            let [w, wa, wb] = &mut ly.w;
            let [b, ba, bb] = &mut ly.b;
            dev.linear_backward_update_on(
                &p,
                (ly.xn.data(), ly.h.data(), ly.dldg.data()),
                (w.data_mut(), wa.data_mut(), wb.data_mut()),
                (b.data_mut(), ba.data_mut(), bb.data_mut()),
                d,
                Tile::Auto,
            )?;
        }
        self.pending.push(train_layers.start..end);
        if self.pending.len() == STATS_BLOCK {
            return self.flush();
        }
        Ok(Vec::new())
    }

    /// Read back the statistics of every pending batch, in batch order (one
    /// wait for the device). A non-finite loss is an error naming its layer.
    pub fn flush(&mut self) -> Result<Vec<BatchStats>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.dev.stream();
        let host = self.layers.iter().map(|l| l.stats.to_vec(s)).collect::<std::result::Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(self.pending.len());
        for (slot, trained) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            let mut b = BatchStats { layers: vec![None; self.layers.len()], readout_loss: None };
            for l in trained {
                let v = &host[l][3 * slot..3 * slot + 3];
                if !v[0].is_finite() {
                    return Err(Error::NonFinite { layer: l, loss: v[0] });
                }
                b.layers[l] = Some(LayerStats { loss: v[0], g_pos: v[1], g_neg: v[2], aux: f32::NAN });
            }
            out.push(b);
        }
        Ok(out)
    }

    /// Predict `n` images by goodness (method A), in chunks of `chunk`
    /// images: the device twin of [`FfNet::predict`].
    pub fn predict(&mut self, net: &mut FfNet, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let (c, nl) = (net.classes, self.layers.len());
        crate::ff::check_images(images.len(), n, net.image_dim)?;
        let mut p = Predictions { per_layer: vec![Vec::with_capacity(n); nl], ..Default::default() };
        let chunk = chunk.max(1);
        for start in (0..n).step_by(chunk) {
            let m = chunk.min(n - start);
            net.embed_candidates(images, start, m);
            self.upload_input(net, m * c)?;
            self.forward_input(net, m * c, nl)?;
            let goods = self
                .layers
                .iter()
                .map(|l| l.g.to_vec(self.dev.stream()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            net.score_candidates(m, |l, r| goods[l][r], &mut p);
        }
        p.overall = p.goodness.clone();
        Ok(p)
    }

    /// Copy the device parameters into `net` (before a checkpoint is
    /// written from it, or CPU work such as the linear probe).
    pub fn download_into(&self, net: &mut FfNet) -> Result<()> {
        for (h, d) in net.layers.iter_mut().zip(&self.layers) {
            h.w = PackedMat::from_row_major(&d.w[0].to_vec(self.dev.stream())?, d.din, d.dout)?;
            h.b = d.b[0].to_vec(self.dev.stream())?;
        }
        Ok(())
    }
}
