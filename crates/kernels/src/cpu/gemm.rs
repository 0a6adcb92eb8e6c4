//! GEMM, `C = epilogue(A·B)`, in any operand layout (strided views), with an
//! optional fused row goodness `g_i = l32_sumsq(C[i, :])`.
//!
//! **Spec.** For every output (i, j): `acc = +0.0`; for k = 0..K−1 in
//! ascending order, `acc = fma(A[i,k], B[k,j], acc)`; then the epilogue:
//! `None → acc`, `Accumulate` (acc starts at C\[i,j\]) `→ acc`,
//! `Bias → acc + bias[j]`, `BiasRelu → relu(acc + bias[j])`.
//!
//! **AVX2.** BLIS-style: B is packed in KC×16 column panels, A in 6×KC row
//! panels, and a 6×16 outer-product microkernel keeps 12 accumulators in
//! registers. K is blocked by KC = 256; every block after the first *loads*
//! the C tile as its accumulators, so each output's fma chain continues in
//! ascending k exactly as the spec says. Threads split M into row blocks,
//! or, for few rows (the batch-100 forward), the columns of C; no block
//! size or split changes an output's arithmetic, so results do not depend
//! on the thread count.
//!
//! **Zero steps.** The FF forward and the fused dW + Adam pass leave out
//! the k steps at which an A panel's six rows are all zero (an image's
//! background, a block of ReLU-dead units), through a microkernel that
//! reads B by row offsets; where that could change a bit (a NaN from
//! 0 · inf, or the sign of a zero that the epilogue would see) they do
//! not, so the results stay the spec's (the AVX2 driver, `gemm_avx2_src`,
//! gives the argument in full).

use crate::mat::{MatMut, MatRef};
use crate::numerics::{l32_sumsq, relu};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// What happens to each accumulator after its last fma.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    None,
    /// `C += A·B`: each output's fma chain starts from C's current value
    /// instead of +0.0, so a long reduction split into several calls (the
    /// conv dW over image chunks) gives the bits of one call.
    Accumulate,
    Bias(&'a [f32]),
    BiasRelu(&'a [f32]),
}

impl Epilogue<'_> {
    #[inline(always)]
    pub(crate) fn apply(&self, j: usize, acc: f32) -> f32 {
        match self {
            Epilogue::None | Epilogue::Accumulate => acc,
            Epilogue::Bias(b) => acc + b[j],
            Epilogue::BiasRelu(b) => relu(acc + b[j]),
        }
    }
    pub(crate) fn bias(&self) -> Option<&[f32]> {
        match self {
            Epilogue::None | Epilogue::Accumulate => None,
            Epilogue::Bias(b) | Epilogue::BiasRelu(b) => Some(b),
        }
    }
}

/// A K×N matrix kept in the GEMM's packed-B layout: column panels of width
/// 16, panel q holding columns 16q..16q+16 of all K rows, row-major with
/// stride 16; columns past N are zero. Weights stored this way are never
/// repacked, and a 6-row tile of a panel is 96 contiguous floats.
#[derive(Debug)]
pub struct PackedMat {
    k: usize,
    n: usize,
    data: Vec<f32>,
    /// Whether every value is finite, as far as known (see
    /// [`PackedMat::all_finite`]): [`FINITE_UNKNOWN`], [`FINITE_YES`] or
    /// [`FINITE_NO`]. The forward may skip A's zero k steps only if the B
    /// rows it skips hold no inf or NaN (0 · inf is a NaN).
    finite: AtomicU8,
}

const FINITE_UNKNOWN: u8 = 0;
const FINITE_YES: u8 = 1;
const FINITE_NO: u8 = 2;

impl Clone for PackedMat {
    fn clone(&self) -> Self {
        Self { k: self.k, n: self.n, data: self.data.clone(), finite: AtomicU8::new(self.finite.load(Relaxed)) }
    }
}

impl PartialEq for PackedMat {
    fn eq(&self, other: &Self) -> bool {
        (self.k, self.n) == (other.k, other.n) && self.data == other.data
    }
}

