//! Backpropagation baselines on the same layers as the FF networks, every
//! gradient written by hand (no autodiff): each layer type's backward also
//! returns dL/dx, and the network chains them from the loss down.
//!
//! [`BpMlp`]: the FF MLP's layers (norm → linear → ReLU, the same init)
//! on the plain image (no label inputs), a linear head on the last layer's
//! activity (W, b uniform in ±1/√width) and softmax cross-entropy; every
//! layer's backward returns dL/dx (`FfLayer::backward`). The SSL paper's
//! BP rows (supervised, and on a pretext task through the trainer).
//!
//! [`BpConvNet`]: the Trifecta's blocks (norm → conv 3×3 → ReLU → [max-
//! pool]) on the plain image (no label channel), the last block's output
//! flattened per image in C·H·W order (as PyTorch's `flatten`), a linear
//! head (W, b uniform in ±1/√features) and softmax cross-entropy averaged
//! over the batch. One Adam state per tensor; batch norm uses batch
//! statistics in training and running statistics at evaluation, as in the
//! FF net. This fills the papers' BP column with the same architecture.

use crate::config::{FfConfig, MlpTraining};
use crate::conv::{forward_blocks, images_to_cnhw, ConvBlock, ConvFfConfig};
use crate::ff::{check_images, check_labelled, BatchStats, FfLayer, Predictions};
use crate::readout::Readout;
use crate::{Error, Result};
use ffwd_kernels::{Cnhw, CpuBackend, Norm};
use ffwd_tensor::Tensor;

/// Index of the linear head's Philox init stream (after any block's and
/// the FF label embedding's).
pub const HEAD_INIT_STREAM: u32 = (1 << 16) + 1;

/// A conv net trained end to end by backprop through all blocks.
#[derive(Clone, Debug)]
pub struct BpConvNet {
    pub config: ConvFfConfig,
    /// Image shape (channels, height, width).
    pub image: (usize, usize, usize),
    pub classes: usize,
    pub blocks: Vec<ConvBlock>,
    /// The linear classifier on the flattened last block.
    pub head: Readout,
    pub steps: u64,
    work: Work,
}

/// Buffers of the last step, kept between steps.
#[derive(Clone, Debug, Default)]
struct Work {
    input: Vec<f32>,
    feats: Vec<f32>,
    dfeats: Vec<f32>,
    dcur: Vec<f32>,
    dnext: Vec<f32>,
}

/// Copy a CNHW tensor into per-image rows of C·H·W values.
pub(crate) fn flatten(x: &[f32], g: Cnhw, out: &mut Vec<f32>) {
    let (hw, d) = (g.plane(), g.per_image());
    out.resize(g.len(), 0.0);
    for c in 0..g.c {
        for b in 0..g.n {
            out[b * d + c * hw..][..hw].copy_from_slice(&x[(c * g.n + b) * hw..][..hw]);
        }
    }
}

/// The inverse of [`flatten`].
pub(crate) fn unflatten(rows: &[f32], g: Cnhw, out: &mut Vec<f32>) {
    let (hw, d) = (g.plane(), g.per_image());
    out.resize(g.len(), 0.0);
    for c in 0..g.c {
        for b in 0..g.n {
            out[(c * g.n + b) * hw..][..hw].copy_from_slice(&rows[b * d + c * hw..][..hw]);
        }
    }
}

