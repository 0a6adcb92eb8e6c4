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
