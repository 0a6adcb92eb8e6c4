//! Unsupervised Forward-Forward (Hwang, Seo, Jung 2024): a stack of
//! self-contained unsupervised cells. Each cell learns by its own loss and
//! optimiser (AdamW by default) with gradients written by hand through its
//! own encoder and decoder; its latent, a constant to everything after it,
//! is the next cell's input. A linear softmax classifier reads the
//! concatenation of every cell's latent (its gradient never enters a cell).
//!
//! **Input normalisation.** Every cell standardises each input row
//! (`(x − μ)/√(σ² + ε)` over the row: layer norm without gain or bias) and
//! reconstructs the standardised input. For the first cell a row is an
//! image; later cells see the previous latent.
//!
//! **Cells** (latent: half the input size):
//! * `ae`: linear encoder + ReLU to d/2, linear decoder to d, MSE. ReLU
//!   keeps latents non-negative and sparse, like the FF layers they stand
//!   in for; it trains well on MNIST (see the README's results). Other
//!   activations have not been compared.
//! * `dae`: the same trained on a corrupted input against the clean one:
//!   each value is zeroed with probability `mask_prob`, then Gaussian noise
//!   of standard deviation `noise_std` is added. The Gaussian is the sum of
//!   four uniforms, centred and scaled to unit variance (Irwin–Hall; no
//!   transcendental, so exact everywhere). Draws come from the Philox
//!   stream `corruption(epoch) | cell << 32` by sample position and value
//!   index (value j of sample p: block 4(p·d + j), and word 0 of block
//!   4(p·d + j) + 2 for the mask).
//! * `cae`: conv 3×3 (C → 2C, pad 1, no bias) + ReLU + 2×2 max-pool as the
//!   encoder (latent 2C × H/2 × W/2 = half the input), nearest 2×
//!   upsampling + conv 3×3 (2C → C) as the decoder, MSE. CAE cells must
//!   come first in the stack (they need an image) and need even sides.
//! * `gan`: a discriminator D (d → d/2 ReLU → 1) and a generator G (noise
//!   of d/2 values → d/2 ReLU → d) inside the cell, trained adversarially
//!   with the non-saturating loss: D steps on `softplus(−D(x)) +
//!   softplus(D(G(ζ)))`, then G steps on `softplus(−D(G(ζ)))` through the
//!   updated D. The latent is D's hidden layer on the real input. (The
//!   paper names the GAN cell without pinning its latent; this is our
//!   construction.) The noise ζ uses the same Irwin–Hall Gaussian from the
//!   cell's stream, blocks 4(p·d/2 + j) + 1.
//!
//! **Training modes** (the trainer's `schedule`):
//! * `simultaneous` — the paper's "sequence": on every batch all cells run
//!   forward first (each on the latent of the cell before it, computed in
//!   the same pass with the current weights), then every cell and the
//!   classifier take one step.
//! * `layer-by-layer` — the paper's "separate": cell 0 is trained for the
//!   configured epochs while the others wait, then frozen; then cell 1 on
//!   cell 0's latents; …; finally the classifier alone on the frozen
//!   cells' latents. The classifier counts as the last "layer".

use crate::checks::{check_images, check_labelled};
use crate::config::{OptimConfig, OptimKind};
use crate::conv::{BlockMode, BlockNorm, ConvBlock};
use crate::ffcl::Dense;
use crate::optim::OptState;
use crate::predict::Predictions;
use crate::readout::Readout;
use crate::state::StateIo;
use crate::stats::{BatchStats, Entry, StatLog};
use crate::tensors::{fetch_into, to_tensor, TensorSource};
use crate::{Error, Result};
use ffwd_kernels::{Backend, Cnhw, ConvBackward, Epilogue, GanHalves, Mat, RngPos, StatSlot};
use ffwd_tensor::{stream, Philox, Tensor};
use serde::{Deserialize, Serialize};

/// Offset of the UFF cells' init streams: cell k's part j uses
/// `init(UFF_STREAM + 16·k + j)`.
pub const UFF_STREAM: u32 = 1 << 13;

/// ε of the input standardisation.
pub const STANDARDIZE_EPS: f32 = 1e-5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    Ae,
    Dae,
    Cae,
    Gan,
}

impl CellKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CellKind::Ae => "ae",
            CellKind::Dae => "dae",
            CellKind::Cae => "cae",
            CellKind::Gan => "gan",
        }
    }
}

/// A UFF stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UffConfig {
    pub cells: Vec<CellKind>,
    /// DAE: probability of zeroing a value.
    pub mask_prob: f32,
    /// DAE: standard deviation of the added Gaussian noise.
    pub noise_std: f32,
    /// Every cell's optimiser.
    pub optim: OptimConfig,
    /// The classifier's optimiser.
    pub classifier_optim: OptimConfig,
}

