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

use crate::checks::{check_batch, check_images};
use crate::config::{LossKind, OptimConfig};
use crate::optim::OptState;
use crate::predict::Predictions;
use crate::state::StateIo;
use crate::stats::{BatchStats, Entry, StatLog};
use crate::tensors::{fetch_into, to_tensor, TensorSource};
use crate::{Error, Result};
use ffwd_kernels::{argmax, Backend, BnGrads, BnStats, Cnhw, ConvBackward, FfLoss, GoodnessForm, Len, LossOut, MeanOf};
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
struct BlockOpt<B: Backend> {
    w: OptState<B>,
    gamma: OptState<B>,
    beta: OptState<B>,
}

/// Buffers of one block's last forward and backward (generic over the
/// buffer, position and scratch types so that they derive their defaults).
#[derive(Clone, Debug, Default)]
struct BlockWork<T, I, C, N> {
    /// Geometry of the block input.
    gin: Option<Cnhw>,
    xn: T,
    mean: T,
    var: T,
    rstd: T,
    inv: T,
    /// ReLU output before the pool.
    r: T,
    /// Pooled output (empty when the block does not pool).
    pooled: T,
    idx: I,
    /// Per-image sum of squares of the output.
    g: T,
    dr: T,
    dxn: T,
    dw: T,
    dgamma: T,
    dbeta: T,
    conv: C,
    norm_scratch: N,
}

/// The buffers a block needs only while it runs — its backward's
/// gradients of the ReLU (through the pool) and the conv input, and the
/// conv's scratch. A network keeps one set
/// and lends it to each block in turn ([`ConvBlock::with_lent`]) instead of
/// keeping a set per block: the same values, in a fraction of the memory
/// (the largest block's share, not the sum).
#[derive(Clone, Debug, Default)]
pub struct LentWork<T, C> {
    dr: T,
    dxn: T,
    conv: C,
}

/// [`LentWork`] of a backend.
pub type Lent<B> = LentWork<<B as ffwd_kernels::Storage>::Buf, <B as ffwd_kernels::ConvOps>::ConvScratch>;

type Work<B> = BlockWork<
    <B as ffwd_kernels::Storage>::Buf,
    <B as ffwd_kernels::PoolOps>::PoolIdx,
    <B as ffwd_kernels::ConvOps>::ConvScratch,
    <B as ffwd_kernels::Norm2dOps>::NormScratch,
>;

/// One block: norm → conv 3×3 → ReLU → [max-pool].
#[derive(Clone, Debug)]
pub struct ConvBlock<B: Backend> {
    pub cin: usize,
    pub cout: usize,
    pub pool: bool,
    pub norm: BlockNorm,
    /// Cout × (Cin·9), k = ci·9 + ky·3 + kx.
    pub w: B::Buf,
    pub gamma: B::Buf,
    pub beta: B::Buf,
    pub running_mean: B::Buf,
    pub running_var: B::Buf,
    /// One optimiser state per pair the block trains in (OLU: 2).
    opt: Vec<BlockOpt<B>>,
    work: Work<B>,
}

/// What a block's forward does besides computing: training (batch
/// statistics, which also move the running ones with `momentum`) or
/// evaluation (the running statistics); the ε of batch norm and of the
/// length norm; whether it computes the output's goodness (FF needs it;
/// the backprop CNN and the CAE cell do not, and skip that pass).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockMode {
    pub train: bool,
    pub momentum: f32,
    pub bn_eps: f32,
    pub norm_eps: f32,
    pub goodness: bool,
}

