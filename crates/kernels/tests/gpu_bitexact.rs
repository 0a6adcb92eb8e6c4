//! CUDA == the scalar specification, bit for bit, for every wrapped kernel.
//! Without a GPU these tests print `SKIP (no CUDA)` and pass; with
//! `FFWD_REQUIRE_GPU=1` (set on the GPU machine) a missing device fails them.

mod common;

use common::{assert_bits_eq, dim, kdim, values};
use ffwd_kernels::cuda::{cuda_device, CudaDevice, Tile};
use ffwd_kernels::*;

fn device() -> Option<&'static CudaDevice> {
    let d = cuda_device();
    if d.is_none() {
        if std::env::var("FFWD_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("FFWD_REQUIRE_GPU=1 but no CUDA device/driver/NVRTC could be loaded");
        }
        eprintln!("SKIP (no CUDA)");
    }
    d
}

const SHAPES: [(usize, usize, usize); 6] =
    [(1, 1, 1), (7, 13, 5), (33, 31, 300), (64, 64, 64), (100, 17, 521), (200, 130, 784)];

/// Shapes for the two GEMM tiles: edges of both tiles, odd sizes, K that is
/// not a multiple of either k tile, a K of 1.
const TILE_SHAPES: [(usize, usize, usize); 5] =
    [(129, 131, 9), (128, 128, 128), (257, 200, 33), (3, 300, 1), (300, 5, 77)];

/// The unfused specification of the FF parameter gradients: the rows with
/// dL/dG = ±0 left out (gathered in order), then dz = h·2·dL/dG,
/// dW = xnᵀ·dz and db = Σ dz, each by its own scalar kernel.
fn unfused_param_grads(be: &CpuBackend, xn: MatRef, h: &[f32], dldg: &[f32], dout: usize) -> (Vec<f32>, Vec<f32>) {
    let din = xn.cols();
    let mut buf = vec![0.0; xn.rows() * (din + dout + 1)];
    let (xk, hk, gk) = ffwd_kernels::cpu::linear::gather_active(xn, h, dldg, &mut buf);
    let kept = gk.len();
    let mut dz = vec![0.0; kept * dout];
    be.local_grad(hk, dout, gk, &mut dz).unwrap();
    let mut dw = vec![0.0; din * dout];
    let (xm, dzm) = (MatRef::new(xk, kept, din).unwrap(), MatRef::new(&dz, kept, dout).unwrap());
    be.gemm(xm.t(), dzm, MatMut::new(&mut dw, din, dout).unwrap(), Epilogue::None).unwrap();
    let mut db = vec![0.0; dout];
    be.bias_grad(&dz, kept, dout, &mut db).unwrap();
    (dw, db)
}

#[test]
fn cuda_transcendentals_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    // a strided sweep of all bit patterns plus ordinary values
    let mut x: Vec<f32> = (0..(1u64 << 32)).step_by(4099).map(|b| f32::from_bits(b as u32)).collect();
    x.extend(values(100_000, 3));
    for f in [Unary::Exp, Unary::Log1p, Unary::Ln, Unary::Softplus, Unary::Sigmoid] {
        let mut spec = vec![0.0; x.len()];
        be.unary(f, &x, &mut spec).unwrap();
        assert_bits_eq(&format!("{f:?}"), &dev.unary(f, &x).unwrap(), &spec);
    }
}

#[test]
fn cuda_gemm_matches_spec_bitwise_in_every_layout_and_tile() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for (i, &(m, n, k)) in SHAPES.iter().chain(&TILE_SHAPES).enumerate() {
        let a = values(m * k, 10 + i as u64);
        let b = values(k * n, 20 + i as u64);
        let bias = values(n, 30 + i as u64);
        // row-major, A transposed (rows contiguous), B transposed, both
        for layout in 0..4 {
            let av = if layout % 2 == 1 { MatRef::new(&a, k, m).unwrap().t() } else { MatRef::new(&a, m, k).unwrap() };
            let bv = if layout >= 2 { MatRef::new(&b, n, k).unwrap().t() } else { MatRef::new(&b, k, n).unwrap() };
            let c0 = values(m * n, 40 + i as u64);
            for epi in [Epilogue::None, Epilogue::Accumulate, Epilogue::Bias(&bias), Epilogue::BiasRelu(&bias)] {
                let mut spec = c0.clone();
                be.gemm(av, bv, MatMut::new(&mut spec, m, n).unwrap(), epi).unwrap();
                for tile in Tile::FIXED.into_iter().chain([Tile::Auto]) {
                    assert_bits_eq(
                        &format!("gemm {m}×{k}·{k}×{n} layout {layout} {epi:?} {tile:?}"),
                        &dev.gemm_tiled(av, bv, epi, &c0, tile).unwrap(),
                        &spec,
                    );
                }
            }
        }
    }
}

