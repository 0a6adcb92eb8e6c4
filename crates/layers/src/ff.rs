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

use crate::config::{FfConfig, GoodnessKind, LabelMode, LossKind, MlpTraining, OptimConfig, PredictKind};
use crate::optim::OptState;
use crate::readout::Readout;
use crate::{Error, Result};
use ffwd_kernels::{argmax, CpuBackend, FfLoss, GoodnessForm, LossScratch, MatMut, MatRef, Norm, PackedMat, StepsRun};
use ffwd_tensor::{stream, Philox, Tensor};

/// A layer's output as the layer above reads it: the activity `h` (rows ×
/// width) and each row's sum of squares (the L32 sum, which is also the
/// layer's sum-form goodness), so that the next normalisation need not sum
/// the squares again.
#[derive(Clone, Copy, Debug)]
pub struct Activity<'a> {
    pub h: &'a [f32],
    pub sumsq: &'a [f32],
}

/// What a layer's forward reads: raw rows, or the layer below's activity.
#[derive(Clone, Copy)]
enum Input<'a> {
    Raw(&'a [f32]),
    Below(Activity<'a>),
}

/// Per-layer statistics of one training batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerStats {
    pub loss: f32,
    /// Mean sum-form goodness over the positive rows (NaN: not a goodness
    /// loss).
    pub g_pos: f32,
    /// Mean sum-form goodness over the negative rows (NaN likewise).
    pub g_neg: f32,
    /// A second loss of the layer, NaN if none (a UFF GAN cell: the
    /// generator's).
    pub aux: f32,
}

impl LayerStats {
    /// A layer whose loss is not a goodness loss.
    pub fn loss_only(loss: f32) -> Self {
        Self { loss, g_pos: f32::NAN, g_neg: f32::NAN, aux: f32::NAN }
    }
}

#[derive(Clone, Debug, Default)]
struct Work {
    xn: Vec<f32>,
    h: Vec<f32>,
    g: Vec<f32>,
    dldg: Vec<f32>,
    dz: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
    scratch: LossScratch,
    gemm_scratch: Vec<f32>,
    /// The rows kept in `compute_grads` (xn, h, dL/dG gathered).
    kept: Vec<f32>,
    /// How much of the last forward's and the last fused update's
    /// products ran (see [`FfLayer::steps_run`]).
    steps: (StepsRun, StepsRun),
    /// Backprop only: W row-major, dL/d(normalised input), norm scratch.
    w_rows: Vec<f32>,
    dxn: Vec<f32>,
    inv: Vec<f32>,
    norm_scratch: Vec<f32>,
}

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
pub struct FfLayer {
    pub in_dim: usize,
    pub out_dim: usize,
    /// in_dim × out_dim, kept in the GEMM's packed layout (see
    /// [`PackedMat`]; `to_row_major` gives the plain matrix).
    pub w: PackedMat,
    pub b: Vec<f32>,
    opt_w: OptState,
    opt_b: OptState,
    work: Work,
}

impl FfLayer {
    /// PyTorch-style init: W and b uniform in ±1/√in_dim, from the Philox
    /// stream `init(index)` (W first, then b).
    pub fn new(in_dim: usize, out_dim: usize, optim: &OptimConfig, seed: u64, index: u32) -> Self {
        let bound = 1.0 / (in_dim as f32).sqrt();
        let mut all = vec![0.0f32; in_dim * out_dim + out_dim];
        Philox::new(seed, stream::init(index)).fill_uniform(&mut all, -bound, bound);
        let b = all.split_off(in_dim * out_dim);
        let w = PackedMat::from_row_major(&all, in_dim, out_dim).expect("length is in·out");
        let opt_w = OptState::new(optim, w.data().len());
        Self { in_dim, out_dim, w, b, opt_w, opt_b: OptState::new(optim, out_dim), work: Work::default() }
    }

    /// Forward `rows` rows of `x` without learning; `h` and `G` stay in the
    /// layer (see [`FfLayer::activity`], [`FfLayer::goodness`]).
    pub fn forward(&mut self, be: &CpuBackend, x: &[f32], rows: usize, norm: Norm, eps: f32) -> Result<()> {
        self.forward_from(be, Input::Raw(x), rows, norm, eps)
    }

    fn forward_from(&mut self, be: &CpuBackend, x: Input, rows: usize, norm: Norm, eps: f32) -> Result<()> {
        let w = &mut self.work;
        w.xn.resize(rows * self.in_dim, 0.0);
        w.h.resize(rows * self.out_dim, 0.0);
        w.g.resize(rows, 0.0);
        match x {
            Input::Raw(x) => be.normalize_rows(x, &mut w.xn, self.in_dim, norm, eps)?,
            Input::Below(a) => be.normalize_rows_given(a.h, a.sumsq, &mut w.xn, self.in_dim, norm, eps)?,
        }
        w.steps.0 = be.linear_forward_packed(
            MatRef::new(&w.xn, rows, self.in_dim)?,
            &self.w,
            &self.b,
            MatMut::new(&mut w.h, rows, self.out_dim)?,
            &mut w.g,
        )?;
        Ok(())
    }

