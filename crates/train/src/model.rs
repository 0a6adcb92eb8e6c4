//! The networks a run can train, behind one type: the MLP of Hinton's FF
//! ([`FfNet`]), the convolutional FF / Trifecta ([`ConvFfNet`]) or its
//! backprop baseline ([`BpConvNet`]), chosen by the presence of a `[conv]`
//! table in the run configuration and its `algorithm`. Also the
//! image preparation each expects: MLPs take pixels in [0, 1]; conv nets
//! take augmented (training) and per-channel normalised images.

use crate::config::RunConfig;
use crate::Result;
use ffwd_datasets::augment::{channel_stats, Augment};
use ffwd_datasets::Dataset;
use ffwd_kernels::CpuBackend;
use ffwd_layers::backprop::{BpConvNet, BpMlp};
use ffwd_layers::config::MlpTraining;
use ffwd_layers::conv::{ConvAlgorithm, ConvFfNet};
use ffwd_layers::ff::{BatchStats, FfNet, Predictions};
use ffwd_layers::ffcl::FfclNet;
use ffwd_layers::uff::{SamplePos, UffNet};
use ffwd_tensor::{stream, Philox, Tensor};

#[derive(Clone, Debug)]
pub enum Model {
    Mlp(FfNet),
    MlpBp(BpMlp),
    Conv(ConvFfNet),
    ConvBp(BpConvNet),
    Ffcl(FfclNet),
    Uff(UffNet),
}

impl Model {
    /// The network the configuration describes, for images of `shape`.
    pub fn build(cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<Self> {
        let dim = shape.0 * shape.1 * shape.2;
        if let Some(u) = &cfg.uff {
            return Ok(Model::Uff(UffNet::new(u.clone(), shape, classes, cfg.train.seed)?));
        }
        if let Some(f) = &cfg.ffcl {
            return Ok(Model::Ffcl(FfclNet::new(f.clone(), dim, classes, cfg.train.seed)?));
        }
        Ok(match &cfg.conv {
            Some(c) if c.algorithm == ConvAlgorithm::Backprop => {
                Model::ConvBp(BpConvNet::new(c.clone(), shape, classes, cfg.train.seed)?)
            }
            Some(c) => Model::Conv(ConvFfNet::new(c.clone(), shape, classes, cfg.train.seed)?),
            None if cfg.model.training == MlpTraining::CrossEntropy => {
                Model::MlpBp(BpMlp::new(cfg.model.clone(), shape.0 * shape.1 * shape.2, classes, cfg.train.seed)?)
            }
            None => Model::Mlp(FfNet::new(cfg.model.clone(), shape.0 * shape.1 * shape.2, classes, cfg.train.seed)?),
        })
    }

    /// What kind of network this is, in words.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Model::Mlp(n) if n.config.training == MlpTraining::Local => "FF MLP",
            Model::Mlp(_) => "MLP trained by backprop of the goodness losses",
            Model::MlpBp(_) => "backprop MLP",
            Model::Conv(_) => "convolutional FF net",
            Model::ConvBp(_) => "backprop conv net",
            Model::Ffcl(_) => "FF contrastive twins",
            Model::Uff(_) => "unsupervised FF stack",
        }
    }

    /// The MLP, if this is one.
    pub fn mlp(&self) -> Option<&FfNet> {
        match self {
            Model::Mlp(n) => Some(n),
            _ => None,
        }
    }

    /// The conv net, if this is one.
    pub fn conv(&self) -> Option<&ConvFfNet> {
        match self {
            Model::Conv(n) => Some(n),
            _ => None,
        }
    }

    /// Layers (MLP) or blocks (conv).
    pub fn depth(&self) -> usize {
        match self {
            Model::Mlp(n) => n.layers.len(),
            Model::MlpBp(n) => n.layers.len(),
            Model::Conv(n) => n.blocks.len(),
            Model::ConvBp(n) => n.blocks.len(),
            Model::Ffcl(n) => n.twins[0].len(),
            // The classifier counts as the last layer (UFF's separate mode).
            Model::Uff(n) => n.cells.len() + 1,
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Model::Mlp(n) => n.classes,
            Model::MlpBp(n) => n.classes,
            Model::Conv(n) => n.classes,
            Model::ConvBp(n) => n.classes,
            Model::Ffcl(n) => n.classes,
            Model::Uff(n) => n.classes,
        }
    }

    pub fn has_readout(&self) -> bool {
        match self {
            Model::Mlp(n) => n.readout.is_some(),
            Model::MlpBp(_) => true,
            Model::Conv(_) => false,
            Model::ConvBp(_) | Model::Ffcl(_) | Model::Uff(_) => true,
        }
    }

    /// One training batch; `layers` selects the learning layers of an MLP
    /// (a conv net always trains every block, as its OLU schedule says; the
    /// backprop net ignores the negative labels).
    pub fn train_batch(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        labels: &[u8],
        neg: &[u8],
        layers: std::ops::Range<usize>,
        pos: SamplePos,
    ) -> Result<BatchStats> {
        Ok(match self {
            Model::Mlp(n) => n.train_batch(be, images, labels, neg, layers)?,
            Model::MlpBp(n) => n.train_batch(be, images, labels)?,
            Model::Conv(n) => n.train_batch(be, images, labels, neg)?,
            Model::ConvBp(n) => n.train_batch(be, images, labels)?,
            Model::Ffcl(n) => n.train_batch(be, images, labels)?,
            Model::Uff(n) => n.train_batch(be, images, labels, layers, pos)?,
        })
    }

    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        Ok(match self {
            Model::Mlp(m) => m.predict(be, images, n, chunk)?,
            Model::MlpBp(m) => m.predict(be, images, n, chunk)?,
            Model::Conv(m) => m.predict(be, images, n, chunk)?,
            Model::ConvBp(m) => m.predict(be, images, n, chunk)?,
            Model::Ffcl(m) => m.predict(be, images, n, chunk)?,
            Model::Uff(m) => m.predict(be, images, n, chunk)?,
        })
    }

    /// The network as a frozen feature extractor for the linear probe.
    pub fn features(&mut self) -> Option<&mut dyn ffwd_layers::probe::Features> {
        match self {
            Model::Mlp(n) => Some(n),
            Model::MlpBp(n) => Some(n),
            Model::Ffcl(n) => Some(n),
            Model::Uff(n) => Some(n),
            _ => None,
        }
    }

    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        match self {
            Model::Mlp(n) => n.named_tensors(),
            Model::MlpBp(n) => n.named_tensors(),
            Model::Conv(n) => n.named_tensors(),
            Model::ConvBp(n) => n.named_tensors(),
            Model::Ffcl(n) => n.named_tensors(),
            Model::Uff(n) => n.named_tensors(),
        }
    }

    pub fn load_tensors(&mut self, get: impl FnMut(&str) -> ffwd_layers::Result<Tensor>) -> Result<()> {
        match self {
            Model::Mlp(n) => n.load_tensors(get)?,
            Model::MlpBp(n) => n.load_tensors(get)?,
            Model::Conv(n) => n.load_tensors(get)?,
            Model::ConvBp(n) => n.load_tensors(get)?,
            Model::Ffcl(n) => n.load_tensors(get)?,
            Model::Uff(n) => n.load_tensors(get)?,
        }
        Ok(())
    }
}

