//! Normalisations of CNHW blocks: batch norm over channels (the Trifecta's
//! block input) and the per-image length norm (vanilla FF's), forward and
//! backward.
//!
//! **Batch-norm spec**, per channel row x of n = N·H·W values:
//! `mean = l32_sum(x) / n`; `var = l32 Σ fma(d, d, lane), d = x_i − mean,
//! / n`; `rstd = 1 / √(var + ε)` ([`bn_rstd`]); `y_i = ((x_i − mean) ·
//! rstd) · γ + β`. Evaluation applies the same formula with the running
//! mean and `rstd` of the running variance. Backward: `x̂_i` recomputed as
//! above; `Σdy = l32_sum(dy)`, `Σdy·x̂ = l32 Σ fma(dy_i, x̂_i, lane)`;
//! `dγ = Σdy·x̂`, `dβ = Σdy`; `dx_i = (γ · rstd) · ((dy_i − Σdy / n) −
//! x̂_i · (Σdy·x̂ / n))`. Running statistics: `r ← (1 − m) · r + m · s`,
//! with the unbiased variance `var · (n / (n − 1))`.
//!
//! **Length-norm spec**, per image b over its D = C·H·W values:
//! `ss_b = Σ over c ascending, from +0.0, of l32_sumsq(plane c of b)`
//! ([`CpuBackend::block_sumsq`]); `r = √(ss_b / D)`; `inv = 1 / (r + ε)`;
//! `y = x · inv`. Backward: `dot_b` = the same sum of per-plane
//! `l32 Σ fma(dy, x, lane)`; `coef = −(inv · inv) · (dot_b / (D · r))`
//! (0 when r = 0); `dx = dy · inv + x · coef`.
//!
//! One implementation serves both backends, parallel over channels or
//! images; the AVX2 backend runs the same loops compiled with FMA enabled
//! (`f32::mul_add` is a single fma either way, so the bits agree).

use super::conv::Cnhw;
use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::{check_len, Result};
use crate::numerics::{l32_sum, l32_sumsq, l32_tree};
use crate::ops::norm2d::{BnGrads, BnStats};
use rayon::prelude::*;

pub use crate::ops::norm2d::bn_rstd;

/// L32 sum of `f(i)` over i < n with the lane update `lane = upd(lane, i)`.
#[inline(always)]
fn l32_by(n: usize, mut upd: impl FnMut(f32, usize) -> f32) -> f32 {
    let mut l = [0.0f32; 32];
    let full = n / 32 * 32;
    for base in (0..full).step_by(32) {
        for (t, lane) in l.iter_mut().enumerate() {
            *lane = upd(*lane, base + t);
        }
    }
    for i in full..n {
        l[i % 32] = upd(l[i % 32], i);
    }
    l32_tree(l)
}

#[inline(always)]
fn bn_stats_row(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = l32_sum(x) / n;
    let v = l32_by(x.len(), |lane, i| {
        let d = x[i] - mean;
        d.mul_add(d, lane)
    });
    (mean, v / n)
}

#[inline(always)]
fn bn_apply_row(x: &[f32], mean: f32, rstd: f32, gamma: f32, beta: f32, y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = ((v - mean) * rstd) * gamma + beta;
    }
}

#[inline(always)]
fn bn_backward_row(x: &[f32], mean: f32, rstd: f32, gamma: f32, dy: &[f32], dx: Option<&mut [f32]>) -> (f32, f32) {
    let n = x.len() as f32;
    let sdy = l32_sum(dy);
    let sdyx = l32_by(x.len(), |lane, i| dy[i].mul_add((x[i] - mean) * rstd, lane));
    let Some(dx) = dx else { return (sdyx, sdy) };
    let (a, mdy, mdyx) = (gamma * rstd, sdy / n, sdyx / n);
    for i in 0..x.len() {
        let xh = (x[i] - mean) * rstd;
        dx[i] = a * ((dy[i] - mdy) - xh * mdyx);
    }
    (sdyx, sdy)
}

#[inline(always)]
fn dot_row(a: &[f32], b: &[f32]) -> f32 {
    l32_by(a.len(), |lane, i| a[i].mul_add(b[i], lane))
}

