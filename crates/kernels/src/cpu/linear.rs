//! The local gradient of a goodness loss through ReLU, and the bias gradient.
//!
//! Spec: `dz[i,j] = h[i,j] · c_i` with `c_i = dLdG_i + dLdG_i` (h is zero
//! wherever the ReLU is off, so no mask is needed). `db[j]` is the
//! sequential column sum of `dz` over rows i = 0..M−1 from +0.0.
//!
//! In an FF layer's parameter gradients (`dW = xnᵀ·dz`, `db`), rows whose
//! dL/dG is exactly zero (either sign) are left out: their dz row is zero,
//! so leaving them out changes no value, only, in principle, the sign of a
//! sum that is exactly zero (and an inf · 0 that would have made a NaN).
//! A saturated goodness loss gives many such rows (17–42 % of them in the
//! 4×2000 MNIST run at batch 100), and each saves its share of the dW
//! GEMM. [`gather_active`] gathers the others, in order (the scalar
//! specification multiplies the gathered copy; the AVX2 backend packs the
//! same rows, in the same order, straight from their places by index).
//! Under peer normalisation the positive rows carry the peer term and are
//! all kept ([`row_kept`]; the spec is in `ops/linear.rs`).

use super::gemm::{self, BSource, Epi, Epilogue, PackedMat, SharedMut, StepsRun};
use super::pages;
use super::{optim, CpuBackend, CpuKind};
use crate::error::{check_len, shape_err, Result};
use crate::mat::{MatMut, MatRef};
use crate::ops::linear::{
    peer_dims, row_kept, LinearDims, LinearOps, LinearUpdate, Param, PeerNorm, PeerTerm, Weights,
};
use crate::ops::optim::OptimStep;
use rayon::prelude::*;

/// The number of rows kept in an FF layer's parameter gradients: those
/// whose dL/dG is not zero, and the first `peer_rows` (see
/// [`row_kept`]).
pub fn active_count(dldg: &[f32], peer_rows: usize) -> usize {
    dldg.iter().enumerate().filter(|&(i, &g)| row_kept(i, g, peer_rows)).count()
}

/// Gather the kept rows `i` ([`row_kept`], in order) of `xn` (rows × din,
/// any strides), `h` (rows × dout) and `dldg` into `out` and return them as
/// `(xn' (k × din), h' (k × dout), dldg' (k))`, `k` = [`active_count`].
/// The first `peer_rows` rows are all kept, so they stay the first rows.
/// `out` must hold at least `k · (din + dout + 1)` floats.
pub fn gather_active<'o>(
    xn: crate::MatRef,
    h: &[f32],
    dldg: &[f32],
    peer_rows: usize,
    out: &'o mut [f32],
) -> (&'o [f32], &'o [f32], &'o [f32]) {
    let din = xn.cols;
    let dout = h.len().checked_div(xn.rows).unwrap_or(0);
    let k = active_count(dldg, peer_rows);
    let (xo, rest) = out.split_at_mut(k * din);
    let (ho, rest) = rest.split_at_mut(k * dout);
    let go = &mut rest[..k];
    let kept = dldg.iter().enumerate().filter(|&(i, &g)| row_kept(i, g, peer_rows));
    for (n, (i, &g)) in kept.enumerate() {
        let dst = &mut xo[n * din..(n + 1) * din];
        if xn.cs == 1 {
            dst.copy_from_slice(&xn.data[i * xn.rs..i * xn.rs + din]);
        } else {
            for (c, o) in dst.iter_mut().enumerate() {
                *o = xn.data[i * xn.rs + c * xn.cs];
            }
        }
        ho[n * dout..(n + 1) * dout].copy_from_slice(&h[i * dout..(i + 1) * dout]);
        go[n] = g;
    }
    (xo, ho, go)
}

/// What the fused update reads: the forward's normalised input, activity
/// and dL/dG, and the peer term if any.
pub type UpdateSource<'a> = (MatRef<'a>, &'a [f32], &'a [f32], Option<PeerTerm<'a, Vec<f32>>>);

/// Peer normalisation's term as the CPU kernels read it: `p` per column
/// and the number of positive rows it applies to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerCols<'a> {
    pub p: &'a [f32],
    pub rows: usize,
}

