//! Launch wrappers for `kernels/philox.cu`: Philox-4×32-10 on the device.

use super::device::{err, grid_for, CudaDevice};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

impl CudaDevice {
    /// Words `0..n` of the Philox stream `(seed, stream)`, or (with
    /// `uniform = Some((lo, hi))`) the uniforms of `Philox::fill_uniform`
    /// as f32 bit patterns.
    pub fn philox(&self, seed: u64, stream: u64, n: usize, uniform: Option<(f32, f32)>) -> Result<Vec<u32>> {
        let nl = n as i64;
        match uniform {
            None => {
                let func = self.function("philox", "ffwd_philox_u32")?;
                let mut od = self.stream.alloc_zeros::<u32>(n.max(1)).map_err(|e| err("alloc", e))?;
                let mut b = self.stream.launch_builder(&func);
                b.arg(&seed).arg(&stream).arg(&nl).arg(&mut od);
                // SAFETY: one thread per word; n words written.
                unsafe { b.launch(grid_for(n)) }.map_err(|e| err("philox_u32", e))?;
                let mut v = self.stream.clone_dtoh(&od).map_err(|e| err("download", e))?;
                v.truncate(n);
                Ok(v)
            }
            Some((lo, hi)) => {
                let func = self.function("philox", "ffwd_philox_uniform_f32")?;
                let mut od = self.zeros(n)?;
                let mut b = self.stream.launch_builder(&func);
                b.arg(&seed).arg(&stream).arg(&nl).arg(&lo).arg(&hi).arg(&mut od);
                // SAFETY: one thread per value; n values written.
                unsafe { b.launch(grid_for(n)) }.map_err(|e| err("philox_uniform", e))?;
                Ok(self.down(&od, n)?.iter().map(|v| v.to_bits()).collect())
            }
        }
    }
}