impl Default for UffConfig {
    fn default() -> Self {
        let adamw = OptimConfig { kind: OptimKind::Adamw, lr: 1e-3, weight_decay: 1e-2, ..OptimConfig::default() };
        Self {
            cells: vec![CellKind::Ae, CellKind::Ae, CellKind::Ae],
            mask_prob: 0.2,
            noise_std: 0.3,
            optim: adamw,
            classifier_optim: OptimConfig::default(),
        }
    }
}

/// Where a batch sits in the run: for the random draws of DAE and GAN cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplePos {
    pub seed: u64,
    pub epoch: u32,
    /// Position of the batch's first sample in the epoch.
    pub first: u64,
    /// The cell drawing (set by the network).
    pub cell: u32,
}

impl SamplePos {
    /// The cell's Philox stream `corruption(epoch) | cell << 32` and the
    /// batch's position in it.
    fn rng(&self) -> RngPos {
        RngPos {
            seed: self.seed,
            stream: stream::corruption(self.epoch) | ((self.cell as u64) << 32),
            first: self.first,
        }
    }
}

/// One cell's losses on a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellStats {
    /// Reconstruction MSE (AE, DAE, CAE) or the discriminator's loss (GAN).
    pub loss: f32,
    /// The generator's loss (GAN).
    pub generator_loss: Option<f32>,
}

/// Where a cell writes its losses: the loss at `at`, a GAN's generator
/// loss at `at + 1`.
struct Out<'a, T> {
    buf: &'a mut T,
    at: usize,
}

impl<T> Out<'_, T> {
    fn slot(&mut self, k: usize) -> StatSlot<'_, T> {
        StatSlot { buf: &mut *self.buf, at: self.at + k }
    }
}

/// AE and DAE.
#[derive(Clone, Debug)]
pub struct AeCell<B: Backend> {
    pub enc: Dense<B>,
    pub dec: Dense<B>,
    /// `(mask_prob, noise_std)` for a DAE.
    pub corrupt: Option<(f32, f32)>,
    xn: B::Buf,
    xc: B::Buf,
    dr: B::Buf,
    dz: B::Buf,
}

impl<B: Backend> AeCell<B> {
    fn new(be: &B, d: usize, corrupt: Option<(f32, f32)>, optim: &OptimConfig, seed: u64, base: u32) -> Result<Self> {
        Ok(Self {
            enc: Dense::new(be, (d, d / 2, true), optim, seed, base)?,
            dec: Dense::new(be, (d / 2, d, false), optim, seed, base + 1)?,
            corrupt,
            xn: B::Buf::default(),
            xc: B::Buf::default(),
            dr: B::Buf::default(),
            dz: B::Buf::default(),
        })
    }

    /// `encoded`: [`AeCell::encode`] ran last on this `x` with the current
    /// weights, so an AE's forward is already in place (a DAE's, on the
    /// corrupted input, is not).
    fn compute_grads(
        &mut self,
        be: &B,
        (x, encoded): (&B::Buf, bool),
        n: usize,
        pos: SamplePos,
        mut out: Out<'_, B::Buf>,
    ) -> Result<()> {
        let d = self.enc.din;
        let fresh = encoded && self.corrupt.is_none();
        if !fresh {
            be.standardize_rows(x, d, STANDARDIZE_EPS, &mut self.xn)?;
        }
        if let Some((p, sd)) = self.corrupt {
            be.dae_corrupt(&self.xn, d, pos.rng(), p, sd, &mut self.xc)?;
        }
        let input = if self.corrupt.is_some() { &self.xc } else { &self.xn };
        if !fresh {
            self.enc.forward(be, input, n)?;
        }
        self.dec.forward(be, self.enc.output(), n)?;
        be.mse(self.dec.output(), &self.xn, &mut self.dr, out.slot(0))?;
        self.dec.grads(be, self.enc.output(), n, &self.dr)?;
        self.dec.input_grad(be, n, &mut self.dz)?;
        self.enc.grads(be, input, n, &self.dz)
    }

    fn apply(&mut self, be: &B) -> Result<()> {
        self.enc.apply(be)?;
        self.dec.apply(be)
    }

    /// The encoder's input of the last step (standardised, corrupted for a
    /// DAE) and the clean standardised target.
    pub fn last_input(&self) -> (&B::Buf, &B::Buf) {
        (if self.corrupt.is_some() { &self.xc } else { &self.xn }, &self.xn)
    }

