//! The AVX2 dW where dY is mostly zeros: the blocks that end in a 2 × 2 max
//! pool, whose gradient holds a value at one pixel of each window at most
//! (the one the pool chose) and fewer after the ReLU.
//!
//! **The chains.** The spec's dW\[co, t\] is one fma chain over the pixels p
//! of the batch in order, `acc = fma(dY[co, p], col[t, p], acc)` from +0.0.
//! Here each output channel's chains take only the pixels where dY\[co, p\]
//! ≠ 0, in the same order. The bits are the spec's where every col value is
//! finite and every nonzero factor (of col and of dY) is at least 2⁻⁵⁰ in
//! magnitude and finite:
//!
//! - a step left out is `fma(±0, c, acc)` with c finite: `acc + (±0)`. By
//!   induction the two chains are equal after every step or both hold a
//!   zero (a step kept adds the same product to equal values, or to two
//!   zeros, where a nonzero exact sum rounds the same whatever the zero's
//!   sign); so they can differ only in the sign of a zero result;
//! - a −0 never arises. A kept product of two nonzero factors of at least
//!   2⁻⁵⁰ is a multiple of 2⁻¹⁴⁶, every float is a multiple of 2⁻¹⁴⁹, so an
//!   exact sum that is not zero is at least 2⁻¹⁴⁹ in magnitude and does not
//!   round to zero; an exact zero sum rounds to +0; and adding a zero
//!   product to +0 gives +0. Both chains start at +0.0, so both end at +0
//!   where they end at a zero.
//!
//! Where a value breaks the condition (an inf or NaN in x, a nonzero factor
//! under 2⁻⁵⁰ or not finite), [`dw_sparse`] says so and the caller runs the
//! dense dW instead.
//!
//! **Layout.** The images of a group are copied channel-last inside a zero
//! border (`[b][y+1][x+1][c]`), where the taps (kx, ci) of one kernel row
//! at pixel p are one run of 3·C floats. An output channel keeps its
//! accumulators as three runs (ky) of ⌈3·C/8⌉ vectors (⌈3·C/16⌉ on
//! 512-bit registers, where the CPU has AVX-512F), and each nonzero
//! dY\[co, p\] adds dY·(the patch at p) to them: one fma per vector, the
//! patch read in place. Lanes past 3·C read the next pixel and are never
//! stored into dW. Threads take output channels (each chain on one
//! thread); groups of images follow each other, so the chains run in pixel
//! order through the batch.

use super::Cnhw;
use crate::cpu::{gemm, pages};
use crate::error::Result;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// The largest share of nonzero values in dY (over the first two images)
/// for which the sparse dW is taken. A pooled block's dY is at most a
/// quarter nonzero; a ReLU block's is about half (the dense kernels win
/// there).
const MAX_DENSITY: f64 = 0.3;

/// Floats of one group's channel-last bordered images, about 512 KB (in L2
/// beside the lists).
const GROUP_FLOATS: usize = 1 << 17;

/// 2⁻⁵⁰: the smallest magnitude of a nonzero factor (module docs).
const TINY: f32 = f32::from_bits((127 - 50) << 23);

