//! The training state of a run, `train-state.safetensors` in its folder:
//! everything `ffwd train --resume RUN_DIR` needs to continue the run to
//! the same bits as if it had never stopped.
//!
//! The file holds the parameters and running statistics under their
//! checkpoint names, the optimiser moments as `state.{name}` (see
//! `ffwd_layers::state`), and one metadata entry `ffwd.state` with JSON:
//! the run configuration, the position (epochs finished, batches finished
//! of the next epoch), that epoch's statistics so far (f64 sums as their
//! bit patterns, so they continue exactly), the step counters and the
//! metrics lines written so far. Random draws need no state: each comes
//! from a Philox stream keyed by the seed and the sample's position in
//! the run. The model checkpoint (`model.safetensors`) stays a plain
//! safetensors file; this one is written atomically (temp file + rename)
//! every `train.checkpoint_every` epochs, every
//! `train.checkpoint_every_batches` batches and when the run is
//! interrupted, and removed when the run finishes.

use crate::config::RunConfig;
use crate::{Error, Result};
use ffwd_layers::{NetState, Network, StateIo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The state file's name in the run folder.
pub const STATE_FILE: &str = "train-state.safetensors";
const FORMAT: u32 = 1;
const KEY: &str = "ffwd.state";

/// Where a run stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Epochs finished, counted over every phase of a layer-by-layer run.
    pub epoch: usize,
    /// Batches finished of the next epoch.
    pub batch: usize,
    /// That epoch's statistics over those batches.
    pub partial: Option<Partial>,
}

/// An epoch's statistics so far, to continue to the same sums.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Per layer: the sums of loss, G⁺, G⁻ and the second loss, as f64 bits.
    pub sums: Vec<[u64; 4]>,
    /// Per layer: the batches that trained it.
    pub counts: Vec<usize>,
    /// The sum of the readout losses, as f64 bits.
    pub readout: u64,
    /// Per layer: the forward's and dW's multiply-add steps (ran, all).
    pub steps: Vec<[u64; 4]>,
    /// Training seconds so far (timings are the one thing a resumed run
    /// does not reproduce).
    pub seconds: f64,
    /// The epoch's hard negative labels by position (`train.negatives =
    /// "hard"`; drawn from the model as it was when the epoch began).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negatives: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    config: RunConfig,
    shape: (usize, usize, usize),
    classes: usize,
    position: Position,
    counters: BTreeMap<String, u64>,
    /// The lines of `metrics.jsonl` of the finished epochs.
    metrics: Vec<String>,
}

/// What a state file restores besides the network.
pub struct Saved {
    pub config: RunConfig,
    pub shape: (usize, usize, usize),
    pub classes: usize,
    pub position: Position,
    pub metrics: Vec<String>,
}

/// Everything a run needs to continue, written atomically to `path`.
/// The network's statistics must have been read back.
pub fn save(
    path: &Path,
    net: &mut dyn Network,
    (cfg, shape): (&RunConfig, (usize, usize, usize)),
    position: &Position,
    metrics: &[String],
) -> Result<()> {
    let mut state = NetState::default();
    net.walk_state(&mut StateIo::Save(&mut state))?;
    let params = net.named_tensors()?;
    let meta = Meta {
        format: FORMAT,
        config: cfg.clone(),
        shape,
        classes: net.classes(),
        position: position.clone(),
        counters: state.counters,
        metrics: metrics.to_vec(),
    };
    let mut refs: Vec<(String, &ffwd_tensor::Tensor)> = params.iter().map(|(n, t)| (n.clone(), t)).collect();
    refs.extend(state.tensors.iter().map(|(n, t)| (format!("state.{n}"), t)));
    let m = HashMap::from([(KEY.to_string(), serde_json::to_string(&meta).expect("state serialises"))]);
    ffwd_tensor::io::save_safetensors(path, &refs, &m)?;
    Ok(())
}

/// Read the state file `path`: its configuration and position, and a
/// function that puts the parameters and training state into a network
/// built from that configuration.
pub fn read(path: &Path) -> Result<(Saved, impl FnOnce(&mut dyn Network) -> Result<()>)> {
    let mut l = ffwd_tensor::io::load_safetensors(path)?;
    let bad = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
    let text = l.metadata.get(KEY).ok_or_else(|| bad(format!("no `{KEY}` metadata entry: not a training state")))?;
    let meta: Meta = serde_json::from_str(text).map_err(|e| bad(format!("training state: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!("training state format {} (this build reads {FORMAT})", meta.format)));
    }
    meta.config.validate().map_err(|e| bad(format!("its configuration: {e}")))?;
    let p = &meta.position;
    if p.batch > 0 && p.partial.is_none() {
        return Err(bad(format!("position: batch {} of epoch {} without its statistics", p.batch, p.epoch + 1)));
    }
    let mut names: Vec<&String> = l.tensors.keys().collect();
    names.sort();
    for name in names {
        if let Some(i) = l.tensors[name].data().iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("tensor `{name}` holds a NaN or infinite value (at index {i})")));
        }
    }
    let counters = meta.counters;
    let saved = Saved {
        config: meta.config,
        shape: meta.shape,
        classes: meta.classes,
        position: meta.position,
        metrics: meta.metrics,
    };
    let path = path.to_path_buf();
    let restore = move |net: &mut dyn Network| -> Result<()> {
        let bad = |reason: String| Error::Checkpoint { path: path.clone(), reason };
        net.load_tensors(&mut |name: &str| l.take(name).map_err(Into::into)).map_err(|e| bad(e.to_string()))?;
        let mut get = |name: &str| l.take(&format!("state.{name}")).map_err(Into::into);
        net.walk_state(&mut StateIo::Load { tensors: &mut get, counters: &counters })
            .map_err(|e| bad(e.to_string()))?;
        if !l.tensors.is_empty() {
            let mut extra: Vec<_> = l.tensors.keys().cloned().collect();
            extra.sort();
            return Err(bad(format!("tensors this architecture does not have: {}", extra.join(", "))));
        }
        Ok(())
    };
    Ok((saved, restore))
}
