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

use crate::config::OptimConfig;
use crate::ff::{check_images, check_labelled, BatchStats, LayerStats, Predictions};
use crate::optim::OptState;
use crate::{Error, Result};
use ffwd_kernels::{argmax, CpuBackend, Epilogue, LossScratch, MatMut, MatRef};
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
}

impl Default for FfclConfig {
    fn default() -> Self {
        Self { sizes: vec![64, 64], optim: OptimConfig { lr: 1e-4, ..OptimConfig::default() } }
    }
}

/// One dense layer: y = x·W + b, ReLU on hidden layers.
#[derive(Clone, Debug)]
pub struct Dense {
    pub din: usize,
    pub dout: usize,
    pub relu: bool,
    /// din × dout, row-major.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    opt_w: OptState,
    opt_b: OptState,
    y: Vec<f32>,
    dz: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

impl Dense {
    /// W and b uniform in ±1/√din from the Philox stream `init(index)`.
    pub fn new(din: usize, dout: usize, relu: bool, optim: &OptimConfig, seed: u64, index: u32) -> Self {
        let bound = 1.0 / (din as f32).sqrt();
        let mut all = vec![0.0f32; din * dout + dout];
        Philox::new(seed, stream::init(index)).fill_uniform(&mut all, -bound, bound);
        let b = all.split_off(din * dout);
        Self {
            din,
            dout,
            relu,
            opt_w: OptState::new(optim, din * dout),
            opt_b: OptState::new(optim, dout),
            w: all,
            b,
            y: Vec::new(),
            dz: Vec::new(),
            dw: vec![0.0; din * dout],
            db: vec![0.0; dout],
        }
    }

    /// `y = x·W + b` (ReLU'd on hidden layers) for `n` rows of `x`.
    pub fn forward(&mut self, be: &CpuBackend, x: &[f32], n: usize) -> Result<()> {
        self.y.resize(n * self.dout, 0.0);
        let epi = if self.relu { Epilogue::BiasRelu(&self.b) } else { Epilogue::Bias(&self.b) };
        be.gemm(
            MatRef::new(x, n, self.din)?,
            MatRef::new(&self.w, self.din, self.dout)?,
            MatMut::new(&mut self.y, n, self.dout)?,
            epi,
        )?;
        Ok(())
    }

    /// dW and db from `dy` = dL/dy (through the ReLU where there is one).
    pub fn grads(&mut self, be: &CpuBackend, x: &[f32], n: usize, dy: &[f32]) -> Result<()> {
        self.dz.clear();
        self.dz.extend(dy.iter().zip(&self.y).map(|(&g, &y)| if !self.relu || y > 0.0 { g } else { 0.0 }));
        crate::linear::param_grads(be, x, &self.dz, (n, self.din, self.dout), &mut self.dw, &mut self.db)
    }

    /// The optimiser step with the last [`Dense::grads`].
    pub fn apply(&mut self, be: &CpuBackend) -> Result<()> {
        self.opt_w.step(be, &mut self.w, &self.dw)?;
        self.opt_b.step(be, &mut self.b, &self.db)?;
        Ok(())
    }

    /// dL/dx of the last [`Dense::grads`]: `dz·Wᵀ` (`n` × din).
    pub fn input_grad(&self, be: &CpuBackend, n: usize, dx: &mut Vec<f32>) -> Result<()> {
        crate::linear::input_grad(be, &self.dz, &self.w, (n, self.din, self.dout), dx)
    }

    /// Output of the last forward.
    pub fn output(&self) -> &[f32] {
        &self.y
    }