thread_local! {
    /// One output channel's nonzero pixels in a group: their patches'
    /// offsets in the group buffer and their dY values.
    static LIST: std::cell::RefCell<(Vec<u32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether dY looks sparse enough for [`dw_sparse`]: the share of nonzero
/// values in the first two images' planes of every channel.
pub(super) fn looks_sparse(dy: &[f32], g: Cnhw, cout: usize) -> bool {
    let (hw, ns) = (g.plane(), g.n.min(2));
    let total = cout * ns * hw;
    let nz: usize = (0..cout).map(|co| dy[co * g.row()..][..ns * hw].iter().filter(|v| **v != 0.0).count()).sum();
    total > 0 && (nz as f64) <= MAX_DENSITY * total as f64
}

/// A value of x the sparse chains may skip against: finite, and zero or at
/// least 2⁻⁵⁰ in magnitude.
fn plain(v: f32) -> bool {
    v.is_finite() && (v == 0.0 || v.abs() >= TINY)
}

/// dW (Cout × Cin·9, k = ci·9 + ky·3 + kx) by the chains over dY's nonzero
/// pixels. `Ok(false)` where a value breaks the module's condition: `dw`
/// is then unspecified and the caller runs the dense dW.
pub(super) fn dw_sparse(x: &[f32], g: Cnhw, dy: &[f32], cout: usize, dw: &mut [f32]) -> Result<bool> {
    let (c, h, w, hw, row) = (g.c, g.h, g.w, g.plane(), g.row());
    let pw = w + 2;
    // Vector width: 16 on 512-bit registers, else 8; a run's accumulators
    // are lv vectors of it.
    let wide = crate::cpu::gemm::wide();
    let vw = if wide { 16 } else { 8 };
    let lv = (3 * c).div_ceil(vw);
    let accw = 3 * lv * vw;
    let plane = (h + 2) * pw * c;
    let nb_max = (GROUP_FLOATS / plane).clamp(1, g.n.max(1));
    if nb_max * plane + 16 > u32::MAX as usize {
        return Ok(false);
    }
    let mut acc = pages::zeroed(cout * accw)?;
    // 16 floats past the last image: the last vector of a run may read up
    // to 15 floats past its patch.
    let mut buf = pages::zeroed(nb_max * plane + 16)?;
    let offs: Vec<u32> =
        (0..nb_max * hw).map(|i| ((i / hw) * plane + ((i % hw) / w * pw + i % w) * c) as u32).collect();
    for b0 in (0..g.n).step_by(nb_max) {
        let nb = nb_max.min(g.n - b0);
        let ok = buf[..nb * plane]
            .par_chunks_mut(plane)
            .enumerate()
            .map(|(bi, dst)| channel_last(x, g, b0 + bi, dst))
            .reduce(|| true, |a, b| a && b);
        if !ok {
            return Ok(false);
        }
        let (buf, offs) = (&buf[..], &offs[..nb * hw]);
        // One task per output channel: its dY row through the group streams
        // into the list, then its chains take the listed pixels.
        let ok = acc
            .par_chunks_mut(accw)
            .enumerate()
            .map(|(co, a)| {
                LIST.with(|l| {
                    let (lo, lval) = &mut *l.borrow_mut();
                    pages::grow(lo, nb * hw + 8)?;
                    pages::grow(lval, nb * hw + 8)?;
                    let d = &dy[co * row + b0 * hw..][..nb * hw];
                    // SAFETY: avx2 detected (the backend is AVX2); the lists
                    // hold nb·HW + 8 entries, d and offs nb·HW.
                    let Some(n) = (unsafe { nonzeros(d, offs, lo, lval) }) else { return Ok(false) };
                    // SAFETY: avx2 and fma detected; every offset is a
                    // pixel's patch origin in buf (b·plane + (y·pw + x)·C,
                    // y < H, x < W), whose three runs of 3·C floats end
                    // inside image b's bordered plane and whose vectors read
                    // at most 15 floats past a run (16 spare floats after
                    // the last image); `a` holds 3·lv·vw floats; the 512-bit
                    // pass runs only where AVX-512F was detected (`wide`).
                    unsafe {
                        if wide {
                            accumulate512(&lo[..n], &lval[..n], buf.as_ptr(), pw * c, lv, a)
                        } else {
                            accumulate(&lo[..n], &lval[..n], buf.as_ptr(), pw * c, lv, a)
                        }
                    };
                    Ok(true)
                })
            })
            .try_reduce(|| true, |a, b| Ok(a && b))?;
        if !ok {
            return Ok(false);
        }
    }
    for (co, d) in dw.chunks_exact_mut(c * 9).enumerate() {
        let a = &acc[co * accw..][..accw];
        for ci in 0..c {
            for ky in 0..3 {
                for kx in 0..3 {
                    d[ci * 9 + ky * 3 + kx] = a[ky * lv * vw + kx * c + ci];
                }
            }
        }
    }
    Ok(true)
}

/// Image `b` of x, channel-last inside the (already zero) border of `dst`;
/// whether every value is [`plain`]. Eight channels by eight pixels at a
/// time through an 8 × 8 transpose where both fit, one value at a time at
/// the edges.
fn channel_last(x: &[f32], g: Cnhw, b: usize, dst: &mut [f32]) -> bool {
    let (c, w, hw) = (g.c, g.w, g.plane());
    let pw = w + 2;
    let (c8, w8) = (c / 8 * 8, w / 8 * 8);
    let mut ok = true;
    if c8 > 0 && w8 > 0 {
        // SAFETY: avx2 detected (the backend is AVX2); channels ci..ci+8 <
        // c of image b read pixels x0..x0+8 ≤ w of row y (inside their
        // plane), and each transposed vector is written at pixel x0+j's
        // channels ci..ci+8 of bordered row y+1 (inside dst).
        ok &= unsafe { channel_last8(x, g, b, dst, c8, w8) };
    }
    for ci in 0..c {
        let src = &x[(ci * g.n + b) * hw..][..hw];
        for (y, r) in src.chunks_exact(w).enumerate() {
            let o = ((y + 1) * pw + 1) * c + ci;
            let x0 = if ci < c8 { w8 } else { 0 };
            for (xi, &v) in r.iter().enumerate().skip(x0) {
                ok &= plain(v);
                dst[o + xi * c] = v;
            }
        }
    }
    ok
}

/// [`channel_last`]'s blocks of eight channels by eight pixels (channels
/// below `c8`, pixels below `w8` of each row).
///
/// # Safety
/// AVX2 is available; `c8 ≤ g.c` and `w8 ≤ g.w` are multiples of 8; `dst`
/// holds image b's bordered channel-last plane.
#[target_feature(enable = "avx2")]
unsafe fn channel_last8(x: &[f32], g: Cnhw, b: usize, dst: &mut [f32], c8: usize, w8: usize) -> bool {
    let (c, h, w, hw) = (g.c, g.h, g.w, g.plane());
    let pw = w + 2;
    let (tiny, inf) = (_mm256_set1_ps(TINY), _mm256_set1_ps(f32::INFINITY));
    let (abs, zero) = (_mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)), _mm256_setzero_ps());
    let ones = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let mut bad = _mm256_setzero_ps();
    for ci in (0..c8).step_by(8) {
        for y in 0..h {
            for x0 in (0..w8).step_by(8) {
                let r: [__m256; 8] =
                    std::array::from_fn(|j| _mm256_loadu_ps(x.as_ptr().add(((ci + j) * g.n + b) * hw + y * w + x0)));
                for v in r {
                    let a = _mm256_and_ps(v, abs);
                    // plain: below inf (not inf, not NaN), and zero or at least 2⁻⁵⁰
                    let sized =
                        _mm256_or_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(a, tiny), _mm256_cmp_ps::<_CMP_EQ_OQ>(a, zero));
                    let plain = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(a, inf), sized);
                    bad = _mm256_or_ps(bad, _mm256_andnot_ps(plain, ones));
                }
                let t = gemm::transpose8(r);
                for (j, v) in t.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.as_mut_ptr().add(((y + 1) * pw + 1 + x0 + j) * c + ci), v);
                }
            }
        }
    }
    _mm256_movemask_ps(bad) == 0
}