impl BpConvNet {
    pub fn new(config: ConvFfConfig, image: (usize, usize, usize), classes: usize, seed: u64) -> Result<Self> {
        config.validate(image).map_err(Error::Config)?;
        if classes < 2 {
            return Err(Error::Config(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let mut blocks = Vec::new();
        let mut g = Cnhw::new(image.0, 1, image.1, image.2);
        for (k, &c) in config.channels.iter().enumerate() {
            let pool = config.pool.contains(&k);
            let b = ConvBlock::new(g.c, c, pool, config.norm, &config.optim, 1, seed, k as u32);
            g = b.out_geom(g);
            blocks.push(b);
        }
        let head = Readout::new(g.per_image(), classes, &config.optim).with_uniform_init(seed, HEAD_INIT_STREAM);
        Ok(Self { config, image, classes, blocks, head, steps: 0, work: Work::default() })
    }

    fn image_dim(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }

    /// Geometries of every block's input, and of the last block's output.
    fn geoms(&self, n: usize) -> Vec<Cnhw> {
        let mut gs = vec![Cnhw::new(self.image.0, n, self.image.1, self.image.2)];
        for b in &self.blocks {
            let g = b.out_geom(*gs.last().expect("non-empty"));
            gs.push(g);
        }
        gs
    }

    /// Forward `n` images through the blocks and flatten the last output
    /// into `self.work.feats`; returns the geometries.
    fn forward(&mut self, be: &CpuBackend, images: &[f32], n: usize, train: bool) -> Result<Vec<Cnhw>> {
        let gs = self.geoms(n);
        self.work.input.resize(gs[0].len(), 0.0);
        images_to_cnhw(images, self.image, n, |b| b, &mut self.work.input);
        let eps = (self.config.bn_eps, self.config.norm_eps);
        forward_blocks(be, &mut self.blocks, &self.work.input, gs[0], train, self.config.bn_momentum, eps)?;
        let last = self.blocks.last().expect("at least one block").output();
        flatten(last, gs[gs.len() - 1], &mut self.work.feats);
        Ok(gs)
    }

    /// Forward and backward on a batch (training mode, batch statistics;
    /// the running statistics move), leaving every gradient in place
    /// ([`ConvBlock::grads`], [`Readout::grads`]) without updating any
    /// weight. Returns the mean cross-entropy.
    pub fn compute_grads(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8]) -> Result<f32> {
        check_labelled(images.len(), self.image_dim(), labels, self.classes)?;
        let n = labels.len();
        let gs = self.forward(be, images, n, true)?;
        let nb = self.blocks.len();
        let loss = self.head.compute_grads(be, &self.work.feats, labels)?;
        if !loss.is_finite() {
            return Err(Error::NonFinite { layer: nb, loss });
        }
        self.head.input_grad(be, &mut self.work.dfeats)?;
        unflatten(&self.work.dfeats, gs[nb], &mut self.work.dcur);
        for k in (0..nb).rev() {
            let (prev, rest) = self.blocks.split_at_mut(k);
            let x = if k == 0 { &self.work.input[..] } else { prev[k - 1].output() };
            rest[0].backward(be, x, &self.work.dcur, (k > 0).then_some(&mut self.work.dnext))?;
            std::mem::swap(&mut self.work.dcur, &mut self.work.dnext);
        }
        Ok(loss)
    }

    /// One step of backprop: [`BpConvNet::compute_grads`], then every
    /// tensor's Adam step.
    pub fn train_batch(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8]) -> Result<BatchStats> {
        let loss = self.compute_grads(be, images, labels)?;
        self.head.apply(be)?;
        for b in &mut self.blocks {
            b.apply(be, 0)?;
        }
        self.steps += 1;
        Ok(BatchStats { layers: vec![None; self.blocks.len()], readout_loss: Some(loss) })
    }

    /// Predict `n` images (image-major, normalised) in chunks of `chunk`
    /// (evaluation mode: running statistics).
    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim();
        check_images(images.len(), n, di)?;
        let mut out = Vec::with_capacity(n);
        let chunk = chunk.max(1);
        for s in (0..n).step_by(chunk) {
            let m = chunk.min(n - s);
            self.forward(be, &images[s * di..(s + m) * di], m, false)?;
            self.head.predict(be, &self.work.feats, m, &mut out)?;
        }
        Ok(Predictions { overall: out.clone(), per_layer: Vec::new(), goodness: Vec::new(), readout: Some(out) })
    }