    /// The local loss and its gradients `dW`, `db` on `x` = [n positives;
    /// n negatives], without updating (see [`FfLayer::grads`]).
    pub fn compute_grads(&mut self, be: &CpuBackend, x: &[f32], rows: usize, obj: Objective) -> Result<LayerStats> {
        let stats = self.forward_loss(be, x, rows, obj)?;
        let (d_in, d_out) = (self.in_dim, self.out_dim);
        let w = &mut self.work;
        // Rows with dL/dG = 0 are left out, as in the fused step (see
        // `ffwd_kernels::cpu::linear`).
        use ffwd_kernels::cpu::linear::{active_count, gather_active};
        let kept = active_count(&w.dldg);
        w.kept.resize(kept * (d_in + d_out + 1), 0.0);
        let (xk, hk, gk) = gather_active(MatRef::new(&w.xn, rows, d_in)?, &w.h, &w.dldg, &mut w.kept);
        w.dz.resize(kept * d_out, 0.0);
        be.local_grad(hk, d_out, gk, &mut w.dz)?;
        crate::linear::param_grads(be, xk, &w.dz, (kept, d_in, d_out), &mut w.dw, &mut w.db)?;
        Ok(stats)
    }

    /// The goodness loss of the last forward and dL/dG (kept in the layer).
    fn loss_of_last_forward(&mut self, be: &CpuBackend, rows: usize, obj: Objective) -> Result<LayerStats> {
        let w = &mut self.work;
        w.dldg.resize(rows, 0.0);
        let l = be.ff_loss(obj.loss, obj.form, self.out_dim, &w.g, &mut w.dldg, &mut w.scratch)?;
        let n = rows / 2;
        let mean = |s: &[f32]| if s.is_empty() { 0.0 } else { ffwd_kernels::numerics::l32_sum(s) / s.len() as f32 };
        Ok(LayerStats { loss: l, g_pos: mean(&w.g[..n]), g_neg: mean(&w.g[n..]), aux: f32::NAN })
    }

    /// `(dW, db)` of the last [`FfLayer::compute_grads`].
    pub fn grads(&self) -> (&[f32], &[f32]) {
        (&self.work.dw, &self.work.db)
    }

    /// One optimiser step with the gradients of the last `compute_grads`.
    pub fn apply_grads(&mut self, be: &CpuBackend) -> Result<()> {
        let dw = PackedMat::from_row_major(&self.work.dw, self.in_dim, self.out_dim)?;
        self.opt_w.step(be, self.w.data_mut(), dw.data())?;
        self.opt_b.step(be, &mut self.b, &self.work.db)?;
        Ok(())
    }

    /// One local training step, fused: the forward, the loss, then
    /// [`CpuBackend::linear_backward_update`] (dz, dW, db and the weight
    /// update in one pass; bit-identical to [`FfLayer::compute_grads`]
    /// followed by [`FfLayer::apply_grads`]).
    pub fn train_step(&mut self, be: &CpuBackend, x: &[f32], rows: usize, obj: Objective) -> Result<LayerStats> {
        let stats = self.forward_loss(be, x, rows, obj)?;
        self.update_alongside(be, rows, |_| ())?;
        Ok(stats)
    }

    /// The first half of [`FfLayer::train_step`]: the forward on `x` and
    /// the local loss, without learning yet. The layer keeps its activity,
    /// goodness and dL/dG for [`FfLayer::update_alongside`].
    pub fn forward_loss(&mut self, be: &CpuBackend, x: &[f32], rows: usize, obj: Objective) -> Result<LayerStats> {
        self.forward(be, x, rows, obj.norm, obj.eps)?;
        self.loss_of_last_forward(be, rows, obj)
    }

    /// [`FfLayer::forward_loss`] on the activity of the layer below, as
    /// [`FfLayer::update_alongside`] hands it over: the normalisation takes
    /// the rows' sums of squares from it (the layer below's goodness)
    /// instead of summing them again. The same bits as `forward_loss` on
    /// `below.h`.
    pub fn forward_loss_above(
        &mut self,
        be: &CpuBackend,
        below: Activity,
        rows: usize,
        obj: Objective,
    ) -> Result<LayerStats> {
        self.forward_from(be, Input::Below(below), rows, obj.norm, obj.eps)?;
        self.loss_of_last_forward(be, rows, obj)
    }

    /// The second half of [`FfLayer::train_step`]: the fused backward and
    /// weight update of the last [`FfLayer::forward_loss`] (on `rows`
    /// rows), run at the same time as `beside`, which is handed this
    /// layer's activity `h` of that forward (the update never writes it).
    ///
    /// This is how a stack trains: the layer above only needs `h`, so its
    /// forward runs beside this layer's update and the two GEMMs' tasks
    /// share the thread pool; a thread that finishes its share of one
    /// takes tasks of the other instead of waiting (measured on the 4×2000
    /// network: within about ±2 % of layer after layer on a quiet host, up
    /// to 9 % faster on a busy one). Every GEMM splits its work into the
    /// same tasks whichever thread runs them, so the bits are those of the
    /// layers run one after the other. Without a forward on `rows` rows
    /// first, it returns an error and changes nothing.
    pub fn update_alongside<R: Send>(
        &mut self,
        be: &CpuBackend,
        rows: usize,
        beside: impl FnOnce(Activity) -> R + Send,
    ) -> Result<R> {
        let FfLayer { in_dim, out_dim, w, b, opt_w, opt_b, work, .. } = self;
        let Work { xn, h, g, dldg, db, gemm_scratch, steps, .. } = work;
        if xn.len() != rows * *in_dim || h.len() != rows * *out_dim || dldg.len() != rows {
            return Err(Error::Layer {
                layer: 0,
                detail: format!(
                    "update of a {in_dim}→{out_dim} layer on {rows} rows, but its last forward ran on {} rows",
                    dldg.len()
                ),
            });
        }
        db.resize(*out_dim, 0.0);
        let h: &[f32] = h;
        let update = || -> Result<()> {
            let (step, a, s) = opt_w.next_step();
            steps.1 = be.linear_backward_update(
                MatRef::new(xn, rows, *in_dim)?,
                h,
                dldg,
                w,
                &step,
                (a, s),
                db,
                gemm_scratch,
            )?;
            opt_b.step(be, b, db)
        };
        let (done, r) = rayon::join(update, || beside(Activity { h, sumsq: g }));
        done?;
        Ok(r)
    }

