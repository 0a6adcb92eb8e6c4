//! The convolutional ops: the scalar backend equals a direct transcription
//! of each spec, and AVX2 equals the scalar backend bit for bit at 1 and 2
//! threads (conv forward/dW/dX across image chunks, max-pool, batch norm,
//! the length norm, block goodness, the label channel).

// The spec spells out each rounding step.
#![allow(clippy::assign_op_pattern)]

mod common;

use common::{assert_bits_eq, check, values};
use ffwd_kernels::*;
use proptest::prelude::*;

/// Input value at (ci, b, iy, ix) with zero padding.
fn at(x: &[f32], g: Cnhw, ci: usize, b: usize, iy: isize, ix: isize) -> f32 {
    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
        return 0.0;
    }
    x[((ci * g.n + b) * g.h + iy as usize) * g.w + ix as usize]
}

/// The spec of crates/kernels/src/cpu/conv.rs, written out directly.
fn conv_direct(x: &[f32], g: Cnhw, w: &[f32], cout: usize, dy: &[f32]) -> [Vec<f32>; 3] {
    let (hw, k9) = (g.plane(), g.c * 9);
    let mut y = vec![0.0f32; cout * g.row()];
    let mut dw = vec![0.0f32; cout * k9];
    let mut dcol = vec![0.0f32; k9 * g.row()];
    for co in 0..cout {
        for b in 0..g.n {
            for oy in 0..g.h {
                for ox in 0..g.w {
                    let mut acc = 0.0f32;
                    for k in 0..k9 {
                        let (ci, ky, kx) = (k / 9, (k % 9) / 3, k % 3);
                        let v = at(x, g, ci, b, oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                        acc = w[co * k9 + k].mul_add(v, acc);
                    }
                    y[co * g.row() + b * hw + oy * g.w + ox] = acc;
                }
            }
        }
        for k in 0..k9 {
            let (ci, ky, kx) = (k / 9, (k % 9) / 3, k % 3);
            let mut acc = 0.0f32;
            for b in 0..g.n {
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        let v = at(x, g, ci, b, oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                        acc = dy[co * g.row() + b * hw + oy * g.w + ox].mul_add(v, acc);
                    }
                }
            }
            dw[co * k9 + k] = acc;
        }
    }
    for k in 0..k9 {
        for col in 0..g.row() {
            let mut acc = 0.0f32;
            for co in 0..cout {
                acc = w[co * k9 + k].mul_add(dy[co * g.row() + col], acc);
            }
            dcol[k * g.row() + col] = acc;
        }
    }
    let mut dx = vec![0.0f32; g.len()];
    for ci in 0..g.c {
        for b in 0..g.n {
            for iy in 0..g.h as isize {
                for ix in 0..g.w as isize {
                    let mut acc = 0.0f32;
                    for ky in 0..3isize {
                        for kx in 0..3isize {
                            let (oy, ox) = (iy - ky + 1, ix - kx + 1);
                            if oy < 0 || ox < 0 || oy >= g.h as isize || ox >= g.w as isize {
                                continue;
                            }
                            let k = ci * 9 + (ky * 3 + kx) as usize;
                            acc = acc + dcol[k * g.row() + b * hw + oy as usize * g.w + ox as usize];
                        }
                    }
                    dx[((ci * g.n + b) * g.h + iy as usize) * g.w + ix as usize] = acc;
                }
            }
        }
    }
    [y, dw, dx]
}

fn conv_backend(be: &CpuBackend, x: &[f32], g: Cnhw, w: &[f32], cout: usize, dy: &[f32]) -> Vec<Vec<f32>> {
    let mut s = ConvScratch::default();
    let mut y = vec![f32::NAN; cout * g.row()];
    be.conv3x3_forward(x, g, w, cout, &mut y, &mut s).unwrap();
    // The first channels' chains, continued with the others' (evaluation's
    // shared image part and per-label channel): the same bits.
    for split in 1..g.c {
        let mut ys = vec![f32::NAN; y.len()];
        be.conv3x3_forward_channels(x, g, w, cout, (0..split, false), &mut ys, &mut s).unwrap();
        be.conv3x3_forward_channels(x, g, w, cout, (split..g.c, true), &mut ys, &mut s).unwrap();
        assert_bits_eq(&format!("conv forward split at channel {split} {g:?} on {}", be.name()), &ys, &y);
    }
    let mut dw = vec![f32::NAN; w.len()];
    let mut dx = vec![f32::NAN; x.len()];
    be.conv3x3_backward(ConvBackward { x, g, w, cout, dy }, &mut dw, Some(&mut dx), &mut s).unwrap();
    vec![y, dw, dx]
}

