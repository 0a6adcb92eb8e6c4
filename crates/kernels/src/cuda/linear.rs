//! Launch wrappers for `kernels/linear.cu`: the FF layer's local gradient
//! and bias gradient, the fused forward (GEMM with the bias + ReLU epilogue,
//! then the L32 row goodness), and the fused backward + optimiser passes
//! that never write dz or dW out.

use super::device::{err, grid_for, CudaDevice};
use super::gemm::Tile;
use super::optim::OptimParams;
use crate::cpu::optim::OptimStep;
use crate::error::{check_len, Result};
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The shape of one FF layer's step: rows (2·batch), inputs, outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearDims {
    pub rows: usize,
    pub din: usize,
    pub dout: usize,
}

/// The host values of one fused backward + update, after the step.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdatedLayer {
    /// W (din × dout, row-major) and its optimiser state.
    pub w: [Vec<f32>; 3],
    /// The bias and its optimiser state.
    pub b: [Vec<f32>; 3],
}

impl CudaDevice {
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

    /// The FF forward on device buffers: `h = relu(xn · w + bias)` and the
    /// row goodness `g_i = l32_sumsq(h_i)`. Two launches: the GEMM with its
    /// bias + ReLU epilogue, then one warp per row for G. (G cannot ride in
    /// the GEMM's epilogue: its L32 order needs a row's 32 lane sums in
    /// ascending column order, which a grid of column tiles does not give
    /// without serialising the tiles of a row.)
    pub fn linear_forward_on(
        &self,
        xn: &CudaSlice<f32>,
        (w, bias): (&CudaSlice<f32>, &CudaSlice<f32>),
        (h, g): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
        d: LinearDims,
    ) -> Result<()> {
        self.launch_gemm((xn, d.din, 1), (w, d.dout, 1), h, (d.rows, d.dout, d.din), bias, 2, Tile::Auto)?;
        self.row_sumsq_on(h, d.rows, d.dout, g)
    }

    /// The fused backward and update of an FF layer on device buffers (the
    /// spec of [`crate::CpuBackend::linear_backward_update`]): W (row-major)
    /// and its state `wa`, `wb` step with dW = xnᵀ·dz, each element as its
    /// fma chain ends, and the bias with db, dz computed on the fly from
    /// `h` and dL/dG in both. `wb`, `bb` are Adam's v (any buffer under SGD).
    /// `tile`: the dW GEMM's tile ([`Tile::Auto`] unless testing).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward_update_on(
        &self,
        p: &OptimParams,
        (xn, h, dldg): (&CudaSlice<f32>, &CudaSlice<f32>, &CudaSlice<f32>),
        (w, wa, wb): (&mut CudaSlice<f32>, &mut CudaSlice<f32>, &mut CudaSlice<f32>),
        (b, ba, bb): (&mut CudaSlice<f32>, &mut CudaSlice<f32>, &mut CudaSlice<f32>),
        d: LinearDims,
        tile: Tile,
    ) -> Result<()> {
        let (rows, din, dout) = (d.rows as i32, d.din as i32, d.dout as i32);
        let tile = self.resolve_tile(tile, d.din, d.dout);
        let f = self.function("linear", &format!("ffwd_linear_backward_update{}_f32", tile.entry_suffix()))?;
        let mut lb = self.stream.launch_builder(&f);
        lb.arg(xn).arg(h).arg(dldg).arg(&rows).arg(&din).arg(&dout);
        lb.arg(w).arg(wa).arg(wb).arg(p);
        let cfg = Self::tile_grid(tile, d.din, d.dout);
        // SAFETY: xn holds rows·din floats, h rows·dout, dL/dG rows; W and its
        // state din·dout (Adam's v too; SGD never reads it). Each output
        // element is read and written by the one thread that owns it.
        unsafe { lb.launch(cfg) }.map_err(|e| err("linear_backward_update", e))?;
        let f = self.function("linear", "ffwd_bias_backward_update_f32")?;
        let mut lb = self.stream.launch_builder(&f);
        lb.arg(h).arg(dldg).arg(&rows).arg(&dout).arg(b).arg(ba).arg(bb).arg(p);
        // SAFETY: one thread per bias element; h holds rows·dout floats and
        // the bias and its state dout.
        unsafe { lb.launch(grid_for(d.dout)) }.map_err(|e| err("bias_backward_update", e))?;
        Ok(())
    }

    /// [`CudaDevice::linear_backward_update_on`] from host values (the
    /// bit-exact tests): W row-major with state `(a, b)` and the bias with
    /// its state, in tiles of `tile`; returns every updated buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward_update(
        &self,
        tile: Tile,
        step: &OptimStep,
        xn: &[f32],
        h: &[f32],
        dldg: &[f32],
        d: LinearDims,
        w: [&[f32]; 3],
        b: [&[f32]; 3],
    ) -> Result<UpdatedLayer> {
        const OP: &str = "cuda linear_backward_update";
        check_len(OP, "Xn", xn.len(), d.rows * d.din)?;
        check_len(OP, "h", h.len(), d.rows * d.dout)?;
        check_len(OP, "dL/dG", dldg.len(), d.rows)?;
        for (name, v, n) in [("W", w[0], d.din * d.dout), ("bias", b[0], d.dout)] {
            check_len(OP, name, v.len(), n)?;
        }
        let p = OptimParams::new(step);
        let up = |v: &[f32], n: usize| if v.is_empty() { self.zeros(n) } else { self.up(v) };
        let (xd, hd, gd) = (self.up(xn)?, self.up(h)?, self.up(dldg)?);
        let nw = d.din * d.dout;
        let (mut w0, mut w1, mut w2) = (self.up(w[0])?, up(w[1], nw)?, up(w[2], nw)?);
        let (mut b0, mut b1, mut b2) = (self.up(b[0])?, up(b[1], d.dout)?, up(b[2], d.dout)?);
        self.linear_backward_update_on(
            &p,
            (&xd, &hd, &gd),
            (&mut w0, &mut w1, &mut w2),
            (&mut b0, &mut b1, &mut b2),
            d,
            tile,
        )?;
        Ok(UpdatedLayer {
            w: [self.down(&w0, nw)?, self.down(&w1, nw)?, self.down(&w2, nw)?],
            b: [self.down(&b0, d.dout)?, self.down(&b1, d.dout)?, self.down(&b2, d.dout)?],
        })
    }

    /// The fused forward from host values: (h, G).
    pub fn linear_forward(&self, xn: &[f32], w: &[f32], bias: &[f32], d: LinearDims) -> Result<(Vec<f32>, Vec<f32>)> {
        const OP: &str = "cuda linear_forward";
        check_len(OP, "Xn", xn.len(), d.rows * d.din)?;
        check_len(OP, "W", w.len(), d.din * d.dout)?;
        check_len(OP, "bias", bias.len(), d.dout)?;
        let (xd, wd, bd) = (self.up(xn)?, self.up(w)?, self.up(bias)?);
        let (mut hd, mut gd) = (self.zeros(d.rows * d.dout)?, self.zeros(d.rows)?);
        self.linear_forward_on(&xd, (&wd, &bd), (&mut hd, &mut gd), d)?;
        Ok((self.down(&hd, d.rows * d.dout)?, self.down(&gd, d.rows)?))
    }
}