    /// Backprop through the layer (the BP baselines): from `dh` = dL/dh of
    /// the last forward on `x`, the gradients dW and db (kept for
    /// [`FfLayer::apply_grads`]) and, with `dx`, dL/dx through the ReLU,
    /// the linear map (dz·Wᵀ, one GEMM in the canonical order) and the
    /// normalisation (RMS: the per-row length-norm backward; none).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        be: &CpuBackend,
        x: &[f32],
        rows: usize,
        norm: Norm,
        eps: f32,
        dh: &[f32],
        dx: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let (d_in, d_out) = (self.in_dim, self.out_dim);
        let w = &mut self.work;
        if dh.len() != rows * d_out || x.len() != rows * d_in {
            return Err(Error::Layer {
                layer: 0,
                detail: format!(
                    "backward of a {d_in}→{d_out} layer on {rows} rows got dh {} and x {}",
                    dh.len(),
                    x.len()
                ),
            });
        }
        w.dz.resize(rows * d_out, 0.0);
        for ((z, &g), &h) in w.dz.iter_mut().zip(dh).zip(&w.h) {
            *z = if h > 0.0 { g } else { 0.0 };
        }
        crate::linear::param_grads(be, &w.xn, &w.dz, (rows, d_in, d_out), &mut w.dw, &mut w.db)?;
        let Some(dx) = dx else { return Ok(()) };
        w.w_rows.resize(d_in * d_out, 0.0);
        self.w.write_row_major(&mut w.w_rows);
        crate::linear::input_grad(be, &w.dz, &w.w_rows, (rows, d_in, d_out), &mut w.dxn)?;
        dx.resize(rows * d_in, 0.0);
        match norm {
            Norm::None => dx.copy_from_slice(&w.dxn),
            Norm::Rms => {
                // The row's 1/(√(Σx²/D) + ε), as the forward computed it.
                w.inv.resize(rows, 0.0);
                be.row_sumsq(x, d_in, &mut w.inv)?;
                for v in w.inv.iter_mut() {
                    *v = 1.0 / ((*v / d_in as f32).sqrt() + eps);
                }
                let g = ffwd_kernels::Cnhw::new(1, rows, 1, d_in);
                be.sample_norm_backward(x, g, &w.inv, &w.dxn, dx, &mut w.norm_scratch)?;
            }
            Norm::L2 => {
                return Err(Error::Config("backprop through the L2 norm is not implemented; use rms or none".into()))
            }
        }
        Ok(())
    }

    /// How many rows of the last forward the update keeps in dW and db:
    /// those whose dL/dG is not zero (see `ffwd_kernels::cpu::linear`).
    pub fn rows_kept(&self) -> usize {
        ffwd_kernels::cpu::linear::active_count(&self.work.dldg)
    }

    /// How much of the last forward's product and of the last fused
    /// update's dW product ran: the AVX2 backend leaves out the k steps at
    /// which six rows of the forward's input (six of its columns, in dW)
    /// are all zero, without changing a bit (see [`StepsRun`]).
    pub fn steps_run(&self) -> (StepsRun, StepsRun) {
        self.work.steps
    }

    /// `h` of the last forward (rows × out_dim).
    pub fn activity(&self) -> &[f32] {
        &self.work.h
    }
    /// Sum-form goodness of the last forward.
    pub fn goodness(&self) -> &[f32] {
        &self.work.g
    }
    /// Optimiser steps taken by the weights.
    pub fn steps(&self) -> u64 {
        self.opt_w.steps()
    }
}

/// Statistics of one training batch.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    /// One entry per layer that trained (others: `None`).
    pub layers: Vec<Option<LayerStats>>,
    pub readout_loss: Option<f32>,
}

/// Predictions for a set of images.
#[derive(Clone, Debug, Default)]
pub struct Predictions {
    /// By the configured method (A or B).
    pub overall: Vec<u8>,
    /// Method A with each layer's goodness alone.
    pub per_layer: Vec<Vec<u8>>,
    /// Method A (goodness summed over layers ≥ skip_layers).
    pub goodness: Vec<u8>,
    /// Method B, when the network has a readout.
    pub readout: Option<Vec<u8>>,
}

/// A supervised FF network: the label goes into the input, every layer
/// learns locally.
#[derive(Clone, Debug)]
pub struct FfNet {
    pub config: FfConfig,
    /// Values per image (before the label is added).
    pub image_dim: usize,
    pub classes: usize,
    pub layers: Vec<FfLayer>,
    pub readout: Option<Readout>,
    pub(crate) input: Vec<f32>,
    feats: Vec<f32>,
    tmp: Vec<f32>,
    /// Backprop of the goodness losses: dL/dh of the current layer and
    /// dL/dx it passes down.
    dh: Vec<f32>,
    dx: Vec<f32>,
}

/// Value of every label input in the neutral (unlabelled) input.
pub const NEUTRAL_LABEL: f32 = 0.1;

