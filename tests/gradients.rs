//! Every local gradient against central finite differences of an
//! independent f64 implementation of the same loss.

use approx::assert_relative_eq;
use ffwd::kernels::{CpuBackend, FfLoss, GoodnessForm, Norm};
use ffwd::layers::config::{OptimConfig, PeerConfig};
use ffwd::layers::ff::{FfLayer, Objective};
use ffwd::layers::readout::Readout;
use ffwd::layers::stats::Scalars;
use ffwd::tensor::{stream, Philox};

fn data(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Philox::new(seed, stream::noise(0)).fill_uniform(&mut v, -scale, scale);
    v
}

/// The normalisation's divisor of a row (ε = 1e-8), in f64.
fn norm_den64(xr: &[f64], norm: Norm) -> f64 {
    let ss: f64 = xr.iter().map(|v| v * v).sum();
    match norm {
        Norm::Rms => (ss / xr.len() as f64).sqrt() + 1e-8,
        Norm::L2 => ss.sqrt() + 1e-8,
        Norm::None => 1.0,
    }
}

/// The FF layer loss in f64, from scratch.
fn ff_loss_f64(
    (x, rows, din): (&[f32], usize, usize),
    w: &[f64],
    b: &[f64],
    norm: Norm,
    loss: FfLoss,
    form: GoodnessForm,
) -> f64 {
    let dout = b.len();
    let n = rows / 2;
    let mut g = vec![0.0f64; rows];
    for r in 0..rows {
        let xr: Vec<f64> = x[r * din..(r + 1) * din].iter().map(|&v| v as f64).collect();
        let den = norm_den64(&xr, norm);
        for j in 0..dout {
            let mut z = b[j];
            for k in 0..din {
                z += xr[k] / den * w[k * dout + j];
            }
            let h = z.max(0.0);
            g[r] += h * h;
        }
        if form == GoodnessForm::Mean {
            g[r] /= dout as f64;
        }
    }
    let sp = |t: f64| if t > 0.0 { t + (-t).exp().ln_1p() } else { t.exp().ln_1p() };
    let total: f64 = match loss {
        FfLoss::Threshold { theta } => {
            let th = theta as f64;
            (0..n).map(|i| sp(th - g[i]) + sp(g[n + i] - th)).sum()
        }
        FfLoss::Symba { alpha } => (0..n).map(|i| sp(-(alpha as f64) * (g[i] - g[n + i]))).sum(),
    };
    total / n as f64
}

/// Peer normalisation's penalty in f64, from scratch: the running means
/// `m_j = μ·m0_j + (1−μ)·mean over the n positive rows of h_ij`, then
/// `λ/(2(1−μ)) · Σ_j (m_j − m̄)²`.
fn peer_penalty_f64((x, n, din): (&[f32], usize, usize), w: &[f64], b: &[f64], norm: Norm, p: &PeerConfig) -> f64 {
    let dout = b.len();
    let (mu, lambda) = (p.momentum as f64, p.lambda as f64);
    let mut mean = vec![0.0f64; dout];
    for r in 0..n {
        let xr: Vec<f64> = x[r * din..(r + 1) * din].iter().map(|&v| v as f64).collect();
        let den = norm_den64(&xr, norm);
        for j in 0..dout {
            let z = b[j] + (0..din).map(|k| xr[k] / den * w[k * dout + j]).sum::<f64>();
            mean[j] += z.max(0.0) / n as f64;
        }
    }
    let m: Vec<f64> = mean.iter().map(|&a| mu * p.init as f64 + (1.0 - mu) * a).collect();
    let mbar = m.iter().sum::<f64>() / dout as f64;
    lambda / (2.0 * (1.0 - mu)) * m.iter().map(|v| (v - mbar) * (v - mbar)).sum::<f64>()
}

/// The layer's gradients (dW row-major, db) after one `compute_grads`.
fn layer_grads(
    norm: Norm,
    loss: FfLoss,
    form: GoodnessForm,
    peer: Option<&PeerConfig>,
    bias_up: f32,
) -> (FfLayer<CpuBackend>, Vec<f32>, Vec<f32>) {
    let (din, dout, n) = (7, 5, 3);
    let rows = 2 * n;
    let be = CpuBackend::best();
    let mut layer = FfLayer::new(&be, din, dout, &OptimConfig::default(), 11, 0).unwrap();
    if let Some(p) = peer {
        layer.enable_peer(&be, p).unwrap();
    }
    // biases positive so that most units are on and no z sits near the kink
    for b in layer.b.iter_mut() {
        *b = b.abs() + bias_up;
    }
    let x = data(5, rows * din, 1.0);
    let mut stat = Scalars::new(&be, 3).unwrap();
    layer.compute_grads(&be, &x, rows, Objective { norm, eps: 1e-8, loss, form }, stat.slot(0)).unwrap();
    let (dw, db) = layer.grads();
    let (dw, db) = (dw.clone(), db.clone());
    (layer, dw, db)
}

