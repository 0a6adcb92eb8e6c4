//! The CUDA device, its buffers and the [`CudaBackend`] that implements the
//! op families on them.
//!
//! A [`CudaDevice`] holds the context, the one stream every launch and copy
//! goes through (so the order of device work is the order of the calls),
//! and the loaded modules (compiled once per process, see
//! [`super::compile`]). Buffers ([`DevBuf`], [`DevIds`], [`DevBytes`]) are a
//! device allocation with a length no larger than its capacity, so that a
//! buffer resized to a smaller batch keeps its memory (as a `Vec` does).
//!
//! Every launch configuration partitions outputs only; no configuration
//! changes an output's order of operations (see the `.cu` files).

use super::compile::{compile_ptx, nvrtc_available, MODULES};
use super::gemm::Tile;
use crate::error::{shape_err, Error, Result};
use crate::ops::{Backend, Len, Storage};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, LaunchConfig,
    ValidAsZeroBits,
};
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
    functions: Mutex<HashMap<(&'static str, String), CudaFunction>>,
    sms: OnceLock<usize>,
    /// One float, never written: the argument of a kernel parameter that a
    /// launch does not read (SGD's second state, an unused bias).
    dummy: OnceLock<std::result::Result<CudaSlice<f32>, String>>,
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
        Ok(CudaDevice {
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            sms: OnceLock::new(),
            dummy: OnceLock::new(),
        })
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

/// A count as a kernel's `int` argument, or an error naming the op.
pub(crate) fn int(op: &'static str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| shape_err(op, format!("{n} is too large for the kernel's 32-bit index")))
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

    /// Entry `name` of module `module`, loading the module on first use.
    pub(crate) fn function(&self, module: &'static str, name: &str) -> Result<CudaFunction> {
        let key = (module, name.to_string());
        if let Some(f) = self.functions.lock().expect("function table").get(&key) {
            return Ok(f.clone());
        }
        let m = {
            let mut mods = self.modules.lock().expect("module table");
            match mods.get(module) {
                Some(m) => m.clone(),
                None => {
                    let spec = MODULES
                        .iter()
                        .find(|m| m.name == module)
                        .ok_or_else(|| err(module, "no such kernel module"))?;
                    let ptx = compile_ptx(spec, PTX_ARCH)?;
                    let m = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_src(ptx.as_str()))
                        .map_err(|e| err(&format!("load {module}.cu"), e))?;
                    mods.insert(module, m.clone());
                    m
                }
            }
        };
        let f = m.load_function(name).map_err(|e| err(&format!("{module}.cu: {name}"), e))?;
        self.functions.lock().expect("function table").insert(key, f.clone());
        Ok(f)
    }

    /// The never-read float (see the field).
    pub(crate) fn dummy(&self) -> Result<&CudaSlice<f32>> {
        self.dummy
            .get_or_init(|| self.stream.alloc_zeros::<f32>(1).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| err("allocation of the placeholder argument", e))
    }

    /// A zero-filled allocation of `n` (at least one) values.
    pub(crate) fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, what: &str, n: usize) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros::<T>(n.max(1)).map_err(|e| err(&format!("allocation of {n} values for {what}"), e))
    }
}

/// A device buffer: an allocation and the length in use (at most its
/// capacity). The default buffer holds nothing and allocates nothing.
#[derive(Default)]
pub struct Dev<T> {
    data: Option<CudaSlice<T>>,
    len: usize,
}

/// `f32` values in device memory.
pub type DevBuf = Dev<f32>;
/// Max-pool positions in device memory.
pub type DevBytes = Dev<u8>;

impl<T> Len for Dev<T> {
    fn len(&self) -> usize {
        self.len
    }
}

impl<T: DeviceRepr> Clone for Dev<T> {
    /// A device-to-device copy. A device out of memory here is a panic:
    /// `Clone` cannot fail (clone networks only where memory allows).
    fn clone(&self) -> Self {
        let data = self.data.as_ref().map(|d| d.try_clone().expect("device copy of a buffer (out of device memory?)"));
        Self { data, len: self.len }
    }
}

