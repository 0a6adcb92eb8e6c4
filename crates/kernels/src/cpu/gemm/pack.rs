//! Packing of the AVX2 GEMM's operands: A into MR-row panels (and their
//! compacted copies without the all-zero steps), B into NR-column panels,
//! and the prefetch hints that go with them.

use super::*;

/// Ask for the `rows` × 16 block at `p` (row stride `ld`) to be brought
/// into L1: each row's first and last element, so a row that straddles
/// two cache lines gets both. A hint only: it reads nothing and cannot
/// fault, whatever the address.
#[inline]
pub(crate) fn prefetch_rows(p: *const f32, ld: usize, rows: usize) {
    #[cfg(target_arch = "x86_64")]
    for r in 0..rows {
        let row = p.wrapping_add(r * ld);
        // SAFETY: prefetching is a hint that never dereferences or faults;
        // the pointers are computed with wrapping arithmetic.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(row as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR - 1) as *const i8);
        }
    }
}

/// Ask for lines `l0..l1` of a packed panel at `p` (16 floats, one line,
/// per k) to be brought into L2. A hint only, like [`prefetch_rows`].
#[inline]
pub(crate) fn prefetch_lines_l2(p: *const f32, l0: usize, l1: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in l0..l1 {
        // SAFETY: prefetching is a hint that never dereferences or faults;
        // the pointer is computed with wrapping arithmetic.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
            _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(l * NR) as *const i8);
        }
    }
}

/// Ask for the source lines of B's panel at column `jq` (rows `k0..k0+kc`)
/// in L2: one line per row (the panel's 16 floats), a whole row apart.
pub(crate) fn prefetch_b_source(b: &BSource, k0: usize, kc: usize, jq: usize) {
    let (data, rs, kept) = match *b {
        BSource::Mat(m) if m.cs == 1 => (m.data, m.rs, None),
        BSource::LocalGrad { h, kept, .. } => (h.data, h.rs, kept),
        _ => return,
    };
    for k in k0..k0 + kc {
        prefetch_lines_l2(data.as_ptr().wrapping_add(kept_row(kept, k) * rs + jq), 0, 1);
    }
}