fn check_layer(norm: Norm, loss: FfLoss, form: GoodnessForm) {
    check_layer_with(norm, loss, form, None, 0.3);
}

fn check_layer_with(norm: Norm, loss: FfLoss, form: GoodnessForm, peer: Option<&PeerConfig>, bias_up: f32) {
    let (din, n) = (7, 3);
    let rows = 2 * n;
    let (layer, dw, db) = layer_grads(norm, loss, form, peer, bias_up);
    let x = data(5, rows * din, 1.0);
    let w64: Vec<f64> = layer.w.to_row_major().iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = layer.b.iter().map(|&v| v as f64).collect();
    let h = 1e-6;
    let fd = |w: &[f64], b: &[f64]| {
        ff_loss_f64((&x, rows, din), w, b, norm, loss, form)
            + peer.map_or(0.0, |p| peer_penalty_f64((&x, n, din), w, b, norm, p))
    };
    for i in 0..w64.len() {
        let (mut wp, mut wm) = (w64.clone(), w64.clone());
        wp[i] += h;
        wm[i] -= h;
        let num = (fd(&wp, &b64) - fd(&wm, &b64)) / (2.0 * h);
        assert_relative_eq!(dw[i] as f64, num, epsilon = 2e-4, max_relative = 2e-3);
    }
    for j in 0..b64.len() {
        let (mut bp, mut bm) = (b64.clone(), b64.clone());
        bp[j] += h;
        bm[j] -= h;
        let num = (fd(&w64, &bp) - fd(&w64, &bm)) / (2.0 * h);
        assert_relative_eq!(db[j] as f64, num, epsilon = 2e-4, max_relative = 2e-3);
    }
}

#[test]
fn ff_threshold_sum_gradient_matches_finite_differences() {
    check_layer(Norm::Rms, FfLoss::Threshold { theta: 5.0 }, GoodnessForm::Sum);
}

#[test]
fn ff_threshold_mean_l2_gradient_matches_finite_differences() {
    check_layer(Norm::L2, FfLoss::Threshold { theta: 0.3 }, GoodnessForm::Mean);
}

/// Where the ReLU is on, the peer term is the exact gradient of its
/// penalty (biases of 3 or more keep every unit of these inputs on:
/// |xn·w| ≤ ‖xn‖·‖w‖ < 2.7).
#[test]
fn peer_normalisation_term_matches_finite_differences_of_its_penalty() {
    // λ large enough that the term is a visible part of the gradient
    let peer = PeerConfig { lambda: 0.5, momentum: 0.9, init: 0.5 };
    for (norm, loss, form) in [
        (Norm::Rms, FfLoss::Threshold { theta: 60.0 }, GoodnessForm::Sum),
        (Norm::Rms, FfLoss::Symba { alpha: 0.1 }, GoodnessForm::Sum),
    ] {
        check_layer_with(norm, loss, form, Some(&peer), 3.0);
        let (_, without, _) = layer_grads(norm, loss, form, None, 3.0);
        let (_, with, _) = layer_grads(norm, loss, form, Some(&peer), 3.0);
        let diff = without.iter().zip(&with).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff > 1e-2, "the peer term changed dW by only {diff}");
    }
}

