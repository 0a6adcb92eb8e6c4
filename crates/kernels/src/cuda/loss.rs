//! Launch wrappers for `kernels/loss.cu` ([`LossOps`] on device buffers):
//! FF goodness losses and their batch means, softmax cross-entropy and
//! BCE, cosine embedding, softmax, MSE and the GAN loss. Each loss writes
//! its mean into the statistics buffer on the device; nothing waits.

use super::device::{err, grid_for, int, one_warp, warp_rows, CudaBackend, DevBuf, DevIds};
use crate::error::{check_len, shape_err, Result};
use crate::ops::loss::{labelled_rows, FfLoss, GanHalves, GoodnessForm, LossOps, LossOut, MeanOf, COSINE_EPS};
use crate::ops::{Len, StatSlot};
use cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};

/// Work space of the losses on the device: the per-row (or per-value)
/// terms that a fixed-order mean then adds.
#[derive(Clone, Debug, Default)]
pub struct DevLossScratch {
    terms: DevBuf,
}

impl CudaBackend {
    /// `out[0] = L32 sum of the n values of v · (1/n)` (one warp).
    fn mean_l32(&self, op: &'static str, v: &CudaView<'_, f32>, n: usize, out: StatSlot<'_, DevBuf>) -> Result<()> {
        let f = self.dev.function("loss", "ffwd_mean_l32_f32")?;
        let ni = int(op, n)?;
        let mut o = out.buf.range_mut(op, out.at, 1)?;
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(v).arg(&ni).arg(&mut o);
        // SAFETY: n values read, one written (the slot, checked).
        unsafe { b.launch(one_warp()) }.map_err(|e| err(op, e))?;
        Ok(())
    }

    /// A loss over labelled logits: the rows kernel `name` (one warp per
    /// row) writes the gradient and `terms` per-row (`per_value`: per
    /// logit) terms, then their L32 mean goes to `out`.
    fn labelled(
        &self,
        (op, name): (&'static str, &str),
        (logits, c, labels): (&DevBuf, usize, &DevIds),
        per_value: bool,
        out: LossOut<'_, Self>,
    ) -> Result<()> {
        let LossOut { grad, scratch, stat: out } = out;
        let m = labelled_rows(op, logits, c, labels.len())?;
        labels.check(op, c)?;
        out.check(op, 1)?;
        grad.set_len(self.dev, m * c, false)?;
        let terms = if per_value { m * c } else { m };
        scratch.terms.set_len(self.dev, terms, false)?;
        if m == 0 {
            let mut o = out.buf.range_mut(op, out.at, 1)?;
            return self.dev.stream.memset_zeros(&mut o).map_err(|e| err(op, e));
        }
        let f = self.dev.function("loss", name)?;
        let (mi, ci) = (int(op, m)?, int(op, c)?);
        {
            let (zv, lv, mut gv, mut tv) =
                (logits.view()?, labels.buf.view()?, grad.view_mut()?, scratch.terms.view_mut()?);
            let mut b = self.dev.stream.launch_builder(&f);
            b.arg(&zv).arg(&lv).arg(&mi).arg(&ci).arg(&mut gv).arg(&mut tv);
            // SAFETY: one warp per row of c logits; every label is below c
            // (checked above), so every read is in bounds.
            unsafe { b.launch(warp_rows(m)) }.map_err(|e| err(op, e))?;
        }
        self.mean_l32(op, &scratch.terms.view()?, terms, out)
    }
}

impl LossOps for CudaBackend {
    type LossScratch = DevLossScratch;

