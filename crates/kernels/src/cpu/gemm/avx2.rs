//! The AVX2+FMA microkernels: the 6×16 outer-product tile, dense and over
//! a compacted A, and the 8×8 transpose that packs A.

use super::{Epi, Epilogue, MR, NR};
use std::arch::x86_64::*;

/// How many rows ahead the B packers ask for their source lines.
const PACK_AHEAD: usize = 8;

/// Copy 16 consecutive floats of `kc` rows (row `k` at `src + k·rs`)
/// into `panel[k·16..]`, asking for the row `PACK_AHEAD` below as it goes
/// (the rows of a weight matrix lie a whole row apart, a stride the
/// hardware prefetcher follows late).
///
/// # Safety
/// avx2 present; `src + k·rs + 0..16` readable for k < kc;
/// `panel.len() >= 16·kc`.
#[target_feature(enable = "avx2")]
pub unsafe fn pack_rows16(src: *const f32, rs: usize, kc: usize, panel: &mut [f32]) {
    debug_assert!(panel.len() >= NR * kc);
    let out = panel.as_mut_ptr();
    for k in 0..kc {
        let row = src.add(k * rs);
        if k + PACK_AHEAD < kc {
            _mm_prefetch::<_MM_HINT_T0>(src.add((k + PACK_AHEAD) * rs) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(src.add((k + PACK_AHEAD) * rs + NR - 1) as *const i8);
        }
        _mm256_storeu_ps(out.add(k * NR), _mm256_loadu_ps(row));
        _mm256_storeu_ps(out.add(k * NR + 8), _mm256_loadu_ps(row.add(8)));
    }
}

/// The FF local gradient as a packed B panel: row k is
/// `h[i, 0..16] · (dldg[i] + dldg[i])` for batch row `i = row(k)` (one
/// rounded multiply per value, as the scalar form), then, with a peer
/// term `(p[0..16], n)` and `i < n`, `+ p[c]`; `acc` gathers each
/// column's sum in k order (the bias gradient). Returns whether every
/// packed value is finite.
///
/// # Safety
/// avx2 present; for k < kc, `row(k) < dldg.len()` and
/// `h + row(k)·rs + 0..16` is readable; `panel.len() >= 16·kc`; a peer
/// slice holds 16 values.
#[target_feature(enable = "avx2")]
pub unsafe fn pack_local_grad16(
    h: *const f32,
    rs: usize,
    kc: usize,
    row: impl Fn(usize) -> usize,
    (dldg, peer): (&[f32], Option<(&[f32], usize)>),
    acc: &mut [f32; NR],
    panel: &mut [f32],
) -> bool {
    debug_assert!(panel.len() >= NR * kc);
    let out = panel.as_mut_ptr();
    let mut a0 = _mm256_loadu_ps(acc.as_ptr());
    let mut a1 = _mm256_loadu_ps(acc.as_ptr().add(8));
    // 0 · z is ±0 for a finite z and NaN for an inf or NaN: OR-ing the
    // products keeps `check` a (signed) zero while every value is
    // finite and a NaN once one is not.
    let (zero, mut check) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for k in 0..kc {
        let i = row(k);
        let g = *dldg.get_unchecked(i);
        if k + PACK_AHEAD < kc {
            let ahead = h.add(row(k + PACK_AHEAD) * rs);
            _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(ahead.add(NR - 1) as *const i8);
        }
        let row = h.add(i * rs);
        let c = _mm256_set1_ps(g + g);
        let mut z0 = _mm256_mul_ps(_mm256_loadu_ps(row), c);
        let mut z1 = _mm256_mul_ps(_mm256_loadu_ps(row.add(8)), c);
        if let Some((p, n)) = peer {
            if i < n {
                debug_assert!(p.len() >= NR);
                z0 = _mm256_add_ps(z0, _mm256_loadu_ps(p.as_ptr()));
                z1 = _mm256_add_ps(z1, _mm256_loadu_ps(p.as_ptr().add(8)));
            }
        }
        _mm256_storeu_ps(out.add(k * NR), z0);
        _mm256_storeu_ps(out.add(k * NR + 8), z1);
        a0 = _mm256_add_ps(a0, z0);
        a1 = _mm256_add_ps(a1, z1);
        check = _mm256_or_ps(check, _mm256_or_ps(_mm256_mul_ps(z0, zero), _mm256_mul_ps(z1, zero)));
    }
    _mm256_storeu_ps(acc.as_mut_ptr(), a0);
    _mm256_storeu_ps(acc.as_mut_ptr().add(8), a1);
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(check, check)) == 0
}

