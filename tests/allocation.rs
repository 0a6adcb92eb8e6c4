//! The FF training step allocates nothing once its buffers exist: a counting
//! global allocator watches steady-state steps (this test binary only). It
//! counts allocations made on rayon worker threads, where the step runs; the
//! test harness's own threads are not the step's business.

use ffwd::kernels::{CpuBackend, FfLoss, GoodnessForm, Norm};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::ff::{FfLayer, Objective};
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

#[test]
fn ff_layer_steps_allocate_nothing_in_the_steady_state() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            ffwd::kernels::warm_up_workers();
            let be = CpuBackend::best();
            // 200 and 600 rows: one K block and several (partial sums in scratch)
            for rows in [200usize, 600] {
                let mut layer = FfLayer::new(300, 200, &OptimConfig::default(), 1, 0);
                let x: Vec<f32> = (0..rows * 300).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
                let obj = Objective {
                    norm: Norm::Rms,
                    eps: 1e-8,
                    loss: FfLoss::Threshold { theta: 200.0 },
                    form: GoodnessForm::Sum,
                };
                for _ in 0..3 {
                    layer.train_step(&be, &x, rows, obj).unwrap();
                }
                let before = ALLOCS.load(Ordering::Relaxed);
                for _ in 0..5 {
                    layer.train_step(&be, &x, rows, obj).unwrap();
                }
                let n = ALLOCS.load(Ordering::Relaxed) - before;
                assert_eq!(n, 0, "{n} allocations in 5 steady-state steps ({rows} rows, {threads} threads)");
            }
        });
    }
}
