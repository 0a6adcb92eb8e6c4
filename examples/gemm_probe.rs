//! GEMM probe: best-of-N GFLOP/s of the AVX2 GEMM at FF shapes, for kernel
//! work on a noisy machine (the minimum is the least disturbed run).
//!
//! `RAYON_NUM_THREADS=1 cargo run --release --example gemm_probe`

use ffwd::kernels::{CpuBackend, Epilogue, MatMut, MatRef, PackedMat};

mod common;
use common::best;

fn main() {
    let be = CpuBackend::best();
    let v = |n: usize| (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
    for (m, k, n) in [(200, 784, 2000), (200, 2000, 2000), (2000, 2000, 2000), (72, 256, 2000)] {
        let (a, b, bias) = (v(m * k), v(k * n), v(n));
        let mut c = vec![0.0; m * n];
        let mut g = vec![0.0; m];
        let wp = PackedMat::from_row_major(&b, k, n).unwrap();
        let fl = 2.0 * (m * k * n) as f64;
        let t_packed = best(15, || {
            be.linear_forward_packed(
                MatRef::new(&a, m, k).unwrap(),
                &wp,
                &bias,
                MatMut::new(&mut c, m, n).unwrap(),
                &mut g,
            )
            .unwrap();
        });
        let t_plain = best(15, || {
            be.gemm(
                MatRef::new(&a, m, k).unwrap(),
                MatRef::new(&b, k, n).unwrap(),
                MatMut::new(&mut c, m, n).unwrap(),
                Epilogue::None,
            )
            .unwrap()
        });
        let t_tn = best(15, || {
            be.gemm(
                MatRef::new(&a, k, m).unwrap().t(),
                MatRef::new(&b, k, n).unwrap(),
                MatMut::new(&mut c, m, n).unwrap(),
                Epilogue::None,
            )
            .unwrap()
        });
        println!(
            "{m:>5}×{k:<5}·{k:>5}×{n:<5} packed-B fwd {:6.1}  plain {:6.1}  Aᵀ {:6.1} GFLOP/s",
            fl / t_packed / 1e9,
            fl / t_plain / 1e9,
            fl / t_tn / 1e9
        );
    }
}