/// The 8 × 8 transpose: lane j of output i is lane i of input j.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// Pack MR rows of a row-major A (row `r` at `a + r·rs`, `kc` values
/// each) k-major into `panel` (`panel[k·MR + r]`), eight k at a time
/// through an 8 × 8 transpose (rows MR..8 zero). Each group's eight
/// 8-wide stores overlap by two lanes, later ones overwriting the
/// previous zeros, so the loop stops while a k remains after the group
/// (the last store's two spare lanes land inside the panel). Returns the
/// first k not packed.
///
/// # Safety
/// avx2 present; `a + r·rs + k` readable for r < MR, k < kc;
/// `panel.len() >= MR·kc`.
#[target_feature(enable = "avx2")]
pub unsafe fn pack_rows(a: *const f32, rs: usize, kc: usize, panel: &mut [f32]) -> usize {
    debug_assert!(panel.len() >= MR * kc);
    let out = panel.as_mut_ptr();
    let zero = _mm256_setzero_ps();
    let mut k0 = 0;
    while k0 + 8 < kc {
        let r = [0, 1, 2, 3, 4, 5].map(|i| _mm256_loadu_ps(a.add(i * rs + k0)));
        // Column k of the 6 × 8 block, rows in lanes 0..6.
        let cols = transpose8([r[0], r[1], r[2], r[3], r[4], r[5], zero, zero]);
        for (k, c) in cols.into_iter().enumerate() {
            _mm256_storeu_ps(out.add((k0 + k) * MR), c);
        }
        k0 += 8;
    }
    k0
}

/// One A panel of a tile: all kc steps (MR floats each), or only the
/// steps whose MR values are not all zero, with each one's B row offset
/// (k·NR) beside it (see [`compact_panel`]).
#[derive(Clone, Copy)]
pub enum APanel<'a> {
    Dense(&'a [f32]),
    Sparse { a: &'a [f32], off: &'a [u32] },
}

/// Leave out of a packed A panel (`dense`, kc steps of MR values) the
/// steps whose MR values are all zero (either sign; a NaN is kept):
/// the kept steps go to `out` in order (MR floats each) and each one's
/// B row offset k·NR to `off` (kc slots). Returns how many were kept.
///
/// # Safety
/// avx2 present; `dense` and `out` hold MR·kc floats, kc = `off.len()`.
#[target_feature(enable = "avx2")]
pub unsafe fn compact_panel(dense: &[f32], out: &mut [f32], off: &mut [u32]) -> usize {
    let kc = off.len();
    debug_assert!(dense.len() >= MR * kc && out.len() >= MR * kc);
    if kc == 0 {
        return 0;
    }
    let (d, o, z) = (dense.as_ptr(), out.as_mut_ptr(), _mm256_setzero_ps());
    let mut t = 0;
    // Eight-wide loads and stores (two lanes of the next step ride
    // along, and a later kept step overwrites them): k ≤ kc − 2 keeps
    // both inside the panel; the last step is copied on its own.
    for k in 0..kc - 1 {
        let v = _mm256_loadu_ps(d.add(k * MR));
        let nonzero = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, z)) & ((1 << MR) - 1);
        _mm256_storeu_ps(o.add(t * MR), v);
        *off.get_unchecked_mut(t) = (k * NR) as u32;
        t += (nonzero != 0) as usize;
    }
    let last = &dense[(kc - 1) * MR..kc * MR];
    if last.iter().any(|&v| v != 0.0) {
        out[t * MR..(t + 1) * MR].copy_from_slice(last);
        off[t] = ((kc - 1) * NR) as u32;
        t += 1;
    }
    t
}

