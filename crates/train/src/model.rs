//! The network a run trains, built once on the run's device: the MLP of
//! Hinton's FF ([`FfNet`]) or its backprop baseline ([`BpMlp`]), the
//! convolutional FF net / Trifecta ([`ConvFfNet`]) or its backprop baseline
//! ([`BpConvNet`]), the FF contrastive twins ([`FfclNet`]) or a UFF stack
//! ([`UffNet`]), chosen by the run configuration's tables, each generic
//! over the backend and handed out as one `Box<dyn Network>`. Also the
//! image preparation each expects: MLPs take pixels in [0, 1]; conv nets
//! take augmented (training) and per-channel normalised images. Data
//! preparation (augmentation, pretext transforms, negative labels) runs on
//! the host; the label embedding of a batch runs on the network's backend.

use crate::config::{Device, RunConfig};
use crate::{Error, Result};
use ffwd_datasets::augment::{channel_stats, Augment};
use ffwd_datasets::Dataset;
use ffwd_kernels::{Backend, CpuBackend, CudaBackend};
use ffwd_layers::backprop::{BpConvNet, BpMlp};
use ffwd_layers::config::MlpTraining;
use ffwd_layers::conv::{ConvAlgorithm, ConvFfNet};
use ffwd_layers::ff::FfNet;
use ffwd_layers::ffcl::FfclNet;
use ffwd_layers::uff::{SamplePos, UffNet};
use ffwd_layers::Network;
use ffwd_tensor::{stream, Philox};

/// A network on its backend.
pub type Model = Box<dyn Network>;

/// The network `cfg` describes, for images of `shape`, on `cfg.train.device`.
/// Without the device (no driver, no NVRTC, no GPU) this is an error that
/// says which is missing.
pub fn build(cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<Model> {
    build_on_device(cfg.train.device, cfg, shape, classes)
}

/// [`build`] on `device` instead of the configured one.
pub fn build_on_device(device: Device, cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<Model> {
    match device {
        Device::Cpu => build_on(CpuBackend::best(), cfg, shape, classes),
        Device::CpuScalar => build_on(CpuBackend::scalar(), cfg, shape, classes),
        Device::Cuda(i) => {
            let be =
                CudaBackend::new(i).map_err(|e| Error::Device { device: device.to_string(), reason: e.to_string() })?;
            build_on(be, cfg, shape, classes)
        }
    }
}

/// The network `cfg` describes on the backend `be`.
pub fn build_on<B: Backend>(be: B, cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<Model> {
    let dim = shape.0 * shape.1 * shape.2;
    let seed = cfg.train.seed;
    if let Some(u) = &cfg.uff {
        return Ok(Box::new(UffNet::new(be, u.clone(), shape, classes, seed)?));
    }
    if let Some(f) = &cfg.ffcl {
        return Ok(Box::new(FfclNet::new(be, f.clone(), dim, classes, seed)?));
    }
    Ok(match &cfg.conv {
        Some(c) if c.algorithm == ConvAlgorithm::Backprop => {
            Box::new(BpConvNet::new(be, c.clone(), shape, classes, seed)?)
        }
        Some(c) => Box::new(ConvFfNet::new(be, c.clone(), shape, classes, seed)?),
        None if cfg.model.training == MlpTraining::CrossEntropy => {
            Box::new(BpMlp::new(be, cfg.model.clone(), dim, classes, seed)?)
        }
        None => Box::new(FfNet::new(be, cfg.model.clone(), dim, classes, seed)?),
    })
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

    /// Images `idx` of `ds` for training at `pos` (epoch 0-based), the
    /// sample at batch position k drawing block `pos.first + k` of the
    /// Philox stream `noise(pos.epoch)`.
    pub fn train_images(&self, ds: &Dataset, idx: &[u32], pos: SamplePos, images: &mut Vec<f32>, labels: &mut Vec<u8>) {
        let SamplePos { seed, epoch, first, .. } = pos;
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