    /// Every parameter and running statistic as a named tensor; the head's
    /// weight is stored features × classes.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let t = |shape: &[usize], v: &[f32]| Tensor::from_vec(shape, v.to_vec()).expect("shape");
        let mut out = crate::conv::block_tensors(&self.blocks);
        out.push(("head.weight".into(), t(&[self.head.in_dim, self.classes], &self.head.w)));
        out.push(("head.bias".into(), t(&[self.classes], &self.head.b)));
        out
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, mut get: impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        for (name, want) in self.named_tensors() {
            let v = crate::conv::fetch_tensor(&mut get, &name, want.shape())?;
            match name.as_str() {
                "head.weight" => self.head.w = v,
                "head.bias" => self.head.b = v,
                _ => *crate::conv::block_field(&mut self.blocks, &name) = v,
            }
        }
        Ok(())
    }
}

/// An MLP of FF layers trained end to end by backprop with cross-entropy.
#[derive(Clone, Debug)]
pub struct BpMlp {
    pub config: FfConfig,
    /// Values per image.
    pub image_dim: usize,
    pub classes: usize,
    pub layers: Vec<FfLayer>,
    /// The linear classifier on the last layer's activity.
    pub head: Readout,
    pub steps: u64,
    work: Work,
}

impl BpMlp {
    /// `config.training` must be `cross-entropy`; the layers are built and
    /// initialised as the FF net's (same Philox streams).
    pub fn new(config: FfConfig, image_dim: usize, classes: usize, seed: u64) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        if config.training != MlpTraining::CrossEntropy {
            return Err(Error::Config("BpMlp needs model.training = \"cross-entropy\"".into()));
        }
        if classes < 2 {
            return Err(Error::Config(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let mut layers = Vec::new();
        let mut d = image_dim;
        for (i, &s) in config.sizes.iter().enumerate() {
            layers.push(FfLayer::new(d, s, &config.optim, seed, i as u32));
            d = s;
        }
        let head = Readout::new(d, classes, &config.optim).with_uniform_init(seed, HEAD_INIT_STREAM);
        Ok(Self { config, image_dim, classes, layers, head, steps: 0, work: Work::default() })
    }

    fn norm(&self) -> (Norm, f32) {
        (self.config.norm.into(), self.config.norm_eps)
    }

    /// Forward `n` images through every layer.
    fn forward(&mut self, be: &CpuBackend, images: &[f32], n: usize) -> Result<()> {
        let (norm, eps) = self.norm();
        for l in 0..self.layers.len() {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { images } else { prev[l - 1].activity() };
            rest[0].forward(be, x, n, norm, eps)?;
        }
        Ok(())
    }

    fn last(&self) -> &[f32] {
        self.layers.last().expect("at least one layer").activity()
    }

    /// Forward and backward on a batch, leaving every gradient in place
    /// ([`FfLayer::grads`], [`Readout::grads`]) without updating. Returns
    /// the mean cross-entropy.
    pub fn compute_grads(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8]) -> Result<f32> {
        check_labelled(images.len(), self.image_dim, labels, self.classes)?;
        let n = labels.len();
        self.forward(be, images, n)?;
        let nl = self.layers.len();
        let feats = self.layers[nl - 1].activity();
        let loss = self.head.compute_grads(be, feats, labels)?;
        if !loss.is_finite() {
            return Err(Error::NonFinite { layer: nl, loss });
        }
        self.head.input_grad(be, &mut self.work.dcur)?;
        let (norm, eps) = self.norm();
        for l in (0..nl).rev() {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { images } else { prev[l - 1].activity() };
            let w = &mut self.work;
            rest[0].backward(be, x, n, norm, eps, &w.dcur, (l > 0).then_some(&mut w.dnext))?;
            std::mem::swap(&mut w.dcur, &mut w.dnext);
        }
        Ok(loss)
    }

    /// One step of backprop: [`BpMlp::compute_grads`], then every tensor's
    /// optimiser step.
    pub fn train_batch(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8]) -> Result<BatchStats> {
        let loss = self.compute_grads(be, images, labels)?;
        self.head.apply(be)?;
        for l in &mut self.layers {
            l.apply_grads(be)?;
        }
        self.steps += 1;
        Ok(BatchStats { layers: vec![None; self.layers.len()], readout_loss: Some(loss) })
    }

