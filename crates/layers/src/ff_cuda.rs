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
//! dW element's fma chain ends; the bias likewise). Only the loss and the
//! goodness values come back per batch, for the epoch statistics.
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
use ffwd_kernels::cuda::{CudaDevice, LinearDims, OptimParams};
use ffwd_kernels::{Norm, PackedMat};
use ffwd_tensor::DeviceTensor;

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
    rows: usize,
}

/// The FF MLP on a CUDA device (see the module docs).
pub struct CudaFfNet {
    dev: &'static CudaDevice,
    layers: Vec<DevLayer>,
    optim: OptimConfig,
    input: DeviceTensor,
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
                rows: 0,
            });
        }
        Ok(Self { dev, layers, optim: c.optim.clone(), input: scratch(dev, &[0])? })
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
    pub fn train_batch(
        &mut self,
        net: &mut FfNet,
        images: &[f32],
        labels: &[u8],
        neg_labels: &[u8],
        train_layers: std::ops::Range<usize>,
    ) -> Result<BatchStats> {
        let rows = net.embed_batch(images, labels, neg_labels)?;
        self.upload_input(net, rows)?;
        let norm = (net.config.norm.into(), net.config.norm_eps);
        let end = train_layers.end.min(self.layers.len());
        let dev = self.dev;
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
            )?;
        }
        // The statistics: one wait for the whole batch, at the first download.
        let mut stats = BatchStats { layers: vec![None; self.layers.len()], readout_loss: None };
        let n = rows / 2;
        let mean = |s: &[f32]| if s.is_empty() { 0.0 } else { ffwd_kernels::numerics::l32_sum(s) / s.len() as f32 };
        for l in train_layers.start..end {
            let ly = &self.layers[l];
            let loss = ly.loss.to_vec(dev.stream())?[0];
            if !loss.is_finite() {
                return Err(Error::NonFinite { layer: l, loss });
            }
            let g = ly.g.to_vec(dev.stream())?;
            let g = &g[..rows];
            stats.layers[l] = Some(LayerStats { loss, g_pos: mean(&g[..n]), g_neg: mean(&g[n..]), aux: f32::NAN });
        }
        Ok(stats)
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
