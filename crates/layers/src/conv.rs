//! Convolutional Forward-Forward, and the Trifecta (Dooms, Tsang, Oramas
//! 2023): SymBa loss + overlapping local updates (OLU) + batch norm.
//!
//! **Block.** `norm(input) → conv 3×3 (pad 1, no bias) → ReLU → [2×2
//! max-pool]`. The norm is batch norm over the input channels (batch
//! statistics in training, running statistics at evaluation; learnable γ,
//! β), the per-image length norm of vanilla FF, or none. A block's
//! goodness is the mean of squares of its output over C·H·W.
//!
//! **Label.** A learned H×W map per class ([`ConvFfNet::embedding`]) is
//! appended to the image as one more input channel. The batch is `[x; x]`
//! with labels `[y⁺; y⁻]` (negatives uniform over the wrong classes).
//!
//! **Training.** Every step first runs the forward of all blocks (each on
//! the previous block's output computed in the same pass, before any
//! update), then updates:
//! * OLU off: block k is updated by its own loss (gradient never leaves
//!   the block, except that block 0's loss also trains the embedding
//!   through block 0's input).
//! * OLU on (ALGORITHMS.md §3): on even steps the losses of blocks 1, 3,
//!   5, … update the pairs (0,1), (2,3), …; on odd steps the losses of
//!   blocks 0, 2, 4, … update (embedding, 0), (1,2), (3,4), …. The gradient
//!   of block k's loss crosses exactly one block boundary, written by hand:
//!   through block k's pool, ReLU, conv (dX) and norm into block k−1's
//!   output, then through block k−1 to its parameters. Each pair has its
//!   own Adam state: a block keeps one state as the pair's upper member
//!   (its own loss; slot 0) and one as the lower member (slot 1).
//!   Steps count from 0 (even) and continue across epochs.
//!
//! **Prediction.** Each image runs once per label (evaluation mode); a
//! block's score for a label is its mean goodness; per-block accuracy takes
//! each block alone; the prediction sums the scores of `predict_blocks`
//! (default: the last block) in block order from +0.0; the first maximum
//! wins.

use crate::config::{LossKind, OptimConfig};
use crate::ff::{check_batch, check_images, BatchStats, LayerStats, Predictions};
use crate::optim::OptState;
use crate::{Error, Result};
use ffwd_kernels::numerics::relu;
use ffwd_kernels::{argmax, bn_rstd, Cnhw, ConvScratch, CpuBackend, FfLoss, GoodnessForm, LossScratch};
use ffwd_tensor::{stream, Philox, Tensor};
use serde::{Deserialize, Serialize};

/// Normalisation of each block's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BlockNorm {
    /// Batch norm over input channels, learnable γ and β (the Trifecta).
    #[default]
    Batch,
    /// Per-image RMS length norm over C·H·W (vanilla FF).
    Length,
    None,
}

/// How a conv network learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConvAlgorithm {
    /// Forward-Forward with the label channel ([`ConvFfNet`]).
    #[default]
    Ff,
    /// The papers' baseline: the same blocks without the label channel,
    /// a linear head with cross-entropy, trained end to end by
    /// backpropagation ([`crate::backprop::BpConvNet`]). `loss`, `theta`,
    /// `alpha`, `olu` and `predict_blocks` do not apply.
    Backprop,
}

/// A convolutional network: its blocks, and how it learns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvFfConfig {
    /// Forward-Forward (default) or the backprop baseline.
    pub algorithm: ConvAlgorithm,
    /// Output channels per block.
    pub channels: Vec<usize>,
    /// Indices of the blocks followed by a 2×2 max-pool.
    pub pool: Vec<usize>,
    pub norm: BlockNorm,
    /// ε of batch norm.
    pub bn_eps: f32,
    /// Momentum of the running statistics.
    pub bn_momentum: f32,
    /// ε of the length norm.
    pub norm_eps: f32,
    pub loss: LossKind,
    /// Threshold θ on the mean goodness (threshold loss).
    pub theta: f32,
    /// SymBa's α.
    pub alpha: f32,
    /// Overlapping local updates.
    pub olu: bool,
    pub optim: OptimConfig,
    /// Blocks whose goodness is summed for the prediction (empty = the last).
    pub predict_blocks: Vec<usize>,
}

