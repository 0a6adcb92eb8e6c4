//! The two CPU backends behind one interface, [`CpuBackend`]: the scalar
//! specification and the AVX2+FMA implementation (rayon-parallel) that
//! reproduces it bit for bit. One op family per file; each file holds the
//! scalar spec and the AVX2 code side by side, as inherent methods of
//! [`CpuBackend`] on host slices, and the family's trait
//! (`crate::ops`) implemented on `Vec<f32>` buffers over them.

pub mod conv;
pub mod embed;
pub mod gemm;
pub mod layout;
pub mod linear;
pub mod loss;
pub mod math;
pub mod norm2d;
pub mod optim;
pub mod pages;
pub mod peak;
pub mod philox;
pub mod pool;
pub mod reduce;

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// Which implementation a [`CpuBackend`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuKind {
    /// The specification: plain scalar Rust, single-threaded.
    Scalar,
    /// AVX2 + FMA intrinsics, parallel with rayon (the current pool).
    Avx2,
}

/// Whether this CPU has AVX2 and FMA (detected once).
pub fn avx2_available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether the AVX2 backend's GEMM microkernels run on 512-bit registers
/// on this thread: the CPU has AVX-512F and `FFWD_CPU_WIDTH` is not `256`
/// (see [`narrow_kernels_on_this_thread`]). Either way the bits are the
/// same; only the speed differs.
pub fn wide_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        gemm::avx512::wide()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Keep the calling thread to the 256-bit microkernels (`true`), or let it
/// take the 512-bit ones where the CPU has them (`false`): for tests and
/// benchmarks that compare the two (a rayon pool's threads take it in the
/// pool's start handler).
pub fn narrow_kernels_on_this_thread(narrow: bool) {
    #[cfg(target_arch = "x86_64")]
    gemm::avx512::set_narrow_on_this_thread(narrow);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = narrow;
}

/// A CPU backend. Construct with [`CpuBackend::best`], [`CpuBackend::scalar`]
/// or [`CpuBackend::avx2`]; every op checks shapes and returns an error that
/// names the op, never panics on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuBackend {
    kind: CpuKind,
}

impl CpuBackend {
    pub fn scalar() -> Self {
        Self { kind: CpuKind::Scalar }
    }
    /// The AVX2 backend, or an error if the CPU lacks avx2/fma.
    pub fn avx2() -> Result<Self> {
        if avx2_available() {
            Ok(Self { kind: CpuKind::Avx2 })
        } else {
            Err(Error::Unsupported { op: "CpuBackend::avx2" })
        }
    }
    /// AVX2 where available, else the scalar specification.
    pub fn best() -> Self {
        Self::avx2().unwrap_or_else(|_| Self::scalar())
    }
    pub fn kind(&self) -> CpuKind {
        self.kind
    }
    pub fn name(&self) -> &'static str {
        match self.kind {
            CpuKind::Scalar => "cpu-scalar",
            CpuKind::Avx2 => "cpu-avx2",
        }
    }
}

impl crate::ops::Storage for CpuBackend {
    type Buf = Vec<f32>;
    type Ids = Vec<u32>;

    fn zeros(&self, n: usize) -> Result<Vec<f32>> {
        pages::zeroed(n)
    }
    fn resize(&self, buf: &mut Vec<f32>, n: usize) -> Result<()> {
        pages::reserve(buf, n)?;
        buf.resize(n, 0.0);
        Ok(())
    }
    fn upload(&self, host: &[f32], buf: &mut Vec<f32>) -> Result<()> {
        buf.clear();
        pages::reserve(buf, host.len())?;
        buf.extend_from_slice(host);
        Ok(())
    }
    fn upload_with(&self, buf: &mut Vec<f32>, n: usize, write: impl FnOnce(&mut [f32])) -> Result<()> {
        pages::reserve(buf, n)?;
        buf.resize(n, 0.0);
        write(buf);
        Ok(())
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }
    fn with_host<R>(&self, buf: &Vec<f32>, read: impl FnOnce(&[f32]) -> R) -> Result<R> {
        Ok(read(buf))
    }
    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>) -> Result<()> {
        dst.clear();
        dst.extend_from_slice(src);
        Ok(())
    }
    fn upload_ids(&self, host: &[u32], ids: &mut Vec<u32>) -> Result<()> {
        ids.clear();
        ids.extend_from_slice(host);
        Ok(())
    }
}

impl crate::ops::Backend for CpuBackend {
    fn name(&self) -> &'static str {
        CpuBackend::name(self)
    }
    fn alongside<RA: Send, RB: Send>(&self, a: impl FnOnce() -> RA + Send, b: impl FnOnce() -> RB + Send) -> (RA, RB) {
        rayon::join(a, b)
    }
    fn stats_every(&self) -> usize {
        1
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