    fn encode(&mut self, be: &B, x: &B::Buf, n: usize) -> Result<()> {
        be.standardize_rows(x, self.enc.din, STANDARDIZE_EPS, &mut self.xn)?;
        self.enc.forward(be, &self.xn, n)
    }
}

/// The convolutional autoencoder.
#[derive(Clone, Debug)]
pub struct CaeCell<B: Backend> {
    /// Input shape (C, H, W).
    pub shape: (usize, usize, usize),
    pub enc: ConvBlock<B>,
    /// Decoder conv, C × (2C·9).
    pub wd: B::Buf,
    opt_wd: OptState<B>,
    xn: B::Buf,
    x: B::Buf,
    up: B::Buf,
    r: B::Buf,
    dr: B::Buf,
    dwd: B::Buf,
    dup: B::Buf,
    dlat: B::Buf,
    latent: B::Buf,
    scratch: B::ConvScratch,
}

/// The CAE encoder's mode: batch statistics are never used (no norm), no
/// goodness.
const CAE_MODE: BlockMode = BlockMode { train: true, momentum: 0.0, bn_eps: 0.0, norm_eps: 0.0, goodness: false };

impl<B: Backend> CaeCell<B> {
    fn new(be: &B, shape: (usize, usize, usize), optim: &OptimConfig, seed: u64, base: u32) -> Result<Self> {
        let c = shape.0;
        let enc = ConvBlock::new(be, (c, 2 * c, true, BlockNorm::None), optim, 1, (seed, base))?;
        let bound = 1.0 / ((2 * c * 9) as f32).sqrt();
        let mut wd = ffwd_kernels::try_zeros(c * 2 * c * 9)?;
        Philox::new(seed, stream::init(base + 1)).fill_uniform(&mut wd, -bound, bound);
        let mut wd_buf = B::Buf::default();
        be.upload(&wd, &mut wd_buf)?;
        Ok(Self {
            shape,
            enc,
            opt_wd: OptState::new(be, optim, wd.len())?,
            wd: wd_buf,
            xn: B::Buf::default(),
            x: B::Buf::default(),
            up: B::Buf::default(),
            r: B::Buf::default(),
            dr: B::Buf::default(),
            dwd: B::Buf::default(),
            dup: B::Buf::default(),
            dlat: B::Buf::default(),
            latent: B::Buf::default(),
            scratch: B::ConvScratch::default(),
        })
    }

    fn geoms(&self, n: usize) -> (Cnhw, Cnhw, Cnhw) {
        let (c, h, w) = self.shape;
        (Cnhw::new(c, n, h, w), Cnhw::new(2 * c, n, h / 2, w / 2), Cnhw::new(2 * c, n, h, w))
    }

    /// Standardise the images and run the encoder; the latent (image-major)
    /// lands in `self.latent`.
    fn encode(&mut self, be: &B, x: &B::Buf, n: usize) -> Result<()> {
        let (gx, gl, _) = self.geoms(n);
        be.standardize_rows(x, gx.per_image(), STANDARDIZE_EPS, &mut self.xn)?;
        be.rows_to_cnhw(&self.xn, gx, &mut self.x)?;
        self.enc.forward(be, &self.x, gx, CAE_MODE)?;
        be.cnhw_to_rows(self.enc.output(), gl, &mut self.latent)?;
        Ok(())
    }

    /// `encoded`: [`CaeCell::encode`] ran last on this `x` with the
    /// current weights, so its standardised input and latent are in place.
    fn compute_grads(
        &mut self,
        be: &B,
        (x, encoded): (&B::Buf, bool),
        n: usize,
        mut out: Out<'_, B::Buf>,
    ) -> Result<()> {
        let (gx, gl, gu) = self.geoms(n);
        if !encoded {
            self.encode(be, x, n)?;
        }
        be.upsample2_forward(self.enc.output(), gl, &mut self.up)?;
        be.conv3x3_forward(&self.up, gu, &self.wd, gx.c, &mut self.r, &mut self.scratch)?;
        be.mse(&self.r, &self.x, &mut self.dr, out.slot(0))?;
        let conv = ConvBackward { x: &self.up, g: gu, w: &self.wd, cout: gx.c, dy: &self.dr };
        be.conv3x3_backward(conv, &mut self.dwd, Some(&mut self.dup), &mut self.scratch)?;
        be.upsample2_backward(&self.dup, gl, &mut self.dlat)?;
        self.enc.backward(be, &self.x, &self.dlat, None)
    }

    fn apply(&mut self, be: &B) -> Result<()> {
        self.enc.apply(be, 0)?;
        self.opt_wd.step(be, &mut self.wd, &self.dwd)
    }