impl PackedMat {
    pub fn zeros(k: usize, n: usize) -> Self {
        Self { k, n, data: super::pages::zeroed(k * n.div_ceil(NR) * NR), finite: AtomicU8::new(FINITE_YES) }
    }
    /// Pack a row-major k × n matrix.
    pub fn from_row_major(src: &[f32], k: usize, n: usize) -> crate::Result<Self> {
        crate::error::check_len("PackedMat::from_row_major", "source", src.len(), k * n)?;
        let mut p = Self::zeros(k, n);
        for r in 0..k {
            for j in 0..n {
                let idx = p.index(r, j);
                p.data[idx] = src[r * n + j];
            }
        }
        p.finite = AtomicU8::new(FINITE_UNKNOWN);
        Ok(p)
    }
    /// The row-major k × n matrix.
    pub fn to_row_major(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.k * self.n];
        self.write_row_major(&mut out);
        out
    }
    /// Write the row-major k × n matrix into `out` (length k·n).
    pub fn write_row_major(&self, out: &mut [f32]) {
        for r in 0..self.k {
            for j in 0..self.n {
                out[r * self.n + j] = self.data[self.index(r, j)];
            }
        }
    }
    /// Position of logical element (r, j) in [`PackedMat::data`].
    #[inline(always)]
    pub fn index(&self, r: usize, j: usize) -> usize {
        packed_index(self.k, r, j)
    }
    pub fn rows(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
    /// The packed storage (padding included).
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The packed storage, to change: whether every value is finite is
    /// unknown afterwards (and found out again when a forward needs it).
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.finite = AtomicU8::new(FINITE_UNKNOWN);
        &mut self.data
    }
    /// Whether every value is finite: known after [`PackedMat::zeros`] and
    /// after each fused optimiser step (which checks each weight it writes),
    /// otherwise found by one pass over the data, whose answer is kept until
    /// the next [`PackedMat::data_mut`].
    pub fn all_finite(&self) -> bool {
        match self.finite.load(Relaxed) {
            FINITE_YES => true,
            FINITE_NO => false,
            _ => {
                let yes = self.data.iter().all(|v| v.is_finite());
                self.finite.store(if yes { FINITE_YES } else { FINITE_NO }, Relaxed);
                yes
            }
        }
    }
    /// Record what an update that checked every value it wrote found.
    pub(crate) fn set_all_finite(&mut self, yes: bool) {
        self.finite = AtomicU8::new(if yes { FINITE_YES } else { FINITE_NO });
    }
}

/// How much of a product's multiply-add work ran. The AVX2 GEMM leaves out
/// the k steps at which an A panel (six rows of A) is all zero, where that
/// changes no bit (see the module notes); `ran` counts the steps of its A
/// panels that ran, `all` all of them (each step is 12 fmas per 16 columns
/// of B). The scalar specification runs every step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepsRun {
    pub ran: u64,
    pub all: u64,
}

impl StepsRun {
    /// Every step of an m-row product over k ran.
    pub fn every(m: usize, k: usize) -> Self {
        let all = (m.div_ceil(MR) * k) as u64;
        StepsRun { ran: all, all }
    }
    /// The share that ran (1 for an empty product).
    pub fn share(&self) -> f64 {
        if self.all == 0 {
            1.0
        } else {
            self.ran as f64 / self.all as f64
        }
    }
}

impl std::ops::Add for StepsRun {
    type Output = StepsRun;
    fn add(self, o: StepsRun) -> StepsRun {
        StepsRun { ran: self.ran + o.ran, all: self.all + o.all }
    }
}

impl std::ops::AddAssign for StepsRun {
    fn add_assign(&mut self, o: StepsRun) {
        *self = *self + o;
    }
}

/// Position of element (r, j) of a K-row matrix in the packed layout (see
/// [`PackedMat`]): panel j/16, row r, lane j%16.
#[inline(always)]
pub(crate) fn packed_index(k: usize, r: usize, j: usize) -> usize {
    (j / NR) * k * NR + r * NR + j % NR
}

