//! Goodness losses and their derivatives with respect to goodness, and the
//! softmax cross-entropy of linear readouts. Per-row arithmetic is written
//! once here; the transcendentals go through the backend's vector
//! [`Unary`] ops, so the AVX2 path computes them in lanes.
//!
//! Conventions: the batch holds `n` positive rows then `n` negative rows
//! (row i and row n+i come from the same image). `gm` is the goodness in the
//! chosen form: `G` (sum) or `G / D` (mean). `w = 1 / n`.
//!
//! * Threshold (Hinton): `s⁺ = θ − gm⁺`, `s⁻ = gm⁻ − θ`; loss
//!   `w·Σ softplus(s)`; `dL/dgm = ∓ w·σ(s)` (− for positives).
//! * SymBa: `s = (−α)·(gm⁺ − gm⁻)` per pair; loss `w·Σ softplus(s)`;
//!   `t = (α·σ(s))·w`, `dL/dgm⁺ = −t`, `dL/dgm⁻ = t`.
//! * Mean form: `dL/dG = (dL/dgm) / D`.
//! * Sums over rows are L32 sums.

use super::math::Unary;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, shape_err, Result};
use crate::ops::loss::{labelled_rows, GanHalves, LossOps, LossOut, MeanOf};
use crate::ops::StatSlot;

/// The backend's vector transcendental, as the composite ops call it.
pub(crate) type UnaryFn<'a> = &'a dyn Fn(Unary, &[f32], &mut [f32]);

/// A loss over labelled logits: (transcendentals, logits, classes,
/// labels, gradient out, scratch) → mean loss.
pub(crate) type LabelledLoss = fn(UnaryFn, &[f32], usize, &[u32], &mut [f32], &mut LossScratch) -> f32;
use crate::numerics::l32_sum;
pub use crate::ops::loss::{FfLoss, GoodnessForm, COSINE_EPS};

/// Scratch buffers for the loss (no allocation once sized).
#[derive(Default, Debug, Clone)]
pub struct LossScratch {
    s: Vec<f32>,
    sp: Vec<f32>,
    sg: Vec<f32>,
}

/// Compute the mean loss and write `dL/dG` (length 2n) into `dldg`.
/// `g` holds the 2n goodness values in the sum form; `d` is the layer width.
pub(crate) fn ff_loss(
    unary: UnaryFn,
    loss: FfLoss,
    form: GoodnessForm,
    d: usize,
    g: &[f32],
    dldg: &mut [f32],
    scratch: &mut LossScratch,
) -> f32 {
    let n2 = g.len();
    let n = n2 / 2;
    if n == 0 {
        dldg.fill(0.0);
        return 0.0;
    }
    let w = 1.0 / n as f32;
    let df = d as f32;
    // G → the configured form, and dL/d(form) → dL/dG: both divide by D in
    // the mean form.
    let per_d = |x: f32| if form == GoodnessForm::Mean { x / df } else { x };
    let gm = per_d;
    let rows = match loss {
        FfLoss::Threshold { .. } => n2,
        FfLoss::Symba { .. } => n,
    };
    scratch.s.resize(rows, 0.0);
    scratch.sp.resize(rows, 0.0);
    scratch.sg.resize(rows, 0.0);
    match loss {
        FfLoss::Threshold { theta } => {
            for i in 0..n2 {
                scratch.s[i] = if i < n { theta - gm(g[i]) } else { gm(g[i]) - theta };
            }
        }
        FfLoss::Symba { alpha } => {
            for i in 0..n {
                scratch.s[i] = (-alpha) * (gm(g[i]) - gm(g[n + i]));
            }
        }
    }
    unary(Unary::Softplus, &scratch.s, &mut scratch.sp);
    unary(Unary::Sigmoid, &scratch.s, &mut scratch.sg);
    let to_g = per_d;
    match loss {
        FfLoss::Threshold { .. } => {
            for i in 0..n2 {
                let t = scratch.sg[i] * w;
                dldg[i] = to_g(if i < n { -t } else { t });
            }
        }
        FfLoss::Symba { alpha } => {
            for i in 0..n {
                let t = (alpha * scratch.sg[i]) * w;
                dldg[i] = to_g(-t);
                dldg[n + i] = to_g(t);
            }
        }
    }
    l32_sum(&scratch.sp) * w
}

