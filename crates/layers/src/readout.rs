//! A linear softmax classifier trained with cross-entropy on features that
//! are constants to it (Hinton's prediction B; later the linear probe). Its
//! gradient never reaches the layers that produced the features.

use crate::config::OptimConfig;
use crate::optim::OptState;
use crate::Result;
use ffwd_kernels::{argmax, CpuBackend, Epilogue, LossScratch, MatMut, MatRef};
use ffwd_tensor::{stream, Philox};

#[derive(Clone, Debug)]
pub struct Readout {
    pub in_dim: usize,
    pub classes: usize,
    /// in_dim × classes, zero-initialised.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    opt_w: OptState,
    opt_b: OptState,
    logits: Vec<f32>,
    grad: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
    labels: Vec<u32>,
    scratch: LossScratch,
}

impl Readout {
    pub fn new(in_dim: usize, classes: usize, optim: &OptimConfig) -> Self {
        Self {
            in_dim,
            classes,
            w: vec![0.0; in_dim * classes],
            b: vec![0.0; classes],
            opt_w: OptState::new(optim, in_dim * classes),
            opt_b: OptState::new(optim, classes),
            logits: Vec::new(),
            grad: Vec::new(),
            dw: vec![0.0; in_dim * classes],
            db: vec![0.0; classes],
            labels: Vec::new(),
            scratch: LossScratch::default(),
        }
    }

    /// PyTorch's `nn.Linear` init instead of zeros: W and b uniform in
    /// ±1/√in_dim, from the Philox stream `init(stream_index)` (W first,
    /// then b from the words after it).
    pub fn with_uniform_init(mut self, seed: u64, stream_index: u32) -> Self {
        let bound = 1.0 / (self.in_dim as f32).sqrt();
        let mut all = vec![0.0f32; self.w.len() + self.b.len()];
        Philox::new(seed, stream::init(stream_index)).fill_uniform(&mut all, -bound, bound);
        let (w, b) = all.split_at(self.w.len());
        self.w.copy_from_slice(w);
        self.b.copy_from_slice(b);
        self
    }

    fn logits(&mut self, be: &CpuBackend, feats: &[f32], n: usize) -> Result<()> {
        self.logits.resize(n * self.classes, 0.0);
        be.gemm(
            MatRef::new(feats, n, self.in_dim)?,
            MatRef::new(&self.w, self.in_dim, self.classes)?,
            MatMut::new(&mut self.logits, n, self.classes)?,
            Epilogue::Bias(&self.b),
        )?;
        Ok(())
    }

    /// One step of cross-entropy on `n` feature rows; returns the mean loss.
    pub fn train_step(&mut self, be: &CpuBackend, feats: &[f32], labels: &[u8]) -> Result<f32> {
        let loss = self.compute_grads(be, feats, labels)?;
        self.apply(be)?;
        Ok(loss)
    }

    /// The optimiser step with the last [`Readout::compute_grads`].
    pub fn apply(&mut self, be: &CpuBackend) -> Result<()> {
        self.opt_w.step(be, &mut self.w, &self.dw)?;
        self.opt_b.step(be, &mut self.b, &self.db)?;
        Ok(())
    }

    /// `(dW, db)` of the last [`Readout::compute_grads`].
    pub fn grads(&self) -> (&[f32], &[f32]) {
        (&self.dw, &self.db)
    }

    /// Mean cross-entropy and its gradients, without updating.
    pub fn compute_grads(&mut self, be: &CpuBackend, feats: &[f32], labels: &[u8]) -> Result<f32> {
        let n = labels.len();
        self.logits(be, feats, n)?;
        self.labels.clear();
        self.labels.extend(labels.iter().map(|&y| y as u32));
        self.grad.resize(n * self.classes, 0.0);
        let loss = be.softmax_xent(&self.logits, self.classes, &self.labels, &mut self.grad, &mut self.scratch)?;
        let dims = (n, self.in_dim, self.classes);
        crate::linear::param_grads(be, feats, &self.grad, dims, &mut self.dw, &mut self.db)?;
        Ok(loss)
    }

    /// dL/d(features) of the last [`Readout::compute_grads`] (`n` ×
    /// in_dim), for a network that trains its layers through this head.
    pub fn input_grad(&self, be: &CpuBackend, dfeats: &mut Vec<f32>) -> Result<()> {
        let n = self.labels.len();
        crate::linear::input_grad(be, &self.grad, &self.w, (n, self.in_dim, self.classes), dfeats)
    }

    /// Logits of the last forward (`n` × classes).
    pub fn last_logits(&self) -> &[f32] {
        &self.logits
    }

    /// Predicted class of each of `n` feature rows (first maximum).
    pub fn predict(&mut self, be: &CpuBackend, feats: &[f32], n: usize, out: &mut Vec<u8>) -> Result<()> {
        self.logits(be, feats, n)?;
        out.extend(self.logits.chunks(self.classes).map(|r| argmax(r) as u8));
        Ok(())
    }
}