#[test]
fn cuda_row_reductions_and_norms_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for &(rows, d, _) in &SHAPES {
        let x = values(rows * d, rows as u64);
        for squares in [true, false] {
            let mut spec = vec![0.0; rows];
            if squares {
                be.row_sumsq(&x, d, &mut spec).unwrap();
            } else {
                be.row_sum(&x, d, &mut spec).unwrap();
            }
            assert_bits_eq(
                &format!("row reduce {rows}×{d} squares={squares}"),
                &dev.row_reduce(&x, d, squares).unwrap(),
                &spec,
            );
        }
        for norm in [Norm::Rms, Norm::L2, Norm::None] {
            let mut spec = vec![0.0; x.len()];
            be.normalize_rows(&x, &mut spec, d, norm, 1e-8).unwrap();
            assert_bits_eq(
                &format!("normalize {rows}×{d} {norm:?}"),
                &dev.normalize_rows(&x, d, norm, 1e-8).unwrap(),
                &spec,
            );
        }
    }
}

#[test]
fn cuda_local_and_bias_grads_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for &(rows, d, _) in &SHAPES {
        let h: Vec<f32> = values(rows * d, 5).into_iter().map(numerics::relu).collect();
        let dldg = values(rows, 6);
        let mut dz = vec![0.0; rows * d];
        be.local_grad(&h, d, &dldg, &mut dz).unwrap();
        assert_bits_eq("local_grad", &dev.local_grad(&h, d, &dldg).unwrap(), &dz);
        let mut db = vec![0.0; d];
        be.bias_grad(&dz, rows, d, &mut db).unwrap();
        assert_bits_eq("bias_grad", &dev.bias_grad(&dz, rows, d).unwrap(), &db);
    }
}

#[test]
fn cuda_optimizers_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    let n = 10_007;
    let (w, g, m0) = (values(n, 1), values(n, 2), values(n, 3));
    let v0: Vec<f32> = values(n, 4).iter().map(|x| x.abs()).collect();
    for (t, decoupled, wd) in [(1u64, false, 0.0f32), (7, true, 0.01), (1000, false, 1e-4)] {
        let step = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd, decoupled, t };
        let (mut ws, mut ms, mut vs) = (w.clone(), m0.clone(), v0.clone());
        be.adam(&step, &mut ws, &g, &mut ms, &mut vs).unwrap();
        let [wg, mg, vg] = dev.adam(&step, &w, &g, &m0, &v0).unwrap();
        assert_bits_eq("adam w", &wg, &ws);
        assert_bits_eq("adam m", &mg, &ms);
        assert_bits_eq("adam v", &vg, &vs);
    }
    for nesterov in [false, true] {
        let step = SgdStep { lr: 1e-2, momentum: 0.9, weight_decay: 1e-4, nesterov };
        let (mut ws, mut bs) = (w.clone(), m0.clone());
        be.sgd(&step, &mut ws, &g, &mut bs).unwrap();
        let [wg, bg] = dev.sgd(&step, &w, &g, &m0).unwrap();
        assert_bits_eq("sgd w", &wg, &ws);
        assert_bits_eq("sgd buf", &bg, &bs);
    }
}

