//! AVX2 == scalar specification, bit for bit, for every op, at 1 and 2
//! rayon threads. Shapes include 1, primes and non-multiples of 8/32 (and K
//! past the 256 K-block); values include ±0, subnormals, large magnitudes,
//! infinities and arbitrary bit patterns.

mod common;

use common::{check, dim, kdim, values};
use ffwd_kernels::*;
use proptest::prelude::*;

/// Values a kernel must survive: ordinary, ±0, subnormal, huge, tiny.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => (1u32..0x007F_FFFF).prop_map(f32::from_bits),
        1 => (1u32..0x007F_FFFF).prop_map(|b| -f32::from_bits(b)),
        1 => prop_oneof![Just(1e30f32), Just(-3e28f32), Just(7e-30f32)],
    ]
}

fn any_bits() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(f32::from_bits)
}

fn vec_of(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(value(), n)
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    NN,
    TN,
    NT,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn gemm_avx2_matches_spec_bitwise(
        (m, n, k) in (dim(), dim(), kdim()),
        layout in prop_oneof![Just(Layout::NN), Just(Layout::TN), Just(Layout::NT)],
        epi in 0usize..4,
        seed in any::<u64>(),
    ) {
        let a_data = values(m * k, seed);
        let c0 = values(m * n, seed ^ 3);
        let b_data = values(k * n, seed ^ 1);
        let bias = values(n, seed ^ 2);
        check("gemm", |be| {
            let (a, b) = match layout {
                Layout::NN => (MatRef::new(&a_data, m, k).unwrap(), MatRef::new(&b_data, k, n).unwrap()),
                Layout::TN => (MatRef::new(&a_data, k, m).unwrap().t(), MatRef::new(&b_data, k, n).unwrap()),
                Layout::NT => (MatRef::new(&a_data, m, k).unwrap(), MatRef::new(&b_data, n, k).unwrap().t()),
            };
            let mut c = if epi == 3 { c0.clone() } else { vec![f32::NAN; m * n] };
            let mut g = vec![f32::NAN; m];
            let e = match epi {
                0 => Epilogue::None,
                1 => Epilogue::Bias(bias.as_slice()),
                3 => Epilogue::Accumulate,
                _ => Epilogue::BiasRelu(bias.as_slice()),
            };
            if epi == 2 {
                be.linear_forward(a, b, &bias, MatMut::new(&mut c, m, n).unwrap(), &mut g).unwrap();
            } else {
                be.gemm(a, b, MatMut::new(&mut c, m, n).unwrap(), e).unwrap();
                g.clear();
            }
            vec![c, g]
        });
    }

    #[test]
    fn row_reductions_and_norms_match_spec_bitwise(
        (rows, d) in (dim(), prop_oneof![Just(1usize), Just(31), Just(32), Just(33), Just(784), 1usize..200]),
        seed in any::<u64>(),
        norm in prop_oneof![Just(Norm::Rms), Just(Norm::L2), Just(Norm::None)],
    ) {
        let x = values(rows * d, seed);
        check("row reductions", |be| {
            let mut ss = vec![0.0; rows];
            let mut su = vec![0.0; rows];
            let mut y = vec![0.0; rows * d];
            be.row_sumsq(&x, d, &mut ss).unwrap();
            be.row_sum(&x, d, &mut su).unwrap();
            be.normalize_rows(&x, &mut y, d, norm, 1e-8).unwrap();
            // with the sums of squares handed in, as a stack's next layer
            // gets them: the same bits as summing them again
            let mut yg = vec![0.0; rows * d];
            be.normalize_rows_given(&x, &ss, &mut yg, d, norm, 1e-8).unwrap();
            let same = y.iter().zip(&yg).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{}: normalize_rows_given differs from normalize_rows", be.name());
            vec![ss, su, y]
        });
    }

    #[test]
    fn transcendentals_match_spec_bitwise_on_arbitrary_bits(x in prop::collection::vec(any_bits(), 1..300)) {
        check("unary", |be| {
            [Unary::Exp, Unary::Log1p, Unary::Ln, Unary::Softplus, Unary::Sigmoid].iter().map(|&f| {
                let mut o = vec![0.0; x.len()];
                be.unary(f, &x, &mut o).unwrap();
                o
            }).collect()
        });
    }

    #[test]
    fn ff_losses_match_spec_bitwise(
        g in prop::collection::vec(prop_oneof![0.0f32..3000.0, Just(0.0), 0.0f32..2.0], 1..150),
        d in 1usize..3000,
        theta in 0.0f32..3000.0,
        alpha in 0.1f32..8.0,
        mean in any::<bool>(),
    ) {
        let mut g = g;
        if g.len() % 2 == 1 { g.pop(); }
        let form = if mean { GoodnessForm::Mean } else { GoodnessForm::Sum };
        check("ff_loss", |be| {
            let mut out = Vec::new();
            for loss in [FfLoss::Threshold { theta }, FfLoss::Symba { alpha }] {
                let mut d_g = vec![0.0; g.len()];
                let l = be.ff_loss(loss, form, d, &g, &mut d_g, &mut LossScratch::default()).unwrap();
                out.push(d_g);
                out.push(vec![l]);
            }
            out
        });
    }

    #[test]
    fn local_and_bias_grads_match_spec_bitwise(
        (m, d) in (dim(), dim()),
        h in vec_of(80 * 80),
        dldg in vec_of(80),
    ) {
        let h: Vec<f32> = h[..m * d].iter().map(|v| ffwd_kernels::numerics::relu(*v)).collect();
        let dldg = &dldg[..m];
        check("grads", |be| {
            let mut dz = vec![0.0; m * d];
            be.local_grad(&h, d, dldg, &mut dz).unwrap();
            let mut db = vec![0.0; d];
            be.bias_grad(&dz, m, d, &mut db).unwrap();
            vec![dz, db]
        });
    }

    #[test]
    fn optimizers_match_spec_bitwise(
        w in vec_of(300), g in vec_of(300), m0 in vec_of(300), v0 in prop::collection::vec(0.0f32..4.0, 300),
        n in 1usize..300, t in 1u64..5000, wd in prop_oneof![Just(0.0f32), 1e-4f32..0.1],
        decoupled in any::<bool>(), nesterov in any::<bool>(), momentum in prop_oneof![Just(0.0f32), 0.0f32..0.99],
    ) {
        let step = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd, decoupled, t };
        let sgd = SgdStep { lr: 1e-2, momentum, weight_decay: wd, nesterov };
        check("optim", |be| {
            let (mut wa, mut m, mut v) = (w[..n].to_vec(), m0[..n].to_vec(), v0[..n].to_vec());
            be.adam(&step, &mut wa, &g[..n], &mut m, &mut v).unwrap();
            let (mut ws, mut buf) = (w[..n].to_vec(), m0[..n].to_vec());
            be.sgd(&sgd, &mut ws, &g[..n], &mut buf).unwrap();
            vec![wa, m, v, ws, buf]
        });
    }

    #[test]
    fn softmax_xent_matches_spec_bitwise(
        (m, c) in (dim(), 1usize..20),
        z in prop::collection::vec(-30.0f32..30.0, 80 * 20),
        labels in prop::collection::vec(0u32..1000, 80),
    ) {
        let z = &z[..m * c];
        let labels: Vec<u32> = labels[..m].iter().map(|y| y % c as u32).collect();
        check("softmax_xent", |be| {
            let mut grad = vec![0.0; m * c];
            let l = be.softmax_xent(z, c, &labels, &mut grad, &mut LossScratch::default()).unwrap();
            vec![grad, vec![l]]
        });
    }

    #[test]
    fn softmax_bce_matches_spec_bitwise(
        (m, c) in (dim(), 1usize..20),
        z in prop::collection::vec(-30.0f32..30.0, 80 * 20),
        labels in prop::collection::vec(0u32..1000, 80),
    ) {
        let z = &z[..m * c];
        let labels: Vec<u32> = labels[..m].iter().map(|y| y % c as u32).collect();
        check("softmax_bce", |be| {
            let mut grad = vec![0.0; m * c];
            let l = be.softmax_bce(z, c, &labels, &mut grad, &mut LossScratch::default()).unwrap();
            let mut p = vec![0.0; m * c];
            be.softmax_rows(z, c, &mut p, &mut LossScratch::default()).unwrap();
            vec![grad, vec![l], p]
        });
    }

    #[test]
    fn cosine_embedding_matches_spec_bitwise((m, d) in (dim(), 1usize..70), seed in any::<u64>()) {
        let (a, b) = (values(m * d, seed), values(m * d, seed ^ 7));
        check("cosine_embedding", |be| {
            let mut grad = vec![0.0; m * d];
            let l = be.cosine_embedding(&a, &b, d, &mut grad, &mut LossScratch::default()).unwrap();
            vec![grad, vec![l]]
        });
    }
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let be = CpuBackend::best();
    let a = vec![0.0; 6];
    let b = vec![0.0; 6];
    let mut c = vec![0.0; 4];
    let e = be
        .gemm(
            MatRef::new(&a, 2, 3).unwrap(),
            MatRef::new(&b, 2, 3).unwrap(),
            MatMut::new(&mut c, 2, 2).unwrap(),
            Epilogue::None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("gemm") && e.contains("2×3"), "{e}");
    let e = be.softmax_xent(&[0.0; 4], 2, &[0, 5], &mut [0.0; 4], &mut LossScratch::default()).unwrap_err();
    assert!(e.to_string().contains("label 5"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn packed_forward_matches_spec_bitwise(
        (m, k, n) in (dim(), kdim(), prop_oneof![Just(1usize), Just(15), Just(16), Just(17), 1usize..70]),
        seed in any::<u64>(),
    ) {
        let x = values(m * k, seed);
        let w = PackedMat::from_row_major(&values(k * n, seed ^ 1), k, n).unwrap();
        let bias = values(n, seed ^ 2);
        check("linear_forward_packed", |be| {
            let mut h = vec![f32::NAN; m * n];
            let mut g = vec![f32::NAN; m];
            be.linear_forward_packed(MatRef::new(&x, m, k).unwrap(), &w, &bias, MatMut::new(&mut h, m, n).unwrap(), &mut g).unwrap();
            vec![h, g]
        });
    }

    #[test]
    fn fused_backward_update_matches_spec_bitwise(
        rows in prop_oneof![Just(1usize), Just(6), Just(200), Just(257), Just(530), 1usize..40],
        din in prop_oneof![Just(1usize), Just(7), Just(13), 1usize..40],
        dout in prop_oneof![Just(1usize), Just(16), Just(17), Just(70), 1usize..40],
        seed in any::<u64>(),
        adam in any::<bool>(),
        t in 1u64..100,
        zero_every in 0usize..4,
    ) {
        let xn = values(rows * din, seed);
        let h: Vec<f32> = values(rows * dout, seed ^ 3).into_iter().map(ffwd_kernels::numerics::relu).collect();
        // Some rows with dL/dG = ±0 (left out of dW and db) when zero_every > 0.
        let mut dldg = values(rows, seed ^ 4);
        for (i, g) in dldg.iter_mut().enumerate() {
            if zero_every > 0 && i % (zero_every + 1) == 0 {
                *g = if i % 2 == 0 { 0.0 } else { -0.0 };
            }
        }
        let w0 = PackedMat::from_row_major(&values(din * dout, seed ^ 5), din, dout).unwrap();
        let len = w0.data().len();
        let step = if adam {
            OptimStep::Adam(AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled: t % 2 == 0, t })
        } else {
            OptimStep::Sgd(SgdStep { lr: 1e-2, momentum: 0.9, weight_decay: 1e-4, nesterov: t % 2 == 0 })
        };
        let a0: Vec<f32> = PackedMat::from_row_major(&values(din * dout, seed ^ 6), din, dout).unwrap().data().to_vec();
        let b0: Vec<f32> = PackedMat::from_row_major(
            &values(din * dout, seed ^ 7).iter().map(|v| v.abs()).collect::<Vec<_>>(), din, dout).unwrap().data().to_vec();
        check("linear_backward_update", |be| {
            let (mut w, mut a, mut b) = (w0.clone(), a0.clone(), if adam { b0.clone() } else { Vec::new() });
            let mut db = vec![f32::NAN; dout];
            let mut scratch = Vec::new();
            be.linear_backward_update((MatRef::new(&xn, rows, din).unwrap(), &h, &dldg, None), &mut w, &step,
                (&mut a, &mut b), &mut db, &mut scratch).unwrap();
            assert_eq!(a.len(), len);
            vec![w.data().to_vec(), a, b, db]
        });
    }
}

