//! Kernel and training-step benchmarks: GEMM at FF shapes and one full FF
//! layer step (forward with goodness, loss, local gradient, dW, Adam), in
//! GFLOP/s and as a fraction of this machine's FMA peak, measured here.
//!
//! `cargo bench --bench ff` (criterion statistics follow the summary table).
//! Rows M = 2 × batch (positives and negatives go through together).

mod common;

use common::{median_secs, rand};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ffwd::kernels::{CpuBackend, Epilogue, FfLoss, GoodnessForm, MatMut, MatRef, Norm, PackedMat, StatSlot};
use ffwd::layers::config::OptimConfig;
use ffwd::layers::ff::{FfLayer, Objective};

/// The measured FMA peak of `threads` threads (NaN without AVX2 + FMA).
fn fma_peak(threads: usize) -> f64 {
    ffwd::kernels::cpu::peak::fma_peak(threads).unwrap_or(f64::NAN)
}

struct Gemm {
    m: usize,
    k: usize,
    n: usize,
    transposed_a: bool,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    bias: Vec<f32>,
}

impl Gemm {
    fn new(m: usize, k: usize, n: usize, transposed_a: bool) -> Self {
        Self { m, k, n, transposed_a, a: rand(m * k, 1), b: rand(k * n, 2), c: vec![0.0; m * n], bias: rand(n, 3) }
    }
    fn name(&self) -> String {
        let l = if self.transposed_a { "dW: Aᵀ" } else { "fwd: A" };
        format!("{l}[{}×{}]·B[{}×{}]", self.m, self.k, self.k, self.n)
    }
    fn run(&mut self, be: &CpuBackend) {
        let a = if self.transposed_a {
            MatRef::new(&self.a, self.k, self.m).unwrap().t()
        } else {
            MatRef::new(&self.a, self.m, self.k).unwrap()
        };
        let epi = if self.transposed_a { Epilogue::None } else { Epilogue::BiasRelu(self.bias.as_slice()) };
        be.gemm(
            a,
            MatRef::new(&self.b, self.k, self.n).unwrap(),
            MatMut::new(&mut self.c, self.m, self.n).unwrap(),
            epi,
        )
        .unwrap();
    }
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// The forward the trainer runs: weights kept packed, bias + ReLU and the
/// row goodness in the epilogue (no per-call packing of W).
struct PackedFwd {
    m: usize,
    x: Vec<f32>,
    w: PackedMat,
    bias: Vec<f32>,
    h: Vec<f32>,
    g: Vec<f32>,
}

impl PackedFwd {
    fn new(m: usize, k: usize, n: usize) -> Self {
        let w = PackedMat::from_row_major(&rand(k * n, 2), k, n).unwrap();
        Self { m, x: rand(m * k, 1), w, bias: rand(n, 3), h: vec![0.0; m * n], g: vec![0.0; m] }
    }
    fn name(&self) -> String {
        format!("fwd, W packed: X[{}×{}]·W[{}×{}]", self.m, self.w.rows(), self.w.rows(), self.w.cols())
    }
    fn run(&mut self, be: &CpuBackend) {
        let (k, n) = (self.w.rows(), self.w.cols());
        be.linear_forward_packed(
            MatRef::new(&self.x, self.m, k).unwrap(),
            &self.w,
            &self.bias,
            MatMut::new(&mut self.h, self.m, n).unwrap(),
            &mut self.g,
        )
        .unwrap();
    }
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.w.rows() * self.w.cols()) as f64
    }
}

/// One FF layer's training step, on a new batch each time (eight
/// synthetic batches in turn: one batch over and over saturates the loss
/// until no row is left in dW).
struct Step {
    layer: FfLayer<CpuBackend>,
    stat: Vec<f32>,
    xs: Vec<Vec<f32>>,
    next: usize,
    rows: usize,
}

impl Step {
    fn new(din: usize, dout: usize, batch: usize) -> Self {
        Self {
            layer: FfLayer::new(&CpuBackend::best(), din, dout, &OptimConfig::default(), 0, 0).unwrap(),
            stat: vec![0.0; 3],
            xs: (0..8).map(|i| rand(2 * batch * din, 4 + i)).collect(),
            next: 0,
            rows: 2 * batch,
        }
    }
    fn run(&mut self, be: &CpuBackend) {
        let loss = FfLoss::Threshold { theta: self.layer.out_dim as f32 };
        let obj = Objective { norm: Norm::Rms, eps: 1e-8, loss, form: GoodnessForm::Sum };
        self.layer.train_step(be, &self.xs[self.next], self.rows, obj, StatSlot::new(&mut self.stat, 0)).unwrap();
        self.next = (self.next + 1) % self.xs.len();
    }
    /// The step's FLOP: the forward over every row and the dW GEMM over the
    /// rows the last step kept (the others have dL/dG = 0 exactly).
    fn flops(&self) -> f64 {
        2.0 * ((self.rows + self.layer.rows_kept(&CpuBackend::best()).unwrap())
            * self.layer.in_dim
            * self.layer.out_dim) as f64
    }
}

