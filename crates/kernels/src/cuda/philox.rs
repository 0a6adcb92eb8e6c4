//! Launch wrappers for `kernels/philox.cu` ([`PhiloxOps`] on device
//! buffers): Philox-4×32-10 on the device, the Gaussians and the DAE's
//! corruption, one thread per value.

use super::device::{err, grid_for, int, CudaBackend, CudaDevice, DevBuf};
use crate::error::Result;
use crate::ops::philox::{PhiloxOps, RngPos};
use crate::ops::reduce::rows_of;
use crate::ops::Len;
use cudarc::driver::PushKernelArg;

impl PhiloxOps for CudaBackend {
    fn gaussian(&self, pos: RngPos, rows: usize, d: usize, part: u64, out: &mut DevBuf) -> Result<()> {
        const OP: &str = "gaussian";
        let n = rows * d;
        out.set_len(self.dev, n, false)?;
        if n == 0 {
            return Ok(());
        }
        let f = self.dev.function("philox", "ffwd_gaussian_f32")?;
        let (nl, di, pi) = (n as i64, int(OP, d)?, int(OP, part as usize)?);
        let mut ov = out.view_mut()?;
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&pos.seed).arg(&pos.stream).arg(&pos.first).arg(&nl).arg(&di).arg(&pi).arg(&mut ov);
        // SAFETY: one thread per value; n values written.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn dae_corrupt(
        &self,
        x: &DevBuf,
        d: usize,
        pos: RngPos,
        mask_prob: f32,
        noise_std: f32,
        out: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "dae_corrupt";
        rows_of(OP, x.len(), d)?;
        let n = x.len();
        out.set_len(self.dev, n, false)?;
        if n == 0 {
            return Ok(());
        }
        let f = self.dev.function("philox", "ffwd_dae_corrupt_f32")?;
        let (nl, di) = (n as i64, int(OP, d)?);
        let (xv, mut ov) = (x.view()?, out.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&f);
        b.arg(&xv).arg(&pos.seed).arg(&pos.stream).arg(&pos.first).arg(&nl).arg(&di);
        b.arg(&mask_prob).arg(&noise_std).arg(&mut ov);
        // SAFETY: one thread per value; x and out hold n values.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
}

impl CudaDevice {
    /// Words `0..n` of the Philox stream `(seed, stream)`, or (with
    /// `uniform = Some((lo, hi))`) the uniforms of `Philox::fill_uniform`
    /// as f32 bit patterns: the generator itself, for the tests.
    pub fn philox(&self, seed: u64, stream: u64, n: usize, uniform: Option<(f32, f32)>) -> Result<Vec<u32>> {
        let nl = n as i64;
        match uniform {
            None => {
                let func = self.function("philox", "ffwd_philox_u32")?;
                let mut od = self.alloc::<u32>("philox words", n)?;
                let mut b = self.stream.launch_builder(&func);
                b.arg(&seed).arg(&stream).arg(&nl).arg(&mut od);
                // SAFETY: one thread per word; n words written into n (or 1) slots.
                unsafe { b.launch(grid_for(n)) }.map_err(|e| err("philox_u32", e))?;
                let mut v = self.stream.clone_dtoh(&od).map_err(|e| err("download", e))?;
                v.truncate(n);
                Ok(v)
            }
            Some((lo, hi)) => {
                let func = self.function("philox", "ffwd_philox_uniform_f32")?;
                let mut od = self.alloc::<f32>("philox uniforms", n)?;
                let mut b = self.stream.launch_builder(&func);
                b.arg(&seed).arg(&stream).arg(&nl).arg(&lo).arg(&hi).arg(&mut od);
                // SAFETY: one thread per value; n values written into n (or 1) slots.
                unsafe { b.launch(grid_for(n)) }.map_err(|e| err("philox_uniform", e))?;
                let mut v = self.stream.clone_dtoh(&od).map_err(|e| err("download", e))?;
                v.truncate(n);
                Ok(v.iter().map(|x| x.to_bits()).collect())
            }
        }
    }
}
