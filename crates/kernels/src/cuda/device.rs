//! A CUDA device and launch wrappers for the kernel modules, host slice in,
//! host vector out: the form the bit-exact tests (CUDA == scalar spec) use.
//! Device-resident training is not wired to these yet.
//!
//! Every launch configuration partitions outputs only; no configuration
//! changes an output's order of operations (see the `.cu` files).

use super::compile::{compile_ptx, nvrtc_available, MODULES};
use crate::cpu::conv::Cnhw;
use crate::cpu::gemm::Epilogue;
use crate::cpu::loss::{FfLoss, GoodnessForm};
use crate::cpu::math::Unary;
use crate::cpu::optim::{AdamStep, SgdStep};
use crate::cpu::reduce::Norm;
use crate::error::{Error, Result};
use crate::mat::MatRef;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// PTX architecture the modules are compiled for; the driver JIT-compiles it
/// for the device at hand (compute 8.0 and newer).
pub const PTX_ARCH: &str = "compute_80";

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Cuda { what: what.to_string(), detail: e.to_string() }
}

/// Device 0 with its stream and loaded modules.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
}

/// Device 0, or `None` when the driver, NVRTC or a device is missing
/// (probed once, never panics).
pub fn cuda_device() -> Option<&'static CudaDevice> {
    static DEV: OnceLock<Option<CudaDevice>> = OnceLock::new();
    DEV.get_or_init(|| {
        // SAFETY: only tries to dlopen libcuda; no driver call.
        if !unsafe { cudarc::driver::sys::is_culib_present() } || !nvrtc_available() {
            return None;
        }
        let ctx = CudaContext::new(0).ok()?;
        let stream = ctx.default_stream();
        Some(CudaDevice { ctx, stream, modules: Mutex::new(HashMap::new()) })
    })
    .as_ref()
}

const BLOCK: u32 = 256;

/// The conv's output, and (dW, dX) when a gradient was given.
pub type ConvOut = (Vec<f32>, Option<(Vec<f32>, Vec<f32>)>);