/// Per row of `logits` (rows of `c`): `sh = z − mx` with `mx` the first
/// maximum by `>`, and `e = exp(sh)` through the backend.
fn shifted_exp(unary: UnaryFn, logits: &[f32], c: usize, sh: &mut [f32], e: &mut Vec<f32>) {
    for (row, o) in logits.chunks(c).zip(sh.chunks_mut(c)) {
        let mx = argmax_value(row);
        for (v, &z) in o.iter_mut().zip(row) {
            *v = z - mx;
        }
    }
    e.resize(sh.len(), 0.0);
    unary(Unary::Exp, sh, e);
}

/// Softmax of each row: `e / l32_sum(e)` with `e` from [`shifted_exp`].
pub(crate) fn softmax_rows(unary: UnaryFn, logits: &[f32], c: usize, out: &mut [f32], scratch: &mut LossScratch) {
    scratch.s.resize(logits.len(), 0.0);
    shifted_exp(unary, logits, c, &mut scratch.s, &mut scratch.sp);
    for (e, o) in scratch.sp.chunks(c).zip(out.chunks_mut(c)) {
        let s = l32_sum(e);
        for (v, &x) in o.iter_mut().zip(e) {
            *v = x / s;
        }
    }
}

/// Softmax cross-entropy over rows of `logits` (m × c) with integer labels.
/// Writes `grad = (p − onehot) · w`, `w = 1/m`, and returns the mean loss.
///
/// Per row: `mx` = first maximum by `>`; `sh_j = z_j − mx`; `e_j = exp(sh_j)`;
/// `s = l32_sum(e)`; `p_j = e_j / s`; loss row `ln(s) − sh_y`.
pub(crate) fn softmax_xent(
    unary: UnaryFn,
    logits: &[f32],
    c: usize,
    labels: &[u32],
    grad: &mut [f32],
    scratch: &mut LossScratch,
) -> f32 {
    let m = labels.len();
    if m == 0 || c == 0 {
        return 0.0;
    }
    let w = 1.0 / m as f32;
    scratch.s.resize(m * c, 0.0);
    shifted_exp(unary, logits, c, &mut scratch.s, &mut scratch.sp);
    scratch.sg.resize(2 * m, 0.0);
    let (sums, lns) = scratch.sg.split_at_mut(m);
    for (i, e) in scratch.sp.chunks(c).enumerate() {
        sums[i] = l32_sum(e);
    }
    unary(Unary::Ln, sums, lns);
    for i in 0..m {
        let y = labels[i] as usize;
        for j in 0..c {
            let p = scratch.sp[i * c + j] / sums[i];
            let t = if j == y { p - 1.0 } else { p };
            grad[i * c + j] = t * w;
        }
        lns[i] = lns[i] - scratch.s[i * c + y];
    }
    l32_sum(lns) * w
}

/// Cosine-embedding loss with target +1 over rows of `a` and `b` (m × d):
/// `w·Σ (1 − cos)`, `w = 1/m`, with `cos = (a·b) / (max(‖a‖, ε)·max(‖b‖, ε))`
/// (PyTorch's `CosineEmbeddingLoss`, `ε = 1e-8`). Writes `dL/da` (b is a
/// constant): `−w·(b/den − cos·a/‖a‖²)`, the second term only where
/// `‖a‖ > ε`. Dots and squared norms are L32 sums of the products.
pub(crate) fn cosine_embedding(a: &[f32], b: &[f32], d: usize, grad: &mut [f32], scratch: &mut LossScratch) -> f32 {
    let m = a.len().checked_div(d).unwrap_or(0);
    if m == 0 {
        return 0.0;
    }
    let w = 1.0 / m as f32;
    scratch.s.resize(d, 0.0);
    scratch.sp.resize(m, 0.0);
    for i in 0..m {
        let (ar, br) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
        let mut dot_sq = |f: &dyn Fn(usize) -> f32| {
            for (j, o) in scratch.s.iter_mut().enumerate() {
                *o = f(j);
            }
            l32_sum(&scratch.s)
        };
        let dot = dot_sq(&|j| ar[j] * br[j]);
        let na2 = dot_sq(&|j| ar[j] * ar[j]);
        let nb2 = dot_sq(&|j| br[j] * br[j]);
        let (na, nb) = (na2.sqrt(), nb2.sqrt());
        let den = na.max(COSINE_EPS) * nb.max(COSINE_EPS);
        let cos = dot / den;
        scratch.sp[i] = 1.0 - cos;
        let k = if na > COSINE_EPS { cos / na2 } else { 0.0 };
        for j in 0..d {
            grad[i * d + j] = -(w * (br[j] / den - k * ar[j]));
        }
    }
    l32_sum(&scratch.sp) * w
}