// The same loops compiled with AVX2+FMA enabled (elsewhere the Avx2 backend
// cannot be built and these are the plain loops).
mod fast {
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    pub unsafe fn stats(x: &[f32]) -> (f32, f32) {
        super::bn_stats_row(x)
    }
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    pub unsafe fn apply(x: &[f32], mean: f32, rstd: f32, gamma: f32, beta: f32, y: &mut [f32]) {
        super::bn_apply_row(x, mean, rstd, gamma, beta, y)
    }
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    pub unsafe fn backward(
        x: &[f32],
        mean: f32,
        rstd: f32,
        gamma: f32,
        dy: &[f32],
        dx: Option<&mut [f32]>,
    ) -> (f32, f32) {
        super::bn_backward_row(x, mean, rstd, gamma, dy, dx)
    }
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    pub unsafe fn sumsq(x: &[f32]) -> f32 {
        crate::numerics::l32_sumsq(x)
    }
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_row(a, b)
    }
}

impl CpuBackend {
    /// Run a per-row loop: the AVX2 backend calls the FMA-compiled twin.
    #[inline(always)]
    fn fma_twin<R>(&self, plain: impl FnOnce() -> R, fast: impl FnOnce() -> R) -> R {
        match self.kind {
            CpuKind::Scalar => plain(),
            CpuKind::Avx2 => fast(),
        }
    }

    /// Per-channel batch statistics: `mean`, biased `var`, and `rstd`.
    pub fn batchnorm_stats(
        &self,
        x: &[f32],
        g: Cnhw,
        eps: f32,
        mean: &mut [f32],
        var: &mut [f32],
        rstd: &mut [f32],
    ) -> Result<()> {
        check_len("batchnorm_stats", "x", x.len(), g.len())?;
        for (what, s) in [("mean", &*mean), ("var", &*var), ("rstd", &*rstd)] {
            check_len("batchnorm_stats", what, s.len(), g.c)?;
        }
        if g.row() == 0 {
            mean.fill(0.0);
            var.fill(0.0);
            rstd.iter_mut().for_each(|r| *r = bn_rstd(0.0, eps));
            return Ok(());
        }
        let out: Vec<(f32, f32)> = x
            .par_chunks(g.row())
            .map(|row| {
                // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
                self.fma_twin(|| bn_stats_row(row), || unsafe { fast::stats(row) })
            })
            .collect();
        for (c, (m, v)) in out.into_iter().enumerate() {
            mean[c] = m;
            var[c] = v;
            rstd[c] = bn_rstd(v, eps);
        }
        Ok(())
    }

    /// `y = ((x − mean) · rstd) · γ + β` per channel.
    pub fn batchnorm_apply(
        &self,
        x: &[f32],
        g: Cnhw,
        stats: BnStats<'_, [f32]>,
        gamma: &[f32],
        beta: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        let BnStats { mean, rstd } = stats;
        check_len("batchnorm_apply", "x", x.len(), g.len())?;
        check_len("batchnorm_apply", "y", y.len(), g.len())?;
        for (what, s) in [("mean", mean), ("rstd", rstd), ("gamma", gamma), ("beta", beta)] {
            check_len("batchnorm_apply", what, s.len(), g.c)?;
        }
        if g.row() == 0 {
            return Ok(());
        }
        y.par_chunks_mut(g.row()).zip(x.par_chunks(g.row())).enumerate().for_each(|(c, (yr, xr))| {
            let (m, r, ga, be) = (mean[c], rstd[c], gamma[c], beta[c]);
            if self.kind == CpuKind::Avx2 {
                // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
                unsafe { fast::apply(xr, m, r, ga, be, yr) }
            } else {
                bn_apply_row(xr, m, r, ga, be, yr)
            }
        });
        Ok(())
    }

