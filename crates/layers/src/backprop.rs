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

use crate::checks::{check_images, check_labelled};
use crate::config::{FfConfig, MlpTraining};
use crate::conv::{
    block_tensors, forward_blocks, images_to_cnhw, load_blocks, walk_blocks, BlockMode, ConvBlock, ConvFfConfig,
};
use crate::ff::{layer_tensors, load_layers, walk_layers, FfLayer};
use crate::predict::Predictions;
use crate::readout::Readout;
use crate::state::StateIo;
use crate::stats::{BatchStats, Entry, StatLog};
use crate::tensors::TensorSource;
use crate::{Error, Result};
use ffwd_kernels::{Backend, Cnhw, Norm, StatSlot};
use ffwd_tensor::Tensor;

/// Index of the linear head's Philox init stream (after any block's and
/// the FF label embedding's).
pub const HEAD_INIT_STREAM: u32 = (1 << 16) + 1;

/// Buffers of the last step, kept between steps.
#[derive(Clone, Debug, Default)]
struct Work<T> {
    input: T,
    feats: T,
    dfeats: T,
    dcur: T,
    dnext: T,
}

/// A conv net trained end to end by backprop through all blocks.
#[derive(Clone, Debug)]
pub struct BpConvNet<B: Backend> {
    be: B,
    pub config: ConvFfConfig,
    /// Image shape (channels, height, width).
    pub image: (usize, usize, usize),
    pub classes: usize,
    pub blocks: Vec<ConvBlock<B>>,
    /// The linear classifier on the flattened last block.
    pub head: Readout<B>,
    pub steps: u64,
    work: Work<B::Buf>,
    log: StatLog<B::Buf>,
    lent: crate::conv::Lent<B>,
}