impl FfNet {
    pub fn new(config: FfConfig, image_dim: usize, classes: usize, seed: u64) -> Result<Self> {
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
        let in0 = Self::input_dim_for(&config, image_dim, classes);
        let mut layers = Vec::new();
        let mut d = in0;
        for (i, &s) in config.sizes.iter().enumerate() {
            layers.push(FfLayer::new(d, s, &config.optim, seed, i as u32));
            d = s;
        }
        let readout = (config.predict == PredictKind::Readout).then(|| {
            let f: usize = config.sizes[config.skip_layers..].iter().sum();
            Readout::new(f, classes, &config.readout_optim)
        });
        Ok(Self {
            config,
            image_dim,
            classes,
            layers,
            readout,
            input: Vec::new(),
            feats: Vec::new(),
            tmp: Vec::new(),
            dh: Vec::new(),
            dx: Vec::new(),
        })
    }

    fn input_dim_for(c: &FfConfig, image_dim: usize, classes: usize) -> usize {
        match c.label {
            LabelMode::Overwrite => image_dim,
            LabelMode::Concat => image_dim + classes,
        }
    }
    /// Width of the first layer's input (image plus label).
    pub fn input_dim(&self) -> usize {
        Self::input_dim_for(&self.config, self.image_dim, self.classes)
    }

    pub(crate) fn loss(&self, layer: usize) -> (FfLoss, GoodnessForm) {
        loss_of(&self.config, self.layers[layer].out_dim)
    }

    /// Write `image` with `label` (None = neutral) into one input row.
    fn embed(&self, image: &[f32], label: Option<u8>, row: &mut [f32]) {
        let c = self.classes;
        let (lab, img) = match self.config.label {
            LabelMode::Overwrite => {
                row.copy_from_slice(image);
                row.split_at_mut(c)
            }
            LabelMode::Concat => {
                let (l, i) = row.split_at_mut(c);
                i.copy_from_slice(image);
                (l, i)
            }
        };
        let _ = img;
        match label {
            Some(y) => {
                lab.fill(0.0);
                lab[y as usize] = 1.0;
            }
            None => lab.fill(NEUTRAL_LABEL),
        }
    }

