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

use crate::config::{OptimConfig, OptimKind};
use crate::conv::{images_to_cnhw, BlockNorm, ConvBlock};
use crate::ff::{check_images, check_labelled, BatchStats, LayerStats, Predictions};
use crate::ffcl::Dense;
use crate::optim::OptState;
use crate::readout::Readout;
use crate::{Error, Result};
use ffwd_kernels::numerics::{l32_sum, l32_sumsq};
use ffwd_kernels::{Cnhw, ConvScratch, CpuBackend, Epilogue, MatMut, MatRef, Unary};
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
    fn rng(&self) -> Philox {
        Philox::new(self.seed, stream::corruption(self.epoch) | ((self.cell as u64) << 32))
    }
}

/// A unit-variance Gaussian from four uniforms (Irwin–Hall).
fn gauss(w: [u32; 4]) -> f32 {
    let u = |x: u32| (x >> 8) as f32 * (1.0 / 16_777_216.0);
    (((u(w[0]) + u(w[1])) + (u(w[2]) + u(w[3]))) - 2.0) * 1.732_050_8
}

/// Fill `out` (n rows of d) with Gaussians: value j of the sample at
/// position p takes block `4·(p·d + j) + part` of the cell's stream
/// `corruption(epoch) | cell << 32`.
fn gaussians(pos: SamplePos, d: usize, part: u64, out: &mut [f32]) {
    let r = pos.rng();
    for (k, o) in out.iter_mut().enumerate() {
        let (i, j) = ((k / d) as u64, (k % d) as u64);
        *o = gauss(r.block(((pos.first + i) * d as u64 + j) * 4 + part));
    }
}

/// `Σ (a − b)² / len` (L32 order) and `d = 2(a − b)/len`.
fn mse(a: &[f32], b: &[f32], d: &mut Vec<f32>) -> f32 {
    d.clear();
    d.extend(a.iter().zip(b).map(|(&x, &y)| x - y));
    let loss = l32_sumsq(d) / a.len().max(1) as f32;
    let s = 2.0 / a.len().max(1) as f32;
    for v in d.iter_mut() {
        *v = *v * s;
    }
    loss
}

/// One cell's losses on a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellStats {
    /// Reconstruction MSE (AE, DAE, CAE) or the discriminator's loss (GAN).
    pub loss: f32,
    /// The generator's loss (GAN).
    pub generator_loss: Option<f32>,
}

/// AE and DAE.
#[derive(Clone, Debug)]
pub struct AeCell {
    pub enc: Dense,
    pub dec: Dense,
    /// `(mask_prob, noise_std)` for a DAE.
    pub corrupt: Option<(f32, f32)>,
    xn: Vec<f32>,
    xc: Vec<f32>,
    noise: Vec<f32>,
    dr: Vec<f32>,
    dz: Vec<f32>,
}

impl AeCell {
    fn new(d: usize, corrupt: Option<(f32, f32)>, optim: &OptimConfig, seed: u64, base: u32) -> Self {
        Self {
            enc: Dense::new(d, d / 2, true, optim, seed, base),
            dec: Dense::new(d / 2, d, false, optim, seed, base + 1),
            corrupt,
            xn: Vec::new(),
            xc: Vec::new(),
            noise: Vec::new(),
            dr: Vec::new(),
            dz: Vec::new(),
        }
    }

    /// The encoder input: the standardised rows, corrupted for a DAE.
    fn input(&mut self, pos: SamplePos, d: usize) {
        self.xc.clear();
        self.xc.extend_from_slice(&self.xn);
        if let Some((p, sd)) = self.corrupt {
            let r = pos.rng();
            self.noise.resize(self.xc.len(), 0.0);
            gaussians(pos, d, 0, &mut self.noise);
            for (k, (v, &g)) in self.xc.iter_mut().zip(&self.noise).enumerate() {
                let (i, j) = ((k / d) as u64, (k % d) as u64);
                let u = (r.block(4 * ((pos.first + i) * d as u64 + j) + 2)[0] >> 8) as f32 * (1.0 / 16_777_216.0);
                *v = if u >= p { *v } else { 0.0 } + sd * g;
            }
        }
    }

