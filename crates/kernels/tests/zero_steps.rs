//! The AVX2 GEMM leaves out the k steps at which an A panel's six rows are
//! all zero (an FF layer's input has whole blocks of zeros) and stays bit
//! for bit with the scalar specification, which runs every step: the FF
//! forward (bias + ReLU over packed weights) and the fused dW + Adam
//! update, at 1 and 2 threads, including where leaving a step out would
//! change a zero's sign or hide an inf.

mod common;

use common::{blocky_zeros, check, values};
use ffwd_kernels::*;
use proptest::prelude::*;

fn adam(t: u64, weight_decay: f32, decoupled: bool) -> OptimStep {
    OptimStep::Adam(AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, decoupled, t })
}

/// W, its optimiser state and db after one fused backward + update.
fn fused_update(
    be: &CpuBackend,
    (x, h, dldg): (&[f32], &[f32], &[f32]),
    w0: &PackedMat,
    (m0, v0): (&[f32], &[f32]),
    step: &OptimStep,
) -> Vec<Vec<f32>> {
    let (rows, din, dout) = (dldg.len(), w0.rows(), w0.cols());
    let (mut w, mut m, mut v) = (w0.clone(), m0.to_vec(), v0.to_vec());
    if matches!(step, OptimStep::Sgd(_)) {
        v.clear();
    }
    let mut db = vec![f32::NAN; dout];
    let xm = MatRef::new(x, rows, din).unwrap();
    be.linear_backward_update((xm, h, dldg, None), &mut w, step, (&mut m, &mut v), &mut db, &mut Vec::new()).unwrap();
    vec![w.data().to_vec(), m, v, db]
}

/// `values` in W's packed layout (zero on the padding), a few of them −0.
fn packed_state(din: usize, dout: usize, seed: u64, abs: bool) -> Vec<f32> {
    let p = PackedMat::from_row_major(&values(din * dout, seed), din, dout).unwrap();
    p.data().iter().map(|&x| if abs { x.abs() } else { x }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn packed_forward_leaving_out_zero_steps_matches_spec_bitwise(
        m in prop_oneof![Just(1usize), Just(7), Just(12), Just(200), Just(530), 1usize..40],
        k in prop_oneof![Just(1usize), Just(9), Just(64), Just(257), Just(300), 1usize..100],
        n in prop_oneof![Just(1usize), Just(16), Just(17), Just(70), 1usize..40],
        seed in any::<u64>(),
        plant_inf in any::<bool>(),
        plant_nan_x in any::<bool>(),
    ) {
        let mut x = blocky_zeros(m, k, seed);
        if plant_nan_x {
            // A NaN among a panel's zeros: its step is not all zero.
            x[(seed as usize / 7) % (m * k)] = f32::NAN;
        }
        let mut wr = values(k * n, seed ^ 1);
        if plant_inf {
            // One non-finite weight: no zero step may be left out then.
            wr[(seed as usize) % (k * n)] = if seed % 2 == 0 { f32::INFINITY } else { f32::NAN };
        }
        let w = PackedMat::from_row_major(&wr, k, n).unwrap();
        let bias = values(n, seed ^ 2);
        check("linear_forward_packed, blocky zeros", |be| {
            let mut h = vec![f32::NAN; m * n];
            let mut g = vec![f32::NAN; m];
            be.linear_forward_packed(MatRef::new(&x, m, k).unwrap(), &w, &bias, MatMut::new(&mut h, m, n).unwrap(), &mut g).unwrap();
            vec![h, g]
        });
    }

    #[test]
    fn fused_backward_leaving_out_zero_steps_matches_spec_bitwise(
        rows in prop_oneof![Just(1usize), Just(6), Just(200), Just(257), Just(530), 1usize..40],
        din in prop_oneof![Just(6usize), Just(13), Just(60), Just(530), 1usize..40],
        dout in prop_oneof![Just(1usize), Just(16), Just(17), Just(70), 1usize..40],
        seed in any::<u64>(),
        t in 1u64..100,
        decay in 0u8..3,
        zero_every in 0usize..4,
        optim in 0u8..4,
    ) {
        let xn = blocky_zeros(rows, din, seed);
        let h: Vec<f32> = values(rows * dout, seed ^ 3).into_iter().map(numerics::relu).collect();
        let mut dldg = values(rows, seed ^ 4);
        for (i, g) in dldg.iter_mut().enumerate() {
            if zero_every > 0 && i % (zero_every + 1) == 0 {
                *g = 0.0;
            }
        }
        let w0 = PackedMat::from_row_major(&values(din * dout, seed ^ 5), din, dout).unwrap();
        // `values` gives ±0 often, so some moments, momentum buffers and
        // weights are −0: the lanes where a zero gradient's sign reaches the
        // update.
        let (m0, v0) = (packed_state(din, dout, seed ^ 6, false), packed_state(din, dout, seed ^ 7, true));
        let wd = if decay == 0 { 0.0 } else { 0.01 };
        let step = match optim {
            0 | 1 => adam(t, wd, decay == 2),
            _ => OptimStep::Sgd(SgdStep { lr: 1e-2, momentum: if optim == 2 { 0.0 } else { 0.9 }, weight_decay: wd, nesterov: decay == 2 }),
        };
        check("linear_backward_update, blocky zeros", |be| fused_update(be, (&xn, &h, &dldg), &w0, (&m0, &v0), &step));
    }
}

/// `(xn, h, dL/dG)` of 16 rows, 6 inputs and 16 outputs in which the spec's
/// dW at (0, 0) underflows to −0 at step 0 and turns +0 at step 1, a step
/// that is left out (see the tests below).
fn underflow_case() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (rows, din, dout) = (16, 6, 16);
    let (a, hz) = (2f32.powi(-80), 2f32.powi(-76));
    // The premise, in plain f32: the two chains differ in the zero's sign.
    let spec = 0f32.mul_add(1.0, a.mul_add(-2.0 * hz, 0.0));
    let left_out = a.mul_add(-2.0 * hz, 0.0);
    assert_eq!((spec.to_bits(), left_out.to_bits()), (0.0f32.to_bits(), (-0.0f32).to_bits()));
    // Row 0 of xn has a at input 0; every other row is all zero, so the
    // panel of inputs 0..6 keeps only step 0.
    let mut xn = vec![0.0f32; rows * din];
    xn[0] = a;
    // dz = h · 2·dL/dG: row 0 is −2^-75 in column 0, every other row +1.
    let mut h = vec![0.5f32; rows * dout];
    h[0] = hz;
    let mut dldg = vec![1.0f32; rows];
    dldg[0] = -1.0;
    (xn, h, dldg)
}

