//! Hinton's Forward-Forward (2022): layers trained greedily and locally on
//! positive data (image + true label) and negative data (image + a wrong
//! label drawn uniformly from the others).
//!
//! One layer's training step, all in one batch of 2n rows (n positives,
//! then the n negatives made from the same images):
//! `xn = norm(x)`; `h = relu(xn·W + b)`, `G = Σh²` (fused);
//! loss and `dL/dG` (threshold or SymBa); `dz = 2h·dL/dG`;
//! `dW = xnᵀ·dz`, `db = Σ_rows dz`; optimiser step. The layer's input is a
//! constant: no gradient leaves the layer. The next layer receives `h`
//! computed before the update (so "simultaneous" equals one forward pass
//! followed by every layer's update).
//!
//! Everything here is written once over a [`Backend`]: the same code trains
//! on the CPU (scalar specification or AVX2) and on a GPU, with the same
//! bits. Only the label embedding of a batch is written on the host.

use crate::checks::{check_batch, check_images};
use crate::config::{
    Combine, FfConfig, GoodnessKind, LabelMode, LossKind, MlpTraining, OptimConfig, PeerConfig, PredictKind,
};
use crate::optim::OptState;
use crate::readout::Readout;
use crate::state::StateIo;
use crate::stats::{BatchStats, Entry, StatLog, SLOTS};
use crate::tensors::{fetch, to_tensor, TensorSource};
use crate::{Error, Result};
use ffwd_kernels::{
    argmax, Backend, Cnhw, FfLoss, GoodnessForm, Len, LinearUpdate, LossOut, MeanOf, Norm, Param, PeerNorm, PeerTerm,
    StatSlot, StepsRun,
};
use ffwd_tensor::{stream, Philox, Tensor};

pub use crate::stats::LayerStats;

/// A layer's output as the layer above reads it: the activity `h` (rows ×
/// width) and each row's sum of squares (the L32 sum, which is also the
/// layer's sum-form goodness), so that the next normalisation need not sum
/// the squares again.
pub struct Activity<'a, B: Backend> {
    pub h: &'a B::Buf,
    pub sumsq: &'a B::Buf,
}

impl<B: Backend> Clone for Activity<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Activity<'_, B> {}

/// What a layer's forward reads: raw rows, or the layer below's activity.
enum Input<'a, B: Backend> {
    Raw(&'a B::Buf),
    Below(Activity<'a, B>),
}

/// The buffers of a layer's last step (generic over the buffer and scratch
/// types so that they derive their defaults).
#[derive(Clone, Debug, Default)]
struct Work<T, L, S, N> {
    xn: T,
    h: T,
    g: T,
    dldg: T,
    dz: T,
    dw: T,
    db: T,
    scratch: L,
    lin: S,
    /// How much of the last forward's and the last fused update's
    /// products ran (see [`FfLayer::steps_run`]).
    steps: (StepsRun, StepsRun),
    /// Backprop only: W row-major, dL/d(normalised input), the norm's inv.
    w_rows: T,
    dxn: T,
    inv: T,
    norm_scratch: N,
}

type LayerWork<B> = Work<
    <B as ffwd_kernels::Storage>::Buf,
    <B as ffwd_kernels::LossOps>::LossScratch,
    <B as ffwd_kernels::LinearOps>::LinearScratch,
    <B as ffwd_kernels::Norm2dOps>::NormScratch,
>;

/// What one layer's training step optimises: the input normalisation and
/// the goodness loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    pub norm: Norm,
    /// ε of the normalisation.
    pub eps: f32,
    pub loss: FfLoss,
    pub form: GoodnessForm,
}

/// One FF layer: normalise → linear → ReLU, with its own optimiser.
#[derive(Clone, Debug)]
pub struct FfLayer<B: Backend> {
    pub in_dim: usize,
    pub out_dim: usize,
    /// in_dim × out_dim, in the backend's layout ([`LinearOps::unpack`](ffwd_kernels::LinearOps::unpack) gives
    /// the row-major matrix).
    pub w: B::Packed,
    pub b: B::Buf,
    opt_w: OptState<B>,
    opt_b: OptState<B>,
    work: LayerWork<B>,
    peer: Option<Peer<B>>,
}

/// The peer term of a training step on `rows` rows (n positives then n
/// negatives): the last `peer_grad` for the first n rows.
fn peer_term<B: Backend>(peer: &Option<Peer<B>>, rows: usize) -> Option<PeerTerm<'_, B::Buf>> {
    peer.as_ref().map(|p| PeerTerm { p: &p.p, rows: rows / 2 })
}

/// A layer's peer normalisation: its settings, the running means of its
/// units on positive data, and the gradient term of the last training
/// forward.
#[derive(Clone, Debug)]
struct Peer<B: Backend> {
    norm: PeerNorm,
    means: B::Buf,
    p: B::Buf,
}

impl<B: Backend> FfLayer<B> {
    /// PyTorch-style init: W and b uniform in ±1/√in_dim, from the Philox
    /// stream `init(index)` (W first, then b).
    pub fn new(be: &B, in_dim: usize, out_dim: usize, optim: &OptimConfig, seed: u64, index: u32) -> Result<Self> {
        let bound = 1.0 / (in_dim as f32).sqrt();
        let mut all = ffwd_kernels::try_zeros(in_dim * out_dim + out_dim)?;
        Philox::new(seed, stream::init(index)).fill_uniform(&mut all, -bound, bound);
        let w = be.pack(&all[..in_dim * out_dim], in_dim, out_dim)?;
        let mut b = B::Buf::default();
        be.upload(&all[in_dim * out_dim..], &mut b)?;
        Ok(Self {
            in_dim,
            out_dim,
            opt_w: OptState::for_packed(be, optim, &w)?,
            opt_b: OptState::new(be, &optim.for_biases(), out_dim)?,
            w,
            b,
            work: Work::default(),
            peer: None,
        })
    }

    /// Train with peer normalisation from now on, the running means
    /// starting at `config.init`.
    pub fn enable_peer(&mut self, be: &B, config: &PeerConfig) -> Result<()> {
        config.validate().map_err(Error::Config)?;
        let mut means = B::Buf::default();
        be.upload(&vec![config.init; self.out_dim], &mut means)?;
        self.peer = Some(Peer { norm: config.norm(), means, p: B::Buf::default() });
        Ok(())
    }

    /// The running means of peer normalisation (None when it is off).
    pub fn peer_means(&self) -> Option<&B::Buf> {
        self.peer.as_ref().map(|p| &p.means)
    }

    /// After a training forward on `rows` rows (n positives then n
    /// negatives): peer normalisation's step on the positives' activity.
    fn peer_step(&mut self, be: &B, rows: usize) -> Result<()> {
        let Some(peer) = &mut self.peer else { return Ok(()) };
        if rows < 2 || !rows.is_multiple_of(2) {
            return Err(Error::Batch(format!("peer normalisation needs n positive then n negative rows, got {rows}")));
        }
        be.peer_grad(&self.work.h, (self.out_dim, rows / 2), peer.norm, &mut peer.means, &mut peer.p)?;
        Ok(())
    }

    /// Forward `rows` rows of `x` without learning; `h` and `G` stay in the
    /// layer (see [`FfLayer::activity`], [`FfLayer::goodness`]).
    pub fn forward(&mut self, be: &B, x: &B::Buf, rows: usize, norm: Norm, eps: f32) -> Result<()> {
        self.forward_from(be, Input::Raw(x), rows, norm, eps)
    }

