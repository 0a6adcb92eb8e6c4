//! Every local gradient against central finite differences of an
//! independent f64 implementation of the same loss.

use approx::assert_relative_eq;
use ffwd::kernels::{CpuBackend, FfLoss, GoodnessForm, Norm};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::ff::{FfLayer, Objective};
use ffwd::layers::readout::Readout;
use ffwd::tensor::{stream, Philox};

fn data(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Philox::new(seed, stream::noise(0)).fill_uniform(&mut v, -scale, scale);
    v
}

/// The FF layer loss in f64, from scratch.
#[allow(clippy::too_many_arguments)]
fn ff_loss_f64(
    x: &[f32],
    rows: usize,
    din: usize,
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
        let ss: f64 = xr.iter().map(|v| v * v).sum();
        let den = match norm {
            Norm::Rms => (ss / din as f64).sqrt() + 1e-8,
            Norm::L2 => ss.sqrt() + 1e-8,
            Norm::None => 1.0,
        };
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

fn check_layer(norm: Norm, loss: FfLoss, form: GoodnessForm) {
    let (din, dout, n) = (7, 5, 3);
    let rows = 2 * n;
    let be = CpuBackend::best();
    let mut layer = FfLayer::new(din, dout, &OptimConfig::default(), 11, 0);
    // biases positive so that most units are on and no z sits near the kink
    for b in layer.b.iter_mut() {
        *b = b.abs() + 0.3;
    }
    let x = data(5, rows * din, 1.0);
    layer.compute_grads(&be, &x, rows, Objective { norm, eps: 1e-8, loss, form }).unwrap();
    let (dw, db) = layer.grads();
    let w64: Vec<f64> = layer.w.to_row_major().iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = layer.b.iter().map(|&v| v as f64).collect();
    let h = 1e-6;
    let fd = |w: &[f64], b: &[f64]| ff_loss_f64(&x, rows, din, w, b, norm, loss, form);
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

#[test]
fn symba_gradient_matches_finite_differences() {
    check_layer(Norm::Rms, FfLoss::Symba { alpha: 4.0 }, GoodnessForm::Mean);
    check_layer(Norm::None, FfLoss::Symba { alpha: 0.5 }, GoodnessForm::Sum);
}

#[test]
fn readout_cross_entropy_gradient_matches_finite_differences() {
    let (f, c, n) = (6, 4, 5);
    let be = CpuBackend::best();
    let mut r = Readout::new(f, c, &OptimConfig::default());
    r.w = data(3, f * c, 0.5);
    r.b = data(4, c, 0.5);
    let feats = data(6, n * f, 1.0);
    let labels: Vec<u8> = vec![0, 3, 1, 1, 2];
    r.compute_grads(&be, &feats, &labels).unwrap();
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