#[test]
fn cuda_pool_and_upsample_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for (i, &(c, n, h, w)) in [(1, 1, 2, 2), (3, 2, 5, 7), (8, 3, 16, 16), (2, 5, 9, 4)].iter().enumerate() {
        let g = Cnhw::new(c, n, h, w);
        let x = values(g.len(), 50 + i as u64);
        let gp = Cnhw::new(c, n, h / 2, w / 2);
        let (mut y, mut idx) = (vec![0.0; gp.len()], vec![0u8; gp.len()]);
        be.maxpool2_forward(&x, g, &mut y, &mut idx).unwrap();
        let (cy, cidx) = dev.maxpool2_forward(&x, g).unwrap();
        assert_bits_eq(&format!("maxpool {g:?}"), &cy, &y);
        assert_eq!(cidx, idx, "maxpool positions {g:?}");
        let dy = values(gp.len(), 60 + i as u64);
        let mut dx = vec![0.0; g.len()];
        be.maxpool2_backward(&dy, &idx, g, &mut dx).unwrap();
        assert_bits_eq(&format!("maxpool backward {g:?}"), &dev.maxpool2_backward(&dy, &idx, g).unwrap(), &dx);
        let mut up = vec![0.0; 4 * g.len()];
        be.upsample2_forward(&x, g, &mut up).unwrap();
        assert_bits_eq(&format!("upsample {g:?}"), &dev.upsample2(&x, g, true).unwrap(), &up);
        let du = values(4 * g.len(), 70 + i as u64);
        let mut dxu = vec![0.0; g.len()];
        be.upsample2_backward(&du, g, &mut dxu).unwrap();
        assert_bits_eq(&format!("upsample backward {g:?}"), &dev.upsample2(&du, g, false).unwrap(), &dxu);
    }
}

#[test]
fn cuda_label_channel_and_standardisation_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for (i, &(classes, n, hw)) in [(2, 1, 1), (10, 37, 784), (3, 200, 64)].iter().enumerate() {
        let emb = values(classes * hw, 80 + i as u64);
        let labels: Vec<u32> = (0..n as u32).map(|b| (b * 7 + i as u32) % classes as u32).collect();
        let mut chan = vec![0.0; n * hw];
        be.label_channel(&emb, hw, &labels, &mut chan).unwrap();
        assert_bits_eq("label channel", &dev.label_channel(&emb, hw, &labels, classes, true).unwrap(), &chan);
        let dchan = values(n * hw, 90 + i as u64);
        let mut demb = vec![0.0; classes * hw];
        be.label_channel_grad(&dchan, hw, &labels, &mut demb).unwrap();
        assert_bits_eq("label channel grad", &dev.label_channel(&dchan, hw, &labels, classes, false).unwrap(), &demb);
    }
    for &(rows, _, d) in SHAPES.iter() {
        let x: Vec<f32> = values(rows * d, 99).iter().map(|v| v.clamp(-1e3, 1e3)).collect();
        let mut y = vec![0.0; x.len()];
        be.standardize_rows(&x, d, 1e-5, &mut y).unwrap();
        assert_bits_eq(&format!("standardize {rows}×{d}"), &dev.standardize_rows(&x, d, 1e-5).unwrap(), &y);
    }
}

#[test]
fn cuda_losses_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    // 2n up to 10,000 rows: the CUDA kernel takes them 2048 at a time
    for (i, &n) in [1usize, 5, 32, 100, 1000, 1024, 1500, 5000].iter().enumerate() {
        let g: Vec<f32> = values(2 * n, 100 + i as u64).iter().map(|v| v.abs().min(1e4)).collect();
        for loss in [FfLoss::Threshold { theta: 3.0 }, FfLoss::Symba { alpha: 4.0 }] {
            for form in [GoodnessForm::Sum, GoodnessForm::Mean] {
                let mut dldg = vec![0.0; 2 * n];
                let l = be.ff_loss(loss, form, 7, &g, &mut dldg, &mut LossScratch::default()).unwrap();
                let (cd, cl) = dev.ff_loss(loss, form, 7, &g).unwrap();
                assert_bits_eq(&format!("ff_loss {loss:?} {form:?} n={n}"), &cd, &dldg);
                assert_bits_eq(&format!("ff_loss value {loss:?} {form:?} n={n}"), &[cl], &[l]);
            }
        }
    }
    for (i, &(m, c)) in [(1usize, 1usize), (7, 10), (100, 10), (33, 40)].iter().enumerate() {
        let z: Vec<f32> = values(m * c, 110 + i as u64).iter().map(|v| v.clamp(-30.0, 30.0)).collect();
        let labels: Vec<u32> = (0..m as u32).map(|r| (r * 3 + 1) % c as u32).collect();
        let mut grad = vec![0.0; m * c];
        let l = be.softmax_xent(&z, c, &labels, &mut grad, &mut LossScratch::default()).unwrap();
        let (cg, cl) = dev.softmax_xent(&z, c, &labels).unwrap();
        assert_bits_eq(&format!("softmax_xent {m}×{c}"), &cg, &grad);
        assert_bits_eq(&format!("softmax_xent value {m}×{c}"), &[cl], &[l]);
    }
}

