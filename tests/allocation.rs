//! The FF training step allocates nothing once its buffers exist: a counting
//! global allocator watches steady-state steps (this test binary only). It
//! counts allocations made on rayon worker threads, where the step runs; the
//! test harness's own threads are not the step's business.

use ffwd::kernels::{CpuBackend, FfLoss, GoodnessForm, Norm};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::ff::{train_stack, FfLayer, Objective};
use ffwd::layers::stats::Scalars;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn count() {
    if rayon::current_thread_index().is_some() {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator and only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The count is global: the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `f(backend, threads)` in a fresh pool of 1 and of 2 threads whose
/// workers hold their packing buffers already.
fn in_pools(f: impl Fn(&CpuBackend, usize) + Sync) {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            ffwd::kernels::warm_up_workers();
            f(&CpuBackend::best(), threads)
        });
    }
}

/// Allocations on the workers during `rounds` calls of `step`, after
/// `warm` calls that may still allocate.
fn allocations(warm: usize, rounds: usize, mut step: impl FnMut()) -> usize {
    for _ in 0..warm {
        step();
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        step();
    }
    ALLOCS.load(Ordering::Relaxed) - before
}

fn objective(theta: f32) -> Objective {
    Objective { norm: Norm::Rms, eps: 1e-8, loss: FfLoss::Threshold { theta }, form: GoodnessForm::Sum }
}

fn input(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect()
}

#[test]
fn ff_layer_steps_allocate_nothing_in_the_steady_state() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    in_pools(|be, threads| {
        // 200 and 600 rows: one K block and several (partial sums in scratch)
        for rows in [200usize, 600] {
            let mut layer = FfLayer::new(be, 300, 200, &OptimConfig::default(), 1, 0).unwrap();
            let mut stat = Scalars::new(be, 3).unwrap();
            let x = input(rows * 300);
            let n = allocations(3, 5, || {
                layer.train_step(be, &x, rows, objective(200.0), stat.slot(0)).unwrap();
            });
            assert_eq!(n, 0, "{n} allocations in 5 steady-state steps ({rows} rows, {threads} threads)");
        }
    });
}

#[test]
fn pipelined_layer_chain_allocates_nothing_in_the_steady_state() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Each layer's update runs beside the next layer's forward, so a worker
    // waiting inside one GEMM may run the other's jobs; the packing buffers
    // must still settle after a few batches.
    in_pools(|be, threads| {
        let dims = [300usize, 400, 200, 200];
        let rows = 200;
        let mut layers: Vec<FfLayer<CpuBackend>> = (0..3)
            .map(|l| FfLayer::new(be, dims[l], dims[l + 1], &OptimConfig::default(), 1, l as u32).unwrap())
            .collect();
        let mut stats = vec![0.0f32; 3 * 3];
        let x = input(rows * dims[0]);
        let mut step = || {
            let objective = |ly: &FfLayer<CpuBackend>| objective(ly.out_dim as f32);
            train_stack(be, &mut layers, &x, rows, objective, (&mut stats, 0)).unwrap();
        };
        // Work stealing decides which worker packs which GEMM, so under a
        // busy machine a worker may first pack a shape late and grow its
        // buffer once then. Buffers never shrink, so the allocations must
        // stop: a window of 10 batches without any, within 8 windows, and
        // only a few in all (a per-batch allocation would fail both).
        let mut windows = vec![allocations(10, 10, &mut step)];
        while windows.last() != Some(&0) && windows.len() < 8 {
            windows.push(allocations(0, 10, &mut step));
        }
        let total: usize = windows.iter().sum();
        assert!(
            windows.last() == Some(&0) && total <= 8,
            "allocations per window of 10 pipelined batches ({threads} threads): {windows:?}"
        );
    });
}