/// The case the sink's check exists for. In the spec, the first fma of an
/// output underflows to −0 (2^-80 · −2^-75), and the next step, whose A
/// panel is all zero, turns it into +0 (−0 + 0·1); leaving that step out
/// keeps −0. With the moment m = −0, Adam's new m is +0 from the spec's
/// gradient and −0 from the other. The fused update must see this and
/// recompute the tile: W, m and v come out as the spec's.
#[test]
fn a_zero_whose_sign_adam_would_see_is_recomputed_by_the_spec() {
    let (xn, h, dldg) = underflow_case();
    let (din, dout) = (6, 16);
    let w0 = PackedMat::from_row_major(&vec![0.25f32; din * dout], din, dout).unwrap();
    let mut m0 = vec![0.0f32; w0.data().len()];
    m0[w0.index(0, 0)] = -0.0;
    let v0 = vec![0.0f32; w0.data().len()];
    let step = adam(3, 0.0, false);
    let run = |be: &CpuBackend| fused_update(be, (&xn, &h, &dldg), &w0, (&m0, &v0), &step);
    let want = run(&CpuBackend::scalar());
    assert_eq!(want[1][w0.index(0, 0)].to_bits(), 0.0f32.to_bits(), "the spec's new moment is +0");
    check("fused update, a zero's sign", run);
}