    fn forward_from(&mut self, be: &B, x: Input<'_, B>, rows: usize, norm: Norm, eps: f32) -> Result<()> {
        let w = &mut self.work;
        let x_len = match &x {
            Input::Raw(x) => x.len(),
            Input::Below(a) => a.h.len(),
        };
        if x_len != rows * self.in_dim {
            return Err(Error::Batch(format!(
                "a {}→{} layer's input of {rows} rows needs {} values, got {x_len}",
                self.in_dim,
                self.out_dim,
                rows * self.in_dim
            )));
        }
        match x {
            Input::Raw(x) => be.normalize_rows(x, &mut w.xn, self.in_dim, norm, eps)?,
            Input::Below(a) => be.normalize_rows_given(a.h, a.sumsq, &mut w.xn, self.in_dim, norm, eps)?,
        }
        w.steps.0 = be.linear_forward_packed(&w.xn, &self.w, &self.b, &mut w.h, &mut w.g)?;
        Ok(())
    }

    /// The local loss and its gradients `dW`, `db` on `x` = [n positives;
    /// n negatives], without updating (see [`FfLayer::grads`]); the loss
    /// and mean goodness go to `out` (three values).
    pub fn compute_grads(
        &mut self,
        be: &B,
        x: &B::Buf,
        rows: usize,
        obj: Objective,
        out: StatSlot<'_, B::Buf>,
    ) -> Result<()> {
        self.forward_loss(be, x, rows, obj, out)?;
        let w = &mut self.work;
        let peer = peer_term(&self.peer, rows);
        // Rows with dL/dG = 0 are left out, as in the fused step.
        be.linear_grads((&w.xn, &w.h, &w.dldg), peer, (self.in_dim, self.out_dim), (&mut w.dw, &mut w.db), &mut w.lin)?;
        Ok(())
    }

    /// The goodness loss of the last forward and dL/dG (kept in the layer):
    /// the loss at `out.at`, the mean G⁺ and G⁻ after it.
    fn loss_of_last_forward(&mut self, be: &B, obj: Objective, out: StatSlot<'_, B::Buf>) -> Result<()> {
        let w = &mut self.work;
        let StatSlot { buf, at } = out;
        be.ff_loss(
            obj.loss,
            obj.form,
            self.out_dim,
            &w.g,
            LossOut::new(&mut w.dldg, &mut w.scratch, StatSlot::new(buf, at)),
        )?;
        be.goodness_means(&w.g, MeanOf::L32, StatSlot::new(buf, at + 1))?;
        Ok(())
    }

    /// `(dW, db)` of the last [`FfLayer::compute_grads`] or
    /// [`FfLayer::backward`] (dW row-major).
    pub fn grads(&self) -> (&B::Buf, &B::Buf) {
        (&self.work.dw, &self.work.db)
    }

    /// One optimiser step with the gradients of the last `compute_grads`.
    pub fn apply_grads(&mut self, be: &B) -> Result<()> {
        let (step, a, b) = self.opt_w.next_step();
        be.packed_step(&step, Param { value: &mut self.w, a, b }, &self.work.dw, &mut self.work.lin)?;
        self.opt_b.step(be, &mut self.b, &self.work.db)
    }

    /// One local training step, fused: the forward, the loss, then
    /// [`LinearOps::linear_backward_update`](ffwd_kernels::LinearOps::linear_backward_update) (dz, dW, db and the weight
    /// update in one pass; bit-identical to [`FfLayer::compute_grads`]
    /// followed by [`FfLayer::apply_grads`]).
    pub fn train_step(
        &mut self,
        be: &B,
        x: &B::Buf,
        rows: usize,
        obj: Objective,
        out: StatSlot<'_, B::Buf>,
    ) -> Result<()> {
        self.forward_loss(be, x, rows, obj, out)?;
        self.update_alongside(be, rows, |_| ())
    }

    /// The first half of [`FfLayer::train_step`]: the forward on `x` and
    /// the local loss, without learning yet. The layer keeps its activity,
    /// goodness and dL/dG for [`FfLayer::update_alongside`].
    pub fn forward_loss(
        &mut self,
        be: &B,
        x: &B::Buf,
        rows: usize,
        obj: Objective,
        out: StatSlot<'_, B::Buf>,
    ) -> Result<()> {
        self.forward(be, x, rows, obj.norm, obj.eps)?;
        self.loss_of_last_forward(be, obj, out)?;
        self.peer_step(be, rows)
    }

    /// [`FfLayer::forward_loss`] on the activity of the layer below, as
    /// [`FfLayer::update_alongside`] hands it over: the normalisation takes
    /// the rows' sums of squares from it (the layer below's goodness)
    /// instead of summing them again. The same bits as `forward_loss` on
    /// `below.h`.
    pub fn forward_loss_above(
        &mut self,
        be: &B,
        below: Activity<'_, B>,
        rows: usize,
        obj: Objective,
        out: StatSlot<'_, B::Buf>,
    ) -> Result<()> {
        self.forward_from(be, Input::Below(below), rows, obj.norm, obj.eps)?;
        self.loss_of_last_forward(be, obj, out)?;
        self.peer_step(be, rows)
    }

