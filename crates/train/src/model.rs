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
use rayon::prelude::*;

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
    // sizes first: an absurd config is refused before a device is opened
    check_size(cfg, shape, classes)?;
    match device {
        Device::Cpu => build_checked(CpuBackend::best(), cfg, shape, classes),
        Device::CpuScalar => build_checked(CpuBackend::scalar(), cfg, shape, classes),
        Device::Cuda(i) => {
            let be =
                CudaBackend::new(i).map_err(|e| Error::Device { device: device.to_string(), reason: e.to_string() })?;
            build_checked(be, cfg, shape, classes)
        }
    }
}

/// The most weights a network may have: 2^30 (4 GiB of f32, about 12 GiB
/// with Adam's moments). Realistic FF nets are far below (4×2000 on MNIST:
/// 13.6 M; the large Trifecta: 4.9 M).
pub const MAX_PARAMS: u128 = 1 << 30;

/// The most values one batch's widest activation may hold (rows × width;
/// 2^33 f32 = 32 GiB).
pub const MAX_ACTIVATION: u128 = 1 << 33;

/// Check that the network `cfg` describes on images of `shape` stays
/// within [`MAX_PARAMS`] and [`MAX_ACTIVATION`] before anything is
/// allocated: a config, flag or checkpoint with absurd sizes is an error
/// that names the field, never an allocation failure.
pub fn check_size(cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<()> {
    let (c, h, w) = (shape.0 as u128, shape.1 as u128, shape.2 as u128);
    let (dim, k) = (c * h * w, classes as u128);
    let dense = |field: &str, first: u128, sizes: &[usize], copies: u128| -> (String, u128, u128) {
        let mut params = 0u128;
        let mut inp = first;
        for &s in sizes {
            params = params.saturating_add(inp.saturating_mul(s as u128));
            inp = s as u128;
        }
        params = params.saturating_add(inp.saturating_mul(k));
        let widest = sizes.iter().map(|&s| s as u128).max().unwrap_or(0).max(first);
        (field.to_string(), params.saturating_mul(copies), widest)
    };
    let (field, params, widest) = if cfg.uff.is_some() {
        // the cells' sizes follow the image (checked by the dataset reader)
        ("image".to_string(), dim.saturating_mul(dim), dim)
    } else if let Some(f) = &cfg.ffcl {
        dense("ffcl.sizes", dim, &f.sizes, 2)
    } else if let Some(cv) = &cfg.conv {
        let (mut params, mut widest) = (0u128, 0u128);
        let (mut cin, mut hw) = (c + 1, h * w);
        for (i, &co) in cv.channels.iter().enumerate() {
            params = params.saturating_add((9 * cin).saturating_mul(co as u128));
            widest = widest.max((co as u128).saturating_mul(hw));
            cin = co as u128;
            if cv.pool.contains(&i) {
                hw /= 4;
            }
        }
        ("conv.channels".to_string(), params, widest)
    } else {
        dense("model.sizes", dim + k, &cfg.model.sizes, 1)
    };
    if params > MAX_PARAMS {
        return Err(Error::Invalid(format!(
            "{field}: the network would have {params} weights on {:?} images; the limit is {MAX_PARAMS} (4 GiB)",
            shape
        )));
    }
    // positives and negatives (or ten label passes at evaluation) side by side
    let rows = (cfg.train.batch.max(cfg.train.eval_chunk) as u128).saturating_mul(2.max(k));
    if rows.saturating_mul(widest) > MAX_ACTIVATION {
        return Err(Error::Invalid(format!(
            "{field} with train.batch = {} and train.eval_chunk = {}: one activation would hold {} values; the limit is {MAX_ACTIVATION}",
            cfg.train.batch,
            cfg.train.eval_chunk,
            rows.saturating_mul(widest)
        )));
    }
    Ok(())
}

/// The network `cfg` describes on the backend `be`.
pub fn build_on<B: Backend>(be: B, cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<Model> {
    check_size(cfg, shape, classes)?;
    build_checked(be, cfg, shape, classes)
}

/// [`build_on`] once [`check_size`] has passed.
fn build_checked<B: Backend>(be: B, cfg: &RunConfig, shape: (usize, usize, usize), classes: usize) -> Result<Model> {
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
    /// `byte / 255` (MLPs without `[data.augment]`).
    Plain,
    /// The augmentation of training (and its normalisation at evaluation).
    Augmented(Augment),
}

impl Prep {
    /// The conv nets always go through [`Augment`] (a no-op where
    /// `[data.augment]` asks for nothing); the MLPs where it asks for a
    /// crop (a random shift by up to `crop_padding` pixels: the jitter of
    /// Hinton's augmented row), a rotation or the normalisation.
    pub fn for_run(cfg: &RunConfig) -> Self {
        let a = &cfg.data.augment;
        let nothing = a.crop_padding == 0 && a.rotation_deg == 0.0 && !a.normalize && a.dropout == 0.0;
        if cfg.conv.is_none() && nothing {
            return Prep::Plain;
        }
        let (mean, std) =
            if a.normalize { channel_stats(&cfg.data.dataset).unwrap_or_default() } else { Default::default() };
        Prep::Augmented(Augment {
            crop_padding: a.crop_padding,
            rotation_deg: a.rotation_deg,
            mean,
            std,
            dropout: a.dropout,
        })
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
                let drop = Philox::new(seed, stream::dropout(epoch));
                let d = ds.dim();
                images.resize(idx.len() * d, 0.0);
                labels.clear();
                labels.extend(idx.iter().map(|&i| ds.labels[i as usize]));
                // Each image draws its own Philox block: any split over
                // threads gives the same values.
                images.par_chunks_mut(d.max(1)).zip(idx).enumerate().for_each(|(k, (out, &i))| {
                    a.apply(ds, i as usize, rng.block(first + k as u64), out);
                    a.drop_values(&drop, first + k as u64, out);
                });
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
                images.par_chunks_mut(d.max(1)).enumerate().for_each(|(i, out)| e.apply(ds, i, [0; 4], out));
            }
        }
    }
}