/// Binary cross-entropy of softmax outputs against one-hot targets (the
/// FFCL output loss): `p = softmax(z)` per row (as in [`softmax_xent`]),
/// loss `w·Σ_ij −[t ln p + (1−t) ln(1−p)]` with each log clamped at −100
/// (as PyTorch's `BCELoss`) and `w = 1/(m·c)`; `ln(1−p)` is computed as
/// `ln((s − e_j)/s)`. Writes `dL/dz`: `g_j = w·(p_j − t_j)/max(p_j(1−p_j),
/// 1e-12)`, then through the softmax, `dz_j = p_j·(g_j − Σ_k p_k g_k)`
/// (the sum an L32 sum).
pub(crate) fn softmax_bce(
    unary: UnaryFn,
    logits: &[f32],
    c: usize,
    labels: &[u32],
    grad: &mut [f32],
    scratch: &mut LossScratch,
) -> f32 {
    let m = labels.len();
    if m == 0 || c == 0 {
        return 0.0;
    }
    let mc = m * c;
    let w = 1.0 / mc as f32;
    // s: the shifted logits (later the loss terms), then p and 1 − p.
    scratch.s.resize(3 * mc, 0.0);
    let (sh, pq) = scratch.s.split_at_mut(mc);
    shifted_exp(unary, logits, c, sh, &mut scratch.sp);
    for i in 0..m {
        let e = &scratch.sp[i * c..(i + 1) * c];
        let s = l32_sum(e);
        for j in 0..c {
            pq[i * c + j] = e[j] / s;
            pq[mc + i * c + j] = (s - e[j]) / s;
        }
    }
    scratch.sg.resize(2 * mc, 0.0);
    unary(Unary::Ln, pq, &mut scratch.sg);
    let (p, q) = pq.split_at(mc);
    let (lp, lq) = scratch.sg.split_at(mc);
    for i in 0..m {
        let y = labels[i] as usize;
        for j in 0..c {
            let k = i * c + j;
            let t = if j == y { 1.0 } else { 0.0 };
            sh[k] = -(t * lp[k].max(-100.0) + (1.0 - t) * lq[k].max(-100.0));
            grad[k] = w * (p[k] - t) / (p[k] * q[k]).max(1e-12);
            scratch.sp[k] = p[k] * grad[k];
        }
        let dot = l32_sum(&scratch.sp[i * c..(i + 1) * c]);
        for j in 0..c {
            let k = i * c + j;
            grad[k] = p[k] * (grad[k] - dot);
        }
    }
    l32_sum(sh) * w
}

/// The first maximum of a row by `>` comparisons (NaN never wins unless first).
pub fn argmax_value(row: &[f32]) -> f32 {
    let mut mx = row[0];
    for &z in &row[1..] {
        if z > mx {
            mx = z;
        }
    }
    mx
}

/// Index of the first maximum by `>` comparisons.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &z) in row.iter().enumerate().skip(1) {
        if z > row[best] {
            best = j;
        }
    }
    best
}

impl CpuBackend {
    /// FF loss over `g` (n positives then n negatives, sum-form goodness of
    /// a layer of width `d`); writes dL/dG and returns the mean loss.
    pub fn ff_loss(
        &self,
        loss: FfLoss,
        form: GoodnessForm,
        d: usize,
        g: &[f32],
        dldg: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        check_len("ff_loss", "dL/dG", dldg.len(), g.len())?;
        if !g.len().is_multiple_of(2) {
            return Err(shape_err(
                "ff_loss",
                format!("{} goodness values: expected n positives + n negatives", g.len()),
            ));
        }
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        Ok(ff_loss(&u, loss, form, d, g, dldg, scratch))
    }