    /// The last gradients: encoder dW and decoder dW.
    pub fn grads(&self) -> (&B::Buf, &B::Buf) {
        (self.enc.grads().0, &self.dwd)
    }

    /// The standardised input of the last step (CNHW).
    pub fn last_input(&self) -> &B::Buf {
        &self.x
    }
}

/// The GAN cell.
#[derive(Clone, Debug)]
pub struct GanCell<B: Backend> {
    pub d1: Dense<B>,
    pub d2: Dense<B>,
    pub g1: Dense<B>,
    pub g2: Dense<B>,
    xn: B::Buf,
    noise: B::Buf,
    both: B::Buf,
    dlog: B::Buf,
    dh: B::Buf,
    hf: B::Buf,
    zf: B::Buf,
    dzf: B::Buf,
    dhf: B::Buf,
    dfake: B::Buf,
    dg: B::Buf,
    scratch: B::LossScratch,
}

impl<B: Backend> GanCell<B> {
    fn new(be: &B, d: usize, optim: &OptimConfig, seed: u64, base: u32) -> Result<Self> {
        let h = d / 2;
        Ok(Self {
            d1: Dense::new(be, (d, h, true), optim, seed, base)?,
            d2: Dense::new(be, (h, 1, false), optim, seed, base + 1)?,
            g1: Dense::new(be, (h, h, true), optim, seed, base + 2)?,
            g2: Dense::new(be, (h, d, false), optim, seed, base + 3)?,
            xn: B::Buf::default(),
            noise: B::Buf::default(),
            both: B::Buf::default(),
            dlog: B::Buf::default(),
            dh: B::Buf::default(),
            hf: B::Buf::default(),
            zf: B::Buf::default(),
            dzf: B::Buf::default(),
            dhf: B::Buf::default(),
            dfake: B::Buf::default(),
            dg: B::Buf::default(),
            scratch: B::LossScratch::default(),
        })
    }

    /// D's step then G's step on one batch; the D loss goes to slot 0 of
    /// `out`, the G loss to slot 1. With `apply` false the gradients are
    /// left in the layers without stepping (D's and G's gradients then
    /// both come from the same weights).
    fn step(
        &mut self,
        be: &B,
        x: &B::Buf,
        n: usize,
        pos: SamplePos,
        apply: bool,
        mut out: Out<'_, B::Buf>,
    ) -> Result<()> {
        let d = self.d1.din;
        be.standardize_rows(x, d, STANDARDIZE_EPS, &mut self.xn)?;
        be.gaussian(pos.rng(), n, self.g1.din, 1, &mut self.noise)?;
        self.g1.forward(be, &self.noise, n)?;
        self.g2.forward(be, self.g1.output(), n)?;
        // D on [real; fake]: L = mean softplus(−D(x)) + mean softplus(D(G(ζ))).
        be.resize(&mut self.both, 2 * n * d)?;
        be.copy_into(&self.xn, &mut self.both, 0)?;
        be.copy_into(self.g2.output(), &mut self.both, n * d)?;
        self.d1.forward(be, &self.both, 2 * n)?;
        self.d2.forward(be, self.d1.output(), 2 * n)?;
        be.gan_loss(self.d2.output(), GanHalves::RealThenFake, &mut self.dlog, &mut self.scratch, out.slot(0))?;
        self.d2.grads(be, self.d1.output(), 2 * n, &self.dlog)?;
        self.d2.input_grad(be, 2 * n, &mut self.dh)?;
        self.d1.grads(be, &self.both, 2 * n, &self.dh)?;
        if apply {
            self.d1.apply(be)?;
            self.d2.apply(be)?;
        }
        // G: mean softplus(−D(G(ζ))) through D (updated when applying),
        // written out so that D's own gradients stay in place.
        let h = self.d1.dout;
        let fake = Mat::new(self.g2.output(), n, d)?;
        be.gemm(fake, Mat::new(&self.d1.w, d, h)?, &mut self.hf, Epilogue::BiasRelu(&self.d1.b))?;
        be.gemm(Mat::new(&self.hf, n, h)?, Mat::new(&self.d2.w, h, 1)?, &mut self.zf, Epilogue::Bias(&self.d2.b))?;
        be.gan_loss(&self.zf, GanHalves::AllReal, &mut self.dzf, &mut self.scratch, out.slot(1))?;
        // dL/dh = dlog·W2ᵀ through the ReLU, then dL/dfake = dh·W1ᵀ.
        be.gemm(Mat::new(&self.dzf, n, 1)?, Mat::new(&self.d2.w, h, 1)?.t(), &mut self.dh, Epilogue::None)?;
        be.relu_backward(&self.hf, &self.dh, &mut self.dhf)?;
        be.gemm(Mat::new(&self.dhf, n, h)?, Mat::new(&self.d1.w, d, h)?.t(), &mut self.dfake, Epilogue::None)?;
        self.g2.grads(be, self.g1.output(), n, &self.dfake)?;
        self.g2.input_grad(be, n, &mut self.dg)?;
        self.g1.grads(be, &self.noise, n, &self.dg)?;
        if apply {
            self.g1.apply(be)?;
            self.g2.apply(be)?;
        }
        Ok(())
    }

