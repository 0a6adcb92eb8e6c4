//! Improved FF contrastive learning (arXiv 2405.03432): two copies of one
//! network (784-64-64-10 by default: ReLU hidden layers, softmax output)
//! with different initialisations see the same batch. Every layer learns
//! locally, on its own input (the previous layer's output of the same copy,
//! a constant to it):
//!
//! * hidden layer k of copy A minimises the cosine-embedding loss
//!   `1 − cos(h_A,k, h_B,k)` against copy B's output (a constant: detached),
//!   and copy B's layer k against copy A's — both from the outputs of the
//!   same forward, before either updates;
//! * each output layer minimises the binary cross-entropy of its softmax
//!   against the one-hot label.
//!
//! One optimiser per layer and copy (Adam, lr 1e-4 by default). Copy A's
//! layer i is initialised from the Philox stream `init(i)`, copy B's from
//! `init(FFCL_TWIN_STREAM + i)`, PyTorch-style (±1/√in). Prediction: the
//! argmax of the mean of the two copies' softmax outputs.

use crate::checks::{check_images, check_labelled};
use crate::config::OptimConfig;
use crate::optim::OptState;
use crate::predict::Predictions;
use crate::state::StateIo;
use crate::stats::{BatchStats, Entry, StatLog, SLOTS};
use crate::tensors::{fetch_into, to_tensor, TensorSource};
use crate::{Error, Result};
use ffwd_kernels::{argmax, Backend, Epilogue, LossOut, Mat, StatSlot};
use ffwd_tensor::{stream, Philox, Tensor};
use serde::{Deserialize, Serialize};

/// Offset of copy B's init streams.
pub const FFCL_TWIN_STREAM: u32 = 1 << 12;

/// The twin networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FfclConfig {
    /// Hidden widths (the output layer has one unit per class).
    pub sizes: Vec<usize>,
    pub optim: OptimConfig,
    /// Each layer's input a constant to it (true, the paper's local
    /// updates), or each copy's losses — every hidden layer's cosine term
    /// and the output's cross-entropy — backpropagated through that copy's
    /// layers below (false: not local; the other copy's outputs stay
    /// constants). An experiment on where the paper's gradients may flow.
    #[serde(skip_serializing_if = "is_true")]
    pub detach_inputs: bool,
}

/// Left out of a saved config at its default (checkpoints of the local
/// twins keep their bytes).
fn is_true(v: &bool) -> bool {
    *v
}

impl Default for FfclConfig {
    fn default() -> Self {
        Self { sizes: vec![64, 64], optim: OptimConfig { lr: 1e-4, ..OptimConfig::default() }, detach_inputs: true }
    }
}

/// One dense layer: y = x·W + b, ReLU on hidden layers.
#[derive(Clone, Debug)]
pub struct Dense<B: Backend> {
    pub din: usize,
    pub dout: usize,
    pub relu: bool,
    /// din × dout, row-major.
    pub w: B::Buf,
    pub b: B::Buf,
    opt_w: OptState<B>,
    opt_b: OptState<B>,
    y: B::Buf,
    dz: B::Buf,
    dw: B::Buf,
    db: B::Buf,
}

impl<B: Backend> Dense<B> {
    /// W and b uniform in ±1/√din from the Philox stream `init(index)`.
    pub fn new(
        be: &B,
        (din, dout, relu): (usize, usize, bool),
        optim: &OptimConfig,
        seed: u64,
        index: u32,
    ) -> Result<Self> {
        let bound = 1.0 / (din as f32).sqrt();
        let mut all = ffwd_kernels::try_zeros(din * dout + dout)?;
        Philox::new(seed, stream::init(index)).fill_uniform(&mut all, -bound, bound);
        let mut w = B::Buf::default();
        let mut b = B::Buf::default();
        be.upload(&all[..din * dout], &mut w)?;
        be.upload(&all[din * dout..], &mut b)?;
        Ok(Self {
            din,
            dout,
            relu,
            opt_w: OptState::new(be, optim, din * dout)?,
            opt_b: OptState::new(be, &optim.for_biases(), dout)?,
            w,
            b,
            y: B::Buf::default(),
            dz: B::Buf::default(),
            dw: B::Buf::default(),
            db: B::Buf::default(),
        })
    }