    /// Run rows of `self.input` through layers `0..upto` without learning.
    fn forward_input(&mut self, be: &CpuBackend, rows: usize, upto: usize) -> Result<()> {
        let norm: Norm = self.config.norm.into();
        let eps = self.config.norm_eps;
        for l in 0..upto {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input[..] } else { prev[l - 1].activity() };
            rest[0].forward(be, x, rows, norm, eps)?;
        }
        Ok(())
    }

    /// Normalised activities of layers ≥ skip_layers, concatenated per row.
    fn gather_features(&mut self, be: &CpuBackend, rows: usize) -> Result<()> {
        let mut feats = std::mem::take(&mut self.feats);
        let r = self.normalized_activities(be, rows, self.config.skip_layers, &mut feats);
        self.feats = feats;
        r
    }

    /// Length-normalised activities of layers `from..` after the last
    /// forward, concatenated per row into `out`.
    fn normalized_activities(&mut self, be: &CpuBackend, rows: usize, from: usize, out: &mut Vec<f32>) -> Result<()> {
        let (norm, eps) = (self.config.norm.into(), self.config.norm_eps);
        normalized_activities(be, &self.layers[from..], rows, (norm, eps), &mut self.tmp, out)
    }

    /// Write `n` images with the neutral label into the input rows.
    fn embed_neutral(&mut self, images: &[f32], n: usize) {
        self.embed_all(images, n, None);
    }

    /// Write `n` images, all with `label` (None: neutral), into the input rows.
    fn embed_all(&mut self, images: &[f32], n: usize, label: Option<u8>) {
        let (di, d0) = (self.image_dim, self.input_dim());
        let mut input = std::mem::take(&mut self.input);
        input.resize(n * d0, 0.0);
        for i in 0..n {
            self.embed(&images[i * di..(i + 1) * di], label, &mut input[i * d0..(i + 1) * d0]);
        }
        self.input = input;
    }

    /// Write `[x; x]` with labels `[y⁺; y⁻]` into the input rows; returns
    /// the row count 2n.
    pub(crate) fn embed_batch(&mut self, images: &[f32], labels: &[u8], neg_labels: &[u8]) -> Result<usize> {
        let n = labels.len();
        let (di, d0) = (self.image_dim, self.input_dim());
        check_batch(images.len(), di, labels, neg_labels, self.classes)?;
        let mut input = std::mem::take(&mut self.input);
        input.resize(2 * n * d0, 0.0);
        for i in 0..n {
            let img = &images[i * di..(i + 1) * di];
            self.embed(img, Some(labels[i]), &mut input[i * d0..(i + 1) * d0]);
            self.embed(img, Some(neg_labels[i]), &mut input[(n + i) * d0..(n + i + 1) * d0]);
        }
        self.input = input;
        Ok(2 * n)
    }

    /// The goodness-loss ablation's gradients on one batch without
    /// updating (see [`FfLayer::grads`]): the sum of every layer's goodness
    /// loss, backpropagated through the whole stack.
    pub fn backprop_grads(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        labels: &[u8],
        neg_labels: &[u8],
    ) -> Result<BatchStats> {
        let rows = self.embed_batch(images, labels, neg_labels)?;
        let mut stats = BatchStats { layers: vec![None; self.layers.len()], readout_loss: None };
        self.backprop_goodness(be, rows, &mut stats)?;
        Ok(stats)
    }

    /// One training batch. `images` is n × image_dim; `neg_labels[i]` must
    /// differ from `labels[i]`. Layers in `train_layers` learn; layers
    /// before it only forward (layer-by-layer schedule); layers after it
    /// are idle.
    pub fn train_batch(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        labels: &[u8],
        neg_labels: &[u8],
        train_layers: std::ops::Range<usize>,
    ) -> Result<BatchStats> {
        let n = labels.len();
        let rows = self.embed_batch(images, labels, neg_labels)?;
        let end = train_layers.end.min(self.layers.len());
        let mut stats = BatchStats { layers: vec![None; self.layers.len()], readout_loss: None };
        if self.config.training == MlpTraining::Local {
            self.train_local(be, rows, train_layers.start.min(end)..end, &mut stats)?;
        } else {
            self.backprop_goodness(be, rows, &mut stats)?;
            for l in &mut self.layers {
                l.apply_grads(be)?;
            }
        }
        if self.readout.is_some() {
            self.embed_neutral(images, n);
            let all = self.layers.len();
            self.forward_input(be, n, all)?;
            self.gather_features(be, n)?;
            let feats = std::mem::take(&mut self.feats);
            let r = self.readout.as_mut().expect("checked above").train_step(be, &feats, labels);
            self.feats = feats;
            stats.readout_loss = Some(r?);
        }
        Ok(stats)
    }

    /// Layer-local training of `train`, after a forward of the layers
    /// below it: a pipeline in which each layer's update runs beside the
    /// forward of the layer above (see [`FfLayer::update_alongside`]). The
    /// bits are those of each layer's [`FfLayer::train_step`] in turn.
    fn train_local(
        &mut self,
        be: &CpuBackend,
        rows: usize,
        train: std::ops::Range<usize>,
        stats: &mut BatchStats,
    ) -> Result<()> {
        let norm: Norm = self.config.norm.into();
        let eps = self.config.norm_eps;
        let finite = |l: usize, s: &LayerStats| {
            if s.loss.is_finite() {
                Ok(())
            } else {
                Err(Error::NonFinite { layer: l, loss: s.loss })
            }
        };
        for l in 0..train.start {
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input[..] } else { prev[l - 1].activity() };
            rest[0].forward(be, x, rows, norm, eps)?;
        }
        let config = &self.config;
        let (prev, rest) = self.layers.split_at_mut(train.start);
        let x = if train.start == 0 { &self.input[..] } else { prev[train.start - 1].activity() };
        let objective = |ly: &FfLayer| {
            let (loss, form) = loss_of(config, ly.out_dim);
            Objective { norm, eps, loss, form }
        };
        train_stack(be, &mut rest[..train.len()], x, rows, objective, |l, s| {
            finite(train.start + l, &s)?;
            stats.layers[train.start + l] = Some(s);
            Ok(())
        })
    }

    /// The goodness-loss ablation: forward every layer on the current
    /// input, then backprop the sum of all layers' losses through the whole
    /// stack (each layer's dL/dh = its own local term + what the layer
    /// above sends down), leaving dW and db in every layer.
    fn backprop_goodness(&mut self, be: &CpuBackend, rows: usize, stats: &mut BatchStats) -> Result<()> {
        let nl = self.layers.len();
        let norm: Norm = self.config.norm.into();
        let eps = self.config.norm_eps;
        self.forward_input(be, rows, nl)?;
        for l in 0..nl {
            let (loss, form) = self.loss(l);
            let s = self.layers[l].loss_of_last_forward(be, rows, Objective { norm, eps, loss, form })?;
            if !s.loss.is_finite() {
                return Err(Error::NonFinite { layer: l, loss: s.loss });
            }
            stats.layers[l] = Some(s);
        }
        let (mut dh, mut dx) = (std::mem::take(&mut self.dh), std::mem::take(&mut self.dx));
        for l in (0..nl).rev() {
            let d = self.layers[l].out_dim;
            self.tmp.resize(rows * d, 0.0);
            let ly = &self.layers[l];
            be.local_grad(ly.activity(), d, &ly.work.dldg, &mut self.tmp)?;
            if l + 1 < nl {
                for (a, &b) in dh.iter_mut().zip(&self.tmp) {
                    *a = *a + b;
                }
            } else {
                dh.clear();
                dh.extend_from_slice(&self.tmp);
            }
            let (prev, rest) = self.layers.split_at_mut(l);
            let x = if l == 0 { &self.input[..] } else { prev[l - 1].activity() };
            rest[0].backward(be, x, rows, norm, eps, &dh, (l > 0).then_some(&mut dx))?;
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

    /// Input rows `i·classes + y` for images `start..start + m`: image
    /// `start + i` with label `y`, every label in turn (method A).
    pub(crate) fn embed_candidates(&mut self, images: &[f32], start: usize, m: usize) {
        let (di, d0, c) = (self.image_dim, self.input_dim(), self.classes);
        let mut input = std::mem::take(&mut self.input);
        input.resize(m * c * d0, 0.0);
        for i in 0..m {
            let img = &images[(start + i) * di..(start + i + 1) * di];
            for y in 0..c {
                let r = i * c + y;
                self.embed(img, Some(y as u8), &mut input[r * d0..(r + 1) * d0]);
            }
        }
        self.input = input;
    }

    /// Predictions of `m` images from the goodness `good(l, row)` of the
    /// rows [`FfNet::embed_candidates`] wrote: per layer, and the total of
    /// layers `skip_layers..` in order from +0.0; the first maximum wins.
    pub(crate) fn score_candidates(&self, m: usize, good: impl Fn(usize, usize) -> f32, p: &mut Predictions) {
        let (c, nl, skip) = (self.classes, self.layers.len(), self.config.skip_layers);
        let mut scores = vec![0.0f32; c];
        for i in 0..m {
            for (l, out) in p.per_layer.iter_mut().enumerate() {
                for (y, s) in scores.iter_mut().enumerate() {
                    *s = self.in_form(l, good(l, i * c + y));
                }
                out.push(argmax(&scores) as u8);
            }
            for (y, s) in scores.iter_mut().enumerate() {
                let mut t = 0.0f32;
                for l in skip..nl {
                    t = t + self.in_form(l, good(l, i * c + y));
                }
                *s = t;
            }
            p.goodness.push(argmax(&scores) as u8);
        }
    }

    /// Predict `n` images (n × image_dim), in chunks of `chunk` images.
    ///
    /// Method A: each image runs once per label; per-layer scores are the
    /// goodness in the configured form; the total adds layers
    /// `skip_layers..` in order from +0.0; the first maximum wins.
    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let (di, c) = (self.image_dim, self.classes);
        let nl = self.layers.len();
        check_images(images.len(), n, di)?;
        let mut p = Predictions { per_layer: vec![Vec::with_capacity(n); nl], ..Default::default() };
        let mut readout_pred = self.readout.as_ref().map(|_| Vec::with_capacity(n));
        let chunk = chunk.max(1);
        for start in (0..n).step_by(chunk) {
            let m = chunk.min(n - start);
            self.embed_candidates(images, start, m);
            self.forward_input(be, m * c, nl)?;
            self.score_candidates(m, |l, r| self.layers[l].goodness()[r], &mut p);
            if let Some(rp) = readout_pred.as_mut() {
                self.embed_neutral(&images[start * di..(start + m) * di], m);
                self.forward_input(be, m, nl)?;
                self.gather_features(be, m)?;
                let feats = std::mem::take(&mut self.feats);
                let r = self.readout.as_mut().expect("readout present").predict(be, &feats, m, rp);
                self.feats = feats;
                r?;
            }
        }
        p.overall = match (&self.config.predict, &readout_pred) {
            (PredictKind::Readout, Some(r)) => r.clone(),
            _ => p.goodness.clone(),
        };
        p.readout = readout_pred;
        Ok(p)
    }

    /// Every parameter as a named tensor (checkpoint order).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = layer_tensors(&self.layers);
        if let Some(r) = &self.readout {
            out.extend(head_tensors("readout", r));
        }
        out
    }

    /// Replace parameters from named tensors (from [`FfNet::named_tensors`]),
    /// checking every name and shape.
    pub fn load_tensors(&mut self, mut get: impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        load_layers(&mut self.layers, &mut get)?;
        if let Some(r) = &mut self.readout {
            load_head("readout", r, &mut get)?;
        }
        Ok(())
    }
}