/// The bits of W, its optimiser state and db after one fused FF backward +
/// update of `w0` (state `m0`, `v0`) on `x` (one row per dL/dG value).
fn fused_update_bits(
    be: &CpuBackend,
    x: &[f32],
    h: &[f32],
    dldg: &[f32],
    w0: &PackedMat,
    (m0, v0): (&[f32], &[f32]),
    step: &OptimStep,
) -> (Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>) {
    let (rows, din, dout) = (dldg.len(), w0.rows(), w0.cols());
    let (mut w, mut a, mut b) = (w0.clone(), m0.to_vec(), v0.to_vec());
    let mut db = vec![f32::NAN; dout];
    let xm = MatRef::new(x, rows, din).unwrap();
    be.linear_backward_update((xm, h, dldg, None), &mut w, step, (&mut a, &mut b), &mut db, &mut Vec::new()).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    (bits(w.data()), bits(&a), bits(&b), bits(&db))
}

/// Rows whose dL/dG is zero are left out of the fused FF backward: the
/// result is bit for bit that of the batch without them, even where one of
/// them holds an inf (whose dz, inf · 0, would be NaN), on every backend.
#[test]
fn rows_with_zero_loss_gradient_are_left_out_of_the_fused_backward() {
    let (rows, din, dout) = (40, 19, 37);
    // Moderate values, so that only the planted inf is not finite.
    let tame =
        |n: usize, seed: usize| (0..n).map(|i| ((i * 37 + seed) % 101) as f32 / 50.0 - 1.0).collect::<Vec<f32>>();
    let xn = tame(rows * din, 21);
    let mut h: Vec<f32> = tame(rows * dout, 22).into_iter().map(ffwd_kernels::numerics::relu).collect();
    let mut dldg = tame(rows, 23);
    for i in (0..rows).step_by(3) {
        dldg[i] = if i % 2 == 0 { 0.0 } else { -0.0 };
    }
    h[3 * dout + 5] = f32::INFINITY;
    let kept: Vec<usize> = (0..rows).filter(|&i| dldg[i] != 0.0).collect();
    let pick = |v: &[f32], d: usize| kept.iter().flat_map(|&i| v[i * d..(i + 1) * d].to_vec()).collect::<Vec<f32>>();
    let (xk, hk, gk) = (pick(&xn, din), pick(&h, dout), pick(&dldg, 1));
    let w0 = PackedMat::from_row_major(&tame(din * dout, 24), din, dout).unwrap();
    let step = OptimStep::Adam(AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        t: 1,
    });
    let zeros = vec![0.0; w0.data().len()];
    let run =
        |be: &CpuBackend, x: &[f32], h: &[f32], g: &[f32]| fused_update_bits(be, x, h, g, &w0, (&zeros, &zeros), &step);
    let mut backends = vec![CpuBackend::scalar()];
    backends.extend(CpuBackend::avx2().ok());
    for be in backends {
        let all = run(&be, &xn, &h, &dldg);
        assert_eq!(all, run(&be, &xk, &hk, &gk), "{}", be.name());
        assert!(
            w0.data().len() == all.0.len() && all.0.iter().all(|&b| f32::from_bits(b).is_finite()),
            "{}",
            be.name()
        );
    }
}