    /// `y = x·W + b` (ReLU'd on hidden layers) for `n` rows of `x`.
    pub fn forward(&mut self, be: &B, x: &B::Buf, n: usize) -> Result<()> {
        let epi = if self.relu { Epilogue::BiasRelu(&self.b) } else { Epilogue::Bias(&self.b) };
        be.gemm(Mat::new(x, n, self.din)?, Mat::new(&self.w, self.din, self.dout)?, &mut self.y, epi)?;
        Ok(())
    }

    /// dW and db from `dy` = dL/dy (through the ReLU where there is one).
    pub fn grads(&mut self, be: &B, x: &B::Buf, n: usize, dy: &B::Buf) -> Result<()> {
        if self.relu {
            be.relu_backward(&self.y, dy, &mut self.dz)?;
        } else {
            be.copy(dy, &mut self.dz)?;
        }
        crate::linear::param_grads(be, x, &self.dz, (n, self.din, self.dout), &mut self.dw, &mut self.db)
    }

    /// The optimiser step with the last [`Dense::grads`].
    pub fn apply(&mut self, be: &B) -> Result<()> {
        self.opt_w.step(be, &mut self.w, &self.dw)?;
        self.opt_b.step(be, &mut self.b, &self.db)?;
        Ok(())
    }

    /// dL/dx of the last [`Dense::grads`]: `dz·Wᵀ` (`n` × din).
    pub fn input_grad(&self, be: &B, n: usize, dx: &mut B::Buf) -> Result<()> {
        crate::linear::input_grad(be, &self.dz, &self.w, (n, self.din, self.dout), dx)
    }

    /// Output of the last forward.
    pub fn output(&self) -> &B::Buf {
        &self.y
    }

    /// (dW, db) of the last gradient computation.
    pub fn last_grads(&self) -> (&B::Buf, &B::Buf) {
        (&self.dw, &self.db)
    }

    /// `{prefix}.weight` (in × out) and `{prefix}.bias`.
    pub fn tensors(&self, be: &B, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![
            (format!("{prefix}.weight"), to_tensor(be, &[self.din, self.dout], &self.w)?),
            (format!("{prefix}.bias"), to_tensor(be, &[self.dout], &self.b)?),
        ])
    }

    /// Save or load the optimiser state (`{prefix}.weight.*`, `{prefix}.bias.*`).
    pub fn walk_state(&mut self, be: &B, io: &mut StateIo<'_>, prefix: &str) -> Result<()> {
        self.opt_w.walk_state(be, io, &format!("{prefix}.weight"), None)?;
        self.opt_b.walk_state(be, io, &format!("{prefix}.bias"), None)
    }

    /// Load what [`Dense::tensors`] names.
    pub fn load(&mut self, be: &B, prefix: &str, get: &mut TensorSource<'_>) -> Result<()> {
        fetch_into(be, get, &format!("{prefix}.weight"), &[self.din, self.dout], &mut self.w)?;
        fetch_into(be, get, &format!("{prefix}.bias"), &[self.dout], &mut self.b)
    }
}

/// Buffers of the last step, kept between steps.
#[derive(Clone, Debug)]
struct Work<B: Backend> {
    input: B::Buf,
    grad: B::Buf,
    labels: B::Ids,
    host_labels: Vec<u32>,
    scratch: B::LossScratch,
    probs: [B::Buf; 2],
    feats: B::Buf,
    /// Without detached inputs: dL/d(input) of the layer above.
    dx: B::Buf,
}

impl<B: Backend> Default for Work<B> {
    fn default() -> Self {
        Self {
            input: B::Buf::default(),
            grad: B::Buf::default(),
            labels: B::Ids::default(),
            host_labels: Vec::new(),
            scratch: B::LossScratch::default(),
            probs: Default::default(),
            feats: B::Buf::default(),
            dx: B::Buf::default(),
        }
    }
}

/// The two copies.
#[derive(Clone, Debug)]
pub struct FfclNet<B: Backend> {
    be: B,
    pub config: FfclConfig,
    pub image_dim: usize,
    pub classes: usize,
    /// `twins[0]` is copy A, `twins[1]` copy B; each hidden layers then the
    /// output layer.
    pub twins: [Vec<Dense<B>>; 2],
    pub steps: u64,
    work: Work<B>,
    log: StatLog<B::Buf>,
}

