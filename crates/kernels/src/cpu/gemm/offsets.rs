//! Products whose B rows are read in place: row t of a 16-column panel is
//! the 16 floats at `b[base + off[t]..]`, so nothing is packed. The conv
//! forward uses it on a zero-padded copy of each image, where every tap's
//! row of a 16-pixel run along an image row is such a slice.

use super::{avx2, k_blocks, pack_a, Epi, Epilogue, MatRef, MR, NR};

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

/// `C[:, col..col + 16] (+)= A · B_panel` for each `(base, col)` of
/// `panels`, B_panel's row t being `b[base + off[t]..][..16]`; A (m × K,
/// K = `off.len()`) packed by [`pack_a_blocks`]. Each output's fma chain
/// runs over t ascending, from +0.0 or (`cont`) from C's value, as the
/// GEMM spec says; the K blocks continue it through C.
///
/// # Safety
/// avx2 and fma present; `b[base + off[t] + 0..16]` exists for every
/// panel and t; C's rows `0..m` at stride `ldc` from `c` hold columns
/// `col..col + 16` of every panel, and no other thread touches them.
pub(crate) unsafe fn offsets_product(
    apack: &[f32],
    m: usize,
    off: &[u32],
    b: &[f32],
    panels: impl Iterator<Item = (usize, usize)> + Clone,
    (c, ldc): (*mut f32, usize),
    cont: bool,
) {
    let k = off.len();
    let mpad = m.div_ceil(MR) * MR;
    for (pc, kc) in k_blocks(k) {
        let ablock = &apack[mpad * pc..mpad * (pc + kc)];
        let offs = &off[pc..pc + kc];
        let load = pc > 0 || cont;
        for (base, col) in panels.clone() {
            debug_assert!(offs.iter().all(|&o| base + o as usize + NR <= b.len()));
            for (p, i0) in (0..m).step_by(MR).enumerate() {
                let a = avx2::APanel::Sparse { a: &ablock[p * MR * kc..(p + 1) * MR * kc], off: offs };
                avx2::tile(
                    kc,
                    a,
                    &b[base..],
                    c.add(i0 * ldc + col),
                    ldc,
                    (MR.min(m - i0), NR),
                    load,
                    Epi::Out(Epilogue::None),
                    (i0, col),
                    None,
                );
            }
        }
    }
}