#[test]
fn packed_layout_round_trips_and_keeps_padding_zero() {
    let src: Vec<f32> = (0..3 * 21).map(|i| i as f32).collect();
    let p = PackedMat::from_row_major(&src, 3, 21).unwrap();
    assert_eq!(p.data().len(), 3 * 32);
    assert_eq!(p.to_row_major(), src);
    assert_eq!(p.data()[p.index(2, 17)], src[2 * 21 + 17]);
    assert!(p.data()[16 * 3 + 5..16 * 3 + 16].iter().all(|&v| v == 0.0));
}

/// Few rows (≤ 512) and many columns take the column split; with m·kc past
/// its L2 budget (here 413 rows × K blocks of 174) each task runs a K block
/// in several row blocks (two). The proptest shapes stay below that.
#[test]
fn column_split_with_several_row_blocks_matches_spec_bitwise() {
    let (m, k, n) = (413, 521, 70);
    let x = values(m * k, 11);
    let b = values(k * n, 12);
    let bias = values(n, 13);
    let w = PackedMat::from_row_major(&b, k, n).unwrap();
    check("gemm, column split", |be| {
        let mut c = vec![f32::NAN; m * n];
        be.gemm(
            MatRef::new(&x, m, k).unwrap(),
            MatRef::new(&b, k, n).unwrap(),
            MatMut::new(&mut c, m, n).unwrap(),
            Epilogue::Bias(&bias),
        )
        .unwrap();
        let mut h = vec![f32::NAN; m * n];
        let mut g = vec![f32::NAN; m];
        be.linear_forward_packed(MatRef::new(&x, m, k).unwrap(), &w, &bias, MatMut::new(&mut h, m, n).unwrap(), &mut g)
            .unwrap();
        vec![c, h, g]
    });
}

