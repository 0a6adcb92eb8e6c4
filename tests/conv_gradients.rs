//! Gradients of the convolutional FF blocks against central finite
//! differences of an independent f64 implementation: conv dW and dX, batch
//! norm (γ, β and the input), the length norm, max-pool, ReLU, the mean
//! goodness with SymBa and threshold losses, and the two-block path of
//! overlapping local updates (block k's loss back through block k into
//! block k−1's parameters and input — which is also the label
//! embedding's path).

use ffwd::kernels::{Cnhw, CpuBackend, FfLoss, GoodnessForm, LossScratch};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::conv::{BlockMode, BlockNorm, ConvBlock};
use ffwd::tensor::{stream, Philox};

const BN_EPS: f64 = 1e-5;
const LEN_EPS: f64 = 1e-4;

fn data(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Philox::new(seed, stream::noise(0)).fill_uniform(&mut v, -scale, scale);
    v
}

/// One block's parameters in f64.
#[derive(Clone)]
struct P64 {
    cin: usize,
    cout: usize,
    pool: bool,
    norm: BlockNorm,
    w: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
}

impl P64 {
    fn of(b: &ConvBlock<CpuBackend>) -> Self {
        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect();
        Self { cin: b.cin, cout: b.cout, pool: b.pool, norm: b.norm, w: f(&b.w), gamma: f(&b.gamma), beta: f(&b.beta) }
    }
}