impl<'a> PeerCols<'a> {
    pub(crate) fn of(t: Option<PeerTerm<'a, Vec<f32>>>) -> Option<Self> {
        t.map(|t| PeerCols { p: t.p, rows: t.rows })
    }
    /// The rows the term keeps in dW and db (0 without one).
    pub(crate) fn rows_of(peer: Option<Self>) -> usize {
        peer.map_or(0, |p| p.rows)
    }
}

/// One value of the local gradient: `v·c` (`c = dL/dG_i + dL/dG_i`), plus
/// the peer term `p_j` on a positive row `i`.
#[inline(always)]
pub(crate) fn dz_at(v: f32, c: f32, i: usize, j: usize, peer: Option<PeerCols>) -> f32 {
    let z = v * c;
    match peer {
        Some(pc) if i < pc.rows => z + pc.p[j],
        _ => z,
    }
}

/// The local gradient with a peer term (rows in order, row i of `h` is
/// batch row i).
pub(crate) fn local_grad_peer(h: &[f32], d: usize, dldg: &[f32], peer: PeerCols, dz: &mut [f32]) {
    for (i, ((hr, zr), &g)) in h.chunks(d).zip(dz.chunks_mut(d)).zip(dldg).enumerate() {
        let c = g + g;
        for (j, (z, &v)) in zr.iter_mut().zip(hr).enumerate() {
            *z = dz_at(v, c, i, j, Some(peer));
        }
    }
}

/// [`LinearOps::peer_grad`]'s column sums over the first `n` rows: scalar,
/// or eight columns per register (the same sequential order per column).
fn peer_colsums(kind: CpuKind, h: &[f32], n: usize, d: usize, out: &mut [f32]) {
    match kind {
        CpuKind::Scalar => bias_grad_scalar(h, n, d, out),
        CpuKind::Avx2 => bias_grad_avx2(h, n, d, out),
    }
}

/// The spec of [`LinearOps::peer_grad`] once the column sums are in `p`.
fn peer_finish(p: &mut [f32], n: usize, peer: PeerNorm, means: &mut [f32]) {
    let (mu, omu) = (peer.momentum, 1.0 - peer.momentum);
    for (m, s) in means.iter_mut().zip(p.iter()) {
        let mean = *s / n as f32;
        *m = mu * *m + omu * mean;
    }
    let mbar = crate::numerics::l32_sum(means) / means.len() as f32;
    let w = 1.0 / n as f32;
    for (o, &m) in p.iter_mut().zip(means.iter()) {
        *o = (peer.lambda * (m - mbar)) * w;
    }
}

pub(crate) fn local_grad_scalar(h: &[f32], d: usize, dldg: &[f32], dz: &mut [f32]) {
    for ((hr, zr), &g) in h.chunks(d).zip(dz.chunks_mut(d)).zip(dldg) {
        let c = g + g;
        for (z, &v) in zr.iter_mut().zip(hr) {
            *z = v * c;
        }
    }
}

pub(crate) fn local_grad_avx2(h: &[f32], d: usize, dldg: &[f32], dz: &mut [f32]) {
    let rpt = (16_384 / d.max(1)).max(1);
    dz.par_chunks_mut(rpt * d).zip(h.par_chunks(rpt * d)).zip(dldg.par_chunks(rpt)).for_each(|((zb, hb), gb)| {
        for ((hr, zr), &g) in hb.chunks(d).zip(zb.chunks_mut(d)).zip(gb) {
            // SAFETY: Avx2 backend ⇒ avx2+fma detected.
            unsafe { super::reduce::avx2::scale(hr, g + g, zr) };
        }
    });
}

pub(crate) fn bias_grad_scalar(dz: &[f32], m: usize, n: usize, db: &mut [f32]) {
    for (j, o) in db.iter_mut().enumerate().take(n) {
        let mut acc = 0.0f32;
        for i in 0..m {
            acc = acc + dz[i * n + j];
        }
        *o = acc;
    }
}