impl<B: Backend> BpConvNet<B> {
    pub fn new(be: B, config: ConvFfConfig, image: (usize, usize, usize), classes: usize, seed: u64) -> Result<Self> {
        config.validate(image).map_err(Error::Config)?;
        if classes < 2 {
            return Err(Error::Config(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let mut blocks = Vec::new();
        let mut g = Cnhw::new(image.0, 1, image.1, image.2);
        for (k, &c) in config.channels.iter().enumerate() {
            let pool = config.pool.contains(&k);
            let b = ConvBlock::new(&be, (g.c, c, pool, config.norm), &config.optim, 1, (seed, k as u32))?;
            g = b.out_geom(g);
            blocks.push(b);
        }
        let head =
            Readout::new(&be, g.per_image(), classes, &config.optim)?.with_uniform_init(&be, seed, HEAD_INIT_STREAM)?;
        let nb = blocks.len();
        Ok(Self {
            be,
            config,
            image,
            classes,
            blocks,
            head,
            steps: 0,
            work: Work::default(),
            log: StatLog::new(nb, Some(nb)),
            lent: Default::default(),
        })
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.be
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
    fn forward(&mut self, images: &[f32], n: usize, train: bool) -> Result<Vec<Cnhw>> {
        let gs = self.geoms(n);
        let image = self.image;
        self.be.upload_with(&mut self.work.input, gs[0].len(), |buf| images_to_cnhw(images, image, n, |b| b, buf))?;
        let c = &self.config;
        let mode =
            BlockMode { train, momentum: c.bn_momentum, bn_eps: c.bn_eps, norm_eps: c.norm_eps, goodness: false };
        forward_blocks(&self.be, &mut self.blocks, (&self.work.input, gs[0]), mode, &mut self.lent)?;
        let last = self.blocks.last().expect("at least one block").output();
        self.be.cnhw_to_rows(last, gs[gs.len() - 1], &mut self.work.feats)?;
        Ok(gs)
    }

    /// Forward and backward on a batch (training mode, batch statistics;
    /// the running statistics move), leaving every gradient in place
    /// ([`ConvBlock::grads`], [`Readout::grads`]) without updating any
    /// weight. The mean cross-entropy goes to `out`.
    pub fn compute_grads(&mut self, images: &[f32], labels: &[u8], out: StatSlot<'_, B::Buf>) -> Result<()> {
        check_labelled(images.len(), self.image_dim(), labels, self.classes)?;
        let n = labels.len();
        let gs = self.forward(images, n, true)?;
        let nb = self.blocks.len();
        let be = &self.be;
        self.head.compute_grads(be, &self.work.feats, labels, out)?;
        self.head.input_grad(be, &mut self.work.dfeats)?;
        be.rows_to_cnhw(&self.work.dfeats, gs[nb], &mut self.work.dcur)?;
        for k in (0..nb).rev() {
            let (prev, rest) = self.blocks.split_at_mut(k);
            let x = if k == 0 { &self.work.input } else { prev[k - 1].output() };
            let (dcur, dnext) = (&self.work.dcur, &mut self.work.dnext);
            rest[0].with_lent(&mut self.lent, |b| b.backward(be, x, dcur, (k > 0).then_some(dnext)))?;
            std::mem::swap(&mut self.work.dcur, &mut self.work.dnext);
        }
        Ok(())
    }

    /// One step of backprop: [`BpConvNet::compute_grads`], then every
    /// tensor's Adam step. Returns the statistics read back during the call.
    pub fn train_batch(&mut self, images: &[f32], labels: &[u8]) -> Result<Vec<BatchStats>> {
        let row = self.log.begin(&self.be)?;
        let nb = self.blocks.len();
        let r = (|| {
            let mut log = std::mem::replace(&mut self.log, StatLog::new(0, None));
            let r = self.compute_grads(images, labels, log.slot(row, nb, 0, Entry::Loss));
            self.log = log;
            r?;
            self.head.apply(&self.be)?;
            for b in &mut self.blocks {
                b.apply(&self.be, 0)?;
            }
            self.steps += 1;
            Ok(())
        })();
        self.log.finish(&self.be, r)
    }

    /// Read back the statistics of every batch still pending on the backend.
    pub fn flush_stats(&mut self) -> Result<Vec<BatchStats>> {
        self.log.take(&self.be)
    }

    /// Predict `n` images (image-major, normalised) in chunks of `chunk`
    /// (evaluation mode: running statistics).
    pub fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim();
        check_images(images.len(), n, di)?;
        let mut out = Vec::with_capacity(n);
        let chunk = chunk.max(1);
        for s in (0..n).step_by(chunk) {
            let m = chunk.min(n - s);
            self.forward(&images[s * di..(s + m) * di], m, false)?;
            self.head.predict(&self.be, &self.work.feats, m, &mut out)?;
        }
        Ok(Predictions { overall: out.clone(), per_layer: Vec::new(), goodness: Vec::new(), readout: Some(out) })
    }

    /// Every parameter and running statistic as a named tensor; the head's
    /// weight is stored features × classes.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = block_tensors(&self.be, &self.blocks)?;
        out.extend(self.head.tensors(&self.be, "head")?);
        Ok(out)
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
        load_blocks(&self.be, &mut self.blocks, get)?;
        self.head.load(&self.be, "head", get)
    }

    /// Save or load the optimiser states and the step count.
    pub fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
        walk_blocks(&self.be, &mut self.blocks, io)?;
        self.head.walk_state(&self.be, io, "head")?;
        io.counter("steps", &mut self.steps)
    }
}

/// An MLP of FF layers trained end to end by backprop with cross-entropy.
#[derive(Clone, Debug)]
pub struct BpMlp<B: Backend> {
    be: B,
    pub config: FfConfig,
    /// Values per image.
    pub image_dim: usize,
    pub classes: usize,
    pub layers: Vec<FfLayer<B>>,
    /// The linear classifier on the last layer's activity.
    pub head: Readout<B>,
    pub steps: u64,
    work: Work<B::Buf>,
    log: StatLog<B::Buf>,
}

impl<B: Backend> BpMlp<B> {
    /// `config.training` must be `cross-entropy`; the layers are built and
    /// initialised as the FF net's (same Philox streams).
    pub fn new(be: B, config: FfConfig, image_dim: usize, classes: usize, seed: u64) -> Result<Self> {
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
            layers.push(FfLayer::new(&be, d, s, &config.optim, seed, i as u32)?);
            d = s;
        }
        let head = Readout::new(&be, d, classes, &config.optim)?.with_uniform_init(&be, seed, HEAD_INIT_STREAM)?;
        let nl = layers.len();
        Ok(Self {
            be,
            config,
            image_dim,
            classes,
            layers,
            head,
            steps: 0,
            work: Work::default(),
            log: StatLog::new(nl, Some(nl)),
        })
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.be
    }

    fn norm(&self) -> (Norm, f32) {
        (self.config.norm.into(), self.config.norm_eps)
    }