/// Receives each finished tile of a GEMM in place of C (the dW GEMM hands
/// its tiles to the optimiser this way).
pub(crate) trait TileSink: Sync {
    /// The tile at (i0, j0) with `rows` rows is about to be computed: a
    /// hint to start fetching what [`TileSink::take`] will read, so that
    /// its loads do not wait on memory after the tile's fmas.
    fn prefetch(&self, i0: usize, j0: usize, rows: usize);
    /// The finished tile at (i0, j0): `rows` × `cols` values, row stride 16.
    ///
    /// # Safety
    /// The tile lies inside the GEMM's C, whose shape the sink was built
    /// for; no other call is handed the same tile at the same time (the
    /// GEMM's tasks partition C); `tile` holds `rows` × 16 values.
    unsafe fn take(&self, i0: usize, j0: usize, rows: usize, cols: usize, tile: &[f32]);
    /// Whether [`TileSink::take`] could give other bits for the tile at
    /// (i0, j0) if some of its zeros had the other sign. A GEMM that left
    /// out A's all-zero k steps knows each output only up to the sign of a
    /// zero (see [`gemm_avx2_src`]) and asks this before handing the tile
    /// over; where the answer is yes, it recomputes the tile by the spec.
    /// `tile` holds `rows` × 16 values (row stride 16).
    fn zero_sign_matters(&self, i0: usize, j0: usize, rows: usize, tile: &[f32]) -> bool;
}

/// Recomputes the tile at (i0, j0), `rows` × `cols`, by the spec into a
/// buffer of row stride 16 (see [`TileSink::zero_sign_matters`]).
pub(crate) type ExactTile<'a> = dyn Fn(usize, usize, usize, usize, &mut [f32; MR * NR]) + Sync + 'a;

/// The epilogue as the AVX2 driver sees it: the public ones, or a sink that
/// receives each finished tile (rows × cols, stride 16) instead of storing it.
#[derive(Clone, Copy)]
pub(crate) enum Epi<'a> {
    Out(Epilogue<'a>),
    Sink(&'a dyn TileSink),
}

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
fn prefetch_lines_l2(p: *const f32, l0: usize, l1: usize) {
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
fn prefetch_b_source(b: &BSource, k0: usize, kc: usize, jq: usize) {
    let (data, rs, kept) = match *b {
        BSource::Mat(m) if m.cs == 1 => (m.data, m.rs, None),
        BSource::LocalGrad { h, kept, .. } => (h.data, h.rs, kept),
        _ => return,
    };
    for k in k0..k0 + kc {
        prefetch_lines_l2(data.as_ptr().wrapping_add(kept_row(kept, k) * rs + jq), 0, 1);
    }
}

/// Where the B operand comes from.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a> {
    Mat(MatRef<'a>),
    Packed(&'a PackedMat),
    /// `dz[i,j] = h[i,j] · (dLdG_i + dLdG_i)` built while packing, with the
    /// bias gradient `db[j]` accumulated in row order on the way.
    LocalGrad {
        h: MatRef<'a>,
        dldg: &'a [f32],
        db: SharedMut,
        /// The most rows this layer's batches can keep: the packing
        /// buffers are sized for it, so that a batch keeping more rows
        /// than the last (see `linear`) does not grow them.
        rows_cap: usize,
        /// The rows that take part, in order (k-th row of dz = row
        /// `kept[k]` of h), or all of them. The same map picks A's columns:
        /// A is then the transposed view of all rows (see [`kmap`]).
        kept: Option<&'a [u32]>,
    },
}

/// Row `k` of the product's inner dimension in the operands' own rows:
/// `kept[k]` where only some rows take part, else `k`.
#[inline(always)]
fn kept_row(kept: Option<&[u32]>, k: usize) -> usize {
    kept.map_or(k, |ix| ix[k] as usize)
}

/// The map from the product's k to A's column, where B's source keeps only
/// some rows (the FF dW leaves out rows with dL/dG = 0 without copying).
fn kmap<'a>(b: &BSource<'a>) -> Option<&'a [u32]> {
    match *b {
        BSource::LocalGrad { kept, .. } => kept,
        _ => None,
    }
}

impl BSource<'_> {
    fn rows(&self) -> usize {
        match self {
            BSource::Mat(m) => m.rows,
            BSource::Packed(p) => p.k,
            BSource::LocalGrad { h, kept, .. } => kept.map_or(h.rows, |ix| ix.len()),
        }
    }
    fn cols(&self) -> usize {
        match self {
            BSource::Mat(m) => m.cols,
            BSource::Packed(p) => p.n,
            BSource::LocalGrad { h, .. } => h.cols,
        }
    }
}