    /// The second half of [`FfLayer::train_step`]: the fused backward and
    /// weight update of the last [`FfLayer::forward_loss`] (on `rows`
    /// rows), run alongside `beside` ([`Backend::alongside`]), which is
    /// handed this layer's activity `h` of that forward (the update never
    /// writes it).
    ///
    /// This is how a stack trains: the layer above only needs `h`, so its
    /// forward runs beside this layer's update. On the CPU the two GEMMs'
    /// tasks share the thread pool; a thread that finishes its share of one
    /// takes tasks of the other instead of waiting (measured on the 4×2000
    /// network: within about ±2 % of layer after layer on a quiet host, up
    /// to 9 % faster on a busy one). Every GEMM splits its work into the
    /// same tasks whichever thread runs them, so the bits are those of the
    /// layers run one after the other. Without a forward on `rows` rows
    /// first, it returns an error and changes nothing.
    pub fn update_alongside<R: Send>(
        &mut self,
        be: &B,
        rows: usize,
        beside: impl FnOnce(Activity<'_, B>) -> R + Send,
    ) -> Result<R> {
        let FfLayer { in_dim, out_dim, w, b, opt_w, opt_b, work, peer } = self;
        let Work { xn, h, g, dldg, lin, steps, .. } = work;
        if xn.len() != rows * *in_dim || h.len() != rows * *out_dim || dldg.len() != rows {
            return Err(Error::Batch(format!(
                "update of a {in_dim}→{out_dim} layer on {rows} rows, but its last forward ran on {} rows",
                dldg.len()
            )));
        }
        let (h, g): (&B::Buf, &B::Buf) = (h, g);
        let update = || -> Result<()> {
            let (step, wa, wb) = opt_w.next_step();
            let (_, ba, bb) = opt_b.next_step();
            let u = LinearUpdate {
                xn,
                h,
                dldg,
                w: Param { value: w, a: wa, b: wb },
                bias: Param { value: b, a: ba, b: bb },
                step: &step,
                peer: peer_term(peer, rows),
            };
            steps.1 = be.linear_backward_update(u, lin)?;
            Ok(())
        };
        let (done, r) = be.alongside(update, || beside(Activity { h, sumsq: g }));
        done?;
        Ok(r)
    }

    /// Backprop through the layer (the BP baselines): from `dh` = dL/dh of
    /// the last forward on `x`, the gradients dW and db (kept for
    /// [`FfLayer::apply_grads`]) and, with `dx`, dL/dx through the ReLU,
    /// the linear map (dz·Wᵀ, one GEMM in the canonical order) and the
    /// normalisation (RMS: the per-row length-norm backward; none).
    pub fn backward(
        &mut self,
        be: &B,
        x: &B::Buf,
        rows: usize,
        (norm, eps): (Norm, f32),
        dh: &B::Buf,
        dx: Option<&mut B::Buf>,
    ) -> Result<()> {
        let (d_in, d_out) = (self.in_dim, self.out_dim);
        let w = &mut self.work;
        if dh.len() != rows * d_out || x.len() != rows * d_in {
            return Err(Error::Batch(format!(
                "backward of a {d_in}→{d_out} layer on {rows} rows got dh of {} and x of {} values",
                dh.len(),
                x.len()
            )));
        }
        be.relu_backward(&w.h, dh, &mut w.dz)?;
        crate::linear::param_grads(be, &w.xn, &w.dz, (rows, d_in, d_out), &mut w.dw, &mut w.db)?;
        let Some(dx) = dx else { return Ok(()) };
        be.unpack_into(&self.w, &mut w.w_rows)?;
        crate::linear::input_grad(be, &w.dz, &w.w_rows, (rows, d_in, d_out), &mut w.dxn)?;
        match norm {
            Norm::None => be.copy(&w.dxn, dx)?,
            Norm::Rms => {
                // The row's 1/(√(Σx²/D) + ε), as the forward computed it.
                let g = Cnhw::new(1, rows, 1, d_in);
                be.sample_norm_inv(x, g, eps, &mut w.inv)?;
                be.sample_norm_backward(x, g, &w.inv, &w.dxn, dx, &mut w.norm_scratch)?;
            }
            Norm::L2 => {
                return Err(Error::Config("backprop through the L2 norm is not implemented; use rms or none".into()))
            }
        }
        Ok(())
    }

    /// How many rows of the last forward the update keeps in dW and db:
    /// those whose dL/dG is not zero (reads dL/dG back from the backend).
    pub fn rows_kept(&self, be: &B) -> Result<usize> {
        Ok(be.with_host(&self.work.dldg, |d| d.iter().filter(|&&g| g != 0.0).count())?)
    }

    /// How much of the last forward's product and of the last fused
    /// update's dW product ran: the AVX2 backend leaves out the k steps at
    /// which six rows of A are all zero (see [`StepsRun`]).
    pub fn steps_run(&self) -> (StepsRun, StepsRun) {
        self.work.steps
    }

    /// `h` of the last forward (rows × out_dim).
    pub fn activity(&self) -> &B::Buf {
        &self.work.h
    }
    /// Sum-form goodness of the last forward.
    pub fn goodness(&self) -> &B::Buf {
        &self.work.g
    }
    /// Optimiser steps taken by the weights.
    pub fn steps(&self) -> u64 {
        self.opt_w.steps()
    }
}

pub use crate::predict::Predictions;

/// Value of every label input in the neutral (unlabelled) input.
pub const NEUTRAL_LABEL: f32 = 0.1;

/// How the label enters an input row: the network's label layout.
#[derive(Clone, Copy, Debug)]
struct Embedding {
    mode: LabelMode,
    classes: usize,
    image_dim: usize,
}

impl Embedding {
    /// Width of an input row.
    fn width(&self) -> usize {
        match self.mode {
            LabelMode::Overwrite => self.image_dim,
            LabelMode::Concat => self.image_dim + self.classes,
        }
    }

    /// Write `image` with `label` (None = neutral) into one input row.
    fn row(&self, image: &[f32], label: Option<u8>, row: &mut [f32]) {
        let c = self.classes;
        let lab = match self.mode {
            LabelMode::Overwrite => {
                row.copy_from_slice(image);
                &mut row[..c]
            }
            LabelMode::Concat => {
                let (l, i) = row.split_at_mut(c);
                i.copy_from_slice(image);
                l
            }
        };
        match label {
            Some(y) => {
                lab.fill(0.0);
                lab[y as usize] = 1.0;
            }
            None => lab.fill(NEUTRAL_LABEL),
        }
    }
}

/// A supervised FF network: the label goes into the input, every layer
/// learns locally.
#[derive(Clone, Debug)]
pub struct FfNet<B: Backend> {
    be: B,
    pub config: FfConfig,
    /// Values per image (before the label is added).
    pub image_dim: usize,
    pub classes: usize,
    pub layers: Vec<FfLayer<B>>,
    pub readout: Option<Readout<B>>,
    input: B::Buf,
    feats: B::Buf,
    tmp: B::Buf,
    /// Backprop of the goodness losses: dL/dh of the current layer and
    /// dL/dx it passes down.
    dh: B::Buf,
    dx: B::Buf,
    log: StatLog<B::Buf>,
}

impl<B: Backend> FfNet<B> {
    pub fn new(be: B, config: FfConfig, image_dim: usize, classes: usize, seed: u64) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        if config.training == MlpTraining::CrossEntropy {
            return Err(Error::Config(
                "model.training = \"cross-entropy\" is the backprop MLP (backprop::BpMlp), not an FF net".into(),
            ));
        }
        if config.label == LabelMode::Overwrite && image_dim < classes {
            return Err(Error::Config(format!(
                "label = \"overwrite\" needs at least {classes} pixels, the image has {image_dim}"
            )));
        }
        let emb = Embedding { mode: config.label, classes, image_dim };
        let mut layers = Vec::new();
        let mut d = emb.width();
        for (i, &s) in config.sizes.iter().enumerate() {
            let mut layer = FfLayer::new(&be, d, s, &config.optim, seed, i as u32)?;
            if let Some(p) = &config.peer {
                layer.enable_peer(&be, p)?;
            }
            layers.push(layer);
            d = s;
        }
        let readout = if config.has_readout() {
            let f: usize = config.sizes[config.skip()..].iter().sum();
            Some(Readout::new(&be, f, classes, &config.readout_optim)?)
        } else {
            None
        };
        let nl = layers.len();
        Ok(Self {
            be,
            config,
            image_dim,
            classes,
            layers,
            readout,
            input: B::Buf::default(),
            feats: B::Buf::default(),
            tmp: B::Buf::default(),
            dh: B::Buf::default(),
            dx: B::Buf::default(),
            log: StatLog::new(nl, None),
        })
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.be
    }

    fn embedding(&self) -> Embedding {
        Embedding { mode: self.config.label, classes: self.classes, image_dim: self.image_dim }
    }

    /// Width of the first layer's input (image plus label).
    pub fn input_dim(&self) -> usize {
        self.embedding().width()
    }

    fn norm(&self) -> (Norm, f32) {
        (self.config.norm.into(), self.config.norm_eps)
    }

    pub(crate) fn loss(&self, layer: usize) -> (FfLoss, GoodnessForm) {
        loss_of(&self.config, self.layers[layer].out_dim)
    }

    /// Fill the input rows on the host: `rows` rows, row r written by `f`.
    fn embed_rows(&mut self, rows: usize, f: impl Fn(usize, &mut [f32])) -> Result<()> {
        let d0 = self.input_dim();
        self.be.upload_with(&mut self.input, rows * d0, |buf| {
            for (r, row) in buf.chunks_exact_mut(d0).enumerate() {
                f(r, row);
            }
        })?;
        Ok(())
    }