/// The term passes the ReLU straight through (as in Hinton's code): a unit
/// that is off on every row still gets a bias gradient from it, `n` times
/// its p (its running mean sits below its peers', so it is pushed up).
#[test]
fn peer_normalisation_reaches_a_unit_that_is_never_on() {
    let be = CpuBackend::best();
    let (din, dout, n) = (7, 5, 3);
    let peer = PeerConfig { lambda: 0.5, momentum: 0.9, init: 0.5 };
    let mut grads = Vec::new();
    for p in [None, Some(&peer)] {
        let mut layer = FfLayer::new(&be, din, dout, &OptimConfig::default(), 11, 0).unwrap();
        if let Some(p) = p {
            layer.enable_peer(&be, p).unwrap();
        }
        for (j, b) in layer.b.iter_mut().enumerate() {
            *b = if j == 0 { -10.0 } else { b.abs() + 3.0 };
        }
        let x = data(5, 2 * n * din, 1.0);
        let mut stat = Scalars::new(&be, 3).unwrap();
        let obj =
            Objective { norm: Norm::Rms, eps: 1e-8, loss: FfLoss::Threshold { theta: 60.0 }, form: GoodnessForm::Sum };
        layer.compute_grads(&be, &x, 2 * n, obj, stat.slot(0)).unwrap();
        assert!(layer.activity().chunks(dout).all(|r| r[0] == 0.0), "unit 0 is off");
        grads.push(layer.grads().1[0]);
    }
    assert_eq!(grads[0], 0.0, "without the term an off unit has no gradient");
    assert!(grads[1] < 0.0, "the term pushes the idle unit up (gradient descent), got {}", grads[1]);
}

#[test]
fn symba_gradient_matches_finite_differences() {
    check_layer(Norm::Rms, FfLoss::Symba { alpha: 4.0 }, GoodnessForm::Mean);
    check_layer(Norm::None, FfLoss::Symba { alpha: 0.5 }, GoodnessForm::Sum);
}

#[test]
fn readout_cross_entropy_gradient_matches_finite_differences() {
    let (f, c, n) = (6, 4, 5);
    let be = CpuBackend::best();
    let mut r = Readout::new(&be, f, c, &OptimConfig::default()).unwrap();
    r.w = data(3, f * c, 0.5);
    r.b = data(4, c, 0.5);
    let feats = data(6, n * f, 1.0);
    let labels: Vec<u8> = vec![0, 3, 1, 1, 2];
    let mut stat = Scalars::new(&be, 1).unwrap();
    r.compute_grads(&be, &feats, &labels, stat.slot(0)).unwrap();
    let (dw, db) = r.grads();
    let loss = |w: &[f64], b: &[f64]| -> f64 {
        let mut t = 0.0;
        for i in 0..n {
            let z: Vec<f64> =
                (0..c).map(|j| b[j] + (0..f).map(|k| feats[i * f + k] as f64 * w[k * c + j]).sum::<f64>()).collect();
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
            t += s.ln() + m - z[labels[i] as usize];
        }
        t / n as f64
    };
    let w64: Vec<f64> = r.w.iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = r.b.iter().map(|&v| v as f64).collect();
    let h = 1e-6;
    for i in 0..w64.len() {
        let (mut p, mut m) = (w64.clone(), w64.clone());
        p[i] += h;
        m[i] -= h;
        assert_relative_eq!(
            dw[i] as f64,
            (loss(&p, &b64) - loss(&m, &b64)) / (2.0 * h),
            epsilon = 1e-5,
            max_relative = 1e-3
        );
    }
    for j in 0..c {
        let (mut p, mut m) = (b64.clone(), b64.clone());
        p[j] += h;
        m[j] -= h;
        assert_relative_eq!(
            db[j] as f64,
            (loss(&w64, &p) - loss(&w64, &m)) / (2.0 * h),
            epsilon = 1e-5,
            max_relative = 1e-3
        );
    }
}

/// Weights and biases of every layer in f64.
type Layers64 = [(Vec<f64>, Vec<f64>)];

/// An MLP of FF layers (norm → linear → ReLU) in f64: every layer's
/// activity for input rows `x`.
fn mlp64(x: &[f64], rows: usize, layers: &[(Vec<f64>, Vec<f64>)], norm: Norm) -> Vec<Vec<f64>> {
    let mut a = x.to_vec();
    let mut out = Vec::new();
    for (w, b) in layers {
        let (din, dout) = (a.len() / rows, b.len());
        let mut h = vec![0.0f64; rows * dout];
        for r in 0..rows {
            let xr = &a[r * din..(r + 1) * din];
            let den = norm_den64(xr, norm);
            for j in 0..dout {
                let z = b[j] + (0..din).map(|k| xr[k] / den * w[k * dout + j]).sum::<f64>();
                h[r * dout + j] = z.max(0.0);
            }
        }
        out.push(h.clone());
        a = h;
    }
    out
}