    /// Check the shapes and labels of a loss over labelled logits, then run
    /// it with this backend's transcendentals.
    fn labelled_loss(
        &self,
        (op, f): (&'static str, LabelledLoss),
        logits: &[f32],
        c: usize,
        labels: &[u32],
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        check_len(op, "logits", logits.len(), labels.len() * c)?;
        check_len(op, "grad", grad.len(), logits.len())?;
        if let Some(&y) = labels.iter().find(|&&y| y as usize >= c) {
            return Err(shape_err(op, format!("label {y} is out of range for {c} classes")));
        }
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        Ok(f(&u, logits, c, labels, grad, scratch))
    }

    /// Softmax of each row of `logits` (rows of `c`) into `out`.
    pub fn softmax_rows(&self, logits: &[f32], c: usize, out: &mut [f32], scratch: &mut LossScratch) -> Result<()> {
        if c == 0 || !logits.len().is_multiple_of(c) {
            return Err(shape_err("softmax_rows", format!("{} values are not rows of {c}", logits.len())));
        }
        check_len("softmax_rows", "out", out.len(), logits.len())?;
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        softmax_rows(&u, logits, c, out, scratch);
        Ok(())
    }

    /// Softmax cross-entropy of `logits` (labels.len() × c): writes the
    /// gradient w.r.t. the logits and returns the mean loss.
    pub fn softmax_xent(
        &self,
        logits: &[f32],
        c: usize,
        labels: &[u32],
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        self.labelled_loss(("softmax_xent", softmax_xent), logits, c, labels, grad, scratch)
    }

    /// Cosine-embedding loss (target +1) of rows of `a` against the
    /// constant rows of `b` (m × d each); writes dL/da and returns the mean
    /// loss. One implementation for both backends (only √ and L32 sums).
    pub fn cosine_embedding(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        if d == 0 || !a.len().is_multiple_of(d) {
            return Err(shape_err("cosine_embedding", format!("{} values are not rows of {d}", a.len())));
        }
        check_len("cosine_embedding", "b", b.len(), a.len())?;
        check_len("cosine_embedding", "grad", grad.len(), a.len())?;
        Ok(cosine_embedding(a, b, d, grad, scratch))
    }

    /// Binary cross-entropy of the softmax of `logits` (labels.len() × c)
    /// against one-hot targets; writes dL/dlogits and returns the mean loss.
    pub fn softmax_bce(
        &self,
        logits: &[f32],
        c: usize,
        labels: &[u32],
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        self.labelled_loss(("softmax_bce", softmax_bce), logits, c, labels, grad, scratch)
    }
}

/// The spec of [`LossOps::mse`]: `δ = a − b` into `grad`, the loss
/// `l32_sumsq(δ) / len`, then `grad = δ · (2 / len)`.
pub(crate) fn mse_scalar(a: &[f32], b: &[f32], grad: &mut [f32]) -> f32 {
    for ((o, &x), &y) in grad.iter_mut().zip(a).zip(b) {
        *o = x - y;
    }
    let loss = crate::numerics::l32_sumsq(grad) / a.len().max(1) as f32;
    let s = 2.0 / a.len().max(1) as f32;
    for v in grad.iter_mut() {
        *v = *v * s;
    }
    loss
}

/// [`mse_scalar`] in AVX2 lanes: the same subtraction, the L32 sum of
/// squares and the same scaling.
fn mse_avx2(a: &[f32], b: &[f32], grad: &mut [f32]) -> f32 {
    use rayon::prelude::*;
    const CHUNK: usize = 8192;
    grad.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (x, y))| {
        // SAFETY: the Avx2 backend exists only where avx2+fma were detected; equal chunk lengths.
        unsafe { super::math::avx2::sub(x, y, o) }
    });
    let mut ss = [0.0f32];
    super::reduce::row_reduce_avx2(grad, grad.len().max(1), &mut ss[..usize::from(!grad.is_empty())], true);
    let loss = ss[0] / a.len().max(1) as f32;
    let s = 2.0 / a.len().max(1) as f32;
    grad.par_chunks_mut(CHUNK).for_each(|o| {
        for v in o.iter_mut() {
            *v = *v * s;
        }
    });
    loss
}

/// The spec of [`LossOps::gan_loss`], with the backend's transcendentals.
fn gan_loss(
    unary: UnaryFn,
    z: &[f32],
    n: usize,
    halves: GanHalves,
    grad: &mut [f32],
    scratch: &mut LossScratch,
) -> f32 {
    if n == 0 {
        return 0.0;
    }
    let w = 1.0 / n as f32;
    // The real logits' terms take −z, the fakes' z (negation is exact).
    scratch.s.resize(z.len(), 0.0);
    for (i, (t, &v)) in scratch.s.iter_mut().zip(z).enumerate() {
        *t = if i < n { -v } else { v };
    }
    scratch.sp.resize(z.len(), 0.0);
    scratch.sg.resize(z.len(), 0.0);
    unary(Unary::Softplus, &scratch.s, &mut scratch.sp);
    unary(Unary::Sigmoid, &scratch.s, &mut scratch.sg);
    for (i, (o, &sg)) in grad.iter_mut().zip(&scratch.sg).enumerate() {
        *o = if i < n { -(sg * w) } else { sg * w };
    }
    let real = l32_sum(&scratch.sp[..n]);
    match halves {
        GanHalves::RealThenFake => (real + l32_sum(&scratch.sp[n..])) * w,
        GanHalves::AllReal => real * w,
    }
}

impl LossOps for CpuBackend {
    type LossScratch = LossScratch;