    /// Run the input rows through layers `0..upto` without learning.
    fn forward_input(&mut self, rows: usize, upto: usize) -> Result<()> {
        let (norm, eps) = self.norm();
        for l in 0..upto {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input } else { prev[l - 1].activity() };
            rest[0].forward(&self.be, x, rows, norm, eps)?;
        }
        Ok(())
    }

    /// Length-normalised activities of layers `from..` after the last
    /// forward, concatenated per row into `out`.
    fn normalized_activities(&mut self, rows: usize, from: usize, out: &mut B::Buf) -> Result<()> {
        let (norm, eps) = self.norm();
        normalized_activities(&self.be, &self.layers[from..], rows, (norm, eps), &mut self.tmp, out)
    }

    /// Write `n` images, all with `label` (None: neutral), into the input rows.
    fn embed_all(&mut self, images: &[f32], n: usize, label: Option<u8>) -> Result<()> {
        let (e, di) = (self.embedding(), self.image_dim);
        self.embed_rows(n, |i, row| e.row(&images[i * di..(i + 1) * di], label, row))
    }

    /// Write `[x; x]` with labels `[y⁺; y⁻]` into the input rows; returns
    /// the row count 2n.
    fn embed_batch(&mut self, images: &[f32], labels: &[u8], neg_labels: &[u8]) -> Result<usize> {
        let n = labels.len();
        check_batch(images.len(), self.image_dim, labels, neg_labels, self.classes)?;
        let (e, di) = (self.embedding(), self.image_dim);
        self.embed_rows(2 * n, |r, row| {
            let (i, y) = if r < n { (r, labels[r]) } else { (r - n, neg_labels[r - n]) };
            e.row(&images[i * di..(i + 1) * di], Some(y), row)
        })?;
        Ok(2 * n)
    }

    /// The goodness-loss ablation's gradients on one batch without
    /// updating (see [`FfLayer::grads`]): the sum of every layer's goodness
    /// loss, backpropagated through the whole stack. Returns the batch's
    /// statistics if the log was read (see [`FfNet::train_batch`]).
    pub fn backprop_grads(&mut self, images: &[f32], labels: &[u8], neg_labels: &[u8]) -> Result<Vec<BatchStats>> {
        let rows = self.embed_batch(images, labels, neg_labels)?;
        let row = self.log.begin(&self.be)?;
        let r = self.backprop_goodness(rows, row);
        self.log.finish(&self.be, r)
    }

    /// One training batch. `images` is n × image_dim; `neg_labels[i]` must
    /// differ from `labels[i]`. Layers in `train_layers` learn; layers
    /// before it only forward (layer-by-layer schedule); layers after it
    /// are idle.
    ///
    /// Returns the statistics of the batches read back from the backend
    /// during this call, in order: this batch's on the CPU; on a device
    /// every [`Backend::stats_every`] batches all those pending (the rest
    /// with [`FfNet::flush_stats`]).
    pub fn train_batch(
        &mut self,
        images: &[f32],
        labels: &[u8],
        neg_labels: &[u8],
        train_layers: std::ops::Range<usize>,
    ) -> Result<Vec<BatchStats>> {
        let n = labels.len();
        let rows = self.embed_batch(images, labels, neg_labels)?;
        let row = self.log.begin(&self.be)?;
        let r = self.train_rows(images, labels, n, rows, train_layers, row);
        self.log.finish(&self.be, r)
    }

    fn train_rows(
        &mut self,
        images: &[f32],
        labels: &[u8],
        n: usize,
        rows: usize,
        train_layers: std::ops::Range<usize>,
        row: usize,
    ) -> Result<()> {
        let end = train_layers.end.min(self.layers.len());
        if self.config.training == MlpTraining::Local {
            self.train_local(rows, train_layers.start.min(end)..end, row)?;
        } else {
            self.backprop_goodness(rows, row)?;
            for l in &mut self.layers {
                l.apply_grads(&self.be)?;
            }
        }
        if self.readout.is_some() {
            self.embed_all(images, n, None)?;
            let all = self.layers.len();
            self.forward_input(n, all)?;
            let mut feats = std::mem::take(&mut self.feats);
            let r = self.normalized_activities(n, self.config.skip(), &mut feats).and_then(|()| {
                let nl = self.layers.len();
                let slot = self.log.slot(row, nl, 0, Entry::Loss);
                self.readout.as_mut().expect("checked above").train_step(&self.be, &feats, labels, slot)
            });
            self.feats = feats;
            r?;
        }
        Ok(())
    }

    /// Read back the statistics of every batch still pending on the
    /// backend (a device keeps them for [`Backend::stats_every`] batches).
    pub fn flush_stats(&mut self) -> Result<Vec<BatchStats>> {
        self.log.take(&self.be)
    }

    /// Layer-local training of `train`, after a forward of the layers
    /// below it: a pipeline in which each layer's update runs beside the
    /// forward of the layer above (see [`FfLayer::update_alongside`]). The
    /// bits are those of each layer's [`FfLayer::train_step`] in turn.
    fn train_local(&mut self, rows: usize, train: std::ops::Range<usize>, row: usize) -> Result<()> {
        let (norm, eps) = self.norm();
        for l in 0..train.start {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input } else { prev[l - 1].activity() };
            rest[0].forward(&self.be, x, rows, norm, eps)?;
        }
        for l in train.clone() {
            self.log.mark(l, Entry::Goodness);
        }
        let config = &self.config;
        let (prev, rest) = self.layers.split_at_mut(train.start);
        let x = if train.start == 0 { &self.input } else { prev[train.start - 1].activity() };
        let objective = |ly: &FfLayer<B>| {
            let (loss, form) = loss_of(config, ly.out_dim);
            Objective { norm, eps, loss, form }
        };
        let first = self.log.at(row, train.start, 0);
        train_stack(&self.be, &mut rest[..train.len()], x, rows, objective, (self.log.buf_mut(), first))
    }

    /// The goodness-loss ablation: forward every layer on the current
    /// input, then backprop the sum of all layers' losses through the whole
    /// stack (each layer's dL/dh = its own local term + what the layer
    /// above sends down), leaving dW and db in every layer.
    fn backprop_goodness(&mut self, rows: usize, row: usize) -> Result<()> {
        let nl = self.layers.len();
        let (norm, eps) = self.norm();
        self.forward_input(rows, nl)?;
        for l in 0..nl {
            let (loss, form) = self.loss(l);
            let slot = self.log.slot(row, l, 0, Entry::Goodness);
            self.layers[l].loss_of_last_forward(&self.be, Objective { norm, eps, loss, form }, slot)?;
        }
        let (mut dh, mut dx) = (std::mem::take(&mut self.dh), std::mem::take(&mut self.dx));
        let be = &self.be;
        for l in (0..nl).rev() {
            let d = self.layers[l].out_dim;
            let ly = &self.layers[l];
            be.local_grad(ly.activity(), d, &ly.work.dldg, &mut self.tmp)?;
            if l + 1 < nl {
                be.add_assign(&mut dh, &self.tmp)?;
            } else {
                be.copy(&self.tmp, &mut dh)?;
            }
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input } else { prev[l - 1].activity() };
            rest[0].backward(be, x, rows, (norm, eps), &dh, (l > 0).then_some(&mut dx))?;
            std::mem::swap(&mut dh, &mut dx);
        }
        self.dh = dh;
        self.dx = dx;
        Ok(())
    }

    /// Goodness `g` of layer `l` in the configured form (G or G/D).
    fn in_form(&self, l: usize, g: f32) -> f32 {
        match self.config.goodness {
            GoodnessKind::Sum => g,
            GoodnessKind::Mean => g / self.layers[l].out_dim as f32,
        }
    }

    /// Predictions of `m` images from the goodness `good[l][row]` of the
    /// candidate rows (`i·classes + y`: image i with label y): per layer,
    /// and the total of layers `skip_layers..` (see [`layer_scores`]); the
    /// first maximum wins.
    fn score_candidates(&self, m: usize, good: &[Vec<f32>], p: &mut Predictions) {
        let c = self.classes;
        let mut scores = vec![0.0f32; c];
        let mut total = vec![0.0f32; c];
        for i in 0..m {
            for (l, out) in p.per_layer.iter_mut().enumerate() {
                for (y, s) in scores.iter_mut().enumerate() {
                    *s = self.in_form(l, good[l][i * c + y]);
                }
                out.push(argmax(&scores) as u8);
            }
            total.fill(0.0);
            self.add_layers(i, good, self.config.combine, &mut scores, &mut total);
            p.goodness.push(argmax(&total) as u8);
        }
    }

    /// Prediction C ([`PredictKind::Ensemble`]) of `m` images: per image
    /// the standardised scores of layers `skip_layers..` in order, then
    /// the readout's standardised logits, added from +0.0; the first
    /// maximum wins.
    fn score_ensemble(&self, m: usize, good: &[Vec<f32>], logits: &[f32], out: &mut Vec<u8>) {
        let c = self.classes;
        let mut scores = vec![0.0f32; c];
        let mut total = vec![0.0f32; c];
        for i in 0..m {
            total.fill(0.0);
            self.add_layers(i, good, Combine::Standardized, &mut scores, &mut total);
            layer_scores(Combine::Standardized, &logits[i * c..(i + 1) * c], &mut total);
            out.push(argmax(&total) as u8);
        }
    }

    /// Add image `i`'s scores of the candidate labels in layers
    /// `skip_layers..`, in layer order, to `total` as `combine` says
    /// (`good[l][i·classes + y]`: layer l's goodness with label y;
    /// `scores`: classes values of scratch).
    fn add_layers(&self, i: usize, good: &[Vec<f32>], combine: Combine, scores: &mut [f32], total: &mut [f32]) {
        let c = self.classes;
        for (l, g) in good.iter().enumerate().skip(self.config.skip()) {
            for (y, s) in scores.iter_mut().enumerate() {
                *s = self.in_form(l, g[i * c + y]);
            }
            layer_scores(combine, scores, total);
        }
    }

    /// The readout's logits of `m` images (the neutral-label pass),
    /// appended to `out`.
    fn readout_chunk(&mut self, images: &[f32], m: usize, out: &mut Vec<f32>) -> Result<()> {
        self.embed_all(images, m, None)?;
        self.forward_input(m, self.layers.len())?;
        let mut feats = std::mem::take(&mut self.feats);
        let r =
            self.normalized_activities(m, self.config.skip(), &mut feats).and_then(|()| match self.readout.as_mut() {
                Some(r) => r.logits_host(&self.be, &feats, m, out),
                None => Err(Error::Config("the readout's logits of a network without a readout".into())),
            });
        self.feats = feats;
        r
    }

    /// The readout's logits (`n` × classes, host) on the neutral-label
    /// pass, in chunks of `chunk` images: what hard negatives sample from.
    pub fn readout_logits(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Vec<f32>> {
        check_images(images.len(), n, self.image_dim)?;
        if self.readout.is_none() {
            return Err(Error::Config(
                "train.negatives = \"hard\" samples from the readout: set model.readout = true".into(),
            ));
        }
        let di = self.image_dim;
        let mut out = Vec::with_capacity(n * self.classes);
        for start in (0..n).step_by(chunk.max(1)) {
            let m = chunk.max(1).min(n - start);
            self.readout_chunk(&images[start * di..(start + m) * di], m, &mut out)?;
        }
        Ok(out)
    }

    /// The sum-form goodness of every layer for `n` images, each with its
    /// label in `labels` (None: the neutral label): `n` values per layer.
    pub fn goodness_of(&mut self, images: &[f32], labels: &[Option<u8>]) -> Result<Vec<Vec<f32>>> {
        let (n, di, nl) = (labels.len(), self.image_dim, self.layers.len());
        check_images(images.len(), n, di)?;
        if let Some(&y) = labels.iter().flatten().find(|&&y| y as usize >= self.classes) {
            return Err(Error::Batch(format!("label {y} is not below the {} classes", self.classes)));
        }
        let e = self.embedding();
        self.embed_rows(n, |i, row| e.row(&images[i * di..(i + 1) * di], labels[i], row))?;
        self.forward_input(n, nl)?;
        self.layers.iter().map(|l| Ok(self.be.download(l.goodness())?)).collect()
    }

    /// Predict `n` images (n × image_dim), in chunks of `chunk` images.
    ///
    /// Method A: each image runs once per label; per-layer scores are the
    /// goodness in the configured form; the total adds layers
    /// `skip_layers..` in order from +0.0; the first maximum wins.
    pub fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let (di, c) = (self.image_dim, self.classes);
        let nl = self.layers.len();
        check_images(images.len(), n, di)?;
        let mut p = Predictions { per_layer: vec![Vec::with_capacity(n); nl], ..Default::default() };
        let mut readout_pred = self.readout.as_ref().map(|_| Vec::with_capacity(n));
        let (mut logits, mut ensemble) = (Vec::new(), Vec::new());
        let chunk = chunk.max(1);
        let e = self.embedding();
        for start in (0..n).step_by(chunk) {
            let m = chunk.min(n - start);
            self.embed_rows(m * c, |r, row| {
                let i = start + r / c;
                e.row(&images[i * di..(i + 1) * di], Some((r % c) as u8), row)
            })?;
            self.forward_input(m * c, nl)?;
            let good = self
                .layers
                .iter()
                .map(|l| self.be.download(l.goodness()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.score_candidates(m, &good, &mut p);
            if let Some(rp) = readout_pred.as_mut() {
                logits.clear();
                self.readout_chunk(&images[start * di..(start + m) * di], m, &mut logits)?;
                rp.extend(logits.chunks(c).map(|l| argmax(l) as u8));
                if self.config.predict == PredictKind::Ensemble {
                    self.score_ensemble(m, &good, &logits, &mut ensemble);
                }
            }
        }
        p.overall = match (&self.config.predict, &readout_pred) {
            (PredictKind::Readout, Some(r)) => r.clone(),
            (PredictKind::Ensemble, Some(_)) => ensemble,
            _ => p.goodness.clone(),
        };
        p.readout = readout_pred;
        Ok(p)
    }

    /// Every parameter as a named tensor (checkpoint order).
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = layer_tensors(&self.be, &self.layers)?;
        if let Some(r) = &self.readout {
            out.extend(r.tensors(&self.be, "readout")?);
        }
        Ok(out)
    }

    /// Replace parameters from named tensors (from [`FfNet::named_tensors`]),
    /// checking every name and shape.
    pub fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
        load_layers(&self.be, &mut self.layers, get)?;
        if let Some(r) = &mut self.readout {
            r.load(&self.be, "readout", get)?;
        }
        Ok(())
    }

    /// Save or load the optimiser states of the layers and the readout.
    pub fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
        walk_layers(&self.be, &mut self.layers, io)?;
        if let Some(r) = &mut self.readout {
            r.walk_state(&self.be, io, "readout")?;
        }
        Ok(())
    }
}