/// Pack rows `i0..i0+mrows`, columns `k0..k0+kc` of A into MR-row panels:
/// `out[p·MR·kc + k·MR + r] = A[i0 + p·MR + r, k0 + k]`, zero past the end.
/// With `kmap`, column k of the product is column `kmap[k]` of A (A must be
/// a transposed view then, `rs == 1`).
pub(crate) fn pack_a(a: &MatRef, kmap: Option<&[u32]>, i0: usize, mrows: usize, k0: usize, kc: usize, out: &mut [f32]) {
    let panels = mrows.div_ceil(MR);
    let col = |k: usize| kept_row(kmap, k);
    debug_assert!(kmap.is_none() || a.rs == 1);
    if a.rs == 1 {
        // A is a transposed view (column-contiguous): for each k the panel's
        // MR rows are MR consecutive floats.
        for p in 0..panels {
            let panel = &mut out[p * MR * kc..(p + 1) * MR * kc];
            let r0 = i0 + p * MR;
            let w = MR.min(i0 + mrows - r0);
            if w == MR {
                // Fixed-size copies: inlined moves, not a memcpy call per k.
                for (k, dst) in panel.chunks_exact_mut(MR).enumerate() {
                    let base = r0 + col(k0 + k) * a.cs;
                    let src: &[f32; MR] = a.data[base..base + MR].try_into().expect("MR values");
                    dst.copy_from_slice(src);
                }
                continue;
            }
            for k in 0..kc {
                let base = r0 + col(k0 + k) * a.cs;
                panel[k * MR..k * MR + w].copy_from_slice(&a.data[base..base + w]);
                panel[k * MR + w..(k + 1) * MR].fill(0.0);
            }
        }
        return;
    }
    for p in 0..panels {
        let panel = &mut out[p * MR * kc..(p + 1) * MR * kc];
        if a.cs == 1 && (p + 1) * MR <= mrows && kc > 8 {
            let base = (i0 + p * MR) * a.rs + k0;
            // The end of the panel's last row: all MR rows hold kc values.
            let last = base + (MR - 1) * a.rs + kc;
            if last <= a.data.len() {
                // SAFETY: avx2 was detected (only the Avx2 backend packs); rows
                // base + r·rs .. + kc for r < MR lie inside a.data (checked
                // above), and the panel holds MR·kc floats.
                let done = unsafe { avx2::pack_rows(a.data.as_ptr().add(base), a.rs, kc, panel) };
                for r in 0..MR {
                    let row = &a.data[base + r * a.rs..base + r * a.rs + kc];
                    for k in done..kc {
                        panel[k * MR + r] = row[k];
                    }
                }
                continue;
            }
        }
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
/// For [`BSource::LocalGrad`] the packed values are `dz`, and `db` for these
/// columns continues its row-order sum (started from +0.0 when `k0 == 0`).
/// Returns what [`pack_b_panel`] returns for all the panels.
pub(crate) fn pack_b(b: &BSource, k0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) -> bool {
    out[..nc.div_ceil(NR) * NR * kc]
        .par_chunks_mut(NR * kc)
        .enumerate()
        .map(|(q, panel)| pack_b_panel(b, k0, kc, j0 + q * NR, NR.min(j0 + nc - (j0 + q * NR)), panel))
        .reduce(|| true, |x, y| x && y)
}

/// One NR-wide panel of [`pack_b`]: columns `jq..jq+w` (w ≤ NR). Only the
/// AVX2 driver packs B (the scalar specification multiplies unpacked).
/// Returns, for [`BSource::LocalGrad`], whether every packed value is
/// finite (a GEMM may skip A's zeros only against finite B rows); other
/// sources are not checked and return `true`.
pub(crate) fn pack_b_panel(b: &BSource, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) -> bool {
    match b {
        BSource::Mat(b) if b.cs == 1 && w == NR => {
            debug_assert!(kc == 0 || (k0 + kc - 1) * b.rs + jq + NR <= b.data.len());
            // SAFETY: the AVX2 driver runs only where avx2 was detected; rows
            // k0..k0+kc of B hold columns jq..jq+16 (jq + 16 ≤ n, unit column
            // stride), and the panel holds kc·16 floats.
            unsafe { avx2::pack_rows16(b.data.as_ptr().add(k0 * b.rs + jq), b.rs, kc, panel) };
            true
        }
        BSource::LocalGrad { h, dldg, db, kept, peer, .. } if w == NR => {
            let mut acc = [0.0f32; NR];
            if k0 > 0 {
                // SAFETY: columns jq..jq+16 of db belong to this panel only.
                unsafe { std::ptr::copy_nonoverlapping(db.get().add(jq), acc.as_mut_ptr(), NR) };
            }
            let row = |k: usize| kept_row(*kept, k0 + k);
            debug_assert!((0..kc).all(|k| row(k) < dldg.len() && row(k) * h.rs + jq + NR <= h.data.len()));
            // SAFETY: as above for avx2; the rows `row(k)`, k < kc, of h hold
            // columns jq..jq+16 and index dldg (kept lists rows of the batch);
            // the panel holds kc·16 floats.
            let peer = peer.map(|pc| (&pc.p[jq..jq + NR], pc.rows));
            let finite = unsafe {
                avx2::pack_local_grad16(h.data.as_ptr().add(jq), h.rs, kc, row, (dldg, peer), &mut acc, panel)
            };
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), db.get().add(jq), NR) };
            finite
        }
        BSource::Mat(b) => {
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
            true
        }
        BSource::LocalGrad { h, dldg, db, kept, peer, .. } => {
            let mut acc = [0.0f32; NR];
            if k0 > 0 {
                // SAFETY: columns jq..jq+w of db belong to this panel only.
                unsafe { std::ptr::copy_nonoverlapping(db.get().add(jq), acc.as_mut_ptr(), w) };
            }
            for k in 0..kc {
                let dst = &mut panel[k * NR..(k + 1) * NR];
                let row = kept_row(*kept, k0 + k);
                let c = dldg[row] + dldg[row];
                let src = &h.data[row * h.rs + jq..row * h.rs + jq + w];
                for (j, ((d, a), &v)) in dst.iter_mut().zip(acc.iter_mut()).zip(src).enumerate() {
                    let z = crate::cpu::linear::dz_at(v, c, row, jq + j, *peer);
                    *d = z;
                    *a = *a + z;
                }
                dst[w..].fill(0.0);
            }
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), db.get().add(jq), w) };
            panel[..kc * NR].iter().all(|v| v.is_finite())
        }
        BSource::Im2col(c) => {
            c.pack_panel(k0, kc, jq, w, &mut panel[..kc * NR]);
            true
        }
        BSource::Im2colT(c) => {
            c.pack_panel_t(k0, kc, jq, w, &mut panel[..kc * NR]);
            true
        }
        BSource::Packed(_) => unreachable!("packed operands are never repacked"),
    }
}

/// Floats that the compacted copy of A's packed panels (see
/// [`avx2::compact_panel`]) takes for `mpad` rows (whole panels) and `k`
/// steps: the kept values (at most as many as the dense pack), each kept
/// step's B offset, and each panel's count of kept steps per K block.
pub(crate) const fn compact_len(mpad: usize, k: usize) -> usize {
    let (a, off, nk) = compact_lens(mpad / MR, k);
    a + off + nk
}

/// The three parts of a compacted copy inside a buffer of
/// [`compact_len`]`(panels·MR, k)` floats: values, offsets, counts.
pub(crate) fn compact_parts(buf: &[f32], panels: usize, k: usize) -> (&[f32], &[u32], &[u32]) {
    let (a, off, nk) = compact_lens(panels, k);
    let (a, rest) = buf.split_at(a);
    let (off, nk_buf) = rest.split_at(off);
    (a, bytemuck::cast_slice(off), bytemuck::cast_slice(&nk_buf[..nk]))
}

/// The lengths of the values, offsets and counts of a compacted copy of
/// `panels` panels and `k` steps (see [`compact_len`]).
pub(crate) const fn compact_lens(panels: usize, k: usize) -> (usize, usize, usize) {
    (panels * MR * k, panels * k, panels * k.div_ceil(KC))
}

