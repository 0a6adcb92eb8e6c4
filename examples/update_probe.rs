//! What the optimiser costs inside the batch-100 FF step, and whether the
//! step is bound by memory: the fused backward + update of a 2000→2000
//! layer (200 rows) with Adam, with momentum SGD and with plain SGD, against
//! the dW GEMM alone, Adam alone over the same 4 M weights, and a
//! read-modify-write sweep over three arrays of 4 M floats (W, m, v).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example update_probe`
//!
//! Median and fastest of 21 calls each, in milliseconds.

use ffwd::kernels::{AdamStep, CpuBackend, Epilogue, MatMut, MatRef, OptimStep, PackedMat, SgdStep};
use rayon::prelude::*;
use std::time::Instant;

fn time(mut f: impl FnMut()) -> (f64, f64) {
    const REPS: usize = 21;
    f();
    let mut t: Vec<f64> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[REPS / 2], t[0])
}

fn adam(t: u64) -> AdamStep {
    AdamStep { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, t }
}

fn main() {
    let be = CpuBackend::best();
    let (rows, din, dout) = (200usize, 2000usize, 2000usize);
    let weights = din * dout;
    let v = |n: usize| (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
    let (xn, h, dldg, dz) = (v(rows * din), v(rows * dout), v(rows), v(rows * dout));
    let mut w = PackedMat::from_row_major(&v(weights), din, dout).expect("shape");
    let (mut m, mut s, mut db, mut scratch) = (vec![0.0; weights], vec![0.0; weights], vec![0.0; dout], Vec::new());
    let x = MatRef::new(&xn, rows, din).expect("shape");
    let report = |name: &str, (med, best): (f64, f64)| println!("{name:<34} median {med:7.2}  fastest {best:7.2} ms");

    let mut t = 0u64;
    let mut fused = |step: &dyn Fn(u64) -> OptimStep, adam: bool| {
        time(|| {
            t += 1;
            let b: &mut [f32] = if adam { &mut s } else { &mut [] };
            be.linear_backward_update((x, &h, &dldg, None), &mut w, &step(t), (&mut m, b), &mut db, &mut scratch)
                .expect("fused backward");
        })
    };
    report("backward + Adam (fused)", fused(&|t| OptimStep::Adam(adam(t)), true));
    let sgd = |momentum| SgdStep { lr: 1e-4, momentum, weight_decay: 0.0, nesterov: false };
    report("backward + momentum SGD (fused)", fused(&|_| OptimStep::Sgd(sgd(0.9)), false));
    report("backward + plain SGD (fused)", fused(&|_| OptimStep::Sgd(sgd(0.0)), false));

    let mut dw = vec![0.0; weights];
    report(
        "dW GEMM alone",
        time(|| {
            let (a, b) = (x.t(), MatRef::new(&dz, rows, dout).expect("shape"));
            be.gemm(a, b, MatMut::new(&mut dw, din, dout).expect("shape"), Epilogue::None).expect("gemm")
        }),
    );
    let mut wr = v(weights);
    let mut t = 0u64;
    let alone = time(|| {
        t += 1;
        be.adam(&adam(t), &mut wr, &dw, &mut m, &mut s).expect("adam")
    });
    report("Adam alone (4 M weights)", alone);
    // Adam reads W, g, m, v and writes W, m, v: 7 floats per weight.
    println!("{:<34} {:.1} GB/s at the median", "  its traffic", 7.0 * 4.0 * weights as f64 / alone.0 / 1e6);
    let sweep = time(|| {
        let chunk = 1 << 16;
        wr.par_chunks_mut(chunk).zip(m.par_chunks_mut(chunk)).zip(s.par_chunks_mut(chunk)).for_each(|((a, b), c)| {
            for ((p, q), r) in a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()) {
                *p = *p * 0.999 + 1e-7;
                *q = *q * 0.999 + 1e-7;
                *r = *r * 0.999 + 1e-7;
            }
        })
    });
    report("read-modify-write of W, m, v", sweep);
    println!("{:<34} {:.1} GB/s at the median", "  its traffic", 6.0 * 4.0 * weights as f64 / sweep.0 / 1e6);
}