    /// (dW, db) of the last gradient computation.
    pub fn last_grads(&self) -> (&[f32], &[f32]) {
        (&self.dw, &self.db)
    }
}

/// The two copies.
#[derive(Clone, Debug)]
pub struct FfclNet {
    pub config: FfclConfig,
    pub image_dim: usize,
    pub classes: usize,
    /// `twins[0]` is copy A, `twins[1]` copy B; each hidden layers then the
    /// output layer.
    pub twins: [Vec<Dense>; 2],
    grad: Vec<f32>,
    ylab: Vec<u32>,
    scratch: LossScratch,
    probs: Vec<f32>,
}

impl FfclNet {
    pub fn new(config: FfclConfig, image_dim: usize, classes: usize, seed: u64) -> Result<Self> {
        if config.sizes.contains(&0) {
            return Err(Error::Config("ffcl.sizes: a layer needs at least one unit".into()));
        }
        if !(config.optim.lr.is_finite() && config.optim.lr > 0.0) {
            return Err(Error::Config(format!("ffcl.optim.lr must be a positive number, got {}", config.optim.lr)));
        }
        if classes < 2 {
            return Err(Error::Config(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let twin = |off: u32| {
            let mut v = Vec::new();
            let mut d = image_dim;
            for (i, &s) in config.sizes.iter().enumerate() {
                v.push(Dense::new(d, s, true, &config.optim, seed, off + i as u32));
                d = s;
            }
            v.push(Dense::new(d, classes, false, &config.optim, seed, off + config.sizes.len() as u32));
            v
        };
        let twins = [twin(0), twin(FFCL_TWIN_STREAM)];
        Ok(Self {
            config,
            image_dim,
            classes,
            twins,
            grad: Vec::new(),
            ylab: Vec::new(),
            scratch: LossScratch::default(),
            probs: Vec::new(),
        })
    }

    fn forward(&mut self, be: &CpuBackend, images: &[f32], n: usize) -> Result<()> {
        for t in &mut self.twins {
            for l in 0..t.len() {
                let (prev, rest) = t.split_at_mut(l);
                let x = if l == 0 { images } else { prev[l - 1].output() };
                rest[0].forward(be, x, n)?;
            }
        }
        Ok(())
    }

    /// Forward both copies and compute every layer's local gradients
    /// without updating. Per layer: the mean of the two copies' losses.
    pub fn compute_grads(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8]) -> Result<BatchStats> {
        check_labelled(images.len(), self.image_dim, labels, self.classes)?;
        let n = labels.len();
        self.forward(be, images, n)?;
        self.ylab.clear();
        self.ylab.extend(labels.iter().map(|&y| y as u32));
        let nl = self.twins[0].len();
        let mut stats = BatchStats { layers: vec![None; nl], readout_loss: None };
        for l in 0..nl {
            let mut losses = [0.0f32; 2];
            for (side, out) in losses.iter_mut().enumerate() {
                let (me, other) = (side, 1 - side);
                let d = self.twins[me][l].dout;
                self.grad.resize(n * d, 0.0);
                *out = if l + 1 < nl {
                    let target = self.twins[other][l].output();
                    be.cosine_embedding(self.twins[me][l].output(), target, d, &mut self.grad, &mut self.scratch)?
                } else {
                    let z = self.twins[me][l].output();
                    be.softmax_bce(z, d, &self.ylab, &mut self.grad, &mut self.scratch)?
                };
                let (prev, rest) = self.twins[me].split_at_mut(l);
                let x = if l == 0 { images } else { prev[l - 1].output() };
                rest[0].grads(be, x, n, &self.grad)?;
            }
            let loss = (losses[0] + losses[1]) * 0.5;
            if !loss.is_finite() {
                return Err(Error::NonFinite { layer: l, loss });
            }
            if l + 1 < nl {
                stats.layers[l] = Some(LayerStats::loss_only(loss));
            } else {
                stats.readout_loss = Some(loss);
            }
        }
        Ok(stats)
    }

    /// One step: [`FfclNet::compute_grads`], then every layer's optimiser.
    pub fn train_batch(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8]) -> Result<BatchStats> {
        let s = self.compute_grads(be, images, labels)?;
        for t in &mut self.twins {
            for l in t.iter_mut() {
                l.apply(be)?;
            }
        }
        Ok(s)
    }

    /// Predict `n` images in chunks: the argmax of the mean of the two
    /// copies' softmax outputs.
    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let (di, c) = (self.image_dim, self.classes);
        check_images(images.len(), n, di)?;
        let mut p = Predictions::default();
        for s in (0..n).step_by(chunk.max(1)) {
            let m = chunk.max(1).min(n - s);
            self.forward(be, &images[s * di..(s + m) * di], m)?;
            let mut probs = std::mem::take(&mut self.probs);
            probs.resize(2 * m * c, 0.0);
            for side in 0..2 {
                let z = self.twins[side].last().expect("output layer").output();
                be.softmax_rows(z, c, &mut probs[side * m * c..(side + 1) * m * c], &mut self.scratch)?;
            }
            let mut row = vec![0.0f32; c];
            for i in 0..m {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (probs[i * c + j] + probs[m * c + i * c + j]) * 0.5;
                }
                p.overall.push(argmax(&row) as u8);
            }
            self.probs = probs;
        }
        p.readout = Some(p.overall.clone());
        Ok(p)
    }

    /// `a.{i}.weight` / `a.{i}.bias` and `b.{i}.*` (weights in × out).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (side, t) in ["a", "b"].iter().zip(&self.twins) {
            for (i, l) in t.iter().enumerate() {
                out.push((
                    format!("{side}.{i}.weight"),
                    Tensor::from_vec(&[l.din, l.dout], l.w.clone()).expect("shape"),
                ));
                out.push((format!("{side}.{i}.bias"), Tensor::from_vec(&[l.dout], l.b.clone()).expect("shape")));
            }
        }
        out
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, mut get: impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        for (side, t) in ["a", "b"].iter().zip(&mut self.twins) {
            for (i, l) in t.iter_mut().enumerate() {
                l.w = crate::conv::fetch_tensor(&mut get, &format!("{side}.{i}.weight"), &[l.din, l.dout])?;
                l.b = crate::conv::fetch_tensor(&mut get, &format!("{side}.{i}.bias"), &[l.dout])?;
            }
        }
        Ok(())
    }
}

/// The probe sees copy A's hidden outputs (not normalised).
impl crate::probe::Features for FfclNet {
    fn feature_dims(&self) -> Vec<usize> {
        self.config.sizes.clone()
    }
    fn features(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        view.only_default("FFCL net", "has one view (raw hidden outputs, no label inputs)")?;
        check_images(images.len(), n, self.image_dim)?;
        self.forward(be, images, n)?;
        let hidden = &self.twins[0][..self.config.sizes.len()];
        let f: usize = self.config.sizes.iter().sum();
        out.resize(n * f, 0.0);
        let mut off = 0;
        for l in hidden {
            for i in 0..n {
                out[i * f + off..i * f + off + l.dout].copy_from_slice(&l.output()[i * l.dout..(i + 1) * l.dout]);
            }
            off += l.dout;
        }
        Ok(())
    }
}