impl Default for ConvFfConfig {
    /// The Trifecta's small network.
    fn default() -> Self {
        Self::trifecta_small()
    }
}

impl ConvFfConfig {
    /// The Trifecta, small: 128↓ 128 256↓ 256 256 512↓.
    pub fn trifecta_small() -> Self {
        Self {
            algorithm: ConvAlgorithm::Ff,
            channels: vec![128, 128, 256, 256, 256, 512],
            pool: vec![0, 2, 5],
            norm: BlockNorm::Batch,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
            norm_eps: 1e-4,
            loss: LossKind::Symba,
            theta: 1.0,
            alpha: 4.0,
            olu: true,
            optim: OptimConfig::default(),
            predict_blocks: Vec::new(),
        }
    }
    /// The Trifecta, large: 64 128↓ 128 128 128 256↓ 256 256 256 512↓ 512 512.
    pub fn trifecta_large() -> Self {
        Self {
            channels: vec![64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512],
            pool: vec![1, 5, 9],
            ..Self::trifecta_small()
        }
    }
    /// Every width divided by `d` (at least 1 channel): the same net, cheaper.
    pub fn narrowed(mut self, d: usize) -> Self {
        for c in &mut self.channels {
            *c = (*c / d.max(1)).max(1);
        }
        self
    }

    pub fn validate(&self, image: (usize, usize, usize)) -> std::result::Result<(), String> {
        if self.channels.is_empty() {
            return Err("conv.channels: at least one block is needed".into());
        }
        if let Some(i) = self.channels.iter().position(|&c| c == 0) {
            return Err(format!("conv.channels[{i}]: a block needs at least one channel"));
        }
        let nb = self.channels.len();
        if let Some(&p) = self.pool.iter().find(|&&p| p >= nb) {
            return Err(format!("conv.pool: block {p} does not exist ({nb} blocks)"));
        }
        if let Some(&p) = self.predict_blocks.iter().find(|&&p| p >= nb) {
            return Err(format!("conv.predict_blocks: block {p} does not exist ({nb} blocks)"));
        }
        let (mut h, mut w) = (image.1, image.2);
        for k in 0..nb {
            if self.pool.contains(&k) {
                if h < 2 || w < 2 {
                    return Err(format!("conv.pool: block {k}'s output is {h}×{w}; a 2×2 pool needs at least 2×2"));
                }
                h /= 2;
                w /= 2;
            }
        }
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(format!("conv.optim.lr must be a positive number, got {}", o.lr));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(format!("conv.bn_momentum must lie in [0, 1], got {}", self.bn_momentum));
        }
        Ok(())
    }
}

/// Optimiser states of one block's parameters in one pair.
#[derive(Clone, Debug)]
struct BlockOpt {
    w: OptState,
    gamma: OptState,
    beta: OptState,
}

/// Buffers of one block's last forward and backward.
#[derive(Clone, Debug, Default)]
struct BlockWork {
    /// Geometry of the block input.
    gin: Option<Cnhw>,
    xn: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    rstd: Vec<f32>,
    inv: Vec<f32>,
    /// ReLU output before the pool.
    r: Vec<f32>,
    /// Pooled output (empty when the block does not pool).
    pooled: Vec<f32>,
    idx: Vec<u8>,
    /// Per-image sum of squares of the output.
    g: Vec<f32>,
    dr: Vec<f32>,
    dxn: Vec<f32>,
    dw: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    conv: ConvScratch,
    norm_scratch: Vec<f32>,
}

/// One block: norm → conv 3×3 → ReLU → [max-pool].
#[derive(Clone, Debug)]
pub struct ConvBlock {
    pub cin: usize,
    pub cout: usize,
    pub pool: bool,
    pub norm: BlockNorm,
    /// Cout × (Cin·9), k = ci·9 + ky·3 + kx.
    pub w: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    /// One optimiser state per pair the block trains in (OLU: 2).
    opt: Vec<BlockOpt>,
    work: BlockWork,
}