    fn compute_grads(&mut self, be: &CpuBackend, x: &[f32], n: usize, pos: SamplePos) -> Result<CellStats> {
        let d = self.enc.din;
        self.xn.resize(x.len(), 0.0);
        be.standardize_rows(x, d, STANDARDIZE_EPS, &mut self.xn)?;
        self.input(pos, d);
        self.enc.forward(be, &self.xc, n)?;
        self.dec.forward(be, self.enc.output(), n)?;
        let loss = mse(self.dec.output(), &self.xn, &mut self.dr);
        self.dec.grads(be, self.enc.output(), n, &self.dr)?;
        self.dec.input_grad(be, n, &mut self.dz)?;
        self.enc.grads(be, &self.xc, n, &self.dz)?;
        Ok(CellStats { loss, generator_loss: None })
    }

    fn apply(&mut self, be: &CpuBackend) -> Result<()> {
        self.enc.apply(be)?;
        self.dec.apply(be)
    }

    /// The encoder's input of the last step (standardised, corrupted for a
    /// DAE) and the clean standardised target.
    pub fn last_input(&self) -> (&[f32], &[f32]) {
        (&self.xc, &self.xn)
    }

    fn encode(&mut self, be: &CpuBackend, x: &[f32], n: usize) -> Result<()> {
        self.xn.resize(x.len(), 0.0);
        be.standardize_rows(x, self.enc.din, STANDARDIZE_EPS, &mut self.xn)?;
        self.enc.forward(be, &self.xn, n)
    }
}

/// The convolutional autoencoder.
#[derive(Clone, Debug)]
pub struct CaeCell {
    /// Input shape (C, H, W).
    pub shape: (usize, usize, usize),
    pub enc: ConvBlock,
    /// Decoder conv, C × (2C·9).
    pub wd: Vec<f32>,
    opt_wd: OptState,
    xn: Vec<f32>,
    x: Vec<f32>,
    up: Vec<f32>,
    r: Vec<f32>,
    dr: Vec<f32>,
    dwd: Vec<f32>,
    dup: Vec<f32>,
    dlat: Vec<f32>,
    latent: Vec<f32>,
    scratch: ConvScratch,
}

impl CaeCell {
    fn new(shape: (usize, usize, usize), optim: &OptimConfig, seed: u64, base: u32) -> Self {
        let c = shape.0;
        let enc = ConvBlock::new(c, 2 * c, true, BlockNorm::None, optim, 1, seed, base);
        let bound = 1.0 / ((2 * c * 9) as f32).sqrt();
        let mut wd = vec![0.0f32; c * 2 * c * 9];
        Philox::new(seed, stream::init(base + 1)).fill_uniform(&mut wd, -bound, bound);
        Self {
            shape,
            enc,
            opt_wd: OptState::new(optim, wd.len()),
            wd,
            xn: Vec::new(),
            x: Vec::new(),
            up: Vec::new(),
            r: Vec::new(),
            dr: Vec::new(),
            dwd: Vec::new(),
            dup: Vec::new(),
            dlat: Vec::new(),
            latent: Vec::new(),
            scratch: ConvScratch::default(),
        }
    }

    fn geoms(&self, n: usize) -> (Cnhw, Cnhw, Cnhw) {
        let (c, h, w) = self.shape;
        (Cnhw::new(c, n, h, w), Cnhw::new(2 * c, n, h / 2, w / 2), Cnhw::new(2 * c, n, h, w))
    }

    /// Standardise the images and run the encoder; the latent (image-major)
    /// lands in `self.latent`.
    fn encode(&mut self, be: &CpuBackend, x: &[f32], n: usize) -> Result<()> {
        let (gx, gl, _) = self.geoms(n);
        let d = gx.per_image();
        self.xn.resize(x.len(), 0.0);
        be.standardize_rows(x, d, STANDARDIZE_EPS, &mut self.xn)?;
        self.x.resize(gx.len(), 0.0);
        images_to_cnhw(&self.xn, self.shape, n, |b| b, &mut self.x);
        self.enc.forward(be, &self.x, gx, true, 0.0, (0.0, 0.0))?;
        crate::backprop::flatten(self.enc.output(), gl, &mut self.latent);
        Ok(())
    }