/// How a run turns dataset bytes into network input.
#[derive(Clone, Debug)]
pub enum Prep {
    /// `byte / 255` (MLPs).
    Plain,
    /// The augmentation of training (and its normalisation at evaluation).
    Augmented(Augment),
}

impl Prep {
    pub fn for_run(cfg: &RunConfig) -> Self {
        if cfg.conv.is_none() {
            return Prep::Plain;
        }
        let a = &cfg.data.augment;
        let (mean, std) =
            if a.normalize { channel_stats(&cfg.data.dataset).unwrap_or_default() } else { Default::default() };
        Prep::Augmented(Augment { crop_padding: a.crop_padding, rotation_deg: a.rotation_deg, mean, std })
    }

    /// Images `idx` of `ds` for training in epoch `epoch` (0-based), the
    /// sample at batch position k drawing block `first + k` of the Philox
    /// stream `noise(epoch)`.
    #[allow(clippy::too_many_arguments)]
    pub fn train_images(
        &self,
        ds: &Dataset,
        idx: &[u32],
        seed: u64,
        epoch: u32,
        first: u64,
        images: &mut Vec<f32>,
        labels: &mut Vec<u8>,
    ) {
        match self {
            Prep::Plain => ds.gather(idx, images, labels),
            Prep::Augmented(a) => {
                let rng = Philox::new(seed, stream::noise(epoch));
                let d = ds.dim();
                images.resize(idx.len() * d, 0.0);
                labels.clear();
                for (k, &i) in idx.iter().enumerate() {
                    a.apply(ds, i as usize, rng.block(first + k as u64), &mut images[k * d..(k + 1) * d]);
                    labels.push(ds.labels[i as usize]);
                }
            }
        }
    }

    /// Every image of `ds` as evaluation input.
    pub fn eval_images(&self, ds: &Dataset, images: &mut Vec<f32>) {
        let d = ds.dim();
        images.resize(ds.len() * d, 0.0);
        match self {
            Prep::Plain => {
                for i in 0..ds.len() {
                    ds.image_f32(i, &mut images[i * d..(i + 1) * d]);
                }
            }
            Prep::Augmented(a) => {
                let e = a.eval_only();
                for i in 0..ds.len() {
                    e.apply(ds, i, [0; 4], &mut images[i * d..(i + 1) * d]);
                }
            }
        }
    }
}