impl ConvBlock {
    /// PyTorch-style init: W uniform in ±1/√(Cin·9) from the Philox stream
    /// `init(index)`; γ = 1, β = 0; running mean 0, variance 1. `slots`
    /// optimiser states (2 under OLU: the block's own pair and the next
    /// block's; else 1).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        pool: bool,
        norm: BlockNorm,
        optim: &OptimConfig,
        slots: usize,
        seed: u64,
        index: u32,
    ) -> Self {
        let bound = 1.0 / ((cin * 9) as f32).sqrt();
        let mut w = vec![0.0f32; cout * cin * 9];
        Philox::new(seed, stream::init(index)).fill_uniform(&mut w, -bound, bound);
        let opt = || BlockOpt {
            w: OptState::new(optim, w.len()),
            gamma: OptState::new(optim, cin),
            beta: OptState::new(optim, cin),
        };
        Self {
            cin,
            cout,
            pool,
            norm,
            opt: (0..slots.max(1)).map(|_| opt()).collect(),
            w,
            gamma: vec![1.0; cin],
            beta: vec![0.0; cin],
            running_mean: vec![0.0; cin],
            running_var: vec![1.0; cin],
            work: BlockWork::default(),
        }
    }

    /// Geometry of the output for an input geometry.
    pub fn out_geom(&self, g: Cnhw) -> Cnhw {
        let (h, w) = if self.pool { (g.h / 2, g.w / 2) } else { (g.h, g.w) };
        Cnhw::new(self.cout, g.n, h, w)
    }

    /// The last forward's output (CNHW).
    pub fn output(&self) -> &[f32] {
        if self.pool {
            &self.work.pooled
        } else {
            &self.work.r
        }
    }

    /// Per-image sum of squares of the last output.
    pub fn sumsq(&self) -> &[f32] {
        &self.work.g
    }

    /// Forward `x` (CNHW `g`); `train` uses batch statistics and updates the
    /// running ones.
    pub fn forward(
        &mut self,
        be: &CpuBackend,
        x: &[f32],
        g: Cnhw,
        train: bool,
        momentum: f32,
        eps: (f32, f32),
    ) -> Result<()> {
        let go = self.out_geom(g);
        let wk = &mut self.work;
        wk.gin = Some(g);
        wk.xn.resize(g.len(), 0.0);
        match self.norm {
            BlockNorm::Batch => {
                let c = g.c;
                wk.mean.resize(c, 0.0);
                wk.var.resize(c, 0.0);
                wk.rstd.resize(c, 0.0);
                if train {
                    be.batchnorm_stats(x, g, eps.0, &mut wk.mean, &mut wk.var, &mut wk.rstd)?;
                    be.batchnorm_update_running(
                        &wk.mean,
                        &wk.var,
                        g.row(),
                        momentum,
                        &mut self.running_mean,
                        &mut self.running_var,
                    )?;
                } else {
                    wk.mean.copy_from_slice(&self.running_mean);
                    for (r, &v) in wk.rstd.iter_mut().zip(&self.running_var) {
                        *r = bn_rstd(v, eps.0);
                    }
                }
                be.batchnorm_apply(x, g, &wk.mean, &wk.rstd, &self.gamma, &self.beta, &mut wk.xn)?;
            }
            BlockNorm::Length => {
                wk.inv.resize(g.n, 0.0);
                be.sample_norm_forward(x, g, eps.1, &mut wk.xn, &mut wk.inv)?;
            }
            BlockNorm::None => wk.xn.copy_from_slice(x),
        }
        let gc = g.with_channels(self.cout);
        wk.r.resize(gc.len(), 0.0);
        be.conv3x3_forward(&wk.xn, g, &self.w, self.cout, &mut wk.r, &mut wk.conv)?;
        for v in wk.r.iter_mut() {
            *v = relu(*v);
        }
        if self.pool {
            wk.pooled.resize(go.len(), 0.0);
            wk.idx.resize(go.len(), 0);
            be.maxpool2_forward(&wk.r, gc, &mut wk.pooled, &mut wk.idx)?;
        }
        wk.g.resize(g.n, 0.0);
        let out = if self.pool { &wk.pooled } else { &wk.r };
        be.block_sumsq(out, go, &mut wk.g)?;
        Ok(())
    }

    /// Gradients of the parameters from `dout` (gradient w.r.t. the last
    /// forward's output; `x` is that forward's input); with `dx`, also the
    /// gradient w.r.t. the input.
    pub fn backward(&mut self, be: &CpuBackend, x: &[f32], dout: &[f32], dx: Option<&mut Vec<f32>>) -> Result<()> {
        let wk = &mut self.work;
        let g = wk.gin.ok_or_else(|| Error::Config("block backward before forward".into()))?;
        let gc = g.with_channels(self.cout);
        wk.dr.resize(gc.len(), 0.0);
        if self.pool {
            be.maxpool2_backward(dout, &wk.idx, gc, &mut wk.dr)?;
        } else {
            wk.dr.copy_from_slice(dout);
        }
        // ReLU: r > 0 exactly where the pre-activation was > 0.
        for (d, &r) in wk.dr.iter_mut().zip(&wk.r) {
            // (ReLU outputs are never NaN.)
            if r <= 0.0 {
                *d = 0.0;
            }
        }
        wk.dw.resize(self.w.len(), 0.0);
        let need_dxn = dx.is_some() || self.norm == BlockNorm::Batch;
        wk.dxn.resize(if need_dxn { g.len() } else { 0 }, 0.0);
        be.conv3x3_backward(
            &wk.xn,
            g,
            &self.w,
            self.cout,
            &wk.dr,
            &mut wk.dw,
            need_dxn.then_some(&mut wk.dxn[..]),
            &mut wk.conv,
        )?;
        match (self.norm, dx) {
            (BlockNorm::Batch, dx) => {
                wk.dgamma.resize(g.c, 0.0);
                wk.dbeta.resize(g.c, 0.0);
                // Without a consumer the input gradient lands in a scratch.
                let mut own = std::mem::take(&mut wk.norm_scratch);
                let d = dx.unwrap_or(&mut own);
                d.resize(g.len(), 0.0);
                be.batchnorm_backward(
                    x,
                    g,
                    &wk.mean,
                    &wk.rstd,
                    &self.gamma,
                    &wk.dxn,
                    d,
                    &mut wk.dgamma,
                    &mut wk.dbeta,
                )?;
                wk.norm_scratch = own;
            }
            (BlockNorm::Length, Some(d)) => {
                d.resize(g.len(), 0.0);
                be.sample_norm_backward(x, g, &wk.inv, &wk.dxn, d, &mut wk.norm_scratch)?;
            }
            (BlockNorm::None, Some(d)) => {
                d.clear();
                d.extend_from_slice(&wk.dxn);
            }
            (_, None) => {}
        }
        Ok(())
    }

    /// Apply the last backward's gradients with the optimiser state `slot`
    /// (0: the block's own loss, 1: the next block's loss under OLU).
    pub fn apply(&mut self, be: &CpuBackend, slot: usize) -> Result<()> {
        let slots = self.opt.len();
        let o = self
            .opt
            .get_mut(slot)
            .ok_or_else(|| Error::Config(format!("optimiser slot {slot} of a block with {slots}")))?;
        o.w.step(be, &mut self.w, &self.work.dw)?;
        if self.norm == BlockNorm::Batch {
            o.gamma.step(be, &mut self.gamma, &self.work.dgamma)?;
            o.beta.step(be, &mut self.beta, &self.work.dbeta)?;
        }
        Ok(())
    }

    /// The last backward's gradients (dW, dγ, dβ), for tests.
    pub fn grads(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.work.dw, &self.work.dgamma, &self.work.dbeta)
    }
}