/// The specification: a naive triple loop.
pub(crate) fn gemm_scalar(a: MatRef, b: MatRef, c: &mut MatMut, epi: Epilogue, g: Option<&mut [f32]>) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let accumulate = matches!(epi, Epilogue::Accumulate);
    for i in 0..m {
        for j in 0..n {
            let mut acc = if accumulate { c.data[i * c.rs + j] } else { 0.0f32 };
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
/// Up to this many rows, threads split the columns of C instead of its rows.
const COL_SPLIT_MAX_ROWS: usize = 512;
const NC: usize = 4096;

/// Where the B panels of one K block are: in a packed matrix, or in a
/// packing buffer that starts at panel `q0`.
#[derive(Clone, Copy)]
enum Panels<'b> {
    Packed { p: &'b PackedMat, pc: usize, kc: usize },
    Buf { buf: &'b [f32], q0: usize, kc: usize },
}

impl<'b> Panels<'b> {
    /// Panel q (columns 16q..16q+16), kc × 16 floats.
    #[inline]
    fn get(self, q: usize) -> &'b [f32] {
        match self {
            Panels::Packed { p, pc, kc } => {
                let at = packed_index(p.k, pc, q * NR);
                &p.data[at..at + kc * NR]
            }
            Panels::Buf { buf, q0, kc } => &buf[(q - q0) * NR * kc..(q - q0 + 1) * NR * kc],
        }
    }
}

/// Run `f` with this thread's A packing buffer (`need` floats). The buffer
/// is always grown to the largest size any call can ask for, so a worker
/// allocates it once, whatever tasks it happens to run.
fn with_apack<R>(need: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    APACK.with(|ap| {
        let mut apack = ap.borrow_mut();
        if apack.len() < need {
            const MOST: usize = MC_MAX * KC + compact_len(MC_MAX, KC);
            apack.resize(need.max(MOST), 0.0);
        }
        f(&mut apack[..need])
    })
}

/// Give every worker of the current rayon pool its GEMM packing buffer now,
/// so that no later step allocates whichever worker runs which task.
pub fn warm_up_workers() {
    rayon::broadcast(|_| with_apack(MR, |_| {}));
}

thread_local! {
    static APACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BPACK: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static ASHARED: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer taken from a thread-local pool for one GEMM call, at least
/// `need` floats long, and given back when dropped, so the steady state
/// never allocates. While it is out, a rayon worker waiting inside this
/// GEMM may run another GEMM's job on the same thread (a layer's update
/// and the next layer's forward run side by side); that call takes another
/// buffer of the pool. Each call takes the smallest buffer that is large
/// enough (else grows the largest), so whichever call nests inside which,
/// once the pool holds as many buffers as the deepest nesting and each
/// size seen, no call allocates.
struct Held {
    slot: &'static std::thread::LocalKey<RefCell<Vec<Vec<f32>>>>,
    buf: Vec<f32>,
}

impl Held {
    fn take(slot: &'static std::thread::LocalKey<RefCell<Vec<Vec<f32>>>>, need: usize) -> Self {
        let mut buf = slot
            .with(|s| {
                let mut pool = s.borrow_mut();
                let fits = pool.iter().enumerate().filter(|(_, b)| b.len() >= need).min_by_key(|(_, b)| b.len());
                let pick = fits.or_else(|| pool.iter().enumerate().max_by_key(|(_, b)| b.len())).map(|(i, _)| i);
                pick.map(|i| pool.swap_remove(i))
            })
            .unwrap_or_default();
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        Held { slot, buf }
    }
}

impl std::ops::Deref for Held {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // At thread exit the slot may be gone; the buffer is then just freed.
        let _ = self.slot.try_with(|s| s.borrow_mut().push(buf));
    }
}

/// A raw pointer that parallel tasks may share; each task writes a disjoint
/// range (stated at every use).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
impl SharedMut {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: only used to hand disjoint output ranges to rayon tasks.
unsafe impl Send for SharedMut {}
// SAFETY: as above; no two tasks touch the same element.
unsafe impl Sync for SharedMut {}

/// Pack rows `i0..i0+mrows`, columns `k0..k0+kc` of A into MR-row panels:
/// `out[p·MR·kc + k·MR + r] = A[i0 + p·MR + r, k0 + k]`, zero past the end.
/// With `kmap`, column k of the product is column `kmap[k]` of A (A must be
/// a transposed view then, `rs == 1`).
fn pack_a(a: &MatRef, kmap: Option<&[u32]>, i0: usize, mrows: usize, k0: usize, kc: usize, out: &mut [f32]) {
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
fn pack_b(b: &BSource, k0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) -> bool {
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
fn pack_b_panel(b: &BSource, k0: usize, kc: usize, jq: usize, w: usize, panel: &mut [f32]) -> bool {
    match b {
        BSource::Mat(b) if b.cs == 1 && w == NR => {
            debug_assert!(kc == 0 || (k0 + kc - 1) * b.rs + jq + NR <= b.data.len());
            // SAFETY: the AVX2 driver runs only where avx2 was detected; rows
            // k0..k0+kc of B hold columns jq..jq+16 (jq + 16 ≤ n, unit column
            // stride), and the panel holds kc·16 floats.
            unsafe { avx2::pack_rows16(b.data.as_ptr().add(k0 * b.rs + jq), b.rs, kc, panel) };
            true
        }
        BSource::LocalGrad { h, dldg, db, kept, .. } if w == NR => {
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
            let finite =
                unsafe { avx2::pack_local_grad16(h.data.as_ptr().add(jq), h.rs, kc, row, dldg, &mut acc, panel) };
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
        BSource::LocalGrad { h, dldg, db, kept, .. } => {
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
                for ((d, a), &v) in dst.iter_mut().zip(acc.iter_mut()).zip(src) {
                    let z = v * c;
                    *d = z;
                    *a = *a + z;
                }
                dst[w..].fill(0.0);
            }
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), db.get().add(jq), w) };
            panel[..kc * NR].iter().all(|v| v.is_finite())
        }
        BSource::Packed(_) => unreachable!("packed operands are never repacked"),
    }
}

/// The K blocks `(start, length)` of a product with inner size `k`: the
/// fewest blocks of at most `KC`, of equal length (up to the last), so no
/// block is a short tail whose tile loads and stores cost more than its
/// fmas. Any partition gives the same bits: each block continues every
/// output's fma chain where the previous one stopped.
fn k_blocks(k: usize) -> impl Iterator<Item = (usize, usize)> + Clone {
    let len = k_block_len(k);
    (0..k).step_by(len).map(move |pc| (pc, len.min(k - pc)))
}

/// The length of every K block but the last (see [`k_blocks`]).
fn k_block_len(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// The rows of one block of the column split's K block. A task runs every
/// row block over all of its B panels, so each B panel (kc × 16, held in
/// L1) is fetched once per row block, while the block's packed A (rows ×
/// kc) is read again for every panel and should stay in L2. So: the fewest
/// equal blocks (a multiple of MR rows) whose A fits in `A_BLOCK_FLOATS`,
/// half of a 512 KiB L2. At batch 100 (200 rows) that is one block, and B
/// is read exactly once per K block.
fn col_split_block_rows(m: usize, kc: usize) -> usize {
    const A_BLOCK_FLOATS: usize = 64 * 1024;
    let blocks = (m * kc).div_ceil(A_BLOCK_FLOATS).max(1);
    m.div_ceil(blocks).div_ceil(MR).max(1) * MR
}

/// Floats that the compacted copy of A's packed panels (see
/// [`avx2::compact_panel`]) takes for `mpad` rows (whole panels) and `k`
/// steps: the kept values (at most as many as the dense pack), each kept
/// step's B offset, and each panel's count of kept steps per K block.
const fn compact_len(mpad: usize, k: usize) -> usize {
    let (a, off, nk) = compact_lens(mpad / MR, k);
    a + off + nk
}

/// The three parts of a compacted copy inside a buffer of
/// [`compact_len`]`(panels·MR, k)` floats: values, offsets, counts.
fn compact_parts(buf: &[f32], panels: usize, k: usize) -> (&[f32], &[u32], &[u32]) {
    let (a, off, nk) = compact_lens(panels, k);
    let (a, rest) = buf.split_at(a);
    let (off, nk_buf) = rest.split_at(off);
    (a, bytemuck::cast_slice(off), bytemuck::cast_slice(&nk_buf[..nk]))
}

/// The lengths of the values, offsets and counts of a compacted copy of
/// `panels` panels and `k` steps (see [`compact_len`]).
const fn compact_lens(panels: usize, k: usize) -> (usize, usize, usize) {
    (panels * MR * k, panels * k, panels * k.div_ceil(KC))
}

/// A compacted copy of A's packed panels, for reading: panel p of the K
/// block of `kc` steps at `pc` (block index `bi`) keeps `nk[bi·P + p]`
/// steps, their values at `(pc·P + p·kc)·MR` and B offsets at `pc·P + p·kc`
/// (P panels), the dense pack's layout.
#[derive(Clone, Copy)]
struct Compact<'a> {
    a: &'a [f32],
    off: &'a [u32],
    nk: &'a [u32],
    panels: usize,
}

impl<'a> Compact<'a> {
    fn new(buf: &'a [f32], panels: usize, k: usize) -> Self {
        let (a, off, nk) = compact_parts(buf, panels, k);
        Compact { a, off, nk, panels }
    }
    /// The K block `bi`, which starts at step `pc`.
    fn block(self, bi: usize, pc: usize) -> Self {
        Compact {
            a: &self.a[pc * self.panels * MR..],
            off: &self.off[pc * self.panels..],
            nk: &self.nk[bi * self.panels..],
            panels: self.panels,
        }
    }
}

/// A compacted copy being written: one K block's panels.
struct CompactMut<'a> {
    a: &'a mut [f32],
    off: &'a mut [u32],
    nk: &'a mut [u32],
}

impl<'a> CompactMut<'a> {
    /// The whole copy of `panels` panels and `k` steps in `buf`.
    fn new(buf: &'a mut [f32], panels: usize, k: usize) -> Self {
        let (a, off, nk) = compact_lens(panels, k);
        let (a, rest) = buf.split_at_mut(a);
        let (off, nk_buf) = rest.split_at_mut(off);
        let off: &mut [u32] = bytemuck::cast_slice_mut(off);
        let nk: &mut [u32] = bytemuck::cast_slice_mut(&mut nk_buf[..nk]);
        CompactMut { a, off, nk }
    }
    /// Its K blocks of `len` steps (the last may be shorter), for
    /// compacting in parallel.
    fn blocks(buf: &'a mut [f32], panels: usize, k: usize, len: usize) -> impl IndexedParallelIterator<Item = Self> {
        let CompactMut { a, off, nk } = CompactMut::new(buf, panels, k);
        a.par_chunks_mut(len * panels * MR)
            .zip(off.par_chunks_mut(len * panels))
            .zip(nk.par_chunks_mut(panels))
            .map(|((a, off), nk)| CompactMut { a, off, nk })
    }
    /// Compact each panel of `dense` (one K block of `kc` steps).
    /// Returns the steps kept of all.
    fn compact(&mut self, dense: &[f32], kc: usize) -> StepsRun {
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
struct APanels<'a> {
    /// One K block's panels (MR·kc floats each), from the first of the range.
    dense: &'a [f32],
    compact: Option<Compact<'a>>,
}

impl<'a> APanels<'a> {
    /// Panel `p` for a tile: compacted where that is allowed (`skip`) and
    /// leaves out any step, else dense. (The indexed microkernel runs as
    /// fast as the dense one: 200×2000·2000×2000 on one core, 19.17 ms
    /// with every step kept against 19.12 dense, and faster from 5 % of
    /// the steps left out.)
    fn panel(&self, p: usize, kc: usize, skip: bool) -> avx2::APanel<'a> {
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
    fn past(self, p0: usize, kc: usize) -> Self {
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
                unsafe { *gp.0.add(i) = super::reduce::avx2::sumsq(&c.data[i * rs..i * rs + n]) };
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
            BSource::LocalGrad { h, dldg, kept, .. } => {
                let r = kept_row(kept, kk);
                h.at(r, j) * (dldg[r] + dldg[r])
            }
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
                    avx2::tile(
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
                    *gp.get().add(r) = super::reduce::avx2::sumsq(row);
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
        let chunk = per * NR * KC.min(k_cap);
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
                    // One row block: each panel is packed just before its
                    // tiles run, and the next panel's source rows are asked
                    // for in L2 first, so that their loads from memory
                    // overlap this panel's fmas instead of preceding them.
                    for (i, q) in qs.clone().enumerate() {
                        let w = NR.min(n - q * NR);
                        if q + 1 < qs.end {
                            prefetch_b_source(&b, pc, kc, (q + 1) * NR);
                        }
                        let fin = pack_b_panel(&b, pc, kc, q * NR, w, &mut own[i * NR * kc..(i + 1) * NR * kc]);
                        let bpanel = Panels::Buf { buf: own, q0: qs.start, kc };
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
    /// rounded multiply per value, as the scalar form), and `acc` gathers
    /// each column's sum in k order (the bias gradient). Returns whether
    /// every packed value is finite.
    ///
    /// # Safety
    /// avx2 present; for k < kc, `row(k) < dldg.len()` and
    /// `h + row(k)·rs + 0..16` is readable; `panel.len() >= 16·kc`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pack_local_grad16(
        h: *const f32,
        rs: usize,
        kc: usize,
        row: impl Fn(usize) -> usize,
        dldg: &[f32],
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
            let z0 = _mm256_mul_ps(_mm256_loadu_ps(row), c);
            let z1 = _mm256_mul_ps(_mm256_loadu_ps(row.add(8)), c);
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
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, zero);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, zero);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, zero);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, zero);
            // Column k of the 6 × 8 block, rows in lanes 0..6.
            let cols = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
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
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile(
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
                kernel::<false>(kc, a.as_ptr(), std::ptr::null(), b.as_ptr(), c, ldc, load, has_bias, relu, bias)
            }
            APanel::Sparse { a, off } => {
                kernel::<true>(off.len(), a.as_ptr(), off.as_ptr(), b.as_ptr(), c, ldc, load, has_bias, relu, bias)
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

    /// The 6×16 microkernel over `steps` k steps. Dense (`SPARSE` false):
    /// step t reads A at `a + t·MR` and B at `b + t·NR`. Sparse: A the same
    /// way (the compacted panel), B at `b + off[t]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel<const SPARSE: bool>(
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
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        if load {
            for (r, row) in acc.iter_mut().enumerate() {
                row[0] = _mm256_loadu_ps(c.add(r * ldc));
                row[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
            }
        }
        let mut ap = a;
        let mut bp = b;
        let mut op = off;
        // One k step: 2 B vectors, 6 broadcasts of A, 12 fmas (k ascending).
        macro_rules! step {
            ($u:expr) => {{
                let brow = if SPARSE { b.add(*op.add($u) as usize) } else { bp.add($u * NR) };
                let b0 = _mm256_loadu_ps(brow);
                let b1 = _mm256_loadu_ps(brow.add(8));
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
        for (r, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), row[0]);
            _mm256_storeu_ps(c.add(r * ldc + 8), row[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, ASHARED, BPACK};

    #[test]
    fn nested_held_buffers_are_reused_not_reallocated() {
        // A GEMM that runs inside another on the same thread takes a second
        // buffer; once both exist, the same nesting finds them again.
        let round = || {
            let outer = Held::take(&ASHARED, 1000);
            let inner = Held::take(&ASHARED, 500);
            let ptrs = (outer.as_ptr(), inner.as_ptr());
            drop(inner);
            drop(outer);
            ptrs
        };
        let first = round();
        assert_eq!(ASHARED.with(|s| s.borrow().len()), 2, "both buffers went back to the thread's stack");
        for _ in 0..3 {
            assert_eq!(round(), first);
        }
    }

    #[test]
    fn held_buffers_fit_whichever_call_nests_inside_which() {
        // The same two sizes nested the other way round (the next layer's
        // forward inside the update, or the update inside the forward) find
        // the buffers already there: each call takes the smallest that fits.
        let nest = |outer_need: usize, inner_need: usize| {
            let outer = Held::take(&BPACK, outer_need);
            let inner = Held::take(&BPACK, inner_need);
            let ptrs = (outer.as_ptr(), inner.as_ptr());
            drop(inner);
            drop(outer);
            ptrs
        };
        let (big, small) = nest(4000, 300);
        assert_eq!(nest(300, 4000), (small, big), "reversed nesting reallocated");
        assert_eq!(nest(4000, 300), (big, small));
        assert_eq!(BPACK.with(|s| s.borrow().len()), 2);
    }
}