fn layers64(ls: &[ffwd::layers::ff::FfLayer<CpuBackend>]) -> Vec<(Vec<f64>, Vec<f64>)> {
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    ls.iter().map(|l| (f(&l.w.to_row_major()), f(&l.b))).collect()
}

/// Central differences of `loss` over every weight and bias of every layer,
/// against the analytic (dW, db) of each layer.
fn check_layers(
    tag: &str,
    ls: &[(Vec<f64>, Vec<f64>)],
    grads: &[(Vec<f32>, Vec<f32>)],
    loss: &dyn Fn(&Layers64) -> f64,
) {
    let h = 1e-6;
    for (l, (dw, db)) in grads.iter().enumerate() {
        for (which, n) in [(0, dw.len()), (1, db.len())] {
            for i in 0..n {
                let at = |e: f64| {
                    let mut q = ls.to_vec();
                    if which == 0 {
                        q[l].0[i] += e;
                    } else {
                        q[l].1[i] += e;
                    }
                    loss(&q)
                };
                let num = (at(h) - at(-h)) / (2.0 * h);
                let a = if which == 0 { dw[i] } else { db[i] } as f64;
                assert!(
                    (a - num).abs() <= 2e-5 + 2e-3 * num.abs(),
                    "{tag}: layer {l} {} [{i}]: analytic {a:e} vs finite difference {num:e}",
                    if which == 0 { "dW" } else { "db" }
                );
            }
        }
    }
}

fn xent64(z: &[f64], c: usize, labels: &[u8]) -> f64 {
    let n = labels.len();
    let mut t = 0.0;
    for i in 0..n {
        let r = &z[i * c..(i + 1) * c];
        let m = r.iter().cloned().fold(f64::MIN, f64::max);
        t += r.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m - r[labels[i] as usize];
    }
    t / n as f64
}

#[test]
fn backprop_mlp_gradients_match_finite_differences_through_every_layer_and_the_head() {
    use ffwd::layers::backprop::BpMlp;
    use ffwd::layers::config::{FfConfig, MlpTraining, NormKind};
    let be = CpuBackend::best();
    for (norm_kind, norm) in [(NormKind::Rms, Norm::Rms), (NormKind::None, Norm::None)] {
        let cfg = FfConfig {
            training: MlpTraining::CrossEntropy,
            sizes: vec![6, 5, 4],
            norm: norm_kind,
            ..FfConfig::default()
        };
        let (din, c, n) = (7, 3, 5);
        let mut net = BpMlp::new(be, cfg, din, c, 3).unwrap();
        let x = data(8, n * din, 1.0);
        let labels = [2u8, 0, 1, 1, 2];
        let mut stat = Scalars::new(&be, 1).unwrap();
        net.compute_grads(&x, &labels, stat.slot(0)).unwrap();
        let loss = stat.read(&be).unwrap()[0];
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (hw, hb): (Vec<f64>, Vec<f64>) =
            (net.head.w.iter().map(|&v| v as f64).collect(), net.head.b.iter().map(|&v| v as f64).collect());
        let head_loss = |ls: &[(Vec<f64>, Vec<f64>)], hw: &[f64], hb: &[f64]| {
            let hs = mlp64(&x64, n, ls, norm);
            let last = hs.last().unwrap();
            let d = last.len() / n;
            let z: Vec<f64> = (0..n * c)
                .map(|t| hb[t % c] + (0..d).map(|k| last[(t / c) * d + k] * hw[k * c + t % c]).sum::<f64>())
                .collect();
            xent64(&z, c, &labels)
        };
        let ls = layers64(&net.layers);
        let l0 = head_loss(&ls, &hw, &hb);
        assert!((l0 - loss as f64).abs() < 1e-5, "loss {loss} vs f64 {l0}");
        let grads: Vec<(Vec<f32>, Vec<f32>)> =
            net.layers.iter().map(|l| (l.grads().0.to_vec(), l.grads().1.to_vec())).collect();
        check_layers(&format!("bp mlp {norm:?}"), &ls, &grads, &|q| head_loss(q, &hw, &hb));
        // The head's own gradients.
        let (dw, db) = net.head.grads();
        let h = 1e-6;
        for i in 0..hw.len() {
            let at = |e: f64| {
                let mut q = hw.clone();
                q[i] += e;
                head_loss(&ls, &q, &hb)
            };
            let num = (at(h) - at(-h)) / (2.0 * h);
            assert!((dw[i] as f64 - num).abs() <= 2e-5 + 2e-3 * num.abs(), "head dW[{i}] {} vs {num}", dw[i]);
        }
        for j in 0..c {
            let at = |e: f64| {
                let mut q = hb.clone();
                q[j] += e;
                head_loss(&ls, &hw, &q)
            };
            let num = (at(h) - at(-h)) / (2.0 * h);
            assert!((db[j] as f64 - num).abs() <= 2e-5 + 2e-3 * num.abs(), "head db[{j}] {} vs {num}", db[j]);
        }
    }
}

