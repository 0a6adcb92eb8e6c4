//! Every backend == the scalar specification, bit for bit, for every op of
//! every family, through the one trait interface the networks use
//! (`ffwd_kernels::Backend`). The suite is written once, generic over the
//! backend, and run on the AVX2 backend (always, where the CPU has it) and
//! on the CUDA backend in each of its GEMM tiles (where a GPU is present).
//!
//! Without a GPU the CUDA half prints `SKIP (no CUDA)` and passes; under
//! `FFWD_REQUIRE_GPU=1` (set on the GPU machine) a missing device fails it.

mod common;

use common::{assert_bits_eq, values};
use ffwd_kernels::ops::{Backend, Mat, StatSlot};
use ffwd_kernels::*;

/// The specification every backend is compared with.
fn spec() -> CpuBackend {
    CpuBackend::scalar()
}

fn up<B: Backend>(be: &B, v: &[f32]) -> B::Buf {
    let mut b = B::Buf::default();
    be.upload(v, &mut b).unwrap();
    b
}

fn down<B: Backend>(be: &B, b: &B::Buf) -> Vec<f32> {
    be.download(b).unwrap()
}

fn ids<B: Backend>(be: &B, v: &[u32]) -> B::Ids {
    let mut b = B::Ids::default();
    be.upload_ids(v, &mut b).unwrap();
    b
}

/// Values ≥ 0 (goodness, variances).
fn positive(n: usize, seed: u64) -> Vec<f32> {
    values(n, seed).iter().map(|v| v.abs().min(50.0)).collect()
}

/// Values in [-4, 4) without the extremes (inputs of ops whose spec
/// assumes finite activations).
fn moderate(n: usize, seed: u64) -> Vec<f32> {
    values(n, seed).iter().map(|v| if v.is_finite() && v.abs() < 8.0 { *v } else { 0.5 }).collect()
}