/// The same underflow under SGD, where the spec's gradient is +0 and the
/// other −0, in the three ways SGD's update can see it:
/// - plain SGD with w = −0: `w − lr·g` is −0 from one and +0 from the other;
/// - momentum with buf = −0: `buf' = μ·buf + g` likewise;
/// - Nesterov with μ·buf rounding to −0 (μ = 0.1, buf the smallest
///   negative subnormal) and w = −0: the step `μ·buf' + g`, then w.
///
/// The fused update recomputes the tile each time.
#[test]
fn a_zero_whose_sign_sgd_would_see_is_recomputed_by_the_spec() {
    let (xn, h, dldg) = underflow_case();
    let (din, dout) = (6, 16);
    let tiny_neg = -f32::from_bits(1);
    // (momentum, nesterov, w at (0, 0), buf at (0, 0), which output shows it)
    let cases = [(0.0, false, -0.0, 0.0, 0), (0.9, false, 0.25, -0.0, 1), (0.1, true, -0.0, tiny_neg, 0)];
    for (momentum, nesterov, w00, buf00, shows) in cases {
        let mut wr = vec![0.25f32; din * dout];
        wr[0] = w00;
        let w0 = PackedMat::from_row_major(&wr, din, dout).unwrap();
        let mut buf0 = vec![0.0f32; w0.data().len()];
        buf0[w0.index(0, 0)] = buf00;
        let step = OptimStep::Sgd(SgdStep { lr: 0.1, momentum, weight_decay: 0.0, nesterov });
        let run = |be: &CpuBackend| fused_update(be, (&xn, &h, &dldg), &w0, (&buf0, &buf0), &step);
        let want = run(&CpuBackend::scalar());
        // The spec's zero is +0; had it been −0, this output would be −0 → +0
        // (w) or +0 → −0 (buf').
        let got = want[shows][w0.index(0, 0)];
        assert_eq!(got, 0.0, "momentum {momentum}, nesterov {nesterov}");
        check(&format!("fused SGD update, momentum {momentum}, nesterov {nesterov}"), run);
    }
}

/// The forward leaves out zero steps only against finite weights; a weight
/// made infinite through `data_mut` after a forward has found them finite
/// is seen by the next forward (0 · inf is a NaN there, as in the spec).
#[test]
fn a_weight_made_infinite_after_a_forward_is_seen_by_the_next() {
    let (m, k, n) = (12, 20, 16);
    let mut x = values(m * k, 5);
    for i in 0..m {
        x[i * k + 5] = 0.0;
    }
    let mut w = PackedMat::from_row_major(&vec![0.5f32; k * n], k, n).unwrap();
    let bias = vec![1.0f32; n];
    let forward = |be: &CpuBackend, w: &PackedMat| {
        let (mut h, mut g) = (vec![f32::NAN; m * n], vec![f32::NAN; m]);
        be.linear_forward_packed(MatRef::new(&x, m, k).unwrap(), w, &bias, MatMut::new(&mut h, m, n).unwrap(), &mut g)
            .unwrap();
        vec![h, g]
    };
    check("forward, finite weights", |be| forward(be, &w));
    assert!(w.all_finite());
    let at = w.index(5, 3);
    w.data_mut()[at] = f32::INFINITY;
    assert!(!w.all_finite());
    let want = forward(&CpuBackend::scalar(), &w);
    assert!((0..m).all(|i| want[0][i * n + 3] == 0.0), "the spec: NaN in column 3, which the ReLU makes +0");
    check("forward, one weight made infinite", |be| forward(be, &w));
}

/// The fused update checks every weight it writes, so the packed matrix
/// knows afterwards whether all are finite.
#[test]
fn the_fused_update_records_whether_every_weight_is_finite() {
    let Some(be) = common::avx2() else { return };
    let (rows, din, dout) = (8, 10, 20);
    let xn = values(rows * din, 1).iter().map(|v| v.clamp(-2.0, 2.0)).collect::<Vec<_>>();
    let h = vec![1.0f32; rows * dout];
    let dldg = vec![0.5f32; rows];
    let w0 = PackedMat::from_row_major(
        &values(din * dout, 2).iter().map(|v| v.clamp(-1.0, 1.0)).collect::<Vec<_>>(),
        din,
        dout,
    )
    .unwrap();
    let update = |lr: f32| {
        let mut w = w0.clone();
        let mut buf = vec![0.0f32; w.data().len()];
        let step = OptimStep::Sgd(SgdStep { lr, momentum: 0.0, weight_decay: 0.0, nesterov: false });
        let xm = MatRef::new(&xn, rows, din).unwrap();
        be.linear_backward_update(
            (xm, &h, &dldg, None),
            &mut w,
            &step,
            (&mut buf, &mut []),
            &mut vec![0.0; dout],
            &mut Vec::new(),
        )
        .unwrap();
        w
    };
    let tame = update(1e-3);
    assert!(tame.all_finite() && tame.data().iter().all(|v| v.is_finite()));
    let blown = update(3e38);
    assert!(blown.data().iter().any(|v| !v.is_finite()), "the step overflows");
    assert!(!blown.all_finite());
}