/// The block in f64: CNHW in, CNHW out with its geometry.
fn block64(p: &P64, x: &[f64], g: Cnhw) -> (Vec<f64>, Cnhw) {
    let (n, h, w, hw) = (g.n, g.h, g.w, g.plane());
    let mut xn = x.to_vec();
    match p.norm {
        BlockNorm::Batch => {
            for c in 0..g.c {
                let row = &x[c * g.row()..(c + 1) * g.row()];
                let m = row.iter().sum::<f64>() / row.len() as f64;
                let v = row.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / row.len() as f64;
                for (o, a) in xn[c * g.row()..(c + 1) * g.row()].iter_mut().zip(row) {
                    *o = (a - m) / (v + BN_EPS).sqrt() * p.gamma[c] + p.beta[c];
                }
            }
        }
        BlockNorm::Length => {
            for b in 0..n {
                let mut ss = 0.0;
                for c in 0..g.c {
                    ss += x[(c * n + b) * hw..][..hw].iter().map(|a| a * a).sum::<f64>();
                }
                let inv = 1.0 / ((ss / g.per_image() as f64).sqrt() + LEN_EPS);
                for c in 0..g.c {
                    for i in 0..hw {
                        xn[(c * n + b) * hw + i] = x[(c * n + b) * hw + i] * inv;
                    }
                }
            }
        }
        BlockNorm::None => {}
    }
    let gc = g.with_channels(p.cout);
    let mut r = vec![0.0f64; gc.len()];
    for co in 0..p.cout {
        for b in 0..n {
            for oy in 0..h {
                for ox in 0..w {
                    let mut acc = 0.0;
                    for ci in 0..p.cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                acc += p.w[co * p.cin * 9 + ci * 9 + ky * 3 + kx]
                                    * xn[(ci * n + b) * hw + iy as usize * w + ix as usize];
                            }
                        }
                    }
                    r[(co * n + b) * hw + oy * w + ox] = acc.max(0.0);
                }
            }
        }
    }
    if !p.pool {
        return (r, gc);
    }
    let go = Cnhw::new(p.cout, n, h / 2, w / 2);
    let mut o = vec![0.0f64; go.len()];
    for pl in 0..p.cout * n {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let at = |dy: usize, dx: usize| r[pl * hw + (2 * oy + dy) * w + 2 * ox + dx];
                o[pl * go.plane() + oy * (w / 2) + ox] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
    (o, go)
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The FF loss on a block output (mean goodness; n positives then n negatives).
fn loss64(o: &[f64], g: Cnhw, loss: FfLoss) -> f64 {
    let (n2, hw) = (g.n, g.plane());
    let gm: Vec<f64> = (0..n2)
        .map(|b| (0..g.c).map(|c| o[(c * n2 + b) * hw..][..hw].iter().map(|a| a * a).sum::<f64>()).sum::<f64>())
        .map(|s| s / g.per_image() as f64)
        .collect();
    let n = n2 / 2;
    match loss {
        FfLoss::Symba { alpha } => {
            (0..n).map(|i| softplus(-(alpha as f64) * (gm[i] - gm[n + i]))).sum::<f64>() / n as f64
        }
        FfLoss::Threshold { theta } => {
            let t = theta as f64;
            (0..n2).map(|i| softplus(if i < n { t - gm[i] } else { gm[i] - t })).sum::<f64>() / n as f64
        }
    }
}

/// Two blocks (lower, upper); the loss is the upper block's.
fn pair_loss(lo: &P64, up: &P64, x: &[f64], g: Cnhw, loss: FfLoss) -> f64 {
    let (h, g1) = block64(lo, x, g);
    let (o, g2) = block64(up, &h, g1);
    loss64(&o, g2, loss)
}

fn close(what: &str, analytic: f32, fd: f64) {
    let tol = 2e-6 + 1e-3 * fd.abs();
    eprintln!("{what} {analytic:e} {fd:e}");
    assert!((analytic as f64 - fd).abs() <= tol, "{what}: analytic {analytic:e} vs finite difference {fd:e}");
}

/// Checks dL/dθ for a few entries of every parameter of both blocks and of
/// the input, for the upper block's loss, against the f64 central
/// difference.
fn check_pair(norm: BlockNorm, loss: FfLoss, pools: (bool, bool)) {
    let be = CpuBackend::best();
    let optim = OptimConfig::default();
    let g = Cnhw::new(2, 6, 4, 4);
    let mut lo = ConvBlock::new(&be, (2, 3, pools.0, norm), &optim, 2, (7, 0)).unwrap();
    let mut up = ConvBlock::new(&be, (3, 2, pools.1, norm), &optim, 2, (7, 1)).unwrap();
    // Non-trivial γ and β.
    lo.gamma = data(11, 2, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
    lo.beta = data(12, 2, 0.3);
    up.gamma = data(13, 3, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
    up.beta = data(14, 3, 0.3);
    let x = data(3, g.len(), 1.5);
    let mode =
        BlockMode { train: true, momentum: 0.1, bn_eps: BN_EPS as f32, norm_eps: LEN_EPS as f32, goodness: true };
    lo.forward(&be, &x, g, mode).unwrap();
    let g1 = lo.out_geom(g);
    let h = lo.output().to_vec();
    up.forward(&be, &h, g1, mode).unwrap();
    let g2 = up.out_geom(g1);
    let mut dldg = vec![0.0; g.n];
    be.ff_loss(loss, GoodnessForm::Mean, g2.per_image(), up.sumsq(), &mut dldg, &mut LossScratch::default()).unwrap();
    let mut dout = vec![0.0; g2.len()];
    be.block_local_grad(up.output(), g2, &dldg, &mut dout).unwrap();
    let mut dh = Vec::new();
    up.backward(&be, &h, &dout, Some(&mut dh)).unwrap();
    let mut dx = Vec::new();
    lo.backward(&be, &x, &dh, Some(&mut dx)).unwrap();

    let (plo, pup) = (P64::of(&lo), P64::of(&up));
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let eps = 1e-5;
    let fd = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
    let tag = format!("{norm:?} {loss:?} pools {pools:?}");
    for i in [0, 7, 20, 53] {
        let d = fd(&|e| {
            let mut p = plo.clone();
            p.w[i] += e;
            pair_loss(&p, &pup, &x64, g, loss)
        });
        close(&format!("{tag}: lower dW[{i}]"), lo.grads().0[i], d);
        let d = fd(&|e| {
            let mut p = pup.clone();
            p.w[i] += e;
            pair_loss(&plo, &p, &x64, g, loss)
        });
        close(&format!("{tag}: upper dW[{i}]"), up.grads().0[i], d);
    }
    if norm == BlockNorm::Batch {
        for c in 0..2 {
            let d = fd(&|e| {
                let mut p = plo.clone();
                p.gamma[c] += e;
                pair_loss(&p, &pup, &x64, g, loss)
            });
            close(&format!("{tag}: lower dγ[{c}]"), lo.grads().1[c], d);
            let d = fd(&|e| {
                let mut p = plo.clone();
                p.beta[c] += e;
                pair_loss(&p, &pup, &x64, g, loss)
            });
            close(&format!("{tag}: lower dβ[{c}]"), lo.grads().2[c], d);
            let d = fd(&|e| {
                let mut p = pup.clone();
                p.gamma[c] += e;
                pair_loss(&plo, &p, &x64, g, loss)
            });
            close(&format!("{tag}: upper dγ[{c}]"), up.grads().1[c], d);
        }
    }
    for i in [0, 5, 33, 70, 150, g.len() - 1] {
        let d = fd(&|e| {
            let mut xe = x64.clone();
            xe[i] += e;
            pair_loss(&plo, &pup, &xe, g, loss)
        });
        close(&format!("{tag}: dx[{i}]"), dx[i], d);
    }
}

#[test]
fn two_block_olu_gradients_match_finite_differences_with_batch_norm_and_symba() {
    check_pair(BlockNorm::Batch, FfLoss::Symba { alpha: 4.0 }, (true, false));
    check_pair(BlockNorm::Batch, FfLoss::Symba { alpha: 4.0 }, (false, true));
}

#[test]
fn two_block_olu_gradients_match_finite_differences_with_length_norm_and_threshold() {
    check_pair(BlockNorm::Length, FfLoss::Threshold { theta: 0.5 }, (true, false));
    check_pair(BlockNorm::None, FfLoss::Threshold { theta: 0.5 }, (false, false));
}

/// The backprop baseline: softmax cross-entropy of a linear head on the
/// flattened last block, in f64 (head W is features × classes).
fn bp_loss(blocks: &[P64], hw_: &[f64], hb: &[f64], x: &[f64], g: Cnhw, labels: &[u8]) -> f64 {
    let (mut a, mut ga) = (x.to_vec(), g);
    for p in blocks {
        let (o, go) = block64(p, &a, ga);
        a = o;
        ga = go;
    }
    let (n, d, hw, k) = (ga.n, ga.per_image(), ga.plane(), hb.len());
    let mut total = 0.0;
    for b in 0..n {
        let feat: Vec<f64> = (0..d).map(|j| a[((j / hw) * n + b) * hw + j % hw]).collect();
        let z: Vec<f64> = (0..k).map(|c| hb[c] + (0..d).map(|j| feat[j] * hw_[j * k + c]).sum::<f64>()).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - z[labels[b] as usize];
    }
    total / n as f64
}

#[test]
fn backprop_conv_net_gradients_match_finite_differences_through_every_block_and_the_head() {
    use ffwd::layers::backprop::BpConvNet;
    use ffwd::layers::conv::ConvFfConfig;
    let be = CpuBackend::best();
    for (norm, pool) in [(BlockNorm::Batch, vec![0]), (BlockNorm::Length, vec![1]), (BlockNorm::None, vec![])] {
        let cfg = ConvFfConfig { channels: vec![3, 4, 2], pool, norm, ..ConvFfConfig::trifecta_small() };
        let image = (2, 4, 4);
        let mut net = BpConvNet::new(be, cfg, image, 3, 5).unwrap();
        for (k, b) in net.blocks.iter_mut().enumerate() {
            b.gamma = data(20 + k as u64, b.cin, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
            b.beta = data(30 + k as u64, b.cin, 0.3);
        }
        let n = 5;
        let x = data(3, n * 32, 1.5);
        let labels = [0u8, 2, 1, 1, 0];
        let mut stat = ffwd::layers::stats::Scalars::new(&be, 1).unwrap();
        net.compute_grads(&x, &labels, stat.slot(0)).unwrap();
        let loss = stat.read(&be).unwrap()[0];

        let g = Cnhw::new(2, n, 4, 4);
        let mut x64 = vec![0.0f64; g.len()];
        for b in 0..n {
            for i in 0..32 {
                x64[((i / 16) * n + b) * 16 + i % 16] = x[b * 32 + i] as f64;
            }
        }
        let ps: Vec<P64> = net.blocks.iter().map(P64::of).collect();
        let hw64: Vec<f64> = net.head.w.iter().map(|&v| v as f64).collect();
        let hb64: Vec<f64> = net.head.b.iter().map(|&v| v as f64).collect();
        let l0 = bp_loss(&ps, &hw64, &hb64, &x64, g, &labels);
        assert!((l0 - loss as f64).abs() < 1e-5 * l0.abs().max(1.0), "loss {loss} vs f64 {l0}");
        let eps = 1e-5;
        let fd = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
        let tag = format!("bp {norm:?}");
        for k in 0..ps.len() {
            let nw = ps[k].w.len();
            for i in [0, nw / 3, nw / 2, nw - 1] {
                let d = fd(&|e| {
                    let mut q = ps.clone();
                    q[k].w[i] += e;
                    bp_loss(&q, &hw64, &hb64, &x64, g, &labels)
                });
                close(&format!("{tag}: block {k} dW[{i}]"), net.blocks[k].grads().0[i], d);
            }
            if norm == BlockNorm::Batch {
                for c in 0..ps[k].cin {
                    let d = fd(&|e| {
                        let mut q = ps.clone();
                        q[k].gamma[c] += e;
                        bp_loss(&q, &hw64, &hb64, &x64, g, &labels)
                    });
                    close(&format!("{tag}: block {k} dγ[{c}]"), net.blocks[k].grads().1[c], d);
                    let d = fd(&|e| {
                        let mut q = ps.clone();
                        q[k].beta[c] += e;
                        bp_loss(&q, &hw64, &hb64, &x64, g, &labels)
                    });
                    close(&format!("{tag}: block {k} dβ[{c}]"), net.blocks[k].grads().2[c], d);
                }
            }
        }
        let (dw, db) = net.head.grads();
        for i in [0, 5, hw64.len() / 2, hw64.len() - 1] {
            let d = fd(&|e| {
                let mut q = hw64.clone();
                q[i] += e;
                bp_loss(&ps, &q, &hb64, &x64, g, &labels)
            });
            close(&format!("{tag}: head dW[{i}]"), dw[i], d);
        }
        for c in 0..3 {
            let d = fd(&|e| {
                let mut q = hb64.clone();
                q[c] += e;
                bp_loss(&ps, &hw64, &q, &x64, g, &labels)
            });
            close(&format!("{tag}: head db[{c}]"), db[c], d);
        }
    }
}

/// A 3×3 conv (pad 1, no bias, no ReLU) in f64 on CNHW.
fn conv64(x: &[f64], g: Cnhw, w: &[f64], cout: usize) -> Vec<f64> {
    let (n, h, wd, hw) = (g.n, g.h, g.w, g.plane());
    let mut out = vec![0.0f64; cout * n * hw];
    for co in 0..cout {
        for b in 0..n {
            for oy in 0..h {
                for ox in 0..wd {
                    let mut acc = 0.0;
                    for ci in 0..g.c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                acc += w[co * g.c * 9 + ci * 9 + ky * 3 + kx]
                                    * x[(ci * n + b) * hw + iy as usize * wd + ix as usize];
                            }
                        }
                    }
                    out[(co * n + b) * hw + oy * wd + ox] = acc;
                }
            }
        }
    }
    out
}

#[test]
fn cae_cell_gradients_match_finite_differences_through_pool_upsample_and_both_convs() {
    use ffwd::layers::uff::{Cell, CellKind, SamplePos, UffConfig, UffNet};
    let be = CpuBackend::best();
    let cfg = UffConfig { cells: vec![CellKind::Cae], ..UffConfig::default() };
    let (c, h, w, n) = (2, 4, 6, 3);
    let mut net = UffNet::new(be, cfg, (c, h, w), 3, 8).unwrap();
    let x = data(71, n * c * h * w, 1.0);
    net.cells[0].compute_grads(&be, &x, n, SamplePos::default()).unwrap();
    let Cell::Cae(cell) = &net.cells[0] else { panic!("a CAE cell") };
    let g = Cnhw::new(c, n, h, w);
    let x64: Vec<f64> = cell.last_input().iter().map(|&v| v as f64).collect();
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let enc = P64::of(&cell.enc);
    let wd = f(&cell.wd);
    let loss = |enc: &P64, wd: &[f64]| {
        let (lat, gl) = block64(enc, &x64, g);
        // Nearest 2× upsampling.
        let gu = Cnhw::new(gl.c, n, 2 * gl.h, 2 * gl.w);
        let mut up = vec![0.0f64; gu.len()];
        for p in 0..gl.c * n {
            for y in 0..gu.h {
                for xx in 0..gu.w {
                    up[p * gu.plane() + y * gu.w + xx] = lat[p * gl.plane() + (y / 2) * gl.w + xx / 2];
                }
            }
        }
        let r = conv64(&up, gu, wd, c);
        r.iter().zip(&x64).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / r.len() as f64
    };
    let (dwe, dwd) = cell.grads();
    let h_ = 1e-6;
    for (i, &g) in dwe.iter().enumerate() {
        let at = |e: f64| {
            let mut p = enc.clone();
            p.w[i] += e;
            loss(&p, &wd)
        };
        close(&format!("CAE encoder dW[{i}]"), g, (at(h_) - at(-h_)) / (2.0 * h_));
    }
    for (i, &g) in dwd.iter().enumerate() {
        let at = |e: f64| {
            let mut q = wd.clone();
            q[i] += e;
            loss(&enc, &q)
        };
        close(&format!("CAE decoder dW[{i}]"), g, (at(h_) - at(-h_)) / (2.0 * h_));
    }
}