#[test]
fn cuda_philox_matches_the_host_generator_bitwise() {
    let Some(dev) = device() else { return };
    use ffwd_tensor::Philox;
    for (seed, stream, n) in [(0u64, 0u64, 1usize), (42, (1 << 48) | 3, 1003), (u64::MAX, u64::MAX, 4096)] {
        let r = Philox::new(seed, stream);
        let mut words = vec![0u32; n];
        r.fill_u32(&mut words);
        assert_eq!(dev.philox(seed, stream, n, None).unwrap(), words, "words of ({seed}, {stream})");
        let mut u = vec![0.0f32; n];
        r.fill_uniform(&mut u, -0.25, 0.75);
        let want: Vec<u32> = u.iter().map(|v| v.to_bits()).collect();
        assert_eq!(dev.philox(seed, stream, n, Some((-0.25, 0.75))).unwrap(), want, "uniforms of ({seed}, {stream})");
    }
}

#[test]
fn cuda_batchnorm_and_block_goodness_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for (i, &(c, n, h, w)) in [(1, 1, 1, 1), (3, 4, 5, 7), (16, 8, 8, 8), (4, 33, 3, 3)].iter().enumerate() {
        let g = Cnhw::new(c, n, h, w);
        let x: Vec<f32> = values(g.len(), 120 + i as u64).iter().map(|v| v.clamp(-1e3, 1e3)).collect();
        let dy = values(g.len(), 130 + i as u64);
        let (gamma, beta) = (values(c, 140 + i as u64), values(c, 150 + i as u64));
        let (mut mean, mut var, mut rstd) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        be.batchnorm_stats(&x, g, 1e-5, &mut mean, &mut var, &mut rstd).unwrap();
        let [cm, cv, cr] = dev.batchnorm_stats(&x, g, 1e-5).unwrap();
        assert_bits_eq("bn mean", &cm, &mean);
        assert_bits_eq("bn var", &cv, &var);
        assert_bits_eq("bn rstd", &cr, &rstd);
        let mut y = vec![0.0; g.len()];
        be.batchnorm_apply(&x, g, &mean, &rstd, &gamma, &beta, &mut y).unwrap();
        assert_bits_eq("bn apply", &dev.batchnorm_apply(&x, g, [&mean, &rstd, &gamma, &beta]).unwrap(), &y);
        let (mut dx, mut dg, mut db) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
        be.batchnorm_backward(&x, g, &mean, &rstd, &gamma, &dy, &mut dx, &mut dg, &mut db).unwrap();
        let [cdx, cdg, cdb] = dev.batchnorm_backward(&x, g, [&mean, &rstd, &gamma], &dy).unwrap();
        assert_bits_eq("bn dx", &cdx, &dx);
        assert_bits_eq("bn dgamma", &cdg, &dg);
        assert_bits_eq("bn dbeta", &cdb, &db);
        let (mut rm, mut rv) = (gamma.clone(), beta.iter().map(|v| v.abs()).collect::<Vec<_>>());
        let (rm0, rv0) = (rm.clone(), rv.clone());
        be.batchnorm_update_running(&mean, &var, g.row(), 0.1, &mut rm, &mut rv).unwrap();
        let [crm, crv] = dev.batchnorm_update_running(&mean, &var, g.row(), 0.1, (&rm0, &rv0)).unwrap();
        assert_bits_eq("bn running mean", &crm, &rm);
        assert_bits_eq("bn running var", &crv, &rv);
        let mut ss = vec![0.0; n];
        be.block_sumsq(&x, g, &mut ss).unwrap();
        assert_bits_eq("block sumsq", &dev.block_sumsq(&x, g).unwrap(), &ss);
        let (mut sn, mut inv) = (vec![0.0; g.len()], vec![0.0; n]);
        be.sample_norm_forward(&x, g, 1e-4, &mut sn, &mut inv).unwrap();
        let (csn, cinv) = dev.sample_norm_forward(&x, g, 1e-4).unwrap();
        assert_bits_eq("length norm", &csn, &sn);
        assert_bits_eq("length norm inv", &cinv, &inv);
        let mut dsn = vec![0.0; g.len()];
        be.sample_norm_backward(&x, g, &inv, &dy, &mut dsn, &mut Vec::new()).unwrap();
        assert_bits_eq("length norm backward", &dev.sample_norm_backward(&x, g, &inv, &dy).unwrap(), &dsn);
        let dldg = values(n, 190 + i as u64);
        let mut lg = vec![0.0; g.len()];
        be.block_local_grad(&x, g, &dldg, &mut lg).unwrap();
        assert_bits_eq("block local grad", &dev.block_local_grad(&x, g, &dldg).unwrap(), &lg);
    }
}

