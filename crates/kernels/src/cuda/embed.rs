//! Launch wrappers for `kernels/embed.cu` ([`EmbedOps`] on device
//! buffers): the conv nets' label channel and its gradient, on the channel's
//! range of a CNHW buffer.

use super::device::{err, grid_for, int, CudaBackend, DevBuf, DevIds};
use crate::error::{check_len, Result};
use crate::ops::embed::EmbedOps;
use crate::ops::Len;
use cudarc::driver::PushKernelArg;

/// The class count of an embedding of `len` values in planes of `hw`.
fn classes_of(op: &'static str, len: usize, hw: usize) -> Result<usize> {
    let classes = len.checked_div(hw).unwrap_or(0);
    check_len(op, "embedding", len, classes * hw)?;
    Ok(classes)
}

impl EmbedOps for CudaBackend {
    fn label_channel(&self, emb: &DevBuf, hw: usize, labels: &DevIds, x: &mut DevBuf, offset: usize) -> Result<()> {
        const OP: &str = "label_channel";
        let classes = classes_of(OP, emb.len(), hw)?;
        labels.check(OP, classes)?;
        let n = labels.len() * hw;
        let mut chan = x.range_mut(OP, offset, n)?;
        if n == 0 {
            return Ok(());
        }
        let func = self.dev.function("embed", "ffwd_label_channel_f32")?;
        let (h, ni) = (int(OP, hw)?, int(OP, labels.len())?);
        let (ev, lv) = (emb.view()?, labels.buf.view()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&ev).arg(&h).arg(&lv).arg(&ni).arg(&mut chan);
        // SAFETY: one thread per channel value; every label is below the
        // class count (checked), so every embedding read is in bounds.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn label_channel_grad(
        &self,
        dx: &DevBuf,
        offset: usize,
        hw: usize,
        labels: &DevIds,
        demb: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "label_channel_grad";
        let classes = classes_of(OP, demb.len(), hw)?;
        labels.check(OP, classes)?;
        let chan = dx.range(OP, offset, labels.len() * hw)?;
        if demb.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("embed", "ffwd_label_channel_grad_f32")?;
        let (h, ni, ci) = (int(OP, hw)?, int(OP, labels.len())?, int(OP, classes)?);
        let lv = labels.buf.view()?;
        let total = demb.len();
        let mut ev = demb.view_mut()?;
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&chan).arg(&h).arg(&lv).arg(&ni).arg(&ci).arg(&mut ev);
        // SAFETY: one thread per embedding value; n labels and n planes read.
        unsafe { b.launch(grid_for(total)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
}