#[test]
fn goodness_backprop_ablation_gradients_match_finite_differences_of_the_summed_layer_losses() {
    use ffwd::layers::config::{FfConfig, LossKind, MlpTraining};
    use ffwd::layers::ff::FfNet;
    let be = CpuBackend::best();
    for loss_kind in [LossKind::Threshold, LossKind::Symba] {
        let cfg = FfConfig {
            training: MlpTraining::GoodnessBackprop,
            sizes: vec![6, 5, 4],
            loss: loss_kind,
            theta: Some(1.5),
            alpha: 2.0,
            ..FfConfig::default()
        };
        let (din, c, n) = (9, 3, 4);
        let mut net = FfNet::new(be, cfg, din, c, 5).unwrap();
        let x = data(9, n * din, 1.0);
        let (labels, neg) = ([0u8, 2, 1, 1], [1u8, 0, 2, 0]);
        net.backprop_grads(&x, &labels, &neg).unwrap();
        // The embedded input: label one-hot over the first c pixels.
        let mut x64 = vec![0.0f64; 2 * n * din];
        for (r, &y) in labels.iter().chain(&neg).enumerate() {
            for k in 0..din {
                x64[r * din + k] = if k < c { (k == y as usize) as u8 as f64 } else { x[(r % n) * din + k] as f64 };
            }
        }
        let total = |ls: &[(Vec<f64>, Vec<f64>)]| -> f64 {
            let hs = mlp64(&x64, 2 * n, ls, Norm::Rms);
            let sp = |t: f64| if t > 0.0 { t + (-t).exp().ln_1p() } else { t.exp().ln_1p() };
            hs.iter()
                .map(|h| {
                    let d = h.len() / (2 * n);
                    let g: Vec<f64> = (0..2 * n).map(|r| h[r * d..(r + 1) * d].iter().map(|v| v * v).sum()).collect();
                    let per: f64 = (0..n)
                        .map(|i| match loss_kind {
                            LossKind::Threshold => sp(1.5 - g[i]) + sp(g[n + i] - 1.5),
                            LossKind::Symba => sp(-2.0 * (g[i] - g[n + i])),
                        })
                        .sum();
                    per / n as f64
                })
                .sum()
        };
        let ls = layers64(&net.layers);
        let grads: Vec<(Vec<f32>, Vec<f32>)> =
            net.layers.iter().map(|l| (l.grads().0.to_vec(), l.grads().1.to_vec())).collect();
        check_layers(&format!("goodness backprop {loss_kind:?}"), &ls, &grads, &total);
    }
}

#[test]
fn cosine_embedding_gradient_matches_finite_differences() {
    use ffwd::kernels::LossScratch;
    let be = CpuBackend::best();
    let (m, d) = (4, 9);
    let (a, b) = (data(21, m * d, 1.0), data(22, m * d, 1.0));
    let mut grad = vec![0.0; m * d];
    let l = be.cosine_embedding(&a, &b, d, &mut grad, &mut LossScratch::default()).unwrap();
    let f = |a: &[f64]| -> f64 {
        (0..m)
            .map(|i| {
                let (x, y) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
                let dot: f64 = x.iter().zip(y).map(|(p, &q)| p * q as f64).sum();
                let nx = x.iter().map(|p| p * p).sum::<f64>().sqrt();
                let ny = y.iter().map(|&q| (q as f64) * (q as f64)).sum::<f64>().sqrt();
                1.0 - dot / (nx * ny)
            })
            .sum::<f64>()
            / m as f64
    };
    let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    assert_relative_eq!(l as f64, f(&a64), epsilon = 1e-6, max_relative = 1e-5);
    let h = 1e-6;
    for i in 0..a64.len() {
        let (mut p, mut q) = (a64.clone(), a64.clone());
        p[i] += h;
        q[i] -= h;
        assert_relative_eq!(grad[i] as f64, (f(&p) - f(&q)) / (2.0 * h), epsilon = 1e-5, max_relative = 1e-3);
    }
}