impl<B: Backend> ConvBlock<B> {
    /// PyTorch-style init: W uniform in ±1/√(Cin·9) from the Philox stream
    /// `init(index)`; γ = 1, β = 0; running mean 0, variance 1. `slots`
    /// optimiser states (2 under OLU: the block's own pair and the next
    /// block's; else 1).
    pub fn new(
        be: &B,
        (cin, cout, pool, norm): (usize, usize, bool, BlockNorm),
        optim: &OptimConfig,
        slots: usize,
        (seed, index): (u64, u32),
    ) -> Result<Self> {
        let bound = 1.0 / ((cin * 9) as f32).sqrt();
        let mut w = ffwd_kernels::try_zeros(cout * cin * 9)?;
        Philox::new(seed, stream::init(index)).fill_uniform(&mut w, -bound, bound);
        let opt = (0..slots.max(1))
            .map(|_| {
                Ok(BlockOpt {
                    w: OptState::new(be, optim, w.len())?,
                    gamma: OptState::new(be, &optim.for_biases(), cin)?,
                    beta: OptState::new(be, &optim.for_biases(), cin)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let up = |v: &[f32]| -> Result<B::Buf> {
            let mut b = B::Buf::default();
            be.upload(v, &mut b)?;
            Ok(b)
        };
        Ok(Self {
            cin,
            cout,
            pool,
            norm,
            opt,
            w: up(&w)?,
            gamma: up(&vec![1.0; cin])?,
            beta: be.zeros(cin)?,
            running_mean: be.zeros(cin)?,
            running_var: up(&vec![1.0; cin])?,
            work: BlockWork::default(),
        })
    }

    /// Save or load the optimiser states of every slot: `{prefix}.opt{s}.weight.*`,
    /// `….bn.weight.*`, `….bn.bias.*`.
    pub fn walk_state(&mut self, be: &B, io: &mut StateIo<'_>, prefix: &str) -> Result<()> {
        for (s, o) in self.opt.iter_mut().enumerate() {
            o.w.walk_state(be, io, &format!("{prefix}.opt{s}.weight"), None)?;
            o.gamma.walk_state(be, io, &format!("{prefix}.opt{s}.bn.weight"), None)?;
            o.beta.walk_state(be, io, &format!("{prefix}.opt{s}.bn.bias"), None)?;
        }
        Ok(())
    }

    /// Geometry of the output for an input geometry.
    pub fn out_geom(&self, g: Cnhw) -> Cnhw {
        let (h, w) = if self.pool { (g.h / 2, g.w / 2) } else { (g.h, g.w) };
        Cnhw::new(self.cout, g.n, h, w)
    }

    /// The last forward's output (CNHW).
    pub fn output(&self) -> &B::Buf {
        if self.pool {
            &self.work.pooled
        } else {
            &self.work.r
        }
    }

    /// Per-image sum of squares of the output of the last forward that
    /// computed it ([`BlockMode::goodness`]).
    pub fn sumsq(&self) -> &B::Buf {
        &self.work.g
    }

    /// Run `f` on the block with the network's shared temporaries `lent`
    /// in place of its own (see [`LentWork`]); they go back afterwards.
    pub fn with_lent<R>(&mut self, lent: &mut Lent<B>, f: impl FnOnce(&mut Self) -> R) -> R {
        self.swap_lent(lent);
        let r = f(self);
        self.swap_lent(lent);
        r
    }

    fn swap_lent(&mut self, lent: &mut Lent<B>) {
        let w = &mut self.work;
        std::mem::swap(&mut w.dr, &mut lent.dr);
        std::mem::swap(&mut w.dxn, &mut lent.dxn);
        std::mem::swap(&mut w.conv, &mut lent.conv);
    }

    /// Forward `x` (CNHW `g`).
    pub fn forward(&mut self, be: &B, x: &B::Buf, g: Cnhw, mode: BlockMode) -> Result<()> {
        self.work.gin = Some(g);
        self.normalize(be, x, g, mode)?;
        let wk = &mut self.work;
        be.conv3x3_forward(&wk.xn, g, &self.w, self.cout, &mut wk.r, &mut wk.conv)?;
        self.finish(be, g, mode.goodness)
    }

    /// The block's input normalisation of `x` into the work buffer.
    fn normalize(&mut self, be: &B, x: &B::Buf, g: Cnhw, mode: BlockMode) -> Result<()> {
        let wk = &mut self.work;
        match self.norm {
            BlockNorm::Batch => {
                if mode.train {
                    be.batchnorm_stats(x, g, mode.bn_eps, &mut wk.mean, &mut wk.var, &mut wk.rstd)?;
                    be.batchnorm_update_running(
                        &wk.mean,
                        &wk.var,
                        g.row(),
                        mode.momentum,
                        &mut self.running_mean,
                        &mut self.running_var,
                    )?;
                } else {
                    be.copy(&self.running_mean, &mut wk.mean)?;
                    be.bn_rstd(&self.running_var, mode.bn_eps, &mut wk.rstd)?;
                }
                let stats = BnStats { mean: &wk.mean, rstd: &wk.rstd };
                be.batchnorm_apply(x, g, stats, &self.gamma, &self.beta, &mut wk.xn)?;
            }
            BlockNorm::Length => be.sample_norm_forward(x, g, mode.norm_eps, &mut wk.xn, &mut wk.inv)?,
            BlockNorm::None => be.copy(x, &mut wk.xn)?,
        }
        Ok(())
    }

    /// ReLU, pool and (with `goodness`) goodness of the conv output in the
    /// work buffer.
    fn finish(&mut self, be: &B, g: Cnhw, goodness: bool) -> Result<()> {
        let wk = &mut self.work;
        let pool = self.pool.then_some((&mut wk.pooled, &mut wk.idx));
        be.relu_pool_sumsq(&mut wk.r, g.with_channels(self.cout), pool, goodness.then_some(&mut wk.g))?;
        Ok(())
    }

    /// Whether evaluation passes whose inputs differ only in the last
    /// channel can share the conv's chains over the other channels
    /// ([`ConvBlock::eval_prefix`]): with batch norm (running statistics,
    /// channel by channel) or none, not with the length norm, which mixes
    /// the channels.
    pub fn shares_prefix(&self) -> bool {
        self.norm != BlockNorm::Length
    }

    /// Evaluation: the conv's fma chains over every input channel but the
    /// last, into `shared`, for [`ConvBlock::forward_from_prefix`].
    pub fn eval_prefix(&mut self, be: &B, x: &B::Buf, g: Cnhw, mode: BlockMode, shared: &mut B::Buf) -> Result<()> {
        self.check_prefix(g, mode)?;
        self.normalize(be, x, g, mode)?;
        let wk = &mut self.work;
        be.conv3x3_forward_channels(&wk.xn, g, &self.w, self.cout, (0..g.c - 1, false), shared, &mut wk.conv)?;
        Ok(())
    }

    /// Evaluation forward of `x` from `shared`, the [`ConvBlock::eval_prefix`]
    /// of an input that differs from `x` at most in the last channel: the
    /// last channel's k steps continue the shared chains, so the bits are
    /// [`ConvBlock::forward`]'s.
    pub fn forward_from_prefix(&mut self, be: &B, x: &B::Buf, g: Cnhw, mode: BlockMode, shared: &B::Buf) -> Result<()> {
        self.check_prefix(g, mode)?;
        self.work.gin = Some(g);
        self.normalize(be, x, g, mode)?;
        let wk = &mut self.work;
        be.copy(shared, &mut wk.r)?;
        be.conv3x3_forward_channels(&wk.xn, g, &self.w, self.cout, (g.c - 1..g.c, true), &mut wk.r, &mut wk.conv)?;
        self.finish(be, g, mode.goodness)
    }

    fn check_prefix(&self, g: Cnhw, mode: BlockMode) -> Result<()> {
        if mode.train || !self.shares_prefix() || g.c < 2 {
            return Err(Error::Config(format!(
                "a shared conv prefix needs evaluation, batch norm or none, and 2 or more input channels (train {}, {:?}, {} channels)",
                mode.train, self.norm, g.c
            )));
        }
        Ok(())
    }

    /// Gradients of the parameters from `dout` (gradient w.r.t. the last
    /// forward's output; `x` is that forward's input); with `dx`, also the
    /// gradient w.r.t. the input.
    pub fn backward(&mut self, be: &B, x: &B::Buf, dout: &B::Buf, dx: Option<&mut B::Buf>) -> Result<()> {
        let wk = &mut self.work;
        let g = wk.gin.ok_or_else(|| Error::Config("block backward before forward".into()))?;
        let gc = g.with_channels(self.cout);
        // ReLU: r > 0 exactly where the pre-activation was > 0.
        if self.pool {
            be.maxpool2_relu_backward(dout, &wk.idx, &wk.pooled, gc, &mut wk.dr)?;
        } else {
            be.relu_backward(&wk.r, dout, &mut wk.dr)?;
        }
        let need_dxn = dx.is_some() || self.norm == BlockNorm::Batch;
        let conv = ConvBackward { x: &wk.xn, g, w: &self.w, cout: self.cout, dy: &wk.dr };
        be.conv3x3_backward(conv, &mut wk.dw, need_dxn.then_some(&mut wk.dxn), &mut wk.conv)?;
        match (self.norm, dx) {
            (BlockNorm::Batch, dx) => {
                // Without a consumer only dγ and dβ are worked out.
                let stats = BnStats { mean: &wk.mean, rstd: &wk.rstd };
                let grads = BnGrads { dx, dgamma: &mut wk.dgamma, dbeta: &mut wk.dbeta };
                be.batchnorm_backward(x, g, stats, &self.gamma, &wk.dxn, grads)?;
            }
            (BlockNorm::Length, Some(d)) => {
                be.sample_norm_backward(x, g, &wk.inv, &wk.dxn, d, &mut wk.norm_scratch)?;
            }
            (BlockNorm::None, Some(d)) => be.copy(&wk.dxn, d)?,
            (_, None) => {}
        }
        Ok(())
    }

    /// Apply the last backward's gradients with the optimiser state `slot`
    /// (0: the block's own loss, 1: the next block's loss under OLU).
    pub fn apply(&mut self, be: &B, slot: usize) -> Result<()> {
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
    pub fn grads(&self) -> (&B::Buf, &B::Buf, &B::Buf) {
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
/// previous block's output of the same pass, each with the temporaries
/// `lent`.
pub(crate) fn forward_blocks<B: Backend>(
    be: &B,
    blocks: &mut [ConvBlock<B>],
    (input, g0): (&B::Buf, Cnhw),
    mode: BlockMode,
    lent: &mut Lent<B>,
) -> Result<()> {
    let mut g = g0;
    for k in 0..blocks.len() {
        let (prev, rest) = blocks.split_at_mut(k);
        let x = if k == 0 { input } else { prev[k - 1].output() };
        rest[0].with_lent(lent, |b| b.forward(be, x, g, mode))?;
        g = rest[0].out_geom(g);
    }
    Ok(())
}

/// Index of the label embedding's Philox init stream (after any block's).
pub const EMBEDDING_INIT_STREAM: u32 = 1 << 16;

/// A convolutional FF network with a learned label channel.
#[derive(Clone, Debug)]
pub struct ConvFfNet<B: Backend> {
    be: B,
    pub config: ConvFfConfig,
    /// Image shape (channels, height, width), without the label channel.
    pub image: (usize, usize, usize),
    pub classes: usize,
    /// classes × (H·W): one learned map per class.
    pub embedding: B::Buf,
    pub blocks: Vec<ConvBlock<B>>,
    emb_opt: OptState<B>,
    /// Training steps taken (OLU parity).
    pub steps: u64,
    input: B::Buf,
    ylab: B::Ids,
    host_ylab: Vec<u32>,
    dldg: B::Buf,
    dout: B::Buf,
    dmid: B::Buf,
    demb: B::Buf,
    loss_scratch: B::LossScratch,
    scores: Vec<f32>,
    /// Evaluation: the first block's conv over the image channels, shared
    /// by the label passes.
    shared: B::Buf,
    log: StatLog<B::Buf>,
    lent: Lent<B>,
}

impl<B: Backend> ConvFfNet<B> {
    pub fn new(be: B, config: ConvFfConfig, image: (usize, usize, usize), classes: usize, seed: u64) -> Result<Self> {
        config.validate(image).map_err(Error::Config)?;
        if classes < 2 {
            return Err(Error::Config(format!("a conv FF net needs at least 2 classes, got {classes}")));
        }
        let mut blocks = Vec::new();
        let mut cin = image.0 + 1;
        for (k, &c) in config.channels.iter().enumerate() {
            let pool = config.pool.contains(&k);
            let slots = if config.olu { 2 } else { 1 };
            blocks.push(ConvBlock::new(&be, (cin, c, pool, config.norm), &config.optim, slots, (seed, k as u32))?);
            cin = c;
        }
        let hw = image.1 * image.2;
        let mut emb = ffwd_kernels::try_zeros(classes * hw)?;
        Philox::new(seed, stream::init(EMBEDDING_INIT_STREAM)).fill_uniform(&mut emb, -1.0, 1.0);
        let mut embedding = B::Buf::default();
        be.upload(&emb, &mut embedding)?;
        let nb = blocks.len();
        Ok(Self {
            emb_opt: OptState::new(&be, &config.optim, emb.len())?,
            be,
            config,
            image,
            classes,
            embedding,
            blocks,
            steps: 0,
            input: B::Buf::default(),
            ylab: B::Ids::default(),
            host_ylab: Vec::new(),
            dldg: B::Buf::default(),
            dout: B::Buf::default(),
            dmid: B::Buf::default(),
            demb: B::Buf::default(),
            loss_scratch: B::LossScratch::default(),
            scores: Vec::new(),
            log: StatLog::new(nb, None),
            shared: B::Buf::default(),
            lent: Lent::<B>::default(),
        })
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.be
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

    fn mode(&self, train: bool) -> BlockMode {
        BlockMode {
            train,
            momentum: self.config.bn_momentum,
            bn_eps: self.config.bn_eps,
            norm_eps: self.config.norm_eps,
            goodness: true,
        }
    }

    /// Build the CNHW input: images (`n` × C·H·W, image-major) for the
    /// batch `order` (indices into images) on the host, and the label
    /// channel for `self.host_ylab` on the backend.
    fn build_input(&mut self, images: &[f32], order: impl Fn(usize) -> usize) -> Result<Cnhw> {
        let (c, h, w) = self.image;
        let n = self.host_ylab.len();
        let g = Cnhw::new(c + 1, n, h, w);
        let image = self.image;
        self.be.upload_with(&mut self.input, g.len(), |buf| images_to_cnhw(images, image, n, order, buf))?;
        self.write_label_channel()?;
        Ok(g)
    }

    /// The current input's label channel from `self.host_ylab`.
    fn write_label_channel(&mut self) -> Result<()> {
        let (c, h, w) = self.image;
        let n = self.host_ylab.len();
        self.be.upload_ids(&self.host_ylab, &mut self.ylab)?;
        self.be.label_channel(&self.embedding, h * w, &self.ylab, &mut self.input, c * n * h * w)?;
        Ok(())
    }

    /// Forward every block on the current input.
    fn forward_all(&mut self, g0: Cnhw, train: bool) -> Result<()> {
        let mode = self.mode(train);
        forward_blocks(&self.be, &mut self.blocks, (&self.input, g0), mode, &mut self.lent)
    }

    /// Loss of block k on the current batch into the log's row at `row`;
    /// writes dL/dG into self.dldg.
    fn block_loss(&mut self, k: usize, g_in: Cnhw, row: usize) -> Result<()> {
        let b = &self.blocks[k];
        let d = b.out_geom(g_in).per_image();
        let loss = self.ff_loss();
        let g = b.sumsq();
        let slot = self.log.slot(row, k, 0, Entry::Goodness);
        self.be.ff_loss(loss, GoodnessForm::Mean, d, g, LossOut::new(&mut self.dldg, &mut self.loss_scratch, slot))?;
        let slot = self.log.slot(row, k, 1, Entry::Goodness);
        self.be.goodness_means(g, MeanOf::PerValueF64 { d }, slot)?;
        Ok(())
    }

    /// Train block `upper` with its own loss and, when `lower` is given,
    /// also block `lower = upper − 1` (OLU); `emb` trains the embedding
    /// through block 0 (upper = 0).
    fn update(&mut self, geoms: &[Cnhw], (upper, lower, emb): (usize, bool, bool), row: usize) -> Result<()> {
        self.block_loss(upper, geoms[upper], row)?;
        let be = &self.be;
        let go = self.blocks[upper].out_geom(geoms[upper]);
        be.block_local_grad(self.blocks[upper].output(), go, &self.dldg, &mut self.dout)?;
        let (prev, rest) = self.blocks.split_at_mut(upper);
        let x = if upper == 0 { &self.input } else { prev[upper - 1].output() };
        let want_dx = lower || emb;
        let (dout, dmid) = (&self.dout, &mut self.dmid);
        rest[0].with_lent(&mut self.lent, |b| b.backward(be, x, dout, want_dx.then_some(dmid)))?;
        rest[0].apply(be, 0)?;
        if lower {
            let (pp, low) = prev.split_at_mut(upper - 1);
            let xl = if upper == 1 { &self.input } else { pp[upper - 2].output() };
            let dmid = &self.dmid;
            low[0].with_lent(&mut self.lent, |b| b.backward(be, xl, dmid, None))?;
            low[0].apply(be, 1)?;
        }
        if emb {
            let (c, h, w) = self.image;
            let n = geoms[0].n;
            let hw = h * w;
            be.resize(&mut self.demb, self.embedding.len())?;
            be.label_channel_grad(&self.dmid, c * n * hw, hw, &self.ylab, &mut self.demb)?;
            self.emb_opt.step(be, &mut self.embedding, &self.demb)?;
        }
        Ok(())
    }

    /// One training step on `n` images (n × C·H·W, image-major, already
    /// augmented and normalised) with labels and wrong labels. Returns the
    /// statistics read back during the call (see `FfNet::train_batch`).
    pub fn train_batch(&mut self, images: &[f32], labels: &[u8], neg: &[u8]) -> Result<Vec<BatchStats>> {
        check_batch(images.len(), self.image_dim(), labels, neg, self.classes)?;
        let row = self.log.begin(&self.be)?;
        let r = self.train_rows(images, labels, neg, row);
        self.log.finish(&self.be, r)
    }

    fn train_rows(&mut self, images: &[f32], labels: &[u8], neg: &[u8], row: usize) -> Result<()> {
        let n = labels.len();
        self.host_ylab.clear();
        self.host_ylab.extend(labels.iter().chain(neg).map(|&l| l as u32));
        let g0 = self.build_input(images, |b| if b < n { b } else { b - n })?;
        self.forward_all(g0, true)?;
        let nb = self.blocks.len();
        let mut geoms = vec![g0];
        for k in 0..nb - 1 {
            let g = self.blocks[k].out_geom(geoms[k]);
            geoms.push(g);
        }
        if self.config.olu {
            let odd = self.steps % 2 == 1;
            let mut k = if odd { 0 } else { 1 };
            while k < nb {
                self.update(&geoms, (k, k >= 1, k == 0), row)?;
                k += 2;
            }
        } else {
            for k in 0..nb {
                self.update(&geoms, (k, false, k == 0), row)?;
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// Read back the statistics of every batch still pending on the backend.
    pub fn flush_stats(&mut self) -> Result<Vec<BatchStats>> {
        self.log.take(&self.be)
    }

    /// The goodness (sum of squares, evaluation mode) of every block for `n`
    /// images, each with its label in `labels` (the label channel has no
    /// neutral value): `n` values per block.
    pub fn goodness_of(&mut self, images: &[f32], labels: &[Option<u8>]) -> Result<Vec<Vec<f32>>> {
        let (n, di) = (labels.len(), self.image_dim());
        check_images(images.len(), n, di)?;
        self.host_ylab.clear();
        for (i, y) in labels.iter().enumerate() {
            match *y {
                Some(y) if (y as usize) < self.classes => self.host_ylab.push(y as u32),
                Some(y) => return Err(Error::Batch(format!("label {y} is not below the {} classes", self.classes))),
                None => {
                    return Err(Error::Batch(format!(
                        "image {i}: the label channel has no neutral label; give every image a label"
                    )))
                }
            }
        }
        let g0 = self.build_input(images, |b| b)?;
        self.forward_all(g0, false)?;
        self.blocks.iter().map(|b| Ok(self.be.download(b.sumsq())?)).collect()
    }

    /// Every image's goodness per label and block, as prediction compares
    /// them: `scores[(b·classes + l)·blocks + k]` = block k's sum of squares
    /// divided by its values per image, for image b (of the `m` in
    /// `images`) with label l, in evaluation mode.
    pub fn label_scores(&mut self, images: &[f32], m: usize, scores: &mut Vec<f32>) -> Result<()> {
        check_images(images.len(), m, self.image_dim())?;
        let (nb, c) = (self.blocks.len(), self.classes);
        scores.clear();
        scores.resize(m * c * nb, 0.0);
        // The images go up once per chunk; each label pass rewrites only
        // the label channel and, where the first block allows, continues
        // its image channels' chains (computed once) with that channel.
        self.host_ylab.clear();
        self.host_ylab.resize(m, 0);
        let g0 = self.build_input(images, |b| b)?;
        let mode = self.mode(false);
        let share = self.blocks[0].shares_prefix();
        if share {
            let (be, shared) = (&self.be, &mut self.shared);
            let input = &self.input;
            self.blocks[0].with_lent(&mut self.lent, |b| b.eval_prefix(be, input, g0, mode, shared))?;
        }
        for l in 0..c {
            if l > 0 {
                self.host_ylab.fill(l as u32);
                self.write_label_channel()?;
            }
            if share {
                let (be, shared, input) = (&self.be, &self.shared, &self.input);
                self.blocks[0].with_lent(&mut self.lent, |b| b.forward_from_prefix(be, input, g0, mode, shared))?;
                let (first, rest) = self.blocks.split_at_mut(1);
                let g1 = first[0].out_geom(g0);
                forward_blocks(be, rest, (first[0].output(), g1), mode, &mut self.lent)?;
            } else {
                self.forward_all(g0, false)?;
            }
            let mut g = g0;
            for k in 0..nb {
                let go = self.blocks[k].out_geom(g);
                let d = go.per_image() as f32;
                self.be.with_host(self.blocks[k].sumsq(), |ss| {
                    for b in 0..m {
                        scores[(b * c + l) * nb + k] = ss[b] / d;
                    }
                })?;
                g = go;
            }
        }
        Ok(())
    }

    /// Predict `n` images (image-major, normalised) in chunks of `chunk`:
    /// each image runs once per label in evaluation mode.
    pub fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
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
            let mut scores = std::mem::take(&mut self.scores);
            self.label_scores(&images[s * di..(s + m) * di], m, &mut scores)?;
            let mut row = vec![0.0f32; c];
            for b in 0..m {
                for k in 0..nb {
                    for (l, r) in row.iter_mut().enumerate() {
                        *r = scores[(b * c + l) * nb + k];
                    }
                    p.per_layer[k].push(argmax(&row) as u8);
                }
                for (l, r) in row.iter_mut().enumerate() {
                    let mut t = 0.0f32;
                    for &k in &sel {
                        t = t + scores[(b * c + l) * nb + k];
                    }
                    *r = t;
                }
                p.goodness.push(argmax(&row) as u8);
            }
            self.scores = scores;
        }
        p.overall = p.goodness.clone();
        Ok(p)
    }

    /// Every parameter and running statistic as a named tensor.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let (_, h, w) = self.image;
        let mut out = vec![("embedding".to_string(), to_tensor(&self.be, &[self.classes, h, w], &self.embedding)?)];
        out.extend(block_tensors(&self.be, &self.blocks)?);
        Ok(out)
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
        let (_, h, w) = self.image;
        fetch_into(&self.be, get, "embedding", &[self.classes, h, w], &mut self.embedding)?;
        load_blocks(&self.be, &mut self.blocks, get)
    }

    /// Save or load the optimiser states and the step count (which OLU
    /// pair trains next).
    pub fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
        self.emb_opt.walk_state(&self.be, io, "embedding", None)?;
        walk_blocks(&self.be, &mut self.blocks, io)?;
        io.counter("steps", &mut self.steps)
    }
}

/// The blocks' tensors: `blocks.{k}.weight` (Cout × Cin × 3 × 3) and, with
/// batch norm, `blocks.{k}.bn.{weight,bias,running_mean,running_var}`.
pub(crate) fn block_tensors<B: Backend>(be: &B, blocks: &[ConvBlock<B>]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (k, b) in blocks.iter().enumerate() {
        for (name, shape, v) in block_fields(b) {
            out.push((format!("blocks.{k}.{name}"), to_tensor(be, &shape, v)?));
        }
    }
    Ok(out)
}

/// Save or load the optimiser states of every block: `blocks.{k}.opt{s}.*`
/// for each of its slots (two under OLU).
pub(crate) fn walk_blocks<B: Backend>(be: &B, blocks: &mut [ConvBlock<B>], io: &mut StateIo<'_>) -> Result<()> {
    for (k, b) in blocks.iter_mut().enumerate() {
        b.walk_state(be, io, &format!("blocks.{k}"))?;
    }
    Ok(())
}

/// Load what [`block_tensors`] names.
pub(crate) fn load_blocks<B: Backend>(be: &B, blocks: &mut [ConvBlock<B>], get: &mut TensorSource<'_>) -> Result<()> {
    for (k, b) in blocks.iter_mut().enumerate() {
        let (cin, cout) = (b.cin, b.cout);
        let bn = b.norm == BlockNorm::Batch;
        fetch_into(be, get, &format!("blocks.{k}.weight"), &[cout, cin, 3, 3], &mut b.w)?;
        if bn {
            let fields = [
                ("bn.weight", &mut b.gamma),
                ("bn.bias", &mut b.beta),
                ("bn.running_mean", &mut b.running_mean),
                ("bn.running_var", &mut b.running_var),
            ];
            for (name, v) in fields {
                fetch_into(be, get, &format!("blocks.{k}.{name}"), &[cin], v)?;
            }
        }
    }
    Ok(())
}

/// A block's checkpoint fields: (name, shape, buffer).
fn block_fields<B: Backend>(b: &ConvBlock<B>) -> Vec<(&'static str, Vec<usize>, &B::Buf)> {
    let mut f = vec![("weight", vec![b.cout, b.cin, 3, 3], &b.w)];
    if b.norm == BlockNorm::Batch {
        f.push(("bn.weight", vec![b.cin], &b.gamma));
        f.push(("bn.bias", vec![b.cin], &b.beta));
        f.push(("bn.running_mean", vec![b.cin], &b.running_mean));
        f.push(("bn.running_var", vec![b.cin], &b.running_var));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffwd_kernels::CpuBackend;

    fn images(n: usize, seed: u32) -> Vec<f32> {
        (0..n * 3 * 8 * 8)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
            .collect()
    }

    fn net(be: CpuBackend, norm: BlockNorm) -> ConvFfNet<CpuBackend> {
        let mut cfg = ConvFfConfig::trifecta_small();
        cfg.channels = vec![4, 6, 8];
        cfg.pool = vec![0, 2];
        cfg.norm = norm;
        let mut net = ConvFfNet::new(be, cfg, (3, 8, 8), 3, 7).unwrap();
        // Two steps move the weights and the running statistics.
        for s in 0..2 {
            let labels = [0u8, 1, 2, 1, 0];
            let neg = [1u8, 2, 0, 0, 2];
            net.train_batch(&images(5, s), &labels, &neg).unwrap();
        }
        net
    }

    /// Evaluation computes the first block's image-channel chains once and
    /// continues them with each label's channel: every label's score is the
    /// bits of a full forward with that label, for batch norm and for no
    /// norm (shared) and the length norm (not shared), on both CPU kinds.
    #[test]
    fn label_passes_sharing_the_image_channels_give_the_full_forward_bits() {
        for be in [CpuBackend::scalar(), CpuBackend::best()] {
            for norm in [BlockNorm::Batch, BlockNorm::None, BlockNorm::Length] {
                let mut net = net(be, norm);
                assert_eq!(net.blocks[0].shares_prefix(), norm != BlockNorm::Length);
                let (m, c, nb) = (6, 3, 3);
                let x = images(m, 99);
                let mut scores = Vec::new();
                net.label_scores(&x, m, &mut scores).unwrap();
                let dims: Vec<f32> = {
                    let mut g = Cnhw::new(4, m, 8, 8);
                    net.blocks
                        .iter()
                        .map(|b| {
                            g = b.out_geom(g);
                            g.per_image() as f32
                        })
                        .collect()
                };
                for l in 0..c {
                    let full = net.goodness_of(&x, &vec![Some(l as u8); m]).unwrap();
                    for k in 0..nb {
                        for b in 0..m {
                            let want = full[k][b] / dims[k];
                            let got = scores[(b * c + l) * nb + k];
                            assert_eq!(got.to_bits(), want.to_bits(), "{norm:?} label {l} block {k} image {b}");
                        }
                    }
                }
            }
        }
    }

    /// The shared prefix is refused where it would change a bit.
    #[test]
    fn a_shared_prefix_is_refused_in_training_and_with_the_length_norm() {
        let be = CpuBackend::best();
        let mut net = net(be, BlockNorm::Length);
        let g = Cnhw::new(4, 2, 8, 8);
        let x = vec![0.5f32; g.len()];
        let mut buf = Vec::new();
        let mut lent = Lent::<CpuBackend>::default();
        let mode = net.mode(false);
        let e = net.blocks[0].with_lent(&mut lent, |b| b.eval_prefix(&be, &x, g, mode, &mut buf)).unwrap_err();
        assert!(e.to_string().contains("shared conv prefix"), "{e}");
        let mut net = self::net(be, BlockNorm::Batch);
        let train = net.mode(true);
        let e = net.blocks[0].with_lent(&mut lent, |b| b.eval_prefix(&be, &x, g, train, &mut buf)).unwrap_err();
        assert!(e.to_string().contains("train true"), "{e}");
    }
}
