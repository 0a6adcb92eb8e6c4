//! GEMM, `C = epilogue(A·B)`, in any operand layout (strided views), with an
//! optional fused row goodness `g_i = l32_sumsq(C[i, :])`.
//!
//! **Spec.** For every output (i, j): `acc = +0.0`; for k = 0..K−1 in
//! ascending order, `acc = fma(A[i,k], B[k,j], acc)`; then the epilogue:
//! `None → acc`, `Bias → acc + bias[j]`, `BiasRelu → relu(acc + bias[j])`.
//!
//! **AVX2.** BLIS-style: B is packed in KC×16 column panels, A in 6×KC row
//! panels, and a 6×16 outer-product microkernel keeps 12 accumulators in
//! registers. K is blocked by KC = 256; every block after the first *loads*
//! the C tile as its accumulators, so each output's fma chain continues in
//! ascending k exactly as the spec says. Threads split M into row blocks;
//! a block size never changes an output's arithmetic, so results do not
//! depend on the thread count.

use crate::mat::{MatMut, MatRef};
use crate::numerics::{l32_sumsq, relu};
use rayon::prelude::*;
use std::cell::RefCell;

/// What happens to each accumulator after its last fma.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    None,
    Bias(&'a [f32]),
    BiasRelu(&'a [f32]),
}

impl Epilogue<'_> {
    #[inline(always)]
    pub(crate) fn apply(&self, j: usize, acc: f32) -> f32 {
        match self {
            Epilogue::None => acc,
            Epilogue::Bias(b) => acc + b[j],
            Epilogue::BiasRelu(b) => relu(acc + b[j]),
        }
    }
    pub(crate) fn bias(&self) -> Option<&[f32]> {
        match self {
            Epilogue::None => None,
            Epilogue::Bias(b) | Epilogue::BiasRelu(b) => Some(b),
        }
    }
}

/// The specification: a naive triple loop.
pub(crate) fn gemm_scalar(a: MatRef, b: MatRef, c: &mut MatMut, epi: Epilogue, g: Option<&mut [f32]>) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc = a.at(i, p).mul_add(b.at(p, j), acc);
            }
            c.data[i * c.rs + j] = epi.apply(j, acc);
        }
    }
    if let Some(g) = g {
        for i in 0..m {
            g[i] = l32_sumsq(&c.data[i * c.rs..i * c.rs + n]);
        }
    }
}

pub(crate) const MR: usize = 6;
pub(crate) const NR: usize = 16;
pub(crate) const KC: usize = 256;
const MC_MAX: usize = 72;
const NC: usize = 4096;

