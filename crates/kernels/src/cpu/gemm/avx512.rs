//! The 6×16 microkernels on 512-bit registers, for CPUs with AVX-512F.
//!
//! The same tiles, panels and k order as the AVX2 microkernels in
//! `avx2.rs`, with a tile row held in one 16-wide register instead of two
//! 8-wide ones: each output's chain is still `acc = fma(a, b, acc)` over
//! the k steps in order from the same start, one rounding per step, so the
//! bits are the AVX2 kernels' (and the spec's). Where a core runs 512-bit
//! fmas at full width (AMD Zen 5, Intel server cores), a k step takes six
//! instructions instead of twelve.
//!
//! [`wide`] says whether they run: where the CPU has AVX-512F, unless
//! `FFWD_CPU_WIDTH=256` is set (for comparison) or the calling thread asked
//! for the AVX2 kernels ([`set_narrow_on_this_thread`]; the tests run every
//! op both ways). The AVX2 kernels call them.

use super::{MR, NR};
use std::arch::x86_64::*;
use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// This thread keeps to the AVX2 kernels.
    static NARROW: Cell<bool> = const { Cell::new(false) };
}

/// Whether the CPU has AVX-512F, AVX2 and FMA and `FFWD_CPU_WIDTH` is not
/// `256` (decided once).
pub fn available() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("FFWD_CPU_WIDTH").map_or(true, |v| v.trim() != "256")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    })
}

/// Whether the 512-bit microkernels run on this thread.
#[inline]
pub fn wide() -> bool {
    available() && !NARROW.with(Cell::get)
}

/// Keep this thread to the AVX2 kernels (`true`) or let it take the
/// 512-bit ones where available (`false`). The bits do not depend on it.
pub fn set_narrow_on_this_thread(narrow: bool) {
    NARROW.with(|n| n.set(narrow));
}

/// Row r of a B step: columns 0..8 at `p`, 8..16 at `p + HI`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_row<const HI: usize>(p: *const f32) -> __m512 {
    if HI == 8 {
        _mm512_loadu_ps(p)
    } else {
        let lo = _mm512_castps256_ps512(_mm256_loadu_ps(p));
        let hi = _mm256_castps_pd(_mm256_loadu_ps(p.add(HI)));
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), hi))
    }
}

/// A tile's accumulators: C's values (`load`, rows at stride `ldc`) or +0.0.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_start(c: *const f32, ldc: usize, load: bool) -> [__m512; MR] {
    let mut acc = [_mm512_setzero_ps(); MR];
    if load {
        for (r, row) in acc.iter_mut().enumerate() {
            *row = _mm512_loadu_ps(c.add(r * ldc));
        }
    }
    acc
}

/// The AVX2 `kernel`'s twin (same operands, same chains): dense steps read
/// A at `a + t·MR` and B at `b + t·NR`; sparse ones B at `b + off[t]`.
///
/// # Safety
/// As the AVX2 kernel's, and AVX-512F present ([`wide`]).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)] // a microkernel's operands, each a register
pub unsafe fn kernel<const SPARSE: bool, const HI: usize>(
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
    let mut acc = tile_start(c, ldc, load);
    let (mut ap, mut bp, mut op) = (a, b, off);
    // One k step: 1 B vector, 6 broadcasts of A, 6 fmas (k ascending).
    macro_rules! step {
        ($u:expr) => {{
            let brow = if SPARSE { b.add(*op.add($u) as usize) } else { bp.add($u * NR) };
            let bv = load_row::<HI>(brow);
            for (r, row) in acc.iter_mut().enumerate() {
                *row = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add($u * MR + r)), bv, *row);
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
        let bv = _mm512_loadu_ps(bias.as_ptr());
        let zero = _mm512_setzero_ps();
        for row in acc.iter_mut() {
            let z = _mm512_add_ps(*row, bv);
            // relu as the AVX2 kernel has it: z where z > 0, else +0 (NaN too)
            *row = if relu { _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, zero), z) } else { z };
        }
    }
    for (r, row) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), *row);
    }
}