/// Copy `n` images (image-major C·H·W, image b taken from `order(b)`)
/// into the first C channel planes of a CNHW buffer of batch `n`.
pub(crate) fn images_to_cnhw(
    images: &[f32],
    (c, h, w): (usize, usize, usize),
    n: usize,
    order: impl Fn(usize) -> usize,
    out: &mut [f32],
) {
    let hw = h * w;
    for ci in 0..c {
        for b in 0..n {
            let src = &images[order(b) * c * hw + ci * hw..][..hw];
            out[(ci * n + b) * hw..][..hw].copy_from_slice(src);
        }
    }
}

/// Forward `blocks` in order on `input` (geometry `g0`), each on the
/// previous block's output of the same pass.
pub(crate) fn forward_blocks(
    be: &CpuBackend,
    blocks: &mut [ConvBlock],
    input: &[f32],
    g0: Cnhw,
    train: bool,
    momentum: f32,
    eps: (f32, f32),
) -> Result<()> {
    let mut g = g0;
    for k in 0..blocks.len() {
        let (prev, rest) = blocks.split_at_mut(k);
        let x = if k == 0 { input } else { prev[k - 1].output() };
        rest[0].forward(be, x, g, train, momentum, eps)?;
        g = rest[0].out_geom(g);
    }
    Ok(())
}