/// `n` rows of `x·W + b` (W row-major in × out), ReLU'd if asked, in f64.
fn dense64(x: &[f64], n: usize, w: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
    let (dout, din) = (b.len(), w.len() / b.len());
    (0..n * dout)
        .map(|t| {
            let z = b[t % dout] + (0..din).map(|k| x[(t / dout) * din + k] * w[k * dout + t % dout]).sum::<f64>();
            if relu {
                z.max(0.0)
            } else {
                z
            }
        })
        .collect()
}

/// Binary cross-entropy of softmax rows against one-hot labels, in f64.
fn bce64(z: &[f64], c: usize, labels: &[u8]) -> f64 {
    let mut t = 0.0;
    for (r, &y) in z.chunks(c).zip(labels) {
        let mx = r.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = r.iter().map(|v| (v - mx).exp()).sum();
        for (j, &v) in r.iter().enumerate() {
            let p = (v - mx).exp() / s;
            t -= if j == y as usize { p.ln() } else { (1.0 - p).ln() };
        }
    }
    t / z.len() as f64
}

#[test]
fn softmax_bce_gradient_matches_finite_differences() {
    use ffwd::kernels::LossScratch;
    let be = CpuBackend::best();
    let (m, c) = (5, 4);
    let z = data(31, m * c, 3.0);
    let labels = [0u32, 3, 1, 2, 3];
    let mut grad = vec![0.0; m * c];
    let l = be.softmax_bce(&z, c, &labels, &mut grad, &mut LossScratch::default()).unwrap();
    let f = |z: &[f64]| bce64(z, c, &labels.map(|y| y as u8));
    let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    assert_relative_eq!(l as f64, f(&z64), epsilon = 1e-6, max_relative = 1e-5);
    let h = 1e-6;
    for i in 0..z64.len() {
        let (mut p, mut q) = (z64.clone(), z64.clone());
        p[i] += h;
        q[i] -= h;
        assert_relative_eq!(grad[i] as f64, (f(&p) - f(&q)) / (2.0 * h), epsilon = 1e-5, max_relative = 1e-3);
    }
}

#[test]
fn ffcl_layer_local_gradients_match_finite_differences() {
    use ffwd::layers::ffcl::{FfclConfig, FfclNet};
    let be = CpuBackend::best();
    let (din, c, n) = (6, 3, 4);
    let mut net = FfclNet::new(be, FfclConfig { sizes: vec![5, 4], ..FfclConfig::default() }, din, c, 9).unwrap();
    let x = data(41, n * din, 1.0);
    let labels = [2u8, 0, 1, 2];
    net.compute_grads(&x, &labels).unwrap();
    let f64v = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let dense = |x: &[f64], w: &[f64], b: &[f64], relu: bool| dense64(x, n, w, b, relu);
    let cos_loss = |a: &[f64], b: &[f64], d: usize| cos_loss64(a, b, n, d);
    let bce = |z: &[f64]| bce64(z, c, &labels);
    let x64 = f64v(&x);
    let [a, b] = &net.twins;
    let (a0w, a0b, a1w, a1b) = (f64v(&a[0].w), f64v(&a[0].b), f64v(&a[1].w), f64v(&a[1].b));
    // Copy B's outputs are constants to copy A's losses.
    let hb0 = dense(&x64, &f64v(&b[0].w), &f64v(&b[0].b), true);
    let hb1 = dense(&hb0, &f64v(&b[1].w), &f64v(&b[1].b), true);
    let ha0 = dense(&x64, &a0w, &a0b, true);
    let ha1 = dense(&ha0, &a1w, &a1b, true);
    check_dense("copy A layer 0", &a[0], &|w, b| cos_loss(&dense(&x64, w, b, true), &hb0, 5));
    check_dense("copy A layer 1", &a[1], &|w, b| cos_loss(&dense(&ha0, w, b, true), &hb1, 4));
    check_dense("copy A output", &a[2], &|w, b| bce(&dense(&ha1, w, b, false)));
}