    fn compute_grads(&mut self, be: &CpuBackend, x: &[f32], n: usize) -> Result<CellStats> {
        let (gx, gl, gu) = self.geoms(n);
        self.encode(be, x, n)?;
        self.up.resize(gu.len(), 0.0);
        be.upsample2_forward(self.enc.output(), gl, &mut self.up)?;
        self.r.resize(gx.len(), 0.0);
        be.conv3x3_forward(&self.up, gu, &self.wd, gx.c, &mut self.r, &mut self.scratch)?;
        let loss = mse(&self.r, &self.x, &mut self.dr);
        self.dwd.resize(self.wd.len(), 0.0);
        self.dup.resize(gu.len(), 0.0);
        be.conv3x3_backward(
            &self.up,
            gu,
            &self.wd,
            gx.c,
            &self.dr,
            &mut self.dwd,
            Some(&mut self.dup),
            &mut self.scratch,
        )?;
        self.dlat.resize(gl.len(), 0.0);
        be.upsample2_backward(&self.dup, gl, &mut self.dlat)?;
        let dlat = std::mem::take(&mut self.dlat);
        let r = self.enc.backward(be, &self.x, &dlat, None);
        self.dlat = dlat;
        r?;
        Ok(CellStats { loss, generator_loss: None })
    }

    fn apply(&mut self, be: &CpuBackend) -> Result<()> {
        self.enc.apply(be, 0)?;
        self.opt_wd.step(be, &mut self.wd, &self.dwd)
    }

    /// The decoder's reconstruction of the last forward (CNHW) and the
    /// standardised input it aims at.
    fn reconstruction(&self) -> (&[f32], &[f32]) {
        (&self.r, &self.x)
    }

    /// The last gradients: encoder dW and decoder dW.
    pub fn grads(&self) -> (&[f32], &[f32]) {
        (self.enc.grads().0, &self.dwd)
    }

    /// The standardised input of the last step (CNHW).
    pub fn last_input(&self) -> &[f32] {
        &self.x
    }
}

/// The GAN cell.
#[derive(Clone, Debug)]
pub struct GanCell {
    pub d1: Dense,
    pub d2: Dense,
    pub g1: Dense,
    pub g2: Dense,
    xn: Vec<f32>,
    noise: Vec<f32>,
    both: Vec<f32>,
    fake: Vec<f32>,
    sig: Vec<f32>,
    sp: Vec<f32>,
    dlog: Vec<f32>,
    dh: Vec<f32>,
    hf: Vec<f32>,
    dfake: Vec<f32>,
    dg: Vec<f32>,
}

impl GanCell {
    fn new(d: usize, optim: &OptimConfig, seed: u64, base: u32) -> Self {
        let h = d / 2;
        Self {
            d1: Dense::new(d, h, true, optim, seed, base),
            d2: Dense::new(h, 1, false, optim, seed, base + 1),
            g1: Dense::new(h, h, true, optim, seed, base + 2),
            g2: Dense::new(h, d, false, optim, seed, base + 3),
            xn: Vec::new(),
            noise: Vec::new(),
            both: Vec::new(),
            fake: Vec::new(),
            sig: Vec::new(),
            sp: Vec::new(),
            dlog: Vec::new(),
            dh: Vec::new(),
            hf: Vec::new(),
            dfake: Vec::new(),
            dg: Vec::new(),
        }
    }

    /// `softplus(s·z)` summed (L32) and `σ(s·z)` per logit.
    fn logit_terms(&mut self, be: &CpuBackend, z: &[f32], s: f32) -> Result<f32> {
        let t: Vec<f32> = z.iter().map(|&v| s * v).collect();
        self.sp.resize(t.len(), 0.0);
        self.sig.resize(t.len(), 0.0);
        be.unary(Unary::Softplus, &t, &mut self.sp)?;
        be.unary(Unary::Sigmoid, &t, &mut self.sig)?;
        Ok(l32_sum(&self.sp))
    }