/// Index of the label embedding's Philox init stream (after any block's).
pub const EMBEDDING_INIT_STREAM: u32 = 1 << 16;

/// A convolutional FF network with a learned label channel.
#[derive(Clone, Debug)]
pub struct ConvFfNet {
    pub config: ConvFfConfig,
    /// Image shape (channels, height, width), without the label channel.
    pub image: (usize, usize, usize),
    pub classes: usize,
    /// classes × (H·W): one learned map per class.
    pub embedding: Vec<f32>,
    pub blocks: Vec<ConvBlock>,
    emb_opt: OptState,
    /// Training steps taken (OLU parity).
    pub steps: u64,
    input: Vec<f32>,
    ylab: Vec<u32>,
    dldg: Vec<f32>,
    dout: Vec<f32>,
    dmid: Vec<f32>,
    demb: Vec<f32>,
    loss_scratch: LossScratch,
    scores: Vec<f32>,
}

impl ConvFfNet {
    pub fn new(config: ConvFfConfig, image: (usize, usize, usize), classes: usize, seed: u64) -> Result<Self> {
        config.validate(image).map_err(Error::Config)?;
        if classes < 2 {
            return Err(Error::Config(format!("a conv FF net needs at least 2 classes, got {classes}")));
        }
        let mut blocks = Vec::new();
        let mut cin = image.0 + 1;
        for (k, &c) in config.channels.iter().enumerate() {
            let pool = config.pool.contains(&k);
            let slots = if config.olu { 2 } else { 1 };
            blocks.push(ConvBlock::new(cin, c, pool, config.norm, &config.optim, slots, seed, k as u32));
            cin = c;
        }
        let hw = image.1 * image.2;
        let mut embedding = vec![0.0f32; classes * hw];
        Philox::new(seed, stream::init(EMBEDDING_INIT_STREAM)).fill_uniform(&mut embedding, -1.0, 1.0);
        Ok(Self {
            emb_opt: OptState::new(&config.optim, embedding.len()),
            config,
            image,
            classes,
            embedding,
            blocks,
            steps: 0,
            input: Vec::new(),
            ylab: Vec::new(),
            dldg: Vec::new(),
            dout: Vec::new(),
            dmid: Vec::new(),
            demb: Vec::new(),
            loss_scratch: LossScratch::default(),
            scores: Vec::new(),
        })
    }

    fn image_dim(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }

    fn ff_loss(&self) -> FfLoss {
        match self.config.loss {
            LossKind::Threshold => FfLoss::Threshold { theta: self.config.theta },
            LossKind::Symba => FfLoss::Symba { alpha: self.config.alpha },
        }
    }

    fn eps(&self) -> (f32, f32) {
        (self.config.bn_eps, self.config.norm_eps)
    }

    /// Build the CNHW input: images (`n` × C·H·W, image-major) for the
    /// batch `order` (indices into images) and the label channel for
    /// `self.ylab`.
    fn build_input(&mut self, be: &CpuBackend, images: &[f32], order: impl Fn(usize) -> usize) -> Result<Cnhw> {
        let (c, h, w) = self.image;
        let n = self.ylab.len();
        let g = Cnhw::new(c + 1, n, h, w);
        self.input.resize(g.len(), 0.0);
        images_to_cnhw(images, self.image, n, order, &mut self.input);
        be.label_channel(&self.embedding, h * w, &self.ylab, &mut self.input[c * n * h * w..])?;
        Ok(g)
    }

    /// Forward every block on the current input.
    fn forward_all(&mut self, be: &CpuBackend, g0: Cnhw, train: bool) -> Result<()> {
        let eps = self.eps();
        forward_blocks(be, &mut self.blocks, &self.input, g0, train, self.config.bn_momentum, eps)
    }

