//! Every network behind one object-safe trait, [`Network`], whatever its
//! backend: what a trainer, a checkpoint or a command line needs of a
//! network, written once. A network is built on a backend (`FfNet::new(be,
//! …)`) and keeps its parameters, optimiser state and work buffers there;
//! `Box<dyn Network>` then hides both the kind and the backend.

use crate::backprop::{BpConvNet, BpMlp};
use crate::config::MlpTraining;
use crate::conv::ConvFfNet;
use crate::ff::FfNet;
use crate::ffcl::FfclNet;
use crate::predict::Predictions;
use crate::probe::{linear_probe, Features, ProbeConfig, ProbeReport};
use crate::state::StateIo;
use crate::stats::BatchStats;
use crate::tensors::TensorSource;
use crate::uff::{SamplePos, UffNet};
use crate::{Error, Result};
use ffwd_kernels::{Backend, StepsRun};
use ffwd_tensor::Tensor;
use std::ops::Range;

/// One training batch, as the trainer hands it to any network.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    /// `labels.len()` images, image-major.
    pub images: &'a [f32],
    pub labels: &'a [u8],
    /// One negative label per sample (the FF nets; the others ignore it).
    pub neg: &'a [u8],
    /// The layers that learn in this batch (layer-by-layer schedules; a
    /// network without one trains every layer).
    pub layers: Range<usize>,
    /// Where the batch sits in the run (the UFF cells' random draws).
    pub pos: SamplePos,
}

/// A labelled image set on the host: images (image-major) and labels.
pub type LabelledSet<'a> = (&'a [f32], &'a [u8]);

/// A network on some backend. Every method runs on the network's own
/// backend; inputs and outputs are host values.
pub trait Network: Send {
    /// What kind of network this is, in words.
    fn kind_name(&self) -> &'static str;
    /// The backend it runs on (`cpu-avx2`, `cpu-scalar`, `cuda`).
    fn backend_name(&self) -> &'static str;
    /// Layers, blocks or cells (with a UFF stack's classifier as the last).
    fn depth(&self) -> usize;
    fn classes(&self) -> usize;
    /// Whether it reports a readout (or classifier head) loss.
    fn has_readout(&self) -> bool;
    /// Whether it can train one layer at a time (`Batch::layers`).
    fn layer_by_layer(&self) -> bool {
        false
    }
    /// One training step. Returns the statistics read back from the
    /// backend during the call (see `crate::stats`): every batch's on the
    /// CPU, blocks of them on a device.
    fn train_batch(&mut self, batch: &Batch<'_>) -> Result<Vec<BatchStats>>;
    /// Read back the statistics of every batch still pending.
    fn flush_stats(&mut self) -> Result<Vec<BatchStats>>;
    /// The multiply-add steps layer `layer`'s forward and dW ran in its
    /// last step, where the backend skips some (the CPU FF MLP).
    fn steps_run(&self, _layer: usize) -> Option<(StepsRun, StepsRun)> {
        None
    }
    /// Predict `n` images in chunks of `chunk`.
    fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions>;
    /// Every parameter (and running statistic) as a named host tensor.
    fn named_tensors(&self) -> Result<Vec<(String, Tensor)>>;
    /// Replace parameters from named tensors, checking names and shapes.
    fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()>;
    /// Save or load the training state beyond the parameters (optimiser
    /// moments and step counts, step counters; see [`crate::state`]).
    /// Flush the statistics first: pending ones are not part of it.
    fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()>;
    /// Multiply every optimiser's learning rate by `scale` from the next
    /// step on (the run's learning-rate schedule).
    fn set_lr_scale(&mut self, scale: f32) -> Result<()> {
        self.walk_state(&mut StateIo::LrScale(scale))
    }
    /// The network as a frozen feature extractor, if it is one.
    fn features(&mut self) -> Option<&mut dyn Features> {
        None
    }
    /// The linear probe on the frozen network, trained on its backend (an
    /// error for a network that is not a feature extractor).
    fn linear_probe(
        &mut self,
        _cfg: &ProbeConfig,
        _classes: usize,
        _train: LabelledSet<'_>,
        _test: LabelledSet<'_>,
    ) -> Result<ProbeReport> {
        Err(Error::Config(format!("probe: the {} has no feature extractor yet", self.kind_name())))
    }
    /// Each layer's (or block's) goodness, the sum of squared activities,
    /// for `images` with `labels` (None: the neutral label, where the net
    /// has one), `labels.len()` values per layer (the FF MLP and the conv
    /// FF net).
    fn goodness(&mut self, _images: &[f32], _labels: &[Option<u8>]) -> Result<Vec<Vec<f32>>> {
        Err(Error::Config(format!("goodness: the {} has no per-label goodness (the FF nets do)", self.kind_name())))
    }
    /// Each image's score per class (`n` × classes) that hard negatives
    /// sample from (the FF MLP with a readout: its logits).
    fn label_scores(&mut self, _images: &[f32], _n: usize, _chunk: usize) -> Result<Vec<f32>> {
        Err(Error::Config(format!(
            "train.negatives = \"hard\": the {} has no label scores (the FF MLP with a readout has)",
            self.kind_name()
        )))
    }
    /// The first cell's reconstructions of `n` images and the targets they
    /// aim at (UFF stacks only).
    fn reconstruct(&mut self, _images: &[f32], _n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        Err(Error::Config(format!("the {} has no reconstructions (only UFF stacks do)", self.kind_name())))
    }
}

/// The probe of a network that is a [`Features`], on the backend `be`.
fn probe_on<B: Backend>(
    net: &mut dyn Features,
    be: &B,
    cfg: &ProbeConfig,
    classes: usize,
    train: LabelledSet<'_>,
    test: LabelledSet<'_>,
) -> Result<ProbeReport> {
    linear_probe(net, be, cfg, classes, train, test)
}

/// The methods every network implements the same way, by its inherent ones.
macro_rules! common {
    () => {
        fn backend_name(&self) -> &'static str {
            self.backend().name()
        }
        fn classes(&self) -> usize {
            self.classes
        }
        fn flush_stats(&mut self) -> Result<Vec<BatchStats>> {
            Self::flush_stats(self)
        }
        fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
            Self::predict(self, images, n, chunk)
        }
        fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
            Self::named_tensors(self)
        }
        fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
            Self::load_tensors(self, get)
        }
        fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
            Self::walk_state(self, io)
        }
    };
}