    /// D's step then G's step on one batch; returns (D loss, G loss). With
    /// `apply` false the gradients are left in the layers without stepping
    /// (D's and G's gradients then both come from the same weights).
    fn step(&mut self, be: &CpuBackend, x: &[f32], n: usize, pos: SamplePos, apply: bool) -> Result<CellStats> {
        let d = self.d1.din;
        self.xn.resize(x.len(), 0.0);
        be.standardize_rows(x, d, STANDARDIZE_EPS, &mut self.xn)?;
        self.noise.resize(n * self.g1.din, 0.0);
        gaussians(pos, self.g1.din, 1, &mut self.noise);
        self.g1.forward(be, &self.noise, n)?;
        self.g2.forward(be, self.g1.output(), n)?;
        self.fake.clear();
        self.fake.extend_from_slice(self.g2.output());
        // D on [real; fake]: L = mean softplus(−D(x)) + mean softplus(D(G(ζ))).
        self.both.clear();
        self.both.extend_from_slice(&self.xn);
        self.both.extend_from_slice(&self.fake);
        self.d1.forward(be, &self.both, 2 * n)?;
        self.d2.forward(be, self.d1.output(), 2 * n)?;
        let z = self.d2.output().to_vec();
        let w = 1.0 / n as f32;
        let lr = self.logit_terms(be, &z[..n], -1.0)?;
        let sig_r = self.sig.clone();
        let lf = self.logit_terms(be, &z[n..], 1.0)?;
        self.dlog.clear();
        self.dlog.extend(sig_r.iter().map(|&s| -(s * w)));
        self.dlog.extend(self.sig.iter().map(|&s| s * w));
        let d_loss = (lr + lf) * w;
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
        self.hf.resize(n * h, 0.0);
        be.gemm(
            MatRef::new(&self.fake, n, d)?,
            MatRef::new(&self.d1.w, d, h)?,
            MatMut::new(&mut self.hf, n, h)?,
            Epilogue::BiasRelu(&self.d1.b),
        )?;
        let mut zf = vec![0.0f32; n];
        be.gemm(
            MatRef::new(&self.hf, n, h)?,
            MatRef::new(&self.d2.w, h, 1)?,
            MatMut::new(&mut zf, n, 1)?,
            Epilogue::Bias(&self.d2.b),
        )?;
        let g_loss = self.logit_terms(be, &zf, -1.0)? * w;
        // dL/dh = dlog·W2ᵀ through the ReLU, then dL/dfake = dh·W1ᵀ.
        self.dh.clear();
        for (i, &s) in self.sig.iter().enumerate() {
            let g = -(s * w);
            for j in 0..h {
                self.dh.push(if self.hf[i * h + j] > 0.0 { g * self.d2.w[j] } else { 0.0 });
            }
        }
        self.dfake.resize(n * d, 0.0);
        be.gemm(
            MatRef::new(&self.dh, n, h)?,
            MatRef::new(&self.d1.w, d, h)?.t(),
            MatMut::new(&mut self.dfake, n, d)?,
            Epilogue::None,
        )?;
        self.g2.grads(be, self.g1.output(), n, &self.dfake)?;
        self.g2.input_grad(be, n, &mut self.dg)?;
        self.g1.grads(be, &self.noise, n, &self.dg)?;
        if apply {
            self.g1.apply(be)?;
            self.g2.apply(be)?;
        }
        if !(d_loss.is_finite() && g_loss.is_finite()) {
            return Err(Error::NonFinite { layer: 0, loss: if d_loss.is_finite() { g_loss } else { d_loss } });
        }
        Ok(CellStats { loss: d_loss, generator_loss: Some(g_loss) })
    }

    fn encode(&mut self, be: &CpuBackend, x: &[f32], n: usize) -> Result<()> {
        self.xn.resize(x.len(), 0.0);
        be.standardize_rows(x, self.d1.din, STANDARDIZE_EPS, &mut self.xn)?;
        self.d1.forward(be, &self.xn, n)
    }