/// The loss and goodness form `config` gives a layer `out_dim` wide.
fn loss_of(c: &FfConfig, out_dim: usize) -> (FfLoss, GoodnessForm) {
    let form = match c.goodness {
        GoodnessKind::Sum => GoodnessForm::Sum,
        GoodnessKind::Mean => GoodnessForm::Mean,
    };
    let loss = match c.loss {
        LossKind::Threshold => {
            FfLoss::Threshold { theta: c.theta.unwrap_or(if form == GoodnessForm::Sum { out_dim as f32 } else { 1.0 }) }
        }
        LossKind::Symba => FfLoss::Symba { alpha: c.alpha },
    };
    (loss, form)
}

/// Add one layer's scores of the candidate labels (`g[y]`, goodness in
/// the configured form) to `total`, as `combine` says: the goodness itself
/// (f32 adds, so that the total over layers runs from +0.0 in layer order),
/// or `(g[y] − mean) / sd` over the candidates, worked out in f64 and
/// added as f32 (nothing where the candidates all score alike). Host
/// arithmetic in a fixed order: the same on every backend.
pub(crate) fn layer_scores(combine: Combine, g: &[f32], total: &mut [f32]) {
    match combine {
        Combine::Sum => total.iter_mut().zip(g).for_each(|(t, &v)| *t = *t + v),
        Combine::Standardized => {
            let n = g.len() as f64;
            let mean = g.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = g.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
            let sd = var.sqrt();
            if sd > 0.0 && sd.is_finite() {
                total.iter_mut().zip(g).for_each(|(t, &v)| *t = *t + ((f64::from(v) - mean) / sd) as f32);
            }
        }
    }
}