    fn encode(&mut self, be: &B, x: &B::Buf, n: usize) -> Result<()> {
        be.standardize_rows(x, self.d1.din, STANDARDIZE_EPS, &mut self.xn)?;
        self.d1.forward(be, &self.xn, n)
    }

    /// The last step's standardised real input, generator noise and fakes.
    pub fn last_batch(&self) -> (&B::Buf, &B::Buf, &B::Buf) {
        (&self.xn, &self.noise, self.g2.output())
    }
}

/// One cell of the stack.
#[derive(Clone, Debug)]
pub enum Cell<B: Backend> {
    Ae(Box<AeCell<B>>),
    Cae(Box<CaeCell<B>>),
    Gan(Box<GanCell<B>>),
}

impl<B: Backend> Cell<B> {
    /// Values per input row.
    pub fn input_dim(&self) -> usize {
        match self {
            Cell::Ae(c) => c.enc.din,
            Cell::Cae(c) => c.shape.0 * c.shape.1 * c.shape.2,
            Cell::Gan(c) => c.d1.din,
        }
    }
    /// Values per latent row (half the input).
    pub fn latent_dim(&self) -> usize {
        self.input_dim() / 2
    }

    /// Compute the latent of `n` rows of `x` (no learning).
    pub fn encode(&mut self, be: &B, x: &B::Buf, n: usize) -> Result<()> {
        match self {
            Cell::Ae(c) => c.encode(be, x, n),
            Cell::Cae(c) => c.encode(be, x, n),
            Cell::Gan(c) => c.encode(be, x, n),
        }
    }

    /// The latent of the last [`Cell::encode`] (image-major rows).
    pub fn latent(&self) -> &B::Buf {
        match self {
            Cell::Ae(c) => c.enc.output(),
            Cell::Cae(c) => &c.latent,
            Cell::Gan(c) => c.d1.output(),
        }
    }

    /// What the cell writes into its statistics slots.
    fn entry(&self) -> Entry {
        match self {
            Cell::Gan(_) => Entry::LossAux,
            _ => Entry::Loss,
        }
    }

    /// The loss and gradients on a batch, stepping the optimisers when
    /// `apply` (a GAN's D steps before its G is trained through it).
    /// `encoded`: [`Cell::encode`] ran last on `x` with the current weights
    /// (the training step's forward), so the AE and CAE cells reuse it.
    fn run(
        &mut self,
        be: &B,
        (x, encoded): (&B::Buf, bool),
        n: usize,
        pos: SamplePos,
        apply: bool,
        out: Out<'_, B::Buf>,
    ) -> Result<()> {
        match self {
            Cell::Ae(c) => {
                c.compute_grads(be, (x, encoded), n, pos, out)?;
                if apply {
                    c.apply(be)?;
                }
            }
            Cell::Cae(c) => {
                c.compute_grads(be, (x, encoded), n, out)?;
                if apply {
                    c.apply(be)?;
                }
            }
            Cell::Gan(c) => c.step(be, x, n, pos, apply, out)?,
        }
        Ok(())
    }

    /// The cell's loss and gradients on a batch, without stepping (GAN:
    /// both D's and G's gradients from the current weights). Waits for the
    /// backend to read the losses back.
    pub fn compute_grads(&mut self, be: &B, x: &B::Buf, n: usize, pos: SamplePos) -> Result<CellStats> {
        let mut s = be.zeros(2)?;
        self.run(be, (x, false), n, pos, false, Out { buf: &mut s, at: 0 })?;
        let v = be.download(&s)?;
        let gan = matches!(self, Cell::Gan(_));
        Ok(CellStats { loss: v[0], generator_loss: gan.then_some(v[1]) })
    }

    /// The parameters as named tensors under `prefix`.
    fn tensors(&self, be: &B, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        let dense = |name: &str, l: &Dense<B>| l.tensors(be, &format!("{prefix}.{name}"));
        Ok(match self {
            Cell::Ae(c) => [dense("enc", &c.enc)?, dense("dec", &c.dec)?].concat(),
            Cell::Cae(c) => vec![
                (format!("{prefix}.enc.weight"), to_tensor(be, &[c.enc.cout, c.enc.cin, 3, 3], &c.enc.w)?),
                (format!("{prefix}.dec.weight"), to_tensor(be, &[c.shape.0, 2 * c.shape.0, 3, 3], &c.wd)?),
            ],
            Cell::Gan(c) => {
                [dense("d1", &c.d1)?, dense("d2", &c.d2)?, dense("g1", &c.g1)?, dense("g2", &c.g2)?].concat()
            }
        })
    }

