//! A CUDA device and launch wrappers for the kernel modules, host slice in,
//! host vector out: the form the bit-exact tests (CUDA == scalar spec) use.
//! Device-resident training is not wired to these yet.
//!
//! Every launch configuration partitions outputs only; no configuration
//! changes an output's order of operations (see the `.cu` files).

use super::compile::{compile_ptx, nvrtc_available, MODULES};
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// PTX architecture the modules are compiled for; the driver JIT-compiles it
/// for the device at hand (compute 8.0 and newer).
pub const PTX_ARCH: &str = "compute_80";

pub(crate) fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Cuda { what: what.to_string(), detail: e.to_string() }
}

/// Device 0 with its stream and loaded modules.
pub struct CudaDevice {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    sms: OnceLock<usize>,
}

/// Device 0, or `None` when the driver, NVRTC or a device is missing
/// (probed once, never panics). [`cuda_device_checked`] says which.
pub fn cuda_device() -> Option<&'static CudaDevice> {
    cuda_device_checked().ok()
}

/// Device 0, or an error that says what is missing: the driver library
/// (libcuda), NVRTC (libnvrtc), or a device.
pub fn cuda_device_checked() -> Result<&'static CudaDevice> {
    static DEV: OnceLock<std::result::Result<CudaDevice, String>> = OnceLock::new();
    DEV.get_or_init(|| {
        // SAFETY: only tries to dlopen libcuda; no driver call.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(
                "the CUDA driver library (libcuda.so) cannot be loaded: no NVIDIA driver on this machine".into()
            );
        }
        if !nvrtc_available() {
            return Err("libnvrtc cannot be loaded (install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and \
                        put its lib folder on LD_LIBRARY_PATH)"
                .into());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("device 0: {e}"))?;
        let stream = ctx.default_stream();
        Ok(CudaDevice { ctx, stream, modules: Mutex::new(HashMap::new()), sms: OnceLock::new() })
    })
    .as_ref()
    .map_err(|e| Error::Cuda { what: "device 0".into(), detail: e.clone() })
}

pub(crate) const BLOCK: u32 = 256;

pub(crate) fn grid_for(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((n as u32).div_ceil(BLOCK).max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// One warp per row, 8 rows per block.
pub(crate) fn warp_rows(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((rows as u32).div_ceil(8).max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// One warp (the fixed-order whole-vector reductions).
pub(crate) fn one_warp() -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 }
}

impl CudaDevice {
    /// The stream every launch and copy of this device goes through, in order.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The device's multiprocessor count (queried once).
    pub fn sm_count(&self) -> usize {
        *self.sms.get_or_init(|| {
            use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT;
            self.ctx.attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_or(1, |v| v.max(1) as usize)
        })
    }

    /// Wait until the stream's work is done.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| err("synchronize", e))
    }

    pub(crate) fn function(&self, module: &'static str, name: &str) -> Result<CudaFunction> {
        let mut mods = self.modules.lock().expect("module table");
        let m = match mods.get(module) {
            Some(m) => m.clone(),
            None => {
                let spec = MODULES.iter().find(|m| m.name == module).expect("known module");
                let ptx = compile_ptx(spec, PTX_ARCH)?;
                let m = self
                    .ctx
                    .load_module(cudarc::nvrtc::Ptx::from_src(ptx.as_str()))
                    .map_err(|e| err(&format!("load {module}.cu"), e))?;
                mods.insert(module, m.clone());
                m
            }
        };
        m.load_function(name).map_err(|e| err(&format!("{module}.cu: {name}"), e))
    }

    pub(crate) fn up(&self, x: &[f32]) -> Result<cudarc::driver::CudaSlice<f32>> {
        // a zero-length allocation is not allowed: keep one element
        if x.is_empty() {
            return self.stream.clone_htod(&[0.0f32]).map_err(|e| err("upload", e));
        }
        self.stream.clone_htod(x).map_err(|e| err("upload", e))
    }

    pub(crate) fn zeros(&self, n: usize) -> Result<cudarc::driver::CudaSlice<f32>> {
        self.stream.alloc_zeros::<f32>(n.max(1)).map_err(|e| err("alloc", e))
    }

    pub(crate) fn down(&self, x: &cudarc::driver::CudaSlice<f32>, n: usize) -> Result<Vec<f32>> {
        let mut v = self.stream.clone_dtoh(x).map_err(|e| err("download", e))?;
        v.truncate(n);
        Ok(v)
    }
}