/// Length-normalised activities of `layers` after their last forward,
/// concatenated per row into `out`.
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

/// One layer-local training step of a stack of layers on `x` (`rows`
/// rows), as a pipeline: layer 0's forward, then each layer's update
/// beside the forward of the layer above (see
/// [`FfLayer::update_alongside`]). `objective` gives each layer's
/// objective; `each(l, stats)` receives layer l's loss statistics right
/// after its forward, and an error it returns stops the batch before that
/// layer learns. The bits are those of each layer's
/// [`FfLayer::train_step`] in turn.
pub fn train_stack(
    be: &CpuBackend,
    layers: &mut [FfLayer],
    x: &[f32],
    rows: usize,
    objective: impl Fn(&FfLayer) -> Objective + Sync,
    mut each: impl FnMut(usize, LayerStats) -> Result<()>,
) -> Result<()> {
    let Some(first) = layers.first_mut() else { return Ok(()) };
    let obj = objective(first);
    each(0, first.forward_loss(be, x, rows, obj)?)?;
    for l in 0..layers.len() {
        let (cur, rest) = layers[l..].split_first_mut().expect("l < layers.len()");
        match rest.first_mut() {
            Some(next) => {
                let s = cur.update_alongside(be, rows, |below| {
                    let obj = objective(next);
                    next.forward_loss_above(be, below, rows, obj)
                })??;
                each(l + 1, s)?;
            }
            None => cur.update_alongside(be, rows, |_| ())?,
        }
    }
    Ok(())
}

pub(crate) fn normalized_activities(
    be: &CpuBackend,
    layers: &[FfLayer],
    rows: usize,
    (norm, eps): (Norm, f32),
    tmp: &mut Vec<f32>,
    out: &mut Vec<f32>,
) -> Result<()> {
    let f = start_groups(layers, rows, out);
    let mut off = 0;
    for l in layers {
        let d = l.out_dim;
        tmp.resize(rows * d, 0.0);
        be.normalize_rows(l.activity(), tmp, d, norm, eps)?;
        put_group(out, f, off, d, tmp);
        off += d;
    }
    Ok(())
}

/// `layers.{i}.weight` (in × out) and `layers.{i}.bias` of every layer.
pub(crate) fn layer_tensors(layers: &[FfLayer]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let w = Tensor::from_vec(&[l.in_dim, l.out_dim], l.w.to_row_major()).expect("shape");
        out.push((format!("layers.{i}.weight"), w));
        out.push((format!("layers.{i}.bias"), Tensor::from_vec(&[l.out_dim], l.b.clone()).expect("shape")));
    }
    out
}

/// Load what [`layer_tensors`] names.
pub(crate) fn load_layers(layers: &mut [FfLayer], get: &mut impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
    for (i, l) in layers.iter_mut().enumerate() {
        let w = crate::conv::fetch_tensor(get, &format!("layers.{i}.weight"), &[l.in_dim, l.out_dim])?;
        l.w = PackedMat::from_row_major(&w, l.in_dim, l.out_dim)?;
        l.b = crate::conv::fetch_tensor(get, &format!("layers.{i}.bias"), &[l.out_dim])?;
    }
    Ok(())
}