    /// Loss of block k on the current batch; writes dL/dG into self.dldg.
    fn block_loss(&mut self, be: &CpuBackend, k: usize, g_in: Cnhw) -> Result<LayerStats> {
        let b = &self.blocks[k];
        let go = b.out_geom(g_in);
        let d = go.per_image();
        let g = b.sumsq();
        self.dldg.resize(g.len(), 0.0);
        let loss = be.ff_loss(self.ff_loss(), GoodnessForm::Mean, d, g, &mut self.dldg, &mut self.loss_scratch)?;
        let n = g.len() / 2;
        let mean = |s: &[f32]| s.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64 / d as f64;
        let st = LayerStats { loss, g_pos: mean(&g[..n]) as f32, g_neg: mean(&g[n..]) as f32, aux: f32::NAN };
        if !loss.is_finite() {
            return Err(Error::NonFinite { layer: k, loss });
        }
        Ok(st)
    }

    /// Train block `upper` with its own loss and, when `lower` is given,
    /// also block `lower = upper − 1` (OLU); `emb` trains the embedding
    /// through block 0 (upper = 0).
    fn update(&mut self, be: &CpuBackend, geoms: &[Cnhw], upper: usize, lower: bool, emb: bool) -> Result<LayerStats> {
        let st = self.block_loss(be, upper, geoms[upper])?;
        let go = self.blocks[upper].out_geom(geoms[upper]);
        self.dout.resize(go.len(), 0.0);
        be.block_local_grad(self.blocks[upper].output(), go, &self.dldg, &mut self.dout)?;
        let (prev, rest) = self.blocks.split_at_mut(upper);
        let x = if upper == 0 { &self.input[..] } else { prev[upper - 1].output() };
        let want_dx = lower || emb;
        let mut dmid = std::mem::take(&mut self.dmid);
        rest[0].backward(be, x, &self.dout, want_dx.then_some(&mut dmid))?;
        rest[0].apply(be, 0)?;
        if lower {
            let (pp, low) = prev.split_at_mut(upper - 1);
            let xl = if upper == 1 { &self.input[..] } else { pp[upper - 2].output() };
            low[0].backward(be, xl, &dmid, None)?;
            low[0].apply(be, 1)?;
        }
        if emb {
            let (c, h, w) = self.image;
            let n = geoms[0].n;
            let hw = h * w;
            self.demb.resize(self.embedding.len(), 0.0);
            be.label_channel_grad(&dmid[c * n * hw..(c + 1) * n * hw], hw, &self.ylab, &mut self.demb)?;
            self.emb_opt.step(be, &mut self.embedding, &self.demb)?;
        }
        self.dmid = dmid;
        Ok(st)
    }

    /// One training step on `n` images (n × C·H·W, image-major, already
    /// augmented and normalised) with labels and wrong labels.
    pub fn train_batch(&mut self, be: &CpuBackend, images: &[f32], labels: &[u8], neg: &[u8]) -> Result<BatchStats> {
        let n = labels.len();
        check_batch(images.len(), self.image_dim(), labels, neg, self.classes)?;
        self.ylab.clear();
        self.ylab.extend(labels.iter().chain(neg).map(|&l| l as u32));
        let g0 = self.build_input(be, images, |b| if b < n { b } else { b - n })?;
        self.forward_all(be, g0, true)?;
        let nb = self.blocks.len();
        let mut geoms = vec![g0];
        for k in 0..nb - 1 {
            let g = self.blocks[k].out_geom(geoms[k]);
            geoms.push(g);
        }
        let mut stats = BatchStats { layers: vec![None; nb], readout_loss: None };
        if self.config.olu {
            let odd = self.steps % 2 == 1;
            let mut k = if odd { 0 } else { 1 };
            while k < nb {
                stats.layers[k] = Some(self.update(be, &geoms, k, k >= 1, k == 0)?);
                k += 2;
            }
        } else {
            for k in 0..nb {
                stats.layers[k] = Some(self.update(be, &geoms, k, false, k == 0)?);
            }
        }
        self.steps += 1;
        Ok(stats)
    }

