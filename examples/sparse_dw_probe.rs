//! Sparse-dW probe: best-of-N time of the conv dW at the BP CNN's pooled
//! blocks (quarter width, batch 256), with a dense dY and with a pooled
//! block's dY (the sparse chains), for kernel work on a noisy machine.
//!
//! `cargo run --release --example sparse_dw_probe`

use ffwd::kernels::{Cnhw, ConvBackward, ConvOps, CpuBackend};

mod common;
use common::best;

fn main() {
    let be = CpuBackend::best();
    let v = |n: usize, s: usize| (0..n).map(|i| (((i + s) * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
    for (cin, cout, side, n) in [
        (3, 32, 32, 256),
        (32, 64, 16, 256),
        (64, 128, 8, 256),
        (4, 128, 32, 512),
        (128, 256, 16, 512),
        (256, 512, 8, 512),
    ] {
        let g = Cnhw::new(cin, n, side, side);
        let (x, w, dy) = (v(g.len(), 1), v(cout * cin * 9, 2), v(cout * g.row(), 3));
        // a pooled block's gradient: each 2 × 2 window's largest value where positive
        let mut dyp = vec![0.0f32; dy.len()];
        for p in 0..cout * g.n {
            let o = p * side * side;
            for wy in (0..side).step_by(2) {
                for wx in (0..side).step_by(2) {
                    let t = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(a, b)| o + (wy + a) * side + wx + b);
                    let m = t.into_iter().fold(t[0], |m, i| if dy[i] > dy[m] { i } else { m });
                    if dy[m] > 0.3 {
                        dyp[m] = dy[m];
                    }
                }
            }
        }
        let nz = dyp.iter().filter(|v| **v != 0.0).count() as f64 / dyp.len() as f64;
        let (mut dw, mut s) = (Vec::new(), Default::default());
        let mut run = |d: &Vec<f32>| {
            best(if n == 512 { 3 } else { 9 }, || {
                let a = ConvBackward { x: &x, g, w: &w, cout, dy: d };
                ConvOps::conv3x3_backward(&be, a, &mut dw, None, &mut s).unwrap()
            })
        };
        let (dense, sparse) = (run(&dy), run(&dyp));
        println!(
            "{cin}→{cout} {side}×{side} batch {n}: dense {:.2} ms, pooled dY ({:.0} % nonzero) {:.2} ms",
            dense * 1e3,
            nz * 100.0,
            sparse * 1e3
        );
    }
}