/// `{prefix}.weight` (features × classes) and `{prefix}.bias` of a head.
pub(crate) fn head_tensors(prefix: &str, r: &Readout) -> Vec<(String, Tensor)> {
    vec![
        (format!("{prefix}.weight"), Tensor::from_vec(&[r.in_dim, r.classes], r.w.clone()).expect("shape")),
        (format!("{prefix}.bias"), Tensor::from_vec(&[r.classes], r.b.clone()).expect("shape")),
    ]
}

/// Load what [`head_tensors`] names.
pub(crate) fn load_head(prefix: &str, r: &mut Readout, get: &mut impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
    r.w = crate::conv::fetch_tensor(get, &format!("{prefix}.weight"), &[r.in_dim, r.classes])?;
    r.b = crate::conv::fetch_tensor(get, &format!("{prefix}.bias"), &[r.classes])?;
    Ok(())
}

/// The probe sees every layer's length-normalised activity (standard
/// view) or its ReLU activity (raw view), with the label inputs neutral
/// (0.1 each) or set to the view's label.
impl crate::probe::Features for FfNet {
    fn feature_dims(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.out_dim).collect()
    }
    fn features(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_images(images.len(), n, self.image_dim)?;
        if let Some(y) = view.label.filter(|&y| y as usize >= self.classes) {
            return Err(view.unsupported("FF net", &format!("has {} label inputs, not label {y}", self.classes)));
        }
        self.embed_all(images, n, view.label);
        let all = self.layers.len();
        self.forward_input(be, n, all)?;
        match view.form {
            crate::probe::FeatureForm::Standard => self.normalized_activities(be, n, 0, out),
            crate::probe::FeatureForm::Raw => {
                raw_activities(&self.layers, n, out);
                Ok(())
            }
        }
    }
}

/// Every layer's last activity (`rows` rows), concatenated per row.
pub(crate) fn raw_activities(layers: &[FfLayer], rows: usize, out: &mut Vec<f32>) {
    let f = start_groups(layers, rows, out);
    let mut off = 0;
    for l in layers {
        put_group(out, f, off, l.out_dim, &l.activity()[..rows * l.out_dim]);
        off += l.out_dim;
    }
}

/// Size `out` for `rows` rows of every layer's activity; returns the row width.
fn start_groups(layers: &[FfLayer], rows: usize, out: &mut Vec<f32>) -> usize {
    let f: usize = layers.iter().map(|l| l.out_dim).sum();
    out.resize(rows * f, 0.0);
    f
}

/// Copy `src` (rows of `d`) into columns `off..off + d` of `out` (rows of `f`).
fn put_group(out: &mut [f32], f: usize, off: usize, d: usize, src: &[f32]) {
    for (dst, row) in out.chunks_exact_mut(f).zip(src.chunks_exact(d)) {
        dst[off..off + d].copy_from_slice(row);
    }
}

/// Check that `values` holds `n` images of `di` values.
pub(crate) fn check_images(values: usize, n: usize, di: usize) -> Result<()> {
    if values != n * di {
        return Err(Error::Layer { layer: 0, detail: format!("{n} images need {} values, got {values}", n * di) });
    }
    Ok(())
}

/// Check a supervised batch: `n` images of `di` values and `n` labels below
/// `classes`.
pub(crate) fn check_labelled(values: usize, di: usize, labels: &[u8], classes: usize) -> Result<()> {
    check_images(values, labels.len(), di)?;
    if let Some(i) = labels.iter().position(|&y| y as usize >= classes) {
        return Err(Error::Layer {
            layer: 0,
            detail: format!("sample {i}: label {} is not below the {classes} classes", labels[i]),
        });
    }
    Ok(())
}