    /// Batch-norm backward with batch statistics: `dx`, `dγ`, `dβ`.
    pub fn batchnorm_backward(
        &self,
        x: &[f32],
        g: Cnhw,
        stats: BnStats<'_, [f32]>,
        gamma: &[f32],
        dy: &[f32],
        grads: BnGrads<'_, [f32]>,
    ) -> Result<()> {
        let (BnStats { mean, rstd }, BnGrads { dx, dgamma, dbeta }) = (stats, grads);
        check_len("batchnorm_backward", "x", x.len(), g.len())?;
        check_len("batchnorm_backward", "dy", dy.len(), g.len())?;
        if let Some(dx) = &dx {
            check_len("batchnorm_backward", "dx", dx.len(), g.len())?;
        }
        for (what, s) in [("mean", mean), ("rstd", rstd), ("gamma", gamma), ("dgamma", &*dgamma), ("dbeta", &*dbeta)] {
            check_len("batchnorm_backward", what, s.len(), g.c)?;
        }
        if g.row() == 0 {
            dgamma.fill(0.0);
            dbeta.fill(0.0);
            return Ok(());
        }
        let row = |c: usize, xr: &[f32], dyr: &[f32], dxr: Option<&mut [f32]>| {
            let (m, r, ga) = (mean[c], rstd[c], gamma[c]);
            if self.kind == CpuKind::Avx2 {
                // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
                unsafe { fast::backward(xr, m, r, ga, dyr, dxr) }
            } else {
                bn_backward_row(xr, m, r, ga, dyr, dxr)
            }
        };
        let rows = x.par_chunks(g.row()).zip(dy.par_chunks(g.row())).enumerate();
        let sums: Vec<(f32, f32)> = match dx {
            Some(dx) => {
                rows.zip(dx.par_chunks_mut(g.row())).map(|((c, (xr, dyr)), dxr)| row(c, xr, dyr, Some(dxr))).collect()
            }
            None => rows.map(|(c, (xr, dyr))| row(c, xr, dyr, None)).collect(),
        };
        for (c, (dg, db)) in sums.into_iter().enumerate() {
            dgamma[c] = dg;
            dbeta[c] = db;
        }
        Ok(())
    }

    /// Running statistics update with momentum `m` from one batch of `n`
    /// values per channel.
    pub fn batchnorm_update_running(
        &self,
        mean: &[f32],
        var: &[f32],
        n: usize,
        m: f32,
        running_mean: &mut [f32],
        running_var: &mut [f32],
    ) -> Result<()> {
        check_len("batchnorm_update_running", "var", var.len(), mean.len())?;
        check_len("batchnorm_update_running", "running mean", running_mean.len(), mean.len())?;
        check_len("batchnorm_update_running", "running var", running_var.len(), mean.len())?;
        let unbias = if n > 1 { n as f32 / (n - 1) as f32 } else { 1.0 };
        for c in 0..mean.len() {
            running_mean[c] = (1.0 - m) * running_mean[c] + m * mean[c];
            running_var[c] = (1.0 - m) * running_var[c] + m * (var[c] * unbias);
        }
        Ok(())
    }

    /// Per-image sum of squares of a CNHW block: for each image b, the sum
    /// over channels ascending (from +0.0) of the plane's `l32_sumsq`.
    pub fn block_sumsq(&self, x: &[f32], g: Cnhw, out: &mut [f32]) -> Result<()> {
        check_len("block_sumsq", "x", x.len(), g.len())?;
        check_len("block_sumsq", "out", out.len(), g.n)?;
        let hw = g.plane();
        // Each plane's sum of squares first, streaming through x in memory
        // order (an image's planes lie N·HW apart), then each image's sum
        // over its channels in channel order, as the spec adds them.
        let mut planes = Vec::new();
        pages::grow(&mut planes, g.c * g.n)?;
        let planes = &mut planes[..g.c * g.n];
        planes.par_iter_mut().with_min_len(16).enumerate().for_each(|(p, o)| {
            *o = self.plane_sumsq(&x[p * hw..][..hw]);
        });
        self.image_sums(planes, g, out);
        Ok(())
    }

    /// One plane's sum of squares, `l32_sumsq`.
    pub(crate) fn plane_sumsq(&self, p: &[f32]) -> f32 {
        // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
        self.fma_twin(|| l32_sumsq(p), || unsafe { fast::sumsq(p) })
    }