/// The AVX2 `kernel_rows_in_place`'s twin: A's rows read in place over the
/// segments, B packed.
///
/// # Safety
/// As the AVX2 kernel's, and AVX-512F present ([`wide`]).
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn kernel_rows_in_place(
    segs: &[(u32, u32)],
    src: *const f32,
    aoff: &[usize; MR],
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let mut acc = tile_start(c, ldc, load);
    let mut bp = b;
    for &(start, len) in segs {
        let p = src.add(start as usize);
        let rows = aoff.map(|o| p.add(o));
        for x in 0..len as usize {
            let bv = _mm512_loadu_ps(bp);
            for (r, row) in acc.iter_mut().enumerate() {
                *row = _mm512_fmadd_ps(_mm512_set1_ps(*rows[r].add(x)), bv, *row);
            }
            bp = bp.add(NR);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), *row);
    }
}

/// Two full 6×16 tiles that share their B steps (12 accumulators, enough to
/// keep both 512-bit FMA pipes busy): rows 0..6 from the A panel at `a[0]`,
/// rows 6..12 from the one at `a[1]` (each `a + t·MR` at step t), B's step
/// t at `b + off[t]` (`SPARSE`) or `b + t·NR`, each tile into C at `c[i]`
/// (rows at stride `ldc`), from its values (`load`) or +0.0. Each output's
/// chain is the one [`kernel`] runs for its tile.
///
/// # Safety
/// AVX-512F present ([`wide`]); each A panel holds MR floats per step, B's
/// rows 16 floats (columns 8..16 at `HI`); both tiles of C writable.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn kernel_rows12<const SPARSE: bool, const HI: usize>(
    steps: usize,
    a: [*const f32; 2],
    off: *const u32,
    b: *const f32,
    c: [*mut f32; 2],
    ldc: usize,
    load: bool,
) {
    let (mut t0, mut t1) = (tile_start(c[0], ldc, load), tile_start(c[1], ldc, load));
    for t in 0..steps {
        let brow = if SPARSE { b.add(*off.add(t) as usize) } else { b.add(t * NR) };
        let bv = load_row::<HI>(brow);
        let (p0, p1) = (a[0].add(t * MR), a[1].add(t * MR));
        for r in 0..MR {
            t0[r] = _mm512_fmadd_ps(_mm512_set1_ps(*p0.add(r)), bv, t0[r]);
            t1[r] = _mm512_fmadd_ps(_mm512_set1_ps(*p1.add(r)), bv, t1[r]);
        }
    }
    for r in 0..MR {
        _mm512_storeu_ps(c[0].add(r * ldc), t0[r]);
        _mm512_storeu_ps(c[1].add(r * ldc), t1[r]);
    }
}

/// [`kernel_rows_in_place`] for two tiles of six rows each that share the
/// packed B panel: rows r of tile i read A at `src + start + aoff[i][r] + x`.
///
/// # Safety
/// As [`kernel_rows_in_place`]'s, for both tiles.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn kernel_rows_in_place12(
    segs: &[(u32, u32)],
    src: *const f32,
    aoff: [&[usize; MR]; 2],
    b: *const f32,
    c: [*mut f32; 2],
    ldc: usize,
    load: bool,
) {
    let (mut t0, mut t1) = (tile_start(c[0], ldc, load), tile_start(c[1], ldc, load));
    let mut bp = b;
    for &(start, len) in segs {
        let p = src.add(start as usize);
        let (r0, r1) = (aoff[0].map(|o| p.add(o)), aoff[1].map(|o| p.add(o)));
        for x in 0..len as usize {
            let bv = _mm512_loadu_ps(bp);
            for r in 0..MR {
                t0[r] = _mm512_fmadd_ps(_mm512_set1_ps(*r0[r].add(x)), bv, t0[r]);
                t1[r] = _mm512_fmadd_ps(_mm512_set1_ps(*r1[r].add(x)), bv, t1[r]);
            }
            bp = bp.add(NR);
        }
    }
    for r in 0..MR {
        _mm512_storeu_ps(c[0].add(r * ldc), t0[r]);
        _mm512_storeu_ps(c[1].add(r * ldc), t1[r]);
    }
}