/// Check a training batch: `n` images of `di` values, `n` labels below
/// `classes`, and `n` negative labels each different from its label.
pub(crate) fn check_batch(values: usize, di: usize, labels: &[u8], neg: &[u8], classes: usize) -> Result<()> {
    check_labelled(values, di, labels, classes)?;
    let n = labels.len();
    if neg.len() != n {
        return Err(Error::Layer {
            layer: 0,
            detail: format!("batch of {n} labels needs {n} negative labels, got {}", neg.len()),
        });
    }
    if let Some(i) = (0..n).find(|&i| neg[i] == labels[i] || neg[i] as usize >= classes) {
        return Err(Error::Layer {
            layer: 0,
            detail: format!("sample {i}: negative label {} invalid for label {}", neg[i], labels[i]),
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let cfg = FfConfig { sizes: vec![4, 4], ..FfConfig::default() };
        let net = FfNet::new(cfg, 16, 10, 0).unwrap();
        let img = vec![0.5f32; 16];
        let mut row = vec![0.0; 16];
        net.embed(&img, Some(3), &mut row);
        assert_eq!(&row[..10], &[0., 0., 0., 1., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(&row[10..], &[0.5; 6]);
        net.embed(&img, None, &mut row);
        assert_eq!(&row[..10], &[NEUTRAL_LABEL; 10]);
    }

    #[test]
    fn concat_embedding_keeps_every_pixel() {
        let cfg = FfConfig { sizes: vec![4, 4], label: LabelMode::Concat, ..FfConfig::default() };
        let net = FfNet::new(cfg, 4, 10, 0).unwrap();
        assert_eq!(net.input_dim(), 14);
        let mut row = vec![0.0; 14];
        net.embed(&[0.25; 4], Some(9), &mut row);
        assert_eq!(row[9], 1.0);
        assert_eq!(&row[10..], &[0.25; 4]);
    }

    #[test]
    fn fused_train_step_equals_grads_then_update_bit_for_bit() {
        let be = CpuBackend::best();
        for optim in
            [OptimConfig::default(), OptimConfig { kind: crate::config::OptimKind::Sgd, ..OptimConfig::default() }]
        {
            let mut a = FfLayer::new(37, 21, &optim, 5, 0);
            let mut b = a.clone();
            let mut x = vec![0.0f32; 300 * 37];
            Philox::new(9, stream::noise(0)).fill_uniform(&mut x, -1.0, 1.0);
            let obj = Objective {
                norm: Norm::Rms,
                eps: 1e-8,
                loss: FfLoss::Threshold { theta: 21.0 },
                form: GoodnessForm::Sum,
            };
            for _ in 0..3 {
                a.train_step(&be, &x, 300, obj).unwrap();
                b.compute_grads(&be, &x, 300, obj).unwrap();
                b.apply_grads(&be).unwrap();
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.w.data()), bits(b.w.data()));
            assert_eq!(bits(&a.b), bits(&b.b));
        }
    }

    #[test]
    fn an_update_without_a_matching_forward_is_an_error_and_changes_nothing() {
        let be = CpuBackend::best();
        let mut layer = FfLayer::new(12, 8, &OptimConfig::default(), 1, 0);
        let before = layer.w.data().to_vec();
        let e = layer.update_alongside(&be, 4, |_| ()).unwrap_err().to_string();
        assert!(e.contains("12→8") && e.contains("last forward"), "{e}");
        let obj =
            Objective { norm: Norm::Rms, eps: 1e-8, loss: FfLoss::Threshold { theta: 8.0 }, form: GoodnessForm::Sum };
        layer.forward_loss(&be, &[0.5; 4 * 12], 4, obj).unwrap();
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
        let cfg = FfConfig { sizes: vec![48, 64, 40, 24], ..FfConfig::default() };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for train in [0..4, 1..3] {
                let mut piped = FfNet::new(cfg.clone(), di, 10, 7).unwrap();
                let mut plain = piped.clone();
                for _ in 0..3 {
                    let got = pool.install(|| piped.train_batch(&be, &imgs, &labels, &neg, train.clone())).unwrap();
                    let rows = plain.embed_batch(&imgs, &labels, &neg).unwrap();
                    let (norm, eps) = (plain.config.norm.into(), plain.config.norm_eps);
                    for l in 0..train.end {
                        let (loss, form) = plain.loss(l);
                        let (prev, rest) = plain.layers.split_at_mut(l);
                        let x = if l == 0 { &plain.input[..] } else { prev[l - 1].activity() };
                        if l < train.start {
                            rest[0].forward(&be, x, rows, norm, eps).unwrap();
                            assert!(got.layers[l].is_none());
                        } else {
                            let s = rest[0].train_step(&be, x, rows, Objective { norm, eps, loss, form }).unwrap();
                            let g = got.layers[l].expect("a trained layer reports its loss");
                            assert_eq!(g.loss.to_bits(), s.loss.to_bits(), "loss of layer {l}");
                        }
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
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
        let mut net = FfNet::new(FfConfig { sizes: vec![8, 6], ..FfConfig::default() }, 16, 4, 3).unwrap();
        let mut imgs = vec![0.0f32; 3 * 16];
        Philox::new(5, stream::noise(0)).fill_uniform(&mut imgs, 0.0, 1.0);
        let (mut std_f, mut raw, mut lab) = (Vec::new(), Vec::new(), Vec::new());
        net.features(&be, &imgs, 3, FeatureView::default(), &mut std_f).unwrap();
        let raw_view = FeatureView { form: FeatureForm::Raw, label: None };
        net.features(&be, &imgs, 3, raw_view, &mut raw).unwrap();
        // The standard view is the raw view, length-normalised layer by layer.
        let (norm, eps) = (net.config.norm.into(), net.config.norm_eps);
        for i in 0..3 {
            for (off, d) in [(0, 8), (8, 6)] {
                let row = &raw[i * 14 + off..i * 14 + off + d];
                let mut want = vec![0.0; d];
                be.normalize_rows(row, &mut want, d, norm, eps).unwrap();
                let got = &std_f[i * 14 + off..i * 14 + off + d];
                assert!(want.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits()), "row {i}, layer at {off}");
            }
        }
        assert!(raw.iter().zip(&std_f).any(|(a, b)| a != b), "raw activity is not already unit length");
        // A label written into the inputs changes what the layers see.
        net.features(&be, &imgs, 3, FeatureView { form: FeatureForm::Standard, label: Some(2) }, &mut lab).unwrap();
        assert!(lab.iter().zip(&std_f).any(|(a, b)| a != b));
        let e = net.features(&be, &imgs, 3, FeatureView { form: FeatureForm::Standard, label: Some(4) }, &mut lab);
        assert!(e.unwrap_err().to_string().contains("not label 4"));
    }

    #[test]
    fn a_batch_with_a_negative_equal_to_its_label_is_rejected() {
        let be = CpuBackend::best();
        let mut net = FfNet::new(FfConfig { sizes: vec![8, 8], ..FfConfig::default() }, 16, 10, 0).unwrap();
        let e = net.train_batch(&be, &[0.0; 32], &[1, 2], &[3, 2], 0..2).unwrap_err();
        assert!(e.to_string().contains("sample 1"), "{e}");
    }
}
