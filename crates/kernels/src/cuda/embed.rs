//! Launch wrappers for `kernels/embed.cu`: the conv nets' label channel.

use super::device::{err, grid_for, CudaDevice};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

impl CudaDevice {
    /// The label channel (`forward`: emb, classes × hw → n × hw) or its
    /// gradient (`!forward`: dchan, n × hw → classes × hw).
    pub fn label_channel(
        &self,
        x: &[f32],
        hw: usize,
        labels: &[u32],
        classes: usize,
        forward: bool,
    ) -> Result<Vec<f32>> {
        let n = labels.len();
        let (name, out) =
            if forward { ("ffwd_label_channel_f32", n * hw) } else { ("ffwd_label_channel_grad_f32", classes * hw) };
        let func = self.function("embed", name)?;
        let xd = self.up(x)?;
        let ld = self
            .stream
            .clone_htod(if labels.is_empty() { &[0u32][..] } else { labels })
            .map_err(|e| err("upload", e))?;
        let mut od = self.zeros(out)?;
        let (h, ni, ci) = (hw as i32, n as i32, classes as i32);
        let mut b = self.stream.launch_builder(&func);
        if forward {
            b.arg(&xd).arg(&h).arg(&ld).arg(&ni).arg(&mut od);
        } else {
            b.arg(&xd).arg(&h).arg(&ld).arg(&ni).arg(&ci).arg(&mut od);
        }
        // SAFETY: one thread per output; labels are below `classes` (the caller's
        // spec call checks that), so every read is in bounds.
        unsafe { b.launch(grid_for(out)) }.map_err(|e| err(name, e))?;
        self.down(&od, out)
    }
}