/// For each 8-bit mask, the lanes whose bit is set, in order (then zeros):
/// the permutation that packs a vector's chosen lanes to its front.
static LEFT_PACK: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut j, mut k) = (0, 0);
        while j < 8 {
            if m & (1 << j) != 0 {
                t[m][k] = j as u32;
                k += 1;
            }
            j += 1;
        }
        m += 1;
    }
    t
};

/// The nonzero values of `d` and their pixels' offsets (`offs`) into `lo`
/// and `lval`, in pixel order, eight values a step without branches (each
/// step stores a packed vector and moves on by its count); `None` where a
/// nonzero value is not finite or under 2⁻⁵⁰ in magnitude.
///
/// # Safety
/// AVX2 is available; `lo` and `lval` hold at least `d.len() + 8` entries
/// and `offs` as many as `d`.
#[target_feature(enable = "avx2")]
unsafe fn nonzeros(d: &[f32], offs: &[u32], lo: &mut [u32], lval: &mut [f32]) -> Option<usize> {
    let (zero, tiny, inf) = (_mm256_setzero_ps(), _mm256_set1_ps(TINY), _mm256_set1_ps(f32::INFINITY));
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (mut n, mut bad, mut i) = (0, 0u32, 0);
    while i + 8 <= d.len() {
        let v = _mm256_loadu_ps(d.as_ptr().add(i));
        // NaN is "not equal" (unordered), and fails both bounds below.
        let nz = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as u32;
        let a = _mm256_and_ps(v, abs);
        let okm = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(a, tiny), _mm256_cmp_ps::<_CMP_LT_OQ>(a, inf));
        bad |= nz & !(_mm256_movemask_ps(okm) as u32);
        let ix = _mm256_loadu_si256(LEFT_PACK[nz as usize].as_ptr().cast());
        let o = _mm256_loadu_si256(offs.as_ptr().add(i).cast());
        _mm256_storeu_ps(lval.as_mut_ptr().add(n), _mm256_permutevar8x32_ps(v, ix));
        _mm256_storeu_si256(lo.as_mut_ptr().add(n).cast(), _mm256_permutevar8x32_epi32(o, ix));
        n += nz.count_ones() as usize;
        i += 8;
    }
    if bad != 0 {
        return None;
    }
    for j in i..d.len() {
        let v = d[j];
        if v != 0.0 {
            if !(v.is_finite() && v.abs() >= TINY) {
                return None;
            }
            lo[n] = offs[j];
            lval[n] = v;
            n += 1;
        }
    }
    Some(n)
}