/// A compacted copy of A's packed panels, for reading: panel p of the K
/// block of `kc` steps at `pc` (block index `bi`) keeps `nk[bi·P + p]`
/// steps, their values at `(pc·P + p·kc)·MR` and B offsets at `pc·P + p·kc`
/// (P panels), the dense pack's layout.
#[derive(Clone, Copy)]
pub(crate) struct Compact<'a> {
    a: &'a [f32],
    off: &'a [u32],
    nk: &'a [u32],
    panels: usize,
}

impl<'a> Compact<'a> {
    pub(crate) fn new(buf: &'a [f32], panels: usize, k: usize) -> Self {
        let (a, off, nk) = compact_parts(buf, panels, k);
        Compact { a, off, nk, panels }
    }
    /// The K block `bi`, which starts at step `pc`.
    pub(crate) fn block(self, bi: usize, pc: usize) -> Self {
        Compact {
            a: &self.a[pc * self.panels * MR..],
            off: &self.off[pc * self.panels..],
            nk: &self.nk[bi * self.panels..],
            panels: self.panels,
        }
    }
}

/// A compacted copy being written: one K block's panels.
pub(crate) struct CompactMut<'a> {
    a: &'a mut [f32],
    off: &'a mut [u32],
    nk: &'a mut [u32],
}

impl<'a> CompactMut<'a> {
    /// The whole copy of `panels` panels and `k` steps in `buf`.
    pub(crate) fn new(buf: &'a mut [f32], panels: usize, k: usize) -> Self {
        let (a, off, nk) = compact_lens(panels, k);
        let (a, rest) = buf.split_at_mut(a);
        let (off, nk_buf) = rest.split_at_mut(off);
        let off: &mut [u32] = bytemuck::cast_slice_mut(off);
        let nk: &mut [u32] = bytemuck::cast_slice_mut(&mut nk_buf[..nk]);
        CompactMut { a, off, nk }
    }
    /// Its K blocks of `len` steps (the last may be shorter), for
    /// compacting in parallel.
    pub(crate) fn blocks(
        buf: &'a mut [f32],
        panels: usize,
        k: usize,
        len: usize,
    ) -> impl IndexedParallelIterator<Item = Self> {
        let CompactMut { a, off, nk } = CompactMut::new(buf, panels, k);
        a.par_chunks_mut(len * panels * MR)
            .zip(off.par_chunks_mut(len * panels))
            .zip(nk.par_chunks_mut(panels))
            .map(|((a, off), nk)| CompactMut { a, off, nk })
    }
    /// Compact each panel of `dense` (one K block of `kc` steps).
    /// Returns the steps kept of all.
    pub(crate) fn compact(&mut self, dense: &[f32], kc: usize) -> StepsRun {
        let mut steps = StepsRun::default();
        for (p, nk) in self.nk.iter_mut().enumerate() {
            let span = p * MR * kc..(p + 1) * MR * kc;
            // SAFETY: only the Avx2 backend reaches the AVX2 driver; both
            // panels hold MR·kc floats and the offsets kc slots.
            *nk = unsafe {
                avx2::compact_panel(&dense[span.clone()], &mut self.a[span], &mut self.off[p * kc..(p + 1) * kc])
            } as u32;
            steps += StepsRun { ran: *nk as u64, all: kc as u64 };
        }
        steps
    }
}

/// A's packed panels as the tiles read them: dense, and compacted where
/// zero steps are left out.
#[derive(Clone, Copy)]
pub(crate) struct APanels<'a> {
    /// One K block's panels (MR·kc floats each), from the first of the range.
    pub(crate) dense: &'a [f32],
    pub(crate) compact: Option<Compact<'a>>,
}

impl<'a> APanels<'a> {
    /// Panel `p` for a tile: compacted where that is allowed (`skip`) and
    /// leaves out any step, else dense. (The indexed microkernel runs as
    /// fast as the dense one: 200×2000·2000×2000 on one core, 19.17 ms
    /// with every step kept against 19.12 dense, and faster from 5 % of
    /// the steps left out.)
    pub(crate) fn panel(&self, p: usize, kc: usize, skip: bool) -> avx2::APanel<'a> {
        if let (true, Some(c)) = (skip, self.compact) {
            let nk = c.nk[p] as usize;
            if nk < kc {
                let at = p * kc;
                return avx2::APanel::Sparse { a: &c.a[at * MR..(at + nk) * MR], off: &c.off[at..at + nk] };
            }
        }
        avx2::APanel::Dense(&self.dense[p * MR * kc..(p + 1) * MR * kc])
    }
    /// The panels past the first `p0` (a row block starting at row p0·MR).
    pub(crate) fn past(self, p0: usize, kc: usize) -> Self {
        APanels {
            dense: &self.dense[p0 * MR * kc..],
            compact: self.compact.map(|c| Compact {
                a: &c.a[p0 * MR * kc..],
                off: &c.off[p0 * kc..],
                nk: &c.nk[p0..],
                panels: c.panels,
            }),
        }
    }
}
