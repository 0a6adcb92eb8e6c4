//! The training state beyond the parameters: what a network needs to take
//! its next step to the same bits after a save and a load — every
//! optimiser's moments and step count and the networks' step counters (the
//! OLU pair that trains next). Parameters and running statistics are the
//! checkpoint's ([`crate::Network::named_tensors`]); random draws depend
//! only on the seed and the sample's position in the run, so they need no
//! state.
//!
//! Each network walks its state once, with a [`StateIo`] that either
//! collects it ([`StateIo::Save`]) or replaces it ([`StateIo::Load`]), so
//! the two directions cannot disagree on names or order; the same walk
//! sets every optimiser's learning-rate factor ([`StateIo::LrScale`]). Moments of packed
//! weights are stored row-major, the same on every backend.

use crate::tensors::{fetch, TensorSource};
use crate::{Error, Result};
use ffwd_kernels::{Backend, Len, Weights};
use ffwd_tensor::Tensor;
use std::collections::BTreeMap;

/// A network's training state as host values.
#[derive(Clone, Debug, Default)]
pub struct NetState {
    /// Optimiser moments by name (`layers.0.weight.m`, …).
    pub tensors: Vec<(String, Tensor)>,
    /// Step counts by name (`layers.0.weight.t`, `steps`, …).
    pub counters: BTreeMap<String, u64>,
}

/// One walk over a network's training state: collect it or replace it.
pub enum StateIo<'a> {
    /// Collect the state into host values.
    Save(&'a mut NetState),
    /// Replace the state by saved values, checking every name and size.
    Load { tensors: &'a mut TensorSource<'a>, counters: &'a BTreeMap<String, u64> },
    /// Set every optimiser's learning-rate factor (the run's schedule;
    /// not part of the state: it follows from the position in the run).
    LrScale(f32),
}

impl StateIo<'_> {
    /// A backend buffer of fixed length (an optimiser moment).
    pub fn buf<B: Backend>(&mut self, be: &B, name: &str, buf: &mut B::Buf) -> Result<()> {
        match self {
            StateIo::Save(s) => {
                let v = be.download(buf)?;
                s.tensors.push((name.to_string(), Tensor::from_vec(&[v.len()], v)?));
            }
            StateIo::Load { tensors, .. } => {
                let v = fetch(*tensors, name, &[buf.len()])?;
                be.upload(&v, buf)?;
            }
            StateIo::LrScale(_) => {}
        }
        Ok(())
    }

    /// An optimiser moment laid out as the packed weights `w`, stored as a
    /// row-major rows × cols matrix.
    pub fn packed<B: Backend>(&mut self, be: &B, name: &str, w: &B::Packed, buf: &mut B::Buf) -> Result<()> {
        let shape = [w.rows(), w.cols()];
        match self {
            StateIo::Save(s) => {
                let v = be.unpack_state(w, buf)?;
                s.tensors.push((name.to_string(), Tensor::from_vec(&shape, v)?));
            }
            StateIo::Load { tensors, .. } => {
                let v = fetch(*tensors, name, &shape)?;
                be.pack_state(w, &v, buf)?;
            }
            StateIo::LrScale(_) => {}
        }
        Ok(())
    }

    /// A step counter.
    pub fn counter(&mut self, name: &str, v: &mut u64) -> Result<()> {
        match self {
            StateIo::Save(s) => {
                s.counters.insert(name.to_string(), *v);
            }
            StateIo::Load { counters, .. } => {
                *v = *counters.get(name).ok_or_else(|| Error::Checkpoint {
                    what: name.to_string(),
                    detail: "missing from the training state".into(),
                })?;
            }
            StateIo::LrScale(_) => {}
        }
        Ok(())
    }
}