impl<T> std::fmt::Debug for Dev<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cap = self.data.as_ref().map_or(0, |d| d.len());
        write!(f, "Dev {{ len: {}, capacity: {cap} }}", self.len)
    }
}

impl<T: DeviceRepr + ValidAsZeroBits> Dev<T> {
    /// The values in use, as a kernel argument.
    pub(crate) fn view(&self) -> Result<CudaView<'_, T>> {
        match &self.data {
            Some(d) => Ok(d.slice(0..self.len)),
            None => Err(err("buffer", "read before it was ever written")),
        }
    }
    /// The values in use, to write.
    pub(crate) fn view_mut(&mut self) -> Result<CudaViewMut<'_, T>> {
        let len = self.len;
        match &mut self.data {
            Some(d) => Ok(d.slice_mut(0..len)),
            None => Err(err("buffer", "written before it was ever allocated")),
        }
    }
    /// Values `at..at + n`, to write (checked against the length).
    pub(crate) fn range_mut(&mut self, op: &'static str, at: usize, n: usize) -> Result<CudaViewMut<'_, T>> {
        if at + n > self.len {
            return Err(shape_err(op, format!("values {at}..{} of a {}-value buffer", at + n, self.len)));
        }
        match &mut self.data {
            Some(d) => Ok(d.slice_mut(at..at + n)),
            None => Err(err("buffer", "written before it was ever allocated")),
        }
    }
    /// Values `at..at + n` (checked against the length).
    pub(crate) fn range(&self, op: &'static str, at: usize, n: usize) -> Result<CudaView<'_, T>> {
        if at + n > self.len {
            return Err(shape_err(op, format!("values {at}..{} of a {}-value buffer", at + n, self.len)));
        }
        match &self.data {
            Some(d) => Ok(d.slice(at..at + n)),
            None => Err(err("buffer", "read before it was ever written")),
        }
    }
    /// Make the buffer hold `n` values; with `keep`, the first `min(len, n)`
    /// keep their values and new ones are zero (as `Vec::resize`), else
    /// the contents are unspecified (an output about to be overwritten).
    pub(crate) fn set_len(&mut self, dev: &CudaDevice, n: usize, keep: bool) -> Result<()> {
        let cap = self.data.as_ref().map_or(0, |d| d.len());
        if n <= cap {
            if let Some(d) = self.data.as_mut() {
                if keep && n > self.len {
                    dev.stream
                        .memset_zeros(&mut d.slice_mut(self.len..n))
                        .map_err(|e| err("zeroing a grown buffer", e))?;
                }
                self.len = n;
                return Ok(());
            }
        }
        let mut fresh = dev.alloc::<T>("a buffer", n)?;
        if keep && self.len > 0 {
            let old = self.data.as_ref().expect("a buffer with values has an allocation");
            dev.stream
                .memcpy_dtod(&old.slice(0..self.len), &mut fresh.slice_mut(0..self.len))
                .map_err(|e| err("copying a grown buffer", e))?;
        }
        self.data = Some(fresh);
        self.len = n;
        Ok(())
    }
}

/// Class labels in device memory, with the largest one (checked against
/// the class count by the ops that index with them, before any launch).
#[derive(Clone, Debug, Default)]
pub struct DevIds {
    pub(crate) buf: Dev<u32>,
    pub(crate) max: Option<u32>,
}

impl Len for DevIds {
    fn len(&self) -> usize {
        self.buf.len
    }
}

impl DevIds {
    /// An error unless every label is below `classes`.
    pub(crate) fn check(&self, op: &'static str, classes: usize) -> Result<()> {
        match self.max {
            Some(m) if m as usize >= classes => Err(shape_err(op, format!("label {m} with {classes} classes"))),
            _ => Ok(()),
        }
    }
}

/// The CUDA backend: the op families on device buffers, all work on one
/// stream. Construct with [`CudaBackend::new`]; without a driver, NVRTC or
/// device it is an error that says which is missing.
#[derive(Clone, Copy)]
pub struct CudaBackend {
    pub(crate) dev: &'static CudaDevice,
    /// The GEMM tile (`Tile::Auto` but in tests: every tile gives the same bits).
    pub(crate) tile: Tile,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend {{ device: 0, tile: {:?} }}", self.tile)
    }
}