    fn load(&mut self, be: &B, prefix: &str, get: &mut TensorSource<'_>) -> Result<()> {
        match self {
            Cell::Ae(c) => {
                c.enc.load(be, &format!("{prefix}.enc"), get)?;
                c.dec.load(be, &format!("{prefix}.dec"), get)
            }
            Cell::Gan(c) => {
                for (name, l) in [("d1", &mut c.d1), ("d2", &mut c.d2), ("g1", &mut c.g1), ("g2", &mut c.g2)] {
                    l.load(be, &format!("{prefix}.{name}"), get)?;
                }
                Ok(())
            }
            Cell::Cae(c) => {
                let (e, cin) = ((c.enc.cout, c.enc.cin), c.shape.0);
                fetch_into(be, get, &format!("{prefix}.enc.weight"), &[e.0, e.1, 3, 3], &mut c.enc.w)?;
                fetch_into(be, get, &format!("{prefix}.dec.weight"), &[cin, 2 * cin, 3, 3], &mut c.wd)
            }
        }
    }
}

impl<B: Backend> Cell<B> {
    /// Save or load the optimiser states under `prefix`, named as the
    /// parameters of [`Cell::tensors`].
    fn walk_state(&mut self, be: &B, io: &mut StateIo<'_>, prefix: &str) -> Result<()> {
        match self {
            Cell::Ae(c) => {
                c.enc.walk_state(be, io, &format!("{prefix}.enc"))?;
                c.dec.walk_state(be, io, &format!("{prefix}.dec"))
            }
            Cell::Gan(c) => {
                for (name, l) in [("d1", &mut c.d1), ("d2", &mut c.d2), ("g1", &mut c.g1), ("g2", &mut c.g2)] {
                    l.walk_state(be, io, &format!("{prefix}.{name}"))?;
                }
                Ok(())
            }
            Cell::Cae(c) => {
                c.enc.walk_state(be, io, &format!("{prefix}.enc"))?;
                c.opt_wd.walk_state(be, io, &format!("{prefix}.dec.weight"), None)
            }
        }
    }
}

/// Buffers of the last step, kept between steps.
#[derive(Clone, Debug, Default)]
struct Work<T> {
    input: T,
    feats: T,
    /// The inputs of the learning cells, taken before any of them steps.
    inputs: Vec<T>,
}

/// The UFF network: cells and the classifier on their latents.
#[derive(Clone, Debug)]
pub struct UffNet<B: Backend> {
    be: B,
    pub config: UffConfig,
    pub image: (usize, usize, usize),
    pub classes: usize,
    pub cells: Vec<Cell<B>>,
    pub head: Readout<B>,
    pub steps: u64,
    work: Work<B::Buf>,
    log: StatLog<B::Buf>,
}