/// The accumulate step at one vector width: `$acc` (one output channel's
/// accumulators, `a`: three runs of `lv` vectors of `$w` floats, through
/// the listed pixels) and its pass `$pass` (`R` runs of `LV` vectors:
/// `acc[r][v] = fma(dY, patch[o + r·rs + w·v], acc[r][v])`), the runs taken
/// whole where `lv` is one of `$whole`, else one kernel row at a time in
/// chunks of the sizes `$chunk` (largest first, the last 1).
macro_rules! accumulate_at_width {
    ($acc:ident, $pass:ident, $feat:literal, $v:ty, $w:literal, $zero:ident, $load:ident, $store:ident,
     $set1:ident, $fma:ident, [$($whole:literal),*], [$($chunk:literal),*]) => {
        /// One output channel's accumulators through the listed pixels
        /// (see [`accumulate_at_width`]).
        ///
        /// # Safety
        /// The target features are available; for every offset o,
        /// `base + o + ky·rs + w·v + w − 1` (ky < 3, v < lv) lies inside the
        /// buffer; `a` holds 3·lv·w floats.
        #[target_feature(enable = $feat)]
        unsafe fn $acc(lo: &[u32], lval: &[f32], base: *const f32, rs: usize, lv: usize, a: &mut [f32]) {
            let acc = a.as_mut_ptr();
            let rl = lv * $w;
            match lv {
                $($whole => $pass::<3, $whole>(lo, lval, base, rs, acc, rl),)*
                _ => {
                    for ky in 0..3 {
                        let mut v0 = 0;
                        while v0 < lv {
                            let (b, o) = (base.add(ky * rs + $w * v0), acc.add(ky * rl + $w * v0));
                            let left = lv - v0;
                            $(if left >= $chunk {
                                $pass::<1, $chunk>(lo, lval, b, 0, o, 0);
                                v0 += $chunk;
                                continue;
                            })*
                        }
                    }
                }
            }
        }

        /// One pass of [`accumulate_at_width`]'s.
        ///
        /// # Safety
        /// As the accumulate function's, for the runs and vectors this
        /// pass covers.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn $pass<const R: usize, const LV: usize>(
            lo: &[u32],
            lval: &[f32],
            base: *const f32,
            rs: usize,
            acc: *mut f32,
            ars: usize,
        ) {
            let mut a: [[$v; LV]; R] = [[$zero(); LV]; R];
            for (r, ar) in a.iter_mut().enumerate() {
                for (v, x) in ar.iter_mut().enumerate() {
                    *x = $load(acc.add(r * ars + $w * v));
                }
            }
            for (&o, &val) in lo.iter().zip(lval) {
                let p = base.add(o as usize);
                let gv = $set1(val);
                for (r, ar) in a.iter_mut().enumerate() {
                    let q = p.add(r * rs);
                    for (v, x) in ar.iter_mut().enumerate() {
                        *x = $fma(gv, $load(q.add($w * v)), *x);
                    }
                }
            }
            for (r, ar) in a.iter().enumerate() {
                for (v, x) in ar.iter().enumerate() {
                    $store(acc.add(r * ars + $w * v), *x);
                }
            }
        }
    };
}