/// The probe methods of a network that is a [`Features`].
macro_rules! probed {
    () => {
        fn features(&mut self) -> Option<&mut dyn Features> {
            Some(self)
        }
        fn linear_probe(
            &mut self,
            cfg: &ProbeConfig,
            classes: usize,
            train: LabelledSet<'_>,
            test: LabelledSet<'_>,
        ) -> Result<ProbeReport> {
            let be = self.backend().clone();
            probe_on(self, &be, cfg, classes, train, test)
        }
    };
}

impl<B: Backend> Network for FfNet<B> {
    common!();
    probed!();
    fn kind_name(&self) -> &'static str {
        match self.config.training {
            MlpTraining::Local => "FF MLP",
            _ => "MLP trained by backprop of the goodness losses",
        }
    }
    fn depth(&self) -> usize {
        self.layers.len()
    }
    fn has_readout(&self) -> bool {
        self.readout.is_some()
    }
    fn layer_by_layer(&self) -> bool {
        self.config.training == MlpTraining::Local
    }
    fn train_batch(&mut self, b: &Batch<'_>) -> Result<Vec<BatchStats>> {
        Self::train_batch(self, b.images, b.labels, b.neg, b.layers.clone())
    }
    fn goodness(&mut self, images: &[f32], labels: &[Option<u8>]) -> Result<Vec<Vec<f32>>> {
        self.goodness_of(images, labels)
    }
    fn label_scores(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Vec<f32>> {
        self.readout_logits(images, n, chunk)
    }
    fn steps_run(&self, layer: usize) -> Option<(StepsRun, StepsRun)> {
        self.layers.get(layer).map(|l| l.steps_run())
    }
}

impl<B: Backend> Network for BpMlp<B> {
    common!();
    probed!();
    fn kind_name(&self) -> &'static str {
        "backprop MLP"
    }
    fn depth(&self) -> usize {
        self.layers.len()
    }
    fn has_readout(&self) -> bool {
        true
    }
    fn train_batch(&mut self, b: &Batch<'_>) -> Result<Vec<BatchStats>> {
        Self::train_batch(self, b.images, b.labels)
    }
}

impl<B: Backend> Network for ConvFfNet<B> {
    common!();
    fn kind_name(&self) -> &'static str {
        "convolutional FF net"
    }
    fn depth(&self) -> usize {
        self.blocks.len()
    }
    fn has_readout(&self) -> bool {
        false
    }
    fn train_batch(&mut self, b: &Batch<'_>) -> Result<Vec<BatchStats>> {
        Self::train_batch(self, b.images, b.labels, b.neg)
    }
    fn goodness(&mut self, images: &[f32], labels: &[Option<u8>]) -> Result<Vec<Vec<f32>>> {
        self.goodness_of(images, labels)
    }
}

impl<B: Backend> Network for BpConvNet<B> {
    common!();
    fn kind_name(&self) -> &'static str {
        "backprop conv net"
    }
    fn depth(&self) -> usize {
        self.blocks.len()
    }
    fn has_readout(&self) -> bool {
        true
    }
    fn train_batch(&mut self, b: &Batch<'_>) -> Result<Vec<BatchStats>> {
        Self::train_batch(self, b.images, b.labels)
    }
}

impl<B: Backend> Network for FfclNet<B> {
    common!();
    probed!();
    fn kind_name(&self) -> &'static str {
        "FF contrastive twins"
    }
    fn depth(&self) -> usize {
        self.twins[0].len()
    }
    fn has_readout(&self) -> bool {
        true
    }
    fn train_batch(&mut self, b: &Batch<'_>) -> Result<Vec<BatchStats>> {
        Self::train_batch(self, b.images, b.labels)
    }
}

impl<B: Backend> Network for UffNet<B> {
    common!();
    probed!();
    fn kind_name(&self) -> &'static str {
        "unsupervised FF stack"
    }
    /// The classifier counts as the last layer (the separate mode).
    fn depth(&self) -> usize {
        self.cells.len() + 1
    }
    fn has_readout(&self) -> bool {
        true
    }
    fn layer_by_layer(&self) -> bool {
        true
    }
    fn train_batch(&mut self, b: &Batch<'_>) -> Result<Vec<BatchStats>> {
        Self::train_batch(self, b.images, b.labels, b.layers.clone(), b.pos)
    }
    fn reconstruct(&mut self, images: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        Self::reconstruct(self, images, n)
    }
}