pub(crate) fn bias_grad_avx2(dz: &[f32], m: usize, n: usize, db: &mut [f32]) {
    const COLS: usize = 256;
    db.par_chunks_mut(COLS).enumerate().for_each(|(t, out)| {
        let j0 = t * COLS;
        // SAFETY: Avx2 backend ⇒ avx2+fma detected; indices stay below m·n.
        unsafe { avx2::colsum(dz, m, n, j0, out) };
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// out[c] = Σ_i dz[i, j0 + c], sequential in i, 8 columns per register.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn colsum(dz: &[f32], m: usize, n: usize, j0: usize, out: &mut [f32]) {
        let w = out.len();
        let body = w / 8 * 8;
        let mut c = 0;
        while c < body {
            let mut acc = _mm256_setzero_ps();
            for i in 0..m {
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(dz.as_ptr().add(i * n + j0 + c)));
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(c), acc);
            c += 8;
        }
        for c in body..w {
            let mut acc = 0.0f32;
            for i in 0..m {
                acc = acc + dz[i * n + j0 + c];
            }
            out[c] = acc;
        }
    }
}

impl CpuBackend {
    /// The fused FF forward: `h = relu(x · w + bias)` and the row goodness
    /// `g_i = l32_sumsq(h_i)`, in one pass over the output.
    pub fn linear_forward(&self, x: MatRef, w: MatRef, bias: &[f32], mut h: MatMut, g: &mut [f32]) -> Result<()> {
        check_len("linear_forward", "goodness", g.len(), x.rows)?;
        self.gemm_impl("linear_forward", x, w, &mut h, Epilogue::BiasRelu(bias), Some(g))
    }

    /// [`CpuBackend::linear_forward`] with the weights in the packed layout
    /// (no repacking of W per call). Returns how much of the product ran
    /// ([`StepsRun`]: the AVX2 backend leaves out the k steps at which six
    /// rows of `x` are all zero, with the spec's bits).
    pub fn linear_forward_packed(
        &self,
        x: MatRef,
        w: &PackedMat,
        bias: &[f32],
        mut h: MatMut,
        g: &mut [f32],
    ) -> Result<StepsRun> {
        const OP: &str = "linear_forward_packed";
        if x.cols != w.rows() || h.rows != x.rows || h.cols != w.cols() {
            return Err(shape_err(
                OP,
                format!("X {}×{} · W {}×{} → H {}×{}", x.rows, x.cols, w.rows(), w.cols(), h.rows, h.cols),
            ));
        }
        check_len(OP, "bias", bias.len(), w.cols())?;
        check_len(OP, "goodness", g.len(), x.rows)?;
        Ok(match self.kind {
            CpuKind::Scalar => {
                let wr = w.to_row_major();
                let wm = MatRef::new(&wr, w.rows(), w.cols())?;
                gemm::gemm_scalar(x, wm, &mut h, Epilogue::BiasRelu(bias), Some(g));
                StepsRun::every(x.rows, x.cols)
            }
            CpuKind::Avx2 => {
                // A's zero steps left out: bit-identical (see `gemm_avx2_src`).
                gemm::gemm_avx2_src(x, BSource::Packed(w), &mut h, Epi::Out(Epilogue::BiasRelu(bias)), Some(g), true)
            }
        })
    }

