//! The 3×3 conv kernels at the Trifecta's shapes: forward, dW, and dW + dX
//! for each block of the small net at quarter and full width, batch 512
//! (256 positives and 256 negatives go through together), in GFLOP/s and
//! as a fraction of this machine's measured FMA peak; and, for scale, our
//! GEMM on the same product with the im2col matrix already in memory.
//!
//! The last column: the dW of the blocks that end in a 2 × 2 max pool with
//! such a block's gradient (one value per window at most: the sparse dW).
//!
//! `cargo bench --bench conv` (add `-- quarter` or `-- full` for one width).

mod common;

use common::{median_secs, rand};
use ffwd::kernels::{Cnhw, ConvBackward, ConvOps, CpuBackend, Epilogue, MatMut, MatRef};

/// (cin, cout, side) of the small Trifecta's six blocks at width divisor
/// `d` (the first block's input: 3 colour channels and the label channel).
fn blocks(d: usize) -> Vec<(usize, usize, usize)> {
    let ch = [128, 128, 256, 256, 256, 512].map(|c| c / d);
    let sides = [32, 16, 16, 8, 8, 8];
    (0..6).map(|i| (if i == 0 { 4 } else { ch[i - 1] }, ch[i], sides[i])).collect()
}

fn main() {
    let be = CpuBackend::best();
    let threads = rayon::current_num_threads();
    let peak = ffwd::kernels::cpu::peak::fma_peak(threads).unwrap_or(f64::NAN);
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let n = 512;
    println!("\nffwd conv bench: {} backend, {threads} thread(s), batch {n}", be.name());
    println!("measured FMA peak: {:.1} GFLOP/s", peak / 1e9);
    println!(
        "{:<30} {:>9} {:>8} {:>9} {:>8} {:>9} {:>8} {:>12} {:>14}",
        "block (median of 5)",
        "fwd ms",
        "% peak",
        "dW ms",
        "% peak",
        "dW+dX ms",
        "% peak",
        "GEMM % peak",
        "pooled dW ms"
    );
    for (width, d) in [("quarter", 4), ("full", 1)] {
        if !only.is_empty() && !only.iter().any(|o| o == width) {
            continue;
        }
        let mut tot = [0.0f64; 4];
        let mut flop_tot = 0.0;
        for (i, (cin, cout, side)) in blocks(d).into_iter().enumerate() {
            let g = Cnhw::new(cin, n, side, side);
            let x = rand(g.len(), 1 + i as u64);
            let w = rand(cout * cin * 9, 20 + i as u64);
            let dy = rand(cout * g.row(), 40 + i as u64);
            let (mut y, mut dw, mut dx) = (Vec::new(), Vec::new(), Vec::new());
            let mut s = Default::default();
            let flop = 2.0 * (cout * cin * 9 * g.row()) as f64;
            let fwd = median_secs(5, || ConvOps::conv3x3_forward(&be, &x, g, &w, cout, &mut y, &mut s).unwrap()).0;
            let back = |dx: Option<&mut Vec<f32>>, dw: &mut Vec<f32>, s: &mut _| {
                let a = ConvBackward { x: &x, g, w: &w, cout, dy: &dy };
                ConvOps::conv3x3_backward(&be, a, dw, dx, s).unwrap()
            };
            let dwt = median_secs(5, || back(None, &mut dw, &mut s)).0;
            let both = median_secs(5, || back(Some(&mut dx), &mut dw, &mut s)).0;
            // dW where the block ends in a 2 × 2 max pool: dY holds the
            // largest of each window's four values where it is positive,
            // zeros elsewhere (the sparse dW's case).
            let pooled = [0, 2, 5].contains(&i).then(|| {
                let dyp = pooled_dy(&dy, cout * g.n, side);
                median_secs(5, || {
                    let a = ConvBackward { x: &x, g, w: &w, cout, dy: &dyp };
                    ConvOps::conv3x3_backward(&be, a, &mut dw, None, &mut s).unwrap()
                })
                .0
            });
            // The same product as a plain GEMM over a materialised im2col.
            let col = rand(cin * 9 * g.row(), 60 + i as u64);
            let mut out = vec![0.0f32; cout * g.row()];
            let gemm = median_secs(5, || {
                let a = MatRef::new(&w, cout, cin * 9).unwrap();
                let b = MatRef::new(&col, cin * 9, g.row()).unwrap();
                be.gemm(a, b, MatMut::new(&mut out, cout, g.row()).unwrap(), Epilogue::None).unwrap()
            })
            .0;
            let pct = |t: f64, f: f64| 100.0 * f / t / peak;
            println!(
                "{:<30} {:>9.2} {:>7.1}% {:>9.2} {:>7.1}% {:>9.2} {:>7.1}% {:>11.1}% {:>14}",
                format!("{width} {i}: {cin}→{cout}, {side}×{side}"),
                fwd * 1e3,
                pct(fwd, flop),
                dwt * 1e3,
                pct(dwt, flop),
                both * 1e3,
                pct(both, 2.0 * flop),
                pct(gemm, flop),
                pooled.map_or(String::new(), |t| format!("{:.2}", t * 1e3))
            );
            for (t, v) in tot.iter_mut().zip([fwd, dwt, both, gemm]) {
                *t += v;
            }
            flop_tot += flop;
        }
        let pct = |t: f64, f: f64| 100.0 * f / t / peak;
        println!(
            "{:<30} {:>9.2} {:>7.1}% {:>9.2} {:>7.1}% {:>9.2} {:>7.1}% {:>11.1}%",
            format!("{width}: all six"),
            tot[0] * 1e3,
            pct(tot[0], flop_tot),
            tot[1] * 1e3,
            pct(tot[1], flop_tot),
            tot[2] * 1e3,
            pct(tot[2], 2.0 * flop_tot),
            pct(tot[3], flop_tot)
        );
    }
}

/// `dy` (planes of side × side) as a 2 × 2 max pool's gradient: in each
/// window the largest value where it is positive, zeros elsewhere.
fn pooled_dy(dy: &[f32], planes: usize, side: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; dy.len()];
    for p in 0..planes {
        let o = p * side * side;
        for wy in (0..side).step_by(2) {
            for wx in (0..side).step_by(2) {
                let taps = [(wy, wx), (wy, wx + 1), (wy + 1, wx), (wy + 1, wx + 1)].map(|(y, x)| o + y * side + x);
                let best = taps.into_iter().fold(taps[0], |b, t| if dy[t] > dy[b] { t } else { b });
                if dy[best] > 0.0 {
                    out[best] = dy[best];
                }
            }
        }
    }
    out
}
