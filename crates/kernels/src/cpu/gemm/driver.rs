//! The AVX2 GEMM driver: K blocking, the row and column splits over the
//! thread pool, and the tile loop that calls the microkernels.

use super::*;

/// Where the B panels of one K block are: in a packed matrix, or in a
/// packing buffer that starts at panel `q0`.
#[derive(Clone, Copy)]
pub(crate) enum Panels<'b> {
    Packed { p: &'b PackedMat, pc: usize, kc: usize },
    Buf { buf: &'b [f32], q0: usize, kc: usize },
}

impl<'b> Panels<'b> {
    /// Panel q (columns 16q..16q+16), kc × 16 floats.
    #[inline]
    pub(crate) fn get(self, q: usize) -> &'b [f32] {
        match self {
            Panels::Packed { p, pc, kc } => {
                let at = packed_index(p.k, pc, q * NR);
                &p.data[at..at + kc * NR]
            }
            Panels::Buf { buf, q0, kc } => &buf[(q - q0) * NR * kc..(q - q0 + 1) * NR * kc],
        }
    }
}

/// The K blocks `(start, length)` of a product with inner size `k`: the
/// fewest blocks of at most `KC`, of equal length (up to the last), so no
/// block is a short tail whose tile loads and stores cost more than its
/// fmas. Any partition gives the same bits: each block continues every
/// output's fma chain where the previous one stopped.
pub(crate) fn k_blocks(k: usize) -> impl Iterator<Item = (usize, usize)> + Clone {
    let len = k_block_len(k);
    (0..k).step_by(len).map(move |pc| (pc, len.min(k - pc)))
}