#[test]
fn cuda_conv3x3_matches_spec_bitwise_forward_dw_and_dx() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    // The last shape makes the CPU cut the batch into image chunks.
    for (i, &(c, n, h, w, cout)) in
        [(1, 1, 1, 1, 1), (3, 2, 5, 7, 4), (8, 3, 16, 16, 16), (64, 9, 32, 32, 8)].iter().enumerate()
    {
        let g = Cnhw::new(c, n, h, w);
        let x = values(g.len(), 160 + i as u64);
        let wts = values(cout * c * 9, 170 + i as u64);
        let dy = values(cout * g.row(), 180 + i as u64);
        let mut s = ConvScratch::default();
        let mut y = vec![0.0; cout * g.row()];
        be.conv3x3_forward(&x, g, &wts, cout, &mut y, &mut s).unwrap();
        let (mut dw, mut dx) = (vec![0.0; wts.len()], vec![0.0; g.len()]);
        be.conv3x3_backward(&x, g, &wts, cout, &dy, &mut dw, Some(&mut dx), &mut s).unwrap();
        let (cy, grads) = dev.conv3x3(&x, g, &wts, cout, Some(&dy)).unwrap();
        let (cdw, cdx) = grads.unwrap();
        assert_bits_eq(&format!("conv forward {g:?}"), &cy, &y);
        assert_bits_eq(&format!("conv dW {g:?}"), &cdw, &dw);
        assert_bits_eq(&format!("conv dX {g:?}"), &cdx, &dx);
    }
}

#[test]
fn cuda_cosine_and_softmax_bce_match_spec_bitwise() {
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    for (i, &(m, d)) in [(1usize, 1usize), (5, 64), (100, 64), (17, 100)].iter().enumerate() {
        let (a, b) = (values(m * d, 200 + i as u64), values(m * d, 210 + i as u64));
        let mut grad = vec![0.0; m * d];
        let l = be.cosine_embedding(&a, &b, d, &mut grad, &mut LossScratch::default()).unwrap();
        let (cg, cl) = dev.cosine_embedding(&a, &b, d).unwrap();
        assert_bits_eq(&format!("cosine {m}×{d}"), &cg, &grad);
        assert_bits_eq(&format!("cosine value {m}×{d}"), &[cl], &[l]);
    }
    for (i, &(m, c)) in [(1usize, 1usize), (7, 10), (100, 10), (33, 40)].iter().enumerate() {
        let z: Vec<f32> = values(m * c, 220 + i as u64).iter().map(|v| v.clamp(-30.0, 30.0)).collect();
        let labels: Vec<u32> = (0..m as u32).map(|r| (r * 5 + 2) % c as u32).collect();
        let mut grad = vec![0.0; m * c];
        let l = be.softmax_bce(&z, c, &labels, &mut grad, &mut LossScratch::default()).unwrap();
        let (cg, cl) = dev.softmax_bce(&z, c, &labels).unwrap();
        assert_bits_eq(&format!("softmax_bce {m}×{c}"), &cg, &grad);
        assert_bits_eq(&format!("softmax_bce value {m}×{c}"), &[cl], &[l]);
    }
}

