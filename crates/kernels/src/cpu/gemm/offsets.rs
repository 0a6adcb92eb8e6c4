//! Products whose B rows are read in place: row t of a 16-column panel is
//! the 16 floats at `b[base + off[t]..]` (or two runs of 8, the second
//! [`SPLIT_HI`] floats past the first), so nothing is packed. The conv
//! forward uses it on a zero-padded copy of each image, where every tap's
//! row of a 16-pixel run along an image row is such a slice, and the row
//! of 8 pixels at the end of one image row and 8 at the start of the next
//! is such a pair.

use super::{avx2, avx512, k_blocks, pack_a, Epi, Epilogue, MatRef, MR, NR};

/// A packed for [`offsets_product`]: for each K block `(pc, kc)` of
/// [`k_blocks`], all of A's MR-row panels (`pack_a`'s layout), the blocks
/// one after another.
pub(crate) fn pack_a_blocks(a: &MatRef) -> Vec<f32> {
    let mpad = a.rows.div_ceil(MR) * MR;
    let mut out = vec![0.0f32; mpad * a.cols];
    for (pc, kc) in k_blocks(a.cols) {
        pack_a(a, None, 0, a.rows, pc, kc, &mut out[mpad * pc..mpad * (pc + kc)]);
    }
    out
}

/// Where the second half of a split B row starts, counted from its
/// first: two image rows apart in a buffer with a 2-float border, the 8
/// pixels at the end of one row and the 8 at the start of the next.
pub(crate) const SPLIT_HI: usize = 10;

/// `C[:, col..col + 16] (+)= A · B_panel` for each `(base, col, split)`
/// of `panels`, B_panel's row t being `b[base + off[t]..][..16]`, or
/// where `split` its columns 0..8 there and 8..16 at `b[base + off[t] +
/// SPLIT_HI..][..8]`; A (m × K,
/// K = `off.len()`) packed by [`pack_a_blocks`]. Each output's fma chain
/// runs over t ascending, from +0.0 or (`cont`) from C's value, as the
/// GEMM spec says; the K blocks continue it through C.
///
/// # Safety
/// avx2 and fma present; `b[base + off[t] + 0..16]` (split: `+ 0..8` and
/// `+ SPLIT_HI..SPLIT_HI + 8`) exists for every panel and t; C's rows `0..m` at stride `ldc` from `c` hold columns
/// `col..col + 16` of every panel, and no other thread touches them.
pub(crate) unsafe fn offsets_product(
    apack: &[f32],
    m: usize,
    off: &[u32],
    b: &[f32],
    panels: impl Iterator<Item = (usize, usize, bool)> + Clone,
    (c, ldc): (*mut f32, usize),
    cont: bool,
) {
    let k = off.len();
    let mpad = m.div_ceil(MR) * MR;
    let wide = avx512::wide();
    // The panels, listed once for the 512-bit pairs (the AVX2 path walks
    // the iterator).
    let list: Vec<(usize, usize, bool)> = if wide { panels.clone().collect() } else { Vec::new() };
    for (pc, kc) in k_blocks(k) {
        let ablock = &apack[mpad * pc..mpad * (pc + kc)];
        let offs = &off[pc..pc + kc];
        let load = pc > 0 || cont;
        // On 512-bit registers, two panels at a time on each full A panel
        // (12 chains sharing its broadcasts).
        let mut rest = &list[..];
        while let [(b0, col0, s0), (b1, col1, s1), tail @ ..] = rest {
            let full = m / MR;
            for p in 0..full {
                let ap = ablock.as_ptr().add(p * MR * kc);
                let bs = [b.as_ptr().add(*b0), b.as_ptr().add(*b1)];
                let cs = [c.add(p * MR * ldc + col0), c.add(p * MR * ldc + col1)];
                match (s0, s1) {
                    (false, false) => avx512::kernel_cols32::<8, 8>(kc, ap, offs.as_ptr(), bs, cs, ldc, load),
                    (true, false) => avx512::kernel_cols32::<SPLIT_HI, 8>(kc, ap, offs.as_ptr(), bs, cs, ldc, load),
                    (false, true) => avx512::kernel_cols32::<8, SPLIT_HI>(kc, ap, offs.as_ptr(), bs, cs, ldc, load),
                    (true, true) => {
                        avx512::kernel_cols32::<SPLIT_HI, SPLIT_HI>(kc, ap, offs.as_ptr(), bs, cs, ldc, load)
                    }
                }
            }
            if full * MR < m {
                for &(base, col, split) in &rest[..2] {
                    let i0 = full * MR;
                    let a = avx2::APanel::Sparse { a: &ablock[full * MR * kc..(full + 1) * MR * kc], off: offs };
                    let (bb, cc, shape) = (&b[base..], c.add(i0 * ldc + col), (m - i0, NR));
                    let epi = Epi::Out(Epilogue::None);
                    if split {
                        avx2::tile::<SPLIT_HI>(kc, a, bb, cc, ldc, shape, load, epi, (i0, col), None);
                    } else {
                        avx2::tile::<{ NR / 2 }>(kc, a, bb, cc, ldc, shape, load, epi, (i0, col), None);
                    }
                }
            }
            rest = tail;
        }
        // What the pairs left (wide), or every panel (AVX2).
        let single = rest.iter().copied().chain((!wide).then(|| panels.clone()).into_iter().flatten());
        for (base, col, split) in single {
            let reach = if split { SPLIT_HI + NR / 2 } else { NR };
            debug_assert!(offs.iter().all(|&o| base + o as usize + reach <= b.len()));
            let mut p = 0;
            while p * MR < m {
                let i0 = p * MR;
                let (bb, cc) = (&b[base..], c.add(i0 * ldc + col));
                // Two full panels at once on 512-bit registers (12 chains).
                if wide && i0 + 2 * MR <= m {
                    let ap = [ablock.as_ptr().add(p * MR * kc), ablock.as_ptr().add((p + 1) * MR * kc)];
                    let cs = [cc, cc.add(MR * ldc)];
                    if split {
                        avx512::kernel_rows12::<true, SPLIT_HI>(kc, ap, offs.as_ptr(), bb.as_ptr(), cs, ldc, load);
                    } else {
                        avx512::kernel_rows12::<true, { NR / 2 }>(kc, ap, offs.as_ptr(), bb.as_ptr(), cs, ldc, load);
                    }
                    p += 2;
                    continue;
                }
                let a = avx2::APanel::Sparse { a: &ablock[p * MR * kc..(p + 1) * MR * kc], off: offs };
                let shape = (MR.min(m - i0), NR);
                let epi = Epi::Out(Epilogue::None);
                if split {
                    avx2::tile::<SPLIT_HI>(kc, a, bb, cc, ldc, shape, load, epi, (i0, col), None);
                } else {
                    avx2::tile::<{ NR / 2 }>(kc, a, bb, cc, ldc, shape, load, epi, (i0, col), None);
                }
                p += 1;
            }
        }
    }
}