    /// Forward `n` images through every layer.
    fn forward(&mut self, images: &[f32], n: usize) -> Result<()> {
        let norm = self.norm();
        self.be.upload(images, &mut self.work.input)?;
        for l in 0..self.layers.len() {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.work.input } else { prev[l - 1].activity() };
            rest[0].forward(&self.be, x, n, norm.0, norm.1)?;
        }
        Ok(())
    }

    /// Forward and backward on a batch, leaving every gradient in place
    /// ([`FfLayer::grads`], [`Readout::grads`]) without updating. The mean
    /// cross-entropy goes to `out`.
    pub fn compute_grads(&mut self, images: &[f32], labels: &[u8], out: StatSlot<'_, B::Buf>) -> Result<()> {
        check_labelled(images.len(), self.image_dim, labels, self.classes)?;
        let n = labels.len();
        self.forward(images, n)?;
        let nl = self.layers.len();
        let be = &self.be;
        self.head.compute_grads(be, self.layers[nl - 1].activity(), labels, out)?;
        self.head.input_grad(be, &mut self.work.dcur)?;
        let norm = self.norm();
        for l in (0..nl).rev() {
            let (prev, rest) = self.layers.split_at_mut(l);
            let w = &mut self.work;
            let x = if l == 0 { &w.input } else { prev[l - 1].activity() };
            rest[0].backward(be, x, n, norm, &w.dcur, (l > 0).then_some(&mut w.dnext))?;
            std::mem::swap(&mut w.dcur, &mut w.dnext);
        }
        Ok(())
    }

    /// One step of backprop: [`BpMlp::compute_grads`], then every tensor's
    /// optimiser step. Returns the statistics read back during the call.
    pub fn train_batch(&mut self, images: &[f32], labels: &[u8]) -> Result<Vec<BatchStats>> {
        let row = self.log.begin(&self.be)?;
        let nl = self.layers.len();
        let r = (|| {
            let mut log = std::mem::replace(&mut self.log, StatLog::new(0, None));
            let r = self.compute_grads(images, labels, log.slot(row, nl, 0, Entry::Loss));
            self.log = log;
            r?;
            self.head.apply(&self.be)?;
            for l in &mut self.layers {
                l.apply_grads(&self.be)?;
            }
            self.steps += 1;
            Ok(())
        })();
        self.log.finish(&self.be, r)
    }

    /// Read back the statistics of every batch still pending on the backend.
    pub fn flush_stats(&mut self) -> Result<Vec<BatchStats>> {
        self.log.take(&self.be)
    }

    /// Predict `n` images in chunks of `chunk`.
    pub fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim;
        check_images(images.len(), n, di)?;
        let mut out = Vec::with_capacity(n);
        let chunk = chunk.max(1);
        for s in (0..n).step_by(chunk) {
            let m = chunk.min(n - s);
            self.forward(&images[s * di..(s + m) * di], m)?;
            let last = self.layers.last().expect("at least one layer").activity();
            self.head.predict(&self.be, last, m, &mut out)?;
        }
        Ok(Predictions { overall: out.clone(), per_layer: Vec::new(), goodness: Vec::new(), readout: Some(out) })
    }

    /// `layers.{i}.*` as in the FF net, and `head.weight` (width ×
    /// classes), `head.bias`.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = layer_tensors(&self.be, &self.layers)?;
        out.extend(self.head.tensors(&self.be, "head")?);
        Ok(out)
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
        load_layers(&self.be, &mut self.layers, get)?;
        self.head.load(&self.be, "head", get)
    }

    /// Save or load the optimiser states and the step count.
    pub fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
        walk_layers(&self.be, &mut self.layers, io)?;
        self.head.walk_state(&self.be, io, "head")?;
        io.counter("steps", &mut self.steps)
    }
}

/// The probe sees every layer's length-normalised activity (standard view)
/// or its ReLU activity (raw view), as for FF. The net has no label inputs.
impl<B: Backend> crate::probe::Features for BpMlp<B> {
    fn feature_dims(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.out_dim).collect()
    }
    fn features(
        &mut self,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if view.label.is_some() {
            return Err(view.unsupported("BP MLP", "has no label inputs"));
        }
        check_images(images.len(), n, self.image_dim)?;
        self.forward(images, n)?;
        let mut tmp = std::mem::take(&mut self.work.dfeats);
        let mut feats = std::mem::take(&mut self.work.feats);
        let r = match view.form {
            crate::probe::FeatureForm::Standard => {
                crate::ff::normalized_activities(&self.be, &self.layers, n, self.norm(), &mut tmp, &mut feats)
            }
            crate::probe::FeatureForm::Raw => crate::ff::raw_activities(&self.be, &self.layers, n, &mut feats),
        };
        out.clear();
        let r = r.and_then(|()| Ok(self.be.with_host(&feats, |v| out.extend_from_slice(v))?));
        self.work.dfeats = tmp;
        self.work.feats = feats;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffwd_kernels::CpuBackend;

    #[test]
    fn the_bp_mlp_has_a_raw_probe_view_but_no_label_inputs() {
        use crate::probe::{FeatureForm, FeatureView, Features};
        let cfg = FfConfig { sizes: vec![5, 5], training: MlpTraining::CrossEntropy, ..FfConfig::default() };
        let mut net = BpMlp::new(CpuBackend::best(), cfg, 4, 3, 1).unwrap();
        let imgs = [0.1f32, 0.9, 0.4, 0.7, 0.3, 0.2, 0.8, 0.6];
        let mut raw = Vec::new();
        net.features(&imgs, 2, FeatureView { form: FeatureForm::Raw, label: None }, &mut raw).unwrap();
        assert_eq!(raw.len(), 20);
        assert!(raw.iter().all(|&v| v >= 0.0), "ReLU activity");
        let e = net.features(&imgs, 2, FeatureView { form: FeatureForm::Standard, label: Some(0) }, &mut raw);
        assert!(e.unwrap_err().to_string().contains("no label inputs"));
    }
}