    /// The last step's standardised real input, generator noise and fakes.
    pub fn last_batch(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.xn, &self.noise, &self.fake)
    }
}

/// One cell of the stack.
#[derive(Clone, Debug)]
pub enum Cell {
    Ae(Box<AeCell>),
    Cae(Box<CaeCell>),
    Gan(Box<GanCell>),
}

impl Cell {
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
    pub fn encode(&mut self, be: &CpuBackend, x: &[f32], n: usize) -> Result<()> {
        match self {
            Cell::Ae(c) => c.encode(be, x, n),
            Cell::Cae(c) => c.encode(be, x, n),
            Cell::Gan(c) => c.encode(be, x, n),
        }
    }

    /// The latent of the last [`Cell::encode`] (image-major rows).
    pub fn latent(&self) -> &[f32] {
        match self {
            Cell::Ae(c) => c.enc.output(),
            Cell::Cae(c) => &c.latent,
            Cell::Gan(c) => c.d1.output(),
        }
    }

    /// The cell's loss and gradients on a batch, without stepping (GAN:
    /// both D's and G's gradients from the current weights).
    pub fn compute_grads(&mut self, be: &CpuBackend, x: &[f32], n: usize, pos: SamplePos) -> Result<CellStats> {
        match self {
            Cell::Ae(c) => c.compute_grads(be, x, n, pos),
            Cell::Cae(c) => c.compute_grads(be, x, n),
            Cell::Gan(c) => c.step(be, x, n, pos, false),
        }
    }

    /// One training step of the cell on a batch.
    pub fn train_step(&mut self, be: &CpuBackend, x: &[f32], n: usize, pos: SamplePos) -> Result<CellStats> {
        let s = match self {
            Cell::Ae(c) => {
                let s = c.compute_grads(be, x, n, pos)?;
                c.apply(be)?;
                s
            }
            Cell::Cae(c) => {
                let s = c.compute_grads(be, x, n)?;
                c.apply(be)?;
                s
            }
            Cell::Gan(c) => c.step(be, x, n, pos, true)?,
        };
        Ok(s)
    }

    /// The parameters as named tensors under `prefix`.
    fn tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let t = |shape: &[usize], v: &[f32]| Tensor::from_vec(shape, v.to_vec()).expect("shape");
        let dense = |name: &str, l: &Dense| {
            vec![
                (format!("{prefix}.{name}.weight"), t(&[l.din, l.dout], &l.w)),
                (format!("{prefix}.{name}.bias"), t(&[l.dout], &l.b)),
            ]
        };
        match self {
            Cell::Ae(c) => [dense("enc", &c.enc), dense("dec", &c.dec)].concat(),
            Cell::Cae(c) => vec![
                (format!("{prefix}.enc.weight"), t(&[c.enc.cout, c.enc.cin, 3, 3], &c.enc.w)),
                (format!("{prefix}.dec.weight"), t(&[c.shape.0, 2 * c.shape.0, 3, 3], &c.wd)),
            ],
            Cell::Gan(c) => [dense("d1", &c.d1), dense("d2", &c.d2), dense("g1", &c.g1), dense("g2", &c.g2)].concat(),
        }
    }

    fn load(&mut self, prefix: &str, get: &mut impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        let mut dense = |name: &str, l: &mut Dense| -> Result<()> {
            l.w = crate::conv::fetch_tensor(get, &format!("{prefix}.{name}.weight"), &[l.din, l.dout])?;
            l.b = crate::conv::fetch_tensor(get, &format!("{prefix}.{name}.bias"), &[l.dout])?;
            Ok(())
        };
        match self {
            Cell::Ae(c) => {
                dense("enc", &mut c.enc)?;
                dense("dec", &mut c.dec)
            }
            Cell::Gan(c) => {
                dense("d1", &mut c.d1)?;
                dense("d2", &mut c.d2)?;
                dense("g1", &mut c.g1)?;
                dense("g2", &mut c.g2)
            }
            Cell::Cae(c) => {
                let (e, cin) = ((c.enc.cout, c.enc.cin), c.shape.0);
                c.enc.w = crate::conv::fetch_tensor(get, &format!("{prefix}.enc.weight"), &[e.0, e.1, 3, 3])?;
                c.wd = crate::conv::fetch_tensor(get, &format!("{prefix}.dec.weight"), &[cin, 2 * cin, 3, 3])?;
                Ok(())
            }
        }
    }
}

