//! Launch wrappers for `kernels/loss.cu`: FF goodness losses, softmax cross-entropy, cosine embedding, softmax BCE.

use super::device::{err, one_warp, warp_rows, CudaDevice};
use crate::cpu::loss::{FfLoss, GoodnessForm};
use crate::error::Result;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

impl CudaDevice {
    /// The FF loss of `g` (n positives then n negatives): (dL/dG, mean loss).
    pub fn ff_loss(&self, loss: FfLoss, form: GoodnessForm, d: usize, g: &[f32]) -> Result<(Vec<f32>, f32)> {
        let (gd, mut dd, mut ld) = (self.up(g)?, self.zeros(g.len())?, self.zeros(1)?);
        self.ff_loss_on((loss, form), d, &gd, g.len(), (&mut dd, &mut ld))?;
        Ok((self.down(&dd, g.len())?, self.down(&ld, 1)?[0]))
    }

    /// The FF loss on device buffers: `rows` goodness values (positives then
    /// negatives) of a layer of width `d` → dL/dG (`rows` values) and the
    /// mean loss (one value).
    pub fn ff_loss_on(
        &self,
        (loss, form): (FfLoss, GoodnessForm),
        d: usize,
        g: &CudaSlice<f32>,
        rows: usize,
        (dldg, out): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
    ) -> Result<()> {
        let func = self.function("loss", "ffwd_ff_loss_f32")?;
        let (kind, param) = match loss {
            FfLoss::Threshold { theta } => (0i32, theta),
            FfLoss::Symba { alpha } => (1i32, alpha),
        };
        let (n, di, mean) = ((rows / 2) as i32, d as i32, (form == GoodnessForm::Mean) as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(g).arg(&n).arg(&di).arg(&kind).arg(&param).arg(&mean).arg(dldg).arg(out);
        // One block of 256 threads (FFWD_LOSS_THREADS in loss.cu).
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the callers size g and dL/dG to rows values and out to one.
        unsafe { b.launch(cfg) }.map_err(|e| err("ff_loss", e))?;
        Ok(())
    }

    /// One batch's statistics of an FF layer into `out[3·slot..3·slot + 3]`:
    /// the loss (from `loss`), and the mean G of the `rows / 2` positives
    /// and of the negatives (L32 sum / n, as the host computes them).
    pub fn ff_stats_on(
        &self,
        g: &CudaSlice<f32>,
        rows: usize,
        loss: &CudaSlice<f32>,
        (out, slot): (&mut CudaSlice<f32>, usize),
    ) -> Result<()> {
        if out.len() < 3 * (slot + 1) {
            return Err(crate::error::shape_err(
                "cuda ff_stats",
                format!("slot {slot} past a {}-value buffer", out.len()),
            ));
        }
        let func = self.function("loss", "ffwd_ff_stats_f32")?;
        let (n, s) = ((rows / 2) as i32, slot as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(g).arg(&n).arg(loss).arg(&s).arg(out);
        // SAFETY: g holds rows values, loss one; out has room for the slot (checked).
        unsafe { b.launch(one_warp()) }.map_err(|e| err("ff_stats", e))?;
        Ok(())
    }

    /// [`CudaDevice::ff_stats_on`] from host values: (loss, mean G⁺, mean G⁻).
    pub fn ff_stats(&self, g: &[f32], loss: f32) -> Result<[f32; 3]> {
        let (gd, ld, mut od) = (self.up(g)?, self.up(&[loss])?, self.zeros(3)?);
        self.ff_stats_on(&gd, g.len(), &ld, (&mut od, 0))?;
        let v = self.down(&od, 3)?;
        Ok([v[0], v[1], v[2]])
    }

    /// Softmax cross-entropy of `logits` (labels.len() × c): (gradient, mean loss).
    pub fn softmax_xent(&self, logits: &[f32], c: usize, labels: &[u32]) -> Result<(Vec<f32>, f32)> {
        let m = labels.len();
        let rows = self.function("loss", "ffwd_softmax_xent_rows_f32")?;
        let mean = self.function("loss", "ffwd_mean_l32_f32")?;
        let zd = self.up(logits)?;
        let ld = self
            .stream
            .clone_htod(if labels.is_empty() { &[0u32][..] } else { labels })
            .map_err(|e| err("upload", e))?;
        let (mut gd, mut rl, mut out) = (self.zeros(m * c)?, self.zeros(m)?, self.zeros(1)?);
        let (mi, ci) = (m as i32, c as i32);
        let mut b = self.stream.launch_builder(&rows);
        b.arg(&zd).arg(&ld).arg(&mi).arg(&ci).arg(&mut gd).arg(&mut rl);
        // SAFETY: one warp per row of c logits; labels are below c (checked by the spec call).
        unsafe { b.launch(warp_rows(m)) }.map_err(|e| err("softmax_xent", e))?;
        let mut b = self.stream.launch_builder(&mean);
        b.arg(&rl).arg(&mi).arg(&mut out);
        // SAFETY: m row losses read, one value written.
        unsafe { b.launch(one_warp()) }.map_err(|e| err("softmax_xent mean", e))?;
        Ok((self.down(&gd, m * c)?, self.down(&out, 1)?[0]))
    }

    /// The mean (L32 sum · 1/n) of `n` values on the device.
    pub(crate) fn mean_l32(&self, v: &CudaSlice<f32>, n: usize) -> Result<f32> {
        let f = self.function("loss", "ffwd_mean_l32_f32")?;
        let mut out = self.zeros(1)?;
        let ni = n as i32;
        let mut b = self.stream.launch_builder(&f);
        b.arg(v).arg(&ni).arg(&mut out);
        // SAFETY: n values read, one written.
        unsafe { b.launch(one_warp()) }.map_err(|e| err("mean_l32", e))?;
        Ok(self.down(&out, 1)?[0])
    }

    /// Cosine-embedding loss of rows of `a` against rows of `b` (width `d`):
    /// (dL/da, mean loss).
    pub fn cosine_embedding(&self, a: &[f32], b: &[f32], d: usize) -> Result<(Vec<f32>, f32)> {
        let m = a.len().checked_div(d).unwrap_or(0);
        let f = self.function("loss", "ffwd_cosine_rows_f32")?;
        let (ad, bd) = (self.up(a)?, self.up(b)?);
        let (mut gd, mut rl) = (self.zeros(a.len())?, self.zeros(m)?);
        let (mi, di, eps) = (m as i32, d as i32, crate::cpu::loss::COSINE_EPS);
        let mut lb = self.stream.launch_builder(&f);
        lb.arg(&ad).arg(&bd).arg(&mi).arg(&di).arg(&eps).arg(&mut gd).arg(&mut rl);
        // SAFETY: one warp per row of d values in a, b and grad.
        unsafe { lb.launch(warp_rows(m)) }.map_err(|e| err("cosine_embedding", e))?;
        Ok((self.down(&gd, a.len())?, self.mean_l32(&rl, m)?))
    }

    /// Softmax BCE of `logits` (labels.len() × c): (gradient, mean loss).
    pub fn softmax_bce(&self, logits: &[f32], c: usize, labels: &[u32]) -> Result<(Vec<f32>, f32)> {
        let m = labels.len();
        let f = self.function("loss", "ffwd_softmax_bce_rows_f32")?;
        let zd = self.up(logits)?;
        let ld = self
            .stream
            .clone_htod(if labels.is_empty() { &[0u32][..] } else { labels })
            .map_err(|e| err("upload", e))?;
        let (mut gd, mut td) = (self.zeros(m * c)?, self.zeros(m * c)?);
        let (mi, ci) = (m as i32, c as i32);
        let mut lb = self.stream.launch_builder(&f);
        lb.arg(&zd).arg(&ld).arg(&mi).arg(&ci).arg(&mut gd).arg(&mut td);
        // SAFETY: one warp per row of c logits; labels below c (checked by the spec call).
        unsafe { lb.launch(warp_rows(m)) }.map_err(|e| err("softmax_bce", e))?;
        Ok((self.down(&gd, m * c)?, self.mean_l32(&td, m * c)?))
    }
}