const SHAPES: [(usize, usize); 2] = [(784, 2000), (2000, 2000)];
const BATCHES: [usize; 2] = [100, 1000];

fn summary(be: &CpuBackend) {
    let threads = rayon::current_num_threads();
    let p1 = fma_peak(1);
    let pt = fma_peak(threads);
    println!("\nffwd bench: {} backend, {threads} thread(s)", be.name());
    println!("measured FMA peak: {:.1} GFLOP/s on 1 core, {:.1} GFLOP/s on {threads}", p1 / 1e9, pt / 1e9);
    println!("{:<48} {:>9} {:>9} {:>10} {:>10}", "case (median of 9; best)", "ms", "GFLOP/s", "% of peak", "best %");
    let row = |name: String, (med, best): (f64, f64), flops: f64| {
        println!(
            "{name:<48} {:>9.3} {:>9.1} {:>9.1}% {:>9.1}%",
            med * 1e3,
            flops / med / 1e9,
            100.0 * flops / med / pt,
            100.0 * flops / best / pt
        );
    };
    for (din, dout) in SHAPES {
        for batch in BATCHES {
            let m = 2 * batch;
            let mut g = Gemm::new(m, din, dout, false);
            let s = median_secs(9, || g.run(be));
            row(g.name(), s, g.flops());
            let mut f = PackedFwd::new(m, din, dout);
            let fwd = median_secs(9, || f.run(be));
            row(f.name(), fwd, f.flops());
            let mut g = Gemm::new(din, m, dout, true);
            let dw = median_secs(9, || g.run(be));
            row(g.name(), dw, g.flops());
            let mut st = Step::new(din, dout, batch);
            let s = median_secs(9, || st.run(be));
            let kept = st.layer.rows_kept(be).unwrap();
            row(format!("FF step {din}→{dout}, batch {batch} ({kept} of {m} rows in dW)"), s, st.flops());
            // The step's two products are the forward with W packed and the
            // dW GEMM over the rows it keeps; the rest (normalisation, loss,
            // local gradient, bias, optimiser, and whatever fusion saves or
            // costs) is the remainder.
            let dw_kept = if kept == m {
                dw
            } else if kept == 0 {
                (0.0, 0.0)
            } else {
                let mut g = Gemm::new(din, kept, dout, true);
                median_secs(9, || g.run(be))
            };
            let rest = s.0 - fwd.0 - dw_kept.0;
            println!(
                "  outside the forward and the {kept}-row dW GEMM: {:.3} ms, {:.1}% of the step",
                rest * 1e3,
                100.0 * rest / s.0
            );
        }
    }
    println!();
}

fn benches(c: &mut Criterion) {
    let be = CpuBackend::best();
    summary(&be);
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10);
    for (din, dout) in SHAPES {
        for batch in BATCHES {
            let mut fwd = Gemm::new(2 * batch, din, dout, false);
            g.throughput(Throughput::Elements(fwd.flops() as u64));
            g.bench_function(BenchmarkId::new(format!("fwd_{din}x{dout}"), batch), |b| b.iter(|| fwd.run(&be)));
            let mut dw = Gemm::new(din, 2 * batch, dout, true);
            g.bench_function(BenchmarkId::new(format!("dw_{din}x{dout}"), batch), |b| b.iter(|| dw.run(&be)));
        }
    }
    g.finish();
    let mut g = c.benchmark_group("ff_step");
    g.sample_size(10);
    for (din, dout) in SHAPES {
        for batch in BATCHES {
            let mut st = Step::new(din, dout, batch);
            g.throughput(Throughput::Elements(st.flops() as u64));
            g.bench_function(BenchmarkId::new(format!("{din}x{dout}"), batch), |b| b.iter(|| st.run(&be)));
        }
    }
    g.finish();
}

criterion_group!(ff, benches);
criterion_main!(ff);