impl CudaBackend {
    /// The backend on device `ordinal` (0 is the only one supported).
    pub fn new(ordinal: usize) -> Result<Self> {
        if ordinal != 0 {
            return Err(Error::Cuda {
                what: format!("device {ordinal}"),
                detail: "only CUDA device 0 is supported".into(),
            });
        }
        Ok(Self { dev: cuda_device_checked()?, tile: Tile::Auto })
    }
    /// The same backend with every GEMM in tiles of `tile` (for the tests:
    /// all tiles give the same bits).
    pub fn with_tile(self, tile: Tile) -> Self {
        Self { tile, ..self }
    }
    /// The device.
    pub fn device(&self) -> &'static CudaDevice {
        self.dev
    }
    /// A buffer to pass where a kernel may not read it (SGD's second state):
    /// allocated (one value) if it never was.
    pub(crate) fn maybe_mut<'a>(&self, b: &'a mut DevBuf) -> Result<CudaViewMut<'a, f32>> {
        if b.data.is_none() {
            b.set_len(self.dev, 0, false)?;
        }
        b.view_mut()
    }
}

impl Storage for CudaBackend {
    type Buf = DevBuf;
    type Ids = DevIds;

    fn zeros(&self, n: usize) -> Result<DevBuf> {
        Ok(Dev { data: Some(self.dev.alloc("zeros", n)?), len: n })
    }
    fn resize(&self, buf: &mut DevBuf, n: usize) -> Result<()> {
        buf.set_len(self.dev, n, true)
    }
    fn upload(&self, host: &[f32], buf: &mut DevBuf) -> Result<()> {
        buf.set_len(self.dev, host.len(), false)?;
        if host.is_empty() {
            return Ok(());
        }
        self.dev.stream.memcpy_htod(host, &mut buf.view_mut()?).map_err(|e| err("upload", e))
    }
    fn upload_with(&self, buf: &mut DevBuf, n: usize, write: impl FnOnce(&mut [f32])) -> Result<()> {
        let mut host = vec![0.0f32; n];
        write(&mut host);
        self.upload(&host, buf)
    }
    fn download(&self, buf: &DevBuf) -> Result<Vec<f32>> {
        if buf.len == 0 {
            return Ok(Vec::new());
        }
        let mut host = vec![0.0f32; buf.len];
        self.dev.stream.memcpy_dtoh(&buf.view()?, &mut host).map_err(|e| err("download", e))?;
        Ok(host)
    }
    fn with_host<R>(&self, buf: &DevBuf, read: impl FnOnce(&[f32]) -> R) -> Result<R> {
        Ok(read(&self.download(buf)?))
    }
    fn copy(&self, src: &DevBuf, dst: &mut DevBuf) -> Result<()> {
        dst.set_len(self.dev, src.len, false)?;
        if src.len == 0 {
            return Ok(());
        }
        self.dev.stream.memcpy_dtod(&src.view()?, &mut dst.view_mut()?).map_err(|e| err("device copy", e))
    }
    fn upload_ids(&self, host: &[u32], ids: &mut DevIds) -> Result<()> {
        ids.buf.set_len(self.dev, host.len(), false)?;
        ids.max = host.iter().copied().max();
        if host.is_empty() {
            return Ok(());
        }
        self.dev.stream.memcpy_htod(host, &mut ids.buf.view_mut()?).map_err(|e| err("upload of labels", e))
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }
    /// One stream: `a` is queued, then `b`. (Two streams with an event
    /// between them would let `b` start before `a` ends; the ops' bits
    /// would be the same, as they are on the CPU's threads.)
    fn alongside<RA: Send, RB: Send>(&self, a: impl FnOnce() -> RA + Send, b: impl FnOnce() -> RB + Send) -> (RA, RB) {
        let ra = a();
        (ra, b())
    }
    fn stats_every(&self) -> usize {
        STATS_EVERY
    }
    fn synchronize(&self) -> Result<()> {
        self.dev.synchronize()
    }
}

/// Batches whose statistics wait on the device before they are read back.
pub const STATS_EVERY: usize = 64;