impl<B: Backend> UffNet<B> {
    pub fn new(be: B, config: UffConfig, image: (usize, usize, usize), classes: usize, seed: u64) -> Result<Self> {
        if config.cells.is_empty() {
            return Err(Error::Config("uff.cells: at least one cell is needed".into()));
        }
        if !((0.0..1.0).contains(&config.mask_prob) && config.noise_std >= 0.0 && config.noise_std.is_finite()) {
            return Err(Error::Config("uff.mask_prob must lie in [0, 1) and uff.noise_std be ≥ 0".into()));
        }
        for (name, o) in [("optim", &config.optim), ("classifier_optim", &config.classifier_optim)] {
            if !(o.lr.is_finite() && o.lr > 0.0) {
                return Err(Error::Config(format!("uff.{name}.lr must be a positive number, got {}", o.lr)));
            }
        }
        if classes < 2 {
            return Err(Error::Config(format!("a classifier needs at least 2 classes, got {classes}")));
        }
        let mut cells = Vec::new();
        let mut shape = image;
        let mut conv_ok = true;
        for (k, &kind) in config.cells.iter().enumerate() {
            let d = shape.0 * shape.1 * shape.2;
            let base = UFF_STREAM + 16 * k as u32;
            if d < 2 {
                return Err(Error::Config(format!("uff.cells[{k}]: its input has {d} value(s); a cell halves it")));
            }
            let cell = match kind {
                CellKind::Cae => {
                    if !conv_ok {
                        return Err(Error::Config(format!(
                            "uff.cells[{k}]: a CAE cell needs an image; put CAE cells first in the stack"
                        )));
                    }
                    if !shape.1.is_multiple_of(2) || !shape.2.is_multiple_of(2) || shape.1 < 2 || shape.2 < 2 {
                        return Err(Error::Config(format!(
                            "uff.cells[{k}]: a CAE cell needs even sides, its input is {}×{}",
                            shape.1, shape.2
                        )));
                    }
                    let c = CaeCell::new(&be, shape, &config.optim, seed, base)?;
                    shape = (2 * shape.0, shape.1 / 2, shape.2 / 2);
                    Cell::Cae(Box::new(c))
                }
                other => {
                    conv_ok = false;
                    shape = (1, 1, d / 2);
                    let corrupt = (other == CellKind::Dae).then_some((config.mask_prob, config.noise_std));
                    match other {
                        CellKind::Gan => Cell::Gan(Box::new(GanCell::new(&be, d, &config.optim, seed, base)?)),
                        _ => Cell::Ae(Box::new(AeCell::new(&be, d, corrupt, &config.optim, seed, base)?)),
                    }
                }
            };
            cells.push(cell);
        }
        let f: usize = cells.iter().map(|c| c.latent_dim()).sum();
        let head = Readout::new(&be, f, classes, &config.classifier_optim)?;
        let nc = cells.len();
        Ok(Self {
            be,
            config,
            image,
            classes,
            cells,
            head,
            steps: 0,
            work: Work::default(),
            log: StatLog::new(nc, None),
        })
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.be
    }

    fn image_dim(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }

    /// Encode the uploaded images (`self.work.input`, `n` rows) through
    /// cells `0..upto`, each on the previous cell's latent.
    fn encode_upto(&mut self, n: usize, upto: usize) -> Result<()> {
        for k in 0..upto {
            let (prev, rest) = self.cells.split_at_mut(k);
            let x = if k == 0 { &self.work.input } else { prev[k - 1].latent() };
            rest[0].encode(&self.be, x, n)?;
        }
        Ok(())
    }

    /// Concatenate every cell's latent per row into `self.work.feats`.
    fn gather(&mut self, n: usize) -> Result<()> {
        let f: usize = self.cells.iter().map(|c| c.latent_dim()).sum();
        self.be.resize(&mut self.work.feats, n * f)?;
        let mut off = 0;
        for c in &self.cells {
            let d = c.latent_dim();
            self.be.put_cols(c.latent(), d, &mut self.work.feats, f, off)?;
            off += d;
        }
        Ok(())
    }

    /// One batch. `layers` selects what learns: cell indices, and
    /// `cells.len()` for the classifier (see the module's training modes).
    /// Every cell runs forward first; then the classifier on the
    /// concatenated latents; then the cells in `layers` step, each on the
    /// latent its predecessor produced in that forward. Returns the
    /// statistics read back during the call.
    pub fn train_batch(
        &mut self,
        images: &[f32],
        labels: &[u8],
        layers: std::ops::Range<usize>,
        pos: SamplePos,
    ) -> Result<Vec<BatchStats>> {
        check_labelled(images.len(), self.image_dim(), labels, self.classes)?;
        let row = self.log.begin(&self.be)?;
        let r = self.step(images, labels, layers, pos, row);
        if r.is_ok() {
            self.steps += 1;
        }
        self.log.finish(&self.be, r)
    }

    fn step(
        &mut self,
        images: &[f32],
        labels: &[u8],
        layers: std::ops::Range<usize>,
        pos: SamplePos,
        row: usize,
    ) -> Result<()> {
        let n = labels.len();
        let nc = self.cells.len();
        self.be.upload(images, &mut self.work.input)?;
        // Latents needed: every cell's for the classifier, else only those
        // feeding a learning cell (the last learning cell's is not).
        let upto = if layers.contains(&nc) { nc } else { layers.end.min(nc).saturating_sub(1) };
        self.encode_upto(n, upto)?;
        self.work.inputs.resize_with(nc, B::Buf::default);
        for k in (1..nc).filter(|k| layers.contains(k)) {
            self.be.copy(self.cells[k - 1].latent(), &mut self.work.inputs[k])?;
        }
        if layers.contains(&nc) {
            self.gather(n)?;
            self.head.train_step(&self.be, &self.work.feats, labels, self.log.slot(row, nc, 0, Entry::Loss))?;
        }
        for k in (0..nc).filter(|k| layers.contains(k)) {
            let x = if k == 0 { &self.work.input } else { &self.work.inputs[k] };
            let e = self.cells[k].entry();
            self.log.mark(k, e);
            let out = Out { at: self.log.at(row, k, 0), buf: self.log.buf_mut() };
            // Cells below `upto` were encoded above, on this input, and
            // no cell has stepped on its own weights since.
            self.cells[k].run(&self.be, (x, k < upto), n, SamplePos { cell: k as u32, ..pos }, true, out)?;
        }
        Ok(())
    }

