//! A linear softmax classifier trained with cross-entropy on features that
//! are constants to it (Hinton's prediction B, the linear probe, the
//! classifier heads of the backprop and UFF networks). Its gradient never
//! reaches the layers that produced the features, unless a network asks
//! for it ([`Readout::input_grad`]).

use crate::config::OptimConfig;
use crate::optim::OptState;
use crate::Result;
use ffwd_kernels::{argmax, Backend, Epilogue, LossOut, Mat, StatSlot};
use ffwd_tensor::{stream, Philox};

#[derive(Clone, Debug)]
pub struct Readout<B: Backend> {
    pub in_dim: usize,
    pub classes: usize,
    /// in_dim × classes, zero-initialised.
    pub w: B::Buf,
    pub b: B::Buf,
    opt_w: OptState<B>,
    opt_b: OptState<B>,
    logits: B::Buf,
    grad: B::Buf,
    dw: B::Buf,
    db: B::Buf,
    labels: B::Ids,
    host_labels: Vec<u32>,
    rows: usize,
    scratch: B::LossScratch,
}

impl<B: Backend> Readout<B> {
    pub fn new(be: &B, in_dim: usize, classes: usize, optim: &OptimConfig) -> Result<Self> {
        Ok(Self {
            in_dim,
            classes,
            w: be.zeros(in_dim * classes)?,
            b: be.zeros(classes)?,
            opt_w: OptState::new(be, optim, in_dim * classes)?,
            opt_b: OptState::new(be, &optim.for_biases(), classes)?,
            logits: B::Buf::default(),
            grad: B::Buf::default(),
            dw: B::Buf::default(),
            db: B::Buf::default(),
            labels: B::Ids::default(),
            host_labels: Vec::new(),
            rows: 0,
            scratch: B::LossScratch::default(),
        })
    }

    /// PyTorch's `nn.Linear` init instead of zeros: W and b uniform in
    /// ±1/√in_dim, from the Philox stream `init(stream_index)` (W first,
    /// then b from the words after it).
    pub fn with_uniform_init(mut self, be: &B, seed: u64, stream_index: u32) -> Result<Self> {
        let bound = 1.0 / (self.in_dim as f32).sqrt();
        let nw = self.in_dim * self.classes;
        let mut all = ffwd_kernels::try_zeros(nw + self.classes)?;
        Philox::new(seed, stream::init(stream_index)).fill_uniform(&mut all, -bound, bound);
        be.upload(&all[..nw], &mut self.w)?;
        be.upload(&all[nw..], &mut self.b)?;
        Ok(self)
    }

    fn logits(&mut self, be: &B, feats: &B::Buf, n: usize) -> Result<()> {
        be.gemm(
            Mat::new(feats, n, self.in_dim)?,
            Mat::new(&self.w, self.in_dim, self.classes)?,
            &mut self.logits,
            Epilogue::Bias(&self.b),
        )?;
        Ok(())
    }

    /// One step of cross-entropy on `labels.len()` feature rows; the mean
    /// loss goes to `out`.
    pub fn train_step(&mut self, be: &B, feats: &B::Buf, labels: &[u8], out: StatSlot<'_, B::Buf>) -> Result<()> {
        self.compute_grads(be, feats, labels, out)?;
        self.apply(be)
    }

    /// The optimiser step with the last [`Readout::compute_grads`].
    pub fn apply(&mut self, be: &B) -> Result<()> {
        self.opt_w.step(be, &mut self.w, &self.dw)?;
        self.opt_b.step(be, &mut self.b, &self.db)?;
        Ok(())
    }

    /// `(dW, db)` of the last [`Readout::compute_grads`].
    pub fn grads(&self) -> (&B::Buf, &B::Buf) {
        (&self.dw, &self.db)
    }

    /// The mean cross-entropy (to `out`) and its gradients, without updating.
    pub fn compute_grads(&mut self, be: &B, feats: &B::Buf, labels: &[u8], out: StatSlot<'_, B::Buf>) -> Result<()> {
        let n = labels.len();
        self.rows = n;
        self.logits(be, feats, n)?;
        self.host_labels.clear();
        self.host_labels.extend(labels.iter().map(|&y| y as u32));
        be.upload_ids(&self.host_labels, &mut self.labels)?;
        be.softmax_xent(
            &self.logits,
            self.classes,
            &self.labels,
            LossOut::new(&mut self.grad, &mut self.scratch, out),
        )?;
        let dims = (n, self.in_dim, self.classes);
        crate::linear::param_grads(be, feats, &self.grad, dims, &mut self.dw, &mut self.db)
    }

    /// dL/d(features) of the last [`Readout::compute_grads`] (`n` ×
    /// in_dim), for a network that trains its layers through this head.
    pub fn input_grad(&self, be: &B, dfeats: &mut B::Buf) -> Result<()> {
        crate::linear::input_grad(be, &self.grad, &self.w, (self.rows, self.in_dim, self.classes), dfeats)
    }

    /// Logits of the last forward (`n` × classes).
    pub fn last_logits(&self) -> &B::Buf {
        &self.logits
    }

    /// The logits of `n` feature rows, appended to `out` (host).
    pub fn logits_host(&mut self, be: &B, feats: &B::Buf, n: usize, out: &mut Vec<f32>) -> Result<()> {
        self.logits(be, feats, n)?;
        be.with_host(&self.logits, |l| out.extend_from_slice(l))?;
        Ok(())
    }

    /// Predicted class of each of `n` feature rows (first maximum),
    /// appended to `out`.
    pub fn predict(&mut self, be: &B, feats: &B::Buf, n: usize, out: &mut Vec<u8>) -> Result<()> {
        self.logits(be, feats, n)?;
        let c = self.classes;
        be.with_host(&self.logits, |l| out.extend(l.chunks(c).map(|r| argmax(r) as u8)))?;
        Ok(())
    }

    /// `{prefix}.weight` (features × classes) and `{prefix}.bias`.
    pub fn tensors(&self, be: &B, prefix: &str) -> Result<Vec<(String, ffwd_tensor::Tensor)>> {
        use crate::tensors::to_tensor;
        Ok(vec![
            (format!("{prefix}.weight"), to_tensor(be, &[self.in_dim, self.classes], &self.w)?),
            (format!("{prefix}.bias"), to_tensor(be, &[self.classes], &self.b)?),
        ])
    }

    /// Save or load the optimiser state (`{prefix}.weight.*`, `{prefix}.bias.*`).
    pub fn walk_state(&mut self, be: &B, io: &mut crate::StateIo<'_>, prefix: &str) -> Result<()> {
        self.opt_w.walk_state(be, io, &format!("{prefix}.weight"), None)?;
        self.opt_b.walk_state(be, io, &format!("{prefix}.bias"), None)
    }

    /// Load what [`Readout::tensors`] names.
    pub fn load(&mut self, be: &B, prefix: &str, get: &mut crate::tensors::TensorSource<'_>) -> Result<()> {
        use crate::tensors::fetch_into;
        fetch_into(be, get, &format!("{prefix}.weight"), &[self.in_dim, self.classes], &mut self.w)?;
        fetch_into(be, get, &format!("{prefix}.bias"), &[self.classes], &mut self.b)
    }
}
