//! The transcendentals against f64, and scalar == AVX2 over a dense sweep of
//! f32 bit patterns (every 131st pattern: 32.8 million inputs per function).
//! The measured maxima are printed; run with `--nocapture` to see them.

use ffwd_kernels::{numerics, CpuBackend, Unary};

fn ulp_of(r: f64) -> f64 {
    let a = (r as f32).abs();
    if a < f32::MIN_POSITIVE {
        return 2f64.powi(-149);
    }
    let e = ((a.to_bits() >> 23) & 0xff) as i32 - 127;
    2f64.powi(e - 23)
}

fn reference(f: Unary, x: f64) -> f64 {
    match f {
        Unary::Exp => x.exp(),
        Unary::Log1p => x.ln_1p(),
        Unary::Ln => x.ln(),
        Unary::Softplus => {
            if x > 0.0 {
                x + (-x).exp().ln_1p()
            } else {
                x.exp().ln_1p()
            }
        }
        Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

const STRIDE: u32 = 131;

#[test]
fn transcendentals_are_within_a_few_ulp_of_f64_and_avx2_matches_spec() {
    let fast = CpuBackend::avx2().ok();
    if fast.is_none() {
        eprintln!("SKIP avx2 half (no avx2/fma); accuracy half still runs");
    }
    let funcs =
        [(Unary::Exp, 1.0), (Unary::Log1p, 3.0), (Unary::Ln, 3.0), (Unary::Softplus, 3.0), (Unary::Sigmoid, 3.0)];
    for (f, bound) in funcs {
        let spec = f.scalar();
        let mut worst = (0.0f64, 0.0f32);
        let mut mismatches = 0u64;
        let mut xs = Vec::with_capacity(1 << 16);
        let mut out = vec![0.0f32; 1 << 16];
        let mut bits = 0u64;
        while bits <= u32::MAX as u64 {
            xs.clear();
            while xs.len() < (1 << 16) && bits <= u32::MAX as u64 {
                xs.push(f32::from_bits(bits as u32));
                bits += STRIDE as u64;
            }
            if let Some(be) = &fast {
                be.unary(f, &xs, &mut out[..xs.len()]).unwrap();
            }
            for (i, &x) in xs.iter().enumerate() {
                let y = spec(x);
                if fast.is_some() {
                    let z = out[i];
                    if !(y.to_bits() == z.to_bits() || (y.is_nan() && z.is_nan())) {
                        mismatches += 1;
                    }
                }
                let r = reference(f, x as f64);
                if !r.is_finite() || r.abs() > f32::MAX as f64 {
                    continue;
                }
                let err = ((y as f64) - r).abs() / ulp_of(r);
                if err > worst.0 {
                    worst = (err, x);
                }
            }
        }
        println!("{f:?}: max error {:.3} ulp (at x = {:e}); avx2 mismatches: {mismatches}", worst.0, worst.1);
        assert_eq!(mismatches, 0, "{f:?}: AVX2 differs from the spec");
        assert!(worst.0 <= bound, "{f:?}: {:.3} ulp at {:e} exceeds {bound}", worst.0, worst.1);
    }
}

#[test]
fn exp_of_every_integer_and_half_integer_in_range_is_close() {
    for i in -208..=178 {
        let x = i as f32 * 0.5;
        let r = (x as f64).exp();
        let y = numerics::exp(x) as f64;
        if r < f32::MAX as f64 {
            assert!((y - r).abs() <= ulp_of(r), "exp({x})");
        }
    }
}

/// The Adam specification (step size and second-moment correction folded
/// into host scalars) against textbook Adam in f64, over many steps: the
/// f32 trajectory stays within a relative 1e-5 of the f64 one.
#[test]
fn adam_spec_follows_textbook_adam_in_f64() {
    use ffwd_kernels::AdamStep;
    let be = CpuBackend::scalar();
    let n = 257;
    let grad =
        |t: usize, i: usize| (((i * 7919 + t * 104_729) % 2001) as f64 / 1000.0 - 1.0) * 10f64.powi((i % 5) as i32 - 2);
    let (mut w, mut m, mut v) = (vec![0.5f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let (mut w64, mut m64, mut v64) = (vec![0.5f64; n], vec![0.0f64; n], vec![0.0f64; n]);
    let (lr, b1, b2, eps) = (1e-3f64, 0.9f64, 0.999f64, 1e-8f64);
    let mut worst = 0f64;
    for t in 1..=300u64 {
        let g: Vec<f64> = (0..n).map(|i| grad(t as usize, i)).collect();
        let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
        let step = AdamStep {
            lr: lr as f32,
            beta1: b1 as f32,
            beta2: b2 as f32,
            eps: eps as f32,
            weight_decay: 0.0,
            decoupled: false,
            t,
        };
        be.adam(&step, &mut w, &g32, &mut m, &mut v).unwrap();
        for i in 0..n {
            let gi = g32[i] as f64;
            m64[i] = b1 * m64[i] + (1.0 - b1) * gi;
            v64[i] = b2 * v64[i] + (1.0 - b2) * gi * gi;
            let mh = m64[i] / (1.0 - b1.powi(t as i32));
            let vh = v64[i] / (1.0 - b2.powi(t as i32));
            w64[i] -= lr * mh / (vh.sqrt() + eps);
            worst = worst.max(((w[i] as f64 - w64[i]) / w64[i].abs().max(1e-3)).abs());
        }
    }
    println!("Adam, 300 steps: worst relative deviation from f64 {worst:.2e}");
    approx::assert_relative_eq!(worst, 0.0, epsilon = 1e-5);
}