#[test]
fn cuda_fused_linear_forward_and_backward_update_match_spec_bitwise() {
    use ffwd_kernels::cuda::LinearDims;
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    let adam = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, t: 3 };
    let adamw = AdamStep { weight_decay: 0.01, decoupled: true, t: 1, ..adam };
    let sgd = SgdStep { lr: 1e-2, momentum: 0.9, weight_decay: 1e-4, nesterov: true };
    for (i, &(rows, din, dout)) in SHAPES.iter().chain(&TILE_SHAPES).enumerate() {
        let d = LinearDims { rows, din, dout };
        let s = 100 + 10 * i as u64;
        let (xn, w, bias) = (values(rows * din, s), values(din * dout, s + 1), values(dout, s + 2));
        // forward: h = relu(xn·W + b) and G
        let (mut h, mut g) = (vec![0.0; rows * dout], vec![0.0; rows]);
        let (xm, wm) = (MatRef::new(&xn, rows, din).unwrap(), MatRef::new(&w, din, dout).unwrap());
        be.linear_forward(xm, wm, &bias, MatMut::new(&mut h, rows, dout).unwrap(), &mut g).unwrap();
        let (hg, gg) = dev.linear_forward(&xn, &w, &bias, d).unwrap();
        assert_bits_eq(&format!("linear_forward h {rows}×{din}→{dout}"), &hg, &h);
        assert_bits_eq(&format!("linear_forward G {rows}×{din}→{dout}"), &gg, &g);
        // backward + update, against the unfused spec: kept rows, dz, dW = xnᵀ·dz, db, optimiser
        let dldg = values(rows, s + 3);
        let (dw, db) = unfused_param_grads(&be, xm, &h, &dldg, dout);
        let abs = |v: Vec<f32>| v.into_iter().map(f32::abs).collect::<Vec<f32>>();
        let (wa, wb) = (values(din * dout, s + 4), abs(values(din * dout, s + 5)));
        let (ba, bb) = (values(dout, s + 6), abs(values(dout, s + 7)));
        for step in [OptimStep::Adam(adam), OptimStep::Adam(adamw), OptimStep::Sgd(sgd)] {
            let mut spec_w = [w.clone(), wa.clone(), wb.clone()];
            let mut spec_b = [bias.clone(), ba.clone(), bb.clone()];
            for (st, gr) in [(&mut spec_w, &dw), (&mut spec_b, &db)] {
                let [p, a, v] = st;
                match step {
                    OptimStep::Adam(s) => be.adam(&s, p, gr, a, v).unwrap(),
                    OptimStep::Sgd(s) => be.sgd(&s, p, gr, a).unwrap(),
                }
            }
            for tile in Tile::FIXED {
                let (wv, bv) = ([&w[..], &wa, &wb], [&bias[..], &ba, &bb]);
                let got = dev.linear_backward_update(tile, &step, &xn, &h, &dldg, d, wv, bv).unwrap();
                let what = format!("linear_backward_update {rows}×{din}→{dout} {step:?} {tile:?}");
                for k in 0..3 {
                    assert_bits_eq(&format!("{what} W[{k}]"), &got.w[k], &spec_w[k]);
                    assert_bits_eq(&format!("{what} b[{k}]"), &got.b[k], &spec_b[k]);
                }
            }
        }
    }
}

#[test]
fn cuda_ff_batch_statistics_match_the_host_means_bitwise() {
    let Some(dev) = device() else { return };
    for n in [1usize, 31, 32, 33, 100, 1000] {
        let g: Vec<f32> = values(2 * n, n as u64).into_iter().map(f32::abs).collect();
        let mean = |s: &[f32]| numerics::l32_sum(s) / s.len() as f32;
        let [l, p, q] = dev.ff_stats(&g, 0.25).unwrap();
        assert_eq!(l.to_bits(), 0.25f32.to_bits());
        assert_eq!(p.to_bits(), mean(&g[..n]).to_bits(), "mean G+ of {n}");
        assert_eq!(q.to_bits(), mean(&g[n..]).to_bits(), "mean G- of {n}");
    }
}