/// The UFF network: cells and the classifier on their latents.
#[derive(Clone, Debug)]
pub struct UffNet {
    pub config: UffConfig,
    pub image: (usize, usize, usize),
    pub classes: usize,
    pub cells: Vec<Cell>,
    pub head: Readout,
    feats: Vec<f32>,
}

impl UffNet {
    pub fn new(config: UffConfig, image: (usize, usize, usize), classes: usize, seed: u64) -> Result<Self> {
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
                    let c = CaeCell::new(shape, &config.optim, seed, base);
                    shape = (2 * shape.0, shape.1 / 2, shape.2 / 2);
                    Cell::Cae(Box::new(c))
                }
                other => {
                    conv_ok = false;
                    shape = (1, 1, d / 2);
                    match other {
                        CellKind::Gan => Cell::Gan(Box::new(GanCell::new(d, &config.optim, seed, base))),
                        CellKind::Dae => Cell::Ae(Box::new(AeCell::new(
                            d,
                            Some((config.mask_prob, config.noise_std)),
                            &config.optim,
                            seed,
                            base,
                        ))),
                        _ => Cell::Ae(Box::new(AeCell::new(d, None, &config.optim, seed, base))),
                    }
                }
            };
            cells.push(cell);
        }
        let f: usize = cells.iter().map(|c| c.latent_dim()).sum();
        let head = Readout::new(f, classes, &config.classifier_optim);
        Ok(Self { config, image, classes, cells, head, feats: Vec::new() })
    }

    fn image_dim(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }

    /// Encode `n` images through cells `0..upto`, each on the previous
    /// cell's latent.
    fn encode_upto(&mut self, be: &CpuBackend, images: &[f32], n: usize, upto: usize) -> Result<()> {
        for k in 0..upto {
            let (prev, rest) = self.cells.split_at_mut(k);
            let x = if k == 0 { images } else { prev[k - 1].latent() };
            rest[0].encode(be, x, n)?;
        }
        Ok(())
    }

    /// Concatenate every cell's latent per row into `self.feats`.
    fn gather(&mut self, n: usize) {
        let f: usize = self.cells.iter().map(|c| c.latent_dim()).sum();
        self.feats.resize(n * f, 0.0);
        let mut off = 0;
        for c in &self.cells {
            let d = c.latent_dim();
            let z = c.latent();
            for i in 0..n {
                self.feats[i * f + off..i * f + off + d].copy_from_slice(&z[i * d..(i + 1) * d]);
            }
            off += d;
        }
    }

    /// One batch. `layers` selects what learns: cell indices, and
    /// `cells.len()` for the classifier (see the module's training modes).
    /// Every cell runs forward first; then the cells in `layers` step, each
    /// on the latent its predecessor produced in that forward; then the
    /// classifier on the concatenated latents.
    pub fn train_batch(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        labels: &[u8],
        layers: std::ops::Range<usize>,
        pos: SamplePos,
    ) -> Result<BatchStats> {
        check_labelled(images.len(), self.image_dim(), labels, self.classes)?;
        let n = labels.len();
        let nc = self.cells.len();
        // Latents needed: every cell's for the classifier, else only those
        // feeding a learning cell (the last learning cell's is not).
        let upto = if layers.contains(&nc) { nc } else { layers.end.min(nc).saturating_sub(1) };
        self.encode_upto(be, images, n, upto)?;
        let mut stats = BatchStats { layers: vec![None; nc + 1], readout_loss: None };
        // Inputs of the learning cells, taken before any of them steps.
        let inputs: Vec<Vec<f32>> =
            (1..nc).filter(|k| layers.contains(k)).map(|k| self.cells[k - 1].latent().to_vec()).collect();
        if layers.contains(&nc) {
            self.gather(n);
            let feats = std::mem::take(&mut self.feats);
            let r = self.head.train_step(be, &feats, labels);
            self.feats = feats;
            stats.readout_loss = Some(r?);
        }
        let mut it = inputs.iter();
        for k in (0..nc).filter(|k| layers.contains(k)) {
            let x = if k == 0 { images } else { it.next().expect("one input per learning cell") };
            let s = self.cells[k].train_step(be, x, n, SamplePos { cell: k as u32, ..pos })?;
            if !s.loss.is_finite() {
                return Err(Error::NonFinite { layer: k, loss: s.loss });
            }
            stats.layers[k] =
                Some(LayerStats { aux: s.generator_loss.unwrap_or(f32::NAN), ..LayerStats::loss_only(s.loss) });
        }
        Ok(stats)
    }

    /// Predict `n` images: the classifier on the concatenated latents.
    pub fn predict(&mut self, be: &CpuBackend, images: &[f32], n: usize, chunk: usize) -> Result<Predictions> {
        let di = self.image_dim();
        check_images(images.len(), n, di)?;
        let mut out = Vec::with_capacity(n);
        let nc = self.cells.len();
        for s in (0..n).step_by(chunk.max(1)) {
            let m = chunk.max(1).min(n - s);
            self.encode_upto(be, &images[s * di..(s + m) * di], m, nc)?;
            self.gather(m);
            let feats = std::mem::take(&mut self.feats);
            let r = self.head.predict(be, &feats, m, &mut out);
            self.feats = feats;
            r?;
        }
        Ok(Predictions { overall: out.clone(), per_layer: Vec::new(), goodness: Vec::new(), readout: Some(out) })
    }

    /// The first cell's reconstruction of `n` images and the standardised
    /// images it aims at (image-major, C×H×W each); a GAN cell gives `n`
    /// generated samples instead of reconstructions.
    pub fn reconstruct(&mut self, be: &CpuBackend, images: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        check_images(images.len(), n, self.image_dim())?;
        let pos = SamplePos::default();
        match &mut self.cells[0] {
            Cell::Ae(c) => {
                let saved = c.corrupt.take();
                c.compute_grads(be, images, n, pos)?;
                c.corrupt = saved;
                Ok((c.dec.output().to_vec(), c.xn.clone()))
            }
            Cell::Cae(c) => {
                c.compute_grads(be, images, n)?;
                let (r, x) = c.reconstruction();
                let g = Cnhw::new(c.shape.0, n, c.shape.1, c.shape.2);
                let (mut rr, mut xx) = (Vec::new(), Vec::new());
                crate::backprop::flatten(r, g, &mut rr);
                crate::backprop::flatten(x, g, &mut xx);
                Ok((rr, xx))
            }
            Cell::Gan(c) => {
                c.step(be, images, n, pos, false)?;
                Ok((c.fake.clone(), c.xn.clone()))
            }
        }
    }

    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (k, c) in self.cells.iter().enumerate() {
            out.extend(c.tensors(&format!("cells.{k}")));
        }
        out.extend(crate::ff::head_tensors("classifier", &self.head));
        out
    }

    pub fn load_tensors(&mut self, mut get: impl FnMut(&str) -> Result<Tensor>) -> Result<()> {
        for (k, c) in self.cells.iter_mut().enumerate() {
            c.load(&format!("cells.{k}"), &mut get)?;
        }
        crate::ff::load_head("classifier", &mut self.head, &mut get)
    }
}

/// The probe sees every cell's latent.
impl crate::probe::Features for UffNet {
    fn feature_dims(&self) -> Vec<usize> {
        self.cells.iter().map(|c| c.latent_dim()).collect()
    }
    fn features(
        &mut self,
        be: &CpuBackend,
        images: &[f32],
        n: usize,
        view: crate::probe::FeatureView,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        view.only_default("UFF net", "has one view (its cells' latents, no label inputs)")?;
        check_images(images.len(), n, self.image_dim())?;
        let nc = self.cells.len();
        self.encode_upto(be, images, n, nc)?;
        self.gather(n);
        out.clear();
        out.extend_from_slice(&self.feats);
        Ok(())
    }
}