/// One op call with host inputs.
enum Op<'a> {
    RowSumsq(&'a [f32], usize),
    RowSum(&'a [f32], usize),
    Normalize(&'a [f32], usize, Norm, f32),
    NormalizeGiven(&'a [f32], usize, Norm, f32),
    Standardize(&'a [f32], usize, f32),
    FfLoss(FfLoss, GoodnessForm, usize, &'a [f32]),
    GoodnessMeans(&'a [f32], MeanOf),
    SoftmaxXent(&'a [f32], usize, &'a [u32]),
    SoftmaxBce(&'a [f32], usize, &'a [u32]),
    Cosine(&'a [f32], &'a [f32], usize),
    SoftmaxRows(&'a [f32], usize),
    Mse(&'a [f32], &'a [f32]),
    Gan(&'a [f32], GanHalves),
    Optim(OptimStep, [&'a [f32]; 4]),
    LocalGrad(&'a [f32], usize, &'a [f32]),
    BiasGrad(&'a [f32], usize, usize),
    LinearForward(&'a [f32], &'a [f32], &'a [f32], (usize, usize)),
    LinearGrads(&'a [f32], &'a [f32], &'a [f32], (usize, usize), Option<(&'a [f32], usize)>),
    LinearUpdate(OptimStep, [&'a [f32]; 5], (usize, usize), Option<(&'a [f32], usize)>),
    /// Two peer-normalisation steps (the means read back in): h, (d, n),
    /// the settings, the initial means.
    PeerGrad(&'a [f32], (usize, usize), PeerNorm, &'a [f32]),
    PackedStep(OptimStep, &'a [f32], &'a [f32], (usize, usize)),
    Conv(&'a [f32], Cnhw, &'a [f32], usize, &'a [f32], bool),
    Pool(&'a [f32], Cnhw, &'a [f32]),
    Upsample(&'a [f32], Cnhw, &'a [f32]),
    BatchNorm(&'a [f32], Cnhw, [&'a [f32]; 3], f32),
    BnRunning(&'a [f32], &'a [f32], usize, f32, [&'a [f32]; 2]),
    BlockNorms(&'a [f32], Cnhw, &'a [f32], &'a [f32], f32),
    LabelChannel(&'a [f32], usize, &'a [u32], usize, usize),
    Unary(Unary, &'a [f32]),
    Relu(&'a [f32], &'a [f32]),
    Add(&'a [f32], &'a [f32]),
    Philox(RngPos, usize, usize, &'a [f32], (f32, f32)),
    Layout(&'a [f32], usize, usize, usize, Cnhw),
}

/// A backend seen through host vectors, so that one op description can
/// drive both the backend under test and the spec.
struct Wrap<'a, B>(&'a B);

impl<B: Backend> Wrap<'_, B> {
    fn gemm(
        &self,
        (a, ar, ac, at): (&[f32], usize, usize, bool),
        (b, br, bc, bt): (&[f32], usize, usize, bool),
        c0: &[f32],
        epi: u8,
        bias: &[f32],
    ) -> Vec<f32> {
        let be = self.0;
        let (a, b, bias) = (up(be, a), up(be, b), up(be, bias));
        let mut c = up(be, c0);
        let av = if at { Mat::new(&a, ac, ar).unwrap().t() } else { Mat::new(&a, ar, ac).unwrap() };
        let bv = if bt { Mat::new(&b, bc, br).unwrap().t() } else { Mat::new(&b, br, bc).unwrap() };
        let e = match epi {
            0 => Epilogue::None,
            1 => Epilogue::Accumulate,
            2 => Epilogue::Bias(&bias),
            _ => Epilogue::BiasRelu(&bias),
        };
        be.gemm(av, bv, &mut c, e).unwrap();
        down(be, &c)
    }

    /// Upload the inputs, run the op, download every output.
    fn call(&self, op: Op<'_>) -> Vec<Vec<f32>> {
        let be = self.0;
        let u = |v: &[f32]| up(be, v);
        let d = |b: &B::Buf| down(be, b);
        let mut o = B::Buf::default();
        let mut o2 = B::Buf::default();
        let mut o3 = B::Buf::default();
        let mut st = be.zeros(4).unwrap();
        let mut ls = B::LossScratch::default();
        match op {
            Op::RowSumsq(x, dd) => {
                be.row_sumsq(&u(x), dd, &mut o).unwrap();
                vec![d(&o)]
            }
            Op::RowSum(x, dd) => {
                be.row_sum(&u(x), dd, &mut o).unwrap();
                vec![d(&o)]
            }
            Op::Normalize(x, dd, k, eps) => {
                be.normalize_rows(&u(x), &mut o, dd, k, eps).unwrap();
                vec![d(&o)]
            }
            Op::NormalizeGiven(x, dd, k, eps) => {
                let xb = u(x);
                be.row_sumsq(&xb, dd, &mut o2).unwrap();
                be.normalize_rows_given(&xb, &o2, &mut o, dd, k, eps).unwrap();
                vec![d(&o)]
            }
            Op::Standardize(x, dd, eps) => {
                be.standardize_rows(&u(x), dd, eps, &mut o).unwrap();
                vec![d(&o)]
            }
            Op::FfLoss(l, f, dd, g) => {
                be.ff_loss(l, f, dd, &u(g), LossOut::new(&mut o, &mut ls, StatSlot::new(&mut st, 1))).unwrap();
                vec![d(&o), d(&st)]
            }
            Op::GoodnessMeans(g, m) => {
                be.goodness_means(&u(g), m, StatSlot::new(&mut st, 2)).unwrap();
                vec![d(&st)]
            }
            Op::SoftmaxXent(z, c, y) => {
                be.softmax_xent(&u(z), c, &ids(be, y), LossOut::new(&mut o, &mut ls, StatSlot::new(&mut st, 0)))
                    .unwrap();
                vec![d(&o), d(&st)]
            }
            Op::SoftmaxBce(z, c, y) => {
                be.softmax_bce(&u(z), c, &ids(be, y), LossOut::new(&mut o, &mut ls, StatSlot::new(&mut st, 3)))
                    .unwrap();
                vec![d(&o), d(&st)]
            }
            Op::Cosine(a, b, dd) => {
                be.cosine_embedding(&u(a), &u(b), dd, LossOut::new(&mut o, &mut ls, StatSlot::new(&mut st, 0)))
                    .unwrap();
                vec![d(&o), d(&st)]
            }
            Op::SoftmaxRows(z, c) => {
                be.softmax_rows(&u(z), c, &mut o, &mut ls).unwrap();
                vec![d(&o)]
            }
            Op::Mse(a, b) => {
                be.mse(&u(a), &u(b), &mut o, StatSlot::new(&mut st, 1)).unwrap();
                vec![d(&o), d(&st)]
            }
            Op::Gan(z, h) => {
                be.gan_loss(&u(z), h, &mut o, &mut ls, StatSlot::new(&mut st, 2)).unwrap();
                vec![d(&o), d(&st)]
            }
            Op::Optim(step, [w, g, a, b]) => {
                let (mut w, mut a, mut b) = (u(w), u(a), u(b));
                be.optim_step(&step, &mut w, &u(g), &mut a, &mut b).unwrap();
                vec![d(&w), d(&a), if step.has_second_state() { d(&b) } else { Vec::new() }]
            }
            Op::LocalGrad(h, dd, g) => {
                be.local_grad(&u(h), dd, &u(g), &mut o).unwrap();
                vec![d(&o)]
            }
            Op::BiasGrad(dz, m, n) => {
                be.bias_grad(&u(dz), m, n, &mut o).unwrap();
                vec![d(&o)]
            }
            Op::LinearForward(x, w, bias, (k, n)) => {
                let p = be.pack(w, k, n).unwrap();
                let steps = be.linear_forward_packed(&u(x), &p, &u(bias), &mut o, &mut o2).unwrap();
                assert!(steps.ran <= steps.all);
                assert_eq!(be.unpack(&p).unwrap(), w, "pack/unpack round trip");
                be.unpack_into(&p, &mut o3).unwrap();
                vec![d(&o), d(&o2), d(&o3)]
            }
            Op::LinearGrads(xn, h, g, dims, peer) => {
                let mut s = B::LinearScratch::default();
                let pb = peer.map(|(p, r)| (u(p), r));
                let peer = pb.as_ref().map(|(p, rows)| PeerTerm { p, rows: *rows });
                be.linear_grads((&u(xn), &u(h), &u(g)), peer, dims, (&mut o, &mut o2), &mut s).unwrap();
                vec![d(&o), d(&o2)]
            }
            Op::PeerGrad(h, dims, peer, means) => {
                let (h, mut m) = (u(h), u(means));
                be.peer_grad(&h, dims, peer, &mut m, &mut o).unwrap();
                let first = d(&o);
                be.peer_grad(&h, dims, peer, &mut m, &mut o).unwrap();
                vec![first, d(&o), d(&m)]
            }
            Op::LinearUpdate(step, [xn, h, g, w, bias], (k, n), peer) => {
                let pb = peer.map(|(p, r)| (u(p), r));
                let mut p = be.pack(w, k, n).unwrap();
                let (mut wa, mut wb) = (be.packed_state(&p).unwrap(), be.packed_state(&p).unwrap());
                let mut bias = u(bias);
                let (mut ba, mut bb) = (be.zeros(n).unwrap(), be.zeros(n).unwrap());
                let (xn, h, g) = (u(xn), u(h), u(g));
                let mut s = B::LinearScratch::default();
                // Two steps, so the optimiser state is read back in as well.
                for _ in 0..2 {
                    let upd = LinearUpdate {
                        xn: &xn,
                        h: &h,
                        dldg: &g,
                        w: Param { value: &mut p, a: &mut wa, b: &mut wb },
                        bias: Param { value: &mut bias, a: &mut ba, b: &mut bb },
                        step: &step,
                        peer: pb.as_ref().map(|(p, rows)| PeerTerm { p, rows: *rows }),
                    };
                    be.linear_backward_update(upd, &mut s).unwrap();
                }
                vec![be.unpack(&p).unwrap(), d(&bias), d(&ba)]
            }
            Op::PackedStep(step, w, g, (k, n)) => {
                let mut p = be.pack(w, k, n).unwrap();
                let (mut a, mut b) = (be.packed_state(&p).unwrap(), be.packed_state(&p).unwrap());
                let mut s = B::LinearScratch::default();
                let g = u(g);
                for _ in 0..2 {
                    be.packed_step(&step, Param { value: &mut p, a: &mut a, b: &mut b }, &g, &mut s).unwrap();
                }
                // the moments, row-major (what a training state saves), and
                // saved and restored: the same bits
                let (ua, ub) = (be.unpack_state(&p, &a).unwrap(), be.unpack_state(&p, &b).unwrap());
                let mut back = B::Buf::default();
                be.pack_state(&p, &ua, &mut back).unwrap();
                let again = be.unpack_state(&p, &back).unwrap();
                assert_bits_eq(&format!("packed state round trip {k}×{n}"), &again, &ua);
                assert!(be.pack_state(&p, &ua[1..], &mut back).unwrap_err().to_string().contains("pack_state"));
                vec![be.unpack(&p).unwrap(), ua, ub]
            }
            Op::Conv(x, g, w, cout, dy, want_dx) => {
                let (x, w, dy) = (u(x), u(w), u(dy));
                let mut s = B::ConvScratch::default();
                be.conv3x3_forward(&x, g, &w, cout, &mut o, &mut s).unwrap();
                let a = ConvBackward { x: &x, g, w: &w, cout, dy: &dy };
                be.conv3x3_backward(a, &mut o2, want_dx.then_some(&mut o3), &mut s).unwrap();
                // the last channel's chains continued from the others'
                let mut o4 = B::Buf::default();
                if g.c > 1 {
                    be.conv3x3_forward_channels(&x, g, &w, cout, (0..g.c - 1, false), &mut o4, &mut s).unwrap();
                    be.conv3x3_forward_channels(&x, g, &w, cout, (g.c - 1..g.c, true), &mut o4, &mut s).unwrap();
                    assert_bits_eq("conv forward continued over the last channel", &d(&o4), &d(&o));
                }
                let bad = be.conv3x3_forward_channels(&x, g, &w, cout, (g.c..g.c + 1, false), &mut o4, &mut s);
                assert!(bad.unwrap_err().to_string().contains("channels"));
                vec![d(&o), d(&o2), d(&o3)]
            }
            Op::Pool(x, g, dy) => {
                let mut idx = B::PoolIdx::default();
                be.maxpool2_forward(&u(x), g, &mut o, &mut idx).unwrap();
                be.maxpool2_backward(&u(dy), &idx, g, &mut o2).unwrap();
                // the pool's input as the ReLU output: its negatives and zeros
                // mask, read through the pool's output
                be.maxpool2_relu_backward(&u(dy), &idx, &o, g, &mut o3).unwrap();
                vec![d(&o), d(&o2), d(&o3)]
            }
            Op::Upsample(x, g, dy) => {
                be.upsample2_forward(&u(x), g, &mut o).unwrap();
                be.upsample2_backward(&u(dy), g, &mut o2).unwrap();
                vec![d(&o), d(&o2)]
            }
            Op::BatchNorm(x, g, [gamma, beta, dy], eps) => {
                let x = u(x);
                let (mut mean, mut var, mut rstd) = (B::Buf::default(), B::Buf::default(), B::Buf::default());
                be.batchnorm_stats(&x, g, eps, &mut mean, &mut var, &mut rstd).unwrap();
                let mut rstd2 = B::Buf::default();
                be.bn_rstd(&var, eps, &mut rstd2).unwrap();
                let (gamma, beta) = (u(gamma), u(beta));
                be.batchnorm_apply(&x, g, BnStats { mean: &mean, rstd: &rstd }, &gamma, &beta, &mut o).unwrap();
                let dy = u(dy);
                let grads = BnGrads { dx: Some(&mut o2), dgamma: &mut o3, dbeta: &mut st };
                be.batchnorm_backward(&x, g, BnStats { mean: &mean, rstd: &rstd }, &gamma, &dy, grads).unwrap();
                // Without dx: dγ and dβ alone, into fresh buffers.
                let (mut dg, mut db) = (B::Buf::default(), B::Buf::default());
                let grads = BnGrads { dx: None, dgamma: &mut dg, dbeta: &mut db };
                be.batchnorm_backward(&x, g, BnStats { mean: &mean, rstd: &rstd }, &gamma, &dy, grads).unwrap();
                vec![d(&mean), d(&var), d(&rstd), d(&rstd2), d(&o), d(&o2), d(&o3), d(&st), d(&dg), d(&db)]
            }
            Op::BnRunning(mean, var, n, m, [rm, rv]) => {
                let (mut rm, mut rv) = (u(rm), u(rv));
                be.batchnorm_update_running(&u(mean), &u(var), n, m, &mut rm, &mut rv).unwrap();
                vec![d(&rm), d(&rv)]
            }
            Op::BlockNorms(x, g, dldg, dy, eps) => {
                let x = u(x);
                be.block_sumsq(&x, g, &mut o).unwrap();
                be.block_local_grad(&x, g, &u(dldg), &mut o2).unwrap();
                let (mut inv, mut inv2, mut y, mut dx) =
                    (B::Buf::default(), B::Buf::default(), B::Buf::default(), B::Buf::default());
                be.sample_norm_inv(&x, g, eps, &mut inv).unwrap();
                be.sample_norm_forward(&x, g, eps, &mut y, &mut inv2).unwrap();
                let mut s = B::NormScratch::default();
                be.sample_norm_backward(&x, g, &inv2, &u(dy), &mut dx, &mut s).unwrap();
                vec![d(&o), d(&o2), d(&inv), d(&inv2), d(&y), d(&dx)]
            }
            Op::LabelChannel(emb, hw, labels, offset, total) => {
                let l = ids(be, labels);
                let mut x = be.zeros(total).unwrap();
                be.label_channel(&u(emb), hw, &l, &mut x, offset).unwrap();
                let dx = u(&values(total, 77));
                let mut o = u(&values(emb.len(), 78)); // overwritten
                be.label_channel_grad(&dx, offset, hw, &l, &mut o).unwrap();
                vec![d(&x), d(&o)]
            }
            Op::Unary(f, x) => {
                be.unary(f, &u(x), &mut o).unwrap();
                vec![d(&o)]
            }
            Op::Relu(x, dy) => {
                let mut y = u(x);
                be.relu(&mut y).unwrap();
                be.relu_backward(&y, &u(dy), &mut o).unwrap();
                vec![d(&y), d(&o)]
            }
            Op::Add(a, b) => {
                let mut acc = u(a);
                be.add_assign(&mut acc, &u(b)).unwrap();
                vec![d(&acc)]
            }
            Op::Philox(pos, rows, dd, x, (p, sd)) => {
                be.gaussian(pos, rows, dd, 1, &mut o).unwrap();
                be.dae_corrupt(&u(x), dd, pos, p, sd, &mut o2).unwrap();
                vec![d(&o), d(&o2)]
            }
            Op::Layout(x, rows, w, off, g) => {
                let xb = u(x);
                let wide = w + off + 3;
                let mut dst = be.zeros(rows * wide).unwrap();
                be.put_cols(&xb, w, &mut dst, wide, off).unwrap();
                be.take_cols(&dst, wide, off, w, &mut o).unwrap();
                let block = u(&values(g.len(), 5));
                be.cnhw_to_rows(&block, g, &mut o2).unwrap();
                be.rows_to_cnhw(&o2, g, &mut o3).unwrap();
                let mut big = be.zeros(x.len() + 9).unwrap();
                be.copy_into(&xb, &mut big, 4).unwrap();
                let mut c = B::Buf::default();
                be.copy(&xb, &mut c).unwrap();
                be.resize(&mut c, x.len() + 2).unwrap();
                vec![d(&dst), d(&o), d(&o2), d(&o3), d(&big), d(&c)]
            }
        }
    }
}

/// `op` on the backend and on the spec: every output the same bits.
fn check<B: Backend>(be: &B, what: &str, op: impl Fn() -> Op<'static>) {
    let got = Wrap(be).call(op());
    let want = Wrap(&spec()).call(op());
    assert_eq!(got.len(), want.len(), "{what}: outputs");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_bits_eq(&format!("{what} [{} output {i}]", be.name()), g, w);
    }
}

const SHAPES: [(usize, usize, usize); 6] =
    [(1, 1, 1), (7, 13, 5), (33, 31, 300), (64, 64, 64), (100, 17, 521), (200, 130, 784)];

/// Shapes for the GPU's GEMM tiles: edges of both tiles, odd sizes, K that
/// is not a multiple of either k tile, a K of 1.
const TILE_SHAPES: [(usize, usize, usize); 5] =
    [(129, 131, 9), (128, 128, 128), (257, 200, 33), (3, 300, 1), (300, 5, 77)];

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn gemm<B: Backend>(be: &B) {
    for (i, &(m, n, k)) in SHAPES.iter().chain(&TILE_SHAPES).enumerate() {
        let s = i as u64;
        let (a, b, bias, c0) = (values(m * k, 10 + s), values(k * n, 20 + s), values(n, 30 + s), values(m * n, 40 + s));
        for layout in 0..4u8 {
            for epi in 0..4u8 {
                let (at, bt) = (layout % 2 == 1, layout >= 2);
                let what = format!("gemm {m}×{k}·{k}×{n} layout {layout} epilogue {epi}");
                let got = Wrap(be).gemm((&a, m, k, at), (&b, k, n, bt), &c0, epi, &bias);
                let want = Wrap(&spec()).gemm((&a, m, k, at), (&b, k, n, bt), &c0, epi, &bias);
                assert_bits_eq(&format!("{what} [{}]", be.name()), &got, &want);
            }
        }
    }
}

fn linear<B: Backend>(be: &B) {
    for (i, &(rows, dout, din)) in SHAPES.iter().chain(&TILE_SHAPES).enumerate() {
        let rows = 2 * rows;
        let s = 100 + i as u64;
        let xn = leak(moderate(rows * din, s));
        let w = leak(values(din * dout, s + 1).iter().map(|v| v.clamp(-1.0, 1.0)).collect());
        let bias = leak(moderate(dout, s + 2));
        let h = leak(positive(rows * dout, s + 3));
        // dL/dG with exact zeros (rows left out of dW) and both signs.
        let g =
            leak(values(rows, s + 4).iter().map(|v| if v.abs() > 3.0 { 0.0 } else { v.clamp(-1.0, 1.0) }).collect());
        let dz = leak(moderate(rows * dout, s + 5));
        let dims = (din, dout);
        check(be, &format!("linear forward {rows}×{din}→{dout}"), || Op::LinearForward(xn, w, bias, dims));
        check(be, &format!("linear grads {rows}×{din}→{dout}"), || Op::LinearGrads(xn, h, g, dims, None));
        // Peer normalisation: activity with the ReLU off in about a third
        // of the places, the term on the first half of the rows (one row
        // with dL/dG = 0 among them, kept by the term).
        let hp =
            leak(values(rows * dout, s + 7).iter().map(|v| if *v < -0.5 { 0.0 } else { v.abs().min(8.0) }).collect());
        let mut gp = g.to_vec();
        gp[0] = 0.0;
        let gp = leak(gp);
        let pterm = leak(moderate(dout, s + 8).iter().map(|v| v * 1e-2).collect());
        let peer = Some((pterm, rows / 2));
        check(be, &format!("linear grads with a peer term {rows}×{din}→{dout}"), || {
            Op::LinearGrads(xn, hp, gp, dims, peer)
        });
        let means = leak(positive(dout, s + 9));
        let pn = PeerNorm { lambda: 0.03, momentum: 0.9 };
        check(be, &format!("peer grad {rows}×{dout}"), || Op::PeerGrad(hp, (dout, rows / 2), pn, means));
        check(be, &format!("local grad {rows}×{dout}"), || Op::LocalGrad(h, dout, g));
        check(be, &format!("bias grad {rows}×{dout}"), || Op::BiasGrad(dz, rows, dout));
        let wg = leak(moderate(din * dout, s + 6));
        for step in steps() {
            check(be, &format!("fused update {rows}×{din}→{dout} {step:?}"), move || {
                Op::LinearUpdate(step, [xn, h, g, w, bias], dims, None)
            });
            check(be, &format!("fused update with a peer term {rows}×{din}→{dout} {step:?}"), move || {
                Op::LinearUpdate(step, [xn, hp, gp, w, bias], dims, peer)
            });
            check(be, &format!("packed step {din}×{dout} {step:?}"), move || Op::PackedStep(step, w, wg, dims));
        }
    }
}

fn steps() -> [OptimStep; 4] {
    let adam = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, t: 3 };
    [
        OptimStep::Adam(adam),
        OptimStep::Adam(AdamStep { weight_decay: 1e-2, decoupled: true, ..adam }),
        OptimStep::Sgd(SgdStep { lr: 0.01, momentum: 0.9, weight_decay: 1e-4, nesterov: false }),
        OptimStep::Sgd(SgdStep { lr: 0.05, momentum: 0.5, weight_decay: 0.0, nesterov: true }),
    ]
}

fn reduce<B: Backend>(be: &B) {
    for (i, &(rows, d, _)) in SHAPES.iter().enumerate() {
        let x = leak(values(rows * d, 200 + i as u64));
        let xm = leak(moderate(rows * d, 210 + i as u64));
        check(be, &format!("row sumsq {rows}×{d}"), || Op::RowSumsq(x, d));
        check(be, &format!("row sum {rows}×{d}"), || Op::RowSum(x, d));
        for norm in [Norm::Rms, Norm::L2, Norm::None] {
            check(be, &format!("normalize {rows}×{d} {norm:?}"), || Op::Normalize(x, d, norm, 1e-8));
            check(be, &format!("normalize given {rows}×{d} {norm:?}"), || Op::NormalizeGiven(xm, d, norm, 1e-8));
        }
        check(be, &format!("standardize {rows}×{d}"), || Op::Standardize(xm, d, 1e-5));
    }
}

fn losses<B: Backend>(be: &B) {
    for (i, &(n, c, _)) in SHAPES.iter().enumerate() {
        let s = 300 + i as u64;
        let g = leak(positive(2 * n, s));
        for loss in [FfLoss::Threshold { theta: 2.0 }, FfLoss::Symba { alpha: 4.0 }] {
            for form in [GoodnessForm::Sum, GoodnessForm::Mean] {
                check(be, &format!("ff loss {n} {loss:?} {form:?}"), || Op::FfLoss(loss, form, 7, g));
            }
        }
        check(be, &format!("goodness means {n} L32"), || Op::GoodnessMeans(g, MeanOf::L32));
        check(be, &format!("goodness means {n} f64"), || Op::GoodnessMeans(g, MeanOf::PerValueF64 { d: 3 }));
        let c = c.max(2);
        let z = leak(moderate(n * c, s + 1).iter().map(|v| v * 3.0).collect());
        let y = leak((0..n).map(|r| ((r * 7 + i) % c) as u32).collect());
        check(be, &format!("softmax xent {n}×{c}"), || Op::SoftmaxXent(z, c, y));
        check(be, &format!("softmax bce {n}×{c}"), || Op::SoftmaxBce(z, c, y));
        check(be, &format!("softmax rows {n}×{c}"), || Op::SoftmaxRows(z, c));
        let (a, b) = (leak(moderate(n * c, s + 2)), leak(moderate(n * c, s + 3)));
        let mut a0 = a.to_vec();
        a0[..c].fill(0.0); // a zero row: the cosine's ε floor
        let a0 = leak(a0);
        check(be, &format!("cosine {n}×{c}"), || Op::Cosine(a0, b, c));
        check(be, &format!("mse {n}×{c}"), || Op::Mse(a, b));
        let zl = leak(moderate(2 * n, s + 4).iter().map(|v| v * 5.0).collect());
        check(be, &format!("gan loss real+fake {n}"), || Op::Gan(zl, GanHalves::RealThenFake));
        check(be, &format!("gan loss all real {n}"), || Op::Gan(&zl[..n], GanHalves::AllReal));
    }
}

fn optim<B: Backend>(be: &B) {
    for (i, n) in [1usize, 7, 8, 33, 1000, 4099].into_iter().enumerate() {
        let s = 400 + i as u64;
        let (w, g) = (leak(moderate(n, s)), leak(moderate(n, s + 1)));
        let (a, b) = (leak(moderate(n, s + 2)), leak(positive(n, s + 3)));
        for step in steps() {
            check(be, &format!("optimiser {n} {step:?}"), move || Op::Optim(step, [w, g, a, b]));
        }
    }
}

/// Geometries: odd sides, 1×1, several images and channels.
const GEOMS: [(usize, usize, usize, usize); 6] =
    [(1, 1, 2, 2), (2, 3, 5, 7), (3, 2, 8, 8), (4, 5, 6, 4), (1, 2, 1, 1), (2, 2, 3, 37)];

fn conv<B: Backend>(be: &B) {
    for (i, &(c, n, h, w)) in GEOMS.iter().enumerate() {
        let g = Cnhw::new(c, n, h, w);
        let s = 500 + i as u64;
        for cout in [1usize, 3] {
            let x = leak(moderate(g.len(), s));
            let wt = leak(moderate(cout * c * 9, s + 1));
            let dy = leak(moderate(g.with_channels(cout).len(), s + 2));
            for dx in [false, true] {
                check(be, &format!("conv {g:?} → {cout} dx={dx}"), || Op::Conv(x, g, wt, cout, dy, dx));
            }
        }
    }
}

fn pool<B: Backend>(be: &B) {
    for (i, &(c, n, h, w)) in GEOMS.iter().enumerate().filter(|(_, g)| g.2 >= 2 && g.3 >= 2) {
        let s = 600 + i as u64;
        let g = Cnhw::new(c, n, h, w);
        let x = leak(values(g.len(), s));
        // Ties: whole windows of one value.
        let ties = leak(values(g.len(), s).iter().map(|v| (v * 2.0).round()).collect());
        let dy = leak(moderate(c * n * (h / 2) * (w / 2), s + 1));
        check(be, &format!("max-pool {g:?}"), || Op::Pool(x, g, dy));
        check(be, &format!("max-pool ties {g:?}"), || Op::Pool(ties, g, dy));
        let dyu = leak(moderate(4 * g.len(), s + 2));
        check(be, &format!("upsample {g:?}"), || Op::Upsample(x, g, dyu));
    }
}

fn norm2d<B: Backend>(be: &B) {
    for (i, &(c, n, h, w)) in GEOMS.iter().enumerate() {
        let s = 700 + i as u64;
        let g = Cnhw::new(c, n, h, w);
        let x = leak(moderate(g.len(), s));
        let (gamma, beta, dy) = (leak(moderate(c, s + 1)), leak(moderate(c, s + 2)), leak(moderate(g.len(), s + 3)));
        check(be, &format!("batch norm {g:?}"), || Op::BatchNorm(x, g, [gamma, beta, dy], 1e-5));
        let (mean, var) = (leak(moderate(c, s + 4)), leak(positive(c, s + 5)));
        let (rm, rv) = (leak(moderate(c, s + 6)), leak(positive(c, s + 7)));
        check(be, &format!("running stats {g:?}"), || Op::BnRunning(mean, var, g.row(), 0.1, [rm, rv]));
        let dldg = leak(moderate(n, s + 8));
        check(be, &format!("block norms {g:?}"), || Op::BlockNorms(x, g, dldg, dy, 1e-4));
    }
}

fn embed<B: Backend>(be: &B) {
    for (i, &(classes, n, hw)) in [(2usize, 1usize, 1usize), (10, 7, 784), (10, 33, 1024), (3, 5, 9)].iter().enumerate()
    {
        let emb = leak(moderate(classes * hw, 800 + i as u64));
        let labels = leak((0..n).map(|r| ((r * 3 + i) % classes) as u32).collect());
        // The label channel as channel 2 of a 4-channel CNHW block.
        let total = 4 * n * hw;
        check(be, &format!("label channel {classes}×{hw} n={n}"), || {
            Op::LabelChannel(emb, hw, labels, 2 * n * hw, total)
        });
    }
}

fn math<B: Backend>(be: &B) {
    let mut x: Vec<f32> = (0..(1u64 << 32)).step_by(65_537).map(|b| f32::from_bits(b as u32)).collect();
    x.extend(values(20_000, 3));
    let x = leak(x);
    for f in [Unary::Exp, Unary::Log1p, Unary::Ln, Unary::Softplus, Unary::Sigmoid] {
        check(be, &format!("{f:?}"), || Op::Unary(f, x));
    }
    for n in [1usize, 7, 8, 9, 1000, 4099] {
        let (a, b) = (leak(values(n, n as u64)), leak(values(n, 1 + n as u64)));
        check(be, &format!("relu {n}"), || Op::Relu(a, b));
        check(be, &format!("add {n}"), || Op::Add(a, b));
    }
}

fn philox<B: Backend>(be: &B) {
    for (i, &(rows, d)) in [(1usize, 1usize), (7, 13), (100, 392), (3, 1000)].iter().enumerate() {
        let pos = RngPos { seed: 7 + i as u64, stream: (5u64 << 32) | 3, first: 1000 * i as u64 };
        let x = leak(moderate(rows * d, 900 + i as u64));
        check(be, &format!("philox {rows}×{d}"), || Op::Philox(pos, rows, d, x, (0.2, 0.3)));
    }
}

fn layout<B: Backend>(be: &B) {
    for (i, &(rows, w, off)) in [(1usize, 1usize, 0usize), (5, 7, 3), (100, 392, 10), (3, 1000, 1)].iter().enumerate() {
        let x = leak(values(rows * w, 950 + i as u64));
        let (c, n, h, ww) = GEOMS[i];
        check(be, &format!("layout {rows}×{w} at {off}"), || Op::Layout(x, rows, w, off, Cnhw::new(c, n, h, ww)));
    }
}

/// Shape errors are errors on every backend, naming the op.
fn shape_errors<B: Backend>(be: &B) {
    let x = up(be, &[1.0; 10]);
    let mut o = B::Buf::default();
    let e = be.row_sumsq(&x, 3, &mut o).unwrap_err().to_string();
    assert!(e.contains("row"), "{e}");
    let e = be.gemm(Mat::new(&x, 2, 5).unwrap(), Mat::new(&x, 2, 5).unwrap(), &mut o, Epilogue::None);
    assert!(e.unwrap_err().to_string().contains("gemm"));
    let mut st = be.zeros(1).unwrap();
    let g = up(be, &[1.0; 4]);
    let e = be.goodness_means(&g, MeanOf::L32, StatSlot::new(&mut st, 0)).unwrap_err().to_string();
    assert!(e.contains("statistics slot"), "{e}");
}

/// The suite on the backends `$bes` (a `Vec` of one backend type: the
/// GEMM-using families run on each).
macro_rules! suite {
    ($name:ident, $bes:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn gemm_matches_the_spec_bitwise_in_every_layout_and_epilogue() {
                for be in $bes {
                    super::gemm(&be);
                }
            }
            #[test]
            fn linear_layer_ops_match_the_spec_bitwise() {
                for be in $bes {
                    super::linear(&be);
                }
            }
            #[test]
            fn row_reductions_and_norms_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::reduce(&be);
                }
            }
            #[test]
            fn losses_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::losses(&be);
                }
            }
            #[test]
            fn optimisers_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::optim(&be);
                }
            }
            #[test]
            fn conv_matches_the_spec_bitwise_forward_dw_and_dx() {
                for be in $bes {
                    super::conv(&be);
                }
            }
            #[test]
            fn pool_and_upsample_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::pool(&be);
                }
            }
            #[test]
            fn batch_norm_and_block_norms_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::norm2d(&be);
                }
            }
            #[test]
            fn label_channel_matches_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::embed(&be);
                }
            }
            #[test]
            fn elementwise_math_matches_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::math(&be);
                }
            }
            #[test]
            fn random_draws_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::philox(&be);
                }
            }
            #[test]
            fn layout_copies_match_the_spec_bitwise() {
                for be in $bes.into_iter().take(1) {
                    super::layout(&be);
                }
            }
            #[test]
            fn shape_errors_are_errors_naming_the_op() {
                for be in $bes.into_iter().take(1) {
                    super::shape_errors(&be);
                }
            }
        }
    };
}

fn avx2() -> Vec<CpuBackend> {
    match CpuBackend::avx2() {
        Ok(b) => vec![b],
        Err(_) => {
            eprintln!("SKIP (no avx2/fma)");
            Vec::new()
        }
    }
}

/// The CUDA backend in every GEMM tile (the auto choice first).
fn cuda() -> Vec<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => std::iter::once(ffwd_kernels::cuda::Tile::Auto)
            .chain(ffwd_kernels::cuda::Tile::FIXED)
            .map(|t| b.with_tile(t))
            .collect(),
        Err(e) => {
            if std::env::var("FFWD_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("FFWD_REQUIRE_GPU=1 but the CUDA backend cannot start: {e}");
            }
            eprintln!("SKIP (no CUDA: {e})");
            Vec::new()
        }
    }
}

suite!(avx2_backend, avx2());
suite!(cuda_backend, cuda());