/// The mean cosine-embedding loss `1 − cos` of `n` rows of `d` values, in
/// f64; norms floored at ε, as the kernel (an all-zero ReLU row).
fn cos_loss64(a: &[f64], b: &[f64], n: usize, d: usize) -> f64 {
    (0..n)
        .map(|i| {
            let (p, q) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
            let dot: f64 = p.iter().zip(q).map(|(u, v)| u * v).sum();
            let np = p.iter().map(|u| u * u).sum::<f64>().sqrt().max(1e-8);
            let nq = q.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-8);
            1.0 - dot / (np * nq)
        })
        .sum::<f64>()
        / n as f64
}

/// With `detach_inputs = false` each copy's whole loss (every hidden
/// layer's cosine term and the output's cross-entropy) reaches every layer
/// of that copy below it; copy B's outputs stay constants.
#[test]
fn ffcl_gradients_without_detached_inputs_match_finite_differences_of_each_copys_total_loss() {
    use ffwd::layers::ffcl::{FfclConfig, FfclNet};
    let be = CpuBackend::best();
    let (din, c, n) = (6, 3, 4);
    let cfg = FfclConfig { sizes: vec![5, 4], detach_inputs: false, ..FfclConfig::default() };
    let mut net = FfclNet::new(be, cfg, din, c, 9).unwrap();
    let x = data(41, n * din, 1.0);
    let labels = [2u8, 0, 1, 2];
    net.compute_grads(&x, &labels).unwrap();
    let f64v = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let dense = |x: &[f64], w: &[f64], b: &[f64], relu: bool| dense64(x, n, w, b, relu);
    let cos_loss = |a: &[f64], b: &[f64], d: usize| cos_loss64(a, b, n, d);
    let x64 = f64v(&x);
    let [a, b] = &net.twins;
    let hb0 = dense(&x64, &f64v(&b[0].w), &f64v(&b[0].b), true);
    let hb1 = dense(&hb0, &f64v(&b[1].w), &f64v(&b[1].b), true);
    let p: Vec<(Vec<f64>, Vec<f64>)> = a.iter().map(|l| (f64v(&l.w), f64v(&l.b))).collect();
    // copy A's total loss with layer `k`'s parameters replaced
    let total = |k: usize, w: &[f64], bias: &[f64]| -> f64 {
        let pick = |l: usize| if l == k { (w, bias) } else { (&p[l].0[..], &p[l].1[..]) };
        let h0 = dense(&x64, pick(0).0, pick(0).1, true);
        let h1 = dense(&h0, pick(1).0, pick(1).1, true);
        let z = dense(&h1, pick(2).0, pick(2).1, false);
        cos_loss(&h0, &hb0, 5) + cos_loss(&h1, &hb1, 4) + bce64(&z, c, &labels)
    };
    for (k, layer) in a.iter().enumerate() {
        check_dense(&format!("copy A layer {k}, not detached"), layer, &|w, b| total(k, w, b));
    }
}

/// Central differences of `loss` over every weight and bias of `layer`
/// against its analytic (dW, db).
fn check_dense(what: &str, layer: &ffwd::layers::ffcl::Dense<CpuBackend>, loss: &dyn Fn(&[f64], &[f64]) -> f64) {
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (w, b) = (f(&layer.w), f(&layer.b));
    let (dw, db) = layer.last_grads();
    let h = 1e-6;
    for (which, n) in [(0, w.len()), (1, b.len())] {
        for i in 0..n {
            let at = |e: f64| {
                let (mut w2, mut b2) = (w.clone(), b.clone());
                if which == 0 {
                    w2[i] += e;
                } else {
                    b2[i] += e;
                }
                loss(&w2, &b2)
            };
            let num = (at(h) - at(-h)) / (2.0 * h);
            let a = if which == 0 { dw[i] } else { db[i] } as f64;
            assert!(
                (a - num).abs() <= 2e-5 + 2e-3 * num.abs(),
                "{what} {}[{i}]: analytic {a:e} vs finite difference {num:e}",
                if which == 0 { "dW" } else { "db" }
            );
        }
    }
}

fn mse64(a: &[f64], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, &y)| (x - y as f64).powi(2)).sum::<f64>() / a.len() as f64
}