/// Inputs (x, W, dY) of a conv of `g` with `cout` outputs, drawn by
/// `gen(len, seed)` at seeds `seed`, `seed + 100` and `seed + 200`, and
/// the direct spec's outputs (y, dW, dX) on them.
fn conv_case(g: Cnhw, cout: usize, seed: u64, gen: impl Fn(usize, u64) -> Vec<f32>) -> ([Vec<f32>; 3], [Vec<f32>; 3]) {
    let x = gen(g.len(), seed);
    let w = gen(cout * g.c * 9, seed + 100);
    let dy = gen(cout * g.row(), seed + 200);
    let want = conv_direct(&x, g, &w, cout, &dy);
    ([x, w, dy], want)
}

#[test]
fn conv3x3_backends_equal_the_direct_spec_bitwise_across_image_chunks() {
    // 64 channels of 32×32: the col buffer holds 7 images, so 9 images take
    // two chunks and dW continues its chains across them.
    for (i, g) in [Cnhw::new(3, 2, 5, 7), Cnhw::new(64, 9, 32, 32), Cnhw::new(2, 3, 1, 1)].into_iter().enumerate() {
        let cout = 3;
        let ([x, w, dy], want) = conv_case(g, cout, 100 + i as u64, values);
        let got = conv_backend(&CpuBackend::scalar(), &x, g, &w, cout, &dy);
        for (name, (a, b)) in ["y", "dW", "dX"].iter().zip(got.iter().zip(&want)) {
            assert_bits_eq(&format!("scalar conv {name} {g:?}"), a, b);
        }
        check(&format!("conv {g:?}"), |be| conv_backend(be, &x, g, &w, cout, &dy));
    }
    // The AVX2 forward reads the image in place where every run of 16
    // outputs is one image row's or two 8-pixel rows' (the second run of a
    // split row two image rows apart): 8 wide, 24 wide (whole and split
    // runs), 8 wide with a plane of 24 (the packed path), and many input
    // channels so the chains span several K blocks.
    for (i, (g, cout)) in
        [(Cnhw::new(70, 3, 8, 8), 13), (Cnhw::new(3, 2, 4, 24), 7), (Cnhw::new(2, 2, 3, 8), 5)].into_iter().enumerate()
    {
        let ([x, w, dy], want) = conv_case(g, cout, 700 + i as u64, values);
        let got = conv_backend(&CpuBackend::scalar(), &x, g, &w, cout, &dy);
        assert_bits_eq(&format!("scalar conv y {g:?}"), &got[0], &want[0]);
        check(&format!("conv, 8-pixel runs {g:?}"), |be| conv_backend(be, &x, g, &w, cout, &dy));
    }
    // The AVX2 dW reads the images in place in groups of about 8 MB
    // (padded images and packed dY): 70 images of 16 channels at 32×32
    // (about 35 k floats each) take two groups, and each chain goes on
    // across them; 13 outputs leave a part-filled panel of dY, and 16·9
    // taps fill 24 tiles of six rows. Finite values of moderate size (no
    // 1e30), so that chains this long do not all end in inf or NaN.
    // 40 outputs: three panels of dY, two of them taken together on
    // 512-bit registers (and in the forward pairs of pixel runs on each
    // full weight panel, the last panel's four rows alone).
    for cout in [13, 40] {
        let g = Cnhw::new(16, 70, 32, 32);
        let tame =
            |n, seed| values(n, seed).into_iter().map(|v| if v.abs() > 4.0 { 0.5 } else { v }).collect::<Vec<_>>();
        let ([x, w, dy], want) = conv_case(g, cout, 1000 + cout as u64, tame);
        check(&format!("conv dW over several image groups {g:?}"), |be| {
            let got = conv_backend(be, &x, g, &w, cout, &dy);
            assert_bits_eq(&format!("dW over several image groups on {}", be.name()), &got[1], &want[1]);
            got
        });
    }
    // Few input channels over many pixels: the dW's product has at most 36
    // columns and thousands of k steps, the GEMM's long-K path (each task
    // runs every K block for its rows); 13 outputs give both tasks rows, 3
    // outputs (one row panel) make the tasks split the column panels.
    for (i, (g, cout)) in [(Cnhw::new(4, 5, 32, 32), 13), (Cnhw::new(1, 3, 31, 29), 13), (Cnhw::new(4, 3, 32, 32), 3)]
        .into_iter()
        .enumerate()
    {
        let ([x, w, dy], want) = conv_case(g, cout, 400 + i as u64, values);
        let got = conv_backend(&CpuBackend::scalar(), &x, g, &w, cout, &dy);
        assert_bits_eq(&format!("scalar conv dW {g:?}"), &got[1], &want[1]);
        check(&format!("conv, long K {g:?}"), |be| conv_backend(be, &x, g, &w, cout, &dy));
    }
}