    /// Each image's sum over the channels ascending, from +0.0, of its
    /// planes' values (`planes[c·N + b]`).
    pub(crate) fn image_sums(&self, planes: &[f32], g: Cnhw, out: &mut [f32]) {
        out.par_iter_mut().with_min_len(64).enumerate().for_each(|(b, o)| {
            let mut s = 0.0f32;
            for c in 0..g.c {
                s = s + planes[c * g.n + b];
            }
            *o = s;
        });
    }

    /// Goodness gradient of a CNHW block: `dx[c,b,:] = x[c,b,:] · (dL/dG_b +
    /// dL/dG_b)` (G_b the block's sum of squares).
    pub fn block_local_grad(&self, x: &[f32], g: Cnhw, dldg: &[f32], dx: &mut [f32]) -> Result<()> {
        check_len("block_local_grad", "x", x.len(), g.len())?;
        check_len("block_local_grad", "dx", dx.len(), g.len())?;
        check_len("block_local_grad", "dL/dG", dldg.len(), g.n)?;
        let hw = g.plane();
        if hw == 0 {
            return Ok(());
        }
        dx.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(p, (d, xs))| {
            let t = dldg[p % g.n] + dldg[p % g.n];
            for (o, &v) in d.iter_mut().zip(xs) {
                *o = v * t;
            }
        });
        Ok(())
    }

    /// The length norm's `inv = 1 / (√(ss_b / D) + ε)` per image.
    pub fn sample_norm_inv_of(&self, x: &[f32], g: Cnhw, eps: f32, inv: &mut [f32]) -> Result<()> {
        self.block_sumsq(x, g, inv)?;
        let d = g.per_image() as f32;
        for v in inv.iter_mut() {
            *v = 1.0 / ((*v / d).sqrt() + eps);
        }
        Ok(())
    }

    /// Per-image length normalisation (RMS over C·H·W): `y` and `inv`.
    pub fn sample_norm_forward(&self, x: &[f32], g: Cnhw, eps: f32, y: &mut [f32], inv: &mut [f32]) -> Result<()> {
        check_len("sample_norm_forward", "y", y.len(), g.len())?;
        self.sample_norm_inv_of(x, g, eps, inv)?;
        let hw = g.plane();
        if hw == 0 {
            return Ok(());
        }
        y.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(p, (yo, xs))| {
            let s = inv[p % g.n];
            for (o, &v) in yo.iter_mut().zip(xs) {
                *o = v * s;
            }
        });
        Ok(())
    }

    /// Backward of [`CpuBackend::sample_norm_forward`]; `scratch` holds 2·N.
    pub fn sample_norm_backward(
        &self,
        x: &[f32],
        g: Cnhw,
        inv: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("sample_norm_backward", "dy", dy.len(), g.len())?;
        check_len("sample_norm_backward", "dx", dx.len(), g.len())?;
        check_len("sample_norm_backward", "inv", inv.len(), g.n)?;
        pages::grow(scratch, 2 * g.n)?;
        let (ss, coef) = scratch.split_at_mut(g.n);
        self.block_sumsq(x, g, ss)?;
        let hw = g.plane();
        let d = g.per_image() as f32;
        coef.par_iter_mut().enumerate().for_each(|(b, o)| {
            let mut dot = 0.0f32;
            for c in 0..g.c {
                let (xp, dp) = (&x[(c * g.n + b) * hw..][..hw], &dy[(c * g.n + b) * hw..][..hw]);
                // SAFETY: the Avx2 backend exists only where avx2+fma were detected.
                dot = dot + self.fma_twin(|| dot_row(dp, xp), || unsafe { fast::dot(dp, xp) });
            }
            let r = (ss[b] / d).sqrt();
            *o = if r > 0.0 { -(inv[b] * inv[b]) * (dot / (d * r)) } else { 0.0 };
        });
        if hw == 0 {
            return Ok(());
        }
        let coef = &*coef;
        dx.par_chunks_mut(hw).zip(x.par_chunks(hw).zip(dy.par_chunks(hw))).enumerate().for_each(
            |(p, (o, (xs, ds)))| {
                let (s, k) = (inv[p % g.n], coef[p % g.n]);
                for i in 0..o.len() {
                    o[i] = ds[i] * s + xs[i] * k;
                }
            },
        );
        Ok(())
    }
}