impl<B: Backend> FfclNet<B> {
    pub fn new(be: B, config: FfclConfig, image_dim: usize, classes: usize, seed: u64) -> Result<Self> {
        if config.sizes.contains(&0) {
            return Err(Error::Config("ffcl.sizes: a layer needs at least one unit".into()));
        }
        if !(config.optim.lr.is_finite() && config.optim.lr > 0.0) {
            return Err(Error::Config(format!("ffcl.optim.lr must be a positive number, got {}", config.optim.lr)));
        }
        if classes < 2 {
            return Err(Error::Config(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let twin = |off: u32| -> Result<Vec<Dense<B>>> {
            let mut v = Vec::new();
            let mut d = image_dim;
            for (i, &s) in config.sizes.iter().enumerate() {
                v.push(Dense::new(&be, (d, s, true), &config.optim, seed, off + i as u32)?);
                d = s;
            }
            v.push(Dense::new(&be, (d, classes, false), &config.optim, seed, off + config.sizes.len() as u32)?);
            Ok(v)
        };
        let twins = [twin(0)?, twin(FFCL_TWIN_STREAM)?];
        let hidden = config.sizes.len();
        Ok(Self {
            be,
            config,
            image_dim,
            classes,
            twins,
            steps: 0,
            work: Work::default(),
            log: StatLog::new(hidden, Some(hidden)),
        })
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.be
    }

    fn forward(&mut self, images: &[f32], n: usize) -> Result<()> {
        self.be.upload(images, &mut self.work.input)?;
        for t in &mut self.twins {
            for l in 0..t.len() {
                let (prev, rest) = t.split_at_mut(l);
                let x = if l == 0 { &self.work.input } else { prev[l - 1].output() };
                rest[0].forward(&self.be, x, n)?;
            }
        }
        Ok(())
    }

    /// Forward both copies and compute every layer's local gradients
    /// without updating. Layer l's loss of copy `side` goes to position
    /// `at(l, side)` of `stats`.
    fn grads_into(
        &mut self,
        images: &[f32],
        labels: &[u8],
        stats: &mut B::Buf,
        at: impl Fn(usize, usize) -> usize,
    ) -> Result<()> {
        check_labelled(images.len(), self.image_dim, labels, self.classes)?;
        let n = labels.len();
        self.forward(images, n)?;
        let w = &mut self.work;
        w.host_labels.clear();
        w.host_labels.extend(labels.iter().map(|&y| y as u32));
        self.be.upload_ids(&w.host_labels, &mut w.labels)?;
        let nl = self.twins[0].len();
        let be = &self.be;
        let detach = self.config.detach_inputs;
        // Detached: each layer on its own, bottom up. Not detached: top
        // down, each layer's own loss gradient plus what the layer above
        // sends down.
        let order: Vec<usize> = if detach { (0..nl).collect() } else { (0..nl).rev().collect() };
        for side in 0..2 {
            for &l in &order {
                let (me, other) = if side == 0 {
                    let (a, b) = self.twins.split_at_mut(1);
                    (&mut a[0], &b[0])
                } else {
                    let (a, b) = self.twins.split_at_mut(1);
                    (&mut b[0], &a[0])
                };
                let d = me[l].dout;
                let out = StatSlot::new(&mut *stats, at(l, side));
                if l + 1 < nl {
                    be.cosine_embedding(
                        me[l].output(),
                        other[l].output(),
                        d,
                        LossOut::new(&mut w.grad, &mut w.scratch, out),
                    )?;
                } else {
                    be.softmax_bce(me[l].output(), d, &w.labels, LossOut::new(&mut w.grad, &mut w.scratch, out))?;
                }
                if !detach && l + 1 < nl {
                    be.add_assign(&mut w.grad, &w.dx)?;
                }
                let (prev, rest) = me.split_at_mut(l);
                let x = if l == 0 { &w.input } else { prev[l - 1].output() };
                rest[0].grads(be, x, n, &w.grad)?;
                if !detach && l > 0 {
                    rest[0].input_grad(be, n, &mut w.dx)?;
                }
            }
        }
        Ok(())
    }

    /// Forward both copies and compute every layer's local gradients
    /// without updating (left in [`Dense::last_grads`]). Returns, per layer
    /// (the output layer last), the mean of the two copies' losses.
    pub fn compute_grads(&mut self, images: &[f32], labels: &[u8]) -> Result<Vec<f32>> {
        let nl = self.twins[0].len();
        let mut s = self.be.zeros(2 * nl)?;
        self.grads_into(images, labels, &mut s, |l, side| 2 * l + side)?;
        let v = self.be.download(&s)?;
        Ok(v.chunks(2).map(|p| (p[0] + p[1]) * 0.5).collect())
    }

    /// One step: every layer's local gradients, then every layer's
    /// optimiser. Returns the statistics read back during the call (per
    /// layer the mean of the two copies' losses; the output layers' as the
    /// readout loss).
    pub fn train_batch(&mut self, images: &[f32], labels: &[u8]) -> Result<Vec<BatchStats>> {
        let row = self.log.begin(&self.be)?;
        let r = (|| {
            let mut log = std::mem::replace(&mut self.log, StatLog::new(0, None));
            for l in 0..self.twins[0].len() {
                log.mark(l, Entry::TwinMean);
            }
            let r = self.grads_into(images, labels, log.buf_mut(), |l, side| row + SLOTS * l + side);
            self.log = log;
            r?;
            for t in &mut self.twins {
                for l in t.iter_mut() {
                    l.apply(&self.be)?;
                }
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

    /// Predict `n` images in chunks: the argmax of the mean of the two
    /// copies' softmax outputs.
    pub fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let (di, c) = (self.image_dim, self.classes);
        check_images(images.len(), n, di)?;
        let mut p = Predictions::default();
        let mut row = vec![0.0f32; c];
        for s in (0..n).step_by(chunk.max(1)) {
            let m = chunk.max(1).min(n - s);
            self.forward(&images[s * di..(s + m) * di], m)?;
            let w = &mut self.work;
            for (side, probs) in w.probs.iter_mut().enumerate() {
                let z = self.twins[side].last().expect("output layer").output();
                self.be.softmax_rows(z, c, probs, &mut w.scratch)?;
            }
            let a = self.be.download(&w.probs[0])?;
            let b = self.be.download(&w.probs[1])?;
            for i in 0..m {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (a[i * c + j] + b[i * c + j]) * 0.5;
                }
                p.overall.push(argmax(&row) as u8);
            }
        }
        p.readout = Some(p.overall.clone());
        Ok(p)
    }

    /// `a.{i}.weight` / `a.{i}.bias` and `b.{i}.*` (weights in × out).
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (side, t) in ["a", "b"].iter().zip(&self.twins) {
            for (i, l) in t.iter().enumerate() {
                out.extend(l.tensors(&self.be, &format!("{side}.{i}"))?);
            }
        }
        Ok(out)
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
        for (side, t) in ["a", "b"].iter().zip(&mut self.twins) {
            for (i, l) in t.iter_mut().enumerate() {
                l.load(&self.be, &format!("{side}.{i}"), get)?;
            }
        }
        Ok(())
    }

    /// Save or load the optimiser states of both copies and the step count.
    pub fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
        for (side, t) in ["a", "b"].iter().zip(&mut self.twins) {
            for (i, l) in t.iter_mut().enumerate() {
                l.walk_state(&self.be, io, &format!("{side}.{i}"))?;
            }
        }
        io.counter("steps", &mut self.steps)
    }
}

/// The probe sees copy A's hidden outputs (not normalised).
impl<B: Backend> crate::probe::Features for FfclNet<B> {
    fn feature_dims(&self) -> Vec<usize> {
        self.config.sizes.clone()
    }
    fn features(
        &mut self,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        view.only_default("FFCL net", "has one view (raw hidden outputs, no label inputs)")?;
        check_images(images.len(), n, self.image_dim)?;
        self.forward(images, n)?;
        let hidden = &self.twins[0][..self.config.sizes.len()];
        let f: usize = self.config.sizes.iter().sum();
        let feats = &mut self.work.feats;
        self.be.resize(feats, n * f)?;
        let mut off = 0;
        for l in hidden {
            self.be.put_cols(l.output(), l.dout, feats, f, off)?;
            off += l.dout;
        }
        out.clear();
        self.be.with_host(feats, |v| out.extend_from_slice(v))?;
        Ok(())
    }
}