#[test]
fn ae_and_dae_cell_gradients_match_finite_differences_of_the_reconstruction_loss() {
    use ffwd::layers::uff::{Cell, SamplePos, UffConfig, UffNet};
    let be = CpuBackend::best();
    let cfg = UffConfig {
        cells: vec![ffwd::layers::uff::CellKind::Ae, ffwd::layers::uff::CellKind::Dae],
        ..UffConfig::default()
    };
    let mut net = UffNet::new(be, cfg, (1, 1, 12), 3, 4).unwrap();
    let n = 5;
    let x = data(51, n * 12, 1.0);
    let pos = SamplePos { seed: 4, epoch: 1, first: 30, cell: 1 };
    for k in 0..2 {
        // Cell 1 learns on cell 0's latent.
        let input = if k == 0 {
            x.clone()
        } else {
            net.cells[0].encode(&be, &x, n).unwrap();
            net.cells[0].latent().to_vec()
        };
        net.cells[k].compute_grads(&be, &input, n, pos).unwrap();
        let Cell::Ae(c) = &net.cells[k] else { panic!("an AE cell") };
        let (xc, xn) = c.last_input();
        if k == 1 {
            assert!(xc != xn, "the DAE's input must be corrupted");
            assert!(xc.iter().zip(xn).filter(|(a, b)| a != b).count() > xc.len() / 2);
        }
        let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (xc64, (ew, eb), (dw, db)) = (f(xc), (f(&c.enc.w), f(&c.enc.b)), (f(&c.dec.w), f(&c.dec.b)));
        let recon = |ew: &[f64], eb: &[f64], dw: &[f64], db: &[f64]| {
            let z = dense64(&xc64, n, ew, eb, true);
            mse64(&dense64(&z, n, dw, db, false), xn)
        };
        check_dense(&format!("cell {k} decoder"), &c.dec, &|w, b| recon(&ew, &eb, w, b));
        check_dense(&format!("cell {k} encoder"), &c.enc, &|w, b| recon(w, b, &dw, &db));
    }
}

#[test]
fn gan_cell_gradients_match_finite_differences_of_the_discriminator_and_generator_losses() {
    use ffwd::layers::uff::{Cell, CellKind, SamplePos, UffConfig, UffNet};
    let be = CpuBackend::best();
    let cfg = UffConfig { cells: vec![CellKind::Gan], ..UffConfig::default() };
    let mut net = UffNet::new(be, cfg, (1, 2, 5), 3, 6).unwrap();
    let n = 6;
    let x = data(61, n * 10, 1.0);
    net.cells[0].compute_grads(&be, &x, n, SamplePos { seed: 6, epoch: 0, first: 12, cell: 0 }).unwrap();
    let Cell::Gan(c) = &net.cells[0] else { panic!("a GAN cell") };
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (xn, noise, fake) = c.last_batch();
    let (xn, noise, fake) = (f(xn), f(noise), f(fake));
    let sp = |t: f64| if t > 0.0 { t + (-t).exp().ln_1p() } else { t.exp().ln_1p() };
    let (w1, b1, w2, b2) = (f(&c.d1.w), f(&c.d1.b), f(&c.d2.w), f(&c.d2.b));
    let (w3, b3, w4, b4) = (f(&c.g1.w), f(&c.g1.b), f(&c.g2.w), f(&c.g2.b));
    let disc = |x: &[f64], w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64]| {
        dense64(&dense64(x, n, w1, b1, true), n, w2, b2, false)
    };
    let d_loss = |w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64]| {
        let (r, q) = (disc(&xn, w1, b1, w2, b2), disc(&fake, w1, b1, w2, b2));
        (r.iter().map(|&z| sp(-z)).sum::<f64>() + q.iter().map(|&z| sp(z)).sum::<f64>()) / n as f64
    };
    let g_loss = |w3: &[f64], b3: &[f64], w4: &[f64], b4: &[f64]| {
        let g = dense64(&dense64(&noise, n, w3, b3, true), n, w4, b4, false);
        disc(&g, &w1, &b1, &w2, &b2).iter().map(|&z| sp(-z)).sum::<f64>() / n as f64
    };
    // The generator's output is the fake batch the discriminator saw.
    let g0 = dense64(&dense64(&noise, n, &w3, &b3, true), n, &w4, &b4, false);
    assert!(g0.iter().zip(&fake).all(|(a, b)| (a - b).abs() < 1e-4));
    check_dense("D hidden", &c.d1, &|w, b| d_loss(w, b, &w2, &b2));
    check_dense("D output", &c.d2, &|w, b| d_loss(&w1, &b1, w, b));
    check_dense("G hidden", &c.g1, &|w, b| g_loss(w, b, &w4, &b4));
    check_dense("G output", &c.g2, &|w, b| g_loss(&w3, &b3, w, b));
}