impl crate::ops::Norm2dOps for CpuBackend {
    type NormScratch = Vec<f32>;

    fn batchnorm_stats(
        &self,
        x: &Vec<f32>,
        g: Cnhw,
        eps: f32,
        mean: &mut Vec<f32>,
        var: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("batchnorm_stats");
        for v in [&mut *mean, &mut *var, &mut *rstd] {
            pages::grow(v, g.c)?;
        }
        CpuBackend::batchnorm_stats(self, x, g, eps, mean, var, rstd)
    }
    fn bn_rstd(&self, var: &Vec<f32>, eps: f32, rstd: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("bn_rstd");
        pages::grow(rstd, var.len())?;
        for (r, &v) in rstd.iter_mut().zip(var) {
            *r = bn_rstd(v, eps);
        }
        Ok(())
    }
    fn batchnorm_apply(
        &self,
        x: &Vec<f32>,
        g: Cnhw,
        stats: BnStats<'_, Vec<f32>>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("batchnorm_apply");
        pages::grow(y, g.len())?;
        let stats = BnStats { mean: &stats.mean[..], rstd: &stats.rstd[..] };
        CpuBackend::batchnorm_apply(self, x, g, stats, gamma, beta, y)
    }
    fn batchnorm_backward(
        &self,
        x: &Vec<f32>,
        g: Cnhw,
        stats: BnStats<'_, Vec<f32>>,
        gamma: &Vec<f32>,
        dy: &Vec<f32>,
        grads: BnGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        let _p = crate::profile::scope("batchnorm_backward");
        let dx = match grads.dx {
            Some(dx) => {
                pages::grow(dx, g.len())?;
                Some(&mut dx[..])
            }
            None => None,
        };
        pages::grow(grads.dgamma, g.c)?;
        pages::grow(grads.dbeta, g.c)?;
        let stats = BnStats { mean: &stats.mean[..], rstd: &stats.rstd[..] };
        let grads = BnGrads { dx, dgamma: &mut grads.dgamma[..], dbeta: &mut grads.dbeta[..] };
        CpuBackend::batchnorm_backward(self, x, g, stats, gamma, dy, grads)
    }
    fn batchnorm_update_running(
        &self,
        mean: &Vec<f32>,
        var: &Vec<f32>,
        n: usize,
        m: f32,
        running_mean: &mut Vec<f32>,
        running_var: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("batchnorm_update_running");
        CpuBackend::batchnorm_update_running(self, mean, var, n, m, running_mean, running_var)
    }
    fn block_sumsq(&self, x: &Vec<f32>, g: Cnhw, out: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("block_sumsq");
        pages::grow(out, g.n)?;
        CpuBackend::block_sumsq(self, x, g, out)
    }
    fn block_local_grad(&self, x: &Vec<f32>, g: Cnhw, dldg: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("block_local_grad");
        pages::grow(dx, g.len())?;
        CpuBackend::block_local_grad(self, x, g, dldg, dx)
    }
    fn sample_norm_inv(&self, x: &Vec<f32>, g: Cnhw, eps: f32, inv: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("sample_norm_inv");
        pages::grow(inv, g.n)?;
        self.sample_norm_inv_of(x, g, eps, inv)
    }
    fn sample_norm_forward(&self, x: &Vec<f32>, g: Cnhw, eps: f32, y: &mut Vec<f32>, inv: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("sample_norm_forward");
        pages::grow(y, g.len())?;
        pages::grow(inv, g.n)?;
        CpuBackend::sample_norm_forward(self, x, g, eps, y, inv)
    }
    fn sample_norm_backward(
        &self,
        x: &Vec<f32>,
        g: Cnhw,
        inv: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("sample_norm_backward");
        pages::grow(dx, g.len())?;
        CpuBackend::sample_norm_backward(self, x, g, inv, dy, dx, scratch)
    }
}
