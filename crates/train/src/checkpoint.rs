//! Checkpoints: the parameters as safetensors F32 tensors
//! (`layers.{i}.weight` in×out, `layers.{i}.bias`, `readout.weight`,
//! `readout.bias`), and one metadata entry `ffwd` holding JSON with the
//! format version, the full run configuration and the input geometry.
//! A single metadata key keeps the bytes deterministic: the same training
//! gives a byte-identical file. The stored configuration leaves out what
//! describes the machine rather than the model (thread count, device, data
//! folder, output folder, how often the training state is saved), so a run
//! at 1 or 2 threads, on the CPU or a GPU, or in another folder, writes the
//! same bytes. Writes are atomic (temp file + rename).

use crate::config::Device;
use crate::config::RunConfig;
use crate::model::Model;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Meta {
    pub format: u32,
    pub config: RunConfig,
    pub image_dim: usize,
    /// Image shape (channels, height, width).
    #[serde(default)]
    pub shape: (usize, usize, usize),
    pub classes: usize,
    pub epoch: usize,
}

pub fn save(
    path: &Path,
    net: &dyn ffwd_layers::Network,
    shape: (usize, usize, usize),
    cfg: &RunConfig,
    epoch: usize,
) -> Result<()> {
    let mut config = cfg.clone();
    config.train.threads = 0;
    config.train.device = crate::config::Device::Cpu;
    let d = crate::config::TrainConfig::default();
    (config.train.checkpoint_every, config.train.checkpoint_every_batches) =
        (d.checkpoint_every, d.checkpoint_every_batches);
    config.data.dir = None;
    config.output = Default::default();
    let meta =
        Meta { format: FORMAT, config, image_dim: shape.0 * shape.1 * shape.2, shape, classes: net.classes(), epoch };
    let mut m = HashMap::new();
    m.insert("ffwd".to_string(), serde_json::to_string(&meta).expect("meta serialises"));
    let tensors = net.named_tensors()?;
    let refs: Vec<(String, &ffwd_tensor::Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    ffwd_tensor::io::save_safetensors(path, &refs, &m)?;
    Ok(())
}

/// Load a checkpoint: its metadata and the network with its parameters,
/// built on `device`.
pub fn load(path: &Path, device: Device) -> Result<(Meta, Model)> {
    load_with(path, device, |_| Ok(()))
}

/// [`load`], the stored configuration first changed by `edit` in what
/// does not touch the parameters (how the network predicts): the network
/// is built from the edited configuration, which the returned metadata
/// holds.
pub fn load_with(
    path: &Path,
    device: Device,
    edit: impl FnOnce(&mut RunConfig) -> Result<()>,
) -> Result<(Meta, Model)> {
    let mut l = ffwd_tensor::io::load_safetensors(path)?;
    let bad = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
    let text = l.metadata.get("ffwd").ok_or_else(|| bad("no `ffwd` metadata entry".into()))?;
    let mut meta: Meta = serde_json::from_str(text).map_err(|e| bad(format!("metadata: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!("format {} (this build reads {FORMAT})", meta.format)));
    }
    if meta.classes < 2 || (meta.shape.0 != 0 && meta.shape.0 * meta.shape.1 * meta.shape.2 != meta.image_dim) {
        return Err(bad(format!(
            "metadata: {} classes and image shape {:?} with {} values per image do not describe a network",
            meta.classes, meta.shape, meta.image_dim
        )));
    }
    let mut names: Vec<&String> = l.tensors.keys().collect();
    names.sort();
    for name in names {
        if let Some(i) = l.tensors[name].data().iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("tensor `{name}` holds a NaN or infinite value (at index {i})")));
        }
    }
    edit(&mut meta.config)?;
    let shape = if meta.shape.0 == 0 { (1, 1, meta.image_dim) } else { meta.shape };
    // A network its configuration cannot build is the file's fault (damaged
    // or written by hand); a device that cannot be used is not.
    let mut net = crate::model::build_on_device(device, &meta.config, shape, meta.classes).map_err(|e| match e {
        e @ Error::Device { .. } => e,
        other => bad(format!("its configuration: {other}")),
    })?;
    net.load_tensors(&mut |name: &str| l.take(name).map_err(Into::into)).map_err(|e| bad(e.to_string()))?;
    if !l.tensors.is_empty() {
        let mut extra: Vec<_> = l.tensors.keys().cloned().collect();
        extra.sort();
        return Err(bad(format!("tensors this architecture does not have: {}", extra.join(", "))));
    }
    Ok((meta, net))
}