accumulate_at_width!(
    accumulate,
    pass,
    "avx2,fma",
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    [1, 2, 3, 4],
    [12, 8, 4, 2, 1]
);
// 32 registers: up to 24 accumulators a pass.
accumulate_at_width!(
    accumulate512,
    pass512,
    "avx512f,avx2,fma",
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    [1, 2, 3, 4, 5, 6, 7, 8],
    [24, 16, 8, 4, 2, 1]
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;
    use crate::ops::conv::ConvBackward;

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// Images of moderate values with zeros of both signs among them.
    fn images(n: usize, seed: u64) -> Vec<f32> {
        let mut r = xorshift(seed);
        (0..n)
            .map(|_| match r() % 8 {
                0 => 0.0,
                1 => -0.0,
                _ => ((r() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0,
            })
            .collect()
    }

    /// A 2 × 2 max pool's gradient on planes of h × w: in each window one
    /// value (at a drawn position) or none; the zeros left are +0 or −0.
    fn pooled(cout: usize, g: Cnhw, seed: u64) -> Vec<f32> {
        let mut r = xorshift(seed);
        let mut dy: Vec<f32> = (0..cout * g.row()).map(|_| if r().is_multiple_of(2) { 0.0 } else { -0.0 }).collect();
        for p in 0..cout * g.n {
            for wy in (0..g.h - g.h % 2).step_by(2) {
                for wx in (0..g.w - g.w % 2).step_by(2) {
                    let s = r();
                    if !s.is_multiple_of(5) {
                        let (a, b) = ((s >> 8) as usize % 2, (s >> 9) as usize % 2);
                        dy[p * g.plane() + (wy + a) * g.w + wx + b] =
                            ((s >> 20) as f32 / (1u64 << 44) as f32 - 0.5) * 3.0;
                    }
                }
            }
        }
        dy
    }

    fn spec_dw(x: &[f32], g: Cnhw, dy: &[f32], cout: usize) -> Vec<f32> {
        let w = vec![0.5f32; cout * g.c * 9];
        let mut dw = vec![f32::NAN; w.len()];
        let a = ConvBackward { x, g, w: &w, cout, dy };
        CpuBackend::scalar().conv3x3_backward(a, &mut dw, None, &mut Default::default()).unwrap();
        dw
    }

    fn avx2() -> bool {
        let ok = crate::cpu::avx2_available();
        if !ok {
            println!("SKIP (no AVX2 and FMA on this machine)");
        }
        ok
    }

    /// The sparse chains give the scalar spec's dW bit for bit on pooled
    /// gradients with signed zeros, at 1 and 2 threads: 3 and 4 channels
    /// (all nine taps in one pass of three runs), 11 (runs of 5 vectors: a
    /// pass of 4 and one of 1), 40 (15: 12 + 2 + 1), 64 (24: two of 12),
    /// 90 and 130 (512-bit runs of 17 and 25 vectors: 16 + 1, 24 + 1), on
    /// 512-bit registers and on threads kept to the 256-bit ones, odd sides (the last row or column outside every window), several
    /// image groups (40 images of 3 × 32 × 32, 25 of 64 × 8 × 8).
    #[test]
    fn sparse_dw_equals_the_spec_bitwise_on_pooled_gradients() {
        if !avx2() {
            return;
        }
        let cases = [
            (Cnhw::new(3, 40, 32, 32), 5),
            (Cnhw::new(4, 3, 8, 8), 13),
            (Cnhw::new(11, 5, 7, 10), 7),
            (Cnhw::new(40, 3, 5, 9), 3),
            (Cnhw::new(64, 25, 8, 8), 9),
            (Cnhw::new(90, 2, 4, 6), 3),
            (Cnhw::new(130, 2, 4, 6), 3),
        ];
        for (i, (g, cout)) in cases.into_iter().enumerate() {
            let x = images(g.len(), 10 + i as u64);
            let dy = pooled(cout, g, 20 + i as u64);
            assert!(looks_sparse(&dy, g, cout), "{g:?}: a pooled gradient looks sparse");
            let want = spec_dw(&x, g, &dy, cout);
            for (threads, narrow) in [(1, false), (2, false), (1, true), (2, true)] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .start_handler(move |_| crate::cpu::narrow_kernels_on_this_thread(narrow))
                    .build()
                    .unwrap();
                let mut dw = vec![f32::NAN; want.len()];
                assert!(pool.install(|| dw_sparse(&x, g, &dy, cout, &mut dw)).unwrap(), "{g:?}: taken");
                let bad = dw.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(bad, None, "{g:?}, {threads} threads, narrow {narrow}: dW differs from the spec");
            }
        }
    }

    /// The chain the sparse dW would run: the spec's with dY's zero steps
    /// left out.
    fn skipping_chain(terms: &[(f32, f32)]) -> f32 {
        terms.iter().filter(|(d, _)| *d != 0.0).fold(0.0f32, |acc, (d, c)| d.mul_add(*c, acc))
    }

    /// Where leaving out zero steps could end a chain at −0 instead of the
    /// spec's +0 (a product that underflows to −0, then a skipped
    /// `fma(+0, c, −0) = +0`), the sparse dW declines: a subnormal in dY, a
    /// subnormal in x; and where x holds an inf (0 · inf is NaN in the
    /// spec). The first two cases check that the decline is needed.
    #[test]
    fn sparse_dw_declines_values_that_could_change_a_zero_or_a_nan() {
        if !avx2() {
            return;
        }
        let g = Cnhw::new(1, 1, 4, 4);
        let sub = -f32::from_bits(1); // −2⁻¹⁴⁹
                                      // dY: one subnormal at pixel 0; x: 0.5 everywhere.
        let (mut dy_a, x_a) = (vec![0.0f32; 16], vec![0.5f32; 16]);
        dy_a[0] = sub;
        // dY: 0.5 at pixel 0; x: −2⁻¹⁴⁹ there, 0.5 elsewhere.
        let (mut dy_b, mut x_b) = (vec![0.0f32; 16], vec![0.5f32; 16]);
        dy_b[0] = 0.5;
        x_b[0] = sub;
        for (name, x, dy) in [("subnormal dY", &x_a, &dy_a), ("subnormal x", &x_b, &dy_b)] {
            // The centre tap's chain: the spec ends at +0, the skipping one at −0.
            let terms: Vec<(f32, f32)> = dy.iter().zip(x.iter()).map(|(d, c)| (*d, *c)).collect();
            let spec = spec_dw(x, g, dy, 1)[4];
            assert_eq!(
                (spec.to_bits(), skipping_chain(&terms).to_bits()),
                (0.0f32.to_bits(), (-0.0f32).to_bits()),
                "{name}"
            );
            assert!(!dw_sparse(x, g, dy, 1, &mut [0.0; 9]).unwrap(), "{name}: declined");
        }
        let mut x_c = vec![0.5f32; 16];
        x_c[5] = f32::INFINITY;
        assert!(!dw_sparse(&x_c, g, &dy_b, 1, &mut [0.0; 9]).unwrap(), "inf in x: declined");
        assert!(dw_sparse(&x_a, g, &dy_b, 1, &mut [0.0; 9]).unwrap(), "plain values: taken");
        // The same checks in the copy that moves eight channels by eight
        // pixels at a time.
        let g8 = Cnhw::new(8, 2, 8, 8);
        let mut dy8 = vec![0.0f32; 2 * g8.row()];
        dy8[3] = 0.5;
        for bad in [f32::INFINITY, f32::NAN, sub, f32::from_bits(1 << 23)] {
            let mut x8 = vec![0.5f32; g8.len()];
            x8[g8.len() - 7] = bad;
            assert!(!dw_sparse(&x8, g8, &dy8, 2, &mut [0.0; 144]).unwrap(), "{bad:e} in an 8 × 8 block: declined");
        }
        assert!(dw_sparse(&vec![0.5f32; g8.len()], g8, &dy8, 2, &mut [0.0; 144]).unwrap(), "8 × 8 blocks: taken");
    }
}
