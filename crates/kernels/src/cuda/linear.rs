//! Launch wrappers for `kernels/linear.cu` ([`LinearOps`] on device
//! buffers): the FF layer's fused forward (the GEMM with the bias + ReLU
//! epilogue, then the L32 row goodness), the fused backward + optimiser
//! passes that never write dz or dW out, the unfused gradients, and the
//! local and bias gradients. Weights are row-major ([`DevMat`]).

use super::device::{err, grid_for, int, CudaBackend, CudaDevice, DevBuf};
use super::optim::OptimParams;
use crate::error::{check_len, Result};
use crate::ops::gemm::StepsRun;
use crate::ops::linear::{peer_dims, LinearDims, LinearOps, LinearUpdate, Param, PeerNorm, PeerTerm, Weights};
use crate::ops::optim::OptimStep;
use crate::ops::reduce::rows_of;
use crate::ops::{Len, Storage};
use cudarc::driver::PushKernelArg;

/// A row-major `rows × cols` weight matrix in device memory.
#[derive(Clone, Debug)]
pub struct DevMat {
    pub(crate) buf: DevBuf,
    rows: usize,
    cols: usize,
}

impl Weights for DevMat {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
}

/// The GEMM's bias + ReLU epilogue code of `gemm.cu`.
const EPI_BIAS_RELU: i32 = 2;

/// The peer term's kernel arguments: `p` and the positive rows, checked
/// against the layer's shape; without one, `fallback` stands in as the
/// pointer (the kernels never read it when the row count is 0).
fn peer_args<'a>(
    op: &'static str,
    peer: Option<PeerTerm<'a, DevBuf>>,
    (rows, dout): (usize, usize),
    fallback: &'a DevBuf,
) -> Result<(&'a DevBuf, i32)> {
    match peer {
        None => Ok((fallback, 0)),
        Some(t) => {
            check_len(op, "peer term", t.p.len(), dout)?;
            if t.rows > rows {
                return Err(crate::error::shape_err(op, format!("a peer term for {} of {rows} rows", t.rows)));
            }
            Ok((t.p, int(op, t.rows)?))
        }
    }
}

impl CudaBackend {
    /// Row sums of squares of `rows` rows of `d` (one warp per row).
    pub(crate) fn launch_row_reduce(
        &self,
        x: &DevBuf,
        rows: usize,
        d: usize,
        squares: bool,
        out: &mut DevBuf,
    ) -> Result<()> {
        let name = if squares { "ffwd_row_sumsq_f32" } else { "ffwd_row_sum_f32" };
        if rows == 0 {
            return Ok(());
        }
        let func = self.dev.function("reduce", name)?;
        let (r, dd) = (int(name, rows)?, int(name, d)?);
        let (xv, mut ov) = (x.view()?, out.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&xv).arg(&r).arg(&dd).arg(&mut ov);
        // SAFETY: x holds rows·d values and out rows (checked by the callers).
        unsafe { b.launch(super::device::warp_rows(rows)) }.map_err(|e| err(name, e))?;
        Ok(())
    }
}

impl LinearOps for CudaBackend {
    type Packed = DevMat;
    /// The fused and unfused passes need no work space on the device.
    type LinearScratch = ();