    /// Predict `n` images (image-major, normalised) in chunks of `chunk`:
    /// each image runs once per label in evaluation mode.
    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim();
        check_images(images.len(), n, di)?;
        let (nb, c) = (self.blocks.len(), self.classes);
        let sel: Vec<usize> =
            if self.config.predict_blocks.is_empty() { vec![nb - 1] } else { self.config.predict_blocks.clone() };
        let mut p = Predictions { per_layer: vec![Vec::with_capacity(n); nb], ..Default::default() };
        let chunk = chunk.max(1);
        for s in (0..n).step_by(chunk) {
            let m = chunk.min(n - s);
            // scores[b][l][k]
            self.scores.resize(m * c * nb, 0.0);
            for l in 0..c {
                self.ylab.clear();
                self.ylab.resize(m, l as u32);
                let g0 = self.build_input(be, &images[s * di..(s + m) * di], |b| b)?;
                self.forward_all(be, g0, false)?;
                let mut g = g0;
                for k in 0..nb {
                    let go = self.blocks[k].out_geom(g);
                    let d = go.per_image() as f32;
                    for b in 0..m {
                        self.scores[(b * c + l) * nb + k] = self.blocks[k].sumsq()[b] / d;
                    }
                    g = go;
                }
            }
            let mut row = vec![0.0f32; c];
            for b in 0..m {
                for k in 0..nb {
                    for (l, r) in row.iter_mut().enumerate() {
                        *r = self.scores[(b * c + l) * nb + k];
                    }
                    p.per_layer[k].push(argmax(&row) as u8);
                }
                for (l, r) in row.iter_mut().enumerate() {
                    let mut t = 0.0f32;
                    for &k in &sel {
                        t = t + self.scores[(b * c + l) * nb + k];
                    }
                    *r = t;
                }
                p.goodness.push(argmax(&row) as u8);
            }
        }
        p.overall = p.goodness.clone();
        Ok(p)
    }

    /// Every parameter and running statistic as a named tensor.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let (_, h, w) = self.image;
        let emb = Tensor::from_vec(&[self.classes, h, w], self.embedding.clone()).expect("shape");
        let mut out = vec![("embedding".to_string(), emb)];
        out.extend(block_tensors(&self.blocks));
        out
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, mut get: impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        for (name, want) in self.named_tensors() {
            let v = fetch_tensor(&mut get, &name, want.shape())?;
            if name == "embedding" {
                self.embedding = v;
            } else {
                *block_field(&mut self.blocks, &name) = v;
            }
        }
        Ok(())
    }
}

/// The blocks' tensors: `blocks.{k}.weight` (Cout × Cin × 3 × 3) and, with
/// batch norm, `blocks.{k}.bn.{weight,bias,running_mean,running_var}`.
pub(crate) fn block_tensors(blocks: &[ConvBlock]) -> Vec<(String, Tensor)> {
    let t = |shape: &[usize], v: &[f32]| Tensor::from_vec(shape, v.to_vec()).expect("shape");
    let mut out = Vec::new();
    for (k, b) in blocks.iter().enumerate() {
        out.push((format!("blocks.{k}.weight"), t(&[b.cout, b.cin, 3, 3], &b.w)));
        if b.norm == BlockNorm::Batch {
            out.push((format!("blocks.{k}.bn.weight"), t(&[b.cin], &b.gamma)));
            out.push((format!("blocks.{k}.bn.bias"), t(&[b.cin], &b.beta)));
            out.push((format!("blocks.{k}.bn.running_mean"), t(&[b.cin], &b.running_mean)));
            out.push((format!("blocks.{k}.bn.running_var"), t(&[b.cin], &b.running_var)));
        }
    }
    out
}

/// Tensor `name` from `get`, checked against the shape this architecture
/// needs.
pub(crate) fn fetch_tensor(
    get: &mut impl FnMut(&str) -> Result<Tensor>,
    name: &str,
    want: &[usize],
) -> Result<Vec<f32>> {
    let t = get(name)?;
    if t.shape() != want {
        return Err(Error::Checkpoint {
            what: name.to_string(),
            detail: format!("shape {:?}, this architecture needs {want:?}", t.shape()),
        });
    }
    Ok(t.into_vec())
}

/// The buffer behind a name produced by [`block_tensors`].
pub(crate) fn block_field<'a>(blocks: &'a mut [ConvBlock], name: &str) -> &'a mut Vec<f32> {
    let rest = name.strip_prefix("blocks.").expect("named by block_tensors");
    let (k, field) = rest.split_once('.').expect("named by block_tensors");
    let b = &mut blocks[k.parse::<usize>().expect("index")];
    match field {
        "weight" => &mut b.w,
        "bn.weight" => &mut b.gamma,
        "bn.bias" => &mut b.beta,
        "bn.running_mean" => &mut b.running_mean,
        _ => &mut b.running_var,
    }
}