/// Two `kernel_add_into`s that share the A panel (12 accumulators): tile i
/// is `A · B_i` over `kc` packed steps (B_i at `b[i] + t·NR`), each output
/// from +0.0 in k order, and is then added into place, tile 0 before tile
/// 1, row by row: row r's columns 0..8 to the 8 floats at `dst[i][r]` and
/// 8..16 to the 8 at `dst[i][r] + hi[i]` (`d = d + v`, one rounding each).
/// The same sums in the same order as the two calls one after the other.
///
/// # Safety
/// AVX-512F present ([`wide`]); A holds MR·kc floats and each B NR·kc;
/// `dst[i][r] + 0..8` and `+ hi[i]..hi[i] + 8` readable and writable.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn kernel_add_into_pair(
    kc: usize,
    a: *const f32,
    b: [*const f32; 2],
    dst: [&[*mut f32; MR]; 2],
    hi: [usize; 2],
) {
    let (mut t0, mut t1) = ([_mm512_setzero_ps(); MR], [_mm512_setzero_ps(); MR]);
    for t in 0..kc {
        let (b0, b1) = (_mm512_loadu_ps(b[0].add(t * NR)), _mm512_loadu_ps(b[1].add(t * NR)));
        let ap = a.add(t * MR);
        for r in 0..MR {
            let av = _mm512_set1_ps(*ap.add(r));
            t0[r] = _mm512_fmadd_ps(av, b0, t0[r]);
            t1[r] = _mm512_fmadd_ps(av, b1, t1[r]);
        }
    }
    for (i, tile) in [t0, t1].iter().enumerate() {
        for (r, &v) in tile.iter().enumerate() {
            let d = dst[i][r];
            if hi[i] == 8 {
                _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), v));
            } else {
                let lo = _mm512_castps512_ps256(v);
                let up = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), lo));
                let dh = d.add(hi[i]);
                _mm256_storeu_ps(dh, _mm256_add_ps(_mm256_loadu_ps(dh), up));
            }
        }
    }
}

/// Two full 6×16 tiles that share their A panel (12 accumulators, 8 loads
/// a step): rows from the A panel at `a` (`a + t·MR` at step t), tile i's
/// B step t at `b[i] + off[t]` (columns 8..16 at `HI`), into C at `c[i]`
/// (rows at stride `ldc`), from its values (`load`) or +0.0. Each output's
/// chain is the one [`kernel`] runs for its tile.
///
/// # Safety
/// AVX-512F present ([`wide`]); A holds MR floats per step; both B's rows
/// readable as above; both tiles of C writable.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn kernel_cols32<const HI0: usize, const HI1: usize>(
    steps: usize,
    a: *const f32,
    off: *const u32,
    b: [*const f32; 2],
    c: [*mut f32; 2],
    ldc: usize,
    load: bool,
) {
    let (mut t0, mut t1) = (tile_start(c[0], ldc, load), tile_start(c[1], ldc, load));
    for t in 0..steps {
        let o = *off.add(t) as usize;
        let (b0, b1) = (load_row::<HI0>(b[0].add(o)), load_row::<HI1>(b[1].add(o)));
        let ap = a.add(t * MR);
        for r in 0..MR {
            let av = _mm512_set1_ps(*ap.add(r));
            t0[r] = _mm512_fmadd_ps(av, b0, t0[r]);
            t1[r] = _mm512_fmadd_ps(av, b1, t1[r]);
        }
    }
    for r in 0..MR {
        _mm512_storeu_ps(c[0].add(r * ldc), t0[r]);
        _mm512_storeu_ps(c[1].add(r * ldc), t1[r]);
    }
}

/// [`kernel_rows_in_place`] for two tiles that share A's six rows read in
/// place (12 accumulators, 8 loads a step): tile i reads its packed B
/// panel at `b[i]` (16 floats a step) and goes to C at `c[i]`.
///
/// # Safety
/// As [`kernel_rows_in_place`]'s, for both tiles.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn kernel_rows_in_place_cols32(
    segs: &[(u32, u32)],
    src: *const f32,
    aoff: &[usize; MR],
    b: [*const f32; 2],
    c: [*mut f32; 2],
    ldc: usize,
    load: bool,
) {
    let (mut t0, mut t1) = (tile_start(c[0], ldc, load), tile_start(c[1], ldc, load));
    let (mut b0, mut b1) = (b[0], b[1]);
    for &(start, len) in segs {
        let p = src.add(start as usize);
        let rows = aoff.map(|o| p.add(o));
        for x in 0..len as usize {
            let (v0, v1) = (_mm512_loadu_ps(b0), _mm512_loadu_ps(b1));
            for r in 0..MR {
                let av = _mm512_set1_ps(*rows[r].add(x));
                t0[r] = _mm512_fmadd_ps(av, v0, t0[r]);
                t1[r] = _mm512_fmadd_ps(av, v1, t1[r]);
            }
            b0 = b0.add(NR);
            b1 = b1.add(NR);
        }
    }
    for r in 0..MR {
        _mm512_storeu_ps(c[0].add(r * ldc), t0[r]);
        _mm512_storeu_ps(c[1].add(r * ldc), t1[r]);
    }
}