    /// Predict `n` images in chunks of `chunk`.
    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim;
        check_images(images.len(), n, di)?;
        let mut out = Vec::with_capacity(n);
        let chunk = chunk.max(1);
        let mut feats = std::mem::take(&mut self.work.feats);
        for s in (0..n).step_by(chunk) {
            let m = chunk.min(n - s);
            self.forward(be, &images[s * di..(s + m) * di], m)?;
            feats.clear();
            feats.extend_from_slice(self.last());
            self.head.predict(be, &feats, m, &mut out)?;
        }
        self.work.feats = feats;
        Ok(Predictions { overall: out.clone(), per_layer: Vec::new(), goodness: Vec::new(), readout: Some(out) })
    }

    /// `layers.{i}.*` as in the FF net, and `head.weight` (width ×
    /// classes), `head.bias`.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = crate::ff::layer_tensors(&self.layers);
        out.extend(crate::ff::head_tensors("head", &self.head));
        out
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, mut get: impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        crate::ff::load_layers(&mut self.layers, &mut get)?;
        crate::ff::load_head("head", &mut self.head, &mut get)
    }
}

/// The probe sees every layer's length-normalised activity (standard view)
/// or its ReLU activity (raw view), as for FF. The net has no label inputs.
impl crate::probe::Features for BpMlp {
    fn feature_dims(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.out_dim).collect()
    }
    fn features(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if view.label.is_some() {
            return Err(view.unsupported("BP MLP", "has no label inputs"));
        }
        check_images(images.len(), n, self.image_dim)?;
        self.forward(be, images, n)?;
        match view.form {
            crate::probe::FeatureForm::Standard => {
                let norm = self.norm();
                crate::ff::normalized_activities(be, &self.layers, n, norm, &mut self.work.feats, out)
            }
            crate::probe::FeatureForm::Raw => {
                crate::ff::raw_activities(&self.layers, n, out);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bp_mlp_has_a_raw_probe_view_but_no_label_inputs() {
        use crate::probe::{FeatureForm, FeatureView, Features};
        let be = CpuBackend::best();
        let cfg = FfConfig { sizes: vec![5, 5], training: MlpTraining::CrossEntropy, ..FfConfig::default() };
        let mut net = BpMlp::new(cfg, 4, 3, 1).unwrap();
        let imgs = [0.1f32, 0.9, 0.4, 0.7, 0.3, 0.2, 0.8, 0.6];
        let mut raw = Vec::new();
        net.features(&be, &imgs, 2, FeatureView { form: FeatureForm::Raw, label: None }, &mut raw).unwrap();
        assert_eq!(raw.len(), 20);
        assert!(raw.iter().all(|&v| v >= 0.0), "ReLU activity");
        let e = net.features(&be, &imgs, 2, FeatureView { form: FeatureForm::Standard, label: Some(0) }, &mut raw);
        assert!(e.unwrap_err().to_string().contains("no label inputs"));
    }

    #[test]
    fn flatten_and_unflatten_are_inverse_and_order_features_chw() {
        let g = Cnhw::new(2, 3, 2, 2);
        let x: Vec<f32> = (0..g.len()).map(|i| i as f32).collect();
        let (mut rows, mut back) = (Vec::new(), Vec::new());
        flatten(&x, g, &mut rows);
        // Image 1, channel 1, pixel 2 sits at CNHW (1·3+1)·4+2 = 18.
        assert_eq!(rows[8 + 4 + 2], 18.0);
        unflatten(&rows, g, &mut back);
        assert_eq!(back, x);
    }
}
