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