thread_local! {
    static APACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BPACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A raw pointer that parallel tasks may share; each task writes a disjoint
/// range (stated at every use).
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: only used to hand disjoint output ranges to rayon tasks.
unsafe impl Send for SharedMut {}
// SAFETY: as above; no two tasks touch the same element.
unsafe impl Sync for SharedMut {}

/// Pack rows `i0..i0+mrows`, columns `k0..k0+kc` of A into MR-row panels:
/// `out[p·MR·kc + k·MR + r] = A[i0 + p·MR + r, k0 + k]`, zero past the end.
fn pack_a(a: &MatRef, i0: usize, mrows: usize, k0: usize, kc: usize, out: &mut [f32]) {
    let panels = mrows.div_ceil(MR);
    for p in 0..panels {
        let panel = &mut out[p * MR * kc..(p + 1) * MR * kc];
        for r in 0..MR {
            let i = p * MR + r;
            if i < mrows {
                let base = (i0 + i) * a.rs + k0 * a.cs;
                if a.cs == 1 {
                    let src = &a.data[base..base + kc];
                    for (k, &v) in src.iter().enumerate() {
                        panel[k * MR + r] = v;
                    }
                } else {
                    for k in 0..kc {
                        panel[k * MR + r] = a.data[base + k * a.cs];
                    }
                }
            } else {
                for k in 0..kc {
                    panel[k * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Pack rows `k0..k0+kc`, columns `j0..j0+nc` of B into NR-column panels:
/// `out[q·NR·kc + k·NR + c] = B[k0 + k, j0 + q·NR + c]`, zero past the end.
fn pack_b(b: &MatRef, k0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
    out[..nc.div_ceil(NR) * NR * kc].par_chunks_mut(NR * kc).enumerate().for_each(|(q, panel)| {
        let jq = j0 + q * NR;
        let w = NR.min(j0 + nc - jq);
        for k in 0..kc {
            let dst = &mut panel[k * NR..(k + 1) * NR];
            let base = (k0 + k) * b.rs + jq * b.cs;
            if b.cs == 1 {
                dst[..w].copy_from_slice(&b.data[base..base + w]);
            } else {
                for (c, d) in dst[..w].iter_mut().enumerate() {
                    *d = b.data[base + c * b.cs];
                }
            }
            dst[w..].fill(0.0);
        }
    });
}

/// The AVX2 GEMM. Preconditions (checked by the caller): shapes agree,
/// `g` (if any) has `m` elements, bias (if any) has `n`.
pub(crate) fn gemm_avx2(a: MatRef, b: MatRef, c: &mut MatMut, epi: Epilogue, g: Option<&mut [f32]>) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    let rs = c.rs;
    let gptr = g.map(|g| SharedMut(g.as_mut_ptr()));
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c.data[i * rs + j] = epi.apply(j, 0.0);
            }
            if let Some(gp) = gptr {
                // SAFETY: i < m and g has m elements; single-threaded here.
                unsafe { *gp.0.add(i) = super::reduce::avx2::sumsq(&c.data[i * rs..i * rs + n]) };
            }
        }
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let mc = (m.div_ceil(2 * threads).div_ceil(MR) * MR).clamp(MR, MC_MAX);
    BPACK.with(|bp| {
        let mut bpack = bp.borrow_mut();
        let need = KC * NC.min(n).div_ceil(NR) * NR;
        if bpack.len() < need {
            bpack.resize(need, 0.0);
        }
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let first = pc == 0;
                let last = pc + kc == k;
                pack_b(&b, pc, kc, jc, nc, &mut bpack);
                let bpack = &bpack[..];
                let goodness = if last && jc + nc == n { gptr } else { None };
                c.data.par_chunks_mut(mc * rs).enumerate().for_each(|(t, cblk)| {
                    let i0 = t * mc;
                    let mrows = mc.min(m - i0);
                    APACK.with(|ap| {
                        let mut apack = ap.borrow_mut();
                        let need = mrows.div_ceil(MR) * MR * kc;
                        if apack.len() < need {
                            apack.resize(need, 0.0);
                        }
                        pack_a(&a, i0, mrows, pc, kc, &mut apack);
                        for jr in (0..nc).step_by(NR) {
                            let cols = NR.min(nc - jr);
                            let bpanel = &bpack[(jr / NR) * NR * kc..(jr / NR + 1) * NR * kc];
                            let tile_epi = if last { epi } else { Epilogue::None };
                            for ir in (0..mrows).step_by(MR) {
                                let rows = MR.min(mrows - ir);
                                let apanel = &apack[(ir / MR) * MR * kc..(ir / MR + 1) * MR * kc];
                                let off = ir * rs + jc + jr;
                                // SAFETY: avx2+fma were detected (Avx2 backend); the
                                // packed panels hold kc·MR and kc·NR floats; the tile
                                // (rows × cols at `off`, stride rs) lies inside cblk.
                                unsafe {
                                    avx2::tile(
                                        kc,
                                        apanel,
                                        bpanel,
                                        &mut cblk[off..],
                                        rs,
                                        rows,
                                        cols,
                                        !first,
                                        tile_epi,
                                        jc + jr,
                                    )
                                };
                            }
                        }
                    });
                    if let Some(gp) = goodness {
                        for r in 0..mrows {
                            // SAFETY: row i0 + r < m belongs to this task only.
                            unsafe {
                                *gp.0.add(i0 + r) = super::reduce::avx2::sumsq(&cblk[r * rs..r * rs + n]);
                            }
                        }
                    }
                });
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Epilogue, MR, NR};
    use std::arch::x86_64::*;

    /// One MR×NR tile: full tiles go straight to C, edge tiles through a
    /// local buffer.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        ldc: usize,
        rows: usize,
        cols: usize,
        load: bool,
        epi: Epilogue,
        j0: usize,
    ) {
        let mut bias = [0.0f32; NR];
        let (has_bias, relu) = match epi {
            Epilogue::None => (false, false),
            Epilogue::Bias(_) => (true, false),
            Epilogue::BiasRelu(_) => (true, true),
        };
        if let Some(bs) = epi.bias() {
            bias[..cols].copy_from_slice(&bs[j0..j0 + cols]);
        }
        if rows == MR && cols == NR {
            kernel(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, load, has_bias, relu, &bias);
        } else {
            let mut buf = [0.0f32; MR * NR];
            if load {
                for r in 0..rows {
                    buf[r * NR..r * NR + cols].copy_from_slice(&c[r * ldc..r * ldc + cols]);
                }
            }
            kernel(kc, a.as_ptr(), b.as_ptr(), buf.as_mut_ptr(), NR, load, has_bias, relu, &bias);
            for r in 0..rows {
                c[r * ldc..r * ldc + cols].copy_from_slice(&buf[r * NR..r * NR + cols]);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        load: bool,
        has_bias: bool,
        relu: bool,
        bias: &[f32; NR],
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        if load {
            for (r, row) in acc.iter_mut().enumerate() {
                row[0] = _mm256_loadu_ps(c.add(r * ldc));
                row[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
            }
        }
        let mut ap = a;
        let mut bp = b;
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        if has_bias {
            let bv = [_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8))];
            let zero = _mm256_setzero_ps();
            for row in acc.iter_mut() {
                for h in 0..2 {
                    let z = _mm256_add_ps(row[h], bv[h]);
                    row[h] = if relu { _mm256_and_ps(z, _mm256_cmp_ps::<_CMP_GT_OQ>(z, zero)) } else { z };
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), row[0]);
            _mm256_storeu_ps(c.add(r * ldc + 8), row[1]);
        }
    }
}