#[test]
fn cuda_gemm_and_fused_linear_match_spec_bitwise_on_the_cpu_test_strategies() {
    use ffwd_kernels::cuda::LinearDims;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let Some(dev) = device() else { return };
    let be = CpuBackend::scalar();
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    let strategy = ((dim(), dim(), kdim()), 0usize..4, 0usize..3, any::<u64>());
    runner
        .run(&strategy, |((m, n, k), epi, layout, seed)| {
            let (a, b) = (values(m * k, seed), values(k * n, seed ^ 1));
            let (bias, c0) = (values(n, seed ^ 2), values(m * n, seed ^ 3));
            let av = if layout == 1 { MatRef::new(&a, k, m).unwrap().t() } else { MatRef::new(&a, m, k).unwrap() };
            let bv = if layout == 2 { MatRef::new(&b, n, k).unwrap().t() } else { MatRef::new(&b, k, n).unwrap() };
            let e = [Epilogue::None, Epilogue::Bias(&bias), Epilogue::BiasRelu(&bias), Epilogue::Accumulate][epi];
            let mut spec = c0.clone();
            be.gemm(av, bv, MatMut::new(&mut spec, m, n).unwrap(), e).unwrap();
            for tile in Tile::FIXED {
                let what = format!("gemm {m}×{k}·{k}×{n} layout {layout} {e:?} {tile:?}");
                assert_bits_eq(&what, &dev.gemm_tiled(av, bv, e, &c0, tile).unwrap(), &spec);
            }
            // the FF layer at the same sizes: rows m, din k, dout n
            let d = LinearDims { rows: m, din: k, dout: n };
            let w = values(k * n, seed ^ 4);
            let (mut h, mut g) = (vec![0.0; m * n], vec![0.0; m]);
            let (xm, wm) = (MatRef::new(&a, m, k).unwrap(), MatRef::new(&w, k, n).unwrap());
            be.linear_forward(xm, wm, &bias, MatMut::new(&mut h, m, n).unwrap(), &mut g).unwrap();
            let (hg, gg) = dev.linear_forward(&a, &w, &bias, d).unwrap();
            assert_bits_eq("linear_forward h", &hg, &h);
            assert_bits_eq("linear_forward G", &gg, &g);
            let dldg = values(m, seed ^ 5);
            let (dw, db) = unfused_param_grads(&be, xm, &h, &dldg, n);
            let step =
                AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, t: 2 };
            let (mut ws, mut ma, mut va) = (w.clone(), vec![0.0; k * n], vec![0.0; k * n]);
            be.adam(&step, &mut ws, &dw, &mut ma, &mut va).unwrap();
            let (mut bs, mut mb, mut vb) = (bias.clone(), vec![0.0; n], vec![0.0; n]);
            be.adam(&step, &mut bs, &db, &mut mb, &mut vb).unwrap();
            for tile in Tile::FIXED {
                let z = (vec![0.0; k * n], vec![0.0; n]);
                let got = dev
                    .linear_backward_update(
                        tile,
                        &OptimStep::Adam(step),
                        &a,
                        &h,
                        &dldg,
                        d,
                        [&w, &z.0, &z.0],
                        [&bias, &z.1, &z.1],
                    )
                    .unwrap();
                let what = format!("linear_backward_update {m}×{k}→{n} {tile:?}");
                for (i, (gw, sw)) in got.w.iter().zip([&ws, &ma, &va]).enumerate() {
                    assert_bits_eq(&format!("{what} W[{i}]"), gw, sw);
                }
                for (i, (gb, sb)) in got.b.iter().zip([&bs, &mb, &vb]).enumerate() {
                    assert_bits_eq(&format!("{what} b[{i}]"), gb, sb);
                }
            }
            Ok(())
        })
        .unwrap();
}