    /// The fused backward and update of an FF layer with packed weights,
    /// from the forward's `(xn, h, dL/dG)`.
    ///
    /// Spec (the scalar backend runs exactly this): `dz = local_grad(h,
    /// dL/dG)`; `dW = xnᵀ·dz` (GEMM spec); `db = bias_grad(dz)`; then the
    /// optimiser on every logical element of W with its state `a`, `b`
    /// (Adam: m, v; SGD: the momentum buffer, `b` unused), which are kept in
    /// W's packed layout. The AVX2 backend builds dz while packing the GEMM
    /// operand (summing db on the way) and updates each 6×16 tile of W the
    /// moment its fma chains end, so dz and dW are never written out (for
    /// more than 256 rows the partial sums of dW pass through `scratch`).
    /// It leaves out the k steps of dW at which six columns of `xn` are all
    /// zero (see [`StepsRun`], which it returns), with the spec's bits
    /// (except under Adam with β1 = 0, where it runs them all).
    pub fn linear_backward_update(
        &self,
        (xn, h, dldg, peer): UpdateSource<'_>,
        w: &mut PackedMat,
        step: &OptimStep,
        (a, b): (&mut [f32], &mut [f32]),
        db: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<StepsRun> {
        const OP: &str = "linear_backward_update";
        let (rows, din, dout) = (xn.rows, xn.cols, w.cols());
        if w.rows() != din {
            return Err(shape_err(OP, format!("Xn has {din} columns, W has {} rows", w.rows())));
        }
        check_len(OP, "h", h.len(), rows * dout)?;
        check_len(OP, "dL/dG", dldg.len(), rows)?;
        check_len(OP, "db", db.len(), dout)?;
        check_len(OP, "optimiser state", a.len(), w.data().len())?;
        if matches!(step, OptimStep::Adam(_)) {
            check_len(OP, "second moment", b.len(), w.data().len())?;
        }
        // Rows with dL/dG = 0 are left out (see `linear`). The scratch is
        // sized for every row kept, so no batch grows it.
        let peer = PeerCols::of(peer);
        let peer_rows = PeerCols::rows_of(peer);
        if peer.is_some_and(|pc| pc.p.len() != dout || pc.rows > rows) {
            return Err(shape_err(OP, format!("a peer term for {peer_rows} of {rows} rows needs {dout} values")));
        }
        let kept = active_count(dldg, peer_rows);
        let p = step.prepare();
        Ok(match self.kind {
            CpuKind::Scalar => {
                // The specification: the kept rows gathered, in order, behind
                // the dz and dW buffers, then the unfused passes.
                let work_len = din * dout + kept * dout;
                pages::grow(scratch, work_len + rows * (din + dout + 1))?;
                let (work, gathered) = scratch.split_at_mut(work_len);
                let (xn, h, dldg, rows) = if kept == rows {
                    (xn, h, dldg, rows)
                } else {
                    let (xs, hs, gs) = gather_active(xn, h, dldg, peer_rows, gathered);
                    (MatRef::new(xs, kept, din)?, hs, gs, kept)
                };
                let (dz, dw) = work.split_at_mut(rows * dout);
                match peer {
                    None => local_grad_scalar(h, dout, dldg, dz),
                    Some(pc) => local_grad_peer(h, dout, dldg, pc, dz),
                }
                let mut dwm = MatMut::new(dw, din, dout)?;
                gemm::gemm_scalar(xn.t(), MatRef::new(dz, rows, dout)?, &mut dwm, Epilogue::None, None);
                bias_grad_scalar(dz, rows, dout, db);
                let mut unused = 0.0f32;
                for r in 0..din {
                    for j in 0..dout {
                        let i = w.index(r, j);
                        let bi = if b.is_empty() { &mut unused } else { &mut b[i] };
                        optim::update_one(&p, &mut w.data_mut()[i], dw[r * dout + j], &mut a[i], bi);
                    }
                }
                StepsRun::every(din, rows)
            }
            CpuKind::Avx2 => {
                // The kept rows by index, behind the GEMM's part of the
                // scratch: the packers read them where they are, so nothing
                // is copied.
                pages::grow(scratch, din * dout + rows)?;
                let (work, ix) = scratch.split_at_mut(din * dout);
                let ix: &mut [u32] = bytemuck::cast_slice_mut(&mut ix[..rows]);
                for (slot, i) in ix.iter_mut().zip((0..rows).filter(|&i| row_kept(i, dldg[i], peer_rows))) {
                    *slot = i as u32;
                }
                let kept_rows = (kept < rows).then_some(&ix[..kept]);
                let sink = optim::PackedTileUpdate::new(p, w, a, b);
                let hm = MatRef::new(h, rows, dout)?;
                let src = BSource::LocalGrad {
                    h: hm,
                    dldg,
                    peer,
                    db: SharedMut(db.as_mut_ptr()),
                    rows_cap: rows,
                    kept: kept_rows,
                };
                let mut c = MatMut::new(work, din, dout)?;
                // A's zero steps left out: the update rarely sees a zero's
                // sign (see `optim::PackedTileUpdate`; a tile where it would
                // is recomputed). Not with β1 = 0, where Adam's moment sees
                // the sign of every zero gradient.
                let skip = !matches!(p, optim::Prepared::Adam(s) if s.b1 == 0.0);
                let steps = gemm::gemm_avx2_src(xn.t(), src, &mut c, Epi::Sink(&sink), None, skip);
                w.set_all_finite(sink.all_finite());
                steps
            }
        })
    }

    /// Local gradient through ReLU: `dz = h · (2·dL/dG)` row-wise.
    pub fn local_grad(&self, h: &[f32], d: usize, dldg: &[f32], dz: &mut [f32]) -> Result<()> {
        check_len("local_grad", "h", h.len(), dldg.len() * d)?;
        check_len("local_grad", "dz", dz.len(), h.len())?;
        match self.kind {
            CpuKind::Scalar => local_grad_scalar(h, d, dldg, dz),
            CpuKind::Avx2 => local_grad_avx2(h, d, dldg, dz),
        }
        Ok(())
    }

    /// Bias gradient: column sums of the m × n matrix `dz`.
    pub fn bias_grad(&self, dz: &[f32], m: usize, n: usize, db: &mut [f32]) -> Result<()> {
        check_len("bias_grad", "dz", dz.len(), m * n)?;
        check_len("bias_grad", "db", db.len(), n)?;
        match self.kind {
            CpuKind::Scalar => bias_grad_scalar(dz, m, n, db),
            CpuKind::Avx2 => bias_grad_avx2(dz, m, n, db),
        }
        Ok(())
    }
}

impl Weights for PackedMat {
    fn rows(&self) -> usize {
        PackedMat::rows(self)
    }
    fn cols(&self) -> usize {
        PackedMat::cols(self)
    }
}

/// Work space of the CPU's FF layer ops, kept between steps.
#[derive(Clone, Debug, Default)]
pub struct LinearScratch {
    /// The fused update's dW partial sums and kept-row map.
    gemm: Vec<f32>,
    /// The bias gradient of the fused update.
    db: Vec<f32>,
    /// The unfused gradients' gathered rows and dz.
    gathered: Vec<f32>,
    dz: Vec<f32>,
}

impl LinearOps for CpuBackend {
    type Packed = PackedMat;
    type LinearScratch = LinearScratch;