/// One MR×NR tile: full tiles go straight to C, edge tiles through a
/// local buffer. A sink's tile whose A panels had zero steps left out
/// (`exact` given) is known up to the sign of its zeros; where the sink
/// says that sign would matter, `exact` recomputes the tile by the spec.
/// `HI`: where a B row's columns 8..16 start, counted from its column 0
/// (8 in every packed panel; further where the row is read in place and
/// its two halves lie apart, as two image rows of 8 pixels do).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)] // a microkernel's operands, each a register
pub unsafe fn tile<const HI: usize>(
    kc: usize,
    a: APanel,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    (rows, cols): (usize, usize),
    load: bool,
    epi: Epi,
    (i0, j0): (usize, usize),
    exact: Option<&super::ExactTile<'_>>,
) {
    let mut bias = [0.0f32; NR];
    let run = |c: *mut f32, ldc: usize, has_bias: bool, relu: bool, bias: &[f32; NR]| match a {
        APanel::Dense(a) => {
            kernel::<false, HI>(kc, a.as_ptr(), std::ptr::null(), b.as_ptr(), c, ldc, load, has_bias, relu, bias)
        }
        APanel::Sparse { a, off } => {
            kernel::<true, HI>(off.len(), a.as_ptr(), off.as_ptr(), b.as_ptr(), c, ldc, load, has_bias, relu, bias)
        }
    };
    let epi = match epi {
        Epi::Out(e) => e,
        Epi::Sink(sink) => {
            let mut buf = [0.0f32; MR * NR];
            if load {
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(c.add(r * ldc), buf.as_mut_ptr().add(r * NR), cols);
                }
            }
            sink.prefetch(i0, j0, rows);
            run(buf.as_mut_ptr(), NR, false, false, &bias);
            if let Some(exact) = exact {
                if sink.zero_sign_matters(i0, j0, rows, &buf) {
                    exact(i0, j0, rows, cols, &mut buf);
                }
            }
            sink.take(i0, j0, rows, cols, &buf);
            return;
        }
    };
    let (has_bias, relu) = match epi {
        Epilogue::None | Epilogue::Accumulate => (false, false),
        Epilogue::Bias(_) => (true, false),
        Epilogue::BiasRelu(_) => (true, true),
    };
    if let Some(bs) = epi.bias() {
        bias[..cols].copy_from_slice(&bs[j0..j0 + cols]);
    }
    if rows == MR && cols == NR {
        run(c, ldc, has_bias, relu, &bias);
    } else {
        let mut buf = [0.0f32; MR * NR];
        if load {
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(c.add(r * ldc), buf.as_mut_ptr().add(r * NR), cols);
            }
        }
        run(buf.as_mut_ptr(), NR, has_bias, relu, &bias);
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(buf.as_ptr().add(r * NR), c.add(r * ldc), cols);
        }
    }
}

/// A 6×16 tile's accumulators: C's values (`load`, rows at stride `ldc`)
/// or +0.0.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_start(c: *const f32, ldc: usize, load: bool) -> [[__m256; 2]; MR] {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    if load {
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = _mm256_loadu_ps(c.add(r * ldc));
            row[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
        }
    }
    acc
}

/// Store a 6×16 tile's accumulators into C (rows at stride `ldc`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_store(acc: &[[__m256; 2]; MR], c: *mut f32, ldc: usize) {
    for (r, row) in acc.iter().enumerate() {
        _mm256_storeu_ps(c.add(r * ldc), row[0]);
        _mm256_storeu_ps(c.add(r * ldc + 8), row[1]);
    }
}

/// The 6×16 microkernel over `steps` k steps. Dense (`SPARSE` false):
/// step t reads A at `a + t·MR` and B at `b + t·NR`. Sparse: A the same
/// way (the compacted panel), B at `b + off[t]`. A B row's columns 8..16
/// are the 8 floats `HI` past its column 0.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)] // a microkernel's operands, each a register
unsafe fn kernel<const SPARSE: bool, const HI: usize>(
    steps: usize,
    a: *const f32,
    off: *const u32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load: bool,
    has_bias: bool,
    relu: bool,
    bias: &[f32; NR],
) {
    if super::avx512::wide() {
        // SAFETY: AVX-512F detected; the same operands and contract.
        return super::avx512::kernel::<SPARSE, HI>(steps, a, off, b, c, ldc, load, has_bias, relu, bias);
    }
    let mut acc = tile_start(c, ldc, load);
    let mut ap = a;
    let mut bp = b;
    let mut op = off;
    // One k step: 2 B vectors, 6 broadcasts of A, 12 fmas (k ascending).
    macro_rules! step {
        ($u:expr) => {{
            let brow = if SPARSE { b.add(*op.add($u) as usize) } else { bp.add($u * NR) };
            let b0 = _mm256_loadu_ps(brow);
            let b1 = _mm256_loadu_ps(brow.add(HI));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add($u * MR + r));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }};
    }
    let mut left = steps;
    while left >= 4 {
        step!(0);
        step!(1);
        step!(2);
        step!(3);
        ap = ap.add(4 * MR);
        if SPARSE {
            op = op.add(4);
        } else {
            bp = bp.add(4 * NR);
        }
        left -= 4;
    }
    while left > 0 {
        step!(0);
        ap = ap.add(MR);
        if SPARSE {
            op = op.add(1);
        } else {
            bp = bp.add(NR);
        }
        left -= 1;
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
    tile_store(&acc, c, ldc);
}

