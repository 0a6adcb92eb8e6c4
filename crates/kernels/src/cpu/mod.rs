//! The two CPU backends behind one interface, [`CpuBackend`]: the scalar
//! specification and the AVX2+FMA implementation (rayon-parallel) that
//! reproduces it bit for bit. One op family per file; each file holds the
//! scalar spec and the AVX2 code side by side.

pub mod conv;
pub mod embed;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod math;
pub mod norm2d;
pub mod optim;
pub mod pages;
pub mod peak;
pub mod pool;
pub mod reduce;

use crate::error::{check_len, shape_err, Error, Result};
use crate::mat::{MatMut, MatRef};
use gemm::{BSource, Epi, Epilogue, PackedMat, SharedMut, StepsRun};
use loss::{FfLoss, GoodnessForm, LossScratch};
use math::Unary;
use optim::{AdamStep, OptimStep, SgdStep};
use reduce::Norm;
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

    /// `c = epilogue(a · b)` (see [`gemm`] for the spec).
    pub fn gemm(&self, a: MatRef, b: MatRef, mut c: MatMut, epi: Epilogue) -> Result<()> {
        self.gemm_impl("gemm", a, b, &mut c, epi, None)
    }

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

    /// The fused backward and update of an FF layer with packed weights.
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
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward_update(
        &self,
        xn: MatRef,
        h: &[f32],
        dldg: &[f32],
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
        let kept = linear::active_count(dldg);
        let p = step.prepare();
        Ok(match self.kind {
            CpuKind::Scalar => {
                // The specification: the kept rows gathered, in order, behind
                // the dz and dW buffers, then the unfused passes.
                let work_len = din * dout + kept * dout;
                scratch.resize(work_len + rows * (din + dout + 1), 0.0);
                let (work, gathered) = scratch.split_at_mut(work_len);
                let (xn, h, dldg, rows) = if kept == rows {
                    (xn, h, dldg, rows)
                } else {
                    let (xs, hs, gs) = linear::gather_active(xn, h, dldg, gathered);
                    (MatRef::new(xs, kept, din)?, hs, gs, kept)
                };
                let (dz, dw) = work.split_at_mut(rows * dout);
                linear::local_grad_scalar(h, dout, dldg, dz);
                let mut dwm = MatMut::new(dw, din, dout)?;
                gemm::gemm_scalar(xn.t(), MatRef::new(dz, rows, dout)?, &mut dwm, Epilogue::None, None);
                linear::bias_grad_scalar(dz, rows, dout, db);
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
                scratch.resize(din * dout + rows, 0.0);
                let (work, ix) = scratch.split_at_mut(din * dout);
                let ix: &mut [u32] = bytemuck::cast_slice_mut(&mut ix[..rows]);
                for (slot, i) in ix.iter_mut().zip((0..rows).filter(|&i| dldg[i] != 0.0)) {
                    *slot = i as u32;
                }
                let kept_rows = (kept < rows).then_some(&ix[..kept]);
                let sink = optim::PackedTileUpdate::new(p, w, a, b);
                let hm = MatRef::new(h, rows, dout)?;
                let src =
                    BSource::LocalGrad { h: hm, dldg, db: SharedMut(db.as_mut_ptr()), rows_cap: rows, kept: kept_rows };
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

    fn gemm_impl(
        &self,
        op: &'static str,
        a: MatRef,
        b: MatRef,
        c: &mut MatMut,
        epi: Epilogue,
        g: Option<&mut [f32]>,
    ) -> Result<()> {
        if a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
            return Err(shape_err(
                op,
                format!("A {}×{} · B {}×{} → C {}×{}", a.rows, a.cols, b.rows, b.cols, c.rows, c.cols),
            ));
        }
        if let Some(bias) = epi.bias() {
            check_len(op, "bias", bias.len(), b.cols)?;
        }
        match self.kind {
            CpuKind::Scalar => gemm::gemm_scalar(a, b, c, epi, g),
            CpuKind::Avx2 => gemm::gemm_avx2(a, b, c, epi, g),
        }
        Ok(())
    }

    /// Row sums of squares in the L32 order; `x` is row-major `out.len() × d`.
    pub fn row_sumsq(&self, x: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
        check_len("row_sumsq", "x", x.len(), out.len() * d)?;
        match self.kind {
            CpuKind::Scalar => reduce::row_sumsq_scalar(x, d, out),
            CpuKind::Avx2 => reduce::row_reduce_avx2(x, d, out, true),
        }
        Ok(())
    }

    /// Standardise each row of `x` (row-major, rows of `d`):
    /// `y = (x − μ) / √(σ² + ε)` with `μ = L32 sum(x) / d` and
    /// `σ² = L32 sum((x − μ)²) / d` (layer norm without gain or bias). One
    /// implementation for both backends (no transcendental but √).
    pub fn standardize_rows(&self, x: &[f32], d: usize, eps: f32, y: &mut [f32]) -> Result<()> {
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(shape_err("standardize_rows", format!("{} values are not rows of {d}", x.len())));
        }
        check_len("standardize_rows", "y", y.len(), x.len())?;
        use rayon::prelude::*;
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(yr, xr)| {
            let mu = crate::numerics::l32_sum(xr) / d as f32;
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v - mu;
            }
            let var = crate::numerics::l32_sumsq(yr) / d as f32;
            let r = 1.0 / (var + eps).sqrt();
            for o in yr.iter_mut() {
                *o = *o * r;
            }
        });
        Ok(())
    }

    /// Row sums in the L32 order.
    pub fn row_sum(&self, x: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
        check_len("row_sum", "x", x.len(), out.len() * d)?;
        match self.kind {
            CpuKind::Scalar => reduce::row_sum_scalar(x, d, out),
            CpuKind::Avx2 => reduce::row_reduce_avx2(x, d, out, false),
        }
        Ok(())
    }

    /// Length-normalise each row of width `d` (see [`reduce`] for the spec).
    pub fn normalize_rows(&self, x: &[f32], out: &mut [f32], d: usize, kind: Norm, eps: f32) -> Result<()> {
        self.normalize_impl("normalize_rows", x, None, out, d, kind, eps)
    }

    /// [`CpuBackend::normalize_rows`] with each row's sum of squares already
    /// known (`sumsq`, one per row): one pass over `x` instead of two. The
    /// result is the same bits when `sumsq` holds the rows' L32 sums of
    /// squares, as [`CpuBackend::row_sumsq`] and the goodness of
    /// [`CpuBackend::linear_forward_packed`] give them.
    pub fn normalize_rows_given(
        &self,
        x: &[f32],
        sumsq: &[f32],
        out: &mut [f32],
        d: usize,
        kind: Norm,
        eps: f32,
    ) -> Result<()> {
        self.normalize_impl("normalize_rows_given", x, Some(sumsq), out, d, kind, eps)
    }

    #[allow(clippy::too_many_arguments)]
    fn normalize_impl(
        &self,
        op: &'static str,
        x: &[f32],
        given: Option<&[f32]>,
        out: &mut [f32],
        d: usize,
        kind: Norm,
        eps: f32,
    ) -> Result<()> {
        check_len(op, "out", out.len(), x.len())?;
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(shape_err(op, format!("{} elements is not a whole number of rows of {d}", x.len())));
        }
        if let Some(ss) = given {
            check_len(op, "sums of squares", ss.len(), x.len() / d)?;
        }
        match self.kind {
            CpuKind::Scalar => reduce::normalize_scalar(x, given, out, d, kind, eps),
            CpuKind::Avx2 => reduce::normalize_avx2(x, given, out, d, kind, eps),
        }
        Ok(())
    }

    /// Elementwise transcendental (exp, log1p, ln, softplus, sigmoid).
    pub fn unary(&self, f: Unary, x: &[f32], out: &mut [f32]) -> Result<()> {
        check_len("unary", "out", out.len(), x.len())?;
        self.unary_unchecked(f, x, out);
        Ok(())
    }

    fn unary_unchecked(&self, f: Unary, x: &[f32], out: &mut [f32]) {
        match self.kind {
            CpuKind::Scalar => math::unary_scalar(f, x, out),
            CpuKind::Avx2 => math::unary_avx2(f, x, out),
        }
    }

    /// FF loss over `g` (n positives then n negatives, sum-form goodness of
    /// a layer of width `d`); writes dL/dG and returns the mean loss.
    pub fn ff_loss(
        &self,
        loss: FfLoss,
        form: GoodnessForm,
        d: usize,
        g: &[f32],
        dldg: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        check_len("ff_loss", "dL/dG", dldg.len(), g.len())?;
        if !g.len().is_multiple_of(2) {
            return Err(shape_err(
                "ff_loss",
                format!("{} goodness values: expected n positives + n negatives", g.len()),
            ));
        }
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        Ok(loss::ff_loss(&u, loss, form, d, g, dldg, scratch))
    }

    /// Local gradient through ReLU: `dz = h · (2·dL/dG)` row-wise.
    pub fn local_grad(&self, h: &[f32], d: usize, dldg: &[f32], dz: &mut [f32]) -> Result<()> {
        check_len("local_grad", "h", h.len(), dldg.len() * d)?;
        check_len("local_grad", "dz", dz.len(), h.len())?;
        match self.kind {
            CpuKind::Scalar => linear::local_grad_scalar(h, d, dldg, dz),
            CpuKind::Avx2 => linear::local_grad_avx2(h, d, dldg, dz),
        }
        Ok(())
    }

    /// Bias gradient: column sums of the m × n matrix `dz`.
    pub fn bias_grad(&self, dz: &[f32], m: usize, n: usize, db: &mut [f32]) -> Result<()> {
        check_len("bias_grad", "dz", dz.len(), m * n)?;
        check_len("bias_grad", "db", db.len(), n)?;
        match self.kind {
            CpuKind::Scalar => linear::bias_grad_scalar(dz, m, n, db),
            CpuKind::Avx2 => linear::bias_grad_avx2(dz, m, n, db),
        }
        Ok(())
    }

    /// Check the shapes and labels of a loss over labelled logits, then run
    /// it with this backend's transcendentals.
    #[allow(clippy::too_many_arguments)]
    fn labelled_loss(
        &self,
        op: &'static str,
        f: loss::LabelledLoss,
        logits: &[f32],
        c: usize,
        labels: &[u32],
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        check_len(op, "logits", logits.len(), labels.len() * c)?;
        check_len(op, "grad", grad.len(), logits.len())?;
        if let Some(&y) = labels.iter().find(|&&y| y as usize >= c) {
            return Err(shape_err(op, format!("label {y} is out of range for {c} classes")));
        }
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        Ok(f(&u, logits, c, labels, grad, scratch))
    }

    /// Softmax of each row of `logits` (rows of `c`) into `out`.
    pub fn softmax_rows(&self, logits: &[f32], c: usize, out: &mut [f32], scratch: &mut LossScratch) -> Result<()> {
        if c == 0 || !logits.len().is_multiple_of(c) {
            return Err(shape_err("softmax_rows", format!("{} values are not rows of {c}", logits.len())));
        }
        check_len("softmax_rows", "out", out.len(), logits.len())?;
        let u = |f: Unary, x: &[f32], o: &mut [f32]| self.unary_unchecked(f, x, o);
        loss::softmax_rows(&u, logits, c, out, scratch);
        Ok(())
    }

    /// Softmax cross-entropy of `logits` (labels.len() × c): writes the
    /// gradient w.r.t. the logits and returns the mean loss.
    pub fn softmax_xent(
        &self,
        logits: &[f32],
        c: usize,
        labels: &[u32],
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        self.labelled_loss("softmax_xent", loss::softmax_xent, logits, c, labels, grad, scratch)
    }

    /// Cosine-embedding loss (target +1) of rows of `a` against the
    /// constant rows of `b` (m × d each); writes dL/da and returns the mean
    /// loss. One implementation for both backends (only √ and L32 sums).
    pub fn cosine_embedding(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        if d == 0 || !a.len().is_multiple_of(d) {
            return Err(shape_err("cosine_embedding", format!("{} values are not rows of {d}", a.len())));
        }
        check_len("cosine_embedding", "b", b.len(), a.len())?;
        check_len("cosine_embedding", "grad", grad.len(), a.len())?;
        Ok(loss::cosine_embedding(a, b, d, grad, scratch))
    }

    /// Binary cross-entropy of the softmax of `logits` (labels.len() × c)
    /// against one-hot targets; writes dL/dlogits and returns the mean loss.
    pub fn softmax_bce(
        &self,
        logits: &[f32],
        c: usize,
        labels: &[u32],
        grad: &mut [f32],
        scratch: &mut LossScratch,
    ) -> Result<f32> {
        self.labelled_loss("softmax_bce", loss::softmax_bce, logits, c, labels, grad, scratch)
    }

    /// One Adam/AdamW step on `w` with gradient `g` and moments `m`, `v`.
    pub fn adam(&self, step: &AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<()> {
        check_len("adam", "grad", g.len(), w.len())?;
        check_len("adam", "m", m.len(), w.len())?;
        check_len("adam", "v", v.len(), w.len())?;
        let s = step.scalars();
        match self.kind {
            CpuKind::Scalar => optim::adam_scalar(&s, w, g, m, v),
            CpuKind::Avx2 => optim::adam_avx2(&s, w, g, m, v),
        }
        Ok(())
    }

    /// One SGD (momentum, Nesterov, L2 decay) step.
    pub fn sgd(&self, step: &SgdStep, w: &mut [f32], g: &[f32], buf: &mut [f32]) -> Result<()> {
        check_len("sgd", "grad", g.len(), w.len())?;
        check_len("sgd", "momentum buffer", buf.len(), w.len())?;
        match self.kind {
            CpuKind::Scalar => optim::sgd_scalar(step, w, g, buf),
            CpuKind::Avx2 => optim::sgd_avx2(step, w, g, buf),
        }
        Ok(())
    }
}