    fn pack(&self, row_major: &[f32], k: usize, n: usize) -> Result<PackedMat> {
        PackedMat::from_row_major(row_major, k, n)
    }
    fn unpack(&self, w: &PackedMat) -> Result<Vec<f32>> {
        Ok(w.to_row_major())
    }
    fn unpack_into(&self, w: &PackedMat, out: &mut Vec<f32>) -> Result<()> {
        pages::grow(out, w.rows() * w.cols())?;
        w.write_row_major(out);
        Ok(())
    }
    fn packed_state(&self, w: &PackedMat) -> Result<Vec<f32>> {
        super::pages::zeroed(w.data().len())
    }
    fn unpack_state(&self, w: &PackedMat, state: &Vec<f32>) -> Result<Vec<f32>> {
        check_len("unpack_state", "state", state.len(), w.data().len())?;
        let (k, n) = (w.rows(), w.cols());
        Ok((0..k * n).map(|i| state[gemm::packed_index(k, i / n, i % n)]).collect())
    }
    fn pack_state(&self, w: &PackedMat, row_major: &[f32], state: &mut Vec<f32>) -> Result<()> {
        let (k, n) = (w.rows(), w.cols());
        check_len("pack_state", "state", row_major.len(), k * n)?;
        state.clear();
        state.extend_from_slice(PackedMat::from_row_major(row_major, k, n)?.data());
        Ok(())
    }
    fn linear_forward_packed(
        &self,
        x: &Vec<f32>,
        w: &PackedMat,
        bias: &Vec<f32>,
        h: &mut Vec<f32>,
        g: &mut Vec<f32>,
    ) -> Result<StepsRun> {
        let _p = crate::profile::scope("linear_forward_packed");
        let rows = crate::ops::reduce::rows_of("linear_forward_packed", x.len(), w.rows())?;
        pages::grow(h, rows * w.cols())?;
        pages::grow(g, rows)?;
        CpuBackend::linear_forward_packed(
            self,
            MatRef::new(x, rows, w.rows())?,
            w,
            bias,
            MatMut::new(h, rows, w.cols())?,
            g,
        )
    }
    fn linear_backward_update(&self, u: LinearUpdate<'_, Self>, scratch: &mut LinearScratch) -> Result<StepsRun> {
        let _p = crate::profile::scope("linear_backward_update");
        let d = LinearDims::of_update("linear_backward_update", &u)?;
        pages::grow(&mut scratch.db, d.dout)?;
        let LinearUpdate { xn, h, dldg, w, bias, step, peer } = u;
        let steps = CpuBackend::linear_backward_update(
            self,
            (MatRef::new(xn, d.rows, d.din)?, h, dldg, peer),
            w.value,
            step,
            (w.a, w.b),
            &mut scratch.db,
            &mut scratch.gemm,
        )?;
        self.optim_slices("linear_backward_update (bias)", step, bias.value, &scratch.db, bias.a, bias.b)?;
        Ok(steps)
    }
    fn linear_grads(
        &self,
        (xn, h, dldg): (&Vec<f32>, &Vec<f32>, &Vec<f32>),
        peer: Option<PeerTerm<'_, Vec<f32>>>,
        (din, dout): (usize, usize),
        (dw, db): (&mut Vec<f32>, &mut Vec<f32>),
        scratch: &mut LinearScratch,
    ) -> Result<()> {
        let _p = crate::profile::scope("linear_grads");
        const OP: &str = "linear_grads";
        let rows = dldg.len();
        check_len(OP, "Xn", xn.len(), rows * din)?;
        check_len(OP, "h", h.len(), rows * dout)?;
        // The specification: the kept rows gathered in order, then dz, dW
        // and db by their own kernels.
        let peer = PeerCols::of(peer);
        let peer_rows = PeerCols::rows_of(peer);
        if peer.is_some_and(|pc| pc.p.len() != dout || pc.rows > rows) {
            return Err(shape_err(OP, format!("a peer term for {peer_rows} of {rows} rows needs {dout} values")));
        }
        let kept = active_count(dldg, peer_rows);
        pages::grow(&mut scratch.gathered, kept * (din + dout + 1))?;
        let (xk, hk, gk) = gather_active(MatRef::new(xn, rows, din)?, h, dldg, peer_rows, &mut scratch.gathered);
        pages::grow(&mut scratch.dz, kept * dout)?;
        match peer {
            None => CpuBackend::local_grad(self, hk, dout, gk, &mut scratch.dz)?,
            Some(pc) => local_grad_peer(hk, dout, gk, pc, &mut scratch.dz),
        }
        pages::grow(dw, din * dout)?;
        pages::grow(db, dout)?;
        let (xm, dzm) = (MatRef::new(xk, kept, din)?, MatRef::new(&scratch.dz, kept, dout)?);
        CpuBackend::gemm(self, xm.t(), dzm, MatMut::new(dw, din, dout)?, Epilogue::None)?;
        CpuBackend::bias_grad(self, &scratch.dz, kept, dout, db)
    }
    fn packed_step(
        &self,
        step: &OptimStep,
        w: Param<'_, PackedMat, Vec<f32>>,
        grad: &Vec<f32>,
        _scratch: &mut LinearScratch,
    ) -> Result<()> {
        let _p = crate::profile::scope("packed_step");
        let g = PackedMat::from_row_major(grad, w.value.rows(), w.value.cols())?;
        self.optim_slices("packed_step", step, w.value.data_mut(), g.data(), w.a, w.b)
    }
    fn local_grad(&self, h: &Vec<f32>, d: usize, dldg: &Vec<f32>, dz: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("local_grad");
        pages::grow(dz, h.len())?;
        CpuBackend::local_grad(self, h, d, dldg, dz)
    }
    fn bias_grad(&self, dz: &Vec<f32>, m: usize, n: usize, db: &mut Vec<f32>) -> Result<()> {
        let _p = crate::profile::scope("bias_grad");
        pages::grow(db, n)?;
        CpuBackend::bias_grad(self, dz, m, n, db)
    }
    fn peer_grad(
        &self,
        h: &Vec<f32>,
        (d, n): (usize, usize),
        peer: PeerNorm,
        means: &mut Vec<f32>,
        p: &mut Vec<f32>,
    ) -> Result<()> {
        let _p = crate::profile::scope("peer_grad");
        peer_dims(h.len(), d, n, means.len())?;
        pages::grow(p, d)?;
        peer_colsums(self.kind, h, n, d, p);
        peer_finish(p, n, peer, means);
        Ok(())
    }
}