/// The 6×16 microkernel over packed panels (`kc` steps: A at `a + t·MR`,
/// B at `b + t·NR`), each output's chain from +0.0 in k order, its tile
/// then added into place: row r's columns 0..8 to the 8 floats at
/// `dst[r]` and 8..16 to the 8 at `dst[r] + HI` (`d = d + v`, one
/// rounding each).
///
/// # Safety
/// avx2 and fma present; A holds MR·kc floats and B NR·kc; `dst[r] +
/// 0..8` and `dst[r] + HI..HI + 8` readable and writable for every r (the
/// rows are added one after another, so rows whose sums are not wanted
/// may share a destination).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn kernel_add_into<const HI: usize>(kc: usize, a: *const f32, b: *const f32, dst: &[*mut f32; MR]) {
    let mut tile = [0.0f32; MR * NR];
    kernel::<false, { NR / 2 }>(kc, a, std::ptr::null(), b, tile.as_mut_ptr(), NR, false, false, false, &[0.0; NR]);
    for (r, &d) in dst.iter().enumerate() {
        let t = tile.as_ptr().add(r * NR);
        _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(t)));
        _mm256_storeu_ps(d.add(HI), _mm256_add_ps(_mm256_loadu_ps(d.add(HI)), _mm256_loadu_ps(t.add(8))));
    }
}

/// The 6×16 microkernel with A's rows read in place: over the segments
/// `(start, len)` in order, step x of a segment reads row r of A at
/// `src[start + aoff[r] + x]`, and every step reads the next 16 floats of
/// B (a packed panel, `b + t·NR` at step t of all the segments). The tile
/// of C (rows at stride `ldc`) starts from its values (`load`) or +0.0
/// and is stored back; each output's chain runs over the steps in order,
/// `acc = fma(a, b, acc)`, as the GEMM spec says.
///
/// # Safety
/// avx2 and fma present; `src + start + aoff[r] + x` readable for every
/// segment, r < MR and x < len; B holds NR floats per step of all the
/// segments; C's MR rows × NR columns writable.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn kernel_rows_in_place(
    segs: &[(u32, u32)],
    src: *const f32,
    aoff: &[usize; MR],
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    if super::avx512::wide() {
        // SAFETY: AVX-512F detected; the same operands and contract.
        return super::avx512::kernel_rows_in_place(segs, src, aoff, b, c, ldc, load);
    }
    let mut acc = tile_start(c, ldc, load);
    let mut bp = b;
    for &(start, len) in segs {
        let p = src.add(start as usize);
        let rows = aoff.map(|o| p.add(o));
        // One k step per iteration: 2 B vectors, 6 broadcasts of A, 12
        // fmas (unrolled, the compiler interleaves the steps and spills).
        for x in 0..len as usize {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*rows[r].add(x));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
            bp = bp.add(NR);
        }
    }
    tile_store(&acc, c, ldc);
}

/// Pack rows `rows` of a row-major matrix (row r at `src + r·rs`; rows
/// past `nrows` read as zero) over columns `k0..k0+kc` transposed into a
/// 16-wide panel: `panel[k·NR + j] = src[j·rs + k0 + k]`, eight columns
/// at a time through 8 × 8 transposes.
///
/// # Safety
/// avx2 present; `src + r·rs + k0 + k` readable for r < nrows.min(NR),
/// k < kc; `panel.len() >= NR·kc`.
#[target_feature(enable = "avx2")]
pub unsafe fn pack_cols16(src: *const f32, rs: usize, nrows: usize, k0: usize, kc: usize, panel: &mut [f32]) {
    debug_assert!(panel.len() >= NR * kc);
    let out = panel.as_mut_ptr();
    let zero = _mm256_setzero_ps();
    let nrows = nrows.min(NR);
    let mut k = 0;
    while k + 8 <= kc {
        for h in 0..2 {
            let r = std::array::from_fn(|i| {
                let j = h * 8 + i;
                if j < nrows {
                    _mm256_loadu_ps(src.add(j * rs + k0 + k))
                } else {
                    zero
                }
            });
            for (i, v) in transpose8(r).into_iter().enumerate() {
                _mm256_storeu_ps(out.add((k + i) * NR + h * 8), v);
            }
        }
        k += 8;
    }
    for k in k..kc {
        for j in 0..NR {
            *out.add(k * NR + j) = if j < nrows { *src.add(j * rs + k0 + k) } else { 0.0 };
        }
    }
}
