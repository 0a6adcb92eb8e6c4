//! The packing buffers of the AVX2 GEMM (thread-local, grown once) and the
//! shared output pointer its tasks write through.

use super::*;

/// Run `f` with this thread's A packing buffer (`need` floats). The buffer
/// is always grown to the largest size any call can ask for, so a worker
/// allocates it once, whatever tasks it happens to run.
pub(crate) fn with_apack<R>(need: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
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
    pub(crate) static APACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static BPACK: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    pub(crate) static ASHARED: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
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
pub(crate) struct Held {
    slot: &'static std::thread::LocalKey<RefCell<Vec<Vec<f32>>>>,
    buf: Vec<f32>,
}

impl Held {
    pub(crate) fn take(slot: &'static std::thread::LocalKey<RefCell<Vec<Vec<f32>>>>, need: usize) -> Self {
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