/// One layer-local training step of a stack of layers on `x` (`rows`
/// rows), as a pipeline: layer 0's forward, then each layer's update
/// beside the forward of the layer above (see
/// [`FfLayer::update_alongside`]). `objective` gives each layer's
/// objective; layer l's loss and mean goodness go to `stats` at
/// `first + SLOTS·l` (three values). The bits are those of each layer's
/// [`FfLayer::train_step`] in turn.
pub fn train_stack<B: Backend>(
    be: &B,
    layers: &mut [FfLayer<B>],
    x: &B::Buf,
    rows: usize,
    objective: impl Fn(&FfLayer<B>) -> Objective + Sync,
    (stats, first): (&mut B::Buf, usize),
) -> Result<()> {
    let Some(head) = layers.first_mut() else { return Ok(()) };
    let obj = objective(head);
    head.forward_loss(be, x, rows, obj, StatSlot::new(stats, first))?;
    for l in 0..layers.len() {
        let (cur, rest) = layers[l..].split_first_mut().expect("l < layers.len()");
        match rest.first_mut() {
            Some(next) => {
                let obj = objective(next);
                let slot = StatSlot::new(&mut *stats, first + SLOTS * (l + 1));
                cur.update_alongside(be, rows, |below| next.forward_loss_above(be, below, rows, obj, slot))??;
            }
            None => cur.update_alongside(be, rows, |_| ())?,
        }
    }
    Ok(())
}

/// Length-normalised activities of `layers` after their last forward,
/// concatenated per row into `out`.
pub(crate) fn normalized_activities<B: Backend>(
    be: &B,
    layers: &[FfLayer<B>],
    rows: usize,
    (norm, eps): (Norm, f32),
    tmp: &mut B::Buf,
    out: &mut B::Buf,
) -> Result<()> {
    let f = start_groups(be, layers, rows, out)?;
    let mut off = 0;
    for l in layers {
        let d = l.out_dim;
        be.normalize_rows(l.activity(), tmp, d, norm, eps)?;
        be.put_cols(tmp, d, out, f, off)?;
        off += d;
    }
    Ok(())
}

/// Every layer's last activity (`rows` rows), concatenated per row.
pub(crate) fn raw_activities<B: Backend>(be: &B, layers: &[FfLayer<B>], rows: usize, out: &mut B::Buf) -> Result<()> {
    let f = start_groups(be, layers, rows, out)?;
    let mut off = 0;
    for l in layers {
        be.put_cols(l.activity(), l.out_dim, out, f, off)?;
        off += l.out_dim;
    }
    Ok(())
}

/// Size `out` for `rows` rows of every layer's activity; returns the row width.
fn start_groups<B: Backend>(be: &B, layers: &[FfLayer<B>], rows: usize, out: &mut B::Buf) -> Result<usize> {
    let f: usize = layers.iter().map(|l| l.out_dim).sum();
    be.resize(out, rows * f)?;
    Ok(f)
}

/// `layers.{i}.weight` (in × out) and `layers.{i}.bias` of every layer.
pub(crate) fn layer_tensors<B: Backend>(be: &B, layers: &[FfLayer<B>]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let w = Tensor::from_vec(&[l.in_dim, l.out_dim], be.unpack(&l.w)?)?;
        out.push((format!("layers.{i}.weight"), w));
        out.push((format!("layers.{i}.bias"), to_tensor(be, &[l.out_dim], &l.b)?));
    }
    Ok(out)
}

/// Save or load the optimiser state of every layer (`layers.{i}.weight.*`,
/// `layers.{i}.bias.*`; see [`crate::state`]).
pub(crate) fn walk_layers<B: Backend>(be: &B, layers: &mut [FfLayer<B>], io: &mut StateIo<'_>) -> Result<()> {
    for (i, l) in layers.iter_mut().enumerate() {
        l.opt_w.walk_state(be, io, &format!("layers.{i}.weight"), Some(&l.w))?;
        l.opt_b.walk_state(be, io, &format!("layers.{i}.bias"), None)?;
        if let Some(p) = &mut l.peer {
            io.buf(be, &format!("layers.{i}.peer_means"), &mut p.means)?;
        }
    }
    Ok(())
}

/// Load what [`layer_tensors`] names.
pub(crate) fn load_layers<B: Backend>(be: &B, layers: &mut [FfLayer<B>], get: &mut TensorSource<'_>) -> Result<()> {
    for (i, l) in layers.iter_mut().enumerate() {
        let w = fetch(get, &format!("layers.{i}.weight"), &[l.in_dim, l.out_dim])?;
        l.w = be.pack(&w, l.in_dim, l.out_dim)?;
        crate::tensors::fetch_into(be, get, &format!("layers.{i}.bias"), &[l.out_dim], &mut l.b)?;
    }
    Ok(())
}

/// The probe sees every layer's length-normalised activity (standard
/// view) or its ReLU activity (raw view), with the label inputs neutral
/// (0.1 each) or set to the view's label.
impl<B: Backend> crate::probe::Features for FfNet<B> {
    fn feature_dims(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.out_dim).collect()
    }
    fn features(
        &mut self,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_images(images.len(), n, self.image_dim)?;
        if let Some(y) = view.label.filter(|&y| y as usize >= self.classes) {
            return Err(view.unsupported("FF net", &format!("has {} label inputs, not label {y}", self.classes)));
        }
        self.embed_all(images, n, view.label)?;
        let all = self.layers.len();
        self.forward_input(n, all)?;
        let mut feats = std::mem::take(&mut self.feats);
        let r = match view.form {
            crate::probe::FeatureForm::Standard => self.normalized_activities(n, 0, &mut feats),
            crate::probe::FeatureForm::Raw => raw_activities(&self.be, &self.layers, n, &mut feats),
        };
        out.clear();
        let r = r.and_then(|()| Ok(self.be.with_host(&feats, |v| out.extend_from_slice(v))?));
        self.feats = feats;
        r
    }
}

/// Negative labels for a batch: `(y + 1 + below(classes − 1)) mod classes`,
/// with the draw for sample `index` taken from word `index` of the Philox
/// stream `negative_labels(epoch)`. Never the true label; uniform over the
/// others.
pub fn negative_labels(seed: u64, epoch: u32, first_index: u64, labels: &[u8], classes: usize, out: &mut Vec<u8>) {
    let r = Philox::new(seed, stream::negative_labels(epoch));
    out.clear();
    let c = classes as u32;
    for (k, &y) in labels.iter().enumerate() {
        let off = 1 + r.below_at(first_index + k as u64, c - 1);
        out.push(((y as u32 + off) % c) as u8);
    }
}