/// A batch in which every row has dL/dG = 0 leaves dW and db at zero, and
/// every weight still takes its optimiser step (Adam's momentum moves it):
/// the same bits on every backend, the AVX2 one at 1 and 2 threads.
#[test]
fn a_batch_with_every_loss_gradient_zero_still_steps_every_weight() {
    let (rows, din, dout) = (12, 50, 40);
    let val = |n: usize, seed: usize| (0..n).map(|i| ((i * 31 + seed) % 97) as f32 / 48.0 - 1.0).collect::<Vec<f32>>();
    let xn = val(rows * din, 1);
    let h: Vec<f32> = val(rows * dout, 2).into_iter().map(ffwd_kernels::numerics::relu).collect();
    let dldg: Vec<f32> = (0..rows).map(|i| if i % 2 == 0 { 0.0 } else { -0.0 }).collect();
    let w0 = PackedMat::from_row_major(&val(din * dout, 3), din, dout).unwrap();
    // Optimiser state in W's packed layout, nonzero on every weight (the
    // momentum moves it) and zero on the layout's padding, as training
    // leaves it.
    let state = |seed: usize| {
        let mut s = vec![0.0f32; w0.data().len()];
        for (e, x) in val(din * dout, seed).into_iter().enumerate() {
            s[w0.index(e / dout, e % dout)] = x.abs() + 0.01;
        }
        s
    };
    let (m0, v0) = (state(4), state(5));
    let step = OptimStep::Adam(AdamStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        t: 5,
    });
    let run = |be: &CpuBackend| fused_update_bits(be, &xn, &h, &dldg, &w0, (&m0, &v0), &step);
    let spec = run(&CpuBackend::scalar());
    assert!(spec.3.iter().all(|&b| b == 0), "db of a batch with no kept row is +0");
    let moved = (0..din * dout)
        .filter(|&e| spec.0[w0.index(e / dout, e % dout)] != w0.data()[w0.index(e / dout, e % dout)].to_bits())
        .count();
    assert_eq!(moved, din * dout, "every weight takes its step");
    let Ok(avx2) = CpuBackend::avx2() else { return };
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        assert_eq!(pool.install(|| run(&avx2)), spec, "avx2 at {threads} threads");
    }
}