    fn pack(&self, row_major: &[f32], k: usize, n: usize) -> Result<DevMat> {
        check_len("pack", "weights", row_major.len(), k * n)?;
        let mut buf = DevBuf::default();
        self.upload(row_major, &mut buf)?;
        Ok(DevMat { buf, rows: k, cols: n })
    }
    fn unpack(&self, w: &DevMat) -> Result<Vec<f32>> {
        self.download(&w.buf)
    }
    fn unpack_into(&self, w: &DevMat, out: &mut DevBuf) -> Result<()> {
        self.copy(&w.buf, out)
    }
    fn packed_state(&self, w: &DevMat) -> Result<DevBuf> {
        self.zeros(w.rows * w.cols)
    }
    fn unpack_state(&self, w: &DevMat, state: &DevBuf) -> Result<Vec<f32>> {
        check_len("unpack_state", "state", state.len(), w.rows * w.cols)?;
        self.download(state)
    }
    fn pack_state(&self, w: &DevMat, row_major: &[f32], state: &mut DevBuf) -> Result<()> {
        check_len("pack_state", "state", row_major.len(), w.rows * w.cols)?;
        self.upload(row_major, state)
    }
    fn linear_forward_packed(
        &self,
        x: &DevBuf,
        w: &DevMat,
        bias: &DevBuf,
        h: &mut DevBuf,
        g: &mut DevBuf,
    ) -> Result<StepsRun> {
        const OP: &str = "linear_forward_packed";
        let rows = rows_of(OP, x.len(), w.rows)?;
        check_len(OP, "bias", bias.len(), w.cols)?;
        h.set_len(self.dev, rows * w.cols, false)?;
        g.set_len(self.dev, rows, false)?;
        if rows > 0 {
            // The GEMM with its bias + ReLU epilogue, then one warp per row
            // for G. (G cannot ride in the GEMM's epilogue: its L32 order
            // needs a row's 32 lane sums in ascending column order, which a
            // grid of column tiles does not give without serialising them.)
            let a = (x.view()?, w.rows, 1);
            let b = (w.buf.view()?, w.cols, 1);
            self.launch_gemm(a, b, &mut h.view_mut()?, (rows, w.cols, w.rows), &bias.view()?, EPI_BIAS_RELU)?;
            self.launch_row_reduce(h, rows, w.cols, true, g)?;
        }
        Ok(StepsRun::every(rows, w.rows))
    }
    fn linear_backward_update(&self, u: LinearUpdate<'_, Self>, _scratch: &mut ()) -> Result<StepsRun> {
        const OP: &str = "linear_backward_update";
        let d = LinearDims::of_update(OP, &u)?;
        check_len(OP, "weight state", u.w.a.len(), d.din * d.dout)?;
        if u.step.has_second_state() {
            check_len(OP, "weight second moment", u.w.b.len(), d.din * d.dout)?;
        }
        let p = OptimParams::new(u.step);
        let (rows, din, dout) = (int(OP, d.rows)?, int(OP, d.din)?, int(OP, d.dout)?);
        let (xv, hv, gv) = (u.xn.view()?, u.h.view()?, u.dldg.view()?);
        let (peer, npos) = peer_args(OP, u.peer, (d.rows, d.dout), u.dldg)?;
        let pv = peer.view()?;
        if d.din > 0 && d.dout > 0 {
            let tile = self.dev.resolve_tile(self.tile, d.din, d.dout);
            let f = self.dev.function("linear", &format!("ffwd_linear_backward_update{}_f32", tile.entry_suffix()))?;
            let (mut wv, mut av) = (u.w.value.buf.view_mut()?, u.w.a.view_mut()?);
            let mut bv = self.maybe_mut(u.w.b)?;
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&xv).arg(&hv).arg(&gv).arg(&rows).arg(&din).arg(&dout).arg(&pv).arg(&npos);
            lb.arg(&mut wv).arg(&mut av).arg(&mut bv).arg(&p);
            // SAFETY: xn holds rows·din floats, h rows·dout, dL/dG rows; W and
            // its state din·dout (Adam's v too; SGD never reads it; all
            // checked above). Each output element is read and written by the
            // one thread that owns it.
            unsafe { lb.launch(CudaDevice::tile_grid(tile, d.din, d.dout)) }.map_err(|e| err(OP, e))?;
        }
        if d.dout > 0 {
            let f = self.dev.function("linear", "ffwd_bias_backward_update_f32")?;
            let (mut bv, mut ba) = (u.bias.value.view_mut()?, u.bias.a.view_mut()?);
            let mut bb = self.maybe_mut(u.bias.b)?;
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&hv).arg(&gv).arg(&rows).arg(&dout).arg(&pv).arg(&npos);
            lb.arg(&mut bv).arg(&mut ba).arg(&mut bb).arg(&p);
            // SAFETY: one thread per bias element; h holds rows·dout floats and
            // the bias and its state dout (checked above).
            unsafe { lb.launch(grid_for(d.dout)) }.map_err(|e| err("bias_backward_update", e))?;
        }
        Ok(StepsRun::every(d.din, d.rows))
    }
    fn linear_grads(
        &self,
        (xn, h, dldg): (&DevBuf, &DevBuf, &DevBuf),
        peer: Option<PeerTerm<'_, DevBuf>>,
        (din, dout): (usize, usize),
        (dw, db): (&mut DevBuf, &mut DevBuf),
        _scratch: &mut (),
    ) -> Result<()> {
        const OP: &str = "linear_grads";
        let rows = dldg.len();
        check_len(OP, "Xn", xn.len(), rows * din)?;
        check_len(OP, "h", h.len(), rows * dout)?;
        dw.set_len(self.dev, din * dout, false)?;
        db.set_len(self.dev, dout, false)?;
        if dout == 0 {
            return Ok(());
        }
        let (r, di, dd) = (int(OP, rows)?, int(OP, din)?, int(OP, dout)?);
        let (xv, hv, gv) = (xn.view()?, h.view()?, dldg.view()?);
        let (peer, npos) = peer_args(OP, peer, (rows, dout), dldg)?;
        let pv = peer.view()?;
        if din > 0 {
            let tile = self.dev.resolve_tile(self.tile, din, dout);
            let f = self.dev.function("linear", &format!("ffwd_linear_grads{}_f32", tile.entry_suffix()))?;
            let mut wv = dw.view_mut()?;
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&xv).arg(&hv).arg(&gv).arg(&r).arg(&di).arg(&dd).arg(&pv).arg(&npos).arg(&mut wv);
            // SAFETY: the shapes are checked above; each dW element is written
            // by the one thread that owns it.
            unsafe { lb.launch(CudaDevice::tile_grid(tile, din, dout)) }.map_err(|e| err(OP, e))?;
        }
        let f = self.dev.function("linear", "ffwd_bias_grad_kept_f32")?;
        let mut bv = db.view_mut()?;
        let mut lb = self.dev.stream.launch_builder(&f);
        lb.arg(&hv).arg(&gv).arg(&r).arg(&dd).arg(&pv).arg(&npos).arg(&mut bv);
        // SAFETY: one thread per bias element; h holds rows·dout floats.
        unsafe { lb.launch(grid_for(dout)) }.map_err(|e| err("bias_grad_kept", e))?;
        Ok(())
    }
    fn packed_step(
        &self,
        step: &OptimStep,
        w: Param<'_, DevMat, DevBuf>,
        grad: &DevBuf,
        _scratch: &mut (),
    ) -> Result<()> {
        self.launch_optim("packed_step", step, &mut w.value.buf, grad, w.a, w.b)
    }
    fn local_grad(&self, h: &DevBuf, d: usize, dldg: &DevBuf, dz: &mut DevBuf) -> Result<()> {
        const OP: &str = "local_grad";
        check_len(OP, "h", h.len(), dldg.len() * d)?;
        dz.set_len(self.dev, h.len(), false)?;
        if h.is_empty() {
            return Ok(());
        }
        let func = self.dev.function("linear", "ffwd_local_grad_f32")?;
        let (r, dd) = (int(OP, dldg.len())?, int(OP, d)?);
        let (hv, gv, mut zv) = (h.view()?, dldg.view()?, dz.view_mut()?);
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&hv).arg(&gv).arg(&r).arg(&dd).arg(&mut zv);
        // SAFETY: rows·d elements of h and dz, rows of dL/dG (checked).
        unsafe { b.launch(grid_for(h.len())) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn bias_grad(&self, dz: &DevBuf, m: usize, n: usize, db: &mut DevBuf) -> Result<()> {
        const OP: &str = "bias_grad";
        check_len(OP, "dz", dz.len(), m * n)?;
        db.set_len(self.dev, n, false)?;
        if n == 0 {
            return Ok(());
        }
        let func = self.dev.function("linear", "ffwd_bias_grad_f32")?;
        let (mi, ni) = (int(OP, m)?, int(OP, n)?);
        let dummy = self.dev.dummy()?;
        let zv = if dz.is_empty() { dummy.slice(0..0) } else { dz.view()? };
        let mut bv = db.view_mut()?;
        let mut b = self.dev.stream.launch_builder(&func);
        b.arg(&zv).arg(&mi).arg(&ni).arg(&mut bv);
        // SAFETY: m·n floats read (none when m = 0), n written.
        unsafe { b.launch(grid_for(n)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
    fn peer_grad(
        &self,
        h: &DevBuf,
        (d, n): (usize, usize),
        peer: PeerNorm,
        means: &mut DevBuf,
        p: &mut DevBuf,
    ) -> Result<()> {
        const OP: &str = "peer_grad";
        peer_dims(h.len(), d, n, means.len())?;
        p.set_len(self.dev, d, false)?;
        let (nn, dd) = (int(OP, n)?, int(OP, d)?);
        let (mu, omu) = (peer.momentum, 1.0 - peer.momentum);
        let (lambda, w) = (peer.lambda, 1.0 / n as f32);
        {
            let f = self.dev.function("linear", "ffwd_peer_means_f32")?;
            let hv = h.view()?;
            let mut mv = means.view_mut()?;
            let mut lb = self.dev.stream.launch_builder(&f);
            lb.arg(&hv).arg(&nn).arg(&dd).arg(&mu).arg(&omu).arg(&mut mv);
            // SAFETY: one thread per unit; h holds at least n·d floats and
            // means d (checked above).
            unsafe { lb.launch(grid_for(d)) }.map_err(|e| err(OP, e))?;
        }
        let f = self.dev.function("linear", "ffwd_peer_grad_f32")?;
        let (mv, mut pv) = (means.view()?, p.view_mut()?);
        let mut lb = self.dev.stream.launch_builder(&f);
        lb.arg(&mv).arg(&dd).arg(&lambda).arg(&w).arg(&mut pv);
        // SAFETY: means and p hold d floats; each p element is written by the
        // one thread that owns it, after its block's first warp summed the
        // means into shared memory.
        unsafe { lb.launch(grid_for(d)) }.map_err(|e| err(OP, e))?;
        Ok(())
    }
}