/// Hard negative labels (Hinton's recipe): for each sample, a wrong label
/// drawn from the model's own belief — the softmax of its `scores` row
/// (classes values; the readout's logits) over every class but the true
/// one. The draw for sample `index` is word `index` of the Philox stream
/// `negative_labels(epoch)` as a uniform u: the first class whose running
/// sum of `exp(s_j − max)` (index order, f32, our own exp) exceeds u times
/// the total. Never the true label; a row without finite scores falls back
/// to [`negative_labels`]' uniform choice.
pub fn hard_negative_labels(
    (seed, epoch, first_index): (u64, u32, u64),
    labels: &[u8],
    scores: &[f32],
    classes: usize,
    out: &mut Vec<u8>,
) {
    let r = Philox::new(seed, stream::negative_labels(epoch));
    out.clear();
    let mut w = vec![0.0f32; classes];
    for (k, (&y, s)) in labels.iter().zip(scores.chunks(classes)).enumerate() {
        let (y, at) = (y as usize, first_index + k as u64);
        let others = || s.iter().enumerate().filter(|&(j, _)| j != y);
        let max = others().map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f32;
        for (j, &v) in s.iter().enumerate() {
            w[j] = if j == y { 0.0 } else { ffwd_kernels::numerics::exp(v - max) };
            total += w[j];
        }
        if !(total.is_finite() && total > 0.0 && max.is_finite()) {
            let off = 1 + r.below_at(at, classes as u32 - 1);
            out.push(((y as u32 + off) % classes as u32) as u8);
            continue;
        }
        let goal = r.uniform_at(at) * total;
        let mut run = 0.0f32;
        let mut pick = others().next_back().map_or(0, |(j, _)| j);
        for (j, &wj) in w.iter().enumerate() {
            run += wj;
            if j != y && wj > 0.0 && run > goal {
                pick = j;
                break;
            }
        }
        out.push(pick as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Scalars;
    use ffwd_kernels::CpuBackend;

    #[test]
    fn standardized_scores_give_every_layer_the_same_say_and_sum_adds_the_goodness() {
        // layer 1 prefers label 0 by a little on a large scale, layer 2
        // label 1 clearly on a small one
        let (l1, l2) = ([1000.0f32, 990.0, 0.0], [0.0f32, 1.0, 0.0]);
        let mut sum = vec![0.0f32; 3];
        layer_scores(Combine::Sum, &l1, &mut sum);
        layer_scores(Combine::Sum, &l2, &mut sum);
        assert_eq!(sum, vec![0.0 + 1000.0 + 0.0, 0.0 + 990.0 + 1.0, 0.0]);
        assert_eq!(argmax(&sum), 0);
        let mut std = vec![0.0f32; 3];
        layer_scores(Combine::Standardized, &l1, &mut std);
        layer_scores(Combine::Standardized, &l2, &mut std);
        assert_eq!(argmax(&std), 1, "{std:?}");
        // scale-free: a layer times 1000 scores the same
        let (mut a, mut b) = (vec![0.0f32; 3], vec![0.0f32; 3]);
        layer_scores(Combine::Standardized, &l2, &mut a);
        layer_scores(Combine::Standardized, &l2.map(|v| v * 1000.0), &mut b);
        for (x, y) in a.iter().zip(&b) {
            approx::assert_relative_eq!(*x, *y, max_relative = 1e-6);
        }
        approx::assert_relative_eq!(a[1], 2.0f32.sqrt(), max_relative = 1e-6);
        // a layer whose candidates all score alike adds nothing
        let mut c = vec![0.0f32; 3];
        layer_scores(Combine::Standardized, &[5.0, 5.0, 5.0], &mut c);
        assert_eq!(c, vec![0.0; 3]);
    }

    #[test]
    fn hard_negatives_are_never_the_true_label_and_follow_the_softmax_of_the_others() {
        let classes = 10;
        let mut out = Vec::new();
        // random scores, the true label often far ahead, ties, -inf and NaN rows
        let n = 5000;
        let mut scores = vec![0.0f32; n * classes];
        Philox::new(1, stream::noise(0)).fill_uniform(&mut scores, -30.0, 30.0);
        let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
        for i in 0..n {
            let row = &mut scores[i * classes..(i + 1) * classes];
            match i % 7 {
                0 => row[labels[i] as usize] = 1e30,
                1 => row.iter_mut().for_each(|v| *v = 2.0),
                2 => row.iter_mut().for_each(|v| *v = f32::NEG_INFINITY),
                3 => row[3] = f32::NAN,
                _ => {}
            }
        }
        hard_negative_labels((7, 0, 0), &labels, &scores, classes, &mut out);
        assert_eq!(out.len(), n);
        for (i, (&y, &neg)) in labels.iter().zip(&out).enumerate() {
            assert!(neg != y && (neg as usize) < classes, "sample {i}: label {y}, negative {neg}");
        }
        // scores (0, 0, ln 3) with true label 0: P(1) = 1/4, P(2) = 3/4
        let m = 20_000;
        let row = [0.0f32, 0.0, 3.0f32.ln()];
        let scores: Vec<f32> = (0..m).flat_map(|_| row).collect();
        hard_negative_labels((3, 1, 0), &vec![0u8; m], &scores, 3, &mut out);
        let twos = out.iter().filter(|&&v| v == 2).count() as f64 / m as f64;
        assert!(out.iter().all(|&v| v == 1 || v == 2));
        approx::assert_abs_diff_eq!(twos, 0.75, epsilon = 0.015);
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn negative_labels_are_never_the_true_label_and_cover_the_others_uniformly() {
        let labels: Vec<u8> = (0..90_000).map(|i| (i % 10) as u8).collect();
        let mut neg = Vec::new();
        negative_labels(3, 0, 0, &labels, 10, &mut neg);
        let mut counts = [[0usize; 10]; 10];
        for (&y, &n) in labels.iter().zip(&neg) {
            assert_ne!(y, n);
            counts[y as usize][n as usize] += 1;
        }
        // 9,000 draws per true label over 9 wrong labels: ~1,000 each
        for (y, row) in counts.iter().enumerate() {
            for (n, &c) in row.iter().enumerate() {
                if n != y {
                    assert!((850..1150).contains(&c), "label {y} → {n}: {c}");
                }
            }
        }
    }

    #[test]
    fn overwrite_embedding_writes_one_hot_or_neutral_into_the_first_pixels() {
        let e = Embedding { mode: LabelMode::Overwrite, classes: 10, image_dim: 16 };
        let img = vec![0.5f32; 16];
        let mut row = vec![0.0; 16];
        e.row(&img, Some(3), &mut row);
        assert_eq!(&row[..10], &[0., 0., 0., 1., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(&row[10..], &[0.5; 6]);
        e.row(&img, None, &mut row);
        assert_eq!(&row[..10], &[NEUTRAL_LABEL; 10]);
    }

    #[test]
    fn concat_embedding_keeps_every_pixel() {
        let cfg = FfConfig { sizes: vec![4, 4], label: LabelMode::Concat, ..FfConfig::default() };
        let net = FfNet::new(CpuBackend::best(), cfg, 4, 10, 0).unwrap();
        assert_eq!(net.input_dim(), 14);
        let mut row = vec![0.0; 14];
        net.embedding().row(&[0.25; 4], Some(9), &mut row);
        assert_eq!(row[9], 1.0);
        assert_eq!(&row[10..], &[0.25; 4]);
    }

    #[test]
    fn fused_train_step_equals_grads_then_update_bit_for_bit() {
        let be = CpuBackend::best();
        let sgd = OptimConfig { kind: crate::config::OptimKind::Sgd, ..OptimConfig::default() };
        let peer = PeerConfig { lambda: 0.3, ..PeerConfig::default() };
        for (optim, peer) in [(OptimConfig::default(), None), (sgd, None), (OptimConfig::default(), Some(peer))] {
            let mut a = FfLayer::new(&be, 37, 21, &optim, 5, 0).unwrap();
            if let Some(p) = &peer {
                a.enable_peer(&be, p).unwrap();
            }
            let mut b = a.clone();
            let mut x = vec![0.0f32; 300 * 37];
            Philox::new(9, stream::noise(0)).fill_uniform(&mut x, -1.0, 1.0);
            let obj = Objective {
                norm: Norm::Rms,
                eps: 1e-8,
                loss: FfLoss::Threshold { theta: 21.0 },
                form: GoodnessForm::Sum,
            };
            let mut s = Scalars::new(&be, 6).unwrap();
            for _ in 0..3 {
                a.train_step(&be, &x, 300, obj, s.slot(0)).unwrap();
                b.compute_grads(&be, &x, 300, obj, s.slot(3)).unwrap();
                b.apply_grads(&be).unwrap();
                let v = s.read(&be).unwrap();
                assert_eq!(bits(&v[..3]), bits(&v[3..]), "loss and mean goodness");
            }
            assert_eq!(bits(a.w.data()), bits(b.w.data()));
            assert_eq!(bits(&a.b), bits(&b.b));
            assert_eq!(a.peer_means().map(|m| bits(m)), b.peer_means().map(|m| bits(m)));
        }
    }

    #[test]
    fn an_update_without_a_matching_forward_is_an_error_and_changes_nothing() {
        let be = CpuBackend::best();
        let mut layer = FfLayer::new(&be, 12, 8, &OptimConfig::default(), 1, 0).unwrap();
        let before = layer.w.data().to_vec();
        let e = layer.update_alongside(&be, 4, |_| ()).unwrap_err().to_string();
        assert!(e.contains("12→8") && e.contains("last forward"), "{e}");
        let obj =
            Objective { norm: Norm::Rms, eps: 1e-8, loss: FfLoss::Threshold { theta: 8.0 }, form: GoodnessForm::Sum };
        let mut s = Scalars::new(&be, 3).unwrap();
        layer.forward_loss(&be, &vec![0.5; 4 * 12], 4, obj, s.slot(0)).unwrap();
        assert!(layer.update_alongside(&be, 6, |_| ()).is_err(), "rows differ from the forward's");
        assert_eq!(layer.w.data(), &before[..]);
        assert_eq!(layer.steps(), 0);
        layer.update_alongside(&be, 4, |_| ()).unwrap();
        assert_eq!(layer.steps(), 1);
    }

    #[test]
    fn pipelined_train_batch_equals_layer_after_layer_train_steps_bit_for_bit() {
        // train_batch runs each layer's update beside the next layer's
        // forward; the result must be the plain sequence of train_steps,
        // on one thread or two, and for a schedule that starts mid-stack.
        let be = CpuBackend::best();
        let (n, di) = (40, 30);
        let mut imgs = vec![0.0f32; n * di];
        Philox::new(3, stream::noise(0)).fill_uniform(&mut imgs, 0.0, 1.0);
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let neg: Vec<u8> = labels.iter().map(|&l| (l + 3) % 10).collect();
        let peer = Some(PeerConfig { lambda: 0.3, ..PeerConfig::default() });
        for (cfg, threads) in [1, 2, 3].into_iter().flat_map(|t| {
            [
                (FfConfig { sizes: vec![48, 64, 40, 24], ..FfConfig::default() }, t),
                (FfConfig { sizes: vec![48, 64, 40, 24], peer, ..FfConfig::default() }, t),
            ]
        }) {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for train in [0..4, 1..3] {
                let mut piped = FfNet::new(be, cfg.clone(), di, 10, 7).unwrap();
                let mut plain = piped.clone();
                let mut s = Scalars::new(&be, 3).unwrap();
                for _ in 0..3 {
                    let got = pool.install(|| piped.train_batch(&imgs, &labels, &neg, train.clone())).unwrap();
                    let rows = plain.embed_batch(&imgs, &labels, &neg).unwrap();
                    let (norm, eps) = plain.norm();
                    for l in 0..train.end {
                        let (loss, form) = plain.loss(l);
                        let (prev, rest) = plain.layers.split_at_mut(l);
                        let x = if l == 0 { &plain.input } else { prev[l - 1].activity() };
                        if l < train.start {
                            rest[0].forward(&be, x, rows, norm, eps).unwrap();
                            assert!(got[0].layers[l].is_none());
                        } else {
                            let obj = Objective { norm, eps, loss, form };
                            rest[0].train_step(&be, x, rows, obj, s.slot(0)).unwrap();
                            let g = got[0].layers[l].expect("a trained layer reports its loss");
                            let v = s.read(&be).unwrap();
                            assert_eq!(g.loss.to_bits(), v[0].to_bits(), "loss of layer {l}");
                            assert_eq!((g.g_pos.to_bits(), g.g_neg.to_bits()), (v[1].to_bits(), v[2].to_bits()));
                        }
                    }
                }
                for (l, (a, b)) in piped.layers.iter().zip(&plain.layers).enumerate() {
                    assert_eq!(bits(a.w.data()), bits(b.w.data()), "W of layer {l}, {threads} threads, {train:?}");
                    assert_eq!(bits(&a.b), bits(&b.b), "b of layer {l}");
                }
            }
        }
    }

    #[test]
    fn probe_views_read_raw_or_normalised_activity_with_the_chosen_label() {
        use crate::probe::{FeatureForm, FeatureView, Features};
        let be = CpuBackend::best();
        let mut net = FfNet::new(be, FfConfig { sizes: vec![8, 6], ..FfConfig::default() }, 16, 4, 3).unwrap();
        let mut imgs = vec![0.0f32; 3 * 16];
        Philox::new(5, stream::noise(0)).fill_uniform(&mut imgs, 0.0, 1.0);
        let (mut std_f, mut raw, mut lab) = (Vec::new(), Vec::new(), Vec::new());
        net.features(&imgs, 3, FeatureView::default(), &mut std_f).unwrap();
        let raw_view = FeatureView { form: FeatureForm::Raw, label: None };
        net.features(&imgs, 3, raw_view, &mut raw).unwrap();
        // The standard view is the raw view, length-normalised layer by layer.
        let (norm, eps) = net.norm();
        for i in 0..3 {
            for (off, d) in [(0, 8), (8, 6)] {
                let row = &raw[i * 14 + off..i * 14 + off + d];
                let mut want = vec![0.0; d];
                be.normalize_rows(row, &mut want, d, norm, eps).unwrap();
                let got = &std_f[i * 14 + off..i * 14 + off + d];
                assert_eq!(bits(&want), bits(got), "row {i}, layer at {off}");
            }
        }
        assert!(raw.iter().zip(&std_f).any(|(a, b)| a != b), "raw activity is not already unit length");
        // A label written into the inputs changes what the layers see.
        net.features(&imgs, 3, FeatureView { form: FeatureForm::Standard, label: Some(2) }, &mut lab).unwrap();
        assert!(lab.iter().zip(&std_f).any(|(a, b)| a != b));
        let e = net.features(&imgs, 3, FeatureView { form: FeatureForm::Standard, label: Some(4) }, &mut lab);
        assert!(e.unwrap_err().to_string().contains("not label 4"));
    }

    #[test]
    fn a_batch_with_a_negative_equal_to_its_label_is_rejected_as_a_batch_error() {
        let be = CpuBackend::best();
        let mut net = FfNet::new(be, FfConfig { sizes: vec![8, 8], ..FfConfig::default() }, 16, 10, 0).unwrap();
        let e = net.train_batch(&[0.0; 32], &[1, 2], &[3, 2], 0..2).unwrap_err().to_string();
        assert!(e.starts_with("batch: sample 1"), "{e}");
    }
}