/// The length of every K block but the last (see [`k_blocks`]).
pub(crate) fn k_block_len(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// The rows of one block of the column split's K block. A task runs every
/// row block over all of its B panels, so each B panel (kc × 16, held in
/// L1) is fetched once per row block, while the block's packed A (rows ×
/// kc) is read again for every panel and should stay in L2. So: the fewest
/// equal blocks (a multiple of MR rows) whose A fits in `A_BLOCK_FLOATS`,
/// half of a 512 KiB L2. At batch 100 (200 rows) that is one block, and B
/// is read exactly once per K block.
pub(crate) fn col_split_block_rows(m: usize, kc: usize) -> usize {
    const A_BLOCK_FLOATS: usize = 64 * 1024;
    let blocks = (m * kc).div_ceil(A_BLOCK_FLOATS).max(1);
    m.div_ceil(blocks).div_ceil(MR).max(1) * MR
}

/// The AVX2 GEMM. Preconditions (checked by the caller): shapes agree,
/// `g` (if any) has `m` elements, bias (if any) has `n`.
pub(crate) fn gemm_avx2(a: MatRef, b: MatRef, c: &mut MatMut, epi: Epilogue, g: Option<&mut [f32]>) {
    gemm_avx2_src(a, BSource::Mat(b), c, Epi::Out(epi), g, false);
}

/// The AVX2 GEMM driver over any B source and epilogue.
///
/// **Zero steps left out** (`skip_zeros`). An FF layer's input is often
/// zero in whole blocks (MNIST's background: 81 % of its pixels), so the
/// six rows of an A panel are often all zero at a k step, and that step's
/// 12 fmas add only zeros. With `skip_zeros` the driver compacts each
/// packed A panel to its other steps (with each one's B row) and runs a
/// microkernel that reads B by those rows, for the panels where any step
/// goes. The bits stay the spec's:
///
/// - `fma(±0, b, acc)` for a finite b is `acc`, except that −0 becomes +0
///   when the product is +0; so an output computed without the zero steps
///   equals the spec's up to the sign of a zero, provided the B rows left
///   out are finite (0 · inf would have made a NaN).
/// - The forward (`BiasRelu` over packed weights, checked finite by
///   [`PackedMat::all_finite`]) maps either zero to +0 after the bias,
///   so its outputs and row goodness are the spec's bit for bit.
/// - A sink (the FF dW feeding Adam) is asked, tile by tile, whether the
///   sign of any of its zeros would change what it does
///   ([`TileSink::zero_sign_matters`]); for such a tile (Adam: a moment
///   that is exactly −0) the tile is recomputed by the spec. The local
///   gradient B is checked finite panel by panel as it is packed; a panel
///   that is not runs with all its steps.
///
/// Other epilogues and sources ignore `skip_zeros`.
///
/// Returns how many of A's panel steps ran (see [`StepsRun`]; counted as
/// if every B panel allowed the compacted run, which only an inf or NaN in
/// the local gradient prevents).
pub(crate) fn gemm_avx2_src(
    a: MatRef,
    b: BSource,
    c: &mut MatMut,
    epi: Epi,
    g: Option<&mut [f32]>,
    skip_zeros: bool,
) -> StepsRun {
    let km = kmap(&b);
    let (m, n, k) = (a.rows, b.cols(), km.map_or(a.cols, |ix| ix.len()));
    debug_assert_eq!(b.rows(), k);
    debug_assert!(km.is_none_or(|ix| ix.iter().all(|&i| (i as usize) < a.cols)));
    if m == 0 || n == 0 {
        return StepsRun::default();
    }
    let rs = c.rs;
    let gptr = g.map(|g| SharedMut(g.as_mut_ptr()));
    if k == 0 {
        if let BSource::LocalGrad { db, .. } = b {
            // SAFETY: db has n elements (checked by the caller); single-threaded here.
            unsafe { std::slice::from_raw_parts_mut(db.0, n) }.fill(0.0);
        }
        let zeros = [0.0f32; MR * NR];
        if let Epi::Sink(sink) = epi {
            // Every element still takes its step (an FF layer whose rows all
            // have dL/dG = 0 still moves under Adam's momentum), in parallel
            // over MR-row strips.
            (0..m.div_ceil(MR)).into_par_iter().for_each(|t| {
                let i = t * MR;
                for j in (0..n).step_by(NR) {
                    // SAFETY: the tile lies inside C (i < m, j < n), and each
                    // strip of rows is taken by one task; zeros holds MR × NR.
                    unsafe { sink.take(i, j, MR.min(m - i), NR.min(n - j), &zeros) };
                }
            });
        }
        for i in 0..m {
            match epi {
                Epi::Out(Epilogue::Accumulate) | Epi::Sink(_) => {}
                Epi::Out(e) => {
                    for j in 0..n {
                        c.data[i * rs + j] = e.apply(j, 0.0);
                    }
                }
            }
            if let Some(gp) = gptr {
                // SAFETY: i < m and g has m elements; single-threaded here.
                unsafe { *gp.0.add(i) = crate::cpu::reduce::avx2::sumsq(&c.data[i * rs..i * rs + n]) };
            }
        }
        return StepsRun::default();
    }
    let threads = rayon::current_num_threads().max(1);
    let cptr = SharedMut(c.data.as_mut_ptr());
    let packed = matches!(b, BSource::Packed(_));
    let skip = skip_zeros
        && match (epi, b) {
            (Epi::Out(Epilogue::BiasRelu(_)), BSource::Packed(p)) => p.all_finite(),
            (Epi::Sink(_), BSource::LocalGrad { .. }) => true,
            _ => false,
        };
    // The spec for one tile, for a sink that cares about a zero's sign.
    let exact_tile = |i0: usize, j0: usize, rows: usize, cols: usize, out: &mut [f32; MR * NR]| {
        let b_at = |kk: usize, j: usize| match b {
            BSource::Mat(m) => m.at(kk, j),
            BSource::Packed(p) => p.data[p.index(kk, j)],
            BSource::LocalGrad { h, dldg, kept, peer, .. } => {
                let r = kept_row(kept, kk);
                crate::cpu::linear::dz_at(h.at(r, j), dldg[r] + dldg[r], r, j, peer)
            }
            BSource::Im2col(c) => c.at(kk, j),
            BSource::Im2colT(c) => c.at(j, kk),
        };
        for r in 0..rows {
            for j in 0..cols {
                let mut acc = 0.0f32;
                for kk in 0..k {
                    acc = a.at(i0 + r, kept_row(km, kk)).mul_add(b_at(kk, j0 + j), acc);
                }
                out[r * NR + j] = acc;
            }
        }
    };
    let exact: Option<&ExactTile<'_>> = (skip && matches!(epi, Epi::Sink(_))).then_some(&exact_tile);
    // Few rows (the forward pass at small batch): tasks own column ranges,
    // so each reads only its slice of B. Otherwise tasks own row blocks.
    let col_split = m <= COL_SPLIT_MAX_ROWS && n >= 2 * NR * threads;
    // In the column split, a task reads each of its packed weight panels
    // once per K block, straight from memory, and each panel starts a new
    // stream (panels lie K·16 floats apart): fetch each one into L2 while
    // the previous one computes. Measured at batch 100: the 2000-column
    // forwards 3–5 % faster, the 500-column ones unchanged. The row split
    // re-reads its panels from every row block; there the same prefetch
    // was 2–4 % slower.
    let stream_b = col_split && packed;
    // One K block (kc at pc) of rows i0..i0+mrows × panels qs, A packed;
    // A's zero steps are left out where `b_finite` (see `skip`).
    let run = |i0: usize,
               mrows: usize,
               pc: usize,
               kc: usize,
               ap: APanels,
               bpanel: Panels,
               qs: std::ops::Range<usize>,
               b_finite: bool| {
        let first = pc == 0 && !matches!(epi, Epi::Out(Epilogue::Accumulate));
        let tile_epi = if pc + kc == k { epi } else { Epi::Out(Epilogue::None) };
        // A sink tile of the only K block reads and writes no C at all.
        let touches_c = !(first && matches!(tile_epi, Epi::Sink(_)));
        let qend = qs.end;
        for q in qs {
            let jr = q * NR;
            let cols = NR.min(n - jr);
            let bp = bpanel.get(q);
            // Streaming packed weights (see `stream_b`): fetch the next
            // panel's lines into L2, a share per tile of this panel.
            let next_b = (stream_b && q + 1 < qend).then(|| bpanel.get(q + 1).as_ptr());
            let tiles = mrows.div_ceil(MR);
            for ir in (0..mrows).step_by(MR) {
                if let Some(nb) = next_b {
                    let t = ir / MR;
                    prefetch_lines_l2(nb, t * kc / tiles, (t + 1) * kc / tiles);
                }
                let rows = MR.min(mrows - ir);
                let apanel = ap.panel(ir / MR, kc, b_finite);
                // A chain that lies in this one K block and ran every step,
                // or none (its products all exact zeros, so the spec's sum
                // stays +0), is the spec's exactly: no zero's sign to ask
                // the sink about.
                let whole = pc == 0 && kc == k;
                let exact = match apanel {
                    avx2::APanel::Dense(_) if whole => None,
                    avx2::APanel::Sparse { off, .. } if whole && off.is_empty() => None,
                    _ => exact,
                };
                // The next tile will start its fma chains from its C
                // values (or, in the first K block, write them): fetch
                // its lines while this tile computes.
                let next = if ir + MR < mrows { Some((ir + MR, jr)) } else { (q + 1 < qend).then_some((0, jr + NR)) };
                if let (true, Some((nr, nj))) = (touches_c, next) {
                    prefetch_rows(cptr.get().wrapping_add((i0 + nr) * rs + nj), rs, MR.min(mrows - nr));
                }
                // SAFETY: avx2+fma were detected (Avx2 backend); the packed panels
                // hold kc·MR and kc·NR floats; the tile (rows × cols at row i0+ir,
                // column jr, stride rs) lies inside C and belongs to this task
                // alone (tasks partition the rows or the columns of C).
                unsafe {
                    avx2::tile::<8>(
                        kc,
                        apanel,
                        bp,
                        cptr.get().add((i0 + ir) * rs + jr),
                        rs,
                        (rows, cols),
                        !first,
                        tile_epi,
                        (i0 + ir, jr),
                        exact,
                    )
                };
            }
        }
    };
    let row_goodness = |r0: usize, r1: usize| {
        if let Some(gp) = gptr {
            for r in r0..r1 {
                // SAFETY: rows r0..r1 of C are complete and only this task reads
                // them now; g[r] is written by this task alone.
                unsafe {
                    let row = std::slice::from_raw_parts(cptr.get().add(r * rs), n);
                    *gp.get().add(r) = crate::cpu::reduce::avx2::sumsq(row);
                }
            }
        }
    };
    if col_split {
        // One parallel region: each task loops over K blocks itself and packs
        // only its own columns of B.
        let panels = n.div_ceil(NR);
        let groups = (2 * threads).min(panels);
        let per = panels.div_ceil(groups);
        // One B buffer for all groups, held by the calling thread (taken out
        // of its thread-local for the call), each group packing into its own
        // chunk: its size depends on the shape only, so the steady state
        // never allocates.
        // An FF layer's dW leaves out rows whose dL/dG is zero, so its K
        // changes from batch to batch: size for the most it can be.
        let k_cap = match b {
            BSource::LocalGrad { rows_cap, .. } => rows_cap.max(k),
            _ => k,
        };
        // Where every K block is one row block, each panel is packed just
        // before its tiles run (below), so a group needs room for one panel
        // only; else for all of its panels.
        let one_row_block = col_split_block_rows(m, KC.min(k_cap)) >= m;
        let chunk = if one_row_block { 1 } else { per } * NR * KC.min(k_cap);
        let mut bpack = (!packed).then(|| Held::take(&BPACK, groups * chunk));
        // A is packed once, every K block, before the tasks start (each task
        // reads all of it): block (pc, kc) at pc·mpad, its panels laid out
        // as `pack_a` writes them. Held by the calling thread like B's buffer.
        let mpad = m.div_ceil(MR) * MR;
        // With `skip`, the compacted copy of each K block follows (see
        // `Compact`), made by the same task right after the block's pack.
        let mut ashared = Held::take(&ASHARED, mpad * k_cap + if skip { compact_len(mpad, k_cap) } else { 0 });
        let len = k_block_len(k);
        let (adense, arest) = ashared.split_at_mut(mpad * k_cap);
        let dense_blocks = adense[..mpad * k].par_chunks_mut(len * mpad).enumerate();
        let steps = if skip {
            dense_blocks
                .zip(CompactMut::blocks(arest, mpad / MR, k, len))
                .map(|((i, blk), mut cblk)| {
                    pack_a(&a, km, 0, m, i * len, blk.len() / mpad, blk);
                    cblk.compact(blk, blk.len() / mpad)
                })
                .reduce(StepsRun::default, |x, y| x + y)
        } else {
            dense_blocks.for_each(|(i, blk)| pack_a(&a, km, 0, m, i * len, blk.len() / mpad, blk));
            StepsRun::every(m, k)
        };
        let apacked = &adense[..mpad * k];
        let acompact = skip.then(|| Compact::new(arest, mpad / MR, k));
        let task = |t: usize, own: &mut [f32]| {
            let qs = t * per..((t + 1) * per).min(panels);
            if qs.is_empty() {
                return;
            }
            for (bi, (pc, kc)) in k_blocks(k).enumerate() {
                let blk = APanels {
                    dense: &apacked[pc * mpad..(pc + kc) * mpad],
                    compact: acompact.map(|c| c.block(bi, pc)),
                };
                let mc = col_split_block_rows(m, kc);
                if !packed && mc >= m {
                    // One row block: each panel is packed (into the group's
                    // one panel of room) just before its tiles run, and the
                    // next panel's source rows are asked for in L2 first, so
                    // that their loads from memory overlap this panel's fmas
                    // instead of preceding them.
                    for q in qs.clone() {
                        let w = NR.min(n - q * NR);
                        if q + 1 < qs.end {
                            prefetch_b_source(&b, pc, kc, (q + 1) * NR);
                        }
                        let fin = pack_b_panel(&b, pc, kc, q * NR, w, &mut own[..NR * kc]);
                        let bpanel = Panels::Buf { buf: own, q0: q, kc };
                        run(0, m, pc, kc, blk, bpanel, q..q + 1, fin);
                    }
                    continue;
                }
                let mut fin = true;
                if !packed {
                    for (i, q) in qs.clone().enumerate() {
                        let w = NR.min(n - q * NR);
                        fin &= pack_b_panel(&b, pc, kc, q * NR, w, &mut own[i * NR * kc..(i + 1) * NR * kc]);
                    }
                }
                let bpanel = match b {
                    BSource::Packed(p) => Panels::Packed { p, pc, kc },
                    _ => Panels::Buf { buf: own, q0: qs.start, kc },
                };
                for i0 in (0..m).step_by(mc) {
                    let mrows = mc.min(m - i0);
                    run(i0, mrows, pc, kc, blk.past(i0 / MR, kc), bpanel, qs.clone(), fin);
                }
            }
        };
        match bpack.as_mut() {
            None => (0..groups).into_par_iter().for_each(|t| task(t, &mut [])),
            Some(bp) => bp[..groups * chunk].par_chunks_mut(chunk).enumerate().for_each(|(t, own)| task(t, own)),
        }
        if gptr.is_some() {
            (0..m).into_par_iter().with_min_len(16).for_each(|r| row_goodness(r, r + 1));
        }
        return steps;
    }
    // Few columns and a long K (the dW of a conv block with few input
    // channels: 36 columns and half a million k): a fork-join per K block
    // costs more than the block's fmas. Each task takes a share of the row
    // panels and runs every K block itself, packing all of B's few panels
    // into a buffer of its own (sources whose packing has side effects,
    // the FF local gradient's bias sum, are left to the paths below).
    let long_k = k_blocks(k).count() >= 8 && n <= 4 * NR;
    if long_k && !skip && matches!(b, BSource::Mat(_) | BSource::Im2col(_) | BSource::Im2colT(_)) {
        let panels = m.div_ceil(MR);
        let qn = n.div_ceil(NR);
        let rtasks = threads.min(panels);
        // Fewer row panels than threads (a conv with a handful of output
        // channels): the column panels are split too. Every output's chain
        // is still one task's; a row goodness needs whole rows, so not then.
        let ctasks = if gptr.is_none() { (threads / rtasks).clamp(1, qn) } else { 1 };
        let klen = k_block_len(k);
        (0..rtasks * ctasks).into_par_iter().for_each(|t| {
            let (rt, ct) = (t / ctasks, t % ctasks);
            let (i0, i1) = (rt * panels / rtasks * MR, ((rt + 1) * panels / rtasks * MR).min(m));
            let qs = ct * qn / ctasks..(ct + 1) * qn / ctasks;
            let mrows = i1 - i0;
            let mut bbuf = Held::take(&BPACK, qs.len() * NR * klen);
            for (pc, kc) in k_blocks(k) {
                for q in qs.clone() {
                    let at = (q - qs.start) * NR * kc;
                    pack_b_panel(&b, pc, kc, q * NR, NR.min(n - q * NR), &mut bbuf[at..at + NR * kc]);
                }
                with_apack(mrows.div_ceil(MR) * MR * kc, |dense| {
                    pack_a(&a, km, i0, mrows, pc, kc, dense);
                    let bpanel = Panels::Buf { buf: &bbuf, q0: qs.start, kc };
                    run(i0, mrows, pc, kc, APanels { dense, compact: None }, bpanel, qs.clone(), true);
                });
            }
            row_goodness(i0, i1);
        });
        return StepsRun::every(m, k);
    }
    // Row blocks of whole MR-row panels, at most MC_MAX rows each, at least
    // two per thread and a multiple of the thread count in number, with the
    // panels spread evenly over them: a thread's share of the rows then
    // differs from another's by a panel or two, where blocks of a fixed
    // height left one thread a whole block behind (784 rows: 11 blocks of
    // 72, the dW of the first FF layer 8-10 % slower).
    let panels = m.div_ceil(MR);
    let tasks = panels.div_ceil(MC_MAX / MR).max(2 * threads).div_ceil(threads) * threads;
    let tasks = tasks.min(panels);
    let block = |t: usize| (t * panels / tasks * MR, ((t + 1) * panels / tasks * MR).min(m));
    // Row blocks share B: per K block (K outer, so a KC × NC slab of B stays
    // in cache for every row block), B is packed once in parallel (unless it
    // is already packed), then the row blocks run.
    // The B buffer is held for the whole call (see `Held`).
    let mut bpack = Held::take(&BPACK, if packed { 0 } else { KC * NC.min(n).div_ceil(NR) * NR });
    let mut steps = StepsRun::default();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let qs = jc / NR..(jc + nc).div_ceil(NR);
        for (pc, kc) in k_blocks(k) {
            let (bpanel, fin) = match b {
                BSource::Packed(p) => (Panels::Packed { p, pc, kc }, true),
                _ => {
                    let fin = pack_b(&b, pc, kc, jc, nc, &mut bpack);
                    (Panels::Buf { buf: &bpack, q0: jc / NR, kc }, fin)
                }
            };
            let done = pc + kc == k && jc + nc == n;
            steps += (0..tasks)
                .into_par_iter()
                .map(|t| {
                    let (i0, i1) = block(t);
                    let mrows = i1 - i0;
                    let mpad = mrows.div_ceil(MR) * MR;
                    let ran = with_apack(mpad * kc + if skip { compact_len(mpad, kc) } else { 0 }, |apack| {
                        let (dense, rest) = apack.split_at_mut(mpad * kc);
                        pack_a(&a, km, i0, mrows, pc, kc, dense);
                        let ran = if skip {
                            CompactMut::new(rest, mpad / MR, kc).compact(dense, kc)
                        } else {
                            StepsRun::every(mrows, kc)
                        };
                        let compact = skip.then(|| Compact::new(rest, mpad / MR, kc));
                        run(i0, mrows, pc, kc, APanels { dense, compact }, bpanel, qs.clone(), fin);
                        ran
                    });
                    if done {
                        row_goodness(i0, i0 + mrows);
                    }
                    ran
                })
                .reduce(StepsRun::default, |x, y| x + y);
        }
    }
    steps
}