    fn ff_loss(&self, loss: FfLoss, form: GoodnessForm, d: usize, g: &Vec<f32>, out: LossOut<'_, Self>) -> Result<()> {
        let _p = crate::profile::scope("ff_loss");
        out.stat.check("ff_loss", 1)?;
        out.grad.resize(g.len(), 0.0);
        out.stat.buf[out.stat.at] = CpuBackend::ff_loss(self, loss, form, d, g, out.grad, out.scratch)?;
        Ok(())
    }
    fn goodness_means(&self, g: &Vec<f32>, mean: MeanOf, out: StatSlot<'_, Vec<f32>>) -> Result<()> {
        let _p = crate::profile::scope("goodness_means");
        out.check("goodness_means", 2)?;
        if !g.len().is_multiple_of(2) {
            return Err(shape_err("goodness_means", format!("{} goodness values are not two halves", g.len())));
        }
        let n = g.len() / 2;
        let m = |s: &[f32]| match mean {
            MeanOf::L32 => {
                if s.is_empty() {
                    0.0
                } else {
                    l32_sum(s) / s.len() as f32
                }
            }
            MeanOf::PerValueF64 { d } => (s.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64 / d as f64) as f32,
        };
        out.buf[out.at] = m(&g[..n]);
        out.buf[out.at + 1] = m(&g[n..]);
        Ok(())
    }
    fn softmax_xent(&self, logits: &Vec<f32>, c: usize, labels: &Vec<u32>, out: LossOut<'_, Self>) -> Result<()> {
        let _p = crate::profile::scope("softmax_xent");
        out.stat.check("softmax_xent", 1)?;
        labelled_rows("softmax_xent", logits, c, labels.len())?;
        out.grad.resize(logits.len(), 0.0);
        out.stat.buf[out.stat.at] = CpuBackend::softmax_xent(self, logits, c, labels, out.grad, out.scratch)?;
        Ok(())
    }
    fn softmax_bce(&self, logits: &Vec<f32>, c: usize, labels: &Vec<u32>, out: LossOut<'_, Self>) -> Result<()> {
        let _p = crate::profile::scope("softmax_bce");
        out.stat.check("softmax_bce", 1)?;
        labelled_rows("softmax_bce", logits, c, labels.len())?;
        out.grad.resize(logits.len(), 0.0);
        out.stat.buf[out.stat.at] = CpuBackend::softmax_bce(self, logits, c, labels, out.grad, out.scratch)?;
        Ok(())
    }
    fn cosine_embedding(&self, a: &Vec<f32>, b: &Vec<f32>, d: usize, out: LossOut<'_, Self>) -> Result<()> {
        let _p = crate::profile::scope("cosine_embedding");
        out.stat.check("cosine_embedding", 1)?;
        out.grad.resize(a.len(), 0.0);
        out.stat.buf[out.stat.at] = CpuBackend::cosine_embedding(self, a, b, d, out.grad, out.scratch)?;
        Ok(())
    }
    fn softmax_rows(&self, logits: &Vec<f32>, c: usize, out: &mut Vec<f32>, scratch: &mut LossScratch) -> Result<()> {
        let _p = crate::profile::scope("softmax_rows");
        out.resize(logits.len(), 0.0);
        CpuBackend::softmax_rows(self, logits, c, out, scratch)
    }
    fn mse(&self, a: &Vec<f32>, b: &Vec<f32>, grad: &mut Vec<f32>, out: StatSlot<'_, Vec<f32>>) -> Result<()> {
        let _p = crate::profile::scope("mse");
        out.check("mse", 1)?;
        check_len("mse", "target", b.len(), a.len())?;
        grad.resize(a.len(), 0.0);
        out.buf[out.at] = match self.kind {
            CpuKind::Scalar => mse_scalar(a, b, grad),
            CpuKind::Avx2 => mse_avx2(a, b, grad),
        };
        Ok(())
    }
    fn gan_loss(
        &self,
        z: &Vec<f32>,
        halves: GanHalves,
        grad: &mut Vec<f32>,
        scratch: &mut LossScratch,
        out: StatSlot<'_, Vec<f32>>,
    ) -> Result<()> {
        let _p = crate::profile::scope("gan_loss");
        out.check("gan_loss", 1)?;
        let n = match halves {
            GanHalves::RealThenFake if !z.len().is_multiple_of(2) => {
                return Err(shape_err("gan_loss", format!("{} logits are not n real + n fake", z.len())))
            }
            GanHalves::RealThenFake => z.len() / 2,
            GanHalves::AllReal => z.len(),
        };
        grad.resize(z.len(), 0.0);
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        out.buf[out.at] = gan_loss(&u, z, n, halves, grad, scratch);
        Ok(())
    }
}