/// A block that ends in a 2 × 2 max pool hands its conv a dY with one
/// value per window at most (the AVX2 dW then runs its chains over the
/// nonzero pixels alone): dW and dX still equal the direct spec bit for
/// bit, at 1 and 2 threads, with zeros of both signs in dY and x.
#[test]
fn conv3x3_backward_on_a_pooled_gradient_equals_the_direct_spec_bitwise() {
    let tame = |n, seed| {
        values(n, seed)
            .into_iter()
            .map(|v| if v.abs() > 4.0 || v.abs() < 1e-6 { v.signum() * 0.0 } else { v })
            .collect::<Vec<_>>()
    };
    for (i, (g, cout)) in [(Cnhw::new(4, 6, 16, 16), 13), (Cnhw::new(32, 3, 8, 8), 16), (Cnhw::new(3, 2, 7, 9), 5)]
        .into_iter()
        .enumerate()
    {
        let (x, w) = (tame(g.len(), 1300 + i as u64), tame(cout * g.c * 9, 1400 + i as u64));
        let full = tame(cout * g.row(), 1500 + i as u64);
        // keep each window's value at a drawn corner, zero the rest
        let mut dy: Vec<f32> = full.iter().map(|v| v.signum() * 0.0).collect();
        for p in 0..cout * g.n {
            for wy in (0..g.h / 2 * 2).step_by(2) {
                for wx in (0..g.w / 2 * 2).step_by(2) {
                    let k = p * g.plane() + (wy + (p + wx) % 2) * g.w + wx + (wy / 2) % 2;
                    dy[k] = full[k];
                }
            }
        }
        let want = conv_direct(&x, g, &w, cout, &dy);
        check(&format!("conv backward, pooled dY {g:?}"), |be| {
            let got = conv_backend(be, &x, g, &w, cout, &dy);
            for (name, (a, b)) in ["dW", "dX"].iter().zip(got[1..].iter().zip(&want[1..])) {
                assert_bits_eq(&format!("{name}, pooled dY {g:?} on {}", be.name()), a, b);
            }
            got
        });
    }
}