    /// Read back the statistics of every batch still pending on the backend.
    pub fn flush_stats(&mut self) -> Result<Vec<BatchStats>> {
        self.log.take(&self.be)
    }

    /// Predict `n` images: the classifier on the concatenated latents.
    pub fn predict(&mut self, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim();
        check_images(images.len(), n, di)?;
        let mut out = Vec::with_capacity(n);
        let nc = self.cells.len();
        for s in (0..n).step_by(chunk.max(1)) {
            let m = chunk.max(1).min(n - s);
            self.be.upload(&images[s * di..(s + m) * di], &mut self.work.input)?;
            self.encode_upto(m, nc)?;
            self.gather(m)?;
            self.head.predict(&self.be, &self.work.feats, m, &mut out)?;
        }
        Ok(Predictions { overall: out.clone(), per_layer: Vec::new(), goodness: Vec::new(), readout: Some(out) })
    }

    /// The first cell's reconstruction of `n` images and the standardised
    /// images it aims at (image-major, C×H×W each); a GAN cell gives `n`
    /// generated samples instead of reconstructions.
    pub fn reconstruct(&mut self, images: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        check_images(images.len(), n, self.image_dim())?;
        let be = &self.be;
        be.upload(images, &mut self.work.input)?;
        let x = &self.work.input;
        let pos = SamplePos::default();
        match &mut self.cells[0] {
            Cell::Ae(c) => {
                // The clean input, as an AE (a DAE's corruption is for training).
                c.encode(be, x, n)?;
                c.dec.forward(be, c.enc.output(), n)?;
                Ok((be.download(c.dec.output())?, be.download(&c.xn)?))
            }
            Cell::Cae(c) => {
                let mut s = be.zeros(1)?;
                c.compute_grads(be, (x, false), n, Out { buf: &mut s, at: 0 })?;
                let g = Cnhw::new(c.shape.0, n, c.shape.1, c.shape.2);
                let (mut rr, mut xx) = (B::Buf::default(), B::Buf::default());
                be.cnhw_to_rows(&c.r, g, &mut rr)?;
                be.cnhw_to_rows(&c.x, g, &mut xx)?;
                Ok((be.download(&rr)?, be.download(&xx)?))
            }
            Cell::Gan(c) => {
                let mut s = be.zeros(2)?;
                c.step(be, x, n, pos, false, Out { buf: &mut s, at: 0 })?;
                Ok((be.download(c.g2.output())?, be.download(&c.xn)?))
            }
        }
    }

    /// `cells.{k}.*` for each cell, then `classifier.weight`, `classifier.bias`.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (k, c) in self.cells.iter().enumerate() {
            out.extend(c.tensors(&self.be, &format!("cells.{k}"))?);
        }
        out.extend(self.head.tensors(&self.be, "classifier")?);
        Ok(out)
    }

    /// Replace parameters from named tensors, checking names and shapes.
    pub fn load_tensors(&mut self, get: &mut TensorSource<'_>) -> Result<()> {
        for (k, c) in self.cells.iter_mut().enumerate() {
            c.load(&self.be, &format!("cells.{k}"), get)?;
        }
        self.head.load(&self.be, "classifier", get)
    }

    /// Save or load the cells' and the classifier's optimiser states and
    /// the step count.
    pub fn walk_state(&mut self, io: &mut StateIo<'_>) -> Result<()> {
        for (k, c) in self.cells.iter_mut().enumerate() {
            c.walk_state(&self.be, io, &format!("cells.{k}"))?;
        }
        self.head.walk_state(&self.be, io, "classifier")?;
        io.counter("steps", &mut self.steps)
    }
}

/// The probe sees every cell's latent.
impl<B: Backend> crate::probe::Features for UffNet<B> {
    fn feature_dims(&self) -> Vec<usize> {
        self.cells.iter().map(|c| c.latent_dim()).collect()
    }
    fn features(
        &mut self,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        view.only_default("UFF net", "has one view (its cells' latents, no label inputs)")?;
        check_images(images.len(), n, self.image_dim())?;
        let nc = self.cells.len();
        self.be.upload(images, &mut self.work.input)?;
        self.encode_upto(n, nc)?;
        self.gather(n)?;
        out.clear();
        self.be.with_host(&self.work.feats, |v| out.extend_from_slice(v))?;
        Ok(())
    }
}