fn grid_for(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((n as u32).div_ceil(BLOCK).max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// One warp per row, 8 rows per block.
fn warp_rows(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((rows as u32).div_ceil(8).max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

impl CudaDevice {
    fn function(&self, module: &'static str, name: &str) -> Result<CudaFunction> {
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

    fn up(&self, x: &[f32]) -> Result<cudarc::driver::CudaSlice<f32>> {
        // a zero-length allocation is not allowed: keep one element
        if x.is_empty() {
            return self.stream.clone_htod(&[0.0f32]).map_err(|e| err("upload", e));
        }
        self.stream.clone_htod(x).map_err(|e| err("upload", e))
    }

    fn zeros(&self, n: usize) -> Result<cudarc::driver::CudaSlice<f32>> {
        self.stream.alloc_zeros::<f32>(n.max(1)).map_err(|e| err("alloc", e))
    }

    fn down(&self, x: &cudarc::driver::CudaSlice<f32>, n: usize) -> Result<Vec<f32>> {
        let mut v = self.stream.clone_dtoh(x).map_err(|e| err("download", e))?;
        v.truncate(n);
        Ok(v)
    }

    /// Elementwise transcendental.
    pub fn unary(&self, f: Unary, x: &[f32]) -> Result<Vec<f32>> {
        let name = match f {
            Unary::Exp => "ffwd_exp_f32",
            Unary::Log1p => "ffwd_log1p_f32",
            Unary::Ln => "ffwd_ln_f32",
            Unary::Softplus => "ffwd_softplus_f32",
            Unary::Sigmoid => "ffwd_sigmoid_f32",
        };
        let func = self.function("math", name)?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(x.len())?);
        let n = x.len() as i64;
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&mut yd).arg(&n);
        // SAFETY: the kernel reads n floats of xd and writes n of yd, both that long.
        unsafe { b.launch(grid_for(x.len())) }.map_err(|e| err(name, e))?;
        self.down(&yd, x.len())
    }

    /// Row sums of squares (`squares`) or row sums, L32 order.
    pub fn row_reduce(&self, x: &[f32], d: usize, squares: bool) -> Result<Vec<f32>> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let name = if squares { "ffwd_row_sumsq_f32" } else { "ffwd_row_sum_f32" };
        let func = self.function("reduce", name)?;
        let (xd, mut od) = (self.up(x)?, self.zeros(rows)?);
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&r).arg(&dd).arg(&mut od);
        // SAFETY: rows·d floats are read, rows written; buffers are that long.
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err(name, e))?;
        self.down(&od, rows)
    }

    /// Length normalisation of rows of width `d`.
    pub fn normalize_rows(&self, x: &[f32], d: usize, kind: Norm, eps: f32) -> Result<Vec<f32>> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let func = self.function("reduce", "ffwd_normalize_rows_f32")?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(x.len())?);
        let k: i32 = match kind {
            Norm::Rms => 0,
            Norm::L2 => 1,
            Norm::None => 2,
        };
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&mut yd).arg(&r).arg(&dd).arg(&k).arg(&eps);
        // SAFETY: rows·d floats read and written; buffers are that long.
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err("normalize_rows", e))?;
        self.down(&yd, x.len())
    }

    /// `epilogue(a · b)` as a row-major m × n matrix; under
    /// [`Epilogue::Accumulate`], `c0 + a · b` with each chain starting from
    /// `c0` (`c0` is ignored otherwise and may be empty).
    pub fn gemm(&self, a: MatRef, b: MatRef, epi: Epilogue, c0: &[f32]) -> Result<Vec<f32>> {
        let (m, n, k) = (a.rows, b.cols, a.cols);
        if b.rows != k {
            return Err(crate::error::shape_err("cuda gemm", format!("A {m}×{k} · B {}×{n}", b.rows)));
        }
        let (ad, bd) = (self.up(a.data)?, self.up(b.data)?);
        let (bias, code) = match epi {
            Epilogue::None => (vec![0.0f32], 0i32),
            Epilogue::Accumulate => (vec![0.0f32], 3),
            Epilogue::Bias(v) => (v.to_vec(), 1),
            Epilogue::BiasRelu(v) => (v.to_vec(), 2),
        };
        let biasd = self.up(&bias)?;
        let mut cd = if code == 3 {
            if c0.len() != m * n {
                return Err(crate::error::shape_err("cuda gemm", format!("C₀ has {} elements, not {m}×{n}", c0.len())));
            }
            self.up(c0)?
        } else {
            self.zeros(m * n)?
        };
        self.launch_gemm((&ad, a.rs, a.cs), (&bd, b.rs, b.cs), &mut cd, (m, n, k), &biasd, code)?;
        self.down(&cd, m * n)
    }

    /// Launch the GEMM on device buffers: A (m × k) and B (k × n) as strided
    /// views, C row-major m × n; `code` is the epilogue (0 none, 1 bias,
    /// 2 bias + ReLU, 3 accumulate).
    fn launch_gemm(
        &self,
        a: (&CudaSlice<f32>, usize, usize),
        b: (&CudaSlice<f32>, usize, usize),
        c: &mut CudaSlice<f32>,
        (m, n, k): (usize, usize, usize),
        bias: &CudaSlice<f32>,
        code: i32,
    ) -> Result<()> {
        let func = self.function("gemm", "ffwd_gemm_f32")?;
        let (a_rs, a_cs, b_rs, b_cs, ldc) = (a.1 as i64, a.2 as i64, b.1 as i64, b.2 as i64, n as i64);
        let (mi, ni, ki) = (m as i32, n as i32, k as i32);
        let mut lb = self.stream.launch_builder(&func);
        lb.arg(a.0).arg(&a_rs).arg(&a_cs).arg(b.0).arg(&b_rs).arg(&b_cs);
        lb.arg(c).arg(&ldc).arg(&mi).arg(&ni).arg(&ki).arg(bias).arg(&code);
        let cfg = LaunchConfig {
            grid_dim: ((n as u32).div_ceil(64).max(1), (m as u32).div_ceil(64).max(1), 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the callers size A, B and C from (m, n, k) and the strides
        // address only those buffers; bias holds n values when used.
        unsafe { lb.launch(cfg) }.map_err(|e| err("gemm", e))?;
        Ok(())
    }

    /// The 3×3 conv of CNHW `x` with W (cout × Cin·9): y, and with `dy`
    /// also (dW, dX). im2col, one GEMM over the whole batch, col2im.
    pub fn conv3x3(&self, x: &[f32], g: Cnhw, w: &[f32], cout: usize, dy: Option<&[f32]>) -> Result<ConvOut> {
        let (k9, cols) = (g.c * 9, g.row());
        let (xd, wd, nobias) = (self.up(x)?, self.up(w)?, self.zeros(1)?);
        let mut col = self.zeros(k9 * cols)?;
        let (c, n, h, wi) = (g.c as i32, g.n as i32, g.h as i32, g.w as i32);
        let f = self.function("conv", "ffwd_im2col_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&h).arg(&wi).arg(&mut col);
        // SAFETY: one thread per col value; x holds c·n·h·w values.
        unsafe { b.launch(grid_for(k9 * cols)) }.map_err(|e| err("im2col", e))?;
        let mut y = self.zeros(cout * cols)?;
        self.launch_gemm((&wd, k9, 1), (&col, cols, 1), &mut y, (cout, cols, k9), &nobias, 0)?;
        let y = self.down(&y, cout * cols)?;
        let Some(dy) = dy else { return Ok((y, None)) };
        let dyd = self.up(dy)?;
        let mut dw = self.zeros(cout * k9)?;
        self.launch_gemm((&dyd, cols, 1), (&col, 1, cols), &mut dw, (cout, k9, cols), &nobias, 0)?;
        let mut dcol = self.zeros(k9 * cols)?;
        self.launch_gemm((&wd, 1, k9), (&dyd, cols, 1), &mut dcol, (k9, cols, cout), &nobias, 0)?;
        let mut dx = self.zeros(g.len())?;
        let f = self.function("conv", "ffwd_col2im_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&dcol).arg(&c).arg(&n).arg(&h).arg(&wi).arg(&mut dx);
        // SAFETY: one thread per dx value; dcol holds Cin·9 × n·h·w values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("col2im", e))?;
        Ok((y, Some((self.down(&dw, cout * k9)?, self.down(&dx, g.len())?))))
    }

    /// `dz = h · (2·dL/dG)` row-wise.
    pub fn local_grad(&self, h: &[f32], d: usize, dldg: &[f32]) -> Result<Vec<f32>> {
        let func = self.function("linear", "ffwd_local_grad_f32")?;
        let (hd, gd, mut zd) = (self.up(h)?, self.up(dldg)?, self.zeros(h.len())?);
        let (r, dd) = (dldg.len() as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&hd).arg(&gd).arg(&r).arg(&dd).arg(&mut zd);
        // SAFETY: rows·d elements of h and dz, rows of dL/dG.
        unsafe { b.launch(grid_for(h.len())) }.map_err(|e| err("local_grad", e))?;
        self.down(&zd, h.len())
    }

    /// 2×2 max-pool of a CNHW block `g`: (pooled values, positions).
    pub fn maxpool2_forward(&self, x: &[f32], g: Cnhw) -> Result<(Vec<f32>, Vec<u8>)> {
        let func = self.function("pool", "ffwd_maxpool2_forward_f32")?;
        let n = g.c * g.n * (g.h / 2) * (g.w / 2);
        let (xd, mut yd) = (self.up(x)?, self.zeros(n)?);
        let mut id = self.stream.alloc_zeros::<u8>(n.max(1)).map_err(|e| err("alloc", e))?;
        let (p, h, w) = ((g.c * g.n) as i32, g.h as i32, g.w as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&p).arg(&h).arg(&w).arg(&mut yd).arg(&mut id);
        // SAFETY: planes·h·w inputs are read; n outputs and n positions written.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err("maxpool2_forward", e))?;
        let idx = self.stream.clone_dtoh(&id).map_err(|e| err("download", e))?;
        Ok((self.down(&yd, n)?, idx[..n].to_vec()))
    }

    /// The max-pool's input gradient (CNHW `g`).
    pub fn maxpool2_backward(&self, dy: &[f32], idx: &[u8], g: Cnhw) -> Result<Vec<f32>> {
        let func = self.function("pool", "ffwd_maxpool2_backward_f32")?;
        let (gd, mut xd) = (self.up(dy)?, self.zeros(g.len())?);
        let id = self.stream.clone_htod(if idx.is_empty() { &[0u8][..] } else { idx }).map_err(|e| err("upload", e))?;
        let (p, h, w) = ((g.c * g.n) as i32, g.h as i32, g.w as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&gd).arg(&id).arg(&p).arg(&h).arg(&w).arg(&mut xd);
        // SAFETY: one thread per input element; dy and idx hold the pooled count.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("maxpool2_backward", e))?;
        self.down(&xd, g.len())
    }

    /// Nearest 2× upsampling (`forward`) of CNHW `g`, or its input gradient
    /// from a 2h × 2w `x` (`!forward`).
    pub fn upsample2(&self, x: &[f32], g: Cnhw, forward: bool) -> Result<Vec<f32>> {
        let (name, n) = if forward {
            ("ffwd_upsample2_forward_f32", 4 * g.len())
        } else {
            ("ffwd_upsample2_backward_f32", g.len())
        };
        let func = self.function("pool", name)?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(n)?);
        let (p, h, w) = ((g.c * g.n) as i32, g.h as i32, g.w as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&p).arg(&h).arg(&w).arg(&mut yd);
        // SAFETY: one thread per output; inputs hold the matching count.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(name, e))?;
        self.down(&yd, n)
    }

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

    /// The FF loss of `g` (n positives then n negatives): (dL/dG, mean loss).
    pub fn ff_loss(&self, loss: FfLoss, form: GoodnessForm, d: usize, g: &[f32]) -> Result<(Vec<f32>, f32)> {
        let func = self.function("loss", "ffwd_ff_loss_f32")?;
        let (gd, mut dd, mut ld) = (self.up(g)?, self.zeros(g.len())?, self.zeros(1)?);
        let (kind, param) = match loss {
            FfLoss::Threshold { theta } => (0i32, theta),
            FfLoss::Symba { alpha } => (1i32, alpha),
        };
        let (n, di, mean) = ((g.len() / 2) as i32, d as i32, (form == GoodnessForm::Mean) as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&gd).arg(&n).arg(&di).arg(&kind).arg(&param).arg(&mean).arg(&mut dd).arg(&mut ld);
        let one_warp = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: 2n goodness values read and 2n gradients written; one loss value.
        unsafe { b.launch(one_warp) }.map_err(|e| err("ff_loss", e))?;
        Ok((self.down(&dd, g.len())?, self.down(&ld, 1)?[0]))
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
        let one_warp = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: m row losses read, one value written.
        unsafe { b.launch(one_warp) }.map_err(|e| err("softmax_xent mean", e))?;
        Ok((self.down(&gd, m * c)?, self.down(&out, 1)?[0]))
    }

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

    /// Batch-norm statistics of CNHW `g`: (mean, var, rstd).
    pub fn batchnorm_stats(&self, x: &[f32], g: Cnhw, eps: f32) -> Result<[Vec<f32>; 3]> {
        let func = self.function("norm2d", "ffwd_bn_stats_f32")?;
        let xd = self.up(x)?;
        let (mut md, mut vd, mut rd) = (self.zeros(g.c)?, self.zeros(g.c)?, self.zeros(g.c)?);
        let (c, n) = (g.c as i32, g.row() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&c).arg(&n).arg(&eps).arg(&mut md).arg(&mut vd).arg(&mut rd);
        // SAFETY: one warp per channel row of n values; c values per output.
        unsafe { b.launch(warp_rows(g.c)) }.map_err(|e| err("bn_stats", e))?;
        Ok([self.down(&md, g.c)?, self.down(&vd, g.c)?, self.down(&rd, g.c)?])
    }

    /// Batch-norm apply: `((x − mean)·rstd)·γ + β` per channel.
    pub fn batchnorm_apply(&self, x: &[f32], g: Cnhw, p: [&[f32]; 4]) -> Result<Vec<f32>> {
        let func = self.function("norm2d", "ffwd_bn_apply_f32")?;
        let xd = self.up(x)?;
        let pd = p.iter().map(|v| self.up(v)).collect::<Result<Vec<_>>>()?;
        let mut yd = self.zeros(g.len())?;
        let (c, n) = (g.c as i32, g.row() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&c).arg(&n).arg(&pd[0]).arg(&pd[1]).arg(&pd[2]).arg(&pd[3]).arg(&mut yd);
        // SAFETY: one thread per value; the per-channel vectors hold c values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("bn_apply", e))?;
        self.down(&yd, g.len())
    }

    /// Batch-norm backward: (dx, dγ, dβ).
    pub fn batchnorm_backward(&self, x: &[f32], g: Cnhw, p: [&[f32]; 3], dy: &[f32]) -> Result<[Vec<f32>; 3]> {
        let func = self.function("norm2d", "ffwd_bn_backward_f32")?;
        let (xd, gd) = (self.up(x)?, self.up(dy)?);
        let pd = p.iter().map(|v| self.up(v)).collect::<Result<Vec<_>>>()?;
        let (mut dxd, mut dgd, mut dbd) = (self.zeros(g.len())?, self.zeros(g.c)?, self.zeros(g.c)?);
        let (c, n) = (g.c as i32, g.row() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd)
            .arg(&c)
            .arg(&n)
            .arg(&pd[0])
            .arg(&pd[1])
            .arg(&pd[2])
            .arg(&gd)
            .arg(&mut dxd)
            .arg(&mut dgd)
            .arg(&mut dbd);
        // SAFETY: one warp per channel row; all buffers sized from g.
        unsafe { b.launch(warp_rows(g.c)) }.map_err(|e| err("bn_backward", e))?;
        Ok([self.down(&dxd, g.len())?, self.down(&dgd, g.c)?, self.down(&dbd, g.c)?])
    }

    /// Running-statistics update: (running mean, running var).
    pub fn batchnorm_update_running(
        &self,
        mean: &[f32],
        var: &[f32],
        n: usize,
        m: f32,
        running: (&[f32], &[f32]),
    ) -> Result<[Vec<f32>; 2]> {
        let func = self.function("norm2d", "ffwd_bn_update_running_f32")?;
        let (md, vd, mut rm, mut rv) = (self.up(mean)?, self.up(var)?, self.up(running.0)?, self.up(running.1)?);
        let unbias = if n > 1 { n as f32 / (n - 1) as f32 } else { 1.0 };
        let c = mean.len() as i32;
        let mut b = self.stream.launch_builder(&func);
        b.arg(&md).arg(&vd).arg(&c).arg(&unbias).arg(&m).arg(&mut rm).arg(&mut rv);
        // SAFETY: c values in every buffer.
        unsafe { b.launch(grid_for(mean.len())) }.map_err(|e| err("bn_update_running", e))?;
        Ok([self.down(&rm, mean.len())?, self.down(&rv, mean.len())?])
    }

    /// Per-image sum of squares of a CNHW block.
    pub fn block_sumsq(&self, x: &[f32], g: Cnhw) -> Result<Vec<f32>> {
        let func = self.function("norm2d", "ffwd_block_sumsq_f32")?;
        let (xd, mut od) = (self.up(x)?, self.zeros(g.n)?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&mut od);
        // SAFETY: one warp per image; g.len() values read, g.n written.
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("block_sumsq", e))?;
        self.down(&od, g.n)
    }

    /// Per-image length norm of CNHW `g`: (y, inv).
    pub fn sample_norm_forward(&self, x: &[f32], g: Cnhw, eps: f32) -> Result<(Vec<f32>, Vec<f32>)> {
        let xd = self.up(x)?;
        let (mut inv, mut yd) = (self.zeros(g.n)?, self.zeros(g.len())?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let f = self.function("norm2d", "ffwd_sample_norm_inv_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&eps).arg(&mut inv);
        // SAFETY: one warp per image; g.len() values read, g.n written.
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("sample_norm_inv", e))?;
        let f = self.function("norm2d", "ffwd_scale_images_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&inv).arg(&mut yd);
        // SAFETY: one thread per value; inv holds g.n values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("scale_images", e))?;
        Ok((self.down(&yd, g.len())?, self.down(&inv, g.n)?))
    }

    /// Backward of the length norm: dx.
    pub fn sample_norm_backward(&self, x: &[f32], g: Cnhw, inv: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
        let (xd, gd, id) = (self.up(x)?, self.up(dy)?, self.up(inv)?);
        let (mut coef, mut dx) = (self.zeros(g.n)?, self.zeros(g.len())?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let f = self.function("norm2d", "ffwd_sample_norm_coef_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&gd).arg(&c).arg(&n).arg(&hw).arg(&id).arg(&mut coef);
        // SAFETY: one warp per image; x and dy hold g.len() values, inv g.n.
        unsafe { b.launch(warp_rows(g.n)) }.map_err(|e| err("sample_norm_coef", e))?;
        let f = self.function("norm2d", "ffwd_sample_norm_dx_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&gd).arg(&c).arg(&n).arg(&hw).arg(&id).arg(&coef).arg(&mut dx);
        // SAFETY: one thread per value.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("sample_norm_dx", e))?;
        self.down(&dx, g.len())
    }

    /// The block goodness gradient `x · (dL/dG_b + dL/dG_b)`.
    pub fn block_local_grad(&self, x: &[f32], g: Cnhw, dldg: &[f32]) -> Result<Vec<f32>> {
        let (xd, ld, mut dx) = (self.up(x)?, self.up(dldg)?, self.zeros(g.len())?);
        let (c, n, hw) = (g.c as i32, g.n as i32, g.plane() as i32);
        let f = self.function("norm2d", "ffwd_block_local_grad_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&xd).arg(&c).arg(&n).arg(&hw).arg(&ld).arg(&mut dx);
        // SAFETY: one thread per value; dldg holds g.n values.
        unsafe { b.launch(grid_for(g.len())) }.map_err(|e| err("block_local_grad", e))?;
        self.down(&dx, g.len())
    }

    /// The mean (L32 sum · 1/n) of `n` values on the device.
    fn mean_l32(&self, v: &CudaSlice<f32>, n: usize) -> Result<f32> {
        let f = self.function("loss", "ffwd_mean_l32_f32")?;
        let mut out = self.zeros(1)?;
        let ni = n as i32;
        let mut b = self.stream.launch_builder(&f);
        b.arg(v).arg(&ni).arg(&mut out);
        let one_warp = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: n values read, one written.
        unsafe { b.launch(one_warp) }.map_err(|e| err("mean_l32", e))?;
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

    /// Row standardisation of rows of width `d`.
    pub fn standardize_rows(&self, x: &[f32], d: usize, eps: f32) -> Result<Vec<f32>> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let func = self.function("reduce", "ffwd_standardize_rows_f32")?;
        let (xd, mut yd) = (self.up(x)?, self.zeros(x.len())?);
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&xd).arg(&mut yd).arg(&r).arg(&dd).arg(&eps);
        // SAFETY: rows·d floats read and written.
        unsafe { b.launch(warp_rows(rows)) }.map_err(|e| err("standardize_rows", e))?;
        self.down(&yd, x.len())
    }

    /// Column sums of the m × n matrix `dz`.
    pub fn bias_grad(&self, dz: &[f32], m: usize, n: usize) -> Result<Vec<f32>> {
        let func = self.function("linear", "ffwd_bias_grad_f32")?;
        let (zd, mut bd) = (self.up(dz)?, self.zeros(n)?);
        let (mi, ni) = (m as i32, n as i32);
        let mut b = self.stream.launch_builder(&func);
        b.arg(&zd).arg(&mi).arg(&ni).arg(&mut bd);
        // SAFETY: m·n floats read, n written.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err("bias_grad", e))?;
        self.down(&bd, n)
    }

    /// One Adam/AdamW step; returns (w, m, v).
    pub fn adam(&self, step: &AdamStep, w: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> Result<[Vec<f32>; 3]> {
        let s = step.scalars();
        let func = self.function("optim", "ffwd_adam_f32")?;
        let (mut wd, gd, mut md, mut vd) = (self.up(w)?, self.up(g)?, self.up(m)?, self.up(v)?);
        let n = w.len() as i64;
        let dec = s.decoupled as i32;
        let mut b = self.stream.launch_builder(&func);
        b.arg(&mut wd).arg(&gd).arg(&mut md).arg(&mut vd).arg(&n);
        b.arg(&s.lr).arg(&s.b1).arg(&s.b2).arg(&s.omb1).arg(&s.omb2).arg(&s.bc1).arg(&s.bc2);
        b.arg(&s.eps).arg(&s.wd).arg(&s.decay).arg(&dec);
        // SAFETY: the four buffers hold n floats each.
        unsafe { b.launch(grid_for(w.len())) }.map_err(|e| err("adam", e))?;
        Ok([self.down(&wd, w.len())?, self.down(&md, w.len())?, self.down(&vd, w.len())?])
    }

    /// One SGD step; returns (w, buf).
    pub fn sgd(&self, step: &SgdStep, w: &[f32], g: &[f32], buf: &[f32]) -> Result<[Vec<f32>; 2]> {
        let func = self.function("optim", "ffwd_sgd_f32")?;
        let (mut wd, gd, mut bd) = (self.up(w)?, self.up(g)?, self.up(buf)?);
        let n = w.len() as i64;
        let nest = step.nesterov as i32;
        let mut b = self.stream.launch_builder(&func);
        b.arg(&mut wd)
            .arg(&gd)
            .arg(&mut bd)
            .arg(&n)
            .arg(&step.lr)
            .arg(&step.momentum)
            .arg(&step.weight_decay)
            .arg(&nest);
        // SAFETY: the three buffers hold n floats each.
        unsafe { b.launch(grid_for(w.len())) }.map_err(|e| err("sgd", e))?;
        Ok([self.down(&wd, w.len())?, self.down(&bd, w.len())?])
    }
}