#[test]
fn maxpool_keeps_the_first_maximum_and_routes_gradient_there() {
    let be = CpuBackend::best();
    let g = Cnhw::new(1, 1, 2, 4);
    let x = [1.0, 3.0, 2.0, 2.0, 3.0, 0.0, -1.0, 2.0];
    let (mut y, mut idx) = (vec![0.0; 2], vec![9u8; 2]);
    be.maxpool2_forward(&x, g, &mut y, &mut idx).unwrap();
    assert_eq!((y.clone(), idx.clone()), (vec![3.0, 2.0], vec![1, 0]));
    let mut dx = vec![f32::NAN; 8];
    be.maxpool2_backward(&[5.0, 7.0], &idx, g, &mut dx).unwrap();
    assert_eq!(dx, vec![0.0, 5.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // Odd sides drop the last row: 3×2 → 1×1.
    let (mut y1, mut i1) = (vec![0.0; 1], vec![0u8; 1]);
    be.maxpool2_forward(&[1.0, 2.0, 0.0, 0.5, 9.0, 9.0], Cnhw::new(1, 1, 3, 2), &mut y1, &mut i1).unwrap();
    assert_eq!((y1[0], i1[0]), (2.0, 1));
    let e = be.maxpool2_forward(&[0.0; 3], Cnhw::new(1, 1, 1, 3), &mut [], &mut []).unwrap_err();
    assert!(e.to_string().contains("at least 2×2"), "{e}");
}

/// Rows wide enough for the AVX2 max-pool's eight-output lanes (and odd
/// widths and heights for its tails and dropped edges), with NaN, ±inf,
/// signed zeros and ties among the values: the forward equals the scalar
/// spec at 1 and 2 threads, and the fused pool + ReLU backward equals the
/// pool's backward followed by the ReLU's, bit for bit.
#[test]
fn maxpool_lanes_and_the_fused_relu_backward_give_the_spec_bits_on_wide_rows() {
    for (i, &(c, n, h, w)) in [(2, 3, 4, 32), (1, 2, 5, 37), (3, 1, 6, 16), (2, 2, 3, 50)].iter().enumerate() {
        let g = Cnhw::new(c, n, h, w);
        let s = 90 + i as u64;
        let mut x: Vec<f32> = values(g.len(), s).iter().map(|v| (v * 2.0).round() / 2.0).collect();
        for (j, v) in x.iter_mut().enumerate() {
            match j % 29 {
                3 => *v = f32::NAN,
                7 => *v = f32::INFINITY,
                11 => *v = f32::NEG_INFINITY,
                13 => *v = -0.0,
                _ => {}
            }
        }
        let gp = Cnhw::new(c, n, h / 2, w / 2);
        let dy = values(gp.len(), s ^ 7);
        check(&format!("max-pool {g:?}"), |be| {
            let (mut y, mut idx) = (vec![f32::NAN; gp.len()], vec![9u8; gp.len()]);
            be.maxpool2_forward(&x, g, &mut y, &mut idx).unwrap();
            let mut dp = vec![f32::NAN; g.len()];
            be.maxpool2_backward(&dy, &idx, g, &mut dp).unwrap();
            let mut two = Vec::new();
            MathOps::relu_backward(be, &x, &dp, &mut two).unwrap();
            let mut fused = vec![f32::NAN; g.len()];
            be.maxpool2_relu_backward(&dy, &idx, &y, g, &mut fused).unwrap();
            assert_bits_eq(&format!("fused pool + ReLU backward {g:?} on {}", be.name()), &fused, &two);
            vec![y, idx.iter().map(|&v| v as f32).collect(), fused]
        });
    }
}

#[test]
fn label_channel_rejects_out_of_range_labels() {
    let be = CpuBackend::best();
    let e = be.label_channel(&[0.0; 8], 4, &[0, 2], &mut [0.0; 8]).unwrap_err();
    assert!(e.to_string().contains("label 2 with 2 classes"), "{e}");
}

#[test]
fn upsample_copies_each_value_to_its_four_outputs_and_sums_their_gradients_in_order() {
    let be = CpuBackend::best();
    let g = Cnhw::new(2, 1, 2, 3);
    let x: Vec<f32> = (0..g.len()).map(|i| i as f32).collect();
    let mut y = vec![0.0; 4 * g.len()];
    be.upsample2_forward(&x, g, &mut y).unwrap();
    // Plane 1, output (3, 5) comes from input (1, 2) = 6 + 5.
    assert_eq!(y[24 + 3 * 6 + 5], 11.0);
    assert_eq!(&y[..6], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
    // Backward, with values whose sum depends on the order.
    let mut dy = vec![0.0; y.len()];
    dy[0] = 1e8;
    dy[1] = 1.0;
    dy[6] = -1e8;
    dy[7] = 1.0;
    let mut dx = vec![0.0; g.len()];
    be.upsample2_backward(&dy, g, &mut dx).unwrap();
    assert_eq!(dx[0], ((1e8f32 + 1.0) + -1e8) + 1.0);
}

#[test]
fn standardized_rows_have_zero_mean_and_unit_variance_against_f64() {
    let be = CpuBackend::best();
    let d = 37;
    let x: Vec<f32> = values(5 * d, 3).iter().map(|v| v.clamp(-4.0, 4.0) + 2.0).collect();
    let mut y = vec![0.0; x.len()];
    be.standardize_rows(&x, d, 1e-5, &mut y).unwrap();
    for (xr, yr) in x.chunks(d).zip(y.chunks(d)) {
        let mu = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / d as f64;
        for (&a, &b) in xr.iter().zip(yr) {
            let want = (a as f64 - mu) / (var + 1e-5).sqrt();
            assert!((b as f64 - want).abs() < 1e-5 * want.abs().max(1.0), "{b} vs {want}");
        }
    }
    assert!(be.standardize_rows(&x, 0, 1e-5, &mut y).is_err());
}

fn geom() -> impl Strategy<Value = Cnhw> {
    (1usize..6, 1usize..5, 2usize..13, 2usize..13).prop_map(|(c, n, h, w)| Cnhw::new(c, n, h, w))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn conv3x3_avx2_matches_spec_bitwise(g in geom(), cout in 1usize..20, seed in any::<u64>()) {
        let x = values(g.len(), seed);
        let w = values(cout * g.c * 9, seed ^ 1);
        let dy = values(cout * g.row(), seed ^ 2);
        check("conv", |be| conv_backend(be, &x, g, &w, cout, &dy));
    }

    #[test]
    fn relu_pool_sumsq_gives_the_bits_of_relu_then_pool_then_sumsq(g in geom(), seed in any::<u64>()) {
        let r0 = values(g.len(), seed);
        check("relu_pool_sumsq", |be| {
            let mut outs = Vec::new();
            for (pool, goodness) in [(true, true), (true, false), (false, true), (false, false)] {
                // The three ops one after another.
                let mut r = r0.clone();
                MathOps::relu(be, &mut r).unwrap();
                let (mut y, mut idx, mut ss) = (Vec::new(), Vec::new(), Vec::new());
                let go = if pool {
                    PoolOps::maxpool2_forward(be, &r, g, &mut y, &mut idx).unwrap();
                    Cnhw::new(g.c, g.n, g.h / 2, g.w / 2)
                } else {
                    g
                };
                if goodness {
                    Norm2dOps::block_sumsq(be, if pool { &y } else { &r }, go, &mut ss).unwrap();
                }
                // The fused op, into buffers of the wrong lengths (it resizes).
                let mut rf = r0.clone();
                let (mut yf, mut idxf, mut ssf) = (vec![7.0; 3], vec![9u8; 1], vec![7.0; 1]);
                PoolOps::relu_pool_sumsq(be, &mut rf, g, pool.then_some((&mut yf, &mut idxf)), goodness.then_some(&mut ssf))
                    .unwrap();
                let what = format!("relu_pool_sumsq {g:?} pool {pool} goodness {goodness} on {}", be.name());
                assert_bits_eq(&format!("{what}: r"), &rf, &r);
                if pool {
                    assert_bits_eq(&format!("{what}: pooled"), &yf, &y);
                    assert_eq!(idxf, idx, "{what}: positions");
                }
                if goodness {
                    assert_bits_eq(&format!("{what}: sums of squares"), &ssf, &ss);
                }
                outs.extend([rf, yf, ssf]);
            }
            outs
        });
    }

    #[test]
    fn pool_norms_and_label_channel_avx2_match_spec_bitwise(g in geom(), seed in any::<u64>()) {
        let x: Vec<f32> = values(g.len(), seed).iter().map(|v| v.clamp(-1e3, 1e3)).collect();
        let dy = values(g.len(), seed ^ 1);
        let gamma = values(g.c, seed ^ 2);
        let beta = values(g.c, seed ^ 3);
        let dldg = values(g.n, seed ^ 4);
        let labels: Vec<u32> = (0..g.n as u32).map(|b| (b * 7 + seed as u32) % 3).collect();
        let emb = values(3 * g.plane(), seed ^ 5);
        check("pool/norm/embed", |be| {
            let gp = Cnhw::new(g.c, g.n, g.h / 2, g.w / 2);
            let (mut y, mut idx) = (vec![0.0; gp.len()], vec![0u8; gp.len()]);
            be.maxpool2_forward(&x, g, &mut y, &mut idx).unwrap();
            let mut dxp = vec![0.0; g.len()];
            be.maxpool2_backward(&dy[..gp.len()], &idx, g, &mut dxp).unwrap();
            let idxf: Vec<f32> = idx.iter().map(|&i| i as f32).collect();
            let c = g.c;
            let (mut mean, mut var, mut rstd) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
            be.batchnorm_stats(&x, g, 1e-5, &mut mean, &mut var, &mut rstd).unwrap();
            let mut bn = vec![0.0; g.len()];
            be.batchnorm_apply(&x, g, BnStats { mean: &mean[..], rstd: &rstd[..] }, &gamma, &beta, &mut bn).unwrap();
            let (mut dxb, mut dg, mut db) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
            let grads = BnGrads { dx: Some(&mut dxb[..]), dgamma: &mut dg[..], dbeta: &mut db[..] };
            be.batchnorm_backward(&x, g, BnStats { mean: &mean[..], rstd: &rstd[..] }, &gamma, &dy, grads).unwrap();
            // Without dx, the parameter gradients alone: the same bits.
            let (mut dg1, mut db1) = (vec![0.0; c], vec![0.0; c]);
            let grads = BnGrads { dx: None, dgamma: &mut dg1[..], dbeta: &mut db1[..] };
            be.batchnorm_backward(&x, g, BnStats { mean: &mean[..], rstd: &rstd[..] }, &gamma, &dy, grads).unwrap();
            assert_bits_eq("dγ without dx", &dg1, &dg);
            assert_bits_eq("dβ without dx", &db1, &db);
            let (mut rm, mut rv) = (gamma.clone(), beta.iter().map(|v| v.abs()).collect::<Vec<_>>());
            be.batchnorm_update_running(&mean, &var, g.row(), 0.1, &mut rm, &mut rv).unwrap();
            let mut ss = vec![0.0; g.n];
            be.block_sumsq(&x, g, &mut ss).unwrap();
            let mut lg = vec![0.0; g.len()];
            be.block_local_grad(&x, g, &dldg, &mut lg).unwrap();
            let (mut sn, mut inv) = (vec![0.0; g.len()], vec![0.0; g.n]);
            be.sample_norm_forward(&x, g, 1e-4, &mut sn, &mut inv).unwrap();
            let mut dsn = vec![0.0; g.len()];
            be.sample_norm_backward(&x, g, &inv, &dy, &mut dsn, &mut Vec::new()).unwrap();
            let mut chan = vec![0.0; g.n * g.plane()];
            be.label_channel(&emb, g.plane(), &labels, &mut chan).unwrap();
            let mut demb = vec![0.0; emb.len()];
            be.label_channel_grad(&dy[..chan.len()], g.plane(), &labels, &mut demb).unwrap();
            let mut up = vec![0.0; 4 * g.len()];
            be.upsample2_forward(&x, g, &mut up).unwrap();
            let mut dup = vec![0.0; g.len()];
            let dy4: Vec<f32> = dy.iter().chain(&dy).chain(&dy).chain(&dy).copied().collect();
            be.upsample2_backward(&dy4, g, &mut dup).unwrap();
            let mut st = vec![0.0; g.len()];
            be.standardize_rows(&x, g.plane(), 1e-5, &mut st).unwrap();
            vec![y, idxf, dxp, mean, var, rstd, bn, dxb, dg, db, rm, rv, ss, lg, sn, inv, dsn, chan, demb, up, dup, st]
        });
    }
}