    fn ff_loss(&self, loss: FfLoss, form: GoodnessForm, d: usize, g: &DevBuf, out: LossOut<'_, Self>) -> Result<()> {
        const OP: &str = "ff_loss";
        let LossOut { grad: dldg, stat: out, .. } = out;
        if !g.len().is_multiple_of(2) {
            return Err(shape_err(OP, format!("{} goodness values: expected n positives + n negatives", g.len())));
        }
        out.check(OP, 1)?;
        dldg.set_len(self.dev, g.len(), false)?;
        let func = self.dev.function("loss", "ffwd_ff_loss_f32")?;
        let (kind, param) = match loss {
            FfLoss::Threshold { theta } => (0i32, theta),
            FfLoss::Symba { alpha } => (1i32, alpha),
        };
        let (n, di, mean) = (int(OP, g.len() / 2)?, int(OP, d)?, (form == GoodnessForm::Mean) as i32);
        let dummy = self.dev.dummy()?;
        let gv = if g.is_empty() { dummy.slice(0..0) } else { g.view()? };
        let mut dv = self.maybe_mut(dldg)?;
        let mut o = out.buf.range_mut(OP, out.at, 1)?;
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&gv).arg(&n).arg(&di).arg(&kind).arg(&param).arg(&mean).arg(&mut dv).arg(&mut o);
        // One block of 256 threads (FFWD_LOSS_THREADS in loss.cu).
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: g and dL/dG hold 2n values, the slot one (checked).
        unsafe { b.launch(cfg) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn goodness_means(&self, g: &DevBuf, mean: MeanOf, out: StatSlot<'_, DevBuf>) -> Result<()> {
        const OP: &str = "goodness_means";
        if !g.len().is_multiple_of(2) {
            return Err(shape_err(OP, format!("{} goodness values are not two halves", g.len())));
        }
        out.check(OP, 2)?;
        let func = self.dev.function("loss", "ffwd_goodness_means_f32")?;
        let (mode, d) = match mean {
            MeanOf::L32 => (0i32, 1),
            MeanOf::PerValueF64 { d } => (1i32, d),
        };
        let (n, di) = (int(OP, g.len() / 2)?, int(OP, d)?);
        let dummy = self.dev.dummy()?;
        let gv = if g.is_empty() { dummy.slice(0..0) } else { g.view()? };
        let mut o = out.buf.range_mut(OP, out.at, 2)?;
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&gv).arg(&n).arg(&mode).arg(&di).arg(&mut o);
        // SAFETY: 2n values read, two written (checked).
        unsafe { b.launch(one_warp()) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn softmax_xent(&self, logits: &DevBuf, c: usize, labels: &DevIds, out: LossOut<'_, Self>) -> Result<()> {
        self.labelled(("softmax_xent", "ffwd_softmax_xent_rows_f32"), (logits, c, labels), false, out)
    }
    fn softmax_bce(&self, logits: &DevBuf, c: usize, labels: &DevIds, out: LossOut<'_, Self>) -> Result<()> {
        self.labelled(("softmax_bce", "ffwd_softmax_bce_rows_f32"), (logits, c, labels), true, out)
    }
    fn cosine_embedding(&self, a: &DevBuf, b: &DevBuf, d: usize, out: LossOut<'_, Self>) -> Result<()> {
        const OP: &str = "cosine_embedding";
        let LossOut { grad, scratch, stat: out } = out;
        let m = crate::ops::reduce::rows_of(OP, a.len(), d)?;
        check_len(OP, "b", b.len(), a.len())?;
        out.check(OP, 1)?;
        grad.set_len(self.dev, a.len(), false)?;
        scratch.terms.set_len(self.dev, m, false)?;
        if m == 0 {
            let mut o = out.buf.range_mut(OP, out.at, 1)?;
            return self.dev.stream.memset_zeros(&mut o).map_err(|e| err(OP, e));
        }
        let f = self.dev.function("loss", "ffwd_cosine_rows_f32")?;
        let (mi, di, eps) = (int(OP, m)?, int(OP, d)?, COSINE_EPS);
        {
            let (av, bv, mut gv, mut tv) = (a.view()?, b.view()?, grad.view_mut()?, scratch.terms.view_mut()?);
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&av).arg(&bv).arg(&mi).arg(&di).arg(&eps).arg(&mut gv).arg(&mut tv);
            // SAFETY: one warp per row of d values in a, b and grad (checked).
            unsafe { lb.launch(warp_rows(m)) }.map_err(|e| err(OP, e))?;
        }
        self.mean_l32(OP, &scratch.terms.view()?, m, out)
    }
    fn softmax_rows(&self, logits: &DevBuf, c: usize, out: &mut DevBuf, _scratch: &mut DevLossScratch) -> Result<()> {
        const OP: &str = "softmax_rows";
        let m = crate::ops::reduce::rows_of(OP, logits.len(), c)?;
        out.set_len(self.dev, logits.len(), false)?;
        if m == 0 {
            return Ok(());
        }
        let f = self.dev.function("loss", "ffwd_softmax_rows_f32")?;
        let (mi, ci) = (int(OP, m)?, int(OP, c)?);
        let (zv, mut ov) = (logits.view()?, out.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&zv).arg(&mi).arg(&ci).arg(&mut ov);
        // SAFETY: one warp per row of c values (checked).
        unsafe { b.launch(warp_rows(m)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn mse(&self, a: &DevBuf, b: &DevBuf, grad: &mut DevBuf, out: StatSlot<'_, DevBuf>) -> Result<()> {
        const OP: &str = "mse";
        check_len(OP, "target", b.len(), a.len())?;
        out.check(OP, 1)?;
        let n = a.len();
        grad.set_len(self.dev, n, false)?;
        let nl = n as i64;
        if n > 0 {
            let f = self.dev.function("loss", "ffwd_sub_f32")?;
            let (av, bv, mut gv) = (a.view()?, b.view()?, grad.view_mut()?);
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&av).arg(&bv).arg(&nl).arg(&mut gv);
            // SAFETY: n values in each buffer (checked).
            unsafe { lb.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        }
        {
            let f = self.dev.function("loss", "ffwd_mean_sumsq_f32")?;
            let dummy = self.dev.dummy()?;
            let gv = if n == 0 { dummy.slice(0..0) } else { grad.view()? };
            let mut o = out.buf.range_mut(OP, out.at, 1)?;
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&gv).arg(&nl).arg(&mut o);
            // SAFETY: n values read, one written (checked).
            unsafe { lb.launch(one_warp()) }.map_err(|e| err(OP, e))?;
        }
        // The same f32 scale as the specification's `2 / len`.
        let s = 2.0 / n.max(1) as f32;
        if n > 0 {
            let f = self.dev.function("loss", "ffwd_scale_f32")?;
            let mut gv = grad.view_mut()?;
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&mut gv).arg(&nl).arg(&s);
            // SAFETY: n values read and written in place.
            unsafe { lb.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        }
        Ok(())
    }
    fn gan_loss(
        &self,
        z: &DevBuf,
        halves: GanHalves,
        grad: &mut DevBuf,
        _scratch: &mut DevLossScratch,
        out: StatSlot<'_, DevBuf>,
    ) -> Result<()> {
        const OP: &str = "gan_loss";
        let n = match halves {
            GanHalves::RealThenFake if !z.len().is_multiple_of(2) => {
                return Err(shape_err(OP, format!("{} logits are not n real + n fake", z.len())))
            }
            GanHalves::RealThenFake => z.len() / 2,
            GanHalves::AllReal => z.len(),
        };
        out.check(OP, 1)?;
        grad.set_len(self.dev, z.len(), false)?;
        let f = self.dev.function("loss", "ffwd_gan_loss_f32")?;
        let (ni, rows) = (int(OP, n)?, int(OP, z.len())?);
        let dummy = self.dev.dummy()?;
        let zv = if z.is_empty() { dummy.slice(0..0) } else { z.view()? };
        let mut gv = self.maybe_mut(grad)?;
        let mut o = out.buf.range_mut(OP, out.at, 1)?;
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&zv).arg(&ni).arg(&rows).arg(&mut gv).arg(&mut o);
        // SAFETY: `rows` logits read and gradients written, one slot (checked).
        unsafe { b.launch(one_warp()) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
}
